//! The rotation policy, as pure functions of a small state, the certificate, the template,
//! `now`, the last attempt's outcome and an RNG: when to rotate, how long to sleep, and how to
//! back off after failures.
//!
//! [`Policy`] is the whole decision of the rotation thread, one step at a time (sleep towards
//! the deadline, wait for a template, space out late certificates, attempt, back off); the
//! manager's rotation thread only carries the steps out. It uses no threads, channels, clocks
//! or I/O, so a simulation can run many of them on simulated time.
//!
//! # Rotation deadline
//! client-go's `nextRotationDeadline`: a random point in [70 %, 90 %) of the certificate's
//! lifetime, measured from its NotBefore — not from process start, so a restart half-way through
//! the lifetime lands in the same window, and a fleet issued at one moment spreads its renewals
//! over a fifth of the lifetime instead of renewing in lock-step. The deadline is "now" when
//! rotation is forced (bootstrap cert), when there is no certificate, or when the certificate
//! does not satisfy the template. The requested lifetime (`expirationSeconds`) never enters:
//! signers may ignore it, so only the issued NotBefore/NotAfter count.
//!
//! # Sleeping
//! The rotation thread sleeps at most one slice ([`Step::Sleep`]) and looks again at the wall
//! clock at every wake, so a wall-clock jump or a suspend (which monotonic timers do not see) is
//! noticed within one slice.
//!
//! # Backoff
//! After a failed attempt: 2 s, 4 s, 8 s, 16 s (client-go's `wait.Backoff{Duration: 2s,
//! Factor: 2, Steps: 5}`: five attempts, four sleeps), then a periodic retry every 32 s
//! (client-go's `PollInfinite(32s)`). How much each delay is jittered is the [`Backoff`]: by
//! default ([`Backoff::Spread`]) each early delay is stretched by up to 100 % and the periodic
//! one drawn from 32 s ± 50 %, so a fleet that failed together spreads its retries out;
//! [`Backoff::ClientGo`] keeps client-go's +10 % and flat 32 s, with which a fleet retries in
//! lock-step after an outage. A server's `Retry-After` stretches a delay (never shortens it),
//! capped at [`MAX_RETRY_AFTER`].

use std::time::{Duration, SystemTime};

use rand::{Rng, RngExt};

use crate::csr::CsrError;
use crate::error::Error;

/// Lower bound of the rotation point, as a fraction of the lifetime.
pub const DEADLINE_MIN_FRACTION: f64 = 0.7;
/// Upper bound (exclusive) of the rotation point, as a fraction of the lifetime.
pub const DEADLINE_MAX_FRACTION: f64 = 0.9;
/// First backoff delay.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(2);
/// Backoff growth factor.
pub const BACKOFF_FACTOR: u32 = 2;
/// Attempts in the exponential phase (client-go `Steps`).
pub const BACKOFF_STEPS: u32 = 5;
/// Mean period of the retry after the exponential phase.
pub const PERIODIC_RETRY: Duration = Duration::from_secs(32);
/// The longest a server's `Retry-After` may delay the next attempt.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// NotBefore + f × (NotAfter − NotBefore), f uniform in [0.7, 0.9) (client-go `jitteryDuration`).
/// An inverted validity gives NotBefore.
pub fn rotation_deadline<R: Rng + ?Sized>(
    not_before: SystemTime,
    not_after: SystemTime,
    rng: &mut R,
) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let f = rng.random_range(DEADLINE_MIN_FRACTION..DEADLINE_MAX_FRACTION);
    not_before + lifetime.mul_f64(f)
}

/// How long to sleep before looking again: the time to `deadline`, at most `max_slice`, zero if
/// the deadline has passed (never a negative or panicking subtraction).
fn sleep_slice(deadline: SystemTime, now: SystemTime, max_slice: Duration) -> Duration {
    deadline
        .duration_since(now)
        .unwrap_or_default()
        .min(max_slice)
}

/// How the delays between failed attempts are jittered. Both variants share the steps: after
/// the 1st to 4th failure in a row 2, 4, 8 and 16 s ([`BACKOFF_INITIAL`] × [`BACKOFF_FACTOR`]ⁿ),
/// from the 5th ([`BACKOFF_STEPS`]) on a periodic retry around [`PERIODIC_RETRY`] (32 s); a
/// server's `Retry-After` raises any delay to at least that much, up to [`MAX_RETRY_AFTER`].
///
/// The default is [`Backoff::Spread`]. Measured with `cargo run --release --example herd`
/// (10,000 nodes that start within one second while the CSR API is down for an hour): with
/// `ClientGo` the busiest second after the first minute carries about 14× the mean rate of
/// creates, because every node keeps the place in the 32 s cycle it got from the first failure;
/// with `Spread` it carries under 1.5× the mean, during the outage and when the API comes back.
/// A single node pays for it only while failing: its first retries come after 2–4, 4–8, 8–16
/// and 16–32 s instead of about 2, 4, 8 and 16 s. The first attempt is never delayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backoff {
    /// Each early delay stretched by up to 100 % (2–4, 4–8, 8–16, 16–32 s), then 32 s ± 50 %
    /// (16–48 s): the retries of nodes that failed together spread out within a few cycles.
    #[default]
    Spread,
    /// client-go's certificate manager: each early delay stretched by up to 10 %
    /// (`wait.Backoff{Jitter: 0.1}`), then a flat 32 s (`wait.PollInfinite(32s)`).
    ClientGo,
}

