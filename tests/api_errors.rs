//! The library's reading of API errors against k8s.io/apimachinery's own
//! (`tests/peers/cmd/apierrors`), the same reasons and codes given to both: `ApiError`'s
//! predicates on a grid of every reason apimachinery knows, the empty one, reasons it does not
//! know and the codes a server answers with; and the reason a create gets from an answer that
//! is not a `Status`, which client-go's REST client takes from `NewGenericServerResponse`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use certrotate::csr::ApiError;
use certrotate::{Cancel, CsrClient, CsrError};
use common::*;
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

const CODES: [u16; 18] = [
    400, 401, 403, 404, 405, 406, 409, 410, 413, 415, 422, 429, 500, 501, 502, 503, 504, 599,
];

/// apimachinery's answers for each (reason, code), or `None` when Go is missing outside CI.
fn upstream(cases: &[(&str, u16)]) -> Option<Vec<Value>> {
    let peer = go_peer::build("apierrors")?;
    let mut child = Command::new(&peer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the apierrors peer starts");
    let mut input = String::new();
    for (reason, code) in cases {
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
    for ((reason, code), answer) in cases.iter().zip(&answers) {
        assert_eq!(
            (&answer["reason"], &answer["code"]),
            (&json!(reason), &json!(code))
        );
    }
    Some(answers)
}

#[test]
fn api_error_predicates_agree_with_apimachinery() {
    let cases: Vec<(&str, u16)> = REASONS
        .iter()
        .flat_map(|r| CODES.iter().map(move |c| (*r, *c)))
        .collect();
    let Some(answers) = upstream(&cases) else {
        return;
    };
    let mut disagreements = Vec::new();
    for ((reason, code), upstream) in cases.iter().zip(&answers) {
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

/// Answers every code of `CODES` without a `Status` (a proxy's or a load balancer's page) to
/// the request `answer` queues on the fake, makes a create (named when `name` is given), and
/// compares the error's reason with client-go's for that verb (`upstream` key `field`); the
/// library's "Unknown" stands for apimachinery's empty reason.
fn compare_generic_reasons(field: &str, name: Option<&str>, answer: impl Fn(&FakeApi, Reply)) {
    let cases: Vec<(&str, u16)> = CODES.iter().map(|c| ("", *c)).collect();
    let Some(answers) = upstream(&cases) else {
        return;
    };
    let api = FakeApi::new();
    let client = api.builder().build().unwrap();
    let mut disagreements = Vec::new();
    for ((_, code), upstream) in cases.iter().zip(&answers) {
        answer(&api, Reply::plain(*code, "<html>bad gateway</html>"));
        let (_key, mut req) = new_request(CLIENT_SIGNER, &client_usages());
        req.name = name.map(str::to_owned);
        let reason = match client.create(&req, &Cancel::new()) {
            Err(CsrError::Api { error, .. }) => {
                assert!(!error.is_status, "{code}: {error:?}");
                error.reason
            }
            other => panic!("{code}: {other:?}"),
        };
        let expected = match upstream[field].as_str() {
            Some("") => "Unknown",
            Some(r) => r,
            None => panic!("no {field} in {upstream}"),
        };
        if reason != expected {
            disagreements.push(format!("{code}: {reason:?}, client-go {expected:?}"));
        }
    }
    let state = api.state.lock();
    assert!(
        state.create_replies.is_empty() && state.get_replies.is_empty(),
        "every answer was asked for"
    );
    assert!(
        disagreements.is_empty(),
        "reasons that differ from client-go's:\n{}",
        disagreements.join("\n")
    );
}

/// A create answered without a `Status` gets the reason client-go's REST client gives a POST,
/// `AlreadyExists` for a 409 among them.
#[test]
fn a_create_answered_without_a_status_gets_client_gos_reason() {
    compare_generic_reasons("genericPost", None, |api, reply| {
        api.state.lock().create_replies.push_back(reply);
    });
}

/// The GET side of the same rule: a named create that finds its name taken reads the existing
/// request, and when that read is answered without a `Status` the error carries the reason
/// client-go gives a GET (a 409 is a `Conflict` there, not `AlreadyExists`).
#[test]
fn a_read_answered_without_a_status_gets_client_gos_reason() {
    compare_generic_reasons("genericGet", Some("node-csr-taken"), |api, reply| {
        let mut state = api.state.lock();
        state
            .create_replies
            .push_back(Reply::status(409, "AlreadyExists", "already exists"));
        state.get_replies.push_back(reply);
    });
}
