//! Rotation timing as pure functions of the certificate, the template, `now` and an RNG: when
//! to rotate, how long to sleep, and how to back off after failures.
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
//! The rotation thread sleeps at most one slice ([`sleep_slice`]) and recomputes from the wall
//! clock at every wake, so a wall-clock jump or a suspend (which monotonic timers do not see) is
//! noticed within one slice.
//!
//! # Backoff
//! After a failed attempt: 2 s, 4 s, 8 s, 16 s, each stretched by up to +10 % (client-go's
//! `wait.Backoff{Duration: 2s, Factor: 2, Jitter: 0.1, Steps: 5}`: five attempts, four sleeps).
//! Then a periodic retry every 32 s — with ±25 % jitter, where client-go uses a flat 32 s that
//! makes a fleet retry in lock-step after an outage. A server's `Retry-After` stretches a delay
//! (never shortens it), capped at [`MAX_RETRY_AFTER`].

use std::time::{Duration, SystemTime};

use rand::{Rng, RngExt};

use crate::pki::Certificate;
use crate::pki::cert_satisfies_template;
use crate::template::CsrTemplate;

/// Lower bound of the rotation point, as a fraction of the lifetime.
pub const DEADLINE_MIN_FRACTION: f64 = 0.7;
/// Upper bound (exclusive) of the rotation point, as a fraction of the lifetime.
pub const DEADLINE_MAX_FRACTION: f64 = 0.9;
/// First backoff delay.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(2);
/// Backoff growth factor.
pub const BACKOFF_FACTOR: u32 = 2;
/// Backoff jitter: each delay is stretched by up to this fraction.
pub const BACKOFF_JITTER: f64 = 0.1;
/// Attempts in the exponential phase (client-go `Steps`).
pub const BACKOFF_STEPS: u32 = 5;
/// Period of the retry after the exponential phase.
pub const PERIODIC_RETRY: Duration = Duration::from_secs(32);
/// Jitter of the periodic retry: ± this fraction.
pub const PERIODIC_JITTER: f64 = 0.25;
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

/// When the next rotation is due: `now` if `forced`, if there is no certificate, or if it does not
/// satisfy `template`; else [`rotation_deadline`] of the certificate.
pub fn next_deadline<R: Rng + ?Sized>(
    cert: Option<&Certificate>,
    template: Option<&CsrTemplate>,
    forced: bool,
    now: SystemTime,
    rng: &mut R,
) -> SystemTime {
    match cert {
        Some(c) if !forced && cert_satisfies_template(Some(c), template) => {
            rotation_deadline(c.not_before(), c.not_after(), rng)
        }
        _ => now,
    }
}

/// How long to sleep before looking again: the time to `deadline`, at most `max_slice`, zero if
/// the deadline has passed (never a negative or panicking subtraction).
pub fn sleep_slice(deadline: SystemTime, now: SystemTime, max_slice: Duration) -> Duration {
    deadline
        .duration_since(now)
        .unwrap_or_default()
        .min(max_slice)
}

/// The delay before the next attempt after `failures` consecutive failed attempts (≥ 1).
///
/// Failures 1–4: 2, 4, 8, 16 s × [1, 1.1). From the fifth: 32 s × [0.75, 1.25). A
/// `retry_after` from the server raises the delay to at least that much, up to
/// [`MAX_RETRY_AFTER`].
pub fn backoff_delay<R: Rng + ?Sized>(
    failures: u32,
    retry_after: Option<Duration>,
    rng: &mut R,
) -> Duration {
    let base = if failures < BACKOFF_STEPS {
        let exp = failures.saturating_sub(1);
        let d = BACKOFF_INITIAL * BACKOFF_FACTOR.pow(exp);
        d.mul_f64(1.0 + rng.random_range(0.0..BACKOFF_JITTER))
    } else {
        PERIODIC_RETRY.mul_f64(rng.random_range(1.0 - PERIODIC_JITTER..1.0 + PERIODIC_JITTER))
    };
    match retry_after {
        Some(r) => base.max(r.min(MAX_RETRY_AFTER)),
        None => base,
    }
}

/// True once `failures` consecutive failures have used up the exponential phase (client-go logs
/// "Reached backoff limit, still unable to rotate certs" at this point).
pub fn backoff_exhausted(failures: u32) -> bool {
    failures == BACKOFF_STEPS
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

    #[test]
    fn backoff_follows_client_go_then_jittered_periodic() {
        let mut rng = StdRng::seed_from_u64(1);
        for (failures, base) in [(1, 2u64), (2, 4), (3, 8), (4, 16)] {
            for _ in 0..100 {
                let d = backoff_delay(failures, None, &mut rng);
                let b = Duration::from_secs(base);
                assert!(d >= b && d < b.mul_f64(1.1), "failure {failures}: {d:?}");
            }
        }
        let periodic: Vec<Duration> = (0..200).map(|_| backoff_delay(7, None, &mut rng)).collect();
        assert!(
            periodic
                .iter()
                .all(|d| *d >= Duration::from_secs(24) && *d < Duration::from_secs(40))
        );
        let min = periodic.iter().min().unwrap();
        let max = periodic.iter().max().unwrap();
        assert!(
            *max - *min > Duration::from_secs(10),
            "periodic retries are spread: {min:?}..{max:?}"
        );
        assert!(backoff_exhausted(5) && !backoff_exhausted(4) && !backoff_exhausted(6));
    }

    #[test]
    fn retry_after_only_stretches_and_is_capped() {
        let mut rng = StdRng::seed_from_u64(3);
        let d = backoff_delay(1, Some(Duration::from_secs(30)), &mut rng);
        assert_eq!(d, Duration::from_secs(30));
        let d = backoff_delay(4, Some(Duration::from_secs(1)), &mut rng);
        assert!(d >= Duration::from_secs(16));
        let d = backoff_delay(1, Some(Duration::from_secs(86_400)), &mut rng);
        assert_eq!(d, MAX_RETRY_AFTER);
    }
}
