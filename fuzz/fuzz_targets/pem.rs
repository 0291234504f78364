//! PEM and DER keys and certificates as read from disk or given by a caller: a certificate
//! chain, a private key (PKCS#8, PKCS#1, SEC1), a combined pair file, a separate pair (the
//! input cut at its first NUL into the certificate and the key).
#![no_main]

use certrotate::pki::{CertInfo, parse_chain_pem};
use certrotate::{Certificate, PrivateKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_chain_pem(data)
        .map(|chain| chain.iter().map(|c| CertInfo::from_der(c).is_ok()).count());
    let _ = PrivateKey::from_pem(data).map(|k| k.check_strength());
    let _ = PrivateKey::from_der(data);
    let _ = Certificate::from_pair_pem(data).map(|c| c.certified_key().is_some());
    let (cert, key) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let _ = Certificate::from_pem(cert, key);
});
