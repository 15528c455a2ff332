//! The coded frame size of an HEVC stream, from the first sequence parameter
//! set (SPS) of the `hvcC` box in its sample entry: the
//! HEVCDecoderConfigurationRecord of ISO/IEC 14496-15 and the SPS syntax of
//! ITU-T H.265 7.3.2.2, read up to the conformance window.

use crate::bits::{Bits, BitsError, cropped, rbsp};

/// NAL unit type of a sequence parameter set.
const SPS_NUT: u8 = 33;

/// The first SPS NAL unit of the base layer in an
/// HEVCDecoderConfigurationRecord.
pub(crate) fn config_sps(hvcc: &[u8]) -> Result<&[u8], BitsError> {
    // 22 bytes of profile, level, format and frame rate fields, then the
    // number of NAL unit arrays.
    let head = hvcc.get(..23).ok_or("the hvcC box is too short")?;
    if head[0] != 1 {
        return Err("the hvcC box has an unknown version");
    }
    let mut pos = 23usize;
    let u16_at = |at: usize| hvcc.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))).ok_or("the hvcC box is too short");
    // At most 255 arrays, each of at most 65,535 NAL units of 2 bytes or
    // more: bounded by the box, as every step moves past bytes it holds.
    for _ in 0..head[22] {
        let nal_type = hvcc.get(pos).ok_or("the hvcC box is too short")? & 0x3f;
        let count = u16_at(pos + 1)?;
        pos += 3;
        for _ in 0..count {
            let len = u16_at(pos)?;
            let nal = hvcc.get(pos + 2..pos + 2 + len).ok_or("a NAL unit of the hvcC does not fit in the box")?;
            pos += 2 + len;
            // nuh_layer_id 0: the base layer's (a multi-layer stream's other
            // layers have SPSs of another syntax).
            let base_layer = nal.get(..2).is_some_and(|h| (u16::from_be_bytes([h[0], h[1]]) >> 3) & 0x3f == 0);
            if nal_type == SPS_NUT && base_layer {
                return Ok(nal);
            }
        }
    }
    Err("the hvcC box holds no SPS (parameter sets only inside the stream are not supported)")
}

/// The cropped frame size (width, height) an HEVC SPS NAL unit codes.
pub(crate) fn sps_size(nal: &[u8]) -> Result<(u32, u32), BitsError> {
    let data = rbsp(nal);
    let mut b = Bits::new(&data);
    // forbidden_zero_bit, nal_unit_type, nuh_layer_id, nuh_temporal_id_plus1.
    let header = b.bits(16)?;
    if header & 0x8000 != 0 || (header >> 9) & 0x3f != u32::from(SPS_NUT) {
        return Err("the NAL unit is not an SPS");
    }
    if (header >> 3) & 0x3f != 0 {
        return Err("the SPS is not the base layer's");
    }
    b.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = b.bits(3)?;
    if max_sub_layers_minus1 > 6 {
        return Err("sps_max_sub_layers_minus1 is out of range");
    }
    b.flag()?; // sps_temporal_id_nesting_flag
    skip_profile_tier_level(&mut b, max_sub_layers_minus1 as usize)?;
    b.ue_max(15, "sps_seq_parameter_set_id is out of range")?;
    let chroma_format_idc = b.ue_max(3, "chroma_format_idc is out of range")?;
    let separate_colour_plane = chroma_format_idc == 3 && b.flag()?;
    let width = u64::from(b.ue()?);
    let height = u64::from(b.ue()?);
    let window = if b.flag()? { [b.ue()?, b.ue()?, b.ue()?, b.ue()?].map(u64::from) } else { [0; 4] };
    // The window's offsets are in chroma samples (SubWidthC, SubHeightC of
    // table 6-1; separate colour planes are coded as monochrome ones).
    let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
    let (sub_width, sub_height) = match chroma_array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    Ok((cropped(width, sub_width, window[0], window[1])?, cropped(height, sub_height, window[2], window[3])?))
}

