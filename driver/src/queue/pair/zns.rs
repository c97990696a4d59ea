//! Zone commands on a queue pair (NVMe Zoned Namespace Command Set 1.1): Zone Append
//! with the LBA the device chose, zone reports, zone actions, and zone statuses
//! decoded into [`Error::Zone`] with the zone named.
//!
//! The device is the authority on zones: nothing here checks a write against a write
//! pointer. A Zone Append is never split (the device places each command on its own),
//! so one larger than ZASL or the largest transfer is refused.

use std::time::Instant;

use hugepages::DmaBuffer;

use crate::backoff::Backoff;
use crate::dma::DmaMem;
use crate::error::{CommandDesc, IoKind};
use crate::namespace::NsGeometry;
use crate::queue::prp::Segment;
use crate::queue::{IoFlags, IoOptions};
use crate::spec::zns::ZONE_DESCRIPTOR_SIZE as ZONE_DESCRIPTOR_BYTES;
use crate::spec::zns::{self, ZoneReceiveAction, ZoneReportFilter, ZoneSendAction};
use crate::transport::Transport;
use crate::zns::{decode_report, is_zone_status, Zone, ZoneReportPage};
use crate::Error;

use super::submit::{Blocks, Transfer, MAX_BLOCKS};
use super::IoQueuePair;

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    /// The geometry of zoned namespace `nsid`, or why zone commands cannot go there.
    fn zoned_geometry(&self, command: CommandDesc, nsid: u32) -> Result<&NsGeometry, Error> {
        let g = self.ns_geometry(nsid)?;
        if g.unusable_set {
            return Err(Error::UnsupportedCommandSet {
                nsid,
                csi: g.command_set,
            });
        }
        if g.zone_blocks == 0 {
            return Err(Error::NotZoned { command, nsid });
        }
        Ok(g)
    }

    /// Queues a Zone Append of `blocks` blocks from `data` to the zone starting at
    /// `zslba`. The device chooses the LBA (the zone's write pointer when it runs);
    /// [`Self::process_completions_with_result`] hands it to the caller as the
    /// completion's value. `data` holds exactly `blocks` times the namespace's
    /// data-buffer block size and stays allocated until the completion is reported.
    ///
    /// An append is one command: larger than the controller's Zone Append Size Limit
    /// or the largest transfer, it is refused, not split.
    pub fn submit_zone_append(
        &mut self,
        nsid: u32,
        zslba: u64,
        blocks: u32,
        data: &[Segment],
        opts: &IoOptions,
        ctx: C,
    ) -> Result<(), Error> {
        let desc = CommandDesc::Io {
            kind: IoKind::ZoneAppend,
            nsid,
            slba: zslba,
            blocks,
        };
        let (block_bytes, md_block_bytes) =
            self.block_sizes(nsid, opts.flags, opts.metadata.is_some())?;
        let g = self.zoned_geometry(desc, nsid)?;
        let bytes = u64::from(blocks) * u64::from(block_bytes);
        let data_bytes = u64::from(blocks) << g.lba_shift;
        let limit = self.max_transfer.min(g.zone_append_bytes);
        if blocks == 0 || blocks > MAX_BLOCKS || bytes > self.max_transfer || data_bytes > limit {
            return Err(Error::InvalidRequest(format!(
                "{desc}: a zone append is one command of 1 to {} blocks and at most {limit} bytes (the Zone Append Size Limit and the largest transfer); append in smaller pieces",
                MAX_BLOCKS
            )));
        }
        let sqe = zns::zone_append(nsid, zslba, blocks)
            .map_err(|e| Error::InvalidRequest(format!("{desc}: {e}")))?;
        let at = Blocks {
            nsid,
            slba: zslba,
            blocks,
        };
        let (sqe, transfer) =
            self.data_command(sqe, at, data, opts, (block_bytes, md_block_bytes))?;
        self.submit(sqe, desc, Some(transfer), ctx)
    }

    /// Appends `blocks` blocks from the start of `buf` to the zone starting at `zslba`
    /// with `flags`, waits, and returns the LBA the device wrote them at. A zone status
    /// comes back as [`Error::Zone`] with the zone's write pointer read from a report.
    pub fn zone_append_sync(
        &mut self,
        nsid: u32,
        zslba: u64,
        blocks: u32,
        buf: &DmaBuffer,
        flags: IoFlags,
    ) -> Result<u64, Error> {
        let block_bytes = self.data_block_bytes(nsid, flags)?;
        let bytes = (u64::from(blocks) * u64::from(block_bytes)) as usize;
        let seg = buf
            .segment(0, bytes)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let opts = IoOptions {
            flags,
            ..IoOptions::default()
        };
        let result = self.sync_with_result(|q| {
            q.submit_zone_append(nsid, zslba, blocks, &[seg], &opts, C::default())
        });
        result.map_err(|e| self.locate_zone_error(e))
    }

    /// Queues a Zone Management Receive (Report Zones) into `data` (a multiple of 4
    /// bytes, at least 64): zones from the one holding `slba` on that match `filter`;
    /// with `partial` the header counts only the descriptors that fit. Decode the
    /// buffer with [`crate::zns::decode_report`].
    pub fn submit_report_zones(
        &mut self,
        nsid: u32,
        slba: u64,
        filter: ZoneReportFilter,
        partial: bool,
        data: &[Segment],
        ctx: C,
    ) -> Result<(), Error> {
        let desc = CommandDesc::Io {
            kind: IoKind::ZoneReport,
            nsid,
            slba,
            blocks: 0,
        };
        self.zoned_geometry(desc, nsid)?;
        let bytes: u64 = data.iter().map(|s| s.len as u64).sum();
        if bytes > self.max_transfer {
            return Err(Error::InvalidRequest(format!(
                "{desc}: a report buffer of {bytes} bytes is larger than one command moves ({} bytes)",
                self.max_transfer
            )));
        }
        let sqe = zns::zone_management_receive(
            nsid,
            slba,
            ZoneReceiveAction::ReportZones,
            filter,
            partial,
            bytes,
        )
        .map_err(|e| Error::InvalidRequest(format!("{desc}: {e}")))?;
        let transfer = Transfer {
            data,
            bytes,
            metadata: None,
            metadata_bytes: 0,
        };
        self.submit(sqe, desc, Some(transfer), ctx)
    }

    /// Reports the zones from the one holding `slba` on that match `filter`, as many
    /// as `buf` holds (its length rounded down to whole descriptors and to the largest
    /// transfer), and waits. With `partial`, `nr_zones` counts the zones returned;
    /// without, every matching zone from `slba` on.
    pub fn report_zones(
        &mut self,
        nsid: u32,
        slba: u64,
        filter: ZoneReportFilter,
        partial: bool,
        buf: &mut DmaBuffer,
    ) -> Result<ZoneReportPage, Error> {
        let bytes = report_bytes(buf.len(), self.max_transfer);
        let seg = buf
            .segment(0, bytes)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        self.sync(|q| q.submit_report_zones(nsid, slba, filter, partial, &[seg], C::default()))?;
        let mut page = vec![0u8; bytes];
        buf.read(0, &mut page)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let blocks = self.ns_geometry(nsid)?.blocks;
        decode_report(&page, 0, blocks).map_err(|detail| Error::BadDeviceData {
            device: self.shared.name.clone(),
            detail: format!("zone report of namespace {nsid}: {detail}"),
        })
    }

    /// Every zone of the namespace that matches `filter`, paging through partial
    /// reports of `buf`'s size. The device is untrusted: each page must move past the
    /// last, and no more zones than the namespace has are accepted.
    pub fn report_zones_all(
        &mut self,
        nsid: u32,
        filter: ZoneReportFilter,
        buf: &mut DmaBuffer,
    ) -> Result<Vec<Zone>, Error> {
        let desc = CommandDesc::Io {
            kind: IoKind::ZoneReport,
            nsid,
            slba: 0,
            blocks: 0,
        };
        let g = *self.zoned_geometry(desc, nsid)?;
        let most = g.blocks.div_ceil(g.zone_blocks);
        let mut zones: Vec<Zone> = Vec::new();
        let mut slba = 0u64;
        while slba < g.blocks {
            let page = self.report_zones(nsid, slba, filter, true, buf)?;
            let Some(last) = page.zones.last() else { break };
            let bad = |detail: String| Error::BadDeviceData {
                device: self.shared.name.clone(),
                detail: format!("zone report of namespace {nsid} from LBA {slba:#x}: {detail}"),
            };
            if page.zones[0].zslba < g.zone_start(slba) {
                return Err(bad(format!(
                    "the first zone starts at LBA {:#x}, before the zone asked for",
                    page.zones[0].zslba
                )));
            }
            if zones.len() as u64 + page.zones.len() as u64 > most {
                return Err(bad(format!("more zones than the namespace's {most}")));
            }
            slba = last.zslba.saturating_add(g.zone_blocks);
            zones.extend_from_slice(&page.zones);
        }
        Ok(zones)
    }

    /// Queues a Zone Management Send of `action` on the zone starting at `zslba`, or
    /// with `select_all` on every zone in a state the action applies to.
    pub fn submit_zone_action(
        &mut self,
        nsid: u32,
        zslba: u64,
        action: ZoneSendAction,
        select_all: bool,
        ctx: C,
    ) -> Result<(), Error> {
        let kind = match action {
            ZoneSendAction::Open => IoKind::ZoneOpen,
            ZoneSendAction::Close => IoKind::ZoneClose,
            ZoneSendAction::Finish => IoKind::ZoneFinish,
            ZoneSendAction::Reset => IoKind::ZoneReset,
            ZoneSendAction::Offline => IoKind::ZoneOffline,
            ZoneSendAction::SetDescriptorExtension => {
                return Err(Error::InvalidRequest(format!(
                    "{action} carries data; it is not a zone action this call sends"
                )))
            }
        };
        let desc = CommandDesc::Io {
            kind,
            nsid,
            slba: zslba,
            blocks: u32::from(!select_all),
        };
        self.zoned_geometry(desc, nsid)?;
        let sqe = zns::zone_management_send(nsid, zslba, action, select_all);
        self.submit(sqe, desc, None, ctx)
    }

    /// [`Self::submit_zone_action`] and wait.
    pub fn zone_action(
        &mut self,
        nsid: u32,
        zslba: u64,
        action: ZoneSendAction,
        select_all: bool,
    ) -> Result<(), Error> {
        self.sync(|q| q.submit_zone_action(nsid, zslba, action, select_all, C::default()))
    }

    /// A zone status on a command that addressed one zone becomes [`Error::Zone`]
    /// naming that zone; any other error is returned as it is. Called for every
    /// failed completion, out of line.
    #[cold]
    #[inline(never)]
    pub(super) fn zone_error(&self, e: Error) -> Error {
        let Error::CommandFailed {
            command:
                command @ CommandDesc::Io {
                    kind,
                    nsid,
                    slba,
                    blocks,
                },
            status,
        } = e
        else {
            return e;
        };
        // A report or a select-all action names no one zone (and a report's failure
        // must not send another report to locate it).
        let one_zone = blocks != 0 && kind != IoKind::ZoneReport;
        match self.ns.get(nsid) {
            Some(g) if g.zone_blocks != 0 && one_zone && is_zone_status(status) => Error::Zone {
                command,
                status,
                zone_start: g.zone_start(slba),
                write_pointer: None,
                lba: slba,
            },
            _ => e,
        }
    }

    /// Fills in the write pointer of an [`Error::Zone`] from a report of its zone;
    /// any other error, or a report that fails, leaves `e` as it is. Needs an idle
    /// queue pair (the blocking calls use it).
    pub fn locate_zone_error(&mut self, e: Error) -> Error {
        let Error::Zone {
            command,
            status,
            zone_start,
            write_pointer: None,
            lba,
        } = e
        else {
            return e;
        };
        let CommandDesc::Io { nsid, .. } = command else {
            return e;
        };
        let wp = DmaMem::alloc(&self.shared.alloc, 4096, 4096, "a zone report")
            .ok()
            .and_then(|mem| {
                let seg = mem.buffer().segment(0, 2 * ZONE_DESCRIPTOR_BYTES).ok()?;
                self.sync(|q| {
                    q.submit_report_zones(
                        nsid,
                        zone_start,
                        ZoneReportFilter::All,
                        true,
                        &[seg],
                        C::default(),
                    )
                })
                .ok()?;
                let mut page = [0u8; 2 * ZONE_DESCRIPTOR_BYTES];
                mem.buffer().read(0, &mut page).ok()?;
                let blocks = self.ns.get(nsid)?.blocks;
                let zone = decode_report(&page, 0, blocks)
                    .ok()?
                    .zones
                    .first()
                    .copied()?;
                (zone.zslba == zone_start).then_some(zone.wp)
            });
        Error::Zone {
            command,
            status,
            zone_start,
            write_pointer: wp,
            lba,
        }
    }

    /// Submits one command with `submit` on an idle pair, waits for it, and returns
    /// its completion value (see [`Self::process_completions_with_result`]).
    fn sync_with_result(
        &mut self,
        submit: impl FnOnce(&mut Self) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        self.require_idle()?;
        submit(self)?;
        self.ring();
        let limit = self.sync_limit();
        let end = Instant::now() + limit;
        let mut backoff = Backoff::new();
        let mut result = None;
        loop {
            self.process_completions_with_result(1, |_, r| result = Some(r));
            if let Some(r) = result {
                return r;
            }
            if Instant::now() >= end {
                return Err(Error::Timeout {
                    device: self.shared.name.clone(),
                    what: "complete the outstanding commands",
                    waited: limit,
                });
            }
            backoff.wait();
        }
    }
}

/// Bytes of a report buffer of `len` bytes one command can fill: whole descriptors,
/// at most `max_transfer` (at least the header and one descriptor, which a smaller
/// buffer then fails to hold with a clear error).
fn report_bytes(len: usize, max_transfer: u64) -> usize {
    let len = len.min(usize::try_from(max_transfer).unwrap_or(usize::MAX));
    (len / ZONE_DESCRIPTOR_BYTES * ZONE_DESCRIPTOR_BYTES).max(2 * ZONE_DESCRIPTOR_BYTES)
}

#[cfg(test)]
mod tests {
    use super::report_bytes;

    #[test]
    fn report_buffers_are_whole_descriptors_within_one_transfer() {
        assert_eq!(report_bytes(4096, 1 << 20), 4096);
        assert_eq!(report_bytes(4100, 1 << 20), 4096);
        assert_eq!(report_bytes(1 << 30, 128 * 1024), 128 * 1024);
        assert_eq!(report_bytes(10, 1 << 20), 128);
    }
}
