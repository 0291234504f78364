//! Issuing X.509 v3 certificates: the signer side, used by the embedded server's CA and by
//! test helpers (built with the `server` or `test-util` feature).
//!
//! Subject, issuer and SANs are taken as raw DER so that a signer can copy a CSR's subject byte
//! for byte (every organization included), as kube-controller-manager's signer does. Usages map
//! to KeyUsage/ExtKeyUsage in `extensions`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use yasna::Tag;
use yasna::models::ObjectIdentifier;

use super::PkiError;
use super::der::OID_SAN;
use super::key::Signer;

const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const OID_EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
const OID_SUBJECT_KEY_ID: &[u64] = &[2, 5, 29, 14];
const OID_AUTHORITY_KEY_ID: &[u64] = &[2, 5, 29, 35];

/// What goes into one certificate.
#[derive(Clone, Debug)]
pub(crate) struct CertSpec<'a> {
    /// Serial number, big-endian, positive.
    pub serial: &'a [u8],
    /// DER Name of the issuer (the CA's subject; the subject itself when self-signed).
    pub issuer_der: &'a [u8],
    /// DER Name of the subject.
    pub subject_der: &'a [u8],
    /// DER SubjectPublicKeyInfo of the subject's key.
    pub spki_der: &'a [u8],
    /// Start of validity (truncated to the second).
    pub not_before: SystemTime,
    /// End of validity (truncated to the second).
    pub not_after: SystemTime,
    /// Whether the certificate is a CA.
    pub is_ca: bool,
    /// KeyUsage bits (see the `KU_*` constants), 0 for none.
    pub key_usage: u16,
    /// ExtKeyUsage OIDs.
    pub ext_key_usages: Vec<&'static [u64]>,
    /// DER `GeneralNames` for the SAN extension, if any.
    pub san_der: Option<&'a [u8]>,
    /// Subject key identifier to write, if any.
    pub subject_key_id: Option<&'a [u8]>,
    /// Authority key identifier to write, if any.
    pub authority_key_id: Option<&'a [u8]>,
}

/// Encodes and signs one certificate; returns its DER.
///
/// # Errors
/// [`PkiError::Signing`] when signing fails; [`PkiError::InvalidCertificate`] when NotBefore or
/// NotAfter is outside the years 0000–9999.
pub(crate) fn build_certificate(spec: &CertSpec<'_>, signer: &Signer) -> Result<Vec<u8>, PkiError> {
    let not_before =
        encode_time(spec.not_before).ok_or_else(|| unencodable("NotBefore", spec.not_before))?;
    let not_after =
        encode_time(spec.not_after).ok_or_else(|| unencodable("NotAfter", spec.not_after))?;
    let tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_tagged(Tag::context(0), |w| w.write_u8(2));
            w.next()
                .write_bigint_bytes(&positive_integer(spec.serial), true);
            w.next().write_der(signer.algorithm_der());
            w.next().write_der(spec.issuer_der);
            w.next().write_sequence(|w| {
                w.next().write_der(&not_before);
                w.next().write_der(&not_after);
            });
            w.next().write_der(spec.subject_der);
            w.next().write_der(spec.spki_der);
            w.next().write_tagged(Tag::context(3), |w| {
                w.write_sequence(|w| write_extensions(w, spec))
            });
        })
    });
    signer.sign_der(&tbs)
}

fn write_extensions(w: &mut yasna::DERWriterSeq<'_>, spec: &CertSpec<'_>) {
    let ext = |w: &mut yasna::DERWriterSeq<'_>, oid: &[u64], critical: bool, value: Vec<u8>| {
        w.next().write_sequence(|w| {
            w.next().write_oid(&ObjectIdentifier::from_slice(oid));
            if critical {
                w.next().write_bool(true);
            }
            w.next().write_bytes(&value);
        });
    };
    if spec.key_usage != 0 {
        let bits = spec.key_usage;
        let len = 16 - bits.leading_zeros() as usize;
        // BIT STRING bit 0 is the most significant bit of the first byte.
        let mut bytes = [0u8; 2];
        for i in 0..len {
            if bits & (1 << i) != 0 {
                bytes[i / 8] |= 0x80 >> (i % 8);
            }
        }
        let value = yasna::construct_der(|w| w.write_bitvec_bytes(&bytes[..len.div_ceil(8)], len));
        ext(w, OID_KEY_USAGE, true, value);
    }
    if !spec.ext_key_usages.is_empty() {
        let value = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                for oid in &spec.ext_key_usages {
                    w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                }
            })
        });
        ext(w, OID_EXT_KEY_USAGE, false, value);
    }
    let value = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            if spec.is_ca {
                w.next().write_bool(true);
            }
        })
    });
    ext(w, OID_BASIC_CONSTRAINTS, true, value);
    if let Some(id) = spec.subject_key_id {
        ext(
            w,
            OID_SUBJECT_KEY_ID,
            false,
            yasna::construct_der(|w| w.write_bytes(id)),
        );
    }
    if let Some(id) = spec.authority_key_id {
        let value = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next()
                    .write_tagged_implicit(Tag::context(0), |w| w.write_bytes(id));
            })
        });
        ext(w, OID_AUTHORITY_KEY_ID, false, value);
    }
    if let Some(san) = spec.san_der {
        ext(w, OID_SAN, false, san.to_vec());
    }
}

