//! The REST layer: authentication of each request, routing, discovery documents, and the CSR
//! operations (create, get, list, watch, update, `/approval`, `/status`, delete), with the
//! apiserver's `Status` errors.
//!
//! A path under `/api/` or `/apis/certificates.k8s.io/` that names nothing served (an unknown
//! resource, version — `v1beta1` when it is off — or subresource) gets the `Status` 404 that
//! kube-apiserver's go-restful container writes for paths under a registered web service
//! (`the server could not find the requested resource`, `details: {}`); any other unknown
//! path gets the plain-text `404 page not found` of its non-go-restful mux.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::auth::{Action, Decision, GROUP_UNAUTHENTICATED, USER_ANONYMOUS, UserInfo, Verb};
use super::decode::{self, FIELD_VALIDATION_VALUES, FieldValidation};
use super::faults::{Call, Fault};
use super::http::{Conn, Request};
use super::negotiate::{self, Output, Route};
use super::selector::{self, LabelReq, parse_label_selector};
use super::signer::{self, Work, has_condition};
use super::state::{Event, EventType, Stored};
use super::validation::{self, GROUP, RESOURCE, UpdatePath, go_quote};
use super::{Shared, new_uid, since};
use crate::csr::ApiVersion;
use crate::csr::api::{
    API_VERSION_V1, API_VERSION_V1BETA1, CONDITION_APPROVED, CertificateSigningRequest, KIND_CSR,
    ListMeta, Status, StatusCause, StatusDetails, reason_for_code,
};
use crate::pki::fmt_time;

/// What the connection does after a request.
pub(crate) enum Next {
    KeepAlive,
    Close,
}

const JSON: &str = "application/json";

/// Writes a `Status` with its code.
pub(crate) fn send_status(conn: &mut Conn, st: &Status, keep: bool) -> io::Result<()> {
    let code = st.code.and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
    let body = serde_json::to_vec(st).unwrap_or_default();
    conn.respond(code, JSON, &body, keep)
}

pub(super) fn send_json<T: Serialize>(
    conn: &mut Conn,
    code: u16,
    v: &T,
    keep: bool,
) -> io::Result<()> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    conn.respond(code, JSON, &body, keep)
}

fn not_found_plain(conn: &mut Conn, keep: bool) -> io::Result<()> {
    conn.respond(
        404,
        "text/plain; charset=utf-8",
        b"404 page not found\n",
        keep,
    )
}

/// The answer for an unknown path: a `Status` 404 under the paths kube-apiserver's go-restful
/// web services claim (`/api`, `/apis/certificates.k8s.io`), else the mux's plain 404.
fn not_found_path(conn: &mut Conn, segs: &[&str], keep: bool) -> io::Result<()> {
    match segs {
        ["api", ..] | ["apis", GROUP, ..] => send_status(conn, &path_not_found(), keep),
        _ => not_found_plain(conn, keep),
    }
}

/// `NewGenericServerResponse(404)` as the apiserver's `serviceErrorHandler` writes it.
fn path_not_found() -> Status {
    let mut st = Status::failure(
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    st.details = Some(StatusDetails::default());
    st
}

fn details(name: Option<&str>) -> StatusDetails {
    StatusDetails {
        name: name.map(str::to_owned),
        group: Some(GROUP.to_owned()),
        kind: Some(RESOURCE.to_owned()),
        ..StatusDetails::default()
    }
}

fn status(code: u16, message: String, name: Option<&str>) -> Status {
    let mut st = Status::failure(code, reason_for_code(code), message);
    st.details = Some(details(name));
    st
}

pub(super) fn not_found(name: &str) -> Status {
    status(
        404,
        format!("{RESOURCE}.{GROUP} {name:?} not found"),
        Some(name),
    )
}

fn already_exists(name: &str) -> Status {
    let mut st = status(
        409,
        format!("{RESOURCE}.{GROUP} {name:?} already exists"),
        Some(name),
    );
    st.reason = Some("AlreadyExists".into());
    st
}

fn conflict(name: &str) -> Status {
    status(
        409,
        format!(
            "Operation cannot be fulfilled on {RESOURCE}.{GROUP} {name:?}: the object has been modified; please apply your changes to the latest version and try again"
        ),
        Some(name),
    )
}

/// The write options a request carries (`CreateOptions`, `UpdateOptions`, `DeleteOptions`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WriteOptions {
    #[serde(default)]
    pub(super) dry_run: Vec<String>,
    #[serde(default)]
    pub(super) preconditions: Option<Preconditions>,
}

/// `metav1.Preconditions`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

impl WriteOptions {
    /// From the query (`?dryRun=All`, repeatable), as the apiserver decodes `CreateOptions` and
    /// `UpdateOptions`, and `DeleteOptions` when the request has no body.
    pub(super) fn from_query(req: &Request) -> WriteOptions {
        WriteOptions {
            dry_run: req
                .query
                .iter()
                .filter(|(k, _)| k == "dryRun")
                .map(|(_, v)| v.clone())
                .collect(),
            preconditions: None,
        }
    }

    /// `ValidateDryRun`: every value must be `All`, else 422 `Invalid` on the options kind
    /// (`DeleteOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ["x"]: …`).
    /// Returns whether the request is a dry run.
    pub(super) fn dry_run(&self, kind: &str) -> Result<bool, Box<Status>> {
        self.validate(kind, Vec::new(), None)
            .map(|(dry_run, _)| dry_run)
    }

    /// The options of a create or update (`ValidateCreateOptions`, `ValidateUpdateOptions`):
    /// `dryRun` as [`dry_run`](Self::dry_run) and the `fieldValidation` query parameter, one of
    /// `Ignore`, `Warn`, `Strict` or empty (absent or empty means `Warn`); every bad one is a
    /// cause of the same 422. Returns the dry run and the directive.
    fn validate_write(
        &self,
        req: &Request,
        kind: &str,
    ) -> Result<(bool, FieldValidation), Box<Status>> {
        let fv = req.param("fieldValidation").unwrap_or("");
        self.validate(kind, Vec::new(), Some(fv))
            .map(|(d, f)| (d, f.unwrap_or(FieldValidation::Warn)))
    }

    /// The options' checks in apimachinery's order, as one 422 on `kind`: `errs` (the caller's
    /// own, checked first, as `ValidatePatchOptions` checks `force` and `fieldManager`), then
    /// `dryRun`, then `fieldValidation` when given. Returns the dry run and the directive.
    pub(super) fn validate(
        &self,
        kind: &str,
        mut errs: Vec<validation::FieldError>,
        field_validation: Option<&str>,
    ) -> Result<(bool, Option<FieldValidation>), Box<Status>> {
        if !self.dry_run.iter().all(|v| v == "All") {
            errs.push(validation::FieldError {
                kind: validation::Kind::NotSupported,
                field: "dryRun".into(),
                value: validation::Value::Json(go_json(&self.dry_run)),
                detail: "supported values: \"All\"".into(),
            });
        }
        let directive = field_validation.map(|v| (v, FieldValidation::parse(Some(v))));
        if let Some((v, None)) = directive {
            let supported: Vec<String> = FIELD_VALIDATION_VALUES
                .iter()
                .map(|s| format!("{s:?}"))
                .collect();
            errs.push(validation::FieldError {
                kind: validation::Kind::NotSupported,
                field: "fieldValidation".into(),
                value: validation::Value::Str(v.to_owned()),
                detail: format!("supported values: {}", supported.join(", ")),
            });
        }
        if !errs.is_empty() {
            return Err(Box::new(validation::invalid_status_of(
                "meta.k8s.io",
                kind,
                "",
                &errs,
            )));
        }
        Ok((!self.dry_run.is_empty(), directive.and_then(|(_, d)| d)))
    }
}

/// Go's `json.Marshal` of a list of strings (HTML characters escaped as Go escapes them).
fn go_json(v: &[String]) -> String {
    serde_json::to_string(v)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// A failed delete precondition: 409 `Conflict` as `rest.BeforeDelete` answers it (the
/// resource named by its kind).
fn precondition_failed(name: &str, why: String) -> Status {
    let mut st = Status::failure(
        409,
        "Conflict",
        format!("Operation cannot be fulfilled on {KIND_CSR}.{GROUP} {name:?}: {why}"),
    );
    st.details = Some(StatusDetails {
        name: Some(name.to_owned()),
        group: Some(GROUP.to_owned()),
        kind: Some(KIND_CSR.to_owned()),
        ..StatusDetails::default()
    });
    st
}

pub(super) fn bad_request(message: String) -> Box<Status> {
    Box::new(Status::failure(400, "BadRequest", message))
}

pub(super) fn forbidden(user: &UserInfo, action: &Action<'_>) -> Status {
    let resource = match action.subresource {
        Some(sub) => format!("{RESOURCE}/{sub}"),
        None => RESOURCE.to_owned(),
    };
    let named = action.name.map(|n| format!(" {n:?}")).unwrap_or_default();
    status(
        403,
        format!(
            "{RESOURCE}.{GROUP}{named} is forbidden: User {:?} cannot {} resource {resource:?} in API group {GROUP:?} at the cluster scope",
            user.name,
            action.verb.as_str()
        ),
        action.name,
    )
}

/// Whether the path is one of CSRs (the authorizer decides those requests).
fn is_csr_path(segs: &[&str]) -> bool {
    matches!(
        segs,
        ["apis", GROUP, _, RESOURCE, ..] | ["apis", GROUP, _, "watch", RESOURCE, ..]
    )
}

/// The 403 RBAC's default roles give `system:anonymous` outside CSRs: for a review, the
/// resource's message; for any other path, the non-resource one (`cannot get path "/apis"`,
/// the verb being the lower-case method, as `responsewriters.Forbidden` words it).
fn anonymous_forbidden(req: &Request, segs: &[&str]) -> Status {
    if let [
        "apis",
        group @ ("authorization.k8s.io" | "authentication.k8s.io"),
        _,
        resource,
        ..,
    ] = segs
    {
        let mut st = Status::failure(
            403,
            "Forbidden",
            format!(
                "{resource}.{group} is forbidden: User {USER_ANONYMOUS:?} cannot create resource {resource:?} in API group {group:?} at the cluster scope"
            ),
        );
        st.details = Some(StatusDetails {
            group: Some((*group).to_owned()),
            kind: Some((*resource).to_owned()),
            ..StatusDetails::default()
        });
        return st;
    }
    let mut st = Status::failure(
        403,
        "Forbidden",
        format!(
            "forbidden: User {USER_ANONYMOUS:?} cannot {} path {:?}",
            req.method.to_ascii_lowercase(),
            req.path
        ),
    );
    st.details = Some(StatusDetails::default());
    st
}

/// `Too large resource version` (the apiserver's 504 with cause `ResourceVersionTooLarge`).
fn too_large(asked: u64, current: u64) -> Status {
    let mut st = Status::failure(
        504,
        "Timeout",
        format!("Timeout: Too large resource version: {asked}, current: {current}"),
    );
    st.details = Some(StatusDetails {
        causes: vec![StatusCause {
            reason: Some("ResourceVersionTooLarge".into()),
            message: Some("Too large resource version".into()),
            field: None,
        }],
        retry_after_seconds: Some(1),
        ..StatusDetails::default()
    });
    st
}

fn expired(message: String) -> Status {
    Status::failure(410, "Expired", message)
}

/// Per-request context.
pub(super) struct Ctx<'a> {
    pub(super) shared: &'a Shared,
    pub(super) user: UserInfo,
    pub(super) version: ApiVersion,
    /// The shape the `Accept` header asked for.
    pub(super) output: Output,
    /// The object-less check already made for this request (verb, subresource, name), so the
    /// authorizer is asked it once.
    pub(super) checked: Option<(Verb, Option<String>, Option<String>)>,
    pub(super) keep: bool,
    /// The `includeObject` query parameter (`TableOptions`): what a `Table` row's `object` is.
    pub(super) include_object: Option<String>,
}

