//! Kubeconfig loading: every supported field (checked end to end against the HTTPS fake, which
//! records the client certificate and token it sees), relative paths, `KUBECONFIG` lists
//! merged as kubectl does, missing files, the JSON form, and the refused features.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certrotate::kubeconfig::{ConfigError, Kubeconfig};
use certrotate::pki::{KeyAlgorithm, PrivateKey};
use certrotate::{Cancel, Certificate, CsrClient, CsrTemplate, KeyUsage, KubeCsrClient};
use common::*;

#[path = "support/connect_proxy.rs"]
mod connect_proxy;
use connect_proxy::ConnectProxy;

struct Fixture {
    api: FakeApi,
    dir: tempfile::TempDir,
    node: Certificate,
}

impl Fixture {
    fn new() -> Fixture {
        let api = FakeApi::new();
        let dir = tempfile::tempdir().unwrap();
        let node = api.server.client_cert("system:node:kc");
        Fixture { api, dir, node }
    }

    fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> std::path::PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }

    /// Writes CA, cert and key files under `sub/`.
    fn write_pki(&self, sub: &str) {
        self.write(&format!("{sub}/ca.crt"), self.api.server.ca.cert_pem());
        self.write(&format!("{sub}/node.crt"), self.node.cert_pem());
        self.write(&format!("{sub}/node.key"), self.node.key_pem());
    }

    /// Creates one CSR with `client` and returns (peer CN, Authorization) the server saw.
    fn observe(&self, client: &KubeCsrClient) -> (Option<String>, Option<String>) {
        let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
        client.create(&req, &Cancel::new()).unwrap();
        let last = self.api.requests().pop().unwrap();
        (last.peer_cn, last.authorization)
    }
}

fn b64(s: impl AsRef<[u8]>) -> String {
    STANDARD.encode(s)
}

#[test]
fn yaml_with_relative_file_paths_and_token() {
    let f = Fixture::new();
    f.write_pki("pki");
    let cfg = format!(
        r#"apiVersion: v1
kind: Config
current-context: node
clusters:
- name: kind
  cluster:
    server: {server}
    certificate-authority: pki/ca.crt
users:
- name: node
  user:
    client-certificate: pki/node.crt
    client-key: ./pki/node.key
    token: s3cr3t
contexts:
- name: node
  context:
    cluster: kind
    user: node
    namespace: ignored
preferences: {{}}
"#,
        server = f.api.server.url()
    );
    let path = f.write("kubeconfig", cfg);
    let client = KubeCsrClient::from_kubeconfig(&path).unwrap();
    assert_eq!(
        f.observe(&client),
        (Some("system:node:kc".into()), Some("Bearer s3cr3t".into()))
    );
}

#[test]
fn relative_paths_resolve_against_the_kubeconfig_directory_not_the_cwd() {
    let f = Fixture::new();
    f.write_pki("conf/pki");
    let cfg = format!(
        "current-context: c\nclusters: [{{name: k, cluster: {{server: '{}', certificate-authority: pki/ca.crt}}}}]\n\
         users: [{{name: u, user: {{client-certificate: pki/node.crt, client-key: pki/node.key}}}}]\n\
         contexts: [{{name: c, context: {{cluster: k, user: u}}}}]\n",
        f.api.server.url()
    );
    let path = f.write("conf/config", cfg);
    assert_ne!(std::env::current_dir().unwrap(), f.dir.path().join("conf"));
    let client = KubeCsrClient::from_kubeconfig(&path).unwrap();
    assert_eq!(f.observe(&client).0.as_deref(), Some("system:node:kc"));
}

