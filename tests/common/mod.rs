//! Test-only HTTPS server and a scripted fake of the CSR API, for black-box tests of
//! `KubeCsrClient` down to the bytes on the wire.
//!
//! The server is rustls `ServerConnection` over `std::net` with `httparse`, a thread per
//! connection, HTTP/1.1 keep-alive, and responses a script controls completely: any status,
//! any body (Status or not), chunked watch streams flushed per event, trickled bytes,
//! truncated streams and connections cut mid-answer. It records every request with the client
//! certificate of its connection and its `Authorization` header.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use base64::Engine;
use certrotate::csr::api;
use certrotate::pki::{
    CertificateAuthority, KeyAlgorithm, PrivateKey, build_csr_pem, crypto_provider,
};
use certrotate::{Cancel, Certificate, CsrRequest, CsrTemplate, KeyUsage, KubeCsrClientBuilder};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use serde_json::{Value, json};

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// DER of the client certificate of this connection, if any.
    pub peer_cert: Option<Vec<u8>>,
}

impl Request {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_watch(&self) -> bool {
        self.q("watch") == Some("true")
    }

    /// The CN of the client certificate.
    pub fn peer_cn(&self) -> Option<String> {
        self.peer_cert
            .as_ref()
            .map(|d| certrotate::pki::CertInfo::from_der(d).unwrap().common_name)
    }
}

/// Writes one answer. Write errors (the client went away) are ignored.
pub struct Responder<'a> {
    io: &'a mut dyn Write,
    sock: TcpStream,
    pub close: bool,
}

impl Responder<'_> {
    pub fn send(&mut self, code: u16, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = self.io.write_all(head.as_bytes());
        let _ = self.io.write_all(body);
        let _ = self.io.flush();
    }

    pub fn reply(&mut self, r: &Reply) {
        match r {
            Reply::Close => self.abort(),
            Reply::Http {
                code,
                headers,
                body,
            } => {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                self.send(*code, &h, body)
            }
        }
    }

    /// Starts a chunked 200 answer.
    pub fn start_chunked(&mut self) {
        let _ = self.io.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let _ = self.io.flush();
    }

    /// One chunk, flushed. Returns false when the client is gone.
    pub fn chunk(&mut self, data: &[u8]) -> bool {
        if data.is_empty() {
            return true;
        }
        write!(self.io, "{:x}\r\n", data.len()).is_ok()
            && self.io.write_all(data).is_ok()
            && self.io.write_all(b"\r\n").is_ok()
            && self.io.flush().is_ok()
    }

    pub fn end_chunked(&mut self) {
        let _ = self.io.write_all(b"0\r\n\r\n");
        let _ = self.io.flush();
    }

    /// Cuts the connection without finishing the answer.
    pub fn abort(&mut self) {
        let _ = self.io.flush();
        let _ = self.sock.shutdown(Shutdown::Both);
        self.close = true;
    }
}

pub type Handler = Arc<dyn Fn(&Request, &mut Responder<'_>) + Send + Sync>;

/// A canned answer.
#[derive(Clone, Debug)]
pub enum Reply {
    Http {
        code: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Close the connection without answering.
    Close,
}

impl Reply {
    pub fn json(code: u16, v: &Value) -> Reply {
        Reply::Http {
            code,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(v).unwrap(),
        }
    }

    /// A Kubernetes `Status` body.
    pub fn status(code: u16, reason: &str, message: &str) -> Reply {
        Reply::json(
            code,
            &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                    "message":message,"reason":reason,"code":code}),
        )
    }

    /// A body that is not a Status.
    pub fn plain(code: u16, text: &str) -> Reply {
        Reply::Http {
            code,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: text.as_bytes().to_vec(),
        }
    }

    pub fn raw(code: u16, body: Vec<u8>) -> Reply {
        Reply::Http {
            code,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        }
    }

    pub fn with_header(mut self, k: &str, v: &str) -> Reply {
        if let Reply::Http { headers, .. } = &mut self {
            headers.push((k.into(), v.into()));
        }
        self
    }
}

