//! Helpers for testing programs that use certrotate (feature `test-util`): a fake clock and a
//! scripted in-process CSR API.
//!
//! [`FakeCsrApi`] stands in for the CSR API at the [`CsrClient`] seam: creates succeed and waits
//! return a certificate signed by its own CA unless a test scripts otherwise, and every call is
//! recorded and reported as an [`ApiEvent`] so tests can wait for "the manager created a CSR"
//! instead of sleeping. For tests through real HTTP and TLS, use the embedded server (feature
//! `server`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::clock::Clock;
pub use crate::clock::fake::FakeClock;
use crate::csr::BoxError;
use crate::csr::{ApiError, ApiVersion, Cancel, CsrClient, CsrError, CsrRef, CsrRequest};
use crate::pki::{Certificate, CertificateAuthority, parse_csr_pem};

/// What the fake API reports as it is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiEvent {
    /// The factory built a client; the serial of the certificate it was given, if any.
    ClientBuilt(Option<String>),
    /// A create call was answered: the CSR name, or the error text with its causes.
    Created(Result<String, String>),
    /// A wait started for this CSR.
    WaitStarted(String),
    /// A wait ended: `Ok` with the CSR name, or the error text with its causes.
    WaitEnded(Result<String, String>),
}

/// How the next create call answers.
pub enum CreateStep {
    /// Succeeds.
    Succeed,
    /// Fails with this error.
    Fail(CsrError),
}

/// Makes a wait's answer from the request and the API's CA.
pub type Responder = Box<dyn FnOnce(&CsrRequest, &CertificateAuthority) -> Vec<u8> + Send>;

/// How the next wait answers.
pub enum WaitStep {
    /// Signs the request with the API's CA: NotBefore = now, NotAfter = now + the API's
    /// issued lifetime.
    Issue,
    /// Blocks until the wait is cancelled, or its timeout (real time) passes.
    Hang,
    /// Fails with this error.
    Fail(CsrError),
    /// Returns what the closure makes of the request (e.g. a chain for another key).
    Respond(Responder),
}

struct State {
    create_script: VecDeque<CreateStep>,
    wait_script: VecDeque<WaitStep>,
    requests: Vec<(CsrRef, CsrRequest)>,
    outstanding: usize,
    max_outstanding: usize,
    next_id: u64,
}

/// A scripted, in-process CSR API (see the module docs).
pub struct FakeCsrApi {
    ca: CertificateAuthority,
    clock: Arc<dyn Clock>,
    issued_lifetime: Duration,
    state: Mutex<State>,
    events_tx: Sender<ApiEvent>,
    events_rx: Receiver<ApiEvent>,
}

impl std::fmt::Debug for FakeCsrApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCsrApi").finish_non_exhaustive()
    }
}

impl FakeCsrApi {
    /// A fake API that issues certificates valid for `issued_lifetime` from `clock`'s now.
    ///
    /// # Panics
    /// If its CA cannot be made (key generation failed), which only a broken crypto backend does.
    pub fn new(clock: Arc<dyn Clock>, issued_lifetime: Duration) -> Arc<FakeCsrApi> {
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        Arc::new(FakeCsrApi {
            ca: CertificateAuthority::for_tests("fake-csr-api-ca")
                .expect("generating a P-256 key for the test CA"),
            clock,
            issued_lifetime,
            state: Mutex::new(State {
                create_script: VecDeque::new(),
                wait_script: VecDeque::new(),
                requests: Vec::new(),
                outstanding: 0,
                max_outstanding: 0,
                next_id: 0,
            }),
            events_tx,
            events_rx,
        })
    }

    /// The CA that signs issued certificates.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// Queues how the next create calls answer (after the script runs out: succeed).
    pub fn script_create(&self, step: CreateStep) {
        self.state.lock().create_script.push_back(step);
    }

    /// Queues how the next waits answer (after the script runs out: issue).
    pub fn script_wait(&self, step: WaitStep) {
        self.state.lock().wait_script.push_back(step);
    }

    /// Every successful create so far, in order.
    pub fn requests(&self) -> Vec<(CsrRef, CsrRequest)> {
        self.state.lock().requests.clone()
    }

    /// How many creates succeeded.
    pub fn created(&self) -> usize {
        self.state.lock().requests.len()
    }

    /// The most waits that were in flight at once.
    pub fn max_outstanding(&self) -> usize {
        self.state.lock().max_outstanding
    }

    /// The stream of [`ApiEvent`]s (shared by all callers: each event is received once).
    pub fn events(&self) -> &Receiver<ApiEvent> {
        &self.events_rx
    }

