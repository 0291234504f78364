//! Certificates and keys: parsing PEM chains and keys, the [`Certificate`] the manager hands
//! out, key ↔ certificate matching, CSR building, and the checks an issued certificate must pass
//! before it is stored or served.
//!
//! Everything here is pure: no clock (callers pass `now`), no I/O. Parsing is written for
//! untrusted input: a malformed PEM block, a chain without a certificate, or a key that does not
//! match the leaf is a [`PkiError`], never a panic.
//!
//! One rustls crypto provider (`ring`) is used throughout and passed explicitly to every rustls
//! builder ([`crypto_provider`]), so a second provider elsewhere in a program's dependency graph
//! cannot make rustls panic for want of a process default.

// The certificate authority signs for the embedded server and for tests; a program that only
// requests certificates does not build it.
#[cfg(any(test, feature = "server", feature = "test-util"))]
mod ca;
mod csr;
pub(crate) mod der;
mod error;
mod extensions;
mod key;
mod template;
mod verify;
#[cfg(any(test, feature = "server", feature = "test-util"))]
mod x509;

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::*;

#[cfg(any(test, feature = "server", feature = "test-util"))]
pub use ca::CertificateAuthority;
#[cfg(feature = "server")]
pub(crate) use ca::Flaw;
pub use csr::{ParsedCsr, build_csr_pem, parse_csr_der, parse_csr_pem};
pub(crate) use key::pem_encode;
pub use key::{KeyAlgorithm, PrivateKey};
pub use template::cert_satisfies_template;
pub use verify::NOT_BEFORE_ALLOWANCE;

use crate::template::CsrTemplate;
use crate::usages::KeyUsage;
pub use error::PkiError;

/// The crate's rustls crypto provider (`ring`), shared by every rustls builder certrotate makes.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The parsed fields of a certificate that rotation policy needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity (X.509 NotBefore), second resolution.
    pub not_before: SystemTime,
    /// End of validity (X.509 NotAfter), second resolution.
    pub not_after: SystemTime,
    /// Subject common name, empty when absent.
    pub common_name: String,
    /// Subject organizations, in certificate order.
    pub organizations: Vec<String>,
    /// Subject organizational units.
    pub organizational_units: Vec<String>,
    /// DNS name SANs.
    pub dns_names: Vec<String>,
    /// IP address SANs.
    pub ip_addresses: Vec<IpAddr>,
    /// Email SANs.
    pub email_addresses: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// Serial number, big-endian bytes without leading zeros.
    pub serial: Vec<u8>,
    /// The subjectPublicKey bit string content (see [`PrivateKey::public_key_bits`]).
    pub public_key: Vec<u8>,
    /// The DER subject Name, for exact comparisons.
    pub subject_der: Vec<u8>,
    /// Whether the certificate may authenticate a TLS client: it has no ExtKeyUsage extension,
    /// or that extension lists `client auth` or `any`.
    pub allows_client_auth: bool,
}