#[test]
fn inline_data_fields_and_data_wins_over_file() {
    let f = Fixture::new();
    let cfg = format!(
        r#"current-context: c
clusters:
- name: k
  cluster:
    server: {server}
    certificate-authority-data: {ca}
    certificate-authority: /nonexistent/ca.crt
users:
- name: u
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
    client-certificate: /nonexistent/cert
    client-key: /nonexistent/key
contexts:
- name: c
  context: {{cluster: k, user: u}}
"#,
        server = f.api.server.url(),
        ca = b64(f.api.server.ca.cert_pem()),
        cert = b64(f.node.cert_pem()),
        key = b64(f.node.key_pem()),
    );
    let path = f.write("config", cfg);
    let client = KubeCsrClient::from_kubeconfig(&path).unwrap();
    assert_eq!(f.observe(&client), (Some("system:node:kc".into()), None));
}

/// `kubectl config view --raw -o json` form.
#[test]
fn json_form() {
    let f = Fixture::new();
    let cfg = serde_json::json!({
        "kind": "Config",
        "apiVersion": "v1",
        "preferences": {},
        "clusters": [{"name": "k", "cluster": {
            "server": f.api.server.url(),
            "certificate-authority-data": b64(f.api.server.ca.cert_pem())}}],
        "users": [{"name": "u", "user": {"token": "json-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "current-context": "c",
        "extensions": []
    });
    let path = f.write("config.json", serde_json::to_vec_pretty(&cfg).unwrap());
    let client = KubeCsrClient::from_kubeconfig(&path).unwrap();
    assert_eq!(f.observe(&client), (None, Some("Bearer json-token".into())));
}

#[test]
fn token_wins_over_token_file_and_token_file_is_reread() {
    let f = Fixture::new();
    f.write_pki("pki");
    f.write("tok", "from-file\n");
    let base = |user: &str| {
        format!(
            "current-context: c\nclusters: [{{name: k, cluster: {{server: '{}', certificate-authority: pki/ca.crt}}}}]\n\
             users: [{{name: u, user: {user}}}]\ncontexts: [{{name: c, context: {{cluster: k, user: u}}}}]\n",
            f.api.server.url()
        )
    };
    let both = f.write("both", base("{token: inline, tokenFile: tok}"));
    let kc = Kubeconfig::load(&both).unwrap();
    assert_eq!(
        kc.client_builder(None).unwrap().current_token().unwrap(),
        Some("inline".into())
    );

    let file_only = f.write("fileonly", base("{tokenFile: tok}"));
    let builder = Kubeconfig::load(&file_only)
        .unwrap()
        .client_builder(None)
        .unwrap();
    assert_eq!(
        f.observe(&builder.build().unwrap()).1.as_deref(),
        Some("Bearer from-file")
    );
    f.write("tok", "rotated");
    assert_eq!(
        f.observe(&builder.build().unwrap()).1.as_deref(),
        Some("Bearer rotated")
    );
}

#[test]
fn current_context_or_an_explicit_one() {
    let yaml = br#"
current-context: a
clusters:
- {name: ca, cluster: {server: "https://a.example:6443", insecure-skip-tls-verify: true}}
- {name: cb, cluster: {server: "https://b.example:6443", insecure-skip-tls-verify: true}}
contexts:
- {name: a, context: {cluster: ca, user: ua}}
- {name: b, context: {cluster: cb, user: ub}}
users:
- {name: ua, user: {token: ta}}
- {name: ub, user: {token: tb}}
"#;
    let kc = Kubeconfig::from_slice(yaml, "/").unwrap();
    assert_eq!(kc.current_context(), Some("a"));
    assert_eq!(kc.context_names(), ["a", "b"]);
    let a = kc.client_builder(None).unwrap();
    assert_eq!(a.server(), "https://a.example:6443");
    assert_eq!(a.current_token().unwrap().as_deref(), Some("ta"));
    let b = kc.client_builder(Some("b")).unwrap();
    assert_eq!(b.server(), "https://b.example:6443");
    assert_eq!(b.current_token().unwrap().as_deref(), Some("tb"));
}

#[test]
fn missing_entries_and_no_current_context() {
    let yaml = br#"
clusters: [{name: k, cluster: {server: "https://k:6443", insecure-skip-tls-verify: true}}]
contexts:
- {name: no-cluster, context: {cluster: gone, user: u}}
- {name: no-user, context: {cluster: k, user: gone}}
- {name: anonymous, context: {cluster: k}}
users: [{name: u, user: {}}]
"#;
    let kc = Kubeconfig::from_slice(yaml, "/").unwrap();
    let cases: [(Option<&str>, &str); 4] = [
        (None, "no current-context"),
        (Some("nope"), r#"no context named "nope""#),
        (Some("no-cluster"), r#"no cluster named "gone""#),
        (Some("no-user"), r#"no user named "gone""#),
    ];
    for (ctx, want) in cases {
        let err = kc.client_builder(ctx).unwrap_err();
        assert!(err.to_string().contains(want), "{ctx:?}: {err}");
    }
    // A context without a user is anonymous, as client-go.
    let anon = kc.client_builder(Some("anonymous")).unwrap();
    assert_eq!(anon.current_token().unwrap(), None);
}

#[test]
fn unsupported_auth_is_refused_naming_the_field() {
    let cases = [
        (
            "exec",
            "{exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}}",
        ),
        ("auth-provider", "{auth-provider: {name: oidc, config: {}}}"),
        ("username", "{username: admin, password: hunter2}"),
        ("password", "{password: hunter2}"),
        ("as", "{token: t, as: someone}"),
        ("as-groups", "{token: t, as-groups: [g]}"),
        ("as-user-extra", "{token: t, as-user-extra: {k: [v]}}"),
    ];
    for (field, user) in cases {
        let yaml = format!(
            "current-context: c\nclusters: [{{name: k, cluster: {{server: 'https://k:6443', insecure-skip-tls-verify: true}}}}]\n\
             users: [{{name: u, user: {user}}}, {{name: fine, user: {{token: x}}}}]\n\
             contexts: [{{name: c, context: {{cluster: k, user: u}}}}, {{name: ok, context: {{cluster: k, user: fine}}}}]\n"
        );
        let kc = Kubeconfig::from_slice(yaml.as_bytes(), "/").unwrap();
        let err = kc.client_builder(None).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Unsupported { field: f, .. } if *f == field),
            "{field}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("{field:?}")) && text.contains("does not support"),
            "{text}"
        );
        // Another user in the same file is not affected.
        kc.client_builder(Some("ok")).unwrap();
    }
}

#[test]
fn insecure_skip_tls_verify_and_tls_server_name() {
    let f = Fixture::new();
    let insecure = format!(
        "current-context: c\nclusters: [{{name: k, cluster: {{server: '{}', insecure-skip-tls-verify: true}}}}]\n\
         users: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: c, context: {{cluster: k, user: u}}}}]\n",
        f.api.server.url()
    );
    let client = KubeCsrClient::from_kubeconfig(f.write("insecure", insecure)).unwrap();
    assert_eq!(f.observe(&client).1.as_deref(), Some("Bearer t"));

    let both = format!(
        "current-context: c\nclusters: [{{name: k, cluster: {{server: '{}', insecure-skip-tls-verify: true, certificate-authority-data: {}}}}}]\n\
         contexts: [{{name: c, context: {{cluster: k}}}}]\n",
        f.api.server.url(),
        b64(f.api.server.ca.cert_pem())
    );
    let err = KubeCsrClient::from_kubeconfig(f.write("both", both)).unwrap_err();
    assert!(
        err.to_string().contains("insecure-skip-tls-verify"),
        "{err}"
    );

    // The serving certificate is for apiserver.test; the URL is an IP it also covers, so a
    // wrong tls-server-name must fail and the right one must pass.
    for (name, ok) in [("apiserver.test", true), ("elsewhere.test", false)] {
        let cfg = format!(
            "current-context: c\nclusters: [{{name: k, cluster: {{server: '{}', tls-server-name: {name}, certificate-authority-data: {}}}}}]\n\
             contexts: [{{name: c, context: {{cluster: k}}}}]\n",
            f.api.server.url(),
            b64(f.api.server.ca.cert_pem())
        );
        let client = KubeCsrClient::from_kubeconfig(f.write(name, cfg)).unwrap();
        let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
        assert_eq!(client.create(&req, &Cancel::new()).is_ok(), ok, "{name}");
    }
}

/// client-go's `parseProxyURL` takes `http`, `https` and `socks5`; the docs say which of them
/// certrotate takes, and the errors agree.
#[test]
fn proxy_url_schemes() {
    let mk = |proxy: &str| {
        format!(
            "current-context: c\nclusters: [{{name: k, cluster: {{server: 'https://k:6443', insecure-skip-tls-verify: true, proxy-url: '{proxy}'}}}}]\n\
             contexts: [{{name: c, context: {{cluster: k}}}}]\n"
        )
    };
    let build = |proxy: &str| {
        Kubeconfig::from_slice(mk(proxy).as_bytes(), "/")
            .unwrap()
            .client_builder(None)
    };
    build("http://proxy:3128").unwrap();
    build("https://proxy:3128").unwrap();
    for (proxy, says) in [
        ("socks5://proxy:1080", "socks5 proxies are not supported"),
        ("proxy:3128", "unsupported scheme"),
        ("ftp://proxy", "unsupported scheme"),
    ] {
        let err = build(proxy).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("proxy-url") && msg.contains(says),
            "{proxy}: {msg}"
        );
    }
}

/// A server configuration serving `cert` (with its chain).
fn server_config(cert: &Certificate) -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(certrotate::pki::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                cert.chain().to_vec(),
                rustls::pki_types::PrivateKeyDer::Pkcs8(
                    cert.private_key().pkcs8_der().to_vec().into(),
                ),
            )
            .unwrap(),
    )
}

/// A serving certificate for 127.0.0.1 from `ca`.
fn proxy_cert(ca: &certrotate::pki::CertificateAuthority) -> Certificate {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let now = SystemTime::now();
    ca.issue(
        &CsrTemplate::new("proxy").with_ip_address("127.0.0.1".parse().unwrap()),
        &key,
        &[KeyUsage::DigitalSignature, KeyUsage::ServerAuth],
        now - Duration::from_secs(3600),
        now + Duration::from_secs(86_400),
    )
    .unwrap()
}

fn proxied_kubeconfig(f: &Fixture, proxy_url: &str) -> String {
    format!(
        "current-context: c\nclusters: [{{name: k, cluster: {{server: '{}', certificate-authority-data: {}, proxy-url: '{proxy_url}'}}}}]\n\
         users: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: c, context: {{cluster: k, user: u}}}}]\n",
        f.api.server.url(),
        b64(f.api.server.ca.cert_pem())
    )
}

/// kubeconfig `proxy-url` is client-go's `http.ProxyURL`: every request goes through it, a
/// loopback server included, with the URL's credentials as `Proxy-Authorization: Basic`.
#[test]
fn proxy_url_http_carries_every_request() {
    let f = Fixture::new();
    let proxy = ConnectProxy::start(f.api.server.addr);
    let url = format!("http://user:pa%20ss@{}", proxy.addr);
    let client =
        KubeCsrClient::from_kubeconfig(f.write("cfg", proxied_kubeconfig(&f, &url))).unwrap();
    assert_eq!(f.observe(&client).1.as_deref(), Some("Bearer t"));
    let seen = proxy.connects();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].target, f.api.server.addr.to_string());
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Basic {}", b64("user:pa ss")).as_str())
    );
}

