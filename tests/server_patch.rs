//! PATCH (JSON patch, merge patch, strategic merge patch, server-side apply), deletecollection,
//! SelfSubjectAccessReview and SelfSubjectReview on the embedded server, through real TLS and
//! HTTP; then the same through kubectl (`label`, `annotate`, `patch`, `apply`, `auth can-i`,
//! `auth whoami`), skipped with a loud note when kubectl is not installed.
//!
//! Expected values come from the RFCs' examples (RFC 6902 appendix A, RFC 7386 section 3), the
//! Go struct tags of `k8s.io/api/certificates/v1` and `ObjectMeta`, and the apiserver's handler
//! source (`handlers/patch.go`, `handlers/delete.go`, the review registries).

mod server_common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certrotate::CsrTemplate;
use certrotate::server::{ApprovalPolicy, CsrApiServer, Identity, UserInfo};
use serde_json::{Value, json};
use server_common::*;

const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

fn manual() -> CsrApiServer {
    CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .start()
        .unwrap()
}

fn patch(c: &Client, path: &str, ty: &str, body: &str) -> Resp {
    c.send_raw("PATCH", path, ty, body.as_bytes())
}

/// RFC 6902: appendix A.1 (add), A.8/A.9 (test), remove and replace, applied to the labels; an
/// operation that does not apply is the apiserver's 422 with its fixed message and nothing
/// stored; a body that is not JSON, or not an array, is 400.
#[test]
fn json_patch_follows_rfc_6902() {
    let server = manual();
    let c = Client::admin(&server);
    let mut b = client_body(Some("jp"), "alice").0;
    b["metadata"]["labels"] = json!({"foo": "bar"});
    c.create(&b);
    let path = format!("{CSRS}/jp");
    // A.1: {"foo": "bar"} + add /baz "qux" = {"baz": "qux", "foo": "bar"}.
    let r = patch(
        &c,
        &path,
        JSON_PATCH,
        r#"[{"op": "add", "path": "/metadata/labels/baz", "value": "qux"}]"#,
    );
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(
        r.body["metadata"]["labels"],
        json!({"baz": "qux", "foo": "bar"})
    );
    // A.8: a test that holds, then replace and remove.
    let r = patch(
        &c,
        &path,
        JSON_PATCH,
        r#"[{"op": "test", "path": "/metadata/labels/baz", "value": "qux"},
            {"op": "replace", "path": "/metadata/labels/foo", "value": "boo"},
            {"op": "remove", "path": "/metadata/labels/baz"}]"#,
    );
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["metadata"]["labels"], json!({"foo": "boo"}));
    let stored = c.get(&path).body;
    // A.9: a test that fails; also an unknown op and a missing path. NewGenericServerResponse(422)
    // keeps its own message and empty details.
    for ops in [
        r#"[{"op": "test", "path": "/metadata/labels/foo", "value": "bar"}]"#,
        r#"[{"op": "frobnicate", "path": "/metadata/labels/foo"}]"#,
        r#"[{"op": "remove", "path": "/metadata/labels/nope"}]"#,
    ] {
        let r = patch(&c, &path, JSON_PATCH, ops);
        assert_eq!(r.code, 422, "{ops}: {}", r.text);
        assert_eq!(r.body["reason"], "Invalid");
        assert_eq!(
            r.body["message"],
            "the server rejected our request due to an error in our request"
        );
        assert_eq!(r.body["details"], json!({}));
    }
    assert_eq!(c.get(&path).body, stored, "no failed patch wrote anything");
    // Without kind and apiVersion the decoder takes the endpoint's; another kind is refused
    // on the field `patch`.
    let r = patch(
        &c,
        &path,
        JSON_PATCH,
        r#"[{"op": "remove", "path": "/kind"}, {"op": "remove", "path": "/apiVersion"}]"#,
    );
    assert_eq!(r.code, 200, "{}", r.text);
    let r = patch(
        &c,
        &path,
        JSON_PATCH,
        r#"[{"op": "replace", "path": "/kind", "value": "Pod"}]"#,
    );
    assert_eq!(r.code, 422, "{}", r.text);
    assert_eq!(r.body["details"]["causes"][0]["field"], "patch");
    // validateAndTranscodePatch, then jsonpatch.DecodePatch.
    let r = patch(&c, &path, JSON_PATCH, "[{");
    assert_eq!(
        (r.code, r.body["message"].as_str()),
        (400, Some("invalid JSON patch"))
    );
    let r = patch(&c, &path, JSON_PATCH, r#"{"op": "add"}"#);
    assert_eq!(r.code, 400, "{}", r.text);
    assert_eq!(r.body["reason"], "BadRequest");
}

