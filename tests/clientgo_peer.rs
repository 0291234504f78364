//! client-go's own certificate manager against the embedded server.
//!
//! `tests/peers/cmd/clientgo-manager` drives `k8s.io/client-go/util/certificate`'s real
//! `Manager` (the kubelet's) with a `FileStore`. Each test starts the embedded server issuing
//! short certificates, runs that program against it through at least [`ROTATIONS`] rotations and
//! checks:
//! - the program saw a new certificate for each rotation (distinct serials) and exited 0;
//! - the CSRs the server stored carry exactly the usages, signer and `expirationSeconds` that
//!   client-go sent (the program's flags), whatever the wire encoding;
//! - every certificate client-go stored in its `FileStore` verifies against the server's CA as
//!   a TLS peer would check it (webpki: client auth for the client certificate, server auth and
//!   each DNS and IP SAN for the serving one);
//! - client-go logged no error or warning (`E`/`W` klog lines) and, with watch-list on, did
//!   not fall back to a plain list (the server answered the watch-list stream as the
//!   apiserver does).
//!
//! Each manager runs three ways: JSON, protobuf (`application/vnd.kubernetes.protobuf`, as the
//! kubelet sends by default) and JSON with client-go's watch-list streaming off
//! (`KUBE_FEATURE_WatchListClient=false`).
//!
//! The Go program is built with `go build` into `target/peers/` (Go's build cache makes this
//! a few seconds after the first time). Without a Go toolchain the tests fail when `CI` is set
//! and otherwise print `SKIPPED: go not found` and pass.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use certrotate::pki::crypto_provider;
use certrotate::server::{
    ApprovalPolicy, CsrApiServer, Identity, SIGNER_KUBE_APISERVER_CLIENT_KUBELET,
    SIGNER_KUBELET_SERVING,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;

#[path = "support/go_peer.rs"]
mod go_peer;

/// Lifetime of the issued certificates. client-go rotates at 70–90 % of it, so three rotations
/// take about 3 × 0.8 × 6 s plus a second per turn of its loop.
const LIFETIME: Duration = Duration::from_secs(6);
/// Rotations to see after the first certificate.
const ROTATIONS: usize = 3;
/// The program's own deadline; the test waits a little longer before killing it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// Requested lifetime (`spec.expirationSeconds`): above the apiserver's 600 s floor, capped by
/// the server at [`LIFETIME`], as a signer's own maximum caps it.
const REQUESTED_LIFETIME_SECS: i32 = 3600;
const NODE: &str = "system:node:peer-node";
const NODES: &str = "system:nodes";

/// Which manager the program runs.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// The kubelet's client certificate.
    Client,
    /// The kubelet's serving certificate, with DNS and IP SANs.
    Serving,
}

/// How client-go talks to the server.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Json,
    Protobuf,
    /// JSON with `KUBE_FEATURE_WatchListClient=false`.
    WatchListOff,
}

const DNS_NAMES: [&str; 2] = ["peer-node", "peer-node.example.test"];
const IPS: [&str; 2] = ["127.0.0.1", "::1"];

impl Kind {
    fn signer(self) -> &'static str {
        match self {
            Kind::Client => SIGNER_KUBE_APISERVER_CLIENT_KUBELET,
            Kind::Serving => SIGNER_KUBELET_SERVING,
        }
    }

    /// The kubelet's usages for an ECDSA key (client-go's default key type): no key
    /// encipherment.
    fn usages(self) -> [&'static str; 2] {
        match self {
            Kind::Client => ["digital signature", "client auth"],
            Kind::Serving => ["digital signature", "server auth"],
        }
    }
}

/// The program, built once per test process; `None` when Go is missing outside CI.
fn peer_binary() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| go_peer::build("clientgo-manager"))
        .clone()
}

fn start_server() -> CsrApiServer {
    // Approve exactly what the test's node asks its two signers for, as the kubelet's
    // approvers would; anything else would wait and show up as a timeout.
    let policy = ApprovalPolicy::predicate(|csr| {
        csr.spec.username.as_deref() == Some(NODE)
            && matches!(
                csr.spec.signer_name.as_deref(),
                Some(SIGNER_KUBE_APISERVER_CLIENT_KUBELET | SIGNER_KUBELET_SERVING)
            )
    });
    CsrApiServer::builder()
        .approval_policy(policy)
        .max_lifetime(LIFETIME)
        .min_lifetime(Duration::from_secs(1))
        .backdate(Duration::ZERO)
        .start()
        .expect("starting the embedded server")
}

/// What one run of the program gave.
struct Run {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
    events: Vec<Value>,
}

