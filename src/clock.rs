//! Time as an input: the [`Clock`] trait, the real [`SystemClock`], and (feature `test-util`)
//! `testing::FakeClock`.
//!
//! A clock has two faces, as an operating system does: a wall clock ([`Clock::now`]) that
//! certificate validity is measured against and that can step or jump (NTP, suspend, an
//! operator), and timers ([`Clock::after`]) that run on monotonic time and do not notice such
//! jumps. The rotation thread therefore never sleeps longer than one slice and re-reads the wall
//! clock at every wake (see the crate docs, "Threads").

use std::fmt;
use std::time::Duration;
use std::time::{Instant, SystemTime};

use crossbeam_channel::Receiver;

/// A source of wall-clock time and one-shot timers.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// A cheaper, less exact reading of the wall clock for hot paths: within
    /// [`COARSE_CLOCK_SLACK`] of [`now`] (usually behind it by about a tick; on some virtual
    /// machines a few milliseconds ahead). Only [`is_past`] uses it, to skip the precise reading
    /// while a deadline is far away. Defaults to [`now`].
    ///
    /// [`now`]: Clock::now
    fn now_coarse(&self) -> SystemTime {
        self.now()
    }

    /// A timer that fires once, `d` of monotonic time from now. A zero duration fires at once.
    /// Dropping the timer cancels it.
    fn after(&self, d: Duration) -> Timer;

    /// Whether this clock's timers run on the process's monotonic time (`std::time::Instant`),
    /// so that a timeout another component measures with `Instant` ends when a timer of this
    /// clock would. The manager then leaves the CSR wait timeout to the client instead of
    /// starting a watchdog thread. Defaults to false (a fake clock's timers move by hand).
    fn instant_timers(&self) -> bool {
        false
    }
}

/// How far [`Clock::now_coarse`] may lag [`Clock::now`]: 10 s, ten times the longest the Linux
/// kernel goes without a timekeeping update.
pub const COARSE_CLOCK_SLACK: Duration = Duration::from_secs(10);

/// Whether `t` has passed by `clock`'s wall time: "now > t". Reads only the coarse clock while
/// `t` is more than [`COARSE_CLOCK_SLACK`] away, and the precise clock near `t`, so the answer
/// is exact and the common case costs a coarse read.
pub fn is_past(clock: &dyn Clock, t: SystemTime) -> bool {
    if clock.now_coarse() + COARSE_CLOCK_SLACK <= t {
        return false;
    }
    clock.now() > t
}

/// Whether `clock`'s wall time is within `[start, end]`: "start ≤ now ≤ end", i.e. neither
/// before `start` nor [past](is_past) `end`. Reads only the coarse clock while both bounds are
/// more than [`COARSE_CLOCK_SLACK`] away, and the precise clock near either, so the answer is
/// exact and the common case costs one coarse read.
pub fn is_within(clock: &dyn Clock, start: SystemTime, end: SystemTime) -> bool {
    Window::new(start, end).contains_now(clock)
}

/// A window `[start, end]` of wall time with the coarse-clock margins worked out once, so that
/// a hot path checks "start ≤ now ≤ end" with one coarse clock read and two comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    start: SystemTime,
    end: SystemTime,
    /// Coarse readings in this range are inside the window whatever the coarse clock's error:
    /// `[start + slack, end − slack]`; `None` when that range is empty.
    sure: Option<(SystemTime, SystemTime)>,
}

impl Window {
    pub(crate) fn new(start: SystemTime, end: SystemTime) -> Window {
        let sure = start
            .checked_add(COARSE_CLOCK_SLACK)
            .zip(end.checked_sub(COARSE_CLOCK_SLACK))
            .filter(|(from, until)| from <= until);
        Window { start, end, sure }
    }

    /// Whether `clock`'s wall time is in the window (see [`is_within`]).
    pub(crate) fn contains_now(&self, clock: &dyn Clock) -> bool {
        if let Some((from, until)) = self.sure {
            let coarse = clock.now_coarse();
            if from <= coarse && coarse <= until {
                return true;
            }
        }
        let now = clock.now();
        self.start <= now && now <= self.end
    }
}