/// `proxy-url: https://…`: TLS to the proxy, then CONNECT and the API server's TLS inside, as
/// Go's `net/http` does. Go verifies the proxy with the same TLS configuration as the API
/// server (`addTLS` clones `TLSClientConfig`): the same roots, and `tls-server-name`, when set,
/// as the name the proxy's certificate must hold. Each case is also run with kubectl when it
/// is installed, which must agree.
#[test]
fn proxy_url_https_tunnels_inside_tls_to_the_proxy() {
    let f = Fixture::new();
    let other_ca = certrotate::pki::CertificateAuthority::for_tests("other").unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let now = SystemTime::now();
    let named = f
        .api
        .server
        .ca
        .issue(
            &CsrTemplate::new("proxy")
                .with_dns_name("apiserver.test")
                .with_ip_address("127.0.0.1".parse().unwrap()),
            &key,
            &[KeyUsage::DigitalSignature, KeyUsage::ServerAuth],
            now - Duration::from_secs(3600),
            now + Duration::from_secs(86_400),
        )
        .unwrap();
    // (case, proxy certificate, tls-server-name, TLS to the proxy succeeds)
    let cases = [
        ("cluster CA", proxy_cert(&f.api.server.ca), None, true),
        ("another CA", proxy_cert(&other_ca), None, false),
        (
            "tls-server-name the proxy lacks",
            proxy_cert(&f.api.server.ca),
            Some("apiserver.test"),
            false,
        ),
        (
            "tls-server-name the proxy has",
            named,
            Some("apiserver.test"),
            true,
        ),
    ];
    for (i, (case, cert, tls_name, ok)) in cases.into_iter().enumerate() {
        let proxy = ConnectProxy::start_tls(f.api.server.addr, server_config(&cert));
        let mut cfg = proxied_kubeconfig(&f, &format!("https://{}", proxy.addr));
        if let Some(n) = tls_name {
            cfg = cfg.replace("proxy-url:", &format!("tls-server-name: {n}, proxy-url:"));
        }
        let path = f.write(&format!("https-proxy{i}"), cfg);
        let client = KubeCsrClient::from_kubeconfig(&path).unwrap();
        let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
        match client.create(&req, &Cancel::new()) {
            Ok(_) => {
                assert!(ok, "{case}: went through");
                let seen = proxy.connects();
                assert_eq!(seen.len(), 1, "{case}: {seen:?}");
                assert_eq!(seen[0].target, f.api.server.addr.to_string());
                assert_eq!(
                    f.api.requests().last().unwrap().authorization.as_deref(),
                    Some("Bearer t")
                );
            }
            Err(e) => {
                assert!(!ok, "{case}: {e:?}");
                let text = format!("{e:?}");
                assert!(text.contains("InvalidCertificate"), "{case}: {text}");
                assert!(proxy.connects().is_empty(), "{case}");
            }
        }
        let before = f.api.requests().len();
        if let Ok(out) = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&path)
            .args(["get", "--raw", "/version"])
            .output()
        {
            let reached = f.api.requests().len() > before;
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(reached, ok, "{case}: kubectl: {err}");
            if !ok {
                assert!(
                    err.contains("x509") || err.contains("tls:"),
                    "{case}: kubectl: {err}"
                );
            }
        }
    }
}

