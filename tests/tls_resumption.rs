//! TLS session resumption against real peers: after a rotation every new connection sees the
//! new certificate, and a client certificate that has expired is refused on the next
//! connection even when the client offers a session from when it was valid.
//!
//! The server is `tls::server_config` on a loopback HTTP server whose time is a fake clock set
//! to the real time at the start (so that real clients, which check validity at the system
//! time, accept its certificate). A client program rotates the server's certificate, or moves
//! the fake clock past its own certificate's NotAfter, by requesting `/rotate` or `/expire`:
//! the server does that before it answers, so one program run sees the state before and after.
//!
//! The clients: rustls with its default session cache, `openssl s_client` with
//! `-sess_out`/`-sess_in`, `curl` with two URLs in one run (curl re-uses its TLS session for
//! the second connection), and Python's `ssl` module passing `SSLSocket.session` on. The
//! programs must be installed when the environment variable `CI` is set; otherwise a missing
//! one is reported loudly and its test is skipped.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certrotate::pki::{CertInfo, CertificateAuthority, crypto_provider, parse_chain_pem};
use certrotate::testing::{FakeClock, FakeCsrApi};
use certrotate::tls::{client_config, root_store, server_config};
use certrotate::{
    Certificate, CertificateManager, Clock, Config, CsrTemplate, KeyAlgorithm, KeyUsage, Manager,
    PrivateKey,
};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ProtocolVersion, StreamOwned};

#[path = "support/loopback_tls.rs"]
mod loopback_tls;
use loopback_tls::{TlsServer, request};

const DAY: Duration = Duration::from_secs(86_400);
/// Lifetime of the client certificates the tests issue: far shorter than the server's.
const CLIENT_LIFETIME: Duration = Duration::from_secs(3600);
/// Bound on any one client program run.
const RUN_BOUND: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Version {
    Tls12,
    Tls13,
}

const VERSIONS: [Version; 2] = [Version::Tls12, Version::Tls13];

