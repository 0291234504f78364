//! The certificate manager: its configuration, its construction (store → bootstrap → forced
//! rotation), and the accessors other threads call.
//!
//! The rotation and template threads live in the `rotation` submodule; this module owns the
//! state they share with callers and the guarantees around it:
//!
//! - [`current`](Manager::current) never blocks and never returns an expired certificate (see
//!   "The current certificate" below).
//! - A rotation publishes a certificate only after it is verified and durably stored.
//! - After [`stop`](Manager::stop) returns, nothing is written to the store and `current` does
//!   not change until [`start`](Manager::start) is called again.
//!
//! # The current certificate
//! client-go's `Current()` takes a mutex and reads the precise wall clock on every call. Here
//! `current()` takes no lock and writes no shared memory:
//!
//! - Each reader thread keeps its own handle on the published certificate and compares a
//!   generation number (one atomic load of a line only the rotation thread writes) to learn
//!   that a rotation happened; only then does it reload through an `arc-swap` slot.
//! - The certificate is published in a few identical copies, one per reader slot, so that
//!   readers on different threads do not bounce one reference count between cores.
//! - Validity is checked on every call with [`is_within`](crate::clock::is_within): a coarse
//!   clock read ([`Clock::now_coarse`], `CLOCK_REALTIME_COARSE` on Linux, a few nanoseconds)
//!   while NotAfter and the start of validity are more than 10 s away, the precise clock closer
//!   to either. The answer is exact — a certificate is hidden from its NotAfter on, and while
//!   its NotBefore is more than [`NOT_BEFORE_ALLOWANCE`](crate::pki::NOT_BEFORE_ALLOWANCE)
//!   ahead (after the wall clock steps back), never later and never earlier — whether or
//!   not the rotation thread is running. Relying on the rotation thread to withdraw an expired
//!   certificate would be cheaper still, but a late or suspended thread would then serve an
//!   expired one.
//!
//! The price: a thread that called `current()` keeps a handle on the certificate it last saw
//! (key included) until it calls again. The handle outlives the thread: per-reader slots are
//! freed only when the manager is dropped, and a slot is reused by a later thread. So memory
//! holds at most one superseded certificate per thread that ever called `current()` at the
//! same time as the others.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use thread_local::ThreadLocal;

use crate::clock::{Clock, SystemClock, Window};
use crate::csr::api::MIN_EXPIRATION_SECONDS;
use crate::csr::{BoxError, Cancel, CancelReason, ClientFactory, CsrClient, KeyUsage};
use crate::error::Error;
use crate::metrics::{Counter, Gauge, Histogram};
use crate::pki::{Certificate, KeyAlgorithm, PrivateKey};
use crate::report::Chain;
use crate::resolver::CertResolver;
use crate::schedule::{self, Backoff};
use crate::store::{MemoryStore, Store, StoreError};
use crate::template::CsrTemplate;

mod rotation;

/// What every certificate manager offers (client-go `certificate.Manager`).
pub trait Manager: Send + Sync {
    /// Starts rotating in the background and returns at once. Calling it while running does
    /// nothing; calling it after [`stop`](Manager::stop) starts again.
    fn start(&self);

    /// Stops the background threads, cancels an in-flight CSR wait, and joins. Idempotent;
    /// dropping the manager stops it too. After it returns, the manager writes nothing and
    /// `current()` does not change.
    fn stop(&self);

    /// The current certificate, or `None` when there is none yet, its NotAfter has passed, or
    /// its NotBefore is more than [`NOT_BEFORE_ALLOWANCE`](crate::pki::NOT_BEFORE_ALLOWANCE)
    /// ahead (possible only after the wall clock steps back, or for a bootstrap certificate).
    /// Never blocks on I/O or on a rotation in progress.
    fn current(&self) -> Option<Arc<Certificate>>;

    /// Whether the CSR API looked healthy at the last attempt (client-go `ServerHealthy`):
    /// false until a rotation succeeds or a create call fails in a way that shows the server is
    /// answering (401, 403, 404 with a `Status` body).
    fn server_healthy(&self) -> bool;
}

/// Produces the template to request, or `None` when there is nothing to request yet.
pub type TemplateFn = Arc<dyn Fn() -> Option<CsrTemplate> + Send + Sync>;

/// Chooses usages for the key about to be used (client-go `GetUsages`).
pub type UsagesFn = Arc<dyn Fn(KeyAlgorithm) -> Vec<KeyUsage> + Send + Sync>;

/// Makes the private key for a new CSR (client-go `GenerateKey`).
pub type KeyGenerator = Arc<dyn Fn() -> Result<PrivateKey, BoxError> + Send + Sync>;

#[derive(Clone)]
pub(crate) enum TemplateSource {
    Static(Option<CsrTemplate>),
    Dynamic(TemplateFn),
}

#[derive(Clone)]
pub(crate) enum UsagesSource {
    List(Vec<KeyUsage>),
    PerKey(UsagesFn),
}

#[derive(Clone)]
pub(crate) enum KeySource {
    Algorithm(KeyAlgorithm),
    Generator(KeyGenerator),
}

/// A validated manager configuration; build one with [`Config::builder`].
#[derive(Clone)]
pub struct Config {
    pub(crate) template: TemplateSource,
    pub(crate) usages: UsagesSource,
    pub(crate) signer_name: String,
    pub(crate) allow_legacy_v1beta1: bool,
    pub(crate) requested_lifetime: Option<Duration>,
    pub(crate) key: KeySource,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) bootstrap: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) client_factory: Option<ClientFactory>,
    pub(crate) rotation_histogram: Option<Arc<dyn Histogram>>,
    pub(crate) renew_failure_counter: Option<Arc<dyn Counter>>,
    pub(crate) ttl_gauge: Option<Arc<dyn Gauge>>,
    pub(crate) name: String,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng_seed: Option<u64>,
    pub(crate) template_poll_interval: Option<Duration>,
    pub(crate) max_sleep_slice: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) certificate_wait_timeout: Duration,
    pub(crate) thread_stack_size: usize,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("signer_name", &self.signer_name)
            .field("allow_legacy_v1beta1", &self.allow_legacy_v1beta1)
            .field("requested_lifetime", &self.requested_lifetime)
            .field(
                "dynamic_template",
                &matches!(self.template, TemplateSource::Dynamic(_)),
            )
            .field("has_client_factory", &self.client_factory.is_some())
            .field("has_bootstrap", &self.bootstrap.is_some())
            .field("template_poll_interval", &self.template_poll_interval)
            .field("max_sleep_slice", &self.max_sleep_slice)
            .field("backoff", &self.backoff)
            .field("certificate_wait_timeout", &self.certificate_wait_timeout)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A builder with every field at its default.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }
}

