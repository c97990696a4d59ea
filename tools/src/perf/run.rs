//! Sets up a run on a real controller (any transport), drives one thread per queue
//! pair, and merges the results.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use nvme::{
    AnyTransport, CompletionMode, Controller, DmaBuffer, DmaSegment, IoQueuePair, Transport,
};

use super::args::{CompletionMode as ModeArg, PerfArgs, PiMode};
use super::engine::{run_thread, PerfQueue, SubmitError, ThreadPlan, WAIT_SLICE};
use super::progress::{self, Progress};
use super::stats::{Report, RunConfig, ThreadStats};
use super::ticks::TickClock;
use super::workload::split_units;
use crate::cli::ToolError;

/// Most I/O units `--verify` tracks (5 bytes of memory each).
pub const MAX_VERIFY_UNITS: u64 = 1 << 25;

/// One queue pair with a DMA buffer per slot, as [`PerfQueue`] wants it.
pub struct NvmeQueue<T: Transport> {
    qp: IoQueuePair<T, u64>,
    nsid: u32,
    flags: nvme::IoFlags,
    bufs: Vec<DmaBuffer>,
    segs: Vec<DmaSegment>,
}

impl<T: Transport> NvmeQueue<T> {
    /// Wraps `qp` with `depth` buffers of `io_size` bytes from the controller's
    /// allocator; every read and write carries `flags`.
    pub fn new(
        ctrl: &Controller<T>,
        qp: IoQueuePair<T, u64>,
        nsid: u32,
        flags: nvme::IoFlags,
        depth: usize,
        io_size: usize,
    ) -> Result<Self, ToolError> {
        let align = ctrl.page_size() as usize;
        let mut bufs = Vec::with_capacity(depth);
        let mut segs = Vec::with_capacity(depth);
        for _ in 0..depth {
            let b = ctrl
                .allocator()
                .alloc(io_size, align)
                .map_err(|source| ToolError::Memory {
                    bytes: io_size,
                    source,
                })?;
            segs.push(b.as_segment());
            bufs.push(b);
        }
        Ok(Self {
            qp,
            nsid,
            flags,
            bufs,
            segs,
        })
    }
}

fn classify(e: nvme::Error) -> SubmitError {
    match e {
        nvme::Error::QueueFull { .. } => SubmitError::Full,
        nvme::Error::InvalidRequest(_)
        | nvme::Error::ExceedsMdts { .. }
        | nvme::Error::RequestTooLarge { .. }
        | nvme::Error::BadSegment { .. }
        | nvme::Error::NoSuchNamespace { .. } => SubmitError::Rejected(e.to_string()),
        other => SubmitError::Fatal(other.to_string()),
    }
}

impl<T: Transport> PerfQueue for NvmeQueue<T> {
    #[inline]
    fn submit(
        &mut self,
        read: bool,
        lba: u64,
        blocks: u32,
        slot: usize,
    ) -> Result<(), SubmitError> {
        let seg = std::slice::from_ref(&self.segs[slot]);
        let r = if read {
            self.qp
                .submit_read_with_flags(self.nsid, lba, blocks, seg, self.flags, slot as u64)
        } else {
            self.qp
                .submit_write(self.nsid, lba, blocks, seg, self.flags, slot as u64)
        };
        r.map_err(classify)
    }

    #[inline]
    fn reap<F: FnMut(usize, Option<String>)>(
        &mut self,
        block: bool,
        mut done: F,
    ) -> Result<usize, String> {
        let f = |ctx: u64, r: Result<(), nvme::Error>| {
            done(ctx as usize, r.err().map(|e| e.to_string()))
        };
        if block {
            self.qp
                .wait_completions(usize::MAX, WAIT_SLICE, f)
                .map_err(|e| e.to_string())
        } else {
            Ok(self.qp.process_completions(usize::MAX, f))
        }
    }

    fn fill(&mut self, slot: usize, src: &[u8]) {
        if let Some(b) = self.bufs.get_mut(slot) {
            let _ = b.write(0, src);
        }
    }

