//! The embedded CSR API server through real TLS, HTTP and JSON: the REST surface, validation,
//! watches, approval and signing, authentication, v1beta1, and every fault kind.

mod server_common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certrotate::CsrTemplate;
use certrotate::pki::{Certificate, parse_chain_pem};
use certrotate::server::{
    ApprovalPolicy, Call, CsrApiServer, Fault, Identity, SignerFault, UserInfo,
};
use serde_json::{Value, json};
use server_common::*;

fn manual() -> CsrApiServer {
    CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .start()
        .unwrap()
}

#[test]
fn create_validation_rejects_each_rule_with_a_422_status() {
    let server = manual();
    let c = Client::admin(&server);
    let k = key();
    let good = csr_pem(&CsrTemplate::new("alice"), &k);
    let cert_pem = server.ca_pem();
    // A request whose signature does not verify: flip a bit of the signature.
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(good.as_bytes())
        .map(|d: rustls::pki_types::CertificateSigningRequestDer<'static>| d.as_ref().to_vec())
        .unwrap();
    let mut bad = der.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let bad_sig = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        STANDARD.encode(&bad)
    );
    let client = "kubernetes.io/kube-apiserver-client";
    let ok_usages = ["digital signature", "client auth"];
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "request is not PEM",
            body(Some("a"), "hello", client, &ok_usages, None),
            "spec.request",
            "PEM block type must be CERTIFICATE REQUEST",
        ),
        (
            "request is a certificate",
            body(Some("a"), &cert_pem, client, &ok_usages, None),
            "spec.request",
            "PEM block type must be CERTIFICATE REQUEST",
        ),
        (
            "signature does not verify",
            body(Some("a"), &bad_sig, client, &ok_usages, None),
            "spec.request",
            "x509: ECDSA verification failure",
        ),
        (
            "usages missing",
            body(Some("a"), &good, client, &[], None),
            "spec.usages",
            "Required value",
        ),
        (
            "unknown usage",
            body(Some("a"), &good, client, &["client auth", "teleport"], None),
            "spec.usages[1]",
            "Unsupported value: \"teleport\": supported values: \"any\", \"cert sign\"",
        ),
        (
            "repeated usage",
            body(
                Some("a"),
                &good,
                client,
                &["client auth", "client auth"],
                None,
            ),
            "spec.usages[1]",
            "Duplicate value: \"client auth\"",
        ),
        (
            "signer name missing",
            body(Some("a"), &good, "", &ok_usages, None),
            "spec.signerName",
            "Required value",
        ),
        (
            "signer name without a path",
            body(Some("a"), &good, "example.com", &ok_usages, None),
            "spec.signerName",
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ),
        (
            "signer domain with one label",
            body(Some("a"), &good, "example/signer", &ok_usages, None),
            "spec.signerName",
            "should be a domain with at least two segments separated by dots",
        ),
        (
            "legacy signer",
            body(
                Some("a"),
                &good,
                "kubernetes.io/legacy-unknown",
                &ok_usages,
                None,
            ),
            "spec.signerName",
            "the legacy signerName is not allowed via this API version",
        ),
        (
            "expiration below 600 s",
            body(Some("a"), &good, client, &ok_usages, Some(599)),
            "spec.expirationSeconds",
            "Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)",
        ),
    ];
    for (case, b, field, text) in cases {
        let r = c.post(CSRS, &b);
        assert_eq!(r.code, 422, "{case}: {}", r.text);
        assert_eq!(r.body["kind"], "Status", "{case}");
        assert_eq!(r.body["reason"], "Invalid", "{case}");
        let msg = r.body["message"].as_str().unwrap();
        assert!(
            msg.starts_with("CertificateSigningRequest.certificates.k8s.io \"a\" is invalid: "),
            "{case}: {msg}"
        );
        let causes = r.body["details"]["causes"].as_array().unwrap();
        assert!(
            causes
                .iter()
                .any(|c| c["field"] == field && c["message"].as_str().unwrap().contains(text)),
            "{case}: no cause {field} {text:?} in {causes:?}"
        );
        assert_eq!(
            r.body["details"]["kind"], "CertificateSigningRequest",
            "{case}"
        );
    }
    // Several errors at once: all of them, aggregated in brackets.
    let r = c.post(CSRS, &body(Some("a"), &good, "", &[], Some(1)));
    assert_eq!(r.body["details"]["causes"].as_array().unwrap().len(), 3);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("is invalid: [spec.usages")
    );
    // No name and no generateName.
    let mut b = body(Some("a"), &good, client, &ok_usages, None);
    b["metadata"] = json!({});
    let r = c.post(CSRS, &b);
    assert_eq!(r.code, 422);
    assert_eq!(r.body["details"]["causes"][0]["field"], "metadata.name");
    assert!(server.csrs().is_empty(), "nothing invalid was stored");
    // Not JSON at all: 400.
    let r = Client::read_raw(&c, "not json");
    assert_eq!(r.code, 400);
    assert_eq!(r.body["reason"], "BadRequest");
}

impl Client {
    fn read_raw(c: &Client, text: &str) -> Resp {
        let mut resp = c
            .agent
            .post(format!("{}{CSRS}", c.base))
            .header("Content-Type", "application/json")
            .send(text)
            .unwrap();
        let code = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        Resp {
            code,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            retry_after: None,
        }
    }
}

