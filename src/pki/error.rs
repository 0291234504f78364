//! [`PkiError`], the errors of parsing, checking and making keys and certificates.

/// Errors of parsing, checking and making keys, certificates and CSRs. At the crate boundary
/// it is [`Error::Pki`](crate::Error::Pki).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A new private key could not be made, or signing with one failed (client-go: "unable to
    /// generate a new private key").
    #[error("unable to generate a new private key: {0}")]
    KeyGeneration(String),

    /// A new or supplied key is too weak for a CSR (client-go: "the new key is insecure").
    #[error("the new key is insecure: {0}")]
    InsecureKey(String),

    /// A private key could not be parsed or used.
    #[error("invalid private key: {0}")]
    InvalidKey(String),

    /// A certificate, chain or CSR could not be parsed.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),

    /// The private key is not the one the certificate was issued for.
    #[error("private key does not match the certificate")]
    KeyMismatch,

    /// The CSR API returned a certificate that fails verification, so it was not used.
    #[error("issued certificate rejected: {reason}")]
    IssuedCertificate {
        /// Which check failed.
        reason: String,
    },
}
