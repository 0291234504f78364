//! Kubeconfig files: loading one or several (`KUBECONFIG`), merging them as kubectl does,
//! resolving a context to an API endpoint with its TLS settings and credentials, and the
//! in-cluster service-account configuration.
//!
//! This module owns reading configuration. It leaves talking to the API to
//! [`KubeCsrClient`]: resolving a context gives a
//! [`KubeCsrClientBuilder`], which reads the files it points at each time it builds a client, so
//! a rotated `tokenFile` or client certificate file is picked up by the next client.
//!
//! # What is read
//!
//! | field | handling |
//! |---|---|
//! | `current-context`, `contexts[].context.{cluster,user}` | honoured |
//! | `clusters[].cluster.server` | required; `https://` (plain `http://` only with [`KubeCsrClientBuilder::allow_plain_http`]) |
//! | `certificate-authority-data`, `certificate-authority` | the only trusted roots; data wins over the file, as client-go; a server certificate equal to one of them (the server's own certificate given as its CA) is trusted as Go's verifier does (see [`KubeCsrClientBuilder::ca_pem`]) |
//! | `insecure-skip-tls-verify` | honoured, with a loud warning; refused together with a CA, as client-go |
//! | `tls-server-name` | the name the server certificate is verified against (and sent as SNI) |
//! | `proxy-url` | `http://` and `https://` (TLS to the proxy) CONNECT proxies, used for every request as client-go does; `socks5://` and other schemes are refused. Without it the environment's proxy applies with Go's `net/http` rules (see [`KubeCsrClientBuilder::proxy`]) |
//! | `users[].user.client-certificate(-data)`, `client-key(-data)` | honoured; data wins over the file |
//! | `token`, `tokenFile` | `token` wins, as client-go; `tokenFile` is re-read for every new client |
//! | `exec`, `auth-provider`, `username`/`password`, `as`/`as-uid`/`as-groups`/`as-user-extra` | a [`ConfigError::Unsupported`] naming the field |
//! | `namespace`, `extensions`, `preferences`, `disable-compression` | ignored (CSRs are cluster-scoped; no compression is requested) |
//!
//! Relative paths (`certificate-authority`, `client-certificate`, `client-key`, `tokenFile`)
//! resolve against the directory of the kubeconfig file that names them when the file is
//! loaded, before files are merged, as clientcmd's `ResolveLocalPaths` does: the loaded
//! configuration holds absolute paths, so changing the working directory later changes
//! nothing.
//!
//! # Merging (`KUBECONFIG=a:b:c`)
//!
//! kubectl's rules: files are read in order, empty entries and duplicates are skipped, files that
//! do not exist are skipped (at least one must exist), the first file to define a cluster, user
//! or context name wins, and the first file to set `current-context` wins. Within one file a name
//! may appear only once, as client-go requires.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::csr::ConfigError;
use crate::csr::{KubeCsrClient, KubeCsrClientBuilder};

/// The standard location of the in-cluster service-account token and CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A parsed kubeconfig, possibly merged from several files.
///
/// Paths inside it are already absolute (resolved against the file that named them).
#[derive(Clone, Debug, Default)]
pub struct Kubeconfig {
    current_context: Option<String>,
    clusters: BTreeMap<String, Cluster>,
    users: BTreeMap<String, User>,
    contexts: BTreeMap<String, Context>,
}

/// The entries one context names (see [`Kubeconfig::select`]).
pub(crate) struct Selection<'a> {
    pub cluster_name: &'a str,
    pub cluster: &'a Cluster,
    pub user_name: &'a str,
    pub user: User,
}

impl Kubeconfig {
    /// Reads one kubeconfig file (YAML or JSON).
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read (including when it does not exist),
    /// [`ConfigError::Parse`] when it does not parse.
    pub fn load(path: impl AsRef<Path>) -> Result<Kubeconfig, ConfigError> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        // As clientcmd's ResolveLocalPaths: relative paths in the file are made absolute now,
        // against the file's directory made absolute, so a later change of the working
        // directory does not change what they name.
        let abs = std::path::absolute(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = abs.parent().unwrap_or_else(|| Path::new("/"));
        Kubeconfig::parse(&data, base, path)
    }

