//! certrotate never reads rustls's process-default crypto provider: it passes its own (`ring`)
//! to every builder, so a program whose dependencies enable both `ring` and `aws-lc-rs` (where
//! `rustls::ClientConfig::builder()` panics for want of a default) runs it unharmed.
//!
//! This test binary installs a default provider that cannot make any TLS config (no cipher
//! suites, no key exchange groups): every provider-less builder panics with it, as with two
//! providers and no default. Then everything certrotate does over TLS runs: the embedded CSR API
//! server, a kubeconfig client with a client certificate, a manager getting a certificate
//! through the CSR API, the `tls` module's server and client configs in a handshake, and the
//! builders it offers to programs. Any use of the process default would fail it.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use certrotate::kubeconfig::Kubeconfig;
use certrotate::rustls;
use certrotate::server::{ApprovalPolicy, CsrApiServer, Identity};
use certrotate::{CertificateManager, Config, CsrTemplate, KeyUsage, MemoryStore, Store, tls};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection};

/// Runs a handshake between two in-memory connections; the server's certificate serial.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) -> Result<(), String> {
    for _ in 0..20 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).map_err(|e| e.to_string())?;
        server.read_tls(&mut &buf[..]).map_err(|e| e.to_string())?;
        server.process_new_packets().map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        server.write_tls(&mut buf).map_err(|e| e.to_string())?;
        client.read_tls(&mut &buf[..]).map_err(|e| e.to_string())?;
        client.process_new_packets().map_err(|e| e.to_string())?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    Err("the handshake did not finish".into())
}

#[test]
#[allow(clippy::disallowed_methods)] // the provider-less builder, to show that it panics here
fn certrotate_never_reads_the_process_default_crypto_provider() {
    let poisoned = CryptoProvider {
        cipher_suites: Vec::new(),
        kx_groups: Vec::new(),
        ..rustls::crypto::ring::default_provider()
    };
    poisoned
        .install_default()
        .expect("no default was installed before");
    // With this default the provider-less builders panic, as with two providers and no default
    // (their panic messages are kept out of the output).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let client_panics = std::panic::catch_unwind(rustls::ClientConfig::builder).is_err();
    let server_panics = std::panic::catch_unwind(rustls::ServerConfig::builder).is_err();
    std::panic::set_hook(hook);
    assert!(client_panics && server_panics);

    // The embedded server (its listener's TLS) and a client-certificate kubeconfig.
    let server = CsrApiServer::builder()
        .signer("example.com/provider-test")
        .approval_policy(ApprovalPolicy::All)
        .start()
        .expect("server");
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    let mut file = std::fs::File::create(&kubeconfig).unwrap();
    file.write_all(
        server
            .kubeconfig(&Identity::ClientCert {
                user: "provider-test".into(),
                groups: Vec::new(),
            })
            .unwrap()
            .as_bytes(),
    )
    .unwrap();

    // A manager gets a certificate through the CSR API over that TLS.
    let config = Config::builder()
        .name("provider-test")
        .template(
            CsrTemplate::new("provider-test")
                .with_dns_name("localhost")
                .with_ip_address([127, 0, 0, 1].into()),
        )
        .signer_name("example.com/provider-test")
        .usages([
            KeyUsage::DigitalSignature,
            KeyUsage::ServerAuth,
            KeyUsage::ClientAuth,
        ])
        .certificate_wait_timeout(Duration::from_secs(60))
        .store(Arc::new(MemoryStore::new()) as Arc<dyn Store>)
        .client_factory(
            Kubeconfig::load(&kubeconfig)
                .unwrap()
                .client_builder(None)
                .unwrap()
                .factory(),
        )
        .build()
        .unwrap();
    let manager = CertificateManager::new(config).unwrap();
    let cert = manager
        .rotate_now()
        .expect("a certificate through the CSR API");

    // The tls module's configs, both sides presenting the manager's certificate.
    let ca = server.ca_pem();
    let server_config = tls::server_config(&manager, Some(ca.as_bytes())).unwrap();
    let client_config = tls::client_config(&manager, ca.as_bytes()).unwrap();
    let mut client =
        ClientConnection::new(client_config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut server_conn = ServerConnection::new(server_config.clone()).unwrap();
    handshake(&mut client, &mut server_conn).expect("handshake with the tls module's configs");
    let served = client.peer_certificates().unwrap()[0].clone();
    assert_eq!(served.as_ref(), cert.chain()[0].as_ref());

    // The builders offered to programs.
    let plain_client = tls::client_config_builder()
        .unwrap()
        .with_root_certificates(tls::root_store(ca.as_bytes()).unwrap())
        .with_no_client_auth();
    let mut client = ClientConnection::new(
        Arc::new(plain_client),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut server_conn = ServerConnection::new(server_config).unwrap();
    let refused = handshake(&mut client, &mut server_conn);
    // The server asks for a client certificate this client does not have: the handshake got
    // as far as the server's verifier, which needs working cryptography on both sides.
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("certificate")),
        "{refused:?}"
    );
    let plain_server = tls::server_config_builder()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(manager.resolver());
    let mut client = ClientConnection::new(
        Arc::new(
            tls::client_config_builder()
                .unwrap()
                .with_root_certificates(tls::root_store(ca.as_bytes()).unwrap())
                .with_no_client_auth(),
        ),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut server_conn = ServerConnection::new(Arc::new(plain_server)).unwrap();
    handshake(&mut client, &mut server_conn).expect("handshake with the offered builders");

    // An installed default is kept, and returned.
    let in_force = tls::install_default_provider();
    assert!(Arc::ptr_eq(
        &in_force,
        CryptoProvider::get_default().expect("installed")
    ));
    assert!(in_force.cipher_suites.is_empty());
    server.shutdown();
}
