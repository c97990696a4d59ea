//! One queue as the NVMe/TCP transport runs it: the driver's submission and
//! completion rings in host memory on one side, one connection on the other.
//!
//! A doorbell write hands the new submission entries to [`QueueShim::send_from_ring`],
//! which turns each into a Command Capsule: the SGL the driver built is walked (with
//! bounds) into host segments, and the capsule's data pointer becomes an in-capsule
//! data block (writes up to the in-capsule size) or a transport data block (reads and
//! larger writes, moved by C2HData and R2T/H2CData). Received PDUs land in
//! [`QueueCore`]: data is copied into the command's segments, responses become
//! completion entries posted to the driver's CQ with the phase tag, exactly as a PCIe
//! controller would post them. Every command ID, offset and length the target sends is
//! checked against the command it names before a byte is copied.

use std::ops::Range;
use std::sync::atomic::{fence, Ordering};

use crate::spec::command::Psdt;
use crate::spec::sgl::{SglDescriptor, SglType, SGL_DESCRIPTOR_SIZE};
use crate::spec::status::GenericStatus;
use crate::spec::tcp::{PduType, TransferHeader};
use crate::spec::{CompletionEntry, Status, SubmissionEntry};

use super::conn::{Conn, ConnError, PduSink};
use super::memory::MemView;

/// Command IDs at and above this belong to the transport's own commands (Connect,
/// Property Get/Set, Keep Alive, Disconnect); the driver's IDs stay below its queue
/// depth.
pub(super) const INTERNAL_CID_BASE: u16 = 0xff00;
/// How many of the transport's own commands may be outstanding on one queue.
const INTERNAL_SLOTS: usize = 8;
/// Most SGL descriptors walked for one command.
const MAX_DESCRIPTORS: usize = 4096;

/// A ring in host memory.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ring {
    /// IOVA of entry 0.
    pub iova: u64,
    /// Entries.
    pub entries: u16,
}

#[derive(Debug)]
pub(super) struct SqState {
    pub ring: Ring,
    /// Next entry to send.
    pub head: u16,
    /// The tail the driver last wrote.
    pub tail: u16,
}

#[derive(Debug)]
pub(super) struct CqState {
    pub ring: Ring,
    tail: u16,
    phase: bool,
    /// The head the driver last wrote.
    pub head: u16,
}

impl CqState {
    pub(super) fn new(ring: Ring) -> Self {
        Self {
            ring,
            tail: 0,
            phase: true,
            head: 0,
        }
    }
}

/// A driver command on the wire.
#[derive(Debug, Default)]
struct Cmd {
    active: bool,
    /// Data flows host to controller.
    write: bool,
    /// Bytes the command moves.
    len: u32,
    /// Host segments: (IOVA, bytes).
    segs: Vec<(u64, u32)>,
    /// Bytes received by C2HData.
    received: u32,
}

/// One of the transport's own commands.
#[derive(Debug, Default)]
pub(super) struct Internal {
    active: bool,
    done: Option<CompletionEntry>,
    data: Vec<u8>,
    want: usize,
    received: usize,
}

/// The per-queue state the receive side works on.
#[derive(Debug)]
pub(super) struct QueueCore {
    qid: u16,
    pub mem: MemView,
    pub sq: Option<SqState>,
    pub cq: Option<CqState>,
    cmds: Vec<Cmd>,
    internal: Vec<Internal>,
    /// Commands sent and not yet answered.
    pub on_wire: u16,
    /// Most commands the controller's queue holds (the SQSIZE connected with).
    pub wire_limit: u16,
    /// Largest write sent as in-capsule data.
    pub in_capsule: usize,
    r2ts: Vec<TransferHeader>,
    /// Completions the CQ had no room for (never expected: the CQ is at least as
    /// large as the SQ); posted when the driver frees entries.
    overflow: Vec<CompletionEntry>,
}

/// A queue: its state and, while connected, its connection.
#[derive(Debug)]
pub(super) struct QueueShim {
    pub conn: Option<Conn>,
    pub core: QueueCore,
}

