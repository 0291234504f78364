//! The kubelet's own TLS bootstrap and the library's, side by side against one embedded
//! server: the Go peer `tests/peers/cmd/kubelet-bootstrap` runs k8s.io/kubernetes'
//! `pkg/kubelet/certificate/bootstrap.LoadClientCert` (the kubelet's code, not a model of it),
//! then `kubelet::bootstrap::load_client_cert` runs with the same bootstrap kubeconfig and node
//! name. What each leaves behind is compared: the kubeconfig byte for byte, the certificate
//! directory's files, and the CSR each sent.
#[path = "support/go_peer.rs"]
mod go_peer;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use certrotate::csr::api::CertificateSigningRequest;
use certrotate::kubelet::bootstrap::{self, bootstrap_usages, csr_name};
use certrotate::server::{CsrApiServer, Identity};
use certrotate::{Certificate, CsrTemplate, KeyAlgorithm};

const TOKEN_ID: &str = "abcdef";
const TOKEN_SECRET: &str = "0123456789abcdef";
const NODE: &str = "node-a";

/// The names in a directory, sorted, each with what it is: `link -> target name`, or `file`.
fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.file_type().is_symlink() {
                let target = fs::read_link(e.path()).unwrap();
                format!(
                    "{name} -> {}",
                    target.file_name().unwrap().to_string_lossy()
                )
            } else {
                format!("{name} ({:o})", meta.permissions().mode() & 0o777)
            }
        })
        .collect();
    out.sort();
    out
}

/// A timestamped pair name (`kubelet-client-2026-12-01-09-30-00.pem`) with its time taken out.
fn untimed(line: &str) -> String {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).count();
    line.split(' ')
        .map(|w| match w.strip_prefix("kubelet-client-") {
            Some(rest) if digits(rest) == 14 => "kubelet-client-<time>.pem".to_owned(),
            _ => w.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The CSR a bootstrap sent, with what differs per key (request, name) and per object (uid,
/// times, status) left out.
fn spec_of(csr: &CertificateSigningRequest) -> serde_json::Value {
    let mut spec = serde_json::to_value(&csr.spec).unwrap();
    let obj = spec.as_object_mut().unwrap();
    obj.remove("request");
    obj.remove("uid");
    spec
}

#[test]
fn the_bootstrap_leaves_what_the_kubelets_leaves() {
    let Some(peer) = go_peer::build("kubelet-bootstrap") else {
        return;
    };
    let server = CsrApiServer::builder()
        .bootstrap_token(TOKEN_ID, TOKEN_SECRET)
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("bootstrap-kubeconfig");
    fs::write(
        &boot,
        server
            .kubeconfig(&Identity::bootstrap_token(TOKEN_ID, TOKEN_SECRET))
            .unwrap(),
    )
    .unwrap();
    let (go, ours) = (dir.path().join("kubelet"), dir.path().join("certrotate"));
    for d in [&go, &ours] {
        fs::create_dir(d).unwrap();
    }

    let out = Command::new(&peer)
        .arg("--kubeconfig")
        .arg(go.join("kubeconfig"))
        .arg("--bootstrap-kubeconfig")
        .arg(&boot)
        .arg("--cert-dir")
        .arg(go.join("pki"))
        .arg("--node-name")
        .arg(NODE)
        .output()
        .expect("the kubelet bootstrap runs");
    assert!(
        out.status.success(),
        "kubelet bootstrap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let go_csrs = server.csrs();
    assert_eq!(go_csrs.len(), 1, "the kubelet sent one CSR");

    let cert = bootstrap::load_client_cert(ours.join("kubeconfig"), &boot, ours.join("pki"), NODE)
        .unwrap()
        .expect("no kubeconfig yet: a bootstrap");
    let our_csrs: Vec<_> = server
        .csrs()
        .into_iter()
        .filter(|c| c.metadata.name != go_csrs[0].metadata.name)
        .collect();
    assert_eq!(our_csrs.len(), 1, "certrotate sent one CSR");

    // The kubeconfig: the same bytes but for the directory, and the same mode.
    let go_yaml = fs::read_to_string(go.join("kubeconfig")).unwrap();
    let our_yaml = fs::read_to_string(ours.join("kubeconfig")).unwrap();
    assert_eq!(
        our_yaml,
        go_yaml.replace(go.to_str().unwrap(), ours.to_str().unwrap()),
        "the kubeconfigs differ"
    );
    for d in [&go, &ours] {
        let mode = fs::metadata(d.join("kubeconfig"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", d.display());
    }

    // The certificate directory: the same names, links and modes.
    let files =
        |d: &Path| -> Vec<String> { listing(&d.join("pki")).iter().map(|l| untimed(l)).collect() };
    assert_eq!(files(&ours), files(&go));

    // The CSRs: the same spec but for the request, and each named after its own key as the
    // kubelet names it.
    assert_eq!(spec_of(&our_csrs[0]), spec_of(&go_csrs[0]));
    let template =
        CsrTemplate::new(format!("system:node:{NODE}")).with_organization("system:nodes");
    let go_pair = Certificate::from_pair_pem(
        &fs::read(go.join("pki").join("kubelet-client-current.pem")).unwrap(),
    )
    .unwrap();
    let usages = bootstrap_usages(KeyAlgorithm::EcdsaP256);
    assert_eq!(
        go_csrs[0].metadata.name.as_deref(),
        Some(csr_name(&go_pair.private_key().public_key_der(), &template, &usages).as_str()),
        "the kubelet's CSR name, as the library computes it for the kubelet's key"
    );
    assert_eq!(
        our_csrs[0].metadata.name.as_deref(),
        Some(csr_name(&cert.private_key().public_key_der(), &template, &usages).as_str())
    );
    server.shutdown();
}