impl Ctx<'_> {
    pub(super) fn allowed(&self, action: &Action<'_>) -> bool {
        if action.object.is_none()
            && self.checked.as_ref().is_some_and(|(verb, sub, name)| {
                *verb == action.verb
                    && sub.as_deref() == action.subresource
                    && name.as_deref() == action.name
            })
        {
            return true;
        }
        self.shared.authorizer.authorize(&self.user, action) == Decision::Allow
    }

    /// The object as this request's API version shows it, with `"status": {}` while it has
    /// no status, as the apiserver serializes a pending CSR (its status is a struct, not a
    /// pointer).
    pub(super) fn render(&self, obj: &CertificateSigningRequest) -> CertificateSigningRequest {
        let mut o = obj.clone();
        o.api_version = Some(self.version.as_str().to_owned());
        o.kind = Some(KIND_CSR.to_owned());
        o.status.get_or_insert_default();
        o
    }

    /// One object in the shape asked for: a `Table` of one row, `PartialObjectMetadata`, or the
    /// object.
    fn render_value(&self, obj: &CertificateSigningRequest, rv: Option<u64>) -> Json {
        match self.output {
            Output::Table(v) => table(self, std::slice::from_ref(obj), rv, v),
            Output::Partial(v) | Output::PartialList(v) => partial(obj, v),
            Output::Plain => serde_json::to_value(self.render(obj)).unwrap_or(Json::Null),
        }
    }
}

/// The caller: from the client certificate, else the bearer token, else — no credentials at
/// all — `system:anonymous` in group `system:unauthenticated`, as kube-apiserver's default
/// `--anonymous-auth=true` makes it. `None` (401) for credentials that do not authenticate.
fn authenticate(
    shared: &Shared,
    req: &Request,
    peer: Option<&Result<UserInfo, ()>>,
) -> Option<UserInfo> {
    match peer {
        Some(Ok(u)) => return Some(u.clone()),
        Some(Err(())) => return None,
        None => {}
    }
    let Some(h) = req.header("authorization") else {
        return Some(UserInfo {
            name: USER_ANONYMOUS.to_owned(),
            uid: None,
            groups: vec![GROUP_UNAUTHENTICATED.to_owned()],
        });
    };
    let (scheme, token) = h.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    shared.tokens.read().authenticate(token.trim())
}

/// Serves one request.
pub(crate) fn handle(
    shared: &Shared,
    conn: &mut Conn,
    req: &Request,
    peer: Option<&Result<UserInfo, ()>>,
) -> io::Result<Next> {
    let keep = req.keep_alive();
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let get = req.method == "GET";
    match segs.as_slice() {
        ["version"] if get => {
            match negotiate::route_accepts(req.header("accept"), Route::Object) {
                Ok(()) => send_json(conn, 200, &version_doc(), keep)?,
                Err(st) => send_status(conn, &st, keep)?,
            }
            return Ok(Next::KeepAlive);
        }
        ["healthz" | "livez" | "readyz"] if get => {
            conn.respond(200, "text/plain; charset=utf-8", b"ok", keep)?;
            return Ok(Next::KeepAlive);
        }
        _ => {}
    }
    let Some(user) = authenticate(shared, req, peer) else {
        send_status(
            conn,
            &Status::failure(401, "Unauthorized", "Unauthorized"),
            keep,
        )?;
        return Ok(Next::KeepAlive);
    };
    if user.in_group(GROUP_UNAUTHENTICATED) && !is_csr_path(&segs) {
        // The default cluster roles give unauthenticated callers `/version` and the health
        // checks only (`system:public-info-viewer`); discovery, OpenAPI and the reviews are
        // for `system:authenticated`.
        send_status(conn, &anonymous_forbidden(req, &segs), keep)?;
        return Ok(Next::KeepAlive);
    }
    if let ["openapi", rest @ ..] = segs.as_slice()
        && get
        && super::openapi::serve(conn, req, rest, keep)?
    {
        return Ok(Next::KeepAlive);
    }
    let version = |v: &str| match v {
        "v1" => Some(ApiVersion::V1),
        "v1beta1" if shared.settings.v1beta1 => Some(ApiVersion::V1beta1),
        _ => None,
    };
    let doc = match segs.as_slice() {
        // No core ("") group resources are served, so `/api` lists no versions: client-go's
        // discovery then asks nothing more of it, where a listed `v1` without resources fails
        // ("received empty response for: v1"). `/api/v1` still answers an empty list for
        // clients that read it without asking `/api` (the Python client's dynamic discovery).
        ["api"] => Some(json!({
            "kind": "APIVersions",
            "versions": [],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}],
        })),
        ["api", "v1"] => {
            Some(json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": []}))
        }
        ["apis"] => {
            let mut groups = vec![group_doc(shared)];
            groups.extend(super::review::group_docs());
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["apis", GROUP] => {
            let mut g = group_doc(shared);
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            Some(g)
        }
        ["apis", GROUP, v] if version(v).is_some() => Some(resources_doc(v)),
        _ => None,
    };
    let accept = req.header("accept");
    if let Some(doc) = doc {
        let negotiated = negotiate::route_accepts(accept, Route::Object)
            .and_then(|()| negotiate::output(accept, false));
        match negotiated {
            _ if !get => send_status(conn, &method_not_allowed(), keep)?,
            Err(st) => send_status(conn, &st, keep)?,
            Ok(_) => send_json(conn, 200, &doc, keep)?,
        }
        return Ok(Next::KeepAlive);
    }
    if let Some(next) = super::review::route(shared, conn, req, &segs, &user)? {
        return Ok(next);
    }
    // `…/{resource}[/{name}[/{subresource}]]`, and the deprecated `…/watch/{resource}[/{name}]`.
    let (v, watch_path, rest) = match segs.as_slice() {
        ["apis", GROUP, v, RESOURCE, rest @ ..] if rest.len() <= 2 => (*v, false, rest),
        ["apis", GROUP, v, "watch", RESOURCE, rest @ ..] if rest.len() <= 1 => (*v, true, rest),
        _ => {
            not_found_path(conn, &segs, keep)?;
            return Ok(Next::KeepAlive);
        }
    };
    let Some(v) = version(v) else {
        not_found_path(conn, &segs, keep)?;
        return Ok(Next::KeepAlive);
    };
    let ctx = Ctx {
        shared,
        user,
        version: v,
        output: Output::Plain,
        checked: None,
        keep,
        include_object: req.param("includeObject").map(str::to_owned),
    };
    resource(ctx, conn, req, rest, watch_path)
}

/// `NewGenericServerResponse(405)` as the apiserver's `serviceErrorHandler` writes it.
fn method_not_allowed() -> Status {
    let mut st = Status::failure(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    );
    st.details = Some(StatusDetails::default());
    st
}

