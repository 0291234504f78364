//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) for
//! CSRs: typed client-go clients, the kubelet and kubectl's `certificate approve|deny` among
//! them, send their `PUT`s and `POST`s this way. Only decoding; answers are always JSON, which
//! those clients accept.
//!
//! The body is the apimachinery envelope: the magic `k8s\0`, then a `runtime.Unknown`
//! (`typeMeta` = 1, `raw` = 2) whose `raw` is the message. The messages below are declared with
//! `prost` and carry the field numbers of the upstream definitions, copied from
//! `k8s.io/api/certificates/v1/generated.proto` (`CertificateSigningRequest`, its spec, status
//! and condition), `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto` (`ObjectMeta`,
//! `Time`, `DeleteOptions`, `Preconditions`) and `k8s.io/apimachinery/pkg/runtime/generated.proto`
//! (`Unknown`, `TypeMeta`). Fields the server does not read are left out (prost skips them).
//!
//! Go's protobuf encoder writes every non-pointer field, empty strings included; as in Go, an
//! empty string or an empty `Time` means unset.

use std::collections::BTreeMap;

use prost::Message;

use crate::csr::api::{CertificateSigningRequest, CsrCondition, CsrStatus};
use crate::pki::{fmt_time, unix_to_system_time};

/// The content type of Kubernetes protobuf.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

/// `runtime.Unknown`.
#[derive(Clone, PartialEq, prost::Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
}

/// `runtime.TypeMeta`.
#[derive(Clone, PartialEq, prost::Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

/// `certificates.v1.CertificateSigningRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct CsrPb {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMetaPb>,
    #[prost(message, optional, tag = "2")]
    spec: Option<SpecPb>,
    #[prost(message, optional, tag = "3")]
    status: Option<StatusPb>,
}

/// `meta.v1.ObjectMeta` (the fields a CSR uses).
#[derive(Clone, PartialEq, prost::Message)]
struct ObjectMetaPb {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    generate_name: Option<String>,
    #[prost(string, optional, tag = "5")]
    uid: Option<String>,
    #[prost(string, optional, tag = "6")]
    resource_version: Option<String>,
    #[prost(message, optional, tag = "8")]
    creation_timestamp: Option<TimePb>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
}

/// `meta.v1.Time` (a `Timestamp`: seconds and nanos since the Unix epoch). Go writes the zero
/// time as an empty message.
#[derive(Clone, PartialEq, prost::Message)]
struct TimePb {
    #[prost(int64, optional, tag = "1")]
    seconds: Option<i64>,
    #[prost(int32, optional, tag = "2")]
    nanos: Option<i32>,
}

/// `certificates.v1.CertificateSigningRequestSpec`.
#[derive(Clone, PartialEq, prost::Message)]
struct SpecPb {
    #[prost(bytes = "vec", optional, tag = "1")]
    request: Option<Vec<u8>>,
    #[prost(string, optional, tag = "2")]
    username: Option<String>,
    #[prost(string, optional, tag = "3")]
    uid: Option<String>,
    #[prost(string, repeated, tag = "4")]
    groups: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    usages: Vec<String>,
    #[prost(btree_map = "string, message", tag = "6")]
    extra: BTreeMap<String, ExtraValuePb>,
    #[prost(string, optional, tag = "7")]
    signer_name: Option<String>,
    #[prost(int32, optional, tag = "8")]
    expiration_seconds: Option<i32>,
}

/// `certificates.v1.ExtraValue`.
#[derive(Clone, PartialEq, prost::Message)]
struct ExtraValuePb {
    #[prost(string, repeated, tag = "1")]
    items: Vec<String>,
}

/// `certificates.v1.CertificateSigningRequestStatus`.
#[derive(Clone, PartialEq, prost::Message)]
struct StatusPb {
    #[prost(message, repeated, tag = "1")]
    conditions: Vec<ConditionPb>,
    #[prost(bytes = "vec", optional, tag = "2")]
    certificate: Option<Vec<u8>>,
}

/// `certificates.v1.CertificateSigningRequestCondition`.
#[derive(Clone, PartialEq, prost::Message)]
struct ConditionPb {
    #[prost(string, optional, tag = "1")]
    type_: Option<String>,
    #[prost(string, optional, tag = "2")]
    reason: Option<String>,
    #[prost(string, optional, tag = "3")]
    message: Option<String>,
    #[prost(message, optional, tag = "4")]
    last_update_time: Option<TimePb>,
    #[prost(message, optional, tag = "5")]
    last_transition_time: Option<TimePb>,
    #[prost(string, optional, tag = "6")]
    status: Option<String>,
}

