//! rustls integration: a certificate resolver that a manager feeds on every rotation, so TLS
//! servers and clients pick up a new certificate on their next handshake without a restart,
//! and helpers that build rustls configs around it.
//!
//! The handshake path is lock-free (an atomic `Arc` swap) and validity-aware: once the current
//! certificate's NotAfter has passed, or while its NotBefore is further ahead than
//! [`NOT_BEFORE_ALLOWANCE`](crate::pki::NOT_BEFORE_ALLOWANCE) (a bootstrap certificate, or a
//! clock stepped back), the resolver offers nothing, as
//! [`Manager::current`](crate::Manager::current) returns nothing.
//!
//! # No session resumption
//! A resumed TLS session (a TLS 1.2 session ID or ticket, a TLS 1.3 pre-shared key from a
//! ticket) skips the certificate exchange: both sides re-use the identities of the session they
//! resume. With resumption on, a server that has rotated would still be known to resuming
//! clients by its old certificate, even past that certificate's NotAfter, and a client whose
//! certificate has expired (or that a rotation replaced) would be admitted on the strength of a
//! session from when it was valid. So neither helper resumes:
//!
//! - [`server_config`] keeps no session cache ([`NoServerSessionStorage`]), issues no TLS 1.2
//!   tickets (rustls's default ticketer, which never produces one) and sends no TLS 1.3 tickets
//!   (`send_tls13_tickets = 0`). A client offering a session ID or ticket gets a full handshake:
//!   it receives the certificate the resolver offers now, and its own certificate is verified
//!   now.
//! - [`client_config`] stores no sessions ([`Resumption::disabled`]: no TLS 1.3 tickets, no TLS
//!   1.2 session IDs or tickets) and sends no early data, so every connection presents the
//!   certificate the resolver offers now.
//!
//! Every new connection therefore costs a full handshake (certificates and signatures, and in
//! TLS 1.2 one more round trip), the price of never handing out or accepting a stale identity. Go's
//! TLS server reaches the second half of this rule another way: it resumes, but falls back to a
//! full handshake when the session's client certificate is past its NotAfter
//! (`checkForResumption` in `crypto/tls`); it still resumes with a server certificate that has
//! since been rotated, which this module does not.
//!
//! If you build your own `ServerConfig` around [`CertificateManager::resolver`], turn
//! resumption off the same way:
//!
//! ```
//! # fn f(config: &mut rustls::ServerConfig) {
//! config.session_storage = std::sync::Arc::new(rustls::server::NoServerSessionStorage {});
//! config.send_tls13_tickets = 0;
//! // and leave `config.ticketer` at the builder's default, which issues no tickets
//! # }
//! ```
//!
//! # Peer certificates are checked at the manager's clock
//! Both helpers verify the peer's certificate as webpki does (a chain to the given CA bundle;
//! the serverAuth or clientAuth extended key usage when the certificate lists any; the validity
//! period) at the wall time of the manager's [`Clock`], the same clock that decides when the
//! manager's own certificate has expired. With [`SystemClock`](crate::clock::SystemClock) that is the system time, as rustls
//! would use anyway. A client certificate that is expired, not yet valid or not issued by a
//! trusted CA is refused on every handshake; since nothing is resumed, that is every connection.
//! An established connection is not re-checked when a certificate expires during it (Go's
//! `crypto/tls` does not either): close long-lived connections on rotation, as below.
//!
//! # Client certificates and connection reuse
//! A TLS client presents its certificate only during a handshake. Apart from resumption (off,
//! see above), pooled keep-alive connections keep an old certificate in use after a rotation.
//! Pooled connections are the HTTP client's business: with ureq, build a new `Agent` for each
//! rotation, driven by [`CertificateManager::subscribe`], and drop (or `shutdown()`) the old
//! one:
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
//!
//! # One crypto provider, whatever else the program links
//! rustls 0.23 picks its cryptography from a [`CryptoProvider`]. Its `ClientConfig::builder()`
//! and `ServerConfig::builder()` take the process-default provider and, when none was
//! installed, pick one from rustls's crate features; when those name two (`ring` and
//! `aws-lc-rs`), they panic. A program gets two as soon as it depends on certrotate (which enables
//! `ring`) and on plain `rustls = "0.23"` (whose default features enable `aws-lc-rs`), or on any
//! crate that enables the other one.
//!
//! certrotate never reads the process default: every config, verifier and signing key it makes
//! is built with its own provider, [`crypto_provider`] (`ring`), passed explicitly. Build yours
//! the same way, and nothing depends on which providers the dependency graph enables:
//!
//! - [`client_config_builder`] and [`server_config_builder`] start a rustls config with that
//!   provider (TLS 1.2 and 1.3); [`client_config`] and [`server_config`] are complete ones;
//! - `certrotate::rustls` is the rustls certrotate is built with, so a program need not add a
//!   `rustls` dependency of its own (and with it, `aws-lc-rs`); if it does, write it
//!   `rustls = { version = "0.23", default-features = false, features = ["ring", "std", "tls12"] }`;
//! - for code you do not control that calls `builder()` (another library's HTTP or gRPC client),
//!   call [`install_default_provider`] once at the start of `main`.
//!
//! ```
//! # fn main() -> Result<(), certrotate::Error> {
//! use certrotate::rustls;
//! // Not `rustls::ClientConfig::builder()`: that one may panic, this one cannot.
//! let config: rustls::ClientConfig = certrotate::tls::client_config_builder()?
//!     .with_root_certificates(rustls::RootCertStore::empty())
//!     .with_no_client_auth();
//! # let _ = config;
//! # Ok(())
//! # }
//! ```
//!
//! Inside this crate, clippy refuses the provider-less builders (`clippy.toml`).

