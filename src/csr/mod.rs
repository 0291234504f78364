//! The CSR API seam: what the manager asks of a CSR client, the errors it can get back, and how
//! those errors map to "is the server healthy?".
//!
//! [`CsrClient`] has two calls, as client-go's `csr` package: create a request, then wait for
//! its certificate. The manager builds one client per rotation attempt through the config's
//! factory, so a client may hold the credentials of the certificate current at that moment.
//! Waits are cancellable through [`Cancel`]: the manager cancels when it stops, when the template
//! changes, and when its own (clock-driven) wait timeout fires.

pub mod api;
mod backoff;
mod http;
mod kube;
mod proxy;

pub use crate::usages::{KeyUsage, UnknownKeyUsage};
#[cfg(feature = "fuzzing")]
pub(crate) use kube::fuzzing;
pub use kube::{
    APPROVED_NOT_ISSUED_WARN_FRACTION, DEFAULT_MAX_LIST_SIZE, DEFAULT_MAX_OBJECT_SIZE,
    DEFAULT_MAX_WATCH_EVENT_SIZE, KubeCsrClient, KubeCsrClientBuilder,
};
pub(crate) use kube::{PemSource, absolute};

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

/// A boxed error from user code (factories, generators).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Builds a CSR client for one rotation attempt, given the current certificate (`None` when
/// there is none, or it has expired): with `Some`, a client may authenticate with it; with
/// `None`, with bootstrap credentials.
pub type ClientFactory = Arc<
    dyn Fn(Option<&crate::pki::Certificate>) -> Result<Box<dyn CsrClient>, BoxError> + Send + Sync,
>;

/// Errors of reading a kubeconfig or configuring a client from one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A kubeconfig file could not be read.
    #[error("cannot read kubeconfig {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A kubeconfig file is not valid YAML/JSON of the expected shape.
    #[error("cannot parse kubeconfig {}: {message}", path.display())]
    Parse {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// None of the candidate kubeconfig files exists.
    #[error("no kubeconfig found (looked at {searched})")]
    NotFound {
        /// The paths tried, comma-separated.
        searched: String,
    },
    /// No context was asked for and the kubeconfig has no `current-context`.
    #[error("kubeconfig has no current-context and no context was given")]
    NoCurrentContext,
    /// A context, cluster or user named by the kubeconfig does not exist.
    #[error("kubeconfig has no {kind} named {name:?}")]
    Missing {
        /// `context`, `cluster` or `user`.
        kind: &'static str,
        /// The name looked for.
        name: String,
    },
    /// The selected user or cluster uses a feature certrotate does not implement.
    #[error("kubeconfig {owner} uses {field:?}, which certrotate does not support; {hint}")]
    Unsupported {
        /// `user "name"` or `cluster "name"`.
        owner: String,
        /// The kubeconfig field (`exec`, `auth-provider`, `username`, …).
        field: &'static str,
        /// What to use instead.
        hint: &'static str,
    },
    /// A file named by the configuration (CA, client certificate, key, token) cannot be read.
    #[error("cannot read {what} {}", path.display())]
    ReadFile {
        /// `certificate authority`, `client certificate`, `client key` or `token file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A value is missing or invalid (server URL, CA PEM, certificate/key pair, …).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// Which setting.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// [`in_cluster`](KubeCsrClientBuilder::in_cluster) was called outside a pod.
    #[error("not running in a cluster: {message}")]
    NotInCluster {
        /// What is missing.
        message: String,
    },
}

/// The API version a CSR was created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    /// `certificates.k8s.io/v1`
    V1,
    /// `certificates.k8s.io/v1beta1`
    V1beta1,
}

impl ApiVersion {
    /// `certificates.k8s.io/v1` or `…/v1beta1`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ApiVersion::V1 => api::API_VERSION_V1,
            ApiVersion::V1beta1 => api::API_VERSION_V1BETA1,
        }
    }
}

/// What to request: one CSR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrRequest {
    /// A fixed object name, or `None` for `generateName: csr-` (the manager's default).
    pub name: Option<String>,
    /// The PEM `CERTIFICATE REQUEST`.
    pub csr_pem: String,
    /// Signer name (`kubernetes.io/kubelet-serving`, …); empty means none (v1beta1 only).
    pub signer_name: String,
    /// Requested usages.
    pub usages: Vec<KeyUsage>,
    /// Requested lifetime (`spec.expirationSeconds`), or `None` to leave it to the signer.
    pub requested_lifetime: Option<Duration>,
    /// The requesting key's DER `SubjectPublicKeyInfo`, to check an existing object before
    /// adopting it.
    pub public_key_der: Vec<u8>,
}

impl CsrRequest {
    /// The error of a create that `cancel` stopped: names the request, or `(new)` for one the
    /// server is to name.
    pub(crate) fn cancelled(&self) -> CsrError {
        CsrError::Cancelled {
            name: self.name.clone().unwrap_or_else(|| "(new)".into()),
        }
    }
}

