//! Approval and signing: the approval policy, the built-in signers' rules
//! (kube-controller-manager's `csrsigning` controller, `pkg/controller/certificates/signer` and
//! `authority/policies.go`), and the worker thread that approves and signs.
//!
//! The worker takes names from a channel: a newly created CSR is put to the approval policy; an
//! approved one (by the policy, `/approval`, or the handle) is signed if its signer is one of
//! ours. Signing happens outside the state lock; the certificate is written back with a
//! `MODIFIED` event, which reaches every watcher. A request that breaks its signer's rules gets a
//! `Failed` condition with reason `SignerValidationFailure`, as the controller does. CSRs for a
//! signer this server does not know stay approved and unissued, as in a cluster without that
//! signer.
//!
//! Certificate validity comes from the server's [`Clock`](crate::Clock):
//! - TTL = `expirationSeconds` when given, capped at the maximum (default 8760 h) and raised to
//!   the floor (default 10 min); the maximum when not given;
//! - NotBefore = now − backdate (5 min);
//! - NotAfter = now + TTL when TTL < 8 h, else now + TTL − backdate;
//! - NotAfter is clamped to the CA's NotAfter; a CA already expired refuses to sign.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::csr::KeyUsage;
use crate::csr::api::{
    CONDITION_APPROVED, CONDITION_DENIED, CONDITION_FAILED, CertificateSigningRequest,
    CsrCondition, LEGACY_UNKNOWN_SIGNER,
};
use crate::pki::{CertificateAuthority, Flaw, KeyAlgorithm, ParsedCsr, PrivateKey, fmt_time};
use crate::report::Chain;

use super::Shared;
use super::faults::SignerFault;

/// `kubernetes.io/kube-apiserver-client`.
pub const SIGNER_KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// `kubernetes.io/kube-apiserver-client-kubelet`.
pub const SIGNER_KUBE_APISERVER_CLIENT_KUBELET: &str =
    "kubernetes.io/kube-apiserver-client-kubelet";
/// `kubernetes.io/kubelet-serving`.
pub const SIGNER_KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

/// Which CSRs get approved without a human.
///
/// The default, [`ApprovalPolicy::NodeClient`], approves what kube-controller-manager's
/// `csrapproving` controller approves, and nothing else. [`ApprovalPolicy::All`] approves every
/// CSR and is for demos only.
#[derive(Clone, Default)]
pub enum ApprovalPolicy {
    /// What kube-controller-manager's `csrapproving` controller approves
    /// (`pkg/controller/certificates/approver/sarapprove.go`), the default: a CSR for the signer
    /// `kubernetes.io/kube-apiserver-client-kubelet` that is a node client certificate
    /// (`IsKubeletClientCSR`: subject O exactly `[system:nodes]`, CN beginning `system:node:`, no
    /// DNS, IP, email or URI SANs, usages exactly `digital signature` + `client auth`, with
    /// `key encipherment` optional), requested by a caller the cluster's RBAC lets
    /// - create `certificatesigningrequests/selfnodeclient`: a node (group `system:nodes`)
    ///   asking for its own name (`spec.username` == the CSR's CN), or
    /// - create `certificatesigningrequests/nodeclient`: a bootstrapper (group
    ///   `system:bootstrappers`, as kubeadm binds it),
    ///
    /// or by a `system:masters` user (the superuser the SubjectAccessReview always allows).
    /// Approved CSRs get reason `AutoApproved` and the controller's message. Everything else
    /// (serving certificates, other signers, other subjects, other requesters) stays pending for
    /// an administrator, as in a cluster.
    #[default]
    NodeClient,
    /// **WARNING: approves every CSR, whoever asks and whatever it asks for** — a bootstrap-token
    /// holder gets a `system:masters` client certificate, which no cluster would give. For
    /// demos and tests that want every certificate issued with nobody approving; never expose a
    /// server with this policy to callers you do not trust.
    All,
    /// Nothing is approved automatically: approve through the API (`/approval`, e.g.
    /// `kubectl certificate approve`) or [`CsrApiServer::approve`](super::CsrApiServer::approve).
    Manual,
    /// New CSRs for which the predicate returns true are approved; the others wait for a manual
    /// decision. The predicate sees the stored object (with `spec.username` and `spec.groups`
    /// set by the server).
    Predicate(Arc<dyn Fn(&CertificateSigningRequest) -> bool + Send + Sync>),
}

