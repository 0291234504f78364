//! The server's protobuf body decoders (`k8s\0` envelope, CertificateSigningRequest,
//! DeleteOptions), then create and update validation of the decoded CSR.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| certrotate::fuzzing::protobuf_body(data));