use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, ConfigBuilder, RootCertStore, ServerConfig, WantsVerifier};

use crate::clock::Clock;
use crate::error::Error;
use crate::manager::CertificateManager;
use crate::pki::{crypto_provider, parse_chain_pem};
pub use crate::resolver::CertResolver;

/// Parses a PEM bundle of CA certificates into a root store.
///
/// # Errors
/// [`Error::Tls`] when the bundle holds no certificate or one is not a usable trust anchor.
pub fn root_store(ca_pem: &[u8]) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = parse_chain_pem(ca_pem).map_err(|e| Error::Tls {
        part: "CA bundle",
        source: Box::new(e),
    })?;
    for cert in certs {
        roots.add(cert).map_err(|e| Error::Tls {
            part: "CA bundle",
            source: Box::new(e),
        })?;
    }
    Ok(roots)
}

/// rustls reads the time (certificate validity, ticket age) from the manager's clock.
#[derive(Debug)]
struct ClockTime(Arc<dyn Clock>);

impl TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        self.0
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(UnixTime::since_unix_epoch)
    }
}

/// A rustls `ClientConfig` builder with certrotate's crypto provider ([`crypto_provider`],
/// `ring`) and TLS 1.2 and 1.3, ready for its verifier: the replacement for
/// `rustls::ClientConfig::builder()` that never reads the process-default provider, so it cannot
/// panic when the program's dependencies enable two (see the [module docs](self)).
///
/// # Errors
/// [`Error::Tls`] if the provider supports neither protocol version (`ring` supports both).
pub fn client_config_builder() -> Result<ConfigBuilder<ClientConfig, WantsVerifier>, Error> {
    ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls {
            part: "protocol versions",
            source: Box::new(e),
        })
}

/// A rustls `ServerConfig` builder with certrotate's crypto provider ([`crypto_provider`],
/// `ring`) and TLS 1.2 and 1.3, ready for its client verifier: the replacement for
/// `rustls::ServerConfig::builder()` that never reads the process-default provider (see the
/// [module docs](self)).
///
/// # Errors
/// [`Error::Tls`] if the provider supports neither protocol version (`ring` supports both).
pub fn server_config_builder() -> Result<ConfigBuilder<ServerConfig, WantsVerifier>, Error> {
    ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls {
            part: "protocol versions",
            source: Box::new(e),
        })
}

