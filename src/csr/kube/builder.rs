//! [`KubeCsrClientBuilder`]: the settings of a client (server, TLS, credentials, proxy,
//! timeouts, limits) and how a client is built from them, from a certificate, or per attempt
//! through a factory.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustls::RootCertStore;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use ureq::Agent;

use super::{
    AgentSlot, AgentSpec, DEFAULT_MAX_LIST_SIZE, DEFAULT_MAX_OBJECT_SIZE,
    DEFAULT_MAX_WATCH_EVENT_SIZE, KubeCsrClient,
};
use crate::clock::{Clock, SystemClock};
use crate::csr::ConfigError;
use crate::csr::CsrClient;
use crate::csr::http::{NoServerVerification, RootsVerifier};
use crate::csr::proxy::ProxyEnv;
use crate::pki::{self, Certificate};

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
            retry_interval: crate::csr::backoff::INITIAL,
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
    ) -> impl Fn(Option<&Certificate>) -> Result<Box<dyn CsrClient>, crate::csr::BoxError>
    + Send
    + Sync
    + 'static {
        move |cert| match self.client_for(cert) {
            Ok(c) => Ok(Box::new(c) as Box<dyn CsrClient>),
            Err(e) => Err(Box::new(e) as crate::csr::BoxError),
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
