//! PATCH of a CSR and of its `/approval` and `/status` subresources, as kube-apiserver's patch
//! handler (`k8s.io/apiserver/pkg/endpoints/handlers/patch.go`) answers it.
//!
//! The four patch types of a built-in resource are accepted, by `Content-Type`:
//! - `application/json-patch+json`: RFC 6902, applied to the live object as JSON (with its
//!   `apiVersion` and `kind`, and `status: {}` when it has no status, as the apiserver encodes
//!   it). At most 10000 operations (413 beyond). A body that is not a JSON array of objects is
//!   400; an operation that does not apply (a failed `test`, a missing path, an unknown `op`)
//!   is 422 `Invalid` with the apiserver's fixed message.
//! - `application/merge-patch+json`: RFC 7386.
//! - `application/strategic-merge-patch+json`: maps merge key by key, `null` deletes, and a
//!   list is replaced unless the Go type's `patchStrategy` says merge. In a CSR no list merges
//!   (`spec.usages`, `spec.groups`, `spec.extra` values and `status.conditions` carry no
//!   `patchStrategy`); in `ObjectMeta`, `finalizers` merges as a set and `ownerReferences` by
//!   `uid`. The directives `$patch` (`replace`, `delete`, `merge`), `$retainKeys`,
//!   `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` are understood.
//! - `application/apply-patch+yaml`: server-side apply, `fieldManager` required, `force`
//!   accepted; creates the CSR when it is absent (main resource only, which also needs `create`
//!   permission). See [`apply`] for how it differs from the apiserver's field-managed apply.
//!
//! Any other type is 415: `415: Unsupported Media Type` (go-restful's route selection) when no
//! comma-separated part of the header names a patch type, else the patch handler's
//! `UnsupportedMediaType` with its list of accepted media types (a header that names one
//! among others, or with a space before its `;`). The options are
//! `PatchOptions`: `dryRun` (`All` only), `fieldManager` (required for apply, at most 128
//! printable characters), `force` (apply only), `fieldValidation` (`Ignore`, `Strict` or
//! `Warn`; checked, but unknown fields are dropped whatever it says). The patched object then goes through the same
//! path as a PUT: the name must stay the URL's, a `metadata.resourceVersion` that the patch
//! sets and that is not the live one is 409 `Conflict`, the fields a path may not change are
//! kept from the live object, update validation, and `dryRun`. The patch is applied under the
//! store's lock, so it never needs the apiserver's retry on conflict.

use std::io;

use serde_json::{Map, Value as Json, json};

use super::auth::Verb;
use super::http::{Conn, Request};
use super::rest::{
    Ctx, WriteOptions, authorize, authorized_object, bad_request, create_object, not_found,
    replace_object, send_json, send_status,
};
use super::validation::{FieldError, Kind, UpdatePath, Value, go_is_print};
use crate::csr::api::{CertificateSigningRequest, KIND_CSR, Status, StatusCause, StatusDetails};

/// The patch types kube-apiserver accepts for a built-in resource, in its order.
const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// `maxJSONPatchOperations` of the patch handler.
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// `metav1.validation.FieldManagerMaxLength`.
const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// One parsed patch body.
enum Patch {
    Json(json_patch::Patch),
    Merge(Json),
    Strategic(Map<String, Json>),
    Apply(Map<String, Json>),
}

/// `PATCH …/certificatesigningrequests/NAME[/approval|/status]`.
pub(super) fn patch(
    ctx: &Ctx<'_>,
    conn: &mut Conn,
    req: &Request,
    name: &str,
    path: UpdatePath,
) -> io::Result<()> {
    match patch_inner(ctx, req, name, path) {
        Ok((code, obj)) => send_json(conn, code, &ctx.render(&obj), ctx.keep),
        Err(st) => send_status(conn, &st, ctx.keep),
    }
}

