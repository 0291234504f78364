//! HTTP/1.1 over one TLS connection: reading requests (parsed by `httparse`, bodies by
//! `Content-Length` or chunked), writing whole responses, and writing chunked streams flushed
//! per chunk (watches).
//!
//! Limits, as kube-apiserver's: request headers ≤ 64 KiB, bodies ≤ 3 MiB (413 above).

use std::io::{self, Read, Write};
use std::net::TcpStream;

use rustls::{ServerConnection, StreamOwned};

const MAX_HEADER_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
const MAX_HEADERS: usize = 100;

/// One TLS connection with its unconsumed input.
pub(crate) struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    /// Header lines (`Name: value`) for the next response only.
    extra_headers: Vec<String>,
}

/// A parsed request.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    http10: bool,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after this request.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(str::to_ascii_lowercase);
        match conn.as_deref() {
            Some(c) if c.contains("close") => false,
            Some(c) if c.contains("keep-alive") => true,
            _ => !self.http10,
        }
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed (or went idle past the read timeout) between requests.
    Closed,
    /// The request is malformed: answer 400 and close.
    Bad(String),
    /// The request is too large: answer 413 (body) or 431 (headers) and close.
    TooLarge(u16),
}

/// What a [`Conn`] reads from and writes to: the TLS connection, or (feature `fuzzing`) bytes
/// in memory, so that the request parser and the handlers run on fuzzer input without sockets.
enum Stream {
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
    #[cfg(feature = "fuzzing")]
    Memory {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    },
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tls(s) => s.read(buf),
            #[cfg(feature = "fuzzing")]
            Stream::Memory { input, .. } => input.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tls(s) => s.write(buf),
            #[cfg(feature = "fuzzing")]
            Stream::Memory { output, .. } => output.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tls(s) => s.flush(),
            #[cfg(feature = "fuzzing")]
            Stream::Memory { .. } => Ok(()),
        }
    }
}

impl Conn {
    pub fn new(stream: StreamOwned<ServerConnection, TcpStream>) -> Conn {
        Conn {
            stream: Stream::Tls(Box::new(stream)),
            buf: Vec::new(),
            extra_headers: Vec::new(),
        }
    }

    /// The TCP socket under the TLS stream (`None` for an in-memory connection).
    pub fn socket(&self) -> Option<&TcpStream> {
        match &self.stream {
            Stream::Tls(s) => Some(&s.sock),
            #[cfg(feature = "fuzzing")]
            Stream::Memory { .. } => None,
        }
    }

