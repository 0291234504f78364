//! The embedded server's signer under a fake clock: lifetime rules (requested, capped, floored,
//! backdated, clamped to the CA), the kubelet signers' rules, custom and unknown signers, approval
//! predicates, and client certificates checked at the clock's time.

mod server_common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certrotate::CsrTemplate;
use certrotate::pki::{Certificate, CertificateAuthority, PrivateKey};
use certrotate::server::{ApprovalPolicy, CsrApiServer};
use certrotate::testing::FakeClock;
use serde_json::Value;
use server_common::*;

const H: u64 = 3600;
const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// 2030-01-01T00:00:00Z.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

/// Creates a client CSR with `expiration` and returns the issued certificate.
fn issue(c: &Client, expiration: Option<i64>) -> Certificate {
    let k = key();
    let pem = csr_pem(&CsrTemplate::new("alice"), &k);
    let obj = c.create(&body(
        None,
        &pem,
        CLIENT,
        &["digital signature", "client auth"],
        expiration,
    ));
    let ev = wait_issued(c, &obj);
    Certificate::from_pem(certificate(&ev).unwrap().as_bytes(), k.to_pem().as_bytes()).unwrap()
}

/// Watches a CSR from its creation until it has a certificate; returns that object.
fn wait_issued(c: &Client, obj: &Value) -> Value {
    let mut w = c.watch(&format!(
        "fieldSelector=metadata.name%3D{}&resourceVersion={}&timeoutSeconds=20",
        name(obj),
        rv(obj)
    ));
    w.until(|e| certificate(&e["object"]).is_some())["object"].clone()
}

