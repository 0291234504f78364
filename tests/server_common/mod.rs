//! Helpers for the embedded CSR API server tests: plain ureq calls over TLS, CSR bodies, and a
//! line reader for watch streams. Every network wait is bounded by the agent's timeouts.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certrotate::CsrTemplate;
use certrotate::pki::{Certificate, KeyAlgorithm, PrivateKey, build_csr_pem, crypto_provider};
use certrotate::server::CsrApiServer;
use serde_json::{Value, json};
use ureq::tls::{ClientCert, PemItem, RootCerts, TlsConfig, TlsProvider};

pub const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// A ureq agent trusting only `ca_pem`, with an optional client certificate, that returns error
/// statuses as responses (so `Status` bodies can be read).
pub fn agent(ca_pem: &str, cert: Option<&Certificate>) -> ureq::Agent {
    let roots: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(ca_pem.as_bytes())
        .filter_map(|i| match i {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&roots))
        .unversioned_rustls_crypto_provider(crypto_provider());
    if let Some(c) = cert {
        let chain: Vec<ureq::tls::Certificate<'static>> =
            ureq::tls::parse_pem(c.cert_pem().as_bytes())
                .filter_map(|i| match i {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
        let key = ureq::tls::PrivateKey::from_pem(c.key_pem().as_bytes()).unwrap();
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// A caller of the API: an agent, the base URL and an optional bearer token.
pub struct Client {
    pub agent: ureq::Agent,
    pub base: String,
    pub token: Option<String>,
}

/// A response: status code and body (JSON when it parses, else a string value).
pub struct Resp {
    pub code: u16,
    pub body: Value,
    pub text: String,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
}

impl Client {
    pub fn with_cert(server: &CsrApiServer, user: &str, groups: &[&str]) -> Client {
        let cert = server.issue_client_certificate(user, groups).unwrap();
        Client {
            agent: agent(&server.ca_pem(), Some(&cert)),
            base: server.url().to_owned(),
            token: None,
        }
    }

    pub fn admin(server: &CsrApiServer) -> Client {
        Client::with_cert(server, "admin", &["system:masters"])
    }

    pub fn with_token(server: &CsrApiServer, token: &str) -> Client {
        Client {
            agent: agent(&server.ca_pem(), None),
            base: server.url().to_owned(),
            token: Some(token.to_owned()),
        }
    }

    pub fn anonymous(server: &CsrApiServer) -> Client {
        Client {
            agent: agent(&server.ca_pem(), None),
            base: server.url().to_owned(),
            token: None,
        }
    }

    fn auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => r.header("Authorization", format!("Bearer {t}")),
            None => r,
        }
    }

    fn read(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
        let mut resp = resp.expect("request failed at the transport level");
        let code = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.body_mut().read_to_string().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        Resp {
            code,
            body,
            text,
            retry_after,
        }
    }

    pub fn try_get(&self, path: &str) -> Result<Resp, ureq::Error> {
        let r = self
            .auth(self.agent.get(format!("{}{path}", self.base)))
            .call();
        r.map(|r| Client::read(Ok(r)))
    }

    pub fn get(&self, path: &str) -> Resp {
        Client::read(
            self.auth(self.agent.get(format!("{}{path}", self.base)))
                .call(),
        )
    }

    pub fn get_accept(&self, path: &str, accept: &str) -> Resp {
        Client::read(
            self.auth(self.agent.get(format!("{}{path}", self.base)))
                .header("Accept", accept)
                .call(),
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        Client::read(
            self.auth(self.agent.post(format!("{}{path}", self.base)))
                .send_json(body),
        )
    }

    pub fn put(&self, path: &str, body: &Value) -> Resp {
        Client::read(
            self.auth(self.agent.put(format!("{}{path}", self.base)))
                .send_json(body),
        )
    }

    pub fn delete(&self, path: &str) -> Resp {
        Client::read(
            self.auth(self.agent.delete(format!("{}{path}", self.base)))
                .call(),
        )
    }

    /// `POST`, `PUT`, `PATCH` or `DELETE` raw bytes with a content type (e.g. Kubernetes protobuf).
    pub fn send_raw(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Resp {
        let url = format!("{}{path}", self.base);
        let r = match method {
            "POST" => self.agent.post(url),
            "PUT" => self.agent.put(url),
            "PATCH" => self.agent.patch(url),
            "DELETE" => self.agent.delete(url).force_send_body(),
            other => panic!("send_raw: {other}"),
        };
        Client::read(self.auth(r).header("Content-Type", content_type).send(body))
    }

    /// `DELETE` with a body (`DeleteOptions`, as kubectl and client-go send them).
    pub fn delete_with(&self, path: &str, body: &Value) -> Resp {
        Client::read(
            self.auth(self.agent.delete(format!("{}{path}", self.base)))
                .force_send_body()
                .send_json(body),
        )
    }

    /// Creates a CSR and returns its object (panics unless 201).
    pub fn create(&self, body: &Value) -> Value {
        let r = self.post(CSRS, body);
        assert_eq!(r.code, 201, "create failed: {}", r.text);
        r.body
    }

    /// Opens a watch; `query` is appended to `?watch=true&`.
    pub fn watch(&self, query: &str) -> Watch {
        self.watch_at(&format!("{CSRS}?watch=true&{query}"))
    }

    /// Opens a watch at `path` (with its query).
    pub fn watch_at(&self, path: &str) -> Watch {
        let url = format!("{}{path}", self.base);
        let resp = self
            .auth(self.agent.get(url))
            .config()
            .timeout_global(None)
            .timeout_per_read(Some(Duration::from_secs(20)))
            .build()
            .call()
            .expect("watch failed");
        assert_eq!(resp.status().as_u16(), 200, "watch status");
        Watch {
            reader: BufReader::new(Box::new(resp.into_body().into_reader())),
        }
    }
}

/// A watch stream, read event by event.
pub struct Watch {
    reader: BufReader<Box<dyn Read + Send>>,
}

impl Watch {
    /// The next event line, parsed; `None` when the server ended the stream.
    pub fn next(&mut self) -> Option<Value> {
        self.next_line()
            .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad event {l:?}: {e}")))
    }

    /// The next raw line; `None` at the end of the stream.
    pub fn next_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                None
            }
            Err(e) => panic!("watch read failed: {e}"),
        }
    }

    /// Reads events until one satisfies `f`; panics if the stream ends first.
    pub fn until(&mut self, mut f: impl FnMut(&Value) -> bool) -> Value {
        loop {
            let ev = self.next().expect("watch ended before the expected event");
            if f(&ev) {
                return ev;
            }
        }
    }
}

pub fn key() -> PrivateKey {
    PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap()
}

pub fn csr_pem(t: &CsrTemplate, key: &PrivateKey) -> String {
    build_csr_pem(t, key).unwrap()
}

/// A v1 CSR body.
pub fn body(
    name: Option<&str>,
    pem: &str,
    signer: &str,
    usages: &[&str],
    expiration: Option<i64>,
) -> Value {
    let mut meta = json!({});
    match name {
        Some(n) => meta["name"] = json!(n),
        None => meta["generateName"] = json!("csr-"),
    }
    let mut spec = json!({
        "request": STANDARD.encode(pem),
        "signerName": signer,
        "usages": usages,
    });
    if let Some(e) = expiration {
        spec["expirationSeconds"] = json!(e);
    }
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": meta, "spec": spec})
}

/// A valid kube-apiserver-client CSR body for a fresh key.
pub fn client_body(name: Option<&str>, cn: &str) -> (Value, PrivateKey) {
    let k = key();
    let pem = csr_pem(&CsrTemplate::new(cn).with_organization("team"), &k);
    (
        body(
            name,
            &pem,
            "kubernetes.io/kube-apiserver-client",
            &["digital signature", "client auth"],
            None,
        ),
        k,
    )
}

/// The issued certificate PEM of a CSR object, if any.
pub fn certificate(obj: &Value) -> Option<String> {
    let b64 = obj["status"]["certificate"].as_str()?;
    Some(String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap())
}

pub fn name(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap().to_owned()
}

pub fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn has_condition(obj: &Value, t: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == t))
}
