//! `SelfSubjectAccessReview` and `SelfSubjectRulesReview` (`authorization.k8s.io/v1`) and
//! `SelfSubjectReview` (`authentication.k8s.io/v1`): what `kubectl auth can-i` (with and
//! without `--list`) and `kubectl auth whoami` ask, with their discovery documents.
//!
//! A `SelfSubjectAccessReview` is validated as kube-apiserver validates it (exactly one of
//! `resourceAttributes` and `nonResourceAttributes`, empty `metadata`; 422 `Invalid` otherwise)
//! and answered 201 for the caller:
//! - resource attributes naming `certificatesigningrequests` in `certificates.k8s.io` (or its
//!   `approval` and `status` subresources) with a verb the server serves: the server's
//!   [`Authorizer`](super::Authorizer) decides, with the CSR the name names when it exists, as
//!   a real request would be decided; `*` as the verb asks for every verb. `allowed` is the
//!   decision; a denial is `allowed: false` with no `denied`, as RBAC's "no opinion".
//! - `create` on `selfsubjectaccessreviews` and `selfsubjectrulesreviews` in
//!   `authorization.k8s.io` and `selfsubjectreviews.authentication.k8s.io`: allowed for everyone (the `system:basic-user`
//!   role of a cluster).
//! - non-resource attributes: `get` of the discovery and health paths (`/api`, `/api/*`,
//!   `/apis`, `/apis/*`, `/version`, `/healthz`, `/livez`, `/readyz`, `/openapi/*`) is allowed
//!   for everyone (the `system:discovery` and `system:public-info-viewer` roles); anything else
//!   is not.
//! - anything else is not allowed, with a `reason` saying the server does not serve it. (A
//!   cluster's RBAC would answer for its whole API; this server has nothing else.)
//!
//! A `SelfSubjectRulesReview` (what `kubectl auth can-i --list` asks) lists, for a namespace
//! (400 without one), the CSR verbs the authorizer allows before it sees an object, per
//! resource and subresource, the review resources, and the public non-resource URLs;
//! `incomplete` is true when read verbs are listed for a user outside `system:masters`, as the
//! default authorizer then still filters by object, which a rule cannot say.
//!
//! A `SelfSubjectReview` answers the caller's `userInfo` (username, uid, groups; `extra` is
//! always empty here, as no authenticator of this server sets it).

use std::io;

use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::Shared;
use super::auth::{Action, Decision, UserInfo, Verb};
use super::http::{Conn, Request};
use super::protobuf;
use super::rest::{Next, bad_request, send_json, send_status};
use super::validation::{self, FieldError, GROUP, Kind, RESOURCE, Value};
use crate::csr::api::Status;
use crate::pki::fmt_time;

const AUTHZ_GROUP: &str = "authorization.k8s.io";
const AUTHN_GROUP: &str = "authentication.k8s.io";
const SSAR: &str = "selfsubjectaccessreviews";
const SSR: &str = "selfsubjectreviews";
const SSRR: &str = "selfsubjectrulesreviews";

/// The `APIGroup` entries of the two groups, for `/apis`.
pub(super) fn group_docs() -> Vec<Json> {
    [AUTHZ_GROUP, AUTHN_GROUP]
        .into_iter()
        .map(|g| {
            let v = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
            json!({"name": g, "versions": [v], "preferredVersion": v})
        })
        .collect()
}

fn resource_list(group: &str) -> Json {
    let resources: &[(&str, &str, &str)] = if group == AUTHZ_GROUP {
        &[
            (SSAR, "selfsubjectaccessreview", "SelfSubjectAccessReview"),
            (SSRR, "selfsubjectrulesreview", "SelfSubjectRulesReview"),
        ]
    } else {
        &[(SSR, "selfsubjectreview", "SelfSubjectReview")]
    };
    let resources: Vec<Json> = resources
        .iter()
        .map(|(name, singular, kind)| {
            json!({
                "name": name,
                "singularName": singular,
                "namespaced": false,
                "kind": kind,
                "verbs": ["create"],
            })
        })
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/v1"),
        "resources": resources,
    })
}

fn method_not_allowed() -> Status {
    Status::failure(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    )
}

