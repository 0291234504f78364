//! The kubelet's certificate metrics in a `prometheus::Registry` (feature `prometheus`).

use std::sync::Arc;

use super::{
    CLIENT_RENEW_ERRORS, CLIENT_TTL_SECONDS, MetricDesc, SERVER_RENEW_ERRORS,
    SERVER_ROTATION_SECONDS, SERVER_TTL_SECONDS,
};
use crate::manager::ConfigBuilder;

/// The kubelet's certificate-manager metrics for one certificate, registered in a
/// `prometheus::Registry` with the kubelet's names, help texts and buckets
/// ([`crate::kubelet`]'s `SERVER_*` and `CLIENT_*` descriptions), and wired into a manager
/// with [`KubeletMetrics::wire`].
///
/// ```
/// use std::sync::Arc;
/// use certrotate::kubelet::KubeletMetrics;
///
/// let registry = prometheus::Registry::new();
/// let metrics = KubeletMetrics::register_server(&registry)?;
/// let builder = metrics.wire(certrotate::Config::builder());
/// // ... .template(..).signer_name(..).build()
/// # drop(builder);
/// let names: Vec<String> = registry.gather().iter().map(|f| f.name().to_owned()).collect();
/// assert!(names.contains(&"kubelet_certificate_manager_server_ttl_seconds".to_owned()));
/// # Ok::<(), prometheus::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct KubeletMetrics {
    /// Renewal failures: `kubelet_server_expiration_renew_errors` or
    /// `kubelet_certificate_manager_client_expiration_renew_errors`.
    pub renew_errors: prometheus::IntCounter,
    /// Seconds the previous certificate lived, at each rotation:
    /// `kubelet_certificate_manager_server_rotation_seconds`. The kubelet has none for its
    /// client certificate, so `None` there.
    pub rotation_seconds: Option<prometheus::Histogram>,
    /// Seconds until the current certificate's NotAfter, `+Inf` without one:
    /// `kubelet_certificate_manager_server_ttl_seconds` or `..._client_ttl_seconds`. Set by the
    /// manager at every wake of its rotation thread (at least once a minute).
    pub ttl_seconds: prometheus::Gauge,
}

fn opts(d: MetricDesc) -> prometheus::Opts {
    prometheus::Opts::new(d.name, d.help)
}

impl KubeletMetrics {
    /// The serving certificate's metrics (renewal errors, rotation histogram, TTL), registered
    /// in `registry`.
    ///
    /// # Errors
    /// `prometheus::Error::AlreadyReg` when `registry` already holds one of the names.
    pub fn register_server(
        registry: &prometheus::Registry,
    ) -> Result<KubeletMetrics, prometheus::Error> {
        let m = KubeletMetrics {
            renew_errors: prometheus::IntCounter::with_opts(opts(SERVER_RENEW_ERRORS))?,
            rotation_seconds: Some(prometheus::Histogram::with_opts(
                prometheus::HistogramOpts::new(
                    SERVER_ROTATION_SECONDS.name,
                    SERVER_ROTATION_SECONDS.help,
                )
                .buckets(SERVER_ROTATION_SECONDS.buckets.to_vec()),
            )?),
            ttl_seconds: prometheus::Gauge::with_opts(opts(SERVER_TTL_SECONDS))?,
        };
        m.register(registry)?;
        Ok(m)
    }

    /// The client certificate's metrics (renewal errors, TTL), registered in `registry`.
    ///
    /// # Errors
    /// `prometheus::Error::AlreadyReg` when `registry` already holds one of the names.
    pub fn register_client(
        registry: &prometheus::Registry,
    ) -> Result<KubeletMetrics, prometheus::Error> {
        let m = KubeletMetrics {
            renew_errors: prometheus::IntCounter::with_opts(opts(CLIENT_RENEW_ERRORS))?,
            rotation_seconds: None,
            ttl_seconds: prometheus::Gauge::with_opts(opts(CLIENT_TTL_SECONDS))?,
        };
        m.register(registry)?;
        Ok(m)
    }

    fn register(&self, registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.renew_errors.clone()))?;
        registry.register(Box::new(self.ttl_seconds.clone()))?;
        if let Some(h) = &self.rotation_seconds {
            registry.register(Box::new(h.clone()))?;
        }
        Ok(())
    }

    /// `builder` with these metrics as its renew-failure counter, rotation histogram (when
    /// there is one) and TTL gauge.
    pub fn wire(&self, builder: ConfigBuilder) -> ConfigBuilder {
        let mut builder = builder
            .renew_failure_counter(Arc::new(self.renew_errors.clone()))
            .ttl_gauge(Arc::new(self.ttl_seconds.clone()));
        if let Some(h) = &self.rotation_seconds {
            builder = builder.rotation_histogram(Arc::new(h.clone()));
        }
        builder
    }
}
