//! `--pi host`: writes carry protection information the host generates through
//! `nvme::pi`, and both writes and reads ask the controller to check it (PRCHK). With
//! `--verify`, every read's tuples are checked on the host too, so a device that
//! dropped or changed a tag is caught, not only a device that reports it.

use nvme::pi::{self, Protection};
use nvme::spec::identify::MetadataPlacement;
use nvme::{DmaBuffer, IoFlags, IoOptions};

use super::pattern;
use crate::cli::ToolError;

/// The application tag `--pi host` writes and expects.
pub const APP_TAG: u16 = 0x4e56;

/// Host protection information of one queue pair: the layout and the LBA each slot's
/// buffer was last submitted for.
#[derive(Debug, Clone)]
pub struct HostPi {
    prot: Protection,
    opts: IoOptions,
    lbas: Vec<u64>,
}

impl HostPi {
    /// For `depth` slots of namespace `nsid` protected as `prot`; the metadata must be
    /// interleaved with the data (extended LBAs).
    pub fn new(nsid: u32, prot: Protection, depth: usize) -> Result<Self, ToolError> {
        if prot.placement != MetadataPlacement::Extended {
            return Err(ToolError::Invalid(format!(
                "--pi host: namespace {nsid} keeps its protection information in a separate metadata buffer, which nvme-perf does not allocate; use --pi pract or an extended-LBA format"
            )));
        }
        Ok(Self {
            prot,
            opts: IoOptions {
                flags: IoFlags::PRCHK,
                app_tag: APP_TAG,
                app_tag_mask: 0xffff,
                ..IoOptions::default()
            },
            lbas: vec![0; depth],
        })
    }

    /// The options every read and write carries: PRCHK and the application tag.
    pub fn options(&self) -> &IoOptions {
        &self.opts
    }

    /// Before slot `slot` is submitted at `lba`: remembers the LBA and, for a write,
    /// fills the tuples of its buffer.
    pub fn prepare(
        &mut self,
        slot: usize,
        lba: u64,
        write: bool,
        buf: &DmaBuffer,
    ) -> Result<(), nvme::Error> {
        if let Some(l) = self.lbas.get_mut(slot) {
            *l = lba;
        }
        if write {
            pi::generate(&self.prot, lba, &self.opts, buf.mem(), None)?;
        }
        Ok(())
    }

    /// After a read through slot `slot` was copied into `dst`: checks the tuples the
    /// device returned; if they hold, puts `--verify`'s pattern back where the tuples
    /// are (the generation is in each block's header), so the pattern check sees the
    /// data and the other metadata. A bad tuple is logged with its LBA and field and
    /// left in place, where the pattern check reports it as a metadata mismatch.
    pub fn check_read(&self, slot: usize, buf: &DmaBuffer, dst: &mut [u8]) {
        let lba = self.lbas.get(slot).copied().unwrap_or(0);
        if let Err(e) = pi::verify(&self.prot, lba, &self.opts, buf.mem(), None) {
            tracing::warn!("--pi host: {e}");
            return;
        }
        let stride = self.prot.data_buffer_block_size();
        let at = self.prot.data_size as usize + self.prot.tuple_offset();
        let len = self.prot.tuple_size();
        let mut expected = vec![0u8; stride];
        for (b, block) in dst.chunks_exact_mut(stride).enumerate() {
            let mut header = [0u8; 8];
            header.copy_from_slice(&block[8..16]);
            let generation = u64::from_le_bytes(header) as u32;
            pattern::fill(&mut expected, lba + b as u64, stride, generation);
            block[at..at + len].copy_from_slice(&expected[at..at + len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvme::spec::identify::{PiLocation, ProtectionType};
    use nvme::spec::pi::PiFormat;

    #[test]
    fn separate_metadata_is_refused_with_a_way_out() {
        let prot = Protection {
            pi_type: ProtectionType::Type1,
            guard: PiFormat::Guard16,
            location: PiLocation::Last,
            storage_tag_bits: 0,
            data_size: 512,
            metadata_size: 8,
            placement: MetadataPlacement::Separate,
        };
        let e = HostPi::new(3, prot, 4).unwrap_err().to_string();
        assert!(e.contains("namespace 3") && e.contains("--pi pract"), "{e}");
    }
}
