//! The same scenarios against a real kube-apiserver and against the embedded server.
//!
//! The real one is `tests/peers/cmd/kube-apiserver-peer`: etcd, the kube-apiserver of
//! `k8s.io/kubernetes` and kube-controller-manager's CSR approver and signers, with bootstrap
//! tokens and kubeadm's RBAC bindings (see `tests/support/kube_apiserver.rs`). One peer serves
//! every test of this file; it is started on first use.
//!
//! Each test runs one scenario on both, with the library's real manager, store and client
//! (nothing faked), and compares what it observed: who sent each CSR, the CSR's name, its
//! conditions (type, status, reason, message), the issued certificate's NotBefore and NotAfter
//! against the request, the error a manager reports, the requests a client made. Observations
//! that differ for a reason given in the embedded server's docs are compared as such
//! ([`Obs::expect_differ`]); every other one must be equal. Run with `--nocapture` to see the
//! table.
//!
//! Scenarios: a node client certificate bootstrapped with a token and rotated three times
//! (auto-approved by the real approver); the kubelet's serving certificate rotated three times
//! (approved by an administrator); kubelet TLS bootstrap from a bootstrap kubeconfig; a denied
//! CSR; a CSR deleted while its requester waits; a watch whose resource version was compacted
//! away (410) while the requester waits; a restart that adopts the CSR it had sent.
//!
//! The scenarios share the real peer; they take [`SERIAL`] so that the request counts of one do
//! not include another's. Without a Go toolchain the real half fails when `CI` is set and is
//! otherwise skipped with a loud `SKIPPED` line; the embedded half always runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certrotate::csr::KubeCsrClientBuilder;
use certrotate::kubeconfig::Kubeconfig;
use certrotate::kubelet::{self, bootstrap};
use certrotate::pki::parse_csr_pem;
use certrotate::server::{
    Action, Authorizer, CsrApiServer, Decision, DefaultAuthorizer, Identity, UserInfo,
};
use certrotate::{
    Certificate, CertificateManager, Config, CsrError, CsrTemplate, Error, FileStore, KeyUsage,
    Manager,
};
use parking_lot::Mutex;
use serde_json::{Value, json};

// kubectl; kube_apiserver keeps its own copy of this module private.
#[allow(clippy::duplicate_mod)]
#[path = "support/go_peer.rs"]
mod go_peer;
#[path = "support/kube_apiserver.rs"]
mod kube_apiserver;
mod server_common;

use kube_apiserver::KubeApiserver;
use server_common::{CSRS, Client, agent};

/// Upper bound of every wait for the cluster; far above what a step takes.
const BOUND: Duration = Duration::from_secs(60);
/// Requested lifetime (`spec.expirationSeconds`) of every CSR here: above the apiserver's
/// 600 s floor and below the signers' maximum, so the signers honour it.
const LIFETIME: Duration = Duration::from_secs(3600);
/// Scenarios run one at a time (see the module docs).
static SERIAL: Mutex<()> = Mutex::new(());

const BOOT_ID: &str = "abcdef";
const BOOT_SECRET: &str = "0123456789abcdef";
const REQUESTER_TOKEN: &str = "requester-token";

// ---- the two clusters ----

/// What a scenario needs from a cluster.
trait Cluster: Sync {
    /// An administrator's API client (HTTP, `system:masters`).
    fn admin(&self) -> Client;
    /// User `requester`'s API client (HTTP).
    fn requester(&self) -> Client;
    /// An API client with no credentials.
    fn anonymous(&self) -> Client;
    fn bootstrap_kubeconfig(&self) -> PathBuf;
    fn bootstrap_user(&self) -> String;
    /// User `requester`: may create, get, list and watch CSRs, nothing more.
    fn requester_kubeconfig(&self) -> PathBuf;
    /// Compacts the history of changes at the current resource version.
    fn compact(&self);
    /// How many requests of `verb` on CSRs `user` has made so far.
    fn calls(&self, verb: &str, user: &str) -> usize;
}

struct Embedded {
    server: CsrApiServer,
    calls: Arc<Mutex<Vec<(String, String)>>>,
    dir: tempfile::TempDir,
}

/// The default authorizer, recording each request's verb and user.
struct Recording(Arc<Mutex<Vec<(String, String)>>>);

impl Authorizer for Recording {
    fn authorize(&self, user: &UserInfo, action: &Action<'_>) -> Decision {
        self.0
            .lock()
            .push((action.verb.as_str().to_owned(), user.name.clone()));
        DefaultAuthorizer.authorize(user, action)
    }
}

impl Embedded {
    fn start() -> Embedded {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let server = CsrApiServer::builder()
            .bootstrap_token(BOOT_ID, BOOT_SECRET)
            .token(REQUESTER_TOKEN, UserInfo::new("requester", &["requesters"]))
            .authorizer(Recording(calls.clone()))
            .start()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (file, identity) in [
            (
                "bootstrap.kubeconfig",
                Identity::bootstrap_token(BOOT_ID, BOOT_SECRET),
            ),
            ("requester.kubeconfig", Identity::token(REQUESTER_TOKEN)),
        ] {
            std::fs::write(dir.path().join(file), server.kubeconfig(&identity).unwrap()).unwrap();
        }
        Embedded { server, calls, dir }
    }
}

impl Cluster for Embedded {
    fn admin(&self) -> Client {
        Client::admin(&self.server)
    }
    fn requester(&self) -> Client {
        Client::with_token(&self.server, REQUESTER_TOKEN)
    }
    fn anonymous(&self) -> Client {
        Client::anonymous(&self.server)
    }
    fn bootstrap_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("bootstrap.kubeconfig")
    }
    fn bootstrap_user(&self) -> String {
        format!("system:bootstrap:{BOOT_ID}")
    }
    fn requester_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("requester.kubeconfig")
    }
    fn compact(&self) {
        self.server.compact();
    }
    fn calls(&self, verb: &str, user: &str) -> usize {
        self.calls
            .lock()
            .iter()
            .filter(|(v, u)| v == verb && u == user)
            .count()
    }
}

impl Cluster for KubeApiserver {
    fn admin(&self) -> Client {
        Client {
            agent: agent(&self.ca_pem(), None),
            base: self.server.clone(),
            token: Some(self.admin_token.clone()),
        }
    }
    fn requester(&self) -> Client {
        Client {
            agent: agent(&self.ca_pem(), None),
            base: self.server.clone(),
            token: Some(self.requester_token.clone()),
        }
    }
    fn anonymous(&self) -> Client {
        Client {
            agent: agent(&self.ca_pem(), None),
            base: self.server.clone(),
            token: None,
        }
    }
    fn bootstrap_kubeconfig(&self) -> PathBuf {
        KubeApiserver::bootstrap_kubeconfig(self)
    }
    fn bootstrap_user(&self) -> String {
        KubeApiserver::bootstrap_user(self)
    }
    fn requester_kubeconfig(&self) -> PathBuf {
        KubeApiserver::requester_kubeconfig(self)
    }
    fn compact(&self) {
        KubeApiserver::compact(self);
    }
    fn calls(&self, verb: &str, user: &str) -> usize {
        // A watch is logged when its answer starts (and again when it ends); every other
        // request when its answer is complete.
        let stage = if verb == "watch" {
            "ResponseStarted"
        } else {
            "ResponseComplete"
        };
        self.audit_events()
            .iter()
            .filter(|e| {
                e["verb"] == verb
                    && e["user"]["username"] == user
                    && e["stage"] == stage
                    && e["objectRef"]["resource"] == "certificatesigningrequests"
            })
            .count()
    }
}

/// The shared real peer: `None` when Go is missing outside CI.
fn real() -> Option<&'static KubeApiserver> {
    static PEER: OnceLock<Option<KubeApiserver>> = OnceLock::new();
    PEER.get_or_init(|| {
        // CSR watches are served from etcd rather than the watch cache, so that compacting
        // etcd expires a resource version as it does for a client that was away longer than
        // the apiserver keeps history; the API's answers are the same either way.
        KubeApiserver::start(&[
            "--watch-cache-sizes=certificatesigningrequests.certificates.k8s.io#0",
        ])
    })
    .as_ref()
}

// ---- observations ----

