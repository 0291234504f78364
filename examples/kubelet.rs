//! A node's certificates, the kubelet's way, against the embedded CSR API server:
//!
//! 1. TLS bootstrap with a bootstrap token: the first client certificate, requested as
//!    `system:bootstrap:<id>`, and a kubeconfig that points at it;
//! 2. the serving certificate for the node's addresses, requested as the node;
//! 3. the node's addresses change twice while an administrator is slow to approve: the wait for
//!    the outdated request is cancelled and the new addresses are requested;
//! 4. renewals, requested as `system:node:<name>`.
//!
//! ```text
//! cargo run --example kubelet --features server
//! RUST_LOG=info cargo run --example kubelet --features server   # with the managers' logs
//! ```
//!
//! It finishes by itself in a second or two and exits with 0, or prints what failed and exits
//! with 1.

use std::error::Error;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use certrotate::kubelet::bootstrap;
use certrotate::kubelet::{self, NodeAddress, NodeAddressType, Options, SERVING_SIGNER};
use certrotate::server::{ApprovalPolicy, CsrApiServer, Identity};
use certrotate::{Certificate, Manager, pki};
use clap::Parser;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;

const NODE: &str = "node-1";
const TOKEN_ID: &str = "07401b";
const TOKEN_SECRET: &str = "f395accd246ae52d";
/// The longest the example waits for any one step.
const WAIT: Duration = Duration::from_secs(10);

/// A CSR as the API server saw it arrive.
struct Seen {
    name: String,
    user: String,
    signer: String,
    ips: Vec<IpAddr>,
}

/// A node's certificates, the kubelet's way, against the embedded CSR API server: TLS bootstrap
/// with a bootstrap token, the serving certificate for the node's addresses, an address change
/// while approval is slow, and renewals. Takes no options; finishes in a second or two and
/// exits 0, or prints what failed and exits 1. RUST_LOG=info shows the managers' logs.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {}