impl CertInfo {
    /// Parses one DER certificate.
    ///
    /// # Errors
    /// [`PkiError::InvalidCertificate`] when the bytes are not an X.509 certificate or an extension
    /// this code reads (SAN) is malformed.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, PkiError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| PkiError::InvalidCertificate(format!("cannot parse certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(PkiError::InvalidCertificate(
                "trailing bytes after certificate".into(),
            ));
        }
        let validity = cert.validity();
        let subject = cert.subject();
        let strings = |it: &mut dyn Iterator<Item = &AttributeTypeAndValue<'_>>| {
            it.filter_map(|a| a.as_str().ok().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        let mut info = CertInfo {
            not_before: unix_to_system_time(validity.not_before.timestamp()),
            not_after: unix_to_system_time(validity.not_after.timestamp()),
            common_name: strings(&mut subject.iter_common_name())
                .into_iter()
                .next()
                .unwrap_or_default(),
            organizations: strings(&mut subject.iter_organization()),
            organizational_units: strings(&mut subject.iter_organizational_unit()),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            email_addresses: Vec::new(),
            uris: Vec::new(),
            serial: strip_zeros(cert.raw_serial()).to_vec(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            subject_der: subject.as_raw().to_vec(),
            allows_client_auth: true,
        };
        let eku = cert
            .extended_key_usage()
            .map_err(|e| PkiError::InvalidCertificate(format!("bad ExtKeyUsage extension: {e}")))?;
        if let Some(eku) = eku {
            info.allows_client_auth = eku.value.any || eku.value.client_auth;
        }
        let san = cert
            .subject_alternative_name()
            .map_err(|e| PkiError::InvalidCertificate(format!("bad SAN extension: {e}")))?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => info.dns_names.push((*d).to_owned()),
                    GeneralName::RFC822Name(e) => info.email_addresses.push((*e).to_owned()),
                    GeneralName::URI(u) => info.uris.push((*u).to_owned()),
                    GeneralName::IPAddress(b) => match ip_from_bytes(b) {
                        Some(ip) => info.ip_addresses.push(ip),
                        None => {
                            return Err(PkiError::InvalidCertificate(format!(
                                "IP SAN of {} bytes",
                                b.len()
                            )));
                        }
                    },
                    _ => {}
                }
            }
        }
        Ok(info)
    }

    /// The serial number as lower-case hex with `:` between bytes, as OpenSSL prints it.
    pub fn serial_hex(&self) -> String {
        hex_colon(&self.serial)
    }

    /// NotAfter − NotBefore (zero when inverted).
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }
}

/// A certificate chain with its private key: what a store holds and the manager serves.
///
/// Invariant: the chain has at least one certificate, `info` describes `chain[0]`, and `key`
/// matches `chain[0]`'s public key. `certified_key`, once made, is `Some` whenever rustls can
/// sign with the key (it cannot with RSA below 2048 bits, which still load for compatibility
/// with old pairs).
#[derive(Clone)]
pub struct Certificate {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKey,
    info: CertInfo,
    cert_pem: String,
    /// Made at the first [`Certificate::certified_key`] (loading the key into rustls checks it
    /// with a scalar multiplication: not worth doing for a pair that never serves TLS, such as
    /// the one a store returns after a write), shared by clones made after that.
    certified_key: OnceLock<Option<Arc<CertifiedKey>>>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("common_name", &self.info.common_name)
            .field("serial", &self.serial_hex())
            .field("not_before", &fmt_time(self.info.not_before))
            .field("not_after", &fmt_time(self.info.not_after))
            .field("chain_len", &self.chain.len())
            .field("key", &self.key)
            .finish()
    }
}

impl PartialEq for Certificate {
    /// Equal when the DER chains are equal (as client-go's tests compare certificates).
    fn eq(&self, other: &Self) -> bool {
        self.chain == other.chain
    }
}

