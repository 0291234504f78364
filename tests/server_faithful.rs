//! The embedded server answers as kube-apiserver 1.37 does where real clients look: discovery,
//! the `Status` 404 of unknown API paths, the deprecated `/watch/` paths, `"status": {}` on
//! pending CSRs, `fieldValidation` (Strict, Warn, Ignore), null fields and the 1.37 validation
//! wording, and `Accept` negotiation (406). Expected strings are copied from the upstream
//! source named at each test (or printed by the upstream Go code itself), and kubectl, where
//! installed, is run against the server as the real peer.

mod server_common;

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certrotate::CsrTemplate;
use certrotate::server::{ApprovalPolicy, CsrApiServer, Identity};
use serde_json::{Value, json};
use server_common::*;

fn manual() -> CsrApiServer {
    CsrApiServer::builder()
        .approval_policy(ApprovalPolicy::Manual)
        .start()
        .unwrap()
}

/// An answer with its headers.
struct Raw {
    code: u16,
    body: Value,
    text: String,
    content_type: String,
    warnings: Vec<String>,
}

/// One request with the given headers and raw body.
fn send(c: &Client, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Raw {
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", c.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("Content-Type", "application/json");
    }
    let req = req.body(body.to_vec()).unwrap();
    let mut resp = c.agent.run(req).expect("transport");
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let code = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    Raw {
        code,
        body,
        text,
        content_type,
        warnings,
    }
}

/// `Status` body fields, compared whole.
fn status_of(r: &Raw) -> (u16, &str, &str) {
    (
        r.code,
        r.body["reason"].as_str().unwrap_or("<no reason>"),
        r.body["message"].as_str().unwrap_or("<no message>"),
    )
}

