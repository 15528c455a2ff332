//! Helpers the scale-out tests share.

use std::collections::HashMap;

use anb_e2e::{TestApp, Worker};

/// Uploads `clip` as `title` through `web` and returns the new video's id.
pub async fn upload(web: &TestApp, token: &str, title: &str, clip: &std::path::Path) -> i64 {
    let (status, body) = web.upload(token, Some(title), Some(clip)).await;
    assert_eq!(status, 201, "{body}");
    let (_, mine) = web.get("/api/videos", Some(token)).await;
    mine.as_array().unwrap().iter().find(|v| v["title"] == title).and_then(|v| v["video_id"].as_i64()).expect("the upload is listed")
}

pub fn logs(workers: &[Worker]) -> String {
    workers.iter().map(Worker::log).collect::<Vec<_>>().join("\n")
}

/// How many times each video id appears in `ids`.
pub fn counts(ids: &[i64]) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for id in ids {
        *counts.entry(*id).or_default() += 1;
    }
    counts
}
