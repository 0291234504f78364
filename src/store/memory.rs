//! An in-memory [`Store`].

use parking_lot::Mutex;

use super::{Store, StoreError};
use crate::pki::Certificate;

/// A [`Store`] that keeps the pair in memory. `update` validates like any store (the chain
/// parses and the key matches the leaf) and counts its calls, which tests use to check that
/// nothing was written.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Lock discipline: held only to clone or replace the pair; never across I/O.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    current: Option<Certificate>,
    updates: usize,
    pending_key: Option<Vec<u8>>,
}

impl MemoryStore {
    /// An empty store: `current()` is `Ok(None)`.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A store holding `cert`.
    pub fn with_certificate(cert: Certificate) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(State {
                current: Some(cert),
                ..State::default()
            }),
        }
    }

    /// How many successful `update` calls there have been.
    pub fn updates(&self) -> usize {
        self.state.lock().updates
    }
}

impl Store for MemoryStore {
    fn current(&self) -> Result<Option<Certificate>, StoreError> {
        Ok(self.state.lock().current.clone())
    }

    fn update(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Certificate, StoreError> {
        let cert = Certificate::from_pem(cert_pem, key_pem).map_err(StoreError::InvalidPair)?;
        let mut state = self.state.lock();
        state.current = Some(cert.clone());
        state.updates += 1;
        Ok(cert)
    }

    /// Kept in memory: a manager built again on the same store finds it.
    fn pending_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.lock().pending_key.clone())
    }

    fn set_pending_key(&self, key_pem: Option<&[u8]>) -> Result<(), StoreError> {
        self.state.lock().pending_key = key_pem.map(<[u8]>::to_vec);
        Ok(())
    }
}
