//! Protection information tuples in `nvme-perf`'s buffers. With `--pi host` the host
//! generates each write's tuples through `nvme::pi`, and reads and writes ask the
//! controller to check them (PRCHK). With `--pi pract` on a format whose metadata is
//! larger than the tuple, the controller generates them, and the tuple travels with the
//! rest of the metadata. Either way, with `--verify`, the tuples of every read of a block
//! this run wrote are checked on the host too, so a device that kept the data but
//! dropped or changed a tag is caught, not only a device that reports it.

use nvme::pi::{self, Protection};
use nvme::spec::pi::{Pi16, Pi8, PiFormat, APP_TAG_ESCAPE};
use nvme::{DmaBuffer, IoFlags, IoOptions};

use super::pattern;

/// The application tag every command carries: `--pi host` writes it into its tuples,
/// PRACT has the controller write it into its own.
pub const APP_TAG: u16 = 0x4e56;

/// Who fills the tuples of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TupleSource {
    /// The host, through `nvme::pi::generate` (`--pi host`).
    Host,
    /// The controller (`--pi pract`).
    Controller,
}

/// The tuples of one queue pair's buffers: the namespace's layout, who fills them, and
/// the LBA each slot's buffers were last submitted for.
#[derive(Debug, Clone)]
pub struct PiTuples {
    prot: Protection,
    source: TupleSource,
    /// What the host generates and checks: every field, the tool's application tag.
    check: IoOptions,
    lbas: Vec<u64>,
}

impl PiTuples {
    /// For `depth` slots of a namespace protected as `prot`, its tuples filled by
    /// `source`.
    pub fn new(prot: Protection, source: TupleSource, depth: usize) -> Self {
        Self {
            prot,
            source,
            check: IoOptions {
                flags: IoFlags::PRCHK,
                app_tag: APP_TAG,
                app_tag_mask: 0xffff,
                ..IoOptions::default()
            },
            lbas: vec![0; depth],
        }
    }

    /// `command` with the tool's application tag (and its mask) filled in.
    pub fn command_options(&self, command: IoOptions) -> IoOptions {
        IoOptions {
            app_tag: self.check.app_tag,
            app_tag_mask: self.check.app_tag_mask,
            ..command
        }
    }

    /// Before slot `slot` is submitted at `lba`: remembers the LBA and, for a write
    /// whose tuples the host fills, fills them in its buffers (`metadata`: the slot's
    /// separate metadata buffer on a namespace that has one).
    pub fn prepare(
        &mut self,
        slot: usize,
        lba: u64,
        write: bool,
        data: &DmaBuffer,
        metadata: Option<&DmaBuffer>,
    ) -> Result<(), nvme::Error> {
        if let Some(l) = self.lbas.get_mut(slot) {
            *l = lba;
        }
        if write && self.source == TupleSource::Host {
            pi::generate(
                &self.prot,
                lba,
                &self.check,
                data.mem(),
                metadata.map(DmaBuffer::mem),
            )?;
        }
        Ok(())
    }