impl QueueShim {
    pub(super) fn new(qid: u16, mem: MemView) -> Self {
        Self {
            conn: None,
            core: QueueCore {
                qid,
                mem,
                sq: None,
                cq: None,
                cmds: Vec::new(),
                internal: (0..INTERNAL_SLOTS).map(|_| Internal::default()).collect(),
                on_wire: 0,
                wire_limit: 0,
                in_capsule: 0,
                r2ts: Vec::with_capacity(16),
                overflow: Vec::new(),
            },
        }
    }

    /// Attaches a connected connection able to hold `wire_limit` commands, with
    /// `in_capsule` bytes of in-capsule data.
    pub(super) fn attach(&mut self, conn: Conn, wire_limit: u16, in_capsule: usize) {
        self.conn = Some(conn);
        let c = &mut self.core;
        c.wire_limit = wire_limit.max(1);
        c.in_capsule = in_capsule;
        c.on_wire = 0;
        for i in c.internal.iter_mut() {
            i.active = false;
            i.done = None;
        }
    }

    /// Sets up the rings (queue creation, or admin queue enable) and forgets every
    /// command.
    pub(super) fn set_rings(&mut self, sq: Option<Ring>, cq: Option<Ring>) {
        let c = &mut self.core;
        if let Some(ring) = sq {
            c.sq = Some(SqState {
                ring,
                head: 0,
                tail: 0,
            });
            c.cmds.resize_with(usize::from(ring.entries), Cmd::default);
            for cmd in c.cmds.iter_mut() {
                cmd.active = false;
            }
        }
        if let Some(ring) = cq {
            c.cq = Some(CqState::new(ring));
        }
        c.overflow.clear();
        c.r2ts.clear();
    }

