//! Opens the device, builds the store's engine on one queue pair and runs one
//! subcommand.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use dio::nvme_qp::{IoBuffer, NvmeQueue};
use dio::{Dio, DmaBuf, IovIter, Kiocb, KiocbFlags};
use nvme::{AnyTransport, CompletionMode, QueuePairOptions};
use serde::Serialize;
use store::{FormatOptions, Region, Store, StoreError, StoreIo, MAX_NAME};

use super::args::{Command, StoreArgs};
use super::error::{shown_name, StoreCmdError};
use super::report::{Check, Counters, Extent, FileEntry, Layout, Outcome, StoreReport};
use crate::cli::ToolError;

/// Requests the engine keeps in flight.
const SLOTS: usize = 32;
/// Queue entries of the pair.
const QUEUE_DEPTH: u16 = 64;
/// Bytes per read request of `get`.
const GET_CHUNK: u64 = 1 << 20;
/// The largest `--chunk` of `put`.
pub const MAX_CHUNK: u64 = 64 << 20;

/// The engine the store runs on.
type Io = StoreIo<NvmeQueue<AnyTransport>, IoBuffer>;

/// One completed write request of `put` (`--report-writes` prints one per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteDone {
    /// The file written.
    pub name: String,
    /// Byte offset of the request in the file.
    pub offset: u64,
    /// Bytes of the host file the request carried.
    pub length: u64,
    /// CRC-32 (ISO-HDLC, as zlib's `crc32`) of those bytes.
    pub crc32: u32,
    /// Whether the request was O_DSYNC (durable when reported).
    pub dsync: bool,
}

/// Runs `args`' subcommand; `on_write` is called as each `put` write completes.
pub fn run(
    args: &StoreArgs,
    on_write: &mut dyn FnMut(&WriteDone),
) -> Result<StoreReport, StoreCmdError> {
    let device = args.device.to_string();
    let ctrl = nvme::open(
        &device,
        nvme::Options {
            io_queues: 1,
            ..nvme::Options::default()
        },
    )
    .map_err(ToolError::from)?;
    if ctrl.namespace(args.nsid).is_none() {
        return Err(ToolError::NoNamespace {
            device,
            nsid: args.nsid,
            active: crate::cli::active_namespaces(&ctrl),
        }
        .into());
    }
    let qp = ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth: QUEUE_DEPTH,
            mode: CompletionMode::Polled,
            ..QueuePairOptions::default()
        })
        .map_err(ToolError::from)?;
    let queue = NvmeQueue::new(&ctrl, qp, args.nsid).map_err(ToolError::from)?;
    let page = ctrl.page_size() as usize;
    let zero = ctrl
        .allocator()
        .alloc(page, page)
        .map_err(|source| ToolError::Memory {
            bytes: page,
            source,
        })?;
    let dio = Dio::new(queue, Some(IoBuffer::new(zero)), SLOTS).map_err(ToolError::from)?;
    let allocator = ctrl.allocator().clone();
    // Declared after `ctrl`, so dropped before it: buffers go back before the
    // controller's mappings.
    let mut io: Io = StoreIo::new(dio, move |len| {
        allocator.alloc(len.max(1), page).ok().map(IoBuffer::new)
    });
    let caps = *io.dio().caps();
    let ns_bytes = caps.capacity_lbas * u64::from(caps.lba_size);
    let (offset, len) = args.region.unwrap_or((0, ns_bytes));
    let region = Region { offset, len };
    let mut op = Op {
        io: &mut io,
        region,
        device: &device,
        nsid: args.nsid,
        lba: caps.lba_size,
    };
    op.run(&args.command, on_write)
}

/// One subcommand's context.
struct Op<'a> {
    io: &'a mut Io,
    region: Region,
    device: &'a str,
    nsid: u32,
    lba: u32,
}

