//! RabbitMQ for tests: the broker `ANB_TEST_AMQP_URL` names, else a
//! throwaway `rabbitmq-server` from Debian's package on free loopback ports,
//! with its own data directory, Erlang port mapper and cookie, so it never
//! meets a broker the machine already runs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{free_port, is_root, reap_when_done, succeeds};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// The RabbitMQ broker of this test process.
#[derive(Debug)]
pub struct RabbitMq {
    url: String,
}

impl RabbitMq {
    /// `ANB_TEST_AMQP_URL` when set, else a throwaway broker started on first
    /// use and stopped when the test process ends.
    ///
    /// # Panics
    /// When `rabbitmq-server` is not installed or does not start.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<RabbitMq> = OnceLock::new();
        SHARED.get_or_init(|| match std::env::var("ANB_TEST_AMQP_URL") {
            Ok(url) if !url.is_empty() => Self { url },
            _ => {
                let broker = RabbitBroker::create();
                let url = broker.url();
                // Shared by the whole test process: its reaper stops it at the end.
                std::mem::forget(broker);
                Self { url }
            }
        })
    }

    /// `amqp://user:password@host:port/vhost`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A broker of one test's own, which the test may stop and start again (its
/// durable queues and messages survive); stopped and removed when dropped,
/// and by a reaper if the test process dies first.
#[derive(Debug)]
pub struct RabbitBroker {
    dir: PathBuf,
    port: u16,
    epmd_port: u16,
    dist_port: u16,
    node: String,
    run_as: Vec<String>,
    child: Mutex<Option<Child>>,
}

impl RabbitBroker {
    /// Creates and starts a broker on free ports.
    ///
    /// # Panics
    /// When `rabbitmq-server` is not installed or does not start.
    pub fn create() -> Self {
        assert!(
            std::path::Path::new(SERVER).exists(),
            "{SERVER} not found: install the `rabbitmq-server` package (make test does), or set ANB_TEST_AMQP_URL to a broker"
        );
        let dir = tempfile::Builder::new().prefix("anb-rabbitmq-").tempdir().expect("temporary directory").keep();
        let run_as: Vec<String> = if is_root() {
            let user = ["rabbitmq", "nobody"].into_iter().find(|u| succeeds(Command::new("id").arg("-u").arg(u))).expect("a non-root user");
            assert!(succeeds(Command::new("chown").args(["-R", user]).arg(&dir)), "chown {} to {user}", dir.display());
            vec!["runuser".into(), "-u".into(), user.into(), "--".into()]
        } else {
            Vec::new()
        };
        let broker = Self {
            node: format!("anbtest{}@localhost", uuid::Uuid::new_v4().simple()),
            dir,
            port: free_port(),
            epmd_port: free_port(),
            dist_port: free_port(),
            run_as,
            child: Mutex::new(None),
        };
        broker.start();
        reap_when_done(&broker.stop_command(), &broker.dir);
        broker
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the (stopped) broker and waits until it accepts connections.
    ///
    /// # Panics
    /// When it does not start within a minute.
    pub fn start(&self) {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("broker log");
        let mut command = Command::new(self.run_as.first().map_or(SERVER, String::as_str));
        command.args(self.run_as.iter().skip(1));
        if !self.run_as.is_empty() {
            command.arg(SERVER);
        }
        let dir = self.dir.display().to_string();
        command
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &dir)
            .env("LANG", "C.UTF-8")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_BASE", &dir)
            .env("RABBITMQ_MNESIA_BASE", format!("{dir}/mnesia"))
            .env("RABBITMQ_LOG_BASE", format!("{dir}/log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", format!("{dir}/enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", format!("{dir}/rabbitmq"))
            .env("RABBITMQ_PID_FILE", format!("{dir}/pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {SERVER}: {e}"));
        *self.child.lock().expect("broker child") = Some(child);
        let started = Instant::now();
        while !self.accepts_connections() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "rabbitmq-server did not start on port {}:\n{}",
                self.port,
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the broker (as a restart would: it closes every connection).
    pub fn stop(&self) {
        assert!(succeeds(Command::new("sh").args(["-c", &self.kill_command()])), "stopping rabbitmq-server failed");
        if let Some(mut child) = self.child.lock().expect("broker child").take() {
            let _ = child.wait();
        }
    }

    /// Booted: its pid file is written once the AMQP listener is up.
    fn accepts_connections(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.dir.join("pid").exists() && self.booted()
    }

    fn booted(&self) -> bool {
        std::fs::read_to_string(self.dir.join("server.log")).is_ok_and(|log| log.contains("completed with"))
    }

    /// Stops the server process and waits for it to end (up to 30 s, then
    /// kills it).
    fn kill_command(&self) -> String {
        let pid = self.dir.join("pid");
        format!(
            "p=$(cat '{pid}' 2>/dev/null) || exit 0; kill $p 2>/dev/null; i=0; \
             while kill -0 $p 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; kill -9 $p 2>/dev/null; rm -f '{pid}'; true",
            pid = pid.display()
        )
    }

    /// The broker and its port mapper.
    fn stop_command(&self) -> String {
        format!("{}; ERL_EPMD_PORT={} epmd -kill >/dev/null 2>&1; true", self.kill_command(), self.epmd_port)
    }
}

impl Drop for RabbitBroker {
    fn drop(&mut self) {
        let _ = Command::new("sh").args(["-c", &self.stop_command()]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if let Some(mut child) = self.child.lock().ok().and_then(|mut c| c.take()) {
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