/// Builder for [`Config`]; one setter per field, [`build`](ConfigBuilder::build) checks them.
#[derive(Default)]
pub struct ConfigBuilder {
    template: Option<CsrTemplate>,
    template_fn: Option<TemplateFn>,
    usages: Option<Vec<KeyUsage>>,
    usages_fn: Option<UsagesFn>,
    signer_name: Option<String>,
    allow_legacy_v1beta1: bool,
    requested_lifetime: Option<Duration>,
    key_algorithm: Option<KeyAlgorithm>,
    generate_key: Option<KeyGenerator>,
    store: Option<Arc<dyn Store>>,
    bootstrap: Option<(Vec<u8>, Vec<u8>)>,
    client_factory: Option<ClientFactory>,
    rotation_histogram: Option<Arc<dyn Histogram>>,
    renew_failure_counter: Option<Arc<dyn Counter>>,
    ttl_gauge: Option<Arc<dyn Gauge>>,
    name: Option<String>,
    clock: Option<Arc<dyn Clock>>,
    rng_seed: Option<u64>,
    template_poll_interval: Option<Option<Duration>>,
    max_sleep_slice: Option<Duration>,
    backoff: Backoff,
    certificate_wait_timeout: Option<Duration>,
    thread_stack_size: Option<usize>,
}

impl fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigBuilder").finish_non_exhaustive()
    }
}

/// Default of [`ConfigBuilder::template_poll_interval`] (client-go polls every second).
const DEFAULT_TEMPLATE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default of [`ConfigBuilder::max_sleep_slice`].
const DEFAULT_MAX_SLEEP_SLICE: Duration = Duration::from_secs(60);
/// Default of [`ConfigBuilder::certificate_wait_timeout`] (client-go's 15 minutes).
const DEFAULT_CERTIFICATE_WAIT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default of [`ConfigBuilder::thread_stack_size`]: 512 KiB.
const DEFAULT_THREAD_STACK_SIZE: usize = 512 * 1024;

impl ConfigBuilder {
    /// A fixed CSR template (client-go `Template`). Defaults to none: without a template the
    /// manager only serves the stored certificate.
    pub fn template(mut self, template: CsrTemplate) -> Self {
        self.template = Some(template);
        self
    }

    /// A template function, polled every [`template_poll_interval`](Self::template_poll_interval)
    /// (client-go `GetTemplate`); it overrides [`template`](Self::template) and makes the
    /// template dynamic. Returning `None` means "nothing to request yet": no CSR, no backoff, no
    /// failure. Defaults to none.
    pub fn template_fn(
        mut self,
        f: impl Fn() -> Option<CsrTemplate> + Send + Sync + 'static,
    ) -> Self {
        self.template_fn = Some(Arc::new(f));
        self
    }

    /// The usages to request (client-go `Usages`). Exactly one of this and
    /// [`usages_fn`](Self::usages_fn) must be set; an empty list counts as set. No default.
    pub fn usages(mut self, usages: impl IntoIterator<Item = KeyUsage>) -> Self {
        self.usages = Some(usages.into_iter().collect());
        self
    }

    /// Usages chosen per key algorithm (client-go `GetUsages`), e.g. `key encipherment` only
    /// for RSA. Exactly one of this and [`usages`](Self::usages) must be set. No default.
    pub fn usages_fn(
        mut self,
        f: impl Fn(KeyAlgorithm) -> Vec<KeyUsage> + Send + Sync + 'static,
    ) -> Self {
        self.usages_fn = Some(Arc::new(f));
        self
    }

    /// The signer name (`spec.signerName`), e.g. `kubernetes.io/kubelet-serving`. Required
    /// when a [`client_factory`](Self::client_factory) is set, as `certificates.k8s.io/v1`
    /// requires it, unless [`allow_legacy_v1beta1`](Self::allow_legacy_v1beta1). Defaults to
    /// empty.
    pub fn signer_name(mut self, name: impl Into<String>) -> Self {
        self.signer_name = Some(name.into());
        self
    }

    /// Allows requests that only the removed `certificates.k8s.io/v1beta1` API accepts: no
    /// signer name, the signer `kubernetes.io/legacy-unknown`, or no usages. client-go sends
    /// such requests to v1beta1 (its `csr.RequestCertificate` tries v1 only with a signer other
    /// than `kubernetes.io/legacy-unknown` and at least one usage), and so does a
    /// [`KubeCsrClient`](crate::KubeCsrClient) built with
    /// [`KubeCsrClientBuilder::allow_legacy_v1beta1`](crate::KubeCsrClientBuilder::allow_legacy_v1beta1),
    /// the client's own opt-in. Servers dropped v1beta1 in Kubernetes 1.22. When false, with a
    /// client factory, [`build`](Self::build) refuses such requests and an attempt refuses empty
    /// usages from a [`usages_fn`](Self::usages_fn). Defaults to false.
    pub fn allow_legacy_v1beta1(mut self, allow: bool) -> Self {
        self.allow_legacy_v1beta1 = allow;
        self
    }

    /// The lifetime to request (`spec.expirationSeconds`, whole seconds, truncated). Signers may
    /// ignore it; rotation timing uses only the issued certificate. Must be at least 600 s.
    /// Defaults to none (the field is omitted and the signer decides).
    pub fn requested_lifetime(mut self, lifetime: Duration) -> Self {
        self.requested_lifetime = Some(lifetime);
        self
    }

    /// The algorithm of generated keys. Defaults to [`KeyAlgorithm::EcdsaP256`], as client-go.
    pub fn key_algorithm(mut self, algorithm: KeyAlgorithm) -> Self {
        self.key_algorithm = Some(algorithm);
        self
    }

