//! The checks a TLS peer makes on a certificate chain, applied before a chain is stored, served
//! or used to authenticate: what Go's `crypto/x509`, rustls' `webpki` and OpenSSL all reject is
//! rejected here too (the intersection of their rules where they differ, so that a chain that
//! passes is accepted by each of them). The one link this cannot check is the last certificate's
//! issuer: the signer's CA bundle is the peer's business and is not known here.
//!
//! Per certificate (the leaf, then each chain certificate):
//! - X.509 version 3 (webpki accepts no other).
//! - The outer signature algorithm equals the one inside the signed part (Go, webpki), and is
//!   one every peer verifies: RSA PKCS#1 v1.5 or PSS with SHA-256/384/512, ECDSA with
//!   SHA-256/384, Ed25519. SHA-1 and MD5 are refused (Go since 1.18, webpki never had them).
//! - No extension twice, none that fails to parse, and no critical extension outside those every
//!   peer processes: key usage, subject alternative name, basic constraints, name constraints,
//!   CRL distribution points, extended key usage (webpki's list; Go and OpenSSL know more).
//! - Validity: NotBefore ≤ NotAfter, not expired at `now`, and NotBefore at most
//!   [`NOT_BEFORE_ALLOWANCE`] after `now`.
//! - Basic constraints: the leaf is not a CA (webpki `CaUsedAsEndEntity`); every other
//!   certificate is one (Go, webpki, OpenSSL), its key usage (when present) includes
//!   keyCertSign (Go, OpenSSL), and its pathLenConstraint admits the CAs below it.
//! - Extended key usage: when the extension is present it is not empty (webpki) and lists every
//!   requested extended usage, on the leaf and on every chain certificate (webpki checks each
//!   certificate of the path, Go each issuer). An absent extension allows every usage, as RFC
//!   5280 §4.2.1.12, Go, webpki and OpenSSL all read it. `anyExtendedKeyUsage` does not stand in
//!   for `serverAuth` or `clientAuth`: Go accepts it, but webpki and OpenSSL do not.
//! - Key usage of the leaf: when the extension is present it has every requested bit (a
//!   requested `digital signature` or `key encipherment` that the extension does not allow is
//!   refused; OpenSSL refuses a TLS server certificate whose key usage allows none of them).
//!   An absent extension restricts nothing (RFC 5280 §4.2.1.3).
//!
//! Name constraints of every chain certificate: the leaf's DNS and IP address SANs fall in the
//! permitted subtrees of their type (when there are any) and in no excluded one (Go, webpki and
//! OpenSSL all enforce them).
//!
//! Per link (certificate `i` and the next one): `i`'s issuer Name equals the next one's subject
//! Name byte for byte (as Go and webpki match them), and the next one's key verifies `i`'s
//! signature. So the chain must be in order, leaf first, each certificate followed by its
//! issuer, as TLS 1.2 (RFC 5246 §7.4.2) requires of the certificate list a peer is sent.

use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use x509_parser::der_parser::oid::Oid;
use x509_parser::prelude::*;

use super::extensions::{KU_CERT_SIGN, usage_extensions};
use super::{fmt_duration, fmt_time, unix_to_system_time};
use crate::usages::KeyUsage;

/// How far after `now` a certificate's NotBefore may lie and the certificate still be accepted,
/// stored and served: 5 minutes.
///
/// A TLS peer refuses a certificate before its NotBefore, so a certificate that starts in the
/// future is of no use until then. A signer whose clock runs a little ahead of this host's (or
/// this host's a little behind) issues such a certificate in good faith: the allowance admits a
/// skew of up to 5 minutes, the skew Kubernetes itself plans for (its built-in signer backdates
/// NotBefore by 5 minutes, so a signer up to 10 minutes ahead still passes). A NotBefore further
/// ahead is refused as the peers would refuse it. [`Manager::current`](crate::Manager::current)
/// hides a certificate from the same point (after a wall-clock step backwards).
pub const NOT_BEFORE_ALLOWANCE: Duration = Duration::from_secs(300);

/// Signature algorithms every peer verifies (see the module docs).
const ACCEPTED_SIGNATURES: &[(&[u64], &str)] = &[
    (&[1, 2, 840, 113_549, 1, 1, 11], "sha256WithRSAEncryption"),
    (&[1, 2, 840, 113_549, 1, 1, 12], "sha384WithRSAEncryption"),
    (&[1, 2, 840, 113_549, 1, 1, 13], "sha512WithRSAEncryption"),
    (&[1, 2, 840, 113_549, 1, 1, 10], "RSASSA-PSS"),
    (&[1, 2, 840, 10_045, 4, 3, 2], "ecdsa-with-SHA256"),
    (&[1, 2, 840, 10_045, 4, 3, 3], "ecdsa-with-SHA384"),
    (&[1, 3, 101, 112], "Ed25519"),
];

