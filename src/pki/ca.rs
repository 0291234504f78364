//! A small certificate authority: a self-signed CA that issues certificates from CSRs or
//! templates. It backs the embedded CSR API server's signer and the test helpers; it is not a
//! general-purpose CA (no CRLs, no OCSP, no name constraints).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngExt;

use super::PkiError;
use super::der::{general_names_der, has_sans, name_der};
use super::extensions::{KU_CERT_SIGN, usage_extensions};
use super::x509::{CertSpec, build_certificate, truncate_to_second};
use super::{CertInfo, Certificate, ParsedCsr, PrivateKey, pem_encode};
use crate::template::CsrTemplate;
use crate::usages::KeyUsage;

/// A self-signed certificate authority that signs leaf certificates.
///
/// Invariant: `cert` is `cert_der` parsed, and `key` is its key.
#[derive(Clone, Debug)]
pub struct CertificateAuthority {
    key: PrivateKey,
    cert_der: Vec<u8>,
    cert: CertInfo,
    key_id: Vec<u8>,
}

impl CertificateAuthority {
    /// A new CA with an ECDSA P-256 key and subject CN `common_name`, valid from `not_before`
    /// to `not_after`.
    ///
    /// # Errors
    /// [`PkiError::KeyGeneration`] when key generation fails, [`PkiError::Signing`] when
    /// signing does.
    pub fn new(
        common_name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<CertificateAuthority, PkiError> {
        let key = PrivateKey::generate(super::KeyAlgorithm::EcdsaP256)?;
        let subject = name_der(&CsrTemplate::new(common_name));
        let spki = key.public_key_der();
        let key_id = key_identifier(key.public_key_bits());
        let serial = random_serial();
        let spec = CertSpec {
            serial: &serial,
            issuer_der: &subject,
            subject_der: &subject,
            spki_der: &spki,
            not_before: truncate_to_second(not_before),
            not_after: truncate_to_second(not_after),
            is_ca: true,
            key_usage: KU_CERT_SIGN | 1, // keyCertSign | digitalSignature
            ext_key_usages: Vec::new(),
            san_der: None,
            subject_key_id: Some(&key_id),
            authority_key_id: None,
        };
        let cert_der = build_certificate(&spec, &key.signer()?)?;
        let cert = CertInfo::from_der(&cert_der)?;
        Ok(CertificateAuthority {
            key,
            cert_der,
            cert,
            key_id,
        })
    }

    /// A CA valid from 2000-01-01 to 2100-01-01, so that any fake clock a test picks is inside
    /// its validity.
    ///
    /// # Errors
    /// As [`CertificateAuthority::new`].
    pub fn for_tests(common_name: &str) -> Result<CertificateAuthority, PkiError> {
        CertificateAuthority::new(
            common_name,
            UNIX_EPOCH + Duration::from_secs(946_684_800),
            UNIX_EPOCH + Duration::from_secs(4_102_444_800),
        )
    }

    /// Loads a CA from its certificate and key PEM.
    ///
    /// # Errors
    /// As [`Certificate::from_pem`].
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertificateAuthority, PkiError> {
        let pair = Certificate::from_pem(cert_pem, key_pem)?;
        let cert_der = pair.chain()[0].to_vec();
        Ok(CertificateAuthority {
            key_id: key_identifier(pair.private_key().public_key_bits()),
            key: pair.private_key().clone(),
            cert: pair.info().clone(),
            cert_der,
        })
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der)
    }

    /// The CA certificate as DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA key as PKCS#8 PEM. Secret.
    pub fn key_pem(&self) -> String {
        self.key.to_pem()
    }

    /// The CA certificate's parsed fields (NotAfter bounds what it may issue).
    pub fn info(&self) -> &CertInfo {
        &self.cert
    }