    /// Drops the connection (closing the socket); commands on it are forgotten.
    pub(super) fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.shutdown();
        }
        let c = &mut self.core;
        c.on_wire = 0;
        for cmd in c.cmds.iter_mut() {
            cmd.active = false;
        }
        for i in c.internal.iter_mut() {
            i.active = false;
        }
    }

    /// The next submission entry the driver queued and the transport has not taken,
    /// when the controller has room for one more command.
    pub(super) fn next_entry(&mut self) -> Option<SubmissionEntry> {
        let c = &mut self.core;
        if c.on_wire >= c.wire_limit {
            return None;
        }
        let sq = c.sq.as_mut()?;
        if sq.head == sq.tail {
            return None;
        }
        let mut b = [0u8; 64];
        let at = sq.ring.iova + u64::from(sq.head) * 64;
        sq.head = (sq.head + 1) % sq.ring.entries;
        if !c.mem.read(at, &mut b) {
            tracing::error!(
                qid = c.qid,
                iova = at,
                "submission entry is not in mapped memory"
            );
            return None;
        }
        Some(SubmissionEntry::from_bytes(&b))
    }

    /// Sends `sqe` (from the driver's SQ) as a Command Capsule. A command the transport
    /// cannot carry is completed at once with an error status.
    pub(super) fn send_command(&mut self, sqe: &SubmissionEntry) -> Result<(), ConnError> {
        let cid = sqe.cid();
        let c = &mut self.core;
        let Some(conn) = self.conn.as_mut() else {
            c.post_local(
                cid,
                Status::path(crate::spec::status::PathStatus::InternalPathError),
                0,
            );
            return Ok(());
        };
        match c.prepare(sqe) {
            Ok(()) => {}
            Err(status) => {
                c.post_local(cid, status.with_dnr(true), 0);
                return Ok(());
            }
        }
        let cmd = &c.cmds[usize::from(cid)];
        let len = cmd.len as usize;
        let in_capsule = cmd.write && len > 0 && len <= c.in_capsule;
        let mut wire = *sqe;
        wire.mptr = 0;
        let desc = if in_capsule {
            SglDescriptor::in_capsule(len as u32)
        } else {
            SglDescriptor::transport(len as u32)
        };
        wire.set_sgl(desc, Psdt::SglMptrContiguous);
        let range = conn.begin_capsule(&wire.to_bytes(), if in_capsule { len } else { 0 });
        if in_capsule {
            copy_from_segments(&mut c.mem, &cmd.segs, 0, conn.tx_slice(range.clone()));
        }
        conn.finish_pdu(range);
        c.on_wire += 1;
        Ok(())
    }

    /// Sends one of the transport's own commands with `out` as in-capsule data and
    /// room for `want` bytes of returned data; returns its command ID, or `None` when
    /// every internal slot is busy.
    pub(super) fn send_internal(
        &mut self,
        mut sqe: SubmissionEntry,
        out: &[u8],
        want: usize,
    ) -> Option<u16> {
        let conn = self.conn.as_mut()?;
        let c = &mut self.core;
        let slot = c.internal.iter().position(|i| !i.active)?;
        let cid = INTERNAL_CID_BASE + slot as u16;
        let i = &mut c.internal[slot];
        i.active = true;
        i.done = None;
        i.want = want;
        i.received = 0;
        i.data.clear();
        i.data.resize(want, 0);
        sqe.set_cid(cid);
        let desc = if !out.is_empty() {
            SglDescriptor::in_capsule(out.len() as u32)
        } else {
            SglDescriptor::transport(want as u32)
        };
        sqe.set_sgl(desc, Psdt::SglMptrContiguous);
        let range = conn.begin_capsule(&sqe.to_bytes(), out.len());
        conn.tx_slice(range.clone()).copy_from_slice(out);
        conn.finish_pdu(range);
        c.on_wire += 1;
        Some(cid)
    }

    /// The completion (and returned data) of internal command `cid`, once it came.
    pub(super) fn take_internal(&mut self, cid: u16) -> Option<(CompletionEntry, Vec<u8>)> {
        let slot = usize::from(cid.checked_sub(INTERNAL_CID_BASE)?);
        let i = self.core.internal.get_mut(slot)?;
        let cqe = i.done.take()?;
        Some((cqe, std::mem::take(&mut i.data)))
    }

    /// Whether internal command `cid` is still waiting for its completion.
    pub(super) fn internal_pending(&self, cid: u16) -> bool {
        cid.checked_sub(INTERNAL_CID_BASE)
            .and_then(|s| self.core.internal.get(usize::from(s)))
            .is_some_and(|i| i.active)
    }

    /// Forgets internal command `cid` (its answer, if it ever comes, is dropped).
    pub(super) fn abandon_internal(&mut self, cid: u16) {
        if let Some(i) = cid
            .checked_sub(INTERNAL_CID_BASE)
            .and_then(|s| self.core.internal.get_mut(usize::from(s)))
        {
            i.done = None;
        }
    }

    /// Sends what waits, receives what arrived, answers R2Ts, and posts completions.
    pub(super) fn pump(&mut self) -> Result<bool, ConnError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        if conn.tx_pending() {
            conn.flush()?;
        }
        let got = conn.receive(&mut self.core)?;
        if !self.core.r2ts.is_empty() {
            self.answer_r2ts()?;
        }
        if !self.core.overflow.is_empty() {
            self.core.drain_overflow();
        }
        Ok(got)
    }

    /// Flushes the send buffer.
    pub(super) fn flush(&mut self) -> Result<(), ConnError> {
        match self.conn.as_mut() {
            Some(conn) if conn.tx_pending() => conn.flush(),
            _ => Ok(()),
        }
    }

    fn answer_r2ts(&mut self) -> Result<(), ConnError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let c = &mut self.core;
        let max = conn.maxh2cdata.max(4096);
        for k in 0..c.r2ts.len() {
            let r = c.r2ts[k];
            let cmd = &c.cmds[usize::from(r.cccid)];
            let mut off = r.offset;
            let end = r.offset + r.length;
            while off < end {
                let n = (end - off).min(max);
                let last = off + n == end;
                let th = TransferHeader {
                    cccid: r.cccid,
                    ttag: r.ttag,
                    offset: off,
                    length: n,
                };
                let specific = transfer_fields(&th);
                let range = conn.begin_pdu(
                    PduType::H2C_DATA,
                    if last {
                        crate::spec::tcp::flags::LAST_PDU
                    } else {
                        0
                    },
                    &specific,
                    n as usize,
                );
                let dst = conn.tx_slice(range.clone());
                copy_from_segments(&mut c.mem, &cmd.segs, off, dst);
                conn.finish_pdu(range);
                off += n;
            }
        }
        c.r2ts.clear();
        conn.flush()
    }
}