/// RFC 7386 section 3's example, on the labels: `{"a":"b","c":"g"}` + `{"a":"z","c":null}`
/// = `{"a":"z"}`; and the example's nested delete on the annotations map.
#[test]
fn merge_patch_follows_rfc_7386() {
    let server = manual();
    let c = Client::admin(&server);
    let mut b = client_body(Some("mp"), "alice").0;
    b["metadata"]["labels"] = json!({"a": "b", "c": "g"});
    b["metadata"]["annotations"] = json!({"d": "e", "f": "g"});
    c.create(&b);
    let r = patch(
        &c,
        &format!("{CSRS}/mp"),
        MERGE_PATCH,
        r#"{"metadata": {"labels": {"a": "z", "c": null}, "annotations": {"f": null}}}"#,
    );
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["metadata"]["labels"], json!({"a": "z"}));
    assert_eq!(r.body["metadata"]["annotations"], json!({"d": "e"}));
    assert_eq!(server.csr("mp").unwrap().metadata.labels.unwrap().len(), 1);
    // Not JSON at all: 400 before anything else.
    let r = patch(&c, &format!("{CSRS}/mp"), MERGE_PATCH, "{");
    assert_eq!(r.code, 400, "{}", r.text);
}

/// Strategic merge patch on `/status` and `/approval`: `status.conditions` has no
/// `patchStrategy` tag in `k8s.io/api/certificates/v1`, so a patch's list replaces the stored
/// one (it is not merged by `type`); maps still merge (labels).
#[test]
fn strategic_merge_patch_replaces_lists_that_have_no_patch_strategy() {
    let server = manual();
    let c = Client::admin(&server);
    c.create(&client_body(Some("smp"), "alice").0);
    let path = format!("{CSRS}/smp");
    let types = |r: &Resp| -> Vec<String> {
        r.body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = patch(
        &c,
        &format!("{path}/status"),
        STRATEGIC,
        r#"{"status": {"conditions": [{"type": "Checked", "status": "True", "reason": "One"}]}}"#,
    );
    assert_eq!(r.code, 200, "{}", r.text);
    let r = patch(
        &c,
        &format!("{path}/approval"),
        STRATEGIC,
        r#"{"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "Two"}]}}"#,
    );
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(types(&r), ["Approved"], "the list was replaced, not merged");
    // An approval by patch is an approval: the signer issues.
    let mut w = c.watch("fieldSelector=metadata.name%3Dsmp&timeoutSeconds=10");
    w.until(|e| certificate(&e["object"]).is_some());
    // Server-side apply, by contrast, merges the map-list by `type` (`+listMapKey=type`).
    let r = patch(
        &c,
        &format!("{path}/status?fieldManager=test"),
        APPLY,
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: smp\nstatus:\n  conditions:\n  - type: Checked\n    status: \"True\"\n",
    );
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(types(&r), ["Approved", "Checked"]);
    let r = patch(
        &c,
        &path,
        STRATEGIC,
        r#"{"metadata": {"labels": {"x": "1"}}, "status": {"conditions": []}}"#,
    );
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["metadata"]["labels"], json!({"x": "1"}));
    assert!(
        has_condition(&r.body, "Approved"),
        "the main resource does not change status"
    );
    let r = patch(&c, &path, STRATEGIC, "[]");
    assert_eq!(r.code, 400, "{}", r.text);
}

