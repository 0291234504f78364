//! Builds the Go peer programs of `tests/peers` (see its README) with the Go toolchain.
//!
//! The binary goes to `$CARGO_TARGET_DIR/peers/` (default `target/peers/`); Go's build cache
//! makes every build after the first a few seconds. `GO` names another toolchain than `go`.
//! Without a toolchain: a panic when `CI` is set, otherwise a loud `SKIPPED` line on the
//! process's stderr (not captured by the test harness) and `None`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Builds `tests/peers/cmd/<name>` and returns the binary's path, or `None` when Go is missing
/// outside CI.
pub fn build(name: &str) -> Option<PathBuf> {
    let go = std::env::var_os("GO").unwrap_or_else(|| "go".into());
    let found = Command::new(&go)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("go not found ({go:?}) and CI is set: the Go peer {name} must run in CI");
        }
        // Straight to the process's stderr: the test harness captures `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: go not found ({go:?}); nothing ran against the Go peer {name} ***\n"
        );
        return None;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"));
    let out = target.join("peers").join(name);
    let started = Instant::now();
    let status = Command::new(&go)
        .current_dir(manifest.join("tests/peers"))
        .args(["build", "-o"])
        .arg(&out)
        .arg(format!("./cmd/{name}"))
        .status()
        .expect("running go build");
    assert!(
        status.success(),
        "go build of tests/peers/cmd/{name} failed: {status}"
    );
    eprintln!(
        "built {} in {:.1}s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Some(out)
}
