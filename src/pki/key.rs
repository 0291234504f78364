//! Private keys: generation, parsing whatever the PEM label says, strength checks, and the
//! public half used to match a key against a certificate.
//!
//! Keys are kept as PKCS#8 DER in memory whatever form they arrived in (PKCS#1 `RSA PRIVATE
//! KEY`, SEC1 `EC PRIVATE KEY`, PKCS#8 `PRIVATE KEY`), because that is the one form every
//! consumer (rcgen for signing CSRs, rustls for serving) accepts. The PEM label is never trusted:
//! Kubernetes' own test fixtures put PKCS#8 bodies under an `RSA PRIVATE KEY` label, so the
//! body is tried as PKCS#8, then PKCS#1, then SEC1.
//!
//! Loading accepts any key size (old 512-bit RSA pairs still load, as client-go allows); the
//! strength check ([`PrivateKey::check_strength`]) applies only to keys the manager is about to
//! put into a new CSR. The key never appears in `Debug` output or logs.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use rustls::pki_types::pem::{PemObject, SectionKind};
use yasna::models::ObjectIdentifier;
use yasna::{ASN1Error, ASN1ErrorKind, ASN1Result, Tag};

use super::PkiError;

const OID_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
const OID_ED25519: &[u64] = &[1, 3, 101, 112];
const OID_P224: &[u64] = &[1, 3, 132, 0, 33];
const OID_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
const OID_P384: &[u64] = &[1, 3, 132, 0, 34];
const OID_P521: &[u64] = &[1, 3, 132, 0, 35];

/// The algorithm of a private key.
///
/// The manager generates [`EcdsaP256`](KeyAlgorithm::EcdsaP256) keys by default, as client-go's
/// certificate manager does. RSA keys cannot be generated with the `ring` backend; a program that
/// needs them supplies its own generator (see [`ConfigBuilder::generate_key`]) and the key is then
/// classified as [`Rsa`](KeyAlgorithm::Rsa) with its modulus size.
///
/// [`ConfigBuilder::generate_key`]: crate::ConfigBuilder::generate_key
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256, signed with SHA-256. The default.
    EcdsaP256,
    /// ECDSA on NIST P-384, signed with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA with a modulus of `bits` bits (only from a custom generator or a loaded key).
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
    /// An elliptic curve key on a curve certrotate cannot sign with (P-224, P-521, …).
    OtherEc {
        /// Curve size in bits, 0 when the curve is unknown.
        bits: usize,
        /// Curve name as OpenSSL prints it (`P-224`), or the curve OID.
        curve: &'static str,
    },
}

impl KeyAlgorithm {
    /// True for RSA keys: the kubelet signers want `key encipherment` only for these.
    pub fn is_rsa(&self) -> bool {
        matches!(self, KeyAlgorithm::Rsa { .. })
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyAlgorithm::Ed25519 => f.write_str("Ed25519"),
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyAlgorithm::OtherEc { curve, .. } => write!(f, "ECDSA {curve}"),
        }
    }
}

