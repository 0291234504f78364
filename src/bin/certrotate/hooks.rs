//! What runs after each new certificate: a command (`--exec`) and a signal (`--signal`).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::signals::Stop;

/// How often a running command is checked for exit, timeout or a stop request.
const POLL: Duration = Duration::from_millis(10);

/// Signals that a process cannot catch, block or ignore: sent on each rotation they would end
/// (KILL) or freeze (STOP) the program instead of telling it about its new certificate.
const UNCATCHABLE: [Signal; 2] = [Signal::KILL, Signal::STOP];

/// A signal `--signal` takes. The rule, one for every spelling:
///
/// - a name of the platform's standard signals as `signal-hook` lists them (`SIGHUP`,
///   `SIGUSR1`, ...; see [`accepted`]), with or without the `SIG` prefix, in any case: `HUP`,
///   `SIGHUP`, `hup`, `sigHup`;
/// - or the number of one of those signals on this platform, decimal digits only (`1`, `10`),
///   as `kill -l` prints it;
/// - except SIGKILL and SIGSTOP, which a process cannot catch.
///
/// Nothing else: no whitespace, no sign, no aliases the list lacks (`IOT`, `POLL`), no
/// real-time signals (`RTMIN+1`).
#[derive(Copy, Clone, Debug)]
pub struct SignalSpec {
    /// The signal.
    pub signal: Signal,
    /// Its name, `SIGHUP`.
    pub name: &'static str,
}

/// Every signal `--signal` takes, in number order.
pub fn accepted() -> impl Iterator<Item = SignalSpec> {
    (1..=64).filter_map(|n| {
        let signal = Signal::from_named_raw(n)?;
        let name = signal_hook::low_level::signal_name(n)?;
        (!UNCATCHABLE.contains(&signal)).then_some(SignalSpec { signal, name })
    })
}

/// The help text of `--signal`, with the names this platform has.
pub fn help() -> String {
    let names: Vec<&str> = accepted()
        .map(|s| s.name.strip_prefix("SIG").unwrap_or(s.name))
        .collect();
    format!(
        "Signal to send after each new certificate, to --pid or to the process named by \
         --pid-file. A name, with or without SIG, in any case, or its number on this platform: {} \
         (SIGKILL and SIGSTOP are refused: a process cannot catch them)",
        names.join(" ")
    )
}

impl std::str::FromStr for SignalSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<SignalSpec, String> {
        let found = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let n = s.parse::<i32>().ok();
            let found = n.and_then(|n| accepted().find(|a| a.signal.as_raw() == n));
            if found.is_none()
                && let Some(u) = n.and_then(|n| UNCATCHABLE.iter().find(|u| u.as_raw() == n))
            {
                return Err(uncatchable(s, *u));
            }
            found
        } else {
            let upper = s.to_ascii_uppercase();
            let wanted = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            let found = accepted().find(|a| a.name == wanted);
            if found.is_none()
                && let Some(u) = UNCATCHABLE
                    .iter()
                    .find(|u| signal_hook::low_level::signal_name(u.as_raw()) == Some(&wanted))
            {
                return Err(uncatchable(s, *u));
            }
            found
        };
        found.ok_or_else(|| {
            let names: Vec<&str> = accepted()
                .map(|a| a.name.strip_prefix("SIG").unwrap_or(a.name))
                .collect();
            format!(
                "unknown signal {s:?}: give one of {} (with or without SIG, any case) or its number",
                names.join(" ")
            )
        })
    }
}

fn uncatchable(given: &str, signal: Signal) -> String {
    let name = signal_hook::low_level::signal_name(signal.as_raw()).unwrap_or("this signal");
    let effect = if signal == Signal::KILL {
        "end"
    } else {
        "freeze"
    };
    format!(
        "signal {given:?} is {name}, which a process cannot catch: it would {effect} the \
         program instead of telling it about the new certificate (use --exec to restart it)"
    )
}

/// Where the process to signal is found.
#[derive(Clone, Debug)]
pub enum Target {
    /// A fixed process id (`--pid`).
    Pid(i32),
    /// A file holding the process id, read at each delivery (`--pid-file`), so that a
    /// restarted process is found.
    PidFile(PathBuf),
}

