//! The kubelet's own certificate wiring, as presets: the serving-certificate manager
//! (`kubelet-server`, signer `kubernetes.io/kubelet-serving`, template from the node's
//! addresses), the client-certificate manager (`kubelet-client`, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, bootstrap pair), and TLS bootstrap
//! ([`bootstrap`]).
//!
//! These mirror `pkg/kubelet/certificate` (`NewKubeletServerCertificateManager`,
//! `NewKubeletClientCertificateManager`, `addressesToHostnamesAndIPs`) and the kubelet's metric
//! names, so node agents written in Rust keep the kubelet's on-disk layout, CSR shape and
//! dashboards. What they leave to the caller: how node addresses are discovered and how the CSR
//! API is reached (a client factory, see [`crate::csr::KubeCsrClient`]).
//!
//! # The node's wiring, as the kubelet does it
//! ```no_run
//! use std::sync::Arc;
//! use std::path::Path;
//! use certrotate::Manager;
//! use certrotate::kubelet::{self, NodeAddress, NodeAddressType, Options, bootstrap};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pki = Path::new("/var/lib/kubelet/pki");
//! // A valid kubeconfig is used as is; otherwise the bootstrap token gets the first client
//! // certificate and the kubeconfig is rewritten to point at kubelet-client-current.pem.
//! let config = bootstrap::load_client_config(
//!     "/var/lib/kubelet/kubeconfig",
//!     Some(Path::new("/var/lib/kubelet/bootstrap-kubeconfig")),
//!     pki,
//! )?;
//! let client = Arc::new(config.client_manager("node-1", Options::default())?);
//! client.start();
//! // Serving CSRs are sent as the node, with the client certificate.
//! let serving = kubelet::serving_manager(
//!     "node-1",
//!     || vec![NodeAddress::new(NodeAddressType::InternalIp, "10.0.0.7")],
//!     pki,
//!     kubelet::serving_factory(config.cert_config.clone(), client.clone()),
//!     Options::default(),
//! )?;
//! serving.start();
//! # Ok(()) }
//! ```
//!
//! # Kubelet settings covered
//! | kubelet setting | here |
//! |---|---|
//! | `--kubeconfig`, `--bootstrap-kubeconfig`, `--cert-dir` with `rotateCertificates: true` | [`bootstrap::load_client_config`], then [`bootstrap::ClientConfig::client_manager`] ([`client_manager`], [`client_factory`]) |
//! | the same with `rotateCertificates: false` | [`bootstrap::load_client_cert`] |
//! | `serverTLSBootstrap: true` | [`serving_manager`] with [`serving_factory`] |
//! | the node's `status.addresses` | the `addresses` function of [`serving_manager`] ([`serving_template`]) |
//! | `--tls-cert-file` / `--tls-private-key-file` | [`Options::cert_and_key_files`] |
//! | `AllowDNSOnlyNodeCSR` gate | [`Options::allow_dns_only`] |
//! | key algorithm (newest kubelets) | [`Options::key_algorithm`], [`Options::key_generator`] |
//! | certificate metrics | [`MetricDesc`] constants and the `Options` metric fields |
//!
//! Not covered, left to the program:
//! - exiting when the client certificate has expired while the API server answers (the
//!   kubelet's `UpdateTransport` with `exitAfter`): [`Manager::current`] and
//!   [`Manager::server_healthy`] give what the decision needs;
//! - closing the program's own long-lived API connections when the client certificate
//!   rotates (`UpdateTransport`'s close-all): the CSR clients made here get fresh connections
//!   for every attempt, and a program rebuilds its own from
//!   [`KubeCsrClientBuilder::client_for`] on each certificate from
//!   [`CertificateManager::subscribe`];
//! - registering the metrics with a registry (names, help texts and buckets are exported);
//! - the `RotateKubeletServerCertificate` gate and `serverTLSBootstrap` switch: a program
//!   starts the serving manager or not;
//! - ML-DSA keys, and generating RSA keys (bring them through [`Options::key_generator`]);
//! - `exec` and `auth-provider` credentials in kubeconfigs (refused, see
//!   [`crate::kubeconfig`]).

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub mod bootstrap;
#[cfg(test)]
mod error_tests;
#[cfg(feature = "prometheus")]
mod prom;
#[cfg(feature = "prometheus")]
pub use prom::KubeletMetrics;

