//! The server's JSON body decoder (Go zero values for nulls, Go's base64, strict field
//! errors), then create and update validation of the decoded CSR.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| certrotate::fuzzing::json_body(data));
