//! The embedded server past its limits: a connection past `max_connections`, a watch past
//! `max_watches` or past `max_watches_per_user` is answered at once `429 Too Many Requests` with
//! kube-apiserver's max-in-flight text and its `Retry-After: 1` header, never left hanging or
//! closed unanswered, and a burst of connections past the limit costs a bounded number of
//! threads. Real HTTPS through ureq; every wait is bounded.

mod server_common;

use std::time::{Duration, Instant};

use certrotate::server::{ApprovalPolicy, CsrApiServer, UserInfo};
use serde_json::Value;
use server_common::*;

/// A response with the headers this file checks.
struct Answer {
    code: u16,
    retry_after: Option<String>,
    connection: Option<String>,
    content_type: Option<String>,
    body: Value,
}

fn call(c: &Client, path: &str) -> Result<Answer, ureq::Error> {
    let mut req = c.agent.get(format!("{}{path}", c.base));
    if let Some(t) = &c.token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut r = req.call()?;
    let header = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (retry_after, connection, content_type) = (
        header("retry-after"),
        header("connection"),
        header("content-type"),
    );
    let code = r.status().as_u16();
    let text = r.body_mut().read_to_string()?;
    Ok(Answer {
        code,
        retry_after,
        connection,
        content_type,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    })
}

/// The answer of kube-apiserver's max-in-flight filter (`tooManyRequests` in
/// `k8s.io/apiserver/pkg/server/filters/maxinflight.go`: `Retry-After` "1" and the text
/// `Too many requests, please try again later.`), as a `Status`.
fn assert_too_many_requests(a: &Answer) {
    assert_eq!(a.code, 429, "{}", a.body);
    assert_eq!(a.retry_after.as_deref(), Some("1"), "Retry-After header");
    assert_eq!(a.content_type.as_deref(), Some("application/json"));
    assert_eq!(a.body["kind"], "Status");
    assert_eq!(a.body["status"], "Failure");
    assert_eq!(a.body["reason"], "TooManyRequests");
    assert_eq!(a.body["code"], 429);
    assert_eq!(
        a.body["message"],
        "Too many requests, please try again later."
    );
    assert_eq!(a.body["details"]["retryAfterSeconds"], 1);
}

/// Server threads of this process (they are all named `csr-api-…`).
fn server_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.starts_with("csr-api-"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Tests here count the process's server threads: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Retries `f` until it is true, for at most `bound`.
fn within(bound: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < bound {
        if f() {
            return true;
        }
    }
    false
}

/// curl, a real peer, reads the same answer from a server at its connection limit: the status
/// line, `Retry-After: 1` and the `Status` body.
fn curl_sees_429(server: &CsrApiServer) {
    let Ok(v) = std::process::Command::new("curl").arg("--version").output() else {
        return;
    };
    if !v.status.success() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20", "--cacert"])
        .arg(&ca)
        .arg(format!("{}/version", server.url()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_end().eq_ignore_ascii_case("retry-after: 1")),
        "{text}"
    );
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["reason"], "TooManyRequests");
}

#[test]
fn a_connection_past_the_limit_is_answered_429_with_retry_after() {
    let _one = one_at_a_time();
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .max_connections(2)
        .start()
        .unwrap();
    let c = Client::admin(&server);
    // Two watches hold the two connections.
    let first = c.watch("timeoutSeconds=600");
    let _second = c.watch("timeoutSeconds=600");
    let a = call(&c, CSRS).expect("a connection past the limit gets an HTTP answer");
    assert_too_many_requests(&a);
    assert_eq!(a.connection.as_deref(), Some("close"));
    curl_sees_429(&server);

    // A burst past the limit: every one answered 429 or, past the refusal queue, closed at
    // once; none hangs, and the server's threads stay bounded (acceptor, signer, refuser,
    // peers and one per served connection).
    let before = server_threads();
    let burst: Vec<_> = (0..40)
        .map(|_| {
            let c = Client::admin(&server);
            std::thread::spawn(move || call(&c, CSRS).map(|a| (a.code, a.retry_after)))
        })
        .collect();
    let mut most = before;
    let mut answers = Vec::new();
    for h in burst {
        most = most.max(server_threads());
        answers.push(h.join().unwrap());
    }
    assert!(most <= 2 + 4, "{most} server threads for 2 connections");
    for a in &answers {
        match a {
            Ok((code, retry)) => {
                assert_eq!((*code, retry.as_deref()), (429, Some("1")));
            }
            Err(e) => panic!("no answer past the limit: {e}"),
        }
    }

    // A freed connection is served again.
    drop(first);
    assert!(
        within(Duration::from_secs(5), || call(&c, CSRS)
            .is_ok_and(|a| a.code == 200)),
        "the dropped watch's connection was not freed"
    );
}

