//! `anb-gstreamer`: [`GstTranscoder`], the processing pipeline of the video
//! rules (docs/video-rules.md) on GStreamer,
//! decoding, scaling, watermarking and encoding in one pass with no
//! intermediate files:
//!
//! ```text
//! videotestsrc (intro card) -> textoverlay ----------------------------\
//! filesrc -> qtdemux -(video)-> decodebin -> videoconvert -> anbscale     concat -> identity -> queue
//!    (audio pads stay unlinked)   -> videorate -> caps 1280x720 -> cut at 30 s -> watermark -> /     -> x264enc -> mp4mux(faststart) -> filesink
//! videotestsrc (outro card) -> textoverlay ----------------------------/
//! ```
//!
//! The cut is exact: a probe drops every frame whose running time is at or
//! past 30 s, ends the content segment and tells the decoder to stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anb_domain::ProgressSink;
use anb_domain::ports::{TranscodeError, TranscodeReport, Transcoder};
use async_trait::async_trait;
use gstreamer as gst;
use gstreamer::prelude::*;
pub use scale::AnbScale;

pub mod scale;

/// What the output looks like; the defaults are docs/video-rules.md.
#[derive(Debug, Clone)]
pub struct TranscodeSettings {
    pub width: i32,
    pub height: i32,
    /// Longest stretch of the original kept.
    pub max_content: Duration,
    /// Length of each of the intro and outro cards.
    pub card: Duration,
    /// Highest output frame rate.
    pub max_fps: i32,
    /// x264 `speed-preset` (`veryfast`, `faster`, ...).
    pub speed_preset: String,
    /// x264 subpixel motion refinement (`subme`, 0-11). With `veryfast`, 1
    /// and a diamond search (`motion_search`) measured 25 % less CPU per job
    /// than `veryfast`'s own 2 and hexagon, at no lower SSIM than the ffmpeg
    /// command line and 10 % more bytes (`bench/transcode.py --variants`,
    /// docs/benchmarks.md).
    pub subme: u32,
    /// x264 motion search (`dia`, `hex`, `umh`, ...).
    pub motion_search: String,
    /// Most frames between key frames (x264's default, 250).
    pub key_int_max: u32,
    /// Threads of the decoder and of the encoder for one job; 0 lets each
    /// choose from the core count. One thread per job is the cheapest in CPU
    /// when as many jobs run at once as there are cores
    /// ([`TranscodeSettings::for_jobs_at_once`]).
    pub threads: u32,
    /// x264 constant quality (like ffmpeg's CRF).
    pub quality: u32,
    /// x264 B-frames between references (GStreamer's default is 0; x264's
    /// own presets use 3).
    pub bframes: u32,
    /// The scaler's filter: `catrom`, `lanczos`, `mitchell` or `bilinear`
    /// for [`AnbScale`], our SIMD scaler; `videoscale:<method>` for
    /// GStreamer's `videoscale` (`bench/transcode.py --variants` compares
    /// them). Catmull-Rom measured 0.7 dB above bilinear.
    pub scale_method: String,
    /// Give up on one video after this long.
    pub timeout: Duration,
    /// The shortest side a decoded frame may have: a stream that decodes
    /// smaller (whatever its container said) fails the job with "Resolución
    /// real ..." and is never published. 0 checks nothing.
    pub min_short_side: u32,
}

impl Default for TranscodeSettings {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            max_content: Duration::from_secs(30),
            card: Duration::from_millis(2500),
            max_fps: 30,
            speed_preset: "veryfast".into(),
            subme: 1,
            motion_search: "dia".into(),
            key_int_max: 250,
            threads: 0,
            quality: 23,
            bframes: 3,
            scale_method: "catrom".into(),
            timeout: Duration::from_secs(600),
            min_short_side: 0,
        }
    }
}

impl TranscodeSettings {
    /// The defaults, with `cores` shared out among `jobs` jobs running at
    /// once: one thread each when there are as many jobs as cores (or more).
    pub fn for_jobs_at_once(jobs: u32, cores: u32) -> Self {
        Self { threads: threads_each(jobs, cores), ..Self::default() }
    }
}

