//! TLS bootstrap of a node's client certificate, as the kubelet's
//! `pkg/kubelet/certificate/bootstrap`: decide whether the node's kubeconfig can be used as is,
//! and otherwise get a client certificate with the bootstrap kubeconfig's credentials (a
//! bootstrap token, typically) and write a kubeconfig that points at it.
//!
//! Two modes, as the kubelet has:
//!
//! - **Rotation mode** ([`load_client_config`], the kubelet with `rotateCertificates: true`):
//!   nothing is requested here. It returns the credentials to request certificates with and,
//!   when bootstrapping, writes the kubeconfig so that it points at
//!   `<cert_dir>/kubelet-client-current.pem`; the client-certificate manager
//!   ([`ClientConfig::client_manager`]) then gets the first certificate in the background.
//! - **One-shot mode** ([`load_client_cert`]): requests the certificate now and returns when it
//!   is stored and the kubeconfig is written.
//!
//! # When is the kubeconfig "valid"?
//! It exists, loads, its current context resolves to a usable client, it carries a client
//! certificate whose key matches, and no certificate of that chain has passed its NotAfter at
//! the clock's now. Anything else — missing, unparsable, token-only, corrupt or empty PEM, an
//! expired certificate — sends the node through bootstrap (CASES C3, C7): an expired or corrupt
//! certificate on disk never wins over the bootstrap credentials. Only an error other than
//! "not found" when looking at the file is returned as an error, as the kubelet does.
//!
//! A corrupt pair is not deleted: it is left for inspection, the store's next update points
//! `kubelet-client-current.pem` at the new pair, and the store's retention prunes the old file
//! later. Neither mode ever serves or authenticates with it.
//!
//! # The bootstrap private key and CSR name (one-shot mode)
//! The key is the store's current key while the stored certificate is unexpired; otherwise it is
//! kept in `<cert_dir>/kubelet-client.key.tmp` (PKCS#8 PEM, mode 0600), made once and reused by
//! every restart until a certificate is stored, then removed. A corrupt key file is an error, not
//! silently replaced. The CSR gets a name derived from the key, the subject and the usages
//! ([`csr_name`], the kubelet's `digestedName`), so a restart in the middle of bootstrap finds
//! its own CSR (`AlreadyExists`), checks that it was made with the same key and subject, and
//! waits for it instead of creating another. When the CSR is denied or failed the key file is
//! removed, so the next run asks again with a new key under a new name (the kubelet keeps the
//! key and fails the same way forever).
//!
//! The CSR is built, created (or adopted) and its certificate checked by the same request steps
//! as a certificate manager's rotation; [`BootstrapOptions::cancel`] interrupts the create as it
//! interrupts the wait.
//!
//! # The written kubeconfig
//! YAML, mode 0600 whatever the umask, written to a temporary file in the same directory and
//! renamed over the old one (the directory is created 0755 when missing). The bytes are those
//! the kubelet writes (client-go's `clientcmd.Write`: keys in alphabetical order, each string
//! quoted as go-yaml v2 quotes it; `tests/kubelet_peer.rs` compares the two files):
//!
//! ```yaml
//! apiVersion: v1
//! clusters:
//! - cluster:
//!     certificate-authority-data: …   # or certificate-authority: <absolute path>
//!     server: https://…
//!   name: default-cluster
//! contexts:
//! - context:
//!     cluster: default-cluster
//!     namespace: default
//!     user: default-auth
//!   name: default-context
//! current-context: default-context
//! kind: Config
//! users:
//! - name: default-auth
//!   user:
//!     client-certificate: <cert_dir>/kubelet-client-current.pem
//!     client-key: <cert_dir>/kubelet-client-current.pem
//! ```
//!
//! The cluster stanza copies the bootstrap kubeconfig's server, its effective CA (inline data
//! when the bootstrap kubeconfig has it, since data wins over a file, else the file's absolute
//! path) and `insecure-skip-tls-verify`, as the kubelet does, and also `tls-server-name` and
//! `proxy-url`, which the kubelet drops (with either in the bootstrap kubeconfig, the file has
//! that line more than the kubelet's).

