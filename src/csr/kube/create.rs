//! Create: the POST (v1, or v1beta1 by client-go's rule when allowed), and adoption of an
//! existing request of the same name when it is compatible.

use ureq::Agent;

use super::decode::{csr_ref, decode_csr};
use super::{KubeCsrClient, collection, encode};
use crate::csr::api::{self, CertificateSigningRequest};
use crate::csr::{ApiVersion, CsrError, CsrRef, CsrRequest};
use crate::pki::{self, CertInfo};

impl KubeCsrClient {
    fn post_csr(
        &self,
        agent: &Agent,
        version: ApiVersion,
        req: &CsrRequest,
    ) -> Result<CsrRef, CsrError> {
        let path = collection(version);
        let obj = CertificateSigningRequest {
            api_version: Some(version.as_str().to_owned()),
            kind: Some(api::KIND_CSR.to_owned()),
            metadata: api::ObjectMeta {
                name: req.name.clone(),
                generate_name: req.name.is_none().then(|| "csr-".to_owned()),
                ..api::ObjectMeta::default()
            },
            spec: api::CsrSpec {
                request: req.csr_pem.as_bytes().to_vec(),
                signer_name: (!req.signer_name.is_empty()).then(|| req.signer_name.clone()),
                expiration_seconds: req
                    .requested_lifetime
                    .map(api::duration_to_expiration_seconds),
                usages: req.usages.iter().map(|u| u.as_str().to_owned()).collect(),
                ..api::CsrSpec::default()
            },
            status: None,
        };
        let body = serde_json::to_vec(&obj).map_err(|e| CsrError::InvalidResponse {
            op: "create",
            message: format!("cannot encode the request: {e}"),
        })?;
        let resp = self.post(agent, "create", &path, &body)?;
        let bytes = self.body("create", &path, resp, self.max_object_size)?;
        let created = decode_csr("create", &bytes, version)?;
        let mut csr = csr_ref("create", &created, version)?;
        // A new object's history starts at its creation; one that already carries a status (not
        // something kube-apiserver answers) is listed first instead, so that status is read.
        if created
            .status
            .as_ref()
            .is_none_or(|s| s.conditions.is_empty() && s.certificate.is_none())
        {
            csr.resource_version = created.metadata.resource_version.unwrap_or_default();
        }
        Ok(csr)
    }

    fn get_csr(
        &self,
        agent: &Agent,
        version: ApiVersion,
        name: &str,
    ) -> Result<CertificateSigningRequest, CsrError> {
        let path = format!("{}/{}", collection(version), encode(name));
        let resp = self.get(agent, "retrieve", &path, self.request_timeout, None)?;
        let bytes = self.body("retrieve", &path, resp, self.max_object_size)?;
        decode_csr("retrieve", &bytes, version)
    }

    fn adopt(&self, agent: &Agent, req: &CsrRequest, name: &str) -> Result<CsrRef, CsrError> {
        log::info!(
            "certificate signing request {name:?} already exists, checking whether it can be reused"
        );
        let (version, existing) = match self.get_csr(agent, ApiVersion::V1, name) {
            Ok(o) => (ApiVersion::V1, o),
            Err(CsrError::Api { error, .. })
                if error.is_not_found() && self.allow_legacy_v1beta1 =>
            {
                (
                    ApiVersion::V1beta1,
                    self.get_csr(agent, ApiVersion::V1beta1, name)?,
                )
            }
            Err(e) => return Err(e),
        };
        ensure_compatible(req, &existing, self.clock.now()).map_err(|message| {
            CsrError::Incompatible {
                name: name.to_owned(),
                message,
            }
        })?;
        log::info!("certificate signing request {name:?} is compatible, reusing it");
        csr_ref("retrieve", &existing, version)
    }

    /// Create (with adoption, and the v1beta1 rule when allowed), every request on `agent`.
    pub(super) fn create_on(&self, agent: &Agent, req: &CsrRequest) -> Result<CsrRef, CsrError> {
        // client-go's rule for when v1 is tried at all, applied only when v1beta1 is allowed.
        let use_v1 = !self.allow_legacy_v1beta1
            || (!req.usages.is_empty()
                && !req.signer_name.is_empty()
                && req.signer_name != api::LEGACY_UNKNOWN_SIGNER);
        let result = if use_v1 {
            match self.post_csr(agent, ApiVersion::V1, req) {
                Err(CsrError::Api { error, .. })
                    if error.is_not_found() && self.allow_legacy_v1beta1 =>
                {
                    log::debug!("certificates.k8s.io/v1 not found, falling back to v1beta1");
                    self.post_csr(agent, ApiVersion::V1beta1, req)
                }
                other => other,
            }
        } else {
            self.post_csr(agent, ApiVersion::V1beta1, req)
        };
        match (result, req.name.as_deref()) {
            (Err(CsrError::Api { error, .. }), Some(name)) if error.is_already_exists() => {
                self.adopt(agent, req, name)
            }
            (other, _) => other,
        }
    }
}

