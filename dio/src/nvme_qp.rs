//! The driver's queue pair as a [`DioQueue`], and its DMA buffers as [`DmaBuf`].

use std::cell::{Ref, RefCell};
use std::time::Duration;

use nvme::{Controller, DmaBuffer, DmaSegment, IoFlags, IoOptions, IoQueuePair, Transport};

use crate::buf::DmaBuf;
use crate::error::{Cause, DioError};
use crate::queue::{CommandStatus, DeviceCaps, DioQueue, IoCommand, QueueError, Segment};

/// Most data segments one command takes from the layer.
pub const MAX_SEGMENTS: usize = 16;

/// One driver queue pair bound to one namespace.
pub struct NvmeQueue<T: Transport> {
    qp: IoQueuePair<T, u64>,
    nsid: u32,
    /// Flags every read and write carries: PRACT on a protection-information namespace.
    flags: IoFlags,
    caps: DeviceCaps,
    /// Completions reaped while waiting for the interrupt; handed out by the next poll.
    stash: Vec<(u64, CommandStatus)>,
    /// The driver's errors of commands it failed without a device status, by tag, until
    /// the layer takes them (at most the queue depth: the oldest goes first).
    causes: Vec<(u64, nvme::Error)>,
}

/// The flags every command on a namespace of format `id` carries, or why file data cannot
/// live there: file data is plain bytes and cannot carry per-block metadata, in the data
/// buffer (extended LBAs) or beside it (MPTR). Metadata that is only the protection
/// information tuple is the exception: with PRACT the controller generates the tuple on
/// writes and strips it on reads, and the buffers hold data alone.
fn format_flags(id: &nvme::spec::IdentifyNamespace) -> Result<IoFlags, DioError> {
    use nvme::spec::identify::MetadataPlacement;
    let format = id.format().map_err(|_| DioError::InvalidRequest {
        reason: "the namespace reports a reserved or inconsistent format",
    })?;
    let pi_only = format.protection.is_enabled()
        && usize::from(format.metadata_size) == nvme::spec::pi::PI_TUPLE_SIZE;
    match format.placement {
        MetadataPlacement::None => Ok(IoFlags::empty()),
        _ if pi_only => Ok(IoFlags::PRACT),
        MetadataPlacement::Extended => Err(DioError::InvalidRequest {
            reason: "the namespace is formatted with extended LBAs (metadata inside each \
                     block, not only protection information the controller could insert \
                     and strip) and file data cannot carry per-block metadata",
        }),
        MetadataPlacement::Separate => Err(DioError::InvalidRequest {
            reason: "the namespace is formatted with separate per-block metadata (not only \
                     protection information the controller could insert and strip) and \
                     file data cannot carry per-block metadata",
        }),
    }
}

impl<T: Transport> NvmeQueue<T> {
    /// Binds `qp` to namespace `nsid` of `ctrl`, taking the device properties from
    /// Identify Controller and Identify Namespace.
    pub fn new(ctrl: &Controller<T>, qp: IoQueuePair<T, u64>, nsid: u32) -> Result<Self, DioError> {
        let ns = ctrl.namespace(nsid).ok_or(DioError::InvalidRequest {
            reason: "the namespace is not active on this controller",
        })?;
        let flags = format_flags(&ns.identify)?;
        let id = ctrl.identify_controller();
        let caps = DeviceCaps {
            lba_size: ns.lba_size,
            capacity_lbas: ns.blocks,
            volatile_write_cache: id.vwc.present(),
            fua: true,
            max_transfer: qp.max_transfer_bytes().min(usize::MAX as u64) as usize,
            write_zeroes: id.oncs.write_zeroes(),
            page_size: ctrl.page_size().min(u64::from(u32::MAX)) as u32,
            max_segments: MAX_SEGMENTS,
        };
        let stash = Vec::with_capacity(usize::from(qp.depth()));
        let causes = Vec::with_capacity(usize::from(qp.depth()));
        Ok(NvmeQueue {
            qp,
            nsid,
            flags,
            caps,
            stash,
            causes,
        })
    }

    /// The queue pair.
    pub fn queue_pair(&mut self) -> &mut IoQueuePair<T, u64> {
        &mut self.qp
    }

    /// The namespace the queue issues to.
    pub fn nsid(&self) -> u32 {
        self.nsid
    }

    /// [`DioQueue::poll`] when completions wait in the stash: those first, then
    /// the queue pair for the rest of `max`.
    #[cold]
    #[inline(never)]
    fn poll_stashed<F: FnMut(u64, CommandStatus)>(&mut self, max: usize, mut done: F) -> usize {
        let k = self.stash.len().min(max);
        for (tag, st) in self.stash.drain(..k) {
            done(tag, st);
        }
        let mut n = k;
        if n < max {
            let causes = &mut self.causes;
            n += self
                .qp
                .process_completions(max - n, |tag, r| done(tag, status_of(causes, tag, r)));
        }
        n
    }

