//! `FileStore` through the public API: client-go's `certificate_store_test.go` scenarios (the
//! `updateSymlink` ones are unit tests in src/store/file.rs), the broken layouts of CASES C6/C7,
//! lookup order (C3), permissions (C8), same-second updates and pruning. Tests that need their
//! own process (SIGKILL crashes, umask 000, a relative directory) are in store_processes.rs.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certrotate::pki::PkiError;
use certrotate::testing::FakeClock;
use certrotate::{Certificate, FileStore, Store, StoreError};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (cert PEM, key PEM) of a fixture pair.
fn pair(name: &str) -> (Vec<u8>, Vec<u8>) {
    (
        fixture(&format!("{name}.crt")),
        fixture(&format!("{name}.key")),
    )
}

/// A combined pair file as client-go's tests write it: cert, newline, key.
fn combined(name: &str) -> Vec<u8> {
    let (mut c, k) = pair(name);
    c.push(b'\n');
    c.extend_from_slice(&k);
    c
}

fn loaded(name: &str) -> Certificate {
    let (c, k) = pair(name);
    Certificate::from_pem(&c, &k).unwrap()
}

/// 2026-11-30T07:36:00Z.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_024_160)
}

fn clock() -> FakeClock {
    FakeClock::new(t0())
}

fn store(dir: &Path, clock: &FakeClock) -> FileStore {
    FileStore::builder("kubelet", dir, dir)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn timestamped(dir: &Path) -> BTreeSet<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with("kubelet-2") && n.ends_with(".pem"))
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).unwrap().file_type().is_symlink()
}

fn same_key(a: &Certificate, b: &Certificate) -> bool {
    a.private_key().pkcs8_der() == b.private_key().pkcs8_der()
}

// ---- log capture: records of the current thread (the store logs from the caller's thread) ----

struct Capture;
static CAPTURE: Capture = Capture;
thread_local! {
    static LOGS: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LOGS.with(|l| {
            l.borrow_mut()
                .push((record.level(), record.args().to_string()))
        });
    }
    fn flush(&self) {}
}

/// Starts capturing this thread's log records (and drops earlier ones).
fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&CAPTURE).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
    LOGS.with(|l| l.borrow_mut().clear());
}

fn take_logs() -> Vec<(log::Level, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

// ---- client-go certificate_store_test.go ----

// TestLoadFile: a combined pair file loads with the leaf set, whichever block comes first.
#[test]
fn load_file() {
    let cases: &[(&str, Vec<u8>, &str)] = &[
        ("cert and key", combined("store"), "test-certificate-0"),
        ("key and cert", fixture("ec-key-then-cert.pem"), "ec-node"),
    ];
    for (case, bytes, cn) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kubelet-pair.pem");
        fs::write(&file, bytes).unwrap();
        symlink(&file, dir.path().join("kubelet-current.pem")).unwrap();
        let got = store(dir.path(), &clock()).current().unwrap();
        let got = got.unwrap_or_else(|| panic!("{case}: no certificate"));
        assert_eq!(got.common_name(), *cn, "{case}");
        assert_eq!(got.chain().len(), 1, "{case}");
    }
}

/// TestUpdateNoRotation and TestUpdateRotation are the same test upstream: a store built over
/// kubelet.crt/.key accepts `Update(storeCert)` and returns the certificate.
fn update_over_explicit_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair("store");
    let (cert_file, key_file) = (
        dir.path().join("kubelet.crt"),
        dir.path().join("kubelet.key"),
    );
    fs::write(&cert_file, &cert).unwrap();
    fs::write(&key_file, &key).unwrap();
    let s = FileStore::builder("kubelet-server", dir.path(), dir.path())
        .cert_and_key_files(&cert_file, &key_file)
        .clock(Arc::new(clock()))
        .build()
        .unwrap();
    let got = s.update(&cert, &key).unwrap();
    assert_eq!(got, loaded("store"));
    assert_eq!(s.current().unwrap(), Some(got));
    assert!(is_symlink(&dir.path().join("kubelet-server-current.pem")));
    assert_eq!(
        fs::read(&cert_file).unwrap(),
        cert,
        "explicit files are never written"
    );
}

#[test]
fn update_no_rotation() {
    update_over_explicit_files();
}

#[test]
fn update_rotation() {
    update_over_explicit_files();
}

