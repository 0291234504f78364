//! The embedded CSR API server under many concurrent watchers, over real HTTPS.
//!
//! For each size (1,000 and 5,000 watchers by default; `LOAD_WATCHERS=200,1000` to choose) it
//! starts a `CsrApiServer` in a child process (this same binary, so that the server's memory
//! and threads are measured alone, from `/proc/<pid>/status`), then from this process:
//! 1. opens that many watches of the CSR collection at once, each on its own TLS connection
//!    with its own bearer token (its own user, in `system:masters`), and counts how many are
//!    established (`200` and the chunked stream started) and how long it took;
//! 2. reads the server's RSS and thread count before and after, giving the memory per watcher,
//!    and its CPU time over 2 s of idle watches;
//! 3. creates one CSR at a time, five times, and measures the fan-out latency: from just
//!    before the `POST` to the `ADDED` event read by each watcher (p50, p99, max), and how many
//!    watchers got it;
//! 4. creates CSRs for 5 s from two keep-alive connections while every watcher reads every
//!    event, giving the creates per second sustained and how long the slowest watcher takes to
//!    have read them all;
//! 5. opens 20 watches past the server's watch limit (set to the size), each of which must be
//!    answered `429` with a `Retry-After` header at once;
//! 6. shuts the server down and reports how long it took.
//!
//! Run with `cargo bench --features server --bench server_load`. It prints the host's limits
//! (open files, processes, threads) first, since they bound what any size can reach.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certrotate::CsrTemplate;
use certrotate::pki::{KeyAlgorithm, PrivateKey, build_csr_pem, crypto_provider};
use certrotate::server::{CsrApiServer, GROUP_MASTERS, UserInfo};
use serde_json::{Value, json};
use ureq::tls::{PemItem, RootCerts, TlsConfig, TlsProvider};

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const CHILD_ENV: &str = "CERTROTATE_LOAD_SERVER";
/// Watches opened past the limit, each to be answered 429.
const EXTRA: usize = 20;

fn main() {
    if let Ok(n) = std::env::var(CHILD_ENV) {
        serve(n.parse().expect("watcher count"));
        return;
    }
    // `cargo bench` passes `--bench`; nothing else is taken from the arguments.
    let sizes: Vec<usize> = std::env::var("LOAD_WATCHERS")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("LOAD_WATCHERS: a list of counts"))
        .collect();
    print_limits();
    for n in sizes {
        run(n);
    }
}

/// The child: a server with one token per watcher (and `EXTRA` more), the limits sized to `n`
/// watchers; prints its URL and CA, serves until its stdin closes, then shuts down.
fn serve(n: usize) {
    let mut b = CsrApiServer::builder()
        .max_connections(n + EXTRA + 16)
        .max_watches(n)
        .token("admin", UserInfo::new("admin", &[GROUP_MASTERS]));
    for i in 0..n + EXTRA {
        b = b.token(
            format!("watcher-{i}"),
            UserInfo::new(format!("watcher-{i}"), &[GROUP_MASTERS]),
        );
    }
    let server = b.start().expect("server start");
    let ca = server.ca_pem().replace('\n', "|");
    println!("{} {ca}", server.url());
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let t = Instant::now();
    server.shutdown();
    println!("shutdown {} ms", t.elapsed().as_millis());
}

