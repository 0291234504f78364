//! `KubeCsrClient` against the embedded CSR API server, end to end: each client is loaded from
//! the server's own kubeconfig (real YAML in a temp file, through `Kubeconfig`) and talks to it
//! over real HTTPS, with mTLS or bearer tokens.
//!
//! Covered: create on v1 and the object it sends; the v1beta1 fallback; adoption of an existing
//! CSR; every CSR state sequence of CASES C11; a watch closed mid-wait, an expired resource
//! version in the stream and as an HTTP 410 (C12); cancellation; the health table of SPEC §5
//! (C4); 429 with Retry-After; a rotated client certificate is the identity the server sees; and
//! the certificate manager with a file store rotating through the server.
//!
//! Synchronisation: the server's authorizer hook reports every request (verb and user) on a
//! channel, and can hold one request until the test releases it. Tests wait on that channel or
//! on the client's own result channel, always with a bound; nothing sleeps to wait.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use certrotate::csr::api::{CONDITION_APPROVED, CertificateSigningRequest};
use certrotate::csr::{ApiVersion, KubeCsrClient, KubeCsrClientBuilder};
use certrotate::kubeconfig::Kubeconfig;
use certrotate::pki::build_csr_pem;
use certrotate::server::{
    Action, ApprovalPolicy, Authorizer, Call, CsrApiServer, CsrApiServerBuilder, Decision,
    DefaultAuthorizer, Fault, GROUP_BOOTSTRAPPERS, Identity, SIGNER_KUBE_APISERVER_CLIENT,
    SIGNER_KUBE_APISERVER_CLIENT_KUBELET, SignerFault, UserInfo, Verb,
};
use certrotate::{
    Cancel, CancelReason, Certificate, CertificateManager, Config, CsrClient, CsrError, CsrRef,
    CsrRequest, CsrTemplate, Error, FileStore, KeyAlgorithm, KeyUsage, Manager, MemoryStore,
    PrivateKey, Store,
};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use tempfile::TempDir;

/// Upper bound of every wait on a channel; far above what any step takes.
const BOUND: Duration = Duration::from_secs(10);
/// A wait timeout that no test reaches.
const LONG: Duration = Duration::from_secs(60);

const BOOT_ID: &str = "abcdef";
const BOOT_SECRET: &str = "0123456789abcdef";
const BOOT_USER: &str = "system:bootstrap:abcdef";
const TOKEN: &str = "static-token-alice";
const NODE: &str = "system:node:n1";
const V1: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const V1BETA1: &str = "/apis/certificates.k8s.io/v1beta1/certificatesigningrequests";

// ---- the rig ----

/// One request as the server's authorizer saw it (once per request, before the object is known).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    verb: Verb,
    user: String,
}

/// Authorizes as the default policy, reports every request, can deny one verb (a real 403) and
/// can hold the next request of one verb until released.
struct Recorder {
    seen: Sender<Seen>,
    deny: Option<Verb>,
    hold: Arc<Mutex<Option<Verb>>>,
    held: Sender<()>,
    release: Receiver<()>,
}

impl Authorizer for Recorder {
    fn authorize(&self, user: &UserInfo, action: &Action<'_>) -> Decision {
        if action.object.is_none() {
            let _ = self.seen.send(Seen {
                verb: action.verb,
                user: user.name.clone(),
            });
            if self.deny == Some(action.verb) {
                return Decision::Deny;
            }
            let hold = {
                let mut h = self.hold.lock();
                if *h == Some(action.verb) {
                    h.take()
                } else {
                    None
                }
            };
            if hold.is_some() {
                let _ = self.held.send(());
                // Bounded: a test that forgets to release only delays this request.
                let _ = self.release.recv_timeout(BOUND);
            }
        }
        DefaultAuthorizer.authorize(user, action)
    }
}

/// A server, its request log, and a kubeconfig for one identity written to a temp dir.
struct Rig {
    server: CsrApiServer,
    seen: Receiver<Seen>,
    hold: Arc<Mutex<Option<Verb>>>,
    held: Receiver<()>,
    release: Sender<()>,
    dir: TempDir,
    kubeconfig: PathBuf,
}

/// Options of a rig beyond the builder's.
#[derive(Default)]
struct Opts {
    deny: Option<Verb>,
}

impl Rig {
    fn new(
        identity: Identity,
        setup: impl FnOnce(CsrApiServerBuilder) -> CsrApiServerBuilder,
    ) -> Rig {
        Rig::with(identity, Opts::default(), setup)
    }

    fn with(
        identity: Identity,
        opts: Opts,
        setup: impl FnOnce(CsrApiServerBuilder) -> CsrApiServerBuilder,
    ) -> Rig {
        let (seen_tx, seen) = crossbeam_channel::unbounded();
        let (held_tx, held) = crossbeam_channel::unbounded();
        let (release, release_rx) = crossbeam_channel::unbounded();
        let hold = Arc::new(Mutex::new(None));
        let recorder = Recorder {
            seen: seen_tx,
            deny: opts.deny,
            hold: hold.clone(),
            held: held_tx,
            release: release_rx,
        };
        let builder = CsrApiServer::builder()
            .bootstrap_token(BOOT_ID, BOOT_SECRET)
            .token(TOKEN, UserInfo::new("alice", &["dev"]))
            .authorizer(recorder)
            // Approve everything unless a test sets its own policy: these tests are about the
            // client, not about who approves.
            .approval_policy(ApprovalPolicy::All);
        let server = setup(builder).start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig(&identity).unwrap()).unwrap();
        Rig {
            server,
            seen,
            hold,
            held,
            release,
            dir,
            kubeconfig,
        }
    }

    /// A client loaded from the kubeconfig file (its own, bootstrap, credentials).
    fn client(&self) -> KubeCsrClient {
        KubeCsrClient::from_kubeconfig(&self.kubeconfig).unwrap()
    }

    /// The kubeconfig's client builder, for `client_for` and `factory`.
    fn builder(&self) -> KubeCsrClientBuilder {
        Kubeconfig::load(&self.kubeconfig)
            .unwrap()
            .client_builder(None)
            .unwrap()
    }

    /// Waits for the next request of `verb`, skipping others; returns who made it.
    fn await_call(&self, verb: Verb) -> String {
        loop {
            let s = self
                .seen
                .recv_timeout(BOUND)
                .unwrap_or_else(|_| panic!("no {verb:?} request within {BOUND:?}"));
            if s.verb == verb {
                return s.user;
            }
        }
    }

    /// The next request, whatever it is.
    fn next_call(&self) -> Verb {
        self.seen
            .recv_timeout(BOUND)
            .unwrap_or_else(|_| panic!("no request within {BOUND:?}"))
            .verb
    }

    /// The verbs of the requests seen so far and not yet consumed.
    fn calls(&self) -> Vec<Verb> {
        self.seen.try_iter().map(|s| s.verb).collect()
    }

    /// Makes the next request of `verb` wait, inside the server, until [`Rig::release`].
    fn hold_next(&self, verb: Verb) {
        *self.hold.lock() = Some(verb);
    }

    /// Waits until the held request is being held.
    fn await_held(&self) {
        self.held
            .recv_timeout(BOUND)
            .expect("the held request did not arrive");
    }

    fn release(&self) {
        self.release.send(()).unwrap();
    }

    fn csr(&self, name: &str) -> CertificateSigningRequest {
        self.server.csr(name).expect("no such CSR on the server")
    }
}