/// A created CSR object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrRef {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`; the wait checks every event against it.
    pub uid: String,
    /// Which API version it lives under.
    pub api_version: ApiVersion,
    /// `metadata.resourceVersion` of the object as the create answered it, for a request this
    /// client has just created; empty when unknown (an adopted request, say). [`KubeCsrClient`]'s
    /// wait watches from it without listing first.
    pub resource_version: String,
}

/// Talks to a CSR API: creates requests and waits for their certificates (client-go
/// `csr.RequestCertificate` and `csr.WaitForCertificate`).
pub trait CsrClient: Send {
    /// Creates the CSR object and returns its name and uid. Returns [`CsrError::Cancelled`]
    /// within 100 ms of `cancel` firing, even when the server does not answer: the manager
    /// cancels on `stop()`, which therefore never waits for a hung create (it checks `cancel`
    /// itself before calling, so a cancel that fired before is never sent). Pass
    /// `&Cancel::new()` when nothing is to interrupt the call.
    ///
    /// # Errors
    /// Any [`CsrError`]; the manager maps it to health with
    /// [`CsrError::server_healthy_after_create`].
    fn create(&self, request: &CsrRequest, cancel: &Cancel) -> Result<CsrRef, CsrError>;

    /// Waits until the CSR is approved and issued and returns the PEM chain (leaf first).
    /// Ends early on Denied/Failed conditions, deletion or a uid change. Returns
    /// [`CsrError::Cancelled`] within 100 ms of `cancel` firing and [`CsrError::Timeout`] after
    /// `timeout` of its own waiting.
    ///
    /// # Errors
    /// Any [`CsrError`].
    fn wait_for_certificate(
        &self,
        csr: &CsrRef,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<Vec<u8>, CsrError>;
}

/// An error answer of the Kubernetes API (a `Status` body or a bare HTTP code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason`, or, when the body was not a Status, the reason client-go gives the code
    /// (apimachinery's `NewGenericServerResponse`: `AlreadyExists` for a 409 to a POST,
    /// `InternalError` for a 5xx it does not name, `Unknown` for its empty reason).
    pub reason: String,
    /// `Status.message`, or a description of the unexpected body.
    pub message: String,
    /// True when the body was a `Status` object; false for any other body (client-go then adds
    /// the cause `UnexpectedServerResponse`, which makes the server count as unhealthy).
    pub is_status: bool,
    /// The server's `Retry-After` (header or `details.retryAfterSeconds`), if any.
    pub retry_after: Option<Duration>,
}

/// The `Status.reason` values apimachinery knows (its `knownReasons`, k8s.io/apimachinery
/// v0.37.2): for any other reason, the empty one included, its predicates go by the HTTP code.
const KNOWN_REASONS: [&str; 19] = [
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Invalid",
    "ServerTimeout",
    "StorageReadError",
    "Timeout",
    "TooManyRequests",
    "BadRequest",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "InternalError",
    "Expired",
    "ServiceUnavailable",
];

impl ApiError {
    /// apimachinery's rule (`IsNotFound` and the like): the reason matches, or the reason is
    /// not one it knows and the code matches.
    fn is_reason(&self, reason: &str, code: u16) -> bool {
        self.reason == reason || (self.reason_is_unknown() && self.code == code)
    }

    fn reason_is_unknown(&self) -> bool {
        !KNOWN_REASONS.contains(&self.reason.as_str())
    }

    /// 401 Unauthorized (apimachinery's `IsUnauthorized`; so are the next two predicates: the
    /// reason, or an unknown reason and the code).
    pub fn is_unauthorized(&self) -> bool {
        self.is_reason("Unauthorized", 401)
    }

    /// 403 Forbidden.
    pub fn is_forbidden(&self) -> bool {
        self.is_reason("Forbidden", 403)
    }

    /// 404 NotFound.
    pub fn is_not_found(&self) -> bool {
        self.is_reason("NotFound", 404)
    }

    /// 409 AlreadyExists (reason only, as apimachinery).
    pub fn is_already_exists(&self) -> bool {
        self.reason == "AlreadyExists"
    }

    /// The resource version asked for is too old: reason `Expired`, or `Gone` (410 with an
    /// unknown reason), as the reflector's `IsResourceExpired(err) || IsGone(err)`.
    pub fn is_expired(&self) -> bool {
        self.reason == "Expired" || self.is_reason("Gone", 410)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {}, {})", self.message, self.code, self.reason)
    }
}

