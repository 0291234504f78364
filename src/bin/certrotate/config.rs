//! `certrotate run --config FILE`: a YAML file whose keys are `run`'s long flag names, turned
//! into flags placed before the command line's own, so that a flag on the command line
//! overrides a single value of the file (and adds to a repeatable one).
//!
//! ```yaml
//! kubeconfig: /etc/certrotate/kubeconfig
//! signer-name: kubernetes.io/kube-apiserver-client
//! cn: my-service
//! org: [my-team]
//! usages: [digital signature, client auth]
//! dir: /var/lib/certrotate
//! cert-file: /etc/my-service/tls.crt
//! once: false
//! ```
//!
//! A key is a flag name with `-` or `_`; a string or number is its value; a list repeats the
//! flag; `true` gives a switch, `false` or null leaves it out. An unknown key is refused by the
//! flag parser, with its name.

use std::ffi::OsString;
use std::path::Path;

use serde_norway::Value;

/// Largest config file read.
const MAX_SIZE: u64 = 1 << 20;

/// `argv` with the flags of the `--config` file of `run` inserted after `run`; unchanged
/// for other commands or without `--config`.
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    if argv.get(1).and_then(|a| a.to_str()) != Some("run") {
        return Ok(argv);
    }
    let mut path = None;
    let mut i = 2;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            path = argv.get(i + 1).cloned();
            break;
        }
        if let Some(p) = a.strip_prefix("--config=") {
            path = Some(OsString::from(p));
            break;
        }
        i += 1;
    }
    let Some(path) = path else {
        return Ok(argv);
    };
    let flags = flags_of(Path::new(&path))?;
    let mut out = Vec::with_capacity(argv.len() + flags.len());
    out.extend_from_slice(&argv[..2]);
    out.extend(flags);
    out.extend_from_slice(&argv[2..]);
    Ok(out)
}

fn flags_of(path: &Path) -> Result<Vec<OsString>, String> {
    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read config file {shown}: {e}"))?;
    if meta.len() > MAX_SIZE {
        return Err(format!(
            "config file {shown} is {} bytes, more than the {MAX_SIZE} allowed",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {shown}: {e}"))?;
    let value: Value = serde_norway::from_str(&text)
        .map_err(|e| format!("config file {shown} is not YAML: {e}"))?;
    let map = match value {
        Value::Mapping(m) => m,
        Value::Null => return Ok(Vec::new()),
        _ => {
            return Err(format!(
                "config file {shown} must be a mapping of flag names to values"
            ));
        }
    };
    let mut flags = Vec::new();
    for (k, v) in map {
        let Value::String(key) = k else {
            return Err(format!(
                "config file {shown}: every key must be a flag name"
            ));
        };
        let name = key.replace('_', "-");
        if name == "config" {
            return Err(format!(
                "config file {shown}: a config file cannot name another"
            ));
        }
        let flag = OsString::from(format!("--{name}"));
        let items = match v {
            Value::Sequence(items) => items,
            Value::Bool(true) => {
                flags.push(flag);
                continue;
            }
            Value::Bool(false) | Value::Null => continue,
            other => vec![other],
        };
        for item in items {
            let s = match item {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(format!(
                        "config file {shown}: the value of {key:?} must be a string, a number, a boolean or a list of them"
                    ));
                }
            };
            flags.push(flag.clone());
            flags.push(OsString::from(s));
        }
    }
    Ok(flags)
}