impl Backoff {
    /// The delay before the next attempt after `failures` consecutive failed attempts (≥ 1),
    /// at least `retry_after` (the server's `Retry-After`), capped at [`MAX_RETRY_AFTER`].
    pub fn delay<R: Rng + ?Sized>(
        self,
        failures: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Duration {
        let (early_stretch, periodic_jitter) = match self {
            Backoff::Spread => (1.0, 0.5),
            Backoff::ClientGo => (0.1, 0.0),
        };
        let base = if failures < BACKOFF_STEPS {
            let exp = failures.saturating_sub(1);
            let d = BACKOFF_INITIAL * BACKOFF_FACTOR.pow(exp);
            d.mul_f64(1.0 + rng.random_range(0.0..early_stretch))
        } else if periodic_jitter > 0.0 {
            PERIODIC_RETRY.mul_f64(rng.random_range(1.0 - periodic_jitter..1.0 + periodic_jitter))
        } else {
            PERIODIC_RETRY
        };
        match retry_after {
            Some(r) => base.max(r.min(MAX_RETRY_AFTER)),
            None => base,
        }
    }
}

/// True once `failures` consecutive failures have used up the exponential phase (client-go logs
/// "Reached backoff limit, still unable to rotate certs" at this point).
fn backoff_exhausted(failures: u32) -> bool {
    failures == BACKOFF_STEPS
}

/// What the policy is told about the current certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertFacts {
    /// The rotation deadline drawn for this certificate when it was published, once
    /// ([`rotation_deadline`]; re-drawing at every look would pull rotations towards the start
    /// of the window).
    pub deadline: SystemTime,
    /// Whether the certificate satisfies the current template (client-go
    /// `certSatisfiesTemplate`: true when there is no template).
    pub satisfies_template: bool,
}

/// What the rotation thread sees when it looks: the facts a step is decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    /// The wall-clock time of the look.
    pub now: SystemTime,
    /// The current certificate, when one is usable at `now` (not expired, NotBefore not too far
    /// ahead); `None` when there is none.
    pub cert: Option<CertFacts>,
    /// Whether a template is available to request a certificate with.
    pub has_template: bool,
    /// Whether a rotation is due at once whatever the certificate (a bootstrap certificate, or
    /// no usable certificate at start; client-go `forceRotation`), until a rotation succeeds.
    pub forced: bool,
    /// How many certificates have been published so far (by any attempt). A rotation decided
    /// on one generation is not attempted once another has been published
    /// ([`Policy::superseded`]).
    pub generation: u64,
}

/// The next thing the rotation thread does, as decided by [`Policy::next_step`].
///
/// Every sleep ends early on stop; a template-changed signal ends every sleep but a
/// [`Backoff`](AfterAttempt::Backoff), which [`Policy::backoff_cut_short`] decides. After a
/// sleep, however it ends, the thread asks [`Policy::next_step`] again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// The certificate is good until `deadline`: sleep `duration` (the time to `deadline`, at
    /// most one slice), then look again. A look after each slice notices a wall-clock step or a
    /// suspend within one slice.
    Sleep {
        /// The rotation deadline being slept towards.
        deadline: SystemTime,
        /// How long to sleep now: the time to `deadline`, at most the slice.
        duration: Duration,
    },
    /// A rotation is due but there is no template to request with: wait `duration` for one,
    /// then look again. Not a failure (client-go: "don't enter rotateCerts and trigger backoff
    /// if we don't even have a template to request yet").
    WaitForTemplate {
        /// How long to wait: the template poll interval, at most one slice.
        duration: Duration,
    },
    /// The certificate the last attempt got is already past its rotation deadline (a signer
    /// that backdates NotBefore, or whose clock is behind): rotating again at once would only
    /// get another such certificate. Wait `delay` — the backoff delay for the `in_a_row`-th
    /// such certificate — then look again. Not a failure.
    SpaceOut {
        /// How long to wait.
        delay: Duration,
        /// The certificate's rotation deadline, already passed.
        deadline: SystemTime,
        /// How many certificates in a row arrived past their deadline (≥ 1).
        in_a_row: u32,
    },
    /// Attempt a rotation now, unless [`Policy::superseded`] says another attempt has published
    /// a certificate since the decision; then report the [`Outcome`] to [`Policy::attempted`].
    Attempt {
        /// Failed attempts in a row before this one: 0 for the first attempt of a rotation.
        after_failures: u32,
    },
}

/// How an attempt ended, as [`Policy::attempted`] needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A certificate was issued, verified, stored and published.
    Rotated,
    /// Not attempted: another attempt published a certificate after the rotation was decided
    /// ([`Policy::superseded`]).
    Superseded,
    /// The manager is stopping.
    Stopped,
    /// There was no template to request with (not a failure).
    NoTemplate,
    /// The request was cancelled because the template changed (not a failure).
    TemplateChanged,
    /// Any other error: counts as a failed attempt and backs off. `retry_after` is the server's
    /// `Retry-After`, if it sent one.
    Failed {
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
}

impl Outcome {
    /// The outcome of an attempt's result. Every error but a stop, a missing template and a
    /// cancel for a template change is a failed attempt and backs off: a denied CSR, a timeout,
    /// a refused chain or a store error alike, as client-go retries whatever `rotateCerts`
    /// failed at. A cancel while the manager stops (`stopping`, called only for a cancel) is a
    /// stop.
    pub(crate) fn of<T>(result: &Result<T, Error>, stopping: impl FnOnce() -> bool) -> Outcome {
        match result {
            Ok(_) => Outcome::Rotated,
            Err(Error::Stopped) => Outcome::Stopped,
            Err(Error::NoTemplate) => Outcome::NoTemplate,
            Err(Error::Csr(CsrError::Cancelled { .. })) => {
                if stopping() {
                    Outcome::Stopped
                } else {
                    Outcome::TemplateChanged
                }
            }
            Err(Error::Csr(e)) => Outcome::Failed {
                retry_after: e.retry_after(),
            },
            Err(_) => Outcome::Failed { retry_after: None },
        }
    }
}

/// What follows an attempt, as decided by [`Policy::attempted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AfterAttempt {
    /// Ask [`Policy::next_step`] again at once.
    Decide,
    /// Stop the rotation thread.
    Stop,
    /// The attempt failed: sleep `delay`, then ask [`Policy::next_step`] (which attempts
    /// again). A template-changed signal ends the sleep only when
    /// [`Policy::backoff_cut_short`] says so.
    Backoff {
        /// How long to wait ([`Backoff::delay`] of `failures`, stretched by a `Retry-After`).
        delay: Duration,
        /// Failed attempts in a row, this one included (≥ 1).
        failures: u32,
        /// This failure used up the exponential phase (client-go logs "Reached backoff limit,
        /// still unable to rotate certs" then).
        exhausted: bool,
    },
    /// The request was cancelled for a template change, not the first since the last
    /// certificate: the template keeps changing. Sleep `delay` (the backoff delay for
    /// `in_a_row` − 1 failures) whatever the template does meanwhile — only a stop ends it —
    /// then ask [`Policy::next_step`]. Not a failure. Without it a template that changes at
    /// every poll would create a CSR at every poll.
    SettleTemplate {
        /// How long to wait.
        delay: Duration,
        /// Requests cancelled or backoffs cut short for a template change since the last
        /// certificate, this one included (≥ 2).
        in_a_row: u32,
    },
}