/// Errors from a [`CsrClient`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// The API answered with an error.
    #[error("cannot {op} certificate signing request at {path}: {error}")]
    Api {
        /// `create`, `retrieve`, `list` or `watch`.
        op: &'static str,
        /// The request path.
        path: String,
        /// The answer.
        error: ApiError,
    },
    /// The request did not get an answer (connection refused, TLS failure, reset, …).
    #[error("cannot {op} certificate signing request: {request}")]
    Transport {
        /// `create`, `retrieve`, `list` or `watch`.
        op: &'static str,
        /// The request that failed: the method and URL (`POST https://…`), or what was being
        /// read (`reading the watch of "csr-…"`).
        request: String,
        /// Why it failed: the HTTP client's error (connection refused, a TLS alert, …).
        #[source]
        source: BoxError,
    },
    /// No certificate came within the wait timeout. The message ends with a hint from what the
    /// wait last saw (see [`WaitProgress`]); when the last list or watch failed and nothing
    /// answered since, that error is the [`source`](std::error::Error::source) and the hint
    /// says the request could not be read.
    #[error(
        "timed out waiting for certificate signing request {name:?} after {}; {}",
        crate::pki::fmt_duration(*waited),
        timeout_hint(progress, last_error.is_some())
    )]
    Timeout {
        /// CSR name.
        name: String,
        /// How long it waited.
        waited: Duration,
        /// What the wait last saw of the request.
        progress: WaitProgress,
        /// The last error of a list or watch, when no list or watch answered after it: why the
        /// wait could not see the request.
        #[source]
        last_error: Option<Box<CsrError>>,
    },
    /// The wait was cancelled (stop or template change).
    #[error("waiting for certificate signing request {name:?} was cancelled")]
    Cancelled {
        /// CSR name.
        name: String,
    },
    /// The CSR was denied.
    #[error("certificate signing request {name:?} is denied, reason: {reason}, message: {message}")]
    Denied {
        /// CSR name.
        name: String,
        /// Condition reason.
        reason: String,
        /// Condition message.
        message: String,
    },
    /// The signer failed the CSR.
    #[error("certificate signing request {name:?} failed, reason: {reason}, message: {message}")]
    Failed {
        /// CSR name.
        name: String,
        /// Condition reason.
        reason: String,
        /// Condition message.
        message: String,
    },
    /// The CSR object was deleted while waiting.
    #[error("csr {name:?} was deleted")]
    Deleted {
        /// CSR name.
        name: String,
    },
    /// An object with the CSR's name but another uid appeared.
    #[error("csr {name:?} changed UIDs (expected {expected}, got {got})")]
    UidChanged {
        /// CSR name.
        name: String,
        /// The uid from create.
        expected: String,
        /// The uid seen.
        got: String,
    },
    /// The API answered with something that is not what the protocol allows.
    #[error("invalid response to {op} certificate signing request: {message}")]
    InvalidResponse {
        /// `create`, `retrieve`, `list` or `watch`.
        op: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A CSR with the requested name exists and cannot be adopted.
    #[error("retrieved csr is not compatible: {message}")]
    Incompatible {
        /// CSR name.
        name: String,
        /// Why.
        message: String,
    },
}

/// What a wait last saw of its CSR, for the hint of [`CsrError::Timeout`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitProgress {
    /// No list or watch answer showed the request (or the client does not tell).
    #[default]
    Unseen,
    /// The last list answered without the request: it does not exist (any more). Hint: "it
    /// was not found".
    NotFound,
    /// Seen with neither an Approved, Denied nor Failed condition: nobody approved it. Hint:
    /// "is an approver running for this signer?".
    Pending {
        /// `spec.signerName` as seen; `None` when the object has none (v1beta1).
        signer_name: Option<String>,
    },
    /// Seen with an Approved condition and no certificate: approved, but the signer did not
    /// issue it. Hint: "approved but not issued: is a signer running for `<signerName>`?".
    ApprovedNotIssued {
        /// `spec.signerName` as seen; `None` when the object has none (v1beta1).
        signer_name: Option<String>,
    },
}

fn timeout_hint(progress: &WaitProgress, failed: bool) -> String {
    let signer = |s: &Option<String>| match s {
        Some(s) if !s.is_empty() => s.clone(),
        _ => "this signer".to_owned(),
    };
    if failed {
        return "the last attempt to read it failed".to_owned();
    }
    match progress {
        WaitProgress::Unseen => "is an approver running for this signer?".to_owned(),
        WaitProgress::NotFound => "it was not found".to_owned(),
        WaitProgress::Pending { signer_name } => {
            format!("is an approver running for {}?", signer(signer_name))
        }
        WaitProgress::ApprovedNotIssued { signer_name } => format!(
            "approved but not issued: is a signer running for {}?",
            signer(signer_name)
        ),
    }
}

impl CsrError {
    /// A [`CsrError::Timeout`] that knows nothing of the request (progress
    /// [`WaitProgress::Unseen`], no last error): for clients that cannot tell more.
    pub fn timeout(name: impl Into<String>, waited: Duration) -> CsrError {
        CsrError::Timeout {
            name: name.into(),
            waited,
            progress: WaitProgress::Unseen,
            last_error: None,
        }
    }

