//! Opens the device and runs an `nvme-dio` script on one queue pair.

use dio::nvme_qp::{IoBuffer, NvmeQueue};
use dio::Dio;
use nvme::spec::zns::ZoneReportFilter;
use nvme::{CompletionMode, QueuePairOptions};

use super::args::Step;
use std::io::Write;

use super::script::{self, DioReport, WriteDone};
use crate::cli::ToolError;

/// Requests the engine keeps in flight (the script runs one at a time).
const SLOTS: usize = 4;
/// Queue entries of the pair.
const QUEUE_DEPTH: u16 = 64;

/// Runs `steps` on namespace `nsid` of `device`; with `report_writes`, prints a
/// [`WriteDone`] JSON line on stdout (flushed) as each write request completes.
pub fn run(
    device: &str,
    nsid: u32,
    steps: &[Step],
    report_writes: bool,
) -> Result<DioReport, ToolError> {
    let ctrl = nvme::open(
        device,
        nvme::Options {
            io_queues: 1,
            ..nvme::Options::default()
        },
    )?;
    // Sleeping waits use the queue's interrupt; HIPRI requests poll it.
    let qp = match ctrl.create_io_queue_pair(QueuePairOptions {
        depth: QUEUE_DEPTH,
        mode: CompletionMode::Interrupt,
        ..QueuePairOptions::default()
    }) {
        Ok(qp) => qp,
        Err(e) => {
            tracing::info!(error = %e, "no interrupt for the queue pair; polling instead");
            ctrl.create_io_queue_pair(QueuePairOptions {
                depth: QUEUE_DEPTH,
                mode: CompletionMode::Polled,
                ..QueuePairOptions::default()
            })?
        }
    };
    if ctrl.namespace(nsid).is_none() {
        return Err(ToolError::NoNamespace {
            device: device.to_string(),
            nsid,
            active: crate::cli::active_namespaces(&ctrl),
        });
    }
    let mut qp = qp;
    if let Some(ns) = ctrl.namespace(nsid) {
        if let Some(zoned) = ns.zoned {
            // Writes off a write pointer are refused before any I/O.
            let bytes = 64 * 1024;
            let mut buf = ctrl
                .allocator()
                .alloc(bytes, ctrl.page_size() as usize)
                .map_err(|source| ToolError::Memory { bytes, source })?;
            let zones = qp.report_zones_all(nsid, ZoneReportFilter::All, &mut buf)?;
            super::zoned::check_steps(steps, &zones, zoned.zone_size_blocks, ns.lba_size.into())?;
        }
    }
    let queue = NvmeQueue::new(&ctrl, qp, nsid)?;
    let page = ctrl.page_size() as usize;
    let alloc = |len: usize| ctrl.allocator().alloc(len.max(1), page).map(IoBuffer::new);
    let zero = alloc(page).map_err(|source| ToolError::Memory {
        bytes: page,
        source,
    })?;
    let mut engine = Dio::new(queue, Some(zero), SLOTS)?;
    if !report_writes {
        return Ok(script::run(&mut engine, alloc, steps)?);
    }
    let print = |w: &WriteDone| {
        // A line that cannot be written reports nothing: the caller does not count it.
        if let Ok(line) = serde_json::to_string(w) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    };
    Ok(script::run_reporting_writes(
        &mut engine,
        alloc,
        steps,
        print,
    )?)
}
