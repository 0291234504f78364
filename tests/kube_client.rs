//! Black-box tests of `KubeCsrClient` against a scripted HTTPS fake of the CSR API
//! (tests/common): create and adoption, the list+watch wait and every CSR state sequence,
//! errors and health, hostile answers, cancellation, TLS and credentials.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use certrotate::csr::ApiVersion;
use certrotate::{Cancel, CancelReason, CsrClient, CsrError, CsrRef, KeyUsage};
use common::*;
use serde_json::json;

const LONG: Duration = Duration::from_secs(30);

fn paths(api: &FakeApi) -> Vec<String> {
    api.requests()
        .iter()
        .map(|l| {
            let kind = if l.q("watch") == Some("true") {
                "WATCH"
            } else {
                l.method.as_str()
            };
            format!("{kind} {}", l.path)
        })
        .collect()
}

// ---- create ----

#[test]
fn create_on_v1_sends_generate_name_signer_usages_and_no_expiration() {
    let api = FakeApi::new();
    let (_c, csr) = create_v1_fresh(&api);
    assert_eq!(
        csr,
        CsrRef {
            name: "csr-1".into(),
            uid: "uid-1".into(),
            api_version: ApiVersion::V1,
            resource_version: "101".into(),
        }
    );
    let log = api.requests();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].method.as_str(), log[0].path.as_str()), ("POST", V1));
    let body = body_json(&log[0]);
    assert_eq!(body["apiVersion"], "certificates.k8s.io/v1");
    assert_eq!(body["kind"], "CertificateSigningRequest");
    assert_eq!(body["metadata"], json!({"generateName": "csr-"}));
    assert_eq!(body["spec"]["signerName"], CLIENT_SIGNER);
    assert_eq!(
        body["spec"]["usages"],
        json!(["digital signature", "key encipherment", "client auth"])
    );
    assert!(body["spec"].get("expirationSeconds").is_none());
    let pem = base64_decode(body["spec"]["request"].as_str().unwrap());
    assert!(
        String::from_utf8(pem)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn create_sends_expiration_seconds_truncated_when_set_and_a_fixed_name() {
    let api = FakeApi::new();
    let client = api.builder().build().unwrap();
    let (_k, mut req) = new_request(CLIENT_SIGNER, &client_usages());
    req.requested_lifetime = Some(Duration::from_millis(3_600_900));
    req.name = Some("node-csr-abc".into());
    let csr = client.create(&req, &Cancel::new()).unwrap();
    assert_eq!(csr.name, "node-csr-abc");
    let body = body_json(&api.requests()[0]);
    assert_eq!(body["spec"]["expirationSeconds"], 3600);
    assert_eq!(body["metadata"], json!({"name": "node-csr-abc"}));
}

/// client-go's rule, when v1beta1 is asked for: a request v1 cannot express goes straight to
/// v1beta1.
#[test]
fn create_goes_straight_to_v1beta1_without_signer_usages_or_with_legacy_signer() {
    let cases: [(&str, &str, Vec<KeyUsage>); 3] = [
        ("no signer name", "", client_usages()),
        ("no usages", CLIENT_SIGNER, vec![]),
        (
            "legacy-unknown signer",
            "kubernetes.io/legacy-unknown",
            client_usages(),
        ),
    ];
    for (name, signer, usages) in cases {
        let api = FakeApi::new();
        let client = api.builder().allow_legacy_v1beta1(true).build().unwrap();
        let (_k, req) = new_request(signer, &usages);
        let csr = client.create(&req, &Cancel::new()).unwrap();
        assert_eq!(csr.api_version, ApiVersion::V1beta1, "{name}");
        assert_eq!(paths(&api), [format!("POST {V1BETA1}")], "{name}");
        let body = body_json(&api.requests()[0]);
        assert_eq!(body["apiVersion"], "certificates.k8s.io/v1beta1", "{name}");
        if signer.is_empty() {
            assert!(body["spec"].get("signerName").is_none(), "{name}");
        }
    }
}

/// Without the opt-in, v1beta1 is never used: a request v1 cannot express goes to v1 too (the
/// server's validation answers it), and a v1 404 is not followed to v1beta1.
#[test]
fn without_the_opt_in_every_request_goes_to_v1_only() {
    let cases: [(&str, &str, Vec<KeyUsage>); 4] = [
        ("no signer name", "", client_usages()),
        ("no usages", CLIENT_SIGNER, vec![]),
        (
            "legacy-unknown signer",
            "kubernetes.io/legacy-unknown",
            client_usages(),
        ),
        ("a v1 request", CLIENT_SIGNER, client_usages()),
    ];
    for (name, signer, usages) in cases {
        let api = FakeApi::new();
        let client = api.builder().build().unwrap();
        let (_k, req) = new_request(signer, &usages);
        let csr = client.create(&req, &Cancel::new()).unwrap();
        assert_eq!(csr.api_version, ApiVersion::V1, "{name}");
        assert_eq!(paths(&api), [format!("POST {V1}")], "{name}");
    }
    let api = FakeApi::with(|s| s.v1 = false);
    let client = api.builder().build().unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let err = client.create(&req, &Cancel::new()).unwrap_err();
    assert!(err.to_string().contains(V1), "{err}");
    assert_eq!(paths(&api), [format!("POST {V1}")]);
}

/// client-go "No current certificate, no bootstrap certificate, no v1 API": v1 answers 404,
/// so create, list and watch use v1beta1 (when v1beta1 is asked for).
#[test]
fn v1_404_falls_back_to_v1beta1_for_create_list_and_watch() {
    let api = FakeApi::with(|s| s.v1 = false);
    let client = api.builder().allow_legacy_v1beta1(true).build().unwrap();
    let (_key, req) = new_request(CLIENT_SIGNER, &client_usages());
    let csr = client.create(&req, &Cancel::new()).unwrap();
    assert_eq!(csr.api_version, ApiVersion::V1beta1);
    let cert = api.sign(&csr.name);
    let obj = api.object(&csr.name);
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(with_condition(obj, "Approved", "AutoApproved", "ok"), &cert),
    )]);
    let got = wait(&client, &csr, LONG).unwrap();
    assert_eq!(got, cert.as_bytes());
    // The request was just created: watched from the create's version, on v1beta1, unlisted.
    assert_eq!(
        paths(&api),
        [
            format!("POST {V1}"),
            format!("POST {V1BETA1}"),
            format!("WATCH {V1BETA1}"),
        ]
    );
    let mut csr = csr;
    csr.resource_version.clear();
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(
            with_condition(api.object(&csr.name), "Approved", "AutoApproved", "ok"),
            &cert,
        ),
    )]);
    // Without it (adopted, say), the list too goes to v1beta1.
    wait(&client, &csr, LONG).unwrap();
    assert_eq!(
        paths(&api)[3..],
        [format!("GET {V1BETA1}"), format!("WATCH {V1BETA1}")]
    );
}