    /// Whether the server counts as healthy after this error from a create call (client-go
    /// `updateServerError`): Unauthorized → healthy (a TLS-terminating proxy may say it); a
    /// non-`Status` body → unhealthy; NotFound or Forbidden → healthy; anything else,
    /// including transport errors → unhealthy.
    pub fn server_healthy_after_create(&self) -> bool {
        match self {
            CsrError::Api { error, .. } => {
                if error.is_unauthorized() {
                    true
                } else if !error.is_status {
                    false
                } else {
                    error.is_not_found() || error.is_forbidden()
                }
            }
            _ => false,
        }
    }

    /// The server's `Retry-After`, if the error carries one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CsrError::Api { error, .. } => error.retry_after,
            _ => None,
        }
    }

    /// True when a retry may succeed: transport errors, timeouts, 429, 5xx, cancelled waits.
    pub fn is_transient(&self) -> bool {
        match self {
            CsrError::Transport { .. } | CsrError::Timeout { .. } | CsrError::Cancelled { .. } => {
                true
            }
            CsrError::Api { error, .. } => error.code == 429 || error.code >= 500,
            _ => false,
        }
    }

    /// The API error, when the server answered with one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            CsrError::Api { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Why a [`Cancel`] fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// The manager is stopping.
    Stopped,
    /// The template changed; the request is outdated.
    TemplateChanged,
    /// The manager's wait timeout passed.
    TimedOut,
}

/// A cancellation signal for one CSR wait, shared between the manager and the client.
///
/// Cancelling is idempotent and the first reason wins. A client can poll
/// [`is_cancelled`](Cancel::is_cancelled), `select!` on [`receiver`](Cancel::receiver) (it
/// disconnects when cancelled), or register an [`on_cancel`](Cancel::on_cancel) callback — for
/// example to shut down a blocked HTTP agent.
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<CancelInner>,
}

struct CancelInner {
    /// Lock discipline: held to read or change the state; callbacks run after it is released.
    state: Mutex<CancelState>,
    rx: Receiver<()>,
}

struct CancelState {
    reason: Option<CancelReason>,
    callbacks: Vec<Box<dyn FnOnce() + Send>>,
    /// Dropped on cancel, which disconnects `rx`.
    tx: Option<Sender<()>>,
}

impl Default for CancelInner {
    fn default() -> CancelInner {
        let (tx, rx) = crossbeam_channel::bounded(0);
        CancelInner {
            state: Mutex::new(CancelState {
                reason: None,
                callbacks: Vec::new(),
                tx: Some(tx),
            }),
            rx,
        }
    }
}

impl fmt::Debug for Cancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancel")
            .field("reason", &self.reason())
            .finish()
    }
}

impl Cancel {
    /// A signal that has not fired.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Fires the signal (first reason wins) and runs the registered callbacks once.
    pub fn cancel(&self, reason: CancelReason) {
        let callbacks = {
            let mut state = self.inner.state.lock();
            if state.reason.is_some() {
                return;
            }
            state.reason = Some(reason);
            state.tx = None;
            std::mem::take(&mut state.callbacks)
        };
        for cb in callbacks {
            cb();
        }
    }

    /// Whether it has fired.
    pub fn is_cancelled(&self) -> bool {
        self.inner.state.lock().reason.is_some()
    }

    /// Why it fired, if it has.
    pub fn reason(&self) -> Option<CancelReason> {
        self.inner.state.lock().reason
    }

    /// A channel that never receives a message and disconnects when the signal fires, for use
    /// in `select!`.
    pub fn receiver(&self) -> Receiver<()> {
        self.inner.rx.clone()
    }

    /// Runs `f` when the signal fires, or at once (on this thread) if it already has.
    pub fn on_cancel(&self, f: impl FnOnce() + Send + 'static) {
        {
            let mut state = self.inner.state.lock();
            if state.reason.is_none() {
                state.callbacks.push(Box::new(f));
                return;
            }
        }
        f();
    }
}

