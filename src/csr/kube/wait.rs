//! Wait: list, then watch, until the request is issued, denied, failed, deleted or replaced,
//! or the wait times out or is cancelled (see "Status rules of the wait" in the parent module).

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use rand::RngExt;
use ureq::Agent;

use super::decode::{api_error_from_status, check_type, check_type_value, csr_from_value};
use super::{KubeCsrClient, SHORT_WATCH, collection, encode, other_version, watch_read_timeout};
use crate::csr::api::{self, CertificateSigningRequest, CsrList, Status, WatchEvent};
use crate::csr::backoff::RelistBackoff;
use crate::csr::{ApiError, ApiVersion, Cancel, CsrError, CsrRef, WaitProgress};
use crate::pki::{self};
use crate::report::{CauseText, Chain};

impl KubeCsrClient {
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

/// The fraction of the wait timeout after which a request that is approved but still has no
/// certificate is logged as a warning (once per wait): one half.
pub const APPROVED_NOT_ISSUED_WARN_FRACTION: f64 = 0.5;

/// One wait: list, then watch, until a verdict.
pub(super) struct Waiter<'a> {
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

impl<'a> Waiter<'a> {
    /// A wait for `csr` of at most `timeout`, every request on `agent`.
    pub(super) fn new(
        client: &'a KubeCsrClient,
        agent: Agent,
        csr: &'a CsrRef,
        timeout: Duration,
        cancel: &'a Cancel,
    ) -> Waiter<'a> {
        let started = Instant::now();
        // A huge timeout (Duration::MAX) means "practically forever", not an overflow.
        let far = |d: Duration| {
            started
                .checked_add(d)
                .or_else(|| started.checked_add(Duration::from_secs(1 << 32)))
                .unwrap_or(started)
        };
        Waiter {
            client,
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
            backoff: RelistBackoff::new(client.retry_interval),
        }
    }
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

    pub(super) fn run(&mut self) -> Result<Vec<u8>, CsrError> {
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
            let (event, next_rv) = match decode_event(text, version) {
                Ok(decoded) => decoded,
                Err(EventError::Malformed(e)) => {
                    // client-go's stream watcher reports an event it cannot decode as a watch
                    // error; its reflector lists and watches again after the backoff pause.
                    log::warn!("malformed watch event for {:?}: {e}", self.name());
                    self.failed(CsrError::InvalidResponse {
                        op: "watch",
                        message: format!("malformed watch event: {e}"),
                    });
                    return Ok(WatchEnd::Relist(Duration::ZERO));
                }
                Err(EventError::Invalid(e)) => return Err(e),
            };
            if let Some(v) = next_rv {
                *rv = v;
            }
            match event {
                Event::Changed(obj) => {
                    if obj.metadata.name.as_deref() == Some(self.name())
                        && let Some(cert) = self.observe(&obj)?
                    {
                        return Ok(WatchEnd::Issued(cert));
                    }
                }
                Event::Deleted(obj) => {
                    if obj.metadata.name.as_deref() == Some(self.name()) {
                        return Err(CsrError::Deleted {
                            name: self.csr.name.clone(),
                        });
                    }
                }
                Event::Bookmark => {}
                Event::Error(err) => {
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
            }
        }
    }
}

/// One watch event, decoded and checked ([`decode_event`]).
#[derive(Debug)]
pub(super) enum Event {
    /// `ADDED` or `MODIFIED`: the object as it is now.
    Changed(CertificateSigningRequest),
    /// `DELETED`: the object as it was.
    Deleted(CertificateSigningRequest),
    /// `BOOKMARK`: only a resourceVersion.
    Bookmark,
    /// `ERROR`: the `Status` it carries (a `410 Expired` when the version is too old).
    Error(ApiError),
}

/// Why a watch event line is not an [`Event`].
#[derive(Debug)]
pub(super) enum EventError {
    /// Not a JSON watch event: client-go's stream watcher ends the watch, and the wait lists
    /// and watches again.
    Malformed(serde_json::Error),
    /// A watch event the wait cannot go on with (an object of another kind or version, an
    /// unknown event type, a malformed object or Status): it ends the wait.
    Invalid(CsrError),
}