    fn fetch(&self, slot: usize, dst: &mut [u8]) {
        let ok = self.bufs.get(slot).is_some_and(|b| b.read(0, dst).is_ok());
        if !ok {
            // Never verify stale bytes: a failed copy reads as zeros (a mismatch).
            dst.fill(0);
        }
    }
}

/// Opens the device, runs the workload and returns the merged report.
pub fn run(args: &PerfArgs) -> Result<Report, ToolError> {
    let device = args.device.to_string();
    let interrupt = args.mode == ModeArg::Interrupt;
    let options = nvme::Options {
        io_queues: args.qpairs,
        interrupts: interrupt,
        shadow_doorbells: !args.no_shadow_doorbells,
        ..nvme::Options::default()
    };
    let ctrl = nvme::open(&device, options)?;
    let shadow_doorbells = ctrl.shadow_doorbells();
    let ns = ctrl
        .namespace(args.nsid)
        .ok_or_else(|| ToolError::NoNamespace {
            device: device.clone(),
            nsid: args.nsid,
            active: crate::cli::active_namespaces(&ctrl),
        })?;
    let format = ns.identify.format().map_err(|e| {
        ToolError::Invalid(format!(
            "namespace {}: its format cannot be used: {e}",
            args.nsid
        ))
    })?;
    let format = check_format(args.nsid, &format, args.pi)?;
    let lba = u64::from(format.lba_bytes);
    let io = args.io_size;
    if io == 0 || io % lba != 0 {
        return Err(ToolError::Invalid(format!(
            "-o {io}: the I/O size must be a non-zero multiple of namespace {}'s {lba}-byte logical block size",
            args.nsid
        )));
    }
    // `-o` counts data bytes; the buffer also holds each block's interleaved metadata.
    let buffer_bytes = io / lba * u64::from(format.block_bytes);
    // An I/O above the controller's limit per command is split by the driver; each
    // takes this many of the queue's command slots.
    let max = ctrl.max_transfer_bytes();
    let commands_per_io =
        nvme::commands_per_request(max, ctrl.page_size(), format.block_bytes, 0, io / lba)
            .ok_or_else(|| {
                ToolError::Invalid(format!(
                    "-o {io}: one block takes {} bytes of buffer, more than the controller transfers per command ({max} bytes, MDTS)",
                    format.block_bytes
                ))
            })?;
    let capacity = ns.capacity_bytes();
    let span = args.span.unwrap_or(capacity);
    if span > capacity {
        return Err(ToolError::Invalid(format!(
            "--span {span}: namespace {} holds only {capacity} bytes",
            args.nsid
        )));
    }
    let units = span / io;
    let read_percent = args.workload.read_percent(args.rwmixread);
    let ranges = split_units(units, args.qpairs).ok_or_else(|| {
        ToolError::Invalid(format!(
            "--span {span} holds {units} I/Os of {io} bytes, fewer than --qpairs {}; enlarge the span or shrink -o",
            args.qpairs
        ))
    })?;
    if args.verify && units > MAX_VERIFY_UNITS {
        return Err(ToolError::Invalid(format!(
            "--verify remembers every {io}-byte unit it writes; {span} bytes hold {units} units, more than the {MAX_VERIFY_UNITS} it tracks: limit the area with --span (at most {} bytes at -o {io})",
            MAX_VERIFY_UNITS * io
        )));
    }
    if args.verify && read_percent == 0 {
        tracing::warn!("--verify with a write-only workload checks nothing; use -w rw or randrw");
    } else if args.verify && read_percent == 100 {
        tracing::warn!("--verify with a read-only workload checks nothing: only blocks this run wrote are verified; use -w rw or randrw");
    }
    let granted = ctrl.io_queue_count();
    if args.qpairs > granted {
        return Err(ToolError::Invalid(format!(
            "--qpairs {}: the controller granted only {granted} I/O queues",
            args.qpairs
        )));
    }
    let max_entries = ctrl.cap().max_queue_entries().min(u32::from(u16::MAX));
    if args.queue_depth + 1 > max_entries {
        return Err(ToolError::Invalid(format!(
            "-q {}: the controller's queues hold at most {} commands (CAP.MQES {})",
            args.queue_depth,
            max_entries - 1,
            ctrl.cap().mqes()
        )));
    }
    let queue_entries = queue_entries(args.queue_depth, commands_per_io, max_entries, max)
        .map_err(ToolError::Invalid)?;
    if args.inject_read_corruption {
        inject_read_corruption(&ctrl, args.nsid, ns.blocks)?;
    }

    let qp_options = nvme::QueuePairOptions {
        depth: queue_entries,
        mode: if interrupt {
            CompletionMode::Interrupt
        } else {
            CompletionMode::Polled
        },
    };
    let depth = args.queue_depth as usize;
    let mut queues = Vec::with_capacity(ranges.len());
    for _ in &ranges {
        let qp = ctrl.create_io_queue_pair(qp_options)?;
        queues.push(NvmeQueue::new(
            &ctrl,
            qp,
            args.nsid,
            format.flags,
            depth,
            buffer_bytes as usize,
        )?);
    }

    let clock = TickClock::calibrate();
    tracing::debug!(tsc = clock.is_tsc(), "per-I/O clock");
    let progress = Progress::new(queues.len());
    let show_progress = !args.json && std::io::stderr().is_terminal();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.time);
    let printer = show_progress.then(|| {
        progress::spawn_printer(
            progress.clone(),
            io,
            (args.warmup + args.time).ceil() as u64,
        )
    });
    let results: Vec<Result<ThreadStats, ToolError>> = std::thread::scope(|s| {
        let handles: Vec<_> = queues
            .into_iter()
            .zip(&ranges)
            .enumerate()
            .map(|(i, (mut q, range))| {
                let plan = ThreadPlan {
                    range: *range,
                    io_size: io as usize,
                    lba_size: lba as usize,
                    block_bytes: format.block_bytes as usize,
                    depth,
                    random: args.workload.is_random(),
                    read_percent,
                    verify: args.verify,
                    interrupt,
                    seed: 0x5eed ^ ((i as u64) << 32) ^ start.elapsed().as_nanos() as u64,
                    measure_from,
                    end,
                    clock,
                };
                let progress = &progress;
                std::thread::Builder::new()
                    .name(format!("nvme-perf-{i}"))
                    .spawn_scoped(s, move || {
                        let stats = run_thread(&mut q, &plan, progress.counter(i));
                        tracing::debug!(qid = q.qp.qid(), counters = ?q.qp.stats(), "queue pair counters");
                        stats
                    })
                    .map_err(ToolError::Spawn)
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.and_then(|h| h.join().map_err(|_| ToolError::Panicked)))
            .collect()
    });
    if let Some(p) = printer {
        progress::stop(&progress, p);
    }
    let mut total = ThreadStats::new();
    for r in results {
        total.merge(&r?);
    }
    let config = RunConfig {
        device,
        nsid: args.nsid,
        workload: args.workload.name().to_string(),
        read_percent,
        io_size: io,
        queue_depth: args.queue_depth,
        qpairs: args.qpairs,
        mode: if interrupt { "interrupt" } else { "poll" }.to_string(),
        verify: args.verify,
        shadow_doorbells,
        lba_bytes: format.lba_bytes,
        metadata_bytes: format.metadata_bytes,
        extended_lba: format.extended,
        pi: match args.pi {
            PiMode::Off => "off",
            PiMode::Pract => "pract",
        }
        .to_string(),
    };
    Ok(Report::new(config, &total, args.time))
}

