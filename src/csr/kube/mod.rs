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

mod builder;
mod create;
mod decode;
mod wait;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use ureq::Agent;
use ureq::http::Response;
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector};

use super::ConfigError;
use super::http::RustlsConnector;
use super::{ApiVersion, Cancel, CsrClient, CsrError, CsrRef, CsrRequest};
use crate::clock::Clock;
use crate::report::Chain;

pub use builder::KubeCsrClientBuilder;
pub(crate) use builder::{PemSource, absolute};
pub(crate) use decode::parse_api_error;
use decode::{read_limited, transport_error};
pub use wait::APPROVED_NOT_ISSUED_WARN_FRACTION;
use wait::Waiter;

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
            super::http::LiteralResolver::default(),
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
            // create is the client's only POST
            error: parse_api_error(code, op == "create", retry_after, &body),
        }
    }
}

impl KubeCsrClient {
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
        if cancel.is_cancelled() {
            return Err(req.cancelled());
        }
        let agent = self.agent_for(cancel);
        match self.create_on(&agent, req) {
            Err(_) if cancel.is_cancelled() => Err(req.cancelled()),
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
        let mut waiter = Waiter::new(self, agent, csr, timeout, cancel);
        match waiter.run() {
            Err(_) if cancel.is_cancelled() => Err(cancelled()),
            other => other,
        }
    }
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
    use std::io::{BufRead, BufReader, Read};

    use super::create::ensure_compatible;
    use super::decode::{check_type, csr_ref, decode_csr};
    use super::wait::{Event, Judged, decode_event, judge};
    use super::*;
    use crate::csr::api::{self, CsrList};

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
        for post in [false, true] {
            let e = parse_api_error(code, post, None, body);
            let _ = (e.is_expired(), e.is_not_found(), e.is_already_exists());
        }
    }

    /// A watch body: split into lines under `limit` bytes and each event decoded as in the
    /// wait's watch loop ([`decode_event`]).
    pub(crate) fn watch(body: &[u8], version: ApiVersion, csr: &CsrRef, limit: usize) {
        let mut reader = BufReader::new(body);
        let mut line = Vec::new();
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
            let Ok((event, _next_rv)) = decode_event(text, version) else {
                return;
            };
            match event {
                Event::Changed(obj) if obj.metadata.name.as_deref() == Some(csr.name.as_str()) => {
                    if !matches!(judge(csr, &obj), Ok(Judged::Waiting(_))) {
                        return;
                    }
                }
                Event::Deleted(obj) if obj.metadata.name.as_deref() == Some(csr.name.as_str()) => {
                    return;
                }
                Event::Changed(_) | Event::Deleted(_) | Event::Bookmark => {}
                Event::Error(err) => {
                    let _ = (err.is_expired(), err.retry_after);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("metadata.name=csr-a b"), "metadata.name%3Dcsr-a%20b");
    }
}
