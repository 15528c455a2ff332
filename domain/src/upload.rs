//! What an upload must be (docs/video-rules.md), as pure checks over the facts a
//! [`crate::ports::VideoProbe`] read from the file's own bytes.

use std::time::Duration;

/// Facts read from an uploaded file's contents.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbedVideo {
    /// Length of the video track.
    pub duration: Duration,
    /// Coded frame width in pixels.
    pub width: u32,
    /// Coded frame height in pixels.
    pub height: u32,
    /// Sample entry type of the video track (`avc1`, `hvc1`, ...): the codec.
    pub codec: String,
    /// Average frames per second, when the file says.
    pub frame_rate: Option<f64>,
}

/// Why an upload is refused. Each message says which rule failed, with the
/// rule's own limits, and what the file had; they are shown to the user as
/// they are.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UploadRejection {
    #[error("El archivo no es un video MP4 o MOV válido.")]
    NotMp4,
    #[error("El archivo no contiene una pista de video.")]
    NoVideoTrack,
    #[error("El video usa el códec {}; solo se aceptan {}.", codec_name(codec), ACCEPTED_CODECS_TEXT)]
    Codec { codec: String },
    #[error(
        "El archivo declara {declared_width}x{declared_height} pero el video codificado es {coded_width}x{coded_height}: \
         el archivo no es válido."
    )]
    SizeMismatch { declared_width: u32, declared_height: u32, coded_width: u32, coded_height: u32 },
    #[error("El archivo supera el tamaño máximo permitido ({} MB).", number(*max_bytes as f64 / 1_048_576.0))]
    TooLarge { max_bytes: u64 },
    #[error("Duración {} s fuera del rango permitido ({}–{} s).", seconds_text(*actual, *min, *max), number(min.as_secs_f64()), number(max.as_secs_f64()))]
    Duration { actual: Duration, min: Duration, max: Duration },
    #[error("Resolución {width}x{height} insuficiente: el lado menor debe tener al menos {min_short_side} píxeles.")]
    Resolution { width: u32, height: u32, min_short_side: u32 },
}

impl UploadRejection {
    /// A short stable label of the kind of refusal (`codec`, `too_large`,
    /// ...), for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotMp4 => "not_video",
            Self::NoVideoTrack => "no_video_track",
            Self::Codec { .. } => "codec",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::TooLarge { .. } => "too_large",
            Self::Duration { .. } => "duration",
            Self::Resolution { .. } => "resolution",
        }
    }
}

/// Sample entry types of the accepted codecs: H.264 (`avc1`, `avc3`) and
/// HEVC (`hvc1`, `hev1`).
pub const ACCEPTED_CODECS: [&str; 4] = ["avc1", "avc3", "hvc1", "hev1"];
const ACCEPTED_CODECS_TEXT: &str = "H.264 y HEVC";

/// The name people know a codec by, from its sample entry type.
fn codec_name(entry: &str) -> String {
    let name = match entry {
        "avc1" | "avc3" => "H.264",
        "hvc1" | "hev1" => "HEVC",
        "mp4v" => "MPEG-4 Parte 2",
        "av01" => "AV1",
        "vp08" => "VP8",
        "vp09" => "VP9",
        "s263" | "h263" => "H.263",
        "jpeg" | "mjpa" | "mjpb" => "Motion JPEG",
        "apch" | "apcn" | "apcs" | "apco" | "ap4h" | "ap4x" => "Apple ProRes",
        "dvh1" | "dvhe" => "Dolby Vision",
        _ => return format!("«{entry}»"),
    };
    format!("{name} («{entry}»)")
}

/// A limit as people write it: `100`, or `2.5` when it has a fraction.
fn number(value: f64) -> String {
    if value.fract() == 0.0 { format!("{value:.0}") } else { format!("{value:.1}") }
}

/// Shows seconds with one decimal, or three when one would round onto a
/// limit (a 60.02 s file must not read "60.0 s fuera del rango (20–60 s)").
fn seconds_text(actual: Duration, min: Duration, max: Duration) -> String {
    let short = |d: Duration| format!("{:.1}", d.as_secs_f64());
    let secs = actual.as_secs_f64();
    if short(actual) == short(min) || short(actual) == short(max) { format!("{secs:.3}") } else { format!("{secs:.1}") }
}

/// The limits an upload is checked against.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRules {
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// Shortest accepted duration (inclusive).
    pub min_duration: Duration,
    /// Longest accepted duration (inclusive).
    pub max_duration: Duration,
    /// Shortest accepted short side of the frame, in pixels.
    pub min_short_side: u32,
}

impl Default for UploadRules {
    fn default() -> Self {
        Self { max_bytes: 104_857_600, min_duration: Duration::from_secs(20), max_duration: Duration::from_secs(60), min_short_side: 1080 }
    }
}

