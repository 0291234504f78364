//! The certificate manager against a fake clock and a scripted CSR API: every scenario of
//! client-go's certificate_manager_test.go, and the field cases that concern the engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certrotate::csr::CsrError;
use certrotate::metrics::GaugeFn;
use certrotate::pki::PkiError;
use certrotate::schedule::Backoff;
use certrotate::testing::{ApiEvent, CreateStep, FakeClock, FakeCsrApi, WaitStep, api_error};
use certrotate::{
    Certificate, CertificateManager, Clock, Config, ConfigBuilder, CsrTemplate, Error,
    KeyAlgorithm, KeyUsage, Manager, MemoryStore, PrivateKey, Store,
};

const HOUR: Duration = Duration::from_secs(3600);
const BOUND: Duration = Duration::from_secs(10);
/// How long `start()` and `stop()` may take here. The target is 100 ms (DESIGN §3), and on an
/// idle machine they take under 10 ms. Neither call can be waiting on the fake clock or on a
/// hanging CSR wait (nothing advances the clock or answers the wait meanwhile, so such a call
/// would never return); a wall-clock bound adds only thread scheduling to that, which on a
/// loaded two-core machine reached 240 ms. Loose enough not to fail on scheduling, tight
/// enough to catch a call that sleeps or polls.
const PROMPT: Duration = Duration::from_secs(1);

/// 2026-01-01T00:00:00Z.
fn start_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn fixture_cert(name: &str) -> Certificate {
    Certificate::from_pem(
        &fixture(&format!("{name}.crt")),
        &fixture(&format!("{name}.key")),
    )
    .unwrap()
}

fn node_template() -> CsrTemplate {
    CsrTemplate::new("system:node:fake-node-name").with_organization("system:nodes")
}

const USAGES: [KeyUsage; 3] = [
    KeyUsage::DigitalSignature,
    KeyUsage::KeyEncipherment,
    KeyUsage::ClientAuth,
];

struct Rig {
    clock: FakeClock,
    api: Arc<FakeCsrApi>,
    store: Arc<MemoryStore>,
}

impl Rig {
    fn new() -> Rig {
        Rig::with_store(MemoryStore::new())
    }

    fn with_store(store: MemoryStore) -> Rig {
        let clock = FakeClock::new(start_time());
        let api = FakeCsrApi::new(Arc::new(clock.clone()), 100 * HOUR);
        Rig {
            clock,
            api,
            store: Arc::new(store),
        }
    }

    fn builder(&self) -> ConfigBuilder {
        Config::builder()
            .template(node_template())
            .usages(USAGES)
            .signer_name("kubernetes.io/kube-apiserver-client")
            .store(self.store.clone() as Arc<dyn Store>)
            .clock(Arc::new(self.clock.clone()))
            .client_factory(self.api.factory())
            .rng_seed(1)
    }

    fn manager(&self) -> CertificateManager {
        CertificateManager::new(self.builder().build().unwrap()).unwrap()
    }

    /// A certificate for `template` from the fake API's CA, valid `nb`..`na` from start.
    fn cert(&self, template: &CsrTemplate, nb: i64, na: i64) -> Certificate {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let at = |s: i64| {
            if s >= 0 {
                start_time() + Duration::from_secs(s as u64)
            } else {
                start_time() - Duration::from_secs((-s) as u64)
            }
        };
        self.api
            .ca()
            .issue(template, &key, &USAGES, at(nb), at(na))
            .unwrap()
    }

    fn wait_created(&self) -> String {
        match self
            .api
            .wait_for(BOUND, |e| matches!(e, ApiEvent::Created(Ok(_))))
        {
            Some(ApiEvent::Created(Ok(name))) => name,
            other => panic!("no CSR created within {BOUND:?}: {other:?}"),
        }
    }

    fn wait_event(&self, what: &str, pred: impl Fn(&ApiEvent) -> bool) -> ApiEvent {
        self.api
            .wait_for(BOUND, pred)
            .unwrap_or_else(|| panic!("no {what} within {BOUND:?}"))
    }

    /// Waits until `n` timers are pending (the manager's threads are asleep).
    fn asleep(&self, n: usize) {
        assert!(
            self.clock.wait_for_waiters(n, BOUND),
            "threads did not go to sleep ({n} timers)"
        );
    }
}

fn same(a: Option<Arc<Certificate>>, b: &Certificate) -> bool {
    a.is_some_and(|a| *a == *b)
}

/// Records every value a metric hook sees.
#[derive(Default)]
struct Recorded(parking_lot::Mutex<Vec<f64>>);

impl Recorded {
    fn values(&self) -> Vec<f64> {
        self.0.lock().clone()
    }
}

