//! A userspace NVMe driver: controller bring-up, admin commands and lock-free I/O queue
//! pairs over VFIO or the emulated controller.
//!
//! ```no_run
//! use nvme::{open, Options, QueuePairOptions};
//!
//! let ctrl = open("emu:size=64M", Options::default())?;
//! let mut qp = ctrl.create_io_queue_pair(QueuePairOptions::default())?;
//! let mut buf = ctrl.allocator().alloc(4096, 4096).expect("DMA memory");
//! qp.write_sync(1, 0, 8, &buf, false)?;
//! qp.read_sync(1, 0, 8, &mut buf)?;
//! # Ok::<(), nvme::Error>(())
//! ```

pub use nvme_spec as spec;

mod admin;
mod controller;
pub mod device;
mod dma;
mod error;
mod namespace;
mod options;
pub mod queue;
pub mod transport;

pub use admin::{AsyncEvent, QueueStats};
pub use controller::Controller;
pub use device::{DeviceName, DeviceNameError, PciAddress};
pub use error::{CommandDesc, Error, IoKind, PrpRule};
pub use hugepages::{DmaBuffer, DmaSegment};
pub use namespace::Namespace;
pub use options::{CompletionMode, Options, QueuePairOptions};
pub use queue::{IoChunk, IoQueuePair};
pub use transport::{AnyTransport, Transport};

/// Opens a controller by name (`emu`, `emu:OPTIONS`, or a PCI address) and brings it up.
pub fn open(name: &str, options: Options) -> Result<Controller<AnyTransport>, Error> {
    let transport = match name.parse::<DeviceName>()? {
        DeviceName::Emu(spec) => AnyTransport::Emu(transport::emu::EmuTransport::from_name(&spec)?),
        DeviceName::Pci(addr) => {
            AnyTransport::Vfio(transport::vfio::VfioTransport::open(addr, &options.vfio)?)
        }
    };
    Controller::new(transport, options)
}
