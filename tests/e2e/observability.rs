//! What operators see: Prometheus text at `/metrics` (on each binary's
//! `ANB_METRICS_ADDR`, never the public port), CloudWatch EMF lines on stdout
//! (or in `ANB_EMF_FILE`) with `ANB_METRICS=emf`, and JSON log lines with `ANB_LOG_FORMAT=json`,
//! all from real traffic and a real processed video.

use std::time::Duration;

use anb_e2e::{Clips, TestApp};
use serde_json::Value;

/// The value of the first Prometheus sample named `name` whose labels hold
/// every one of `labels` (`key="value"`), if any.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let matches = (series == name || series.starts_with(&format!("{name}{{"))) && labels.iter().all(|l| series.contains(l));
        matches.then(|| value.parse().ok()).flatten()
    })
}

/// The EMF documents in `stdout`, each checked against the format's rules,
/// and the sum of each metric's counts (counters, or samples of histograms).
fn emf(stdout: &str, namespace: &str) -> std::collections::HashMap<String, f64> {
    const UNITS: [&str; 12] = [
        "Count",
        "Percent",
        "Seconds",
        "Milliseconds",
        "Microseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Count/Second",
        "Bits/Second",
        "None",
    ];
    let mut totals = std::collections::HashMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let doc: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(doc["_aws"]["Timestamp"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "{line}");
        let directives = doc["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert!(!directives.is_empty());
        for directive in directives {
            assert_eq!(directive["Namespace"], namespace, "{line}");
            for set in directive["Dimensions"].as_array().unwrap() {
                let set = set.as_array().unwrap();
                assert!(!set.is_empty() && set.len() <= 30, "{line}");
                assert!(set.iter().all(|key| doc[key.as_str().unwrap()].is_string()), "every dimension has a value: {line}");
                assert!(set.iter().any(|key| key == "Service"), "{line}");
            }
            let metrics = directive["Metrics"].as_array().unwrap();
            assert!(!metrics.is_empty() && metrics.len() <= 100, "{line}");
            for metric in metrics {
                let name = metric["Name"].as_str().unwrap();
                assert!(UNITS.contains(&metric["Unit"].as_str().unwrap()), "{line}");
                let value = &doc[name];
                let count = if let Some(n) = value.as_f64() {
                    n
                } else {
                    let (values, counts) = (value["Values"].as_array().unwrap(), value["Counts"].as_array().unwrap());
                    assert!(values.len() == counts.len() && values.len() <= 100, "a distribution: {line}");
                    for key in ["Min", "Max", "Sum", "Count"] {
                        assert!(value[key].is_number(), "{key} in {line}");
                    }
                    value["Count"].as_f64().unwrap()
                };
                *totals.entry(name.to_owned()).or_default() += count;
            }
        }
    }
    totals
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn metrics_and_logs_follow_real_traffic_and_a_processed_video() {
    let clips = Clips::get().await;
    let observed = [("ANB_METRICS", "emf"), ("ANB_LOG_FORMAT", "json")];
    let mut app = TestApp::spawn(0, &observed).await;
    let ana = app.player("obs@example.com", "Olga", "Pasto").await;
    let fan = app.player("fan@example.com", "Fabio", "Cali").await;
    assert_eq!(app.upload(&ana, Some("Medida"), Some(&clips.path("valid.mp4"))).await.0, 201);
    assert_eq!(app.upload(&ana, Some("Corta"), Some(&clips.path("short.mp4"))).await.0, 400);
    let (_, list) = app.get("/api/videos", Some(&ana)).await;
    let id = list[0]["video_id"].as_i64().unwrap();

    let port = free_port().to_string();
    let worker_metrics = format!("127.0.0.1:{port}");
    // The worker's EMF lines go to a file of their own (as on AWS).
    let emf_file = app.data_seen_by_server().join("worker-metrics.log");
    let emf_setting = ("ANB_EMF_FILE", emf_file.to_str().unwrap());
    let mut worker = app.spawn_worker_with(&[("ANB_METRICS_ADDR", worker_metrics.as_str()), observed[0], observed[1], emf_setting]);
    let video = app.wait_processed(&ana, id, Duration::from_secs(180)).await;
    assert_eq!(video["status"], "processed", "{video}");
    let processed = app.http.get(video["processed_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(processed.status(), 200, "the web server serves what the worker stored");
    assert_eq!(app.call(reqwest::Method::POST, &format!("/api/public/videos/{id}/vote"), Some(&fan)).await.0, 200);

    // Prometheus text, from the web server and from the worker.
    let public = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404, "never on the public port");
    let web = app.http.get(app.metrics_url()).send().await.unwrap().text().await.unwrap();
    let route = |r: &str| format!("route=\"{r}\"");
    let upload = route("/api/videos/upload");
    assert_eq!(sample(&web, "http_requests_total", &[&upload, "status=\"201\"", "service=\"anb-web\""]), Some(1.0), "{web}");
    assert_eq!(sample(&web, "http_requests_total", &[&upload, "status=\"400\""]), Some(1.0));
    assert_eq!(sample(&web, "uploads_accepted", &[]), Some(1.0));
    assert_eq!(sample(&web, "uploads_rejected", &["reason=\"duration\""]), Some(1.0));
    assert_eq!(sample(&web, "votes", &[]), Some(1.0));
    assert!(sample(&web, "http_request_duration_ms_count", &[&route("/api/videos/{video_id}")]).is_some_and(|n| n >= 1.0), "{web}");
    assert!(sample(&web, "process_resident_memory_bytes", &[]).is_some_and(|b| b > 1e6));
    let work = app.http.get(format!("http://{worker_metrics}/metrics")).send().await.unwrap().text().await.unwrap();
    for (name, want) in [("jobs_started", 1.0), ("jobs_succeeded", 1.0), ("transcode_seconds_count", 1.0), ("queue_lag_seconds_count", 1.0)]
    {
        assert_eq!(sample(&work, name, &["service=\"anb-worker\""]), Some(want), "{name}: {work}");
    }
    assert!(sample(&work, "upload_to_processed_seconds_sum", &[]).is_some_and(|s| s > 0.5), "{work}");

    // EMF on stdout: written every minute and at shutdown.
    assert!(app.terminate().success());
    assert!(worker.terminate().success());
    let web_emf = emf(&app.stdout(), "ANB/Backend");
    let worker_emf = emf(&std::fs::read_to_string(&emf_file).unwrap(), "ANB/Worker");
    assert!(!worker.stdout().contains("_aws"), "EMF goes to its file only");
    println!("observability: EMF totals, web {web_emf:?}; worker {worker_emf:?}");
    assert_eq!((web_emf.get("uploads_accepted"), web_emf.get("votes")), (Some(&1.0), Some(&1.0)));
    assert!(web_emf.get("http_requests_total").is_some_and(|n| *n >= 6.0), "{web_emf:?}");
    assert_eq!((worker_emf.get("jobs_succeeded"), worker_emf.get("transcode_seconds")), (Some(&1.0), Some(&1.0)));

    // JSON logs: one object a line, the request's id and route on each.
    for (who, log) in [("web", app.all_logs()), ("worker", worker.log())] {
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{who}: not one JSON object ({e}): {line}"));
            assert!(entry["timestamp"].is_string() && entry["level"].is_string() && entry["message"].is_string(), "{who}: {line}");
        }
        assert!(!log.contains("S3cure!pass"), "no password in the {who} log");
    }
    let logs = app.all_logs();
    let entries =
        |log: &str| -> Vec<Value> { log.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect() };
    let handled: Vec<Value> = entries(&logs).into_iter().filter(|e| e["message"] == "handled").collect();
    let vote = handled.iter().find(|e| e["span"]["route"] == "/api/public/videos/{video_id}/vote").expect("the vote is logged");
    assert!(vote["span"]["request_id"].as_str().is_some_and(|id| id.len() == 36), "{vote}");
    assert_eq!(vote["status"], 200);
    assert!(vote["millis"].is_u64());
    let refused = handled.iter().find(|e| e["status"] == 400).expect("a refused upload is logged");
    assert!(refused["span"]["request_id"].as_str().is_some_and(|id| id.len() == 36), "{refused}");
    assert!(
        !handled.iter().any(|e| e["span"]["method"] == "GET" && e["status"] == 200),
        "successful reads are logged at debug, not info: {handled:?}"
    );
    let job_lines: Vec<Value> =
        worker.log().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|e| e["message"] == "video processed").collect();
    assert_eq!(job_lines.len(), 1);
    assert_eq!(job_lines[0]["span"]["video_id"], id.to_string(), "{}", job_lines[0]);
    assert!(job_lines[0]["span"]["task_id"].is_string());
}
