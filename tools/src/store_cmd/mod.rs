//! `nvme-store`: the persistent extent store ([`store`]) on a namespace, one
//! operation per run: format it, list and inspect files, copy host files in and
//! out, remove, rename, clone, check.

pub mod args;
pub mod error;
pub mod report;
pub mod run;
