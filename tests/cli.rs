//! The `certrotate` command, driven as a process end to end: `certrotate serve` spawned as a
//! process, `certrotate run` against it through the kubeconfig `serve` wrote, and
//! `certrotate status` on what `run` left on disk. Nothing is faked: real TLS, the real CSR
//! API, real rotations, real signals.
//!
//! Waits are bounded polls of files and processes; no test sleeps to let something happen.

#[path = "support/go_peer.rs"]
mod go_peer;
#[path = "support/py_client.rs"]
mod py_client;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use certrotate::Certificate;
use certrotate::pki::{CertInfo, parse_chain_pem};
use rustix::process::{Pid, Signal};

const BIN: &str = env!("CARGO_BIN_EXE_certrotate");
/// Upper bound of every wait below: far above what the machine needs, so that a slow CI
/// machine does not fail, while a hang still ends the test.
const BOUND: Duration = Duration::from_secs(60);

/// Polls `f` every 20 ms until it returns `Some`, for at most `bound`.
fn wait_for<T>(what: &str, bound: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit, for at most `bound`; kills it and fails otherwise.
fn wait_exit(child: &mut Child, bound: Duration) -> (ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return (status, start.elapsed());
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            panic!("process did not exit within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: Signal) {
    let pid = Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, sig).expect("kill");
}

/// Kills the process on drop, so that a failed assertion leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `certrotate serve` on a free loopback port, with its CA and kubeconfigs in `dir`.
struct Serve {
    proc: Running,
    url: String,
    dir: PathBuf,
}

impl Serve {
    fn start(dir: &Path, extra: &[&str]) -> Serve {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(if extra.contains(&"--approve") {
                &[][..]
            } else {
                &["--approve", "all"][..]
            })
            .args(["--signer", "example.com/cli-test"])
            .arg("--ca-cert")
            .arg(dir.join("ca.crt"))
            .arg("--ca-key")
            .arg(dir.join("ca.key"))
            .arg("--kubeconfig-dir")
            .arg(dir.join("kubeconfigs"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn certrotate serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let proc = Running(child);
        let line = rx.recv_timeout(BOUND).expect("serve printed its URL");
        let url = line
            .trim()
            .strip_prefix("serving ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Serve {
            proc,
            url,
            dir: dir.to_owned(),
        }
    }

    fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfigs/admin.kubeconfig")
    }
}

fn run_cmd(serve: &Serve, pki: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .arg("--kubeconfig")
        .arg(serve.admin_kubeconfig())
        .args(["--signer-name", "example.com/cli-test", "--cn", "cli-test"])
        .args(["--usages", "digital signature,server auth"])
        .args(["--dns", "localhost", "--ip", "127.0.0.1"])
        .arg("--dir")
        .arg(pki);
    cmd
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

fn serial_of_pem(pem: &[u8]) -> String {
    let chain = parse_chain_pem(pem).expect("chain");
    CertInfo::from_der(&chain[0]).expect("leaf").serial_hex()
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The daemon: with 3-second certificates it rotates every 2-3 s. Each new certificate is
/// written to the plain files, then the exec hook runs exactly once for it (never two at
/// once) with the documented environment, and the signalled process gets one SIGHUP. SIGTERM
/// ends the daemon within one second with exit 0.
#[test]
fn daemon_delivers_each_rotation_once_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        tmp.path(),
        &[
            "--max-lifetime",
            "3",
            "--min-lifetime",
            "1",
            "--backdate",
            "0",
        ],
    );
    let pki = tmp.path().join("pki");
    let out = tmp.path().join("out");
    let hooks = tmp.path().join("hooks");
    fs::create_dir_all(&hooks).unwrap();

    // A process that counts the SIGHUPs it gets.
    let hups = tmp.path().join("hups");
    let ready = tmp.path().join("ready");
    let receiver = Running(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"trap 'echo hup >> "$HUPS"' HUP; echo ready > "$READY"; while :; do sleep 0.05; done"#)
            .env("HUPS", &hups)
            .env("READY", &ready)
            .spawn()
            .unwrap(),
    );
    wait_for("the signal receiver", BOUND, || {
        ready.exists().then_some(())
    });

    // The hook records its environment, copies the certificate it was told about, and fails
    // loudly if another copy of itself is running.
    let hook = r#"mkdir "$HOOKS/lock" || echo CONCURRENT >> "$HOOKS/log"
cp "$CERTROTATE_CERT_FILE" "$HOOKS/$CERTROTATE_SERIAL.pem"
echo "$CERTROTATE_SERIAL|$CERTROTATE_PREVIOUS_SERIAL|$CERTROTATE_CERT_FILE|$CERTROTATE_KEY_FILE|$CERTROTATE_CA_FILE|$CERTROTATE_PAIR_FILE|$CERTROTATE_NOT_AFTER" >> "$HOOKS/log"
sleep 0.2
rmdir "$HOOKS/lock"
echo "$CERTROTATE_SERIAL" >> "$HOOKS/done""#;
    let mut run = Running(
        run_cmd(&serve, &pki)
            .arg("--cert-file")
            .arg(out.join("tls.crt"))
            .arg("--key-file")
            .arg(out.join("tls.key"))
            .arg("--ca-file")
            .arg(out.join("ca.crt"))
            .args(["--exec", hook, "--signal", "HUP", "--pid"])
            .arg(receiver.0.id().to_string())
            .env("HOOKS", &hooks)
            .spawn()
            .unwrap(),
    );
    let log = hooks.join("log");
    let done = hooks.join("done");
    wait_for("three certificates delivered", BOUND, || {
        (lines(&done).len() >= 3 && lines(&hups).len() >= 3).then_some(())
    });
    signal(&run.0, Signal::TERM);
    let (status, took) = wait_exit(&mut run.0, BOUND);
    assert!(status.success(), "run exited with {status:?}");
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");

    let entries = lines(&log);
    assert!(!entries.iter().any(|l| l == "CONCURRENT"), "{entries:?}");
    let mut previous = String::new();
    let mut serials = Vec::new();
    for line in &entries {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 7, "{line}");
        let serial = f[0].to_owned();
        assert!(
            !serials.contains(&serial),
            "hook ran twice for {serial}: {entries:?}"
        );
        assert_eq!(f[1], previous, "previous serial of {serial}");
        assert_eq!(Path::new(f[2]), out.join("tls.crt"));
        assert_eq!(Path::new(f[3]), out.join("tls.key"));
        assert_eq!(Path::new(f[4]), out.join("ca.crt"));
        assert_eq!(Path::new(f[5]), pki.join("certrotate-current.pem"));
        assert!(f[6].ends_with('Z'), "NotAfter {:?}", f[6]);
        // The file the hook was pointed at held the certificate it was told about.
        let copy = fs::read(hooks.join(format!("{serial}.pem"))).unwrap();
        assert_eq!(serial_of_pem(&copy), serial);
        previous = serial.clone();
        serials.push(serial);
    }
    // One certificate per hook run: each stored pair (the store keeps 5, we made fewer than
    // 5 + 1) had its hook run, and no hook ran without a new pair.
    let pairs = fs::read_dir(&pki)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("certrotate-20") && n.ends_with(".pem")
        })
        .count();
    assert!(serials.len() <= 5, "{serials:?}");
    assert_eq!(pairs, serials.len(), "stored pairs vs hook runs");
    // Each hook that ran to its end is followed by one SIGHUP; SIGTERM may have cut the last
    // one short (it is killed, and nothing is signalled for it).
    let finished = lines(&done);
    assert!(
        finished.len() == serials.len() || finished.len() + 1 == serials.len(),
        "finished {finished:?} of {serials:?}"
    );
    assert_eq!(finished[..], serials[..finished.len()]);
    wait_for("one SIGHUP per finished hook", BOUND, || {
        (lines(&hups).len() >= finished.len()).then_some(())
    });
    assert_eq!(lines(&hups).len(), finished.len());

    // The plain files: modes as documented, the last certificate, its key, and the CA.
    let cert = out.join("tls.crt");
    let key = out.join("tls.key");
    let ca = out.join("ca.crt");
    assert_eq!(mode(&cert), 0o644);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&ca), 0o644);
    let pair = Certificate::from_pem(&fs::read(&cert).unwrap(), &fs::read(&key).unwrap())
        .expect("the key file matches the certificate file");
    assert_eq!(&pair.serial_hex(), serials.last().unwrap());
    assert_eq!(
        fs::read(&ca).unwrap(),
        fs::read(tmp.path().join("ca.crt")).unwrap()
    );
    assert_eq!(mode(&tmp.path().join("ca.key")), 0o600);
    // Nothing half-written is left next to them.
    let stray: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| !["tls.crt", "tls.key", "ca.crt"].contains(&n.to_string_lossy().as_ref()))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    drop(serve);
}

