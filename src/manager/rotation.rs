//! The rotation thread, the template thread, and one rotation attempt.
//!
//! # The rotation thread
//! Each pass computes the rotation deadline ([`schedule::next_deadline`]) and sleeps towards it
//! in slices of at most `max_sleep_slice`, in a `select_biased!` over stop, template-changed and
//! the timer — stop first, so stop always wins a tie. At every wake it re-reads the wall clock,
//! so a clock step or a suspend is noticed within one slice. The jittered deadline is drawn once
//! per certificate (re-drawing at every wake would pull rotations towards the start of the
//! window). When the deadline is reached it runs attempts with backoff until one succeeds, the
//! template disappears, or stop. A certificate that arrives already past its rotation deadline
//! (a backdated one, or a signer whose clock is behind) is not rotated again at once: such
//! rotations are spaced out as failed attempts are. Idle, the thread is blocked in `select!`.
//!
//! # The template thread
//! Only for a dynamic template with polling on: every poll interval it checks whether the
//! current certificate satisfies the template and whether the template differs from the last
//! request (client-go's rule, which keeps a restart with a good certificate from sending a CSR).
//! If both, it cancels the in-flight wait and signals the rotation thread.
//! [`CertificateManager::notify_template_changed`](crate::CertificateManager::notify_template_changed)
//! runs the same check on the caller's thread.
//!
//! # One attempt
//! Key → CSR → client (from the factory, given the current certificate) → create (cancellable)
//! → wait (timeout on the manager's clock; see [`wait_with_timeout`]) → verify the issued chain against the key and the
//! template, and as a TLS peer would for the requested usages ([`pki::verify_chain`]) → store →
//! publish. Any failure, a refused chain included, leaves the stored and served certificate as
//! it was and counts as a failed attempt (backoff, failure counter; health is not touched).
//!
//! # One outstanding CSR
//! A manager has at most one CSR pending, and asks only once for each certificate it gets:
//!
//! - The key and the CSR of a request are kept in memory ([`PendingRequest`]) until the request
//!   is answered. An attempt that ends while the CSR may still be issued (the wait timed out,
//!   the server failed, the create failed, the manager stopped) leaves them for the next
//!   attempt, which waits for the same CSR (by name and uid) instead of creating another, or
//!   retries the create with the same key. The CSR is named after its key, template and usages
//!   (`csr-` and a digest, as the kubelet names bootstrap CSRs; client-go uses
//!   `generateName: csr-`),
//!   so a create whose answer was lost and that is sent again meets its own CSR
//!   (`AlreadyExists`, adopted once found compatible) instead of making a second. They are dropped when the CSR is denied, failed,
//!   deleted or replaced, when its certificate arrives (usable or not), and when the template
//!   changes; only then does an attempt make a new key. client-go makes a new key and CSR at
//!   every attempt; its kubelet keeps the key on disk for the bootstrap CSR only (see
//!   [`kubelet::bootstrap`](crate::kubelet::bootstrap)). The key is also given to the store
//!   ([`Store::set_pending_key`](crate::Store::set_pending_key); `FileStore` writes
//!   `<prefix>-pending.key`, 0600) and forgotten once the CSR is answered, so a manager
//!   restarted meanwhile sends the same request again and meets its own CSR.
//! - A certificate that was issued and verified but could not be stored (or arrived as the
//!   manager stopped) is kept in memory, key included; the next attempt stores that one rather
//!   than asking again, as long as it has not expired and satisfies the template.
//!
//! Failed attempts still back off as usual, so a manager whose store always fails makes one CSR
//! and then retries the store on the backoff schedule (about 115 attempts an hour), and one
//! whose CSRs are never approved makes one CSR and waits for it again after every timeout.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select_biased};

use crate::csr::{Cancel, CancelReason, CsrError, CsrRef, CsrRequest};
use crate::error::Error;
use crate::manager::{KeySource, Shared};
use crate::pki::{self, Certificate, PrivateKey, fmt_duration, fmt_time};
use crate::schedule;
use crate::template::CsrTemplate;

