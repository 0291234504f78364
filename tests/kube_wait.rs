//! The CSR wait of `KubeCsrClient` against hostile fakes of the CSR API (tests/common), through
//! the real HTTPS path: the order of status conditions, the re-list backoff against a server
//! whose every watch ends in 410, answers of the wrong kind, and what a timeout says.

mod common;

use std::error::Error as _;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use certrotate::csr::WaitProgress;
use certrotate::testing::FakeClock;
use certrotate::{Cancel, CancelReason, CsrClient, CsrError, CsrRef, KubeCsrClientBuilder};
use common::*;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);
const BOUND: Duration = Duration::from_secs(10);

/// A builder for `api` with the client's default pacing (no shortened retry pause).
fn default_paced_builder(api: &FakeApi) -> KubeCsrClientBuilder {
    KubeCsrClientBuilder::new(api.server.url()).ca_pem(api.server.ca.cert_pem())
}

fn lists_and_watches(api: &FakeApi) -> usize {
    api.requests().iter().filter(|l| l.method == "GET").count()
}

// ---- conditions: Denied and Failed win over Approved ----

/// client-go's `WaitForCertificate` reads every condition and returns the Denied or Failed
/// error whatever else is set; a certificate is taken only from an object approved and
/// neither denied nor failed. Seen before: `[Approved, Denied]` with a certificate returned
/// the certificate.
#[test]
fn denied_or_failed_wins_over_approved_with_a_certificate() {
    /// (case, conditions as (type, reason), the error wanted)
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let cases: [Case; 4] = [
        (
            "[Approved, Denied]",
            &[("Approved", "AutoApproved"), ("Denied", "PolicyDenied")],
            "denied",
        ),
        (
            "[Approved, Failed]",
            &[("Approved", "AutoApproved"), ("Failed", "SignerFailed")],
            "failed",
        ),
        (
            "[Denied, Approved]",
            &[("Denied", "PolicyDenied"), ("Approved", "AutoApproved")],
            "denied",
        ),
        (
            "[Failed, Approved]",
            &[("Failed", "SignerFailed"), ("Approved", "AutoApproved")],
            "failed",
        ),
    ];
    for (case, conditions, want) in cases {
        for via_list in [false, true] {
            let api = FakeApi::new();
            let (client, csr) = create_v1(&api);
            let cert = api.sign(&csr.name);
            let mut obj = api.object(&csr.name);
            for (type_, reason) in conditions {
                obj = with_condition(obj, type_, reason, "by the test");
            }
            let obj = with_cert(obj, &cert);
            if via_list {
                api.insert(obj);
            } else {
                api.push_watch(vec![Step::Event("MODIFIED", obj), Step::Hang]);
            }
            let t = Instant::now();
            let err = wait(&client, &csr, LONG).unwrap_err();
            let case = format!("{case} via {}", if via_list { "list" } else { "watch" });
            assert!(t.elapsed() < BOUND, "{case}: ended at once");
            match (want, &err) {
                ("denied", CsrError::Denied { reason, .. }) => {
                    assert_eq!(reason, "PolicyDenied", "{case}")
                }
                ("failed", CsrError::Failed { reason, .. }) => {
                    assert_eq!(reason, "SignerFailed", "{case}")
                }
                _ => panic!("{case}: want {want}, got {err:?}"),
            }
        }
    }
}

// ---- a server whose every watch ends in 410 ----

/// The two ways a watch ends in 410: as the HTTP answer, or as an ERROR event on a 200 stream.
fn gone_410_scripts() -> [(&'static str, Vec<Step>); 2] {
    [
        (
            "HTTP 410",
            vec![Step::Http(Reply::status(
                410,
                "Gone",
                "too old resource version: 1 (2)",
            ))],
        ),
        (
            "ERROR event with code 410",
            vec![Step::Event(
                "ERROR",
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                       "message":"too old resource version: 1 (2)","reason":"Expired","code":410}),
            )],
        ),
    ]
}

