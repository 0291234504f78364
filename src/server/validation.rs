//! Validation of CSR objects as kube-apiserver does it (`pkg/apis/certificates/validation`), with
//! its field paths, error types and wording, and the `422 Invalid` `Status` built from them.
//!
//! Create: the request must be a signed `CERTIFICATE REQUEST` PEM; usages required, known, not
//! repeated; signerName required, well-formed, not `kubernetes.io/legacy-unknown`;
//! `expirationSeconds` ≥ 600. Updates (`PUT`, `/approval`, `/status`): conditions well-formed,
//! never removed; Approved/Denied only through `/approval`; the certificate only through
//! `/status`, once, and made of header-free `CERTIFICATE` blocks.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::csr::KeyUsage;
use crate::csr::api::{
    CONDITION_APPROVED, CONDITION_DENIED, CONDITION_FAILED, CertificateSigningRequest,
    LEGACY_UNKNOWN_SIGNER, MIN_EXPIRATION_SECONDS, ObjectMeta, Status, StatusCause, StatusDetails,
};
use crate::pki::{CertInfo, ParsedCsr, parse_csr_pem};

/// The group of the CSR API.
pub(crate) const GROUP: &str = "certificates.k8s.io";
/// The resource name.
pub(crate) const RESOURCE: &str = "certificatesigningrequests";

/// apimachinery `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    TooLong,
    Forbidden,
}

impl Kind {
    fn text(self) -> &'static str {
        match self {
            Kind::Required => "Required value",
            Kind::Invalid => "Invalid value",
            Kind::NotSupported => "Unsupported value",
            Kind::Duplicate => "Duplicate value",
            Kind::TooLong => "Too long",
            Kind::Forbidden => "Forbidden",
        }
    }

    fn cause(self) -> &'static str {
        match self {
            Kind::Required => "FieldValueRequired",
            Kind::Invalid => "FieldValueInvalid",
            Kind::NotSupported => "FieldValueNotSupported",
            Kind::Duplicate => "FieldValueDuplicate",
            Kind::TooLong => "FieldValueTooLong",
            Kind::Forbidden => "FieldValueForbidden",
        }
    }
}

/// The bad value, printed as apimachinery's `field.Error.ErrorBody` prints it: strings quoted,
/// numbers plain, anything else as its JSON (`json.Marshal`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Omit,
    Str(String),
    Int(i64),
    /// A Go `[]byte`: its JSON, base64 in quotes, or `null` for a nil slice (`None`).
    Bytes(Option<Vec<u8>>),
    /// A value already printed as Go's `json.Marshal` would.
    Json(String),
}

/// One field error (apimachinery `field.Error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub kind: Kind,
    pub field: String,
    pub value: Value,
    pub detail: String,
}

impl FieldError {
    fn new(kind: Kind, field: &str, value: Value, detail: impl Into<String>) -> FieldError {
        FieldError {
            kind,
            field: field.to_owned(),
            value,
            detail: detail.into(),
        }
    }

