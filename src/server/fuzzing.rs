//! Entry points of the server's parsers for the fuzz targets (feature `fuzzing`): whole HTTP
//! requests through the same read-and-serve loop as a TLS connection, and request bodies through
//! the create handler's decoders and validation.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::Deserialize;

use super::http::Conn;
use super::validation::{self, UpdatePath};
use super::{CsrApiServer, GROUP_MASTERS, UserInfo, decode, listener, protobuf, signer};
use crate::csr::api::CertificateSigningRequest;

/// The bearer tokens the request target's server accepts: a `system:masters` user, a node
/// and a bootstrap token (`abcdef.0123456789abcdef`).
pub const TOKENS: [&str; 3] = ["fuzz-admin", "fuzz-node", "abcdef.0123456789abcdef"];

/// Objects kept at most between inputs (older ones are deleted), so that memory stays flat
/// over millions of inputs.
const MAX_OBJECTS: usize = 32;

fn server() -> &'static CsrApiServer {
    static SERVER: OnceLock<CsrApiServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let started = CsrApiServer::builder()
            .bind(([127, 0, 0, 1], 0).into())
            .token(TOKENS[0], UserInfo::new("fuzz:admin", &[GROUP_MASTERS]))
            .token(
                TOKENS[1],
                UserInfo::new("system:node:fuzz", &["system:nodes"]),
            )
            .bootstrap_token("abcdef", "0123456789abcdef")
            .v1beta1(true)
            .start();
        match started {
            Ok(s) => s,
            Err(e) => panic!("the fuzz target's server does not start: {e}"),
        }
    })
}

/// Serves `input` as the bytes a client sent on one connection (then closing its side); returns
/// what the server wrote. A watch ends after its response head.
pub fn requests(input: &[u8]) -> Vec<u8> {
    let server = server();
    let mut conn = Conn::in_memory(input.to_vec());
    listener::serve_requests(&server.shared, &mut conn, None);
    let names: Vec<String> = {
        let st = server.shared.state.lock();
        if st.objects.len() <= MAX_OBJECTS {
            Vec::new()
        } else {
            st.objects.keys().cloned().collect()
        }
    };
    for name in names {
        let _ = server.delete(&name);
    }
    conn.output().to_vec()
}

/// Decodes `body` as a JSON create or update body (the create handler's decoder, then
/// create and update validation against itself).
pub fn json_body(body: &[u8]) {
    let Ok(d) = decode::decode_csr_json(body) else {
        return;
    };
    let _ = decode::warning_headers(&d.strict);
    if let Ok(obj) = CertificateSigningRequest::deserialize(&d.value) {
        checks(&obj, d.request_present);
    }
}

/// Decodes `body` as a protobuf create body and as protobuf `DeleteOptions`.
pub fn protobuf_body(body: &[u8]) {
    let _ = protobuf::envelope(body);
    let _ = protobuf::decode_delete_options(body);
    if let Ok(obj) = protobuf::decode_csr(body) {
        let given = !obj.spec.request.is_empty();
        checks(&obj, given);
    }
}

/// Create validation (v1 and v1beta1), the kubelet signers' CSR checks on what it parsed, and
/// update validation of the object against itself on every update path.
fn checks(obj: &CertificateSigningRequest, request_given: bool) {
    for legacy in [false, true] {
        let (_, parsed) = validation::validate_create(obj, legacy, request_given);
        if let Some(p) = parsed {
            let usages: HashSet<&str> = obj.spec.usages.iter().map(String::as_str).collect();
            let _ = signer::validate_kubelet_client(&p, &usages);
            let _ = signer::validate_kubelet_serving(&p, &usages);
            let _ = signer::infer_v1beta1_signer(&p, &obj.spec.usages);
        }
    }
    for path in [UpdatePath::Main, UpdatePath::Approval, UpdatePath::Status] {
        let _ = validation::validate_update(obj, obj, path);
    }
    if let Some(cert) = obj.status.as_ref().and_then(|s| s.certificate.as_ref()) {
        let _ = validation::validate_certificate(cert);
    }
}

/// `validateCertificate` on `pem`.
pub(crate) fn certificate(pem: &[u8]) {
    let _ = validation::validate_certificate(pem);
}