/// `--once`: exit 0 with a certificate in place; a second pass keeps it and runs no hook;
/// exit 3 when the certificate is in place but the hook failed; exit 1 when no certificate
/// comes; exit 2 for a usage the Kubernetes API does not name.
#[test]
fn once_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(tmp.path(), &[]);
    let pki = tmp.path().join("pki");
    let runs = tmp.path().join("runs");

    let out = run_cmd(&serve, &pki)
        .args([
            "--once",
            "--exec",
            r#"echo "$CERTROTATE_SERIAL" >> "$RUNS""#,
        ])
        .env("RUNS", &runs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let first = lines(&runs);
    assert_eq!(first.len(), 1);
    let stored = pki.join("certrotate-current.pem");
    assert_eq!(serial_of_pem(&fs::read(&stored).unwrap()), first[0]);

    // Valid and before its rotation deadline: kept, nothing changed, so no hook.
    let out = run_cmd(&serve, &pki)
        .args([
            "--once",
            "--exec",
            r#"echo "$CERTROTATE_SERIAL" >> "$RUNS""#,
        ])
        .env("RUNS", &runs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lines(&runs), first);
    assert_eq!(serial_of_pem(&fs::read(&stored).unwrap()), first[0]);

    // A failing hook: the certificate is written, the exit code says the hook failed.
    let pki2 = tmp.path().join("pki2");
    let cert = tmp.path().join("out/tls.crt");
    let out = run_cmd(&serve, &pki2)
        .args(["--once", "--exec", "exit 7", "--cert-file"])
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exec hook exited 7"),
        "{}",
        text(&out)
    );
    assert!(cert.exists());

    // No certificate: nobody approves, and the CSR wait ends.
    let manual_dir = tmp.path().join("manual");
    fs::create_dir_all(&manual_dir).unwrap();
    let manual = Serve::start(&manual_dir, &["--approve", "manual"]);
    let out = run_cmd(&manual, &tmp.path().join("pki3"))
        .args(["--once", "--wait-timeout", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("certrotate: ")
            && last.contains("timed out waiting for certificate signing request"),
        "{}",
        text(&out)
    );
    assert!(!tmp.path().join("pki3/certrotate-current.pem").exists());

    // Interrupted while waiting: stops within a second.
    let mut child = Running(
        run_cmd(&manual, &tmp.path().join("pki4"))
            .args(["--once", "--wait-timeout", "600"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    wait_for("the CSR to be created", BOUND, || {
        rx.recv_timeout(BOUND)
            .ok()
            .filter(|l| l.contains("created certificate signing request"))
    });
    signal(&child.0, Signal::TERM);
    let (status, took) = wait_exit(&mut child.0, BOUND);
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
    assert_eq!(status.code(), Some(1));

    // Bad usage: a name the API does not have.
    let out = run_cmd(&serve, &tmp.path().join("pki5"))
        .args(["--once", "--usages", "serverAuth"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("serverAuth"),
        "{}",
        text(&out)
    );
}

/// `status` on a healthy directory (exit 0, the stored serial, no problem) and on broken ones
/// (exit 1 and the problem named): a dangling `current`, a regular file whose key is another
/// pair's, a pair readable by others.
#[test]
fn status_reports_healthy_and_broken_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(tmp.path(), &[]);
    let pki = tmp.path().join("pki");
    let out = run_cmd(&serve, &pki).arg("--once").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stored = pki.join("certrotate-current.pem");
    let serial = serial_of_pem(&fs::read(&stored).unwrap());

    let status = |args: &[&str]| {
        Command::new(BIN)
            .arg("status")
            .args(args)
            .arg(&pki)
            .output()
            .unwrap()
    };
    let out = status(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains(&serial), "{human}");
    assert!(human.contains("problems:         none"), "{human}");
    assert!(human.contains("ECDSA P-256"), "{human}");
    let out = status(&["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["certificate"]["serial"], serial.as_str());
    assert_eq!(v["certificate"]["common_name"], "cli-test");
    assert_eq!(v["certificate"]["dns_names"][0], "localhost");
    assert_eq!(v["certificate"]["ip_addresses"][0], "127.0.0.1");
    assert_eq!(v["file_mode"], "0600");
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);

    // Readable by others.
    let target = fs::read_link(&stored).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    let out = status(&["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .contains("readable by others"),
        "{v}"
    );

    // A regular file holding this certificate with another pair's key.
    let other = tmp.path().join("pki-other");
    let out = run_cmd(&serve, &other).arg("--once").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let other_pem = fs::read_to_string(other.join("certrotate-current.pem")).unwrap();
    let this_pem = fs::read_to_string(&target).unwrap();
    let cert_part: String = this_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap()
        .to_owned();
    let key_part = &other_pem[other_pem.find("-----BEGIN PRIVATE KEY-----").unwrap()..];
    fs::remove_file(&stored).unwrap();
    fs::write(&stored, format!("{cert_part}{key_part}")).unwrap();
    fs::set_permissions(&stored, fs::Permissions::from_mode(0o600)).unwrap();
    let out = status(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("is a regular file"), "{human}");
    assert!(human.contains("does not hold a usable pair"), "{human}");

    // A dangling link.
    fs::remove_file(&stored).unwrap();
    std::os::unix::fs::symlink(pki.join("certrotate-gone.pem"), &stored).unwrap();
    let out = status(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("dangling link"),
        "{}",
        text(&out)
    );
}

/// `serve`: the admin kubeconfig works with kubectl, and SIGTERM stops it within a second
/// with exit 0.
#[test]
fn serve_kubeconfig_works_with_kubectl_and_sigterm_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(tmp.path(), &["--node", "node-1"]);
    let kubeconfig = serve.admin_kubeconfig();
    assert_eq!(mode(&kubeconfig), 0o600);
    assert_eq!(
        mode(&tmp.path().join("kubeconfigs/node-node-1.kubeconfig")),
        0o600
    );
    assert!(serve.url.starts_with("https://127.0.0.1:"), "{}", serve.url);
    // A CSR to list.
    let out = run_cmd(&serve, &tmp.path().join("pki"))
        .arg("--once")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The pinned kubectl of tests/real_clients.rs (never one found on the machine).
    if let Some(kubectl) = go_peer::build("kubectl") {
        let out = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "csr", "-o", "name"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let names = String::from_utf8_lossy(&out.stdout);
        assert_eq!(names.lines().count(), 1, "{names}");
        assert!(
            names.starts_with("certificatesigningrequest.certificates.k8s.io/"),
            "{names}"
        );
    }
    signal(&serve.proc.0, Signal::TERM);
    let (status, took) = wait_exit(&mut serve.proc.0, BOUND);
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
}

/// One HTTP/1.1 GET; returns the status code and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(BOUND)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// The value of an unlabelled sample in a text exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Starts `certrotate run` with `--metrics-addr 127.0.0.1:0`; returns it and the address it
/// logged.
fn run_with_metrics(cmd: &mut Command) -> (Running, String) {
    let mut child = Running(
        cmd.args(["--metrics-addr", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = tx.send(line);
        }
    });
    let addr = wait_for("the metrics address in the log", BOUND, || {
        let line = rx.recv_timeout(BOUND).ok()?;
        Some(line.split("on http://").nth(1)?.trim().to_owned())
    });
    (child, addr)
}

/// Checks a text exposition with the Prometheus project's Python parser
/// (`prometheus_client.parser`, pinned in tests/support/python-client-requirements.txt); without
/// Python it fails when `CI` is set and skips loudly otherwise (see `py_client`).
fn check_with_python_parser(text: &str) {
    static PYTHON: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let Some(python) = PYTHON.get_or_init(py_client::python) else {
        return;
    };
    let mut child = Command::new(python)
        .args([
            "-c",
            "import sys\nfrom prometheus_client.parser import text_string_to_metric_families\n\
             for f in text_string_to_metric_families(sys.stdin.read()):\n    print(f.name, f.type, len(f.samples))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the exposition: {}",
        text_out(&out)
    );
    let families = String::from_utf8_lossy(&out.stdout);
    for want in [
        "kubelet_server_expiration_renew_errors counter",
        "kubelet_certificate_manager_server_ttl_seconds gauge",
        "kubelet_certificate_manager_server_rotation_seconds histogram",
        "certrotate_hook_runs counter",
        "certrotate_rotations counter",
    ] {
        assert!(families.contains(want), "{want:?} not in {families}");
    }
}

fn text_out(out: &Output) -> String {
    text(out)
}

/// `--metrics-addr`: `/readyz` is 503 until a valid certificate is in place and 200 after;
/// `/metrics` parses as Prometheus text, carries the kubelet's names, and moves as rotations
/// happen (rotations, the rotation histogram, hook runs).
#[test]
fn metrics_and_readiness_follow_rotations() {
    let tmp = tempfile::tempdir().unwrap();
    // Nobody approves: not ready.
    let manual_dir = tmp.path().join("manual");
    fs::create_dir_all(&manual_dir).unwrap();
    let manual = Serve::start(&manual_dir, &["--approve", "manual"]);
    let (_waiting, addr) = run_with_metrics(&mut run_cmd(&manual, &tmp.path().join("pki-manual")));
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    assert_eq!(http_get(&addr, "/readyz").0, 503);
    let (_, text) = http_get(&addr, "/metrics");
    assert_eq!(
        sample(&text, "kubelet_certificate_manager_server_ttl_seconds"),
        Some(f64::INFINITY),
        "{text}"
    );

    let serve = Serve::start(
        tmp.path(),
        &[
            "--max-lifetime",
            "3",
            "--min-lifetime",
            "1",
            "--backdate",
            "0",
        ],
    );
    let (_run, addr) =
        run_with_metrics(run_cmd(&serve, &tmp.path().join("pki")).args(["--exec", "true"]));
    wait_for("ready", BOUND, || {
        (http_get(&addr, "/readyz").0 == 200).then_some(())
    });
    let first = wait_for("a first rotation counted", BOUND, || {
        let (_, t) = http_get(&addr, "/metrics");
        sample(&t, "certrotate_rotations_total").filter(|v| *v >= 1.0)
    });
    let text = wait_for("two more rotations", BOUND, || {
        let (_, t) = http_get(&addr, "/metrics");
        (sample(&t, "certrotate_rotations_total")? >= first + 2.0).then_some(t)
    });
    check_with_python_parser(&text);
    let rotations = sample(&text, "certrotate_rotations_total").unwrap();
    // Each rotation after the first observed how long its predecessor lived.
    let observed = sample(
        &text,
        "kubelet_certificate_manager_server_rotation_seconds_count",
    )
    .unwrap();
    assert!(observed >= rotations - 1.0, "{text}");
    // One exec per new certificate; none failed.
    assert!(
        sample(&text, "certrotate_hook_runs_total").unwrap() >= rotations - 1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "certrotate_hook_failures_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kubelet_server_expiration_renew_errors"),
        Some(0.0),
        "{text}"
    );
    assert!(sample(&text, "certrotate_last_rotation_timestamp_seconds").unwrap() > 1.7e9);
    assert_eq!(http_get(&addr, "/nope").0, 404);
}

/// The README's "Run it as a daemon" block, run as it is written (with the built binary first
/// on PATH), in an empty directory.
#[test]
fn readme_daemon_example_runs() {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Run it as a daemon")
        .nth(1)
        .expect("the README has the section");
    // The second `sh` block of the section (the first one builds the command).
    let block = section
        .split("```sh\n")
        .nth(2)
        .and_then(|b| b.split("\n```").next())
        .expect("the example block");
    let has_curl = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_curl {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is required when CI is set"
        );
        eprintln!("SKIPPED: curl is absent; the README example did not run");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Running(
        Command::new("bash")
            .args(["-e", "-c", block])
            .current_dir(tmp.path())
            .env("PATH", path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let (status, _) = wait_exit(&mut child.0, BOUND);
    let out = reader.join().unwrap();
    assert!(status.success(), "{status:?}\n{out}");
    assert!(
        out.lines()
            .filter(|l| l.starts_with("new certificate "))
            .count()
            >= 3,
        "{out}"
    );
    assert!(out.contains("problems:         none"), "{out}");
    assert_eq!(mode(&tmp.path().join("demo/tls.key")), 0o600);
    assert_eq!(mode(&tmp.path().join("demo/tls.crt")), 0o644);
}

/// `run --config FILE`: a YAML file of flags does what the flags do; a flag on the command
/// line overrides a single value of the file and adds to a list; an unknown key is refused by name (exit 2).
#[test]
fn run_config_file_is_equivalent_to_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(tmp.path(), &[]);
    let pki = tmp.path().join("pki");
    let config = tmp.path().join("run.yaml");
    fs::write(
        &config,
        format!(
            "kubeconfig: {}\nsigner-name: example.com/cli-test\ncn: from-file\norg: [team-a]\n\
             usages: [digital signature, client auth]\ndns: [localhost]\ndir: {}\n\
             key_file: {}\nonce: true\n",
            serve.admin_kubeconfig().display(),
            pki.display(),
            tmp.path().join("out/tls.key").display(),
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .args(["--cn", "from-flag", "--org", "team-b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(mode(&tmp.path().join("out/tls.key")), 0o600);
    let out = Command::new(BIN)
        .args(["status", "--json"])
        .arg(&pki)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["certificate"]["common_name"], "from-flag");
    assert_eq!(
        v["certificate"]["organizations"],
        serde_json::json!(["team-a", "team-b"])
    );
    assert_eq!(
        v["certificate"]["dns_names"],
        serde_json::json!(["localhost"])
    );

    fs::write(&config, "signer-nmae: x\n").unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--signer-nmae"),
        "{}",
        text(&out)
    );
    fs::write(&config, "- not a mapping\n").unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must be a mapping"),
        "{}",
        text(&out)
    );
}

/// `deploy/certrotate.yaml`, the documented config file for a client certificate from
/// `kubernetes.io/kube-apiserver-client`, is accepted as it is by the embedded server's rules
/// for that signer (usages, subject); only the paths are moved into a temporary directory.
#[test]
fn deploy_config_example_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(tmp.path(), &[]);
    let out_dir = tmp.path().join("out");
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/certrotate.yaml"
        ))
        .arg("--kubeconfig")
        .arg(serve.admin_kubeconfig())
        .arg("--dir")
        .arg(tmp.path().join("pki"))
        .arg("--cert-file")
        .arg(out_dir.join("tls.crt"))
        .arg("--key-file")
        .arg(out_dir.join("tls.key"))
        .arg("--ca-file")
        .arg(out_dir.join("ca.crt"))
        .args(["--metrics-addr", "127.0.0.1:0", "--once"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let cert = Certificate::from_pem(
        &fs::read(out_dir.join("tls.crt")).unwrap(),
        &fs::read(out_dir.join("tls.key")).unwrap(),
    )
    .unwrap();
    assert_eq!(cert.common_name(), "my-service");
    assert_eq!(cert.organizations(), ["my-team"]);
    assert!(tmp.path().join("pki/my-service-current.pem").exists());
}

/// Credentials never reach the log, at any level, in either format: a node bootstraps with a
/// bootstrap token (`serve --bootstrap-token`, its `bootstrap.kubeconfig`) under `RUST_LOG=trace`
/// and `--log-format json`, and neither process writes the token secret or key material.
/// Every line of the JSON log is one JSON object with `ts`, `level`, `target` and `msg`.
#[test]
fn logs_hold_no_credentials_and_json_lines_parse() {
    const ID: &str = "c3r7id";
    const SECRET: &str = "s3cr3tvalue0000z";
    let tmp = tempfile::tempdir().unwrap();
    let serve_err = tmp.path().join("serve.log");
    let mut cmd = Command::new(BIN);
    cmd.args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .args(["--bootstrap-token", &format!("{ID}.{SECRET}")])
        .arg("--kubeconfig-dir")
        .arg(tmp.path().join("kc"))
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&serve_err).unwrap());
    let mut serve = Running(cmd.spawn().unwrap());
    let stdout = serve.0.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(first.starts_with("serving https://"), "{first:?}");

    let out = Command::new(BIN)
        .args(["--log-format", "json", "run", "--kubeconfig"])
        .arg(tmp.path().join("kc/bootstrap.kubeconfig"))
        .args([
            "--signer-name",
            "kubernetes.io/kube-apiserver-client-kubelet",
        ])
        .args(["--cn", "system:node:n1", "--org", "system:nodes"])
        .args(["--usages", "digital signature,client auth", "--once"])
        .arg("--dir")
        .arg(tmp.path().join("pki"))
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    signal(&serve.0, Signal::TERM);
    let (status, _) = wait_exit(&mut serve.0, BOUND);
    assert!(status.success());

    let key = fs::read_to_string(tmp.path().join("pki/certrotate-current.pem")).unwrap();
    let key_body: String = key
        .split("-----BEGIN PRIVATE KEY-----")
        .nth(1)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    let run_log = String::from_utf8_lossy(&out.stderr).into_owned();
    let serve_log = fs::read_to_string(&serve_err).unwrap();
    assert!(
        run_log.lines().count() > 10,
        "trace logging is on: {run_log}"
    );
    for (who, log) in [("run", &run_log), ("serve", &serve_log)] {
        assert!(
            !log.contains(SECRET),
            "{who} logged the bootstrap token secret"
        );
        assert!(
            !log.contains(&key_body),
            "{who} logged private key material"
        );
        for line in log.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{who}: not a JSON line ({e}): {line}"));
            for field in ["ts", "level", "target", "msg"] {
                assert!(v[field].is_string(), "{who}: no {field} in {line}");
            }
        }
    }
}

/// `python3` from PATH, a real peer for signal names and numbers; `None` (after a loud
/// `SKIPPED` line) outside CI when it is missing, a panic in CI.
fn python3() -> Option<&'static str> {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("python3");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "python3 is required when CI is set"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: python3 is absent; no signal was checked against it ***\n"
    );
    None
}

