//! End to end: the certificate manager with a `FileStore` in a temporary directory, the
//! Kubernetes CSR client (mTLS, credentials from the embedded server's kubeconfig) and the
//! embedded CSR API server, all on one `FakeClock` that also stamps the server's objects and
//! dates the certificates its signer issues. Each issued certificate is checked where a program
//! meets it: on disk, in the rustls resolver, and in real TLS handshakes on loopback.
//!
//! Time moves only when a test moves it. A test learns that the manager is asleep from the
//! clock's pending timers, and that a CSR is in flight from the server's state (a CSR wait also
//! holds a timer, its watchdog, which must not be fired); it never sleeps. The only real-time
//! waits are bounds on those waits and socket timeouts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certrotate::csr::api::CertificateSigningRequest;
use certrotate::kubeconfig::Kubeconfig;
use certrotate::pki::{CertInfo, crypto_provider, parse_chain_pem};
use certrotate::schedule::{DEADLINE_MAX_FRACTION, DEADLINE_MIN_FRACTION, PERIODIC_RETRY};
use certrotate::server::{
    ApprovalPolicy, Call, CsrApiServer, CsrApiServerBuilder, Fault, Identity,
    SIGNER_KUBE_APISERVER_CLIENT_KUBELET, SIGNER_KUBELET_SERVING,
};
use certrotate::testing::FakeClock;
use certrotate::tls::{client_config, root_store, server_config};
use certrotate::{
    Certificate, CertificateManager, Clock, Config, ConfigBuilder, CsrTemplate, FileStore,
    KeyUsage, KubeCsrClientBuilder, Manager, Store,
};
use crossbeam_channel::Receiver;
use rustls::ClientConfig;
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;

/// Bound on every real-time wait for something the code under test does.
#[path = "support/loopback_tls.rs"]
mod loopback_tls;
use loopback_tls::{TlsServer, handshake};

const BOUND: Duration = Duration::from_secs(20);
/// The node whose certificates rotate.
const NODE: &str = "system:node:e2e-node";
/// The user of the kubeconfig's own client certificate (the bootstrap credentials).
const BOOTSTRAP_USER: &str = "e2e-bootstrap";
/// The lifetime requested; the signer adds its 5 min backdate in front.
const LIFETIME: Duration = Duration::from_secs(3600);
/// The signer's backdate (its default, as kube-controller-manager's).
const BACKDATE: Duration = Duration::from_secs(300);
const HOUR: Duration = Duration::from_secs(3600);

/// 2026-01-01T00:00:00Z.
fn start_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn serving_template() -> CsrTemplate {
    CsrTemplate::new(NODE)
        .with_organization("system:nodes")
        .with_dns_name("localhost")
        .with_ip_address("127.0.0.1".parse().unwrap())
}

fn client_template() -> CsrTemplate {
    CsrTemplate::new(NODE).with_organization("system:nodes")
}

/// The embedded server, a kubeconfig-based CSR client and a state directory, on one fake clock.
struct Rig {
    clock: FakeClock,
    server: CsrApiServer,
    kube: KubeCsrClientBuilder,
    dir: tempfile::TempDir,
}

impl Rig {
    fn new(start: SystemTime, server: CsrApiServerBuilder) -> Rig {
        let clock = FakeClock::new(start);
        // Approve everything: the serving CSRs here would wait for an administrator in a
        // cluster; these tests are about rotation, not about who approves.
        let server = server
            .approval_policy(ApprovalPolicy::All)
            .clock(Arc::new(clock.clone()))
            .start()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // The kubeconfig a node would be given: the server's CA and a client certificate.
        let kubeconfig = dir.path().join("kubeconfig");
        let yaml = server
            .kubeconfig(&Identity::client_cert(
                BOOTSTRAP_USER,
                &["system:bootstrappers"],
            ))
            .unwrap();
        std::fs::write(&kubeconfig, yaml).unwrap();
        let kube = Kubeconfig::load(&kubeconfig)
            .unwrap()
            .client_builder(None)
            .unwrap()
            .clock(Arc::new(clock.clone()));
        Rig {
            clock,
            server,
            kube,
            dir,
        }
    }

