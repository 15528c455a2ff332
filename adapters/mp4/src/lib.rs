//! A small, strict MP4 (ISO base media) and QuickTime box parser: enough to
//! read what the upload rules need from a file's own bytes, never from its
//! name, and to refuse a file whose parts disagree. It reads:
//!
//! - the top-level box headers, each of which must fit in the file; the file
//!   starts with `ftyp`, or, for a QuickTime movie without one, with `wide`,
//!   `free`, `skip`, `mdat` or `moov`;
//! - the `moov` box (a few kilobytes for a short video; at most
//!   [`MAX_MOOV_BYTES`]): the first video track's timescale, its sample
//!   table's timing (the duration is what the samples add up to, not what a
//!   header claims) and where its samples lie, which must be inside the file,
//!   so a truncated file or one that claims more than it holds is refused;
//! - the `moof` boxes of a fragmented file (within the same budget in all):
//!   the samples, durations and data of each track fragment's runs, with the
//!   `tfhd` and `mvex`/`trex` defaults, added to the `moov`'s; their data
//!   must be inside the file too;
//! - the frame size from the coded stream itself, as the upload rules want
//!   (docs/video-rules.md): for H.264 (`avc1`, `avc3`) the first sequence
//!   parameter set of the sample entry's `avcC`, for HEVC (`hvc1`, `hev1`)
//!   the first base-layer one of its `hvcC`, cropped by their frame cropping
//!   or conformance window. The sample entry must state exactly that size,
//!   else [`ProbeError::SizeMismatch`]: a 640x360 stream whose container
//!   claims 1920x1080 is not accepted as 1080p. Without those parameter sets,
//!   or with ones that do not read, the file is not valid. Other codecs keep
//!   the entry's size and fourcc, for the upload rules to refuse by name;
//! - the parameter sets the first sample carries in band (x264's
//!   `repeat-headers`, what `avc3`/`hev1` streams do): a decoder uses those,
//!   so each must code the same size as the sample entry's, else
//!   [`ProbeError::SizeMismatch`] too (at most [`MAX_FIRST_SAMPLE_BYTES`] of
//!   the sample are read).
//!
//! Every size, count and loop is bounded by the bytes that hold it and read
//! with checked arithmetic: the parser is fuzzed (`fuzz/`, `make fuzz`).
//! It is a crate of its own, with no I/O dependency, so that the fuzz target
//! builds in seconds. [`parse`] works on any `Read + Seek`; the
//! `VideoProbe` adapter around it, [`Mp4BoxProbe`], comes with the `probe`
//! feature.

mod avc;
mod bits;
mod fragments;
mod hevc;
#[cfg(feature = "probe")]
mod probe;
#[cfg(feature = "probe")]
pub use probe::Mp4BoxProbe;

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use anb_domain::ProbedVideo;
use anb_domain::ports::ProbeError;

/// Largest `moov` box read into memory, and most bytes of `moof` boxes read
/// in all. A 60 s video's index is far smaller.
pub const MAX_MOOV_BYTES: u64 = 16 * 1024 * 1024;

/// Most bytes of the first sample read for its in-band parameter sets
/// (they come before its first slice; a whole 1080p key frame is less).
pub const MAX_FIRST_SAMPLE_BYTES: u64 = 2 * 1024 * 1024;

fn bad(why: impl Into<String>) -> ProbeError {
    ProbeError::NotMp4(why.into())
}

/// A box header: its type, where its body starts and ends.
#[derive(Debug, Clone, Copy)]
struct BoxHeader {
    kind: [u8; 4],
    body_start: u64,
    end: u64,
}

/// Reads the facts of the first video track of an MP4.
///
/// # Errors
/// [`ProbeError::NotMp4`] when the bytes are not a well-formed MP4 (no
/// leading `ftyp`, or `wide`, `free`, `skip`, `mdat` or `moov` box for a
/// QuickTime movie without one, a box past the end, no `moov`, an index or
/// fragment pointing outside the file, an H.264 or HEVC track without
/// parameter sets that read),
/// [`ProbeError::NoVideoTrack`] when no track is video,
/// [`ProbeError::SizeMismatch`] when the sample entry states another frame
/// size than the stream codes.
pub fn parse<R: Read + Seek>(mut reader: R) -> Result<ProbedVideo, ProbeError> {
    let len = reader.seek(SeekFrom::End(0)).map_err(|e| bad(e.to_string()))?;
    reader.seek(SeekFrom::Start(0)).map_err(|e| bad(e.to_string()))?;
    let mut pos = 0;
    let mut moov = None;
    // Each moof box's position and body; read within one budget in all.
    let mut moofs = Vec::new();
    let mut moof_bytes = 0u64;
    let mut first = true;
    while pos < len {
        let header = read_header(&mut reader, pos, len)?;
        // QuickTime movies older than the ISO format have no ftyp: they
        // start with their data or index, or a padding box before them.
        if first && !matches!(&header.kind, b"ftyp" | b"wide" | b"free" | b"skip" | b"mdat" | b"moov") {
            return Err(bad("the file starts with neither an ftyp box nor a QuickTime movie's first box"));
        }
        first = false;
        match &header.kind {
            b"moov" => {
                if moov.is_some() {
                    return Err(bad("two moov boxes"));
                }
                let size = header.end - header.body_start;
                if size > MAX_MOOV_BYTES {
                    return Err(bad(format!("moov box of {size} bytes is larger than allowed")));
                }
                moov = Some(read_body(&mut reader, header, "moov")?);
            }
            b"moof" => {
                if moov.is_none() {
                    return Err(bad("a moof box before the moov"));
                }
                moof_bytes = moof_bytes.saturating_add(header.end - header.body_start);
                if moof_bytes > MAX_MOOV_BYTES {
                    return Err(bad(format!("the moof boxes hold more than {MAX_MOOV_BYTES} bytes")));
                }
                moofs.push((pos, read_body(&mut reader, header, "moof")?));
            }
            _ => {}
        }
        pos = header.end;
        reader.seek(SeekFrom::Start(pos)).map_err(|e| bad(e.to_string()))?;
    }
    if first {
        return Err(bad("empty file"));
    }
    let moov = moov.ok_or_else(|| bad("no moov box"))?;
    let track = video_track(&moov)?;
    let (mut frames, mut ticks, mut data_end) = (track.frames, track.ticks, track.data_end);
    if !moofs.is_empty() {
        let defaults = fragments::track_defaults(&moov)?;
        for (start, moof) in &moofs {
            let fragment = fragments::read(*start, moof, track.id, &defaults)?;
            frames = frames.saturating_add(fragment.samples);
            ticks = ticks.saturating_add(fragment.ticks);
            data_end = data_end.max(fragment.data_end);
        }
    }
    if data_end > len {
        return Err(bad(format!("samples end at byte {data_end}, past the end of the file ({len} bytes)")));
    }
    let ((width, height), declared) = (track.coded.as_ref().map_or(track.declared, |c| c.size), track.declared);
    if let (Some(config), Some((offset, size))) = (&track.coded, track.first_sample)
        && let Some(in_band) = in_band_size(&mut reader, config, offset, size.min(MAX_FIRST_SAMPLE_BYTES), len)?
        && in_band != config.size
    {
        return Err(ProbeError::SizeMismatch {
            declared_width: config.size.0,
            declared_height: config.size.1,
            coded_width: in_band.0,
            coded_height: in_band.1,
        });
    }
    if (width, height) != declared {
        return Err(ProbeError::SizeMismatch {
            declared_width: declared.0,
            declared_height: declared.1,
            coded_width: width,
            coded_height: height,
        });
    }
    let seconds = ticks as f64 / f64::from(track.timescale);
    Ok(ProbedVideo {
        duration: Duration::try_from_secs_f64(seconds).map_err(|_| bad("invalid duration"))?,
        width,
        height,
        codec: track.codec,
        frame_rate: (seconds > 0.0 && frames > 0).then(|| frames as f64 / seconds),
    })
}

