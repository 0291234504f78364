//! `certrotate serve`: the embedded CSR API server as a process.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certrotate::pki::CertificateAuthority;
use certrotate::server::{ApprovalPolicy, CsrApiServer, Identity, UserInfo};
use clap::{Args, ValueEnum};

use crate::files::{self, CERT_MODE, KEY_MODE};
use crate::signals;
use crate::{Failure, failed, usage};

/// Flags of `certrotate serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the URL is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// CA certificate (PEM). With --ca-key: when both files exist they are loaded; when neither
    /// does, a new CA is made and written there (certificate 0644, key 0600).
    #[arg(long, requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// CA private key (PEM); see --ca-cert.
    #[arg(long, requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// Who approves CSRs: `node` approves what kube-controller-manager approves (node client
    /// certificates), `all` approves every CSR (demos only), `manual` none (approve with
    /// `kubectl certificate approve`).
    #[arg(long, value_enum, default_value_t = Approve::Node)]
    approve: Approve,
    /// Longest certificate lifetime the signer issues, in seconds (the signer's duration).
    #[arg(long, default_value_t = 8760 * 3600, value_name = "SECONDS")]
    max_lifetime: u64,
    /// Shortest lifetime a CSR's expirationSeconds may ask for, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    min_lifetime: u64,
    /// How far NotBefore is set before the signing time, in seconds (kube-controller-manager:
    /// 5 minutes).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    backdate: u64,
    /// A further signer name to sign for (the three kubernetes.io signers always are);
    /// repeatable.
    #[arg(long = "signer", value_name = "NAME")]
    signers: Vec<String>,
    /// Static bearer token, TOKEN:USER[:GROUP,GROUP...]; repeatable. The command line is
    /// visible to other users of the machine: for tests and demos.
    #[arg(long = "token", value_name = "TOKEN:USER[:GROUPS]")]
    tokens: Vec<TokenSpec>,
    /// Bootstrap token, ID.SECRET ([a-z0-9]{6}.[a-z0-9]{16}); repeatable.
    #[arg(long = "bootstrap-token", value_name = "ID.SECRET")]
    bootstrap_tokens: Vec<String>,
    /// Directory to write kubeconfigs to (0600 each): admin.kubeconfig (system:masters),
    /// node-NAME.kubeconfig for each --node, bootstrap.kubeconfig for the first bootstrap token.
    #[arg(long)]
    kubeconfig_dir: Option<PathBuf>,
    /// Node name to write a node client kubeconfig for (user system:node:NAME, group
    /// system:nodes); repeatable.
    #[arg(long = "node", value_name = "NAME")]
    nodes: Vec<String>,
    /// Further DNS name or IP for the serving certificate (localhost and the listen address
    /// are always in it); repeatable.
    #[arg(long = "serving-name", value_name = "NAME")]
    serving_names: Vec<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Approve {
    /// Node client certificates, as kube-controller-manager's csrapproving controller.
    Node,
    /// Every CSR (demos only: a bootstrap token buys a system:masters certificate).
    All,
    /// None.
    Manual,
}

/// `TOKEN:USER[:GROUP,GROUP...]`.
#[derive(Clone)]
pub struct TokenSpec {
    token: String,
    user: String,
    groups: Vec<String>,
}

