//! `FileStore::update` latency on disk (a directory under the target directory) and on tmpfs
//! (`/dev/shm`), and the cost of the `fsync` calls an update makes, timed alone in the same
//! setting: one `fsync` of a freshly written pair file and two of the directory, each after the
//! same kind of change (rename, symlink swap) that `update` makes before it.
//!
//! `cargo bench --bench store`; the fsync share is `fsync_only / update` per file system.

use std::fs::{self, File};
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use certrotate::{FileStore, Store};
use criterion::{Criterion, criterion_group, criterion_main};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (label, fresh empty directory) per file system to measure.
fn places() -> Vec<(&'static str, PathBuf)> {
    // The bench binary lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.ancestors().nth(2).unwrap().to_path_buf();
    let mut out = vec![("disk", profile_dir.join("store-bench"))];
    if Path::new("/dev/shm").is_dir() {
        out.push(("tmpfs", PathBuf::from("/dev/shm/certrotate-store-bench")));
    }
    for (_, dir) in &out {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).unwrap();
    }
    out
}

fn bench(c: &mut Criterion) {
    // A kubelet-like pair: ECDSA P-256, SEC1 key.
    let pem = fixture("ec-key-then-cert.pem");
    let mut group = c.benchmark_group("store");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));
    let places = places();
    for (label, root) in &places {
        let dir = root.join("update");
        let store = FileStore::builder("kubelet-client", &dir, &dir)
            .build()
            .unwrap();
        group.bench_function(format!("update/{label}"), |b| {
            b.iter(|| black_box(store.update(&pem, &pem).unwrap()))
        });

        let dir = root.join("fsync");
        fs::create_dir_all(&dir).unwrap();
        let mut n = 0u64;
        group.bench_function(format!("fsync_only/{label}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    spent += fsyncs_of_one_update(&dir, &pem, n);
                    n += 1;
                }
                spent
            })
        });
    }
    group.finish();
    for (_, root) in places {
        let _ = fs::remove_dir_all(root);
    }
}

/// The file-system steps of one update, timing only the three `fsync`s.
fn fsyncs_of_one_update(dir: &Path, pem: &[u8], n: u64) -> Duration {
    let tmp = dir.join(".pair.tmp");
    let pair = dir.join(format!("pair-{n}.pem"));
    let link = dir.join("current.pem");
    let updated = dir.join("updated.pem");
    let mut f = File::create(&tmp).unwrap();
    f.write_all(pem).unwrap();
    let t = Instant::now();
    f.sync_all().unwrap();
    let mut spent = t.elapsed();
    fs::rename(&tmp, &pair).unwrap();
    spent += time_dir_fsync(dir);
    symlink(&pair, &updated).unwrap();
    fs::rename(&updated, &link).unwrap();
    spent += time_dir_fsync(dir);
    // Keep the directory small, as pruning does.
    if n >= 5 {
        let _ = fs::remove_file(dir.join(format!("pair-{}.pem", n - 5)));
    }
    spent
}

fn time_dir_fsync(dir: &Path) -> Duration {
    let d = File::open(dir).unwrap();
    let t = Instant::now();
    d.sync_all().unwrap();
    t.elapsed()
}

criterion_group!(benches, bench);
criterion_main!(benches);