impl Version {
    fn rustls(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            Version::Tls12 => &rustls::version::TLS12,
            Version::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// A loopback server using `tls::server_config`, its manager and fake clock, and a directory
/// with the CA and a client certificate as PEM files.
struct Rig {
    start: SystemTime,
    clock: FakeClock,
    api: Arc<FakeCsrApi>,
    manager: Arc<CertificateManager>,
    server: TlsServer,
    dir: tempfile::TempDir,
    /// Valid from `start` for [`CLIENT_LIFETIME`], issued by the same CA.
    client: Certificate,
}

impl Rig {
    fn new(client_auth: bool) -> Rig {
        let real_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let start = UNIX_EPOCH + Duration::from_secs(real_now.as_secs());
        let clock = FakeClock::new(start);
        let api = FakeCsrApi::new(Arc::new(clock.clone()), DAY);
        let manager = Arc::new(
            CertificateManager::new(
                Config::builder()
                    .template(
                        CsrTemplate::new("svc")
                            .with_dns_name("localhost")
                            .with_ip_address("127.0.0.1".parse().unwrap()),
                    )
                    .signer_name("example.com/serving")
                    .usages([KeyUsage::DigitalSignature, KeyUsage::ServerAuth])
                    .clock(Arc::new(clock.clone()))
                    .client_factory(api.factory())
                    .build()
                    .unwrap(),
            )
            .unwrap(),
        );
        manager.rotate_now().unwrap();
        let ca = api.ca().cert_pem();
        let config = server_config(&manager, client_auth.then_some(ca.as_bytes())).unwrap();
        let (m, c) = (manager.clone(), clock.clone());
        let server = TlsServer::start_with_hook(
            config,
            Arc::new(move |path: &str| match path {
                "/rotate" => {
                    m.rotate_now().unwrap();
                }
                // Past the client certificate's NotAfter, well before the server's.
                "/expire" => c.set(start + 2 * CLIENT_LIFETIME),
                // Past the server certificate's NotAfter.
                "/expire-server" => c.set(start + 2 * DAY),
                _ => {}
            }),
        );
        let client = issue(
            api.ca(),
            "client",
            KeyUsage::ClientAuth,
            start,
            start + CLIENT_LIFETIME,
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
        std::fs::write(dir.path().join("client.pem"), client.cert_pem()).unwrap();
        std::fs::write(dir.path().join("client-key.pem"), client.key_pem()).unwrap();
        Rig {
            start,
            clock,
            api,
            manager,
            server,
            dir,
            client,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn port(&self) -> u16 {
        self.server.addr.port()
    }

    fn serial(&self) -> String {
        self.manager.current().unwrap().serial_hex()
    }

    /// The fake clock is past the client certificate's NotAfter and the server's is still
    /// valid, so a refusal can only be about the client certificate.
    fn assert_expired_for_client_only(&self) {
        let now = self.clock.now();
        assert!(self.client.not_after() < now);
        assert!(self.manager.current().is_some_and(|c| c.not_after() > now));
    }

    /// Waits (bounded) until the server has refused `n` connections (failures other than a
    /// client leaving without a TLS close), and checks that the last one names `cause`.
    fn wait_refused(&self, n: usize, cause: &str) {
        let refused = |failed: &[String]| -> Vec<String> {
            failed
                .iter()
                .filter(|f| !f.contains("without sending TLS close_notify"))
                .cloned()
                .collect()
        };
        let failed = self
            .server
            .wait_failed(RUN_BOUND, |f| refused(f).len() >= n)
            .unwrap_or_else(|| panic!("fewer than {n} refusals: {:?}", self.server.failed()));
        let refused = refused(&failed);
        assert!(refused[n - 1].contains(cause), "{refused:?}");
    }

    fn assert_nothing_resumed(&self) {
        let answered = self.server.answered();
        assert!(
            answered.iter().all(|a| !a.resumed),
            "the server resumed a session: {answered:?}"
        );
    }
}

fn issue(
    ca: &CertificateAuthority,
    name: &str,
    usage: KeyUsage,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Certificate {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let template = CsrTemplate::new(name)
        .with_dns_name("localhost")
        .with_ip_address("127.0.0.1".parse().unwrap());
    ca.issue(
        &template,
        &key,
        &[KeyUsage::DigitalSignature, usage],
        not_before,
        not_after,
    )
    .unwrap()
}

fn serial_of_pem(pem: &str) -> String {
    let chain = parse_chain_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}: {pem}"));
    CertInfo::from_der(&chain[0]).unwrap().serial_hex()
}

/// Whether `program` can be run. Without it the test fails when `CI` is set and is skipped
/// with a loud message otherwise.
fn have(program: &str, version_arg: &str) -> bool {
    let found = Command::new(program)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is required for this test when CI is set, and it cannot be run"
        );
        eprintln!(
            "\n!!!!!!!!!! SKIPPED: {program} not found; this test checks TLS resumption against {program} and did NOT run !!!!!!!!!!\n"
        );
    }
    found
}

struct Ran {
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with `input` on its stdin, for at most [`RUN_BOUND`].
fn run(mut cmd: Command, input: &[u8]) -> Ran {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let reader = |mut r: Box<dyn Read + Send>| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
        rx
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + RUN_BOUND;
    let (Ok(stdout), Ok(stderr)) = (out.recv_deadline(deadline), err.recv_deadline(deadline))
    else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {RUN_BOUND:?}");
    };
    child.wait().unwrap();
    Ran { stdout, stderr }
}

// ---------------------------------------------------------------------------------------------
// rustls with its default client session cache

/// A rustls client with rustls's default session resumption (cache and tickets), trusting the
/// rig's CA, optionally presenting `cert`.
fn resuming_rustls_client(
    rig: &Rig,
    version: Version,
    cert: Option<&Certificate>,
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[version.rustls()])
        .unwrap()
        .with_root_certificates(root_store(rig.api.ca().cert_pem().as_bytes()).unwrap());
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some(c) => builder
            .with_client_auth_cert(
                c.chain().to_vec(),
                PrivateKeyDer::Pkcs8(c.private_key().pkcs8_der().to_vec().into()),
            )
            .unwrap(),
    };
    Arc::new(config)
}

#[test]
fn server_rotation_reaches_rustls_clients_with_a_session_cache() {
    for version in VERSIONS {
        let rig = Rig::new(false);
        let client = resuming_rustls_client(&rig, version, None);
        for round in 0..3 {
            let before = rig.serial();
            let first = request(client.clone(), rig.server.addr, "/rotate").unwrap();
            assert_eq!(first.presented, before, "{version:?} round {round}");
            let after = rig.serial();
            assert_ne!(before, after);
            let second = request(client.clone(), rig.server.addr, "/").unwrap();
            assert!(!second.resumed, "{version:?} round {round}: resumed");
            assert_eq!(
                second.presented, after,
                "{version:?} round {round}: the connection after the rotation"
            );
        }
        // Once the server's certificate has expired, no connection is made at all, resumed or not.
        request(client.clone(), rig.server.addr, "/expire-server").unwrap();
        request(client, rig.server.addr, "/").unwrap_err();
        rig.wait_refused(1, "no server certificate chain resolved");
        rig.assert_nothing_resumed();
    }
}

#[test]
fn expired_client_certificate_is_refused_to_rustls_clients_with_a_session_cache() {
    for version in VERSIONS {
        let rig = Rig::new(true);
        let client = resuming_rustls_client(&rig, version, Some(&rig.client));
        let valid = request(client.clone(), rig.server.addr, "/expire").unwrap();
        assert_eq!(valid.client, rig.client.serial_hex());
        rig.assert_expired_for_client_only();
        // With the session from when the certificate was valid ...
        request(client, rig.server.addr, "/").unwrap_err();
        rig.wait_refused(1, "certificate expired");
        // ... and without one.
        let fresh = resuming_rustls_client(&rig, version, Some(&rig.client));
        request(fresh, rig.server.addr, "/").unwrap_err();
        rig.wait_refused(2, "certificate expired");
        assert_eq!(rig.server.answered().len(), 1, "{version:?}");
        rig.assert_nothing_resumed();
        // A client certificate from another CA is refused as well.
        let other = CertificateAuthority::for_tests("other-ca").unwrap();
        let stranger = issue(
            &other,
            "stranger",
            KeyUsage::ClientAuth,
            rig.start,
            rig.start + DAY,
        );
        request(
            resuming_rustls_client(&rig, version, Some(&stranger)),
            rig.server.addr,
            "/",
        )
        .unwrap_err();
        rig.wait_refused(3, "UnknownIssuer");
    }
}

// ---------------------------------------------------------------------------------------------
// openssl s_client

fn s_client(rig: &Rig, version: Version, path: &str, session: &Path, with_cert: bool) -> Ran {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .args(["-connect", &format!("127.0.0.1:{}", rig.port())])
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-ign_eof",
        ])
        .arg("-CAfile")
        .arg(rig.path("ca.pem"))
        .arg(match version {
            Version::Tls12 => "-tls1_2",
            Version::Tls13 => "-tls1_3",
        });
    if with_cert {
        cmd.arg("-cert")
            .arg(rig.path("client.pem"))
            .arg("-key")
            .arg(rig.path("client-key.pem"));
    }
    // Offer the session of the previous run when that run got one.
    if session.exists() {
        cmd.arg("-sess_in").arg(session);
    }
    let out = rig.path("session.out");
    cmd.arg("-sess_out").arg(&out);
    let ran = run(
        cmd,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let _ = std::fs::remove_file(session);
    if out.exists() {
        std::fs::rename(&out, session).unwrap();
    }
    ran
}

