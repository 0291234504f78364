//! Kubeconfig files for the server: YAML as client-go's `clientcmd.Write` writes it (keys in
//! alphabetical order: `apiVersion`, `clusters`, `contexts`, `current-context`, `kind`,
//! `users`), with the CA and credentials inline as `*-data` fields.

use super::auth::Identity;
use super::{CsrApiServer, ServerError};
use crate::kubeconfig::{ClusterOut, KubeconfigOut, UserOut};

const NAME: &str = "certrotate";

pub(super) fn render(server: &CsrApiServer, identity: &Identity) -> Result<String, ServerError> {
    // The credentials, owned here; the user stanza borrows them.
    let (cert_pem, key_pem, token) = match identity {
        Identity::ClientCert { user, groups } => {
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            let cert = server.issue_client_certificate(user, &groups)?;
            (Some(cert.cert_pem().to_owned()), Some(cert.key_pem()), None)
        }
        Identity::Token(t) => {
            if !server.tokens().statics.contains_key(t) {
                return Err(ServerError::UnknownIdentity("static token"));
            }
            (None, None, Some(t.clone()))
        }
        Identity::BootstrapToken { id, secret } => {
            if server.tokens().bootstrap.get(id) != Some(secret) {
                return Err(ServerError::UnknownIdentity("bootstrap token"));
            }
            (None, None, Some(format!("{id}.{secret}")))
        }
    };
    let user_name = identity.kubeconfig_user();
    let ca = server.ca_pem();
    KubeconfigOut {
        cluster_name: NAME,
        cluster: ClusterOut {
            server: server.url(),
            certificate_authority_data: Some(ca.as_bytes()),
            ..ClusterOut::default()
        },
        user_name: &user_name,
        user: UserOut {
            client_certificate_data: cert_pem.as_deref().map(str::as_bytes),
            client_key_data: key_pem.as_deref().map(str::as_bytes),
            token: token.as_deref(),
            ..UserOut::default()
        },
        context_name: NAME,
        namespace: None,
    }
    .to_yaml()
    .map_err(|e| ServerError::InvalidConfig(format!("cannot render kubeconfig: {e}")))
}
