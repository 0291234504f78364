//! JSON request bodies decoded as kube-apiserver's JSON serializer decodes them
//! (`k8s.io/apimachinery/pkg/runtime/serializer/json` over `sigs.k8s.io/json`), with the
//! `fieldValidation` directive of create and update requests.
//!
//! - Field names are case-sensitive; a JSON `null` is the Go zero value (an absent member, an
//!   empty string in a list or map of strings, an empty object in a list of objects), so
//!   `usages: null` reaches validation (422) instead of failing to decode.
//! - Unknown fields (`unknown field "spec.foo"`) and repeated fields (`duplicate field
//!   "metadata.name"`; the last one wins) are strict errors, in document order, each once, at
//!   most 100: under `fieldValidation=Strict` they refuse the request with 400
//!   `… cannot be handled as a CertificateSigningRequest: strict decoding error: …`; under `Warn`
//!   (the default) each is a `Warning: 299 - "…"` header; under `Ignore` nothing. Unknown
//!   subtrees are not looked into, as in Go.
//! - `[]byte` fields (`spec.request`, `status.certificate`) are decoded with Go's
//!   `base64.StdEncoding` rules (line breaks skipped, padding required), and a bad one is Go's
//!   `illegal base64 data at input byte N`.
//!
//! The known fields are those of the upstream Go types: `k8s.io/api/certificates/v1` (and
//! `v1beta1`, the same fields) `CertificateSigningRequest`, its spec, status and condition, and
//! `k8s.io/apimachinery/pkg/apis/meta/v1` `TypeMeta`, `ObjectMeta`, `OwnerReference` and
//! `ManagedFieldsEntry` (whose `fieldsV1` is opaque).

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::validation::go_quote;

/// The shape of a field, as the Go type declares it.
#[derive(Clone, Copy)]
enum Ty {
    /// A string.
    Str,
    /// Another scalar: number, bool, time, base64 bytes.
    Scalar,
    /// A struct with these JSON field names.
    Struct(&'static [(&'static str, Ty)]),
    /// `map[string]T`.
    Map(&'static Ty),
    /// `[]T`.
    List(&'static Ty),
    /// Decoded by its own code, not looked into (`FieldsV1`).
    Raw,
}

impl Ty {
    /// What a JSON `null` element or map value becomes (Go's zero value of the type).
    fn zero(self) -> Value {
        match self {
            Ty::Str => Value::String(String::new()),
            Ty::Struct(_) | Ty::Map(_) => Value::Object(Map::new()),
            Ty::List(_) => Value::Array(Vec::new()),
            Ty::Scalar | Ty::Raw => Value::Null,
        }
    }
}

const STRINGS: Ty = Ty::List(&Ty::Str);

/// `metav1.OwnerReference`.
const OWNER_REFERENCE: Ty = Ty::Struct(&[
    ("apiVersion", Ty::Str),
    ("kind", Ty::Str),
    ("name", Ty::Str),
    ("uid", Ty::Str),
    ("controller", Ty::Scalar),
    ("blockOwnerDeletion", Ty::Scalar),
]);

/// `metav1.ManagedFieldsEntry`.
const MANAGED_FIELDS_ENTRY: Ty = Ty::Struct(&[
    ("manager", Ty::Str),
    ("operation", Ty::Str),
    ("apiVersion", Ty::Str),
    ("time", Ty::Scalar),
    ("fieldsType", Ty::Str),
    ("fieldsV1", Ty::Raw),
    ("subresource", Ty::Str),
]);

/// `metav1.ObjectMeta`.
const OBJECT_META: Ty = Ty::Struct(&[
    ("name", Ty::Str),
    ("generateName", Ty::Str),
    ("namespace", Ty::Str),
    ("selfLink", Ty::Str),
    ("uid", Ty::Str),
    ("resourceVersion", Ty::Str),
    ("generation", Ty::Scalar),
    ("creationTimestamp", Ty::Scalar),
    ("deletionTimestamp", Ty::Scalar),
    ("deletionGracePeriodSeconds", Ty::Scalar),
    ("labels", Ty::Map(&Ty::Str)),
    ("annotations", Ty::Map(&Ty::Str)),
    ("ownerReferences", Ty::List(&OWNER_REFERENCE)),
    ("finalizers", STRINGS),
    ("managedFields", Ty::List(&MANAGED_FIELDS_ENTRY)),
]);

/// `certificates/v1.CertificateSigningRequestSpec`.
const SPEC: Ty = Ty::Struct(&[
    ("request", Ty::Scalar),
    ("signerName", Ty::Str),
    ("expirationSeconds", Ty::Scalar),
    ("usages", STRINGS),
    ("username", Ty::Str),
    ("uid", Ty::Str),
    ("groups", STRINGS),
    ("extra", Ty::Map(&STRINGS)),
]);

/// `certificates/v1.CertificateSigningRequestCondition`.
const CONDITION: Ty = Ty::Struct(&[
    ("type", Ty::Str),
    ("status", Ty::Str),
    ("reason", Ty::Str),
    ("message", Ty::Str),
    ("lastUpdateTime", Ty::Scalar),
    ("lastTransitionTime", Ty::Scalar),
]);

/// `certificates/v1.CertificateSigningRequestStatus`.
const STATUS: Ty = Ty::Struct(&[
    ("conditions", Ty::List(&CONDITION)),
    ("certificate", Ty::Scalar),
]);

/// `certificates/v1.CertificateSigningRequest` (with the inlined `TypeMeta`).
const CSR: Ty = Ty::Struct(&[
    ("kind", Ty::Str),
    ("apiVersion", Ty::Str),
    ("metadata", OBJECT_META),
    ("spec", SPEC),
    ("status", STATUS),
]);

/// The `fieldValidation` directive of a write (`metav1.FieldValidation*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    /// Strict errors are dropped.
    Ignore,
    /// Strict errors become `Warning` headers (the default when the parameter is absent).
    Warn,
    /// Strict errors refuse the request with 400.
    Strict,
}

