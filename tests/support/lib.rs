//! Helpers for end-to-end tests: start the real `anb-web` binary on a free
//! port with its own data directory, talk to it over HTTP, make test videos.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// Where cargo put the workspace's binaries (next to this test's executable).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let path = dir.join(name);
    assert!(path.exists(), "{} not found: run `cargo build --bins` first (make test does)", path.display());
    path
}

/// A running `anb-web`, stopped (SIGTERM) and cleaned up when dropped.
pub struct TestApp {
    pub base: String,
    pub data: tempfile::TempDir,
    pub http: reqwest::Client,
    child: Option<Child>,
    /// Settings beyond the data directory and address, kept for restarts.
    env: Vec<(String, String)>,
    /// Small file systems (tmpfs of a given size) mounted over folders of
    /// the data directory, seen by the server only.
    disks: Vec<(String, String)>,
    /// The server's open-files limit (`ulimit -n`), when set.
    open_files: Option<u32>,
}

/// An HTTP client that lets go of idle connections before the server closes
/// them (`ANB_HEADER_TIMEOUT`, 10 s): a request after a long wait never
/// lands on a connection the server is closing.
fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(5)).build().expect("an HTTP client")
}

impl TestApp {
    /// Starts `anb-web` with `workers` embedded workers and extra variables.
    pub async fn spawn(workers: u32, extra: &[(&str, &str)]) -> Self {
        Self::spawn_with_disks(workers, extra, &[]).await
    }

    /// Like [`TestApp::spawn`], with a tmpfs of `size` (`8m`, say) mounted over
    /// each `folder` of the data directory (`""` for all of it), so that a
    /// full disk is a real `ENOSPC`. The server runs in a user and mount
    /// namespace of its own (`unshare`, util-linux; no root needed where
    /// unprivileged user namespaces are allowed, as on Debian); the test sees
    /// those file systems through `/proc/<pid>/root`.
    pub async fn spawn_with_disks(workers: u32, extra: &[(&str, &str)], disks: &[(&str, &str)]) -> Self {
        let mut env = vec![("ANB_WORKERS".to_owned(), workers.to_string()), ("ANB_RETRY_DELAY".to_owned(), "1".to_owned())];
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let disks = disks.iter().map(|(folder, size)| ((*folder).to_owned(), (*size).to_owned())).collect();
        let mut app =
            Self { base: String::new(), data: tempfile::tempdir().unwrap(), http: client(), child: None, env, disks, open_files: None };
        app.start().await;
        app
    }