impl UploadRules {
    /// Checks the size of a received file.
    ///
    /// # Errors
    /// [`UploadRejection::TooLarge`] over `max_bytes`.
    pub fn check_size(&self, bytes: u64) -> Result<(), UploadRejection> {
        if bytes > self.max_bytes { Err(self.too_large()) } else { Ok(()) }
    }

    /// The rejection of a file over `max_bytes` (also when it is cut off
    /// while it arrives, before its size is known).
    pub fn too_large(&self) -> UploadRejection {
        UploadRejection::TooLarge { max_bytes: self.max_bytes }
    }

    /// Checks the probed facts: codec first, then duration, then resolution.
    ///
    /// # Errors
    /// [`UploadRejection::Codec`], [`UploadRejection::Duration`] or
    /// [`UploadRejection::Resolution`].
    pub fn check(&self, video: &ProbedVideo) -> Result<(), UploadRejection> {
        if !ACCEPTED_CODECS.contains(&video.codec.as_str()) {
            return Err(UploadRejection::Codec { codec: video.codec.clone() });
        }
        if video.duration < self.min_duration || video.duration > self.max_duration {
            return Err(UploadRejection::Duration { actual: video.duration, min: self.min_duration, max: self.max_duration });
        }
        if video.width.min(video.height) < self.min_short_side {
            return Err(UploadRejection::Resolution { width: video.width, height: video.height, min_short_side: self.min_short_side });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probed(secs: f64, width: u32, height: u32) -> ProbedVideo {
        ProbedVideo { duration: Duration::from_secs_f64(secs), width, height, codec: "avc1".into(), frame_rate: Some(30.0) }
    }

    #[test]
    fn limits_are_inclusive_and_portrait_passes() {
        let rules = UploadRules::default();
        assert_eq!(rules.check(&probed(20.0, 1920, 1080)), Ok(()));
        assert_eq!(rules.check(&probed(60.0, 1080, 1920)), Ok(()));
        assert_eq!(rules.check(&probed(45.0, 3840, 2160)), Ok(()));
    }

    #[test]
    fn short_long_and_small_videos_are_refused_with_what_they_had() {
        let rules = UploadRules::default();
        let short = rules.check(&probed(12.4, 1920, 1080)).unwrap_err();
        assert_eq!(short.to_string(), "Duración 12.4 s fuera del rango permitido (20–60 s).");
        let long = rules.check(&probed(60.02, 1920, 1080)).unwrap_err();
        assert_eq!(long.to_string(), "Duración 60.020 s fuera del rango permitido (20–60 s).");
        let small = rules.check(&probed(30.0, 1280, 720)).unwrap_err();
        assert!(small.to_string().contains("1280x720"), "{small}");
        assert_eq!(
            rules.check(&probed(30.0, 1079, 1920)),
            Err(UploadRejection::Resolution { width: 1079, height: 1920, min_short_side: 1080 })
        );
    }

    #[test]
    fn messages_follow_the_rules_limits() {
        let rules = UploadRules {
            max_bytes: 52_428_800,
            min_duration: Duration::from_millis(2500),
            max_duration: Duration::from_secs(10),
            min_short_side: 720,
        };
        assert_eq!(rules.too_large().to_string(), "El archivo supera el tamaño máximo permitido (50 MB).");
        assert_eq!(rules.check(&probed(1.0, 1280, 720)).unwrap_err().to_string(), "Duración 1.0 s fuera del rango permitido (2.5–10 s).");
        assert_eq!(
            rules.check(&probed(10.04, 1280, 720)).unwrap_err().to_string(),
            "Duración 10.040 s fuera del rango permitido (2.5–10 s)."
        );
        assert!(rules.check(&probed(5.0, 640, 360)).unwrap_err().to_string().ends_with("al menos 720 píxeles."));
        assert_eq!(UploadRules::default().too_large().to_string(), "El archivo supera el tamaño máximo permitido (100 MB).");
    }

    #[test]
    fn only_h264_and_hevc_are_accepted_and_others_are_named() {
        let rules = UploadRules::default();
        for codec in ACCEPTED_CODECS {
            assert_eq!(rules.check(&ProbedVideo { codec: codec.into(), ..probed(30.0, 1920, 1080) }), Ok(()));
        }
        let vp9 = rules.check(&ProbedVideo { codec: "vp09".into(), ..probed(30.0, 1920, 1080) }).unwrap_err();
        assert_eq!(vp9.to_string(), "El video usa el códec VP9 («vp09»); solo se aceptan H.264 y HEVC.");
        let odd = rules.check(&ProbedVideo { codec: "xyz1".into(), ..probed(30.0, 1920, 1080) }).unwrap_err();
        assert_eq!(odd.to_string(), "El video usa el códec «xyz1»; solo se aceptan H.264 y HEVC.");
    }

    #[test]
    fn size_limit_is_exactly_100_mib() {
        let rules = UploadRules::default();
        assert_eq!(rules.check_size(104_857_600), Ok(()));
        assert!(rules.check_size(104_857_601).is_err());
    }
}