/// Why the API server would refuse `signer` as `spec.signerName`, or `None` when it has the
/// required form (kube-apiserver's `ValidateCertificateSigningRequestSignerName`): `domain/path`
/// with exactly one `/`; the domain at most 253 bytes of at least two DNS-1123 labels (lower-case
/// letters, digits and `-`, alphanumeric at both ends, at most 63 bytes each) separated by dots;
/// the path DNS-1123 subdomains separated by dots. The message is the API server's for the
/// first rule broken.
pub(crate) fn signer_name_problem(signer: &str) -> Option<&'static str> {
    /// A DNS-1123 label (`max` 63) or, split from a path at its dots, one piece of a DNS-1123
    /// subdomain (`max` 253): lower-case letters, digits and `-`, alphanumeric at both ends.
    fn name_ok(l: &str, max: usize) -> bool {
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let b = l.as_bytes();
        b.len() <= max
            && b.first().is_some_and(alnum)
            && b.last().is_some_and(alnum)
            && b.iter().all(|c| alnum(c) || *c == b'-')
    }
    let Some((domain, path)) = signer.split_once('/').filter(|(_, p)| !p.contains('/')) else {
        return Some(
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        );
    };
    if domain.len() > DNS1123_SUBDOMAIN_MAX {
        return Some("the domain may not be more than 253 bytes");
    }
    if !domain.split('.').all(|l| name_ok(l, DNS1123_LABEL_MAX)) {
        return Some("the domain must consist of lower case RFC 1123 labels separated by '.'");
    }
    if domain.split('.').count() < 2 {
        return Some("should be a domain with at least two segments separated by dots");
    }
    if !path.split('.').all(|l| name_ok(l, DNS1123_SUBDOMAIN_MAX)) {
        return Some("the path must consist of lower case RFC 1123 subdomains separated by '.'");
    }
    if signer.len() > SIGNER_NAME_MAX {
        return Some("may not be more than 571 bytes");
    }
    None
}

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// The domain, `/`, and a path that holds a label, a subdomain and a dot (kube-apiserver's
/// `maxSignerNameLength`).
const SIGNER_NAME_MAX: usize =
    DNS1123_SUBDOMAIN_MAX + (DNS1123_SUBDOMAIN_MAX + DNS1123_LABEL_MAX + 1) + 1;

/// `prefix` followed by the unpadded base64url SHA-512/256 digest of `fields`, each written as
/// unpadded base64url followed by `|` (a character outside that alphabet, so different field
/// lists never make the same stream): the kubelet's `digestedName` scheme.
fn digest_name<'a>(prefix: &str, fields: impl IntoIterator<Item = &'a [u8]>) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut digest = ring::digest::Context::new(&ring::digest::SHA512_256);
    for field in fields {
        digest.update(URL_SAFE_NO_PAD.encode(field).as_bytes());
        digest.update(b"|");
    }
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(digest.finish()))
}

/// `prefix` and the digest ([`digest_name`]) of the DER `SubjectPublicKeyInfo`, the common
/// name, each organization and each usage (in order): the kubelet's `digestedName` of a
/// bootstrap CSR. The same key, subject and usages always give the same name, so a create that
/// is sent again for the same request meets its own earlier CSR (`AlreadyExists`) instead of
/// making a second one.
pub(crate) fn digested_name(
    prefix: &str,
    public_key_der: &[u8],
    template: &crate::template::CsrTemplate,
    usages: &[KeyUsage],
) -> String {
    let subject = std::iter::once(template.common_name.as_bytes())
        .chain(template.organizations.iter().map(|o| o.as_bytes()));
    let fields = std::iter::once(public_key_der)
        .chain(subject)
        .chain(usages.iter().map(|u| u.as_str().as_bytes()));
    digest_name(prefix, fields)
}

/// The name of a rotation CSR: `csr-` and the digest ([`digest_name`]) of what
/// [`digested_name`] covers plus the rest of the template (organizational units, DNS names, IP
/// addresses, emails and URIs, each list behind a marker that starts with NUL, which no name
/// holds). The same key and template always give the same name; another template, another
/// name.
pub(crate) fn rotation_csr_name(
    public_key_der: &[u8],
    template: &crate::template::CsrTemplate,
    usages: &[KeyUsage],
) -> String {
    let ips: Vec<String> = template
        .ip_addresses
        .iter()
        .map(|i| i.to_string())
        .collect();
    let lists: [(&[u8], &[String]); 5] = [
        (b"\0ou", &template.organizational_units),
        (b"\0dns", &template.dns_names),
        (b"\0ip", &ips),
        (b"\0email", &template.email_addresses),
        (b"\0uri", &template.uris),
    ];
    let rest = lists.into_iter().flat_map(|(marker, items)| {
        std::iter::once(marker).chain(items.iter().map(|i| i.as_bytes()))
    });
    let fields = std::iter::once(public_key_der)
        .chain(std::iter::once(template.common_name.as_bytes()))
        .chain(template.organizations.iter().map(|o| o.as_bytes()))
        .chain(rest)
        .chain(usages.iter().map(|u| u.as_str().as_bytes()));
    digest_name("csr-", fields)
}

#[cfg(test)]
pub(crate) mod tests {
    /// Signer names and whether kube-apiserver accepts them as `spec.signerName` (the embedded
    /// server's validator, which carries the API server's messages, is held to the same table).
    pub(crate) const SIGNER_NAMES: &[(&str, bool)] = &[
        ("example.com/signer-name", true),
        ("kubernetes.io/kube-apiserver-client", true),
        ("kubernetes.io/kubelet-serving", true),
        ("example.com/sub.path", true),
        ("a.b.c.example.com/x", true),
        ("", false),
        (" ", false),
        ("foo", false),
        ("example.com", false),
        ("example.com/", false),
        ("/path", false),
        ("example/path", false),
        ("example.com/a/b", false),
        ("Example.com/path", false),
        ("example.com/Path", false),
        ("-example.com/path", false),
        ("example.com/path-", false),
        ("example..com/path", false),
        ("example.com/path_name", false),
    ];