/// C16: a server without v1beta1 (Kubernetes ≥ 1.22): everything goes to v1, signerName and
/// usages are always set.
#[test]
fn c16_v1beta1_absent_everything_on_v1() {
    let api = FakeApi::with(|s| s.v1beta1 = false);
    let (client, csr) = create_v1(&api);
    assert_eq!(csr.api_version, ApiVersion::V1);
    let cert = api.sign(&csr.name);
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(
            with_condition(api.object(&csr.name), "Approved", "", ""),
            &cert,
        ),
    )]);
    wait(&client, &csr, LONG).unwrap();
    assert_eq!(
        paths(&api),
        [
            format!("POST {V1}"),
            format!("GET {V1}"),
            format!("WATCH {V1}")
        ]
    );
    let body = body_json(&api.requests()[0]);
    assert_eq!(body["spec"]["signerName"], CLIENT_SIGNER);
    assert!(!body["spec"]["usages"].as_array().unwrap().is_empty());
}

/// C16: with no CSR API at all, the create error names the path of the last version tried
/// (v1, or v1beta1 when it is asked for); a 404 with a Status body counts as a healthy server
/// (client-go), a bare 404 does not.
#[test]
fn c16_no_csr_api_404_names_the_path() {
    for (status_body, healthy, legacy) in [
        (true, true, false),
        (false, false, false),
        (true, true, true),
        (false, false, true),
    ] {
        let api = FakeApi::with(|s| {
            s.v1 = false;
            s.v1beta1 = false;
            s.absent_is_status = status_body;
        });
        let client = api.builder().allow_legacy_v1beta1(legacy).build().unwrap();
        let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
        let err = client.create(&req, &Cancel::new()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(if legacy { V1BETA1 } else { V1 }), "{msg}");
        assert!(
            msg.starts_with("cannot create certificate signing request"),
            "{msg}"
        );
        assert_eq!(err.server_healthy_after_create(), healthy, "{msg}");
    }
}

#[test]
fn already_exists_with_compatible_csr_is_adopted() {
    let api = FakeApi::new();
    let client = api.builder().build().unwrap();
    let (_k, mut req) = new_request(CLIENT_SIGNER, &client_usages());
    req.name = Some("node-csr-fixed".into());
    let first = client.create(&req, &Cancel::new()).unwrap();
    // The same request again (a restart): adopted, same uid.
    let again = client.create(&req, &Cancel::new()).unwrap();
    assert_eq!(
        (&again.name, &again.uid, again.api_version),
        (&first.name, &first.uid, first.api_version)
    );
    // Its status unknown until listed: the wait lists first.
    assert_eq!(
        (
            first.resource_version.as_str(),
            again.resource_version.as_str()
        ),
        ("101", "")
    );
    assert_eq!(
        paths(&api),
        [
            format!("POST {V1}"),
            format!("POST {V1}"),
            format!("GET {V1}/node-csr-fixed"),
        ]
    );
}

/// A named create that fails with anything but 409 AlreadyExists is that failure: the client
/// does not try to adopt (no GET), and the error says whether a retry may succeed — 429 and
/// 5xx yes, other 4xx no — whatever the Status's reason (`Unknown` included), and keeps the
/// server's Retry-After.
#[test]
fn a_named_create_failing_other_than_already_exists_adopts_nothing() {
    struct Case {
        code: u16,
        reason: &'static str,
        transient: bool,
    }
    let cases = [
        Case {
            code: 400,
            reason: "BadRequest",
            transient: false,
        },
        Case {
            code: 403,
            reason: "Forbidden",
            transient: false,
        },
        Case {
            code: 422,
            reason: "Invalid",
            transient: false,
        },
        Case {
            code: 429,
            reason: "TooManyRequests",
            transient: true,
        },
        Case {
            code: 500,
            reason: "InternalError",
            transient: true,
        },
        Case {
            code: 500,
            reason: "Unknown",
            transient: true,
        },
        Case {
            code: 503,
            reason: "ServiceUnavailable",
            transient: true,
        },
        Case {
            code: 504,
            reason: "Timeout",
            transient: true,
        },
    ];
    for c in cases {
        let api = FakeApi::new();
        api.state
            .lock()
            .create_replies
            .push_back(Reply::status(c.code, c.reason, "no"));
        let client = api.builder().build().unwrap();
        let (_k, mut req) = new_request(CLIENT_SIGNER, &client_usages());
        req.name = Some("node-csr-fixed".into());
        let err = client.create(&req, &Cancel::new()).unwrap_err();
        let case = format!("{} {}", c.code, c.reason);
        let api_error = err
            .api_error()
            .unwrap_or_else(|| panic!("{case}: not an API error: {err}"));
        assert_eq!(
            (api_error.code, api_error.reason.as_str()),
            (c.code, c.reason),
            "{case}"
        );
        assert_eq!(err.is_transient(), c.transient, "{case}");
        assert_eq!(paths(&api), [format!("POST {V1}")], "{case}: no adoption");
    }
}

