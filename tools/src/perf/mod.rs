//! `nvme-perf`: the workload, its verification, statistics and the I/O loop.

pub mod args;
pub mod cpu_clock;
pub mod engine;
pub mod pattern;
pub mod pattern_check;
pub mod pi;
pub mod progress;
pub mod run;
pub mod soak;
pub mod stats;
pub mod ticks;
pub mod verify;
pub mod workload;
pub mod zoned;