/// The certificate the server presented, from s_client's "Server certificate" section (for a
/// resumed session: the session's).
fn s_client_server_serial(ran: &Ran) -> String {
    let pem = ran
        .stdout
        .split("Server certificate\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no server certificate in: {}", ran.stdout));
    serial_of_pem(pem)
}

#[test]
fn server_rotation_reaches_openssl_s_client_offering_its_session() {
    if !have("openssl", "version") {
        return;
    }
    for version in VERSIONS {
        let rig = Rig::new(false);
        let session = rig.path("session.pem");
        let before = rig.serial();
        let first = s_client(&rig, version, "/rotate", &session, false);
        assert!(first.stdout.contains("HTTP/1.1 200 OK"), "{}", first.stdout);
        assert_eq!(s_client_server_serial(&first), before, "{version:?}");
        let after = rig.serial();
        assert_ne!(before, after);
        let second = s_client(&rig, version, "/", &session, false);
        assert!(
            second.stdout.contains("HTTP/1.1 200 OK"),
            "{}",
            second.stdout
        );
        assert!(
            !second.stdout.contains("Reused,"),
            "{version:?}: {}",
            second.stdout
        );
        assert_eq!(
            s_client_server_serial(&second),
            after,
            "{version:?}: the connection after the rotation"
        );
        rig.assert_nothing_resumed();
    }
}