    /// Signer names at the limits of kube-apiserver's `ValidateSignerName` (k8s.io/kubernetes
    /// v1.37.2, pkg/apis/core/validation/names.go) and whether it accepts them: a domain of at
    /// most 253 bytes in labels of at most 63; the path's pieces between dots are subdomains
    /// (at most 253 each); the whole name at most 253 + 1 + (253 + 63 + 1) = 571 bytes.
    pub(crate) fn signer_names_at_the_limits() -> Vec<(String, bool)> {
        let a = |n: usize| "a".repeat(n);
        // 63 + 61 + 63 + 63 bytes and three dots.
        let domain_253 = [a(63), a(61), a(63), a(63)].join(".");
        let domain_254 = [a(63), a(62), a(63), a(63)].join(".");
        let path_317 = format!("{}.{}", a(253), a(63));
        let path_318 = format!("{}.{}", a(253), a(64));
        vec![
            (format!("{domain_253}/p"), true),
            (format!("{domain_254}/p"), false),
            (format!("{}.com/p", a(64)), false),
            (format!("example.com/{}", a(253)), true),
            (format!("example.com/{}", a(254)), false),
            (format!("{domain_253}/{path_317}"), true),
            (format!("{domain_253}/{path_318}"), false),
            (format!("example.com/{path_318}"), true),
            (format!("example.com/{}.{}.{}", a(253), a(253), a(40)), true),
            (
                format!("example.com/{}.{}.{}", a(253), a(253), a(60)),
                false,
            ),
        ]
    }

    /// A rotation CSR's name depends on the key, every part of the template and the usages,
    /// and on nothing else.
    #[test]
    fn rotation_csr_names_cover_the_whole_template() {
        use crate::template::CsrTemplate;
        let key = [1u8, 2, 3];
        let usages = [KeyUsage::DigitalSignature, KeyUsage::ServerAuth];
        let base = CsrTemplate::new("system:node:n1").with_organization("system:nodes");
        let name = |t: &CsrTemplate| super::rotation_csr_name(&key, t, &usages);
        assert_eq!(
            name(&base),
            name(&base.clone()),
            "the same request, the same name"
        );
        assert!(name(&base).starts_with("csr-"));
        let mut o_as_ou = CsrTemplate::new("system:node:n1");
        o_as_ou.organizational_units.push("system:nodes".into());
        let variants = [
            base.clone().with_dns_name("n1"),
            base.clone().with_ip_address("10.0.0.7".parse().unwrap()),
            base.clone()
                .with_ip_address("10.0.0.7".parse().unwrap())
                .with_ip_address("10.0.0.8".parse().unwrap()),
            o_as_ou,
            CsrTemplate::new("system:node:n2").with_organization("system:nodes"),
        ];
        let mut names: Vec<String> = variants.iter().map(name).collect();
        names.push(name(&base));
        names.push(super::rotation_csr_name(&[9], &base, &usages));
        names.push(super::rotation_csr_name(&key, &base, &usages[..1]));
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }

    #[test]
    fn signer_names_as_the_api_server_judges_them() {
        let limits = signer_names_at_the_limits();
        let all = SIGNER_NAMES
            .iter()
            .map(|&(n, ok)| (n, ok))
            .chain(limits.iter().map(|(n, ok)| (n.as_str(), *ok)));
        for (name, ok) in all {
            assert_eq!(
                super::signer_name_problem(name).is_none(),
                ok,
                "{name:?}: {:?}",
                super::signer_name_problem(name)
            );
        }
    }

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn key_usage_strings_round_trip() {
        for u in KeyUsage::ALL {
            assert_eq!(u.as_str().parse::<KeyUsage>(), Ok(u));
        }
        assert!("digital-signature".parse::<KeyUsage>().is_err());
    }

    fn api(code: u16, reason: &str, is_status: bool) -> CsrError {
        CsrError::Api {
            op: "create",
            path: "/apis/certificates.k8s.io/v1/certificatesigningrequests".into(),
            error: ApiError {
                code,
                reason: reason.into(),
                message: "m".into(),
                is_status,
                retry_after: None,
            },
        }
    }