#[test]
fn adoption_gets_v1beta1_when_v1_get_is_404() {
    let api = FakeApi::new();
    let client = api.builder().allow_legacy_v1beta1(true).build().unwrap();
    let (_k, mut req) = new_request(CLIENT_SIGNER, &client_usages());
    req.name = Some("node-csr-fixed".into());
    client.create(&req, &Cancel::new()).unwrap();
    api.state
        .lock()
        .get_replies
        .push_back(Reply::status(404, "NotFound", "no v1"));
    let adopted = client.create(&req, &Cancel::new()).unwrap();
    assert_eq!(adopted.api_version, ApiVersion::V1beta1);
    assert_eq!(adopted.uid, "uid-1");
}

/// csr_test.go TestEnsureCompatible "signerName on 'orig' does not match signerName on 'new'",
/// through the wire.
#[test]
fn already_exists_with_other_signer_is_refused_with_client_go_message() {
    let api = FakeApi::new();
    let client = api.builder().build().unwrap();
    let (_k, mut req) = new_request("example.com/not-test", &client_usages());
    req.name = Some("fixed".into());
    client.create(&req, &Cancel::new()).unwrap();
    req.signer_name = "example.com/test".into();
    let err = client.create(&req, &Cancel::new()).unwrap_err();
    assert!(matches!(err, CsrError::Incompatible { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        r#"retrieved csr is not compatible: csr signerNames differ: new "example.com/test", orig: "example.com/not-test""#
    );
}

#[test]
fn already_exists_with_another_key_is_refused() {
    let api = FakeApi::new();
    let client = api.builder().build().unwrap();
    let (_k, mut req) = new_request(CLIENT_SIGNER, &client_usages());
    req.name = Some("fixed".into());
    client.create(&req, &Cancel::new()).unwrap();
    let (_k2, mut other) = new_request(CLIENT_SIGNER, &client_usages());
    other.name = Some("fixed".into());
    let err = client.create(&other, &Cancel::new()).unwrap_err();
    assert!(err.to_string().contains("another key"), "{err}");
}

#[test]
fn already_exists_without_fixed_name_is_an_api_error() {
    let api = FakeApi::new();
    api.state
        .lock()
        .create_replies
        .push_back(Reply::status(409, "AlreadyExists", "exists"));
    let client = api.builder().build().unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let err = client.create(&req, &Cancel::new()).unwrap_err();
    assert!(err.api_error().unwrap().is_already_exists());
    assert_eq!(api.requests().len(), 1);
}

// ---- wait: CSR state sequences (C11) ----

#[test]
fn watch_request_carries_selector_resource_version_bookmarks_and_timeout() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cert = api.sign(&csr.name);
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(
            with_condition(api.object(&csr.name), "Approved", "", ""),
            &cert,
        ),
    )]);
    wait(&client, &csr, LONG).unwrap();
    let log = api.requests();
    let list = &log[1];
    assert_eq!(list.q("fieldSelector"), Some("metadata.name=csr-1"));
    assert_eq!(list.q("watch"), None);
    let watch = &log[2];
    assert_eq!(watch.q("fieldSelector"), Some("metadata.name=csr-1"));
    assert_eq!(watch.q("allowWatchBookmarks"), Some("true"));
    assert_eq!(
        watch.q("resourceVersion"),
        Some("101"),
        "the list's resourceVersion"
    );
    let secs: u64 = watch.q("timeoutSeconds").unwrap().parse().unwrap();
    assert!(
        (1..=30).contains(&secs),
        "capped by the wait timeout: {secs}"
    );
}

#[test]
fn c11_pending_then_approved_without_cert_then_issued_returns_the_cert() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cert = api.sign(&csr.name);
    let obj = api.object(&csr.name);
    let approved = with_condition(obj.clone(), "Approved", "AutoApproved", "ok");
    api.push_watch(vec![
        Step::Event("ADDED", with_rv(obj, "102")),
        Step::Event("MODIFIED", with_rv(approved.clone(), "103")),
        Step::Event("MODIFIED", with_rv(with_cert(approved, &cert), "104")),
    ]);
    assert_eq!(wait(&client, &csr, LONG).unwrap(), cert.as_bytes());
}

#[test]
fn c11_denied_ends_the_wait_at_once() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    api.push_watch(vec![
        Step::Event(
            "MODIFIED",
            with_condition(api.object(&csr.name), "Denied", "NotAllowed", "nope"),
        ),
        Step::Hang,
    ]);
    let t = Instant::now();
    let err = wait(&client, &csr, LONG).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(
        err.to_string(),
        r#"certificate signing request "csr-1" is denied, reason: NotAllowed, message: nope"#
    );
}

#[test]
fn c11_failed_ends_the_wait_at_once() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let obj = with_condition(api.object(&csr.name), "Approved", "", "");
    api.push_watch(vec![
        Step::Event(
            "MODIFIED",
            with_condition(obj, "Failed", "SignerValidationFailure", "bad usages"),
        ),
        Step::Hang,
    ]);
    let t = Instant::now();
    let err = wait(&client, &csr, LONG).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(&err, CsrError::Failed { reason, message, .. } if reason == "SignerValidationFailure" && message == "bad usages"),
        "{err:?}"
    );
}

#[test]
fn c11_approved_forever_never_issued_times_out() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    api.push_watch(vec![
        Step::Event(
            "MODIFIED",
            with_condition(api.object(&csr.name), "Approved", "", ""),
        ),
        Step::Hang,
    ]);
    let t = Instant::now();
    let err = wait(&client, &csr, Duration::from_millis(400)).unwrap_err();
    let took = t.elapsed();
    assert!(matches!(err, CsrError::Timeout { .. }), "{err:?}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(err.is_transient());
}