use crate::clock::Clock;
use crate::csr::BoxError;
use crate::csr::{CsrClient, KeyUsage, KubeCsrClientBuilder};
use crate::error::Error;
use crate::manager::{CertificateManager, Config, KeyGenerator, Manager};
use crate::metrics::{Counter, Gauge, Histogram};
use crate::pki::{Certificate, KeyAlgorithm};
use crate::store::{FileStore, Store};
use crate::template::CsrTemplate;

/// Signer of kubelet serving certificates.
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// Signer of kubelet client certificates.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// File store prefix of the serving pair (`kubelet-server-current.pem`).
pub const SERVING_PREFIX: &str = "kubelet-server";
/// File store prefix of the client pair (`kubelet-client-current.pem`).
pub const CLIENT_PREFIX: &str = "kubelet-client";
/// The organization (group) of every node.
pub const NODES_GROUP: &str = "system:nodes";
/// The common-name prefix of node identities.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// A metric's name and help text as the kubelet registers it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricDesc {
    /// Full metric name.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Histogram buckets in seconds (empty for counters and gauges).
    pub buckets: &'static [f64],
}

/// Buckets of the rotation histogram, in seconds: 1 min, 1 h, 4 h, 1 d, 1 w, 30 d, 90 d,
/// 180 d, 360 d, 1440 d.
pub const ROTATION_BUCKETS: &[f64] = &[
    60.0,
    3600.0,
    14400.0,
    86400.0,
    604800.0,
    2592000.0,
    7776000.0,
    15552000.0,
    31104000.0,
    124416000.0,
];

/// Counter of serving-certificate renewal errors.
pub const SERVER_RENEW_ERRORS: MetricDesc = MetricDesc {
    name: "kubelet_server_expiration_renew_errors",
    help: "Counter of certificate renewal errors.",
    buckets: &[],
};
/// Histogram of how long serving certificates lived before rotation.
pub const SERVER_ROTATION_SECONDS: MetricDesc = MetricDesc {
    name: "kubelet_certificate_manager_server_rotation_seconds",
    help: "Histogram of the number of seconds the previous certificate lived before being rotated.",
    buckets: ROTATION_BUCKETS,
};
/// Gauge of the serving certificate's remaining lifetime.
pub const SERVER_TTL_SECONDS: MetricDesc = MetricDesc {
    name: "kubelet_certificate_manager_server_ttl_seconds",
    help: "Gauge of the shortest TTL (time-to-live) of the Kubelet's serving certificate. The value is in seconds until certificate expiry (negative if already expired). If serving certificate is invalid or unused, the value will be +INF.",
    buckets: &[],
};
/// Counter of client-certificate renewal errors.
pub const CLIENT_RENEW_ERRORS: MetricDesc = MetricDesc {
    name: "kubelet_certificate_manager_client_expiration_renew_errors",
    help: "Counter of certificate renewal errors.",
    buckets: &[],
};
/// Gauge of the client certificate's remaining lifetime.
pub const CLIENT_TTL_SECONDS: MetricDesc = MetricDesc {
    name: "kubelet_certificate_manager_client_ttl_seconds",
    help: "Gauge of the TTL (time-to-live) of the Kubelet's client certificate. The value is in seconds until certificate expiry (negative if already expired). If client certificate is invalid or unused, the value will be +INF.",
    buckets: &[],
};

/// The type of a node address (`v1.NodeAddressType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeAddressType {
    /// `Hostname`
    Hostname,
    /// `InternalIP`
    InternalIp,
    /// `ExternalIP`
    ExternalIp,
    /// `InternalDNS`
    InternalDns,
    /// `ExternalDNS`
    ExternalDns,
}

/// One node address (`v1.NodeAddress`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeAddress {
    /// Its type.
    pub address_type: NodeAddressType,
    /// Its value, as reported.
    pub address: String,
}

impl NodeAddress {
    /// A node address.
    pub fn new(address_type: NodeAddressType, address: impl Into<String>) -> NodeAddress {
        NodeAddress {
            address_type,
            address: address.into(),
        }
    }
}