/// Reads the body of a box (at most [`MAX_MOOV_BYTES`], checked by the caller).
fn read_body<R: Read + Seek>(reader: &mut R, header: BoxHeader, what: &str) -> Result<Vec<u8>, ProbeError> {
    let size = header.end - header.body_start;
    let mut body = vec![0; usize::try_from(size).map_err(|_| bad(format!("{what} too large")))?];
    reader.seek(SeekFrom::Start(header.body_start)).map_err(|e| bad(e.to_string()))?;
    reader.read_exact(&mut body).map_err(|_| bad(format!("truncated {what} box")))?;
    Ok(body)
}

fn read_header<R: Read + Seek>(reader: &mut R, pos: u64, limit: u64) -> Result<BoxHeader, ProbeError> {
    let mut head = [0u8; 8];
    reader.read_exact(&mut head).map_err(|_| bad(format!("truncated box header at byte {pos}")))?;
    let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let kind = [head[4], head[5], head[6], head[7]];
    let (size, header_len) = match size32 {
        0 => (limit - pos, 8),
        1 => {
            let mut large = [0u8; 8];
            reader.read_exact(&mut large).map_err(|_| bad("truncated large box header"))?;
            (u64::from_be_bytes(large), 16)
        }
        n => (u64::from(n), 8),
    };
    check_box(kind, pos, size, header_len, limit)
}

fn check_box(kind: [u8; 4], pos: u64, size: u64, header_len: u64, limit: u64) -> Result<BoxHeader, ProbeError> {
    if !kind.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Err(bad(format!("invalid box type at byte {pos}")));
    }
    let end = pos.checked_add(size).ok_or_else(|| bad("box size overflows"))?;
    if size < header_len || end > limit {
        return Err(bad(format!("box {} at byte {pos} does not fit (size {size}, limit {limit})", String::from_utf8_lossy(&kind))));
    }
    Ok(BoxHeader { kind, body_start: pos + header_len, end })
}

/// The children of a box body held in memory.
fn children(body: &[u8]) -> Result<Vec<(BoxHeader, &[u8])>, ProbeError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let rest = &body[pos..];
        if rest.len() < 8 {
            return Err(bad("truncated child box"));
        }
        let size32 = be_u32(rest, 0)?;
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let (size, header_len) = match size32 {
            0 => (rest.len() as u64, 8),
            1 => (be_u64(rest, 8)?, 16),
            n => (u64::from(n), 8),
        };
        let header = check_box(kind, 0, size, header_len, rest.len() as u64)?;
        let (start, end) =
            (usize::try_from(header.body_start).map_err(|_| bad("box"))?, usize::try_from(header.end).map_err(|_| bad("box"))?);
        out.push((header, &rest[start..end]));
        pos += end;
    }
    Ok(out)
}

fn child<'a>(body: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, ProbeError> {
    Ok(children(body)?.into_iter().find(|(h, _)| &h.kind == kind).map(|(_, b)| b))
}

fn require<'a>(body: &'a [u8], kind: &[u8; 4]) -> Result<&'a [u8], ProbeError> {
    child(body, kind)?.ok_or_else(|| bad(format!("missing {} box", String::from_utf8_lossy(kind))))
}

fn be_u16(b: &[u8], at: usize) -> Result<u16, ProbeError> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]])).ok_or_else(|| bad("box too short"))
}

fn be_u32(b: &[u8], at: usize) -> Result<u32, ProbeError> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])).ok_or_else(|| bad("box too short"))
}

fn be_u64(b: &[u8], at: usize) -> Result<u64, ProbeError> {
    b.get(at..at + 8).map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes"))).ok_or_else(|| bad("box too short"))
}

struct Track {
    /// The track_ID of its `tkhd`, which its fragments name.
    id: Option<u32>,
    /// The sample entry type.
    codec: String,
    /// Ticks a second of the media's time.
    timescale: u32,
    /// The samples of the `moov`'s sample table and their total duration.
    frames: u64,
    ticks: u64,
    /// One past the last byte of sample data the index points to.
    data_end: u64,
    /// The frame size the sample entry states.
    declared: (u32, u32),
    /// What the sample entry's decoder configuration says of the stream.
    coded: Option<StreamConfig>,
    /// Where the first sample lies in the file, and its size.
    first_sample: Option<(u64, u64)>,
}

/// The decoder configuration of an H.264 or HEVC sample entry.
struct StreamConfig {
    /// The (cropped) frame size its parameter sets code.
    size: (u32, u32),
    /// Bytes of each NAL unit's length prefix in the samples.
    nal_length: usize,
    /// Whether a NAL unit (by its header) is a sequence parameter set of
    /// the base layer.
    is_sps: fn(&[u8]) -> bool,
    read: SizeReader,
}

fn video_track(moov: &[u8]) -> Result<Track, ProbeError> {
    for (header, trak) in children(moov)? {
        if &header.kind != b"trak" {
            continue;
        }
        let mdia = require(trak, b"mdia")?;
        let hdlr = require(mdia, b"hdlr")?;
        if hdlr.get(8..12) != Some(b"vide") {
            continue;
        }
        // Only fragments need the track's ID: read it without failing here.
        let id = child(trak, b"tkhd")?.and_then(|tkhd| track_id(tkhd).ok());
        return read_video_track(id, mdia);
    }
    Err(ProbeError::NoVideoTrack)
}

