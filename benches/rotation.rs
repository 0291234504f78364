//! Rotation latency against its floor, in one run.
//!
//! - `rotate_now`: one synchronous rotation end to end — key, CSR, a CSR client from the
//!   kubeconfig-based factory (authenticating with the current certificate over mTLS), create,
//!   wait until the embedded server (on loopback, approving node client certificates as
//!   kube-controller-manager does) has issued the certificate,
//!   verify, store in a `FileStore` on `/dev/shm`, publish.
//! - The parts no rotation can avoid, each alone: a P-256 key (`p256_keygen`), a signed CSR
//!   for it (`build_csr_pem`), the API server's check of that CSR's signature at create
//!   (`check_csr_signature`: kube-apiserver parses the request and verifies it), the CA's
//!   signature of it (`ca_sign_csr`), one HTTPS round trip on a fresh TLS connection with a
//!   client certificate (`https_get_version_new_tls`: a GET of the server's `/version`), a
//!   second round trip on that connection once open (`https_get_version_open_tls`: the CSR API
//!   issues asynchronously, so the create's answer never holds the certificate and a watch or
//!   a get must follow it), and the two `fsync`s of a crash-safe write on `/dev/shm`, of a
//!   small file and of its directory (`fsync_small_file`, `fsync_directory`).
//!
//!   The floor first defined here had only the key, the CSR, the CA's signature, the fresh
//!   round trip and one `fsync`; the summary prints the ratio to it too.
//!
//! Every iteration is also timed here, so that after criterion's report the run prints the
//! medians, the sum of the parts, the ratio end-to-end / sum (goal ≤ 1.5×), and where the
//! rotation's time goes: HTTP requests per rotation by verb (counted by the server's
//! authorizer), connections per rotation (counted by a TCP relay), the time between the
//! milestones of an attempt (marked by wrappers around the client factory, the CSR client and
//! the store, on separate managers so that the figures above carry no instrumentation), and
//! single steps measured alone.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use certrotate::pki::{KeyAlgorithm, PrivateKey, build_csr_pem, crypto_provider, parse_csr_pem};
use certrotate::server::{
    Action, Authorizer, CsrApiServer, Decision, DefaultAuthorizer, Identity,
    SIGNER_KUBE_APISERVER_CLIENT_KUBELET, UserInfo, Verb,
};
use certrotate::{
    Cancel, Certificate, CertificateManager, Config, CsrClient, CsrError, CsrRef, CsrRequest,
    CsrTemplate, FileStore, KeyUsage, KubeCsrClientBuilder, Manager, Store, StoreError,
};
use criterion::{Bencher, Criterion};
use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

const USAGES: [KeyUsage; 2] = [KeyUsage::DigitalSignature, KeyUsage::ClientAuth];

fn template() -> CsrTemplate {
    CsrTemplate::new("system:node:bench").with_organization("system:nodes")
}

