//! Hot rotation through real TLS handshakes on loopback: a server serving the manager's
//! certificate, a client presenting it, and a ureq program that follows rotations.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use certrotate::clock::SystemClock;
use certrotate::testing::{FakeClock, FakeCsrApi};
use certrotate::tls::{client_config, server_config};
use certrotate::{Certificate, CertificateManager, Config, CsrTemplate, KeyUsage, Manager};

#[path = "support/loopback_tls.rs"]
mod loopback_tls;
use loopback_tls::{TlsServer, handshake};

const DAY: Duration = Duration::from_secs(86_400);

fn template() -> CsrTemplate {
    CsrTemplate::new("svc")
        .with_dns_name("localhost")
        .with_ip_address("127.0.0.1".parse().unwrap())
}

fn manager(api: &Arc<FakeCsrApi>) -> CertificateManager {
    let m = CertificateManager::new(
        Config::builder()
            .template(template())
            .usages([
                KeyUsage::DigitalSignature,
                KeyUsage::ServerAuth,
                KeyUsage::ClientAuth,
            ])
            .signer_name("example.com/serving-and-client")
            .client_factory(api.factory())
            .build()
            .unwrap(),
    )
    .unwrap();
    m.rotate_now().unwrap();
    m
}

/// A client without a certificate. Resumption off: a resumed session reports the certificate
/// of the session it resumes, not the one the server would present now.
fn plain_client(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut config =
        rustls::ClientConfig::builder_with_provider(certrotate::pki::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(certrotate::tls::root_store(ca_pem.as_bytes()).unwrap())
            .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

#[test]
fn server_serves_each_rotated_certificate_without_restart() {
    let api = FakeCsrApi::new(Arc::new(SystemClock), DAY);
    let m = manager(&api);
    let server = TlsServer::start(server_config(&m, None).unwrap());
    let client = plain_client(&api.ca().cert_pem());
    let mut seen = Vec::new();
    for i in 0..3 {
        let (serial, _) = handshake(client.clone(), server.addr).unwrap();
        assert_eq!(serial, m.current().unwrap().serial_hex(), "handshake {i}");
        seen.push(serial);
        m.rotate_now().unwrap();
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "three distinct serials: {seen:?}");
}

#[test]
fn client_presents_the_rotated_certificate_on_the_next_handshake() {
    let api = FakeCsrApi::new(Arc::new(SystemClock), DAY);
    let server_side = manager(&api);
    let client_side = manager(&api);
    let ca = api.ca().cert_pem();
    let server = TlsServer::start(server_config(&server_side, Some(ca.as_bytes())).unwrap());
    let client = client_config(&client_side, ca.as_bytes()).unwrap();
    let (_, first) = handshake(client.clone(), server.addr).unwrap();
    assert_eq!(first, client_side.current().unwrap().serial_hex());
    let rotated = client_side.rotate_now().unwrap();
    // Same ClientConfig, resumption off: the next handshake presents the new certificate.
    let (_, second) = handshake(client, server.addr).unwrap();
    assert_eq!(second, rotated.serial_hex());
    assert_ne!(first, second);
}

/// How a ureq program follows rotations: a new Agent per rotation, driven by `subscribe()`.
fn agent_for(cert: &Certificate, ca_pem: &str) -> ureq::Agent {
    use ureq::tls::{ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let pem_certs = |pem: &str| -> Vec<ureq::tls::Certificate<'static>> {
        ureq::tls::parse_pem(pem.as_bytes())
            .filter_map(|i| match i {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect()
    };
    let key = PrivateKey::from_pem(cert.key_pem().as_bytes()).unwrap();
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&pem_certs(ca_pem)))
        .client_cert(Some(ClientCert::new_with_certs(
            &pem_certs(cert.cert_pem()),
            key,
        )))
        .unversioned_rustls_crypto_provider(certrotate::pki::crypto_provider())
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(None)
        .build()
        .new_agent()
}

#[test]
fn ureq_program_follows_rotations_with_a_new_agent_per_rotation() {
    let api = FakeCsrApi::new(Arc::new(SystemClock), DAY);
    let server_side = manager(&api);
    let client_side = manager(&api);
    let ca = api.ca().cert_pem();
    let server = TlsServer::start(server_config(&server_side, Some(ca.as_bytes())).unwrap());
    let url = format!("https://localhost:{}/", server.addr.port());
    let rotations = client_side.subscribe();
    let get = |agent: &ureq::Agent| -> String {
        agent
            .get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    };

    let old = client_side.current().unwrap();
    let mut agent = agent_for(&old, &ca);
    assert_eq!(get(&agent), old.serial_hex());
    client_side.rotate_now().unwrap();
    // The old agent's pooled keep-alive connection still carries the old certificate ...
    assert_eq!(get(&agent), old.serial_hex());
    // ... so the program builds a new agent when the manager reports a rotation.
    let new = rotations.recv_timeout(Duration::from_secs(10)).unwrap();
    agent = agent_for(&new, &ca);
    assert_eq!(get(&agent), new.serial_hex());
}

#[test]
fn resolver_offers_nothing_once_the_certificate_expired() {
    use rustls::client::ResolvesClientCert;
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let clock = FakeClock::new(start);
    let api = FakeCsrApi::new(Arc::new(clock.clone()), Duration::from_secs(3600));
    let m = CertificateManager::new(
        Config::builder()
            .template(template())
            .usages([KeyUsage::ClientAuth])
            .signer_name("kubernetes.io/kube-apiserver-client")
            .clock(Arc::new(clock.clone()))
            .client_factory(api.factory())
            .build()
            .unwrap(),
    )
    .unwrap();
    let resolver = m.resolver();
    assert!(!resolver.has_certs(), "no certificate yet");
    m.rotate_now().unwrap();
    assert!(resolver.has_certs());
    clock.set(start + Duration::from_secs(3600));
    assert!(resolver.has_certs(), "valid through its NotAfter second");
    clock.set(start + Duration::from_secs(3601));
    assert!(!resolver.has_certs());
    assert!(m.current().is_none());
}
