//! Volatile write cache model: what survives a power cut, with and without FUA and
//! Flush, with the cache disabled, and on file-backed namespaces.

mod common;

use common::*;

#[test]
fn power_cut_loses_completed_writes_that_were_not_flushed() {
    let mut h = Harness::with_io("emu", 16);
    h.write_blocks(1, 0, &pattern(4 * 512, 1), false);
    assert_eq!(
        h.read_blocks(1, 0, 4).1,
        pattern(4 * 512, 1),
        "reads see the cache"
    );
    h.ctrl.power_cut();
    assert!(h.read_blocks(1, 0, 4).1.iter().all(|&b| b == 0));
    let s = h.ctrl.stats();
    assert_eq!(s.power_cuts, 1);
    assert_eq!(s.lost_blocks, 4);
}

#[test]
fn fua_write_survives_a_power_cut() {
    let mut h = Harness::with_io("emu", 16);
    h.write_blocks(1, 0, &pattern(4 * 512, 2), true);
    assert_eq!(h.ctrl.cached_blocks(1), Some(0));
    h.ctrl.power_cut();
    assert_eq!(h.read_blocks(1, 0, 4).1, pattern(4 * 512, 2));
}

#[test]
fn fua_write_supersedes_an_older_cached_copy() {
    let mut h = Harness::with_io("emu", 16);
    h.write_blocks(1, 0, &pattern(512, 3), false);
    h.write_blocks(1, 0, &pattern(512, 4), true);
    h.ctrl.power_cut();
    assert_eq!(h.read_blocks(1, 0, 1).1, pattern(512, 4));
}

#[test]
fn flush_makes_every_earlier_write_durable() {
    let mut h = Harness::with_io("emu", 16);
    h.write_blocks(1, 10, &pattern(8 * 512, 5), false);
    assert!(h.flush(1).status.is_success());
    h.write_blocks(1, 100, &pattern(512, 6), false);
    h.ctrl.power_cut();
    assert_eq!(h.read_blocks(1, 10, 8).1, pattern(8 * 512, 5));
    assert!(
        h.read_blocks(1, 100, 1).1.iter().all(|&b| b == 0),
        "written after the flush"
    );
}

#[test]
fn without_a_write_cache_every_completed_write_is_durable() {
    let mut h = Harness::with_io("emu:vwc=off", 16);
    let (_, page) = h.identify(1, 0);
    let id = nvme_spec::IdentifyController::parse(&page).unwrap();
    assert!(!id.has_volatile_write_cache());
    assert!(!h.ctrl.write_cache_enabled());
    h.write_blocks(1, 0, &pattern(2 * 512, 7), false);
    h.ctrl.power_cut();
    assert_eq!(h.read_blocks(1, 0, 2).1, pattern(2 * 512, 7));
    let c = h.get_feature(0x06);
    assert!(!c.status.is_success(), "no cache to report on");
}

#[test]
fn disabling_the_cache_with_set_features_flushes_it_first() {
    let mut h = Harness::with_io("emu", 16);
    h.write_blocks(1, 0, &pattern(512, 8), false);
    assert!(h.set_feature(0x06, 0).status.is_success());
    assert!(!h.ctrl.write_cache_enabled());
    h.write_blocks(1, 1, &pattern(512, 9), false);
    h.ctrl.power_cut();
    assert_eq!(h.read_blocks(1, 0, 1).1, pattern(512, 8));
    assert_eq!(h.read_blocks(1, 1, 1).1, pattern(512, 9));
    assert!(h.set_feature(0x06, 1).status.is_success());
    h.write_blocks(1, 2, &pattern(512, 10), false);
    h.ctrl.power_cut();
    assert!(h.read_blocks(1, 2, 1).1.iter().all(|&b| b == 0));
}

#[test]
fn file_backing_receives_only_durable_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let name = format!("emu:file={},size=1M", path.display());
    {
        let mut h = Harness::with_io(&name, 16);
        h.write_blocks(1, 0, &pattern(512, 11), false);
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), 1 << 20);
        assert!(
            on_disk[..512].iter().all(|&b| b == 0),
            "cached data must not reach the file"
        );
        assert_eq!(h.read_blocks(1, 0, 1).1, pattern(512, 11));
        assert!(h.flush(1).status.is_success());
        assert_eq!(std::fs::read(&path).unwrap()[..512], pattern(512, 11));
        h.write_blocks(1, 1, &pattern(512, 12), true);
        h.write_blocks(1, 2, &pattern(512, 13), false);
        h.ctrl.power_cut();
    }
    let mut h = Harness::with_io(&name, 16);
    assert_eq!(h.read_blocks(1, 0, 1).1, pattern(512, 11));
    assert_eq!(h.read_blocks(1, 1, 1).1, pattern(512, 12));
    assert!(h.read_blocks(1, 2, 1).1.iter().all(|&b| b == 0));
}