fn patch_inner(
    ctx: &Ctx<'_>,
    req: &Request,
    name: &str,
    path: UpdatePath,
) -> Result<(u16, std::sync::Arc<CertificateSigningRequest>), Box<Status>> {
    let sub = match path {
        UpdatePath::Main => None,
        UpdatePath::Approval => Some("approval"),
        UpdatePath::Status => Some("status"),
    };
    // The authorization filter runs before the handler: 403 before anything else.
    authorize(ctx, Verb::Patch, sub, Some(name))?;
    let header = req.header("content-type").unwrap_or("");
    if !restful_consumes(header, &PATCH_TYPES) {
        // go-restful's route selection, before the handler: the service error handler turns
        // its plain error into NewGenericServerResponse(415, …, "415: Unsupported Media Type").
        let mut st = Status::failure(415, "UnsupportedMediaType", "415: Unsupported Media Type");
        st.details = Some(StatusDetails::default());
        return Err(Box::new(st));
    }
    // The handler cuts at the first ';' (when not at the start) and compares the rest as is.
    let content_type = match header.find(';') {
        Some(i) if i > 0 => &header[..i],
        _ => header,
    };
    let Some(kind) = PATCH_TYPES.iter().position(|t| *t == content_type) else {
        return Err(Box::new(Status::failure(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                PATCH_TYPES.join(", ")
            ),
        )));
    };
    let dry_run = patch_options(req, kind == 3)?;
    let patch = parse_patch(kind, &req.body)?;
    let Some(live) = ctx.shared.get(name) else {
        return match (&patch, path) {
            (Patch::Apply(applied), UpdatePath::Main) => {
                create_by_apply(ctx, name, applied, dry_run).map(|o| (201, o))
            }
            _ => Err(Box::new(not_found(name))),
        };
    };
    // As a PUT: the authorizer sees the stored object too.
    drop(live);
    authorized_object(ctx, Verb::Patch, sub, name)?;
    let version = ctx.version.as_str();
    let outcome = replace_object(ctx, name, path, dry_run, |live| {
        let mut doc = live_document(ctx, live);
        match &patch {
            Patch::Json(ops) => {
                json_patch::patch(&mut doc, ops).map_err(|_| patch_not_applied())?;
            }
            Patch::Merge(p) => json_patch::merge(&mut doc, p),
            Patch::Strategic(p) => strategic_merge(&mut doc, p, "")?,
            Patch::Apply(p) => {
                check_applied(p, version)?;
                apply(&mut doc, p, "");
            }
        }
        decode_patched(doc, name, version)
    });
    match outcome {
        None => Err(Box::new(not_found(name))),
        Some(Err(st)) => Err(st),
        Some(Ok(o)) => Ok((200, o)),
    }
}

/// `PatchOptions` from the query, checked as `ValidatePatchOptions` (one 422 on
/// `PatchOptions.meta.k8s.io` with every broken rule, in its order: `force` on a patch that is
/// not an apply, `fieldManager` missing on an apply, too long or with unprintable characters,
/// then `dryRun` and `fieldValidation`). `force` counts as given whatever its value, as the
/// query's conversion makes any value a `*bool`. Returns whether this is a dry run.
fn patch_options(req: &Request, apply: bool) -> Result<bool, Box<Status>> {
    let manager = req.param("fieldManager").unwrap_or("");
    let mut errs = Vec::new();
    let error = |kind, field: &str, value, detail: String| FieldError {
        kind,
        field: field.to_owned(),
        value,
        detail,
    };
    if !apply && req.param("force").is_some() {
        errs.push(error(
            Kind::Forbidden,
            "force",
            Value::Omit,
            "may not be specified for non-apply patch".into(),
        ));
    }
    if apply && manager.is_empty() {
        errs.push(error(
            Kind::Required,
            "fieldManager",
            Value::Omit,
            "is required for apply patch".into(),
        ));
    }
    if manager.len() > FIELD_MANAGER_MAX_LENGTH {
        errs.push(error(
            Kind::TooLong,
            "fieldManager",
            Value::Omit,
            format!("may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"),
        ));
    }
    for (i, c) in manager.char_indices().filter(|(_, c)| !go_is_print(*c)) {
        errs.push(error(
            Kind::Invalid,
            "fieldManager",
            Value::Str(manager.to_owned()),
            format!("invalid character U+{:04X} (at position {i})", c as u32),
        ));
    }
    let field_validation = req.param("fieldValidation").unwrap_or("");
    WriteOptions::from_query(req)
        .validate("PatchOptions", errs, Some(field_validation))
        .map(|(dry_run, _)| dry_run)
}