/// What one scenario observed on one cluster, in order.
#[derive(Debug, Default)]
struct Obs {
    rows: Vec<(String, String)>,
    differ: Vec<(String, &'static str)>,
}

impl Obs {
    fn see(&mut self, what: impl Into<String>, value: impl ToString) {
        self.rows.push((what.into(), value.to_string()));
    }

    /// As [`see`](Self::see), and `value` must be `wanted` on each cluster.
    fn expect(&mut self, what: impl Into<String>, value: impl ToString, wanted: impl ToString) {
        let what = what.into();
        let (value, wanted) = (value.to_string(), wanted.to_string());
        assert_eq!(value, wanted, "{what}");
        self.rows.push((what, value));
    }

    /// `what` is known to differ between the two, for `why` (documented in the server's docs).
    fn expect_differ(&mut self, what: &str, why: &'static str) {
        self.differ.push((what.to_owned(), why));
    }
}

/// Runs `scenario` on the embedded server and on the real peer, prints the table and asserts
/// that every observation is the same on both (except those marked as expected to differ).
fn both(name: &str, scenario: impl Fn(&dyn Cluster) -> Obs) {
    let _serial = SERIAL.lock();
    let embedded = Embedded::start();
    let ours = scenario(&embedded);
    let Some(peer) = real() else {
        eprintln!("\n*** SKIPPED: {name} ran against the embedded server only (no Go) ***\n");
        return;
    };
    let theirs = scenario(peer);
    println!("\n### {name}\n| observation | embedded | kube-apiserver | |\n|---|---|---|---|");
    let mut mismatches = Vec::new();
    for (i, (what, mine)) in ours.rows.iter().enumerate() {
        let (their_what, their_value) = theirs
            .rows
            .get(i)
            .unwrap_or_else(|| panic!("{name}: the real run stopped before {what}"));
        assert_eq!(what, their_what, "{name}: scenario steps diverged");
        let why = ours.differ.iter().find(|(w, _)| w == what).map(|(_, y)| *y);
        let mark = match (mine == their_value, why) {
            (true, None) => "same".to_owned(),
            (true, Some(_)) => {
                mismatches.push(format!("{what}: marked as different but the same"));
                "same (marked different)".to_owned()
            }
            (false, Some(why)) => format!("differs: {why}"),
            (false, None) => {
                mismatches.push(format!(
                    "{what}: embedded {mine:?}, kube-apiserver {their_value:?}"
                ));
                "DIFFERS".to_owned()
            }
        };
        println!("| {what} | {mine} | {their_value} | {mark} |");
    }
    assert_eq!(
        ours.rows.len(),
        theirs.rows.len(),
        "{name}: different steps"
    );
    assert!(mismatches.is_empty(), "{name}:\n{}", mismatches.join("\n"));
}

// ---- admin operations, over HTTP, the same for both ----

fn csr_path(name: &str) -> String {
    format!("{CSRS}/{name}")
}

fn list(c: &dyn Cluster) -> Vec<Value> {
    let r = c.admin().get(CSRS);
    assert_eq!(r.code, 200, "{}", r.text);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

/// The subject CN of a CSR object's `spec.request`.
fn request_cn(o: &Value) -> String {
    let pem = STANDARD
        .decode(o["spec"]["request"].as_str().unwrap_or_default())
        .expect("spec.request is base64");
    parse_csr_pem(&pem).expect("a CSR").common_name
}

/// The CSRs asking for subject `cn`, oldest first.
fn csrs_for(c: &dyn Cluster, cn: &str) -> Vec<Value> {
    let mut v: Vec<Value> = list(c)
        .into_iter()
        .filter(|o| request_cn(o) == cn)
        .collect();
    v.sort_by_key(|o| {
        o["metadata"]["creationTimestamp"]
            .as_str()
            .map(str::to_owned)
    });
    v
}

/// Waits (bounded) until `f` gives something.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {BOUND:?}: {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn add_condition(c: &dyn Cluster, name: &str, type_: &str, reason: &str, message: &str) {
    let admin = c.admin();
    let mut o = admin.get(&csr_path(name)).body;
    let conditions = o["status"]
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert(json!([])))
        .and_then(Value::as_array_mut);
    match conditions {
        Some(list) => list
            .push(json!({"type": type_, "status": "True", "reason": reason, "message": message})),
        None => {
            o["status"] = json!({"conditions": [{"type": type_, "status": "True", "reason": reason, "message": message}]})
        }
    }
    let r = admin.put(&format!("{}/approval", csr_path(name)), &o);
    assert_eq!(r.code, 200, "{type_} {name}: {}", r.text);
}

fn approve(c: &dyn Cluster, name: &str) {
    add_condition(c, name, "Approved", "TestApproved", "approved by the test");
}

