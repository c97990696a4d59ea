//! `nvme-perf` on a zoned namespace: which workloads fit zones, and the queue that
//! places writes at write pointers (`-w write`, one writer per zone) or sends them as
//! Zone Appends (`-w append`, the device places the data, any queue depth).
//!
//! Writes never go where the engine's workload generator says: each goes to a zone
//! of the thread's share of the span, round robin. A `-w write` zone has at most one
//! write in flight (the next starts at the write pointer the last one moved); an
//! `-w append` zone takes appends until its capacity is reserved. The run's zones are
//! reset first; it writes no more zones than the namespace's open and active zone
//! limits allow at once. When every zone of the share is full, no more writes are submitted
//! and the run idles until its time is up (a larger --span or a shorter -t avoids it).
//! With `--verify`, every append is recorded with the LBA the device returned, and
//! after the run each one is read back there and checked against its pattern.

use nvme::spec::zns::{ZoneReportFilter, ZoneSendAction};
use nvme::zns::Zone;
use nvme::{IoQueuePair, Namespace, Transport};

use super::args::{PerfArgs, Workload};
use super::engine::{PerfQueue, SubmitError};
use super::pattern;
use super::run::NvmeQueue;
use super::stats::ThreadStats;
use crate::cli::ToolError;

/// Refuses a workload that does not fit the namespace: random or mixed writes on a
/// zoned namespace, Zone Append on one that is not zoned.
pub fn check_workload(args: &PerfArgs, ns: &Namespace) -> Result<(), ToolError> {
    let w = args.workload;
    match (&ns.zoned, w) {
        (Some(z), Workload::Randwrite | Workload::Rw | Workload::Randrw) => {
            Err(ToolError::Invalid(format!(
                "-w {}: namespace {} is zoned: each zone ({} blocks) must be written sequentially from its write pointer, and the device refuses any other write (Zone Invalid Write); use -w write (sequential writes, one writer per zone) or -w append (Zone Append, which the device places, at any queue depth); reads (-w read, -w randread) go anywhere",
                w.name(),
                ns.nsid,
                z.zone_size_blocks
            )))
        }
        (None, Workload::Append) => Err(ToolError::Invalid(format!(
            "-w append: namespace {} is not zoned (its command set is {}); Zone Append is a command of the Zoned Namespace Command Set: use -w write",
            ns.nsid, ns.command_set
        ))),
        _ => Ok(()),
    }
}

/// Whether the run writes a zoned namespace (and so resets its zones first).
pub fn writes_zones(args: &PerfArgs, ns: &Namespace) -> bool {
    ns.zoned.is_some() && matches!(args.workload, Workload::Write | Workload::Append)
}

/// Resets the zones that lie wholly in the first `span_blocks` blocks (all zones at
/// once when the span is the whole namespace) and reports the first of them, at most
/// as many as the namespace's open and active zone limits allow to be written at
/// once, so `threads` writers can share them; refuses fewer zones than writers.
pub fn reset_span<T: Transport>(
    ctrl: &nvme::Controller<T>,
    qp: &mut IoQueuePair<T, u64>,
    ns: &Namespace,
    span_blocks: u64,
    threads: usize,
) -> Result<Vec<Zone>, ToolError> {
    let Some(z) = ns.zoned else {
        return Ok(Vec::new());
    };
    let whole = span_blocks.min(ns.blocks) / z.zone_size_blocks;
    // Each zone written at once is open and active: stay within both limits.
    let limit = [z.max_open, z.max_active].into_iter().flatten().min();
    let zones = limit.map_or(whole, |l| whole.min(u64::from(l)));
    if zones < threads as u64 {
        let limits = limit.map_or(String::new(), |l| {
            format!(" (the namespace lets {l} zones be open and active at once)")
        });
        return Err(ToolError::Invalid(format!(
            "--span holds {whole} whole zones of {} blocks{limits}, fewer than the {threads} queue pairs that each write their own zones; enlarge --span or lower --qpairs",
            z.zone_size_blocks
        )));
    }
    if span_blocks >= ns.blocks {
        qp.zone_action(ns.nsid, 0, ZoneSendAction::Reset, true)?;
    } else {
        for k in 0..whole {
            let zslba = k * z.zone_size_blocks;
            qp.zone_action(ns.nsid, zslba, ZoneSendAction::Reset, false)
                .map_err(|e| qp.locate_zone_error(e))?;
        }
    }
    let bytes = 64 * 1024;
    let mut buf = ctrl
        .allocator()
        .alloc(bytes, ctrl.page_size() as usize)
        .map_err(|source| ToolError::Memory { bytes, source })?;
    let mut all = qp.report_zones_all(ns.nsid, ZoneReportFilter::All, &mut buf)?;
    all.truncate(zones as usize);
    Ok(all)
}

