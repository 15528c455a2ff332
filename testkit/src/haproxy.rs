//! [`Haproxy`]: Debian's HAProxy in front of local web servers, as the ALB
//! is in front of the web group: health checks on `/api/health`, round
//! robin, and a request whose connection failed tried again on another
//! server. Stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running HAProxy of one test.
#[derive(Debug)]
pub struct Haproxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The configuration over `servers` (ports on 127.0.0.1), listening on
/// `port`.
pub fn config(port: u16, servers: &[u16]) -> String {
    let mut text = format!(
        "global\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n  \
         retries 3\n  option redispatch 1\n  retry-on conn-failure empty-response\n\
         frontend web\n  bind 127.0.0.1:{port}\n  default_backend anb\n\
         backend anb\n  balance roundrobin\n  option httpchk GET /api/health\n  http-check expect status 200\n  \
         default-server inter 500ms fall 2 rise 2\n"
    );
    for (n, server) in servers.iter().enumerate() {
        text.push_str(&format!("  server web{} 127.0.0.1:{server} check\n", n + 1));
    }
    text
}

impl Haproxy {
    /// HAProxy on a free port over `servers`.
    ///
    /// # Panics
    /// When HAProxy is not installed (`make test-deps` installs it) or does
    /// not start.
    pub fn start(servers: &[u16]) -> Self {
        let binary = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("haproxy not found: install Debian's `haproxy` package (make test-deps does)"));
        let dir = tempfile::Builder::new().prefix("anb-haproxy-").tempdir().expect("temporary directory");
        let port = crate::free_port();
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config(port, servers)).expect("write the configuration");
        let check = Command::new(&binary).arg("-c").arg("-f").arg(&file).output().expect("run haproxy -c");
        assert!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stderr));
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log file");
        let child = Command::new(&binary).arg("-db").arg("-f").arg(&file).stdout(Stdio::null()).stderr(log).spawn().expect("start haproxy");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "haproxy did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, _dir: dir }
    }

    /// The port clients use.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
