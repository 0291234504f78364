//! `certrotate status DIR`: the stored pair, read as the manager would, and what is wrong.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use certrotate::Certificate;
use certrotate::pki::{fmt_duration, fmt_time};
use certrotate::schedule::{DEADLINE_MAX_FRACTION, DEADLINE_MIN_FRACTION};
use clap::Args;
use serde_json::{Value, json};

use crate::Failure;

/// Flags of `certrotate status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Directory of the pairs (kubelet layout).
    dir: PathBuf,
    /// Pair name prefix (kubelet: kubelet-client, kubelet-server).
    #[arg(long, default_value = "certrotate")]
    prefix: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `certrotate status`: prints the report; exit 0 with no problem, 1 with problems.
pub fn main(args: StatusArgs) -> Result<(), Failure> {
    let report = inspect(&args.dir, &args.prefix, SystemTime::now());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_text(&report);
    }
    let problems = report["problems"].as_array().map_or(0, Vec::len);
    if problems == 0 {
        Ok(())
    } else {
        Err(Failure::Problems)
    }
}

fn inspect(dir: &Path, prefix: &str, now: SystemTime) -> Value {
    let current = dir.join(format!("{prefix}-current.pem"));
    let mut problems: Vec<String> = Vec::new();
    let mut link_target = Value::Null;
    let mut certificate = Value::Null;
    let mut file_mode = Value::Null;
    match fs::symlink_metadata(&current) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            problems.push(format!(
                "{} does not exist: no certificate stored",
                current.display()
            ));
        }
        Err(e) => problems.push(format!("cannot read {}: {e}", current.display())),
        Ok(meta) => {
            if meta.file_type().is_symlink() {
                match fs::read_link(&current) {
                    Ok(t) => {
                        link_target = json!(t.display().to_string());
                        if fs::metadata(&current).is_err() {
                            problems.push(format!(
                                "{} is a dangling link: {} does not exist",
                                current.display(),
                                t.display()
                            ));
                        }
                    }
                    Err(e) => problems.push(format!("cannot read link {}: {e}", current.display())),
                }
            } else if meta.is_file() {
                problems.push(format!(
                    "{} is a regular file, not a link to a timestamped pair (the next rotation moves it aside to a backup)",
                    current.display()
                ));
            } else {
                problems.push(format!(
                    "{} is neither a link nor a file",
                    current.display()
                ));
            }
            if let Ok(meta) = fs::metadata(&current) {
                let mode = meta.mode() & 0o7777;
                file_mode = json!(format!("{mode:04o}"));
                if mode & 0o077 != 0 {
                    problems.push(format!(
                        "the pair file holds a private key and is readable by others (mode {mode:04o}, want 0600)"
                    ));
                }
                match fs::read(&current) {
                    Ok(pem) => match Certificate::from_pair_pem(&pem) {
                        Ok(cert) => certificate = describe(&cert, now, &mut problems),
                        Err(e) => problems.push(format!(
                            "{} does not hold a usable pair: {e}",
                            current.display()
                        )),
                    },
                    Err(e) => problems.push(format!("cannot read {}: {e}", current.display())),
                }
            }
        }
    }
    let updated = dir.join(format!("{prefix}-updated.pem"));
    if fs::symlink_metadata(&updated).is_ok() {
        problems.push(format!(
            "{} exists: an update was interrupted (the next start repairs a link; a file needs a person)",
            updated.display()
        ));
    }
    let pending = dir.join(format!("{prefix}-pending.key"));
    json!({
        "dir": dir.display().to_string(),
        "prefix": prefix,
        "current": current.display().to_string(),
        "link_target": link_target,
        "file_mode": file_mode,
        "pending_csr_key": fs::symlink_metadata(&pending).is_ok(),
        "certificate": certificate,
        "problems": problems,
    })
}

fn describe(cert: &Certificate, now: SystemTime, problems: &mut Vec<String>) -> Value {
    let nb = cert.not_before();
    let na = cert.not_after();
    let lifetime = na.duration_since(nb).unwrap_or_default();
    let window_start = nb + lifetime.mul_f64(DEADLINE_MIN_FRACTION);
    let window_end = nb + lifetime.mul_f64(DEADLINE_MAX_FRACTION);
    let left = na.duration_since(now).ok();
    if left.is_none() {
        problems.push(format!("the certificate expired at {}", fmt_time(na)));
    }
    if cert.is_not_yet_valid_at(now) {
        problems.push(format!(
            "the certificate is not valid before {}",
            fmt_time(nb)
        ));
    }
    json!({
        "serial": cert.serial_hex(),
        "common_name": cert.common_name(),
        "organizations": cert.organizations(),
        "dns_names": cert.dns_names(),
        "ip_addresses": cert.ip_addresses().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "not_before": fmt_time(nb),
        "not_after": fmt_time(na),
        "seconds_left": left.map_or(0, |d| d.as_secs()),
        "time_left": fmt_duration(left.unwrap_or(Duration::ZERO)),
        "rotation_window": [fmt_time(window_start), fmt_time(window_end)],
        "key_algorithm": cert.private_key().algorithm().to_string(),
        "chain_length": cert.chain().len(),
    })
}

fn print_text(r: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let list = |v: &Value| {
        let items: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
    };
    println!("current:          {}", s(&r["current"]));
    if !r["link_target"].is_null() {
        println!("links to:         {}", s(&r["link_target"]));
    }
    if !r["file_mode"].is_null() {
        println!("file mode:        {}", s(&r["file_mode"]));
    }
    let c = &r["certificate"];
    if !c.is_null() {
        println!("serial:           {}", s(&c["serial"]));
        println!("subject CN:       {}", s(&c["common_name"]));
        println!("subject O:        {}", list(&c["organizations"]));
        println!("DNS SANs:         {}", list(&c["dns_names"]));
        println!("IP SANs:          {}", list(&c["ip_addresses"]));
        println!("key:              {}", s(&c["key_algorithm"]));
        println!("NotBefore:        {}", s(&c["not_before"]));
        println!("NotAfter:         {}", s(&c["not_after"]));
        println!("time left:        {}", s(&c["time_left"]));
        println!(
            "rotation window:  {} .. {}",
            s(&c["rotation_window"][0]),
            s(&c["rotation_window"][1])
        );
    }
    if r["pending_csr_key"].as_bool() == Some(true) {
        println!("pending CSR:      a key waits for its certificate");
    }
    match r["problems"].as_array() {
        Some(p) if !p.is_empty() => {
            println!("problems:");
            for p in p {
                println!("  - {}", p.as_str().unwrap_or_default());
            }
        }
        _ => println!("problems:         none"),
    }
}
