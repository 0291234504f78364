//! Where certificate/key pairs live between restarts.
//!
//! [`Store`] is the seam between the manager and persistence. [`FileStore`] keeps it on disk in
//! the kubelet's layout; [`MemoryStore`] keeps the pair in memory (tests, or programs that persist
//! elsewhere). A store validates what it is given (the chain parses, the key matches the leaf)
//! and never replaces a good pair with a bad one. Stores do not look at expiry: the manager
//! decides what an expired pair means.

mod file;
mod memory;

use std::path::PathBuf;

#[cfg(feature = "fuzzing")]
pub(crate) use file::fuzz_parse;
pub use file::{DEFAULT_RETENTION, FileStore, FileStoreBuilder};
pub use memory::MemoryStore;

use crate::pki::Certificate;

/// Persistence for the current certificate/key pair (client-go `certificate.Store`).
pub trait Store: Send + Sync {
    /// The stored pair. `Ok(None)` when there is none (client-go's `NoCertKeyError`).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a pair is present but cannot be used (empty, unparsable,
    /// key not matching), so that it is never confused with "no pair"; [`StoreError::Io`] for
    /// other failures.
    fn current(&self) -> Result<Option<Certificate>, StoreError>;

    /// Validates and stores a new pair (PEM chain, leaf first; PEM key) and returns it parsed.
    /// On error the previous pair is untouched.
    ///
    /// # Errors
    /// [`StoreError::InvalidPair`] for input that does not parse or whose key does not match;
    /// [`StoreError::Io`] when writing fails.
    fn update(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Certificate, StoreError>;

    /// Checks that [`update`](Store::update) can write, without changing the stored pair. A
    /// manager that may rotate calls it when it is built, so that a store it could never write
    /// to is an error there rather than a failure at every rotation. The default does nothing
    /// (stores whose writes cannot be probed).
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the path and carrying the OS error, or
    /// [`StoreError::BadState`], when a write would fail.
    fn check_writable(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The private key (PEM) of the CSR the manager has sent and not yet seen answered, if the
    /// store keeps one ([`set_pending_key`](Store::set_pending_key)). A manager that starts
    /// with no request of its own in memory sends its request again with this key; since a
    /// CSR is named after its key, subject and usages, the request meets the CSR it made
    /// before the restart (`AlreadyExists`, adopted when compatible) instead of making a new
    /// one. `Ok(None)`, the default, when none is kept.
    ///
    /// # Errors
    /// [`StoreError::Io`] when a kept key cannot be read.
    fn pending_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    /// Keeps `key_pem` as the pending request's key (`Some`), or forgets it (`None`) once the
    /// request is answered. The default keeps nothing, so a restarted manager makes a new key
    /// and CSR, as client-go does.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the key cannot be written or removed.
    fn set_pending_key(&self, key_pem: Option<&[u8]>) -> Result<(), StoreError> {
        let _ = key_pem;
        Ok(())
    }
}

/// Errors from a [`Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A stored pair exists but cannot be used.
    #[error("stored certificate at {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The file (or the store's name for non-file stores).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A pair given to `update` is not usable; nothing was written.
    #[error("refusing to store invalid certificate/key pair")]
    InvalidPair(#[source] crate::pki::PkiError),
    /// An I/O operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done: "read", "write", "rename", "link", "create directory", …
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The store's directory is in a state it will not repair by itself.
    #[error("certificate store at {}: {reason}", path.display())]
    BadState {
        /// The offending path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A store was configured with values it cannot work with (an empty pair name prefix, …).
    #[error("invalid certificate store configuration: {0}")]
    InvalidConfig(String),
}

impl StoreError {
    /// True for I/O errors that may pass (disk full, interrupted); false for corrupt data and
    /// invalid input.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Io { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::PkiError;
    use crate::report::check_table;

    fn variant(e: &StoreError) -> &'static str {
        match e {
            StoreError::Corrupt { .. } => "Corrupt",
            StoreError::InvalidPair(_) => "InvalidPair",
            StoreError::Io { .. } => "Io",
            StoreError::BadState { .. } => "BadState",
            StoreError::InvalidConfig(_) => "InvalidConfig",
        }
    }

    #[test]
    fn every_message_names_the_file_and_leaves_the_cause_to_source() {
        let rows = [
            (
                StoreError::Corrupt {
                    path: "/certs/kubelet-server-current.pem".into(),
                    reason: "no certificate PEM block".into(),
                },
                "stored certificate at /certs/kubelet-server-current.pem is corrupt: no certificate PEM block",
            ),
            (
                StoreError::InvalidPair(PkiError::KeyMismatch),
                "refusing to store invalid certificate/key pair",
            ),
            (
                StoreError::Io {
                    op: "rename",
                    path: "/certs/x.pem".into(),
                    source: std::io::Error::other("read-only file system"),
                },
                "cannot rename /certs/x.pem",
            ),
            (
                StoreError::BadState {
                    path: "/certs/kubelet-server-updated.pem".into(),
                    reason: "is not a symlink".into(),
                },
                "certificate store at /certs/kubelet-server-updated.pem: is not a symlink",
            ),
            (
                StoreError::InvalidConfig("the pair name prefix is empty".into()),
                "invalid certificate store configuration: the pair name prefix is empty",
            ),
        ];
        check_table(&rows, variant, 5);
    }
}
