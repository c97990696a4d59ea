//! `nvme-e2e-device`: device-level steps of the end-to-end checks that no tool
//! exposes, through the `nvme` driver library.
//!
//! ```text
//! nvme-e2e-device DEVICE reset-roundtrip FILE LBA [NSID]
//!     write FILE at LBA, reset the controller, read it back and compare, then
//!     shut the controller down (exit 0 when every step succeeded)
//! nvme-e2e-device DEVICE read-past-end [NSID]
//!     read the last block (must succeed), then the first block past the end
//!     (the device must refuse it); prints `status=<name and codes>`
//! nvme-e2e-device DEVICE write-blocks NSID LBA FILE [pract]
//!     write FILE (data bytes, whole blocks) at LBA; with `pract` the controller
//!     inserts the protection information; on a namespace with separate metadata
//!     (without `pract`) each block's metadata is a byte pattern of its LBA
//! nvme-e2e-device DEVICE read-blocks NSID LBA BLOCKS FILE [pract]
//!     read BLOCKS blocks at LBA and store their data bytes in FILE; with `pract`
//!     the controller strips the protection information
//! nvme-e2e-device DEVICE zone-append NSID ZSLBA FILE BLOCKS
//!     append FILE (whole blocks) to the zone starting at ZSLBA with Zone Append
//!     commands of BLOCKS blocks, one at a time; each must land at the zone's write
//!     pointer (printed as `appended_lba=`), then the zone as a report shows it
//! ```
//! Facts are printed as `key=value` lines for the guest scripts.

use std::process::ExitCode;
use std::time::Duration;

use nvme::spec::identify::NamespaceFormat;
use nvme::spec::zns::ZoneReportFilter;
use nvme::{open, DmaBuffer, IoFlags, IoOptions, Options, QueuePairOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [dev, "reset-roundtrip", file, lba] => reset_roundtrip(dev, file, lba, "1"),
        [dev, "reset-roundtrip", file, lba, ns] => reset_roundtrip(dev, file, lba, ns),
        [dev, "read-past-end"] => read_past_end(dev, "1"),
        [dev, "read-past-end", ns] => read_past_end(dev, ns),
        [dev, "write-blocks", ns, lba, file, ref pract @ ..] if pract.len() <= 1 => {
            let pract = parse_pract(pract);
            pract.and_then(|pract| transfer_blocks(dev, ns, lba, Transfer::Write { file }, pract))
        }
        [dev, "read-blocks", ns, lba, blocks, file, ref pract @ ..] if pract.len() <= 1 => {
            let pract = parse_pract(pract);
            pract.and_then(|pract| {
                transfer_blocks(dev, ns, lba, Transfer::Read { blocks, file }, pract)
            })
        }
        [dev, "zone-append", ns, zslba, file, blocks] => zone_append(dev, ns, zslba, file, blocks),
        _ => {
            eprintln!(
                "usage: nvme-e2e-device DEVICE reset-roundtrip FILE LBA [NSID]\n       \
                 nvme-e2e-device DEVICE read-past-end [NSID]\n       \
                 nvme-e2e-device DEVICE write-blocks NSID LBA FILE [pract]\n       \
                 nvme-e2e-device DEVICE read-blocks NSID LBA BLOCKS FILE [pract]\n       \
                 nvme-e2e-device DEVICE zone-append NSID ZSLBA FILE BLOCKS"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nvme-e2e-device: {e}");
            ExitCode::FAILURE
        }
    }
}

fn number<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{what} '{text}' is not a number"))
}

