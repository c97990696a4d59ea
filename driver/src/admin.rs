//! The admin queue: one shared submission/completion pair behind a mutex, synchronous
//! command execution with a deadline ([`exec_admin`]), and Asynchronous Event Requests
//! kept armed.

use std::time::{Duration, Instant};

use crate::backoff::{deadline, Backoff};
use crate::dma::DmaMem;
use crate::error::CommandDesc;
use crate::health::check_csts;
use crate::queue::ring::{CqRing, Doorbells, SqRing};
use crate::queue::tracker::TrackerPool;
use crate::spec::{AdminOpcode, CompletionEntry, SubmissionEntry};
use crate::transport::Transport;
use crate::Error;

/// What an admin command slot is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminCtx {
    /// A caller is waiting for it.
    Sync,
    /// An Asynchronous Event Request.
    Aer,
    /// Its caller gave up waiting; the completion is dropped.
    Abandoned,
}

/// An asynchronous event reported by the controller (Asynchronous Event Request
/// completion, dword 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncEvent {
    /// Asynchronous Event Type (0 error, 1 SMART/health, 2 notice, 6 I/O command set, 7 vendor).
    pub event_type: u8,
    /// Asynchronous Event Information.
    pub info: u8,
    /// The log page to read to clear the event.
    pub log_page: u8,
}

impl AsyncEvent {
    /// Decodes completion dword 0.
    pub fn from_dw0(dw0: u32) -> Self {
        let e = crate::spec::admin::AsyncEvent::from_bits(dw0);
        AsyncEvent {
            event_type: e.event_type().into_bits(),
            info: e.info(),
            log_page: e.lid(),
        }
    }
}

/// Counters of device misbehaviour seen on a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Commands submitted.
    pub submitted: u64,
    /// Completions delivered.
    pub completed: u64,
    /// Completions with a CID that is not outstanding (unknown or duplicate).
    pub unknown_cid: u64,
    /// Completions naming another submission queue.
    pub wrong_sq_id: u64,
    /// Completions whose SQ head lies outside the queue.
    pub bad_sq_head: u64,
    /// Commands that ran past their deadline.
    pub timeouts: u64,
    /// Abort commands sent.
    pub aborts: u64,
    /// Controller resets this queue went through.
    pub resets: u64,
    /// MMIO doorbell writes.
    pub doorbell_writes: u64,
    /// Doorbell updates that the shadow doorbell's EventIdx made unnecessary.
    pub doorbell_writes_skipped: u64,
    /// Commands resubmitted after a failure that allowed a retry.
    pub retries: u64,
    /// Times this queue found the device gone (registers reading all ones).
    pub removals: u64,
}

/// The admin submission and completion queues.
pub(crate) struct AdminQueue {
    sq: SqRing,
    cq: CqRing,
    db: Doorbells,
    slots: TrackerPool<AdminCtx>,
    /// Completions of `Sync` commands, indexed by CID, until their caller takes them.
    done: Vec<Option<CompletionEntry>>,
    /// Events waiting for the callback.
    pub events: Vec<AsyncEvent>,
    pub stats: QueueStats,
    pub aers_armed: u16,
}

impl AdminQueue {
    pub fn new(sq_mem: DmaMem, cq_mem: DmaMem, depth: u16, dstrd: u8) -> Self {
        AdminQueue {
            sq: SqRing::new(sq_mem, depth),
            cq: CqRing::new(cq_mem, depth),
            db: Doorbells::new(0, dstrd),
            slots: TrackerPool::new(depth - 1, AdminCtx::Sync),
            done: vec![None; usize::from(depth)],
            events: Vec::new(),
            stats: QueueStats::default(),
            aers_armed: 0,
        }
    }

    pub fn sq_iova(&self) -> u64 {
        self.sq.iova()
    }

    pub fn cq_iova(&self) -> u64 {
        self.cq.iova()
    }

    pub fn depth(&self) -> u16 {
        self.sq.entries()
    }

    /// Forgets every outstanding command and empties the rings (controller disabled).
    pub fn reset(&mut self) {
        self.sq.reset();
        self.cq.reset();
        let depth = self.sq.entries();
        self.slots = TrackerPool::new(depth - 1, AdminCtx::Sync);
        self.done.iter_mut().for_each(|d| *d = None);
        self.aers_armed = 0;
    }

    /// Queues `sqe` and rings the doorbell; returns its CID.
    pub fn submit<T: Transport>(
        &mut self,
        t: &T,
        mut sqe: SubmissionEntry,
        ctx: AdminCtx,
    ) -> Option<u16> {
        if self.sq.is_full() {
            return None;
        }
        let desc = CommandDesc::Admin {
            name: AdminOpcode(sqe.opcode()).name().unwrap_or("vendor command"),
            opcode: sqe.opcode(),
        };
        let cid = self.slots.take(ctx, desc)?;
        sqe.set_cid(cid);
        self.sq.push(&sqe);
        let tail = self.sq.mark_rung();
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        self.db.ring_sq(t, tail);
        self.stats.submitted += 1;
        self.stats.doorbell_writes += 1;
        Some(cid)
    }

