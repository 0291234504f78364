//! An embedded CSR API server: a real HTTPS server on loopback that behaves like kube-apiserver
//! plus kube-controller-manager's CSR approver and signer, as far as `certificates.k8s.io` goes
//! (feature `server`).
//!
//! It lets a program that rotates certificates through the CSR API run with no cluster, and lets
//! tests go through real TLS, real HTTP and real JSON — the way Go projects use envtest. It is
//! not a Kubernetes API server: it serves CSRs and the discovery documents clients need, nothing
//! else, and it keeps everything in memory.
//!
//! ```no_run
//! use certrotate::server::{CsrApiServer, Identity};
//! let server = CsrApiServer::builder().start()?;
//! let kubeconfig = server.kubeconfig(&Identity::admin())?;   // works with kubectl
//! println!("{} {}", server.url(), kubeconfig.len());
//! server.shutdown();
//! # Ok::<(), certrotate::server::ServerError>(())
//! ```
//!
//! # What it serves
//! - `certificates.k8s.io/v1` CSRs: create (with `generateName`), get, list (field selectors
//!   on `metadata.name` and `spec.signerName`; label selectors parsed as `labels.Parse` parses
//!   them, with its error texts; `limit`/`continue` with `remainingItemCount` when no selector
//!   filters; `resourceVersion`, where "0" answers the whole list as the watch cache does; the
//!   query parameters converted and checked as `ListOptions` are, with the same 400 and 422
//!   answers), watch (replay from a resource version,
//!   bookmarks, `sendInitialEvents`, `timeoutSeconds`, `410 Expired` from a bounded history),
//!   update (metadata), delete, and the `/approval` and `/status` subresources; `v1beta1` only when
//!   [`CsrApiServerBuilder::v1beta1`] turns it on (404 otherwise, as Kubernetes ≥ 1.22).
//! - Create and update validation with the apiserver's rules and `Status` bodies.
//! - Request bodies in JSON or Kubernetes protobuf (`application/vnd.kubernetes.protobuf`, as
//!   typed client-go clients and the kubelet send them), decoded with the field numbers of the
//!   upstream `generated.proto` and checked against bodies written by client-go itself; answers
//!   are JSON.
//! - `dryRun=All` on every write (create, update, `/approval`, `/status`, delete; in the query,
//!   or in a delete's `DeleteOptions` body): validated and answered as the real write, nothing
//!   stored and no event; any other value is refused with the apiserver's 422 (`CreateOptions`,
//!   `UpdateOptions` or `DeleteOptions` `dryRun: Unsupported value`). Delete preconditions
//!   (`DeleteOptions.preconditions.uid` and `.resourceVersion`) that do not match answer 409
//!   `Conflict` with the apiserver's message, and delete nothing.
//! - OpenAPI: `/openapi/v2` and `/openapi/v3` (JSON and protobuf), kube-apiserver 1.37.2's own
//!   documents cut down to the paths served here, so `kubectl create`/`apply` validate and
//!   `kubectl explain` works.
//! - PATCH of a CSR and of its `/approval` and `/status` subresources with the four patch
//!   types of a built-in resource (what `kubectl label`, `annotate`, `patch --type
//!   json|merge|strategic` and `apply`, client-side and `--server-side`, send):
//!   `application/json-patch+json` (RFC 6902, at most 10000 operations),
//!   `application/merge-patch+json` (RFC 7386), `application/strategic-merge-patch+json` (maps
//!   merge and `null` deletes; a list is replaced unless its Go type's `patchStrategy` says
//!   merge, which in a CSR only `metadata.finalizers` and `metadata.ownerReferences` do, so
//!   `status.conditions` is replaced; the `$patch`, `$retainKeys` and
//!   `$deleteFromPrimitiveList` directives), and `application/apply-patch+yaml` (server-side
//!   apply; `fieldManager` required, `force` accepted, creates an absent CSR on the main
//!   resource). The patched object takes the PUT path: the same authorization (verb `patch`),
//!   name rule, resourceVersion conflict (409), fields kept from the live object, update
//!   validation and `dryRun`. Other media types are 415 (`415: Unsupported Media Type` from
//!   the route selection when no part of the header is a patch type, else the patch
//!   handler's list of accepted types); a body that is not JSON, or a JSON
//!   patch that is not an array of operations, is 400; a JSON patch operation that does not
//!   apply is 422 with the apiserver's fixed message; `PatchOptions` errors are 422 on
//!   `PatchOptions.meta.k8s.io`. An update or patch that leaves the object as it was writes
//!   nothing (same resourceVersion, no watch event), as etcd's guaranteed update skips it.
//! - deletecollection (`DELETE` on the collection) with label and field selectors, `dryRun`
//!   and preconditions, answered with the list of the CSRs deleted.
//! - `SelfSubjectAccessReview` (`authorization.k8s.io/v1`) answered for the caller from the
//!   [`Authorizer`] for CSR verbs, and `SelfSubjectReview` (`authentication.k8s.io/v1`) with
//!   the caller's user name, uid and groups, and `SelfSubjectRulesReview` listing the CSR
//!   verbs the authorizer allows: what `kubectl auth can-i` (also `--list`) and `kubectl auth
//!   whoami` ask (JSON, YAML or protobuf bodies).
//! - Discovery (`/api`, `/apis`, the groups and their versions, with each resource's verbs),
//!   `/version` (`v1.37.2`, the
//!   release whose behaviour is followed), `/healthz`, and `Table` answers for `kubectl get`. No core (`""` group) resources are served, so `/api`
//!   lists no versions (client-go's discovery, `kubectl api-resources` among its users, fails
//!   on a listed version without resources) and `/api/v1` answers an empty `APIResourceList`
//!   for clients that read it unasked. Aggregated discovery
//!   (`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`) is not served:
//!   client-go asks for it together with plain JSON and gets plain JSON; an `Accept` of only
//!   it gets 406.
//! - Unknown paths as kube-apiserver answers them: under `/api` and
//!   `/apis/certificates.k8s.io` (an unknown resource, version, subresource, or `v1beta1` when
//!   off) the go-restful `Status` 404 `the server could not find the requested resource` with
//!   `details: {}`; elsewhere the mux's plain-text `404 page not found`. A known path with
//!   another method is 405 `MethodNotAllowed` (`details: {}`).
//! - The deprecated watch paths `…/watch/certificatesigningrequests` (as `?watch=true`) and
//!   `…/watch/certificatesigningrequests/{name}` (a watch with the field selector
//!   `metadata.name={name}`; a field selector pinning another name is 400 `fieldSelector
//!   metadata.name doesn't match requested name`).
//! - A CSR without status is sent with `"status": {}` (create answer, get, list, watch), as the
//!   apiserver serializes its status struct.
//! - `fieldValidation` on create, update, `/approval` and `/status` (JSON bodies; protobuf is
//!   never strict, as upstream): unknown fields (`unknown field "spec.foo"`) and repeated ones
//!   (`duplicate field "metadata.name"`, the last wins) are refused under `Strict` with 400
//!   `CertificateSigningRequest in version "v1" cannot be handled as a CertificateSigningRequest:
//!   strict decoding error: …`, sent as `Warning: 299 - "…"` headers under `Warn` (the default)
//!   and dropped under `Ignore`; another value is 422 on `CreateOptions`/`UpdateOptions` (with a
//!   bad `dryRun`, both in one 422). A JSON `null` is Go's zero value, so `usages: null` is the
//!   422 of a missing field. `[]byte` fields are decoded with Go's base64 rules (`illegal base64
//!   data at input byte N`, 400).
//! - Validation messages in the wording of Kubernetes 1.37 (`field.Error` values printed as
//!   their JSON, `spec.usages: Required value`, `PEM block type must be CERTIFICATE REQUEST` for
//!   anything that is not a CSR PEM block, Go's signature errors such as
//!   `x509: ECDSA verification failure`).
//! - `Accept` negotiation in the apiserver's two stages (see `negotiate.rs`): the route
//!   accepts `*/*` or an exact media type it produces (only `application/json` here, and
//!   `application/json;stream=watch` on list and watch routes; `application/*` is refused as
//!   go-restful refuses it), then the handler picks the first JSON entry it can serve,
//!   including `Table` (each row's `object` as `includeObject` asks: `Metadata`, `Object` or
//!   `None`, 400 for another value) and `PartialObjectMetadata[List]` conversions on reads.
//!   Anything else is 406 `NotAcceptable` with the upstream message of the stage that refused
//!   it.
//!
//! # Where PATCH and the reviews differ from kube-apiserver
//! - Server-side apply has no `metadata.managedFields`: the applied fields are merged over the
//!   live object (maps by key, `status.conditions` by `type` as its `+listMapKey`, other lists
//!   replaced, `null` removes). So a field the same manager applied before and now leaves out
//!   stays (the apiserver removes it), a field another manager set is overwritten with no 409
//!   conflict (`force` changes nothing), and answers carry no `managedFields`.
//! - `metadata.finalizers` and `metadata.ownerReferences` are merged as their tags say, but
//!   this server does not store them (nor any other `ObjectMeta` field beyond name, uid,
//!   resourceVersion, timestamps, labels and annotations), so a patch of them has no effect.
//! - The text of a patched object that no longer decodes (422 on the field `patch`) carries
//!   the JSON and `serde`'s reason, not Go's `%+v` of the patch map and `encoding/json`'s
//!   reason; a strategic merge patch's `$setElementOrder` directives are accepted and ignored
//!   (no list of a CSR that they could order is stored).
//! - `fieldValidation` is not applied to patches: unknown fields in a patch are dropped.
//! - A `SelfSubjectAccessReview` about anything but CSR verbs (other resources, the `signers`
//!   resource's `approve` and `sign` verbs) is answered "not
//!   allowed" with a reason, since this server has nothing else to authorize; its create of
//!   reviews and `get` of discovery and health paths are allowed for everyone, as the default
//!   cluster roles allow them. A denial is `allowed: false` without `denied: true` (RBAC's
//!   "no opinion"). Field and label selectors in `resourceAttributes` are echoed, not checked.
//!   A `SelfSubjectRulesReview` lists only what this server serves (a `system:masters` user
//!   gets every CSR verb, not RBAC's `*` on every resource).
//!
//! # Differences from kube-apiserver that remain
//! - Answers are JSON only. kube-apiserver also produces YAML and protobuf; an `Accept` of only
//!   those gets 406 here (the apiserver would answer in them). Every client-go client still
//!   works: protobuf clients send `application/vnd.kubernetes.protobuf,application/json` and
//!   decode answers by their `Content-Type`; the 406 lists only `application/json` as available.
//! - Request bodies in YAML are 415.
//! - Aggregated discovery is not served (above), and there are no core resources.
//! - A write (create, update) answers the object itself: an `Accept` that asks for it as a
//!   `Table` or `PartialObjectMetadata` is 406 instead of converted.
//! - A JSON value of the wrong type (`"usages": "x"`) is 400 with serde's description of the
//!   mismatch, not Go's `json: cannot unmarshal …` text; a body that is not JSON likewise keeps
//!   serde's parse error inside the apiserver's `couldn't get version/kind; json parse error:`
//!   frame. Repeated objects (`"spec": {…}, "spec": {…}`) are replaced by the last, where Go
//!   merges them.
//! - A DER request that does not parse keeps this crate's error text (Go's names its own ASN.1
//!   parser's steps); `updates may not modify a condition` omits the diff Go appends.
//! - An unknown resource is 404 for every caller; kube-apiserver authorizes first, so a caller
//!   without rights to it gets 403.
//! - `continue` tokens are this server's own (`{"rv","start"}` in base64); one that does not
//!   decode is 400 `continue key is not valid: "<token>"`, where kube-apiserver names Go's JSON
//!   or version error after `invalid continue token: continue key is not valid:`.
//! - A list with `resourceVersionMatch=Exact` at a version older than the current one is 410
//!   `Expired`: only the latest state is kept. kube-apiserver reads that snapshot from etcd
//!   until etcd compacts it.
//! - The total size of a CSR's annotations (256 KiB in kube-apiserver) is not checked; the
//!   request body limit bounds it.
//! - When a query has several faults, the first answered may differ: a field selector on an
//!   unsupported field is checked with the label selector, before the `ListOptions` rules
//!   (kube-apiserver checks it when it reads the store).
//!
//! # Who may do what
//! Approval is by [`ApprovalPolicy`]. The default, [`ApprovalPolicy::NodeClient`], approves what
//! kube-controller-manager's `csrapproving` controller approves and nothing else: a node client
//! certificate for `kubernetes.io/kube-apiserver-client-kubelet`, asked by a node for itself or
//! by a bootstrap-token user. Serving certificates, the other signers and every other subject
//! wait for an administrator, as in a cluster. [`ApprovalPolicy::All`] approves everything and
//! is for demos only: under it a bootstrap token buys a `system:masters` certificate.
//!
//! Authorization is by [`Authorizer`]; the default, [`DefaultAuthorizer`], gives:
//!
//! | caller | create | get, list, watch | update, patch, `/approval`, `/status` | delete, deletecollection |
//! |---|---|---|---|---|
//! | `system:masters` (e.g. [`Identity::admin`]) | yes | every CSR | yes | yes |
//! | a bootstrap token (`system:bootstrappers`) | yes | its own CSRs | no (403) | no (403) |
//! | a node (`system:nodes`) or any other user | yes | its own CSRs | no (403) | no (403) |
//!
//! "Its own" means `spec.username` is the caller's name; a list or watch leaves the others out,
//! and a get of another's CSR answers 403. This is a little stricter than a kubeadm cluster's
//! RBAC (`system:node-bootstrapper` and the nodes' role grant create, get, list and watch on
//! every CSR, as RBAC cannot filter by requester) and the same for the writes: approving,
//! denying, updating status and deleting are for administrators.
//!
//! # One CA
//! One [`CertificateAuthority`] (made at start, or given) signs the serving certificate, the
//! client certificates of [`Identity::ClientCert`] kubeconfigs, and every certificate issued for
//! a CSR; it is also the client CA for mTLS. So a client that rotates its client certificate
//! through this server can authenticate with the new one, as with a cluster whose CSR signer is
//! its client CA. [`CsrApiServer::ca_pem`] is the only trust anchor a client needs.
//!
//! The default CA and the serving certificate are valid from 2000-01-01 to 2100-01-01, so that
//! clients checking against the real time and tests running a fake clock both accept them.
//!
//! # Time
//! Object timestamps and certificate validity come from the builder's [`Clock`]; a
//! [`FakeClock`](crate::testing::FakeClock) gives deterministic NotBefore/NotAfter. Client
//! certificates are checked against the same clock, per request: one that is expired (or not
//! from the CA) gets `401 Unauthorized`, as from kube-apiserver, not a failed handshake. The server never waits on the clock: watch
//! timeouts, bookmarks and injected delays are network behaviour and use real time, so a test's
//! `FakeClock::waiters()` counts only its own code's timers.
//!
//! # Threads
//! One acceptor thread, one signing thread, and one thread per connection (a watch holds its
//! connection's thread); on Linux one more, `csr-api-peers`, waits (`epoll`) on the sockets of
//! every waiting watch and wakes a watch whose client has gone (EOF, TLS `close_notify`,
//! reset), which then frees its thread and connection slot, so clients that stop watching do
//! not use up [`CsrApiServerBuilder::max_connections`]; an idle watch costs no wake-ups.
//! Elsewhere a waiting watch checks its client every 200 ms. A watch event is serialized once
//! and the same bytes written to every watch that receives it. [`CsrApiServer::shutdown`]
//! (also run on drop) stops accepting, ends every watch, closes every connection and joins
//! every thread before it returns.
//!
//! # Limits
//! - [`max_connections`](CsrApiServerBuilder::max_connections) (512): connections served at
//!   once; one more is answered `429 Too Many Requests` with `Retry-After: 1` by one shared
//!   thread, then closed (past 64 waiting, closed unanswered), never left hanging.
//! - [`max_watches`](CsrApiServerBuilder::max_watches) (`max_connections`) and
//!   [`max_watches_per_user`](CsrApiServerBuilder::max_watches_per_user) (64): open watches in
//!   all and per user; one more is answered the same 429, and the connection stays open.
//!
//! The 429 carries the text and `Retry-After` of kube-apiserver's max-in-flight filter, in a
//! `Status` (reason `TooManyRequests`, `details.retryAfterSeconds` 1), where the filter writes
//! plain text: client-go turns either into the same error and waits `Retry-After`.
//!
//! Measured on this project's 2-core machine (`cargo bench --features server --bench
//! server_load`): 5,000 concurrent watches over TLS hold, at about 45 KiB of resident memory
//! each and no CPU while idle; one change reaches all 5,000 in about 0.2 s (p99), and creates
//! go on at about 10 per second while every watcher reads every event.