fn main() -> ExitCode {
    // --help and --version print and exit; anything else given is refused.
    let Args {} = Args::parse();
    // RUST_LOG, then the directives that keep the HTTP dependency's wire dump (which holds
    // the bootstrap token) out of the log even with RUST_LOG=trace.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .parse_filters(certrotate::LOG_FILTER_DIRECTIVES)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubelet example failed: {e}");
            let mut cause = e.source();
            while let Some(c) = cause {
                eprintln!("  caused by: {c}");
                cause = c.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let pki_dir = dir.path().join("pki");
    let kubeconfig = dir.path().join("kubeconfig");

    // The cluster. Like kube-controller-manager, it approves node client certificates by
    // itself; serving certificates wait for an administrator (this program).
    let (tx, arrivals) = crossbeam_channel::unbounded();
    let order = Arc::new(Mutex::new(Vec::new()));
    let arrived = order.clone();
    let server = CsrApiServer::builder()
        .bootstrap_token(TOKEN_ID, TOKEN_SECRET)
        .approval_policy(ApprovalPolicy::predicate(move |csr| {
            let signer = csr.spec.signer_name.clone().unwrap_or_default();
            let approve = signer != SERVING_SIGNER;
            arrived
                .lock()
                .push(csr.metadata.name.clone().unwrap_or_default());
            let _ = tx.send(Seen {
                name: csr.metadata.name.clone().unwrap_or_default(),
                user: csr.spec.username.clone().unwrap_or_default(),
                ips: pki::parse_csr_pem(&csr.spec.request)
                    .map(|p| p.ip_addresses)
                    .unwrap_or_default(),
                signer,
            });
            approve
        }))
        .start()?;
    let boot = dir.path().join("bootstrap-kubeconfig");
    std::fs::write(
        &boot,
        server.kubeconfig(&Identity::bootstrap_token(TOKEN_ID, TOKEN_SECRET))?,
    )?;
    println!("CSR API server at {}", server.url());
    println!("node {NODE} has a bootstrap token ({TOKEN_ID}.…) and no client certificate\n");

    // 1. TLS bootstrap.
    let cfg = bootstrap::load_client_config(&kubeconfig, Some(&boot), &pki_dir)?;
    println!(
        "1. no valid kubeconfig, so bootstrap: {} now points at {}",
        kubeconfig.display(),
        pki_dir.join("kubelet-client-current.pem").display()
    );
    let client = Arc::new(cfg.client_manager(NODE, Options::default())?);
    let client_rotations = client.subscribe();
    client.start();
    let seen = next(&arrivals, "the bootstrap CSR")?;
    let a = next(&client_rotations, "the first client certificate")?;
    println!(
        "   CSR {} from {} ({}), approved by the controller",
        seen.name, seen.user, seen.signer
    );
    describe("   client certificate", &a);

    // 2. The serving certificate, requested as the node.
    let addresses = Arc::new(Mutex::new(vec![
        NodeAddress::new(NodeAddressType::Hostname, NODE),
        NodeAddress::new(NodeAddressType::InternalIp, "10.0.0.7"),
    ]));
    let source = addresses.clone();
    let serving = kubelet::serving_manager(
        NODE,
        move || source.lock().clone(),
        &pki_dir,
        kubelet::serving_factory(cfg.cert_config.clone(), client.clone()),
        Options::default(),
    )?;
    let serving_rotations = serving.subscribe();
    serving.start();
    let seen = next(&arrivals, "the serving CSR")?;
    println!(
        "\n2. serving CSR {} from {} for {:?}; the administrator approves it",
        seen.name, seen.user, seen.ips
    );
    server.approve(&seen.name)?;
    let s1 = next(&serving_rotations, "the first serving certificate")?;
    describe("   serving certificate", &s1);

    // 3. The addresses change while the administrator is slow.
    addresses
        .lock()
        .push(NodeAddress::new(NodeAddressType::ExternalIp, "192.0.2.8"));
    serving.notify_template_changed();
    let outdated = next(&arrivals, "the CSR for the new address")?;
    println!(
        "\n3. the node gained 192.0.2.8: serving CSR {} for {:?}; the administrator is busy",
        outdated.name, outdated.ips
    );
    addresses.lock()[2] = NodeAddress::new(NodeAddressType::ExternalIp, "192.0.2.9");
    serving.notify_template_changed();
    let seen = next(&arrivals, "the CSR for the newest address")?;
    println!(
        "   192.0.2.8 became 192.0.2.9 before approval: the wait for {} is cancelled and CSR {} asks for {:?}; approved",
        outdated.name, seen.name, seen.ips
    );
    server.approve(&seen.name)?;
    let s2 = next(&serving_rotations, "the serving certificate for 192.0.2.9")?;
    describe("   serving certificate", &s2);
    let left = server
        .csr(&outdated.name)
        .ok_or("the outdated CSR vanished")?;
    if left.status.and_then(|s| s.certificate).is_some() {
        return Err(format!("outdated CSR {} was issued", outdated.name).into());
    }
    println!("   {} stays pending; nobody waits for it", outdated.name);

    // 4. Renewals, as the node. (A real node renews at 70–90 % of a certificate's life; here
    // the rotations are asked for at once.)
    let b = client.rotate_now()?;
    let seen = next(&arrivals, "the client renewal CSR")?;
    println!("\n4. client renewal: CSR {} from {}", seen.name, seen.user);
    describe("   client certificate", &b);
    let s3 = std::thread::scope(|s| -> Result<Arc<Certificate>, Box<dyn Error>> {
        let renewal = s.spawn(|| serving.rotate_now());
        let seen = next(&arrivals, "the serving renewal CSR")?;
        println!(
            "   serving renewal: CSR {} from {} for {:?}; approved",
            seen.name, seen.user, seen.ips
        );
        server.approve(&seen.name)?;
        let joined = renewal.join().map_err(|_| "the serving renewal panicked")?;
        Ok(joined?)
    })?;
    describe("   serving certificate", &s3);

    serving.stop();
    client.stop();
    println!("\nCSRs on the server, oldest first:");
    for name in order.lock().iter() {
        let c = server.csr(name).ok_or("a CSR vanished")?;
        let state = match &c.status {
            Some(s) if s.certificate.is_some() => "issued",
            _ => "pending",
        };
        println!(
            "   {:<10} {:<45} {:<26} {state}",
            c.metadata.name.unwrap_or_default(),
            c.spec.signer_name.unwrap_or_default(),
            c.spec.username.unwrap_or_default(),
        );
    }
    let files = list(&pki_dir)?;
    println!("files in {}: {}", pki_dir.display(), files.join(", "));
    Ok(())
}

/// The next message, or an error naming what did not come.
fn next<T>(rx: &Receiver<T>, what: &str) -> Result<T, String> {
    rx.recv_timeout(WAIT)
        .map_err(|_| format!("timed out after {WAIT:?} waiting for {what}"))
}

fn describe(label: &str, c: &Certificate) {
    println!(
        "{label} {} for {} {:?} DNS {:?} IP {:?}, valid until {}",
        c.serial_hex(),
        c.common_name(),
        c.organizations(),
        c.dns_names(),
        c.ip_addresses(),
        pki::fmt_time(c.not_after())
    );
}

fn list(dir: &Path) -> Result<Vec<String>, std::io::Error> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir)? {
        names.push(e?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}