fn counter() -> (Arc<AtomicUsize>, Arc<dyn certrotate::metrics::Counter>) {
    let n = Arc::new(AtomicUsize::new(0));
    let m = n.clone();
    (
        n,
        Arc::new(move || {
            m.fetch_add(1, Ordering::SeqCst);
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// client-go certificate_manager_test.go
// ---------------------------------------------------------------------------------------------

#[test]
fn new_manager_no_rotation() {
    // Store has a cert, empty template, usages present but empty, no client: construction works.
    let store = fixture_cert("store");
    let rig = Rig::with_store(MemoryStore::with_certificate(store.clone()));
    let config = Config::builder()
        .template(CsrTemplate::default())
        .usages([])
        .store(rig.store.clone() as Arc<dyn Store>)
        .clock(Arc::new(rig.clock.clone()))
        .build()
        .unwrap();
    let m = CertificateManager::new(config).unwrap();
    assert!(same(m.current(), &store));
    m.start(); // no client: nothing runs
    assert_eq!(rig.clock.waiters(), 0);
    assert_eq!(
        m.rotate_now().unwrap_err().to_string(),
        Error::NoClient.to_string()
    );
}

#[test]
fn config_requires_usages_and_a_lifetime_the_api_accepts() {
    let cases: [(&str, ConfigBuilder, &str); 5] = [
        (
            "no usages",
            Config::builder(),
            "either usages_fn or usages should be specified",
        ),
        (
            "both usages",
            Config::builder().usages([]).usages_fn(|_| vec![]),
            "cannot specify both usages_fn and usages",
        ),
        (
            "lifetime under 600 s",
            Config::builder()
                .usages([])
                .requested_lifetime(Duration::from_secs(599)),
            "below the CSR API minimum of 600 seconds",
        ),
        (
            "zero poll interval",
            Config::builder()
                .usages([])
                .template_poll_interval(Some(Duration::ZERO)),
            "poll interval must not be zero",
        ),
        (
            "zero wait timeout",
            Config::builder()
                .usages([])
                .certificate_wait_timeout(Duration::ZERO),
            "wait timeout",
        ),
    ];
    for (name, builder, want) in cases {
        let err = builder.build().unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { .. }), "{name}: {err}");
        assert!(err.to_string().contains(want), "{name}: {err}");
    }
    Config::builder()
        .usages([])
        .requested_lifetime(Duration::from_secs(600))
        .build()
        .unwrap();
}

#[test]
fn name_defaults_like_client_go() {
    let name = |b: ConfigBuilder| {
        CertificateManager::new(b.build().unwrap())
            .unwrap()
            .name()
            .to_owned()
    };
    assert_eq!(
        name(Config::builder().usages([]).name("kubelet-serving")),
        "kubelet-serving"
    );
    assert_eq!(
        name(Config::builder().usages([]).signer_name("example.com/s")),
        "example.com/s"
    );
    assert_eq!(
        name(Config::builder().usages([KeyUsage::ClientAuth])),
        "client auth"
    );
    assert_eq!(
        name(Config::builder().usages([KeyUsage::ServerAuth])),
        "certificate"
    );
}

#[test]
fn cert_satisfies_template() {
    let rig = Rig::new();
    let ip = |s: &str| s.parse().unwrap();
    let cert_t = CsrTemplate::new("system:node:n")
        .with_organization("system:nodes")
        .with_organization("extra")
        .with_dns_name("n")
        .with_dns_name("n.example.com")
        .with_ip_address(ip("10.0.0.1"))
        .with_ip_address(ip("10.0.0.2"));
    let cert = rig.cert(&cert_t, 0, 3600);
    let base = || {
        CsrTemplate::new("system:node:n")
            .with_organization("system:nodes")
            .with_dns_name("n")
            .with_ip_address(ip("10.0.0.1"))
    };
    let cases: Vec<(&str, Option<&Certificate>, Option<CsrTemplate>, bool)> = vec![
        ("No certificate, no template", None, None, false),
        ("No certificate", None, Some(base()), false),
        ("No template", Some(&cert), None, true),
        (
            "Mismatched common name",
            Some(&cert),
            Some(CsrTemplate {
                common_name: "other".into(),
                ..base()
            }),
            false,
        ),
        (
            "Missing orgs in certificate",
            Some(&cert),
            Some(base().with_organization("absent")),
            false,
        ),
        ("Extra orgs in certificate", Some(&cert), Some(base()), true),
        (
            "Missing DNS names in certificate",
            Some(&cert),
            Some(base().with_dns_name("absent")),
            false,
        ),
        (
            "Extra DNS names in certificate",
            Some(&cert),
            Some(base()),
            true,
        ),
        (
            "Missing IP addresses in certificate",
            Some(&cert),
            Some(base().with_ip_address(ip("10.9.9.9"))),
            false,
        ),
        (
            "Extra IP addresses in certificate",
            Some(&cert),
            Some(base()),
            true,
        ),
        (
            "Matching certificate",
            Some(&cert),
            Some(cert_t.clone()),
            true,
        ),
        (
            "IPv4-mapped IPv6 equals IPv4",
            Some(&cert),
            Some(base().with_ip_address(ip("::ffff:10.0.0.2"))),
            true,
        ),
    ];
    for (name, cert, template, want) in cases {
        let got = certrotate::pki::cert_satisfies_template(cert, template.as_ref());
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn rotate_cert_create_csr_error() {
    let rig = Rig::with_store(MemoryStore::with_certificate(fixture_cert("expired")));
    let (failures, c) = counter();
    let m = CertificateManager::new(
        rig.builder()
            .template(CsrTemplate::default())
            .renew_failure_counter(c)
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(m.current().is_none(), "an expired store cert is not served");
    rig.api
        .script_create(CreateStep::Fail(api_error(500, "InternalError", true)));
    let err = m.rotate_now().unwrap_err();
    assert!(matches!(err, Error::Csr(CsrError::Api { .. })), "{err}");
    assert_eq!(failures.load(Ordering::SeqCst), 1);
    assert_eq!(rig.store.updates(), 0);
}

#[test]
fn rotate_cert_waiting_for_result_error() {
    let rig = Rig::with_store(MemoryStore::with_certificate(fixture_cert("expired")));
    let (failures, c) = counter();
    let m = CertificateManager::new(
        rig.builder()
            .template(CsrTemplate::default())
            .certificate_wait_timeout(Duration::from_millis(1))
            .renew_failure_counter(c)
            .build()
            .unwrap(),
    )
    .unwrap();
    rig.api
        .script_wait(WaitStep::Fail(CsrError::InvalidResponse {
            op: "watch",
            message: "watch error".into(),
        }));
    let err = m.rotate_now().unwrap_err();
    assert!(err.to_string().contains("watch error"), "{err}");
    assert_eq!(failures.load(Ordering::SeqCst), 1);
    assert_eq!(rig.store.updates(), 0);
}

#[test]
fn new_manager_bootstrap() {
    let rig = Rig::new();
    let boot = fixture_cert("bootstrap");
    let m = CertificateManager::new(
        rig.builder()
            .bootstrap(fixture("bootstrap.crt"), fixture("bootstrap.key"))
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(same(m.current(), &boot), "bootstrap cert is current");
    assert_eq!(
        rig.store.updates(),
        1,
        "bootstrap pair written to the store"
    );
    // Rotation is forced: starting rotates at once, with no time passing.
    let rotations = m.subscribe();
    m.start();
    let new = rotations.recv_timeout(BOUND).expect("forced rotation");
    assert_ne!(*new, boot);
    match rig.wait_event("client built", |e| matches!(e, ApiEvent::ClientBuilt(_))) {
        ApiEvent::ClientBuilt(serial) => assert_eq!(
            serial,
            Some(boot.serial_hex()),
            "factory got the bootstrap cert"
        ),
        e => panic!("{e:?}"),
    }
}

#[test]
fn new_manager_no_bootstrap() {
    // A valid store cert wins over the bootstrap pair; no forced rotation.
    let rig = Rig::new();
    let stored = rig.cert(&node_template(), 0, 100 * 3600);
    rig.store
        .update(stored.cert_pem().as_bytes(), stored.key_pem().as_bytes())
        .unwrap();
    let m = CertificateManager::new(
        rig.builder()
            .bootstrap(fixture("bootstrap.crt"), fixture("bootstrap.key"))
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(same(m.current(), &stored));
    m.start();
    rig.asleep(1);
    assert_eq!(rig.api.created(), 0, "no forced rotation");
    assert!(rig.clock.next_timer_in().unwrap() <= Duration::from_secs(60));
}

#[test]
fn get_current_certificate_or_bootstrap() {
    // "return cert from store"
    let rig = Rig::with_store(MemoryStore::with_certificate(fixture_cert("store")));
    let m = CertificateManager::new(rig.builder().build().unwrap()).unwrap();
    assert!(same(m.current(), &fixture_cert("store")));
    // "no cert in store and no bootstrap cert": none, and rotation forced.
    let rig = Rig::new();
    let m = rig.manager();
    assert!(m.current().is_none());
    m.start();
    rig.wait_created();
}

/// client-go TestInitializeCertificateSigningRequestClient and TestInitializeOtherRESTClients:
/// the certificate before and after starting, with and without a signer name.
#[test]
fn initialize_csr_client_cases() {
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum C {
        None,
        Bootstrap,
        Store,
        Api,
    }
    let cases = [
        (
            "No current certificate, no bootstrap certificate",
            false,
            false,
            false,
            C::None,
            C::Api,
        ),
        (
            "No current certificate, bootstrap certificate",
            false,
            false,
            true,
            C::Bootstrap,
            C::Api,
        ),
        (
            "Current certificate, no bootstrap certificate",
            true,
            false,
            false,
            C::Store,
            C::Store,
        ),
        (
            "Current certificate, bootstrap certificate",
            true,
            false,
            true,
            C::Store,
            C::Store,
        ),
        (
            "Current certificate expired, no bootstrap certificate",
            false,
            true,
            false,
            C::None,
            C::Api,
        ),
    ];
    for signer in ["kubernetes.io/kube-apiserver-client", ""] {
        for (name, store_cert, expired, bootstrap, before, after) in cases {
            let name = format!("{name} (signer {signer:?})");
            let store = match (store_cert, expired) {
                (true, _) => MemoryStore::with_certificate(fixture_cert("store")),
                (_, true) => MemoryStore::with_certificate(fixture_cert("expired")),
                _ => MemoryStore::new(),
            };
            let rig = Rig::with_store(store);
            // The template matches the store fixture, so only construction decides whether a
            // rotation is forced (upstream calls rotateCerts only when forceRotation is set).
            let mut b = rig
                .builder()
                .signer_name(signer)
                .allow_legacy_v1beta1(true) // client-go's cases include no signer name
                .template(CsrTemplate::new("test-certificate-0"));
            if bootstrap {
                b = b.bootstrap(fixture("bootstrap.crt"), fixture("bootstrap.key"));
            }
            let m = CertificateManager::new(b.build().unwrap()).unwrap();
            let kind = |c: Option<Arc<Certificate>>| match c {
                None => C::None,
                Some(c) if *c == fixture_cert("bootstrap") => C::Bootstrap,
                Some(c) if *c == fixture_cert("store") => C::Store,
                Some(_) => C::Api,
            };
            assert_eq!(kind(m.current()), before, "{name}: before");
            let rotations = m.subscribe();
            m.start();
            if after == C::Api {
                rotations
                    .recv_timeout(BOUND)
                    .unwrap_or_else(|_| panic!("{name}: no rotation"));
                assert_eq!(rig.api.requests()[0].1.signer_name, signer, "{name}");
            } else {
                rig.asleep(1);
                assert_eq!(rig.api.created(), 0, "{name}: no CSR");
            }
            assert_eq!(kind(m.current()), after, "{name}: after");
            m.stop();
        }
    }
}

/// client-go TestServerHealth, plus 403 and a transport error (CASES C4).
#[test]
fn server_health() {
    let transport = || CsrError::Transport {
        op: "create",
        request: "POST https://127.0.0.1:1/apis/certificates.k8s.io/v1/certificatesigningrequests"
            .into(),
        source: "connection refused".into(),
    };
    let cases: Vec<(&str, Option<CsrError>, bool)> = vec![
        ("Current certificate, bootstrap certificate", None, true),
        (
            "Generic error on create",
            Some(CsrError::InvalidResponse {
                op: "create",
                message: "create error".into(),
            }),
            false,
        ),
        (
            "Unauthorized error on create",
            Some(api_error(401, "Unauthorized", true)),
            true,
        ),
        (
            "Generic unauthorized error on create",
            Some(api_error(401, "Unauthorized", false)),
            true,
        ),
        (
            "Generic not found error on create",
            Some(api_error(404, "NotFound", false)),
            false,
        ),
        (
            "Not found error on create",
            Some(api_error(404, "NotFound", true)),
            true,
        ),
        (
            "Forbidden error on create",
            Some(api_error(403, "Forbidden", true)),
            true,
        ),
        (
            "Internal error from a load balancer",
            Some(api_error(503, "ServiceUnavailable", false)),
            false,
        ),
        ("Transport error on create", Some(transport()), false),
    ];
    for (name, err, healthy) in cases {
        let store = fixture_cert("store");
        let rig = Rig::with_store(MemoryStore::with_certificate(store.clone()));
        let m = CertificateManager::new(
            rig.builder()
                .bootstrap(fixture("bootstrap.crt"), fixture("bootstrap.key"))
                .build()
                .unwrap(),
        )
        .unwrap();
        assert!(!m.server_healthy(), "{name}: starts unhealthy");
        let fails = err.is_some();
        if let Some(e) = err {
            rig.api.script_create(CreateStep::Fail(e));
        }
        let result = m.rotate_now();
        assert_eq!(result.is_err(), fails, "{name}: {result:?}");
        assert_eq!(m.server_healthy(), healthy, "{name}");
        assert_eq!(same(m.current(), &store), fails, "{name}: cert after");
    }
}

#[test]
fn rotation_logs_duration() {
    let rig = Rig::new();
    let old = rig.cert(&node_template(), -7200, 100 * 3600);
    rig.store
        .update(old.cert_pem().as_bytes(), old.key_pem().as_bytes())
        .unwrap();
    let hist = Arc::new(Recorded::default());
    let h = hist.clone();
    let m = CertificateManager::new(
        rig.builder()
            .rotation_histogram(Arc::new(move |v: f64| h.0.lock().push(v)))
            .build()
            .unwrap(),
    )
    .unwrap();
    m.rotate_now().unwrap();
    assert_eq!(hist.values(), vec![7200.0]);
}

#[test]
fn stop() {
    let rig = Rig::new();
    let m = CertificateManager::new(
        rig.builder()
            .template_fn(|| Some(node_template()))
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(m.current().is_none());
    let rotations = m.subscribe();
    m.start();
    rotations.recv_timeout(BOUND).expect("a cert while running");
    assert!(m.current().is_some());
    let t = std::time::Instant::now();
    m.stop();
    assert!(t.elapsed() < PROMPT, "stop took {:?}", t.elapsed());
    assert_eq!(rig.clock.waiters(), 0, "both threads gone");
    m.stop(); // idempotent
}

#[test]
fn context_logs_rotating_certificates() {
    logs::install();
    let rig = Rig::new();
    let m = CertificateManager::new(
        rig.builder()
            .signer_name("")
            .allow_legacy_v1beta1(true)
            .name("certificate")
            .build()
            .unwrap(),
    )
    .unwrap();
    let rotations = m.subscribe();
    m.start();
    rotations.recv_timeout(BOUND).unwrap();
    m.stop();
    let lines = logs::lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("certificate: Rotating certificates")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("PRIVATE KEY")),
        "no key material in logs"
    );
}

/// client-go TestGenerateKeyConfig.
#[test]
fn generate_key_config() {
    let rig = Rig::new();
    // nil generator: the default EC P-256 key.
    let m = rig.manager();
    m.rotate_now().unwrap();
    let (_, req) = rig.api.requests().pop().unwrap();
    let csr = certrotate::pki::parse_csr_pem(req.csr_pem.as_bytes()).unwrap();
    assert_eq!(
        PrivateKey::from_pem(m.current().unwrap().key_pem().as_bytes())
            .unwrap()
            .algorithm(),
        KeyAlgorithm::EcdsaP256
    );
    assert_eq!(csr.public_key_der, req.public_key_der);

    // custom EC and RSA keys: the very key is used.
    for (name, key) in [
        (
            "returns custom EC key (key2)",
            PrivateKey::generate(KeyAlgorithm::EcdsaP384).unwrap(),
        ),
        (
            "returns custom RSA key",
            PrivateKey::from_pem(&fixture("two-certs.key")).unwrap(),
        ),
    ] {
        let rig = Rig::new();
        let k = key.clone();
        let m = CertificateManager::new(
            rig.builder()
                .generate_key(move || Ok(k.clone()))
                .build()
                .unwrap(),
        )
        .unwrap();
        let cert = m.rotate_now().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            cert.private_key().public_key_der(),
            key.public_key_der(),
            "{name}"
        );
    }

    // simulate parsing error: the error wraps the generator's.
    let rig = Rig::new();
    let m = CertificateManager::new(
        rig.builder()
            .generate_key(|| Err("parsing error".into()))
            .build()
            .unwrap(),
    )
    .unwrap();
    let err = m.rotate_now().unwrap_err();
    assert!(matches!(err, Error::KeyGeneration(_)), "{err}");
    assert_eq!(
        chain(&err),
        "unable to generate a new private key: parsing error"
    );

    // a weak key from a generator is refused before any CSR.
    let rig = Rig::new();
    let m = CertificateManager::new(
        rig.builder()
            .generate_key(|| Ok(PrivateKey::from_pem(&fixture("rsa1024.key")).unwrap()))
            .build()
            .unwrap(),
    )
    .unwrap();
    let err = m.rotate_now().unwrap_err();
    assert!(matches!(err, Error::Pki(PkiError::InsecureKey(_))), "{err}");
    assert_eq!(rig.api.created(), 0);
}

#[test]
fn usages_follow_the_key_algorithm() {
    let rig = Rig::new();
    let usages = |alg: KeyAlgorithm| {
        let mut u = vec![KeyUsage::DigitalSignature];
        if alg.is_rsa() {
            u.push(KeyUsage::KeyEncipherment);
        }
        u.push(KeyUsage::ClientAuth);
        u
    };
    let rsa = PrivateKey::from_pem(&fixture("two-certs.key")).unwrap();
    for (gen_rsa, want) in [
        (
            false,
            vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth],
        ),
        (
            true,
            vec![
                KeyUsage::DigitalSignature,
                KeyUsage::KeyEncipherment,
                KeyUsage::ClientAuth,
            ],
        ),
    ] {
        let r = rsa.clone();
        let mut b = Config::builder()
            .template(node_template())
            .usages_fn(usages)
            .signer_name("kubernetes.io/kube-apiserver-client")
            .store(rig.store.clone() as Arc<dyn Store>)
            .clock(Arc::new(rig.clock.clone()))
            .client_factory(rig.api.factory());
        if gen_rsa {
            b = b.generate_key(move || Ok(r.clone()));
        }
        let m = CertificateManager::new(b.build().unwrap()).unwrap();
        m.rotate_now().unwrap();
        assert_eq!(
            rig.api.requests().last().unwrap().1.usages,
            want,
            "rsa={gen_rsa}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Time, lifecycle and bad input
// ---------------------------------------------------------------------------------------------

/// CASES C5: the wall clock jumps past the deadline while the thread sleeps on a monotonic
/// timer; the attempt starts within one sleep slice, and an expired cert is hidden at once.
#[test]
fn c5_wall_clock_jump_is_noticed_within_one_slice() {
    let rig = Rig::new();
    let cert = rig.cert(&node_template(), 0, 100 * 3600);
    rig.store
        .update(cert.cert_pem().as_bytes(), cert.key_pem().as_bytes())
        .unwrap();
    rig.api.script_wait(WaitStep::Hang);
    let m = rig.manager();
    m.start();
    rig.asleep(1);
    rig.clock.set(start_time() + 95 * HOUR); // past any deadline, before NotAfter
    assert!(same(m.current(), &cert));
    assert_eq!(
        rig.api.created(),
        0,
        "the sleeping thread has not noticed yet"
    );
    let moved = rig.clock.advance_to_next_timer().unwrap();
    assert!(moved <= Duration::from_secs(60), "woke after {moved:?}");
    rig.wait_created();
    // Past NotAfter: hidden at once, even though nothing rotated.
    rig.clock.set(cert.not_after() + Duration::from_secs(1));
    assert!(m.current().is_none());
    assert!(
        !rustls::client::ResolvesClientCert::has_certs(&*m.resolver()),
        "the resolver offers nothing either"
    );
    m.stop();
}

#[test]
fn c2_start_returns_at_once_and_a_past_deadline_rotates_now() {
    let rig = Rig::new();
    // Issued long ago: its whole window [70 %, 90 %) is in the past, NotAfter still ahead.
    let cert = rig.cert(&node_template(), -95 * 3600, 5 * 3600);
    rig.store
        .update(cert.cert_pem().as_bytes(), cert.key_pem().as_bytes())
        .unwrap();
    for _ in 0..3 {
        rig.api.script_wait(WaitStep::Hang); // an API that never approves
    }
    let m = rig.manager();
    assert!(
        same(m.current(), &cert),
        "usable straight after construction"
    );
    let t = std::time::Instant::now();
    m.start();
    assert!(t.elapsed() < PROMPT, "start blocked for {:?}", t.elapsed());
    rig.wait_created();
    m.stop();
}

#[test]
fn stop_is_prompt_in_every_state_and_nothing_is_written_after() {
    // Sleeping.
    let rig = Rig::new();
    let cert = rig.cert(&node_template(), 0, 100 * 3600);
    rig.store
        .update(cert.cert_pem().as_bytes(), cert.key_pem().as_bytes())
        .unwrap();
    let m = rig.manager();
    m.start();
    rig.asleep(1);
    let t = std::time::Instant::now();
    m.stop();
    assert!(t.elapsed() < PROMPT, "sleeping: {:?}", t.elapsed());

    // Backing off.
    let rig = Rig::new();
    rig.api
        .script_create(CreateStep::Fail(api_error(500, "InternalError", true)));
    let m = rig.manager();
    m.start();
    rig.wait_event("failed create", |e| matches!(e, ApiEvent::Created(Err(_))));
    rig.asleep(1);
    let t = std::time::Instant::now();
    m.stop();
    assert!(t.elapsed() < PROMPT, "backing off: {:?}", t.elapsed());

    // A CSR wait in flight; the API answers after stop: nothing is written or served.
    let rig = Rig::new();
    rig.api.script_wait(WaitStep::Hang);
    let m = rig.manager();
    m.start();
    rig.wait_event("wait start", |e| matches!(e, ApiEvent::WaitStarted(_)));
    let t = std::time::Instant::now();
    m.stop();
    assert!(t.elapsed() < PROMPT, "waiting: {:?}", t.elapsed());
    rig.wait_event("wait end", |e| matches!(e, ApiEvent::WaitEnded(Err(_))));
    assert_eq!(rig.store.updates(), 0);
    assert!(m.current().is_none());
    assert!(matches!(m.rotate_now(), Err(Error::Stopped)));
    assert_eq!(rig.store.updates(), 0);
    m.stop();
}

/// `start()` after `stop()` starts again (client-go does not support it; here it is defined).
#[test]
fn start_after_stop_resumes_rotation() {
    let rig = Rig::new();
    rig.api.script_wait(WaitStep::Hang);
    let m = rig.manager();
    let rotations = m.subscribe();
    m.start();
    rig.wait_event("wait start", |e| matches!(e, ApiEvent::WaitStarted(_)));
    m.stop();
    assert!(m.current().is_none());
    m.start();
    rotations
        .recv_timeout(BOUND)
        .expect("rotation after restart");
    // The CSR created before the stop is still pending and its key is in memory: the restart
    // waits for it again instead of creating another.
    assert_eq!(rig.api.created(), 1);
    m.stop();
}

#[test]
fn bad_issued_chains_are_rejected_and_the_old_cert_kept() {
    let ip = "10.0.0.9".parse().unwrap();
    let template = node_template().with_ip_address(ip);
    type Make = certrotate::testing::Responder;
    let for_key = |t: CsrTemplate, key: PrivateKey, nb: SystemTime, na: SystemTime| -> Make {
        Box::new(move |req, ca| {
            ca.issue_pem(&t, &key, &req.usages, nb, na)
                .unwrap()
                .into_bytes()
        })
    };
    let now = start_time();
    let cases: Vec<(&str, Make, &str)> = vec![
        (
            "chain for another key",
            for_key(
                template.clone(),
                PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap(),
                now,
                now + HOUR,
            ),
            "different key",
        ),
        (
            "expired chain",
            Box::new(move |req, ca| {
                let parsed = certrotate::pki::parse_csr_pem(req.csr_pem.as_bytes()).unwrap();
                ca.sign_csr(&parsed, &req.usages, now - 2 * HOUR, now - HOUR)
                    .unwrap()
                    .into_bytes()
            }),
            "expired",
        ),
        (
            "garbage PEM",
            Box::new(|_, _| {
                b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".to_vec()
            }),
            "PEM",
        ),
        (
            "chain missing a requested SAN",
            Box::new(move |req, ca| {
                let mut parsed = certrotate::pki::parse_csr_pem(req.csr_pem.as_bytes()).unwrap();
                parsed.san_der = None;
                ca.sign_csr(&parsed, &req.usages, now, now + HOUR)
                    .unwrap()
                    .into_bytes()
            }),
            "missing IP address 10.0.0.9",
        ),
    ];
    for (name, make, want) in cases {
        let rig = Rig::new();
        let old = rig.cert(&template, -3600, 1000 * 3600);
        rig.store
            .update(old.cert_pem().as_bytes(), old.key_pem().as_bytes())
            .unwrap();
        let (failures, c) = counter();
        let m = CertificateManager::new(
            rig.builder()
                .template(template.clone())
                .renew_failure_counter(c)
                .build()
                .unwrap(),
        )
        .unwrap();
        rig.api.script_wait(WaitStep::Respond(make));
        let err = m.rotate_now().unwrap_err();
        assert!(err.to_string().contains(want), "{name}: {err}");
        assert_eq!(failures.load(Ordering::SeqCst), 1, "{name}");
        assert!(same(m.current(), &old), "{name}: old cert still served");
        assert_eq!(rig.store.updates(), 1, "{name}: nothing stored");
    }
}

/// A leaf for the CSR of `req`, signed by the fake API's CA with rcgen (not with this crate's
/// certificate writer), as the request asks except for what `tweak` changes; with `chain`'s
/// certificates after it.
fn rcgen_leaf(
    req: &certrotate::csr::CsrRequest,
    ca: &certrotate::pki::CertificateAuthority,
    tweak: impl FnOnce(&mut rcgen::CertificateParams),
) -> Vec<u8> {
    let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca.cert_der().to_vec().into(), ca_key).unwrap();
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(&req.csr_pem).unwrap();
    let p = &mut csr.params;
    p.not_before = offset(start_time() - Duration::from_secs(300));
    p.not_after = offset(start_time() + HOUR);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    tweak(p);
    csr.signed_by(&issuer).unwrap().pem().into_bytes()
}

fn offset(t: SystemTime) -> time::OffsetDateTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap()
}

/// An intermediate CA under the fake API's CA (rcgen), as (params, key, PEM).
fn intermediate(
    ca: &certrotate::pki::CertificateAuthority,
) -> (rcgen::CertificateParams, rcgen::KeyPair, String) {
    let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca.cert_der().to_vec().into(), ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "intermediate");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    p.not_before = offset(start_time() - HOUR);
    p.not_after = offset(start_time() + 1000 * HOUR);
    let pem = p.signed_by(&key, &issuer).unwrap().pem();
    (p, key, pem)
}

/// A chain a TLS peer refuses is a failed attempt: `rotate_now` fails naming the cause, the
/// failure counter counts it, health stays as it was, nothing is stored, and `current()` and
/// the rotation deadline stay on the old certificate.
#[test]
fn issued_chains_a_tls_peer_refuses_fail_the_attempt_and_keep_the_old_cert() {
    type Make = certrotate::testing::Responder;
    let year = 365 * 24 * HOUR;
    let cases: Vec<(&str, Make, &str)> = vec![
        (
            "NotBefore a year ahead",
            Box::new(move |req, ca| {
                rcgen_leaf(req, ca, |p| {
                    p.not_before = offset(start_time() + year);
                    p.not_after = offset(start_time() + year + HOUR);
                })
            }),
            "the leaf is not valid before 2027-01-01T00:00:00Z",
        ),
        (
            "client certificate without client auth",
            Box::new(|req, ca| {
                rcgen_leaf(req, ca, |p| {
                    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]
                })
            }),
            "without \"client auth\"",
        ),
        (
            "key usage without the requested key encipherment",
            Box::new(|req, ca| {
                rcgen_leaf(req, ca, |p| {
                    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature]
                })
            }),
            "key usage extension without keyEncipherment",
        ),
        (
            "leaf with CA:TRUE",
            Box::new(|req, ca| {
                rcgen_leaf(req, ca, |p| {
                    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
                })
            }),
            "the leaf is a CA certificate",
        ),
        (
            "chain in the wrong order",
            Box::new(|req, ca| {
                let (ip, ikey, ipem) = intermediate(ca);
                let issuer = rcgen::Issuer::from_params(&ip, &ikey);
                let mut csr =
                    rcgen::CertificateSigningRequestParams::from_pem(&req.csr_pem).unwrap();
                csr.params.not_before = offset(start_time() - HOUR);
                csr.params.not_after = offset(start_time() + HOUR);
                let leaf = csr.signed_by(&issuer).unwrap().pem();
                format!("{leaf}{}{ipem}", ca.cert_pem()).into_bytes()
            }),
            "the leaf was not issued by chain certificate 1",
        ),
    ];
    for (name, make, want) in cases {
        let rig = Rig::new();
        let (failures, c) = counter();
        let m = CertificateManager::new(rig.builder().renew_failure_counter(c).build().unwrap())
            .unwrap();
        let good = m.rotate_now().unwrap();
        assert!(m.server_healthy());
        let deadline = m.rotation_deadline();
        rig.api.script_wait(WaitStep::Respond(make));
        let err = m.rotate_now().unwrap_err();
        assert!(
            matches!(err, Error::Pki(PkiError::IssuedCertificate { .. }))
                && err.to_string().contains(want),
            "{name}: {err}"
        );
        assert_eq!(failures.load(Ordering::SeqCst), 1, "{name}: counted");
        assert!(m.server_healthy(), "{name}: health unchanged");
        assert!(same(m.current(), &good), "{name}: old cert still served");
        assert_eq!(
            m.rotation_deadline(),
            deadline,
            "{name}: deadline unchanged"
        );
        assert_eq!(rig.store.updates(), 1, "{name}: nothing stored");
    }
}

/// The rotation thread treats a refused chain as any failed attempt: it backs off (2 s, +10 %)
/// and asks again, and nothing is served meanwhile.
#[test]
fn a_refused_chain_is_retried_after_backoff_by_the_rotation_thread() {
    let rig = Rig::new();
    let (failed_tx, failed) = crossbeam_channel::unbounded();
    let m = CertificateManager::new(
        rig.builder()
            .renew_failure_counter(Arc::new(move || {
                let _ = failed_tx.send(());
            }))
            .build()
            .unwrap(),
    )
    .unwrap();
    rig.api.script_wait(WaitStep::Respond(Box::new(|req, ca| {
        rcgen_leaf(req, ca, |p| {
            p.not_before = offset(start_time() + 365 * 24 * HOUR);
            p.not_after = offset(start_time() + 366 * 24 * HOUR);
        })
    })));
    let issued = m.subscribe();
    m.start();
    failed.recv_timeout(BOUND).expect("the attempt fails");
    rig.asleep(1);
    assert!(
        m.current().is_none(),
        "the refused certificate is not served"
    );
    let backoff = rig.clock.next_timer_in().unwrap();
    assert!(
        backoff >= Duration::from_secs(2) && backoff < Duration::from_secs(4),
        "{backoff:?}"
    );
    assert_eq!(rig.api.created(), 1);
    rig.clock.advance_to_next_timer();
    let cert = issued
        .recv_timeout(BOUND)
        .expect("the second attempt succeeds");
    assert!(failed.try_recv().is_err(), "one failure only");
    assert_eq!(rig.api.created(), 2);
    assert!(same(m.current(), &cert));
    m.stop();
}

/// A stored certificate a TLS peer refuses is treated as an expired one: not served, and a CSR
/// goes out at once. Missing a usage the configuration now asks for counts too.
#[test]
fn stored_certificate_a_peer_refuses_is_not_served_and_replaced_at_once() {
    let year = 365 * 24 * 3600;
    let rig = Rig::new();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let issue = |usages: &[KeyUsage], nb: SystemTime| {
        rig.api
            .ca()
            .issue(&node_template(), &key, usages, nb, nb + 1000 * HOUR)
            .unwrap()
    };
    let cases = [
        (
            "NotBefore a year ahead",
            issue(&USAGES, start_time() + Duration::from_secs(year)),
        ),
        (
            "no client auth although the configuration asks for it",
            issue(
                &[
                    KeyUsage::DigitalSignature,
                    KeyUsage::KeyEncipherment,
                    KeyUsage::ServerAuth,
                ],
                start_time() - HOUR,
            ),
        ),
        (
            "X.509 v1",
            Certificate::from_pem(&fixture("v1-store.crt"), &fixture("store.key")).unwrap(),
        ),
    ];
    for (name, stored) in cases {
        let rig = Rig::with_store(MemoryStore::with_certificate(stored));
        let m = rig.manager();
        assert!(m.current().is_none(), "{name}: not served");
        let issued = m.subscribe();
        m.start();
        let new = issued.recv_timeout(BOUND).expect("replaced at once");
        assert!(same(m.current(), &new), "{name}: replaced");
        m.stop();
    }
    // The same certificate within the allowance is served.
    let ok = issue(&USAGES, start_time() + Duration::from_secs(240));
    let rig = Rig::with_store(MemoryStore::with_certificate(ok.clone()));
    assert!(same(rig.manager().current(), &ok));
}

/// `current()` hides a certificate while the wall clock is more than the allowance before its
/// NotBefore (after a step back), shows it again after, and the rotation thread rotates at once
/// instead of computing a deadline from it.
#[test]
fn current_hides_a_certificate_not_valid_yet_after_the_clock_steps_back() {
    let rig = Rig::new();
    let cert = rig.cert(&node_template(), -3600, 1000 * 3600);
    rig.store
        .update(cert.cert_pem().as_bytes(), cert.key_pem().as_bytes())
        .unwrap();
    use rustls::client::ResolvesClientCert;
    let m = rig.manager();
    let resolver = m.resolver();
    assert!(same(m.current(), &cert));
    assert!(resolver.has_certs());
    let nb = cert.not_before();
    rig.clock.set(nb - Duration::from_secs(240));
    assert!(same(m.current(), &cert), "within the allowance");
    assert!(resolver.has_certs(), "the resolver: within the allowance");
    rig.clock.set(nb - Duration::from_secs(301));
    assert!(
        m.current().is_none(),
        "more than the allowance before NotBefore"
    );
    assert!(
        !resolver.has_certs(),
        "the resolver offers nothing more than the allowance before NotBefore"
    );
    rig.clock.set(nb - 24 * HOUR);
    assert!(m.current().is_none());
    assert!(!resolver.has_certs());
    let issued = m.subscribe();
    m.start();
    let new = issued.recv_timeout(BOUND).expect("rotated at once");
    assert!(same(m.current(), &new));
    assert!(new.not_before() <= rig.clock.now());
    m.stop();
}

// ---------------------------------------------------------------------------------------------
// Idle cost, counted on the fake clock
// ---------------------------------------------------------------------------------------------

/// Runs the fake clock forward `span`, one timer at a time, waiting each time until `sleepers`
/// timers are pending again. Returns the number of timers made meanwhile (wake-ups).
fn simulate(rig: &Rig, sleepers: usize, span: Duration) -> u64 {
    rig.asleep(sleepers);
    let before = rig.clock.timers_created();
    let mut elapsed = Duration::ZERO;
    while elapsed < span {
        elapsed += rig.clock.advance_to_next_timer().expect("a pending timer");
        rig.asleep(sleepers);
    }
    rig.clock.timers_created() - before
}

fn satisfied_store(rig: &Rig) -> Certificate {
    let t = node_template().with_ip_address("10.0.0.1".parse().unwrap());
    let cert = rig.cert(&t, 0, 1000 * 3600);
    rig.store
        .update(cert.cert_pem().as_bytes(), cert.key_pem().as_bytes())
        .unwrap();
    cert
}

#[test]
fn idle_wakes_per_hour_static_template() {
    let rig = Rig::new();
    satisfied_store(&rig);
    let m = rig.manager();
    m.start();
    let wakes = simulate(&rig, 1, HOUR);
    assert!(wakes <= 61, "{wakes} wakes per idle hour");
    assert_eq!(rig.api.created(), 0);
    m.stop();
}

#[test]
fn idle_wakes_per_hour_dynamic_template_polled_every_second() {
    let rig = Rig::new();
    satisfied_store(&rig);
    let m = CertificateManager::new(
        rig.builder()
            .template_fn(|| Some(node_template()))
            .build()
            .unwrap(),
    )
    .unwrap();
    m.start();
    let wakes = simulate(&rig, 2, HOUR);
    assert!(
        (3500..=3800).contains(&wakes),
        "{wakes} wakes per idle hour"
    );
    assert_eq!(rig.api.created(), 0);
    m.stop();
}

#[test]
fn idle_wakes_per_hour_without_polling_and_notify_rotates_at_once() {
    let rig = Rig::new();
    satisfied_store(&rig);
    let template = Arc::new(parking_lot::Mutex::new(node_template()));
    let t = template.clone();
    let m = CertificateManager::new(
        rig.builder()
            .template_fn(move || Some(t.lock().clone()))
            .template_poll_interval(None)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.start();
    let wakes = simulate(&rig, 1, HOUR);
    assert!(wakes <= 61, "{wakes} wakes per idle hour");
    *template.lock() = node_template().with_ip_address("10.0.0.2".parse().unwrap());
    m.notify_template_changed();
    rig.wait_created(); // no time passed
    m.stop();
}

// ---------------------------------------------------------------------------------------------
// Field cases
// ---------------------------------------------------------------------------------------------

/// C3: an expired stored cert is never served; with a bootstrap pair the bootstrap wins, and
/// without one the factory is given `None` so the caller can use bootstrap credentials.
#[test]
fn c3_expired_store_cert_never_wins() {
    let rig = Rig::with_store(MemoryStore::with_certificate(fixture_cert("expired")));
    let m = CertificateManager::new(
        rig.builder()
            .bootstrap(fixture("bootstrap.crt"), fixture("bootstrap.key"))
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(same(m.current(), &fixture_cert("bootstrap")));

    let rig = Rig::with_store(MemoryStore::with_certificate(fixture_cert("expired")));
    let m = rig.manager();
    assert!(m.current().is_none());
    m.start();
    match rig.wait_event("client built", |e| matches!(e, ApiEvent::ClientBuilt(_))) {
        ApiEvent::ClientBuilt(serial) => assert_eq!(serial, None),
        e => panic!("{e:?}"),
    }
    m.stop();
}

/// C9: a restart with a stored cert that satisfies a dynamic template sends no CSR; extra SANs
/// in the cert do not count; a new IP in the template gives exactly one CSR within one poll.
#[test]
fn c9_no_csr_on_restart_with_a_good_cert() {
    let rig = Rig::new();
    let t = node_template()
        .with_ip_address("10.0.0.1".parse().unwrap())
        .with_dns_name("extra.example.com");
    let cert = rig.cert(&t, 0, 1000 * 3600);
    rig.store
        .update(cert.cert_pem().as_bytes(), cert.key_pem().as_bytes())
        .unwrap();
    let template = Arc::new(parking_lot::Mutex::new(
        node_template().with_ip_address("10.0.0.1".parse().unwrap()),
    ));
    let tt = template.clone();
    let m = CertificateManager::new(
        rig.builder()
            .template_fn(move || Some(tt.lock().clone()))
            .build()
            .unwrap(),
    )
    .unwrap();
    let rotations = m.subscribe();
    m.start();
    simulate(&rig, 2, Duration::from_secs(10));
    assert_eq!(rig.api.created(), 0, "no CSR in ten poll periods");
    *template.lock() = node_template()
        .with_ip_address("10.0.0.1".parse().unwrap())
        .with_ip_address("10.0.0.2".parse().unwrap());
    rig.asleep(2);
    rig.clock.advance(Duration::from_secs(1));
    rig.wait_created();
    let cert = rotations
        .recv_timeout(BOUND)
        .expect("rotation for the new IP");
    assert_eq!(cert.ip_addresses().len(), 2);
    simulate(&rig, 2, Duration::from_secs(10));
    assert_eq!(rig.api.created(), 1, "exactly one CSR");
    m.stop();
}

/// C10: nothing ever approves. Over 24 simulated hours each attempt waits the full timeout,
/// retries follow the backoff schedule, at most one CSR is outstanding, one CSR is created in
/// all (each retry waits for it again), every attempt is counted as a failure, and stop cancels the wait at once.
#[test]
fn c10_never_approved_for_a_day() {
    // Each backoff's delays: after failures 1–4, [least, bound); from the 5th, [least, bound)
    // (a flat period when equal).
    let cases = [
        (
            Backoff::Spread,
            [(2.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, 32.0)],
            (16.0, 48.0),
        ),
        (
            Backoff::ClientGo,
            [(2.0, 2.2), (4.0, 4.4), (8.0, 8.8), (16.0, 17.6)],
            (32.0, 32.0),
        ),
    ];
    for (backoff, early, periodic) in cases {
        let rig = Rig::new();
        for _ in 0..200 {
            rig.api.script_wait(WaitStep::Hang);
        }
        let (failures, c) = counter();
        let m = CertificateManager::new(
            rig.builder()
                .backoff(backoff)
                .renew_failure_counter(c)
                .build()
                .unwrap(),
        )
        .unwrap();
        m.start();
        let mut elapsed = Duration::ZERO;
        let mut steps = Vec::new();
        while elapsed < 24 * HOUR {
            rig.asleep(1);
            let d = rig.clock.advance_to_next_timer().unwrap();
            elapsed += d;
            steps.push(d);
        }
        rig.asleep(1);
        let created = rig.api.created();
        // Each attempt after the first waits again for the same pending CSR.
        assert_eq!(created, 1, "{backoff:?}: {created} CSRs in 24 h");
        assert_eq!(rig.api.max_outstanding(), 1);
        // Steps alternate: wait timeout (15 min), then the backoff delay.
        let timeout = Duration::from_secs(900);
        let backoffs: Vec<f64> = steps
            .iter()
            .filter(|d| **d != timeout)
            .map(Duration::as_secs_f64)
            .collect();
        assert!(steps.iter().filter(|d| **d == timeout).count() >= 80);
        for (i, (lo, hi)) in early.into_iter().enumerate() {
            assert!(
                backoffs[i] >= lo && backoffs[i] < hi,
                "{backoff:?} backoff {i}: {}",
                backoffs[i]
            );
        }
        let (lo, hi) = periodic;
        assert!(
            backoffs[4..]
                .iter()
                .all(|&d| d >= lo && (d < hi || (lo == hi && d == hi))),
            "{backoff:?}: {backoffs:?}"
        );
        let attempts = steps.iter().filter(|d| **d == timeout).count();
        assert_eq!(failures.load(Ordering::SeqCst), attempts);
        let t = std::time::Instant::now();
        m.stop();
        assert!(t.elapsed() < PROMPT);
    }
}

/// C11: a denied CSR ends the wait at once; the next attempt sends a new CSR with a new key.
#[test]
fn c11_denied_then_new_csr_with_new_key() {
    let rig = Rig::new();
    rig.api.script_wait(WaitStep::Fail(CsrError::Denied {
        name: "csr-1".into(),
        reason: "NotAllowed".into(),
        message: "no".into(),
    }));
    let m = rig.manager();
    let rotations = m.subscribe();
    m.start();
    // Backoff after the denial (2–4 s), no 15-minute wait sat out.
    assert!(
        rig.clock
            .wait_for_timer_within(Duration::from_secs(4), BOUND)
    );
    assert_eq!(rig.api.created(), 1);
    rig.clock.advance_to_next_timer();
    rotations.recv_timeout(BOUND).unwrap();
    let reqs = rig.api.requests();
    assert_eq!(reqs.len(), 2);
    assert_ne!(reqs[0].1.public_key_der, reqs[1].1.public_key_der);
    m.stop();
}

/// C15: the deadline comes from the issued cert, never from the requested lifetime.
#[test]
fn c15_deadline_from_the_issued_cert_not_the_request() {
    let rig = Rig::new(); // issues 100 h certs
    let m = CertificateManager::new(
        rig.builder()
            .requested_lifetime(HOUR)
            .max_sleep_slice(10_000 * HOUR)
            .build()
            .unwrap(),
    )
    .unwrap();
    let rotations = m.subscribe();
    m.start();
    let cert = rotations.recv_timeout(BOUND).unwrap();
    assert_eq!(rig.api.requests()[0].1.requested_lifetime, Some(HOUR));
    rig.asleep(1);
    let sleep = rig.clock.next_timer_in().unwrap();
    assert!(sleep >= 70 * HOUR && sleep < 90 * HOUR, "{sleep:?}");
    assert_eq!(
        m.rotation_deadline(),
        Some(start_time() + sleep),
        "the deadline it sleeps to"
    );
    assert_eq!(cert.info().lifetime(), 100 * HOUR);
    m.stop();
}

/// C17: a template change while a CSR is outstanding cancels the wait and requests the new
/// template within one poll; a change that reverts before it is handled sends nothing new.
#[test]
fn c17_template_change_while_waiting() {
    let rig = Rig::new();
    let a = node_template().with_ip_address("10.0.0.1".parse().unwrap());
    let b = node_template()
        .with_ip_address("10.0.0.1".parse().unwrap())
        .with_ip_address("10.0.0.2".parse().unwrap());
    let c = node_template().with_ip_address("10.0.0.3".parse().unwrap());
    let current = Arc::new(parking_lot::Mutex::new(a.clone()));
    let flip = Arc::new(parking_lot::Mutex::new(None::<CsrTemplate>));
    let (cur, fl) = (current.clone(), flip.clone());
    let m = CertificateManager::new(
        rig.builder()
            .template_fn(move || Some(fl.lock().take().unwrap_or_else(|| cur.lock().clone())))
            .build()
            .unwrap(),
    )
    .unwrap();
    rig.api.script_wait(WaitStep::Hang); // CSR for A
    rig.api.script_wait(WaitStep::Hang); // CSR for B
    rig.api.script_wait(WaitStep::Hang); // B again, after the reverted change
    let rotations = m.subscribe();
    m.start();
    let first = rig.wait_created();
    rig.wait_event("wait A", |e| matches!(e, ApiEvent::WaitStarted(_)));
    rig.asleep(2); // the wait's timeout watchdog and the template poll
    *current.lock() = b.clone();
    rig.clock.advance(Duration::from_secs(1)); // one poll
    let second = rig.wait_created();
    assert_ne!(first, second);
    let req = rig.api.requests()[1].1.clone();
    let csr = certrotate::pki::parse_csr_pem(req.csr_pem.as_bytes()).unwrap();
    assert_eq!(
        csr.ip_addresses, b.ip_addresses,
        "CSR from the latest template"
    );
    rig.wait_event(
        "wait B",
        |e| matches!(e, ApiEvent::WaitStarted(n) if *n == second),
    );
    rig.asleep(2);
    // The poll sees C once; by the time the rotation thread looks, it is B again.
    *flip.lock() = Some(c);
    rig.clock.advance(Duration::from_secs(1));
    rig.wait_event(
        "B re-waited",
        |e| matches!(e, ApiEvent::WaitStarted(n) if *n == second),
    );
    assert_eq!(rig.api.created(), 2, "no CSR for the reverted change");
    m.stop();
    assert!(rotations.try_recv().is_err(), "nothing was issued");
}

/// C17, the race in the "changed back" path: the template reads B (the CSR's own) right after
/// the interrupt, then C again before the wait is re-armed. The change must not be lost: a CSR
/// for C goes out at once, without waiting for another poll (polling is off here).
#[test]
fn c17_a_change_racing_the_rearm_is_not_lost() {
    let rig = Rig::new();
    let b = node_template().with_ip_address("10.0.0.2".parse().unwrap());
    let c = node_template().with_ip_address("10.0.0.3".parse().unwrap());
    let current = Arc::new(parking_lot::Mutex::new(b.clone()));
    let script = Arc::new(parking_lot::Mutex::new(std::collections::VecDeque::<
        CsrTemplate,
    >::new()));
    let (cur, sc) = (current.clone(), script.clone());
    let m = CertificateManager::new(
        rig.builder()
            .template_fn(move || Some(sc.lock().pop_front().unwrap_or_else(|| cur.lock().clone())))
            .template_poll_interval(None)
            .build()
            .unwrap(),
    )
    .unwrap();
    rig.api.script_wait(WaitStep::Hang); // CSR for B
    rig.api.script_wait(WaitStep::Hang); // CSR for C
    m.start();
    let first = rig.wait_created();
    rig.wait_event(
        "wait B",
        |e| matches!(e, ApiEvent::WaitStarted(n) if *n == first),
    );
    // notify sees C; the rotation thread then reads B, arms, and reads C.
    *script.lock() = [c.clone(), b.clone(), c.clone()].into();
    *current.lock() = c.clone();
    m.notify_template_changed();
    let second = rig.wait_created();
    assert_ne!(first, second);
    let req = rig.api.requests()[1].1.clone();
    let csr = certrotate::pki::parse_csr_pem(req.csr_pem.as_bytes()).unwrap();
    assert_eq!(csr.ip_addresses, c.ip_addresses, "the CSR asks for C");
    m.stop();
}

mod logs {
    use std::sync::{Mutex, OnceLock};

    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            if let Some(l) = LINES.get() {
                l.lock().unwrap().push(format!("{}", record.args()));
            }
        }
        fn flush(&self) {}
    }

    pub fn install() {
        LINES.get_or_init(|| Mutex::new(Vec::new()));
        let _ = log::set_logger(&Capture);
        log::set_max_level(log::LevelFilter::Debug);
    }

    pub fn lines() -> Vec<String> {
        LINES
            .get()
            .map(|l| l.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

#[test]
fn ttl_gauge_and_ttl() {
    let rig = Rig::new();
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    let m = CertificateManager::new(
        rig.builder()
            .ttl_gauge(Arc::new(GaugeFn(move |v: f64| {
                s.store(v.to_bits(), Ordering::SeqCst)
            })))
            .build()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(m.ttl(), None);
    rig.api.script_wait(WaitStep::Hang);
    m.start();
    rig.wait_event("wait", |e| matches!(e, ApiEvent::WaitStarted(_)));
    assert_eq!(f64::from_bits(seen.load(Ordering::SeqCst)), f64::INFINITY);
    m.stop();
    m.rotate_now().unwrap_err();
    let rotations = m.subscribe();
    m.start();
    let cert = rotations.recv_timeout(BOUND).unwrap();
    assert_eq!(m.ttl(), Some(100 * HOUR));
    rig.asleep(1);
    assert_eq!(f64::from_bits(seen.load(Ordering::SeqCst)), 100.0 * 3600.0);
    assert_eq!(cert.info().lifetime(), 100 * HOUR);
    m.stop();
}

// ---------------------------------------------------------------------------------------------
// Races and robustness
// ---------------------------------------------------------------------------------------------

/// Counts the create calls the fake API answered with an error, from its event stream.
fn failed_creates(rig: &Rig) -> usize {
    rig.api
        .events()
        .try_iter()
        .filter(|e| matches!(e, ApiEvent::Created(Err(_))))
        .count()
}

/// A dynamic template, no certificate, and an API that refuses every create. The template
/// poll sees "no certificate, template differs from the last request" every second (the last
/// request is only recorded after a successful create), and must not cut the backoff short:
/// client-go only listens for template changes while sleeping towards the deadline, so the
/// attempts still follow the backoff: 2, 4, 8, 16 s (each stretched by up to 100 %), then
/// 32 s ± 50 %.
#[test]
fn backoff_is_not_reset_by_template_polls_while_creates_fail() {
    let rig = Rig::new();
    for _ in 0..100 {
        rig.api.script_create(CreateStep::Fail(CsrError::Transport {
            op: "create",
            request:
                "POST https://127.0.0.1:1/apis/certificates.k8s.io/v1/certificatesigningrequests"
                    .into(),
            source: "connection refused".into(),
        }));
    }
    let (failures, c) = counter();
    let template = Arc::new(parking_lot::Mutex::new(node_template()));
    let t = template.clone();
    let m = CertificateManager::new(
        rig.builder()
            .template_fn(move || Some(t.lock().clone()))
            .renew_failure_counter(c)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.start();
    // Attempts at 0, ~2, ~6, ~14, ~30 and ~62 s: five in the first minute.
    simulate(&rig, 2, Duration::from_secs(60));
    let attempts = failed_creates(&rig);
    assert!(
        (5..=6).contains(&attempts),
        "{attempts} create attempts in one minute of outage"
    );
    assert_eq!(failures.load(Ordering::SeqCst), attempts);
    // A real template change still ends the backoff: the new template is tried at the next
    // poll, not after the rest of a 32 s retry.
    *template.lock() = node_template().with_ip_address("10.0.0.2".parse().unwrap());
    rig.asleep(2);
    rig.clock.advance(Duration::from_secs(1));
    rig.wait_event("create for the new template", |e| {
        matches!(e, ApiEvent::Created(Err(_)))
    });
    m.stop();
}

/// A dynamic template that changes at every call (a flapping address, say), while no CSR is
/// ever approved. Each template poll cancels the wait for the CSR of the template before. The
/// first change since the last certificate requests again at once; each later one waits the
/// backoff's delays (2–4, 4–8, 8–16, 16–32 s, then 16–48 s) before the next CSR, without
/// counting as a failure — so with a poll every second the manager creates about one CSR per
/// 32 s, not one per poll. (client-go counts such a cancelled wait as a failed attempt and
/// backs off.) The poll here is a minute apart, so that every settle delay ends before it.
#[test]
fn a_template_changing_at_every_poll_does_not_create_a_csr_per_poll() {
    let rig = Rig::new();
    for _ in 0..100 {
        rig.api.script_wait(WaitStep::Hang);
    }
    let (failures, c) = counter();
    // A new address at every call: every poll sees a template the last CSR did not ask for.
    let calls = Arc::new(AtomicU64::new(0));
    let poll = Duration::from_secs(60);
    let m = CertificateManager::new(
        rig.builder()
            .template_fn(move || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let ip = std::net::Ipv4Addr::new(10, 1, (n >> 8) as u8, n as u8);
                Some(node_template().with_ip_address(ip.into()))
            })
            .template_poll_interval(Some(poll))
            .renew_failure_counter(c)
            .build()
            .unwrap(),
    )
    .unwrap();
    let wait_started = || {
        rig.wait_event("a wait for the new CSR", |e| {
            matches!(e, ApiEvent::WaitStarted(_))
        });
    };
    m.start();
    wait_started();
    // (least, bound) of the settle delay after the k-th change in a row, from the 2nd.
    let settles = [
        (2, 4),
        (4, 8),
        (8, 16),
        (16, 32),
        (16, 48),
        (16, 48),
        (16, 48),
    ];
    for k in 0..=settles.len() {
        // The next poll (the only timer but the wait's 15-minute one) cancels the wait.
        rig.asleep(2);
        let to_poll = rig.clock.advance_to_next_timer().unwrap();
        assert!(to_poll <= poll, "change {}: {to_poll:?}", k + 1);
        rig.wait_event("the cancelled wait's end", |e| {
            matches!(e, ApiEvent::WaitEnded(Err(_)))
        });
        if k == 0 {
            // The first change since the last certificate: the next CSR at once, the clock
            // standing still.
            wait_started();
            continue;
        }
        let (least, bound) = settles[k - 1];
        assert!(
            rig.clock
                .wait_for_timer_within(Duration::from_secs(bound), BOUND),
            "change {}: no settle timer",
            k + 1
        );
        let settle = rig.clock.advance_to_next_timer().unwrap();
        assert!(
            settle >= Duration::from_secs(least) && settle < Duration::from_secs(bound),
            "change {} in a row waited {settle:?}, not in [{least}, {bound}) s",
            k + 1
        );
        wait_started();
    }
    assert_eq!(rig.api.created(), 9, "one CSR per change");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "a template change is no failure"
    );
    m.stop();
}

/// A client that reports its wait as cancelled when nothing cancelled it (a transport that
/// maps an aborted connection to "cancelled", say). Only a template change may skip the
/// backoff; anything else is a failed attempt like any other, or the manager would create CSRs
/// in a tight loop.
#[test]
fn a_wait_cancelled_by_nobody_is_a_failure_not_a_tight_loop() {
    let rig = Rig::new();
    for _ in 0..50 {
        rig.api.script_wait(WaitStep::Fail(CsrError::Cancelled {
            name: "csr-x".into(),
        }));
    }
    let (failures, c) = counter();
    let m =
        CertificateManager::new(rig.builder().renew_failure_counter(c).build().unwrap()).unwrap();
    m.start();
    assert!(
        rig.clock
            .wait_for_timer_within(Duration::from_secs(4), BOUND),
        "no backoff after the first attempt; {} CSRs created",
        rig.api.created()
    );
    assert_eq!(rig.api.created(), 1, "one CSR, then a backoff");
    assert_eq!(failures.load(Ordering::SeqCst), 1);
    let next = rig.clock.next_timer_in().unwrap();
    assert!(
        next >= Duration::from_secs(2) && next < Duration::from_secs(4),
        "first backoff step, got {next:?}"
    );
    m.stop();
}

/// client-go names a manager with `GetUsages` by what the function returns (it calls it with no
/// key): "client auth" when that includes client auth.
#[test]
fn name_defaults_from_a_usages_function_too() {
    let name = |b: ConfigBuilder| {
        CertificateManager::new(b.build().unwrap())
            .unwrap()
            .name()
            .to_owned()
    };
    assert_eq!(
        name(
            Config::builder().usages_fn(|_| vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth])
        ),
        "client auth"
    );
    assert_eq!(
        name(Config::builder().usages_fn(|_| vec![KeyUsage::ServerAuth])),
        "certificate"
    );
}

/// `rotate_now()` while the rotation thread is due too (a bootstrap certificate, and a program
/// that calls `rotate_now()` right after `start()` to have a certificate before it goes on):
/// attempts are serialised, and the one that waited must notice that a rotation happened while
/// it waited instead of sending a second CSR for a certificate that is already fresh.
#[test]
fn rotate_now_while_the_thread_is_due_sends_one_csr() {
    let rig = Rig::new();
    let (calls_tx, calls) = crossbeam_channel::unbounded::<()>();
    let m = CertificateManager::new(
        rig.builder()
            .template_fn(move || {
                let _ = calls_tx.send(());
                Some(node_template())
            })
            .template_poll_interval(None)
            .bootstrap(fixture("bootstrap.crt"), fixture("bootstrap.key"))
            .build()
            .unwrap(),
    )
    .unwrap();
    let (release_tx, release) = crossbeam_channel::bounded::<()>(0);
    let clock = rig.clock.clone();
    rig.api
        .script_wait(WaitStep::Respond(Box::new(move |req, ca| {
            release.recv().unwrap();
            let parsed = certrotate::pki::parse_csr_pem(req.csr_pem.as_bytes()).unwrap();
            let now = certrotate::Clock::now(&clock);
            ca.sign_csr(&parsed, &req.usages, now, now + 100 * HOUR)
                .unwrap()
                .into_bytes()
        })));
    let rotations = m.subscribe();
    std::thread::scope(|s| {
        let sync = s.spawn(|| m.rotate_now());
        rig.wait_event("wait start", |e| matches!(e, ApiEvent::WaitStarted(_)));
        calls
            .recv_timeout(BOUND)
            .expect("rotate_now read the template");
        m.start();
        // The rotation thread has read the template: it has decided the forced rotation is due.
        calls
            .recv_timeout(BOUND)
            .expect("the rotation thread read the template");
        release_tx.send(()).unwrap();
        sync.join().unwrap().expect("rotate_now");
    });
    // The thread asleep towards the next deadline (a 60 s slice; a CSR wait arms 15 min).
    assert!(
        rig.clock
            .wait_for_timer_within(Duration::from_secs(60), BOUND)
    );
    assert_eq!(rig.api.created(), 1, "one CSR for one due rotation");
    assert_eq!(rotations.try_iter().count(), 1);
    m.stop();
}

/// A certificate's rotation deadline is drawn once, when it is published. A `rotate_now()` that
/// publishes a certificate while the rotation thread is looking at the one before (here: the
/// thread is inside the template function) must not make either deadline be drawn again:
/// `rotation_deadline()` stays the one drawn at publication. (The thread used to look the old
/// certificate's deadline up after the new one was published, which drew one for the old
/// certificate over the new one's, and the new one's was then drawn a second time.)
#[test]
fn rotate_now_while_the_thread_looks_keeps_the_new_deadline() {
    let rig = Rig::new();
    let a = rig.cert(&node_template(), 0, 100 * 3600);
    rig.store
        .update(a.cert_pem().as_bytes(), a.key_pem().as_bytes())
        .unwrap();
    let (looking_tx, looking) = crossbeam_channel::bounded::<()>(0);
    let (release_tx, release) = crossbeam_channel::bounded::<()>(0);
    let blocked = std::sync::atomic::AtomicBool::new(false);
    let m = CertificateManager::new(
        rig.builder()
            .template_fn(move || {
                let on_thread = std::thread::current().name() == Some("certrotate-rotation");
                if on_thread && !blocked.swap(true, Ordering::SeqCst) {
                    looking_tx.send(()).unwrap();
                    release.recv().unwrap();
                }
                Some(node_template())
            })
            .template_poll_interval(None)
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(same(m.current(), &a));
    m.start();
    looking
        .recv_timeout(BOUND)
        .expect("the rotation thread looks at the certificate");
    let b = m.rotate_now().expect("rotate_now");
    assert!(same(m.current(), &b));
    let drawn = m
        .rotation_deadline()
        .expect("a deadline for the new certificate");
    release_tx.send(()).unwrap();
    // The thread goes back to sleep (a slice towards a deadline; nothing is due).
    rig.asleep(1);
    assert_eq!(m.rotation_deadline(), Some(drawn), "deadline drawn again");
    rig.clock.advance(Duration::from_secs(60));
    rig.asleep(1);
    assert_eq!(m.rotation_deadline(), Some(drawn), "deadline drawn again");
    assert_eq!(rig.api.created(), 1, "only rotate_now's CSR");
    m.stop();
}

/// A signer whose clock is far behind (or that backdates NotBefore a lot) issues certificates
/// that are valid but already past their rotation point. Rotating again at once only gets
/// another such certificate: the manager must not loop on successful rotations without ever
/// sleeping (client-go waits at least its one-second loop period between passes).
#[test]
fn a_certificate_issued_past_its_rotation_point_does_not_spin() {
    let rig = Rig::new();
    for _ in 0..20 {
        let clock = rig.clock.clone();
        rig.api
            .script_wait(WaitStep::Respond(Box::new(move |req, ca| {
                let parsed = certrotate::pki::parse_csr_pem(req.csr_pem.as_bytes()).unwrap();
                let now = certrotate::Clock::now(&clock);
                // Lifetime 10 h, issued "9 h 30 min ago" by the signer's clock.
                let nb = now - Duration::from_secs(9 * 3600 + 1800);
                ca.sign_csr(&parsed, &req.usages, nb, nb + 10 * HOUR)
                    .unwrap()
                    .into_bytes()
            })));
    }
    let m = rig.manager();
    let rotations = m.subscribe();
    m.start();
    rotations.recv_timeout(BOUND).expect("first rotation");
    // Some timer must be armed before the second CSR: a CSR wait arms its 15-minute timeout,
    // so wait for a shorter one (the pause between passes).
    assert!(
        rig.clock
            .wait_for_timer_within(Duration::from_secs(60), BOUND),
        "no pause after a rotation; {} CSRs so far",
        rig.api.created()
    );
    assert!(
        rig.api.created() <= 2,
        "{} CSRs with no time passing",
        rig.api.created()
    );
    // It keeps rotating, with growing pauses (2 s, then 4 s, as after failures).
    let first = rig.clock.advance_to_next_timer().unwrap();
    assert!(first >= Duration::from_secs(2), "{first:?}");
    rotations.recv_timeout(BOUND).expect("second rotation");
    assert!(
        rig.clock
            .wait_for_timer_within(Duration::from_secs(60), BOUND)
    );
    let second = rig.clock.next_timer_in().unwrap();
    assert!(second >= Duration::from_secs(4), "{second:?}");
    m.stop();
}

/// A CSR client whose create call hangs (an API server that accepted the connection and never
/// answers) until the test lets it go.
struct HangingCreate {
    entered: crossbeam_channel::Sender<()>,
    release: crossbeam_channel::Receiver<()>,
}

impl certrotate::CsrClient for HangingCreate {
    /// Blocks until released, or returns at once when cancelled, as a client that can
    /// interrupt its request (the kube client shuts its agent down) does.
    fn create(
        &self,
        _: &certrotate::CsrRequest,
        cancel: &certrotate::Cancel,
    ) -> Result<certrotate::CsrRef, CsrError> {
        let _ = self.entered.send(());
        crossbeam_channel::select! {
            recv(self.release) -> _ => {},
            recv(cancel.receiver()) -> _ => {},
        }
        Err(CsrError::Cancelled {
            name: "(new)".into(),
        })
    }

    fn wait_for_certificate(
        &self,
        csr: &certrotate::CsrRef,
        _: Duration,
        _: &certrotate::Cancel,
    ) -> Result<Vec<u8>, CsrError> {
        Err(CsrError::Deleted {
            name: csr.name.clone(),
        })
    }
}

/// DESIGN §3: `stop()` returns promptly in every state — including while a create call is in
/// flight: the manager cancels the create on stop (the kube client
/// shuts its agent down), so stop() does not wait for a hung server.
#[test]
fn stop_is_prompt_while_a_create_call_hangs() {
    let rig = Rig::new();
    let (entered_tx, entered) = crossbeam_channel::unbounded();
    let (release_tx, release) = crossbeam_channel::unbounded::<()>();
    let m = CertificateManager::new(
        rig.builder()
            .client_factory(move |_| {
                Ok(Box::new(HangingCreate {
                    entered: entered_tx.clone(),
                    release: release.clone(),
                }) as Box<dyn certrotate::CsrClient>)
            })
            .build()
            .unwrap(),
    )
    .unwrap();
    m.start();
    entered.recv_timeout(BOUND).expect("create called");
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let returned = std::thread::scope(|s| {
        s.spawn(|| {
            m.stop();
            let _ = done_tx.send(());
        });
        let returned = done.recv_timeout(Duration::from_secs(1)).is_ok();
        drop(release_tx); // let the create call end either way, so the scope can join
        returned
    });
    assert!(
        returned,
        "stop() still blocked after 1 s by a hanging create call"
    );
}

/// Readers on several threads (`current()` and the rustls resolver) while the rotation thread
/// publishes, and while the wall clock jumps past NotAfter before each rotation: no reader ever
/// gets a certificate that had expired before its call, one whose key does not match, or an
/// older certificate after a newer one.
#[test]
fn readers_never_see_an_expired_mismatched_or_older_certificate_during_rotations() {
    use std::sync::atomic::AtomicBool;
    let clock = FakeClock::new(start_time());
    let api = FakeCsrApi::new(Arc::new(clock.clone()), Duration::from_secs(100));
    let rig = Rig {
        clock,
        api,
        store: Arc::new(MemoryStore::new()),
    };
    // One timer per certificate: the next one fired is the rotation deadline.
    let m = CertificateManager::new(
        rig.builder()
            .max_sleep_slice(10_000 * HOUR)
            .build()
            .unwrap(),
    )
    .unwrap();
    let rotations = m.subscribe();
    let done = AtomicBool::new(false);
    let resolver = m.resolver();
    /// Ends the readers however the driving thread leaves the scope (a panic included).
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..3)
            .map(|i| {
                let (m, done, clock, resolver) = (&m, &done, &rig.clock, resolver.clone());
                s.spawn(move || {
                    let mut newest = UNIX_EPOCH;
                    let mut checked = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        let before = certrotate::Clock::now(clock);
                        if let Some(c) = m.current() {
                            assert!(c.not_after() >= before, "reader {i}: expired certificate");
                            assert!(c.not_before() >= newest, "reader {i}: older certificate");
                            newest = c.not_before();
                            if checked.is_multiple_of(64) {
                                Certificate::from_pem(
                                    c.cert_pem().as_bytes(),
                                    c.key_pem().as_bytes(),
                                )
                                .unwrap_or_else(|e| panic!("reader {i}: {e}"));
                            }
                            checked += 1;
                        }
                        std::thread::yield_now();
                        let before = certrotate::Clock::now(clock);
                        if rustls::client::ResolvesClientCert::has_certs(&*resolver) {
                            // Offered only while the current certificate is unexpired.
                            let c = m.current();
                            assert!(
                                c.is_none_or(|c| c.not_after() >= before),
                                "reader {i}: resolver and current disagree"
                            );
                        }
                    }
                    checked
                })
            })
            .collect();
        let _done = Done(&done);
        m.start();
        for i in 0..200u32 {
            let cert = rotations
                .recv_timeout(BOUND)
                .unwrap_or_else(|_| panic!("rotation {i}"));
            rig.asleep(1);
            if i.is_multiple_of(2) {
                // Past NotAfter before the thread wakes: readers must see none meanwhile.
                rig.clock.set(cert.not_after() + Duration::from_secs(1));
                assert!(m.current().is_none());
            }
            rig.clock.advance_to_next_timer();
        }
        done.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0, "a reader saw no certificate at all");
        }
    });
    m.stop();
}

