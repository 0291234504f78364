//! Kubeconfig files for the server: YAML in the layout kubectl writes (`clusters`, `users`,
//! `contexts`, `current-context`), with the CA and credentials inline as `*-data` fields.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::auth::Identity;
use super::{CsrApiServer, ServerError};

#[derive(Serialize)]
struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: Vec<Named<Cluster>>,
    users: Vec<Named<User>>,
    contexts: Vec<Named<Context>>,
    #[serde(rename = "current-context")]
    current_context: &'static str,
    preferences: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Named<T> {
    name: String,
    #[serde(flatten)]
    value: T,
}

#[derive(Serialize)]
struct Cluster {
    cluster: ClusterBody,
}

#[derive(Serialize)]
struct ClusterBody {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    ca_data: String,
}

#[derive(Serialize)]
struct User {
    user: UserBody,
}

#[derive(Serialize, Default)]
struct UserBody {
    #[serde(
        rename = "client-certificate-data",
        skip_serializing_if = "Option::is_none"
    )]
    cert: Option<String>,
    #[serde(rename = "client-key-data", skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

#[derive(Serialize)]
struct Context {
    context: ContextBody,
}

#[derive(Serialize)]
struct ContextBody {
    cluster: &'static str,
    user: String,
}

const NAME: &str = "certrotate";

pub(super) fn render(server: &CsrApiServer, identity: &Identity) -> Result<String, ServerError> {
    let user = match identity {
        Identity::ClientCert { user, groups } => {
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            let cert = server.issue_client_certificate(user, &groups)?;
            UserBody {
                cert: Some(STANDARD.encode(cert.cert_pem())),
                key: Some(STANDARD.encode(cert.key_pem())),
                token: None,
            }
        }
        Identity::Token(t) => {
            if !server.tokens().statics.contains_key(t) {
                return Err(ServerError::UnknownIdentity("static token"));
            }
            UserBody {
                token: Some(t.clone()),
                ..UserBody::default()
            }
        }
        Identity::BootstrapToken { id, secret } => {
            if server.tokens().bootstrap.get(id) != Some(secret) {
                return Err(ServerError::UnknownIdentity("bootstrap token"));
            }
            UserBody {
                token: Some(format!("{id}.{secret}")),
                ..UserBody::default()
            }
        }
    };
    let user_name = identity.kubeconfig_user();
    let doc = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![Named {
            name: NAME.into(),
            value: Cluster {
                cluster: ClusterBody {
                    server: server.url().to_owned(),
                    ca_data: STANDARD.encode(server.ca_pem()),
                },
            },
        }],
        users: vec![Named {
            name: user_name.clone(),
            value: User { user },
        }],
        contexts: vec![Named {
            name: NAME.into(),
            value: Context {
                context: ContextBody {
                    cluster: NAME,
                    user: user_name,
                },
            },
        }],
        current_context: NAME,
        preferences: Default::default(),
    };
    serde_norway::to_string(&doc)
        .map_err(|e| ServerError::InvalidConfig(format!("cannot render kubeconfig: {e}")))
}
