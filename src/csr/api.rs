//! Serde types of the `certificates.k8s.io` API objects certrotate reads and writes, with the
//! exact JSON field names of Kubernetes (`camelCase`, byte fields as base64 strings).
//!
//! Shared by the client ([`KubeCsrClient`](crate::csr::KubeCsrClient)) and the embedded server.
//! Only the fields certificate rotation needs are typed; unknown fields are ignored on input.
//! Usages stay strings here so that a value this crate does not know survives a round trip and
//! the server can reject it with the API's own wording; [`KeyUsage`](crate::KeyUsage) converts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `certificates.k8s.io/v1`.
pub const API_VERSION_V1: &str = "certificates.k8s.io/v1";
/// `certificates.k8s.io/v1beta1` (removed from servers in Kubernetes 1.22).
pub const API_VERSION_V1BETA1: &str = "certificates.k8s.io/v1beta1";
/// The kind of a CSR object.
pub const KIND_CSR: &str = "CertificateSigningRequest";
/// The kind of a list of CSR objects.
pub const KIND_CSR_LIST: &str = "CertificateSigningRequestList";
/// The signer name v1 refuses (`kubernetes.io/legacy-unknown`).
pub const LEGACY_UNKNOWN_SIGNER: &str = "kubernetes.io/legacy-unknown";
/// The API minimum for `spec.expirationSeconds`.
pub const MIN_EXPIRATION_SECONDS: i32 = 600;

/// Converts a requested lifetime to `spec.expirationSeconds`: whole seconds, truncated (as
/// client-go's `DurationToExpirationSeconds`), saturating at `i32::MAX`.
pub fn duration_to_expiration_seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// Converts `spec.expirationSeconds` back to a duration; negative values give zero.
pub fn expiration_seconds_to_duration(secs: i32) -> Duration {
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// `metav1.ObjectMeta`, the fields used here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Prefix for a server-generated name (`csr-` in client-go).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// Server-assigned unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Opaque version used by watches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// RFC 3339 deletion time, when being deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations (watch-list bookmarks carry `k8s.io/initial-events-end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `metav1.ListMeta`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    /// The list's resource version, where a watch may start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Continuation token for paged lists.
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// A `CertificateSigningRequest` (v1; v1beta1 has the same JSON shape for these fields).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSigningRequest {
    /// `certificates.k8s.io/v1` or `…/v1beta1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `CertificateSigningRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What is requested.
    #[serde(default)]
    pub spec: CsrSpec,
    /// What happened to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CsrStatus>,
}

/// `CertificateSigningRequestSpec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsrSpec {
    /// The PEM `CERTIFICATE REQUEST`, base64 in JSON.
    #[serde(default, with = "base64_bytes")]
    pub request: Vec<u8>,
    /// Signer name, e.g. `kubernetes.io/kubelet-serving`. Required in v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_name: Option<String>,
    /// Requested lifetime in seconds (≥ 600), advisory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<i32>,
    /// Requested key usages, as the API's strings (`digital signature`, `client auth`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<String>,
    /// Requesting user, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Requesting user's uid, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Requesting user's groups, set by the server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Requesting user's extra attributes, set by the server.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// `CertificateSigningRequestStatus`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsrStatus {
    /// Approved / Denied / Failed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<CsrCondition>,
    /// The issued PEM chain (leaf first), base64 in JSON.
    #[serde(
        default,
        with = "option_base64_bytes",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate: Option<Vec<u8>>,
}

/// Condition type `Approved`.
pub const CONDITION_APPROVED: &str = "Approved";
/// Condition type `Denied`.
pub const CONDITION_DENIED: &str = "Denied";
/// Condition type `Failed`.
pub const CONDITION_FAILED: &str = "Failed";