/// Splits node addresses into the serving certificate's DNS names and IPs, as the kubelet's
/// `addressesToHostnamesAndIPs`: empty values are skipped; a `Hostname` that parses as an IP
/// (leniently: IPv4 octets may have leading zeros, as Go's `ParseIPSloppy`) is an IP, else a
/// DNS name; `InternalIP`/`ExternalIP` count only when they parse; `InternalDNS`/`ExternalDNS`
/// are DNS names. Values are deduplicated by their raw text; DNS names are sorted, IPs are
/// sorted by their text.
pub fn addresses_to_sans(addresses: &[NodeAddress]) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = BTreeSet::new();
    let mut ips: BTreeSet<&str> = BTreeSet::new();
    for a in addresses.iter().filter(|a| !a.address.is_empty()) {
        match a.address_type {
            NodeAddressType::Hostname => {
                if parse_ip_sloppy(&a.address).is_some() {
                    ips.insert(&a.address);
                } else {
                    dns.insert(a.address.clone());
                }
            }
            NodeAddressType::InternalIp | NodeAddressType::ExternalIp => {
                if parse_ip_sloppy(&a.address).is_some() {
                    ips.insert(&a.address);
                }
            }
            NodeAddressType::InternalDns | NodeAddressType::ExternalDns => {
                dns.insert(a.address.clone());
            }
        }
    }
    let mut ips: Vec<IpAddr> = ips.into_iter().filter_map(parse_ip_sloppy).collect();
    ips.sort_by(compare_text);
    (dns.into_iter().collect(), ips)
}

fn compare_text(a: &IpAddr, b: &IpAddr) -> Ordering {
    a.to_string().cmp(&b.to_string())
}