impl std::fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("user", &self.user)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl std::str::FromStr for TokenSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<TokenSpec, String> {
        let mut parts = s.splitn(3, ':');
        let token = parts.next().unwrap_or_default();
        let user = parts.next().unwrap_or_default();
        if token.is_empty() || user.is_empty() {
            // The value holds a secret: never echo it.
            return Err("a token is given as TOKEN:USER[:GROUP,GROUP...], both non-empty".into());
        }
        let groups = parts
            .next()
            .map(|g| {
                g.split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(TokenSpec {
            token: token.to_owned(),
            user: user.to_owned(),
            groups,
        })
    }
}

fn load_or_make_ca(cert: &Path, key: &Path) -> Result<CertificateAuthority, Failure> {
    match (cert.exists(), key.exists()) {
        (true, true) => {
            let read = |p: &Path| {
                std::fs::read(p).map_err(|e| failed(format!("cannot read {}: {e}", p.display())))
            };
            CertificateAuthority::from_pem(&read(cert)?, &read(key)?).map_err(usage)
        }
        (false, false) => {
            let ca = CertificateAuthority::new(
                "certrotate-serve-ca",
                std::time::UNIX_EPOCH + Duration::from_secs(946_684_800),
                std::time::UNIX_EPOCH + Duration::from_secs(4_102_444_800),
            )
            .map_err(failed)?;
            files::write_atomic(key, ca.key_pem().as_bytes(), KEY_MODE, None)
                .map_err(|e| failed(format!("cannot write {}: {e}", key.display())))?;
            files::write_atomic(cert, ca.cert_pem().as_bytes(), CERT_MODE, None)
                .map_err(|e| failed(format!("cannot write {}: {e}", cert.display())))?;
            log::info!("made a new CA: {} and {}", cert.display(), key.display());
            Ok(ca)
        }
        (true, false) => Err(usage(format!(
            "{} exists but the CA key {} does not",
            cert.display(),
            key.display()
        ))),
        (false, true) => Err(usage(format!(
            "{} exists but the CA certificate {} does not",
            key.display(),
            cert.display()
        ))),
    }
}

/// Runs `certrotate serve`.
pub fn main(args: ServeArgs) -> Result<(), Failure> {
    let stop = signals::install().map_err(|e| failed(format!("cannot handle signals: {e}")))?;
    let mut builder = CsrApiServer::builder()
        .bind(args.listen)
        .approval_policy(match args.approve {
            Approve::Node => ApprovalPolicy::NodeClient,
            Approve::All => ApprovalPolicy::All,
            Approve::Manual => ApprovalPolicy::Manual,
        })
        .min_lifetime(Duration::from_secs(args.min_lifetime))
        .max_lifetime(Duration::from_secs(args.max_lifetime))
        .backdate(Duration::from_secs(args.backdate));
    if let (Some(cert), Some(key)) = (&args.ca_cert, &args.ca_key) {
        builder = builder.ca(load_or_make_ca(cert, key)?);
    }
    for s in &args.signers {
        builder = builder.signer(s);
    }
    for n in &args.serving_names {
        builder = builder.serving_name(n);
    }
    for t in &args.tokens {
        let groups: Vec<&str> = t.groups.iter().map(String::as_str).collect();
        builder = builder.token(&t.token, UserInfo::new(&t.user, &groups));
    }
    let mut bootstrap = Vec::new();
    for b in &args.bootstrap_tokens {
        let Some((id, secret)) = b.split_once('.') else {
            return Err(usage(
                "a bootstrap token is given as ID.SECRET ([a-z0-9]{6}.[a-z0-9]{16})",
            ));
        };
        builder = builder.bootstrap_token(id, secret);
        bootstrap.push((id.to_owned(), secret.to_owned()));
    }
    let server = builder.start().map_err(|e| match e {
        certrotate::server::ServerError::InvalidConfig(_) => usage(e),
        e => failed(e),
    })?;
    if let Some(dir) = &args.kubeconfig_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        let mut wanted = vec![("admin.kubeconfig".to_owned(), Identity::admin())];
        for n in &args.nodes {
            wanted.push((
                format!("node-{n}.kubeconfig"),
                Identity::client_cert(format!("system:node:{n}"), &["system:nodes"]),
            ));
        }
        if let Some((id, secret)) = bootstrap.first() {
            wanted.push((
                "bootstrap.kubeconfig".to_owned(),
                Identity::bootstrap_token(id, secret),
            ));
        }
        for (name, identity) in wanted {
            let path = dir.join(&name);
            let yaml = server.kubeconfig(&identity).map_err(failed)?;
            files::write_atomic(&path, yaml.as_bytes(), KEY_MODE, None)
                .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
            log::info!("wrote {}", path.display());
        }
    }
    println!("serving {}", server.url());
    let _ = std::io::stdout().flush();
    let _ = stop.rx.recv();
    server.shutdown();
    log::info!("stopped");
    Ok(())
}