/// Where the policy is between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Looking at the certificate and the template at every step.
    Watching,
    /// A rotation is under way: decided on publish generation `generation`, `failures` failed
    /// attempts so far. The step after a backoff is the next attempt, whatever the certificate
    /// looks like then (client-go's `wait.ExponentialBackoff` then `PollInfinite` loop).
    Rotating { generation: u64, failures: u32 },
}

/// The rotation policy: what the rotation thread does next, as a pure function of a small
/// state, what it sees ([`Inputs`]), how the last attempt ended ([`Outcome`]) and an RNG. No
/// threads, channels, clocks or I/O: the manager's rotation thread drives it (sleeps with
/// `select!`, attempts, reads the clock) and a simulation can drive it on simulated time.
///
/// One value per manager. The rules, client-go's `run` loop unless said otherwise:
///
/// | Situation | Step |
/// |---|---|
/// | usable certificate that satisfies the template, not forced, before its deadline | [`Step::Sleep`] towards the deadline, at most one slice |
/// | forced, no usable certificate, or one that does not satisfy the template | due now |
/// | due, no template | [`Step::WaitForTemplate`] |
/// | due by its deadline right after a successful attempt (issued late) | [`Step::SpaceOut`] by the backoff delays (not in client-go, which waits its 1 s loop period) |
/// | due otherwise | [`Step::Attempt`] |
/// | after a backoff | [`Step::Attempt`] again, without looking |
///
/// After an attempt ([`Policy::attempted`]): a success, a superseded attempt, no template or
/// the first template change since the last certificate → decide again; a later template
/// change → [`AfterAttempt::SettleTemplate`], paced as failures are but counted apart; a stop →
/// stop; a failure → [`AfterAttempt::Backoff`] with
/// 2, 4, 8, 16 s, then about 32 s, jittered as its [`Backoff`] says, at least a `Retry-After`
/// (at most [`MAX_RETRY_AFTER`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    max_sleep_slice: Duration,
    template_wait: Duration,
    backoff: Backoff,
    phase: Phase,
    /// The last attempt published a certificate, and no sleep has followed.
    rotated: bool,
    /// How many certificates in a row arrived already past their rotation deadline.
    issued_late: u32,
    /// Template changes that interrupted a rotation (a cancelled request, a backoff cut short)
    /// since the last certificate or the last sleep towards a deadline.
    changed_in_a_row: u32,
}

impl Policy {
    /// A policy that sleeps at most `max_sleep_slice` at a time and, without a template, looks
    /// again every `template_poll_interval` (at most one slice; one slice when `None`).
    pub fn new(max_sleep_slice: Duration, template_poll_interval: Option<Duration>) -> Policy {
        Policy {
            max_sleep_slice,
            template_wait: template_poll_interval
                .unwrap_or(max_sleep_slice)
                .min(max_sleep_slice),
            backoff: Backoff::default(),
            phase: Phase::Watching,
            rotated: false,
            issued_late: 0,
            changed_in_a_row: 0,
        }
    }

    /// The same policy, its delays after failures and late certificates jittered as `backoff`
    /// says (the default: [`Backoff::Spread`]).
    pub fn with_backoff(mut self, backoff: Backoff) -> Policy {
        self.backoff = backoff;
        self
    }

    /// The next step. `look` gives what the thread sees now; it is called only when the step
    /// depends on it (not for the attempt that follows a backoff). `rng` jitters the spacing
    /// of late certificates.
    pub fn next_step<R: Rng + ?Sized>(
        &mut self,
        look: impl FnOnce() -> Inputs,
        rng: &mut R,
    ) -> Step {
        if let Phase::Rotating { failures, .. } = self.phase {
            return Step::Attempt {
                after_failures: failures,
            };
        }
        let inputs = look();
        let now = inputs.now;
        let good = inputs
            .cert
            .filter(|c| c.satisfies_template && !inputs.forced);
        let deadline = good.map_or(now, |c| c.deadline);
        if deadline > now {
            self.rotated = false;
            self.issued_late = 0;
            self.changed_in_a_row = 0;
            return Step::Sleep {
                deadline,
                duration: sleep_slice(deadline, now, self.max_sleep_slice),
            };
        }
        if !inputs.has_template {
            return Step::WaitForTemplate {
                duration: self.template_wait,
            };
        }
        if self.rotated && good.is_some() {
            self.rotated = false;
            self.issued_late = self.issued_late.saturating_add(1);
            return Step::SpaceOut {
                delay: self.backoff.delay(self.issued_late, None, rng),
                deadline,
                in_a_row: self.issued_late,
            };
        }
        self.phase = Phase::Rotating {
            generation: inputs.generation,
            failures: 0,
        };
        Step::Attempt { after_failures: 0 }
    }

    /// Whether the attempt about to be made is moot: a certificate was published (`generation`
    /// is the publish generation now) since the rotation was decided, by another attempt such
    /// as `rotate_now`. Ask right before attempting, under the lock that serialises attempts;
    /// when true, report [`Outcome::Superseded`] instead of attempting.
    pub fn superseded(&self, generation: u64) -> bool {
        matches!(self.phase, Phase::Rotating { generation: g, .. } if g != generation)
    }

