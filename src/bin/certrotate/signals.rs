//! SIGTERM and SIGINT, turned into a channel message and a flag (through `signal-hook`, which
//! does the async-signal-safe part).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Receiver;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// A stop request: `flag` turns true and `rx` receives one message per signal.
#[derive(Clone)]
pub struct Stop {
    /// Receives the signal number of each SIGTERM/SIGINT.
    pub rx: Receiver<i32>,
    flag: Arc<AtomicBool>,
}

impl Stop {
    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Installs the handlers. Call it before anything slow, so that a signal during start-up is
/// not lost (it then takes the default action, which ends the process at once).
pub fn install() -> std::io::Result<Stop> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let name = signal_hook::low_level::signal_name(signal).unwrap_or("signal");
                log::info!("received {name}, stopping");
                set.store(true, Ordering::SeqCst);
                if tx.send(signal).is_err() {
                    return;
                }
            }
        })?;
    Ok(Stop { rx, flag })
}
