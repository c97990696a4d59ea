//! A userspace NVMe driver.

pub use nvme_spec as spec;
pub mod transport;

/// Errors reported by the driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Placeholder until the driver's error set lands.
    #[error("{0}")]
    Other(String),
}
