//! I/O queue pairs: rings, command trackers, PRP lists, SGLs and the submit/complete path.

mod flags;
pub(crate) mod pair;
pub mod prp;
pub(crate) mod ring;
pub mod sgl;
pub(crate) mod tracker;

pub use flags::{IoFlags, IoOptions};
pub use pair::{commands_per_request, CompareAndWrite, IoQueuePair};