/// One zone a thread writes.
#[derive(Debug, Clone, Copy)]
struct Lane {
    zslba: u64,
    /// End of the writable capacity.
    end: u64,
    /// Next LBA to write (`-w write`), or end of the blocks reserved by appends.
    next: u64,
    /// Writes in flight.
    busy: u32,
}

/// An append that completed: where the device put it and the pattern it carries.
#[derive(Debug, Clone, Copy)]
struct Appended {
    lba: u64,
    pattern_lba: u64,
    generation: u32,
}

/// The zones of one thread and how it writes them.
pub struct ZoneLanes {
    lanes: Vec<Lane>,
    cursor: usize,
    append: bool,
    blocks: u32,
    /// The lane and the pattern header of each slot's write in flight.
    slot_write: Vec<Option<(usize, u64, u32)>>,
    /// Completed appends to check after the run (`--verify`; preallocated).
    appended: Option<Vec<Appended>>,
}

impl ZoneLanes {
    /// Lanes for thread `t` of `threads`: its share of `zones` (the span's zones as
    /// reported after the reset), written in I/Os of `blocks` blocks through `depth`
    /// slots.
    #[allow(clippy::too_many_arguments)]
    pub fn for_thread(
        ns: &Namespace,
        zones: &[Zone],
        t: usize,
        threads: usize,
        append: bool,
        blocks: u32,
        depth: usize,
        verify: bool,
    ) -> Option<Self> {
        ns.zoned?;
        let n = zones.len();
        let share = &zones[n * t / threads.max(1)..n * (t + 1) / threads.max(1)];
        let lanes: Vec<Lane> = share
            .iter()
            .map(|z| Lane {
                zslba: z.zslba,
                end: z.zslba + z.zcap,
                next: z.wp,
                busy: 0,
            })
            .collect();
        let capacity: u64 = lanes.iter().map(|l| l.end - l.next).sum();
        let ios = capacity / u64::from(blocks.max(1));
        Some(ZoneLanes {
            lanes,
            cursor: 0,
            append,
            blocks,
            slot_write: vec![None; depth],
            appended: (append && verify).then(|| Vec::with_capacity(ios as usize)),
        })
    }

    /// The next lane with room for an I/O (for `-w write`, one with no write in
    /// flight), round robin.
    fn pick(&mut self) -> Option<usize> {
        let n = self.lanes.len();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            let l = &self.lanes[i];
            if l.next + u64::from(self.blocks) <= l.end && (self.append || l.busy == 0) {
                self.cursor = (i + 1) % n;
                return Some(i);
            }
        }
        None
    }
}

/// A queue pair for `nvme-perf`: plain, or writing zones through [`ZoneLanes`].
pub struct ZonedQueue<T: Transport> {
    /// The queue pair and its slot buffers.
    pub inner: NvmeQueue<T>,
    zones: Option<ZoneLanes>,
    scratch: Vec<u8>,
}