/// go-restful's `Route.matchesContentType` for a PATCH route that consumes `types`: some
/// comma-separated part of the header, cut at `;` and trimmed of spaces, is one of them; a
/// missing header counts as `application/octet-stream`.
fn restful_consumes(header: &str, types: &[&str]) -> bool {
    let header = if header.is_empty() {
        "application/octet-stream"
    } else {
        header
    };
    header.split(',').any(|part| {
        let mime = part.split(';').next().unwrap_or("").trim_matches(' ');
        types.contains(&mime)
    })
}

/// Parses the body by patch type (`validateAndTranscodePatch`, then the patcher's decode).
fn parse_patch(kind: usize, body: &[u8]) -> Result<Patch, Box<Status>> {
    if kind == 3 {
        let doc: Json = serde_norway::from_slice(body)
            .map_err(|e| bad_request(format!("error decoding patch: {e}")))?;
        return match doc {
            Json::Object(m) => Ok(Patch::Apply(m)),
            Json::Null => Ok(Patch::Apply(Map::new())),
            other => Err(bad_request(format!(
                "error decoding patch: cannot unmarshal {} into an object",
                json_type(&other)
            ))),
        };
    }
    let doc: Json =
        serde_json::from_slice(body).map_err(|_| bad_request("invalid JSON patch".into()))?;
    match kind {
        0 => {
            // jsonpatch.DecodePatch only needs an array of objects; a bad operation fails when
            // applied (422).
            let Json::Array(ops) = &doc else {
                return Err(bad_request(format!(
                    "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
                    json_type(&doc)
                )));
            };
            if let Some(op) = ops.iter().find(|o| !o.is_object()) {
                return Err(bad_request(format!(
                    "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
                    json_type(op)
                )));
            }
            if ops.len() > MAX_JSON_PATCH_OPERATIONS {
                return Err(Box::new(Status::failure(
                    413,
                    "RequestEntityTooLarge",
                    format!(
                        "Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                        ops.len()
                    ),
                )));
            }
            // An operation serde cannot read (unknown `op`, missing `path`) is one that does
            // not apply: an empty patch that always fails stands for it.
            match serde_json::from_value::<json_patch::Patch>(doc) {
                Ok(p) => Ok(Patch::Json(p)),
                Err(_) => Err(patch_not_applied()),
            }
        }
        1 => Ok(Patch::Merge(doc)),
        _ => match doc {
            Json::Object(m) => Ok(Patch::Strategic(m)),
            other => Err(bad_request(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_type(&other)
            ))),
        },
    }
}

/// Go's name of a JSON value's type in `json: cannot unmarshal X into …`.
fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// A JSON patch that does not apply: `NewGenericServerResponse(422, …)`, whose message is fixed
/// and whose details are empty.
fn patch_not_applied() -> Box<Status> {
    let mut st = Status::failure(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
    );
    st.details = Some(StatusDetails::default());
    Box::new(st)
}

/// The live object as the patch applies to it: the versioned JSON, with `status: {}` when it
/// has none (Go's encoder writes the struct).
fn live_document(ctx: &Ctx<'_>, live: &CertificateSigningRequest) -> Json {
    let mut doc = serde_json::to_value(ctx.render(live)).unwrap_or_else(|_| json!({}));
    if let Json::Object(m) = &mut doc {
        m.entry("status").or_insert_with(|| json!({}));
    }
    doc
}