/// `stop()` racing an attempt that is finishing on another thread (`rotate_now()`, which
/// `stop()` does not join): whichever wins, nothing is written and `current()` does not change
/// after `stop()` has returned, and the attempt's result says which won.
#[test]
fn stop_racing_a_finishing_rotate_now_writes_nothing_after_it_returns() {
    for i in 0..100 {
        let rig = Rig::new();
        let (release_tx, release) = crossbeam_channel::bounded::<()>(0);
        let clock = rig.clock.clone();
        rig.api
            .script_wait(WaitStep::Respond(Box::new(move |req, ca| {
                release.recv().unwrap();
                let parsed = certrotate::pki::parse_csr_pem(req.csr_pem.as_bytes()).unwrap();
                let now = certrotate::Clock::now(&clock);
                ca.sign_csr(&parsed, &req.usages, now, now + HOUR)
                    .unwrap()
                    .into_bytes()
            })));
        let m = rig.manager();
        std::thread::scope(|s| {
            let sync = s.spawn(|| m.rotate_now());
            rig.wait_event("wait start", |e| matches!(e, ApiEvent::WaitStarted(_)));
            let stopper = s.spawn(|| {
                m.stop();
                (rig.store.updates(), m.current().map(|c| c.serial_hex()))
            });
            release_tx.send(()).unwrap();
            let (updates, current) = stopper.join().unwrap();
            let result = sync.join().unwrap();
            assert_eq!(
                rig.store.updates(),
                updates,
                "iteration {i}: store written after stop() returned"
            );
            assert_eq!(
                m.current().map(|c| c.serial_hex()),
                current,
                "iteration {i}: current() changed after stop() returned"
            );
            match result {
                Ok(c) => {
                    assert_eq!(updates, 1, "iteration {i}");
                    assert_eq!(current, Some(c.serial_hex()), "iteration {i}");
                }
                Err(Error::Stopped) => {
                    assert_eq!(updates, 0, "iteration {i}");
                    assert_eq!(current, None, "iteration {i}");
                }
                Err(e) => panic!("iteration {i}: {e}"),
            }
        });
    }
}