/// The ways a watch fails other than 410: a 500 or 503 answer, an ERROR event with code 500.
fn failing_watch_scripts() -> [(&'static str, Vec<Step>); 3] {
    [
        (
            "HTTP 500",
            vec![Step::Http(Reply::plain(500, "etcd is sad"))],
        ),
        (
            "HTTP 503",
            vec![Step::Http(Reply::plain(503, "upstream unavailable"))],
        ),
        (
            "ERROR event with code 500",
            vec![Step::Event(
                "ERROR",
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                       "message":"etcd is sad","reason":"InternalError","code":500}),
            )],
        ),
    ]
}

/// Every watch ends in 410, or in one of the other errors (500, 503): never a list at once
/// after it, which would be a hot relist loop against a failing apiserver. The client's clock
/// is a fake one. Between two list+watch rounds
/// the client sleeps on that clock for client-go's reflector backoff (`wait.
/// NewExponentialBackoffManager(800ms, 30s, 2min, 2.0, 1.0)`): base 0.8, 1.6, 3.2, 6.4, 12.8,
/// 25.6 s, then 30 s, each stretched by a random fraction in [0, 1) of itself. Exactly one
/// list and one watch per round, so the requests in any window are bounded by that schedule.
/// A cancel during a pause ends the wait at once. Seen before: ~180 (ERROR event) to ~1,000
/// (HTTP 410) requests per second, no pause.
#[test]
fn every_watch_failing_backs_off_on_the_reflector_schedule_on_the_clock() {
    let bases_ms = [
        800u64, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000, 30_000,
    ];
    for (case, script) in gone_410_scripts()
        .into_iter()
        .chain(failing_watch_scripts())
    {
        let api = FakeApi::with(|s| s.every_watch = Some(script));
        let clock = FakeClock::new(SystemTime::now());
        let client = default_paced_builder(&api)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
        let mut csr = client.create(&req, &Cancel::new()).unwrap();
        csr.resource_version.clear(); // every round lists, the first one too
        let cancel = Cancel::new();
        let c2 = cancel.clone();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let waiter = thread::spawn(move || {
            let r = client.wait_for_certificate(&csr, Duration::from_secs(3600), &c2);
            let _ = done_tx.send(Instant::now());
            r
        });
        let mut slept = Duration::ZERO;
        for (round, base) in bases_ms.into_iter().enumerate() {
            assert!(
                clock.wait_for_waiters(1, BOUND),
                "{case}: round {round}: the client never paused on its clock"
            );
            assert_eq!(
                lists_and_watches(&api),
                2 * (round + 1),
                "{case}: one list and one watch per round (round {round})"
            );
            let pause = clock.next_timer_in().unwrap();
            let base = Duration::from_millis(base);
            assert!(
                pause >= base && pause <= 2 * base,
                "{case}: pause {round} is {pause:?}, want [{base:?}, {:?}]",
                2 * base
            );
            slept += clock.advance_to_next_timer().unwrap();
        }
        assert!(
            slept >= Duration::from_millis(140_400),
            "{case}: 9 pauses take at least 140.4 s: {slept:?}"
        );
        // Asleep in the 10th pause: cancelling ends it at once.
        assert!(clock.wait_for_waiters(1, BOUND), "{case}");
        let t = Instant::now();
        cancel.cancel(CancelReason::Stopped);
        let done = done_rx.recv_timeout(BOUND).expect("the wait returned");
        assert!(
            done.duration_since(t) < Duration::from_millis(100),
            "{case}: cancel took {:?}",
            done.duration_since(t)
        );
        let err = waiter.join().unwrap().unwrap_err();
        assert!(matches!(err, CsrError::Cancelled { .. }), "{case}: {err:?}");
        assert_eq!(lists_and_watches(&api), 20, "{case}");
    }
}

/// The same server for 2 s of real time with the real clock: at most 3 list+watch rounds fit
/// (pauses of at least 0.8 s and 1.6 s). The rate is printed as the reported figure.
#[test]
fn always_410_request_rate_is_bounded_in_real_time() {
    for (case, script) in gone_410_scripts() {
        let api = FakeApi::with(|s| s.every_watch = Some(script));
        let client = default_paced_builder(&api).build().unwrap();
        let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
        let csr = client.create(&req, &Cancel::new()).unwrap();
        let window = Duration::from_secs(2);
        let t = Instant::now();
        let err = wait(&client, &csr, window).unwrap_err();
        let took = t.elapsed();
        let n = lists_and_watches(&api);
        println!(
            "{case}: {n} requests in {took:?} ({:.1} requests/s)",
            n as f64 / took.as_secs_f64()
        );
        assert!(n <= 6, "{case}: {n} requests in {took:?}");
        // The 410 is why nothing was seen: it is the timeout's source.
        assert!(matches!(err, CsrError::Timeout { .. }), "{case}: {err:?}");
        let source = err.source().expect("the last 410 as source").to_string();
        assert!(source.contains("HTTP 410"), "{case}: {source}");
    }
}

