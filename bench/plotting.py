"""The Python that draws the benchmarks' plots: a virtual environment with
matplotlib (pinned), made on first use, so the benchmarks themselves need
nothing beyond the standard library."""

import subprocess
import sys
from pathlib import Path

MATPLOTLIB = "matplotlib==3.9.2"


def plotting_python(venv: Path) -> Path:
    """The interpreter of `venv`, with matplotlib installed in it."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", MATPLOTLIB], check=True)
    return python