impl FieldValidation {
    /// From the query value; `None` for a value the apiserver refuses (see
    /// [`FIELD_VALIDATION_VALUES`]). Absent or empty means `Warn`, as the apiserver's
    /// `fieldValidation()` defaults it.
    pub(crate) fn parse(v: Option<&str>) -> Option<FieldValidation> {
        match v.unwrap_or("") {
            "" | "Warn" => Some(FieldValidation::Warn),
            "Ignore" => Some(FieldValidation::Ignore),
            "Strict" => Some(FieldValidation::Strict),
            _ => None,
        }
    }
}

/// The values `ValidateFieldValidation` accepts, sorted as its `sets.String.List()` gives them.
pub(crate) const FIELD_VALIDATION_VALUES: [&str; 4] = ["", "Ignore", "Strict", "Warn"];

/// A body decoded into a JSON tree, with its strict errors.
pub(crate) struct Decoded {
    /// The tree, nulls replaced by Go's zero values and `[]byte` fields in canonical base64.
    pub value: Value,
    /// `unknown field "…"` and `duplicate field "…"`, in document order.
    pub strict: Vec<String>,
    /// Whether `spec.request` was given (not absent, not null): Go's nil versus empty slice,
    /// which validation prints differently (`null` against `""`).
    pub request_present: bool,
}

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Not JSON at all (the apiserver cannot even find its kind).
    Syntax(String),
    /// JSON, but a value does not fit its field.
    Value(String),
}

/// Most strict errors kept, as `sigs.k8s.io/json`.
const MAX_STRICT_ERRORS: usize = 100;

/// Decodes a CSR body.
pub(crate) fn decode_csr_json(body: &[u8]) -> Result<Decoded, DecodeError> {
    let errs = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let walk = Walk {
        ty: Some(CSR),
        path: String::new(),
        errs: &errs,
    };
    let mut value = walk
        .deserialize(&mut de)
        .map_err(|e| DecodeError::Syntax(e.to_string()))?;
    de.end().map_err(|e| DecodeError::Syntax(e.to_string()))?;
    if !value.is_object() {
        return Err(DecodeError::Syntax(format!(
            "json: cannot unmarshal {} into Go value of type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }}",
            json_kind(&value)
        )));
    }
    let request_present = value.pointer("/spec/request").is_some_and(|r| !r.is_null());
    for pointer in ["/spec/request", "/status/certificate"] {
        if let Some(slot) = value.pointer_mut(pointer)
            && let Value::String(s) = slot
        {
            let bytes = go_std_base64(s.as_bytes()).map_err(|at| {
                DecodeError::Value(format!("illegal base64 data at input byte {at}"))
            })?;
            *s = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
        }
    }
    Ok(Decoded {
        value,
        strict: errs.into_inner(),
        request_present,
    })
}

/// Go's name of a JSON value's kind in an `UnmarshalTypeError`.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One value being read, with its type (`None` inside an unknown or opaque field) and path.
struct Walk<'a> {
    ty: Option<Ty>,
    path: String,
    errs: &'a RefCell<Vec<String>>,
}