/// A self-signed leaf certificate for `apiserver.test` and 127.0.0.1 (no CA), built with rcgen
/// directly, valid from `from` to `to` (seconds from now), with the given extended key usage.
fn self_signed_leaf(
    from: i64,
    to: i64,
    eku: rcgen::ExtendedKeyUsagePurpose,
) -> (Vec<u8>, String, Certificate) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["apiserver.test".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "apiserver");
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![eku];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::seconds(from);
    params.not_after = now + time::Duration::seconds(to);
    let cert = params.self_signed(&key).unwrap();
    let pair =
        Certificate::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    (cert.der().to_vec(), cert.pem(), pair)
}

/// Answers every request with 403, so a client that got through TLS sees an API error.
fn forbidding_server(cert: &Certificate) -> TestServer {
    TestServer::https_with_config(
        server_config(cert),
        Arc::new(|_req, r| r.reply(&Reply::status(403, "Forbidden", "pinned test"))),
    )
}

/// The outcome of one request by our client and, when kubectl is installed, by kubectl:
/// `true` when TLS succeeded (the 403 came back).
fn pinned_outcomes(
    f: &Fixture,
    name: &str,
    server: &TestServer,
    ca_pem: &str,
    tls_name: &str,
) -> (bool, Option<bool>) {
    let cfg = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{{name: k, cluster: {{server: '{}', tls-server-name: {tls_name}, certificate-authority-data: {}}}}}]\n\
         users: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: c, context: {{cluster: k, user: u}}}}]\n",
        server.url(),
        b64(ca_pem)
    );
    let path = f.write(name, cfg);
    let client = KubeCsrClient::from_kubeconfig(&path).unwrap();
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    let ours = match client.create(&req, &Cancel::new()) {
        Ok(_) => panic!("{name}: the server only forbids"),
        Err(e) => {
            let text = format!("{e:?}");
            let tls_ok = text.contains("Forbidden");
            assert!(
                tls_ok || text.contains("InvalidCertificate"),
                "{name}: {text}"
            );
            tls_ok
        }
    };
    let kubectl = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&path)
        .args(["get", "--raw", "/"])
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .ok()
        .map(|out| {
            let err = String::from_utf8_lossy(&out.stderr);
            let tls_ok = err.contains("Forbidden");
            assert!(
                tls_ok || err.contains("x509") || err.contains("tls:"),
                "{name}: kubectl: {err}"
            );
            tls_ok
        });
    (ours, kubectl)
}

