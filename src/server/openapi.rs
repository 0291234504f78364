//! `/openapi/v2` and `/openapi/v3`: the OpenAPI documents of what the server serves, which
//! `kubectl create`/`apply` validation, `kubectl explain` and other clients read.
//!
//! The documents are kube-apiserver 1.37.2's own, taken from a running one
//! (`tests/peers/cmd/kube-apiserver-peer`'s `openapi` command) and cut down to the paths this
//! server serves — the group's and version's discovery and CertificateSigningRequests — and to
//! the definitions those paths use; nothing is typed by hand. `tests/kube_real.rs` checks, in
//! every run with the peer, that the files here are still exactly what that apiserver gives.
//!
//! Served as kube-openapi's handlers serve them:
//! - `/openapi/v2`: JSON, or protobuf (`application/com.github.proto-openapi.spec.v2.v1.0+protobuf`,
//!   and the older `…spec.v2@v1.0+protobuf`, as kubectl before 1.27 asks for it), chosen from
//!   `Accept` by quality then order; `406` with no body for anything else.
//! - `/openapi/v3`: the discovery document listing `apis/certificates.k8s.io/v1` with its
//!   `?hash=` (SHA-512 of the JSON, upper-case hex).
//! - `/openapi/v3/apis/certificates.k8s.io/v1`: JSON or protobuf (`…spec.v3.v1.0+protobuf`); with
//!   the current `hash` the answer is `Cache-Control: public, immutable`, with another one a
//!   `301` to the current URL.
//! - Every answer has an `ETag` (that SHA-512) and `Vary: Accept`, and `If-None-Match` with
//!   that ETag gets `304 Not Modified`.
//!
//! Left out: `Last-Modified` and `Expires`, and gzip.

use std::io;
use std::sync::OnceLock;

use super::http::{Conn, Request};

const V2_JSON: &[u8] = include_bytes!("openapi/openapi-v2.json");
const V2_PB: &[u8] = include_bytes!("openapi/openapi-v2.pb");
const V3_ROOT: &[u8] = include_bytes!("openapi/openapi-v3.json");
const V3_CERTIFICATES_JSON: &[u8] =
    include_bytes!("openapi/openapi-v3-apis-certificates.k8s.io-v1.json");
const V3_CERTIFICATES_PB: &[u8] =
    include_bytes!("openapi/openapi-v3-apis-certificates.k8s.io-v1.pb");

/// The group-version of the only v3 document.
const V3_CERTIFICATES: &str = "apis/certificates.k8s.io/v1";

const JSON: &str = "application/json";
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const V3_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v3.v1.0+protobuf";

/// kube-openapi's `computeETag`: SHA-512, upper-case hex.
fn etag(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA512, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

fn v2_etag() -> &'static str {
    static E: OnceLock<String> = OnceLock::new();
    E.get_or_init(|| etag(V2_JSON))
}

fn v3_root_etag() -> &'static str {
    static E: OnceLock<String> = OnceLock::new();
    E.get_or_init(|| etag(V3_ROOT))
}

fn v3_certificates_etag() -> &'static str {
    static E: OnceLock<String> = OnceLock::new();
    E.get_or_init(|| etag(V3_CERTIFICATES_JSON))
}

/// One representation a handler can give: `Accept` type and subtype, the `Content-Type` it is
/// answered with, and the bytes.
struct Representation {
    accepts: (&'static str, &'static str),
    content_type: &'static str,
    body: &'static [u8],
}

