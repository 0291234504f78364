//! Certificates, keys and CSRs through the public API, against openssl-made fixtures that mirror
//! client-go's test data (see tests/fixtures/make-fixtures.sh).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certrotate::pki::{self, CertificateAuthority, PkiError, parse_csr_pem, verify_issued};
use certrotate::{Certificate, CsrTemplate, KeyAlgorithm, KeyUsage, PrivateKey};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn year(y: u64) -> SystemTime {
    // Close enough for picking a moment inside a year.
    UNIX_EPOCH + Duration::from_secs((y - 1970) * 365 * 86_400 + 180 * 86_400)
}

#[test]
fn weak_rsa_fixture_with_pkcs8_body_under_rsa_label_loads() {
    let key = fixture("store.key");
    assert!(String::from_utf8_lossy(&key).contains("BEGIN RSA PRIVATE KEY"));
    let cert = Certificate::from_pem(&fixture("store.crt"), &key).unwrap();
    assert_eq!(cert.common_name(), "test-certificate-0");
    assert_eq!(
        cert.private_key().algorithm(),
        KeyAlgorithm::Rsa { bits: 512 }
    );
    assert!(
        cert.certified_key().is_none(),
        "rustls cannot sign with 512-bit RSA"
    );
    assert!(!cert.is_expired_at(year(2100)));
    assert!(cert.is_expired_at(year(2118)));
}

#[test]
fn expired_fixture_shares_the_store_key() {
    let cert = Certificate::from_pem(&fixture("expired.crt"), &fixture("expired.key")).unwrap();
    assert_eq!(cert.common_name(), "host-123");
    assert!(cert.is_expired_at(year(2019)));
}

#[test]
fn combined_file_with_sec1_key_before_cert_loads() {
    let cert = Certificate::from_pair_pem(&fixture("ec-key-then-cert.pem")).unwrap();
    assert_eq!(cert.common_name(), "ec-node");
    assert_eq!(cert.organizations(), ["system:nodes"]);
    assert_eq!(cert.private_key().algorithm(), KeyAlgorithm::EcdsaP256);
    assert!(cert.certified_key().is_some());
    // Round trip through our own PEM forms.
    let again =
        Certificate::from_pem(cert.cert_pem().as_bytes(), cert.key_pem().as_bytes()).unwrap();
    assert_eq!(again, cert);
}

#[test]
fn two_cert_chain_keeps_both_certificates() {
    let cert = Certificate::from_pem(&fixture("two-certs.crt"), &fixture("two-certs.key")).unwrap();
    assert_eq!(cert.chain().len(), 2);
    assert_eq!(cert.dns_names(), ["www.example.com"]);
    assert_eq!(cert.cert_pem().matches("BEGIN CERTIFICATE").count(), 2);
}

#[test]
fn key_of_another_cert_is_a_mismatch() {
    let err = Certificate::from_pem(&fixture("store.crt"), &fixture("bootstrap.key")).unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch), "{err}");
}

#[test]
fn bad_cert_bytes_are_errors() {
    let key = fixture("store.key");
    for (name, bytes) in [
        ("two zero bytes", vec![0u8, 0]),
        ("empty", vec![]),
        ("key only", key.clone()),
        (
            "truncated PEM",
            b"-----BEGIN CERTIFICATE-----\nMIIB".to_vec(),
        ),
        (
            "garbage body",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
        ),
    ] {
        let err = Certificate::from_pem(&bytes, &key).unwrap_err();
        assert!(
            matches!(err, PkiError::InvalidCertificate(_)),
            "{name}: {err}"
        );
    }
}

/// client-go TestValidateKeyStrength.
#[test]
fn validate_key_strength() {
    let cases: [(&str, &str, bool); 4] = [
        ("RSA 1024 is insecure", "rsa1024.key", false),
        ("ECDSA P-224 is insecure", "p224.key", false),
        ("RSA 2048 is secure", "two-certs.key", true),
        ("ECDSA P-256 is secure", "ec.key", true),
    ];
    for (name, file, ok) in cases {
        let key = PrivateKey::from_pem(&fixture(file)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key.check_strength().is_ok(), ok, "{name}");
    }
    let rsa = PrivateKey::from_pem(&fixture("rsa1024.key")).unwrap();
    assert_eq!(
        rsa.check_strength().unwrap_err().to_string(),
        "the new key is insecure: RSA key size 1024 bits is below the minimum of 2048"
    );
    let ec = PrivateKey::from_pem(&fixture("p224.key")).unwrap();
    assert_eq!(
        ec.check_strength().unwrap_err().to_string(),
        "the new key is insecure: ECDSA key curve P-224 (224 bits) is below the minimum of 256"
    );
}