/// Whether an existing CSR may be adopted for `req` (client-go `ensureCompatible`): the
/// subjects are equal, the signer names are equal unless one is empty, the existing request
/// carries our public key (its self-signature verifies, so it was signed with our key), and
/// no certificate already issued for it has expired at `now`. The error text is client-go's
/// where it has one.
pub(super) fn ensure_compatible(
    req: &CsrRequest,
    orig: &CertificateSigningRequest,
    now: std::time::SystemTime,
) -> Result<(), String> {
    let new = pki::parse_csr_pem(req.csr_pem.as_bytes())
        .map_err(|e| format!("unable to parse new csr: {e}"))?;
    let old = pki::parse_csr_pem(&orig.spec.request)
        .map_err(|e| format!("unable to parse original csr: {e}"))?;
    if new.subject_der != old.subject_der {
        return Err(format!(
            "csr subjects differ: new: CN={:?} O={:?}, orig: CN={:?} O={:?}",
            new.common_name, new.organizations, old.common_name, old.organizations
        ));
    }
    let new_signer = req.signer_name.as_str();
    let old_signer = orig.spec.signer_name.as_deref().unwrap_or_default();
    if !new_signer.is_empty() && !old_signer.is_empty() && new_signer != old_signer {
        return Err(format!(
            "csr signerNames differ: new {new_signer:?}, orig: {old_signer:?}"
        ));
    }
    let ours = if req.public_key_der.is_empty() {
        &new.public_key_der
    } else {
        &req.public_key_der
    };
    if &old.public_key_der != ours {
        return Err(
            "error validating signature of the existing csr against our key: it was made with another key"
                .into(),
        );
    }
    if let Some(pem) = orig
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .filter(|c| !c.is_empty())
    {
        let chain = pki::parse_chain_pem(pem)
            .map_err(|e| format!("unable to parse the existing csr's certificate: {e}"))?;
        for der in chain {
            let info = CertInfo::from_der(&der)
                .map_err(|e| format!("unable to parse the existing csr's certificate: {e}"))?;
            if now > info.not_after {
                return Err(format!(
                    "one of the certificates for the csr has expired: {}",
                    pki::fmt_time(info.not_after)
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{KeyAlgorithm, PrivateKey, build_csr_pem};
    use crate::template::CsrTemplate;
    use std::time::{Duration, SystemTime};

    fn request(key: &PrivateKey, signer: &str) -> CsrRequest {
        let t = CsrTemplate::new("something").with_organization("test");
        CsrRequest {
            name: Some("fixed".into()),
            csr_pem: build_csr_pem(&t, key).unwrap(),
            signer_name: signer.into(),
            usages: vec![],
            requested_lifetime: None,
            public_key_der: key.public_key_der(),
        }
    }

    fn existing(req: &CsrRequest, signer: &str) -> CertificateSigningRequest {
        CertificateSigningRequest {
            metadata: api::ObjectMeta {
                name: Some("fixed".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: api::CsrSpec {
                request: req.csr_pem.as_bytes().to_vec(),
                signer_name: (!signer.is_empty()).then(|| signer.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// client-go csr_test.go TestEnsureCompatible: an RSA-2048 key (a fixture, as the ring
    /// backend cannot generate RSA), a CSR for CN "something", O "test", the same request on
    /// both sides.
    #[test]
    fn ensure_compatible_table() {
        let key =
            PrivateKey::from_pem(include_bytes!("../../../tests/fixtures/two-certs.key")).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::Rsa { bits: 2048 });
        let now = SystemTime::now();
        let cases: [(&str, &str, &str, Result<(), String>); 4] = [
            (
                "nil signerName on 'new' matches any signerName on 'orig'",
                "",
                "example.com/test",
                Ok(()),
            ),
            (
                "nil signerName on 'orig' matches any signerName on 'new'",
                "example.com/test",
                "",
                Ok(()),
            ),
            (
                "signerName on 'orig' matches signerName on 'new'",
                "example.com/test",
                "example.com/test",
                Ok(()),
            ),
            (
                "signerName on 'orig' does not match signerName on 'new'",
                "example.com/test",
                "example.com/not-test",
                Err(r#"csr signerNames differ: new "example.com/test", orig: "example.com/not-test""#.into()),
            ),
        ];
        for (name, new_signer, orig_signer, want) in cases {
            let req = request(&key, new_signer);
            let orig = existing(&req, orig_signer);
            assert_eq!(ensure_compatible(&req, &orig, now), want, "{name}");
        }
    }

    #[test]
    fn ensure_compatible_rejects_other_subject_other_key_and_expired_cert() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let now = SystemTime::now();
        let req = request(&key, "example.com/test");

        let mut other_subject = existing(&req, "example.com/test");
        other_subject.spec.request = build_csr_pem(&CsrTemplate::new("else"), &key)
            .unwrap()
            .into_bytes();
        let e = ensure_compatible(&req, &other_subject, now).unwrap_err();
        assert!(e.starts_with("csr subjects differ"), "{e}");

        let mut other_key = existing(&req, "example.com/test");
        other_key.spec.request = request(&other, "").csr_pem.into_bytes();
        let e = ensure_compatible(&req, &other_key, now).unwrap_err();
        assert!(e.contains("another key"), "{e}");

        let ca = crate::pki::CertificateAuthority::for_tests("ca").unwrap();
        let t = CsrTemplate::new("something").with_organization("test");
        let day = Duration::from_secs(86_400);
        let expired = ca
            .issue_pem(&t, &key, &[], now - 3 * day, now - day)
            .unwrap();
        let mut issued = existing(&req, "example.com/test");
        issued.status = Some(api::CsrStatus {
            conditions: vec![],
            certificate: Some(expired.into_bytes()),
        });
        let e = ensure_compatible(&req, &issued, now).unwrap_err();
        assert!(
            e.starts_with("one of the certificates for the csr has expired"),
            "{e}"
        );

        let valid = ca.issue_pem(&t, &key, &[], now - day, now + day).unwrap();
        issued.status = Some(api::CsrStatus {
            conditions: vec![],
            certificate: Some(valid.into_bytes()),
        });
        assert_eq!(ensure_compatible(&req, &issued, now), Ok(()));
    }
}
