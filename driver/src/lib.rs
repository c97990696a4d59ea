//! A userspace NVMe driver.

pub use nvme_spec as spec;

pub mod device;
mod error;
pub mod transport;

pub use device::{DeviceName, DeviceNameError, PciAddress};
pub use error::{CommandDesc, Error, IoKind, PrpRule};