/// Connections past the limit that never start their TLS handshake hold the one refusing
/// thread for at most its timeout (2 s) altogether, counted from their accept: a real client
/// refused after twenty of them gets its answer (a 429, or the connection closed) within a few
/// seconds, not after twenty timeouts one after the other; curl, after them, gets its 429.
#[test]
fn silent_connections_past_the_limit_do_not_hold_a_later_client() {
    let _one = one_at_a_time();
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .max_connections(1)
        .start()
        .unwrap();
    let c = Client::admin(&server);
    let _held = c.watch("timeoutSeconds=600");
    let silent: Vec<std::net::TcpStream> = (0..20)
        .map(|_| std::net::TcpStream::connect(server.addr()).unwrap())
        .collect();
    let started = Instant::now();
    let late = Client::admin(&server);
    let answer = call(&late, CSRS);
    let took = started.elapsed();
    match &answer {
        Ok(a) => assert_too_many_requests(a),
        Err(e) => assert!(
            !matches!(e, ureq::Error::Timeout(_)),
            "the late client timed out: {e}"
        ),
    }
    assert!(
        took < Duration::from_secs(10),
        "the late client waited {took:?} behind silent connections"
    );
    // The refusing thread still answers after a queue of connections it closed unanswered.
    curl_sees_429(&server);
    drop(silent);
}

#[test]
fn a_watch_past_the_server_limit_is_answered_429_with_retry_after() {
    let _one = one_at_a_time();
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .max_watches(2)
        .token("alice-token", UserInfo::new("alice", &[]))
        .token("bob-token", UserInfo::new("bob", &[]))
        .token("carol-token", UserInfo::new("carol", &[]))
        .start()
        .unwrap();
    let alice = Client::with_token(&server, "alice-token");
    let bob = Client::with_token(&server, "bob-token");
    let carol = Client::with_token(&server, "carol-token");
    let first = alice.watch("timeoutSeconds=600");
    let _second = bob.watch("timeoutSeconds=600");
    let path = format!("{CSRS}?watch=true&timeoutSeconds=600");
    let a = call(&carol, &path).unwrap();
    assert_too_many_requests(&a);
    assert_eq!(
        a.connection, None,
        "the connection stays open for other requests"
    );
    assert_eq!(
        call(&carol, CSRS).unwrap().code,
        200,
        "other requests are not bounded"
    );

    drop(first);
    assert!(
        within(Duration::from_secs(5), || {
            call(&carol, &format!("{CSRS}?watch=true&timeoutSeconds=1"))
                .is_ok_and(|a| a.code == 200)
        }),
        "the dropped watch's slot was not freed"
    );
}

#[test]
fn a_watch_past_the_user_limit_carries_retry_after() {
    let _one = one_at_a_time();
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .max_watches_per_user(1)
        .token("alice-token", UserInfo::new("alice", &[]))
        .start()
        .unwrap();
    let alice = Client::with_token(&server, "alice-token");
    let _first = alice.watch("timeoutSeconds=600");
    let a = call(&alice, &format!("{CSRS}?watch=true&timeoutSeconds=600")).unwrap();
    assert_too_many_requests(&a);
}

/// A watch event is serialized once and shared by every watch that receives it: a `v1` and a
/// `v1beta1` watch of the same change each get it in their own version.
#[test]
fn one_change_reaches_v1_and_v1beta1_watches_each_in_its_version() {
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .v1beta1(true)
        .start()
        .unwrap();
    let c = Client::admin(&server);
    let mut v1 = c.watch("timeoutSeconds=600");
    let mut beta = c.watch_at(
        "/apis/certificates.k8s.io/v1beta1/certificatesigningrequests?watch=true&timeoutSeconds=600",
    );
    let mut v1_again = c.watch("timeoutSeconds=600");
    let (b, _) = client_body(Some("shared-event"), "alice");
    c.create(&b);
    for (w, version) in [
        (&mut v1, "certificates.k8s.io/v1"),
        (&mut beta, "certificates.k8s.io/v1beta1"),
        (&mut v1_again, "certificates.k8s.io/v1"),
    ] {
        let ev = w.until(|e| e["object"]["metadata"]["name"] == "shared-event");
        assert_eq!(ev["type"], "ADDED");
        assert_eq!(ev["object"]["apiVersion"], version);
    }
}

/// Panics in the authorizer for the user `panicker`; decides as the default one otherwise.
struct PanicsFor;

impl certrotate::server::Authorizer for PanicsFor {
    fn authorize(
        &self,
        user: &certrotate::server::UserInfo,
        action: &certrotate::server::Action<'_>,
    ) -> certrotate::server::Decision {
        assert_ne!(user.name, "panicker", "an authorizer that panics");
        certrotate::server::DefaultAuthorizer.authorize(user, action)
    }
}

/// A connection whose handler panics (here in a caller's authorizer) is closed at once, not
/// left open with the client waiting, and its place among `max_connections` is freed.
#[test]
fn a_connection_whose_handler_panics_is_closed_and_freed() {
    let _one = one_at_a_time();
    let server = CsrApiServer::builder()
        .authorizer(PanicsFor)
        .max_connections(1)
        .idle_timeout(Duration::from_secs(600))
        .start()
        .unwrap();
    let panicker = Client::with_cert(&server, "panicker", &["system:masters"]);
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(call(&panicker, CSRS).map(|a| a.code));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Err(_)) => {}
        Ok(Ok(code)) => panic!("an answer ({code}) from a handler that panicked"),
        Err(_) => panic!("the connection of a handler that panicked was left open"),
    }
    let admin = Client::admin(&server);
    assert!(
        within(Duration::from_secs(5), || call(&admin, CSRS)
            .is_ok_and(|a| a.code == 200)),
        "the connection of the handler that panicked still counts against the limit"
    );
}
