//! The kubelet presets end to end against the embedded CSR API server, with a fake clock shared
//! by the server and the managers: TLS bootstrap from a bootstrap token, the client and serving
//! managers, address changes, restarts in the middle of bootstrap, usages per key type, and
//! expired or corrupt certificates on disk (CASES C3, C7, C14, C17, C18).
//!
//! Nothing sleeps to wait: the server's approval predicate reports every new CSR on a channel,
//! managers report rotations through `subscribe()`, and the fake clock says when a thread is
//! asleep on a timer.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certrotate::csr::{CsrClient, CsrError, CsrRequest};
use certrotate::kubeconfig::Kubeconfig;
use certrotate::kubelet::bootstrap::{
    self, BootstrapError, BootstrapOptions, TMP_KEY_FILE, bootstrap_usages, csr_name,
};
use certrotate::kubelet::{
    self, CLIENT_SIGNER, NodeAddress, NodeAddressType, Options, SERVING_SIGNER, node_identity,
};
use certrotate::pki::{self, Certificate, KeyAlgorithm, PrivateKey};
use certrotate::server::{ApprovalPolicy, Call, CsrApiServer, Fault, Identity};
use certrotate::testing::FakeClock;
use certrotate::{Cancel, CancelReason, Clock, Error, FileStore, KeyUsage, Manager, Store};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

const NODE: &str = "node-1";
const NODE_USER: &str = "system:node:node-1";
const TOKEN_ID: &str = "abcdef";
const TOKEN_SECRET: &str = "0123456789abcdef";
const BOOTSTRAP_USER: &str = "system:bootstrap:abcdef";
/// Bound on every wait for something the code under test does.
const T: Duration = Duration::from_secs(20);
const MIN: Duration = Duration::from_secs(60);

/// 2030-01-01T00:00:00Z.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

/// A CSR as the server's approver saw it when it was created.
#[derive(Clone, Debug)]
struct Created {
    name: String,
    signer: String,
    user: String,
    usages: Vec<String>,
    ips: Vec<IpAddr>,
}

/// The embedded server on a fake clock, a temporary node directory, and the approver's reports.
struct Env {
    server: CsrApiServer,
    clock: FakeClock,
    dir: tempfile::TempDir,
    created: Receiver<Created>,
    /// Nothing is approved while set (an administrator approves by hand).
    manual: Arc<AtomicBool>,
    /// Serving CSRs are left pending while set.
    hold_serving: Arc<AtomicBool>,
}

impl Env {
    /// Certificates live 1 h (NotBefore 5 min back); kubeconfig client certificates `client_life`.
    fn with_client_cert_lifetime(client_life: Duration) -> Env {
        // Logs (RUST_LOG=…) are captured per test and shown when it fails.
        let _ = env_logger::builder().is_test(true).try_init();
        let clock = FakeClock::new(t0());
        let manual = Arc::new(AtomicBool::new(false));
        let hold_serving = Arc::new(AtomicBool::new(false));
        let (tx, created): (Sender<Created>, _) = crossbeam_channel::unbounded();
        let (m, h) = (manual.clone(), hold_serving.clone());
        let policy = ApprovalPolicy::predicate(move |csr| {
            let parsed = pki::parse_csr_pem(&csr.spec.request).unwrap();
            let signer = csr.spec.signer_name.clone().unwrap_or_default();
            // Decide before reporting: a test may change the flags as soon as it hears of it.
            let held =
                m.load(Ordering::SeqCst) || (signer == SERVING_SIGNER && h.load(Ordering::SeqCst));
            let _ = tx.send(Created {
                name: csr.metadata.name.clone().unwrap_or_default(),
                user: csr.spec.username.clone().unwrap_or_default(),
                usages: csr.spec.usages.clone(),
                ips: parsed.ip_addresses,
                signer,
            });
            !held
        });
        let server = CsrApiServer::builder()
            .clock(Arc::new(clock.clone()))
            .approval_policy(policy)
            .bootstrap_token(TOKEN_ID, TOKEN_SECRET)
            .max_lifetime(Duration::from_secs(3600))
            .client_cert_lifetime(client_life)
            .start()
            .unwrap();
        Env {
            server,
            clock,
            dir: tempfile::tempdir().unwrap(),
            created,
            manual,
            hold_serving,
        }
    }

    fn new() -> Env {
        Env::with_client_cert_lifetime(Duration::from_secs(365 * 86_400))
    }