    /// After a read of blocks this run wrote through slot `slot` was copied into `dst`
    /// (blocks of data then metadata): checks each block's tuple in the slot's
    /// buffers. A tuple that holds has `--verify`'s pattern put back in its place (the
    /// LBA and generation are in each block's header), so the pattern check sees the
    /// data and the other metadata. A bad tuple is left in place, where the pattern
    /// check reports it as a metadata mismatch of its block, and the first one of the
    /// read is logged with its LBA and field.
    pub fn check_read(
        &self,
        slot: usize,
        data: &DmaBuffer,
        metadata: Option<&DmaBuffer>,
        dst: &mut [u8],
    ) {
        let first_lba = self.lbas.get(slot).copied().unwrap_or(0);
        let p = &self.prot;
        let block_bytes = p.data_size as usize + usize::from(p.metadata_size);
        let at = p.data_size as usize + p.tuple_offset();
        let len = p.tuple_size();
        let mut first_bad = None;
        for (b, block) in dst.chunks_exact_mut(block_bytes).enumerate() {
            let lba = first_lba + b as u64;
            match self.check_block(b, lba, data, metadata, &block[at..at + len]) {
                Ok(()) => {
                    if let Some((lba, generation)) = pattern::header(block) {
                        pattern::fill_range(&mut block[at..at + len], lba, generation, at);
                    }
                }
                Err(e) => {
                    first_bad.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_bad {
            let mode = match self.source {
                TupleSource::Host => "host",
                TupleSource::Controller => "pract",
            };
            tracing::warn!("--pi {mode}: {e}");
        }
    }

    /// Checks the tuple of block `b` (LBA `lba`) of the slot's buffers; `tuple` is the
    /// copy of it that was read out. The escape tags, which turn the controller's
    /// checks off, are a mismatch here: this run wrote every such block with its own
    /// application tag.
    fn check_block(
        &self,
        b: usize,
        lba: u64,
        data: &DmaBuffer,
        metadata: Option<&DmaBuffer>,
        tuple: &[u8],
    ) -> Result<(), String> {
        let p = &self.prot;
        let app_tag = match p.guard {
            PiFormat::Guard16 => Pi8::read(tuple).map(|t| t.app_tag.get()),
            PiFormat::Guard32 | PiFormat::Guard64 => Pi16::read(tuple).map(|t| t.app_tag.get()),
        };
        if app_tag == Some(APP_TAG_ESCAPE) {
            return Err(format!(
                "protection information of LBA {lba:#x}: the application tag is the escape value {APP_TAG_ESCAPE:#06x}, which turns the checks off, where this run wrote {APP_TAG:#06x}"
            ));
        }
        let (ds, ms) = (p.data_buffer_block_size(), p.metadata_buffer_block_size());
        let data = data.mem().subslice(b * ds, ds);
        let metadata = metadata.map(|m| m.mem().subslice(b * ms, ms)).transpose();
        let (Ok(data), Ok(metadata)) = (data, metadata) else {
            return Err(format!(
                "LBA {lba:#x}: the buffers do not hold the block's protection information"
            ));
        };
        // One block at a time: its expected reference tag is its own LBA's (types 1
        // and 2) or the command's initial tag (type 3), as in the whole command.
        pi::verify(p, lba, &self.check, data, metadata).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::pattern::Found;
    use nvme::{Controller, IoQueuePair};
    use std::time::Duration;

    /// Writes `blocks` blocks of generation `generation`'s pattern at `lba` through
    /// `opts` and reads them back; returns the read buffers.
    #[allow(clippy::too_many_arguments)]
    fn write_then_read(
        ctrl: &Controller<nvme::AnyTransport>,
        qp: &mut IoQueuePair<nvme::AnyTransport, u64>,
        t: &mut PiTuples,
        opts: IoOptions,
        lba: u64,
        blocks: usize,
        generation: u32,
    ) -> (DmaBuffer, Option<DmaBuffer>) {
        let p = t.prot;
        let (ds, ms) = (p.data_buffer_block_size(), p.metadata_buffer_block_size());
        let alloc = |n: usize| ctrl.allocator().alloc(n, 4096).unwrap();
        let bs = p.data_size as usize + usize::from(p.metadata_size);
        let mut src = vec![0u8; blocks * bs];
        pattern::fill(&mut src, lba, bs, generation);
        let (mut data, mut md) = (alloc(blocks * ds), (ms > 0).then(|| alloc(blocks * ms)));
        for (i, block) in src.chunks_exact(bs).enumerate() {
            match md.as_mut() {
                Some(m) => {
                    data.write(i * ds, &block[..ds]).unwrap();
                    m.write(i * ms, &block[ds..]).unwrap();
                }
                None => data.write(i * ds, block).unwrap(),
            }
        }
        let opts = |md: &Option<DmaBuffer>| IoOptions {
            metadata: md.as_ref().map(DmaBuffer::as_segment),
            ..t.command_options(opts)
        };
        let o = opts(&md);
        let seg = [data.as_segment()];
        let run = |qp: &mut IoQueuePair<nvme::AnyTransport, u64>, read: bool| {
            let n = blocks as u32;
            let r = if read {
                qp.submit_read_ext(1, lba, n, &seg, &o, 0)
            } else {
                qp.submit_write_ext(1, lba, n, &seg, &o, 0)
            };
            r.unwrap();
            let mut done = 0;
            while done == 0 {
                done = qp
                    .wait_completions(1, Duration::from_secs(5), |_, r| {
                        assert!(r.is_ok(), "{r:?}")
                    })
                    .unwrap();
            }
        };
        t.prepare(0, lba, true, &data, md.as_ref()).unwrap();
        run(qp, false);
        data.mem().zero();
        if let Some(m) = &md {
            m.mem().zero();
        }
        t.prepare(0, lba, false, &data, md.as_ref()).unwrap();
        run(qp, true);
        (data, md)
    }

    /// The read's blocks joined into data then metadata, as `NvmeQueue::fetch` does.
    fn joined(p: &Protection, data: &DmaBuffer, md: Option<&DmaBuffer>, blocks: usize) -> Vec<u8> {
        let (ds, ms) = (p.data_buffer_block_size(), p.metadata_buffer_block_size());
        let bs = p.data_size as usize + usize::from(p.metadata_size);
        let mut out = vec![0u8; blocks * bs];
        for (i, block) in out.chunks_exact_mut(bs).enumerate() {
            match md {
                Some(m) => {
                    data.read(i * ds, &mut block[..ds]).unwrap();
                    m.read(i * ms, &mut block[ds..]).unwrap();
                }
                None => data.read(i * ds, block).unwrap(),
            }
        }
        out
    }

    fn open(device: &str) -> (Controller<nvme::AnyTransport>, Protection) {
        let ctrl = nvme::open(device, nvme::Options::default()).unwrap();
        let prot = ctrl.namespace(1).unwrap().protection().unwrap().unwrap();
        (ctrl, prot)
    }

    #[test]
    fn host_tuples_in_a_separate_metadata_buffer_pass_the_controller_and_the_host() {
        for device in [
            "emu:size=1M,ms=8,mset=sep,pi=1",
            "emu:size=1M,ms=64,mset=sep,pi=2,pil=first",
            "emu:size=1M,ms=16,mset=sep,pi=3,guard=crc64",
        ] {
            let (ctrl, prot) = open(device);
            let mut qp = ctrl
                .create_io_queue_pair(nvme::QueuePairOptions::default())
                .unwrap();
            let mut t = PiTuples::new(prot, TupleSource::Host, 1);
            let cmd = IoOptions {
                flags: prot.checks(),
                ..IoOptions::default()
            };
            let (data, md) = write_then_read(&ctrl, &mut qp, &mut t, cmd, 20, 3, 6);
            let mut back = joined(&prot, &data, md.as_ref(), 3);
            let bs = back.len() / 3;
            // The tuples differ from the pattern until the check puts it back.
            assert!(pattern::check(&back, 20, bs, 512, 6).is_err(), "{device}");
            t.check_read(0, &data, md.as_ref(), &mut back);
            assert_eq!(pattern::check(&back, 20, bs, 512, 6), Ok(()), "{device}");
        }
    }

    #[test]
    fn controller_tuples_beside_other_metadata_are_checked_and_the_rest_verified() {
        for device in [
            "emu:size=1M,ms=16,mset=ext,pi=1",
            "emu:size=1M,ms=64,mset=sep,pi=2,pil=first,guard=crc64",
            "emu:size=1M,ms=16,mset=sep,pi=3",
        ] {
            let (ctrl, prot) = open(device);
            let mut qp = ctrl
                .create_io_queue_pair(nvme::QueuePairOptions::default())
                .unwrap();
            let mut t = PiTuples::new(prot, TupleSource::Controller, 1);
            let cmd = IoOptions {
                flags: IoFlags::PRACT,
                ..IoOptions::default()
            };
            let (data, md) = write_then_read(&ctrl, &mut qp, &mut t, cmd, 8, 2, 3);
            let mut back = joined(&prot, &data, md.as_ref(), 2);
            let bs = back.len() / 2;
            t.check_read(0, &data, md.as_ref(), &mut back);
            assert_eq!(pattern::check(&back, 8, bs, 512, 3), Ok(()), "{device}");
            // A changed byte of the metadata beside the tuple is the pattern check's.
            let beside = if prot.tuple_offset() == 0 {
                prot.tuple_size()
            } else {
                0
            };
            let mut changed = joined(&prot, &data, md.as_ref(), 2);
            changed[bs + 512 + beside] ^= 1;
            t.check_read(0, &data, md.as_ref(), &mut changed);
            let m = pattern::check(&changed, 8, bs, 512, 3).unwrap_err();
            assert_eq!(m.lba, 9, "{device}");
            assert!(matches!(m.found, Found::MetadataCorruptAt { .. }), "{m}");
        }
    }

    #[test]
    fn a_tag_the_device_changed_or_turned_into_the_escape_value_fails_its_block_only() {
        let (ctrl, prot) = open("emu:size=1M,ms=8,mset=sep,pi=1");
        let mut qp = ctrl
            .create_io_queue_pair(nvme::QueuePairOptions::default())
            .unwrap();
        let mut t = PiTuples::new(prot, TupleSource::Host, 1);
        let cmd = IoOptions {
            flags: prot.checks(),
            ..IoOptions::default()
        };
        let (data, md) = write_then_read(&ctrl, &mut qp, &mut t, cmd, 4, 4, 9);
        let md = md.unwrap();
        // Block 1's reference tag (bytes 4..8 of its tuple), block 3's application tag.
        md.mem().write(8 + 7, &[0x55]).unwrap();
        md.mem().write(3 * 8 + 2, &[0xff, 0xff]).unwrap();
        let mut back = joined(&prot, &data, Some(&md), 4);
        t.check_read(0, &data, Some(&md), &mut back);
        let bad: Vec<u64> = back
            .chunks_exact(520)
            .enumerate()
            .filter_map(|(b, block)| {
                pattern::check(block, 4 + b as u64, 520, 512, 9)
                    .err()
                    .map(|m| m.lba)
            })
            .collect();
        assert_eq!(bad, vec![5, 7]);
        // The escape value is refused by name.
        let e = t
            .check_block(3, 7, &data, Some(&md), &back[3 * 520 + 512..4 * 520])
            .unwrap_err();
        assert!(e.contains("LBA 0x7") && e.contains("escape"), "{e}");
    }
}