fn node_template() -> CsrTemplate {
    CsrTemplate::new("system:node:node-1")
        .with_organization("system:nodes")
        .with_organization("team-a")
        .with_organization("team-b")
        .with_organizational_unit("ops")
        .with_dns_name("node-1")
        .with_dns_name("node-1.cluster.local")
        .with_ip_address("10.0.0.7".parse().unwrap())
        .with_ip_address("fd00::7".parse().unwrap())
        .with_email_address("ops@example.com")
        .with_uri("spiffe://cluster.local/node/node-1")
}

#[test]
fn csr_carries_every_organization_and_san_and_verifies() {
    for alg in [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
    ] {
        let key = PrivateKey::generate(alg).unwrap();
        let pem = pki::build_csr_pem(&node_template(), &key).unwrap();
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----\n"),
            "{alg}"
        );
        let csr = parse_csr_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(csr.common_name, "system:node:node-1", "{alg}");
        // One multi-valued RDN, DER-sorted as Go sorts SET OF; the order carries no meaning.
        let mut orgs = csr.organizations.clone();
        orgs.sort();
        assert_eq!(orgs, ["system:nodes", "team-a", "team-b"], "{alg}");
        assert_eq!(csr.dns_names, ["node-1", "node-1.cluster.local"], "{alg}");
        assert_eq!(csr.ip_addresses.len(), 2, "{alg}");
        assert_eq!(csr.email_addresses, ["ops@example.com"], "{alg}");
        assert_eq!(csr.uris, ["spiffe://cluster.local/node/node-1"], "{alg}");
        assert_eq!(csr.public_key_der, key.public_key_der(), "{alg}");
    }
}

#[test]
fn csr_from_a_supplied_rsa_key_signs_and_verifies() {
    let key = PrivateKey::from_pem(&fixture("two-certs.key")).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::Rsa { bits: 2048 });
    let pem = pki::build_csr_pem(&CsrTemplate::new("rsa-user"), &key).unwrap();
    let csr = parse_csr_pem(pem.as_bytes()).unwrap();
    assert_eq!(csr.common_name, "rsa-user");
    assert_eq!(csr.san_der, None);
}

#[test]
fn tampered_or_mislabelled_csr_is_rejected() {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let pem = pki::build_csr_pem(&node_template(), &key).unwrap();
    let relabelled = pem.replace("CERTIFICATE REQUEST", "CERTIFICATE");
    let err = parse_csr_pem(relabelled.as_bytes()).unwrap_err();
    assert!(
        err.to_string()
            .contains("PEM block type must be CERTIFICATE REQUEST"),
        "{err}"
    );
    // Flip one byte inside the signed part: the DER may still parse but cannot verify.
    let (_, der) = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(
            |d: rustls::pki_types::CertificateSigningRequestDer<'static>| ((), d.as_ref().to_vec()),
        )
        .unwrap();
    let mut bad = der.clone();
    let i = bad.len() / 3;
    bad[i] ^= 0x01;
    assert!(pki::parse_csr_der(&bad).is_err());
    assert!(pki::parse_csr_der(&der).is_ok());
}