    /// `ErrorBody()`: the message without the field path.
    pub fn body(&self) -> String {
        let mut s = self.kind.text().to_owned();
        let show_value = !matches!(self.kind, Kind::Required | Kind::Forbidden | Kind::TooLong);
        if show_value {
            match &self.value {
                Value::Omit => {}
                Value::Str(v) => {
                    let _ = write!(s, ": {}", go_quote(v));
                }
                Value::Int(v) => {
                    let _ = write!(s, ": {v}");
                }
                Value::Bytes(None) => s.push_str(": null"),
                Value::Bytes(Some(b)) => {
                    use base64::Engine;
                    let b64 = base64::engine::general_purpose::STANDARD.encode(b);
                    let _ = write!(s, ": \"{b64}\"");
                }
                Value::Json(j) => {
                    let _ = write!(s, ": {j}");
                }
            }
        }
        if !self.detail.is_empty() {
            let _ = write!(s, ": {}", self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Go's `unicode.IsPrint`, as far as this crate can tell without Unicode category tables:
/// control characters, whitespace other than U+0020 and the common format characters (soft
/// hyphen, zero-width and bidirectional marks, the byte-order mark) are not printable.
pub(crate) fn go_is_print(c: char) -> bool {
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

/// Go's `strconv.Quote` (and so `%q` of a string): `"` and `\` escaped, the short escapes
/// `\a \b \f \n \r \t \v`, other unprintable characters as `\xNN` below U+0080 and
/// `\uNNNN` or `\UNNNNNNNN` above.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// The `422 Invalid` status of apimachinery's `NewInvalid` for a CSR named `name`.
pub(crate) fn invalid_status(name: &str, errs: &[FieldError]) -> Status {
    invalid_status_of(GROUP, "CertificateSigningRequest", name, errs)
}

/// apimachinery's `NewInvalid` for an object of kind `kind` in `group`: 422 `Invalid`, the
/// message `Kind.group "name" is invalid: …`, one cause per error.
pub(crate) fn invalid_status_of(
    group: &str,
    kind: &str,
    name: &str,
    errs: &[FieldError],
) -> Status {
    let agg = match errs {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut st = Status::failure(
        422,
        "Invalid",
        format!("{kind}.{group} {} is invalid: {agg}", go_quote(name)),
    );
    st.details = Some(StatusDetails {
        name: Some(name.to_owned()).filter(|n| !n.is_empty()),
        group: Some(group.to_owned()),
        kind: Some(kind.to_owned()).filter(|k| !k.is_empty()),
        causes: errs
            .iter()
            .map(|e| StatusCause {
                reason: Some(e.kind.cause().to_owned()),
                message: Some(e.body()),
                field: Some(e.field.clone()),
            })
            .collect(),
        ..StatusDetails::default()
    });
    st
}

/// Create validation (`validateCertificateSigningRequest` in
/// `pkg/apis/certificates/validation/validation.go`). Returns the errors and, when the request
/// itself is valid, its parsed form. `allow_legacy` admits `kubernetes.io/legacy-unknown`
/// (v1beta1 creates only); `request_given` tells a nil `spec.request` (printed `null`) from an
/// empty one (`""`).
pub(crate) fn validate_create(
    csr: &CertificateSigningRequest,
    allow_legacy: bool,
    request_given: bool,
) -> (Vec<FieldError>, Option<ParsedCsr>) {
    let mut errs = Vec::new();
    let name = csr.metadata.name.as_deref().unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::new(
            Kind::Required,
            "metadata.name",
            Value::Omit,
            "name or generateName is required",
        ));
    } else if let Some(msg) = path_segment_problem(name) {
        errs.push(FieldError::new(
            Kind::Invalid,
            "metadata.name",
            Value::Str(name.to_owned()),
            msg,
        ));
    }
    errs.extend(validate_labels_and_annotations(&csr.metadata));
    let parsed = match parse_csr_pem(&csr.spec.request) {
        Ok(p) => Some(p),
        Err(e) => {
            errs.push(FieldError::new(
                Kind::Invalid,
                "spec.request",
                Value::Bytes(request_given.then(|| csr.spec.request.clone())),
                csr_error_text(&csr.spec.request, &e),
            ));
            None
        }
    };
    if csr.spec.usages.is_empty() {
        errs.push(FieldError::new(
            Kind::Required,
            "spec.usages",
            Value::Omit,
            "",
        ));
    }
    let mut supported: Vec<&str> = KeyUsage::ALL.iter().map(KeyUsage::as_str).collect();
    supported.sort_unstable();
    let supported = format!(
        "supported values: {}",
        supported
            .iter()
            .map(|s| go_quote(s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (i, u) in csr.spec.usages.iter().enumerate() {
        if u.parse::<KeyUsage>().is_err() {
            errs.push(FieldError::new(
                Kind::NotSupported,
                &format!("spec.usages[{i}]"),
                Value::Str(u.clone()),
                supported.clone(),
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, u) in csr.spec.usages.iter().enumerate() {
        if !seen.insert(u.as_str()) {
            errs.push(FieldError::new(
                Kind::Duplicate,
                &format!("spec.usages[{i}]"),
                Value::Str(u.clone()),
                "",
            ));
        }
    }
    let signer = csr.spec.signer_name.as_deref().unwrap_or("");
    if signer == LEGACY_UNKNOWN_SIGNER && !allow_legacy {
        errs.push(FieldError::new(
            Kind::Invalid,
            "spec.signerName",
            Value::Str(signer.to_owned()),
            "the legacy signerName is not allowed via this API version",
        ));
    } else {
        errs.extend(validate_signer_name("spec.signerName", signer));
    }
    if let Some(secs) = csr.spec.expiration_seconds
        && secs < MIN_EXPIRATION_SECONDS
    {
        errs.push(FieldError::new(
            Kind::Invalid,
            "spec.expirationSeconds",
            Value::Int(i64::from(secs)),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    (errs, parsed)
}

/// The text kube-apiserver gives for a bad request (`validateCSR`: `certificates.ParseCSR`, then
/// Go's `CertificateRequest.CheckSignature`): no PEM block, or a first block of another type, is
/// `PEM block type must be CERTIFICATE REQUEST`; a signature that does not verify is Go's
/// error for the key type. DER that does not parse keeps this crate's text (Go's ASN.1 errors
/// name its own parser's steps).
fn csr_error_text(pem: &[u8], e: &crate::pki::PkiError) -> String {
    let m = match e {
        crate::pki::PkiError::InvalidCsr(m) => m.clone(),
        other => other.to_string(),
    };
    if m == "PEM block not found" || m.starts_with("cannot read PEM") {
        return "PEM block type must be CERTIFICATE REQUEST".to_owned();
    }
    if m.starts_with("CSR signature does not verify") {
        return go_signature_error(pem).unwrap_or(m);
    }
    m
}

/// Go's `checkSignature` error for the CSR's public key type.
fn go_signature_error(pem: &[u8]) -> Option<String> {
    use rustls::pki_types::pem::{PemObject, SectionKind};
    use x509_parser::prelude::{FromDer, X509CertificationRequest};
    let (_, der) = <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem)
        .next()?
        .ok()?;
    let (_, csr) = X509CertificationRequest::from_der(&der).ok()?;
    let alg = csr
        .certification_request_info
        .subject_pki
        .algorithm
        .algorithm
        .to_id_string();
    let text = match alg.as_str() {
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => "crypto/rsa: verification error",
        "1.2.840.10045.2.1" => "x509: ECDSA verification failure",
        "1.3.101.112" => "x509: Ed25519 verification failure",
        _ => return None,
    };
    Some(text.to_owned())
}

/// apimachinery `path.IsValidPathSegmentName`: names become URL path segments.
fn path_segment_problem(name: &str) -> Option<String> {
    if name == "." || name == ".." {
        return Some(format!("may not be '{name}'"));
    }
    ["/", "%"]
        .iter()
        .find(|bad| name.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
}

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// apimachinery `IsDNS1123Label`.
fn dns1123_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !is_label_chars(s) {
        errs.push("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_owned());
    }
    errs
}

/// apimachinery `IsDNS1123Subdomain`.
fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if !s.split('.').all(is_label_chars) {
        errs.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_owned());
    }
    errs
}

/// apimachinery's `RegexError`: `msg (e.g. 'a',  or 'b', regex used for validation is 'fmt')`.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        let _ = write!(s, "'{e}', ");
    }
    let _ = write!(s, "regex used for validation is '{fmt}')");
    s
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, whole.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_alphanumeric();
    b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// apimachinery `IsQualifiedName` as kube-apiserver 1.37 checks label keys, label selector keys
/// and annotation keys: an optional DNS-1123 subdomain prefix and `/`, then a name part of at
/// most 63 bytes of `[-A-Za-z0-9_.]` that starts and ends alphanumeric. A key with more than
/// one `/` is "a valid label key …" (the wording the real apiserver answers).
pub(crate) fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                errs.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 bytes".to_owned());
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// apimachinery `IsValidLabelValue`: empty, or at most 63 bytes of a qualified name part.
pub(crate) fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 bytes".to_owned());
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            &format!("({QUALIFIED_NAME_FMT})?"),
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// The labels and annotations part of `ValidateObjectMeta`: each label key a qualified name and
/// each value a label value (`ValidateLabels`), each annotation key a qualified name once
/// lower-cased (`ValidateAnnotations`); every error on the field `metadata.labels` or
/// `metadata.annotations` with the bad key or value. Keys are checked in their sorted order
/// (Go walks the maps in a random one).
pub(crate) fn validate_labels_and_annotations(meta: &ObjectMeta) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let invalid = |field: &str, v: &str, m: String| {
        FieldError::new(Kind::Invalid, field, Value::Str(v.to_owned()), m)
    };
    for (k, v) in meta.labels.iter().flatten() {
        for m in qualified_name_errors(k) {
            errs.push(invalid("metadata.labels", k, m));
        }
        for m in label_value_errors(v) {
            errs.push(invalid("metadata.labels", v, m));
        }
    }
    for k in meta.annotations.iter().flatten().map(|(k, _)| k) {
        for m in qualified_name_errors(&k.to_lowercase()) {
            errs.push(invalid("metadata.annotations", k, m));
        }
    }
    errs
}

/// `ValidateCertificateSigningRequestSignerName`: `domain/path`, the domain ≤ 253 characters of
/// DNS-1123 labels with at least two of them, the path DNS-1123 subdomains, the whole ≤ 571.
pub(crate) fn validate_signer_name(field: &str, signer: &str) -> Vec<FieldError> {
    let mut el = Vec::new();
    if signer.is_empty() {
        el.push(FieldError::new(Kind::Required, field, Value::Omit, ""));
        return el;
    }
    let segments: Vec<&str> = signer.split('/').collect();
    let [domain, path] = segments[..] else {
        el.push(FieldError::new(
            Kind::Invalid,
            field,
            Value::Str(signer.to_owned()),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return el;
    };
    if domain.len() > DNS1123_SUBDOMAIN_MAX {
        el.push(FieldError::new(
            Kind::TooLong,
            field,
            Value::Str(domain.to_owned()),
            format!("may not be more than {DNS1123_SUBDOMAIN_MAX} bytes"),
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if let Some((lbl, errs)) = labels
        .iter()
        .map(|l| (l, dns1123_label_errors(l)))
        .find(|(_, e)| !e.is_empty())
    {
        for e in errs {
            el.push(FieldError::new(
                Kind::Invalid,
                field,
                Value::Str(domain.to_owned()),
                format!("validating label {}: {e}", go_quote(lbl)),
            ));
        }
    }
    if labels.len() < 2 {
        el.push(FieldError::new(
            Kind::Invalid,
            field,
            Value::Str(domain.to_owned()),
            "should be a domain with at least two segments separated by dots",
        ));
    }
    if let Some((lbl, errs)) = path
        .split('.')
        .map(|l| (l, dns1123_subdomain_errors(l)))
        .find(|(_, e)| !e.is_empty())
    {
        for e in errs {
            el.push(FieldError::new(
                Kind::Invalid,
                field,
                Value::Str(path.to_owned()),
                format!("validating label {}: {e}", go_quote(lbl)),
            ));
        }
    }
    let max = DNS1123_SUBDOMAIN_MAX + (DNS1123_SUBDOMAIN_MAX + DNS1123_LABEL_MAX + 1) + 1;
    if signer.len() > max {
        el.push(FieldError::new(
            Kind::TooLong,
            field,
            Value::Str(signer.to_owned()),
            format!("may not be more than {max} bytes"),
        ));
    }
    el
}

/// Which update path a change comes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpdatePath {
    /// `PUT …/{name}`.
    Main,
    /// `PUT …/{name}/approval`.
    Approval,
    /// `PUT …/{name}/status`.
    Status,
}

/// Update validation of the status part (conditions and certificate), new against old.
pub(crate) fn validate_update(
    new: &CertificateSigningRequest,
    old: &CertificateSigningRequest,
    path: UpdatePath,
) -> Vec<FieldError> {
    let mut errs = validate_labels_and_annotations(&new.metadata);
    let empty = Vec::new();
    let new_conds = new.status.as_ref().map_or(&empty, |s| &s.conditions);
    let old_conds = old.status.as_ref().map_or(&empty, |s| &s.conditions);
    let mut seen = HashSet::new();
    let (mut approved, mut denied) = (false, false);
    for (i, c) in new_conds.iter().enumerate() {
        let at = |f: &str| format!("status.conditions[{i}].{f}");
        if c.type_.is_empty() {
            errs.push(FieldError::new(
                Kind::Required,
                &at("type"),
                Value::Omit,
                "",
            ));
        }
        let true_only =
            [CONDITION_APPROVED, CONDITION_DENIED, CONDITION_FAILED].contains(&c.type_.as_str());
        let allowed: &[&str] = if true_only {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        if c.status.is_empty() {
            errs.push(FieldError::new(
                Kind::Required,
                &at("status"),
                Value::Omit,
                "",
            ));
        } else if !allowed.contains(&c.status.as_str()) {
            errs.push(FieldError::new(
                Kind::NotSupported,
                &at("status"),
                Value::Str(c.status.clone()),
                format!(
                    "supported values: {}",
                    allowed
                        .iter()
                        .map(|s| go_quote(s))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let exclusive = match c.type_.as_str() {
            CONDITION_APPROVED => {
                approved = true;
                denied
            }
            CONDITION_DENIED => {
                denied = true;
                approved
            }
            _ => false,
        };
        if exclusive {
            errs.push(FieldError::new(
                Kind::Invalid,
                &at("type"),
                Value::Str(c.type_.clone()),
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        if !seen.insert(c.type_.as_str()) {
            errs.push(FieldError::new(
                Kind::Duplicate,
                &at("type"),
                Value::Str(c.type_.clone()),
                "",
            ));
        }
    }
    let count = |cs: &[crate::csr::api::CsrCondition], t: &str| {
        cs.iter()
            .filter(|c| c.type_ == t)
            .cloned()
            .collect::<Vec<_>>()
    };
    for t in [CONDITION_APPROVED, CONDITION_DENIED, CONDITION_FAILED] {
        if count(new_conds, t).len() < count(old_conds, t).len() {
            errs.push(FieldError::new(
                Kind::Forbidden,
                "status.conditions",
                Value::Omit,
                format!("updates may not remove a condition of type {}", go_quote(t)),
            ));
        }
    }
    if path != UpdatePath::Approval {
        for t in [CONDITION_APPROVED, CONDITION_DENIED] {
            let (n, o) = (count(new_conds, t), count(old_conds, t));
            if n.len() > o.len() {
                errs.push(FieldError::new(
                    Kind::Forbidden,
                    "status.conditions",
                    Value::Omit,
                    format!("updates may not add a condition of type {}", go_quote(t)),
                ));
            } else if n.len() == o.len() && n != o {
                errs.push(FieldError::new(
                    Kind::Forbidden,
                    "status.conditions",
                    Value::Omit,
                    format!("updates may not modify a condition of type {}", go_quote(t)),
                ));
            }
        }
    }
    let new_cert = new.status.as_ref().and_then(|s| s.certificate.as_deref());
    let old_cert = old.status.as_ref().and_then(|s| s.certificate.as_deref());
    if new_cert.unwrap_or_default() != old_cert.unwrap_or_default() {
        if path != UpdatePath::Status {
            errs.push(FieldError::new(
                Kind::Forbidden,
                "status.certificate",
                Value::Omit,
                "updates may not set certificate content",
            ));
        } else if old_cert.is_some_and(|c| !c.is_empty()) {
            errs.push(FieldError::new(
                Kind::Forbidden,
                "status.certificate",
                Value::Omit,
                "updates may not modify existing certificate content",
            ));
        }
        if let Some(Err(msg)) = new_cert.map(validate_certificate) {
            errs.push(FieldError::new(
                Kind::Invalid,
                "status.certificate",
                Value::Str("<certificate data>".to_owned()),
                msg,
            ));
        }
    }
    errs
}

/// `validateCertificate`: one or more `CERTIFICATE` PEM blocks without headers, each parsing as
/// X.509. Empty is fine.
pub(crate) fn validate_certificate(pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::pem::{PemObject, SectionKind};
    if pem.is_empty() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(pem);
    let mut blocks = 0;
    let mut rest: &str = &text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = &rest[begin + 11..];
        let Some(end_label) = after.find("-----") else {
            break;
        };
        let label = &after[..end_label];
        let end_marker = format!("-----END {label}-----");
        // The END line is looked for after the BEGIN line only: the two may not overlap
        // (`-----BEGIN CERTIFICATE-----END CERTIFICATE-----` is no block, as for Go's
        // `pem.Decode`).
        let body_start = end_label + 5;
        let Some(end) = after[body_start..]
            .find(&end_marker)
            .map(|n| body_start + n)
        else {
            break;
        };
        let body = &after[body_start..end];
        if label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found {}",
                go_quote(label)
            ));
        }
        if body.lines().any(|l| l.contains(':')) {
            return Err("no PEM block headers are permitted".to_owned());
        }
        let block = &rest[begin..begin + 11 + end + end_marker.len()];
        let der = match <(SectionKind, Vec<u8>) as PemObject>::from_pem_slice(block.as_bytes()) {
            Ok((_, der)) => der,
            Err(e) => return Err(format!("cannot decode PEM block: {e}")),
        };
        CertInfo::from_der(&der).map_err(|e| e.to_string())?;
        blocks += 1;
        rest = &after[end + end_marker.len()..];
    }
    if blocks == 0 {
        return Err("must contain at least one CERTIFICATE PEM block".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values printed by Go 1.26's `strconv.Quote`.
    #[test]
    fn go_quote_is_strconv_quote() {
        for (input, go) in [
            ("plain", r#""plain""#),
            ("q\"b\\s", r#""q\"b\\s""#),
            ("\u{07}\u{08}\u{0c}\n\r\t\u{0b}", r#""\a\b\f\n\r\t\v""#),
            ("\u{01}\u{1f}\u{7f}", r#""\x01\x1f\x7f""#),
            ("\u{85}\u{ad}", r#""\u0085\u00ad""#),
            ("é\u{1F600}", "\"é\u{1F600}\""),
            ("\u{2028}", r#""\u2028""#),
        ] {
            assert_eq!(go_quote(input), go, "{input:?}");
        }
    }

    /// The client's build-time check and this validator agree on every signer name of the
    /// client's table.
    #[test]
    fn signer_name_check_agrees_with_the_client() {
        let limits = crate::csr::tests::signer_names_at_the_limits();
        let all = crate::csr::tests::SIGNER_NAMES
            .iter()
            .map(|&(n, ok)| (n, ok))
            .chain(limits.iter().map(|(n, ok)| (n.as_str(), *ok)));
        for (name, ok) in all {
            assert_eq!(
                validate_signer_name("spec.signerName", name).is_empty(),
                ok,
                "{name:?}"
            );
        }
    }

    fn messages(signer: &str) -> Vec<String> {
        validate_signer_name("spec.signerName", signer)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn signer_names_follow_the_apiserver() {
        assert!(messages("example.com/my-signer").is_empty());
        assert!(messages("kubernetes.io/kubelet-serving").is_empty());
        assert_eq!(messages(""), ["spec.signerName: Required value"]);
        assert_eq!(
            messages("an-invalid-signer-name"),
            [
                "spec.signerName: Invalid value: \"an-invalid-signer-name\": must be a fully qualified domain and path of the form 'example.com/signer-name'"
            ]
        );
        assert_eq!(
            messages("example/some-signer-name"),
            [
                "spec.signerName: Invalid value: \"example\": should be a domain with at least two segments separated by dots"
            ]
        );
        let m = messages("Example.com/x");
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("spec.signerName: Invalid value: \"Example.com\": validating label \"Example\": a lowercase RFC 1123 label"), "{m:?}");
        let long = format!("{}.com/{}", "a".repeat(60), "b".repeat(600));
        assert!(messages(&long).iter().any(|m| m.contains("Too long")));
    }

    #[test]
    fn invalid_status_aggregates_like_apimachinery() {
        let a = FieldError::new(Kind::Required, "spec.usages", Value::Omit, "");
        let b = FieldError::new(
            Kind::Invalid,
            "spec.expirationSeconds",
            Value::Int(5),
            "too short",
        );
        let one = invalid_status("n", std::slice::from_ref(&a));
        assert_eq!(
            one.message.as_deref(),
            Some(
                "CertificateSigningRequest.certificates.k8s.io \"n\" is invalid: spec.usages: Required value"
            )
        );
        let two = invalid_status("n", &[a, b]);
        assert!(two.message.as_deref().unwrap().ends_with(
            "is invalid: [spec.usages: Required value, spec.expirationSeconds: Invalid value: 5: too short]"
        ));
        let causes = &two.details.unwrap().causes;
        assert_eq!(causes[1].reason.as_deref(), Some("FieldValueInvalid"));
        assert_eq!(causes[1].field.as_deref(), Some("spec.expirationSeconds"));
        assert_eq!(two.code, Some(422));
    }

    /// `[]byte` values print as their JSON (apimachinery v0.37 `field.Error.ErrorBody`): the
    /// expected lines are what apimachinery v0.37.2 prints for `field.Invalid(…, []byte("hello"),
    /// …)`, a nil and an empty slice.
    #[test]
    fn byte_values_print_as_go_does() {
        let at = |v| FieldError::new(Kind::Invalid, "spec.request", v, "bad").to_string();
        assert_eq!(
            at(Value::Bytes(Some(b"hello".to_vec()))),
            "spec.request: Invalid value: \"aGVsbG8=\": bad"
        );
        assert_eq!(
            at(Value::Bytes(None)),
            "spec.request: Invalid value: null: bad"
        );
        assert_eq!(
            at(Value::Bytes(Some(Vec::new()))),
            "spec.request: Invalid value: \"\": bad"
        );
    }

    #[test]
    fn certificate_content_rules() {
        assert!(validate_certificate(b"").is_ok());
        assert_eq!(
            validate_certificate(b"junk").unwrap_err(),
            "must contain at least one CERTIFICATE PEM block"
        );
        assert_eq!(
            validate_certificate(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .unwrap_err(),
            "only CERTIFICATE PEM blocks are allowed, found \"PRIVATE KEY\""
        );
        let ca = crate::pki::CertificateAuthority::for_tests("t").unwrap();
        assert!(validate_certificate(ca.cert_pem().as_bytes()).is_ok());
    }
}
