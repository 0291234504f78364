//! The client's reading of a watch stream: newline-delimited events, each decoded, type-checked
//! and judged as the wait for a certificate does. The first byte picks the API version.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| certrotate::fuzzing::client_watch(data));