#[test]
fn expired_client_certificate_is_refused_to_openssl_s_client_offering_its_session() {
    if !have("openssl", "version") {
        return;
    }
    for version in VERSIONS {
        let rig = Rig::new(true);
        let session = rig.path("session.pem");
        let first = s_client(&rig, version, "/expire", &session, true);
        assert!(
            first
                .stdout
                .contains(&format!("\r\n\r\n{}", rig.client.serial_hex())),
            "{version:?}: {}",
            first.stdout
        );
        rig.assert_expired_for_client_only();
        let second = s_client(&rig, version, "/", &session, true);
        assert!(
            !second.stdout.contains("200 OK"),
            "{version:?}: admitted: {}",
            second.stdout
        );
        let all = format!("{}{}", second.stdout, second.stderr);
        assert!(
            all.contains("alert certificate expired"),
            "{version:?}: {all}"
        );
        rig.wait_refused(1, "certificate expired");
        assert_eq!(rig.server.answered().len(), 1, "{version:?}");
        rig.assert_nothing_resumed();
    }
}

// ---------------------------------------------------------------------------------------------
// curl: two URLs in one run, the second connection offers the first one's session

const CURL_CODE: &str = "<<status>>";
const CURL_END: &str = "<<end of transfer>>";

/// One curl run over `paths`, a new connection per URL (the server closes each). Returns the
/// HTTP status and the presented certificate's serial (`-` when none) per transfer, and stderr.
fn curl(
    rig: &Rig,
    version: Version,
    paths: &[&str],
    with_cert: bool,
) -> (Vec<(String, String)>, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-v", "-H", "Connection: close"])
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", rig.port())])
        .arg("--cacert")
        .arg(rig.path("ca.pem"))
        .args(match version {
            Version::Tls12 => ["--tlsv1.2", "--tls-max", "1.2"],
            Version::Tls13 => ["--tlsv1.3", "--tls-max", "1.3"],
        })
        .args([
            "-w",
            &format!("\n{CURL_CODE}%{{http_code}}\n%{{certs}}\n{CURL_END}\n"),
        ]);
    if with_cert {
        cmd.arg("--cert")
            .arg(rig.path("client.pem"))
            .arg("--key")
            .arg(rig.path("client-key.pem"));
    }
    for p in paths {
        cmd.arg(format!("https://localhost:{}{p}", rig.port()));
    }
    let ran = run(cmd, b"");
    let transfers = ran
        .stdout
        .split(CURL_END)
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            // the body, then the status, then the certificates
            let written = t.split(CURL_CODE).nth(1).unwrap_or("");
            let (code, certs) = written.split_once('\n').unwrap_or((written, ""));
            let code = code.to_string();
            let serial = if certs.contains("BEGIN CERTIFICATE") {
                serial_of_pem(certs)
            } else {
                "-".into()
            };
            (code, serial)
        })
        .collect();
    (transfers, ran.stderr)
}

#[test]
fn server_rotation_reaches_curl_reusing_its_session() {
    if !have("curl", "--version") {
        return;
    }
    for version in VERSIONS {
        let rig = Rig::new(false);
        let before = rig.serial();
        let (transfers, stderr) = curl(&rig, version, &["/rotate", "/"], false);
        let after = rig.serial();
        assert_ne!(before, after);
        assert_eq!(
            transfers,
            [("200".to_string(), before), ("200".to_string(), after)],
            "{version:?}: {stderr}"
        );
        rig.assert_nothing_resumed();
    }
}

#[test]
fn expired_client_certificate_is_refused_to_curl_reusing_its_session() {
    if !have("curl", "--version") {
        return;
    }
    for version in VERSIONS {
        let rig = Rig::new(true);
        let (transfers, stderr) = curl(&rig, version, &["/expire", "/"], true);
        rig.assert_expired_for_client_only();
        let codes: Vec<&str> = transfers.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(codes, ["200", "000"], "{version:?}: {stderr}");
        assert!(
            stderr.contains("alert, certificate expired"),
            "{version:?}: {stderr}"
        );
        rig.wait_refused(1, "certificate expired");
        assert_eq!(rig.server.answered().len(), 1, "{version:?}");
        rig.assert_nothing_resumed();
    }
}

// ---------------------------------------------------------------------------------------------
// Python's ssl module, passing the first connection's session to the second

/// Two connections; the second is given the first one's `SSLSocket.session`. Prints one JSON
/// object per connection.
const PYTHON_CLIENT: &str = r#"
import json, socket, ssl, sys
port, ca, version, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
paths = sys.argv[6:]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
ctx.minimum_version = v
ctx.maximum_version = v
if cert:
    ctx.load_cert_chain(cert, key)