/// The track_ID of a `tkhd` body (after the creation and modification
/// times, 32 or 64-bit by version).
fn track_id(tkhd: &[u8]) -> Result<u32, ProbeError> {
    match tkhd.first() {
        Some(0) => be_u32(tkhd, 12),
        Some(1) => be_u32(tkhd, 20),
        _ => Err(bad("unknown tkhd version")),
    }
}

fn read_video_track(id: Option<u32>, mdia: &[u8]) -> Result<Track, ProbeError> {
    let mdhd = require(mdia, b"mdhd")?;
    let (timescale, duration) = match mdhd.first() {
        Some(1) => (be_u32(mdhd, 20)?, be_u64(mdhd, 24)?),
        Some(0) => (be_u32(mdhd, 12)?, u64::from(be_u32(mdhd, 16)?)),
        _ => return Err(bad("unknown mdhd version")),
    };
    if timescale == 0 {
        return Err(bad("zero timescale"));
    }
    let stbl = require(require(mdia, b"minf")?, b"stbl")?;

    let stsd = require(stbl, b"stsd")?;
    if be_u32(stsd, 4)? == 0 {
        return Err(bad("no sample description"));
    }
    let fourcc = stsd.get(12..16).ok_or_else(|| bad("stsd entry too short"))?;
    // A sample entry type is a printable four-character code; anything else
    // would reach error messages and the database as garbage (found by fuzzing).
    if !fourcc.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'.' | b'-' | b'_')) {
        return Err(bad("invalid sample entry type"));
    }
    let codec = String::from_utf8_lossy(fourcc).into_owned();
    let (_, entry) = *children(stsd.get(8..).ok_or_else(|| bad("stsd too short"))?)?.first().ok_or_else(|| bad("no sample description"))?;
    // VisualSampleEntry (and QuickTime's video sample description): 6
    // reserved, 2 index, 16 pre-defined, then width, height.
    let declared = (u32::from(be_u16(entry, 24)?), u32::from(be_u16(entry, 26)?));
    let coded = coded_size(&codec, entry)?;
    // The duration is what the samples add up to, not what the header says:
    // a file whose mdhd claims 60 s over 2 s of frames is a 2 s file.
    let stts = require(stbl, b"stts")?;
    let (mut frames, mut ticks) = (0u64, 0u64);
    for i in 0..be_u32(stts, 4)? as usize {
        let (count, delta) = (u64::from(be_u32(stts, 8 + i * 8)?), u64::from(be_u32(stts, 12 + i * 8)?));
        frames = frames.saturating_add(count);
        ticks = ticks.saturating_add(count.saturating_mul(delta));
    }
    let stsz = require(stbl, b"stsz")?;
    let sizes = u64::from(be_u32(stsz, 8)?);
    if sizes != frames {
        return Err(bad(format!("the sample table lists {sizes} samples, the timing table {frames}")));
    }
    if ticks.abs_diff(duration) > u64::from(timescale) {
        tracing::debug!(declared = duration, samples = ticks, timescale, "mdhd duration differs from the samples'");
    }
    Ok(Track { id, codec, timescale, frames, ticks, data_end: sample_data_end(stbl)?, declared, coded, first_sample: first_sample(stbl)? })
}

/// The first sample's offset (the first chunk's) and size, when the table
/// has both.
fn first_sample(stbl: &[u8]) -> Result<Option<(u64, u64)>, ProbeError> {
    let offset = if let Some(stco) = child(stbl, b"stco")? {
        if be_u32(stco, 4)? == 0 { None } else { Some(u64::from(be_u32(stco, 8)?)) }
    } else if let Some(co64) = child(stbl, b"co64")? {
        if be_u32(co64, 4)? == 0 { None } else { Some(be_u64(co64, 8)?) }
    } else {
        None
    };
    let stsz = require(stbl, b"stsz")?;
    let (uniform, count) = (be_u32(stsz, 4)?, be_u32(stsz, 8)?);
    let size = match (uniform, count) {
        (_, 0) => None,
        (0, _) => Some(u64::from(be_u32(stsz, 12)?)),
        (uniform, _) => Some(u64::from(uniform)),
    };
    Ok(offset.zip(size))
}

/// The size the first in-band SPS of the first sample codes, if it carries
/// one: its NAL units are read by their length prefixes until the bytes
/// read end. An SPS that does not read makes the file invalid (a decoder
/// would use it).
fn in_band_size<R: Read + Seek>(
    reader: &mut R,
    config: &StreamConfig,
    offset: u64,
    size: u64,
    len: u64,
) -> Result<Option<(u32, u32)>, ProbeError> {
    let end = offset.checked_add(size).filter(|end| *end <= len).ok_or_else(|| bad("the first sample is past the end of the file"))?;
    let mut sample = vec![0; usize::try_from(end - offset).map_err(|_| bad("first sample too large"))?];
    reader.seek(SeekFrom::Start(offset)).map_err(|e| bad(e.to_string()))?;
    reader.read_exact(&mut sample).map_err(|_| bad("truncated first sample"))?;
    let mut pos = 0usize;
    while let Some(prefix) = sample.get(pos..pos + config.nal_length) {
        let nal_len = prefix.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
        let Some(nal) = sample.get(pos + config.nal_length..pos + config.nal_length + nal_len) else { break };
        if (config.is_sps)(nal) {
            let size = (config.read)(nal).map_err(|why| bad(format!("the SPS inside the first sample does not read: {why}")))?;
            return Ok(Some(size));
        }
        pos += config.nal_length + nal_len;
    }
    Ok(None)
}

/// Where a visual sample entry's boxes start: after its 78 bytes of fields.
const VISUAL_ENTRY_FIELDS: usize = 78;

/// Reads the coded frame size from a decoder configuration box's body.
type SizeReader = fn(&[u8]) -> Result<(u32, u32), bits::BitsError>;