fn token_rig(setup: impl FnOnce(CsrApiServerBuilder) -> CsrApiServerBuilder) -> Rig {
    Rig::new(Identity::token(TOKEN), setup)
}

fn manual(b: CsrApiServerBuilder) -> CsrApiServerBuilder {
    b.approval_policy(ApprovalPolicy::Manual)
}

// ---- requests ----

fn usages() -> Vec<KeyUsage> {
    vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth]
}

/// A request for `cn` (O system:nodes) with a fresh ECDSA P-256 key.
fn request_for(cn: &str, signer: &str) -> (PrivateKey, CsrRequest) {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let t = CsrTemplate::new(cn).with_organization("system:nodes");
    let req = CsrRequest {
        name: None,
        csr_pem: build_csr_pem(&t, &key).unwrap(),
        signer_name: signer.into(),
        usages: usages(),
        requested_lifetime: None,
        public_key_der: key.public_key_der(),
    };
    (key, req)
}

fn request() -> (PrivateKey, CsrRequest) {
    request_for(NODE, SIGNER_KUBE_APISERVER_CLIENT)
}

/// The issued chain, checked: it parses, matches our key, and names our subject.
fn issued(pem: &[u8], key: &PrivateKey) -> Certificate {
    let cert = Certificate::from_pem(pem, key.to_pem().as_bytes()).unwrap();
    assert_eq!(cert.common_name(), NODE);
    cert
}

/// A wait running on another thread. Dropping it cancels the wait, so a failing test does not
/// sit out the wait's timeout while its scope joins the thread.
struct Waiting {
    rx: Receiver<(Result<Vec<u8>, CsrError>, Instant)>,
    cancel: Cancel,
}

impl Waiting {
    /// The wait's result (bounded).
    fn result(&self) -> Result<Vec<u8>, CsrError> {
        self.ended().0
    }

    /// The wait's result and the instant it returned (bounded).
    fn ended(&self) -> (Result<Vec<u8>, CsrError>, Instant) {
        self.rx
            .recv_timeout(BOUND)
            .expect("the wait did not end within the bound")
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.cancel.cancel(CancelReason::Stopped);
    }
}

/// Starts `client.wait_for_certificate(csr, timeout, …)` on a thread of `scope`.
fn spawn_wait<'s>(
    scope: &'s thread::Scope<'s, '_>,
    client: &'s KubeCsrClient,
    csr: &'s CsrRef,
    timeout: Duration,
) -> Waiting {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let cancel = Cancel::new();
    let c = cancel.clone();
    scope.spawn(move || {
        let r = client.wait_for_certificate(csr, timeout, &c);
        let _ = tx.send((r, Instant::now()));
    });
    Waiting { rx, cancel }
}

/// Stops a manager when dropped, cancelling its attempt in flight.
struct StopOnDrop<'a>(&'a CertificateManager);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn approved(o: &CertificateSigningRequest) -> bool {
    o.status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == CONDITION_APPROVED))
}

fn has_cert(o: &CertificateSigningRequest) -> bool {
    o.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.is_empty())
}

// ---- create ----

/// Create goes to v1 with the object SPEC describes (over mTLS: the server records the client
/// certificate's CN and O as the requester), and `expirationSeconds` only when a lifetime is set.
#[test]
fn create_on_v1_sends_the_object_as_spec() {
    let rig = Rig::new(Identity::client_cert(NODE, &["system:nodes"]), manual);
    let client = rig.client();

    let (_k, req) = request();
    let csr = client.create(&req, &Cancel::new()).unwrap();
    assert_eq!(csr.api_version, ApiVersion::V1);
    assert!(
        csr.name.starts_with("csr-") && csr.name.len() > 4,
        "{csr:?}"
    );
    let o = rig.csr(&csr.name);
    assert_eq!(o.metadata.generate_name.as_deref(), Some("csr-"));
    assert_eq!(o.metadata.uid.as_deref(), Some(csr.uid.as_str()));
    assert_eq!(
        o.spec.signer_name.as_deref(),
        Some(SIGNER_KUBE_APISERVER_CLIENT)
    );
    assert_eq!(o.spec.usages, ["digital signature", "client auth"]);
    assert_eq!(o.spec.expiration_seconds, None, "no lifetime, no field");
    assert_eq!(o.spec.request, req.csr_pem.as_bytes());
    assert_eq!(o.spec.username.as_deref(), Some(NODE));
    assert!(o.spec.groups.iter().any(|g| g == "system:nodes"));

    let (_k, mut req) = request();
    req.requested_lifetime = Some(Duration::from_millis(3_600_900));
    req.name = Some("node-csr-fixed".into());
    let csr = client.create(&req, &Cancel::new()).unwrap();
    assert_eq!(csr.name, "node-csr-fixed");
    let o = rig.csr(&csr.name);
    assert_eq!(o.metadata.generate_name, None);
    assert_eq!(o.spec.expiration_seconds, Some(3600), "truncated seconds");
}