/// Serves the two groups' paths; `None` for any other path.
pub(super) fn route(
    shared: &Shared,
    conn: &mut Conn,
    req: &Request,
    segs: &[&str],
    user: &UserInfo,
) -> io::Result<Option<Next>> {
    let keep = req.keep_alive();
    let get = req.method == "GET";
    let doc = match segs {
        ["apis", g @ (AUTHZ_GROUP | AUTHN_GROUP)] => {
            let mut d = group_docs()
                .into_iter()
                .find(|d| d["name"] == *g)
                .unwrap_or_default();
            d["kind"] = json!("APIGroup");
            d["apiVersion"] = json!("v1");
            Some(d)
        }
        ["apis", g @ (AUTHZ_GROUP | AUTHN_GROUP), "v1"] => Some(resource_list(g)),
        _ => None,
    };
    if let Some(doc) = doc {
        if get {
            send_json(conn, 200, &doc, keep)?;
        } else {
            send_status(conn, &method_not_allowed(), keep)?;
        }
        return Ok(Some(Next::KeepAlive));
    }
    let answer = match segs {
        ["apis", AUTHZ_GROUP, "v1", SSAR] if req.method == "POST" => {
            access_review(shared, req, user)
        }
        ["apis", AUTHN_GROUP, "v1", SSR] if req.method == "POST" => self_review(shared, req, user),
        ["apis", AUTHZ_GROUP, "v1", SSRR] if req.method == "POST" => {
            rules_review(shared, req, user)
        }
        ["apis", AUTHZ_GROUP, "v1", SSAR | SSRR] | ["apis", AUTHN_GROUP, "v1", SSR] => {
            Err(Box::new(method_not_allowed()))
        }
        _ => return Ok(None),
    };
    match answer {
        Ok(doc) => send_json(conn, 201, &doc, keep)?,
        Err(st) => send_status(conn, &st, keep)?,
    }
    Ok(Some(Next::KeepAlive))
}

/// Reads a body of `kind` in `group/v1` as JSON: a JSON or YAML body, or a Kubernetes protobuf
/// one (kubectl sends these reviews in protobuf) turned into the same JSON by `from_protobuf`
/// (415 with the create handler's list for another media type, 400 when it is not that
/// kind).
fn decode(
    req: &Request,
    group: &str,
    kind: &str,
    from_protobuf: fn(&[u8]) -> Result<Json, String>,
) -> Result<Json, Box<Status>> {
    // NegotiateInputSerializer: an empty type is JSON; parameters are dropped.
    let content_type = req
        .header("content-type")
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let unrecognized = |e: String| {
        bad_request(format!(
            "the object provided is unrecognized (must be of type {kind}): {e}"
        ))
    };
    let doc: Json = match content_type.as_str() {
        "" | "application/json" => {
            serde_json::from_slice(&req.body).map_err(|e| unrecognized(e.to_string()))?
        }
        "application/yaml" => {
            serde_norway::from_slice(&req.body).map_err(|e| unrecognized(e.to_string()))?
        }
        protobuf::CONTENT_TYPE => {
            let ((api_version, got_kind), raw) =
                protobuf::envelope(&req.body).map_err(&unrecognized)?;
            let mut doc = from_protobuf(&raw).map_err(&unrecognized)?;
            doc["apiVersion"] = json!(api_version);
            doc["kind"] = json!(got_kind);
            doc
        }
        _ => {
            return Err(Box::new(Status::failure(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, {}",
                    protobuf::CONTENT_TYPE
                ),
            )));
        }
    };
    if !doc.is_object() {
        return Err(unrecognized("not a JSON object".into()));
    }
    if let Some(k) = doc
        .get("kind")
        .and_then(Json::as_str)
        .filter(|k| *k != kind)
    {
        return Err(unrecognized(format!("kind {k:?}")));
    }
    let want = format!("{group}/v1");
    if let Some(v) = doc
        .get("apiVersion")
        .and_then(Json::as_str)
        .filter(|v| *v != want)
    {
        return Err(bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({want})"
        )));
    }
    Ok(doc)
}

/// `authorizationv1.ResourceAttributes`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceAttributes {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    verb: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    subresource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field_selector: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label_selector: Option<Json>,
}

/// `authorizationv1.NonResourceAttributes`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct NonResourceAttributes {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    verb: String,
}

/// `authorizationv1.SelfSubjectAccessReviewSpec`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct AccessSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource_attributes: Option<ResourceAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    non_resource_attributes: Option<NonResourceAttributes>,
}