/// `--signal`: one rule for every spelling. Every signal the platform has (as Python's `signal`
/// module names and numbers them, aliases and real-time signals included) is tried by name
/// without `SIG`, with `sig` in lower case, in mixed case and by number. What is accepted is
/// exactly what `certrotate run --help` lists, and each accepted spelling is delivered to a real
/// process as that very signal (the receiver names what it got, with Python's names); what is
/// refused exits 2 naming the input, SIGKILL and SIGSTOP as signals a process cannot catch.
#[test]
fn every_accepted_signal_name_and_number_is_delivered_as_that_signal() {
    let Some(python) = python3() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(tmp.path(), &[]);
    let pki = tmp.path().join("pki");
    let out = run_cmd(&serve, &pki).arg("--once").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The documented list: the names `--help` gives for --signal.
    let help = Command::new(BIN).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).replace('\n', " ");
    let listed: Vec<String> = help
        .split("on this platform:")
        .nth(1)
        .and_then(|t| t.split('(').next())
        .expect("--help lists the signal names")
        .split_whitespace()
        .map(|n| format!("SIG{n}"))
        .collect();
    assert!(
        [
            "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGWINCH", "SIGQUIT"
        ]
        .iter()
        .all(|n| listed.iter().any(|l| l == n)),
        "{listed:?}"
    );

    // Python's view: every SIG* name of its signal module, its number, and the canonical name
    // of that number.
    let table = Command::new(python)
        .args([
            "-c",
            "import signal\nfor n in sorted(dir(signal)):\n    \
             if n.startswith('SIG') and not n.startswith('SIG_'):\n        \
             v = int(getattr(signal, n))\n        \
             print(n, v, signal.Signals(v).name)",
        ])
        .output()
        .unwrap();
    assert!(table.status.success(), "{}", text(&table));
    let table: Vec<(String, i32, String)> = String::from_utf8_lossy(&table.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_owned(), f[1].parse().unwrap(), f[2].to_owned())
        })
        .collect();
    assert!(table.len() >= 30, "{table:?}");

    // The receiver: catches every signal it can and writes the name of each it gets.
    let got = tmp.path().join("got");
    let ready = tmp.path().join("ready");
    let receiver = Running(
        Command::new(python)
            .args([
                "-c",
                "import signal, sys\nout = open(sys.argv[1], 'a', buffering=1)\n\
                 def h(n, f):\n    out.write(signal.Signals(n).name + '\\n')\n\
                 for s in signal.valid_signals():\n    \
                 if s in (signal.SIGKILL, signal.SIGSTOP):\n        continue\n    \
                 try:\n        signal.signal(s, h)\n    except (OSError, ValueError):\n        pass\n\
                 open(sys.argv[2], 'w').close()\nwhile True:\n    signal.pause()",
            ])
            .arg(&got)
            .arg(&ready)
            .spawn()
            .unwrap(),
    );
    wait_for("the signal receiver", BOUND, || {
        ready.exists().then_some(())
    });
    let pid = receiver.0.id().to_string();

    let mut runs = 0;
    let mut try_spelling = |spelling: &str| -> Result<String, String> {
        runs += 1;
        let out = Command::new(BIN)
            .args(["run", "--once", "--kubeconfig"])
            .arg(serve.admin_kubeconfig())
            .args(["--signer-name", "example.com/cli-test", "--cn", "cli-test"])
            .args(["--usages", "digital signature,server auth", "--dir"])
            .arg(&pki)
            // A new plain file each time, so that each pass delivers and signals.
            .arg("--cert-file")
            .arg(tmp.path().join(format!("out/{runs}.crt")))
            .arg(format!("--signal={spelling}"))
            .args(["--pid", &pid])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => {
                let seen = wait_for(&format!("the receiver to get {spelling:?}"), BOUND, || {
                    let l = lines(&got);
                    (l.len() == runs).then(|| l.last().cloned()).flatten()
                });
                Ok(seen)
            }
            Some(2) => {
                assert!(
                    stderr.contains(&format!("{spelling:?}")),
                    "the refusal names the input: {stderr}"
                );
                runs -= 1;
                Err(stderr)
            }
            _ => panic!("--signal {spelling:?}: {}", text(&out)),
        }
    };

    let mut accepted_names = Vec::new();
    let mut numbers_done = Vec::new();
    for (name, number, canonical) in &table {
        let bare = &name[3..];
        let mixed: String = bare
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect();
        let lower_sig = name.to_ascii_lowercase();
        let by_name: Vec<Result<String, String>> = [bare.to_owned(), lower_sig, mixed]
            .iter()
            .map(|s| try_spelling(s))
            .collect();
        let should = listed.contains(name) && name == canonical;
        for r in &by_name {
            match r {
                Ok(seen) => {
                    assert!(should, "{name} is not documented but was accepted");
                    assert_eq!(seen, canonical, "--signal for {name} delivered {seen}");
                }
                Err(why) => {
                    assert!(!should, "{name} is documented but was refused: {why}");
                    if name == "SIGKILL" || name == "SIGSTOP" {
                        assert!(why.contains("cannot catch"), "{why}");
                    } else {
                        assert!(why.contains("unknown signal"), "{why}");
                    }
                }
            }
        }
        if should {
            accepted_names.push(name.clone());
        }
        if !numbers_done.contains(number) {
            numbers_done.push(*number);
            match try_spelling(&number.to_string()) {
                Ok(seen) => {
                    assert!(
                        listed.contains(canonical),
                        "{number} ({canonical}) is not documented but was accepted"
                    );
                    assert_eq!(&seen, canonical, "--signal {number} delivered {seen}");
                }
                Err(why) => assert!(
                    !listed.contains(canonical),
                    "{number} ({canonical}) is documented but was refused: {why}"
                ),
            }
        }
    }
    accepted_names.sort();
    let mut documented = listed.clone();
    documented.sort();
    assert_eq!(
        accepted_names, documented,
        "each documented name is a signal the platform has"
    );

    // Not signals at all.
    for bad in [
        "",
        "FOO",
        "SIG",
        "SIGSIGHUP",
        " HUP",
        "HUP ",
        "+1",
        "-1",
        "0",
        "65",
        "RTMIN+1",
        "1.0",
    ] {
        let why = try_spelling(bad).expect_err(bad);
        assert!(why.contains("unknown signal"), "{bad:?}: {why}");
    }
}

