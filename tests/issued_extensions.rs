//! The extensions of the leaf certificates our CA issues, for each usage set, decoded by
//! openssl (`openssl x509 -ext`), an independent parser, and compared with what Kubernetes'
//! signer issues for the same usages: `keyUsagesFromStrings` in
//! `pkg/controller/certificates/authority/policies.go` maps each usage to a Go `x509.KeyUsage`
//! bit or `x509.ExtKeyUsage` (`signing` and `digital signature` to DigitalSignature, `s/mime`
//! and `email protection` to EmailProtection), de-duplicates the extended usages and sorts them
//! by Go's `ExtKeyUsage` value; Go's `crypto/x509` then writes KeyUsage critical (and not at
//! all when no bit is set), ExtKeyUsage not critical (and not at all when empty), and
//! basicConstraints critical with CA:FALSE (the signer sets `BasicConstraintsValid`).
//! The expected texts are openssl's names for those bits and OIDs.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certrotate::csr::KeyUsage;
use certrotate::pki::CertificateAuthority;
use certrotate::{CsrTemplate, KeyAlgorithm, PrivateKey};

/// The KeyUsage bits in DER bit order (RFC 5280 §4.2.1.3) with openssl's names.
const KU_NAMES: [(&str, &str); 9] = [
    ("digital signature", "Digital Signature"),
    ("content commitment", "Non Repudiation"),
    ("key encipherment", "Key Encipherment"),
    ("data encipherment", "Data Encipherment"),
    ("key agreement", "Key Agreement"),
    ("cert sign", "Certificate Sign"),
    ("crl sign", "CRL Sign"),
    ("encipher only", "Encipher Only"),
    ("decipher only", "Decipher Only"),
];

/// Go's `x509.ExtKeyUsage` values in order (Any = 0 … NetscapeServerGatedCrypto = 11) with
/// openssl's names of their OIDs.
const EKU_NAMES: [(&str, &str); 12] = [
    ("any", "Any Extended Key Usage"),
    ("server auth", "TLS Web Server Authentication"),
    ("client auth", "TLS Web Client Authentication"),
    ("code signing", "Code Signing"),
    ("email protection", "E-mail Protection"),
    ("ipsec end system", "IPSec End System"),
    ("ipsec tunnel", "IPSec Tunnel"),
    ("ipsec user", "IPSec User"),
    ("timestamping", "Time Stamping"),
    ("ocsp signing", "OCSP Signing"),
    ("microsoft sgc", "Microsoft Server Gated Crypto"),
    ("netscape sgc", "Netscape Server Gated Crypto"),
];

/// The upstream aliases: the name whose bit or OID a usage string maps to.
fn canonical(usage: &str) -> &str {
    match usage {
        "signing" => "digital signature",
        "s/mime" => "email protection",
        other => other,
    }
}

/// What openssl must print for `usages`, as Kubernetes' signer issues them.
fn expected(usages: &[&str]) -> String {
    let wanted = |name: &str| usages.iter().any(|u| canonical(u) == name);
    let ku: Vec<&str> = KU_NAMES
        .iter()
        .filter(|(u, _)| wanted(u))
        .map(|(_, n)| *n)
        .collect();
    let eku: Vec<&str> = EKU_NAMES
        .iter()
        .filter(|(u, _)| wanted(u))
        .map(|(_, n)| *n)
        .collect();
    let mut out = String::new();
    if !ku.is_empty() {
        out.push_str(&format!("X509v3 Key Usage: critical\n{}\n", ku.join(", ")));
    }
    out.push_str("X509v3 Basic Constraints: critical\nCA:FALSE\n");
    if !eku.is_empty() {
        out.push_str(&format!("X509v3 Extended Key Usage:\n{}\n", eku.join(", ")));
    }
    out
}

/// openssl's decoding of the usage extensions of `pem`, whitespace normalised, in the order
/// the certificate carries them.
fn openssl_extensions(pem: &str, dir: &std::path::Path, n: usize) -> String {
    let path = dir.join(format!("leaf-{n}.pem"));
    std::fs::write(&path, pem).unwrap();
    let out = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "keyUsage,extendedKeyUsage,basicConstraints",
            "-in",
        ])
        .arg(&path)
        .output()
        .expect("openssl runs (it is installed by .ci/run)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The extensions as blocks (header line and value lines), sorted: the extensions' order in
/// the certificate is not compared.
fn blocks(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("X509v3 ") {
            out.push(format!("{line}\n"));
        } else if let Some(last) = out.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    out.sort();
    out
}

fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn issued_usage_extensions_are_those_kubernetes_issues() {
    let mut sets: Vec<Vec<&str>> = vec![
        // The kubelet's client and serving sets, the kube-apiserver-client set.
        vec!["digital signature", "key encipherment", "client auth"],
        vec!["digital signature", "key encipherment", "server auth"],
        vec!["digital signature", "client auth"],
        // Aliases, duplicates and an order that is not Go's.
        vec!["signing", "key encipherment", "server auth", "client auth"],
        vec!["client auth", "server auth", "any", "client auth"],
        vec!["s/mime", "email protection", "code signing"],
        // Extended usages alone: no KeyUsage extension at all.
        vec!["server auth"],
        // Every usage at once.
        KeyUsage::ALL.iter().map(|u| u.as_str()).collect(),
    ];
    // Each KeyUsage bit and each extended usage alone.
    for (u, _) in KU_NAMES.iter().chain(EKU_NAMES.iter()) {
        sets.push(vec![u]);
    }
    let ca = CertificateAuthority::for_tests("extensions-ca").unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let template = CsrTemplate::new("system:node:n").with_organization("system:nodes");
    let dir = tempfile::tempdir().unwrap();
    for (n, set) in sets.iter().enumerate() {
        let usages: Vec<KeyUsage> = set.iter().map(|u| u.parse().unwrap()).collect();
        let pem = ca
            .issue_pem(
                &template,
                &key,
                &usages,
                time(1_800_000_000),
                time(1_800_086_400),
            )
            .unwrap();
        let got = openssl_extensions(&pem, dir.path(), n);
        assert_eq!(
            blocks(&got),
            blocks(&expected(set)),
            "usages {set:?}: openssl decodes\n{got}"
        );
    }
}
