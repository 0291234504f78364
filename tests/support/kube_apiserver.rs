//! A real kube-apiserver, with etcd and kube-controller-manager's CSR approver and signers, as a
//! test peer: `tests/peers/cmd/kube-apiserver-peer` (see `tests/peers/README.md`), built with
//! `go build` and started as a child process.
//!
//! The child writes its CA, kubeconfigs, etcd data and audit log into a temporary directory,
//! prints one JSON line when it is ready, then takes commands on stdin (`compact`). It exits
//! when its stdin closes, so it never outlives the test process, even when it is kept in a
//! `static` that is never dropped. Its log (klog) goes to
//! `$CARGO_TARGET_DIR/peers/logs/kube-apiserver-peer-<pid>-<n>.log`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use serde_json::Value;

#[path = "go_peer.rs"]
mod go_peer;

/// How long the child may take to be ready: etcd, the apiserver's post-start hooks, the
/// bootstrap RBAC policy and the controllers' caches, on a small and busy machine.
const READY_BOUND: Duration = Duration::from_secs(240);

/// A running peer.
pub struct KubeApiserver {
    child: Mutex<Child>,
    stdin: Mutex<ChildStdin>,
    lines: Receiver<Value>,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// The directory the child writes into (CA, kubeconfigs, audit log).
    pub dir: PathBuf,
    /// The static token of user `admin` (group `system:masters`).
    pub admin_token: String,
    /// The static token of user `requester` (group `requesters`).
    pub requester_token: String,
    /// `ID.SECRET`, user `system:bootstrap:ID`.
    pub bootstrap_token: String,
    /// How long the child took to be ready.
    pub startup: Duration,
    /// The child's log file.
    pub log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl KubeApiserver {
    /// Builds and starts the peer with extra kube-apiserver flags. `None` outside CI when Go is
    /// missing or the peer was never built (see `go_peer::build`).
    pub fn start(apiserver_flags: &[&str]) -> Option<KubeApiserver> {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let bin = go_peer::build("kube-apiserver-peer")?;
        let tmp = tempfile::Builder::new()
            .prefix("kube-apiserver-peer")
            .tempdir()
            .expect("temp dir");
        let logs = bin.parent().expect("peers dir").join("logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        let log = logs.join(format!(
            "kube-apiserver-peer-{}-{}.log",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let started = Instant::now();
        let mut child = Command::new(&bin)
            .arg("-dir")
            .arg(tmp.path().join("cluster"))
            .arg("--")
            .args(apiserver_flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("starting kube-apiserver-peer");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("kube-apiserver-peer: {line}"),
                }
            }
        });
        let ready = match lines.recv_timeout(READY_BOUND) {
            Ok(v) if v["event"] == "ready" => v,
            other => {
                let _ = child.kill();
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = tail
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!(
                    "kube-apiserver-peer not ready within {READY_BOUND:?}: {other:?}\nlog {}:\n{tail}",
                    log.display()
                );
            }
        };
        let field = |k: &str| ready[k].as_str().expect(k).to_owned();
        let startup = started.elapsed();
        eprintln!(
            "kube-apiserver-peer ready at {} in {:.1}s (log {})",
            field("server"),
            startup.as_secs_f64(),
            log.display()
        );
        Some(KubeApiserver {
            server: field("server"),
            dir: PathBuf::from(field("dir")),
            admin_token: field("adminToken"),
            requester_token: field("requesterToken"),
            bootstrap_token: field("bootstrapToken"),
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            lines,
            startup,
            log,
            _tmp: tmp,
        })
    }

    /// The cluster CA (PEM): the serving certificate's issuer and the signers' CA.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca.crt")).expect("ca.crt")
    }

    /// A kubeconfig with the admin token.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// A kubeconfig with the token of user `requester` (group `requesters`, bound to
    /// `system:node-bootstrapper`: create, get, list and watch CSRs, nothing else).
    pub fn requester_kubeconfig(&self) -> PathBuf {
        self.dir.join("requester.kubeconfig")
    }

    /// A kubeconfig with the bootstrap token.
    pub fn bootstrap_kubeconfig(&self) -> PathBuf {
        self.dir.join("bootstrap.kubeconfig")
    }

    /// The user name of the bootstrap token.
    pub fn bootstrap_user(&self) -> String {
        let id = self.bootstrap_token.split('.').next().unwrap_or_default();
        format!("system:bootstrap:{id}")
    }

    /// Compacts etcd at its current revision; returns the revision.
    pub fn compact(&self) -> i64 {
        let mut stdin = self.stdin.lock();
        writeln!(stdin, "compact").expect("writing to kube-apiserver-peer");
        stdin.flush().expect("flush");
        let answer = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("no answer to compact");
        assert_eq!(answer["event"], "compacted", "{answer}");
        answer["revision"].as_i64().expect("revision")
    }

    /// Writes the apiserver's OpenAPI documents, cut down to what the embedded server serves,
    /// into `dir` (the peer's `openapi` command); returns the file names.
    pub fn dump_openapi(&self, dir: &Path) -> Vec<String> {
        let mut stdin = self.stdin.lock();
        writeln!(stdin, "openapi {}", dir.display()).expect("writing to kube-apiserver-peer");
        stdin.flush().expect("flush");
        let answer = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("no answer to openapi");
        assert_eq!(answer["event"], "openapi", "{answer}");
        answer["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| f.as_str().expect("file name").to_owned())
            .collect()
    }

    /// The apiserver's audit events so far (one JSON object per request, level Metadata,
    /// `certificates.k8s.io` only, stage ResponseComplete or ResponseStarted for watches).
    pub fn audit_events(&self) -> Vec<Value> {
        read_json_lines(&self.dir.join("audit.log"))
    }
}

impl Drop for KubeApiserver {
    fn drop(&mut self) {
        let mut child = self.child.lock();
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn read_json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