/// Skips `profile_tier_level(1, max_sub_layers_minus1)` (7.3.3).
fn skip_profile_tier_level(b: &mut Bits, max_sub_layers_minus1: usize) -> Result<(), BitsError> {
    // general_profile_space .. general_inbld_flag/reserved: 88 bits, then
    // general_level_idc.
    b.skip(88 + 8)?;
    let mut present = [(false, false); 6];
    for flags in present.iter_mut().take(max_sub_layers_minus1) {
        *flags = (b.flag()?, b.flag()?); // sub_layer_profile_present_flag, sub_layer_level_present_flag
    }
    if max_sub_layers_minus1 > 0 {
        b.skip(2 * (8 - max_sub_layers_minus1))?; // reserved_zero_2bits up to 8 entries
    }
    for (profile, level) in present.into_iter().take(max_sub_layers_minus1) {
        if profile {
            b.skip(88)?;
        }
        if level {
            b.skip(8)?;
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
        pub layer: u64,
        /// (profile present, level present) of each sub-layer below the top.
        pub sub_layers: Vec<(bool, bool)>,
        pub chroma_format_idc: u64,
        pub separate_colour_plane: bool,
        pub width: u64,
        pub height: u64,
        pub window: [u64; 4],
    }

    impl Sps {
        pub(crate) fn new(width: u64, height: u64) -> Self {
            Self { layer: 0, sub_layers: Vec::new(), chroma_format_idc: 1, separate_colour_plane: false, width, height, window: [0; 4] }
        }
    }

    /// The SPS NAL unit of `s`.
    pub(crate) fn sps(s: &Sps) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.flag(false).bits(6, 33).bits(6, s.layer).bits(3, 1);
        w.bits(4, 0).bits(3, s.sub_layers.len() as u64).flag(true);
        // General profile (Main), compatibility, constraints, level 4.
        w.bits(8, 0x01).bits(32, 0x6000_0000).bits(48, 0x9000_0000_0000).bits(8, 120);
        for &(profile, level) in &s.sub_layers {
            w.flag(profile).flag(level);
        }
        if !s.sub_layers.is_empty() {
            for _ in s.sub_layers.len()..8 {
                w.bits(2, 0);
            }
        }
        for &(profile, level) in &s.sub_layers {
            if profile {
                w.bits(8, 0x01).bits(32, 0x6000_0000).bits(48, 0xffff_ffff_ffff);
            }
            if level {
                w.bits(8, 0xff);
            }
        }
        w.ue(0).ue(s.chroma_format_idc);
        if s.chroma_format_idc == 3 {
            w.flag(s.separate_colour_plane);
        }
        w.ue(s.width).ue(s.height).flag(s.window != [0; 4]);
        if s.window != [0; 4] {
            for offset in s.window {
                w.ue(offset);
            }
        }
        // bit_depth_luma_minus8 and on: never read.
        w.ue(0).ue(0).ue(4);
        w.nal()
    }

    /// An hvcC of the given NAL unit arrays.
    pub(crate) fn hvcc(arrays: &[(u8, Vec<Vec<u8>>)]) -> Vec<u8> {
        let mut out = vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 120, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f];
        out.push(u8::try_from(arrays.len()).unwrap());
        for (nal_type, nals) in arrays {
            out.push(0x80 | nal_type);
            out.extend_from_slice(&u16::try_from(nals.len()).unwrap().to_be_bytes());
            for nal in nals {
                out.extend_from_slice(&u16::try_from(nal.len()).unwrap().to_be_bytes());
                out.extend_from_slice(nal);
            }
        }
        out
    }

    #[test]
    fn an_x265_sps_reads_as_1920x1080() {
        let x265 = [
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x78, 0xa0, 0x03, 0xc0,
            0x80, 0x11, 0x07, 0xcb, 0x96, 0x56, 0x54, 0xa4, 0xc2, 0xf0, 0x16, 0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x03,
            0x02, 0x84,
        ];
        assert_eq!(sps_size(&x265), Ok((1920, 1080)));
    }

    #[test]
    fn the_conformance_window_is_in_chroma_samples() {
        let base = Sps { window: [0, 3, 0, 3], ..Sps::new(648, 368) };
        let cases = [
            // (chroma_format_idc, separate planes) -> size
            (1, false, (642, 362)),
            (2, false, (642, 365)),
            (3, false, (645, 365)),
            (3, true, (645, 365)),
            (0, false, (645, 365)),
        ];
        for (chroma, planes, size) in cases {
            let s = Sps { chroma_format_idc: chroma, separate_colour_plane: planes, ..base.clone() };
            assert_eq!(sps_size(&sps(&s)), Ok(size), "{s:?}");
        }
        assert_eq!(sps_size(&sps(&Sps { window: [2, 0, 1, 0], ..base.clone() })), Ok((644, 366)));
        assert_eq!(sps_size(&sps(&Sps::new(3840, 2160))), Ok((3840, 2160)));
    }

    #[test]
    fn sub_layer_profiles_and_levels_are_skipped() {
        for sub_layers in
            [vec![(false, false)], vec![(true, true)], vec![(true, false), (false, true), (true, true)], vec![(true, true); 6]]
        {
            let s = Sps { sub_layers: sub_layers.clone(), ..Sps::new(1080, 1920) };
            assert_eq!(sps_size(&sps(&s)), Ok((1080, 1920)), "{sub_layers:?}");
        }
    }

    #[test]
    fn broken_or_absurd_parameter_sets_are_errors() {
        let good = sps(&Sps::new(1920, 1080));
        for cut in 0..good.len() - 1 {
            assert!(sps_size(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut pps = good.clone();
        pps[0] = 34 << 1;
        assert_eq!(sps_size(&pps), Err("the NAL unit is not an SPS"));
        assert!(sps_size(&sps(&Sps { layer: 1, ..Sps::new(1920, 1080) })).is_err());
        assert!(sps_size(&sps(&Sps::new(0, 1080))).is_err());
        assert!(sps_size(&sps(&Sps::new(70_000, 1080))).is_err());
        assert!(sps_size(&sps(&Sps { window: [0, 960, 0, 0], ..Sps::new(1920, 1080) })).is_err());
        assert!(sps_size(&sps(&Sps { chroma_format_idc: 4, ..Sps::new(1920, 1080) })).is_err());
        assert!(sps_size(&sps(&Sps { sub_layers: vec![(false, false); 7], ..Sps::new(1920, 1080) })).is_err());
    }

    #[test]
    fn the_first_base_layer_sps_of_the_hvcc_is_taken() {
        let vps = vec![0x40, 0x01, 0x0c, 0x01];
        let base = sps(&Sps::new(1920, 1080));
        let layer = sps(&Sps { layer: 1, ..Sps::new(640, 360) });
        let pps = vec![0x44, 0x01, 0xc0, 0x73];
        let record = hvcc(&[(32, vec![vps.clone()]), (33, vec![layer.clone(), base.clone()]), (34, vec![pps.clone()])]);
        assert_eq!(config_sps(&record), Ok(&base[..]));
        assert!(config_sps(&record[..record.len() - 10]).is_err());
        assert!(config_sps(&hvcc(&[(32, vec![vps]), (34, vec![pps])])).is_err(), "no SPS");
        assert!(config_sps(&hvcc(&[(33, vec![layer])])).is_err(), "no base layer SPS");
        assert!(config_sps(&record[..22]).is_err());
        let mut version0 = record.clone();
        version0[0] = 0;
        assert!(config_sps(&version0).is_err());
    }
}