/// Critical extensions every peer processes (webpki's list, which Go's and OpenSSL's contain).
const KNOWN_CRITICAL: &[&[u64]] = &[
    &[2, 5, 29, 15], // key usage
    &[2, 5, 29, 17], // subject alternative name
    &[2, 5, 29, 19], // basic constraints
    &[2, 5, 29, 30], // name constraints
    &[2, 5, 29, 31], // CRL distribution points
    &[2, 5, 29, 37], // extended key usage
];

/// Key usage bit names, RFC 5280 §4.2.1.3 order.
const KU_NAMES: [&str; 9] = [
    "digitalSignature",
    "contentCommitment",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
];

/// Checks `chain` (leaf first) as a TLS peer would, for a certificate requested with `usages`, at
/// `now` (see the module docs for the list). Returns the first fault found, described for a
/// person, naming the certificate ("the leaf", "chain certificate 1", …).
pub(crate) fn chain_fault(
    chain: &[CertificateDer<'_>],
    usages: &[KeyUsage],
    now: SystemTime,
) -> Result<(), String> {
    if chain.is_empty() {
        return Err("no certificate in chain".into());
    }
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("cannot parse {}: {e}", label(i)))?;
        if !rest.is_empty() {
            return Err(format!("trailing bytes after {}", label(i)));
        }
        parsed.push(cert);
    }
    let (ku_wanted, _) = usage_extensions(usages);
    for (i, cert) in parsed.iter().enumerate() {
        check_one(cert, i, ku_wanted, usages, now).map_err(|e| format!("{} {e}", label(i)))?;
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        let (child, parent) = (&pair[0], &pair[1]);
        if child.issuer().as_raw() != parent.subject().as_raw() {
            return Err(format!(
                "{} was not issued by {}: issuer {:?} is not the next certificate's subject {:?} (the chain must be in order, leaf first, each certificate followed by its issuer)",
                label(i),
                label(i + 1),
                child.issuer().to_string(),
                parent.subject().to_string()
            ));
        }
        child
            .verify_signature(Some(parent.public_key()))
            .map_err(|e| {
                format!(
                    "the signature of {} does not verify with the key of {}: {e}",
                    label(i),
                    label(i + 1)
                )
            })?;
    }
    let sans = match parsed[0].subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.clone(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("the leaf has a bad subject alternative name: {e}")),
    };
    for (i, ca) in parsed.iter().enumerate().skip(1) {
        let nc = ca
            .name_constraints()
            .map_err(|e| format!("{} has bad name constraints: {e}", label(i)))?;
        if let Some(nc) = nc {
            name_constraints_fault(&sans, nc.value)
                .map_err(|e| format!("the leaf's {e} of {}", label(i)))?;
        }
    }
    Ok(())
}