/// Per-iteration times of every benchmark, for the summary.
#[derive(Default)]
struct Samples(Mutex<BTreeMap<&'static str, Vec<Duration>>>);

impl Samples {
    /// Runs `f` as criterion asks, timing each call and keeping the times.
    fn bench(&self, b: &mut Bencher<'_>, name: &'static str, mut f: impl FnMut()) {
        b.iter_custom(|iters| {
            let mut times = Vec::with_capacity(iters as usize);
            for _ in 0..iters {
                let t = Instant::now();
                f();
                times.push(t.elapsed());
            }
            let total = times.iter().sum();
            self.0.lock().entry(name).or_default().extend(times);
            total
        });
    }

    fn median(&self, name: &str) -> Duration {
        let mut v = self.0.lock().get(name).cloned().unwrap_or_default();
        assert!(!v.is_empty(), "no samples of {name}");
        v.sort_unstable();
        v[v.len() / 2]
    }
}

/// Counts requests by verb: the server authorizes every request once without an object
/// before anything else, so those calls are one per request.
#[derive(Default)]
struct Requests(Mutex<BTreeMap<String, u64>>);

struct Counting(Arc<Requests>);

impl Authorizer for Counting {
    fn authorize(&self, user: &UserInfo, action: &Action<'_>) -> Decision {
        if action.object.is_none() {
            let verb = match action.verb {
                Verb::Create => "create",
                Verb::Get => "get",
                Verb::List => "list",
                Verb::Watch => "watch",
                Verb::Update => "update",
                Verb::Delete => "delete",
                _ => "other",
            };
            *self.0.0.lock().entry(verb.to_owned()).or_default() += 1;
        }
        DefaultAuthorizer.authorize(user, action)
    }
}

/// Instants of the current attempt's milestones, in order, as seen through wrappers around
/// the client factory, the CSR client and the store.
#[derive(Default)]
struct Marks(Mutex<Vec<(&'static str, Instant)>>);

impl Marks {
    fn mark(&self, what: &'static str) {
        self.0.lock().push((what, Instant::now()));
    }
}

/// A CSR client that marks its inner client's calls and its own drop.
struct Timed {
    inner: Option<Box<dyn CsrClient>>,
    marks: Arc<Marks>,
}

impl CsrClient for Timed {
    fn create(&self, request: &CsrRequest, cancel: &Cancel) -> Result<CsrRef, CsrError> {
        self.marks.mark("create start");
        let r = self.inner.as_ref().unwrap().create(request, cancel);
        self.marks.mark("create end");
        r
    }

    fn wait_for_certificate(
        &self,
        csr: &CsrRef,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<Vec<u8>, CsrError> {
        self.marks.mark("wait start");
        let r = self
            .inner
            .as_ref()
            .unwrap()
            .wait_for_certificate(csr, timeout, cancel);
        self.marks.mark("wait end");
        r
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.marks.mark("client drop start");
        drop(self.inner.take());
        self.marks.mark("client drop end");
    }
}

/// A store that marks its inner store's updates.
struct TimedStore {
    inner: FileStore,
    marks: Option<Arc<Marks>>,
}

impl Store for TimedStore {
    fn current(&self) -> Result<Option<Certificate>, StoreError> {
        self.inner.current()
    }

    fn update(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Certificate, StoreError> {
        if let Some(m) = &self.marks {
            m.mark("store start");
        }
        let r = self.inner.update(cert_pem, key_pem);
        if let Some(m) = &self.marks {
            m.mark("store end");
        }
        r
    }
}

/// A directory on tmpfs (falls back to the system temp dir where `/dev/shm` is missing).
fn tmpfs_dir() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("certrotate-bench-");
        b
    };
    if shm.is_dir() {
        builder.tempdir_in(shm).unwrap()
    } else {
        eprintln!("/dev/shm is missing; using the system temp dir");
        builder.tempdir().unwrap()
    }
}

fn manager(
    kube: &KubeCsrClientBuilder,
    dir: &std::path::Path,
    marks: Option<Arc<Marks>>,
) -> CertificateManager {
    let store = TimedStore {
        inner: FileStore::builder("kubelet-client", dir, dir)
            .build()
            .unwrap(),
        marks: marks.clone(),
    };
    let inner = kube.clone().factory();
    let config = Config::builder()
        .template(template())
        .usages(USAGES)
        .signer_name(SIGNER_KUBE_APISERVER_CLIENT_KUBELET)
        .store(Arc::new(store))
        .client_factory(move |current: Option<&Certificate>| {
            let Some(marks) = &marks else {
                return inner(current);
            };
            marks.mark("factory start");
            let client = inner(current)?;
            marks.mark("factory end");
            Ok(Box::new(Timed {
                inner: Some(client),
                marks: marks.clone(),
            }) as Box<dyn CsrClient>)
        })
        .build()
        .unwrap();
    let m = CertificateManager::new(config).unwrap();
    // The first rotation uses the kubeconfig's credentials; every later one the current
    // certificate, as measured below.
    m.rotate_now().unwrap();
    m
}

/// A rustls client config trusting the server's CA and presenting `cert`, no resumption: each
/// connection is a full handshake with client authentication, as a rotation's connection.
fn tls_client(ca_pem: &str, cert: &Certificate) -> Arc<ClientConfig> {
    let roots = certrotate::tls::root_store(ca_pem.as_bytes()).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.private_key().pkcs8_der().to_vec());
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(cert.chain().to_vec(), key.into())
        .unwrap();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A TCP relay to `target` that counts the connections made through it. Its threads end with
/// the connections they carry, or with the process.
struct Relay {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(upstream) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                pipe(upstream, client);
            }
        });
        Relay { addr, connections }
    }
}