/// Threads for each of `jobs` jobs on `cores` cores: at least one.
fn threads_each(jobs: u32, cores: u32) -> u32 {
    (cores / jobs.max(1)).max(1)
}

/// Elements the pipeline needs, with the Debian package that has them.
const REQUIRED: [(&str, &str); 13] = [
    ("filesrc", "gstreamer1.0 core"),
    ("qtdemux", "gstreamer1.0-plugins-good"),
    ("decodebin", "gstreamer1.0-plugins-base"),
    ("avdec_h264", "gstreamer1.0-libav"),
    ("videoconvert", "gstreamer1.0-plugins-base"),
    ("videoscale", "gstreamer1.0-plugins-base"),
    ("videorate", "gstreamer1.0-plugins-base"),
    ("videotestsrc", "gstreamer1.0-plugins-base"),
    ("textoverlay", "gstreamer1.0-plugins-base"),
    ("concat", "gstreamer1.0 core"),
    ("x264enc", "gstreamer1.0-plugins-ugly"),
    ("mp4mux", "gstreamer1.0-plugins-good"),
    ("filesink", "gstreamer1.0 core"),
];

/// Why the transcoder cannot run on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("GStreamer failed to initialise: {0}")]
    Init(String),
    #[error("GStreamer elements missing: {}; run `make deps`", .0.join(", "))]
    Missing(Vec<String>),
}

/// The GStreamer transcoder. Each job runs on the blocking thread pool.
#[derive(Debug, Clone)]
pub struct GstTranscoder {
    settings: Arc<TranscodeSettings>,
}

impl GstTranscoder {
    /// Initialises GStreamer and checks that every element is installed.
    ///
    /// # Errors
    /// [`Unavailable`], naming each missing element and its Debian package.
    pub fn new(settings: TranscodeSettings) -> Result<Self, Unavailable> {
        gst::init().map_err(|e| Unavailable::Init(e.to_string()))?;
        let missing: Vec<String> = REQUIRED
            .iter()
            .filter(|(name, _)| gst::ElementFactory::find(name).is_none())
            .map(|(name, package)| format!("{name} ({package})"))
            .collect();
        if !missing.is_empty() {
            return Err(Unavailable::Missing(missing));
        }
        AnbScale::register().map_err(|e| Unavailable::Init(format!("registering anbscale: {e}")))?;
        Ok(Self { settings: Arc::new(settings) })
    }
}

/// Sets a flag when dropped: the async caller went away, so the pipeline stops.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Transcoder for GstTranscoder {
    async fn transcode(&self, input: &Path, output: &Path, progress: &ProgressSink) -> Result<TranscodeReport, TranscodeError> {
        let cancelled = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancelled.clone());
        let (input, output, settings, progress) = (input.to_owned(), output.to_owned(), self.settings.clone(), progress.clone());
        tokio::task::spawn_blocking(move || run(&settings, &input, &output, &cancelled, &progress))
            .await
            .map_err(|e| TranscodeError::Failed(format!("transcode task: {e}")))?
    }
}

/// An output frame rate as a fraction.
fn output_rate(source_fps: Option<f64>, max_fps: i32) -> gst::Fraction {
    let fps = source_fps.filter(|f| f.is_finite() && *f > 0.0).unwrap_or(f64::from(max_fps));
    if fps >= f64::from(max_fps) - 0.01 {
        return gst::Fraction::new(max_fps, 1);
    }
    for (num, den) in [(24000, 1001), (30000, 1001)] {
        if (fps - f64::from(num) / f64::from(den)).abs() < 0.01 {
            return gst::Fraction::new(num, den);
        }
    }
    gst::Fraction::new((fps.round() as i32).max(1), 1)
}