#[test]
fn c11_object_with_another_uid_is_never_taken_for_ours() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cert = api.sign(&csr.name);
    let impostor = with_uid(
        with_cert(
            with_condition(api.object(&csr.name), "Approved", "", ""),
            &cert,
        ),
        "uid-other",
    );
    api.push_watch(vec![Step::Event("MODIFIED", impostor), Step::Hang]);
    let err = wait(&client, &csr, LONG).unwrap_err();
    assert!(
        matches!(&err, CsrError::UidChanged { expected, got, .. } if expected == "uid-1" && got == "uid-other"),
        "{err:?}"
    );
    assert!(err.to_string().starts_with(r#"csr "csr-1" changed UIDs"#));
}

#[test]
fn deleted_ends_the_wait() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    api.push_watch(vec![
        Step::Event("DELETED", api.object(&csr.name)),
        Step::Hang,
    ]);
    let err = wait(&client, &csr, LONG).unwrap_err();
    assert_eq!(err.to_string(), r#"csr "csr-1" was deleted"#);
}

#[test]
fn events_for_other_names_are_ignored() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cert = api.sign(&csr.name);
    let mut other = api.object(&csr.name);
    other["metadata"]["name"] = json!("csr-other");
    other["metadata"]["uid"] = json!("uid-x");
    api.push_watch(vec![
        Step::Event("DELETED", other.clone()),
        Step::Event("MODIFIED", with_condition(other, "Denied", "", "")),
        Step::Event(
            "MODIFIED",
            with_cert(
                with_condition(api.object(&csr.name), "Approved", "", ""),
                &cert,
            ),
        ),
    ]);
    assert_eq!(wait(&client, &csr, LONG).unwrap(), cert.as_bytes());
}

// ---- wait: watch lifecycle (C12) ----

/// C12: the server ends the watch cleanly mid-wait; the waiter resumes from the last
/// resourceVersion without re-listing, and the close is not a failure.
#[test]
fn c12_watch_closed_midway_is_resumed_from_last_resource_version() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cert = api.sign(&csr.name);
    let obj = api.object(&csr.name);
    api.push_watch(vec![Step::Event("ADDED", with_rv(obj.clone(), "150"))]);
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_rv(
            with_cert(with_condition(obj, "Approved", "", ""), &cert),
            "151",
        ),
    )]);
    assert_eq!(wait(&client, &csr, LONG).unwrap(), cert.as_bytes());
    let log = api.requests();
    let watches: Vec<_> = log
        .iter()
        .filter(|l| l.q("watch") == Some("true"))
        .collect();
    assert_eq!(watches.len(), 2);
    assert_eq!(watches[1].q("resourceVersion"), Some("150"));
    assert_eq!(
        log.iter()
            .filter(|l| l.method == "GET" && l.q("watch").is_none())
            .count(),
        1
    );
}

/// C12: the connection is cut without a chunked terminator between events: re-list and
/// re-watch.
#[test]
fn c12_watch_cut_between_events_is_recovered() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cert = api.sign(&csr.name);
    let obj = api.object(&csr.name);
    api.push_watch(vec![Step::Event("ADDED", obj.clone()), Step::Abort]);
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(with_condition(obj, "Approved", "", ""), &cert),
    )]);
    assert_eq!(wait(&client, &csr, LONG).unwrap(), cert.as_bytes());
}

/// C12: a resume answered with 410 Gone makes the waiter list again and watch from the new
/// list's resourceVersion.
#[test]
fn c12_410_on_watch_relists_and_rewatches() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cert = api.sign(&csr.name);
    let obj = api.object(&csr.name);
    api.push_watch(vec![Step::Http(Reply::status(
        410,
        "Expired",
        "too old resource version: 101 (500)",
    ))]);
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(with_condition(obj, "Approved", "", ""), &cert),
    )]);
    assert_eq!(wait(&client, &csr, LONG).unwrap(), cert.as_bytes());
    let p = paths(&api);
    assert_eq!(
        p[1..],
        [
            format!("GET {V1}"),
            format!("WATCH {V1}"),
            format!("GET {V1}"),
            format!("WATCH {V1}")
        ]
    );
}

/// A request this client has just created has no history before its creation: the wait
/// watches from the create's resourceVersion with no list before it (one round trip less than
/// client-go's list+watch).
#[test]
fn a_request_just_created_is_watched_from_the_creates_version_without_a_list() {
    let api = FakeApi::new();
    let (client, csr) = create_v1_fresh(&api);
    assert_eq!(csr.resource_version, "101");
    let cert = api.sign(&csr.name);
    api.push_issued_event(&csr.name, &cert);
    assert_eq!(wait(&client, &csr, LONG).unwrap(), cert.as_bytes());
    assert_eq!(paths(&api), [format!("POST {V1}"), format!("WATCH {V1}")]);
    let log = api.requests();
    assert_eq!(log[1].q("resourceVersion"), Some("101"));
    assert_eq!(log[1].q("fieldSelector"), Some("metadata.name=csr-1"));
}

/// The create's version compacted away before the wait began (410), or any other failure of
/// that first watch: the wait lists at once (no backoff pause: the retry interval here is an
/// hour, longer than the wait), then watches from the list's version, as any wait does.
#[test]
fn a_watch_from_the_creates_version_that_fails_leads_to_the_list() {
    for reply in [
        Reply::status(410, "Expired", "too old resource version: 101 (500)"),
        Reply::status(
            504,
            "Timeout",
            "Too large resource version: 101, current: 100",
        ),
        Reply::plain(500, "etcd is sad"),
    ] {
        let api = FakeApi::new();
        let client = api
            .builder()
            .retry_interval(Duration::from_secs(3600))
            .build()
            .unwrap();
        let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
        let csr = client.create(&req, &Cancel::new()).unwrap();
        let cert = api.sign(&csr.name);
        api.push_watch(vec![Step::Http(reply)]);
        api.push_issued_event(&csr.name, &cert);
        assert_eq!(wait(&client, &csr, LONG).unwrap(), cert.as_bytes());
        assert_eq!(
            paths(&api),
            [
                format!("POST {V1}"),
                format!("WATCH {V1}"),
                format!("GET {V1}"),
                format!("WATCH {V1}")
            ]
        );
        let log = api.requests();
        assert_eq!(log[1].q("resourceVersion"), Some("101"));
        assert_eq!(log[2].q("fieldSelector"), Some("metadata.name=csr-1"));
    }
}