session = None
for path in paths:
    out = {"path": path, "offered": session is not None}
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path).encode())
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                out["reused"] = s.session_reused
                out["cert"] = s.getpeercert(binary_form=True).hex()
                out["response"] = data.decode()
                session = s.session
    except (OSError, ssl.SSLError) as e:
        out["error"] = str(e)
    print(json.dumps(out), flush=True)
"#;

fn python(rig: &Rig, version: Version, paths: &[&str], with_cert: bool) -> Vec<serde_json::Value> {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", PYTHON_CLIENT])
        .arg(rig.port().to_string())
        .arg(rig.path("ca.pem"))
        .arg(match version {
            Version::Tls12 => "1.2",
            Version::Tls13 => "1.3",
        });
    if with_cert {
        cmd.arg(rig.path("client.pem"))
            .arg(rig.path("client-key.pem"));
    } else {
        cmd.args(["", ""]);
    }
    cmd.args(paths);
    let ran = run(cmd, b"");
    let lines: Vec<serde_json::Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), paths.len(), "{}{}", ran.stdout, ran.stderr);
    lines
}

fn python_serial(conn: &serde_json::Value) -> String {
    let hex = conn["cert"]
        .as_str()
        .unwrap_or_else(|| panic!("no certificate: {conn}"));
    let der: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    CertInfo::from_der(&der).unwrap().serial_hex()
}

#[test]
fn server_rotation_reaches_python_ssl_passing_its_session() {
    if !have("python3", "--version") {
        return;
    }
    for version in VERSIONS {
        let rig = Rig::new(false);
        let before = rig.serial();
        let conns = python(&rig, version, &["/rotate", "/"], false);
        let after = rig.serial();
        assert_ne!(before, after);
        assert_eq!(python_serial(&conns[0]), before, "{version:?}");
        assert_eq!(conns[1]["reused"], false, "{version:?}: {}", conns[1]);
        assert_eq!(
            python_serial(&conns[1]),
            after,
            "{version:?}: the connection after the rotation: {}",
            conns[1]
        );
        rig.assert_nothing_resumed();
    }
}

#[test]
fn expired_client_certificate_is_refused_to_python_ssl_passing_its_session() {
    if !have("python3", "--version") {
        return;
    }
    for version in VERSIONS {
        let rig = Rig::new(true);
        let conns = python(&rig, version, &["/expire", "/"], true);
        rig.assert_expired_for_client_only();
        assert!(
            conns[0]["response"]
                .as_str()
                .is_some_and(|r| r.ends_with(&rig.client.serial_hex())),
            "{version:?}: {}",
            conns[0]
        );
        let error = conns[1]["error"].as_str().unwrap_or_else(|| {
            panic!("{version:?}: admitted: {}", conns[1]);
        });
        assert!(
            error.contains("CERTIFICATE_EXPIRED") || error.contains("certificate expired"),
            "{version:?}: {error}"
        );
        rig.wait_refused(1, "certificate expired");
        assert_eq!(rig.server.answered().len(), 1, "{version:?}");
        rig.assert_nothing_resumed();
    }
}

// ---------------------------------------------------------------------------------------------
// tls::client_config against openssl s_server, which offers TLS 1.2 session IDs and tickets and
// TLS 1.3 tickets

/// `openssl s_server -www` requiring a client certificate from the rig's CA; killed on drop.
struct SServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Its certificate is valid from the rig's start for `lifetime`.
fn s_server(rig: &Rig, version: Version, lifetime: Duration) -> SServer {
    let serving = issue(
        rig.api.ca(),
        "localhost",
        KeyUsage::ServerAuth,
        rig.start,
        rig.start + lifetime,
    );
    std::fs::write(rig.path("s_server.pem"), serving.cert_pem()).unwrap();
    std::fs::write(rig.path("s_server-key.pem"), serving.key_pem()).unwrap();
    let mut child = Command::new("openssl")
        .args(["s_server", "-accept", "127.0.0.1:0", "-www", "-Verify", "1"])
        .arg("-cert")
        .arg(rig.path("s_server.pem"))
        .arg("-key")
        .arg(rig.path("s_server-key.pem"))
        .arg("-CAfile")
        .arg(rig.path("ca.pem"))
        .arg(match version {
            Version::Tls12 => "-tls1_2",
            Version::Tls13 => "-tls1_3",
        })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { return };
            if let Some(addr) = line.strip_prefix("ACCEPT ") {
                let port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                let _ = tx.send(port);
                break;
            }
        }
        for _ in lines {} // keep the pipe drained
    });
    let Some(port) = rx.recv_timeout(RUN_BOUND).ok().flatten() else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("openssl s_server did not report its port");
    };
    SServer { child, port }
}

