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
        .approval_policy(ApprovalPolicy::All)
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
        .approval_policy(ApprovalPolicy::All)
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
        .approval_policy(ApprovalPolicy::All)
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
        .approval_policy(ApprovalPolicy::All)
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
        .approval_policy(ApprovalPolicy::All)
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
        .approval_policy(ApprovalPolicy::All)
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

const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const BOOT_TOKEN: &str = "abcdef.0123456789abcdef";
const SIGNER_SERVING: &str = "kubernetes.io/kubelet-serving";

/// A server with the default approval policy and a bootstrap token.
fn default_policy_server() -> CsrApiServer {
    CsrApiServer::builder()
        .clock(Arc::new(FakeClock::new(t0())))
        .bootstrap_token("abcdef", "0123456789abcdef")
        .start()
        .unwrap()
}

/// Creates a CSR for `t` and returns its object.
fn create_for(c: &Client, t: CsrTemplate, signer: &str, usages: &[&str]) -> Value {
    c.create(&body(None, &csr_pem(&t, &key()), signer, usages, None))
}

fn node_template(n: &str) -> CsrTemplate {
    CsrTemplate::new(format!("system:node:{n}")).with_organization("system:nodes")
}

/// Waits until the approver has looked at every CSR created so far: it takes them in order, so
/// once a later node client CSR is issued, the earlier ones have been decided.
fn approver_has_seen_all(server: &CsrApiServer) {
    let node = Client::with_cert(server, "system:node:sentinel", &["system:nodes"]);
    let obj = create_for(
        &node,
        node_template("sentinel"),
        KUBELET_CLIENT,
        &["digital signature", "client auth"],
    );
    wait_issued(&node, &obj);
}

fn pending(server: &CsrApiServer, obj: &Value) -> bool {
    server
        .csr(&name(obj))
        .unwrap()
        .status
        .is_none_or(|s| s.conditions.is_empty())
}

/// The case from the field: under the default policy a bootstrap-token holder asked for a
/// `system:masters` client certificate, got it, and with it listed and deleted every CSR. Now
/// the request stays pending (kube-controller-manager approves no such CSR), and the bootstrap
/// identity can neither list others' CSRs nor delete, approve or update any.
#[test]
fn a_bootstrap_token_gets_no_system_masters_certificate_by_default() {
    let server = default_policy_server();
    let boot = Client::with_token(&server, BOOT_TOKEN);
    let admin = Client::admin(&server);
    let others = admin.create(&client_body(None, "someone").0);
    let masters = CsrTemplate::new("evil").with_organization("system:masters");
    let asks = [
        create_for(
            &boot,
            masters.clone(),
            CLIENT,
            &["digital signature", "client auth"],
        ),
        create_for(
            &boot,
            masters.clone(),
            KUBELET_CLIENT,
            &["digital signature", "client auth"],
        ),
        create_for(
            &boot,
            CsrTemplate::new("system:node:n1")
                .with_organization("system:nodes")
                .with_organization("system:masters"),
            KUBELET_CLIENT,
            &["digital signature", "client auth"],
        ),
    ];
    approver_has_seen_all(&server);
    for a in &asks {
        assert!(
            pending(&server, a),
            "{} must wait for an administrator",
            name(a)
        );
    }
    assert!(pending(&server, &others));

    // What the bootstrap identity may do: create, and read its own CSRs only.
    let list = boot.get(CSRS);
    assert_eq!(list.code, 200);
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), asks.len(), "{names:?}");
    assert!(!names.contains(&name(&others).as_str()));
    assert_eq!(boot.get(&format!("{CSRS}/{}", name(&others))).code, 403);
    // What it may not: delete, approve or deny, update status or metadata, even of its own.
    let own = name(&asks[0]);
    for target in [own.clone(), name(&others)] {
        let obj = admin.get(&format!("{CSRS}/{target}")).body;
        assert_eq!(boot.delete(&format!("{CSRS}/{target}")).code, 403);
        let mut approval = obj.clone();
        approval["status"] = serde_json::json!({"conditions": [{"type": "Approved", "status": "True", "reason": "Self"}]});
        assert_eq!(
            boot.put(&format!("{CSRS}/{target}/approval"), &approval)
                .code,
            403
        );
        assert_eq!(boot.put(&format!("{CSRS}/{target}/status"), &obj).code, 403);
        assert_eq!(boot.put(&format!("{CSRS}/{target}"), &obj).code, 403);
    }
    assert!(server.csr(&own).is_some() && server.csr(&name(&others)).is_some());
    assert!(pending(&server, &asks[0]));
}