/// The frame size the stream's own parameter sets code, and how its samples
/// frame NAL units, for the codecs whose sample entry must carry them
/// (H.264, HEVC); `None` for others.
fn coded_size(codec: &str, entry: &[u8]) -> Result<Option<StreamConfig>, ProbeError> {
    type Sps = fn(&[u8]) -> bool;
    // lengthSizeMinusOne: byte 4 of an avcC, byte 21 of an hvcC.
    let (config, name, read, length_at, is_sps): (_, _, SizeReader, usize, Sps) = match codec {
        "avc1" | "avc3" => {
            (b"avcC", "H.264", |avcc| avc::sps_size(avc::config_sps(avcc)?), 4, |nal| nal.first().is_some_and(|b| b & 0x1f == 7))
        }
        // nal_unit_type 33, nuh_layer_id 0 (other layers' SPSs have another syntax).
        "hvc1" | "hev1" => (
            b"hvcC",
            "HEVC",
            |hvcc| hevc::sps_size(hevc::config_sps(hvcc)?),
            21,
            |nal| nal.get(..2).is_some_and(|h| (h[0] >> 1) & 0x3f == 33 && (u16::from_be_bytes([h[0], h[1]]) >> 3) & 0x3f == 0),
        ),
        _ => return Ok(None),
    };
    let boxes = entry.get(VISUAL_ENTRY_FIELDS..).ok_or_else(|| bad(format!("{codec} sample entry too short")))?;
    // QuickTime may end a list of boxes with a 32-bit zero.
    let boxes = match boxes {
        [rest @ .., 0, 0, 0, 0] if children(boxes).is_err() => rest,
        _ => boxes,
    };
    let config_name = String::from_utf8_lossy(config);
    let body = child(boxes, config)?
        .ok_or_else(|| bad(format!("the {codec} sample entry has no {config_name} box (the stream's parameter sets)")))?;
    let size = read(body).map_err(|why| bad(format!("the {name} SPS in the {config_name} box does not read: {why}")))?;
    let nal_length = usize::from(body.get(length_at).ok_or_else(|| bad(format!("the {config_name} box is too short")))? & 3) + 1;
    let read_nal: SizeReader = if codec.starts_with('a') { avc::sps_size } else { hevc::sps_size };
    Ok(Some(StreamConfig { size, nal_length, is_sps, read: read_nal }))
}

