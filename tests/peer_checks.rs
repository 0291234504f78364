//! An issued chain that a TLS peer would refuse is refused by `verify_issued`, and one a peer
//! accepts is accepted. The chains are made with rcgen (not with this crate's own certificate
//! writer), and each verdict is checked against real peers: rustls' own certificate verifiers
//! (webpki, as every rustls client and server runs them) and, when `openssl` is on PATH,
//! `openssl verify -purpose sslserver|sslclient`. Where this crate is deliberately stricter than
//! a peer, the table says which peer accepts and why the chain is refused anyway.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certrotate::pki::{self, NOT_BEFORE_ALLOWANCE, PkiError, crypto_provider, verify_issued};
use certrotate::{CsrTemplate, KeyAlgorithm, KeyUsage, PrivateKey};
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose as Eku, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose as Ku,
    NameConstraints, SanType,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;

/// 2030-06-01T00:00:00Z, the moment every chain is checked at.
const NOW: u64 = 1_906_502_400;
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const SERVER: [KeyUsage; 2] = [KeyUsage::DigitalSignature, KeyUsage::ServerAuth];
const CLIENT: [KeyUsage; 2] = [KeyUsage::DigitalSignature, KeyUsage::ClientAuth];

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn at(t: SystemTime) -> time::OffsetDateTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap()
}

fn template() -> CsrTemplate {
    CsrTemplate::new("svc")
        .with_dns_name("svc.example")
        .with_ip_address("10.0.0.1".parse().unwrap())
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// A CA: its parameters (for issuing), key and certificate.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
}

impl Ca {
    fn params(cn: &str, tweak: impl FnOnce(&mut CertificateParams)) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = name(cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
        p.not_before = at(now() - 24 * HOUR);
        p.not_after = at(now() + 24 * HOUR);
        tweak(&mut p);
        p
    }

    fn root(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = Ca::params(cn, |_| {});
        let der = params.self_signed(&key).unwrap().der().clone();
        Ca { params, key, der }
    }

    /// A CA certificate named `cn`, issued by `self`.
    fn sub(&self, cn: &str, tweak: impl FnOnce(&mut CertificateParams)) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = Ca::params(cn, tweak);
        let der = params
            .signed_by(&key, &self.issuer())
            .unwrap()
            .der()
            .clone();
        Ca { params, key, der }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// A leaf for `key` with the template's subject and SANs, digitalSignature and serverAuth,
    /// valid from 5 minutes ago for an hour, changed by `tweak`.
    fn leaf(
        &self,
        key: &PrivateKey,
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> CertificateDer<'static> {
        let mut p = CertificateParams::default();
        p.distinguished_name = name("svc");
        p.subject_alt_names = vec![
            SanType::DnsName("svc.example".try_into().unwrap()),
            SanType::IpAddress("10.0.0.1".parse().unwrap()),
        ];
        p.key_usages = vec![Ku::DigitalSignature];
        p.extended_key_usages = vec![Eku::ServerAuth];
        p.not_before = at(now() - 5 * MIN);
        p.not_after = at(now() + HOUR);
        tweak(&mut p);
        let public = KeyPair::from_pem(&key.to_pem()).unwrap();
        p.signed_by(&public, &self.issuer()).unwrap().der().clone()
    }
}