use std::fs::{self, DirBuilder, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::RngExt;

use super::{CLIENT_PREFIX, CLIENT_SIGNER, Factory, Options, node_identity};
use crate::KubeCsrClientBuilder;
use crate::clock::{Clock, SystemClock};
use crate::csr::{Cancel, CsrClient, CsrError, CsrRef, KeyUsage, KubeCsrClient};
use crate::error::Error;
use crate::kubeconfig::{ClusterOut, ConfigError, Kubeconfig, KubeconfigOut, UserOut};
use crate::manager::CertificateManager;
use crate::pki::{
    self, CertInfo, Certificate, KeyAlgorithm, PkiError, PrivateKey, fmt_duration, fmt_time,
};
use crate::report::Chain;
use crate::request::CertRequest;
use crate::store::{FileStore, Store, StoreError};
use crate::template::CsrTemplate;

/// File name of the bootstrap private key kept in the certificate directory until a
/// certificate is stored.
pub const TMP_KEY_FILE: &str = "kubelet-client.key.tmp";
/// Name of the cluster entry in a written kubeconfig.
pub const DEFAULT_CLUSTER: &str = "default-cluster";
/// Name of the user entry in a written kubeconfig.
pub const DEFAULT_AUTH: &str = "default-auth";
/// Name of the context (and the current context) of a written kubeconfig.
pub const DEFAULT_CONTEXT: &str = "default-context";
/// How long one-shot mode waits for its certificate by default (the kubelet's 3600 s).
pub const DEFAULT_BOOTSTRAP_WAIT_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long one-shot mode waits for the API server's `/healthz` by default (the kubelet's 1 min).
pub const DEFAULT_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two `/healthz` probes, before jitter (the kubelet's 2 s, +0–20 %).
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Timeout of one `/healthz` probe (the kubelet's 1 s).
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Mode of directories created for the kubeconfig and the key, as the kubelet's `MkdirAll`.
const DIR_MODE: u32 = 0o755;
/// Mode of the kubeconfig and the key file, whatever the umask.
const FILE_MODE: u32 = 0o600;

/// Errors of TLS bootstrap.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The kubeconfig could not be used where it has to be (no bootstrap kubeconfig given).
    #[error("unable to load kubeconfig {}", path.display())]
    LoadKubeconfig {
        /// The kubeconfig.
        path: PathBuf,
        /// Why.
        #[source]
        source: ConfigError,
    },
    /// The bootstrap kubeconfig could not be loaded or gives no usable client.
    #[error("unable to load bootstrap kubeconfig {}", path.display())]
    LoadBootstrapKubeconfig {
        /// The bootstrap kubeconfig.
        path: PathBuf,
        /// Why.
        #[source]
        source: ConfigError,
    },
    /// Looking at the existing kubeconfig failed other than by it not existing (permissions, a
    /// broken file system): the kubelet refuses to guess in that case.
    #[error("error reading existing kubeconfig {}", path.display())]
    ReadKubeconfig {
        /// The kubeconfig.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The client certificate store failed.
    #[error("client certificate store in {}", cert_dir.display())]
    Store {
        /// The certificate directory.
        cert_dir: PathBuf,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The bootstrap private key file exists but cannot be used.
    #[error("cannot use the bootstrap private key {}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why (unparsable, too weak).
        #[source]
        source: Box<PkiError>,
    },
    /// A new private key or the CSR could not be made.
    #[error("cannot make the certificate signing request for node {node:?}")]
    Csr {
        /// The node name.
        node: String,
        /// Why.
        #[source]
        source: Box<PkiError>,
    },
    /// Creating the CSR or waiting for its certificate failed (including denied, failed,
    /// timed out and cancelled; see [`BootstrapError::csr_error`]).
    #[error("cannot get a client certificate for node {node:?} from the CSR API")]
    Request {
        /// The node name.
        node: String,
        /// The CSR API error.
        #[source]
        source: Box<CsrError>,
    },
    /// The CSR API returned a certificate that fails verification; nothing was stored.
    #[error("the client certificate issued for node {node:?} is unusable")]
    Issued {
        /// The node name.
        node: String,
        /// Which check failed.
        #[source]
        source: Box<PkiError>,
    },
    /// Writing the kubeconfig or the key file failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// `write`, `create directory`, …
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl BootstrapError {
    /// The CSR API error, when the request or the wait failed.
    pub fn csr_error(&self) -> Option<&CsrError> {
        match self {
            BootstrapError::Request { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }

    /// True when the wait was cancelled through [`BootstrapOptions::cancel`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self.csr_error(), Some(CsrError::Cancelled { .. }))
    }
}

/// A hook told about the CSR a one-shot bootstrap waits for (see
/// [`BootstrapOptions::on_request`]).
pub type RequestHook = Arc<dyn Fn(&CsrRef) + Send + Sync>;

/// Settings of [`load_client_config_with`] and [`load_client_cert_with`]. Every field has a
/// default; see each.
#[derive(Clone)]
pub struct BootstrapOptions {
    /// The clock that decides whether a certificate on disk has expired; also names stored
    /// files. Defaults to the system clock.
    pub clock: Option<Arc<dyn Clock>>,
    /// How long one-shot mode waits for the CSR to be approved and issued (real time). Defaults
    /// to [`DEFAULT_BOOTSTRAP_WAIT_TIMEOUT`] (1 h).
    pub certificate_wait_timeout: Duration,
    /// How long one-shot mode waits for the API server's `/healthz` before sending the CSR
    /// anyway; failures are only logged. Zero skips the wait. Defaults to
    /// [`DEFAULT_HEALTH_CHECK_TIMEOUT`] (1 min).
    pub health_check_timeout: Duration,
    /// Cancels a one-shot bootstrap in progress (the health wait, the CSR create and the CSR
    /// wait); the call then returns an error for which [`BootstrapError::is_cancelled`] is
    /// true, keeping the key file for the next run. Defaults to none.
    pub cancel: Option<Cancel>,
    /// Called with the CSR once it is created or adopted, before the wait: for progress
    /// reports, or to approve it in a demo. Defaults to none.
    pub on_request: Option<RequestHook>,
}

impl Default for BootstrapOptions {
    fn default() -> BootstrapOptions {
        BootstrapOptions {
            clock: None,
            certificate_wait_timeout: DEFAULT_BOOTSTRAP_WAIT_TIMEOUT,
            health_check_timeout: DEFAULT_HEALTH_CHECK_TIMEOUT,
            cancel: None,
            on_request: None,
        }
    }
}

impl std::fmt::Debug for BootstrapOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapOptions")
            .field("certificate_wait_timeout", &self.certificate_wait_timeout)
            .field("health_check_timeout", &self.health_check_timeout)
            .field("cancel", &self.cancel)
            .finish_non_exhaustive()
    }
}

impl BootstrapOptions {
    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone().unwrap_or_else(|| Arc::new(SystemClock))
    }
}

/// What [`load_client_config`] decided (the kubelet's `certConfig`/`userConfig` pair).
#[derive(Clone)]
pub struct ClientConfig {
    /// The API server and the credentials to request client certificates with while the node
    /// has none: the bootstrap kubeconfig's when bootstrapping, else the kubeconfig's own.
    /// Once a certificate exists, [`KubeCsrClientBuilder::client_for`] with it gives the node's
    /// own client (the kubelet's `userConfig` with the rotating certificate).
    pub cert_config: KubeCsrClientBuilder,
    /// The kubeconfig's inline client certificate and key (`client-certificate-data`,
    /// `client-key-data`), when it is used as is: kubeadm hands the kubelet such a credential
    /// and expects it to be rotated out at once, so it becomes the client manager's bootstrap
    /// pair. `None` when bootstrapping.
    pub bootstrap_pair: Option<(Vec<u8>, Vec<u8>)>,
    /// The kubeconfig's client certificate and key files, when it is used as is and names
    /// files: the client manager's store reads them after `kubelet-client-current.pem`, as the
    /// kubelet passes `CertFile`/`KeyFile`. `None` when bootstrapping.
    pub cert_and_key_files: Option<(PathBuf, PathBuf)>,
    /// True when the bootstrap kubeconfig is in use and the kubeconfig was (re)written to point
    /// at `<cert_dir>/kubelet-client-current.pem`.
    pub bootstrapping: bool,
    /// The kubeconfig path.
    pub kubeconfig: PathBuf,
    /// The certificate directory.
    pub cert_dir: PathBuf,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bootstrap pair holds a private key: only say whether there is one.
        f.debug_struct("ClientConfig")
            .field("cert_config", &self.cert_config)
            .field(
                "bootstrap_pair",
                &self.bootstrap_pair.as_ref().map(|_| "<redacted>"),
            )
            .field("cert_and_key_files", &self.cert_and_key_files)
            .field("bootstrapping", &self.bootstrapping)
            .field("kubeconfig", &self.kubeconfig)
            .field("cert_dir", &self.cert_dir)
            .finish()
    }
}