    /// Reads and merges several kubeconfig files with kubectl's rules (see the module docs).
    /// Missing files are skipped; at least one must exist.
    ///
    /// # Errors
    /// [`ConfigError::NotFound`] when none exists; otherwise as [`Kubeconfig::load`].
    pub fn load_merged<P: AsRef<Path>>(paths: &[P]) -> Result<Kubeconfig, ConfigError> {
        let mut seen: Vec<PathBuf> = Vec::new();
        let mut merged: Option<Kubeconfig> = None;
        for p in paths {
            let p = p.as_ref();
            if p.as_os_str().is_empty() || seen.iter().any(|s| s == p) {
                continue;
            }
            seen.push(p.to_owned());
            match std::fs::metadata(p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    log::debug!("kubeconfig {} does not exist, skipped", p.display());
                    continue;
                }
                _ => {}
            }
            let next = Kubeconfig::load(p)?;
            merged = Some(match merged {
                None => next,
                Some(first) => first.merge(next),
            });
        }
        merged.ok_or_else(|| ConfigError::NotFound {
            searched: seen
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The default kubeconfig as kubectl finds it: the files listed in `KUBECONFIG` (separated
    /// by `:` on Unix, `;` on Windows), merged; else `$HOME/.kube/config`.
    ///
    /// # Errors
    /// As [`Kubeconfig::load_merged`]; [`ConfigError::NotFound`] when `KUBECONFIG` is unset and
    /// there is no home directory.
    pub fn load_default() -> Result<Kubeconfig, ConfigError> {
        Kubeconfig::load_from_env(
            std::env::var_os("KUBECONFIG").as_deref(),
            std::env::var_os("HOME").as_deref(),
        )
    }

    /// [`Kubeconfig::load_default`] with the two environment values given explicitly.
    ///
    /// # Errors
    /// As [`Kubeconfig::load_default`].
    pub fn load_from_env(
        kubeconfig: Option<&std::ffi::OsStr>,
        home: Option<&std::ffi::OsStr>,
    ) -> Result<Kubeconfig, ConfigError> {
        if let Some(list) = kubeconfig.filter(|v| !v.is_empty()) {
            let paths: Vec<PathBuf> = std::env::split_paths(list).collect();
            return Kubeconfig::load_merged(&paths);
        }
        match home.filter(|h| !h.is_empty()) {
            Some(home) => Kubeconfig::load(Path::new(home).join(".kube").join("config")),
            None => Err(ConfigError::NotFound {
                searched: "KUBECONFIG (unset), $HOME/.kube/config (no HOME)".into(),
            }),
        }
    }

    /// Parses kubeconfig text (YAML or JSON); relative paths resolve against `base_dir`, itself
    /// taken against the working directory now if it is relative.
    ///
    /// # Errors
    /// [`ConfigError::Parse`].
    pub fn from_slice(data: &[u8], base_dir: impl AsRef<Path>) -> Result<Kubeconfig, ConfigError> {
        let base = crate::csr::absolute(base_dir.as_ref().to_owned());
        Kubeconfig::parse(data, &base, Path::new("<memory>"))
    }

    fn parse(data: &[u8], base: &Path, path: &Path) -> Result<Kubeconfig, ConfigError> {
        let raw: RawConfig = if data.iter().all(u8::is_ascii_whitespace) {
            RawConfig::default()
        } else {
            serde_norway::from_slice(data).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?
        };
        let mut cfg = Kubeconfig {
            current_context: raw.current_context.filter(|c| !c.is_empty()),
            ..Kubeconfig::default()
        };
        // Within one file a name may appear once (client-go refuses duplicates); across files
        // the first wins (see `merge`).
        let duplicate = |kind: &str, name: &str| ConfigError::Parse {
            path: path.to_owned(),
            message: format!("duplicate {kind} name {name:?}"),
        };
        for NamedCluster { name, mut cluster } in raw.clusters {
            cluster.resolve_paths(base);
            if cfg.clusters.contains_key(&name) {
                return Err(duplicate("cluster", &name));
            }
            cfg.clusters.insert(name, cluster);
        }
        for NamedUser { name, mut user } in raw.users {
            user.resolve_paths(base);
            if cfg.users.contains_key(&name) {
                return Err(duplicate("user", &name));
            }
            cfg.users.insert(name, user);
        }
        for NamedContext { name, context } in raw.contexts {
            if cfg.contexts.contains_key(&name) {
                return Err(duplicate("context", &name));
            }
            cfg.contexts.insert(name, context);
        }
        Ok(cfg)
    }

    /// Merges `later` into `self`: entries and `current-context` already present win.
    fn merge(mut self, later: Kubeconfig) -> Kubeconfig {
        if self.current_context.is_none() {
            self.current_context = later.current_context;
        }
        for (k, v) in later.clusters {
            self.clusters.entry(k).or_insert(v);
        }
        for (k, v) in later.users {
            self.users.entry(k).or_insert(v);
        }
        for (k, v) in later.contexts {
            self.contexts.entry(k).or_insert(v);
        }
        self
    }

    /// The `current-context`, if set.
    pub fn current_context(&self) -> Option<&str> {
        self.current_context.as_deref()
    }

    /// The names of all contexts, sorted.
    pub fn context_names(&self) -> Vec<&str> {
        self.contexts.keys().map(String::as_str).collect()
    }

    /// The cluster and user entries of `context` (or the `current-context` when `None`), as
    /// [`client_builder`](Self::client_builder) resolves them; nothing is read from disk.
    pub(crate) fn select(&self, context: Option<&str>) -> Result<Selection<'_>, ConfigError> {
        let ctx_name = match context.or(self.current_context.as_deref()) {
            Some(c) => c,
            None => return Err(ConfigError::NoCurrentContext),
        };
        let ctx = self
            .contexts
            .get(ctx_name)
            .ok_or_else(|| ConfigError::Missing {
                kind: "context",
                name: ctx_name.to_owned(),
            })?;
        let cluster_name = ctx.cluster.as_deref().unwrap_or_default();
        let cluster = self
            .clusters
            .get(cluster_name)
            .ok_or_else(|| ConfigError::Missing {
                kind: "cluster",
                name: cluster_name.to_owned(),
            })?;
        let user_name = ctx.user.as_deref().unwrap_or_default();
        // client-go treats a missing user as anonymous; so do we, but only for an empty name.
        let user = match self.users.get(user_name) {
            Some(u) => u.clone(),
            None if user_name.is_empty() => User::default(),
            None => {
                return Err(ConfigError::Missing {
                    kind: "user",
                    name: user_name.to_owned(),
                });
            }
        };
        Ok(Selection {
            cluster_name,
            cluster,
            user_name,
            user,
        })
    }

    /// Resolves `context` (or the `current-context` when `None`) to a client builder holding
    /// the cluster's server, TLS settings and the user's credentials. Files the config points
    /// at are read now to check them, and again each time the builder builds a client.
    ///
    /// # Errors
    /// [`ConfigError::NoCurrentContext`], [`ConfigError::Missing`],
    /// [`ConfigError::Unsupported`] for `exec`, `auth-provider`, basic auth and impersonation,
    /// [`ConfigError::Invalid`] for bad values, [`ConfigError::ReadFile`] for unreadable files.
    pub fn client_builder(
        &self,
        context: Option<&str>,
    ) -> Result<KubeCsrClientBuilder, ConfigError> {
        let Selection {
            cluster_name,
            cluster,
            user_name,
            user,
        } = self.select(context)?;
        user.check_supported(user_name)?;

        let server = cluster
            .server
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ConfigError::Invalid {
                what: "kubeconfig cluster",
                message: format!("cluster {cluster_name:?} has no server"),
            })?;
        let mut b = KubeCsrClientBuilder::new(server);
        if let Some(data) = cluster.certificate_authority_data.clone() {
            b = b.ca_pem(data);
        } else if let Some(path) = cluster.certificate_authority.clone() {
            b = b.ca_file(path);
        }
        if cluster.insecure_skip_tls_verify {
            b = b.dangerous_skip_tls_verify(true);
        }
        if let Some(name) = cluster.tls_server_name.clone().filter(|n| !n.is_empty()) {
            b = b.tls_server_name(name);
        }
        if let Some(proxy) = cluster.proxy_url.clone().filter(|p| !p.is_empty()) {
            b = b.proxy(proxy);
        }
        let cert = match (
            user.client_certificate_data.clone(),
            user.client_certificate.clone(),
        ) {
            (Some(d), _) => Some(crate::csr::PemSource::Inline(d)),
            (None, Some(p)) => Some(crate::csr::PemSource::File(p)),
            (None, None) => None,
        };
        let key = match (user.client_key_data.clone(), user.client_key.clone()) {
            (Some(d), _) => Some(crate::csr::PemSource::Inline(d)),
            (None, Some(p)) => Some(crate::csr::PemSource::File(p)),
            (None, None) => None,
        };
        match (cert, key) {
            (Some(c), Some(k)) => b = b.client_cert_source(c, k),
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    what: "kubeconfig user",
                    message: format!(
                        "user {user_name:?} has a client certificate but no client key"
                    ),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    what: "kubeconfig user",
                    message: format!(
                        "user {user_name:?} has a client key but no client certificate"
                    ),
                });
            }
        }
        if let Some(token) = user.token.clone().filter(|t| !t.is_empty()) {
            b = b.bearer_token(token);
        } else if let Some(path) = user.token_file.clone() {
            b = b.bearer_token_file(path);
        }
        b.check()?;
        Ok(b)
    }
}

