//! Feature `prometheus`: the manager's metrics land in a `prometheus::Registry` under the
//! kubelet's names and move as the manager works (a failed attempt, rotations, the TTL).

use std::sync::Arc;
use std::time::{Duration, Instant};

use certrotate::clock::SystemClock;
use certrotate::kubelet::KubeletMetrics;
use certrotate::testing::{CreateStep, FakeCsrApi, api_error};
use certrotate::{CertificateManager, Config, CsrTemplate, KeyUsage, Manager};
use prometheus::{Encoder, Registry, TextEncoder};

fn exposition(registry: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .unwrap();
    String::from_utf8(buf).unwrap()
}

fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn kubelet_server_metrics_follow_the_manager() {
    let registry = Registry::new();
    let metrics = KubeletMetrics::register_server(&registry).unwrap();
    // The kubelet's names, with no suffix added (the kubelet serves text format 0.0.4).
    let text = exposition(&registry);
    for name in [
        "# TYPE kubelet_server_expiration_renew_errors counter",
        "# TYPE kubelet_certificate_manager_server_rotation_seconds histogram",
        "# TYPE kubelet_certificate_manager_server_ttl_seconds gauge",
        "kubelet_certificate_manager_server_rotation_seconds_bucket{le=\"124416000\"} 0",
    ] {
        assert!(text.contains(name), "{name:?} not in\n{text}");
    }

    let api = FakeCsrApi::new(Arc::new(SystemClock), Duration::from_secs(3600));
    api.script_create(CreateStep::Fail(api_error(500, "InternalError", true)));
    let config = metrics
        .wire(Config::builder())
        .template(CsrTemplate::new("system:node:n1").with_organization("system:nodes"))
        .signer_name("kubernetes.io/kubelet-serving")
        .usages([KeyUsage::DigitalSignature, KeyUsage::ServerAuth])
        .client_factory(api.factory())
        .build()
        .unwrap();
    let manager = CertificateManager::new(config).unwrap();
    assert!(manager.rotate_now().is_err());
    manager.rotate_now().unwrap();
    manager.rotate_now().unwrap();
    let text = exposition(&registry);
    assert_eq!(
        sample(&text, "kubelet_server_expiration_renew_errors"),
        Some(1.0),
        "{text}"
    );
    // Observed at each rotation that replaced a certificate: the second one.
    assert_eq!(
        sample(
            &text,
            "kubelet_certificate_manager_server_rotation_seconds_count"
        ),
        Some(1.0),
        "{text}"
    );

    // The rotation thread sets the TTL when it wakes: about an hour left.
    manager.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ttl = metrics.ttl_seconds.get();
        if ttl.is_finite() {
            assert!((3000.0..=3600.0).contains(&ttl), "ttl {ttl}");
            break;
        }
        assert!(Instant::now() < deadline, "the TTL gauge was never set");
        std::thread::sleep(Duration::from_millis(10));
    }
    manager.stop();
}

#[test]
fn kubelet_client_metrics_have_no_rotation_histogram_and_names_are_registered_once() {
    let registry = Registry::new();
    let metrics = KubeletMetrics::register_client(&registry).unwrap();
    assert!(metrics.rotation_seconds.is_none());
    let names: Vec<String> = registry
        .gather()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "kubelet_certificate_manager_client_expiration_renew_errors",
            "kubelet_certificate_manager_client_ttl_seconds"
        ]
    );
    // A second registration of the same names is an error, not a panic or a duplicate.
    assert!(KubeletMetrics::register_client(&registry).is_err());
}
