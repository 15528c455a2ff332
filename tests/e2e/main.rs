//! End-to-end tests: the real `anb-web` binary on port 0 with a temporary
//! data directory, driven over HTTP as a client following docs/api.md would.

mod access;
mod attacks;
mod crashes;
mod disk_full;
mod hostile;
mod limits;
mod observability;
mod schema;
mod startup;

use std::time::Duration;

use anb_e2e::{Clips, TestApp, ffprobe};
use reqwest::Method;
use serde_json::{Value, json};

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_else(|| panic!("no detail in {body}"))
}

#[tokio::test]
async fn sign_up_and_log_in_answer_as_documented() {
    let app = TestApp::spawn(0, &[]).await;
    app.sign_up("ana@example.com", "Ana", "Bogotá").await;

    let post = |body: Value| {
        let (http, url) = (app.http.clone(), app.url("/api/auth/signup"));
        async move { anb_e2e::json_of(http.post(url).json(&body).send().await.unwrap()).await }
    };
    let valid = json!({"first_name": "Ana", "last_name": "Pérez", "email": "ANA@example.com", "password1": "S3cure!pass",
        "password2": "S3cure!pass", "city": "Bogotá", "country": "Colombia"});
    let (status, body) = post(valid.clone()).await;
    assert_eq!((status, detail(&body)), (400, "El correo electrónico ya está registrado."));

    for (field, value, expected) in [
        ("password2", "Other!pass1", "Las contraseñas no coinciden."),
        ("email", "not-an-email", "El correo electrónico no es válido."),
        ("password1", "short", "La contraseña debe tener al menos 8 caracteres."),
        ("city", "", "Ciudad: el campo es obligatorio."),
        ("last_name", " ", "Apellido: el campo es obligatorio."),
    ] {
        let mut body = valid.clone();
        body["email"] = json!("new@example.com");
        body[field] = json!(value);
        if field == "password1" {
            body["password2"] = json!(value);
        }
        let (status, answer) = post(body).await;
        assert_eq!((status, detail(&answer)), (400, expected), "{field}");
    }
    let mut missing = valid.clone();
    missing.as_object_mut().unwrap().remove("country");
    assert_eq!(post(missing).await.0, 400);

    let login = |email: &str, password: &str| {
        let (http, url, body) = (app.http.clone(), app.url("/api/auth/login"), json!({"email": email, "password": password}));
        async move { anb_e2e::json_of(http.post(url).json(&body).send().await.unwrap()).await }
    };
    let (status, token) = login("Ana@Example.com", "S3cure!pass").await;
    assert_eq!(status, 200);
    assert_eq!((token["token_type"].as_str(), token["expires_in"].as_u64()), (Some("Bearer"), Some(3600)));
    let (wrong, wrong_body) = login("ana@example.com", "nope-nope").await;
    let (unknown, unknown_body) = login("who@example.com", "S3cure!pass").await;
    assert_eq!((wrong, unknown), (401, 401));
    assert_eq!(detail(&wrong_body), detail(&unknown_body), "same answer for both");
    assert!(!app.log().contains("S3cure!pass"), "a password reached the log");
}

#[tokio::test]
async fn protected_routes_refuse_missing_malformed_and_forged_tokens() {
    let app = TestApp::spawn(0, &[]).await;
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIiwiZXhwIjo5OTk5OTk5OTk5fQ.c2lnbmF0dXJl";
    for (method, path) in [
        (Method::GET, "/api/videos"),
        (Method::GET, "/api/videos/1"),
        (Method::DELETE, "/api/videos/1"),
        (Method::POST, "/api/videos/upload"),
        (Method::POST, "/api/public/videos/1/vote"),
    ] {
        for token in [None, Some("garbage"), Some(forged)] {
            let (status, body) = app.call(method.clone(), path, token).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert_eq!(body["status"], 401);
        }
    }
}