/// The patched JSON back to a CSR: 422 `Invalid` on the field `patch` when it no longer reads
/// as one (as the patcher's `DecodeInto` failing), 400 when its name is not the URL's
/// (`checkName`).
fn decode_patched(
    doc: Json,
    name: &str,
    version: &str,
) -> Result<CertificateSigningRequest, Box<Status>> {
    let text = doc.to_string();
    let invalid = |why: String| {
        let body = format!("Invalid value: {text:?}: {why}");
        let mut st = Status::failure(422, "Invalid", format!(" \"\" is invalid: patch: {body}"));
        st.details = Some(StatusDetails {
            causes: vec![StatusCause {
                reason: Some("FieldValueInvalid".into()),
                message: Some(body),
                field: Some("patch".into()),
            }],
            ..StatusDetails::default()
        });
        Box::new(st)
    };
    // The decoder fills a missing kind or apiVersion from the type it decodes into.
    let kind = doc.get("kind").and_then(Json::as_str).unwrap_or(KIND_CSR);
    let api_version = doc
        .get("apiVersion")
        .and_then(Json::as_str)
        .unwrap_or(version);
    if kind != KIND_CSR || api_version != version {
        return Err(invalid(format!(
            "the patched object is {api_version:?} {kind:?}, not {version:?} {KIND_CSR:?}"
        )));
    }
    let obj: CertificateSigningRequest =
        serde_json::from_value(doc).map_err(|e| invalid(e.to_string()))?;
    let got = obj.metadata.name.as_deref().unwrap_or("");
    if got != name {
        return Err(bad_request(format!(
            "the name of the object ({got}) does not match the name on the URL ({name})"
        )));
    }
    Ok(obj)
}

/// Server-side apply to an absent CSR: `create` must be allowed too (the patch handler's
/// `withAuthorization` of its create path), then the applied object is created.
fn create_by_apply(
    ctx: &Ctx<'_>,
    name: &str,
    applied: &Map<String, Json>,
    dry_run: bool,
) -> Result<std::sync::Arc<CertificateSigningRequest>, Box<Status>> {
    authorize(ctx, Verb::Create, None, Some(name))?;
    let version = ctx.version.as_str();
    check_applied(applied, version)?;
    let mut doc = json!({});
    apply(&mut doc, applied, "");
    let obj = decode_patched(doc, name, version)?;
    let request_given = !obj.spec.request.is_empty();
    create_object(ctx, obj, request_given, dry_run)
}

/// The checks of the field manager's `Apply` on the applied configuration: its
/// `apiVersion` must be the endpoint's, it must name the kind, and it may not carry
/// `metadata.managedFields`.
fn check_applied(applied: &Map<String, Json>, version: &str) -> Result<(), Box<Status>> {
    let got = applied
        .get("apiVersion")
        .and_then(Json::as_str)
        .unwrap_or("");
    if got != version {
        return Err(bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {got}, expected: {version}"
        )));
    }
    let kind = applied.get("kind").and_then(Json::as_str).unwrap_or("");
    if kind != KIND_CSR {
        return Err(bad_request(format!(
            "the applied object's kind is {kind:?}, not {KIND_CSR:?}"
        )));
    }
    if applied
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|f| !f.is_null())
    {
        return Err(bad_request("metadata.managedFields must be nil".into()));
    }
    Ok(())
}