/// Parses an IP as Go's `netutils.ParseIPSloppy`: like the standard parser, but IPv4 octets
/// may carry leading zeros (read as decimal).
pub fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(&parts) {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// The serving template for a node (the kubelet's `getTemplate`): CN `system:node:<name>`, O
/// `system:nodes`, the addresses' DNS names and IPs. `None` — nothing to request yet — while
/// there is no IP, or, with `allow_dns_only` (the `AllowDNSOnlyNodeCSR` gate), while there is
/// neither an IP nor a DNS name.
pub fn serving_template(
    node_name: &str,
    addresses: &[NodeAddress],
    allow_dns_only: bool,
) -> Option<CsrTemplate> {
    let (dns_names, ip_addresses) = addresses_to_sans(addresses);
    let nothing = if allow_dns_only {
        ip_addresses.is_empty() && dns_names.is_empty()
    } else {
        ip_addresses.is_empty()
    };
    if nothing {
        return None;
    }
    Some(CsrTemplate {
        dns_names,
        ip_addresses,
        ..node_identity(node_name)
    })
}

/// The client template for a node: CN `system:node:<name>`, O `system:nodes`, no SANs.
pub fn node_identity(node_name: &str) -> CsrTemplate {
    CsrTemplate::new(format!("{NODE_USER_PREFIX}{node_name}")).with_organization(NODES_GROUP)
}

/// Serving usages: digital signature and server auth, plus key encipherment for RSA keys
/// (Kubernetes ≥ 1.27; see `usages_override` in [`Options`] for older servers).
pub fn serving_usages(alg: KeyAlgorithm) -> Vec<KeyUsage> {
    with_rsa_encipherment(alg, KeyUsage::ServerAuth)
}

/// Client usages: digital signature and client auth, plus key encipherment for RSA keys.
pub fn client_usages(alg: KeyAlgorithm) -> Vec<KeyUsage> {
    with_rsa_encipherment(alg, KeyUsage::ClientAuth)
}

fn with_rsa_encipherment(alg: KeyAlgorithm, auth: KeyUsage) -> Vec<KeyUsage> {
    let mut u = vec![KeyUsage::DigitalSignature];
    if alg.is_rsa() {
        u.push(KeyUsage::KeyEncipherment);
    }
    u.push(auth);
    u
}

/// A client factory, as [`ConfigBuilder::client_factory`](crate::ConfigBuilder::client_factory)
/// takes it.
pub type Factory =
    Arc<dyn Fn(Option<&Certificate>) -> Result<Box<dyn CsrClient>, BoxError> + Send + Sync>;

/// The client manager's factory (the kubelet's `newClientsetFn`): each CSR client
/// authenticates with the current client certificate when there is one, and with
/// `cert_config`'s own credentials — the bootstrap token or certificate — otherwise. Each call
/// builds a client with its own connections, so a rotated certificate is never sent over a
/// connection made with the old one (CASES C18).
pub fn client_factory(cert_config: KubeCsrClientBuilder) -> Factory {
    Arc::new(cert_config.factory())
}

/// The serving manager's factory: each CSR client authenticates as the node, with
/// `client_manager`'s current certificate, as the kubelet's serving manager uses the kubelet's
/// own API client; `cert_config` gives the server and its CA. While the client manager has no
/// certificate the factory fails (the attempt backs off and retries), so serving CSRs are never
/// sent with bootstrap credentials, which approvers do not accept (kubernetes#51966).
pub fn serving_factory(
    cert_config: KubeCsrClientBuilder,
    client_manager: Arc<dyn Manager>,
) -> Factory {
    Arc::new(move |_serving: Option<&Certificate>| {
        let Some(cert) = client_manager.current() else {
            return Err(BoxError::from(
                "the node has no valid client certificate yet to request a serving certificate with",
            ));
        };
        let client = cert_config.client_for(Some(&cert))?;
        Ok(Box::new(client) as Box<dyn CsrClient>)
    })
}

/// Options shared by the kubelet presets. Every field has a default; see each.
#[derive(Clone, Default)]
pub struct Options {
    /// An explicit pair (`--tls-cert-file`/`--tls-private-key-file` for serving, the client
    /// cert/key files for the client manager), looked up after `<prefix>-current.pem`.
    /// Defaults to none.
    pub cert_and_key_files: Option<(PathBuf, PathBuf)>,
    /// Request serving certificates for DNS-only nodes (the `AllowDNSOnlyNodeCSR` gate).
    /// Defaults to off.
    pub allow_dns_only: bool,
    /// Key algorithm of new keys. Defaults to ECDSA P-256.
    pub key_algorithm: Option<KeyAlgorithm>,
    /// A key generator, overriding `key_algorithm` (for RSA keys, which the `ring` backend
    /// cannot generate, or keys from an HSM). Usages follow the generated key's type.
    /// Defaults to none.
    pub key_generator: Option<KeyGenerator>,
    /// Usages to request instead of the per-key defaults (for servers older than 1.27 that
    /// still want `key encipherment` with ECDSA). Defaults to none.
    pub usages_override: Option<Vec<KeyUsage>>,
    /// The lifetime to request (`expirationSeconds`). Defaults to none, as the kubelet.
    pub requested_lifetime: Option<Duration>,
    /// Template poll interval (serving manager only). Defaults to 1 s; `Some(None)` turns
    /// polling off (use `notify_template_changed`).
    pub template_poll_interval: Option<Option<Duration>>,
    /// The clock. Defaults to the system clock.
    pub clock: Option<Arc<dyn Clock>>,
    /// Rotation histogram (see [`SERVER_ROTATION_SECONDS`]). Defaults to none.
    pub rotation_histogram: Option<Arc<dyn Histogram>>,
    /// Renew-failure counter (see [`SERVER_RENEW_ERRORS`], [`CLIENT_RENEW_ERRORS`]). Defaults
    /// to none.
    pub renew_failure_counter: Option<Arc<dyn Counter>>,
    /// TTL gauge (see [`SERVER_TTL_SECONDS`], [`CLIENT_TTL_SECONDS`]). Defaults to none.
    pub ttl_gauge: Option<Arc<dyn Gauge>>,
    /// How many old pairs the file store keeps. Defaults to the store's default.
    pub retention: Option<usize>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("cert_and_key_files", &self.cert_and_key_files)
            .field("allow_dns_only", &self.allow_dns_only)
            .field("key_algorithm", &self.key_algorithm)
            .field("key_generator", &self.key_generator.is_some())
            .field("requested_lifetime", &self.requested_lifetime)
            .finish_non_exhaustive()
    }
}

fn file_store(prefix: &str, cert_dir: &Path, options: &Options) -> Result<FileStore, Error> {
    let mut b = FileStore::builder(prefix, cert_dir, cert_dir);
    if let Some((cert, key)) = &options.cert_and_key_files {
        b = b.cert_and_key_files(cert, key);
    }
    if let Some(n) = options.retention {
        b = b.retention(n);
    }
    if let Some(c) = &options.clock {
        b = b.clock(c.clone());
    }
    Ok(b.build()?)
}

