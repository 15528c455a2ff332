//! A real SMTP server for tests: Python's `aiosmtpd` (from the test virtual
//! environment `make test` creates) on a loopback port, delivering every
//! message into a Maildir that the test reads. It can be stopped and started
//! again on the same port (a mail server that is down, then back).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{free_port, reap_when_done, test_tool};

/// An SMTP server of one test's own; stopped and removed when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    dir: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
}

impl SmtpServer {
    /// A server on a free port, not started yet (so that a test can first
    /// show what happens while it is down).
    ///
    /// # Panics
    /// When the test virtual environment's Python is missing.
    pub fn stopped() -> Self {
        let dir = tempfile::Builder::new().prefix("anb-smtp-").tempdir().expect("temporary directory").keep();
        let server = Self { dir, port: free_port(), child: Mutex::new(None) };
        reap_when_done(&server.kill_command(), &server.dir);
        server
    }

    /// A server on a free port, answering.
    ///
    /// # Panics
    /// As [`SmtpServer::start`].
    pub fn started() -> Self {
        let server = Self::stopped();
        server.start();
        server
    }

    /// `smtp://127.0.0.1:PORT` (no TLS: a relay on loopback).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until it greets.
    ///
    /// # Panics
    /// When `aiosmtpd` is not installed in the test virtual environment, or
    /// the server does not greet within 20 s.
    pub fn start(&self) {
        let python = test_tool("python3", "ANB_TEST_PYTHON");
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{}", self.port), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(self.maildir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("server.log")).expect("the server's log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start aiosmtpd with {}: {e}", python.display()));
        std::fs::write(self.dir.join("pid"), child.id().to_string()).expect("the server's pid file");
        *self.child.lock().expect("server child") = Some(child);
        let started = Instant::now();
        while !self.greets() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            assert!(!log.contains("No module named"), "aiosmtpd is not installed in the test venv (make test-tools installs it):\n{log}");
            assert!(started.elapsed() < Duration::from_secs(20), "aiosmtpd did not start on port {}:\n{log}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server; the messages it received stay readable.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().expect("server child").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The messages received so far, oldest first, as delivered (RFC 5322).
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<_> = ["new", "cur"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(self.maildir().join(sub)).into_iter().flatten().flatten())
            .map(|e| e.path())
            .collect();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
    }

    /// Waits until at least `n` messages arrived; returns them all.
    ///
    /// # Panics
    /// When they do not within `limit`.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<String> {
        let started = Instant::now();
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(started.elapsed() < limit, "{} of {n} messages arrived within {limit:?}", messages.len());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn maildir(&self) -> PathBuf {
        self.dir.join("Maildir")
    }

    fn greets(&self) -> bool {
        use std::io::Read;
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut greeting = [0u8; 3];
        stream.read_exact(&mut greeting).is_ok() && &greeting == b"220"
    }

    fn kill_command(&self) -> String {
        format!("p=$(cat '{}' 2>/dev/null) && kill -9 $p 2>/dev/null; true", self.dir.join("pid").display())
    }

    /// The directory the server keeps its files in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