/// `--owner UID:GID`: as root the plain files are given to that owner with their documented
/// modes; a process that is not root is refused at start (exit 2) naming the cause, before it
/// reads anything; `--owner` without a plain file is refused. Skipped (with the reason printed)
/// when the test does not run as root.
#[test]
fn owner_is_applied_as_root_and_refused_to_other_users() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    if !rustix::process::geteuid().is_root() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: not running as root; --owner was not checked ***\n"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(tmp.path(), &[]);
    let out = tmp.path().join("out");
    let out_run = run_cmd(&serve, &tmp.path().join("pki"))
        .args(["--once", "--owner", "65534:65534", "--cert-file"])
        .arg(out.join("tls.crt"))
        .arg("--key-file")
        .arg(out.join("tls.key"))
        .arg("--ca-file")
        .arg(out.join("ca.crt"))
        .output()
        .unwrap();
    assert_eq!(out_run.status.code(), Some(0), "{}", text(&out_run));
    for (file, want_mode) in [("tls.crt", 0o644), ("tls.key", 0o600), ("ca.crt", 0o644)] {
        let meta = fs::metadata(out.join(file)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{file}");
        assert_eq!(meta.mode() & 0o7777, want_mode, "{file}");
    }

    let refused = run_cmd(&serve, &tmp.path().join("pki"))
        .args(["--once", "--owner", "65534:65534"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("none was given"),
        "{}",
        text(&refused)
    );

    // The same command as user nobody: refused before the kubeconfig (which nobody cannot
    // read) is opened.
    let as_nobody = run_cmd(&serve, &tmp.path().join("pki-nobody"))
        .args(["--once", "--owner", "0:0", "--cert-file"])
        .arg(tmp.path().join("nobody/tls.crt"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(as_nobody.status.code(), Some(2), "{}", text(&as_nobody));
    let stderr = String::from_utf8_lossy(&as_nobody.stderr);
    assert!(
        stderr.contains("--owner 0:0: giving the written files to another user needs root")
            && stderr.contains("uid 65534"),
        "{}",
        text(&as_nobody)
    );
    assert!(!tmp.path().join("nobody").exists());
}

/// Builds the `rotate` example with the features this test was built with and returns its
/// path (a no-op build when `cargo test` already built it).
fn rotate_example() -> PathBuf {
    let all = cfg!(all(
        feature = "server",
        feature = "cli",
        feature = "prometheus",
        feature = "test-util"
    ));
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--example",
        "rotate",
        "--message-format",
        "json",
    ]);
    if all {
        cmd.arg("--all-features");
    } else {
        cmd.args(["--features", "server,cli"]);
    }
    // Without what cargo set for this test process only: a build script that reads one of
    // them (ring's reads CARGO_MANIFEST_DIR) would otherwise be rebuilt here and again by the
    // next plain `cargo` command.
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("CARGO_PKG_")
            || n.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_TARGET_TMPDIR",
                "CARGO_PRIMARY_PACKAGE",
                "OUT_DIR",
            ]
            .contains(&n.as_ref())
        {
            cmd.env_remove(&name);
        }
    }
    let out = cmd.stderr(Stdio::inherit()).output().expect("cargo build");
    assert!(out.status.success(), "building the rotate example failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "rotate")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .expect("the rotate example's executable")
}