/// A private key held as PKCS#8 DER.
///
/// Invariant: `pkcs8` is a well-formed PKCS#8 `PrivateKeyInfo` whose algorithm is `algorithm`,
/// and `public_key` is the subjectPublicKey bit string content of the matching public key (the
/// raw EC point, the DER `RSAPublicKey`, or the 32-byte Ed25519 key).
#[derive(Clone)]
pub struct PrivateKey {
    pkcs8: Vec<u8>,
    algorithm: KeyAlgorithm,
    public_key: Vec<u8>,
    /// The signing key pair, made by the first [`PrivateKey::signer`] (or kept from
    /// [`PrivateKey::generate`]) and shared by later ones and by clones: loading a key into
    /// ring checks it with a scalar multiplication, worth doing once per key, not per signature.
    /// Asserted unwind-safe: rcgen's pair is not (its RSA variant holds a `&dyn RsaEncoding`),
    /// but it is never changed after it is made (signing takes `&self`; ring's pairs have no
    /// interior mutability), so a panic cannot leave it half-changed.
    pair: std::sync::OnceLock<Arc<AssertUnwindSafe<rcgen::KeyPair>>>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a new key of the given algorithm with the system's secure random source.
    ///
    /// # Errors
    /// [`PkiError::KeyGeneration`] for RSA or other curves (the `ring` backend cannot generate
    /// them; supply a generator through the config instead) or when the backend fails.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<PrivateKey, PkiError> {
        let alg = match algorithm {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            other => {
                return Err(PkiError::KeyGeneration(format!(
                    "unsupported key algorithm: {other} (generate it yourself and pass a key generator)"
                )));
            }
        };
        let pair = rcgen::KeyPair::generate_for(alg)
            .map_err(|e| PkiError::KeyGeneration(e.to_string()))?;
        let key = PrivateKey::from_pkcs8_der(pair.serialized_der())?;
        // The pair signs with the algorithm `signer` picks for these key types.
        let _ = key.pair.set(Arc::new(AssertUnwindSafe(pair)));
        Ok(key)
    }

    /// Parses the first private key block of a PEM document, whatever its label
    /// (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`): the body is tried as PKCS#8, then
    /// PKCS#1, then SEC1. Certificate blocks before or after it are skipped.
    ///
    /// # Errors
    /// [`PkiError::InvalidKey`] when there is no key block or its body is none of the three forms.
    pub fn from_pem(pem: &[u8]) -> Result<PrivateKey, PkiError> {
        for item in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem) {
            let (kind, der) =
                item.map_err(|e| PkiError::InvalidKey(format!("cannot read PEM: {e}")))?;
            if matches!(
                kind,
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
            ) {
                return PrivateKey::from_der(&der);
            }
        }
        Err(PkiError::InvalidKey(
            "no private key PEM block found".into(),
        ))
    }

    /// Parses a DER private key in any of PKCS#8, PKCS#1 or SEC1 form.
    ///
    /// # Errors
    /// [`PkiError::InvalidKey`] when the bytes are none of the three forms.
    pub fn from_der(der: &[u8]) -> Result<PrivateKey, PkiError> {
        if let Ok(key) = PrivateKey::from_pkcs8_der(der) {
            return Ok(key);
        }
        if let Ok(key) = parse_pkcs1(der) {
            return Ok(key);
        }
        parse_sec1(der, None)
            .map_err(|_| PkiError::InvalidKey("key is neither PKCS#8, PKCS#1 nor SEC1 DER".into()))
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, PkiError> {
        let (alg_oid, params, inner, public) = yasna::parse_der(der, |r| {
            r.read_sequence(|r| {
                let version = r.next().read_u8()?;
                if version > 1 {
                    return Err(ASN1Error::new(ASN1ErrorKind::Invalid));
                }
                let (oid, params) = r.next().read_sequence(|r| {
                    let oid = r.next().read_oid()?;
                    let params = r.read_optional(|r| r.read_der())?;
                    Ok((oid, params))
                })?;
                let inner = r.next().read_bytes()?;
                // attributes [0] IMPLICIT, then publicKey [1] IMPLICIT BIT STRING (v2 only).
                r.read_optional(|r| r.read_tagged_implicit(Tag::context(0), |r| r.read_der()))?;
                let public = r.read_optional(|r| {
                    r.read_tagged_implicit(Tag::context(1), |r| r.read_bitvec_bytes())
                })?;
                Ok((oid, params, inner, public))
            })
        })
        .map_err(|e| PkiError::InvalidKey(format!("not PKCS#8: {e}")))?;
        let oid = alg_oid.components().as_slice();
        if oid == OID_RSA {
            let key = parse_pkcs1(&inner)?;
            Ok(PrivateKey {
                pkcs8: der.to_vec(),
                ..key
            })
        } else if oid == OID_EC_PUBLIC_KEY {
            let curve = params
                .as_deref()
                .and_then(|p| yasna::parse_der(p, |r| r.read_oid()).ok());
            let key = parse_sec1(&inner, curve)?;
            // Keep the original PKCS#8 bytes: ring accepts what it wrote itself.
            Ok(PrivateKey {
                pkcs8: der.to_vec(),
                ..key
            })
        } else if oid == OID_ED25519 {
            let seed = yasna::parse_der(&inner, |r| r.read_bytes())
                .map_err(|e| PkiError::InvalidKey(format!("bad Ed25519 key: {e}")))?;
            let public = match public {
                Some((bytes, _)) => bytes,
                None => {
                    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
                        .map_err(|e| PkiError::InvalidKey(format!("bad Ed25519 key: {e}")))?;
                    ring::signature::KeyPair::public_key(&pair)
                        .as_ref()
                        .to_vec()
                }
            };
            Ok(PrivateKey {
                pkcs8: der.to_vec(),
                algorithm: KeyAlgorithm::Ed25519,
                public_key: public,
                pair: std::sync::OnceLock::new(),
            })
        } else {
            Err(PkiError::InvalidKey(format!(
                "unsupported private key algorithm {alg_oid}"
            )))
        }
    }

    /// The key's algorithm (and size for RSA).
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The key as PKCS#8 DER. Secret: never log it.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key as a PKCS#8 `PRIVATE KEY` PEM block, the form written to stores.
    /// Secret: never log it.
    pub fn to_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.pkcs8)
    }

    /// The subjectPublicKey content of the matching public key: the uncompressed EC point, the
    /// DER `RSAPublicKey`, or the raw Ed25519 key. Equal to the same field of a certificate whose
    /// key this is.
    pub fn public_key_bits(&self) -> &[u8] {
        &self.public_key
    }

    /// The DER `SubjectPublicKeyInfo` of the matching public key.
    pub fn public_key_der(&self) -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_sequence(|w| match self.algorithm {
                    KeyAlgorithm::Rsa { .. } => {
                        w.next().write_oid(&ObjectIdentifier::from_slice(OID_RSA));
                        w.next().write_null();
                    }
                    KeyAlgorithm::Ed25519 => {
                        w.next()
                            .write_oid(&ObjectIdentifier::from_slice(OID_ED25519));
                    }
                    KeyAlgorithm::EcdsaP256
                    | KeyAlgorithm::EcdsaP384
                    | KeyAlgorithm::OtherEc { .. } => {
                        w.next()
                            .write_oid(&ObjectIdentifier::from_slice(OID_EC_PUBLIC_KEY));
                        w.next()
                            .write_oid(&ObjectIdentifier::from_slice(curve_oid(self.algorithm)));
                    }
                });
                w.next()
                    .write_bitvec_bytes(&self.public_key, self.public_key.len() * 8);
            })
        })
    }

    /// Checks that the key is strong enough to go into a new CSR: RSA at least 2048 bits, ECDSA
    /// at least 256 bits (client-go's `validateKeyStrength`). Ed25519 always passes.
    ///
    /// # Errors
    /// [`PkiError::InsecureKey`] with client-go's wording, e.g. `RSA key size 1024 bits is below the
    /// minimum of 2048`.
    pub fn check_strength(&self) -> Result<(), PkiError> {
        match self.algorithm {
            KeyAlgorithm::Rsa { bits } if bits < 2048 => Err(PkiError::InsecureKey(format!(
                "RSA key size {bits} bits is below the minimum of 2048"
            ))),
            KeyAlgorithm::OtherEc { bits, curve } if bits < 256 => Err(PkiError::InsecureKey(
                format!("ECDSA key curve {curve} ({bits} bits) is below the minimum of 256"),
            )),
            _ => Ok(()),
        }
    }

    /// A signer for this key, with client-go's hash choice for RSA (SHA-512 from 4096 bits,
    /// SHA-384 from 3072, else SHA-256).
    ///
    /// # Errors
    /// [`PkiError::InvalidKey`] for keys certrotate cannot sign with (other curves, RSA that ring
    /// refuses, such as below 1024 bits).
    pub(crate) fn signer(&self) -> Result<Signer, PkiError> {
        const ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
        const ECDSA_SHA384: &[u64] = &[1, 2, 840, 10045, 4, 3, 3];
        const RSA_SHA256: &[u64] = &[1, 2, 840, 113549, 1, 1, 11];
        const RSA_SHA384: &[u64] = &[1, 2, 840, 113549, 1, 1, 12];
        const RSA_SHA512: &[u64] = &[1, 2, 840, 113549, 1, 1, 13];
        let (alg, oid, null_params): (&'static rcgen::SignatureAlgorithm, &[u64], bool) =
            match self.algorithm {
                KeyAlgorithm::EcdsaP256 => (&rcgen::PKCS_ECDSA_P256_SHA256, ECDSA_SHA256, false),
                KeyAlgorithm::EcdsaP384 => (&rcgen::PKCS_ECDSA_P384_SHA384, ECDSA_SHA384, false),
                KeyAlgorithm::Ed25519 => (&rcgen::PKCS_ED25519, OID_ED25519, false),
                KeyAlgorithm::Rsa { bits } if bits >= 4096 => {
                    (&rcgen::PKCS_RSA_SHA512, RSA_SHA512, true)
                }
                KeyAlgorithm::Rsa { bits } if bits >= 3072 => {
                    (&rcgen::PKCS_RSA_SHA384, RSA_SHA384, true)
                }
                KeyAlgorithm::Rsa { .. } => (&rcgen::PKCS_RSA_SHA256, RSA_SHA256, true),
                other => {
                    return Err(PkiError::InvalidKey(format!(
                        "cannot sign with a {other} key"
                    )));
                }
            };
        let pair = match self.pair.get() {
            Some(pair) => {
                // Made for this key's algorithm, which never changes: the same choice as below.
                debug_assert!(std::ptr::eq(pair.algorithm(), alg));
                pair.clone()
            }
            None => {
                let der = rustls::pki_types::PrivatePkcs8KeyDer::from(self.pkcs8.as_slice());
                let pair =
                    rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, alg).map_err(|e| {
                        PkiError::InvalidKey(format!(
                            "cannot sign with this {} key: {e}",
                            self.algorithm
                        ))
                    })?;
                self.pair
                    .get_or_init(|| Arc::new(AssertUnwindSafe(pair)))
                    .clone()
            }
        };
        let alg_ident = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                if null_params {
                    w.next().write_null();
                }
            })
        });
        Ok(Signer { pair, alg_ident })
    }
}