/// A v1 create answered 404 (with and without a Status body) falls back to v1beta1 when the
/// client allows it and the server serves it; the wait then lists and watches v1beta1 and gets
/// the certificate.
#[test]
fn v1_not_found_falls_back_to_v1beta1() {
    for (case, fault) in [
        ("404 Status", Fault::Status(404)),
        ("404 plain", Fault::Raw(404, "404 page not found\n".into())),
    ] {
        let rig = token_rig(|b| b.v1beta1(true).fault(Call::Create, fault, 1));
        let client = rig.builder().allow_legacy_v1beta1(true).build().unwrap();
        let (key, req) = request();
        let csr = client.create(&req, &Cancel::new()).unwrap();
        assert_eq!(csr.api_version, ApiVersion::V1beta1, "{case}");
        let counts = rig.server.fault_counts();
        assert_eq!(counts.status + counts.raw, 1, "{case}: the v1 404 was met");
        // The faulted v1 create is answered before authorization; the v1beta1 one is seen.
        assert_eq!(rig.calls(), [Verb::Create], "{case}");
        let pem = client
            .wait_for_certificate(&csr, LONG, &Cancel::new())
            .unwrap();
        issued(&pem, &key);
    }
}

/// By default a v1 404 is the answer: the error names the v1 path, and nothing is sent to
/// v1beta1. A request without a signer name or usages goes to v1 too, and the server's
/// validation says what is missing.
#[test]
fn v1_only_by_default_and_the_server_names_missing_fields() {
    let rig = token_rig(|b| b.v1beta1(true).fault(Call::Create, Fault::Status(404), 1));
    let (_k, req) = request();
    let err = rig.client().create(&req, &Cancel::new()).unwrap_err();
    let CsrError::Api { op, path, error } = &err else {
        panic!("{err:?}");
    };
    assert_eq!((*op, path.as_str(), error.code), ("create", V1, 404));
    assert!(rig.server.csrs().is_empty());
    for (signer, usages, field) in [
        ("", usages(), "spec.signerName"),
        (SIGNER_KUBE_APISERVER_CLIENT, vec![], "spec.usages"),
        ("kubernetes.io/legacy-unknown", usages(), "spec.signerName"),
    ] {
        let (_k, mut req) = request();
        req.signer_name = signer.into();
        req.usages = usages;
        let err = rig.client().create(&req, &Cancel::new()).unwrap_err();
        let CsrError::Api { path, error, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!((path.as_str(), error.code), (V1, 422), "{err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    assert!(rig.server.csrs().is_empty());
}

/// C16: with v1beta1 asked for, a v1 404 against a server without v1beta1 is an error that
/// names the API path. The final answer is the `Status` 404 kube-apiserver's go-restful
/// container gives for a removed version of a served group (the group's web service claims the
/// path), so it counts as a healthy server, as client-go's `IsNotFound` does.
#[test]
fn c16_v1_not_found_without_v1beta1_names_the_path() {
    let rig = token_rig(|b| b.fault(Call::Create, Fault::Status(404), 1));
    let (_k, req) = request();
    let client = rig.builder().allow_legacy_v1beta1(true).build().unwrap();
    let err = client.create(&req, &Cancel::new()).unwrap_err();
    let CsrError::Api { op, path, error } = &err else {
        panic!("{err:?}");
    };
    assert_eq!((*op, path.as_str(), error.code), ("create", V1BETA1, 404));
    assert!(error.is_status, "the removed version answers a Status");
    assert!(err.to_string().contains(V1BETA1), "{err}");
    assert!(err.server_healthy_after_create());
    assert_eq!(rig.server.fault_counts().status, 1, "v1 was tried first");
    assert!(rig.server.csrs().is_empty());
}

/// AlreadyExists with a fixed name: the existing object is adopted when it is ours (same
/// subject, signer and key), and refused with a clear error otherwise.
#[test]
fn already_exists_adopts_a_compatible_csr_and_refuses_others() {
    let rig = token_rig(|b| b);
    let client = rig.client();
    let (key, mut req) = request();
    req.name = Some("node-csr-fixed".into());
    let first = client.create(&req, &Cancel::new()).unwrap();
    let again = client.create(&req, &Cancel::new()).unwrap();
    assert_eq!(
        (&again.name, &again.uid, again.api_version),
        (&first.name, &first.uid, first.api_version),
        "adopted: same name, uid and version"
    );
    assert!(
        again.resource_version.is_empty(),
        "adopted: its wait lists first"
    );
    assert_eq!(rig.server.csrs().len(), 1);
    let pem = client
        .wait_for_certificate(&again, LONG, &Cancel::new())
        .unwrap();
    issued(&pem, &key);

    let (_other_key, mut other_key) = request();
    other_key.name = req.name.clone();
    let (_k, mut other_subject) = request_for("system:node:n2", SIGNER_KUBE_APISERVER_CLIENT);
    other_subject.name = req.name.clone();
    let mut other_signer = req.clone();
    other_signer.signer_name = SIGNER_KUBE_APISERVER_CLIENT_KUBELET.into();
    for (case, r, says) in [
        ("another key", other_key, "another key"),
        ("another subject", other_subject, "subjects differ"),
        ("another signer", other_signer, "signerNames differ"),
    ] {
        match client.create(&r, &Cancel::new()) {
            Err(e @ CsrError::Incompatible { .. }) => {
                let text = e.to_string();
                assert!(
                    text.starts_with("retrieved csr is not compatible"),
                    "{case}: {text}"
                );
                assert!(text.contains(says), "{case}: {text}");
            }
            other => panic!("{case}: {other:?}"),
        }
    }
    assert_eq!(rig.server.csrs().len(), 1, "nothing new was created");
}

// ---- C11: CSR states ----

/// C11 "Pending → Approved with no cert → Approved with cert": the list shows the CSR approved
/// but not issued, the wait goes on watching, and returns the certificate once it is issued.
#[test]
fn c11_approved_then_issued_returns_the_certificate() {
    let rig = token_rig(|b| manual(b).signer_fault(SignerFault::NeverIssue, 1));
    let client = rig.client();
    let (key, req) = request();
    let csr = client.create(&req, &Cancel::new()).unwrap();
    rig.server.approve(&csr.name).unwrap(); // approved; the signer skips it once
    assert!(approved(&rig.csr(&csr.name)) && !has_cert(&rig.csr(&csr.name)));
    thread::scope(|s| {
        let waiting = spawn_wait(s, &client, &csr, LONG);
        // Watched from the create's version: the server replays "approved, no certificate".
        rig.await_call(Verb::Watch);
        assert!(
            !rig.calls().contains(&Verb::List),
            "no list before the watch"
        );
        assert!(
            waiting.rx.is_empty(),
            "approved without a certificate does not end the wait"
        );
        rig.server.approve(&csr.name).unwrap(); // the signer now issues it
        let pem = waiting.result().unwrap();
        let cert = issued(&pem, &key);
        assert_eq!(
            rig.csr(&csr.name).status.unwrap().certificate.unwrap(),
            cert.cert_pem().as_bytes()
        );
    });
    assert_eq!(rig.server.fault_counts().never_issued, 1);
}

/// C11 Denied, Failed, and the object replaced (new uid) or deleted while waiting: the wait
/// ends at once with an error naming the CSR, far from its timeout.
#[test]
fn c11_denied_failed_uid_replaced_and_deleted_end_the_wait_at_once() {
    /// Changes the CSR on the server; returns the new uid when it makes one.
    type Act = fn(&CsrApiServer, &str) -> String;
    /// Checks the error, given what `Act` returned.
    type Check = fn(&CsrError, &str) -> bool;
    let cases: [(&str, Act, Check); 4] = [
        (
            "denied",
            |s, n| {
                s.deny(n, "NotAllowed").unwrap();
                String::new()
            },
            |e, _| {
                matches!(e, CsrError::Denied { reason, message, .. }
                    if reason == "NotAllowed" && message.contains("denied"))
            },
        ),
        (
            "failed",
            |s, n| {
                s.fail(n, "SignerValidationFailure").unwrap();
                String::new()
            },
            |e, _| matches!(e, CsrError::Failed { reason, .. } if reason == "SignerValidationFailure"),
        ),
        (
            "uid replaced",
            |s, n| s.replace_uid(n).unwrap(),
            |e, new_uid| matches!(e, CsrError::UidChanged { got, .. } if got == new_uid),
        ),
        (
            "deleted",
            |s, n| {
                s.delete(n).unwrap();
                String::new()
            },
            |e, _| matches!(e, CsrError::Deleted { .. }),
        ),
    ];
    for (case, act, check) in cases {
        let rig = token_rig(manual);
        let client = rig.client();
        let (_k, req) = request();
        let csr = client.create(&req, &Cancel::new()).unwrap();
        thread::scope(|s| {
            let started = Instant::now();
            let waiting = spawn_wait(s, &client, &csr, LONG);
            rig.await_call(Verb::Watch); // the change arrives through the watch
            let extra = act(&rig.server, &csr.name);
            let err = waiting.result().unwrap_err();
            assert!(check(&err, &extra), "{case}: {err:?}");
            assert!(err.to_string().contains(&csr.name), "{case}: {err}");
            assert!(started.elapsed() < BOUND, "{case}: ended at once");
            if let CsrError::UidChanged { expected, .. } = &err {
                assert_eq!(expected, &csr.uid, "{case}");
            }
        });
    }
}

/// C11 "Approved forever, never issued": the wait times out after its own timeout, and through
/// the manager the attempt fails and the renew-failure counter goes up.
#[test]
fn c11_approved_but_never_issued_times_out() {
    let rig = token_rig(|b| manual(b).signer_fault(SignerFault::NeverIssue, 2));
    let client = rig.client();
    let (_k, req) = request();
    let csr = client.create(&req, &Cancel::new()).unwrap();
    rig.server.approve(&csr.name).unwrap(); // the signer skips it: never issued
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = client
        .wait_for_certificate(&csr, timeout, &Cancel::new())
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(&err, CsrError::Timeout { name, waited, .. } if *name == csr.name && *waited == timeout),
        "{err:?}"
    );
    assert!(
        waited >= timeout && waited < timeout + BOUND / 2,
        "{waited:?}"
    );
    let o = rig.csr(&csr.name);
    assert!(approved(&o) && !has_cert(&o), "approved, never issued");

    // The manager's CSR is approved by the server's approver, and skipped by the signer.
    rig.server.set_approval_policy(ApprovalPolicy::All);
    let failures = Arc::new(AtomicU64::new(0));
    let f = failures.clone();
    let mgr = CertificateManager::new(
        Config::builder()
            .template(CsrTemplate::new(NODE).with_organization("system:nodes"))
            .usages(usages())
            .signer_name(SIGNER_KUBE_APISERVER_CLIENT)
            .store(Arc::new(MemoryStore::new()))
            .client_factory(rig.builder().factory())
            .certificate_wait_timeout(timeout)
            .renew_failure_counter(Arc::new(move || {
                f.fetch_add(1, Ordering::SeqCst);
            }))
            .build()
            .unwrap(),
    )
    .unwrap();
    match mgr.rotate_now() {
        Err(Error::Csr(CsrError::Timeout { waited, .. })) => assert_eq!(waited, timeout),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        1,
        "the failure metric went up"
    );
    assert!(mgr.current().is_none());
}

// ---- C12: watches that end ----

/// C12: the server ends the watch cleanly mid-wait (after one event); the wait resumes from the
/// last resourceVersion, without listing again, and returns the certificate. Through the
/// manager, so "not a failure" is checked on its counter and health too.
#[test]
fn c12_watch_closed_mid_wait_is_resumed() {
    let rig = token_rig(|b| {
        manual(b).signer_fault(SignerFault::NeverIssue, 1).fault(
            Call::Watch,
            Fault::CloseWatchAfter(1),
            1,
        )
    });
    let failures = Arc::new(AtomicU64::new(0));
    let f = failures.clone();
    let mgr = CertificateManager::new(
        Config::builder()
            .template(CsrTemplate::new(NODE).with_organization("system:nodes"))
            .usages(usages())
            .signer_name(SIGNER_KUBE_APISERVER_CLIENT)
            .store(Arc::new(MemoryStore::new()))
            .client_factory(rig.builder().retry_interval(LONG).factory())
            .renew_failure_counter(Arc::new(move || {
                f.fetch_add(1, Ordering::SeqCst);
            }))
            .build()
            .unwrap(),
    )
    .unwrap();
    thread::scope(|s| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mgr = &mgr;
        s.spawn(move || {
            let _ = tx.send(mgr.rotate_now());
        });
        let _stop = StopOnDrop(mgr); // a failing test does not sit out the wait
        rig.await_call(Verb::Create);
        rig.await_call(Verb::Watch); // from the create's version, no list
        let name = rig.server.csrs()[0].metadata.name.clone().unwrap();
        // One event (approved, not issued), and the server ends that watch; the next request
        // is a watch again, at once (a failure would pause for LONG, then list).
        rig.server.approve(&name).unwrap();
        assert_eq!(rig.next_call(), Verb::Watch);
        assert_eq!(rig.server.fault_counts().watches_closed, 1);
        rig.server.approve(&name).unwrap(); // issued now
        let cert = rx
            .recv_timeout(BOUND)
            .expect("rotation did not end")
            .unwrap();
        assert_eq!(cert.common_name(), NODE);
        assert!(rig.calls().is_empty(), "resumed the watch; no second list");
    });
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "not counted as a failure"
    );
    assert!(mgr.server_healthy());
}

