#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatctl::fuzz::durations_and_dates(data));
