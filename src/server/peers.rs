//! Noticing that a watching client has gone (EOF, TLS `close_notify`, reset) without waking
//! every waiting watch on a timer.
//!
//! A watch's socket is registered here (Linux: one `epoll` instance, level-triggered,
//! one-shot) and one thread, `csr-api-peers`, waits on all of them at once. Each registered
//! watch waits for events on a condition variable of its own ([`PeerFlag::wait_until`]), which
//! every change of the state notifies ([`Peers::wake_all`]). When a watch's socket has
//! something to read (its client's close, a reset, or stray bytes), the thread raises that
//! watch's flag and wakes that watch only; it then reads what arrived
//! ([`Conn::peer_gone`](super::http::Conn::peer_gone)), ends if its client has gone, else
//! re-arms. An idle server thus makes no wake-ups at all, whatever the number of watches, where
//! a timed check per watch (every 200 ms) cost 25,000 wake-ups a second at 5,000 watches — one
//! core of this machine's two; and a client that keeps sending on its watch's connection wakes
//! its own watch, not all of them.
//!
//! Elsewhere (no `epoll`), or if the `epoll` instance cannot be made, [`Peers::register`]
//! answers `None` and each watch checks its peer on a timer, as before.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::state::State;

/// The registry of waiting watches' sockets.
pub(crate) struct Peers {
    #[cfg(target_os = "linux")]
    imp: Option<linux::Epoll>,
}

/// What a registered watch shares with the peers thread.
struct Slot {
    /// Raised when the socket has something to read.
    raised: AtomicBool,
    /// What the watch waits on, with the state's lock: notified by every change of the state
    /// and by its own socket.
    wake: Condvar,
}

/// Registered watches by id. Lock discipline: held only to insert, remove, look up or
/// notify; the state's lock may be held when it is taken, never the other way round.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
type Registry = Arc<Mutex<std::collections::HashMap<u64, Arc<Slot>>>>;

/// One registered watch: its flag, raised when its socket has something to read. Dropping it
/// forgets the watch, however the watch ended (a panic in it included).
pub(crate) struct PeerFlag {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    id: u64,
    slot: Arc<Slot>,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    registry: Registry,
}

impl Drop for PeerFlag {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl PeerFlag {
    /// Whether the socket had something to read since the last [`Peers::rearm`].
    pub fn raised(&self) -> bool {
        self.slot.raised.load(Ordering::Acquire)
    }

    /// Waits with the state's lock until a change of the state, something to read on the
    /// socket, or `until`.
    pub fn wait_until(&self, state: &mut MutexGuard<'_, State>, until: Instant) {
        self.slot.wake.wait_until(state, until);
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
        flag.slot.raised.store(false, Ordering::Release);
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
            e.unregister(sock);
        }
        drop(flag);
    }

    /// Wakes every registered watch (after a change of the state).
    pub fn wake_all(&self) {
        #[cfg(target_os = "linux")]
        if let Some(e) = &self.imp {
            e.wake_all();
        }
    }

    /// Whether [`run`](Self::run) has anything to do.
    pub fn active(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.imp.is_some();
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// The `csr-api-peers` thread: raises flags and wakes their watches, until
    /// [`stop`](Self::stop). `state` is the lock the watches wait with.
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    pub fn run(&self, state: &Mutex<State>) {
        #[cfg(target_os = "linux")]
        if let Some(e) = &self.imp {
            e.run(state);
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
    use std::net::TcpStream;
    use std::os::fd::OwnedFd;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use parking_lot::Mutex;
    use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
    use rustix::event::{EventfdFlags, eventfd};

    use super::{PeerFlag, Registry, Slot};
    use crate::server::state::State;

    /// The event id of the wake-up `eventfd`.
    const WAKE: u64 = u64::MAX;

    pub(super) struct Epoll {
        epoll: OwnedFd,
        wake: OwnedFd,
        next_id: AtomicU64,
        pub(super) flags: Registry,
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
                flags: Registry::default(),
                stopping: AtomicBool::new(false),
            })
        }

        pub(super) fn register(&self, sock: &TcpStream) -> Option<PeerFlag> {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let slot = Arc::new(Slot {
                raised: AtomicBool::new(false),
                wake: parking_lot::Condvar::new(),
            });
            self.flags.lock().insert(id, slot.clone());
            let data = EventData::new_u64(id);
            // A connection that watched before is still registered (under its old id).
            let added = epoll::add(&self.epoll, sock, data, interest())
                .or_else(|_| epoll::modify(&self.epoll, sock, data, interest()));
            if let Err(e) = added {
                log::debug!("csr api server: cannot watch a peer: {e}");
                self.flags.lock().remove(&id);
                return None;
            }
            Some(PeerFlag {
                id,
                slot,
                registry: self.flags.clone(),
            })
        }

        pub(super) fn rearm(&self, sock: &TcpStream, flag: &PeerFlag) {
            let _ = epoll::modify(&self.epoll, sock, EventData::new_u64(flag.id), interest());
        }

        /// Stops watching the socket; the flag, when dropped, leaves the registry.
        pub(super) fn unregister(&self, sock: &TcpStream) {
            let _ = epoll::delete(&self.epoll, sock);
        }

        pub(super) fn run(&self, state: &Mutex<State>) {
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
                let raised: Vec<Arc<Slot>> = {
                    let flags = self.flags.lock();
                    events
                        .iter()
                        .filter_map(|ev| match ev.data.u64() {
                            WAKE => None,
                            id => flags.get(&id).cloned(),
                        })
                        .collect()
                };
                for slot in &raised {
                    slot.raised.store(true, Ordering::Release);
                }
                if !raised.is_empty() {
                    // Taking the lock orders the flags before the waiters' next check: a
                    // watch either saw its flag or is waiting and gets this notification.
                    drop(state.lock());
                    for slot in &raised {
                        slot.wake.notify_all();
                    }
                }
            }
        }