#[test]
fn ca_issues_what_the_csr_asked_for() {
    let ca = CertificateAuthority::for_tests("test-ca").unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let csr = parse_csr_pem(
        pki::build_csr_pem(&node_template(), &key)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let (nb, na) = (year(2030), year(2031));
    let pem = ca
        .sign_csr(
            &csr,
            &[KeyUsage::DigitalSignature, KeyUsage::ServerAuth],
            nb,
            na,
        )
        .unwrap();
    let cert = verify_issued(
        pem.as_bytes(),
        &key,
        Some(&node_template()),
        &[KeyUsage::DigitalSignature, KeyUsage::ServerAuth],
        year(2030) + Duration::from_secs(60),
    )
    .unwrap();
    let mut orgs = cert.organizations().to_vec();
    orgs.sort();
    assert_eq!(orgs, ["system:nodes", "team-a", "team-b"]);
    assert_eq!(
        cert.info().subject_der,
        csr.subject_der,
        "subject copied byte for byte"
    );
    assert_eq!(
        cert.info().not_before,
        pki::CertInfo::from_der(&cert.chain()[0])
            .unwrap()
            .not_before
    );
    assert!(node_template().satisfied_by(&cert));
    // The leaf verifies under the CA (x509-parser, ring).
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, leaf) = X509Certificate::from_der(&cert.chain()[0]).unwrap();
    let (_, root) = X509Certificate::from_der(ca.cert_der()).unwrap();
    leaf.verify_signature(Some(root.public_key())).unwrap();
    root.verify_signature(None).unwrap();
    assert!(root.is_ca());
    assert!(!leaf.is_ca());
}

#[test]
fn issued_chain_is_checked_before_use() {
    let ca = CertificateAuthority::for_tests("test-ca").unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let t = CsrTemplate::new("svc").with_ip_address("10.0.0.1".parse().unwrap());
    let usages = [KeyUsage::DigitalSignature, KeyUsage::ServerAuth];
    let now = year(2040);
    let good = ca
        .issue_pem(
            &t,
            &key,
            &usages,
            now - Duration::from_secs(300),
            now + Duration::from_secs(3600),
        )
        .unwrap();
    verify_issued(good.as_bytes(), &key, Some(&t), &usages, now).unwrap();

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "chain for another key",
            ca.issue_pem(&t, &other, &usages, now, now + Duration::from_secs(3600))
                .unwrap(),
            "different key",
        ),
        (
            "expired chain",
            ca.issue_pem(
                &t,
                &key,
                &usages,
                now - Duration::from_secs(7200),
                now - Duration::from_secs(3600),
            )
            .unwrap(),
            "expired",
        ),
        (
            "garbage PEM",
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into(),
            "PEM",
        ),
        (
            "chain missing a requested SAN",
            ca.issue_pem(
                &CsrTemplate::new("svc"),
                &key,
                &usages,
                now,
                now + Duration::from_secs(3600),
            )
            .unwrap(),
            "missing IP address 10.0.0.1",
        ),
    ];
    for (name, pem, want) in cases {
        let err = verify_issued(pem.as_bytes(), &key, Some(&t), &usages, now).unwrap_err();
        assert!(
            matches!(err, PkiError::IssuedCertificate { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(want), "{name}: {err}");
    }
}

/// Validity times are whole seconds, rounded down (towards the past) on both sides of 1970:
/// 1.5 s before the epoch is 23:59:58, not 23:59:59. Decoded by x509-parser (through
/// `Certificate`) and by OpenSSL.
#[test]
fn validity_times_round_down_to_the_second_on_both_sides_of_1970() {
    let ca = CertificateAuthority::for_tests("test-ca").unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let usages = [KeyUsage::DigitalSignature, KeyUsage::ClientAuth];
    let not_after = UNIX_EPOCH + Duration::from_secs(86_400);
    // (NotBefore as seconds from the epoch, the whole second expected, as OpenSSL prints it)
    let cases = [
        (-1.5, -2, "1969-12-31 23:59:58Z"),
        (-2.0, -2, "1969-12-31 23:59:58Z"),
        (-0.25, -1, "1969-12-31 23:59:59Z"),
        (0.0, 0, "1970-01-01 00:00:00Z"),
        (1.75, 1, "1970-01-01 00:00:01Z"),
    ];
    for (given, want, printed) in cases {
        let at = |s: f64| {
            if s < 0.0 {
                UNIX_EPOCH - Duration::from_secs_f64(-s)
            } else {
                UNIX_EPOCH + Duration::from_secs_f64(s)
            }
        };
        let cert = ca
            .issue(&CsrTemplate::new("t"), &key, &usages, at(given), not_after)
            .unwrap();
        assert_eq!(cert.not_before(), at(want as f64), "{given} s");
        let mut openssl = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-startdate", "-dateopt", "iso_8601"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl");
        use std::io::Write;
        openssl
            .stdin
            .take()
            .unwrap()
            .write_all(cert.cert_pem().as_bytes())
            .unwrap();
        let out = openssl.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("notBefore={printed}"),
            "{given} s"
        );
    }
}
