//! [`KubeCsrClient`]: the [`CsrClient`] that talks to a real Kubernetes API server over HTTPS
//! with blocking ureq calls, and its [`KubeCsrClientBuilder`].
//!
//! It does what client-go's `csr.RequestCertificate` and `csr.WaitForCertificate` do:
//!
//! - **Create** a `CertificateSigningRequest` (`generateName: csr-` unless a name is given)
//!   under `certificates.k8s.io/v1`. The removed `v1beta1` API is used only when asked for
//!   with [`KubeCsrClientBuilder::allow_legacy_v1beta1`], and then by client-go's rule: v1 when
//!   a signer name other than `kubernetes.io/legacy-unknown` and usages are given, falling
//!   back to `v1beta1` when v1 answers 404; otherwise straight under `v1beta1`. Without it, a
//!   request v1 cannot express gets the server's validation error and a v1 404 is returned as
//!   it is, naming the v1 path. With a fixed name, an `AlreadyExists`
//!   answer makes it fetch the existing object and adopt it when it is compatible (same subject,
//!   same signer unless one is empty, a request signed by our key, no expired certificate).
//! - **Wait**: list with `fieldSelector=metadata.name=<name>`, then watch from the list's
//!   `resourceVersion`, resuming a watch the server ends and re-listing after `410 Expired`,
//!   until the CSR is approved and issued, denied, failed, deleted or replaced (uid change), or
//!   the wait times out or is cancelled. For a request this client has just created
//!   ([`CsrRef::resource_version`] set), the first watch starts from the create's
//!   `resourceVersion` with no list before it: a new object carries no status, so everything
//!   that can happen to it comes after that version, and the wait saves one round trip. Any
//!   failure of that watch (a `410` because the version was compacted away, a `504` from a
//!   watch cache that has not caught up with it) leads at once to the list as above (after the
//!   server's `Retry-After`, if it gave one). client-go's `WaitForCertificate` always lists
//!   first (an informer's list+watch).
//!
//! # Status rules of the wait
//! As client-go's `WaitForCertificate`, every condition of an observed object is read: a
//! `Denied` or `Failed` condition ends the wait with [`CsrError::Denied`] or
//! [`CsrError::Failed`] whatever else is set (an `[Approved, Denied]` object that carries a
//! certificate is denied, and its certificate is not taken); a certificate is taken only from
//! an object with an `Approved` condition and neither of those.
//!
//! A wait re-lists only after a pause of the reflector's backoff (800 ms doubling to a 30 s
//! cap, each stretched by up to as much again; see
//! [`retry_interval`](KubeCsrClientBuilder::retry_interval)): after a failed list, a watch that
//! ends in an error — `410 Expired`/`Gone` as the HTTP answer or as an `ERROR` event — and a
//! watch that ends within 1 s without an event. A watch the server ends normally is resumed at
//! once. So a server that answers every watch with 410 gets at most 9 list+watch rounds in a
//! wait's first 2 min, then one every 30–60 s. Pauses are timers of the builder's
//! [`clock`](KubeCsrClientBuilder::clock), and a cancel ends one at once.
//!
//! When the wait times out, [`CsrError::Timeout`] says what it last saw
//! ([`WaitProgress`](super::WaitProgress)): a request nobody approved ("is an approver running
//! for `<signerName>`?"), one approved but not issued ("approved but not issued: is a signer
//! running for `<signerName>`?"), one the last list did not contain ("it was not found"), or,
//! when the last list or watch failed and nothing answered since (every list forbidden, say),
//! that error as its `source()` (a 404 from the fallback version does not hide the preferred
//! version's error). A request still approved
//! but not issued once the wait has passed [`APPROVED_NOT_ISSUED_WARN_FRACTION`] of its timeout
//! is logged once as a warning, at that point.
//!
//! # Types of the answers
//! An answer must be the kind asked for: a `CertificateSigningRequest` from create and get and
//! in watch events (a `Status` in `ERROR` events), a `CertificateSigningRequestList` from list,
//! each of the API version of the request's path (`certificates.k8s.io/v1`, or `…/v1beta1` for
//! a request that lives there). Another kind or version (a `Secret`, a `Pod`, a `PodList`, a
//! v1beta1 object on the v1 path) ends the call with [`CsrError::InvalidResponse`]. An absent
//! `kind` or `apiVersion` is taken as the expected one, as client-go's decoder does (the items
//! of a list carry none).
//!
//! # Example: the kubelet's wiring
//! Bootstrap credentials from the kubeconfig until a certificate exists, then that certificate:
//! ```no_run
//! use std::sync::Arc;
//! use certrotate::kubeconfig::Kubeconfig;
//! use certrotate::{CertificateManager, Config, CsrTemplate, KeyUsage, Manager, MemoryStore};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kube = Kubeconfig::load_default()?.client_builder(None)?;
//! let config = Config::builder()
//!     .template(CsrTemplate::new("system:node:node-1").with_organization("system:nodes"))
//!     .usages([KeyUsage::DigitalSignature, KeyUsage::ClientAuth])
//!     .signer_name("kubernetes.io/kube-apiserver-client-kubelet")
//!     .store(Arc::new(MemoryStore::new()))
//!     .client_factory(kube.factory())
//!     .build()?;
//! let manager = CertificateManager::new(config)?;
//! manager.start();
//! # Ok(()) }
//! ```
//!
//! # Connections and credentials
//! Each client owns one ureq `Agent` and so its own connections: a client built with a new
//! certificate never reuses a connection made with an old one. The manager builds a client per
//! rotation attempt through [`KubeCsrClientBuilder::factory`]. Cancelling a wait shuts its agent
//! down, which interrupts a blocked read at once; the next call on the client makes a fresh
//! agent with the same identity, so a client stays usable after a cancelled wait.
//!
//! # Limits against a broken or hostile server
//! Every read is bounded: an object or error body ≤ 4 MiB, a list ≤ 16 MiB, one watch event
//! line ≤ 4 MiB (memory stays flat however long a watch runs). Connects time out after 10 s,
//! requests after 30 s; a watch asks the server to end it after `timeoutSeconds` (5–10 min,
//! random, as client-go's reflector) and gives up on a connection silent for that long plus
//! as long again (at most 30 s more), then lists and watches again. A watch event that is not
//! valid JSON, or a stream that breaks off inside an event, ends that watch as client-go's
//! stream watcher does: the CSR is listed and watched again after the backoff pause, and a
//! wait that times out meanwhile carries that error as its cause. An unknown event type, an
//! object of another kind or an event over the size limit end the wait with
//! [`CsrError::InvalidResponse`]. Nothing panics.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::RngExt;
use rustls::RootCertStore;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use ureq::Agent;
use ureq::http::Response;
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector};

use super::ConfigError;
use super::api::{self, CertificateSigningRequest, CsrList, Status, WatchEvent};
use super::backoff::RelistBackoff;
use super::http::{NoServerVerification, RootsVerifier, RustlsConnector};
use super::proxy::ProxyEnv;
use super::{ApiError, ApiVersion, Cancel, CsrClient, CsrError, CsrRef, CsrRequest, WaitProgress};
use crate::clock::{Clock, SystemClock};
use crate::pki::{self, CertInfo, Certificate};
use crate::report::{CauseText, Chain};

/// Default limit of one object or error body (4 MiB).
pub const DEFAULT_MAX_OBJECT_SIZE: usize = 4 << 20;
/// Default limit of one list answer (16 MiB).
pub const DEFAULT_MAX_LIST_SIZE: usize = 16 << 20;
/// Default limit of one watch event line (4 MiB).
pub const DEFAULT_MAX_WATCH_EVENT_SIZE: usize = 4 << 20;

/// How much longer than `timeoutSeconds` a silent watch connection is given before it is
/// considered dead: as long again, at most 30 s.
fn watch_read_timeout(timeout_seconds: u64) -> Duration {
    Duration::from_secs(timeout_seconds + timeout_seconds.min(30))
}
/// A watch that ends this soon without an event is "very short" (client-go's reflector) and
/// is followed by the backoff pause and a re-list, so a server that closes every watch at once
/// is not hammered.
const SHORT_WATCH: Duration = Duration::from_secs(1);

/// Where a PEM document comes from: given inline, or a file read each time a client is built.
#[derive(Clone)]
pub(crate) enum PemSource {
    /// The bytes themselves.
    Inline(Vec<u8>),
    /// A file, read on every [`KubeCsrClientBuilder::client_for`].
    File(PathBuf),
}

impl PemSource {
    fn read(&self, what: &'static str) -> Result<Vec<u8>, ConfigError> {
        match self {
            PemSource::Inline(b) => Ok(b.clone()),
            PemSource::File(p) => std::fs::read(p).map_err(|source| ConfigError::ReadFile {
                what,
                path: p.clone(),
                source,
            }),
        }
    }

    fn describe(&self) -> String {
        match self {
            PemSource::Inline(_) => "inline data".into(),
            PemSource::File(p) => p.display().to_string(),
        }
    }
}

#[derive(Clone)]
enum TokenSource {
    Static(String),
    File(PathBuf),
}

/// Configuration of a [`KubeCsrClient`]: the API server, its CA, and the credentials. Cheap to
/// clone; build one client per rotation attempt with [`client_for`](Self::client_for) or
/// [`factory`](Self::factory).
///
/// Files (CA, client certificate and key, token file) are read each time a client is built, so
/// a rotated service-account token or certificate file is picked up by the next client.
#[derive(Clone)]
pub struct KubeCsrClientBuilder {
    server: String,
    ca: Option<PemSource>,
    tls_server_name: Option<String>,
    skip_tls_verify: bool,
    client_cert: Option<(PemSource, PemSource)>,
    token: Option<TokenSource>,
    proxy: Option<String>,
    allow_plain_http: bool,
    connect_timeout: Duration,
    request_timeout: Duration,
    watch_timeout: Option<Duration>,
    retry_interval: Duration,
    max_object_size: usize,
    max_list_size: usize,
    max_watch_event_size: usize,
    clock: Arc<dyn Clock>,
    user_agent: String,
    allow_legacy_v1beta1: bool,
}