/// A create answered with a status already set (kube-apiserver clears it on create) is not
/// taken as the start of the request's history: its wait lists first.
#[test]
fn a_create_answer_with_a_status_leaves_the_version_unknown() {
    for status in [
        json!({"conditions": [{"type": "Approved", "status": "True"}]}),
        json!({"certificate": "Zm9v"}),
    ] {
        let api = FakeApi::new();
        let client = api.builder().build().unwrap();
        let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
        let mut answer = json!({
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "csr-x", "uid": "uid-x", "resourceVersion": "7"},
            "spec": {"request": "", "signerName": CLIENT_SIGNER, "usages": []},
        });
        answer["status"] = status.clone();
        api.state
            .lock()
            .create_replies
            .push_back(Reply::json(201, &answer));
        let csr = client.create(&req, &Cancel::new()).unwrap();
        assert_eq!(csr.resource_version, "", "{status}");
    }
}

#[test]
fn c12_expired_error_event_relists() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cert = api.sign(&csr.name);
    let obj = api.object(&csr.name);
    api.push_watch(vec![
        Step::Event(
            "ERROR",
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"too old resource version","reason":"Expired","code":410}),
        ),
        Step::Hang,
    ]);
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(with_condition(obj, "Approved", "", ""), &cert),
    )]);
    assert_eq!(wait(&client, &csr, LONG).unwrap(), cert.as_bytes());
    assert_eq!(
        api.requests()
            .iter()
            .filter(|l| l.method == "GET" && l.q("watch").is_none())
            .count(),
        2
    );
}

/// C12: a CSR issued before the watch began is returned from the initial list, with no watch.
#[test]
fn c12_already_issued_returns_from_the_list() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cert = api.sign(&csr.name);
    let issued = with_cert(
        with_condition(api.object(&csr.name), "Approved", "", ""),
        &cert,
    );
    api.insert(issued);
    assert_eq!(wait(&client, &csr, LONG).unwrap(), cert.as_bytes());
    assert_eq!(paths(&api), [format!("POST {V1}"), format!("GET {V1}")]);
}

#[test]
fn bookmark_advances_the_resource_version() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cert = api.sign(&csr.name);
    let obj = api.object(&csr.name);
    api.push_watch(vec![Step::Event(
        "BOOKMARK",
        json!({"kind":"CertificateSigningRequest","apiVersion":"certificates.k8s.io/v1",
               "metadata":{"resourceVersion":"777"}}),
    )]);
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(with_condition(obj, "Approved", "", ""), &cert),
    )]);
    wait(&client, &csr, LONG).unwrap();
    let watches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|l| l.q("watch") == Some("true"))
        .collect();
    assert_eq!(watches[1].q("resourceVersion"), Some("777"));
}

#[test]
fn list_answering_429_waits_for_retry_after() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cert = api.sign(&csr.name);
    {
        let mut st = api.state.lock();
        // v1, then the v1beta1 fallback, both throttled.
        for _ in 0..2 {
            st.list_replies.push_back(
                Reply::status(429, "TooManyRequests", "slow down").with_header("Retry-After", "1"),
            );
        }
    }
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(
            with_condition(api.object(&csr.name), "Approved", "", ""),
            &cert,
        ),
    )]);
    let t = Instant::now();
    wait(&client, &csr, LONG).unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "honoured Retry-After: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

// ---- errors and health ----

#[test]
fn create_429_carries_retry_after() {
    let api = FakeApi::new();
    api.state.lock().create_replies.push_back(
        Reply::status(429, "TooManyRequests", "slow down").with_header("Retry-After", "7"),
    );
    let client = api.builder().build().unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let err = client.create(&req, &Cancel::new()).unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.is_transient());
    assert!(!err.server_healthy_after_create());
}

/// client-go TestServerHealth (and C4), end to end: each answer to create, then the health
/// verdict.
#[test]
fn health_table_end_to_end() {
    let cases: Vec<(&str, Vec<Reply>, bool)> = vec![
        (
            "Unauthorized error on create",
            vec![Reply::status(401, "Unauthorized", "Unauthorized")],
            true,
        ),
        (
            "Generic unauthorized error on create",
            vec![Reply::plain(401, "Unauthorized")],
            true,
        ),
        (
            "Generic not found error on create",
            vec![Reply::plain(404, "404 page not found"); 2],
            false,
        ),
        (
            "Not found error on create",
            vec![Reply::status(404, "NotFound", "not found"); 2],
            true,
        ),
        (
            "Forbidden error on create",
            vec![Reply::status(403, "Forbidden", "forbidden")],
            true,
        ),
        (
            "Internal error on create",
            vec![Reply::status(500, "InternalError", "boom")],
            false,
        ),
        (
            "Load balancer 502 on create",
            vec![Reply::plain(502, "<html>bad gateway</html>")],
            false,
        ),
        (
            "Connection closed without an answer",
            vec![Reply::Close],
            false,
        ),
    ];
    for (name, replies, healthy) in cases {
        let api = FakeApi::new();
        api.state.lock().create_replies.extend(replies);
        let client = api.builder().build().unwrap();
        let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
        let err = client.create(&req, &Cancel::new()).unwrap_err();
        assert_eq!(err.server_healthy_after_create(), healthy, "{name}: {err}");
    }
    // Connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let api = FakeApi::new();
    let client = certrotate::KubeCsrClientBuilder::new(format!("https://127.0.0.1:{port}"))
        .ca_pem(api.server.ca.cert_pem())
        .build()
        .unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let err = client.create(&req, &Cancel::new()).unwrap_err();
    assert!(matches!(err, CsrError::Transport { .. }), "{err:?}");
    assert!(!err.server_healthy_after_create());
}