/// Frames of the intro and of the outro card at `rate`. Together they last
/// twice `card` to within half a frame (exactly at whole frame rates): when
/// one card cannot be a whole number of frames (2.5 s at 5 fps is 12.5),
/// the intro takes the extra frame and the outro does without, so a 5 fps
/// output is 13 + 12 frames, 5.0 s, not 2 × 13 frames, 5.2 s.
fn card_frames(card: Duration, rate: gst::Fraction) -> (u64, u64) {
    let both = frames_in(card * 2, rate);
    (both.div_ceil(2), both / 2)
}

fn frames_in(duration: Duration, rate: gst::Fraction) -> u64 {
    (duration.as_secs_f64() * f64::from(rate.numer()) / f64::from(rate.denom())).round() as u64
}

fn make(name: &str) -> Result<gst::Element, TranscodeError> {
    gst::ElementFactory::make(name).build().map_err(|e| TranscodeError::Failed(format!("cannot create {name}: {e}")))
}

fn failed(e: impl std::fmt::Display) -> TranscodeError {
    TranscodeError::Failed(e.to_string())
}

fn raw_caps(settings: &TranscodeSettings, rate: gst::Fraction) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", settings.width)
        .field("height", settings.height)
        .field("framerate", rate)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build()
}

/// A branded card of `frames` frames, linked into `concat`.
fn add_card(pipeline: &gst::Pipeline, concat: &gst::Element, caps: &gst::Caps, frames: u64, text: &str) -> Result<(), TranscodeError> {
    let src = gst::ElementFactory::make("videotestsrc")
        .property_from_str("pattern", "solid-color")
        .property("foreground-color", 0xFF0B_1F4B_u32)
        .property("num-buffers", i32::try_from(frames).map_err(failed)?)
        .build()
        .map_err(failed)?;
    let filter = gst::ElementFactory::make("capsfilter").property("caps", caps).build().map_err(failed)?;
    let overlay = gst::ElementFactory::make("textoverlay")
        .property("text", text)
        .property("font-desc", "Sans Bold 44")
        .property_from_str("valignment", "center")
        .property_from_str("halignment", "center")
        .property_from_str("line-alignment", "center")
        .property("shaded-background", false)
        .build()
        .map_err(failed)?;
    pipeline.add_many([&src, &filter, &overlay]).map_err(failed)?;
    gst::Element::link_many([&src, &filter, &overlay]).map_err(failed)?;
    let pad = concat.request_pad_simple("sink_%u").ok_or_else(|| failed("concat gave no pad"))?;
    overlay.static_pad("src").ok_or_else(|| failed("textoverlay has no src pad"))?.link(&pad).map_err(failed)?;
    Ok(())
}

/// Drops every buffer at or past `limit` of running time and ends the stream
/// there, telling upstream to stop decoding.
fn cut_at(pad: &gst::Pad, limit: gst::ClockTime) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(pts) = info.buffer().and_then(|b| b.pts()) else { return gst::PadProbeReturn::Ok };
        let running = pad
            .sticky_event::<gst::event::Segment>(0)
            .and_then(|ev| ev.segment().downcast_ref::<gst::ClockTime>().and_then(|s| s.to_running_time(pts)))
            .unwrap_or(pts);
        if running < limit {
            return gst::PadProbeReturn::Ok;
        }
        if !pad.pad_flags().contains(gst::PadFlags::EOS) {
            pad.push_event(gst::event::Eos::new());
        }
        info.flow_res = Err(gst::FlowError::Eos);
        gst::PadProbeReturn::Handled
    });
}