/// `meta.v1.DeleteOptions` (the fields the server reads).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeleteOptionsPb {
    #[prost(message, optional, tag = "2")]
    pub preconditions: Option<PreconditionsPb>,
    #[prost(string, repeated, tag = "5")]
    pub dry_run: Vec<String>,
}

/// `meta.v1.Preconditions`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PreconditionsPb {
    #[prost(string, optional, tag = "1")]
    pub uid: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub resource_version: Option<String>,
}

/// An empty string is unset, as in Go.
fn set(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// `meta.v1.Time` → RFC 3339; the empty message (Go's zero time) is unset.
fn time(t: Option<TimePb>) -> Option<String> {
    let secs = t?.seconds?;
    Some(fmt_time(unix_to_system_time(secs)))
}

/// The envelope's type (`apiVersion`, `kind`) and raw message.
pub(crate) fn envelope(body: &[u8]) -> Result<((String, String), Vec<u8>), String> {
    let (tm, raw) = envelope_meta(body)?;
    Ok((
        (
            tm.api_version.unwrap_or_default(),
            tm.kind.unwrap_or_default(),
        ),
        raw,
    ))
}

fn envelope_meta(body: &[u8]) -> Result<(TypeMeta, Vec<u8>), String> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf envelope")?;
    let u = Unknown::decode(unknown).map_err(|e| e.to_string())?;
    Ok((u.type_meta.unwrap_or_default(), u.raw.unwrap_or_default()))
}

/// Decodes a protobuf CSR body (with its envelope).
pub(crate) fn decode_csr(body: &[u8]) -> Result<CertificateSigningRequest, String> {
    let (tm, raw) = envelope_meta(body)?;
    let pb = CsrPb::decode(raw.as_slice()).map_err(|e| e.to_string())?;
    let mut out = CertificateSigningRequest {
        api_version: set(tm.api_version),
        kind: set(tm.kind),
        ..CertificateSigningRequest::default()
    };
    if let Some(m) = pb.metadata {
        let o = &mut out.metadata;
        o.name = set(m.name);
        o.generate_name = set(m.generate_name);
        o.uid = set(m.uid);
        o.resource_version = set(m.resource_version);
        o.creation_timestamp = time(m.creation_timestamp);
        o.labels = (!m.labels.is_empty()).then_some(m.labels);
        o.annotations = (!m.annotations.is_empty()).then_some(m.annotations);
    }
    if let Some(s) = pb.spec {
        let o = &mut out.spec;
        o.request = s.request.unwrap_or_default();
        o.username = set(s.username);
        o.uid = set(s.uid);
        o.groups = s.groups;
        o.usages = s.usages;
        o.extra = s.extra.into_iter().map(|(k, v)| (k, v.items)).collect();
        o.signer_name = set(s.signer_name);
        o.expiration_seconds = s.expiration_seconds;
    }
    out.status = pb.status.map(|st| CsrStatus {
        conditions: st
            .conditions
            .into_iter()
            .map(|c| CsrCondition {
                type_: c.type_.unwrap_or_default(),
                status: c.status.unwrap_or_default(),
                reason: set(c.reason),
                message: set(c.message),
                last_update_time: time(c.last_update_time),
                last_transition_time: time(c.last_transition_time),
            })
            .collect(),
        certificate: st.certificate.filter(|c| !c.is_empty()),
    });
    Ok(out)
}

