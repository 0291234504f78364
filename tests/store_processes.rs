//! `FileStore` tests that need processes of their own:
//!
//! - `sigkill_during_updates_leaves_old_or_new_pair`: a child loops updates under umask 000 and
//!   is killed with SIGKILL at random moments (seeded); after every kill a fresh store must load
//!   a complete pair whose key matches, and it must be the pair before the interrupted update or
//!   the one it was writing. Files must be 0600 and pruning must have kept up.
//! - `umask_000_pair_and_backup_files_0600_created_dirs_0755`.
//! - `relative_directory_link_resolves_from_another_working_directory`.
//!
//! The test process never changes its own umask or working directory: children do. This binary
//! is its own child (`harness = false`): with `CERTROTATE_STORE_CHILD` set it plays one child
//! role and exits; otherwise it runs the tests above with a small libtest-like runner (name
//! filters, `--exact`, `--skip`, `--list`).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use certrotate::{Certificate, FileStore, Store};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const CHILD_ENV: &str = "CERTROTATE_STORE_CHILD";
const DIR_ENV: &str = "CERTROTATE_STORE_DIR";
const START_ENV: &str = "CERTROTATE_STORE_START";
const SEED_ENV: &str = "CERTROTATE_CRASH_SEED";
const PREFIX: &str = "kubelet-client";
/// Fixture pairs the crash child cycles through; neighbours differ, so "old" and "new" are
/// always distinguishable.
const CYCLE: [&str; 5] = ["store", "bootstrap", "apiserver", "ec", "two-certs"];
const KILLS: usize = 300;

fn main() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        let code = match role.as_str() {
            "crash" => child_crash(),
            "umask" => child_umask(),
            "relative" => child_relative(),
            other => {
                eprintln!("unknown child role {other:?}");
                2
            }
        };
        std::process::exit(code);
    }
    let tests: &[(&str, fn())] = &[
        (
            "sigkill_during_updates_leaves_old_or_new_pair",
            sigkill_during_updates_leaves_old_or_new_pair,
        ),
        (
            "umask_000_pair_and_backup_files_0600_created_dirs_0755",
            umask_000_pair_and_backup_files_0600_created_dirs_0755,
        ),
        (
            "relative_directory_link_resolves_from_another_working_directory",
            relative_directory_link_resolves_from_another_working_directory,
        ),
    ];
    std::process::exit(run(tests));
}

// ---- shared helpers ----

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn pair_pem(name: &str) -> (Vec<u8>, Vec<u8>) {
    (
        fixture(&format!("{name}.crt")),
        fixture(&format!("{name}.key")),
    )
}

fn pair(name: &str) -> Certificate {
    let (c, k) = pair_pem(name);
    Certificate::from_pem(&c, &k).unwrap()
}

/// Same chain and same key.
fn same_pair(a: &Certificate, b: &Certificate) -> bool {
    a == b && a.private_key().pkcs8_der() == b.private_key().pkcs8_der()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_else(|| panic!("{name} not set")))
}

/// This binary in a child role, under umask 000 (`sh` sets it, then `exec`s us).
fn child_command(role: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"umask 000 && exec "$0""#)
        .arg(exe)
        .env(CHILD_ENV, role);
    cmd
}

fn assert_success(status: ExitStatus, role: &str) {
    assert!(status.success(), "child {role} failed: {status}");
}

// ---- SIGKILL crash test ----

/// Child: updates forever, cycling through `CYCLE` from global index `START`, printing each
/// index on its own line *before* starting that update.
fn child_crash() -> i32 {
    let dir = env_path(DIR_ENV);
    let start: usize = std::env::var(START_ENV).unwrap().parse().unwrap();
    let pairs: Vec<_> = CYCLE.iter().map(|n| pair_pem(n)).collect();
    let store = match FileStore::builder(PREFIX, &dir, &dir).build() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("crash child: build: {e}");
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    for i in start.. {
        // One write(2) of a few bytes to a pipe: atomic, and kept if we die right after.
        if writeln!(out, "{i}").and_then(|()| out.flush()).is_err() {
            return 1;
        }
        let (cert, key) = &pairs[i % CYCLE.len()];
        if let Err(e) = store.update(cert, key) {
            eprintln!("crash child: update {i}: {e}");
            return 1;
        }
    }
    0
}

#[derive(Debug, Default)]
struct CrashStats {
    kills: usize,
    before_first_update: usize,
    in_flight_old: usize,
    in_flight_new: usize,
    temp_left: usize,
    updated_link_left: usize,
    updates_started: usize,
}