    /// Commands with several segments, Write Zeroes and Flush.
    #[inline(never)]
    fn submit_other(&mut self, cmd: &IoCommand<'_>, tag: u64) -> Result<(), QueueError> {
        const EMPTY: DmaSegment = DmaSegment {
            iova: 0,
            len: 0,
            ptr: std::ptr::null_mut(),
        };
        let r = match *cmd {
            IoCommand::Read {
                lba,
                blocks,
                segments,
            } => {
                let mut segs = [EMPTY; MAX_SEGMENTS];
                let data = convert(&mut segs, segments)?;
                self.qp
                    .submit_read_with_flags(self.nsid, lba, blocks, data, self.flags, tag)
            }
            IoCommand::Write {
                lba,
                blocks,
                segments,
                fua,
            } => {
                let mut segs = [EMPTY; MAX_SEGMENTS];
                let data = convert(&mut segs, segments)?;
                let flags = if fua { IoFlags::FUA } else { IoFlags::empty() };
                self.qp
                    .submit_write(self.nsid, lba, blocks, data, flags | self.flags, tag)
            }
            IoCommand::WriteZeroes { fua: true, .. } => {
                return Err(QueueError::Invalid(
                    "the driver offers no Write Zeroes with FUA",
                ))
            }
            IoCommand::WriteZeroes { lba, blocks, .. } => self
                .qp
                .submit_write_zeroes(self.nsid, lba, blocks, false, tag),
            IoCommand::Flush => self.qp.submit_flush(self.nsid, tag),
            IoCommand::Compare {
                lba,
                blocks,
                segments,
            } => {
                let mut segs = [EMPTY; MAX_SEGMENTS];
                let data = convert(&mut segs, segments)?;
                let opts = IoOptions {
                    flags: self.flags,
                    ..IoOptions::default()
                };
                self.qp
                    .submit_compare(self.nsid, lba, blocks, data, &opts, tag)
            }
        };
        r.map_err(queue_error)
    }
}

#[inline]
fn status_of(
    causes: &mut Vec<(u64, nvme::Error)>,
    tag: u64,
    r: Result<(), nvme::Error>,
) -> CommandStatus {
    match r {
        Ok(()) => CommandStatus::SUCCESS,
        Err(e) => error_status(causes, tag, e),
    }
}

/// The status of a failed command (kept out of line: the success path is hot). A
/// failure without a device status is [`CommandStatus::QUEUE_FAILED`], its error kept
/// in `causes` for [`DioQueue::take_cause`].
#[cold]
#[inline(never)]
fn error_status(causes: &mut Vec<(u64, nvme::Error)>, tag: u64, e: nvme::Error) -> CommandStatus {
    match e.status() {
        Some(status) => CommandStatus {
            status: (u16::from(status.sct().into_bits()) << 8) | u16::from(status.sc()),
            dnr: status.dnr(),
        },
        None => {
            if causes.len() == causes.capacity() && !causes.is_empty() {
                // Never taken (a request given up): the oldest makes room, no allocation.
                causes.remove(0);
            }
            causes.push((tag, e));
            CommandStatus::QUEUE_FAILED
        }
    }
}

#[cold]
#[inline(never)]
fn queue_error(e: nvme::Error) -> QueueError {
    match e {
        nvme::Error::QueueFull { .. } => QueueError::Full,
        nvme::Error::ExceedsMdts { .. } => QueueError::Invalid("the transfer exceeds MDTS"),
        nvme::Error::BadSegment { .. } => {
            QueueError::Invalid("the buffer breaks the PRP rules of the controller page size")
        }
        nvme::Error::InvalidRequest(_) => QueueError::Invalid("the driver rejected the command"),
        other => QueueError::Failed(Cause::new(other)),
    }
}

/// The driver's form of one segment (the driver builds PRPs from the IOVA alone).
#[inline]
fn segment(s: Segment) -> DmaSegment {
    DmaSegment {
        iova: s.iova,
        len: s.len as usize,
        ptr: std::ptr::null_mut(),
    }
}

fn convert<'a>(
    out: &'a mut [DmaSegment; MAX_SEGMENTS],
    from: &[Segment],
) -> Result<&'a [DmaSegment], QueueError> {
    if from.len() > MAX_SEGMENTS {
        return Err(QueueError::Invalid(
            "too many data segments for one command",
        ));
    }
    for (d, s) in out.iter_mut().zip(from) {
        d.iova = s.iova;
        d.len = s.len as usize;
    }
    Ok(&out[..from.len()])
}

impl<T: Transport> DioQueue for NvmeQueue<T> {
    #[inline]
    fn caps(&self) -> DeviceCaps {
        self.caps
    }