/// Spawns the rotation thread, and the template thread when the template is dynamic and polled.
/// Returns the stop sender (dropping it stops the threads) and the handles to join.
pub(crate) fn spawn(shared: &Arc<Shared>) -> std::io::Result<(Sender<()>, Vec<JoinHandle<()>>)> {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let stack = shared.config.thread_stack_size;
    let mut handles = Vec::with_capacity(2);
    let (s, stop) = (shared.clone(), stop_rx.clone());
    handles.push(
        std::thread::Builder::new()
            .name("certrotate-rotation".into())
            .stack_size(stack)
            .spawn(move || rotation_loop(&s, &stop))?,
    );
    if let (true, Some(interval)) = (shared.is_dynamic(), shared.config.template_poll_interval) {
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("certrotate-template".into())
            .stack_size(stack)
            .spawn(move || template_loop(&s, &stop_rx, interval));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                // Do not leave the rotation thread running without its sibling.
                drop(stop_tx);
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    }
    Ok((stop_tx, handles))
}

/// What woke a sleep.
enum Wake {
    Timer,
    TemplateChanged,
    Stop,
}

fn sleep(shared: &Shared, stop: &Receiver<()>, d: Duration) -> Wake {
    let timer = shared.clock().after(d);
    select_biased! {
        recv(stop) -> _ => Wake::Stop,
        recv(shared.template_changed_rx) -> _ => Wake::TemplateChanged,
        recv(timer.receiver()) -> _ => Wake::Timer,
    }
}

fn rotation_loop(shared: &Shared, stop: &Receiver<()>) {
    let name = &shared.config.name;
    // Whether the last pass rotated, and how many passes in a row found the certificate it got
    // already past its rotation deadline.
    let (mut rotated, mut issued_late) = (false, 0u32);
    loop {
        // Read before the certificate the decision below rests on: if it has changed by the time
        // this thread's attempt may run, another attempt (`rotate_now`) rotated meanwhile.
        let seen = shared.generation();
        let now = shared.clock().now();
        shared.update_ttl_gauge(now);
        let cert = shared.current_at(now);
        let template = shared.template();
        let forced = shared.forced.load(Ordering::Relaxed);
        let due_now =
            forced || !crate::pki::cert_satisfies_template(cert.as_deref(), template.as_ref());
        let deadline = match (&cert, due_now) {
            (Some(c), false) => shared.deadline_of(c),
            _ => now,
        };
        if deadline > now {
            (rotated, issued_late) = (false, 0);
            let d = schedule::sleep_slice(deadline, now, shared.config.max_sleep_slice);
            log::debug!(
                "{name}: waiting {} for the next certificate rotation",
                fmt_duration(d)
            );
            match sleep(shared, stop, d) {
                Wake::Stop => return,
                // Either way, recompute from the wall clock and the current template: a changed
                // template the certificate does not satisfy makes the deadline "now".
                Wake::Timer | Wake::TemplateChanged => continue,
            }
        }
        if template.is_none() && shared.template().is_none() {
            // Nothing to request: wait for a template to appear, without counting a failure.
            let d = shared
                .config
                .template_poll_interval
                .unwrap_or(shared.config.max_sleep_slice)
                .min(shared.config.max_sleep_slice);
            if let Wake::Stop = sleep(shared, stop, d) {
                return;
            }
            continue;
        }
        if rotated && !due_now {
            // The certificate just issued is already past its rotation deadline (the signer
            // backdated it, or its clock is behind). Another rotation at once would only get
            // another such certificate: space them out as failed attempts are.
            rotated = false;
            issued_late = issued_late.saturating_add(1);
            let d = schedule::backoff_delay(issued_late, None, &mut *shared.rng.lock());
            log::warn!(
                "{name}: the certificate just issued is already past its rotation deadline {} (is the signer's clock behind?); rotating again in {}",
                fmt_time(deadline),
                fmt_duration(d)
            );
            if let Wake::Stop = sleep(shared, stop, d) {
                return;
            }
            continue;
        }
        log::info!("{name}: Rotating certificates");
        match rotate_with_backoff(shared, stop, seen) {
            Flow::Stop => return,
            Flow::Rotated => rotated = true,
            Flow::Continue => rotated = false,
        }
    }
}