/// A one-shot timer from a [`Clock`]: its [`receiver`](Timer::receiver) gets one message when it
/// fires, for use in `crossbeam_channel::select!`.
pub struct Timer {
    rx: Receiver<Instant>,
    /// Keeps a fake clock's registration alive; dropping it tells the clock nobody waits.
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer").finish_non_exhaustive()
    }
}

impl Timer {
    /// A timer backed by `rx`. `guard` lives as long as the timer (clock implementations use it
    /// to learn when a timer is dropped).
    pub fn new(
        rx: Receiver<Instant>,
        guard: Option<Box<dyn std::any::Any + Send + Sync>>,
    ) -> Timer {
        Timer { rx, _guard: guard }
    }

    /// The channel that receives the firing.
    pub fn receiver(&self) -> &Receiver<Instant> {
        &self.rx
    }
}

/// The real clock: `SystemTime::now()` and `crossbeam_channel::after` (monotonic).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// On Linux, `CLOCK_REALTIME_COARSE` (a vDSO read of the last tick, a few nanoseconds) plus
    /// the clock's resolution, so the result is never earlier than the precise time. Elsewhere
    /// [`SystemTime::now`].
    #[cfg(target_os = "linux")]
    fn now_coarse(&self) -> SystemTime {
        use rustix::time::{ClockId, clock_getres, clock_gettime};
        use std::sync::OnceLock;
        static RESOLUTION: OnceLock<Duration> = OnceLock::new();
        let res = *RESOLUTION.get_or_init(|| {
            let r = clock_getres(ClockId::RealtimeCoarse);
            Duration::new(
                r.tv_sec.unsigned_abs(),
                r.tv_nsec.clamp(0, 999_999_999) as u32,
            )
        });
        let t = clock_gettime(ClockId::RealtimeCoarse);
        let since_epoch = Duration::new(
            t.tv_sec.unsigned_abs(),
            t.tv_nsec.clamp(0, 999_999_999) as u32,
        );
        if t.tv_sec >= 0 {
            std::time::UNIX_EPOCH + since_epoch + res
        } else {
            SystemTime::now()
        }
    }

    fn after(&self, d: Duration) -> Timer {
        Timer::new(crossbeam_channel::after(d), None)
    }

    fn instant_timers(&self) -> bool {
        true
    }
}

#[cfg(any(test, feature = "test-util"))]
pub(crate) mod fake {
    use std::sync::{Arc, Weak};
    use std::time::{Duration, Instant, SystemTime};

    use crossbeam_channel::Sender;
    use parking_lot::{Condvar, Mutex};

    use super::{Clock, Timer};

    /// A clock that moves only when a test moves it.
    ///
    /// Wall time ([`now`](FakeClock::now)) and timer time are separate, as on a real machine:
    /// [`advance`](FakeClock::advance) moves both and fires due timers; [`set`](FakeClock::set)
    /// steps only the wall clock (an NTP step or a suspend seen by `SystemTime`), which timers do
    /// not notice. Tests wait for the code under test to go to sleep with
    /// [`wait_for_waiters`](FakeClock::wait_for_waiters) instead of sleeping themselves.
    ///
    /// Cloning gives another handle to the same clock.
    #[derive(Clone, Debug)]
    pub struct FakeClock {
        inner: Arc<Inner>,
    }

    #[derive(Debug)]
    struct Inner {
        /// Lock discipline: held for bookkeeping only; timers are fired after it is released.
        state: Mutex<State>,
        changed: Condvar,
    }

    #[derive(Debug)]
    struct State {
        wall: SystemTime,
        /// Monotonic time since the clock was made.
        mono: Duration,
        waiters: Vec<Waiter>,
        timers_created: u64,
    }

    #[derive(Debug)]
    struct Waiter {
        deadline: Duration,
        tx: Sender<Instant>,
        alive: Weak<()>,
    }

    impl FakeClock {
        /// A clock whose wall time starts at `start`.
        pub fn new(start: SystemTime) -> FakeClock {
            FakeClock {
                inner: Arc::new(Inner {
                    state: Mutex::new(State {
                        wall: start,
                        mono: Duration::ZERO,
                        waiters: Vec::new(),
                        timers_created: 0,
                    }),
                    changed: Condvar::new(),
                }),
            }
        }