impl ApprovalPolicy {
    /// A [`ApprovalPolicy::Predicate`] from a closure.
    pub fn predicate(
        f: impl Fn(&CertificateSigningRequest) -> bool + Send + Sync + 'static,
    ) -> ApprovalPolicy {
        ApprovalPolicy::Predicate(Arc::new(f))
    }

    /// The approval message when this policy approves `csr`, `None` when it leaves it pending.
    fn approves(
        &self,
        csr: &CertificateSigningRequest,
        parsed: &ParsedCsr,
    ) -> Option<&'static str> {
        const ANY: &str =
            "Auto approving certificate by the embedded CSR API server's approval policy.";
        match self {
            ApprovalPolicy::NodeClient => node_client_approval(csr, parsed),
            ApprovalPolicy::All => Some(ANY),
            ApprovalPolicy::Manual => None,
            ApprovalPolicy::Predicate(f) => f(csr).then_some(ANY),
        }
    }
}

/// The `csrapproving` controller's recognizers (`isSelfNodeClientCert`, then `isNodeClientCert`)
/// and, in place of its SubjectAccessReview, the permissions a kubeadm cluster's RBAC grants:
/// `selfnodeclient` to `system:nodes`, `nodeclient` to `system:bootstrappers`, everything to
/// `system:masters`. Returns the controller's approval message.
fn node_client_approval(
    csr: &CertificateSigningRequest,
    parsed: &ParsedCsr,
) -> Option<&'static str> {
    if csr.spec.signer_name.as_deref() != Some(SIGNER_KUBE_APISERVER_CLIENT_KUBELET) {
        return None;
    }
    let usages: HashSet<&str> = csr.spec.usages.iter().map(String::as_str).collect();
    validate_kubelet_client(parsed, &usages).ok()?;
    let in_group = |g: &str| csr.spec.groups.iter().any(|x| x == g);
    let masters = in_group(super::GROUP_MASTERS);
    let username = csr.spec.username.as_deref().unwrap_or_default();
    if username == parsed.common_name && (masters || in_group(GROUP_NODES)) {
        return Some("Auto approving self kubelet client certificate after SubjectAccessReview.");
    }
    if masters || in_group(super::GROUP_BOOTSTRAPPERS) {
        return Some("Auto approving kubelet client certificate after SubjectAccessReview.");
    }
    None
}

/// The group of node identities (`system:nodes`).
const GROUP_NODES: &str = "system:nodes";

impl fmt::Debug for ApprovalPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApprovalPolicy::NodeClient => "NodeClient",
            ApprovalPolicy::All => "All",
            ApprovalPolicy::Manual => "Manual",
            ApprovalPolicy::Predicate(_) => "Predicate(..)",
        })
    }
}

/// A check a custom signer applies before signing: `Err(message)` marks the CSR `Failed` with
/// reason `SignerValidationFailure` and that message.
pub type SignerCheck = Arc<dyn Fn(&ParsedCsr, &[KeyUsage]) -> Result<(), String> + Send + Sync>;

/// The rules of one signer name this server signs for.
#[derive(Clone)]
pub(crate) enum Rules {
    KubeletClient,
    KubeletServing,
    ApiServerClient,
    /// v1beta1's legacy signer: no restrictions.
    LegacyUnknown,
    Custom(Option<SignerCheck>),
}

