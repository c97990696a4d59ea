//! `nvme-dio`: a script of direct-I/O steps over the `dio` layer.

pub mod args;
pub mod run;
pub mod script;
pub mod zoned;
