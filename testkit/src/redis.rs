//! Redis for tests: the server `ANB_TEST_REDIS_URL` names, else a throwaway
//! `redis-server` from Debian's package on a free loopback port, keeping
//! nothing on disk. Tests share a server by giving their keys a prefix of
//! their own.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{free_port, reap_when_done};

const SERVER: &str = "redis-server";

/// The Redis server of this test process.
#[derive(Debug)]
pub struct Redis {
    url: String,
}

impl Redis {
    /// `ANB_TEST_REDIS_URL` when set, else a throwaway server started on
    /// first use and stopped when the test process ends.
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not start.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<Redis> = OnceLock::new();
        SHARED.get_or_init(|| match std::env::var("ANB_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => Self { url },
            _ => {
                let server = RedisServer::create();
                let url = server.url();
                // Shared by the whole test process: its reaper stops it at the end.
                std::mem::forget(server);
                Self { url }
            }
        })
    }

    /// `redis://host:port`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A server of one test's own, which the test may stop and start again (on
/// the same port, empty: it keeps nothing); stopped and removed when
/// dropped, and by a reaper if the test process dies first.
#[derive(Debug)]
pub struct RedisServer {
    dir: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
}

impl RedisServer {
    /// Creates and starts a server on a free port.
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not start.
    pub fn create() -> Self {
        let installed = Command::new(SERVER).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        assert!(
            installed,
            "{SERVER} not found: install the `redis-server` package (make test does), or set ANB_TEST_REDIS_URL to a server"
        );
        let dir = tempfile::Builder::new().prefix("anb-redis-").tempdir().expect("temporary directory").keep();
        let server = Self { dir, port: free_port(), child: Mutex::new(None) };
        server.start();
        reap_when_done(&server.kill_command(), &server.dir);
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the (stopped) server and waits until it answers `PING`.
    ///
    /// # Panics
    /// When it does not within 20 s.
    pub fn start(&self) {
        let child = Command::new(SERVER)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--pidfile")
            .arg(self.dir.join("pid"))
            .arg("--logfile")
            .arg(self.dir.join("server.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SERVER}: {e}"));
        *self.child.lock().expect("server child") = Some(child);
        let started = Instant::now();
        while !self.answers() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "redis-server did not start on port {}:\n{}",
                self.port,
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (its entries go with it).
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().expect("server child").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 5];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG"
    }

    fn kill_command(&self) -> String {
        format!("p=$(cat '{}' 2>/dev/null) && kill -9 $p 2>/dev/null; true", self.dir.join("pid").display())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
