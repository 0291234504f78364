//! No error message of the library prints its own cause: a `thiserror` variant whose cause is
//! its `source()` (a field marked `#[source]` or `#[from]`, or named `source`) must not also
//! put that field in its `#[error("…")]` text, or every printed chain shows the cause twice.
//!
//! Reads every `.rs` file under `src/` and checks each `#[error("…")]` against the fields of
//! the variant it labels. The table tests next to each error type check the texts themselves.

use std::path::Path;

#[path = "support/sources.rs"]
mod sources;
use sources::rust_files;

/// The format string of an `#[error(…)]` starting at `at`, and where the attribute ends.
fn format_string(text: &str, at: usize) -> Option<(String, usize)> {
    let rest = &text[at..];
    let open = rest.find('"')?;
    let mut out = String::new();
    let mut chars = rest[open + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    out.push('\\');
                    out.push(n);
                }
            }
            '"' => {
                let end = at + open + 1 + i + 1;
                let close = text[end..].find(")]").map_or(end, |p| end + p + 2);
                return Some((out, close));
            }
            _ => out.push(c),
        }
    }
    None
}

/// The names a format string interpolates (`{name}`, `{0}`, `{name:?}`), and whether it
/// takes extra arguments (`"…", expr`), which are checked by hand.
fn placeholders(fmt: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = fmt.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' {
            if b.get(i + 1) == Some(&b'{') {
                i += 2;
                continue;
            }
            let end = fmt[i..].find('}').map_or(fmt.len(), |p| i + p);
            let inner = &fmt[i + 1..end];
            let name = inner.split(':').next().unwrap_or("").trim();
            out.push(name.to_owned());
            i = end + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// The variant right after an attribute: its source fields, by name or tuple index.
fn source_fields(variant: &str) -> Vec<String> {
    let variant = variant.trim_start();
    let name_end = variant
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(variant.len());
    let body = variant[name_end..].trim_start();
    let (tuple, close) = match body.chars().next() {
        Some('(') => (true, ')'),
        Some('{') => (false, '}'),
        _ => return vec![],
    };
    // The fields, split at top-level commas.
    let mut depth = 0;
    let mut fields = vec![String::new()];
    for c in body[1..].chars() {
        match c {
            '(' | '<' | '[' | '{' => depth += 1,
            ')' | '>' | ']' | '}' if depth == 0 && c == close => break,
            ')' | '>' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                fields.push(String::new());
                continue;
            }
            _ => {}
        }
        fields.last_mut().expect("a field").push(c);
    }
    let mut out = Vec::new();
    for (i, f) in fields.iter().filter(|f| !f.trim().is_empty()).enumerate() {
        // Without doc comments.
        let code: String = f
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join(" ");
        let marked = code.contains("#[source]") || code.contains("#[from]");
        if tuple {
            if marked {
                out.push(i.to_string());
            }
        } else {
            let name = code
                .rsplit(']')
                .next()
                .unwrap_or(&code)
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .trim_start_matches("pub ")
                .trim()
                .to_owned();
            if marked || name == "source" {
                out.push(name);
            }
        }
    }
    out
}

fn repeats() -> (usize, Vec<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let mut from = 0;
        while let Some(p) = text[from..].find("#[error(") {
            let at = from + p;
            from = at + 1;
            if text[at..].starts_with("#[error(transparent)]") {
                continue;
            }
            let Some((fmt, end)) = format_string(&text, at) else {
                continue;
            };
            // Skip any further attributes and doc comments before the variant.
            let mut rest = &text[end..];
            loop {
                let t = rest.trim_start();
                if t.starts_with("#[") {
                    rest = &t[t.find(']').map_or(t.len(), |p| p + 1)..];
                } else if t.starts_with("//") {
                    rest = &t[t.find('\n').unwrap_or(t.len())..];
                } else {
                    rest = t;
                    break;
                }
            }
            checked += 1;
            let shown = placeholders(&fmt);
            for field in source_fields(rest) {
                if shown.contains(&field) {
                    let line = text[..at].matches('\n').count() + 1;
                    problems.push(format!(
                        "{}:{line}: #[error({fmt:?})] prints its source field `{field}`",
                        file.strip_prefix(&src).expect("under src").display()
                    ));
                }
            }
        }
    }
    (checked, problems)
}