    /// A `FileStore` on the rig's certificate directory (a new handle each call, as a restarted
    /// process would make).
    fn store(&self, prefix: &str) -> Arc<FileStore> {
        let pki = self.dir.path().join("pki");
        Arc::new(
            FileStore::builder(prefix, &pki, &pki)
                .clock(Arc::new(self.clock.clone()))
                .build()
                .unwrap(),
        )
    }

    fn config(&self, prefix: &str) -> ConfigBuilder {
        Config::builder()
            .requested_lifetime(LIFETIME)
            .store(self.store(prefix))
            .clock(Arc::new(self.clock.clone()))
            .rng_seed(7)
    }

    /// A kubelet-serving manager's configuration (ECDSA key: usages without key encipherment).
    /// As the kubelet, it sends its CSRs with the node's client credentials (here always the
    /// kubeconfig's), never with the serving certificate, which is no client certificate.
    fn serving(&self) -> ConfigBuilder {
        let factory = self.kube.clone().factory();
        self.config("kubelet-server")
            .client_factory(move |_current| factory(None))
            .template(serving_template())
            .usages([KeyUsage::DigitalSignature, KeyUsage::ServerAuth])
            .signer_name(SIGNER_KUBELET_SERVING)
    }

    /// A kubelet-client manager's configuration: its CSRs go with the kubeconfig's credentials
    /// until it has a certificate, then with that certificate.
    fn client(&self) -> ConfigBuilder {
        self.config("kubelet-client")
            .client_factory(self.kube.clone().factory())
            .template(client_template())
            .usages([KeyUsage::DigitalSignature, KeyUsage::ClientAuth])
            .signer_name(SIGNER_KUBE_APISERVER_CLIENT_KUBELET)
    }

    /// The stored CSR whose issued certificate is `cert`.
    fn csr_of(&self, cert: &Certificate) -> CertificateSigningRequest {
        let serial = cert.serial_hex();
        self.server
            .csrs()
            .into_iter()
            .find(|c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.certificate.as_deref())
                    .and_then(|pem| parse_chain_pem(pem).ok())
                    .and_then(|chain| chain.first().map(|d| CertInfo::from_der(d).unwrap()))
                    .is_some_and(|leaf| leaf.serial_hex() == serial)
            })
            .unwrap_or_else(|| panic!("no CSR issued certificate {serial}"))
    }

    /// Waits until `n` timers are pending on the clock.
    fn asleep(&self, n: usize) {
        assert!(
            self.clock.wait_for_waiters(n, BOUND),
            "the manager did not go to sleep ({n} timers) within {BOUND:?}"
        );
    }
}

/// The rotation window of `cert`: [NotBefore + 0.7 L, NotBefore + 0.9 L].
fn window(cert: &Certificate) -> (SystemTime, SystemTime) {
    let lifetime = cert.not_after().duration_since(cert.not_before()).unwrap();
    (
        cert.not_before() + lifetime.mul_f64(DEADLINE_MIN_FRACTION),
        cert.not_before() + lifetime.mul_f64(DEADLINE_MAX_FRACTION),
    )
}

/// A rotation the clock drove: the new certificate and the (fake) instant it was requested.
struct Rotated {
    cert: Arc<Certificate>,
    at: SystemTime,
}