/// The `rotate` example removes its temporary directory (with the demo kubeconfig, which holds
/// a client key and is 0600) when SIGINT arrives mid-run or SIGTERM arrives while it starts,
/// and exits 128 + the signal number.
#[test]
fn rotate_example_removes_its_temporary_directory_on_sigint_and_sigterm() {
    let example = rotate_example();
    for (sig, when) in [
        (Signal::INT, "HTTPS server on"),
        (Signal::TERM, "certificate directory:"),
    ] {
        let mut child = Running(
            Command::new(&example)
                .args(["--duration", "60", "--lifetime", "3"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut temp = None;
        wait_for(&format!("the example to print {when:?}"), BOUND, || {
            let line = rx.recv_timeout(BOUND).ok()?;
            // The pairs go to `pki` in the temporary directory, next to the kubeconfig.
            if let Some(dir) = line.strip_prefix("certificate directory: ") {
                temp = Path::new(dir).parent().map(Path::to_path_buf);
            }
            line.starts_with(when).then_some(())
        });
        let temp = temp.expect("the example printed its temporary directory");
        assert!(temp.is_dir());
        if sig == Signal::INT {
            assert_eq!(mode(&temp.join("kubeconfig")), 0o600);
        }
        signal(&child.0, sig);
        let (status, _) = wait_exit(&mut child.0, BOUND);
        assert!(!temp.exists(), "{sig:?} left {}", temp.display());
        assert_eq!(status.code(), Some(128 + sig.as_raw()), "{sig:?}");
    }
}

/// `deploy/certrotate.service` passes `systemd-analyze verify` without a warning (an unknown key
/// or a bad value is only a warning there), with `ExecStart` pointed at the built binary, and
/// its `ExecStart` command line is one `certrotate` accepts. Skipped with the reason printed
/// when `systemd-analyze` is absent.
#[test]
fn deploy_systemd_unit_verifies() {
    let unit = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/certrotate.service"
    ))
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(argv[0], "/usr/local/bin/certrotate", "{exec}");
    // The same arguments, with a config file that exists, reach the configuration checks.
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("my-service.yaml");
    fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/certrotate.yaml"),
        &config,
    )
    .unwrap();
    let args: Vec<String> = argv[1..]
        .iter()
        .map(|a| {
            if *a == "/etc/certrotate/my-service.yaml" {
                config.display().to_string()
            } else {
                (*a).to_owned()
            }
        })
        .collect();
    let out = Command::new(BIN).args(&args).output().unwrap();
    // Exit 2 for the kubeconfig the example names, which is not on this machine: the flags
    // and the file were accepted.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/etc/certrotate/kubeconfig"),
        "{}",
        text(&out)
    );

    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: systemd-analyze is absent; deploy/certrotate.service was not verified ***\n"
        );
        return;
    }
    let path = tmp.path().join("certrotate-my-service.service");
    fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/certrotate",
            &Path::new(BIN).display().to_string(),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let warnings: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&out.stdout).lines())
        .map(str::to_owned)
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}