/// What the server logged of one request.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub peer_cn: Option<String>,
    pub peer_serial: Option<String>,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

impl Logged {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub ca: CertificateAuthority,
    pub log: Arc<Mutex<Vec<Logged>>>,
    tls: bool,
}

impl TestServer {
    /// HTTPS on 127.0.0.1 with a certificate for `localhost`, `apiserver.test` and 127.0.0.1
    /// signed by a fresh CA; client certificates from the same CA are asked for but optional.
    pub fn https(handler: Handler) -> TestServer {
        TestServer::https_with_ca(
            CertificateAuthority::for_tests("test-apiserver-ca").unwrap(),
            handler,
        )
    }

    /// As [`https`](Self::https) with a given CA.
    pub fn https_with_ca(ca: CertificateAuthority, handler: Handler) -> TestServer {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let now = SystemTime::now();
        let serving = ca
            .issue(
                &CsrTemplate::new("apiserver")
                    .with_dns_name("localhost")
                    .with_dns_name("apiserver.test")
                    .with_ip_address("127.0.0.1".parse().unwrap()),
                &key,
                &[KeyUsage::DigitalSignature, KeyUsage::ServerAuth],
                now - Duration::from_secs(3600),
                now + Duration::from_secs(86_400),
            )
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der().to_vec().into()).unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
                .allow_unauthenticated()
                .build()
                .unwrap();
        let cfg = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                serving.chain().to_vec(),
                rustls::pki_types::PrivateKeyDer::Pkcs8(
                    serving.private_key().pkcs8_der().to_vec().into(),
                ),
            )
            .unwrap();
        TestServer::start(Some(Arc::new(cfg)), ca, handler)
    }

    /// HTTPS with a given server configuration (`ca` is a fresh, unrelated CA).
    pub fn https_with_config(cfg: Arc<ServerConfig>, handler: Handler) -> TestServer {
        let ca = CertificateAuthority::for_tests("unused").unwrap();
        TestServer::start(Some(cfg), ca, handler)
    }

    /// Plain HTTP.
    pub fn http(handler: Handler) -> TestServer {
        let ca = CertificateAuthority::for_tests("unused").unwrap();
        TestServer::start(None, ca, handler)
    }

    fn start(
        tls: Option<Arc<ServerConfig>>,
        ca: CertificateAuthority,
        handler: Handler,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let is_tls = tls.is_some();
        let l = log.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (tls, handler, log) = (tls.clone(), handler.clone(), l.clone());
                thread::spawn(move || serve(stream, tls, handler, log));
            }
        });
        TestServer {
            addr,
            ca,
            log,
            tls: is_tls,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    /// A builder for this server that trusts its CA, with short retry pauses for tests.
    pub fn builder(&self) -> KubeCsrClientBuilder {
        KubeCsrClientBuilder::new(self.url())
            .ca_pem(self.ca.cert_pem())
            .retry_interval(Duration::from_millis(20))
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().clone()
    }

    /// A client certificate from this server's CA.
    pub fn client_cert(&self, cn: &str) -> Certificate {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let now = SystemTime::now();
        self.ca
            .issue(
                &CsrTemplate::new(cn).with_organization("system:nodes"),
                &key,
                &[KeyUsage::DigitalSignature, KeyUsage::ClientAuth],
                now - Duration::from_secs(3600),
                now + Duration::from_secs(86_400),
            )
            .unwrap()
    }
}

trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

fn serve(
    tcp: TcpStream,
    tls: Option<Arc<ServerConfig>>,
    handler: Handler,
    log: Arc<Mutex<Vec<Logged>>>,
) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = tcp.set_nodelay(true);
    let sock = tcp.try_clone().unwrap();
    match tls {
        Some(cfg) => {
            let conn = ServerConnection::new(cfg).unwrap();
            let mut s = StreamOwned::new(conn, tcp);
            // Drive the handshake so that the peer certificate is known.
            while s.conn.is_handshaking() {
                if s.conn.complete_io(&mut s.sock).is_err() {
                    return;
                }
            }
            let peer = s
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec());
            serve_http(&mut s, peer, sock, &handler, &log);
        }
        None => {
            let mut s = tcp;
            serve_http(&mut s, None, sock, &handler, &log);
        }
    }
}

