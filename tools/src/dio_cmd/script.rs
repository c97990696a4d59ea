//! Runs a script of steps on one direct-I/O engine and reports the layer's counters.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use dio::providers::{ExtentFs, FileHandle, RawNamespace};
use dio::{Dio, DioError, DioFlags, DioQueue, DioStats, DmaBuf, IovIter, Kiocb, KiocbFlags};
use serde::Serialize;

use super::args::Step;

/// Bytes moved by one request; larger steps are split into requests of this size.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Block size of the in-memory extent layer (at least the logical block size): file
/// blocks larger than device blocks make sub-block zeroing of new extents visible.
pub const FS_BLOCK_BYTES: u32 = 4096;

/// The counters of one step or of the whole script.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Bytes transferred to or from the caller.
    pub bytes: u64,
    /// NVMe commands issued (reads, writes, write zeroes, flushes).
    pub commands: u64,
    /// Write and Write Zeroes commands with Force Unit Access.
    pub fua_commands: u64,
    /// Flush commands.
    pub flush_commands: u64,
    /// Bytes zeroed on the device for partial blocks of new extents.
    pub zeroed_bytes: u64,
}

impl Counters {
    fn between(before: DioStats, after: DioStats) -> Self {
        Self {
            bytes: after.bytes - before.bytes,
            commands: after.commands - before.commands,
            fua_commands: after.fua_commands - before.fua_commands,
            flush_commands: after.flush_commands - before.flush_commands,
            zeroed_bytes: after.zeroed_bytes - before.zeroed_bytes,
        }
    }

    fn add(&mut self, o: &Counters) {
        self.bytes += o.bytes;
        self.commands += o.commands;
        self.fua_commands += o.fua_commands;
        self.flush_commands += o.flush_commands;
        self.zeroed_bytes += o.zeroed_bytes;
    }
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// `write`, `read`, `compare` or `fallocate`.
    pub op: &'static str,
    /// The extent-layer file, or `null` for the raw namespace.
    pub file: Option<String>,
    /// Byte offset.
    pub offset: u64,
    /// Bytes requested.
    pub length: u64,
    /// The layer's counters for this step.
    #[serde(flatten)]
    pub counters: Counters,
}

/// What the whole script did (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct DioReport {
    /// Totals over all steps.
    #[serde(flatten)]
    pub totals: Counters,
    /// Each step in order.
    pub steps: Vec<StepReport>,
}

impl DioReport {
    /// The human-readable summary.
    pub fn human(&self) -> String {
        let mut s = String::new();
        for (i, st) in self.steps.iter().enumerate() {
            let target = st
                .file
                .as_deref()
                .map_or("namespace".to_string(), |f| format!("file {f}"));
            s.push_str(&format!(
                "step {} {} {} offset {} length {}: {}\n",
                i + 1,
                st.op,
                target,
                st.offset,
                st.length,
                st.counters
            ));
        }
        s.push_str(&format!("total: {}", self.totals));
        s
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes, {} command{} ({} FUA, {} flush), {} bytes zeroed",
            self.bytes,
            self.commands,
            if self.commands == 1 { "" } else { "s" },
            self.fua_commands,
            self.flush_commands,
            self.zeroed_bytes
        )
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// An offset or length breaks the block alignment direct I/O needs.
    #[error("step {step} ({op}): {what} {value} is not a multiple of the {align}-byte logical block size; direct I/O needs block-aligned offsets and lengths")]
    Misaligned {
        /// 1-based step number.
        step: usize,
        /// Step name.
        op: &'static str,
        /// `--offset`, `--length` or `the input size`.
        what: &'static str,
        /// The offending value.
        value: u64,
        /// The required alignment.
        align: u32,
    },
    /// The range ends beyond the namespace.
    #[error(
        "step {step} ({op}): bytes {offset}..{end} lie beyond the end of the {size}-byte namespace"
    )]
    OutOfRange {
        /// 1-based step number.
        step: usize,
        /// Step name.
        op: &'static str,
        /// Start.
        offset: u64,
        /// End (exclusive).
        end: u64,
        /// Namespace size in bytes.
        size: u64,
    },
    /// A host file could not be read or written.
    #[error("step {step} ({op}): {path}: {source}")]
    HostFile {
        /// 1-based step number.
        step: usize,
        /// Step name.
        op: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The direct-I/O layer failed the request.
    #[error("step {step} ({op}): {source}")]
    Dio {
        /// 1-based step number.
        step: usize,
        /// Step name.
        op: &'static str,
        /// The layer's error.
        source: DioError,
    },
    /// A compare found different data.
    #[error("step {step} (compare): the data at bytes {offset}..{end} differs from the expected contents")]
    Miscompare {
        /// 1-based step number.
        step: usize,
        /// Start of the request that differed.
        offset: u64,
        /// Its end (exclusive).
        end: u64,
    },
    /// A read names a file no earlier step created.
    #[error("step {step} ({op}): file '{name}' does not exist; files of the extent layer live only for this process, so create it with a write or fallocate step earlier in the same run")]
    NoFile {
        /// 1-based step number.
        step: usize,
        /// Step name.
        op: &'static str,
        /// The file name.
        name: String,
    },
    /// No DMA buffer could be had.
    #[error("step {step} ({op}): cannot allocate a {len}-byte DMA buffer: {source}")]
    Buffer {
        /// 1-based step number.
        step: usize,
        /// Step name.
        op: &'static str,
        /// Bytes asked for.
        len: usize,
        /// The allocator's error.
        #[source]
        source: hugepages::Error,
    },
    /// A buffer handed out was shorter than asked for.
    #[error("step {step} ({op}): cannot allocate a {len}-byte DMA buffer: buffer too small")]
    BufferTooSmall {
        /// 1-based step number.
        step: usize,
        /// Step name.
        op: &'static str,
        /// Bytes needed.
        len: usize,
    },
}

