//! Bit-level reading of the parameter sets of H.264 and HEVC streams: the
//! raw byte sequence payload of a NAL unit (its bytes without the
//! emulation-prevention bytes) and the fixed-width and exp-Golomb codes in it.
//! Every read is bounded by the payload: reading past its end is an error,
//! never a panic.

/// Why a parameter set does not read; shown in the `NotMp4` reason.
pub(crate) type BitsError = &'static str;

/// The RBSP of a NAL unit: every `0x03` that follows two zero bytes (an
/// emulation-prevention byte) removed.
pub(crate) fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0u8;
    for &byte in nal {
        if zeros == 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { (zeros + 1).min(2) } else { 0 };
        out.push(byte);
    }
    out
}

/// Reads bits, most significant first, from an RBSP.
#[derive(Debug)]
pub(crate) struct Bits<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> Bits<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn flag(&mut self) -> Result<bool, BitsError> {
        let byte = self.data.get(self.pos / 8).ok_or("it ends too early")?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// `n` bits (at most 32) as an unsigned number.
    pub(crate) fn bits(&mut self, n: u32) -> Result<u32, BitsError> {
        debug_assert!(n <= 32);
        let mut value = 0u64;
        for _ in 0..n.min(32) {
            value = (value << 1) | u64::from(self.flag()?);
        }
        u32::try_from(value).map_err(|_| "a field is too wide")
    }

    /// Skips `n` bits.
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), BitsError> {
        let end = self.pos.checked_add(n).ok_or("it ends too early")?;
        if end > self.data.len().saturating_mul(8) {
            return Err("it ends too early");
        }
        self.pos = end;
        Ok(())
    }

    /// An unsigned exp-Golomb code, `ue(v)`. At most 31 leading zeros (the
    /// largest value is 2^32 - 2), as every field read with it fits in 32 bits.
    pub(crate) fn ue(&mut self) -> Result<u32, BitsError> {
        let mut zeros = 0u32;
        while !self.flag()? {
            zeros += 1;
            if zeros > 31 {
                return Err("an exp-Golomb code is longer than 32 bits");
            }
        }
        let suffix = u64::from(self.bits(zeros)?);
        u32::try_from((1u64 << zeros) - 1 + suffix).map_err(|_| "an exp-Golomb code is longer than 32 bits")
    }

    /// A signed exp-Golomb code, `se(v)`.
    pub(crate) fn se(&mut self) -> Result<i64, BitsError> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }

    /// A `ue(v)` that must be at most `max` (the range the standard gives it).
    pub(crate) fn ue_max(&mut self, max: u32, what: &'static str) -> Result<u32, BitsError> {
        let value = self.ue()?;
        if value > max { Err(what) } else { Ok(value) }
    }
}

/// Largest frame side taken from a parameter set: what the 16-bit width and
/// height of a sample entry can state.
pub(crate) const MAX_SIDE: u64 = 65_535;

/// A coded side less its two crop offsets (in `unit`s of samples), which
/// must leave between 1 and [`MAX_SIDE`] samples.
pub(crate) fn cropped(coded: u64, unit: u64, first: u64, second: u64) -> Result<u32, BitsError> {
    let crop = first.checked_add(second).and_then(|c| c.checked_mul(unit)).ok_or("the cropping is out of range")?;
    match coded.checked_sub(crop) {
        Some(side @ 1..=MAX_SIDE) => u32::try_from(side).map_err(|_| "the frame size is out of range"),
        Some(0) | None => Err("the cropping leaves no picture"),
        Some(_) => Err("the frame size is out of range"),
    }
}

/// Writes parameter sets bit by bit, for the tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    bits: usize,
}

#[cfg(test)]
impl BitWriter {
    pub(crate) fn bits(&mut self, n: u32, value: u64) -> &mut Self {
        for i in (0..n).rev() {
            if self.bits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let bit = u8::from((value >> i) & 1 == 1);
            *self.bytes.last_mut().expect("a byte") |= bit << (7 - self.bits % 8);
            self.bits += 1;
        }
        self
    }

    pub(crate) fn flag(&mut self, value: bool) -> &mut Self {
        self.bits(1, u64::from(value))
    }

    pub(crate) fn ue(&mut self, value: u64) -> &mut Self {
        let code = value + 1;
        let len = 64 - code.leading_zeros();
        self.bits(len - 1, 0).bits(len, code)
    }

    pub(crate) fn se(&mut self, value: i64) -> &mut Self {
        let code = if value > 0 { 2 * value.unsigned_abs() - 1 } else { 2 * value.unsigned_abs() };
        self.ue(code)
    }

    /// The NAL unit: the bits with their stop bit, and emulation-prevention
    /// bytes inserted where the payload would look like a start code.
    pub(crate) fn nal(&mut self) -> Vec<u8> {
        self.flag(true);
        while !self.bits.is_multiple_of(8) {
            self.flag(false);
        }
        let mut out = Vec::new();
        let mut zeros = 0;
        for &byte in &self.bytes {
            if zeros == 2 && byte <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if byte == 0 { zeros + 1 } else { 0 };
            out.push(byte);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]), [0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(rbsp(&[0, 3, 0, 0, 0, 3]), [0, 3, 0, 0, 0]);
        assert_eq!(rbsp(&[0, 0, 3, 3]), [0, 0, 3]);
    }

    #[test]
    fn exp_golomb_codes_round_trip_and_stop_at_32_bits() {
        let values = [0u64, 1, 2, 3, 7, 254, 255, 65_535, (1 << 32) - 2];
        let mut writer = BitWriter::default();
        for &v in &values {
            writer.ue(v);
        }
        for v in [0i64, 1, -1, 2, -2, 1000, -1000] {
            writer.se(v);
        }
        let nal = writer.nal();
        let data = rbsp(&nal);
        let mut bits = Bits::new(&data);
        for &v in &values {
            assert_eq!(u64::from(bits.ue().unwrap()), v);
        }
        for v in [0i64, 1, -1, 2, -2, 1000, -1000] {
            assert_eq!(bits.se().unwrap(), v);
        }
        // 32 leading zeros and more: refused, not wrapped.
        assert!(Bits::new(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff]).ue().is_err());
        assert!(Bits::new(&[0, 0, 0]).ue().is_err());
        assert!(Bits::new(&[0x00, 0x01]).ue().is_err(), "15 zeros, then the end");
        assert_eq!(Bits::new(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe]).ue(), Ok(u32::MAX - 1));
        let mut bits = Bits::new(&[0xff]);
        assert!(bits.skip(8).is_ok() && bits.flag().is_err() && bits.skip(1).is_err());
    }
}
