//! `certrotate run`: the rotation daemon (or, with `--once`, one pass).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use certrotate::kubeconfig::Kubeconfig;
use certrotate::pki::{fmt_duration, fmt_time};
use certrotate::{
    Certificate, CertificateManager, Config, CsrTemplate, FileStore, KeyAlgorithm, KeyUsage,
    KubeCsrClientBuilder, Manager, Store,
};
use clap::{Args, ValueEnum};

use crate::files::{self, CERT_MODE, KEY_MODE, Owner};
use crate::hooks::{Hooks, Outcome, SignalSpec, Target};
use crate::metrics;
use crate::metrics::Metrics;
use crate::signals::{self, Stop};
use crate::{Failure, failed, usage};

/// Flags of `certrotate run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// YAML file of flags: keys are the long flag names (`signer-name: ...`, `usages: [digital
    /// signature, client auth]`, `once: true`); flags on the command line override its single
    /// values and add to its lists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Kubeconfig to reach the API server with. Without it and without --in-cluster: KUBECONFIG,
    /// then ~/.kube/config, as kubectl.
    #[arg(long, conflicts_with = "in_cluster")]
    kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig to use (default: its current-context).
    #[arg(long, conflicts_with = "in_cluster")]
    context: Option<String>,
    /// Use the pod's service account (KUBERNETES_SERVICE_HOST/PORT and its token and CA).
    #[arg(long)]
    in_cluster: bool,
    /// spec.signerName of the CSRs, e.g. kubernetes.io/kube-apiserver-client.
    #[arg(long)]
    signer_name: String,
    /// Subject common name (CN) to request.
    #[arg(long)]
    cn: String,
    /// Subject organization (O) to request; repeatable.
    #[arg(long = "org", value_name = "O")]
    orgs: Vec<String>,
    /// DNS name SAN to request; repeatable.
    #[arg(long = "dns", value_name = "NAME")]
    dns: Vec<String>,
    /// IP address SAN to request; repeatable.
    #[arg(long = "ip", value_name = "IP")]
    ips: Vec<IpAddr>,
    /// spec.usages of the CSRs, comma-separated, named as in the Kubernetes API:
    /// "digital signature,client auth" for kube-apiserver-client; "digital signature,server
    /// auth" for kubelet-serving.
    #[arg(long, value_delimiter = ',', required = true, value_name = "USAGE,...")]
    usages: Vec<KeyUsage>,
    /// Key algorithm of each new key (a new key for each CSR).
    #[arg(long, value_enum, default_value_t = KeyAlg::EcdsaP256)]
    key_algorithm: KeyAlg,
    /// spec.expirationSeconds: the lifetime to ask for, at least 600 (signers may give less).
    #[arg(long, value_name = "SECONDS")]
    expiration_seconds: Option<u64>,
    /// Directory of the stored pairs, in the kubelet's layout: PREFIX-current.pem links to the
    /// newest PREFIX-<timestamp>.pem (chain and key, 0600).
    #[arg(long)]
    dir: PathBuf,
    /// Pair name prefix in --dir.
    #[arg(long, default_value = "certrotate")]
    prefix: String,
    /// Also write the chain (leaf first) here, mode 0644, atomically.
    #[arg(long)]
    cert_file: Option<PathBuf>,
    /// Also write the private key here (PKCS#8 PEM), mode 0600, atomically.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Also write the CA bundle of the kubeconfig's cluster (or the service account's ca.crt)
    /// here, mode 0644, atomically.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Owner of the plain files (--cert-file, --key-file, --ca-file), numeric UID[:GID]. Needs
    /// root unless it is this process's own user; refused at start otherwise (exit 2).
    #[arg(long, value_name = "UID[:GID]")]
    owner: Option<Owner>,
    /// Shell command (/bin/sh -c) run once after each new certificate is written, never two at
    /// once. Its environment has CERTROTATE_SERIAL, CERTROTATE_PREVIOUS_SERIAL,
    /// CERTROTATE_NOT_BEFORE, CERTROTATE_NOT_AFTER, CERTROTATE_PAIR_FILE and, when set,
    /// CERTROTATE_CERT_FILE, CERTROTATE_KEY_FILE, CERTROTATE_CA_FILE.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Seconds the --exec command may run before it (and its process group) is killed.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    exec_timeout: u64,
    // The help lists the names of this platform (see `hooks::SignalSpec` for the rule).
    #[arg(long, value_name = "SIG", help = crate::hooks::help())]
    signal: Option<SignalSpec>,
    /// Process to signal.
    #[arg(long, requires = "signal", conflicts_with = "pid_file")]
    pid: Option<i32>,
    /// File holding the process id to signal, read at each delivery.
    #[arg(long, requires = "signal")]
    pid_file: Option<PathBuf>,
    /// One pass: keep the stored certificate if it is valid and before its rotation deadline,
    /// otherwise get a new one; write the files, run the hooks, exit.
    #[arg(long)]
    once: bool,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (the kubelet's names for
    /// rotations, renewal errors and TTL; certrotate_* for hooks and the last rotation), and
    /// /healthz (the process runs) and /readyz (a valid certificate is in place).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<SocketAddr>,
    /// How long one CSR may wait for its certificate, in seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    wait_timeout: u64,
}

