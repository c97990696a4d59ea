//! Noticing a device that disappeared (surprise removal) while commands wait for it.
//!
//! A removed PCIe device reads all ones and never completes anything. The deadline check
//! reads CSTS only every quarter I/O timeout, so a pair whose polls find nothing reads
//! it sooner: once [`crate::Options::removal_check_interval`] has passed without a
//! completion, measured on the coarse clock the pair already reads every
//! [`CLOCK_POLLS`](super::clock::CLOCK_POLLS) polls. A pair whose completions keep
//! arriving never reads the register; an empty poll costs nothing more. Linux treats
//! `CSTS == 0xffffffff` the same way (`nvme_should_reset` in `drivers/nvme/host/pci.c`).

use std::time::Duration;

use crate::spec::registers::offset;
use crate::spec::Csts;
use crate::transport::Transport;
use crate::Error;

use super::IoQueuePair;

/// What the pair last saw of its own progress, for [`IoQueuePair::watch_removal`].
#[derive(Debug, Default)]
pub(super) struct RemovalWatch {
    /// The pair's completion count at the last look.
    completed: u64,
    /// The clock reading since which no completion arrived (as far as the looks tell).
    idle_since_ns: u64,
}

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    /// Reads CSTS once the polls have found nothing for the removal check interval
    /// (`now_ns` on the pair's clock, commands outstanding). A device that reads all
    /// ones is gone: every outstanding command is reported to `f` with
    /// [`Error::DeviceGone`] and `Some(reported)` returned. A fatal status makes the
    /// next deadline check run at once (it resets the controller).
    #[inline]
    pub(super) fn watch_removal(
        &mut self,
        now_ns: u64,
        f: &mut impl FnMut(C, Result<(), Error>),
    ) -> Option<usize> {
        let w = &mut self.removal;
        if self.stats.completed != w.completed {
            w.completed = self.stats.completed;
            w.idle_since_ns = now_ns;
            return None;
        }
        let interval = self.shared.options.removal_check_interval;
        if Duration::from_nanos(now_ns.saturating_sub(w.idle_since_ns)) < interval {
            return None;
        }
        w.idle_since_ns = now_ns;
        self.check_presence(f)
    }

    /// The CSTS read of [`Self::watch_removal`]; out of line, as it is rare.
    #[cold]
    #[inline(never)]
    fn check_presence(&mut self, f: &mut impl FnMut(C, Result<(), Error>)) -> Option<usize> {
        let raw = self.shared.t.read32(offset::CSTS);
        if raw == u32::MAX {
            return Some(self.device_gone(f));
        }
        if Csts::from_bits(raw).cfs() {
            self.clock.next_check_ns = 0;
        }
        None
    }

    /// The device is gone: marks the controller so (every later call on it and on its
    /// queue pairs fails with [`Error::DeviceGone`]; no reset is tried) and reports
    /// every outstanding command of this pair with that error. Other pairs report theirs
    /// at their next call.
    #[cold]
    #[inline(never)]
    pub(super) fn device_gone(&mut self, f: &mut impl FnMut(C, Result<(), Error>)) -> usize {
        self.stats.removals += 1;
        self.shared.note_gone(&Error::DeviceGone {
            device: self.shared.name.clone(),
            during: "I/O",
            reason: self.shared.t.failure(),
        });
        tracing::error!(
            qid = self.qid,
            outstanding = self.slots.outstanding(),
            "device is gone; failing the outstanding commands"
        );
        // Marks every outstanding command failed; the state keeps the pair's epoch
        // stale, so every later call reports the device gone.
        let _ = self.recover();
        self.deliver_failed(f)
    }
}
