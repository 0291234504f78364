//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) for
//! CSRs: typed client-go clients, kubectl's `certificate approve|deny` among them, send their
//! `PUT`s and `POST`s this way. Only decoding, and only the fields the server reads; answers are
//! always JSON, which those clients accept.
//!
//! The body is the apimachinery envelope: the magic `k8s\0`, then a `runtime.Unknown`
//! (`typeMeta` = 1, `raw` = 2) whose `raw` is the `CertificateSigningRequest` message as defined
//! in `k8s.io/api/certificates/v1/generated.proto`.

use std::collections::BTreeMap;

use crate::csr::api::{CertificateSigningRequest, CsrCondition, CsrStatus};
use crate::pki::{fmt_time, unix_to_system_time};

/// The content type of Kubernetes protobuf.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err("truncated field".into());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// The next field: (number, value), or `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed
            }
            t => return Err(format!("unsupported wire type {t}")),
        };
        Ok(Some((key >> 3, wire)))
    }
}

/// Calls `f` for every field of `msg`.
fn fields<'a>(
    msg: &'a [u8],
    mut f: impl FnMut(u64, Wire<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut r = Reader { buf: msg };
    while let Some((n, w)) = r.next()? {
        f(n, w)?;
    }
    Ok(())
}

fn string(w: Wire<'_>) -> Result<String, String> {
    match w {
        Wire::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8".into()),
        _ => Err("expected a string".into()),
    }
}

fn bytes(w: Wire<'_>) -> Result<&[u8], String> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err("expected bytes".into()),
    }
}

/// `metav1.Time` → RFC 3339.
fn time(w: Wire<'_>) -> Result<String, String> {
    let mut secs = 0i64;
    fields(bytes(w)?, |n, w| {
        if let (1, Wire::Varint(v)) = (n, w) {
            secs = v as i64;
        }
        Ok(())
    })?;
    Ok(fmt_time(unix_to_system_time(secs)))
}

/// A `map<string,string>` entry.
fn map_entry(w: Wire<'_>, into: &mut BTreeMap<String, String>) -> Result<(), String> {
    let (mut k, mut v) = (String::new(), String::new());
    fields(bytes(w)?, |n, w| {
        match n {
            1 => k = string(w)?,
            2 => v = string(w)?,
            _ => {}
        }
        Ok(())
    })?;
    into.insert(k, v);
    Ok(())
}

