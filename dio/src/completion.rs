//! Completion routing: reaping the queue pair, issuing the flush a synchronous
//! write needs, and finishing asynchronous requests (Linux's reference-counted
//! `struct iomap_dio`: `iomap_dio_bio_end_io` and `iomap_dio_complete` in
//! `fs/iomap/direct-io.c`).

use std::time::Duration;

use crate::buf::DmaBuf;
use crate::engine::{queue_error, reap_batch, AsyncDone, Dio, Idle};
use crate::error::DioError;
use crate::queue::{CommandStatus, DioQueue, IoCommand, QueueError};
use crate::slot::{make_tag, split_tag, Op, Slot, SlotState};

impl<Q: DioQueue, B: DmaBuf> Dio<Q, B> {
    /// Reaps completions without sleeping, finishing asynchronous requests whose
    /// commands are all done (their callbacks run here). Returns the completions reaped.
    pub fn poll_completions(&mut self) -> Result<usize, DioError> {
        self.reap()
    }

    /// Sleeps on the queue's interrupt for at most `timeout`, then reaps like
    /// [`poll_completions`](Self::poll_completions).
    pub fn wait_completions(&mut self, timeout: Duration) -> Result<usize, DioError> {
        self.qp.wait_interrupt(timeout).map_err(queue_error)?;
        self.reap()
    }

    /// Reaps one batch and advances every request whose commands all completed.
    #[inline]
    pub(crate) fn reap(&mut self) -> Result<usize, DioError> {
        self.reap_up_to(reap_batch())
    }

    /// Reaps at most `max` completions and advances every request whose commands
    /// all completed. A synchronous request that needs no flush is finished in
    /// place; the others go through the ready list.
    #[inline]
    pub(crate) fn reap_up_to(&mut self, max: usize) -> Result<usize, DioError> {
        let Dio {
            qp,
            caps,
            slots,
            ready,
            stray_completions,
            commands_in_flight,
            ..
        } = self;
        let vwc = caps.volatile_write_cache;
        let n = qp
            .poll(max, |tag, status| {
                let (index, gen) = split_tag(tag);
                match slots.get_mut(index) {
                    // The last command of a synchronous request that needs no flush.
                    Some(s)
                        if s.gen == gen
                            && s.outstanding == 1
                            && !s.submitting
                            && s.state == SlotState::Active
                            && s.ctx.is_none()
                            && status.is_success()
                            && !s.needs_flush(vwc) =>
                    {
                        s.outstanding = 0;
                        *commands_in_flight = commands_in_flight.saturating_sub(1);
                        s.finished = true;
                    }
                    _ => route(
                        slots,
                        ready,
                        stray_completions,
                        commands_in_flight,
                        vwc,
                        tag,
                        status,
                    ),
                }
            })
            .map_err(queue_error)?;
        if !self.ready.is_empty() {
            self.process_ready();
        }
        Ok(n)
    }

    /// Waits for the one command tagged `tag` (polling, or sleeping on the
    /// interrupt first) and returns its status; completions of other requests
    /// reaped meanwhile are routed as usual. The command is not counted in
    /// `commands_in_flight` (only a reaping hint) unless its wait is given up.
    ///
    /// A polled wait reaps one completion inline first: on a fast device the
    /// command is usually done by then. Everything else (an empty queue, other
    /// requests' completions, sleeping, the timeout) runs out of line.
    #[inline(always)]
    pub(crate) fn wait_tag(&mut self, tag: u64, poll: bool) -> Result<CommandStatus, DioError> {
        if poll {
            if let Some((t, status)) = self.qp.poll_one() {
                if t == tag {
                    return Ok(status);
                }
                self.route_reaped(t, status);
            }
        }
        self.wait_tag_loop(tag, poll)
    }

