//! The NVMe specification as plain data: registers, queue entries, identify
//! structures, log pages and status codes. No I/O and no `unsafe`.
#![forbid(unsafe_code)]
