//! The rotation thread, the template thread, and one rotation attempt.
//!
//! # The rotation thread
//! It carries out the steps of the rotation policy ([`Policy`]) and decides nothing
//! itself: it looks (wall clock, the current certificate and the deadline drawn for it when it
//! was published, the template, whether rotation is forced, the publish generation), asks the
//! policy for the next step, and sleeps or attempts. Sleeps are a `select_biased!` over stop,
//! template-changed and the clock's timer — stop first, so stop always wins a tie; a
//! template-changed signal ends a sleep (during a backoff only when the policy says so). After
//! an attempt it reports the outcome to the policy, which says whether to back off, decide
//! again or stop. Attempts are serialised with `rotate_now` by `attempt_lock`; under it the
//! thread asks the policy whether the rotation was superseded (another attempt published
//! meanwhile) before attempting. Idle, the thread is blocked in `select!`.
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
//! → wait (timeout on the manager's clock; see [`wait_with_timeout`]) → verify the issued chain
//! against the key and the template, and as a TLS peer would for the requested usages
//! ([`crate::pki::verify_chain`]) → store → publish. The CSR, the create and the check of the
//! issued chain are the request steps the kubelet's bootstrap takes too ([`CertRequest`]). Any failure, a refused chain included, leaves the stored and served certificate as
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
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, select_biased};
use parking_lot::Mutex;
use rand::Rng;
use rand::rngs::StdRng;

use crate::csr::{Cancel, CancelReason, CsrError, CsrRef};
use crate::error::Error;
use crate::manager::{KeySource, Shared};
use crate::pki::cert_satisfies_template;
use crate::pki::{Certificate, PrivateKey, fmt_duration, fmt_time};
use crate::report::Chain;
use crate::request::CertRequest;
use crate::schedule::{AfterAttempt, CertFacts, Inputs, Outcome, Policy, Step};
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

/// The manager's RNG, locked for each draw only (never while the policy looks at the
/// certificate and calls the template function).
struct SharedRng<'a>(&'a Mutex<StdRng>);

impl rand::TryRng for SharedRng<'_> {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.lock().next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.lock().next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.lock().fill_bytes(dst);
        Ok(())
    }
}

/// What the rotation thread sees: the facts [`Policy::next_step`] decides on.
fn look(shared: &Shared, now: SystemTime) -> Inputs {
    // Read before the certificate the decision rests on: if it has changed by the time this
    // thread's attempt may run, another attempt (`rotate_now`) rotated meanwhile.
    let generation = shared.generation();
    let latest = shared.current_with_deadline(now);
    let template = shared.template();
    let forced = shared.forced.load(Ordering::Relaxed);
    let cert = latest.map(|(cert, deadline)| CertFacts {
        deadline,
        satisfies_template: cert_satisfies_template(Some(&cert), template.as_ref()),
    });
    Inputs {
        now,
        cert,
        // Read again when there was none, in case one has appeared since.
        has_template: template.is_some() || shared.template().is_some(),
        forced,
        generation,
    }
}