/// Builds the content branch up to its last element, whose src pad is returned
/// for linking once the demuxer exposes the video.
fn add_content(
    pipeline: &gst::Pipeline,
    input: &Path,
    settings: &TranscodeSettings,
    caps: &gst::Caps,
) -> Result<gst::Element, TranscodeError> {
    let src = gst::ElementFactory::make("filesrc").property("location", input.to_string_lossy().as_ref()).build().map_err(failed)?;
    let demux = make("qtdemux")?;
    let decode = make("decodebin")?;
    if settings.threads > 0 {
        let threads = i32::try_from(settings.threads).unwrap_or(i32::MAX);
        decode.downcast_ref::<gst::Bin>().ok_or_else(|| failed("decodebin is not a bin"))?.connect_deep_element_added(
            move |_, _, element| {
                if element.has_property("max-threads") {
                    element.set_property("max-threads", threads);
                }
            },
        );
    }
    let convert = make("videoconvert")?;
    let scale = scaler(&settings.scale_method)?;
    let rate = make("videorate")?;
    let filter = gst::ElementFactory::make("capsfilter").property("caps", caps).build().map_err(failed)?;
    let watermark = gst::ElementFactory::make("textoverlay")
        .property("text", "ANB")
        .property("font-desc", "Sans Bold 30")
        .property_from_str("valignment", "top")
        .property_from_str("halignment", "right")
        .property("xpad", 28)
        .property("ypad", 24)
        .property("color", 0xB3FF_FFFF_u32)
        .property("outline-color", 0x8000_0000_u32)
        .property("shaded-background", false)
        .build()
        .map_err(failed)?;
    pipeline.add_many([&src, &demux, &decode, &convert, &scale, &rate, &filter, &watermark]).map_err(failed)?;
    src.link(&demux).map_err(failed)?;
    gst::Element::link_many([&convert, &scale, &rate, &filter, &watermark]).map_err(failed)?;
    let limit = gst::ClockTime::from_nseconds(u64::try_from(settings.max_content.as_nanos()).map_err(failed)?);
    cut_at(&filter.static_pad("src").ok_or_else(|| failed("capsfilter has no src pad"))?, limit);

    let decode_sink = decode.static_pad("sink").ok_or_else(|| failed("decodebin has no sink pad"))?;
    demux.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .or_else(|| Some(pad.query_caps(None)))
            .is_some_and(|caps| caps.structure(0).is_some_and(|s| s.name().starts_with("video/")));
        if is_video && !decode_sink.is_linked() {
            let _ = pad.link(&decode_sink);
        }
    });
    let convert_sink = convert.static_pad("sink").ok_or_else(|| failed("videoconvert has no sink pad"))?;
    refuse_small_frames(&convert_sink, settings.min_short_side);
    decode.connect_pad_added(move |_, pad| {
        let is_raw_video = pad
            .current_caps()
            .or_else(|| Some(pad.query_caps(None)))
            .is_some_and(|caps| caps.structure(0).is_some_and(|s| s.name() == "video/x-raw"));
        if is_raw_video && !convert_sink.is_linked() {
            let _ = pad.link(&convert_sink);
        }
    });
    Ok(watermark)
}

/// Fails the pipeline (a format error: the input's fault, not retried) when
/// the decoder's frames have a side under `min` pixels: the size a stream
/// really decodes to, which may not be what its container or parameter
/// sets said.
fn refuse_small_frames(pad: &gst::Pad, min: u32) {
    if min == 0 {
        return;
    }
    let min = i32::try_from(min).unwrap_or(i32::MAX);
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |pad, info| {
        let Some(gst::PadProbeData::Event(event)) = &info.data else { return gst::PadProbeReturn::Ok };
        let gst::EventView::Caps(caps) = event.view() else { return gst::PadProbeReturn::Ok };
        let Some(s) = caps.caps().structure(0) else { return gst::PadProbeReturn::Ok };
        let (Ok(width), Ok(height)) = (s.get::<i32>("width"), s.get::<i32>("height")) else { return gst::PadProbeReturn::Ok };
        if width.min(height) >= min {
            return gst::PadProbeReturn::Ok;
        }
        if let Some(element) = pad.parent_element() {
            gst::element_error!(
                element,
                gst::StreamError::Format,
                ("Resolución real {}x{}: el lado corto debe medir al menos {} píxeles.", width, height, min)
            );
        }
        gst::PadProbeReturn::Drop
    });
}

