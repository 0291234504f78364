//! Entry points into the parsers of untrusted input that are not public API, for the
//! coverage-guided fuzz targets in `fuzz/` (feature `fuzzing`). Not part of the API: hidden from
//! the docs, and may change with any release. Each runs the library's own code on `bytes` and
//! returns nothing but what a target needs; whatever the bytes, none may panic, hang or use
//! unbounded memory.

use crate::csr::{ApiVersion, CsrRef, CsrRequest, KeyUsage};
use crate::pki::{self, PrivateKey};
use crate::template::CsrTemplate;

pub use crate::server::fuzzing::{TOKENS, json_body, protobuf_body, requests};

/// The store's file parsers: `bytes` as a combined pair file, cut at its first NUL into a
/// certificate file and a key file, and as an update's certificate and key.
pub fn store_files(bytes: &[u8]) {
    crate::store::fuzz_parse(bytes);
}

fn version(selector: u8) -> ApiVersion {
    if selector & 1 == 0 {
        ApiVersion::V1
    } else {
        ApiVersion::V1beta1
    }
}

/// The request whose CSR objects the client-side targets read (name `csr-fuzz`, uid
/// `fuzz-uid`), made once with a fixed key.
fn request() -> &'static (CsrRequest, CsrRef) {
    static REQ: std::sync::OnceLock<(CsrRequest, CsrRef)> = std::sync::OnceLock::new();
    REQ.get_or_init(|| {
        let key = PrivateKey::from_pem(include_bytes!("../tests/fixtures/ec.key"))
            .unwrap_or_else(|e| panic!("the fixture key does not parse: {e}"));
        let template = CsrTemplate::new("system:node:fuzz").with_organization("system:nodes");
        let csr_pem = pki::build_csr_pem(&template, &key)
            .unwrap_or_else(|e| panic!("the fuzz CSR cannot be built: {e}"));
        let req = CsrRequest {
            name: Some("csr-fuzz".into()),
            csr_pem,
            signer_name: "kubernetes.io/kube-apiserver-client-kubelet".into(),
            usages: vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth],
            requested_lifetime: None,
            public_key_der: key.public_key_der(),
        };
        let csr = CsrRef {
            name: "csr-fuzz".into(),
            uid: "fuzz-uid".into(),
            api_version: ApiVersion::V1,
            resource_version: String::new(),
        };
        (req, csr)
    })
}

/// The client's decoding of the API's answers other than watch streams. The first byte picks
/// the API version (bit 0) and the kind of answer (bits 1–2: 0 a create or get answer, then the
/// adoption check against a fixed request; 1 a list; 2 and 3 an error body, with HTTP status
/// 400 + the second byte); the rest is the body.
pub fn client_answer(bytes: &[u8]) {
    let Some((&selector, body)) = bytes.split_first() else {
        return;
    };
    let v = version(selector);
    let (req, csr) = request();
    let csr = CsrRef {
        api_version: v,
        ..csr.clone()
    };
    use crate::csr::fuzzing as f;
    match (selector >> 1) & 3 {
        0 => f::answer(body, v, req),
        1 => f::list(body, v, &csr),
        _ => {
            let (code, body) = body.split_first().unwrap_or((&0, body));
            f::error(400 + u16::from(*code), body);
        }
    }
}

/// The client's reading of a watch stream (newline-delimited events, each at most 64 KiB, for
/// the request `csr-fuzz` with uid `fuzz-uid`). The first byte picks the API version (bit 0);
/// the rest is the stream.
pub fn client_watch(bytes: &[u8]) {
    let Some((&selector, body)) = bytes.split_first() else {
        return;
    };
    let v = version(selector);
    let csr = CsrRef {
        api_version: v,
        ..request().1.clone()
    };
    crate::csr::fuzzing::watch(body, v, &csr, 64 * 1024);
}

/// The server's check of a `status.certificate` written by a signer (`validateCertificate`).
pub fn server_certificate(pem: &[u8]) {
    crate::server::fuzzing::certificate(pem);
}