    fn manual() -> Env {
        let env = Env::new();
        env.manual.store(true, Ordering::SeqCst);
        env
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    fn key_file(&self) -> PathBuf {
        self.cert_dir().join(TMP_KEY_FILE)
    }

    /// Writes the bootstrap kubeconfig (the bootstrap token, the server's CA inline).
    fn bootstrap_kubeconfig(&self) -> PathBuf {
        let path = self.dir.path().join("bootstrap-kubeconfig");
        let yaml = self
            .server
            .kubeconfig(&Identity::bootstrap_token(TOKEN_ID, TOKEN_SECRET))
            .unwrap();
        fs::write(&path, yaml).unwrap();
        path
    }

    fn options(&self) -> Options {
        Options {
            clock: Some(Arc::new(self.clock.clone())),
            ..Options::default()
        }
    }

    fn boot_options(&self) -> BootstrapOptions {
        BootstrapOptions {
            clock: Some(Arc::new(self.clock.clone())),
            ..BootstrapOptions::default()
        }
    }

    /// The next CSR the server saw created.
    fn next_created(&self) -> Created {
        self.created
            .recv_timeout(T)
            .expect("the server saw no new CSR in time")
    }

    fn no_more_created(&self) {
        assert!(
            self.created.try_recv().is_err(),
            "unexpected extra CSR on the server"
        );
    }

    fn store(&self) -> FileStore {
        FileStore::builder(kubelet::CLIENT_PREFIX, self.cert_dir(), self.cert_dir())
            .build()
            .unwrap()
    }

    /// One-shot bootstrap on another thread; returns the handle, the cancel signal and the
    /// channel the CSR name arrives on once the CSR exists.
    fn spawn_one_shot(&self, boot: &Path) -> OneShot {
        let cancel = Cancel::new();
        let (tx, rx) = crossbeam_channel::unbounded();
        let options = BootstrapOptions {
            cancel: Some(cancel.clone()),
            on_request: Some(Arc::new(move |csr| {
                let _ = tx.send(csr.name.clone());
            })),
            ..self.boot_options()
        };
        let (kc, boot, dir) = (self.kubeconfig(), boot.to_owned(), self.cert_dir());
        let handle =
            thread::spawn(move || bootstrap::load_client_cert_with(kc, boot, dir, NODE, &options));
        OneShot {
            handle,
            cancel,
            requested: rx,
        }
    }
}

struct OneShot {
    handle: thread::JoinHandle<Result<Option<Certificate>, BootstrapError>>,
    cancel: Cancel,
    requested: Receiver<String>,
}

impl OneShot {
    fn csr_name(&self) -> String {
        self.requested.recv_timeout(T).expect("no CSR requested")
    }