// TestUpdateTwoCerts: a chain is stored and loaded whole; the store ignores expiry (the leaf
// expired in 2021).
#[test]
fn update_two_certs() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), &clock());
    let (cert, key) = pair("two-certs");
    let got = s.update(&cert, &key).unwrap();
    assert_eq!(got.chain().len(), 2);
    assert_eq!(got.common_name(), "www.example.com");
    let again = s.current().unwrap().unwrap();
    assert_eq!(again.chain().len(), 2);
    assert_eq!(again, got);
}

// TestUpdateWithBadCertKeyData: `[0, 0]` as the cert is refused, and (stricter than
// client-go, which leaves an empty file behind) nothing on disk changes.
#[test]
fn update_with_bad_cert_key_data() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair("store");
    fs::write(dir.path().join("kubelet.crt"), &cert).unwrap();
    fs::write(dir.path().join("kubelet.key"), &key).unwrap();
    let s = FileStore::builder("kubelet-server", dir.path(), dir.path())
        .build()
        .unwrap();
    let before = names(dir.path());
    let err = s.update(&[0, 0], &key).unwrap_err();
    assert!(matches!(err, StoreError::InvalidPair(_)), "{err}");
    assert_eq!(names(dir.path()), before);
    assert_eq!(s.current().unwrap(), None, "no kubelet-server.crt, no pair");
}

// TestCurrentPairFile: `kubelet-server-current.pem` links to a pair file; no explicit files.
#[test]
fn current_pair_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kubelet-server-pair.pem");
    fs::write(&file, combined("store")).unwrap();
    symlink(&file, dir.path().join("kubelet-server-current.pem")).unwrap();
    let s = FileStore::builder("kubelet-server", dir.path(), dir.path())
        .cert_and_key_files("", "")
        .build()
        .unwrap();
    let got = s.current().unwrap().unwrap();
    assert_eq!(got.common_name(), "test-certificate-0");
    assert_eq!(got, loaded("store"));
}

// TestCurrentCertKeyFiles: explicit cert and key files load.
#[test]
fn current_cert_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair("store");
    let (cf, kf) = (
        dir.path().join("kubelet.crt"),
        dir.path().join("kubelet.key"),
    );
    fs::write(&cf, cert).unwrap();
    fs::write(&kf, key).unwrap();
    let s = FileStore::builder("kubelet-server", dir.path(), dir.path())
        .cert_and_key_files(&cf, &kf)
        .build()
        .unwrap();
    let got = s.current().unwrap().unwrap();
    assert_eq!(got, loaded("store"));
    assert!(same_key(&got, &loaded("store")));
}

/// Explicit files are used only when both paths are given (client-go: `certFile != "" &&
/// keyFile != ""`): with one path empty they are ignored, and the store falls back to its
/// legacy names.
#[test]
fn explicit_files_with_one_empty_path_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair("store");
    let (cf, kf) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    fs::write(&cf, &cert).unwrap();
    fs::write(&kf, &key).unwrap();
    let (legacy_cert, legacy_key) = pair("bootstrap");
    fs::write(dir.path().join("kubelet.crt"), legacy_cert).unwrap();
    fs::write(dir.path().join("kubelet.key"), legacy_key).unwrap();
    for (c, k) in [(cf.as_path(), Path::new("")), (Path::new(""), kf.as_path())] {
        let s = FileStore::builder("kubelet", dir.path(), dir.path())
            .cert_and_key_files(c, k)
            .build()
            .unwrap();
        let got = s.current().unwrap().expect("the legacy pair");
        assert!(
            same_key(&got, &loaded("bootstrap")),
            "({}, {}): not the legacy pair",
            c.display(),
            k.display()
        );
    }
}

// TestCurrentTwoCerts: explicit files holding a chain load with the whole chain.
#[test]
fn current_two_certs() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair("two-certs");
    let (cf, kf) = (
        dir.path().join("kubelet.crt"),
        dir.path().join("kubelet.key"),
    );
    fs::write(&cf, cert).unwrap();
    fs::write(&kf, key).unwrap();
    let s = FileStore::builder("kubelet-server", dir.path(), dir.path())
        .cert_and_key_files(&cf, &kf)
        .build()
        .unwrap();
    assert_eq!(s.current().unwrap().unwrap().chain().len(), 2);
}

