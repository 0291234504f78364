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
use serde::{Deserialize, Deserializer};

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
#[derive(Default)]
pub(crate) struct ClusterOut<'a> {
    pub(crate) certificate_authority: Option<&'a Path>,
    pub(crate) certificate_authority_data: Option<&'a [u8]>,
    pub(crate) insecure_skip_tls_verify: bool,
    pub(crate) proxy_url: Option<&'a str>,
    pub(crate) server: &'a str,
    pub(crate) tls_server_name: Option<&'a str>,
}

/// The user stanza of a [`KubeconfigOut`] (credentials: never logged): fields left `None` are
/// not written.
#[derive(Default)]
pub(crate) struct UserOut<'a> {
    pub(crate) client_certificate: Option<&'a Path>,
    pub(crate) client_certificate_data: Option<&'a [u8]>,
    pub(crate) client_key: Option<&'a Path>,
    pub(crate) client_key_data: Option<&'a [u8]>,
    pub(crate) token: Option<&'a str>,
}

impl KubeconfigOut<'_> {
    /// The YAML document, as client-go's `clientcmd.Write` writes the same config (the kubelet's
    /// bootstrap writes its kubeconfig with it): every mapping's keys in alphabetical order, no
    /// empty `preferences`, and each string written as go-yaml v2 writes it (see
    /// [`go_yaml_scalar`]), so that client-go reads back every value as the string it is.
    ///
    /// # Errors
    /// A path that is not valid UTF-8 cannot be written.
    pub(crate) fn to_yaml(&self) -> Result<String, String> {
        let path = |p: Option<&Path>| -> Result<Option<String>, String> {
            p.map(|p| {
                p.to_str()
                    .map(go_yaml_scalar)
                    .ok_or_else(|| format!("the path {} is not valid UTF-8", p.display()))
            })
            .transpose()
        };
        let data = |d: Option<&[u8]>| d.map(|d| go_yaml_scalar(&STANDARD.encode(d)));
        let text = |v: Option<&str>| v.map(go_yaml_scalar);
        let (c, u) = (&self.cluster, &self.user);
        // Each stanza's fields in order, already written as values; `None` is left out.
        let cluster = [
            ("certificate-authority", path(c.certificate_authority)?),
            (
                "certificate-authority-data",
                data(c.certificate_authority_data),
            ),
            (
                "insecure-skip-tls-verify",
                c.insecure_skip_tls_verify.then(|| "true".to_owned()),
            ),
            ("proxy-url", text(c.proxy_url)),
            ("server", text(Some(c.server))),
            ("tls-server-name", text(c.tls_server_name)),
        ];
        let context = [
            ("cluster", text(Some(self.cluster_name))),
            ("namespace", text(self.namespace)),
            ("user", text(Some(self.user_name))),
        ];
        let user = [
            ("client-certificate", path(u.client_certificate)?),
            ("client-certificate-data", data(u.client_certificate_data)),
            ("client-key", path(u.client_key)?),
            ("client-key-data", data(u.client_key_data)),
            ("token", text(u.token)),
        ];
        // `<key>:` and the stanza's fields below it, or `<key>: {}` when it has none.
        let stanza = |key: &str, fields: &[(&str, Option<String>)]| {
            let body: String = fields
                .iter()
                .filter_map(|(k, v)| Some(format!("    {k}: {}\n", v.as_ref()?)))
                .collect();
            if body.is_empty() {
                format!("{key}: {{}}\n")
            } else {
                format!("{key}:\n{body}")
            }
        };
        Ok(format!(
            "apiVersion: v1\nclusters:\n- {}  name: {}\ncontexts:\n- {}  name: {}\n\
             current-context: {}\nkind: Config\nusers:\n- name: {}\n  {}",
            stanza("cluster", &cluster),
            go_yaml_scalar(self.cluster_name),
            stanza("context", &context),
            go_yaml_scalar(self.context_name),
            go_yaml_scalar(self.context_name),
            go_yaml_scalar(self.user_name),
            stanza("user", &user),
        ))
    }
}

