//! Thread accounting for the manager's lifecycle. One test per binary on purpose: it counts the
//! process's threads, which other tests running in parallel would disturb.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use certrotate::testing::{FakeClock, FakeCsrApi};
use certrotate::{
    CertificateManager, Config, CsrTemplate, KeyAlgorithm, KeyUsage, Manager, MemoryStore,
    PrivateKey, Store,
};

const BOUND: Duration = Duration::from_secs(10);

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits (bounded) until the thread count is `n`; thread exit is asynchronous to `join`.
fn settle(n: usize) -> usize {
    let end = std::time::Instant::now() + BOUND;
    loop {
        let now = threads();
        if now == n || std::time::Instant::now() > end {
            return now;
        }
        std::thread::yield_now();
    }
}

#[test]
fn threads_per_manager_start_stop_cycles_and_many_rotations_leak_nothing() {
    let start = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let clock = FakeClock::new(start);
    let api = FakeCsrApi::new(Arc::new(clock.clone()), Duration::from_secs(100));
    let template = CsrTemplate::new("svc");
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let cert = api
        .ca()
        .issue(
            &template,
            &key,
            &[KeyUsage::ServerAuth],
            start,
            start + Duration::from_secs(100),
        )
        .unwrap();
    let store = Arc::new(MemoryStore::with_certificate(cert));
    let builder = || {
        Config::builder()
            .usages([KeyUsage::DigitalSignature, KeyUsage::ServerAuth])
            .signer_name("kubernetes.io/kubelet-serving")
            .store(store.clone() as Arc<dyn Store>)
            .clock(Arc::new(clock.clone()))
            .client_factory(api.factory())
    };
    let baseline = threads();
    assert!(baseline > 0, "/proc/self/task is readable");

    // Static template: one thread; dynamic: two.
    let m = CertificateManager::new(builder().template(template.clone()).build().unwrap()).unwrap();
    m.start();
    assert!(clock.wait_for_waiters(1, BOUND));
    assert_eq!(threads(), baseline + 1, "static template");
    m.stop();
    let t = template.clone();
    let m = CertificateManager::new(
        builder()
            .template_fn(move || Some(t.clone()))
            .build()
            .unwrap(),
    )
    .unwrap();
    m.start();
    assert!(clock.wait_for_waiters(2, BOUND));
    assert_eq!(threads(), baseline + 2, "dynamic template");
    m.stop();
    assert_eq!(settle(baseline), baseline);

    // 1,000 start/stop cycles.
    let m = CertificateManager::new(builder().template(template.clone()).build().unwrap()).unwrap();
    for _ in 0..1000 {
        m.start();
        m.stop();
    }
    assert_eq!(settle(baseline), baseline, "after 1,000 start/stop cycles");

    // 1,000 rotations (issued lifetime 100 s, so each deadline is 70–90 s away).
    let m = CertificateManager::new(
        builder()
            .template(template.clone())
            .max_sleep_slice(Duration::from_secs(3600))
            .build()
            .unwrap(),
    )
    .unwrap();
    let rotations = m.subscribe();
    m.start();
    for i in 0..1000 {
        assert!(clock.wait_for_waiters(1, BOUND));
        clock.advance_to_next_timer();
        rotations
            .recv_timeout(BOUND)
            .unwrap_or_else(|_| panic!("rotation {i}"));
        let now = threads();
        // The rotation thread, plus at most a wait-timeout watchdog on its way out.
        assert!(
            now <= baseline + 2,
            "rotation {i}: {now} threads, baseline {baseline}"
        );
    }
    m.stop();
    assert_eq!(settle(baseline), baseline, "after 1,000 rotations");
}
