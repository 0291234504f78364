//! `--metrics-addr`: Prometheus text exposition (format 0.0.4, as the kubelet serves it) at
//! `/metrics`, and `/healthz`, `/readyz`, on a small blocking HTTP/1.1 listener.
//!
//! Rotation, renewal-failure and TTL metrics carry the kubelet's names (its serving-certificate
//! names when the usages include `server auth`, its client-certificate names otherwise; the
//! kubelet has no rotation histogram for its client certificate, so neither has this). The
//! daemon's own metrics are prefixed `certrotate_`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certrotate::kubelet::KubeletMetrics;
use certrotate::{Certificate, CertificateManager, Manager};
use parking_lot::Mutex;
use prometheus::{Encoder, Gauge, IntCounter, Opts, Registry, TextEncoder};

/// Largest request head read from a scraper.
const MAX_REQUEST: usize = 8 * 1024;

/// The registry and the metrics the daemon moves.
pub struct Metrics {
    registry: Registry,
    /// The kubelet's metrics, which the manager moves (see [`KubeletMetrics::wire`]).
    pub kubelet: KubeletMetrics,
    rotations: IntCounter,
    hook_runs: IntCounter,
    hook_failures: IntCounter,
    last_rotation: Gauge,
    not_after: Mutex<Option<SystemTime>>,
}

fn counter(desc: (&str, &str)) -> IntCounter {
    IntCounter::with_opts(Opts::new(desc.0, desc.1)).expect("valid metric name")
}

fn gauge(desc: (&str, &str)) -> Gauge {
    Gauge::with_opts(Opts::new(desc.0, desc.1)).expect("valid metric name")
}

impl Metrics {
    /// The metrics for a serving certificate (`serving`) or a client one.
    pub fn new(serving: bool) -> Metrics {
        let registry = Registry::new();
        let kubelet = if serving {
            KubeletMetrics::register_server(&registry)
        } else {
            KubeletMetrics::register_client(&registry)
        }
        .expect("a new registry holds no names");
        let m = Metrics {
            registry,
            kubelet,
            rotations: counter((
                "certrotate_rotations_total",
                "Number of new certificates delivered (written and announced to the hooks).",
            )),
            hook_runs: counter((
                "certrotate_hook_runs_total",
                "Number of hook runs: exec commands started and signals sent or attempted.",
            )),
            hook_failures: counter((
                "certrotate_hook_failures_total",
                "Number of hook runs that failed: non-zero exit, killed, timed out, not started, signal not sent.",
            )),
            last_rotation: gauge((
                "certrotate_last_rotation_timestamp_seconds",
                "Unix time of the last new certificate delivered; 0 before the first.",
            )),
            not_after: Mutex::new(None),
        };
        let all: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.rotations.clone()),
            Box::new(m.hook_runs.clone()),
            Box::new(m.hook_failures.clone()),
            Box::new(m.last_rotation.clone()),
        ];
        for c in all {
            m.registry.register(c).expect("metric names are distinct");
        }
        m
    }

    /// A new certificate was delivered.
    pub fn delivered(&self, cert: &Certificate, rotated: bool) {
        *self.not_after.lock() = Some(cert.not_after());
        if rotated {
            self.rotations.inc();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.last_rotation.set(now.as_secs_f64());
        }
    }

    /// Hook counters, copied from the hooks after each delivery.
    pub fn hooks(&self, runs: u64, failures: u64) {
        self.hook_runs
            .inc_by(runs.saturating_sub(self.hook_runs.get()));
        self.hook_failures
            .inc_by(failures.saturating_sub(self.hook_failures.get()));
    }

    fn render(&self) -> String {
        // The TTL at scrape time, as the kubelet: seconds until NotAfter, negative once
        // expired, +Inf without a certificate.
        let ttl = match *self.not_after.lock() {
            Some(t) => match t.duration_since(SystemTime::now()) {
                Ok(left) => left.as_secs() as f64,
                Err(e) => -(e.duration().as_secs() as f64),
            },
            None => f64::INFINITY,
        };
        self.kubelet.ttl_seconds.set(ttl);
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            log::warn!("cannot encode metrics: {e}");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Binds `addr` and serves on a background thread for the life of the process.
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    manager: Arc<CertificateManager>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Err(e) = answer(stream, &metrics, &manager) {
                    log::debug!("metrics connection: {e}");
                }
            }
        })?;
    log::info!("serving /metrics, /healthz and /readyz on http://{bound}");
    Ok(bound)
}

fn answer(
    mut stream: TcpStream,
    metrics: &Metrics,
    manager: &CertificateManager,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let path = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                if req.method != Some("GET") {
                    return respond(&mut stream, 405, "text/plain", "method not allowed\n");
                }
                break req.path.unwrap_or("/").to_owned();
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => {}
            _ => return respond(&mut stream, 400, "text/plain", "bad request\n"),
        }
    };
    let path = path.split('?').next().unwrap_or_default();
    match path {
        "/metrics" => respond(
            &mut stream,
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            &metrics.render(),
        ),
        "/healthz" => respond(&mut stream, 200, "text/plain", "ok\n"),
        "/readyz" => match manager.current() {
            Some(_) => respond(&mut stream, 200, "text/plain", "ok\n"),
            None => respond(&mut stream, 503, "text/plain", "no valid certificate yet\n"),
        },
        _ => respond(&mut stream, 404, "text/plain", "not found\n"),
    }
}

fn respond(stream: &mut TcpStream, code: u16, ctype: &str, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    write!(
        stream,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
