//! Reading the server's answers: kind and version checks, Status errors, bounded reads, CSR
//! objects and the `CsrRef` taken from a created one.

use std::time::Duration;

use ureq::http::Response;

use crate::csr::api::{self, CertificateSigningRequest, Status};
use crate::csr::{ApiError, ApiVersion, CsrError, CsrRef};

/// Checks an answer's `kind` and `apiVersion` against what was asked for: `want_kind`, and
/// with `version` that API version (the one of the request's path: a v1 path wants
/// `certificates.k8s.io/v1`, a v1beta1 path `…/v1beta1`). An absent (or null) field is taken
/// as the expected one, as client-go's decoder defaults a missing kind from the type it decodes
/// into (list items carry none); a present one that differs is a protocol violation.
pub(super) fn check_type(
    op: &'static str,
    kind: Option<&str>,
    api_version: Option<&str>,
    want_kind: &str,
    version: Option<ApiVersion>,
) -> Result<(), CsrError> {
    let kind_ok = kind.is_none_or(|k| k == want_kind);
    let version_ok = match version {
        Some(v) => api_version.is_none_or(|a| a == v.as_str()),
        None => true,
    };
    if kind_ok && version_ok {
        return Ok(());
    }
    let want = match version {
        Some(v) => format!("a {want_kind} of {}", v.as_str()),
        None => format!("a {want_kind}"),
    };
    Err(CsrError::InvalidResponse {
        op,
        message: format!(
            "expected {want}, got a {} of {}",
            kind.unwrap_or(want_kind),
            api_version.unwrap_or("no apiVersion")
        ),
    })
}

/// [`check_type`] on raw JSON: `kind` and `apiVersion` must be strings when present.
pub(super) fn check_type_value(
    op: &'static str,
    obj: &serde_json::Value,
    want_kind: &str,
    version: Option<ApiVersion>,
) -> Result<(), CsrError> {
    let field = |name: &str| -> Result<Option<&str>, CsrError> {
        match obj.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(CsrError::InvalidResponse {
                op,
                message: format!("expected a {want_kind}, got {name} {other}"),
            }),
        }
    };
    if !obj.is_object() {
        return Err(CsrError::InvalidResponse {
            op,
            message: format!("expected a {want_kind} object, got {obj}"),
        });
    }
    check_type(op, field("kind")?, field("apiVersion")?, want_kind, version)
}

/// Turns a non-2xx answer into an [`ApiError`]: a `Status` body (non-empty `status`, kind
/// `Status` or absent) gives its reason, message and `retryAfterSeconds`; any other body gives
/// a generic error with [`generic_reason`] and `is_status: false` (apimachinery
/// `NewGenericServerResponse`, whose `UnexpectedServerResponse` cause makes the server count as
/// unhealthy). `post`: the request was a POST. A `Retry-After` header wins over the body.
pub(crate) fn parse_api_error(
    code: u16,
    post: bool,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ApiError {
    if let Ok(status) = serde_json::from_slice::<Status>(body)
        && status.status.as_deref().is_some_and(|s| !s.is_empty())
        && status.kind.as_deref().is_none_or(|k| k == "Status")
    {
        return api_error_from_status(code, retry_after, status);
    }
    let snippet: String = String::from_utf8_lossy(&body[..body.len().min(200)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let snippet = snippet.trim();
    ApiError {
        code,
        reason: generic_reason(code, post).to_owned(),
        message: if snippet.is_empty() {
            format!("the server responded with HTTP {code} and no Status body")
        } else {
            format!("the server responded with HTTP {code} and no Status body: {snippet:?}")
        },
        is_status: false,
        retry_after,
    }
}

/// The reason apimachinery's `NewGenericServerResponse` gives an answer whose body is not a
/// `Status` (what client-go's REST client reports then): `AlreadyExists` for a conflict on a
/// POST, `InternalError` for a 5xx without a reason of its own, and `Unknown` (standing for its
/// empty `StatusReasonUnknown`) for codes it does not name, 410 among them.
pub(super) fn generic_reason(code: u16, post: bool) -> &'static str {
    match code {
        409 if post => "AlreadyExists",
        409 => "Conflict",
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        500.. => "InternalError",
        _ => "Unknown",
    }
}

pub(super) fn api_error_from_status(
    http_code: u16,
    retry_after: Option<Duration>,
    status: Status,
) -> ApiError {
    let code = status
        .code
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (100..600).contains(c))
        .unwrap_or(http_code);
    let body_retry = status
        .details
        .as_ref()
        .and_then(|d| d.retry_after_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    ApiError {
        code,
        reason: status.reason.unwrap_or_default(),
        message: status.message.unwrap_or_default(),
        is_status: true,
        retry_after: retry_after.or(body_retry),
    }
}

pub(super) fn read_limited(
    op: &'static str,
    path: &str,
    resp: &mut Response<ureq::Body>,
    limit: usize,
) -> Result<Vec<u8>, CsrError> {
    resp.body_mut()
        .with_config()
        .limit(limit as u64)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => CsrError::InvalidResponse {
                op,
                message: format!("the answer from {path} is larger than {limit} bytes"),
            },
            other => transport_error(op, "reading", path, other),
        })
}