/// Decodes one watch event line (without its newline) of a watch under `version`: the event,
/// and the resourceVersion to watch from next when the event carries one (not an `ERROR`
/// event's). Pure: no I/O, no clock; the wait's loop and the fuzz target both run it.
///
/// # Errors
/// [`EventError`]: whether the watch is retried or the wait ends.
pub(super) fn decode_event(
    text: &[u8],
    version: ApiVersion,
) -> Result<(Event, Option<String>), EventError> {
    let event: WatchEvent = serde_json::from_slice(text).map_err(EventError::Malformed)?;
    let invalid = EventError::Invalid;
    match event.type_.as_str() {
        "ERROR" => check_type_value("watch", &event.object, "Status", None).map_err(invalid)?,
        "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" => {
            check_type_value("watch", &event.object, api::KIND_CSR, Some(version))
                .map_err(invalid)?;
        }
        _ => {}
    }
    let next_rv = event
        .object
        .pointer("/metadata/resourceVersion")
        .and_then(|v| v.as_str())
        .filter(|_| event.type_ != "ERROR")
        .map(str::to_owned);
    let decoded = match event.type_.as_str() {
        "ADDED" | "MODIFIED" => Event::Changed(csr_from_value(event.object).map_err(invalid)?),
        "DELETED" => Event::Deleted(csr_from_value(event.object).map_err(invalid)?),
        "BOOKMARK" => Event::Bookmark,
        "ERROR" => {
            let status: Status = serde_json::from_value(event.object).map_err(|e| {
                invalid(CsrError::InvalidResponse {
                    op: "watch",
                    message: format!("malformed Status in watch ERROR event: {e}"),
                })
            })?;
            let code = status
                .code
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (100..600).contains(c))
                .unwrap_or(500);
            Event::Error(api_error_from_status(code, None, status))
        }
        other => {
            return Err(invalid(CsrError::InvalidResponse {
                op: "watch",
                message: format!("unknown watch event type {other:?}"),
            }));
        }
    };
    Ok((decoded, next_rv))
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
pub(super) enum Judged {
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
pub(super) fn judge(csr: &CsrRef, obj: &CertificateSigningRequest) -> Result<Judged, CsrError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(line: &str) -> Result<(Event, Option<String>), EventError> {
        decode_event(line.as_bytes(), ApiVersion::V1)
    }

    const CSR: &str = r#"{"kind":"CertificateSigningRequest","apiVersion":"certificates.k8s.io/v1","metadata":{"name":"csr-1","resourceVersion":"7"},"spec":{"request":"","signerName":"s","usages":[]}}"#;

    /// Each kind of line a watch can carry, and what the wait does with it: go on (an event,
    /// and the version to resume from), watch again (not JSON), or end (anything else wrong).
    #[test]
    fn watch_events_by_type() {
        for t in ["ADDED", "MODIFIED"] {
            let (event, rv) = decode(&format!(r#"{{"type":"{t}","object":{CSR}}}"#)).unwrap();
            assert!(
                matches!(&event, Event::Changed(o) if o.metadata.name.as_deref() == Some("csr-1")),
                "{t}: {event:?}"
            );
            assert_eq!(rv.as_deref(), Some("7"), "{t}");
        }
        let (event, rv) = decode(&format!(r#"{{"type":"DELETED","object":{CSR}}}"#)).unwrap();
        assert!(matches!(event, Event::Deleted(_)), "{event:?}");
        assert_eq!(rv.as_deref(), Some("7"));

        let bookmark = r#"{"type":"BOOKMARK","object":{"kind":"CertificateSigningRequest","apiVersion":"certificates.k8s.io/v1","metadata":{"resourceVersion":"9"}}}"#;
        let (event, rv) = decode(bookmark).unwrap();
        assert!(matches!(event, Event::Bookmark), "{event:?}");
        assert_eq!(rv.as_deref(), Some("9"));

        // An ERROR event's Status: its code and reason; its own resourceVersion is not one to
        // resume from.
        let expired = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{"resourceVersion":"3"},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}"#;
        let (event, rv) = decode(expired).unwrap();
        assert!(
            matches!(&event, Event::Error(e) if e.is_expired() && e.code == 410),
            "{event:?}"
        );
        assert_eq!(rv, None);
        // A Status without a usable code counts as 500.
        let (event, _) =
            decode(r#"{"type":"ERROR","object":{"status":"Failure","code":7}}"#).unwrap();
        assert!(
            matches!(&event, Event::Error(e) if e.code == 500 && !e.is_expired()),
            "{event:?}"
        );

        // Not a watch event at all: the watch is retried.
        for line in ["not json", r#"{"type":"ADDED"}"#, "[]"] {
            assert!(
                matches!(decode(line), Err(EventError::Malformed(_))),
                "{line}: {:?}",
                decode(line)
            );
        }
        // A watch event the wait cannot go on with: the wait ends.
        let v1beta1 = CSR.replace("certificates.k8s.io/v1", "certificates.k8s.io/v1beta1");
        for line in [
            r#"{"type":"ADDED","object":{"kind":"Secret","apiVersion":"v1"}}"#.to_owned(),
            format!(r#"{{"type":"MODIFIED","object":{v1beta1}}}"#),
            format!(r#"{{"type":"SOMETHING","object":{CSR}}}"#),
            r#"{"type":"ERROR","object":{"kind":"Pod","apiVersion":"v1"}}"#.to_owned(),
            r#"{"type":"ERROR","object":{"status":"Failure","code":"410"}}"#.to_owned(),
            r#"{"type":"ADDED","object":{"metadata":{"name":7}}}"#.to_owned(),
        ] {
            assert!(
                matches!(decode(&line), Err(EventError::Invalid(_))),
                "{line}: {:?}",
                decode(&line)
            );
        }
    }
}
