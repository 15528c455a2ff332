//! Time per frame of the scalers, 1080p to 720p and 1080x1920 to 405x720
//! (docs/benchmarks.md, issue 15):
//!
//! ```sh
//! cargo run --release -p anb-gstreamer --example scalers
//! ```
//!
//! In GStreamer: `videoscale method=catrom` (before issue 15) against
//! `anbscale` (ours), each in a one-thread pipeline from `videotestsrc
//! pattern=snow` (noise: no shortcut for any scaler) to `fakesink`, less
//! the same pipeline without a scaler. Outside GStreamer, on one luma plane:
//! `fast_image_resize` in one call (its own horizontal pass) against
//! [`Scaler`] (vertical passes and transposes). Best of five runs each.

use std::time::{Duration, Instant};

use anb_gstreamer::scale::{Fit, Plane, PlaneMut, Scaler};
use anb_gstreamer::{GstTranscoder, TranscodeSettings};
use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::U8;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use gstreamer as gst;
use gstreamer::prelude::*;

const FRAMES: u32 = 300;
const RUNS: usize = 5;

fn best_of(mut run: impl FnMut() -> Duration) -> Duration {
    (0..RUNS).map(|_| run()).min().unwrap_or_default()
}

/// Wall time of a pipeline run to its end (one streaming thread: CPU time).
fn pipeline(description: &str) -> Duration {
    let pipeline = gst::parse::launch(description).expect("pipeline");
    let started = Instant::now();
    pipeline.set_state(gst::State::Playing).expect("playing");
    let bus = pipeline.bus().expect("bus");
    let message = bus.timed_pop_filtered(gst::ClockTime::NONE, &[gst::MessageType::Eos, gst::MessageType::Error]);
    let took = started.elapsed();
    pipeline.set_state(gst::State::Null).expect("stopped");
    assert!(matches!(message.map(|m| m.type_()), Some(gst::MessageType::Eos)), "{description} failed");
    took
}

fn per_frame(total: Duration, frames: u32) -> f64 {
    total.as_secs_f64() * 1000.0 / f64::from(frames)
}

fn main() {
    GstTranscoder::new(TranscodeSettings::default()).expect("GStreamer with its plugins (make deps)");
    println!("| input | scaler | ms per frame |");
    println!("|---|---|---:|");
    for (width, height) in [(1920, 1080), (1080, 1920)] {
        let source = format!(
            "videotestsrc pattern=snow num-buffers={FRAMES} ! video/x-raw,format=I420,width={width},height={height},framerate=30/1"
        );
        let out = "video/x-raw,width=1280,height=720,pixel-aspect-ratio=1/1 ! fakesink sync=false";
        let bare = best_of(|| pipeline(&format!("{source} ! fakesink sync=false")));
        for (label, scaler) in [
            ("GStreamer videoscale method=catrom add-borders=true", "videoscale method=catrom add-borders=true"),
            ("anbscale method=catrom (ours)", "anbscale method=catrom"),
        ] {
            let took = best_of(|| pipeline(&format!("{source} ! {scaler} ! {out}")));
            println!("| {width}x{height} I420 frame | {label} | {:.2} |", per_frame(took.saturating_sub(bare), FRAMES));
        }

        // The three planes of one frame, outside GStreamer.
        let pixels: Vec<u8> = (0..width * height).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let (chroma_width, chroma_height) = (width.div_ceil(2), height.div_ceil(2));
        let chroma: Vec<u8> = pixels[..(chroma_width * chroma_height) as usize].to_vec();
        let fit = Fit::new(width, height, (1, 1), 1280, 720);
        let luma = TypedImageRef::new(width, height, bytemuck::cast_slice::<u8, U8>(&pixels)).expect("image");
        let half = TypedImageRef::new(chroma_width, chroma_height, bytemuck::cast_slice::<u8, U8>(&chroma)).expect("image");
        let mut scaled = TypedImage::<U8>::new(fit.width, fit.height);
        let mut scaled_half = TypedImage::<U8>::new(fit.width.div_ceil(2), fit.height.div_ceil(2));
        let mut resizer = Resizer::new();
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom));
        let direct = best_of(|| {
            let started = Instant::now();
            for _ in 0..FRAMES {
                resizer.resize_typed(&luma, &mut scaled, &options).expect("resized");
                resizer.resize_typed(&half, &mut scaled_half, &options).expect("resized");
                resizer.resize_typed(&half, &mut scaled_half, &options).expect("resized");
            }
            started.elapsed()
        });
        println!("| {width}x{height} I420 frame | fast_image_resize, Catmull-Rom, one call per plane | {:.2} |", per_frame(direct, FRAMES));
        let mut output = [vec![0; 1280 * 720], vec![0; 640 * 360], vec![0; 640 * 360]];
        let mut scaler = Scaler::new(FilterType::CatmullRom);
        let ours = best_of(|| {
            let started = Instant::now();
            for _ in 0..FRAMES {
                let src = [
                    Plane::new(&pixels, width, height, width as usize).expect("Y"),
                    Plane::new(&chroma, chroma_width, chroma_height, chroma_width as usize).expect("U"),
                    Plane::new(&chroma, chroma_width, chroma_height, chroma_width as usize).expect("V"),
                ];
                let [y, u, v] = &mut output;
                let mut dst = [
                    PlaneMut::new(y, 1280, 720, 1280).expect("Y"),
                    PlaneMut::new(u, 640, 360, 640).expect("U"),
                    PlaneMut::new(v, 640, 360, 640).expect("V"),
                ];
                scaler.scale_i420(&src, &mut dst, fit).expect("scaled");
            }
            started.elapsed()
        });
        println!("| {width}x{height} I420 frame | Scaler, Catmull-Rom (anbscale's arithmetic) | {:.2} |", per_frame(ours, FRAMES));
    }
}