/// The configured hooks and their counters.
#[derive(Debug, Default)]
pub struct Hooks {
    /// Shell command run with `/bin/sh -c`.
    pub exec: Option<String>,
    /// How long the command may run before it and its process group are killed.
    pub exec_timeout: Duration,
    /// Signal to send, and to whom.
    pub signal: Option<(SignalSpec, Target)>,
    /// Hook runs (command runs plus signals sent or attempted).
    pub runs: AtomicU64,
    /// Hook runs that failed (non-zero exit, killed, timed out, could not start; a signal that
    /// could not be sent).
    pub failures: AtomicU64,
}

/// How the hooks of one delivery went.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every hook succeeded (or none is configured).
    Ok,
    /// At least one failed; the text says which and why.
    Failed(String),
    /// A stop was requested while the command ran; it was killed.
    Interrupted,
}

impl Hooks {
    /// Whether any hook is configured.
    pub fn any(&self) -> bool {
        self.exec.is_some() || self.signal.is_some()
    }

    /// Runs the command (to its end, its timeout, or a stop request), then sends the signal.
    /// `env` is added to the command's environment. Never runs two commands at once: the caller
    /// calls it from one thread.
    pub fn run(&self, env: &[(&str, String)], stop: &Stop) -> Outcome {
        let mut failures = Vec::new();
        if let Some(cmd) = &self.exec {
            self.runs.fetch_add(1, Ordering::Relaxed);
            match self.exec(cmd, env, stop) {
                Ok(()) => {}
                Err(ExecError::Interrupted) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Interrupted;
                }
                Err(ExecError::Failed(why)) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    failures.push(why);
                }
            }
        }
        if let Some((spec, target)) = &self.signal {
            self.runs.fetch_add(1, Ordering::Relaxed);
            if let Err(why) = send(*spec, target) {
                log::warn!("{why}");
                self.failures.fetch_add(1, Ordering::Relaxed);
                failures.push(why);
            }
        }
        if failures.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Failed(failures.join("; "))
        }
    }

    fn exec(&self, cmd: &str, env: &[(&str, String)], stop: &Stop) -> Result<(), ExecError> {
        let started = Instant::now();
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            // Its own process group, so that a timeout kills what the shell started too.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                let why = format!("exec hook could not start /bin/sh: {e}");
                log::warn!("{why}");
                ExecError::Failed(why)
            })?;
        let pid = child.id();
        log::info!("exec hook started (pid {pid})");
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let took = started.elapsed();
                    return if status.success() {
                        log::info!("exec hook exited 0 after {took:.1?}");
                        Ok(())
                    } else {
                        let why = match (status.code(), status.signal()) {
                            (Some(code), _) => format!("exec hook exited {code} after {took:.1?}"),
                            (None, Some(sig)) => format!(
                                "exec hook was killed by {} after {took:.1?}",
                                signal_hook::low_level::signal_name(sig).unwrap_or("a signal")
                            ),
                            _ => format!("exec hook ended with {status} after {took:.1?}"),
                        };
                        log::warn!("{why}");
                        Err(ExecError::Failed(why))
                    };
                }
                Ok(None) => {}
                Err(e) => {
                    kill_group(pid);
                    let _ = child.wait();
                    let why = format!("exec hook could not be waited for: {e}");
                    log::warn!("{why}");
                    return Err(ExecError::Failed(why));
                }
            }
            if stop.requested() {
                kill_group(pid);
                let _ = child.wait();
                log::warn!("exec hook killed: stopping");
                return Err(ExecError::Interrupted);
            }
            if started.elapsed() >= self.exec_timeout {
                kill_group(pid);
                let _ = child.wait();
                let why = format!(
                    "exec hook timed out after {:?} and was killed",
                    self.exec_timeout
                );
                log::warn!("{why}");
                return Err(ExecError::Failed(why));
            }
            std::thread::sleep(POLL);
        }
    }
}

enum ExecError {
    Failed(String),
    Interrupted,
}

fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
}

fn send(spec: SignalSpec, target: &Target) -> Result<(), String> {
    let raw = match target {
        Target::Pid(p) => *p,
        Target::PidFile(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!("signal hook: cannot read pid file {}: {e}", path.display())
            })?;
            text.trim().parse::<i32>().map_err(|_| {
                format!(
                    "signal hook: pid file {} does not hold a process id",
                    path.display()
                )
            })?
        }
    };
    let pid = Pid::from_raw(raw)
        .filter(|_| raw > 0)
        .ok_or_else(|| format!("signal hook: {raw} is not a process id"))?;
    rustix::process::kill_process(pid, spec.signal)
        .map_err(|e| format!("signal hook: cannot send {} to pid {raw}: {e}", spec.name))?;
    log::info!("signal hook: sent {} to pid {raw}", spec.name);
    Ok(())
}
