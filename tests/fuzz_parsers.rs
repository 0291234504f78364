//! Property tests for the parsers of untrusted input: PEM bundles and keys from disk, CSRs from
//! the API, API objects and watch events, kubeconfigs. Whatever the bytes, they return an error
//! or a value; they never panic. Inputs are random bytes and mutations of valid documents (a
//! flipped byte, a truncation), which reach deeper than random bytes alone.

use certrotate::csr::api::{CertificateSigningRequest, CsrList, Status, WatchEvent};
use certrotate::kubeconfig::Kubeconfig;
use certrotate::pki::{self, CertInfo, parse_chain_pem, parse_csr_der, parse_csr_pem};
use certrotate::{Certificate, CsrTemplate, KeyAlgorithm, PrivateKey};
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Valid documents to mutate, made once.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(make_seeds)
}

fn make_seeds() -> Vec<Vec<u8>> {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let csr = pki::build_csr_pem(
        &CsrTemplate::new("system:node:n")
            .with_organization("system:nodes")
            .with_dns_name("n")
            .with_ip_address("10.0.0.1".parse().unwrap()),
        &key,
    )
    .unwrap();
    vec![
        fixture("ec-key-then-cert.pem"),
        fixture("two-certs.crt"),
        fixture("store.key"),
        fixture("ec.key"),
        csr.into_bytes(),
        key.pkcs8_der().to_vec(),
        br#"{"type":"MODIFIED","object":{"metadata":{"name":"csr-1","uid":"u","resourceVersion":"7"},"spec":{"request":"UEVN","signerName":"x/y","usages":["digital signature"]},"status":{"conditions":[{"type":"Approved","status":"True"}],"certificate":"UEVN"}}}"#.to_vec(),
        br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"m","reason":"Expired","code":410,"details":{"causes":[{"reason":"r","field":"f"}],"retryAfterSeconds":3}}"#.to_vec(),
        b"apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: AAAA\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n    token: t\n    client-certificate: a.crt\n".to_vec(),
    ]
}

fn mutate(seed: &[u8], pos: usize, byte: u8, cut: usize) -> Vec<u8> {
    let mut v = seed.to_vec();
    if !v.is_empty() {
        let i = pos % v.len();
        v[i] ^= byte | 1;
        v.truncate(v.len() - cut % (v.len() / 4 + 1));
    }
    v
}

fn parse_everything(bytes: &[u8]) {
    let _ = Certificate::from_pair_pem(bytes);
    let _ = Certificate::from_pem(bytes, bytes);
    let _ = PrivateKey::from_pem(bytes);
    let _ = PrivateKey::from_der(bytes);
    let _ = parse_chain_pem(bytes);
    let _ = CertInfo::from_der(bytes);
    let _ = parse_csr_pem(bytes);
    let _ = parse_csr_der(bytes);
    let _ = serde_json::from_slice::<CertificateSigningRequest>(bytes);
    let _ = serde_json::from_slice::<CsrList>(bytes);
    let _ = serde_json::from_slice::<Status>(bytes);
    if let Ok(ev) = serde_json::from_slice::<WatchEvent>(bytes) {
        let _ = serde_json::from_value::<CertificateSigningRequest>(ev.object.clone());
        let _ = serde_json::from_value::<Status>(ev.object);
    }
    let _ = Kubeconfig::from_slice(bytes, std::env::temp_dir());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        parse_everything(&bytes);
    }

    #[test]
    fn mutated_documents_never_panic(which in 0usize..9, pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let seeds = seeds();
        let seed = &seeds[which % seeds.len()];
        parse_everything(&mutate(seed, pos, byte, cut));
    }

    #[test]
    fn random_text_in_pem_armour_never_panics(label in "(CERTIFICATE|PRIVATE KEY|RSA PRIVATE KEY|EC PRIVATE KEY|CERTIFICATE REQUEST)", body in "[A-Za-z0-9+/=\n]{0,600}") {
        let pem = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
        parse_everything(pem.as_bytes());
    }
}

#[test]
fn seeds_parse_before_mutation() {
    // The mutations start from documents that parse, so they exercise the deep paths.
    let s = seeds();
    assert!(Certificate::from_pair_pem(&s[0]).is_ok());
    assert!(parse_chain_pem(&s[1]).is_ok());
    assert!(PrivateKey::from_pem(&s[2]).is_ok());
    assert!(PrivateKey::from_pem(&s[3]).is_ok());
    assert!(parse_csr_pem(&s[4]).is_ok());
    assert!(PrivateKey::from_der(&s[5]).is_ok());
    assert!(serde_json::from_slice::<WatchEvent>(&s[6]).is_ok());
    assert!(serde_json::from_slice::<Status>(&s[7]).is_ok());
    assert!(Kubeconfig::from_slice(&s[8], std::env::temp_dir()).is_ok());
}

// Inputs the coverage-guided fuzz targets in fuzz/ found, each as what a client sees.

#[cfg(feature = "server")]
mod server_common;

/// A `status.certificate` whose PEM END line overlaps its BEGIN line (`-----BEGIN
/// CERTIFICATE-----END CERTIFICATE-----`) made the server's `validateCertificate` slice past
/// its own bounds and panic in the connection's thread: the client got no answer at all.
/// Go's `pem.Decode` finds no block there; the server answers as kube-apiserver does, 422
/// with the status.certificate field error. Found by the `x509` target.
#[cfg(feature = "server")]
#[test]
fn status_certificate_with_overlapping_pem_markers_is_a_422_not_a_dropped_connection() {
    use base64::Engine;
    use certrotate::server::{ApprovalPolicy, CsrApiServer};
    use server_common::*;
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .start()
        .unwrap();
    let c = Client::admin(&server);
    // Pending (manual approval, so nothing else changes it between the get and the put).
    c.create(&client_body(Some("overlap"), "x").0);
    let fuzzed: &[u8] = include_bytes!("fuzz_inputs/x509-overlapping-pem-markers");
    for (pem, message) in [
        (
            &b"-----BEGIN CERTIFICATE-----END CERTIFICATE-----\n"[..],
            Some("must contain at least one CERTIFICATE PEM block"),
        ),
        (b"-----BEGIN -----END -----\n", None),
        (b"-----BEGIN X-----END X-----", None),
        (fuzzed, None),
    ] {
        let mut obj = c.get(&format!("{CSRS}/overlap")).body;
        obj["status"]["certificate"] =
            serde_json::json!(base64::engine::general_purpose::STANDARD.encode(pem));
        let r = c.put(&format!("{CSRS}/overlap/status"), &obj);
        assert_eq!(
            r.code,
            422,
            "{:?}: {}",
            String::from_utf8_lossy(pem),
            r.text
        );
        assert_eq!(r.body["reason"], "Invalid", "{}", r.text);
        assert!(
            r.text.contains("status.certificate"),
            "names the field: {}",
            r.text
        );
        if let Some(m) = message {
            assert!(r.text.contains(m), "{}", r.text);
        }
    }
}
