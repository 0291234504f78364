//! A recording CONNECT proxy on loopback, plain or over TLS, for tests of which requests go
//! through a proxy. It records the target of every CONNECT and tunnels to one fixed loopback
//! address whatever the target names, so a test can ask for any host name without a name
//! lookup or any other network access. Shared by test binaries through `#[path]`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// How long one tunnel may stay idle before it is dropped.
const IDLE: Duration = Duration::from_secs(20);
/// The poll step of the TLS relay (one thread serves both directions).
const STEP: Duration = Duration::from_millis(5);

/// One CONNECT the proxy saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// The request target, `host:port`.
    pub target: String,
    /// The `Proxy-Authorization` header, if any.
    pub authorization: Option<String>,
}

pub struct ConnectProxy {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Connect>>>,
    stop: Arc<AtomicBool>,
}

impl ConnectProxy {
    /// A plain-TCP proxy whose tunnels all lead to `upstream`.
    pub fn start(upstream: SocketAddr) -> ConnectProxy {
        ConnectProxy::start_with(upstream, None)
    }

    /// A proxy that speaks TLS with `tls` before the CONNECT (an `https://` proxy).
    pub fn start_tls(upstream: SocketAddr, tls: Arc<ServerConfig>) -> ConnectProxy {
        ConnectProxy::start_with(upstream, Some(tls))
    }

    fn start_with(upstream: SocketAddr, tls: Option<Arc<ServerConfig>>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (log, tls) = (l.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = match tls {
                        None => serve_plain(stream, upstream, &log),
                        Some(cfg) => serve_tls(stream, cfg, upstream, &log),
                    };
                });
            }
        });
        ConnectProxy { addr, log, stop }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every CONNECT seen so far.
    pub fn connects(&self) -> Vec<Connect> {
        self.log.lock().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the acceptor
    }
}

/// Reads the request head; records the CONNECT and returns whether it was one.
fn read_connect(r: &mut impl BufRead, log: &Mutex<Vec<Connect>>) -> std::io::Result<bool> {
    let mut first = String::new();
    r.read_line(&mut first)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(false);
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("proxy-authorization")
        {
            authorization = Some(v.trim().to_owned());
        }
    }
    let mut parts = first.split_whitespace();
    if parts.next() != Some("CONNECT") {
        return Ok(false);
    }
    let target = parts.next().unwrap_or_default().to_owned();
    log.lock().push(Connect {
        target,
        authorization,
    });
    Ok(true)
}

fn serve_plain(
    client: TcpStream,
    upstream: SocketAddr,
    log: &Mutex<Vec<Connect>>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    if !read_connect(&mut reader, log)? {
        client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    }
    let up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(IDLE))?;
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    // Whatever the client sent after the head is in the reader's buffer.
    let mut up_w = up.try_clone()?;
    up_w.write_all(reader.buffer())?;
    let mut up_r = up;
    let mut client_w = client.try_clone()?;
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut client_w);
        let _ = client_w.shutdown(std::net::Shutdown::Both);
    });
    let _ = std::io::copy(reader.get_mut(), &mut up_w);
    let _ = up_w.shutdown(std::net::Shutdown::Both);
    let _ = t.join();
    Ok(())
}

fn serve_tls(
    sock: TcpStream,
    cfg: Arc<ServerConfig>,
    upstream: SocketAddr,
    log: &Mutex<Vec<Connect>>,
) -> std::io::Result<()> {
    sock.set_read_timeout(Some(IDLE))?;
    let conn = ServerConnection::new(cfg).map_err(std::io::Error::other)?;
    let mut reader = BufReader::new(StreamOwned::new(conn, sock));
    if !read_connect(&mut reader, log)? {
        return Ok(());
    }
    let mut up = TcpStream::connect(upstream)?;
    let pending = reader.buffer().to_vec();
    let mut tls = reader.into_inner();
    tls.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    tls.flush()?;
    up.write_all(&pending)?;
    // One thread for both directions: short read timeouts on both sockets.
    tls.sock.set_read_timeout(Some(STEP))?;
    up.set_read_timeout(Some(STEP))?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut last = Instant::now();
    loop {
        let mut moved = false;
        match tls.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                up.write_all(&buf[..n])?;
                moved = true;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        match up.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                tls.write_all(&buf[..n])?;
                tls.flush()?;
                moved = true;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        if moved {
            last = Instant::now();
        } else if last.elapsed() > IDLE {
            return Ok(());
        }
    }
}
