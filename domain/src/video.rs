//! Videos, their processing statuses, storage keys, jobs, votes and rankings.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::{Timestamp, UserId};

/// Database id of a video (`video_id` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VideoId(pub i64);

impl fmt::Display for VideoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Id of the processing job of one upload (`task_id` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskId(pub Uuid);

impl TaskId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a video is in its life. Allowed moves:
///
/// ```text
/// uploaded -> processing -> processed
///    |            |  ^  \-> failed
///    |            v  |
///    |          uploaded  (a failed attempt that will be retried)
///    \-> failed  (its job was dead-lettered while it waited: every attempt
///                was cut short, its workers killed)
/// ```
/// `processing -> processing` is allowed too: a job redelivered after its
/// worker died takes the video over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoStatus {
    /// Accepted and waiting for a worker.
    Uploaded,
    /// A worker is transcoding it.
    Processing,
    /// Transcoded and public.
    Processed,
    /// Processing gave up; the video carries a reason.
    Failed,
}

impl VideoStatus {
    /// Every status, in life order.
    pub const ALL: [Self; 4] = [Self::Uploaded, Self::Processing, Self::Processed, Self::Failed];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploaded => "uploaded",
            Self::Processing => "processing",
            Self::Processed => "processed",
            Self::Failed => "failed",
        }
    }

    /// Whether a video may move from `self` to `next`. Only an operator
    /// moves a `failed` video (back to `uploaded`, `anb-worker retry`);
    /// `processed` is final.
    pub fn can_become(self, next: Self) -> bool {
        use VideoStatus::*;
        matches!(
            (self, next),
            (Uploaded, Processing | Failed) | (Processing, Processing | Processed | Failed | Uploaded) | (Failed, Uploaded)
        )
    }

    /// Processed videos are public: listed, votable, and no longer deletable.
    pub fn is_public(self) -> bool {
        self == Self::Processed
    }
}

impl fmt::Display for VideoStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown video status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for VideoStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A video title: 1 to 200 characters, not blank, no control characters.
/// Stored and returned exactly as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

/// Why a title is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTitle {
    #[error("El título es obligatorio.")]
    Missing,
    #[error("El título no puede superar {} caracteres.", Title::MAX_CHARS)]
    TooLong,
    #[error("El título no puede contener caracteres de control.")]
    ControlCharacters,
}

impl Title {
    /// Most characters in a title.
    pub const MAX_CHARS: usize = 200;

    /// Checks a title.
    ///
    /// # Errors
    /// [`InvalidTitle`] when blank, longer than 200 characters or holding
    /// control characters (tabs and newlines included).
    pub fn parse(raw: &str) -> Result<Self, InvalidTitle> {
        if raw.trim().is_empty() {
            return Err(InvalidTitle::Missing);
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(InvalidTitle::TooLong);
        }
        if raw.chars().any(char::is_control) {
            return Err(InvalidTitle::ControlCharacters);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The title as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a file lives in object storage: `uploaded/<uuid>.mp4` or
/// `processed/<uuid>.mp4`. Only built from ids, or parsed with a strict
/// character set, so no key can climb out of its storage root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

/// A string that cannot be a storage key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {0:?}")]
pub struct InvalidKey(pub String);

impl ObjectKey {
    /// Longest key accepted.
    pub const MAX_LEN: usize = 512;

    /// Key of the original upload of a task.
    pub fn original(task: TaskId) -> Self {
        Self(format!("uploaded/{}.mp4", task.0))
    }

    /// Key of the processed file of a task.
    pub fn processed(task: TaskId) -> Self {
        Self(format!("processed/{}.mp4", task.0))
    }

    /// Parses a stored key: segments of `[A-Za-z0-9._-]` joined by `/`, none
    /// of them empty, `.` or `..`.
    ///
    /// # Errors
    /// [`InvalidKey`] for anything else.
    pub fn parse(raw: &str) -> Result<Self, InvalidKey> {
        let ok_segment =
            |s: &str| !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if raw.len() <= Self::MAX_LEN && raw.split('/').all(ok_segment) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidKey(raw.to_owned()))
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the upload use case hands to the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVideo {
    pub owner: UserId,
    pub title: Title,
    pub task_id: TaskId,
    pub original_key: ObjectKey,
    pub uploaded_at: Timestamp,
}

/// A stored video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    pub id: VideoId,
    pub owner: UserId,
    pub title: String,
    pub status: VideoStatus,
    pub task_id: TaskId,
    pub original_key: ObjectKey,
    pub processed_key: Option<ObjectKey>,
    pub uploaded_at: Timestamp,
    pub processed_at: Option<Timestamp>,
    pub failure_reason: Option<String>,
    /// Votes received; kept in step with the votes table.
    pub votes: i64,
    /// The share of processing done, 0–100, while `processing`.
    pub progress: Option<u8>,
}

/// A processed video as listed publicly, with its player.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicVideo {
    pub id: VideoId,
    pub title: String,
    pub username: String,
    pub city: String,
    pub processed_key: ObjectKey,
    pub votes: i64,
}

/// One row of the ranking of players.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankingEntry {
    /// 1-based rank in the whole (filtered) ranking.
    pub position: i64,
    pub username: String,
    pub city: String,
    pub votes: i64,
}

/// A page of a listing: `limit` rows after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

/// An optional city filter, compared case-insensitively (see [`crate::user::city_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CityFilter(Option<String>);

impl CityFilter {
    /// No filter.
    pub fn any() -> Self {
        Self(None)
    }