/// Bytes 8 to 23 of an H2CData header.
fn transfer_fields(th: &TransferHeader) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..2].copy_from_slice(&th.cccid.to_le_bytes());
    b[2..4].copy_from_slice(&th.ttag.to_le_bytes());
    b[4..8].copy_from_slice(&th.offset.to_le_bytes());
    b[8..12].copy_from_slice(&th.length.to_le_bytes());
    b
}

/// Where bytes `offset..offset + len` of a transfer lie in its host segments: for each
/// piece, its IOVA and its range in a buffer that starts at byte `offset`.
fn pieces(
    segs: &[(u64, u32)],
    offset: u32,
    len: usize,
) -> impl Iterator<Item = (u64, Range<usize>)> + '_ {
    let offset = u64::from(offset);
    let mut start = 0u64;
    let mut done = 0usize;
    segs.iter().filter_map(move |&(iova, n)| {
        let n = u64::from(n);
        let seg_start = start;
        start += n;
        if done == len || seg_start + n <= offset {
            return None;
        }
        let skip = (offset + done as u64).saturating_sub(seg_start);
        let take = ((n - skip) as usize).min(len - done);
        let range = done..done + take;
        done += take;
        Some((iova + skip, range))
    })
}

/// Copies the command's data from byte `offset` of its transfer into `dst`.
fn copy_from_segments(mem: &mut MemView, segs: &[(u64, u32)], offset: u32, dst: &mut [u8]) {
    for (iova, range) in pieces(segs, offset, dst.len()) {
        if !mem.read(iova, &mut dst[range]) {
            tracing::error!(iova, "write data is not in mapped memory");
        }
    }
}

impl QueueCore {
    /// Checks `sqe` and records its data segments in its command slot; the status to
    /// complete it with when the transport cannot carry it.
    fn prepare(&mut self, sqe: &SubmissionEntry) -> Result<(), Status> {
        let invalid = Status::generic(GenericStatus::InvalidFieldInCommand);
        let cid = sqe.cid();
        let Some(cmd) = self.cmds.get_mut(usize::from(cid)) else {
            tracing::error!(qid = self.qid, cid, "command ID beyond the queue depth");
            return Err(invalid);
        };
        if cmd.active {
            return Err(Status::generic(GenericStatus::CommandIdConflict));
        }
        let direction = sqe.opcode() & 3;
        cmd.segs.clear();
        cmd.len = 0;
        cmd.received = 0;
        cmd.write = direction == 1;
        if direction == 3 {
            return Err(invalid);
        }
        if direction != 0 {
            if sqe.mptr != 0 && sqe.cdw0.psdt() != Psdt::Prp {
                // Fabrics carry no separate metadata buffer.
                return Err(invalid);
            }
            match sqe.cdw0.psdt() {
                Psdt::SglMptrContiguous | Psdt::SglMptrSgl => {}
                _ => {
                    if sqe.prp1 != 0 {
                        tracing::warn!(
                            qid = self.qid,
                            opcode = sqe.opcode(),
                            "a command with PRPs cannot go over NVMe/TCP; it needs an SGL"
                        );
                        return Err(invalid);
                    }
                }
            }
            if sqe.cdw0.psdt() != Psdt::Prp {
                walk_sgl(&mut self.mem, sqe.sgl1(), &mut cmd.segs).map_err(|why| {
                    tracing::warn!(qid = self.qid, cid, why, "SGL refused");
                    invalid
                })?;
            }
            let total: u64 = cmd.segs.iter().map(|&(_, n)| u64::from(n)).sum();
            cmd.len = u32::try_from(total).map_err(|_| invalid)?;
        }
        cmd.active = true;
        Ok(())
    }

    /// Completes `cid` without the target (a command the transport handles or refuses).
    pub(super) fn post_local(&mut self, cid: u16, status: Status, dw0: u32) {
        if let Some(cmd) = self.cmds.get_mut(usize::from(cid)) {
            cmd.active = false;
        }
        let cqe = CompletionEntry {
            dw0,
            dw1: 0,
            sq_head: 0,
            sq_id: self.qid,
            cid,
            status,
        };
        self.post(cqe);
    }

