//! Contract test of the `VideoProbe` port on `Mp4BoxProbe`, with files a real
//! muxer wrote (GStreamer's mp4mux, audio included).

use anb_domain::ports::{ProbeError, VideoProbe};
use anb_gstreamer::write_test_clip;
use anb_mp4::Mp4BoxProbe;

#[tokio::test]
async fn reads_duration_resolution_codec_and_rate_from_real_files() {
    let dir = tempfile::tempdir().unwrap();
    for (name, seconds, width, height, fps, audio) in [("land.mp4", 3, 1920, 1080, 30, true), ("port.mp4", 2, 1080, 1920, 25, false)] {
        let path = dir.path().join(name);
        write_test_clip(&path, seconds, width, height, fps, audio).unwrap();
        let facts = Mp4BoxProbe.probe(&path).await.unwrap();
        assert!((facts.duration.as_secs_f64() - f64::from(seconds)).abs() < 0.05, "{name}: {facts:?}");
        assert_eq!((facts.width, facts.height, facts.codec.as_str()), (width, height, "avc1"), "{name}");
        assert!((facts.frame_rate.unwrap() - f64::from(fps)).abs() < 0.1, "{name}: {facts:?}");
    }
}

#[tokio::test]
async fn refuses_text_and_truncated_files_and_reports_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.mp4");
    std::fs::write(&text, "not a video").unwrap();
    assert!(matches!(Mp4BoxProbe.probe(&text).await, Err(ProbeError::NotMp4(_))));

    let clip = dir.path().join("clip.mp4");
    write_test_clip(&clip, 2, 640, 360, 30, false).unwrap();
    let bytes = std::fs::read(&clip).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    assert!(matches!(Mp4BoxProbe.probe(&cut).await, Err(ProbeError::NotMp4(_))));

    assert!(matches!(Mp4BoxProbe.probe(&dir.path().join("missing.mp4")).await, Err(ProbeError::Backend(_))));
}

#[tokio::test]
async fn reads_files_ffmpeg_wrote_with_b_frames_audio_and_an_audio_only_one() {
    let dir = tempfile::tempdir().unwrap();
    let ffmpeg = |args: &[&str], out: &str| {
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y"])
            .args(args)
            .arg(dir.path().join(out))
            .status()
            .expect("ffmpeg is installed (make deps)");
        assert!(status.success(), "ffmpeg {args:?}");
    };
    ffmpeg(
        &["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-f", "lavfi", "-i", "sine", "-t", "21", "-c:v", "libx264"]
            .iter()
            .copied()
            .chain(["-preset", "ultrafast", "-bf", "3", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
            .collect::<Vec<_>>(),
        "ffmpeg.mp4",
    );
    let facts = Mp4BoxProbe.probe(&dir.path().join("ffmpeg.mp4")).await.unwrap();
    assert!((facts.duration.as_secs_f64() - 21.0).abs() < 0.1, "{facts:?}");
    assert_eq!((facts.width, facts.height, facts.codec.as_str()), (1920, 1080, "avc1"));

    ffmpeg(&["-f", "lavfi", "-i", "sine", "-t", "25", "-c:a", "aac"], "audio.mp4");
    assert_eq!(Mp4BoxProbe.probe(&dir.path().join("audio.mp4")).await, Err(ProbeError::NoVideoTrack));
}
