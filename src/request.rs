//! One certificate request, from a key and a template to a verified certificate: the steps
//! that the manager's rotation ([`rotation`](crate::manager)) and the kubelet's TLS bootstrap
//! ([`kubelet::bootstrap`](crate::kubelet::bootstrap)) share.
//!
//! key + template + usages → a CSR named after them ([`CertRequest::new`]) → create, or adopt
//! the CSR of the same name made earlier ([`CertRequest::create`]) → wait for the certificate
//! (the caller's, on its clock and with its timeout) → verify the issued chain against the key,
//! the template and the usages ([`CertRequest::verify`]) → store (the caller's).
//!
//! What differs stays with the callers: where the key comes from and where it is kept until
//! the request is answered, the CSR's name prefix (`csr-` for a rotation, `node-csr-` for a
//! bootstrap, as the kubelet names it), the signer and the requested lifetime, how long and on
//! which clock the wait runs, what a failure means for health, and where the certificate goes.

use std::time::{Duration, SystemTime};

use crate::csr::{Cancel, CsrClient, CsrError, CsrRef, CsrRequest, KeyUsage};
use crate::pki::{self, Certificate, PkiError, PrivateKey};
use crate::template::CsrTemplate;

/// How a request's CSR is named from the key's DER `SubjectPublicKeyInfo`, the template and the
/// usages: the same inputs always give the same name, so a create whose answer was lost, or a
/// process restarted, meets its own CSR (`AlreadyExists`) instead of making a second.
pub(crate) type Naming = fn(&[u8], &CsrTemplate, &[KeyUsage]) -> String;

/// A request for a certificate for `key` with the subject and SANs of `template`, ready to be
/// sent; the key stays with it until the request is answered.
pub(crate) struct CertRequest {
    /// What is asked for.
    pub(crate) template: CsrTemplate,
    /// The key the certificate is for.
    pub(crate) key: PrivateKey,
    /// The CSR object's fields.
    pub(crate) request: CsrRequest,
}

impl CertRequest {
    /// Builds the CSR for `key` and `template` (a `CERTIFICATE REQUEST` signed by `key`), named
    /// by `naming`, for `signer_name` with `usages` and, when given, `requested_lifetime` as its
    /// requested lifetime.
    ///
    /// # Errors
    /// What [`pki::build_csr_pem`] returns when the CSR cannot be built or signed.
    pub(crate) fn new(
        template: CsrTemplate,
        key: PrivateKey,
        naming: Naming,
        signer_name: String,
        usages: Vec<KeyUsage>,
        requested_lifetime: Option<Duration>,
    ) -> Result<CertRequest, PkiError> {
        let public_key_der = key.public_key_der();
        let request = CsrRequest {
            name: Some(naming(&public_key_der, &template, &usages)),
            csr_pem: pki::build_csr_pem(&template, &key)?,
            signer_name,
            usages,
            requested_lifetime,
            public_key_der,
        };
        Ok(CertRequest {
            template,
            key,
            request,
        })
    }

    /// Creates the CSR, or adopts the one of the same name when it was made with this key and
    /// subject (the client's `AlreadyExists` handling). `cancel` interrupts it
    /// ([`CsrClient::create`]; a cancel that fired before is seen before anything is sent).
    ///
    /// # Errors
    /// The client's [`CsrError`]; [`CsrError::Cancelled`] when `cancel` fired.
    pub(crate) fn create(
        &self,
        client: &dyn CsrClient,
        cancel: &Cancel,
    ) -> Result<CsrRef, CsrError> {
        // Whatever the client does with `cancel`, nothing is sent once it has fired.
        if cancel.is_cancelled() {
            return Err(self.request.cancelled());
        }
        client.create(&self.request, cancel)
    }