#[test]
fn non_status_error_bodies_become_generic_errors_with_the_code() {
    let api = FakeApi::new();
    api.state
        .lock()
        .create_replies
        .push_back(Reply::plain(500, "<html>oops</html>"));
    let client = api.builder().build().unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let err = client.create(&req, &Cancel::new()).unwrap_err();
    let api_err = err.api_error().unwrap();
    assert_eq!(api_err.code, 500);
    assert_eq!(api_err.reason, "InternalError");
    assert!(!api_err.is_status);
    assert!(api_err.message.contains("oops"), "{}", api_err.message);
}

// ---- hostile answers ----

fn expect_invalid(err: CsrError, needle: &str) {
    match &err {
        CsrError::InvalidResponse { message, .. } => {
            assert!(message.contains(needle), "{needle:?} not in {message:?}")
        }
        other => panic!("expected InvalidResponse with {needle:?}, got {other:?}"),
    }
}

#[test]
fn hostile_malformed_or_incomplete_create_answers() {
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::raw(201, b"{\"metadata\": ".to_vec()), "malformed"),
        (
            Reply::json(201, &json!({"metadata": {"name": "csr-x"}})),
            "metadata.uid",
        ),
        (
            Reply::json(201, &json!({"metadata": {"name": 5}})),
            "malformed",
        ),
        (Reply::raw(201, vec![b' '; 5 << 20]), "larger than 4194304"),
    ];
    for (reply, needle) in cases {
        let api = FakeApi::new();
        api.state.lock().create_replies.push_back(reply);
        let client = api.builder().build().unwrap();
        let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
        expect_invalid(client.create(&req, &Cancel::new()).unwrap_err(), needle);
    }
}

fn watch_error(steps: Vec<Step>, timeout: Duration) -> CsrError {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    api.push_watch(steps);
    wait(&client, &csr, timeout).unwrap_err()
}

/// A watch event that is valid JSON but whose object is not a CSR ends the wait. (An event that
/// is not JSON at all, or a stream cut inside an event, ends only that watch, as in client-go:
/// `kube_wait.rs`, `a_broken_watch_stream_is_watched_again`.)
#[test]
fn hostile_malformed_object_in_a_watch_event() {
    expect_invalid(
        watch_error(
            vec![
                Step::Raw(br#"{"type":"ADDED","object":{"metadata":{"uid":7}}}"#.to_vec()),
                Step::Raw(b"\n".to_vec()),
                Step::Hang,
            ],
            LONG,
        ),
        "malformed CertificateSigningRequest",
    );
}

#[test]
fn hostile_unknown_event_type() {
    expect_invalid(
        watch_error(
            vec![
                Step::Event("EXPLODED", json!({"metadata": {"name": "csr-1"}})),
                Step::Hang,
            ],
            LONG,
        ),
        "\"EXPLODED\"",
    );
}

#[test]
fn hostile_oversized_watch_line_is_refused_at_the_default_4_mib() {
    let big = vec![b'a'; (4 << 20) + 1024];
    expect_invalid(
        watch_error(vec![Step::Raw(big), Step::Hang], LONG),
        "larger than 4194304 bytes",
    );
}

#[test]
fn hostile_oversized_list_is_refused() {
    let api = FakeApi::new();
    let client = api.builder().max_list_size(1024).build().unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let csr = client.create(&req, &Cancel::new()).unwrap();
    let mut huge = api.object(&csr.name);
    huge["metadata"]["annotations"] = json!({"pad": "x".repeat(4096)});
    api.insert(huge);
    expect_invalid(wait(&client, &csr, LONG).unwrap_err(), "larger than 1024");
}

#[test]
fn hostile_slow_trickle_ends_at_the_wait_timeout() {
    let t = Instant::now();
    let err = watch_error(
        vec![Step::Trickle(vec![b'{'; 400], Duration::from_millis(10))],
        Duration::from_millis(500),
    );
    let took = t.elapsed();
    assert!(matches!(err, CsrError::Timeout { .. }), "{err:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

// ---- cancellation ----

#[test]
fn cancel_during_a_blocked_watch_returns_within_100ms() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cancel = Cancel::new();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let c2 = cancel.clone();
    let waiter = thread::spawn(move || {
        // Duration::MAX: no timeout at all, only the cancel ends this wait.
        let r = client.wait_for_certificate(&csr, Duration::MAX, &c2);
        let _ = tx.send(Instant::now());
        r
    });
    api.wait_watch_open();
    let t = Instant::now();
    cancel.cancel(CancelReason::Stopped);
    let done = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the wait returned");
    let took = done.duration_since(t);
    assert!(took < Duration::from_millis(100), "took {took:?}");
    let err = waiter.join().unwrap().unwrap_err();
    assert!(matches!(err, CsrError::Cancelled { .. }), "{err:?}");
}

#[test]
fn cancel_during_a_retry_pause_returns_within_100ms() {
    let api = FakeApi::new();
    let client = api
        .builder()
        .retry_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let mut csr = client.create(&req, &Cancel::new()).unwrap();
    csr.resource_version.clear(); // listed first
    {
        let mut st = api.state.lock();
        st.list_replies
            .push_back(Reply::status(503, "ServiceUnavailable", "later"));
        st.list_replies
            .push_back(Reply::status(503, "ServiceUnavailable", "later"));
    }
    let cancel = Cancel::new();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let c2 = cancel.clone();
    let seen = api.seen.clone();
    let waiter = thread::spawn(move || {
        let r = client.wait_for_certificate(&csr, LONG, &c2);
        let _ = tx.send(Instant::now());
        r
    });
    // POST, then the two failing lists: the waiter is now in its 60 s pause.
    for _ in 0..3 {
        seen.recv_timeout(Duration::from_secs(5)).unwrap();
    }
    let t = Instant::now();
    cancel.cancel(CancelReason::TemplateChanged);
    let done = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(done.duration_since(t) < Duration::from_millis(100));
    assert!(matches!(
        waiter.join().unwrap(),
        Err(CsrError::Cancelled { .. })
    ));
}

/// A server that accepts connections and never answers (not even the TLS handshake): a
/// cancelled create returns at once instead of sitting out the request timeout.
#[test]
fn cancel_during_a_create_to_a_hung_server_returns_promptly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (conn_tx, conn_rx) = crossbeam_channel::unbounded();
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let _ = conn_tx.send(s); // held open, never written to
        }
    });
    let ca = certrotate::pki::CertificateAuthority::for_tests("unused").unwrap();
    let client = certrotate::KubeCsrClient::builder(format!("https://127.0.0.1:{port}"))
        .ca_pem(ca.cert_pem())
        .request_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let cancel = Cancel::new();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let c2 = cancel.clone();
    let creator = thread::spawn(move || {
        let r = client.create(&req, &c2);
        let _ = tx.send(Instant::now());
        r
    });
    let _held = conn_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("connected");
    let t = Instant::now();
    cancel.cancel(CancelReason::Stopped);
    let done = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("create returned");
    // Generous for a loaded machine; without the cancel it would take the 60 s timeout.
    assert!(
        done.duration_since(t) < Duration::from_secs(1),
        "{:?}",
        done.duration_since(t)
    );
    let err = creator.join().unwrap().unwrap_err();
    assert!(matches!(err, CsrError::Cancelled { .. }), "{err:?}");
}