#[tokio::test]
async fn every_bad_upload_is_rejected_and_leaves_nothing_behind() {
    let clips = Clips::get().await;
    let app = TestApp::spawn(0, &[]).await;
    let token = app.player("p@example.com", "Pablo", "Cali").await;

    let cases = [
        ("not-video.mp4", 400, "MP4"),
        ("short.mp4", 400, "Duración 5.0 s"),
        ("long.mp4", 400, "Duración 61.0 s"),
        ("small.mp4", 400, "1280x720"),
        ("big.mp4", 413, "100 MB"),
        ("mpeg4.mp4", 400, "MPEG-4 Parte 2"),
        ("lying.mp4", 400, "declara 1920x1080 pero el video codificado es 640x360"),
    ];
    for (name, status, words) in cases {
        let (got, body) = app.upload(&token, Some("Mi tiro"), Some(&clips.path(name))).await;
        assert_eq!(got, status, "{name}: {body}");
        assert!(detail(&body).contains(words), "{name}: {body}");
    }
    let (status, body) = app.upload(&token, None, Some(&clips.path("valid.mp4"))).await;
    assert_eq!((status, detail(&body)), (400, "El título es obligatorio."));
    let (status, body) = app.upload(&token, Some("sin archivo"), None).await;
    assert_eq!((status, detail(&body)), (400, "El archivo de video (video_file) es obligatorio."));
    let (status, _) = app.upload(&token, Some(&"x".repeat(201)), Some(&clips.path("valid.mp4"))).await;
    assert_eq!(status, 400);

    assert_eq!(app.get("/api/videos", Some(&token)).await, (200, json!([])));
    assert_eq!(app.files_in("files"), Vec::<std::path::PathBuf>::new(), "stored files left behind");
    assert_eq!(app.files_in("tmp"), Vec::<std::path::PathBuf>::new(), "temporary files left behind");
}

#[tokio::test]
async fn phone_movies_and_fragmented_files_are_accepted_and_processed() {
    let clips = Clips::get().await;
    let app = TestApp::spawn(1, &[]).await;
    let token = app.player("phone@example.com", "Fona", "Cali").await;
    let (status, body) = app.upload(&token, Some("Desde el teléfono"), Some(&clips.path("phone.mov"))).await;
    assert_eq!(status, 201, "a QuickTime movie is accepted: {body}");
    let (status, body) = app.upload(&token, Some("Fragmentado"), Some(&clips.path("fragmented.mp4"))).await;
    assert_eq!(status, 201, "a fragmented MP4 is read whole (25 s): {body}");
    let (_, mine) = app.get("/api/videos", Some(&token)).await;
    for video in mine.as_array().unwrap() {
        let id = video["video_id"].as_i64().unwrap();
        let done = app.wait_processed(&token, id, Duration::from_secs(300)).await;
        assert_eq!(done["status"], "processed", "{done}\n{}", app.log());
    }
}

