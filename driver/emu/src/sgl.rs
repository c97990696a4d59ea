//! SGL walking (NVMe Base Specification 2.0, section 4.1.2): turns SGL Entry 1 and the
//! segments it chains to into host memory segments, for data (DPTR) and, with PSDT
//! 10b, for metadata (MPTR points at a one-descriptor segment).
//!
//! Supported: Data Block, Segment and Last Segment descriptors with the Address sub
//! type; SGLS reports 01b (no alignment rule), MPTR SGLs (bit 19), and no SGL longer
//! than its data (bit 18 clear). Everything the host gives is bounded: descriptors are
//! read one at a time through the IOMMU view, a chain may hold at most
//! [`MAX_DESCRIPTORS`] descriptors, and the mapped bytes never exceed the transfer.
//!
//! Statuses, as the spec and QEMU's `nvme_map_sgl` give them (all with DNR): a type
//! this controller does not take is SGL Descriptor Type Invalid; the Offset sub type
//! is SGL Offset Invalid; a (Last) Segment descriptor anywhere but at the end of a
//! segment, or too many descriptors, is Invalid Number of SGL Descriptors; a segment
//! whose length is zero or not a multiple of 16, that is not 8-byte aligned, or that a
//! Last Segment chains on from, is Invalid SGL Segment Descriptor; Data Blocks adding
//! up to less or more than the transfer are Data (or Metadata) SGL Length Invalid; an
//! unmapped address is Data Transfer Error.

use nvme_spec::command::Psdt;
use nvme_spec::sgl::{SglDescriptor, SglSubType, SglType, SGL_DESCRIPTOR_SIZE};
use nvme_spec::status::GenericStatus as G;
use nvme_spec::{Status, SubmissionEntry};

use crate::controller::{generic, Ctrl, Ctx};
use crate::iommu::{DmaFault, HostSlice, MemView};
use crate::prp::{self, PrpError};

/// Most descriptors (data and segment) one SGL may hold; a longer chain, such as a
/// segment that points back at itself, is Invalid Number of SGL Descriptors.
pub(crate) const MAX_DESCRIPTORS: usize = 1 << 16;

/// Why an SGL could not be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SglError {
    /// The SGL breaks a rule; complete with this status.
    Invalid(G),
    /// A descriptor or a data block pointed at unmapped memory (Data Transfer Error).
    Dma(DmaFault),
}

impl From<DmaFault> for SglError {
    fn from(f: DmaFault) -> Self {
        SglError::Dma(f)
    }
}

fn invalid(g: G) -> SglError {
    SglError::Invalid(g)
}

fn check_sub_type(d: &SglDescriptor) -> Result<(), SglError> {
    match d.sub_type() {
        SglSubType::ADDRESS => Ok(()),
        SglSubType::OFFSET => Err(invalid(G::SglOffsetInvalid)),
        _ => Err(invalid(G::SglDescriptorTypeInvalid)),
    }
}

/// Maps one Data Block of the transfer; `left` is what the transfer still needs.
fn data_block(
    view: &mut MemView,
    d: &SglDescriptor,
    left: &mut usize,
    out: &mut Vec<HostSlice>,
) -> Result<(), SglError> {
    check_sub_type(d)?;
    let len = d.length as usize;
    if len == 0 {
        return Ok(());
    }
    if len > *left || d.address.checked_add(len as u64).is_none() {
        // More data than the command moves (SGLS bit 18 is clear), or a wrapping block.
        return Err(invalid(G::DataSglLengthInvalid));
    }
    let (mut iova, mut rest) = (d.address, len);
    while rest > 0 {
        let s = view.host_slice(iova, rest)?;
        iova += s.len() as u64;
        rest -= s.len();
        out.push(s);
    }
    *left -= len;
    Ok(())
}

fn read_descriptor(view: &mut MemView, iova: u64) -> Result<SglDescriptor, DmaFault> {
    let mut b = [0u8; SGL_DESCRIPTOR_SIZE];
    view.read(iova, &mut b)?;
    Ok(SglDescriptor::from_bytes(b))
}

