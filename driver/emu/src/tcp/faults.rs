//! Fault injection on the wire: what the target does wrong on purpose, set at run time
//! through [`TcpFaults`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hugepages::sync::lock;
use nvme_spec::tcp::FatalErrorStatus;

use super::Shared;

/// A malformed PDU the target sends in place of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedPdu {
    /// A PDU of a reserved type (0Ah) with an otherwise plausible 24-byte header.
    WrongType,
    /// A Response Capsule whose HLEN is 30 instead of 24.
    WrongHlen,
    /// A Response Capsule whose PLEN claims 2 GiB.
    PlenTooLarge,
}

/// How often each fault has fired since the target started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFaultCounts {
    /// Connections dropped by [`TcpFaults::drop_after`].
    pub dropped: u64,
    /// PDUs sent with a corrupted header digest.
    pub header_digests: u64,
    /// PDUs sent with a corrupted data digest.
    pub data_digests: u64,
    /// Malformed PDUs sent.
    pub malformed: u64,
    /// C2HTermReq PDUs sent by [`TcpFaults::terminate`].
    pub terminations: u64,
    /// Connections that went silent because of [`TcpFaults::hang`].
    pub hung: u64,
}

/// A one-shot fault waiting for the PDU it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Armed {
    DropAfter {
        qid: u16,
        left: u32,
    },
    HeaderDigest {
        qid: Option<u16>,
    },
    DataDigest {
        qid: Option<u16>,
    },
    Malformed {
        qid: Option<u16>,
        kind: MalformedPdu,
    },
    Terminate {
        qid: Option<u16>,
        fes: FatalErrorStatus,
    },
}

/// What replaces a command's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseFault {
    Malformed(MalformedPdu),
    Terminate(FatalErrorStatus),
}

#[derive(Default)]
pub(crate) struct FaultState {
    /// Set whenever `armed` may be non-empty, so the common case takes no lock.
    any: AtomicBool,
    armed: Mutex<Vec<Armed>>,
    pub hung: AtomicBool,
    pub refused: AtomicBool,
    dropped: AtomicU64,
    header_digests: AtomicU64,
    data_digests: AtomicU64,
    malformed: AtomicU64,
    terminations: AtomicU64,
    pub hung_count: AtomicU64,
}

fn applies(want: Option<u16>, qid: Option<u16>) -> bool {
    want.is_none() || want == qid
}

impl FaultState {
    fn arm(&self, a: Armed) {
        let mut armed = lock(&self.armed);
        if let Armed::DropAfter { qid, .. } = a {
            armed.retain(|x| !matches!(x, Armed::DropAfter { qid: q, .. } if *q == qid));
        }
        armed.push(a);
        self.any.store(true, Ordering::Release);
    }