/// The default policy approves exactly what kube-controller-manager's csrapproving controller
/// approves (`sarapprove.go`): node client certificates (`IsKubeletClientCSR`) for the
/// kubelet-client signer, asked by a node for itself (`selfnodeclient`) or by a bootstrapper
/// (`nodeclient`), with the controller's reason and messages. Every other kind stays pending.
#[test]
fn the_default_policy_approves_only_what_kube_controller_manager_approves() {
    let server = default_policy_server();
    let boot = Client::with_token(&server, BOOT_TOKEN);
    let node1 = Client::with_cert(&server, "system:node:n1", &["system:nodes"]);
    let alice = Client::with_cert(&server, "alice", &["dev"]);
    let du = ["digital signature", "client auth"];
    let kdu = ["key encipherment", "digital signature", "client auth"];

    // Approved: a bootstrapper's node client CSR (both usage sets), a node's own.
    let by_boot = create_for(&boot, node_template("n1"), KUBELET_CLIENT, &du);
    let by_boot_ke = create_for(&boot, node_template("n2"), KUBELET_CLIENT, &kdu);
    let by_self = create_for(&node1, node_template("n1"), KUBELET_CLIENT, &kdu);
    let boot_message = "Auto approving kubelet client certificate after SubjectAccessReview.";
    let self_message = "Auto approving self kubelet client certificate after SubjectAccessReview.";
    for (c, obj, message) in [
        (&boot, &by_boot, boot_message),
        (&boot, &by_boot_ke, boot_message),
        (&node1, &by_self, self_message),
    ] {
        let issued = wait_issued(c, obj);
        let c = &issued["status"]["conditions"][0];
        assert_eq!(c["type"], "Approved");
        assert_eq!(c["reason"], "AutoApproved");
        assert_eq!(c["message"], message);
    }

    // Pending: every other kind of request.
    let left = [
        // a node asking for another node's name
        create_for(&node1, node_template("n2"), KUBELET_CLIENT, &du),
        // a user who is neither a node nor a bootstrapper
        create_for(&alice, node_template("n1"), KUBELET_CLIENT, &du),
        // a serving certificate (never auto-approved)
        create_for(
            &node1,
            node_template("n1").with_dns_name("n1.example"),
            SIGNER_SERVING,
            &["digital signature", "server auth"],
        ),
        // the plain client signer (never auto-approved)
        create_for(&boot, node_template("n1"), CLIENT, &du),
        // subject organization other than exactly [system:nodes]
        create_for(
            &boot,
            CsrTemplate::new("system:node:n1"),
            KUBELET_CLIENT,
            &du,
        ),
        create_for(
            &boot,
            node_template("n1").with_organization("extra"),
            KUBELET_CLIENT,
            &du,
        ),
        // common name without the system:node: prefix
        create_for(
            &boot,
            CsrTemplate::new("n1").with_organization("system:nodes"),
            KUBELET_CLIENT,
            &du,
        ),
        // usages outside the allowed set, or missing one
        create_for(
            &boot,
            node_template("n1"),
            KUBELET_CLIENT,
            &["digital signature", "client auth", "server auth"],
        ),
        create_for(&boot, node_template("n1"), KUBELET_CLIENT, &["client auth"]),
        // any subject alternative name
        create_for(
            &boot,
            node_template("n1").with_dns_name("n1"),
            KUBELET_CLIENT,
            &du,
        ),
        create_for(
            &boot,
            node_template("n1").with_ip_address("192.0.2.1".parse().unwrap()),
            KUBELET_CLIENT,
            &du,
        ),
        create_for(
            &boot,
            node_template("n1").with_email_address("n1@example.com"),
            KUBELET_CLIENT,
            &du,
        ),
        create_for(
            &boot,
            node_template("n1").with_uri("spiffe://example/n1"),
            KUBELET_CLIENT,
            &du,
        ),
    ];
    approver_has_seen_all(&server);
    for (i, obj) in left.iter().enumerate() {
        assert!(
            pending(&server, obj),
            "case {i} ({}) must stay pending",
            name(obj)
        );
    }
}

/// Approve-everything is an explicit choice: with [`ApprovalPolicy::All`] the same request the
/// default leaves pending is approved and issued.
#[test]
fn approve_all_is_an_explicit_opt_in() {
    let server = CsrApiServer::builder()
        .clock(Arc::new(FakeClock::new(t0())))
        .bootstrap_token("abcdef", "0123456789abcdef")
        .approval_policy(ApprovalPolicy::All)
        .start()
        .unwrap();
    let boot = Client::with_token(&server, BOOT_TOKEN);
    let obj = create_for(
        &boot,
        CsrTemplate::new("demo").with_organization("system:masters"),
        CLIENT,
        &["digital signature", "client auth"],
    );
    assert!(certificate(&wait_issued(&boot, &obj)).is_some());
}