/// Moves the fake clock from timer to timer until the manager publishes a new certificate.
///
/// Before each move it waits until `sleepers` timers are pending (the manager's threads are
/// asleep). A pending timer may also be the watchdog of a CSR wait in flight, which must not be
/// fired: a new CSR on the server tells that case apart, and then the test waits for the
/// rotation instead of moving time. So time stands still from the wake-up that starts an
/// attempt until its certificate is published, and `at` is that wake-up's instant.
fn run_until_rotation(
    rig: &Rig,
    rotations: &Receiver<Arc<Certificate>>,
    sleepers: usize,
) -> Rotated {
    let csrs = rig.server.csrs().len();
    let limit = rig.clock.now() + 100 * HOUR;
    loop {
        rig.asleep(sleepers);
        if let Ok(cert) = rotations.try_recv() {
            return Rotated {
                cert,
                at: rig.clock.now(),
            };
        }
        if rig.server.csrs().len() > csrs {
            let cert = rotations
                .recv_timeout(BOUND)
                .expect("a rotation once its CSR was created");
            return Rotated {
                cert,
                at: rig.clock.now(),
            };
        }
        assert!(
            rig.clock.now() < limit,
            "no rotation in 100 simulated hours"
        );
        rig.clock
            .advance_to_next_timer()
            .expect("a pending timer while asleep");
    }
}

/// Certificate validation in TLS at the fake clock's time, so handshakes accept certificates
/// issued in simulated time.
#[derive(Debug)]
struct FakeTime(FakeClock);

impl TimeProvider for FakeTime {
    fn current_time(&self) -> Option<UnixTime> {
        let since = self.0.now().duration_since(UNIX_EPOCH).ok()?;
        Some(UnixTime::since_unix_epoch(since))
    }
}

