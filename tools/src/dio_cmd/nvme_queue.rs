//! The driver's queue pair and DMA buffers as the `dio` layer's [`DioQueue`] and
//! [`DmaBuf`].

use std::cell::RefCell;
use std::time::Duration;

use dio::{CommandStatus, DeviceCaps, DioQueue, DmaBuf, IoCommand, QueueError, Segment};
use nvme::{Controller, DmaBuffer, DmaSegment, IoQueuePair, Transport};

/// Most data segments one command takes from the layer.
pub const MAX_SEGMENTS: usize = 16;
/// Generic Command Status "Internal Error", reported for completions the driver
/// failed itself (timeout, controller reset) rather than with a device status.
const INTERNAL_ERROR: u16 = 0x06;

/// A driver DMA buffer usable by the `dio` layer (which works through `&self`).
#[derive(Debug)]
pub struct DioBuffer(RefCell<DmaBuffer>);

impl DioBuffer {
    /// Wraps `buf`.
    pub fn new(buf: DmaBuffer) -> Self {
        Self(RefCell::new(buf))
    }
}

impl DmaBuf for DioBuffer {
    fn len(&self) -> usize {
        self.0.borrow().len()
    }

    fn iova_at(&self, offset: usize) -> Option<u64> {
        let b = self.0.borrow();
        (offset < b.len()).then(|| b.iova() + offset as u64)
    }

    fn zero(&self, offset: usize, len: usize) -> bool {
        self.0.borrow_mut().fill(offset, len, 0).is_ok()
    }

    fn read_at(&self, offset: usize, dst: &mut [u8]) -> bool {
        self.0.borrow().read(offset, dst).is_ok()
    }

    fn write_at(&self, offset: usize, src: &[u8]) -> bool {
        self.0.borrow_mut().write(offset, src).is_ok()
    }
}

/// One driver queue pair bound to one namespace, as a [`DioQueue`].
pub struct NvmeDioQueue<T: Transport> {
    qp: IoQueuePair<T, u64>,
    nsid: u32,
    caps: DeviceCaps,
    /// Completions collected while waiting for an interrupt, delivered by the next poll.
    stash: Vec<(u64, CommandStatus)>,
}

impl<T: Transport> NvmeDioQueue<T> {
    /// Wraps `qp` for namespace `nsid` of `ctrl`; `None` if the namespace is not active.
    pub fn new(ctrl: &Controller<T>, qp: IoQueuePair<T, u64>, nsid: u32) -> Option<Self> {
        let ns = ctrl.namespace(nsid)?;
        let id = ctrl.identify_controller();
        let caps = DeviceCaps {
            lba_size: ns.lba_size,
            capacity_lbas: ns.blocks,
            volatile_write_cache: id.vwc.present(),
            fua: true,
            max_transfer: ctrl.max_transfer_bytes().min(usize::MAX as u64) as usize,
            // The driver's Write Zeroes takes no FUA bit; zeroing by writing a zero
            // buffer keeps the FUA decision exact.
            write_zeroes: false,
            page_size: ctrl.page_size() as u32,
            max_segments: MAX_SEGMENTS,
        };
        let stash = Vec::with_capacity(usize::from(qp.depth()));
        Some(Self {
            qp,
            nsid,
            caps,
            stash,
        })
    }
}

fn status_of(r: Result<(), nvme::Error>) -> CommandStatus {
    match r {
        Ok(()) => CommandStatus::SUCCESS,
        Err(nvme::Error::CommandFailed { status, .. }) => CommandStatus {
            status: (u16::from(status.sct().into_bits()) << 8) | u16::from(status.sc()),
            dnr: status.dnr(),
        },
        Err(e) => {
            tracing::warn!(error = %e, "command failed without a device status");
            CommandStatus {
                status: INTERNAL_ERROR,
                dnr: false,
            }
        }
    }
}

fn queue_error(e: nvme::Error) -> QueueError {
    match e {
        nvme::Error::QueueFull { .. } => QueueError::Full,
        nvme::Error::ExceedsMdts { .. } => QueueError::Invalid("transfer exceeds MDTS"),
        nvme::Error::BadSegment { .. } => {
            QueueError::Invalid("buffer cannot be described with PRPs")
        }
        nvme::Error::InvalidRequest(_) => QueueError::Invalid("request rejected by the driver"),
        other => QueueError::Failed(other.to_string()),
    }
}

impl<T: Transport> DioQueue for NvmeDioQueue<T> {
    fn caps(&self) -> DeviceCaps {
        self.caps
    }

    fn submit(&mut self, cmd: &IoCommand<'_>, tag: u64) -> Result<(), QueueError> {
        let mut segs = [DmaSegment {
            iova: 0,
            len: 0,
            ptr: std::ptr::null_mut(),
        }; MAX_SEGMENTS];
        let convert = |segs: &mut [DmaSegment; MAX_SEGMENTS], from: &[Segment]| {
            if from.len() > MAX_SEGMENTS {
                return Err(QueueError::Invalid("too many data segments"));
            }
            for (d, s) in segs.iter_mut().zip(from) {
                d.iova = s.iova;
                d.len = s.len as usize;
            }
            Ok(from.len())
        };
        let r = match *cmd {
            IoCommand::Read {
                lba,
                blocks,
                segments,
            } => {
                let n = convert(&mut segs, segments)?;
                self.qp.submit_read(self.nsid, lba, blocks, &segs[..n], tag)
            }
            IoCommand::Write {
                lba,
                blocks,
                segments,
                fua,
            } => {
                let n = convert(&mut segs, segments)?;
                self.qp
                    .submit_write(self.nsid, lba, blocks, &segs[..n], fua, tag)
            }
            IoCommand::WriteZeroes { fua: true, .. } => {
                return Err(QueueError::Invalid("Write Zeroes with FUA is not offered"))
            }
            IoCommand::WriteZeroes {
                lba,
                blocks,
                fua: false,
            } => self
                .qp
                .submit_write_zeroes(self.nsid, lba, blocks, false, tag),
            IoCommand::Flush => self.qp.submit_flush(self.nsid, tag),
        };
        r.map_err(queue_error)
    }

    fn poll<F: FnMut(u64, CommandStatus)>(
        &mut self,
        max: usize,
        mut done: F,
    ) -> Result<usize, QueueError> {
        let mut n = 0;
        let from_stash = self.stash.len().min(max);
        for (tag, st) in self.stash.drain(..from_stash) {
            done(tag, st);
            n += 1;
        }
        if n < max {
            n += self
                .qp
                .process_completions(max - n, |tag, r| done(tag, status_of(r)));
        }
        Ok(n)
    }

    fn wait_interrupt(&mut self, timeout: Duration) -> Result<(), QueueError> {
        if !self.stash.is_empty() {
            return Ok(());
        }
        let room = self.stash.capacity();
        let stash = &mut self.stash;
        self.qp
            .wait_completions(room, timeout, |tag, r| stash.push((tag, status_of(r))))
            .map(|_| ())
            .map_err(|e| QueueError::Failed(e.to_string()))
    }
}