    #[inline(always)]
    fn submit(&mut self, cmd: &IoCommand<'_>, tag: u64) -> Result<(), QueueError> {
        // The common commands, one segment each, stay inline; the rest go out of line.
        let r = match *cmd {
            IoCommand::Read {
                lba,
                blocks,
                segments: &[s],
            } => self.qp.submit_read_with_flags(
                self.nsid,
                lba,
                blocks,
                &[segment(s)],
                self.flags,
                tag,
            ),
            IoCommand::Write {
                lba,
                blocks,
                segments: &[s],
                fua,
            } => {
                let flags = if fua { IoFlags::FUA } else { IoFlags::empty() };
                self.qp.submit_write(
                    self.nsid,
                    lba,
                    blocks,
                    &[segment(s)],
                    flags | self.flags,
                    tag,
                )
            }
            _ => return self.submit_other(cmd, tag),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) => Err(queue_error(e)),
        }
    }

    #[inline]
    fn poll<F: FnMut(u64, CommandStatus)>(
        &mut self,
        max: usize,
        mut done: F,
    ) -> Result<usize, QueueError> {
        if !self.stash.is_empty() {
            return Ok(self.poll_stashed(max, done));
        }
        let causes = &mut self.causes;
        Ok(self
            .qp
            .process_completions(max, |tag, r| done(tag, status_of(causes, tag, r))))
    }

    #[inline(always)]
    fn poll_one(&mut self) -> Option<(u64, CommandStatus)> {
        if !self.stash.is_empty() {
            // Completions are routed by tag, so their order does not matter.
            return self.stash.pop();
        }
        let mut one = None;
        let causes = &mut self.causes;
        self.qp
            .process_completions(1, |tag, r| one = Some((tag, status_of(causes, tag, r))));
        one
    }

    fn wait_interrupt(&mut self, timeout: Duration) -> Result<(), QueueError> {
        let room = self.stash.capacity() - self.stash.len();
        if room == 0 || !self.stash.is_empty() {
            return Ok(());
        }
        let stash = &mut self.stash;
        let causes = &mut self.causes;
        self.qp
            .wait_completions(room, timeout, |tag, r| {
                stash.push((tag, status_of(causes, tag, r)))
            })
            .map(|_| ())
            .map_err(|e| QueueError::Failed(Cause::new(e)))
    }

    /// The driver's: its I/O timeout, abort and reset (see
    /// [`IoQueuePair::verdict_limit`]).
    fn verdict_limit(&self) -> Duration {
        self.qp.verdict_limit()
    }

    fn take_cause(&mut self, tag: u64) -> Option<Cause> {
        let i = self.causes.iter().position(|&(t, _)| t == tag)?;
        Some(Cause::new(self.causes.swap_remove(i).1))
    }
}

/// A driver DMA buffer; the cell gives the `&self` writes the layer needs
/// (hole reads zero-fill buffers the layer only borrows).
impl DmaBuf for RefCell<DmaBuffer> {
    #[inline]
    fn len(&self) -> usize {
        self.borrow().len()
    }

    #[inline]
    fn iova_at(&self, offset: usize) -> Option<u64> {
        let b = self.borrow();
        (offset < b.len()).then(|| b.iova() + offset as u64)
    }

    fn zero(&self, offset: usize, len: usize) -> bool {
        self.borrow_mut().fill(offset, len, 0).is_ok()
    }

    fn read_at(&self, offset: usize, dst: &mut [u8]) -> bool {
        self.borrow().read(offset, dst).is_ok()
    }

    fn write_at(&self, offset: usize, src: &[u8]) -> bool {
        self.borrow_mut().write(offset, src).is_ok()
    }
}

/// A driver DMA buffer for the layer's requests.
///
/// Its device address and length are read once, when it is made, so a request
/// finds them without borrowing the buffer. The buffer inside is read and written
/// through these methods and never replaced, so they stay true.
#[derive(Debug)]
pub struct IoBuffer {
    iova: u64,
    len: usize,
    buf: RefCell<DmaBuffer>,
}

impl IoBuffer {
    /// Wraps `buf`.
    pub fn new(buf: DmaBuffer) -> Self {
        IoBuffer {
            iova: buf.iova(),
            len: buf.len(),
            buf: RefCell::new(buf),
        }
    }

    /// The device address of the first byte.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole buffer as one segment, for the driver's own commands.
    pub fn as_segment(&self) -> DmaSegment {
        self.buf.borrow().as_segment()
    }

    /// The buffer, for reading (it must not be borrowed while a request writes it).
    pub fn buffer(&self) -> Ref<'_, DmaBuffer> {
        self.buf.borrow()
    }

    /// Copies `dst.len()` bytes at `offset` into `dst`.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), hugepages::Error> {
        self.buf.borrow().read(offset, dst)
    }

    /// Copies `src` into the buffer at `offset`.
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<(), hugepages::Error> {
        self.buf.borrow_mut().write(offset, src)
    }

    /// Sets `len` bytes at `offset` to `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), hugepages::Error> {
        self.buf.borrow_mut().fill(offset, len, byte)
    }

    /// The buffer, unwrapped.
    pub fn into_inner(self) -> DmaBuffer {
        self.buf.into_inner()
    }
}

impl DmaBuf for IoBuffer {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn iova_at(&self, offset: usize) -> Option<u64> {
        (offset < self.len).then(|| self.iova + offset as u64)
    }

    fn zero(&self, offset: usize, len: usize) -> bool {
        self.fill(offset, len, 0).is_ok()
    }

    fn read_at(&self, offset: usize, dst: &mut [u8]) -> bool {
        self.read(offset, dst).is_ok()
    }

    fn write_at(&self, offset: usize, src: &[u8]) -> bool {
        self.write(offset, src).is_ok()
    }
}