/// Signs DER structures (CSRs, certificates) with a [`PrivateKey`].
pub(crate) struct Signer {
    pair: Arc<AssertUnwindSafe<rcgen::KeyPair>>,
    alg_ident: Vec<u8>,
}

impl Signer {
    /// The DER `AlgorithmIdentifier` of the signature.
    #[cfg(any(test, feature = "server", feature = "test-util"))]
    pub(crate) fn algorithm_der(&self) -> &[u8] {
        &self.alg_ident
    }

    /// Wraps `tbs` (a DER SEQUENCE) as `SEQUENCE { tbs, algorithm, BIT STRING signature }`, the
    /// shape of both a PKCS#10 request and an X.509 certificate.
    pub(crate) fn sign_der(&self, tbs: &[u8]) -> Result<Vec<u8>, PkiError> {
        use rcgen::SigningKey;
        let signature = self.pair.sign(tbs).map_err(PkiError::Signing)?;
        Ok(yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_der(tbs);
                w.next().write_der(&self.alg_ident);
                w.next().write_bitvec_bytes(&signature, signature.len() * 8);
            })
        }))
    }
}

fn curve_oid(alg: KeyAlgorithm) -> &'static [u64] {
    match alg {
        KeyAlgorithm::EcdsaP384 => OID_P384,
        KeyAlgorithm::OtherEc { curve: "P-224", .. } => OID_P224,
        KeyAlgorithm::OtherEc { curve: "P-521", .. } => OID_P521,
        _ => OID_P256,
    }
}