fn common(
    mut b: crate::ConfigBuilder,
    options: &Options,
    usages: fn(KeyAlgorithm) -> Vec<KeyUsage>,
    factory: Factory,
) -> crate::ConfigBuilder {
    b = match &options.usages_override {
        Some(u) => b.usages(u.clone()),
        None => b.usages_fn(usages),
    };
    if let Some(alg) = options.key_algorithm {
        b = b.key_algorithm(alg);
    }
    if let Some(g) = options.key_generator.clone() {
        b = b.generate_key(move || g());
    }
    if let Some(l) = options.requested_lifetime {
        b = b.requested_lifetime(l);
    }
    if let Some(c) = &options.clock {
        b = b.clock(c.clone());
    }
    if let Some(h) = &options.rotation_histogram {
        b = b.rotation_histogram(h.clone());
    }
    if let Some(c) = &options.renew_failure_counter {
        b = b.renew_failure_counter(c.clone());
    }
    if let Some(g) = &options.ttl_gauge {
        b = b.ttl_gauge(g.clone());
    }
    b.client_factory(move |cert| factory(cert))
}

/// The kubelet's serving-certificate manager (`NewKubeletServerCertificateManager`): a dynamic
/// template from `addresses` (polled every second, see [`serving_template`]), signer
/// `kubernetes.io/kubelet-serving`, usages per key type, a `kubelet-server` file store in
/// `cert_dir`. Call `start()` on the result.
///
/// # Errors
/// [`Error::Store`] when the store cannot be set up, read or written ("failed to initialize
/// server certificate store"); [`Error::InvalidConfig`] for inconsistent options.
pub fn serving_manager(
    node_name: &str,
    addresses: impl Fn() -> Vec<NodeAddress> + Send + Sync + 'static,
    cert_dir: impl AsRef<Path>,
    client_factory: Factory,
    options: Options,
) -> Result<CertificateManager, Error> {
    let store: Arc<dyn Store> = Arc::new(file_store(SERVING_PREFIX, cert_dir.as_ref(), &options)?);
    let name = node_name.to_owned();
    let dns_only = options.allow_dns_only;
    let mut b = Config::builder()
        .name("kubelet-serving")
        .signer_name(SERVING_SIGNER)
        .store(store)
        .template_fn(move || serving_template(&name, &addresses(), dns_only));
    if let Some(poll) = options.template_poll_interval {
        b = b.template_poll_interval(poll);
    }
    let config = common(b, &options, serving_usages, client_factory).build()?;
    CertificateManager::new(config)
}

/// The kubelet's client-certificate manager (`NewKubeletClientCertificateManager`): static
/// template CN `system:node:<name>`, O `system:nodes`; signer
/// `kubernetes.io/kube-apiserver-client-kubelet`; usages per key type; a `kubelet-client` file
/// store in `cert_dir`; an optional bootstrap pair (PEM cert, PEM key) that is used and rotated
/// at once when the store has no valid pair. The factory gets the current client certificate
/// once there is one and `None` before, so it can fall back to bootstrap credentials.
///
/// # Errors
/// [`Error::Store`] when the store cannot be set up, read or written; a parse error for a bad
/// bootstrap pair.
pub fn client_manager(
    node_name: &str,
    cert_dir: impl AsRef<Path>,
    bootstrap_pair: Option<(Vec<u8>, Vec<u8>)>,
    client_factory: Factory,
    options: Options,
) -> Result<CertificateManager, Error> {
    let store: Arc<dyn Store> = Arc::new(file_store(CLIENT_PREFIX, cert_dir.as_ref(), &options)?);
    let mut b = Config::builder()
        .name("kubelet-client")
        .signer_name(CLIENT_SIGNER)
        .store(store)
        .template(node_identity(node_name));
    if let Some((cert, key)) = bootstrap_pair {
        b = b.bootstrap(cert, key);
    }
    let config = common(b, &options, client_usages, client_factory).build()?;
    CertificateManager::new(config)
}

#[cfg(test)]
mod tests {
    use super::NodeAddressType::*;
    use super::*;