/// The patched object takes the PUT path: authorization with the verb `patch`, 415 for other
/// media types with the apiserver's list, `PatchOptions` validation, resourceVersion conflicts,
/// the name rule, spec immutability (kept from the live object), dryRun, and 404.
#[test]
fn a_patched_object_obeys_the_update_rules() {
    let server = manual();
    server.add_token("alice-token", UserInfo::new("alice", &[]));
    let c = Client::admin(&server);
    let alice = Client::with_token(&server, "alice-token");
    c.create(&client_body(Some("rules"), "alice").0);
    let path = format!("{CSRS}/rules");
    let labels = r#"{"metadata": {"labels": {"k": "v"}}}"#;

    let r = patch(&alice, &path, MERGE_PATCH, labels);
    assert_eq!(r.code, 403, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "certificatesigningrequests.certificates.k8s.io \"rules\" is forbidden: User \"alice\" cannot patch resource \"certificatesigningrequests\" in API group \"certificates.k8s.io\" at the cluster scope"
    );

    // No part of the header names a patch type: go-restful refuses the route, and the service
    // error handler wraps its text in a Status.
    for ty in ["application/json", "text/plain; charset=utf-8", ""] {
        let r = patch(&c, &path, ty, labels);
        assert_eq!(r.code, 415, "{ty}: {}", r.text);
        assert_eq!(r.body["reason"], "UnsupportedMediaType");
        assert_eq!(r.body["message"], "415: Unsupported Media Type");
        assert_eq!(r.body["details"], json!({}));
    }
    // A header go-restful lets through but the patch handler does not read as one type.
    for ty in [
        "application/merge-patch+json, application/json",
        "application/merge-patch+json ; charset=utf-8",
    ] {
        let r = patch(&c, &path, ty, labels);
        assert_eq!(r.code, 415, "{ty}: {}", r.text);
        assert_eq!(r.body["reason"], "UnsupportedMediaType");
        assert_eq!(
            r.body["message"],
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
        );
    }
    let r = patch(
        &c,
        &path,
        "application/merge-patch+json; charset=utf-8",
        labels,
    );
    assert_eq!(r.code, 200, "{}", r.text);

    let r = patch(&c, &format!("{path}?force=true"), MERGE_PATCH, labels);
    assert_eq!(r.code, 422, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );
    let r = patch(
        &c,
        &format!("{path}?fieldValidation=Loose"),
        MERGE_PATCH,
        labels,
    );
    assert_eq!(r.code, 422, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"Loose\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
    );
    let r = patch(&c, &path, APPLY, "apiVersion: certificates.k8s.io/v1\n");
    assert_eq!(r.code, 422, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    assert_eq!(r.body["details"]["causes"][0]["field"], "fieldManager");

    // A resourceVersion the patch sets and that is not the live one: 409.
    let stale = r#"{"metadata": {"resourceVersion": "1000", "labels": {"k": "v"}}}"#;
    let r = patch(&c, &path, MERGE_PATCH, stale);
    assert_eq!(r.code, 409, "{}", r.text);
    assert_eq!(r.body["reason"], "Conflict");
    // The live one: fine.
    let fresh = format!(
        r#"{{"metadata": {{"resourceVersion": "{}", "labels": {{"k": "v"}}}}}}"#,
        rv(&c.get(&path).body)
    );
    let r = patch(&c, &path, MERGE_PATCH, &fresh);
    assert_eq!(r.code, 200, "{}", r.text);

    // checkName.
    let r = patch(&c, &path, MERGE_PATCH, r#"{"metadata": {"name": "other"}}"#);
    assert_eq!(r.code, 400, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "the name of the object (other) does not match the name on the URL (rules)"
    );
    // The spec is kept from the live object (the CSR strategy's PrepareForUpdate).
    let r = patch(
        &c,
        &path,
        MERGE_PATCH,
        r#"{"spec": {"signerName": "example.com/other"}}"#,
    );
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(
        r.body["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client"
    );
    // A patch that changes nothing writes nothing: same resourceVersion, no watch event.
    let after = c.get(&path).body;
    let mut w = c.watch(&format!("resourceVersion={}", rv(&after)));
    let r = patch(&c, &path, MERGE_PATCH, labels);
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body, after);
    let r = patch(
        &c,
        &path,
        MERGE_PATCH,
        r#"{"metadata": {"labels": {"k": "w"}}}"#,
    );
    assert_eq!(r.code, 200, "{}", r.text);
    let ev = w.next().unwrap();
    assert_eq!(
        ev["object"]["metadata"]["labels"]["k"], "w",
        "the first event is the real change"
    );
    let after = r.body;
    // The same rule for a PUT of the object as it is.
    let r = c.put(&path, &after);
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(rv(&r.body), rv(&after), "an unchanged PUT writes nothing");
    // dryRun answers the patched object and stores nothing.
    let r = patch(
        &c,
        &format!("{path}?dryRun=All"),
        MERGE_PATCH,
        r#"{"metadata": {"labels": {"dry": "run"}}}"#,
    );
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["metadata"]["labels"]["dry"], "run");
    assert_eq!(rv(&c.get(&path).body), rv(&after), "dry run stored nothing");
    let r = patch(&c, &format!("{path}?dryRun=Server"), MERGE_PATCH, labels);
    assert_eq!(r.code, 422, "{}", r.text);
    assert_eq!(r.body["details"]["kind"], "PatchOptions");

    // Update validation: approving and denying at once is refused as on PUT /approval.
    let r = patch(
        &c,
        &format!("{path}/approval"),
        MERGE_PATCH,
        r#"{"status": {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}}"#,
    );
    assert_eq!(r.code, 422, "{}", r.text);

    let r = patch(&c, &format!("{CSRS}/missing"), MERGE_PATCH, labels);
    assert_eq!(r.code, 404, "{}", r.text);
    assert_eq!(r.body["reason"], "NotFound");
}

/// Server-side apply: creates the CSR when absent (201), merges the applied fields over the
/// live object afterwards (200), and refuses an applied object of another version (400, the
/// field manager's message).
#[test]
fn server_side_apply_creates_then_merges() {
    let server = manual();
    let c = Client::admin(&server);
    let pem = csr_pem(&CsrTemplate::new("alice"), &key());
    let yaml = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: ssa\n  labels:\n    a: \"1\"\nspec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n",
        STANDARD.encode(pem)
    );
    let path = format!("{CSRS}/ssa?fieldManager=test");
    let r = patch(&c, &format!("{path}&dryRun=All"), APPLY, &yaml);
    assert_eq!(r.code, 201, "{}", r.text);
    assert!(
        server.csr("ssa").is_none(),
        "a dry-run apply creates nothing"
    );
    let r = patch(&c, &path, APPLY, &yaml);
    assert_eq!(r.code, 201, "{}", r.text);
    assert_eq!(r.body["spec"]["username"], "admin", "the caller made it");
    let more = "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: ssa\n  labels:\n    b: \"2\"\n";
    let r = patch(&c, &format!("{path}&force=true"), APPLY, more);
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    let r = patch(
        &c,
        &path,
        APPLY,
        "apiVersion: certificates.k8s.io/v1beta1\nkind: CertificateSigningRequest\nmetadata:\n  name: ssa\n",
    );
    assert_eq!(r.code, 400, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "Incorrect version specified in apply patch. Specified patch version: certificates.k8s.io/v1beta1, expected: certificates.k8s.io/v1"
    );
    // Apply to an absent CSR's status subresource does not create it.
    let r = patch(
        &c,
        &format!("{CSRS}/absent/status?fieldManager=test"),
        APPLY,
        more,
    );
    assert_eq!(r.code, 404, "{}", r.text);
}

