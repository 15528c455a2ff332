//! A processing [`Job`] as a broker message: one JSON object, the same on
//! SQS, RabbitMQ and Kafka, written by [`encode`] and read by [`decode`]
//! only.
//!
//! ```json
//! {"v":1,"task_id":"0b0c…","video_id":42}
//! ```
//!
//! How the format may change, so that the processes of two releases can
//! share a queue during a rolling deployment:
//!
//! - **Adding a field** needs no new version: readers ignore fields they do
//!   not know, and a new field must have a meaning when it is missing.
//! - **Anything else** (a field renamed, retyped, removed, or a new field that
//!   old readers must not ignore) raises `v`. Readers refuse a version they
//!   do not know ([`Foreign`]), so such a release deploys its readers (the
//!   workers) before any writer sends the new version.
//! - A message with no `v` is version 1 (messages written before the field
//!   existed).

use anb_domain::{Job, TaskId, VideoId};

/// The version this build writes, and the newest it reads.
pub const VERSION: u32 = 1;

/// Longest message read: a job is under 100 bytes, and a body far larger is
/// not one (nor worth parsing).
const MAX_LEN: usize = 4096;

/// A message that is not a job this build can act on; the text says why,
/// for the log and the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a job: {0}")]
pub struct Foreign(pub String);

/// The message of `job`.
pub fn encode(job: &Job) -> String {
    // Written by hand, so that it cannot fail; `decode` reads it back in the
    // tests, and every broker's contract test sends it through a broker.
    format!(r#"{{"v":{VERSION},"task_id":"{}","video_id":{}}}"#, job.task_id.0, job.video_id.0)
}

/// The job in `message`.
///
/// # Errors
/// [`Foreign`] when the message is not a job of a version this build reads:
/// not JSON, a field missing or of the wrong type, a newer version.
pub fn decode(message: &[u8]) -> Result<Job, Foreign> {
    if message.len() > MAX_LEN {
        return Err(Foreign(format!("{} bytes, far more than a job", message.len())));
    }
    let wire: Wire = serde_json::from_slice(message).map_err(|e| Foreign(e.to_string()))?;
    if wire.v != VERSION {
        return Err(Foreign(format!("version {} (this build reads version {VERSION})", wire.v)));
    }
    Ok(Job { task_id: TaskId(wire.task_id), video_id: VideoId(wire.video_id) })
}

/// What a version-1 message holds.
#[derive(serde::Deserialize)]
struct Wire {
    #[serde(default = "first_version")]
    v: u32,
    task_id: uuid::Uuid,
    video_id: i64,
}

fn first_version() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job { task_id: TaskId(uuid::Uuid::new_v4()), video_id: VideoId(i64::MAX) }
    }

    #[test]
    fn a_job_round_trips_and_reads_as_documented() {
        let job = job();
        let bytes = encode(&job);
        assert_eq!(decode(bytes.as_bytes()), Ok(job));
        let value: serde_json::Value = serde_json::from_str(&bytes).unwrap();
        assert_eq!(value, serde_json::json!({"v": 1, "task_id": job.task_id.0.to_string(), "video_id": i64::MAX}));
    }

    #[test]
    fn older_and_richer_messages_are_jobs() {
        let id = uuid::Uuid::new_v4();
        let before_versions = format!(r#"{{"task_id":"{id}","video_id":7}}"#);
        assert_eq!(decode(before_versions.as_bytes()), Ok(Job { task_id: TaskId(id), video_id: VideoId(7) }));
        let added_field = format!(r#"{{"v":1,"task_id":"{id}","video_id":7,"priority":"high"}}"#);
        assert_eq!(decode(added_field.as_bytes()), Ok(Job { task_id: TaskId(id), video_id: VideoId(7) }));
    }

    #[test]
    fn foreign_messages_say_why() {
        let id = uuid::Uuid::new_v4();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"hello".to_vec(), "expected"),
            (b"".to_vec(), "EOF"),
            (br#"{"video_id":7}"#.to_vec(), "missing field `task_id`"),
            (format!(r#"{{"task_id":"{id}"}}"#).into_bytes(), "missing field `video_id`"),
            (br#"{"task_id":"not-a-uuid","video_id":7}"#.to_vec(), "UUID"),
            (format!(r#"{{"task_id":"{id}","video_id":"7"}}"#).into_bytes(), "invalid type"),
            (format!(r#"{{"v":2,"task_id":"{id}","video_id":7}}"#).into_bytes(), "version 2"),
            (format!(r#"[{{"task_id":"{id}","video_id":7}}]"#).into_bytes(), "invalid type"),
            (vec![b' '; MAX_LEN + 1], "far more than a job"),
        ];
        for (message, why) in cases {
            let Foreign(reason) = decode(&message).unwrap_err();
            assert!(reason.contains(why), "{:?}: {reason:?} should say {why:?}", String::from_utf8_lossy(&message));
        }
    }
}