impl ClientConfig {
    /// The client manager's factory: bootstrap credentials until the node has a certificate,
    /// then that certificate (see [`client_factory`](super::client_factory)).
    pub fn factory(&self) -> Factory {
        super::client_factory(self.cert_config.clone())
    }

    /// The node's client-certificate manager for this configuration (the kubelet's
    /// `buildClientCertificateManager`): [`client_manager`](super::client_manager) in
    /// [`cert_dir`](Self::cert_dir) with [`bootstrap_pair`](Self::bootstrap_pair), the
    /// kubeconfig's files (unless `options` names others) and [`factory`](Self::factory).
    ///
    /// # Errors
    /// As [`client_manager`](super::client_manager).
    pub fn client_manager(
        &self,
        node_name: &str,
        mut options: Options,
    ) -> Result<CertificateManager, Error> {
        if options.cert_and_key_files.is_none() {
            options.cert_and_key_files = self.cert_and_key_files.clone();
        }
        super::client_manager(
            node_name,
            &self.cert_dir,
            self.bootstrap_pair.clone(),
            self.factory(),
            options,
        )
    }
}

/// Rotation mode (the kubelet's `LoadClientConfig`) with default options; see
/// [`load_client_config_with`].
///
/// # Errors
/// As [`load_client_config_with`].
pub fn load_client_config(
    kubeconfig: impl AsRef<Path>,
    bootstrap_kubeconfig: Option<&Path>,
    cert_dir: impl AsRef<Path>,
) -> Result<ClientConfig, BootstrapError> {
    load_client_config_with(
        kubeconfig,
        bootstrap_kubeconfig,
        cert_dir,
        &BootstrapOptions::default(),
    )
}

