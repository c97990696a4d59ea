//! A userspace NVMe driver: controller bring-up, admin commands and lock-free I/O queue
//! pairs over VFIO or the emulated controller.
//!
//! # Shape
//!
//! * [`open`] parses a device name ([`DeviceName`]: `emu`, `emu:OPTIONS`, or a PCI
//!   address) and brings the controller up over an [`AnyTransport`]; code that knows its
//!   transport uses [`Controller::new`] with a [`transport::emu::EmuTransport`] or a
//!   [`transport::vfio::VfioTransport`] directly.
//! * [`Controller`] owns the admin queue (behind a mutex), identify data, namespaces,
//!   features, log pages, asynchronous events, reset and shutdown (on drop).
//! * [`IoQueuePair`] is one thread's submission/completion pair: `submit_*` queues a
//!   command with a caller context `C` (default `u64`), [`IoQueuePair::ring`] rings the
//!   doorbell once per batch, [`IoQueuePair::process_completions`] calls
//!   `f(context, Result<(), Error>)` per completion. No lock, no allocation, no system
//!   call per I/O; the transport is a type parameter, so no `dyn` either.
//! * Zoned namespaces ([`zns`]): each [`Namespace`] names its command set and, when
//!   zoned, its [`ZonedInfo`]; the pair sends Zone Append
//!   ([`IoQueuePair::process_completions_with_result`] hands back the LBA written),
//!   zone reports and zone actions, and a zone status is an [`Error::Zone`] naming the
//!   zone.
//! * Every failure is an [`Error`]; command failures carry the NVMe
//!   [`spec::Status`] and print as a sentence.
//!
//! The emulated controller (`emu` names, [`transport::emu`]) is the default-on `emu`
//! feature; a build that drives only real devices can leave it out.
//!
//! Data buffers are DMA memory from [`Controller::allocator`], passed as
//! [`DmaSegment`]s; they must stay allocated until their command completes.
//!
//! ```no_run
//! use nvme::{open, Options, QueuePairOptions};
//!
//! let ctrl = open("emu:size=64M", Options::default())?;
//! let mut qp = ctrl.create_io_queue_pair(QueuePairOptions::default())?;
//! let buf = ctrl.allocator().alloc(4096, 4096).expect("DMA memory");
//! for i in 0..8u64 {
//!     qp.submit_read(1, i * 8, 8, &[buf.as_segment()], i)?;
//! }
//! qp.ring();
//! let mut done = 0;
//! while done < 8 {
//!     done += qp.process_completions(usize::MAX, |ctx, result| {
//!         if let Err(e) = result {
//!             eprintln!("read {ctx}: {e}");
//!         }
//!     });
//! }
//! # Ok::<(), nvme::Error>(())
//! ```

pub use nvme_spec as spec;

mod admin;
mod backoff;
mod controller;
pub mod device;
mod dma;
mod error;
mod health;
mod namespace;
mod options;
pub mod pi;
pub mod queue;
pub mod transport;
pub mod zns;

pub use admin::{AsyncEvent, QueueStats};
pub use controller::{Controller, ControllerState};
pub use device::{DeviceName, DeviceNameError, PciAddress, PciAddressError};
pub use error::{CommandDesc, Error, IoKind, PrpRule, SglRule, VfioCause};
pub use hugepages::{DmaBuffer, DmaSegment};
pub use namespace::Namespace;
pub use options::{CompletionMode, Options, QueuePairOptions, SglMode};
pub use queue::{commands_per_request, CompareAndWrite, IoFlags, IoOptions, IoQueuePair};
pub use transport::{AnyTransport, Transport};
pub use zns::ZonedInfo;

/// Opens a controller by name (`emu`, `emu:OPTIONS`, a PCI address, or
/// `tcp://HOST[:PORT]/SUBSYSTEM-NQN[,options]`) and brings it up.
///
/// Without the `emu` feature an `emu` name is [`Error::NoEmulatedController`].
pub fn open(name: &str, options: Options) -> Result<Controller<AnyTransport>, Error> {
    let transport = match name.parse::<DeviceName>()? {
        #[cfg(feature = "emu")]
        DeviceName::Emu(spec) => AnyTransport::Emu(transport::emu::EmuTransport::from_name(&spec)?),
        #[cfg(not(feature = "emu"))]
        DeviceName::Emu(spec) => return Err(Error::NoEmulatedController { name: spec }),
        DeviceName::Pci(addr) => {
            AnyTransport::Vfio(transport::vfio::VfioTransport::open(addr, &options.vfio)?)
        }
        DeviceName::Tcp(name) => {
            let name = transport::tcp::TcpName::parse(&name)?;
            if name.subnqn.is_none() {
                return Err(Error::BadTcpName {
                    name: name.to_string(),
                    reason: "it names the discovery controller, which has no namespaces to open; give the subsystem NQN after the address, or list the subsystems with nvme::transport::tcp::discover".into(),
                });
            }
            AnyTransport::Tcp(transport::tcp::TcpTransport::connect(
                &name,
                options.admin_timeout,
            )?)
        }
    };
    Controller::new(transport, options)
}

#[cfg(all(test, not(feature = "emu")))]
mod tests {
    #[test]
    fn emu_names_are_refused_without_the_emu_feature() {
        let err = crate::open("emu:size=64M", crate::Options::default()).unwrap_err();
        assert!(
            matches!(&err, crate::Error::NoEmulatedController { name } if name == "emu:size=64M"),
            "{err}"
        );
    }
}
