//! Real Kubernetes clients against the embedded server: kubectl and the official Python client,
//! as a user would drive them.
//!
//! - kubectl is built from `k8s.io/kubectl` (the release pinned in `tests/peers/go.mod`, the same
//!   `main` as the released binary; see `tests/peers/README.md`) into `target/peers/kubectl`.
//!   A `kubectl` found on the machine is never used.
//! - The Python client is the `kubernetes` package pinned in
//!   `tests/support/python-client-requirements.txt`, installed into `target/py-client`; the
//!   tests run small scripts with that environment's interpreter and its typed
//!   `CertificatesV1Api`.
//!
//! Each test starts its own server (manual approval, so that only the test approves) and checks
//! the outcome where it lands: the objects the server holds, the client's exit code and the
//! fields it prints. kubectl runs with validation on (its default, `--validate=strict`), a
//! private `HOME` (so no discovery cache or `kuberc` is shared) and no proxy.
//!
//! Covered with kubectl: create with validation (against the server's OpenAPI documents and
//! `fieldValidation=Strict`), get (table, JSON, YAML), list with selectors, watch, describe,
//! certificate approve and deny, delete with and without `--dry-run=server`, label, annotate,
//! patch (merge, strategic, JSON), apply (client-side and `--server-side`), `auth can-i`,
//! `auth whoami` and `api-resources`. With the Python client: create, read, list, watch,
//! replace approval, patch and delete.
//!
//! Both tools are built or installed on first use (`.ci/run` does it first and prints the
//! times). Without Go or Python the tests fail when `CI` is set and otherwise print a loud
//! `SKIPPED` line and pass.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certrotate::csr::api::CertificateSigningRequest;
use certrotate::server::{
    ApprovalPolicy, CsrApiServer, GROUP_MASTERS, Identity, SIGNER_KUBE_APISERVER_CLIENT,
};
use serde_json::Value;

#[path = "support/go_peer.rs"]
mod go_peer;
#[path = "support/py_client.rs"]
mod py_client;
mod server_common;

use server_common::{Client, client_body};

/// How long one client command may run before it is killed and the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a watching client may take to show an event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
const ADMIN: &str = "certrotate:admin";
const NODE: &str = "system:node:real-clients";
const NODES: &str = "system:nodes";
const USAGES: [&str; 2] = ["digital signature", "client auth"];

fn kubectl_binary() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| go_peer::build("kubectl")).clone()
}

fn python_binary() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(py_client::python).clone()
}

/// What a finished command gave.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn explain(&self) -> String {
        format!(
            "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    fn ok(self) -> Out {
        assert_eq!(self.code, Some(0), "command failed\n{}", self.explain());
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.explain()))
    }
}

/// Runs a prepared command to its end, with `stdin` fed, killing it after [`COMMAND_TIMEOUT`].
fn finish(mut cmd: Command, stdin: Option<&str>) -> Out {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a client");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes()).expect("writing stdin");
    }
    let out_t = reader(&mut child, true);
    let err_t = reader(&mut child, false);
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for a client") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code(),
        stdout: out_t.join().expect("stdout reader"),
        stderr: err_t.join().expect("stderr reader"),
    }
}

fn reader(child: &mut Child, stdout: bool) -> std::thread::JoinHandle<String> {
    let mut pipe: Box<dyn Read + Send> = if stdout {
        Box::new(child.stdout.take().expect("piped stdout"))
    } else {
        Box::new(child.stderr.take().expect("piped stderr"))
    };
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    })
}

/// A running client whose stdout is read line by line (a watch); killed on drop.
struct Streaming {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Streaming {
    fn start(mut cmd: Command) -> Streaming {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting a client");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Some(reader(&mut child, false));
        Streaming {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits, at most [`EVENT_TIMEOUT`], for a line satisfying `f`.
    #[track_caller]
    fn until(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if f(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {what} within {EVENT_TIMEOUT:?}\n{}", self.explain())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("output ended before {what}\n{}", self.explain())
                }
            }
        }
    }

    fn explain(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{stderr}",
            self.seen.join("\n")
        )
    }