/// Durations in the config are outside input: `Duration::MAX` (the kube client reads it as
/// "practically forever") must not panic a thread on the way to a timer, on the real clock
/// or the fake one.
#[test]
fn huge_durations_in_the_config_do_not_panic() {
    let rig = Rig::new();
    rig.clock.advance(Duration::from_secs(1)); // timers then start from a non-zero time
    let m = CertificateManager::new(
        rig.builder()
            .certificate_wait_timeout(Duration::MAX)
            .template_fn(|| Some(node_template()))
            .template_poll_interval(Some(Duration::MAX))
            .max_sleep_slice(Duration::MAX)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.rotate_now()
        .expect("a rotation with no practical wait timeout");
    let rotations = m.subscribe();
    m.start();
    rig.asleep(2); // the rotation thread and the template thread, each on one long timer
    assert!(rotations.try_recv().is_err());
    m.stop();
    let sys = certrotate::clock::SystemClock;
    let t = certrotate::Clock::after(&sys, Duration::MAX);
    assert!(t.receiver().try_recv().is_err());
}

/// The TTL gauge is refreshed at every wake of the rotation thread — including the wakes of a
/// long outage, when the thread retries in backoff. That is when the gauge matters: alerts on a
/// shrinking TTL must see it shrink.
#[test]
fn ttl_gauge_keeps_falling_while_rotation_fails() {
    let rig = Rig::new();
    // Past its rotation window, five hours left.
    let cert = rig.cert(&node_template(), -95 * 3600, 5 * 3600);
    rig.store
        .update(cert.cert_pem().as_bytes(), cert.key_pem().as_bytes())
        .unwrap();
    for _ in 0..500 {
        rig.api
            .script_create(CreateStep::Fail(api_error(503, "ServiceUnavailable", true)));
    }
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    let m = CertificateManager::new(
        rig.builder()
            .ttl_gauge(Arc::new(GaugeFn(move |v: f64| {
                s.store(v.to_bits(), Ordering::SeqCst)
            })))
            .build()
            .unwrap(),
    )
    .unwrap();
    m.start();
    simulate(&rig, 1, HOUR);
    assert!(rig.api.created() == 0 && failed_creates(&rig) > 100);
    let ttl = f64::from_bits(seen.load(Ordering::SeqCst));
    let want = m.ttl().unwrap().as_secs_f64();
    assert!(
        (want.floor()..=want + 41.0).contains(&ttl),
        "gauge {ttl} s after an hour of failed attempts; TTL is {want} s"
    );
    m.stop();
}

/// With the system clock the CSR wait timeout is the client's own (same monotonic time, no
/// watchdog thread); it still ends the attempt as a timeout of the configured length.
#[test]
fn wait_timeout_with_the_system_clock_is_the_clients() {
    let api = FakeCsrApi::new(Arc::new(certrotate::clock::SystemClock), HOUR);
    let (failures, c) = counter();
    let m = CertificateManager::new(
        Config::builder()
            .template(node_template())
            .usages(USAGES)
            .signer_name("kubernetes.io/kube-apiserver-client")
            .client_factory(api.factory())
            .certificate_wait_timeout(Duration::from_millis(200))
            .renew_failure_counter(c)
            .build()
            .unwrap(),
    )
    .unwrap();
    api.script_wait(WaitStep::Hang);
    let t = std::time::Instant::now();
    match m.rotate_now() {
        Err(Error::Csr(CsrError::Timeout { waited, .. })) => {
            assert_eq!(waited, Duration::from_millis(200))
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(failures.load(Ordering::SeqCst), 1);
    assert!(m.current().is_none());
}

// ---------------------------------------------------------------------------------------------
// Configuration errors at build time, CSR hygiene, subscribers
// ---------------------------------------------------------------------------------------------

/// Every request certificates.k8s.io/v1 cannot express is refused at build time when the
/// manager may request (a client factory is set): no signer name, the legacy-unknown signer,
/// no usages (a list, or a usages function for the configured key algorithm). The explicit
/// opt-in allows them; a serve-only config (no factory) is not checked.
#[test]
fn config_refuses_requests_that_certificates_v1_refuses() {
    let rig = Rig::new();
    let cases: [(&str, ConfigBuilder, &str); 6] = [
        (
            "no signer name",
            rig.builder().signer_name(""),
            "a signer name is required",
        ),
        (
            "signer name without a path",
            rig.builder().signer_name("example.com"),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ),
        (
            "signer name with a one-label domain",
            rig.builder().signer_name("example/signer"),
            "should be a domain with at least two segments separated by dots",
        ),
        (
            "legacy-unknown signer",
            rig.builder().signer_name("kubernetes.io/legacy-unknown"),
            "kubernetes.io/legacy-unknown is refused",
        ),
        (
            "empty usages",
            rig.builder().usages([]),
            "usages must not be empty",
        ),
        (
            "usages function with no usages",
            Config::builder()
                .template(node_template())
                .signer_name("kubernetes.io/kube-apiserver-client")
                .usages_fn(|_| vec![])
                .client_factory(rig.api.factory()),
            "usages must not be empty",
        ),
    ];
    for (name, builder, want) in cases {
        let err = builder.build().unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { .. }), "{name}: {err}");
        assert!(err.to_string().contains(want), "{name}: {err}");
        assert!(err.to_string().contains("v1"), "{name}: {err}");
    }
    // Asked for explicitly: allowed.
    rig.builder()
        .signer_name("")
        .usages([])
        .allow_legacy_v1beta1(true)
        .build()
        .unwrap();
    // Serve-only: nothing is requested, nothing to check (client-go allows it too).
    Config::builder().usages([]).build().unwrap();
    Config::builder()
        .template(node_template())
        .usages([])
        .signer_name("")
        .build()
        .unwrap();
    assert_eq!(rig.api.created(), 0);
}

/// A usages function that gives nothing for the key actually generated (known only then, with
/// a key generator) fails the attempt before any CSR is created.
#[test]
fn empty_usages_for_the_generated_key_fail_the_attempt_without_a_csr() {
    let rig = Rig::new();
    let m = CertificateManager::new(
        Config::builder()
            .template(node_template())
            .signer_name("kubernetes.io/kube-apiserver-client")
            .usages_fn(|alg| match alg {
                KeyAlgorithm::EcdsaP256 => vec![],
                _ => USAGES.to_vec(),
            })
            .generate_key(|| Ok(PrivateKey::generate(KeyAlgorithm::EcdsaP256)?))
            .clock(Arc::new(rig.clock.clone()))
            .client_factory(rig.api.factory())
            .build()
            .unwrap(),
    )
    .unwrap();
    let err = m.rotate_now().unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
    assert!(err.to_string().contains("no usages"), "{err}");
    assert_eq!(rig.api.created(), 0);
}

/// The full text of an error and its sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        out = format!("{out}: {c}");
        next = c.source();
    }
    out
}