/// Rotation mode (the kubelet's `LoadClientConfig`):
///
/// 1. Without a bootstrap kubeconfig, the kubeconfig is used for everything.
/// 2. A valid kubeconfig (see the module docs) is used as is.
/// 3. Otherwise the bootstrap kubeconfig's credentials are returned for requesting
///    certificates, and the kubeconfig is (re)written to point at
///    `<cert_dir>/kubelet-client-current.pem`, which the client manager fills.
///
/// Nothing is requested here; build the client manager with
/// [`ClientConfig::client_manager`] and start it.
///
/// # Errors
/// [`BootstrapError::LoadKubeconfig`] in case 1 or 2 when the kubeconfig cannot be used,
/// [`BootstrapError::ReadKubeconfig`], [`BootstrapError::LoadBootstrapKubeconfig`],
/// [`BootstrapError::Store`] when the store's directory is in a state it refuses,
/// [`BootstrapError::Io`] when the kubeconfig cannot be written.
pub fn load_client_config_with(
    kubeconfig: impl AsRef<Path>,
    bootstrap_kubeconfig: Option<&Path>,
    cert_dir: impl AsRef<Path>,
    options: &BootstrapOptions,
) -> Result<ClientConfig, BootstrapError> {
    let kubeconfig = kubeconfig.as_ref();
    let cert_dir = cert_dir.as_ref();
    let clock = options.clock();
    let Some(bootstrap) = bootstrap_kubeconfig.filter(|p| !p.as_os_str().is_empty()) else {
        let kc = Kubeconfig::load(kubeconfig).map_err(|source| BootstrapError::LoadKubeconfig {
            path: kubeconfig.to_owned(),
            source,
        })?;
        log::info!(
            "no bootstrapping requested, will use kubeconfig {}",
            kubeconfig.display()
        );
        return as_is(&kc, kubeconfig, cert_dir, &clock);
    };
    let store = client_store(cert_dir, &clock)?;
    if let Some(kc) = valid_kubeconfig(kubeconfig, clock.now())? {
        log::info!(
            "kubeconfig {} is still valid, no bootstrap necessary",
            kubeconfig.display()
        );
        return as_is(&kc, kubeconfig, cert_dir, &clock);
    }
    let (boot, cert_config) = load_bootstrap(bootstrap, &clock)?;
    write_kubeconfig(&boot, kubeconfig, &store.current_path())?;
    log::info!(
        "using the bootstrap credentials of {} to request a client certificate; kubeconfig {} now points at {}",
        bootstrap.display(),
        kubeconfig.display(),
        store.current_path().display()
    );
    Ok(ClientConfig {
        cert_config,
        bootstrap_pair: None,
        cert_and_key_files: None,
        bootstrapping: true,
        kubeconfig: kubeconfig.to_owned(),
        cert_dir: cert_dir.to_owned(),
    })
}

/// One-shot mode (the kubelet's `LoadClientCert`) with default options; see
/// [`load_client_cert_with`].
///
/// # Errors
/// As [`load_client_cert_with`].
pub fn load_client_cert(
    kubeconfig: impl AsRef<Path>,
    bootstrap_kubeconfig: impl AsRef<Path>,
    cert_dir: impl AsRef<Path>,
    node_name: &str,
) -> Result<Option<Certificate>, BootstrapError> {
    load_client_cert_with(
        kubeconfig,
        bootstrap_kubeconfig,
        cert_dir,
        node_name,
        &BootstrapOptions::default(),
    )
}