/// deletecollection: the label and field selectors pick what goes, dryRun keeps everything,
/// the answer is the list of what was deleted, and only administrators may (403 otherwise).
#[test]
fn deletecollection_deletes_what_the_selectors_match() {
    let server = manual();
    server.add_token("alice-token", UserInfo::new("alice", &[]));
    let c = Client::admin(&server);
    for (name, tier) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let mut b = client_body(Some(name), "alice").0;
        b["metadata"]["labels"] = json!({"tier": tier});
        c.create(&b);
    }
    let alice = Client::with_token(&server, "alice-token");
    let r = alice.delete(&format!("{CSRS}?labelSelector=tier%3Dx"));
    assert_eq!(r.code, 403, "{}", r.text);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("cannot deletecollection resource"),
        "{}",
        r.text
    );
    let r = c.delete(&format!("{CSRS}?labelSelector=tier%3Dx&dryRun=All"));
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(server.csrs().len(), 3, "dry run deleted nothing");
    let r = c.delete(&format!("{CSRS}?labelSelector=tier%3Dx"));
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["kind"], "CertificateSigningRequestList");
    let names: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert!(server.csr("a").is_none() && server.csr("b").is_none());
    let r = c.delete(&format!("{CSRS}?fieldSelector=metadata.name%3Dc"));
    assert_eq!(r.code, 200, "{}", r.text);
    assert!(server.csrs().is_empty());
    let r = c.delete(&format!("{CSRS}?fieldSelector=spec.usages%3Dx"));
    assert_eq!(r.code, 400, "{}", r.text);
}