/// A string as go-yaml v2 (under client-go's `clientcmd.Write` and its kubeconfig loading)
/// writes it: double-quoted when, written plain, go-yaml v2 would read it as something else
/// than a string — YAML 1.1's `y`/`yes`/`on`/`off`/`no` and the other words of its resolve
/// table, numbers (with `_`, `0x`/`0o`/`0b`, a leading 0), base-60 numbers (`1:20`),
/// timestamps (`2001-12-14`) — or when it holds a character that must be escaped; otherwise
/// as serde_norway writes it, plain or single-quoted (the same choice as go-yaml's emitter for
/// such strings). A string with a line break is double-quoted with `\n` here, where go-yaml
/// writes a literal block: the same string either way.
///
/// A YAML 1.2 writer alone would leave `yes` or `1_000` plain, which client-go reads as a
/// boolean or a number and then refuses as a string field.
pub(crate) fn go_yaml_scalar(s: &str) -> String {
    let escaped = s.chars().any(|c| !yaml_printable(c) || c == '\n');
    if !escaped
        && !go_yaml::reads_as_non_string(s)
        && let Ok(doc) = serde_norway::to_string(s)
        && let Some(one) = doc.strip_suffix('\n').filter(|l| !l.contains('\n'))
    {
        return one.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if yaml_printable(c) => out.push(c),
            c if u32::from(c) <= 0xff => out.push_str(&format!("\\x{:02X}", u32::from(c))),
            c if u32::from(c) <= 0xffff => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08X}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// YAML's printable characters (libyaml's `is_printable`), the line feed aside.
fn yaml_printable(c: char) -> bool {
    matches!(u32::from(c),
        0x20..=0x7e | 0xa0..=0xd7ff | 0xe000..=0xfefe | 0xff00..=0xfffd | 0x10000..=0x10ffff)
}

/// go-yaml v2's `resolve` for a plain scalar, reduced to the question its encoder asks.
mod go_yaml {
    /// Whether go-yaml v2 reads `s`, written plain, as anything but a string (its `resolve`
    /// giving another tag, or its encoder's `isBase60Float`).
    pub(super) fn reads_as_non_string(s: &str) -> bool {
        const WORDS: [&str; 40] = [
            "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "n", "N",
            "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "", "~", "null",
            "Null", "NULL", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf",
            "+.INF", "-.inf", "-.Inf", "-.INF", "<<",
        ];
        if base60_float(s) {
            return true;
        }
        // The first byte hints at what the scalar may be; with no hint it is a string.
        let hint = s.bytes().next();
        let hinted = match hint {
            None => true,
            Some(b) => b"+-0123456789yYnNtTfFoO~.".contains(&b),
        };
        if !hinted {
            return false;
        }
        if WORDS.contains(&s) {
            return true;
        }
        match hint {
            Some(b'.') => float_syntax(s) && underscores_ok(s),
            Some(b'+' | b'-' | b'0'..=b'9') => {
                if timestamp(s) {
                    return true;
                }
                let plain: String = s.chars().filter(|c| *c != '_').collect();
                int_base0(&plain) || yaml_style_float(&plain)
            }
            _ => false,
        }
    }

    /// Go's `strconv.ParseInt(s, 0, 64)` or `ParseUint(s, 0, 64)` succeeds.
    fn int_base0(s: &str) -> bool {
        let (signed, body) = match s.as_bytes().first() {
            Some(b'+' | b'-') => (true, &s[1..]),
            _ => (false, s),
        };
        let negative = s.starts_with('-');
        let lower = body.to_ascii_lowercase();
        let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
            (16, d)
        } else if let Some(d) = lower.strip_prefix("0o") {
            (8, d)
        } else if let Some(d) = lower.strip_prefix("0b") {
            (2, d)
        } else if lower.len() > 1 && lower.starts_with('0') {
            (8, &lower[1..])
        } else {
            (10, lower.as_str())
        };
        if digits.is_empty() {
            return false;
        }
        let mut value: u128 = 0;
        for c in digits.chars() {
            let Some(d) = c.to_digit(radix) else {
                return false;
            };
            value = value * u128::from(radix) + u128::from(d);
            if value > u128::from(u64::MAX) {
                return false;
            }
        }
        match (signed, negative) {
            (_, true) => value <= 1 << 63,
            (true, false) => value <= i64::MAX as u128,
            (false, false) => true,
        }
    }

    /// go-yaml v2's `yamlStyleFloat`
    /// (`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`) and a finite value, as
    /// `strconv.ParseFloat` gives one (an overflow is an error there).
    fn yaml_style_float(s: &str) -> bool {
        let body = s.strip_prefix(['+', '-']).unwrap_or(s);
        let (mantissa, exponent) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let mantissa_ok = match mantissa.split_once('.') {
            Some(("", frac)) => digits(frac),
            Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
            None => digits(mantissa),
        };
        let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
        mantissa_ok && exponent_ok && s.parse::<f64>().is_ok_and(f64::is_finite)
    }

    /// A scalar starting with `.`: Go's `strconv.ParseFloat` takes `.5`, `.5e3`, and `_`
    /// between digits; finite only.
    fn float_syntax(s: &str) -> bool {
        let plain: String = s.chars().filter(|c| *c != '_').collect();
        yaml_style_float(&plain)
    }

    /// Go's `underscoreOK` for a decimal literal: every `_` between two digits.
    fn underscores_ok(s: &str) -> bool {
        let b = s.as_bytes();
        b.iter().enumerate().all(|(i, c)| {
            *c != b'_'
                || (i > 0
                    && b[i - 1].is_ascii_digit()
                    && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        })
    }

    /// go-yaml v2's `isBase60Float`: `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`.
    fn base60_float(s: &str) -> bool {
        let b = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
        if !b.first().is_some_and(u8::is_ascii_digit) {
            return false;
        }
        let mut i = 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
        let mut groups = 0;
        while b.get(i) == Some(&b':') {
            let d = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
            if b.get(i + 1).is_some_and(|c| (b'0'..=b'5').contains(c)) && d(i + 2) {
                i += 3;
            } else if d(i + 1) {
                i += 2;
            } else {
                return false;
            }
            groups += 1;
        }
        if groups == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
                i += 1;
            }
        }
        i == b.len()
    }

    /// go-yaml v2's `parseTimestamp`: a date `YYYY-M-D`, alone or with a time
    /// (`T`/`t` and a `Z` or `±hh:mm` zone, or a space and no zone), as Go's `time.Parse`
    /// reads its four layouts (one- or two-digit fields, a valid date and time).
    fn timestamp(s: &str) -> bool {
        let b = s.as_bytes();
        if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
            return false;
        }
        // Go's getnum: two digits when there are two, else one.
        fn num(b: &[u8], i: &mut usize) -> Option<u32> {
            let d = |k: usize| {
                b.get(k)
                    .filter(|c| c.is_ascii_digit())
                    .map(|c| u32::from(c - b'0'))
            };
            let first = d(*i)?;
            match d(*i + 1) {
                Some(second) => {
                    *i += 2;
                    Some(first * 10 + second)
                }
                None => {
                    *i += 1;
                    Some(first)
                }
            }
        }
        let year: u32 = s[..4].parse().unwrap_or(0);
        let mut i = 5;
        let Some(month) = num(b, &mut i) else {
            return false;
        };
        if b.get(i) != Some(&b'-') {
            return false;
        }
        i += 1;
        let Some(day) = num(b, &mut i) else {
            return false;
        };
        let days = u8::try_from(month)
            .ok()
            .and_then(|m| time::Month::try_from(m).ok())
            .and_then(|m| Some(u32::from(m.length(i32::try_from(year).ok()?))));
        let Some(days) = days else {
            return false;
        };
        if day < 1 || day > days {
            return false;
        }
        let zoned = match b.get(i) {
            None => return true,
            Some(b'T' | b't') => true,
            Some(b' ') => false,
            Some(_) => return false,
        };
        i += 1;
        let mut clock = [0u32; 3];
        for (k, limit) in [24, 60, 60].into_iter().enumerate() {
            if k > 0 {
                if b.get(i) != Some(&b':') {
                    return false;
                }
                i += 1;
            }
            match num(b, &mut i) {
                Some(v) if v < limit => clock[k] = v,
                _ => return false,
            }
        }
        // Fractional seconds: optional, a `.` or `,` and digits.
        if matches!(b.get(i), Some(b'.' | b',')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if !zoned {
            return i == b.len();
        }
        match &b[i..] {
            [b'Z'] => true,
            [sign, h1, h2, b':', m1, m2] => {
                matches!(sign, b'+' | b'-') && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each string as go-yaml v2 writes it, byte for byte: the expected column is what
    /// `sigs.k8s.io/yaml.Marshal` (client-go's `clientcmd.Write`) wrote for the value with Go
    /// 1.26 and go.yaml.in/yaml/v2 v2.4.4. Two more, with a line break or NEL, where go-yaml
    /// writes a block or folds: double-quoted here, the same string.
    #[test]
    fn strings_are_written_as_go_yaml_writes_them() {
        let go = [
            ("", "\"\""),
            ("yes", "\"yes\""),
            ("Yes", "\"Yes\""),
            ("YES", "\"YES\""),
            ("yEs", "yEs"),
            ("y", "\"y\""),
            ("Y", "\"Y\""),
            ("n", "\"n\""),
            ("N", "\"N\""),
            ("no", "\"no\""),
            ("No", "\"No\""),
            ("NO", "\"NO\""),
            ("nO", "nO"),
            ("on", "\"on\""),
            ("On", "\"On\""),
            ("ON", "\"ON\""),
            ("oN", "oN"),
            ("off", "\"off\""),
            ("Off", "\"Off\""),
            ("OFF", "\"OFF\""),
            ("true", "\"true\""),
            ("True", "\"True\""),
            ("TRUE", "\"TRUE\""),
            ("tRue", "tRue"),
            ("false", "\"false\""),
            ("False", "\"False\""),
            ("FALSE", "\"FALSE\""),
            ("null", "\"null\""),
            ("Null", "\"Null\""),
            ("NULL", "\"NULL\""),
            ("nULL", "nULL"),
            ("~", "\"~\""),
            ("~x", "~x"),
            (".nan", "\".nan\""),
            (".NaN", "\".NaN\""),
            (".NAN", "\".NAN\""),
            (".Nan", ".Nan"),
            (".inf", "\".inf\""),
            (".Inf", "\".Inf\""),
            (".INF", "\".INF\""),
            ("+.inf", "\"+.inf\""),
            ("-.Inf", "\"-.Inf\""),
            ("+.INF", "\"+.INF\""),
            ("-.iNf", "-.iNf"),
            ("<<", "<<"),
            ("=", "="),
            ("12345", "\"12345\""),
            ("0", "\"0\""),
            ("00", "\"00\""),
            ("08", "\"08\""),
            ("09.5", "\"09.5\""),
            ("0x1F", "\"0x1F\""),
            ("0X1f", "\"0X1f\""),
            ("0x", "0x"),
            ("0xg", "0xg"),
            ("0o17", "\"0o17\""),
            ("0O17", "\"0O17\""),
            ("0o8", "0o8"),
            ("0b101", "\"0b101\""),
            ("0B101", "\"0B101\""),
            ("0b2", "0b2"),
            ("-0b101", "\"-0b101\""),
            ("+0b1", "\"+0b1\""),
            ("012", "\"012\""),
            ("1_000", "\"1_000\""),
            ("_1", "_1"),
            ("1__0", "\"1__0\""),
            ("1_", "\"1_\""),
            ("0x_1F", "\"0x_1F\""),
            ("9223372036854775807", "\"9223372036854775807\""),
            ("9223372036854775808", "\"9223372036854775808\""),
            ("18446744073709551615", "\"18446744073709551615\""),
            ("18446744073709551616", "\"18446744073709551616\""),
            ("-9223372036854775808", "\"-9223372036854775808\""),
            ("-9223372036854775809", "\"-9223372036854775809\""),
            ("+18446744073709551615", "\"+18446744073709551615\""),
            ("1e3", "\"1e3\""),
            ("1E3", "\"1E3\""),
            ("1e+3", "\"1e+3\""),
            ("1e", "1e"),
            ("1.", "\"1.\""),
            ("1.5", "\"1.5\""),
            ("1.5e-3", "\"1.5e-3\""),
            (".5", "\".5\""),
            (".5e3", "\".5e3\""),
            (".5_0", "\".5_0\""),
            ("._5", "._5"),
            (".", "."),
            (".e5", ".e5"),
            ("1e400", "1e400"),
            (".5e999", ".5e999"),
            ("1e-400", "\"1e-400\""),
            ("+1", "\"+1\""),
            ("-1", "\"-1\""),
            ("+", "+"),
            ("-", "'-'"),
            ("+.5", "\"+.5\""),
            ("-1.5e3", "\"-1.5e3\""),
            ("1.2.3", "1.2.3"),
            ("1_0.5", "\"1_0.5\""),
            ("0x1p-2", "0x1p-2"),
            ("inf", "inf"),
            ("Infinity", "Infinity"),
            ("NaN", "NaN"),
            ("1:20", "\"1:20\""),
            ("0:0", "\"0:0\""),
            ("1_0:2", "\"1_0:2\""),
            ("+1:59", "\"+1:59\""),
            ("1:60", "1:60"),
            ("1:7", "\"1:7\""),
            ("1:78", "1:78"),
            ("1:20.5", "\"1:20.5\""),
            ("1:20.5_5", "\"1:20.5_5\""),
            ("1:", "'1:'"),
            (":1", ":1"),
            ("12:30:45", "\"12:30:45\""),
            ("2001-12-14", "\"2001-12-14\""),
            (
                "2001-12-14t21:59:43.10-05:00",
                "\"2001-12-14t21:59:43.10-05:00\"",
            ),
            ("2001-12-14T21:59:43.10Z", "\"2001-12-14T21:59:43.10Z\""),
            ("2001-12-14 21:59:43.10", "\"2001-12-14 21:59:43.10\""),
            ("2001-12-14 21:59:43", "\"2001-12-14 21:59:43\""),
            ("2001-1-2", "\"2001-1-2\""),
            ("2001-02-30", "2001-02-30"),
            ("2001-13-01", "2001-13-01"),
            ("2001-12-14T25:00:00Z", "2001-12-14T25:00:00Z"),
            ("2001-12-14 1:2:3", "\"2001-12-14 1:2:3\""),
            ("2001-12-14 1:2:3,5", "\"2001-12-14 1:2:3,5\""),
            ("2001-12-14T1:2:3+0500", "2001-12-14T1:2:3+0500"),
            ("2001-12-14T1:2:3+05:00", "\"2001-12-14T1:2:3+05:00\""),
            ("2001-12-14x", "2001-12-14x"),
            ("20011-12-14", "20011-12-14"),
            ("201-12-14", "201-12-14"),
            ("2001-12", "2001-12"),
            ("2001-12-14 21:59", "2001-12-14 21:59"),
            ("2001-12-14T21:59:43", "2001-12-14T21:59:43"),
            ("2004-02-29", "\"2004-02-29\""),
            ("2001-02-29", "2001-02-29"),
            ("2001-12-14 21:59:43.", "2001-12-14 21:59:43."),
            ("2001-12-14 21:59:60", "2001-12-14 21:59:60"),
            ("abc", "abc"),
            ("https://127.0.0.1:6443", "https://127.0.0.1:6443"),
            (
                "/var/lib/kubelet/pki/kubelet-client-current.pem",
                "/var/lib/kubelet/pki/kubelet-client-current.pem",
            ),
            ("LS0tLS1CRUdJTg==", "LS0tLS1CRUdJTg=="),
            ("abcdef.0123456789abcdef", "abcdef.0123456789abcdef"),
            ("123456.0123456789012345", "\"123456.0123456789012345\""),
            ("a b", "a b"),
            ("tab\tx", "\"tab\\tx\""),
            ("x\u{1}y", "\"x\\x01y\""),
            ("bell\u{7}", "\"bell\\a\""),
            ("é", "é"),
            ("\u{a0}x", "\u{a0}x"),
        ];
        let mut differ = Vec::new();
        for (value, written) in go {
            let ours = go_yaml_scalar(value);
            if ours != written {
                differ.push(format!("{value:?}: {ours} (go-yaml {written})"));
            }
            let doc: std::collections::BTreeMap<String, String> =
                serde_norway::from_str(&format!("k: {ours}\n")).unwrap();
            assert_eq!(doc["k"], value, "read back");
        }
        assert!(differ.is_empty(), "{}", differ.join("\n"));
        assert_eq!(go_yaml_scalar("line\nbreak"), "\"line\\nbreak\"");
        assert_eq!(go_yaml_scalar("a\u{85}b"), "\"a\\Nb\"");
    }

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
        // The bytes client-go's clientcmd.Write (v0.37.2) made of the same config.
        assert_eq!(
            yaml,
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority: /etc/ca.crt\n    insecure-skip-tls-verify: true\n    proxy-url: http://proxy:3128\n    server: https://10.0.0.1:6443\n    tls-server-name: api.internal\n  name: c\ncontexts:\n- context:\n    cluster: c\n    namespace: default\n    user: u\n  name: ctx\ncurrent-context: ctx\nkind: Config\nusers:\n- name: u\n  user:\n    client-certificate: /var/lib/pair.pem\n    client-key: /var/lib/pair.pem\n"
        );
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
        assert_eq!(
            yaml,
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0EgUEVN\n    server: https://127.0.0.1:1\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: ctx\ncurrent-context: ctx\nkind: Config\nusers:\n- name: u\n  user:\n    client-certificate-data: Q0VSVCBQRU0=\n    client-key-data: S0VZIFBFTQ==\n    token: abcdef.0123456789abcdef\n"
        );
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

        let bare = KubeconfigOut {
            cluster_name: "c",
            cluster: ClusterOut {
                server: "https://127.0.0.1:1",
                ..ClusterOut::default()
            },
            user_name: "u",
            user: UserOut::default(),
            context_name: "ctx",
            namespace: None,
        };
        assert_eq!(
            bare.to_yaml().unwrap(),
            "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:1\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: ctx\ncurrent-context: ctx\nkind: Config\nusers:\n- name: u\n  user: {}\n"
        );
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