#[test]
fn create_with_generate_name_sets_server_fields() {
    let server = manual();
    let c = Client::with_cert(&server, "alice", &["team-a", "team-b"]);
    let (b, _) = client_body(None, "alice");
    let obj = c.create(&b);
    let n = name(&obj);
    assert!(n.starts_with("csr-") && n.len() == 9, "{n}");
    assert!(
        n[4..]
            .chars()
            .all(|ch| "bcdfghjklmnpqrstvwxz2456789".contains(ch)),
        "{n}"
    );
    assert_eq!(obj["apiVersion"], "certificates.k8s.io/v1");
    assert_eq!(obj["kind"], "CertificateSigningRequest");
    assert_eq!(obj["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(
        obj["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(rv(&obj).parse::<u64>().unwrap() > 0);
    assert_eq!(obj["spec"]["username"], "alice");
    assert_eq!(
        obj["spec"]["groups"],
        json!(["team-a", "team-b", "system:authenticated"])
    );
    assert_eq!(obj["status"], json!({}));
    // A second create with the same generateName gets another name.
    let other = c.create(&client_body(None, "alice").0);
    assert_ne!(name(&other), n);
    // The server ignores spec.username sent by the client.
    let (mut b, _) = client_body(Some("spoof"), "alice");
    b["spec"]["username"] = json!("system:admin");
    b["spec"]["groups"] = json!(["system:masters"]);
    let obj = c.create(&b);
    assert_eq!(obj["spec"]["username"], "alice");
}

#[test]
fn a_taken_name_is_409_already_exists() {
    let server = manual();
    let c = Client::admin(&server);
    c.create(&client_body(Some("node-csr-1"), "x").0);
    let r = c.post(CSRS, &client_body(Some("node-csr-1"), "x").0);
    assert_eq!(r.code, 409, "{}", r.text);
    assert_eq!(r.body["reason"], "AlreadyExists");
    assert_eq!(
        r.body["message"],
        "certificatesigningrequests.certificates.k8s.io \"node-csr-1\" already exists"
    );
    assert_eq!(r.body["details"]["name"], "node-csr-1");
    assert_eq!(r.body["details"]["group"], "certificates.k8s.io");
}

#[test]
fn get_list_with_field_selector_and_delete() {
    let server = manual();
    let c = Client::admin(&server);
    let a = c.create(&client_body(Some("a"), "x").0);
    c.create(&client_body(Some("b"), "y").0);
    let r = c.get(&format!("{CSRS}/a"));
    assert_eq!(r.code, 200);
    assert_eq!(r.body["metadata"]["uid"], a["metadata"]["uid"]);
    let r = c.get(&format!("{CSRS}?fieldSelector=metadata.name%3Da"));
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["kind"], "CertificateSigningRequestList");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["items"][0]["metadata"]["name"], "a");
    assert_eq!(
        r.body["metadata"]["resourceVersion"],
        server.resource_version().to_string()
    );
    let all = c.get(&format!("{CSRS}?limit=1"));
    assert_eq!(all.body["items"].as_array().unwrap().len(), 1);
    let token = all.body["metadata"]["continue"].as_str().unwrap();
    let rest = c.get(&format!("{CSRS}?limit=1&continue={token}"));
    assert_eq!(rest.body["items"][0]["metadata"]["name"], "b");
    assert!(rest.body["metadata"].get("continue").is_none());
    let r = c.get(&format!("{CSRS}?fieldSelector=spec.usages%3Dx"));
    assert_eq!(r.code, 400);
    // A list at a newer resource version than the server's: 504 Too large resource version.
    let r = c.get(&format!("{CSRS}?resourceVersion=999999"));
    assert_eq!(r.code, 504, "{}", r.text);
    let r = c.delete(&format!("{CSRS}/a"));
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["status"], "Success");
    assert_eq!(r.body["details"]["uid"], a["metadata"]["uid"]);
    let r = c.get(&format!("{CSRS}/a"));
    assert_eq!(r.code, 404);
    assert_eq!(r.body["reason"], "NotFound");
    assert_eq!(
        r.body["message"],
        "certificatesigningrequests.certificates.k8s.io \"a\" not found"
    );
    assert_eq!(c.delete(&format!("{CSRS}/a")).code, 404);
    // Unknown paths outside the API's web services get the mux's bare 404, not a Status.
    let r = c.get("/apis/other.example.com/v1/things");
    assert_eq!((r.code, r.text.as_str()), (404, "404 page not found\n"));
    assert_eq!(c.post(&format!("{CSRS}/b"), &json!({})).code, 405);
}