impl KubeCsrClientBuilder {
    /// A builder for the in-cluster configuration of a pod: the API server at
    /// `KUBERNETES_SERVICE_HOST`:`KUBERNETES_SERVICE_PORT`, the service-account CA
    /// (`ca.crt`) and token (`token`, re-read for every client, as projected tokens rotate)
    /// under [`SERVICE_ACCOUNT_DIR`]. Mirrors client-go's `rest.InClusterConfig`.
    ///
    /// # Errors
    /// [`ConfigError::NotInCluster`] when the variables are unset or the token is missing.
    pub fn in_cluster() -> Result<KubeCsrClientBuilder, ConfigError> {
        in_cluster_with(|k| std::env::var(k).ok(), Path::new(SERVICE_ACCOUNT_DIR))
    }
}

/// [`KubeCsrClientBuilder::in_cluster`] with the environment and the service-account directory
/// given explicitly.
pub(crate) fn in_cluster_with(
    env: impl Fn(&str) -> Option<String>,
    sa_dir: &Path,
) -> Result<KubeCsrClientBuilder, ConfigError> {
    let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
    let port = env("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty());
    let (Some(host), Some(port)) = (host, port) else {
        return Err(ConfigError::NotInCluster {
            message: "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set".into(),
        });
    };
    let token = sa_dir.join("token");
    if !token.is_file() {
        return Err(ConfigError::NotInCluster {
            message: format!("no service-account token at {}", token.display()),
        });
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let b = KubeCsrClientBuilder::new(format!("https://{host}:{port}"))
        .ca_file(sa_dir.join("ca.crt"))
        .bearer_token_file(token);
    b.check()?;
    Ok(b)
}

// ---- serde shapes (clientcmd v1) ----

fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn base64_data<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => {
            let compact: String = s.split_whitespace().collect();
            STANDARD
                .decode(compact.as_bytes())
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
        }
    }
}