        pub(super) fn wake_all(&self) {
            for slot in self.flags.lock().values() {
                slot.wake.notify_all();
            }
        }

        pub(super) fn stop(&self) {
            self.stopping.store(true, Ordering::Release);
            let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    const BOUND: Duration = Duration::from_secs(10);

    /// A registered watch's stand-in: a thread that waits as a watch does and counts the
    /// times it was woken; when its flag is raised it reads what arrived, re-arms and reports.
    struct Waiter {
        wakes: Arc<AtomicUsize>,
        handled: crossbeam_channel::Receiver<()>,
        thread: std::thread::JoinHandle<()>,
    }

    fn waiter(
        peers: &Arc<Peers>,
        state: &Arc<Mutex<State>>,
        done: &Arc<AtomicBool>,
        mut sock: TcpStream,
    ) -> Waiter {
        let flag = peers.register(&sock).expect("epoll registers the socket");
        let wakes = Arc::new(AtomicUsize::new(0));
        let (tx, handled) = crossbeam_channel::unbounded();
        let (peers, state, done, w) = (peers.clone(), state.clone(), done.clone(), wakes.clone());
        sock.set_nonblocking(true).unwrap();
        let thread = std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                {
                    let mut st = state.lock();
                    if !flag.raised() && !done.load(Ordering::Acquire) {
                        flag.wait_until(&mut st, Instant::now() + 2 * BOUND);
                        w.fetch_add(1, Ordering::AcqRel);
                    }
                }
                if flag.raised() {
                    let mut buf = [0u8; 64];
                    while sock.read(&mut buf).is_ok_and(|n| n > 0) {}
                    peers.rearm(&sock, &flag);
                    let _ = tx.send(());
                }
            }
            peers.unregister(&sock, flag);
        });
        Waiter {
            wakes,
            handled,
            thread,
        }
    }

    /// A watch leaves the registry however it ends: unregistered, or its flag dropped without
    /// that (a watch whose handler panicked).
    #[test]
    fn a_watch_leaves_the_registry_however_it_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let sock = listener.accept().unwrap().0;
        let peers = Peers::new();
        let registered = |peers: &Peers| peers.imp.as_ref().map(|e| e.flags.lock().len());
        let flag = peers.register(&sock).expect("epoll registers the socket");
        assert_eq!(registered(&peers), Some(1));
        peers.unregister(&sock, flag);
        assert_eq!(registered(&peers), Some(0));
        let flag = peers.register(&sock).expect("epoll registers the socket");
        assert_eq!(registered(&peers), Some(1));
        drop(flag);
        assert_eq!(registered(&peers), Some(0));
    }

    /// Bytes on one watch's socket wake that watch only; a change of the state wakes them all.
    #[test]
    fn bytes_on_one_watch_socket_wake_that_watch_only() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let connect = || {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            (client, listener.accept().unwrap().0)
        };
        let ((mut client_a, server_a), (_client_b, server_b)) = (connect(), connect());
        let peers = Arc::new(Peers::new());
        assert!(peers.active());
        let state = Arc::new(Mutex::new(State::new(16)));
        let done = Arc::new(AtomicBool::new(false));
        let a = waiter(&peers, &state, &done, server_a);
        let b = waiter(&peers, &state, &done, server_b);
        let runner = {
            let (peers, state) = (peers.clone(), state.clone());
            std::thread::spawn(move || peers.run(&state))
        };

        // A waits 20 s at a time: each byte noticed within the bound woke it (or was there
        // before it went to wait again).
        for i in 0..20 {
            client_a.write_all(b"x").unwrap();
            a.handled
                .recv_timeout(BOUND)
                .unwrap_or_else(|_| panic!("byte {i} not noticed"));
        }
        assert_eq!(
            b.wakes.load(Ordering::Acquire),
            0,
            "woken by another's socket"
        );

        // A change of the state wakes every watch (B waits 20 s at a time: a wake within the
        // bound is one of these).
        let deadline = Instant::now() + BOUND;
        while b.wakes.load(Ordering::Acquire) == 0 {
            assert!(Instant::now() < deadline, "a change does not wake B");
            drop(state.lock());
            peers.wake_all();
            std::thread::sleep(Duration::from_millis(10));
        }
        done.store(true, Ordering::Release);
        drop(state.lock());
        peers.wake_all();
        a.thread.join().unwrap();
        b.thread.join().unwrap();
        peers.stop();
        runner.join().unwrap();
    }
}