enum Flow {
    /// An attempt succeeded.
    Rotated,
    /// Decide again without a rotation (template change, no template, rotated meanwhile).
    Continue,
    Stop,
}

/// Attempts until one succeeds, backing off between failures. `seen` is the publish generation
/// the decision to rotate was made on; when another attempt has published a certificate since,
/// this returns without an attempt so that the caller decides again.
fn rotate_with_backoff(shared: &Shared, stop: &Receiver<()>, seen: u64) -> Flow {
    let name = &shared.config.name;
    let mut failures: u32 = 0;
    loop {
        // A wake, as the deadline sleep's: an outage may keep the thread here for hours.
        shared.update_ttl_gauge(shared.clock().now());
        let requested = shared.template();
        let result = {
            let _serial = shared.attempt_lock.lock();
            if shared.generation() != seen {
                log::debug!("{name}: the certificate was rotated meanwhile, deciding again");
                return Flow::Continue;
            }
            attempt_serialised(shared)
        };
        match result {
            Ok(_) => return Flow::Rotated,
            Err(Error::Stopped) => return Flow::Stop,
            Err(Error::NoTemplate) => return Flow::Continue,
            Err(Error::Csr(CsrError::Cancelled { .. })) => {
                // Cancelled for a template change: recompute, which requests again at once if
                // the certificate does not satisfy the new template.
                if stop_requested(shared, stop) {
                    return Flow::Stop;
                }
                return Flow::Continue;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let retry_after = match &e {
                    Error::Csr(c) => c.retry_after(),
                    _ => None,
                };
                let delay = schedule::backoff_delay(failures, retry_after, &mut *shared.rng.lock());
                if schedule::backoff_exhausted(failures) {
                    log::error!(
                        "{name}: Reached backoff limit, still unable to rotate certs: {}",
                        error_chain(&e)
                    );
                }
                log::debug!("{name}: next attempt in {}", fmt_duration(delay));
                match backoff_sleep(shared, stop, delay, requested.as_ref()) {
                    Wake::Stop => return Flow::Stop,
                    Wake::Timer => {}
                    Wake::TemplateChanged => return Flow::Continue,
                }
            }
        }
    }
}

/// Sleeps a backoff delay. A template-changed signal ends it early only when the template now
/// differs from `requested`, the one the failed attempt asked for. The template thread signals
/// at every poll while the certificate does not satisfy the template and no CSR was created for
/// it (the last request is recorded on create), which is the case all along while creates
/// fail; those signals alone must not cut the backoff short (client-go does not listen for
/// template changes while backing off at all).
fn backoff_sleep(
    shared: &Shared,
    stop: &Receiver<()>,
    d: Duration,
    requested: Option<&CsrTemplate>,
) -> Wake {
    let timer = shared.clock().after(d);
    loop {
        select_biased! {
            recv(stop) -> _ => return Wake::Stop,
            recv(shared.template_changed_rx) -> _ => {
                if shared.template().as_ref() != requested {
                    return Wake::TemplateChanged;
                }
            }
            recv(timer.receiver()) -> _ => return Wake::Timer,
        }
    }
}

fn stop_requested(shared: &Shared, stop: &Receiver<()>) -> bool {
    *shared.write_gate.lock()
        || matches!(
            stop.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
}

/// Clears the in-flight cancel signal when an attempt ends, however it ends.
struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        *self.0.in_flight.lock() = None;
    }
}

/// One rotation attempt (client-go `rotateCerts`); counts the failure and logs it on error.
pub(crate) fn attempt(shared: &Shared) -> Result<Arc<Certificate>, Error> {
    let _serial = shared.attempt_lock.lock();
    attempt_serialised(shared)
}

/// [`attempt`], for a caller that holds `attempt_lock`.
fn attempt_serialised(shared: &Shared) -> Result<Arc<Certificate>, Error> {
    let _clear = InFlight(shared);
    let cancel = arm(shared)?;
    let result = attempt_inner(shared, cancel);
    match &result {
        Ok(_) => {} // logged where it is published, with the old serial
        Err(Error::Stopped | Error::NoTemplate) => {}
        Err(Error::Csr(CsrError::Cancelled { .. })) => {
            log::info!(
                "{}: certificate request cancelled: template changed",
                shared.config.name
            );
        }
        Err(e) => {
            if !matches!(e, Error::Store(_)) {
                // A store failure is logged where it happens, with its cause.
                log::error!(
                    "{}: failed while requesting a signed certificate from the control plane: {}",
                    shared.config.name,
                    error_chain(&e)
                );
            }
            if let Some(c) = &shared.config.renew_failure_counter {
                c.inc();
            }
        }
    }
    result
}

