//! Values for tests of the crates above (with the `mocks` feature): a
//! video in any status, consistent with it.

use crate::{ObjectKey, TaskId, UserId, Video, VideoId, VideoStatus};

/// Video `id` of `owner` in `status`, uploaded 2026-03-01T12:00:00Z; a
/// processed one has its key and processing time, a failed one its reason.
///
/// # Panics
/// Never: the times are constants.
pub fn video(id: i64, owner: i64, status: VideoStatus) -> Video {
    let task_id = TaskId::random();
    let processed = status == VideoStatus::Processed;
    Video {
        id: VideoId(id),
        owner: UserId(owner),
        title: "Mi mejor tiro".into(),
        status,
        task_id,
        original_key: ObjectKey::original(task_id),
        processed_key: processed.then(|| ObjectKey::processed(task_id)),
        uploaded_at: "2026-03-01T12:00:00Z".parse().expect("a valid time"),
        processed_at: processed.then(|| "2026-03-01T12:01:10Z".parse().expect("a valid time")),
        failure_reason: (status == VideoStatus::Failed).then(|| "No se pudo decodificar el video.".to_owned()),
        votes: 0,
    }
}