fn resource(
    mut ctx: Ctx<'_>,
    conn: &mut Conn,
    req: &Request,
    rest: &[&str],
    watch_path: bool,
) -> io::Result<Next> {
    let watch = watch_path || req.param("watch").is_some_and(go_bool);
    let m = req.method.as_str();
    let call = match (m, rest) {
        ("GET", [] | [_]) if watch_path => Call::Watch,
        (_, _) if watch_path => {
            send_status(conn, &method_not_allowed(), ctx.keep)?;
            return Ok(Next::KeepAlive);
        }
        ("GET", []) if watch => Call::Watch,
        ("GET", []) => Call::List,
        ("POST", []) => Call::Create,
        ("GET", [_]) | ("GET", [_, "status" | "approval"]) => Call::Get,
        ("PUT", [_]) => Call::Update,
        ("PUT", [_, "approval"]) => Call::Approval,
        ("PUT", [_, "status"]) => Call::Status,
        ("DELETE", [_]) => Call::Delete,
        ("DELETE", []) => Call::DeleteCollection,
        ("PATCH", [_] | [_, "status" | "approval"]) => Call::Patch,
        (_, [] | [_] | [_, "status" | "approval"]) => {
            send_status(conn, &method_not_allowed(), ctx.keep)?;
            return Ok(Next::KeepAlive);
        }
        _ => {
            send_status(conn, &path_not_found(), ctx.keep)?;
            return Ok(Next::KeepAlive);
        }
    };
    let ctx = &mut ctx;
    let mut watch_close_after = None;
    let mut watch_malformed = false;
    match ctx.shared.faults.take(call) {
        None => {}
        Some(Fault::Status(code)) => {
            let reason = reason_for_code(code);
            let mut st = Status::failure(code, reason, format!("injected fault: {reason}"));
            if code == 429 {
                // As the apiserver's priority-and-fairness rejections: the delay in the
                // header, and in the Status as client-go reads it.
                st.details = Some(StatusDetails {
                    retry_after_seconds: Some(RETRY_AFTER_SECONDS),
                    ..StatusDetails::default()
                });
                conn.add_header("Retry-After", &RETRY_AFTER_SECONDS.to_string());
            }
            send_status(conn, &st, ctx.keep)?;
            return Ok(Next::KeepAlive);
        }
        Some(Fault::Raw(code, body)) => {
            conn.respond(code, "text/plain; charset=utf-8", body.as_bytes(), ctx.keep)?;
            return Ok(Next::KeepAlive);
        }
        Some(Fault::Malformed) if call == Call::Watch => watch_malformed = true,
        Some(Fault::Malformed) => {
            conn.respond(
                200,
                JSON,
                br#"{"kind":"CertificateSigningRequest","apiVersion":"#,
                ctx.keep,
            )?;
            return Ok(Next::KeepAlive);
        }
        Some(Fault::Delay(d)) if !ctx.shared.pause(d) => return Ok(Next::Close),
        Some(Fault::Delay(_)) => {}
        Some(Fault::CloseWatchAfter(n)) => watch_close_after = Some(n),
        Some(Fault::Disconnect) => return Ok(Next::Close),
    }
    // As the apiserver: authorization (its filter, before any handler; each handler checks
    // again with the object), then the `Accept` of the route and of the handler.
    let action = Action {
        verb: match call {
            Call::Watch => Verb::Watch,
            Call::List => Verb::List,
            Call::Create => Verb::Create,
            Call::Get => Verb::Get,
            Call::Update | Call::Approval | Call::Status => Verb::Update,
            Call::Patch => Verb::Patch,
            Call::DeleteCollection => Verb::DeleteCollection,
            Call::Delete | Call::Any => Verb::Delete,
        },
        subresource: rest.get(1).copied(),
        name: rest.first().copied(),
        object: None,
    };
    if !ctx.allowed(&action) {
        send_status(conn, &forbidden(&ctx.user, &action), ctx.keep)?;
        return Ok(Next::KeepAlive);
    }
    ctx.checked = Some((
        action.verb,
        action.subresource.map(str::to_owned),
        action.name.map(str::to_owned),
    ));
    let accept = req.header("accept");
    let route = if watch_path || (m == "GET" && rest.is_empty()) {
        Route::Stream
    } else {
        Route::Object
    };
    // Writes answer the object itself: a conversion asked of them cannot be produced.
    let conversions = m == "GET" || m == "DELETE";
    let output = negotiate::route_accepts(accept, route)
        .and_then(|()| negotiate::output(accept, conversions))
        .and_then(|o| check_output(ctx, o, call, rest));
    match output {
        Ok(o) => ctx.output = o,
        Err(st) => {
            send_status(conn, &st, ctx.keep)?;
            return Ok(Next::KeepAlive);
        }
    }
    let ctx = &*ctx;
    match (m, rest) {
        ("GET", [] | [_]) if watch_path => {
            return watch_stream(
                ctx,
                conn,
                req,
                rest.first().copied(),
                watch_close_after,
                watch_malformed,
            );
        }
        ("GET", []) if watch => {
            return watch_stream(ctx, conn, req, None, watch_close_after, watch_malformed);
        }
        ("GET", []) => list(ctx, conn, req)?,
        ("POST", []) => create(ctx, conn, req)?,
        ("GET", [name]) => get(ctx, conn, name, None)?,
        ("GET", [name, sub]) => get(ctx, conn, name, Some(sub))?,
        ("PUT", [name]) => update(ctx, conn, req, name, UpdatePath::Main)?,
        ("PUT", [name, "approval"]) => update(ctx, conn, req, name, UpdatePath::Approval)?,
        ("PUT", [name, _]) => update(ctx, conn, req, name, UpdatePath::Status)?,
        ("PATCH", [name]) => super::patch::patch(ctx, conn, req, name, UpdatePath::Main)?,
        ("PATCH", [name, "approval"]) => {
            super::patch::patch(ctx, conn, req, name, UpdatePath::Approval)?;
        }
        ("PATCH", [name, _]) => super::patch::patch(ctx, conn, req, name, UpdatePath::Status)?,
        ("DELETE", []) => super::collection::delete_collection(ctx, conn, req)?,
        (_, [name]) => delete(ctx, conn, req, name)?,
        _ => send_status(conn, &path_not_found(), ctx.keep)?,
    }
    Ok(Next::KeepAlive)
}

/// Whether the negotiated shape fits what the call answers, as the apiserver's
/// `asPartialObjectMetadata[List]` checks it (406 otherwise).
fn check_output(
    ctx: &Ctx<'_>,
    output: Output,
    call: Call,
    rest: &[&str],
) -> Result<Output, Box<Status>> {
    let list = call == Call::List;
    let single = matches!(call, Call::Get) || (call == Call::Watch && !rest.is_empty());
    let version = ctx.version.as_str().rsplit('/').next().unwrap_or("v1");
    match output {
        Output::Partial(_) if list => Err(negotiate::not_acceptable(format!(
            "you requested PartialObjectMetadata, but the requested object is a list (*{version}.{KIND_CSR}List)"
        ))),
        Output::PartialList(_) if single => Err(negotiate::not_acceptable(format!(
            "you requested PartialObjectMetadataList, but the requested object is not a list (*{version}.{KIND_CSR})"
        ))),
        o => Ok(o),
    }
}

/// `/version`: the release whose API behaviour the server follows (kube-apiserver v1.37.2,
/// emulating 1.37 and compatible down to 1.36 as its defaults are), built by this crate.
fn version_doc() -> Json {
    json!({
        "major": "1",
        "minor": "37",
        "emulationMajor": "1",
        "emulationMinor": "37",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "36",
        "gitVersion": "v1.37.2",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-10-27T12:01:04Z",
        "goVersion": "certrotate",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

fn group_doc(shared: &Shared) -> Json {
    let mut versions = vec![json!({"groupVersion": API_VERSION_V1, "version": "v1"})];
    if shared.settings.v1beta1 {
        versions.push(json!({"groupVersion": API_VERSION_V1BETA1, "version": "v1beta1"}));
    }
    json!({
        "name": GROUP,
        "versions": versions,
        "preferredVersion": {"groupVersion": API_VERSION_V1, "version": "v1"},
    })
}

fn resources_doc(version: &str) -> Json {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{version}"),
        "resources": [
            {
                "name": RESOURCE,
                "singularName": "certificatesigningrequest",
                "namespaced": false,
                "kind": KIND_CSR,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": ["csr"],
            },
            {"name": format!("{RESOURCE}/approval"), "singularName": "", "namespaced": false, "kind": KIND_CSR, "verbs": ["get", "patch", "update"]},
            {"name": format!("{RESOURCE}/status"), "singularName": "", "namespaced": false, "kind": KIND_CSR, "verbs": ["get", "patch", "update"]},
        ],
    })
}

/// `PartialObjectMetadata` (`meta.k8s.io/{version}`) of a CSR: its metadata only.
fn partial(o: &CertificateSigningRequest, version: &str) -> Json {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": o.metadata,
    })
}

/// `TableOptions.includeObject` as the apiserver checks it when it converts to a `Table`:
/// `Metadata` (the default), `Object`, `None` or empty, else 400.
fn check_include_object(ctx: &Ctx<'_>) -> Result<(), Box<Status>> {
    match ctx.include_object.as_deref() {
        None | Some("" | "Metadata" | "Object" | "None") => Ok(()),
        Some(v) => Err(bad_request(format!(
            "Unable to convert to Table as requested: includeObject: Invalid value: {}: must be 'Metadata', 'Object', 'None', or empty",
            go_quote(v)
        ))),
    }
}

/// A `meta.k8s.io/{version}` `Table` of CSRs with kubectl's columns (NAME, AGE, SIGNERNAME,
/// REQUESTOR, REQUESTEDDURATION, CONDITION); each row's `object` is its
/// `PartialObjectMetadata`, the whole object or `null` as `includeObject` asks.
fn table(
    ctx: &Ctx<'_>,
    items: &[CertificateSigningRequest],
    rv: Option<u64>,
    version: &str,
) -> Json {
    let now = ctx.shared.clock.now();
    let rows: Vec<Json> = items
        .iter()
        .map(|o| {
            let age = o
                .metadata
                .creation_timestamp
                .as_deref()
                .and_then(parse_time)
                .map_or_else(|| "<unknown>".to_owned(), |t| human_duration(since(now, t)));
            let requested = o.spec.expiration_seconds.map_or_else(
                || "<none>".to_owned(),
                |s| human_duration(crate::csr::api::expiration_seconds_to_duration(s)),
            );
            let mut condition = if has_condition(o, "Denied") {
                "Denied".to_owned()
            } else if has_condition(o, CONDITION_APPROVED) {
                "Approved".to_owned()
            } else {
                "Pending".to_owned()
            };
            if has_condition(o, "Failed") {
                condition.push_str(",Failed");
            }
            if o.status
                .as_ref()
                .is_some_and(|s| s.certificate.as_ref().is_some_and(|c| !c.is_empty()))
            {
                condition.push_str(",Issued");
            }
            json!({
                "cells": [
                    o.metadata.name.clone().unwrap_or_default(),
                    age,
                    o.spec.signer_name.clone().unwrap_or_else(|| "<none>".into()),
                    o.spec.username.clone().unwrap_or_default(),
                    requested,
                    condition,
                ],
                "object": match ctx.include_object.as_deref() {
                    Some("None") => Json::Null,
                    Some("Object") => serde_json::to_value(ctx.render(o)).unwrap_or(Json::Null),
                    _ => partial(o, version),
                },
            })
        })
        .collect();
    let col = |name: &str, desc: &str| json!({"name": name, "type": "string", "format": "", "description": desc, "priority": 0});
    let mut name_col = col("Name", "Name must be unique within a namespace.");
    name_col["format"] = json!("name");
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": {"resourceVersion": rv.map(|r| r.to_string()).unwrap_or_default()},
        "columnDefinitions": [
            name_col,
            col("Age", "CreationTimestamp is a timestamp representing the server time when this object was created."),
            col("SignerName", "signerName indicates the requested signer."),
            col("Requestor", "username contains the name of the user that created the CertificateSigningRequest."),
            col("RequestedDuration", "expirationSeconds is the requested duration of validity of the issued certificate."),
            col("Condition", "conditions applied to the request."),
        ],
        "rows": rows,
    })
}