/// The rotation thread: asks the policy ([`Policy`]) for each step and carries it out
/// (sleeps, attempts, logs). It decides nothing itself.
fn rotation_loop(shared: &Shared, stop: &Receiver<()>) {
    let name = &shared.config.name;
    let config = &shared.config;
    let mut policy = Policy::new(config.max_sleep_slice, config.template_poll_interval)
        .with_backoff(config.backoff);
    loop {
        let now = shared.clock().now();
        // A wake, as every other: an outage may keep the thread backing off for hours.
        shared.update_ttl_gauge(now);
        let step = policy.next_step(|| look(shared, now), &mut SharedRng(&shared.rng));
        let wake = match step {
            Step::Sleep { duration, .. } => {
                log::debug!(
                    "{name}: waiting {} for the next certificate rotation",
                    fmt_duration(duration)
                );
                // Woken by the timer or a template change, look again: a changed template
                // the certificate does not satisfy makes the rotation due.
                sleep(shared, stop, duration)
            }
            Step::WaitForTemplate { duration } => sleep(shared, stop, duration),
            Step::SpaceOut {
                delay, deadline, ..
            } => {
                log::warn!(
                    "{name}: the certificate just issued is already past its rotation deadline {} (is the signer's clock behind?); rotating again in {}",
                    fmt_time(deadline),
                    fmt_duration(delay)
                );
                sleep(shared, stop, delay)
            }
            Step::Attempt { after_failures } => {
                if after_failures == 0 {
                    log::info!("{name}: Rotating certificates");
                }
                let requested = shared.template();
                let result = {
                    let _serial = shared.attempt_lock.lock();
                    if policy.superseded(shared.generation()) {
                        log::debug!(
                            "{name}: the certificate was rotated meanwhile, deciding again"
                        );
                        None
                    } else {
                        Some(attempt_serialised(shared))
                    }
                };
                let outcome = match &result {
                    None => Outcome::Superseded,
                    Some(r) => Outcome::of(r, || stop_requested(shared, stop)),
                };
                match policy.attempted(outcome, &mut SharedRng(&shared.rng)) {
                    AfterAttempt::Stop => return,
                    AfterAttempt::Backoff {
                        delay, exhausted, ..
                    } => {
                        if let (true, Some(Err(e))) = (exhausted, &result) {
                            log::error!(
                                "{name}: Reached backoff limit, still unable to rotate certs: {}",
                                Chain(e)
                            );
                        }
                        log::debug!("{name}: next attempt in {}", fmt_duration(delay));
                        backoff_sleep(shared, stop, delay, &mut policy, requested.as_ref())
                    }
                    AfterAttempt::SettleTemplate { delay, in_a_row } => {
                        log::warn!(
                            "{name}: the template changed again while a certificate was requested ({in_a_row} changes in a row); waiting {} for it to settle",
                            fmt_duration(delay)
                        );
                        settle_sleep(shared, stop, delay)
                    }
                    AfterAttempt::Decide => continue,
                }
            }
        };
        if let Wake::Stop = wake {
            return;
        }
    }
}

/// Sleeps a backoff delay. A template-changed signal ends it early only when the policy says
/// so ([`Policy::backoff_cut_short`]), given whether the template now differs from
/// `requested`, the one the failed attempt asked for.
fn backoff_sleep(
    shared: &Shared,
    stop: &Receiver<()>,
    d: Duration,
    policy: &mut Policy,
    requested: Option<&CsrTemplate>,
) -> Wake {
    let timer = shared.clock().after(d);
    loop {
        select_biased! {
            recv(stop) -> _ => return Wake::Stop,
            recv(shared.template_changed_rx) -> _ => {
                if policy.backoff_cut_short(shared.template().as_ref() != requested) {
                    return Wake::TemplateChanged;
                }
            }
            recv(timer.receiver()) -> _ => return Wake::Timer,
        }
    }
}