/// The CSR's conditions as `type/status/reason/message`.
fn conditions(o: &Value) -> String {
    o["status"]["conditions"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|c| {
                    format!(
                        "{}/{}/{}/{}",
                        c["type"].as_str().unwrap_or(""),
                        c["status"].as_str().unwrap_or(""),
                        c["reason"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// The CSR that issued `cert`.
fn csr_of(c: &dyn Cluster, cert: &Certificate) -> Value {
    let pem = cert.cert_pem().to_owned();
    eventually("the CSR that issued the certificate", || {
        list(c).into_iter().find(|o| {
            o["status"]["certificate"]
                .as_str()
                .and_then(|b| STANDARD.decode(b).ok())
                .is_some_and(|issued| String::from_utf8_lossy(&issued).starts_with(pem.trim_end()))
        })
    })
}

fn rfc3339(s: &str) -> SystemTime {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s}: {e}"));
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.unix_timestamp() as u64)
}

/// How a certificate's dates relate to its CSR's creation: NotBefore's backdating and the
/// lifetime from creation, in whole minutes (the signer's clock and the request's round trip
/// are seconds apart).
fn dates(o: &Value, cert: &Certificate) -> (String, String) {
    let created = rfc3339(o["metadata"]["creationTimestamp"].as_str().unwrap());
    let minutes = |a: SystemTime, b: SystemTime| -> i64 {
        let secs = match a.duration_since(b) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        (secs as f64 / 60.0).round() as i64
    };
    (
        format!("{} min", minutes(created, cert.not_before())),
        format!("{} min", minutes(cert.not_after(), created)),
    )
}

fn builder(kubeconfig: &Path) -> KubeCsrClientBuilder {
    Kubeconfig::load(kubeconfig)
        .unwrap()
        .client_builder(None)
        .unwrap()
}

/// A name unique to this run, so that scenarios on the shared peer never meet each other's
/// CSRs.
fn unique(prefix: &str) -> String {
    use std::sync::atomic::AtomicUsize;
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn client_usages() -> Vec<KeyUsage> {
    vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth]
}

// ---- scenarios ----

/// A node's client certificate: the first from a bootstrap token, then three rotations, each
/// sent as the node with its current certificate. Both approve these themselves (the
/// csrapproving controller's `nodeclient` and `selfnodeclient` rules).
fn node_client_rotation(c: &dyn Cluster) -> Obs {
    let mut obs = Obs::default();
    let node = format!("system:node:{}", unique("rot"));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        FileStore::builder("kubelet-client", dir.path(), dir.path())
            .build()
            .unwrap(),
    );
    let mgr = CertificateManager::new(
        Config::builder()
            .template(CsrTemplate::new(&node).with_organization("system:nodes"))
            .usages(client_usages())
            .signer_name("kubernetes.io/kube-apiserver-client-kubelet")
            .requested_lifetime(LIFETIME)
            .store(store)
            .certificate_wait_timeout(BOUND)
            .client_factory(builder(&c.bootstrap_kubeconfig()).factory())
            .build()
            .unwrap(),
    )
    .unwrap();
    let rotated = mgr.subscribe();
    mgr.start();
    let mut cert = rotated.recv_timeout(BOUND).expect("no first certificate");
    let mut serials = vec![cert.serial_hex()];
    let first = csr_of(c, &cert);
    let (backdate, lifetime) = dates(&first, &cert);
    obs.see(
        "first CSR: name",
        first["metadata"]["name"]
            .as_str()
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .to_owned()
            + "-…",
    );
    obs.expect(
        "first CSR: sent by",
        if first["spec"]["username"] == c.bootstrap_user().as_str() {
            "the bootstrap token's user"
        } else {
            "someone else"
        },
        "the bootstrap token's user",
    );
    obs.see("first CSR: groups", {
        let mut g: Vec<String> = first["spec"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_owned())
            .collect();
        g.sort();
        g.join(",")
    });
    obs.see("first CSR: conditions", conditions(&first));
    obs.see("first certificate: created − NotBefore", backdate);
    obs.see("first certificate: NotAfter − created", lifetime);
    for i in 1..=3 {
        let next = mgr.rotate_now().expect("rotation");
        assert!(!serials.contains(&next.serial_hex()));
        serials.push(next.serial_hex());
        let o = csr_of(c, &next);
        obs.expect(
            format!("rotation {i}: sent by"),
            if o["spec"]["username"] == node.as_str() {
                "the node, with its certificate"
            } else {
                "someone else"
            },
            "the node, with its certificate",
        );
        obs.see(format!("rotation {i}: conditions"), conditions(&o));
        obs.see(
            format!("rotation {i}: subject"),
            format!("CN=<node>, O={}", next.organizations().join(",")),
        );
        cert = next;
    }
    assert_eq!(mgr.current().unwrap().serial_hex(), cert.serial_hex());
    mgr.stop();
    obs
}

#[test]
fn node_client_certificate_bootstrapped_then_rotated() {
    both(
        "node client certificate: bootstrap token, then 3 rotations",
        node_client_rotation,
    );
}

/// A kube-apiserver as clusters run it, with its watch cache for CSRs: each wait for a request
/// just created watches from the create's resourceVersion, which the cache serves once it has
/// caught up with etcd (kube-apiserver waits for that rather than answering "too large"). The
/// bootstrap and three rotations complete, and neither the bootstrap token's user nor the node
/// lists CSRs: every wait was one watch.
#[test]
fn rotations_on_an_apiserver_with_its_watch_cache_need_no_list() {
    let _serial = SERIAL.lock();
    let Some(peer) = KubeApiserver::start(&[]) else {
        eprintln!("\n*** SKIPPED: no kube-apiserver peer (no Go) ***\n");
        return;
    };
    let started = Instant::now();
    let obs = node_client_rotation(&peer);
    let took = started.elapsed();
    assert!(obs.rows.iter().any(|(w, _)| w == "rotation 3: sent by"));
    let requester = |e: &Value| {
        let user = e["user"]["username"].as_str().unwrap_or("");
        user.starts_with("system:node:") || user == peer.bootstrap_user()
    };
    let events = peer.audit_events();
    let count = |verb: &str, stage: &str| {
        events
            .iter()
            .filter(|e| {
                e["verb"] == verb
                    && e["stage"] == stage
                    && e["objectRef"]["resource"] == "certificatesigningrequests"
                    && requester(e)
            })
            .count()
    };
    assert_eq!(
        count("create", "ResponseComplete"),
        4,
        "a bootstrap and 3 rotations"
    );
    assert_eq!(count("list", "ResponseComplete"), 0, "no wait listed");
    assert!(count("watch", "ResponseStarted") >= 4, "each wait watched");
    println!("bootstrap and 3 rotations on a watch-cached kube-apiserver: {took:.2?}");
}

/// The kubelet's serving certificate (DNS and IP SANs), sent as the node with its client
/// certificate and approved by an administrator, rotated three times.
fn serving_rotation(c: &dyn Cluster) -> Obs {
    let mut obs = Obs::default();
    let name = unique("srv");
    let node = format!("system:node:{name}");
    let dir = tempfile::tempdir().unwrap();
    let client = Arc::new(
        CertificateManager::new(
            Config::builder()
                .template(CsrTemplate::new(&node).with_organization("system:nodes"))
                .usages(client_usages())
                .signer_name("kubernetes.io/kube-apiserver-client-kubelet")
                .requested_lifetime(LIFETIME)
                .store(Arc::new(
                    FileStore::builder("kubelet-client", dir.path(), dir.path())
                        .build()
                        .unwrap(),
                ))
                .certificate_wait_timeout(BOUND)
                .client_factory(builder(&c.bootstrap_kubeconfig()).factory())
                .build()
                .unwrap(),
        )
        .unwrap(),
    );
    client.rotate_now().expect("the node's client certificate");
    let serving = CertificateManager::new(
        Config::builder()
            .template(
                CsrTemplate::new(&node)
                    .with_organization("system:nodes")
                    .with_dns_name(format!("{name}.nodes.test"))
                    .with_ip_address([127, 0, 0, 1].into()),
            )
            .usages(vec![KeyUsage::DigitalSignature, KeyUsage::ServerAuth])
            .signer_name("kubernetes.io/kubelet-serving")
            .requested_lifetime(LIFETIME)
            .store(Arc::new(
                FileStore::builder("kubelet-server", dir.path(), dir.path())
                    .build()
                    .unwrap(),
            ))
            .certificate_wait_timeout(BOUND)
            .client_factory({
                let f =
                    kubelet::serving_factory(builder(&c.bootstrap_kubeconfig()), client.clone());
                move |cert: Option<&Certificate>| f(cert)
            })
            .build()
            .unwrap(),
    )
    .unwrap();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        // The administrator approves each serving CSR of this node once it is pending.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for o in csrs_for(c, &node) {
                    if o["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
                        && o["status"]["conditions"].is_null()
                    {
                        approve(c, o["metadata"]["name"].as_str().unwrap());
                    }
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        for i in 1..=3 {
            let cert = serving.rotate_now().expect("serving rotation");
            let o = csr_of(c, &cert);
            let (backdate, lifetime) = dates(&o, &cert);
            obs.expect(
                format!("rotation {i}: sent by"),
                if o["spec"]["username"] == node.as_str() {
                    "the node"
                } else {
                    "someone else"
                },
                "the node",
            );
            obs.see(
                format!("rotation {i}: usages"),
                o["spec"]["usages"].to_string(),
            );
            obs.see(format!("rotation {i}: conditions"), conditions(&o));
            obs.see(
                format!("rotation {i}: SANs"),
                format!(
                    "{} DNS, {} IP",
                    cert.dns_names().len(),
                    cert.ip_addresses().len()
                ),
            );
            obs.see(format!("rotation {i}: created − NotBefore"), backdate);
            obs.see(format!("rotation {i}: NotAfter − created"), lifetime);
        }
        stop.store(true, Ordering::Relaxed);
    });
    obs
}

#[test]
fn kubelet_serving_certificate_rotated() {
    both(
        "kubelet serving certificate: 3 rotations, approved by an administrator",
        serving_rotation,
    );
}

/// Kubelet TLS bootstrap (`--bootstrap-kubeconfig`): the `node-csr-` CSR sent with the token,
/// approved by the cluster, the kubeconfig written pointing at the new certificate, which then
/// works as the node's credentials.
fn tls_bootstrap(c: &dyn Cluster) -> Obs {
    let mut obs = Obs::default();
    let node = unique("boot");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let pki = dir.path().join("pki");
    let cert = bootstrap::load_client_cert_with(
        &kubeconfig,
        c.bootstrap_kubeconfig(),
        &pki,
        &node,
        &bootstrap::BootstrapOptions {
            certificate_wait_timeout: BOUND,
            ..Default::default()
        },
    )
    .expect("bootstrap")
    .expect("a certificate");
    let o = csr_of(c, &cert);
    obs.see(
        "CSR name",
        o["metadata"]["name"]
            .as_str()
            .unwrap()
            .split('-')
            .take(2)
            .collect::<Vec<_>>()
            .join("-")
            + "-…",
    );
    obs.expect(
        "sent by",
        if o["spec"]["username"] == c.bootstrap_user().as_str() {
            "the bootstrap token's user"
        } else {
            "someone else"
        },
        "the bootstrap token's user",
    );
    obs.see("usages", o["spec"]["usages"].to_string());
    obs.see("conditions", conditions(&o));
    obs.see(
        "subject",
        format!(
            "CN=system:node:<node>, O={}",
            cert.organizations().join(",")
        ),
    );
    assert_eq!(cert.common_name(), format!("system:node:{node}"));
    // The written kubeconfig is the node's: a rotation through it is sent as the node.
    let mgr = CertificateManager::new(
        Config::builder()
            .template(CsrTemplate::new(cert.common_name()).with_organization("system:nodes"))
            .usages(client_usages())
            .signer_name("kubernetes.io/kube-apiserver-client-kubelet")
            .requested_lifetime(LIFETIME)
            .store(Arc::new(certrotate::MemoryStore::new()))
            .certificate_wait_timeout(BOUND)
            .client_factory(builder(&kubeconfig).factory())
            .build()
            .unwrap(),
    )
    .unwrap();
    let next = mgr
        .rotate_now()
        .expect("a rotation with the written kubeconfig");
    let o = csr_of(c, &next);
    obs.expect(
        "written kubeconfig: CSR sent by",
        if o["spec"]["username"] == cert.common_name() {
            "the node"
        } else {
            "someone else"
        },
        "the node",
    );
    obs.see("written kubeconfig: conditions", conditions(&o));
    obs
}

#[test]
fn kubelet_tls_bootstrap_from_a_bootstrap_token() {
    both(
        "kubelet TLS bootstrap from a bootstrap kubeconfig",
        tls_bootstrap,
    );
}

/// A requester's manager whose CSR nobody approves on their own (`kube-apiserver-client`).
fn requester_manager(
    c: &dyn Cluster,
    cn: &str,
    tune: impl FnOnce(KubeCsrClientBuilder) -> KubeCsrClientBuilder,
    store: Option<Arc<FileStore>>,
    wait: Duration,
) -> CertificateManager {
    let store: Arc<dyn certrotate::Store> = match store {
        Some(s) => s,
        None => Arc::new(certrotate::MemoryStore::new()),
    };
    CertificateManager::new(
        Config::builder()
            .template(CsrTemplate::new(cn))
            .usages(client_usages())
            .signer_name("kubernetes.io/kube-apiserver-client")
            .requested_lifetime(LIFETIME)
            .store(store)
            .certificate_wait_timeout(wait)
            .client_factory(tune(builder(&c.requester_kubeconfig())).factory())
            .build()
            .unwrap(),
    )
    .unwrap()
}

/// The pending CSR for `cn`, once there is one.
fn pending(c: &dyn Cluster, cn: &str) -> String {
    eventually("the requester's CSR", || {
        csrs_for(c, cn)
            .first()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
    })
}

/// The error's text with the CSR's name taken out.
fn error_text(e: &Error, name: &str) -> String {
    e.to_string().replace(name, "<name>")
}

fn denied(c: &dyn Cluster) -> Obs {
    let mut obs = Obs::default();
    let cn = unique("denied");
    let mgr = requester_manager(c, &cn, |b| b, None, BOUND);
    let result = thread::scope(|s| {
        let attempt = s.spawn(|| mgr.rotate_now());
        let name = pending(c, &cn);
        add_condition(c, &name, "Denied", "TestDenied", "denied by the test");
        (attempt.join().unwrap(), name)
    });
    let (result, name) = result;
    let err = result.expect_err("a denied CSR gives no certificate");
    obs.see("error", error_text(&err, &name));
    obs.expect(
        "is CsrError::Denied",
        matches!(err, Error::Csr(CsrError::Denied { .. })),
        true,
    );
    obs.see("conditions", conditions(&csrs_for(c, &cn)[0]));
    obs
}

#[test]
fn a_denied_csr() {
    both("a denied CSR", denied);
}

fn deleted_mid_wait(c: &dyn Cluster) -> Obs {
    let mut obs = Obs::default();
    let cn = unique("deleted");
    let mgr = requester_manager(c, &cn, |b| b, None, BOUND);
    let (result, name, code) = thread::scope(|s| {
        let attempt = s.spawn(|| mgr.rotate_now());
        let name = pending(c, &cn);
        // Deleted once the requester watches it.
        eventually("the requester's watch", || {
            (c.calls("watch", "requester") > 0).then_some(())
        });
        let r = c.admin().delete(&csr_path(&name));
        (attempt.join().unwrap(), name, r.code)
    });
    obs.expect("delete answer", code, 200);
    let err = result.expect_err("a deleted CSR gives no certificate");
    obs.see("error", error_text(&err, &name));
    obs.expect(
        "is CsrError::Deleted",
        matches!(err, Error::Csr(CsrError::Deleted { .. })),
        true,
    );
    obs
}

#[test]
fn a_csr_deleted_while_its_requester_waits() {
    both("a CSR deleted while its requester waits", deleted_mid_wait);
}

/// The requester's watch ends (its `timeoutSeconds` is 1) and the resource version it would
/// resume from has been compacted away: the watch is answered 410, the client lists again and
/// then sees the approval.
fn watch_expired(c: &dyn Cluster) -> Obs {
    let mut obs = Obs::default();
    let cn = unique("expired");
    let mgr = requester_manager(
        c,
        &cn,
        |b| b.watch_timeout(Duration::from_secs(1)),
        None,
        BOUND,
    );
    let lists_before = c.calls("list", "requester");
    let watches_before = c.calls("watch", "requester");
    let result = thread::scope(|s| {
        let attempt = s.spawn(|| mgr.rotate_now());
        let name = pending(c, &cn);
        let created_at = csrs_for(c, &cn)[0]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned();
        // A request just created is watched from its creation's version, with no list.
        eventually("the requester's first watch", || {
            (c.calls("watch", "requester") > watches_before).then_some(())
        });
        obs.expect(
            "lists before the first watch",
            c.calls("list", "requester") - lists_before,
            0,
        );
        // Two changes after the requester's create, then compaction at the newest: etcd keeps
        // the newest revision only, so the version the requester watches from is gone.
        let other = unique("other");
        let made = c.admin().post(CSRS, &unrelated_csr(&other));
        assert_eq!(made.code, 201, "{}", made.text);
        let gone = c.admin().delete(&csr_path(&other));
        assert_eq!(gone.code, 200, "{}", gone.text);
        c.compact();
        // What a watch from the CSR's own version is answered now.
        let mut w = c.admin().watch(&format!(
            "fieldSelector=metadata.name%3D{name}&resourceVersion={created_at}&timeoutSeconds=5"
        ));
        let first = w.next().expect("an event");
        obs.see(
            "watch from a compacted version: event",
            first["type"].as_str().unwrap_or(""),
        );
        obs.see("… its Status code", first["object"]["code"].to_string());
        obs.see(
            "… its reason",
            first["object"]["reason"].as_str().unwrap_or(""),
        );
        let message = first["object"]["message"].as_str().unwrap_or("").to_owned();
        obs.see("… its message", message.replace(&created_at, "<rv>"));
        obs.expect_differ(
            "… its message",
            "the peer serves CSR watches from etcd (watch cache off, so that compaction can \
             expire a version) and words it as etcd3/errors.go; a kube-apiserver with its watch \
             cache, the default, words it as cacher/watch_cache_history.go, as the embedded \
             server does",
        );
        obs.see("… then the stream ends", w.next().is_none());
        eventually("a list, after the watch was answered 410", || {
            (c.calls("list", "requester") > lists_before).then_some(())
        });
        approve(c, &name);
        attempt.join().unwrap()
    });
    let cert = result.expect("the certificate, after the relist");
    obs.expect(
        "certificate",
        format!(
            "CN={}",
            if cert.common_name() == cn {
                "<cn>"
            } else {
                "?"
            }
        ),
        "CN=<cn>",
    );
    obs
}

/// A CSR body from another requester (the administrator), only to change the resource version.
fn unrelated_csr(cn: &str) -> Value {
    let key = server_common::key();
    let pem = server_common::csr_pem(&CsrTemplate::new(cn), &key);
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": cn},
        "spec": {
            "request": STANDARD.encode(pem),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["digital signature", "client auth"],
            "expirationSeconds": LIFETIME.as_secs(),
        }
    })
}