#[test]
fn lifetimes_follow_the_built_in_signer_at_the_clocks_time() {
    let clock = FakeClock::new(t0());
    let server = CsrApiServer::builder()
        .clock(Arc::new(clock.clone()))
        .start()
        .unwrap();
    let c = Client::admin(&server);
    let backdate = Duration::from_secs(300);
    let cases: &[(&str, Option<i64>, Duration)] = &[
        (
            "one hour: as requested, NotAfter not backdated",
            Some(3600),
            Duration::from_secs(H),
        ),
        (
            "nothing requested: the maximum, backdated",
            None,
            Duration::from_secs(8760 * H) - backdate,
        ),
        (
            "ten years: capped at the maximum",
            Some(10 * 365 * 86_400),
            Duration::from_secs(8760 * H) - backdate,
        ),
        (
            "eight hours: long enough to be backdated",
            Some(8 * 3600),
            Duration::from_secs(8 * H) - backdate,
        ),
    ];
    for (case, requested, after) in cases {
        let cert = issue(&c, *requested);
        assert_eq!(cert.not_before(), t0() - backdate, "{case}");
        assert_eq!(cert.not_after(), t0() + *after, "{case}");
    }
    // Time moves only when the test moves it, and validity follows.
    clock.advance(Duration::from_secs(H));
    let cert = issue(&c, Some(3600));
    assert_eq!(cert.not_before(), t0() + Duration::from_secs(H) - backdate);
    // Object timestamps come from the clock too.
    let mut created: Vec<String> = c.get(CSRS).body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            o["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    created.sort();
    let mut want = vec!["2030-01-01T00:00:00Z"; cases.len()];
    want.push("2030-01-01T01:00:00Z");
    assert_eq!(created, want);
}

#[test]
fn the_floor_and_the_maximum_are_configurable() {
    let clock = FakeClock::new(t0());
    let server = CsrApiServer::builder()
        .clock(Arc::new(clock))
        .min_lifetime(Duration::from_secs(5))
        .max_lifetime(Duration::from_secs(30))
        .start()
        .unwrap();
    let c = Client::admin(&server);
    let cert = issue(&c, None);
    assert_eq!(cert.not_after(), t0() + Duration::from_secs(30));
    assert_eq!(cert.not_before(), t0() - Duration::from_secs(300));
    let cert = issue(&c, Some(600));
    assert_eq!(cert.not_after(), t0() + Duration::from_secs(30), "capped");

    let raised = CsrApiServer::builder()
        .clock(Arc::new(FakeClock::new(t0())))
        .min_lifetime(Duration::from_secs(20 * 60))
        .start()
        .unwrap();
    let cert = issue(&Client::admin(&raised), Some(600));
    assert_eq!(
        cert.not_after(),
        t0() + Duration::from_secs(20 * 60),
        "floored"
    );

    let err = CsrApiServer::builder()
        .max_lifetime(Duration::from_secs(30))
        .start()
        .unwrap_err();
    assert!(
        err.to_string().contains("lower min_lifetime explicitly"),
        "{err}"
    );
}

#[test]
fn not_after_is_clamped_to_the_ca_and_an_expired_ca_does_not_sign() {
    // Real time, to the second, so that the client accepts the short-lived CA.
    let now = UNIX_EPOCH
        + Duration::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    let ca = CertificateAuthority::new(
        "short-ca",
        now - Duration::from_secs(86_400),
        now + Duration::from_secs(H),
    )
    .unwrap();
    let clock = FakeClock::new(now);
    let server = CsrApiServer::builder()
        .clock(Arc::new(clock.clone()))
        .ca(ca)
        .start()
        .unwrap();
    let c = Client::admin(&server);
    let cert = issue(&c, Some(86_400));
    assert_eq!(cert.not_after(), now + Duration::from_secs(H));

    // Past the CA's NotAfter: the admin's certificate has expired too, and the server says 401
    // (not a failed handshake), as kube-apiserver does for an expired client certificate.
    clock.advance(Duration::from_secs(2 * H));
    let r = c.get(CSRS);
    assert_eq!(r.code, 401, "{}", r.text);
    assert_eq!(r.body["reason"], "Unauthorized");
}

#[test]
fn kubelet_serving_csrs_are_issued_with_their_sans() {
    let server = CsrApiServer::builder()
        .clock(Arc::new(FakeClock::new(t0())))
        .start()
        .unwrap();
    let node = Client::with_cert(&server, "system:node:n1", &["system:nodes"]);
    let k = key();
    let t = CsrTemplate::new("system:node:n1")
        .with_organization("system:nodes")
        .with_dns_name("n1.example")
        .with_ip_address("10.0.0.7".parse().unwrap());
    let obj = node.create(&body(
        None,
        &csr_pem(&t, &k),
        "kubernetes.io/kubelet-serving",
        &["digital signature", "server auth"],
        None,
    ));
    let issued = wait_issued(&node, &obj);
    let cert = Certificate::from_pem(
        certificate(&issued).unwrap().as_bytes(),
        k.to_pem().as_bytes(),
    )
    .unwrap();
    assert_eq!(cert.common_name(), "system:node:n1");
    assert_eq!(cert.organizations(), ["system:nodes"]);
    assert_eq!(cert.dns_names(), ["n1.example"]);
    assert_eq!(
        cert.ip_addresses(),
        ["10.0.0.7".parse::<std::net::IpAddr>().unwrap()]
    );
    // The same request with client usages breaks the serving signer's rule.
    let obj = node.create(&body(
        None,
        &csr_pem(&t, &k),
        "kubernetes.io/kubelet-serving",
        &["digital signature", "client auth"],
        None,
    ));
    let mut w = node.watch(&format!(
        "fieldSelector=metadata.name%3D{}&resourceVersion={}&timeoutSeconds=20",
        name(&obj),
        rv(&obj)
    ));
    let ev = w.until(|e| has_condition(&e["object"], "Failed"));
    let failed = ev["object"]["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap()
        .clone();
    assert_eq!(failed["reason"], "SignerValidationFailure");
    assert_eq!(
        failed["message"],
        "usages did not match [digital signature key encipherment server auth]"
    );
}

#[test]
fn custom_signers_sign_and_unknown_signers_never_do() {
    let server = CsrApiServer::builder()
        .clock(Arc::new(FakeClock::new(t0())))
        .signer("example.com/custom")
        .signer_with_check("example.com/checked", |csr, _usages| {
            if csr.common_name.starts_with("ok-") {
                Ok(())
            } else {
                Err(format!("common name {:?} is not ok", csr.common_name))
            }
        })
        .start()
        .unwrap();
    let c = Client::admin(&server);
    let make = |cn: &str, signer: &str| {
        let k = key();
        c.create(&body(
            None,
            &csr_pem(&CsrTemplate::new(cn), &k),
            signer,
            &["server auth"],
            None,
        ))
    };
    let unknown = make("x", "example.com/nobody");
    let rejected = make("bad", "example.com/checked");
    let checked = make("ok-1", "example.com/checked");
    let custom = make("y", "example.com/custom");
    // The signer works in creation order: once the last is issued, the others were handled.
    wait_issued(&c, &custom);
    assert!(certificate(&c.get(&format!("{CSRS}/{}", name(&checked))).body).is_some());
    let r = c.get(&format!("{CSRS}/{}", name(&rejected))).body;
    assert!(has_condition(&r, "Failed"));
    assert!(
        r.to_string().contains("common name \\\"bad\\\" is not ok"),
        "{r}"
    );
    let u = c.get(&format!("{CSRS}/{}", name(&unknown))).body;
    assert!(has_condition(&u, "Approved"));
    assert!(!has_condition(&u, "Failed"));
    assert!(
        certificate(&u).is_none(),
        "no signer for example.com/nobody"
    );
}

#[test]
fn a_predicate_approves_only_nodes() {
    let server = CsrApiServer::builder()
        .clock(Arc::new(FakeClock::new(t0())))
        .bootstrap_token("abcdef", "0123456789abcdef")
        .approval_policy(ApprovalPolicy::predicate(|csr| {
            csr.spec.groups.iter().any(|g| g == "system:nodes")
                && csr
                    .spec
                    .username
                    .as_deref()
                    .is_some_and(|u| u.starts_with("system:node:"))
        }))
        .start()
        .unwrap();
    let bootstrap = Client::with_token(&server, "abcdef.0123456789abcdef");
    let node = Client::with_cert(&server, "system:node:n1", &["system:nodes"]);
    let kubelet_csr = |k: &PrivateKey| {
        body(
            None,
            &csr_pem(
                &CsrTemplate::new("system:node:n1").with_organization("system:nodes"),
                k,
            ),
            "kubernetes.io/kube-apiserver-client-kubelet",
            &["digital signature", "client auth"],
            None,
        )
    };
    let pending = bootstrap.create(&kubelet_csr(&key()));
    let k = key();
    let approved = node.create(&kubelet_csr(&k));
    let issued = wait_issued(&node, &approved);
    let conds = &issued["status"]["conditions"];
    assert_eq!(conds[0]["reason"], "AutoApproved");
    let p = server.csr(&name(&pending)).unwrap();
    assert!(
        p.status.is_none(),
        "the bootstrap user's CSR waits for a human"
    );
    // The node's new certificate is a credential at once: mTLS as system:node:n1.
    let cert = Certificate::from_pem(
        certificate(&issued).unwrap().as_bytes(),
        k.to_pem().as_bytes(),
    )
    .unwrap();
    let as_node = Client {
        agent: agent(&server.ca_pem(), Some(&cert)),
        base: server.url().to_owned(),
        token: None,
    };
    let obj = as_node.create(&client_body(None, "x").0);
    assert_eq!(obj["spec"]["username"], "system:node:n1");
    // A manual approval of the pending one issues it too.
    server.approve(&name(&pending)).unwrap();
    wait_issued(&Client::admin(&server), &pending);
}
