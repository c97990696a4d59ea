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
//! ```
//! Facts are printed as `key=value` lines for the guest scripts.

use std::process::ExitCode;

use nvme::{open, Options, QueuePairOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [dev, "reset-roundtrip", file, lba] => reset_roundtrip(dev, file, lba, "1"),
        [dev, "reset-roundtrip", file, lba, ns] => reset_roundtrip(dev, file, lba, ns),
        [dev, "read-past-end"] => read_past_end(dev, "1"),
        [dev, "read-past-end", ns] => read_past_end(dev, ns),
        _ => {
            eprintln!(
                "usage: nvme-e2e-device DEVICE reset-roundtrip FILE LBA [NSID]\n       \
                 nvme-e2e-device DEVICE read-past-end [NSID]"
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