/// kubectl against `server` as admin, or `None` (said loudly) when it is not installed.
fn kubectl(server: &CsrApiServer) -> Option<impl Fn(&[&str]) -> (bool, String, String)> {
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: kubectl is not installed; the kubectl checks did not run");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("kubeconfig");
    std::fs::write(&cfg, server.kubeconfig(&Identity::admin()).unwrap()).unwrap();
    Some(move |args: &[&str]| {
        let _keep = &dir;
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

/// `/api` lists no versions (no core resources are served) and `/api/v1` is an empty
/// `APIResourceList`; client-go's discovery then completes: `kubectl api-resources` exits 0
/// (it exited 1, "received empty response for: v1"). Aggregated discovery is not served: a
/// client that asks for it and for plain JSON (as client-go does) gets plain JSON, one that
/// asks only for it gets 406.
#[test]
fn discovery_is_complete_for_client_go() {
    let server = manual();
    let c = Client::admin(&server);
    let api = send(&c, "GET", "/api", &[], b"");
    assert_eq!(api.code, 200);
    assert_eq!(api.body["kind"], "APIVersions");
    assert_eq!(api.body["versions"], json!([]));
    let v1 = send(&c, "GET", "/api/v1", &[], b"");
    assert_eq!(
        v1.body,
        json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": []})
    );
    // client-go's discovery Accept (`discovery_client.go` AcceptV2 + "," + AcceptV1).
    let client_go =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    for path in ["/api", "/apis"] {
        let r = send(&c, "GET", path, &[("Accept", client_go)], b"");
        assert_eq!(r.code, 200, "{path}");
        assert_eq!(r.content_type, "application/json");
        let only = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
        let r = send(&c, "GET", path, &[("Accept", only)], b"");
        assert_eq!(
            status_of(&r),
            (
                406,
                "NotAcceptable",
                "only the following media types are accepted: application/json"
            ),
            "{path}"
        );
    }
    // The version whose behaviour is followed.
    let v = send(&c, "GET", "/version", &[], b"");
    assert_eq!(
        (
            v.body["gitVersion"].as_str(),
            v.body["emulationMinor"].as_str()
        ),
        (Some("v1.37.2"), Some("37"))
    );
    if let Some(kubectl) = kubectl(&server) {
        let (ok, out, err) = kubectl(&["api-resources"]);
        assert!(ok, "kubectl api-resources: {out}{err}");
        assert!(out.contains("certificatesigningrequests"), "{out}");
        let (ok, out, err) = kubectl(&["api-resources", "--api-group=certificates.k8s.io"]);
        assert!(ok && out.contains("csr"), "{out}{err}");
    }
}

/// Unknown paths under the API's go-restful web services (`/api…`, `/apis/certificates.k8s.io…`:
/// an unknown resource, version or subresource, v1beta1 when off, on any method) answer the
/// `Status` that `serviceErrorHandler` writes (`NewGenericServerResponse(404)`), byte for byte
/// as apimachinery v0.37.2 marshals it; paths outside them the mux's plain 404.
#[test]
fn unknown_api_paths_answer_a_status_404() {
    let server = manual();
    let c = Client::admin(&server);
    let want = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","details":{},"code":404}"#;
    for (method, path) in [
        ("GET", "/apis/certificates.k8s.io/v1/widgets"),
        ("POST", "/apis/certificates.k8s.io/v1/widgets"),
        (
            "GET",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/a/widget",
        ),
        (
            "GET",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/a/b/c",
        ),
        (
            "GET",
            "/apis/certificates.k8s.io/v2/certificatesigningrequests",
        ),
        ("GET", "/apis/certificates.k8s.io/v1beta1"),
        (
            "DELETE",
            "/apis/certificates.k8s.io/v1beta1/certificatesigningrequests/a",
        ),
        ("GET", "/apis/certificates.k8s.io/v1/watch/widgets"),
        ("GET", "/api/v1/pods"),
        ("GET", "/api/v2"),
    ] {
        let r = send(&c, method, path, &[], b"");
        assert_eq!((r.code, r.text.as_str()), (404, want), "{method} {path}");
        assert_eq!(r.content_type, "application/json", "{path}");
    }
    for path in [
        "/apis/other.example.com/v1/widgets",
        "/foo",
        "/apis/certificates",
    ] {
        let r = send(&c, "GET", path, &[], b"");
        assert_eq!(
            (r.code, r.text.as_str()),
            (404, "404 page not found\n"),
            "{path}"
        );
    }
    if let Some(kubectl) = kubectl(&server) {
        let (ok, _, err) = kubectl(&["get", "--raw", "/apis/certificates.k8s.io/v1/widgets"]);
        assert!(!ok);
        assert!(
            err.contains(
                "Error from server (NotFound): the server could not find the requested resource"
            ),
            "{err}"
        );
    }
}

/// The deprecated `…/watch/certificatesigningrequests[/NAME]` paths watch as `?watch=true`
/// does, the named one with `metadata.name=NAME` (`get.go` `ListResource`, forceWatch): a field
/// selector naming another object is 400 with its message; other methods are 405.
#[test]
fn deprecated_watch_paths_watch() {
    let server = manual();
    let c = Client::admin(&server);
    let a = c.create(&client_body(Some("a"), "x").0);
    c.create(&client_body(Some("b"), "y").0);
    let watch = "/apis/certificates.k8s.io/v1/watch/certificatesigningrequests";
    let mut all = c.watch_at(&format!("{watch}?timeoutSeconds=2"));
    let mut seen = Vec::new();
    while let Some(ev) = all.next() {
        assert_eq!(ev["type"], "ADDED");
        seen.push(name(&ev["object"]));
    }
    assert_eq!(seen, ["a", "b"]);
    let mut one = c.watch_at(&format!(
        "{watch}/a?timeoutSeconds=2&resourceVersion={}",
        rv(&a)
    ));
    c.put(
        &format!("{CSRS}/b"),
        &json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "b", "labels": {"x": "1"}}}),
    );
    let mut labelled = a.clone();
    labelled["metadata"]["labels"] = json!({"x": "2"});
    let r = c.put(&format!("{CSRS}/a"), &labelled);
    assert_eq!(r.code, 200, "{}", r.text);
    let ev = one.next().expect("an event for a");
    assert_eq!(
        (ev["type"].as_str(), name(&ev["object"])),
        (Some("MODIFIED"), "a".into())
    );
    assert!(one.next().is_none(), "only a's events");
    let r = send(
        &c,
        "GET",
        &format!("{watch}/a?fieldSelector=metadata.name%3Db"),
        &[],
        b"",
    );
    assert_eq!(
        status_of(&r),
        (
            400,
            "BadRequest",
            "fieldSelector metadata.name doesn't match requested name"
        )
    );
    let r = send(&c, "DELETE", &format!("{watch}/a"), &[], b"");
    assert_eq!(
        status_of(&r),
        (
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource"
        )
    );
    assert!(server.csr("a").is_some());
    if let Some(kubectl) = kubectl(&server) {
        let (ok, out, err) = kubectl(&["get", "--raw", &format!("{watch}/b?timeoutSeconds=1")]);
        assert!(ok, "{err}");
        assert!(
            out.contains("\"ADDED\"") && out.contains("\"name\":\"b\""),
            "{out}"
        );
    }
}

