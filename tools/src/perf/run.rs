//! Sets up a run on a real controller (any transport), drives one thread per queue
//! pair, and merges the results.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use nvme::pi::Protection;
use nvme::{
    AnyTransport, CompletionMode, Controller, DmaBuffer, DmaSegment, IoQueuePair, Transport,
};

use super::args::{CompletionMode as ModeArg, PerfArgs, PiMode};
use super::engine::{new_log, run_thread_with_log, PerfQueue, SubmitError, ThreadPlan, WAIT_SLICE};
use super::pi::{PiTuples, TupleSource};
use super::progress::{self, Progress};
use super::soak::{self, HostCounts, Soak};
use super::stats::{Report, RunConfig, ThreadStats};
use super::ticks::TickClock;
use super::workload::split_units;
use crate::cli::ToolError;

/// Most I/O units `--verify` tracks (5 bytes of memory each).
pub const MAX_VERIFY_UNITS: u64 = 1 << 25;

/// The buffers of one I/O slot: how many data bytes the command moves, and for a
/// namespace with separate metadata how its blocks split between the two buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLayout {
    /// Bytes of the data buffer.
    pub data_bytes: usize,
    /// Data-buffer bytes per block (the LBA data size, plus interleaved metadata on
    /// an extended-LBA format).
    pub block_bytes: usize,
    /// Separate metadata bytes per block (0: no metadata buffer).
    pub metadata_bytes: usize,
}

/// One queue pair with a DMA buffer (and, for separate metadata, a metadata buffer) per
/// slot, as [`PerfQueue`] wants it.
pub struct NvmeQueue<T: Transport> {
    qp: IoQueuePair<T, u64>,
    nsid: u32,
    bufs: Vec<DmaBuffer>,
    segs: Vec<DmaSegment>,
    /// Separate metadata buffers, one per slot (empty without separate metadata).
    md_bufs: Vec<DmaBuffer>,
    /// Each slot's command options: the flags and its metadata buffer.
    opts: Vec<nvme::IoOptions>,
    layout: SlotLayout,
    /// Protection information tuples in the buffers (`--pi host`, or `--pi pract` with
    /// metadata beside the tuple): filled before writes, checked after reads.
    pi: Option<PiTuples>,
    /// Failed I/Os by kind (`--inject-faults` accounts for them).
    pub(crate) error_kinds: soak::ErrorKinds,
}

impl<T: Transport> NvmeQueue<T> {
    /// Wraps `qp` with `depth` slots of buffers shaped by `layout` from the
    /// controller's allocator; every read and write carries `flags`.
    pub fn new(
        ctrl: &Controller<T>,
        qp: IoQueuePair<T, u64>,
        nsid: u32,
        flags: nvme::IoFlags,
        depth: usize,
        layout: SlotLayout,
    ) -> Result<Self, ToolError> {
        let align = ctrl.page_size() as usize;
        let alloc = |bytes: usize| {
            ctrl.allocator()
                .alloc(bytes, align)
                .map_err(|source| ToolError::Memory { bytes, source })
        };
        let blocks = layout.data_bytes / layout.block_bytes.max(1);
        let md_bytes = blocks * layout.metadata_bytes;
        let mut bufs = Vec::with_capacity(depth);
        let mut segs = Vec::with_capacity(depth);
        let mut md_bufs = Vec::with_capacity(if md_bytes > 0 { depth } else { 0 });
        let mut opts = Vec::with_capacity(depth);
        for _ in 0..depth {
            let b = alloc(layout.data_bytes)?;
            segs.push(b.as_segment());
            bufs.push(b);
            let metadata = if md_bytes > 0 {
                let m = alloc(md_bytes)?;
                let seg = m.as_segment();
                md_bufs.push(m);
                Some(seg)
            } else {
                None
            };
            opts.push(nvme::IoOptions {
                flags,
                metadata,
                ..nvme::IoOptions::default()
            });
        }
        Ok(Self {
            qp,
            nsid,
            bufs,
            segs,
            md_bufs,
            opts,
            layout,
            pi: None,
            error_kinds: soak::ErrorKinds::default(),
        })
    }