    /// Sends TLS `close_notify` and flushes it (best effort, for a connection about to close).
    pub fn close_notify(&mut self) {
        match &mut self.stream {
            Stream::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.complete_io(&mut s.sock);
            }
            #[cfg(feature = "fuzzing")]
            Stream::Memory { .. } => {}
        }
    }

    /// A connection whose peer sent `input` and then closed its side; what the server writes
    /// is kept in memory (see [`Conn::output`]). A chunked answer (a watch) ends right after its
    /// head, as with a peer that is gone.
    #[cfg(feature = "fuzzing")]
    pub fn in_memory(input: Vec<u8>) -> Conn {
        Conn {
            stream: Stream::Memory {
                input: io::Cursor::new(input),
                output: Vec::new(),
            },
            buf: Vec::new(),
            extra_headers: Vec::new(),
        }
    }

    /// The bytes written to an in-memory connection so far.
    #[cfg(feature = "fuzzing")]
    pub fn output(&self) -> &[u8] {
        match &self.stream {
            Stream::Memory { output, .. } => output,
            Stream::Tls(_) => &[],
        }
    }

    /// True when the peer has gone: its end of the connection is closed (EOF, a TLS
    /// `close_notify`, a reset) or its TLS is broken, or it sent more than a request can hold. Never blocks: it reads only what has
    /// already arrived; request bytes that arrived are kept for the next request. A watch calls
    /// it while it waits for events, so a client that stopped watching frees its thread at once
    /// instead of at the next write.
    pub fn peer_gone(&mut self) -> bool {
        // One variant without the `fuzzing` feature.
        #[allow(clippy::infallible_destructuring_match)]
        let stream = match &mut self.stream {
            Stream::Tls(s) => s,
            #[cfg(feature = "fuzzing")]
            Stream::Memory { .. } => return true,
        };
        if stream.sock.set_nonblocking(true).is_err() {
            return true;
        }
        let mut gone = false;
        // Bounded: a peer that keeps sending cannot hold the watch here.
        for _ in 0..16 {
            match stream.conn.read_tls(&mut stream.sock) {
                Ok(0) => {
                    gone = true;
                    break;
                }
                Ok(_) => match stream.conn.process_new_packets() {
                    Ok(io) if io.peer_has_closed() => {
                        gone = true;
                        break;
                    }
                    Ok(io) => {
                        let n = io.plaintext_bytes_to_read();
                        if n > 0 {
                            let mut tmp = vec![0u8; n];
                            if stream.conn.reader().read_exact(&mut tmp).is_ok() {
                                self.buf.extend_from_slice(&tmp);
                            }
                            // More than the largest request while a watch runs: the client
                            // is not waiting for the watch; close it rather than keep it all.
                            if self.buf.len() > MAX_HEADER_BYTES + MAX_BODY_BYTES {
                                gone = true;
                                break;
                            }
                        }
                    }
                    Err(_) => {
                        gone = true;
                        break;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    gone = true;
                    break;
                }
            }
        }
        if stream.sock.set_nonblocking(false).is_err() {
            return true;
        }
        gone
    }

    /// Reads more input into the buffer; `Ok(0)` at end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 16 * 1024];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    fn fill_or_bad(&mut self) -> Result<(), ReadError> {
        match self.fill() {
            Ok(0) | Err(_) => Err(ReadError::Bad("unexpected end of request".into())),
            Ok(_) => Ok(()),
        }
    }

    /// Reads the next request.
    pub fn read_request(&mut self) -> Result<Request, ReadError> {
        let (head_len, mut req) = loop {
            if !self.buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Request::new(&mut headers);
                match parsed.parse(&self.buf) {
                    Ok(httparse::Status::Complete(n)) => break (n, to_request(&parsed)?),
                    Ok(httparse::Status::Partial) => {}
                    Err(httparse::Error::TooManyHeaders) => return Err(ReadError::TooLarge(431)),
                    Err(e) => return Err(ReadError::Bad(format!("malformed request: {e}"))),
                }
            }
            if self.buf.len() > MAX_HEADER_BYTES {
                return Err(ReadError::TooLarge(431));
            }
            match self.fill() {
                Ok(0) | Err(_) if self.buf.is_empty() => return Err(ReadError::Closed),
                Ok(0) | Err(_) => return Err(ReadError::Bad("unexpected end of request".into())),
                Ok(_) => {}
            }
        };
        self.buf.drain(..head_len);
        if req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            self.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .map_err(|_| ReadError::Closed)?;
        }
        let chunked = req
            .header("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        if chunked {
            req.body = self.read_chunked()?;
        } else if let Some(len) = req.header("content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| ReadError::Bad(format!("bad Content-Length {len:?}")))?;
            if len > MAX_BODY_BYTES {
                return Err(ReadError::TooLarge(413));
            }
            while self.buf.len() < len {
                self.fill_or_bad()?;
            }
            req.body = self.buf.drain(..len).collect();
        }
        Ok(req)
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let (used, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => break (used, size),
                    Ok(httparse::Status::Partial) => self.fill_or_bad()?,
                    Err(_) => return Err(ReadError::Bad("malformed chunk size".into())),
                }
            };
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if body.len().saturating_add(size) > MAX_BODY_BYTES {
                return Err(ReadError::TooLarge(413));
            }
            self.buf.drain(..used);
            if size == 0 {
                // Trailers (ignored) end with an empty line.
                loop {
                    if let Some(pos) = find(&self.buf, b"\r\n") {
                        let line_empty = pos == 0;
                        self.buf.drain(..pos + 2);
                        if line_empty {
                            return Ok(body);
                        }
                    } else {
                        self.fill_or_bad()?;
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.fill_or_bad()?;
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)?;
        self.stream.flush()
    }

    /// Adds a header to the next response (then forgotten). A value with a line break is
    /// dropped, so no header can be injected.
    pub fn add_header(&mut self, name: &str, value: &str) {
        if !value.contains(['\r', '\n']) && !name.contains(['\r', '\n', ':']) {
            self.extra_headers.push(format!("{name}: {value}\r\n"));
        }
    }

    /// The status line and headers of a response, with the headers added for it.
    fn head(&mut self, code: u16, content_type: &str, keep_alive: bool) -> String {
        let mut out = head(code, content_type, keep_alive);
        for h in self.extra_headers.drain(..) {
            out.push_str(&h);
        }
        out
    }

    /// Writes a complete response with a body.
    pub fn respond(
        &mut self,
        code: u16,
        content_type: &str,
        body: &[u8],
        keep_alive: bool,
    ) -> io::Result<()> {
        let mut out = self.head(code, content_type, keep_alive);
        out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        self.write_all(&bytes)
    }

    /// Starts a chunked response (a watch stream).
    pub fn start_chunked(&mut self, code: u16, content_type: &str) -> io::Result<()> {
        let mut out = self.head(code, content_type, true);
        out.push_str("Transfer-Encoding: chunked\r\n\r\n");
        self.write_all(out.as_bytes())?;
        #[cfg(feature = "fuzzing")]
        if let Stream::Memory { .. } = self.stream {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(())
    }

    /// Writes one chunk and flushes it to the peer.
    pub fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        self.write_all(&out)
    }

    /// Ends a chunked response.
    pub fn end_chunked(&mut self) -> io::Result<()> {
        self.write_all(b"0\r\n\r\n")
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn to_request(p: &httparse::Request<'_, '_>) -> Result<Request, ReadError> {
    let method = p.method.unwrap_or("GET").to_owned();
    let target = p.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let path = percent_decode(path).ok_or_else(|| ReadError::Bad("bad path encoding".into()))?;
    let query = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let headers = p
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Ok(Request {
        method,
        path,
        query,
        headers,
        body: Vec::new(),
        http10: p.version == Some(0),
    })
}

/// Decodes `%XX` escapes in a path (not `+`, which only means a space in query strings). As
/// Go's `url.PathUnescape`, every `%` must be followed by two hex digits, nothing else (not a
/// sign, which `u8::from_str_radix` would take).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let digit = |at: usize| char::from(*b.get(at)?).to_digit(16);
            let (high, low) = (digit(i + 1)?, digit(i + 2)?);
            out.push(u8::try_from(high * 16 + low).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn head(code: u16, content_type: &str, keep_alive: bool) -> String {
    let mut out = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nCache-Control: no-cache, private\r\n",
        reason_phrase(code)
    );
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    }
    out
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_and_queries_split() {
        // Go's url.PathUnescape on the same inputs (run with Go 1.26): these decode, every
        // other escape is an "invalid URL escape".
        for (path, decoded) in [
            ("/a%2Fb", "/a/b"),
            ("/a%2fb", "/a/b"),
            ("/a%E2%82%AC", "/a\u{20ac}"),
        ] {
            assert_eq!(percent_decode(path).as_deref(), Some(decoded), "{path}");
        }
        for path in [
            "/a%zz", "/a%+1", "/a%-1", "/a% 1", "/a%1", "/a%", "/a%0G", "/a%G0", "/a%%41",
        ] {
            assert_eq!(percent_decode(path), None, "{path}");
        }
        let q: Vec<(String, String)> =
            form_urlencoded::parse(b"fieldSelector=metadata.name%3Dcsr-1&watch=true")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        assert_eq!(q[0].1, "metadata.name=csr-1");
    }
}
