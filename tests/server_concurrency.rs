//! Fifty clients creating and watching CSRs at once all end with a signed certificate for their
//! own key, and `shutdown()` leaves no thread behind. The only test in this binary, so the thread
//! count it measures is its own.

mod server_common;

use std::time::{Duration, Instant};

use certrotate::CsrTemplate;
use certrotate::pki::Certificate;
use certrotate::server::{ApprovalPolicy, CsrApiServer, UserInfo};
use server_common::*;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn fifty_clients_all_get_signed_and_shutdown_joins_every_thread() {
    let before = threads();
    let mut b = CsrApiServer::builder().approval_policy(ApprovalPolicy::All);
    for i in 0..50 {
        b = b.token(
            format!("token-{i}"),
            UserInfo::new(format!("user-{i}"), &[]),
        );
    }
    let server = b.start().unwrap();
    assert!(threads() >= before + 2, "acceptor and signer threads run");
    let results: Vec<(String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let server = &server;
                s.spawn(move || {
                    let c = Client::with_token(server, &format!("token-{i}"));
                    let k = key();
                    let pem = csr_pem(&CsrTemplate::new(format!("user-{i}")), &k);
                    let obj = c.create(&body(
                        None,
                        &pem,
                        "kubernetes.io/kube-apiserver-client",
                        &["digital signature", "client auth"],
                        None,
                    ));
                    let n = name(&obj);
                    // The client-go way: list by name, then watch from the list's version.
                    let list = c.get(&format!("{CSRS}?fieldSelector=metadata.name%3D{n}"));
                    assert_eq!(list.code, 200);
                    let mut done = list.body["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find_map(certificate);
                    if done.is_none() {
                        let mut w = c.watch(&format!(
                            "fieldSelector=metadata.name%3D{n}&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds=30",
                            list.body["metadata"]["resourceVersion"].as_str().unwrap()
                        ));
                        done = certificate(&w.until(|e| certificate(&e["object"]).is_some())["object"]);
                    }
                    let pem = done.unwrap();
                    let cert = Certificate::from_pem(pem.as_bytes(), k.to_pem().as_bytes())
                        .expect("issued for this client's key");
                    assert_eq!(cert.common_name(), format!("user-{i}"));
                    (n, pem)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.len(), 50);
    let csrs = server.csrs();
    assert_eq!(csrs.len(), 50);
    for csr in &csrs {
        let issued = csr.status.as_ref().and_then(|s| s.certificate.as_ref());
        assert!(issued.is_some(), "{:?} not signed", csr.metadata.name);
    }
    // A watch left open must not keep shutdown() from returning.
    let watcher = Client::with_token(&server, "token-0");
    let mut open = watcher.watch("timeoutSeconds=600");
    assert_eq!(open.next().unwrap()["type"], "ADDED");
    assert!(
        threads() >= before + 3,
        "acceptor, signer and the watch's connection thread"
    );
    server.shutdown();
    assert!(open.next().is_none(), "the watch was ended by shutdown");
    // shutdown() joined every thread; the kernel drops a joined thread's /proc entry right after
    // it exits, so allow it a bounded moment to disappear (no sleep: spin with yields).
    let deadline = Instant::now() + Duration::from_secs(2);
    while threads() > before && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(threads(), before, "threads left behind after shutdown()");
    server.shutdown(); // idempotent
}
