//! Who is calling and what they may do: the authenticators (x509 client certificates, static
//! bearer tokens, bootstrap tokens) and the authorization hook.
//!
//! Authentication mirrors kube-apiserver's union authenticator in its usual order: a verified
//! client certificate wins (user = subject CN, groups = subject O, as the x509 authenticator),
//! then a bearer token is looked up among the static tokens and the bootstrap tokens
//! (`<id>.<secret>` → user `system:bootstrap:<id>`, group `system:bootstrappers`). Every
//! authenticated user also gets the group `system:authenticated`, as the apiserver adds it.
//! A request with no credentials, or with credentials that do not check out, is answered 401.
//!
//! Authorization is a hook ([`Authorizer`]); the default ([`DefaultAuthorizer`]) lets any
//! authenticated user create CSRs and read only its own, and reserves approval, status updates and
//! deletion to the group `system:masters` (the apiserver's superuser group).

use std::collections::HashMap;
use std::fmt;

use crate::csr::api::CertificateSigningRequest;

/// The group every authenticated user is in (kube-apiserver adds it).
pub const GROUP_AUTHENTICATED: &str = "system:authenticated";
/// The group of bootstrap-token users.
pub const GROUP_BOOTSTRAPPERS: &str = "system:bootstrappers";
/// The superuser group: the default authorizer allows it everything.
pub const GROUP_MASTERS: &str = "system:masters";
/// The group of a caller with no credentials at all (user [`USER_ANONYMOUS`]), as
/// kube-apiserver's default `--anonymous-auth=true` names it. The default authorizer (and
/// [`AllowAll`]) give it nothing.
pub const GROUP_UNAUTHENTICATED: &str = "system:unauthenticated";
/// The user name of a caller with no credentials at all.
pub const USER_ANONYMOUS: &str = "system:anonymous";

/// An authenticated caller (`user.Info` of the apiserver). Its fields are copied into a created
/// CSR's `spec.username`, `spec.uid` and `spec.groups`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// User name (`system:node:node-1`, `system:bootstrap:abcdef`, …).
    pub name: String,
    /// User uid, when the authenticator knows one (static tokens may carry one).
    pub uid: Option<String>,
    /// Groups, `system:authenticated` included.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user with a name and groups (`system:authenticated` is added when missing).
    pub fn new(name: impl Into<String>, groups: &[&str]) -> UserInfo {
        let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        if !groups.iter().any(|g| g == GROUP_AUTHENTICATED) {
            groups.push(GROUP_AUTHENTICATED.to_owned());
        }
        UserInfo {
            name: name.into(),
            uid: None,
            groups,
        }
    }

    /// The same user with a uid.
    pub fn with_uid(mut self, uid: impl Into<String>) -> UserInfo {
        self.uid = Some(uid.into());
        self
    }

    /// True when the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The credentials a kubeconfig from [`CsrApiServer::kubeconfig`](super::CsrApiServer::kubeconfig)
/// carries.
#[derive(Clone, PartialEq, Eq)]
pub enum Identity {
    /// A client certificate the server issues from its CA for this user (CN) and these groups
    /// (O), valid for the builder's client-certificate lifetime from the clock's now.
    ClientCert {
        /// The user name (subject CN).
        user: String,
        /// The groups (subject O, one per group).
        groups: Vec<String>,
    },
    /// A static bearer token registered with
    /// [`CsrApiServerBuilder::token`](super::CsrApiServerBuilder::token) or
    /// [`CsrApiServer::add_token`](super::CsrApiServer::add_token).
    Token(String),
    /// A bootstrap token registered with
    /// [`CsrApiServerBuilder::bootstrap_token`](super::CsrApiServerBuilder::bootstrap_token);
    /// sent as `<id>.<secret>`.
    BootstrapToken {
        /// The six-character token id.
        id: String,
        /// The sixteen-character token secret.
        secret: String,
    },
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::ClientCert { user, groups } => f
                .debug_struct("ClientCert")
                .field("user", user)
                .field("groups", groups)
                .finish(),
            Identity::Token(_) => f.write_str("Token(<redacted>)"),
            Identity::BootstrapToken { id, .. } => f
                .debug_struct("BootstrapToken")
                .field("id", id)
                .finish_non_exhaustive(),
        }
    }
}