    fn a(t: NodeAddressType, v: &str) -> NodeAddress {
        NodeAddress::new(t, v)
    }

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// kubelet_test.go TestAddressesToHostnamesAndIPs.
    #[test]
    fn addresses_to_hostnames_and_ips() {
        type Case = (
            &'static str,
            Vec<NodeAddress>,
            Vec<&'static str>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            ("empty", vec![], vec![], vec![]),
            (
                "ignore empty values",
                vec![a(Hostname, ""), a(InternalIp, ""), a(ExternalDns, "")],
                vec![],
                vec![],
            ),
            (
                "ignore invalid IPs",
                vec![a(InternalIp, "1.2"), a(ExternalIp, "3.4")],
                vec![],
                vec![],
            ),
            (
                "dedupe values",
                vec![
                    a(Hostname, "hostname"),
                    a(ExternalDns, "hostname"),
                    a(InternalDns, "hostname"),
                    a(InternalIp, "1.1.1.1"),
                    a(ExternalIp, "1.1.1.1"),
                ],
                vec!["hostname"],
                vec!["1.1.1.1"],
            ),
            (
                "order values",
                vec![
                    a(Hostname, "hostname-2"),
                    a(ExternalDns, "hostname-1"),
                    a(InternalDns, "hostname-3"),
                    a(InternalIp, "2.2.2.2"),
                    a(ExternalIp, "1.1.1.1"),
                    a(InternalIp, "3.3.3.3"),
                ],
                vec!["hostname-1", "hostname-2", "hostname-3"],
                vec!["1.1.1.1", "2.2.2.2", "3.3.3.3"],
            ),
            (
                "handle IP and DNS hostnames",
                vec![a(Hostname, "hostname"), a(Hostname, "1.1.1.1")],
                vec!["hostname"],
                vec!["1.1.1.1"],
            ),
        ];
        for (name, addrs, want_dns, want_ips) in cases {
            let (dns, got_ips) = addresses_to_sans(&addrs);
            assert_eq!(dns, want_dns, "{name}");
            assert_eq!(got_ips, ips(&want_ips), "{name}");
        }
    }

    #[test]
    fn sloppy_ip_parsing_accepts_leading_zeros() {
        assert_eq!(
            parse_ip_sloppy("010.001.000.009"),
            Some("10.1.0.9".parse().unwrap())
        );
        assert_eq!(parse_ip_sloppy("fd00::1"), Some("fd00::1".parse().unwrap()));
        assert_eq!(parse_ip_sloppy("256.1.1.1"), None);
        assert_eq!(parse_ip_sloppy("1.2"), None);
        assert_eq!(parse_ip_sloppy("host-1"), None);
    }

    /// kubelet_test.go's gate matrix: a hostname-only node gets a template only with the gate.
    #[test]
    fn serving_template_needs_an_ip_unless_dns_only_is_allowed() {
        let host_only = [a(Hostname, "node-1")];
        assert_eq!(serving_template("node-1", &host_only, false), None);
        let t = serving_template("node-1", &host_only, true).unwrap();
        assert_eq!(t.dns_names, ["node-1"]);
        assert_eq!(serving_template("node-1", &[], true), None);
        let t = serving_template(
            "node-1",
            &[a(InternalIp, "10.0.0.7"), a(Hostname, "node-1")],
            false,
        )
        .unwrap();
        assert_eq!(t.common_name, "system:node:node-1");
        assert_eq!(t.organizations, ["system:nodes"]);
        assert_eq!(t.ip_addresses, ips(&["10.0.0.7"]));
    }

    /// CASES C14: key encipherment only for RSA keys; no duplicates.
    #[test]
    fn c14_usages_per_key_type() {
        use KeyUsage::*;
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            assert_eq!(serving_usages(alg), [DigitalSignature, ServerAuth], "{alg}");
            assert_eq!(client_usages(alg), [DigitalSignature, ClientAuth], "{alg}");
        }
        let rsa = KeyAlgorithm::Rsa { bits: 2048 };
        assert_eq!(
            serving_usages(rsa),
            [DigitalSignature, KeyEncipherment, ServerAuth]
        );
        assert_eq!(
            client_usages(rsa),
            [DigitalSignature, KeyEncipherment, ClientAuth]
        );
    }
}