impl Run {
    fn certificates(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["event"] == "certificate")
            .collect()
    }

    fn explain(&self) -> String {
        format!(
            "exit: {}\n--- stdout ---\n{}\n--- stderr (client-go's klog) ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn run_peer(
    bin: &Path,
    dir: &Path,
    kubeconfig: &Path,
    kind: Kind,
    mode: Mode,
    extra: &[&str],
) -> Run {
    let mut cmd = Command::new(bin);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cert-dir")
        .arg(dir.join("pki"))
        .args(["--pair-name", "peer"])
        .args(["--signer-name", kind.signer()])
        .args(["--cn", NODE, "-o", NODES])
        .args(["--usages", &kind.usages().join(",")])
        .arg(format!("--requested-lifetime={REQUESTED_LIFETIME_SECS}s"))
        .arg(format!("--rotations={ROTATIONS}"))
        .arg(format!("--timeout={}s", CHILD_TIMEOUT.as_secs()))
        // V(4) shows the reflector's "Falling back to regular list" when watch-list fails.
        .arg("-v=4")
        .args(extra)
        .env_remove("KUBE_FEATURE_WatchListClient")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Kind::Serving = kind {
        for d in DNS_NAMES {
            cmd.args(["--dns", d]);
        }
        for ip in IPS {
            cmd.args(["--ip", ip]);
        }
    }
    match mode {
        Mode::Json => {
            cmd.arg("--content-type=json");
        }
        Mode::Protobuf => {
            cmd.arg("--content-type=protobuf");
        }
        Mode::WatchListOff => {
            cmd.arg("--content-type=json")
                .env("KUBE_FEATURE_WatchListClient", "false");
        }
    }
    let mut child = cmd.spawn().expect("starting clientgo-manager");
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CHILD_TIMEOUT + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for clientgo-manager") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("reaping clientgo-manager");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_t.join().expect("stdout reader");
    let stderr = err_t.join().expect("stderr reader");
    let events = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Run {
        success: status.success(),
        status: status.to_string(),
        stdout,
        stderr,
        events,
    }
}

/// klog's error and warning lines: `E` or `W`, then `MMDD` and a space (klog's header). client-go
/// logs the server's `Warning` headers as warnings.
fn klog_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            let b = l.as_bytes();
            b.len() > 5
                && matches!(b[0], b'E' | b'W')
                && b[1..5].iter().all(u8::is_ascii_digit)
                && b[5] == b' '
        })
        .collect()
}

/// The certificates in the `FileStore`'s dated files (`peer-<date>.pem`; `peer-current.pem`
/// links to the newest), oldest first.
fn stored_pairs(dir: &Path) -> Vec<(PathBuf, CertificateDer<'static>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("reading the FileStore directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("peer-") && name.ends_with(".pem") && name != "peer-current.pem"
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let pem = std::fs::read(&p).expect("reading a stored pair");
            let cert = CertificateDer::pem_slice_iter(&pem)
                .next()
                .expect("a CERTIFICATE block in the stored pair")
                .expect("a well-formed CERTIFICATE block");
            (p, cert)
        })
        .collect()
}

/// Serial (decimal, as Go prints `big.Int`) and NotBefore of a DER certificate.
fn serial_and_not_before(der: &[u8]) -> (String, UnixTime) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parsing a stored certificate");
    let nb = cert.validity().not_before.timestamp();
    let nb = u64::try_from(nb).expect("NotBefore after 1970");
    (
        cert.tbs_certificate.serial.to_string(),
        UnixTime::since_unix_epoch(Duration::from_secs(nb + 1)),
    )
}

/// Checks a stored certificate as a TLS peer of its holder would, at a time inside its validity.
fn verify_as_peer(server: &CsrApiServer, kind: Kind, der: &CertificateDer<'static>) {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(server.ca_pem().as_bytes()) {
        roots.add(ca.expect("server CA PEM")).expect("server CA");
    }
    let roots = Arc::new(roots);
    let (_, at) = serial_and_not_before(der);
    match kind {
        Kind::Client => {
            let v = WebPkiClientVerifier::builder_with_provider(roots, crypto_provider())
                .build()
                .expect("client verifier");
            v.verify_client_cert(der, &[], at)
                .expect("client-go's stored client certificate verifies against the CA");
        }
        Kind::Serving => {
            let v = WebPkiServerVerifier::builder_with_provider(roots, crypto_provider())
                .build()
                .expect("server verifier");
            for name in DNS_NAMES.iter().chain(IPS.iter()) {
                let sn = ServerName::try_from(*name).expect("server name");
                v.verify_server_cert(der, &[], &sn, &[], at)
                    .unwrap_or_else(|e| {
                        panic!("client-go's stored serving certificate fails for {name}: {e}")
                    });
            }
        }
    }
}