fn print_limits() {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    for l in limits.lines() {
        if l.starts_with("Max open files") || l.starts_with("Max processes") {
            println!(
                "limit: {}",
                l.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    }
    for f in [
        "/proc/sys/kernel/threads-max",
        "/proc/sys/vm/max_map_count",
        "/proc/sys/net/core/somaxconn",
    ] {
        let v = std::fs::read_to_string(f).unwrap_or_default();
        println!("limit: {f} = {}", v.trim());
    }
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    println!(
        "host: {} cpus, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem.lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// `VmRSS` (KiB) and `Threads` of a process.
fn proc_status(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

/// User + system CPU time of a process, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn agent(ca_pem: &str) -> ureq::Agent {
    let roots: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(ca_pem.as_bytes())
        .filter_map(|i| match i {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&roots))
        .unversioned_rustls_crypto_provider(crypto_provider())
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(None)
        .http_status_as_error(false)
        .max_idle_connections(16)
        .build()
        .new_agent()
}

fn csr_request_b64() -> String {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let pem = build_csr_pem(&CsrTemplate::new("load").with_organization("b"), &key).unwrap();
    STANDARD.encode(pem)
}

fn csr_body(request: &str, meta: Value) -> Value {
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": meta,
        "spec": {"request": request, "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["digital signature", "client auth"]}})
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// What a watcher reports.
enum Report {
    Established,
    Refused(u16, Option<String>),
    Failed(String),
    /// The `ADDED` event of `fanout-<round>` was read.
    Fanout(usize, Instant),
}

struct Child_ {
    child: Child,
    url: String,
    ca: String,
}

fn start_child(n: usize) -> Child_ {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (url, ca) = line.trim().split_once(' ').unwrap();
    Child_ {
        url: url.to_owned(),
        ca: ca.replace('|', "\n"),
        child,
    }
}

fn run(n: usize) {
    println!("\n== {n} watchers ==");
    let mut srv = start_child(n);
    let pid = srv.child.id();
    let base = srv.url.clone();
    let admin = agent(&srv.ca);
    // A first request, so the baseline includes a served connection.
    let r = admin
        .get(format!("{base}{CSRS}"))
        .header("Authorization", "Bearer admin")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (rss0, threads0) = proc_status(pid);
    let watch_agent = agent(&srv.ca);
    let (tx, rx) = mpsc::channel::<Report>();
    let events: Arc<Vec<AtomicU64>> = Arc::new((0..n + EXTRA).map(|_| AtomicU64::new(0)).collect());
    let spawn_watcher = |i: usize| {
        let (agent, tx, events, url) = (
            watch_agent.clone(),
            tx.clone(),
            events.clone(),
            format!("{base}{CSRS}?watch=true&timeoutSeconds=600"),
        );
        std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                let resp = agent
                    .get(&url)
                    .header("Authorization", format!("Bearer watcher-{i}"))
                    .call();
                let resp = match resp {
                    Ok(r) if r.status().as_u16() == 200 => {
                        let _ = tx.send(Report::Established);
                        r
                    }
                    Ok(r) => {
                        let retry = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let _ = tx.send(Report::Refused(r.status().as_u16(), retry));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Report::Failed(e.to_string()));
                        return;
                    }
                };
                let mut r = BufReader::new(resp.into_body().into_reader());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|k| k > 0) {
                    events[i].fetch_add(1, Ordering::Relaxed);
                    if let Some(p) = line.find("\"name\":\"fanout-") {
                        let at = Instant::now();
                        let digits: String = line[p + 15..]
                            .chars()
                            .take_while(char::is_ascii_digit)
                            .collect();
                        if let Ok(round) = digits.parse() {
                            let _ = tx.send(Report::Fanout(round, at));
                        }
                    }
                    line.clear();
                }
            })
            .expect("watcher thread")
    };

    // 1. Establish.
    let t = Instant::now();
    let mut handles: Vec<_> = (0..n).map(spawn_watcher).collect();
    let (mut ok, mut refused, mut failed) = (0usize, Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    while ok + refused.len() + failed.len() < n {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Report::Established) => ok += 1,
            Ok(Report::Refused(c, h)) => refused.push((c, h)),
            Ok(Report::Failed(e)) => failed.push(e),
            Ok(Report::Fanout(..)) => {}
            Err(_) => break,
        }
    }
    let established_in = t.elapsed();
    println!(
        "established: {ok}/{n} in {} (refused {}, failed {}, no answer {}){}",
        ms(established_in),
        refused.len(),
        failed.len(),
        n - ok - refused.len() - failed.len(),
        failed
            .first()
            .map(|e| format!("; first failure: {e}"))
            .unwrap_or_default()
    );

    // 2. Memory and idle CPU.
    std::thread::sleep(Duration::from_millis(500));
    let (rss1, threads1) = proc_status(pid);
    let c0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let idle_cpu = (cpu_ticks(pid) - c0) as f64 / 2.0;
    println!(
        "server: rss {rss0} KiB → {rss1} KiB, {:.1} KiB per watcher; threads {threads0} → {threads1}; \
         idle CPU {idle_cpu:.0}% of one core",
        (rss1.saturating_sub(rss0)) as f64 / ok.max(1) as f64
    );

    // 3. Fan-out latency.
    let request = csr_request_b64();
    let mut all = Vec::new();
    for round in 0..5 {
        let body = csr_body(&request, json!({"name": format!("fanout-{round}")}));
        let t0 = Instant::now();
        let mut r = admin
            .post(format!("{base}{CSRS}"))
            .header("Authorization", "Bearer admin")
            .send_json(&body)
            .unwrap();
        let created = t0.elapsed();
        assert_eq!(
            r.status().as_u16(),
            201,
            "{}",
            r.body_mut().read_to_string().unwrap()
        );
        let mut lat = Vec::with_capacity(ok);
        let deadline = Instant::now() + Duration::from_secs(30);
        while lat.len() < ok {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Report::Fanout(rd, at)) if rd == round => lat.push(at - t0),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        lat.sort();
        println!(
            "fan-out {round}: {}/{ok} watchers got the event; p50 {}, p99 {}, max {} (create answered in {})",
            lat.len(),
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(lat.last().copied().unwrap_or_default()),
            ms(created)
        );
        all.extend(lat);
    }
    all.sort();
    println!(
        "fan-out, 5 rounds: p50 {}, p99 {}, max {}",
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        ms(all.last().copied().unwrap_or_default())
    );

    // 4. Sustained creates.
    let before: u64 = events.iter().map(|e| e.load(Ordering::Relaxed)).sum();
    let per_watcher_before: Vec<u64> = events.iter().map(|e| e.load(Ordering::Relaxed)).collect();
    let run_for = Duration::from_secs(5);
    let t = Instant::now();
    let creators: Vec<_> = (0..2)
        .map(|_| {
            let (agent, base, body) = (
                agent(&srv.ca),
                base.clone(),
                csr_body(&request, json!({"generateName": "load-"})),
            );
            std::thread::spawn(move || {
                let (mut created, mut other) = (0u64, 0u64);
                while t.elapsed() < run_for {
                    let r = agent
                        .post(format!("{base}{CSRS}"))
                        .header("Authorization", "Bearer admin")
                        .send_json(&body);
                    match r {
                        Ok(r) if r.status().as_u16() == 201 => created += 1,
                        _ => other += 1,
                    }
                }
                (created, other)
            })
        })
        .collect();
    let (mut created, mut other) = (0, 0);
    for c in creators {
        let (a, b) = c.join().unwrap();
        created += a;
        other += b;
    }
    let took = t.elapsed();
    let want = created;
    let deadline = Instant::now() + Duration::from_secs(60);
    let caught_up = |i: usize| events[i].load(Ordering::Relaxed) - per_watcher_before[i] >= want;
    while (0..n).any(|i| !caught_up(i)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained = t.elapsed();
    let behind = (0..n).filter(|&i| !caught_up(i)).count();
    let after: u64 = events.iter().map(|e| e.load(Ordering::Relaxed)).sum();
    println!(
        "creates: {created} in {} = {:.0}/s sustained ({other} failed) with {ok} watchers; \
         {} events delivered, every watcher had read all of them {} after the start \
         ({behind} watchers behind at the end)",
        ms(took),
        created as f64 / took.as_secs_f64(),
        after - before,
        ms(drained),
    );
    let (rss2, threads2) = proc_status(pid);
    println!("server after the creates: rss {rss2} KiB, threads {threads2}");

    // 5. Past the limit.
    let t = Instant::now();
    handles.extend((n..n + EXTRA).map(spawn_watcher));
    let mut past = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while past.len() < EXTRA {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Report::Established) => past.push("200".to_owned()),
            Ok(Report::Refused(c, h)) => past.push(format!("{c} Retry-After {h:?}")),
            Ok(Report::Failed(e)) => past.push(format!("error {e}")),
            Ok(Report::Fanout(..)) => {}
            Err(_) => break,
        }
    }
    past.sort();
    past.dedup_by(|a, b| a == b);
    println!(
        "{EXTRA} watches past the limit, answered in {}: {past:?}",
        ms(t.elapsed())
    );

    // 6. Shut down.
    drop(srv.child.stdin.take());
    let mut out = String::new();
    let _ = srv.child.stdout.as_mut().unwrap().read_to_string(&mut out);
    let _ = srv.child.wait();
    println!("server: {}", out.trim());
    for h in handles {
        let _ = h.join();
    }
}
