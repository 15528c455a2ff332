//! Movie fragments (ISO/IEC 14496-12 8.8): a fragmented MP4's `moov` holds
//! few or no samples (an "empty moov"), its `mvex` the tracks' defaults, and
//! each `moof` the runs (`trun`) of samples its track fragments (`traf`) add,
//! whose data follows in an `mdat`. Read here: how many samples of the video
//! track the fragments add, how long they last, and where their data ends,
//! for every track, so that a file missing its samples is refused.

use crate::{ProbeError, bad, be_u32, be_u64, children, require};

/// What a track's `trex` box gives its fragments when their `tfhd` does not.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrackDefaults {
    track_id: u32,
    sample_duration: u32,
    sample_size: u32,
}

/// The `trex` of every track in the `moov`'s `mvex`, which a fragmented file
/// must have.
pub(crate) fn track_defaults(moov: &[u8]) -> Result<Vec<TrackDefaults>, ProbeError> {
    let mvex = require(moov, b"mvex").map_err(|_| bad("moof boxes in a file whose moov has no mvex box"))?;
    let mut out = Vec::new();
    for (header, trex) in children(mvex)? {
        if &header.kind == b"trex" {
            // version and flags, track_ID, default_sample_description_index,
            // default_sample_duration, default_sample_size, default_sample_flags.
            out.push(TrackDefaults { track_id: be_u32(trex, 4)?, sample_duration: be_u32(trex, 12)?, sample_size: be_u32(trex, 16)? });
        }
    }
    Ok(out)
}

/// What one `moof` adds.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Fragment {
    /// Samples of the video track.
    pub(crate) samples: u64,
    /// Their total duration, in the video track's timescale.
    pub(crate) ticks: u64,
    /// One past the last byte of sample data of any track.
    pub(crate) data_end: u64,
}

// tfhd flags.
const BASE_DATA_OFFSET: u32 = 0x1;
const SAMPLE_DESCRIPTION_INDEX: u32 = 0x2;
const DEFAULT_DURATION: u32 = 0x8;
const DEFAULT_SIZE: u32 = 0x10;
const DEFAULT_FLAGS: u32 = 0x20;
const DEFAULT_BASE_IS_MOOF: u32 = 0x2_0000;
// trun flags.
const DATA_OFFSET: u32 = 0x1;
const FIRST_SAMPLE_FLAGS: u32 = 0x4;
const SAMPLE_DURATION: u32 = 0x100;
const SAMPLE_SIZE: u32 = 0x200;
const SAMPLE_FLAGS: u32 = 0x400;
const SAMPLE_COMPOSITION_OFFSET: u32 = 0x800;

/// Reads the `moof` box at byte `start` of the file, body `moof`, for the
/// video track `video` (its `tkhd` track_ID).
pub(crate) fn read(start: u64, moof: &[u8], video: Option<u32>, defaults: &[TrackDefaults]) -> Result<Fragment, ProbeError> {
    let video = video.ok_or_else(|| bad("the video track of a fragmented file has no tkhd box"))?;
    let mut out = Fragment::default();
    // Without an explicit base, a track fragment's data starts at the moof
    // (the first) or where the previous track fragment's data ended.
    let mut next_base = start;
    for (header, traf) in children(moof)? {
        if &header.kind != b"traf" {
            continue;
        }
        let tfhd = require(traf, b"tfhd")?;
        let flags = be_u32(tfhd, 0)? & 0xff_ffff;
        let track_id = be_u32(tfhd, 4)?;
        let trex = defaults
            .iter()
            .find(|d| d.track_id == track_id)
            .ok_or_else(|| bad(format!("a fragment of track {track_id}, which the moov's mvex does not declare")))?;
        let mut at = 8;
        let mut base = next_base;
        if flags & BASE_DATA_OFFSET != 0 {
            base = be_u64(tfhd, at)?;
            at += 8;
        } else if flags & DEFAULT_BASE_IS_MOOF != 0 {
            base = start;
        }
        if flags & SAMPLE_DESCRIPTION_INDEX != 0 {
            at += 4;
        }
        let mut duration = trex.sample_duration;
        if flags & DEFAULT_DURATION != 0 {
            duration = be_u32(tfhd, at)?;
            at += 4;
        }
        let mut size = trex.sample_size;
        if flags & DEFAULT_SIZE != 0 {
            size = be_u32(tfhd, at)?;
            at += 4;
        }
        if flags & DEFAULT_FLAGS != 0 {
            be_u32(tfhd, at)?;
        }

        // Each run's data follows the previous one's unless it says where.
        let mut data = base;
        for (header, trun) in children(traf)? {
            if &header.kind != b"trun" {
                continue;
            }
            let run = read_run(trun, base, data, duration, size)?;
            data = run.data_end;
            out.data_end = out.data_end.max(run.data_end);
            if track_id == video {
                out.samples = out.samples.saturating_add(run.samples);
                out.ticks = out.ticks.saturating_add(run.ticks);
            }
        }
        next_base = data;
    }
    Ok(out)
}

/// Reads a `trun` whose track fragment's data starts at `base` and whose
/// data, without an offset of its own, starts at `data`.
fn read_run(trun: &[u8], base: u64, data: u64, duration: u32, size: u32) -> Result<Fragment, ProbeError> {
    let flags = be_u32(trun, 0)? & 0xff_ffff;
    let count = be_u32(trun, 4)?;
    let mut at = 8;
    let mut data_start = data;
    if flags & DATA_OFFSET != 0 {
        let offset = i64::from(be_u32(trun, at)? as i32);
        data_start = base.checked_add_signed(offset).ok_or_else(|| bad("a trun's data offset points before the file"))?;
        at += 4;
    }
    if flags & FIRST_SAMPLE_FLAGS != 0 {
        at += 4;
    }
    // Each sample's record: the fields the flags say, 4 bytes each.
    let fields = [SAMPLE_DURATION, SAMPLE_SIZE, SAMPLE_FLAGS, SAMPLE_COMPOSITION_OFFSET];
    let record = 4 * fields.iter().filter(|&&f| flags & f != 0).count();
    let (ticks, bytes) = if record == 0 {
        (u64::from(count) * u64::from(duration), u64::from(count) * u64::from(size))
    } else {
        // The records must be in the box: this bounds the loop by its size.
        let needed = usize::try_from(count).ok().and_then(|n| n.checked_mul(record)).and_then(|n| n.checked_add(at));
        if needed.is_none_or(|n| n > trun.len()) {
            return Err(bad(format!("a trun of {count} samples does not fit in its box")));
        }
        let (mut ticks, mut bytes) = (0u64, 0u64);
        for i in 0..count as usize {
            let sample = at + i * record;
            // The duration comes first, then the size.
            let (sample_duration, size_at) =
                if flags & SAMPLE_DURATION != 0 { (be_u32(trun, sample)?, sample + 4) } else { (duration, sample) };
            let sample_size = if flags & SAMPLE_SIZE != 0 { be_u32(trun, size_at)? } else { size };
            ticks += u64::from(sample_duration);
            bytes += u64::from(sample_size);
        }
        (ticks, bytes)
    };
    let data_end = data_start.checked_add(bytes).ok_or_else(|| bad("a trun's data ends past any file"))?;
    Ok(Fragment { samples: u64::from(count), ticks, data_end })
}