mod auth;
mod collection;
mod decode;
mod faults;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod http;
mod kubeconfig;
mod listener;
mod negotiate;
mod openapi;
mod patch;
mod peers;
mod protobuf;
mod rest;
mod review;
mod selector;
mod signer;
mod state;
mod validation;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex, RwLock};
use rand::RngExt;
use rustls::server::danger::ClientCertVerifier;

pub use auth::{
    Action, AllowAll, Authorizer, Decision, DefaultAuthorizer, GROUP_AUTHENTICATED,
    GROUP_BOOTSTRAPPERS, GROUP_MASTERS, GROUP_UNAUTHENTICATED, Identity, USER_ANONYMOUS, UserInfo,
    Verb,
};
pub use faults::{Call, Fault, FaultCounts, SignerFault};
pub use signer::{
    ApprovalPolicy, SIGNER_KUBE_APISERVER_CLIENT, SIGNER_KUBE_APISERVER_CLIENT_KUBELET,
    SIGNER_KUBELET_SERVING, SignerCheck,
};

use crate::clock::{Clock, SystemClock};
use crate::csr::KeyUsage;
use crate::csr::api::{
    CONDITION_APPROVED, CONDITION_DENIED, CONDITION_FAILED, CertificateSigningRequest,
    LEGACY_UNKNOWN_SIGNER,
};
use crate::pki::{Certificate, CertificateAuthority, KeyAlgorithm, ParsedCsr, PrivateKey};
use crate::template::CsrTemplate;
use auth::Tokens;
use faults::Faults;
use signer::{Lifetimes, Rules, Work, condition, has_condition};
use state::{EventType, State};

