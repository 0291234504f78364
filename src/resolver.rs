//! [`CertResolver`], the rustls certificate resolver a manager publishes each new certificate
//! to. Public as `tls::CertResolver`; a module of its own below the manager, which feeds it,
//! and below [`crate::tls`], which builds rustls configurations around it.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::clock::{Clock, Window};
use crate::pki::Certificate;

struct Entry {
    key: Arc<CertifiedKey>,
    /// Offered only while the clock is in this window: from NotBefore less the allowance
    /// ([`Certificate::usable_from`]) to NotAfter, as [`Manager::current`](crate::Manager::current).
    valid: Window,
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
                    valid: Window::new(c.usable_from(), c.not_after()),
                })
            })
        });
        self.current.store(entry);
    }

    /// The clock expiry is read against.
    pub(crate) fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        let guard = self.current.load();
        let entry = guard.as_ref()?;
        if !entry.valid.contains_now(&*self.clock) {
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
