//! [`PkiError`], the errors of parsing, checking and making keys and certificates.

/// Errors of parsing, checking and making keys, certificates and CSRs. At the crate boundary
/// it is [`Error::Pki`](crate::Error::Pki).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A new private key could not be made (client-go: "unable to generate a new private
    /// key").
    #[error("unable to generate a new private key: {0}")]
    KeyGeneration(String),

    /// Signing a CSR or a certificate with a key failed. The source is the signing library's
    /// error.
    #[error("cannot sign with the private key")]
    Signing(#[source] rcgen::Error),

    /// A new or supplied key is too weak for a CSR (client-go: "the new key is insecure").
    #[error("the new key is insecure: {0}")]
    InsecureKey(String),

    /// A private key could not be parsed or used.
    #[error("invalid private key: {0}")]
    InvalidKey(String),

    /// A certificate or chain could not be parsed.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),

    /// A certificate signing request (PKCS#10) could not be parsed, or its signature does not
    /// verify. The text is kube-apiserver's where it has one (`PEM block type must be
    /// CERTIFICATE REQUEST`).
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::check_table;

    fn variant(e: &PkiError) -> &'static str {
        match e {
            PkiError::KeyGeneration(_) => "KeyGeneration",
            PkiError::Signing(_) => "Signing",
            PkiError::InsecureKey(_) => "InsecureKey",
            PkiError::InvalidKey(_) => "InvalidKey",
            PkiError::InvalidCertificate(_) => "InvalidCertificate",
            PkiError::InvalidCsr(_) => "InvalidCsr",
            PkiError::KeyMismatch => "KeyMismatch",
            PkiError::IssuedCertificate { .. } => "IssuedCertificate",
        }
    }

    #[test]
    fn every_message_names_the_step_and_the_fault() {
        let rows = [
            (
                PkiError::KeyGeneration("unsupported key algorithm: RSA-2048".into()),
                "unable to generate a new private key: unsupported key algorithm: RSA-2048",
            ),
            (
                PkiError::Signing(rcgen::Error::RingUnspecified),
                "cannot sign with the private key",
            ),
            (
                PkiError::InsecureKey("RSA key size 1024 bits is below the minimum of 2048".into()),
                "the new key is insecure: RSA key size 1024 bits is below the minimum of 2048",
            ),
            (
                PkiError::InvalidKey("no private key PEM block found".into()),
                "invalid private key: no private key PEM block found",
            ),
            (
                PkiError::InvalidCertificate("trailing bytes after certificate".into()),
                "invalid certificate: trailing bytes after certificate",
            ),
            (
                PkiError::InvalidCsr("PEM block type must be CERTIFICATE REQUEST".into()),
                "invalid certificate signing request: PEM block type must be CERTIFICATE REQUEST",
            ),
            (
                PkiError::KeyMismatch,
                "private key does not match the certificate",
            ),
            (
                PkiError::IssuedCertificate {
                    reason: "it has expired".into(),
                },
                "issued certificate rejected: it has expired",
            ),
        ];
        check_table(&rows, variant, 8);
    }
}