    /// Checks the chain issued for this request before it may replace anything
    /// ([`pki::verify_issued`] with this request's key, template and usages, at `now`).
    ///
    /// # Errors
    /// [`PkiError::IssuedCertificate`] naming the first check that failed.
    pub(crate) fn verify(
        &self,
        chain_pem: &[u8],
        now: SystemTime,
    ) -> Result<Certificate, PkiError> {
        pki::verify_issued(
            chain_pem,
            &self.key,
            Some(&self.template),
            &self.request.usages,
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertificateAuthority, KeyAlgorithm};

    const USAGES: [KeyUsage; 2] = [KeyUsage::DigitalSignature, KeyUsage::ClientAuth];

    fn request(key: PrivateKey, naming: Naming) -> CertRequest {
        CertRequest::new(
            CsrTemplate::new("system:node:n1").with_organization("system:nodes"),
            key,
            naming,
            "kubernetes.io/kube-apiserver-client-kubelet".into(),
            USAGES.to_vec(),
            Some(Duration::from_secs(3600)),
        )
        .unwrap()
    }

    /// A naming of another caller's kind (the kubelet bootstrap's is tested with it, above this
    /// module's layer).
    fn other_naming(spki: &[u8], _: &CsrTemplate, _: &[KeyUsage]) -> String {
        format!("node-csr-{}", spki.len())
    }

    /// Both callers' requests: the name is the caller's naming of (key, template, usages), the
    /// CSR is signed by the key for the template's subject, the other fields are as given.
    #[test]
    fn a_request_is_named_and_signed_as_its_caller_asks() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        for (name, naming, prefix) in [
            ("rotation", crate::csr::rotation_csr_name as Naming, "csr-"),
            ("another naming", other_naming as Naming, "node-csr-"),
        ] {
            let r = request(key.clone(), naming);
            let want = naming(&key.public_key_der(), &r.template, &USAGES);
            assert_eq!(r.request.name.as_deref(), Some(&*want), "{name}");
            assert!(want.starts_with(prefix), "{name}: {want}");
            assert_eq!(r.request.public_key_der, key.public_key_der(), "{name}");
            assert_eq!(r.request.usages, USAGES, "{name}");
            assert_eq!(
                r.request.requested_lifetime,
                Some(Duration::from_secs(3600))
            );
            let csr = pki::parse_csr_pem(r.request.csr_pem.as_bytes()).unwrap();
            assert_eq!(csr.common_name, "system:node:n1", "{name}");
            assert_eq!(csr.organizations, ["system:nodes"], "{name}");
            assert_eq!(csr.public_key_der, key.public_key_der(), "{name}");
        }
    }

    /// A client that sends whatever it is given, cancel or not.
    struct Careless(std::sync::atomic::AtomicUsize);

    impl CsrClient for Careless {
        fn create(&self, _: &CsrRequest, _: &Cancel) -> Result<CsrRef, CsrError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(CsrError::timeout("sent", Duration::ZERO))
        }

        fn wait_for_certificate(
            &self,
            csr: &CsrRef,
            waited: Duration,
            _: &Cancel,
        ) -> Result<Vec<u8>, CsrError> {
            Err(CsrError::timeout(csr.name.clone(), waited))
        }
    }

    /// A cancel that fired before the create is never sent, whatever the client does with it.
    #[test]
    fn a_cancelled_request_is_not_sent() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let r = request(key, crate::csr::rotation_csr_name);
        let client = Careless(std::sync::atomic::AtomicUsize::new(0));
        let cancel = Cancel::new();
        cancel.cancel(crate::csr::CancelReason::TemplateChanged);
        assert!(matches!(
            r.create(&client, &cancel),
            Err(CsrError::Cancelled { name }) if Some(&name) == r.request.name.as_ref()
        ));
        assert_eq!(client.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(matches!(
            r.create(&client, &Cancel::new()),
            Err(CsrError::Timeout { .. })
        ));
        assert_eq!(client.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// The answer is checked against the request's own key: a chain issued for another key is
    /// refused, one for this key is accepted.
    #[test]
    fn verify_checks_the_chain_against_the_requests_key() {
        let ca = CertificateAuthority::for_tests("ca").unwrap();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let r = request(key.clone(), crate::csr::rotation_csr_name);
        let now = SystemTime::now();
        let valid = (
            now - Duration::from_secs(60),
            now + Duration::from_secs(3600),
        );
        let for_key = ca
            .issue_pem(&r.template, &key, &USAGES, valid.0, valid.1)
            .unwrap();
        let for_other = ca
            .issue_pem(&r.template, &other, &USAGES, valid.0, valid.1)
            .unwrap();
        let cert = r.verify(for_key.as_bytes(), now).unwrap();
        assert_eq!(cert.common_name(), "system:node:n1");
        assert!(matches!(
            r.verify(for_other.as_bytes(), now),
            Err(PkiError::IssuedCertificate { .. })
        ));
    }
}