    /// [`wait_tag`](Self::wait_tag) past its first reap.
    #[inline(never)]
    fn wait_tag_loop(&mut self, tag: u64, poll: bool) -> Result<CommandStatus, DioError> {
        let mut idle = Idle::checking_every(self.wait_limit(), if poll { 64 } else { 1 });
        loop {
            if !poll {
                self.qp
                    .wait_interrupt(self.timeout.min(Duration::from_millis(100)))
                    .map_err(queue_error)?;
            }
            let mut mine = None;
            let Dio {
                qp,
                caps,
                slots,
                ready,
                stray_completions,
                commands_in_flight,
                ..
            } = self;
            let vwc = caps.volatile_write_cache;
            // The command waited for is in flight, so this asks for at least one.
            let max = (*commands_in_flight).clamp(1, reap_batch());
            let n = qp.poll(max, |t, status| {
                if t == tag {
                    mine = Some(status);
                } else {
                    route(
                        slots,
                        ready,
                        stray_completions,
                        commands_in_flight,
                        vwc,
                        t,
                        status,
                    );
                }
            });
            let n = n.map_err(queue_error)?;
            if !self.ready.is_empty() {
                self.process_ready();
            }
            if let Some(status) = mine {
                return Ok(status);
            }
            idle.progress(n)?;
        }
    }

    /// Routes a completion reaped by [`wait_tag`](Self::wait_tag)'s first poll
    /// that belongs to another request.
    #[inline(never)]
    fn route_reaped(&mut self, tag: u64, status: CommandStatus) {
        let vwc = self.caps.volatile_write_cache;
        route(
            &mut self.slots,
            &mut self.ready,
            &mut self.stray_completions,
            &mut self.commands_in_flight,
            vwc,
            tag,
            status,
        );
        if !self.ready.is_empty() {
            self.process_ready();
        }
    }

    /// Moves every request on the ready list forward: flush if it needs one,
    /// otherwise finish it.
    #[inline(never)]
    pub(crate) fn process_ready(&mut self) {
        while let Some(slot) = self.ready.pop() {
            if !self.advance(slot) {
                // Queue full: retry on the next reap.
                self.ready.push(slot);
                break;
            }
        }
    }

    /// Returns false if a needed flush could not be queued yet.
    #[inline]
    fn advance(&mut self, slot: usize) -> bool {
        let vwc = self.caps().volatile_write_cache;
        let s = &mut self.slots[slot];
        if s.state == SlotState::Abandoned {
            self.release(slot);
            return true;
        }
        if s.needs_flush(vwc) {
            let tag = make_tag(slot, s.gen, Op::Flush);
            match self.qp.submit(&IoCommand::Flush, tag) {
                Ok(()) => {
                    let s = &mut self.slots[slot];
                    s.outstanding = 1;
                    s.flush_issued = true;
                    self.commands_in_flight += 1;
                    self.stats.flush_commands += 1;
                    self.stats.commands += 1;
                    return true;
                }
                Err(QueueError::Full) => return false,
                Err(e) => self.slots[slot].set_error(queue_error(e)),
            }
        }
        let s = &mut self.slots[slot];
        s.finished = true;
        if s.ctx.is_none() {
            return true;
        }
        if let Some(ctx) = s.ctx.take() {
            let mut iocb = ctx.iocb;
            let result = self.complete(slot, &mut iocb, ctx.i_size, &*ctx.dops, ctx.done_before);
            self.release(slot);
            (ctx.callback)(AsyncDone {
                iocb,
                iter: ctx.iter,
                result,
            });
        }
        true
    }
}

/// Puts a request on the ready list (out of line: synchronous requests that need
/// no flush are finished in place).
#[cold]
#[inline(never)]
fn defer(ready: &mut Vec<usize>, index: usize) {
    ready.push(index);
}

/// Routes one completion to its request (the general case): counts completions
/// for no request in flight, records a failed command's status, and finishes the
/// request or puts it on the ready list once its last command completed.
#[inline(never)]
pub(crate) fn route<B>(
    slots: &mut [Slot<B>],
    ready: &mut Vec<usize>,
    stray_completions: &mut u64,
    commands_in_flight: &mut usize,
    vwc: bool,
    tag: u64,
    status: CommandStatus,
) {
    let (index, gen) = split_tag(tag);
    let Some(s) = slots.get_mut(index) else {
        *stray_completions += 1;
        return;
    };
    if s.gen != gen || s.outstanding == 0 || s.state == SlotState::Free {
        *stray_completions += 1;
        return;
    }
    s.outstanding -= 1;
    *commands_in_flight = commands_in_flight.saturating_sub(1);
    if !status.is_success() {
        s.device_error(tag, status.status, status.dnr);
    }
    if s.outstanding == 0 && !s.submitting {
        if s.state == SlotState::Active && s.ctx.is_none() && !s.needs_flush(vwc) {
            s.finished = true;
        } else {
            defer(ready, index);
        }
    }
}