    fn join(self) -> Result<Option<Certificate>, BootstrapError> {
        self.handle.join().unwrap()
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn ips(v: &[&str]) -> Vec<IpAddr> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

/// Lets the serving manager's template poller run once: waits until it sleeps on its 1 s timer,
/// then moves the clock by one poll interval.
fn poll_once(clock: &FakeClock) {
    assert!(
        clock.wait_for_timer_within(Duration::from_secs(1), T),
        "the template poller is not asleep"
    );
    clock.advance(Duration::from_secs(1));
}

/// The next rotation from `rx` after the clock jumped. A manager thread that read the clock
/// just before the jump arms its timer just after it, relative to the new time; each nudge of
/// one sleep slice (60 s) wakes such a thread, which then sees the real time. Nothing is
/// nudged when the rotation arrives within half a second.
fn recv_nudging<M>(clock: &FakeClock, rx: &Receiver<M>) -> M {
    for _ in 0..10 {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(m) => return m,
            Err(_) => clock.advance(MIN),
        }
    }
    panic!("no rotation after ten nudges of the clock")
}

/// The whole node: bootstrap token → client certificate → serving certificate for the node's
/// addresses → two address changes, the first request left pending and its wait cancelled by
/// the second → renewals of both, always as the node → the first client certificate expires
/// and renewals go on with the second (C17, C18).
#[test]
fn node_story_from_bootstrap_token_to_renewals() {
    let env = Env::new();
    let boot = env.bootstrap_kubeconfig();

    // TLS bootstrap, rotation mode: no kubeconfig yet, so the bootstrap token is used and the
    // kubeconfig is written to point at the client store.
    let cfg = bootstrap::load_client_config_with(
        env.kubeconfig(),
        Some(&boot),
        env.cert_dir(),
        &env.boot_options(),
    )
    .unwrap();
    assert!(cfg.bootstrapping);
    assert!(cfg.bootstrap_pair.is_none());
    assert_eq!(mode(&env.kubeconfig()), 0o600);
    let client = Arc::new(cfg.client_manager(NODE, env.options()).unwrap());
    assert!(client.current().is_none());
    let client_rx = client.subscribe();
    client.start();
    let a = client_rx.recv_timeout(T).expect("first client certificate");
    let c = env.next_created();
    assert_eq!(
        (c.user.as_str(), c.signer.as_str()),
        (BOOTSTRAP_USER, CLIENT_SIGNER)
    );
    assert_eq!(c.usages, ["digital signature", "client auth"]);
    assert_eq!(a.common_name(), NODE_USER);
    assert_eq!(a.organizations(), ["system:nodes"]);
    assert!(a.ip_addresses().is_empty() && a.dns_names().is_empty());
    assert_eq!(env.store().current().unwrap().unwrap(), *a);
    // The written kubeconfig is now valid: a one-shot bootstrap has nothing to do.
    assert!(
        bootstrap::load_client_cert_with(
            env.kubeconfig(),
            &boot,
            env.cert_dir(),
            NODE,
            &env.boot_options()
        )
        .unwrap()
        .is_none()
    );

    // The serving certificate, requested as the node, for the node's addresses.
    let addresses = Arc::new(Mutex::new(vec![
        NodeAddress::new(NodeAddressType::Hostname, NODE),
        NodeAddress::new(NodeAddressType::InternalIp, "10.0.0.7"),
    ]));
    let source = addresses.clone();
    let serving = kubelet::serving_manager(
        NODE,
        move || source.lock().clone(),
        env.cert_dir(),
        kubelet::serving_factory(cfg.cert_config.clone(), client.clone()),
        env.options(),
    )
    .unwrap();
    let serving_rx = serving.subscribe();
    serving.start();
    let s1 = serving_rx
        .recv_timeout(T)
        .expect("first serving certificate");
    let c = env.next_created();
    assert_eq!(
        (c.user.as_str(), c.signer.as_str()),
        (NODE_USER, SERVING_SIGNER)
    );
    assert_eq!(c.usages, ["digital signature", "server auth"]);
    assert_eq!(s1.common_name(), NODE_USER);
    assert_eq!(s1.dns_names(), [NODE]);
    assert_eq!(s1.ip_addresses(), ips(&["10.0.0.7"]));
    assert!(env.cert_dir().join("kubelet-server-current.pem").exists());

    // The node gains an address; nobody approves the request for it yet. (Once the managers
    // are asleep — the client and serving rotation threads and the template poller — so that
    // only the poller notices the change.)
    assert!(env.clock.wait_for_waiters(3, T), "managers asleep");
    env.hold_serving.store(true, Ordering::SeqCst);
    addresses
        .lock()
        .push(NodeAddress::new(NodeAddressType::ExternalIp, "192.0.2.8"));
    poll_once(&env.clock);
    let pending = env.next_created();
    assert_eq!(pending.ips, ips(&["10.0.0.7", "192.0.2.8"]));
    assert_eq!(pending.user, NODE_USER);

    // The address changes again before approval: within one poll interval the wait for the
    // outdated request is cancelled and the new addresses are requested.
    addresses.lock()[2] = NodeAddress::new(NodeAddressType::ExternalIp, "192.0.2.9");
    env.hold_serving.store(false, Ordering::SeqCst);
    poll_once(&env.clock);
    let c = env.next_created();
    assert_eq!(c.ips, ips(&["10.0.0.7", "192.0.2.9"]));
    let s2 = serving_rx
        .recv_timeout(T)
        .expect("serving certificate for the new address");
    assert_eq!(s2.ip_addresses(), ips(&["10.0.0.7", "192.0.2.9"]));
    assert_eq!(serving.current().as_deref(), Some(&*s2));
    let left = env.server.csr(&pending.name).unwrap();
    assert!(
        left.status
            .is_none_or(|s| s.conditions.is_empty() && s.certificate.is_none()),
        "the outdated request stays pending, nobody waits for it"
    );
    env.no_more_created();

    // Past the rotation deadlines (70–90 % of 65 min from NotBefore), before any NotAfter:
    // both certificates are renewed, as the node.
    assert!(env.clock.wait_for_waiters(3, T), "managers asleep");
    env.clock.advance(58 * MIN);
    let b = recv_nudging(&env.clock, &client_rx);
    let s3 = recv_nudging(&env.clock, &serving_rx);
    assert_ne!(b.serial_hex(), a.serial_hex());
    assert_eq!(s3.ip_addresses(), ips(&["10.0.0.7", "192.0.2.9"]));
    for _ in 0..2 {
        assert_eq!(env.next_created().user, NODE_USER);
    }

    // C18: the first client certificate expires. The server refuses it from now on, and the
    // serving manager's next request goes out with the renewed one.
    env.clock.advance(3 * MIN);
    assert!(
        client
            .current()
            .is_some_and(|c| c.serial_hex() == b.serial_hex())
    );
    let stale = cfg.cert_config.client_for(Some(&a)).unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let template = node_identity(NODE).with_ip_address("10.0.0.7".parse().unwrap());
    let refused = stale
        .create(
            &CsrRequest {
                name: None,
                csr_pem: pki::build_csr_pem(&template, &key).unwrap(),
                signer_name: SERVING_SIGNER.into(),
                usages: vec![KeyUsage::DigitalSignature, KeyUsage::ServerAuth],
                requested_lifetime: None,
                public_key_der: key.public_key_der(),
            },
            &Cancel::new(),
        )
        .unwrap_err();
    assert!(
        matches!(&refused, CsrError::Api { error, .. } if error.code == 401),
        "{refused}"
    );
    let s4 = serving
        .rotate_now()
        .expect("serving renewal with the renewed client cert");
    assert_eq!(env.next_created().user, NODE_USER);
    assert_eq!(
        serving_rx.recv_timeout(T).unwrap().serial_hex(),
        s4.serial_hex()
    );

    // Every CSR after the first was sent as the node.
    let users: Vec<_> = env
        .server
        .csrs()
        .iter()
        .map(|c| c.spec.username.clone().unwrap_or_default())
        .collect();
    assert_eq!(users.len(), 7, "{users:?}");
    assert_eq!(users.iter().filter(|u| *u == BOOTSTRAP_USER).count(), 1);
    assert_eq!(users.iter().filter(|u| *u == NODE_USER).count(), 6);
    serving.stop();
    client.stop();
}

/// A one-shot bootstrap stopped while its create hangs (a server that takes the request and
/// does not answer) returns at once with a cancelled request, as the manager's rotation does,
/// instead of waiting for the server; the key is kept for the next run. (The bootstrap's create
/// used to look at the cancel only before sending, then wait for the answer.)
#[test]
fn a_cancel_interrupts_a_bootstrap_create_that_hangs() {
    let env = Env::manual();
    let boot = env.bootstrap_kubeconfig();
    env.server
        .inject(Call::Create, Fault::Delay(Duration::from_secs(120)), 1);
    let one = env.spawn_one_shot(&boot);
    let taken = std::time::Instant::now() + T;
    while env.server.fault_counts().delayed == 0 {
        assert!(
            std::time::Instant::now() < taken,
            "the server never got the create"
        );
        thread::sleep(Duration::from_millis(5));
    }
    one.cancel.cancel(CancelReason::Stopped);
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let _ = tx.send(one.join());
    });
    let err = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the bootstrap returns within 10 s of the cancel")
        .unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert!(env.key_file().exists(), "the key is kept");
}