impl Walk<'_> {
    fn strict(&self, kind: &str, key: &str) {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        let e = format!("{kind} {}", go_quote(&path));
        let mut errs = self.errs.borrow_mut();
        if errs.len() < MAX_STRICT_ERRORS && !errs.contains(&e) {
            errs.push(e);
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let elem = match self.ty {
            Some(Ty::List(t)) => Some(*t),
            _ => None,
        };
        let mut out = Vec::new();
        loop {
            let walk = Walk {
                ty: elem,
                path: format!("{}[{}]", self.path, out.len()),
                errs: self.errs,
            };
            match seq.next_element_seed(walk)? {
                None => break,
                Some(Value::Null) if elem.is_some() => {
                    out.push(elem.map_or(Value::Null, Ty::zero));
                }
                Some(v) => out.push(v),
            }
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        // Keys seen, for duplicates (a null member is removed but still counts).
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let (child, known, is_map) = match self.ty {
                Some(Ty::Struct(fields)) => match fields.iter().find(|(name, _)| *name == key) {
                    Some((_, t)) => (Some(*t), true, false),
                    None => {
                        self.strict("unknown field", &key);
                        (None, false, false)
                    }
                },
                Some(Ty::Map(t)) => (Some(*t), true, true),
                _ => (None, false, false),
            };
            if known && !seen.insert(key.clone()) {
                self.strict("duplicate field", &key);
            }
            let walk = Walk {
                ty: child,
                path: if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                },
                errs: self.errs,
            };
            let v = map.next_value_seed(walk)?;
            match (v, child) {
                // A map's null value is the element's zero value.
                (Value::Null, Some(t)) if is_map => {
                    out.insert(key, t.zero());
                }
                // A struct member that is null is as if absent.
                (Value::Null, Some(_)) => {
                    out.remove(&key);
                }
                (v, _) => {
                    out.insert(key, v);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// A `Warning` header value for `text`, as apimachinery's `NewWarningHeader(299, "-", text)`:
/// `299 - "text"` with `"` and `\` escaped. `None` when Go refuses the text (control
/// characters), in which case the apiserver sends no header for it either.
pub(crate) fn warning_header(text: &str) -> Option<String> {
    if text.chars().any(char::is_control) {
        return None;
    }
    let mut out = String::from("299 - \"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

/// The `Warning` header values for `texts`, as the apiserver's warning recorder
/// (`endpoints/filters/warning.go`) writes them: each text once, in order; past 4096 runes in
/// all, every warning is cut to 256 runes and the headers are written again from the start,
/// and once that budget is spent too, later warnings are dropped.
pub(crate) fn warning_headers(texts: &[String]) -> Vec<String> {
    const TOTAL_RUNES: usize = 4 * 1024;
    const ITEM_RUNES: usize = 256;
    let cut = |t: &str| -> (String, usize) {
        let n = t.chars().count();
        if n > ITEM_RUNES {
            (t.chars().take(ITEM_RUNES).collect(), ITEM_RUNES)
        } else {
            (t.to_owned(), n)
        }
    };
    let mut recorded = std::collections::HashSet::new();
    let mut ordered: Vec<&str> = Vec::new();
    let mut headers = Vec::new();
    let (mut written, mut truncating) = (0usize, false);
    for text in texts.iter().filter(|t| !t.is_empty()) {
        if written >= TOTAL_RUNES && truncating {
            break;
        }
        if !recorded.insert(text.as_str()) {
            continue;
        }
        ordered.push(text);
        let (t, n) = if truncating {
            cut(text)
        } else {
            (text.clone(), text.chars().count())
        };
        let Some(h) = warning_header(&t) else {
            continue;
        };
        if written + n <= TOTAL_RUNES || truncating {
            written += n;
            headers.push(h);
            continue;
        }
        truncating = true;
        written = 0;
        headers.clear();
        for w in &ordered {
            let (t, n) = cut(w);
            if let Some(h) = warning_header(&t) {
                written += n;
                headers.push(h);
            }
        }
    }
    headers
}

/// Go's `base64.StdEncoding.Decode` (`encoding/base64`, `decodeQuantum`): standard alphabet,
/// padding required, `\r` and `\n` skipped anywhere. The error is Go's `CorruptInputError`:
/// the offset of the first bad byte.
pub(crate) fn go_std_base64(src: &[u8]) -> Result<Vec<u8>, usize> {
    fn sextet(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let newline = |c: u8| c == b'\n' || c == b'\r';
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    while si < src.len() {
        let mut dbuf = [0u8; 4];
        let mut dlen = 4;
        let mut j = 0;
        let mut trailing = None;
        while j < 4 {
            let Some(&c) = src.get(si) else {
                if j == 0 {
                    return Ok(out);
                }
                return Err(si - j);
            };
            si += 1;
            if let Some(v) = sextet(c) {
                dbuf[j] = v;
                j += 1;
                continue;
            }
            if newline(c) {
                continue;
            }
            if c != b'=' || j < 2 {
                return Err(si - 1);
            }
            if j == 2 {
                // "==" is expected; the first '=' is consumed.
                while src.get(si).copied().is_some_and(newline) {
                    si += 1;
                }
                match src.get(si) {
                    None => return Err(src.len()),
                    Some(b'=') => si += 1,
                    Some(_) => return Err(si - 1),
                }
            }
            while src.get(si).copied().is_some_and(newline) {
                si += 1;
            }
            if si < src.len() {
                trailing = Some(si);
            }
            dlen = j;
            break;
        }
        let val = (u32::from(dbuf[0]) << 18)
            | (u32::from(dbuf[1]) << 12)
            | (u32::from(dbuf[2]) << 6)
            | u32::from(dbuf[3]);
        let bytes = val.to_be_bytes();
        out.extend_from_slice(&bytes[1..dlen]);
        if let Some(at) = trailing {
            return Err(at);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(body: &str) -> Vec<String> {
        decode_csr_json(body.as_bytes()).unwrap().strict
    }

    #[test]
    fn unknown_and_duplicate_fields_are_found_with_their_paths() {
        assert!(
            strict(r#"{"kind":"CertificateSigningRequest","spec":{"usages":["a"]}}"#).is_empty()
        );
        assert_eq!(
            strict(r#"{"spec":{"foo":1,"usages":["a"],"usages":["b"]},"Metadata":{}}"#),
            [
                "unknown field \"spec.foo\"",
                "duplicate field \"spec.usages\"",
                "unknown field \"Metadata\""
            ]
        );
        assert_eq!(
            strict(
                r#"{"metadata":{"labels":{"a":"1","a":"2"}},"status":{"conditions":[{"type":"x","bad":1}]}}"#
            ),
            [
                "duplicate field \"metadata.labels.a\"",
                "unknown field \"status.conditions[0].bad\""
            ]
        );
        // Unknown subtrees and opaque fields are not looked into.
        assert_eq!(
            strict(
                r#"{"x":{"y":1,"y":2},"metadata":{"managedFields":[{"fieldsV1":{"f:a":{},"f:a":{}}}]}}"#
            ),
            ["unknown field \"x\""]
        );
    }

    /// Go 1.26's `json.Unmarshal` of `[1]` into the serializer's kind-finding struct.
    #[test]
    fn a_body_that_is_not_an_object_fails_as_in_go() {
        let Err(DecodeError::Syntax(e)) = decode_csr_json(b"[1]") else {
            panic!("decoded");
        };
        assert_eq!(
            e,
            r#"json: cannot unmarshal array into Go value of type struct { APIVersion string "json:\"apiVersion,omitempty\""; Kind string "json:\"kind,omitempty\"" }"#
        );
    }

    #[test]
    fn nulls_are_go_zero_values() {
        let d = decode_csr_json(
            br#"{"metadata":null,"spec":{"usages":null,"groups":[null,"g"],"extra":{"k":null},"request":null},"status":{"conditions":[null]}}"#,
        )
        .unwrap();
        assert_eq!(
            d.value,
            serde_json::json!({"spec":{"groups":["","g"],"extra":{"k":[]}},"status":{"conditions":[{}]}})
        );
        assert!(!d.request_present);
    }

    /// Offsets checked against Go 1.26's `base64.StdEncoding.DecodeString` (the value of
    /// `CorruptInputError`).
    #[test]
    fn base64_follows_go() {
        assert_eq!(go_std_base64(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(go_std_base64(b"aGVs\nbG8=\r\n").unwrap(), b"hello");
        assert_eq!(go_std_base64(b"").unwrap(), b"");
        for (input, at) in [
            ("not base64!", 3),
            ("aGVsbG8", 4),
            ("aGVsbG8=x", 8),
            ("a===", 1),
            ("aG==x", 4),
            ("aG=x", 2),
            ("aG=", 3),
            ("-_-_", 0),
        ] {
            assert_eq!(go_std_base64(input.as_bytes()), Err(at), "{input:?}");
        }
    }

    #[test]
    fn warning_headers_quote_as_apimachinery() {
        assert_eq!(
            warning_header("unknown field \"spec.foo\"").as_deref(),
            Some(r#"299 - "unknown field \"spec.foo\"""#)
        );
        assert_eq!(warning_header("a\\b").as_deref(), Some(r#"299 - "a\\b""#));
        assert_eq!(warning_header("bad\nline"), None);
        // Past 4096 runes every warning is cut to 256.
        let long: Vec<String> = (0..20).map(|i| format!("{i}{}", "x".repeat(300))).collect();
        let h = warning_headers(&long);
        assert_eq!(h.len(), 16);
        assert!(h.iter().all(|w| w.len() == 256 + 8), "{:?}", h[0]);
        let few = vec!["a".to_owned(), "a".to_owned(), "b".to_owned()];
        assert_eq!(warning_headers(&few), [r#"299 - "a""#, r#"299 - "b""#]);
    }
}
