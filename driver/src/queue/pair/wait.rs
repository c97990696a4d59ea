//! Waiting for completions, and the blocking single-command calls built on it.

use std::time::{Duration, Instant};

use hugepages::DmaBuffer;
use vmm_sys_util::epoll::EpollEvent;

use crate::backoff::Backoff;
use crate::queue::IoFlags;
use crate::transport::Transport;
use crate::Error;

use super::IoQueuePair;

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    /// Processes completions, waiting up to `timeout` for at least one when none is
    /// ready: on the queue's eventfd in interrupt mode, by polling otherwise.
    pub fn wait_completions(
        &mut self,
        max: usize,
        timeout: Duration,
        mut f: impl FnMut(C, Result<(), Error>),
    ) -> Result<usize, Error> {
        let end = Instant::now() + timeout;
        let mut backoff = Backoff::new();
        loop {
            let n = self.process_completions(max, &mut f);
            if n > 0 || self.slots.outstanding() == 0 {
                return Ok(n);
            }
            // The clock is read anyway on this path: stamp and enforce deadlines with it.
            let now = Instant::now();
            let since_start = now.saturating_duration_since(self.clock.start).as_nanos() as u64;
            let n = self.tick_at(since_start, &mut f);
            if n > 0 {
                return Ok(n);
            }
            if now >= end {
                return Ok(0);
            }
            match &self.irq {
                Some((fd, epoll)) => {
                    // Wake at least every 10 ms so deadlines are still enforced, and
                    // at the removal check interval so a vanished device is noticed.
                    let ms = (end - now)
                        .min(Duration::from_millis(10))
                        .min(self.shared.options.removal_check_interval)
                        .as_millis()
                        .max(1);
                    let mut events = [EpollEvent::default(); 1];
                    match epoll.wait(ms as i32, &mut events) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(source) => {
                            return Err(Error::Interrupt {
                                vector: self.vector,
                                source,
                            })
                        }
                    }
                    // Clear the counter; EAGAIN just means it was already clear.
                    let _ = fd.read();
                }
                None => backoff.wait(),
            }
        }
    }

    /// Waits for every outstanding command (bounded by the I/O timeout plus abort time).
    pub(super) fn wait_idle(
        &mut self,
        mut f: impl FnMut(C, Result<(), Error>),
    ) -> Result<(), Error> {
        let limit = self.sync_limit();
        let end = Instant::now() + limit;
        while self.slots.outstanding() > 0 {
            if Instant::now() >= end {
                return Err(Error::Timeout {
                    device: self.shared.name.clone(),
                    what: "complete the outstanding commands",
                    waited: limit,
                });
            }
            self.wait_completions(usize::MAX, Duration::from_millis(10), &mut f)?;
        }
        Ok(())
    }

    /// How long a blocking call waits for its command: the I/O timeout, then an abort
    /// and a reset that may each take the abort timeout, and a second to spare.
    pub(super) fn sync_limit(&self) -> Duration {
        self.timeout + self.shared.options.abort_timeout * 2 + Duration::from_secs(1)
    }

    /// The longest a command may stay outstanding on this pair, while it is polled,
    /// before the pair reports a verdict for it: the I/O timeout and the deadline
    /// check's granularity (a quarter of it), the abort timeout, then a controller
    /// reset (CC.EN off and on, each within CAP.TO, and its admin commands: Doorbell
    /// Buffer Config, Set Features Number of Queues) and the re-creation of this pair's
    /// queues (two admin commands), a second to spare. A caller that lends the device a
    /// buffer waits at least this long before it takes the buffer back.
    pub fn verdict_limit(&self) -> Duration {
        let o = &self.shared.options;
        let ready = self.shared.cap.timeout().max(Duration::from_millis(500));
        self.timeout
            + self.timeout / 4
            + o.abort_timeout
            + ready * 2
            + o.admin_timeout * 4
            + Duration::from_secs(1)
    }

    /// Refuses a blocking call on a pair with commands outstanding: it could not tell
    /// its own completion from theirs.
    pub(super) fn require_idle(&self) -> Result<(), Error> {
        if self.slots.outstanding() > 0 {
            return Err(Error::InvalidRequest(format!(
                "a blocking call on queue {} needs an idle queue pair ({} commands outstanding)",
                self.qid,
                self.slots.outstanding()
            )));
        }
        Ok(())
    }

    pub(super) fn sync(
        &mut self,
        submit: impl FnOnce(&mut Self) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.require_idle()?;
        submit(self)?;
        self.ring();
        let mut result = Ok(());
        self.wait_idle(|_, r| {
            if r.is_err() {
                result = r;
            }
        })?;
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = self.locate_end_to_end_error(e);
                Err(self.locate_zone_error(e))
            }
        }
    }

    /// Reads `blocks` blocks at `slba` into the start of `buf` and waits; a read larger
    /// than one command is split as [`Self::submit_read`] describes.
    pub fn read_sync(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        buf: &mut DmaBuffer,
    ) -> Result<(), Error> {
        let block_bytes = self.data_block_bytes(nsid, IoFlags::empty())?;
        let bytes = (u64::from(blocks) * u64::from(block_bytes)) as usize;
        let seg = buf
            .segment(0, bytes)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        self.sync(|q| q.submit_read(nsid, slba, blocks, &[seg], C::default()))
    }

    /// Writes `blocks` blocks at `slba` from the start of `buf` with `flags` and waits; a
    /// write larger than one command is split as [`Self::submit_write`] describes.
    pub fn write_sync(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        buf: &DmaBuffer,
        flags: IoFlags,
    ) -> Result<(), Error> {
        let block_bytes = self.data_block_bytes(nsid, flags)?;
        let bytes = (u64::from(blocks) * u64::from(block_bytes)) as usize;
        let seg = buf
            .segment(0, bytes)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        self.sync(|q| q.submit_write(nsid, slba, blocks, &[seg], flags, C::default()))
    }

    /// Flushes the namespace and waits.
    pub fn flush_sync(&mut self, nsid: u32) -> Result<(), Error> {
        self.sync(|q| q.submit_flush(nsid, C::default()))
    }
}