/// A certificate directory the manager could never write is an error when the manager is
/// built (or, for some, when the store is), naming the path, with the OS error as its source;
/// no CSR is sent. Running as root here, the failures are made with a dangling symlink ("File
/// exists"), a path under a regular file ("Not a directory") and, where sysfs is mounted, a
/// directory even root cannot create files in ("Permission denied"). A serve-only manager over
/// such a store is fine: it never writes.
#[test]
fn unwritable_certificate_directory_is_an_error_at_construction() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let dangling = tmp.path().join("dangling");
    std::os::unix::fs::symlink(tmp.path().join("gone"), &dangling).unwrap();
    let mut cases = vec![
        (dangling, "File exists"),
        (file.join("certs"), "Not a directory"),
    ];
    if std::path::Path::new("/sys/kernel").is_dir() {
        cases.push(("/sys".into(), "Permission denied"));
    }
    for (dir, os_text) in cases {
        let rig = Rig::new();
        let err = match certrotate::FileStore::builder("kubelet-server", &dir, &dir).build() {
            Err(e) => Error::Store(e),
            Ok(store) => {
                let store: Arc<dyn Store> = Arc::new(store);
                // Serve-only: no factory, no write, no check.
                CertificateManager::new(
                    Config::builder()
                        .usages(USAGES)
                        .store(store.clone())
                        .build()
                        .unwrap(),
                )
                .unwrap();
                CertificateManager::new(rig.builder().store(store).build().unwrap()).unwrap_err()
            }
        };
        let text = chain(&err);
        assert!(matches!(&err, Error::Store(_)), "{text}");
        assert!(
            text.contains(&*dir.to_string_lossy()),
            "names the path: {text}"
        );
        assert!(text.contains(os_text), "carries the OS error: {text}");
        assert!(
            !err.to_string().contains(os_text),
            "cause only in source(): {err}"
        );
        assert_eq!(rig.api.created(), 0, "no CSR");
    }
    // A writable directory passes and is left as it was (the probe file is gone).
    let dir = tmp.path().join("pki");
    let store = certrotate::FileStore::builder("kubelet-server", &dir, &dir)
        .build()
        .unwrap();
    let rig = Rig::new();
    CertificateManager::new(rig.builder().store(Arc::new(store)).build().unwrap()).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