impl Certificate {
    /// Builds a certificate from a PEM chain (leaf first; non-certificate blocks are skipped) and
    /// a PEM key (the first key block; any label). Both may be the same combined document, with
    /// the blocks in either order, as in `kubelet-client-current.pem`.
    ///
    /// # Errors
    /// - [`PkiError::InvalidCertificate`]: no `CERTIFICATE` block, or one does not parse.
    /// - [`PkiError::InvalidKey`]: no key block, or it is none of PKCS#8, PKCS#1, SEC1.
    /// - [`PkiError::KeyMismatch`]: the key is not the leaf's.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Certificate, PkiError> {
        let chain = parse_chain_pem(cert_pem)?;
        let key = PrivateKey::from_pem(key_pem)?;
        Certificate::from_parts(chain, key)
    }

    /// [`Certificate::from_pem`] for a combined document holding the chain and the key.
    ///
    /// # Errors
    /// As [`Certificate::from_pem`].
    pub fn from_pair_pem(pem: &[u8]) -> Result<Certificate, PkiError> {
        Certificate::from_pem(pem, pem)
    }

    /// Builds a certificate from a parsed chain (leaf first) and its key.
    ///
    /// # Errors
    /// [`PkiError::InvalidCertificate`] for an empty chain or an unparsable leaf;
    /// [`PkiError::KeyMismatch`] when the key is not the leaf's.
    pub fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKey,
    ) -> Result<Certificate, PkiError> {
        let leaf = chain
            .first()
            .ok_or_else(|| PkiError::InvalidCertificate("no certificate in chain".into()))?;
        let info = CertInfo::from_der(leaf)?;
        if info.public_key != key.public_key_bits() {
            return Err(PkiError::KeyMismatch);
        }
        for (i, extra) in chain.iter().enumerate().skip(1) {
            X509Certificate::from_der(extra).map_err(|e| {
                PkiError::InvalidCertificate(format!("cannot parse certificate {i} of chain: {e}"))
            })?;
        }
        let cert_pem = chain
            .iter()
            .map(|c| pem_encode("CERTIFICATE", c))
            .collect::<String>();
        Ok(Certificate {
            chain,
            key,
            info,
            cert_pem,
            certified_key: OnceLock::new(),
        })
    }

    /// The chain, leaf first, as DER.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key. Secret: never log it.
    pub fn private_key(&self) -> &PrivateKey {
        &self.key
    }

    /// The chain as PEM `CERTIFICATE` blocks, leaf first.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The key as a PKCS#8 `PRIVATE KEY` PEM block. Secret: never log it.
    pub fn key_pem(&self) -> String {
        self.key.to_pem()
    }

    /// The parsed leaf.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// Leaf NotBefore.
    pub fn not_before(&self) -> SystemTime {
        self.info.not_before
    }

    /// Leaf NotAfter.
    pub fn not_after(&self) -> SystemTime {
        self.info.not_after
    }

    /// Leaf subject CN (empty when absent).
    pub fn common_name(&self) -> &str {
        &self.info.common_name
    }

    /// Leaf subject organizations.
    pub fn organizations(&self) -> &[String] {
        &self.info.organizations
    }

    /// Leaf DNS SANs.
    pub fn dns_names(&self) -> &[String] {
        &self.info.dns_names
    }

    /// Leaf IP SANs.
    pub fn ip_addresses(&self) -> &[IpAddr] {
        &self.info.ip_addresses
    }

    /// Leaf serial number as colon-separated hex.
    pub fn serial_hex(&self) -> String {
        self.info.serial_hex()
    }

    /// True when `now` is past NotAfter (a certificate is valid through its NotAfter second).
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        now > self.info.not_after
    }

    /// True when NotBefore is more than [`NOT_BEFORE_ALLOWANCE`] after `now`: too early to
    /// serve or use the certificate (a peer whose clock agrees with `now` refuses it).
    pub fn is_not_yet_valid_at(&self, now: SystemTime) -> bool {
        self.info
            .not_before
            .duration_since(now)
            .is_ok_and(|ahead| ahead > NOT_BEFORE_ALLOWANCE)
    }

    /// The earliest time the certificate is served: NotBefore − [`NOT_BEFORE_ALLOWANCE`].
    pub fn usable_from(&self) -> SystemTime {
        self.info
            .not_before
            .checked_sub(NOT_BEFORE_ALLOWANCE)
            .unwrap_or(self.info.not_before)
    }

    /// The rustls signing form of this pair, built at the first call and kept. `None` when
    /// rustls cannot sign with the key (RSA below 2048 bits).
    pub fn certified_key(&self) -> Option<&Arc<CertifiedKey>> {
        self.certified_key
            .get_or_init(|| {
                let der =
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.pkcs8_der().to_vec()));
                CertifiedKey::from_der(self.chain.clone(), der, &crypto_provider())
                    .ok()
                    .map(Arc::new)
            })
            .as_ref()
    }
}

/// Parses every `CERTIFICATE` block of a PEM document, in order; other blocks (keys) are skipped.
///
/// # Errors
/// [`PkiError::InvalidCertificate`] when the PEM is malformed, holds no certificate, or a block is
/// not an X.509 certificate.
pub fn parse_chain_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let mut chain = Vec::new();
    for item in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem) {
        let (kind, der) =
            item.map_err(|e| PkiError::InvalidCertificate(format!("cannot read PEM: {e}")))?;
        if kind == SectionKind::Certificate {
            chain.push(CertificateDer::from(der));
        }
    }
    if chain.is_empty() {
        return Err(PkiError::InvalidCertificate(
            "no CERTIFICATE PEM block found".into(),
        ));
    }
    Ok(chain)
}