/// A ureq agent trusting the server's CA and presenting `cert`.
fn ureq_agent(ca_pem: &str, cert: &Certificate) -> ureq::Agent {
    use ureq::tls::{ClientCert, PemItem, RootCerts, TlsConfig, TlsProvider};
    let certs = |pem: &str| -> Vec<ureq::tls::Certificate<'static>> {
        ureq::tls::parse_pem(pem.as_bytes())
            .filter_map(|i| match i {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect()
    };
    let key = ureq::tls::PrivateKey::from_pem(cert.key_pem().as_bytes()).unwrap();
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&certs(ca_pem)))
        .client_cert(Some(ClientCert::new_with_certs(
            &certs(cert.cert_pem()),
            key,
        )))
        .unversioned_rustls_crypto_provider(crypto_provider())
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(None)
        .build()
        .new_agent()
}

type Tls = BufReader<StreamOwned<ClientConnection, TcpStream>>;

/// A new TCP and TLS connection to `addr` (the handshake happens with the first request).
fn connect_tls(config: &Arc<ClientConfig>, addr: SocketAddr) -> Tls {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_nodelay(true).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    BufReader::new(StreamOwned::new(conn, sock))
}

/// One HTTPS request on a new TCP and TLS connection: `GET /version`, body read to its end.
fn https_get_version(config: &Arc<ClientConfig>, addr: SocketAddr) -> usize {
    get_version(&mut connect_tls(config, addr), "close")
}

/// `GET /version` on `tls`, body read to its end; `connection` is the `Connection` header.
fn get_version(tls: &mut Tls, connection: &str) -> usize {
    write!(
        tls.get_mut(),
        "GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\n\r\n"
    )
    .unwrap();
    let mut len = None;
    let mut line = String::new();
    loop {
        line.clear();
        assert!(tls.read_line(&mut line).unwrap() > 0, "no response");
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = Some(v.trim().parse::<usize>().unwrap());
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; len.expect("a Content-Length")];
    tls.read_exact(&mut body).unwrap();
    assert!(body.starts_with(b"{"), "a JSON version document");
    body.len()
}