#[test]
fn cancelled_before_the_wait_returns_at_once_without_a_request() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cancel = Cancel::new();
    cancel.cancel(CancelReason::Stopped);
    let err = client
        .wait_for_certificate(&csr, LONG, &cancel)
        .unwrap_err();
    assert!(matches!(err, CsrError::Cancelled { .. }));
    assert_eq!(api.requests().len(), 1);
}

// ---- credentials and TLS ----

/// The manager's factory: None → the bootstrap credentials (cert + token); Some(cert) → that
/// certificate only. A certificate rotated between two attempts is the one the server sees.
#[test]
fn client_cert_rotated_between_attempts_is_the_one_the_server_sees() {
    let api = FakeApi::new();
    let bootstrap = api.server.client_cert("system:bootstrap:abcdef");
    let first = api.server.client_cert("system:node:n1");
    let second = api.server.client_cert("system:node:n1");
    let factory = api
        .builder()
        .client_certificate(&bootstrap)
        .bearer_token("abcdef.0123456789abcdef")
        .factory();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    for cert in [None, Some(&first), Some(&second), None] {
        factory(cert).unwrap().create(&req, &Cancel::new()).unwrap();
    }
    let log = api.requests();
    let seen: Vec<(Option<String>, Option<String>)> = log
        .iter()
        .map(|l| (l.peer_serial.clone(), l.authorization.clone()))
        .collect();
    let bearer = Some("Bearer abcdef.0123456789abcdef".to_owned());
    assert_eq!(
        seen,
        [
            (Some(bootstrap.serial_hex()), bearer.clone()),
            (Some(first.serial_hex()), None),
            (Some(second.serial_hex()), None),
            (Some(bootstrap.serial_hex()), bearer),
        ]
    );
}

#[test]
fn token_file_is_reread_for_every_client() {
    let api = FakeApi::new();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let b = api.builder().bearer_token_file(&token);
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    b.build().unwrap().create(&req, &Cancel::new()).unwrap();
    std::fs::write(&token, "second-token").unwrap();
    b.build().unwrap().create(&req, &Cancel::new()).unwrap();
    let auth: Vec<_> = api
        .requests()
        .into_iter()
        .map(|l| l.authorization.unwrap())
        .collect();
    assert_eq!(auth, ["Bearer first-token", "Bearer second-token"]);
    assert_eq!(api.requests()[0].peer_cn, None);
}

#[test]
fn mismatched_client_cert_and_key_are_refused_before_any_request() {
    let api = FakeApi::new();
    let a = api.server.client_cert("a");
    let b = api.server.client_cert("b");
    let err = api
        .builder()
        .client_cert_pem(a.cert_pem().as_bytes().to_vec(), b.key_pem().into_bytes())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(api.requests().is_empty());
}

#[test]
fn plain_http_is_refused_unless_allowed() {
    let handler: Handler = Arc::new(|_req, r| {
        r.reply(&Reply::json(
            201,
            &json!({"metadata": {"name": "csr-1", "uid": "u1"}}),
        ))
    });
    let server = TestServer::http(handler);
    let err = certrotate::KubeCsrClientBuilder::new(server.url())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("plain http"), "{err}");
    let client = certrotate::KubeCsrClientBuilder::new(server.url())
        .allow_plain_http(true)
        .build()
        .unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    assert_eq!(client.create(&req, &Cancel::new()).unwrap().uid, "u1");
}

#[test]
fn only_the_configured_ca_is_trusted() {
    let api = FakeApi::new();
    let other = certrotate::pki::CertificateAuthority::for_tests("other").unwrap();
    let client = certrotate::KubeCsrClientBuilder::new(api.server.url())
        .ca_pem(other.cert_pem())
        .build()
        .unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let err = client.create(&req, &Cancel::new()).unwrap_err();
    assert!(matches!(err, CsrError::Transport { .. }), "{err:?}");
    assert!(!err.server_healthy_after_create());
    // No CA at all: refused at build time.
    let err = certrotate::KubeCsrClientBuilder::new(api.server.url())
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("no certificate authority"),
        "{err}"
    );
}

