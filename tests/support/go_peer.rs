//! Builds the Go peer programs of `tests/peers` (see its README) with the Go toolchain.
//!
//! The binary goes to `$CARGO_TARGET_DIR/peers/` (default `target/peers/`); Go's build cache
//! makes every build after the first a few seconds. `GO` names another toolchain than `go`.
//! Without a toolchain: a panic when `CI` is set, otherwise a loud `SKIPPED` line on the
//! process's stderr (not captured by the test harness) and `None`.
//!
//! The first build of `kube-apiserver-peer` and `kubectl` compiles much of Kubernetes (many
//! minutes on a small machine), so outside CI a test builds those only when the binary is
//! already there (then the build brings it up to date, in seconds) or `CERTROTATE_BUILD_PEERS`
//! is set; otherwise it says loudly that it skipped and how to build them (`.ci/run` does).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Builds `tests/peers/cmd/<name>` and returns the binary's path, or `None` when Go is missing
/// outside CI. `kubectl` is stamped with its release version (see [`kubectl_ldflags`]).
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
    let heavy = matches!(name, "kube-apiserver-peer" | "kubectl");
    if heavy
        && !out.exists()
        && std::env::var_os("CI").is_none()
        && std::env::var_os("CERTROTATE_BUILD_PEERS").is_none()
    {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: {} is not built, so nothing ran against it; its first build takes \
             many minutes: run `.ci/run`, or set CERTROTATE_BUILD_PEERS=1 ***\n",
            out.display()
        );
        return None;
    }
    let started = Instant::now();
    let mut cmd = Command::new(&go);
    cmd.current_dir(manifest.join("tests/peers")).arg("build");
    if name == "kubectl" {
        cmd.arg("-ldflags").arg(kubectl_ldflags(manifest));
    }
    let status = cmd
        .arg("-o")
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

/// The Kubernetes release of the `k8s.io/kubectl` module that `tests/peers/go.mod` requires:
/// staging module `v0.X.Y` is cut from Kubernetes `v1.X.Y`.
pub fn kubectl_release(manifest: &Path) -> String {
    let go_mod = std::fs::read_to_string(manifest.join("tests/peers/go.mod"))
        .expect("reading tests/peers/go.mod");
    let module = go_mod
        .lines()
        .find_map(|l| l.trim().strip_prefix("k8s.io/kubectl "))
        .expect("tests/peers/go.mod requires k8s.io/kubectl");
    let version = module.split_whitespace().next().unwrap_or_default();
    let rest = version
        .strip_prefix("v0.")
        .unwrap_or_else(|| panic!("k8s.io/kubectl {version} is not a v0.X.Y staging version"));
    format!("v1.{rest}")
}

/// The `-X` flags the Kubernetes release build (`hack/lib/version.sh`) gives kubectl, so that
/// `kubectl version` and its `User-Agent` name the release instead of `v0.0.0-master`. Commit
/// and build date stay unset: the module carries neither.
pub fn kubectl_ldflags(manifest: &Path) -> String {
    let release = kubectl_release(manifest);
    let mut parts = release.trim_start_matches('v').split('.');
    let major = parts.next().unwrap_or_default().to_owned();
    let minor = parts.next().unwrap_or_default().to_owned();
    let mut flags = Vec::new();
    for (key, value) in [
        ("gitVersion", release.as_str()),
        ("gitMajor", major.as_str()),
        ("gitMinor", minor.as_str()),
    ] {
        for package in [
            "k8s.io/client-go/pkg/version",
            "k8s.io/component-base/version",
        ] {
            flags.push(format!("-X {package}.{key}={value}"));
        }
    }
    flags.join(" ")
}
