//! The X.509 extensions that stand for the CSR API's usages: KeyUsage bits and ExtKeyUsage
//! OIDs, as Kubernetes' `keyUsagesFromStrings` maps them. The signer writes them; the checks of
//! an issued certificate read them back.

use crate::usages::KeyUsage;

/// KeyUsage bit positions (RFC 5280 §4.2.1.3).
const KU_DIGITAL_SIGNATURE: u16 = 1 << 0;
const KU_CONTENT_COMMITMENT: u16 = 1 << 1;
const KU_KEY_ENCIPHERMENT: u16 = 1 << 2;
const KU_DATA_ENCIPHERMENT: u16 = 1 << 3;
const KU_KEY_AGREEMENT: u16 = 1 << 4;
/// keyCertSign.
pub(crate) const KU_CERT_SIGN: u16 = 1 << 5;
const KU_CRL_SIGN: u16 = 1 << 6;
const KU_ENCIPHER_ONLY: u16 = 1 << 7;
const KU_DECIPHER_ONLY: u16 = 1 << 8;

/// Maps CSR API usages to KeyUsage bits and ExtKeyUsage OIDs (Kubernetes
/// `keyUsagesFromStrings`).
pub(crate) fn usage_extensions(usages: &[KeyUsage]) -> (u16, Vec<&'static [u64]>) {
    let mut ku = 0u16;
    let mut eku: Vec<&'static [u64]> = Vec::new();
    for u in usages {
        let oid: Option<&'static [u64]> = match u {
            KeyUsage::Signing | KeyUsage::DigitalSignature => {
                ku |= KU_DIGITAL_SIGNATURE;
                None
            }
            KeyUsage::ContentCommitment => {
                ku |= KU_CONTENT_COMMITMENT;
                None
            }
            KeyUsage::KeyEncipherment => {
                ku |= KU_KEY_ENCIPHERMENT;
                None
            }
            KeyUsage::KeyAgreement => {
                ku |= KU_KEY_AGREEMENT;
                None
            }
            KeyUsage::DataEncipherment => {
                ku |= KU_DATA_ENCIPHERMENT;
                None
            }
            KeyUsage::CertSign => {
                ku |= KU_CERT_SIGN;
                None
            }
            KeyUsage::CrlSign => {
                ku |= KU_CRL_SIGN;
                None
            }
            KeyUsage::EncipherOnly => {
                ku |= KU_ENCIPHER_ONLY;
                None
            }
            KeyUsage::DecipherOnly => {
                ku |= KU_DECIPHER_ONLY;
                None
            }
            KeyUsage::Any => Some(&[2, 5, 29, 37, 0]),
            KeyUsage::ServerAuth => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 1]),
            KeyUsage::ClientAuth => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 2]),
            KeyUsage::CodeSigning => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 3]),
            KeyUsage::EmailProtection | KeyUsage::SMime => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 4]),
            KeyUsage::IpsecEndSystem => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 5]),
            KeyUsage::IpsecTunnel => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 6]),
            KeyUsage::IpsecUser => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 7]),
            KeyUsage::Timestamping => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 8]),
            KeyUsage::OcspSigning => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 9]),
            KeyUsage::MicrosoftSgc => Some(&[1, 3, 6, 1, 4, 1, 311, 10, 3, 3]),
            KeyUsage::NetscapeSgc => Some(&[2, 16, 840, 1, 113730, 4, 1]),
        };
        if let Some(oid) = oid.filter(|o| !eku.contains(o)) {
            eku.push(oid);
        }
    }
    // As upstream: de-duplicated, then sorted by Go's `x509.ExtKeyUsage` value.
    eku.sort_by_key(|o| GO_EXT_KEY_USAGE_ORDER.iter().position(|g| g == o));
    (ku, eku)
}

/// The extended key usage OIDs in the order of Go's `x509.ExtKeyUsage` values (Any,
/// ServerAuth, ClientAuth, CodeSigning, EmailProtection, IPSECEndSystem, IPSECTunnel,
/// IPSECUser, TimeStamping, OCSPSigning, MicrosoftServerGatedCrypto,
/// NetscapeServerGatedCrypto): Kubernetes' `keyUsagesFromStrings` sorts by that value, so its
/// signer writes the extension in this order whatever the order of the request's usages.
const GO_EXT_KEY_USAGE_ORDER: [&[u64]; 12] = [
    &[2, 5, 29, 37, 0],
    &[1, 3, 6, 1, 5, 5, 7, 3, 1],
    &[1, 3, 6, 1, 5, 5, 7, 3, 2],
    &[1, 3, 6, 1, 5, 5, 7, 3, 3],
    &[1, 3, 6, 1, 5, 5, 7, 3, 4],
    &[1, 3, 6, 1, 5, 5, 7, 3, 5],
    &[1, 3, 6, 1, 5, 5, 7, 3, 6],
    &[1, 3, 6, 1, 5, 5, 7, 3, 7],
    &[1, 3, 6, 1, 5, 5, 7, 3, 8],
    &[1, 3, 6, 1, 5, 5, 7, 3, 9],
    &[1, 3, 6, 1, 4, 1, 311, 10, 3, 3],
    &[2, 16, 840, 1, 113730, 4, 1],
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usages_map_to_ku_and_eku_without_duplicates() {
        let (ku, eku) = usage_extensions(&[
            KeyUsage::DigitalSignature,
            KeyUsage::Signing,
            KeyUsage::KeyEncipherment,
            KeyUsage::ServerAuth,
            KeyUsage::EmailProtection,
            KeyUsage::SMime,
        ]);
        assert_eq!(ku, KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
        assert_eq!(eku.len(), 2);
    }
}