/// Decodes a protobuf `DeleteOptions` body (with its envelope).
pub(crate) fn decode_delete_options(body: &[u8]) -> Result<DeleteOptionsPb, String> {
    let (_, raw) = envelope_meta(body)?;
    DeleteOptionsPb::decode(raw.as_slice()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    //! Against bodies written by client-go's own serializers (tests/vectors/client-go-csr, field
    //! values from its README), never against an encoder of ours.

    use super::*;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/client-go-csr/");
    const REQUEST: &[u8] =
        b"-----BEGIN CERTIFICATE REQUEST-----\nTESTVECTOR\n-----END CERTIFICATE REQUEST-----\n";
    const ISSUED: &[u8] = b"-----BEGIN CERTIFICATE-----\nISSUED\n-----END CERTIFICATE-----\n";

    /// The `.pb` and the `.json` of one vector, each decoded as the server decodes it.
    fn both(name: &str) -> [CertificateSigningRequest; 2] {
        let pb = std::fs::read(format!("{VECTORS}{name}.pb")).unwrap();
        let json = std::fs::read(format!("{VECTORS}{name}.json")).unwrap();
        [
            decode_csr(&pb).unwrap(),
            serde_json::from_slice(&json).unwrap(),
        ]
    }

    fn assert_create_fields(o: &CertificateSigningRequest) {
        assert_eq!(o.api_version.as_deref(), Some("certificates.k8s.io/v1"));
        assert_eq!(o.kind.as_deref(), Some("CertificateSigningRequest"));
        let labels = o.metadata.labels.as_ref().unwrap();
        assert_eq!(labels.len(), 1);
        assert_eq!(labels["app"], "vec");
        assert_eq!(o.spec.request, REQUEST);
        assert_eq!(
            o.spec.signer_name.as_deref(),
            Some("kubernetes.io/kube-apiserver-client-kubelet")
        );
        assert_eq!(o.spec.expiration_seconds, Some(3600));
        assert_eq!(
            o.spec.usages,
            ["digital signature", "key encipherment", "client auth"]
        );
    }

    fn assert_stored_fields(o: &CertificateSigningRequest) {
        assert_create_fields(o);
        assert_eq!(o.metadata.name.as_deref(), Some("csr-abcde"));
        assert_eq!(o.metadata.generate_name, None);
        assert_eq!(o.spec.username.as_deref(), Some("system:node:node-1"));
        assert_eq!(o.spec.uid.as_deref(), Some("uid-1234"));
        assert_eq!(o.spec.groups, ["system:nodes", "system:authenticated"]);
        assert_eq!(o.spec.extra.len(), 1);
        assert_eq!(o.spec.extra["scopes"], ["a", "b"]);
    }

    fn assert_approval_fields(o: &CertificateSigningRequest) {
        assert_stored_fields(o);
        assert_eq!(o.metadata.resource_version.as_deref(), Some("7"));
        let st = o.status.as_ref().unwrap();
        assert_eq!(st.conditions.len(), 1);
        let c = &st.conditions[0];
        assert_eq!(c.type_, "Approved");
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("KubectlApprove"));
        assert_eq!(c.message.as_deref(), Some("approved by test"));
        assert_eq!(c.last_update_time.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(c.last_transition_time, None);
    }

    #[test]
    fn client_go_create_body_decodes_every_field() {
        for o in both("create") {
            assert_create_fields(&o);
            assert_eq!(o.metadata.generate_name.as_deref(), Some("csr-"));
            assert_eq!(o.metadata.name, None);
            assert_eq!(o.metadata.resource_version, None);
            assert_eq!(o.spec.username, None);
            assert_eq!(o.spec.uid, None);
            assert!(o.spec.groups.is_empty() && o.spec.extra.is_empty());
            assert!(o.status.unwrap_or_default().conditions.is_empty());
        }
    }

    #[test]
    fn client_go_stored_spec_body_decodes_every_field() {
        for o in both("stored-spec") {
            assert_stored_fields(&o);
            let st = o.status.unwrap_or_default();
            assert!(st.conditions.is_empty() && st.certificate.is_none());
        }
    }

    #[test]
    fn client_go_approval_body_decodes_every_field() {
        for o in both("approval") {
            assert_approval_fields(&o);
            assert_eq!(o.status.unwrap().certificate, None);
        }
    }

    #[test]
    fn client_go_status_body_decodes_every_field() {
        for o in both("status-issued") {
            assert_approval_fields(&o);
            assert_eq!(o.status.unwrap().certificate.as_deref(), Some(ISSUED));
        }
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let good = std::fs::read(format!("{VECTORS}approval.pb")).unwrap();
        assert!(decode_csr(b"{}").is_err(), "no envelope");
        assert!(decode_csr(b"k8s\0\x12\x05ab").is_err(), "truncated raw");
        // Every truncation of a real body is an error or a partial object, never a panic.
        for n in 0..good.len() {
            let _ = decode_csr(&good[..n]);
        }
        let mut wrong_wire = good.clone();
        // Field 2 of the envelope as a varint instead of bytes: prost refuses it.
        wrong_wire[4..].copy_from_slice(&[0x10; 1].repeat(good.len() - 4));
        assert!(decode_csr(&wrong_wire).is_err());
    }
}