#[test]
fn a_watch_that_expires_410_lists_again() {
    both(
        "a watch whose resource version was compacted (410)",
        watch_expired,
    );
}

/// A manager stopped while its CSR is pending and started again adopts the CSR it had sent
/// (the request's key was kept in the store): one CSR, whatever the restarts.
fn restart_adopts(c: &dyn Cluster) -> Obs {
    let mut obs = Obs::default();
    let cn = unique("adopt");
    let dir = tempfile::tempdir().unwrap();
    let store = || {
        Some(Arc::new(
            FileStore::builder("agent", dir.path(), dir.path())
                .build()
                .unwrap(),
        ))
    };
    let wait = Duration::from_secs(2);
    let before = requester_manager(c, &cn, |b| b, store(), wait);
    let first = before.rotate_now();
    obs.expect(
        "first attempt",
        match first {
            Err(Error::Csr(CsrError::Timeout { .. })) => "timed out waiting".to_owned(),
            other => format!("{other:?}"),
        },
        "timed out waiting",
    );
    drop(before);
    obs.expect("CSRs after the first attempt", csrs_for(c, &cn).len(), 1);
    let after = requester_manager(c, &cn, |b| b, store(), wait);
    let again = after.rotate_now();
    obs.expect(
        "after the restart",
        match again {
            Err(Error::Csr(CsrError::Timeout { .. })) => "timed out waiting".to_owned(),
            other => format!("{other:?}"),
        },
        "timed out waiting",
    );
    obs.expect("CSRs after the restart", csrs_for(c, &cn).len(), 1);
    approve(c, &pending(c, &cn));
    let cert = after.rotate_now().expect("the adopted CSR's certificate");
    obs.expect(
        "certificate",
        if cert.common_name() == cn {
            "issued for the adopted CSR"
        } else {
            "?"
        },
        "issued for the adopted CSR",
    );
    obs.expect("CSRs at the end", csrs_for(c, &cn).len(), 1);
    obs
}

