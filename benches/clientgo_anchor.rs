//! Side by side with client-go, in one run against one embedded server: the time from start to
//! the first certificate, and the cost of one `Current()` / `current()` call, for client-go's
//! own certificate manager (`k8s.io/client-go/util/certificate`, driven by
//! `tests/peers/cmd/clientgo-manager`) and for certrotate's [`CertificateManager`].
//!
//! Both managers request a kubelet client certificate (ECDSA P-256 key, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, `expirationSeconds` 3600) for the same node
//! identity, store it in a `FileStore` in a fresh temporary directory, and are timed from just
//! before the manager is made (the kubeconfig already loaded, the store already open) to the
//! moment the manager's current certificate is the issued one. The runs alternate, and the
//! medians are printed with the ratio certrotate / client-go (below 1 means certrotate is
//! faster).
//!
//! ```sh
//! cargo bench --features server --bench clientgo_anchor
//! CLIENTGO_ANCHOR_RUNS=21 cargo bench --features server --bench clientgo_anchor
//! ```
//!
//! Needs Go (see `tests/peers/README.md`); without it, it says so and exits 0 (fails in CI).

use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certrotate::kubeconfig::Kubeconfig;
use certrotate::server::{
    ApprovalPolicy, CsrApiServer, Identity, SIGNER_KUBE_APISERVER_CLIENT_KUBELET,
};
use certrotate::{CertificateManager, Config, CsrTemplate, FileStore, KeyUsage, Manager, Store};
use serde_json::Value;

#[path = "../tests/support/go_peer.rs"]
mod go_peer;

const NODE: &str = "system:node:anchor";
const NODES: &str = "system:nodes";
/// `current()` calls timed per run.
const CURRENT_CALLS: u32 = 1_000_000;

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; nothing to parse.
    let Some(bin) = go_peer::build("clientgo-manager") else {
        return Ok(());
    };
    let runs: usize = match std::env::var("CLIENTGO_ANCHOR_RUNS") {
        Ok(v) => v.parse()?,
        Err(_) => 7,
    };
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::predicate(|csr| {
            csr.spec.username.as_deref() == Some(NODE)
                && csr.spec.signer_name.as_deref() == Some(SIGNER_KUBE_APISERVER_CLIENT_KUBELET)
        }))
        .start()?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        server.kubeconfig(&Identity::ClientCert {
            user: NODE.to_owned(),
            groups: vec![NODES.to_owned()],
        })?,
    )?;

    let (mut go_first, mut go_current, mut rs_first, mut rs_current) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let (first, current) = clientgo(&bin, &kubeconfig, &dir.path().join(format!("go{i}")))?;
        go_first.push(first);
        go_current.push(current);
        let (first, current) = certrotate(&kubeconfig, &dir.path().join(format!("rs{i}")))?;
        rs_first.push(first);
        rs_current.push(current);
    }

    let (gf, rf) = (median(&mut go_first), median(&mut rs_first));
    let (gc, rc) = (median(&mut go_current), median(&mut rs_current));
    println!(
        "\nclient-go v0.37.2 util/certificate vs certrotate, same embedded server, {runs} runs each (medians)"
    );
    println!(
        "start to first certificate: client-go {gf:.2} ms, certrotate {rf:.2} ms, ratio certrotate/client-go {:.2}",
        rf / gf
    );
    println!(
        "Current()/current():        client-go {gc:.1} ns, certrotate {rc:.1} ns, ratio certrotate/client-go {:.2}",
        rc / gc
    );
    println!(
        "all runs sorted, start to first certificate (ms): client-go {go_first:.2?}, certrotate {rs_first:.2?}"
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// client-go: (ms to the first certificate, ns per `Current()`), as the program measured them.
fn clientgo(bin: &Path, kubeconfig: &Path, dir: &Path) -> Result<(f64, f64), BoxError> {
    let out = Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cert-dir")
        .arg(dir)
        .args(["--signer-name", SIGNER_KUBE_APISERVER_CLIENT_KUBELET])
        .args(["--cn", NODE, "-o", NODES])
        .args(["--usages", "digital signature,client auth"])
        .args([
            "--requested-lifetime=3600s",
            "--rotations=0",
            "--timeout=30s",
        ])
        .arg(format!("--bench-current={CURRENT_CALLS}"))
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "clientgo-manager: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let events: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let find = |event: &str, key: &str| {
        events
            .iter()
            .find(|e| e["event"] == event)
            .and_then(|e| e[key].as_f64())
            .ok_or_else(|| format!("no {event}.{key} in clientgo-manager's output:\n{stdout}"))
    };
    Ok((
        find("certificate", "elapsedMs")?,
        find("current_cost", "nsPerOp")?,
    ))
}

/// certrotate: (ms to the first certificate, ns per `current()`).
fn certrotate(kubeconfig: &Path, dir: &Path) -> Result<(f64, f64), BoxError> {
    std::fs::create_dir_all(dir)?;
    let store = FileStore::builder("anchor", dir, dir).build()?;
    let config = Config::builder()
        .name("anchor")
        .template(CsrTemplate::new(NODE).with_organization(NODES))
        .signer_name(SIGNER_KUBE_APISERVER_CLIENT_KUBELET)
        .usages([KeyUsage::DigitalSignature, KeyUsage::ClientAuth])
        .requested_lifetime(Duration::from_secs(3600))
        .store(Arc::new(store) as Arc<dyn Store>)
        .client_factory(
            Kubeconfig::load(kubeconfig)?
                .client_builder(None)?
                .factory(),
        )
        .build()?;

    let start = Instant::now();
    let manager = CertificateManager::new(config)?;
    let first = manager.subscribe();
    manager.start();
    if manager.current().is_none() {
        first.recv_timeout(Duration::from_secs(30))?;
    }
    let elapsed = start.elapsed();
    if manager.current().is_none() {
        return Err("certrotate: notified but no current certificate".into());
    }

    let t = Instant::now();
    for _ in 0..CURRENT_CALLS {
        black_box(manager.current());
    }
    let per_call = t.elapsed().as_nanos() as f64 / f64::from(CURRENT_CALLS);
    manager.stop();
    Ok((elapsed.as_secs_f64() * 1000.0, per_call))
}