/// `NewInvalid` of a `SelfSubjectAccessReview`. The decoded object's kind is empty (the create
/// handler decodes into the internal type, whose `TypeMeta` conversion leaves unset), so the
/// message names the group only, as the apiserver's does.
fn invalid(errs: &[FieldError]) -> Box<Status> {
    Box::new(validation::invalid_status_of(AUTHZ_GROUP, "", "", errs))
}

fn access_review(shared: &Shared, req: &Request, user: &UserInfo) -> Result<Json, Box<Status>> {
    let doc = decode(
        req,
        AUTHZ_GROUP,
        "SelfSubjectAccessReview",
        access_review_pb,
    )?;
    let spec: AccessSpec = match doc.get("spec") {
        None | Some(Json::Null) => AccessSpec::default(),
        Some(s) => serde_json::from_value(s.clone()).map_err(|e| {
            bad_request(format!(
                "the object provided is unrecognized (must be of type SelfSubjectAccessReview): {e}"
            ))
        })?,
    };
    let mut errs = Vec::new();
    const ONE_OF: &str =
        "exactly one of nonResourceAttributes or resourceAttributes must be specified";
    let spec_error = |value: String| FieldError {
        kind: Kind::Invalid,
        field: "spec".into(),
        value: Value::Json(value),
        detail: ONE_OF.into(),
    };
    match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(_), Some(n)) => {
            errs.push(spec_error(
                json!({"Path": n.path, "Verb": n.verb}).to_string(),
            ));
        }
        (None, None) => errs.push(spec_error("null".into())),
        _ => {}
    }
    let mut meta = doc
        .get("metadata")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    meta.retain(|k, v| !v.is_null() && k != "managedFields");
    if !meta.is_empty() {
        errs.push(FieldError {
            kind: Kind::Invalid,
            field: "metadata".into(),
            value: Value::Json(Json::Object(meta).to_string()),
            detail: "must be empty".into(),
        });
    }
    if !errs.is_empty() {
        return Err(invalid(&errs));
    }
    let (allowed, reason) = match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(r), _) => decide_resource(shared, user, r),
        (_, Some(n)) => decide_non_resource(n),
        (None, None) => (false, None),
    };
    let mut status = json!({"allowed": allowed});
    if let Some(r) = reason {
        status["reason"] = json!(r);
    }
    Ok(json!({
        "kind": "SelfSubjectAccessReview",
        "apiVersion": format!("{AUTHZ_GROUP}/v1"),
        "metadata": {},
        "spec": spec,
        "status": status,
    }))
}

/// The verbs a `*` asks for.
const ALL_VERBS: [Verb; 8] = Verb::ALL;

fn decide_resource(
    shared: &Shared,
    user: &UserInfo,
    r: &ResourceAttributes,
) -> (bool, Option<String>) {
    let review = (r.group == AUTHZ_GROUP && (r.resource == SSAR || r.resource == SSRR))
        || (r.group == AUTHN_GROUP && r.resource == SSR);
    if review && r.subresource.is_empty() && r.verb == "create" {
        return (
            true,
            Some("every authenticated user may review its own access and identity".into()),
        );
    }
    let served_sub = matches!(r.subresource.as_str(), "" | "approval" | "status");
    // A namespace is ignored, as RBAC's cluster-wide rules hold in every namespace (kubectl
    // sends its context's namespace even for this cluster-scoped resource).
    if r.group != GROUP || r.resource != RESOURCE || !served_sub {
        return (
            false,
            Some(format!(
                "the server serves no such resource (it serves {RESOURCE}.{GROUP} only)"
            )),
        );
    }
    let verbs: Vec<Verb> = if r.verb == "*" {
        ALL_VERBS.to_vec()
    } else {
        match Verb::parse(&r.verb) {
            Some(v) => vec![v],
            None => {
                return (
                    false,
                    Some(format!(
                        "the server serves no verb {:?} on {RESOURCE}",
                        r.verb
                    )),
                );
            }
        }
    };
    let subresource = (!r.subresource.is_empty()).then_some(r.subresource.as_str());
    let name = (!r.name.is_empty()).then_some(r.name.as_str());
    let object = name.and_then(|n| shared.get(n));
    let allowed = verbs.iter().all(|&verb| {
        let mut action = Action {
            verb,
            subresource,
            name,
            object: None,
        };
        if shared.authorizer.authorize(user, &action) != Decision::Allow {
            return false;
        }
        action.object = object.as_deref();
        action.object.is_none() || shared.authorizer.authorize(user, &action) == Decision::Allow
    });
    let reason = allowed.then(|| "allowed by the server's authorizer".to_owned());
    (allowed, reason)
}