    /// Posts `cqe` to the driver's CQ with this queue's SQ head and the phase tag.
    fn post(&mut self, mut cqe: CompletionEntry) {
        let Some(cq) = self.cq.as_mut() else {
            tracing::warn!(
                qid = self.qid,
                cid = cqe.cid,
                "completion for a queue without a CQ dropped"
            );
            return;
        };
        cqe.sq_id = self.qid;
        cqe.sq_head = self.sq.as_ref().map_or(0, |s| s.head);
        let next = (cq.tail + 1) % cq.ring.entries;
        if next == cq.head {
            self.overflow.push(cqe);
            return;
        }
        cqe.status = cqe.status.with_phase(cq.phase);
        let b = cqe.to_bytes();
        let at = cq.ring.iova + u64::from(cq.tail) * 16;
        let Some(slot) = self.mem.translate(at, 16).filter(|s| s.len() == 16) else {
            tracing::error!(
                qid = self.qid,
                iova = at,
                "completion queue entry is not in mapped memory"
            );
            return;
        };
        // Everything but the dword holding the phase tag first, then that dword with
        // release ordering: the driver never sees a new phase with stale contents.
        let _ = slot.write(0, &b[..12]);
        fence(Ordering::Release);
        let last = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        let _ = slot.store_u32(12, last, Ordering::Release);
        cq.tail = next;
        if cq.tail == 0 {
            cq.phase = !cq.phase;
        }
    }

    /// Posts held completions while the CQ has room.
    pub(super) fn drain_overflow(&mut self) {
        let held = std::mem::take(&mut self.overflow);
        for cqe in held {
            self.post(cqe);
        }
    }

    fn internal_slot(&mut self, cid: u16) -> Option<&mut Internal> {
        let s = cid.checked_sub(INTERNAL_CID_BASE)?;
        self.internal.get_mut(usize::from(s)).filter(|i| i.active)
    }

    fn complete(&mut self, mut cqe: CompletionEntry) -> Result<(), String> {
        let cid = cqe.cid;
        if let Some(i) = self.internal_slot(cid) {
            i.active = false;
            i.done = Some(cqe);
            self.on_wire = self.on_wire.saturating_sub(1);
            return Ok(());
        }
        let qid = self.qid;
        let Some(cmd) = self.cmds.get_mut(usize::from(cid)).filter(|c| c.active) else {
            return Err(format!(
                "a response for command {cid}, which is not outstanding on queue {qid}"
            ));
        };
        cmd.active = false;
        self.on_wire = self.on_wire.saturating_sub(1);
        let status = cqe.status.without_phase();
        if status.is_success() && !cmd.write && cmd.received != cmd.len {
            tracing::warn!(
                qid,
                cid,
                received = cmd.received,
                len = cmd.len,
                "read reported success with part of its data missing"
            );
            cqe.status = Status::generic(GenericStatus::DataTransferError);
        }
        self.post(cqe);
        Ok(())
    }
}

impl PduSink for QueueCore {
    fn response(&mut self, cqe: CompletionEntry) -> Result<(), String> {
        self.complete(cqe)
    }

    fn c2h_begin(&mut self, h: &TransferHeader) -> Result<(), String> {
        let qid = self.qid;
        let end = u64::from(h.offset) + u64::from(h.length);
        if let Some(i) = self.internal_slot(h.cccid) {
            if end > i.want as u64 {
                return Err(format!(
                    "C2HData for bytes {}..{end} of a {}-byte transfer",
                    h.offset, i.want
                ));
            }
            return Ok(());
        }
        let Some(cmd) = self.cmds.get(usize::from(h.cccid)).filter(|c| c.active) else {
            return Err(format!(
                "C2HData for command {}, which is not outstanding on queue {qid}",
                h.cccid
            ));
        };
        if cmd.write {
            return Err(format!("C2HData for command {}, a write", h.cccid));
        }
        if end > u64::from(cmd.len) {
            return Err(format!(
                "C2HData for bytes {}..{end} of command {}, which moves {} bytes",
                h.offset, h.cccid, cmd.len
            ));
        }
        Ok(())
    }

