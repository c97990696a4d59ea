//! The long run of the hostile-device fuzz: drives the driver against seeded hostile
//! emulated controllers (one per iteration, seeds `--seed`, `--seed + 1`, ...) for
//! `--seconds`, then prints device events per second and the totals.
//!
//! `cargo run --release -p nvme --example hostile_fuzz -- --seconds 600 --seed 1`

use std::time::{Duration, Instant};

use nvme::CompletionMode;

#[path = "../tests/hostile_workload/mod.rs"]
mod hostile_workload;

fn arg(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parsed = (|| {
        Ok::<_, String>((
            arg(&args, "--seconds", 60)?,
            arg(&args, "--seed", 1)?,
            arg(&args, "--rate", 50)?,
            arg(&args, "--rounds", 20)?,
        ))
    })();
    let (seconds, seed0, rate, rounds) = match parsed {
        Ok(v) => v,
        Err(e) => {
            eprintln!("hostile_fuzz: {e}\nusage: hostile_fuzz [--seconds N] [--seed N] [--rate PERMILLE] [--rounds N]");
            std::process::exit(2);
        }
    };
    let rate = rate.min(1000) as u16;
    let end = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut runs = 0u64;
    let mut brought_up = 0u64;
    let mut total = hostile_workload::Report::default();
    let mut seed = seed0;
    while Instant::now() < end {
        let qpairs = 2 + (seed % 3) as u16;
        let mode = if seed % 2 == 0 {
            CompletionMode::Polled
        } else {
            CompletionMode::Interrupt
        };
        match hostile_workload::run(seed, rate, qpairs, mode, rounds as usize) {
            Ok(r) => {
                runs += 1;
                brought_up += u64::from(r.brought_up);
                total.calls += r.calls;
                total.errors += r.errors;
                total.ok += r.ok;
                total.accesses_checked += r.accesses_checked;
                total.dma_accesses += r.dma_accesses;
                total.dma_refused += r.dma_refused;
                let h = &mut total.hostile;
                let s = r.hostile;
                h.completions += s.completions;
                h.completions_tampered += s.completions_tampered;
                h.register_reads += s.register_reads;
                h.register_reads_tampered += s.register_reads_tampered;
                h.identify_pages += s.identify_pages;
                h.identify_pages_tampered += s.identify_pages_tampered;
                h.interrupts += s.interrupts;
                h.interrupts_spurious += s.interrupts_spurious;
                h.dma_walks += s.dma_walks;
                h.dma_walks_wild += s.dma_walks_wild;
                h.wild_reads_allowed += s.wild_reads_allowed;
                h.wild_reads_refused += s.wild_reads_refused;
            }
            Err(broken) => {
                eprintln!("hostile_fuzz: seed {seed} rate {rate}: {broken}");
                std::process::exit(1);
            }
        }
        seed += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let h = &total.hostile;
    println!("hostile_fuzz: {runs} runs (seeds {seed0}..{seed}), rate {rate}/1000, {secs:.1} s, {brought_up} brought up");
    println!(
        "device events: {} ({:.0}/s), lies: {}",
        h.events(),
        h.events() as f64 / secs,
        h.tampered()
    );
    println!(
        "  completions {} (falsified {}), register reads {} (falsified {}), identify pages {} (falsified {})",
        h.completions, h.completions_tampered, h.register_reads, h.register_reads_tampered, h.identify_pages, h.identify_pages_tampered
    );
    println!(
        "  interrupt decisions {} (spurious {}), DMA walk decisions {} (wild {}: {} reads allowed, {} refused by the IOMMU)",
        h.interrupts, h.interrupts_spurious, h.dma_walks, h.dma_walks_wild, h.wild_reads_allowed, h.wild_reads_refused
    );
    println!(
        "driver: {} calls, {} commands ok, {} typed errors, {} data transfers checked inside their buffers; IOMMU {} translations, {} refused",
        total.calls, total.ok, total.errors, total.accesses_checked, total.dma_accesses, total.dma_refused
    );
}
