//! The certificate manager wired to the real `KubeCsrClient` through its factory, against the
//! HTTPS fake of the CSR API: the kubelet's flow from bootstrap credentials to a rotated
//! certificate, and the health verdict after a failed create (C4).

mod common;

use std::sync::Arc;

use certrotate::{CertificateManager, Config, CsrTemplate, Manager, MemoryStore};
use common::*;

fn config(api: &FakeApi, bootstrap: &certrotate::Certificate) -> Config {
    Config::builder()
        .template(CsrTemplate::new("system:node:n1").with_organization("system:nodes"))
        .usages(client_usages())
        .signer_name(CLIENT_SIGNER)
        .store(Arc::new(MemoryStore::new()))
        .bootstrap(bootstrap.cert_pem(), bootstrap.key_pem())
        .client_factory(api.builder().factory())
        .build()
        .unwrap()
}

/// Bootstrap credentials for the first rotation, then the issued certificate for the next:
/// the server sees each in turn on the wire.
#[test]
fn manager_rotates_through_the_kube_client_with_bootstrap_then_issued_cert() {
    let api = FakeApi::auto_issuing();
    let bootstrap = api.server.client_cert("system:bootstrap:abcdef");
    let mgr = CertificateManager::new(config(&api, &bootstrap)).unwrap();
    let first = mgr.rotate_now().unwrap();
    assert_eq!(first.common_name(), "system:node:n1");
    let second = mgr.rotate_now().unwrap();
    assert_ne!(first.serial_hex(), second.serial_hex());
    assert_eq!(mgr.current().unwrap().serial_hex(), second.serial_hex());
    assert!(mgr.server_healthy());
    let creates: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|l| l.method == "POST")
        .map(|l| l.peer_serial)
        .collect();
    assert_eq!(
        creates,
        [Some(bootstrap.serial_hex()), Some(first.serial_hex())]
    );
}

/// C4 end to end: an expired or rejected cert answered with 401 makes the server count as
/// healthy after one attempt; a 5xx from a proxy does not.
#[test]
fn c4_health_after_a_failed_create() {
    for (reply, healthy) in [
        (Reply::status(401, "Unauthorized", "Unauthorized"), true),
        (Reply::plain(401, "Unauthorized"), true),
        (Reply::status(403, "Forbidden", "no"), true),
        (Reply::plain(503, "upstream connect error"), false),
    ] {
        let api = FakeApi::auto_issuing();
        api.state.lock().create_replies.push_back(reply.clone());
        let bootstrap = api.server.client_cert("system:bootstrap:abcdef");
        let mgr = CertificateManager::new(config(&api, &bootstrap)).unwrap();
        assert!(!mgr.server_healthy(), "initial state");
        assert!(mgr.rotate_now().is_err());
        assert_eq!(mgr.server_healthy(), healthy, "{reply:?}");
    }
}