/// SelfSubjectAccessReview answered from the authorizer for the caller, its validation, and
/// SelfSubjectReview's userInfo.
#[test]
fn access_and_identity_reviews_answer_for_the_caller() {
    let server = manual();
    server.add_token(
        "alice-token",
        UserInfo::new("alice", &["dev"]).with_uid("u-1"),
    );
    let admin = Client::admin(&server);
    let alice = Client::with_token(&server, "alice-token");
    let ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let ask = |c: &Client, attrs: Value| {
        let r = c.post(
            ssar,
            &json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "spec": attrs}),
        );
        assert_eq!(r.code, 201, "{}", r.text);
        assert_eq!(r.body["kind"], "SelfSubjectAccessReview");
        r.body["status"]["allowed"].as_bool().unwrap()
    };
    let res = |verb: &str, sub: &str| json!({"resourceAttributes": {"verb": verb, "group": "certificates.k8s.io", "resource": "certificatesigningrequests", "subresource": sub}});
    assert!(ask(&admin, res("delete", "")));
    assert!(ask(&admin, res("update", "approval")));
    assert!(ask(&admin, res("*", "")));
    assert!(ask(&alice, res("create", "")));
    assert!(ask(&alice, res("list", "")));
    assert!(!ask(&alice, res("delete", "")));
    assert!(!ask(&alice, res("patch", "")));
    assert!(!ask(&alice, res("update", "approval")));
    assert!(!ask(&alice, res("*", "")));
    assert!(!ask(
        &alice,
        json!({"resourceAttributes": {"verb": "get", "resource": "pods"}})
    ));
    assert!(ask(
        &alice,
        json!({"nonResourceAttributes": {"verb": "get", "path": "/apis"}})
    ));
    assert!(!ask(
        &alice,
        json!({"nonResourceAttributes": {"verb": "post", "path": "/apis"}})
    ));
    // The create handler's media types: YAML is read; anything else is 415 with its list.
    let yaml = "apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectAccessReview\nspec:\n  nonResourceAttributes: {verb: get, path: /version}\n";
    let r = alice.send_raw("POST", ssar, "application/yaml", yaml.as_bytes());
    assert_eq!(
        (r.code, &r.body["status"]["allowed"]),
        (201, &json!(true)),
        "{}",
        r.text
    );
    let r = alice.send_raw("POST", ssar, "text/plain", yaml.as_bytes());
    assert_eq!(r.code, 415, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
    );
    // ValidateSelfSubjectAccessReviewSpec: exactly one of the two.
    let r = alice.post(ssar, &json!({"spec": {}}));
    assert_eq!(r.code, 422, "{}", r.text);
    assert_eq!(r.body["details"]["causes"][0]["field"], "spec");
    assert_eq!(
        r.body["details"]["causes"][0]["message"],
        "Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified"
    );

    // SelfSubjectRulesReview: a namespace is required; alice's CSR rules are the object-less
    // decisions of the default authorizer.
    let ssrr = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
    let r = alice.post(ssrr, &json!({"spec": {}}));
    assert_eq!(
        (r.code, r.body["message"].as_str()),
        (400, Some("no namespace on request"))
    );
    let r = alice.post(ssrr, &json!({"spec": {"namespace": "default"}}));
    assert_eq!(r.code, 201, "{}", r.text);
    let rules = r.body["status"]["resourceRules"].as_array().unwrap();
    let csr_rule = rules
        .iter()
        .find(|r| r["resources"] == json!(["certificatesigningrequests"]))
        .unwrap();
    assert_eq!(csr_rule["verbs"], json!(["create", "get", "list", "watch"]));
    let approval = rules
        .iter()
        .find(|r| r["resources"] == json!(["certificatesigningrequests/approval"]))
        .unwrap();
    assert_eq!(
        approval["verbs"],
        json!(["get"]),
        "alice may read, not approve"
    );
    assert_eq!(r.body["status"]["incomplete"], true);
    let r = admin.post(ssrr, &json!({"spec": {"namespace": "default"}}));
    assert_eq!(r.body["status"]["incomplete"], false);

    let r = alice.post(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1"}),
    );
    assert_eq!(r.code, 201, "{}", r.text);
    assert_eq!(
        r.body["status"]["userInfo"],
        json!({"username": "alice", "uid": "u-1", "groups": ["dev", "system:authenticated"]})
    );
}

