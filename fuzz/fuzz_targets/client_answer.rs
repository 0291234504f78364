//! The client's decoding of the CSR API's answers: a created or fetched CSR (and the adoption
//! check of an existing one), a list, an error `Status` body. The first byte picks the API
//! version and the kind of answer (see `certrotate::fuzzing::client_answer`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| certrotate::fuzzing::client_answer(data));