/// Checks a chain the CSR API issued for `key` before it may replace anything: it parses, its
/// leaf is for `key`, it passes [`verify_chain`] for `usages` at `now` (in order and linked by
/// signatures, not a CA, the requested usages allowed, valid at `now` with NotBefore at most
/// [`NOT_BEFORE_ALLOWANCE`] ahead), and it satisfies `template` (when given). This is stricter
/// than client-go, which stores whatever comes back: a chain that a TLS peer would refuse is
/// refused here, so it is never stored, served or used to authenticate.
///
/// # Errors
/// [`PkiError::IssuedCertificate`] naming the first check that failed.
pub fn verify_issued(
    chain_pem: &[u8],
    key: &PrivateKey,
    template: Option<&CsrTemplate>,
    usages: &[KeyUsage],
    now: SystemTime,
) -> Result<Certificate, PkiError> {
    let rejected = |reason: String| PkiError::IssuedCertificate { reason };
    let chain = parse_chain_pem(chain_pem).map_err(|e| rejected(e.to_string()))?;
    let cert = Certificate::from_parts(chain, key.clone()).map_err(|e| match e {
        PkiError::KeyMismatch => {
            rejected("it is for a different key than the one requested".into())
        }
        other => rejected(other.to_string()),
    })?;
    verify::chain_fault(cert.chain(), usages, now).map_err(rejected)?;
    if let Some(missing) = template.and_then(|t| template_gap(t, &cert)) {
        return Err(rejected(format!(
            "it does not satisfy the template: {missing}"
        )));
    }
    Ok(cert)
}

/// Checks a certificate chain (leaf first) the way a TLS peer that trusts the last
/// certificate's issuer would, for a certificate meant for `usages`, at `now`:
///
/// - each certificate: X.509 v3; a signature algorithm every peer accepts (RSA PKCS#1 v1.5 or
///   PSS with SHA-256/384/512, ECDSA with SHA-256/384, Ed25519; not SHA-1), the same outside and
///   inside the signed part; no duplicate, malformed or unknown critical extension; NotBefore ≤
///   NotAfter, not expired, NotBefore at most [`NOT_BEFORE_ALLOWANCE`] after `now`;
/// - the leaf: not a CA; a key usage extension, when present, allows every requested key usage
///   bit (`digital signature`, `key encipherment`, …);
/// - every certificate: an extended key usage extension, when present, is not empty and lists
///   every requested extended usage (`server auth`, `client auth`, …). An absent extension
///   allows all (RFC 5280, as Go, rustls and OpenSSL read it); `anyExtendedKeyUsage` does not
///   stand in for a named one (rustls and OpenSSL refuse that, although Go accepts it);
/// - every certificate after the leaf: a CA (basic constraints CA:TRUE; key usage, when present,
///   with keyCertSign; a pathLenConstraint that admits the CAs below it);
/// - every certificate after the leaf with name constraints: the leaf's DNS and IP address
///   SANs are inside its permitted subtrees (of their type, when it has any) and outside its
///   excluded ones;
/// - each link: the certificate's issuer Name equals the next certificate's subject Name byte
///   for byte, and the next certificate's key verifies its signature. The chain must therefore
///   be in order, as TLS 1.2 requires of the list a peer is sent.
///
/// The last certificate's own issuer is not checked: the trust anchors are the peer's.
///
/// # Errors
/// [`PkiError::InvalidCertificate`] naming the certificate and the first check it fails.
pub fn verify_chain(
    chain: &[CertificateDer<'_>],
    usages: &[KeyUsage],
    now: SystemTime,
) -> Result<(), PkiError> {
    verify::chain_fault(chain, usages, now).map_err(PkiError::InvalidCertificate)
}

/// Describes the first way `cert` fails `template`, or `None` when it satisfies it.
pub(crate) fn template_gap(t: &CsrTemplate, cert: &Certificate) -> Option<String> {
    if t.satisfied_by(cert) {
        return None;
    }
    if cert.common_name() != t.common_name {
        return Some(format!(
            "common name {:?}, want {:?}",
            cert.common_name(),
            t.common_name
        ));
    }
    if let Some(o) = t
        .organizations
        .iter()
        .find(|o| !cert.organizations().contains(o))
    {
        return Some(format!("missing organization {o:?}"));
    }
    if let Some(d) = t.dns_names.iter().find(|d| !cert.dns_names().contains(d)) {
        return Some(format!("missing DNS name {d:?}"));
    }
    let ip = t.ip_addresses.iter().find(|ip| {
        !cert
            .ip_addresses()
            .iter()
            .any(|have| have.to_canonical() == ip.to_canonical())
    });
    Some(match ip {
        Some(ip) => format!("missing IP address {ip}"),
        None => "subject or SANs differ".into(),
    })
}

pub(crate) fn unix_to_system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[start.min(b.len())..]
}