fn classify_curve(oid: &ObjectIdentifier) -> KeyAlgorithm {
    match oid.components().as_slice() {
        c if c == OID_P256 => KeyAlgorithm::EcdsaP256,
        c if c == OID_P384 => KeyAlgorithm::EcdsaP384,
        c if c == OID_P224 => KeyAlgorithm::OtherEc {
            bits: 224,
            curve: "P-224",
        },
        c if c == OID_P521 => KeyAlgorithm::OtherEc {
            bits: 521,
            curve: "P-521",
        },
        _ => KeyAlgorithm::OtherEc {
            bits: 0,
            curve: "unknown curve",
        },
    }
}

/// PKCS#1 `RSAPrivateKey` → key with a PKCS#8 wrapper.
fn parse_pkcs1(der: &[u8]) -> Result<PrivateKey, PkiError> {
    let (n, e) = yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let _version = r.next().read_u8()?;
            let (n, _) = r.next().read_bigint_bytes()?;
            let (e, _) = r.next().read_bigint_bytes()?;
            for _ in 0..6 {
                r.next().read_der()?; // d, p, q, dp, dq, qinv
            }
            r.read_optional(|r| r.read_der())?; // otherPrimeInfos
            Ok((n, e))
        })
    })
    .map_err(|err| PkiError::InvalidKey(format!("not PKCS#1: {err}")))?;
    let n = strip_leading_zeros(&n);
    if n.is_empty() {
        return Err(PkiError::InvalidKey("RSA modulus is zero".into()));
    }
    let bits = (n.len() - 1) * 8 + (8 - n[0].leading_zeros() as usize);
    let public_key = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            write_unsigned(w.next(), n);
            write_unsigned(w.next(), strip_leading_zeros(&e));
        })
    });
    let pkcs8 = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(0);
            w.next().write_sequence(|w| {
                w.next().write_oid(&ObjectIdentifier::from_slice(OID_RSA));
                w.next().write_null();
            });
            w.next().write_bytes(der);
        })
    });
    Ok(PrivateKey {
        pkcs8,
        algorithm: KeyAlgorithm::Rsa { bits },
        public_key,
        pair: std::sync::OnceLock::new(),
    })
}