/// Writes `file` at `lba`, resets, reads back, compares, shuts down.
fn reset_roundtrip(dev: &str, file: &str, lba: &str, ns: &str) -> Result<(), String> {
    let lba: u64 = number("LBA", lba)?;
    let nsid: u32 = number("NSID", ns)?;
    let data = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let ctrl = open(dev, Options::default()).map_err(|e| e.to_string())?;
    let ns = ctrl
        .namespace(nsid)
        .ok_or_else(|| format!("{dev} has no active namespace {nsid}"))?;
    let lba_size = ns.lba_size as usize;
    if data.is_empty() || data.len() % lba_size != 0 {
        return Err(format!(
            "{file} is {} bytes, not a non-zero multiple of the {lba_size}-byte LBA",
            data.len()
        ));
    }
    let blocks = u32::try_from(data.len() / lba_size).map_err(|_| "file too large".to_string())?;
    let mut qp = ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .map_err(|e| e.to_string())?;
    let mut buf = ctrl
        .allocator()
        .alloc(data.len(), 4096)
        .map_err(|e| e.to_string())?;
    buf.write(0, &data).map_err(|e| e.to_string())?;
    qp.write_sync(nsid, lba, blocks, &buf, nvme::IoFlags::FUA)
        .map_err(|e| format!("write before the reset: {e}"))?;
    println!("written_blocks={blocks}");

    ctrl.reset().map_err(|e| format!("reset: {e}"))?;
    println!("reset=ok");

    buf.fill(0, data.len(), 0).map_err(|e| e.to_string())?;
    // The first call after a reset may report the reset; the pair re-creates its queues.
    if let Err(e) = qp.read_sync(nsid, lba, blocks, &mut buf) {
        println!("first_read_after_reset={e}");
        qp.read_sync(nsid, lba, blocks, &mut buf)
            .map_err(|e| format!("read after the reset: {e}"))?;
    }
    if !buf.compare(0, &data).map_err(|e| e.to_string())? {
        return Err("data read after the reset differs from what was written before it".into());
    }
    println!("read_after_reset=same");
    drop(qp);
    ctrl.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    println!("shutdown=ok");
    Ok(())
}

/// Reads the last block, then one past the end, printing the device's status.
fn read_past_end(dev: &str, ns: &str) -> Result<(), String> {
    let nsid: u32 = number("NSID", ns)?;
    let ctrl = open(dev, Options::default()).map_err(|e| e.to_string())?;
    let ns = ctrl
        .namespace(nsid)
        .ok_or_else(|| format!("{dev} has no active namespace {nsid}"))?;
    let mut qp = ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .map_err(|e| e.to_string())?;
    let mut buf = ctrl
        .allocator()
        .alloc(ns.lba_size as usize, 4096)
        .map_err(|e| e.to_string())?;
    if ns.blocks == 0 {
        return Err(format!("namespace {nsid} of {dev} is empty"));
    }
    println!("nsze={}", ns.blocks);
    qp.read_sync(nsid, ns.blocks - 1, 1, &mut buf)
        .map_err(|e| format!("reading the last block {} failed: {e}", ns.blocks - 1))?;
    match qp.read_sync(nsid, ns.blocks, 1, &mut buf) {
        Ok(()) => Err(format!(
            "reading block {} (one past the end) succeeded",
            ns.blocks
        )),
        Err(e) => {
            println!("error={e}");
            match e.status() {
                Some(status) => {
                    println!("status={status}");
                    Ok(())
                }
                None => Err(format!("the failed read carries no device status: {e}")),
            }
        }
    }
}