// TestCurrentNoFiles: an empty directory is "no cert" (client-go's NoCertKeyError), not an error.
#[test]
fn current_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStore::builder("kubelet-server", dir.path(), dir.path())
        .build()
        .unwrap();
    assert_eq!(s.current().unwrap(), None);
    // A missing directory is the same.
    let s = FileStore::builder("kubelet", dir.path().join("nope"), dir.path().join("nope"))
        .build()
        .unwrap();
    assert_eq!(s.current().unwrap(), None);
}

// ---- layout ----

#[test]
fn update_writes_utc_timestamped_pair_and_absolute_link() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), &clock());
    let (cert, key) = pair("store");
    let got = s.update(&cert, &key).unwrap();
    let file = dir.path().join("kubelet-2026-11-30-07-36-00.pem");
    let current = dir.path().join("kubelet-current.pem");
    assert_eq!(s.current_path(), current);
    assert!(is_symlink(&current));
    let target = fs::read_link(&current).unwrap();
    assert!(target.is_absolute(), "{}", target.display());
    assert_eq!(target, file);
    assert_eq!(mode(&file), 0o600);
    // The chain, then the key block under its own label (this fixture's PKCS#8 body sits
    // under "RSA PRIVATE KEY", as client-go's test data does).
    let text = String::from_utf8(fs::read(&file).unwrap()).unwrap();
    let cert_at = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let key_at = text.find("-----BEGIN RSA PRIVATE KEY-----").unwrap();
    assert!(cert_at < key_at);
    assert_eq!(text.matches("-----BEGIN").count(), 2);
    assert_eq!(Certificate::from_pair_pem(text.as_bytes()).unwrap(), got);
    assert_eq!(names(dir.path()).len(), 2, "{:?}", names(dir.path()));
}

#[test]
fn update_keeps_sec1_key_label() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), &clock());
    let pem = fixture("ec-key-then-cert.pem");
    s.update(&pem, &pem).unwrap();
    let text = fs::read_to_string(dir.path().join("kubelet-2026-11-30-07-36-00.pem")).unwrap();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
    assert!(text.contains("-----BEGIN EC PRIVATE KEY-----"));
}

// Two (and three) updates in one second get distinct names; an earlier file is never
// rewritten, also when the clock steps back onto a used second.
#[test]
fn two_updates_in_one_second_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let s = FileStore::builder("kubelet", dir.path(), dir.path())
        .clock(Arc::new(clock.clone()))
        .retention(0)
        .build()
        .unwrap();
    let (c1, k1) = pair("store");
    let (c2, k2) = pair("bootstrap");
    s.update(&c1, &k1).unwrap();
    let first = dir.path().join("kubelet-2026-11-30-07-36-00.pem");
    let first_bytes = fs::read(&first).unwrap();
    let b = s.update(&c2, &k2).unwrap();
    let second = dir.path().join("kubelet-2026-11-30-07-36-00.1.pem");
    assert_eq!(fs::read_link(s.current_path()).unwrap(), second);
    assert_eq!(s.current().unwrap(), Some(b));
    assert_eq!(fs::read(&first).unwrap(), first_bytes);

    s.update(&c1, &k1).unwrap();
    let third = dir.path().join("kubelet-2026-11-30-07-36-00.2.pem");
    assert_eq!(fs::read_link(s.current_path()).unwrap(), third);

    clock.advance(Duration::from_secs(1));
    s.update(&c2, &k2).unwrap();
    clock.set(t0());
    s.update(&c2, &k2).unwrap();
    assert_eq!(
        fs::read_link(s.current_path()).unwrap(),
        dir.path().join("kubelet-2026-11-30-07-36-00.3.pem")
    );
    assert_eq!(fs::read(&first).unwrap(), first_bytes);
    assert_eq!(
        timestamped(dir.path()),
        [
            "kubelet-2026-11-30-07-36-00.pem",
            "kubelet-2026-11-30-07-36-00.1.pem",
            "kubelet-2026-11-30-07-36-00.2.pem",
            "kubelet-2026-11-30-07-36-00.3.pem",
            "kubelet-2026-11-30-07-36-01.pem",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
}

#[test]
fn invalid_pairs_are_refused_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let s = store(&certs, &clock());
    let (store_cert, store_key) = pair("store");
    let (_, boot_key) = pair("bootstrap");
    let cases: &[(&str, &[u8], &[u8])] = &[
        ("key of another cert", &store_cert, &boot_key),
        ("no key", &store_cert, &store_cert),
        ("no cert", &store_key, &store_key),
        ("empty", b"", b""),
    ];
    for (case, cert, key) in cases {
        let err = s.update(cert, key).unwrap_err();
        assert!(matches!(err, StoreError::InvalidPair(_)), "{case}: {err}");
        assert!(!err.is_transient(), "{case}");
        assert!(!certs.exists(), "{case}: the directory was created");
    }
    let err = s.update(&store_cert, &boot_key).unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidPair(PkiError::KeyMismatch)),
        "{err}"
    );

    // With a pair in place, a refused update leaves it current and adds no file.
    s.update(&store_cert, &store_key).unwrap();
    let before = names(&certs);
    s.update(&store_cert, &boot_key).unwrap_err();
    assert_eq!(names(&certs), before);
    assert_eq!(s.current().unwrap(), Some(loaded("store")));
}