    /// A custom key generator, called once per new request (client-go `GenerateKey`, which is
    /// called at every attempt; here an attempt that waits again for a pending CSR keeps its
    /// key); it overrides
    /// [`key_algorithm`](Self::key_algorithm). Use it to bring RSA keys, which the `ring` backend
    /// cannot generate. Keys weaker than RSA-2048 or ECDSA-256 are refused at use. Defaults to
    /// none.
    pub fn generate_key(
        mut self,
        f: impl Fn() -> Result<PrivateKey, BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.generate_key = Some(Arc::new(f));
        self
    }

    /// Where pairs persist. Defaults to a fresh [`MemoryStore`].
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// A bootstrap pair (PEM chain, PEM key) used when the store has no unexpired pair: it is
    /// written to the store, served, and rotated at once (client-go `BootstrapCertificatePEM`,
    /// `BootstrapKeyPEM`). Defaults to none.
    pub fn bootstrap(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.bootstrap = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// The CSR client factory, called once per attempt with the current certificate
    /// (client-go `ClientsetFn`). Without one the manager never rotates. Defaults to none.
    pub fn client_factory(
        mut self,
        f: impl Fn(Option<&Certificate>) -> Result<Box<dyn CsrClient>, BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.client_factory = Some(Arc::new(f));
        self
    }

    /// Observes, at each successful rotation, the seconds the previous certificate lived (now −
    /// its NotBefore) (client-go `CertificateRotation`). Defaults to none.
    pub fn rotation_histogram(mut self, h: Arc<dyn Histogram>) -> Self {
        self.rotation_histogram = Some(h);
        self
    }

    /// Incremented once per failed attempt (client-go `CertificateRenewFailure`). Defaults to
    /// none.
    pub fn renew_failure_counter(mut self, c: Arc<dyn Counter>) -> Self {
        self.renew_failure_counter = Some(c);
        self
    }

    /// Set at every wake of the rotation thread to the whole seconds until the current
    /// certificate's NotAfter, or `+Inf` when there is none (the kubelet's `*_ttl_seconds`).
    /// Defaults to none.
    pub fn ttl_gauge(mut self, g: Arc<dyn Gauge>) -> Self {
        self.ttl_gauge = Some(g);
        self
    }

    /// The name in log lines. Defaults as client-go: the signer name, else `client auth` when
    /// the usages include it (a usages function is asked for the configured key algorithm),
    /// else `certificate`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The clock for all waiting and validity checks. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Seeds the rotation-deadline and backoff jitter, for reproducible tests. Defaults to a
    /// seed from the operating system.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// How often a dynamic template is polled; `None` turns polling off, leaving
    /// [`CertificateManager::notify_template_changed`] as the only trigger. Must not be zero.
    /// Defaults to 1 s, as client-go.
    pub fn template_poll_interval(mut self, interval: Option<Duration>) -> Self {
        self.template_poll_interval = Some(interval);
        self
    }

    /// The longest single sleep of the rotation thread; the deadline is recomputed from the wall
    /// clock at every wake, so a clock jump or suspend is noticed within this much time. Must
    /// not be zero. Defaults to 60 s.
    pub fn max_sleep_slice(mut self, slice: Duration) -> Self {
        self.max_sleep_slice = Some(slice);
        self
    }

    /// How the delays after failed attempts are jittered: [`Backoff::Spread`] (the default;
    /// 2–4, 4–8, 8–16, 16–32 s, then 16–48 s) or client-go's [`Backoff::ClientGo`] (2, 4, 8,
    /// 16 s + up to 10 %, then a flat 32 s). See [`Backoff`] for why the default differs.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long one attempt waits for its CSR to be issued. Must not be zero. Defaults to
    /// 15 minutes, as client-go.
    pub fn certificate_wait_timeout(mut self, timeout: Duration) -> Self {
        self.certificate_wait_timeout = Some(timeout);
        self
    }

    /// Stack size of the manager's threads, in bytes (at least 64 KiB). Defaults to 512 KiB.
    pub fn thread_stack_size(mut self, bytes: usize) -> Self {
        self.thread_stack_size = Some(bytes);
        self
    }

    /// Checks the settings and builds the config.
    ///
    /// A config without a client factory only serves the stored (or bootstrap) certificate, as
    /// client-go allows; the request fields are then not checked against the API.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when both or neither of `usages` and `usages_fn` are set, when
    /// the requested lifetime is under 600 s (the API minimum), or when a duration that must be
    /// positive is zero; with a client factory and without
    /// [`allow_legacy_v1beta1`](Self::allow_legacy_v1beta1), when the signer name is empty or
    /// `kubernetes.io/legacy-unknown`, or the usages are empty (for a `usages_fn`, the usages it
    /// gives for the configured key algorithm, when no key generator is set): requests that
    /// `certificates.k8s.io/v1` refuses.
    pub fn build(self) -> Result<Config, Error> {
        let invalid = |setting: &'static str, problem: &str| {
            Err(Error::InvalidConfig {
                setting,
                problem: problem.to_owned(),
            })
        };
        let usages = match (self.usages, self.usages_fn) {
            (Some(_), Some(_)) => {
                return invalid("usages_fn", "cannot specify both usages_fn and usages");
            }
            (None, None) => {
                return invalid("usages", "either usages_fn or usages should be specified");
            }
            (Some(list), None) => UsagesSource::List(list),
            (None, Some(f)) => UsagesSource::PerKey(f),
        };
        let min_lifetime = Duration::from_secs(u64::from(MIN_EXPIRATION_SECONDS.unsigned_abs()));
        if let Some(l) = self.requested_lifetime.filter(|l| *l < min_lifetime) {
            return Err(Error::InvalidConfig {
                setting: "requested_lifetime",
                problem: format!(
                    "requested lifetime {} is below the CSR API minimum of \
                     {MIN_EXPIRATION_SECONDS} seconds",
                    crate::pki::fmt_duration(l)
                ),
            });
        }
        let poll = self
            .template_poll_interval
            .unwrap_or(Some(DEFAULT_TEMPLATE_POLL_INTERVAL));
        if poll == Some(Duration::ZERO) {
            return invalid(
                "template_poll_interval",
                "template poll interval must not be zero (use None to turn it off)",
            );
        }
        let slice = self.max_sleep_slice.unwrap_or(DEFAULT_MAX_SLEEP_SLICE);
        if slice.is_zero() {
            return invalid("max_sleep_slice", "max sleep slice must not be zero");
        }
        let wait = self
            .certificate_wait_timeout
            .unwrap_or(DEFAULT_CERTIFICATE_WAIT_TIMEOUT);
        if wait.is_zero() {
            return invalid(
                "certificate_wait_timeout",
                "certificate wait timeout must not be zero",
            );
        }
        let stack = self.thread_stack_size.unwrap_or(DEFAULT_THREAD_STACK_SIZE);
        if stack < 64 * 1024 {
            return invalid(
                "thread_stack_size",
                "thread stack size must be at least 64 KiB",
            );
        }
        let signer_name = self.signer_name.unwrap_or_default();
        let key_algorithm = self.key_algorithm.unwrap_or(KeyAlgorithm::EcdsaP256);
        if self.client_factory.is_some() && !self.allow_legacy_v1beta1 {
            if signer_name.is_empty() {
                return invalid(
                    "signer_name",
                    "a signer name is required: certificates.k8s.io/v1 requires spec.signerName \
                     (allow_legacy_v1beta1 sends requests without one to the removed v1beta1 API)",
                );
            }
            if let Some(problem) = crate::csr::signer_name_problem(&signer_name) {
                return Err(Error::InvalidConfig {
                    setting: "signer_name",
                    problem: format!(
                        "signer name {signer_name:?} is refused by certificates.k8s.io/v1: {problem}"
                    ),
                });
            }
            if signer_name == crate::csr::api::LEGACY_UNKNOWN_SIGNER {
                return invalid(
                    "signer_name",
                    "signer name kubernetes.io/legacy-unknown is refused by certificates.k8s.io/v1 \
                     (allow_legacy_v1beta1 sends it to the removed v1beta1 API)",
                );
            }
            let empty = match &usages {
                UsagesSource::List(u) => u.is_empty(),
                UsagesSource::PerKey(f) => {
                    self.generate_key.is_none() && f(key_algorithm).is_empty()
                }
            };
            if empty {
                return invalid(
                    "usages",
                    "usages must not be empty: certificates.k8s.io/v1 requires at least one \
                     (allow_legacy_v1beta1 sends requests without usages to the removed v1beta1 API)",
                );
            }
        }
        let name = self.name.unwrap_or_else(|| {
            // client-go asks GetUsages with no key; the configured algorithm is the closest.
            let client_auth = || match &usages {
                UsagesSource::List(u) => u.contains(&KeyUsage::ClientAuth),
                UsagesSource::PerKey(f) => f(key_algorithm).contains(&KeyUsage::ClientAuth),
            };
            if !signer_name.is_empty() {
                signer_name.clone()
            } else if client_auth() {
                "client auth".to_owned()
            } else {
                "certificate".to_owned()
            }
        });
        let template = match self.template_fn {
            Some(f) => TemplateSource::Dynamic(f),
            None => TemplateSource::Static(self.template),
        };
        let key = match self.generate_key {
            Some(g) => KeySource::Generator(g),
            None => KeySource::Algorithm(key_algorithm),
        };
        Ok(Config {
            template,
            usages,
            signer_name,
            allow_legacy_v1beta1: self.allow_legacy_v1beta1,
            requested_lifetime: self.requested_lifetime,
            key,
            store: self
                .store
                .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn Store>),
            bootstrap: self.bootstrap,
            client_factory: self.client_factory,
            rotation_histogram: self.rotation_histogram,
            renew_failure_counter: self.renew_failure_counter,
            ttl_gauge: self.ttl_gauge,
            name,
            clock: self
                .clock
                .unwrap_or_else(|| Arc::new(SystemClock) as Arc<dyn Clock>),
            rng_seed: self.rng_seed,
            template_poll_interval: poll,
            max_sleep_slice: slice,
            backoff: self.backoff,
            certificate_wait_timeout: wait,
            thread_stack_size: stack,
        })
    }
}