        /// Moves wall and timer time forward by `d` and fires every timer that is due.
        pub fn advance(&self, d: Duration) {
            let due = {
                let mut st = self.inner.state.lock();
                st.wall += d;
                st.mono += d;
                let mono = st.mono;
                let (due, keep): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut st.waiters)
                    .into_iter()
                    .partition(|w| w.deadline <= mono);
                st.waiters = keep;
                due
            };
            for w in due {
                let _ = w.tx.try_send(Instant::now());
            }
            self.inner.changed.notify_all();
        }

        /// Steps the wall clock to `t` (forwards or backwards). Timers do not notice, exactly as
        /// monotonic timers do not notice a wall-clock step.
        pub fn set(&self, t: SystemTime) {
            self.inner.state.lock().wall = t;
            self.inner.changed.notify_all();
        }

        /// How many timers are pending: made, not fired, not dropped. A thread blocked on a
        /// timer counts as one.
        pub fn waiters(&self) -> usize {
            let mut st = self.inner.state.lock();
            st.waiters.retain(|w| w.alive.strong_count() > 0);
            st.waiters.len()
        }

        /// How many timers have been made since the clock was made; a measure of wake-ups.
        pub fn timers_created(&self) -> u64 {
            self.inner.state.lock().timers_created
        }

        /// The monotonic time until the earliest pending timer fires, if any.
        pub fn next_timer_in(&self) -> Option<Duration> {
            let mut st = self.inner.state.lock();
            st.waiters.retain(|w| w.alive.strong_count() > 0);
            let mono = st.mono;
            st.waiters
                .iter()
                .map(|w| w.deadline.saturating_sub(mono))
                .min()
        }

        /// Blocks until at least `n` timers are pending, or `timeout` of real time passes.
        /// Returns whether the count was reached. This is how a test knows the code under test
        /// has gone to sleep.
        pub fn wait_for_waiters(&self, n: usize, timeout: Duration) -> bool {
            let end = Instant::now() + timeout;
            let mut st = self.inner.state.lock();
            loop {
                st.waiters.retain(|w| w.alive.strong_count() > 0);
                if st.waiters.len() >= n {
                    return true;
                }
                // Dropped timers do not signal; re-check at least every 10 ms.
                let wake = (Instant::now() + Duration::from_millis(10)).min(end);
                if Instant::now() >= end {
                    return false;
                }
                self.inner.changed.wait_until(&mut st, wake);
            }
        }

        /// Blocks until some pending timer is due within `within` of fake time, or `timeout` of
        /// real time passes. Returns whether such a timer appeared. Tells "asleep in a short
        /// backoff" from "asleep on a long timer" where counting timers cannot.
        // Used by the integration tests (feature `test-util`), not by the unit tests.
        #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
        pub fn wait_for_timer_within(&self, within: Duration, timeout: Duration) -> bool {
            let end = Instant::now() + timeout;
            let mut st = self.inner.state.lock();
            loop {
                st.waiters.retain(|w| w.alive.strong_count() > 0);
                let mono = st.mono;
                if st
                    .waiters
                    .iter()
                    .any(|w| w.deadline.saturating_sub(mono) <= within)
                {
                    return true;
                }
                let wake = (Instant::now() + Duration::from_millis(10)).min(end);
                if Instant::now() >= end {
                    return false;
                }
                self.inner.changed.wait_until(&mut st, wake);
            }
        }

