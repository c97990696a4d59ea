//! The emulated controller as a transport: a thin adapter over `nvme_emu::EmuController`.

use std::sync::Arc;

use hugepages::DmaMapper;
use nvme_emu::{EmuConfig, EmuController};
use vmm_sys_util::eventfd::EventFd;

use crate::transport::Transport;
use crate::Error;

/// An emulated NVMe controller reached through its register interface.
#[derive(Debug, Clone)]
pub struct EmuTransport {
    emu: EmuController,
}

impl EmuTransport {
    /// Wraps an existing emulated controller (keep a clone to inject faults).
    pub fn new(emu: EmuController) -> Self {
        EmuTransport { emu }
    }

    /// Builds a controller from a device string such as `emu:size=64M,lba=4096`.
    pub fn from_name(name: &str) -> Result<Self, Error> {
        let config: EmuConfig = name.parse().map_err(Error::Emu)?;
        let emu = EmuController::new(config).map_err(Error::Emu)?;
        Ok(Self::new(emu))
    }

    /// The emulated controller (fault injection, command log, power cut).
    pub fn emu(&self) -> &EmuController {
        &self.emu
    }
}

impl Transport for EmuTransport {
    #[inline]
    fn read32(&self, offset: usize) -> u32 {
        self.emu.read32(offset)
    }

    #[inline]
    fn write32(&self, offset: usize, value: u32) {
        self.emu.write32(offset, value)
    }

    fn dma_mapper(&self) -> Arc<dyn DmaMapper> {
        self.emu.dma_mapper()
    }

    /// Small pages: the emulated device needs neither contiguity nor hugepages.
    fn allocator_options(&self) -> hugepages::AllocatorOptions {
        hugepages::AllocatorOptions {
            region: hugepages::RegionOptions {
                page_size: hugepages::PageSize::SIZE_4K,
                ..hugepages::RegionOptions::default()
            },
            ..hugepages::AllocatorOptions::default()
        }
    }

    fn max_interrupts(&self) -> u16 {
        self.emu.config().vectors
    }

    fn enable_interrupts(&self, count: u16) -> Result<Vec<Arc<EventFd>>, Error> {
        self.emu.enable_interrupts(count).map_err(Error::Emu)
    }

    fn disable_interrupts(&self) -> Result<(), Error> {
        self.emu.disable_interrupts();
        Ok(())
    }

    fn function_reset(&self) -> Result<bool, Error> {
        self.emu.function_reset();
        Ok(true)
    }

    fn name(&self) -> String {
        "emu".to_string()
    }
}
