//! The crate's one public error type.
//!
//! Lower layers have their own types ([`StoreError`], [`CsrError`]) because their callers need
//! to tell cases apart (a corrupt file from a missing one, a denied CSR from a timeout); at the
//! crate boundary they are wrapped in [`Error`] and stay reachable through `source()` and the
//! predicates below. `Display` texts are lower-case, name the operation and the object, and show
//! only their own layer.

use crate::csr::CsrError;
use crate::pki::PkiError;
use crate::store::StoreError;

/// Errors from building, running and asking a certificate manager, and from certificate parsing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration given to [`ConfigBuilder::build`](crate::ConfigBuilder::build) is
    /// inconsistent (no usages, a lifetime under 600 s, …).
    #[error("invalid certificate manager configuration: {0}")]
    InvalidConfig(String),

    /// A new private key could not be made (client-go: "unable to generate a new private key").
    #[error("unable to generate a new private key: {0}")]
    KeyGeneration(String),

    /// A key, certificate or CSR could not be parsed, checked or made; see [`PkiError`].
    #[error(transparent)]
    Pki(#[from] PkiError),

    /// A rotation was due but the template source has nothing to request.
    #[error("unable to create a csr, no template available")]
    NoTemplate,

    /// A rotation was asked for but the config has no CSR client factory.
    #[error("no CSR client factory configured, cannot request certificates")]
    NoClient,

    /// The CSR client factory failed.
    #[error("cannot build a CSR client: {message}")]
    ClientFactory {
        /// What the factory reported.
        message: String,
        /// The factory's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// Talking to the CSR API failed; see [`CsrError`] for the cases.
    #[error(transparent)]
    Csr(#[from] CsrError),

    /// The store failed; see [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The manager was stopped before or during the operation.
    #[error("certificate manager stopped")]
    Stopped,

    /// A TLS configuration could not be built (bad CA bundle, no usable protocol versions).
    #[error("cannot build TLS configuration: {0}")]
    Tls(String),
}

impl Error {
    /// True when the CSR was denied or failed by the signer (retrying the same request is
    /// pointless; a new one with a new key may still succeed).
    pub fn is_denied(&self) -> bool {
        matches!(
            self,
            Error::Csr(CsrError::Denied { .. } | CsrError::Failed { .. })
        )
    }

    /// True for errors that may go away on retry: transport failures, timeouts, 5xx and 429
    /// answers, cancelled waits.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Csr(e) => e.is_transient(),
            Error::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}
