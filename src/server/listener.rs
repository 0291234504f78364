//! The network side: the TLS configuration (serving certificate, client-certificate handling),
//! the acceptor loop, and one thread per connection reading requests and handing them to the
//! REST layer.
//!
//! Connection threads are tracked in [`Connections`] so that shutdown can close their sockets
//! and join them; a thread that ends on its own is joined by the acceptor at its next accept.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use parking_lot::Mutex;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

use super::auth::UserInfo;
use super::{ServerError, Shared, http, rest};
use crate::csr::KeyUsage;
use crate::pki::{CertificateAuthority, KeyAlgorithm, PrivateKey, crypto_provider};
use crate::template::CsrTemplate;

/// The client-certificate verifier of the handshake. Like kube-apiserver (Go's
/// `RequestClientCert` plus the x509 authenticator), the handshake only checks that the client
/// holds the key of the certificate it presents; whether the certificate chains to the CA and is
/// valid at the clock's now is decided per request, and a certificate that fails is answered
/// `401 Unauthorized` rather than by a broken handshake. A client with an expired certificate thus
/// sees the apiserver's 401, which client-go's health logic relies on.
#[derive(Debug)]
struct RequestClientCert {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

pub(crate) type Verifier = Arc<dyn ClientCertVerifier>;

/// The CA verifier used per request, and the handshake verifier around it.
pub(crate) fn client_verifiers(
    ca: &CertificateAuthority,
) -> Result<(Verifier, Verifier), ServerError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der().to_vec()))
        .map_err(|e| ServerError::Tls {
            part: "CA certificate",
            source: Box::new(e),
        })?;
    let strict = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServerError::Tls {
            part: "client certificate verifier",
            source: Box::new(e),
        })?;
    let lenient: Arc<dyn ClientCertVerifier> = Arc::new(RequestClientCert {
        inner: strict.clone(),
    });
    Ok((strict, lenient))
}

pub(crate) fn tls_config(
    ca: &CertificateAuthority,
    addr: SocketAddr,
    extra_names: &[String],
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<ServerConfig, ServerError> {
    let mut t = CsrTemplate::new("certrotate-server")
        .with_dns_name("localhost")
        .with_ip_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .with_ip_address(IpAddr::V6(Ipv6Addr::LOCALHOST));
    if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
        t = t.with_ip_address(addr.ip());
    }
    for n in extra_names {
        t = match n.parse::<IpAddr>() {
            Ok(ip) => t.with_ip_address(ip),
            Err(_) => t.with_dns_name(n.clone()),
        };
    }
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).map_err(ServerError::Pki)?;
    let info = ca.info();
    let serving = ca
        .issue(
            &t,
            &key,
            &[KeyUsage::DigitalSignature, KeyUsage::ServerAuth],
            info.not_before,
            info.not_after,
        )
        .map_err(ServerError::Pki)?;
    let mut cfg = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls {
            part: "protocol versions",
            source: Box::new(e),
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            serving.chain().to_vec(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec())),
        )
        .map_err(|e| ServerError::Tls {
            part: "serving certificate",
            source: Box::new(e),
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection authenticates with the certificate it presents now: no resumption.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(cfg)
}

/// Connection threads. Lock discipline: touched by the acceptor (insert, reap), by each
/// connection thread once at its end (mark done), and by shutdown.
#[derive(Default)]
pub(crate) struct Connections {
    next_id: u64,
    /// id → a clone of the socket (to shut it down; dropped when the thread ends, so the peer
    /// sees the close at once) and the thread.
    pub open: BTreeMap<u64, (Option<TcpStream>, Option<JoinHandle<()>>)>,
    /// Threads that have finished and wait to be joined.
    done: Vec<u64>,
}

impl Connections {
    /// Takes the handles of finished threads, for joining outside the lock.
    fn reap(&mut self) -> Vec<JoinHandle<()>> {
        let done = std::mem::take(&mut self.done);
        done.into_iter()
            .filter_map(|id| self.open.remove(&id).and_then(|(_, h)| h))
            .collect()
    }
}

/// The end of a connection thread: shuts the kept clone of its socket down (the peer sees the
/// close at once, whoever else holds the descriptor) and marks the thread for joining, which
/// frees its place among the open connections.
struct Finish {
    conns: Arc<Mutex<Connections>>,
    id: u64,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let mut c = self.conns.lock();
        if let Some(sock) = c.open.get_mut(&self.id).and_then(|(s, _)| s.take()) {
            let _ = sock.shutdown(Shutdown::Both);
        }
        c.done.push(self.id);
    }
}