/// The representation `accept` picks, as goautoneg with kube-openapi's handlers: clauses by
/// quality (stable), the first representation each clause matches (`*` matching anything).
/// A missing `Accept` is `*/*`. `None` is `406`.
fn negotiate<'r>(
    accept: Option<&str>,
    offered: &'r [Representation],
) -> Option<&'r Representation> {
    let accept = accept.filter(|a| !a.trim().is_empty()).unwrap_or("*/*");
    let mut clauses: Vec<(f32, &str, &str)> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';');
            let media = parts.next()?.trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let (t, s) = media.split_once('/').unwrap_or((media, "*"));
            Some((q, t.trim(), s.trim()))
        })
        .filter(|(q, _, _)| *q > 0.0)
        .collect();
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0));
    clauses.iter().find_map(|(_, t, s)| {
        offered
            .iter()
            .find(|r| (*t == "*" || *t == r.accepts.0) && (*s == "*" || *s == r.accepts.1))
    })
}

/// Serves `GET /openapi/...`; `rest` is the path after `openapi`. Returns `false` when the path
/// is not an OpenAPI document (the caller answers 404).
pub(crate) fn serve(conn: &mut Conn, req: &Request, rest: &[&str], keep: bool) -> io::Result<bool> {
    let accept = req.header("accept");
    match rest {
        ["v2"] => {
            let offered = [
                Representation {
                    accepts: ("application", "json"),
                    content_type: JSON,
                    body: V2_JSON,
                },
                Representation {
                    accepts: (
                        "application",
                        "com.github.proto-openapi.spec.v2@v1.0+protobuf",
                    ),
                    content_type: V2_PROTOBUF,
                    body: V2_PB,
                },
                Representation {
                    accepts: (
                        "application",
                        "com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    ),
                    content_type: V2_PROTOBUF,
                    body: V2_PB,
                },
            ];
            answer(
                conn,
                req,
                negotiate(accept, &offered),
                v2_etag(),
                false,
                keep,
            )?;
        }
        ["v3"] => {
            let root = [Representation {
                accepts: ("*", "*"),
                content_type: JSON,
                body: V3_ROOT,
            }];
            answer(conn, req, root.first(), v3_root_etag(), false, keep)?;
        }
        ["v3", group_version @ ..] if group_version.join("/") == V3_CERTIFICATES => {
            let offered = [
                Representation {
                    accepts: ("application", "json"),
                    content_type: JSON,
                    body: V3_CERTIFICATES_JSON,
                },
                Representation {
                    accepts: (
                        "application",
                        "com.github.proto-openapi.spec.v3.v1.0+protobuf",
                    ),
                    content_type: V3_PROTOBUF,
                    body: V3_CERTIFICATES_PB,
                },
                Representation {
                    accepts: (
                        "application",
                        "com.github.proto-openapi.spec.v3@v1.0+protobuf",
                    ),
                    content_type: V3_PROTOBUF,
                    body: V3_CERTIFICATES_PB,
                },
            ];
            let tag = v3_certificates_etag();
            let chosen = negotiate(accept, &offered);
            match req.param("hash") {
                Some(h) if !h.is_empty() && h != tag && chosen.is_some() => {
                    let location = format!("/openapi/v3/{V3_CERTIFICATES}?hash={tag}");
                    let body = format!("<a href=\"{location}\">Moved Permanently</a>.\n\n");
                    let head = format!(
                        "HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Type: text/html; charset=utf-8\r\nVary: Accept\r\nContent-Length: {}\r\n{}\r\n",
                        body.len(),
                        if keep { "" } else { "Connection: close\r\n" }
                    );
                    conn.write_all(format!("{head}{body}").as_bytes())?;
                }
                Some(h) if !h.is_empty() => answer(conn, req, chosen, tag, true, keep)?,
                _ => answer(conn, req, chosen, tag, false, keep)?,
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Writes `chosen` (or `406`), with `ETag`, `Vary: Accept` and, for a hashed URL, the immutable
/// caching headers; `If-None-Match` with the ETag gets `304`.
fn answer(
    conn: &mut Conn,
    req: &Request,
    chosen: Option<&Representation>,
    tag: &str,
    immutable: bool,
    keep: bool,
) -> io::Result<()> {
    let close = if keep { "" } else { "Connection: close\r\n" };
    let Some(r) = chosen else {
        let head = format!(
            "HTTP/1.1 406 Not Acceptable\r\nVary: Accept\r\nContent-Length: 0\r\n{close}\r\n"
        );
        return conn.write_all(head.as_bytes());
    };
    let quoted = format!("\"{tag}\"");
    let cache = if immutable {
        "Cache-Control: public, immutable\r\n"
    } else {
        ""
    };
    let fresh = req
        .header("if-none-match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == quoted || t.trim() == "*"));
    if fresh {
        let head = format!(
            "HTTP/1.1 304 Not Modified\r\nEtag: {quoted}\r\nVary: Accept\r\n{cache}{close}\r\n"
        );
        return conn.write_all(head.as_bytes());
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nEtag: {quoted}\r\nVary: Accept\r\n{cache}Content-Length: {}\r\n{close}\r\n",
        r.content_type,
        r.body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(r.body);
    conn.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered() -> [Representation; 2] {
        [
            Representation {
                accepts: ("application", "json"),
                content_type: JSON,
                body: b"j",
            },
            Representation {
                accepts: (
                    "application",
                    "com.github.proto-openapi.spec.v2.v1.0+protobuf",
                ),
                content_type: V2_PROTOBUF,
                body: b"p",
            },
        ]
    }

    #[test]
    fn accept_is_negotiated_as_goautoneg_does() {
        let o = offered();
        let pick = |a: Option<&str>| negotiate(a, &o).map(|r| r.body);
        assert_eq!(pick(None), Some(&b"j"[..]));
        assert_eq!(pick(Some("*/*")), Some(&b"j"[..]));
        assert_eq!(pick(Some("application/*")), Some(&b"j"[..]));
        assert_eq!(
            pick(Some(
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
            )),
            Some(&b"p"[..])
        );
        // Quality first, then order.
        assert_eq!(
            pick(Some(
                "application/json;q=0.5, application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
            )),
            Some(&b"p"[..])
        );
        assert_eq!(pick(Some("application/json;q=0")), None);
        assert_eq!(pick(Some("text/html")), None);
        assert_eq!(pick(Some("application/yaml")), None);
    }

    /// The discovery document's hash is the one the served document has: a client following
    /// `serverRelativeURL` gets the document, not a redirect.
    #[test]
    fn the_v3_discovery_hash_is_the_documents_etag() {
        let root: serde_json::Value = serde_json::from_slice(V3_ROOT).unwrap();
        let url = root["paths"][V3_CERTIFICATES]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert_eq!(
            url,
            format!(
                "/openapi/v3/{V3_CERTIFICATES}?hash={}",
                v3_certificates_etag()
            )
        );
    }

    /// Every path in the documents is one the server serves, and every `$ref` resolves.
    #[test]
    fn the_documents_hold_only_served_paths_and_resolve() {
        for (doc, defs, prefix) in [
            (V2_JSON, "/definitions", "#/definitions/"),
            (
                V3_CERTIFICATES_JSON,
                "/components/schemas",
                "#/components/schemas/",
            ),
        ] {
            let v: serde_json::Value = serde_json::from_slice(doc).unwrap();
            for path in v["paths"].as_object().unwrap().keys() {
                assert!(
                    path == "/apis/certificates.k8s.io/"
                        || path == "/apis/certificates.k8s.io/v1/"
                        || path.contains("/certificatesigningrequests"),
                    "{path}"
                );
            }
            let text = std::str::from_utf8(doc).unwrap();
            for piece in text.split("\"$ref\":\"").skip(1) {
                let target = &piece[..piece.find('"').unwrap()];
                if let Some(name) = target.strip_prefix(prefix) {
                    let pointer = format!("{defs}/{}", name.replace('~', "~0").replace('/', "~1"));
                    assert!(v.pointer(&pointer).is_some(), "{target} does not resolve");
                }
            }
        }
    }
}