fn absent_if_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(Option::<PathBuf>::deserialize(d)?.filter(|p| !p.as_os_str().is_empty()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawConfig {
    #[serde(default)]
    current_context: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    clusters: Vec<NamedCluster>,
    #[serde(default, deserialize_with = "nullable")]
    users: Vec<NamedUser>,
    #[serde(default, deserialize_with = "nullable")]
    contexts: Vec<NamedContext>,
}

#[derive(Debug, Deserialize)]
struct NamedCluster {
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    cluster: Cluster,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    user: User,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    context: Context,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Cluster {
    #[serde(default)]
    pub(crate) server: Option<String>,
    #[serde(default)]
    pub(crate) tls_server_name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) insecure_skip_tls_verify: bool,
    /// Invariant after parsing: absolute.
    #[serde(default, deserialize_with = "absent_if_empty")]
    pub(crate) certificate_authority: Option<PathBuf>,
    #[serde(default, deserialize_with = "base64_data")]
    pub(crate) certificate_authority_data: Option<Vec<u8>>,
    #[serde(default)]
    pub(crate) proxy_url: Option<String>,
}

impl Cluster {
    fn resolve_paths(&mut self, base: &Path) {
        resolve(&mut self.certificate_authority, base);
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct User {
    #[serde(default, deserialize_with = "absent_if_empty")]
    pub(crate) client_certificate: Option<PathBuf>,
    #[serde(default, deserialize_with = "base64_data")]
    pub(crate) client_certificate_data: Option<Vec<u8>>,
    #[serde(default, deserialize_with = "absent_if_empty")]
    pub(crate) client_key: Option<PathBuf>,
    #[serde(default, deserialize_with = "base64_data")]
    pub(crate) client_key_data: Option<Vec<u8>>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile", deserialize_with = "absent_if_empty")]
    token_file: Option<PathBuf>,
    #[serde(default)]
    exec: Option<IgnoredAny>,
    #[serde(default)]
    auth_provider: Option<IgnoredAny>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "as")]
    impersonate: Option<String>,
    #[serde(default, rename = "as-uid")]
    impersonate_uid: Option<String>,
    #[serde(default, rename = "as-groups")]
    impersonate_groups: Option<IgnoredAny>,
    #[serde(default, rename = "as-user-extra")]
    impersonate_extra: Option<IgnoredAny>,
}

impl User {
    fn resolve_paths(&mut self, base: &Path) {
        resolve(&mut self.client_certificate, base);
        resolve(&mut self.client_key, base);
        resolve(&mut self.token_file, base);
    }

    fn check_supported(&self, name: &str) -> Result<(), ConfigError> {
        let unsupported = |field, hint| ConfigError::Unsupported {
            owner: format!("user {name:?}"),
            field,
            hint,
        };
        let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        if self.exec.is_some() {
            return Err(unsupported(
                "exec",
                "credential plugins are not run; use client-certificate/client-key or token/tokenFile",
            ));
        }
        if self.auth_provider.is_some() {
            return Err(unsupported(
                "auth-provider",
                "use client-certificate/client-key or token/tokenFile",
            ));
        }
        if set(&self.username) || set(&self.password) {
            return Err(unsupported(
                if set(&self.username) {
                    "username"
                } else {
                    "password"
                },
                "basic authentication is not supported; use a client certificate or a token",
            ));
        }
        if set(&self.impersonate) || set(&self.impersonate_uid) {
            return Err(unsupported(
                if set(&self.impersonate) {
                    "as"
                } else {
                    "as-uid"
                },
                "impersonation is not supported",
            ));
        }
        if self.impersonate_groups.is_some() {
            return Err(unsupported("as-groups", "impersonation is not supported"));
        }
        if self.impersonate_extra.is_some() {
            return Err(unsupported(
                "as-user-extra",
                "impersonation is not supported",
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Context {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

fn resolve(p: &mut Option<PathBuf>, base: &Path) {
    if let Some(path) = p
        && path.is_relative()
    {
        *path = base.join(&*path);
    }
}

/// Clients from kubeconfig files; here rather than in [`crate::csr`] so that the CSR API layer
/// does not depend on the kubeconfig reader above it.
impl KubeCsrClient {
    /// A client for the `current-context` of the kubeconfig at `path`.
    ///
    /// # Errors
    /// Any [`ConfigError`] of loading, resolving or building.
    pub fn from_kubeconfig(
        path: impl AsRef<std::path::Path>,
    ) -> Result<KubeCsrClient, ConfigError> {
        Kubeconfig::load(path)?.client_builder(None)?.build()
    }

    /// A client for the `current-context` of the default kubeconfig (`KUBECONFIG`, which may
    /// list several files merged as kubectl does, else `~/.kube/config`).
    ///
    /// # Errors
    /// Any [`ConfigError`] of loading, resolving or building.
    pub fn from_default_kubeconfig() -> Result<KubeCsrClient, ConfigError> {
        Kubeconfig::load_default()?.client_builder(None)?.build()
    }
}

/// A kubeconfig to write, in the layout kubectl and the kubelet write: one cluster, one user
/// and one context joining them, which is the current context. The kubelet's bootstrap writes
/// one that points at its certificate files; the embedded server hands out one per identity.
/// The same file format as [`Kubeconfig`] reads, so what is written reads back.
pub(crate) struct KubeconfigOut<'a> {
    pub(crate) cluster_name: &'a str,
    pub(crate) cluster: ClusterOut<'a>,
    pub(crate) user_name: &'a str,
    pub(crate) user: UserOut<'a>,
    pub(crate) context_name: &'a str,
    /// The context's namespace, if it names one.
    pub(crate) namespace: Option<&'a str>,
}

/// The cluster stanza of a [`KubeconfigOut`]: fields left `None` (or false) are not written.
#[derive(Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ClusterOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) certificate_authority: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "base64_out")]
    pub(crate) certificate_authority_data: Option<&'a [u8]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) insecure_skip_tls_verify: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) proxy_url: Option<&'a str>,
    pub(crate) server: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_server_name: Option<&'a str>,
}

/// The user stanza of a [`KubeconfigOut`] (credentials: never logged): fields left `None` are
/// not written.
#[derive(Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct UserOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_certificate: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "base64_out")]
    pub(crate) client_certificate_data: Option<&'a [u8]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_key: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "base64_out")]
    pub(crate) client_key_data: Option<&'a [u8]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<&'a str>,
}

impl KubeconfigOut<'_> {
    /// The YAML document.
    ///
    /// # Errors
    /// A path that is not valid UTF-8 cannot be written.
    pub(crate) fn to_yaml(&self) -> Result<String, serde_norway::Error> {
        // Every mapping's keys in alphabetical order, and no empty `preferences`: the bytes
        // client-go's `clientcmd.Write` makes of the same config (it writes JSON through a
        // YAML map, which sorts the keys), so a file we write is the one the kubelet writes.
        #[derive(Serialize)]
        struct Doc<'a> {
            #[serde(rename = "apiVersion")]
            api_version: &'static str,
            clusters: [ClusterEntry<'a>; 1],
            contexts: [ContextEntry<'a>; 1],
            #[serde(rename = "current-context")]
            current_context: &'a str,
            kind: &'static str,
            users: [UserEntry<'a>; 1],
        }
        #[derive(Serialize)]
        struct ClusterEntry<'a> {
            cluster: &'a ClusterOut<'a>,
            name: &'a str,
        }
        #[derive(Serialize)]
        struct ContextEntry<'a> {
            context: ContextOut<'a>,
            name: &'a str,
        }
        #[derive(Serialize)]
        struct UserEntry<'a> {
            name: &'a str,
            user: &'a UserOut<'a>,
        }
        #[derive(Serialize)]
        struct ContextOut<'a> {
            cluster: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            namespace: Option<&'a str>,
            user: &'a str,
        }
        serde_norway::to_string(&Doc {
            api_version: "v1",
            clusters: [ClusterEntry {
                cluster: &self.cluster,
                name: self.cluster_name,
            }],
            contexts: [ContextEntry {
                context: ContextOut {
                    cluster: self.cluster_name,
                    namespace: self.namespace,
                    user: self.user_name,
                },
                name: self.context_name,
            }],
            current_context: self.context_name,
            kind: "Config",
            users: [UserEntry {
                name: self.user_name,
                user: &self.user,
            }],
        })
    }
}

/// `*-data` fields: base64 of the bytes, as kubectl writes them.
fn base64_out<S: Serializer>(data: &Option<&[u8]>, s: S) -> Result<S::Ok, S::Error> {
    match data {
        Some(d) => s.serialize_str(&STANDARD.encode(d)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the writer writes, the reader reads back: every field of each stanza, and the
    /// current context joining them.
    #[test]
    fn a_written_kubeconfig_reads_back() {
        let base = Path::new("/nowhere");
        let files = KubeconfigOut {
            cluster_name: "c",
            cluster: ClusterOut {
                server: "https://10.0.0.1:6443",
                certificate_authority: Some(Path::new("/etc/ca.crt")),
                insecure_skip_tls_verify: true,
                tls_server_name: Some("api.internal"),
                proxy_url: Some("http://proxy:3128"),
                ..ClusterOut::default()
            },
            user_name: "u",
            user: UserOut {
                client_certificate: Some(Path::new("/var/lib/pair.pem")),
                client_key: Some(Path::new("/var/lib/pair.pem")),
                ..UserOut::default()
            },
            context_name: "ctx",
            namespace: Some("default"),
        };
        let yaml = files.to_yaml().unwrap();
        let read = Kubeconfig::parse(yaml.as_bytes(), base, Path::new("written")).unwrap();
        let s = read.select(None).unwrap();
        assert_eq!((s.cluster_name, s.user_name), ("c", "u"));
        assert_eq!(s.cluster.server.as_deref(), Some("https://10.0.0.1:6443"));
        assert_eq!(
            s.cluster.certificate_authority.as_deref(),
            Some(Path::new("/etc/ca.crt"))
        );
        assert!(s.cluster.insecure_skip_tls_verify);
        assert_eq!(s.cluster.tls_server_name.as_deref(), Some("api.internal"));
        assert_eq!(s.cluster.proxy_url.as_deref(), Some("http://proxy:3128"));
        let pair = Some(PathBuf::from("/var/lib/pair.pem"));
        assert_eq!(
            (&s.user.client_certificate, &s.user.client_key),
            (&pair, &pair)
        );
        assert!(yaml.contains("namespace: default"), "{yaml}");

        let inline = KubeconfigOut {
            cluster_name: "c",
            cluster: ClusterOut {
                server: "https://127.0.0.1:1",
                certificate_authority_data: Some(b"CA PEM"),
                ..ClusterOut::default()
            },
            user_name: "u",
            user: UserOut {
                client_certificate_data: Some(b"CERT PEM"),
                client_key_data: Some(b"KEY PEM"),
                token: Some("abcdef.0123456789abcdef"),
                ..UserOut::default()
            },
            context_name: "ctx",
            namespace: None,
        };
        let yaml = inline.to_yaml().unwrap();
        let read = Kubeconfig::parse(yaml.as_bytes(), base, Path::new("written")).unwrap();
        let s = read.select(None).unwrap();
        assert_eq!(
            s.cluster.certificate_authority_data.as_deref(),
            Some(&b"CA PEM"[..])
        );
        assert_eq!(s.cluster.certificate_authority, None);
        assert!(!s.cluster.insecure_skip_tls_verify);
        assert_eq!(
            s.user.client_certificate_data.as_deref(),
            Some(&b"CERT PEM"[..])
        );
        assert_eq!(s.user.client_key_data.as_deref(), Some(&b"KEY PEM"[..]));
        assert_eq!(s.user.token.as_deref(), Some("abcdef.0123456789abcdef"));
        for absent in [
            "namespace",
            "insecure-skip-tls-verify",
            "client-certificate:",
            "proxy-url",
        ] {
            assert!(!yaml.contains(absent), "{absent} written: {yaml}");
        }
    }

    #[test]
    fn in_cluster_reads_env_and_service_account_dir() {
        let dir = tempfile::tempdir().unwrap();
        let env = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("fd00::1".to_owned()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_owned()),
            _ => None,
        };
        // No token yet: not in a cluster.
        let err = in_cluster_with(env, dir.path()).unwrap_err();
        assert!(matches!(err, ConfigError::NotInCluster { .. }), "{err}");
        std::fs::write(dir.path().join("token"), "t0k3n\n").unwrap();
        let ca = crate::pki::CertificateAuthority::for_tests("sa-ca").unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
        let b = in_cluster_with(env, dir.path()).unwrap();
        assert_eq!(b.server(), "https://[fd00::1]:443");
        assert_eq!(b.current_token().unwrap().as_deref(), Some("t0k3n"));
        std::fs::write(dir.path().join("token"), "rotated").unwrap();
        assert_eq!(b.current_token().unwrap().as_deref(), Some("rotated"));

        let none = |_: &str| None;
        let err = in_cluster_with(none, dir.path()).unwrap_err();
        assert!(err.to_string().contains("KUBERNETES_SERVICE_HOST"), "{err}");
    }
}