/// A node restarted twice while its bootstrap CSR waits for an administrator: every run uses
/// the same kept key and finds its own CSR by name; the server holds exactly one CSR.
#[test]
fn restarts_in_the_middle_of_bootstrap_reuse_the_key_and_the_csr() {
    let env = Env::manual();
    let boot = env.bootstrap_kubeconfig();
    let mut names = Vec::new();
    let mut keys = Vec::new();
    for run in 0..3 {
        let one = env.spawn_one_shot(&boot);
        let name = one.csr_name();
        keys.push(fs::read(env.key_file()).unwrap());
        assert_eq!(mode(&env.key_file()), 0o600, "run {run}");
        if run < 2 {
            // The process is stopped while it waits.
            one.cancel.cancel(CancelReason::Stopped);
            let err = one.join().unwrap_err();
            assert!(err.is_cancelled(), "run {run}: {err}");
            assert!(env.key_file().exists(), "run {run}: the key is kept");
        } else {
            env.server.approve(&name).unwrap();
            let cert = one.join().unwrap().expect("a certificate");
            let key = PrivateKey::from_pem(&keys[0]).unwrap();
            assert_eq!(cert.private_key().public_key_der(), key.public_key_der());
            assert_eq!(cert.common_name(), NODE_USER);
        }
        names.push(name);
    }
    assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
    assert!(keys.iter().all(|k| *k == keys[0]), "the same key every run");
    let key = PrivateKey::from_pem(&keys[0]).unwrap();
    assert_eq!(
        names[0],
        csr_name(
            &key.public_key_der(),
            &node_identity(NODE),
            &bootstrap_usages(key.algorithm())
        )
    );
    let csrs = env.server.csrs();
    assert_eq!(csrs.len(), 1, "exactly one CSR after three runs");
    assert_eq!(csrs[0].spec.username.as_deref(), Some(BOOTSTRAP_USER));
    assert_eq!(env.next_created().name, names[0]);
    env.no_more_created();
    // Done: the key file is gone, the pair is stored, the kubeconfig is valid.
    assert!(!env.key_file().exists());
    let stored = env.store().current().unwrap().unwrap();
    assert_eq!(stored.private_key().public_key_der(), key.public_key_der());
    assert!(
        bootstrap::load_client_cert_with(
            env.kubeconfig(),
            &boot,
            env.cert_dir(),
            NODE,
            &env.boot_options()
        )
        .unwrap()
        .is_none()
    );
    assert_eq!(env.server.csrs().len(), 1);
}

/// A denied bootstrap CSR cannot be asked again under the same name: the kept key is dropped
/// and the next run sends a new CSR with a new key (C11).
#[test]
fn a_denied_bootstrap_csr_is_not_retried_with_the_same_key() {
    let env = Env::manual();
    let boot = env.bootstrap_kubeconfig();
    let one = env.spawn_one_shot(&boot);
    let first = one.csr_name();
    env.server.deny(&first, "NotThisNode").unwrap();
    let err = one.join().unwrap_err();
    assert!(
        matches!(err.csr_error(), Some(CsrError::Denied { .. })),
        "{err}"
    );
    assert!(
        !env.key_file().exists(),
        "the key of a denied CSR is dropped"
    );

    let two = env.spawn_one_shot(&boot);
    let second = two.csr_name();
    assert_ne!(first, second);
    env.server.approve(&second).unwrap();
    assert!(two.join().unwrap().is_some());
    assert_eq!(env.server.csrs().len(), 2);
}