/// Errors of starting and driving the server through its handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listening socket could not be bound.
    #[error("cannot bind the CSR API server to {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// A server thread could not be started.
    #[error("cannot start a CSR API server thread")]
    Thread(#[source] std::io::Error),
    /// The CA or a certificate could not be made.
    #[error("cannot make CSR API server certificates")]
    Pki(#[source] crate::pki::PkiError),
    /// The TLS configuration was refused. The source is rustls' error.
    #[error("cannot configure TLS for the CSR API server: {part} refused")]
    Tls {
        /// What was refused: `CA certificate`, `client certificate verifier`, `protocol
        /// versions` or `serving certificate`.
        part: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The builder's settings are inconsistent.
    #[error("invalid CSR API server configuration: {0}")]
    InvalidConfig(String),
    /// No CSR with that name.
    #[error("certificatesigningrequest {0:?} not found")]
    NotFound(String),
    /// The CSR is in a state where the operation does not apply (approving a denied one, …).
    #[error("certificatesigningrequest {name:?}: {message}")]
    InvalidState {
        /// The CSR.
        name: String,
        /// Why.
        message: String,
    },
    /// A kubeconfig was asked for a token the server does not accept.
    #[error("the {0} identity is not registered with the server")]
    UnknownIdentity(&'static str),
}

/// Descriptors kept, out of the process's open-file limit, for the listener, the refusal
/// queue and the process's own files when [`CsrApiServerBuilder::max_connections`] is sized.
const RESERVED_DESCRIPTORS: u64 = 128;

/// The most connections the open-file limit leaves room for (each takes two descriptors: its
/// socket and the copy shutdown closes), or `None` when there is no limit or it is unknown.
fn connection_room() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current?;
        usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS) / 2).ok()
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Settings fixed at start.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub v1beta1: bool,
    pub lifetimes: Lifetimes,
    pub bookmark_interval: Duration,
    pub default_watch_timeout: Duration,
    pub idle_timeout: Duration,
    pub client_cert_lifetime: Duration,
    pub max_connections: usize,
    pub max_watches_per_user: usize,
    pub max_watches: usize,
}