    /// Waits, at most [`COMMAND_TIMEOUT`], for the client to exit by itself.
    #[track_caller]
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if let Some(s) = self.child.try_wait().expect("waiting for a client") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(line);
                }
                return s.code();
            }
            if Instant::now() > deadline {
                panic!("the client did not exit\n{}", self.explain());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One server, a scratch directory and kubeconfigs for it.
struct Env {
    server: CsrApiServer,
    dir: tempfile::TempDir,
    admin: PathBuf,
}

impl Env {
    fn new() -> Env {
        let server = CsrApiServer::builder()
            .approval_policy(ApprovalPolicy::Manual)
            .start()
            .expect("starting the embedded server");
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir(dir.path().join("home")).expect("home directory");
        let mut env = Env {
            server,
            dir,
            admin: PathBuf::new(),
        };
        env.admin = env.kubeconfig(&Identity::admin(), "admin.kubeconfig");
        env
    }

    fn kubeconfig(&self, identity: &Identity, file: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        let text = self.server.kubeconfig(identity).expect("kubeconfig");
        std::fs::write(&path, text).expect("writing a kubeconfig");
        path
    }

    fn node_kubeconfig(&self) -> PathBuf {
        self.kubeconfig(&Identity::client_cert(NODE, &[NODES]), "node.kubeconfig")
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// kubectl with `kubeconfig`, a private `HOME`, no proxy and a request timeout.
    fn kubectl_cmd(&self, bin: &Path, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--request-timeout=30s")
            .args(args)
            .env("HOME", self.dir.path().join("home"))
            .env_remove("KUBECONFIG")
            .env_remove("KUBERC")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy");
        cmd
    }

    fn kubectl(&self, bin: &Path, args: &[&str]) -> Out {
        finish(self.kubectl_cmd(bin, &self.admin, args), None)
    }

    fn kubectl_as(&self, bin: &Path, kubeconfig: &Path, args: &[&str]) -> Out {
        finish(self.kubectl_cmd(bin, kubeconfig, args), None)
    }

    /// A Python script run with the client's interpreter; `KUBECONFIG_FILE` names the admin
    /// kubeconfig.
    fn python_cmd(&self, python: &Path, script: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(python);
        cmd.arg("-c")
            .arg(format!("{PY_PRELUDE}\n{script}"))
            .args(args)
            .env("KUBECONFIG_FILE", &self.admin)
            .env("PYTHONUNBUFFERED", "1")
            .env("HOME", self.dir.path().join("home"))
            .env_remove("KUBECONFIG")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy");
        cmd
    }

    fn python(&self, python: &Path, script: &str, args: &[&str]) -> Out {
        finish(self.python_cmd(python, script, args), None)
    }

    /// Creates a pending client CSR named `name` through the API (the setup of tests that are
    /// about other verbs).
    fn create(&self, name: &str, cn: &str) -> Value {
        Client::admin(&self.server).create(&client_body(Some(name), cn).0)
    }

    /// The stored CSR `name`; panics when it is missing.
    #[track_caller]
    fn stored(&self, name: &str) -> CertificateSigningRequest {
        self.server
            .csr(name)
            .unwrap_or_else(|| panic!("the server holds no CSR {name}"))
    }

    /// Waits, at most [`EVENT_TIMEOUT`], for the signer to issue `name`'s certificate.
    #[track_caller]
    fn wait_issued(&self, name: &str) -> Vec<u8> {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(cert) = self.stored(name).status.and_then(|s| s.certificate) {
                return cert;
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not issued within {EVENT_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A CSR manifest for a fresh key, in YAML as a user writes it.
    fn manifest(&self, file: &str, name: &str, cn: &str, labels: &[(&str, &str)]) -> PathBuf {
        let (body, _key) = client_body(Some(name), cn);
        let request = body["spec"]["request"].as_str().expect("request");
        let mut yaml = format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\n"
        );
        if !labels.is_empty() {
            yaml.push_str("  labels:\n");
            for (k, v) in labels {
                yaml.push_str(&format!("    {k}: {v}\n"));
            }
        }
        yaml.push_str(&format!(
            "spec:\n  request: {request}\n  signerName: {SIGNER_KUBE_APISERVER_CLIENT}\n  expirationSeconds: 3600\n  usages:\n  - {}\n  - {}\n",
            USAGES[0], USAGES[1]
        ));
        let path = self.path(file);
        std::fs::write(&path, yaml).expect("writing a manifest");
        path
    }
}

fn condition_types(csr: &CertificateSigningRequest) -> Vec<String> {
    csr.status
        .as_ref()
        .map(|s| s.conditions.iter().map(|c| c.type_.clone()).collect())
        .unwrap_or_default()
}

fn labels(csr: &CertificateSigningRequest) -> BTreeMap<String, String> {
    csr.metadata.labels.clone().unwrap_or_default()
}

fn annotations(csr: &CertificateSigningRequest) -> BTreeMap<String, String> {
    csr.metadata.annotations.clone().unwrap_or_default()
}

/// The kubectl line for a changed object: `certificatesigningrequest.certificates.k8s.io/NAME
/// VERB`.
fn changed(name: &str, verb: &str) -> String {
    format!("certificatesigningrequest.certificates.k8s.io/{name} {verb}")
}

macro_rules! kubectl_or_skip {
    () => {
        match kubectl_binary() {
            Some(bin) => bin,
            None => return,
        }
    };
}

macro_rules! python_or_skip {
    () => {
        match python_binary() {
            Some(bin) => bin,
            None => return,
        }
    };
}

// ---------------------------------------------------------------------------------------------
// kubectl

/// The binary is the pinned release, and it reads the server's `/version`.
#[test]
fn kubectl_is_the_pinned_release_and_reads_the_server_version() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    let release = go_peer::kubectl_release(Path::new(env!("CARGO_MANIFEST_DIR")));
    let out = env.kubectl(&bin, &["version", "-o", "json"]).ok();
    let v = out.json();
    assert_eq!(v["clientVersion"]["gitVersion"], release.as_str());
    let served = Client::admin(&env.server).get("/version").body;
    assert_eq!(v["serverVersion"]["gitVersion"], served["gitVersion"]);
    assert_eq!(v["serverVersion"]["minor"], served["minor"]);
}

/// `kubectl create -f` with validation on stores the manifest as written, with the caller as
/// requester; an unknown field is refused by strict validation and stores nothing.
#[test]
fn kubectl_create_with_validation_stores_the_manifest() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    let file = env.manifest("csr.yaml", "made-by-kubectl", "alice", &[("app", "demo")]);
    let out = env
        .kubectl(&bin, &["create", "-f", file.to_str().expect("path")])
        .ok();
    assert_eq!(out.stdout.trim(), changed("made-by-kubectl", "created"));
    let csr = env.stored("made-by-kubectl");
    assert_eq!(
        csr.spec.signer_name.as_deref(),
        Some(SIGNER_KUBE_APISERVER_CLIENT)
    );
    assert_eq!(csr.spec.usages, USAGES);
    assert_eq!(csr.spec.expiration_seconds, Some(3600));
    assert_eq!(csr.spec.username.as_deref(), Some(ADMIN));
    assert!(csr.spec.groups.iter().any(|g| g == GROUP_MASTERS));
    assert_eq!(labels(&csr).get("app").map(String::as_str), Some("demo"));
    assert_eq!(condition_types(&csr), Vec::<String>::new());

    // Strict validation (kubectl's default) refuses a field the type does not have.
    let bad = env.path("bad.yaml");
    let text = std::fs::read_to_string(&file)
        .expect("manifest")
        .replace("made-by-kubectl", "with-unknown-field")
        .replace("  usages:", "  colour: blue\n  usages:");
    std::fs::write(&bad, text).expect("writing a manifest");
    let out = env.kubectl(&bin, &["create", "-f", bad.to_str().expect("path")]);
    assert_eq!(out.code, Some(1), "{}", out.explain());
    // Client-side (OpenAPI schema) or server-side (`fieldValidation=Strict`) validation: both
    // name the unknown field.
    assert!(
        out.stderr.contains("unknown field") && out.stderr.contains("colour"),
        "{}",
        out.explain()
    );
    assert!(env.server.csr("with-unknown-field").is_none());
}

/// `kubectl get` of one CSR: the table with kubectl's columns, `-o json` and `-o yaml` with the
/// stored fields, and the NotFound error for a missing one.
#[test]
fn kubectl_get_prints_table_json_and_yaml() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    let created = env.create("get-me", "bob");

    let out = env.kubectl(&bin, &["get", "csr", "get-me"]).ok();
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ],
        "{}",
        out.explain()
    );
    assert_eq!(lines.len(), 2, "{}", out.explain());
    let row = &lines[1];
    assert_eq!(row[0], "get-me");
    assert_eq!(row[2], SIGNER_KUBE_APISERVER_CLIENT);
    let requester = env.stored("get-me").spec.username.expect("spec.username");
    assert_eq!(row[3], requester);
    assert_eq!(row[4], "<none>");
    assert_eq!(row[5], "Pending");

    let out = env
        .kubectl(&bin, &["get", "csr", "get-me", "-o", "json"])
        .ok();
    let v = out.json();
    assert_eq!(v["kind"], "CertificateSigningRequest");
    assert_eq!(v["apiVersion"], "certificates.k8s.io/v1");
    assert_eq!(v["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        v["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(v["spec"]["request"], created["spec"]["request"]);
    assert_eq!(v["spec"]["username"], created["spec"]["username"]);
    assert_eq!(v["spec"]["usages"], serde_json::json!(USAGES));

    let out = env
        .kubectl(&bin, &["get", "csr", "get-me", "-o", "yaml"])
        .ok();
    let uid = created["metadata"]["uid"].as_str().expect("uid");
    for line in [
        "apiVersion: certificates.k8s.io/v1".to_owned(),
        "kind: CertificateSigningRequest".to_owned(),
        "  name: get-me".to_owned(),
        format!("  uid: {uid}"),
        format!("  signerName: {SIGNER_KUBE_APISERVER_CLIENT}"),
        format!("  username: {requester}"),
        "  - digital signature".to_owned(),
        "  - client auth".to_owned(),
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "no line {line:?} in\n{}",
            out.explain()
        );
    }

    let out = env.kubectl(&bin, &["get", "csr", "not-there"]);
    assert_eq!(out.code, Some(1), "{}", out.explain());
    assert_eq!(
        out.stderr.trim(),
        "Error from server (NotFound): certificatesigningrequests.certificates.k8s.io \"not-there\" not found"
    );
}