fn sigkill_during_updates_leaves_old_or_new_pair() {
    let seed: u64 = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2026);
    let mut rng = StdRng::seed_from_u64(seed);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("pki");
    let pairs: Vec<Certificate> = CYCLE.iter().map(|n| pair(n)).collect();
    let at = |i: usize| &pairs[i % CYCLE.len()];

    let (c, k) = pair_pem(CYCLE[0]);
    FileStore::builder(PREFIX, &dir, &dir)
        .build()
        .unwrap()
        .update(&c, &k)
        .unwrap();
    // `observed`: global index of the pair the store held before this round; `next`: index the
    // child starts from.
    let (mut observed, mut next) = (0usize, 1usize);
    // Updates started since the last one known to have completed (and pruned).
    let mut pending = 0usize;
    let mut stats = CrashStats::default();
    let started = Instant::now();

    for kill in 0..KILLS {
        let mut child = child_command("crash")
            .env(DIR_ENV, &dir)
            .env(START_ENV, next.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<usize>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let i = line.parse().unwrap_or_else(|_| panic!("bad line {line:?}"));
                if tx.send(i).is_err() {
                    break;
                }
            }
        });
        // Mostly kill while updates run; sometimes right after spawning (before any update).
        let mut indices = Vec::new();
        if rng.random_range(0..10) == 0 {
            std::thread::sleep(Duration::from_micros(rng.random_range(0..3_000)));
        } else {
            let first = rx.recv_timeout(Duration::from_secs(20));
            indices.push(first.unwrap_or_else(|e| panic!("kill {kill}: child silent: {e}")));
            std::thread::sleep(Duration::from_micros(rng.random_range(0..40_000)));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "kill {kill}: the child ended by itself: {status}"
        );
        reader.join().unwrap();
        indices.extend(rx.try_iter());
        stats.kills += 1;
        stats.updates_started += indices.len();

        // The state the kill left, before any store looks at it.
        let entries: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap()).collect();
        let mut timestamped = 0;
        for e in &entries {
            let name = e.file_name().into_string().unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.file_type().is_file() {
                assert_eq!(
                    meta.permissions().mode() & 0o777,
                    0o600,
                    "kill {kill}: {name} under umask 000"
                );
            }
            if name.ends_with(".pem.tmp") {
                stats.temp_left += 1;
            }
            if name == format!("{PREFIX}-updated.pem") {
                stats.updated_link_left += 1;
            }
            if name.starts_with(&format!("{PREFIX}-2")) {
                timestamped += 1;
            }
        }
        // A completed update leaves N pairs; each update started since may have added one.
        pending = match indices.len() {
            0 => pending,
            1 => pending + 1,
            _ => 1,
        };
        assert!(
            timestamped <= certrotate::store::DEFAULT_RETENTION + pending,
            "kill {kill}: {timestamped} pair files with {pending} unfinished updates"
        );

        // Old or new, never anything else: update `j - 1` returned before `j` was announced.
        let allowed: Vec<usize> = match indices.last() {
            None => vec![observed],
            Some(&j) if j == next => vec![observed, j],
            Some(&j) => vec![j - 1, j],
        };
        let fresh = FileStore::builder(PREFIX, &dir, &dir).build().unwrap();
        let got = fresh
            .current()
            .unwrap_or_else(|e| panic!("kill {kill}: {e}"))
            .unwrap_or_else(|| panic!("kill {kill}: no pair"));
        let Some(&which) = allowed.iter().find(|&&i| same_pair(&got, at(i))) else {
            panic!("kill {kill}: loaded {got:?}, want one of {allowed:?}");
        };
        match (indices.last(), which == observed) {
            (None, _) => stats.before_first_update += 1,
            (Some(&j), _) if which == j => stats.in_flight_new += 1,
            _ => stats.in_flight_old += 1,
        }
        observed = which;
        next = indices.last().map_or(next, |j| j + 1);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "    {} SIGKILLs in {:.1} s (seed {seed:#x}): {stats:?}",
        stats.kills,
        elapsed.as_secs_f64()
    );
    assert!(stats.kills >= 200);
    assert!(
        stats.in_flight_old > 0 && stats.in_flight_new > 0,
        "the kills did not land inside updates: {stats:?}"
    );
}

// ---- umask 000 ----

/// Child (umask 000): proves the umask, then stores into a missing nested directory and over a
/// regular-file `current`.
fn child_umask() -> i32 {
    let root = env_path(DIR_ENV);
    let probe = root.join("probe");
    if fs::File::create(&probe).is_err() {
        return 3;
    }
    let (a, ak) = pair_pem("store");
    let (b, bk) = pair_pem("bootstrap");
    let run = || -> Result<(), certrotate::StoreError> {
        let nested =
            FileStore::builder("kubelet", root.join("new/a/b"), root.join("new/a/b")).build()?;
        nested.update(&a, &ak)?;
        nested.update(&b, &bk)?;
        let existing = root.join("existing");
        FileStore::builder("kubelet", &existing, &existing)
            .build()?
            .update(&b, &bk)?;
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("umask child: {e}");
            1
        }
    }
}