fn positive_integer(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len());
    let m = &magnitude[start..];
    let mut out = Vec::with_capacity(m.len() + 1);
    if m.first().is_none_or(|b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend_from_slice(m);
    out
}

fn unencodable(field: &str, t: SystemTime) -> PkiError {
    PkiError::InvalidCertificate(format!(
        "{field} {} cannot be written as an X.509 time: only the years 0000 to 9999 can",
        super::fmt_time(t)
    ))
}

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the first and last times GeneralizedTime's
/// four-digit year can hold, as seconds from the epoch.
const FIRST_ENCODABLE: i64 = -62_167_219_200;
const LAST_ENCODABLE: i64 = 253_402_300_799;

/// RFC 5280 Time: UTCTime for years 1950–2049, GeneralizedTime otherwise; whole seconds
/// (rounded down). `None` outside the years 0000–9999, which GeneralizedTime cannot hold (Go's
/// `encoding/asn1` refuses them too).
fn encode_time(t: SystemTime) -> Option<Vec<u8>> {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok()?,
        Err(e) => {
            -i64::try_from(e.duration().as_secs()).ok()?
                - i64::from(e.duration().subsec_nanos() > 0)
        }
    };
    if !(FIRST_ENCODABLE..=LAST_ENCODABLE).contains(&secs) {
        return None;
    }
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    let (tag, text) = if (1950..2050).contains(&y) {
        (
            0x17u8,
            format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100),
        )
    } else {
        (0x18u8, format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z"))
    };
    let mut out = vec![tag, text.len() as u8];
    out.extend_from_slice(text.as_bytes());
    Some(out)
}

/// Truncates a time to whole seconds (X.509 resolution).
pub(crate) fn truncate_to_second(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_switch_to_generalized_in_2050() {
        let enc = |t| encode_time(t).expect("encodable");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_024_160);
        assert_eq!(&enc(t)[2..], b"261130073600Z");
        assert_eq!(enc(t)[0], 0x17);
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_800); // 2100-01-01
        assert_eq!(&enc(t)[2..], b"21000101000000Z");
        assert_eq!(enc(t)[0], 0x18);
    }

    /// Only the years 0000–9999 fit GeneralizedTime's four digits; a time outside them is not
    /// written (as Go's encoding/asn1 refuses it), at the second either side of each bound.
    #[test]
    fn times_beyond_four_digit_years_are_refused() {
        let last = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        assert_eq!(&encode_time(last).unwrap()[2..], b"99991231235959Z");
        assert_eq!(encode_time(last + Duration::from_secs(1)), None);
        assert_eq!(encode_time(last + Duration::from_millis(1500)), None);
        let first = UNIX_EPOCH - Duration::from_secs(62_167_219_200);
        assert_eq!(&encode_time(first).unwrap()[2..], b"00000101000000Z");
        assert_eq!(encode_time(first - Duration::from_millis(1)), None);
        assert_eq!(
            &encode_time(first + Duration::from_millis(1500)).unwrap()[2..],
            b"00000101000001Z"
        );
    }

    #[test]
    fn serials_are_positive_integers() {
        assert_eq!(positive_integer(&[0x80]), vec![0, 0x80]);
        assert_eq!(positive_integer(&[0, 0, 0x7f]), vec![0x7f]);
        assert_eq!(positive_integer(&[]), vec![0]);
    }
}
