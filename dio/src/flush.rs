//! A cache flush on its own, for callers that order their own writes (a
//! journal's commit record after the data it describes), as a file system
//! issues `REQ_PREFLUSH` before its log write.

use crate::buf::DmaBuf;
use crate::engine::Dio;
use crate::error::DioError;
use crate::iomap::NoHooks;
use crate::kiocb::{Kiocb, KiocbFlags};
use crate::queue::DioQueue;

impl<Q: DioQueue, B: DmaBuf> Dio<Q, B> {
    /// Makes every write completed so far durable: one Flush command, waited
    /// for. Without a volatile write cache completed writes already are, and no
    /// command is issued.
    pub fn flush(&mut self) -> Result<(), DioError> {
        if !self.caps.volatile_write_cache {
            return Ok(());
        }
        // A write of nothing that needs a sync: the completion path issues its
        // flush and reports it like any other request.
        let slot = self.alloc_slot(true, KiocbFlags::SYNC)?;
        self.slots[slot].submitting = false;
        self.ready.push(slot);
        self.process_ready();
        let mut iocb = Kiocb::new(0, KiocbFlags::SYNC);
        self.finish_sync(slot, &mut iocb, 0, &NoHooks, 0)
            .map(|_| ())
    }
}