/// The published certificate: one record for the readers' fast path, the rotation thread and
/// the manager's accessors, replaced whole at every publish.
struct Published {
    generation: u64,
    /// The certificate, in copies that readers spread over (see `copies_per_certificate`);
    /// the first is the canonical one, which subscribers and the resolver get.
    copies: Box<[Arc<Certificate>]>,
    /// From NotBefore − the allowance to NotAfter.
    window: Window,
    /// Invariant: drawn once, when the certificate was published
    /// ([`schedule::rotation_deadline`]; re-drawing at every look would pull rotations towards
    /// the start of the window).
    deadline: SystemTime,
}

impl Published {
    fn canonical(&self) -> &Arc<Certificate> {
        // Never empty: publish makes at least one copy.
        &self.copies[0]
    }
}

/// A reader thread's view of the published certificate.
struct ReaderCache {
    generation: u64,
    cert: Option<Arc<Certificate>>,
    window: Window,
}

fn reader_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}

/// Asked of the system once per process: `available_parallelism` reads the cgroup's CPU quota
/// from files at every call (tens of microseconds, on every publish otherwise).
fn copies_per_certificate() -> usize {
    static COPIES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COPIES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 16)
    })
}

/// State shared by the manager handle, its threads and `rotate_now`.
pub(crate) struct Shared {
    pub(crate) config: Config,
    published: ArcSwapOption<Published>,
    /// Bumped after every publish; readers compare it with their cache.
    generation: AtomicU64,
    /// Each entry padded to its own cache line: readers write their borrow flags on every call.
    readers: ThreadLocal<CachePadded<RefCell<ReaderCache>>>,
    /// A rotation is due at once (bootstrap certificate, no usable certificate at start).
    pub(crate) forced: AtomicBool,
    healthy: AtomicBool,
    /// The template of the last CSR created (client-go `lastRequestTemplate`).
    pub(crate) last_request: Mutex<Option<CsrTemplate>>,
    /// The cancel signal of the attempt in flight, if any.
    pub(crate) in_flight: Mutex<Option<Cancel>>,
    /// Serialises attempts (the rotation thread and `rotate_now`).
    pub(crate) attempt_lock: Mutex<()>,
    /// The write gate: `true` while stopped. Checked under this lock right before a store write
    /// and a publish, and set under it by `stop()`, so nothing is written after `stop()`
    /// returns.
    pub(crate) write_gate: Mutex<bool>,
    pub(crate) rng: Mutex<StdRng>,
    /// This manager's request without an answer yet (key included), reused by the next attempt.
    pub(crate) pending: Mutex<Option<rotation::PendingRequest>>,
    /// A certificate issued and verified whose store failed; the next attempt stores it.
    pub(crate) unstored: Mutex<Option<Certificate>>,
    subscribers: Mutex<Vec<Subscriber>>,
    resolver: Arc<CertResolver>,
    pub(crate) template_changed_tx: Sender<()>,
    pub(crate) template_changed_rx: Receiver<()>,
}

