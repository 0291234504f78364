//! Small DER encoders for the parts of X.509 that rcgen cannot express: a subject Name with
//! several values of one attribute (Kubernetes maps every O of a client certificate to a group),
//! and the SAN extension. Used by CSR building here and by the embedded server's signer.

use std::net::IpAddr;

use yasna::models::ObjectIdentifier;
use yasna::{DERWriter, Tag};

use crate::template::CsrTemplate;

pub(crate) const OID_CN: &[u64] = &[2, 5, 4, 3];
pub(crate) const OID_O: &[u64] = &[2, 5, 4, 10];
pub(crate) const OID_OU: &[u64] = &[2, 5, 4, 11];
pub(crate) const OID_SAN: &[u64] = &[2, 5, 29, 17];

/// Writes a subject Name the way Go's `pkix.Name.ToRDNSequence` does for the fields a template
/// has: O, then OU, then CN; all values of one attribute type share one (multi-valued) RDN.
/// Strings are PrintableString when every character allows it, else UTF8String, as Go.
pub(crate) fn write_name(w: DERWriter<'_>, t: &CsrTemplate) {
    w.write_sequence(|w| {
        for (oid, values) in [(OID_O, &t.organizations), (OID_OU, &t.organizational_units)] {
            if values.is_empty() {
                continue;
            }
            w.next().write_set_of(|w| {
                for v in values.iter() {
                    write_attribute(w.next(), oid, v);
                }
            });
        }
        if !t.common_name.is_empty() {
            w.next()
                .write_set_of(|w| write_attribute(w.next(), OID_CN, &t.common_name));
        }
    });
}

#[cfg(any(test, feature = "server", feature = "test-util"))]
/// The DER of [`write_name`] alone.
pub(crate) fn name_der(t: &CsrTemplate) -> Vec<u8> {
    yasna::construct_der(|w| write_name(w, t))
}

fn write_attribute(w: DERWriter<'_>, oid: &[u64], value: &str) {
    w.write_sequence(|w| {
        w.next().write_oid(&ObjectIdentifier::from_slice(oid));
        if is_printable(value) {
            w.next().write_printable_string(value);
        } else {
            w.next().write_utf8_string(value);
        }
    });
}

fn is_printable(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b))
}

/// True when the template asks for any SAN.
pub(crate) fn has_sans(t: &CsrTemplate) -> bool {
    !(t.dns_names.is_empty()
        && t.ip_addresses.is_empty()
        && t.email_addresses.is_empty()
        && t.uris.is_empty())
}

/// The DER `GeneralNames` of the template's SANs, in Go's order: DNS, email, IP, URI.
pub(crate) fn general_names_der(t: &CsrTemplate) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for d in &t.dns_names {
                w.next()
                    .write_tagged_implicit(Tag::context(2), |w| w.write_ia5_string(d));
            }
            for e in &t.email_addresses {
                w.next()
                    .write_tagged_implicit(Tag::context(1), |w| w.write_ia5_string(e));
            }
            for ip in &t.ip_addresses {
                let bytes = match ip {
                    IpAddr::V4(v4) => v4.octets().to_vec(),
                    IpAddr::V6(v6) => v6.octets().to_vec(),
                };
                w.next()
                    .write_tagged_implicit(Tag::context(7), |w| w.write_bytes(&bytes));
            }
            for u in &t.uris {
                w.next()
                    .write_tagged_implicit(Tag::context(6), |w| w.write_ia5_string(u));
            }
        })
    })
}

/// Writes the SAN `Extension` (non-critical: the subject is not empty in our use).
pub(crate) fn write_san_extension(w: DERWriter<'_>, t: &CsrTemplate) {
    w.write_sequence(|w| {
        w.next().write_oid(&ObjectIdentifier::from_slice(OID_SAN));
        w.next().write_bytes(&general_names_der(t));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_string_rules_follow_go() {
        assert!(is_printable("system nodes"));
        assert!(is_printable("system:node:node-1"));
        assert!(!is_printable("ünïcode"));
        assert!(!is_printable("a*b"));
    }
}
