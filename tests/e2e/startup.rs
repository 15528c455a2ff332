//! Start-up: the settings are checked as a whole before anything connects,
//! and a web-only host needs no GStreamer.

use anb_e2e::TestApp;

/// `anb-web` run once with only these variables; its exit status and log.
fn start_once(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(anb_e2e::binary("anb-web"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ANB_DATA_DIR", data.path())
        .env("ANB_HTTP_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn settings_that_cannot_work_together_stop_start_up_before_anything_connects() {
    // The database is unreachable: only a check made before connecting can
    // answer with the setting to fix.
    let unreachable = ("ANB_DATABASE_URL", "postgres://nobody@127.0.0.1:1/anb");
    let cases: [(&[(&str, &str)], &str); 11] = [
        (&[("ANB_JWT_SECRET", "hunter2-is-too-short")], "at least 32 characters"),
        (&[unreachable], "ANB_JWT_SECRET"),
        (&[("ANB_STORAGE", "s3")], "ANB_S3_BUCKET"),
        (&[("ANB_QUEUE", "sqs"), ("ANB_WORKERS", "0")], "ANB_SQS_QUEUE_URL"),
        (&[("ANB_QUEUE", "rabbitmq"), ("ANB_WORKERS", "0")], "ANB_AMQP_URL"),
        (&[("ANB_QUEUE", "rabbitmq"), ("ANB_AMQP_URL", "http://anb:hunter2@broker"), ("ANB_WORKERS", "0")], "ANB_AMQP_URL"),
        (&[("ANB_QUEUE", "kafka"), ("ANB_WORKERS", "0")], "ANB_KAFKA_BROKERS"),
        (&[("ANB_QUEUE", "kafka"), ("ANB_KAFKA_BROKERS", " "), ("ANB_WORKERS", "0")], "ANB_KAFKA_BROKERS"),
        (&[("ANB_CACHE", "redis"), ("ANB_WORKERS", "0")], "ANB_REDIS_URL"),
        (&[("ANB_REDIS_URL", "http://anb:hunter2@cache"), ("ANB_WORKERS", "0")], "ANB_REDIS_URL"),
        (&[("ANB_REDIS_URL", "rediss://anb:hunter2@cache:6379"), ("ANB_WORKERS", "0")], "TLS"),
    ];
    for (env, named) in cases {
        let (status, log) = start_once(env);
        assert!(!status.success(), "{env:?} was accepted");
        assert!(log.contains(named) && log.contains("cannot start"), "{env:?}: {log}");
        assert!(!log.contains("cannot start: database"), "checked before connecting: {log}");
        assert!(!log.contains("hunter2"), "no password in the log: {log}");
    }
}

/// Variables under which GStreamer finds no plugin at all, as on a host
/// where none is installed.
fn without_gstreamer(data: &std::path::Path) -> Vec<(String, String)> {
    let empty = data.join("no-plugins");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.display().to_string();
    vec![
        ("GST_PLUGIN_SYSTEM_PATH_1_0".into(), empty.clone()),
        ("GST_PLUGIN_PATH_1_0".into(), empty),
        ("GST_REGISTRY_1_0".into(), data.join("gst-registry.bin").display().to_string()),
    ]
}

#[tokio::test]
async fn a_web_only_host_starts_and_serves_without_gstreamer_and_workers_say_what_is_missing() {
    let data = tempfile::tempdir().unwrap();
    let gst = without_gstreamer(data.path());
    let env: Vec<(&str, &str)> = gst.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let app = TestApp::spawn(0, &env).await;
    let (status, body) = app.get("/api/health", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    app.sign_up("web-only@example.com", "Ana", "Bogotá").await;

    let mut with_workers = env.clone();
    with_workers.push(("ANB_WORKERS", "1"));
    let (status, log) = start_once(&with_workers);
    assert!(!status.success(), "workers started without GStreamer elements");
    assert!(log.contains("x264enc (gstreamer1.0-plugins-ugly)"), "names what to install: {log}");
}

#[tokio::test]
async fn a_database_that_does_not_exist_stops_start_up_at_once_instead_of_waiting() {
    // Waiting fixes an unreachable database, not a wrong name (3D000) or
    // refused credentials: those stop the start with the reason.
    let url = anb_testkit::Postgres::shared().url_of("anb_no_such_database");
    let started = std::time::Instant::now();
    let (status, log) = start_once(&[("ANB_DATABASE_URL", &url), ("ANB_JWT_SECRET", "startup-test-secret-that-is-long-enough")]);
    assert!(!status.success(), "{log}");
    assert!(log.contains("cannot start: database") && log.contains("does not exist"), "{log}");
    assert!(!log.contains("trying again"), "{log}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}