/// Publishes a fresh cancel signal for the attempt in flight, then checks the write gate (in that
/// order: `stop()` closes the gate, then cancels, so one of the two always catches a stop).
fn arm(shared: &Shared) -> Result<Cancel, Error> {
    let cancel = Cancel::new();
    *shared.in_flight.lock() = Some(cancel.clone());
    if *shared.write_gate.lock() {
        return Err(Error::Stopped);
    }
    Ok(cancel)
}

/// The request of this manager that has no answer yet: its key, kept in memory until the
/// request ends (issued, denied, failed, deleted, replaced) or the template changes, and the CSR
/// object once created. The next attempt for the same template waits for that CSR again rather
/// than creating another, so a manager has at most one pending CSR.
pub(crate) struct PendingRequest {
    template: CsrTemplate,
    key: PrivateKey,
    request: CsrRequest,
    csr: Option<CsrRef>,
}

/// Whether the CSR can no longer be issued, so a new request (with a new key) is needed.
fn request_over(e: &Error) -> bool {
    matches!(
        e,
        Error::Csr(
            CsrError::Denied { .. }
                | CsrError::Failed { .. }
                | CsrError::Deleted { .. }
                | CsrError::UidChanged { .. }
                | CsrError::Incompatible { .. }
        )
    )
}

fn attempt_inner(shared: &Shared, cancel: Cancel) -> Result<Arc<Certificate>, Error> {
    let config = &shared.config;
    let template = shared.template().ok_or(Error::NoTemplate)?;
    let now = shared.clock().now();
    let current = shared.current_at(now);
    // A certificate issued earlier whose store failed: store that one, do not ask again.
    let unstored = shared.unstored.lock().take();
    if let Some(cert) = unstored {
        if !cert.is_expired_at(now) && template.satisfied_by(&cert) {
            log::info!(
                "{}: storing certificate {} again (issued earlier, its store failed)",
                config.name,
                cert.serial_hex()
            );
            return store_and_publish(shared, cert, current.as_deref());
        }
        log::info!(
            "{}: dropping certificate {} that could not be stored: it has expired or no longer satisfies the template",
            config.name,
            cert.serial_hex()
        );
    }
    let factory = config.client_factory.as_ref().ok_or(Error::NoClient)?;
    let pending = shared.pending.lock().take();
    let mut pending = match pending {
        Some(p)
            if p.template == template
                && p.request.usages == shared.usages_for(p.key.algorithm()) =>
        {
            p
        }
        stale => {
            // The kept key is for the request of a manager before a restart; one this manager
            // replaced (the template changed) is not sent again.
            let after_restart = stale.is_none();
            if let Some(PendingRequest { csr: Some(csr), .. }) = stale {
                log::info!(
                    "{}: the template changed; no longer waiting for certificate signing request {:?}",
                    config.name,
                    csr.name
                );
            }
            new_request(shared, template, current.as_deref(), after_restart)?
        }
    };
    let client = match factory(current.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            *shared.pending.lock() = Some(pending);
            return Err(Error::ClientFactory(e));
        }
    };
    let chain_pem = match request_and_wait(shared, &*client, &mut pending, cancel) {
        Ok(pem) => pem,
        Err(e) => {
            // Still pending (or not created): the next attempt goes on with this key. Over:
            // the next attempt starts afresh.
            if request_over(&e) {
                forget_kept_key(shared);
            } else {
                *shared.pending.lock() = Some(pending);
            }
            return Err(e);
        }
    };
    // Answered: whatever comes of the certificate, this key is not sent again.
    forget_kept_key(shared);
    let cert = pki::verify_issued(
        &chain_pem,
        &pending.key,
        Some(&pending.template),
        &pending.request.usages,
        shared.clock().now(),
    )?;
    store_and_publish(shared, cert, current.as_deref())
}