/// The scaler `method` names: one of [`scale::METHODS`] for `anbscale`, or
/// `videoscale:` and one of `videoscale`'s own methods for GStreamer's
/// element (kept to compare the two in bench/transcode.py).
fn scaler(method: &str) -> Result<gst::Element, TranscodeError> {
    if let Some(method) = method.strip_prefix("videoscale:") {
        let scale = make("videoscale")?;
        scale.set_property("add-borders", true);
        let spec = scale.find_property("method").ok_or_else(|| failed("videoscale has no method"))?;
        let value = gst::glib::EnumClass::with_type(spec.value_type())
            .and_then(|class| class.to_value_by_nick(method))
            .ok_or_else(|| failed(format!("videoscale has no method {method:?}")))?;
        scale.set_property_from_value("method", &value);
        return Ok(scale);
    }
    if scale::method(method).is_none() {
        let known: Vec<&str> = scale::METHODS.iter().map(|(name, _)| *name).collect();
        return Err(failed(format!("unknown scale method {method:?}: one of {}, or videoscale:<method>", known.join(", "))));
    }
    gst::ElementFactory::make("anbscale").property("method", method).build().map_err(failed)
}

/// Notes, in `reached`, the end (ns) of the last frame the encoder took: the
/// cards and the cut content make one continuous timeline, so this over the
/// output's length is how much of the job is done.
fn track_position(pad: &gst::Pad, reached: Arc<std::sync::atomic::AtomicU64>) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            let end = buffer.pts().map(|pts| pts + buffer.duration().unwrap_or(gst::ClockTime::ZERO));
            if let Some(end) = end {
                reached.fetch_max(end.nseconds(), Ordering::Relaxed);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

fn build(
    settings: &TranscodeSettings,
    input: &Path,
    output: &Path,
    rate: gst::Fraction,
    reached: Arc<std::sync::atomic::AtomicU64>,
) -> Result<gst::Pipeline, TranscodeError> {
    let pipeline = gst::Pipeline::new();
    let caps = raw_caps(settings, rate);
    let concat = make("concat")?;
    pipeline.add(&concat).map_err(failed)?;

    let (intro_frames, outro_frames) = card_frames(settings.card, rate);
    add_card(&pipeline, &concat, &caps, intro_frames, "ANB\nRising Stars Showcase")?;
    let content = add_content(&pipeline, input, settings, &caps)?;
    let content_pad = concat.request_pad_simple("sink_%u").ok_or_else(|| failed("concat gave no pad"))?;
    content.static_pad("src").ok_or_else(|| failed("watermark has no src pad"))?.link(&content_pad).map_err(failed)?;
    add_card(&pipeline, &concat, &caps, outro_frames, "ANB Rising Stars Showcase\n¡Gracias por ver!")?;

    let continuous = gst::ElementFactory::make("identity").property("single-segment", true).build().map_err(failed)?;
    let queue = make("queue")?;
    let encoder = gst::ElementFactory::make("x264enc")
        .name("encoder")
        .property_from_str("speed-preset", &settings.speed_preset)
        .property_from_str("pass", "qual")
        .property("quantizer", settings.quality)
        .property("bframes", settings.bframes)
        // In quality mode x264enc turns `bitrate` into a VBV cap (2 Mbit/s by
        // default); no VBV buffer means plain CRF, like ffmpeg -crf.
        .property("vbv-buf-capacity", 0u32)
        .property("subme", settings.subme)
        .property_from_str("me", &settings.motion_search)
        .property("key-int-max", settings.key_int_max)
        .property("threads", settings.threads)
        .build()
        .map_err(failed)?;
    let profile = gst::ElementFactory::make("capsfilter")
        .property("caps", gst::Caps::builder("video/x-h264").field("profile", "high").build())
        .build()
        .map_err(failed)?;
    let faststart_file: PathBuf = output.with_extension("moov.tmp");
    let mux = gst::ElementFactory::make("mp4mux")
        .property("faststart", true)
        .property("faststart-file", faststart_file.to_string_lossy().as_ref())
        .build()
        .map_err(failed)?;
    let sink = gst::ElementFactory::make("filesink").property("location", output.to_string_lossy().as_ref()).build().map_err(failed)?;
    pipeline.add_many([&continuous, &queue, &encoder, &profile, &mux, &sink]).map_err(failed)?;
    gst::Element::link_many([&concat, &continuous, &queue, &encoder, &profile, &mux, &sink]).map_err(failed)?;
    track_position(&encoder.static_pad("sink").ok_or_else(|| failed("x264enc has no sink pad"))?, reached);
    Ok(pipeline)
}

/// Whether a pipeline error is the input's fault (cannot be demuxed or decoded).
fn is_input_error(error: &gst::glib::Error) -> bool {
    use gst::StreamError::*;
    error
        .kind::<gst::StreamError>()
        .is_some_and(|kind| matches!(kind, Decode | Demux | Format | TypeNotFound | CodecNotFound | WrongType | Failed))
}

fn run(
    settings: &TranscodeSettings,
    input: &Path,
    output: &Path,
    cancelled: &AtomicBool,
    progress: &ProgressSink,
) -> Result<TranscodeReport, TranscodeError> {
    let started = Instant::now();
    let facts = std::fs::File::open(input)
        .map_err(|e| failed(format!("opening input: {e}")))
        .and_then(|f| anb_mp4::parse(std::io::BufReader::new(f)).map_err(|e| TranscodeError::InvalidInput(e.to_string())))?;
    let rate = output_rate(facts.frame_rate, settings.max_fps);
    let content = facts.duration.min(settings.max_content).as_secs_f64();
    let (intro, outro) = card_frames(settings.card, rate);
    let length = content + (intro + outro) as f64 * f64::from(rate.denom()) / f64::from(rate.numer());
    let probed = started.elapsed();
    let reached = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pipeline = build(settings, input, output, rate, reached.clone())?;
    let first_frame = Arc::new(std::sync::OnceLock::new());
    let first_frame_seen = first_frame.clone();
    let encoder_sink = pipeline.by_name("encoder").and_then(|encoder| encoder.static_pad("sink"));
    if let Some(pad) = encoder_sink {
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            first_frame_seen.get_or_init(Instant::now);
            gst::PadProbeReturn::Remove
        });
    }
    let report_progress = || {
        let done = reached.load(Ordering::Relaxed) as f64 / 1e9 / length.max(0.001);
        // 100 % is for a finished file: the muxer's last step comes after the frames.
        progress.report((done * 100.0).clamp(0.0, 99.0) as u8);
    };
    let result = drive(&pipeline, settings.timeout, cancelled, report_progress);
    let _ = pipeline.set_state(gst::State::Null);
    let _ = std::fs::remove_file(output.with_extension("moov.tmp"));
    result?;
    // Where one job's time goes: reading the boxes, starting the pipeline
    // (up to the encoder's first frame), and the whole (bench/latency.py).
    tracing::info!(
        probe_ms = millis(probed),
        first_frame_ms = first_frame.get().map(|at| millis(at.duration_since(started))),
        total_ms = millis(started.elapsed()),
        threads = settings.threads,
        "transcoded"
    );
    progress.report(100);
    Ok(TranscodeReport { duration: Duration::from_secs_f64(length) })
}