/// The first backoff pause of the clients that show it: a re-list after a 410 comes no
/// sooner (client-go's reflector backs off before every re-list).
const FIRST_PAUSE: Duration = Duration::from_millis(300);

/// C12: the watch starts from a resourceVersion the server has already compacted away, so
/// the stream carries an ERROR event with a 410 Expired Status; the wait lists and watches
/// again, after the first backoff pause, and returns the certificate.
#[test]
fn c12_expired_resource_version_in_the_stream_relists() {
    let rig = token_rig(|b| manual(b).history_limit(2));
    let client = rig.builder().retry_interval(FIRST_PAUSE).build().unwrap();
    let (key, req) = request();
    let mut csr = client.create(&req, &Cancel::new()).unwrap();
    csr.resource_version.clear(); // its wait lists first, as after a restart
    let (_k, other) = request();
    let other = client.create(&other, &Cancel::new()).unwrap();
    rig.hold_next(Verb::Watch);
    thread::scope(|s| {
        let waiting = spawn_wait(s, &client, &csr, LONG);
        rig.await_held(); // listed; the watch waits inside the server
        assert_eq!(
            rig.calls(),
            [Verb::Create, Verb::Create, Verb::List, Verb::Watch]
        );
        for _ in 0..3 {
            rig.server.replace_uid(&other.name).unwrap(); // three changes: history moves on
        }
        let released = Instant::now();
        rig.release();
        // The 410 made it list again, after the backoff pause.
        assert_eq!(rig.next_call(), Verb::List);
        assert!(
            released.elapsed() >= FIRST_PAUSE,
            "{:?}",
            released.elapsed()
        );
        assert_eq!(rig.next_call(), Verb::Watch);
        rig.server.approve(&csr.name).unwrap();
        issued(&waiting.result().unwrap(), &key);
    });
}