fn umask_000_pair_and_backup_files_0600_created_dirs_0755() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let existing = r.join("existing");
    fs::create_dir(&existing).unwrap();
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o750)).unwrap();
    let current = existing.join("kubelet-current.pem");
    let mut copied = fixture("store.crt");
    copied.extend(fixture("store.key"));
    fs::write(&current, &copied).unwrap();
    fs::set_permissions(&current, fs::Permissions::from_mode(0o666)).unwrap();

    let status = child_command("umask").env(DIR_ENV, r).status().unwrap();
    assert_success(status, "umask");

    assert_eq!(
        mode(&r.join("probe")),
        0o666,
        "the child did not run under umask 000"
    );
    for d in ["new", "new/a", "new/a/b"] {
        assert_eq!(mode(&r.join(d)), 0o755, "{d}");
    }
    let nested = r.join("new/a/b");
    let mut pair_files = 0;
    for e in fs::read_dir(&nested).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
            pair_files += 1;
        }
    }
    assert_eq!(pair_files, 2);
    let backups: Vec<_> = fs::read_dir(&existing)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("kubelet-backup-")
        })
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(mode(&backups[0]), 0o600);
    assert_eq!(fs::read(&backups[0]).unwrap(), copied);
    assert!(
        fs::symlink_metadata(&current)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(mode(&current), 0o600, "the link's target");
    assert_eq!(
        mode(&existing),
        0o750,
        "an existing directory keeps its mode"
    );
}

// ---- relative directory ----

/// Child (working directory set by the parent): stores through relative directories.
fn child_relative() -> i32 {
    let (a, ak) = pair_pem("store");
    let (b, bk) = pair_pem("bootstrap");
    let run = || -> Result<bool, certrotate::StoreError> {
        let mut ok = true;
        for dir in ["certs/sub", "../up"] {
            let s = FileStore::builder("kubelet", dir, dir).build()?;
            s.update(&a, &ak)?;
            let stored = s.update(&b, &bk)?;
            ok &= s.current()?.as_ref() == Some(&stored);
        }
        Ok(ok)
    };
    match run() {
        Ok(true) => 0,
        Ok(false) => 4,
        Err(e) => {
            eprintln!("relative child: {e}");
            1
        }
    }
}

fn relative_directory_link_resolves_from_another_working_directory() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    fs::create_dir(&work).unwrap();
    let status = child_command("relative")
        .current_dir(&work)
        .status()
        .unwrap();
    assert_success(status, "relative");

    // This process's working directory is elsewhere (the package directory).
    assert_ne!(
        std::env::current_dir().unwrap().canonicalize().unwrap(),
        work.canonicalize().unwrap()
    );
    for dir in [work.join("certs/sub"), root.path().join("up")] {
        let link = dir.join("kubelet-current.pem");
        let target = fs::read_link(&link).unwrap();
        assert!(target.is_absolute(), "{}", target.display());
        assert_eq!(
            target.canonicalize().unwrap().parent().unwrap(),
            dir.canonicalize().unwrap()
        );
        // The link resolves from this process's working directory.
        let via_link = Certificate::from_pair_pem(&fs::read(&link).unwrap()).unwrap();
        assert!(same_pair(&via_link, &pair("bootstrap")));
        let fresh = FileStore::builder("kubelet", &dir, &dir).build().unwrap();
        assert!(same_pair(
            &fresh.current().unwrap().unwrap(),
            &pair("bootstrap")
        ));
    }
}

// ---- a small runner with libtest's command line ----

fn run(tests: &[(&str, fn())]) -> i32 {
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let (mut exact, mut list, mut only_ignored) = (false, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--list" => list = true,
            "--exact" => exact = true,
            "--ignored" => only_ignored = true,
            "--skip" => skips.extend(args.next()),
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" | "--shuffle-seed" => {
                args.next();
            }
            a if a.starts_with('-') => {}
            _ => filters.push(arg),
        }
    }
    let matches = |name: &str, pattern: &String| {
        if exact {
            name == pattern
        } else {
            name.contains(pattern.as_str())
        }
    };
    // There are no ignored tests here.
    let selected: Vec<_> = tests
        .iter()
        .filter(|(name, _)| {
            !only_ignored
                && (filters.is_empty() || filters.iter().any(|f| matches(name, f)))
                && !skips.iter().any(|s| matches(name, s))
        })
        .collect();
    if list {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return 0;
    }
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(test);
        let secs = start.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => println!("test {name} ... ok ({secs:.2} s)"),
            Err(_) => {
                println!("test {name} ... FAILED ({secs:.2} s)");
                failed.push(*name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; {} filtered out\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len(),
        tests.len() - selected.len()
    );
    if failed.is_empty() { 0 } else { 101 }
}
