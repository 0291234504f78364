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

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select_biased};

use crate::csr::{Cancel, CancelReason, CsrError, CsrRequest};
use crate::error::Error;
use crate::manager::Shared;
use crate::pki::{self, Certificate, fmt_duration, fmt_time};
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
            forced || !crate::template::cert_satisfies_template(cert.as_deref(), template.as_ref());
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
                    log::error!("{name}: Reached backoff limit, still unable to rotate certs: {e}");
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
            log::error!(
                "{}: failed while requesting a signed certificate from the control plane: {e}",
                shared.config.name
            );
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

fn attempt_inner(shared: &Shared, mut cancel: Cancel) -> Result<Arc<Certificate>, Error> {
    let config = &shared.config;
    let template = shared.template().ok_or(Error::NoTemplate)?;
    let factory = config.client_factory.as_ref().ok_or(Error::NoClient)?;
    let key = shared.new_key()?;
    let csr_pem = pki::build_csr_pem(&template, &key)?;
    let now = shared.clock().now();
    let current = shared.current_at(now);
    let client = factory(current.as_deref()).map_err(|e| Error::ClientFactory {
        message: e.to_string(),
        source: Some(e),
    })?;
    let request = CsrRequest {
        name: None,
        csr_pem,
        signer_name: config.signer_name.clone(),
        usages: shared.usages_for(key.algorithm()),
        expiration: config.requested_lifetime,
        public_key_der: key.public_key_der(),
    };
    let csr = match client.create_cancellable(&request, &cancel) {
        Ok(csr) => csr,
        Err(CsrError::Cancelled { .. }) if cancel.reason() == Some(CancelReason::Stopped) => {
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
    let started = shared.clock().now();
    let chain_pem = loop {
        let waited = shared
            .clock()
            .now()
            .duration_since(started)
            .unwrap_or_default();
        let left = config.certificate_wait_timeout.saturating_sub(waited);
        match wait_with_timeout(shared, &*client, &csr, &cancel, left) {
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
            other => break other?,
        }
    };
    let cert = pki::verify_issued(
        &chain_pem,
        &key,
        Some(&template),
        &request.usages,
        shared.clock().now(),
    )?;
    store_and_publish(shared, cert, current.as_deref())
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
        Err(CsrError::Timeout { name, .. }) => Err(CsrError::Timeout {
            name,
            waited: shared.config.certificate_wait_timeout,
        }
        .into()),
        Err(CsrError::Cancelled { name }) if cancel.reason() == Some(CancelReason::TimedOut) => {
            Err(CsrError::Timeout {
                name,
                waited: shared.config.certificate_wait_timeout,
            }
            .into())
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
        return Err(Error::Stopped);
    }
    shared
        .config
        .store
        .update(cert.cert_pem().as_bytes(), cert.key_pem().as_bytes())?;
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