#[test]
fn no_error_message_prints_its_own_source() {
    let (checked, problems) = repeats();
    println!("error messages checked: {checked}");
    assert!(checked > 50, "only {checked} #[error] attributes found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reader_finds_source_fields_and_placeholders() {
    assert_eq!(
        source_fields("Bind {\n /// x\n addr: SocketAddr,\n #[source]\n source: io::Error,\n },"),
        ["source"]
    );
    assert_eq!(source_fields("Thread(#[source] std::io::Error),"), ["0"]);
    assert_eq!(
        source_fields("Timeout { name: String, #[source] last_error: Option<Box<E>> },"),
        ["last_error"]
    );
    assert!(source_fields("Stopped,").is_empty());
    assert_eq!(
        placeholders("cannot bind {addr}: {source:?} {{x}}"),
        ["addr", "source"]
    );
}

/// The error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        out = format!("{out}: {c}");
        next = c.source();
    }
    out
}

/// The message does not contain its source's text, and the chain still names `cause`.
fn assert_cause_once(what: &str, e: &dyn std::error::Error, cause: &str) {
    let message = e.to_string();
    let source = e.source().map(ToString::to_string);
    let source = source.unwrap_or_else(|| panic!("{what}: {message:?} has no source"));
    assert!(
        !message.contains(&source),
        "{what}: the message {message:?} repeats its source {source:?}"
    );
    assert!(
        chain(e).contains(cause),
        "{what}: {:?} does not name {cause:?}",
        chain(e)
    );
}

/// Errors as the library makes them (not built by hand): a CSR create that gets no answer, a
/// failing client factory, a pair the store refuses.
#[test]
fn errors_made_by_the_library_print_their_cause_once() {
    use certrotate::pki::{CertificateAuthority, build_csr_pem};
    use certrotate::{
        Cancel, CertificateManager, Config, CsrClient, CsrRequest, CsrTemplate, KeyAlgorithm,
        KeyUsage, KubeCsrClientBuilder, MemoryStore, PrivateKey, Store,
    };

    // Connection refused: a port that was just free.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("an address").port()
    };
    let ca = CertificateAuthority::for_tests("ca").expect("a CA");
    let client = KubeCsrClientBuilder::new(format!("https://127.0.0.1:{port}"))
        .ca_pem(ca.cert_pem())
        .build()
        .expect("a client");
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("a key");
    let template = CsrTemplate::new("system:node:node-1");
    let request = CsrRequest {
        name: Some("csr-refused".into()),
        csr_pem: build_csr_pem(&template, &key).expect("a CSR"),
        signer_name: "kubernetes.io/kube-apiserver-client-kubelet".into(),
        usages: vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth],
        requested_lifetime: None,
        public_key_der: key.public_key_der(),
    };
    let err = client.create(&request, &Cancel::new()).unwrap_err();
    assert_cause_once("create without an answer", &err, "onnection refused");

    // A client factory that fails.
    let config = Config::builder()
        .template(template)
        .signer_name("kubernetes.io/kube-apiserver-client-kubelet")
        .usages([KeyUsage::DigitalSignature, KeyUsage::ClientAuth])
        .client_factory(|_| Err("no valid client certificate".into()))
        .build()
        .expect("a config");
    let manager = CertificateManager::new(config).expect("a manager");
    let err = manager.rotate_now().unwrap_err();
    assert_cause_once("client factory", &err, "no valid client certificate");

    // A pair whose key is not the certificate's.
    let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("a key");
    let pem = ca
        .issue_pem(
            &CsrTemplate::new("x"),
            &key,
            &[KeyUsage::DigitalSignature],
            std::time::SystemTime::now(),
            std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
        )
        .expect("a certificate");
    let err = MemoryStore::new()
        .update(pem.as_bytes(), other.to_pem().as_bytes())
        .unwrap_err();
    assert_cause_once("store update", &err, "does not match");
}
