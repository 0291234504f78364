//! rustls integration: a certificate resolver that a manager feeds on every rotation, so TLS
//! servers and clients pick up a new certificate on their next handshake without a restart,
//! and helpers that build rustls configs around it.
//!
//! The handshake path is lock-free (an atomic `Arc` swap) and expiry-aware: once the current
//! certificate's NotAfter has passed, the resolver offers nothing, as
//! [`Manager::current`](crate::Manager::current) returns nothing.
//!
//! # Client certificates and connection reuse
//! A TLS client presents its certificate only during a handshake. Two things can keep an old
//! certificate in use after a rotation: TLS session resumption (a resumed session re-uses the
//! old identity without a new certificate exchange) and pooled keep-alive connections. The
//! [`client_config`] helper turns resumption off. Pooled connections are the HTTP client's
//! business: with ureq, build a new `Agent` for each rotation, driven by
//! [`CertificateManager::subscribe`], and drop (or `shutdown()`) the old one:
//!
//! ```no_run
//! # use certrotate::Manager;
//! # fn agent_for(_: &certrotate::Certificate) -> ureq::Agent { unimplemented!() }
//! # let manager: certrotate::CertificateManager = unimplemented!();
//! let rotations = manager.subscribe();
//! let mut agent = agent_for(&manager.current().expect("a certificate"));
//! loop {
//!     if let Ok(cert) = rotations.try_recv() {
//!         agent = agent_for(&cert); // new connections, new handshakes, new certificate
//!     }
//!     let _ = agent.get("https://example.invalid/healthz").call();
//!     # break;
//! }
//! ```
//! (tests/tls.rs has a complete `agent_for`.)

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use rustls::client::Resumption;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::clock::Clock;
use crate::error::Error;
use crate::manager::CertificateManager;
use crate::pki::{Certificate, crypto_provider, parse_chain_pem};

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
        if crate::clock::is_past(&*self.clock, entry.not_after) {
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

/// Parses a PEM bundle of CA certificates into a root store.
///
/// # Errors
/// [`Error::Tls`] when the bundle holds no certificate or one is not a usable trust anchor.
pub fn root_store(ca_pem: &[u8]) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> =
        parse_chain_pem(ca_pem).map_err(|e| Error::Tls(format!("CA bundle: {e}")))?;
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("CA bundle: {e}")))?;
    }
    Ok(roots)
}

/// A rustls server config that serves `manager`'s current certificate (TLS 1.2 and 1.3, the
/// crate's `ring` provider) and, with `client_ca_pem`, requires client certificates signed by
/// those CAs.
///
/// # Errors
/// [`Error::Tls`] when the CA bundle is unusable.
pub fn server_config(
    manager: &CertificateManager,
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, Error> {
    let provider = crypto_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(pem)?), provider)
                    .build()
                    .map_err(|e| Error::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok(Arc::new(builder.with_cert_resolver(manager.resolver())))
}

/// A rustls client config that trusts only `server_ca_pem` and presents `manager`'s current
/// certificate as its client certificate, with session resumption off so that a rotated
/// certificate is really presented on the next connection.
///
/// # Errors
/// [`Error::Tls`] when the CA bundle is unusable.
pub fn client_config(
    manager: &CertificateManager,
    server_ca_pem: &[u8],
) -> Result<Arc<ClientConfig>, Error> {
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(root_store(server_ca_pem)?)
        .with_client_cert_resolver(manager.resolver());
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}
