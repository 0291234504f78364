//! Benchmarks of the embedded CSR API server over loopback TLS:
//! - `create_approve_issued`: POST a CSR, PUT its approval (as `kubectl certificate approve`),
//!   and wait until the certificate reaches a watch the client keeps open;
//! - `create_approve_issued_list_watch`: the same, waiting the client-go way (list by name, then
//!   a watch from the list's resource version, on a new connection each time).
//!
//! Before the timings it prints the process RSS around 10,000 live CSRs and around 10,000
//! create/delete cycles, with the watch history bounded at its default 1000 events.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certrotate::CsrTemplate;
use certrotate::pki::{KeyAlgorithm, PrivateKey, build_csr_pem, crypto_provider};
use certrotate::server::{ApprovalPolicy, CsrApiServer};
use criterion::Criterion;
use serde_json::{Value, json};
use ureq::tls::{ClientCert, PemItem, RootCerts, TlsConfig, TlsProvider};

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

fn certs(pem: &str) -> Vec<ureq::tls::Certificate<'static>> {
    ureq::tls::parse_pem(pem.as_bytes())
        .filter_map(|i| match i {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

fn admin_agent(server: &CsrApiServer) -> ureq::Agent {
    let cert = server
        .issue_client_certificate("bench", &["system:masters"])
        .unwrap();
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&certs(&server.ca_pem())))
        .client_cert(Some(ClientCert::new_with_certs(
            &certs(cert.cert_pem()),
            ureq::tls::PrivateKey::from_pem(cert.key_pem().as_bytes()).unwrap(),
        )))
        .unversioned_rustls_crypto_provider(crypto_provider())
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(None)
        .http_status_as_error(false)
        .build()
        .new_agent()
}

fn csr_body() -> Value {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let pem = build_csr_pem(&CsrTemplate::new("bench").with_organization("b"), &key).unwrap();
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "csr-"},
        "spec": {"request": STANDARD.encode(pem), "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["digital signature", "client auth"]}})
}

fn create(agent: &ureq::Agent, base: &str, body: &Value) -> Value {
    let mut r = agent.post(format!("{base}{CSRS}")).send_json(body).unwrap();
    assert_eq!(r.status().as_u16(), 201);
    r.body_mut().read_json().unwrap()
}

fn approve(agent: &ureq::Agent, base: &str, mut obj: Value) {
    let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
    obj["status"] =
        json!({"conditions": [{"type": "Approved", "status": "True", "reason": "Bench"}]});
    let r = agent
        .put(format!("{base}{CSRS}/{name}/approval"))
        .send_json(&obj)
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

fn issued(ev: &Value) -> bool {
    ev["object"]["status"]["certificate"].is_string()
}

/// Reads a watch stream on its own thread and sends the name of every issued CSR.
fn watch_issued(agent: &ureq::Agent, base: &str, query: &str) -> mpsc::Receiver<String> {
    let resp = agent
        .get(format!("{base}{CSRS}?watch=true&{query}"))
        .call()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(resp.into_body().into_reader());
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            let ev: Value = serde_json::from_str(&line).unwrap();
            if issued(&ev)
                && tx
                    .send(
                        ev["object"]["metadata"]["name"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    )
                    .is_err()
            {
                return;
            }
            line.clear();
        }
    });
    rx
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn rss_report() {
    let before = rss_kib();
    let server = CsrApiServer::builder().start().unwrap();
    let base = server.url().to_owned();
    let agent = admin_agent(&server);
    let body = csr_body();
    let started = rss_kib();
    let rx = watch_issued(&agent, &base, "timeoutSeconds=600");
    let names: Vec<String> = (0..10_000)
        .map(|_| {
            create(&agent, &base, &body)["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let last = names.last().unwrap();
    while rx.recv_timeout(Duration::from_secs(60)).unwrap() != *last {}
    let live = rss_kib();
    println!(
        "rss: before start {before} KiB, started {started} KiB, 10000 live issued CSRs {live} KiB \
         (history {} events)",
        server.history_len()
    );
    for n in &names {
        server.delete(n).unwrap();
    }
    let emptied = rss_kib();
    for _ in 0..10_000 {
        let n = create(&agent, &base, &body)["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        server.delete(&n).unwrap();
    }
    let churned = rss_kib();
    println!(
        "rss: after deleting them {emptied} KiB, after 10000 more create/delete cycles {churned} KiB \
         (history {} events, resource version {})",
        server.history_len(),
        server.resource_version()
    );
    server.shutdown();
}

fn round_trip(c: &mut Criterion) {
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .start()
        .unwrap();
    let base = server.url().to_owned();
    let agent = admin_agent(&server);
    let body = csr_body();
    let rx = watch_issued(&agent, &base, "timeoutSeconds=3600");
    c.bench_function("create_approve_issued", |b| {
        b.iter(|| {
            let obj = create(&agent, &base, &body);
            let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
            approve(&agent, &base, obj);
            while rx.recv_timeout(Duration::from_secs(10)).unwrap() != name {}
        })
    });
    c.bench_function("create_approve_issued_list_watch", |b| {
        b.iter(|| {
            let obj = create(&agent, &base, &body);
            let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
            approve(&agent, &base, obj);
            let mut list = agent
                .get(format!("{base}{CSRS}?fieldSelector=metadata.name%3D{name}"))
                .call()
                .unwrap();
            let list: Value = list.body_mut().read_json().unwrap();
            if issued(&json!({"object": list["items"][0]})) {
                return;
            }
            let rv = list["metadata"]["resourceVersion"].as_str().unwrap();
            let resp = agent
                .get(format!(
                    "{base}{CSRS}?watch=true&fieldSelector=metadata.name%3D{name}&resourceVersion={rv}&timeoutSeconds=60"
                ))
                .call()
                .unwrap();
            // Read until the certificate arrives, then drop the stream (closing its connection).
            let mut r = BufReader::new(resp.into_body().into_reader());
            let mut line = String::new();
            loop {
                line.clear();
                assert!(r.read_line(&mut line).unwrap() > 0, "watch ended early");
                if issued(&serde_json::from_str(&line).unwrap()) {
                    break;
                }
            }
        })
    });
}

fn main() {
    rss_report();
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5));
    round_trip(&mut c);
    c.final_summary();
}