    #[test]
    fn health_after_create_matches_client_go() {
        let cases: [(&str, CsrError, bool); 9] = [
            (
                "Unauthorized error on create",
                api(401, "Unauthorized", true),
                true,
            ),
            (
                "Generic unauthorized error on create",
                api(401, "Unauthorized", false),
                true,
            ),
            (
                "Generic not found error on create",
                api(404, "NotFound", false),
                false,
            ),
            (
                "Not found error on create",
                api(404, "NotFound", true),
                true,
            ),
            (
                "Forbidden error on create",
                api(403, "Forbidden", true),
                true,
            ),
            (
                "Generic forbidden error on create",
                api(403, "Forbidden", false),
                false,
            ),
            (
                "Internal error on create",
                api(500, "InternalError", true),
                false,
            ),
            (
                "Transport error on create",
                CsrError::Transport {
                    op: "create",
                    request: "POST https://127.0.0.1:1/apis/certificates.k8s.io/v1/certificatesigningrequests"
                        .into(),
                    source: "connection refused".into(),
                },
                false,
            ),
            ("Unknown reason with code 404", api(404, "", true), true),
        ];
        for (name, err, healthy) in cases {
            assert_eq!(err.server_healthy_after_create(), healthy, "{name}");
        }
    }

    #[test]
    fn cancel_fires_once_and_disconnects_the_receiver() {
        let c = Cancel::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        c.on_cancel(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        let rx = c.receiver();
        assert!(rx.try_recv().is_err());
        assert!(!rx.is_empty() || !c.is_cancelled());
        assert_eq!(format!("{c:?}"), "Cancel { reason: None }");
        c.cancel(CancelReason::TemplateChanged);
        c.cancel(CancelReason::Stopped);
        assert_eq!(c.reason(), Some(CancelReason::TemplateChanged));
        assert_eq!(format!("{c:?}"), "Cancel { reason: Some(TemplateChanged) }");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert!(matches!(rx.recv(), Err(crossbeam_channel::RecvError)));
        let h = hits.clone();
        c.on_cancel(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 2, "late callback runs at once");
    }

    #[test]
    fn error_display_is_lower_case_and_names_the_object() {
        let e = CsrError::Denied {
            name: "csr-abc".into(),
            reason: "NotAllowed".into(),
            message: "no".into(),
        };
        assert_eq!(
            e.to_string(),
            r#"certificate signing request "csr-abc" is denied, reason: NotAllowed, message: no"#
        );
        let e = CsrError::timeout("csr-abc", Duration::from_secs(900));
        assert!(
            e.to_string().starts_with(
                r#"timed out waiting for certificate signing request "csr-abc" after 15m0s"#
            ),
            "{e}"
        );
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use crate::report::check_table;

    fn csr_variant(e: &CsrError) -> &'static str {
        match e {
            CsrError::Api { .. } => "Api",
            CsrError::Transport { .. } => "Transport",
            CsrError::Timeout { .. } => "Timeout",
            CsrError::Cancelled { .. } => "Cancelled",
            CsrError::Denied { .. } => "Denied",
            CsrError::Failed { .. } => "Failed",
            CsrError::Deleted { .. } => "Deleted",
            CsrError::UidChanged { .. } => "UidChanged",
            CsrError::InvalidResponse { .. } => "InvalidResponse",
            CsrError::Incompatible { .. } => "Incompatible",
        }
    }

    #[test]
    fn every_csr_error_message_says_its_own_step_and_leaves_the_cause_to_source() {
        let forbidden = ApiError {
            code: 403,
            reason: "Forbidden".into(),
            message: "user cannot create".into(),
            is_status: true,
            retry_after: None,
        };
        let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
        let transport = || CsrError::Transport {
            op: "list",
            request: format!("GET https://10.0.0.1:6443{path}"),
            source: "connection refused".into(),
        };
        let rows = [
            (
                CsrError::Api {
                    op: "create",
                    path: path.into(),
                    error: forbidden,
                },
                "cannot create certificate signing request at \
                 /apis/certificates.k8s.io/v1/certificatesigningrequests: \
                 user cannot create (HTTP 403, Forbidden)",
            ),
            (
                transport(),
                "cannot list certificate signing request: \
                 GET https://10.0.0.1:6443/apis/certificates.k8s.io/v1/certificatesigningrequests",
            ),
            (
                CsrError::Timeout {
                    name: "csr-1".into(),
                    waited: Duration::from_secs(900),
                    progress: WaitProgress::Pending {
                        signer_name: Some("example.com/signer".into()),
                    },
                    last_error: None,
                },
                "timed out waiting for certificate signing request \"csr-1\" after 15m0s; \
                 is an approver running for example.com/signer?",
            ),
            (
                CsrError::Timeout {
                    name: "csr-1".into(),
                    waited: Duration::from_secs(900),
                    // An object without a signer name (a v1beta1 one) names none.
                    progress: WaitProgress::ApprovedNotIssued {
                        signer_name: Some(String::new()),
                    },
                    last_error: None,
                },
                "timed out waiting for certificate signing request \"csr-1\" after 15m0s; \
                 approved but not issued: is a signer running for this signer?",
            ),
            (
                CsrError::Timeout {
                    name: "csr-1".into(),
                    waited: Duration::from_secs(900),
                    progress: WaitProgress::Unseen,
                    last_error: Some(Box::new(transport())),
                },
                "timed out waiting for certificate signing request \"csr-1\" after 15m0s; \
                 the last attempt to read it failed",
            ),
            (
                CsrError::Cancelled {
                    name: "csr-1".into(),
                },
                "waiting for certificate signing request \"csr-1\" was cancelled",
            ),
            (
                CsrError::Denied {
                    name: "csr-1".into(),
                    reason: "NotMyNode".into(),
                    message: "wrong node".into(),
                },
                "certificate signing request \"csr-1\" is denied, reason: NotMyNode, message: wrong node",
            ),
            (
                CsrError::Failed {
                    name: "csr-1".into(),
                    reason: "SignerError".into(),
                    message: "HSM offline".into(),
                },
                "certificate signing request \"csr-1\" failed, reason: SignerError, message: HSM offline",
            ),
            (
                CsrError::Deleted {
                    name: "csr-1".into(),
                },
                "csr \"csr-1\" was deleted",
            ),
            (
                CsrError::UidChanged {
                    name: "csr-1".into(),
                    expected: "uid-a".into(),
                    got: "uid-b".into(),
                },
                "csr \"csr-1\" changed UIDs (expected uid-a, got uid-b)",
            ),
            (
                CsrError::InvalidResponse {
                    op: "watch",
                    message: "unknown watch event type \"BOGUS\"".into(),
                },
                "invalid response to watch certificate signing request: \
                 unknown watch event type \"BOGUS\"",
            ),
            (
                CsrError::Incompatible {
                    name: "csr-1".into(),
                    message: "the public key differs".into(),
                },
                "retrieved csr is not compatible: the public key differs",
            ),
        ];
        check_table(&rows, csr_variant, 10);
        // The transport cause is one step away, printed once along the chain.
        assert_eq!(
            crate::report::Chain(&rows[1].0).to_string(),
            "cannot list certificate signing request: GET \
             https://10.0.0.1:6443/apis/certificates.k8s.io/v1/certificatesigningrequests: \
             connection refused"
        );
    }

    fn config_variant(e: &ConfigError) -> &'static str {
        match e {
            ConfigError::Read { .. } => "Read",
            ConfigError::Parse { .. } => "Parse",
            ConfigError::NotFound { .. } => "NotFound",
            ConfigError::NoCurrentContext => "NoCurrentContext",
            ConfigError::Missing { .. } => "Missing",
            ConfigError::Unsupported { .. } => "Unsupported",
            ConfigError::ReadFile { .. } => "ReadFile",
            ConfigError::Invalid { .. } => "Invalid",
            ConfigError::NotInCluster { .. } => "NotInCluster",
        }
    }