/// C12: the watch request itself is answered 410 Expired (a Status); same outcome.
#[test]
fn c12_watch_answered_410_relists() {
    let rig = token_rig(|b| manual(b).fault(Call::Watch, Fault::Status(410), 1));
    let client = rig.builder().retry_interval(FIRST_PAUSE).build().unwrap();
    let (key, req) = request();
    let mut csr = client.create(&req, &Cancel::new()).unwrap();
    csr.resource_version.clear(); // its wait lists first, as after a restart
    thread::scope(|s| {
        let waiting = spawn_wait(s, &client, &csr, LONG);
        assert_eq!(rig.await_call(Verb::List), "alice");
        let listed = Instant::now();
        // The faulted watch is answered before authorization, so the next request seen is
        // the list again, after the backoff pause.
        assert_eq!(rig.next_call(), Verb::List);
        assert!(listed.elapsed() >= FIRST_PAUSE, "{:?}", listed.elapsed());
        rig.await_call(Verb::Watch);
        rig.server.approve(&csr.name).unwrap();
        issued(&waiting.result().unwrap(), &key);
    });
    assert_eq!(rig.server.fault_counts().status, 1);
}

/// C12: a CSR issued before the wait begins is returned from the initial list, with no watch.
#[test]
fn c12_already_issued_returns_from_the_list() {
    let rig = token_rig(|b| b);
    let client = rig.client();
    let (key, req) = request();
    let mut csr = client.create(&req, &Cancel::new()).unwrap();
    let first = client
        .wait_for_certificate(&csr, LONG, &Cancel::new())
        .unwrap();
    let _ = rig.calls();
    csr.resource_version.clear(); // its wait lists first, as after a restart
    let again = client
        .wait_for_certificate(&csr, LONG, &Cancel::new())
        .unwrap();
    assert_eq!(again, first);
    issued(&again, &key);
    assert_eq!(rig.calls(), [Verb::List]);
}

// ---- cancel ----