/// SEC1 `ECPrivateKey` → key with a PKCS#8 wrapper. `outer_curve` is the curve named by an
/// enclosing PKCS#8 structure, used when the SEC1 body omits its own.
fn parse_sec1(der: &[u8], outer_curve: Option<ObjectIdentifier>) -> Result<PrivateKey, PkiError> {
    type Sec1 = (Vec<u8>, Option<ObjectIdentifier>, Option<(Vec<u8>, usize)>);
    let parsed: ASN1Result<Sec1> = yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let version = r.next().read_u8()?;
            if version != 1 {
                return Err(ASN1Error::new(ASN1ErrorKind::Invalid));
            }
            let scalar = r.next().read_bytes()?;
            let curve = r.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_oid()))?;
            let public =
                r.read_optional(|r| r.read_tagged(Tag::context(1), |r| r.read_bitvec_bytes()))?;
            Ok((scalar, curve, public))
        })
    });
    let (scalar, curve, public) =
        parsed.map_err(|e| PkiError::InvalidKey(format!("not SEC1: {e}")))?;
    let curve = curve
        .or(outer_curve)
        .ok_or_else(|| PkiError::InvalidKey("EC key names no curve".into()))?;
    let algorithm = classify_curve(&curve);
    let public_key = match public {
        Some((bits, _)) => bits,
        // Go and OpenSSL always write it; ring cannot derive it from the scalar.
        None => return Err(PkiError::InvalidKey("EC key carries no public key".into())),
    };
    // A SEC1 body inside PKCS#8 carries no curve of its own; ring wants it that way.
    let inner = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(1);
            w.next().write_bytes(&scalar);
            w.next().write_tagged(Tag::context(1), |w| {
                w.write_bitvec_bytes(&public_key, public_key.len() * 8)
            });
        })
    });
    let pkcs8 = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(0);
            w.next().write_sequence(|w| {
                w.next()
                    .write_oid(&ObjectIdentifier::from_slice(OID_EC_PUBLIC_KEY));
                w.next().write_oid(&curve);
            });
            w.next().write_bytes(&inner);
        })
    });
    Ok(PrivateKey {
        pkcs8,
        algorithm,
        public_key,
        pair: std::sync::OnceLock::new(),
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn write_unsigned(w: yasna::DERWriter<'_>, magnitude: &[u8]) {
    // DER INTEGER: two's complement, so a leading 0x00 when the top bit is set.
    let mut bytes = Vec::with_capacity(magnitude.len() + 1);
    if magnitude.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.push(0);
    }
    bytes.extend_from_slice(magnitude);
    w.write_bigint_bytes(&bytes, true);
}

/// Encodes DER bytes as one PEM block with 64-column lines and `\n` line ends.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key is loaded into ring once: signers of a key and of its clones share one pair, which
    /// for a generated key is the one generated with it; a key read from PEM gets its pair at
    /// its first signer. Every pair signs so that the key's public half verifies.
    #[test]
    fn generated_keys_keep_a_pair_of_the_signing_algorithm() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            let key = PrivateKey::generate(alg).unwrap();
            let kept = key.pair.get().expect("generate keeps its pair").clone();
            // In a debug build `signer` also checks the kept pair's algorithm.
            let signer = key.signer().unwrap();
            assert!(Arc::ptr_eq(&signer.pair, &kept), "{alg}");
            let fresh = PrivateKey::from_pem(key.to_pem().as_bytes()).unwrap();
            assert!(
                std::ptr::eq(kept.algorithm(), fresh.signer().unwrap().pair.algorithm()),
                "{alg}: the kept pair signs as a key read from PEM does"
            );
        }
    }

    #[test]
    fn signers_share_one_pair_per_key() {
        use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
        let generated = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let kept = generated
            .pair
            .get()
            .expect("generate keeps its pair")
            .clone();
        let read = PrivateKey::from_pem(generated.to_pem().as_bytes()).unwrap();
        assert!(read.pair.get().is_none(), "made on demand");
        let first = read.signer().unwrap();
        for (key, pair) in [(&generated, &kept), (&read, &first.pair)] {
            for signer in [key.signer().unwrap(), key.clone().signer().unwrap()] {
                assert!(Arc::ptr_eq(&signer.pair, pair));
                let der = signer
                    .sign_der(&yasna::construct_der(|w| w.write_u8(7)))
                    .unwrap();
                let (tbs, sig) = yasna::parse_der(&der, |r| {
                    r.read_sequence(|r| {
                        let tbs = r.next().read_der()?;
                        let _alg = r.next().read_der()?;
                        Ok((tbs, r.next().read_bitvec_bytes()?.0))
                    })
                })
                .unwrap();
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key_bits())
                    .verify(&tbs, &sig)
                    .unwrap();
            }
        }
    }

    #[test]
    fn generated_keys_round_trip_through_pem() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            let key = PrivateKey::generate(alg).unwrap();
            assert_eq!(key.algorithm(), alg, "{alg}");
            let again = PrivateKey::from_pem(key.to_pem().as_bytes()).unwrap();
            assert_eq!(again.algorithm(), alg, "{alg}");
            assert_eq!(again.public_key_bits(), key.public_key_bits(), "{alg}");
            let pair = rcgen::KeyPair::try_from(key.pkcs8_der()).unwrap();
            assert_eq!(
                rcgen::PublicKeyData::subject_public_key_info(&pair),
                key.public_key_der(),
                "{alg}: our SPKI encoding equals rcgen's"
            );
            key.signer().unwrap();
            key.check_strength().unwrap();
        }
    }

    #[test]
    fn rsa_generation_is_refused_with_a_hint() {
        let err = PrivateKey::generate(KeyAlgorithm::Rsa { bits: 2048 }).unwrap_err();
        assert!(err.to_string().contains("key generator"), "{err}");
    }

    #[test]
    fn debug_does_not_show_key_material() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("pkcs8"), "{shown}");
        assert!(shown.contains("EcdsaP256"), "{shown}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(PrivateKey::from_pem(b"").is_err());
        assert!(
            PrivateKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
        assert!(PrivateKey::from_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
        assert!(PrivateKey::from_der(&[]).is_err());
    }
}