    /// Records how the attempt of a [`Step::Attempt`] ended and says what follows. `rng`
    /// jitters the backoff.
    pub fn attempted<R: Rng + ?Sized>(&mut self, outcome: Outcome, rng: &mut R) -> AfterAttempt {
        let Outcome::Failed { retry_after } = outcome else {
            self.phase = Phase::Watching;
            self.rotated = outcome == Outcome::Rotated;
            if self.rotated {
                self.changed_in_a_row = 0;
            }
            if outcome == Outcome::TemplateChanged {
                self.changed_in_a_row = self.changed_in_a_row.saturating_add(1);
                if self.changed_in_a_row > 1 {
                    return AfterAttempt::SettleTemplate {
                        delay: self.backoff.delay(self.changed_in_a_row - 1, None, rng),
                        in_a_row: self.changed_in_a_row,
                    };
                }
            }
            return if outcome == Outcome::Stopped {
                AfterAttempt::Stop
            } else {
                AfterAttempt::Decide
            };
        };
        let (generation, failures) = match self.phase {
            Phase::Rotating {
                generation,
                failures,
            } => (generation, failures.saturating_add(1)),
            Phase::Watching => (0, 1),
        };
        self.phase = Phase::Rotating {
            generation,
            failures,
        };
        AfterAttempt::Backoff {
            delay: self.backoff.delay(failures, retry_after, rng),
            failures,
            exhausted: backoff_exhausted(failures),
        }
    }