        /// Advances time to the earliest pending timer and fires it (and any other timer due at
        /// the same moment). Returns how far time moved, or `None` when no timer is pending.
        pub fn advance_to_next_timer(&self) -> Option<Duration> {
            let d = self.next_timer_in()?;
            self.advance(d);
            Some(d)
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> SystemTime {
            self.inner.state.lock().wall
        }

        fn after(&self, d: Duration) -> Timer {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let alive = Arc::new(());
            {
                let mut st = self.inner.state.lock();
                st.timers_created += 1;
                if d.is_zero() {
                    let _ = tx.try_send(Instant::now());
                } else {
                    // A timer too far out to represent fires at the end of time.
                    let deadline = st.mono.saturating_add(d);
                    st.waiters.push(Waiter {
                        deadline,
                        tx,
                        alive: Arc::downgrade(&alive),
                    });
                }
            }
            self.inner.changed.notify_all();
            Timer::new(rx, Some(Box::new(alive)))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn coarse_system_time_lags_within_the_slack() {
            let c = crate::clock::SystemClock;
            for _ in 0..1000 {
                let coarse = c.now_coarse();
                let precise = c.now();
                let gap = precise
                    .duration_since(coarse)
                    .unwrap_or_else(|e| e.duration());
                assert!(
                    gap < crate::clock::COARSE_CLOCK_SLACK,
                    "{coarse:?} vs {precise:?}"
                );
            }
        }

        #[test]
        fn is_past_is_exact_near_the_deadline() {
            let c = crate::clock::SystemClock;
            let now = c.now();
            assert!(crate::clock::is_past(&c, now - Duration::from_millis(1)));
            assert!(!crate::clock::is_past(&c, now + Duration::from_secs(1)));
            assert!(!crate::clock::is_past(&c, now + Duration::from_secs(3600)));
            let f = FakeClock::new(now);
            assert!(!crate::clock::is_past(&f, now));
            assert!(crate::clock::is_past(&f, now - Duration::from_nanos(1)));
        }

        #[test]
        fn is_within_is_exact_at_both_bounds() {
            use crate::clock::is_within;
            let (s, ms, h) = (
                Duration::from_secs(1),
                Duration::from_millis(1),
                Duration::from_secs(3600),
            );
            let c = crate::clock::SystemClock;
            let now = c.now();
            assert!(is_within(&c, now - h, now + h));
            assert!(is_within(&c, now - ms, now + s));
            assert!(!is_within(&c, now + s, now + h), "starts in a second");
            assert!(!is_within(&c, now - h, now - ms), "ended");
            let f = FakeClock::new(now);
            assert!(is_within(&f, now, now));
            assert!(!is_within(&f, now + Duration::from_nanos(1), now + h));
            assert!(!is_within(&f, now - h, now - Duration::from_nanos(1)));
        }

        #[test]
        fn timers_fire_on_advance_and_not_on_wall_steps() {
            let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
            let c = FakeClock::new(start);
            let t = c.after(Duration::from_secs(10));
            assert_eq!(c.waiters(), 1);
            c.set(start + Duration::from_secs(3600));
            assert!(
                t.receiver().try_recv().is_err(),
                "a wall step fires nothing"
            );
            c.advance(Duration::from_secs(9));
            assert!(t.receiver().try_recv().is_err());
            c.advance(Duration::from_secs(1));
            assert!(t.receiver().try_recv().is_ok());
            assert_eq!(c.waiters(), 0);
            assert_eq!(c.now(), start + Duration::from_secs(3610));
        }

        #[test]
        fn dropped_timers_stop_counting_and_zero_fires_at_once() {
            let c = FakeClock::new(SystemTime::UNIX_EPOCH);
            let t = c.after(Duration::from_secs(5));
            let z = c.after(Duration::ZERO);
            assert!(z.receiver().try_recv().is_ok());
            assert_eq!(c.waiters(), 1);
            drop(t);
            assert_eq!(c.waiters(), 0);
            assert!(!c.wait_for_waiters(1, Duration::from_millis(20)));
            assert_eq!(c.timers_created(), 2);
        }

        #[test]
        fn wait_for_waiters_sees_another_thread_go_to_sleep() {
            let c = FakeClock::new(SystemTime::UNIX_EPOCH);
            let c2 = c.clone();
            let h = std::thread::spawn(move || {
                let t = c2.after(Duration::from_secs(60));
                t.receiver().recv().is_ok()
            });
            assert!(c.wait_for_waiters(1, Duration::from_secs(10)));
            assert_eq!(c.advance_to_next_timer(), Some(Duration::from_secs(60)));
            assert!(h.join().unwrap());
        }
    }
}
