//! The metric traits for the `prometheus` crate (feature `prometheus`).

use super::{Counter, Gauge, Histogram};

impl Counter for prometheus::IntCounter {
    fn inc(&self) {
        prometheus::IntCounter::inc(self)
    }
}

impl Counter for prometheus::Counter {
    fn inc(&self) {
        prometheus::Counter::inc(self)
    }
}

impl Histogram for prometheus::Histogram {
    fn observe(&self, value: f64) {
        prometheus::Histogram::observe(self, value)
    }
}

impl Gauge for prometheus::Gauge {
    fn set(&self, value: f64) {
        prometheus::Gauge::set(self, value)
    }
}
