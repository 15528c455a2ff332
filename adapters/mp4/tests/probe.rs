//! Contract test of the `VideoProbe` port on `Mp4BoxProbe`, with files real
//! muxers wrote: GStreamer's mp4mux (audio included) and ffmpeg's mp4 and mov
//! muxers (H.264 and HEVC in many coding variants, fragmented files,
//! QuickTime movies, MPEG-4 Part 2), some of them altered byte by byte to
//! state a frame size their stream does not code or to lose their data.

use anb_domain::ProbedVideo;
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

/// Files ffmpeg writes from its test source, in a temporary directory.
struct Clips(tempfile::TempDir);

impl Clips {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    /// Encodes `seconds` of `testsrc2` at `size` and `rate` with `args`
    /// (more inputs, codec and muxer options) into `name`; returns the
    /// file's bytes.
    fn make(&self, name: &str, size: &str, rate: u32, seconds: &str, args: &[&str]) -> Vec<u8> {
        let path = self.0.path().join(name);
        let source = format!("testsrc2=size={size}:rate={rate}");
        let output = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", &source])
            .args(args)
            .args(["-t", seconds])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("ffmpeg is needed to make the test clips (make deps installs it): {e}"));
        assert!(output.status.success(), "ffmpeg {args:?} for {name}: {}", String::from_utf8_lossy(&output.stderr));
        std::fs::read(&path).unwrap()
    }

    /// Writes `bytes` as `name` and probes it through the port.
    async fn probe(&self, name: &str, bytes: &[u8]) -> Result<ProbedVideo, ProbeError> {
        let path = self.0.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        Mp4BoxProbe.probe(&path).await
    }
}

const X264: [&str; 4] = ["-c:v", "libx264", "-preset", "ultrafast"];
const X265: [&str; 6] = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"];

fn args<'a>(codec: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    codec.iter().chain(more).copied().collect()
}

/// Where the first `fourcc` sample entry of the file is (the position of its
/// type): the first occurrence after the `stsd` box's type.
fn sample_entry(bytes: &[u8], fourcc: &[u8; 4]) -> usize {
    let stsd = bytes.windows(4).position(|w| w == b"stsd").expect("an stsd box");
    stsd + bytes[stsd..].windows(4).position(|w| w == fourcc).unwrap_or_else(|| panic!("a {} entry", String::from_utf8_lossy(fourcc)))
}

/// The file with the width and height of its `fourcc` sample entry
/// overwritten (VisualSampleEntry: 24 bytes after the type).
fn claiming(bytes: &[u8], fourcc: &[u8; 4], width: u16, height: u16) -> Vec<u8> {
    let at = sample_entry(bytes, fourcc) + 4 + 24;
    let mut out = bytes.to_vec();
    out[at..at + 2].copy_from_slice(&width.to_be_bytes());
    out[at + 2..at + 4].copy_from_slice(&height.to_be_bytes());
    out
}

fn mismatch(declared: (u32, u32), coded: (u32, u32)) -> Result<ProbedVideo, ProbeError> {
    Err(ProbeError::SizeMismatch { declared_width: declared.0, declared_height: declared.1, coded_width: coded.0, coded_height: coded.1 })
}

#[tokio::test]
async fn h264_frame_size_comes_from_the_sps_not_the_sample_entry() {
    let clips = Clips::new();
    let small = clips.make("small.mp4", "640x360", 10, "1", &args(&X264, &["-pix_fmt", "yuv420p"]));
    let facts = clips.probe("small.mp4", &small).await.unwrap();
    assert_eq!((facts.width, facts.height, facts.codec.as_str()), (640, 360, "avc1"));
    assert_eq!(clips.probe("lying.mp4", &claiming(&small, b"avc1", 1920, 1080)).await, mismatch((1920, 1080), (640, 360)));
}