    /// Issues a leaf for a parsed CSR: subject and SANs copied byte for byte, usages mapped to
    /// KeyUsage/ExtKeyUsage, not a CA, a 128-bit random serial. Returns one PEM block.
    ///
    /// # Errors
    /// [`PkiError::Signing`] when signing fails.
    pub fn sign_csr(
        &self,
        csr: &ParsedCsr,
        usages: &[KeyUsage],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<String, PkiError> {
        self.sign_csr_with_flaw(csr, usages, not_before, not_after, Flaw::None)
    }

    /// [`sign_csr`](CertificateAuthority::sign_csr) with a deliberate flaw, for fault injection.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn sign_csr_with_flaw(
        &self,
        csr: &ParsedCsr,
        usages: &[KeyUsage],
        not_before: SystemTime,
        not_after: SystemTime,
        flaw: Flaw,
    ) -> Result<String, PkiError> {
        self.issue_raw(
            &csr.subject_der,
            &csr.public_key_der,
            csr.san_der.as_deref(),
            usages,
            not_before,
            not_after,
            flaw,
        )
    }

    /// Issues a leaf for `key` with the subject and SANs of `template` and returns it with the
    /// key as a [`Certificate`] (chain: the leaf only).
    ///
    /// # Errors
    /// [`PkiError::Signing`] when signing fails.
    pub fn issue(
        &self,
        template: &CsrTemplate,
        key: &PrivateKey,
        usages: &[KeyUsage],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Certificate, PkiError> {
        let pem = self.issue_pem(template, key, usages, not_before, not_after)?;
        Certificate::from_pem(pem.as_bytes(), key.to_pem().as_bytes())
    }

    /// As [`issue`](CertificateAuthority::issue) but returns the leaf PEM only.
    ///
    /// # Errors
    /// [`PkiError::Signing`] when signing fails.
    pub fn issue_pem(
        &self,
        template: &CsrTemplate,
        key: &PrivateKey,
        usages: &[KeyUsage],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<String, PkiError> {
        let san = has_sans(template).then(|| general_names_der(template));
        self.issue_raw(
            &name_der(template),
            &key.public_key_der(),
            san.as_deref(),
            usages,
            not_before,
            not_after,
            Flaw::None,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn issue_raw(
        &self,
        subject_der: &[u8],
        spki_der: &[u8],
        san_der: Option<&[u8]>,
        usages: &[KeyUsage],
        not_before: SystemTime,
        not_after: SystemTime,
        flaw: Flaw,
    ) -> Result<String, PkiError> {
        let (key_usage, ext_key_usages) = match flaw {
            // cRLSign and codeSigning: nothing a TLS certificate is requested with.
            Flaw::UnrequestedUsages => (1 << 6, vec![&[1u64, 3, 6, 1, 5, 5, 7, 3, 3][..]]),
            _ => usage_extensions(usages),
        };
        let serial = random_serial();
        let spec = CertSpec {
            serial: &serial,
            issuer_der: &self.cert.subject_der,
            subject_der,
            spki_der,
            not_before: truncate_to_second(not_before),
            not_after: truncate_to_second(not_after),
            is_ca: flaw == Flaw::CaLeaf,
            key_usage,
            ext_key_usages,
            san_der,
            subject_key_id: None,
            authority_key_id: Some(&self.key_id),
        };
        let der = build_certificate(&spec, &self.key.signer()?)?;
        Ok(pem_encode("CERTIFICATE", &der))
    }
}

/// A deliberate flaw in an issued leaf (fault injection in the embedded server's signer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) enum Flaw {
    /// None: the leaf as requested.
    None,
    /// Basic constraints CA:TRUE.
    CaLeaf,
    /// Key usage cRLSign and extended key usage codeSigning, whatever was requested.
    UnrequestedUsages,
}

/// 128 random bits with the top bit clear (a positive INTEGER of at most 16 bytes).
fn random_serial() -> [u8; 16] {
    let mut serial: [u8; 16] = rand::rng().random();
    serial[0] &= 0x7f;
    serial[0] |= 0x01 << 6; // never shorter than 16 bytes
    serial
}

/// RFC 5280 method 1 key identifier: SHA-1 of the subjectPublicKey bits.
fn key_identifier(public_key: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, public_key)
        .as_ref()
        .to_vec()
}