/// Parses an RFC 3339 time (`2026-01-02T03:04:05Z`, as this server writes them; fractions and
/// offsets as Go's `time.RFC3339` reads them).
fn parse_time(s: &str) -> Option<std::time::SystemTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(std::time::SystemTime::from)
}

/// apimachinery `duration.HumanDuration`.
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        return match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = s / 3600;
    if h < 8 {
        return match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        return match h % 24 {
            0 => format!("{}d", h / 24),
            r => format!("{}d{r}h", h / 24),
        };
    }
    if h < 24 * 365 * 2 {
        return format!("{}d", h / 24);
    }
    if h < 24 * 365 * 8 {
        return match (h / 24) % 365 {
            0 => format!("{}y", h / 24 / 365),
            r => format!("{}y{r}d", h / 24 / 365),
        };
    }
    format!("{}y", h / 24 / 365)
}

/// Field selectors on CSRs: `metadata.name` and `spec.signerName`, with `=`, `==` or `!=`,
/// comma-separated (all must hold).
fn parse_field_selector(s: &str) -> Result<Vec<(String, bool, String)>, String> {
    let mut out = Vec::new();
    for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
            (f, false, v)
        } else if let Some((f, v)) = term.split_once("==") {
            (f, true, v)
        } else if let Some((f, v)) = term.split_once('=') {
            (f, true, v)
        } else {
            return Err(format!(
                "invalid selector: '{s}'; can't understand '{term}'"
            ));
        };
        let field = field.trim();
        if field != "metadata.name" && field != "spec.signerName" {
            return Err(format!("field label not supported: {field}"));
        }
        out.push((field.to_owned(), eq, value.trim().to_owned()));
    }
    Ok(out)
}

fn field_matches(o: &CertificateSigningRequest, sel: &[(String, bool, String)]) -> bool {
    sel.iter().all(|(f, eq, v)| {
        let have = match f.as_str() {
            "metadata.name" => o.metadata.name.as_deref().unwrap_or(""),
            _ => o.spec.signer_name.as_deref().unwrap_or(""),
        };
        (have == v) == *eq
    })
}

fn labels_match(o: &CertificateSigningRequest, sel: &[LabelReq]) -> bool {
    selector::labels_match(o.metadata.labels.as_ref(), sel)
}

/// The selectors of a list or watch request.
pub(super) struct Selectors {
    fields: Vec<(String, bool, String)>,
    labels: Vec<LabelReq>,
}

impl Selectors {
    /// Whether neither selector restricts anything.
    fn is_everything(&self) -> bool {
        self.fields.is_empty() && self.labels.is_empty()
    }

    pub(super) fn parse(req: &Request) -> Result<Selectors, Box<Status>> {
        Ok(Selectors {
            fields: parse_field_selector(req.param("fieldSelector").unwrap_or(""))
                .map_err(bad_request)?,
            labels: parse_label_selector(req.param("labelSelector").unwrap_or(""))
                .map_err(bad_request)?,
        })
    }

    fn matches(&self, o: &CertificateSigningRequest) -> bool {
        field_matches(o, &self.fields) && labels_match(o, &self.labels)
    }

    /// The selectors of a request for the object `name` (`ListOptions` of a named watch): no
    /// field selector becomes `metadata.name={name}`; one must require exactly that name.
    fn for_name(mut self, name: Option<&str>) -> Result<Selectors, Box<Status>> {
        let Some(name) = name else {
            return Ok(self);
        };
        if self.fields.is_empty() {
            self.fields
                .push(("metadata.name".to_owned(), true, name.to_owned()));
            return Ok(self);
        }
        let pinned = self
            .fields
            .iter()
            .find(|(f, eq, _)| *eq && f == "metadata.name")
            .map(|(_, _, v)| v.as_str());
        if pinned != Some(name) {
            return Err(bad_request(
                "fieldSelector metadata.name doesn't match requested name".to_owned(),
            ));
        }
        Ok(self)
    }

    /// The stored objects from `start` on (by name) that match. A `metadata.name=` term names
    /// at most one object, which is looked up instead of scanning every CSR, as kube-apiserver
    /// answers such a selector from one key: a client waiting for its CSR lists by name, and
    /// that list must not slow down as CSRs pile up.
    pub(super) fn select(
        &self,
        objects: &std::collections::BTreeMap<String, Stored>,
        start: &str,
    ) -> Vec<Arc<CertificateSigningRequest>> {
        let pinned = self
            .fields
            .iter()
            .find(|(f, eq, _)| *eq && f == "metadata.name")
            .map(|(_, _, name)| name.as_str());
        let pick = |s: &Stored| self.matches(&s.object).then(|| s.object.clone());
        match pinned {
            Some(name) if name < start => Vec::new(),
            Some(name) => objects.get(name).and_then(pick).into_iter().collect(),
            None => objects
                .range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
                .filter_map(|(_, s)| pick(s))
                .collect(),
        }
    }
}

/// A boolean query parameter as apimachinery's query-parameter conversion reads it
/// (`Convert_Slice_string_To_bool`): `false` and `0`, in any case, are false; every other value,
/// the empty one included, is true.
pub(super) fn go_bool(v: &str) -> bool {
    !matches!(v.to_ascii_lowercase().as_str(), "false" | "0")
}

/// The selectors of a list or watch, after the checks kube-apiserver makes on its
/// `ListOptions` before it reads anything, in its order: `limit` and `timeoutSeconds` must be
/// integers (400 with Go's `strconv.ParseInt` text, as the query-parameter decoding answers),
/// then the selectors must parse (400), then apimachinery's
/// `ValidateListOptions` (422 `Invalid` on `ListOptions.meta.k8s.io`, every rule broken a cause,
/// in its order). For a list: `resourceVersionMatch` needs a `resourceVersion`, is not allowed
/// with `continue`, is `Exact` or `NotOlderThan`, and `Exact` is not allowed with version "0";
/// `sendInitialEvents` is not allowed. For a watch: `sendInitialEvents` needs
/// `resourceVersionMatch=NotOlderThan`, and `resourceVersionMatch` needs `sendInitialEvents`,
/// must be `NotOlderThan` and is not allowed with `continue`. A parameter given with an empty
/// value counts as given, as in Go.
pub(super) fn list_options(req: &Request, watch: bool) -> Result<Selectors, Box<Status>> {
    list_integers(req)?;
    let sel = Selectors::parse(req)?;
    list_rules(req, watch)?;
    Ok(sel)
}

/// `limit` and `timeoutSeconds` as the query-parameter decoding reads them.
fn list_integers(req: &Request) -> Result<(), Box<Status>> {
    for key in ["timeoutSeconds", "limit"] {
        if let Some(v) = req.param(key)
            && let Err(e) = v.parse::<i64>()
        {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    "value out of range"
                }
                _ => "invalid syntax",
            };
            return Err(bad_request(format!(
                "strconv.ParseInt: parsing {}: {why}",
                go_quote(v)
            )));
        }
    }
    Ok(())
}