impl fmt::Debug for KubeCsrClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials are secret: only say where they come from.
        f.debug_struct("KubeCsrClientBuilder")
            .field("server", &self.server)
            .field("ca", &self.ca.as_ref().map(PemSource::describe))
            .field("tls_server_name", &self.tls_server_name)
            .field("skip_tls_verify", &self.skip_tls_verify)
            .field(
                "client_cert",
                &self.client_cert.as_ref().map(|(c, _)| c.describe()),
            )
            .field(
                "token",
                &self.token.as_ref().map(|t| match t {
                    TokenSource::Static(_) => "<static>".to_owned(),
                    TokenSource::File(p) => p.display().to_string(),
                }),
            )
            .field("allow_plain_http", &self.allow_plain_http)
            .finish_non_exhaustive()
    }
}

impl KubeCsrClientBuilder {
    /// A builder for the API server at `server` (`https://host:port`, optionally with a path
    /// prefix), with no CA, no credentials and the default limits and timeouts.
    pub fn new(server: impl Into<String>) -> KubeCsrClientBuilder {
        KubeCsrClientBuilder {
            server: server.into(),
            ca: None,
            tls_server_name: None,
            skip_tls_verify: false,
            client_cert: None,
            token: None,
            proxy: None,
            allow_plain_http: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            watch_timeout: None,
            retry_interval: super::backoff::INITIAL,
            max_object_size: DEFAULT_MAX_OBJECT_SIZE,
            max_list_size: DEFAULT_MAX_LIST_SIZE,
            max_watch_event_size: DEFAULT_MAX_WATCH_EVENT_SIZE,
            clock: Arc::new(SystemClock),
            user_agent: concat!("certrotate/", env!("CARGO_PKG_VERSION")).to_owned(),
            allow_legacy_v1beta1: false,
        }
    }

    /// The server URL as given.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The CA bundle (PEM) this builder trusts for the API server: the kubeconfig's
    /// `certificate-authority-data`, or the file its `certificate-authority` names, read now
    /// (the service account's `ca.crt` in a pod). `None` when none is set. Not checked here.
    ///
    /// # Errors
    /// [`ConfigError::ReadFile`] when the CA file cannot be read.
    pub fn ca_bundle_pem(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        self.ca
            .as_ref()
            .map(|c| c.read("certificate authority"))
            .transpose()
    }

