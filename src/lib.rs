//! certrotate keeps a TLS certificate fresh through the Kubernetes CSR API
//! (`certificates.k8s.io/v1`), the way client-go's certificate manager does it for the kubelet,
//! with plain OS threads and blocking I/O instead of an async runtime.
//!
//! It does not approve or sign CSRs (a cluster's approver and signer do that; the embedded
//! server behind feature `server` plays both for tests and demos), it does not run on an async
//! runtime, and it does not manage trust bundles: the CA you trust comes from your kubeconfig
//! or your own configuration.
//!
//! # Quick start
//!
//! A [`CertificateManager`] is built from a [`Config`]: what to request (a [`CsrTemplate`],
//! usages, a signer name), where pairs persist (a [`Store`]), and how to reach the CSR API (a
//! client factory). [`Manager::start`] returns at once; the certificate is then kept fresh in
//! the background, and [`Manager::current`] or a rustls resolver ([`tls`]) hands it out.
//!
//! ```
//! # #[cfg(feature = "test-util")] {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use certrotate::clock::SystemClock;
//! use certrotate::{CertificateManager, Config, CsrTemplate, KeyUsage, Manager};
//!
//! // Against a cluster the factory comes from a kubeconfig:
//! //   Kubeconfig::load_default()?.client_builder(None)?.factory()
//! // Here an in-process CSR API (feature `test-util`) approves and signs at once.
//! let api = certrotate::testing::FakeCsrApi::new(Arc::new(SystemClock), Duration::from_secs(3600));
//! let client_factory = api.factory();
//!
//! let config = Config::builder()
//!     .template(
//!         CsrTemplate::new("system:node:node-1")
//!             .with_organization("system:nodes")
//!             .with_dns_name("node-1")
//!             .with_ip_address("10.0.0.7".parse().unwrap()),
//!     )
//!     .signer_name("kubernetes.io/kubelet-serving")
//!     .usages([KeyUsage::DigitalSignature, KeyUsage::ServerAuth])
//!     .client_factory(client_factory)
//!     .build()?;
//! let manager = CertificateManager::new(config)?;
//! let rotations = manager.subscribe();
//! manager.start();
//!
//! let cert = rotations.recv_timeout(Duration::from_secs(10)).expect("first certificate");
//! assert_eq!(cert.common_name(), "system:node:node-1");
//! assert_eq!(manager.current().as_deref(), Some(&*cert));
//! manager.stop();
//! # }
//! # Ok::<(), certrotate::Error>(())
//! ```
//!
//! # How rotation is timed
//! At a random point in [70 %, 90 %) of the certificate's lifetime, counted from its NotBefore
//! (client-go's rule; see [`schedule`]); at once when there is no usable certificate, when the
//! certificate is a bootstrap one, or when it does not satisfy the template. Failed attempts
//! back off 2 s, 4 s, 8 s, 16 s, then retry about every 32 s, jittered so that a fleet which
//! failed together does not retry together ([`schedule::Backoff`]).
//!
//! # What a certificate must pass
//! An issued chain is stored, served and used to authenticate only if a TLS peer (Go's
//! `crypto/x509`, rustls, OpenSSL) would accept it ([`pki::verify_chain`]): in order and linked
//! by signatures, the leaf not a CA, the requested usages allowed, not expired, and NotBefore
//! at most [`pki::NOT_BEFORE_ALLOWANCE`] (5 minutes, for a signer whose clock runs a little
//! ahead) in the future. Otherwise the attempt fails and backs off like any other, and the old
//! certificate stays. A stored pair that fails the same checks at start is not served and is
//! replaced at once. client-go stores whatever the signer returns.
//!
//! # Threads
//! A started manager runs one rotation thread (plus one template thread when the template is a
//! polled function), with a 512 KiB stack by default. Idle, they are blocked in
//! `crossbeam_channel::select!`; the rotation thread sleeps at most `max_sleep_slice` (60 s) at a
//! time, so it notices a wall-clock jump within a minute. The CSR wait timeout is the CSR
//! client's own with the system clock; with another [`Clock`] (a test's fake clock) a rotation
//! attempt briefly adds a watchdog thread that enforces it on that clock. [`Manager::stop`] joins everything
//! and returns promptly in every state; dropping the manager stops it. [`Manager::current`]
//! never blocks and never returns an expired certificate, nor one whose NotBefore is more than
//! the allowance ahead.
//!
//! # Errors
//! The manager returns [`Error`]; the CSR API's cases are [`CsrError`], the store's
//! [`StoreError`] and the key and certificate functions' [`pki::PkiError`], each reachable
//! through it. Each message says what failed at its own step (which setting, which file,
//! which request) and leaves the cause to `source()`, never repeating it, so print the chain
//! to show everything. Setting things up has its own types:
//! [`kubeconfig::ConfigError`] for kubeconfigs and client settings, `server::ServerError` for
//! the embedded server, [`kubelet::bootstrap::BootstrapError`] for TLS bootstrap. A failed
//! rotation never replaces or damages the stored or served certificate; it increments the
//! renew-failure counter and, for create errors, updates [`Manager::server_healthy`] as
//! client-go does.
//!
//! # Features
//! - `test-util`: `testing::FakeClock`, a clock tests move by hand,
//!   `testing::FakeCsrApi`, a scripted in-process CSR API, and `pki::CertificateAuthority`, a
//!   CA that issues certificates (with `CertificateAuthority::for_tests`).
//! - `server`: the embedded HTTPS CSR API server (kube-apiserver plus a signer, on loopback),
//!   `server::CsrApiServer`; it brings `pki::CertificateAuthority` too.
//! - `prometheus`: the [`metrics`] traits for the `prometheus` crate's counter, histogram and
//!   gauge, and `kubelet::KubeletMetrics`, the kubelet's certificate metrics registered in a
//!   `prometheus::Registry` and wired into a config in one call.
//! - `cli`: the `certrotate` command (`run`, `serve`, `status`; see the README, "Run it as a
//!   daemon"). It turns on `server` and `prometheus` and adds command-line parsing and signal
//!   handling for the binary; it adds nothing else to the library's API.
//!
//! Features only add; none changes default behaviour.
//!
//! # Logging
//! Through the `log` crate, prefixed with the manager's name. `info`: rotations (old and new
//! serial, validity, the rotation deadline), CSRs created; `warn`/`error`: failed attempts and why,
//! corrupt stored pairs, repairs; `debug`: sleeps and backoff delays. This crate never logs
//! private keys, tokens or PEM bodies, at any level.
//!
//! Its HTTP dependency does at `trace`: the `ureq_proto::util` target dumps every request on the
//! wire, `authorization: Bearer …` header included (static tokens and bootstrap `id.secret`), and the
//! crate cannot switch that off from inside. A program that installs a logger must therefore
//! switch that target off; [`LOG_FILTER_DIRECTIVES`] holds the directives, in the syntax of
//! `env_logger` and of `tracing-subscriber`'s `EnvFilter`. Add them *after* the user's filter
//! (`RUST_LOG`), so that they win over `RUST_LOG=trace` and even over an explicit
//! `RUST_LOG=ureq_proto::util=trace`; they turn nothing on:
//!
//! ```no_run
//! // env_logger: parse the environment, then the crate's directives.
//! env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
//!     .parse_filters(certrotate::LOG_FILTER_DIRECTIVES)
//!     .init();
//! ```
//!
//! The examples set their loggers up this way. With a logger that has no per-target filter,
//! keep the global level at `debug` or below (`log::set_max_level`). `ureq`'s own `debug` output
//! redacts headers other than a fixed list of harmless ones.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Log filter directives that keep credentials out of the log whatever else is enabled: each
/// dependency target that writes secrets, switched off (see "Logging" in the crate docs).
/// Comma-separated `target=level` pairs, the syntax of `env_logger` and of
/// `tracing-subscriber`'s `EnvFilter`; apply them after the user's own filter.
///
/// Today one target: `ureq_proto::util`, whose only output is a `trace` dump of every HTTP
/// request and response, headers included. It names that exact target, so it wins over a
/// user's `RUST_LOG=trace` or `RUST_LOG=ureq_proto=trace` (the most specific directive wins)
/// and, added after the user's filter, over `RUST_LOG=ureq_proto::util=trace` too; and it turns
/// nothing on: the rest of the HTTP dependency logs at whatever level the user chose.
pub const LOG_FILTER_DIRECTIVES: &str = "ureq_proto::util=off";

