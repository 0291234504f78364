//! Installs the official Kubernetes Python client, pinned by
//! `tests/support/python-client-requirements.txt`, into a virtual environment under the target
//! directory (`$CARGO_TARGET_DIR/py-client`, default `target/py-client`).
//!
//! The environment is made with `python3 -m venv` and filled with `pip install -r`; a copy of
//! the requirements file kept inside it (`.requirements`) marks it as done, so later runs (and
//! tests after `.ci/run`, which installs it the same way) reuse it at once, and a changed pin
//! installs afresh. `PYTHON` names another interpreter than `python3`. When it cannot be made
//! (no Python, no `venv` module, the packages not reachable): a panic when `CI` is set,
//! otherwise a loud `SKIPPED` line on the process's stderr and `None`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The virtual environment's interpreter, installing the client first when needed; `None` when
/// that is impossible outside CI.
pub fn python() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let requirements_path = manifest.join("tests/support/python-client-requirements.txt");
    let requirements =
        std::fs::read_to_string(&requirements_path).expect("reading the requirements file");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"));
    let venv = target.join("py-client");
    let python = venv.join("bin").join("python");
    let stamp = venv.join(".requirements");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == requirements) {
        return Some(python);
    }
    match install(&venv, &requirements_path) {
        Ok(()) => {
            std::fs::write(&stamp, requirements).expect("marking the virtual environment");
            Some(python)
        }
        Err(why) => {
            if std::env::var_os("CI").is_some() {
                panic!("the Kubernetes Python client must run in CI (CI is set): {why}");
            }
            // Straight to the process's stderr: the test harness captures `eprintln!`.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: {why}; nothing ran against the Kubernetes Python client ***\n"
            );
            None
        }
    }
}

fn install(venv: &Path, requirements: &Path) -> Result<(), String> {
    let base = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let started = Instant::now();
    let made = Command::new(&base)
        .args(["-m", "venv", "--clear"])
        .arg(venv)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{base:?} not found ({e})"))?;
    if !made.success() {
        return Err(format!(
            "{base:?} -m venv {} failed: {made}",
            venv.display()
        ));
    }
    let installed = Command::new(venv.join("bin").join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
        ])
        .arg(requirements)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("running pip in {}: {e}", venv.display()))?;
    if !installed.success() {
        return Err(format!(
            "pip install -r {} failed: {installed}",
            requirements.display()
        ));
    }
    eprintln!(
        "installed the Kubernetes Python client into {} in {:.1}s",
        venv.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