/// Discovery lists the new verbs and the two review groups.
#[test]
fn discovery_lists_patch_deletecollection_and_the_review_groups() {
    let server = manual();
    let c = Client::admin(&server);
    let r = c.get("/apis/certificates.k8s.io/v1");
    let res = &r.body["resources"];
    let verbs = |i: usize| res[i]["verbs"].clone();
    assert_eq!(
        verbs(0),
        json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ])
    );
    assert_eq!(verbs(1), json!(["get", "patch", "update"]));
    assert_eq!(verbs(2), json!(["get", "patch", "update"]));
    let groups: Vec<String> = c.get("/apis").body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(groups.contains(&"authorization.k8s.io".to_owned()));
    assert!(groups.contains(&"authentication.k8s.io".to_owned()));
    let r = c.get("/apis/authorization.k8s.io/v1");
    assert_eq!(r.body["resources"][0]["name"], "selfsubjectaccessreviews");
    assert_eq!(r.body["resources"][0]["verbs"], json!(["create"]));
    assert_eq!(r.body["resources"][1]["name"], "selfsubjectrulesreviews");
    let r = c.get("/apis/authentication.k8s.io");
    assert_eq!(r.body["kind"], "APIGroup");
    assert_eq!(
        r.body["preferredVersion"]["groupVersion"],
        "authentication.k8s.io/v1"
    );
}

/// True when kubectl runs here; otherwise says loudly that the kubectl checks are skipped.
fn kubectl_present() -> bool {
    let ok = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: kubectl is not installed; the kubectl label/annotate/patch/apply/auth checks did not run"
        );
    }
    ok
}

