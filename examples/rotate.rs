//! The main job: watch a certificate rotate under a live HTTPS server, with no restart.
//!
//! Without arguments it starts the embedded CSR API server (TLS, issuing certificates that live
//! `--lifetime` seconds; its approval policy approves the demo signer's CSRs, which no cluster's
//! controller would: a real cluster approves only node client certificates by itself), a certificate manager that stores its pairs in
//! the kubelet's layout in a temporary directory (or `--cert-dir`), an HTTPS server on loopback
//! whose rustls config takes its certificate from the manager, and a client that handshakes with
//! it every second and prints the serial it was served. It runs for `--duration` seconds and
//! exits 0 only if the client saw at least three distinct serials from the one server.
//!
//! With `--kubeconfig PATH --signer-name NAME` the same runs against a real cluster (someone or
//! something must approve the CSRs there; certificates then live at least 10 minutes).
//!
//! SIGINT (Ctrl-C) or SIGTERM stops it early: the manager and the servers stop and the temporary
//! directory (which holds the demo's kubeconfig, client key included, mode 0600) is removed;
//! the exit code is then 128 + the signal number (130, 143).
//!
//! ```sh
//! cargo run --features server --example rotate
//! cargo run --features server --example rotate -- --duration 25 --lifetime 10
//! RUST_LOG=debug cargo run --features server --example rotate
//! ```

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use signal_hook::consts::{SIGINT, SIGTERM};

use certrotate::kubeconfig::Kubeconfig;
use certrotate::pki::{CertInfo, fmt_time};
use certrotate::server::{ApprovalPolicy, CsrApiServer, Identity};
use certrotate::{
    CertificateManager, Config, CsrTemplate, FileStore, KeyUsage, Manager, Store, tls,
};
use clap::Parser;
use rustls::pki_types::ServerName;

const DEMO_SIGNER: &str = "example.com/rotate-demo";