/// Appends a file to the zone at `zslba` in Zone Appends of `blocks` blocks, one
/// outstanding at a time, so each must be written at the zone's write pointer;
/// prints every LBA the device returned and the zone's state afterwards.
fn zone_append(dev: &str, ns: &str, zslba: &str, file: &str, blocks: &str) -> Result<(), String> {
    let nsid: u32 = number("NSID", ns)?;
    let zslba: u64 = number("ZSLBA", zslba)?;
    let per_cmd: u32 = number("BLOCKS", blocks)?;
    let data = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let ctrl = open(dev, Options::default()).map_err(|e| e.to_string())?;
    let ns = ctrl
        .namespace(nsid)
        .ok_or_else(|| format!("{dev} has no active namespace {nsid}"))?;
    let zoned = ns
        .zoned
        .ok_or_else(|| format!("namespace {nsid} of {dev} is not zoned"))?;
    let block = ns.lba_size as usize;
    if per_cmd == 0 || data.is_empty() || data.len() % block != 0 {
        return Err(format!(
            "{file} is {} bytes and BLOCKS is {per_cmd}: both must be non-zero, the file whole {block}-byte blocks",
            data.len()
        ));
    }
    if zoned.zone_start(zslba) != zslba {
        return Err(format!(
            "LBA {zslba} is not a zone start (zones of {} blocks)",
            zoned.zone_size_blocks
        ));
    }
    let mut qp = ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .map_err(|e| e.to_string())?;
    let mut report = ctrl
        .allocator()
        .alloc(4096, 4096)
        .map_err(|e| e.to_string())?;
    let zone_of = |qp: &mut nvme::IoQueuePair<_>, report: &mut DmaBuffer| {
        qp.report_zones(nsid, zslba, ZoneReportFilter::All, true, report)
            .map_err(|e| format!("report of zone {zslba}: {e}"))?
            .zones
            .into_iter()
            .find(|z| z.zslba == zslba)
            .ok_or_else(|| format!("the report from LBA {zslba} does not hold that zone"))
    };
    let mut expected = zone_of(&mut qp, &mut report)?.wp;
    let mut buf = ctrl
        .allocator()
        .alloc(per_cmd as usize * block, 4096)
        .map_err(|e| e.to_string())?;
    for chunk in data.chunks(per_cmd as usize * block) {
        let n = u32::try_from(chunk.len() / block).map_err(|e| e.to_string())?;
        buf.write(0, chunk).map_err(|e| e.to_string())?;
        let lba = qp
            .zone_append_sync(nsid, zslba, n, &buf, IoFlags::empty())
            .map_err(|e| format!("zone append of {n} blocks to zone {zslba}: {e}"))?;
        println!("appended_lba={lba}");
        if lba != expected {
            return Err(format!(
                "the device wrote {n} appended blocks at LBA {lba}, not at the write pointer {expected}"
            ));
        }
        expected += u64::from(n);
    }
    let zone = zone_of(&mut qp, &mut report)?;
    println!("zone_state={}", zone.state);
    println!("zone_wp={}", zone.wp);
    Ok(())
}

/// The optional last argument of `write-blocks` and `read-blocks`.
fn parse_pract(rest: &[&str]) -> Result<bool, String> {
    match rest {
        [] => Ok(false),
        ["pract"] => Ok(true),
        [other] => Err(format!("unknown flag '{other}' (only 'pract')")),
        _ => Err("too many arguments".into()),
    }
}

/// What `transfer_blocks` does.
enum Transfer<'a> {
    /// Writes the data bytes of a file.
    Write { file: &'a str },
    /// Reads a number of blocks into a file.
    Read { blocks: &'a str, file: &'a str },
}

/// Per-block buffer sizes of a data-only transfer on `format`: the data bytes in the
/// data buffer and the separate metadata bytes. Extended LBAs without PRACT are
/// refused: their data buffer would interleave metadata with the file's bytes.
/// `pi_only`: the metadata is nothing but the protection information tuple (8 bytes,
/// or 16 with the 64-bit guard).
fn data_only_layout(
    format: &NamespaceFormat,
    pi_only: bool,
    pract: bool,
) -> Result<(usize, usize), String> {
    if pract && !pi_only {
        return Err(format!(
            "pract needs protection information that is the whole metadata; this format \
             has {} metadata bytes and protection type {}",
            format.metadata_size,
            format.protection.pit()
        ));
    }
    if pract {
        return Ok((format.data_size as usize, 0));
    }
    if format.is_extended() {
        return Err(
            "without pract an extended-LBA format interleaves metadata with \
                    the data; this tool moves data only"
                .into(),
        );
    }
    Ok((
        format.data_size as usize,
        usize::from(format.separate_metadata_size()),
    ))
}

