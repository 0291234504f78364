//! Fault injection: scripted misbehaviour for tests of CSR clients.
//!
//! Two queues, both first-in first-out and consumed in the order calls arrive, so a test that
//! makes its calls one after another gets the same faults every run:
//! - request faults ([`Fault`]) answer the next N calls of a kind ([`Call`]) with an error, a
//!   malformed body, a delay, a dropped connection, or (watches) a stream that ends after a
//!   number of events;
//! - signer faults ([`SignerFault`]) change what happens to the next N approved CSRs: never
//!   issued, issued with a new object UID, issued for a different key, or issued with a flaw a
//!   TLS peer refuses (NotBefore a year ahead, CA:TRUE, none of the requested usages, a chain
//!   with a CA that did not issue the leaf).
//!
//! Every fault that fires is counted ([`FaultCounts`]), so a test can assert that the fault it
//! set up was the one its client met. Faults apply after authentication: a request without valid
//! credentials is answered 401 and consumes no fault.

use std::time::Duration;

use parking_lot::Mutex;

/// A kind of API call, for targeting request faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Call {
    /// `POST …/certificatesigningrequests`.
    Create,
    /// `GET …/certificatesigningrequests/{name}` (and its subresources).
    Get,
    /// `GET …/certificatesigningrequests` without `watch`.
    List,
    /// `GET …/certificatesigningrequests?watch=true`.
    Watch,
    /// `PUT …/{name}` (metadata update).
    Update,
    /// `PUT …/{name}/approval`.
    Approval,
    /// `PUT …/{name}/status`.
    Status,
    /// `DELETE …/{name}`.
    Delete,
    /// `PATCH …/{name}` and its `/approval` and `/status` subresources.
    Patch,
    /// `DELETE …/certificatesigningrequests` (deletecollection).
    DeleteCollection,
    /// Any of the above (discovery and `/version` are never faulted).
    Any,
}

/// What a request fault does to the call it hits.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this HTTP status code and a `Status` body (reason from the code, as
    /// apimachinery's `NewGenericServerResponse`).
    Status(u16),
    /// Answer with this HTTP status code and this plain-text body, which is not a `Status` (what a
    /// proxy or an unregistered path answers; client-go adds the cause `UnexpectedServerResponse`).
    Raw(u16, String),
    /// Answer 200 with a body that is not valid JSON; on a watch, one event line that is not valid
    /// JSON, then the end of the stream.
    Malformed,
    /// Answer normally, after this much real time (network time, not the server's clock).
    Delay(Duration),
    /// On a watch: end the stream cleanly after this many events (bookmarks included). Other
    /// calls are answered normally.
    CloseWatchAfter(usize),
    /// Close the connection without answering.
    Disconnect,
}

/// What a signer fault does to the next approved CSR the signer handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignerFault {
    /// Leave it approved without a certificate, forever (a signer that is down).
    NeverIssue,
    /// Issue the certificate and, in the same update, give the object a new `metadata.uid` (as if
    /// it had been deleted and re-created under the same name).
    ReplaceUid,
    /// Issue a certificate with the CSR's subject but for a freshly generated key, not the
    /// requester's.
    WrongKey,
    /// Issue a certificate whose NotBefore is one year after the signing time, as a signer whose
    /// clock runs a year ahead would.
    NotYetValid,
    /// Issue a certificate with basic constraints CA:TRUE.
    CaLeaf,
    /// Issue a certificate whose key usage is cRLSign only and whose extended key usage is
    /// codeSigning only, whatever the CSR asked for.
    UnrequestedUsages,
    /// Return the certificate followed by a CA certificate that did not issue it (a broken
    /// chain).
    UnrelatedChain,
}

/// How many faults of each kind have fired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultCounts {
    /// [`Fault::Status`] answers sent.
    pub status: u64,
    /// [`Fault::Raw`] answers sent.
    pub raw: u64,
    /// [`Fault::Malformed`] answers sent.
    pub malformed: u64,
    /// [`Fault::Delay`] answers delayed.
    pub delayed: u64,
    /// Watch streams ended by [`Fault::CloseWatchAfter`].
    pub watches_closed: u64,
    /// Connections dropped by [`Fault::Disconnect`].
    pub disconnected: u64,
    /// CSRs left unissued by [`SignerFault::NeverIssue`].
    pub never_issued: u64,
    /// UIDs replaced by [`SignerFault::ReplaceUid`].
    pub uids_replaced: u64,
    /// Certificates issued for a wrong key by [`SignerFault::WrongKey`].
    pub wrong_keys: u64,
    /// Certificates issued with a flaw a TLS peer refuses: [`SignerFault::NotYetValid`],
    /// [`SignerFault::CaLeaf`], [`SignerFault::UnrequestedUsages`],
    /// [`SignerFault::UnrelatedChain`].
    pub flawed_certificates: u64,
}

