//! `anbscale` as an element in GStreamer pipelines: the caps it settles on,
//! its borders, its passthrough, and its output next to `videoscale`'s.

use std::sync::{Arc, Mutex};

use anb_domain::ProgressSink;
use anb_domain::ports::{TranscodeError, TranscodeReport, Transcoder};
use anb_gstreamer::{GstTranscoder, TranscodeSettings, write_test_clip};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_base::prelude::*;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

/// The planes of one I420 frame, tightly packed, with its size.
struct Frame {
    width: usize,
    height: usize,
    planes: [Vec<u8>; 3],
}

impl Frame {
    fn at(&self, plane: usize, x: usize, y: usize) -> u8 {
        let width = if plane == 0 { self.width } else { self.width.div_ceil(2) };
        self.planes[plane][y * width + x]
    }
}

/// Runs `description` (its last element named `sink`, a fakesink) until its
/// first frame reaches the sink, and returns that frame and whether the
/// scaler (named `scale`) let the frames through untouched.
fn first_frame(description: &str) -> (Frame, bool) {
    GstTranscoder::new(TranscodeSettings::default()).expect("GStreamer and the elements are installed (make deps)");
    let pipeline = gst::parse::launch(description).expect("pipeline").downcast::<gst::Pipeline>().expect("a pipeline");
    let sink = pipeline.by_name("sink").expect("a sink named sink");
    let caught: Arc<Mutex<Option<Frame>>> = Arc::default();
    let store = caught.clone();
    sink.static_pad("sink").expect("sink pad").add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let (Some(buffer), Some(caps)) = (info.buffer(), pad.current_caps()) else { return gst::PadProbeReturn::Ok };
        let video = gst_video::VideoInfo::from_caps(&caps).expect("raw video caps");
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &video).expect("a readable frame");
        let planes = [0u32, 1, 2].map(|p| {
            let (width, height, stride) =
                (frame.comp_width(p) as usize, frame.comp_height(p) as usize, frame.plane_stride()[p as usize] as usize);
            let data = frame.plane_data(p).expect("plane");
            (0..height).flat_map(|y| data[y * stride..y * stride + width].to_vec()).collect()
        });
        store.lock().unwrap().get_or_insert(Frame { width: video.width() as usize, height: video.height() as usize, planes });
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).expect("playing");
    let bus = pipeline.bus().expect("bus");
    let message = bus.timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Eos, gst::MessageType::Error]);
    let scale = pipeline.by_name("scale").expect("an element named scale");
    let passthrough = scale.downcast_ref::<gstreamer_base::BaseTransform>().is_some_and(|t| t.is_passthrough());
    pipeline.set_state(gst::State::Null).expect("stopped");
    match message.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        other => panic!("the pipeline did not end well: {other:?}"),
    }
    let frame = caught.lock().unwrap().take().expect("a frame reached the sink");
    (frame, passthrough)
}

#[test]
fn a_portrait_frame_is_pillarboxed_in_black_at_videoscale_geometry() {
    let (frame, passthrough) = first_frame(
        "videotestsrc pattern=white num-buffers=1 ! video/x-raw,format=I420,width=1080,height=1920 \
         ! anbscale name=scale ! video/x-raw,width=1280,height=720,pixel-aspect-ratio=1/1 ! fakesink name=sink",
    );
    assert_eq!((frame.width, frame.height), (1280, 720));
    assert!(!passthrough, "scaled, not passed through");
    // 405 columns of picture at x = 436, as videoscale add-borders=true puts them.
    for (x, want) in [(0, 16), (435, 16), (436, 235), (640, 235), (840, 235), (841, 16), (1279, 16)] {
        assert_eq!(frame.at(0, x, 360), want, "luma at x = {x}");
    }
    assert_eq!([frame.at(1, 10, 100), frame.at(2, 10, 100), frame.at(1, 639, 359)], [128, 128, 128], "black chroma in the borders");
}

#[test]
fn a_frame_already_at_the_output_size_goes_through_untouched() {
    let (frame, passthrough) = first_frame(
        "videotestsrc pattern=smpte num-buffers=1 ! video/x-raw,format=I420,width=1280,height=720,pixel-aspect-ratio=1/1 \
         ! anbscale name=scale ! video/x-raw,width=1280,height=720,pixel-aspect-ratio=1/1 ! fakesink name=sink",
    );
    assert!(passthrough, "same caps on both sides");
    assert_ne!(frame.at(0, 0, 0), frame.at(0, 1279, 0), "the test pattern itself, not a black frame");
}

#[test]
fn the_output_is_close_to_videoscale_catmull_rom_on_the_same_frame() {
    let source = "videotestsrc pattern=pinwheel num-buffers=1 ! video/x-raw,format=I420,width=1920,height=1080";
    let out = "video/x-raw,width=1280,height=720,pixel-aspect-ratio=1/1 ! fakesink name=sink";
    let (ours, _) = first_frame(&format!("{source} ! anbscale name=scale method=catrom ! {out}"));
    let (theirs, _) = first_frame(&format!("{source} ! videoscale name=scale method=catrom add-borders=true ! {out}"));
    let differences: Vec<u8> = ours.planes[0].iter().zip(&theirs.planes[0]).map(|(a, b)| a.abs_diff(*b)).collect();
    let mean = differences.iter().map(|d| f64::from(*d)).sum::<f64>() / differences.len() as f64;
    let mse = differences.iter().map(|d| f64::from(*d).powi(2)).sum::<f64>() / differences.len() as f64;
    let psnr = 10.0 * (255.0f64.powi(2) / mse.max(1e-9)).log10();
    // Both are Catmull-Rom; they differ where the kernel is widened for a
    // reduction and in rounding, not in geometry.
    assert!(mean < 1.5 && psnr > 35.0, "mean difference {mean:.2}, PSNR {psnr:.1} dB");
}

/// Transcodes a one-second clip with `scale_method`: the result, and the
/// size of the output file (0 when there is none).
fn transcode_with(scale_method: &str) -> (Result<TranscodeReport, TranscodeError>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.mp4"), dir.path().join("out.mp4"));
    write_test_clip(&input, 1, 320, 240, 10, false).unwrap();
    let settings = TranscodeSettings { scale_method: scale_method.into(), ..TranscodeSettings::default() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let result = runtime.block_on(GstTranscoder::new(settings).unwrap().transcode(&input, &output, &ProgressSink::new()));
    (result, std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0))
}

#[test]
fn an_unknown_method_is_refused_by_name() {
    match transcode_with("sharpest").0 {
        Err(TranscodeError::Failed(message)) => assert!(message.contains("sharpest") && message.contains("catrom"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn videoscale_stays_available_for_comparison() {
    let (result, size) = transcode_with("videoscale:bilinear");
    assert!(result.is_ok() && size > 0, "{result:?}, {size} bytes");
    let result = transcode_with("videoscale:sharpest").0;
    assert!(matches!(&result, Err(TranscodeError::Failed(m)) if m.contains("sharpest")), "{result:?}");
}