/// Writes a file's data at `lba`, or reads `blocks` blocks at `lba` into a file, in
/// commands of at most the queue pair's maximum transfer, with PRACT or a separate
/// metadata buffer as the format needs.
fn transfer_blocks(
    dev: &str,
    ns: &str,
    lba: &str,
    what: Transfer<'_>,
    pract: bool,
) -> Result<(), String> {
    let nsid: u32 = number("NSID", ns)?;
    let lba: u64 = number("LBA", lba)?;
    let ctrl = open(dev, Options::default()).map_err(|e| e.to_string())?;
    let ns = ctrl
        .namespace(nsid)
        .ok_or_else(|| format!("{dev} has no active namespace {nsid}"))?;
    let format = ns.identify.format().map_err(|e| e.to_string())?;
    let pi_only = ns
        .protection()
        .map_err(|e| e.to_string())?
        .is_some_and(|p| p.is_pi_only());
    let (block, md_block) = data_only_layout(&format, pi_only, pract)?;
    let mut data = match &what {
        Transfer::Write { file } => {
            let data = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
            if data.is_empty() || data.len() % block != 0 {
                return Err(format!(
                    "{file} is {} bytes, not a non-zero multiple of the {block}-byte block",
                    data.len()
                ));
            }
            data
        }
        Transfer::Read { blocks, .. } => vec![0; number::<usize>("BLOCKS", blocks)? * block],
    };
    let total = u64::try_from(data.len() / block).map_err(|e| e.to_string())?;
    if total == 0 || lba.checked_add(total).is_none_or(|end| end > ns.blocks) {
        return Err(format!(
            "{total} blocks at LBA {lba} do not fit namespace {nsid} ({} blocks)",
            ns.blocks
        ));
    }
    let mut qp = ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .map_err(|e| e.to_string())?;
    let per_cmd = (qp.max_transfer_bytes() / block as u64).clamp(1, 256);
    let mut buf = ctrl
        .allocator()
        .alloc(per_cmd as usize * block, 4096)
        .map_err(|e| e.to_string())?;
    let mut md = ctrl
        .allocator()
        .alloc((per_cmd as usize * md_block).max(4), 4096)
        .map_err(|e| e.to_string())?;
    let flags = if pract {
        IoFlags::PRACT
    } else {
        IoFlags::empty()
    };
    let mut commands = 0u64;
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(per_cmd);
        let (start, len) = ((done as usize) * block, n as usize * block);
        let slba = lba + done;
        let seg = buf.segment(0, len).map_err(|e| e.to_string())?;
        let opts = IoOptions {
            flags,
            metadata: (md_block > 0)
                .then(|| md.segment(0, n as usize * md_block))
                .transpose()
                .map_err(|e| e.to_string())?,
            ..IoOptions::default()
        };
        let submitted = match what {
            Transfer::Write { .. } => {
                buf.write(0, &data[start..start + len])
                    .map_err(|e| e.to_string())?;
                fill_metadata(&mut md, slba, n, md_block)?;
                qp.submit_write_ext(nsid, slba, n as u32, &[seg], &opts, 0)
            }
            Transfer::Read { .. } => qp.submit_read_ext(nsid, slba, n as u32, &[seg], &opts, 0),
        };
        submitted.map_err(|e| format!("blocks {slba}..{}: {e}", slba + n))?;
        wait_one(&mut qp).map_err(|e| format!("blocks {slba}..{}: {e}", slba + n))?;
        if let Transfer::Read { .. } = what {
            buf.read(0, &mut data[start..start + len])
                .map_err(|e| e.to_string())?;
        }
        commands += 1;
        done += n;
    }
    if let Transfer::Read { file, .. } = what {
        std::fs::write(file, &data).map_err(|e| format!("cannot write {file}: {e}"))?;
    }
    println!("blocks={total}");
    println!("commands={commands}");
    println!("metadata_bytes_per_block={md_block}");
    Ok(())
}

/// Each block's separate metadata: its LBA's bytes, repeated (the controller keeps them).
fn fill_metadata(
    md: &mut DmaBuffer,
    slba: u64,
    blocks: u64,
    per_block: usize,
) -> Result<(), String> {
    for i in 0..blocks {
        let tag: Vec<u8> = (slba + i)
            .to_le_bytes()
            .into_iter()
            .cycle()
            .take(per_block)
            .collect();
        md.write(i as usize * per_block, &tag)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Rings the doorbell and waits for the one outstanding command's completion.
fn wait_one<T: nvme::Transport>(qp: &mut nvme::IoQueuePair<T>) -> Result<(), nvme::Error> {
    let mut status = Ok(());
    qp.ring();
    while qp.outstanding() > 0 {
        qp.wait_completions(1, Duration::from_secs(10), |_, s| {
            if status.is_ok() {
                status = s;
            }
        })?;
    }
    status
}