/// The key of this manager's request from before a restart, when the store kept one
/// ([`Store::pending_key`](crate::Store::pending_key)) that may be sent again: it parses, is
/// strong enough and of the configured algorithm, and is not the key of the certificate in use
/// (a request already answered). Anything else is logged and a new key is made.
fn kept_key(shared: &Shared, current: Option<&Certificate>) -> Option<PrivateKey> {
    let config = &shared.config;
    let pem = match config.store.pending_key() {
        Ok(Some(pem)) => pem,
        Ok(None) => return None,
        Err(e) => {
            log::warn!(
                "{}: cannot read the key kept for an earlier request, making a new one: {}",
                config.name,
                error_chain(&e)
            );
            return None;
        }
    };
    let key = match PrivateKey::from_pem(&pem) {
        Ok(key) => key,
        Err(e) => {
            log::warn!(
                "{}: the key kept for an earlier request is unusable, making a new one: {e}",
                config.name
            );
            return None;
        }
    };
    let answered =
        current.is_some_and(|c| c.private_key().public_key_der() == key.public_key_der());
    let other_algorithm = matches!(&config.key, KeySource::Algorithm(a) if *a != key.algorithm());
    if answered || other_algorithm || key.check_strength().is_err() {
        return None;
    }
    Some(key)
}

/// Forgets the kept key of a request that was answered. A failure is only logged: a key left
/// behind is the current certificate's (not sent again, see [`kept_key`]) or that of a request
/// that is asked again and answered as before.
fn forget_kept_key(shared: &Shared) {
    if let Err(e) = shared.config.store.set_pending_key(None) {
        log::warn!(
            "{}: cannot remove the key kept for an answered request: {}",
            shared.config.name,
            error_chain(&e)
        );
    }
}

/// A new key and the request for it; or, when this manager has no request of its own in memory
/// (`after_restart`), the request made before a restart, with the key the store kept
/// ([`kept_key`]), so that it meets the CSR it made then.
fn new_request(
    shared: &Shared,
    template: CsrTemplate,
    current: Option<&Certificate>,
    after_restart: bool,
) -> Result<PendingRequest, Error> {
    let config = &shared.config;
    let kept = if after_restart {
        kept_key(shared, current)
    } else {
        None
    };
    let key = match kept {
        Some(key) => {
            log::info!(
                "{}: sending the request made before a restart again, with its kept key",
                config.name
            );
            key
        }
        None => {
            let key = shared.new_key()?;
            if let Err(e) = config.store.set_pending_key(Some(key.to_pem().as_bytes())) {
                log::warn!(
                    "{}: cannot keep the new request's key in the store (a restart before it is answered makes another CSR): {}",
                    config.name,
                    error_chain(&e)
                );
            }
            key
        }
    };
    let usages = shared.usages_for(key.algorithm());
    if usages.is_empty() && !config.allow_legacy_v1beta1 {
        return Err(Error::InvalidConfig {
            setting: "usages_fn",
            problem: format!(
                "the usages function gave no usages for a {:?} key: certificates.k8s.io/v1 requires at least one",
                key.algorithm()
            ),
        });
    }
    // A fixed name (a digest of key, template and usages, prefix `csr-`), not `generateName`: a create
    // whose answer was lost may still have made the CSR, and sending it again must meet that
    // CSR (`AlreadyExists`, then adopted when compatible) rather than make a second one.
    let public_key_der = key.public_key_der();
    let request = CsrRequest {
        name: Some(crate::csr::rotation_csr_name(
            &public_key_der,
            &template,
            &usages,
        )),
        csr_pem: pki::build_csr_pem(&template, &key)?,
        signer_name: config.signer_name.clone(),
        usages,
        expiration: config.requested_lifetime,
        public_key_der,
    };
    Ok(PendingRequest {
        template,
        key,
        request,
        csr: None,
    })
}