fn serve_http(
    io: &mut dyn Io,
    peer: Option<Vec<u8>>,
    sock: TcpStream,
    handler: &Handler,
    log: &Mutex<Vec<Logged>>,
) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Read a request head.
        let (head_len, method, target, headers) = loop {
            let mut hdrs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hdrs);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let headers: Vec<(String, String)> = req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (
                        n,
                        req.method.unwrap_or("").to_owned(),
                        req.path.unwrap_or("").to_owned(),
                        headers,
                    );
                }
                Ok(httparse::Status::Partial) => {
                    let mut chunk = [0u8; 16 * 1024];
                    match io.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                Err(_) => return,
            }
        };
        buf.drain(..head_len);
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < len {
            let mut chunk = [0u8; 16 * 1024];
            match io.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let (path, query) = split_target(&target);
        let req = Request {
            method,
            path,
            query,
            headers,
            body,
            peer_cert: peer.clone(),
        };
        let info = peer
            .as_ref()
            .map(|d| certrotate::pki::CertInfo::from_der(d).unwrap());
        log.lock().push(Logged {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            peer_cn: info.as_ref().map(|i| i.common_name.clone()),
            peer_serial: info.as_ref().map(|i| i.serial_hex()),
            authorization: req.header("authorization").map(str::to_owned),
            body: req.body.clone(),
        });
        let mut r = Responder {
            io: &mut *io,
            sock: sock.try_clone().unwrap(),
            close: false,
        };
        handler(&req, &mut r);
        if r.close {
            let _ = sock.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn split_target(target: &str) -> (String, Vec<(String, String)>) {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect();
    (path.to_owned(), query)
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap();
            out.push(h);
            i += 3;
        } else if b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A scripted fake of the CSR API.

/// One step of a scripted watch answer.
#[derive(Clone, Debug)]
pub enum Step {
    /// Answer the watch request itself with this (instead of a 200 stream); must come first.
    Http(Reply),
    /// One event line.
    Event(&'static str, Value),
    /// Raw bytes as one chunk.
    Raw(Vec<u8>),
    /// These bytes one at a time, pausing between them (a slow trickle).
    Trickle(Vec<u8>, Duration),
    /// Block until the fake is dropped (or 10 s).
    Hang,
    /// Tell the test that the watch is open.
    Notify,
    /// Cut the connection without finishing the stream.
    Abort,
}

#[derive(Default)]
pub struct ApiState {
    pub v1: bool,
    pub v1beta1: bool,
    /// Answer for an absent API version: a Status 404 (true) or a plain 404 (false).
    pub absent_is_status: bool,
    pub objects: BTreeMap<String, Value>,
    pub next: u64,
    /// Forced answers to creates, used in order before normal behaviour.
    pub create_replies: VecDeque<Reply>,
    /// Forced answers to lists.
    pub list_replies: VecDeque<Reply>,
    /// Scripts of successive watches; when empty a watch hangs.
    pub watch_scripts: VecDeque<Vec<Step>>,
    /// Forced answers to gets.
    pub get_replies: VecDeque<Reply>,
    /// With no watch script queued, approve and issue the watched CSR at once (signed by the
    /// server's CA) instead of hanging.
    pub auto_issue: bool,
    /// With no watch script queued, answer every watch with this script (e.g. a server whose
    /// every watch ends in 410) instead of hanging.
    pub every_watch: Option<Vec<Step>>,
    /// With no list answer queued, answer every list with this (e.g. a server that forbids
    /// every list).
    pub every_list: Option<Reply>,
}

pub struct FakeApi {
    pub server: TestServer,
    pub state: Arc<Mutex<ApiState>>,
    /// Dropped with the fake: releases hanging watches.
    _release: Sender<()>,
    pub watch_open: Receiver<()>,
    /// `METHOD path` of every request, as it arrives.
    pub seen: Receiver<String>,
}

pub const V1: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
pub const V1BETA1: &str = "/apis/certificates.k8s.io/v1beta1/certificatesigningrequests";

impl FakeApi {
    /// A fake serving v1 and v1beta1 over HTTPS.
    pub fn new() -> FakeApi {
        FakeApi::with(|_| {})
    }

    pub fn with(setup: impl FnOnce(&mut ApiState)) -> FakeApi {
        let mut st = ApiState {
            v1: true,
            v1beta1: true,
            absent_is_status: true,
            next: 1,
            ..ApiState::default()
        };
        setup(&mut st);
        let state = Arc::new(Mutex::new(st));
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let (open_tx, open_rx) = crossbeam_channel::unbounded::<()>();
        let (seen_tx, seen_rx) = crossbeam_channel::unbounded::<String>();
        let s = state.clone();
        let ca = CertificateAuthority::for_tests("test-apiserver-ca").unwrap();
        let signer = ca.clone();
        let handler: Handler = Arc::new(move |req, r| {
            let _ = seen_tx.send(format!("{} {}", req.method, req.path));
            handle(&signer, &s, &release_rx, &open_tx, req, r)
        });
        FakeApi {
            server: TestServer::https_with_ca(ca, handler),
            state,
            _release: release_tx,
            watch_open: open_rx,
            seen: seen_rx,
        }
    }

    pub fn builder(&self) -> KubeCsrClientBuilder {
        self.server.builder()
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.server.requests()
    }

    /// The stored object.
    pub fn object(&self, name: &str) -> Value {
        self.state.lock().objects[name].clone()
    }

    /// Stores an object directly (as if created earlier).
    pub fn insert(&self, obj: Value) {
        let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
        self.state.lock().objects.insert(name, obj);
    }

    /// Scripts the next watch to carry one `MODIFIED` event: the stored `name` approved, with
    /// `cert` issued.
    pub fn push_issued_event(&self, name: &str, cert: &str) {
        let issued = with_cert(with_condition(self.object(name), "Approved", "", ""), cert);
        self.push_watch(vec![Step::Event("MODIFIED", issued)]);
    }

    pub fn push_watch(&self, steps: Vec<Step>) {
        self.state.lock().watch_scripts.push_back(steps);
    }

    /// A PEM certificate for the stored CSR `name`, signed by the server's CA.
    pub fn sign(&self, name: &str) -> String {
        let obj = self.object(name);
        sign_request(&self.server.ca, &obj)
    }

    /// Waits (bounded) until a watch is open.
    pub fn wait_watch_open(&self) {
        self.watch_open
            .recv_timeout(Duration::from_secs(10))
            .expect("a watch was opened");
    }
}

/// A fake that approves and issues every CSR as soon as it is watched.
impl FakeApi {
    pub fn auto_issuing() -> FakeApi {
        FakeApi::with(|s| s.auto_issue = true)
    }
}

pub fn sign_request(ca: &CertificateAuthority, obj: &Value) -> String {
    let req = base64::engine::general_purpose::STANDARD
        .decode(obj["spec"]["request"].as_str().unwrap())
        .unwrap();
    let parsed = certrotate::pki::parse_csr_pem(&req).unwrap();
    // The usages the CSR asks for, as kube-controller-manager's signer issues them.
    let usages: Vec<KeyUsage> = obj["spec"]["usages"]
        .as_array()
        .map(|a| a.iter().filter_map(|u| u.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    let now = SystemTime::now();
    ca.sign_csr(
        &parsed,
        &usages,
        now - Duration::from_secs(300),
        now + Duration::from_secs(3600),
    )
    .unwrap()
}

fn handle(
    ca: &CertificateAuthority,
    state: &Mutex<ApiState>,
    release: &Receiver<()>,
    open: &Sender<()>,
    req: &Request,
    r: &mut Responder<'_>,
) {
    let (version_ok, base) = {
        let st = state.lock();
        if req.path.starts_with(V1BETA1) {
            (st.v1beta1, V1BETA1)
        } else if req.path.starts_with(V1) {
            (st.v1, V1)
        } else {
            (false, "")
        }
    };
    if !version_ok {
        let status = state.lock().absent_is_status;
        return r.reply(&if status {
            Reply::status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        } else {
            Reply::plain(404, "404 page not found\n")
        });
    }
    let api_version = if base == V1 {
        api::API_VERSION_V1
    } else {
        api::API_VERSION_V1BETA1
    };
    let rest = req.path[base.len()..].trim_start_matches('/').to_owned();
    match (req.method.as_str(), rest.as_str()) {
        ("POST", "") => {
            let forced = state.lock().create_replies.pop_front();
            if let Some(reply) = forced {
                return r.reply(&reply);
            }
            let mut obj: Value = serde_json::from_slice(&req.body).unwrap();
            let mut st = state.lock();
            let n = st.next;
            st.next += 1;
            let name = match obj["metadata"]["name"].as_str() {
                Some(name) => name.to_owned(),
                None => format!("{}{n}", obj["metadata"]["generateName"].as_str().unwrap()),
            };
            if st.objects.contains_key(&name) {
                drop(st);
                return r.reply(&Reply::status(
                    409,
                    "AlreadyExists",
                    &format!(
                        "certificatesigningrequests.certificates.k8s.io \"{name}\" already exists"
                    ),
                ));
            }
            obj["apiVersion"] = json!(api_version);
            obj["metadata"]["name"] = json!(name);
            obj["metadata"]["uid"] = json!(format!("uid-{n}"));
            obj["metadata"]["resourceVersion"] = json!(format!("{}", 100 + n));
            st.objects.insert(name, obj.clone());
            drop(st);
            r.reply(&Reply::json(201, &obj));
        }
        ("GET", "") if req.is_watch() => {
            let script = {
                let mut st = state.lock();
                match st.watch_scripts.pop_front() {
                    Some(s) => s,
                    None if st.every_watch.is_some() => st.every_watch.clone().unwrap(),
                    None if st.auto_issue => {
                        let selector = req.q("fieldSelector").unwrap_or_default();
                        let name = selector.strip_prefix("metadata.name=").unwrap_or_default();
                        let obj = st.objects[name].clone();
                        let cert = sign_request(ca, &obj);
                        let issued =
                            with_cert(with_condition(obj, "Approved", "AutoApproved", ""), &cert);
                        st.objects.insert(name.to_owned(), issued.clone());
                        vec![Step::Event("MODIFIED", issued)]
                    }
                    None => vec![Step::Notify, Step::Hang],
                }
            };
            let mut started = false;
            for step in script {
                match step {
                    Step::Http(reply) => return r.reply(&reply),
                    step => {
                        if !started {
                            r.start_chunked();
                            started = true;
                        }
                        match step {
                            Step::Event(t, obj) => {
                                let mut line =
                                    serde_json::to_vec(&json!({"type": t, "object": obj})).unwrap();
                                line.push(b'\n');
                                if !r.chunk(&line) {
                                    return;
                                }
                            }
                            Step::Raw(bytes) => {
                                if !r.chunk(&bytes) {
                                    return;
                                }
                            }
                            Step::Trickle(bytes, pause) => {
                                for b in bytes {
                                    if !r.chunk(&[b]) {
                                        return;
                                    }
                                    thread::sleep(pause);
                                }
                            }
                            Step::Hang => {
                                let _ = release.recv_timeout(Duration::from_secs(10));
                                r.abort();
                                return;
                            }
                            Step::Notify => {
                                let _ = open.send(());
                            }
                            Step::Abort => return r.abort(),
                            Step::Http(_) => unreachable!(),
                        }
                    }
                }
            }
            if !started {
                r.start_chunked();
            }
            r.end_chunked();
        }
        ("GET", "") => {
            let forced = {
                let mut st = state.lock();
                st.list_replies
                    .pop_front()
                    .or_else(|| st.every_list.clone())
            };
            if let Some(reply) = forced {
                return r.reply(&reply);
            }
            let selector = req.q("fieldSelector").unwrap_or_default().to_owned();
            let want = selector.strip_prefix("metadata.name=").unwrap_or_default();
            let st = state.lock();
            let items: Vec<Value> = st.objects.get(want).cloned().into_iter().collect();
            let rv = items
                .first()
                .and_then(|o| o["metadata"]["resourceVersion"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "1".into());
            drop(st);
            r.reply(&Reply::json(
                200,
                &json!({"apiVersion": api_version, "kind": "CertificateSigningRequestList",
                        "metadata": {"resourceVersion": rv}, "items": items}),
            ));
        }
        ("GET", name) => {
            let forced = state.lock().get_replies.pop_front();
            if let Some(reply) = forced {
                return r.reply(&reply);
            }
            let obj = state.lock().objects.get(name).cloned();
            match obj {
                Some(mut o) => {
                    // The API server converts the stored object to the version asked for.
                    o["apiVersion"] = json!(api_version);
                    r.reply(&Reply::json(200, &o))
                }
                None => r.reply(&Reply::status(404, "NotFound", "not found")),
            }
        }
        _ => r.reply(&Reply::status(405, "MethodNotAllowed", "no")),
    }
}

// ---- object helpers ----

/// Adds a condition to a CSR object.
pub fn with_condition(mut obj: Value, type_: &str, reason: &str, message: &str) -> Value {
    let conds = obj["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut conds = conds;
    conds.push(json!({"type": type_, "status": "True", "reason": reason, "message": message}));
    obj["status"]["conditions"] = Value::Array(conds);
    obj
}

pub fn with_cert(mut obj: Value, pem: &str) -> Value {
    obj["status"]["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
    obj
}

pub fn with_rv(mut obj: Value, rv: &str) -> Value {
    obj["metadata"]["resourceVersion"] = json!(rv);
    obj
}

pub fn with_uid(mut obj: Value, uid: &str) -> Value {
    obj["metadata"]["uid"] = json!(uid);
    obj
}

/// A CSR request for CN `system:node:n1`, with a fresh key.
pub fn new_request(signer: &str, usages: &[KeyUsage]) -> (PrivateKey, CsrRequest) {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let t = CsrTemplate::new("system:node:n1").with_organization("system:nodes");
    let req = CsrRequest {
        name: None,
        csr_pem: build_csr_pem(&t, &key).unwrap(),
        signer_name: signer.into(),
        usages: usages.to_vec(),
        requested_lifetime: None,
        public_key_der: key.public_key_der(),
    };
    (key, req)
}

pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

pub fn client_usages() -> Vec<KeyUsage> {
    vec![
        KeyUsage::DigitalSignature,
        KeyUsage::KeyEncipherment,
        KeyUsage::ClientAuth,
    ]
}

/// The request part of a logged create.
pub fn body_json(l: &Logged) -> Value {
    serde_json::from_slice(&l.body).unwrap()
}

/// Waits for `csr` with `timeout` and a cancel that is never used.
pub fn wait(
    client: &certrotate::KubeCsrClient,
    csr: &certrotate::CsrRef,
    timeout: Duration,
) -> Result<Vec<u8>, certrotate::CsrError> {
    use certrotate::CsrClient;
    client.wait_for_certificate(csr, timeout, &certrotate::Cancel::new())
}

/// A client of `api` and a client-certificate CSR it created on v1, referred to without the
/// create's resourceVersion (as an adopted request is), so that its wait lists before it
/// watches: the list+watch rules are what the tests of the wait are about. A wait for a request
/// just created watches from the create's version without listing (see [`create_v1_fresh`]).
pub fn create_v1(api: &FakeApi) -> (certrotate::KubeCsrClient, certrotate::CsrRef) {
    let (client, mut csr) = create_v1_fresh(api);
    csr.resource_version.clear();
    (client, csr)
}

/// A client of `api` and a client-certificate CSR it created on v1, as the create returned it.
pub fn create_v1_fresh(api: &FakeApi) -> (certrotate::KubeCsrClient, certrotate::CsrRef) {
    use certrotate::CsrClient;
    let client = api.builder().build().unwrap();
    let (_key, req) = new_request(CLIENT_SIGNER, &client_usages());
    let csr = client.create(&req, &Cancel::new()).unwrap();
    (client, csr)
}