// ---- answers of the wrong kind or version ----

fn secret_like(obj: &Value) -> Value {
    let mut s = obj.clone();
    s["kind"] = json!("Secret");
    s["apiVersion"] = json!("v1");
    s
}

/// A Secret, a Pod, a PodList or a v1beta1 object where a v1 CertificateSigningRequest(List)
/// belongs is refused with `InvalidResponse` naming what came, even when its name and uid fit
/// and it looks approved and issued. Seen before: such answers were taken for the CSR.
#[test]
fn answers_of_another_kind_or_version_are_refused() {
    enum Where {
        List,
        ListItem,
        Watch,
    }
    /// (case, where the answer goes, how it is made from the issued CSR, what the error names)
    type Case = (&'static str, Where, fn(&Value) -> Value, &'static str);
    let cases: [Case; 5] = [
        ("a PodList from list", Where::List, |o| o.clone(), "PodList"),
        (
            "a Secret as list item",
            Where::ListItem,
            secret_like,
            "Secret",
        ),
        (
            "a Secret in a watch event",
            Where::Watch,
            secret_like,
            "Secret",
        ),
        (
            "a Pod in a watch event",
            Where::Watch,
            |o| {
                let mut p = o.clone();
                p["kind"] = json!("Pod");
                p["apiVersion"] = json!("v1");
                p
            },
            "Pod",
        ),
        (
            "a v1beta1 CSR in a v1 watch",
            Where::Watch,
            |o| {
                let mut p = o.clone();
                p["apiVersion"] = json!("certificates.k8s.io/v1beta1");
                p
            },
            "certificates.k8s.io/v1beta1",
        ),
    ];
    for (case, place, make, needle) in cases {
        let api = FakeApi::new();
        let (client, csr) = create_v1(&api);
        let cert = api.sign(&csr.name);
        let issued = with_cert(
            with_condition(api.object(&csr.name), "Approved", "", ""),
            &cert,
        );
        let wrong = make(&issued);
        match place {
            Where::List => {
                let mut item = wrong.clone();
                item.as_object_mut().unwrap().remove("kind");
                item.as_object_mut().unwrap().remove("apiVersion");
                api.state.lock().every_list = Some(Reply::json(
                    200,
                    &json!({"kind": "PodList", "apiVersion": "v1",
                            "metadata": {"resourceVersion": "5"}, "items": [item]}),
                ));
            }
            Where::ListItem => api.insert(wrong),
            Where::Watch => {
                // An absent kind is the expected one (client-go defaults it): accepted.
                let mut no_kind = api.object(&csr.name);
                no_kind["kind"] = Value::Null;
                api.push_watch(vec![
                    Step::Event("ADDED", no_kind),
                    Step::Event("MODIFIED", wrong),
                    Step::Hang,
                ]);
            }
        }
        let err = wait(&client, &csr, LONG).unwrap_err();
        match &err {
            CsrError::InvalidResponse { message, .. } => {
                assert!(message.contains(needle), "{case}: {message}");
                assert!(
                    message.contains("CertificateSigningRequest"),
                    "{case}: {message}"
                );
            }
            other => panic!("{case}: {other:?}"),
        }
    }
}

/// Create and get (adoption) answered with a Secret that has a fitting name and uid.
#[test]
fn create_and_get_answers_of_another_kind_are_refused() {
    let secret = json!({"kind": "Secret", "apiVersion": "v1",
                        "metadata": {"name": "csr-9", "uid": "uid-9", "resourceVersion": "9"},
                        "data": {}});
    let api = FakeApi::new();
    api.state
        .lock()
        .create_replies
        .push_back(Reply::json(201, &secret));
    let client = api.builder().build().unwrap();
    let (_k, mut req) = new_request(CLIENT_SIGNER, &client_usages());
    let err = client.create(&req, &Cancel::new()).unwrap_err();
    assert!(
        matches!(&err, CsrError::InvalidResponse { op: "create", message } if message.contains("Secret")),
        "{err:?}"
    );

    req.name = Some("node-csr-fixed".into());
    client.create(&req, &Cancel::new()).unwrap();
    api.state
        .lock()
        .get_replies
        .push_back(Reply::json(200, &secret));
    let err = client.create(&req, &Cancel::new()).unwrap_err();
    assert!(
        matches!(&err, CsrError::InvalidResponse { op: "retrieve", message } if message.contains("Secret")),
        "{err:?}"
    );
}