/// Creates the CSR unless `pending` already has one, then waits for its certificate.
fn request_and_wait(
    shared: &Shared,
    client: &dyn crate::csr::CsrClient,
    pending: &mut PendingRequest,
    mut cancel: Cancel,
) -> Result<Vec<u8>, Error> {
    let config = &shared.config;
    let template = pending.template.clone();
    let csr = match &pending.csr {
        Some(csr) => {
            log::info!(
                "{}: waiting again for certificate signing request {:?} (created earlier, still pending)",
                config.name,
                csr.name
            );
            csr.clone()
        }
        None => {
            let csr = match client.create_cancellable(&pending.request, &cancel) {
                Ok(csr) => csr,
                Err(CsrError::Cancelled { .. })
                    if cancel.reason() == Some(CancelReason::Stopped) =>
                {
                    return Err(Error::Stopped);
                }
                // A cancelled create says nothing about the server's health.
                Err(e @ CsrError::Cancelled { .. }) => return Err(e.into()),
                Err(e) => {
                    shared.set_healthy(e.server_healthy_after_create());
                    return Err(e.into());
                }
            };
            *shared.last_request.lock() = Some(template.clone());
            log::info!(
                "{}: created certificate signing request {:?}",
                config.name,
                csr.name
            );
            pending.csr = Some(csr.clone());
            csr
        }
    };
    let started = shared.clock().now();
    loop {
        let waited = shared
            .clock()
            .now()
            .duration_since(started)
            .unwrap_or_default();
        let left = config.certificate_wait_timeout.saturating_sub(waited);
        match wait_with_timeout(shared, client, &csr, &cancel, left) {
            Err(Error::Csr(CsrError::Cancelled { .. }))
                if cancel.reason() == Some(CancelReason::TemplateChanged)
                    && shared.template().as_ref() == Some(&template) =>
            {
                // The template went back to what this CSR asks for before the interrupt was
                // handled: keep waiting for it rather than sending another CSR. Arm first,
                // then look again: a change after the look cancels the new signal, a change
                // before it is seen here.
                cancel = arm(shared)?;
                if shared.template().as_ref() != Some(&template) {
                    return Err(CsrError::Cancelled {
                        name: csr.name.clone(),
                    }
                    .into());
                }
                log::info!(
                    "{}: template changed back, still waiting for {:?}",
                    config.name,
                    csr.name
                );
            }
            other => return other,
        }
    }
}