// ---- lookup order (C3: never prefer a stale pair over the current one) ----

#[test]
fn c3_lookup_order_current_then_explicit_then_legacy() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, keys, extra) = (
        dir.path().join("certs"),
        dir.path().join("keys"),
        dir.path().join("explicit"),
    );
    for d in [&certs, &keys, &extra] {
        fs::create_dir(d).unwrap();
    }
    // current → a valid pair; explicit → an expired pair; legacy → a third pair.
    let pair_file = certs.join("kubelet-2026-11-30-07-36-00.pem");
    fs::write(&pair_file, combined("bootstrap")).unwrap();
    symlink(&pair_file, certs.join("kubelet-current.pem")).unwrap();
    let (ec, ek) = pair("expired");
    fs::write(extra.join("tls.crt"), ec).unwrap();
    fs::write(extra.join("tls.key"), ek).unwrap();
    let (lc, lk) = pair("apiserver");
    fs::write(certs.join("kubelet.crt"), lc).unwrap();
    fs::write(keys.join("kubelet.key"), lk).unwrap();

    let s = FileStore::builder("kubelet", &certs, &keys)
        .cert_and_key_files(extra.join("tls.crt"), extra.join("tls.key"))
        .build()
        .unwrap();
    assert_eq!(s.current().unwrap(), Some(loaded("bootstrap")));

    fs::remove_file(certs.join("kubelet-current.pem")).unwrap();
    let got = s.current().unwrap().unwrap();
    assert_eq!(got, loaded("expired"), "the store itself ignores expiry");
    assert!(got.is_expired_at(t0()));

    // Only one explicit file present: skipped, as client-go.
    fs::remove_file(extra.join("tls.key")).unwrap();
    assert_eq!(s.current().unwrap(), Some(loaded("apiserver")));

    fs::remove_file(keys.join("kubelet.key")).unwrap();
    assert_eq!(s.current().unwrap(), None);
}

// ---- broken states (C6, C7) ----

#[test]
fn c6a_regular_file_current_is_loaded_then_backed_up_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("kubelet-current.pem");
    let copied = combined("store");
    fs::write(&current, &copied).unwrap();
    fs::set_permissions(&current, fs::Permissions::from_mode(0o644)).unwrap();
    let s = store(dir.path(), &clock());

    capture_logs();
    assert_eq!(s.current().unwrap(), Some(loaded("store")));
    let logs = take_logs();
    assert!(
        logs.iter()
            .any(|(l, m)| *l == log::Level::Warn && m.contains("regular file")),
        "{logs:?}"
    );

    let (c, k) = pair("bootstrap");
    capture_logs();
    s.update(&c, &k).unwrap();
    let logs = take_logs();
    let backup = dir.path().join("kubelet-backup-2026-11-30-07-36-00.pem");
    assert_eq!(fs::read(&backup).unwrap(), copied);
    assert_eq!(mode(&backup), 0o600);
    assert!(
        logs.iter()
            .any(|(l, m)| *l == log::Level::Warn && m.contains(&backup.display().to_string())),
        "{logs:?}"
    );
    assert!(is_symlink(&current));
    assert_eq!(
        fs::read_link(&current).unwrap(),
        dir.path().join("kubelet-2026-11-30-07-36-00.pem")
    );
    assert_eq!(s.current().unwrap(), Some(loaded("bootstrap")));
}

#[test]
fn c6b_dangling_current_is_no_cert_and_update_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("kubelet-current.pem");
    symlink(dir.path().join("kubelet-gone.pem"), &current).unwrap();
    let s = store(dir.path(), &clock());
    assert_eq!(s.current().unwrap(), None);
    let (c, k) = pair("store");
    s.update(&c, &k).unwrap();
    assert_eq!(
        fs::read_link(&current).unwrap(),
        dir.path().join("kubelet-2026-11-30-07-36-00.pem")
    );
    assert_eq!(s.current().unwrap(), Some(loaded("store")));
}

