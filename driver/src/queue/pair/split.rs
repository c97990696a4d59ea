//! Reads and writes larger than one command: split into child commands under one
//! parent request, invisible to the caller (as SPDK's `_nvme_ns_cmd_split_request` in
//! `lib/nvme/nvme_ns_cmd.c`, and Linux's block layer splitting a bio at the queue's
//! `max_hw_sectors`).
//!
//! A request whose transfer exceeds the controller's limit per command (MDTS, capped by
//! the PRP list pages each command slot owns) or the 65536-block NLB field is cut at
//! whole blocks into children of at most [`child_blocks`] blocks. Each child carries
//! its slice of the data segments and of the separate metadata buffer, the request's
//! flags (FUA on every child of a FUA write), and goes through
//! [`IoQueuePair::queue_command`], where every transfer is checked against its buffers.
//!
//! The caller sees one completion, with the context it gave, once every child has
//! completed: the first error a child reported (in completion order), or success. A
//! child that times out, is aborted or is cut short by a controller reset reports its
//! error like any command and the request completes once, when its last child does.
//!
//! Limits: every child needs a command slot and an SQ entry, all free when the request
//! is submitted. A pair of depth D takes requests of up to D - 1 children (so up to
//! D - 1 times the per-command transfer) and refuses larger ones with
//! [`Error::RequestTooLarge`]; when fewer slots are free it refuses with
//! [`Error::QueueFull`]. Either way nothing is submitted: children are queued without
//! ringing the doorbell and taken back if any of them is refused.
//!
//! Nothing is allocated per request: parents live in a table with one entry per
//! command slot, and the children's segment lists are built in a buffer sized at queue
//! creation.

use crate::error::{CommandDesc, IoKind, PrpRule};
use crate::pi::Protection;
use crate::queue::prp::Segment;
use crate::queue::tracker::NO_PARENT;
use crate::queue::IoOptions;
use crate::transport::Transport;
use crate::Error;

use super::submit::{check_metadata, Blocks, Transfer, MAX_BLOCKS};
use super::IoQueuePair;

/// One split request while its children are outstanding.
#[derive(Debug)]
struct Parent<C> {
    /// The caller's context, handed back once.
    ctx: C,
    /// Children still outstanding.
    remaining: u16,
    /// The first error a child reported.
    error: Option<Error>,
}

/// The split requests of one queue pair, and the scratch space for splitting.
#[derive(Debug)]
pub(super) struct Splits<C> {
    parents: Box<[Parent<C>]>,
    free: Box<[u16]>,
    free_len: usize,
    /// Child commands outstanding.
    children: usize,
    /// One child's data segments while it is queued.
    segments: Vec<Segment>,
}

impl<C: Copy> Splits<C> {
    /// Room for one split request per command slot (each holds at least one slot until
    /// it completes), and for children of up to `max_segments` data segments.
    pub(super) fn new(slots: u16, max_segments: usize, fill: C) -> Self {
        let parents = (0..slots)
            .map(|_| Parent {
                ctx: fill,
                remaining: 0,
                error: None,
            })
            .collect();
        Splits {
            parents,
            free: (0..slots).rev().collect(),
            free_len: usize::from(slots),
            children: 0,
            segments: Vec::with_capacity(max_segments),
        }
    }

    /// Split requests not yet reported.
    pub(super) fn requests(&self) -> usize {
        self.parents.len() - self.free_len
    }

    /// Child commands outstanding.
    pub(super) fn children(&self) -> usize {
        self.children
    }

    fn take(&mut self, ctx: C, children: u16) -> Option<u16> {
        if self.free_len == 0 {
            return None;
        }
        self.free_len -= 1;
        let p = self.free[self.free_len];
        self.parents[usize::from(p)] = Parent {
            ctx,
            remaining: children,
            error: None,
        };
        Some(p)
    }

    fn put_back(&mut self, p: u16) {
        // Cannot overflow: an index in use is absent from the free list.
        self.free[self.free_len] = p;
        self.free_len += 1;
    }

    /// Records the completion of a child of `p`; hands back the request's context and
    /// result when it was the last one.
    fn child_done(&mut self, p: u16, result: Result<(), Error>) -> Option<(C, Result<(), Error>)> {
        let Some(parent) = self
            .parents
            .get_mut(usize::from(p))
            .filter(|x| x.remaining > 0)
        else {
            // Slots only ever name parents we took: this is a driver bug, not the device's.
            tracing::error!(
                parent = p,
                "completion of a child of no outstanding request"
            );
            return None;
        };
        self.children = self.children.saturating_sub(1);
        if let Err(e) = result {
            parent.error.get_or_insert(e);
        }
        parent.remaining -= 1;
        if parent.remaining > 0 {
            return None;
        }
        let done = (parent.ctx, parent.error.take().map_or(Ok(()), Err));
        self.put_back(p);
        Some(done)
    }
}