/// The end of the last chunk: the largest chunk offset plus the sizes of the
/// samples in it. Approximated from above by offset + the largest chunk's
/// bytes, which is enough to tell a file that lacks its data.
fn sample_data_end(stbl: &[u8]) -> Result<u64, ProbeError> {
    let offsets: Vec<u64> = if let Some(stco) = child(stbl, b"stco")? {
        (0..be_u32(stco, 4)? as usize).map(|i| be_u32(stco, 8 + i * 4).map(u64::from)).collect::<Result<_, _>>()?
    } else if let Some(co64) = child(stbl, b"co64")? {
        (0..be_u32(co64, 4)? as usize).map(|i| be_u64(co64, 8 + i * 8)).collect::<Result<_, _>>()?
    } else {
        return Ok(0);
    };
    let Some(&last_offset) = offsets.iter().max() else { return Ok(0) };
    let stsz = require(stbl, b"stsz")?;
    let (uniform, count) = (be_u32(stsz, 4)?, be_u32(stsz, 8)? as usize);
    let last_sample = if uniform != 0 {
        u64::from(uniform)
    } else if count == 0 {
        0
    } else {
        u64::from(be_u32(stsz, 12 + (count - 1) * 4)?)
    };
    Ok(last_offset.saturating_add(last_sample))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    /// An AVCDecoderConfigurationRecord with the SPS of a `w`x`h` stream.
    fn avcc(w: u16, h: u16) -> Vec<u8> {
        let sps = avc::tests::sps(&avc::tests::Sps::progressive(u32::from(w), u32::from(h)));
        let mut out = vec![1, 100, 0, 40, 0xff, 0xe1];
        out.extend_from_slice(&u16::try_from(sps.len()).unwrap().to_be_bytes());
        out.extend(sps);
        out.extend_from_slice(&[1, 0, 4, 0x68, 0xee, 0x3c, 0x80]);
        out
    }

    /// An HEVCDecoderConfigurationRecord with the SPS of a `w`x`h` stream.
    fn hvcc(w: u16, h: u16) -> Vec<u8> {
        let sps = hevc::tests::sps(&hevc::tests::Sps::new(u64::from(w), u64::from(h)));
        hevc::tests::hvcc(&[(32, vec![vec![0x40, 0x01, 0x0c, 0x01]]), (33, vec![sps]), (34, vec![vec![0x44, 0x01, 0xc0, 0x73]])])
    }

    /// A minimal MP4 whose H.264 video track lasts `seconds` at `w`x`h`,
    /// with one chunk at `chunk_offset` of one 100-byte sample.
    fn mp4(seconds: u32, w: u16, h: u16, handler: &[u8; 4], chunk_offset: u32) -> Vec<u8> {
        let config = (w > 0 && h > 0).then(|| boxed(b"avcC", &avcc(w, h)));
        mp4_of(b"avc1", config, seconds, w, h, handler, chunk_offset)
    }

    /// [`mp4`] with a sample entry of type `fourcc` holding `config`.
    fn mp4_of(fourcc: &[u8; 4], config: Option<Vec<u8>>, seconds: u32, w: u16, h: u16, handler: &[u8; 4], chunk_offset: u32) -> Vec<u8> {
        let moov = boxed(b"moov", &trak(fourcc, config, seconds, w, h, handler, chunk_offset));
        [boxed(b"ftyp", b"isom\0\0\0\0isomavc1"), moov, boxed(b"mdat", &[7; 2000])].concat()
    }

    /// The `trak` (track 1) of [`mp4_of`].
    fn trak(fourcc: &[u8; 4], config: Option<Vec<u8>>, seconds: u32, w: u16, h: u16, handler: &[u8; 4], chunk_offset: u32) -> Vec<u8> {
        let mut tkhd = vec![0u8; 84];
        tkhd[12..16].copy_from_slice(&1u32.to_be_bytes());
        let mut mdhd = vec![0u8; 12];
        mdhd.extend_from_slice(&1000u32.to_be_bytes());
        mdhd.extend_from_slice(&(seconds * 1000).to_be_bytes());
        mdhd.extend_from_slice(&[0; 4]);
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(handler);
        hdlr.extend_from_slice(&[0; 13]);
        let mut entry = vec![0u8; 24];
        entry.extend_from_slice(&w.to_be_bytes());
        entry.extend_from_slice(&h.to_be_bytes());
        entry.extend_from_slice(&[0; 50]);
        entry.extend(config.into_iter().flatten());
        let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd.extend(boxed(fourcc, &entry));
        // 25 frames a second of 40 ms (timescale 1000), one byte each.
        let mut stts = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stts.extend_from_slice(&(seconds * 25).to_be_bytes());
        stts.extend_from_slice(&40u32.to_be_bytes());
        let stsz = [[0u8; 4], 1u32.to_be_bytes(), (seconds * 25).to_be_bytes()].concat();
        let stco = [[0u8; 4], 1u32.to_be_bytes(), chunk_offset.to_be_bytes()].concat();
        let stbl = [boxed(b"stsd", &stsd), boxed(b"stts", &stts), boxed(b"stsz", &stsz), boxed(b"stco", &stco)].concat();
        let minf = boxed(b"minf", &boxed(b"stbl", &stbl));
        let mdia = boxed(b"mdia", &[boxed(b"mdhd", &mdhd), boxed(b"hdlr", &hdlr), minf].concat());
        boxed(b"trak", &[boxed(b"tkhd", &tkhd), mdia].concat())
    }

    #[test]
    fn reads_duration_resolution_codec_and_rate() {
        let facts = parse(Cursor::new(mp4(40, 1920, 1080, b"vide", 300))).unwrap();
        assert_eq!(facts.duration, Duration::from_secs(40));
        assert_eq!((facts.width, facts.height), (1920, 1080));
        assert_eq!(facts.codec, "avc1");
        assert!((facts.frame_rate.unwrap() - 25.0).abs() < 1e-9);
    }

    #[test]
    fn the_duration_is_the_samples_not_the_header_claim() {
        let mut bytes = mp4(2, 1920, 1080, b"vide", 300);
        // Make the mdhd claim 60 s (its duration field follows the timescale).
        let at = bytes.windows(4).position(|w| w == b"mdhd").unwrap() + 4 + 16;
        bytes[at..at + 4].copy_from_slice(&60_000u32.to_be_bytes());
        assert_eq!(parse(Cursor::new(bytes)).unwrap().duration, Duration::from_secs(2));
    }

    #[test]
    fn refuses_timing_and_size_tables_that_disagree() {
        let mut bytes = mp4(40, 1920, 1080, b"vide", 300);
        let at = bytes.windows(4).position(|w| w == b"stsz").unwrap() + 4 + 8;
        bytes[at..at + 4].copy_from_slice(&50u32.to_be_bytes());
        assert!(matches!(parse(Cursor::new(bytes)), Err(ProbeError::NotMp4(why)) if why.contains("samples")));
    }

    #[test]
    fn refuses_what_is_not_an_mp4() {
        for bytes in [Vec::new(), b"GIF89a not a video".to_vec(), boxed(b"mdat", &[0; 10])] {
            assert!(matches!(parse(Cursor::new(bytes)), Err(ProbeError::NotMp4(_))));
        }
    }

    #[test]
    fn quicktime_movies_may_start_without_an_ftyp() {
        let whole = mp4(40, 1920, 1080, b"vide", 300);
        let ftyp = usize::from(whole[3]);
        for first in [b"wide", b"free", b"skip"] {
            // The padding box in the ftyp's place: the offsets stay right.
            let mut bytes = whole.clone();
            bytes[4..8].copy_from_slice(first);
            assert_eq!(parse(Cursor::new(bytes)).unwrap().duration, Duration::from_secs(40), "{first:?}");
        }
        // The moov first, then its data.
        let mut bytes = mp4(40, 1920, 1080, b"vide", 300).split_off(ftyp);
        let at = bytes.windows(4).position(|w| w == b"stco").unwrap() + 12;
        bytes[at..at + 4].copy_from_slice(&(300 - u32::try_from(ftyp).unwrap()).to_be_bytes());
        assert_eq!(parse(Cursor::new(bytes)).unwrap().duration, Duration::from_secs(40));

        // But not any first box, nor a padding box before nothing.
        let mut other = whole.clone();
        other[4..8].copy_from_slice(b"junk");
        assert!(matches!(parse(Cursor::new(other)), Err(ProbeError::NotMp4(why)) if why.contains("starts with neither")));
        for bytes in [boxed(b"wide", &[]), [boxed(b"free", &[0; 8]), boxed(b"mdat", &[0; 100])].concat()] {
            assert!(matches!(parse(Cursor::new(bytes)), Err(ProbeError::NotMp4(why)) if why.contains("no moov")));
        }
        let mut garbage = boxed(b"skip", &[0; 8]);
        garbage.extend_from_slice(b"this is not a box at all");
        assert!(matches!(parse(Cursor::new(garbage)), Err(ProbeError::NotMp4(_))));
    }

    #[test]
    fn refuses_a_sample_entry_type_that_is_not_printable() {
        let mut bytes = mp4(40, 1920, 1080, b"vide", 300);
        let at = bytes.windows(4).rposition(|w| w == b"avc1").unwrap();
        bytes[at..at + 4].copy_from_slice(b"\xffa\x001");
        assert!(matches!(parse(Cursor::new(bytes)), Err(ProbeError::NotMp4(why)) if why.contains("sample entry type")));
    }

    #[test]
    fn the_frame_size_is_the_streams_and_the_entry_must_state_it() {
        let whole = mp4(40, 640, 360, b"vide", 300);
        let entry = whole.windows(4).rposition(|w| w == b"avc1").unwrap();
        let claiming = |w: u16, h: u16| {
            let mut bytes = whole.clone();
            bytes[entry + 28..entry + 32].copy_from_slice(&[w.to_be_bytes(), h.to_be_bytes()].concat());
            parse(Cursor::new(bytes))
        };
        assert_eq!((parse(Cursor::new(&whole)).unwrap().width, parse(Cursor::new(&whole)).unwrap().height), (640, 360));
        let mismatch = |w, h| ProbeError::SizeMismatch { declared_width: w, declared_height: h, coded_width: 640, coded_height: 360 };
        assert_eq!(claiming(1920, 1080), Err(mismatch(1920, 1080)));
        // The uncropped size (368 rows coded) is not the picture either.
        assert_eq!(claiming(640, 368), Err(mismatch(640, 368)));

        // Other codecs keep the entry's size: the upload rules refuse them by name.
        let mut mp4v = whole.clone();
        mp4v[entry..entry + 4].copy_from_slice(b"mp4v");
        let facts = parse(Cursor::new(mp4v)).unwrap();
        assert_eq!((facts.codec.as_str(), facts.width, facts.height), ("mp4v", 640, 360));

        let mut no_avcc = whole.clone();
        let avcc = no_avcc.windows(4).position(|w| w == b"avcC").unwrap();
        no_avcc[avcc..avcc + 4].copy_from_slice(b"free");
        assert!(matches!(parse(Cursor::new(no_avcc)), Err(ProbeError::NotMp4(why)) if why.contains("no avcC box")));
    }

    #[test]
    fn refuses_an_mp4_with_only_audio() {
        assert_eq!(parse(Cursor::new(mp4(40, 0, 0, b"soun", 300))), Err(ProbeError::NoVideoTrack));
    }

    #[test]
    fn refuses_truncated_files_and_indexes_pointing_past_the_end() {
        let whole = mp4(40, 1920, 1080, b"vide", 300);
        for cut in [whole.len() - 1, whole.len() / 2, 10] {
            assert!(matches!(parse(Cursor::new(&whole[..cut])), Err(ProbeError::NotMp4(_))), "cut at {cut}");
        }
        let lying = mp4(40, 1920, 1080, b"vide", 1_000_000);
        assert!(matches!(parse(Cursor::new(lying)), Err(ProbeError::NotMp4(why)) if why.contains("samples end")));
    }

    #[test]
    fn refuses_a_huge_moov_without_reading_it() {
        let mut bytes = boxed(b"ftyp", b"isom\0\0\0\0");
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(b"moov");
        bytes.extend_from_slice(&(MAX_MOOV_BYTES + 100).to_be_bytes());
        bytes.resize(bytes.len() + 100, 0);
        assert!(matches!(parse(Cursor::new(bytes)), Err(ProbeError::NotMp4(_))));
    }

    /// [`mp4`] whose first sample holds `nals` (each with a 4-byte length).
    fn with_first_sample(mut bytes: Vec<u8>, nals: &[Vec<u8>]) -> Vec<u8> {
        let sample: Vec<u8> =
            nals.iter().flat_map(|nal| [u32::try_from(nal.len()).unwrap().to_be_bytes().to_vec(), nal.clone()].concat()).collect();
        let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap() + 4;
        bytes[mdat..mdat + sample.len()].copy_from_slice(&sample);
        let stco = bytes.windows(4).position(|w| w == b"stco").unwrap() + 4 + 8;
        bytes[stco..stco + 4].copy_from_slice(&u32::try_from(mdat).unwrap().to_be_bytes());
        let stsz = bytes.windows(4).position(|w| w == b"stsz").unwrap() + 4 + 4;
        bytes[stsz..stsz + 4].copy_from_slice(&u32::try_from(sample.len()).unwrap().to_be_bytes());
        bytes
    }

    #[test]
    fn parameter_sets_in_the_first_sample_must_code_the_entrys_size() {
        let sps = |w, h| avc::tests::sps(&avc::tests::Sps::progressive(w, h));
        let (aud, slice) = (vec![0x09, 0xf0], vec![0x65, 0x88, 0x84, 0x00]);
        // x264's repeat-headers: a 640x360 stream behind a 1080p avcC and entry.
        let lying = with_first_sample(mp4(30, 1920, 1080, b"vide", 300), &[aud.clone(), sps(640, 360), slice.clone()]);
        assert_eq!(
            parse(Cursor::new(lying)),
            Err(ProbeError::SizeMismatch { declared_width: 1920, declared_height: 1080, coded_width: 640, coded_height: 360 })
        );
        let honest = with_first_sample(mp4(30, 1920, 1080, b"vide", 300), &[aud.clone(), sps(1920, 1080), slice.clone()]);
        assert_eq!(parse(Cursor::new(honest)).map(|f| (f.width, f.height)), Ok((1920, 1080)));
        let broken = with_first_sample(mp4(30, 1920, 1080, b"vide", 300), &[vec![0x67, 0x64], slice.clone()]);
        assert!(matches!(parse(Cursor::new(broken)), Err(ProbeError::NotMp4(why)) if why.contains("inside the first sample")));
        let none = with_first_sample(mp4(30, 1920, 1080, b"vide", 300), &[aud, slice]);
        assert!(parse(Cursor::new(none)).is_ok(), "no SPS in band: the avcC's holds");
    }

    #[test]
    fn an_hevc_track_reads_its_size_from_the_hvcc() {
        let hevc = |w, h, config: Option<Vec<u8>>| parse(Cursor::new(mp4_of(b"hvc1", config, 30, w, h, b"vide", 300)));
        let facts = hevc(1080, 1920, Some(boxed(b"hvcC", &hvcc(1080, 1920)))).unwrap();
        assert_eq!((facts.codec.as_str(), facts.width, facts.height), ("hvc1", 1080, 1920));
        assert_eq!(
            hevc(1920, 1080, Some(boxed(b"hvcC", &hvcc(640, 360)))),
            Err(ProbeError::SizeMismatch { declared_width: 1920, declared_height: 1080, coded_width: 640, coded_height: 360 })
        );
        assert!(matches!(hevc(1920, 1080, None), Err(ProbeError::NotMp4(why)) if why.contains("no hvcC box")));
        // An avcC is not what an HEVC entry needs.
        assert!(matches!(hevc(1920, 1080, Some(boxed(b"avcC", &avcc(1920, 1080)))), Err(ProbeError::NotMp4(_))));
        let broken = boxed(b"hvcC", &hvcc(1920, 1080)[..40]);
        assert!(matches!(hevc(1920, 1080, Some(broken)), Err(ProbeError::NotMp4(why)) if why.contains("HEVC SPS")));
    }

    #[test]
    fn a_quicktime_entry_may_end_its_boxes_with_a_zero() {
        let config = [boxed(b"avcC", &avcc(1920, 1080)), vec![0; 4]].concat();
        let facts = parse(Cursor::new(mp4_of(b"avc1", Some(config), 30, 1920, 1080, b"vide", 300))).unwrap();
        assert_eq!((facts.width, facts.height), (1920, 1080));
    }

    /// A `tfhd` of `track` with `flags` and the optional fields they say,
    /// in order (the base data offset, when there, as 64 bits).
    fn tfhd(flags: u32, track: u32, fields: &[u64]) -> Vec<u8> {
        let mut body = [flags.to_be_bytes(), track.to_be_bytes()].concat();
        for (i, &field) in fields.iter().enumerate() {
            if i == 0 && flags & 1 != 0 {
                body.extend_from_slice(&field.to_be_bytes());
            } else {
                body.extend_from_slice(&u32::try_from(field).unwrap().to_be_bytes());
            }
        }
        boxed(b"tfhd", &body)
    }

    /// A `trun` of `count` samples with `flags`, its data offset when there,
    /// and `records` (every sample's fields the flags say, flattened).
    fn trun(flags: u32, count: u32, data_offset: Option<i32>, records: &[u32]) -> Vec<u8> {
        let mut body = [flags.to_be_bytes(), count.to_be_bytes()].concat();
        body.extend(data_offset.map(i32::to_be_bytes).into_iter().flatten());
        body.extend(records.iter().flat_map(|r| r.to_be_bytes()));
        boxed(b"trun", &body)
    }

    fn trex(track: u32, duration: u32, size: u32) -> Vec<u8> {
        boxed(b"trex", &[[0; 4], track.to_be_bytes(), 1u32.to_be_bytes(), duration.to_be_bytes(), size.to_be_bytes(), [0; 4]].concat())
    }

    /// A fragmented MP4: 2 s (50 samples) in the moov's own table, then
    /// - a moof whose video traf (tfhd defaults, based on the moof) adds 50
    ///   samples of 40 ms and 10 bytes in one run;
    /// - a moof with an audio traf (3 samples of 100 bytes, based on the
    ///   moof as the first traf) then a video traf based where the audio's
    ///   data ends, of two runs: 25 samples with their own durations and
    ///   sizes, then 25 with the trex's defaults, following on;
    ///
    /// each with its mdat: 6 s, 150 frames. `mvex` holds the trex boxes; the
    /// last mdat is `short` bytes shorter than its runs need.
    fn fragmented(mvex: &[u8], short: usize) -> Vec<u8> {
        let video = trak(b"avc1", Some(boxed(b"avcC", &avcc(1920, 1080))), 2, 1920, 1080, b"vide", 0);
        let mut bytes = [boxed(b"ftyp", b"iso6\0\0\0\0iso6"), boxed(b"moov", &[video, boxed(b"mvex", mvex)].concat())].concat();

        let traf = |tfhd: Vec<u8>, truns: &[Vec<u8>]| boxed(b"traf", &[tfhd, truns.concat()].concat());
        // The moofs' sizes do not depend on the data offsets in them.
        let first = |offset| boxed(b"moof", &traf(tfhd(0x02_0018, 1, &[40, 10]), &[trun(1, 50, Some(offset), &[])]));
        let offset = i32::try_from(first(0).len() + 8).unwrap();
        bytes.extend(first(offset));
        bytes.extend(boxed(b"mdat", &[1; 500]));

        let records: Vec<u32> = (0..25).flat_map(|_| [40, 10]).collect();
        let second = |offset| {
            let audio = traf(tfhd(0, 2, &[]), &[trun(0x201, 3, Some(offset), &[100, 100, 100])]);
            let video = traf(tfhd(0, 1, &[]), &[trun(0x300, 25, None, &records), trun(0, 25, None, &[])]);
            boxed(b"moof", &[audio, video].concat())
        };
        let offset = i32::try_from(second(0).len() + 8).unwrap();
        bytes.extend(second(offset));
        bytes.extend(boxed(b"mdat", &vec![2; 300 + 250 + 250 - short]));
        bytes
    }

    fn mvex() -> Vec<u8> {
        [trex(1, 40, 10), trex(2, 1024, 100)].concat()
    }

    #[test]
    fn fragments_add_their_samples_to_the_moovs() {
        let facts = parse(Cursor::new(fragmented(&mvex(), 0))).unwrap();
        assert_eq!(facts.duration, Duration::from_secs(6));
        assert!((facts.frame_rate.unwrap() - 25.0).abs() < 1e-9, "{facts:?}");
        assert_eq!((facts.width, facts.height, facts.codec.as_str()), (1920, 1080, "avc1"));

        // The runs' durations: the trex's default when nothing else says.
        let slow = [trex(1, 80, 10), trex(2, 1024, 100)].concat();
        assert_eq!(parse(Cursor::new(fragmented(&slow, 0))).unwrap().duration, Duration::from_secs(7));
    }

    #[test]
    fn fragments_whose_data_is_not_in_the_file_are_refused() {
        // One byte of the last run missing: every box still fits.
        let short = fragmented(&mvex(), 1);
        assert!(matches!(parse(Cursor::new(short)), Err(ProbeError::NotMp4(why)) if why.contains("past the end")));
        // The trex's default size, 10 bytes, is what the last run's data needs.
        let bigger = [trex(1, 40, 11), trex(2, 1024, 100)].concat();
        assert!(matches!(parse(Cursor::new(fragmented(&bigger, 0))), Err(ProbeError::NotMp4(why)) if why.contains("past the end")));
    }

    #[test]
    fn broken_fragments_are_refused() {
        let whole = fragmented(&mvex(), 0);
        let moof = whole.windows(4).position(|w| w == b"moof").unwrap() - 4;
        let refused = |bytes: Vec<u8>, reason: &str| {
            let result = parse(Cursor::new(bytes));
            assert!(matches!(&result, Err(ProbeError::NotMp4(why)) if why.contains(reason)), "{reason}: {result:?}");
        };
        // A moof before the moov.
        let moov = whole.windows(4).position(|w| w == b"moov").unwrap() - 4;
        refused([&whole[..moov], &whole[moof..], &whole[moov..moof]].concat::<u8>(), "before the moov");
        // No mvex, or no trex for a track that has fragments.
        let mut no_mvex = whole.clone();
        let mvex = no_mvex.windows(4).position(|w| w == b"mvex").unwrap();
        no_mvex[mvex..mvex + 4].copy_from_slice(b"free");
        refused(no_mvex, "no mvex");
        refused(fragmented(&trex(1, 40, 10), 0), "track 2");
        // A video trak without its tkhd.
        let mut no_tkhd = whole.clone();
        let tkhd = no_tkhd.windows(4).position(|w| w == b"tkhd").unwrap();
        no_tkhd[tkhd..tkhd + 4].copy_from_slice(b"free");
        refused(no_tkhd, "tkhd");
        // A run claiming more sample records than its box holds.
        let mut many = whole.clone();
        let runs: Vec<usize> = many.windows(4).enumerate().filter(|(_, w)| w == b"trun").map(|(at, _)| at).collect();
        let count = runs[runs.len() - 2] + 4 + 4; // the first video run of the second moof
        many[count..count + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        refused(many, "does not fit");
        // Data offsets before the start of the file, or past any file.
        let mut before = whole.clone();
        let offset = before.windows(4).position(|w| w == b"trun").unwrap() + 4 + 8;
        before[offset..offset + 4].copy_from_slice(&(-100_000i32).to_be_bytes());
        refused(before, "before the file");
    }

    #[test]
    fn fragment_data_offsets_that_overflow_are_refused() {
        // A tfhd base data offset at the end of the 64-bit range.
        let video = trak(b"avc1", Some(boxed(b"avcC", &avcc(1920, 1080))), 2, 1920, 1080, b"vide", 0);
        let moov = boxed(b"moov", &[video, boxed(b"mvex", &mvex())].concat());
        let traf = boxed(b"traf", &[tfhd(1, 1, &[u64::MAX - 5]), trun(1, 50, Some(1), &[])].concat());
        let bytes = [boxed(b"ftyp", b"iso6\0\0\0\0iso6"), moov, boxed(b"moof", &traf), boxed(b"mdat", &[0; 500])].concat();
        assert!(matches!(parse(Cursor::new(bytes)), Err(ProbeError::NotMp4(why)) if why.contains("past any file")));
    }

    #[test]
    fn the_moof_boxes_are_read_within_one_budget() {
        let video = trak(b"avc1", Some(boxed(b"avcC", &avcc(1920, 1080))), 2, 1920, 1080, b"vide", 0);
        let mut bytes = [boxed(b"ftyp", b"iso6\0\0\0\0iso6"), boxed(b"moov", &[video, boxed(b"mvex", &mvex())].concat())].concat();
        let moof = boxed(b"moof", &vec![0; 1 << 20]);
        for _ in 0..=MAX_MOOV_BYTES >> 20 {
            bytes.extend_from_slice(&moof);
        }
        assert!(matches!(parse(Cursor::new(bytes)), Err(ProbeError::NotMp4(why)) if why.contains("moof boxes hold more")));
    }

    #[test]
    fn every_prefix_and_every_flipped_byte_passes_the_fuzz_checks() {
        let hevc = mp4_of(b"hvc1", Some(boxed(b"hvcC", &hvcc(1920, 1080))), 40, 1920, 1080, b"vide", 300);
        for whole in [mp4(40, 1920, 1080, b"vide", 300), hevc, fragmented(&mvex(), 0)] {
            for cut in 0..whole.len() {
                fuzz_one(&whole[..cut]);
            }
            for at in 0..whole.len() {
                for value in [0u8, 1, 0x7f, 0xff] {
                    let mut bytes = whole.clone();
                    bytes[at] = value;
                    fuzz_one(&bytes);
                }
            }
        }
    }
}

/// What the fuzz target checks of any bytes: the parser answers `Ok` or an
/// error, never panics, and what it accepts is usable facts. Shared by the
/// fuzz target (`fuzz/fuzz_targets/probe.rs`) and the replay of its corpus
/// in the tests.
///
/// # Panics
/// When an invariant does not hold: that is what the fuzzer looks for.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    if let Ok(facts) = parse(std::io::Cursor::new(data)) {
        assert!(data.len() >= 16, "accepted {} bytes", data.len());
        assert!(facts.codec.len() == 4 && facts.codec.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "codec {:?}", facts.codec);
        assert!(facts.frame_rate.is_none_or(|fps| fps.is_finite() && fps > 0.0), "frame rate {:?}", facts.frame_rate);
        if matches!(facts.codec.as_str(), "avc1" | "avc3" | "hvc1" | "hev1") {
            // A size the stream's parameter sets coded, which the entry agrees with.
            assert!(facts.width > 0 && facts.height > 0 && facts.width.max(facts.height) <= 65_535, "{}x{}", facts.width, facts.height);
        }
    }
}