// A dangling `current` counts as absent, so the lookup goes on to the explicit files (client-go's
// `os.Stat` check does the same).
#[test]
fn c6b_dangling_current_falls_through_to_explicit_files() {
    let dir = tempfile::tempdir().unwrap();
    symlink(
        dir.path().join("kubelet-gone.pem"),
        dir.path().join("kubelet-current.pem"),
    )
    .unwrap();
    let (c, k) = pair("bootstrap");
    fs::write(dir.path().join("a.crt"), c).unwrap();
    fs::write(dir.path().join("a.key"), k).unwrap();
    let s = FileStore::builder("kubelet", dir.path(), dir.path())
        .cert_and_key_files(dir.path().join("a.crt"), dir.path().join("a.key"))
        .build()
        .unwrap();
    assert_eq!(s.current().unwrap(), Some(loaded("bootstrap")));
}

#[test]
fn c6c_leftover_updated_link_is_promoted() {
    for current_state in ["missing", "dangling"] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kubelet-2026-11-30-07-36-00.pem");
        fs::write(&file, combined("store")).unwrap();
        let updated = dir.path().join("kubelet-updated.pem");
        let current = dir.path().join("kubelet-current.pem");
        symlink(&file, &updated).unwrap();
        if current_state == "dangling" {
            symlink(dir.path().join("kubelet-gone.pem"), &current).unwrap();
        }
        let s = store(dir.path(), &clock());
        assert!(fs::symlink_metadata(&updated).is_err(), "{current_state}");
        assert_eq!(fs::read_link(&current).unwrap(), file, "{current_state}");
        assert_eq!(
            s.current().unwrap(),
            Some(loaded("store")),
            "{current_state}"
        );
    }
}

// A crash between creating `-updated.pem` and the rename leaves both links: `current` (the old
// pair) wins, and the next update replaces the stale link.
#[test]
fn leftover_updated_link_beside_current_is_ignored_then_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("kubelet-2026-11-30-07-00-00.pem");
    let new = dir.path().join("kubelet-2026-11-30-07-30-00.pem");
    fs::write(&old, combined("store")).unwrap();
    fs::write(&new, combined("bootstrap")).unwrap();
    symlink(&old, dir.path().join("kubelet-current.pem")).unwrap();
    let updated = dir.path().join("kubelet-updated.pem");
    symlink(&new, &updated).unwrap();
    let s = store(dir.path(), &clock());
    assert_eq!(s.current().unwrap(), Some(loaded("store")));
    assert!(is_symlink(&updated));
    let (c, k) = pair("apiserver");
    s.update(&c, &k).unwrap();
    assert!(fs::symlink_metadata(&updated).is_err());
    assert_eq!(s.current().unwrap(), Some(loaded("apiserver")));
}

#[test]
fn c6d_updated_regular_file_fails_construction() {
    for with_current in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let updated = dir.path().join("kubelet-updated.pem");
        fs::write(&updated, combined("store")).unwrap();
        if with_current {
            let file = dir.path().join("kubelet-2026-11-30-07-00-00.pem");
            fs::write(&file, combined("store")).unwrap();
            symlink(&file, dir.path().join("kubelet-current.pem")).unwrap();
        }
        let err = FileStore::builder("kubelet", dir.path(), dir.path())
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::BadState { path, .. } if *path == updated),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains(&updated.display().to_string()), "{text}");
        assert!(text.contains("symlink"), "{text}");
        assert_eq!(fs::read(&updated).unwrap(), combined("store"), "left alone");
    }
}