fn pem(chain: &[&CertificateDer<'_>]) -> String {
    chain
        .iter()
        .map(|c| {
            let b64 = base64_encode(c);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|l| std::str::from_utf8(l).unwrap())
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            )
        })
        .collect()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// What the real peers say about a chain.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Peers {
    /// rustls and OpenSSL both accept it.
    Accept,
    /// Both refuse it (rustls' error contains the first text, OpenSSL's the second).
    Refuse(&'static str, &'static str),
    /// rustls refuses it (error text); OpenSSL accepts it.
    RustlsRefuses(&'static str),
    /// OpenSSL refuses it (error text); rustls accepts it.
    OpensslRefuses(&'static str),
    /// Both accept it; refused here anyway, for the reason given.
    Stricter(&'static str),
}

/// rustls' verdict on `chain` for `usages` with `root` as the only trust anchor, at `NOW`.
fn rustls_verdict(
    root: &CertificateDer<'_>,
    chain: &[CertificateDer<'static>],
    usages: &[KeyUsage],
) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let roots = Arc::new(roots);
    let time = UnixTime::since_unix_epoch(Duration::from_secs(NOW));
    if usages.contains(&KeyUsage::ClientAuth) {
        let v = WebPkiClientVerifier::builder_with_provider(roots, crypto_provider())
            .build()
            .unwrap();
        v.verify_client_cert(&chain[0], &chain[1..], time)
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    } else {
        let v = WebPkiServerVerifier::builder_with_provider(roots, crypto_provider())
            .build()
            .unwrap();
        let server = ServerName::try_from("svc.example").unwrap();
        v.verify_server_cert(&chain[0], &chain[1..], &server, &[], time)
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    }
}

/// `openssl verify`'s verdict, or `None` when openssl is not on PATH.
fn openssl_verdict(
    dir: &Path,
    root: &CertificateDer<'_>,
    chain: &[CertificateDer<'static>],
    usages: &[KeyUsage],
) -> Option<Result<(), String>> {
    let write = |name: &str, certs: &[&CertificateDer<'_>]| {
        let p = dir.join(name);
        std::fs::write(&p, pem(certs)).unwrap();
        p
    };
    let root_file = write("root.pem", &[root]);
    let leaf_file = write("leaf.pem", &[&chain[0]]);
    let purpose = if usages.contains(&KeyUsage::ClientAuth) {
        "sslclient"
    } else {
        "sslserver"
    };
    let mut cmd = Command::new("openssl");
    cmd.args(["verify", "-attime", &NOW.to_string(), "-purpose", purpose])
        .arg("-CAfile")
        .arg(&root_file);
    if chain.len() > 1 {
        let rest: Vec<&CertificateDer<'_>> = chain[1..].iter().collect();
        cmd.arg("-untrusted").arg(write("untrusted.pem", &rest));
    }
    let out = cmd.arg(&leaf_file).output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(text)
    })
}

struct Case {
    name: &'static str,
    chain: Vec<CertificateDer<'static>>,
    usages: &'static [KeyUsage],
    /// `None`: accepted; else a text the refusal contains.
    want: Option<&'static str>,
    peers: Peers,
}

#[test]
fn issued_chains_are_judged_as_tls_peers_judge_them() {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let root = Ca::root("test-root");
    let inter = root.sub("test-intermediate", |_| {});
    let leaf = |ca: &Ca, tweak: &dyn Fn(&mut CertificateParams)| ca.leaf(&key, tweak);
    let plain = leaf(&root, &|_| {});
    let via_inter = leaf(&inter, &|_| {});
    // An impostor with the intermediate's name but another key.
    let impostor = root.sub("test-intermediate", |_| {});
    let by_impostor = leaf(&impostor, &|_| {});
    let unrelated = Ca::root("unrelated-root");
    let inter_no_ca = root.sub("not-a-ca", |p| p.is_ca = IsCa::ExplicitNoCa);
    let inter_client_only = root.sub("client-only-ca", |p| {
        p.extended_key_usages = vec![Eku::ClientAuth]
    });
    let inter_pathlen0 = root.sub("pathlen-0", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0))
    });
    let below_pathlen0 = inter_pathlen0.sub("below-pathlen-0", |_| {});
    let inter_expired = root.sub("expired-ca", |p| {
        p.not_before = at(now() - 48 * HOUR);
        p.not_after = at(now() - HOUR);
    });
    let constrained = |permitted: Vec<GeneralSubtree>, excluded: Vec<GeneralSubtree>| {
        root.sub("constrained", move |p| {
            p.name_constraints = Some(NameConstraints {
                permitted_subtrees: permitted,
                excluded_subtrees: excluded,
            })
        })
    };
    let nc_fits = constrained(vec![GeneralSubtree::DnsName("example".into())], vec![]);
    let nc_dns = constrained(
        vec![GeneralSubtree::DnsName("other.example".into())],
        vec![],
    );
    let nc_ip = constrained(
        vec![],
        vec![GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix(
            [10, 0, 0, 0],
            8,
        ))],
    );
    let v1 = pki::parse_chain_pem(&fixture("v1-store.crt")).unwrap();
    let c = |v: &CertificateDer<'static>| v.clone();
    let unknown_critical = {
        let mut ext = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
        ext.set_criticality(true);
        ext
    };
    let empty_eku = CustomExtension::from_oid_content(&[2, 5, 29, 37], vec![0x30, 0x00]);

    let cases = vec![
        Case {
            name: "leaf from the root",
            chain: vec![c(&plain)],
            usages: &SERVER,
            want: None,
            peers: Peers::Accept,
        },
        Case {
            name: "leaf, intermediate",
            chain: vec![c(&via_inter), c(&inter.der)],
            usages: &SERVER,
            want: None,
            peers: Peers::Accept,
        },
        Case {
            name: "leaf, intermediate, root",
            chain: vec![c(&via_inter), c(&inter.der), c(&root.der)],
            usages: &SERVER,
            want: None,
            peers: Peers::Accept,
        },
        Case {
            name: "no key usage and no extended key usage extension: any usage",
            chain: vec![leaf(&root, &|p| {
                p.key_usages.clear();
                p.extended_key_usages.clear();
            })],
            usages: &SERVER,
            want: None,
            peers: Peers::Accept,
        },
        Case {
            name: "client certificate with client auth",
            chain: vec![leaf(&root, &|p| {
                p.extended_key_usages = vec![Eku::ClientAuth]
            })],
            usages: &CLIENT,
            want: None,
            peers: Peers::Accept,
        },
        Case {
            name: "NotBefore one year ahead",
            chain: vec![leaf(&root, &|p| {
                p.not_before = at(now() + 365 * 24 * HOUR);
                p.not_after = at(now() + 366 * 24 * HOUR);
            })],
            usages: &SERVER,
            want: Some("the leaf is not valid before 2031-06-01T00:00:00Z (365d0h from now"),
            peers: Peers::Refuse("NotValidYet", "certificate is not yet valid"),
        },
        Case {
            name: "NotBefore one minute beyond the allowance",
            chain: vec![leaf(&root, &|p| {
                p.not_before = at(now() + NOT_BEFORE_ALLOWANCE + MIN)
            })],
            usages: &SERVER,
            want: Some("more than the 5m0s allowed for clock skew"),
            peers: Peers::Refuse("NotValidYet", "certificate is not yet valid"),
        },
        Case {
            name: "expired leaf",
            chain: vec![leaf(&root, &|p| {
                p.not_before = at(now() - 2 * HOUR);
                p.not_after = at(now() - HOUR);
            })],
            usages: &SERVER,
            want: Some("the leaf expired at"),
            peers: Peers::Refuse("Expired", "certificate has expired"),
        },
        Case {
            name: "serving certificate without server auth",
            chain: vec![leaf(&root, &|p| {
                p.extended_key_usages = vec![Eku::ClientAuth]
            })],
            usages: &SERVER,
            want: Some("without \"server auth\" (1.3.6.1.5.5.7.3.1)"),
            peers: Peers::Refuse("InvalidPurpose", "unsuitable certificate purpose"),
        },
        Case {
            name: "client certificate without client auth",
            chain: vec![c(&plain)],
            usages: &CLIENT,
            want: Some("without \"client auth\""),
            peers: Peers::Refuse("InvalidPurpose", "unsuitable certificate purpose"),
        },
        Case {
            name: "anyExtendedKeyUsage only",
            chain: vec![leaf(&root, &|p| p.extended_key_usages = vec![Eku::Any])],
            usages: &SERVER,
            want: Some("without \"server auth\""),
            peers: Peers::Refuse("InvalidPurpose", "unsuitable certificate purpose"),
        },
        Case {
            name: "empty extended key usage extension",
            chain: vec![leaf(&root, &|p| {
                p.extended_key_usages.clear();
                p.custom_extensions = vec![empty_eku.clone()];
            })],
            usages: &SERVER,
            want: Some("empty extended key usage"),
            peers: Peers::Refuse("EmptyEkuExtension", "unsuitable certificate purpose"),
        },
        Case {
            name: "key usage cRLSign only where digitalSignature was requested",
            chain: vec![leaf(&root, &|p| p.key_usages = vec![Ku::CrlSign])],
            usages: &SERVER,
            want: Some("key usage extension without digitalSignature"),
            // webpki ignores key usage on end entities.
            peers: Peers::OpensslRefuses("unsuitable certificate purpose"),
        },
        Case {
            name: "leaf with CA:TRUE",
            chain: vec![leaf(&root, &|p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
            })],
            usages: &SERVER,
            want: Some("the leaf is a CA certificate"),
            peers: Peers::RustlsRefuses("CaUsedAsEndEntity"),
        },
        Case {
            name: "unknown critical extension",
            chain: vec![leaf(&root, &|p| {
                p.custom_extensions = vec![unknown_critical.clone()]
            })],
            usages: &SERVER,
            want: Some("critical extension 1.3.6.1.4.1.99999.1"),
            peers: Peers::Refuse(
                "UnsupportedCriticalExtension",
                "unhandled critical extension",
            ),
        },
        Case {
            name: "SANs inside the intermediate's name constraints",
            chain: vec![leaf(&nc_fits, &|_| {}), c(&nc_fits.der)],
            usages: &SERVER,
            want: None,
            peers: Peers::Accept,
        },
        Case {
            name: "DNS name outside the intermediate's permitted subtrees",
            chain: vec![leaf(&nc_dns, &|_| {}), c(&nc_dns.der)],
            usages: &SERVER,
            want: Some(
                "the leaf's DNS name \"svc.example\" is outside the permitted subtrees of the name constraints of chain certificate 1",
            ),
            peers: Peers::Refuse("NameConstraintViolation", "permitted subtree violation"),
        },
        Case {
            name: "IP address in the intermediate's excluded subtrees",
            chain: vec![leaf(&nc_ip, &|_| {}), c(&nc_ip.der)],
            usages: &SERVER,
            want: Some("the leaf's IP address 10.0.0.1 is in an excluded subtree"),
            peers: Peers::Refuse("NameConstraintViolation", "excluded subtree violation"),
        },
        Case {
            name: "basic constraints twice",
            chain: vec![leaf(&root, &|p| {
                p.is_ca = IsCa::ExplicitNoCa;
                p.custom_extensions = vec![CustomExtension::from_oid_content(
                    &[2, 5, 29, 19],
                    vec![0x30, 0x00],
                )];
            })],
            usages: &SERVER,
            want: Some("the leaf has an extension twice"),
            peers: Peers::Refuse("ExtensionValueInvalid", "invalid certificate"),
        },
        Case {
            name: "chain out of order",
            chain: vec![c(&via_inter), c(&root.der), c(&inter.der)],
            usages: &SERVER,
            want: Some("the leaf was not issued by chain certificate 1"),
            peers: Peers::Stricter(
                "both search the list as a pool; TLS 1.2 requires each certificate to be followed by its issuer",
            ),
        },
        Case {
            name: "leaf followed by a CA that did not issue it",
            chain: vec![c(&via_inter), c(&unrelated.der)],
            usages: &SERVER,
            want: Some("the leaf was not issued by chain certificate 1"),
            peers: Peers::Refuse("UnknownIssuer", "unable to get local issuer certificate"),
        },
        Case {
            name: "issuer name matches but the signature does not verify",
            chain: vec![c(&by_impostor), c(&inter.der)],
            usages: &SERVER,
            want: Some(
                "the signature of the leaf does not verify with the key of chain certificate 1",
            ),
            peers: Peers::Refuse("BadSignature", "certificate signature failure"),
        },
        Case {
            name: "issuer that is not a CA",
            chain: vec![leaf(&inter_no_ca, &|_| {}), c(&inter_no_ca.der)],
            usages: &SERVER,
            want: Some("chain certificate 1 is not a CA certificate"),
            peers: Peers::Refuse("EndEntityUsedAsCa", "invalid CA certificate"),
        },
        Case {
            name: "intermediate restricted to client auth",
            chain: vec![leaf(&inter_client_only, &|_| {}), c(&inter_client_only.der)],
            usages: &SERVER,
            want: Some(
                "chain certificate 1 has an extended key usage extension without \"server auth\"",
            ),
            peers: Peers::Refuse("InvalidPurpose", "unsuitable certificate purpose"),
        },
        Case {
            name: "pathLenConstraint 0 above another CA",
            chain: vec![
                leaf(&below_pathlen0, &|_| {}),
                c(&below_pathlen0.der),
                c(&inter_pathlen0.der),
            ],
            usages: &SERVER,
            want: Some(
                "chain certificate 2 has pathLenConstraint 0 but 1 CA certificates below it",
            ),
            peers: Peers::Refuse(
                "PathLenConstraintViolated",
                "path length constraint exceeded",
            ),
        },
        Case {
            name: "expired intermediate",
            chain: vec![leaf(&inter_expired, &|_| {}), c(&inter_expired.der)],
            usages: &SERVER,
            want: Some("chain certificate 1 expired at"),
            peers: Peers::Refuse("Expired", "certificate has expired"),
        },
    ];

    let dir = tempfile::tempdir().unwrap();
    let mut openssl_ran = 0;
    for case in &cases {
        let chain_pem = pem(&case.chain.iter().collect::<Vec<_>>());
        let ours = verify_issued(
            chain_pem.as_bytes(),
            &key,
            Some(&template()),
            case.usages,
            now(),
        );
        match (case.want, &ours) {
            (None, Ok(_)) => {}
            (Some(want), Err(e @ PkiError::IssuedCertificate { .. })) => {
                assert!(e.to_string().contains(want), "{}: {e}", case.name)
            }
            (_, other) => panic!("{}: got {other:?}", case.name),
        }
        let rustls = rustls_verdict(&root.der, &case.chain, case.usages);
        let openssl = openssl_verdict(dir.path(), &root.der, &case.chain, case.usages);
        openssl_ran += usize::from(openssl.is_some());
        let (rustls_want, openssl_want) = match case.peers {
            Peers::Accept | Peers::Stricter(_) => (None, None),
            Peers::Refuse(r, o) => (Some(r), Some(o)),
            Peers::RustlsRefuses(r) => (Some(r), None),
            Peers::OpensslRefuses(o) => (None, Some(o)),
        };
        match (rustls_want, &rustls) {
            (None, Ok(())) => {}
            (Some(want), Err(e)) if e.contains(want) => {}
            _ => panic!(
                "{}: rustls said {rustls:?}, expected {rustls_want:?}",
                case.name
            ),
        }
        match (openssl_want, &openssl) {
            (_, None) | (None, Some(Ok(()))) => {}
            (Some(want), Some(Err(e))) if e.contains(want) => {}
            _ => panic!(
                "{}: openssl said {openssl:?}, expected {openssl_want:?}",
                case.name
            ),
        }
    }
    if openssl_ran == 0 {
        eprintln!("openssl not on PATH: checked against rustls only");
    }

    // X.509 v1 (the old client-go-style fixture): rustls parses only v3 certificates.
    let v1_key = PrivateKey::from_pem(&fixture("store.key")).unwrap();
    let err = verify_issued(&fixture("v1-store.crt"), &v1_key, None, &[], now()).unwrap_err();
    assert!(
        err.to_string()
            .contains("the leaf is an X.509 version 1 certificate"),
        "{err}"
    );
    let peer = rustls_verdict(&v1[0], &v1, &SERVER).unwrap_err();
    assert!(peer.contains("UnsupportedCertVersion"), "{peer}");
}