/// Key algorithms a new key can have.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum KeyAlg {
    /// ECDSA P-256 (client-go's choice).
    EcdsaP256,
    /// ECDSA P-384.
    EcdsaP384,
    /// Ed25519 (not accepted by every signer).
    Ed25519,
}

impl From<KeyAlg> for KeyAlgorithm {
    fn from(k: KeyAlg) -> KeyAlgorithm {
        match k {
            KeyAlg::EcdsaP256 => KeyAlgorithm::EcdsaP256,
            KeyAlg::EcdsaP384 => KeyAlgorithm::EcdsaP384,
            KeyAlg::Ed25519 => KeyAlgorithm::Ed25519,
        }
    }
}

/// Where each new certificate goes, and what is told about it.
struct Delivery {
    pair_file: PathBuf,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    ca_pem: Option<Vec<u8>>,
    owner: Option<Owner>,
    hooks: Hooks,
    metrics: Option<Arc<Metrics>>,
    last_serial: Option<String>,
}

impl Delivery {
    /// Writes the plain files (key, CA, then the chain) and runs the hooks when the certificate
    /// is new (`rotated`) or a file changed.
    fn deliver(&mut self, cert: &Certificate, rotated: bool, stop: &Stop) -> Outcome {
        let outcome = self.deliver_inner(cert, rotated, stop);
        if let Some(m) = &self.metrics {
            m.delivered(cert, rotated);
            m.hooks(
                self.hooks.runs.load(std::sync::atomic::Ordering::Relaxed),
                self.hooks
                    .failures
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
        }
        outcome
    }

    fn deliver_inner(&mut self, cert: &Certificate, rotated: bool, stop: &Stop) -> Outcome {
        let serial = cert.serial_hex();
        if self.last_serial.as_deref() == Some(serial.as_str()) && !rotated {
            return Outcome::Ok;
        }
        let changed = match self.write_files(cert) {
            Ok(changed) => changed,
            Err(why) => {
                log::error!("{why}");
                return Outcome::Failed(why);
            }
        };
        let previous = self.last_serial.replace(serial.clone());
        if !(rotated || changed) || !self.hooks.any() {
            return Outcome::Ok;
        }
        let mut env = vec![
            ("CERTROTATE_SERIAL", serial),
            ("CERTROTATE_PREVIOUS_SERIAL", previous.unwrap_or_default()),
            ("CERTROTATE_NOT_BEFORE", fmt_time(cert.not_before())),
            ("CERTROTATE_NOT_AFTER", fmt_time(cert.not_after())),
            ("CERTROTATE_PAIR_FILE", self.pair_file.display().to_string()),
        ];
        for (name, path) in [
            ("CERTROTATE_CERT_FILE", &self.cert_file),
            ("CERTROTATE_KEY_FILE", &self.key_file),
            ("CERTROTATE_CA_FILE", &self.ca_file),
        ] {
            if let Some(p) = path {
                env.push((name, p.display().to_string()));
            }
        }
        self.hooks.run(&env, stop)
    }

    fn write_files(&self, cert: &Certificate) -> Result<bool, String> {
        let mut changed = false;
        let key_pem = cert.key_pem();
        let writes: [(&Option<PathBuf>, &[u8], u32, &str); 3] = [
            (&self.key_file, key_pem.as_bytes(), KEY_MODE, "key"),
            (
                &self.ca_file,
                self.ca_pem.as_deref().unwrap_or_default(),
                CERT_MODE,
                "CA bundle",
            ),
            (
                &self.cert_file,
                cert.cert_pem().as_bytes(),
                CERT_MODE,
                "certificate",
            ),
        ];
        for (path, data, mode, what) in writes {
            let Some(path) = path else { continue };
            let wrote = files::write_atomic(path, data, mode, self.owner)
                .map_err(|e| format!("cannot write the {what} file {}: {e}", path.display()))?;
            if wrote {
                log::info!("wrote {what} file {} ({mode:04o})", path.display());
            }
            changed |= wrote;
        }
        Ok(changed)
    }
}

fn client_builder(args: &RunArgs) -> Result<KubeCsrClientBuilder, Failure> {
    if args.in_cluster {
        return KubeCsrClientBuilder::in_cluster().map_err(usage);
    }
    let kubeconfig = match &args.kubeconfig {
        Some(p) => Kubeconfig::load(p),
        None => Kubeconfig::load_default(),
    }
    .map_err(usage)?;
    kubeconfig
        .client_builder(args.context.as_deref())
        .map_err(usage)
}

/// Runs `certrotate run`.
pub fn main(args: RunArgs) -> Result<(), Failure> {
    if let Some(owner) = &args.owner {
        if args.cert_file.is_none() && args.key_file.is_none() && args.ca_file.is_none() {
            return Err(usage(
                "--owner applies to --cert-file, --key-file and --ca-file, and none was given",
            ));
        }
        owner.check().map_err(usage)?;
    }
    let stop = signals::install().map_err(|e| failed(format!("cannot handle signals: {e}")))?;
    let builder = client_builder(&args)?;
    let ca_pem = match &args.ca_file {
        Some(_) => Some(builder.ca_bundle_pem().map_err(usage)?.ok_or_else(|| {
            usage("--ca-file was given but the cluster configuration has no certificate authority")
        })?),
        None => None,
    };
    let mut template = CsrTemplate::new(&args.cn);
    for o in &args.orgs {
        template = template.with_organization(o);
    }
    for d in &args.dns {
        template = template.with_dns_name(d);
    }
    for ip in &args.ips {
        template = template.with_ip_address(*ip);
    }
    let store = FileStore::builder(&args.prefix, &args.dir, &args.dir)
        .build()
        .map_err(usage)?;
    let pair_file = store.current_path();
    let mut config = Config::builder()
        .name(format!("certrotate/{}", args.prefix))
        .template(template)
        .signer_name(&args.signer_name)
        .usages(args.usages.iter().copied())
        .key_algorithm(args.key_algorithm.into())
        .certificate_wait_timeout(Duration::from_secs(args.wait_timeout.max(1)))
        .store(Arc::new(store) as Arc<dyn Store>)
        .client_factory(builder.factory());
    if let Some(secs) = args.expiration_seconds {
        config = config.requested_lifetime(Duration::from_secs(secs));
    }
    let metrics = args
        .metrics_addr
        .map(|_| Arc::new(Metrics::new(args.usages.contains(&KeyUsage::ServerAuth))));
    if let Some(m) = &metrics {
        config = m.kubelet.wire(config);
    }
    let manager = Arc::new(CertificateManager::new(config.build().map_err(usage)?).map_err(usage)?);
    if let (Some(addr), Some(m)) = (args.metrics_addr, &metrics) {
        metrics::serve(addr, m.clone(), manager.clone())
            .map_err(|e| failed(format!("cannot serve metrics on {addr}: {e}")))?;
    }
    let target = match (args.pid, &args.pid_file) {
        (Some(p), _) => Some(Target::Pid(p)),
        (None, Some(f)) => Some(Target::PidFile(f.clone())),
        (None, None) => None,
    };
    let signal = match (args.signal, target) {
        (Some(s), Some(t)) => Some((s, t)),
        (Some(_), None) => return Err(usage("--signal needs --pid or --pid-file")),
        (None, _) => None,
    };
    let mut delivery = Delivery {
        pair_file,
        cert_file: args.cert_file.clone(),
        key_file: args.key_file.clone(),
        ca_file: args.ca_file.clone(),
        ca_pem,
        owner: args.owner,
        hooks: Hooks {
            exec: args.exec.clone(),
            exec_timeout: Duration::from_secs(args.exec_timeout.max(1)),
            signal,
            ..Hooks::default()
        },
        metrics,
        last_serial: None,
    };
    if args.once {
        once(&manager, &mut delivery, &stop)
    } else {
        daemon(&manager, &mut delivery, &stop)
    }
}

fn once(
    manager: &Arc<CertificateManager>,
    delivery: &mut Delivery,
    stop: &Stop,
) -> Result<(), Failure> {
    let now = SystemTime::now();
    let kept = manager
        .current()
        .filter(|_| manager.rotation_deadline().is_some_and(|d| now < d));
    let (cert, rotated) = match kept {
        Some(cert) => {
            log::info!(
                "keeping certificate {}: valid until {}, rotation due from {}",
                cert.serial_hex(),
                fmt_time(cert.not_after()),
                manager
                    .rotation_deadline()
                    .map(fmt_time)
                    .unwrap_or_default()
            );
            (cert, false)
        }
        None => {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let worker = {
                let manager = manager.clone();
                std::thread::spawn(move || {
                    let _ = tx.send(manager.rotate_now());
                })
            };
            crossbeam_channel::select! {
                recv(rx) -> result => {
                    let _ = worker.join();
                    match result {
                        Ok(Ok(cert)) => (cert, true),
                        Ok(Err(e)) => {
                            // A certificate that is still valid is kept and delivered, but the
                            // pass failed: the renewal is due.
                            if let Some(cert) = manager.current() {
                                let _ = delivery.deliver(&cert, false, stop);
                                return Err(Failure::Failed(format!(
                                    "renewal failed; the current certificate {} stays, valid until {}: {e}",
                                    cert.serial_hex(),
                                    fmt_time(cert.not_after())
                                ).into()));
                            }
                            return Err(Failure::Failed(Box::new(e)));
                        }
                        Err(_) => return Err(failed("the rotation thread ended without an answer")),
                    }
                }
                recv(stop.rx) -> _ => {
                    manager.stop();
                    let _ = worker.join();
                    return Err(failed("interrupted before a certificate was obtained"));
                }
            }
        }
    };
    match delivery.deliver(&cert, rotated, stop) {
        Outcome::Ok => {
            log::info!(
                "certificate {} in place, valid until {} ({} left)",
                cert.serial_hex(),
                fmt_time(cert.not_after()),
                fmt_duration(
                    cert.not_after()
                        .duration_since(SystemTime::now())
                        .unwrap_or_default()
                )
            );
            Ok(())
        }
        Outcome::Failed(why) => Err(Failure::HookFailed(format!(
            "certificate {} is in place, but: {why}",
            cert.serial_hex()
        ))),
        Outcome::Interrupted => Err(failed("interrupted while the exec hook ran")),
    }
}

fn daemon(
    manager: &Arc<CertificateManager>,
    delivery: &mut Delivery,
    stop: &Stop,
) -> Result<(), Failure> {
    let rotations = manager.subscribe();
    if let Some(cert) = manager.current() {
        log::info!(
            "stored certificate {} valid until {}",
            cert.serial_hex(),
            fmt_time(cert.not_after())
        );
        delivery.deliver(&cert, false, stop);
    }
    manager.start();
    loop {
        if stop.requested() {
            break;
        }
        crossbeam_channel::select! {
            recv(rotations.receiver()) -> cert => match cert {
                Ok(cert) => {
                    delivery.deliver(&cert, true, stop);
                }
                Err(_) => break,
            },
            recv(stop.rx) -> _ => break,
        }
    }
    manager.stop();
    log::info!("stopped");
    Ok(())
}