    /// A template-changed signal arrived during an [`AfterAttempt::Backoff`]: whether it ends
    /// the backoff (then the next step looks again, and requests at once when the certificate
    /// does not satisfy the new template). Only a template that differs from the one the failed
    /// attempt asked for does: the template thread signals at every poll while no CSR was
    /// created for the template, which is the case all along while creates fail, and those
    /// signals alone must not cut the backoff short (client-go does not listen for template
    /// changes while backing off at all). And only the first template change since the last
    /// certificate (or sleep towards a deadline) does: a template that keeps changing while
    /// creates fail would otherwise reset the backoff at every poll.
    pub fn backoff_cut_short(&mut self, template_differs_from_request: bool) -> bool {
        let cut = template_differs_from_request && self.changed_in_a_row == 0;
        if cut {
            self.phase = Phase::Watching;
            self.rotated = false;
            self.changed_in_a_row = 1;
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const H: u64 = 3600;

    fn at(secs: i64) -> SystemTime {
        crate::pki::unix_to_system_time(1_700_000_000 + secs)
    }

    /// client-go TestSetRotationDeadline, with the jitter fraction pinned at its minimum.
    #[test]
    fn set_rotation_deadline_table() {
        struct Case {
            name: &'static str,
            not_before: i64,
            not_after: i64,
        }
        let d = 86_400;
        let cases = [
            Case {
                name: "just issued, still good",
                not_before: -(H as i64),
                not_after: 99 * H as i64,
            },
            Case {
                name: "half way expired, still good",
                not_before: -24 * H as i64,
                not_after: 24 * H as i64,
            },
            Case {
                name: "mostly expired, still good",
                not_before: -69 * H as i64,
                not_after: 31 * H as i64,
            },
            Case {
                name: "just about expired, should rotate",
                not_before: -91 * H as i64,
                not_after: 9 * H as i64,
            },
            Case {
                name: "nearly expired, should rotate",
                not_before: -99 * H as i64,
                not_after: H as i64,
            },
            Case {
                name: "already expired, should rotate",
                not_before: -10 * H as i64,
                not_after: -(H as i64),
            },
            Case {
                name: "long duration",
                not_before: -180 * d,
                not_after: 180 * d,
            },
            Case {
                name: "short duration",
                not_before: -30,
                not_after: 30,
            },
        ];
        for c in cases {
            let (nb, na) = (at(c.not_before), at(c.not_after));
            let mut rng = MinRng;
            let got = rotation_deadline(nb, na, &mut rng);
            let lifetime = na.duration_since(nb).unwrap();
            let want = nb + lifetime.mul_f64(DEADLINE_MIN_FRACTION);
            let diff = got.duration_since(want).unwrap_or_else(|e| e.duration());
            assert!(
                diff < Duration::from_millis(1),
                "{}: got {got:?}, want {want:?}",
                c.name
            );
        }
    }

    /// An RNG whose every output is zero, so `random_range(a..b)` returns `a`.
    struct MinRng;
    impl rand::TryRng for MinRng {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(0)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(0);
            Ok(())
        }
    }

    /// CASES C1: 1,000 deadlines from one seeded RNG stay in [0.7 L, 0.9 L] and spread.
    #[test]
    fn c1_jitter_spreads_deadlines_over_the_window() {
        let mut rng = StdRng::seed_from_u64(42);
        let (nb, lifetime) = (at(0), Duration::from_secs(30 * 86_400));
        let na = nb + lifetime;
        let mut offsets: Vec<f64> = (0..1000)
            .map(|_| {
                rotation_deadline(nb, na, &mut rng)
                    .duration_since(nb)
                    .unwrap()
                    .as_secs_f64()
                    / lifetime.as_secs_f64()
            })
            .collect();
        offsets.sort_by(f64::total_cmp);
        assert!(
            offsets[0] >= 0.7 && offsets[999] <= 0.9,
            "{} {}",
            offsets[0],
            offsets[999]
        );
        assert!(
            offsets[999] - offsets[0] >= 0.15,
            "spread {}",
            offsets[999] - offsets[0]
        );
        // Close to uniform: each fifth of the window holds 200 ± 60 of the 1,000.
        for bin in 0..5 {
            let lo = 0.7 + 0.04 * bin as f64;
            let n = offsets
                .iter()
                .filter(|&&o| o >= lo && o < lo + 0.04)
                .count();
            assert!((140..=260).contains(&n), "bin {bin}: {n}");
        }
    }

    #[test]
    fn c1_deadline_is_anchored_to_not_before_not_to_now() {
        let (nb, na) = (at(0), at(100 * H as i64));
        let a = rotation_deadline(nb, na, &mut StdRng::seed_from_u64(7));
        let b = rotation_deadline(nb, na, &mut StdRng::seed_from_u64(7));
        assert_eq!(a, b, "same seed, same deadline, whatever `now` is");
        assert!(a >= at(70 * H as i64) && a < at(90 * H as i64));
    }

    #[test]
    fn c2_past_deadline_sleeps_zero_and_slices_are_capped() {
        let now = at(1000);
        assert_eq!(
            sleep_slice(at(0), now, Duration::from_secs(60)),
            Duration::ZERO
        );
        assert_eq!(
            sleep_slice(at(1030), now, Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(
            sleep_slice(at(9000), now, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }

    /// Every delay of both variants lies in its documented range, and the jitter does spread
    /// them (the boundary: the 5th failure is the first periodic one).
    #[test]
    fn backoff_delays_lie_in_each_variants_ranges() {
        struct Case {
            backoff: Backoff,
            /// (first failure, last failure, least delay, bound of the delay: inclusive when
            /// equal to the least).
            ranges: [(u32, u32, f64, f64); 5],
        }
        let cases = [
            Case {
                backoff: Backoff::Spread,
                ranges: [
                    (1, 1, 2.0, 4.0),
                    (2, 2, 4.0, 8.0),
                    (3, 3, 8.0, 16.0),
                    (4, 4, 16.0, 32.0),
                    (5, 9, 16.0, 48.0),
                ],
            },
            Case {
                backoff: Backoff::ClientGo,
                ranges: [
                    (1, 1, 2.0, 2.2),
                    (2, 2, 4.0, 4.4),
                    (3, 3, 8.0, 8.8),
                    (4, 4, 16.0, 17.6),
                    (5, 9, 32.0, 32.0),
                ],
            },
        ];
        let mut rng = StdRng::seed_from_u64(1);
        for c in cases {
            for (first, last, lo, hi) in c.ranges {
                for failures in first..=last {
                    let got: Vec<f64> = (0..200)
                        .map(|_| c.backoff.delay(failures, None, &mut rng).as_secs_f64())
                        .collect();
                    let (min, max) = got
                        .iter()
                        .fold((f64::MAX, f64::MIN), |(a, b), &d| (a.min(d), b.max(d)));
                    assert!(
                        min >= lo && (max < hi || (lo == hi && max == hi)),
                        "{:?} failure {failures}: {min}..{max} outside [{lo}, {hi})",
                        c.backoff
                    );
                    assert!(
                        lo == hi || max - min > (hi - lo) * 0.8,
                        "{:?} failure {failures}: {min}..{max} does not spread over [{lo}, {hi})",
                        c.backoff
                    );
                }
            }
        }
        assert!(backoff_exhausted(5) && !backoff_exhausted(4) && !backoff_exhausted(6));
        assert_eq!(Backoff::default(), Backoff::Spread);
    }

    #[test]
    fn retry_after_only_stretches_and_is_capped() {
        let mut rng = StdRng::seed_from_u64(3);
        for backoff in [Backoff::Spread, Backoff::ClientGo] {
            let d = backoff.delay(1, Some(Duration::from_secs(30)), &mut rng);
            assert_eq!(d, Duration::from_secs(30));
            let d = backoff.delay(4, Some(Duration::from_secs(1)), &mut rng);
            assert!(d >= Duration::from_secs(16));
            let d = backoff.delay(1, Some(Duration::from_secs(86_400)), &mut rng);
            assert_eq!(d, MAX_RETRY_AFTER);
        }
    }

    // The rotation policy, branch by branch. Expected values come from client-go's
    // `certificate_manager.go` `run` loop (deadline "now" when forced or the template is not
    // satisfied, `wait.Backoff{Duration: 2s, Factor: 2, Jitter: 0.1, Steps: 5}`, then
    // `PollInfinite(32s)`, a nil template ends the pass without a failure) and, where the
    // manager deliberately differs, from its documented rules (one-minute sleep slices, the
    // default backoff's wider jitter, late certificates spaced out, `Retry-After` up to ten
    // minutes).

    const SLICE: Duration = Duration::from_secs(60);
    const POLL: Duration = Duration::from_secs(1);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn fresh() -> Policy {
        Policy::new(SLICE, Some(POLL))
    }

    /// A policy whose last step was a successful attempt.
    fn just_rotated() -> Policy {
        let mut p = fresh();
        assert_eq!(p.next_step(due, &mut MinRng), attempt(0));
        assert_eq!(
            p.attempted(Outcome::Rotated, &mut MinRng),
            AfterAttempt::Decide
        );
        p
    }

    /// A policy backing off after `n` failed attempts of one rotation decided on generation 0.
    fn backing_off(n: u32) -> Policy {
        let mut p = fresh();
        assert_eq!(p.next_step(due, &mut MinRng), attempt(0));
        for _ in 0..n {
            let after = p.attempted(Outcome::Failed { retry_after: None }, &mut MinRng);
            assert!(matches!(after, AfterAttempt::Backoff { .. }), "{after:?}");
        }
        p
    }

    fn attempt(after_failures: u32) -> Step {
        Step::Attempt { after_failures }
    }

    /// A certificate that satisfies the template, with its deadline `deadline_in` from now
    /// (negative: passed).
    fn good(deadline_in: i64) -> Inputs {
        Inputs {
            now: at(0),
            cert: Some(CertFacts {
                deadline: at(deadline_in),
                satisfies_template: true,
            }),
            has_template: true,
            forced: false,
            generation: 0,
        }
    }

    /// No certificate: due now.
    fn due() -> Inputs {
        Inputs {
            cert: None,
            ..good(0)
        }
    }

    #[test]
    fn policy_next_step_table() {
        struct Case {
            name: &'static str,
            policy: fn() -> Policy,
            inputs: Inputs,
            want: Step,
        }
        let cases = [
            Case {
                name: "good certificate, deadline in 30 s: sleep until it",
                policy: fresh,
                inputs: good(30),
                want: Step::Sleep {
                    deadline: at(30),
                    duration: secs(30),
                },
            },
            Case {
                name: "good certificate, deadline in 99 h: sleep one slice",
                policy: fresh,
                inputs: good(99 * H as i64),
                want: Step::Sleep {
                    deadline: at(99 * H as i64),
                    duration: SLICE,
                },
            },
            Case {
                name: "good certificate, no template, deadline ahead: sleep",
                policy: fresh,
                inputs: Inputs {
                    has_template: false,
                    ..good(30)
                },
                want: Step::Sleep {
                    deadline: at(30),
                    duration: secs(30),
                },
            },
            Case {
                name: "deadline reached: attempt",
                policy: fresh,
                inputs: good(0),
                want: attempt(0),
            },
            Case {
                name: "deadline passed: attempt",
                policy: fresh,
                inputs: good(-(H as i64)),
                want: attempt(0),
            },
            Case {
                name: "no certificate: attempt now",
                policy: fresh,
                inputs: due(),
                want: attempt(0),
            },
            Case {
                name: "forced (bootstrap certificate), deadline ahead: attempt now",
                policy: fresh,
                inputs: Inputs {
                    forced: true,
                    ..good(99 * H as i64)
                },
                want: attempt(0),
            },
            Case {
                name: "certificate does not satisfy the template, deadline ahead: attempt now",
                policy: fresh,
                inputs: Inputs {
                    cert: Some(CertFacts {
                        deadline: at(99 * H as i64),
                        satisfies_template: false,
                    }),
                    ..good(0)
                },
                want: attempt(0),
            },
            Case {
                name: "due, no template: wait one poll for a template",
                policy: fresh,
                inputs: Inputs {
                    has_template: false,
                    ..due()
                },
                want: Step::WaitForTemplate { duration: POLL },
            },
            Case {
                name: "deadline passed, no template: wait one poll for a template",
                policy: fresh,
                inputs: Inputs {
                    has_template: false,
                    ..good(-30)
                },
                want: Step::WaitForTemplate { duration: POLL },
            },
            Case {
                name: "just rotated, new certificate already past its deadline: space out 2 s",
                policy: just_rotated,
                inputs: good(-30),
                want: Step::SpaceOut {
                    delay: secs(2),
                    deadline: at(-30),
                    in_a_row: 1,
                },
            },
            Case {
                name: "just rotated, new certificate good: sleep",
                policy: just_rotated,
                inputs: good(30),
                want: Step::Sleep {
                    deadline: at(30),
                    duration: secs(30),
                },
            },
            Case {
                name: "just rotated, still forced: attempt, not spaced out",
                policy: just_rotated,
                inputs: Inputs {
                    forced: true,
                    ..good(-30)
                },
                want: attempt(0),
            },
            Case {
                name: "just rotated, certificate does not satisfy the template: attempt",
                policy: just_rotated,
                inputs: Inputs {
                    cert: Some(CertFacts {
                        deadline: at(-30),
                        satisfies_template: false,
                    }),
                    ..good(0)
                },
                want: attempt(0),
            },
            Case {
                name: "just rotated, no usable certificate: attempt",
                policy: just_rotated,
                inputs: due(),
                want: attempt(0),
            },
            Case {
                name: "backing off after 1 failure: attempt again, whatever the certificate",
                policy: || backing_off(1),
                inputs: good(99 * H as i64),
                want: attempt(1),
            },
            Case {
                name: "backing off after 7 failures: attempt again",
                policy: || backing_off(7),
                inputs: due(),
                want: attempt(7),
            },
        ];
        for c in cases {
            let mut p = (c.policy)();
            let got = p.next_step(|| c.inputs, &mut MinRng);
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    /// The template poll interval bounds the wait for a template, and so does the slice.
    #[test]
    fn policy_template_wait_is_the_poll_interval_at_most_one_slice() {
        let no_template = Inputs {
            has_template: false,
            ..due()
        };
        for (name, poll, want) in [
            ("poll 1 s", Some(POLL), POLL),
            ("poll 5 min, slice 60 s", Some(secs(300)), SLICE),
            ("polling off", None, SLICE),
        ] {
            let mut p = Policy::new(SLICE, poll);
            assert_eq!(
                p.next_step(|| no_template, &mut MinRng),
                Step::WaitForTemplate { duration: want },
                "{name}"
            );
        }
    }

    /// After a backoff, the attempt follows without looking: the look is not even called.
    #[test]
    fn policy_does_not_look_before_the_attempt_after_a_backoff() {
        let mut p = backing_off(2);
        let step = p.next_step(|| panic!("looked while backing off"), &mut MinRng);
        assert_eq!(step, attempt(2));
    }

    /// Late certificates in a row are spaced out by the backoff delays (2 s, 4 s, …); a sleep
    /// towards a deadline ahead starts the count again.
    #[test]
    fn policy_spaces_out_late_certificates_and_resets_after_a_sleep() {
        let mut p = just_rotated();
        let mut spaced = Vec::new();
        for _ in 0..3 {
            match p.next_step(|| good(-30), &mut MinRng) {
                Step::SpaceOut {
                    delay, in_a_row, ..
                } => spaced.push((delay, in_a_row)),
                other => panic!("{other:?}"),
            }
            assert_eq!(p.next_step(|| good(-30), &mut MinRng), attempt(0));
            assert_eq!(
                p.attempted(Outcome::Rotated, &mut MinRng),
                AfterAttempt::Decide
            );
        }
        assert_eq!(spaced, [(secs(2), 1), (secs(4), 2), (secs(8), 3)]);
        // A good certificate: sleep, and the count starts again.
        assert!(matches!(
            p.next_step(|| good(30), &mut MinRng),
            Step::Sleep { .. }
        ));
        assert_eq!(p.next_step(|| good(-30), &mut MinRng), attempt(0));
        p.attempted(Outcome::Rotated, &mut MinRng);
        assert!(matches!(
            p.next_step(|| good(-30), &mut MinRng),
            Step::SpaceOut { in_a_row: 1, .. }
        ));
    }

    #[test]
    fn policy_attempted_table() {
        struct Case {
            name: &'static str,
            outcome: Outcome,
            want: AfterAttempt,
            /// What the next step is, given a certificate past its deadline.
            then: Step,
        }
        let past = good(-30);
        let cases = [
            Case {
                name: "rotated: decide again (a late certificate is then spaced out)",
                outcome: Outcome::Rotated,
                want: AfterAttempt::Decide,
                then: Step::SpaceOut {
                    delay: secs(2),
                    deadline: at(-30),
                    in_a_row: 1,
                },
            },
            Case {
                name: "superseded: decide again",
                outcome: Outcome::Superseded,
                want: AfterAttempt::Decide,
                then: attempt(0),
            },
            Case {
                name: "no template: decide again, not a failure",
                outcome: Outcome::NoTemplate,
                want: AfterAttempt::Decide,
                then: attempt(0),
            },
            Case {
                name: "cancelled for a template change: decide again, not a failure",
                outcome: Outcome::TemplateChanged,
                want: AfterAttempt::Decide,
                then: attempt(0),
            },
            Case {
                name: "stopped: stop",
                outcome: Outcome::Stopped,
                want: AfterAttempt::Stop,
                then: attempt(0),
            },
            Case {
                name: "failed: back off 2 s, then attempt again",
                outcome: Outcome::Failed { retry_after: None },
                want: AfterAttempt::Backoff {
                    delay: secs(2),
                    failures: 1,
                    exhausted: false,
                },
                then: attempt(1),
            },
            Case {
                name: "failed with Retry-After 30 s: back off 30 s",
                outcome: Outcome::Failed {
                    retry_after: Some(secs(30)),
                },
                want: AfterAttempt::Backoff {
                    delay: secs(30),
                    failures: 1,
                    exhausted: false,
                },
                then: attempt(1),
            },
            Case {
                name: "failed with Retry-After 1 s: back off 2 s (never shortened)",
                outcome: Outcome::Failed {
                    retry_after: Some(secs(1)),
                },
                want: AfterAttempt::Backoff {
                    delay: secs(2),
                    failures: 1,
                    exhausted: false,
                },
                then: attempt(1),
            },
            Case {
                name: "failed with Retry-After 1 day: back off 10 min (capped)",
                outcome: Outcome::Failed {
                    retry_after: Some(secs(86_400)),
                },
                want: AfterAttempt::Backoff {
                    delay: secs(600),
                    failures: 1,
                    exhausted: false,
                },
                then: attempt(1),
            },
        ];
        for c in cases {
            let mut p = fresh();
            assert_eq!(p.next_step(|| past, &mut MinRng), attempt(0), "{}", c.name);
            assert_eq!(p.attempted(c.outcome, &mut MinRng), c.want, "{}", c.name);
            assert_eq!(p.next_step(|| past, &mut MinRng), c.then, "{}", c.name);
        }
    }

    /// client-go: `wait.Backoff{Duration: 2s, Factor: 2, Jitter: 0.1, Steps: 5}` — five
    /// attempts with 2, 4, 8, 16 s between them, each stretched by up to 10 % — then "Reached
    /// backoff limit" and `PollInfinite(32s)`: [`Backoff::ClientGo`] exactly; the default
    /// [`Backoff::Spread`] stretches by up to 100 % and draws the period from 16–48 s.
    #[test]
    fn policy_backoff_sequence_follows_client_go() {
        fn delays<R: Rng>(backoff: Backoff, mut rng: R) -> Vec<(u32, Duration, bool)> {
            let mut p = fresh().with_backoff(backoff);
            p.next_step(due, &mut rng);
            (1..=7)
                .map(
                    |_| match p.attempted(Outcome::Failed { retry_after: None }, &mut rng) {
                        AfterAttempt::Backoff {
                            delay,
                            failures,
                            exhausted,
                        } => (failures, delay, exhausted),
                        other => panic!("{other:?}"),
                    },
                )
                .collect()
        }
        let exhausted = [false, false, false, false, true, false, false];
        let within = |d: Duration, lo: f64, hi: f64| d.as_secs_f64() > lo && d.as_secs_f64() <= hi;
        struct Case {
            backoff: Backoff,
            /// Delays with every draw at its least.
            low: [u64; 7],
            /// Delays with every draw at its greatest, within 0.01 s below.
            high: [f64; 7],
        }
        let cases = [
            Case {
                backoff: Backoff::ClientGo,
                low: [2, 4, 8, 16, 32, 32, 32],
                high: [2.2, 4.4, 8.8, 17.6, 32.0, 32.0, 32.0],
            },
            Case {
                backoff: Backoff::Spread,
                low: [2, 4, 8, 16, 16, 16, 16],
                high: [4.0, 8.0, 16.0, 32.0, 48.0, 48.0, 48.0],
            },
        ];
        for c in cases {
            let low = delays(c.backoff, MinRng);
            let want: Vec<(u32, Duration, bool)> = (0..7)
                .map(|i| (i as u32 + 1, secs(c.low[i]), exhausted[i]))
                .collect();
            assert_eq!(low, want, "{:?}", c.backoff);
            let high = delays(c.backoff, MaxRng);
            for (i, (failures, d, _)) in high.iter().enumerate() {
                let hi = c.high[i];
                assert!(
                    within(*d, hi - 0.01, hi) || *d == Duration::from_secs_f64(hi),
                    "{:?} failure {failures}: {d:?}, want just under {hi} s",
                    c.backoff
                );
            }
        }
    }

    /// The rotate_now race: a rotation decided on one publish generation is moot once another
    /// is published, for its first attempt and for every retry.
    #[test]
    fn policy_superseded_table() {
        let decided_on = |generation: u64| {
            let mut p = fresh();
            p.next_step(
                || Inputs {
                    generation,
                    ..due()
                },
                &mut MinRng,
            );
            p
        };
        for (name, policy, generation_now, want) in [
            ("watching, nothing decided", fresh(), 5, false),
            ("decided on 3, still 3", decided_on(3), 3, false),
            ("decided on 3, now 4", decided_on(3), 4, true),
            (
                "retrying a rotation decided on 0, now 0",
                backing_off(2),
                0,
                false,
            ),
            (
                "retrying a rotation decided on 0, now 1",
                backing_off(2),
                1,
                true,
            ),
        ] {
            assert_eq!(policy.superseded(generation_now), want, "{name}");
        }
        // Superseded: the next step looks again.
        let mut p = decided_on(3);
        assert_eq!(
            p.attempted(Outcome::Superseded, &mut MinRng),
            AfterAttempt::Decide
        );
        assert!(!p.superseded(4));
        assert!(matches!(
            p.next_step(|| good(30), &mut MinRng),
            Step::Sleep { .. }
        ));
    }

    /// A template-changed signal during a backoff ends it only when the template differs from
    /// the failed request; the step after an ended backoff looks again.
    #[test]
    fn policy_backoff_cut_short_table() {
        for (name, differs, cut, then) in [
            (
                "same template as the failed request: keep backing off",
                false,
                false,
                attempt(1),
            ),
            (
                "template differs from the failed request: look again",
                true,
                true,
                Step::Sleep {
                    deadline: at(30),
                    duration: secs(30),
                },
            ),
        ] {
            let mut p = backing_off(1);
            assert_eq!(p.backoff_cut_short(differs), cut, "{name}");
            assert_eq!(p.next_step(|| good(30), &mut MinRng), then, "{name}");
        }
    }

    /// A template that keeps changing: the first change since the last certificate requests
    /// again at once, later ones wait the backoff delays (2, 4, 8, 16 s, then the period) and
    /// no template signal ends that wait; a certificate, or a sleep towards a deadline, starts
    /// the count again. The same count decides whether a change cuts a failure's backoff
    /// short, so a template changing at every poll while creates fail cannot reset the
    /// backoff at every poll either.
    #[test]
    fn policy_template_changes_in_a_row_table() {
        // A template change reported, then the next step decided, as the rotation thread does.
        fn change(p: &mut Policy) {
            p.attempted(Outcome::TemplateChanged, &mut MinRng);
            p.next_step(due, &mut MinRng);
        }
        let settle = |delay: u64, in_a_row: u32| AfterAttempt::SettleTemplate {
            delay: secs(delay),
            in_a_row,
        };
        struct Case {
            name: &'static str,
            /// What happens before the change, on a fresh policy due now.
            before: fn(&mut Policy),
            want: AfterAttempt,
        }
        let cases = [
            Case {
                name: "first change: request again at once",
                before: |_| {},
                want: AfterAttempt::Decide,
            },
            Case {
                name: "second change in a row: settle 2 s",
                before: change,
                want: settle(2, 2),
            },
            Case {
                name: "sixth change in a row: settle the periodic delay",
                before: |p| (0..5).for_each(|_| change(p)),
                want: settle(16, 6),
            },
            Case {
                name: "a failure in between does not start the count again",
                before: |p| {
                    change(p);
                    p.attempted(Outcome::Failed { retry_after: None }, &mut MinRng);
                    p.next_step(due, &mut MinRng);
                },
                want: settle(2, 2),
            },
            Case {
                name: "a certificate in between starts the count again",
                before: |p| {
                    change(p);
                    p.attempted(Outcome::Rotated, &mut MinRng);
                    p.next_step(due, &mut MinRng);
                },
                want: AfterAttempt::Decide,
            },
            Case {
                name: "a sleep towards a deadline in between starts the count again",
                before: |p| {
                    p.attempted(Outcome::TemplateChanged, &mut MinRng);
                    p.next_step(|| good(30), &mut MinRng);
                    p.next_step(due, &mut MinRng);
                },
                want: AfterAttempt::Decide,
            },
        ];
        for c in cases {
            let mut p = fresh();
            assert_eq!(p.next_step(due, &mut MinRng), attempt(0), "{}", c.name);
            (c.before)(&mut p);
            assert_eq!(
                p.attempted(Outcome::TemplateChanged, &mut MinRng),
                c.want,
                "{}",
                c.name
            );
            assert_eq!(p.next_step(due, &mut MinRng), attempt(0), "{}", c.name);
        }

        // A backoff is cut short by the first change since the last certificate only.
        let mut p = backing_off(1);
        assert!(p.backoff_cut_short(true), "the first change");
        assert_eq!(p.next_step(due, &mut MinRng), attempt(0));
        p.attempted(Outcome::Failed { retry_after: None }, &mut MinRng);
        assert!(
            !p.backoff_cut_short(true),
            "a second change keeps backing off"
        );
        assert_eq!(p.next_step(due, &mut MinRng), attempt(1));
        let mut p = fresh();
        p.next_step(due, &mut MinRng);
        change(&mut p);
        p.attempted(Outcome::Failed { retry_after: None }, &mut MinRng);
        assert!(
            !p.backoff_cut_short(true),
            "a cancelled request was the first change"
        );
    }

    /// Which attempt results count as failures (and back off) and which do not.
    #[test]
    fn outcome_of_attempt_results_table() {
        let api = |code: u16, retry_after: Option<Duration>| {
            Error::Csr(CsrError::Api {
                op: "create",
                path: "/apis/certificates.k8s.io/v1/certificatesigningrequests".into(),
                error: crate::csr::ApiError {
                    code,
                    reason: String::new(),
                    message: String::new(),
                    is_status: true,
                    retry_after,
                },
            })
        };
        let cancelled = || {
            Error::Csr(CsrError::Cancelled {
                name: "csr-1".into(),
            })
        };
        let cases: Vec<(&str, Result<(), Error>, bool, Outcome)> = vec![
            ("success", Ok(()), false, Outcome::Rotated),
            ("stopped", Err(Error::Stopped), false, Outcome::Stopped),
            (
                "no template",
                Err(Error::NoTemplate),
                false,
                Outcome::NoTemplate,
            ),
            (
                "cancelled for a template change",
                Err(cancelled()),
                false,
                Outcome::TemplateChanged,
            ),
            (
                "cancelled while stopping",
                Err(cancelled()),
                true,
                Outcome::Stopped,
            ),
            (
                "429 with Retry-After 7 s",
                Err(api(429, Some(secs(7)))),
                false,
                Outcome::Failed {
                    retry_after: Some(secs(7)),
                },
            ),
            (
                "403 (not transient, still retried as client-go does)",
                Err(api(403, None)),
                false,
                Outcome::Failed { retry_after: None },
            ),
            (
                "denied",
                Err(Error::Csr(CsrError::Denied {
                    name: "csr-1".into(),
                    reason: "r".into(),
                    message: "m".into(),
                })),
                false,
                Outcome::Failed { retry_after: None },
            ),
            (
                "timed out",
                Err(Error::Csr(CsrError::timeout("csr-1", secs(900)))),
                false,
                Outcome::Failed { retry_after: None },
            ),
            (
                "no client factory",
                Err(Error::NoClient),
                false,
                Outcome::Failed { retry_after: None },
            ),
            (
                "issued certificate refused",
                Err(Error::Pki(crate::pki::PkiError::IssuedCertificate {
                    reason: "r".into(),
                })),
                false,
                Outcome::Failed { retry_after: None },
            ),
        ];
        for (name, result, stopping, want) in cases {
            assert_eq!(Outcome::of(&result, || stopping), want, "{name}");
        }
    }

    /// An RNG whose every output is all ones, so `random_range(a..b)` returns just under `b`.
    struct MaxRng;
    impl rand::TryRng for MaxRng {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(u32::MAX)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(u64::MAX)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(0xff);
            Ok(())
        }
    }
}