impl Rules {
    fn check(&self, csr: &ParsedCsr, usages: &[String]) -> Result<(), String> {
        let set: HashSet<&str> = usages.iter().map(String::as_str).collect();
        match self {
            Rules::KubeletClient => validate_kubelet_client(csr, &set),
            Rules::KubeletServing => validate_kubelet_serving(csr, &set),
            Rules::ApiServerClient => validate_apiserver_client(usages),
            Rules::LegacyUnknown => Ok(()),
            Rules::Custom(None) => Ok(()),
            Rules::Custom(Some(f)) => {
                let parsed: Vec<KeyUsage> = usages.iter().filter_map(|u| u.parse().ok()).collect();
                f(csr, &parsed)
            }
        }
    }
}

const DS: &str = "digital signature";
const KE: &str = "key encipherment";

fn usages_match(set: &HashSet<&str>, auth: &str) -> Result<(), String> {
    let rsa: HashSet<&str> = [DS, KE, auth].into();
    let no_rsa: HashSet<&str> = [DS, auth].into();
    if *set == rsa || *set == no_rsa {
        return Ok(());
    }
    let mut want = [auth, DS, KE];
    want.sort_unstable();
    Err(format!("usages did not match [{}]", want.join(" ")))
}

fn is_system_nodes(csr: &ParsedCsr) -> bool {
    csr.organizations == ["system:nodes"]
}

/// `ValidateKubeletClientCSR`.
pub(crate) fn validate_kubelet_client(
    csr: &ParsedCsr,
    usages: &HashSet<&str>,
) -> Result<(), String> {
    if !is_system_nodes(csr) {
        return Err("subject organization is not system:nodes".into());
    }
    if !csr.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !csr.email_addresses.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !csr.ip_addresses.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if !csr.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    if !csr.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    usages_match(usages, "client auth")
}

/// `ValidateKubeletServingCSR`.
pub(crate) fn validate_kubelet_serving(
    csr: &ParsedCsr,
    usages: &HashSet<&str>,
) -> Result<(), String> {
    if !is_system_nodes(csr) {
        return Err("subject organization is not system:nodes".into());
    }
    if csr.dns_names.is_empty() && csr.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !csr.email_addresses.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !csr.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    usages_match(usages, "server auth")?;
    if !csr.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

/// `validAPIServerClientUsages`.
fn validate_apiserver_client(usages: &[String]) -> Result<(), String> {
    let mut client_auth = false;
    for u in usages {
        match u.as_str() {
            DS | KE => {}
            "client auth" => client_auth = true,
            other => return Err(format!("invalid usage for client certificate: {other}")),
        }
    }
    if client_auth {
        Ok(())
    } else {
        Err("missing required usage for client certificate: client auth".into())
    }
}

/// v1beta1's `DefaultSignerNameFromSpec`: a kubelet client or serving request gets its kubelet
/// signer, anything else the legacy signer.
pub(crate) fn infer_v1beta1_signer(csr: &ParsedCsr, usages: &[String]) -> &'static str {
    let set: HashSet<&str> = usages.iter().map(String::as_str).collect();
    if validate_kubelet_client(csr, &set).is_ok() {
        SIGNER_KUBE_APISERVER_CLIENT_KUBELET
    } else if validate_kubelet_serving(csr, &set).is_ok() {
        SIGNER_KUBELET_SERVING
    } else {
        LEGACY_UNKNOWN_SIGNER
    }
}

/// The signer's lifetime settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lifetimes {
    pub max: Duration,
    pub min: Duration,
    pub backdate: Duration,
}

/// Below this TTL the NotAfter is not shortened by the backdate (`PermissiveSigningPolicy.Short`).
const SHORT: Duration = Duration::from_secs(8 * 3600);

