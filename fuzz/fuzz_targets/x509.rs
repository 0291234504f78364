//! The CSR and X.509 checks: a CSR (PEM and DER), a certificate (DER), a chain checked for
//! each usage set, an issued chain checked against the requested key and template, and the
//! server's `status.certificate` validation.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use certrotate::csr::KeyUsage;
use certrotate::pki::{self, CertInfo};
use certrotate::{CsrTemplate, PrivateKey};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

const USAGES: [&[KeyUsage]; 3] = [
    &[],
    &[KeyUsage::DigitalSignature, KeyUsage::ClientAuth],
    &[
        KeyUsage::DigitalSignature,
        KeyUsage::KeyEncipherment,
        KeyUsage::ServerAuth,
    ],
];

fn key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PrivateKey::from_pem(include_bytes!("../../tests/fixtures/ec.key")).expect("fixture key")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = pki::parse_csr_der(data);
    let _ = pki::parse_csr_pem(data);
    let _ = CertInfo::from_der(data);
    // 2027-01-01, inside the fixtures' validity.
    let now = UNIX_EPOCH + Duration::from_secs(1_798_761_600);
    let der = [CertificateDer::from(data)];
    for usages in USAGES {
        let _ = pki::verify_chain(&der, usages, now);
    }
    if let Ok(chain) = pki::parse_chain_pem(data) {
        for usages in USAGES {
            let _ = pki::verify_chain(&chain, usages, now);
        }
    }
    let template = CsrTemplate::new("system:node:fuzz").with_organization("system:nodes");
    let _ = pki::verify_issued(data, key(), Some(&template), USAGES[1], now);
    certrotate::fuzzing::server_certificate(data);
});