    /// Consumes every posted completion; re-arms AERs that completed.
    pub fn drain<T: Transport>(&mut self, t: &T) -> usize {
        t.poll_queue(0);
        let mut n = 0;
        let mut rearm = 0u16;
        while let Some(cqe) = self.cq.pop() {
            n += 1;
            if cqe.sq_id != 0 {
                self.stats.wrong_sq_id += 1;
                tracing::warn!(sq_id = cqe.sq_id, "admin completion names another queue");
                continue;
            }
            if !self.sq.set_head(cqe.sq_head) {
                self.stats.bad_sq_head += 1;
                tracing::warn!(
                    sq_head = cqe.sq_head,
                    "admin completion SQ head out of range"
                );
            }
            let Some(slot) = self.slots.release(cqe.cid) else {
                self.stats.unknown_cid += 1;
                tracing::warn!(
                    cid = cqe.cid,
                    "admin completion for a command not outstanding"
                );
                continue;
            };
            self.stats.completed += 1;
            match slot.ctx {
                AdminCtx::Sync => self.done[usize::from(cqe.cid)] = Some(cqe),
                AdminCtx::Abandoned => {}
                AdminCtx::Aer => {
                    self.aers_armed = self.aers_armed.saturating_sub(1);
                    if cqe.status.is_success() {
                        self.events.push(AsyncEvent::from_dw0(cqe.dw0));
                        rearm += 1;
                    } else {
                        // Aborted by a reset or refused (limit exceeded): do not re-arm.
                        tracing::debug!(status = %cqe.status, "asynchronous event request ended");
                    }
                }
            }
        }
        if n > 0 {
            self.db.ring_cq(t, self.cq.head());
            self.stats.doorbell_writes += 1;
        }
        for _ in 0..rearm {
            self.arm_aer(t);
        }
        n
    }

    /// Submits one Asynchronous Event Request.
    pub fn arm_aer<T: Transport>(&mut self, t: &T) -> bool {
        let sqe = crate::spec::admin::async_event_request();
        let ok = self.submit(t, sqe, AdminCtx::Aer).is_some();
        if ok {
            self.aers_armed += 1;
        }
        ok
    }

    /// The completion of `cid` if it has arrived.
    pub fn take_done(&mut self, cid: u16) -> Option<CompletionEntry> {
        self.done.get_mut(usize::from(cid)).and_then(|d| d.take())
    }

    /// Gives up on `cid`: its completion, if it ever comes, is dropped, and the CID is
    /// not reused until then.
    pub fn abandon(&mut self, cid: u16) {
        if let Some(slot) = self.slots.get_mut(cid) {
            slot.ctx = AdminCtx::Abandoned;
        }
    }
}

/// Runs one admin command to completion within `timeout`.
pub(crate) fn exec_admin<T: Transport>(
    t: &T,
    name: &str,
    q: &mut AdminQueue,
    sqe: SubmissionEntry,
    timeout: Duration,
) -> Result<CompletionEntry, Error> {
    let opcode = sqe.opcode();
    let desc = CommandDesc::Admin {
        name: AdminOpcode(opcode).name().unwrap_or("vendor command"),
        opcode,
    };
    let Some(cid) = q.submit(t, sqe, AdminCtx::Sync) else {
        return Err(Error::QueueFull {
            qid: 0,
            depth: q.depth(),
        });
    };
    let end = deadline(timeout);
    let mut backoff = Backoff::new();
    let mut polls = 0u32;
    loop {
        q.drain(t);
        if let Some(cqe) = q.take_done(cid) {
            if cqe.status.is_success() {
                return Ok(cqe);
            }
            return Err(Error::CommandFailed {
                command: desc,
                status: cqe.status.without_phase(),
            });
        }
        polls += 1;
        // Once the backoff sleeps (after 128 rounds), every round: a device that is gone
        // is noticed within the backoff's longest sleep (1 ms), not at the deadline.
        if polls % 64 == 0 || polls > 128 {
            if let Err(e) = check_csts(t, name, desc_during(opcode)) {
                q.abandon(cid);
                return Err(e);
            }
            if Instant::now() > end {
                q.abandon(cid);
                return Err(Error::CommandTimedOut {
                    command: desc,
                    timeout,
                });
            }
        }
        backoff.wait();
    }
}

/// The admin command's name, for errors that name the step in progress.
pub(crate) fn desc_during(opcode: u8) -> &'static str {
    AdminOpcode(opcode).name().unwrap_or("an admin command")
}
