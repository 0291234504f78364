//! Every [`BootstrapError`] message, and the rule that it leaves its cause to `source()`.

use std::time::Duration;

use super::bootstrap::BootstrapError;
use crate::csr::{ConfigError, CsrError};
use crate::pki::PkiError;
use crate::report::check_table;
use crate::store::StoreError;

fn variant(e: &BootstrapError) -> &'static str {
    match e {
        BootstrapError::LoadKubeconfig { .. } => "LoadKubeconfig",
        BootstrapError::LoadBootstrapKubeconfig { .. } => "LoadBootstrapKubeconfig",
        BootstrapError::ReadKubeconfig { .. } => "ReadKubeconfig",
        BootstrapError::Store { .. } => "Store",
        BootstrapError::Key { .. } => "Key",
        BootstrapError::Csr { .. } => "Csr",
        BootstrapError::Request { .. } => "Request",
        BootstrapError::Issued { .. } => "Issued",
        BootstrapError::Io { .. } => "Io",
    }
}

#[test]
fn every_bootstrap_message_names_the_file_or_node_and_leaves_the_cause_to_source() {
    let rows = [
        (
            BootstrapError::LoadKubeconfig {
                path: "/var/lib/kubelet/kubeconfig".into(),
                source: ConfigError::NoCurrentContext,
            },
            "unable to load kubeconfig /var/lib/kubelet/kubeconfig",
        ),
        (
            BootstrapError::LoadBootstrapKubeconfig {
                path: "/etc/kubernetes/bootstrap-kubeconfig".into(),
                source: ConfigError::NoCurrentContext,
            },
            "unable to load bootstrap kubeconfig /etc/kubernetes/bootstrap-kubeconfig",
        ),
        (
            BootstrapError::ReadKubeconfig {
                path: "/var/lib/kubelet/kubeconfig".into(),
                source: std::io::Error::other("permission denied"),
            },
            "error reading existing kubeconfig /var/lib/kubelet/kubeconfig",
        ),
        (
            BootstrapError::Store {
                cert_dir: "/var/lib/kubelet/pki".into(),
                source: StoreError::InvalidConfig("the pair name prefix is empty".into()),
            },
            "client certificate store in /var/lib/kubelet/pki",
        ),
        (
            BootstrapError::Key {
                path: "/var/lib/kubelet/pki/kubelet-client.key.tmp".into(),
                source: Box::new(PkiError::InvalidKey(
                    "no private key PEM block found".into(),
                )),
            },
            "cannot use the bootstrap private key /var/lib/kubelet/pki/kubelet-client.key.tmp",
        ),
        (
            BootstrapError::Csr {
                node: "node-1".into(),
                source: Box::new(PkiError::Signing(rcgen::Error::RingUnspecified)),
            },
            "cannot make the certificate signing request for node \"node-1\"",
        ),
        (
            BootstrapError::Request {
                node: "node-1".into(),
                source: Box::new(CsrError::timeout("node-csr-abc", Duration::from_secs(60))),
            },
            "cannot get a client certificate for node \"node-1\" from the CSR API",
        ),
        (
            BootstrapError::Issued {
                node: "node-1".into(),
                source: Box::new(PkiError::IssuedCertificate {
                    reason: "it has expired".into(),
                }),
            },
            "the client certificate issued for node \"node-1\" is unusable",
        ),
        (
            BootstrapError::Io {
                op: "write",
                path: "/var/lib/kubelet/kubeconfig".into(),
                source: std::io::Error::other("disk full"),
            },
            "cannot write /var/lib/kubelet/kubeconfig",
        ),
    ];
    check_table(&rows, variant, 9);
}