impl Op<'_> {
    fn run(
        &mut self,
        command: &Command,
        on_write: &mut dyn FnMut(&WriteDone),
    ) -> Result<StoreReport, StoreCmdError> {
        match command {
            Command::Mkfs { block_size, force } => self.mkfs(*block_size, *force),
            Command::Fsck => self.fsck(),
            Command::Ls => self.with_store(|_, store| {
                Ok(Outcome::Ls {
                    files: store.list().into_iter().map(FileEntry::from).collect(),
                    free_blocks: store.free_blocks(),
                    block_size: store.geometry().block_size,
                })
            }),
            Command::Stat { name } => self.with_store(|_, store| {
                let f = store.open_file(name).map_err(store_err("stat"))?;
                Ok(Outcome::Stat {
                    file: store.stat(&f).map_err(store_err("stat"))?.into(),
                    extents: store
                        .extents(&f)
                        .map_err(store_err("stat"))?
                        .into_iter()
                        .map(Extent::from)
                        .collect(),
                })
            }),
            Command::Put {
                host_file,
                name,
                dsync,
                chunk,
                report_writes,
            } => self.with_store(|op, store| {
                let mut quiet = |_: &WriteDone| {};
                let report: &mut dyn FnMut(&WriteDone) =
                    if *report_writes { on_write } else { &mut quiet };
                op.put(store, host_file, name, *dsync, *chunk, report)
            }),
            Command::Get { name, host_file } => {
                self.with_store(|op, store| op.get(store, name, host_file))
            }
            Command::Rm { name } => self.with_store(|op, store| {
                store.unlink(op.io, name).map_err(store_err("rm"))?;
                store.sync(op.io).map_err(store_err("rm"))?;
                Ok(Outcome::Rm { name: name.clone() })
            }),
            Command::Mv { old, new } => self.with_store(|op, store| {
                check_name(new)?;
                store.open_file(old).map_err(store_err("mv"))?;
                let replaced = old != new && store.open_file(new).is_ok();
                store.rename(op.io, old, new).map_err(store_err("mv"))?;
                store.sync(op.io).map_err(store_err("mv"))?;
                Ok(Outcome::Mv {
                    from: old.clone(),
                    to: new.clone(),
                    replaced,
                })
            }),
            Command::Clone { src, dst } => {
                self.with_store(|op, store| op.clone_file(store, src, dst))
            }
        }
    }

    /// Opens the store, runs `f` and reports the commands `f` caused.
    fn with_store(
        &mut self,
        f: impl FnOnce(&mut Self, &Store) -> Result<Outcome, StoreCmdError>,
    ) -> Result<StoreReport, StoreCmdError> {
        let store = self.open()?;
        let before = (self.io.stats(), store.counters());
        let outcome = f(self, &store)?;
        let after = (self.io.stats(), store.counters());
        Ok(StoreReport {
            outcome,
            counters: Counters::between((before.0, after.0), (before.1, after.1)),
        })
    }

    /// Opens the store; a region without one says how to make one.
    fn open(&mut self) -> Result<Arc<Store>, StoreCmdError> {
        Store::open(self.io, self.region).map_err(|e| match e {
            StoreError::BadSuperblock { reason } => self.not_formatted(reason),
            e => store_err("open")(e),
        })
    }

    fn not_formatted(&self, reason: &'static str) -> StoreCmdError {
        StoreCmdError::NotFormatted {
            device: self.device.to_string(),
            nsid: self.nsid,
            start: self.region.offset,
            end: self.region.offset.saturating_add(self.region.len),
            reason,
        }
    }

    fn mkfs(&mut self, block_size: u64, force: bool) -> Result<StoreReport, StoreCmdError> {
        if !force {
            if let Ok(found) = Store::check(self.io, self.region) {
                return Err(StoreCmdError::AlreadyFormatted {
                    device: self.device.to_string(),
                    nsid: self.nsid,
                    start: self.region.offset,
                    end: self.region.offset.saturating_add(self.region.len),
                    files: found.files,
                });
            }
        }
        let block_size = u32::try_from(block_size).map_err(|_| StoreCmdError::Store {
            op: "mkfs",
            source: StoreError::Invalid {
                reason: "the block size must be a power of two in 512..=65536 and at least the device's logical block",
            },
        })?;
        let before = self.io.stats();
        let opts = FormatOptions {
            block_size,
            ..FormatOptions::default()
        };
        let store = Store::format(self.io, self.region, &opts).map_err(store_err("mkfs"))?;
        let g = store.geometry();
        let uuid = store.uuid().iter().map(|b| format!("{b:02x}")).collect();
        Ok(StoreReport {
            outcome: Outcome::Mkfs {
                layout: Layout {
                    uuid,
                    region_offset: g.base,
                    block_size: g.block_size,
                    total_blocks: g.total_blocks,
                    checkpoint_blocks: g.checkpoint_blocks,
                    journal_blocks: g.journal_blocks,
                    data_blocks: g.data_blocks,
                },
            },
            counters: Counters::between(
                (before, self.io.stats()),
                (Default::default(), store.counters()),
            ),
        })
    }

    fn fsck(&mut self) -> Result<StoreReport, StoreCmdError> {
        let before = self.io.stats();
        let report = Store::check(self.io, self.region).map_err(|e| match e {
            StoreError::BadSuperblock { reason } => self.not_formatted(reason),
            e => store_err("fsck")(e),
        })?;
        Ok(StoreReport {
            outcome: Outcome::Fsck {
                check: Check::from(report),
            },
            counters: Counters::between(
                (before, self.io.stats()),
                (Default::default(), Default::default()),
            ),
        })
    }

    fn put(
        &mut self,
        store: &Store,
        host_file: &Path,
        name: &str,
        dsync: bool,
        chunk: u64,
        on_write: &mut dyn FnMut(&WriteDone),
    ) -> Result<Outcome, StoreCmdError> {
        check_name(name)?;
        if store.open_file(name).is_ok() {
            return Err(StoreCmdError::Exists { name: name.into() });
        }
        let bs = store.geometry().block_size;
        if chunk == 0 || chunk % u64::from(bs) != 0 || chunk > MAX_CHUNK {
            return Err(StoreCmdError::BadChunk {
                chunk,
                block_size: bs,
                max: MAX_CHUNK,
            });
        }
        let host = host_err(host_file);
        let src = std::fs::File::open(host_file).map_err(&host)?;
        let size = src.metadata().map_err(&host)?.len();
        let needed = size.div_ceil(u64::from(bs));
        let free = store.free_blocks();
        if needed > free {
            return Err(StoreCmdError::NoSpace { needed, free });
        }
        let file = store.create(self.io, name).map_err(store_err("put"))?;
        let flags = if dsync {
            KiocbFlags::DSYNC
        } else {
            KiocbFlags::empty()
        };
        let mut writes = 0;
        let mut copy = || -> Result<(), StoreCmdError> {
            let mut data = Vec::new();
            let mut off = 0;
            while off < size {
                let n = chunk.min(size - off);
                data.resize(n as usize, 0);
                src.read_exact_at(&mut data, off).map_err(&host)?;
                // Direct I/O moves whole logical blocks: the tail is padded with
                // zeros and cut off by the truncate below.
                let padded = n.next_multiple_of(u64::from(self.lba)) as usize;
                let buf = self.io.buffer(padded).map_err(store_err("put"))?;
                if !buf.write_at(0, &data) {
                    return Err(StoreError::NoBuffer { len: padded }).map_err(store_err("put"));
                }
                let mut it = IovIter::new(vec![buf]);
                let done = store
                    .write(self.io, &file, &mut Kiocb::new(off, flags), &mut it)
                    .map_err(store_err("put"))?;
                if done != padded {
                    return Err(StoreCmdError::Short {
                        op: "put",
                        moved: "wrote",
                        name: name.to_string(),
                        offset: off,
                        want: padded as u64,
                        got: done as u64,
                    });
                }
                writes += 1;
                on_write(&WriteDone {
                    name: name.to_string(),
                    offset: off,
                    length: n,
                    crc32: crate::dio_cmd::script::WRITE_CRC.checksum(&data),
                    dsync,
                });
                off += n;
            }
            if size % u64::from(self.lba) != 0 {
                store
                    .truncate(self.io, &file, size)
                    .map_err(store_err("put"))?;
            }
            store.fsync(self.io, &file).map_err(store_err("put"))
        };
        if let Err(e) = copy() {
            // A failed copy leaves no partial file behind (best effort: the
            // device may be what failed).
            if store.unlink(self.io, name).is_ok() {
                let _ = store.sync(self.io);
            }
            return Err(e);
        }
        Ok(Outcome::Put {
            name: name.to_string(),
            size,
            dsync,
            writes,
        })
    }

    fn get(
        &mut self,
        store: &Store,
        name: &str,
        host_file: &Path,
    ) -> Result<Outcome, StoreCmdError> {
        let file = store.open_file(name).map_err(store_err("get"))?;
        let size = store.stat(&file).map_err(store_err("get"))?.size;
        let host = host_err(host_file);
        let mut out: Box<dyn Write> = if host_file == Path::new("-") {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(std::fs::File::create(host_file).map_err(&host)?)
        };
        let bs = u64::from(store.geometry().block_size);
        let mut data = Vec::new();
        let mut off = 0;
        while off < size {
            let n = GET_CHUNK.min(size - off);
            let want = n.next_multiple_of(bs) as usize;
            let buf = self.io.buffer(want).map_err(store_err("get"))?;
            let mut it = IovIter::new(vec![buf]);
            let got = store
                .read(
                    self.io,
                    &file,
                    &mut Kiocb::new(off, KiocbFlags::empty()),
                    &mut it,
                )
                .map_err(store_err("get"))?;
            if (got as u64) < n {
                return Err(StoreCmdError::Short {
                    op: "get",
                    moved: "read",
                    name: name.to_string(),
                    offset: off,
                    want: n,
                    got: got as u64,
                });
            }
            data.resize(n as usize, 0);
            if !it.buffers()[0].read_at(0, &mut data) {
                return Err(StoreError::NoBuffer { len: want }).map_err(store_err("get"));
            }
            out.write_all(&data).map_err(&host)?;
            off += n;
        }
        out.flush().map_err(&host)?;
        Ok(Outcome::Get {
            name: name.to_string(),
            size,
        })
    }

    fn clone_file(
        &mut self,
        store: &Store,
        src: &str,
        dst: &str,
    ) -> Result<Outcome, StoreCmdError> {
        check_name(dst)?;
        let from = store.open_file(src).map_err(store_err("clone"))?;
        if store.open_file(dst).is_ok() {
            return Err(StoreCmdError::Exists { name: dst.into() });
        }
        let size = store.stat(&from).map_err(store_err("clone"))?.size;
        let bs = u64::from(store.geometry().block_size);
        let to = store.create(self.io, dst).map_err(store_err("clone"))?;
        let cloned = (|| {
            store.clone_range(self.io, &from, 0, &to, 0, size.next_multiple_of(bs))?;
            if size % bs != 0 {
                store.truncate(self.io, &to, size)?;
            }
            store.fsync(self.io, &to)
        })();
        if let Err(e) = cloned {
            if store.unlink(self.io, dst).is_ok() {
                let _ = store.sync(self.io);
            }
            return Err(store_err("clone")(e));
        }
        let shared = store
            .extents(&to)
            .map_err(store_err("clone"))?
            .iter()
            .filter(|e| e.shared)
            .map(|e| e.length / bs)
            .sum();
        Ok(Outcome::Clone {
            from: src.to_string(),
            to: dst.to_string(),
            size,
            shared_blocks: shared,
        })
    }
}

/// The store's refusals a person can act on get their own errors.
fn store_err(op: &'static str) -> impl Fn(StoreError) -> StoreCmdError {
    move |e| match e {
        StoreError::NotFound { name } => StoreCmdError::NoFile { name },
        StoreError::Exists { name } => StoreCmdError::Exists { name },
        StoreError::NoSpace { needed, free } => StoreCmdError::NoSpace { needed, free },
        source => StoreCmdError::Store { op, source },
    }
}

fn host_err(path: &Path) -> impl Fn(std::io::Error) -> StoreCmdError + '_ {
    move |source| StoreCmdError::HostFile {
        path: path.display().to_string(),
        source,
    }
}

/// Names the store would refuse, refused before anything is written.
fn check_name(name: &str) -> Result<(), StoreCmdError> {
    if name.is_empty() || name.len() > MAX_NAME || name.contains('\0') {
        return Err(StoreCmdError::BadName {
            name: shown_name(name),
            len: name.len(),
            max: MAX_NAME,
        });
    }
    Ok(())
}
