#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pimsync_fuzz::verify(3, data));