/// One-shot mode (the kubelet's `LoadClientCert`): when the kubeconfig is valid, returns
/// `Ok(None)` at once. Otherwise, with the bootstrap kubeconfig's credentials:
///
/// 1. takes the key (the stored one while its certificate is unexpired, else the kept or a new
///    `kubelet-client.key.tmp`, see the module docs);
/// 2. waits up to [`BootstrapOptions::health_check_timeout`] for `/healthz` (failure only
///    logged);
/// 3. creates — or, after a restart, adopts — the CSR `node-csr-…` for CN
///    `system:node:<node_name>`, O `system:nodes`, signer
///    `kubernetes.io/kube-apiserver-client-kubelet`, usages digital signature and client auth
///    (plus key encipherment for RSA keys), no requested lifetime;
/// 4. waits for it up to [`BootstrapOptions::certificate_wait_timeout`];
/// 5. checks the certificate (key, validity, subject), stores it in the `kubelet-client` file
///    store, removes the key file and writes the kubeconfig.
///
/// Returns the stored certificate.
///
/// # Errors
/// [`BootstrapError::ReadKubeconfig`], [`BootstrapError::LoadBootstrapKubeconfig`],
/// [`BootstrapError::Key`] for a corrupt key file, [`BootstrapError::Request`] when creating or
/// waiting fails (denied, failed, timed out, cancelled, an incompatible CSR of the same name),
/// [`BootstrapError::Issued`], [`BootstrapError::Store`], [`BootstrapError::Io`].
pub fn load_client_cert_with(
    kubeconfig: impl AsRef<Path>,
    bootstrap_kubeconfig: impl AsRef<Path>,
    cert_dir: impl AsRef<Path>,
    node_name: &str,
    options: &BootstrapOptions,
) -> Result<Option<Certificate>, BootstrapError> {
    let kubeconfig = kubeconfig.as_ref();
    let bootstrap = bootstrap_kubeconfig.as_ref();
    let cert_dir = cert_dir.as_ref();
    let clock = options.clock();
    if valid_kubeconfig(kubeconfig, clock.now())?.is_some() {
        log::info!(
            "kubeconfig {} exists and is valid, skipping bootstrap",
            kubeconfig.display()
        );
        return Ok(None);
    }
    log::info!(
        "using bootstrap kubeconfig {} to get a client certificate, key and kubeconfig",
        bootstrap.display()
    );
    let (boot, cert_config) = load_bootstrap(bootstrap, &clock)?;
    let client = cert_config
        .build()
        .map_err(|source| BootstrapError::LoadBootstrapKubeconfig {
            path: bootstrap.to_owned(),
            source,
        })?;
    let store = client_store(cert_dir, &clock)?;
    let key_path = cert_dir.join(TMP_KEY_FILE);
    let stored_key = match store.current() {
        Ok(Some(c)) if !c.is_expired_at(clock.now()) => Some(c.private_key().clone()),
        Ok(Some(c)) => {
            log::info!(
                "stored client certificate expired at {}; not reusing its key",
                fmt_time(c.not_after())
            );
            None
        }
        Ok(None) => None,
        Err(e) => {
            log::warn!(
                "stored client certificate is unusable ({}); bootstrapping a new one",
                Chain(&e)
            );
            None
        }
    };
    let (key, from_key_file) = match stored_key {
        Some(k) => (k, false),
        None => {
            log::info!(
                "no valid private key and/or certificate found, reusing the kept private key or creating a new one"
            );
            (load_or_generate_key(&key_path)?, true)
        }
    };
    let cancel = options.cancel.clone().unwrap_or_default();
    wait_for_server(&client, options.health_check_timeout, &cancel);

    let template = node_identity(node_name);
    let usages = bootstrap_usages(key.algorithm());
    let csr_err = |source: PkiError| BootstrapError::Csr {
        node: node_name.to_owned(),
        source: Box::new(source),
    };
    let req = CertRequest::new(
        template,
        key,
        csr_name,
        CLIENT_SIGNER.to_owned(),
        usages,
        None,
    )
    .map_err(csr_err)?;
    let request_err = |source: CsrError| BootstrapError::Request {
        node: node_name.to_owned(),
        source: Box::new(source),
    };
    let csr = req.create(&client, &cancel).map_err(request_err)?;
    log::info!(
        "waiting up to {} for client certificate signing request {:?} to be issued",
        fmt_duration(options.certificate_wait_timeout),
        csr.name
    );
    if let Some(hook) = &options.on_request {
        hook(&csr);
    }
    let chain = match client.wait_for_certificate(&csr, options.certificate_wait_timeout, &cancel) {
        Ok(chain) => chain,
        Err(e @ (CsrError::Denied { .. } | CsrError::Failed { .. })) => {
            if from_key_file {
                // The name follows from the key: a new key is the only way to ask again.
                remove_key_file(&key_path);
            }
            return Err(request_err(e));
        }
        Err(e) => return Err(request_err(e)),
    };
    let cert = req
        .verify(&chain, clock.now())
        .map_err(|source| BootstrapError::Issued {
            node: node_name.to_owned(),
            source: Box::new(source),
        })?;
    let stored = store
        .update(cert.cert_pem().as_bytes(), req.key.to_pem().as_bytes())
        .map_err(|source| BootstrapError::Store {
            cert_dir: cert_dir.to_owned(),
            source,
        })?;
    remove_key_file(&key_path);
    write_kubeconfig(&boot, kubeconfig, &store.current_path())?;
    log::info!(
        "stored client certificate {} (valid until {}) and wrote kubeconfig {}",
        stored.serial_hex(),
        fmt_time(stored.not_after()),
        kubeconfig.display()
    );
    Ok(Some(stored))
}

