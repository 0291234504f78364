//! Metric hooks: the three shapes client-go's certificate manager reports through, as traits so
//! that any metrics library can sit behind them.
//!
//! Closures implement the traits, so wiring to a registry is one line:
//! `.renew_failure_counter(Arc::new(move || failures.inc()))`. This module knows no metric
//! names; the kubelet presets carry the kubelet's names, help texts and buckets.
//!
//! With feature `prometheus`, the `prometheus` crate's `IntCounter`, `Counter`, `Histogram`
//! and `Gauge` implement these traits; `kubelet::KubeletMetrics` registers the kubelet's
//! certificate metrics in a `prometheus::Registry` and wires them into a manager's config.

/// A histogram (client-go `Histogram`). The manager observes, at each successful rotation, how
/// many seconds the previous certificate lived: now − its NotBefore.
pub trait Histogram: Send + Sync {
    /// Records one value.
    fn observe(&self, value: f64);
}

/// A counter (client-go `Counter`). The manager increments it once per failed rotation attempt.
pub trait Counter: Send + Sync {
    /// Adds one.
    fn inc(&self);
}

/// A gauge. The manager sets it to the seconds until the current certificate's NotAfter
/// (truncated), or `+Inf` when there is none, at every wake of the rotation thread.
pub trait Gauge: Send + Sync {
    /// Sets the value.
    fn set(&self, value: f64);
}

impl<F: Fn(f64) + Send + Sync> Histogram for F {
    fn observe(&self, value: f64) {
        self(value)
    }
}

impl<F: Fn() + Send + Sync> Counter for F {
    fn inc(&self) {
        self()
    }
}

/// A [`Gauge`] from a closure (a separate wrapper because `Fn(f64)` already implements
/// [`Histogram`]).
pub struct GaugeFn<F>(pub F);

impl<F: Fn(f64) + Send + Sync> Gauge for GaugeFn<F> {
    fn set(&self, value: f64) {
        (self.0)(value)
    }
}

#[cfg(feature = "prometheus")]
mod prom;
