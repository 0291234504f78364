//! A loopback HTTPS server and client for tests that check which certificates a real TLS
//! handshake presents. Shared by several test binaries through `#[path]`; not every binary
//! uses every item.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use certrotate::pki::CertInfo;
use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection, StreamOwned,
};

/// How long one read or write may block before a connection is given up.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs with the path of each request before it is answered (for example to rotate the
/// certificate between two requests of one client program).
pub type Hook = Arc<dyn Fn(&str) + Send + Sync>;

/// One request the server answered: whether its connection was a resumed session, and the
/// client certificate serial it was answered with (`none` without one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answered {
    pub path: String,
    pub resumed: bool,
    pub client: String,
}

/// Answers every request on a connection (keep-alive unless the request says
/// `Connection: close`, a thread per connection) with the serial of the client certificate the
/// connection was made with, or `none`. Dropping it stops the acceptor and joins it; open
/// connections end at their client's close.
pub struct TlsServer {
    pub addr: SocketAddr,
    answered: Arc<Mutex<Vec<Answered>>>,
    failed: Arc<(Mutex<Vec<String>>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsServer {
    pub fn start(config: Arc<ServerConfig>) -> TlsServer {
        TlsServer::start_with_hook(config, Arc::new(|_: &str| {}))
    }

    pub fn start_with_hook(config: Arc<ServerConfig>, hook: Hook) -> TlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let s = stop.clone();
        let log = answered.clone();
        let failures = failed.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    let config = config.clone();
                    let hook = hook.clone();
                    let log = log.clone();
                    let failures = failures.clone();
                    std::thread::spawn(move || {
                        if let Err(e) = serve(config, stream, &*hook, &log) {
                            let (list, changed) = &*failures;
                            list.lock().unwrap().push(e.to_string());
                            changed.notify_all();
                        }
                    });
                }
            }
        });
        TlsServer {
            addr,
            answered,
            failed,
            stop,
            thread: Some(thread),
        }
    }

    /// The requests answered so far, in order.
    pub fn answered(&self) -> Vec<Answered> {
        self.answered.lock().unwrap().clone()
    }

    /// Why connections ended with an error so far (refused handshakes, but also clients that
    /// left without a TLS close), in the order they ended.
    pub fn failed(&self) -> Vec<String> {
        self.failed.0.lock().unwrap().clone()
    }

    /// Waits up to `bound` until `done` holds for the failures so far, and returns them; `None`
    /// when the bound passed first.
    pub fn wait_failed(
        &self,
        bound: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Option<Vec<String>> {
        let deadline = Instant::now() + bound;
        let (list, changed) = &*self.failed;
        let mut guard = list.lock().unwrap();
        while !done(&guard) {
            let left = deadline.checked_duration_since(Instant::now())?;
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
        Some(guard.clone())
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the acceptor
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    config: Arc<ServerConfig>,
    stream: TcpStream,
    hook: &(dyn Fn(&str) + Send + Sync),
    log: &Mutex<Vec<Answered>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let conn = ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = BufReader::new(StreamOwned::new(conn, stream));
    let mut line = String::new();
    loop {
        // One request head; a clean close between requests ends the connection.
        let mut path = String::new();
        let mut close = false;
        loop {
            line.clear();
            if tls.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if path.is_empty() {
                path = line.split(' ').nth(1).unwrap_or("/").to_string();
            }
            close |= line.to_ascii_lowercase().starts_with("connection: close");
        }
        hook(&path);
        let conn = &tls.get_ref().conn;
        let serial = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| CertInfo::from_der(c).unwrap().serial_hex())
            .unwrap_or_else(|| "none".into());
        log.lock().unwrap().push(Answered {
            path,
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
            client: serial.clone(),
        });
        let out = tls.get_mut();
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{}\r\n{serial}",
            serial.len(),
            if close { "Connection: close\r\n" } else { "" },
        )?;
        if close {
            out.conn.send_close_notify();
        }
        out.flush()?;
        if close {
            return Ok(());
        }
    }
}

/// What one request over a new TLS connection saw.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Serial of the certificate the server presented (for a resumed session: of the session).
    pub presented: String,
    /// Serial of the client certificate the server answered with (`none` without one).
    pub client: String,
    /// Whether the client resumed a session.
    pub resumed: bool,
}

/// One new TLS connection (full handshake) to `localhost` at `addr` and one request. Returns
/// the serial of the certificate the server presented and the serial of the client
/// certificate the server saw (`none` without one), or what ended the exchange.
pub fn handshake(config: Arc<ClientConfig>, addr: SocketAddr) -> Result<(String, String), String> {
    request(config, addr, "/").map(|r| (r.presented, r.client))
}

/// One new TLS connection to `localhost` at `addr` (resuming a session if `config` holds one)
/// and one request for `path`.
pub fn request(config: Arc<ClientConfig>, addr: SocketAddr, path: &str) -> Result<Reply, String> {
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
        .map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, sock);
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(tls);
    let mut len = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed before the response".into());
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            len = v.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    let conn = &reader.get_ref().conn;
    let presented = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| CertInfo::from_der(c).unwrap().serial_hex())
        .ok_or("the server presented no certificate")?;
    Ok(Reply {
        presented,
        client: String::from_utf8(body).unwrap(),
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
    })
}