/// Go's `crypto/x509` trusts a server certificate equal to a root of the pool as it is (the
/// chain is just the leaf), still checking validity period, host name and extended key
/// usage; kubectl therefore accepts a kubeconfig whose `certificate-authority-data` is the
/// server's own certificate. Each case is also run with kubectl when it is installed.
#[test]
fn server_certificate_equal_to_a_configured_root_is_trusted_as_go_does() {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let f = Fixture::new();
    let mut cases: Vec<(&str, Certificate, String, &str, bool)> = Vec::new();
    let (_, pem, pair) = self_signed_leaf(-3600, 86_400, ServerAuth);
    cases.push((
        "self-signed leaf",
        pair.clone(),
        pem.clone(),
        "apiserver.test",
        true,
    ));
    cases.push((
        "self-signed leaf, other name",
        pair,
        pem,
        "elsewhere.test",
        false,
    ));
    let (_, pem, pair) = self_signed_leaf(-7200, -3600, ServerAuth);
    cases.push((
        "self-signed leaf, expired",
        pair,
        pem,
        "apiserver.test",
        false,
    ));
    let (_, pem, pair) = self_signed_leaf(-3600, 86_400, ClientAuth);
    cases.push((
        "self-signed leaf, client auth only",
        pair,
        pem,
        "apiserver.test",
        false,
    ));
    // A CA-issued leaf pinned alone, without its CA.
    let ca = certrotate::pki::CertificateAuthority::for_tests("unseen-ca").unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let now = SystemTime::now();
    let issued = ca
        .issue(
            &CsrTemplate::new("apiserver").with_dns_name("apiserver.test"),
            &key,
            &[KeyUsage::DigitalSignature, KeyUsage::ServerAuth],
            now - Duration::from_secs(3600),
            now + Duration::from_secs(86_400),
        )
        .unwrap();
    let leaf_pem = issued
        .cert_pem()
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap()
        .to_owned();
    cases.push((
        "issued leaf without its CA",
        issued.clone(),
        leaf_pem,
        "apiserver.test",
        true,
    ));
    // Its CA still works as before; an unrelated root does not.
    cases.push((
        "issued leaf, its CA",
        issued.clone(),
        ca.cert_pem(),
        "apiserver.test",
        true,
    ));
    cases.push((
        "issued leaf, another root",
        issued,
        f.api.server.ca.cert_pem(),
        "apiserver.test",
        false,
    ));

    for (i, (name, cert, ca_pem, tls_name, want)) in cases.into_iter().enumerate() {
        let server = forbidding_server(&cert);
        let (ours, kubectl) =
            pinned_outcomes(&f, &format!("pinned{i}"), &server, &ca_pem, tls_name);
        assert_eq!(ours, want, "{name}");
        if let Some(k) = kubectl {
            assert_eq!(k, want, "{name}: kubectl");
        }
    }
}

