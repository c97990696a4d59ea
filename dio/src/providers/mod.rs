//! Mapping providers shipped with the layer.

mod extent_fs;
mod raw;

pub use extent_fs::{ExtentFs, ExtentInfo, FileHandle};
pub use raw::RawNamespace;