/// A key file that does not parse is an error, never silently replaced (the CSR name depends
/// on it).
#[test]
fn a_corrupt_bootstrap_key_file_is_an_error() {
    let env = Env::new();
    let boot = env.bootstrap_kubeconfig();
    fs::create_dir_all(env.cert_dir()).unwrap();
    fs::write(
        env.key_file(),
        b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = bootstrap::load_client_cert_with(
        env.kubeconfig(),
        &boot,
        env.cert_dir(),
        NODE,
        &env.boot_options(),
    )
    .unwrap_err();
    assert!(matches!(err, BootstrapError::Key { .. }), "{err}");
    assert!(err.to_string().contains(TMP_KEY_FILE), "{err}");
    assert!(env.server.csrs().is_empty());
}

/// The RSA-2048 fixture key (the `ring` backend cannot generate RSA keys).
fn rsa_key() -> PrivateKey {
    let key = PrivateKey::from_pem(include_bytes!("fixtures/two-certs.key")).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::Rsa { bits: 2048 });
    key
}

/// C14: the usages the server receives from each manager, per key type; key encipherment only
/// for RSA, never twice; and the override for servers older than 1.27.
#[test]
fn c14_usages_per_key_type_as_the_server_sees_them() {
    const DS: &str = "digital signature";
    const KE: &str = "key encipherment";
    let node_cert = |env: &Env| {
        let yaml = env
            .server
            .kubeconfig(&Identity::client_cert(NODE_USER, &["system:nodes"]))
            .unwrap();
        Kubeconfig::from_slice(yaml.as_bytes(), env.dir.path())
            .unwrap()
            .client_builder(None)
            .unwrap()
    };
    type Keys = fn(&mut Options);
    let cases: [(&str, Keys, &[&str], &[&str]); 4] = [
        (
            "ECDSA P-256 (default)",
            |_| {},
            &[DS, "client auth"],
            &[DS, "server auth"],
        ),
        (
            "ECDSA P-384",
            |o| o.key_algorithm = Some(KeyAlgorithm::EcdsaP384),
            &[DS, "client auth"],
            &[DS, "server auth"],
        ),
        (
            "RSA-2048 from a generator",
            |o| o.key_generator = Some(Arc::new(|| Ok::<_, certrotate::BoxError>(rsa_key()))),
            &[DS, KE, "client auth"],
            &[DS, KE, "server auth"],
        ),
        (
            "ECDSA with the pre-1.27 override",
            |o| {
                o.usages_override = Some(vec![
                    KeyUsage::DigitalSignature,
                    KeyUsage::KeyEncipherment,
                    KeyUsage::ClientAuth,
                ])
            },
            &[DS, KE, "client auth"],
            &[],
        ),
    ];
    for (name, keys, client_want, serving_want) in cases {
        let env = Env::new();
        let mut options = env.options();
        keys(&mut options);
        let boot = env.bootstrap_kubeconfig();
        let cfg = bootstrap::load_client_config_with(
            env.kubeconfig(),
            Some(&boot),
            env.cert_dir(),
            &env.boot_options(),
        )
        .unwrap();
        let client = cfg.client_manager(NODE, options.clone()).unwrap();
        let cert = client
            .rotate_now()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = env.next_created();
        assert_eq!(c.usages, client_want, "{name}: client");
        assert_eq!(c.signer, CLIENT_SIGNER, "{name}");
        assert_eq!(cert.common_name(), NODE_USER, "{name}");
        if serving_want.is_empty() {
            continue;
        }
        let serving = kubelet::serving_manager(
            NODE,
            || vec![NodeAddress::new(NodeAddressType::InternalIp, "10.0.0.7")],
            env.cert_dir(),
            kubelet::client_factory(node_cert(&env)),
            options,
        )
        .unwrap();
        serving
            .rotate_now()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = env.next_created();
        assert_eq!(c.usages, serving_want, "{name}: serving");
        assert_eq!(c.signer, SERVING_SIGNER, "{name}");
    }
}