/// `kubectl get csr` lists every CSR (table, `-o name`, `-o json` as a `List`), filtered by a
/// label selector and a field selector; a node sees only its own.
#[test]
fn kubectl_lists_with_selectors_and_per_caller() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    env.create("list-a", "a");
    env.create("list-b", "b");
    // One labelled and requested by a node.
    let node = env.node_kubeconfig();
    let node_client = Client::with_cert(&env.server, NODE, &[NODES]);
    let mut body = client_body(Some("list-node"), NODE).0;
    body["metadata"]["labels"] = serde_json::json!({"tier": "node"});
    node_client.create(&body);

    let out = env.kubectl(&bin, &["get", "csr", "-o", "name"]).ok();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            "certificatesigningrequest.certificates.k8s.io/list-a",
            "certificatesigningrequest.certificates.k8s.io/list-b",
            "certificatesigningrequest.certificates.k8s.io/list-node",
        ],
        "{}",
        out.explain()
    );
    let out = env.kubectl(&bin, &["get", "csr"]).ok();
    assert_eq!(out.stdout.lines().count(), 4, "{}", out.explain());

    let out = env.kubectl(&bin, &["get", "csr", "-o", "json"]).ok();
    let v = out.json();
    assert_eq!(v["kind"], "List");
    let names: Vec<&str> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["list-a", "list-b", "list-node"]);

    let out = env
        .kubectl(&bin, &["get", "csr", "-l", "tier=node", "-o", "name"])
        .ok();
    assert_eq!(
        out.stdout.trim(),
        "certificatesigningrequest.certificates.k8s.io/list-node"
    );
    let out = env
        .kubectl(
            &bin,
            &[
                "get",
                "csr",
                "--field-selector",
                "metadata.name=list-b",
                "-o",
                "name",
            ],
        )
        .ok();
    assert_eq!(
        out.stdout.trim(),
        "certificatesigningrequest.certificates.k8s.io/list-b"
    );

    let out = env
        .kubectl_as(&bin, &node, &["get", "csr", "-o", "name"])
        .ok();
    assert_eq!(
        out.stdout.trim(),
        "certificatesigningrequest.certificates.k8s.io/list-node",
        "a node lists only its own CSRs"
    );
}

