//! The object store: CSRs by name, the global resource version, and a bounded history of change
//! events that watches replay from (the apiserver's watch cache, in miniature).
//!
//! Every change bumps the resource version by one, stamps it on the changed object and appends an
//! event `(rv, type, object)` to the history. The history keeps at most `history_limit` events;
//! when older ones are dropped, `compacted` remembers the newest dropped version, and a watch
//! that asks to resume from a version at or below it is told `410 Expired` (too old), exactly as a
//! client of a compacted etcd is. Memory is therefore bounded by the live objects plus
//! `history_limit` events, whatever the number of changes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};

use crate::csr::api::CertificateSigningRequest;
use crate::pki::ParsedCsr;

/// A watch event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub object: Arc<CertificateSigningRequest>,
    /// The event's line as a watch sends it in plain JSON, per API version (`v1`, `v1beta1`),
    /// made once by the first watch that sends it and shared by every other: the line does not
    /// depend on the watcher.
    pub plain: Arc<[OnceLock<Vec<u8>>; 2]>,
}

/// A stored CSR with its parsed request (parsed once, at create).
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub object: Arc<CertificateSigningRequest>,
    pub parsed: Arc<ParsedCsr>,
}

/// The server's state. Lock discipline: lives behind the server's one `Mutex`, paired with a
/// `Condvar` that is notified after every change; never held across network I/O or signing.
pub(crate) struct State {
    pub objects: BTreeMap<String, Stored>,
    /// The newest resource version (0 before any change).
    pub rv: u64,
    /// Events in resource-version order. Invariant: at most `history_limit` long, and holds
    /// every event with `rv > compacted`.
    pub history: VecDeque<Event>,
    /// The newest resource version no longer in `history` (0 when nothing was dropped).
    pub compacted: u64,
    pub history_limit: usize,
    /// Bumped by `CsrApiServer::bookmark`; watches that allow bookmarks send one when it moves.
    pub bookmark_epoch: u64,
    /// Set once at shutdown; every waiter leaves when it sees it.
    pub stopping: bool,
}

impl State {
    pub fn new(history_limit: usize) -> State {
        State {
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            compacted: 0,
            history_limit: history_limit.max(1),
            bookmark_epoch: 0,
            stopping: false,
        }
    }

    /// Records a change: bumps the resource version, stamps it on `object`, stores (or, for
    /// `Deleted`, removes) it, and appends the event. Returns the stamped object.
    pub fn commit(
        &mut self,
        kind: EventType,
        mut object: CertificateSigningRequest,
        parsed: Arc<ParsedCsr>,
    ) -> Arc<CertificateSigningRequest> {
        self.rv += 1;
        object.metadata.resource_version = Some(self.rv.to_string());
        let name = object.metadata.name.clone().unwrap_or_default();
        let object = Arc::new(object);
        match kind {
            EventType::Deleted => {
                self.objects.remove(&name);
            }
            EventType::Added | EventType::Modified => {
                self.objects.insert(
                    name,
                    Stored {
                        object: object.clone(),
                        parsed,
                    },
                );
            }
        }
        self.history.push_back(Event {
            rv: self.rv,
            kind,
            object: object.clone(),
            plain: Arc::default(),
        });
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        object
    }

    /// Drops the whole history, as etcd's compaction at the current revision does: a watch
    /// that resumes from any earlier resource version is then told `410 Expired`. Returns the
    /// revision compacted at.
    pub fn compact(&mut self) -> u64 {
        self.history.clear();
        self.compacted = self.rv;
        self.rv
    }

    /// The events after `rv`, or `Err(oldest)` when some of them were already dropped from the
    /// history (the caller answers 410 Expired). `oldest` is the oldest version still available.
    pub fn events_after(&self, rv: u64) -> Result<impl Iterator<Item = &Event>, u64> {
        if rv < self.compacted {
            return Err(self.compacted + 1);
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Ok(self.history.range(start..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(name: &str) -> CertificateSigningRequest {
        let mut c = CertificateSigningRequest::default();
        c.metadata.name = Some(name.into());
        c
    }

    fn parsed() -> Arc<ParsedCsr> {
        Arc::new(ParsedCsr {
            subject_der: Vec::new(),
            common_name: String::new(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            email_addresses: Vec::new(),
            uris: Vec::new(),
            san_der: None,
            public_key_der: Vec::new(),
        })
    }

    #[test]
    fn compaction_expires_every_earlier_version_and_keeps_the_current_one() {
        let mut s = State::new(10);
        for i in 0..3 {
            s.commit(EventType::Added, csr(&format!("c{i}")), parsed());
        }
        assert_eq!(s.compact(), 3);
        assert_eq!(s.history.len(), 0);
        assert_eq!(
            s.events_after(2).err(),
            Some(4),
            "an earlier version is gone"
        );
        assert_eq!(s.events_after(3).map(|e| e.count()).ok(), Some(0));
        s.commit(EventType::Added, csr("c3"), parsed());
        assert_eq!(s.events_after(3).map(|e| e.count()).ok(), Some(1));
    }

    #[test]
    fn history_is_bounded_and_old_versions_expire() {
        let mut s = State::new(3);
        for i in 0..5 {
            s.commit(EventType::Added, csr(&format!("c{i}")), parsed());
        }
        assert_eq!(s.rv, 5);
        assert_eq!(s.history.len(), 3);
        assert_eq!(s.compacted, 2);
        assert_eq!(s.events_after(1).err(), Some(3), "rv 2 was dropped");
        let rvs: Vec<u64> = s.events_after(2).unwrap().map(|e| e.rv).collect();
        assert_eq!(rvs, [3, 4, 5]);
        assert_eq!(s.events_after(5).unwrap().count(), 0);
        let gone = s.commit(EventType::Deleted, csr("c0"), parsed());
        assert_eq!(gone.metadata.resource_version.as_deref(), Some("6"));
        assert!(!s.objects.contains_key("c0"));
        assert_eq!(
            s.objects["c4"].object.metadata.resource_version.as_deref(),
            Some("5")
        );
    }
}