    #[test]
    fn every_config_error_message_names_the_file_or_setting() {
        let rows = [
            (
                ConfigError::Read {
                    path: "/root/.kube/config".into(),
                    source: std::io::Error::other("permission denied"),
                },
                "cannot read kubeconfig /root/.kube/config",
            ),
            (
                ConfigError::Parse {
                    path: "/root/.kube/config".into(),
                    message: "clusters: invalid type: string, expected a sequence".into(),
                },
                "cannot parse kubeconfig /root/.kube/config: \
                 clusters: invalid type: string, expected a sequence",
            ),
            (
                ConfigError::NotFound {
                    searched: "/a, /b".into(),
                },
                "no kubeconfig found (looked at /a, /b)",
            ),
            (
                ConfigError::NoCurrentContext,
                "kubeconfig has no current-context and no context was given",
            ),
            (
                ConfigError::Missing {
                    kind: "cluster",
                    name: "prod".into(),
                },
                "kubeconfig has no cluster named \"prod\"",
            ),
            (
                ConfigError::Unsupported {
                    owner: "user \"admin\"".into(),
                    field: "exec",
                    hint: "use a token file or a client certificate",
                },
                "kubeconfig user \"admin\" uses \"exec\", which certrotate does not support; \
                 use a token file or a client certificate",
            ),
            (
                ConfigError::ReadFile {
                    what: "certificate authority",
                    path: "/etc/ca.pem".into(),
                    source: std::io::Error::other("no such file"),
                },
                "cannot read certificate authority /etc/ca.pem",
            ),
            (
                ConfigError::Invalid {
                    what: "server URL",
                    message: "\"ftp://x\": scheme must be https".into(),
                },
                "invalid server URL: \"ftp://x\": scheme must be https",
            ),
            (
                ConfigError::NotInCluster {
                    message: "KUBERNETES_SERVICE_HOST is not set".into(),
                },
                "not running in a cluster: KUBERNETES_SERVICE_HOST is not set",
            ),
        ];
        check_table(&rows, config_variant, 9);
    }
}