#[test]
fn c7_empty_or_corrupt_current_target_is_corrupt_not_absent() {
    let (sc, sk) = pair("store");
    let (_, bk) = pair("bootstrap");
    let half = &combined("store")[..300];
    let cases: &[(&str, Vec<u8>)] = &[
        ("empty", Vec::new()),
        ("whitespace", b"\n \n".to_vec()),
        ("garbage", b"not a pem file".to_vec()),
        ("cert without key", sc.clone()),
        ("key without cert", sk.clone()),
        ("key of another cert", [sc.clone(), bk.clone()].concat()),
        ("cut off mid-write", half.to_vec()),
    ];
    for (case, bytes) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kubelet-2026-11-30-07-00-00.pem");
        fs::write(&file, bytes).unwrap();
        symlink(&file, dir.path().join("kubelet-current.pem")).unwrap();
        // A valid legacy pair beside it must not be silently used instead.
        fs::write(dir.path().join("kubelet.crt"), &sc).unwrap();
        fs::write(dir.path().join("kubelet.key"), &sk).unwrap();
        let s = store(dir.path(), &clock());
        let err = s.current().unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { path, .. } if *path == file),
            "{case}: {err}"
        );
        assert!(!err.is_transient(), "{case}");
        assert!(err.to_string().contains("corrupt"), "{case}: {err}");
        assert_eq!(
            &fs::read(&file).unwrap(),
            bytes,
            "{case}: the bad file stays"
        );
    }
}

#[test]
fn c7_corrupt_explicit_files_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (sc, _) = pair("store");
    let (_, bk) = pair("bootstrap");
    let (cf, kf) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    fs::write(&cf, &sc).unwrap();
    fs::write(&kf, &bk).unwrap();
    let s = FileStore::builder("kubelet", dir.path(), dir.path())
        .cert_and_key_files(&cf, &kf)
        .build()
        .unwrap();
    let err = s.current().unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { path, .. } if *path == cf),
        "{err}"
    );
    assert!(err.to_string().contains("tls.key"), "{err}");
    fs::write(&kf, b"").unwrap();
    let err = s.current().unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn c7_update_over_corrupt_current_keeps_the_bad_file_until_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let s = FileStore::builder("kubelet", dir.path(), dir.path())
        .clock(Arc::new(clock.clone()))
        .retention(2)
        .build()
        .unwrap();
    let bad = dir.path().join("kubelet-2026-11-30-07-00-00.pem");
    fs::write(&bad, b"").unwrap();
    symlink(&bad, s.current_path()).unwrap();
    let (c, k) = pair("store");
    s.update(&c, &k).unwrap();
    assert!(bad.exists(), "kept for inspection");
    assert_eq!(s.current().unwrap(), Some(loaded("store")));
    clock.advance(Duration::from_secs(1));
    s.update(&c, &k).unwrap();
    assert!(!bad.exists(), "pruned once two newer pairs exist");
}

// ---- permissions (C8) ----

#[test]
fn c8_pair_files_0600_created_dirs_0755_existing_dirs_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b");
    let s = store(&nested, &clock());
    let (c, k) = pair("store");
    s.update(&c, &k).unwrap();
    assert_eq!(mode(&dir.path().join("a")), 0o755);
    assert_eq!(mode(&nested), 0o755);
    assert_eq!(mode(&nested.join("kubelet-2026-11-30-07-36-00.pem")), 0o600);

    let private = dir.path().join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    store(&private, &clock()).update(&c, &k).unwrap();
    assert_eq!(
        mode(&private),
        0o700,
        "an existing directory keeps its mode"
    );
}

// ---- retention ----

#[test]
fn retention_keeps_newest_n_and_touches_only_our_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let unrelated = [
        "kubelet-client-2020-01-01-00-00-00.pem",
        "kubelet-backup-2020-01-01-00-00-00.pem",
        "kubelet-2020-01-01-00-00-00.pem.bak",
        "kubelet-2020-01-01-00-00.pem",
        "kubelet.crt",
        "notes.txt",
        ".kubelet-client-a1B2c3.pem.tmp",
    ];
    for name in unrelated {
        fs::write(d.join(name), b"x").unwrap();
    }
    fs::write(d.join(".kubelet-Zz9Yy8.pem.tmp"), b"left by a crash").unwrap();
    fs::write(d.join("kubelet-2019-05-05-00-00-00.pem"), b"old").unwrap();
    let clock = clock();
    let s = FileStore::builder("kubelet", d, d)
        .clock(Arc::new(clock.clone()))
        .retention(3)
        .build()
        .unwrap();
    let (c, k) = pair("store");
    for _ in 0..6 {
        s.update(&c, &k).unwrap();
        clock.advance(Duration::from_secs(1));
    }
    let want: BTreeSet<String> = [
        "kubelet-2026-11-30-07-36-03.pem",
        "kubelet-2026-11-30-07-36-04.pem",
        "kubelet-2026-11-30-07-36-05.pem",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(
        fs::read_link(s.current_path()).unwrap(),
        d.join("kubelet-2026-11-30-07-36-05.pem")
    );
    // Exactly: the unrelated files, the three newest pairs and the link. The leftover temp file
    // and the 2019 pair are gone.
    let mut expected: BTreeSet<String> = unrelated.into_iter().map(String::from).collect();
    expected.extend(want);
    expected.insert("kubelet-current.pem".into());
    assert_eq!(names(d), expected);
}