/// One request to s_server: whether rustls resumed, what s_server reports about the session,
/// and the serial of the client certificate s_server saw.
fn to_s_server(
    config: Arc<ClientConfig>,
    port: u16,
) -> (HandshakeKind, ProtocolVersion, String, String) {
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(RUN_BOUND)).unwrap();
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut page = Vec::new();
    match tls.read_to_end(&mut page) {
        Ok(_) => {}
        // s_server closes without close_notify
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("{e}"),
    }
    let page = String::from_utf8_lossy(&page).into_owned();
    let kind = tls.conn.handshake_kind().unwrap();
    let version = tls.conn.protocol_version().unwrap();
    let session = page
        .lines()
        .find(|l| l.starts_with("New,") || l.starts_with("Reused,"))
        .unwrap_or_else(|| panic!("no session line in: {page}"))
        .to_string();
    let client = page
        .split("Client certificate")
        .nth(1)
        .map(serial_of_pem)
        .unwrap_or_else(|| panic!("no client certificate in: {page}"));
    (kind, version, session, client)
}

/// A manager on the rig's clock holding a client certificate (valid for a day) from its CA.
fn client_manager(rig: &Rig) -> CertificateManager {
    let m = CertificateManager::new(
        Config::builder()
            .template(CsrTemplate::new("client"))
            .signer_name("kubernetes.io/kube-apiserver-client")
            .usages([KeyUsage::DigitalSignature, KeyUsage::ClientAuth])
            .clock(Arc::new(rig.clock.clone()))
            .client_factory(rig.api.factory())
            .build()
            .unwrap(),
    )
    .unwrap();
    m.rotate_now().unwrap();
    m
}

#[test]
fn client_config_checks_the_server_certificate_at_the_manager_clock() {
    if !have("openssl", "version") {
        return;
    }
    let rig = Rig::new(true);
    let server = s_server(&rig, Version::Tls13, CLIENT_LIFETIME);
    let client_side = client_manager(&rig);
    let config = client_config(&client_side, rig.api.ca().cert_pem().as_bytes()).unwrap();
    let (_, _, _, client) = to_s_server(config.clone(), server.port);
    assert_eq!(client, client_side.current().unwrap().serial_hex());
    // By the manager's clock, s_server's certificate has expired (the client's has not).
    rig.clock.set(rig.start + 2 * CLIENT_LIFETIME);
    assert!(client_side.current().is_some());
    let sock = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    sock.set_read_timeout(Some(RUN_BOUND)).unwrap();
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    let err = tls.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap_err();
    assert!(err.to_string().contains("certificate expired"), "{err}");
}

#[test]
fn client_config_presents_the_rotated_certificate_to_openssl_s_server_and_never_resumes() {
    if !have("openssl", "version") {
        return;
    }
    for version in VERSIONS {
        let rig = Rig::new(true);
        let server = s_server(&rig, version, DAY);
        let client_side = client_manager(&rig);
        let config = client_config(&client_side, rig.api.ca().cert_pem().as_bytes()).unwrap();
        for round in 0..3 {
            let (kind, proto, session, client) = to_s_server(config.clone(), server.port);
            assert_eq!(proto, version.rustls().version, "{version:?}");
            assert_eq!(kind, HandshakeKind::Full, "{version:?} round {round}");
            assert!(
                session.starts_with("New,"),
                "{version:?} round {round}: {session}"
            );
            assert_eq!(
                client,
                client_side.current().unwrap().serial_hex(),
                "{version:?} round {round}"
            );
            client_side.rotate_now().unwrap();
        }
    }
}

#[test]
fn server_config_keeps_no_sessions_and_issues_no_tickets() {
    let rig = Rig::new(true);
    let config = server_config(&rig.manager, None).unwrap();
    assert!(!config.session_storage.can_cache());
    assert!(!config.ticketer.enabled());
    assert_eq!(config.send_tls13_tickets, 0);
    assert_eq!(config.max_early_data_size, 0);
}