/// Most blocks one child command carries: the whole pages of the per-command limit
/// (so a child starting anywhere in a page still fits its slot's PRP list), at most
/// 65536 blocks, and a count that keeps the next child's data and metadata pointers
/// dword aligned. 0 when one block does not fit a command.
pub(super) fn child_blocks(
    max_transfer: u64,
    page_size: u64,
    block_bytes: u32,
    metadata_block_bytes: u16,
) -> u32 {
    // Smallest count of `bytes`-sized blocks that spans a multiple of 4 bytes.
    let step = |bytes: u32| match bytes % 4 {
        0 => 1,
        2 => 2,
        _ => 4,
    };
    let whole_pages = max_transfer / page_size * page_size;
    let by_bytes = whole_pages / u64::from(block_bytes.max(1));
    let n = by_bytes.min(u64::from(MAX_BLOCKS)) as u32;
    let step = step(block_bytes).max(step(u32::from(metadata_block_bytes)));
    n - n % step
}

/// How many commands a queue pair issues for one Read or Write of `blocks` blocks of
/// `block_bytes` buffer bytes each (data plus metadata for extended LBAs) and
/// `metadata_block_bytes` bytes of separate metadata each, on a controller whose
/// per-command limit is `max_transfer_bytes` ([`IoQueuePair::max_transfer_bytes`]) with
/// memory pages of `page_size` bytes: 1 when it fits one command. `None` when one block
/// does not fit a command, or for zero blocks.
///
/// The pair must have at least this many command slots free to take the request.
pub fn commands_per_request(
    max_transfer_bytes: u64,
    page_size: u64,
    block_bytes: u32,
    metadata_block_bytes: u16,
    blocks: u64,
) -> Option<u64> {
    if blocks == 0 || page_size == 0 {
        return None;
    }
    if blocks <= u64::from(MAX_BLOCKS)
        && blocks.checked_mul(u64::from(block_bytes))? <= max_transfer_bytes
    {
        return Some(1);
    }
    let per_child = child_blocks(
        max_transfer_bytes,
        page_size,
        block_bytes,
        metadata_block_bytes,
    );
    (per_child > 0).then(|| blocks.div_ceil(u64::from(per_child)))
}

/// The options of the child starting `_lba_offset` blocks into the request: the
/// request's flags, with the child's slice of the separate metadata buffer.
///
/// Every option whose value depends on where the child starts is advanced here, such
/// as the expected initial logical block reference tag (CDW14) of protection
/// information types 1 and 2, which advances by `lba_offset` when the caller gave one
/// (without one, each child's tag is taken from its own starting LBA).
#[inline]
fn child_options(
    opts: &IoOptions,
    pi: Option<&Protection>,
    lba_offset: u64,
    metadata: Option<Segment>,
) -> IoOptions {
    let ref_tag = match (opts.ref_tag, pi) {
        (Some(tag), Some(p)) => Some(p.block_ref_tag(tag, lba_offset)),
        (tag, _) => tag,
    };
    IoOptions {
        metadata,
        ref_tag,
        ..*opts
    }
}

/// The part of `seg` from `offset` on, `len` bytes long.
fn sub_segment(seg: &Segment, offset: usize, len: usize) -> Segment {
    Segment {
        // Cannot overflow: the request's segments were checked not to wrap.
        iova: seg.iova + offset as u64,
        len,
        ptr: seg.ptr.wrapping_add(offset),
    }
}

/// Fills `out` with the next `len` bytes of `data` from `cursor` (segment index,
/// offset in it) and advances the cursor. False when `out` would outgrow its capacity
/// or `data` runs out.
fn next_segments(
    data: &[Segment],
    cursor: &mut (usize, usize),
    mut len: usize,
    out: &mut Vec<Segment>,
) -> bool {
    out.clear();
    while len > 0 {
        let Some(s) = data.get(cursor.0) else {
            return false;
        };
        if out.len() == out.capacity() {
            return false;
        }
        let take = (s.len - cursor.1).min(len);
        out.push(sub_segment(s, cursor.1, take));
        len -= take;
        cursor.1 += take;
        if cursor.1 == s.len {
            *cursor = (cursor.0 + 1, 0);
        }
    }
    true
}