/// Entries of each queue pair: one command per I/O and `-q` I/Os in flight, or, for
/// I/Os the driver splits into `commands_per_io` commands, room for that many commands
/// per I/O, as far as the controller's queues (`max_entries`) allow.
fn queue_entries(
    queue_depth: u32,
    commands_per_io: u64,
    max_entries: u32,
    max_transfer: u64,
) -> Result<u16, String> {
    let limit = u64::from(max_entries);
    if commands_per_io + 1 > limit {
        return Err(format!(
            "each I/O is split into {commands_per_io} commands of at most {max_transfer} bytes (MDTS) and the controller's queues hold at most {} commands: use a smaller -o",
            limit - 1
        ));
    }
    let wanted = u64::from(queue_depth) * commands_per_io + 1;
    if wanted > limit {
        tracing::warn!(
            "each I/O is split into {commands_per_io} commands and the controller's queues hold at most {} commands: at most {} of the {queue_depth} I/Os per queue pair are in flight at once",
            limit - 1,
            (limit - 1) / commands_per_io
        );
    }
    // Cannot truncate: `max_entries` is at most 65535.
    Ok(wanted.min(limit) as u16)
}

/// What a namespace's format means for the buffers `nvme-perf` allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferFormat {
    /// Data bytes per block.
    pub lba_bytes: u32,
    /// Metadata bytes per block.
    pub metadata_bytes: u16,
    /// Whether the metadata is interleaved with the data (extended LBAs).
    pub extended: bool,
    /// Bytes per block in the I/O buffer (data plus interleaved metadata, unless
    /// PRACT has the controller keep the protection information).
    pub block_bytes: u32,
    /// The flags every read and write carries.
    pub flags: nvme::IoFlags,
}

