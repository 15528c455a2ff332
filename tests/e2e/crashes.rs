//! Crashes at the worst moment, on one node: `kill -9` during an upload and
//! during a transcode, and a video deleted while a worker processes it.

use std::time::{Duration, Instant};

use anb_e2e::{Clips, TestApp, video_ids_logged};
use futures::StreamExt;
use reqwest::Method;
use serde_json::json;

/// Waits until `done` holds, or panics after `limit` with `what`.
async fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_kill_during_an_upload_leaves_no_row_and_the_next_start_sweeps_its_file() {
    let mut app = TestApp::spawn(0, &[]).await;
    let token = app.player("k@example.com", "Kim", "Cali").await;

    // A client that sends the form's start and 2 MB of a 50 MB file, then stalls.
    let boundary = "anbboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nCortado\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"video_file\"; filename=\"v.mp4\"\r\nContent-Type: video/mp4\r\n\r\n"
    );
    let chunks = vec![Ok::<_, std::io::Error>(head.into_bytes()), Ok(vec![0u8; 2 << 20])];
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks).chain(futures::stream::pending()));
    let request = app
        .http
        .post(app.url("/api/videos/upload"))
        .bearer_auth(&token)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .header("content-length", (50u64 << 20).to_string())
        .body(body)
        .send();
    let pending = tokio::spawn(request);
    until(Duration::from_secs(20), "the upload reaching the disk", || {
        app.files_in("tmp").iter().any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 1 << 20))
    })
    .await;

    app.restart().await; // kill -9, then start again
    pending.abort();
    assert_eq!(app.files_in("tmp"), Vec::<std::path::PathBuf>::new(), "the half upload was swept at start");
    assert_eq!(app.get("/api/videos", Some(&token)).await, (200, json!([])), "no half video row");
    assert!(app.log().contains("removed a stale upload"), "{}", app.log());
}

#[tokio::test]
async fn a_kill_during_a_transcode_is_taken_up_after_restart_and_processed_once() {
    let clips = Clips::get().await;
    let mut app = TestApp::spawn(1, &[("ANB_JOB_VISIBILITY", "4")]).await;
    let token = app.player("t@example.com", "Toni", "Cali").await;
    let id = app.upload_video(&token, "Interrumpida", &clips.path("valid.mp4")).await;
    until(Duration::from_secs(60), "the transcode starting", || video_ids_logged(&app.log(), "processing started").contains(&id)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    app.restart().await;
    let video = app.wait_processed(&token, id, Duration::from_secs(180)).await;
    assert_eq!(video["status"], "processed", "{video}");
    let logs = app.all_logs();
    assert_eq!(video_ids_logged(&logs, "video processed"), [id], "processed once:\n{logs}");
    assert_eq!(app.files_in("work"), Vec::<std::path::PathBuf>::new(), "the killed job's scratch files are gone");
    assert_eq!(app.files_in("files/processed").len(), 1);
}

#[tokio::test]
async fn deleting_a_video_while_it_is_processed_leaves_no_files_and_the_job_ends() {
    let clips = Clips::get().await;
    let app = TestApp::spawn(1, &[]).await;
    let token = app.player("d@example.com", "Dani", "Cali").await;
    assert_eq!(app.upload(&token, Some("Borrada"), Some(&clips.path("valid.mp4"))).await.0, 201);
    let (_, mine) = app.get("/api/videos", Some(&token)).await;
    let id = mine[0]["video_id"].as_i64().unwrap();
    until(Duration::from_secs(60), "the transcode starting", || video_ids_logged(&app.log(), "processing started").contains(&id)).await;

    let (status, body) = app.call(Method::DELETE, &format!("/api/videos/{id}"), Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    until(Duration::from_secs(120), "the worker letting the job go", || {
        let log = app.log();
        ["job acknowledged without work", "video deleted while processing", "job visibility lost"].iter().any(|l| log.contains(l))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.files_in("files"), Vec::<std::path::PathBuf>::new(), "no original or processed file left");
    assert_eq!(app.files_in("work"), Vec::<std::path::PathBuf>::new(), "no scratch left");
    assert_eq!(app.get(&format!("/api/videos/{id}"), Some(&token)).await.0, 404);
    assert!(!app.log().contains("panicked"));
}

#[tokio::test]
async fn a_client_that_stops_sending_gets_408_and_leaves_nothing() {
    let app = TestApp::spawn(0, &[("ANB_UPLOAD_IDLE_TIMEOUT", "2")]).await;
    let token = app.player("s@example.com", "Sol", "Cali").await;
    let boundary = "anbboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nLenta\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"video_file\"; filename=\"v.mp4\"\r\nContent-Type: video/mp4\r\n\r\n"
    );
    let chunks = vec![Ok::<_, std::io::Error>(head.into_bytes()), Ok(vec![0u8; 64 << 10])];
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks).chain(futures::stream::pending()));
    let started = Instant::now();
    let response = app
        .http
        .post(app.url("/api/videos/upload"))
        .bearer_auth(&token)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .header("content-length", (10u64 << 20).to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 408);
    assert!(started.elapsed() < Duration::from_secs(10), "answered after {:?}", started.elapsed());
    assert_eq!(app.files_in("tmp"), Vec::<std::path::PathBuf>::new(), "the partial upload is removed");
    assert_eq!(app.get("/api/videos", Some(&token)).await, (200, json!([])));
}