/// `CertificateSigningRequestCondition`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsrCondition {
    /// `Approved`, `Denied` or `Failed`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: String,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// `CertificateSigningRequestList`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsrList {
    /// `certificates.k8s.io/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `CertificateSigningRequestList`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// List metadata (resource version to watch from).
    #[serde(default)]
    pub metadata: ListMeta,
    /// The objects.
    #[serde(default)]
    pub items: Vec<CertificateSigningRequest>,
}

/// One line of a watch stream: `{"type": "ADDED", "object": {…}}`. `object` stays raw JSON
/// because its type depends on `type` (a CSR, or a [`Status`] for `ERROR`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The object.
    pub object: serde_json::Value,
}

/// `metav1.Status`, the body of every API error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `Status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Always present (may be empty).
    #[serde(default)]
    pub metadata: ListMeta,
    /// `Success` or `Failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, `Invalid`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Extra detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    /// HTTP status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

/// `metav1.StatusDetails`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    /// Object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// API group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Resource kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Object uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Field-level causes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    /// Seconds to wait before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<i32>,
}

/// `metav1.StatusCause`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusCause {
    /// Cause type (`FieldValueRequired`, `FieldValueNotSupported`, `UnexpectedServerResponse`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The field path (`spec.usages[0]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Status {
    /// A `Failure` status with the given code, reason and message.
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Status {
        Status {
            kind: Some("Status".into()),
            api_version: Some("v1".into()),
            metadata: ListMeta::default(),
            status: Some("Failure".into()),
            message: Some(message.into()),
            reason: Some(reason.into()),
            details: None,
            code: Some(i32::from(code)),
        }
    }
}

/// The reason the API uses for an HTTP code when a body gives none (apimachinery
/// `NewGenericServerResponse`).
pub fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

mod option_base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_str(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => STANDARD
                .decode(s.as_bytes())
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_json_uses_kubernetes_field_names_and_base64() {
        let csr = CertificateSigningRequest {
            api_version: Some(API_VERSION_V1.into()),
            kind: Some(KIND_CSR.into()),
            metadata: ObjectMeta {
                generate_name: Some("csr-".into()),
                ..ObjectMeta::default()
            },
            spec: CsrSpec {
                request: b"PEM".to_vec(),
                signer_name: Some("kubernetes.io/kubelet-serving".into()),
                expiration_seconds: Some(3600),
                usages: vec!["digital signature".into(), "server auth".into()],
                ..CsrSpec::default()
            },
            status: None,
        };
        let json = serde_json::to_value(&csr).unwrap();
        assert_eq!(json["metadata"]["generateName"], "csr-");
        assert_eq!(json["spec"]["request"], "UEVN");
        assert_eq!(json["spec"]["signerName"], "kubernetes.io/kubelet-serving");
        assert_eq!(json["spec"]["expirationSeconds"], 3600);
        assert!(json.get("status").is_none());
        let back: CertificateSigningRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, csr);
    }

    #[test]
    fn status_certificate_decodes_and_empty_is_none() {
        let s: CsrStatus = serde_json::from_str(
            r#"{"conditions":[{"type":"Approved","status":"True"}],"certificate":"UEVN"}"#,
        )
        .unwrap();
        assert_eq!(s.certificate.as_deref(), Some(&b"PEM"[..]));
        assert_eq!(s.conditions[0].type_, CONDITION_APPROVED);
        let s: CsrStatus = serde_json::from_str(r#"{"certificate":""}"#).unwrap();
        assert_eq!(s.certificate, None);
        assert!(serde_json::from_str::<CsrStatus>(r#"{"certificate":"!!"}"#).is_err());
    }

    #[test]
    fn expiration_seconds_truncates_and_saturates() {
        assert_eq!(
            duration_to_expiration_seconds(Duration::from_millis(600_999)),
            600
        );
        assert_eq!(
            duration_to_expiration_seconds(Duration::from_secs(u64::MAX)),
            i32::MAX
        );
        assert_eq!(expiration_seconds_to_duration(-5), Duration::ZERO);
    }
}