/// `kubectl get --watch` shows the pending CSR, then its approval and its issue as they happen.
///
/// The watch is of the list: kubectl watches it from the list's resource version, so the
/// changes are seen whenever its watch request arrives. (For one named object kubectl watches
/// from `resourceVersion=0` and drops the first event as the apiserver's synthetic ADDED, so a
/// change made before its watch request arrives is never shown, with any server.)
#[test]
fn kubectl_get_watch_follows_changes() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    env.create("watched", "carol");
    let mut watch = Streaming::start(env.kubectl_cmd(
        &bin,
        &env.admin,
        &["get", "csr", "--watch", "--no-headers"],
    ));
    let first = watch.until("the pending row", |l| l.starts_with("watched "));
    assert!(first.ends_with("Pending"), "{first}");
    env.server.approve("watched").expect("approving");
    let row = watch.until("the approved row", |l| {
        l.starts_with("watched ") && l.ends_with("Approved")
    });
    let requester = env.stored("watched").spec.username.expect("spec.username");
    assert!(row.contains(&format!(" {requester} ")), "{row}");
    assert!(row.contains(SIGNER_KUBE_APISERVER_CLIENT), "{row}");
    watch.until("the issued row", |l| {
        l.starts_with("watched ") && l.ends_with("Approved,Issued")
    });
    env.wait_issued("watched");
}

/// `kubectl describe csr` shows the requester, signer, subject and status.
#[test]
fn kubectl_describe_shows_the_request() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    env.create("described", "dave");
    env.server.deny("described", "NotToday").expect("denying");
    let out = env.kubectl(&bin, &["describe", "csr", "described"]).ok();
    let fields: Vec<(String, String)> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let field = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {k:?} in\n{}", out.explain()))
    };
    assert_eq!(field("Name"), "described");
    let requester = env
        .stored("described")
        .spec
        .username
        .expect("spec.username");
    assert_eq!(field("Requesting User"), requester);
    assert_eq!(field("Signer"), SIGNER_KUBE_APISERVER_CLIENT);
    assert_eq!(field("Status"), "Denied");
    assert_eq!(field("Common Name"), "dave");
    assert_eq!(field("Organization"), "team");
}

/// `kubectl certificate approve` adds the Approved condition (kubectl's reason) and the signer
/// issues; a node may not approve.
#[test]
fn kubectl_certificate_approve() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    env.create("to-approve", "erin");

    let node = env.node_kubeconfig();
    let out = env.kubectl_as(&bin, &node, &["certificate", "approve", "to-approve"]);
    assert_eq!(out.code, Some(1), "{}", out.explain());
    assert!(
        out.stderr.contains("Error from server (Forbidden)"),
        "{}",
        out.explain()
    );
    assert_eq!(
        condition_types(&env.stored("to-approve")),
        Vec::<String>::new()
    );

    let out = env
        .kubectl(&bin, &["certificate", "approve", "to-approve"])
        .ok();
    assert_eq!(out.stdout.trim(), changed("to-approve", "approved"));
    let csr = env.stored("to-approve");
    let status = csr.status.expect("status");
    let approved = &status.conditions[0];
    assert_eq!(approved.type_, "Approved");
    assert_eq!(approved.status, "True");
    assert_eq!(approved.reason.as_deref(), Some("KubectlApprove"));
    assert_eq!(
        approved.message.as_deref(),
        Some("This CSR was approved by kubectl certificate approve.")
    );
    let pem = env.wait_issued("to-approve");
    assert!(String::from_utf8_lossy(&pem).starts_with("-----BEGIN CERTIFICATE-----"));

    // Approving again changes nothing; denying an approved CSR is refused by kubectl itself.
    let out = env
        .kubectl(&bin, &["certificate", "approve", "to-approve"])
        .ok();
    assert_eq!(
        out.stdout.trim(),
        changed("to-approve", "approved"),
        "{}",
        out.explain()
    );
    assert_eq!(
        condition_types(&env.stored("to-approve")),
        ["Approved".to_owned()]
    );
    let out = env.kubectl(&bin, &["certificate", "deny", "to-approve"]);
    assert_ne!(out.code, Some(0), "{}", out.explain());
    assert!(
        !condition_types(&env.stored("to-approve")).contains(&"Denied".to_owned()),
        "{}",
        out.explain()
    );
}