/// Makes certrotate's crypto provider ([`crypto_provider`], `ring`) the process default when no
/// default is installed yet, and returns the default in force (an earlier one is kept).
///
/// certrotate itself never needs this. It is for code that calls `rustls::ClientConfig::builder()`
/// or `ServerConfig::builder()` (other libraries' clients and servers), which panics when no
/// default is installed and the dependency graph enables both `ring` and `aws-lc-rs`; call it
/// once at the start of `main`, before such code runs.
///
/// ```
/// use certrotate::rustls;
/// let provider = certrotate::tls::install_default_provider();
/// let default = rustls::crypto::CryptoProvider::get_default().expect("installed");
/// assert!(std::sync::Arc::ptr_eq(default, &provider));
/// // From here on the provider-less builders work, however many providers are enabled.
/// #[allow(clippy::disallowed_methods)]
/// let _ = rustls::ClientConfig::builder();
/// ```
#[allow(clippy::disallowed_methods)] // the one place that reads the default, to return it
pub fn install_default_provider() -> Arc<CryptoProvider> {
    // Losing a race with another installer is fine: whichever was first stays, and is returned.
    let _ = CryptoProvider::install_default(CryptoProvider::clone(&crypto_provider()));
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(crypto_provider)
}

/// A rustls server config that serves `manager`'s current certificate (TLS 1.2 and 1.3, the
/// crate's `ring` provider) and, with `client_ca_pem` (a PEM bundle of CA certificates),
/// requires a client certificate that chains to one of those CAs, is valid at the manager's
/// clock and, when it lists extended key usages, lists clientAuth.
///
/// Session resumption is off (no session cache, no tickets; see the [module docs](self)):
/// every connection gets the certificate the manager holds now, and every client certificate
/// is verified now, as Go's TLS server does for a session whose client certificate has expired.
///
/// # Errors
/// [`Error::Tls`] when the CA bundle is unusable.
pub fn server_config(
    manager: &CertificateManager,
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, Error> {
    let resolver = manager.resolver();
    let provider = crypto_provider();
    let builder =
        ServerConfig::builder_with_details(provider.clone(), Arc::new(ClockTime(resolver.clock())))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls {
                part: "protocol versions",
                source: Box::new(e),
            })?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(pem)?), provider)
                    .build()
                    .map_err(|e| Error::Tls {
                        part: "client certificate verifier",
                        source: Box::new(e),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    // No resumption: no TLS 1.2 session-ID cache and no stateful TLS 1.3 tickets. The
    // builder's ticketer never produces a ticket, so no stateless tickets either.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A rustls client config that trusts only `server_ca_pem` (a PEM bundle of CA certificates),
/// verifies the server's certificate at the manager's clock, and presents `manager`'s current
/// certificate as its client certificate.
///
/// Session resumption is off (no TLS 1.3 tickets, no TLS 1.2 session IDs or tickets; see the
/// [module docs](self)): every connection makes a full handshake, so a rotated certificate is
/// presented on the next connection and an old identity is never resumed.
///
/// # Errors
/// [`Error::Tls`] when the CA bundle is unusable.
pub fn client_config(
    manager: &CertificateManager,
    server_ca_pem: &[u8],
) -> Result<Arc<ClientConfig>, Error> {
    let resolver = manager.resolver();
    let mut config = ClientConfig::builder_with_details(
        crypto_provider(),
        Arc::new(ClockTime(resolver.clock())),
    )
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Tls {
        part: "protocol versions",
        source: Box::new(e),
    })?
    .with_root_certificates(root_store(server_ca_pem)?)
    .with_client_cert_resolver(resolver);
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    Ok(Arc::new(config))
}