/// The fuzz target's seeds and every input the fuzzer ever found a fault
/// with (`fuzz/seeds/probe`, `fuzz/regressions/probe`), replayed on each
/// `make test`.
#[cfg(test)]
mod fuzz_corpus {
    use std::io::Cursor;
    use std::path::Path;

    use super::*;

    fn files(dir: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz").join(dir);
        let mut out: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.expect("a directory entry").path();
                (path.file_name().expect("a name").to_string_lossy().into_owned(), std::fs::read(&path).expect("readable"))
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn seeds_parse_as_ffmpeg_wrote_them() {
        let seeds = files("seeds/probe");
        assert!(seeds.len() >= 11, "the seed corpus is missing");
        for (name, bytes) in seeds {
            let result = parse(Cursor::new(&bytes));
            match name.as_str() {
                "audio-only.mp4" => assert_eq!(result, Err(ProbeError::NoVideoTrack), "{name}"),
                "video-faststart.mp4" | "video-audio.mp4" => {
                    let facts = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!((facts.width, facts.height, facts.codec.as_str()), (64, 48, "avc1"), "{name}");
                    assert_eq!(facts.duration, Duration::from_secs(1), "{name}");
                }
                "size-mismatch.mp4" => assert_eq!(
                    result,
                    Err(ProbeError::SizeMismatch { declared_width: 1920, declared_height: 1080, coded_width: 64, coded_height: 48 }),
                    "{name}"
                ),
                _ => {
                    let facts = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                    let expected = match name.as_str() {
                        "fragmented.mp4" => (48, 64, "avc1"),
                        "fragmented-audio.mp4" | "quicktime-wide-first.mov" => (64, 48, "avc1"),
                        "h264-444-interlaced.mp4" => (72, 40, "avc1"),
                        "hevc-window.mp4" => (66, 50, "hvc1"),
                        "hevc-hev1-sublayers.mp4" => (64, 48, "hev1"),
                        "mpeg4.mp4" => (64, 48, "mp4v"),
                        _ => panic!("{name}: a seed this test does not know"),
                    };
                    assert_eq!((facts.width, facts.height, facts.codec.as_str()), expected, "{name}");
                    // 25 frames in 1 s (ffmpeg stretched the last frame of the
                    // fragmented one with audio to the audio's end: ffprobe reads
                    // 1.023281 s too).
                    let seconds = if name == "fragmented-audio.mp4" { 1.023_281_25 } else { 1.0 };
                    assert!((facts.duration.as_secs_f64() - seconds).abs() < 1e-6, "{name}: {facts:?}");
                    assert!((facts.frame_rate.unwrap() * seconds - 25.0).abs() < 1e-6, "{name}: {facts:?}");
                }
            }
            fuzz_one(&bytes);
        }
    }

    /// The parameter sets of real encoders, damaged a byte at a time.
    #[test]
    fn every_flipped_byte_of_the_seeds_decoder_configurations_passes_the_fuzz_checks() {
        let mut configs = 0;
        for (_, whole) in files("seeds/probe") {
            for kind in [b"avcC", b"hvcC"] {
                let Some(at) = whole.windows(4).position(|w| w == kind) else { continue };
                configs += 1;
                let size = usize::try_from(u32::from_be_bytes(whole[at - 4..at].try_into().unwrap())).unwrap();
                for byte in at + 4..at - 4 + size {
                    for value in [0u8, 1, 0x7f, 0xff, whole[byte] ^ 1] {
                        let mut bytes = whole.clone();
                        bytes[byte] = value;
                        fuzz_one(&bytes);
                    }
                }
            }
        }
        assert!(configs >= 9, "{configs} decoder configurations in the seeds");
    }

    #[test]
    fn inputs_the_fuzzer_found_faults_with_are_answered() {
        for (name, bytes) in files("regressions/probe") {
            if name.starts_with('.') {
                continue;
            }
            assert!(std::panic::catch_unwind(|| fuzz_one(&bytes)).is_ok(), "{name}");
        }
    }
}