/// A store whose writes fail while `failing` is set.
struct FailingStore {
    inner: MemoryStore,
    failing: std::sync::atomic::AtomicBool,
}

impl Store for FailingStore {
    fn current(&self) -> Result<Option<Certificate>, certrotate::StoreError> {
        self.inner.current()
    }

    fn update(&self, cert: &[u8], key: &[u8]) -> Result<Certificate, certrotate::StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(certrotate::StoreError::Io {
                op: "write",
                path: "/var/lib/kubelet/pki/kubelet-server.pem".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            });
        }
        self.inner.update(cert, key)
    }
}

/// Runs the manager for one more simulated hour; returns (CSRs created, failed attempts) so
/// far, counted from the manager's start. Before each step it waits until the manager sleeps
/// on a timer due within `asleep_within` (a backoff, not the timeout of a wait in progress).
fn one_hour(rig: &Rig, failures: &AtomicUsize, asleep_within: Duration) -> (usize, usize) {
    let mut elapsed = Duration::ZERO;
    while elapsed < HOUR {
        assert!(
            rig.clock.wait_for_timer_within(asleep_within, BOUND),
            "asleep"
        );
        elapsed += rig.clock.advance_to_next_timer().unwrap();
    }
    assert!(
        rig.clock.wait_for_timer_within(asleep_within, BOUND),
        "asleep"
    );
    (rig.api.created(), failures.load(Ordering::SeqCst))
}