#[test]
fn watch_replays_from_a_resource_version_with_field_selector() {
    let server = manual();
    let c = Client::admin(&server);
    let a = c.create(&client_body(Some("a"), "x").0);
    let start = rv(&a);
    c.create(&client_body(Some("b"), "y").0);
    server.deny("a", "NotToday").unwrap();
    server.delete("a").unwrap();
    // Replay everything after the create of "a", for "a" only.
    let mut w = c.watch(&format!(
        "fieldSelector=metadata.name%3Da&resourceVersion={start}&timeoutSeconds=5"
    ));
    let ev = w.next().unwrap();
    assert_eq!(ev["type"], "MODIFIED");
    assert!(has_condition(&ev["object"], "Denied"));
    assert_eq!(ev["object"]["apiVersion"], "certificates.k8s.io/v1");
    let ev = w.next().unwrap();
    assert_eq!(ev["type"], "DELETED");
    assert_eq!(ev["object"]["metadata"]["name"], "a");
    // A version newer than the server's: 504 before any stream, as the apiserver's cache says.
    let r = c.get(&format!("{CSRS}?watch=true&resourceVersion=999999"));
    assert_eq!(r.code, 504, "{}", r.text);
    assert_eq!(
        r.body["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
    // Without a resource version: the current state as ADDED, then changes.
    let mut w = c.watch("timeoutSeconds=5");
    let ev = w.next().unwrap();
    assert_eq!(
        (ev["type"].as_str(), name(&ev["object"]).as_str()),
        (Some("ADDED"), "b")
    );
    c.create(&client_body(Some("c"), "z").0);
    let ev = w.next().unwrap();
    assert_eq!(
        (ev["type"].as_str(), name(&ev["object"]).as_str()),
        (Some("ADDED"), "c")
    );
}

#[test]
fn bookmarks_only_when_allowed() {
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .bookmark_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    let c = Client::admin(&server);
    let a = c.create(&client_body(Some("a"), "x").0);
    let mut with = c.watch(&format!(
        "allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds=10",
        rv(&a)
    ));
    // Periodic bookmark (every 50 ms here) carrying the current resource version.
    let ev = with.next().unwrap();
    assert_eq!(ev["type"], "BOOKMARK");
    assert_eq!(ev["object"]["kind"], "CertificateSigningRequest");
    assert_eq!(ev["object"]["metadata"]["resourceVersion"], rv(&a));
    // Without allowWatchBookmarks the first event is the next real change.
    let mut without = c.watch(&format!("resourceVersion={}&timeoutSeconds=10", rv(&a)));
    server.bookmark();
    server.approve("a").unwrap();
    let ev = without.next().unwrap();
    assert_eq!(ev["type"], "MODIFIED");
    // A forced bookmark reaches the bookmark-enabled watch too.
    with.until(|e| e["type"] == "MODIFIED");

    // sendInitialEvents: the current objects, then a bookmark marking the end of them.
    let mut wl = c.watch(
        "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=10",
    );
    let ev = wl.next().unwrap();
    assert_eq!(ev["type"], "ADDED");
    let ev = wl.next().unwrap();
    assert_eq!(ev["type"], "BOOKMARK");
    assert_eq!(
        ev["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[test]
fn a_compacted_resource_version_gets_410_expired() {
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .history_limit(2)
        .start()
        .unwrap();
    let c = Client::admin(&server);
    for i in 0..5 {
        c.create(&client_body(Some(&format!("c{i}")), "x").0);
    }
    assert_eq!(server.history_len(), 2);
    let mut w = c.watch("resourceVersion=1&timeoutSeconds=5");
    let ev = w.next().unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["kind"], "Status");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
    // The watch cache's wording (k8s.io/apiserver pkg/storage/cacher/watch_cache_history.go):
    // the version asked for, then the one before the oldest event held (4 here).
    assert_eq!(ev["object"]["message"], "too old resource version: 1 (3)");
    assert!(w.next().is_none(), "the stream ends after the error");
    // The oldest version still held works.
    let mut w = c.watch("resourceVersion=3&timeoutSeconds=5");
    assert_eq!(name(&w.next().unwrap()["object"]), "c3");
}

#[test]
fn a_watch_ends_after_timeout_seconds() {
    let server = manual();
    let c = Client::admin(&server);
    let started = Instant::now();
    let mut w = c.watch("timeoutSeconds=1");
    assert!(w.next().is_none());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn approval_through_the_api_leads_to_signing_seen_by_watchers() {
    let server = manual();
    let alice = Client::with_cert(&server, "alice", &[]);
    let admin = Client::admin(&server);
    let (b, k) = client_body(None, "alice");
    let obj = alice.create(&b);
    let n = name(&obj);
    let mut w = alice.watch(&format!(
        "fieldSelector=metadata.name%3D{n}&resourceVersion={}&timeoutSeconds=10",
        rv(&obj)
    ));
    // The requester may not approve its own CSR under the default policy.
    let mut approval = obj.clone();
    approval["status"] = json!({"conditions": [{
        "type": "Approved", "status": "True", "reason": "KubectlApprove",
        "message": "This CSR was approved by kubectl certificate approve."}]});
    let r = alice.put(&format!("{CSRS}/{n}/approval"), &approval);
    assert_eq!(r.code, 403, "{}", r.text);
    assert_eq!(
        r.body["message"],
        format!(
            "certificatesigningrequests.certificates.k8s.io \"{n}\" is forbidden: User \"alice\" cannot update resource \"certificatesigningrequests/approval\" in API group \"certificates.k8s.io\" at the cluster scope"
        )
    );
    // kubectl certificate approve: PUT /approval with the condition appended.
    let r = admin.put(&format!("{CSRS}/{n}/approval"), &approval);
    assert_eq!(r.code, 200, "{}", r.text);
    assert!(r.body["status"]["conditions"][0]["lastUpdateTime"].is_string());
    let ev = w.next().unwrap();
    assert_eq!(ev["type"], "MODIFIED");
    assert!(has_condition(&ev["object"], "Approved"));
    let ev = w.until(|e| certificate(&e["object"]).is_some());
    assert_eq!(ev["type"], "MODIFIED");
    let pem = certificate(&ev["object"]).unwrap();
    let cert = Certificate::from_pem(pem.as_bytes(), k.to_pem().as_bytes()).unwrap();
    assert_eq!(cert.common_name(), "alice");
    assert_eq!(cert.organizations(), ["team"]);
    assert_eq!(
        parse_chain_pem(pem.as_bytes()).unwrap().len(),
        1,
        "one PEM block"
    );
    // It chains to the CA the server publishes.
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        r.add(
            parse_chain_pem(server.ca_pem().as_bytes())
                .unwrap()
                .remove(0),
        )
        .unwrap();
        r
    };
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.into(),
        certrotate::pki::crypto_provider(),
    )
    .build()
    .unwrap();
    verifier
        .verify_client_cert(&cert.chain()[0], &[], rustls::pki_types::UnixTime::now())
        .unwrap();
    // Approving again is a no-op for the signer; the certificate cannot be replaced.
    let mut st = ev["object"].clone();
    st["status"]["certificate"] = json!(STANDARD.encode(server.ca_pem()));
    let r = admin.put(&format!("{CSRS}/{n}/status"), &st);
    assert_eq!(r.code, 422, "{}", r.text);
    assert!(
        r.text
            .contains("updates may not modify existing certificate content")
    );
}

#[test]
fn denied_and_failed_conditions_reach_watchers() {
    let server = manual();
    let c = Client::admin(&server);
    c.create(&client_body(Some("d"), "x").0);
    let f = c.create(&client_body(Some("f"), "y").0);
    let mut w = c.watch(&format!("resourceVersion={}&timeoutSeconds=10", rv(&f)));
    server.deny("d", "NoThanks").unwrap();
    let ev = w.next().unwrap();
    assert_eq!(ev["type"], "MODIFIED");
    let cond = &ev["object"]["status"]["conditions"][0];
    assert_eq!(
        (cond["type"].as_str(), cond["reason"].as_str()),
        (Some("Denied"), Some("NoThanks"))
    );
    assert_eq!(cond["status"], "True");
    // A denied CSR cannot be approved, by the handle or through /approval.
    assert!(server.approve("d").is_err());
    let mut a = ev["object"].clone();
    a["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Approved", "status": "True"}));
    let r = c.put(&format!("{CSRS}/d/approval"), &a);
    assert_eq!(r.code, 422);
    assert!(
        r.text
            .contains("Approved and Denied conditions are mutually exclusive")
    );
    // Approved/Denied may not be added through /status.
    let mut s = f.clone();
    s["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
    let r = c.put(&format!("{CSRS}/f/status"), &s);
    assert_eq!(r.code, 422);
    assert!(
        r.text
            .contains("updates may not add a condition of type \\\"Approved\\\""),
        "{}",
        r.text
    );
    // A signer marks it failed through /status.
    s["status"] = json!({"conditions": [{"type": "Failed", "status": "True", "reason": "SignerDown", "message": "m"}]});
    let r = c.put(&format!("{CSRS}/f/status"), &s);
    assert_eq!(r.code, 200, "{}", r.text);
    let ev = w.next().unwrap();
    assert!(has_condition(&ev["object"], "Failed"));
    // Conditions cannot be removed.
    s["status"] = json!({"conditions": []});
    s["metadata"]["resourceVersion"] = json!(null);
    let r = c.put(&format!("{CSRS}/f/status"), &s);
    assert_eq!(r.code, 422);
    assert!(
        r.text
            .contains("updates may not remove a condition of type")
    );
    // The handle's fail() does the same as a signer would.
    let g = c.create(&client_body(Some("g"), "z").0);
    server.fail("g", "Broken").unwrap();
    assert!(has_condition(&c.get(&format!("{CSRS}/g")).body, "Failed"));
    // A stale resourceVersion on update is a conflict.
    let r = c.put(&format!("{CSRS}/g/status"), &g);
    assert_eq!(r.code, 409);
    assert_eq!(r.body["reason"], "Conflict");
}

#[test]
fn signer_validation_failure_marks_kubelet_csrs_failed() {
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::All)
        .start()
        .unwrap();
    let c = Client::admin(&server);
    let k = key();
    // A kubelet client CSR without O=system:nodes: approved (by the approve-all policy), then Failed by the signer.
    let pem = csr_pem(&CsrTemplate::new("system:node:n1"), &k);
    let obj = c.create(&body(
        Some("k"),
        &pem,
        "kubernetes.io/kube-apiserver-client-kubelet",
        &["digital signature", "client auth"],
        None,
    ));
    let mut w = c.watch(&format!("resourceVersion={}&timeoutSeconds=10", rv(&obj)));
    let ev = w.until(|e| has_condition(&e["object"], "Failed"));
    let conds = ev["object"]["status"]["conditions"].as_array().unwrap();
    let failed = conds.iter().find(|c| c["type"] == "Failed").unwrap();
    assert_eq!(failed["reason"], "SignerValidationFailure");
    assert_eq!(
        failed["message"],
        "subject organization is not system:nodes"
    );
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Approved" && c["reason"] == "AutoApproved")
    );
    assert!(certificate(&ev["object"]).is_none());
}