/// The allowance admits a NotBefore up to 5 minutes ahead (a signer's clock slightly ahead),
/// and `Certificate::is_not_yet_valid_at` draws the line at the same point.
#[test]
fn not_before_within_the_allowance_is_accepted() {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let root = Ca::root("test-root");
    for (ahead, ok) in [
        (Duration::ZERO, true),
        (4 * MIN, true),
        (NOT_BEFORE_ALLOWANCE, true),
        (NOT_BEFORE_ALLOWANCE + Duration::from_secs(1), false),
    ] {
        let der = root.leaf(&key, |p| p.not_before = at(now() + ahead));
        let r = verify_issued(pem(&[&der]).as_bytes(), &key, None, &SERVER, now());
        assert_eq!(r.is_ok(), ok, "{ahead:?}: {r:?}");
        let cert = certrotate::Certificate::from_parts(vec![der], key.clone()).unwrap();
        assert_eq!(cert.is_not_yet_valid_at(now()), !ok, "{ahead:?}");
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A leaf signed with SHA-1: Go (since 1.18) and rustls refuse it, and so does OpenSSL at
/// authentication level 2 (the level of Debian's and Ubuntu's TLS defaults).
#[test]
fn sha1_signed_leaf_is_refused() {
    let key = PrivateKey::from_pem(&fixture("sha1-leaf.key")).unwrap();
    let chain_pem = fixture("sha1-leaf.crt");
    let err = verify_issued(&chain_pem, &key, None, &SERVER, now()).unwrap_err();
    assert!(
        err.to_string()
            .contains("is signed with algorithm 1.2.840.10045.4.1, which TLS peers do not accept"),
        "{err}"
    );
    let ca = pki::parse_chain_pem(&fixture("ec.crt")).unwrap();
    let chain = pki::parse_chain_pem(&chain_pem).unwrap();
    let peer = rustls_verdict(&ca[0], &chain, &SERVER).unwrap_err();
    assert!(peer.contains("UnsupportedSignatureAlgorithm"), "{peer}");
    let dir = env!("CARGO_MANIFEST_DIR");
    if let Ok(out) = Command::new("openssl")
        .args([
            "verify",
            "-auth_level",
            "2",
            "-purpose",
            "sslserver",
            "-CAfile",
        ])
        .arg(format!("{dir}/tests/fixtures/ec.crt"))
        .arg(format!("{dir}/tests/fixtures/sha1-leaf.crt"))
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("digest algorithm too weak"), "{text}");
    }
}