/// CSR hygiene, measured per simulated hour: a manager whose store always fails, and one whose
/// CSRs are never approved, each create one CSR in all and never have more than one pending;
/// only the attempts follow the backoff schedule (2, 4, 8, 16 s, then 32 s ± 25 %: at most
/// 3600 / 24 + 4 = 154 attempts an hour; with a 15-minute wait per attempt, at most 4). When
/// the store works again, the pair issued first (same key) is the one stored and served.
#[test]
fn csrs_per_simulated_hour_with_a_failing_store_and_without_approval() {
    logs::install();
    // The store always fails.
    let rig = Rig::new();
    let store = Arc::new(FailingStore {
        inner: MemoryStore::new(),
        failing: true.into(),
    });
    let (failures, c) = counter();
    let m = CertificateManager::new(
        rig.builder()
            .store(store.clone() as Arc<dyn Store>)
            .renew_failure_counter(c)
            .build()
            .unwrap(),
    )
    .unwrap();
    let rotations = m.subscribe();
    m.start();
    let (created, attempts) = one_hour(&rig, &failures, Duration::from_secs(60));
    let (created2, attempts2) = one_hour(&rig, &failures, Duration::from_secs(60));
    let (created2, attempts2) = (created2 - created, attempts2 - attempts);
    println!(
        "store always failing: {created} CSR(s) and {attempts} failed attempts in the first simulated hour, {created2} CSR(s) and {attempts2} in the second"
    );
    assert_eq!((created, created2), (1, 0));
    // Each failure is logged as a store failure, with the path and the OS error, not as a
    // failure of the control plane.
    let store_lines: Vec<String> = logs::lines()
        .into_iter()
        .filter(|l| l.contains("/var/lib/kubelet/pki/kubelet-server.pem"))
        .collect();
    assert!(store_lines.len() >= 100, "{}", store_lines.len());
    for l in &store_lines {
        assert!(!l.contains("control plane"), "{l}");
        if !l.contains("Reached backoff limit") {
            assert!(l.contains("was issued but cannot be stored"), "{l}");
            assert!(l.contains("permission denied"), "{l}");
        }
    }
    assert!((100..=154).contains(&attempts), "{attempts} attempts");
    assert!((90..=150).contains(&attempts2), "{attempts2} attempts");
    assert!(m.current().is_none());
    // The store recovers: the pair issued an hour ago is stored, no new CSR.
    store.failing.store(false, Ordering::SeqCst);
    rig.clock.advance_to_next_timer().unwrap();
    let cert = rotations.recv_timeout(BOUND).expect("stored and published");
    assert_eq!(rig.api.created(), 1);
    let (_, req) = rig.api.requests().pop().unwrap();
    assert_eq!(cert.private_key().public_key_der(), req.public_key_der);
    assert!(same(store.inner.current().unwrap().map(Arc::new), &cert));
    m.stop();

    // Nothing ever approves.
    let rig = Rig::new();
    for _ in 0..20 {
        rig.api.script_wait(WaitStep::Hang);
    }
    let (failures, c) = counter();
    let m =
        CertificateManager::new(rig.builder().renew_failure_counter(c).build().unwrap()).unwrap();
    m.start();
    let (created, attempts) = one_hour(&rig, &failures, HOUR);
    let (created2, attempts2) = one_hour(&rig, &failures, HOUR);
    let (created2, attempts2) = (created2 - created, attempts2 - attempts);
    println!(
        "never approved: {created} CSR(s) and {attempts} failed attempts in the first simulated hour, {created2} CSR(s) and {attempts2} in the second; at most {} pending at once",
        rig.api.max_outstanding()
    );
    assert_eq!((created, created2), (1, 0));
    assert!((3..=4).contains(&attempts) && (3..=4).contains(&attempts2));
    assert_eq!(rig.api.max_outstanding(), 1);
    let waited: Vec<_> = std::iter::from_fn(|| rig.api.events().try_recv().ok())
        .filter_map(|e| match e {
            ApiEvent::WaitStarted(name) => Some(name),
            _ => None,
        })
        .collect();
    assert!(
        waited.len() >= 7 && waited.iter().all(|n| n == "csr-1"),
        "{waited:?}"
    );
    m.stop();
}