/// A TLS client without a client certificate that trusts only `ca_pem`, checks validity at the
/// fake clock's time, and never resumes a session (a resumed session reports the certificate
/// of the session it resumes, not the one the server presents now).
fn verifying_client(ca_pem: &str, clock: &FakeClock) -> Arc<ClientConfig> {
    let mut config =
        ClientConfig::builder_with_details(crypto_provider(), Arc::new(FakeTime(clock.clone())))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(root_store(ca_pem.as_bytes()).unwrap())
            .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// `cert` is what the manager serves, what the store holds, what the resolver offers and what a
/// TLS server using the manager presents.
fn assert_everywhere(
    what: &str,
    rig: &Rig,
    m: &CertificateManager,
    prefix: &str,
    cert: &Certificate,
    tls: &TlsServer,
    client: &Arc<ClientConfig>,
) {
    let current = m.current().unwrap_or_else(|| panic!("{what}: no current"));
    assert_eq!(*current, *cert, "{what}: current()");
    let stored = rig
        .store(prefix)
        .current()
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: nothing stored"));
    assert_eq!(stored, *cert, "{what}: stored chain");
    assert_eq!(stored.key_pem(), cert.key_pem(), "{what}: stored key");
    let offered = ResolvesClientCert::resolve(&*m.resolver(), &[], &[])
        .unwrap_or_else(|| panic!("{what}: the resolver offers nothing"));
    assert_eq!(offered.cert, cert.chain(), "{what}: resolver");
    let (presented, _) = handshake(client.clone(), tls.addr).unwrap();
    assert_eq!(presented, cert.serial_hex(), "{what}: TLS handshake");
}

/// Five rotations in a row, each at its jittered deadline, each certificate stored, offered
/// by the resolver and presented in a real handshake; every CSR sent over mTLS with the
/// kubeconfig's client certificate (a serving certificate is no client certificate).
#[test]
fn five_rotations_at_their_deadlines_reach_store_resolver_and_handshakes() {
    let rig = Rig::new(start_time(), CsrApiServer::builder());
    let m = CertificateManager::new(rig.serving().build().unwrap()).unwrap();
    assert!(m.current().is_none());
    let rotations = m.subscribe();
    let tls = TlsServer::start(server_config(&m, None).unwrap());
    let client = verifying_client(&rig.server.ca_pem(), &rig.clock);
    assert!(
        handshake(client.clone(), tls.addr).is_err(),
        "no certificate to present yet"
    );

    m.start();
    // An empty store forces a rotation at once.
    let first = rotations.recv_timeout(BOUND).expect("the first rotation");
    assert_eq!(rig.clock.now(), start_time(), "no time passed");
    assert_everywhere("first", &rig, &m, "kubelet-server", &first, &tls, &client);

    let mut prev = first;
    for i in 1..=5 {
        let what = format!("rotation {i}");
        let (lo, hi) = window(&prev);
        let deadline = m.rotation_deadline().unwrap();
        assert!(
            lo <= deadline && deadline <= hi,
            "{what}: deadline out of the window"
        );
        let r = run_until_rotation(&rig, &rotations, 1);
        // Requested at the deadline, by the clock the signer dates certificates with.
        assert!(r.at >= deadline, "{what}: rotated before its deadline");
        assert!(
            r.at.duration_since(deadline).unwrap() < Duration::from_secs(1),
            "{what}: rotated {:?} after its deadline",
            r.at.duration_since(deadline).unwrap()
        );
        assert!(
            lo <= r.at && r.at <= hi,
            "{what}: outside [0.7, 0.9] of the lifetime"
        );
        let nb_offset =
            r.at.duration_since(r.cert.not_before())
                .unwrap()
                .abs_diff(BACKDATE);
        assert!(nb_offset < Duration::from_secs(1), "{what}: NotBefore");
        assert_eq!(
            r.cert
                .not_after()
                .duration_since(r.cert.not_before())
                .unwrap(),
            LIFETIME + BACKDATE,
            "{what}: lifetime"
        );
        assert_ne!(r.cert.serial_hex(), prev.serial_hex(), "{what}");
        assert_everywhere(&what, &rig, &m, "kubelet-server", &r.cert, &tls, &client);
        assert_eq!(
            rig.server.csrs().len(),
            i + 1,
            "{what}: one CSR per rotation"
        );
        let csr = rig.csr_of(&r.cert);
        assert_eq!(
            csr.spec.username.as_deref(),
            Some(BOOTSTRAP_USER),
            "{what}: mTLS user"
        );
        assert!(m.server_healthy(), "{what}");
        prev = r.cert;
    }
    m.stop();
}

/// CASES C9: a manager restarted on the same directory serves the stored certificate and sends
/// no CSR, with a dynamic template (the case that used to send one on every restart); it
/// rotates later at the deadline drawn from the certificate's NotBefore, not from the restart.
#[test]
fn c9_restart_serves_the_stored_cert_and_sends_no_csr() {
    let rig = Rig::new(start_time(), CsrApiServer::builder());
    let stored = {
        let before = CertificateManager::new(rig.serving().build().unwrap()).unwrap();
        let rotations = before.subscribe();
        before.start();
        rotations.recv_timeout(BOUND).expect("the first rotation")
        // Dropped here: stopped and joined.
    };
    assert_eq!(rig.server.csrs().len(), 1);
    assert_eq!(rig.clock.waiters(), 0, "the dropped manager left no timer");
    // The process is down until half the lifetime has passed.
    let (lo, hi) = window(&stored);
    let half = stored.not_before()
        + stored
            .not_after()
            .duration_since(stored.not_before())
            .unwrap()
            / 2;
    rig.clock
        .advance(half.duration_since(rig.clock.now()).unwrap());

    let template = serving_template();
    let m = CertificateManager::new(
        rig.serving()
            .template_fn(move || Some(template.clone()))
            .build()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        *m.current().unwrap(),
        *stored,
        "serves the stored certificate"
    );
    let client = verifying_client(&rig.server.ca_pem(), &rig.clock);
    let tls = TlsServer::start(server_config(&m, None).unwrap());
    assert_eq!(
        handshake(client.clone(), tls.addr).unwrap().0,
        stored.serial_hex()
    );
    let deadline = m.rotation_deadline().unwrap();
    assert!(lo <= deadline && deadline <= hi, "anchored to NotBefore");
    let rotations = m.subscribe();
    m.start();
    // Asleep: the rotation thread until its deadline, the template thread until its next poll.
    for _ in 0..120 {
        rig.asleep(2);
        rig.clock.advance_to_next_timer().unwrap();
    }
    rig.asleep(2);
    assert_eq!(rig.server.csrs().len(), 1, "no CSR after the restart");
    assert!(rotations.try_recv().is_err());
    assert_eq!(*m.current().unwrap(), *stored);

    let r = run_until_rotation(&rig, &rotations, 2);
    assert!(r.at >= deadline && r.at.duration_since(deadline).unwrap() < Duration::from_secs(1));
    assert_eq!(
        rig.server.csrs().len(),
        2,
        "exactly one CSR, at the deadline"
    );
    assert_eq!(handshake(client, tls.addr).unwrap().0, r.cert.serial_hex());
    m.stop();
}

/// An hour-long outage (every call answered 503 with a `Status` body) starting at the
/// deadline: the backoff schedule is 2, 4, 8, 16 s (+ up to 10 %) then 32 s ± 25 %; every
/// attempt is one failure and one refused call; the server counts as unhealthy (a 5xx, SPEC §5);
/// the old certificate is served until its NotAfter and not a moment longer; and after the
/// outage the next attempt rotates.
#[test]
fn outage_for_an_hour_backs_off_then_recovers() {
    let rig = Rig::new(start_time(), CsrApiServer::builder());
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    let m = CertificateManager::new(
        rig.serving()
            .renew_failure_counter(Arc::new(move || {
                f.fetch_add(1, Ordering::SeqCst);
            }))
            .build()
            .unwrap(),
    )
    .unwrap();
    let rotations = m.subscribe();
    let tls = TlsServer::start(server_config(&m, None).unwrap());
    let client = verifying_client(&rig.server.ca_pem(), &rig.clock);
    assert!(!m.server_healthy(), "initial state");
    m.start();
    let old = rotations.recv_timeout(BOUND).expect("the first rotation");
    assert!(m.server_healthy(), "set before the rotation is published");
    let (lo, hi) = window(&old);
    rig.asleep(1);

    // From now on the server fails every call.
    rig.server.inject(Call::Any, Fault::Status(503), usize::MAX);
    let csrs = rig.server.csrs().len();
    while rig.server.fault_counts().status == 0 {
        rig.clock.advance_to_next_timer().unwrap();
        rig.asleep(1); // after a failed create the thread sleeps in backoff (no CSR wait)
    }
    let outage_start = rig.clock.now();
    assert!(
        lo <= outage_start && outage_start <= hi,
        "first attempt at the deadline"
    );
    assert!(!m.server_healthy(), "503 from the server: unhealthy");

    let mut delays = Vec::new();
    let mut attempts = 1u64;
    let mut served_before_expiry = 0;
    while rig.clock.now() < outage_start + HOUR {
        let now = rig.clock.now();
        let alive = now <= old.not_after();
        let offered = ResolvesClientCert::resolve(&*m.resolver(), &[], &[]);
        let shook = handshake(client.clone(), tls.addr);
        if alive {
            assert_eq!(m.current().as_deref(), Some(&*old), "before NotAfter");
            assert_eq!(offered.unwrap().cert, old.chain());
            assert_eq!(shook.unwrap().0, old.serial_hex());
            served_before_expiry += 1;
        } else {
            assert!(m.current().is_none(), "after NotAfter");
            assert!(offered.is_none());
            assert!(shook.is_err(), "presented an expired certificate");
        }
        delays.push(rig.clock.advance_to_next_timer().unwrap());
        rig.asleep(1);
        attempts += 1;
        assert_eq!(
            rig.server.fault_counts().status,
            attempts,
            "one refused call per attempt"
        );
        assert_eq!(
            failures.load(Ordering::SeqCst) as u64,
            attempts,
            "one failure per attempt"
        );
        assert!(!m.server_healthy());
    }
    assert!(served_before_expiry > 5 && rig.clock.now() > old.not_after());
    assert_eq!(rig.server.csrs().len(), csrs, "no CSR got through");

    // Recovery: the next attempt, at the next backoff timer, rotates.
    rig.server.clear_faults();
    let before = rig.clock.now();
    let r = run_until_rotation(&rig, &rotations, 1);
    delays.push(r.at.duration_since(before).unwrap());
    assert_eq!(rig.server.fault_counts().status, attempts);
    assert_eq!(
        failures.load(Ordering::SeqCst) as u64,
        attempts,
        "success is no failure"
    );
    assert!(m.server_healthy());
    assert_eq!(handshake(client, tls.addr).unwrap().0, r.cert.serial_hex());

    // The default backoff (`Backoff::Spread`): exponential for the first four delays, each
    // stretched by up to 100 %, then a period of 32 s ± 50 %.
    for (i, base) in [2u64, 4, 8, 16].into_iter().enumerate() {
        let b = Duration::from_secs(base);
        assert!(
            delays[i] >= b && delays[i] < 2 * b,
            "delay {i}: {:?}",
            delays[i]
        );
    }
    let periodic = &delays[4..];
    let (min, max) = (PERIODIC_RETRY / 2, PERIODIC_RETRY * 3 / 2);
    assert!(
        periodic.iter().all(|d| *d >= min && *d < max),
        "periodic retries out of [{min:?}, {max:?}): {periodic:?}"
    );
    let spread = *periodic.iter().max().unwrap() - *periodic.iter().min().unwrap();
    assert!(
        spread > Duration::from_secs(8),
        "periodic retries are jittered: {spread:?}"
    );
    assert_eq!(
        attempts as usize,
        delays.len(),
        "each delay led to one attempt"
    );
    m.stop();
}

/// A server that requires client certificates sees the rotated client certificate on the
/// first handshake after the rotation (the client config does not resume sessions).
///
/// Here the rustls verifiers on both sides read the real time, so the clock starts now and the
/// signer issues 4-minute certificates: every certificate of this test is valid in real time
/// while it runs.
#[test]
fn server_requiring_client_certs_sees_the_new_serial_after_rotation() {
    let now = UNIX_EPOCH
        + Duration::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    let rig = Rig::new(
        now,
        CsrApiServer::builder()
            .min_lifetime(Duration::from_secs(60))
            .max_lifetime(Duration::from_secs(240)),
    );
    let ca = rig.server.ca_pem();
    // The server side: a serving certificate, not rotated during the test.
    let serving = CertificateManager::new(rig.serving().build().unwrap()).unwrap();
    let served = serving.rotate_now().unwrap();
    let tls = TlsServer::start(server_config(&serving, Some(ca.as_bytes())).unwrap());

    let m = CertificateManager::new(rig.client().build().unwrap()).unwrap();
    let rotations = m.subscribe();
    let client = client_config(&m, ca.as_bytes()).unwrap();
    m.start();
    let first = rotations.recv_timeout(BOUND).expect("the first rotation");
    assert_eq!(
        rig.csr_of(&first).spec.username.as_deref(),
        Some(BOOTSTRAP_USER)
    );
    let (presented, seen) = handshake(client.clone(), tls.addr).unwrap();
    assert_eq!(presented, served.serial_hex());
    assert_eq!(seen, first.serial_hex());
    // Client certificates are required: a client without one is refused.
    let anonymous = verifying_client(&ca, &rig.clock);
    assert!(handshake(anonymous, tls.addr).is_err());

    let (lo, hi) = window(&first);
    let r = run_until_rotation(&rig, &rotations, 1);
    assert!(lo <= r.at && r.at <= hi);
    let (_, seen) = handshake(client, tls.addr).unwrap();
    assert_eq!(
        seen,
        r.cert.serial_hex(),
        "first handshake after the rotation"
    );
    assert_ne!(seen, first.serial_hex());
    // The CSR of the new certificate was sent with the one it replaces (mTLS).
    assert_eq!(rig.csr_of(&r.cert).spec.username.as_deref(), Some(NODE));
    m.stop();
}

/// The embedded signer, over HTTP, issues certificates a TLS peer refuses (NotBefore a year
/// ahead, CA:TRUE, none of the requested usages, a chain with a CA that did not issue the
/// leaf): each rotation attempt fails with the cause, is counted, leaves health as it was, and
/// the old certificate stays stored, current and presented in handshakes. rustls' own verifier
/// refuses the first three as issued (it searches the chain as a pool, so an extra unrelated
/// certificate alone does not bother it).
#[test]
fn flawed_certificates_from_the_signer_fail_the_rotation_and_the_served_cert_stays() {
    use certrotate::server::SignerFault;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::ServerName;

    let rig = Rig::new(start_time(), CsrApiServer::builder());
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    let m = CertificateManager::new(
        rig.serving()
            .renew_failure_counter(Arc::new(move || {
                f.fetch_add(1, Ordering::SeqCst);
            }))
            .build()
            .unwrap(),
    )
    .unwrap();
    let good = m.rotate_now().unwrap();
    assert!(m.server_healthy());
    let tls = TlsServer::start(server_config(&m, None).unwrap());
    let client = verifying_client(&rig.server.ca_pem(), &rig.clock);
    let peer = WebPkiServerVerifier::builder_with_provider(
        Arc::new(root_store(rig.server.ca_pem().as_bytes()).unwrap()),
        crypto_provider(),
    )
    .build()
    .unwrap();
    let cases = [
        (
            SignerFault::NotYetValid,
            "the leaf is not valid before",
            Some("NotValidYet"),
        ),
        (
            SignerFault::CaLeaf,
            "the leaf is a CA certificate",
            Some("CaUsedAsEndEntity"),
        ),
        (
            SignerFault::UnrequestedUsages,
            "the leaf has a key usage extension without digitalSignature",
            Some("InvalidPurpose"),
        ),
        (
            SignerFault::UnrelatedChain,
            "the leaf was not issued by chain certificate 1",
            None,
        ),
    ];
    let issued = |rig: &Rig| -> Vec<Vec<u8>> {
        rig.server
            .csrs()
            .iter()
            .filter_map(|c| c.status.as_ref()?.certificate.clone())
            .collect()
    };
    for (i, (fault, want, peer_says)) in cases.into_iter().enumerate() {
        let before = issued(&rig);
        rig.server.inject_signer(fault, 1);
        let err = m.rotate_now().unwrap_err();
        assert!(err.to_string().contains(want), "{fault:?}: {err}");
        assert_eq!(failures.load(Ordering::SeqCst), i + 1, "{fault:?}: counted");
        assert!(m.server_healthy(), "{fault:?}: health unchanged");
        assert_eq!(*m.current().unwrap(), *good, "{fault:?}: current()");
        let stored = rig.store("kubelet-server").current().unwrap().unwrap();
        assert_eq!(stored, *good, "{fault:?}: stored");
        assert_eq!(
            handshake(client.clone(), tls.addr).unwrap().0,
            good.serial_hex(),
            "{fault:?}: presented"
        );
        if let Some(peer_says) = peer_says {
            let new = issued(&rig)
                .into_iter()
                .find(|c| !before.contains(c))
                .expect("the flawed certificate");
            let chain = parse_chain_pem(&new).unwrap();
            let now = rig.clock.now().duration_since(UNIX_EPOCH).unwrap();
            let verdict = peer.verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from("localhost").unwrap(),
                &[],
                UnixTime::since_unix_epoch(now),
            );
            let verdict = format!("{verdict:?}");
            assert!(verdict.contains(peer_says), "{fault:?}: rustls: {verdict}");
        }
    }
    assert_eq!(rig.server.fault_counts().flawed_certificates, 4);
    m.stop();
}