    fn c2h_data(&mut self, cid: u16, offset: u32, data: &[u8]) -> Result<(), String> {
        if let Some(i) = self.internal_slot(cid) {
            let at = offset as usize;
            i.data[at..at + data.len()].copy_from_slice(data);
            i.received += data.len();
            return Ok(());
        }
        let cmd = &mut self.cmds[usize::from(cid)];
        for (iova, range) in pieces(&cmd.segs, offset, data.len()) {
            if !self.mem.write(iova, &data[range]) {
                return Err(format!(
                    "read data for command {cid} has no mapped buffer at {iova:#x}"
                ));
            }
        }
        cmd.received += data.len() as u32;
        Ok(())
    }

    fn c2h_end(&mut self, cid: u16, last: bool, success: bool) -> Result<(), String> {
        let _ = last;
        if success {
            return self.complete(CompletionEntry {
                dw0: 0,
                dw1: 0,
                sq_head: 0,
                sq_id: self.qid,
                cid,
                status: Status::SUCCESS,
            });
        }
        Ok(())
    }

    fn r2t(&mut self, h: &TransferHeader) -> Result<(), String> {
        let qid = self.qid;
        let Some(cmd) = self.cmds.get(usize::from(h.cccid)).filter(|c| c.active) else {
            return Err(format!(
                "R2T for command {}, which is not outstanding on queue {qid}",
                h.cccid
            ));
        };
        let end = u64::from(h.offset) + u64::from(h.length);
        if !cmd.write || h.length == 0 || end > u64::from(cmd.len) {
            return Err(format!(
                "R2T for bytes {}..{end} of command {}, a {} of {} bytes",
                h.offset,
                h.cccid,
                if cmd.write { "write" } else { "read" },
                cmd.len
            ));
        }
        self.r2ts.push(*h);
        Ok(())
    }
}

/// Walks the SGL whose first descriptor is `first` into `segs`; the reason when it is
/// not one this driver builds (Data Block descriptors, chained by (Last) Segment
/// descriptors) or names unmapped memory.
fn walk_sgl(
    mem: &mut MemView,
    first: SglDescriptor,
    segs: &mut Vec<(u64, u32)>,
) -> Result<(), &'static str> {
    let mut next = Some(first);
    let mut seen = 0usize;
    let mut in_segment: Option<(u64, usize)> = None;
    loop {
        let d = match next.take() {
            Some(d) => d,
            None => {
                let Some((at, left)) = in_segment.as_mut() else {
                    return Ok(());
                };
                if *left == 0 {
                    return Ok(());
                }
                let mut b = [0u8; SGL_DESCRIPTOR_SIZE];
                if !mem.read(*at, &mut b) {
                    return Err("an SGL segment is not in mapped memory");
                }
                *at += SGL_DESCRIPTOR_SIZE as u64;
                *left -= 1;
                SglDescriptor::from_bytes(b)
            }
        };
        seen += 1;
        if seen > MAX_DESCRIPTORS {
            return Err("the SGL has too many descriptors");
        }
        match d.kind() {
            SglType::DATA_BLOCK => {
                if d.length > 0 {
                    segs.push((d.address, d.length));
                }
            }
            SglType::SEGMENT | SglType::LAST_SEGMENT => {
                if in_segment.is_some_and(|(_, left)| left != 0) {
                    return Err("a segment descriptor before the end of its segment");
                }
                let n = d.length as usize / SGL_DESCRIPTOR_SIZE;
                if n == 0 || d.length as usize % SGL_DESCRIPTOR_SIZE != 0 {
                    return Err("a segment descriptor with a bad length");
                }
                in_segment = Some((d.address, n));
            }
            _ => return Err("an SGL descriptor type this transport does not carry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn pieces_cover_a_range_across_segments() {
        let segs = [(0x1000, 100), (0x5000, 50), (0x9000, 200)];
        let got: Vec<_> = pieces(&segs, 90, 100).collect();
        assert_eq!(
            got,
            vec![(0x105a, 0..10), (0x5000, 10..60), (0x9000, 60..100)]
        );
        let all: Vec<_> = pieces(&segs, 0, 350).collect();
        assert_eq!(
            all,
            vec![(0x1000, 0..100), (0x5000, 100..150), (0x9000, 150..350)]
        );
        assert_eq!(
            pieces(&segs, 150, 10).collect::<Vec<_>>(),
            vec![(0x9000, 0..10)]
        );
    }
}