    /// Only players of this city.
    pub fn city(name: &str) -> Self {
        Self(Some(crate::user::city_key(name)))
    }

    /// The normalised city key, if filtering.
    pub fn key(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// Where a running transcode has got to, 0–100 % of the output: the
/// transcoder reports it as it goes (from any thread), the worker reads it
/// and passes it on at most about once a second. It never goes back.
#[derive(Debug, Clone, Default)]
pub struct ProgressSink(std::sync::Arc<std::sync::atomic::AtomicU8>);

impl ProgressSink {
    /// Nothing done yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `percent` (capped at 100) is done.
    pub fn report(&self, percent: u8) {
        self.0.fetch_max(percent.min(100), std::sync::atomic::Ordering::Relaxed);
    }

    /// The share done so far.
    pub fn percent(&self) -> u8 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The reason a `failed` video is given when its job ran out of attempts
/// without an answer (every attempt was cut short: its workers killed).
pub const ATTEMPTS_EXHAUSTED: &str = "Se agotaron los intentos de procesamiento: el procesamiento se interrumpió en cada intento.";

/// The work of processing one uploaded video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub task_id: TaskId,
    pub video_id: VideoId,
}

/// Proof of one delivery of a job; acknowledging or extending needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// A job handed to one worker for a while (the visibility timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub job: Job,
    pub receipt: Receipt,
    /// How many times this job has been delivered, this time included.
    pub receive_count: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in VideoStatus::ALL {
            assert_eq!(status.as_str().parse::<VideoStatus>(), Ok(status));
        }
        assert!("PROCESSED".parse::<VideoStatus>().is_err());
    }

    #[test]
    fn only_documented_transitions_are_allowed() {
        use VideoStatus::*;
        let allowed: Vec<_> = VideoStatus::ALL
            .into_iter()
            .flat_map(|a| VideoStatus::ALL.into_iter().map(move |b| (a, b)))
            .filter(|(a, b)| a.can_become(*b))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Uploaded, Processing),
                (Uploaded, Failed),
                (Processing, Uploaded),
                (Processing, Processing),
                (Processing, Processed),
                (Processing, Failed),
                (Failed, Uploaded)
            ]
        );
    }

    #[test]
    fn titles_are_kept_verbatim_within_limits() {
        assert_eq!(Title::parse("  Mi tiro'; DROP TABLE videos;--").unwrap().as_str(), "  Mi tiro'; DROP TABLE videos;--");
        assert_eq!(Title::parse("   "), Err(InvalidTitle::Missing));
        assert_eq!(Title::parse(&"á".repeat(200)).map(|t| t.as_str().chars().count()), Ok(200));
        assert_eq!(Title::parse(&"á".repeat(201)), Err(InvalidTitle::TooLong));
        assert_eq!(Title::parse("a\u{0}b"), Err(InvalidTitle::ControlCharacters));
    }

    #[test]
    fn progress_only_goes_forward_and_stops_at_100() {
        let sink = ProgressSink::new();
        let seen_by_worker = sink.clone();
        sink.report(40);
        sink.report(10);
        assert_eq!(seen_by_worker.percent(), 40);
        sink.report(250);
        assert_eq!(seen_by_worker.percent(), 100);
    }

    #[test]
    fn keys_cannot_escape_their_root() {
        let task = TaskId::random();
        assert!(ObjectKey::parse(ObjectKey::original(task).as_str()).is_ok());
        for bad in ["", "/etc/passwd", "a/../b", "..", "a//b", "a/./b", "a\\b", "a b", "uploaded/%2e%2e"] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