    /// PEM certificates of the CA(s) that sign the server's certificate; the only roots
    /// trusted (kubeconfig `certificate-authority-data`). As with Go's `crypto/x509`, a server
    /// certificate byte-for-byte equal to one of them (the server's own, possibly self-signed,
    /// certificate given as its CA) is trusted as it is, if it is within its validity period,
    /// valid for the server's name and, when it has an extended key usage, for server
    /// authentication. Defaults to none, which makes building an `https` client fail unless
    /// TLS verification is skipped.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(PemSource::Inline(pem.into()));
        self
    }

    /// As [`ca_pem`](Self::ca_pem), read from a file each time a client is built (kubeconfig
    /// `certificate-authority`). A relative path is taken against the working directory of
    /// this call, not of later builds. Defaults to none.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(PemSource::File(absolute(path.into())));
        self
    }

    /// The name the server's certificate must be valid for, and the SNI sent, instead of the
    /// URL's host (kubeconfig `tls-server-name`). Defaults to the URL's host.
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls_server_name = Some(name.into());
        self
    }

    /// **WARNING: turns off verification of the server's certificate.** Anyone on the network
    /// path can then impersonate the API server, read the bearer token and hand out
    /// certificates of their choosing. Mirrors kubeconfig `insecure-skip-tls-verify: true`,
    /// which is the only reason it exists; every client built with it logs a warning. Refused
    /// together with a CA, as client-go does. Defaults to `false`.
    pub fn dangerous_skip_tls_verify(mut self, skip: bool) -> Self {
        self.skip_tls_verify = skip;
        self
    }

    /// **WARNING: allows `http://` servers**, sending credentials and CSRs in clear text with
    /// no server authentication. Meant for tests against a local fake; never for a real
    /// cluster. Defaults to `false`: an `http://` URL is refused.
    pub fn allow_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// The client certificate chain (leaf first) and key, PEM, to authenticate with (kubeconfig
    /// `client-certificate-data` / `client-key-data`). They are checked to match before use.
    /// Defaults to none.
    pub fn client_cert_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_cert = Some((
            PemSource::Inline(cert_pem.into()),
            PemSource::Inline(key_pem.into()),
        ));
        self
    }

    /// As [`client_cert_pem`](Self::client_cert_pem), read from files each time a client is
    /// built (kubeconfig `client-certificate` / `client-key`; they may be the same file).
    /// Relative paths are taken against the working directory of this call, not of later
    /// builds. Defaults to none.
    pub fn client_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((
            PemSource::File(absolute(cert.into())),
            PemSource::File(absolute(key.into())),
        ));
        self
    }

    /// Authenticates with `cert` (its chain and key). Defaults to none.
    pub fn client_certificate(self, cert: &Certificate) -> Self {
        let key = cert.key_pem();
        self.client_cert_pem(cert.cert_pem().as_bytes().to_vec(), key.into_bytes())
    }

    pub(crate) fn client_cert_source(mut self, cert: PemSource, key: PemSource) -> Self {
        self.client_cert = Some((cert, key));
        self
    }

    /// A bearer token sent as `Authorization: Bearer …` (kubeconfig `token`). Replaces a token
    /// file. Defaults to none.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(TokenSource::Static(token.into()));
        self
    }

    /// A file holding the bearer token, re-read (and trimmed) for every client built
    /// (kubeconfig `tokenFile`, the in-cluster service-account token). Replaces a static
    /// token. A relative path is taken against the working directory of this call, not of
    /// later builds. Defaults to none.
    pub fn bearer_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token = Some(TokenSource::File(absolute(path.into())));
        self
    }

    /// A proxy to tunnel through with CONNECT (kubeconfig `proxy-url`): `http://host:port`, or
    /// `https://host:port` for TLS to the proxy (verified as Go's `net/http` does: against the
    /// same certificate authority and `tls-server-name` as the API server, and presenting the
    /// same client certificate if the proxy asks for one), optionally with `user:password@`.
    /// It is used for every request, loopback servers included, as client-go's
    /// `http.ProxyURL`. `socks5://` (which client-go also accepts) and other schemes are refused
    /// with [`ConfigError::Invalid`] when a client is built, whether the proxy comes from here
    /// or from the environment.
    ///
    /// Without it, the proxy comes from the environment with the rules of Go's
    /// `net/http.ProxyFromEnvironment`, as client-go: for an `https://` server `HTTPS_PROXY`
    /// (else `https_proxy`; never `HTTP_PROXY` or `ALL_PROXY`) unless `NO_PROXY` (else
    /// `no_proxy`) lists the server (`*`, IP addresses, CIDR ranges, domain suffixes with or
    /// without a leading `.` or `*.`, each optionally with `:port`; spaces around commas
    /// ignored); `localhost` and loopback addresses never go through a proxy. The environment is
    /// read each time a client is built.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// How long a TCP connect may take. Defaults to 10 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long one non-watch request (create, get, list) may take from start to the end of
    /// its body. Defaults to 30 s.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// The `timeoutSeconds` asked of each watch (whole seconds, at least 1); a watch connection
    /// silent for twice this (at most this plus 30 s) is dropped and the wait lists again. Defaults to a random value in [5 min, 10 min) per
    /// watch, as client-go's reflector.
    pub fn watch_timeout(mut self, d: Duration) -> Self {
        self.watch_timeout = Some(d);
        self
    }

    /// The first pause of a wait's backoff before it lists again after a failed list, a watch
    /// that ended in an error (410 Expired/Gone included) or a very short watch. Each further
    /// pause doubles the base, up to 30 s, and is stretched by a random fraction in [0, 1) of
    /// itself; 2 min without a pause start again from this one (client-go's reflector:
    /// 800 ms, ×2, cap 30 s, jitter 1.0, reset after 2 min). A server's `Retry-After`
    /// lengthens a pause. Pauses are timers of the [`clock`](Self::clock) and end at once when
    /// the wait is cancelled. Defaults to 800 ms.
    pub fn retry_interval(mut self, d: Duration) -> Self {
        self.retry_interval = d;
        self
    }

    /// The largest object or error body read, in bytes. Defaults to 4 MiB.
    pub fn max_object_size(mut self, bytes: usize) -> Self {
        self.max_object_size = bytes;
        self
    }

    /// The largest list body read, in bytes. Defaults to 16 MiB.
    pub fn max_list_size(mut self, bytes: usize) -> Self {
        self.max_list_size = bytes;
        self
    }

    /// The longest watch event line read, in bytes. Defaults to 4 MiB.
    pub fn max_watch_event_size(mut self, bytes: usize) -> Self {
        self.max_watch_event_size = bytes;
        self
    }

    /// The clock used to judge whether certificates of an existing CSR have expired before
    /// adopting it, and whose timers time the backoff pauses of a wait (see
    /// [`retry_interval`](Self::retry_interval)); the wait's own timeout runs on monotonic
    /// time. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The `User-Agent` header. Defaults to `certrotate/<version>`.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// Allows the removed `certificates.k8s.io/v1beta1` API (served up to Kubernetes 1.21),
    /// with client-go's `csr.RequestCertificate` rule: a request without a signer name, with
    /// the signer `kubernetes.io/legacy-unknown` or without usages goes straight to v1beta1;
    /// another goes to v1 and falls back to v1beta1 when v1 answers 404; adopting an existing
    /// CSR reads v1beta1 when v1 answers 404. When false, every request goes to v1 only, so
    /// such a request gets the server's validation error and a missing v1 API is reported as a
    /// 404 on the v1 path. Defaults to false.
    pub fn allow_legacy_v1beta1(mut self, allow: bool) -> Self {
        self.allow_legacy_v1beta1 = allow;
        self
    }

    /// The bearer token a client built now would send (a token file is read now).
    ///
    /// # Errors
    /// [`ConfigError::ReadFile`] or [`ConfigError::Invalid`] for an unreadable or malformed
    /// token file.
    pub fn current_token(&self) -> Result<Option<String>, ConfigError> {
        let token = match &self.token {
            None => return Ok(None),
            Some(TokenSource::Static(t)) => t.clone(),
            Some(TokenSource::File(p)) => {
                let raw = std::fs::read_to_string(p).map_err(|source| ConfigError::ReadFile {
                    what: "token file",
                    path: p.clone(),
                    source,
                })?;
                raw.trim().to_owned()
            }
        };
        if token.is_empty() {
            return Ok(None);
        }
        if !token.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(ConfigError::Invalid {
                what: "bearer token",
                message: "contains characters that cannot go into an HTTP header".into(),
            });
        }
        Ok(Some(token))
    }

    /// Checks the configuration by building (and dropping) a client with the configured
    /// credentials.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        self.client_for(None).map(drop)
    }

    /// Builds a client with the configured credentials: the kubeconfig's own (bootstrap)
    /// client certificate and/or token.
    ///
    /// # Errors
    /// As [`client_for`](Self::client_for).
    pub fn build(&self) -> Result<KubeCsrClient, ConfigError> {
        self.client_for(None)
    }

    /// Builds a client for one rotation attempt. With `Some(cert)` it authenticates with that
    /// certificate only (no token), as the kubelet does once it has a client certificate; with
    /// `None`, or with a certificate that cannot authenticate a client (its ExtKeyUsage lacks
    /// `client auth`, e.g. a serving certificate), it uses the configured (bootstrap)
    /// credentials. Every client has its own ureq agent and connections.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a bad server URL, `http://` without
    /// [`allow_plain_http`](Self::allow_plain_http), no CA for `https`, a CA together with
    /// skipped verification, PEM that does not parse, a key that does not match its
    /// certificate or that rustls cannot sign with (RSA below 2048 bits), or an unsupported
    /// proxy; [`ConfigError::ReadFile`] for unreadable files.
    pub fn client_for(&self, cert: Option<&Certificate>) -> Result<KubeCsrClient, ConfigError> {
        let cert = cert.filter(|c| {
            if !c.info().allows_client_auth {
                log::debug!(
                    "certificate {} is not a client certificate (no client auth usage); using the configured credentials",
                    c.serial_hex()
                );
            }
            c.info().allows_client_auth
        });
        let server = self.server.trim_end_matches('/').to_owned();
        let uri: ureq::http::Uri = server.parse().map_err(|e| ConfigError::Invalid {
            what: "server URL",
            message: format!("{server:?}: {e}"),
        })?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(ConfigError::Invalid {
                what: "server URL",
                message: format!("{server:?} has no host"),
            });
        }
        if uri.query().is_some() {
            return Err(ConfigError::Invalid {
                what: "server URL",
                message: format!("{server:?} has a query"),
            });
        }
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if self.allow_plain_http => {
                log::warn!(
                    "talking to {server} over plain http: credentials and CSRs travel unencrypted"
                );
                false
            }
            Some("http") => {
                return Err(ConfigError::Invalid {
                    what: "server URL",
                    message: format!(
                        "{server:?} is plain http, which is refused (credentials would travel in clear text); use https"
                    ),
                });
            }
            _ => {
                return Err(ConfigError::Invalid {
                    what: "server URL",
                    message: format!("{server:?} must start with https://"),
                });
            }
        };

        let identity: Option<Arc<CertifiedKey>> = match cert {
            Some(c) => Some(certified_key(c, "certificate")?),
            None => match &self.client_cert {
                None => None,
                Some((cert_src, key_src)) => {
                    let cert_pem = cert_src.read("client certificate")?;
                    let key_pem = key_src.read("client key")?;
                    let pair = Certificate::from_pem(&cert_pem, &key_pem).map_err(|e| {
                        ConfigError::Invalid {
                            what: "client certificate",
                            message: format!(
                                "{} / {}: {e}",
                                cert_src.describe(),
                                key_src.describe()
                            ),
                        }
                    })?;
                    Some(certified_key(&pair, "client certificate")?)
                }
            },
        };
        let token = match cert {
            Some(_) => None,
            None => self.current_token()?,
        };

        let provider = pki::crypto_provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Invalid {
                what: "TLS configuration",
                message: e.to_string(),
            })?;
        let builder = if self.skip_tls_verify {
            if self.ca.is_some() {
                return Err(ConfigError::Invalid {
                    what: "TLS configuration",
                    message: "specifying a certificate authority with insecure-skip-tls-verify is not allowed".into(),
                });
            }
            if https {
                log::warn!(
                    "TLS VERIFICATION IS DISABLED for {server} (insecure-skip-tls-verify): anyone on the network path can impersonate the API server, read the credentials sent to it and issue certificates of their choosing"
                );
            }
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoServerVerification {
                    provider: provider.clone(),
                }))
        } else {
            let mut roots = RootCertStore::empty();
            let mut root_ders = Vec::new();
            match &self.ca {
                Some(src) => {
                    let pem = src.read("certificate authority")?;
                    let certs = pki::parse_chain_pem(&pem).map_err(|e| ConfigError::Invalid {
                        what: "certificate authority",
                        message: format!("{}: {e}", src.describe()),
                    })?;
                    for c in certs {
                        root_ders.push(c.clone());
                        roots.add(c).map_err(|e| ConfigError::Invalid {
                            what: "certificate authority",
                            message: format!("{}: {e}", src.describe()),
                        })?;
                    }
                }
                None if https => {
                    return Err(ConfigError::Invalid {
                        what: "TLS configuration",
                        message: format!(
                            "no certificate authority for {server}; set certificate-authority(-data), only the configured CA is trusted"
                        ),
                    });
                }
                None => {}
            }
            if root_ders.is_empty() {
                // Plain http only: nothing to verify against.
                builder.with_root_certificates(roots)
            } else {
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| ConfigError::Invalid {
                    what: "certificate authority",
                    message: e.to_string(),
                })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(RootsVerifier {
                        webpki,
                        roots: root_ders,
                    }))
            }
        };
        let mut tls = match identity {
            Some(ck) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(ck))),
            None => builder.with_no_client_auth(),
        };
        tls.resumption = Resumption::disabled();
        let server_name = match &self.tls_server_name {
            None => None,
            Some(n) => Some(
                ServerName::try_from(n.clone()).map_err(|e| ConfigError::Invalid {
                    what: "tls-server-name",
                    message: format!("{n:?}: {e}"),
                })?,
            ),
        };

        let proxy = match &self.proxy {
            Some(p) => Some(configured_proxy(p, "proxy-url")?),
            None => {
                // Decided once per client: every request of a client goes to this one server.
                let host = uri.host().unwrap_or_default();
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                let scheme = if https { "https" } else { "http" };
                match ProxyEnv::from_env().proxy_for(scheme, host, uri.port_u16()) {
                    Ok(None) => None,
                    Ok(Some(url)) => Some(configured_proxy(&url, "proxy from the environment")?),
                    Err(message) => {
                        return Err(ConfigError::Invalid {
                            what: "proxy from the environment",
                            message,
                        });
                    }
                }
            }
        };
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .https_only(!self.allow_plain_http)
            .max_redirects(0)
            .timeout_connect(Some(self.connect_timeout))
            .user_agent(self.user_agent.as_str())
            .accept("application/json")
            .proxy(proxy)
            .build();
        let spec = AgentSpec {
            config,
            tls: Arc::new(tls),
            server_name,
        };
        Ok(KubeCsrClient {
            agent: Mutex::new(AgentSlot::new(&spec)),
            spec,
            base: server,
            token,
            request_timeout: self.request_timeout,
            watch_timeout: self.watch_timeout,
            retry_interval: self.retry_interval,
            max_object_size: self.max_object_size,
            max_list_size: self.max_list_size,
            max_watch_event_size: self.max_watch_event_size,
            clock: self.clock.clone(),
            allow_legacy_v1beta1: self.allow_legacy_v1beta1,
        })
    }

    /// A client factory for the certificate manager
    /// ([`ConfigBuilder::client_factory`](crate::ConfigBuilder::client_factory)): called once
    /// per rotation attempt with the current certificate (or `None`), it returns a new client
    /// as [`client_for`](Self::client_for) does. For a client certificate this is the kubelet's
    /// wiring: bootstrap credentials until a certificate exists, then that certificate. For a
    /// serving certificate (no `client auth` usage) the configured credentials are used every
    /// time. Its errors are [`ConfigError`]s, boxed.
    pub fn factory(
        self,
    ) -> impl Fn(Option<&Certificate>) -> Result<Box<dyn CsrClient>, super::BoxError>
    + Send
    + Sync
    + 'static {
        move |cert| match self.client_for(cert) {
            Ok(c) => Ok(Box::new(c) as Box<dyn CsrClient>),
            Err(e) => Err(Box::new(e) as super::BoxError),
        }
    }
}

fn certified_key(c: &Certificate, what: &'static str) -> Result<Arc<CertifiedKey>, ConfigError> {
    c.certified_key()
        .cloned()
        .ok_or_else(|| ConfigError::Invalid {
            what,
            message: format!(
                "the key of {} (serial {}) cannot sign TLS handshakes (RSA below 2048 bits?)",
                c.common_name(),
                c.serial_hex()
            ),
        })
}

/// `path` made absolute against the current working directory (lexically, as Go's
/// `filepath.Abs`); unchanged if the working directory cannot be read.
pub(crate) fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    std::path::absolute(&path).unwrap_or(path)
}

/// A proxy URL as client-go's `parseProxyURL` takes it (`http`, `https`; `socks5` is refused
/// here), for ureq.
fn configured_proxy(url: &str, what: &'static str) -> Result<ureq::Proxy, ConfigError> {
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    match scheme.as_str() {
        "http" | "https" => {}
        "socks5" => {
            return Err(ConfigError::Invalid {
                what,
                message: format!(
                    "{url:?}: socks5 proxies are not supported; use http:// or https://"
                ),
            });
        }
        _ => {
            return Err(ConfigError::Invalid {
                what,
                message: format!("{url:?}: unsupported scheme, must be http:// or https://"),
            });
        }
    }
    ureq::Proxy::new(url).map_err(|e| ConfigError::Invalid {
        what,
        message: format!("{url:?}: {e}"),
    })
}