impl Shared {
    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.config.clock
    }

    /// The current template (calls a template function).
    pub(crate) fn template(&self) -> Option<CsrTemplate> {
        match &self.config.template {
            TemplateSource::Static(t) => t.clone(),
            TemplateSource::Dynamic(f) => f(),
        }
    }

    pub(crate) fn is_dynamic(&self) -> bool {
        matches!(self.config.template, TemplateSource::Dynamic(_))
    }

    /// The current certificate if unexpired and not too early (see
    /// [`NOT_BEFORE_ALLOWANCE`](crate::pki::NOT_BEFORE_ALLOWANCE)) at the precise `now`.
    pub(crate) fn current_at(&self, now: SystemTime) -> Option<Arc<Certificate>> {
        self.current_with_deadline(now).map(|(cert, _)| cert)
    }

    /// [`current_at`](Self::current_at) with the rotation deadline drawn for it.
    pub(crate) fn current_with_deadline(
        &self,
        now: SystemTime,
    ) -> Option<(Arc<Certificate>, SystemTime)> {
        self.published
            .load()
            .as_ref()
            .map(|p| (p.canonical(), p.deadline))
            .filter(|(cert, _)| !cert.is_expired_at(now) && !cert.is_not_yet_valid_at(now))
            .map(|(cert, deadline)| (cert.clone(), deadline))
    }

    pub(crate) fn current_fast(&self) -> Option<Arc<Certificate>> {
        let cell = self.readers.get_or(|| {
            CachePadded::new(RefCell::new(ReaderCache {
                generation: u64::MAX,
                cert: None,
                window: Window::new(SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH),
            }))
        });
        // The reader's own cell: nothing else borrows it, and nothing below re-enters.
        let mut cache = cell.borrow_mut();
        let generation = self.generation.load(Ordering::Acquire);
        if cache.generation != generation {
            let guard = self.published.load();
            match guard.as_ref() {
                Some(p) => {
                    cache.cert = Some(p.copies[reader_slot() % p.copies.len()].clone());
                    cache.window = p.window;
                    cache.generation = p.generation;
                }
                None => {
                    cache.cert = None;
                    cache.generation = generation;
                }
            }
        }
        let cert = cache.cert.as_ref()?;
        if !cache.window.contains_now(&*self.config.clock) {
            return None;
        }
        Some(cert.clone())
    }

    /// Publishes `cert` to readers, the resolver and subscribers.
    pub(crate) fn publish(&self, cert: Certificate) -> Arc<Certificate> {
        let n = copies_per_certificate();
        // Made before the copies, which then share it rather than each making its own.
        let _ = cert.certified_key();
        let canonical = Arc::new(cert);
        let mut copies = Vec::with_capacity(n);
        copies.push(canonical.clone());
        for _ in 1..n {
            copies.push(Arc::new((*canonical).clone()));
        }
        // The one place a rotation deadline is drawn.
        let deadline = schedule::rotation_deadline(
            canonical.not_before(),
            canonical.not_after(),
            &mut *self.rng.lock(),
        );
        // Publish the record first, then the generation that tells readers to look (the
        // rotation thread relies on it too: a generation it has seen implies the record holds
        // that certificate or a later one).
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        self.published.store(Some(Arc::new(Published {
            generation,
            copies: copies.into_boxed_slice(),
            window: Window::new(canonical.usable_from(), canonical.not_after()),
            deadline,
        })));
        log::info!(
            "{}: certificate expiration is {}, rotation deadline is {}",
            self.config.name,
            crate::pki::fmt_time(canonical.not_after()),
            crate::pki::fmt_time(deadline)
        );
        self.generation.store(generation, Ordering::Release);
        self.resolver.set(Some(&canonical));
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(Subscriber::is_alive);
        for s in subscribers.iter() {
            s.replace(canonical.clone());
        }
        drop(subscribers);
        canonical
    }

    /// How many certificates have been published; changes at every rotation.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    pub(crate) fn usages_for(&self, alg: KeyAlgorithm) -> Vec<KeyUsage> {
        match &self.config.usages {
            UsagesSource::List(u) => u.clone(),
            UsagesSource::PerKey(f) => f(alg),
        }
    }

    /// Makes the key for a new CSR and checks its strength.
    pub(crate) fn new_key(&self) -> Result<PrivateKey, Error> {
        let key = match &self.config.key {
            KeySource::Algorithm(alg) => PrivateKey::generate(*alg)?,
            KeySource::Generator(g) => g().map_err(Error::KeyGeneration)?,
        };
        key.check_strength()?;
        Ok(key)
    }

    /// Cancels the attempt in flight, if any.
    pub(crate) fn cancel_in_flight(&self, reason: CancelReason) {
        if let Some(c) = self.in_flight.lock().as_ref() {
            c.cancel(reason);
        }
    }

    /// Sets the TTL gauge from the current certificate.
    pub(crate) fn update_ttl_gauge(&self, now: SystemTime) {
        if let Some(g) = &self.config.ttl_gauge {
            g.set(ttl_seconds(self.current_at(now).as_deref(), now));
        }
    }
}

/// The manager's end of a [`Subscription`].
struct Subscriber {
    tx: Sender<Arc<Certificate>>,
    /// A receiver of the same channel, to take back a certificate the subscriber has not read.
    queued: Receiver<Arc<Certificate>>,
    /// Dead once every clone of the [`Subscription`] is dropped.
    alive: Weak<()>,
}

impl Subscriber {
    fn is_alive(&self) -> bool {
        self.alive.strong_count() > 0
    }