impl<T: Transport> ZonedQueue<T> {
    /// `inner` writing through `zones` when given.
    pub fn new(inner: NvmeQueue<T>, zones: Option<ZoneLanes>) -> Self {
        ZonedQueue {
            inner,
            zones,
            scratch: vec![0u8; 16],
        }
    }

    /// Reads every recorded append back at the LBA the device returned and checks its
    /// pattern (`--verify` with `-w append`); `block_bytes` is the buffer's block size
    /// and `lba_size` its data part.
    pub fn verify_appends(&mut self, stats: &mut ThreadStats, block_bytes: usize, lba_size: usize) {
        let Some(appended) = self.zones.as_mut().and_then(|z| z.appended.take()) else {
            return;
        };
        let blocks = self.zones.as_ref().map_or(0, |z| z.blocks);
        let mut buf = vec![0u8; blocks as usize * block_bytes];
        for a in &appended {
            if let Err(e) = self.inner.read_slot_sync(0, a.lba, blocks) {
                stats
                    .record_error(|| format!("verify read of the append at LBA {:#x}: {e}", a.lba));
                continue;
            }
            self.inner.fetch(0, &mut buf);
            for (b, block) in buf.chunks_exact(block_bytes).enumerate() {
                stats.verified_blocks += 1;
                let want = a.pattern_lba + b as u64;
                if let Err(m) = pattern::check(block, want, block_bytes, lba_size, a.generation) {
                    stats.record_mismatch(m);
                }
            }
        }
    }
}

impl<T: Transport> PerfQueue for ZonedQueue<T> {
    #[inline]
    fn submit(
        &mut self,
        read: bool,
        lba: u64,
        blocks: u32,
        slot: usize,
    ) -> Result<(), SubmitError> {
        let Some(z) = self.zones.as_mut().filter(|_| !read) else {
            return self.inner.submit(read, lba, blocks, slot);
        };
        let Some(i) = z.pick() else {
            return Err(SubmitError::Full);
        };
        let lane = z.lanes[i];
        // The pattern header the engine put in the slot's buffer: where it meant the
        // data to go and its generation.
        self.inner.fetch_head(slot, &mut self.scratch);
        let (pattern_lba, generation) = pattern::header(&self.scratch).unwrap_or((lba, 0));
        let r = if z.append {
            self.inner.submit_append(lane.zslba, blocks, slot)
        } else {
            self.inner.submit(false, lane.next, blocks, slot)
        };
        r?;
        let l = &mut z.lanes[i];
        l.next += u64::from(blocks);
        l.busy += 1;
        if let Some(s) = z.slot_write.get_mut(slot) {
            *s = Some((i, pattern_lba, generation));
        }
        Ok(())
    }

    #[inline]
    fn reap<F: FnMut(usize, Option<String>)>(
        &mut self,
        block: bool,
        mut done: F,
    ) -> Result<usize, String> {
        let Some(z) = self.zones.as_mut() else {
            return self.inner.reap(block, done);
        };
        Ok(self.inner.reap_with_result(|slot, r| {
            if let Some((i, pattern_lba, generation)) =
                z.slot_write.get_mut(slot).and_then(Option::take)
            {
                let failed = r.is_err();
                if let Some(l) = z.lanes.get_mut(i) {
                    l.busy = l.busy.saturating_sub(1);
                    if failed && !z.append {
                        // The write pointer is unknown now: write this zone no more.
                        l.next = l.end;
                    }
                }
                if let (Ok(at), Some(log)) = (&r, z.appended.as_mut()) {
                    if log.len() < log.capacity() {
                        log.push(Appended {
                            lba: *at,
                            pattern_lba,
                            generation,
                        });
                    }
                }
            }
            done(slot, r.err());
        }))
    }

    fn fill(&mut self, slot: usize, src: &[u8]) {
        self.inner.fill(slot, src);
    }

    fn fetch(&self, slot: usize, dst: &mut [u8]) {
        self.inner.fetch(slot, dst);
    }
}