    /// Waits up to `timeout` (real time) for an event matching `pred`, discarding others.
    /// Returns the event, or `None` on timeout.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&ApiEvent) -> bool,
    ) -> Option<ApiEvent> {
        let end = std::time::Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(std::time::Instant::now())?;
            match self.events_rx.recv_timeout(left) {
                Ok(ev) if pred(&ev) => return Some(ev),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// A client factory for [`ConfigBuilder::client_factory`](crate::ConfigBuilder::client_factory).
    pub fn factory(
        self: &Arc<Self>,
    ) -> impl Fn(Option<&Certificate>) -> Result<Box<dyn CsrClient>, BoxError> + Send + Sync + 'static
    {
        let api = self.clone();
        move |cert: Option<&Certificate>| {
            let _ = api
                .events_tx
                .send(ApiEvent::ClientBuilt(cert.map(Certificate::serial_hex)));
            Ok(Box::new(FakeClient { api: api.clone() }) as Box<dyn CsrClient>)
        }
    }

    /// A 404 `Status` error as the API would send it.
    pub fn not_found() -> CsrError {
        api_error(404, "NotFound", true)
    }
}

/// A CSR API error with the given code and reason; `is_status` says whether the body was a
/// `Status` object.
pub fn api_error(code: u16, reason: &str, is_status: bool) -> CsrError {
    CsrError::Api {
        op: "create",
        path: "/apis/certificates.k8s.io/v1/certificatesigningrequests".into(),
        error: ApiError {
            code,
            reason: reason.into(),
            message: format!("fake {reason}"),
            is_status,
            retry_after: None,
        },
    }
}

struct FakeClient {
    api: Arc<FakeCsrApi>,
}

impl CsrClient for FakeClient {
    fn create(&self, request: &CsrRequest, cancel: &Cancel) -> Result<CsrRef, CsrError> {
        if cancel.is_cancelled() {
            return Err(request.cancelled());
        }
        let mut st = self.api.state.lock();
        let step = st.create_script.pop_front().unwrap_or(CreateStep::Succeed);
        let result = match step {
            CreateStep::Fail(e) => Err(e),
            CreateStep::Succeed => {
                st.next_id += 1;
                let csr = CsrRef {
                    name: format!("csr-{}", st.next_id),
                    uid: format!("uid-{}", st.next_id),
                    api_version: ApiVersion::V1,
                    resource_version: String::new(),
                };
                st.requests.push((csr.clone(), request.clone()));
                Ok(csr)
            }
        };
        drop(st);
        let _ = self.api.events_tx.send(ApiEvent::Created(
            result
                .as_ref()
                .map(|c| c.name.clone())
                .map_err(|e| crate::report::Chain(e).to_string()),
        ));
        result
    }

    fn wait_for_certificate(
        &self,
        csr: &CsrRef,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<Vec<u8>, CsrError> {
        let (step, request) = {
            let mut st = self.api.state.lock();
            st.outstanding += 1;
            st.max_outstanding = st.max_outstanding.max(st.outstanding);
            let request = st
                .requests
                .iter()
                .find(|(r, _)| r == csr)
                .map(|(_, req)| req.clone());
            (
                st.wait_script.pop_front().unwrap_or(WaitStep::Issue),
                request,
            )
        };
        let _ = self
            .api
            .events_tx
            .send(ApiEvent::WaitStarted(csr.name.clone()));
        let result = match (step, request) {
            (_, None) => Err(CsrError::Deleted {
                name: csr.name.clone(),
            }),
            (WaitStep::Fail(e), _) => Err(e),
            (WaitStep::Hang, _) => match cancel.receiver().recv_timeout(timeout) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    Err(CsrError::timeout(csr.name.clone(), timeout))
                }
                _ => Err(CsrError::Cancelled {
                    name: csr.name.clone(),
                }),
            },
            (WaitStep::Respond(f), Some(req)) => Ok(f(&req, &self.api.ca)),
            (WaitStep::Issue, Some(req)) => self.issue(&req),
        };
        // A cancel that raced with the answer wins, as with a real watch.
        let result = match result {
            Ok(_) if cancel.is_cancelled() => Err(CsrError::Cancelled {
                name: csr.name.clone(),
            }),
            r => r,
        };
        self.api.state.lock().outstanding -= 1;
        let _ = self.api.events_tx.send(ApiEvent::WaitEnded(
            result
                .as_ref()
                .map(|_| csr.name.clone())
                .map_err(|e| crate::report::Chain(e).to_string()),
        ));
        result
    }
}

impl FakeClient {
    fn issue(&self, req: &CsrRequest) -> Result<Vec<u8>, CsrError> {
        let invalid = |e: crate::pki::PkiError| CsrError::InvalidResponse {
            op: "wait",
            message: e.to_string(),
        };
        let parsed = parse_csr_pem(req.csr_pem.as_bytes()).map_err(invalid)?;
        let now = self.api.clock.now();
        self.api
            .ca
            .sign_csr(&parsed, &req.usages, now, now + self.api.issued_lifetime)
            .map(String::into_bytes)
            .map_err(invalid)
    }
}