/// Sleeps while a changing template settles: only a stop ends it early. A template signal
/// meanwhile stays pending and wakes the next sleep, which looks again.
fn settle_sleep(shared: &Shared, stop: &Receiver<()>, d: Duration) -> Wake {
    let timer = shared.clock().after(d);
    select_biased! {
        recv(stop) -> _ => Wake::Stop,
        recv(timer.receiver()) -> _ => Wake::Timer,
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
                    Chain(&e)
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
    req: CertRequest,
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
            if p.req.template == template
                && p.req.request.usages == shared.usages_for(p.req.key.algorithm()) =>
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
    let cert = pending.req.verify(&chain_pem, shared.clock().now())?;
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
                Chain(&e)
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
            Chain(&e)
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
                    Chain(&e)
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
    let req = CertRequest::new(
        template,
        key,
        crate::csr::rotation_csr_name,
        config.signer_name.clone(),
        usages,
        config.requested_lifetime,
    )?;
    Ok(PendingRequest { req, csr: None })
}

/// Creates the CSR unless `pending` already has one, then waits for its certificate.
fn request_and_wait(
    shared: &Shared,
    client: &dyn crate::csr::CsrClient,
    pending: &mut PendingRequest,
    mut cancel: Cancel,
) -> Result<Vec<u8>, Error> {
    let config = &shared.config;
    let template = pending.req.template.clone();
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
            let csr = match pending.req.create(client, &cancel) {
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
            Chain(&e)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::fake::FakeClock;
    use crate::csr::KeyUsage;
    use crate::manager::{CertificateManager, Config};
    use crate::pki::{CertificateAuthority, KeyAlgorithm};
    use crate::schedule::Backoff;
    use rand::SeedableRng;

    const H: Duration = Duration::from_secs(3600);

    /// The rotation thread's RNG adapter draws exactly what the manager's RNG would, so a
    /// seeded manager jitters as before.
    #[test]
    fn shared_rng_draws_what_the_rng_itself_draws() {
        let shared = Mutex::new(StdRng::seed_from_u64(9));
        let mut direct = StdRng::seed_from_u64(9);
        for failures in 1..8 {
            assert_eq!(
                Backoff::default().delay(failures, None, &mut SharedRng(&shared)),
                Backoff::default().delay(failures, None, &mut direct)
            );
        }
    }

    /// What the policy is told: the certificate usable now with the deadline drawn at its
    /// publication, whether it satisfies the template (client-go's rule, true without a
    /// template), whether a template exists, the forced flag and the publish generation.
    #[test]
    fn look_table() {
        let t0 = crate::pki::unix_to_system_time(1_700_000_000);
        let ca = CertificateAuthority::for_tests("ca").unwrap();
        let node = CsrTemplate::new("node");
        let other = CsrTemplate::new("node").with_dns_name("node.example");
        let usages = [KeyUsage::DigitalSignature, KeyUsage::ClientAuth];
        struct Case {
            name: &'static str,
            template: Option<CsrTemplate>,
            publish: bool,
            forced: bool,
            now: SystemTime,
            want_cert: Option<bool>,
            want_template: bool,
        }
        let cases = [
            Case {
                name: "no certificate",
                template: Some(node.clone()),
                publish: false,
                forced: true,
                now: t0,
                want_cert: None,
                want_template: true,
            },
            Case {
                name: "certificate for the template",
                template: Some(node.clone()),
                publish: true,
                forced: false,
                now: t0,
                want_cert: Some(true),
                want_template: true,
            },
            Case {
                name: "certificate missing a DNS name of the template",
                template: Some(other),
                publish: true,
                forced: false,
                now: t0,
                want_cert: Some(false),
                want_template: true,
            },
            Case {
                name: "certificate, no template",
                template: None,
                publish: true,
                forced: false,
                now: t0,
                want_cert: Some(true),
                want_template: false,
            },
            Case {
                name: "expired certificate",
                template: Some(node.clone()),
                publish: true,
                forced: false,
                now: t0 + 11 * H,
                want_cert: None,
                want_template: true,
            },
        ];
        for c in cases {
            let clock = FakeClock::new(t0);
            let template = c.template.clone();
            let m = CertificateManager::new(
                Config::builder()
                    .template_fn(move || template.clone())
                    .usages(usages)
                    .clock(Arc::new(clock))
                    .build()
                    .unwrap(),
            )
            .unwrap();
            let shared = m.shared();
            if c.publish {
                let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
                let cert = ca.issue(&node, &key, &usages, t0, t0 + 10 * H).unwrap();
                shared.publish(cert);
            }
            shared.forced.store(c.forced, Ordering::Relaxed);
            let seen = look(shared, c.now);
            assert_eq!(seen.now, c.now, "{}", c.name);
            assert_eq!(
                seen.cert.map(|f| f.satisfies_template),
                c.want_cert,
                "{}",
                c.name
            );
            if let Some(f) = seen.cert {
                assert_eq!(Some(f.deadline), m.rotation_deadline(), "{}", c.name);
            }
            assert_eq!(seen.has_template, c.want_template, "{}", c.name);
            assert_eq!(seen.forced, c.forced, "{}", c.name);
            assert_eq!(seen.generation, u64::from(c.publish), "{}", c.name);
        }
    }
}