// ---- what a timeout says ----

/// Every list is forbidden: the wait times out, and the 403 is in the returned error (its
/// `source()` and the `last_error` field), not only in a debug log; also when the fallback
/// version answers 404 (a server without v1beta1), which only says that version is not
/// served. Seen before: only "is an approver running for this signer?".
#[test]
fn every_list_forbidden_times_out_with_the_403_as_cause() {
    for v1beta1_served in [true, false] {
        let case = if v1beta1_served {
            "v1 and v1beta1 forbidden"
        } else {
            "v1 forbidden, v1beta1 absent"
        };
        let api = FakeApi::with(|s| {
            s.v1beta1 = v1beta1_served;
            s.every_list = Some(Reply::status(
                403,
                "Forbidden",
                "certificatesigningrequests.certificates.k8s.io is forbidden: User \"system:anonymous\" cannot list resource",
            ))
        });
        let (client, csr) = create_v1(&api);
        let err = wait(&client, &csr, Duration::from_millis(600)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(r#"timed out waiting for certificate signing request "csr-1" after"#),
            "{case}: {msg}"
        );
        assert!(
            msg.ends_with("; the last attempt to read it failed"),
            "{case}: {msg}"
        );
        let source = err.source().expect("a source").to_string();
        assert!(source.contains("HTTP 403, Forbidden"), "{case}: {source}");
        assert!(source.contains("cannot list resource"), "{case}: {source}");
        match &err {
            CsrError::Timeout {
                progress,
                last_error: Some(last),
                ..
            } => {
                assert_eq!(*progress, WaitProgress::Unseen, "{case}");
                assert!(
                    last.api_error().is_some_and(|e| e.is_forbidden()),
                    "{case}: {last:?}"
                );
            }
            other => panic!("{case}: {other:?}"),
        }
        assert!(err.is_transient(), "{case}");
    }
}

/// A request the server does not have (deleted before the wait began): the list answers
/// without it, and the timeout says so instead of asking for an approver.
#[test]
fn request_absent_from_the_list_times_out_saying_not_found() {
    let api = FakeApi::new();
    let client = api.builder().build().unwrap();
    let csr = CsrRef {
        name: "csr-gone".into(),
        uid: "uid-gone".into(),
        api_version: certrotate::csr::ApiVersion::V1,
        resource_version: String::new(),
    };
    let err = wait(&client, &csr, Duration::from_millis(500)).unwrap_err();
    assert!(
        err.to_string()
            .ends_with(r#""csr-gone" after 0.5s; it was not found"#),
        "{err}"
    );
    assert!(
        matches!(
            &err,
            CsrError::Timeout {
                progress: WaitProgress::NotFound,
                last_error: None,
                ..
            }
        ),
        "{err:?}"
    );
}

mod logs {
    use std::sync::{Mutex, OnceLock};
    use std::time::Instant;

    static LINES: OnceLock<Mutex<Vec<(Instant, log::Level, String)>>> = OnceLock::new();

    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            if let Some(l) = LINES.get() {
                l.lock().unwrap().push((
                    Instant::now(),
                    record.level(),
                    format!("{}", record.args()),
                ));
            }
        }
        fn flush(&self) {}
    }

    pub fn install() {
        LINES.get_or_init(|| Mutex::new(Vec::new()));
        let _ = log::set_logger(&Capture);
        log::set_max_level(log::LevelFilter::Debug);
    }

    /// Warnings that mention `needle`, with the time they were logged.
    pub fn warnings(needle: &str) -> Vec<(Instant, String)> {
        LINES
            .get()
            .map(|l| {
                l.lock()
                    .unwrap()
                    .iter()
                    .filter(|(_, lvl, s)| *lvl == log::Level::Warn && s.contains(needle))
                    .map(|(t, _, s)| (*t, s.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Approved, never issued: the timeout names the signer ("approved but not issued: is a
/// signer running for <signerName>?"), and one warning is logged once the wait has passed
/// half its timeout, while the watch is still open. Seen before: the approver hint, and no
/// warning.
#[test]
fn approved_not_issued_names_the_signer_and_warns_at_half_the_timeout() {
    logs::install();
    let api = FakeApi::new();
    let client = api.builder().build().unwrap();
    let (_k, mut req) = new_request(CLIENT_SIGNER, &client_usages());
    req.name = Some("approved-not-issued".into());
    let csr = client.create(&req, &Cancel::new()).unwrap();
    api.push_watch(vec![
        Step::Event(
            "MODIFIED",
            with_condition(api.object(&csr.name), "Approved", "AutoApproved", ""),
        ),
        Step::Hang,
    ]);
    let timeout = Duration::from_millis(1600);
    let t = Instant::now();
    let err = wait(&client, &csr, timeout).unwrap_err();
    assert!(t.elapsed() < timeout + BOUND);
    assert_eq!(
        err.to_string(),
        format!(
            r#"timed out waiting for certificate signing request "approved-not-issued" after 1.6s; approved but not issued: is a signer running for {CLIENT_SIGNER}?"#
        )
    );
    assert!(err.source().is_none(), "{err:?}");
    let warned = logs::warnings("\"approved-not-issued\"");
    assert_eq!(warned.len(), 1, "{warned:?}");
    let (at, line) = &warned[0];
    let after = at.duration_since(t);
    assert!(
        after >= timeout / 2 && after < timeout,
        "warned {after:?} into a {timeout:?} wait"
    );
    assert!(
        line.contains("approved but not issued") && line.contains(CLIENT_SIGNER),
        "{line}"
    );
}

/// Pending (no condition): the timeout's approver hint names the signer seen on the object.
#[test]
fn pending_timeout_names_the_signer() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    api.push_watch(vec![
        Step::Event("ADDED", api.object(&csr.name)),
        Step::Hang,
    ]);
    let err = wait(&client, &csr, Duration::from_millis(500)).unwrap_err();
    assert!(
        err.to_string()
            .ends_with(&format!("; is an approver running for {CLIENT_SIGNER}?")),
        "{err}"
    );
    assert!(
        matches!(&err, CsrError::Timeout { progress: WaitProgress::Pending { signer_name: Some(s) }, .. } if s == CLIENT_SIGNER),
        "{err:?}"
    );
}

// ---- a watch stream that breaks ----

/// A watch event that is not valid JSON, or a stream cut inside an event, ends that watch as
/// client-go's stream watcher does: the reflector lists and watches again after its pause, and
/// the certificate that the next watch brings is taken. Seen before: the wait ended at once with
/// "malformed watch event" (or "ended inside an event").
#[test]
fn a_broken_watch_stream_is_watched_again() {
    let cases: [(&str, Step); 3] = [
        (
            "an event that is not JSON",
            Step::Raw(b"{not json\n".to_vec()),
        ),
        (
            "an event cut off before its newline",
            Step::Raw(br#"{"type":"MODIFIED","object":{"kind":"Certifi"#.to_vec()),
        ),
        (
            "a connection reset inside an event",
            Step::Raw(br#"{"type":"MODIFIED","obj"#.to_vec()),
        ),
    ];
    for (i, (case, broken)) in cases.into_iter().enumerate() {
        let api = FakeApi::new();
        let (client, csr) = create_v1(&api);
        let cert = api.sign(&csr.name);
        let issued = with_cert(
            with_condition(api.object(&csr.name), "Approved", "", ""),
            &cert,
        );
        let first = if i == 2 {
            vec![broken, Step::Abort]
        } else {
            vec![broken]
        };
        api.push_watch(first);
        api.push_watch(vec![Step::Event("MODIFIED", issued), Step::Hang]);
        let got = wait(&client, &csr, LONG).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(got, cert.as_bytes(), "{case}");
        assert_eq!(
            lists_and_watches(&api),
            4,
            "{case}: two lists and two watches"
        );
    }
}
