//! What an upload must be (spec/video.md), as pure checks over the facts a
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
    /// Sample entry of the video track (`avc1`, `hvc1`, ...).
    pub codec: String,
    /// Average frames per second, when the file says.
    pub frame_rate: Option<f64>,
}

/// Why an upload is refused. Each message says which rule failed and what the
/// file had; they are shown to the user as they are.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UploadRejection {
    #[error("El archivo no es un video MP4 válido.")]
    NotMp4,
    #[error("El archivo MP4 no contiene una pista de video.")]
    NoVideoTrack,
    #[error("El archivo pesa {size_mb:.1} MB y supera el máximo permitido (100 MB).", size_mb = *bytes as f64 / 1_048_576.0)]
    TooLarge { bytes: u64 },
    #[error("Duración {} s fuera del rango permitido (20–60 s).", seconds_text(*.0))]
    Duration(Duration),
    #[error("Resolución {width}x{height} insuficiente: el lado menor debe tener al menos 1080 píxeles.")]
    Resolution { width: u32, height: u32 },
}

/// Shows seconds with one decimal, or three when one would round onto a limit
/// (a 60.02 s file must not read "60.0 s fuera del rango").
fn seconds_text(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    let short = format!("{secs:.1}");
    if short == "20.0" || short == "60.0" { format!("{secs:.3}") } else { short }
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
        if bytes > self.max_bytes { Err(UploadRejection::TooLarge { bytes }) } else { Ok(()) }
    }

    /// Checks the probed facts: duration first, then resolution.
    ///
    /// # Errors
    /// [`UploadRejection::Duration`] or [`UploadRejection::Resolution`].
    pub fn check(&self, video: &ProbedVideo) -> Result<(), UploadRejection> {
        if video.duration < self.min_duration || video.duration > self.max_duration {
            return Err(UploadRejection::Duration(video.duration));
        }
        if video.width.min(video.height) < self.min_short_side {
            return Err(UploadRejection::Resolution { width: video.width, height: video.height });
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
        assert_eq!(rules.check(&probed(30.0, 1079, 1920)), Err(UploadRejection::Resolution { width: 1079, height: 1920 }));
    }

    #[test]
    fn size_limit_is_exactly_100_mib() {
        let rules = UploadRules::default();
        assert_eq!(rules.check_size(104_857_600), Ok(()));
        assert!(rules.check_size(104_857_601).is_err());
    }
}
