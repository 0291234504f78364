//! rustls integration: a certificate resolver that a manager feeds on every rotation, so TLS
//! servers and clients pick up a new certificate on their next handshake without a restart.
//!
//! The handshake path is lock-free (an atomic `Arc` swap) and expiry-aware: once the current
//! certificate's NotAfter has passed, the resolver offers nothing, as
//! [`Manager::current`](crate::Manager::current) returns nothing.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::clock::Clock;
use crate::pki::Certificate;

struct Entry {
    key: Arc<CertifiedKey>,
    not_after: SystemTime,
}

/// A rustls server and client certificate resolver that always offers the manager's current
/// certificate (see [`CertificateManager::resolver`](crate::CertificateManager::resolver)).
pub struct CertResolver {
    /// Invariant: `Some` only for a certificate rustls can sign with.
    current: ArcSwapOption<Entry>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("has_certs", &self.current.load().is_some())
            .finish()
    }
}

impl CertResolver {
    /// An empty resolver reading expiry against `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> CertResolver {
        CertResolver {
            current: ArcSwapOption::empty(),
            clock,
        }
    }

    /// Offers `cert` from the next handshake on, or nothing for `None` (or a certificate rustls
    /// cannot sign with, such as RSA below 2048 bits).
    pub fn set(&self, cert: Option<&Certificate>) {
        let entry = cert.and_then(|c| {
            c.certified_key().map(|key| {
                Arc::new(Entry {
                    key: key.clone(),
                    not_after: c.not_after(),
                })
            })
        });
        self.current.store(entry);
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        let guard = self.current.load();
        let entry = guard.as_ref()?;
        if self.clock.now_coarse() > entry.not_after {
            return None;
        }
        Some(entry.key.clone())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

impl ResolvesClientCert for CertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.get()
    }

    /// True only while a usable (unexpired, signable) certificate exists; rustls asks at the
    /// start of every handshake and sends no client certificate when this is false.
    fn has_certs(&self) -> bool {
        self.get().is_some()
    }
}
