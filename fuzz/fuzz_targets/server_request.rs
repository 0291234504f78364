//! The embedded server on the bytes of one connection: HTTP/1.1 requests (headers, chunked and
//! sized bodies, keep-alive) read and served by the same loop as a TLS connection, through
//! routing, content negotiation, selectors, JSON, protobuf and patch bodies, validation and the
//! store. Bearer tokens: see `certrotate::fuzzing::TOKENS`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = certrotate::fuzzing::requests(data);
});