/// x264 codes whole 16x16 macroblocks and crops the rest away in the SPS;
/// the crop unit depends on the chroma format and on interlacing. Each file
/// must read as its cropped size, and an entry stating any other size (here
/// 16 columns more, the uncropped width of a 1080-wide portrait) is refused.
/// (x264 writes its scaling lists in the PPS, never in the SPS: the unit
/// tests cover those; B-frames make it use picture order count type 0,
/// without them type 2.)
#[tokio::test]
async fn h264_cropping_chroma_formats_bit_depths_interlacing_and_picture_order() {
    let clips = Clips::new();
    type Case<'a> = (&'a str, &'a str, &'a [&'a str], (u32, u32));
    let cases: [Case; 8] = [
        ("1080p.mp4", "1920x1080", &["-pix_fmt", "yuv420p"], (1920, 1080)),
        ("portrait.mp4", "1080x1920", &["-pix_fmt", "yuv420p"], (1080, 1920)),
        ("yuv422.mp4", "200x100", &["-pix_fmt", "yuv422p"], (200, 100)),
        ("yuv444.mp4", "200x100", &["-pix_fmt", "yuv444p"], (200, 100)),
        ("high10.mp4", "200x100", &["-pix_fmt", "yuv420p10le"], (200, 100)),
        ("interlaced.mp4", "200x100", &["-pix_fmt", "yuv420p", "-flags", "+ildct+ilme", "-x264-params", "interlaced=1"], (200, 100)),
        ("b-frames.mp4", "200x100", &["-pix_fmt", "yuv420p", "-bf", "2"], (200, 100)),
        ("avc3.mp4", "200x100", &["-pix_fmt", "yuv420p", "-tag:v", "avc3"], (200, 100)),
    ];
    for (name, size, more, (width, height)) in cases {
        let bytes = clips.make(name, size, 5, "1", &args(&X264, more));
        let fourcc = if name == "avc3.mp4" { b"avc3" } else { b"avc1" };
        let facts = clips.probe(name, &bytes).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((facts.width, facts.height), (width, height), "{name}");
        let wider = u16::try_from(width + 16).unwrap();
        let claim = clips.probe(name, &claiming(&bytes, fourcc, wider, u16::try_from(height).unwrap())).await;
        assert_eq!(claim, mismatch((width + 16, height), (width, height)), "{name}");
    }
}

/// An H.264 entry must carry its decoder configuration, and its SPS must read.
#[tokio::test]
async fn h264_without_its_avcc_or_with_a_broken_sps_is_not_an_mp4() {
    let clips = Clips::new();
    let bytes = clips.make("clip.mp4", "320x180", 5, "1", &args(&X264, &["-pix_fmt", "yuv420p"]));
    let avcc = bytes.windows(4).position(|w| w == b"avcC").expect("an avcC box");

    let mut renamed = bytes.clone();
    renamed[avcc..avcc + 4].copy_from_slice(b"zzzz");
    assert!(matches!(clips.probe("no-avcc.mp4", &renamed).await, Err(ProbeError::NotMp4(why)) if why.contains("avcC")));

    // avcC: 4 header bytes, length size, SPS count, SPS length (2), SPS NAL.
    let sps = avcc + 4 + 8;
    assert_eq!(bytes[sps] & 0x1f, 7, "the first NAL of the avcC is an SPS");
    let mut cut = bytes.clone();
    let len = usize::from(u16::from_be_bytes([cut[sps - 2], cut[sps - 1]]));
    // Keep the SPS's length but make its exp-Golomb codes run past its end.
    cut[sps + 4..sps + len].fill(0);
    assert!(matches!(clips.probe("bad-sps.mp4", &cut).await, Err(ProbeError::NotMp4(why)) if why.contains("SPS")));
}

/// HEVC: the size is the first SPS's of the hvcC box, less its conformance
/// window (x265 codes whole 8x8 blocks), whatever the entry says.
#[tokio::test]
async fn hevc_frame_size_comes_from_the_sps_not_the_sample_entry() {
    let clips = Clips::new();
    for tag in ["hvc1", "hev1"] {
        let name = format!("{tag}.mp4");
        let bytes = clips.make(&name, "1920x1080", 5, "1", &args(&X265, &["-pix_fmt", "yuv420p", "-tag:v", tag]));
        let facts = clips.probe(&name, &bytes).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((facts.width, facts.height, facts.codec.as_str()), (1920, 1080, tag));
    }

    let small = clips.make("small.mp4", "640x360", 5, "1", &args(&X265, &["-pix_fmt", "yuv420p", "-tag:v", "hvc1"]));
    assert_eq!(clips.probe("lying.mp4", &claiming(&small, b"hvc1", 1920, 1080)).await, mismatch((1920, 1080), (640, 360)));

    // A conformance window in 4:2:0 (2-sample units) and 4:4:4 (1-sample
    // units), 10 bits, and temporal sub-layers (a longer profile_tier_level).
    type Case<'a> = (&'a str, &'a [&'a str]);
    let cases: [Case; 3] = [
        ("window420.mp4", &["-pix_fmt", "yuv420p"]),
        ("window444.mp4", &["-pix_fmt", "yuv444p10le"]),
        ("sublayers.mp4", &["-pix_fmt", "yuv420p", "-bf", "4", "-x265-params", "log-level=error:temporal-layers=1:b-pyramid=1"]),
    ];
    for (name, more) in cases {
        let bytes = clips.make(name, "642x362", 5, "1", &args(&X265, &[&["-tag:v", "hvc1"], more].concat()));
        let facts = clips.probe(name, &bytes).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((facts.width, facts.height), (642, 362), "{name}");
        assert_eq!(clips.probe(name, &claiming(&bytes, b"hvc1", 648, 368)).await, mismatch((648, 368), (642, 362)), "{name}");
    }

    let hvcc = small.windows(4).position(|w| w == b"hvcC").expect("an hvcC box");
    let mut renamed = small.clone();
    renamed[hvcc..hvcc + 4].copy_from_slice(b"zzzz");
    assert!(matches!(clips.probe("no-hvcc.mp4", &renamed).await, Err(ProbeError::NotMp4(why)) if why.contains("hvcC")));
}

