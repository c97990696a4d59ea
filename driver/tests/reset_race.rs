//! A queue pair catching up with a controller reset while the next reset starts: its
//! queues are re-created on the controller that comes out of the later reset, and
//! neither a submission nor a command fails because the resets overlapped.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use nvme::{Error, Options, QueuePairOptions};

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Resets the controller back to back from one thread while another submits reads
/// one at a time and reaps them: every submission after a reset re-creates the pair's
/// queues, often while the next reset is already under way.
fn resets_against_submissions(emu_opts: &str) {
    // Back-to-back resets may cut one read short many times: a budget that outlasts
    // them, so any failure left is one the overlap caused.
    let r = rig_with(
        emu_opts,
        Options {
            command_retries: 100,
            ..fast_options()
        },
    );
    let stop = AtomicBool::new(false);
    let resets = AtomicU64::new(0);
    let (failed_submits, failed_reads, completed) = std::thread::scope(|s| {
        // Stops the reset thread however the loop below ends, a failed assertion too.
        let _stop = StopOnDrop(&stop);
        s.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                r.ctrl.reset().expect("controller reset");
                resets.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut q = r
            .ctrl
            .create_io_queue_pair(QueuePairOptions {
                depth: 8,
                ..QueuePairOptions::default()
            })
            .unwrap();
        let buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
        let mut failed_submits: Vec<Error> = Vec::new();
        let mut failed_reads: Vec<Error> = Vec::new();
        let mut completed = 0u64;
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end || resets.load(Ordering::Relaxed) < 200 {
            assert!(
                Instant::now() < end + Duration::from_secs(30),
                "fewer than 200 resets in 33 s"
            );
            if let Err(e) = q.submit_read(1, 0, 8, &[buf.as_segment()], 1) {
                failed_submits.push(e);
                continue;
            }
            let mut done = false;
            let wait_end = Instant::now() + Duration::from_secs(20);
            while !done && Instant::now() < wait_end {
                q.process_completions(usize::MAX, |_, res| {
                    done = true;
                    completed += 1;
                    if let Err(e) = res {
                        failed_reads.push(e);
                    }
                });
            }
            assert!(done, "a read did not complete within 20 s");
        }
        (failed_submits, failed_reads, completed)
    });
    assert!(completed > 0);
    assert!(
        failed_submits.is_empty(),
        "{} of {} submissions failed (first: {})",
        failed_submits.len(),
        completed + failed_submits.len() as u64,
        failed_submits[0]
    );
    assert!(
        failed_reads.is_empty(),
        "{} of {completed} reads failed (first: {})",
        failed_reads.len(),
        failed_reads[0]
    );
}

#[test]
fn submissions_and_reads_survive_back_to_back_resets_inline() {
    resets_against_submissions("size=1M,lba=512");
}

#[test]
fn submissions_and_reads_survive_back_to_back_resets_threaded() {
    resets_against_submissions("size=1M,lba=512,mode=threaded");
}