/// Open watches: how many in all, and per user name (users with none are not kept).
#[derive(Default)]
pub(crate) struct WatchCounts {
    pub total: usize,
    pub per_user: HashMap<String, usize>,
}

/// What every server thread shares.
pub(crate) struct Shared {
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub ca: CertificateAuthority,
    /// Lock discipline: see [`State`]; [`Shared::notify_changed`] after every change of it.
    pub state: Mutex<State>,
    /// What waiters of `state` wait on, but for the watches [`peers`](Self::peers) registered:
    /// each of those waits on a condition variable of its own.
    pub changed: Condvar,
    pub tokens: RwLock<Tokens>,
    pub authorizer: Arc<dyn Authorizer>,
    pub approval: RwLock<ApprovalPolicy>,
    pub signers: HashMap<String, Rules>,
    pub faults: Faults,
    pub work: Sender<Work>,
    pub addr: SocketAddr,
    /// Checks client certificates against the CA at the clock's now (the x509 authenticator).
    pub client_ca: Arc<dyn ClientCertVerifier>,
    /// Open watches, in all and per user name, bounded by `max_watches` and
    /// `max_watches_per_user`.
    pub watches: Mutex<WatchCounts>,
    /// The sockets of waiting watches, whose clients may go.
    pub peers: peers::Peers,
}

impl Shared {
    /// Wakes everything waiting for a change of `state`: the waiters of `changed` and every
    /// registered watch.
    pub fn notify_changed(&self) {
        self.changed.notify_all();
        self.peers.wake_all();
    }

    pub fn get(&self, name: &str) -> Option<Arc<CertificateSigningRequest>> {
        self.state
            .lock()
            .objects
            .get(name)
            .map(|s| s.object.clone())
    }

    pub fn get_stored(
        &self,
        name: &str,
    ) -> Option<(Arc<CertificateSigningRequest>, Arc<ParsedCsr>)> {
        self.state
            .lock()
            .objects
            .get(name)
            .map(|s| (s.object.clone(), s.parsed.clone()))
    }

    /// Changes a stored CSR under the lock and publishes a `MODIFIED` event. `f` returning `Err`
    /// leaves it unchanged. Returns `None` when there is no such CSR or `f` declined.
    pub fn modify<E>(
        &self,
        name: &str,
        f: impl FnOnce(&mut CertificateSigningRequest) -> Result<(), E>,
    ) -> Option<Result<Arc<CertificateSigningRequest>, E>> {
        self.modify_or_dry_run(name, false, f)
    }

    /// [`modify`](Self::modify), or with `dry_run` the same checks and the changed object as
    /// it would be stored, with nothing stored and no event.
    pub fn modify_or_dry_run<E>(
        &self,
        name: &str,
        dry_run: bool,
        f: impl FnOnce(&mut CertificateSigningRequest) -> Result<(), E>,
    ) -> Option<Result<Arc<CertificateSigningRequest>, E>> {
        let mut st = self.state.lock();
        let stored = st.objects.get(name)?;
        let parsed = stored.parsed.clone();
        let mut obj = (*stored.object).clone();
        if let Err(e) = f(&mut obj) {
            return Some(Err(e));
        }
        if dry_run {
            return Some(Ok(Arc::new(obj)));
        }
        let out = st.commit(EventType::Modified, obj, parsed);
        drop(st);
        self.notify_changed();
        Some(Ok(out))
    }

    pub fn stopping(&self) -> bool {
        self.state.lock().stopping
    }

    /// Waits `d` of real time; returns true when it waited it all, false when the server began
    /// stopping first.
    pub fn pause(&self, d: Duration) -> bool {
        let end = std::time::Instant::now() + d;
        let mut st = self.state.lock();
        while !st.stopping {
            if self.changed.wait_until(&mut st, end).timed_out() {
                return true;
            }
        }
        false
    }
}

/// A random UUID (version 4), as the apiserver gives `metadata.uid`.
pub(crate) fn new_uid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Builds a [`CsrApiServer`]. Every setter has a default; [`start`](CsrApiServerBuilder::start)
/// checks consistency.
pub struct CsrApiServerBuilder {
    addr: SocketAddr,
    clock: Arc<dyn Clock>,
    ca: Option<CertificateAuthority>,
    approval: ApprovalPolicy,
    lifetimes: Lifetimes,
    signers: HashMap<String, Rules>,
    v1beta1: bool,
    tokens: Tokens,
    authorizer: Arc<dyn Authorizer>,
    history_limit: usize,
    bookmark_interval: Duration,
    default_watch_timeout: Duration,
    idle_timeout: Duration,
    client_cert_lifetime: Duration,
    max_connections: usize,
    max_watches_per_user: usize,
    max_watches: Option<usize>,
    serving_names: Vec<String>,
    faults: Vec<(Call, Fault, usize)>,
    signer_faults: Vec<(SignerFault, usize)>,
}

