//! The coded frame size of an H.264 stream, from the first sequence
//! parameter set (SPS) of the `avcC` box in its sample entry: the
//! AVCDecoderConfigurationRecord of ISO/IEC 14496-15 and the SPS syntax of
//! ITU-T H.264 7.3.2.1.1, read up to the frame cropping fields.

use crate::bits::{Bits, BitsError, cropped, rbsp};

/// The first SPS NAL unit of an AVCDecoderConfigurationRecord.
pub(crate) fn config_sps(avcc: &[u8]) -> Result<&[u8], BitsError> {
    // configurationVersion, AVCProfileIndication, profile_compatibility,
    // AVCLevelIndication, lengthSizeMinusOne, numOfSequenceParameterSets.
    let head = avcc.get(..6).ok_or("the avcC box is too short")?;
    if head[0] != 1 {
        return Err("the avcC box has an unknown version");
    }
    if head[5] & 0x1f == 0 {
        return Err("the avcC box holds no SPS (parameter sets only inside the stream are not supported)");
    }
    let len = avcc.get(6..8).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))).ok_or("the avcC box is too short")?;
    avcc.get(8..8 + len).filter(|sps| !sps.is_empty()).ok_or("the avcC's SPS does not fit in the box")
}

/// Profiles whose SPS carries the chroma format, bit depths and scaling
/// matrices (`profile_idc` values of H.264 7.3.2.1.1).
const HIGH_PROFILES: [u32; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// The cropped frame size (width, height) an H.264 SPS NAL unit codes.
pub(crate) fn sps_size(nal: &[u8]) -> Result<(u32, u32), BitsError> {
    let data = rbsp(nal);
    let mut b = Bits::new(&data);
    // forbidden_zero_bit, nal_ref_idc, nal_unit_type (7: SPS).
    let header = b.bits(8)?;
    if header & 0x80 != 0 || header & 0x1f != 7 {
        return Err("the NAL unit is not an SPS");
    }
    let profile_idc = b.bits(8)?;
    b.skip(16)?; // constraint_set flags, reserved_zero_2bits, level_idc
    b.ue_max(31, "seq_parameter_set_id is out of range")?;
    let (mut chroma_format_idc, mut separate_colour_plane) = (1, false);
    if HIGH_PROFILES.contains(&profile_idc) {
        chroma_format_idc = b.ue_max(3, "chroma_format_idc is out of range")?;
        if chroma_format_idc == 3 {
            separate_colour_plane = b.flag()?;
        }
        b.ue_max(6, "bit_depth_luma_minus8 is out of range")?;
        b.ue_max(6, "bit_depth_chroma_minus8 is out of range")?;
        b.flag()?; // qpprime_y_zero_transform_bypass_flag
        if b.flag()? {
            // seq_scaling_matrix_present_flag: 6 4x4 lists, then 2 (6 in 4:4:4) 8x8 lists.
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.flag()? {
                    skip_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    b.ue_max(12, "log2_max_frame_num_minus4 is out of range")?;
    match b.ue_max(2, "pic_order_cnt_type is out of range")? {
        0 => {
            b.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4 is out of range")?;
        }
        1 => {
            b.flag()?; // delta_pic_order_always_zero_flag
            b.se()?; // offset_for_non_ref_pic
            b.se()?; // offset_for_top_to_bottom_field
            for _ in 0..b.ue_max(255, "num_ref_frames_in_pic_order_cnt_cycle is out of range")? {
                b.se()?; // offset_for_ref_frame
            }
        }
        _ => {}
    }
    b.ue_max(16, "max_num_ref_frames is out of range")?;
    b.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_in_mbs = u64::from(b.ue()?) + 1;
    let height_in_map_units = u64::from(b.ue()?) + 1;
    let frame_mbs_only = b.flag()?;
    if !frame_mbs_only {
        b.flag()?; // mb_adaptive_frame_field_flag
    }
    b.flag()?; // direct_8x8_inference_flag
    let crop = if b.flag()? { [b.ue()?, b.ue()?, b.ue()?, b.ue()?].map(u64::from) } else { [0; 4] };

    // A frame of field pairs has twice the map units' height (7.4.2.1.1), and
    // crops in units of the chroma subsampling times that (7-19 to 7-22).
    let fields = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
    let (unit_x, unit_y) = match chroma_array_type {
        1 => (2, 2 * fields),
        2 => (2, fields),
        _ => (1, fields),
    };
    let width = cropped(width_in_mbs * 16, unit_x, crop[0], crop[1])?;
    let height = cropped(height_in_map_units * 16 * fields, unit_y, crop[2], crop[3])?;
    Ok((width, height))
}

/// Skips a `scaling_list()` of `size` coefficients (7.3.2.1.1.1): a delta is
/// coded until one makes the next scale 0, after which the list repeats.
fn skip_scaling_list(b: &mut Bits, size: usize) -> Result<(), BitsError> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = b.se()?;
            if !(-128..=127).contains(&delta) {
                return Err("delta_scale is out of range");
            }
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bits::BitWriter;

    /// What an SPS codes; [`sps`] writes it.
    #[derive(Debug, Clone)]
    pub(crate) struct Sps {
        pub profile_idc: u64,
        pub chroma_format_idc: u64,
        pub separate_colour_plane: bool,
        /// Deltas of every 4x4 and 8x8 scaling list, when the SPS has a matrix.
        pub scaling_lists: Option<Vec<Vec<i64>>>,
        pub pic_order_cnt_type: u64,
        pub width_in_mbs: u64,
        pub height_in_map_units: u64,
        pub frame_mbs_only: bool,
        pub crop: [u64; 4],
    }

    impl Sps {
        pub(crate) fn progressive(width: u32, height: u32) -> Self {
            let (w, h) = (u64::from(width), u64::from(height));
            Self {
                profile_idc: 100,
                chroma_format_idc: 1,
                separate_colour_plane: false,
                scaling_lists: None,
                pic_order_cnt_type: 0,
                width_in_mbs: w.div_ceil(16),
                height_in_map_units: h.div_ceil(16),
                frame_mbs_only: true,
                crop: [0, (w.div_ceil(16) * 16 - w) / 2, 0, (h.div_ceil(16) * 16 - h) / 2],
            }
        }
    }

    /// The SPS NAL unit of `s`.
    pub(crate) fn sps(s: &Sps) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.bits(8, 0x67).bits(8, s.profile_idc).bits(16, 0x0028).ue(0);
        if HIGH_PROFILES.contains(&(s.profile_idc as u32)) {
            w.ue(s.chroma_format_idc);
            if s.chroma_format_idc == 3 {
                w.flag(s.separate_colour_plane);
            }
            w.ue(2).ue(2).flag(false).flag(s.scaling_lists.is_some());
            for list in s.scaling_lists.iter().flatten() {
                w.flag(!list.is_empty());
                for &delta in list {
                    w.se(delta);
                }
            }
        }
        w.ue(0).ue(s.pic_order_cnt_type);
        match s.pic_order_cnt_type {
            0 => {
                w.ue(2);
            }
            1 => {
                w.flag(false).se(-5).se(7).ue(3).se(1).se(-2).se(300);
            }
            _ => {}
        }
        w.ue(4).flag(false).ue(s.width_in_mbs - 1).ue(s.height_in_map_units - 1).flag(s.frame_mbs_only);
        if !s.frame_mbs_only {
            w.flag(true);
        }
        w.flag(true).flag(s.crop != [0; 4]);
        if s.crop != [0; 4] {
            for c in s.crop {
                w.ue(c);
            }
        }
        // vui_parameters_present_flag: never read.
        w.flag(false);
        w.nal()
    }

    #[test]
    fn an_x264_sps_reads_as_1920x1080() {
        let x264 = [
            0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03,
            0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
        ];
        assert_eq!(sps_size(&x264), Ok((1920, 1080)));
    }

    #[test]
    fn crop_units_follow_chroma_format_and_field_coding() {
        let base = Sps::progressive(1920, 1080);
        assert_eq!(sps_size(&sps(&base)), Ok((1920, 1080)));
        // Baseline: no chroma format in the SPS, 4:2:0 implied.
        assert_eq!(sps_size(&sps(&Sps { profile_idc: 66, ..base.clone() })), Ok((1920, 1080)));
        let cases = [
            // (chroma_format_idc, separate planes, frame_mbs_only, map units, crop bottom) -> height
            (1, false, true, 68, 4, 1080),  // 4:2:0: 2 rows a unit
            (2, false, true, 68, 8, 1080),  // 4:2:2: 1 row
            (3, false, true, 68, 8, 1080),  // 4:4:4: 1 row
            (3, true, true, 68, 8, 1080),   // separate planes: 1 row
            (0, false, true, 68, 8, 1080),  // monochrome: 1 row
            (1, false, false, 34, 2, 1080), // field pairs of 4:2:0: 4 rows
            (2, false, false, 34, 4, 1080), // field pairs of 4:2:2: 2 rows
            (0, false, false, 34, 4, 1080), // field pairs, monochrome: 2 rows
        ];
        for (chroma, planes, frames, units, bottom, height) in cases {
            let s = Sps {
                chroma_format_idc: chroma,
                separate_colour_plane: planes,
                frame_mbs_only: frames,
                height_in_map_units: units,
                crop: [0, 0, 0, bottom],
                ..base.clone()
            };
            assert_eq!(sps_size(&sps(&s)), Ok((1920, height)), "{s:?}");
        }
        // Left and right crops in 4:2:0 are in 2-pixel units.
        assert_eq!(sps_size(&sps(&Sps { crop: [1, 3, 0, 4], ..base.clone() })), Ok((1912, 1080)));
    }

    #[test]
    fn scaling_lists_and_picture_order_type_1_are_skipped_correctly() {
        // List 0 ends early with a delta that makes the next scale 0
        // (-8: 8 + -8 = 0); list 6 is a full 8x8 list; the others are absent.
        let mut lists = vec![Vec::new(); 8];
        lists[0] = vec![-8];
        lists[1] = vec![3, -1, 0, 5, -2, 7, 1, 1, -3, 2, 0, 0, 4, -1, 6, 2];
        lists[6] = (0..64).map(|i| (i % 5) - 2).collect();
        let s = Sps { scaling_lists: Some(lists), pic_order_cnt_type: 1, ..Sps::progressive(1280, 720) };
        assert_eq!(sps_size(&sps(&s)), Ok((1280, 720)));
        // 4:4:4 has 12 lists.
        let mut lists = vec![Vec::new(); 12];
        lists[11] = vec![1; 64];
        let s = Sps {
            chroma_format_idc: 3,
            scaling_lists: Some(lists),
            pic_order_cnt_type: 2,
            crop: [0, 0, 0, 8],
            ..Sps::progressive(640, 360)
        };
        assert_eq!(sps_size(&sps(&s)), Ok((640, 360)));
    }

    #[test]
    fn broken_or_absurd_parameter_sets_are_errors() {
        let good = sps(&Sps::progressive(640, 360));
        for cut in 0..good.len() - 1 {
            assert!(sps_size(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut pps = good.clone();
        pps[0] = 0x68;
        assert_eq!(sps_size(&pps), Err("the NAL unit is not an SPS"));
        // Cropping everything away, or more.
        let s = Sps { crop: [0, 0, 0, 184], ..Sps::progressive(640, 360) };
        assert!(sps_size(&sps(&s)).is_err());
        let s = Sps { crop: [u64::from(u32::MAX - 1), 0, 0, 0], ..Sps::progressive(640, 360) };
        assert!(sps_size(&sps(&s)).is_err());
        // Wider than a sample entry can say.
        let s = Sps { width_in_mbs: 5000, crop: [0; 4], ..Sps::progressive(640, 360) };
        assert!(sps_size(&sps(&s)).is_err());
        let s = Sps { chroma_format_idc: 4, ..Sps::progressive(640, 360) };
        assert!(sps_size(&sps(&s)).is_err());
    }

    #[test]
    fn the_first_sps_of_the_avcc_is_taken() {
        let nal = sps(&Sps::progressive(640, 360));
        let mut avcc = vec![1, 100, 0, 40, 0xff, 0xe1];
        avcc.extend_from_slice(&u16::try_from(nal.len()).unwrap().to_be_bytes());
        avcc.extend_from_slice(&nal);
        avcc.extend_from_slice(&[1, 0, 4, 0x68, 0xee, 0x3c, 0x80]);
        assert_eq!(config_sps(&avcc), Ok(&nal[..]));
        assert!(config_sps(&avcc[..avcc.len() - 8]).is_err());
        assert!(config_sps(&[1, 100, 0, 40, 0xff, 0xe0, 0]).is_err(), "no SPS");
        assert!(config_sps(&[0, 100, 0, 40, 0xff, 0xe1, 0, 0]).is_err(), "version 0");
    }
}