/// `kubectl certificate deny` adds the Denied condition and nothing is issued.
#[test]
fn kubectl_certificate_deny() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    env.create("to-deny", "frank");
    let out = env.kubectl(&bin, &["certificate", "deny", "to-deny"]).ok();
    assert_eq!(out.stdout.trim(), changed("to-deny", "denied"));
    let csr = env.stored("to-deny");
    let status = csr.status.expect("status");
    assert_eq!(status.conditions.len(), 1);
    assert_eq!(status.conditions[0].type_, "Denied");
    assert_eq!(status.conditions[0].reason.as_deref(), Some("KubectlDeny"));
    assert!(status.certificate.is_none());
    let out = env.kubectl(&bin, &["certificate", "approve", "to-deny"]);
    assert_ne!(out.code, Some(0), "{}", out.explain());
    assert_eq!(
        condition_types(&env.stored("to-deny")),
        ["Denied".to_owned()]
    );
}

/// `kubectl delete --dry-run=server` says what it would delete and deletes nothing; the real
/// delete removes the object; a second delete is NotFound.
#[test]
fn kubectl_delete_with_and_without_server_dry_run() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    let created = env.create("to-delete", "grace");

    let out = env
        .kubectl(&bin, &["delete", "csr", "to-delete", "--dry-run=server"])
        .ok();
    assert_eq!(
        out.stdout.trim(),
        "certificatesigningrequest.certificates.k8s.io \"to-delete\" deleted (server dry run)"
    );
    let kept = env.stored("to-delete");
    assert_eq!(
        kept.metadata.uid.as_deref(),
        created["metadata"]["uid"].as_str(),
        "the dry run left the same object"
    );

    let out = env.kubectl(&bin, &["delete", "csr", "to-delete"]).ok();
    assert_eq!(
        out.stdout.trim(),
        "certificatesigningrequest.certificates.k8s.io \"to-delete\" deleted"
    );
    assert!(env.server.csr("to-delete").is_none());

    let out = env.kubectl(&bin, &["delete", "csr", "to-delete"]);
    assert_eq!(out.code, Some(1), "{}", out.explain());
    assert_eq!(
        out.stderr.trim(),
        "Error from server (NotFound): certificatesigningrequests.certificates.k8s.io \"to-delete\" not found"
    );
}

/// `kubectl label` adds, overwrites and removes labels on the stored object.
#[test]
fn kubectl_label() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    env.create("labelled", "heidi");
    let out = env
        .kubectl(&bin, &["label", "csr", "labelled", "tier=gold"])
        .ok();
    assert_eq!(out.stdout.trim(), changed("labelled", "labeled"));
    assert_eq!(
        labels(&env.stored("labelled"))
            .get("tier")
            .map(String::as_str),
        Some("gold")
    );
    env.kubectl(
        &bin,
        &["label", "csr", "labelled", "tier=silver", "--overwrite"],
    )
    .ok();
    assert_eq!(
        labels(&env.stored("labelled"))
            .get("tier")
            .map(String::as_str),
        Some("silver")
    );
    env.kubectl(&bin, &["label", "csr", "labelled", "tier-"])
        .ok();
    assert!(!labels(&env.stored("labelled")).contains_key("tier"));
}

/// `kubectl annotate` adds and removes annotations on the stored object.
#[test]
fn kubectl_annotate() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    env.create("annotated", "ivan");
    let out = env
        .kubectl(&bin, &["annotate", "csr", "annotated", "owner=team-a"])
        .ok();
    assert_eq!(out.stdout.trim(), changed("annotated", "annotated"));
    assert_eq!(
        annotations(&env.stored("annotated"))
            .get("owner")
            .map(String::as_str),
        Some("team-a")
    );
    env.kubectl(&bin, &["annotate", "csr", "annotated", "owner-"])
        .ok();
    assert!(!annotations(&env.stored("annotated")).contains_key("owner"));
}

/// `kubectl patch` with each patch type changes the stored object as the patch says.
#[test]
fn kubectl_patch_merge_strategic_and_json() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    env.create("patched", "judy");
    let cases = [
        ("merge", r#"{"metadata":{"labels":{"merge":"yes"}}}"#),
        (
            "strategic",
            r#"{"metadata":{"labels":{"strategic":"yes"}}}"#,
        ),
        (
            "json",
            r#"[{"op":"add","path":"/metadata/annotations","value":{"json":"yes"}}]"#,
        ),
    ];
    for (kind, patch) in cases {
        let out = env
            .kubectl(
                &bin,
                &["patch", "csr", "patched", "--type", kind, "-p", patch],
            )
            .ok();
        assert_eq!(out.stdout.trim(), changed("patched", "patched"), "{kind}");
    }
    let csr = env.stored("patched");
    assert_eq!(labels(&csr).get("merge").map(String::as_str), Some("yes"));
    assert_eq!(
        labels(&csr).get("strategic").map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        annotations(&csr).get("json").map(String::as_str),
        Some("yes")
    );
    // The spec cannot change: the CSR strategy's `PrepareForUpdate` puts the stored spec back,
    // so a patch of it succeeds and changes nothing. kube-apiserver 1.37.2 answers this same
    // command `patched (no change)`, exit 0 (checked by hand against the peer of
    // tests/kube_real.rs).
    let out = env.kubectl(
        &bin,
        &[
            "patch",
            "csr",
            "patched",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"usages":["server auth"]}}"#,
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.explain());
    assert_eq!(out.stdout.trim(), changed("patched", "patched (no change)"));
    assert_eq!(env.stored("patched").spec.usages, USAGES);
}