pub(super) fn transport_error(
    op: &'static str,
    method: &str,
    url: &str,
    e: ureq::Error,
) -> CsrError {
    CsrError::Transport {
        op,
        request: format!("{method} {url}"),
        source: Box::new(e),
    }
}

/// Decodes a create or get answer: a `CertificateSigningRequest` of `version`.
pub(super) fn decode_csr(
    op: &'static str,
    bytes: &[u8],
    version: ApiVersion,
) -> Result<CertificateSigningRequest, CsrError> {
    let obj: CertificateSigningRequest =
        serde_json::from_slice(bytes).map_err(|e| CsrError::InvalidResponse {
            op,
            message: format!("malformed CertificateSigningRequest: {e}"),
        })?;
    check_type(
        op,
        obj.kind.as_deref(),
        obj.api_version.as_deref(),
        api::KIND_CSR,
        Some(version),
    )?;
    Ok(obj)
}

pub(super) fn csr_from_value(v: serde_json::Value) -> Result<CertificateSigningRequest, CsrError> {
    serde_json::from_value(v).map_err(|e| CsrError::InvalidResponse {
        op: "watch",
        message: format!("malformed CertificateSigningRequest in watch event: {e}"),
    })
}

pub(super) fn csr_ref(
    op: &'static str,
    obj: &CertificateSigningRequest,
    version: ApiVersion,
) -> Result<CsrRef, CsrError> {
    let missing = |field: &str| CsrError::InvalidResponse {
        op,
        message: format!("the CertificateSigningRequest has no {field}"),
    };
    let name = obj
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| missing("metadata.name"))?;
    let uid = obj
        .metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| missing("metadata.uid"))?;
    Ok(CsrRef {
        name,
        uid,
        api_version: version,
        resource_version: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_and_generic_bodies() {
        let st = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"nope","reason":"Forbidden","code":403,"details":{"retryAfterSeconds":7}}"#;
        let e = parse_api_error(403, false, None, st);
        assert!(e.is_status && e.is_forbidden(), "{e:?}");
        assert_eq!(e.message, "nope");
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        let e = parse_api_error(429, false, Some(Duration::from_secs(3)), st);
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)), "header wins");

        let e = parse_api_error(404, false, None, b"404 page not found\n");
        assert!(!e.is_status && e.is_not_found(), "{e:?}");
        assert!(e.message.contains("404 page not found"), "{}", e.message);
        let e = parse_api_error(502, false, None, br#"{"kind":"Other","status":"x"}"#);
        assert!(!e.is_status);
        assert_eq!(e.reason, "InternalError");
        let e = parse_api_error(401, false, None, b"");
        assert!(!e.is_status && e.is_unauthorized());
        // NewGenericServerResponse: a conflict is AlreadyExists only for a POST.
        let e = parse_api_error(409, false, None, b"conflict");
        assert_eq!(e.reason, "Conflict");
        let e = parse_api_error(409, true, None, b"conflict");
        assert!(e.is_already_exists(), "{e:?}");
    }
}
