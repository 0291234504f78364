//! A loopback HTTPS server and client for tests that check which certificates a real TLS
//! handshake presents. Shared by several test binaries through `#[path]`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use certrotate::pki::CertInfo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

/// How long one read or write may block before a connection is given up.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Answers every request on a connection (keep-alive, a thread per connection) with the serial
/// of the client certificate the connection was made with, or `none`. Dropping it stops the
/// acceptor and joins it; open connections end at their client's close.
pub struct TlsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsServer {
    pub fn start(config: Arc<ServerConfig>) -> TlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    let config = config.clone();
                    std::thread::spawn(move || {
                        let _ = serve(config, stream);
                    });
                }
            }
        });
        TlsServer {
            addr,
            stop,
            thread: Some(thread),
        }
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

fn serve(config: Arc<ServerConfig>, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let conn = ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = BufReader::new(StreamOwned::new(conn, stream));
    let mut line = String::new();
    loop {
        // One request head; a clean close between requests ends the connection.
        loop {
            line.clear();
            if tls.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
        }
        let serial = tls
            .get_ref()
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| CertInfo::from_der(c).unwrap().serial_hex())
            .unwrap_or_else(|| "none".into());
        let out = tls.get_mut();
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{serial}",
            serial.len()
        )?;
        out.flush()?;
    }
}

/// One new TLS connection (full handshake) to `localhost` at `addr` and one request. Returns
/// the serial of the certificate the server presented and the serial of the client
/// certificate the server saw (`none` without one), or what ended the exchange.
pub fn handshake(config: Arc<ClientConfig>, addr: SocketAddr) -> Result<(String, String), String> {
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
        .map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .map_err(|e| e.to_string())?;
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
    let presented = reader
        .get_ref()
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| CertInfo::from_der(c).unwrap().serial_hex())
        .ok_or("the server presented no certificate")?;
    Ok((presented, String::from_utf8(body).unwrap()))
}
