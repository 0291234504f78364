//! Noticing that a watching client has gone (EOF, TLS `close_notify`, reset) without waking
//! every waiting watch on a timer.
//!
//! A watch waits on the state's condition variable for events; its socket is registered here
//! (Linux: one `epoll` instance, level-triggered, one-shot) and one thread, `csr-api-peers`,
//! waits on all of them at once. When a watch's socket has something to read (its client's
//! close, a reset, or stray bytes), the thread raises that watch's flag and wakes the waiters;
//! the watch then reads what arrived ([`Conn::peer_gone`](super::http::Conn::peer_gone)),
//! ends if its client has gone, else re-arms. An idle server thus makes no wake-ups at all,
//! whatever the number of watches, where a timed check per watch (every 200 ms) cost 25,000
//! wake-ups a second at 5,000 watches — one core of this machine's two.
//!
//! Elsewhere (no `epoll`), or if the `epoll` instance cannot be made, [`Peers::register`]
//! answers `None` and each watch checks its peer on a timer, as before.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Shared;

/// The registry of waiting watches' sockets.
pub(crate) struct Peers {
    #[cfg(target_os = "linux")]
    imp: Option<linux::Epoll>,
}

/// One registered watch: its flag, raised when its socket has something to read.
pub(crate) struct PeerFlag {
    id: u64,
    raised: Arc<AtomicBool>,
}

impl PeerFlag {
    /// Whether the socket had something to read since the last [`Peers::rearm`].
    pub fn raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }
}

impl Peers {
    pub fn new() -> Peers {
        Peers {
            #[cfg(target_os = "linux")]
            imp: linux::Epoll::new()
                .map_err(|e| {
                    log::warn!("csr api server: no epoll, watches check peers on a timer: {e}")
                })
                .ok(),
        }
    }

    /// Registers a waiting watch's socket; `None` when peers are checked on a timer instead.
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    pub fn register(&self, sock: &TcpStream) -> Option<PeerFlag> {
        #[cfg(target_os = "linux")]
        if let Some(e) = &self.imp {
            return e.register(sock);
        }
        None
    }

    /// Lowers the flag and waits for the socket again, after its peer was found still there.
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    pub fn rearm(&self, sock: &TcpStream, flag: &PeerFlag) {
        flag.raised.store(false, Ordering::Release);
        #[cfg(target_os = "linux")]
        if let Some(e) = &self.imp {
            e.rearm(sock, flag);
        }
    }

    /// Forgets a watch that ends (its connection may serve more requests).
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    pub fn unregister(&self, sock: &TcpStream, flag: PeerFlag) {
        #[cfg(target_os = "linux")]
        if let Some(e) = &self.imp {
            e.unregister(sock, &flag);
        }
    }

    /// Whether [`run`](Self::run) has anything to do.
    pub fn active(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.imp.is_some();
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// The `csr-api-peers` thread: raises flags and wakes the watches, until [`stop`](Self::stop).
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    pub fn run(&self, shared: &Shared) {
        #[cfg(target_os = "linux")]
        if let Some(e) = &self.imp {
            e.run(shared);
        }
    }

    /// Ends [`run`](Self::run).
    pub fn stop(&self) {
        #[cfg(target_os = "linux")]
        if let Some(e) = &self.imp {
            e.stop();
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::net::TcpStream;
    use std::os::fd::OwnedFd;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use parking_lot::Mutex;
    use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
    use rustix::event::{EventfdFlags, eventfd};

    use super::PeerFlag;
    use crate::server::Shared;

    /// The event id of the wake-up `eventfd`.
    const WAKE: u64 = u64::MAX;

    pub(super) struct Epoll {
        epoll: OwnedFd,
        wake: OwnedFd,
        next_id: AtomicU64,
        /// Registered watches by id. Lock discipline: held only to insert, remove or look up.
        flags: Mutex<HashMap<u64, Arc<AtomicBool>>>,
        stopping: AtomicBool,
    }

    fn interest() -> EventFlags {
        EventFlags::IN | EventFlags::RDHUP | EventFlags::ONESHOT
    }

    impl Epoll {
        pub(super) fn new() -> std::io::Result<Epoll> {
            let epoll = epoll::create(CreateFlags::CLOEXEC)?;
            let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
            epoll::add(&epoll, &wake, EventData::new_u64(WAKE), EventFlags::IN)?;
            Ok(Epoll {
                epoll,
                wake,
                next_id: AtomicU64::new(0),
                flags: Mutex::new(HashMap::new()),
                stopping: AtomicBool::new(false),
            })
        }

        pub(super) fn register(&self, sock: &TcpStream) -> Option<PeerFlag> {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let raised = Arc::new(AtomicBool::new(false));
            self.flags.lock().insert(id, raised.clone());
            let data = EventData::new_u64(id);
            // A connection that watched before is still registered (under its old id).
            let added = epoll::add(&self.epoll, sock, data, interest())
                .or_else(|_| epoll::modify(&self.epoll, sock, data, interest()));
            if let Err(e) = added {
                log::debug!("csr api server: cannot watch a peer: {e}");
                self.flags.lock().remove(&id);
                return None;
            }
            Some(PeerFlag { id, raised })
        }

        pub(super) fn rearm(&self, sock: &TcpStream, flag: &PeerFlag) {
            let _ = epoll::modify(&self.epoll, sock, EventData::new_u64(flag.id), interest());
        }

        pub(super) fn unregister(&self, sock: &TcpStream, flag: &PeerFlag) {
            let _ = epoll::delete(&self.epoll, sock);
            self.flags.lock().remove(&flag.id);
        }

        pub(super) fn run(&self, shared: &Shared) {
            let mut events = Vec::with_capacity(256);
            while !self.stopping.load(Ordering::Acquire) {
                events.clear();
                if let Err(e) = epoll::wait(
                    &self.epoll,
                    rustix::buffer::spare_capacity(&mut events),
                    None,
                ) {
                    if e == rustix::io::Errno::INTR {
                        continue;
                    }
                    log::warn!("csr api server: epoll_wait failed: {e}");
                    return;
                }
                let mut raised = false;
                {
                    let flags = self.flags.lock();
                    for ev in &events {
                        match ev.data.u64() {
                            WAKE => {}
                            id => {
                                if let Some(f) = flags.get(&id) {
                                    f.store(true, Ordering::Release);
                                    raised = true;
                                }
                            }
                        }
                    }
                }
                if raised {
                    // Taking the lock orders the flags before the waiters' next check: a
                    // watch either saw its flag or is waiting and gets this notification.
                    drop(shared.state.lock());
                    shared.changed.notify_all();
                }
            }
        }

        pub(super) fn stop(&self) {
            self.stopping.store(true, Ordering::Release);
            let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        }
    }
}