/// Accepts a format whose blocks travel in the data buffer alone (no metadata, or
/// extended LBAs, or 8-byte protection information the controller inserts and strips
/// with `--pi pract`); refuses separate metadata otherwise, which needs a buffer this
/// tool does not allocate.
pub fn check_format(
    nsid: u32,
    format: &nvme::spec::identify::NamespaceFormat,
    pi: PiMode,
) -> Result<BufferFormat, ToolError> {
    let pi_type = format
        .protection
        .is_enabled()
        .then_some(format.protection as u8);
    // PRACT moves data only when the metadata is nothing but the tuple.
    let pi_only = pi_type.is_some() && format.metadata_size == 8;
    let describe = || {
        let placement = if format.is_extended() {
            "interleaved with the data (extended LBAs)"
        } else {
            "in a separate buffer"
        };
        let pi = match pi_type {
            Some(t) => format!("protection information type {t}"),
            None => "no protection information".to_string(),
        };
        format!(
            "namespace {nsid} is formatted with {}-byte blocks and {} bytes of metadata per block {placement} ({pi})",
            format.data_size, format.metadata_size
        )
    };
    let pract = pi == PiMode::Pract;
    if pract && !pi_only {
        return Err(ToolError::Invalid(format!(
            "--pi pract: {}; PRACT needs protection information and metadata of exactly its 8 bytes",
            describe()
        )));
    }
    if !pract && format.separate_metadata_size() > 0 {
        let hint = if pi_only {
            "; --pi pract has the controller insert and strip the protection information instead"
        } else {
            ""
        };
        return Err(ToolError::Invalid(format!(
            "{}; nvme-perf does not support separate metadata buffers yet: use a namespace without metadata or with extended LBAs (metadata interleaved with the data){hint}",
            describe()
        )));
    }
    let (block_bytes, flags) = if pract {
        (format.data_size, nvme::IoFlags::PRACT)
    } else {
        (format.transfer_block_size(), nvme::IoFlags::empty())
    };
    Ok(BufferFormat {
        lba_bytes: format.data_size,
        metadata_bytes: format.metadata_size,
        extended: format.is_extended(),
        block_bytes,
        flags,
    })
}

fn inject_read_corruption(
    ctrl: &Controller<AnyTransport>,
    nsid: u32,
    blocks: u64,
) -> Result<(), ToolError> {
    match ctrl.transport() {
        AnyTransport::Emu(t) => {
            t.emu().faults().corrupt_reads(nsid, 0..blocks);
            Ok(())
        }
        _ => Err(ToolError::Invalid(
            "--inject-read-corruption works only on the emulated controller (emu)".into(),
        )),
    }
}
