//! What the tests of every crate share:
//! - real services, started once per test process and stopped when it ends
//!   (even when it panics or is killed): a PostgreSQL server (the one
//!   `ANB_TEST_DATABASE_URL` names, else a throwaway cluster from the
//!   installed PostgreSQL binaries), a moto server, the S3 and SQS
//!   emulator, a RabbitMQ broker ([`RabbitMq`], [`RabbitBroker`]) and a
//!   Redis server ([`Redis`], [`RedisServer`]);
//! - [`contracts`], the behaviour every adapter of a port must show;
//! - fixtures such as [`scramble_sample_data`].
//!
//! Each service is watched by a small reaper process that waits for the test
//! process to exit, then stops the service and removes its directory; a
//! `static` is never dropped, so this is the one place cleanup can live.

pub mod contracts;
pub mod haproxy;
mod rabbitmq;
mod redis;
mod smtp;
mod switch;

pub use haproxy::Haproxy;
pub use rabbitmq::{RabbitBroker, RabbitMq};
pub use redis::{Redis, RedisServer};
pub use smtp::SmtpServer;
pub use switch::TcpSwitch;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A PostgreSQL server for tests.
#[derive(Debug)]
pub struct Postgres {
    /// URL of the `postgres` database, for creating and dropping others.
    admin_url: String,
}

impl Postgres {
    /// The server of this test process: `ANB_TEST_DATABASE_URL` when set,
    /// else a throwaway cluster started on first use.
    ///
    /// # Panics
    /// When no PostgreSQL server binaries are installed or the cluster does
    /// not start; the message says what to install.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| match std::env::var("ANB_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Self { admin_url: url },
            _ => Self::throwaway(),
        })
    }

    /// URL of the administrative database.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// URL of the database `name` on this server.
    pub fn url_of(&self, name: &str) -> String {
        let (base, _) = self.admin_url.rsplit_once('/').expect("database URL ends with /dbname");
        format!("{base}/{name}")
    }

    /// Creates an empty database for one test; it is dropped with the guard.
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn fresh_database(&'static self) -> TestDatabase {
        use sea_orm::ConnectionTrait;
        let name = format!("anb_test_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(self.admin_url()).await.expect("connect to the test PostgreSQL");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("CREATE DATABASE");
        admin.close().await.expect("close");
        TestDatabase { url: self.url_of(&name), name, server: self }
    }

    fn throwaway() -> Self {
        let cluster = Cluster::create();
        let admin_url = cluster.admin_url();
        // Shared by the whole test process: its reaper stops it at the end.
        std::mem::forget(cluster);
        Self { admin_url }
    }
}

/// A PostgreSQL cluster of one test's own, which the test may stop and start
/// (to play an outage); stopped and removed when dropped, and by a reaper if
/// the test process dies first.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `runuser -u USER --` when running as root (initdb refuses root).
    run_as: Vec<String>,
}

