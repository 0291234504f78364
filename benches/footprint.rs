//! Footprint of idle managers: threads per started manager and resident memory growth for
//! 100 of them (static template), then 100 more with a dynamic template. Prints figures; it is
//! a measurement, not a criterion timing (`cargo bench --bench footprint`).

use std::sync::Arc;
use std::time::Duration;

use certrotate::clock::SystemClock;
use certrotate::testing::FakeCsrApi;
use certrotate::{
    CertificateManager, Config, CsrTemplate, KeyAlgorithm, KeyUsage, Manager, MemoryStore,
    PrivateKey, Store,
};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful either way.
    let n = 100;
    let api = FakeCsrApi::new(Arc::new(SystemClock), Duration::from_secs(86_400));
    let template = CsrTemplate::new("idle")
        .with_dns_name("idle.example.com")
        .with_ip_address("10.0.0.1".parse().expect("ip"));
    let now = std::time::SystemTime::now();
    let make = |dynamic: bool| {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
        let cert = api
            .ca()
            .issue(
                &template,
                &key,
                &[KeyUsage::ServerAuth],
                now,
                now + Duration::from_secs(86_400),
            )
            .expect("cert");
        let t = template.clone();
        let mut b = Config::builder()
            .usages([KeyUsage::DigitalSignature, KeyUsage::ServerAuth])
            .signer_name("kubernetes.io/kubelet-serving")
            .store(Arc::new(MemoryStore::with_certificate(cert)) as Arc<dyn Store>)
            .client_factory(api.factory());
        b = if dynamic {
            b.template_fn(move || Some(t.clone()))
        } else {
            b.template(t)
        };
        let m = CertificateManager::new(b.build().expect("config")).expect("manager");
        m.start();
        let _ = m.current(); // warm the reader cache, as a serving program would
        m
    };
    // Warm up allocator arenas and lazy statics with one manager, then measure.
    drop(make(false));
    for dynamic in [false, true] {
        let (rss0, t0) = (rss_kib(), threads());
        let managers: Vec<_> = (0..n).map(|_| make(dynamic)).collect();
        std::thread::sleep(Duration::from_millis(300)); // let every thread reach its sleep
        let (rss1, t1) = (rss_kib(), threads());
        let kind = if dynamic {
            "dynamic template"
        } else {
            "static template"
        };
        println!(
            "{n} idle managers, {kind}: {} threads each, RSS +{} KiB total, {:.1} KiB per manager",
            (t1 - t0) as f64 / n as f64,
            rss1.saturating_sub(rss0),
            rss1.saturating_sub(rss0) as f64 / n as f64
        );
        for m in &managers {
            m.stop();
        }
    }
}