/// The non-resource URLs everyone may `get`, as the `system:discovery` and
/// `system:public-info-viewer` cluster roles list them.
const PUBLIC_URLS: [&str; 11] = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
];

/// Paths everyone may `get` (the `system:discovery` and `system:public-info-viewer` roles).
fn decide_non_resource(n: &NonResourceAttributes) -> (bool, Option<String>) {
    let public = ["/api", "/apis", "/version", "/healthz", "/livez", "/readyz"];
    let prefixes = ["/api/", "/apis/", "/openapi/", "/version/"];
    let path = n.path.as_str();
    let readable = public.contains(&path)
        || path == "/openapi"
        || prefixes
            .iter()
            .any(|p| path.starts_with(p) || path == &p[..p.len() - 1]);
    if n.verb == "get" && readable {
        (
            true,
            Some("discovery and health paths are readable by every authenticated user".into()),
        )
    } else {
        (false, None)
    }
}

/// `SelfSubjectRulesReview`: the caller's rules in a namespace (400 without one, as the
/// apiserver). The CSR rules are the verbs the authorizer allows before it sees an object, per
/// resource and subresource; with the default authorizer a user who may list CSRs still sees
/// only its own, which the rules cannot say, so `incomplete` is true whenever a read verb is
/// listed for someone outside `system:masters`.
fn rules_review(shared: &Shared, req: &Request, user: &UserInfo) -> Result<Json, Box<Status>> {
    let doc = decode(req, AUTHZ_GROUP, "SelfSubjectRulesReview", rules_review_pb)?;
    let namespace = doc
        .get("spec")
        .and_then(|s| s.get("namespace"))
        .and_then(Json::as_str)
        .unwrap_or("");
    if namespace.is_empty() {
        return Err(bad_request("no namespace on request".into()));
    }
    let mut rules = vec![
        json!({"verbs": ["create"], "apiGroups": [AUTHZ_GROUP], "resources": [SSAR, SSRR]}),
        json!({"verbs": ["create"], "apiGroups": [AUTHN_GROUP], "resources": [SSR]}),
    ];
    let mut reads = false;
    for sub in [None, Some("approval"), Some("status")] {
        let verbs: Vec<&str> = ALL_VERBS
            .iter()
            .filter(|&&verb| {
                let on_sub = matches!(verb, Verb::Get | Verb::Update | Verb::Patch);
                (sub.is_none() || on_sub)
                    && shared.authorizer.authorize(
                        user,
                        &Action {
                            verb,
                            subresource: sub,
                            name: None,
                            object: None,
                        },
                    ) == Decision::Allow
            })
            .map(Verb::as_str)
            .collect();
        if verbs.is_empty() {
            continue;
        }
        reads |= verbs.iter().any(|v| matches!(*v, "get" | "list" | "watch"));
        let resource = match sub {
            None => RESOURCE.to_owned(),
            Some(s) => format!("{RESOURCE}/{s}"),
        };
        rules.push(json!({"verbs": verbs, "apiGroups": [GROUP], "resources": [resource]}));
    }
    let incomplete = reads && !user.in_group(super::GROUP_MASTERS);
    Ok(json!({
        "kind": "SelfSubjectRulesReview",
        "apiVersion": format!("{AUTHZ_GROUP}/v1"),
        "metadata": {},
        "spec": {},
        "status": {
            "resourceRules": rules,
            "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": PUBLIC_URLS}],
            "incomplete": incomplete,
        },
    }))
}

fn self_review(shared: &Shared, req: &Request, user: &UserInfo) -> Result<Json, Box<Status>> {
    if !req.body.iter().all(u8::is_ascii_whitespace) {
        decode(req, AUTHN_GROUP, "SelfSubjectReview", |_| Ok(json!({})))?;
    }
    let mut info = json!({"username": user.name});
    if let Some(uid) = user.uid.as_deref().filter(|u| !u.is_empty()) {
        info["uid"] = json!(uid);
    }
    if !user.groups.is_empty() {
        info["groups"] = json!(user.groups);
    }
    Ok(json!({
        "kind": "SelfSubjectReview",
        "apiVersion": format!("{AUTHN_GROUP}/v1"),
        "metadata": {"creationTimestamp": fmt_time(shared.clock.now())},
        "status": {"userInfo": info},
    }))
}