#[tokio::test]
async fn a_valid_upload_is_processed_to_spec_then_voted_and_ranked() {
    let clips = Clips::get().await;
    let app = TestApp::spawn(1, &[]).await;
    let ana = app.player("ana@example.com", "Ana", "Bogotá").await;
    let beto = app.player("beto@example.com", "Beto", "Cali").await;

    let (status, body) = app.upload(&ana, Some("Mi mejor tiro"), Some(&clips.path("valid.mp4"))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["message"], "Video subido correctamente. Procesamiento en curso.");
    assert_eq!(body["task_id"].as_str().unwrap().len(), 36);
    let (_, list) = app.get("/api/videos", Some(&ana)).await;
    let id = list[0]["video_id"].as_i64().unwrap();

    // Watched through the event stream: progress rises as the job goes, and
    // the stream ends with the processed video.
    let events = app.events(&ana, id, Duration::from_secs(180)).await;
    let progress: Vec<u64> = events.iter().filter_map(|e| e["progress"].as_u64()).collect();
    println!("e2e: event stream of one job: {} events, progress {progress:?}, then {}", events.len(), events.last().unwrap()["status"]);
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "progress only rises, one event a change: {progress:?}");
    assert!(progress.len() >= 3 && progress.iter().all(|p| *p <= 100), "seen on its way: {progress:?}");
    assert!(events.iter().all(|e| e["status"] != "processing" || e["progress"].is_u64()), "every processing event has its progress");
    let video = events.last().unwrap().clone();
    assert_eq!(video["status"], "processed", "the stream ends with the processed video: {events:?}");
    assert!(video.get("progress").is_none(), "no progress once processed");
    assert_eq!(
        video,
        app.get(&format!("/api/videos/{id}"), Some(&ana))
            .await
            .1
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                for url in ["original_url", "processed_url"] {
                    o.insert(url.into(), video[url].clone());
                }
                Value::Object(o)
            })
            .unwrap(),
        "the same detail object as GET /api/videos/{{id}}"
    );
    assert_eq!(video["votes"], 0);
    assert!(video["processed_at"].as_str().unwrap().ends_with('Z'));

    let processed = app.data.path().join("downloaded.mp4");
    let bytes = app.http.get(video["processed_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    std::fs::write(&processed, &bytes).unwrap();
    let streams = ffprobe(&processed, "stream=codec_type,codec_name,width,height,pix_fmt");
    assert_eq!(streams.matches("codec_type=").count(), 1, "{streams}");
    for expected in ["codec_name=h264", "width=1280", "height=720", "pix_fmt=yuv420p", "codec_type=video"] {
        assert!(streams.contains(expected), "{expected} missing in {streams}");
    }
    let duration: f64 = ffprobe(&processed, "format=duration").trim().trim_start_matches("duration=").parse().unwrap();
    assert!((duration - 26.0).abs() <= 0.1, "duration {duration}");
    let original = app.http.get(video["original_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(original.status(), 200);

    assert_eq!(app.get(&format!("/api/videos/{id}"), Some(&beto)).await.0, 403);
    assert_eq!(app.call(Method::DELETE, &format!("/api/videos/{id}"), Some(&beto)).await.0, 403);
    assert_eq!(app.get("/api/videos/999999", Some(&ana)).await.0, 404);

    let (status, public) = app.get("/api/public/videos", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (public[0]["video_id"].as_i64(), public[0]["username"].as_str(), public[0]["city"].as_str()),
        (Some(id), Some("Ana Tester"), Some("Bogotá"))
    );

    let vote = format!("/api/public/videos/{id}/vote");
    assert_eq!(app.call(Method::POST, &vote, Some(&beto)).await, (200, json!({"message": "Voto registrado exitosamente."})));
    let (status, again) = app.call(Method::POST, &vote, Some(&beto)).await;
    assert_eq!((status, detail(&again)), (400, "Ya has votado por este video."));
    assert_eq!(app.call(Method::POST, "/api/public/videos/999999/vote", Some(&beto)).await.0, 404);
    let (status, own) = app.call(Method::POST, &vote, Some(&ana)).await;
    assert_eq!((status, detail(&own)), (400, "No puedes votar por tu propio video."));
    let carla = app.player("carla@example.com", "Carla", "Cali").await;
    assert_eq!(app.call(Method::POST, &vote, Some(&carla)).await.0, 200);

    let (_, ranking) = app.get("/api/public/rankings", None).await;
    assert_eq!(ranking, json!([{"position": 1, "username": "Ana Tester", "city": "Bogotá", "votes": 2}]));
    assert_eq!(app.get("/api/public/rankings?city=BOGOT%C3%81", None).await.1[0]["votes"], 2);
    assert_eq!(app.get("/api/public/rankings?city=Cali", None).await, (200, json!([])));
    assert_eq!(app.get("/api/public/rankings?limit=0", None).await.0, 400);
    assert_eq!(app.get("/api/public/rankings?limit=abc", None).await.0, 400);
    assert_eq!(app.get(&format!("/api/videos/{id}"), Some(&ana)).await.1["votes"], 2);

    let (status, body) = app.call(Method::DELETE, &format!("/api/videos/{id}"), Some(&ana)).await;
    assert_eq!(status, 400, "a public video cannot be deleted: {body}");
}

#[tokio::test]
async fn owners_delete_their_waiting_videos_with_the_files() {
    let clips = Clips::get().await;
    let app = TestApp::spawn(0, &[]).await;
    let token = app.player("d@example.com", "Dora", "Cali").await;
    let (status, _) = app.upload(&token, Some("borrar"), Some(&clips.path("valid.mp4"))).await;
    assert_eq!(status, 201);
    let (_, list) = app.get("/api/videos", Some(&token)).await;
    assert_eq!((list[0]["status"].as_str(), &list[0]["processed_url"]), (Some("uploaded"), &Value::Null));
    let id = list[0]["video_id"].as_i64().unwrap();
    assert_eq!(app.files_in("files/uploaded").len(), 1);

    let (status, body) = app.call(Method::DELETE, &format!("/api/videos/{id}"), Some(&token)).await;
    assert_eq!((status, body), (200, json!({"message": "El video ha sido eliminado exitosamente.", "video_id": id})));
    assert!(app.files_in("files").is_empty(), "files left: {:?}", app.files_in("files"));
    assert_eq!(app.get(&format!("/api/videos/{id}"), Some(&token)).await.0, 404);
    assert_eq!(app.call(Method::DELETE, &format!("/api/videos/{id}"), Some(&token)).await.0, 404);
}

#[tokio::test]
async fn a_broken_stream_ends_failed_with_a_reason_after_bounded_attempts() {
    let clips = Clips::get().await;
    let app = TestApp::spawn(1, &[("ANB_MAX_ATTEMPTS", "2")]).await;
    let token = app.player("c@example.com", "Carla", "Cali").await;
    let (status, body) = app.upload(&token, Some("roto"), Some(&clips.path("corrupt.mp4"))).await;
    assert_eq!(status, 201, "the headers are valid, so the web checks pass: {body}");
    let (_, list) = app.get("/api/videos", Some(&token)).await;
    let id = list[0]["video_id"].as_i64().unwrap();
    let video = app.wait_processed(&token, id, Duration::from_secs(120)).await;
    assert_eq!(video["status"], "failed", "{video}");
    assert!(!video["failure_reason"].as_str().unwrap().is_empty(), "{video}");
    assert_eq!(video["processed_url"], Value::Null);
    assert_eq!(app.get("/api/public/videos", None).await, (200, json!([])));

    // An operator retries it (it fails again: the stream is still broken),
    // and what cannot be retried is said so.
    let retry = |ids: &[String]| {
        std::process::Command::new(anb_e2e::binary("anb-worker"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ANB_DATA_DIR", app.data.path())
            .arg("retry")
            .args(ids)
            .output()
            .unwrap()
    };
    let done = retry(&[id.to_string()]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_eq!(String::from_utf8_lossy(&done.stdout), format!("video {id}: queued again\n"));
    let started = std::time::Instant::now();
    let again = loop {
        let (_, video) = app.get(&format!("/api/videos/{id}"), Some(&token)).await;
        if video["status"] != "failed" || started.elapsed() > Duration::from_secs(5) {
            break video;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(again["status"], "failed", "retried: {again}");
    let video = app.wait_processed(&token, id, Duration::from_secs(120)).await;
    assert_eq!(video["status"], "failed", "{video}");
    assert_eq!(anb_e2e::video_ids_logged(&app.log(), "processing started").iter().filter(|&&v| v == id).count(), 4, "2 attempts, twice");
    let refused = retry(&[id.to_string(), id.to_string(), "999".into()]);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stdout).into_owned();
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 3, "{said}");
    assert_eq!(lines[0], format!("video {id}: queued again"));
    assert!(lines[1].starts_with(&format!("video {id}: not retried: it is ")) && lines[1].ends_with(", not failed"), "{said}");
    assert_eq!(lines[2], "video 999: not retried: no such video");
    let video = app.wait_processed(&token, id, Duration::from_secs(120)).await;
    assert_eq!(video["status"], "failed", "{video}");

    assert_eq!(app.call(Method::DELETE, &format!("/api/videos/{id}"), Some(&token)).await.0, 200);
    assert!(app.files_in("work").is_empty(), "scratch files left: {:?}", app.files_in("work"));
}

#[tokio::test]
async fn the_service_describes_itself_and_reports_errors_as_problems() {
    let mut app = TestApp::spawn(0, &[]).await;
    assert_eq!(app.get("/api/health", None).await, (200, json!({"status": "ok"})));
    let (status, spec) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    for path in [
        "/auth/signup",
        "/auth/login",
        "/videos/upload",
        "/videos",
        "/videos/{video_id}",
        "/public/videos",
        "/public/videos/{video_id}/vote",
        "/public/rankings",
        "/health",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing from the spec");
    }
    let docs = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().to_lowercase().contains("swagger"));

    let response = app.http.get(app.url("/no/such/route")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert_eq!(app.call(Method::PUT, "/api/health", None).await.0, 405);
    let oversized = app
        .http
        .post(app.url("/api/auth/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);

    let status = app.terminate();
    assert!(status.success(), "SIGTERM must end in exit 0, got {status}");
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_with_a_message_naming_it() {
    for (name, value, named) in [
        ("ANB_HTTP_ADDR", "nowhere", "http-addr"),
        ("ANB_WORKERS", "many", "workers"),
        ("ANB_JWT_SECRET", "short", "jwt-secret"),
        ("ANB_MAIL", "smtp", "mail-from"),
    ] {
        let out = std::process::Command::new(anb_e2e::binary("anb-web"))
            .env(name, value)
            .env("ANB_DATA_DIR", "/nonexistent/never-used")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}={value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{name}: {stderr}");
    }
    let help = std::process::Command::new(anb_e2e::binary("anb-web")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for variable in ["ANB_HTTP_ADDR", "ANB_DATA_DIR", "ANB_DATABASE_URL", "ANB_WORKERS", "ANB_JWT_SECRET", "ANB_PUBLIC_BASE_URL"] {
        assert!(help.contains(variable), "{variable} missing from --help");
    }
}