/// The name the kubelet gives a bootstrap CSR (`digestedName`): `node-csr-` followed by the
/// unpadded base64url SHA-512/256 digest of the DER `SubjectPublicKeyInfo`, the common name,
/// each organization and each usage (in order), each written as unpadded base64url followed by
/// `|` (a character outside that alphabet, so different inputs never make the same stream).
/// The same key, subject and usages always give the same name.
pub fn csr_name(public_key_der: &[u8], template: &CsrTemplate, usages: &[KeyUsage]) -> String {
    crate::csr::digested_name("node-csr-", public_key_der, template, usages)
}

/// The bootstrap CSR's usages in the kubelet's order (which [`csr_name`] depends on): digital
/// signature, client auth, then key encipherment for RSA keys.
pub fn bootstrap_usages(alg: KeyAlgorithm) -> Vec<KeyUsage> {
    let mut u = vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth];
    if alg.is_rsa() {
        u.push(KeyUsage::KeyEncipherment);
    }
    u
}

fn client_store(cert_dir: &Path, clock: &Arc<dyn Clock>) -> Result<FileStore, BootstrapError> {
    FileStore::builder(CLIENT_PREFIX, cert_dir, cert_dir)
        .clock(clock.clone())
        .build()
        .map_err(|source| BootstrapError::Store {
            cert_dir: cert_dir.to_owned(),
            source,
        })
}

fn load_bootstrap(
    path: &Path,
    clock: &Arc<dyn Clock>,
) -> Result<(Kubeconfig, KubeCsrClientBuilder), BootstrapError> {
    let err = |source| BootstrapError::LoadBootstrapKubeconfig {
        path: path.to_owned(),
        source,
    };
    let kc = Kubeconfig::load(path).map_err(err)?;
    let builder = kc.client_builder(None).map_err(err)?.clock(clock.clone());
    Ok((kc, builder))
}

/// The kubeconfig used as is (no bootstrap, or still valid).
fn as_is(
    kc: &Kubeconfig,
    path: &Path,
    cert_dir: &Path,
    clock: &Arc<dyn Clock>,
) -> Result<ClientConfig, BootstrapError> {
    let err = |source| BootstrapError::LoadKubeconfig {
        path: path.to_owned(),
        source,
    };
    let cert_config = kc.client_builder(None).map_err(err)?.clock(clock.clone());
    let user = kc.select(None).map_err(err)?.user;
    let bootstrap_pair = user.client_certificate_data.zip(user.client_key_data);
    let cert_and_key_files = user.client_certificate.zip(user.client_key);
    Ok(ClientConfig {
        cert_config,
        bootstrap_pair,
        cert_and_key_files,
        bootstrapping: false,
        kubeconfig: path.to_owned(),
        cert_dir: cert_dir.to_owned(),
    })
}

/// The kubeconfig at `path` if it is valid at `now` (see the module docs); `Ok(None)` when it
/// is not, with the reason logged.
fn valid_kubeconfig(path: &Path, now: SystemTime) -> Result<Option<Kubeconfig>, BootstrapError> {
    match fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            log::info!("no kubeconfig at {}", path.display());
            return Ok(None);
        }
        Err(source) => {
            return Err(BootstrapError::ReadKubeconfig {
                path: path.to_owned(),
                source,
            });
        }
    }
    match check_kubeconfig(path, now) {
        Ok(kc) => Ok(Some(kc)),
        Err(reason) => {
            log::warn!(
                "existing kubeconfig {} is not usable: {reason}",
                path.display()
            );
            Ok(None)
        }
    }
}