/// `kubectl apply` (client-side): creates with the last-applied annotation, then changes the
/// labels the manifest changes.
#[test]
fn kubectl_apply_client_side() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    let file = env.manifest("apply.yaml", "applied", "kim", &[("stage", "one")]);
    let out = env
        .kubectl(&bin, &["apply", "-f", file.to_str().expect("path")])
        .ok();
    assert_eq!(out.stdout.trim(), changed("applied", "created"));
    let csr = env.stored("applied");
    assert!(
        annotations(&csr).contains_key("kubectl.kubernetes.io/last-applied-configuration"),
        "{:?}",
        csr.metadata
    );
    let text = std::fs::read_to_string(&file)
        .expect("manifest")
        .replace("stage: one", "stage: two");
    std::fs::write(&file, text).expect("writing a manifest");
    let out = env
        .kubectl(&bin, &["apply", "-f", file.to_str().expect("path")])
        .ok();
    assert_eq!(out.stdout.trim(), changed("applied", "configured"));
    assert_eq!(
        labels(&env.stored("applied"))
            .get("stage")
            .map(String::as_str),
        Some("two")
    );
}

/// `kubectl apply --server-side`: creates, then changes the labels the manifest changes.
#[test]
fn kubectl_apply_server_side() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    let file = env.manifest("apply.yaml", "ssa", "leo", &[("stage", "one")]);
    let out = env
        .kubectl(
            &bin,
            &["apply", "--server-side", "-f", file.to_str().expect("path")],
        )
        .ok();
    assert_eq!(out.stdout.trim(), changed("ssa", "serverside-applied"));
    assert_eq!(
        labels(&env.stored("ssa")).get("stage").map(String::as_str),
        Some("one")
    );
    let text = std::fs::read_to_string(&file)
        .expect("manifest")
        .replace("stage: one", "stage: two");
    std::fs::write(&file, text).expect("writing a manifest");
    let out = env
        .kubectl(
            &bin,
            &["apply", "--server-side", "-f", file.to_str().expect("path")],
        )
        .ok();
    assert_eq!(out.stdout.trim(), changed("ssa", "serverside-applied"));
    assert_eq!(
        labels(&env.stored("ssa")).get("stage").map(String::as_str),
        Some("two")
    );
}

/// `kubectl auth can-i`: the administrator may approve and delete; a node may create but not
/// approve or delete (exit 1, `no`).
#[test]
fn kubectl_auth_can_i() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    let node = env.node_kubeconfig();
    let cases: [(&Path, &str, bool); 5] = [
        (&env.admin, "certificatesigningrequests/approval", true),
        (&env.admin, "certificatesigningrequests", true),
        (&node, "certificatesigningrequests/approval", false),
        (&node, "certificatesigningrequests", false),
        (&node, "certificatesigningrequests", true),
    ];
    let verbs = ["update", "delete", "update", "delete", "create"];
    for ((kubeconfig, resource, allowed), verb) in cases.into_iter().zip(verbs) {
        let out = env.kubectl_as(&bin, kubeconfig, &["auth", "can-i", verb, resource]);
        let (code, answer) = if allowed { (0, "yes") } else { (1, "no") };
        assert_eq!(
            (out.code, out.stdout.trim()),
            (Some(code), answer),
            "{verb} {resource} as {}\n{}",
            kubeconfig.display(),
            out.explain()
        );
    }
}

/// `kubectl auth whoami` names the caller and its groups.
#[test]
fn kubectl_auth_whoami() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    let out = env.kubectl(&bin, &["auth", "whoami", "-o", "json"]).ok();
    let v = out.json();
    assert_eq!(v["kind"], "SelfSubjectReview");
    assert_eq!(v["status"]["userInfo"]["username"], ADMIN);
    let groups = v["status"]["userInfo"]["groups"]
        .as_array()
        .expect("groups");
    assert!(groups.iter().any(|g| g == GROUP_MASTERS), "{v}");
    assert!(groups.iter().any(|g| g == "system:authenticated"), "{v}");
    let node = env.node_kubeconfig();
    let out = env.kubectl_as(&bin, &node, &["auth", "whoami"]).ok();
    assert!(out.stdout.contains(NODE), "{}", out.explain());
}