    /// Like [`TestApp::spawn`], with the server's open-files limit set to
    /// `limit` (soft and hard, with util-linux's `prlimit`, which execs it).
    pub async fn spawn_with_open_files(workers: u32, extra: &[(&str, &str)], limit: u32) -> Self {
        let mut env = vec![("ANB_WORKERS".to_owned(), workers.to_string())];
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut app = Self {
            base: String::new(),
            data: tempfile::tempdir().unwrap(),
            http: client(),
            child: None,
            env,
            disks: Vec::new(),
            open_files: Some(limit),
        };
        app.start().await;
        app
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The server's view of its data directory: under `/proc/<pid>/root`
    /// when it runs on file systems of its own.
    pub fn data_seen_by_server(&self) -> PathBuf {
        match (&self.child, self.disks.is_empty()) {
            (Some(child), false) => Path::new(&format!("/proc/{}/root", child.id())).join(self.data.path().strip_prefix("/").unwrap()),
            _ => self.data.path().to_owned(),
        }
    }

    /// The command that starts the server, with an empty environment.
    fn command(&self) -> Command {
        if let Some(limit) = self.open_files {
            let mut command = Command::new("prlimit");
            command.env_clear().arg(format!("--nofile={limit}:{limit}")).arg(binary("anb-web"));
            return command;
        }
        if self.disks.is_empty() {
            let mut command = Command::new(binary("anb-web"));
            command.env_clear();
            return command;
        }
        // unshare execs the shell, which execs the server: one pid throughout.
        let mut script = String::from("set -e\n");
        for (n, _) in self.disks.iter().enumerate() {
            let (folder, size) = (format!("\"$DATA/${{DISK{n}_FOLDER}}\""), format!("\"size=${{DISK{n}_SIZE}}\""));
            script.push_str(&format!("mkdir -p {folder}\nmount -t tmpfs -o {size} anb-test {folder}\n"));
        }
        script.push_str("exec \"$SERVER\"\n");
        let mut command = Command::new("unshare");
        command.env_clear().args(["--user", "--map-root-user", "--mount", "sh", "-c", &script]);
        command.env("DATA", self.data.path()).env("SERVER", binary("anb-web"));
        for (n, (folder, size)) in self.disks.iter().enumerate() {
            command.env(format!("DISK{n}_FOLDER"), folder).env(format!("DISK{n}_SIZE"), size);
        }
        command
    }

    /// Kills the server (SIGKILL) if it runs, and starts it again on the same
    /// data directory and settings; the earlier log is kept as `server.log.N`.
    pub async fn restart(&mut self) {
        self.kill9();
        let n = (1..).find(|n| !self.data.path().join(format!("server.log.{n}")).exists()).unwrap();
        std::fs::rename(self.data.path().join("server.log"), self.data.path().join(format!("server.log.{n}"))).unwrap();
        self.start().await;
    }

    /// Replaces the server as a rolling deploy does: SIGTERM, its drain
    /// waited for (asserting a clean exit), then a new process on the same
    /// data directory and settings (and so the same port, when the settings
    /// name one); the earlier log is kept as `server.log.N`.
    pub async fn replace(&mut self) {
        let data = self.data.path().to_owned();
        let status = tokio::task::block_in_place(|| self.terminate());
        assert!(status.success(), "anb-web exited with {status} at SIGTERM:\n{}", self.log());
        let n = (1..).find(|n| !data.join(format!("server.log.{n}")).exists()).unwrap();
        std::fs::rename(data.join("server.log"), data.join(format!("server.log.{n}"))).unwrap();
        self.start().await;
    }

    /// Every log line of every start so far.
    pub fn all_logs(&self) -> String {
        let earlier: String = (1..)
            .map_while(|n| std::fs::read_to_string(self.data.path().join(format!("server.log.{n}"))).ok())
            .collect::<Vec<_>>()
            .join("\n");
        format!("{earlier}\n{}", self.log())
    }

    async fn start(&mut self) {
        let log = std::fs::File::create(self.data.path().join("server.log")).unwrap();
        let child = self
            .command()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("ANB_HTTP_ADDR", "127.0.0.1:0")
            .env("ANB_DATA_DIR", self.data.path())
            .env("RUST_LOG", "info")
            // Every test signs up from 127.0.0.1: the sign-up limits apply
            // only where a test sets them.
            .env("ANB_SIGNUP_PER_ADDRESS", "100000")
            .env("ANB_SIGNUP_PER_NETWORK", "1000000")
            // Tests run many servers at once: each scrape port is picked free.
            .env("ANB_METRICS_ADDR", "127.0.0.1:0")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::fs::File::create(self.data.path().join("server.out")).unwrap())
            .stderr(log)
            .spawn()
            .expect("start anb-web");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let log = self.log();
            // `addr=...` in text logs, `"addr":"..."` in JSON ones, on the
            // line that says it serves (the metrics' own port comes first).
            let serving = || log.lines().filter(|l| l.contains("serving"));
            let text = serving().find_map(|l| l.split("addr=").nth(1)).and_then(|r| r.split_whitespace().next());
            let json = serving().find_map(|l| l.split("\"addr\":\"").nth(1)).and_then(|r| r.split('"').next());
            if let Some(addr) = text.or(json) {
                self.base = format!("http://{addr}");
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("anb-web exited with {status}:\n{log}");
            }
            assert!(started.elapsed() < Duration::from_secs(30), "anb-web did not start:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts an `anb-worker` process on this app's data directory and
    /// database; it is stopped when the returned guard drops.
    pub fn spawn_worker(&self) -> Worker {
        self.spawn_worker_with(&[])
    }

    /// [`TestApp::spawn_worker`] with extra variables; its stdout is kept.
    pub fn spawn_worker_with(&self, extra: &[(&str, &str)]) -> Worker {
        let log = std::fs::File::create(self.data.path().join("worker.log")).unwrap();
        let out = std::fs::File::create(self.data.path().join("worker.out")).unwrap();
        let child = Command::new(binary("anb-worker"))
            .env("ANB_DATA_DIR", self.data.path())
            .env("ANB_RETRY_DELAY", "1")
            .envs(extra.iter().copied())
            .stdout(out)
            .stderr(log)
            .spawn()
            .expect("start anb-worker");
        Worker { child, log: self.data.path().join("worker.log"), out: Some(self.data.path().join("worker.out")), _data: None }
    }

    /// What the server wrote on stdout (EMF metric lines, with `ANB_METRICS=emf`).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.out")).unwrap_or_default()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("still running");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > Duration::from_secs(40) {
                let _ = child.kill();
                panic!("anb-web did not stop within 40 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where the server serves its Prometheus text (`ANB_METRICS_ADDR`,
    /// port picked free): `http://127.0.0.1:PORT/metrics`.
    pub fn metrics_url(&self) -> String {
        let log = self.log();
        let addr = log
            .lines()
            .filter(|l| l.contains("metrics at /metrics"))
            .find_map(|l| {
                let text = l.split("addr=").nth(1).and_then(|r| r.split_whitespace().next());
                text.or_else(|| l.split("\"addr\":\"").nth(1).and_then(|r| r.split('"').next()))
            })
            .unwrap_or_else(|| panic!("the server says where its metrics are:\n{log}"));
        format!("http://{addr}/metrics")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signs up `email` (password `S3cure!pass`) in `city`; asserts 201.
    pub async fn sign_up(&self, email: &str, first_name: &str, city: &str) {
        let body = json!({"first_name": first_name, "last_name": "Tester", "email": email,
            "password1": "S3cure!pass", "password2": "S3cure!pass", "city": city, "country": "Colombia"});
        let response = self.http.post(self.url("/api/auth/signup")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }

    /// Logs in and returns the bearer token.
    pub async fn token(&self, email: &str) -> String {
        let response =
            self.http.post(self.url("/api/auth/login")).json(&json!({"email": email, "password": "S3cure!pass"})).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    /// Signs up and logs in a new player.
    pub async fn player(&self, email: &str, first_name: &str, city: &str) -> String {
        self.sign_up(email, first_name, city).await;
        self.token(email).await
    }

    /// Uploads `file` with `title`; returns status and JSON body.
    pub async fn upload(&self, token: &str, title: Option<&str>, file: Option<&Path>) -> (u16, Value) {
        self.upload_as(Some(token), title, file).await
    }

    /// Uploads `file` with `title`, asserting 201; returns the new video's id.
    pub async fn upload_video(&self, token: &str, title: &str, file: &Path) -> i64 {
        let (status, body) = self.upload(token, Some(title), Some(file)).await;
        assert_eq!(status, 201, "{body}");
        let (_, list) = self.get("/api/videos", Some(token)).await;
        list[0]["video_id"].as_i64().expect("the newest video first")
    }

    /// Uploads with an optional token; returns status and JSON body.
    pub async fn upload_as(&self, token: Option<&str>, title: Option<&str>, file: Option<&Path>) -> (u16, Value) {
        let mut form = Form::new();
        if let Some(title) = title {
            form = form.text("title", title.to_owned());
        }
        if let Some(file) = file {
            let bytes = tokio::fs::read(file).await.unwrap();
            form = form.part("video_file", Part::bytes(bytes).file_name("clip.mp4").mime_str("video/mp4").unwrap());
        }
        let mut request = self.http.post(self.url("/api/videos/upload")).multipart(form);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        json_of(response).await
    }

    /// GET with an optional token; returns status and JSON body.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        json_of(request.send().await.unwrap()).await
    }

    /// The events of `GET /api/videos/{id}/events` until the stream ends
    /// (each `data:` line, parsed), within `limit`.
    pub async fn events(&self, token: &str, id: i64, limit: Duration) -> Vec<Value> {
        use futures::StreamExt;
        let response = self.http.get(self.url(&format!("/api/videos/{id}/events"))).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let mut text = String::new();
        let read = async {
            while let Some(chunk) = body.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            }
        };
        tokio::time::timeout(limit, read).await.expect("the event stream ended in time");
        text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| serde_json::from_str(d.trim()).unwrap()).collect()
    }

    /// A request with a method, an optional token and no body.
    pub async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        json_of(request.send().await.unwrap()).await
    }

    /// Polls the video until its status is final or `limit` passes.
    pub async fn wait_processed(&self, token: &str, video_id: i64, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let (status, body) = self.get(&format!("/api/videos/{video_id}"), Some(token)).await;
            assert_eq!(status, 200, "{body}");
            if body["status"] == "processed" || body["status"] == "failed" {
                return body;
            }
            assert!(started.elapsed() < limit, "video {video_id} still {} after {limit:?}:\n{}", body["status"], self.log());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Files below the data directory's `sub` folder.
    pub fn files_in(&self, sub: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() { walk(&path, out) } else { out.push(path) }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_seen_by_server().join(sub), &mut out);
        out
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A running `anb-worker`, killed when dropped.
pub struct Worker {
    child: Child,
    log: PathBuf,
    /// Where its stdout goes, when kept.
    out: Option<PathBuf>,
    _data: Option<tempfile::TempDir>,
}

impl Worker {
    /// Starts `anb-worker` with a data directory of its own and only the
    /// given variables (besides PATH and HOME).
    pub fn spawn(env: &[(String, String)]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let log = data.path().join("worker.log");
        let child = Command::new(binary("anb-worker"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("ANB_DATA_DIR", data.path())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start anb-worker");
        Self { child, log, out: None, _data: Some(data) }
    }

    /// What the worker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the worker wrote on stdout, when it was kept.
    pub fn stdout(&self) -> String {
        self.out.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default()
    }

    /// Asks it to stop (SIGTERM) and waits, at most 40 s.
    ///
    /// # Panics
    /// When it does not stop in time.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(40), "anb-worker did not stop within 40 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Status and JSON body (`null` when the body is not JSON).
pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Test videos, made once per target directory and kept there beside the
/// test tools (`target/test-clips/`): every test process after the first
/// finds them made. Change [`CLIPS_SET`] when the set changes.
pub struct Clips {
    dir: PathBuf,
}

/// The version of the set of clips.
const CLIPS_SET: &str = "set-1";

static CLIPS: OnceCell<Clips> = OnceCell::const_new();

impl Clips {
    /// The shared set, generated on first use.
    pub async fn get() -> &'static Clips {
        CLIPS
            .get_or_init(|| async {
                let dir = anb_testkit::target_dir().join("test-clips").join(CLIPS_SET);
                if dir.join("complete").exists() {
                    return Clips { dir };
                }
                // Made aside, then renamed into place whole: test processes
                // starting together never see half a set.
                std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
                let staging = tempfile::tempdir_in(dir.parent().unwrap()).unwrap();
                let root = staging.path().to_owned();
                tokio::task::spawn_blocking(move || {
                    let make = |name: &str, secs, w, h, fps, audio| {
                        anb_gstreamer::write_test_clip(&root.join(name), secs, w, h, fps, audio).unwrap();
                    };
                    make("valid.mp4", 21, 1920, 1080, 30, true);
                    make("short.mp4", 5, 1920, 1080, 10, false);
                    make("long.mp4", 61, 1920, 1080, 1, false);
                    make("small.mp4", 21, 1280, 720, 2, false);
                    // Valid, and a few hundred kB only.
                    make("light.mp4", 21, 1920, 1080, 1, false);
                    std::fs::write(root.join("not-video.mp4"), b"This is plain text pretending to be a video.").unwrap();
                    let mut corrupt = std::fs::read(root.join("valid.mp4")).unwrap();
                    anb_testkit::scramble_sample_data(&mut corrupt);
                    std::fs::write(root.join("corrupt.mp4"), corrupt).unwrap();
                    // What phones and other tools write, made by ffmpeg.
                    let ffmpeg = |name: &str, size: &str, secs: &str, rate: &str, args: &[&str]| {
                        let source = format!("testsrc2=size={size}:rate={rate}");
                        let out = Command::new("ffmpeg")
                            .args(["-v", "error", "-y", "-f", "lavfi", "-i", &source, "-t", secs, "-pix_fmt", "yuv420p"])
                            .args(args)
                            .arg(root.join(name))
                            .output()
                            .expect("ffmpeg is installed (make deps)");
                        assert!(out.status.success(), "ffmpeg {name}: {}", String::from_utf8_lossy(&out.stderr));
                    };
                    let x264 = ["-c:v", "libx264", "-preset", "ultrafast"];
                    ffmpeg("phone.mov", "1080x1920", "21", "5", &[&x264[..], &["-f", "mov"]].concat());
                    ffmpeg(
                        "fragmented.mp4",
                        "1920x1080",
                        "25",
                        "5",
                        &[&x264[..], &["-movflags", "+frag_keyframe+empty_moov+default_base_moof"]].concat(),
                    );
                    ffmpeg("mpeg4.mp4", "1920x1080", "21", "2", &["-c:v", "mpeg4"]);
                    // 640x360 coded, 1920x1080 claimed by its sample entry.
                    ffmpeg("lying.mp4", "640x360", "21", "2", &x264);
                    let mut lying = std::fs::read(root.join("lying.mp4")).unwrap();
                    let stsd = lying.windows(4).position(|w| w == b"stsd").expect("a sample description");
                    let entry = stsd + lying[stsd..].windows(4).position(|w| w == b"avc1").expect("an avc1 sample entry");
                    lying[entry + 28..entry + 32].copy_from_slice(&[0x07, 0x80, 0x04, 0x38]);
                    std::fs::write(root.join("lying.mp4"), lying).unwrap();
                    let mut big = std::fs::read(root.join("valid.mp4")).unwrap();
                    big.resize(100 * 1024 * 1024 + 1, 0);
                    std::fs::write(root.join("big.mp4"), big).unwrap();
                    std::fs::write(root.join("complete"), b"").unwrap();
                })
                .await
                .unwrap();
                // Another process may have finished first: its set is as good.
                if std::fs::rename(staging.path(), &dir).is_ok() {
                    let _ = staging.keep();
                }
                Clips { dir }
            })
            .await
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The video ids of the log lines that contain `event`, in order (the job
/// span names each line's `video_id`).
pub fn video_ids_logged(log: &str, event: &str) -> Vec<i64> {
    log.lines()
        .filter(|line| line.contains(event))
        .filter_map(|line| line.split("video_id=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect()
}

/// ffprobe's report of a file, as `key=value` lines.
pub fn ffprobe(path: &Path, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", entries, "-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .expect("ffprobe is installed (make deps)");
    String::from_utf8(out.stdout).unwrap()
}