/// Waits for the certificate with `timeout` measured on the manager's clock: by the client
/// itself when the clock's timers are real monotonic time, else by a watchdog thread that
/// cancels the wait when the clock's timer fires. Maps the wait's end to the attempt's error.
fn wait_with_timeout(
    shared: &Shared,
    client: &dyn crate::csr::CsrClient,
    csr: &crate::csr::CsrRef,
    cancel: &Cancel,
    timeout: Duration,
) -> Result<Vec<u8>, Error> {
    let result = if shared.clock().instant_timers() {
        // The client's own timeout runs on the same monotonic time as this clock's timers:
        // no watchdog thread needed.
        client.wait_for_certificate(csr, timeout, cancel)
    } else {
        wait_with_watchdog(shared, client, csr, cancel, timeout)
    };
    match result {
        Ok(pem) => Ok(pem),
        // Timed out by the watchdog or by the client: either way the attempt waited its whole
        // timeout (the client saw only what was left of it after a re-wait).
        Err(CsrError::Timeout {
            name,
            progress,
            last_error,
            ..
        }) => Err(CsrError::Timeout {
            name,
            waited: shared.config.certificate_wait_timeout,
            progress,
            last_error,
        }
        .into()),
        Err(CsrError::Cancelled { name }) if cancel.reason() == Some(CancelReason::TimedOut) => {
            Err(CsrError::timeout(name, shared.config.certificate_wait_timeout).into())
        }
        Err(CsrError::Cancelled { .. }) if cancel.reason() == Some(CancelReason::Stopped) => {
            Err(Error::Stopped)
        }
        // Only a template change may end an attempt without counting as a failure (and then
        // request again at once); a client that reports a cancel nobody made has failed.
        Err(CsrError::Cancelled { name }) if cancel.reason().is_none() => {
            Err(CsrError::InvalidResponse {
                op: "watch",
                message: format!(
                    "the client reported the wait for {name:?} as cancelled, but nothing cancelled it"
                ),
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The wait with its timeout measured on the manager's clock: a watchdog thread cancels the wait
/// when the clock's timer fires (for clocks whose timers are not real monotonic time, such as
/// a test's fake clock).
fn wait_with_watchdog(
    shared: &Shared,
    client: &dyn crate::csr::CsrClient,
    csr: &crate::csr::CsrRef,
    cancel: &Cancel,
    timeout: Duration,
) -> Result<Vec<u8>, CsrError> {
    let timer = shared.clock().after(timeout);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    std::thread::scope(|s| {
        let watchdog = std::thread::Builder::new()
            .name("certrotate-wait-timeout".into())
            .stack_size(64 * 1024)
            .spawn_scoped(s, || {
                select_biased! {
                    recv(done_rx) -> _ => {},
                    recv(cancel.receiver()) -> _ => {},
                    recv(timer.receiver()) -> _ => cancel.cancel(CancelReason::TimedOut),
                }
            });
        if let Err(e) = watchdog {
            log::warn!(
                "{}: cannot start the wait timeout watchdog: {e}",
                shared.config.name
            );
        }
        let r = client.wait_for_certificate(csr, timeout, cancel);
        drop(done_tx);
        r
    })
}

fn store_and_publish(
    shared: &Shared,
    cert: Certificate,
    old: Option<&Certificate>,
) -> Result<Arc<Certificate>, Error> {
    let gate = shared.write_gate.lock();
    if *gate {
        // Issued and verified: keep it for the next attempt after a restart.
        *shared.unstored.lock() = Some(cert);
        return Err(Error::Stopped);
    }
    if let Err(e) = shared
        .config
        .store
        .update(cert.cert_pem().as_bytes(), cert.key_pem().as_bytes())
    {
        log::error!(
            "{}: certificate {} was issued but cannot be stored, keeping it in memory to store again: {}",
            shared.config.name,
            cert.serial_hex(),
            error_chain(&e)
        );
        *shared.unstored.lock() = Some(cert);
        return Err(e.into());
    }
    let now = shared.clock().now();
    // Everything a reader may look at once it sees the new certificate is set before it is
    // published (client-go sets these under the one lock that guards the certificate).
    shared.set_healthy(true);
    shared.forced.store(false, Ordering::Relaxed);
    if let (Some(h), Some(old)) = (&shared.config.rotation_histogram, old) {
        h.observe(
            now.duration_since(old.not_before())
                .unwrap_or_default()
                .as_secs_f64(),
        );
    }
    if let Some(g) = &shared.config.ttl_gauge {
        g.set(crate::manager::ttl_seconds(Some(&cert), now));
    }
    let published = shared.publish(cert);
    drop(gate);
    log::info!(
        "{}: rotated certificate: serial {} -> {}, valid {} to {}",
        shared.config.name,
        old.map(Certificate::serial_hex)
            .unwrap_or_else(|| "(none)".into()),
        published.serial_hex(),
        fmt_time(published.not_before()),
        fmt_time(published.not_after())
    );
    Ok(published)
}

/// The template thread's loop.
fn template_loop(shared: &Shared, stop: &Receiver<()>, interval: Duration) {
    loop {
        let timer = shared.clock().after(interval);
        select_biased! {
            recv(stop) -> _ => return,
            recv(timer.receiver()) -> _ => check_template(shared),
        }
    }
}

/// client-go's template check: if the current certificate does not satisfy the template and
/// the template differs from the last request, cancel the in-flight wait and signal.
pub(crate) fn check_template(shared: &Shared) {
    let Some(template) = shared.template() else {
        return;
    };
    let cert = shared.current_at(shared.clock().now());
    if cert.as_deref().is_some_and(|c| template.satisfied_by(c)) {
        return;
    }
    if shared.last_request.lock().as_ref() == Some(&template) {
        return;
    }
    changed(shared);
}

fn changed(shared: &Shared) {
    shared.cancel_in_flight(CancelReason::TemplateChanged);
    // A full channel already holds a pending signal; one is enough.
    let _ = shared.template_changed_tx.try_send(());
}

/// An error and its sources, `: `-separated, for a log line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}