    /// Takes the first armed fault `pick` accepts.
    fn take<T>(&self, mut pick: impl FnMut(&mut Armed) -> Option<T>) -> Option<T> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut armed = lock(&self.armed);
        let mut found = None;
        let mut remove = None;
        for (i, a) in armed.iter_mut().enumerate() {
            if let Some(t) = pick(a) {
                found = Some(t);
                remove = Some(i);
                break;
            }
        }
        if let Some(i) = remove {
            armed.remove(i);
        }
        if armed.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        found
    }

    /// A command arrived on queue `qid`: whether its connection must be dropped now.
    pub(crate) fn drop_now(&self, qid: u16) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut armed = lock(&self.armed);
        let mut hit = None;
        for (i, a) in armed.iter_mut().enumerate() {
            if let Armed::DropAfter { qid: q, left } = a {
                if *q == qid {
                    if *left == 0 {
                        hit = Some(i);
                    } else {
                        *left -= 1;
                    }
                    break;
                }
            }
        }
        if let Some(i) = hit {
            armed.remove(i);
            if armed.is_empty() {
                self.any.store(false, Ordering::Release);
            }
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Whether the next header digest sent on queue `qid` is to be corrupted.
    pub(crate) fn corrupt_header(&self, qid: Option<u16>) -> bool {
        let hit = self
            .take(|a| match *a {
                Armed::HeaderDigest { qid: q } if applies(q, qid) => Some(()),
                _ => None,
            })
            .is_some();
        if hit {
            self.header_digests.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Whether the next data digest sent on queue `qid` is to be corrupted.
    pub(crate) fn corrupt_data(&self, qid: Option<u16>) -> bool {
        let hit = self
            .take(|a| match *a {
                Armed::DataDigest { qid: q } if applies(q, qid) => Some(()),
                _ => None,
            })
            .is_some();
        if hit {
            self.data_digests.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// What replaces the next answer on queue `qid`, if anything.
    pub(crate) fn response(&self, qid: Option<u16>) -> Option<ResponseFault> {
        let f = self.take(|a| match *a {
            Armed::Malformed { qid: q, kind } if applies(q, qid) => {
                Some(ResponseFault::Malformed(kind))
            }
            Armed::Terminate { qid: q, fes } if applies(q, qid) => {
                Some(ResponseFault::Terminate(fes))
            }
            _ => None,
        })?;
        match f {
            ResponseFault::Malformed(_) => &self.malformed,
            ResponseFault::Terminate(_) => &self.terminations,
        }
        .fetch_add(1, Ordering::Relaxed);
        Some(f)
    }
}

/// The target's fault injection handle (cloning gives another handle to the same
/// faults). One-shot faults fire once, on the first PDU they apply to; `qid` `None`
/// means any queue of any connection.
#[derive(Clone)]
pub struct TcpFaults {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for TcpFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpFaults")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl TcpFaults {
    fn state(&self) -> &FaultState {
        &self.shared.faults
    }

    /// Closes the connection of queue `qid` (of whichever controller) when a command
    /// arrives there after `commands` more commands (Keep Alive included): those are
    /// answered, the next one is not, and the socket is shut down.
    pub fn drop_after(&self, qid: u16, commands: u32) {
        self.state().arm(Armed::DropAfter {
            qid,
            left: commands,
        });
    }

    /// Corrupts the header digest of the next PDU with a header digest sent on queue
    /// `qid` (digests must have been negotiated for it to fire).
    pub fn corrupt_header_digest(&self, qid: Option<u16>) {
        self.state().arm(Armed::HeaderDigest { qid });
    }

    /// Corrupts the data digest of the next C2HData PDU sent on queue `qid` (data
    /// digests must have been negotiated for it to fire).
    pub fn corrupt_data_digest(&self, qid: Option<u16>) {
        self.state().arm(Armed::DataDigest { qid });
    }

    /// Sends a malformed PDU in place of the next command's answer (its C2HData and
    /// Response Capsule) on queue `qid`; the connection stays open.
    pub fn malformed_response(&self, qid: Option<u16>, kind: MalformedPdu) {
        self.state().arm(Armed::Malformed { qid, kind });
    }

    /// Sends a C2HTermReq with `fes` in place of the next command's answer on queue
    /// `qid`, then closes that connection.
    pub fn terminate(&self, qid: Option<u16>, fes: FatalErrorStatus) {
        self.state().arm(Armed::Terminate { qid, fes });
    }

    /// Every connection, open or new, stops answering: bytes are read and dropped,
    /// nothing is sent, no keep-alive timer runs. A connection that went silent stays
    /// silent until it is closed; after [`TcpFaults::clear`] new connections work.
    pub fn hang(&self) {
        self.state().hung.store(true, Ordering::Release);
    }

    /// Closes the listening socket: new connections are refused from now on (for the
    /// rest of the target's life). Open connections stay.
    pub fn refuse_connections(&self) {
        self.state().refused.store(true, Ordering::Release);
        self.shared.wake_acceptor();
    }

    /// Shuts down every open connection now (the target keeps listening).
    pub fn drop_connections(&self) {
        self.shared.close_connections(|_| true);
    }

    /// Disarms every one-shot fault and [`TcpFaults::hang`] (not a refused listener).
    pub fn clear(&self) {
        let s = self.state();
        lock(&s.armed).clear();
        s.any.store(false, Ordering::Release);
        s.hung.store(false, Ordering::Release);
    }

    /// How often each fault has fired.
    pub fn counts(&self) -> TcpFaultCounts {
        let s = self.state();
        TcpFaultCounts {
            dropped: s.dropped.load(Ordering::Relaxed),
            header_digests: s.header_digests.load(Ordering::Relaxed),
            data_digests: s.data_digests.load(Ordering::Relaxed),
            malformed: s.malformed.load(Ordering::Relaxed),
            terminations: s.terminations.load(Ordering::Relaxed),
            hung: s.hung_count.load(Ordering::Relaxed),
        }
    }
}