impl std::fmt::Debug for CsrApiServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrApiServerBuilder")
            .field("addr", &self.addr)
            .field("approval", &self.approval)
            .field("v1beta1", &self.v1beta1)
            .finish_non_exhaustive()
    }
}

impl Default for CsrApiServerBuilder {
    fn default() -> Self {
        let mut signers = HashMap::new();
        signers.insert(
            SIGNER_KUBE_APISERVER_CLIENT.to_owned(),
            Rules::ApiServerClient,
        );
        signers.insert(
            SIGNER_KUBE_APISERVER_CLIENT_KUBELET.to_owned(),
            Rules::KubeletClient,
        );
        signers.insert(SIGNER_KUBELET_SERVING.to_owned(), Rules::KubeletServing);
        CsrApiServerBuilder {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            clock: Arc::new(SystemClock),
            ca: None,
            approval: ApprovalPolicy::NodeClient,
            lifetimes: Lifetimes {
                max: Duration::from_secs(8760 * 3600),
                min: Duration::from_secs(600),
                backdate: Duration::from_secs(300),
            },
            signers,
            v1beta1: false,
            tokens: Tokens::default(),
            authorizer: Arc::new(DefaultAuthorizer),
            history_limit: 1000,
            bookmark_interval: Duration::from_secs(60),
            default_watch_timeout: Duration::from_secs(1800),
            idle_timeout: Duration::from_secs(60),
            client_cert_lifetime: Duration::from_secs(365 * 86_400),
            max_connections: 512,
            max_watches_per_user: 64,
            max_watches: None,
            serving_names: Vec::new(),
            faults: Vec::new(),
            signer_faults: Vec::new(),
        }
    }
}

impl CsrApiServerBuilder {
    /// The address to listen on. Defaults to `127.0.0.1:0` (a free port on loopback).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The clock for timestamps, certificate validity and client-certificate checks. Defaults to
    /// [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The CA that signs everything (see the module docs). Defaults to a new ECDSA P-256 CA
    /// `certrotate-server-ca`, valid 2000–2100.
    pub fn ca(mut self, ca: CertificateAuthority) -> Self {
        self.ca = Some(ca);
        self
    }

    /// Which CSRs are approved without a human. Defaults to [`ApprovalPolicy::NodeClient`] (what
    /// kube-controller-manager approves: a node's own client certificate); see
    /// [`ApprovalPolicy::All`] for demos that want everything approved.
    pub fn approval_policy(mut self, policy: ApprovalPolicy) -> Self {
        self.approval = policy;
        self
    }

    /// The longest certificate the signer issues (`--cluster-signing-duration`); also the
    /// lifetime when a CSR requests none. Defaults to 8760 h (one year).
    pub fn max_lifetime(mut self, d: Duration) -> Self {
        self.lifetimes.max = d;
        self
    }

    /// The shortest certificate the signer issues: a shorter `expirationSeconds` is raised to
    /// it. Lower it (and [`max_lifetime`](Self::max_lifetime)) for demos and tests that want
    /// certificates living seconds. Defaults to 10 min, the built-in signer's floor.
    pub fn min_lifetime(mut self, d: Duration) -> Self {
        self.lifetimes.min = d;
        self
    }

    /// How far NotBefore is set back from now (and NotAfter, for lifetimes of 8 h or more).
    /// Defaults to 5 min, as the built-in signer.
    pub fn backdate(mut self, d: Duration) -> Self {
        self.lifetimes.backdate = d;
        self
    }

    /// Registers a custom signer name this server signs for, without checks beyond the CSR API's.
    /// The three `kubernetes.io` signers are always registered.
    pub fn signer(mut self, name: impl Into<String>) -> Self {
        self.signers.insert(name.into(), Rules::Custom(None));
        self
    }

    /// Registers a custom signer name with a check run before signing (see [`SignerCheck`]).
    pub fn signer_with_check(
        mut self,
        name: impl Into<String>,
        check: impl Fn(&ParsedCsr, &[KeyUsage]) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.signers
            .insert(name.into(), Rules::Custom(Some(Arc::new(check))));
        self
    }

    /// Serves `certificates.k8s.io/v1beta1` too (with v1beta1's defaulting of usages, signer name
    /// and condition status, and its legacy signer). Defaults to false: v1beta1 paths answer 404,
    /// as Kubernetes 1.22 and later.
    pub fn v1beta1(mut self, on: bool) -> Self {
        self.v1beta1 = on;
        self
    }

    /// Accepts a static bearer token for `user`. Defaults to none.
    pub fn token(mut self, token: impl Into<String>, user: UserInfo) -> Self {
        self.tokens.statics.insert(token.into(), user);
        self
    }

    /// Accepts the bootstrap token `<id>.<secret>` (id `[a-z0-9]{6}`, secret `[a-z0-9]{16}`;
    /// checked at start). Defaults to none.
    pub fn bootstrap_token(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.tokens.bootstrap.insert(id.into(), secret.into());
        self
    }

    /// The authorization policy. Defaults to [`DefaultAuthorizer`].
    pub fn authorizer(mut self, a: impl Authorizer + 'static) -> Self {
        self.authorizer = Arc::new(a);
        self
    }

    /// How many change events are kept for watches to resume from; older resource versions get
    /// `410 Expired`. Defaults to 1000.
    pub fn history_limit(mut self, events: usize) -> Self {
        self.history_limit = events;
        self
    }

    /// How often a watch with `allowWatchBookmarks=true` gets a `BOOKMARK`. Defaults to 60 s
    /// (kube-apiserver sends about one a minute).
    pub fn bookmark_interval(mut self, d: Duration) -> Self {
        self.bookmark_interval = d;
        self
    }

    /// How long a watch without `timeoutSeconds` lasts. Defaults to 30 min (the apiserver's
    /// `--min-request-timeout`).
    pub fn default_watch_timeout(mut self, d: Duration) -> Self {
        self.default_watch_timeout = d;
        self
    }

    /// How long an idle keep-alive connection (or a stalled read) is kept. Defaults to 60 s.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// The lifetime of client certificates issued for kubeconfigs. Defaults to 365 days.
    pub fn client_cert_lifetime(mut self, d: Duration) -> Self {
        self.client_cert_lifetime = d;
        self
    }