fn check_kubeconfig(path: &Path, now: SystemTime) -> Result<Kubeconfig, String> {
    let kc = Kubeconfig::load(path).map_err(|e| Chain(&e).to_string())?;
    let user = kc.select(None).map_err(|e| Chain(&e).to_string())?.user;
    let read = |data: Option<Vec<u8>>, file: Option<PathBuf>, what: &str| match (data, file) {
        (Some(d), _) => Ok(d),
        (None, Some(f)) => {
            fs::read(&f).map_err(|e| format!("cannot read {what} {}: {e}", f.display()))
        }
        (None, None) => Err(format!("it has no {what}")),
    };
    let cert_pem = read(
        user.client_certificate_data,
        user.client_certificate,
        "client certificate",
    )?;
    let key_pem = read(user.client_key_data, user.client_key, "client key")?;
    Certificate::from_pem(&cert_pem, &key_pem)
        .map_err(|e| format!("its client certificate and key are unusable: {e}"))?;
    for der in pki::parse_chain_pem(&cert_pem).map_err(|e| e.to_string())? {
        let info = CertInfo::from_der(&der).map_err(|e| e.to_string())?;
        if now > info.not_after {
            return Err(format!(
                "part of its client certificate expired at {}",
                fmt_time(info.not_after)
            ));
        }
    }
    kc.client_builder(None).map_err(|e| Chain(&e).to_string())?;
    Ok(kc)
}

/// Loads the kept bootstrap key, or makes and keeps a new ECDSA P-256 one (the kubelet's
/// `LoadOrGenerateKeyFile`). Two processes racing keep the same key: the file is created
/// without replacing one that appeared meanwhile.
fn load_or_generate_key(path: &Path) -> Result<PrivateKey, BootstrapError> {
    let key_err = |source| BootstrapError::Key {
        path: path.to_owned(),
        source: Box::new(source),
    };
    let load = |pem: &[u8]| {
        let key = PrivateKey::from_pem(pem).map_err(key_err)?;
        key.check_strength().map_err(key_err)?;
        Ok(key)
    };
    match fs::read(path) {
        Ok(pem) => {
            log::info!("reusing the bootstrap private key {}", path.display());
            return load(&pem);
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => {
            return Err(BootstrapError::Io {
                op: "read",
                path: path.to_owned(),
                source,
            });
        }
    }
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).map_err(key_err)?;
    match write_private_file(path, key.to_pem().as_bytes(), false) {
        Ok(()) => {
            log::info!("wrote a new bootstrap private key to {}", path.display());
            Ok(key)
        }
        Err(BootstrapError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
            let pem = fs::read(path).map_err(|source| BootstrapError::Io {
                op: "read",
                path: path.to_owned(),
                source,
            })?;
            load(&pem)
        }
        Err(e) => Err(e),
    }
}

fn remove_key_file(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => log::info!("removed the bootstrap private key {}", path.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => log::warn!(
            "cannot remove the bootstrap private key {}: {e}",
            path.display()
        ),
    }
}