/// Decodes a protobuf CSR body (with its envelope).
pub(crate) fn decode_csr(body: &[u8]) -> Result<CertificateSigningRequest, String> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf envelope")?;
    let mut out = CertificateSigningRequest::default();
    let mut raw: &[u8] = &[];
    fields(unknown, |n, w| {
        match n {
            1 => fields(bytes(w)?, |n, w| {
                match n {
                    1 => out.api_version = Some(string(w)?),
                    2 => out.kind = Some(string(w)?),
                    _ => {}
                }
                Ok(())
            })?,
            2 => raw = bytes(w)?,
            _ => {}
        }
        Ok(())
    })?;
    fields(raw, |n, w| {
        match n {
            1 => decode_meta(bytes(w)?, &mut out)?,
            2 => decode_spec(bytes(w)?, &mut out)?,
            3 => out.status = Some(decode_status(bytes(w)?)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn decode_meta(msg: &[u8], out: &mut CertificateSigningRequest) -> Result<(), String> {
    let m = &mut out.metadata;
    fields(msg, |n, w| {
        match n {
            1 => m.name = Some(string(w)?),
            2 => m.generate_name = Some(string(w)?),
            5 => m.uid = Some(string(w)?),
            6 => m.resource_version = Some(string(w)?),
            8 => m.creation_timestamp = Some(time(w)?),
            11 => map_entry(w, m.labels.get_or_insert_default())?,
            12 => map_entry(w, m.annotations.get_or_insert_default())?,
            _ => {}
        }
        Ok(())
    })
}

fn decode_spec(msg: &[u8], out: &mut CertificateSigningRequest) -> Result<(), String> {
    let s = &mut out.spec;
    fields(msg, |n, w| {
        match (n, w) {
            (1, w) => s.request = bytes(w)?.to_vec(),
            (2, w) => s.usages.push(string(w)?),
            (3, w) => s.username = Some(string(w)?),
            (4, w) => s.uid = Some(string(w)?),
            (5, w) => s.groups.push(string(w)?),
            (7, w) => s.signer_name = Some(string(w)?),
            (8, Wire::Varint(v)) => s.expiration_seconds = Some(v as i32),
            _ => {}
        }
        Ok(())
    })
}

fn decode_status(msg: &[u8]) -> Result<CsrStatus, String> {
    let mut st = CsrStatus::default();
    fields(msg, |n, w| {
        match n {
            1 => {
                let mut c = CsrCondition::default();
                fields(bytes(w)?, |n, w| {
                    match n {
                        1 => c.type_ = string(w)?,
                        2 => c.reason = Some(string(w)?),
                        3 => c.message = Some(string(w)?),
                        4 => c.last_update_time = Some(time(w)?),
                        5 => c.last_transition_time = Some(time(w)?),
                        6 => c.status = string(w)?,
                        _ => {}
                    }
                    Ok(())
                })?;
                // Go's zero Time encodes as an empty message (0001-01-01): treat as unset.
                for t in [&mut c.last_update_time, &mut c.last_transition_time] {
                    if t.as_deref()
                        .is_some_and(|s| s.starts_with('-') || s.starts_with("0001"))
                    {
                        *t = None;
                    }
                }
                st.conditions.push(c);
            }
            2 => {
                let cert = bytes(w)?.to_vec();
                st.certificate = (!cert.is_empty()).then_some(cert);
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field(n: u64, data: &[u8], out: &mut Vec<u8>) {
        varint(n << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    #[test]
    fn decodes_an_approval_update() {
        let mut cond = Vec::new();
        field(1, b"Approved", &mut cond);
        field(2, b"KubectlApprove", &mut cond);
        field(6, b"True", &mut cond);
        let mut t = Vec::new();
        varint(1 << 3, &mut t);
        varint(1_700_000_000, &mut t);
        field(4, &t, &mut cond);
        let mut status = Vec::new();
        field(1, &cond, &mut status);
        let mut meta = Vec::new();
        field(1, b"csr-1", &mut meta);
        field(6, b"42", &mut meta);
        let mut spec = Vec::new();
        field(1, b"PEM", &mut spec);
        field(2, b"client auth", &mut spec);
        field(7, b"example.com/s", &mut spec);
        varint(8 << 3, &mut spec);
        varint(3600, &mut spec);
        let mut csr = Vec::new();
        field(1, &meta, &mut csr);
        field(2, &spec, &mut csr);
        field(3, &status, &mut csr);
        let mut tm = Vec::new();
        field(1, b"certificates.k8s.io/v1", &mut tm);
        field(2, b"CertificateSigningRequest", &mut tm);
        let mut body = MAGIC.to_vec();
        field(1, &tm, &mut body);
        field(2, &csr, &mut body);
        let o = decode_csr(&body).unwrap();
        assert_eq!(o.kind.as_deref(), Some("CertificateSigningRequest"));
        assert_eq!(o.metadata.name.as_deref(), Some("csr-1"));
        assert_eq!(o.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(o.spec.request, b"PEM");
        assert_eq!(o.spec.usages, ["client auth"]);
        assert_eq!(o.spec.expiration_seconds, Some(3600));
        let c = &o.status.unwrap().conditions[0];
        assert_eq!((c.type_.as_str(), c.status.as_str()), ("Approved", "True"));
        assert_eq!(c.last_update_time.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert!(decode_csr(b"{}").is_err());
        assert!(decode_csr(b"k8s\0\x12\x05ab").is_err(), "truncated");
    }
}