#[test]
fn file_backing_places_each_namespace_at_its_own_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let mut h = Harness::with_io(
        &format!("emu:file={},size=64K,ns=2,vwc=off", path.display()),
        16,
    );
    h.write_blocks(2, 0, &pattern(512, 14), false);
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), 128 << 10);
    assert_eq!(on_disk[64 << 10..(64 << 10) + 512], pattern(512, 14));
}

#[test]
fn write_zeroes_is_durable_at_once() {
    let mut h = Harness::with_io("emu", 16);
    h.write_blocks(1, 0, &pattern(2 * 512, 15), true);
    let mut wz = sqe(0x08);
    wz.nsid = 1;
    wz.cdw12 = 1;
    assert!(h.exec(1, wz).status.is_success());
    h.ctrl.power_cut();
    assert!(h.read_blocks(1, 0, 2).1.iter().all(|&b| b == 0));
}

#[test]
fn power_cut_counts_an_unsafe_shutdown_in_smart() {
    let mut h = Harness::with_io("emu", 16);
    h.ctrl.power_cut();
    let (_, log) = h.get_log(0x02, 512);
    let smart = nvme_spec::SmartLog::parse(&log).unwrap();
    assert_eq!(smart.unsafe_shutdowns.get(), 1);
    assert_eq!(smart.power_cycles.get(), 2);
}

#[test]
fn write_zeroes_on_a_file_namespace_zeroes_the_file_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let mut h = Harness::with_io(&format!("emu:file={},size=1M,lba=4096", path.display()), 16);
    let data = pattern(4 * 4096, 16);
    h.write_blocks(1, 0, &data, true);
    let mut wz = sqe(0x08);
    wz.nsid = 1;
    wz.cdw10 = 1;
    wz.cdw12 = 1 | (1 << 25); // blocks 1..3, deallocate
    assert!(h.exec(1, wz).status.is_success());
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk[..4096], data[..4096]);
    assert!(on_disk[4096..3 * 4096].iter().all(|&b| b == 0));
    assert_eq!(on_disk[3 * 4096..4 * 4096], data[3 * 4096..]);
    assert_eq!(on_disk.len(), 1 << 20, "punching a hole keeps the size");
}

#[test]
fn a_full_write_cache_writes_back_its_oldest_blocks_and_stays_bounded() {
    // 65536 blocks fit in the cache; write 4096 more, 64 blocks per command.
    const CAPACITY: u64 = 1 << 16;
    const PER_CMD: u64 = 64;
    let total = CAPACITY + 4096;
    let mut h = Harness::with_io("emu:size=64M", 16);
    let data = |cmd: u64| pattern(PER_CMD as usize * 512, cmd as u8);
    for cmd in 0..total / PER_CMD {
        let c = h.write_blocks(1, cmd * PER_CMD, &data(cmd), false);
        assert!(c.status.is_success());
    }
    let cached = h.ctrl.cached_blocks(1).unwrap() as u64;
    assert!(cached <= CAPACITY, "{cached} blocks cached");
    // Reads see the newest data, whether it sits in the cache or was written back.
    let last = total / PER_CMD - 1;
    for cmd in [0, 1, last / 2, last] {
        let (c, got) = h.read_blocks(1, cmd * PER_CMD, PER_CMD as u32);
        assert!(c.status.is_success());
        assert_eq!(got, data(cmd), "command {cmd} before the power cut");
    }
    h.ctrl.power_cut();
    assert_eq!(h.ctrl.stats().lost_blocks, cached);
    // The oldest blocks were written back to make room, so they survive; the newest
    // were still cached and are lost.
    assert_eq!(h.read_blocks(1, 0, PER_CMD as u32).1, data(0));
    let (_, newest) = h.read_blocks(1, last * PER_CMD, PER_CMD as u32);
    assert!(newest.iter().all(|&b| b == 0), "newest blocks survived");
}

#[test]
fn flush_after_the_cache_wrapped_makes_every_block_durable() {
    const PER_CMD: u64 = 64;
    let total = (1u64 << 16) + 4096;
    let mut h = Harness::with_io("emu:size=64M", 16);
    for cmd in 0..total / PER_CMD {
        h.write_blocks(
            1,
            cmd * PER_CMD,
            &pattern(PER_CMD as usize * 512, cmd as u8),
            false,
        );
    }
    assert!(h.flush(1).status.is_success());
    assert_eq!(h.ctrl.cached_blocks(1), Some(0));
    h.ctrl.power_cut();
    assert_eq!(h.ctrl.stats().lost_blocks, 0);
    let last = total / PER_CMD - 1;
    for cmd in [0, last / 2, last] {
        let got = h.read_blocks(1, cmd * PER_CMD, PER_CMD as u32).1;
        assert_eq!(
            got,
            pattern(PER_CMD as usize * 512, cmd as u8),
            "command {cmd}"
        );
    }
}