/// Fills `out` with the host segments of a `len`-byte transfer described by the SGL
/// whose first descriptor is `first`.
pub(crate) fn collect(
    view: &mut MemView,
    first: SglDescriptor,
    len: usize,
    out: &mut Vec<HostSlice>,
) -> Result<(), SglError> {
    out.clear();
    let mut left = len;
    let mut seen = 1usize;
    let mut segment = match first.kind() {
        SglType::DATA_BLOCK => {
            data_block(view, &first, &mut left, out)?;
            None
        }
        SglType::SEGMENT | SglType::LAST_SEGMENT => Some(first),
        _ => return Err(invalid(G::SglDescriptorTypeInvalid)),
    };
    while let Some(seg) = segment.take() {
        check_sub_type(&seg)?;
        let bytes = seg.length as usize;
        if bytes == 0 || bytes % SGL_DESCRIPTOR_SIZE != 0 || seg.address & 7 != 0 {
            return Err(invalid(G::InvalidSglSegmentDescriptor));
        }
        let count = bytes / SGL_DESCRIPTOR_SIZE;
        seen += count;
        if seen > MAX_DESCRIPTORS {
            return Err(invalid(G::InvalidNumberOfSglDescriptors));
        }
        let last_segment = seg.kind() == SglType::LAST_SEGMENT;
        for i in 0..count {
            let at = seg
                .address
                .checked_add((i * SGL_DESCRIPTOR_SIZE) as u64)
                .ok_or(invalid(G::InvalidSglSegmentDescriptor))?;
            let d = read_descriptor(view, at)?;
            match d.kind() {
                SglType::DATA_BLOCK => data_block(view, &d, &mut left, out)?,
                SglType::SEGMENT | SglType::LAST_SEGMENT => {
                    if i + 1 != count {
                        return Err(invalid(G::InvalidNumberOfSglDescriptors));
                    }
                    if last_segment {
                        return Err(invalid(G::InvalidSglSegmentDescriptor));
                    }
                    segment = Some(d);
                }
                _ => return Err(invalid(G::SglDescriptorTypeInvalid)),
            }
        }
    }
    if left != 0 {
        return Err(invalid(G::DataSglLengthInvalid));
    }
    Ok(())
}

fn status(e: SglError, ctx: &mut Ctx<'_>) -> Status {
    match e {
        SglError::Invalid(g) => generic(g).with_dnr(true),
        SglError::Dma(_) => {
            ctx.counters.dma_errors += 1;
            generic(G::DataTransferError)
        }
    }
}

impl Ctrl {
    /// Checks PSDT of an I/O command: PRPs always, SGLs only when `sgl=on`.
    #[inline]
    pub(crate) fn check_psdt(&self, sqe: &SubmissionEntry) -> Result<(), Status> {
        match sqe.cdw0.psdt() {
            Psdt::Prp => Ok(()),
            Psdt::SglMptrContiguous | Psdt::SglMptrSgl if self.cfg.sgl => Ok(()),
            _ => Err(generic(G::InvalidFieldInCommand)),
        }
    }

    /// Maps the command's `len`-byte data buffer (DPTR: PRPs or an SGL) into the
    /// queue's segment list.
    #[inline]
    pub(crate) fn map_data(
        &self,
        ctx: &mut Ctx<'_>,
        sqe: &SubmissionEntry,
        len: usize,
        ps: u64,
    ) -> Result<(), Status> {
        if sqe.cdw0.psdt() != Psdt::Prp {
            let segs = &mut ctx.scratch.segs;
            return collect(ctx.view, sqe.sgl1(), len, segs).map_err(|e| status(e, ctx));
        }
        match prp::collect(ctx.view, sqe.prp1, sqe.prp2, len, ps, &mut ctx.scratch.segs) {
            Ok(()) => Ok(()),
            Err(PrpError::Offset) => Err(generic(G::PrpOffsetInvalid)),
            Err(PrpError::Dma(_)) => {
                ctx.counters.dma_errors += 1;
                Err(generic(G::DataTransferError))
            }
        }
    }

    /// Maps the command's `len`-byte separate metadata buffer: a contiguous buffer at
    /// MPTR, or with PSDT 10b the SGL whose one-descriptor segment MPTR points at.
    pub(crate) fn map_metadata(
        &self,
        ctx: &mut Ctx<'_>,
        sqe: &SubmissionEntry,
        len: usize,
    ) -> Result<(), Status> {
        if sqe.cdw0.psdt() != Psdt::SglMptrSgl {
            return self.collect_metadata(ctx, sqe.mptr, len);
        }
        if sqe.mptr & 7 != 0 {
            // The segment MPTR points at is qword aligned (NVMe Base 2.0, 4.2).
            return Err(generic(G::InvalidFieldInCommand).with_dnr(true));
        }
        let first = match read_descriptor(ctx.view, sqe.mptr) {
            Ok(d) => d,
            Err(f) => return Err(status(SglError::Dma(f), ctx)),
        };
        match collect(ctx.view, first, len, &mut ctx.scratch.md) {
            Ok(()) => Ok(()),
            Err(SglError::Invalid(G::DataSglLengthInvalid)) => {
                Err(generic(G::MetadataSglLengthInvalid).with_dnr(true))
            }
            Err(e) => Err(status(e, ctx)),
        }
    }
}