#[test]
fn authentication_by_cert_token_bootstrap_token_or_nothing() {
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .token("s3cr3t", UserInfo::new("bob", &["devs"]).with_uid("u-1"))
        .bootstrap_token("abcdef", "0123456789abcdef")
        .start()
        .unwrap();
    let by_cert = Client::with_cert(&server, "system:node:n1", &["system:nodes"]);
    let obj = by_cert.create(&client_body(None, "x").0);
    assert_eq!(obj["spec"]["username"], "system:node:n1");
    assert_eq!(
        obj["spec"]["groups"],
        json!(["system:nodes", "system:authenticated"])
    );

    let by_token = Client::with_token(&server, "s3cr3t");
    let obj = by_token.create(&client_body(None, "x").0);
    assert_eq!(obj["spec"]["username"], "bob");
    assert_eq!(obj["spec"]["uid"], "u-1");
    assert_eq!(
        obj["spec"]["groups"],
        json!(["devs", "system:authenticated"])
    );
    // bob reads his own CSR but not the node's.
    assert_eq!(by_token.get(&format!("{CSRS}/{}", name(&obj))).code, 200);
    let r = by_token.get(&format!(
        "{CSRS}?fieldSelector=metadata.name%3D{}",
        name(&obj)
    ));
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let all = by_token.get(CSRS);
    assert_eq!(
        all.body["items"].as_array().unwrap().len(),
        1,
        "lists show own CSRs only"
    );
    let node_csr = server
        .csrs()
        .into_iter()
        .find(|c| c.spec.username.as_deref() == Some("system:node:n1"))
        .unwrap();
    let r = by_token.get(&format!("{CSRS}/{}", node_csr.metadata.name.unwrap()));
    assert_eq!(r.code, 403);
    assert_eq!(r.body["reason"], "Forbidden");

    let bootstrap = Client::with_token(&server, "abcdef.0123456789abcdef");
    let obj = bootstrap.create(&client_body(None, "x").0);
    assert_eq!(obj["spec"]["username"], "system:bootstrap:abcdef");
    assert_eq!(
        obj["spec"]["groups"],
        json!(["system:bootstrappers", "system:authenticated"])
    );

    // No credentials at all: `system:anonymous`, as kube-apiserver's default
    // `--anonymous-auth=true`, which RBAC's default roles give nothing but `/version` and the
    // health checks (the messages are kube-apiserver 1.37.2's, seen in tests/kube_real.rs).
    let nobody = Client::anonymous(&server);
    let r = nobody.get(CSRS);
    assert_eq!(r.code, 403);
    assert_eq!(
        r.body["message"],
        "certificatesigningrequests.certificates.k8s.io is forbidden: User \"system:anonymous\" cannot list resource \"certificatesigningrequests\" in API group \"certificates.k8s.io\" at the cluster scope"
    );
    let r = nobody.post(CSRS, &client_body(None, "x").0);
    assert_eq!(r.code, 403, "anonymous cannot create");
    let r = nobody.get("/apis");
    assert_eq!(r.code, 403);
    assert_eq!(
        r.body["message"],
        "forbidden: User \"system:anonymous\" cannot get path \"/apis\""
    );
    assert_eq!(nobody.get("/openapi/v2").code, 403);
    // Credentials that do not authenticate: 401.
    for (who, client) in [
        ("wrong token", Client::with_token(&server, "nope")),
        (
            "wrong bootstrap secret",
            Client::with_token(&server, "abcdef.0123456789abcdeX"),
        ),
    ] {
        let r = client.get(CSRS);
        assert_eq!(r.code, 401, "{who}");
        assert_eq!(
            r.body,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
            "{who}"
        );
    }
    // A certificate from another CA is not a credential: 401, not a failed handshake.
    let other = certrotate::pki::CertificateAuthority::for_tests("other").unwrap();
    let k = key();
    let foreign = other
        .issue(
            &CsrTemplate::new("mallory"),
            &k,
            &[certrotate::KeyUsage::ClientAuth],
            std::time::SystemTime::now() - Duration::from_secs(60),
            std::time::SystemTime::now() + Duration::from_secs(3600),
        )
        .unwrap();
    let c = Client {
        agent: agent(&server.ca_pem(), Some(&foreign)),
        base: server.url().to_owned(),
        token: None,
    };
    assert_eq!(c.get(CSRS).code, 401);
    // /version and /healthz are public.
    let anon = Client::anonymous(&server);
    assert_eq!(anon.get("/version").body["major"], "1");
    assert_eq!(anon.get("/healthz").text, "ok");
}