    /// Queues `cert` in place of a certificate the subscriber has not read yet. Called under
    /// the subscribers lock, so this is the channel's only sender at the time: after the
    /// `try_recv`, the one slot is free (the subscriber may only have emptied it further).
    fn replace(&self, cert: Arc<Certificate>) {
        if self.queued.try_recv().is_ok() {
            log::debug!(
                "a certificate subscriber had not read the previous certificate; replaced it with the new one"
            );
        }
        let _ = self.tx.try_send(cert);
    }
}

/// A subscription to a manager's rotations, from [`CertificateManager::subscribe`]: a
/// `crossbeam_channel` receiver (it derefs to one, so `recv`, `recv_timeout`, `try_recv`,
/// `iter` and `select!` work on it) that holds at most one certificate, the newest.
///
/// Latest wins: a subscriber that falls behind does not queue a backlog; each rotation replaces
/// a certificate it has not read yet, so the next receive returns the newest certificate and a
/// subscriber never drains into a stale one. A subscriber that must see every rotation should
/// call [`Manager::current`] after each receive or keep up (rotations are hours apart).
///
/// The subscription ends when the last clone of it is dropped: the manager forgets it at the
/// next [`subscribe`](CertificateManager::subscribe) or rotation, so memory is proportional to
/// live subscriptions. A bare `Receiver` cloned out of it (through `Deref`) does not keep it
/// alive. After the manager is dropped, receives return the queued certificate, then
/// disconnect.
///
/// ```
/// use std::time::Duration;
/// use certrotate::{CertificateManager, Config};
///
/// let manager = CertificateManager::new(Config::builder().usages([]).build()?)?;
/// let rotations = manager.subscribe();
/// let (_stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
/// crossbeam_channel::select! {
///     recv(rotations) -> cert => println!("new certificate {}", cert.unwrap().serial_hex()),
///     recv(stop) -> _ => {}
///     default(Duration::from_millis(10)) => {}
/// }
/// assert!(rotations.try_recv().is_err());
/// # Ok::<(), certrotate::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Subscription {
    rx: Receiver<Arc<Certificate>>,
    _alive: Arc<()>,
}

impl Subscription {
    /// The receiver, for APIs that want a `&Receiver`.
    pub fn receiver(&self) -> &Receiver<Arc<Certificate>> {
        &self.rx
    }
}

impl std::ops::Deref for Subscription {
    type Target = Receiver<Arc<Certificate>>;

    fn deref(&self) -> &Receiver<Arc<Certificate>> {
        &self.rx
    }
}

/// Whether a certificate loaded from the store at start may be served: it passes
/// [`verify_chain`](crate::pki::verify_chain) for the usages configured for its key, as an issued
/// one must. One that does not (not valid yet beyond the allowance, a CA, a broken chain,
/// missing a usage now configured) is treated as an expired one is: not served, and replaced at
/// once. Logs why.
fn stored_usable(config: &Config, cert: &Certificate, now: SystemTime) -> bool {
    let usages = match &config.usages {
        UsagesSource::List(u) => u.clone(),
        UsagesSource::PerKey(f) => f(cert.private_key().algorithm()),
    };
    match crate::pki::verify_chain(cert.chain(), &usages, now) {
        Ok(()) => true,
        Err(e) => {
            log::warn!(
                "{}: stored certificate {} is not usable, not using it: {e}",
                config.name,
                cert.serial_hex()
            );
            false
        }
    }
}

/// Whole seconds until NotAfter, or `+Inf` without a certificate (kubelet TTL gauge).
pub(crate) fn ttl_seconds(cert: Option<&Certificate>, now: SystemTime) -> f64 {
    match cert {
        None => f64::INFINITY,
        Some(c) => match c.not_after().duration_since(now) {
            Ok(d) => d.as_secs() as f64,
            Err(e) => -(e.duration().as_secs() as f64),
        },
    }
}

#[derive(Default)]
struct Threads {
    running: bool,
    stop_tx: Option<Sender<()>>,
    handles: Vec<JoinHandle<()>>,
}

/// A certificate manager (client-go `certificate.NewManager`): keeps the current certificate
/// fresh by rotating it through the CSR API at a jittered deadline.
///
/// Threads: [`start`](Manager::start) spawns one rotation thread, plus a template thread when
/// the template is dynamic and polling is on. The handle owns their `JoinHandle`s; `stop()` and
/// `Drop` join them.
///
/// # One outstanding CSR
/// A manager has at most one CSR pending and asks once for each certificate it gets:
///
/// - The key and CSR of a request stay in memory until the CSR is answered. An attempt that ends
///   while the CSR may still be issued (wait timeout, server or transport error, a failed
///   create, `stop()`) leaves them to the next attempt, which waits again for the same CSR (by
///   name and uid), or retries the create with the same key, instead of making a new one. They
///   are dropped when the CSR is denied, failed, deleted or replaced, when its certificate
///   arrives, and when the template changes. client-go makes a new key and CSR at every attempt
///   (its kubelet keeps a key on disk for the bootstrap CSR only, as
///   [`kubelet::bootstrap`](crate::kubelet::bootstrap) does). Rotation keys are never written
///   to disk, so a new process starts a new request.
/// - A certificate issued and verified but not stored (the store failed, or `stop()` came
///   first) is kept in memory, key included; the next attempt stores that one instead of asking
///   again, while it is unexpired and satisfies the template.
///
/// Failed attempts back off as usual (2, 4, 8, 16 s, then about 32 s; see
/// [`ConfigBuilder::backoff`]). Measured on a fake
/// clock: a manager whose store always fails creates 1 CSR and makes about 115 store attempts
/// an hour; one whose CSRs are never approved creates 1 CSR and waits for it 4 times an hour
/// (15-minute wait timeout).
pub struct CertificateManager {
    shared: Arc<Shared>,
    /// Lock discipline: held by start/stop only; never by the threads.
    threads: Mutex<Threads>,
}

impl fmt::Debug for CertificateManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateManager")
            .field("name", &self.shared.config.name)
            .field(
                "current",
                &self
                    .shared
                    .published
                    .load()
                    .as_ref()
                    .map(|p| p.canonical().clone()),
            )
            .field("server_healthy", &self.server_healthy())
            .finish()
    }
}

