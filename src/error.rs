//! The crate's one public error type.
//!
//! Lower layers have their own types ([`StoreError`], [`CsrError`]) because their callers need
//! to tell cases apart (a corrupt file from a missing one, a denied CSR from a timeout); at the
//! crate boundary they are wrapped in [`Error`] and stay reachable through `source()` and the
//! predicates below. `Display` texts are lower-case, name the operation and the object, and show
//! only their own layer.

use crate::csr::{BoxError, CsrError};
use crate::pki::PkiError;
use crate::store::StoreError;

/// Errors from building, running and asking a certificate manager, and from certificate parsing.
///
/// Each variant says what failed at its own step; the cause, when there is one, is its
/// [`source`](std::error::Error::source) and is not repeated in the message, so print the chain
/// (each source after `: `) to show everything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration given to [`ConfigBuilder::build`](crate::ConfigBuilder::build) is
    /// inconsistent (no usages, a lifetime under 600 s, …), or a usages function gave nothing
    /// for the key an attempt made.
    #[error("invalid certificate manager configuration: {problem}")]
    InvalidConfig {
        /// The setting at fault, by the name of the builder method that sets it: `usages`,
        /// `usages_fn`, `requested_lifetime`, `template_poll_interval`, `max_sleep_slice`,
        /// `certificate_wait_timeout`, `thread_stack_size` or `signer_name`.
        setting: &'static str,
        /// What is wrong with it, naming it.
        problem: String,
    },

    /// The configured key generator failed (client-go: "unable to generate a new private key").
    /// The source is the generator's error.
    #[error("unable to generate a new private key")]
    KeyGeneration(#[source] BoxError),

    /// A key, certificate or CSR could not be parsed, checked or made; see [`PkiError`].
    #[error(transparent)]
    Pki(#[from] PkiError),

    /// A rotation was due but the template source has nothing to request.
    #[error("unable to create a csr, no template available")]
    NoTemplate,

    /// A rotation was asked for but the config has no CSR client factory.
    #[error("no CSR client factory configured, cannot request certificates")]
    NoClient,

    /// The CSR client factory failed. The source is the factory's error.
    #[error("cannot build a CSR client")]
    ClientFactory(#[source] BoxError),

    /// Talking to the CSR API failed; see [`CsrError`] for the cases.
    #[error(transparent)]
    Csr(#[from] CsrError),

    /// The store failed; see [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The manager was stopped before or during the operation.
    #[error("certificate manager stopped")]
    Stopped,

    /// A TLS configuration could not be built. The source is rustls' error, or the
    /// [`PkiError`] of a CA bundle that does not parse.
    #[error("cannot build TLS configuration: {part} refused")]
    Tls {
        /// What was refused: `CA bundle`, `protocol versions` or `client certificate verifier`.
        part: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::check_table;

    fn variant(e: &Error) -> &'static str {
        match e {
            Error::InvalidConfig { .. } => "InvalidConfig",
            Error::KeyGeneration(_) => "KeyGeneration",
            Error::Pki(_) => "Pki",
            Error::NoTemplate => "NoTemplate",
            Error::NoClient => "NoClient",
            Error::ClientFactory(_) => "ClientFactory",
            Error::Csr(_) => "Csr",
            Error::Store(_) => "Store",
            Error::Stopped => "Stopped",
            Error::Tls { .. } => "Tls",
        }
    }

    #[test]
    fn every_message_says_its_own_step_and_leaves_the_cause_to_source() {
        let rows = [
            (
                Error::InvalidConfig {
                    setting: "max_sleep_slice",
                    problem: "max sleep slice must not be zero".into(),
                },
                "invalid certificate manager configuration: max sleep slice must not be zero",
            ),
            (
                Error::KeyGeneration("the HSM is offline".into()),
                "unable to generate a new private key",
            ),
            (
                Error::Pki(PkiError::KeyMismatch),
                "private key does not match the certificate",
            ),
            (
                Error::NoTemplate,
                "unable to create a csr, no template available",
            ),
            (
                Error::NoClient,
                "no CSR client factory configured, cannot request certificates",
            ),
            (
                Error::ClientFactory("no valid client certificate".into()),
                "cannot build a CSR client",
            ),
            (
                Error::Csr(CsrError::Cancelled {
                    name: "csr-1".into(),
                }),
                "waiting for certificate signing request \"csr-1\" was cancelled",
            ),
            (
                Error::Store(StoreError::Io {
                    op: "write",
                    path: "/var/lib/certs/a.pem".into(),
                    source: std::io::Error::other("disk full"),
                }),
                "cannot write /var/lib/certs/a.pem",
            ),
            (Error::Stopped, "certificate manager stopped"),
            (
                Error::Tls {
                    part: "CA bundle",
                    source: Box::new(PkiError::InvalidCertificate("PEM block not found".into())),
                },
                "cannot build TLS configuration: CA bundle refused",
            ),
        ];
        check_table(&rows, variant, 10);
        // The wrapped layers' errors are transparent: their cause is still one step away.
        let store = &rows[7].0;
        assert_eq!(
            std::error::Error::source(store)
                .map(ToString::to_string)
                .as_deref(),
            Some("disk full")
        );
    }
}
