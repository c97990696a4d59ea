//! 4 KiB O_DSYNC overwrites by the raw provider and by a store file as one
//! interleaved run: 15 rounds, each 100,000 overwrites through the raw
//! provider and then 100,000 through the store, on the same dio engine, queue
//! pair, buffer and RAM namespace. Slow drift and other load hit both sides
//! alike; prints each round, then the fastest and the median round of each
//! side in nanoseconds per write and their ratio, by the wall clock and by
//! the thread's CPU clock (which time spent descheduled does not move: the
//! steadier figure on a loaded machine).
//!
//! Run with `cargo bench -p store --bench overwrite_ab`.

// A plain main (no criterion): the two loops must alternate in one process.
#![allow(missing_docs)]

mod rig;

use std::time::Instant;

use rustix::time::{clock_gettime, ClockId};

use dio::IovIter;
use rig::{Rig, OVERWRITE_BLOCKS};

const ROUNDS: usize = 15;
const WRITES: u64 = 100_000;

/// This thread's CPU time in nanoseconds.
fn cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Nanoseconds per write of one side, by the wall and by the CPU clock.
#[derive(Default)]
struct Side {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Side {
    fn run(&mut self, mut write: impl FnMut()) {
        let (t0, c0) = (Instant::now(), cpu_ns());
        for _ in 0..WRITES {
            write();
        }
        let n = WRITES as f64;
        self.cpu.push((cpu_ns() - c0) as f64 / n);
        self.wall.push(t0.elapsed().as_nanos() as f64 / n);
    }
}

fn summary(what: &str, raw: &mut [f64], store: &mut [f64]) {
    raw.sort_by(f64::total_cmp);
    store.sort_by(f64::total_cmp);
    for (name, k) in [("fastest", 0), ("median", ROUNDS / 2)] {
        let (a, b) = (raw[k], store[k]);
        println!(
            "{what} {name:7} round: raw {a:.1} ns, store {b:.1} ns per write, ratio {:.3}",
            b / a
        );
    }
}

fn main() {
    let mut r = Rig::new();
    let f = r.written_file("overwritten", OVERWRITE_BLOCKS);
    let mut it = IovIter::new(vec![r.buf(4096, 0xa5)]);
    let (mut raw, mut store) = (Side::default(), Side::default());
    let commits = r.store.counters().journal_commits;
    let mut i = 0;
    for round in 1..=ROUNDS {
        raw.run(|| {
            r.raw_overwrite(&mut it, i);
            i = (i + 1) % OVERWRITE_BLOCKS;
        });
        store.run(|| {
            r.store_overwrite(&f, &mut it, i);
            i = (i + 1) % OVERWRITE_BLOCKS;
        });
        let (a, b) = (raw.wall[round - 1], store.wall[round - 1]);
        let (ca, cb) = (raw.cpu[round - 1], store.cpu[round - 1]);
        println!(
            "round {round:2}: wall raw {a:.1} ns, store {b:.1} ns ({:.3}); \
             cpu raw {ca:.1} ns, store {cb:.1} ns ({:.3})",
            b / a,
            cb / ca
        );
    }
    let c = r.store.counters();
    assert_eq!(
        c.journal_commits - commits,
        0,
        "pure overwrites committed the journal"
    );
    summary("wall", &mut raw.wall, &mut store.wall);
    summary("cpu ", &mut raw.cpu, &mut store.cpu);
}