/// Watch a TLS certificate rotate through the Kubernetes CSR API under a live HTTPS server.
///
/// By default an embedded CSR API server issues short-lived certificates (it approves the demo
/// signer's CSRs itself, for the demo; a real cluster approves only node client certificates by
/// itself), a certificate manager rotates them, an HTTPS server on loopback serves the current one, and a client handshakes
/// with it every second. Exits 0 when the client saw at least three distinct certificates.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Lifetime of the demo certificates, in seconds, at least 3 (embedded server only).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(3..))]
    lifetime: u64,
    /// Seconds between the client's handshakes.
    #[arg(long, default_value_t = 1)]
    interval: u64,
    /// Where to keep the pairs (kubelet layout, prefix `rotate-demo`). Defaults to a temporary
    /// directory removed at exit.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Use this kubeconfig's cluster instead of the embedded server.
    #[arg(long, requires = "signer_name")]
    kubeconfig: Option<PathBuf>,
    /// Signer name to request from (real cluster).
    #[arg(long)]
    signer_name: Option<String>,
    /// CA bundle of that signer, to verify the served certificate (real cluster). Without it
    /// the loopback HTTPS check is skipped.
    #[arg(long)]
    signer_ca: Option<PathBuf>,
    /// Requested lifetime in seconds for a real cluster (at least 600; signers may ignore it).
    #[arg(long)]
    requested_lifetime: Option<u64>,
    /// Common name to request.
    #[arg(long, default_value = "rotate-demo")]
    cn: String,
    /// Subject organizations (O) to request (repeatable), e.g. `system:nodes`.
    #[arg(long = "org")]
    org: Vec<String>,
    /// spec.usages, comma-separated, named as in the Kubernetes API. Each built-in signer takes
    /// its own set: "digital signature,client auth" for kubernetes.io/kube-apiserver-client,
    /// "digital signature,server auth" for kubernetes.io/kubelet-serving (nodes only). The
    /// loopback HTTPS check needs "server auth".
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "digital signature,server auth,client auth"
    )]
    usages: Vec<KeyUsage>,
    /// DNS SANs to request (repeatable).
    #[arg(long = "dns", default_values_t = ["localhost".to_string()])]
    dns: Vec<String>,
    /// IP SANs to request (repeatable).
    #[arg(long = "ip", default_values_t = ["127.0.0.1".parse::<IpAddr>().expect("literal IP")])]
    ip: Vec<IpAddr>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    // RUST_LOG, then the directives that keep the HTTP dependency's wire dump (which holds
    // the bearer token) out of the log even with RUST_LOG=trace.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .parse_filters(certrotate::LOG_FILTER_DIRECTIVES)
        .format_timestamp_millis()
        .init();
    let args = Args::parse();
    // Before anything is created: a SIGINT or SIGTERM from here on ends `run` early, through its
    // normal clean-up, instead of killing the process with its temporary directory left behind.
    let stop = match stop_signals() {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("rotate: cannot handle SIGINT and SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&args, &stop) {
        Ok(Ended::Passed) => ExitCode::SUCCESS,
        Ok(Ended::Failed) => ExitCode::FAILURE,
        Ok(Ended::Interrupted(signal)) => {
            ExitCode::from(u8::try_from(128 + signal).unwrap_or(u8::MAX))
        }
        Err(e) => {
            eprintln!("rotate: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// How `run` ended.
enum Ended {
    /// The check passed.
    Passed,
    /// The check failed (the reason is printed).
    Failed,
    /// Stopped early by this signal.
    Interrupted(i32),
}

/// A channel that receives the number of each SIGINT and SIGTERM.
fn stop_signals() -> std::io::Result<Receiver<i32>> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if tx.send(signal).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}

fn run(args: &Args, stop_signal: &Receiver<i32>) -> Result<Ended, BoxError> {
    // Removed when `run` returns, on every path: success, failure, error, interruption.
    let temp = tempfile::tempdir()?;
    println!("temporary directory: {}", temp.path().display());
    let cert_dir = args
        .cert_dir
        .clone()
        .unwrap_or_else(|| temp.path().join("pki"));
    let mut template = CsrTemplate::new(&args.cn);
    template.organizations = args.org.clone();
    template.dns_names = args.dns.clone();
    template.ip_addresses = args.ip.clone();

    // The CSR API: a real cluster, or the embedded server.
    let embedded = args.kubeconfig.is_none();
    let (server, kubeconfig_path, signer_name, verify_ca) = match &args.kubeconfig {
        Some(path) => {
            let ca = match &args.signer_ca {
                Some(p) => Some(std::fs::read_to_string(p)?),
                None => None,
            };
            let signer = args.signer_name.clone().unwrap_or_default();
            (None, path.clone(), signer, ca)
        }
        None => {
            let lifetime = Duration::from_secs(args.lifetime);
            let server = CsrApiServer::builder()
                .signer(DEMO_SIGNER)
                // The demo's own approver: its signer's CSRs only. The default policy approves
                // what kube-controller-manager approves (node client certificates), not these.
                .approval_policy(ApprovalPolicy::predicate(|csr| {
                    csr.spec.signer_name.as_deref() == Some(DEMO_SIGNER)
                }))
                .max_lifetime(lifetime)
                .min_lifetime(Duration::from_secs(1))
                .backdate(Duration::ZERO)
                .start()?;
            let kubeconfig = server.kubeconfig(&Identity::ClientCert {
                user: args.cn.clone(),
                groups: Vec::new(),
            })?;
            let path = temp.path().join("kubeconfig");
            // It holds a client key: 0600 from creation, whatever the umask.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(kubeconfig.as_bytes())?;
            println!(
                "embedded CSR API server at {}, issuing {}-second certificates for {DEMO_SIGNER}",
                server.url(),
                lifetime.as_secs()
            );
            let ca = server.ca_pem();
            (Some(server), path, DEMO_SIGNER.to_owned(), Some(ca))
        }
    };

    let store = FileStore::builder("rotate-demo", &cert_dir, &cert_dir).build()?;
    let mut config = Config::builder()
        .name("rotate-demo")
        .template(template)
        .signer_name(signer_name)
        .usages(args.usages.iter().copied())
        .store(Arc::new(store) as Arc<dyn Store>)
        .client_factory(
            Kubeconfig::load(&kubeconfig_path)?
                .client_builder(None)?
                .factory(),
        );
    if let Some(secs) = args.requested_lifetime {
        config = config.requested_lifetime(Duration::from_secs(secs));
    }
    let manager = Arc::new(CertificateManager::new(config.build()?)?);
    println!("certificate directory: {}", cert_dir.display());

    // Print every rotation as it happens.
    let rotations = manager.subscribe();
    let printer = {
        // Weak: the channel closes when the manager is dropped, which ends this thread.
        let manager = Arc::downgrade(&manager);
        let first = manager.upgrade().and_then(|m| m.current());
        std::thread::spawn(move || {
            let mut old = first.map(|c| c.serial_hex());
            for cert in rotations.iter() {
                let next = manager.upgrade().and_then(|m| m.rotation_deadline());
                println!(
                    "rotated: {} -> {}  NotBefore {}  NotAfter {}  next rotation at {}",
                    old.as_deref().unwrap_or("(none)"),
                    cert.serial_hex(),
                    fmt_time(cert.not_before()),
                    fmt_time(cert.not_after()),
                    next.map(fmt_time).unwrap_or_else(|| "-".into()),
                );
                old = Some(cert.serial_hex());
            }
        })
    };
    let first = manager.subscribe();
    manager.start();
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let mut serials: Vec<String> = Vec::new(); // distinct, in the order first seen
    if manager.current().is_none() {
        println!("waiting for the first certificate ...");
        crossbeam_channel::select! {
            recv(first) -> _ => {}
            recv(stop_signal) -> signal => {
                let signal = signal.unwrap_or(SIGINT);
                println!("interrupted ({}): stopping and removing the temporary directory", name(signal));
                manager.stop();
                return Ok(Ended::Interrupted(signal));
            }
            default(deadline.saturating_duration_since(Instant::now())) => {
                println!("FAILED: no certificate within {} s", args.duration);
                manager.stop();
                return Ok(Ended::Failed);
            }
        }
    }
    drop(first);

    // An HTTPS server on loopback serving the manager's current certificate.
    let stop = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server_config = tls::server_config(&manager, None)?;
    let https = {
        let stop = stop.clone();
        std::thread::spawn(move || serve(listener, server_config, &stop))
    };
    println!("HTTPS server on https://{addr}/ (started once, never restarted)");

    // The client: one full handshake per interval, printing the serial it was served.
    let (mut ok, mut failed) = (0u32, 0u32);
    let mut interrupted = None;
    let client = match &verify_ca {
        Some(ca) => Some(client_config(ca)?),
        None => {
            println!("no signer CA given: skipping the loopback HTTPS check");
            None
        }
    };
    while Instant::now() < deadline {
        if let Some(client) = &client {
            match handshake(client.clone(), addr) {
                Ok(serial) => {
                    ok += 1;
                    println!("client: served certificate serial {serial}");
                    if !serials.contains(&serial) {
                        serials.push(serial);
                    }
                }
                Err(e) => {
                    failed += 1;
                    println!("client: handshake failed: {e}");
                }
            }
        }
        let pause = Duration::from_secs(args.interval.max(1))
            .min(deadline.saturating_duration_since(Instant::now()));
        if let Ok(signal) = stop_signal.recv_timeout(pause) {
            println!(
                "interrupted ({}): stopping and removing the temporary directory",
                name(signal)
            );
            interrupted = Some(signal);
            break;
        }
    }

    manager.stop();
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect(addr); // wake the accept loop
    let _ = https.join();
    let current = manager.current();
    drop(manager); // closes the rotation channel, ends the printer
    let _ = printer.join();
    if let Some(s) = server {
        s.shutdown();
    }
    if let Some(signal) = interrupted {
        return Ok(Ended::Interrupted(signal));
    }

    println!();
    println!("summary:");
    println!("  handshakes: {ok} ok, {failed} failed");
    println!(
        "  distinct serials served by the one HTTPS server, in order: {}",
        serials.len()
    );
    for s in &serials {
        println!("    {s}");
    }
    println!(
        "  current certificate at exit: {}",
        current
            .map(|c| format!(
                "serial {}, NotAfter {}",
                c.serial_hex(),
                fmt_time(c.not_after())
            ))
            .unwrap_or_else(|| "none".into())
    );
    if embedded {
        if serials.len() >= 3 {
            println!("OK: the certificate rotated under a live server with no restart");
            Ok(Ended::Passed)
        } else {
            println!(
                "FAILED: the client saw {} distinct serial(s), expected at least 3; run longer (--duration) or with shorter certificates (--lifetime)",
                serials.len()
            );
            Ok(Ended::Failed)
        }
    } else if ok > 0 || client.is_none() {
        Ok(Ended::Passed)
    } else {
        println!("FAILED: no successful handshake with the rotated certificate");
        Ok(Ended::Failed)
    }
}

fn name(signal: i32) -> &'static str {
    signal_hook::low_level::signal_name(signal).unwrap_or("signal")
}

/// Accepts connections until `stop`; each gets a TLS handshake and a one-line HTTP answer.
fn serve(listener: TcpListener, config: Arc<rustls::ServerConfig>, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let config = config.clone();
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut buf = [0u8; 1024];
            if tls.read(&mut buf).is_ok() {
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                );
                let _ = tls.flush();
            }
        });
    }
}

fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, BoxError> {
    let mut config =
        rustls::ClientConfig::builder_with_provider(certrotate::pki::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(tls::root_store(ca_pem.as_bytes())?)
            .with_no_client_auth();
    // A resumed session would report the certificate of the session it resumes.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A full handshake with a verified server certificate; returns the served serial.
fn handshake(config: Arc<rustls::ClientConfig>, addr: SocketAddr) -> Result<String, BoxError> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost")?)?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("the server sent no certificate")?;
    Ok(CertInfo::from_der(leaf)?.serial_hex())
}