#[test]
fn invalid_values_are_clear_errors() {
    let cases: [(&str, &str); 6] = [
        (
            "clusters: [{name: k, cluster: {insecure-skip-tls-verify: true}}]",
            "has no server",
        ),
        (
            "clusters: [{name: k, cluster: {server: 'http://k:8080'}}]",
            "plain http",
        ),
        (
            "clusters: [{name: k, cluster: {server: 'https://k:6443', certificate-authority: /nonexistent/ca.pem}}]",
            "cannot read certificate authority /nonexistent/ca.pem",
        ),
        (
            "clusters: [{name: k, cluster: {server: 'https://k:6443', certificate-authority-data: bm90IGEgY2VydA==}}]",
            "invalid certificate authority",
        ),
        (
            "clusters: [{name: k, cluster: {server: 'https://k:6443'}}]",
            "no certificate authority",
        ),
        (
            "clusters: [{name: k, cluster: {server: 'https://k:6443', insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {client-certificate: /x/cert}}]",
            "no client key",
        ),
    ];
    for (clusters, want) in cases {
        let user_ctx = if clusters.contains("users:") {
            "contexts: [{name: c, context: {cluster: k, user: u}}]"
        } else {
            "contexts: [{name: c, context: {cluster: k}}]"
        };
        let yaml = format!("current-context: c\n{clusters}\n{user_ctx}\n");
        let err = Kubeconfig::from_slice(yaml.as_bytes(), "/")
            .unwrap()
            .client_builder(None)
            .unwrap_err();
        assert!(err.to_string().contains(want), "{want}: {err}");
    }
    let err = Kubeconfig::from_slice(
        b"clusters: [{name: k, cluster: {certificate-authority-data: '!!'}}]",
        "/",
    )
    .unwrap_err();
    assert!(err.to_string().contains("base64"), "{err}");
    let err = Kubeconfig::from_slice(b"clusters: {not: [a list", "/").unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
    let err = Kubeconfig::from_slice(
        b"users: [{name: u, user: {token: a}}, {name: u, user: {token: b}}]",
        "/",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(r#"duplicate user name "u""#),
        "{err}"
    );
}

/// `KUBECONFIG=a:missing:b`: missing files are skipped, the first file to define a name or
/// the current-context wins, relative paths resolve against their own file's directory.
#[test]
fn kubeconfig_list_is_merged_as_kubectl_does() {
    let f = Fixture::new();
    f.write_pki("second/pki");
    let first = f.write(
        "first/config",
        format!(
            "current-context: from-first\n\
             clusters: [{{name: shared, cluster: {{server: '{}', certificate-authority: pki/ca.crt}}}}]\n\
             contexts: [{{name: from-first, context: {{cluster: shared, user: node}}}}]\n\
             users: [{{name: node, user: {{client-certificate: pki/node.crt, client-key: pki/node.key}}}}]\n",
            f.api.server.url()
        ),
    );
    // The PKI files live under second/; the first file reaches them by a path relative to
    // its own directory.
    let first_text = std::fs::read_to_string(&first)
        .unwrap()
        .replace("pki/", "../second/pki/");
    std::fs::write(&first, first_text).unwrap();
    let second = f.write(
        "second/config",
        "current-context: from-second\n\
         clusters: [{name: shared, cluster: {server: 'https://wrong.invalid:1'}}]\n\
         clusters: []\n",
    );
    // Duplicate key `clusters` is an error: a broken file in the list is not skipped.
    let err = Kubeconfig::load_merged(&[&first, &second]).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
    std::fs::write(
        &second,
        format!(
            "current-context: from-second\n\
             clusters:\n- {{name: shared, cluster: {{server: 'https://wrong.invalid:1', insecure-skip-tls-verify: true}}}}\n\
             - {{name: own, cluster: {{server: '{}', certificate-authority: pki/ca.crt}}}}\n\
             contexts: [{{name: from-second, context: {{cluster: shared, user: node}}}}, {{name: extra, context: {{cluster: own, user: node}}}}]\n\
             users: [{{name: node, user: {{token: second-wins-nothing}}}}]\n",
            f.api.server.url()
        ),
    )
    .unwrap();

    let missing = f.dir.path().join("missing/config");
    let list =
        std::env::join_paths([first.as_path(), missing.as_path(), second.as_path()]).unwrap();
    let kc = Kubeconfig::load_from_env(Some(&list), None).unwrap();
    assert_eq!(kc.current_context(), Some("from-first"));
    assert_eq!(kc.context_names(), ["extra", "from-first", "from-second"]);
    // current-context from the first file, cluster "shared" and user "node" from the first.
    let b = kc.client_builder(None).unwrap();
    assert_eq!(b.server(), f.api.server.url());
    assert_eq!(
        f.observe(&b.build().unwrap()),
        (Some("system:node:kc".into()), None)
    );
    // A context only the second file has, whose CA path is relative to the second file.
    let extra = kc.client_builder(Some("extra")).unwrap();
    assert_eq!(
        f.observe(&extra.build().unwrap()).0.as_deref(),
        Some("system:node:kc")
    );
}

#[test]
fn missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let list = std::env::join_paths([&a, &b]).unwrap();
    let err = Kubeconfig::load_from_env(Some(&list), None).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&a.display().to_string()), "{err}");

    let err = KubeCsrClient::from_kubeconfig(&a).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot read kubeconfig"), "{err}");

    // KUBECONFIG unset: $HOME/.kube/config.
    let err = Kubeconfig::load_from_env(None, Some(dir.path().as_os_str())).unwrap_err();
    assert!(err.to_string().contains(".kube"), "{err}");
    std::fs::create_dir_all(dir.path().join(".kube")).unwrap();
    std::fs::write(dir.path().join(".kube/config"), "current-context: home\n").unwrap();
    let kc = Kubeconfig::load_from_env(None, Some(dir.path().as_os_str())).unwrap();
    assert_eq!(kc.current_context(), Some("home"));
    let err = Kubeconfig::load_from_env(None, None).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }));
}

