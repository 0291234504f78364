//! Credentials and private keys never reach a log set up as the crate documents, even at
//! `trace`: real rotations against the embedded CSR API server, one authenticated with a static
//! bearer token and one with a bootstrap token, with every log record captured.
//!
//! A dedicated test binary, because the logger is process-wide. The records go to a capturing
//! logger and, through it, to `env_logger` loggers built as the examples build theirs
//! (`RUST_LOG`, then [`certrotate::LOG_FILTER_DIRECTIVES`]) for several `RUST_LOG` values; the
//! test reads what those loggers write.
//!
//! What is guaranteed, and checked here: records from this crate (and every target other than
//! `ureq_proto`) never hold a token or key material; with the documented directives, nothing
//! the HTTP dependency dumps at `trace` is written, whatever `RUST_LOG` says. What is not: the
//! dependency itself prints the `authorization` header at `trace` (shown below as a control),
//! so a logger set up without the directives and with `trace` on for `ureq_proto` does write
//! the token.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use certrotate::kubeconfig::Kubeconfig;
use certrotate::server::{CsrApiServer, Identity, SIGNER_KUBE_APISERVER_CLIENT_KUBELET, UserInfo};
use certrotate::{CertificateManager, Config, CsrTemplate, KeyUsage, MemoryStore, Store};

const TOKEN: &str = "t0ken-9f8e7d6c5b4a39281706";
const BOOT_ID: &str = "k3x9q2";
const BOOT_SECRET: &str = "b00tsecret7h6g5f";
const NODE: &str = "system:node:n1";

/// `RUST_LOG` values a user might run an example with.
const RUST_LOGS: [&str; 7] = [
    "info",
    "warn",
    "trace",
    "ureq_proto=trace",
    "ureq_proto::util=trace",
    "info,ureq=trace,ureq_proto=trace,ureq_proto::util=trace",
    "debug",
];

/// A shared in-memory sink for an env_logger.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct Record {
    target: String,
    level: log::Level,
    message: String,
}

struct Capture {
    records: Mutex<Vec<Record>>,
    /// One env_logger per `RUST_LOG` value, set up as the examples do.
    loggers: Vec<(env_logger::Logger, Sink)>,
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        self.records.lock().unwrap().push(Record {
            target: record.target().to_owned(),
            level: record.level(),
            message: record.args().to_string(),
        });
        for (logger, _) in &self.loggers {
            log::Log::log(logger, record);
        }
    }

    fn flush(&self) {}
}

static CAPTURE: OnceLock<Capture> = OnceLock::new();

fn install() -> &'static Capture {
    let capture = CAPTURE.get_or_init(|| Capture {
        records: Mutex::new(Vec::new()),
        loggers: RUST_LOGS
            .iter()
            .map(|rust_log| {
                let sink = Sink::default();
                // As the examples: the environment's filter (here a variable nobody sets, so
                // the value plays `RUST_LOG`), then the crate's directives.
                let logger = env_logger::Builder::from_env(
                    env_logger::Env::new().filter_or("CERTROTATE_LOG_SECRETS_UNSET", *rust_log),
                )
                .parse_filters(certrotate::LOG_FILTER_DIRECTIVES)
                .target(env_logger::Target::Pipe(Box::new(sink.clone())))
                .build();
                (logger, sink)
            })
            .collect(),
    });
    log::set_logger(capture).expect("the only logger of this test binary");
    log::set_max_level(log::LevelFilter::Trace);
    capture
}

/// The text of `ureq_proto`'s wire dump: each record is one row, hex then the printable
/// characters (`.` for others, spaces included); joined in order, the rows give back the
/// bytes on the wire, split nowhere.
fn wire_dump(records: &[Record]) -> String {
    records
        .iter()
        .filter(|r| r.target.starts_with("ureq_proto") && r.level == log::Level::Trace)
        .filter_map(|r| r.message.rsplit(' ').next())
        .collect()
}