/// A pending CSR carries `"status": {}` in every answer (create, get, list, watch), as the
/// apiserver serializes its non-pointer status struct.
#[test]
fn a_pending_csr_has_an_empty_status_everywhere() {
    let server = manual();
    let c = Client::admin(&server);
    let created = send(
        &c,
        "POST",
        CSRS,
        &[],
        client_body(Some("p"), "x").0.to_string().as_bytes(),
    );
    assert_eq!(created.code, 201);
    assert!(created.text.contains(r#""status":{}"#), "{}", created.text);
    let got = send(&c, "GET", &format!("{CSRS}/p"), &[], b"");
    assert!(got.text.contains(r#""status":{}"#), "{}", got.text);
    let list = send(&c, "GET", CSRS, &[], b"");
    assert_eq!(list.body["items"][0]["status"], json!({}));
    let mut w = c.watch("timeoutSeconds=1");
    let line = w.next_line().unwrap();
    assert!(line.contains(r#""status":{}"#), "{line}");
    // The event's fields in the apiserver's order (`metav1.WatchEvent`: type, object).
    assert!(line.starts_with(r#"{"type":"ADDED","object":{"#), "{line}");
}

fn good_spec(server: &CsrApiServer) -> Value {
    let _ = server;
    let pem = csr_pem(&CsrTemplate::new("alice"), &key());
    json!({
        "request": STANDARD.encode(pem),
        "signerName": "kubernetes.io/kube-apiserver-client",
        "usages": ["client auth"],
    })
}

/// A body with a repeated `metadata.name` and an unknown `spec.foo`, as raw JSON.
fn body_with_strict_errors(name: &str, spec: &Value) -> String {
    let spec = spec.to_string();
    format!(
        r#"{{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{{"name":"{name}","name":"{name}"}},"spec":{{"foo":1,{}}}"#,
        &spec[1..]
    )
}

/// `fieldValidation` on create, update and the subresources, as `create.go`/`update.go` apply
/// it: `Strict` refuses unknown and duplicate fields with 400 (`transformDecodeError` over
/// `runtime.strictDecodingError`); `Warn`, also the default, answers with one `Warning: 299 -`
/// header each (`NewWarningHeader`); `Ignore` says nothing; any other value is the 422 of
/// `ValidateFieldValidation`. Expected texts: sigs.k8s.io/json `strictError.Error`,
/// apimachinery `NewStrictDecodingError`, and (for the 422) apimachinery v0.37.2's own output.
#[test]
fn field_validation_strict_warn_and_ignore() {
    let server = manual();
    let c = Client::admin(&server);
    let spec = good_spec(&server);
    let strict_msg = r#"CertificateSigningRequest in version "v1" cannot be handled as a CertificateSigningRequest: strict decoding error: duplicate field "metadata.name", unknown field "spec.foo""#;
    let warnings = [
        r#"299 - "duplicate field \"metadata.name\"""#,
        r#"299 - "unknown field \"spec.foo\"""#,
    ];
    let r = send(
        &c,
        "POST",
        &format!("{CSRS}?fieldValidation=Strict"),
        &[],
        body_with_strict_errors("s", &spec).as_bytes(),
    );
    assert_eq!(status_of(&r), (400, "BadRequest", strict_msg));
    assert!(server.csr("s").is_none());
    for (query, name, want) in [
        ("", "w1", &warnings[..]),
        ("?fieldValidation=Warn", "w2", &warnings[..]),
        ("?fieldValidation=Ignore", "w3", &[][..]),
    ] {
        let r = send(
            &c,
            "POST",
            &format!("{CSRS}{query}"),
            &[],
            body_with_strict_errors(name, &spec).as_bytes(),
        );
        assert_eq!(r.code, 201, "{query}: {}", r.text);
        assert_eq!(r.warnings, want, "{query}");
    }
    // A valid body gets no warning.
    let r = send(
        &c,
        "POST",
        CSRS,
        &[],
        json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "v"}, "spec": spec})
            .to_string()
            .as_bytes(),
    );
    assert_eq!((r.code, r.warnings.len()), (201, 0), "{}", r.text);
    // Updates and both subresources.
    let mut obj = c.get(&format!("{CSRS}/w1")).body;
    obj["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let mut text = obj.to_string();
    text.insert_str(1, r#""bogus":true,"#);
    for sub in ["", "/approval", "/status"] {
        let path = format!("{CSRS}/w1{sub}");
        let r = send(
            &c,
            "PUT",
            &format!("{path}?fieldValidation=Strict"),
            &[],
            text.as_bytes(),
        );
        assert_eq!(
            status_of(&r),
            (
                400,
                "BadRequest",
                r#"CertificateSigningRequest in version "v1" cannot be handled as a CertificateSigningRequest: strict decoding error: unknown field "bogus""#
            ),
            "{sub}"
        );
        let r = send(&c, "PUT", &path, &[], text.as_bytes());
        assert_eq!(r.code, 200, "{sub}: {}", r.text);
        assert_eq!(r.warnings, [r#"299 - "unknown field \"bogus\"""#], "{sub}");
    }
    // A value the apiserver does not know, with a bad dryRun too: one 422 for both.
    let r = send(
        &c,
        "POST",
        &format!("{CSRS}?fieldValidation=strict&dryRun=Server"),
        &[],
        body_with_strict_errors("x", &spec).as_bytes(),
    );
    assert_eq!(r.code, 422);
    assert_eq!(
        r.body["message"],
        r#"CreateOptions.meta.k8s.io "" is invalid: [dryRun: Unsupported value: ["Server"]: supported values: "All", fieldValidation: Unsupported value: "strict": supported values: "", "Ignore", "Strict", "Warn"]"#
    );
    assert_eq!(
        r.body["details"]["causes"][1],
        json!({"reason": "FieldValueNotSupported", "message": r#"Unsupported value: "strict": supported values: "", "Ignore", "Strict", "Warn""#, "field": "fieldValidation"})
    );
    let r = send(
        &c,
        "PUT",
        &format!("{CSRS}/w1?fieldValidation=Off"),
        &[],
        text.as_bytes(),
    );
    assert_eq!(r.code, 422);
    assert!(
        r.body["message"].as_str().unwrap().starts_with(
            r#"UpdateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Off""#
        ),
        "{}",
        r.text
    );
    // kubectl prints the server's warnings (a create without `fieldValidation`: Warn).
    if let Some(kubectl) = kubectl(&server) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("csr.json");
        std::fs::write(&file, body_with_strict_errors("k", &spec)).unwrap();
        let (ok, out, err) = kubectl(&["create", "--raw", CSRS, "-f", file.to_str().unwrap()]);
        assert!(ok, "{out}{err}");
        assert!(
            err.contains(r#"Warning: unknown field "spec.foo""#),
            "{err}"
        );
        assert!(
            err.contains(r#"Warning: duplicate field "metadata.name""#),
            "{err}"
        );
    }
}

/// Null fields decode as Go's zero values, so they reach validation (422, not 400), and every
/// validation message has the 1.37 wording. Sources: `validateCertificateSigningRequest` and
/// `validateCSR` in kubernetes v1.37.2 `pkg/apis/certificates/validation/validation.go`,
/// `certificates.ParseCSR` (`pkg/apis/certificates/helpers.go`), `ValidateSignerName`
/// (`pkg/apis/core/validation/names.go`), `ValidateObjectMeta` (apimachinery
/// `pkg/api/validation/objectmeta.go`), Go's `x509.checkSignature` and
/// `base64.CorruptInputError`, and `field.Error.ErrorBody` (apimachinery v0.37.2
/// `pkg/util/validation/field/errors.go`, whose output for these values was printed by it).
#[test]
fn null_fields_are_422_with_the_1_37_wording() {
    let server = manual();
    let c = Client::admin(&server);
    let spec = good_spec(&server);
    let k = key();
    let good = csr_pem(&CsrTemplate::new("alice"), &k);
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(good.as_bytes())
        .map(|d: rustls::pki_types::CertificateSigningRequestDer<'static>| d.as_ref().to_vec())
        .unwrap();
    let mut bad = der;
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let bad_sig = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        STANDARD.encode(&bad)
    );
    let ca = server.ca_pem();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "a"}, "spec": spec.clone()});
        f(&mut b);
        b
    };
    let invalid = |errs: &str| {
        format!("CertificateSigningRequest.certificates.k8s.io \"a\" is invalid: {errs}")
    };
    let cases: Vec<(&str, Value, u16, String)> = vec![
        (
            "usages null",
            with(&|b| b["spec"]["usages"] = Value::Null),
            422,
            invalid("spec.usages: Required value"),
        ),
        (
            "usages absent",
            with(&|b| {
                b["spec"].as_object_mut().unwrap().remove("usages");
            }),
            422,
            invalid("spec.usages: Required value"),
        ),
        (
            "signerName null",
            with(&|b| b["spec"]["signerName"] = Value::Null),
            422,
            invalid("spec.signerName: Required value"),
        ),
        (
            "request null",
            with(&|b| b["spec"]["request"] = Value::Null),
            422,
            invalid("spec.request: Invalid value: null: PEM block type must be CERTIFICATE REQUEST"),
        ),
        (
            "request empty",
            with(&|b| b["spec"]["request"] = json!("")),
            422,
            invalid(r#"spec.request: Invalid value: "": PEM block type must be CERTIFICATE REQUEST"#),
        ),
        (
            "request not PEM",
            with(&|b| b["spec"]["request"] = json!(STANDARD.encode("hello"))),
            422,
            invalid(r#"spec.request: Invalid value: "aGVsbG8=": PEM block type must be CERTIFICATE REQUEST"#),
        ),
        (
            "request is a certificate",
            with(&|b| b["spec"]["request"] = json!(STANDARD.encode(&ca))),
            422,
            invalid(&format!(
                r#"spec.request: Invalid value: "{}": PEM block type must be CERTIFICATE REQUEST"#,
                STANDARD.encode(&ca)
            )),
        ),
        (
            "signature does not verify (ECDSA)",
            with(&|b| b["spec"]["request"] = json!(STANDARD.encode(&bad_sig))),
            422,
            invalid(&format!(
                r#"spec.request: Invalid value: "{}": x509: ECDSA verification failure"#,
                STANDARD.encode(&bad_sig)
            )),
        ),
        (
            "spec null",
            with(&|b| b["spec"] = Value::Null),
            422,
            invalid("[spec.request: Invalid value: null: PEM block type must be CERTIFICATE REQUEST, spec.usages: Required value, spec.signerName: Required value]"),
        ),
        (
            "usages with a null element",
            with(&|b| b["spec"]["usages"] = json!(["client auth", null])),
            422,
            invalid(r#"spec.usages[1]: Unsupported value: "": supported values: "any", "cert sign", "client auth", "code signing", "content commitment", "crl sign", "data encipherment", "decipher only", "digital signature", "email protection", "encipher only", "ipsec end system", "ipsec tunnel", "ipsec user", "key agreement", "key encipherment", "microsoft sgc", "netscape sgc", "ocsp signing", "s/mime", "server auth", "signing", "timestamping""#),
        ),
        (
            "name null",
            with(&|b| b["metadata"]["name"] = Value::Null),
            422,
            r#"CertificateSigningRequest.certificates.k8s.io "" is invalid: metadata.name: Required value: name or generateName is required"#.to_owned(),
        ),
        (
            "request not base64",
            with(&|b| b["spec"]["request"] = json!("not base64!")),
            400,
            r#"CertificateSigningRequest in version "v1" cannot be handled as a CertificateSigningRequest: illegal base64 data at input byte 3"#.to_owned(),
        ),
    ];
    for (case, b, code, message) in cases {
        let r = send(&c, "POST", CSRS, &[], b.to_string().as_bytes());
        assert_eq!(r.code, code, "{case}: {}", r.text);
        assert_eq!(r.body["message"], message, "{case}");
        assert_eq!(
            r.body["reason"],
            if code == 422 { "Invalid" } else { "BadRequest" },
            "{case}"
        );
    }
    // Line breaks in base64 are skipped, as by Go.
    let mut b = with(&|_| {});
    let wrapped = STANDARD.encode(&good);
    let wrapped = format!("{}\n{}", &wrapped[..64], &wrapped[64..]);
    b["spec"]["request"] = json!(wrapped);
    assert_eq!(
        send(&c, "POST", CSRS, &[], b.to_string().as_bytes()).code,
        201
    );
}

/// `Accept` as the apiserver negotiates it: go-restful's route match first (`*/*` or an exact
/// media type the route produces; parameters ignored), then the handler's
/// `NegotiateOutputMediaType` (conversions to `Table` and `PartialObjectMetadata[List]`). JSON
/// is the only representation here, so an `Accept` of only protobuf or YAML is 406; client-go's
/// protobuf clients send `application/vnd.kubernetes.protobuf,application/json` and get JSON.
#[test]
fn accept_negotiation_and_406() {
    let server = manual();
    let c = Client::admin(&server);
    c.create(&client_body(Some("n"), "x").0);
    let item = format!("{CSRS}/n");
    let item = item.as_str();
    let route_406 = "406: Not Acceptable\n\nAvailable representations: application/json";
    let list_406 = "406: Not Acceptable\n\nAvailable representations: application/json, application/json;stream=watch";
    let handler_406 = "only the following media types are accepted: application/json";
    for (path, accept, want) in [
        (item, "*/*", Ok("CertificateSigningRequest")),
        (item, "application/json", Ok("CertificateSigningRequest")),
        (
            item,
            "application/json, text/html;q=0.9",
            Ok("CertificateSigningRequest"),
        ),
        (
            item,
            "application/vnd.kubernetes.protobuf,application/json",
            Ok("CertificateSigningRequest"),
        ),
        (
            item,
            "application/vnd.kubernetes.protobuf, */*",
            Ok("CertificateSigningRequest"),
        ),
        (
            item,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            Ok("Table"),
        ),
        (
            item,
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
            Ok("PartialObjectMetadata"),
        ),
        (
            CSRS,
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
            Ok("PartialObjectMetadataList"),
        ),
        (item, "application/vnd.kubernetes.protobuf", Err(route_406)),
        (item, "application/yaml", Err(route_406)),
        (item, "text/html", Err(route_406)),
        (item, "application/*", Err(route_406)),
        (CSRS, "text/plain", Err(list_406)),
        (
            item,
            "application/json;as=Status;g=meta.k8s.io;v=v1",
            Err(handler_406),
        ),
        (
            item,
            "application/json;as=Table;g=meta.k8s.io;v=v2",
            Err(handler_406),
        ),
        (
            item,
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            Err(
                "you requested PartialObjectMetadataList, but the requested object is not a list (*v1.CertificateSigningRequest)",
            ),
        ),
        (
            CSRS,
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
            Err(
                "you requested PartialObjectMetadata, but the requested object is a list (*v1.CertificateSigningRequestList)",
            ),
        ),
        (
            "/apis",
            "application/json;as=Table;g=meta.k8s.io;v=v1",
            Err(handler_406),
        ),
        ("/apis", "text/html", Err(route_406)),
        ("/version", "text/html", Err(route_406)),
        ("/version", "application/json, */*", Ok("")),
    ] {
        let r = send(&c, "GET", path, &[("Accept", accept)], b"");
        match want {
            Ok(kind) => {
                assert_eq!(r.code, 200, "{path} {accept}: {}", r.text);
                assert_eq!(r.content_type, "application/json");
                if !kind.is_empty() {
                    assert_eq!(r.body["kind"], kind, "{path} {accept}");
                }
            }
            Err(message) => {
                assert_eq!(
                    status_of(&r),
                    (406, "NotAcceptable", message),
                    "{path} {accept}"
                );
                assert_eq!(r.body["details"], json!({}));
            }
        }
    }
    let p = send(
        &c,
        "GET",
        item,
        &[(
            "Accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )],
        b"",
    );
    assert_eq!(p.body["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(p.body["metadata"]["name"], "n");
    assert!(p.body.get("spec").is_none());
    // Writes: the same route check, before anything is stored.
    let r = send(
        &c,
        "POST",
        CSRS,
        &[("Accept", "application/vnd.kubernetes.protobuf")],
        client_body(Some("q"), "x").0.to_string().as_bytes(),
    );
    assert_eq!(status_of(&r), (406, "NotAcceptable", route_406));
    assert!(server.csr("q").is_none());
}

/// A body in a format not decoded here is 415 with `NewUnsupportedMediaTypeError`'s message
/// (`negotiation/errors.go`: no echo of the type sent), before the options are looked at.
#[test]
fn an_unknown_body_format_is_415() {
    let server = manual();
    let c = Client::admin(&server);
    for content_type in [
        "text/plain",
        "application/yaml",
        "application/json-patch+json",
    ] {
        let r = send(
            &c,
            "POST",
            &format!("{CSRS}?fieldValidation=bogus"),
            &[("Content-Type", content_type)],
            client_body(Some("u"), "x").0.to_string().as_bytes(),
        );
        assert_eq!(
            status_of(&r),
            (
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf"
            ),
            "{content_type}"
        );
    }
    assert!(server.csr("u").is_none());
}