#[test]
fn a_block_superseded_by_fua_is_not_written_back_when_the_cache_wraps() {
    const PER_CMD: u64 = 64;
    let mut h = Harness::with_io("emu:size=64M", 16);
    h.write_blocks(1, 0, &pattern(512, 1), false);
    h.write_blocks(1, 0, &pattern(512, 2), true);
    // Enough newer cached writes that every older slot is written back or freed.
    let total = (1u64 << 16) + 8192;
    for cmd in 0..total / PER_CMD {
        h.write_blocks(
            1,
            1024 + cmd * PER_CMD,
            &pattern(PER_CMD as usize * 512, 3),
            false,
        );
    }
    h.ctrl.power_cut();
    assert_eq!(h.read_blocks(1, 0, 1).1, pattern(512, 2));
}

/// Writes `n` cached blocks at 0, block `i` holding `pattern(512, seed + i)`, after a
/// durable older copy `pattern(512, 100 + i)`; cuts with `power_cut_partial`; returns
/// the blocks kept (each checked to hold wholly the old or wholly the new data) and
/// the count the cut reported.
fn torn_run(seed: u64, keep_permille: u16, n: u64) -> (Vec<u64>, usize, u64) {
    let mut h = Harness::with_io("emu", 16);
    for i in 0..n {
        h.write_blocks(1, i, &pattern(512, 100 + i as u8), true);
    }
    for i in 0..n {
        h.write_blocks(1, i, &pattern(512, 1 + i as u8), false);
    }
    assert_eq!(h.ctrl.cached_blocks(1), Some(n as usize));
    let kept = h.ctrl.power_cut_partial(seed, keep_permille);
    assert_eq!(h.ctrl.cached_blocks(1), Some(0));
    let mut survivors = Vec::new();
    for i in 0..n {
        let got = h.read_blocks(1, i, 1).1;
        if got == pattern(512, 1 + i as u8) {
            survivors.push(i);
        } else {
            assert_eq!(got, pattern(512, 100 + i as u8), "block {i} is torn");
        }
    }
    (survivors, kept, h.ctrl.stats().lost_blocks)
}

#[test]
fn a_partial_power_cut_keeps_any_subset_of_cached_blocks_each_whole() {
    let (kept, count, lost) = torn_run(0x5eed, 500, 64);
    assert_eq!(kept.len(), count);
    assert_eq!(lost, 64 - count as u64);
    assert!(!kept.is_empty() && kept.len() < 64, "{kept:?}");
    // Not a prefix: a later block survived where an earlier one was lost.
    let first_lost = (0..64).find(|i| !kept.contains(i)).unwrap();
    assert!(kept.iter().any(|&k| k > first_lost), "{kept:?}");
}

#[test]
fn a_partial_power_cut_is_decided_by_its_seed() {
    let a = torn_run(1, 500, 32).0;
    assert_eq!(
        torn_run(1, 500, 32).0,
        a,
        "the same seed tears the same way"
    );
    assert_ne!(torn_run(2, 500, 32).0, a, "another seed tears another way");
}

#[test]
fn a_partial_power_cut_keeping_none_or_all_is_a_full_cut_or_a_flush() {
    let (kept, count, lost) = torn_run(3, 0, 16);
    assert!(kept.is_empty());
    assert_eq!((count, lost), (0, 16));
    let (kept, count, lost) = torn_run(3, 1000, 16);
    assert_eq!(kept, (0..16).collect::<Vec<_>>());
    assert_eq!((count, lost), (16, 0));
}

#[test]
fn a_partial_power_cut_leaves_durable_data_alone_and_counts_as_a_power_cut() {
    let mut h = Harness::with_io("emu", 16);
    h.write_blocks(1, 0, &pattern(4 * 512, 20), true);
    h.write_blocks(1, 8, &pattern(512, 21), false);
    assert!(h.flush(1).status.is_success());
    assert_eq!(h.ctrl.power_cut_partial(9, 500), 0, "nothing was cached");
    assert_eq!(h.read_blocks(1, 0, 4).1, pattern(4 * 512, 20));
    assert_eq!(h.read_blocks(1, 8, 1).1, pattern(512, 21));
    assert_eq!(h.ctrl.stats().power_cuts, 1);
}

#[test]
fn a_partial_power_cut_writes_the_kept_blocks_to_the_backing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let name = format!("emu:file={},size=1M", path.display());
    let n = 32u64;
    let kept = {
        let mut h = Harness::with_io(&name, 16);
        for i in 0..n {
            h.write_blocks(1, i, &pattern(512, 1 + i as u8), false);
        }
        h.ctrl.power_cut_partial(0xfeed, 500)
    };
    let mut h = Harness::with_io(&name, 16);
    let mut survivors = 0;
    for i in 0..n {
        let got = h.read_blocks(1, i, 1).1;
        if got == pattern(512, 1 + i as u8) {
            survivors += 1;
        } else {
            assert!(got.iter().all(|&b| b == 0), "block {i} is torn");
        }
    }
    assert_eq!(survivors, kept);
    assert!(kept > 0 && kept < n as usize);
}