// The live pair is kept even when N newer-named pairs exist (a clock that was ahead): N + 1.
#[test]
fn retention_keeps_live_pair_beyond_n() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in [
        "kubelet-2030-01-01-00-00-00.pem",
        "kubelet-2031-01-01-00-00-00.pem",
        "kubelet-2020-01-01-00-00-00.pem",
    ] {
        fs::write(d.join(name), combined("bootstrap")).unwrap();
    }
    let s = FileStore::builder("kubelet", d, d)
        .clock(Arc::new(clock()))
        .retention(2)
        .build()
        .unwrap();
    let (c, k) = pair("store");
    s.update(&c, &k).unwrap();
    let want: BTreeSet<String> = [
        "kubelet-2026-11-30-07-36-00.pem",
        "kubelet-2030-01-01-00-00-00.pem",
        "kubelet-2031-01-01-00-00-00.pem",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(timestamped(d), want);
    assert_eq!(s.current().unwrap(), Some(loaded("store")));
}

#[test]
fn retention_default_is_five_and_zero_keeps_all() {
    for (retention, updates, kept) in [(None, 8, 5), (Some(0), 7, 7), (Some(1), 3, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let mut b =
            FileStore::builder("kubelet", dir.path(), dir.path()).clock(Arc::new(clock.clone()));
        if let Some(n) = retention {
            b = b.retention(n);
        }
        let s = b.build().unwrap();
        let (c, k) = pair("store");
        for _ in 0..updates {
            s.update(&c, &k).unwrap();
            clock.advance(Duration::from_secs(60));
        }
        assert_eq!(timestamped(dir.path()).len(), kept, "{retention:?}");
        assert_eq!(s.current().unwrap(), Some(loaded("store")));
    }
}

// ---- hygiene ----

#[test]
fn no_key_material_in_logs() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("kubelet-current.pem");
    fs::write(&current, combined("store")).unwrap();
    capture_logs();
    let s = store(dir.path(), &clock());
    s.current().unwrap();
    let (c, k) = pair("bootstrap");
    s.update(&c, &k).unwrap();
    s.current().unwrap();
    fs::write(dir.path().join("kubelet-2026-11-30-07-36-00.pem"), b"").unwrap();
    s.current().unwrap_err();
    let logs = take_logs();
    assert!(logs.len() >= 3, "{logs:?}");
    let secrets: Vec<String> = [fixture("store.key"), k]
        .iter()
        .flat_map(|pem| {
            String::from_utf8_lossy(pem)
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 16)
                .map(|l| l[..16].to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!secrets.is_empty());
    for (_, message) in &logs {
        assert!(!message.contains("PRIVATE KEY"), "{message}");
        for s in &secrets {
            assert!(!message.contains(s.as_str()), "{message}");
        }
    }
}

#[test]
fn invalid_prefix_is_refused() {
    for prefix in ["", "a/b", ".hidden"] {
        let err = FileStore::builder(prefix, "/tmp", "/tmp")
            .build()
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidConfig(_)),
            "{prefix:?}: {err}"
        );
    }
}

#[test]
fn relative_paths_are_made_absolute() {
    // Only the path arithmetic here (the working directory is not changed); the link is
    // exercised from another working directory in store_processes.rs.
    let s = FileStore::builder("kubelet", "some/rel", "some/rel")
        .build()
        .unwrap();
    let want: PathBuf = std::env::current_dir()
        .unwrap()
        .join("some/rel/kubelet-current.pem");
    assert_eq!(s.current_path(), want);
}

