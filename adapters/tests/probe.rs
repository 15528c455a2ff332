//! Contract test of the `VideoProbe` port on `Mp4BoxProbe`, with files a real
//! muxer wrote (GStreamer's mp4mux, audio included).

use anb_adapters::Mp4BoxProbe;
use anb_adapters::gst::write_test_clip;
use anb_domain::ports::{ProbeError, VideoProbe};

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