/// How many connections past [`max_connections`](super::CsrApiServerBuilder::max_connections)
/// wait for their 429 at once; more are closed on accept.
const REFUSE_QUEUE: usize = 64;

/// How long a refused connection may take, from its accept (its time in the queue included),
/// over its handshake and request before it is closed without an answer: a queue of silent
/// connections cannot hold a client that is refused after them for longer.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    conns: Arc<Mutex<Connections>>,
) {
    let refuser = Refuser::start(&shared, &tls);
    for stream in listener.incoming() {
        if shared.stopping() {
            break;
        }
        let tcp = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("csr api server: accept failed: {e}");
                // Out of descriptors and similar: back off a little instead of spinning.
                if !shared.pause(Duration::from_millis(50)) {
                    break;
                }
                continue;
            }
        };
        let finished = conns.lock().reap();
        for h in finished {
            let _ = h.join();
        }
        let mut c = conns.lock();
        if c.open.len() >= shared.settings.max_connections {
            drop(c);
            if let Some(r) = &refuser {
                r.refuse(tcp);
            }
            continue;
        }
        let Ok(clone) = tcp.try_clone() else {
            continue;
        };
        c.next_id += 1;
        let id = c.next_id;
        let (sh, tc, cs) = (shared.clone(), tls.clone(), conns.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("csr-api-conn-{id}"))
            .spawn(move || {
                // Made first, dropped last: the close and the bookkeeping happen however the
                // connection ends, a panic of a handler (or of a caller's authorizer) included.
                let _finish = Finish { conns: cs, id };
                serve_connection(&sh, tcp, tc);
            });
        match spawned {
            Ok(h) => {
                c.open.insert(id, (Some(clone), Some(h)));
            }
            Err(e) => log::warn!("csr api server: cannot start a connection thread: {e}"),
        }
    }
    if let Some(r) = refuser {
        r.stop();
    }
}

/// One thread that answers connections past the connection limit with 429, one at a time:
/// the handshake, one request, the answer, the close, all within [`REFUSE_TIMEOUT`] of the
/// accept (a connection whose time ran out in the queue is closed unanswered). At most
/// [`REFUSE_QUEUE`] wait; more are closed at once. So an overload costs one thread and a
/// bounded queue, never a thread per connection.
struct Refuser {
    queue: Option<crossbeam_channel::Sender<(TcpStream, Instant)>>,
    /// A clone of the socket being answered, for [`Refuser::stop`] to shut down.
    current: Arc<Mutex<Option<TcpStream>>>,
    thread: JoinHandle<()>,
}

impl Refuser {
    fn start(shared: &Arc<Shared>, tls: &Arc<ServerConfig>) -> Option<Refuser> {
        let (tx, rx) = crossbeam_channel::bounded::<(TcpStream, Instant)>(REFUSE_QUEUE);
        let current = Arc::new(Mutex::new(None));
        let (sh, tc, cur) = (shared.clone(), tls.clone(), current.clone());
        let spawned = std::thread::Builder::new()
            .name("csr-api-refuse".into())
            .spawn(move || {
                for (tcp, accepted) in rx {
                    if sh.stopping() || accepted.elapsed() >= REFUSE_TIMEOUT {
                        continue;
                    }
                    *cur.lock() = tcp.try_clone().ok();
                    refuse_connection(tcp, accepted, tc.clone());
                    *cur.lock() = None;
                }
            });
        match spawned {
            Ok(thread) => Some(Refuser {
                queue: Some(tx),
                current,
                thread,
            }),
            Err(e) => {
                log::warn!("csr api server: cannot start the refusing thread: {e}");
                None
            }
        }
    }

    /// Queues a connection for its 429, or closes it when the queue is full.
    fn refuse(&self, tcp: TcpStream) {
        let Some(q) = &self.queue else { return };
        if q.try_send((tcp, Instant::now())).is_err() {
            log::warn!(
                "csr api server: connection limit reached and refusal queue full, closing a new connection"
            );
        }
    }