/// `kubectl api-resources` exits 0 and lists the CSR resource with its short name, group
/// version, scope and kind.
#[test]
fn kubectl_api_resources() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    let out = env.kubectl(&bin, &["api-resources"]).ok();
    let row: Vec<&str> = out
        .stdout
        .lines()
        .find(|l| l.starts_with("certificatesigningrequests "))
        .unwrap_or_else(|| panic!("no CSR row\n{}", out.explain()))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [
            "certificatesigningrequests",
            "csr",
            "certificates.k8s.io/v1",
            "false",
            "CertificateSigningRequest"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The Python client (`kubernetes`, `CertificatesV1Api`)

/// Loads the admin kubeconfig; `api` is the typed `CertificatesV1Api`; `emit` prints one JSON
/// line.
const PY_PRELUDE: &str = r#"
import base64, json, os, sys
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
config.load_kube_config(config_file=os.environ["KUBECONFIG_FILE"])
api = client.CertificatesV1Api()
def emit(**kw):
    print(json.dumps(kw, default=str), flush=True)
def conditions(obj):
    return [c.type for c in ((obj.status and obj.status.conditions) or [])]
"#;

/// The CSR PEM of a fresh client CSR, as the Python client sends it (base64 of the PEM).
fn request_b64(cn: &str) -> String {
    let (body, _) = client_body(None, cn);
    let pem = STANDARD
        .decode(body["spec"]["request"].as_str().expect("request"))
        .expect("base64");
    STANDARD.encode(pem)
}

/// create, read, list (with a label selector) through the typed API: the server stores what
/// the client sent, and the client reads back the server's fields.
#[test]
fn python_create_read_list() {
    let python = python_or_skip!();
    let env = Env::new();
    env.create("py-other", "other");
    let script = r#"
name, request = sys.argv[1], sys.argv[2]
body = client.V1CertificateSigningRequest(
    metadata=client.V1ObjectMeta(name=name, labels={"made-by": "python"}),
    spec=client.V1CertificateSigningRequestSpec(
        request=request,
        signer_name="kubernetes.io/kube-apiserver-client",
        usages=["digital signature", "client auth"],
        expiration_seconds=3600,
    ),
)
created = api.create_certificate_signing_request(body)
emit(step="create", name=created.metadata.name, uid=created.metadata.uid,
     username=created.spec.username, conditions=conditions(created))
got = api.read_certificate_signing_request(name)
emit(step="read", uid=got.metadata.uid, signer=got.spec.signer_name, usages=got.spec.usages,
     expiration=got.spec.expiration_seconds, request=got.spec.request)
everything = api.list_certificate_signing_request()
emit(step="list", names=[i.metadata.name for i in everything.items],
     rv=everything.metadata.resource_version)
mine = api.list_certificate_signing_request(label_selector="made-by=python")
emit(step="selected", names=[i.metadata.name for i in mine.items])
try:
    api.read_certificate_signing_request("not-there")
    emit(step="missing", status=200)
except ApiException as e:
    emit(step="missing", status=e.status, reason=json.loads(e.body)["reason"])
"#;
    let request = request_b64("python-user");
    let out = env.python(&python, script, &["py-made", &request]).ok();
    let steps: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(steps.len(), 5, "{}", out.explain());
    let stored = env.stored("py-made");
    assert_eq!(steps[0]["name"], "py-made");
    assert_eq!(steps[0]["uid"].as_str(), stored.metadata.uid.as_deref());
    assert_eq!(steps[0]["username"], ADMIN);
    assert_eq!(steps[0]["conditions"], serde_json::json!([]));
    assert_eq!(
        stored.spec.signer_name.as_deref(),
        Some(SIGNER_KUBE_APISERVER_CLIENT)
    );
    assert_eq!(stored.spec.usages, USAGES);
    assert_eq!(stored.spec.expiration_seconds, Some(3600));
    assert_eq!(
        labels(&stored).get("made-by").map(String::as_str),
        Some("python")
    );
    assert_eq!(
        STANDARD.encode(&stored.spec.request),
        request,
        "the server stored the request the client sent"
    );
    assert_eq!(steps[1]["uid"], steps[0]["uid"]);
    assert_eq!(steps[1]["signer"], SIGNER_KUBE_APISERVER_CLIENT);
    assert_eq!(steps[1]["usages"], serde_json::json!(USAGES));
    assert_eq!(steps[1]["expiration"], 3600);
    assert_eq!(steps[1]["request"].as_str(), Some(request.as_str()));
    assert_eq!(
        steps[2]["names"],
        serde_json::json!(["py-made", "py-other"])
    );
    assert_eq!(
        steps[2]["rv"].as_str(),
        Some(env.server.resource_version().to_string().as_str())
    );
    assert_eq!(steps[3]["names"], serde_json::json!(["py-made"]));
    assert_eq!(steps[4]["status"], 404);
    assert_eq!(steps[4]["reason"], "NotFound");
}

/// A bounded watch through `watch.Watch().stream` from a list's resource version sees the
/// approval and the issue as MODIFIED events, then stops.
#[test]
fn python_watch() {
    let python = python_or_skip!();
    let env = Env::new();
    env.create("py-watched", "watched");
    let script = r#"
name = sys.argv[1]
rv = api.list_certificate_signing_request().metadata.resource_version
emit(step="ready", rv=rv)
w = watch.Watch()
for ev in w.stream(api.list_certificate_signing_request, resource_version=rv,
                   timeout_seconds=20):
    obj = ev["object"]
    emit(step="event", type=ev["type"], name=obj.metadata.name, conditions=conditions(obj),
         issued=bool(obj.status and obj.status.certificate))
    if obj.metadata.name == name and obj.status and obj.status.certificate:
        w.stop()
emit(step="done")
"#;
    let mut run = Streaming::start(env.python_cmd(&python, script, &["py-watched"]));
    run.until("the ready line", |l| l.contains(r#""step": "ready""#));
    env.server.approve("py-watched").expect("approving");
    let events: Vec<Value> = {
        run.until("the done line", |l| l.contains(r#""step": "done""#));
        run.seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["step"] == "event")
            .collect()
    };
    assert_eq!(run.wait_exit(), Some(0), "{}", run.explain());
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| e["type"] == "MODIFIED" && e["name"] == "py-watched"),
        "{events:?}"
    );
    assert_eq!(
        events[0]["conditions"],
        serde_json::json!(["Approved"]),
        "{events:?}"
    );
    let last = events.last().expect("an event");
    assert_eq!(last["issued"], true);
    env.wait_issued("py-watched");
}

/// `replace_certificate_signing_request_approval` with an Approved condition approves (the
/// signer then issues); the same with a node's credentials is Forbidden.
#[test]
fn python_replace_approval() {
    let python = python_or_skip!();
    let env = Env::new();
    env.create("py-approve", "approved");
    let script = r#"
name = sys.argv[1]
if len(sys.argv) > 2:
    config.load_kube_config(config_file=sys.argv[2])
    api = client.CertificatesV1Api()
    try:
        csr = client.V1CertificateSigningRequest(metadata=client.V1ObjectMeta(name=name),
            spec=client.V1CertificateSigningRequestSpec(request="", signer_name="x", usages=[]))
        api.replace_certificate_signing_request_approval(name, csr)
        emit(step="node", status=200)
    except ApiException as e:
        emit(step="node", status=e.status, reason=json.loads(e.body)["reason"])
    sys.exit(0)
csr = api.read_certificate_signing_request(name)
csr.status = csr.status or client.V1CertificateSigningRequestStatus()
csr.status.conditions = (csr.status.conditions or []) + [client.V1CertificateSigningRequestCondition(
    type="Approved", status="True", reason="PythonApprove", message="approved from Python")]
done = api.replace_certificate_signing_request_approval(name, csr)
emit(step="approve", conditions=conditions(done), rv=done.metadata.resource_version)
"#;
    let node = env.node_kubeconfig();
    let out = env
        .python(
            &python,
            script,
            &["py-approve", node.to_str().expect("path")],
        )
        .ok();
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("a JSON line");
    assert_eq!(
        (v["status"].as_i64(), v["reason"].as_str()),
        (Some(403), Some("Forbidden"))
    );
    assert_eq!(
        condition_types(&env.stored("py-approve")),
        Vec::<String>::new()
    );

    let out = env.python(&python, script, &["py-approve"]).ok();
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("a JSON line");
    assert_eq!(v["conditions"], serde_json::json!(["Approved"]));
    let stored = env.stored("py-approve");
    let status = stored.status.expect("status");
    assert_eq!(status.conditions[0].type_, "Approved");
    assert_eq!(
        status.conditions[0].reason.as_deref(),
        Some("PythonApprove")
    );
    assert_eq!(
        status.conditions[0].message.as_deref(),
        Some("approved from Python")
    );
    env.wait_issued("py-approve");
}

/// `patch_certificate_signing_request` (the client's default patch type for a dict body) adds
/// a label to the stored object.
#[test]
fn python_patch() {
    let python = python_or_skip!();
    let env = Env::new();
    env.create("py-patched", "patched");
    let script = r#"
done = api.patch_certificate_signing_request(sys.argv[1], {"metadata": {"labels": {"patched-by": "python"}}})
emit(step="patch", labels=done.metadata.labels)
"#;
    let out = env.python(&python, script, &["py-patched"]).ok();
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("a JSON line");
    assert_eq!(v["labels"]["patched-by"], "python");
    assert_eq!(
        labels(&env.stored("py-patched"))
            .get("patched-by")
            .map(String::as_str),
        Some("python")
    );
}

/// `delete_certificate_signing_request` with `dry_run="All"` leaves the object; without, it is
/// gone and a read is 404.
#[test]
fn python_delete_with_and_without_dry_run() {
    let python = python_or_skip!();
    let env = Env::new();
    let created = env.create("py-deleted", "deleted");
    let script = r#"
name, dry = sys.argv[1], sys.argv[2] == "dry"
if dry:
    api.delete_certificate_signing_request(name, dry_run="All")
else:
    api.delete_certificate_signing_request(name)
try:
    got = api.read_certificate_signing_request(name)
    emit(step="read", status=200, uid=got.metadata.uid)
except ApiException as e:
    emit(step="read", status=e.status)
"#;
    let out = env.python(&python, script, &["py-deleted", "dry"]).ok();
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("a JSON line");
    assert_eq!(v["status"], 200);
    assert_eq!(v["uid"], created["metadata"]["uid"]);
    assert!(env.server.csr("py-deleted").is_some());

    let out = env.python(&python, script, &["py-deleted", "real"]).ok();
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("a JSON line");
    assert_eq!(v["status"], 404);
    assert!(env.server.csr("py-deleted").is_none());
}

/// Kubeconfigs whose values YAML 1.1 reads as something else than a string (`yes`, `on`,
/// `1_000`, `0x1F`, `1:20`, `2001-12-14`): kubectl (client-go's loader, go-yaml v2) reads each
/// token back as the string it is and authenticates with it.
#[test]
fn kubectl_reads_tokens_that_yaml_1_1_would_take_for_other_types() {
    let bin = kubectl_or_skip!();
    let env = Env::new();
    for (i, token) in ["yes", "on", "1_000", "0x1F", "1:20", "2001-12-14"]
        .into_iter()
        .enumerate()
    {
        let user = format!("token-user-{i}");
        env.server.add_token(
            token,
            certrotate::server::UserInfo::new(&user, &["system:masters"]),
        );
        let kubeconfig = env.kubeconfig(&Identity::token(token), &format!("token-{i}.kubeconfig"));
        let view = env
            .kubectl_as(
                &bin,
                &kubeconfig,
                &["config", "view", "--raw", "-o", "json"],
            )
            .ok()
            .json();
        assert_eq!(view["users"][0]["user"]["token"], token, "{token}");
        env.kubectl_as(&bin, &kubeconfig, &["get", "certificatesigningrequests"])
            .ok();
    }
}
