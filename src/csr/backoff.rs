//! The pause before a CSR wait lists again after an error: client-go's reflector backoff, as a
//! pure function of the wall clock reading and an RNG.
//!
//! client-go's `WaitForCertificate` runs a reflector, which re-lists after every failed list,
//! every watch that ends in an error (410 Expired/Gone included) and every very short watch —
//! each time only after `backoffManager.Backoff()`. The reflector builds that manager as
//! `wait.NewExponentialBackoffManager(800ms, 30s, 2min, 2.0, 1.0, clock)`:
//!
//! - the base pause starts at 800 ms and doubles after each pause, capped at 30 s
//!   (`wait.Backoff.Step`: the base is multiplied by the factor and clamped to the cap);
//! - each pause is the base stretched by a uniform random fraction in [0, 1) of itself (jitter
//!   1.0, `wait.Jitter`): 800 ms–1.6 s, 1.6–3.2 s, … and [30 s, 60 s) once capped;
//! - when no pause was taken for more than 2 min, the base goes back to 800 ms ("If the backoff
//!   is not called within resetDuration, the backoff is reset", the manager's documented
//!   contract, and the reflector's comment "If we don't backoff for 2min, assume API server is
//!   healthy and we reset the backoff"). A server that keeps failing is therefore never
//!   retried faster than the cap. (Newer apimachinery releases implement the reset as "2 min
//!   since the last reset", which restarts the schedule every 2 min even while failing; the
//!   documented rule is the one followed here, and the gentler one.)
//!
//! A normal end of a watch (its `timeoutSeconds` ran out) is resumed at once, without a pause,
//! as the reflector does. The state belongs to one wait: each wait starts at the first pause.

use std::time::{Duration, SystemTime};

use rand::{Rng, RngExt};

/// The reflector's first pause (client-go `NewReflectorWithOptions`: 800 ms).
pub(crate) const INITIAL: Duration = Duration::from_millis(800);
/// The largest base pause (30 s); with jitter a pause is below twice this.
pub(crate) const CAP: Duration = Duration::from_secs(30);
/// Growth of the base pause per pause taken.
pub(crate) const FACTOR: u32 = 2;
/// Jitter: each pause is the base plus up to this fraction of it.
pub(crate) const JITTER: f64 = 1.0;
/// A quiet time longer than this resets the base pause to the first one (2 min).
pub(crate) const RESET_AFTER: Duration = Duration::from_secs(120);

/// Backoff state of one wait.
#[derive(Clone, Debug)]
pub(crate) struct RelistBackoff {
    initial: Duration,
    /// The next base pause. Invariant: `initial.min(CAP) <= base <= CAP.max(initial)`.
    base: Duration,
    /// Wall time of the last pause taken, if any.
    last: Option<SystemTime>,
}

impl RelistBackoff {
    /// A backoff whose first base pause is `initial` (client-go: [`INITIAL`]).
    pub(crate) fn new(initial: Duration) -> RelistBackoff {
        RelistBackoff {
            initial,
            base: initial,
            last: None,
        }
    }

    /// The next pause, taken at wall time `now`: the base pause × [1, 1 + [`JITTER`]), after
    /// resetting the base when the last pause was more than [`RESET_AFTER`] ago. The base then
    /// grows by [`FACTOR`], up to [`CAP`] (an `initial` above the cap stays as it is). A wall
    /// clock that went backwards counts as no time passed.
    pub(crate) fn next<R: Rng + ?Sized>(&mut self, now: SystemTime, rng: &mut R) -> Duration {
        if let Some(last) = self.last
            && now.duration_since(last).unwrap_or_default() > RESET_AFTER
        {
            self.base = self.initial;
        }
        self.last = Some(now);
        // Saturating: a huge configured first pause must not overflow.
        let pause = Duration::try_from_secs_f64(
            self.base.as_secs_f64() * (1.0 + rng.random_range(0.0..1.0) * JITTER),
        )
        .unwrap_or(Duration::MAX);
        let grown = self.base.saturating_mul(FACTOR);
        self.base = if grown > CAP {
            CAP.max(self.base)
        } else {
            grown
        };
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Drawing the extremes of the jitter: an RNG that always yields 0 or always yields
    /// (almost) 1.
    struct Fixed(u64);
    impl rand::TryRng for Fixed {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(self.0 as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(self.0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(self.0 as u8);
            Ok(())
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// client-go's reflector schedule without jitter: 0.8, 1.6, 3.2, 6.4, 12.8, 25.6 s, then the
    /// 30 s cap; with the largest jitter each pause is just below twice its base.
    #[test]
    fn reflector_schedule_doubles_to_the_cap_with_jitter_up_to_twice() {
        let bases = [
            800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000, 30_000,
        ];
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut low = RelistBackoff::new(INITIAL);
        let mut high = RelistBackoff::new(INITIAL);
        let mut t = t0;
        for (i, base) in bases.into_iter().enumerate() {
            let lo = low.next(t, &mut Fixed(0));
            let hi = high.next(t, &mut Fixed(u64::MAX));
            assert_eq!(lo, ms(base), "pause {i}, no jitter");
            assert!(
                hi <= ms(2 * base) && hi > ms(2 * base - 2),
                "pause {i}: {hi:?}"
            );
            t += lo;
        }
    }

    #[test]
    fn random_pauses_stay_within_base_and_twice_base() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = RelistBackoff::new(INITIAL);
        let t = SystemTime::UNIX_EPOCH;
        let mut base = INITIAL;
        for _ in 0..50 {
            let p = b.next(t, &mut rng);
            assert!(p >= base && p < base * 2, "{p:?} for base {base:?}");
            base = (base * 2).min(CAP);
        }
    }

    #[test]
    fn quiet_for_more_than_two_minutes_resets_and_a_backwards_clock_does_not() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut b = RelistBackoff::new(INITIAL);
        for _ in 0..4 {
            b.next(t0, &mut Fixed(0));
        }
        assert_eq!(
            b.next(t0 + RESET_AFTER, &mut Fixed(0)),
            ms(12_800),
            "not more than 2 min"
        );
        assert_eq!(
            b.next(t0 + RESET_AFTER * 2 + ms(1), &mut Fixed(0)),
            INITIAL,
            "quiet for more than 2 min"
        );
        assert_eq!(b.next(t0, &mut Fixed(0)), ms(1600), "clock stepped back");
    }

    #[test]
    fn a_huge_initial_pause_saturates_instead_of_panicking() {
        let mut b = RelistBackoff::new(Duration::MAX);
        let t = SystemTime::UNIX_EPOCH;
        assert!(b.next(t, &mut Fixed(u64::MAX)) >= Duration::from_secs(u64::MAX / 2));
        assert!(b.next(t, &mut Fixed(0)) >= Duration::from_secs(u64::MAX / 2));
    }

    #[test]
    fn an_initial_pause_above_the_cap_stays() {
        let mut b = RelistBackoff::new(Duration::from_secs(60));
        let t = SystemTime::UNIX_EPOCH;
        assert_eq!(b.next(t, &mut Fixed(0)), Duration::from_secs(60));
        assert_eq!(b.next(t, &mut Fixed(0)), Duration::from_secs(60));
    }
}