    /// How many connections are served at once, each by its own thread (a watch holds its
    /// connection). One more is answered, on one shared thread, 429 `TooManyRequests` with
    /// `Retry-After: 1` and closed; past 64 such waiting answers, new connections are closed at
    /// once. Never more than the process's open-file limit leaves room for: each connection
    /// takes two descriptors and 128 are kept for the rest (on Linux, a larger value is lowered
    /// to that at start, with a warning). Measured on 2 cores: 5,000 watching connections take
    /// about 45 KiB of memory each and no CPU while idle (`benches/server_load.rs`).
    /// Defaults to 512.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// How many watches one user (by authenticated name) may hold open at once; one more answers
    /// 429 `TooManyRequests` with `retryAfterSeconds` 1, as an overloaded apiserver does, so one
    /// client cannot take every connection of [`max_connections`](Self::max_connections).
    /// Defaults to 64.
    pub fn max_watches_per_user(mut self, n: usize) -> Self {
        self.max_watches_per_user = n;
        self
    }

    /// How many watches may be open at once in all; one more answers 429 `TooManyRequests`
    /// with `Retry-After: 1`, as kube-apiserver's max-in-flight filter answers past its limit.
    /// Each watch holds a connection (and its thread), so set it below
    /// [`max_connections`](Self::max_connections) to keep connections for creates and lists
    /// whatever the watchers do. Defaults to `max_connections`.
    pub fn max_watches(mut self, n: usize) -> Self {
        self.max_watches = Some(n);
        self
    }

    /// An extra DNS name or IP address for the serving certificate (it always has `localhost`,
    /// `127.0.0.1`, `::1` and the bound address). Defaults to none.
    pub fn serving_name(mut self, name: impl Into<String>) -> Self {
        self.serving_names.push(name.into());
        self
    }

    /// A request fault armed from the start (see [`CsrApiServer::inject`]).
    pub fn fault(mut self, call: Call, fault: Fault, times: usize) -> Self {
        self.faults.push((call, fault, times));
        self
    }

    /// A signer fault armed from the start (see [`CsrApiServer::inject_signer`]).
    pub fn signer_fault(mut self, fault: SignerFault, times: usize) -> Self {
        self.signer_faults.push((fault, times));
        self
    }

    /// Binds, makes the certificates, and starts serving on background threads.
    ///
    /// # Errors
    /// [`ServerError::InvalidConfig`] when the maximum lifetime is below the floor or a bootstrap
    /// token is malformed; [`ServerError::Bind`], [`ServerError::Pki`], [`ServerError::Tls`],
    /// [`ServerError::Thread`] when the socket, certificates, TLS or threads cannot be set up.
    pub fn start(mut self) -> Result<CsrApiServer, ServerError> {
        if self.lifetimes.max < self.lifetimes.min {
            return Err(ServerError::InvalidConfig(format!(
                "max lifetime {:?} is below the min lifetime {:?}; lower min_lifetime explicitly",
                self.lifetimes.max, self.lifetimes.min
            )));
        }
        if let Some((id, _)) = self
            .tokens
            .bootstrap
            .iter()
            .find(|(id, s)| !auth::is_bootstrap_token_shape(id, s))
        {
            return Err(ServerError::InvalidConfig(format!(
                "bootstrap token {id:?} is not of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}"
            )));
        }
        if self.v1beta1 {
            self.signers
                .insert(LEGACY_UNKNOWN_SIGNER.to_owned(), Rules::LegacyUnknown);
        }
        let ca = match self.ca.take() {
            Some(ca) => ca,
            None => CertificateAuthority::new(
                "certrotate-server-ca",
                UNIX_EPOCH + Duration::from_secs(946_684_800),
                UNIX_EPOCH + Duration::from_secs(4_102_444_800),
            )
            .map_err(ServerError::Pki)?,
        };
        let listener = TcpListener::bind(self.addr).map_err(|source| ServerError::Bind {
            addr: self.addr,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: self.addr,
            source,
        })?;
        let (client_ca, handshake) = listener::client_verifiers(&ca)?;
        let tls = Arc::new(listener::tls_config(
            &ca,
            addr,
            &self.serving_names,
            handshake,
        )?);
        let (work_tx, work_rx) = crossbeam_channel::unbounded();
        let faults = Faults::default();
        for (c, f, n) in self.faults {
            faults.inject(c, f, n);
        }
        for (f, n) in self.signer_faults {
            faults.inject_signer(f, n);
        }
        let mut max_connections = self.max_connections.max(1);
        if let Some(room) = connection_room().filter(|&r| r < max_connections) {
            log::warn!(
                "csr api server: the open-file limit leaves room for {room} connections, not \
                 {max_connections}; serving at most {room} (raise it with ulimit -n)"
            );
            max_connections = room.max(1);
        }
        let shared = Arc::new(Shared {
            settings: Settings {
                v1beta1: self.v1beta1,
                lifetimes: self.lifetimes,
                bookmark_interval: self.bookmark_interval.max(Duration::from_millis(1)),
                default_watch_timeout: self.default_watch_timeout,
                idle_timeout: self.idle_timeout,
                client_cert_lifetime: self.client_cert_lifetime,
                max_connections,
                max_watches_per_user: self.max_watches_per_user.max(1),
                max_watches: self.max_watches.unwrap_or(max_connections).max(1),
            },
            clock: self.clock,
            ca,
            state: Mutex::new(State::new(self.history_limit)),
            changed: Condvar::new(),
            tokens: RwLock::new(self.tokens),
            authorizer: self.authorizer,
            approval: RwLock::new(self.approval),
            signers: self.signers,
            faults,
            work: work_tx,
            addr,
            client_ca,
            watches: Mutex::new(WatchCounts::default()),
            peers: peers::Peers::new(),
        });
        let conns = Arc::new(Mutex::new(listener::Connections::default()));
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("csr-api-signer".into())
                .spawn(move || signer::run_worker(shared, work_rx))
                .map_err(ServerError::Thread)?
        };
        let peers = if shared.peers.active() {
            let sh = shared.clone();
            let spawned = std::thread::Builder::new()
                .name("csr-api-peers".into())
                .spawn(move || sh.peers.run(&sh.state));
            match spawned {
                Ok(h) => Some(h),
                Err(e) => {
                    let _ = shared.work.send(Work::Stop);
                    let _ = worker.join();
                    return Err(ServerError::Thread(e));
                }
            }
        } else {
            None
        };
        let acceptor = {
            let shared = shared.clone();
            let conns = conns.clone();
            std::thread::Builder::new()
                .name("csr-api-accept".into())
                .spawn(move || listener::accept_loop(shared, listener, tls, conns))
        };
        let acceptor = match acceptor {
            Ok(a) => a,
            Err(e) => {
                let _ = shared.work.send(Work::Stop);
                let _ = worker.join();
                shared.peers.stop();
                if let Some(p) = peers {
                    let _ = p.join();
                }
                return Err(ServerError::Thread(e));
            }
        };
        let host = match addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        Ok(CsrApiServer {
            url: format!("https://{host}:{}", addr.port()),
            shared,
            threads: Mutex::new(Some(Threads {
                acceptor,
                worker,
                peers,
                conns,
            })),
        })
    }
}