impl Lifetimes {
    /// `signer.duration`: requested (whole seconds) capped at the maximum and raised to the floor.
    pub fn ttl(&self, expiration_seconds: Option<i32>) -> Duration {
        let Some(secs) = expiration_seconds else {
            return self.max;
        };
        let requested = crate::csr::api::expiration_seconds_to_duration(secs);
        if requested > self.max {
            self.max
        } else if requested < self.min {
            self.min
        } else {
            requested
        }
    }

    /// `PermissiveSigningPolicy.apply`: the validity window for a TTL at `now` under a CA that
    /// expires at `ca_not_after`.
    pub fn window(
        &self,
        now: SystemTime,
        ttl: Duration,
        ca_not_after: SystemTime,
    ) -> Result<(SystemTime, SystemTime), String> {
        let not_before = now - self.backdate;
        let mut not_after = if ttl < SHORT {
            now + ttl
        } else {
            now + ttl - self.backdate
        };
        if not_after >= ca_not_after {
            not_after = ca_not_after;
        }
        if not_before >= ca_not_after {
            return Err(format!(
                "the signer has expired: NotAfter={}",
                fmt_time(ca_not_after)
            ));
        }
        if now >= ca_not_after {
            return Err(format!(
                "refusing to sign a certificate that expired in the past: NotAfter={}",
                fmt_time(ca_not_after)
            ));
        }
        Ok((not_before, not_after))
    }
}

/// Work for the signing thread.
pub(crate) enum Work {
    /// A CSR was created: ask the approval policy, then sign if approved.
    Created(String),
    /// A CSR was approved: sign it.
    Approved(String),
    /// Leave the loop.
    Stop,
}

pub(crate) fn has_condition(csr: &CertificateSigningRequest, t: &str) -> bool {
    csr.status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == t))
}

/// A condition of type `t` with status True, stamped `now`.
pub(crate) fn condition(t: &str, reason: &str, message: &str, now: SystemTime) -> CsrCondition {
    let at = Some(fmt_time(now));
    CsrCondition {
        type_: t.to_owned(),
        status: "True".to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_update_time: at.clone(),
        last_transition_time: at,
    }
}

/// The signing thread's loop: runs until [`Work::Stop`].
pub(crate) fn run_worker(shared: Arc<Shared>, rx: crossbeam_channel::Receiver<Work>) {
    for work in rx {
        match work {
            Work::Stop => break,
            Work::Created(name) => {
                if auto_approve(&shared, &name) {
                    sign(&shared, &name);
                }
            }
            Work::Approved(name) => sign(&shared, &name),
        }
    }
}

/// Puts a new CSR to the approval policy; true when it approved it.
fn auto_approve(shared: &Shared, name: &str) -> bool {
    let Some((obj, parsed)) = shared.get_stored(name) else {
        return false;
    };
    if has_condition(&obj, CONDITION_APPROVED) || has_condition(&obj, CONDITION_DENIED) {
        return false;
    }
    let policy = shared.approval.read().clone();
    let Some(message) = policy.approves(&obj, &parsed) else {
        return false;
    };
    let uid = obj.metadata.uid.clone();
    let now = shared.clock.now();
    shared
        .modify(name, |o| {
            if o.metadata.uid != uid
                || has_condition(o, CONDITION_APPROVED)
                || has_condition(o, CONDITION_DENIED)
            {
                return Err(());
            }
            o.status.get_or_insert_default().conditions.push(condition(
                CONDITION_APPROVED,
                "AutoApproved",
                message,
                now,
            ));
            Ok(())
        })
        .is_some_and(|r| r.is_ok())
}