/// One write request that completed (the data is on the device; with `--dsync` or
/// `--sync`, durably).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteDone {
    /// 1-based step number.
    pub step: usize,
    /// The extent-layer file, or `null` for the raw namespace.
    pub file: Option<String>,
    /// Byte offset of the request.
    pub offset: u64,
    /// Bytes the request wrote.
    pub length: u64,
    /// CRC-32 (ISO-HDLC, as zlib's `crc32`) of the bytes written.
    pub crc32: u32,
}

/// CRC of the bytes each completed write request carried, as `--report-writes`
/// prints it (the CRC-32 Python's `zlib.crc32` gives).
pub(crate) static WRITE_CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Runs `steps` on `dio`; `alloc` hands out zeroed DMA buffers of at least `len` bytes.
pub fn run<Q, B, A>(dio: &mut Dio<Q, B>, alloc: A, steps: &[Step]) -> Result<DioReport, StepError>
where
    Q: DioQueue,
    B: DmaBuf,
    A: FnMut(usize) -> Result<B, hugepages::Error>,
{
    run_reporting_writes(dio, alloc, steps, |_| {})
}

/// [`run`], calling `write_done` as each write request completes, before the next
/// request is sent.
pub fn run_reporting_writes<Q, B, A, W>(
    dio: &mut Dio<Q, B>,
    mut alloc: A,
    steps: &[Step],
    mut write_done: W,
) -> Result<DioReport, StepError>
where
    Q: DioQueue,
    B: DmaBuf,
    A: FnMut(usize) -> Result<B, hugepages::Error>,
    W: FnMut(&WriteDone),
{
    let caps = *dio.caps();
    let lba = caps.lba_size;
    let ns_bytes = caps.capacity_lbas.saturating_mul(u64::from(lba));
    let raw = RawNamespace::new(&caps);
    let mut fs: Option<Arc<ExtentFs>> = None;
    let mut files: HashMap<String, FileHandle> = HashMap::new();
    let mut report = DioReport {
        totals: Counters::default(),
        steps: Vec::with_capacity(steps.len()),
    };
    let chunk = CHUNK_BYTES.min(dio.max_command_bytes().max(lba as usize) * 8);
    let chunk = (chunk / lba as usize).max(1) * lba as usize;
    let mut buf: Option<B> = None;

    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        let op = step.name();
        let aligned = |what: &'static str, value: u64| {
            if value % u64::from(lba) == 0 {
                Ok(())
            } else {
                Err(StepError::Misaligned {
                    step: n,
                    op,
                    what,
                    value,
                    align: lba,
                })
            }
        };
        // The raw namespace ends at its capacity (files of the extent layer grow).
        let within = |offset: u64, length: u64| {
            let end = offset.saturating_add(length);
            if end > ns_bytes {
                Err(StepError::OutOfRange {
                    step: n,
                    op,
                    offset,
                    end,
                    size: ns_bytes,
                })
            } else {
                Ok(())
            }
        };
        let file = match step.file() {
            None => None,
            Some(name) => {
                let fs = match &fs {
                    Some(fs) => fs.clone(),
                    None => {
                        let block = FS_BLOCK_BYTES.max(lba);
                        let created =
                            ExtentFs::new(0, ns_bytes, block).map_err(|source| StepError::Dio {
                                step: n,
                                op,
                                source,
                            })?;
                        fs = Some(created.clone());
                        created
                    }
                };
                if matches!(step, Step::Read { .. } | Step::Compare { .. })
                    && !files.contains_key(name)
                {
                    return Err(StepError::NoFile {
                        step: n,
                        op,
                        name: name.to_string(),
                    });
                }
                Some(
                    files
                        .entry(name.to_string())
                        .or_insert_with(|| fs.create())
                        .clone(),
                )
            }
        };
        let before = dio.stats();
        let (offset, length) = match step {
            Step::Fallocate { offset, length, .. } => {
                aligned("--offset", *offset)?;
                aligned("--length", *length)?;
                if let Some(f) = &file {
                    f.preallocate(*offset, *length)
                        .map_err(|source| StepError::Dio {
                            step: n,
                            op,
                            source,
                        })?;
                }
                (*offset, *length)
            }
            Step::Write {
                offset,
                input,
                dsync,
                sync,
                hipri,
                ..
            } => {
                let host_err = |source| StepError::HostFile {
                    step: n,
                    op,
                    path: input.display().to_string(),
                    source,
                };
                let src = std::fs::File::open(input).map_err(host_err)?;
                let size = src.metadata().map_err(host_err)?.len();
                aligned("--offset", *offset)?;
                aligned("the input size", size)?;
                if file.is_none() {
                    within(*offset, size)?;
                }
                let mut flags = KiocbFlags::empty();
                flags.set(KiocbFlags::DSYNC, *dsync);
                flags.set(KiocbFlags::SYNC, *sync);
                flags.set(KiocbFlags::HIPRI, *hipri);
                // Stream the input: at most one chunk of it is in memory at a time.
                let mut staging = vec![0u8; (chunk as u64).min(size) as usize];
                let mut done = 0u64;
                while done < size {
                    let len = (chunk as u64).min(size - done) as usize;
                    src.read_exact_at(&mut staging[..len], done)
                        .map_err(host_err)?;
                    let b = take_buffer(&mut buf, &mut alloc, chunk, n, op)?;
                    if !b.write_at(0, &staging[..len]) {
                        return Err(StepError::BufferTooSmall { step: n, op, len });
                    }
                    let mut iter = IovIter::new(vec![b]);
                    iter.truncate(len);
                    let mut iocb = Kiocb::new(offset + done, flags);
                    let r = match &file {
                        None => dio.write(&mut iocb, &mut iter, &raw, &raw),
                        Some(f) => f.write(dio, &mut iocb, &mut iter, DioFlags::empty()),
                    };
                    buf = iter.into_buffers().pop();
                    let wrote = r.map_err(|source| StepError::Dio {
                        step: n,
                        op,
                        source,
                    })?;
                    if wrote == 0 {
                        break;
                    }
                    write_done(&WriteDone {
                        step: n,
                        file: step.file().map(String::from),
                        offset: offset + done,
                        length: wrote as u64,
                        crc32: WRITE_CRC.checksum(&staging[..wrote.min(len)]),
                    });
                    done += wrote as u64;
                }
                (*offset, size)
            }
            Step::Read {
                offset,
                length,
                output,
                hipri,
                ..
            } => {
                aligned("--offset", *offset)?;
                aligned("--length", *length)?;
                if file.is_none() {
                    within(*offset, *length)?;
                }
                let host_err = |source| StepError::HostFile {
                    step: n,
                    op,
                    path: output.display().to_string(),
                    source,
                };
                let mut out = std::fs::File::create(output).map_err(host_err)?;
                let flags = if *hipri {
                    KiocbFlags::HIPRI
                } else {
                    KiocbFlags::empty()
                };
                let mut staging = vec![0u8; chunk.min(*length as usize)];
                let mut done = 0u64;
                while done < *length {
                    let len = (chunk as u64).min(length - done) as usize;
                    let b = take_buffer(&mut buf, &mut alloc, chunk, n, op)?;
                    let mut iter = IovIter::new(vec![b]);
                    iter.truncate(len);
                    let mut iocb = Kiocb::new(offset + done, flags);
                    let r = match &file {
                        None => dio.read(&mut iocb, &mut iter, &raw, &raw),
                        Some(f) => f.read(dio, &mut iocb, &mut iter),
                    };
                    let b = iter.into_buffers().pop();
                    let got = r.map_err(|source| StepError::Dio {
                        step: n,
                        op,
                        source,
                    })?;
                    if let Some(b) = &b {
                        if got > 0 && !b.read_at(0, &mut staging[..got]) {
                            return Err(StepError::BufferTooSmall {
                                step: n,
                                op,
                                len: got,
                            });
                        }
                    }
                    buf = b;
                    out.write_all(&staging[..got])
                        .map_err(|source| StepError::HostFile {
                            step: n,
                            op,
                            path: output.display().to_string(),
                            source,
                        })?;
                    if got == 0 {
                        break; // end of file
                    }
                    done += got as u64;
                }
                (*offset, *length)
            }
            Step::Compare {
                offset,
                input,
                pattern,
                length,
                ..
            } => {
                let host_err = |path: &std::path::Path, source| StepError::HostFile {
                    step: n,
                    op,
                    path: path.display().to_string(),
                    source,
                };
                let src = match input {
                    Some(p) => Some((std::fs::File::open(p).map_err(|e| host_err(p, e))?, p)),
                    None => None,
                };
                let size = match (&src, length) {
                    (Some((f, p)), _) => f.metadata().map_err(|e| host_err(p, e))?.len(),
                    (None, Some(len)) => *len,
                    (None, None) => 0,
                };
                aligned("--offset", *offset)?;
                aligned("the expected size", size)?;
                if file.is_none() {
                    within(*offset, size)?;
                }
                let mut staging = vec![pattern.unwrap_or(0); (chunk as u64).min(size) as usize];
                let mut done = 0u64;
                while done < size {
                    let len = (chunk as u64).min(size - done) as usize;
                    if let Some((f, p)) = &src {
                        f.read_exact_at(&mut staging[..len], done)
                            .map_err(|e| host_err(p, e))?;
                    }
                    let b = take_buffer(&mut buf, &mut alloc, chunk, n, op)?;
                    if !b.write_at(0, &staging[..len]) {
                        return Err(StepError::BufferTooSmall { step: n, op, len });
                    }
                    let mut iter = IovIter::new(vec![b]);
                    iter.truncate(len);
                    let mut iocb = Kiocb::new(offset + done, KiocbFlags::empty());
                    let r = match &file {
                        None => dio.compare(&mut iocb, &mut iter, &raw, &raw),
                        Some(f) => f.compare(dio, &mut iocb, &mut iter),
                    };
                    buf = iter.into_buffers().pop();
                    let compared = match r {
                        Ok(c) => c,
                        Err(DioError::Miscompare) => {
                            return Err(StepError::Miscompare {
                                step: n,
                                offset: offset + done,
                                end: offset + done + len as u64,
                            })
                        }
                        Err(source) => {
                            return Err(StepError::Dio {
                                step: n,
                                op,
                                source,
                            })
                        }
                    };
                    if compared == 0 {
                        break; // end of file
                    }
                    done += compared as u64;
                }
                (*offset, size)
            }
        };
        let counters = Counters::between(before, dio.stats());
        report.totals.add(&counters);
        report.steps.push(StepReport {
            op,
            file: step.file().map(String::from),
            offset,
            length,
            counters,
        });
    }
    Ok(report)
}

fn take_buffer<B, A>(
    slot: &mut Option<B>,
    alloc: &mut A,
    len: usize,
    step: usize,
    op: &'static str,
) -> Result<B, StepError>
where
    A: FnMut(usize) -> Result<B, hugepages::Error>,
{
    match slot.take() {
        Some(b) => Ok(b),
        None => alloc(len).map_err(|source| StepError::Buffer {
            step,
            op,
            len,
            source,
        }),
    }
}
