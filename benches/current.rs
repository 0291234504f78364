//! Cost of `Manager::current()`, the call every TLS handshake and every outgoing request makes.
//!
//! Baseline in the same run: `Arc::clone` plus a precise `SystemTime::now()`, which is what a
//! mutex-free version of client-go's `Current()` would still pay (client-go also takes a mutex).
//! The contended case runs two reader threads while a third rotates the certificate as fast as
//! once per millisecond; the figure is wall time per call per reader.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use certrotate::clock::SystemClock;
use certrotate::testing::FakeCsrApi;
use certrotate::{CertificateManager, Config, CsrTemplate, KeyUsage, Manager};
use criterion::{Criterion, criterion_group, criterion_main};

fn manager() -> (Arc<CertificateManager>, Arc<FakeCsrApi>) {
    let api = FakeCsrApi::new(Arc::new(SystemClock), Duration::from_secs(24 * 3600));
    let m = CertificateManager::new(
        Config::builder()
            .template(CsrTemplate::new("bench"))
            .usages([KeyUsage::DigitalSignature, KeyUsage::ServerAuth])
            .signer_name("kubernetes.io/kubelet-serving")
            .client_factory(api.factory())
            .build()
            .expect("config"),
    )
    .expect("manager");
    m.rotate_now().expect("first certificate");
    (Arc::new(m), api)
}

/// Runs `f` on `readers` threads, `iters` times each, while `writer` (if any) runs; returns the
/// wall time of the slowest reader.
fn contended(
    readers: usize,
    iters: u64,
    f: impl Fn() + Send + Sync + 'static,
    writer: Option<Arc<dyn Fn() + Send + Sync>>,
) -> Duration {
    let f = Arc::new(f);
    let done = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(readers + 1));
    let w = writer.map(|w| {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                w();
                if let Some(rest) = Duration::from_millis(1).checked_sub(t.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
        })
    });
    let handles: Vec<_> = (0..readers)
        .map(|_| {
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let t = Instant::now();
                for _ in 0..iters {
                    f();
                }
                t.elapsed()
            })
        })
        .collect();
    barrier.wait();
    let slowest = handles
        .into_iter()
        .map(|h| h.join().expect("reader"))
        .max()
        .unwrap_or_default();
    done.store(true, Ordering::Relaxed);
    if let Some(w) = w {
        w.join().expect("writer");
    }
    slowest
}

fn bench(c: &mut Criterion) {
    let (m, _api) = manager();
    let cert = m.current().expect("cert");
    let mut g = c.benchmark_group("current");

    let shared = cert.clone();
    g.bench_function("baseline_arc_clone_plus_system_time_now", |b| {
        b.iter(|| {
            let c = black_box(&shared).clone();
            black_box(SystemTime::now());
            c
        })
    });
    let m1 = m.clone();
    g.bench_function("current_1_thread", |b| b.iter(|| black_box(&m1).current()));

    let base = shared.clone();
    g.bench_function("baseline_2_readers", |b| {
        b.iter_custom(|iters| {
            let s = base.clone();
            contended(
                2,
                iters,
                move || {
                    black_box(black_box(&s).clone());
                    black_box(SystemTime::now());
                },
                None,
            )
        })
    });
    let m2 = m.clone();
    g.bench_function("current_2_readers", |b| {
        b.iter_custom(|iters| {
            let m = m2.clone();
            contended(
                2,
                iters,
                move || {
                    black_box(black_box(&m).current());
                },
                None,
            )
        })
    });
    let m3 = m.clone();
    g.bench_function("current_2_readers_while_rotating_every_ms", |b| {
        b.iter_custom(|iters| {
            let m = m3.clone();
            let w = m3.clone();
            let writer: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                let _ = w.rotate_now();
            });
            contended(
                2,
                iters,
                move || {
                    black_box(black_box(&m).current());
                },
                Some(writer),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