/// Cancelling a wait blocked in a watch read returns within 100 ms; the client then still
/// works.
#[test]
fn cancel_during_a_wait_returns_within_100ms() {
    let rig = token_rig(manual);
    let client = rig.client();
    let (_k, req) = request();
    let csr = client.create(&req, &Cancel::new()).unwrap();
    thread::scope(|s| {
        let waiting = spawn_wait(s, &client, &csr, LONG);
        rig.await_call(Verb::Watch);
        let fired = Instant::now();
        waiting.cancel.cancel(CancelReason::Stopped);
        let (r, ended) = waiting.ended();
        let took = ended.saturating_duration_since(fired);
        assert!(
            matches!(&r, Err(CsrError::Cancelled { name }) if *name == csr.name),
            "{r:?}"
        );
        assert!(
            took <= Duration::from_millis(100),
            "returned after {took:?}"
        );
    });
    let (_k, req) = request();
    client
        .create(&req, &Cancel::new())
        .expect("usable after a cancelled wait");
}

// ---- errors and health (SPEC §5, CASES C4) ----

/// Each row: a failed create, the code the client reports, and `server_healthy()` of a
/// certificate manager after that one attempt (false before it).
#[test]
fn health_table_after_a_failed_create() {
    struct Row {
        case: &'static str,
        identity: Identity,
        opts: fn() -> Opts,
        setup: fn(CsrApiServerBuilder) -> CsrApiServerBuilder,
        /// Changes the kubeconfig text; `shutdown` stops the server first.
        kubeconfig: fn(String) -> String,
        shutdown: bool,
        code: Option<u16>,
        healthy: bool,
    }
    let none = Opts::default;
    let same = |k: String| k;
    let token = Identity::token(TOKEN);
    let rows = [
        Row {
            case: "401 with a Status body (unknown bootstrap token)",
            identity: Identity::bootstrap_token(BOOT_ID, BOOT_SECRET),
            opts: none,
            setup: |b| b,
            kubeconfig: |k| k.replace(BOOT_SECRET, "ffffffffffffffff"),
            shutdown: false,
            code: Some(401),
            healthy: true,
        },
        Row {
            case: "401 without a Status body",
            identity: token.clone(),
            opts: none,
            setup: |b| b.fault(Call::Create, Fault::Raw(401, "Unauthorized".into()), 1),
            kubeconfig: same,
            shutdown: false,
            code: Some(401),
            healthy: true,
        },
        Row {
            case: "403 Forbidden",
            identity: token.clone(),
            opts: || Opts {
                deny: Some(Verb::Create),
            },
            setup: |b| b,
            kubeconfig: same,
            shutdown: false,
            code: Some(403),
            healthy: true,
        },
        Row {
            case: "404 with a Status body",
            identity: token.clone(),
            opts: none,
            setup: |b| b.v1beta1(true).fault(Call::Create, Fault::Status(404), 2),
            kubeconfig: same,
            shutdown: false,
            code: Some(404),
            healthy: true,
        },
        Row {
            case: "404 without a Status body",
            identity: token.clone(),
            opts: none,
            setup: |b| {
                b.fault(
                    Call::Create,
                    Fault::Raw(404, "404 page not found".into()),
                    1,
                )
            },
            kubeconfig: same,
            shutdown: false,
            code: Some(404),
            healthy: false,
        },
        Row {
            case: "500 with a Status body",
            identity: token.clone(),
            opts: none,
            setup: |b| b.fault(Call::Create, Fault::Status(500), 1),
            kubeconfig: same,
            shutdown: false,
            code: Some(500),
            healthy: false,
        },
        Row {
            case: "503 from a proxy (no Status body)",
            identity: token.clone(),
            opts: none,
            setup: |b| {
                b.fault(
                    Call::Create,
                    Fault::Raw(503, "upstream connect error".into()),
                    1,
                )
            },
            kubeconfig: same,
            shutdown: false,
            code: Some(503),
            healthy: false,
        },
        Row {
            case: "transport error (closed port)",
            identity: token.clone(),
            opts: none,
            setup: |b| b,
            kubeconfig: same,
            shutdown: true,
            code: None,
            healthy: false,
        },
    ];
    for row in rows {
        let case = row.case;
        let rig = Rig::with(row.identity, (row.opts)(), row.setup);
        let text = std::fs::read_to_string(&rig.kubeconfig).unwrap();
        std::fs::write(&rig.kubeconfig, (row.kubeconfig)(text)).unwrap();
        if row.shutdown {
            rig.server.shutdown();
        }
        let mgr = CertificateManager::new(
            Config::builder()
                .template(CsrTemplate::new(NODE).with_organization("system:nodes"))
                .usages(usages())
                .signer_name(SIGNER_KUBE_APISERVER_CLIENT)
                .store(Arc::new(MemoryStore::new()))
                .client_factory(rig.builder().factory())
                .build()
                .unwrap(),
        )
        .unwrap();
        assert!(!mgr.server_healthy(), "{case}: initial state");
        let err = match mgr.rotate_now() {
            Err(Error::Csr(e)) => e,
            other => panic!("{case}: {other:?}"),
        };
        match (row.code, &err) {
            (Some(code), CsrError::Api { op, error, .. }) => {
                assert_eq!((*op, error.code), ("create", code), "{case}: {err}");
            }
            (None, CsrError::Transport { op, .. }) => assert_eq!(*op, "create", "{case}"),
            _ => panic!("{case}: {err:?}"),
        }
        assert_eq!(err.server_healthy_after_create(), row.healthy, "{case}");
        assert_eq!(mgr.server_healthy(), row.healthy, "{case}: {err}");
        if !row.shutdown {
            assert!(rig.server.csrs().is_empty(), "{case}");
        }
    }
}

