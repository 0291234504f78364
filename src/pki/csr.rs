//! PKCS#10 certificate requests from a [`CsrTemplate`].
//!
//! The request is encoded here rather than by rcgen because rcgen's distinguished name holds one
//! value per attribute type, and Kubernetes client certificates need every organization (each
//! becomes a group). The key signs through rcgen, so any key rcgen can sign with works.

use yasna::Tag;
use yasna::models::ObjectIdentifier;

use super::PkiError;
use super::der::{has_sans, write_name, write_san_extension};
use super::key::{PrivateKey, pem_encode};
use crate::template::CsrTemplate;

const OID_EXTENSION_REQUEST: &[u64] = &[1, 2, 840, 113549, 1, 9, 14];

/// Builds a signed `CERTIFICATE REQUEST` PEM for `template` with `key`: the subject (all
/// organizations, organizational units, CN), and a SAN extension request when the template has
/// DNS names, IPs, emails or URIs. RSA keys sign with SHA-256/384/512 by size, as client-go.
///
/// # Errors
/// [`PkiError::InvalidKey`] when the key cannot sign (an unsupported curve), or
/// [`PkiError::Signing`] when signing itself fails.
pub fn build_csr_pem(template: &CsrTemplate, key: &PrivateKey) -> Result<String, PkiError> {
    let signer = key.signer()?;
    let spki = key.public_key_der();
    let info = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(0);
            write_name(w.next(), template);
            w.next().write_der(&spki);
            w.next().write_tagged_implicit(Tag::context(0), |w| {
                w.write_set_of(|w| {
                    if has_sans(template) {
                        w.next().write_sequence(|w| {
                            w.next()
                                .write_oid(&ObjectIdentifier::from_slice(OID_EXTENSION_REQUEST));
                            w.next().write_set_of(|w| {
                                w.next().write_sequence(|w| {
                                    write_san_extension(w.next(), template);
                                })
                            });
                        });
                    }
                })
            });
        })
    });
    let der = signer.sign_der(&info)?;
    Ok(pem_encode("CERTIFICATE REQUEST", &der))
}

/// The fields of a PKCS#10 request that Kubernetes looks at, parsed from untrusted input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCsr {
    /// The DER subject Name, for byte-exact copying and comparison.
    pub subject_der: Vec<u8>,
    /// Subject CN (empty when absent).
    pub common_name: String,
    /// Subject organizations.
    pub organizations: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// Email SANs.
    pub email_addresses: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// The DER `GeneralNames` of the SAN extension request, if any.
    pub san_der: Option<Vec<u8>>,
    /// The DER `SubjectPublicKeyInfo`.
    pub public_key_der: Vec<u8>,
}

/// Parses a `CERTIFICATE REQUEST` PEM and verifies its self-signature (the apiserver's create
/// validation).
///
/// # Errors
/// [`PkiError::InvalidCsr`] with the apiserver's wording where it has one: a PEM block of
/// another type ("PEM block type must be CERTIFICATE REQUEST"), DER that does not parse, or a
/// signature that does not verify.
pub fn parse_csr_pem(pem: &[u8]) -> Result<ParsedCsr, PkiError> {
    use rustls::pki_types::pem::{PemObject, SectionKind};
    let mut first = <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem);
    let (kind, der) = match first.next() {
        Some(Ok(item)) => item,
        Some(Err(e)) => {
            return Err(PkiError::InvalidCsr(format!("cannot read PEM: {e}")));
        }
        None => return Err(PkiError::InvalidCsr("PEM block not found".into())),
    };
    if kind != SectionKind::Csr {
        return Err(PkiError::InvalidCsr(
            "PEM block type must be CERTIFICATE REQUEST".into(),
        ));
    }
    parse_csr_der(&der)
}

/// [`parse_csr_pem`] for DER input.
///
/// # Errors
/// As [`parse_csr_pem`].
pub fn parse_csr_der(der: &[u8]) -> Result<ParsedCsr, PkiError> {
    use x509_parser::prelude::*;
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| PkiError::InvalidCsr(format!("cannot parse CSR: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::InvalidCsr("trailing bytes after CSR".into()));
    }
    csr.verify_signature()
        .map_err(|e| PkiError::InvalidCsr(format!("CSR signature does not verify: {e}")))?;
    let info = &csr.certification_request_info;
    let subject = &info.subject;
    let strings = |it: &mut dyn Iterator<Item = &AttributeTypeAndValue<'_>>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let mut parsed = ParsedCsr {
        subject_der: subject.as_raw().to_vec(),
        common_name: strings(&mut subject.iter_common_name())
            .into_iter()
            .next()
            .unwrap_or_default(),
        organizations: strings(&mut subject.iter_organization()),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        email_addresses: Vec::new(),
        uris: Vec::new(),
        san_der: None,
        public_key_der: info.subject_pki.raw.to_vec(),
    };
    for attr in info.iter_attributes() {
        let ParsedCriAttribute::ExtensionRequest(req) = attr.parsed_attribute() else {
            continue;
        };
        for ext in &req.extensions {
            if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
                parsed.san_der = Some(ext.value.to_vec());
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => parsed.dns_names.push((*d).to_owned()),
                        GeneralName::RFC822Name(e) => parsed.email_addresses.push((*e).to_owned()),
                        GeneralName::URI(u) => parsed.uris.push((*u).to_owned()),
                        GeneralName::IPAddress(b) => match super::ip_from_bytes(b) {
                            Some(ip) => parsed.ip_addresses.push(ip),
                            None => {
                                return Err(PkiError::InvalidCsr(format!(
                                    "IP SAN of {} bytes in CSR",
                                    b.len()
                                )));
                            }
                        },
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(parsed)
}