    /// Splits pattern blocks of data then metadata over slot `slot`'s data and
    /// metadata buffers; false when a copy failed.
    fn scatter(&mut self, slot: usize, src: &[u8]) -> bool {
        let (ds, ms) = (self.layout.block_bytes, self.layout.metadata_bytes);
        let (Some(data), Some(md)) = (self.bufs.get_mut(slot), self.md_bufs.get_mut(slot)) else {
            return false;
        };
        src.chunks_exact(ds + ms).enumerate().all(|(i, block)| {
            data.write(i * ds, &block[..ds]).is_ok() && md.write(i * ms, &block[ds..]).is_ok()
        })
    }

    /// Joins slot `slot`'s data and metadata buffers into blocks of data then metadata
    /// in `dst`; false when a copy failed.
    fn gather(&self, slot: usize, dst: &mut [u8]) -> bool {
        let (ds, ms) = (self.layout.block_bytes, self.layout.metadata_bytes);
        let (Some(data), Some(md)) = (self.bufs.get(slot), self.md_bufs.get(slot)) else {
            return false;
        };
        dst.chunks_exact_mut(ds + ms).enumerate().all(|(i, block)| {
            let (d, m) = block.split_at_mut(ds);
            data.read(i * ds, d).is_ok() && md.read(i * ms, m).is_ok()
        })
    }

    /// Has the slots' buffers carry protection information tuples: every command
    /// carries the tool's application tag, host tuples are generated before each write
    /// and, with `--verify`, every read's tuples are checked.
    pub fn with_pi(mut self, tuples: PiTuples) -> Self {
        for o in &mut self.opts {
            *o = tuples.command_options(*o);
        }
        self.pi = Some(tuples);
        self
    }
}

impl<T: Transport> NvmeQueue<T> {
    /// Copies the first bytes of slot `slot`'s data buffer into `dst` (zeros when the
    /// copy fails).
    pub(crate) fn fetch_head(&self, slot: usize, dst: &mut [u8]) {
        if self.bufs.get(slot).is_none_or(|b| b.read(0, dst).is_err()) {
            dst.fill(0);
        }
    }

    /// Queues a Zone Append of slot `slot`'s buffer to the zone starting at `zslba`.
    pub(crate) fn submit_append(
        &mut self,
        zslba: u64,
        blocks: u32,
        slot: usize,
    ) -> Result<(), SubmitError> {
        let seg = std::slice::from_ref(&self.segs[slot]);
        self.qp
            .submit_zone_append(self.nsid, zslba, blocks, seg, &self.opts[slot], slot as u64)
            .map_err(classify)
    }

    /// Reaps completions by polling, calling `done(slot, result)` with each command's
    /// value (a Zone Append's LBA) or its error; returns how many.
    pub(crate) fn reap_with_result(
        &mut self,
        mut done: impl FnMut(usize, Result<u64, String>),
    ) -> usize {
        self.qp
            .process_completions_with_result(usize::MAX, |ctx, r| {
                done(ctx as usize, r.map_err(|e| e.to_string()))
            })
    }