/// Whole milliseconds, as the logs count them.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Runs the pipeline to its end, calling `tick` every 200 ms meanwhile.
fn drive(pipeline: &gst::Pipeline, timeout: Duration, cancelled: &AtomicBool, tick: impl Fn()) -> Result<(), TranscodeError> {
    let bus = pipeline.bus().ok_or_else(|| failed("pipeline has no bus"))?;
    pipeline.set_state(gst::State::Playing).map_err(|e| failed(format!("cannot start the pipeline: {e}")))?;
    let started = Instant::now();
    loop {
        if cancelled.load(Ordering::SeqCst) {
            return Err(failed("cancelled"));
        }
        if started.elapsed() > timeout {
            return Err(failed(format!("timed out after {} s", timeout.as_secs())));
        }
        let Some(message) = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(200), &[gst::MessageType::Eos, gst::MessageType::Error])
        else {
            tick();
            continue;
        };
        match message.view() {
            gst::MessageView::Eos(_) => return Ok(()),
            gst::MessageView::Error(err) => {
                let source = err.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                let text = format!("{} ({source})", err.error());
                tracing::debug!(debug = ?err.debug(), "pipeline error: {text}");
                return Err(if is_input_error(&err.error()) {
                    TranscodeError::InvalidInput(err.error().to_string())
                } else {
                    failed(text)
                });
            }
            _ => {}
        }
    }
}