#[test]
fn empty_file_has_no_context() {
    let kc = Kubeconfig::from_slice(b"", Path::new("/")).unwrap();
    assert!(matches!(
        kc.client_builder(None),
        Err(ConfigError::NoCurrentContext)
    ));
    let kc = Kubeconfig::from_slice(b"clusters: null\nusers: ~\ncontexts:\n", "/").unwrap();
    assert!(kc.context_names().is_empty());
}

/// The kubelet's wiring through a kubeconfig: bootstrap credentials from the file until a
/// certificate exists, then that certificate.
#[test]
fn factory_from_a_kubeconfig_switches_from_bootstrap_to_the_current_certificate() {
    let f = Fixture::new();
    f.write_pki("pki");
    let cfg = format!(
        "current-context: c\nclusters: [{{name: k, cluster: {{server: '{}', certificate-authority: pki/ca.crt}}}}]\n\
         users: [{{name: u, user: {{client-certificate: pki/node.crt, client-key: pki/node.key}}}}]\n\
         contexts: [{{name: c, context: {{cluster: k, user: u}}}}]\n",
        f.api.server.url()
    );
    let factory = Kubeconfig::load(f.write("config", cfg))
        .unwrap()
        .client_builder(None)
        .unwrap()
        .factory();
    let rotated = f.api.server.client_cert("system:node:rotated");
    let (_k, req) = new_request(CLIENT_SIGNER, &client_usages());
    factory(None).unwrap().create(&req, &Cancel::new()).unwrap();
    factory(Some(&rotated))
        .unwrap()
        .create(&req, &Cancel::new())
        .unwrap();
    let cns: Vec<_> = f.api.requests().into_iter().map(|l| l.peer_cn).collect();
    assert_eq!(
        cns,
        [
            Some("system:node:kc".to_owned()),
            Some("system:node:rotated".to_owned())
        ]
    );
}
