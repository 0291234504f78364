//! The file store's parsers: a combined `-current.pem` pair file, a separate certificate and
//! key file (the input cut at its first NUL), and an update's certificate and key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| certrotate::fuzzing::store_files(data));