/// How a list field merges in a strategic merge patch (the Go type's `patchStrategy` and
/// `patchMergeKey` tags). Every other list is replaced.
enum ListMerge {
    /// A set of scalars (`patchStrategy:"merge"` on `[]string`).
    Set,
    /// Items merged by this key (`patchStrategy:"merge" patchMergeKey:"…"`).
    Keyed(&'static str),
}

/// The merging lists of a CSR for strategic merge patch: only `ObjectMeta`'s.
fn smp_list(path: &str) -> Option<ListMerge> {
    match path {
        "metadata.finalizers" => Some(ListMerge::Set),
        "metadata.ownerReferences" => Some(ListMerge::Keyed("uid")),
        _ => None,
    }
}

/// The merging lists of a CSR for server-side apply (`+listType=map` / `set` in the schema):
/// `status.conditions` keyed by `type`, and `ObjectMeta`'s.
fn apply_list(path: &str) -> Option<ListMerge> {
    match path {
        "status.conditions" => Some(ListMerge::Keyed("type")),
        other => smp_list(other),
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Drops `null`s and directives from a value that lands where the original has nothing
/// (`IgnoreUnmatchedNulls`).
fn clean(v: &Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.iter()
                .filter(|(k, v)| !v.is_null() && !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Json::Array(a) => Json::Array(a.iter().map(clean).collect()),
        other => other.clone(),
    }
}

/// apimachinery's `strategicpatch` merge of `patch` into the map `doc`, for the CSR schema.
/// Errors are the 400 and 422 answers of `interpretStrategicMergePatchError`.
fn strategic_merge(
    doc: &mut Json,
    patch: &Map<String, Json>,
    path: &str,
) -> Result<(), Box<Status>> {
    // handleDirectiveInMergeMap: only `replace` and `delete` are directives of a map.
    match patch.get(DIRECTIVE) {
        None => {}
        Some(Json::String(d)) if d == "replace" => {
            let mut rest = patch.clone();
            rest.remove(DIRECTIVE);
            *doc = Json::Object(rest);
            return Ok(());
        }
        Some(Json::String(d)) if d == "delete" => {
            *doc = Json::Object(Map::new());
            return Ok(());
        }
        Some(other) => {
            // mergepatch.ErrBadPatchType is no API status: the apiserver answers it as an
            // unexpected error, 500 with reason Unknown.
            return Err(Box::new(Status::failure(
                500,
                "Unknown",
                format!(
                    "unknown patch type: {} in map: {}",
                    go_v(other),
                    go_v(&Json::Object(patch.clone()))
                ),
            )));
        }
    }
    if !doc.is_object() {
        *doc = Json::Object(Map::new());
    }
    // applyRetainKeysDirective: checked against the patch, then applied to the original
    // before the merge.
    match patch.get(RETAIN_KEYS) {
        None => {}
        Some(Json::Array(keys)) => {
            let listed = |k: &str| keys.iter().any(|x| x.as_str() == Some(k));
            let outside = patch.iter().any(|(k, v)| {
                !v.is_null()
                    && !k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                    && !k.starts_with(SET_ELEMENT_ORDER)
                    && k != RETAIN_KEYS
                    && !listed(k)
            });
            if outside {
                // ErrPatchContentNotMatchRetainKeys: NewGenericServerResponse(422, …).
                return Err(patch_not_applied());
            }
            if let Json::Object(orig) = doc {
                orig.retain(|k, _| listed(k));
            }
        }
        Some(_) => {
            return Err(bad_request("invalid patch format of retainKeys".into()));
        }
    }
    let Json::Object(orig) = doc else {
        return Ok(());
    };
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Json::Array(gone) = v else {
                return Err(bad_request("invalid patch format of primitive list".into()));
            };
            if let Some(Json::Array(items)) = orig.get_mut(field) {
                items.retain(|i| !gone.contains(i));
            }
            continue;
        }
        if k.starts_with(SET_ELEMENT_ORDER) || k.starts_with('$') {
            continue;
        }
        let at = child(path, k);
        if v.is_null() {
            orig.remove(k);
            continue;
        }
        let Some(o) = orig.get_mut(k) else {
            let mut fresh = Json::Object(Map::new());
            match v {
                Json::Object(pm) => {
                    strategic_merge(&mut fresh, pm, &at)?;
                    orig.insert(k.clone(), fresh);
                }
                other => {
                    orig.insert(k.clone(), clean(other));
                }
            }
            continue;
        };
        match (o, v) {
            (o @ Json::Object(_), Json::Object(pm)) => strategic_merge(o, pm, &at)?,
            (Json::Array(items), Json::Array(patch_items)) => match smp_list(&at) {
                Some(ListMerge::Set) => {
                    for p in patch_items {
                        if !items.contains(p) {
                            items.push(p.clone());
                        }
                    }
                }
                Some(ListMerge::Keyed(key)) => merge_keyed(items, patch_items, key, true)?,
                // mergeSliceHandler takes a replaced list as the patch has it.
                None => items.clone_from(patch_items),
            },
            (o, v) => *o = clean(v),
        }
    }
    Ok(())
}

/// Go's `%v` of a decoded JSON value (`map[k:v …]` with sorted keys, `[a b]`, `<nil>`), as
/// apimachinery's errors print the patch.
fn go_v(v: &Json) -> String {
    match v {
        Json::Null => "<nil>".into(),
        Json::String(s) => s.clone(),
        Json::Bool(_) | Json::Number(_) => v.to_string(),
        Json::Array(items) => format!("[{}]", items.iter().map(go_v).collect::<Vec<_>>().join(" ")),
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_v(&m[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Merges list items by `key`: an item whose key matches an existing one is merged into it,
/// others are appended; with `directives`, `{"$patch": "delete", key: …}` removes the item.
fn merge_keyed(
    items: &mut Vec<Json>,
    patch_items: &[Json],
    key: &str,
    directives: bool,
) -> Result<(), Box<Status>> {
    for p in patch_items {
        let Json::Object(pm) = p else {
            return Err(bad_request(format!(
                "map: {p} does not contain declared merge key: {key}"
            )));
        };
        let Some(id) = pm.get(key) else {
            return Err(bad_request(format!(
                "map: {p} does not contain declared merge key: {key}"
            )));
        };
        let pos = items.iter().position(|i| i.get(key) == Some(id));
        if directives && pm.get(DIRECTIVE).and_then(Json::as_str) == Some("delete") {
            if let Some(i) = pos {
                items.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) if directives => strategic_merge(&mut items[i], pm, "")?,
            Some(i) => apply(&mut items[i], pm, ""),
            None => items.push(clean(p)),
        }
    }
    Ok(())
}

/// Server-side apply, as this server does it: the applied configuration's fields are merged
/// over the live object. Maps merge key by key; lists are atomic (replaced) except those the
/// schema marks as maps or sets (`status.conditions` by `type`, `metadata.ownerReferences` by
/// `uid`, `metadata.finalizers`), whose items are merged; a `null` removes the field.
///
/// It differs from the apiserver's field-managed apply in what it cannot know without
/// `metadata.managedFields`: a field the same manager applied before and now leaves out is
/// kept (the apiserver removes it), and a field another manager owns is overwritten without a
/// 409 conflict (so `force` changes nothing).
fn apply(doc: &mut Json, applied: &Map<String, Json>, path: &str) {
    if !doc.is_object() {
        *doc = Json::Object(Map::new());
    }
    let Json::Object(orig) = doc else {
        return;
    };
    for (k, v) in applied {
        let at = child(path, k);
        if v.is_null() {
            orig.remove(k);
            continue;
        }
        match (orig.get_mut(k), v) {
            (Some(o @ Json::Object(_)), Json::Object(am)) => apply(o, am, &at),
            (None, Json::Object(am)) => {
                let mut fresh = Json::Object(Map::new());
                apply(&mut fresh, am, &at);
                orig.insert(k.clone(), fresh);
            }
            (Some(Json::Array(items)), Json::Array(applied_items)) => match apply_list(&at) {
                Some(ListMerge::Set) => {
                    for p in applied_items {
                        if !items.contains(p) {
                            items.push(p.clone());
                        }
                    }
                }
                Some(ListMerge::Keyed(key)) => {
                    if merge_keyed(items, applied_items, key, false).is_err() {
                        *items = applied_items.iter().map(clean).collect();
                    }
                }
                None => *items = applied_items.iter().map(clean).collect(),
            },
            (_, other) => {
                orig.insert(k.clone(), clean(other));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smp(doc: Json, patch: Json) -> Result<Json, Box<Status>> {
        let mut doc = doc;
        let Json::Object(p) = patch else {
            panic!("patch must be an object")
        };
        strategic_merge(&mut doc, &p, "")?;
        Ok(doc)
    }

    /// The rules of apimachinery's strategicpatch for maps, scalars, replaced lists and the
    /// `ObjectMeta` merge lists (cases in the style of strategicpatch's own test table).
    #[test]
    fn strategic_merge_follows_the_struct_tags() {
        // Maps merge, null deletes.
        assert_eq!(
            smp(
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"labels": {"b": null, "c": "3"}}})
            )
            .unwrap(),
            json!({"metadata": {"labels": {"a": "1", "c": "3"}}})
        );
        // A list without patchStrategy is replaced (status.conditions, spec.usages).
        assert_eq!(
            smp(
                json!({"status": {"conditions": [{"type": "Approved", "status": "True"}]}}),
                json!({"status": {"conditions": [{"type": "Denied", "status": "True"}]}})
            )
            .unwrap(),
            json!({"status": {"conditions": [{"type": "Denied", "status": "True"}]}})
        );
        // finalizers: patchStrategy merge on a primitive list, and $deleteFromPrimitiveList.
        assert_eq!(
            smp(
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["c", "a"], "$deleteFromPrimitiveList/finalizers": ["b"]}})
            )
            .unwrap(),
            json!({"metadata": {"finalizers": ["a", "c"]}})
        );
        // ownerReferences: merged by uid, $patch: delete removes one.
        assert_eq!(
            smp(
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "x"}, {"uid": "2", "name": "y"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "z"}, {"uid": "2", "$patch": "delete"}, {"uid": "3", "name": "w"}]}})
            )
            .unwrap(),
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "z"}, {"uid": "3", "name": "w"}]}})
        );
        // $patch: replace on a map; $retainKeys.
        assert_eq!(
            smp(
                json!({"metadata": {"labels": {"a": "1"}}}),
                json!({"metadata": {"labels": {"$patch": "replace", "b": "2"}}})
            )
            .unwrap(),
            json!({"metadata": {"labels": {"b": "2"}}})
        );
        assert_eq!(
            smp(
                json!({"spec": {"a": 1, "b": 2}}),
                json!({"spec": {"$retainKeys": ["b", "c"], "c": 3}})
            )
            .unwrap(),
            json!({"spec": {"b": 2, "c": 3}})
        );
        let err = smp(
            json!({"spec": {}}),
            json!({"spec": {"$retainKeys": ["b"], "c": 3}}),
        )
        .unwrap_err();
        assert_eq!(err.code, Some(422));
        assert_eq!(
            err.message.as_deref(),
            Some("the server rejected our request due to an error in our request")
        );
        // mergepatch.ErrBadPatchType, with Go's %v of the map; `merge` is no map directive.
        let err = smp(
            json!({}),
            json!({"spec": {"$patch": "merge", "b": [1, "x"]}}),
        )
        .unwrap_err();
        assert_eq!(err.code, Some(500));
        assert_eq!(
            err.message.as_deref(),
            Some("unknown patch type: merge in map: map[$patch:merge b:[1 x]]")
        );
        let err = smp(json!({}), json!({"$retainKeys": "b"})).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_deref()),
            (Some(400), Some("invalid patch format of retainKeys"))
        );
    }

    #[test]
    fn apply_merges_conditions_by_type() {
        let mut doc = json!({"status": {"conditions": [
            {"type": "Approved", "status": "True", "reason": "A"},
        ]}, "spec": {"usages": ["a", "b"]}});
        let Json::Object(applied) = json!({"status": {"conditions": [
            {"type": "Approved", "reason": "B"},
            {"type": "Failed", "status": "True"},
        ]}, "spec": {"usages": ["c"]}}) else {
            unreachable!()
        };
        apply(&mut doc, &applied, "");
        assert_eq!(
            doc,
            json!({"status": {"conditions": [
                {"type": "Approved", "status": "True", "reason": "B"},
                {"type": "Failed", "status": "True"},
            ]}, "spec": {"usages": ["c"]}})
        );
    }
}