fn main() {
    let requests = Arc::new(Requests::default());
    // The kept-alive connection of `https_get_version_open_tls` waits through the benchmarks
    // before it: longer than the default idle timeout (60 s).
    let server = CsrApiServer::builder()
        .authorizer(Counting(requests.clone()))
        .idle_timeout(Duration::from_secs(3600))
        .start()
        .unwrap();
    let dir = tmpfs_dir();
    let kubeconfig = server
        .kubeconfig(&Identity::client_cert(
            "bench-bootstrap",
            &["system:bootstrappers"],
        ))
        .unwrap();
    let kube_for = |yaml: &str| {
        certrotate::kubeconfig::Kubeconfig::from_slice(yaml.as_bytes(), dir.path())
            .unwrap()
            .client_builder(None)
            .unwrap()
    };
    let kube = kube_for(&kubeconfig);

    let m = manager(&kube, &dir.path().join("plain"), None);
    let ca = server.ca();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let csr_pem = build_csr_pem(&template(), &key).unwrap();
    let csr = parse_csr_pem(csr_pem.as_bytes()).unwrap();
    let tls = tls_client(&server.ca_pem(), &m.current().unwrap());
    let mut kept = connect_tls(&tls, server.addr());
    let mut fsync_file = std::fs::File::create(dir.path().join("fsync-probe")).unwrap();
    let fsync_dir = std::fs::File::open(dir.path()).unwrap();
    let small = [0x5a_u8; 1024];

    let now = SystemTime::now();
    // The end-to-end rotation first, then the parts, in the order of the summary.
    type Op<'a> = Box<dyn FnMut() + 'a>;
    let mut ops: Vec<(&'static str, Op<'_>)> = vec![
        (
            "rotate_now",
            Box::new(|| {
                black_box(m.rotate_now().unwrap());
            }),
        ),
        (
            "p256_keygen",
            Box::new(|| {
                black_box(PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap());
            }),
        ),
        (
            "build_csr_pem",
            Box::new(|| {
                black_box(build_csr_pem(&template(), &key).unwrap());
            }),
        ),
        (
            "check_csr_signature",
            Box::new(|| {
                black_box(parse_csr_pem(csr_pem.as_bytes()).unwrap());
            }),
        ),
        (
            "ca_sign_csr",
            Box::new(|| {
                black_box(
                    ca.sign_csr(&csr, &USAGES, now, now + Duration::from_secs(3600))
                        .unwrap(),
                );
            }),
        ),
        (
            "https_get_version_new_tls",
            Box::new(|| {
                black_box(https_get_version(&tls, server.addr()));
            }),
        ),
        (
            "https_get_version_open_tls",
            Box::new(|| {
                black_box(get_version(&mut kept, "keep-alive"));
            }),
        ),
        (
            "fsync_small_file",
            Box::new(|| {
                use std::io::Seek;
                fsync_file.rewind().unwrap();
                fsync_file.write_all(&small).unwrap();
                fsync_file.sync_all().unwrap();
            }),
        ),
        (
            "fsync_directory",
            Box::new(|| {
                fsync_dir.sync_all().unwrap();
            }),
        ),
    ];
    let samples = Samples::default();
    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("rotation");
        for (name, op) in &mut ops {
            g.bench_function(*name, |b| samples.bench(b, name, &mut *op));
        }
        g.finish();
    }
    // As criterion decides: without `--bench` (`cargo test --benches`), with `--test` or with
    // `--list`, nothing is measured.
    let args: Vec<String> = std::env::args().collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let measuring =
        flag("--bench") && !flag("--test") && !flag("--list") && !flag("--profile-time");
    if !measuring || samples.0.lock().get("rotate_now").is_none_or(Vec::is_empty) {
        c.final_summary();
        return;
    }
    let parts = [
        "p256_keygen",
        "build_csr_pem",
        "check_csr_signature",
        "ca_sign_csr",
        "https_get_version_new_tls",
        "https_get_version_open_tls",
        "fsync_small_file",
        "fsync_directory",
    ];
    // The floor as first defined: no server-side CSR check, one round trip, one fsync.
    let first_floor = [
        "p256_keygen",
        "build_csr_pem",
        "ca_sign_csr",
        "https_get_version_new_tls",
        "fsync_small_file",
    ];
    let e2e = samples.median("rotate_now");
    let have_all = parts.iter().all(|p| samples.0.lock().contains_key(p));
    println!("\nrotation latency against its floor (medians of every timed iteration):");
    println!("  rotate_now (end to end)        {e2e:>12.3?}");
    if have_all {
        let mut sum = Duration::ZERO;
        for p in parts {
            let d = samples.median(p);
            sum += d;
            println!("  part {p:<26}{d:>12.3?}");
        }
        println!("  sum of parts                   {sum:>12.3?}");
        println!(
            "  ratio end-to-end / sum         {:>11.2}x  (goal <= 1.5x)",
            e2e.as_secs_f64() / sum.as_secs_f64()
        );
        let first: Duration = first_floor.iter().map(|p| samples.median(p)).sum();
        println!(
            "  the first floor (no CSR check, one round trip, one fsync) {first:.3?}, ratio {:.2}x",
            e2e.as_secs_f64() / first.as_secs_f64()
        );
        // The same, with the operations interleaved (one of each per round), so that a load
        // that changes during the run weighs on the end-to-end figure and the parts alike.
        let rounds = 300;
        let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); ops.len()];
        for _ in 0..rounds {
            for (i, (_, op)) in ops.iter_mut().enumerate() {
                let t = Instant::now();
                op();
                times[i].push(t.elapsed());
            }
        }
        let medians: Vec<Duration> = times
            .into_iter()
            .map(|mut v| {
                v.sort_unstable();
                v[rounds / 2]
            })
            .collect();
        let of = |names: &[&str]| -> Duration {
            ops.iter()
                .zip(&medians)
                .filter(|((name, _), _)| names.contains(name))
                .map(|(_, d)| *d)
                .sum()
        };
        let (sum, first) = (of(&parts), of(&first_floor));
        println!(
            "  interleaved ({rounds} rounds): end to end {:.3?}, parts {}, sum {sum:.3?}, ratio {:.2}x; first floor {first:.3?}, ratio {:.2}x",
            medians[0],
            medians[1..]
                .iter()
                .map(|d| format!("{d:.3?}"))
                .collect::<Vec<_>>()
                .join(" + "),
            medians[0].as_secs_f64() / sum.as_secs_f64(),
            medians[0].as_secs_f64() / first.as_secs_f64()
        );
    }

    // Where the time goes: a separate, instrumented manager on the same server. Each span is
    // the time between two consecutive milestones of an attempt.
    let marks = Arc::new(Marks::default());
    let probe = manager(&kube, &dir.path().join("probe"), Some(marks.clone()));
    requests.0.lock().clear();
    let n = 300;
    let mut spans: BTreeMap<(usize, String), Vec<Duration>> = BTreeMap::new();
    for _ in 0..n {
        marks.0.lock().clear();
        marks.mark("start");
        probe.rotate_now().unwrap();
        marks.mark("returned");
        let m = marks.0.lock().clone();
        spans
            .entry((0, "total".into()))
            .or_default()
            .push(m[m.len() - 1].1 - m[0].1);
        for (i, w) in m.windows(2).enumerate() {
            spans
                .entry((i + 1, format!("{} -> {}", w[0].0, w[1].0)))
                .or_default()
                .push(w[1].1 - w[0].1);
        }
    }
    println!("\nwhere a rotation's time goes (medians over {n} instrumented rotate_now calls):");
    for ((_, name), mut v) in spans {
        v.sort_unstable();
        println!("  {name:<36}{:>12.3?}", v[v.len() / 2]);
    }
    println!("  (start -> factory: key, CSR; create: TCP + TLS handshake with client auth + POST;");
    println!(
        "   create end -> wait start: the timeout watchdog thread is spawned; wait: a watch from"
    );
    println!("   the create's resourceVersion on the same connection; wait end -> store: watchdog");
    println!("   joined, chain verified; store end -> client drop: publish)");
    let counts = requests.0.lock().clone();
    let line: Vec<String> = counts
        .iter()
        .map(|(verb, k)| format!("{verb} {:.2}", *k as f64 / n as f64))
        .collect();
    println!("  HTTP requests per rotation     {}", line.join(", "));
    // TCP (and so TLS) connections per rotation, counted by a relay in front of the server
    // (a separate manager: the relay's hops would distort the timings above).
    let relay = Relay::start(server.addr());
    let via_relay = kube_for(&kubeconfig.replace(server.url(), &format!("https://{}", relay.addr)));
    let counted = manager(&via_relay, &dir.path().join("relayed"), None);
    let before = relay.connections.load(Ordering::SeqCst);
    let k = 50;
    for _ in 0..k {
        counted.rotate_now().unwrap();
    }
    let conns = relay.connections.load(Ordering::SeqCst) - before;
    println!(
        "  TCP+TLS connections per rotation {:.2}",
        conns as f64 / f64::from(k)
    );
    drop(counted);
    // Single steps of a rotation, each alone, to attribute the difference to the floor.
    let cert = m.current().unwrap();
    let median = |mut f: Box<dyn FnMut() -> Duration + '_>| {
        let mut v: Vec<Duration> = (0..n).map(|_| f()).collect();
        v.sort_unstable();
        v[n / 2]
    };
    let url = format!("{}/version", server.url());
    let agent = ureq_agent(&server.ca_pem(), &cert);
    let get_open = median(Box::new(|| {
        let t = Instant::now();
        agent
            .get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        t.elapsed()
    }));
    // One client, so its connection stays open between creates: create alone (POST, the
    // server's validation and storage); and a wait for a CSR already issued, a watch from its
    // creation's version that replays its approval and certificate (a connection of its own:
    // the one a watch ends is closed, so each wait opens one).
    let client = kube.client_for(Some(&cert)).unwrap();
    let request = |key: &PrivateKey| CsrRequest {
        name: None,
        csr_pem: build_csr_pem(&template(), key).unwrap(),
        signer_name: SIGNER_KUBE_APISERVER_CLIENT_KUBELET.into(),
        usages: USAGES.to_vec(),
        requested_lifetime: None,
        public_key_der: key.public_key_der(),
    };
    let req = request(&key);
    let issued = client.create(&req, &Cancel::new()).unwrap();
    client
        .wait_for_certificate(&issued, Duration::from_secs(30), &Cancel::new())
        .unwrap();
    let create_open = median(Box::new(|| {
        let t = Instant::now();
        black_box(client.create(&req, &Cancel::new()).unwrap());
        t.elapsed()
    }));
    let wait_issued = median(Box::new(|| {
        let t = Instant::now();
        black_box(
            client
                .wait_for_certificate(&issued, Duration::from_secs(30), &Cancel::new())
                .unwrap(),
        );
        t.elapsed()
    }));
    let issued_pem = client
        .wait_for_certificate(&issued, Duration::from_secs(30), &Cancel::new())
        .unwrap();
    let verify = median(Box::new(|| {
        let t = Instant::now();
        black_box(
            certrotate::pki::verify_issued(
                &issued_pem,
                &key,
                Some(&template()),
                &USAGES,
                SystemTime::now(),
            )
            .unwrap(),
        );
        t.elapsed()
    }));
    let store = FileStore::builder("alone", dir.path(), dir.path())
        .build()
        .unwrap();
    let pem = certrotate::pki::verify_issued(&issued_pem, &key, None, &USAGES, SystemTime::now())
        .unwrap();
    let store_update = median(Box::new(|| {
        let t = Instant::now();
        black_box(
            store
                .update(pem.cert_pem().as_bytes(), pem.key_pem().as_bytes())
                .unwrap(),
        );
        t.elapsed()
    }));
    // The wait's timeout watchdog: a scoped thread that selects on three channels, spawned
    // and joined once per attempt.
    let watchdog = median(Box::new(|| {
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let timer = crossbeam_channel::after(Duration::from_secs(900));
        let cancel = Cancel::new();
        let t = Instant::now();
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn_scoped(s, || {
                    crossbeam_channel::select_biased! {
                        recv(done_rx) -> _ => {},
                        recv(cancel.receiver()) -> _ => {},
                        recv(timer) -> _ => {},
                    }
                })
                .unwrap();
            drop(done_tx);
        });
        t.elapsed()
    }));
    println!("\nsingle steps alone (medians of {n}):");
    println!("  GET /version on an open connection   {get_open:>12.3?}");
    println!("  create on an open connection         {create_open:>12.3?}");
    println!("  wait for an issued CSR (new TLS)     {wait_issued:>12.3?}");
    println!("  verify_issued                        {verify:>12.3?}");
    println!("  FileStore::update on /dev/shm        {store_update:>12.3?}");
    println!("  scoped thread spawn + join           {watchdog:>12.3?}");
    drop(probe);
    drop(ops);
    drop(m);
    server.shutdown();
    c.final_summary();
}
