//! How the driver reaches a controller: register access, DMA mapping, interrupts.
//!
//! [`Transport`] is the one seam between the driver and a device. The hot path
//! (doorbell writes) is generic over it, so there is no dynamic dispatch per I/O.

#[cfg(feature = "emu")]
pub mod emu;
pub mod tcp;
pub mod vfio;

use std::sync::Arc;

use hugepages::DmaMapper;
use vmm_sys_util::eventfd::EventFd;

/// Register access, DMA mapping and interrupt delivery for one NVMe controller.
///
/// Offsets are byte offsets into the controller's register space (PCI BAR0).
pub trait Transport: Send + Sync + 'static {
    /// Reads the 32-bit register at `offset`.
    fn read32(&self, offset: usize) -> u32;

    /// Writes the 32-bit register at `offset`.
    fn write32(&self, offset: usize, value: u32);

    /// Reads the 64-bit register at `offset` (low dword first).
    fn read64(&self, offset: usize) -> u64 {
        let lo = u64::from(self.read32(offset));
        let hi = u64::from(self.read32(offset + 4));
        lo | (hi << 32)
    }

    /// Writes the 64-bit register at `offset` (low dword first).
    fn write64(&self, offset: usize, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }

    /// The mapper through which this controller sees host memory.
    fn dma_mapper(&self) -> Arc<dyn DmaMapper>;

    /// How the controller's DMA allocator should get memory (hugepages by default).
    fn allocator_options(&self) -> hugepages::AllocatorOptions {
        hugepages::AllocatorOptions::default()
    }

    /// How many interrupt vectors the device offers (0 when it offers none).
    fn max_interrupts(&self) -> u16;

    /// Enables `count` interrupt vectors, each signalled on its own event notifier.
    fn enable_interrupts(&self, count: u16) -> Result<Vec<Arc<EventFd>>, crate::Error>;

    /// Disables all interrupt vectors.
    fn disable_interrupts(&self) -> Result<(), crate::Error>;

    /// Resets the device function if it offers a reset; returns whether it did.
    fn function_reset(&self) -> Result<bool, crate::Error>;

    /// A short name for messages, such as `emu` or `0000:00:04.0`.
    fn name(&self) -> String;

    /// Moves queue `qid`'s pending traffic: called before its completion queue is read.
    /// A memory-mapped controller posts completions by itself (nothing to do); a
    /// message-based transport receives them here, in the polling thread.
    #[inline]
    fn poll_queue(&self, qid: u16) {
        let _ = qid;
    }

    /// Whether every command's data must be described by SGLs (NVMe over Fabrics),
    /// never by PRPs.
    #[inline]
    fn sgl_only(&self) -> bool {
        false
    }

    /// Why the controller became unreachable, when the transport knows more than the
    /// registers say (a lost connection, a refused reconnect).
    fn failure(&self) -> Option<String> {
        None
    }
}

/// Either transport, chosen at run time by device name. Dispatch is a `match` per
/// register access, so code generic over [`Transport`] stays free of `dyn`.
// One instance per controller: its size does not matter, and boxing would add a
// pointer chase to every doorbell write.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyTransport {
    /// The emulated controller.
    #[cfg(feature = "emu")]
    Emu(emu::EmuTransport),
    /// A PCI function behind VFIO.
    Vfio(vfio::VfioTransport),
    /// A remote controller over NVMe/TCP.
    Tcp(tcp::TcpTransport),
}

impl Transport for AnyTransport {
    #[inline]
    fn read32(&self, offset: usize) -> u32 {
        match self {
            #[cfg(feature = "emu")]
            AnyTransport::Emu(t) => t.read32(offset),
            AnyTransport::Vfio(t) => t.read32(offset),
            AnyTransport::Tcp(t) => t.read32(offset),
        }
    }

    #[inline]
    fn write32(&self, offset: usize, value: u32) {
        match self {
            #[cfg(feature = "emu")]
            AnyTransport::Emu(t) => t.write32(offset, value),
            AnyTransport::Vfio(t) => t.write32(offset, value),
            AnyTransport::Tcp(t) => t.write32(offset, value),
        }
    }

    fn dma_mapper(&self) -> Arc<dyn DmaMapper> {
        match self {
            #[cfg(feature = "emu")]
            AnyTransport::Emu(t) => t.dma_mapper(),
            AnyTransport::Vfio(t) => t.dma_mapper(),
            AnyTransport::Tcp(t) => t.dma_mapper(),
        }
    }

    fn allocator_options(&self) -> hugepages::AllocatorOptions {
        match self {
            #[cfg(feature = "emu")]
            AnyTransport::Emu(t) => t.allocator_options(),
            AnyTransport::Vfio(t) => t.allocator_options(),
            AnyTransport::Tcp(t) => t.allocator_options(),
        }
    }

    fn max_interrupts(&self) -> u16 {
        match self {
            #[cfg(feature = "emu")]
            AnyTransport::Emu(t) => t.max_interrupts(),
            AnyTransport::Vfio(t) => t.max_interrupts(),
            AnyTransport::Tcp(t) => t.max_interrupts(),
        }
    }

    fn enable_interrupts(&self, count: u16) -> Result<Vec<Arc<EventFd>>, crate::Error> {
        match self {
            #[cfg(feature = "emu")]
            AnyTransport::Emu(t) => t.enable_interrupts(count),
            AnyTransport::Vfio(t) => t.enable_interrupts(count),
            AnyTransport::Tcp(t) => t.enable_interrupts(count),
        }
    }

    fn disable_interrupts(&self) -> Result<(), crate::Error> {
        match self {
            #[cfg(feature = "emu")]
            AnyTransport::Emu(t) => t.disable_interrupts(),
            AnyTransport::Vfio(t) => t.disable_interrupts(),
            AnyTransport::Tcp(t) => t.disable_interrupts(),
        }
    }

    fn function_reset(&self) -> Result<bool, crate::Error> {
        match self {
            #[cfg(feature = "emu")]
            AnyTransport::Emu(t) => t.function_reset(),
            AnyTransport::Vfio(t) => t.function_reset(),
            AnyTransport::Tcp(t) => t.function_reset(),
        }
    }

    #[inline]
    fn poll_queue(&self, qid: u16) {
        if let AnyTransport::Tcp(t) = self {
            t.poll_queue(qid)
        }
    }

    #[inline]
    fn sgl_only(&self) -> bool {
        matches!(self, AnyTransport::Tcp(_))
    }

    fn failure(&self) -> Option<String> {
        match self {
            AnyTransport::Tcp(t) => t.failure(),
            _ => None,
        }
    }

    fn name(&self) -> String {
        match self {
            #[cfg(feature = "emu")]
            AnyTransport::Emu(t) => t.name(),
            AnyTransport::Vfio(t) => t.name(),
            AnyTransport::Tcp(t) => t.name(),
        }
    }
}