/// kubectl's own requests: `label`, `annotate`, `patch` with each `--type`, client-side and
/// server-side `apply`, `auth can-i` (also `--list`) and `auth whoami`.
#[test]
fn kubectl_label_annotate_patch_apply_and_auth() {
    if !kubectl_present() {
        return;
    }
    let server = manual();
    let dir = tempfile::tempdir().unwrap();
    let admin_cfg = dir.path().join("admin");
    std::fs::write(&admin_cfg, server.kubeconfig(&Identity::admin()).unwrap()).unwrap();
    server.add_token("alice-token", UserInfo::new("alice", &["dev"]));
    let alice_cfg = dir.path().join("alice");
    std::fs::write(
        &alice_cfg,
        server.kubeconfig(&Identity::token("alice-token")).unwrap(),
    )
    .unwrap();
    let run = |cfg: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(cfg)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let kubectl = |args: &[&str]| {
        let (ok, text) = run(&admin_cfg, args);
        assert!(ok, "kubectl {args:?}: {text}");
        text
    };
    let c = Client::admin(&server);
    c.create(&client_body(Some("k"), "alice").0);

    kubectl(&["label", "csr", "k", "tier=web"]);
    kubectl(&["annotate", "csr", "k", "note=hello"]);
    kubectl(&[
        "patch",
        "csr",
        "k",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"m":"1"}}}"#,
    ]);
    kubectl(&[
        "patch",
        "csr",
        "k",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/j","value":"2"}]"#,
    ]);
    kubectl(&[
        "patch",
        "csr",
        "k",
        "--type=strategic",
        "-p",
        r#"{"metadata":{"labels":{"s":"3"}}}"#,
    ]);
    kubectl(&["label", "csr", "k", "m-"]);
    let csr = server.csr("k").unwrap();
    let labels = csr.metadata.labels.unwrap();
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        [("j", "2"), ("s", "3"), ("tier", "web")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(csr.metadata.annotations.unwrap()["note"], "hello");
    let out = kubectl(&[
        "patch",
        "csr",
        "k",
        "--subresource=approval",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Approved","status":"True","reason":"ByPatch"}]}}"#,
    ]);
    assert!(out.contains("patched"), "{out}");

    let pem = csr_pem(&CsrTemplate::new("alice"), &key());
    let yaml = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: applied\n  labels:\n    a: \"1\"\nspec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n",
        STANDARD.encode(pem)
    );
    let file = dir.path().join("csr.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let f = file.to_str().unwrap();
    let out = kubectl(&["apply", "--server-side", "--validate=false", "-f", f]);
    assert!(out.contains("serverside-applied"), "{out}");
    assert_eq!(
        server.csr("applied").unwrap().metadata.labels.unwrap()["a"],
        "1"
    );
    std::fs::write(&file, yaml.replace("a: \"1\"", "a: \"2\"")).unwrap();
    let out = kubectl(&["apply", "--validate=false", "-f", f]);
    assert!(out.contains("configured"), "{out}");
    let applied = server.csr("applied").unwrap();
    assert_eq!(applied.metadata.labels.unwrap()["a"], "2");
    assert!(
        applied
            .metadata
            .annotations
            .unwrap()
            .contains_key("kubectl.kubernetes.io/last-applied-configuration")
    );

    // stdout comes first; kubectl warns on stderr that the resource is not namespaced.
    let first = |out: &str| out.lines().next().unwrap_or("").to_owned();
    assert_eq!(first(&kubectl(&["auth", "can-i", "delete", "csr"])), "yes");
    let (ok, out) = run(&alice_cfg, &["auth", "can-i", "delete", "csr"]);
    assert!(!ok && first(&out) == "no", "{out}");
    let (ok, out) = run(
        &alice_cfg,
        &["auth", "can-i", "create", "certificatesigningrequests"],
    );
    assert!(ok && first(&out) == "yes", "{out}");
    let (ok, out) = run(&alice_cfg, &["auth", "can-i", "get", "/apis"]);
    assert!(ok && first(&out) == "yes", "{out}");
    let (ok, out) = run(&alice_cfg, &["auth", "can-i", "--list"]);
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("certificatesigningrequests.certificates.k8s.io "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.ends_with("[create get list watch]"), "{out}");
    let out = kubectl(&["auth", "whoami", "-o", "json"]);
    let who: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "certrotate:admin");
    let (ok, out) = run(&alice_cfg, &["auth", "whoami"]);
    assert!(ok && out.contains("alice") && out.contains("dev"), "{out}");
}