/// Checks the request's buffers as a whole before they are cut: the data segments are
/// non-empty, do not wrap the address space and add up to exactly `t.bytes`, and the
/// metadata buffer holds exactly `t.metadata_bytes`. Each child is checked again on its
/// own slice where its PRPs are built.
fn check_request(desc: CommandDesc, t: &Transfer<'_>) -> Result<(), Error> {
    let mut total = 0u64;
    for (index, s) in t.data.iter().enumerate() {
        if s.len == 0 || s.iova.checked_add(s.len as u64).is_none() {
            return Err(Error::BadSegment {
                index,
                iova: s.iova,
                len: s.len,
                rule: PrpRule::Empty,
            });
        }
        total += s.len as u64;
    }
    if total != t.bytes {
        return Err(Error::BadSegment {
            index: 0,
            iova: t.data.first().map_or(0, |s| s.iova),
            len: total as usize,
            rule: PrpRule::LengthMismatch,
        });
    }
    check_metadata(desc, t)
}

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    /// Queues a Read or Write of `at` that does not fit one command as child commands
    /// of one request (see the module documentation); `sizes` are the data-buffer and
    /// separate-metadata bytes per block.
    #[cold]
    #[inline(never)]
    pub(super) fn submit_split(
        &mut self,
        kind: IoKind,
        at: Blocks,
        data: &[Segment],
        opts: &IoOptions,
        sizes: (u32, u16),
        ctx: C,
    ) -> Result<(), Error> {
        let Blocks { nsid, slba, blocks } = at;
        let (block_bytes, md_block_bytes) = sizes;
        let desc = CommandDesc::Io {
            kind,
            nsid,
            slba,
            blocks,
        };
        if slba.checked_add(u64::from(blocks)).is_none() {
            return Err(Error::InvalidRequest(format!(
                "{desc}: the blocks run past the largest LBA"
            )));
        }
        let per_child = child_blocks(
            self.max_transfer,
            self.page_size,
            block_bytes,
            md_block_bytes,
        );
        if per_child == 0 {
            return Err(Error::ExceedsMdts {
                command: desc,
                bytes: u64::from(block_bytes),
                max: self.max_transfer,
            });
        }
        let children = blocks.div_ceil(per_child);
        let capacity = self.slots.capacity();
        if children as usize > capacity {
            return Err(Error::RequestTooLarge {
                command: desc,
                commands: children,
                per_command: u64::from(per_child) * u64::from(block_bytes),
                queue_commands: capacity,
            });
        }
        let md_bytes = u64::from(blocks) * u64::from(md_block_bytes);
        check_request(
            desc,
            &Transfer {
                data,
                bytes: u64::from(blocks) * u64::from(block_bytes),
                metadata: opts.metadata,
                metadata_bytes: md_bytes,
            },
        )?;
        let pi = self.ns_geometry(nsid)?.pi;
        self.check_epoch()?;
        if children as usize > self.slots.free() || children as usize > self.sq.free() {
            return Err(self.queue_full());
        }
        // `children <= capacity <= u16::MAX`.
        let Some(p) = self.splits.take(ctx, children as u16) else {
            return Err(self.queue_full());
        };
        let tail = self.sq.tail();
        let free_before = self.slots.free();
        let mut segments = std::mem::take(&mut self.splits.segments);
        let mut cursor = (0, 0);
        let mut refused = None;
        for k in 0..children {
            let first = k * per_child;
            let child = Blocks {
                nsid,
                slba: slba + u64::from(first),
                blocks: per_child.min(blocks - first),
            };
            let child_bytes = child.blocks as usize * block_bytes as usize;
            if !next_segments(data, &mut cursor, child_bytes, &mut segments) {
                refused = Some(Error::BadSegment {
                    index: cursor.0,
                    iova: data.get(cursor.0).map_or(0, |s| s.iova),
                    len: child_bytes,
                    rule: PrpRule::TooManyPages,
                });
                break;
            }
            let metadata = opts.metadata.map(|m| {
                let offset = first as usize * usize::from(md_block_bytes);
                sub_segment(
                    &m,
                    offset,
                    child.blocks as usize * usize::from(md_block_bytes),
                )
            });
            let child_opts = child_options(opts, pi.as_ref(), u64::from(first), metadata);
            if let Err(e) = self.rw_command(kind, child, &segments, &child_opts, sizes, ctx) {
                refused = Some(e);
                break;
            }
        }
        self.splits.segments = segments;
        // Nothing completes while the children are queued: the slots taken since
        // `free_before` are exactly theirs.
        let queued = free_before - self.slots.free();
        if let Some(e) = refused {
            // The doorbell was not rung: the controller has seen none of the children.
            self.sq.rewind(tail);
            // Most recent first, which leaves the free list as it was.
            for _ in 0..queued {
                if let Some(&cid) = self.slots.taken_since(free_before).first() {
                    self.slots.undo_take(cid);
                }
            }
            self.stats.submitted -= queued as u64;
            self.splits.put_back(p);
            return Err(e);
        }
        for k in 0..queued {
            if let Some(&cid) = self.slots.taken_since(free_before).get(k) {
                self.slots.set_parent(cid, p);
            }
        }
        self.splits.children += children as usize;
        Ok(())
    }

    /// Records the completion of a child of split request `parent` and reports the
    /// request with `f` when it was the last child; returns the completions reported.
    #[inline(never)]
    pub(super) fn child_completed(
        &mut self,
        parent: u16,
        result: Result<(), Error>,
        f: &mut impl FnMut(C, Result<(), Error>),
    ) -> usize {
        match self.splits.child_done(parent, result) {
            Some((ctx, result)) => {
                f(ctx, result);
                1
            }
            None => 0,
        }
    }

    /// Reports the completion of a command: to the caller, or to its split request.
    pub(super) fn report(
        &mut self,
        parent: u16,
        ctx: C,
        result: Result<(), Error>,
        f: &mut impl FnMut(C, Result<(), Error>),
    ) -> usize {
        if parent == NO_PARENT {
            f(ctx, result);
            1
        } else {
            self.child_completed(parent, result, f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_hold_whole_pages_of_whole_blocks() {
        // 8 KiB per command on 4 KiB pages.
        assert_eq!(child_blocks(8192, 4096, 512, 0), 16);
        assert_eq!(child_blocks(8192, 4096, 520, 0), 15, "512+8 extended");
        assert_eq!(child_blocks(8192, 4096, 4096, 64), 2, "separate metadata");
        assert_eq!(child_blocks(4096, 4096, 4160, 0), 0, "4096+64 extended");
        // A limit that is not whole pages is cut to whole pages.
        assert_eq!(child_blocks(10_000, 4096, 512, 0), 16);
        // NLB holds at most 65536 blocks.
        assert_eq!(child_blocks(1 << 30, 4096, 512, 0), 65536);
    }

    #[test]
    fn children_keep_data_and_metadata_pointers_dword_aligned() {
        assert_eq!(child_blocks(8192, 4096, 514, 0), 14, "even count of 514");
        assert_eq!(child_blocks(8192, 4096, 513, 0), 12, "multiple of 4 of 513");
        assert_eq!(child_blocks(8192, 4096, 512, 2), 16);
        assert_eq!(child_blocks(8192, 4096, 512, 1), 16);
        assert_eq!(child_blocks(7 * 4096, 4096, 4096, 1), 4);
        assert_eq!(child_blocks(7 * 4096, 4096, 4096, 6), 6);
    }

    #[test]
    fn commands_per_request_is_one_when_the_request_fits() {
        assert_eq!(commands_per_request(8192, 4096, 512, 0, 16), Some(1));
        assert_eq!(commands_per_request(8192, 4096, 512, 0, 17), Some(2));
        assert_eq!(commands_per_request(8192, 4096, 512, 0, 2048), Some(128));
        assert_eq!(commands_per_request(8192, 4096, 520, 0, 2048), Some(137));
        assert_eq!(commands_per_request(1 << 40, 4096, 512, 0, 65537), Some(2));
        assert_eq!(commands_per_request(4096, 4096, 4160, 0, 2), None);
        assert_eq!(commands_per_request(8192, 4096, 512, 0, 0), None);
    }

    #[test]
    fn the_last_child_reports_the_first_error_once() {
        let mut s = Splits::new(4, 4, 0u64);
        let p = s.take(7, 3).unwrap();
        s.children += 3;
        assert!(s.child_done(p, Ok(())).is_none());
        let first = Error::InvalidRequest("first".into());
        assert!(s.child_done(p, Err(first)).is_none());
        let second = Error::InvalidRequest("second".into());
        let (ctx, r) = s.child_done(p, Err(second)).unwrap();
        assert_eq!(ctx, 7);
        assert!(matches!(r, Err(Error::InvalidRequest(m)) if m == "first"));
        assert_eq!((s.requests(), s.children()), (0, 0));
        assert!(s.child_done(p, Ok(())).is_none(), "reported once");
    }

    #[test]
    fn segments_are_cut_at_the_requested_lengths() {
        let seg = |iova, len| Segment {
            iova,
            len,
            ptr: std::ptr::null_mut(),
        };
        let data = [seg(0x1800, 0x800), seg(0x4000, 0x2000), seg(0x9000, 0x100)];
        let mut out = Vec::with_capacity(3);
        let mut cursor = (0, 0);
        assert!(next_segments(&data, &mut cursor, 0x1000, &mut out));
        let got: Vec<_> = out.iter().map(|s| (s.iova, s.len)).collect();
        assert_eq!(got, vec![(0x1800, 0x800), (0x4000, 0x800)]);
        assert!(next_segments(&data, &mut cursor, 0x1900, &mut out));
        let got: Vec<_> = out.iter().map(|s| (s.iova, s.len)).collect();
        assert_eq!(got, vec![(0x4800, 0x1800), (0x9000, 0x100)]);
        assert!(!next_segments(&data, &mut cursor, 1, &mut out), "ran out");
        let mut small = Vec::with_capacity(1);
        assert!(!next_segments(&data, &mut (0, 0), 0x1000, &mut small));
    }
}