/// Subscribing and dropping in a loop keeps only live subscriptions: the manager's list is
/// pruned at every subscribe and rotation, so its size follows live subscribers.
#[test]
fn dropped_subscriptions_are_forgotten() {
    let rig = Rig::new();
    let m = rig.manager();
    for _ in 0..100_000 {
        drop(m.subscribe());
    }
    assert!(m.subscriber_entries() <= 1, "{}", m.subscriber_entries());
    let live: Vec<_> = (0..3).map(|_| m.subscribe()).collect();
    let cloned = live[0].clone();
    for _ in 0..1000 {
        drop(m.subscribe());
    }
    assert!(m.subscriber_entries() <= 4, "{}", m.subscriber_entries());
    drop(live);
    m.rotate_now().unwrap();
    // Only the clone of the first subscription is alive; it still receives.
    assert_eq!(m.subscriber_entries(), 1);
    assert!(same(cloned.try_recv().ok(), &m.current().unwrap()));
}

/// A subscriber that does not read while several rotations happen then receives the newest
/// certificate, once: latest wins, never a stale backlog.
#[test]
fn a_lagging_subscriber_receives_the_newest_certificate() {
    let rig = Rig::new();
    let m = rig.manager();
    let rotations = m.subscribe();
    for _ in 0..10 {
        m.rotate_now().unwrap();
    }
    let newest = m.current().unwrap();
    let got: Vec<_> = rotations.try_iter().collect();
    assert_eq!(got.len(), 1, "one certificate waiting");
    assert!(same(got.into_iter().next(), &newest));
    m.rotate_now().unwrap();
    assert!(same(rotations.try_recv().ok(), &m.current().unwrap()));
}