/// A successful rotation makes the server count as healthy (the last row of the table).
#[test]
fn health_after_a_successful_rotation() {
    let rig = token_rig(|b| b);
    let mgr = CertificateManager::new(
        Config::builder()
            .template(CsrTemplate::new(NODE).with_organization("system:nodes"))
            .usages(usages())
            .signer_name(SIGNER_KUBE_APISERVER_CLIENT)
            .store(Arc::new(MemoryStore::new()))
            .client_factory(rig.builder().factory())
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(!mgr.server_healthy());
    mgr.rotate_now().unwrap();
    assert!(mgr.server_healthy());
}

/// 429 Too Many Requests carries the server's Retry-After into the error, for the backoff.
#[test]
fn too_many_requests_carries_retry_after() {
    let rig = token_rig(|b| b.fault(Call::Create, Fault::Status(429), 1));
    let client = rig.client();
    let (_k, req) = request();
    let err = client.create(&req, &Cancel::new()).unwrap_err();
    let CsrError::Api {
        path, error: api, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(path, V1);
    assert_eq!((api.code, api.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert!(err.is_transient());
    assert!(!err.server_healthy_after_create());
    client
        .create(&req, &Cancel::new())
        .expect("the next create goes through");
}

// ---- credentials ----

/// A certificate issued through the server, used for the next client (`client_for(Some)`), is
/// the identity the server records on the next CSR; the bootstrap token was before it.
#[test]
fn a_rotated_client_certificate_is_the_one_the_server_sees() {
    let rig = Rig::new(Identity::bootstrap_token(BOOT_ID, BOOT_SECRET), |b| b);
    let builder = rig.builder();

    let bootstrap = builder.client_for(None).unwrap();
    let (key, req) = request();
    let csr = bootstrap.create(&req, &Cancel::new()).unwrap();
    let o = rig.csr(&csr.name);
    assert_eq!(o.spec.username.as_deref(), Some(BOOT_USER));
    assert!(o.spec.groups.iter().any(|g| g == GROUP_BOOTSTRAPPERS));
    let pem = bootstrap
        .wait_for_certificate(&csr, LONG, &Cancel::new())
        .unwrap();
    let cert = issued(&pem, &key);

    let rotated = builder.client_for(Some(&cert)).unwrap();
    let (key2, req2) = request();
    let csr2 = rotated.create(&req2, &Cancel::new()).unwrap();
    let o2 = rig.csr(&csr2.name);
    assert_eq!(o2.spec.username.as_deref(), Some(NODE), "the cert's CN");
    assert!(o2.spec.groups.iter().any(|g| g == "system:nodes"), "its O");
    assert!(!o2.spec.groups.iter().any(|g| g == GROUP_BOOTSTRAPPERS));
    // Reading is allowed only for one's own CSRs: the wait works as the new identity.
    let pem2 = rotated
        .wait_for_certificate(&csr2, LONG, &Cancel::new())
        .unwrap();
    assert_ne!(issued(&pem2, &key2).serial_hex(), cert.serial_hex());
    let users: Vec<String> = rig
        .seen
        .try_iter()
        .filter(|s| s.verb == Verb::Create)
        .map(|s| s.user)
        .collect();
    assert_eq!(users, [BOOT_USER, NODE]);
}

/// A serving certificate (ExtKeyUsage without `client auth`) cannot authenticate a client, so
/// `client_for(Some(..))` falls back to the configured credentials instead of presenting it.
#[test]
fn a_serving_certificate_is_not_used_as_client_credentials() {
    let rig = Rig::new(Identity::bootstrap_token(BOOT_ID, BOOT_SECRET), |b| b);
    let builder = rig.builder();
    let ca = certrotate::pki::CertificateAuthority::for_tests("other-ca").unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let now = std::time::SystemTime::now();
    let serving = ca
        .issue(
            &CsrTemplate::new(NODE).with_dns_name("node"),
            &key,
            &[KeyUsage::DigitalSignature, KeyUsage::ServerAuth],
            now - Duration::from_secs(60),
            now + Duration::from_secs(3600),
        )
        .unwrap();
    assert!(!serving.info().allows_client_auth);
    let client = builder.client_for(Some(&serving)).unwrap();
    let (_, req) = request();
    let csr = client.create(&req, &Cancel::new()).unwrap();
    assert_eq!(rig.csr(&csr.name).spec.username.as_deref(), Some(BOOT_USER));
}

// ---- the manager ----

/// The kubelet's flow against the server: an empty file store forces a rotation on start
/// (bootstrap token), the pair lands on disk and loads back, and the next rotation
/// authenticates with the first issued certificate. Prints one create→issued round trip
/// through the manager.
#[test]
fn manager_with_file_store_rotates_through_the_server() {
    let rig = Rig::new(Identity::bootstrap_token(BOOT_ID, BOOT_SECRET), |b| b);
    let certs = rig.dir.path().join("pki");
    let store = || {
        Arc::new(
            FileStore::builder("kubelet-client", &certs, &certs)
                .build()
                .unwrap(),
        )
    };
    let config = |store: Arc<FileStore>| {
        Config::builder()
            .template(CsrTemplate::new(NODE).with_organization("system:nodes"))
            .usages(usages())
            .signer_name(SIGNER_KUBE_APISERVER_CLIENT_KUBELET)
            .store(store)
            .client_factory(rig.builder().factory())
            .build()
            .unwrap()
    };
    let mgr = CertificateManager::new(config(store())).unwrap();
    assert!(mgr.current().is_none());
    let rotated = mgr.subscribe();
    let started = Instant::now();
    mgr.start();
    let first = rotated
        .recv_timeout(BOUND)
        .expect("no forced rotation on start");
    let on_start = started.elapsed();
    assert_eq!(first.common_name(), NODE);
    assert_eq!(rig.await_call(Verb::Create), BOOT_USER);
    assert!(mgr.server_healthy());

    // On disk, 0600, and it loads back, in a new store and a new manager.
    let disk = store();
    let path = disk.current_path();
    let pair = Certificate::from_pair_pem(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(pair, *first);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(disk.current().unwrap().unwrap(), *first);
    let reloaded = CertificateManager::new(config(store())).unwrap();
    assert_eq!(reloaded.current().unwrap().serial_hex(), first.serial_hex());
    drop(reloaded);

    let started = Instant::now();
    let second = mgr.rotate_now().unwrap();
    let round_trip = started.elapsed();
    assert_eq!(
        rig.await_call(Verb::Create),
        NODE,
        "as the first issued cert"
    );
    assert_ne!(second.serial_hex(), first.serial_hex());
    let by_cert = |c: &Certificate| {
        rig.server
            .csrs()
            .into_iter()
            .find(|o| {
                o.status.as_ref().and_then(|s| s.certificate.as_deref())
                    == Some(c.cert_pem().as_bytes())
            })
            .expect("the CSR that issued it")
    };
    assert_eq!(by_cert(&first).spec.username.as_deref(), Some(BOOT_USER));
    assert_eq!(
        by_cert(&second).spec.username.as_deref(),
        Some(first.common_name())
    );
    assert_eq!(store().current().unwrap().unwrap(), *second);
    assert_eq!(mgr.current().unwrap().serial_hex(), second.serial_hex());
    mgr.stop();
    println!(
        "manager round trip against the embedded server: forced rotation on start {:.1} ms, rotate_now (key, CSR, create, list+watch, issued, file store) {:.1} ms",
        on_start.as_secs_f64() * 1e3,
        round_trip.as_secs_f64() * 1e3
    );
}

/// A create whose answer is lost (the client gave up while the server still made the CSR) is
/// sent again under the same name, so the retry meets the CSR it made and waits for it: one
/// pending CSR, never two. Broke when rotation CSRs were named by the server (`generateName`).
#[test]
fn a_create_whose_answer_was_lost_is_not_made_twice() {
    let rig = token_rig(manual);
    let mgr = CertificateManager::new(
        Config::builder()
            .template(CsrTemplate::new("svc"))
            .usages(usages())
            .signer_name(SIGNER_KUBE_APISERVER_CLIENT)
            .store(Arc::new(MemoryStore::new()))
            .certificate_wait_timeout(Duration::from_millis(300))
            .client_factory(
                rig.builder()
                    .request_timeout(Duration::from_millis(300))
                    .factory(),
            )
            .build()
            .unwrap(),
    )
    .unwrap();
    rig.hold_next(Verb::Create);
    let lost = thread::scope(|s| {
        let attempt = s.spawn(|| mgr.rotate_now());
        rig.await_held();
        // The client times out while the server holds its create; then the server goes on.
        let r = attempt.join().unwrap();
        rig.release();
        r
    });
    assert!(lost.is_err(), "the create's answer was lost: {lost:?}");
    let deadline = Instant::now() + BOUND;
    while rig.server.csrs().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the held create never made its CSR"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let name = rig.server.csrs()[0].metadata.name.clone().unwrap();
    assert!(name.starts_with("csr-"), "{name}");

    // The retry sends the same request: AlreadyExists, adopted, waited for (and not approved).
    let retried = mgr.rotate_now();
    assert!(
        matches!(retried, Err(Error::Csr(CsrError::Timeout { .. }))),
        "{retried:?}"
    );
    assert_eq!(rig.server.csrs().len(), 1, "a second CSR was made");

    rig.server.approve(&name).unwrap();
    let cert = mgr.rotate_now().unwrap();
    assert_eq!(cert.common_name(), "svc");
    assert_eq!(rig.server.csrs().len(), 1);
}

/// A restart in the middle of a request adopts the manager's own pending CSR: the key was kept
/// in the store (`<prefix>-pending.key`, 0600), the request is sent again under the same name
/// and meets the CSR. The kept key is forgotten once the CSR is answered and never used for a
/// second request. Broke when the key lived in memory only (a restart made a second CSR).
#[test]
fn a_restart_adopts_its_own_pending_csr() {
    use std::os::unix::fs::PermissionsExt;
    let rig = token_rig(manual);
    let dir = rig.dir.path().join("pki");
    let store = || Arc::new(FileStore::builder("agent", &dir, &dir).build().unwrap());
    let manager = || {
        CertificateManager::new(
            Config::builder()
                .template(CsrTemplate::new("svc"))
                .usages(usages())
                .signer_name(SIGNER_KUBE_APISERVER_CLIENT)
                .store(store())
                .certificate_wait_timeout(Duration::from_millis(300))
                .client_factory(rig.builder().factory())
                .build()
                .unwrap(),
        )
        .unwrap()
    };
    let kept = store().pending_key_path();

    let before = manager();
    let pending = before.rotate_now();
    assert!(
        matches!(pending, Err(Error::Csr(CsrError::Timeout { .. }))),
        "{pending:?}"
    );
    drop(before);
    assert_eq!(rig.server.csrs().len(), 1);
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the kept key's mode");

    // Restarted: the same request again, adopted, still pending.
    let after = manager();
    let again = after.rotate_now();
    assert!(
        matches!(again, Err(Error::Csr(CsrError::Timeout { .. }))),
        "{again:?}"
    );
    assert_eq!(rig.server.csrs().len(), 1, "a second CSR after the restart");

    let name = rig.server.csrs()[0].metadata.name.clone().unwrap();
    rig.server.approve(&name).unwrap();
    let cert = after.rotate_now().unwrap();
    assert_eq!(rig.server.csrs().len(), 1);
    assert!(
        !kept.exists(),
        "the kept key is forgotten once the CSR is answered"
    );

    // The next rotation is a new request with a new key.
    let _ = after.rotate_now();
    let csrs = rig.server.csrs();
    assert_eq!(csrs.len(), 2);
    assert!(
        csrs.iter()
            .any(|o| o.metadata.name.as_deref() != Some(name.as_str()))
    );
    assert!(kept.exists(), "the new request's key is kept");
    let next = Certificate::from_pair_pem(&std::fs::read(&kept).unwrap());
    assert!(next.is_err(), "a key file, not a pair");
    let next_key = PrivateKey::from_pem(&std::fs::read(&kept).unwrap()).unwrap();
    assert_ne!(
        next_key.public_key_der(),
        cert.private_key().public_key_der(),
        "a new key for the new request"
    );
}