struct Threads {
    acceptor: JoinHandle<()>,
    worker: JoinHandle<()>,
    peers: Option<JoinHandle<()>>,
    conns: Arc<Mutex<listener::Connections>>,
}

/// A running CSR API server. Dropping it shuts it down (see [`CsrApiServer::shutdown`]).
pub struct CsrApiServer {
    url: String,
    shared: Arc<Shared>,
    threads: Mutex<Option<Threads>>,
}

impl std::fmt::Debug for CsrApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrApiServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl CsrApiServer {
    /// A builder with every default.
    pub fn builder() -> CsrApiServerBuilder {
        CsrApiServerBuilder::default()
    }

    /// The base URL, `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The CA certificate (PEM): the trust anchor for the serving certificate, the client CA, and
    /// the issuer of every certificate this server signs.
    pub fn ca_pem(&self) -> String {
        self.shared.ca.cert_pem()
    }

    /// The CA itself (certificate and key), for tests that build their own certificates.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.shared.ca
    }

    /// Issues a client certificate (with a new ECDSA P-256 key) for `user` in `groups`, valid
    /// from the clock's now − 5 min for the client-certificate lifetime (clamped to the CA). The
    /// server authenticates it as that user.
    ///
    /// # Errors
    /// [`ServerError::Pki`] when the key or certificate cannot be made.
    pub fn issue_client_certificate(
        &self,
        user: &str,
        groups: &[&str],
    ) -> Result<Certificate, ServerError> {
        let mut t = CsrTemplate::new(user);
        for g in groups {
            t = t.with_organization(*g);
        }
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).map_err(ServerError::Pki)?;
        let now = self.shared.clock.now();
        let not_before = now - Duration::from_secs(300);
        let not_after =
            (now + self.shared.settings.client_cert_lifetime).min(self.shared.ca.info().not_after);
        self.shared
            .ca
            .issue(
                &t,
                &key,
                &[KeyUsage::DigitalSignature, KeyUsage::ClientAuth],
                not_before,
                not_after,
            )
            .map_err(ServerError::Pki)
    }

    /// A YAML kubeconfig for this server and `identity` (cluster `certrotate`, the CA inline, the
    /// credentials inline), loadable by kubectl, client-go and certrotate.
    ///
    /// # Errors
    /// [`ServerError::UnknownIdentity`] for a token the server does not accept;
    /// [`ServerError::Pki`] when a client certificate cannot be made.
    pub fn kubeconfig(&self, identity: &Identity) -> Result<String, ServerError> {
        kubeconfig::render(self, identity)
    }

    /// Accepts another static bearer token from now on.
    pub fn add_token(&self, token: impl Into<String>, user: UserInfo) {
        self.shared
            .tokens
            .write()
            .statics
            .insert(token.into(), user);
    }

    pub(crate) fn tokens(&self) -> parking_lot::RwLockReadGuard<'_, Tokens> {
        self.shared.tokens.read()
    }

    /// Every stored CSR, by name.
    pub fn csrs(&self) -> Vec<CertificateSigningRequest> {
        self.shared
            .state
            .lock()
            .objects
            .values()
            .map(|s| (*s.object).clone())
            .collect()
    }

    /// One stored CSR.
    pub fn csr(&self, name: &str) -> Option<CertificateSigningRequest> {
        self.shared.get(name).map(|o| (*o).clone())
    }

    /// The current resource version (the number of changes so far).
    pub fn resource_version(&self) -> u64 {
        self.shared.state.lock().rv
    }

    /// Compacts the watch history at the current resource version `C`, as etcd's compaction
    /// does: the change made at `C` is kept, every earlier one is forgotten. A watch that later
    /// resumes from a version before `C - 1` is answered `410 Expired` (`too old resource
    /// version`) and has to list again, the way a client that was away longer than the
    /// apiserver keeps history sees it. Watches already open go on. Returns `C`.
    pub fn compact(&self) -> u64 {
        self.shared.state.lock().compact()
    }

    /// How many change events the watch history holds now (at most the history limit).
    pub fn history_len(&self) -> usize {
        self.shared.state.lock().history.len()
    }

    /// Replaces the approval policy. It applies to every CSR the approver has not looked at yet
    /// (it looks at each new CSR once, promptly after its creation).
    pub fn set_approval_policy(&self, policy: ApprovalPolicy) {
        *self.shared.approval.write() = policy;
    }

    fn add_condition(
        &self,
        name: &str,
        kind: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), ServerError> {
        let now = self.shared.clock.now();
        let conflict = match kind {
            CONDITION_APPROVED => Some(CONDITION_DENIED),
            CONDITION_DENIED => Some(CONDITION_APPROVED),
            _ => None,
        };
        let r = self.shared.modify(name, |o| {
            if let Some(c) = conflict.filter(|c| has_condition(o, c)) {
                return Err(format!("it is already {c}"));
            }
            if has_condition(o, kind) {
                return Err(String::new());
            }
            o.status
                .get_or_insert_default()
                .conditions
                .push(condition(kind, reason, message, now));
            Ok(())
        });
        match r {
            None => Err(ServerError::NotFound(name.to_owned())),
            Some(Ok(_)) => Ok(()),
            Some(Err(m)) if m.is_empty() => Ok(()),
            Some(Err(message)) => Err(ServerError::InvalidState {
                name: name.to_owned(),
                message,
            }),
        }
    }

    /// Approves a CSR (reason `CsrApiServerApprove`), as `kubectl certificate approve` would; the
    /// signer then issues it. Approving an approved CSR does nothing.
    ///
    /// # Errors
    /// [`ServerError::NotFound`]; [`ServerError::InvalidState`] when it is denied.
    pub fn approve(&self, name: &str) -> Result<(), ServerError> {
        self.add_condition(
            name,
            CONDITION_APPROVED,
            "CsrApiServerApprove",
            "This CSR was approved through the CSR API server handle.",
        )?;
        let _ = self.shared.work.send(Work::Approved(name.to_owned()));
        Ok(())
    }

    /// Denies a CSR with `reason`. Denying a denied CSR does nothing.
    ///
    /// # Errors
    /// [`ServerError::NotFound`]; [`ServerError::InvalidState`] when it is approved.
    pub fn deny(&self, name: &str, reason: &str) -> Result<(), ServerError> {
        self.add_condition(
            name,
            CONDITION_DENIED,
            reason,
            "This CSR was denied through the CSR API server handle.",
        )
    }

    /// Marks a CSR `Failed` with `reason`, as a signer does through `/status`.
    ///
    /// # Errors
    /// [`ServerError::NotFound`].
    pub fn fail(&self, name: &str, reason: &str) -> Result<(), ServerError> {
        self.add_condition(
            name,
            CONDITION_FAILED,
            reason,
            "This CSR was failed through the CSR API server handle.",
        )
    }

    /// Deletes a CSR (watchers see `DELETED`).
    ///
    /// # Errors
    /// [`ServerError::NotFound`].
    pub fn delete(&self, name: &str) -> Result<(), ServerError> {
        rest::delete_object(&self.shared, name)
            .map(|_| ())
            .ok_or_else(|| ServerError::NotFound(name.to_owned()))
    }

    /// Gives a CSR a new `metadata.uid` (a `MODIFIED` event), as if it had been deleted and
    /// re-created under the same name. Returns the new uid.
    ///
    /// # Errors
    /// [`ServerError::NotFound`].
    pub fn replace_uid(&self, name: &str) -> Result<String, ServerError> {
        let uid = new_uid();
        let u = uid.clone();
        match self.shared.modify(name, |o| {
            o.metadata.uid = Some(u);
            Ok::<(), ()>(())
        }) {
            Some(Ok(_)) => Ok(uid),
            _ => Err(ServerError::NotFound(name.to_owned())),
        }
    }

    /// Sends a `BOOKMARK` now on every watch that allows bookmarks.
    pub fn bookmark(&self) {
        self.shared.state.lock().bookmark_epoch += 1;
        self.shared.notify_changed();
    }

    /// Arms a request fault for the next `times` calls of kind `call` (see [`Fault`]).
    pub fn inject(&self, call: Call, fault: Fault, times: usize) {
        self.shared.faults.inject(call, fault, times);
    }

    /// Arms a signer fault for the next `times` approved CSRs the signer handles.
    pub fn inject_signer(&self, fault: SignerFault, times: usize) {
        self.shared.faults.inject_signer(fault, times);
    }

    /// Disarms every pending fault (the counts stay).
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// How many faults of each kind have fired.
    pub fn fault_counts(&self) -> FaultCounts {
        self.shared.faults.counts()
    }

    /// Stops the server: no new connections, every watch ended, every connection closed, every
    /// thread joined before it returns. Idempotent; also run on drop.
    pub fn shutdown(&self) {
        let Some(t) = self.threads.lock().take() else {
            return;
        };
        self.shared.state.lock().stopping = true;
        self.shared.notify_changed();
        let _ = self.shared.work.send(Work::Stop);
        // Wake the acceptor, blocked in accept(), with a connection of our own.
        let wake = match self.shared.addr.ip() {
            ip if ip.is_unspecified() => {
                SocketAddr::from((Ipv4Addr::LOCALHOST, self.shared.addr.port()))
            }
            _ => self.shared.addr,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let _ = t.acceptor.join();
        let handles: Vec<JoinHandle<()>> = {
            let mut c = t.conns.lock();
            c.open
                .values_mut()
                .filter_map(|(sock, h)| {
                    if let Some(s) = sock {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                    h.take()
                })
                .collect()
        };
        for h in handles {
            let _ = h.join();
        }
        self.shared.peers.stop();
        if let Some(p) = t.peers {
            let _ = p.join();
        }
        let _ = t.worker.join();
    }
}

impl Drop for CsrApiServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How long ago `then` was at `now` (zero when `then` is in the future), for ages.
pub(crate) fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use crate::pki::PkiError;
    use crate::report::check_table;

    fn variant(e: &ServerError) -> &'static str {
        match e {
            ServerError::Bind { .. } => "Bind",
            ServerError::Thread(_) => "Thread",
            ServerError::Pki(_) => "Pki",
            ServerError::Tls { .. } => "Tls",
            ServerError::InvalidConfig(_) => "InvalidConfig",
            ServerError::NotFound(_) => "NotFound",
            ServerError::InvalidState { .. } => "InvalidState",
            ServerError::UnknownIdentity(_) => "UnknownIdentity",
        }
    }

    #[test]
    fn every_server_message_says_its_own_step_and_leaves_the_cause_to_source() {
        let rows = [
            (
                ServerError::Bind {
                    addr: "127.0.0.1:6443".parse().expect("an address"),
                    source: std::io::Error::other("address in use"),
                },
                "cannot bind the CSR API server to 127.0.0.1:6443",
            ),
            (
                ServerError::Thread(std::io::Error::other("out of threads")),
                "cannot start a CSR API server thread",
            ),
            (
                ServerError::Pki(PkiError::Signing(rcgen::Error::RingUnspecified)),
                "cannot make CSR API server certificates",
            ),
            (
                ServerError::Tls {
                    part: "serving certificate",
                    source: Box::new(rustls::Error::General("no usable key".into())),
                },
                "cannot configure TLS for the CSR API server: serving certificate refused",
            ),
            (
                ServerError::InvalidConfig("max connections must not be zero".into()),
                "invalid CSR API server configuration: max connections must not be zero",
            ),
            (
                ServerError::NotFound("csr-1".into()),
                "certificatesigningrequest \"csr-1\" not found",
            ),
            (
                ServerError::InvalidState {
                    name: "csr-1".into(),
                    message: "it is denied".into(),
                },
                "certificatesigningrequest \"csr-1\": it is denied",
            ),
            (
                ServerError::UnknownIdentity("bootstrap"),
                "the bootstrap identity is not registered with the server",
            ),
        ];
        check_table(&rows, variant, 8);
    }
}
