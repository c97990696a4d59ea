//! End-to-end test harness.
//!
//! [`vm`] boots QEMU guests whose NVMe controllers (QEMU's, behind an
//! emulated Intel IOMMU) can be bound to `vfio-pci` or to the kernel's `nvme`
//! driver, and runs guest-side check scripts from `tests/vm/guest/checks/`.
//! [`probe`] is a minimal `vfio-ioctls` user run inside such a guest.

mod error;
mod mem;
pub mod probe;
pub mod vm;

pub use error::Error;