/// One rotation by a manager whose client authenticates as `identity` (through a kubeconfig
/// written by the server, as a user's would be). Returns the PEM of the new private key.
fn rotate(server: &CsrApiServer, identity: &Identity, dir: &std::path::Path) -> String {
    let kubeconfig = dir.join(format!("kubeconfig-{}", rand_suffix()));
    std::fs::write(&kubeconfig, server.kubeconfig(identity).unwrap()).unwrap();
    let factory = Kubeconfig::load(&kubeconfig)
        .unwrap()
        .client_builder(None)
        .unwrap()
        .factory();
    let store = Arc::new(MemoryStore::new());
    let m = CertificateManager::new(
        Config::builder()
            .template(CsrTemplate::new(NODE).with_organization("system:nodes"))
            .usages([KeyUsage::DigitalSignature, KeyUsage::ClientAuth])
            .signer_name(SIGNER_KUBE_APISERVER_CLIENT_KUBELET)
            .store(store.clone() as Arc<dyn Store>)
            .client_factory(factory)
            .build()
            .unwrap(),
    )
    .unwrap();
    let cert = m
        .rotate_now()
        .expect("a rotation through the embedded server");
    assert_eq!(store.current().unwrap().as_ref(), Some(&*cert));
    cert.key_pem().to_string()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The base64 lines of a PEM body.
fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect()
}

#[test]
fn tokens_and_private_keys_never_reach_a_log_set_up_as_documented() {
    let capture = install();
    let server = CsrApiServer::builder()
        .token(TOKEN, UserInfo::new(NODE, &["system:nodes"]))
        .bootstrap_token(BOOT_ID, BOOT_SECRET)
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        rotate(&server, &Identity::token(TOKEN), dir.path()),
        rotate(
            &server,
            &Identity::bootstrap_token(BOOT_ID, BOOT_SECRET),
            dir.path(),
        ),
    ];
    log::logger().flush();
    let records = std::mem::take(&mut *capture.records.lock().unwrap());
    let secrets = [TOKEN, BOOT_SECRET];
    let key_lines: Vec<String> = keys.iter().flat_map(|k| pem_body_lines(k)).collect();
    assert!(key_lines.len() >= 2, "key PEM bodies to look for");

    // Control: the capture sees the dependency's wire dump, with both tokens in it. This is
    // why the directives exist.
    let dump = wire_dump(&records);
    for secret in secrets {
        assert!(
            dump.contains(secret),
            "the HTTP dependency's trace dump is expected to hold the token; if it no longer \
             does, LOG_FILTER_DIRECTIVES may be revisited"
        );
    }
    assert!(
        records.iter().any(|r| r.target.starts_with("certrotate")),
        "the crate's own records are captured"
    );

    // The crate's own records, and everything but the wire dump, hold no secret and no key.
    for r in records
        .iter()
        .filter(|r| !r.target.starts_with("ureq_proto"))
    {
        for secret in secrets {
            assert!(!r.message.contains(secret), "{}: {}", r.target, r.message);
        }
        assert!(
            !r.message.contains("PRIVATE KEY"),
            "{}: {}",
            r.target,
            r.message
        );
        for line in &key_lines {
            assert!(
                !r.message.contains(line.as_str()),
                "{}: {}",
                r.target,
                r.message
            );
        }
    }
    // The private key never leaves the process, so not even the wire dump holds it.
    for line in &key_lines {
        assert!(!dump.contains(line.as_str()), "key material on the wire");
    }

    // What the loggers set up as documented wrote, for each RUST_LOG.
    for ((_, sink), rust_log) in capture.loggers.iter().zip(RUST_LOGS) {
        let out = sink.text();
        if !rust_log.starts_with("ureq_proto") {
            assert!(
                rust_log == "warn" || out.contains("created certificate signing request"),
                "RUST_LOG={rust_log}: the crate's info lines are written"
            );
        }
        if rust_log.starts_with("trace") {
            assert!(out.contains("TRACE"), "RUST_LOG={rust_log}: trace is on");
        }
        assert!(
            !out.lines().any(|l| l.contains("ureq_proto::util")),
            "RUST_LOG={rust_log}: no wire dump is written"
        );
        if !rust_log.contains("ureq") && !rust_log.contains("debug") && !rust_log.contains("trace")
        {
            // The directives only take away: they never turn the dependency's debug output on.
            assert!(
                !out.contains("ureq"),
                "RUST_LOG={rust_log}: the HTTP dependency's lines are written"
            );
        }
        for secret in secrets {
            assert!(
                !out.contains(secret),
                "RUST_LOG={rust_log}: a token is written"
            );
        }
        assert!(!out.contains("PRIVATE KEY"), "RUST_LOG={rust_log}");
        for line in &key_lines {
            assert!(
                !out.contains(line.as_str()),
                "RUST_LOG={rust_log}: key material"
            );
        }
    }
    println!(
        "{} records captured ({} rows of wire dump); {} bytes written by the documented loggers, no token or key in them",
        records.len(),
        records
            .iter()
            .filter(|r| r.target.starts_with("ureq_proto"))
            .count(),
        capture
            .loggers
            .iter()
            .map(|(_, s)| s.text().len())
            .sum::<usize>()
    );
}