/// Checks the leaf's DNS and IP address SANs against a CA's name constraints (RFC 5280
/// §4.2.1.10, as Go's `crypto/x509` and webpki match them): a name of a type the permitted
/// subtrees constrain must fall in one of them, and no name may fall in an excluded subtree.
/// The error reads "<name> is outside the permitted subtrees" and continues with the CA.
fn name_constraints_fault(
    sans: &[GeneralName<'_>],
    nc: &NameConstraints<'_>,
) -> Result<(), String> {
    let none = Vec::new();
    let permitted = nc.permitted_subtrees.as_ref().unwrap_or(&none);
    let excluded = nc.excluded_subtrees.as_ref().unwrap_or(&none);
    for name in sans {
        let shown = match name {
            GeneralName::DNSName(d) => format!("DNS name {d:?}"),
            GeneralName::IPAddress(ip) => format!("IP address {}", fmt_ip(ip)),
            _ => continue,
        };
        if excluded
            .iter()
            .any(|t| in_subtree(name, &t.base) == Some(true))
        {
            return Err(format!(
                "{shown} is in an excluded subtree of the name constraints"
            ));
        }
        let same_type: Vec<bool> = permitted
            .iter()
            .filter_map(|t| in_subtree(name, &t.base))
            .collect();
        if !same_type.is_empty() && !same_type.contains(&true) {
            return Err(format!(
                "{shown} is outside the permitted subtrees of the name constraints"
            ));
        }
    }
    Ok(())
}

/// Whether `name` is inside the subtree `base`, or `None` when they are of different types.
fn in_subtree(name: &GeneralName<'_>, base: &GeneralName<'_>) -> Option<bool> {
    match (name, base) {
        (GeneralName::DNSName(d), GeneralName::DNSName(c)) => Some(dns_in_subtree(d, c)),
        (GeneralName::IPAddress(ip), GeneralName::IPAddress(c)) => Some(ip_in_subtree(ip, c)),
        _ => None,
    }
}

/// Go's `matchDomainConstraint`: `example.com` admits itself and its subdomains,
/// `.example.com` only its subdomains, the empty constraint everything; case-insensitive.
fn dns_in_subtree(name: &str, constraint: &str) -> bool {
    let (name, constraint) = (name.to_ascii_lowercase(), constraint.to_ascii_lowercase());
    let name = name.trim_end_matches('.');
    if constraint.is_empty() {
        return true;
    }
    if let Some(parent) = constraint.strip_prefix('.') {
        return name.len() > parent.len()
            && name.ends_with(parent)
            && name[..name.len() - parent.len()].ends_with('.');
    }
    name == constraint
        || (name.ends_with(&constraint) && name[..name.len() - constraint.len()].ends_with('.'))
}

/// An IP address SAN (4 or 16 bytes) against an address-and-mask constraint (8 or 32 bytes).
fn ip_in_subtree(ip: &[u8], constraint: &[u8]) -> bool {
    if constraint.len() != 2 * ip.len() {
        return false;
    }
    let (base, mask) = constraint.split_at(ip.len());
    ip.iter()
        .zip(base)
        .zip(mask)
        .all(|((a, b), m)| a & m == b & m)
}

fn fmt_ip(b: &[u8]) -> String {
    match b.len() {
        4 => <[u8; 4]>::try_from(b)
            .map(|a| std::net::IpAddr::from(a).to_string())
            .unwrap_or_default(),
        16 => <[u8; 16]>::try_from(b)
            .map(|a| std::net::IpAddr::from(a).to_string())
            .unwrap_or_default(),
        _ => format!("{b:02x?}"),
    }
}

fn label(i: usize) -> String {
    if i == 0 {
        "the leaf".into()
    } else {
        format!("chain certificate {i}")
    }
}

/// The checks on one certificate; `i` is its place in the chain (0 for the leaf). The error
/// reads after the certificate's label.
fn check_one(
    cert: &X509Certificate<'_>,
    i: usize,
    ku_wanted: u16,
    usages: &[KeyUsage],
    now: SystemTime,
) -> Result<(), String> {
    if cert.version() != X509Version::V3 {
        return Err(format!(
            "is an X.509 version {} certificate, not version 3",
            cert.version().0 + 1
        ));
    }
    let sig = &cert.signature_algorithm;
    if *sig != cert.tbs_certificate.signature {
        return Err(format!(
            "has signature algorithm {} outside and {} inside its signed part",
            sig.algorithm, cert.tbs_certificate.signature.algorithm
        ));
    }
    if !ACCEPTED_SIGNATURES
        .iter()
        .any(|(oid, _)| oid_is(&sig.algorithm, oid))
    {
        return Err(format!(
            "is signed with algorithm {}, which TLS peers do not accept (accepted: {})",
            sig.algorithm,
            ACCEPTED_SIGNATURES
                .iter()
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    cert.extensions_map()
        .map_err(|_| "has an extension twice".to_owned())?;
    for ext in cert.extensions() {
        if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
            return Err(format!("has a malformed extension {}: {error}", ext.oid));
        }
        if ext.critical && !KNOWN_CRITICAL.iter().any(|k| oid_is(&ext.oid, k)) {
            return Err(format!(
                "has critical extension {}, which TLS peers do not process and must refuse",
                ext.oid
            ));
        }
    }
    check_validity(cert, now)?;
    let bc = cert
        .basic_constraints()
        .map_err(|e| format!("has a bad basic constraints extension: {e}"))?
        .map(|b| b.value.clone());
    let ku = cert
        .key_usage()
        .map_err(|e| format!("has a bad key usage extension: {e}"))?
        .map(|k| k.value.flags);
    if i == 0 {
        if bc.as_ref().is_some_and(|b| b.ca) {
            return Err("is a CA certificate (basic constraints CA:TRUE), which TLS peers refuse as an end entity".into());
        }
        if let Some(flags) = ku {
            let missing = ku_wanted & !flags;
            if missing != 0 {
                return Err(format!(
                    "has a key usage extension without {} (requested usages: {})",
                    ku_names(missing),
                    usage_list(usages)
                ));
            }
        }
    } else {
        let Some(bc) = bc.filter(|b| b.ca) else {
            return Err(
                "is not a CA certificate (no basic constraints CA:TRUE), so it cannot issue the certificate before it"
                    .into(),
            );
        };
        if let Some(flags) = ku.filter(|f| f & KU_CERT_SIGN == 0) {
            return Err(format!(
                "has a key usage extension without keyCertSign ({}), so it cannot issue the certificate before it",
                ku_names(flags)
            ));
        }
        let below = i - 1;
        if let Some(len) = bc.path_len_constraint.filter(|l| (*l as usize) < below) {
            return Err(format!(
                "has pathLenConstraint {len} but {below} CA certificates below it"
            ));
        }
    }
    let eku = cert
        .extended_key_usage()
        .map_err(|e| format!("has a bad extended key usage extension: {e}"))?;
    if let Some(eku) = eku {
        let have = eku_oids(eku.value);
        if have.is_empty() {
            return Err("has an empty extended key usage extension".into());
        }
        for (u, oid) in usages
            .iter()
            .filter_map(|u| usage_extensions(&[*u]).1.first().map(|o| (u, *o)))
        {
            if !have.iter().any(|h| h.as_slice() == oid) {
                return Err(format!(
                    "has an extended key usage extension without \"{u}\" ({}) (it lists {})",
                    dotted(oid),
                    have.iter()
                        .map(|o| dotted(o))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    Ok(())
}

fn check_validity(cert: &X509Certificate<'_>, now: SystemTime) -> Result<(), String> {
    let validity = cert.validity();
    let not_before = unix_to_system_time(validity.not_before.timestamp());
    let not_after = unix_to_system_time(validity.not_after.timestamp());
    if not_before > not_after {
        return Err(format!(
            "has NotBefore {} after NotAfter {}",
            fmt_time(not_before),
            fmt_time(not_after)
        ));
    }
    if now > not_after {
        return Err(format!(
            "expired at {} ({} ago)",
            fmt_time(not_after),
            fmt_duration(now.duration_since(not_after).unwrap_or_default())
        ));
    }
    if let Ok(ahead) = not_before.duration_since(now)
        && ahead > NOT_BEFORE_ALLOWANCE
    {
        return Err(format!(
            "is not valid before {} ({} from now, more than the {} allowed for clock skew; is the signer's clock ahead?)",
            fmt_time(not_before),
            fmt_duration(ahead),
            fmt_duration(NOT_BEFORE_ALLOWANCE)
        ));
    }
    Ok(())
}

fn oid_is(oid: &Oid<'_>, arcs: &[u64]) -> bool {
    oid.iter().is_some_and(|it| it.eq(arcs.iter().copied()))
}

fn dotted(arcs: &[u64]) -> String {
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The OIDs an extended key usage extension lists (those with arcs beyond `u64` left out).
fn eku_oids(eku: &ExtendedKeyUsage<'_>) -> Vec<Vec<u64>> {
    let known: [(bool, &[u64]); 7] = [
        (eku.any, &[2, 5, 29, 37, 0]),
        (eku.server_auth, &[1, 3, 6, 1, 5, 5, 7, 3, 1]),
        (eku.client_auth, &[1, 3, 6, 1, 5, 5, 7, 3, 2]),
        (eku.code_signing, &[1, 3, 6, 1, 5, 5, 7, 3, 3]),
        (eku.email_protection, &[1, 3, 6, 1, 5, 5, 7, 3, 4]),
        (eku.time_stamping, &[1, 3, 6, 1, 5, 5, 7, 3, 8]),
        (eku.ocsp_signing, &[1, 3, 6, 1, 5, 5, 7, 3, 9]),
    ];
    known
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, oid)| oid.to_vec())
        .chain(
            eku.other
                .iter()
                .filter_map(|o| o.iter().map(Iterator::collect)),
        )
        .collect()
}

fn ku_names(bits: u16) -> String {
    KU_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn usage_list(usages: &[KeyUsage]) -> String {
    usages
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_constraints_match_whole_labels_as_go_does() {
        // Go's matchDomainConstraint: whole labels from the right, case-insensitive; a leading
        // period asks for at least one more label; the empty constraint matches everything.
        for (name, constraint, want) in [
            ("svc.example.com", "example.com", true),
            ("example.com", "example.com", true),
            ("EXAMPLE.com", "example.COM", true),
            ("badexample.com", "example.com", false),
            ("example.com", ".example.com", false),
            ("a.example.com", ".example.com", true),
            ("a.b.example.com", ".example.com", true),
            ("example.org", "example.com", false),
            ("anything", "", true),
        ] {
            assert_eq!(
                dns_in_subtree(name, constraint),
                want,
                "{name} in {constraint}"
            );
        }
    }

    #[test]
    fn ip_constraints_are_address_and_mask_of_the_same_family() {
        let v4 = [10, 1, 2, 3];
        assert!(ip_in_subtree(&v4, &[10, 0, 0, 0, 255, 0, 0, 0]));
        assert!(!ip_in_subtree(&v4, &[10, 0, 0, 0, 255, 255, 0, 0]));
        assert!(!ip_in_subtree(&v4, &[0; 32]), "an IPv6 constraint");
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert!(ip_in_subtree(&v6, &[0; 32]), "::/0");
    }
}
