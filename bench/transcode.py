#!/usr/bin/env python3
"""Transcoding benchmark: our GStreamer pipeline against the ffmpeg command line.

Both do the same job (docs/video-rules.md): first 30 s, scale + pad to 1280x720,
watermark, 2.5 s intro and outro cards, no audio, H.264 High yuv420p, fast
start. Inputs are generated here so anyone can repeat the run:

    python3 bench/transcode.py            # all inputs
    python3 bench/transcode.py --quick    # one input, for a smoke run
    python3 bench/transcode.py --variants # single jobs of our encoder settings

For each input it reports wall time, CPU time and peak RSS of one job, output
size, SSIM and PSNR of the content (intro and outro cut off) against the
source scaled the same way, and videos per minute with as many jobs at once
as cores. Ours runs through `anb-worker transcode`, the entry point the worker
uses. Results go to stdout as a Markdown table and to bench/results/.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")).resolve()
WORKER = TARGET / "release" / "anb-worker"
CORES = os.cpu_count() or 1

INPUTS = {
    # name: (width, height, video bitrate) -> about 50 MB and 100 MB at 45 s
    "landscape-50MB": (1920, 1080, "8500k"),
    "landscape-100MB": (1920, 1080, "17500k"),
    "portrait-50MB": (1080, 1920, "8500k"),
}
SECONDS = 45
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
OUTSIDE_WATERMARK = "crop=1280:600:0:120"
FIT = "scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1"


def ffmpeg_baseline(src: Path, out: Path) -> list[str]:
    """The usual one-command way: libx264 veryfast CRF 23, the same work as ours."""
    card = f"color=c=0x0B1F4B:s=1280x720:r=30:d=2.5"
    title = f"drawtext=fontfile={FONT}:fontcolor=white:fontsize=56:x=(w-tw)/2:y=(h-th)/2"
    graph = (
        f"[0:v]trim=end=30,setpts=PTS-STARTPTS,fps=30,{FIT},"
        f"drawtext=fontfile={FONT}:text=ANB:fontcolor=white@0.7:fontsize=40:x=w-tw-28:y=24,format=yuv420p[main];"
        f"[1:v]{title}:text='ANB Rising Stars Showcase',format=yuv420p[intro];"
        f"[2:v]{title}:text='Gracias por ver',format=yuv420p[outro];"
        f"[intro][main][outro]concat=n=3:v=1:a=0[out]"
    )
    return ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-f", "lavfi", "-i", card, "-f", "lavfi", "-i", card,
            "-filter_complex", graph, "-map", "[out]", "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
            "-profile:v", "high", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(out)]


def ours(src: Path, out: Path, *flags: str) -> list[str]:
    """As a worker host runs it at full load (ANB_WORKERS = cores): one
    decoder and one encoder thread per job."""
    threads = () if "--threads" in flags else ("--threads", "1")
    return [str(WORKER), "transcode", *threads, *flags, str(src), str(out)]


def ffmpeg_one_thread(src: Path, out: Path) -> list[str]:
    """The baseline given the same one-thread-per-job treatment, for reference."""
    cmd = ffmpeg_baseline(src, out)
    at = cmd.index("-i")
    return [*cmd[:at], "-threads", "1", *cmd[at:-1], "-threads", "1", "-filter_complex_threads", "1", cmd[-1]]


# Encoder settings compared by --variants, as `anb-worker transcode` flags.
VARIANTS = [
    ("x264 veryfast as ffmpeg's (subme 2, hex), catrom", ("--subme", "2", "--motion-search", "hex")),
    ("x264 veryfast, subme 1, dia, bilinear", ("--scale-method", "bilinear")),
    ("x264 veryfast, subme 1, dia, lanczos", ("--scale-method", "lanczos")),
    ("x264 veryfast, subme 1, dia, GStreamer's videoscale catrom (before issue 15)", ("--scale-method", "videoscale:catrom")),
    ("x264 superfast, catrom", ("--preset", "superfast")),
    ("x264 veryfast, subme 1, dia, catrom, CRF 22", ("--quality", "22")),
    ("x264 veryfast, subme 1, dia, catrom (the default)", ()),
    ("the default, 2 decoder and encoder threads (a lone job on 2 cores)", ("--threads", "2")),
    ("the default, decoder and encoder threads chosen by GStreamer", ("--threads", "0")),
]


def variants(work: Path) -> None:
    """One job per setting on the first input, next to the ffmpeg baseline."""
    name = next(iter(INPUTS))
    src = work / f"{name}.mp4"
    make_input(src, *INPUTS[name])
    print(f"{name}: single jobs\n")
    print("| setting | wall s | CPU s | peak RSS MB | output MB | SSIM | PSNR dB | SSIM vs Lanczos |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    runs = [(f"ours, {label}", ours, flags) for label, flags in VARIANTS]
    runs.append(("ffmpeg CLI", ffmpeg_baseline, ()))
    runs.append(("ffmpeg CLI, -threads 1", ffmpeg_one_thread, ()))
    for label, tool, flags in runs:
        out = work / "variant.mp4"
        row = timed(tool(src, out, *flags))
        q = quality(tool, out, src, work, flags)
        print(f"| {label} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['peak_rss_mb']:.0f} | "
              f"{out.stat().st_size / 1e6:.2f} | {q['ssim']:.4f} | {q['psnr']:.2f} | {q['ssim_lanczos']:.4f} |")


def make_input(path: Path, width: int, height: int, bitrate: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30,noise=alls=14:allf=t",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                    "-t", str(SECONDS), "-c:v", "libx264", "-preset", "veryfast", "-b:v", bitrate, "-maxrate", bitrate,
                    "-bufsize", "4M", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(path)], check=True)


def timed(cmd: list[str]) -> dict:
    """Wall, CPU and peak RSS of one command, via GNU time."""
    started = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", *cmd], capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    user, system, rss_kb = proc.stderr.strip().splitlines()[-1].split()
    return {"wall_s": wall, "cpu_s": float(user) + float(system), "peak_rss_mb": int(rss_kb) / 1024}


def gstreamer_fit(width: int, height: int) -> str:
    """The geometry `videoscale add-borders=true` gives (measured on a white
    frame: a 1080x1920 picture becomes 405x720 at x=436, where ffmpeg's FIT
    gives 404x720), as ffmpeg filters scaling with Lanczos."""
    scale = min(1280 / width, 720 / height)
    w, h = round(width * scale), round(height * scale)
    x, y = (1280 - w) // 2 & ~1, (720 - h) // 2 & ~1
    return f"scale={w}:{h}:flags=lanczos,pad=1280:720:{x}:{y},setsar=1"


def scores(out: Path, ref: Path, ref_filters: str) -> dict:
    """SSIM and PSNR of the 30 s of content of `out` (cards cut off) against
    `ref` through `ref_filters`. The top 120 rows, where each tool draws its
    own watermark, are left out of both: the watermarks differ in size by
    design and would be scored as error."""
    graph = (f"[0:v]trim=start=2.5:end=32.5,setpts=PTS-STARTPTS,{OUTSIDE_WATERMARK}[a];"
             f"[1:v]trim=end=30,setpts=PTS-STARTPTS,{ref_filters},format=yuv420p,{OUTSIDE_WATERMARK}[b];")
    result = {}
    for name, pattern in (("ssim", r"All:([0-9.]+)"), ("psnr", r"average:([0-9.inf]+)")):
        proc = subprocess.run(["ffmpeg", "-v", "info", "-i", str(out), "-i", str(ref), "-filter_complex",
                               graph + f"[a][b]{name}=shortest=1", "-f", "null", "-"], capture_output=True, text=True)
        match = re.findall(pattern, proc.stderr)
        result[name] = float(match[-1]) if match else None
    return result


def gstreamer_scaled(src: Path, work: Path, method: str) -> Path:
    """The source's first 30 s scaled and padded exactly as our pipeline
    does (videoscale `method`, add-borders), uncompressed (YUV4MPEG)."""
    ref = work / f"{src.stem}-gst-{method}.y4m"
    if not ref.exists():
        subprocess.run(["gst-launch-1.0", "-q", "filesrc", f"location={src}", "!", "qtdemux", "!", "h264parse", "!",
                        "avdec_h264", "!", "videoconvert", "!", "videoscale", f"method={method}", "add-borders=true", "!",
                        "video/x-raw,format=I420,width=1280,height=720,pixel-aspect-ratio=1/1", "!",
                        "identity", "eos-after=905", "!", "y4menc", "!", "filesink", f"location={ref}"], check=True)
    return ref


def quality(tool, out: Path, src: Path, work: Path, flags: tuple = ()) -> dict:
    """Scores of `out` against the source scaled the same way as `tool`
    scales it (what its encoding lost: `ssim`, `psnr`), and against one
    neutral reference for both tools, the source scaled with Lanczos in
    each tool's geometry (what scaling and encoding lost together:
    `ssim_lanczos`). `flags` are those `tool` ran with."""
    if tool is ours:
        # The reference is scaled by GStreamer's videoscale (gst-launch cannot
        # load our own element): the same method for a videoscale variant,
        # and the same filter family for anbscale's.
        method = flags[flags.index("--scale-method") + 1] if "--scale-method" in flags else "catrom"
        method = method.removeprefix("videoscale:")
        w, h = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                               "-of", "csv=p=0", str(src)], capture_output=True, text=True, check=True).stdout.split(",")
        own, neutral = scores(out, gstreamer_scaled(src, work, method), "null"), scores(out, src, f"fps=30,{gstreamer_fit(int(w), int(h))}")
    else:
        own = scores(out, src, f"fps=30,{FIT}")
        neutral = scores(out, src, "fps=30," + FIT.replace("decrease,", "decrease:flags=lanczos,"))
    return {**own, "ssim_lanczos": neutral["ssim"]}


def throughput(tool, src: Path, work: Path) -> float:
    """Videos per minute with CORES jobs at once."""
    def one(i: int) -> None:
        subprocess.run(tool(src, work / f"par-{i}.mp4"), check=True, capture_output=True)
    started = time.monotonic()
    with ThreadPoolExecutor(CORES) as pool:
        list(pool.map(one, range(CORES)))
    return CORES * 60 / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the first input")
    parser.add_argument("--variants", action="store_true", help="single jobs of our encoder settings on the first input")
    args = parser.parse_args()
    for tool in ("ffmpeg", "ffprobe", "gst-launch-1.0", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install ffmpeg time")
    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "anb-worker"], cwd=ROOT, check=True)
    if args.variants:
        with tempfile.TemporaryDirectory() as tmp:
            variants(Path(tmp))
        return
    names = list(INPUTS)[:1] if args.quick else list(INPUTS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in names:
            src = work / f"{name}.mp4"
            make_input(src, *INPUTS[name])
            for label, tool in (("ffmpeg CLI", ffmpeg_baseline), ("anb GstTranscoder", ours)):
                out = work / f"{name}-{label.split()[0]}.mp4"
                row = {"input": name, "input_mb": round(src.stat().st_size / 1e6, 1), "tool": label, **timed(tool(src, out))}
                row["output_mb"] = round(out.stat().st_size / 1e6, 2)
                row.update(quality(tool, out, src, work))
                row["videos_per_min"] = throughput(tool, src, work)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (results / f"transcode-{stamp}.json").write_text(json.dumps({"cores": CORES, "rows": rows}, indent=2))

    print(f"| input | tool | wall s | CPU s | peak RSS MB | output MB | SSIM | PSNR dB | SSIM vs Lanczos | videos/min ({CORES} at once) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['input']} ({r['input_mb']} MB) | {r['tool']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
              f"{r['peak_rss_mb']:.0f} | {r['output_mb']} | {r['ssim']:.4f} | {r['psnr']:.2f} | {r['ssim_lanczos']:.4f} | "
              f"{r['videos_per_min']:.2f} |")
    for name in names:
        base, mine = (next(r for r in rows if r["input"] == name and r["tool"].startswith(t)) for t in ("ffmpeg", "anb"))
        print(f"\n{name}: throughput ratio ours/ffmpeg = {mine['videos_per_min'] / base['videos_per_min']:.2f}, "
              f"SSIM {mine['ssim']:.4f} vs {base['ssim']:.4f} (against Lanczos: {mine['ssim_lanczos']:.4f} vs {base['ssim_lanczos']:.4f})")


if __name__ == "__main__":
    main()