/// Fragmented MP4s (`moov` with `mvex`, samples in `moof`/`mdat` pairs) last
/// what their fragments add up to: with an empty `moov` and fragments based
/// on the `moof` (25 samples a second, the durations in the `tfhd`) or on
/// explicit offsets with an audio track's fragments in between; with the first
/// 10 s in the `moov`'s own sample table; CMAF-style one-second fragments with
/// B-frames (version 1 `trun`s with composition offsets).
#[tokio::test]
async fn fragmented_files_last_what_their_fragments_add_up_to() {
    let clips = Clips::new();
    // (name, more inputs, -movflags and other options)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str]);
    let cases: [Case; 4] = [
        ("moof-based.mp4", &[], &["+frag_keyframe+empty_moov+default_base_moof"]),
        ("with-audio.mp4", &["-f", "lavfi", "-i", "sine"], &["+frag_keyframe+empty_moov", "-c:a", "aac"]),
        ("moov-first.mp4", &[], &["+frag_keyframe"]),
        ("cmaf.mp4", &[], &["+empty_moov+default_base_moof+cmaf", "-frag_duration", "1000000", "-bf", "2"]),
    ];
    for (name, inputs, more) in cases {
        let options = [inputs, &X264[..], &["-pix_fmt", "yuv420p", "-movflags"], more].concat();
        let bytes = clips.make(name, "160x90", 25, "25", &options);
        let facts = clips.probe(name, &bytes).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!((facts.duration.as_secs_f64() - 25.0).abs() <= 0.1, "{name}: {facts:?}");
        assert!((facts.frame_rate.unwrap() - 25.0).abs() < 0.1, "{name}: {facts:?}");
        assert_eq!((facts.width, facts.height, facts.codec.as_str()), (160, 90, "avc1"), "{name}");
    }
}

/// A fragment's samples must be in the file, as a sample table's must.
#[tokio::test]
async fn fragmented_files_missing_their_samples_are_not_mp4() {
    let clips = Clips::new();
    let args = args(&X264, &["-pix_fmt", "yuv420p", "-movflags", "+frag_keyframe+empty_moov+default_base_moof"]);
    let bytes = clips.make("whole.mp4", "160x90", 25, "25", &args);
    let last_mdat = bytes.windows(4).rposition(|w| w == b"mdat").expect("an mdat") - 4;
    let cut = &bytes[..last_mdat + (bytes.len() - last_mdat) / 2];
    assert!(matches!(clips.probe("cut.mp4", cut).await, Err(ProbeError::NotMp4(_))));

    // The last trun's data_offset (after its type, version and flags, and
    // sample count) pointing past the end of the file.
    let trun = bytes.windows(4).rposition(|w| w == b"trun").expect("a trun");
    let mut lying = bytes.clone();
    lying[trun + 12..trun + 16].copy_from_slice(&0x0100_0000u32.to_be_bytes());
    assert!(matches!(clips.probe("lying.mp4", &lying).await, Err(ProbeError::NotMp4(why)) if why.contains("past the end")));
}

/// QuickTime files: what ffmpeg's mov muxer writes (`ftyp` of brand `qt  `,
/// a `wide` box, the `mdat` before the `moov`) and an older QuickTime layout
/// with no `ftyp` at all, starting with its `wide` box.
#[tokio::test]
async fn quicktime_movies_with_or_without_an_ftyp() {
    let clips = Clips::new();
    let mov = clips.make("clip.mov", "320x180", 10, "2", &args(&X264, &["-pix_fmt", "yuv420p", "-f", "mov"]));
    assert_eq!(&mov[4..12], b"ftypqt  ");
    let facts = clips.probe("clip.mov", &mov).await.unwrap();
    assert_eq!((facts.width, facts.height, facts.codec.as_str()), (320, 180, "avc1"));
    assert!((facts.duration.as_secs_f64() - 2.0).abs() < 0.05 && (facts.frame_rate.unwrap() - 10.0).abs() < 0.1, "{facts:?}");

    // Without the ftyp, every chunk offset moves back by its size.
    let ftyp = usize::try_from(u32::from_be_bytes(mov[..4].try_into().unwrap())).unwrap();
    let mut old = mov[ftyp..].to_vec();
    assert_eq!(&old[4..8], b"wide");
    let stco = old.windows(4).rposition(|w| w == b"stco").expect("an stco box");
    let count = usize::try_from(u32::from_be_bytes(old[stco + 8..stco + 12].try_into().unwrap())).unwrap();
    for i in 0..count {
        let at = stco + 12 + i * 4;
        let offset = u32::from_be_bytes(old[at..at + 4].try_into().unwrap()) - u32::try_from(ftyp).unwrap();
        old[at..at + 4].copy_from_slice(&offset.to_be_bytes());
    }
    assert_eq!(clips.probe("old.mov", &old).await, Ok(facts));
}

/// MPEG-4 Part 2 is read as what it is, `mp4v` at the entry's size: the
/// upload rules, not the parser, refuse it by name.
#[tokio::test]
async fn other_codecs_are_reported_with_the_entrys_size() {
    let clips = Clips::new();
    let bytes = clips.make("mpeg4.mp4", "320x180", 10, "1", &["-c:v", "mpeg4"]);
    let facts = clips.probe("mpeg4.mp4", &bytes).await.unwrap();
    assert_eq!((facts.width, facts.height, facts.codec.as_str()), (320, 180, "mp4v"));
}
