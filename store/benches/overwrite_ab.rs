//! 4 KiB O_DSYNC overwrites by the raw provider and by a store file as one
//! interleaved run: 15 rounds, each 100,000 overwrites through the raw
//! provider and then 100,000 through the store, on the same dio engine, queue
//! pair, buffer and RAM namespace. Slow drift and other load hit both sides
//! alike; prints the fastest and the median round of each side in nanoseconds
//! per write and their ratio.
//!
//! Run with `cargo bench -p store --bench overwrite_ab`.

// A plain main (no criterion): the two loops must alternate in one process.
#![allow(missing_docs)]

mod rig;

use std::time::Instant;

use dio::IovIter;
use rig::{Rig, OVERWRITE_BLOCKS};

const ROUNDS: usize = 15;
const WRITES: u64 = 100_000;

fn main() {
    let mut r = Rig::new();
    let f = r.written_file("overwritten", OVERWRITE_BLOCKS);
    let mut it = IovIter::new(vec![r.buf(4096, 0xa5)]);
    let (mut raw, mut store) = (Vec::new(), Vec::new());
    let commits = r.store.counters().journal_commits;
    let mut i = 0;
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        for _ in 0..WRITES {
            r.raw_overwrite(&mut it, i);
            i = (i + 1) % OVERWRITE_BLOCKS;
        }
        raw.push(t0.elapsed().as_nanos() as f64 / WRITES as f64);
        let t0 = Instant::now();
        for _ in 0..WRITES {
            r.store_overwrite(&f, &mut it, i);
            i = (i + 1) % OVERWRITE_BLOCKS;
        }
        store.push(t0.elapsed().as_nanos() as f64 / WRITES as f64);
    }
    let c = r.store.counters();
    assert_eq!(
        c.journal_commits - commits,
        0,
        "pure overwrites committed the journal"
    );
    raw.sort_by(f64::total_cmp);
    store.sort_by(f64::total_cmp);
    let (a, b) = (raw[0], store[0]);
    println!(
        "fastest round: raw {a:.1} ns, store {b:.1} ns per write, ratio {:.3}",
        b / a
    );
    let (a, b) = (raw[ROUNDS / 2], store[ROUNDS / 2]);
    println!(
        "median round:  raw {a:.1} ns, store {b:.1} ns per write, ratio {:.3}",
        b / a
    );
}