impl Identity {
    /// A client-certificate identity.
    pub fn client_cert(user: impl Into<String>, groups: &[&str]) -> Identity {
        Identity::ClientCert {
            user: user.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    /// The administrator: a client certificate for `certrotate:admin` in `system:masters`, which
    /// the default authorizer allows everything (what `kubectl certificate approve` needs).
    pub fn admin() -> Identity {
        Identity::client_cert("certrotate:admin", &[GROUP_MASTERS])
    }

    /// A static-token identity.
    pub fn token(token: impl Into<String>) -> Identity {
        Identity::Token(token.into())
    }

    /// A bootstrap-token identity.
    pub fn bootstrap_token(id: impl Into<String>, secret: impl Into<String>) -> Identity {
        Identity::BootstrapToken {
            id: id.into(),
            secret: secret.into(),
        }
    }

    /// The name the kubeconfig gives this user entry.
    pub(crate) fn kubeconfig_user(&self) -> String {
        match self {
            Identity::ClientCert { user, .. } => user.clone(),
            Identity::Token(_) => "token-user".to_owned(),
            Identity::BootstrapToken { id, .. } => format!("system:bootstrap:{id}"),
        }
    }
}

/// True when `id` and `secret` have the bootstrap-token shape (`[a-z0-9]{6}` and `[a-z0-9]{16}`).
pub(crate) fn is_bootstrap_token_shape(id: &str, secret: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    ok(id, 6) && ok(secret, 16)
}

/// The token tables. Lock discipline: lives behind the server's `RwLock`; read on every
/// token-authenticated request.
#[derive(Default)]
pub(crate) struct Tokens {
    /// Static token → user.
    pub statics: HashMap<String, UserInfo>,
    /// Bootstrap token id → secret.
    pub bootstrap: HashMap<String, String>,
}

impl Tokens {
    /// Authenticates a bearer token; `None` when it matches nothing.
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        if let Some((id, secret)) = token.split_once('.')
            && is_bootstrap_token_shape(id, secret)
            && let Some(want) = self.bootstrap.get(id)
        {
            return constant_time_eq(want.as_bytes(), secret.as_bytes())
                .then(|| UserInfo::new(format!("system:bootstrap:{id}"), &[GROUP_BOOTSTRAPPERS]));
        }
        self.statics
            .iter()
            .find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()))
            .map(|(_, u)| u.clone())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API verbs the server authorizes (Kubernetes `verb` request attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verb {
    /// `POST` a CSR.
    Create,
    /// `GET` one CSR (or one of its subresources).
    Get,
    /// `GET` the collection.
    List,
    /// `GET` the collection with `watch=true`.
    Watch,
    /// `PUT` a CSR or its `/approval` or `/status` subresource.
    Update,
    /// `PATCH` a CSR or its `/approval` or `/status` subresource (JSON patch, merge patch,
    /// strategic merge patch, or server-side apply).
    Patch,
    /// `DELETE` a CSR.
    Delete,
    /// `DELETE` the collection (every CSR the selectors match).
    DeleteCollection,
}

impl Verb {
    /// The Kubernetes verb string (`create`, `get`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    /// Every verb the server serves on CSRs.
    pub(crate) const ALL: [Verb; 8] = [
        Verb::Create,
        Verb::Get,
        Verb::List,
        Verb::Watch,
        Verb::Update,
        Verb::Patch,
        Verb::Delete,
        Verb::DeleteCollection,
    ];

    /// The verb for a Kubernetes verb string; `None` for verbs the server does not serve.
    pub(crate) fn parse(s: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// What a caller asks to do, given to the [`Authorizer`].
#[derive(Clone, Copy, Debug)]
pub struct Action<'a> {
    /// The verb.
    pub verb: Verb,
    /// `approval` or `status` for those subresources, else `None`.
    pub subresource: Option<&'a str>,
    /// The object name, when the request names one.
    pub name: Option<&'a str>,
    /// The object, when known: the new object on create, the stored object on get, update and
    /// delete, and each candidate item of a list or watch (items the authorizer denies are left
    /// out of the answer). `None` for the first, object-less check of every request.
    pub object: Option<&'a CertificateSigningRequest>,
}

/// An authorization decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// 403 Forbidden (or, for a list or watch item, leave it out).
    Deny,
}

/// The authorization hook. It is called once per request with `object: None` (a `Deny` answers
/// 403, as RBAC would), then again with the object when there is one. For list and watch it is
/// called per item, and denied items are left out: unlike RBAC, which cannot filter, this lets a
/// policy such as "each user reads only its own CSRs" serve a client that lists and watches by
/// name.
pub trait Authorizer: Send + Sync {
    /// Decides one action of one user.
    fn authorize(&self, user: &UserInfo, action: &Action<'_>) -> Decision;
}

impl<F> Authorizer for F
where
    F: Fn(&UserInfo, &Action<'_>) -> Decision + Send + Sync,
{
    fn authorize(&self, user: &UserInfo, action: &Action<'_>) -> Decision {
        self(user, action)
    }
}

/// The default policy: `system:masters` may do everything; any authenticated user may create
/// CSRs and get, list and watch the CSRs whose `spec.username` is its own name; approval,
/// status updates, other updates and patches, deletion and deletecollection are for
/// `system:masters` only.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultAuthorizer;

impl Authorizer for DefaultAuthorizer {
    fn authorize(&self, user: &UserInfo, action: &Action<'_>) -> Decision {
        if user.in_group(GROUP_MASTERS) {
            return Decision::Allow;
        }
        // RBAC's default roles give unauthenticated callers nothing on CSRs.
        if user.in_group(GROUP_UNAUTHENTICATED) {
            return Decision::Deny;
        }
        let own = |o: &CertificateSigningRequest| o.spec.username.as_deref() == Some(&user.name);
        let allowed = match action.verb {
            Verb::Create => action.subresource.is_none(),
            Verb::Get | Verb::List | Verb::Watch => action.object.is_none_or(own),
            Verb::Update | Verb::Patch | Verb::Delete | Verb::DeleteCollection => false,
        };
        if allowed {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

/// Allows every authenticated user everything (the apiserver's `AlwaysAllow` mode).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, user: &UserInfo, _: &Action<'_>) -> Decision {
        if user.in_group(GROUP_UNAUTHENTICATED) {
            Decision::Deny
        } else {
            Decision::Allow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_and_static_tokens_authenticate() {
        let mut t = Tokens::default();
        t.bootstrap
            .insert("abcdef".into(), "0123456789abcdef".into());
        t.statics
            .insert("s3cret".into(), UserInfo::new("alice", &["dev"]));
        let u = t.authenticate("abcdef.0123456789abcdef").unwrap();
        assert_eq!(u.name, "system:bootstrap:abcdef");
        assert_eq!(u.groups, [GROUP_BOOTSTRAPPERS, GROUP_AUTHENTICATED]);
        assert!(t.authenticate("abcdef.0123456789abcdeX").is_none());
        assert!(t.authenticate("abcdef.0123456789abcde0").is_none());
        assert_eq!(t.authenticate("s3cret").unwrap().name, "alice");
        assert!(t.authenticate("s3cre").is_none());
    }

    #[test]
    fn default_policy_reads_own_only() {
        let alice = UserInfo::new("alice", &[]);
        let mut csr = CertificateSigningRequest::default();
        csr.spec.username = Some("bob".into());
        fn get(o: Option<&CertificateSigningRequest>) -> Action<'_> {
            Action {
                verb: Verb::Get,
                subresource: None,
                name: Some("x"),
                object: o,
            }
        }
        let a = DefaultAuthorizer;
        assert_eq!(a.authorize(&alice, &get(None)), Decision::Allow);
        assert_eq!(a.authorize(&alice, &get(Some(&csr))), Decision::Deny);
        let mut own = csr.clone();
        own.spec.username = Some("alice".into());
        assert_eq!(a.authorize(&alice, &get(Some(&own))), Decision::Allow);
        let approve = Action {
            verb: Verb::Update,
            subresource: Some("approval"),
            name: Some("x"),
            object: None,
        };
        assert_eq!(a.authorize(&alice, &approve), Decision::Deny);
        let admin = UserInfo::new("root", &[GROUP_MASTERS]);
        assert_eq!(a.authorize(&admin, &approve), Decision::Allow);
    }
}