/// `ValidateListOptions`.
fn list_rules(req: &Request, watch: bool) -> Result<(), Box<Status>> {
    let forbidden = |detail: &str| validation::FieldError {
        kind: validation::Kind::Forbidden,
        field: "resourceVersionMatch".into(),
        value: validation::Value::Omit,
        detail: detail.into(),
    };
    let not_supported = |m: &str, supported: &str| validation::FieldError {
        kind: validation::Kind::NotSupported,
        field: "resourceVersionMatch".into(),
        value: validation::Value::Str(m.to_owned()),
        detail: format!("supported values: {supported}"),
    };
    let rv = req.param("resourceVersion").unwrap_or("");
    let continued = !req.param("continue").unwrap_or("").is_empty();
    let send_initial = req.param("sendInitialEvents").is_some();
    let matching = req.param("resourceVersionMatch").unwrap_or("");
    let mut errs = Vec::new();
    if watch {
        if send_initial && matching != "NotOlderThan" {
            errs.push(forbidden(
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !matching.is_empty() {
            if !send_initial {
                errs.push(forbidden(
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if matching != "NotOlderThan" {
                errs.push(not_supported(matching, "\"NotOlderThan\""));
            }
            if continued {
                errs.push(forbidden(
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
    } else {
        if !matching.is_empty() {
            if rv.is_empty() {
                errs.push(forbidden(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if continued {
                errs.push(forbidden(
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if matching != "Exact" && matching != "NotOlderThan" {
                errs.push(not_supported(matching, "\"Exact\", \"NotOlderThan\", \"\""));
            }
            if matching == "Exact" && rv == "0" {
                errs.push(forbidden(
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if send_initial {
            errs.push(validation::FieldError {
                kind: validation::Kind::Forbidden,
                field: "sendInitialEvents".into(),
                value: validation::Value::Omit,
                detail: "sendInitialEvents is forbidden for list".into(),
            });
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Box::new(validation::invalid_status_of(
            "meta.k8s.io",
            "ListOptions",
            "",
            &errs,
        )))
    }
}

/// `resourceVersion`: absent, empty or "0" mean "any"; else a number.
fn parse_rv(req: &Request) -> Result<Option<u64>, Box<Status>> {
    match req.param("resourceVersion") {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| bad_request(format!("invalid resource version {v:?}"))),
    }
}

/// Authorizes `verb` on the CSR `name` as the apiserver would (first without the object, which
/// gives 403 whether or not it exists), looks it up (404), and authorizes again with the object.
pub(super) fn authorized_object(
    ctx: &Ctx<'_>,
    verb: Verb,
    subresource: Option<&str>,
    name: &str,
) -> Result<Arc<CertificateSigningRequest>, Box<Status>> {
    authorize(ctx, verb, subresource, Some(name))?;
    let obj = ctx
        .shared
        .get(name)
        .ok_or_else(|| Box::new(not_found(name)))?;
    let action = Action {
        verb,
        subresource,
        name: Some(name),
        object: Some(&obj),
    };
    if !ctx.allowed(&action) {
        return Err(Box::new(forbidden(&ctx.user, &action)));
    }
    Ok(obj)
}

/// The authorization filter's check, before the object is known: 403 with RBAC's message
/// when the caller may not `verb` (on `subresource` of `name`, when given).
pub(super) fn authorize(
    ctx: &Ctx<'_>,
    verb: Verb,
    subresource: Option<&str>,
    name: Option<&str>,
) -> Result<(), Box<Status>> {
    let action = Action {
        verb,
        subresource,
        name,
        object: None,
    };
    if ctx.allowed(&action) {
        Ok(())
    } else {
        Err(Box::new(forbidden(&ctx.user, &action)))
    }
}

fn get(ctx: &Ctx<'_>, conn: &mut Conn, name: &str, sub: Option<&str>) -> io::Result<()> {
    let obj = match authorized_object(ctx, Verb::Get, sub, name) {
        Ok(o) => o,
        Err(st) => return send_status(conn, &st, ctx.keep),
    };
    if matches!(ctx.output, Output::Table(_))
        && let Err(st) = check_include_object(ctx)
    {
        return send_status(conn, &st, ctx.keep);
    }
    let rv = obj
        .metadata
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok());
    send_json(conn, 200, &ctx.render_value(&obj, rv), ctx.keep)
}

fn list(ctx: &Ctx<'_>, conn: &mut Conn, req: &Request) -> io::Result<()> {
    if let Err(st) = authorize(ctx, Verb::List, None, None) {
        return send_status(conn, &st, ctx.keep);
    }
    let sel = match list_options(req, false) {
        Ok(s) => s,
        Err(st) => return send_status(conn, &st, ctx.keep),
    };
    let asked = match parse_rv(req) {
        Ok(r) => r,
        Err(st) => return send_status(conn, &st, ctx.keep),
    };
    let limit: usize = req.param("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    let start = match req.param("continue").filter(|c| !c.is_empty()) {
        None => String::new(),
        Some(token) => match decode_continue(token) {
            Some(s) => s,
            None => {
                let mut st = expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into());
                st.code = Some(400);
                st.reason = Some("BadRequest".into());
                st.message = Some(format!("continue key is not valid: {token:?}"));
                return send_status(conn, &st, ctx.keep);
            }
        },
    };
    let (current, candidates) = {
        let st = ctx.shared.state.lock();
        if let Some(n) = asked {
            if n > st.rv {
                let s = too_large(n, st.rv);
                drop(st);
                return send_status(conn, &s, ctx.keep);
            }
            if req.param("resourceVersionMatch") == Some("Exact") && n != st.rv {
                drop(st);
                return send_status(
                    conn,
                    &expired(format!("too old resource version: {n}")),
                    ctx.keep,
                );
            }
        }
        (st.rv, sel.select(&st.objects, &start))
    };
    let mut items: Vec<Arc<CertificateSigningRequest>> = candidates
        .into_iter()
        .filter(|o| {
            ctx.allowed(&Action {
                verb: Verb::List,
                subresource: None,
                name: o.metadata.name.as_deref(),
                object: Some(o),
            })
        })
        .collect();
    let mut cont = None;
    // kube-apiserver answers a list at resourceVersion "0" from its watch cache, whole: the
    // limit is ignored there.
    let from_cache = req.param("resourceVersion") == Some("0");
    let mut remaining = None;
    if limit > 0 && items.len() > limit && !from_cache {
        let next = items[limit].metadata.name.clone().unwrap_or_default();
        cont = Some(URL_SAFE_NO_PAD.encode(json!({"rv": current, "start": next}).to_string()));
        // As the etcd store: how many items are left, given only when no selector filters
        // them (etcd counts keys, not matches).
        if sel.is_everything() {
            remaining = Some(items.len() - limit);
        }
        items.truncate(limit);
    }
    if let Output::Table(v) = ctx.output {
        let objs: Vec<CertificateSigningRequest> = items.iter().map(|o| (**o).clone()).collect();
        if let Err(st) = check_include_object(ctx) {
            return send_status(conn, &st, ctx.keep);
        }
        let mut t = table(ctx, &objs, Some(current), v);
        if let Some(c) = cont {
            t["metadata"]["continue"] = json!(c);
        }
        if let Some(n) = remaining {
            t["metadata"]["remainingItemCount"] = json!(n);
        }
        return send_json(conn, 200, &t, ctx.keep);
    }
    let mut meta = json!({"resourceVersion": current.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    if let Some(n) = remaining {
        meta["remainingItemCount"] = json!(n);
    }
    if let Output::PartialList(v) = ctx.output {
        let l = json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": format!("meta.k8s.io/{v}"),
            "metadata": meta,
            "items": items.iter().map(|o| partial(o, v)).collect::<Vec<_>>(),
        });
        return send_json(conn, 200, &l, ctx.keep);
    }
    // The items of a list carry no apiVersion and kind: the list's own say what they are.
    let list = json!({
        "kind": format!("{KIND_CSR}List"),
        "apiVersion": ctx.version.as_str(),
        "metadata": meta,
        "items": items
            .iter()
            .map(|o| {
                let mut item = ctx.render(o);
                item.api_version = None;
                item.kind = None;
                item
            })
            .collect::<Vec<_>>(),
    });
    send_json(conn, 200, &list, ctx.keep)
}

fn decode_continue(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let v: Json = serde_json::from_slice(&bytes).ok()?;
    v.get("start")?.as_str().map(str::to_owned)
}

/// The format of a write's body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Protobuf,
}

/// The body format from `Content-Type`: JSON (also when absent), or Kubernetes protobuf as typed
/// client-go clients send it; any other is 415.
fn body_format(req: &Request) -> Result<Format, Box<Status>> {
    let content_type = req
        .header("content-type")
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match content_type.as_str() {
        "" | "application/json" => Ok(Format::Json),
        super::protobuf::CONTENT_TYPE => Ok(Format::Protobuf),
        // `NewUnsupportedMediaTypeError` (`negotiation/errors.go`), naming the types accepted
        // here.
        _ => Err(Box::new(Status::failure(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf",
        ))),
    }
}

/// apimachinery's `summarizeData(body, 30)` for decode errors.
fn summarize(body: &[u8]) -> String {
    const MAX: usize = 30;
    let head = &body[..body.len().min(MAX)];
    let more = if body.len() > MAX { " ..." } else { "" };
    match body.first() {
        None => "<empty>".to_owned(),
        Some(b'{') => format!("{}{more}", String::from_utf8_lossy(head)),
        Some(_) => {
            let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
            format!("{hex}{more}")
        }
    }
}

/// A decoded create or update body.
struct Body {
    obj: CertificateSigningRequest,
    /// Whether `spec.request` was given: Go's nil and empty slices print differently.
    request_given: bool,
}

/// Decodes a write's body as the apiserver's create and update handlers do: JSON through
/// [`decode`] (nulls as Go zero values, Go's base64, strict errors handled by `directive`:
/// 400 under `Strict`, `Warning` headers on `conn`'s answer under `Warn`), or protobuf (never
/// strict, as upstream). A body that does not decode is 400 `BadRequest` with the apiserver's
/// wording (`… cannot be handled as a CertificateSigningRequest: …`).
fn decode_body(
    ctx: &Ctx<'_>,
    conn: &mut Conn,
    req: &Request,
    format: Format,
    directive: FieldValidation,
) -> Result<Body, Box<Status>> {
    let obj = match format {
        Format::Protobuf => {
            let obj = super::protobuf::decode_csr(&req.body).map_err(|e| {
                bad_request(format!(
                    "the object provided is unrecognized (must be of type {KIND_CSR}): {e}"
                ))
            })?;
            let request_given = !obj.spec.request.is_empty();
            Body { obj, request_given }
        }
        Format::Json => {
            let d = decode::decode_csr_json(&req.body).map_err(|e| match e {
                decode::DecodeError::Syntax(e) => bad_request(format!(
                    "the object provided is unrecognized (must be of type {KIND_CSR}): couldn't get version/kind; json parse error: {e} ({})",
                    summarize(&req.body)
                )),
                decode::DecodeError::Value(e) => handled_as(ctx, None, &e),
            })?;
            let handled = |e: &str| handled_as(ctx, Some(&d.value), e);
            let obj = CertificateSigningRequest::deserialize(&d.value)
                .map_err(|e| handled(&e.to_string()))?;
            if !d.strict.is_empty() {
                match directive {
                    FieldValidation::Strict => {
                        return Err(handled(&format!(
                            "strict decoding error: {}",
                            d.strict.join(", ")
                        )));
                    }
                    FieldValidation::Warn => {
                        for h in decode::warning_headers(&d.strict) {
                            conn.add_header("Warning", &h);
                        }
                    }
                    FieldValidation::Ignore => {}
                }
            }
            Body {
                obj,
                request_given: d.request_present,
            }
        }
    };
    if let Some(k) = obj.obj.kind.as_deref().filter(|k| *k != KIND_CSR) {
        let version = ctx.version.as_str();
        let same_group = obj.obj.api_version.as_deref().is_none_or(|v| v == version);
        return Err(bad_request(if same_group {
            // The create handler's `transformDecodeError` around the scheme's
            // `notRegisteredErr` (the scheme's name is where it was made, as kube-apiserver
            // 1.37.2 prints it).
            let short = version.rsplit('/').next().unwrap_or(version);
            format!(
                "{k} in version {} cannot be handled as a {KIND_CSR}: no kind {} is registered for version {} in scheme \"pkg/runtime/scheme.go:111\"",
                go_quote(short),
                go_quote(k),
                go_quote(version)
            )
        } else {
            format!(
                "the object provided is unrecognized (must be of type {KIND_CSR}): kind {}",
                go_quote(k)
            )
        }));
    }
    if let Some(v) = obj
        .obj
        .api_version
        .as_deref()
        .filter(|v| *v != ctx.version.as_str())
    {
        return Err(bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({})",
            ctx.version.as_str()
        )));
    }
    Ok(obj)
}

/// `transformDecodeError` with a known kind: `{Kind} in version "{v}" cannot be handled as a
/// CertificateSigningRequest: {error}`, the kind and version from the body when it has them,
/// else from the path.
fn handled_as(ctx: &Ctx<'_>, value: Option<&Json>, error: &str) -> Box<Status> {
    let field = |k: &str| {
        value
            .and_then(|v| v.get(k))
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
    };
    let kind = field("kind").unwrap_or(KIND_CSR);
    let api_version = field("apiVersion").unwrap_or(ctx.version.as_str());
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    bad_request(format!(
        "{kind} in version {version:?} cannot be handled as a {KIND_CSR}: {error}"
    ))
}

/// apimachinery's `SimpleNameGenerator`: the prefix (cut to 58 bytes) and five random characters.
fn generate_name(prefix: &str) -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut cut = prefix.len().min(58);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{}{suffix}", &prefix[..cut])
}

fn create(ctx: &Ctx<'_>, conn: &mut Conn, req: &Request) -> io::Result<()> {
    if let Err(st) = authorize(ctx, Verb::Create, None, None) {
        return send_status(conn, &st, ctx.keep);
    }
    let decoded = body_format(req).and_then(|format| {
        let (dry_run, directive) =
            WriteOptions::from_query(req).validate_write(req, "CreateOptions")?;
        Ok((dry_run, decode_body(ctx, conn, req, format, directive)?))
    });
    let (dry_run, Body { obj, request_given }) = match decoded {
        Ok(d) => d,
        Err(st) => return send_status(conn, &st, ctx.keep),
    };
    match create_object(ctx, obj, request_given, dry_run) {
        Ok(stored) => send_json(conn, 201, &ctx.render(&stored), ctx.keep),
        Err(st) => send_status(conn, &st, ctx.keep),
    }
}

/// Stores a new CSR decoded from a create (or a server-side apply of an absent one): the
/// server-set fields, validation, the authorizer's check of the object, name collision; with
/// `dry_run` all of that and nothing stored. `request_given` tells a body without
/// `spec.request` from one with an empty one (validation prints `null` or `""`). The caller
/// has authorized `create` already.
pub(super) fn create_object(
    ctx: &Ctx<'_>,
    mut obj: CertificateSigningRequest,
    request_given: bool,
    dry_run: bool,
) -> Result<Arc<CertificateSigningRequest>, Box<Status>> {
    let mut action = Action {
        verb: Verb::Create,
        subresource: None,
        name: None,
        object: None,
    };
    let shared = ctx.shared;
    let prefix = obj
        .metadata
        .generate_name
        .clone()
        .filter(|g| !g.is_empty() && obj.metadata.name.as_deref().unwrap_or("").is_empty());
    if let Some(p) = &prefix {
        obj.metadata.name = Some(generate_name(p));
    }
    let now = shared.clock.now();
    obj.api_version = None;
    obj.kind = None;
    obj.metadata.uid = Some(new_uid());
    obj.metadata.creation_timestamp = Some(fmt_time(now));
    obj.metadata.resource_version = None;
    obj.metadata.deletion_timestamp = None;
    obj.spec.username = Some(ctx.user.name.clone());
    obj.spec.uid = ctx.user.uid.clone();
    obj.spec.groups = ctx.user.groups.clone();
    obj.spec.extra.clear();
    obj.status = None;
    let v1beta1 = ctx.version == ApiVersion::V1beta1;
    if v1beta1 {
        if obj.spec.usages.is_empty() {
            obj.spec.usages = vec!["digital signature".into(), "key encipherment".into()];
        }
        if obj.spec.signer_name.as_deref().unwrap_or("").is_empty() {
            let inferred = crate::pki::parse_csr_pem(&obj.spec.request)
                .map(|p| signer::infer_v1beta1_signer(&p, &obj.spec.usages))
                .unwrap_or(crate::csr::api::LEGACY_UNKNOWN_SIGNER);
            obj.spec.signer_name = Some(inferred.to_owned());
        }
    }
    let (errs, parsed) = validation::validate_create(&obj, v1beta1, request_given);
    let name = obj.metadata.name.clone().unwrap_or_default();
    let parsed = match parsed {
        Some(p) if errs.is_empty() => Arc::new(p),
        _ => return Err(Box::new(validation::invalid_status(&name, &errs))),
    };
    action.name = Some(&name);
    action.object = Some(&obj);
    if !ctx.allowed(&action) {
        return Err(Box::new(forbidden(&ctx.user, &action)));
    }
    let stored = {
        let mut st = shared.state.lock();
        if st.objects.contains_key(&name) {
            match &prefix {
                None => {
                    drop(st);
                    return Err(Box::new(already_exists(&name)));
                }
                Some(p) => {
                    // A generated name collided: draw again (the apiserver returns a retryable
                    // AlreadyExists; drawing again under the lock is the same, without the trip).
                    let mut fresh = generate_name(p);
                    while st.objects.contains_key(&fresh) {
                        fresh = generate_name(p);
                    }
                    obj.metadata.name = Some(fresh);
                }
            }
        }
        if dry_run {
            Arc::new(obj)
        } else {
            st.commit(EventType::Added, obj, parsed)
        }
    };
    if !dry_run {
        shared.notify_changed();
        let _ = shared.work.send(Work::Created(
            stored.metadata.name.clone().unwrap_or_default(),
        ));
    }
    Ok(stored)
}

fn update(
    ctx: &Ctx<'_>,
    conn: &mut Conn,
    req: &Request,
    name: &str,
    path: UpdatePath,
) -> io::Result<()> {
    let sub = match path {
        UpdatePath::Main => None,
        UpdatePath::Approval => Some("approval"),
        UpdatePath::Status => Some("status"),
    };
    if let Err(st) = authorized_object(ctx, Verb::Update, sub, name) {
        return send_status(conn, &st, ctx.keep);
    }
    let decoded = body_format(req).and_then(|format| {
        let (dry_run, directive) =
            WriteOptions::from_query(req).validate_write(req, "UpdateOptions")?;
        Ok((dry_run, decode_body(ctx, conn, req, format, directive)?.obj))
    });
    let (dry_run, body) = match decoded {
        Ok(d) => d,
        Err(st) => return send_status(conn, &st, ctx.keep),
    };
    if let Some(n) = body.metadata.name.as_deref().filter(|n| *n != name) {
        let st = bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        ));
        return send_status(conn, &st, ctx.keep);
    }
    match replace_object(ctx, name, path, dry_run, |_| Ok(body)) {
        None => send_status(conn, &not_found(name), ctx.keep),
        Some(Err(st)) => send_status(conn, &st, ctx.keep),
        Some(Ok(obj)) => send_json(conn, 200, &ctx.render(&obj), ctx.keep),
    }
}

/// The write of an update, shared by PUT and PATCH: under the state lock, `new_object` gives the
/// object sent (a PUT's body, or a patch applied to the live object it is given); then the
/// `resourceVersion` check (409), the copy of what the path may change (labels and
/// annotations; conditions; and the certificate on `/status`), and update validation. With
/// `dry_run` nothing is stored. `None` when there is no such CSR.
pub(super) fn replace_object(
    ctx: &Ctx<'_>,
    name: &str,
    path: UpdatePath,
    dry_run: bool,
    new_object: impl FnOnce(
        &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest, Box<Status>>,
) -> Option<Result<Arc<CertificateSigningRequest>, Box<Status>>> {
    let now = ctx.shared.clock.now();
    let v1beta1 = ctx.version == ApiVersion::V1beta1;
    let outcome = modify_unless_unchanged(ctx.shared, name, dry_run, |o| {
        let old = o.clone();
        let body = new_object(&old)?;
        if let Some(rv) = body
            .metadata
            .resource_version
            .as_deref()
            .filter(|r| !r.is_empty())
            && Some(rv) != old.metadata.resource_version.as_deref()
        {
            return Err(Box::new(conflict(name)));
        }
        match path {
            UpdatePath::Main => {
                o.metadata.labels = body.metadata.labels.clone();
                o.metadata.annotations = body.metadata.annotations.clone();
            }
            UpdatePath::Approval | UpdatePath::Status => {
                let new_status = body.status.clone().unwrap_or_default();
                let status = o.status.get_or_insert_default();
                status.conditions = new_status.conditions;
                if path == UpdatePath::Status {
                    status.certificate = new_status.certificate;
                }
                let old_conds = old
                    .status
                    .as_ref()
                    .map(|s| s.conditions.clone())
                    .unwrap_or_default();
                for c in &mut status.conditions {
                    if v1beta1 && c.status.is_empty() {
                        c.status = "True".into();
                    }
                    if c.last_update_time.is_none() {
                        c.last_update_time = Some(fmt_time(now));
                    }
                    if c.last_transition_time.is_none() {
                        c.last_transition_time = old_conds
                            .iter()
                            .find(|p| p.type_ == c.type_ && p.status == c.status)
                            .and_then(|p| p.last_transition_time.clone())
                            .or_else(|| Some(fmt_time(now)));
                    }
                }
            }
        }
        let errs = validation::validate_update(o, &old, path);
        if !errs.is_empty() {
            return Err(Box::new(validation::invalid_status(name, &errs)));
        }
        Ok(())
    });
    if let Some(Ok(obj)) = &outcome
        && !dry_run
        && path == UpdatePath::Approval
        && has_condition(obj, CONDITION_APPROVED)
    {
        let _ = ctx.shared.work.send(Work::Approved(name.to_owned()));
    }
    outcome
}

/// [`Shared::modify_or_dry_run`], except that a change that leaves the object as it was writes
/// nothing: the stored object comes back with its resourceVersion and no event is sent, as
/// etcd3's `GuaranteedUpdate` skips a write whose bytes equal the stored ones.
fn modify_unless_unchanged(
    shared: &Shared,
    name: &str,
    dry_run: bool,
    f: impl FnOnce(&mut CertificateSigningRequest) -> Result<(), Box<Status>>,
) -> Option<Result<Arc<CertificateSigningRequest>, Box<Status>>> {
    let mut st = shared.state.lock();
    let stored = st.objects.get(name)?;
    let (live, parsed) = (stored.object.clone(), stored.parsed.clone());
    let mut obj = (*live).clone();
    if let Err(e) = f(&mut obj) {
        return Some(Err(e));
    }
    if obj == *live {
        return Some(Ok(live));
    }
    if dry_run {
        return Some(Ok(Arc::new(obj)));
    }
    let out = st.commit(EventType::Modified, obj, parsed);
    drop(st);
    shared.notify_changed();
    Some(Ok(out))
}

/// Removes a CSR and publishes `DELETED` with its last state.
pub(crate) fn delete_object(shared: &Shared, name: &str) -> Option<Arc<CertificateSigningRequest>> {
    match delete_checked(shared, name, &WriteOptions::default(), false) {
        Some(Ok(gone)) => Some(gone),
        _ => None,
    }
}

/// Removes a CSR if `options`' preconditions hold (checked under the state lock, so nothing
/// changes between check and removal); with `dry_run` checks and removes nothing. `None` when
/// there is no such CSR.
pub(super) fn delete_checked(
    shared: &Shared,
    name: &str,
    options: &WriteOptions,
    dry_run: bool,
) -> Option<Result<Arc<CertificateSigningRequest>, Box<Status>>> {
    let gone = {
        let mut st = shared.state.lock();
        let stored = st.objects.get(name)?;
        let meta = &stored.object.metadata;
        if let Some(p) = &options.preconditions {
            let uid = meta.uid.as_deref().unwrap_or_default();
            if let Some(want) = p.uid.as_deref().filter(|w| *w != uid) {
                return Some(Err(Box::new(precondition_failed(
                    name,
                    format!(
                        "the UID in the precondition ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
                    ),
                ))));
            }
            let rv = meta.resource_version.as_deref().unwrap_or_default();
            if let Some(want) = p.resource_version.as_deref().filter(|w| *w != rv) {
                return Some(Err(Box::new(precondition_failed(
                    name,
                    format!(
                        "the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({rv}). The object might have been modified"
                    ),
                ))));
            }
        }
        if dry_run {
            return Some(Ok(stored.object.clone()));
        }
        let (obj, parsed) = ((*stored.object).clone(), stored.parsed.clone());
        st.commit(EventType::Deleted, obj, parsed)
    };
    shared.notify_changed();
    Some(Ok(gone))
}

/// The `DeleteOptions` of a delete: from the body when there is one (JSON as kubectl sends
/// them, or protobuf as typed client-go clients with the protobuf content type do), else from
/// the query, as the apiserver's delete handler.
pub(super) fn delete_options(req: &Request) -> Result<WriteOptions, Box<Status>> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(WriteOptions::from_query(req));
    }
    let unrecognized = |e: String| {
        bad_request(format!(
            "the object provided is unrecognized (must be of type DeleteOptions): {e}"
        ))
    };
    let protobuf = req.header("content-type").is_some_and(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case(super::protobuf::CONTENT_TYPE)
    });
    if !protobuf {
        return serde_json::from_slice(&req.body).map_err(|e| unrecognized(e.to_string()));
    }
    let pb = super::protobuf::decode_delete_options(&req.body).map_err(unrecognized)?;
    Ok(WriteOptions {
        dry_run: pb.dry_run,
        preconditions: pb.preconditions.map(|p| Preconditions {
            uid: p.uid,
            resource_version: p.resource_version,
        }),
    })
}

fn delete(ctx: &Ctx<'_>, conn: &mut Conn, req: &Request, name: &str) -> io::Result<()> {
    if let Err(st) = authorized_object(ctx, Verb::Delete, None, name) {
        return send_status(conn, &st, ctx.keep);
    }
    let checked = delete_options(req).and_then(|o| Ok((o.dry_run("DeleteOptions")?, o)));
    let (dry_run, options) = match checked {
        Ok(x) => x,
        Err(st) => return send_status(conn, &st, ctx.keep),
    };
    let gone = match delete_checked(ctx.shared, name, &options, dry_run) {
        None => return send_status(conn, &not_found(name), ctx.keep),
        Some(Err(st)) => return send_status(conn, &st, ctx.keep),
        Some(Ok(gone)) => gone,
    };
    let mut d = details(Some(name));
    d.uid = gone.metadata.uid.clone();
    let st = Status {
        kind: Some("Status".into()),
        api_version: Some("v1".into()),
        metadata: ListMeta::default(),
        status: Some("Success".into()),
        details: Some(d),
        ..Status::default()
    };
    send_json(conn, 200, &st, ctx.keep)
}

/// What a watch loop wakes up for.
enum Wake {
    Events(Vec<Event>),
    Bookmark(u64),
    Expired(u64),
    Timeout,
    Stop,
    /// Time to check whether the client is still there.
    CheckPeer,
}

/// One open watch of one user, counted in `Shared::watches` while it lives.
struct WatchSlot<'a> {
    shared: &'a Shared,
    user: String,
}

impl<'a> WatchSlot<'a> {
    /// Takes a slot, or `None` when the server or the user already holds the most watches
    /// allowed.
    fn take(shared: &'a Shared, user: &str) -> Option<WatchSlot<'a>> {
        let mut w = shared.watches.lock();
        if w.total >= shared.settings.max_watches {
            return None;
        }
        let n = w.per_user.entry(user.to_owned()).or_default();
        if *n >= shared.settings.max_watches_per_user {
            return None;
        }
        *n += 1;
        w.total += 1;
        Some(WatchSlot {
            shared,
            user: user.to_owned(),
        })
    }
}

impl Drop for WatchSlot<'_> {
    fn drop(&mut self) {
        let mut w = self.shared.watches.lock();
        w.total = w.total.saturating_sub(1);
        if let Some(n) = w.per_user.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                w.per_user.remove(&self.user);
            }
        }
    }
}

/// How long a client refused with 429 is asked to wait, in seconds: kube-apiserver's
/// max-in-flight filter's `retryAfter` ("1").
pub(crate) const RETRY_AFTER_SECONDS: i32 = 1;

/// The answer past a limit (connections, watches): 429 `TooManyRequests` with the text of
/// kube-apiserver's max-in-flight filter (`Too many requests, please try again later.`) and its
/// `Retry-After: 1` header. The filter writes the text as `text/plain`; here it is the message
/// of a `Status` (reason `TooManyRequests`, `details.retryAfterSeconds` 1), which is what
/// client-go makes of the filter's answer (`NewGenericServerResponse` with the header's delay).
pub(crate) fn send_too_many_requests(conn: &mut Conn, keep: bool) -> io::Result<()> {
    let mut st = Status::failure(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
    );
    st.details = Some(StatusDetails {
        retry_after_seconds: Some(RETRY_AFTER_SECONDS),
        ..StatusDetails::default()
    });
    conn.add_header("Retry-After", &RETRY_AFTER_SECONDS.to_string());
    send_status(conn, &st, keep)
}

/// How often a waiting watch checks that its client is still there
/// ([`Conn::peer_gone`](super::http::Conn::peer_gone)).
const PEER_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// One watch event line, `{"type":…,"object":…}` in the apiserver's field order.
fn event_line(kind: &str, object: &Json) -> Vec<u8> {
    let mut line = br#"{"type":"#.to_vec();
    line.extend(serde_json::to_vec(kind).unwrap_or_default());
    line.extend_from_slice(br#","object":"#);
    line.extend(serde_json::to_vec(object).unwrap_or_default());
    line.extend_from_slice(b"}\n");
    line
}

fn bookmark_object(ctx: &Ctx<'_>, rv: u64, initial_end: bool) -> Json {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": KIND_CSR, "apiVersion": ctx.version.as_str(), "metadata": meta, "spec": {"request": null, "signerName": ""}, "status": {}})
}

/// A watch: headers, the initial events, then change events (and bookmarks) until the timeout,
/// a fault, a too-old resume point, or shutdown. Each event is one chunk, flushed. `name` is
/// the object of the deprecated `…/watch/{resource}/{name}` path, watched as the apiserver does:
/// with the field selector `metadata.name={name}`, and 400 for a field selector that does not
/// pin that name.
fn watch_stream(
    ctx: &Ctx<'_>,
    conn: &mut Conn,
    req: &Request,
    name: Option<&str>,
    close_after: Option<usize>,
    malformed: bool,
) -> io::Result<Next> {
    let shared = ctx.shared;
    if let Err(st) = authorize(ctx, Verb::Watch, None, name) {
        send_status(conn, &st, ctx.keep)?;
        return Ok(Next::KeepAlive);
    }
    let Some(_slot) = WatchSlot::take(shared, &ctx.user.name) else {
        send_too_many_requests(conn, ctx.keep)?;
        return Ok(Next::KeepAlive);
    };
    let sel = match list_options(req, true).and_then(|s| s.for_name(name)) {
        Ok(s) => s,
        Err(st) => {
            send_status(conn, &st, ctx.keep)?;
            return Ok(Next::KeepAlive);
        }
    };
    let asked = match parse_rv(req) {
        Ok(r) => r,
        Err(st) => {
            send_status(conn, &st, ctx.keep)?;
            return Ok(Next::KeepAlive);
        }
    };
    let bookmarks = req.param("allowWatchBookmarks").is_some_and(go_bool);
    let send_initial = req.param("sendInitialEvents").is_some_and(go_bool);
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(shared.settings.default_watch_timeout, Duration::from_secs);
    let deadline = Instant::now() + timeout;
    let visible = |o: &CertificateSigningRequest| {
        ctx.allowed(&Action {
            verb: Verb::Watch,
            subresource: None,
            name: o.metadata.name.as_deref(),
            object: Some(o),
        })
    };
    // Where to start.
    let (mut cursor, initial, mut epoch, start_error) = {
        let st = shared.state.lock();
        let epoch = st.bookmark_epoch;
        match asked {
            Some(n) if n > st.rv => {
                let s = too_large(n, st.rv);
                drop(st);
                send_status(conn, &s, ctx.keep)?;
                return Ok(Next::KeepAlive);
            }
            Some(n) if !send_initial => match st.events_after(n) {
                Ok(_) => (n, Vec::new(), epoch, None),
                Err(oldest) => (
                    n,
                    Vec::new(),
                    epoch,
                    // The watch cache's wording: the version before the oldest it holds.
                    Some(expired(format!(
                        "too old resource version: {n} ({})",
                        oldest - 1
                    ))),
                ),
            },
            _ => (st.rv, sel.select(&st.objects, ""), epoch, None),
        }
    };
    conn.start_chunked(200, JSON)?;
    if let Some(st) = start_error {
        let obj = serde_json::to_value(st).unwrap_or(Json::Null);
        conn.chunk(&event_line("ERROR", &obj))?;
        conn.end_chunked()?;
        return Ok(Next::KeepAlive);
    }
    if malformed {
        conn.chunk(b"{\"type\":\"ADDED\",\"object\":{\"kind\":\n")?;
        conn.end_chunked()?;
        return Ok(Next::KeepAlive);
    }
    let mut sent = 0usize;
    // Sends one event line; true when the close-after fault says the stream is done.
    let mut send = |conn: &mut Conn, line: &[u8]| -> io::Result<bool> {
        conn.chunk(line)?;
        sent += 1;
        let done = close_after.is_some_and(|n| sent >= n);
        if done {
            shared.faults.count_watch_closed();
        }
        Ok(done)
    };
    if close_after == Some(0) {
        shared.faults.count_watch_closed();
        conn.end_chunked()?;
        return Ok(Next::KeepAlive);
    }
    for o in initial.iter().filter(|o| visible(o)) {
        let rv = o
            .metadata
            .resource_version
            .as_deref()
            .and_then(|r| r.parse().ok());
        if send(conn, &event_line("ADDED", &ctx.render_value(o, rv)))? {
            conn.end_chunked()?;
            return Ok(Next::KeepAlive);
        }
    }
    if send_initial
        && bookmarks
        && send(
            conn,
            &event_line("BOOKMARK", &bookmark_object(ctx, cursor, true)),
        )?
    {
        conn.end_chunked()?;
        return Ok(Next::KeepAlive);
    }
    let interval = shared.settings.bookmark_interval;
    let mut next_bookmark = Instant::now() + interval;
    let mut next_peer_check = Instant::now() + PEER_CHECK_INTERVAL;
    // Whether the client has gone is noticed by the peers thread when it can; else on a timer.
    let peer = conn.socket().and_then(|sock| shared.peers.register(sock));
    let result = (|| -> io::Result<Next> {
        loop {
            let wake = {
                let mut st = shared.state.lock();
                loop {
                    if st.stopping {
                        break Wake::Stop;
                    }
                    match st.events_after(cursor) {
                        Err(oldest) => break Wake::Expired(oldest),
                        Ok(events) => {
                            let batch: Vec<Event> =
                                events.filter(|e| sel.matches(&e.object)).cloned().collect();
                            cursor = st.rv;
                            if !batch.is_empty() {
                                break Wake::Events(batch);
                            }
                        }
                    }
                    let now = Instant::now();
                    if bookmarks && st.bookmark_epoch != epoch {
                        epoch = st.bookmark_epoch;
                        break Wake::Bookmark(cursor);
                    }
                    if now >= deadline {
                        break Wake::Timeout;
                    }
                    if bookmarks && now >= next_bookmark {
                        next_bookmark = now + interval;
                        break Wake::Bookmark(cursor);
                    }
                    match &peer {
                        Some(p) if p.raised() => break Wake::CheckPeer,
                        Some(_) => {}
                        None if now >= next_peer_check => {
                            next_peer_check = now + PEER_CHECK_INTERVAL;
                            break Wake::CheckPeer;
                        }
                        None => {}
                    }
                    let mut until = if bookmarks {
                        deadline.min(next_bookmark)
                    } else {
                        deadline
                    };
                    match &peer {
                        // Woken by a change or by its own socket, not by another watch's.
                        Some(p) => {
                            p.wait_until(&mut st, until);
                        }
                        None => {
                            until = until.min(next_peer_check);
                            shared.changed.wait_until(&mut st, until);
                        }
                    }
                }
            };
            match wake {
                Wake::CheckPeer if conn.peer_gone() => return Ok(Next::Close),
                Wake::CheckPeer => {
                    if let (Some(p), Some(sock)) = (&peer, conn.socket()) {
                        shared.peers.rearm(sock, p);
                    }
                }
                Wake::Stop => {
                    // End the stream cleanly, as a gracefully stopping apiserver does.
                    let _ = conn.end_chunked();
                    return Ok(Next::Close);
                }
                Wake::Timeout => {
                    conn.end_chunked()?;
                    return Ok(Next::KeepAlive);
                }
                Wake::Expired(oldest) => {
                    let st = expired(format!(
                        "too old resource version: {cursor} ({})",
                        oldest - 1
                    ));
                    let obj = serde_json::to_value(st).unwrap_or(Json::Null);
                    conn.chunk(&event_line("ERROR", &obj))?;
                    conn.end_chunked()?;
                    return Ok(Next::KeepAlive);
                }
                Wake::Bookmark(rv) => {
                    if send(
                        conn,
                        &event_line("BOOKMARK", &bookmark_object(ctx, rv, false)),
                    )? {
                        conn.end_chunked()?;
                        return Ok(Next::KeepAlive);
                    }
                }
                Wake::Events(batch) => {
                    for e in batch.iter().filter(|e| visible(&e.object)) {
                        let o = &e.object;
                        let rv = o
                            .metadata
                            .resource_version
                            .as_deref()
                            .and_then(|r| r.parse().ok());
                        let render = || event_line(e.kind.as_str(), &ctx.render_value(o, rv));
                        let sent = match ctx.output {
                            Output::Plain => {
                                let v = usize::from(ctx.version != ApiVersion::V1);
                                send(conn, e.plain[v].get_or_init(render))?
                            }
                            _ => send(conn, &render())?,
                        };
                        if sent {
                            conn.end_chunked()?;
                            return Ok(Next::KeepAlive);
                        }
                    }
                }
            }
        }
    })();
    if let (Some(p), Some(sock)) = (peer, conn.socket()) {
        shared.peers.unregister(sock, p);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_apimachinery() {
        let s = Duration::from_secs;
        assert_eq!(human_duration(s(5)), "5s");
        assert_eq!(human_duration(s(119)), "119s");
        assert_eq!(human_duration(s(150)), "2m30s");
        assert_eq!(human_duration(s(600)), "10m");
        assert_eq!(human_duration(s(3 * 3600 + 60)), "3h1m");
        assert_eq!(human_duration(s(10 * 3600)), "10h");
        assert_eq!(human_duration(s(3 * 86_400 + 3600)), "3d1h");
        assert_eq!(human_duration(s(365 * 86_400)), "365d");
        assert_eq!(human_duration(s(3 * 365 * 86_400 + 86_400)), "3y1d");
    }

    #[test]
    fn times_round_trip() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_796_024_160);
        assert_eq!(parse_time(&fmt_time(t)), Some(t));
        assert_eq!(parse_time("nope"), None);
    }

    /// A name selector is answered by a lookup, with the same result as a scan would give.
    #[test]
    fn select_by_name_agrees_with_a_scan() {
        let mut st = super::super::state::State::new(100);
        for (name, signer) in [("a", "x.io/s"), ("b", "y.io/s"), ("c", "x.io/s")] {
            let mut o = CertificateSigningRequest::default();
            o.metadata.name = Some(name.into());
            o.spec.signer_name = Some(signer.into());
            let parsed = crate::pki::ParsedCsr {
                subject_der: Vec::new(),
                common_name: String::new(),
                organizations: Vec::new(),
                dns_names: Vec::new(),
                ip_addresses: Vec::new(),
                email_addresses: Vec::new(),
                uris: Vec::new(),
                san_der: None,
                public_key_der: Vec::new(),
            };
            st.commit(EventType::Added, o, Arc::new(parsed));
        }
        for (fields, start, want) in [
            ("metadata.name=b", "", &["b"][..]),
            ("metadata.name==b,spec.signerName=y.io/s", "", &["b"]),
            ("metadata.name=b,spec.signerName=x.io/s", "", &[]),
            ("metadata.name=zz", "", &[]),
            ("metadata.name=b", "b", &["b"]),
            ("metadata.name=b", "c", &[]),
            ("metadata.name!=b", "", &["a", "c"]),
            ("spec.signerName=x.io/s", "b", &["c"]),
            ("", "", &["a", "b", "c"]),
        ] {
            let sel = Selectors {
                fields: parse_field_selector(fields).unwrap(),
                labels: Vec::new(),
            };
            let got: Vec<String> = sel
                .select(&st.objects, start)
                .iter()
                .map(|o| o.metadata.name.clone().unwrap())
                .collect();
            assert_eq!(got, want, "{fields:?} from {start:?}");
        }
    }

    #[test]
    fn selectors_parse_and_match() {
        let mut o = CertificateSigningRequest::default();
        o.metadata.name = Some("csr-1".into());
        o.spec.signer_name = Some("example.com/s".into());
        o.metadata.labels = Some([("app".to_owned(), "x".to_owned())].into());
        let f = parse_field_selector("metadata.name=csr-1,spec.signerName!=other.io/s").unwrap();
        assert!(field_matches(&o, &f));
        assert!(!field_matches(
            &o,
            &parse_field_selector("metadata.name==csr-2").unwrap()
        ));
        assert_eq!(
            parse_field_selector("spec.usages=x").unwrap_err(),
            "field label not supported: spec.usages"
        );
        for (sel, want) in [
            ("app=x", true),
            ("app!=x", false),
            ("app", true),
            ("!app", false),
            ("app in (x,y)", true),
            ("app notin (x,y)", false),
            ("tier,app=x", false),
        ] {
            assert_eq!(
                labels_match(&o, &parse_label_selector(sel).unwrap()),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn generated_names_have_five_random_characters() {
        let n = generate_name("csr-");
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("csr-"));
        assert_eq!(generate_name(&"x".repeat(70)).len(), 63);
    }
}