/// Signs one approved CSR if it is eligible (approved, not denied or failed, no certificate yet,
/// for one of our signers).
fn sign(shared: &Shared, name: &str) {
    let Some((obj, parsed)) = shared.get_stored(name) else {
        return;
    };
    let issued = obj
        .status
        .as_ref()
        .is_some_and(|s| s.certificate.as_ref().is_some_and(|c| !c.is_empty()));
    if !has_condition(&obj, CONDITION_APPROVED)
        || has_condition(&obj, CONDITION_DENIED)
        || has_condition(&obj, CONDITION_FAILED)
        || issued
    {
        return;
    }
    let signer = obj.spec.signer_name.clone().unwrap_or_default();
    let Some(rules) = shared.signers.get(&signer).cloned() else {
        log::debug!("csr {name:?}: no signer for {signer:?}, leaving it unissued");
        return;
    };
    let fault = shared.faults.take_signer();
    if fault == Some(SignerFault::NeverIssue) {
        log::debug!("csr {name:?}: injected fault: never issue");
        return;
    }
    let uid = obj.metadata.uid.clone();
    let now = shared.clock.now();
    if let Err(message) = rules.check(&parsed, &obj.spec.usages) {
        let _ = shared.modify(name, |o| {
            if o.metadata.uid != uid || has_condition(o, CONDITION_FAILED) {
                return Err(());
            }
            o.status.get_or_insert_default().conditions.push(condition(
                CONDITION_FAILED,
                "SignerValidationFailure",
                &message,
                now,
            ));
            Ok(())
        });
        return;
    }
    let lt = shared.settings.lifetimes;
    let ttl = lt.ttl(obj.spec.expiration_seconds);
    let (mut not_before, mut not_after) = match lt.window(now, ttl, shared.ca.info().not_after) {
        Ok(w) => w,
        Err(e) => {
            log::warn!("csr {name:?}: cannot sign: {e}");
            return;
        }
    };
    if fault == Some(SignerFault::NotYetValid) {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        (not_before, not_after) = (not_before + YEAR, not_after + YEAR);
    }
    let flaw = match fault {
        Some(SignerFault::CaLeaf) => Flaw::CaLeaf,
        Some(SignerFault::UnrequestedUsages) => Flaw::UnrequestedUsages,
        _ => Flaw::None,
    };
    let usages: Vec<KeyUsage> = obj
        .spec
        .usages
        .iter()
        .filter_map(|u| u.parse().ok())
        .collect();
    let mut request = (*parsed).clone();
    if fault == Some(SignerFault::WrongKey) {
        match PrivateKey::generate(KeyAlgorithm::EcdsaP256) {
            Ok(other) => request.public_key_der = other.public_key_der(),
            Err(e) => log::warn!(
                "csr {name:?}: cannot make a key for the wrong-key fault: {}",
                Chain(&e)
            ),
        }
    }
    let mut pem = match shared
        .ca
        .sign_csr_with_flaw(&request, &usages, not_before, not_after, flaw)
    {
        Ok(pem) => pem,
        Err(e) => {
            log::warn!("csr {name:?}: signing failed: {}", Chain(&e));
            return;
        }
    };
    if fault == Some(SignerFault::UnrelatedChain) {
        match CertificateAuthority::for_tests("unrelated-ca") {
            Ok(other) => pem.push_str(&other.cert_pem()),
            Err(e) => log::warn!(
                "csr {name:?}: cannot make a CA for the chain fault: {}",
                Chain(&e)
            ),
        }
    }
    let replace_uid = fault == Some(SignerFault::ReplaceUid);
    let _ = shared.modify(name, |o| {
        let status = o.status.get_or_insert_default();
        if o.metadata.uid != uid || status.certificate.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(());
        }
        status.certificate = Some(pem.into_bytes());
        if replace_uid {
            o.metadata.uid = Some(super::new_uid());
        }
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::CsrTemplate;

    const H: u64 = 3600;

    fn lt() -> Lifetimes {
        Lifetimes {
            max: Duration::from_secs(8760 * H),
            min: Duration::from_secs(600),
            backdate: Duration::from_secs(300),
        }
    }

    #[test]
    fn ttl_follows_the_built_in_signer() {
        let l = lt();
        assert_eq!(
            l.ttl(None),
            Duration::from_secs(8760 * H),
            "no request: max"
        );
        assert_eq!(
            l.ttl(Some(i32::MAX)),
            Duration::from_secs(8760 * H),
            "capped"
        );
        assert_eq!(l.ttl(Some(60)), Duration::from_secs(600), "floored");
        assert_eq!(l.ttl(Some(3600)), Duration::from_secs(3600));
        let low = Lifetimes {
            min: Duration::from_secs(5),
            ..l
        };
        assert_eq!(low.ttl(Some(7)), Duration::from_secs(7), "floor lowered");
    }

    #[test]
    fn window_backdates_and_clamps() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let far = now + Duration::from_secs(100_000 * H);
        let (nb, na) = lt().window(now, Duration::from_secs(H), far).unwrap();
        assert_eq!(nb, now - Duration::from_secs(300));
        assert_eq!(
            na,
            now + Duration::from_secs(H),
            "short TTL: no backdate on NotAfter"
        );
        let (_, na) = lt().window(now, Duration::from_secs(8 * H), far).unwrap();
        assert_eq!(na, now + Duration::from_secs(8 * H - 300));
        let ca_end = now + Duration::from_secs(60);
        let (_, na) = lt().window(now, Duration::from_secs(H), ca_end).unwrap();
        assert_eq!(na, ca_end, "clamped to the CA");
        let e = lt().window(now, Duration::from_secs(H), now).unwrap_err();
        assert!(
            e.starts_with("refusing to sign a certificate that expired in the past"),
            "{e}"
        );
        let e = lt()
            .window(now, Duration::from_secs(H), now - Duration::from_secs(600))
            .unwrap_err();
        assert!(e.starts_with("the signer has expired"), "{e}");
    }

    fn parsed(t: &CsrTemplate) -> ParsedCsr {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        crate::pki::parse_csr_pem(crate::pki::build_csr_pem(t, &key).unwrap().as_bytes()).unwrap()
    }

    #[test]
    fn kubelet_rules() {
        let node = CsrTemplate::new("system:node:n1").with_organization("system:nodes");
        let client: HashSet<&str> = [DS, "client auth"].into();
        let serving: HashSet<&str> = [DS, KE, "server auth"].into();
        assert_eq!(validate_kubelet_client(&parsed(&node), &client), Ok(()));
        assert_eq!(
            validate_kubelet_client(&parsed(&node.clone().with_dns_name("n1")), &client),
            Err("DNS subjectAltNames are not allowed".into())
        );
        assert_eq!(
            validate_kubelet_client(&parsed(&CsrTemplate::new("system:node:n1")), &client),
            Err("subject organization is not system:nodes".into())
        );
        assert_eq!(
            validate_kubelet_client(&parsed(&node), &serving),
            Err("usages did not match [client auth digital signature key encipherment]".into())
        );
        assert_eq!(
            validate_kubelet_serving(&parsed(&node), &serving),
            Err("DNS or IP subjectAltName is required".into())
        );
        let with_ip = node.clone().with_ip_address("10.0.0.1".parse().unwrap());
        assert_eq!(
            validate_kubelet_serving(&parsed(&with_ip), &serving),
            Ok(())
        );
        let bad_cn = CsrTemplate::new("n1")
            .with_organization("system:nodes")
            .with_dns_name("n1");
        assert_eq!(
            validate_kubelet_serving(&parsed(&bad_cn), &serving),
            Err("subject common name does not begin with system:node:".into())
        );
        assert_eq!(
            infer_v1beta1_signer(
                &parsed(&node),
                &[DS.into(), KE.into(), "client auth".into()]
            ),
            SIGNER_KUBE_APISERVER_CLIENT_KUBELET
        );
        assert_eq!(
            validate_apiserver_client(&[DS.into(), "server auth".into()]),
            Err("invalid usage for client certificate: server auth".into())
        );
        assert_eq!(
            validate_apiserver_client(&[DS.into()]),
            Err("missing required usage for client certificate: client auth".into())
        );
    }
}