#[test]
fn v1beta1_is_404_by_default_and_served_when_switched_on() {
    let beta = "/apis/certificates.k8s.io/v1beta1/certificatesigningrequests";
    let off = manual();
    let c = Client::admin(&off);
    // Under the group's web service: the go-restful container's Status 404.
    let r = c.post(beta, &client_body(None, "x").0);
    assert_eq!(r.code, 404);
    assert_eq!(
        r.body["message"],
        "the server could not find the requested resource"
    );
    assert_eq!(c.get("/apis/certificates.k8s.io/v1beta1").code, 404);
    let versions = c.get("/apis/certificates.k8s.io").body["versions"].clone();
    assert_eq!(versions.as_array().unwrap().len(), 1);

    let on = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .v1beta1(true)
        .start()
        .unwrap();
    let c = Client::admin(&on);
    let k = key();
    let pem = csr_pem(
        &CsrTemplate::new("system:node:n1").with_organization("system:nodes"),
        &k,
    );
    // v1beta1 defaults: usages → [digital signature, key encipherment]; signer inferred.
    let b = json!({"apiVersion": "certificates.k8s.io/v1beta1", "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "csr-"},
        "spec": {"request": STANDARD.encode(&pem), "usages": ["digital signature", "key encipherment", "client auth"]}});
    let r = c.post(beta, &b);
    assert_eq!(r.code, 201, "{}", r.text);
    assert_eq!(r.body["apiVersion"], "certificates.k8s.io/v1beta1");
    assert_eq!(
        r.body["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    let mut b2 = b.clone();
    b2["spec"].as_object_mut().unwrap().remove("usages");
    let r = c.post(beta, &b2);
    assert_eq!(r.code, 201, "{}", r.text);
    assert_eq!(
        r.body["spec"]["usages"],
        json!(["digital signature", "key encipherment"])
    );
    assert_eq!(r.body["spec"]["signerName"], "kubernetes.io/legacy-unknown");
    // Objects are shared between the versions.
    let n = name(&r.body);
    let v1 = c.get(&format!("{CSRS}/{n}"));
    assert_eq!(v1.body["apiVersion"], "certificates.k8s.io/v1");
    assert_eq!(
        c.get("/apis/certificates.k8s.io").body["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn discovery_version_and_tables_for_kubectl() {
    let server = manual();
    let c = Client::admin(&server);
    // No core resources: `/api` lists no versions (client-go's discovery then asks no more).
    assert_eq!(c.get("/api").body["versions"], json!([]));
    let groups = c.get("/apis").body;
    assert_eq!(groups["kind"], "APIGroupList");
    assert_eq!(groups["groups"][0]["name"], "certificates.k8s.io");
    assert_eq!(groups["groups"][0]["preferredVersion"]["version"], "v1");
    let res = c.get("/apis/certificates.k8s.io/v1").body;
    assert_eq!(res["groupVersion"], "certificates.k8s.io/v1");
    let csr = &res["resources"][0];
    assert_eq!(csr["name"], "certificatesigningrequests");
    assert_eq!(csr["shortNames"], json!(["csr"]));
    assert_eq!(csr["namespaced"], false);
    assert!(csr["verbs"].as_array().unwrap().contains(&json!("watch")));
    assert_eq!(
        res["resources"][1]["name"],
        "certificatesigningrequests/approval"
    );
    c.create(&client_body(Some("t"), "x").0);
    let t = c.get_accept(
        CSRS,
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
    );
    assert_eq!(t.body["kind"], "Table");
    let cols: Vec<&str> = t.body["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        [
            "Name",
            "Age",
            "SignerName",
            "Requestor",
            "RequestedDuration",
            "Condition"
        ]
    );
    let cells = &t.body["rows"][0]["cells"];
    assert_eq!(cells[0], "t");
    assert_eq!(cells[2], "kubernetes.io/kube-apiserver-client");
    assert_eq!(cells[3], "admin");
    assert_eq!(cells[4], "<none>");
    assert_eq!(cells[5], "Pending");
    assert_eq!(t.body["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

#[test]
fn kubeconfig_identities() {
    let server = CsrApiServer::builder()
        .token("tok", UserInfo::new("bob", &[]))
        .bootstrap_token("abcdef", "0123456789abcdef")
        .start()
        .unwrap();
    let y: serde_json::Value =
        serde_norway::from_str(&server.kubeconfig(&Identity::admin()).unwrap()).unwrap();
    assert_eq!(y["current-context"], "certrotate");
    assert_eq!(y["clusters"][0]["cluster"]["server"], server.url());
    let ca = STANDARD
        .decode(
            y["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(String::from_utf8(ca).unwrap(), server.ca_pem());
    let user = &y["users"][0]["user"];
    let cert = STANDARD
        .decode(user["client-certificate-data"].as_str().unwrap())
        .unwrap();
    let key = STANDARD
        .decode(user["client-key-data"].as_str().unwrap())
        .unwrap();
    let cert = Certificate::from_pem(&cert, &key).unwrap();
    assert_eq!(cert.common_name(), "certrotate:admin");
    assert_eq!(cert.organizations(), ["system:masters"]);
    let y: serde_json::Value =
        serde_norway::from_str(&server.kubeconfig(&Identity::token("tok")).unwrap()).unwrap();
    assert_eq!(y["users"][0]["user"]["token"], "tok");
    let y: serde_json::Value = serde_norway::from_str(
        &server
            .kubeconfig(&Identity::bootstrap_token("abcdef", "0123456789abcdef"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(y["users"][0]["user"]["token"], "abcdef.0123456789abcdef");
    assert!(server.kubeconfig(&Identity::token("unknown")).is_err());
    assert!(
        CsrApiServer::builder()
            .bootstrap_token("ABC", "x")
            .start()
            .is_err()
    );
}

#[test]
fn request_faults_fire_once_each_and_are_counted() {
    let server = manual();
    let c = Client::admin(&server);
    server.inject(Call::Create, Fault::Status(503), 1);
    let r = c.post(CSRS, &client_body(None, "x").0);
    assert_eq!(r.code, 503);
    assert_eq!(r.body["reason"], "ServiceUnavailable");
    assert_eq!(r.body["kind"], "Status");
    let obj = c.create(&client_body(None, "x").0);
    let n = name(&obj);
    server.inject(Call::Any, Fault::Status(429), 2);
    for _ in 0..2 {
        let r = c.get(CSRS);
        assert_eq!(r.code, 429);
        assert_eq!(r.body["details"]["retryAfterSeconds"], 1);
        assert_eq!(
            r.retry_after.as_deref(),
            Some("1"),
            "the Retry-After header"
        );
    }
    assert_eq!(c.get(CSRS).code, 200, "only the next two calls fail");

    server.inject(
        Call::Create,
        Fault::Raw(404, "404 page not found".into()),
        1,
    );
    let r = c.post(CSRS, &client_body(None, "x").0);
    assert_eq!((r.code, r.text.as_str()), (404, "404 page not found"));

    server.inject(Call::Get, Fault::Malformed, 1);
    let r = c.get(&format!("{CSRS}/{n}"));
    assert_eq!(r.code, 200);
    assert!(
        serde_json::from_str::<Value>(&r.text).is_err(),
        "{}",
        r.text
    );
    assert_eq!(
        c.get(&format!("{CSRS}/{n}")).body["metadata"]["name"],
        n.as_str()
    );

    server.inject(Call::List, Fault::Delay(Duration::from_millis(300)), 1);
    let t = Instant::now();
    assert_eq!(c.get(CSRS).code, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    server.inject(Call::Any, Fault::Disconnect, 1);
    assert!(
        c.try_get(CSRS).is_err(),
        "the connection is dropped without an answer"
    );
    assert_eq!(c.get(CSRS).code, 200);

    server.inject(Call::Watch, Fault::CloseWatchAfter(1), 1);
    let mut w = c.watch("timeoutSeconds=30");
    assert_eq!(w.next().unwrap()["type"], "ADDED");
    assert!(w.next().is_none(), "closed after one event");

    server.inject(Call::Watch, Fault::Malformed, 1);
    let mut w = c.watch("timeoutSeconds=30");
    let line = w.next_line().unwrap();
    assert!(serde_json::from_str::<Value>(&line).is_err());
    assert!(w.next().is_none());

    let counts = server.fault_counts();
    assert_eq!(
        (
            counts.status,
            counts.raw,
            counts.malformed,
            counts.delayed,
            counts.disconnected,
            counts.watches_closed
        ),
        (3, 1, 2, 1, 1, 1)
    );
    assert_eq!(counts.total(), 9);
}

#[test]
fn signer_faults_never_issue_replace_uid_and_wrong_key() {
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::All)
        .signer_fault(SignerFault::NeverIssue, 1)
        .start()
        .unwrap();
    let c = Client::admin(&server);
    let first = c.create(&client_body(None, "x").0);
    server.inject_signer(SignerFault::ReplaceUid, 1);
    let (b, k2) = client_body(None, "y");
    let second = c.create(&b);
    server.inject_signer(SignerFault::WrongKey, 1);
    let (b, k3) = client_body(None, "z");
    let third = c.create(&b);
    let mut w = c.watch(&format!("resourceVersion={}&timeoutSeconds=10", rv(&third)));
    // The signer works in order: once the third is issued, the first was handled (and skipped).
    let issued3 =
        w.until(|e| name(&e["object"]) == name(&third) && certificate(&e["object"]).is_some());
    let s1 = c.get(&format!("{CSRS}/{}", name(&first))).body;
    assert!(has_condition(&s1, "Approved"));
    assert!(certificate(&s1).is_none(), "approved but never issued");
    let s2 = c.get(&format!("{CSRS}/{}", name(&second))).body;
    assert!(certificate(&s2).is_some());
    assert_ne!(
        s2["metadata"]["uid"], second["metadata"]["uid"],
        "uid replaced"
    );
    Certificate::from_pem(certificate(&s2).unwrap().as_bytes(), k2.to_pem().as_bytes()).unwrap();
    let wrong = Certificate::from_pem(
        certificate(&issued3["object"]).unwrap().as_bytes(),
        k3.to_pem().as_bytes(),
    );
    assert!(wrong.is_err(), "issued for another key");
    let counts = server.fault_counts();
    assert_eq!(
        (counts.never_issued, counts.uids_replaced, counts.wrong_keys),
        (1, 1, 1)
    );
    // Handle-side uid replacement.
    let old = s2["metadata"]["uid"].as_str().unwrap().to_owned();
    let new = server.replace_uid(&name(&second)).unwrap();
    assert_ne!(old, new);
    assert_eq!(
        c.get(&format!("{CSRS}/{}", name(&second))).body["metadata"]["uid"],
        new
    );
}

/// Runs kubectl against the server (skipped unless run with `--ignored` on a machine with
/// kubectl): get, describe, certificate approve/deny, delete.
#[test]
#[ignore = "needs kubectl on PATH"]
fn kubectl_works_against_the_server() {
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("kubeconfig");
    std::fs::write(&cfg, server.kubeconfig(&Identity::admin()).unwrap()).unwrap();
    let c = Client::admin(&server);
    c.create(&client_body(Some("one"), "x").0);
    c.create(&client_body(Some("two"), "y").0);
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubectl {args:?}: {text}");
        text
    };
    let out = kubectl(&["get", "csr"]);
    assert!(
        out.contains("SIGNERNAME") && out.contains("one") && out.contains("Pending"),
        "{out}"
    );
    let out = kubectl(&["describe", "csr", "one"]);
    assert!(out.contains("kubernetes.io/kube-apiserver-client"), "{out}");
    kubectl(&["certificate", "approve", "one"]);
    kubectl(&["certificate", "deny", "two"]);
    let out = kubectl(&[
        "get",
        "csr",
        "one",
        "-o",
        "jsonpath={.status.conditions[0].type}",
    ]);
    assert_eq!(out, "Approved");
    let out = kubectl(&["get", "csr", "two", "-o", "json"]);
    assert!(out.contains("\"Denied\""), "{out}");
    kubectl(&["delete", "csr", "two"]);
    assert!(server.csr("two").is_none());
    // kubectl create needs --validate=false: the server serves no OpenAPI documents.
    let csr = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: three\nspec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n",
        STANDARD.encode(csr_pem(&CsrTemplate::new("bob"), &key()))
    );
    let file = dir.path().join("csr.yaml");
    std::fs::write(&file, csr).unwrap();
    kubectl(&["create", "--validate=false", "-f", file.to_str().unwrap()]);
    kubectl(&["certificate", "approve", "three"]);
    let mut w = c.watch("fieldSelector=metadata.name%3Dthree&timeoutSeconds=10");
    w.until(|e| certificate(&e["object"]).is_some());
    let out = kubectl(&["get", "csr", "three"]);
    assert!(out.contains("Approved,Issued"), "{out}");
    let out = kubectl(&["version", "-o", "json"]);
    assert!(out.contains("v1.37.2"), "{out}");
}

/// `dryRun=All` on every write (create, update, `/approval`, `/status`, delete; in the query,
/// or in the `DeleteOptions` body as `kubectl delete --dry-run=server` sends it) answers as the
/// real write would and stores nothing: the stored object, its resourceVersion and the watch
/// stay as they were.
#[test]
fn dry_run_all_stores_nothing_on_any_write() {
    let server = manual();
    let c = Client::admin(&server);
    let (b, _) = client_body(Some("dry"), "alice");
    let r = c.post(&format!("{CSRS}?dryRun=All"), &b);
    assert_eq!(r.code, 201, "{}", r.text);
    assert_eq!(r.body["metadata"]["name"], "dry");
    assert_eq!(
        c.get(&format!("{CSRS}/dry")).code,
        404,
        "a dry-run create stores nothing"
    );
    assert!(server.csr("dry").is_none());

    let (b, _) = client_body(Some("kept"), "alice");
    let before = c.create(&b);
    let path = format!("{CSRS}/kept");
    let mut watch = c.watch(&format!(
        "resourceVersion={}&allowWatchBookmarks=false",
        rv(&before)
    ));

    let mut labelled = before.clone();
    labelled["metadata"]["labels"] = json!({"dry": "run"});
    let r = c.put(&format!("{path}?dryRun=All"), &labelled);
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["metadata"]["labels"]["dry"], "run");

    let mut approval = before.clone();
    approval["status"] =
        json!({"conditions": [{"type": "Approved", "status": "True", "reason": "DryRun"}]});
    let r = c.put(&format!("{path}/approval?dryRun=All"), &approval);
    assert_eq!(r.code, 200, "{}", r.text);
    assert!(has_condition(&r.body, "Approved"));

    let mut failed = before.clone();
    failed["status"] =
        json!({"conditions": [{"type": "Failed", "status": "True", "reason": "DryRun"}]});
    let r = c.put(&format!("{path}/status?dryRun=All"), &failed);
    assert_eq!(r.code, 200, "{}", r.text);
    assert!(has_condition(&r.body, "Failed"));

    let r = c.delete(&format!("{path}?dryRun=All"));
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["status"], "Success");
    let r = c.delete_with(
        &path,
        &json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]}),
    );
    assert_eq!(r.code, 200, "{}", r.text);

    let after = c.get(&path).body;
    assert_eq!(after, before, "no dry-run write changed the stored object");
    assert!(server.csr("kept").unwrap().status.is_none());
    // The next event a watcher sees is the real write below, not any dry run.
    let r = c.put(&path, &labelled);
    assert_eq!(r.code, 200, "{}", r.text);
    let ev = watch.next().unwrap();
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"]["metadata"]["labels"]["dry"], "run");
    assert!(!has_condition(&ev["object"], "Approved"));
}

/// A `dryRun` value other than `All` is refused before anything happens, with the apiserver's
/// `ValidateDryRun` answer: 422 `Invalid` on the options kind of the verb.
#[test]
fn an_unknown_dry_run_value_is_refused_as_the_apiserver_does() {
    let server = manual();
    let c = Client::admin(&server);
    let (b, _) = client_body(Some("x"), "alice");
    // The whole list is printed as its JSON, as apimachinery v0.37's `field.Error` prints a
    // `[]string` value.
    let want_values = |kind: &str, values: &str, r: &Resp| {
        assert_eq!(r.code, 422, "{}", r.text);
        assert_eq!(r.body["reason"], "Invalid");
        assert_eq!(
            r.body["message"],
            format!(
                "{kind}.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: [{values}]: supported values: \"All\""
            )
        );
        assert_eq!(r.body["details"]["kind"], kind);
        assert_eq!(r.body["details"]["group"], "meta.k8s.io");
        assert_eq!(r.body["details"]["causes"][0]["field"], "dryRun");
        assert_eq!(
            r.body["details"]["causes"][0]["reason"],
            "FieldValueNotSupported"
        );
    };
    let want = |kind: &str, r: &Resp| want_values(kind, "\"Server\"", r);
    want(
        "CreateOptions",
        &c.post(&format!("{CSRS}?dryRun=Server"), &b),
    );
    assert!(server.csr("x").is_none());
    let obj = c.create(&b);
    want(
        "UpdateOptions",
        &c.put(&format!("{CSRS}/x?dryRun=Server"), &obj),
    );
    want_values(
        "UpdateOptions",
        "\"All\",\"Server\"",
        &c.put(&format!("{CSRS}/x/approval?dryRun=All&dryRun=Server"), &obj),
    );
    want(
        "DeleteOptions",
        &c.delete(&format!("{CSRS}/x?dryRun=Server")),
    );
    want(
        "DeleteOptions",
        &c.delete_with(&format!("{CSRS}/x"), &json!({"dryRun": ["Server"]})),
    );
    assert_eq!(c.get(&format!("{CSRS}/x")).body, obj, "nothing was written");
}

/// `DeleteOptions.preconditions` (uid, resourceVersion) that do not match the stored CSR
/// answer 409 `Conflict` with `rest.BeforeDelete`'s message, and the CSR stays; matching ones
/// delete it.
#[test]
fn delete_preconditions_that_do_not_match_answer_409_and_keep_the_csr() {
    let server = manual();
    let c = Client::admin(&server);
    let (b, _) = client_body(Some("p"), "alice");
    let obj = c.create(&b);
    let (uid, version) = (obj["metadata"]["uid"].as_str().unwrap(), rv(&obj));
    let path = format!("{CSRS}/p");

    let r = c.delete_with(&path, &json!({"preconditions": {"uid": "other-uid"}}));
    assert_eq!(r.code, 409, "{}", r.text);
    assert_eq!(r.body["reason"], "Conflict");
    assert_eq!(
        r.body["message"],
        format!(
            "Operation cannot be fulfilled on CertificateSigningRequest.certificates.k8s.io \"p\": the UID in the precondition (other-uid) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        )
    );
    assert_eq!(r.body["details"]["name"], "p");
    assert_eq!(r.body["details"]["kind"], "CertificateSigningRequest");
    assert_eq!(r.body["details"]["group"], "certificates.k8s.io");

    let r = c.delete_with(
        &path,
        &json!({"preconditions": {"uid": uid, "resourceVersion": "999999"}}),
    );
    assert_eq!(r.code, 409, "{}", r.text);
    assert_eq!(
        r.body["message"],
        format!(
            "Operation cannot be fulfilled on CertificateSigningRequest.certificates.k8s.io \"p\": the ResourceVersion in the precondition (999999) does not match the ResourceVersion in record ({version}). The object might have been modified"
        )
    );
    assert!(
        server.csr("p").is_some(),
        "a failed precondition deletes nothing"
    );

    let r = c.delete_with(
        &path,
        &json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid, "resourceVersion": version}}),
    );
    assert_eq!(r.code, 200, "{}", r.text);
    assert!(server.csr("p").is_none());
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// A body of tests/vectors/client-go-csr (written by client-go's own serializers).
fn vector(file: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/vectors/client-go-csr/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A server holding a pending CSR named `csr-abcde` at resourceVersion 7, the name and version
/// the vectors' update bodies carry.
fn server_with_csr_abcde() -> (CsrApiServer, Client) {
    let server = manual();
    let c = Client::admin(&server);
    for i in 0..6 {
        c.create(&client_body(Some(&format!("filler-{i}")), "alice").0);
    }
    let obj = c.create(&client_body(Some("csr-abcde"), "system:node:node-1").0);
    assert_eq!(rv(&obj), "7");
    (server, c)
}

/// Bodies exactly as client-go writes them, sent through the server's HTTP path in protobuf
/// and in JSON, get the same answers, and those answers carry the vectors' field values: a
/// create is refused only for its (deliberately invalid) request, an `/approval` update stores
/// the vector's condition, a `/status` update is refused only for its (invalid) certificate.
#[test]
fn client_go_protobuf_and_json_bodies_get_the_same_answers_over_http() {
    let server = manual();
    let c = Client::admin(&server);
    let pb = c.send_raw("POST", CSRS, PROTOBUF, &vector("create.pb"));
    let js = c.send_raw("POST", CSRS, "application/json", &vector("create.json"));
    assert_eq!(pb.code, 422, "{}", pb.text);
    // Alike but for the generated name (generateName `csr-` was read from both).
    let unnamed = |r: &Resp| {
        let n = r.body["details"]["name"].as_str().unwrap().to_owned();
        assert!(n.starts_with("csr-") && n.len() == 9, "{n}");
        serde_json::from_str::<Value>(&r.text.replace(&n, "csr-?????")).unwrap()
    };
    assert_eq!(unnamed(&pb), unnamed(&js), "protobuf and JSON decode alike");
    let causes = pb.body["details"]["causes"].as_array().unwrap();
    assert!(
        !causes.is_empty() && causes.iter().all(|c| c["field"] == "spec.request"),
        "only the request is refused (usages, signerName, expirationSeconds were read): {}",
        pb.text
    );

    let mut approved = Vec::new();
    for (file, ct) in [
        ("approval.pb", PROTOBUF),
        ("approval.json", "application/json"),
    ] {
        let (server, c) = server_with_csr_abcde();
        let r = c.send_raw(
            "PUT",
            &format!("{CSRS}/csr-abcde/approval"),
            ct,
            &vector(file),
        );
        assert_eq!(r.code, 200, "{file}: {}", r.text);
        let cond = &r.body["status"]["conditions"][0];
        assert_eq!(cond["type"], "Approved");
        assert_eq!(cond["status"], "True");
        assert_eq!(cond["reason"], "KubectlApprove");
        assert_eq!(cond["message"], "approved by test");
        assert_eq!(cond["lastUpdateTime"], "2023-11-14T22:13:20Z");
        assert_eq!(r.body["status"]["conditions"].as_array().unwrap().len(), 1);
        let stored = server.csr("csr-abcde").unwrap();
        assert_eq!(
            stored.spec.username.as_deref(),
            Some("admin"),
            "spec is not taken from an update"
        );
        approved.push(cond.clone());
        server.shutdown();
    }
    // Same condition apart from the server-set lastTransitionTime.
    for a in &mut approved {
        a.as_object_mut().unwrap().remove("lastTransitionTime");
    }
    assert_eq!(approved[0], approved[1]);

    let mut answers = Vec::new();
    for (file, ct) in [
        ("status-issued.pb", PROTOBUF),
        ("status-issued.json", "application/json"),
    ] {
        let (_server, c) = server_with_csr_abcde();
        let r = c.send_raw(
            "PUT",
            &format!("{CSRS}/csr-abcde/status"),
            ct,
            &vector(file),
        );
        assert_eq!(r.code, 422, "{file}: {}", r.text);
        assert!(
            r.body["details"]["causes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["field"] == "status.certificate"),
            "{file}: the certificate was read: {}",
            r.text
        );
        answers.push(r.body);
    }
    assert_eq!(answers[0], answers[1]);
}

/// Creates a CSR on a new connection; false when the server refused the connection or the
/// request did not succeed.
fn try_create(server: &CsrApiServer, n: usize) -> bool {
    let c = Client::admin(server);
    let (b, _) = client_body(Some(&format!("after-{n}")), "alice");
    c.agent
        .post(format!("{}{CSRS}", server.url()))
        .send_json(&b)
        .is_ok_and(|r| r.status().as_u16() == 201)
}

/// Opens a watch on a new connection, retrying while the server refuses the connection, for
/// at most `bound`; `None` if it never got one.
fn watch_within(
    c: &Client,
    server: &CsrApiServer,
    bound: Duration,
) -> Option<ureq::http::Response<ureq::Body>> {
    let start = Instant::now();
    while start.elapsed() < bound {
        let r = c
            .agent
            .get(format!(
                "{}{CSRS}?watch=true&timeoutSeconds=600",
                server.url()
            ))
            .call();
        if let Ok(r) = r.map_err(|_| ()).and_then(|r| {
            if r.status().as_u16() == 200 {
                Ok(r)
            } else {
                Err(())
            }
        }) {
            return Some(r);
        }
    }
    None
}

/// Clients that stop watching (drop the stream, close the connection) free their server
/// thread and connection slot at once, not at the next event or bookmark: with room for four
/// connections, round after round of four watches opened and dropped leaves room for the next
/// four and for a create, each within two seconds (the field case: 512 quick stops and no CSR
/// could be created for two minutes).
#[test]
fn watches_whose_clients_have_gone_free_their_connections_promptly() {
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .max_connections(4)
        .start()
        .unwrap();
    let c = Client::admin(&server);
    let bound = Duration::from_secs(2);
    for round in 0..3 {
        let watches: Vec<_> = (0..4)
            .map(|i| {
                watch_within(&c, &server, bound)
                    .unwrap_or_else(|| panic!("round {round}: watch {i} refused for {bound:?}"))
            })
            .collect();
        drop(watches);
        let start = Instant::now();
        let mut created = false;
        while !created && start.elapsed() < bound {
            created = try_create(&server, round);
        }
        assert!(
            created,
            "round {round}: no create within {bound:?} of dropping the watches"
        );
    }
}

/// One client cannot take every connection with watches: past its per-user bound a watch is
/// answered 429 `TooManyRequests` (retry after 1 s, as an overloaded apiserver), other users
/// still watch, and a slot frees as soon as one of its watches is dropped.
#[test]
fn watches_are_bounded_per_user() {
    let server = CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .max_watches_per_user(2)
        .token("alice-token", UserInfo::new("alice", &[]))
        .token("bob-token", UserInfo::new("bob", &[]))
        .start()
        .unwrap();
    let alice = Client::with_token(&server, "alice-token");
    let bob = Client::with_token(&server, "bob-token");
    let first = alice.watch("timeoutSeconds=600");
    let _second = alice.watch("timeoutSeconds=600");
    let r = alice.get(&format!("{CSRS}?watch=true&timeoutSeconds=600"));
    assert_eq!(r.code, 429, "{}", r.text);
    assert_eq!(r.body["reason"], "TooManyRequests");
    assert_eq!(
        r.body["message"],
        "Too many requests, please try again later."
    );
    assert_eq!(r.body["details"]["retryAfterSeconds"], 1);
    let _bobs = bob.watch("timeoutSeconds=600");
    assert_eq!(alice.get(CSRS).code, 200, "other requests are not bounded");

    drop(first);
    let start = Instant::now();
    loop {
        let r = alice.get(&format!("{CSRS}?watch=true&timeoutSeconds=1"));
        if r.code == 200 {
            break;
        }
        assert_eq!(r.code, 429, "{}", r.text);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the dropped watch's slot was not freed"
        );
    }
}