impl FaultCounts {
    /// The sum of all counters.
    pub fn total(&self) -> u64 {
        self.status
            + self.raw
            + self.malformed
            + self.delayed
            + self.watches_closed
            + self.disconnected
            + self.never_issued
            + self.uids_replaced
            + self.wrong_keys
            + self.flawed_certificates
    }
}

#[derive(Default)]
struct State {
    requests: Vec<(Call, Fault, usize)>,
    signer: Vec<(SignerFault, usize)>,
    counts: FaultCounts,
}

/// The fault queues and counters. Lock discipline: one short lock per call; never held across
/// I/O.
#[derive(Default)]
pub(crate) struct Faults {
    state: Mutex<State>,
}

impl Faults {
    pub fn inject(&self, call: Call, fault: Fault, times: usize) {
        if times > 0 {
            self.state.lock().requests.push((call, fault, times));
        }
    }

    pub fn inject_signer(&self, fault: SignerFault, times: usize) {
        if times > 0 {
            self.state.lock().signer.push((fault, times));
        }
    }

    pub fn clear(&self) {
        let mut st = self.state.lock();
        st.requests.clear();
        st.signer.clear();
    }

    pub fn counts(&self) -> FaultCounts {
        self.state.lock().counts
    }

    /// Takes the next fault for a call of kind `call`. `CloseWatchAfter` is only taken by
    /// watches. Counting of `Status`, `Raw`, `Malformed`, `Delay` and `Disconnect` happens here;
    /// a watch close is counted by [`Faults::count_watch_closed`] when it happens.
    pub fn take(&self, call: Call) -> Option<Fault> {
        let mut st = self.state.lock();
        let i = st.requests.iter().position(|(c, f, _)| {
            (*c == call || *c == Call::Any)
                && (call == Call::Watch || !matches!(f, Fault::CloseWatchAfter(_)))
        })?;
        let fault = st.requests[i].1.clone();
        st.requests[i].2 -= 1;
        if st.requests[i].2 == 0 {
            st.requests.remove(i);
        }
        let c = &mut st.counts;
        match fault {
            Fault::Status(_) => c.status += 1,
            Fault::Raw(..) => c.raw += 1,
            Fault::Malformed => c.malformed += 1,
            Fault::Delay(_) => c.delayed += 1,
            Fault::Disconnect => c.disconnected += 1,
            Fault::CloseWatchAfter(_) => {}
        }
        Some(fault)
    }

    pub fn count_watch_closed(&self) {
        self.state.lock().counts.watches_closed += 1;
    }

    /// Takes the next signer fault and counts it.
    pub fn take_signer(&self) -> Option<SignerFault> {
        let mut st = self.state.lock();
        let first = st.signer.first_mut()?;
        let fault = first.0;
        first.1 -= 1;
        if first.1 == 0 {
            st.signer.remove(0);
        }
        let c = &mut st.counts;
        match fault {
            SignerFault::NeverIssue => c.never_issued += 1,
            SignerFault::ReplaceUid => c.uids_replaced += 1,
            SignerFault::WrongKey => c.wrong_keys += 1,
            SignerFault::NotYetValid
            | SignerFault::CaLeaf
            | SignerFault::UnrequestedUsages
            | SignerFault::UnrelatedChain => c.flawed_certificates += 1,
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_in_order_and_are_counted() {
        let f = Faults::default();
        f.inject(Call::Create, Fault::Status(503), 2);
        f.inject(Call::Any, Fault::Malformed, 1);
        f.inject(Call::Any, Fault::CloseWatchAfter(1), 1);
        assert_eq!(f.take(Call::Get), Some(Fault::Malformed));
        assert_eq!(f.take(Call::Get), None, "close-after is for watches only");
        assert_eq!(f.take(Call::Create), Some(Fault::Status(503)));
        assert_eq!(f.take(Call::Create), Some(Fault::Status(503)));
        assert_eq!(f.take(Call::Create), None);
        assert_eq!(f.take(Call::Watch), Some(Fault::CloseWatchAfter(1)));
        f.inject_signer(SignerFault::WrongKey, 1);
        assert_eq!(f.take_signer(), Some(SignerFault::WrongKey));
        assert_eq!(f.take_signer(), None);
        let c = f.counts();
        assert_eq!((c.status, c.malformed, c.wrong_keys), (2, 1, 1));
        assert_eq!(c.total(), 4);
    }
}