    /// Reads `blocks` blocks at `lba` into slot `slot`'s buffers and waits (an idle
    /// queue pair).
    pub(crate) fn read_slot_sync(
        &mut self,
        slot: usize,
        lba: u64,
        blocks: u32,
    ) -> Result<(), nvme::Error> {
        let seg = std::slice::from_ref(&self.segs[slot]);
        let opts = self.opts[slot];
        let nsid = self.nsid;
        self.qp
            .submit_read_ext(nsid, lba, blocks, seg, &opts, slot as u64)?;
        let mut result = None;
        let end = Instant::now() + Duration::from_secs(60);
        while result.is_none() && Instant::now() < end {
            self.qp.process_completions(1, |_, r| result = Some(r));
        }
        result.unwrap_or_else(|| {
            Err(nvme::Error::InvalidRequest(format!(
                "the read at LBA {lba:#x} did not complete within 60 s"
            )))
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
        | nvme::Error::BadSglSegment { .. }
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
        if let (Some(t), Some(buf)) = (self.pi.as_mut(), self.bufs.get(slot)) {
            t.prepare(slot, lba, !read, buf, self.md_bufs.get(slot))
                .map_err(|e| SubmitError::Fatal(e.to_string()))?;
        }
        let seg = std::slice::from_ref(&self.segs[slot]);
        let opts = &self.opts[slot];
        let r = if read {
            self.qp
                .submit_read_ext(self.nsid, lba, blocks, seg, opts, slot as u64)
        } else {
            self.qp
                .submit_write_ext(self.nsid, lba, blocks, seg, opts, slot as u64)
        };
        r.map_err(classify)
    }

    #[inline]
    fn reap<F: FnMut(usize, Option<String>)>(
        &mut self,
        block: bool,
        mut done: F,
    ) -> Result<usize, String> {
        let kinds = &mut self.error_kinds;
        let f = |ctx: u64, r: Result<(), nvme::Error>| {
            done(
                ctx as usize,
                r.err().map(|e| {
                    kinds.count(&e);
                    e.to_string()
                }),
            )
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
        if self.layout.metadata_bytes > 0 {
            // Each pattern block is data then metadata: split it over the two buffers.
            let _ = self.scatter(slot, src);
        } else if let Some(b) = self.bufs.get_mut(slot) {
            let _ = b.write(0, src);
        }
    }

    fn fetch(&self, slot: usize, dst: &mut [u8]) {
        let ok = if self.layout.metadata_bytes > 0 {
            self.gather(slot, dst)
        } else {
            self.bufs.get(slot).is_some_and(|b| b.read(0, dst).is_ok())
        };
        if !ok {
            // Never verify stale bytes: a failed copy reads as zeros (a mismatch).
            dst.fill(0);
        } else if let (Some(t), Some(b)) = (&self.pi, self.bufs.get(slot)) {
            t.check_read(slot, b, self.md_bufs.get(slot), dst);
        }
    }
}

/// Opens the device, runs the workload and returns the merged report.
pub fn run(args: &PerfArgs) -> Result<Report, ToolError> {
    let device = args.device.to_string();
    let interrupt = args.mode == ModeArg::Interrupt;
    let defaults = nvme::Options::default();
    let soaking = args.inject_faults.is_some();
    let timeout = |given: Option<f64>, soak: Duration, default: Duration| {
        given.map_or(
            if soaking { soak } else { default },
            Duration::from_secs_f64,
        )
    };
    let options = nvme::Options {
        io_queues: args.qpairs,
        interrupts: interrupt,
        shadow_doorbells: !args.no_shadow_doorbells,
        io_timeout: timeout(args.io_timeout, soak::SOAK_IO_TIMEOUT, defaults.io_timeout),
        abort_timeout: timeout(
            args.abort_timeout,
            soak::SOAK_ABORT_TIMEOUT,
            defaults.abort_timeout,
        ),
        command_retries: args.retries.unwrap_or(defaults.command_retries),
        ..defaults
    };
    let io_timeout = options.io_timeout;
    let ctrl = nvme::open(&device, options)?;
    let shadow_doorbells = ctrl.shadow_doorbells();
    let ns = ctrl
        .namespace(args.nsid)
        .ok_or_else(|| ToolError::NoNamespace {
            device: device.clone(),
            nsid: args.nsid,
            active: crate::cli::active_namespaces(&ctrl),
        })?;
    super::zoned::check_workload(args, &ns)?;
    let format = ns.identify.format().map_err(|e| {
        ToolError::Invalid(format!(
            "namespace {}: its format cannot be used: {e}",
            args.nsid
        ))
    })?;
    let prot = match args.pi {
        PiMode::Off => None,
        mode => ns
            .protection()
            .map_err(|e| ToolError::Invalid(format!("--pi {}: {e}", mode.name())))?,
    };
    let format = check_format(args.nsid, &format, prot.as_ref(), args.pi)?;
    let lba = u64::from(format.lba_bytes);
    let io = args.io_size;
    if io == 0 || io % lba != 0 {
        return Err(ToolError::Invalid(format!(
            "-o {io}: the I/O size must be a non-zero multiple of namespace {}'s {lba}-byte logical block size",
            args.nsid
        )));
    }
    // `-o` counts data bytes; the buffer also holds each block's interleaved metadata.
    let buffer_block = format.block_bytes - u32::from(format.separate_metadata);
    let buffer_bytes = io / lba * u64::from(buffer_block);
    // An I/O above the controller's limit per command is split by the driver; each
    // takes this many of the queue's command slots.
    let max = ctrl.max_transfer_bytes();
    let commands_per_io =
        nvme::commands_per_request(
            max,
            ctrl.page_size(),
            buffer_block,
            format.separate_metadata,
            io / lba,
        )
        .ok_or_else(|| {
            ToolError::Invalid(format!(
                "-o {io}: one block takes {buffer_block} bytes of buffer, more than the controller transfers per command ({max} bytes, MDTS)"
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
    if args.verify && args.workload == super::args::Workload::Append {
        // Each append is read back where the device put it after the run.
    } else if args.verify && read_percent == 0 {
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
    let sgls = ctrl.identify_controller().sgls;
    if args.sgl && !sgls.supported() {
        return Err(ToolError::Invalid(format!(
            "--sgl: controller {device} does not support SGLs (Identify SGLS is {:#x}); run without --sgl to use PRPs",
            sgls.into_bits()
        )));
    }

    let qp_options = nvme::QueuePairOptions {
        depth: queue_entries,
        mode: if interrupt {
            CompletionMode::Interrupt
        } else {
            CompletionMode::Polled
        },
        sgl: if args.sgl {
            nvme::SglMode::Always
        } else {
            nvme::SglMode::Auto
        },
    };
    let layout = SlotLayout {
        data_bytes: buffer_bytes as usize,
        block_bytes: buffer_block as usize,
        metadata_bytes: usize::from(format.separate_metadata),
    };
    let depth = args.queue_depth as usize;
    let mut queues = Vec::with_capacity(ranges.len());
    let zoned_writes = super::zoned::writes_zones(args, &ns);
    let mut zone_caps = Vec::new();
    for t in 0..ranges.len() {
        let mut qp = ctrl.create_io_queue_pair(qp_options)?;
        if zoned_writes && t == 0 {
            zone_caps = super::zoned::reset_span(&ctrl, &mut qp, &ns, span / lba, ranges.len())?;
        }
        let q = NvmeQueue::new(&ctrl, qp, args.nsid, format.flags, depth, layout)?;
        let q = match (prot, format.tuples) {
            (Some(p), Some(source)) => q.with_pi(PiTuples::new(p, source, depth)),
            _ => q,
        };
        let lanes = zoned_writes
            .then(|| {
                super::zoned::ZoneLanes::for_thread(
                    &ns,
                    &zone_caps,
                    t,
                    ranges.len(),
                    args.workload == super::args::Workload::Append,
                    (io / lba) as u32,
                    depth,
                    args.verify,
                )
            })
            .flatten();
        queues.push(super::zoned::ZonedQueue::new(q, lanes));
    }

    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64)
    });
    let soak = args
        .inject_faults
        .map(|spec| Soak::start(&ctrl, spec, seed, io_timeout))
        .transpose()?;
    let threads = queues.len();
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
    type Thread = Result<(ThreadStats, HostCounts), ToolError>;
    let results = std::thread::scope(|s| -> Result<Vec<Thread>, ToolError> {
        if let Some(soak) = &soak {
            let ctrl = &ctrl;
            std::thread::Builder::new()
                .name("nvme-perf-faults".into())
                .spawn_scoped(s, move || soak.reset_loop(ctrl, end, threads))
                .map_err(ToolError::Spawn)?;
        }
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
                    seed: seed ^ ((i as u64) << 32),
                    measure_from,
                    end,
                    max_ios: args.number_ios,
                    clock,
                };
                let progress = &progress;
                let soak = soak.as_ref();
                std::thread::Builder::new()
                    .name(format!("nvme-perf-{i}"))
                    .spawn_scoped(s, move || {
                        let mut log = new_log(&plan);
                        let counter = progress.counter(i);
                        let mut stats = run_thread_with_log(&mut q, &plan, counter, &mut log);
                        q.verify_appends(&mut stats, plan.block_bytes, plan.lba_size);
                        let mut host = HostCounts::default();
                        if let Some(soak) = soak {
                            // The run's errors only: the read-back counts its own.
                            host.errors = q.inner.error_kinds.clone();
                            soak.faults_done(threads + 1);
                            if let Some(log) = &log {
                                soak::read_back(&mut q, &plan, log, &mut stats, &mut host.read_back);
                            }
                            host.pair = q.inner.qp.stats();
                        }
                        tracing::debug!(qid = q.inner.qp.qid(), counters = ?q.inner.qp.stats(), "queue pair counters");
                        (stats, host)
                    })
                    .map_err(ToolError::Spawn)
            })
            .collect();
        Ok(handles
            .into_iter()
            .map(|h| h.and_then(|h| h.join().map_err(|_| ToolError::Panicked)))
            .collect())
    })?;
    let finished = Instant::now();
    if let Some(p) = printer {
        progress::stop(&progress, p);
    }
    // With --number-ios the threads may stop before the time is up.
    let seconds = match args.number_ios {
        Some(_) => finished
            .min(end)
            .saturating_duration_since(measure_from)
            .as_secs_f64(),
        None => args.time,
    };
    let mut total = ThreadStats::new();
    let mut host = HostCounts::default();
    for r in results {
        let (stats, counts) = r?;
        total.merge(&stats);
        host.merge(&counts);
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
        pi: args.pi.name().to_string(),
        transfer: if args.sgl { "sgl" } else { "prp" }.to_string(),
        number_ios: args.number_ios,
    };
    let mut report = Report::new(config, &total, seconds);
    report.soak = soak.map(|s| s.report(&ctrl, &host, &total));
    Ok(report)
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
    /// Bytes per block the pattern covers: data plus metadata (interleaved in the I/O
    /// buffer, or split into the separate metadata buffer), or data alone when PRACT
    /// has the controller keep protection information that is the whole metadata.
    pub block_bytes: u32,
    /// The flags every read and write carries.
    pub flags: nvme::IoFlags,
    /// Metadata bytes per block in a separate metadata buffer (0: none).
    pub separate_metadata: u16,
    /// Who fills the protection information tuples the buffers carry; `None` when
    /// they carry none (`--pi off`, or PRACT with metadata of only the tuple).
    pub tuples: Option<TupleSource>,
}

/// Accepts every format: blocks in the data buffer alone (no metadata, extended LBAs,
/// or protection information that is the whole metadata and that the controller
/// inserts and strips with `--pi pract`), or data plus a separate metadata buffer per
/// I/O. `prot` is the namespace's protection information layout; `--pi pract` and
/// `--pi host` need one.
pub fn check_format(
    nsid: u32,
    format: &nvme::spec::identify::NamespaceFormat,
    prot: Option<&Protection>,
    pi: PiMode,
) -> Result<BufferFormat, ToolError> {
    let describe = || {
        let placement = if format.is_extended() {
            "interleaved with the data (extended LBAs)"
        } else {
            "in a separate buffer"
        };
        let pi = if format.protection.is_enabled() {
            format!("protection information type {}", format.protection as u8)
        } else {
            "no protection information".to_string()
        };
        format!(
            "namespace {nsid} is formatted with {}-byte blocks and {} bytes of metadata per block {placement} ({pi})",
            format.data_size, format.metadata_size
        )
    };
    let prot = match (pi, prot) {
        (PiMode::Off, _) => None,
        (_, Some(p)) => Some(p),
        (mode, None) => {
            return Err(ToolError::Invalid(format!(
                "--pi {}: {}; it needs a format with protection information",
                mode.name(),
                describe()
            )))
        }
    };
    // PRACT moves data only when the metadata is nothing but the tuple; otherwise the
    // rest of the metadata still moves, with the controller's tuple among it.
    let data_only = pi == PiMode::Pract && prot.is_some_and(Protection::is_pi_only);
    let separate_metadata = if data_only {
        0
    } else {
        format.separate_metadata_size()
    };
    let block_bytes = if data_only {
        format.data_size
    } else {
        format.transfer_block_size() + u32::from(separate_metadata)
    };
    let (flags, tuples) = match pi {
        PiMode::Off => (nvme::IoFlags::empty(), None),
        PiMode::Pract => (
            nvme::IoFlags::PRACT,
            (!data_only).then_some(TupleSource::Controller),
        ),
        // The checks the protection type defines (no reference tag on type 3).
        PiMode::Host => (
            prot.map_or(nvme::IoFlags::PRCHK, |p| p.checks()),
            Some(TupleSource::Host),
        ),
    };
    Ok(BufferFormat {
        lba_bytes: format.data_size,
        metadata_bytes: format.metadata_size,
        extended: format.is_extended(),
        block_bytes,
        flags,
        separate_metadata,
        tuples,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::engine::PerfQueue;
    use crate::perf::pattern::{self, Found};

    #[test]
    fn separate_metadata_slots_carry_the_pattern_blocks_metadata_and_verify_checks_it() {
        let ctrl = nvme::open("emu:size=1M,ms=8,mset=sep", nvme::Options::default()).unwrap();
        let qp = ctrl
            .create_io_queue_pair(nvme::QueuePairOptions::default())
            .unwrap();
        let layout = SlotLayout {
            data_bytes: 2048,
            block_bytes: 512,
            metadata_bytes: 8,
        };
        let mut q = NvmeQueue::new(&ctrl, qp, 1, nvme::IoFlags::empty(), 2, layout).unwrap();
        let mut src = vec![0u8; 4 * 520];
        pattern::fill(&mut src, 40, 520, 3);
        q.fill(1, &src);
        // The data buffer holds only data, the metadata buffer the blocks' metadata.
        let mut data = vec![0u8; 2048];
        q.bufs[1].read(0, &mut data).unwrap();
        assert_eq!(&data[512..1024], &src[520..1032]);
        let mut md = vec![0u8; 32];
        q.md_bufs[1].read(0, &mut md).unwrap();
        assert_eq!(&md[8..16], &src[520 + 512..1040]);
        // Written and read back through the controller, then joined again.
        q.submit(false, 40, 4, 1).unwrap();
        let drain = |q: &mut NvmeQueue<AnyTransport>| {
            let mut n = 0;
            while n == 0 {
                n = q.reap(true, |_, e| assert!(e.is_none(), "{e:?}")).unwrap();
            }
        };
        drain(&mut q);
        q.submit(true, 40, 4, 0).unwrap();
        drain(&mut q);
        let mut back = vec![0u8; 4 * 520];
        q.fetch(0, &mut back);
        assert_eq!(pattern::check(&back, 40, 520, 512, 3), Ok(()));
        // A changed metadata byte is a metadata mismatch of its block.
        q.md_bufs[0]
            .write(2 * 8 + 1, &[!back[2 * 520 + 513]])
            .unwrap();
        q.fetch(0, &mut back);
        let m = pattern::check(&back, 40, 520, 512, 3).unwrap_err();
        assert_eq!(
            (m.lba, m.found),
            (42, Found::MetadataCorruptAt { offset: 0 })
        );
    }

    fn format_of(device: &str) -> (nvme::spec::identify::NamespaceFormat, Option<Protection>) {
        let ctrl = nvme::open(device, nvme::Options::default()).unwrap();
        let ns = ctrl.namespace(1).unwrap();
        (ns.identify.format().unwrap(), ns.protection().unwrap())
    }

    #[test]
    fn pract_moves_data_alone_only_where_the_tuple_is_the_whole_metadata() {
        use TupleSource::{Controller, Host};
        // (device, pract: pattern block bytes, separate metadata bytes, tuples seen)
        for (device, block, separate, tuples) in [
            ("emu:size=1M,ms=8,mset=ext,pi=1", 512, 0, None),
            ("emu:size=1M,ms=8,mset=sep,pi=2", 512, 0, None),
            ("emu:size=1M,ms=16,mset=sep,pi=3,guard=crc64", 512, 0, None),
            ("emu:size=1M,ms=16,mset=ext,pi=1", 528, 0, Some(Controller)),
            ("emu:size=1M,ms=16,mset=sep,pi=1", 528, 16, Some(Controller)),
            (
                "emu:size=1M,ms=64,mset=sep,pi=2,guard=crc64",
                576,
                64,
                Some(Controller),
            ),
        ] {
            let (format, prot) = format_of(device);
            let ms = format.metadata_size;
            let sep = format.separate_metadata_size();
            let f = check_format(1, &format, prot.as_ref(), PiMode::Pract).unwrap();
            assert_eq!(
                (f.block_bytes, f.separate_metadata, f.tuples, f.flags),
                (block, separate, tuples, nvme::IoFlags::PRACT),
                "{device}"
            );
            // Host tuples always move with the rest of the metadata.
            let f = check_format(1, &format, prot.as_ref(), PiMode::Host).unwrap();
            assert_eq!(
                (f.block_bytes, f.separate_metadata, f.tuples, f.flags),
                (512 + u32::from(ms), sep, Some(Host), prot.unwrap().checks()),
                "{device}"
            );
            let f = check_format(1, &format, None, PiMode::Off).unwrap();
            assert_eq!((f.block_bytes, f.tuples), (512 + u32::from(ms), None));
            assert!(f.flags.is_empty());
        }
    }

    #[test]
    fn pi_modes_need_protection_information() {
        let (format, prot) = format_of("emu:size=1M,ms=16,mset=sep");
        assert_eq!(prot, None);
        for mode in [PiMode::Pract, PiMode::Host] {
            let e = check_format(7, &format, None, mode)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("--pi {}: namespace 7", mode.name()))
                    && e.contains("16 bytes of metadata per block in a separate buffer")
                    && e.contains("needs a format with protection information"),
                "{e}"
            );
        }
    }
}