#[test]
fn tls_server_name_is_the_name_verified() {
    let api = FakeApi::new();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    // The serving cert is valid for apiserver.test: verified against that name, reached by IP.
    let ok = api
        .builder()
        .tls_server_name("apiserver.test")
        .build()
        .unwrap();
    ok.create(&req, &Cancel::new()).unwrap();
    let wrong = api
        .builder()
        .tls_server_name("not-the-apiserver.test")
        .build()
        .unwrap();
    let err = wrong.create(&req, &Cancel::new()).unwrap_err();
    assert!(matches!(err, CsrError::Transport { .. }), "{err:?}");
}

#[test]
fn insecure_skip_tls_verify_connects_but_not_together_with_a_ca() {
    let api = FakeApi::new();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let client = certrotate::KubeCsrClientBuilder::new(api.server.url())
        .dangerous_skip_tls_verify(true)
        .build()
        .unwrap();
    client.create(&req, &Cancel::new()).unwrap();
    let err = api
        .builder()
        .dangerous_skip_tls_verify(true)
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("insecure-skip-tls-verify"),
        "{err}"
    );
}

/// One create → issued round trip against the fake, timed (reported figure; the criterion
/// bench `csr_client` measures it properly).
#[test]
fn round_trip_create_to_issued() {
    let api = FakeApi::new();
    let client = api.builder().build().unwrap();
    let (key, req) = new_request(CLIENT_SIGNER, &client_usages());
    let t = Instant::now();
    let csr = client.create(&req, &Cancel::new()).unwrap();
    let cert = api.sign(&csr.name);
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(
            with_condition(api.object(&csr.name), "Approved", "", ""),
            &cert,
        ),
    )]);
    let pem = wait(&client, &csr, LONG).unwrap();
    let took = t.elapsed();
    let issued =
        certrotate::pki::verify_issued(&pem, &key, None, &[], std::time::SystemTime::now())
            .unwrap();
    assert_eq!(issued.common_name(), "system:node:n1");
    eprintln!("create -> issued round trip: {took:?}");
}

/// The manager waits again on the same client when a template change is reverted before the
/// interrupt is handled: a cancelled wait must leave the client usable.
#[test]
fn client_stays_usable_after_a_cancelled_wait() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let client = Arc::new(client);
    let cancel = Cancel::new();
    let (c, k, r) = (client.clone(), cancel.clone(), csr.clone());
    let waiter = thread::spawn(move || c.wait_for_certificate(&r, LONG, &k));
    api.wait_watch_open();
    cancel.cancel(CancelReason::TemplateChanged);
    assert!(matches!(
        waiter.join().unwrap(),
        Err(CsrError::Cancelled { .. })
    ));
    let cert = api.sign(&csr.name);
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(
            with_condition(api.object(&csr.name), "Approved", "", ""),
            &cert,
        ),
    )]);
    assert_eq!(wait(&client, &csr, LONG).unwrap(), cert.as_bytes());
}

/// A watch connection that stays silent past its timeoutSeconds (the server neither sends
/// nor ends it) is dropped by the per-read timeout, and the wait lists and watches again.
#[test]
fn silent_watch_is_dropped_after_its_read_timeout() {
    let api = FakeApi::new();
    let client = api
        .builder()
        .watch_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let csr = client.create(&req, &Cancel::new()).unwrap();
    let cert = api.sign(&csr.name);
    api.push_watch(vec![Step::Notify, Step::Hang]);
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(
            with_condition(api.object(&csr.name), "Approved", "", ""),
            &cert,
        ),
    )]);
    let t = Instant::now();
    assert_eq!(wait(&client, &csr, LONG).unwrap(), cert.as_bytes());
    let took = t.elapsed();
    // timeoutSeconds=1, so reads give up after 2 s of silence.
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let watches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|l| l.q("watch") == Some("true"))
        .collect();
    assert_eq!(watches.len(), 2);
    assert_eq!(watches[0].q("timeoutSeconds"), Some("1"));
}

/// An ERROR event other than Expired, and a watch answered with a 5xx: list again after the
/// retry pause, then carry on.
#[test]
fn other_watch_errors_relist_after_a_pause() {
    let api = FakeApi::new();
    let (client, csr) = create_v1(&api);
    let cert = api.sign(&csr.name);
    api.push_watch(vec![
        Step::Event(
            "ERROR",
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"etcd is sad","reason":"InternalError","code":500}),
        ),
        Step::Hang,
    ]);
    api.push_watch(vec![Step::Http(Reply::plain(503, "upstream unavailable"))]);
    api.push_watch(vec![Step::Event(
        "MODIFIED",
        with_cert(
            with_condition(api.object(&csr.name), "Approved", "", ""),
            &cert,
        ),
    )]);
    assert_eq!(wait(&client, &csr, LONG).unwrap(), cert.as_bytes());
    let lists = api
        .requests()
        .iter()
        .filter(|l| l.method == "GET" && l.q("watch").is_none())
        .count();
    assert_eq!(lists, 3, "one list per watch attempt");
    // A malformed ERROR object is a protocol violation.
    expect_invalid(
        watch_error(
            vec![
                Step::Event("ERROR", json!({"code": "not a number"})),
                Step::Hang,
            ],
            LONG,
        ),
        "malformed Status",
    );
}

/// A server that ends every watch at once, with no event, is not hammered: each very short
/// watch is followed by the retry pause.
#[test]
fn watches_ending_at_once_are_paced() {
    let api = FakeApi::new();
    let client = api
        .builder()
        .retry_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let csr = client.create(&req, &Cancel::new()).unwrap();
    for _ in 0..200 {
        api.push_watch(vec![]);
    }
    let err = wait(&client, &csr, Duration::from_millis(1000)).unwrap_err();
    assert!(matches!(err, CsrError::Timeout { .. }), "{err:?}");
    let watches = api
        .requests()
        .iter()
        .filter(|l| l.q("watch") == Some("true"))
        .count();
    assert!((2..=12).contains(&watches), "{watches} watches in 1 s");
}