impl Cluster {
    /// Creates and starts a cluster on a free port.
    ///
    /// # Panics
    /// When no PostgreSQL server binaries are installed or it does not start.
    pub fn create() -> Self {
        let bin = postgres_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin or on PATH: \
                 install the `postgresql` package (make test does), or set ANB_TEST_DATABASE_URL to a server"
            )
        });
        let dir = tempfile::Builder::new().prefix("anb-pg-").tempdir().expect("temporary directory").keep();
        let run_as: Vec<String> = if is_root() {
            let user = ["postgres", "nobody"].into_iter().find(|u| succeeds(Command::new("id").arg("-u").arg(u))).expect("a non-root user");
            assert!(succeeds(Command::new("chown").args(["-R", user]).arg(&dir)), "chown {} to {user}", dir.display());
            vec!["runuser".into(), "-u".into(), user.into(), "--".into()]
        } else {
            Vec::new()
        };
        let cluster = Self { bin, dir, port: free_port(), run_as };
        let data = cluster.data_arg();
        assert!(
            succeeds(cluster.pg("initdb").args(["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])),
            "initdb failed in {}",
            cluster.dir.display()
        );
        cluster.start();
        reap_when_done(&cluster.stop_command("immediate"), &cluster.dir);
        cluster
    }

    /// Starts the (stopped) cluster on its port.
    ///
    /// # Panics
    /// When it does not start.
    pub fn start(&self) {
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", self.port, self.dir.display());
        let log = self.dir.join("postgres.log");
        let started = succeeds(self.pg("pg_ctl").args([
            "-D",
            &self.data_arg(),
            "-o",
            &options,
            "-l",
            log.to_str().expect("UTF-8"),
            "-w",
            "-t",
            "60",
            "start",
        ]));
        assert!(started, "pg_ctl start failed:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    /// Stops the cluster at once, cutting every connection.
    pub fn stop(&self) {
        assert!(succeeds(self.pg("pg_ctl").args(["-D", &self.data_arg(), "-m", "immediate", "-w", "stop"])), "pg_ctl stop failed");
    }

    /// URL of the `postgres` database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A hot standby of `primary`: a base backup of it (`pg_basebackup -R`,
    /// which also writes the streaming-replication settings), started on a
    /// free port, replaying the primary's WAL as it comes.
    ///
    /// # Panics
    /// When the backup or the start fails.
    pub fn standby_of(primary: &Cluster) -> Self {
        let dir = tempfile::Builder::new().prefix("anb-pg-standby-").tempdir().expect("temporary directory").keep();
        if let Some(user) = primary.run_as.get(2) {
            assert!(succeeds(Command::new("chown").args(["-R", user]).arg(&dir)), "chown {} to {user}", dir.display());
        }
        let standby = Self { bin: primary.bin.clone(), dir, port: free_port(), run_as: primary.run_as.clone() };
        let port = primary.port.to_string();
        let data = standby.data_arg();
        let backup = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D", &data, "-R", "-X", "stream", "-c", "fast", "--no-sync"];
        assert!(succeeds(standby.pg("pg_basebackup").args(backup)), "pg_basebackup of the primary on port {port} failed");
        standby.start();
        reap_when_done(&standby.stop_command("immediate"), &standby.dir);
        standby
    }

    /// Promotes this standby to a primary, waiting until it accepts writes.
    ///
    /// # Panics
    /// When it does not.
    pub fn promote(&self) {
        assert!(succeeds(self.pg("pg_ctl").args(["-D", &self.data_arg(), "-w", "-t", "60", "promote"])), "pg_ctl promote failed");
    }

    fn data_arg(&self) -> String {
        self.dir.join("data").to_str().expect("UTF-8 temp path").to_owned()
    }

    fn pg(&self, tool: &str) -> Command {
        let mut command = Command::new(self.run_as.first().map_or_else(|| self.bin.join(tool), PathBuf::from));
        command.args(self.run_as.iter().skip(1));
        if !self.run_as.is_empty() {
            command.arg(self.bin.join(tool));
        }
        command
    }

    fn stop_command(&self, mode: &str) -> String {
        format!("{} {} -D '{}' -m {mode} stop", self.run_as.join(" "), self.bin.join("pg_ctl").display(), self.data_arg())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("sh").args(["-c", &self.stop_command("immediate")]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A database of its own for one test, dropped (connections and all) when
/// this guard is.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    name: String,
    server: &'static Postgres,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.server.admin_url.clone(), self.name.clone());
        // Drop may run inside a runtime, which cannot block on another future.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                use sea_orm::ConnectionTrait;
                let admin = sea_orm::Database::connect(&admin_url).await?;
                admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// The moto server (S3 and SQS on one endpoint) of this test process.
#[derive(Debug)]
pub struct Moto {
    endpoint: String,
}

impl Moto {
    /// Starts `moto_server` on a free loopback port on first use. It is found
    /// at `ANB_MOTO_SERVER`, else in the virtual environment `make test`
    /// creates under the target directory.
    ///
    /// # Panics
    /// When moto is not installed or does not start; the message says how to
    /// install it.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// A server of the calling test's own, so that what moto records
    /// (`/moto-api/data.json`) holds that test's resources only; stopped when
    /// the test process ends.
    ///
    /// # Panics
    /// As [`Moto::shared`].
    pub fn own() -> Self {
        Self::start()
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Environment variables that point an AWS SDK client at this server.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// An AWS SDK configuration pointed at this server, with test
    /// credentials and region `us-east-1`.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::from_env().endpoint_url(&self.endpoint).region(aws_config::Region::new("us-east-1")).test_credentials().load().await
    }

    #[expect(clippy::zombie_processes, reason = "the server outlives this process; its reaper stops it")]
    fn start() -> Self {
        let server = moto_server();
        let dir = tempfile::Builder::new().prefix("anb-moto-").tempdir().expect("temporary directory").keep();
        let port = free_port();
        let log = std::fs::File::create(dir.join("moto.log")).expect("moto log");
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        reap_when_done(&format!("kill {}", child.id()), &dir);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on {port}:\n{}",
                std::fs::read_to_string(dir.join("moto.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { endpoint: format!("http://127.0.0.1:{port}") }
    }
}

/// The cargo target directory of the running test executable
/// (`target/debug/deps/test-…` → `target`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors().nth(3).expect("target directory").to_path_buf()
}

fn moto_server() -> PathBuf {
    test_tool("moto_server", "ANB_MOTO_SERVER")
}

/// A tool of the test virtual environment `make test-tools` creates under
/// the target directory, or the executable the variable `env` names.
///
/// # Panics
/// When it is not installed; the message says how to install it.
pub fn test_tool(name: &str, env: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let path = target_dir().join("test-venv/bin").join(name);
    assert!(
        path.exists(),
        "{} not found: `make test` installs it into that virtual environment (or run `make test-tools`), \
         or set {env} to the executable",
        path.display()
    );
    path
}

fn postgres_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| bin.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
    versions.pop().or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
    })
}

/// Starts a detached shell that waits for this process to end, then runs
/// `stop` and removes `dir`.
#[expect(clippy::zombie_processes, reason = "the reaper must outlive this process")]
fn reap_when_done(stop: &str, dir: &Path) {
    let script = format!(
        "trap '' INT TERM HUP; while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop}; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the cleanup watcher");
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn succeeds(command: &mut Command) -> bool {
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Scrambles the sample data of an MP4 in place (all of the first `mdat`
/// payload past its first 64 bytes), leaving every box and index intact: a
/// file that passes the upload checks but cannot be decoded.
///
/// # Panics
/// When the bytes hold no `mdat` box.
pub fn scramble_sample_data(bytes: &mut [u8]) {
    let at = bytes.windows(4).position(|w| w == b"mdat").expect("an mdat box");
    let size = u32::from_be_bytes(bytes[at - 4..at].try_into().expect("4 bytes")) as usize;
    let end = (at - 4 + size).min(bytes.len());
    for b in &mut bytes[at + 4 + 64..end] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
}
