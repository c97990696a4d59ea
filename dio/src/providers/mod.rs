//! Mapping providers shipped with the layer.

mod extent_fs;
mod raw;

pub use extent_fs::{ExtentFs, ExtentInfo, FileHandle, MAX_FILE_BYTES};
pub use raw::RawNamespace;