/// `authorization.v1.SelfSubjectAccessReview` in protobuf, with the field numbers of
/// `k8s.io/api/authorization/v1/generated.proto` (status is not read).
#[derive(Clone, PartialEq, prost::Message)]
struct AccessReviewPb {
    #[prost(message, optional, tag = "1")]
    metadata: Option<MetaPb>,
    #[prost(message, optional, tag = "2")]
    spec: Option<AccessSpecPb>,
}

/// The `meta.v1.ObjectMeta` fields a review may not set (`name`, `generateName`, `namespace`).
#[derive(Clone, PartialEq, prost::Message)]
struct MetaPb {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    generate_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
}

/// `authorization.v1.SelfSubjectAccessReviewSpec`.
#[derive(Clone, PartialEq, prost::Message)]
struct AccessSpecPb {
    #[prost(message, optional, tag = "1")]
    resource_attributes: Option<ResourceAttributesPb>,
    #[prost(message, optional, tag = "2")]
    non_resource_attributes: Option<NonResourceAttributesPb>,
}

/// `authorization.v1.ResourceAttributes` (the selectors, 8 and 9, are not read).
#[derive(Clone, PartialEq, prost::Message)]
struct ResourceAttributesPb {
    #[prost(string, optional, tag = "1")]
    namespace: Option<String>,
    #[prost(string, optional, tag = "2")]
    verb: Option<String>,
    #[prost(string, optional, tag = "3")]
    group: Option<String>,
    #[prost(string, optional, tag = "4")]
    version: Option<String>,
    #[prost(string, optional, tag = "5")]
    resource: Option<String>,
    #[prost(string, optional, tag = "6")]
    subresource: Option<String>,
    #[prost(string, optional, tag = "7")]
    name: Option<String>,
}

/// `authorization.v1.NonResourceAttributes`.
#[derive(Clone, PartialEq, prost::Message)]
struct NonResourceAttributesPb {
    #[prost(string, optional, tag = "1")]
    path: Option<String>,
    #[prost(string, optional, tag = "2")]
    verb: Option<String>,
}

/// A protobuf `SelfSubjectAccessReview` message as its JSON form.
fn access_review_pb(raw: &[u8]) -> Result<Json, String> {
    let pb = AccessReviewPb::decode(raw).map_err(|e| e.to_string())?;
    let s = |v: Option<String>| v.unwrap_or_default();
    let mut spec = AccessSpec::default();
    let pb_spec = pb.spec.unwrap_or_default();
    if let Some(r) = pb_spec.resource_attributes {
        spec.resource_attributes = Some(ResourceAttributes {
            namespace: s(r.namespace),
            verb: s(r.verb),
            group: s(r.group),
            version: s(r.version),
            resource: s(r.resource),
            subresource: s(r.subresource),
            name: s(r.name),
            field_selector: None,
            label_selector: None,
        });
    }
    if let Some(n) = pb_spec.non_resource_attributes {
        spec.non_resource_attributes = Some(NonResourceAttributes {
            path: s(n.path),
            verb: s(n.verb),
        });
    }
    let meta = pb.metadata.unwrap_or_default();
    let mut metadata = serde_json::Map::new();
    for (k, v) in [
        ("name", meta.name),
        ("generateName", meta.generate_name),
        ("namespace", meta.namespace),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            metadata.insert(k.into(), json!(v));
        }
    }
    Ok(json!({"metadata": metadata, "spec": spec}))
}

/// `authorization.v1.SelfSubjectRulesReview` in protobuf: `spec` = 2, its `namespace` = 1.
#[derive(Clone, PartialEq, prost::Message)]
struct RulesReviewPb {
    #[prost(message, optional, tag = "2")]
    spec: Option<RulesSpecPb>,
}

/// `authorization.v1.SelfSubjectRulesReviewSpec`.
#[derive(Clone, PartialEq, prost::Message)]
struct RulesSpecPb {
    #[prost(string, optional, tag = "1")]
    namespace: Option<String>,
}

/// A protobuf `SelfSubjectRulesReview` message as its JSON form.
fn rules_review_pb(raw: &[u8]) -> Result<Json, String> {
    let pb = RulesReviewPb::decode(raw).map_err(|e| e.to_string())?;
    let namespace = pb.spec.and_then(|s| s.namespace).unwrap_or_default();
    Ok(json!({"spec": {"namespace": namespace}}))
}