/// A [`CsrClient`] for a Kubernetes API server (blocking ureq, rustls).
///
/// Build it with [`KubeCsrClientBuilder`], [`KubeCsrClient::from_kubeconfig`],
/// [`KubeCsrClient::from_default_kubeconfig`] or [`KubeCsrClient::in_cluster`].
pub struct KubeCsrClient {
    /// Everything needed to make an agent with this client's TLS identity.
    spec: AgentSpec,
    /// The agent in use; replaced by a fresh one (same identity) once a cancelled wait has
    /// shut it down. Lock discipline: held only to read or swap the slot.
    agent: Mutex<AgentSlot>,
    base: String,
    /// Secret.
    token: Option<String>,
    request_timeout: Duration,
    watch_timeout: Option<Duration>,
    retry_interval: Duration,
    max_object_size: usize,
    max_list_size: usize,
    max_watch_event_size: usize,
    clock: Arc<dyn Clock>,
    /// Whether v1beta1 may be used (see [`KubeCsrClientBuilder::allow_legacy_v1beta1`]).
    allow_legacy_v1beta1: bool,
}

/// How to make this client's agents: the ureq config and our TLS layer.
struct AgentSpec {
    config: ureq::config::Config,
    tls: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl AgentSpec {
    fn new_agent(&self) -> Agent {
        let connector =
            ().chain(ConnectProxyConnector::default())
                .chain(TcpConnector::default())
                .chain(RustlsConnector {
                    config: self.tls.clone(),
                    server_name: self.server_name.clone(),
                });
        Agent::with_parts(
            self.config.clone(),
            connector,
            ureq::unversioned::resolver::DefaultResolver::default(),
        )
    }
}

/// An agent and whether it has been shut down.
struct AgentSlot {
    agent: Agent,
    /// Set (before the shutdown) by the cancel callback of a wait that used this agent.
    dead: Arc<AtomicBool>,
}

impl AgentSlot {
    fn new(spec: &AgentSpec) -> AgentSlot {
        AgentSlot {
            agent: spec.new_agent(),
            dead: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl fmt::Debug for KubeCsrClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeCsrClient")
            .field("server", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl KubeCsrClient {
    /// A builder for the API server at `server`.
    pub fn builder(server: impl Into<String>) -> KubeCsrClientBuilder {
        KubeCsrClientBuilder::new(server)
    }

    /// A client with the pod's in-cluster configuration (see
    /// [`KubeCsrClientBuilder::in_cluster`]).
    ///
    /// # Errors
    /// [`ConfigError::NotInCluster`] outside a pod; otherwise as building.
    pub fn in_cluster() -> Result<KubeCsrClient, ConfigError> {
        KubeCsrClientBuilder::in_cluster()?.build()
    }

    /// The server URL.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// One `GET /healthz` bounded by `timeout` (the kubelet bootstrap's wait for the API
    /// server): `Ok` on a 2xx answer, else what went wrong, for a log line.
    pub(crate) fn probe_healthz(&self, timeout: Duration) -> Result<(), String> {
        let resp = self
            .get(&self.agent().0, "retrieve", "/healthz", timeout, None)
            .map_err(|e| match e {
                CsrError::Transport {
                    request, source, ..
                } => format!("{request}: {}", Chain(&*source)),
                other => Chain(&other).to_string(),
            })?;
        let code = resp.status().as_u16();
        if (200..300).contains(&code) {
            Ok(())
        } else {
            Err(format!("{}/healthz answered {code}", self.base))
        }
    }

    /// The live agent, replacing one a cancelled wait shut down.
    fn agent(&self) -> (Agent, Arc<AtomicBool>) {
        let mut slot = self.agent.lock();
        if slot.dead.load(Ordering::SeqCst) {
            *slot = AgentSlot::new(&self.spec);
        }
        (slot.agent.clone(), slot.dead.clone())
    }

    // ---- HTTP ----

    fn get(
        &self,
        agent: &Agent,
        op: &'static str,
        path: &str,
        global: Duration,
        per_read: Option<Duration>,
    ) -> Result<Response<ureq::Body>, CsrError> {
        let url = format!("{}{}", self.base, path);
        let mut rb = agent.get(&url);
        if let Some(t) = &self.token {
            rb = rb.header("Authorization", format!("Bearer {t}"));
        }
        let rb = rb
            .config()
            .timeout_global(Some(global))
            .timeout_recv_response(Some(self.request_timeout.min(global)))
            .timeout_per_read(per_read)
            .build();
        rb.call().map_err(|e| transport_error(op, "GET", &url, e))
    }

    fn post(
        &self,
        agent: &Agent,
        op: &'static str,
        path: &str,
        body: &[u8],
    ) -> Result<Response<ureq::Body>, CsrError> {
        let url = format!("{}{}", self.base, path);
        let mut rb = agent.post(&url).header("Content-Type", "application/json");
        if let Some(t) = &self.token {
            rb = rb.header("Authorization", format!("Bearer {t}"));
        }
        let rb = rb
            .config()
            .timeout_global(Some(self.request_timeout))
            .build();
        rb.send(body)
            .map_err(|e| transport_error(op, "POST", &url, e))
    }

    /// Reads a 2xx body (≤ `limit`), or turns a non-2xx answer into [`CsrError::Api`].
    fn body(
        &self,
        op: &'static str,
        path: &str,
        mut resp: Response<ureq::Body>,
        limit: usize,
    ) -> Result<Vec<u8>, CsrError> {
        let code = resp.status().as_u16();
        if !(200..300).contains(&code) {
            return Err(self.api_error(op, path, resp));
        }
        read_limited(op, path, &mut resp, limit)
    }

    fn api_error(&self, op: &'static str, path: &str, mut resp: Response<ureq::Body>) -> CsrError {
        let code = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_limited(op, path, &mut resp, self.max_object_size).unwrap_or_default();
        CsrError::Api {
            op,
            path: path.to_owned(),
            error: parse_api_error(code, retry_after, &body),
        }
    }

    // ---- create ----

    fn post_csr(
        &self,
        agent: &Agent,
        version: ApiVersion,
        req: &CsrRequest,
    ) -> Result<CsrRef, CsrError> {
        let path = collection(version);
        let obj = CertificateSigningRequest {
            api_version: Some(version.as_str().to_owned()),
            kind: Some(api::KIND_CSR.to_owned()),
            metadata: api::ObjectMeta {
                name: req.name.clone(),
                generate_name: req.name.is_none().then(|| "csr-".to_owned()),
                ..api::ObjectMeta::default()
            },
            spec: api::CsrSpec {
                request: req.csr_pem.as_bytes().to_vec(),
                signer_name: (!req.signer_name.is_empty()).then(|| req.signer_name.clone()),
                expiration_seconds: req.expiration.map(api::duration_to_expiration_seconds),
                usages: req.usages.iter().map(|u| u.as_str().to_owned()).collect(),
                ..api::CsrSpec::default()
            },
            status: None,
        };
        let body = serde_json::to_vec(&obj).map_err(|e| CsrError::InvalidResponse {
            op: "create",
            message: format!("cannot encode the request: {e}"),
        })?;
        let resp = self.post(agent, "create", &path, &body)?;
        let bytes = self.body("create", &path, resp, self.max_object_size)?;
        let created = decode_csr("create", &bytes, version)?;
        let mut csr = csr_ref("create", &created, version)?;
        // A new object's history starts at its creation; one that already carries a status (not
        // something kube-apiserver answers) is listed first instead, so that status is read.
        if created
            .status
            .as_ref()
            .is_none_or(|s| s.conditions.is_empty() && s.certificate.is_none())
        {
            csr.resource_version = created.metadata.resource_version.unwrap_or_default();
        }
        Ok(csr)
    }

    fn get_csr(
        &self,
        agent: &Agent,
        version: ApiVersion,
        name: &str,
    ) -> Result<CertificateSigningRequest, CsrError> {
        let path = format!("{}/{}", collection(version), encode(name));
        let resp = self.get(agent, "retrieve", &path, self.request_timeout, None)?;
        let bytes = self.body("retrieve", &path, resp, self.max_object_size)?;
        decode_csr("retrieve", &bytes, version)
    }

    fn adopt(&self, agent: &Agent, req: &CsrRequest, name: &str) -> Result<CsrRef, CsrError> {
        log::info!(
            "certificate signing request {name:?} already exists, checking whether it can be reused"
        );
        let (version, existing) = match self.get_csr(agent, ApiVersion::V1, name) {
            Ok(o) => (ApiVersion::V1, o),
            Err(CsrError::Api { error, .. })
                if error.is_not_found() && self.allow_legacy_v1beta1 =>
            {
                (
                    ApiVersion::V1beta1,
                    self.get_csr(agent, ApiVersion::V1beta1, name)?,
                )
            }
            Err(e) => return Err(e),
        };
        ensure_compatible(req, &existing, self.clock.now()).map_err(|message| {
            CsrError::Incompatible {
                name: name.to_owned(),
                message,
            }
        })?;
        log::info!("certificate signing request {name:?} is compatible, reusing it");
        csr_ref("retrieve", &existing, version)
    }

    // ---- list ----

    fn list(
        &self,
        agent: &Agent,
        version: ApiVersion,
        name: &str,
        global: Duration,
    ) -> Result<CsrList, CsrError> {
        let path = format!(
            "{}?fieldSelector={}",
            collection(version),
            encode(&format!("metadata.name={name}"))
        );
        let resp = self.get(agent, "list", &path, self.request_timeout.min(global), None)?;
        let bytes = self.body("list", &path, resp, self.max_list_size)?;
        let list: CsrList =
            serde_json::from_slice(&bytes).map_err(|e| CsrError::InvalidResponse {
                op: "list",
                message: format!("malformed CertificateSigningRequestList from {path}: {e}"),
            })?;
        check_type(
            "list",
            list.kind.as_deref(),
            list.api_version.as_deref(),
            api::KIND_CSR_LIST,
            Some(version),
        )?;
        for item in &list.items {
            check_type(
                "list",
                item.kind.as_deref(),
                item.api_version.as_deref(),
                api::KIND_CSR,
                Some(version),
            )?;
        }
        Ok(list)
    }
}

impl KubeCsrClient {
    /// Create (with adoption, and the v1beta1 rule when allowed), every request on `agent`.
    fn create_on(&self, agent: &Agent, req: &CsrRequest) -> Result<CsrRef, CsrError> {
        // client-go's rule for when v1 is tried at all, applied only when v1beta1 is allowed.
        let use_v1 = !self.allow_legacy_v1beta1
            || (!req.usages.is_empty()
                && !req.signer_name.is_empty()
                && req.signer_name != api::LEGACY_UNKNOWN_SIGNER);
        let result = if use_v1 {
            match self.post_csr(agent, ApiVersion::V1, req) {
                Err(CsrError::Api { error, .. })
                    if error.is_not_found() && self.allow_legacy_v1beta1 =>
                {
                    log::debug!("certificates.k8s.io/v1 not found, falling back to v1beta1");
                    self.post_csr(agent, ApiVersion::V1beta1, req)
                }
                other => other,
            }
        } else {
            self.post_csr(agent, ApiVersion::V1beta1, req)
        };
        match (result, req.name.as_deref()) {
            (Err(CsrError::Api { error, .. }), Some(name)) if error.is_already_exists() => {
                self.adopt(agent, req, name)
            }
            (other, _) => other,
        }
    }

    /// The live agent, shut down (and marked dead, so the next call gets a fresh one) when
    /// `cancel` fires.
    fn agent_for(&self, cancel: &Cancel) -> Agent {
        let (agent, dead) = self.agent();
        let to_shut = agent.clone();
        cancel.on_cancel(move || {
            dead.store(true, Ordering::SeqCst);
            to_shut.shutdown();
        });
        agent
    }
}

impl CsrClient for KubeCsrClient {
    /// Every request of the create runs on one agent, which the cancel shuts down: a create
    /// blocked on a hung server returns at once.
    fn create(&self, req: &CsrRequest, cancel: &Cancel) -> Result<CsrRef, CsrError> {
        let cancelled = || CsrError::Cancelled {
            name: req.name.clone().unwrap_or_else(|| "(new)".into()),
        };
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let agent = self.agent_for(cancel);
        match self.create_on(&agent, req) {
            Err(_) if cancel.is_cancelled() => Err(cancelled()),
            other => other,
        }
    }

    fn wait_for_certificate(
        &self,
        csr: &CsrRef,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<Vec<u8>, CsrError> {
        let cancelled = || CsrError::Cancelled {
            name: csr.name.clone(),
        };
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        // The wait runs on one agent; cancelling marks it dead and shuts it down, which
        // interrupts a read blocked in another thread at once. A later call on this client gets
        // a fresh agent.
        let agent = self.agent_for(cancel);
        let started = Instant::now();
        // A huge timeout (Duration::MAX) means "practically forever", not an overflow.
        let far = |d: Duration| {
            started
                .checked_add(d)
                .or_else(|| started.checked_add(Duration::from_secs(1 << 32)))
                .unwrap_or(started)
        };
        let mut waiter = Waiter {
            client: self,
            agent,
            csr,
            started,
            deadline: far(timeout),
            warn_at: far(Duration::try_from_secs_f64(
                timeout.as_secs_f64() * APPROVED_NOT_ISSUED_WARN_FRACTION,
            )
            .unwrap_or(timeout)),
            timeout,
            cancel,
            progress: WaitProgress::Unseen,
            last_error: None,
            warned: false,
            backoff: RelistBackoff::new(self.retry_interval),
        };
        match waiter.run() {
            Err(_) if cancel.is_cancelled() => Err(cancelled()),
            other => other,
        }
    }
}

/// The fraction of the wait timeout after which a request that is approved but still has no
/// certificate is logged as a warning (once per wait): one half.
pub const APPROVED_NOT_ISSUED_WARN_FRACTION: f64 = 0.5;

/// One wait: list, then watch, until a verdict.
struct Waiter<'a> {
    client: &'a KubeCsrClient,
    /// The agent the cancel callback shuts down; every request of this wait goes through it.
    agent: Agent,
    csr: &'a CsrRef,
    started: Instant,
    deadline: Instant,
    /// When an approved request without a certificate is worth a warning.
    warn_at: Instant,
    timeout: Duration,
    cancel: &'a Cancel,
    /// What the last list item or watch event for our request showed.
    progress: WaitProgress,
    /// The last list or watch error with no successful list or watch after it.
    last_error: Option<CsrError>,
    /// Whether the approved-but-not-issued warning was logged.
    warned: bool,
    /// The pause before each re-list.
    backoff: RelistBackoff,
}

enum WatchEnd {
    /// The CSR was issued.
    Issued(Vec<u8>),
    /// The server ended the watch cleanly (or the wait cut it at the warning point): resume
    /// from the last resourceVersion at once.
    Closed,
    /// The watch must be given up and the CSR listed again after the backoff pause, or after
    /// this much if longer (a server's `Retry-After`): 410 Expired/Gone, an error, a very
    /// short watch.
    Relist(Duration),
}

/// A list round that did not give a list.
enum ListFailed {
    /// A protocol violation, or the wait's end: give up.
    Fatal(CsrError),
    /// Errors worth retrying; list again after the backoff pause or after this much, if longer.
    Retry(Duration),
}

impl Waiter<'_> {
    fn name(&self) -> &str {
        &self.csr.name
    }

    /// `Cancelled` or `Timeout` when the wait must stop.
    fn check(&self) -> Result<(), CsrError> {
        if self.cancel.is_cancelled() {
            return Err(CsrError::Cancelled {
                name: self.csr.name.clone(),
            });
        }
        if Instant::now() >= self.deadline {
            return Err(self.timed_out());
        }
        Ok(())
    }

    fn timed_out(&self) -> CsrError {
        CsrError::Timeout {
            name: self.csr.name.clone(),
            waited: self.timeout,
            progress: self.progress.clone(),
            last_error: self.last_error.as_ref().map(|e| Box::new(clone_error(e))),
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Records a list or watch error (after a debug line): the cause a timeout reports.
    fn failed(&mut self, e: CsrError) {
        log::debug!("waiting for {:?}: {e}", self.name());
        self.last_error = Some(e);
    }

    /// Sleeps `d` on the client's clock (at most until the deadline), waking at once on cancel.
    fn pause(&self, d: Duration) -> Result<(), CsrError> {
        let d = d.min(self.remaining());
        let timer = self.client.clock.after(d);
        let cancelled = self.cancel.receiver();
        let deadline = crossbeam_channel::at(self.deadline);
        // Cancel first, so that a cancel always wins a tie with the timer.
        crossbeam_channel::select_biased! {
            recv(cancelled) -> _ => {
                return Err(CsrError::Cancelled {
                    name: self.csr.name.clone(),
                });
            }
            recv(timer.receiver()) -> _ => {}
            recv(deadline) -> _ => {}
        }
        self.check()
    }

    /// The reflector's pause before a re-list (see the `backoff` module), at least `at_least`.
    fn backoff(&mut self, at_least: Duration) -> Result<(), CsrError> {
        let d = self
            .backoff
            .next(self.client.clock.now(), &mut rand::rng())
            .max(at_least);
        log::debug!(
            "listing certificate signing request {:?} again in {}",
            self.name(),
            pki::fmt_duration(d)
        );
        self.pause(d)
    }

    /// Takes note of one object seen for our name: its verdict, and what the wait now knows.
    fn observe(&mut self, obj: &CertificateSigningRequest) -> Result<Option<Vec<u8>>, CsrError> {
        match judge(self.csr, obj)? {
            Judged::Issued(cert) => Ok(Some(cert)),
            Judged::Waiting(progress) => {
                if let WaitProgress::ApprovedNotIssued { .. } = progress {
                    log::debug!(
                        "certificate signing request {:?} is approved, waiting to be issued",
                        self.name()
                    );
                }
                self.progress = progress;
                self.maybe_warn();
                Ok(None)
            }
        }
    }

    /// Logs once that an approved request has no certificate yet, when the wait has passed
    /// [`APPROVED_NOT_ISSUED_WARN_FRACTION`] of its timeout.
    fn maybe_warn(&mut self) {
        if self.warned || Instant::now() < self.warn_at {
            return;
        }
        if let WaitProgress::ApprovedNotIssued { signer_name } = &self.progress {
            self.warned = true;
            log::warn!(
                "certificate signing request {:?} is approved but not issued after {} of {}: is a signer running for {}?",
                self.csr.name,
                pki::fmt_duration(self.started.elapsed()),
                pki::fmt_duration(self.timeout),
                signer_name
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("this signer")
            );
        }
    }

    /// How long until the warning point, while it is ahead: a watch open then ends there (and
    /// is resumed at once), so that a request approved but not issued meanwhile is warned
    /// about on time. Costs one more watch in a wait that lasts past the point; none in one
    /// that ends before.
    fn until_warning(&self) -> Option<Duration> {
        let ahead = self.warn_at.saturating_duration_since(Instant::now());
        (!self.warned && !ahead.is_zero()).then_some(ahead)
    }

    fn run(&mut self) -> Result<Vec<u8>, CsrError> {
        let first = self.csr.api_version;
        let versions = [first, other_version(first)];
        // None before the first list; then the least pause before the next one.
        let mut relist_after: Option<Duration> = None;
        // A request just created is watched from its creation's version, without a list.
        let mut created_at = Some(self.csr.resource_version.clone()).filter(|rv| !rv.is_empty());
        'relist: loop {
            if let Some(at_least) = relist_after.take() {
                self.backoff(at_least)?;
            }
            let unlisted = created_at.is_some();
            let (version, mut rv) = match created_at.take() {
                Some(rv) => (first, rv),
                None => match self.list_round(&versions) {
                    Ok((version, list)) => match self.observe_list(&list)? {
                        Some(cert) => return Ok(cert),
                        None => (version, list.metadata.resource_version.unwrap_or_default()),
                    },
                    Err(ListFailed::Fatal(e)) => return Err(e),
                    Err(ListFailed::Retry(at_least)) => {
                        relist_after = Some(at_least);
                        continue;
                    }
                },
            };
            loop {
                self.check()?;
                let end = self.watch(version, &mut rv)?;
                self.maybe_warn();
                match end {
                    WatchEnd::Issued(cert) => return Ok(cert),
                    WatchEnd::Closed => {
                        log::debug!(
                            "watch of {:?} ended, resuming at resourceVersion {rv:?}",
                            self.name()
                        );
                    }
                    // The watch from the create's version failed: list now (as a wait that
                    // listed first would have), after the server's Retry-After if any.
                    WatchEnd::Relist(at_least) if unlisted => {
                        self.pause(at_least)?;
                        continue 'relist;
                    }
                    WatchEnd::Relist(at_least) => {
                        relist_after = Some(at_least);
                        continue 'relist;
                    }
                }
            }
        }
    }

    /// Takes note of a list's item for our name: its certificate when issued, else what the wait
    /// now knows (`NotFound` when the list does not have it).
    fn observe_list(&mut self, list: &CsrList) -> Result<Option<Vec<u8>>, CsrError> {
        let mut found = false;
        for item in &list.items {
            if item.metadata.name.as_deref() == Some(self.name()) {
                found = true;
                if let Some(cert) = self.observe(item)? {
                    return Ok(Some(cert));
                }
            }
        }
        if !found {
            self.progress = WaitProgress::NotFound;
        }
        Ok(None)
    }

    /// Lists the CSR under the preferred version, then the other, until one answers. Protocol
    /// violations end the wait at once.
    fn list_round(
        &mut self,
        versions: &[ApiVersion; 2],
    ) -> Result<(ApiVersion, CsrList), ListFailed> {
        self.check().map_err(ListFailed::Fatal)?;
        let mut at_least = Duration::ZERO;
        // The round's cause: its first error that is not a 404, else its first error (a 404
        // from the other version only says that version is not served).
        let mut cause: Option<CsrError> = None;
        for &v in versions {
            match self
                .client
                .list(&self.agent, v, self.name(), self.remaining())
            {
                Ok(list) => {
                    self.last_error = None;
                    return Ok((v, list));
                }
                Err(e @ CsrError::InvalidResponse { .. }) => return Err(ListFailed::Fatal(e)),
                Err(e) => {
                    if let Some(ra) = e.retry_after() {
                        at_least = at_least.max(ra);
                    }
                    log::debug!("waiting for {:?}: {e}", self.name());
                    let not_found =
                        |e: &CsrError| e.api_error().is_some_and(ApiError::is_not_found);
                    if cause
                        .as_ref()
                        .is_none_or(|c| not_found(c) && !not_found(&e))
                    {
                        cause = Some(e);
                    }
                    self.last_error = cause.as_ref().map(clone_error);
                    self.check().map_err(ListFailed::Fatal)?;
                }
            }
        }
        Err(ListFailed::Retry(at_least))
    }

    fn watch_seconds(&self, until_warning: Option<Duration>) -> u64 {
        let wanted = match self.client.watch_timeout {
            Some(d) => d.as_secs(),
            None => rand::rng().random_range(300..600),
        };
        let ceil = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let mut secs = wanted.min(ceil(self.remaining()));
        if let Some(d) = until_warning {
            secs = secs.min(ceil(d));
        }
        secs.max(1)
    }

    fn watch(&mut self, version: ApiVersion, rv: &mut String) -> Result<WatchEnd, CsrError> {
        let until_warning = self.until_warning();
        let secs = self.watch_seconds(until_warning);
        let mut path = format!(
            "{}?watch=true&fieldSelector={}&allowWatchBookmarks=true&timeoutSeconds={secs}",
            collection(version),
            encode(&format!("metadata.name={}", self.name()))
        );
        if !rv.is_empty() {
            path.push_str("&resourceVersion=");
            path.push_str(&encode(rv));
        }
        // Ended by the wait itself at the warning point: resume, not an error.
        let cut_at_warning = |w: &Self| until_warning.is_some() && Instant::now() >= w.warn_at;
        let global = until_warning.map_or(self.remaining(), |d| d.min(self.remaining()));
        let resp = match self.client.get(
            &self.agent,
            "watch",
            &path,
            global,
            Some(watch_read_timeout(secs)),
        ) {
            Ok(r) => r,
            Err(e) => {
                if cut_at_warning(self) {
                    return Ok(WatchEnd::Closed);
                }
                self.failed(e);
                self.check()?;
                return Ok(WatchEnd::Relist(Duration::ZERO));
            }
        };
        if !resp.status().is_success() {
            let e = self.client.api_error("watch", &path, resp);
            let retry_after = match e.api_error() {
                Some(api) if api.is_expired() => {
                    log::debug!("watch of {:?} expired, listing again", self.name());
                    Duration::ZERO
                }
                Some(api) => api.retry_after.unwrap_or_default(),
                None => return Err(e),
            };
            self.failed(e);
            return Ok(WatchEnd::Relist(retry_after));
        }
        self.last_error = None;

        let limit = self.client.max_watch_event_size;
        let started = Instant::now();
        let mut events = 0usize;
        let mut reader = BufReader::with_capacity(64 * 1024, resp.into_body().into_reader());
        let mut line = Vec::new();
        loop {
            if line.capacity() > 1 << 20 {
                line = Vec::new(); // keep memory flat after one large event
            }
            line.clear();
            let read = (&mut reader)
                .take(limit as u64 + 1)
                .read_until(b'\n', &mut line);
            match read {
                Err(e) => {
                    self.check()?;
                    if cut_at_warning(self) {
                        // A partial event is sent again by the next watch from `rv`.
                        return Ok(WatchEnd::Closed);
                    }
                    if !line.is_empty() {
                        // client-go's stream watcher takes a stream cut inside an event as
                        // its end: the reflector watches again after its pause.
                        self.failed(CsrError::InvalidResponse {
                            op: "watch",
                            message: format!(
                                "watch of {:?} broke off inside an event after {} bytes: {e}",
                                self.name(),
                                line.len()
                            ),
                        });
                        return Ok(WatchEnd::Relist(Duration::ZERO));
                    }
                    self.failed(CsrError::Transport {
                        op: "watch",
                        request: format!("reading the watch of {:?}", self.name()),
                        source: Box::new(e),
                    });
                    return Ok(WatchEnd::Relist(Duration::ZERO));
                }
                Ok(0) => {
                    if events == 0 && started.elapsed() < SHORT_WATCH && !cut_at_warning(self) {
                        // client-go's "very short watch": back off and list again.
                        log::debug!("watch of {:?} ended at once without an event", self.name());
                        return Ok(WatchEnd::Relist(Duration::ZERO));
                    }
                    return Ok(WatchEnd::Closed);
                }
                Ok(_) => {}
            }
            if line.last() != Some(&b'\n') {
                if line.len() > limit {
                    return Err(CsrError::InvalidResponse {
                        op: "watch",
                        message: format!(
                            "watch event of {:?} is larger than {limit} bytes",
                            self.name()
                        ),
                    });
                }
                // Cut inside an event: as a broken stream above.
                self.failed(CsrError::InvalidResponse {
                    op: "watch",
                    message: format!(
                        "watch of {:?} ended inside an event ({} bytes without a newline)",
                        self.name(),
                        line.len()
                    ),
                });
                return Ok(WatchEnd::Relist(Duration::ZERO));
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            events += 1;
            let event: WatchEvent = match serde_json::from_slice(text) {
                Ok(event) => event,
                Err(e) => {
                    // client-go's stream watcher reports an event it cannot decode as a watch
                    // error; its reflector lists and watches again after the backoff pause.
                    log::warn!("malformed watch event for {:?}: {e}", self.name());
                    self.failed(CsrError::InvalidResponse {
                        op: "watch",
                        message: format!("malformed watch event: {e}"),
                    });
                    return Ok(WatchEnd::Relist(Duration::ZERO));
                }
            };
            if event.type_ == "ERROR" {
                check_type_value("watch", &event.object, "Status", None)?;
            } else if matches!(
                event.type_.as_str(),
                "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK"
            ) {
                check_type_value("watch", &event.object, api::KIND_CSR, Some(version))?;
            }
            if let Some(v) = event
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(|v| v.as_str())
                && event.type_ != "ERROR"
            {
                *rv = v.to_owned();
            }
            match event.type_.as_str() {
                "ADDED" | "MODIFIED" => {
                    let obj = csr_from_value(event.object)?;
                    if obj.metadata.name.as_deref() == Some(self.name())
                        && let Some(cert) = self.observe(&obj)?
                    {
                        return Ok(WatchEnd::Issued(cert));
                    }
                }
                "DELETED" => {
                    let obj = csr_from_value(event.object)?;
                    if obj.metadata.name.as_deref() == Some(self.name()) {
                        return Err(CsrError::Deleted {
                            name: self.csr.name.clone(),
                        });
                    }
                }
                "BOOKMARK" => {}
                "ERROR" => {
                    let status: Status = serde_json::from_value(event.object).map_err(|e| {
                        CsrError::InvalidResponse {
                            op: "watch",
                            message: format!("malformed Status in watch ERROR event: {e}"),
                        }
                    })?;
                    let code = status
                        .code
                        .and_then(|c| u16::try_from(c).ok())
                        .filter(|c| (100..600).contains(c))
                        .unwrap_or(500);
                    let err = api_error_from_status(code, None, status);
                    let retry_after = if err.is_expired() {
                        log::debug!("watch of {:?} expired, listing again", self.name());
                        Duration::ZERO
                    } else {
                        err.retry_after.unwrap_or_default()
                    };
                    self.failed(CsrError::Api {
                        op: "watch",
                        path: path.clone(),
                        error: err,
                    });
                    return Ok(WatchEnd::Relist(retry_after));
                }
                other => {
                    return Err(CsrError::InvalidResponse {
                        op: "watch",
                        message: format!("unknown watch event type {other:?}"),
                    });
                }
            }
        }
    }
}

/// A copy of a list or watch error for [`CsrError::Timeout`]'s source. Transport errors keep
/// their request and the text of their cause (a ureq error, not cloneable).
fn clone_error(e: &CsrError) -> CsrError {
    match e {
        CsrError::Api { op, path, error } => CsrError::Api {
            op,
            path: path.clone(),
            error: error.clone(),
        },
        CsrError::Transport {
            op,
            request,
            source,
        } => CsrError::Transport {
            op,
            request: request.clone(),
            source: Box::new(CauseText(Chain(&**source).to_string())),
        },
        other => CsrError::InvalidResponse {
            op: "watch",
            message: Chain(other).to_string(),
        },
    }
}

/// What one observed object says.
enum Judged {
    /// Approved, with a certificate.
    Issued(Vec<u8>),
    /// Not yet: pending, or approved without a certificate.
    Waiting(WaitProgress),
}

/// The verdict on one observed object, as client-go's `WaitForCertificate`: another uid is an
/// error; then every condition is read, a `Denied` or `Failed` one ends the wait with that
/// error whatever else is set (so `[Approved, Denied]` with a certificate is denied); only
/// with an `Approved` condition and none of those is a non-empty certificate taken. A
/// condition's `status` field is not read, as in client-go.
fn judge(csr: &CsrRef, obj: &CertificateSigningRequest) -> Result<Judged, CsrError> {
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    if uid != csr.uid {
        return Err(CsrError::UidChanged {
            name: csr.name.clone(),
            expected: csr.uid.clone(),
            got: uid.to_owned(),
        });
    }
    let signer_name = obj.spec.signer_name.clone();
    let Some(status) = &obj.status else {
        return Ok(Judged::Waiting(WaitProgress::Pending { signer_name }));
    };
    let mut approved = false;
    for c in &status.conditions {
        let reason = || c.reason.clone().unwrap_or_default();
        let message = || c.message.clone().unwrap_or_default();
        match c.type_.as_str() {
            api::CONDITION_DENIED => {
                return Err(CsrError::Denied {
                    name: csr.name.clone(),
                    reason: reason(),
                    message: message(),
                });
            }
            api::CONDITION_FAILED => {
                return Err(CsrError::Failed {
                    name: csr.name.clone(),
                    reason: reason(),
                    message: message(),
                });
            }
            api::CONDITION_APPROVED => approved = true,
            _ => {}
        }
    }
    if !approved {
        return Ok(Judged::Waiting(WaitProgress::Pending { signer_name }));
    }
    match status.certificate.as_ref().filter(|c| !c.is_empty()) {
        Some(cert) => Ok(Judged::Issued(cert.clone())),
        None => Ok(Judged::Waiting(WaitProgress::ApprovedNotIssued {
            signer_name,
        })),
    }
}

/// Checks an answer's `kind` and `apiVersion` against what was asked for: `want_kind`, and
/// with `version` that API version (the one of the request's path: a v1 path wants
/// `certificates.k8s.io/v1`, a v1beta1 path `…/v1beta1`). An absent (or null) field is taken
/// as the expected one, as client-go's decoder defaults a missing kind from the type it decodes
/// into (list items carry none); a present one that differs is a protocol violation.
fn check_type(
    op: &'static str,
    kind: Option<&str>,
    api_version: Option<&str>,
    want_kind: &str,
    version: Option<ApiVersion>,
) -> Result<(), CsrError> {
    let kind_ok = kind.is_none_or(|k| k == want_kind);
    let version_ok = match version {
        Some(v) => api_version.is_none_or(|a| a == v.as_str()),
        None => true,
    };
    if kind_ok && version_ok {
        return Ok(());
    }
    let want = match version {
        Some(v) => format!("a {want_kind} of {}", v.as_str()),
        None => format!("a {want_kind}"),
    };
    Err(CsrError::InvalidResponse {
        op,
        message: format!(
            "expected {want}, got a {} of {}",
            kind.unwrap_or(want_kind),
            api_version.unwrap_or("no apiVersion")
        ),
    })
}

/// [`check_type`] on raw JSON: `kind` and `apiVersion` must be strings when present.
fn check_type_value(
    op: &'static str,
    obj: &serde_json::Value,
    want_kind: &str,
    version: Option<ApiVersion>,
) -> Result<(), CsrError> {
    let field = |name: &str| -> Result<Option<&str>, CsrError> {
        match obj.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(CsrError::InvalidResponse {
                op,
                message: format!("expected a {want_kind}, got {name} {other}"),
            }),
        }
    };
    if !obj.is_object() {
        return Err(CsrError::InvalidResponse {
            op,
            message: format!("expected a {want_kind} object, got {obj}"),
        });
    }
    check_type(op, field("kind")?, field("apiVersion")?, want_kind, version)
}

/// Whether an existing CSR may be adopted for `req` (client-go `ensureCompatible`): the
/// subjects are equal, the signer names are equal unless one is empty, the existing request
/// carries our public key (its self-signature verifies, so it was signed with our key), and
/// no certificate already issued for it has expired at `now`. The error text is client-go's
/// where it has one.
pub(crate) fn ensure_compatible(
    req: &CsrRequest,
    orig: &CertificateSigningRequest,
    now: std::time::SystemTime,
) -> Result<(), String> {
    let new = pki::parse_csr_pem(req.csr_pem.as_bytes())
        .map_err(|e| format!("unable to parse new csr: {e}"))?;
    let old = pki::parse_csr_pem(&orig.spec.request)
        .map_err(|e| format!("unable to parse original csr: {e}"))?;
    if new.subject_der != old.subject_der {
        return Err(format!(
            "csr subjects differ: new: CN={:?} O={:?}, orig: CN={:?} O={:?}",
            new.common_name, new.organizations, old.common_name, old.organizations
        ));
    }
    let new_signer = req.signer_name.as_str();
    let old_signer = orig.spec.signer_name.as_deref().unwrap_or_default();
    if !new_signer.is_empty() && !old_signer.is_empty() && new_signer != old_signer {
        return Err(format!(
            "csr signerNames differ: new {new_signer:?}, orig: {old_signer:?}"
        ));
    }
    let ours = if req.public_key_der.is_empty() {
        &new.public_key_der
    } else {
        &req.public_key_der
    };
    if &old.public_key_der != ours {
        return Err(
            "error validating signature of the existing csr against our key: it was made with another key"
                .into(),
        );
    }
    if let Some(pem) = orig
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .filter(|c| !c.is_empty())
    {
        let chain = pki::parse_chain_pem(pem)
            .map_err(|e| format!("unable to parse the existing csr's certificate: {e}"))?;
        for der in chain {
            let info = CertInfo::from_der(&der)
                .map_err(|e| format!("unable to parse the existing csr's certificate: {e}"))?;
            if now > info.not_after {
                return Err(format!(
                    "one of the certificates for the csr has expired: {}",
                    pki::fmt_time(info.not_after)
                ));
            }
        }
    }
    Ok(())
}

/// Turns a non-2xx answer into an [`ApiError`]: a `Status` body (non-empty `status`, kind
/// `Status` or absent) gives its reason, message and `retryAfterSeconds`; any other body gives
/// a generic error with the code's standard reason and `is_status: false` (apimachinery
/// `NewGenericServerResponse`, whose `UnexpectedServerResponse` cause makes the server count as
/// unhealthy). A `Retry-After` header wins over the body.
pub(crate) fn parse_api_error(code: u16, retry_after: Option<Duration>, body: &[u8]) -> ApiError {
    if let Ok(status) = serde_json::from_slice::<Status>(body)
        && status.status.as_deref().is_some_and(|s| !s.is_empty())
        && status.kind.as_deref().is_none_or(|k| k == "Status")
    {
        return api_error_from_status(code, retry_after, status);
    }
    let snippet: String = String::from_utf8_lossy(&body[..body.len().min(200)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let snippet = snippet.trim();
    ApiError {
        code,
        reason: api::reason_for_code(code).to_owned(),
        message: if snippet.is_empty() {
            format!("the server responded with HTTP {code} and no Status body")
        } else {
            format!("the server responded with HTTP {code} and no Status body: {snippet:?}")
        },
        is_status: false,
        retry_after,
    }
}

fn api_error_from_status(
    http_code: u16,
    retry_after: Option<Duration>,
    status: Status,
) -> ApiError {
    let code = status
        .code
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (100..600).contains(c))
        .unwrap_or(http_code);
    let body_retry = status
        .details
        .as_ref()
        .and_then(|d| d.retry_after_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    ApiError {
        code,
        reason: status.reason.unwrap_or_default(),
        message: status.message.unwrap_or_default(),
        is_status: true,
        retry_after: retry_after.or(body_retry),
    }
}

fn read_limited(
    op: &'static str,
    path: &str,
    resp: &mut Response<ureq::Body>,
    limit: usize,
) -> Result<Vec<u8>, CsrError> {
    resp.body_mut()
        .with_config()
        .limit(limit as u64)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => CsrError::InvalidResponse {
                op,
                message: format!("the answer from {path} is larger than {limit} bytes"),
            },
            other => transport_error(op, "reading", path, other),
        })
}

fn transport_error(op: &'static str, method: &str, url: &str, e: ureq::Error) -> CsrError {
    CsrError::Transport {
        op,
        request: format!("{method} {url}"),
        source: Box::new(e),
    }
}

/// Decodes a create or get answer: a `CertificateSigningRequest` of `version`.
fn decode_csr(
    op: &'static str,
    bytes: &[u8],
    version: ApiVersion,
) -> Result<CertificateSigningRequest, CsrError> {
    let obj: CertificateSigningRequest =
        serde_json::from_slice(bytes).map_err(|e| CsrError::InvalidResponse {
            op,
            message: format!("malformed CertificateSigningRequest: {e}"),
        })?;
    check_type(
        op,
        obj.kind.as_deref(),
        obj.api_version.as_deref(),
        api::KIND_CSR,
        Some(version),
    )?;
    Ok(obj)
}

fn csr_from_value(v: serde_json::Value) -> Result<CertificateSigningRequest, CsrError> {
    serde_json::from_value(v).map_err(|e| CsrError::InvalidResponse {
        op: "watch",
        message: format!("malformed CertificateSigningRequest in watch event: {e}"),
    })
}

fn csr_ref(
    op: &'static str,
    obj: &CertificateSigningRequest,
    version: ApiVersion,
) -> Result<CsrRef, CsrError> {
    let missing = |field: &str| CsrError::InvalidResponse {
        op,
        message: format!("the CertificateSigningRequest has no {field}"),
    };
    let name = obj
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| missing("metadata.name"))?;
    let uid = obj
        .metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| missing("metadata.uid"))?;
    Ok(CsrRef {
        name,
        uid,
        api_version: version,
        resource_version: String::new(),
    })
}

fn collection(v: ApiVersion) -> String {
    format!("/apis/{}/certificatesigningrequests", v.as_str())
}

fn other_version(v: ApiVersion) -> ApiVersion {
    match v {
        ApiVersion::V1 => ApiVersion::V1beta1,
        ApiVersion::V1beta1 => ApiVersion::V1,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The decoding steps of the client's answers, for the fuzz targets (feature `fuzzing`): each
/// runs the same helpers, in the same order, as the request or the wait that reads those bytes.
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing {
    use super::*;

    /// A create or get answer ([`KubeCsrClient::post_csr`], [`KubeCsrClient::get_csr`]), then
    /// the adoption check of an existing request against `req` ([`ensure_compatible`]).
    pub(crate) fn answer(bytes: &[u8], version: ApiVersion, req: &CsrRequest) {
        if let Ok(obj) = decode_csr("create", bytes, version) {
            let _ = csr_ref("create", &obj, version);
            let _ = ensure_compatible(req, &obj, std::time::SystemTime::now());
            let csr = CsrRef {
                name: obj.metadata.name.clone().unwrap_or_default(),
                uid: obj.metadata.uid.clone().unwrap_or_default(),
                api_version: version,
                resource_version: String::new(),
            };
            let _ = judge(&csr, &obj);
        }
    }

    /// A list answer, as [`KubeCsrClient::list`] then the wait's look at its items.
    pub(crate) fn list(bytes: &[u8], version: ApiVersion, csr: &CsrRef) {
        let Ok(list) = serde_json::from_slice::<CsrList>(bytes) else {
            return;
        };
        if check_type(
            "list",
            list.kind.as_deref(),
            list.api_version.as_deref(),
            api::KIND_CSR_LIST,
            Some(version),
        )
        .is_err()
        {
            return;
        }
        for item in &list.items {
            if check_type(
                "list",
                item.kind.as_deref(),
                item.api_version.as_deref(),
                api::KIND_CSR,
                Some(version),
            )
            .is_err()
            {
                return;
            }
        }
        for item in &list.items {
            if item.metadata.name.as_deref() == Some(csr.name.as_str()) {
                let _ = judge(csr, item);
            }
        }
    }

    /// An error answer with HTTP status `code` ([`parse_api_error`]).
    pub(crate) fn error(code: u16, body: &[u8]) {
        let e = parse_api_error(code, None, body);
        let _ = (e.is_expired(), e.is_not_found(), e.is_already_exists());
    }

    /// A watch body: split into lines under `limit` bytes and each event decoded as in the
    /// wait's watch loop ([`Wait::watch`]).
    pub(crate) fn watch(body: &[u8], version: ApiVersion, csr: &CsrRef, limit: usize) {
        let mut reader = BufReader::new(body);
        let mut line = Vec::new();
        let mut rv = String::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(limit as u64 + 1)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.last() != Some(&b'\n') {
                return;
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let Ok(event) = serde_json::from_slice::<WatchEvent>(text) else {
                return;
            };
            let checked = if event.type_ == "ERROR" {
                check_type_value("watch", &event.object, "Status", None)
            } else if matches!(
                event.type_.as_str(),
                "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK"
            ) {
                check_type_value("watch", &event.object, api::KIND_CSR, Some(version))
            } else {
                Ok(())
            };
            if checked.is_err() {
                return;
            }
            if let Some(v) = event
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(|v| v.as_str())
                && event.type_ != "ERROR"
            {
                v.clone_into(&mut rv);
            }
            match event.type_.as_str() {
                "ADDED" | "MODIFIED" | "DELETED" => {
                    let Ok(obj) = csr_from_value(event.object) else {
                        return;
                    };
                    if obj.metadata.name.as_deref() == Some(csr.name.as_str())
                        && (event.type_ == "DELETED"
                            || !matches!(judge(csr, &obj), Ok(Judged::Waiting(_))))
                    {
                        return;
                    }
                }
                "BOOKMARK" => {}
                "ERROR" => {
                    let Ok(status) = serde_json::from_value::<Status>(event.object) else {
                        return;
                    };
                    let code = status
                        .code
                        .and_then(|c| u16::try_from(c).ok())
                        .filter(|c| (100..600).contains(c))
                        .unwrap_or(500);
                    let err = api_error_from_status(code, None, status);
                    let _ = (err.is_expired(), err.retry_after);
                    return;
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{KeyAlgorithm, PrivateKey, build_csr_pem};
    use crate::template::CsrTemplate;
    use std::time::SystemTime;

    fn request(key: &PrivateKey, signer: &str) -> CsrRequest {
        let t = CsrTemplate::new("something").with_organization("test");
        CsrRequest {
            name: Some("fixed".into()),
            csr_pem: build_csr_pem(&t, key).unwrap(),
            signer_name: signer.into(),
            usages: vec![],
            expiration: None,
            public_key_der: key.public_key_der(),
        }
    }

    fn existing(req: &CsrRequest, signer: &str) -> CertificateSigningRequest {
        CertificateSigningRequest {
            metadata: api::ObjectMeta {
                name: Some("fixed".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: api::CsrSpec {
                request: req.csr_pem.as_bytes().to_vec(),
                signer_name: (!signer.is_empty()).then(|| signer.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// client-go csr_test.go TestEnsureCompatible: an RSA-2048 key (a fixture, as the ring
    /// backend cannot generate RSA), a CSR for CN "something", O "test", the same request on
    /// both sides.
    #[test]
    fn ensure_compatible_table() {
        let key =
            PrivateKey::from_pem(include_bytes!("../../tests/fixtures/two-certs.key")).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::Rsa { bits: 2048 });
        let now = SystemTime::now();
        let cases: [(&str, &str, &str, Result<(), String>); 4] = [
            (
                "nil signerName on 'new' matches any signerName on 'orig'",
                "",
                "example.com/test",
                Ok(()),
            ),
            (
                "nil signerName on 'orig' matches any signerName on 'new'",
                "example.com/test",
                "",
                Ok(()),
            ),
            (
                "signerName on 'orig' matches signerName on 'new'",
                "example.com/test",
                "example.com/test",
                Ok(()),
            ),
            (
                "signerName on 'orig' does not match signerName on 'new'",
                "example.com/test",
                "example.com/not-test",
                Err(r#"csr signerNames differ: new "example.com/test", orig: "example.com/not-test""#.into()),
            ),
        ];
        for (name, new_signer, orig_signer, want) in cases {
            let req = request(&key, new_signer);
            let orig = existing(&req, orig_signer);
            assert_eq!(ensure_compatible(&req, &orig, now), want, "{name}");
        }
    }

    #[test]
    fn ensure_compatible_rejects_other_subject_other_key_and_expired_cert() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let now = SystemTime::now();
        let req = request(&key, "example.com/test");

        let mut other_subject = existing(&req, "example.com/test");
        other_subject.spec.request = build_csr_pem(&CsrTemplate::new("else"), &key)
            .unwrap()
            .into_bytes();
        let e = ensure_compatible(&req, &other_subject, now).unwrap_err();
        assert!(e.starts_with("csr subjects differ"), "{e}");

        let mut other_key = existing(&req, "example.com/test");
        other_key.spec.request = request(&other, "").csr_pem.into_bytes();
        let e = ensure_compatible(&req, &other_key, now).unwrap_err();
        assert!(e.contains("another key"), "{e}");

        let ca = crate::pki::CertificateAuthority::for_tests("ca").unwrap();
        let t = CsrTemplate::new("something").with_organization("test");
        let day = Duration::from_secs(86_400);
        let expired = ca
            .issue_pem(&t, &key, &[], now - 3 * day, now - day)
            .unwrap();
        let mut issued = existing(&req, "example.com/test");
        issued.status = Some(api::CsrStatus {
            conditions: vec![],
            certificate: Some(expired.into_bytes()),
        });
        let e = ensure_compatible(&req, &issued, now).unwrap_err();
        assert!(
            e.starts_with("one of the certificates for the csr has expired"),
            "{e}"
        );

        let valid = ca.issue_pem(&t, &key, &[], now - day, now + day).unwrap();
        issued.status = Some(api::CsrStatus {
            conditions: vec![],
            certificate: Some(valid.into_bytes()),
        });
        assert_eq!(ensure_compatible(&req, &issued, now), Ok(()));
    }

    #[test]
    fn status_bodies_and_generic_bodies() {
        let st = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"nope","reason":"Forbidden","code":403,"details":{"retryAfterSeconds":7}}"#;
        let e = parse_api_error(403, None, st);
        assert!(e.is_status && e.is_forbidden(), "{e:?}");
        assert_eq!(e.message, "nope");
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        let e = parse_api_error(429, Some(Duration::from_secs(3)), st);
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)), "header wins");

        let e = parse_api_error(404, None, b"404 page not found\n");
        assert!(!e.is_status && e.is_not_found(), "{e:?}");
        assert!(e.message.contains("404 page not found"), "{}", e.message);
        let e = parse_api_error(502, None, br#"{"kind":"Other","status":"x"}"#);
        assert!(!e.is_status);
        assert_eq!(e.reason, "Unknown");
        let e = parse_api_error(401, None, b"");
        assert!(!e.is_status && e.is_unauthorized());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("metadata.name=csr-a b"), "metadata.name%3Dcsr-a%20b");
    }
}
