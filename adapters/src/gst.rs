//! GStreamer transcoder (written next).
#[derive(Debug)] pub struct GstTranscoder;