fn hex_colon(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Formats a time as RFC 3339 UTC with second resolution (`2026-11-30T07:36:00Z`); a time
/// outside the years -9999 to 9999 as seconds from the epoch (`-400000000000s from
/// 1970-01-01T00:00:00Z`).
pub fn fmt_time(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    match ::time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => format!("{secs}s from 1970-01-01T00:00:00Z"),
    }
}

/// Formats a duration for people: `3h12m`, `45s`, `2d4h`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        if d.subsec_millis() > 0 && s < 10 {
            return format!("{:.1}s", d.as_secs_f64());
        }
        return format!("{s}s");
    }
    let (days, h, m, sec) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60);
    match (days, h) {
        (0, 0) => format!("{m}m{sec}s"),
        (0, _) => format!("{h}h{m}m"),
        _ => format!("{days}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pair read from PEM has no rustls signing key until one is asked for; the first call
    /// makes it, later calls and clones made after it share it.
    #[test]
    fn the_rustls_signing_key_is_made_on_demand_and_shared() {
        let ca = CertificateAuthority::for_tests("ca").unwrap();
        let now = SystemTime::now();
        let issued = ca
            .issue(
                &crate::template::CsrTemplate::new("node"),
                &PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap(),
                &[
                    crate::usages::KeyUsage::DigitalSignature,
                    crate::usages::KeyUsage::ClientAuth,
                ],
                now,
                now + std::time::Duration::from_secs(3600),
            )
            .unwrap();
        let cert = Certificate::from_pem(issued.cert_pem().as_bytes(), issued.key_pem().as_bytes())
            .unwrap();
        assert!(cert.certified_key.get().is_none(), "made when built");
        let first = cert.certified_key().expect("a P-256 key signs").clone();
        assert!(Arc::ptr_eq(cert.certified_key().unwrap(), &first));
        assert!(Arc::ptr_eq(cert.clone().certified_key().unwrap(), &first));
    }

    #[test]
    fn time_formatting() {
        assert_eq!(fmt_time(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            fmt_time(UNIX_EPOCH + Duration::from_secs(1_796_024_160)),
            "2026-11-30T07:36:00Z"
        );
        assert_eq!(
            fmt_time(UNIX_EPOCH - Duration::from_secs(86_400)),
            "1969-12-31T00:00:00Z"
        );
        assert_eq!(
            fmt_time(UNIX_EPOCH + Duration::from_secs(253_402_300_799)),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            fmt_time(UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
            "253402300800s from 1970-01-01T00:00:00Z"
        );
        assert_eq!(fmt_duration(Duration::from_secs(11_520)), "3h12m");
        assert_eq!(fmt_duration(Duration::from_secs(45)), "45s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(187_200)), "2d4h");
        assert_eq!(fmt_duration(Duration::from_secs(61)), "1m1s");
    }

    #[test]
    fn serial_hex_is_colon_separated() {
        assert_eq!(hex_colon(&[0x01, 0xab]), "01:ab");
        assert_eq!(strip_zeros(&[0, 0, 5]), &[5]);
        assert_eq!(strip_zeros(&[0]), &[0]);
    }
}