/// Writes `data` to `path` with mode 0600: a temporary file in the same directory (created
/// 0755 when missing), `fsync`, then a rename over `path` (`replace`) or a link that fails with
/// `AlreadyExists` when `path` exists (`!replace`).
fn write_private_file(path: &Path, data: &[u8], replace: bool) -> Result<(), BootstrapError> {
    let io = |op: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| BootstrapError::Io {
            op,
            path: p,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io("create directory", dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".certrotate-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io("create a temporary file in", dir))?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(io("set permissions of", tmp.path()))?;
    tmp.write_all(data).map_err(io("write", tmp.path()))?;
    tmp.as_file().sync_all().map_err(io("sync", tmp.path()))?;
    let persisted = if replace {
        tmp.persist(path).map(drop)
    } else {
        tmp.persist_noclobber(path).map(drop)
    };
    persisted.map_err(|e| BootstrapError::Io {
        op: "write",
        path: path.to_owned(),
        source: e.error,
    })?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes the kubeconfig pointing at `pem_path` with `bootstrap`'s cluster (the kubelet's
/// `writeKubeconfigFromBootstrapping`; see the module docs).
fn write_kubeconfig(
    bootstrap: &Kubeconfig,
    path: &Path,
    pem_path: &Path,
) -> Result<(), BootstrapError> {
    let invalid = |message: String| BootstrapError::Io {
        op: "write",
        path: path.to_owned(),
        source: std::io::Error::new(ErrorKind::InvalidInput, message),
    };
    let cluster = bootstrap
        .select(None)
        .map_err(|e| invalid(Chain(&e).to_string()))?
        .cluster;
    let data = cluster.certificate_authority_data.as_deref();
    let doc = KubeconfigOut {
        cluster_name: DEFAULT_CLUSTER,
        cluster: ClusterOut {
            server: cluster.server.as_deref().unwrap_or_default(),
            certificate_authority: match data {
                Some(_) => None,
                None => cluster.certificate_authority.as_deref(),
            },
            certificate_authority_data: data,
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
            tls_server_name: cluster.tls_server_name.as_deref().filter(|s| !s.is_empty()),
            proxy_url: cluster.proxy_url.as_deref().filter(|s| !s.is_empty()),
        },
        user_name: DEFAULT_AUTH,
        user: UserOut {
            client_certificate: Some(pem_path),
            client_key: Some(pem_path),
            ..UserOut::default()
        },
        context_name: DEFAULT_CONTEXT,
        namespace: Some("default"),
    };
    let yaml = doc.to_yaml().map_err(|e| invalid(e.to_string()))?;
    write_private_file(path, yaml.as_bytes(), true)
}

/// Polls `/healthz` until it answers, `timeout` passes or `cancel` fires (the kubelet's
/// `waitForServer`: a 1 s probe every 2 s + 0–20 % jitter). Failures are only logged.
fn wait_for_server(client: &KubeCsrClient, timeout: Duration, cancel: &Cancel) {
    if timeout.is_zero() {
        return;
    }
    let start = Instant::now();
    loop {
        match client.probe_healthz(HEALTH_PROBE_TIMEOUT) {
            Ok(()) => return,
            Err(e) => log::info!("failed to connect to the API server: {e}"),
        }
        let waited = start.elapsed();
        if waited >= timeout {
            log::info!(
                "the API server did not answer /healthz within {}; sending the request anyway",
                fmt_duration(timeout)
            );
            return;
        }
        let pause = HEALTH_CHECK_INTERVAL
            .mul_f64(1.0 + rand::rng().random_range(0.0..0.2))
            .min(timeout - waited);
        crossbeam_channel::select! {
            recv(cancel.receiver()) -> _ => return,
            recv(crossbeam_channel::after(pause)) -> _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name is computed as the kubelet's `digestedName`; the expected value was computed
    /// independently (OpenSSL's DER public key, Python's hashlib SHA-512/256).
    #[test]
    fn csr_name_matches_an_independent_computation() {
        let key = PrivateKey::from_pem(include_bytes!("../../tests/fixtures/ec.key")).unwrap();
        let t = node_identity("node-1");
        let name = csr_name(
            &key.public_key_der(),
            &t,
            &bootstrap_usages(key.algorithm()),
        );
        assert_eq!(name, EXPECTED_EC_NAME);
    }

    const EXPECTED_EC_NAME: &str = "node-csr-e3-Cys2lefr3d8l5A6Gw8f4eUM_J1HIZEFsCXDC94CI";

    #[test]
    fn csr_name_depends_on_every_input() {
        let k1 = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let k2 = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let u = bootstrap_usages(KeyAlgorithm::EcdsaP256);
        let t = node_identity("node-1");
        let base = csr_name(&k1.public_key_der(), &t, &u);
        assert!(base.starts_with("node-csr-"), "{base}");
        assert_eq!(base, csr_name(&k1.public_key_der(), &t, &u), "stable");
        assert_ne!(base, csr_name(&k2.public_key_der(), &t, &u), "key");
        assert_ne!(
            base,
            csr_name(&k1.public_key_der(), &node_identity("node-2"), &u),
            "node"
        );
        assert_ne!(
            base,
            csr_name(
                &k1.public_key_der(),
                &t,
                &bootstrap_usages(KeyAlgorithm::Rsa { bits: 2048 })
            ),
            "usages"
        );
        // The delimiter keeps field boundaries: CN "ab" + O "c" differs from CN "a" + O "bc".
        let a = CsrTemplate::new("ab").with_organization("c");
        let b = CsrTemplate::new("a").with_organization("bc");
        assert_ne!(csr_name(b"k", &a, &u), csr_name(b"k", &b, &u));
        // 43 characters of unpadded base64url for 32 bytes.
        assert_eq!(base.len(), "node-csr-".len() + 43);
    }

    #[test]
    fn bootstrap_usages_follow_the_kubelet_order() {
        use KeyUsage::*;
        assert_eq!(
            bootstrap_usages(KeyAlgorithm::EcdsaP256),
            [DigitalSignature, ClientAuth]
        );
        assert_eq!(
            bootstrap_usages(KeyAlgorithm::Rsa { bits: 2048 }),
            [DigitalSignature, ClientAuth, KeyEncipherment]
        );
    }
}