pub mod clock;
pub mod csr;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod kubeconfig;
pub mod kubelet;
mod manager;
pub mod metrics;
pub mod pki;
mod report;
mod request;
mod resolver;
pub mod schedule;
#[cfg(feature = "server")]
pub mod server;
pub mod store;
pub mod template;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod tls;
mod usages;

pub use clock::Clock;
pub use csr::{
    BoxError, Cancel, CancelReason, ClientFactory, CsrClient, CsrError, CsrRef, CsrRequest,
    KeyUsage, KubeCsrClient, KubeCsrClientBuilder,
};
pub use error::Error;
pub use manager::{
    CertificateManager, Config, ConfigBuilder, KeyGenerator, Manager, Subscription, TemplateFn,
    UsagesFn,
};
pub use pki::{Certificate, KeyAlgorithm, PrivateKey};
pub use store::{FileStore, MemoryStore, Store, StoreError};
pub use template::CsrTemplate;

/// The rustls certrotate is built with (only its `ring` provider enabled): use it rather than a
/// `rustls` dependency of your own, whose default features would bring a second crypto provider
/// (see [`tls`](crate::tls#one-crypto-provider-whatever-else-the-program-links)).
pub use rustls;

/// The README's Rust code, compiled (and run where it can run) with the doctests, so that what
/// a new user copies works.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
