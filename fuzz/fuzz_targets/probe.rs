//! Fuzz target of the upload probe: any bytes go through the MP4 parser the
//! upload path uses (`anb_mp4::fuzz_one` says what must hold). Run with
//! `make fuzz`; inputs that fail go into `fuzz/regressions/probe` once fixed.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| anb_mp4::fuzz_one(data));
