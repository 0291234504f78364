//! `ApiError`'s predicates against k8s.io/apimachinery's own (`tests/peers/cmd/apierrors`): the
//! same reason and code given to both, on a grid of every reason apimachinery knows, the empty
//! one, reasons it does not know, and the codes a server answers with.

use std::io::Write;
use std::process::{Command, Stdio};

use certrotate::csr::ApiError;
use serde_json::{Value, json};

#[path = "support/go_peer.rs"]
mod go_peer;

const REASONS: [&str; 23] = [
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Invalid",
    "ServerTimeout",
    "StorageReadError",
    "Timeout",
    "TooManyRequests",
    "BadRequest",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "InternalError",
    "Expired",
    "ServiceUnavailable",
    // Not known to apimachinery: its predicates then go by the code.
    "",
    "Unknown",
    "notfound",
    "SomethingNew",
];

const CODES: [u16; 13] = [
    200, 400, 401, 403, 404, 405, 409, 410, 422, 429, 500, 503, 504,
];

#[test]
fn api_error_predicates_agree_with_apimachinery() {
    let Some(peer) = go_peer::build("apierrors") else {
        return;
    };
    let cases: Vec<(&str, u16)> = REASONS
        .iter()
        .flat_map(|r| CODES.iter().map(move |c| (*r, *c)))
        .collect();
    let mut child = Command::new(&peer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the apierrors peer starts");
    let mut input = String::new();
    for (reason, code) in &cases {
        input.push_str(&json!({ "reason": reason, "code": code }).to_string());
        input.push('\n');
    }
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("the peer reads the cases");
    let out = child.wait_with_output().expect("the peer answers");
    assert!(out.status.success(), "apierrors peer: {:?}", out.status);
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    assert_eq!(answers.len(), cases.len());

    let mut disagreements = Vec::new();
    for ((reason, code), upstream) in cases.iter().zip(&answers) {
        assert_eq!(upstream["reason"], *reason);
        assert_eq!(upstream["code"], *code);
        let e = ApiError {
            code: *code,
            reason: (*reason).to_owned(),
            message: String::new(),
            is_status: true,
            retry_after: None,
        };
        let ours = [
            ("unauthorized", e.is_unauthorized()),
            ("forbidden", e.is_forbidden()),
            ("notFound", e.is_not_found()),
            ("alreadyExists", e.is_already_exists()),
            ("expired", e.is_expired()),
        ];
        for (name, value) in ours {
            if upstream[name] != value {
                disagreements.push(format!(
                    "reason {reason:?} code {code}: {name} is {value}, apimachinery says {}",
                    upstream[name]
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} answers differ:\n{}",
        disagreements.len(),
        cases.len() * 5,
        disagreements.join("\n")
    );
}