/// States of the certificate directory reached after the store was built that it did not make:
/// when `current` cannot be read, reading is an error — never "no certificate" and never the
/// older legacy pair lying beside it; a stray regular `-updated.pem` (the name an update uses
/// for its new link) leaves `current` readable but refuses updates. Neither reading nor a
/// refused update moves, changes or deletes a file (a refused update may leave its new pair
/// file, which retention prunes later).
#[test]
fn unreadable_current_states_are_errors_that_touch_nothing() {
    struct Case {
        name: &'static str,
        /// Breaks the directory (after the store was built on a good one).
        breaks: fn(&Path),
        /// Whether `current` still reads as the stored pair.
        read_ok: bool,
        /// Whether an update can still go through (it replaces what `current` points at).
        update_ok: bool,
    }
    let cases = [
        Case {
            name: "a symlink loop at current",
            read_ok: false,
            breaks: |d| {
                fs::remove_file(d.join("kubelet-current.pem")).unwrap();
                symlink(d.join("loop-b"), d.join("kubelet-current.pem")).unwrap();
                symlink(d.join("kubelet-current.pem"), d.join("loop-b")).unwrap();
            },
            update_ok: true,
        },
        Case {
            name: "a directory at current",
            read_ok: false,
            breaks: |d| {
                fs::remove_file(d.join("kubelet-current.pem")).unwrap();
                fs::create_dir(d.join("kubelet-current.pem")).unwrap();
            },
            update_ok: false,
        },
        Case {
            name: "current pointing at a directory",
            read_ok: false,
            breaks: |d| {
                fs::remove_file(d.join("kubelet-current.pem")).unwrap();
                fs::create_dir(d.join("elsewhere")).unwrap();
                symlink(d.join("elsewhere"), d.join("kubelet-current.pem")).unwrap();
            },
            update_ok: true,
        },
        Case {
            name: "a regular -updated.pem file",
            read_ok: true,
            breaks: |d| fs::write(d.join("kubelet-updated.pem"), combined("store")).unwrap(),
            update_ok: false,
        },
    ];
    for c in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let clock = clock();
        let s = store(d, &clock);
        s.update(&pair("store").0, &pair("store").1).unwrap();
        // An older pair in the legacy names, which must not be taken instead.
        fs::write(d.join("kubelet.crt"), pair("bootstrap").0).unwrap();
        fs::write(d.join("kubelet.key"), pair("bootstrap").1).unwrap();
        (c.breaks)(d);
        let before = names(d);
        // The bytes of every regular file (links and directories are left out).
        let files = |d: &Path| -> Vec<(String, Vec<u8>)> {
            names(d)
                .into_iter()
                .filter(|n| fs::symlink_metadata(d.join(n)).is_ok_and(|m| m.is_file()))
                .map(|n| (n.clone(), fs::read(d.join(&n)).unwrap()))
                .collect()
        };
        let bytes_before = files(d);

        let read = s.current();
        if c.read_ok {
            let got = read.unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert!(
                got.is_some_and(|g| same_key(&g, &loaded("store"))),
                "{}: not the stored pair",
                c.name
            );
        } else {
            assert!(
                matches!(
                    read,
                    Err(StoreError::Io { .. } | StoreError::BadState { .. })
                ),
                "{}: {:?}",
                c.name,
                read.map(|o| o.map(|c| c.serial_hex()))
            );
        }
        assert_eq!(names(d), before, "{}: reading moved files", c.name);
        assert!(
            files(d) == bytes_before,
            "{}: reading changed a file",
            c.name
        );

        clock.advance(Duration::from_secs(1));
        let updated = s.update(&pair("store").0, &pair("store").1);
        if c.update_ok {
            updated.unwrap_or_else(|e| panic!("{}: {e}", c.name));
            let now = s.current().unwrap().expect("the new pair");
            assert!(now.not_after() > t0(), "{}", c.name);
        } else {
            assert!(updated.is_err(), "{}: the update went through", c.name);
            let after = files(d);
            for (name, bytes) in &bytes_before {
                assert!(
                    after.iter().any(|(n, b)| n == name && b == bytes),
                    "{}: the refused update changed or removed {name}",
                    c.name
                );
            }
            let after = names(d);
            assert!(
                before.is_subset(&after),
                "{}: the update removed {:?}",
                c.name,
                before.difference(&after).collect::<Vec<_>>()
            );
        }
    }
}

/// The certificate directory is a regular file: building the store, or reading it, is an
/// error naming the path, never "no certificate".
#[test]
fn a_certificate_directory_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pki");
    fs::write(&file, b"not a directory").unwrap();
    match FileStore::builder("kubelet", &file, &file).build() {
        Err(e) => assert!(e.to_string().contains(&file.display().to_string()), "{e}"),
        Ok(s) => {
            let err = s.current().unwrap_err();
            assert!(
                err.to_string().contains(&file.display().to_string()),
                "{err}"
            );
        }
    }
    assert_eq!(fs::read(&file).unwrap(), b"not a directory");
}
