//! Contract test of the `Transcoder` port on `GstTranscoder`: a 1080p clip with
//! audio goes in; what comes out is checked from the file itself with ffprobe
//! against docs/video-rules.md.

use std::path::Path;
use std::process::Command;

use anb_domain::ProgressSink;
use anb_domain::ports::{TranscodeError, Transcoder};
use anb_gstreamer::{GstTranscoder, TranscodeSettings, write_test_clip};
use anb_testkit::scramble_sample_data;

fn ffprobe(path: &Path, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", entries, "-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .expect("ffprobe is installed (make deps)");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn value<'a>(report: &'a str, key: &str) -> &'a str {
    report.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("{key} missing in {report}"))
}

#[tokio::test]
async fn a_long_1080p_clip_becomes_a_35_second_720p_h264_file_without_audio() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.mp4"), dir.path().join("out.mp4"));
    write_test_clip(&input, 33, 1920, 1080, 30, true).unwrap();
    assert!(ffprobe(&input, "stream=codec_type").contains("audio"), "the input must carry audio for this test to mean something");

    let transcoder = GstTranscoder::new(TranscodeSettings::default()).unwrap();
    // Progress rises as the job goes and ends at 100 with the file.
    let progress = ProgressSink::new();
    let watcher = progress.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_by_watch = seen.clone();
    let watch = tokio::spawn(async move {
        loop {
            seen_by_watch.lock().unwrap().push(watcher.percent());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    let report = transcoder.transcode(&input, &output, &progress).await.unwrap();
    watch.abort();
    assert!((report.duration.as_secs_f64() - 35.0).abs() < 0.05, "{report:?}");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "never goes back: {seen:?}");
    assert!(seen.iter().filter(|p| (1..100).contains(*p)).count() >= 3, "seen on its way: {seen:?}");
    assert_eq!(progress.percent(), 100);

    let streams = ffprobe(&output, "stream=codec_type,codec_name,profile,width,height,pix_fmt,r_frame_rate");
    assert_eq!(streams.matches("codec_type=").count(), 1, "exactly one stream: {streams}");
    assert_eq!(value(&streams, "codec_type"), "video");
    assert_eq!(value(&streams, "codec_name"), "h264");
    assert_eq!(value(&streams, "profile"), "High");
    assert_eq!((value(&streams, "width"), value(&streams, "height")), ("1280", "720"));
    assert_eq!(value(&streams, "pix_fmt"), "yuv420p");
    assert_eq!(value(&streams, "r_frame_rate"), "30/1");
    let duration: f64 = value(&ffprobe(&output, "format=duration"), "duration").parse().unwrap();
    assert!((duration - 35.0).abs() <= 0.1, "duration {duration}");

    let bytes = std::fs::read(&output).unwrap();
    let moov = bytes.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat, "moov must come before mdat (fast start)");
}

#[tokio::test]
async fn a_short_portrait_clip_is_kept_whole_and_pillarboxed() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.mp4"), dir.path().join("out.mp4"));
    write_test_clip(&input, 4, 1080, 1920, 25, false).unwrap();
    let report = GstTranscoder::new(TranscodeSettings::default()).unwrap().transcode(&input, &output, &ProgressSink::new()).await.unwrap();
    let duration: f64 = value(&ffprobe(&output, "format=duration"), "duration").parse().unwrap();
    assert!((duration - (4.0 + 5.0)).abs() <= 0.1, "duration {duration}, report {report:?}");
    let streams = ffprobe(&output, "stream=width,height,r_frame_rate");
    assert_eq!((value(&streams, "width"), value(&streams, "height"), value(&streams, "r_frame_rate")), ("1280", "720", "25/1"));
}

#[tokio::test]
async fn a_low_frame_rate_clip_keeps_the_specified_length() {
    // At 5 fps a 2.5 s card is 12.5 frames: rounding each card up made the
    // output 0.2 s too long.
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.mp4"), dir.path().join("out.mp4"));
    write_test_clip(&input, 21, 640, 360, 5, false).unwrap();
    let report = GstTranscoder::new(TranscodeSettings::default()).unwrap().transcode(&input, &output, &ProgressSink::new()).await.unwrap();
    let duration: f64 = value(&ffprobe(&output, "format=duration"), "duration").parse().unwrap();
    assert!((duration - (21.0 + 5.0)).abs() <= 0.1, "duration {duration}, report {report:?}");
    assert!((report.duration.as_secs_f64() - 26.0).abs() <= 0.1, "{report:?}");
    assert_eq!(value(&ffprobe(&output, "stream=r_frame_rate"), "r_frame_rate"), "5/1");
}

#[tokio::test]
async fn a_corrupt_file_is_an_input_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.mp4"), dir.path().join("out.mp4"));
    write_test_clip(&input, 3, 640, 360, 30, false).unwrap();
    let mut bytes = std::fs::read(&input).unwrap();
    scramble_sample_data(&mut bytes);
    std::fs::write(&input, &bytes).unwrap();
    assert!(anb_mp4::parse(std::io::Cursor::new(&bytes)).is_ok(), "the boxes must survive, only the stream is broken");
    let transcoder = GstTranscoder::new(TranscodeSettings::default()).unwrap();
    match transcoder.transcode(&input, &output, &ProgressSink::new()).await {
        Err(TranscodeError::InvalidInput(_) | TranscodeError::Failed(_)) => {}
        Ok(report) => panic!("a scrambled stream was transcoded: {report:?}"),
    }
    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(&garbage, b"definitely not a video").unwrap();
    assert!(matches!(transcoder.transcode(&garbage, &output, &ProgressSink::new()).await, Err(TranscodeError::InvalidInput(_))));
}

#[tokio::test]
async fn frames_that_decode_under_the_minimum_size_fail_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.mp4"), dir.path().join("out.mp4"));
    write_test_clip(&input, 2, 640, 360, 10, false).unwrap();
    let transcoder = GstTranscoder::new(TranscodeSettings { min_short_side: 720, ..TranscodeSettings::default() }).unwrap();
    match transcoder.transcode(&input, &output, &ProgressSink::new()).await {
        Err(TranscodeError::InvalidInput(why)) => {
            assert!(why.starts_with("Resolución real 640x360"), "{why}");
        }
        other => panic!("a 640x360 stream is refused by its decoded size: {other:?}"),
    }
    // The same stream passes where no minimum is asked.
    let report = GstTranscoder::new(TranscodeSettings::default()).unwrap().transcode(&input, &output, &ProgressSink::new()).await;
    assert!(report.is_ok(), "{report:?}");
}
