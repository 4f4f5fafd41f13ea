#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatctl::fuzz::realtime_frame(data));