impl CertificateManager {
    /// Builds a manager and loads its first certificate (client-go `NewManager`): the store's
    /// pair if it has not expired and passes the checks an issued chain passes
    /// ([`verify_chain`](crate::pki::verify_chain) for the usages configured for its key);
    /// otherwise the bootstrap pair (written to the store — a failure there is only logged —
    /// and rotated at once); otherwise none, with rotation forced. A stored pair that is corrupt
    /// counts as absent and is left on disk; one that fails those checks is treated as an
    /// expired one is.
    /// The bootstrap pair is only parsed and matched to its key, as client-go does: it is an
    /// operator's credential for the first request, may be made for other usages, and is
    /// replaced at once; `current()` still hides it while it is not valid yet.
    ///
    /// A manager that may rotate (one with a client factory) first checks that it can write to
    /// its store ([`Store::check_writable`]): a [`FileStore`](crate::FileStore) whose certificate
    /// directory cannot be created or written is an error here, naming the path, with the OS
    /// error (e.g. "Permission denied") as its source. A serve-only manager does not write and
    /// is not checked.
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot be written (with a client factory) or fails to
    /// read other than by holding a corrupt pair; [`Error::Pki`] (invalid certificate, invalid
    /// key, or a key that does not match) when the bootstrap pair does not parse.
    pub fn new(config: Config) -> Result<CertificateManager, Error> {
        if config.client_factory.is_some() {
            config.store.check_writable()?;
        }
        let now = config.clock.now();
        let stored = match config.store.current() {
            Ok(c) => c,
            Err(StoreError::Corrupt { path, reason }) => {
                log::warn!(
                    "{}: stored certificate at {} is corrupt ({reason}); treating it as absent and leaving it for inspection",
                    config.name,
                    path.display()
                );
                None
            }
            Err(e) => return Err(Error::Store(e)),
        };
        let mut forced = false;
        let initial = match stored {
            Some(c) if !c.is_expired_at(now) && stored_usable(&config, &c, now) => Some(c),
            stored => {
                if let Some(c) = stored.as_ref().filter(|c| c.is_expired_at(now)) {
                    log::info!(
                        "{}: stored certificate expired at {}, not using it",
                        config.name,
                        crate::pki::fmt_time(c.not_after())
                    );
                }
                forced = true;
                match &config.bootstrap {
                    Some((cert_pem, key_pem)) => {
                        let boot = Certificate::from_pem(cert_pem, key_pem)?;
                        if let Err(e) = config.store.update(cert_pem, key_pem) {
                            log::warn!(
                                "{}: unable to set the bootstrap certificate as the current one in the store: {}",
                                config.name,
                                Chain(&e)
                            );
                        }
                        Some(boot)
                    }
                    None => None,
                }
            }
        };
        let seed = config.rng_seed.unwrap_or_else(|| rand::rng().random());
        let (template_changed_tx, template_changed_rx) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared {
            resolver: Arc::new(CertResolver::new(config.clock.clone())),
            config,
            published: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            readers: ThreadLocal::new(),
            forced: AtomicBool::new(forced),
            healthy: AtomicBool::new(false),
            last_request: Mutex::new(None),
            in_flight: Mutex::new(None),
            attempt_lock: Mutex::new(()),
            write_gate: Mutex::new(false),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            pending: Mutex::new(None),
            unstored: Mutex::new(None),
            subscribers: Mutex::new(Vec::new()),
            template_changed_tx,
            template_changed_rx,
        });
        if let Some(cert) = initial {
            shared.publish(cert);
        }
        Ok(CertificateManager {
            shared,
            threads: Mutex::new(Threads::default()),
        })
    }

    /// Asks the manager to re-check the template now, without waiting for the next poll: if
    /// the current certificate does not satisfy it and it differs from the last request, the
    /// in-flight wait (if any) is cancelled and a new CSR is sent. Cheap when nothing changed.
    pub fn notify_template_changed(&self) {
        rotation::check_template(&self.shared);
    }

    /// A subscription that receives each new certificate published after this call (by a
    /// rotation or `rotate_now`), latest wins: at most one certificate waits in it, the newest
    /// (see [`Subscription`]). Dropped subscriptions are forgotten at the next call or rotation,
    /// so subscribing and dropping in a loop does not grow memory.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let alive = Arc::new(());
        let mut subscribers = self.shared.subscribers.lock();
        subscribers.retain(Subscriber::is_alive);
        subscribers.push(Subscriber {
            tx,
            queued: rx.clone(),
            alive: Arc::downgrade(&alive),
        });
        Subscription { rx, _alive: alive }
    }

    /// How many subscriptions the manager holds (live ones, and dropped ones not yet
    /// forgotten). For tests.
    #[doc(hidden)]
    pub fn subscriber_entries(&self) -> usize {
        self.shared.subscribers.lock().len()
    }

    /// The rustls resolver fed by this manager, for servers and clients.
    pub fn resolver(&self) -> Arc<CertResolver> {
        self.shared.resolver.clone()
    }

    /// One synchronous rotation attempt, without backoff, whether or not the manager is
    /// started. `stop()` cancels it. Like every attempt it first stores a certificate issued
    /// earlier whose store failed, or waits again for this manager's pending CSR, before it
    /// creates a new one (see "One outstanding CSR" on [`CertificateManager`]).
    ///
    /// # Errors
    /// [`Error::Stopped`] after `stop()`; [`Error::NoTemplate`], [`Error::NoClient`], key,
    /// CSR API, verification or store errors from the attempt. A failure changes nothing but
    /// the failure counter and health.
    pub fn rotate_now(&self) -> Result<Arc<Certificate>, Error> {
        if *self.shared.write_gate.lock() {
            return Err(Error::Stopped);
        }
        rotation::attempt(&self.shared)
    }

    /// Time until the current certificate's NotAfter (zero when it has passed), or `None`
    /// without a certificate. For scrape-time reads of the TTL.
    pub fn ttl(&self) -> Option<Duration> {
        let now = self.shared.clock().now();
        self.shared.published.load().as_ref().map(|p| {
            p.canonical()
                .not_after()
                .duration_since(now)
                .unwrap_or_default()
        })
    }

    /// The rotation deadline drawn for the current certificate (a random point in [70 %, 90 %)
    /// of its lifetime after NotBefore), or `None` without a certificate. The manager rotates
    /// earlier when rotation is forced (a bootstrap certificate) or the certificate stops
    /// satisfying the template.
    pub fn rotation_deadline(&self) -> Option<SystemTime> {
        self.shared.published.load().as_ref().map(|p| p.deadline)
    }

    /// The config's name, as used in log lines.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// The state the threads share, for the rotation module's unit tests.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl Manager for CertificateManager {
    fn start(&self) {
        let mut threads = self.threads.lock();
        if threads.running {
            return;
        }
        *self.shared.write_gate.lock() = false;
        if self.shared.config.client_factory.is_none() {
            log::info!(
                "{}: no CSR client factory configured, certificate rotation is off",
                self.shared.config.name
            );
            threads.running = true;
            return;
        }
        match rotation::spawn(&self.shared) {
            Ok((stop_tx, handles)) => {
                threads.handles = handles;
                threads.stop_tx = Some(stop_tx);
                threads.running = true;
            }
            Err(e) => log::error!(
                "{}: cannot start the rotation thread: {e}",
                self.shared.config.name
            ),
        }
    }

    fn stop(&self) {
        let mut threads = self.threads.lock();
        // Close the gate first: whatever the threads do from here on, they cannot write.
        *self.shared.write_gate.lock() = true;
        self.shared.cancel_in_flight(CancelReason::Stopped);
        threads.stop_tx = None; // disconnects the stop channel
        for h in threads.handles.drain(..) {
            if h.join().is_err() {
                log::error!("{}: a manager thread panicked", self.shared.config.name);
            }
        }
        threads.running = false;
    }

    fn current(&self) -> Option<Arc<Certificate>> {
        self.shared.current_fast()
    }

    fn server_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }
}

