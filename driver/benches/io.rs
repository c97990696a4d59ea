//! I/O benchmarks (filled in below).

fn main() {}