    /// Stops the thread: the queued connections are closed unanswered, the one being
    /// answered is shut down.
    fn stop(mut self) {
        self.queue = None;
        if let Some(s) = self.current.lock().take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let _ = self.thread.join();
    }
}

/// Answers the first request of a connection past the limit with 429 `TooManyRequests` and
/// `Retry-After`, and closes it, all within [`REFUSE_TIMEOUT`] of `accepted`.
fn refuse_connection(tcp: TcpStream, accepted: Instant, tls: Arc<ServerConfig>) {
    let left = REFUSE_TIMEOUT.saturating_sub(accepted.elapsed());
    if left.is_zero() {
        return;
    }
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(left));
    let _ = tcp.set_write_timeout(Some(left));
    let start = accepted;
    let Ok(conn) = ServerConnection::new(tls) else {
        return;
    };
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        if start.elapsed() > REFUSE_TIMEOUT || stream.conn.complete_io(&mut stream.sock).is_err() {
            return;
        }
    }
    let mut conn = http::Conn::new(stream);
    if conn.read_request().is_ok() && start.elapsed() <= REFUSE_TIMEOUT {
        let _ = rest::send_too_many_requests(&mut conn, false);
        conn.close_notify();
    }
}

fn serve_connection(shared: &Shared, tcp: TcpStream, tls: Arc<ServerConfig>) {
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(shared.settings.idle_timeout));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(30)));
    let Ok(conn) = ServerConnection::new(tls) else {
        return;
    };
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            log::debug!("csr api server: TLS handshake failed: {e}");
            return;
        }
    }
    let peer = peer_user(shared, &stream.conn);
    serve_requests(shared, &mut http::Conn::new(stream), peer.as_ref());
}

/// Reads requests from `conn` and serves them until one asks to close, or cannot be read (a
/// malformed one is answered 400, a too large one 413 or 431, and the connection closed).
pub(crate) fn serve_requests(
    shared: &Shared,
    conn: &mut http::Conn,
    peer: Option<&Result<UserInfo, ()>>,
) {
    loop {
        let req = match conn.read_request() {
            Ok(r) => r,
            Err(http::ReadError::Closed) => return,
            Err(http::ReadError::Bad(msg)) => {
                let _ = rest::send_status(
                    conn,
                    &crate::csr::api::Status::failure(400, "BadRequest", msg),
                    false,
                );
                return;
            }
            Err(http::ReadError::TooLarge(code)) => {
                let st = crate::csr::api::Status::failure(
                    code,
                    crate::csr::api::reason_for_code(code),
                    "the request is too large",
                );
                let _ = rest::send_status(conn, &st, false);
                return;
            }
        };
        let keep = req.keep_alive();
        match rest::handle(shared, conn, &req, peer) {
            Ok(rest::Next::KeepAlive) if keep && !shared.stopping() => {}
            _ => return,
        }
    }
}

/// The x509 authenticator: a client certificate that chains to the CA and is valid at the
/// clock's now authenticates its CN as the user and its O as the groups; one that does not is
/// `Some(Err(()))` (401).
fn peer_user(shared: &Shared, conn: &ServerConnection) -> Option<Result<UserInfo, ()>> {
    let certs = conn.peer_certificates()?;
    let (leaf, intermediates) = certs.split_first()?;
    let now = shared
        .clock
        .now()
        .duration_since(UNIX_EPOCH)
        .map(UnixTime::since_unix_epoch)
        .unwrap_or(UnixTime::since_unix_epoch(Duration::ZERO));
    if let Err(e) = shared
        .client_ca
        .verify_client_cert(leaf, intermediates, now)
    {
        log::debug!("csr api server: client certificate rejected: {e}");
        return Some(Err(()));
    }
    let Ok(info) = crate::pki::CertInfo::from_der(leaf) else {
        return Some(Err(()));
    };
    if info.common_name.is_empty() {
        return Some(Err(()));
    }
    let groups: Vec<&str> = info.organizations.iter().map(String::as_str).collect();
    Some(Ok(UserInfo::new(info.common_name.clone(), &groups)))
}