/// Writes a synthetic H.264 MP4 (moving test pattern, optional AAC tone) for
/// tests and benchmarks, so nobody needs sample files.
///
/// # Errors
/// A message when GStreamer fails.
#[cfg(feature = "test-support")]
pub fn write_test_clip(path: &Path, seconds: u32, width: u32, height: u32, fps: u32, audio: bool) -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    let frames = seconds * fps;
    let location = path.to_string_lossy();
    let audio_branch = if audio {
        format!(
            " audiotestsrc num-buffers={} samplesperbuffer=1024 ! audio/x-raw,rate=48000 ! audioconvert ! avenc_aac ! mux.",
            seconds * 48000 / 1024 + 1
        )
    } else {
        String::new()
    };
    let description = format!(
        "videotestsrc num-buffers={frames} pattern=smpte ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 \
         ! x264enc speed-preset=ultrafast key-int-max={fps} ! video/x-h264,profile=high ! h264parse ! mp4mux name=mux ! filesink location=\"{location}\"{audio_branch}"
    );
    let pipeline = gst::parse::launch(&description).map_err(|e| e.to_string())?;
    let result =
        drive(pipeline.downcast_ref::<gst::Pipeline>().ok_or("not a pipeline")?, Duration::from_secs(600), &AtomicBool::new(false), || {});
    let _ = pipeline.set_state(gst::State::Null);
    result.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_rate_keeps_the_source_rate_capped_at_30() {
        let rate = |fps| {
            let r = output_rate(Some(fps), 30);
            (r.numer(), r.denom())
        };
        assert_eq!(rate(60.0), (30, 1));
        assert_eq!(rate(30.0), (30, 1));
        assert_eq!(rate(29.97003), (30000, 1001));
        assert_eq!(rate(25.0), (25, 1));
        assert_eq!(rate(23.976), (24000, 1001));
        assert_eq!(rate(15.2), (15, 1));
        assert_eq!(output_rate(None, 30).numer(), 30);
    }

    #[test]
    fn the_cores_are_shared_out_among_the_jobs_at_once() {
        assert_eq!(TranscodeSettings::for_jobs_at_once(1, 2).threads, 2);
        assert_eq!(TranscodeSettings::for_jobs_at_once(2, 2).threads, 1);
        assert_eq!(TranscodeSettings::for_jobs_at_once(3, 8).threads, 2);
        assert_eq!(TranscodeSettings::for_jobs_at_once(8, 2).threads, 1);
        assert_eq!(TranscodeSettings::for_jobs_at_once(0, 4).threads, 4, "no workers: a one-off job");

        assert_eq!(TranscodeSettings::for_jobs_at_once(1, 2).speed_preset, TranscodeSettings::default().speed_preset);
    }

    #[test]
    fn the_cards_last_five_seconds_together_at_any_frame_rate() {
        let card = Duration::from_millis(2500);
        assert_eq!(card_frames(card, gst::Fraction::new(30, 1)), (75, 75));
        assert_eq!(card_frames(card, gst::Fraction::new(25, 1)), (63, 62), "5.0 s together, not 2 × 2.52 s");
        assert_eq!(card_frames(card, gst::Fraction::new(5, 1)), (13, 12));
        assert_eq!(card_frames(card, gst::Fraction::new(1, 1)), (3, 2));
        // 29.97 fps: 149.85 frames round to 150, 5.005 s.
        assert_eq!(card_frames(card, gst::Fraction::new(30000, 1001)), (75, 75));
    }
}