/// One-shot bootstrap with an RSA key kept from an earlier run: key encipherment is appended,
/// in the kubelet's order, and the name follows.
#[test]
fn c14_one_shot_bootstrap_with_an_rsa_key() {
    let env = Env::new();
    let boot = env.bootstrap_kubeconfig();
    fs::create_dir_all(env.cert_dir()).unwrap();
    fs::write(env.key_file(), rsa_key().to_pem()).unwrap();
    let cert = bootstrap::load_client_cert_with(
        env.kubeconfig(),
        &boot,
        env.cert_dir(),
        NODE,
        &env.boot_options(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        cert.private_key().algorithm(),
        KeyAlgorithm::Rsa { bits: 2048 }
    );
    let c = env.next_created();
    assert_eq!(
        c.usages,
        ["digital signature", "client auth", "key encipherment"]
    );
    assert_eq!(
        c.name,
        csr_name(
            &rsa_key().public_key_der(),
            &node_identity(NODE),
            &bootstrap_usages(KeyAlgorithm::Rsa { bits: 2048 })
        )
    );
}

/// C3: the node was off overnight and its 1 h client certificate expired. Bootstrap runs again
/// with the token; the expired certificate is never served nor used to authenticate.
#[test]
fn c3_expired_client_certificate_on_disk_goes_back_to_bootstrap() {
    let env = Env::new();
    let boot = env.bootstrap_kubeconfig();
    let load = || {
        bootstrap::load_client_config_with(
            env.kubeconfig(),
            Some(&boot),
            env.cert_dir(),
            &env.boot_options(),
        )
        .unwrap()
    };
    let first = load().client_manager(NODE, env.options()).unwrap();
    let a = first.rotate_now().unwrap();
    assert_eq!(env.next_created().user, BOOTSTRAP_USER);
    drop(first);
    assert!(!load().bootstrapping, "valid while the certificate is");

    env.clock.advance(2 * 60 * MIN);
    let cfg = load();
    assert!(
        cfg.bootstrapping,
        "an expired certificate invalidates the kubeconfig"
    );
    let client = cfg.client_manager(NODE, env.options()).unwrap();
    assert!(
        client.current().is_none(),
        "the expired certificate is not served"
    );
    let rx = client.subscribe();
    client.start();
    let b = rx.recv_timeout(T).unwrap();
    assert_eq!(
        env.next_created().user,
        BOOTSTRAP_USER,
        "bootstrap credentials, not the expired certificate"
    );
    assert_ne!(a.serial_hex(), b.serial_hex());
    assert!(b.not_after() > env.clock.now());
    client.stop();
    assert!(!load().bootstrapping);

    // One-shot mode does the same, and does not reuse the expired pair's key either.
    env.clock.advance(2 * 60 * MIN);
    let c = bootstrap::load_client_cert_with(
        env.kubeconfig(),
        &boot,
        env.cert_dir(),
        NODE,
        &env.boot_options(),
    )
    .unwrap()
    .expect("a new certificate");
    assert_eq!(env.next_created().user, BOOTSTRAP_USER);
    assert_ne!(
        c.private_key().public_key_der(),
        b.private_key().public_key_der()
    );
}

/// C3 with kubeadm's inline credential: a valid one is the client manager's bootstrap pair,
/// rotated at once; an expired one sends the node through bootstrap.
#[test]
fn c3_inline_kubeconfig_credentials_valid_then_expired() {
    let env = Env::with_client_cert_lifetime(60 * MIN);
    let boot = env.bootstrap_kubeconfig();
    let yaml = env
        .server
        .kubeconfig(&Identity::client_cert(NODE_USER, &["system:nodes"]))
        .unwrap();
    fs::write(env.kubeconfig(), &yaml).unwrap();

    let cfg = bootstrap::load_client_config_with(
        env.kubeconfig(),
        Some(&boot),
        env.cert_dir(),
        &env.boot_options(),
    )
    .unwrap();
    assert!(!cfg.bootstrapping);
    let (cert_pem, key_pem) = cfg.bootstrap_pair.clone().expect("the inline pair");
    let inline = Certificate::from_pem(&cert_pem, &key_pem).unwrap();
    let client = cfg.client_manager(NODE, env.options()).unwrap();
    assert_eq!(client.current().as_deref(), Some(&inline));
    let rotated = client.rotate_now().unwrap();
    assert_eq!(
        env.next_created().user,
        NODE_USER,
        "requested with the inline credential"
    );
    assert_ne!(rotated.serial_hex(), inline.serial_hex());
    drop(client);
    assert_eq!(
        fs::read_to_string(env.kubeconfig()).unwrap(),
        yaml,
        "left as is"
    );

    env.clock.advance(2 * 60 * MIN);
    let cfg = bootstrap::load_client_config_with(
        env.kubeconfig(),
        Some(&boot),
        env.cert_dir(),
        &env.boot_options(),
    )
    .unwrap();
    assert!(cfg.bootstrapping);
    assert!(cfg.bootstrap_pair.is_none());
    assert_ne!(
        fs::read_to_string(env.kubeconfig()).unwrap(),
        yaml,
        "rewritten"
    );
}

/// C3/C7: a corrupt pair behind `kubelet-client-current.pem` (emptied, half-written, the key of
/// another certificate) never counts as valid: bootstrap runs and the store is repaired.
#[test]
fn c7_corrupt_client_pair_on_disk_goes_back_to_bootstrap() {
    let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    type Corrupt = fn(&Certificate, &PrivateKey) -> Vec<u8>;
    let corruptions: [(&str, Corrupt); 3] = [
        ("empty", |_, _| Vec::new()),
        ("certificate without its key", |c, _| {
            c.cert_pem().as_bytes().to_vec()
        }),
        ("another key", |c, k| {
            format!("{}{}", c.cert_pem(), k.to_pem()).into_bytes()
        }),
    ];
    for (name, corrupt) in corruptions {
        let env = Env::new();
        let boot = env.bootstrap_kubeconfig();
        let one_shot = || {
            bootstrap::load_client_cert_with(
                env.kubeconfig(),
                &boot,
                env.cert_dir(),
                NODE,
                &env.boot_options(),
            )
        };
        let a = one_shot().unwrap().unwrap();
        let _ = env.next_created();
        let target = fs::canonicalize(env.store().current_path()).unwrap();
        fs::write(&target, corrupt(&a, &other)).unwrap();

        let cfg = bootstrap::load_client_config_with(
            env.kubeconfig(),
            Some(&boot),
            env.cert_dir(),
            &env.boot_options(),
        )
        .unwrap();
        assert!(cfg.bootstrapping, "{name}: rotation mode bootstraps");
        let b = one_shot()
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: one-shot bootstraps"));
        assert_eq!(env.next_created().user, BOOTSTRAP_USER, "{name}");
        assert_ne!(a.serial_hex(), b.serial_hex(), "{name}");
        assert_eq!(
            env.store().current().unwrap().unwrap(),
            b,
            "{name}: store repaired"
        );
        assert!(one_shot().unwrap().is_none(), "{name}: valid again");
    }
}

/// The written kubeconfig: the layout and names of the kubelet's, mode 0600, its directory
/// created 0755, and usable as is (it loads and authenticates as the node).
#[test]
fn the_written_kubeconfig_points_at_the_client_store() {
    let env = Env::new();
    let boot = env.bootstrap_kubeconfig();
    let kubeconfig = env
        .dir
        .path()
        .join("etc")
        .join("kubelet")
        .join("kubeconfig");
    let cfg = bootstrap::load_client_config_with(
        &kubeconfig,
        Some(&boot),
        env.cert_dir(),
        &env.boot_options(),
    )
    .unwrap();
    assert!(cfg.bootstrapping);
    assert_eq!(mode(&kubeconfig), 0o600);
    let parent_mode = mode(kubeconfig.parent().unwrap());
    assert_eq!(parent_mode & 0o700, 0o700);
    assert_eq!(parent_mode & 0o022, 0, "not group- or world-writable");

    let doc: serde_norway::Value =
        serde_norway::from_str(&fs::read_to_string(&kubeconfig).unwrap()).unwrap();
    let pem = env.cert_dir().join("kubelet-client-current.pem");
    let pem = std::path::absolute(pem).unwrap();
    let pem = pem.to_str().unwrap();
    assert_eq!(doc["current-context"].as_str(), Some("default-context"));
    let ctx = &doc["contexts"][0];
    assert_eq!(ctx["name"].as_str(), Some("default-context"));
    assert_eq!(ctx["context"]["cluster"].as_str(), Some("default-cluster"));
    assert_eq!(ctx["context"]["user"].as_str(), Some("default-auth"));
    assert_eq!(ctx["context"]["namespace"].as_str(), Some("default"));
    let cluster = &doc["clusters"][0];
    assert_eq!(cluster["name"].as_str(), Some("default-cluster"));
    assert_eq!(
        cluster["cluster"]["server"].as_str(),
        Some(env.server.url())
    );
    assert!(cluster["cluster"]["certificate-authority-data"].is_string());
    assert!(cluster["cluster"].get("insecure-skip-tls-verify").is_none());
    let user = &doc["users"][0];
    assert_eq!(user["name"].as_str(), Some("default-auth"));
    assert_eq!(user["user"]["client-certificate"].as_str(), Some(pem));
    assert_eq!(user["user"]["client-key"].as_str(), Some(pem));
    assert!(
        user["user"].get("token").is_none(),
        "the bootstrap token is not copied"
    );

    // Once the client manager has a certificate, the kubeconfig authenticates as the node.
    let client = cfg.client_manager(NODE, env.options()).unwrap();
    client.rotate_now().unwrap();
    let _ = env.next_created();
    let node = Kubeconfig::load(&kubeconfig)
        .unwrap()
        .client_builder(None)
        .unwrap()
        .build()
        .unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    node.create(
        &CsrRequest {
            name: None,
            csr_pem: pki::build_csr_pem(&node_identity(NODE), &key).unwrap(),
            signer_name: CLIENT_SIGNER.into(),
            usages: vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth],
            requested_lifetime: None,
            public_key_der: key.public_key_der(),
        },
        &Cancel::new(),
    )
    .unwrap();
    assert_eq!(env.next_created().user, NODE_USER);
}