#[test]
fn a_restart_adopts_the_csr_it_had_sent() {
    both("a restart adopts the CSR it had sent", restart_adopts);
}

/// The OpenAPI documents the embedded server serves (`src/server/openapi/`) are exactly what
/// this kube-apiserver gives, cut down to the served paths by the peer's `openapi` command, and
/// the embedded server serves them byte for byte in each representation. With
/// `CERTROTATE_WRITE_OPENAPI=1` the test writes the peer's documents into `src/server/openapi/`
/// instead (after a Kubernetes upgrade of the peer).
#[test]
fn the_openapi_documents_are_the_apiservers() {
    let _serial = SERIAL.lock();
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/openapi");
    let embedded = Embedded::start();
    let admin = embedded.admin();
    let served = |path: &str, accept: &str| -> Vec<u8> {
        let mut r = admin
            .agent
            .get(format!("{}{path}", admin.base))
            .header("Accept", accept)
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path} {accept}");
        r.body_mut().read_to_vec().unwrap()
    };
    for (file, path, accept) in [
        ("openapi-v2.json", "/openapi/v2", "application/json"),
        (
            "openapi-v2.pb",
            "/openapi/v2",
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        ),
        ("openapi-v3.json", "/openapi/v3", "application/json"),
        (
            "openapi-v3-apis-certificates.k8s.io-v1.json",
            "/openapi/v3/apis/certificates.k8s.io/v1",
            "application/json",
        ),
        (
            "openapi-v3-apis-certificates.k8s.io-v1.pb",
            "/openapi/v3/apis/certificates.k8s.io/v1",
            "application/com.github.proto-openapi.spec.v3.v1.0+protobuf",
        ),
    ] {
        assert_eq!(
            served(path, accept),
            std::fs::read(ours.join(file)).unwrap(),
            "{path} as {accept} is not {file}"
        );
    }
    let Some(peer) = real() else {
        eprintln!(
            "\n*** SKIPPED: the OpenAPI documents were not compared with kube-apiserver's (no Go) ***\n"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = peer.dump_openapi(dir.path());
    let write = std::env::var_os("CERTROTATE_WRITE_OPENAPI").is_some();
    let mut stale = Vec::new();
    for file in &files {
        let theirs = std::fs::read(dir.path().join(file)).unwrap();
        if write {
            std::fs::write(ours.join(file), &theirs).unwrap();
        } else if std::fs::read(ours.join(file)).ok().as_deref() != Some(&theirs[..]) {
            stale.push(file.clone());
        }
    }
    assert_eq!(files.len(), 5, "{files:?}");
    assert!(
        stale.is_empty(),
        "src/server/openapi/ differs from kube-apiserver's documents: {stale:?}; \
         rewrite them with CERTROTATE_WRITE_OPENAPI=1 cargo test --all-features --test kube_real"
    );
}

const SSAR: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// The same requests, answered with errors, on both: the status code and the `Status` body
/// (reason, message, details and causes), with the objects' names taken out.
fn error_answers(c: &dyn Cluster) -> Obs {
    let mut obs = Obs::default();
    let admin = c.admin();
    let name = unique("status");
    let (valid, _) = server_common::client_body(Some(&name), &name);
    assert_eq!(admin.post(CSRS, &valid).code, 201);
    let uid = admin.get(&csr_path(&name)).body["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = valid.clone();
        b["metadata"]["name"] = json!(format!("{name}-x"));
        f(&mut b);
        b
    };
    let cases: Vec<(&str, server_common::Resp)> = vec![
        ("get a missing CSR", admin.get(&csr_path(&format!("{name}-missing")))),
        ("create an existing name", admin.post(CSRS, &valid)),
        ("create without spec.request", admin.post(CSRS, &with(&|b| b["spec"]["request"] = json!("")))),
        (
            "create with a request that is not a CSR",
            admin.post(CSRS, &with(&|b| b["spec"]["request"] = json!(STANDARD.encode("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")))),
        ),
        ("create with bad base64", admin.post(CSRS, &with(&|b| b["spec"]["request"] = json!("%%%")))),
        ("create without usages", admin.post(CSRS, &with(&|b| { b["spec"].as_object_mut().unwrap().remove("usages"); }))),
        ("create with usages: null", admin.post(CSRS, &with(&|b| b["spec"]["usages"] = Value::Null))),
        ("create with an unknown usage", admin.post(CSRS, &with(&|b| b["spec"]["usages"] = json!(["digital signature", "frobnicate"])))),
        ("create without signerName", admin.post(CSRS, &with(&|b| { b["spec"].as_object_mut().unwrap().remove("signerName"); }))),
        ("create with expirationSeconds 599", admin.post(CSRS, &with(&|b| b["spec"]["expirationSeconds"] = json!(599)))),
        ("create with dryRun=Foo", admin.post(&format!("{CSRS}?dryRun=Foo"), &with(&|_| {}))),
        ("create with a wrong kind", admin.post(CSRS, &with(&|b| b["kind"] = json!("Pod")))),
        ("approve as the requester", c.requester().put(&format!("{}/approval", csr_path(&name)), &admin.get(&csr_path(&name)).body)),
        ("delete as the requester", c.requester().delete(&csr_path(&name))),
        ("list without credentials", c.anonymous().get(CSRS)),
        ("delete with a wrong uid precondition", admin.delete_with(&csr_path(&name), &json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-the-uid"}}))),
        ("get an unknown resource of the group", admin.get("/apis/certificates.k8s.io/v1/nosuchthings")),
        ("get an unknown group", admin.get("/apis/nosuch.example.com/v1")),
        ("watch from a future resourceVersion", admin.get(&format!("{CSRS}?watch=true&resourceVersion=999999999&timeoutSeconds=1"))),
        (
            "SelfSubjectAccessReview with both kinds of attributes",
            admin.post(SSAR, &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}, "nonResourceAttributes": {"path": "/x", "verb": "get"}}})),
        ),
        (
            "SelfSubjectAccessReview with neither and a name",
            admin.post(SSAR, &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "metadata": {"name": "n"}, "spec": {}})),
        ),
        (
            "merge patch with force=yes",
            admin.send_raw("PATCH", &format!("{}?force=yes", csr_path(&name)), "application/merge-patch+json", br#"{"metadata":{"labels":{"a":"b"}}}"#),
        ),
        (
            "merge patch with force=maybe and dryRun=Bad",
            admin.send_raw("PATCH", &format!("{}?force=maybe&dryRun=Bad", csr_path(&name)), "application/merge-patch+json", br#"{"metadata":{"labels":{"a":"b"}}}"#),
        ),
        (
            "merge patch with an unprintable fieldManager, dryRun=Bad and fieldValidation=X",
            admin.send_raw("PATCH", &format!("{}?fieldManager=a%01b&dryRun=Bad&fieldValidation=X", csr_path(&name)), "application/merge-patch+json", br#"{"metadata":{"labels":{"a":"b"}}}"#),
        ),
        // One bad label per case: Go checks a map's keys in a random order.
        ("create with a bad label key and value and a bad annotation key", admin.post(CSRS, &with(&|b| {
            b["metadata"]["labels"] = json!({"-a": "b%"});
            b["metadata"]["annotations"] = json!({"Bad Key": "v", "Example.com/Fine": "v"});
        }))),
        ("create with a label value of 64 bytes", admin.post(CSRS, &with(&|b| b["metadata"]["labels"] = json!({"x": "x".repeat(64)})))),
        ("create with a label key with an empty name part", admin.post(CSRS, &with(&|b| b["metadata"]["labels"] = json!({"p/": ""})))),
        ("create with a label key with an upper-case prefix", admin.post(CSRS, &with(&|b| b["metadata"]["labels"] = json!({"Upper.Case/x": "y"})))),
        ("create with a label key with two slashes", admin.post(CSRS, &with(&|b| b["metadata"]["labels"] = json!({"a/b/c": "d"})))),
        ("update with a bad label", admin.put(&csr_path(&name), &{
            let mut o = admin.get(&csr_path(&name)).body;
            o["metadata"]["labels"] = json!({"x": "-y-"});
            o
        })),
        // Label selectors as labels.Parse reads them.
        ("list with the label selector ==", admin.get(&format!("{CSRS}?labelSelector=%3D%3D"))),
        ("list with the label selector a=b=c", admin.get(&format!("{CSRS}?labelSelector=a%3Db%3Dc"))),
        ("list with the label selector 'a b'", admin.get(&format!("{CSRS}?labelSelector=a%20b"))),
        ("list with the label selector a,", admin.get(&format!("{CSRS}?labelSelector=a%2C"))),
        ("list with the label selector -a=b", admin.get(&format!("{CSRS}?labelSelector=-a%3Db"))),
        ("list with the label selector a=%%", admin.get(&format!("{CSRS}?labelSelector=a%3D%25%25"))),
        ("list with the label selector a>%", admin.get(&format!("{CSRS}?labelSelector=a%3E%25"))),
        ("list with the label selector a<x", admin.get(&format!("{CSRS}?labelSelector=a%3Cx"))),
        ("list with the label selector !a=b", admin.get(&format!("{CSRS}?labelSelector=!a%3Db"))),
        ("list with the label selector a=(b)", admin.get(&format!("{CSRS}?labelSelector=a%3D(b)"))),
        ("list with the label selector 'a in (b'", admin.get(&format!("{CSRS}?labelSelector=a%20in%20(b"))),
        ("list with the label selector 'a in (b c)'", admin.get(&format!("{CSRS}?labelSelector=a%20in%20(b%20c)"))),
        ("list with the label selector 'a notin b'", admin.get(&format!("{CSRS}?labelSelector=a%20notin%20b"))),
        ("list with the label selector x/=y", admin.get(&format!("{CSRS}?labelSelector=x%2F%3Dy"))),
        ("list with the label selector A.b/c=d", admin.get(&format!("{CSRS}?labelSelector=A.b%2Fc%3Dd"))),
        ("list with the label selector a/b/c=d", admin.get(&format!("{CSRS}?labelSelector=a%2Fb%2Fc%3Dd"))),
        ("list with the label selector a<=1", admin.get(&format!("{CSRS}?labelSelector=a%3C%3D1"))),
        // ListOptions: the query-parameter conversion (400) and ValidateListOptions (422).
        ("list with resourceVersionMatch and no resourceVersion", admin.get(&format!("{CSRS}?resourceVersionMatch=NotOlderThan"))),
        ("list with resourceVersionMatch=Exact at resourceVersion 0", admin.get(&format!("{CSRS}?resourceVersion=0&resourceVersionMatch=Exact"))),
        ("list with every ListOptions rule broken", admin.get(&format!("{CSRS}?resourceVersionMatch=Bogus&continue=x&sendInitialEvents=false"))),
        ("list with sendInitialEvents given empty", admin.get(&format!("{CSRS}?sendInitialEvents="))),
        ("list with limit=x", admin.get(&format!("{CSRS}?limit=x"))),
        ("list with limit given empty", admin.get(&format!("{CSRS}?limit="))),
        ("list with a limit out of range", admin.get(&format!("{CSRS}?limit=99999999999999999999"))),
        ("list with a bad label selector and limit=x", admin.get(&format!("{CSRS}?labelSelector=%3D%3D&limit=x"))),
        ("list with a bad label selector and a bad resourceVersionMatch", admin.get(&format!("{CSRS}?labelSelector=%3D%3D&resourceVersionMatch=Bogus"))),
        ("deletecollection (dry run) with a bad resourceVersionMatch", admin.delete(&format!("{CSRS}?dryRun=All&labelSelector=none%3D1&resourceVersionMatch=Bogus"))),
        ("deletecollection (dry run) with limit=x", admin.delete(&format!("{CSRS}?dryRun=All&labelSelector=none%3D1&limit=x"))),
        ("deletecollection (dry run) with a bad label selector", admin.delete(&format!("{CSRS}?dryRun=All&labelSelector=a%2C"))),
        ("list as a Table with includeObject=Bogus", admin.get_accept(&format!("{CSRS}?includeObject=Bogus"), "application/json;as=Table;g=meta.k8s.io;v=v1")),
        ("get as a Table with includeObject=Bogus", admin.get_accept(&format!("{}?includeObject=Bogus", csr_path(&name)), "application/json;as=Table;g=meta.k8s.io;v=v1")),
        ("list with timeoutSeconds=x", admin.get(&format!("{CSRS}?timeoutSeconds=x"))),
        ("watch with timeoutSeconds=x", admin.get(&format!("{CSRS}?watch=true&timeoutSeconds=x"))),
        ("watch with sendInitialEvents and no resourceVersionMatch", admin.get(&format!("{CSRS}?watch=true&sendInitialEvents=true&timeoutSeconds=1"))),
        ("watch with resourceVersionMatch and no sendInitialEvents", admin.get(&format!("{CSRS}?watch=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"))),
        ("watch with every ListOptions rule broken", admin.get(&format!("{CSRS}?watch=true&sendInitialEvents=false&resourceVersionMatch=Bogus&continue=x&timeoutSeconds=1"))),
    ];
    obs.expect_differ(
        "watch from a future resourceVersion: code",
        "the peer serves CSR watches from etcd (watch cache off), which waits for the version; \
         kube-apiserver's watch cache (the default) answers 504 Too large resource version after \
         3 s, as the embedded server does at once",
    );
    for what in ["reason", "message", "causes"] {
        obs.expect_differ(
            &format!("watch from a future resourceVersion: {what}"),
            "as its code",
        );
    }
    for (what, r) in cases {
        obs.see(format!("{what}: code"), r.code);
        let b = &r.body;
        let text = |v: &Value| {
            v.as_str()
                .unwrap_or("")
                .replace(&name, "<name>")
                .replace(&uid, "<uid>")
        };
        obs.see(format!("{what}: reason"), text(&b["reason"]));
        obs.see(format!("{what}: message"), text(&b["message"]));
        let causes: Vec<String> = b["details"]["causes"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|c| {
                        format!(
                            "{}|{}|{}",
                            text(&c["reason"]),
                            text(&c["field"]),
                            text(&c["message"])
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        obs.see(format!("{what}: causes"), causes.join(" ; "));
        obs.see(
            format!("{what}: details"),
            format!(
                "name={} group={} kind={}",
                text(&b["details"]["name"]),
                text(&b["details"]["group"]),
                text(&b["details"]["kind"])
            ),
        );
    }
    obs
}

/// A list's shape: the items carry no `apiVersion` and `kind`, a page cut by `limit` says how
/// many items are left (`remainingItemCount`) only when no selector filters them, and the
/// boolean query parameters read as Go reads them (`watch=False` is a list, `watch=` a watch).
fn list_shape(c: &dyn Cluster) -> Obs {
    let mut obs = Obs::default();
    let admin = c.admin();
    let label = unique("page");
    let names_first = unique("page");
    for i in 0..3 {
        let name = if i == 0 {
            names_first.clone()
        } else {
            unique("page")
        };
        let (mut body, _) = server_common::client_body(Some(&name), &name);
        body["metadata"]["labels"] = json!({"page": label});
        assert_eq!(admin.post(CSRS, &body).code, 201);
    }
    let all = admin.get(CSRS);
    let total = all.body["items"].as_array().map_or(0, Vec::len);
    let keys = |v: &Value| {
        let mut k: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        k.sort_unstable();
        k.join(",")
    };
    obs.see("list: keys of an item", keys(&all.body["items"][0]));
    obs.see(
        "list: keys of the list's metadata",
        keys(&all.body["metadata"]),
    );
    let page = admin.get(&format!("{CSRS}?limit=1"));
    obs.see(
        "limit=1: items",
        page.body["items"].as_array().map_or(0, Vec::len),
    );
    obs.see(
        "limit=1: keys of the list's metadata",
        keys(&page.body["metadata"]),
    );
    obs.see(
        "limit=1: remainingItemCount is the number of items left",
        page.body["metadata"]["remainingItemCount"].as_u64() == Some(total as u64 - 1),
    );
    let cached = admin.get(&format!(
        "{CSRS}?resourceVersion=0&limit=1&labelSelector=page%3D{label}"
    ));
    obs.see(
        "resourceVersion=0&limit=1: items, continue",
        format!(
            "{} {}",
            cached.body["items"].as_array().map_or(0, Vec::len),
            cached.body["metadata"]["continue"].is_string()
        ),
    );
    obs.expect_differ(
        "resourceVersion=0&limit=1: items, continue",
        "kube-apiserver answers a list at resourceVersion 0 from its watch cache, whole, \
         ignoring limit (3 items, no continue, measured with the default flags), as the embedded \
         server does; this peer has the CSR watch cache off, so etcd pages it",
    );
    let selected = admin.get(&format!("{CSRS}?limit=1&labelSelector=page%3D{label}"));
    obs.see(
        "limit=1 with a label selector: items",
        selected.body["items"].as_array().map_or(0, Vec::len),
    );
    obs.see(
        "limit=1 with a label selector: keys of the list's metadata",
        keys(&selected.body["metadata"]),
    );
    let table = admin.get_accept(
        &format!("{CSRS}?limit=1"),
        "application/json;as=Table;g=meta.k8s.io;v=v1",
    );
    obs.see(
        "limit=1 as a Table: keys of the table's metadata",
        keys(&table.body["metadata"]),
    );
    for include in [
        "",
        "&includeObject=None",
        "&includeObject=Object",
        "&includeObject=Metadata",
    ] {
        for path in [
            format!("{CSRS}?limit=1"),
            format!("{}?x=1", csr_path(&names_first)),
        ] {
            let t = admin.get_accept(
                &format!("{path}{include}"),
                "application/json;as=Table;g=meta.k8s.io;v=v1",
            );
            let object = &t.body["rows"][0]["object"];
            let what = if object.is_null() {
                "null".to_owned()
            } else {
                keys(object)
            };
            let at = if path.contains("?limit") {
                "list"
            } else {
                "get"
            };
            obs.see(format!("Table of a {at}{include}: a row's object"), what);
        }
    }
    let partial = admin.get_accept(
        &format!("{CSRS}?limit=1"),
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    );
    obs.see(
        "limit=1 as PartialObjectMetadataList: keys of an item",
        keys(&partial.body["items"][0]),
    );
    obs.see(
        "limit=1 as PartialObjectMetadataList: keys of the list's metadata",
        keys(&partial.body["metadata"]),
    );
    // A watch from the list's version that times out at once sends no event: an empty body.
    let what = |r: &server_common::Resp| match r.body["kind"].as_str() {
        Some(kind) => format!("{} {kind}", r.code),
        None => format!("{} {:?}", r.code, r.text),
    };
    // Label selectors that parse: which of the three CSRs (labelled page=<label>, n=0, 1, 2)
    // each one selects.
    let names: Vec<String> = admin
        .get(&format!("{CSRS}?labelSelector=page%3D{label}"))
        .body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    for (i, n) in names.iter().enumerate() {
        let mut o = admin.get(&csr_path(n)).body;
        o["metadata"]["labels"]["n"] = json!(i.to_string());
        assert_eq!(admin.put(&csr_path(n), &o).code, 200);
    }
    for sel in [
        "n>0",
        "n<2",
        "n>-1",
        "n>0,n<2",
        "n in (0,2)",
        "n notin (0,,)",
        "n in (,1,)",
        "n in ()",
        "!n",
        "n",
        "n=",
        "n==1",
        "n!=1",
        "in=1",
        "n=in",
        " n = 1 , page ",
        "n\u{0}=1",
    ] {
        let q = sel.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
        let r = admin.get(&format!("{CSRS}?labelSelector=page%3D{label},{q}"));
        let picked: Vec<String> = r.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["metadata"]["name"].as_str())
            .filter_map(|n| names.iter().position(|m| m == n))
            .map(|i| i.to_string())
            .collect();
        obs.see(
            format!("label selector {sel:?}"),
            format!(
                "{} {}{}",
                r.code,
                picked.join(","),
                r.body["message"].as_str().unwrap_or("")
            ),
        );
    }
    // The initial events of a watch-list, then the bookmark that ends them.
    let r = admin.get(&format!(
        "{CSRS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan\
         &allowWatchBookmarks=true&timeoutSeconds=1&labelSelector=page%3D{label}"
    ));
    let events: Vec<Value> = r
        .text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    obs.see("watch-list: event types", types.join(","));
    let mut end = events.last().cloned().unwrap_or(Value::Null);
    end["object"]["metadata"]["resourceVersion"] = json!("<rv>");
    obs.see("watch-list: the last event", end);
    let rv = admin.get(CSRS).body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    for q in ["watch=False", "watch=0", "watch=", "watch=yes"] {
        let r = admin.get(&format!(
            "{CSRS}?{q}&resourceVersion={rv}&timeoutSeconds=1&labelSelector=page%3D{label}"
        ));
        obs.see(format!("{q}: answer"), what(&r));
    }
    obs
}

#[test]
fn a_lists_items_pages_and_boolean_parameters() {
    both("a list's items, pages and boolean parameters", list_shape);
}

#[test]
fn error_answers_and_their_status_bodies() {
    both("error answers and their Status bodies", error_answers);
}

/// The `certrotate` command (`run --once`) gets a node client certificate with a bootstrap
/// kubeconfig, writes the plain files (the CA bundle is the kubeconfig's) and runs its hook
/// once with the new serial; the certificate verifies against the cluster's CA.
fn command_once(c: &dyn Cluster) -> Obs {
    use std::os::unix::fs::PermissionsExt;
    let mut obs = Obs::default();
    let node = format!("system:node:{}", unique("cmd"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let hook = out.join("hook.txt");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_certrotate"))
        .args(["run", "--once", "--kubeconfig"])
        .arg(c.bootstrap_kubeconfig())
        .args([
            "--signer-name",
            "kubernetes.io/kube-apiserver-client-kubelet",
            "--cn",
            &node,
            "--org",
            "system:nodes",
            "--usages",
            "digital signature,client auth",
            "--expiration-seconds",
            "3600",
            "--prefix",
            "kubelet-client",
        ])
        .arg("--dir")
        .arg(out.join("pki"))
        .arg("--cert-file")
        .arg(out.join("tls.crt"))
        .arg("--key-file")
        .arg(out.join("tls.key"))
        .arg("--ca-file")
        .arg(out.join("ca.crt"))
        .arg("--exec")
        .arg(format!("echo \"$CERTROTATE_SERIAL\" >> {}", hook.display()))
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .unwrap();
    obs.expect("exit code", run.status.code().unwrap_or(-1), 0);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let cert = Certificate::from_pem(
        &std::fs::read(out.join("tls.crt")).unwrap(),
        &std::fs::read(out.join("tls.key")).unwrap(),
    )
    .expect("the written pair");
    let ca = std::fs::read_to_string(out.join("ca.crt")).unwrap();
    let kubeconfig_ca = builder(&c.bootstrap_kubeconfig())
        .ca_bundle_pem()
        .unwrap()
        .unwrap();
    obs.expect(
        "CA file is the kubeconfig's CA",
        ca.as_bytes() == kubeconfig_ca.as_slice(),
        true,
    );
    // OpenSSL checks it as a TLS client certificate against the written CA file.
    let verified = std::process::Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(out.join("ca.crt"))
        .arg(out.join("tls.crt"))
        .output()
        .expect("openssl (required by the TLS tests too)");
    obs.expect(
        "openssl verify -purpose sslclient with the CA file",
        String::from_utf8_lossy(&verified.stdout)
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or("")
            .to_owned(),
        "OK",
    );
    obs.see(
        "subject",
        format!("CN=<node>, O={}", cert.organizations().join(",")),
    );
    assert_eq!(cert.common_name(), node);
    let mode = |f: &str| std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
    obs.expect(
        "modes cert, key, CA",
        format!(
            "{:o} {:o} {:o}",
            mode("tls.crt"),
            mode("tls.key"),
            mode("ca.crt")
        ),
        "644 600 644",
    );
    let serials = std::fs::read_to_string(&hook).unwrap();
    let serial_matches = serials
        .lines()
        .map(|l| l.replace(':', "").to_ascii_lowercase())
        .eq([cert.serial_hex().replace(':', "").to_ascii_lowercase()]);
    obs.expect(
        "hook ran once, with the certificate's serial",
        serial_matches,
        true,
    );
    obs.see("conditions", conditions(&csr_of(c, &cert)));
    obs
}

#[test]
fn the_command_gets_a_node_certificate() {
    both(
        "certrotate run --once with a bootstrap kubeconfig",
        command_once,
    );
}

// ---- deploy/rbac.yaml on the real cluster ----

/// `kubectl auth can-i VERB RESOURCE [--subresource S] --as USER`: whether the real
/// apiserver's RBAC allows it.
fn can_i(kubectl: &Path, admin: &Path, user: &str, verb: &str, resource: &str) -> bool {
    let (resource, subresource) = match resource.split_once('#') {
        Some((r, s)) => (r, Some(s)),
        None => (resource, None),
    };
    let mut cmd = std::process::Command::new(kubectl);
    cmd.arg("--kubeconfig")
        .arg(admin)
        // Every namespace (and none for cluster-scoped resources).
        .args([
            "auth",
            "can-i",
            "--all-namespaces",
            verb,
            resource,
            "--as",
            user,
        ]);
    if let Some(s) = subresource {
        cmd.args(["--subresource", s]);
    }
    let out = cmd.output().unwrap();
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // A resource type kubectl does not know (it warns on stderr) would be asked about as an
    // unknown type, and its "no" would say nothing.
    assert!(
        out.stderr.is_empty(),
        "kubectl auth can-i {verb} {resource}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match (out.status.code(), answer.as_str()) {
        (Some(0), "yes") => true,
        (Some(1), "no") => false,
        _ => panic!(
            "kubectl auth can-i {verb} {resource} --as {user}: {:?} {answer} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Whether `user` may `verb` the signer `signer` (resource `signers` of certificates.k8s.io,
/// named by the signer name), by a SubjectAccessReview created with the real kubectl:
/// `kubectl auth can-i` cannot ask it, `signers` being no resource type the API serves.
fn may_for_signer(kubectl: &Path, admin: &Path, user: &str, verb: &str, signer: &str) -> bool {
    use std::io::Write;
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:authenticated"],
            "resourceAttributes": {
                "group": "certificates.k8s.io",
                "resource": "signers",
                "name": signer,
                "verb": verb,
            },
        },
    });
    let mut child = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(admin)
        .args(["create", "-f", "-", "-o", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(review.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "SubjectAccessReview: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["status"]["allowed"].as_bool().expect("status.allowed")
}

/// The signer of client certificates for kube-apiserver, which deploy/rbac.yaml is for.
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// `deploy/rbac.yaml`, applied with the real kubectl to the real kube-apiserver, gives the
/// requester (the service account and the user of the certificate's CN, as bound there)
/// exactly the verbs certrotate uses on CSRs (create, get, list, watch; none before the file is
/// applied) and nothing more: no update, patch, delete, approval, status, signer approval or
/// signing, no other resource. The approver role, bound to a user, may approve for
/// kubernetes.io/kube-apiserver-client only, and may not create or delete CSRs.
#[test]
fn deploy_rbac_grants_what_certrotate_needs_and_nothing_more() {
    let _serial = SERIAL.lock();
    let Some(peer) = real() else {
        eprintln!("\n*** SKIPPED: deploy/rbac.yaml was not checked (no Go) ***\n");
        return;
    };
    let Some(kubectl) = go_peer::build("kubectl") else {
        return;
    };
    let admin = peer.admin_kubeconfig();
    const CSRS_R: &str = "certificatesigningrequests.certificates.k8s.io";
    let requesters = [
        "system:serviceaccount:my-namespace:my-service",
        "my-service",
    ];
    let needed = ["create", "get", "list", "watch"];
    for user in requesters {
        for verb in needed {
            assert!(
                !can_i(&kubectl, &admin, user, verb, CSRS_R),
                "{user} may {verb} CSRs before deploy/rbac.yaml is applied"
            );
        }
    }
    let apply = std::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["apply", "-f"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml"))
        .output()
        .unwrap();
    assert!(
        apply.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&apply.stderr)
    );
    let not_granted = [
        ("update", CSRS_R),
        ("patch", CSRS_R),
        ("delete", CSRS_R),
        ("deletecollection", CSRS_R),
        (
            "update",
            "certificatesigningrequests.certificates.k8s.io#approval",
        ),
        (
            "update",
            "certificatesigningrequests.certificates.k8s.io#status",
        ),
        ("get", "secrets"),
        ("create", "pods"),
        ("create", "serviceaccounts/token"),
    ];
    for user in requesters {
        for verb in needed {
            assert!(
                can_i(&kubectl, &admin, user, verb, CSRS_R),
                "{user} may not {verb} CSRs"
            );
        }
        for (verb, resource) in not_granted {
            assert!(
                !can_i(&kubectl, &admin, user, verb, resource),
                "{user} may {verb} {resource}"
            );
        }
        for signer in [CLIENT_SIGNER, "kubernetes.io/kubelet-serving"] {
            for verb in ["approve", "sign"] {
                assert!(
                    !may_for_signer(&kubectl, &admin, user, verb, signer),
                    "{user} may {verb} for {signer}"
                );
            }
        }
    }

    // The approver role, bound as its comment says.
    let approver = unique("approver");
    let bind = std::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["create", "clusterrolebinding", &approver])
        .args(["--clusterrole", "certrotate-approver", "--user", &approver])
        .output()
        .unwrap();
    assert!(
        bind.status.success(),
        "{}",
        String::from_utf8_lossy(&bind.stderr)
    );
    for (verb, signer, allowed) in [
        ("approve", CLIENT_SIGNER, true),
        ("approve", "kubernetes.io/kubelet-serving", false),
        (
            "approve",
            "kubernetes.io/kube-apiserver-client-kubelet",
            false,
        ),
        ("sign", CLIENT_SIGNER, false),
    ] {
        assert_eq!(
            may_for_signer(&kubectl, &admin, &approver, verb, signer),
            allowed,
            "approver: {verb} for {signer}"
        );
    }
    for (verb, resource, allowed) in [
        ("get", CSRS_R, true),
        ("list", CSRS_R, true),
        ("watch", CSRS_R, true),
        (
            "update",
            "certificatesigningrequests.certificates.k8s.io#approval",
            true,
        ),
        ("create", CSRS_R, false),
        ("delete", CSRS_R, false),
        (
            "update",
            "certificatesigningrequests.certificates.k8s.io#status",
            false,
        ),
    ] {
        assert_eq!(
            can_i(&kubectl, &admin, &approver, verb, resource),
            allowed,
            "approver: {verb} {resource}"
        );
    }
}