impl Drop for CertificateManager {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::fake::FakeClock;
    use crate::pki::CertificateAuthority;

    const H: Duration = Duration::from_secs(3600);

    fn manager(clock: &FakeClock) -> CertificateManager {
        CertificateManager::new(
            Config::builder()
                .template(CsrTemplate::new("node"))
                .usages([KeyUsage::DigitalSignature, KeyUsage::ClientAuth])
                .clock(Arc::new(clock.clone()))
                .rng_seed(1)
                .build()
                .unwrap(),
        )
        .unwrap()
    }

    fn issue(ca: &CertificateAuthority, not_before: SystemTime, lifetime: Duration) -> Certificate {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        ca.issue(
            &CsrTemplate::new("node"),
            &key,
            &[KeyUsage::DigitalSignature, KeyUsage::ClientAuth],
            not_before,
            not_before + lifetime,
        )
        .unwrap()
    }

    /// client-go draws the deadline once per certificate (`nextRotationDeadline` is called once
    /// per pass, and a pass sleeps until it). Here it is drawn when the certificate is
    /// published, kept with it, and read with it: every look at the certificate sees the same
    /// deadline, in [70 %, 90 %) of its lifetime, until another certificate is published.
    #[test]
    fn the_deadline_is_drawn_once_per_published_certificate() {
        let t0 = crate::pki::unix_to_system_time(1_700_000_000);
        let clock = FakeClock::new(t0);
        let m = manager(&clock);
        assert_eq!(m.rotation_deadline(), None, "no certificate, no deadline");
        assert_eq!(m.shared.current_with_deadline(t0), None);
        let ca = CertificateAuthority::for_tests("ca").unwrap();
        for (name, not_before, lifetime) in [("first", t0 - H, 100 * H), ("second", t0, 10 * H)] {
            let published = m.shared.publish(issue(&ca, not_before, lifetime));
            let deadline = m.rotation_deadline().expect(name);
            assert!(
                deadline >= not_before + lifetime.mul_f64(0.7)
                    && deadline < not_before + lifetime.mul_f64(0.9),
                "{name}: {deadline:?}"
            );
            for _ in 0..10 {
                let (cert, d) = m.shared.current_with_deadline(t0).expect(name);
                assert!(Arc::ptr_eq(&cert, &published), "{name}");
                assert_eq!(d, deadline, "{name}: drawn again");
                assert_eq!(m.rotation_deadline(), Some(deadline), "{name}");
            }
        }
    }

    /// Every copy readers spread over serves TLS with the one signing key the published
    /// certificate loaded, not one each.
    #[test]
    fn copies_share_the_published_signing_key() {
        let t0 = crate::pki::unix_to_system_time(1_700_000_000);
        let clock = FakeClock::new(t0);
        let m = manager(&clock);
        let ca = CertificateAuthority::for_tests("ca").unwrap();
        let published = m.shared.publish(issue(&ca, t0, 10 * H));
        let key = published.certified_key().expect("a P-256 key signs");
        let record = m.shared.published.load();
        let copies = &record.as_ref().expect("published").copies;
        assert_eq!(copies.len(), copies_per_certificate());
        for copy in copies.iter() {
            assert!(Arc::ptr_eq(copy.certified_key().expect("signs"), key));
        }
    }

    /// What the rotation thread may rotate: only a certificate usable at `now`. An expired
    /// one, or one whose NotBefore is beyond the allowance, is no certificate at all (client-go
    /// treats an expired certificate as none), though its deadline stays readable.
    #[test]
    fn current_with_deadline_only_gives_a_usable_certificate() {
        let t0 = crate::pki::unix_to_system_time(1_700_000_000);
        let clock = FakeClock::new(t0);
        let m = manager(&clock);
        let ca = CertificateAuthority::for_tests("ca").unwrap();
        m.shared.publish(issue(&ca, t0, 10 * H));
        for (name, now, usable) in [
            ("at NotBefore", t0, true),
            (
                "one second before NotAfter",
                t0 + 10 * H - Duration::from_secs(1),
                true,
            ),
            // RFC 5280 4.1.2.5: the validity period includes NotAfter.
            ("at NotAfter", t0 + 10 * H, true),
            (
                "one second after NotAfter",
                t0 + 10 * H + Duration::from_secs(1),
                false,
            ),
            ("after NotAfter", t0 + 11 * H, false),
            ("an hour before NotBefore", t0 - H, false),
        ] {
            assert_eq!(
                m.shared.current_with_deadline(now).is_some(),
                usable,
                "{name}"
            );
        }
        assert!(m.rotation_deadline().is_some());
    }
}