/// Without a bootstrap kubeconfig the kubeconfig is used for everything; a missing one is an
/// error, and so is a kubeconfig path that cannot be looked at.
#[test]
fn without_a_bootstrap_kubeconfig_the_kubeconfig_is_used() {
    let env = Env::new();
    let err = bootstrap::load_client_config_with(
        env.kubeconfig(),
        None,
        env.cert_dir(),
        &env.boot_options(),
    )
    .unwrap_err();
    assert!(
        matches!(err, BootstrapError::LoadKubeconfig { .. }),
        "{err}"
    );

    let boot = env.bootstrap_kubeconfig();
    let cfg = bootstrap::load_client_config_with(&boot, None, env.cert_dir(), &env.boot_options())
        .unwrap();
    assert!(!cfg.bootstrapping);
    assert!(cfg.bootstrap_pair.is_none());
    let client = cfg.client_manager(NODE, env.options()).unwrap();
    client.rotate_now().unwrap();
    assert_eq!(env.next_created().user, BOOTSTRAP_USER);

    // A path below a regular file: looking at it fails other than with "not found".
    let below_file = boot.join("kubeconfig");
    let err = bootstrap::load_client_config_with(
        &below_file,
        Some(&boot),
        env.cert_dir(),
        &env.boot_options(),
    )
    .unwrap_err();
    assert!(
        matches!(err, BootstrapError::ReadKubeconfig { .. }),
        "{err}"
    );
}

