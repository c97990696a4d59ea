//! PRP walking (NVMe Base Specification 2.0, section 4.1.1): turns PRP1/PRP2 and PRP
//! lists into host memory segments, checking the offset rules on the way.

use crate::iommu::{DmaFault, HostSlice, MemView};

/// Why a PRP chain could not be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrpError {
    /// An entry broke an offset rule (PRP Offset Invalid).
    Offset,
    /// An entry or a list pointed at unmapped memory (Data Transfer Error).
    Dma(DmaFault),
}

impl From<DmaFault> for PrpError {
    fn from(f: DmaFault) -> Self {
        PrpError::Dma(f)
    }
}

#[inline]
fn push_range(
    view: &mut MemView,
    mut iova: u64,
    mut len: usize,
    out: &mut Vec<HostSlice>,
) -> Result<(), DmaFault> {
    while len > 0 {
        let s = view.host_slice(iova, len)?;
        iova += s.len() as u64;
        len -= s.len();
        out.push(s);
    }
    Ok(())
}

/// Fills `out` with the host segments of a `len`-byte transfer described by `prp1` and
/// `prp2` with memory page size `ps` (a power of two).
///
/// Rules: PRP1 may carry any dword-aligned offset; every later data entry must be page
/// aligned; PRP2 and chained list pointers must be dword aligned; the last entry of a
/// list page points to the next list page when more than one page of data remains.
pub(crate) fn collect(
    view: &mut MemView,
    prp1: u64,
    prp2: u64,
    len: usize,
    ps: u64,
    out: &mut Vec<HostSlice>,
) -> Result<(), PrpError> {
    out.clear();
    if len == 0 {
        return Ok(());
    }
    let mask = ps - 1;
    if prp1 & 3 != 0 {
        return Err(PrpError::Offset);
    }
    let first = len.min((ps - (prp1 & mask)) as usize);
    push_range(view, prp1, first, out)?;
    let mut remaining = len - first;
    if remaining == 0 {
        return Ok(());
    }
    if remaining as u64 <= ps {
        if prp2 & mask != 0 {
            return Err(PrpError::Offset);
        }
        push_range(view, prp2, remaining, out)?;
        return Ok(());
    }
    if prp2 & 3 != 0 {
        return Err(PrpError::Offset);
    }
    let mut list = prp2;
    loop {
        let slots = (ps - (list & mask)) / 8;
        let mut consumed = false;
        let mut chained = false;
        for i in 0..slots {
            let entry = view.read_u64(list.wrapping_add(8 * i))?;
            if i == slots - 1 && remaining as u64 > ps {
                // The last slot of a list page chains to the next list page.
                if entry & 3 != 0 || !consumed {
                    return Err(PrpError::Offset);
                }
                list = entry;
                chained = true;
                break;
            }
            if entry & mask != 0 {
                return Err(PrpError::Offset);
            }
            let n = remaining.min(ps as usize);
            push_range(view, entry, n, out)?;
            consumed = true;
            remaining -= n;
            if remaining == 0 {
                return Ok(());
            }
        }
        if !chained {
            // Only reachable if a list page had no slots, which `slots >= 1` rules out.
            return Err(PrpError::Offset);
        }
    }
}