fn scenario(kind: Kind, mode: Mode) {
    let Some(bin) = peer_binary() else {
        return;
    };
    let server = start_server();
    let dir = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    let identity = Identity::ClientCert {
        user: NODE.to_owned(),
        groups: vec![NODES.to_owned()],
    };
    std::fs::write(
        &kubeconfig,
        server.kubeconfig(&identity).expect("kubeconfig"),
    )
    .expect("writing the kubeconfig");

    let run = run_peer(&bin, dir.path(), &kubeconfig, kind, mode, &[]);
    eprintln!("{kind:?}/{mode:?}:\n{}", run.explain());

    // client-go complained about nothing the server answered.
    let errors = klog_errors(&run.stderr);
    assert!(
        errors.is_empty(),
        "client-go logged errors or warnings:\n{}\n\n{}",
        errors.join("\n"),
        run.explain()
    );
    // client-go took the feature gate as meant (it logs its state at start), and with
    // watch-list on its reflector neither disabled it for this client nor fell back to a list.
    let gate = match mode {
        Mode::WatchListOff => {
            r#""Feature gate updated state" feature="WatchListClient" enabled=false"#
        }
        _ => r#""Feature gate default state" feature="WatchListClient" enabled=true"#,
    };
    assert!(run.stderr.contains(gate), "no {gate} in\n{}", run.explain());
    if !matches!(mode, Mode::WatchListOff) {
        for fallback in [
            "Falling back to regular list",
            "doesn't support WatchList semantics",
        ] {
            assert!(
                !run.stderr.contains(fallback),
                "client-go's watch-list request was not served ({fallback}):\n{}",
                run.explain()
            );
        }
    }
    assert!(run.success, "clientgo-manager failed\n{}", run.explain());

    // One new certificate per rotation.
    let certs = run.certificates();
    assert_eq!(certs.len(), ROTATIONS + 1, "{}", run.explain());
    let mut serials: Vec<&str> = certs.iter().filter_map(|c| c["serial"].as_str()).collect();
    let observed_last = serials.last().copied().unwrap_or_default().to_owned();
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(serials.len(), ROTATIONS + 1, "{}", run.explain());

    // The server stored what client-go sent.
    let csrs = server.csrs();
    assert!(csrs.len() > ROTATIONS, "{} CSRs", csrs.len());
    for csr in &csrs {
        let name = csr.metadata.name.as_deref().unwrap_or_default();
        assert_eq!(
            csr.spec.signer_name.as_deref(),
            Some(kind.signer()),
            "{name}"
        );
        assert_eq!(csr.spec.usages, kind.usages(), "usages of {name}");
        assert_eq!(
            csr.spec.expiration_seconds,
            Some(REQUESTED_LIFETIME_SECS),
            "expirationSeconds of {name}"
        );
        assert_eq!(csr.spec.username.as_deref(), Some(NODE), "{name}");
        assert_eq!(csr.spec.groups, [NODES, "system:authenticated"], "{name}");
    }

    // What client-go stored verifies against the server's CA, and the newest is the last one
    // its Current() returned.
    let pairs = stored_pairs(&dir.path().join("pki"));
    assert!(pairs.len() > ROTATIONS, "{} stored pairs", pairs.len());
    for (path, der) in &pairs {
        eprintln!("verifying {}", path.display());
        verify_as_peer(&server, kind, der);
    }
    let current = std::fs::read(dir.path().join("pki/peer-current.pem")).expect("current pair");
    let current = CertificateDer::pem_slice_iter(&current)
        .next()
        .expect("a certificate in peer-current.pem")
        .expect("well-formed");
    assert_eq!(serial_and_not_before(&current).0, observed_last);

    let lifetimes: Vec<u64> = certs
        .iter()
        .filter_map(|c| {
            let nb = rfc3339_secs(c["notBefore"].as_str()?)?;
            let na = rfc3339_secs(c["notAfter"].as_str()?)?;
            na.checked_sub(nb)
        })
        .collect();
    assert_eq!(
        lifetimes,
        vec![LIFETIME.as_secs(); ROTATIONS + 1],
        "NotAfter - NotBefore of each certificate"
    );
}

/// Seconds since the epoch of an RFC 3339 time as Go prints it (`2006-01-02T15:04:05Z`).
fn rfc3339_secs(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

#[test]
fn client_certificate_json() {
    scenario(Kind::Client, Mode::Json);
}

#[test]
fn client_certificate_protobuf() {
    scenario(Kind::Client, Mode::Protobuf);
}

#[test]
fn client_certificate_watch_list_off() {
    scenario(Kind::Client, Mode::WatchListOff);
}

#[test]
fn serving_certificate_json() {
    scenario(Kind::Serving, Mode::Json);
}

#[test]
fn serving_certificate_protobuf() {
    scenario(Kind::Serving, Mode::Protobuf);
}

#[test]
fn serving_certificate_watch_list_off() {
    scenario(Kind::Serving, Mode::WatchListOff);
}