/// Serving CSRs are never sent with bootstrap credentials: while the client manager has no
/// certificate, the serving manager's attempt fails before reaching the API.
#[test]
fn serving_requests_wait_for_a_client_certificate() {
    let env = Env::new();
    let boot = env.bootstrap_kubeconfig();
    let cfg = bootstrap::load_client_config_with(
        env.kubeconfig(),
        Some(&boot),
        env.cert_dir(),
        &env.boot_options(),
    )
    .unwrap();
    let client = Arc::new(cfg.client_manager(NODE, env.options()).unwrap());
    let serving = kubelet::serving_manager(
        NODE,
        || vec![NodeAddress::new(NodeAddressType::InternalIp, "10.0.0.7")],
        env.cert_dir(),
        kubelet::serving_factory(cfg.cert_config.clone(), client.clone()),
        env.options(),
    )
    .unwrap();
    let err = serving.rotate_now().unwrap_err();
    assert!(matches!(err, Error::ClientFactory(_)), "{err}");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause
            .as_deref()
            .unwrap_or("")
            .contains("no valid client certificate"),
        "{err}: {cause:?}"
    );
    assert!(env.server.csrs().is_empty());

    client.rotate_now().unwrap();
    assert_eq!(env.next_created().user, BOOTSTRAP_USER);
    serving.rotate_now().unwrap();
    assert_eq!(env.next_created().user, NODE_USER);
}

/// The kubeconfig is lost but the stored pair is fine: one-shot bootstrap keeps the stored key,
/// so it finds its own issued CSR by name and stores the same certificate again, without a new
/// CSR.
#[test]
fn a_lost_kubeconfig_with_a_valid_stored_pair_adopts_the_issued_csr() {
    let env = Env::new();
    let boot = env.bootstrap_kubeconfig();
    let one_shot = || {
        bootstrap::load_client_cert_with(
            env.kubeconfig(),
            &boot,
            env.cert_dir(),
            NODE,
            &env.boot_options(),
        )
    };
    let a = one_shot().unwrap().unwrap();
    assert_eq!(env.next_created().user, BOOTSTRAP_USER);
    fs::remove_file(env.kubeconfig()).unwrap();
    let again = one_shot().unwrap().expect("bootstrapped again");
    assert_eq!(again, a, "the issued certificate of the adopted CSR");
    env.no_more_created();
    assert_eq!(env.server.csrs().len(), 1);
    assert!(!env.key_file().exists(), "no key file was needed");
    assert!(one_shot().unwrap().is_none());
}

/// The API server is down: the `/healthz` wait gives up after its bound and the request then
/// fails with a transport error; nothing hangs.
#[test]
fn an_unreachable_api_server_fails_after_the_bounded_health_wait() {
    let env = Env::new();
    let boot = env.bootstrap_kubeconfig();
    env.server.shutdown();
    let started = std::time::Instant::now();
    let err = bootstrap::load_client_cert_with(
        env.kubeconfig(),
        &boot,
        env.cert_dir(),
        NODE,
        &BootstrapOptions {
            health_check_timeout: Duration::from_millis(200),
            ..env.boot_options()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err.csr_error(), Some(CsrError::Transport { .. })),
        "{err}"
    );
    assert!(started.elapsed() < T, "bounded");
    assert!(env.key_file().exists(), "the key is kept for the next run");
}
