//! NVM command conformance: data movement, status codes, PRP rules, queue mechanics.

mod common;

use common::*;
use nvme_spec::status::{GenericStatus as G, MediaStatus as M};
use nvme_spec::Status;

fn generic(g: G) -> (u8, u8) {
    code(Status::generic(g))
}

#[test]
fn written_data_reads_back_and_unwritten_blocks_read_as_zeros() {
    let mut h = Harness::with_io("emu:size=16M", 64);
    let data = pattern(8 * 512, 7);
    let c = h.write_blocks(1, 100, &data, false);
    assert!(c.status.is_success());
    let (c, got) = h.read_blocks(1, 100, 8);
    assert!(c.status.is_success());
    assert_eq!(got, data);
    let (c, zeros) = h.read_blocks(1, 5000, 4);
    assert!(c.status.is_success());
    assert!(zeros.iter().all(|&b| b == 0));
}

#[test]
fn lba_out_of_range_reports_spec_status() {
    let mut h = Harness::with_io("emu:size=1M", 16);
    let blocks = (1 << 20) / 512;
    let (c, _) = h.read_blocks(1, blocks - 1, 2);
    assert_eq!(code(c.status), generic(G::LbaOutOfRange));
    let (c, _) = h.read_blocks(1, u64::MAX, 1);
    assert_eq!(code(c.status), generic(G::LbaOutOfRange));
    let (c, _) = h.read_blocks(1, blocks - 1, 1);
    assert!(c.status.is_success());
    let mut wz = sqe(0x08);
    wz.nsid = 1;
    wz.cdw10 = blocks as u32;
    let c = h.exec(1, wz);
    assert_eq!(code(c.status), generic(G::LbaOutOfRange));
    let mut v = sqe(0x0c);
    v.nsid = 1;
    v.cdw10 = (blocks - 3) as u32;
    v.cdw12 = 3;
    let c = h.exec(1, v);
    assert_eq!(code(c.status), generic(G::LbaOutOfRange));
}

#[test]
fn transfer_above_mdts_is_invalid_field_in_command() {
    // mdts=1: 2 x 4 KiB = 8 KiB at most.
    let mut h = Harness::with_io("emu:size=1M,mdts=1", 16);
    let (c, _) = h.read_blocks(1, 0, 16);
    assert!(c.status.is_success());
    let (c, _) = h.read_blocks(1, 0, 17);
    assert_eq!(code(c.status), generic(G::InvalidFieldInCommand));
}

#[test]
fn sgl_data_pointer_is_rejected_as_invalid_field_because_sgls_are_unsupported() {
    let mut h = Harness::with_io("emu:sgl=off", 16);
    let buf = h.alloc(PAGE);
    let mut e = rw(0x02, 1, 0, 1, buf.iova, 0);
    e.cdw0.set_psdt(nvme_spec::command::Psdt::SglMptrContiguous);
    let c = h.exec(1, e);
    assert_eq!(code(c.status), generic(G::InvalidFieldInCommand));
    h.keep(buf);
}

#[test]
fn unknown_io_opcode_is_invalid_command_opcode() {
    let mut h = Harness::with_io("emu", 16);
    let mut e = sqe(0x7f);
    e.nsid = 1;
    let c = h.exec(1, e);
    assert_eq!(code(c.status), generic(G::InvalidCommandOpcode));
    // Write Uncorrectable is not offered (ONCS bit 1 clear).
    let mut e = sqe(0x04);
    e.nsid = 1;
    let c = h.exec(1, e);
    assert_eq!(code(c.status), generic(G::InvalidCommandOpcode));
}

#[test]
fn invalid_nsid_is_invalid_namespace_or_format() {
    let mut h = Harness::with_io("emu:ns=2", 16);
    for nsid in [0, 3, 0xffff_ffff] {
        let (c, _) = h.read_blocks(nsid, 0, 1);
        assert_eq!(
            code(c.status),
            generic(G::InvalidNamespaceOrFormat),
            "nsid {nsid}"
        );
    }
    let c = h.flush(7);
    assert_eq!(code(c.status), generic(G::InvalidNamespaceOrFormat));
}

#[test]
fn flush_to_all_namespaces_succeeds() {
    let mut h = Harness::with_io("emu:ns=2", 16);
    h.write_blocks(2, 0, &pattern(512, 1), false);
    assert_eq!(h.ctrl.cached_blocks(2), Some(1));
    let c = h.flush(0xffff_ffff);
    assert!(c.status.is_success());
    assert_eq!(h.ctrl.cached_blocks(2), Some(0));
}

#[test]
fn namespaces_are_independent_and_4096_byte_blocks_work() {
    let mut h = Harness::with_io("emu:ns=2,lba=4096,size=8M", 16);
    let a = pattern(2 * 4096, 3);
    let b = pattern(2 * 4096, 9);
    assert!(h.write_blocks(1, 10, &a, false).status.is_success());
    assert!(h.write_blocks(2, 10, &b, true).status.is_success());
    assert_eq!(h.read_blocks(1, 10, 2).1, a);
    assert_eq!(h.read_blocks(2, 10, 2).1, b);
}

#[test]
fn prp1_offset_places_data_inside_the_first_page() {
    let mut h = Harness::with_io("emu", 16);
    let data = pattern(512, 5);
    h.write_blocks(1, 0, &data, false);
    let buf = h.alloc(PAGE);
    buf.fill(0, PAGE, 0xee);
    let c = h.exec(1, rw(0x02, 1, 0, 1, buf.iova + 1024, 0));
    assert!(c.status.is_success());
    assert_eq!(buf.read(1024, 512), data);
    assert!(buf.read(0, 1024).iter().all(|&b| b == 0xee));
    assert!(buf.read(1536, PAGE - 1536).iter().all(|&b| b == 0xee));
    h.keep(buf);
}

#[test]
fn prp1_offset_continues_at_page_aligned_prp2() {
    let mut h = Harness::with_io("emu", 16);
    let data = pattern(1024, 11);
    h.write_blocks(1, 0, &data, false);
    let first = h.alloc(PAGE);
    let second = h.alloc(PAGE);
    let c = h.exec(1, rw(0x02, 1, 0, 2, first.iova + 3584, second.iova));
    assert!(c.status.is_success());
    assert_eq!(first.read(3584, 512), data[..512]);
    assert_eq!(second.read(0, 512), data[512..]);
    h.keep(first);
    h.keep(second);
}

#[test]
fn exactly_two_pages_use_prp2_as_a_data_pointer() {
    let mut h = Harness::with_io("emu", 16);
    let data = pattern(2 * PAGE, 13);
    h.write_blocks(1, 8, &data, false);
    let a = h.alloc(PAGE);
    let b = h.alloc(PAGE);
    let c = h.exec(1, rw(0x02, 1, 8, 16, a.iova, b.iova));
    assert!(c.status.is_success());
    assert_eq!(a.read(0, PAGE), data[..PAGE]);
    assert_eq!(b.read(0, PAGE), data[PAGE..]);
    h.keep(a);
    h.keep(b);
}

#[test]
fn prp_list_starting_near_a_page_end_chains_to_the_next_list_page() {
    let mut h = Harness::with_io("emu", 16);
    let data = pattern(4 * PAGE, 17);
    h.write_blocks(1, 0, &data, false);
    let pages: Vec<_> = (0..4).map(|_| h.alloc(PAGE)).collect();
    let list1 = h.alloc(PAGE);
    let list2 = h.alloc(PAGE);
    // Two slots left in the first list page: one data entry, then the chain pointer.
    list1.write_u64(PAGE - 16, pages[1].iova);
    list1.write_u64(PAGE - 8, list2.iova);
    list2.write_u64(0, pages[2].iova);
    list2.write_u64(8, pages[3].iova);
    let c = h.exec(
        1,
        rw(0x02, 1, 0, 32, pages[0].iova, list1.iova + PAGE as u64 - 16),
    );
    assert!(c.status.is_success(), "{:?}", c.status);
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p.read(0, PAGE), data[i * PAGE..(i + 1) * PAGE], "page {i}");
    }
    for b in pages.into_iter().chain([list1, list2]) {
        h.keep(b);
    }
}

#[test]
fn large_transfer_walks_a_full_prp_list_page_and_its_chain() {
    // 600 pages: PRP1 + 511 list entries + chain pointer + 88 entries.
    let mut h = Harness::with_io("emu:mdts=0,lba=4096,size=64M", 16);
    let n = 600;
    let data = pattern(n * PAGE, 23);
    let src = h.alloc(n * PAGE);
    src.write(0, &data);
    let (prp1, prp2) = h.prps_for(&src, n * PAGE);
    let c = h.exec(1, rw(0x01, 1, 0, n as u32, prp1, prp2));
    assert!(c.status.is_success(), "{:?}", c.status);
    let dst = h.alloc(n * PAGE);
    // Build a chained list by hand: 511 entries then a pointer, then the rest.
    let l1 = h.alloc(PAGE);
    let l2 = h.alloc(PAGE);
    for i in 1..512 {
        l1.write_u64((i - 1) * 8, dst.iova + (i * PAGE) as u64);
    }
    l1.write_u64(511 * 8, l2.iova);
    for i in 512..n {
        l2.write_u64((i - 512) * 8, dst.iova + (i * PAGE) as u64);
    }
    let c = h.exec(1, rw(0x02, 1, 0, n as u32, dst.iova, l1.iova));
    assert!(c.status.is_success(), "{:?}", c.status);
    assert!(dst.read(0, n * PAGE) == data);
    for b in [src, dst, l1, l2] {
        h.keep(b);
    }
}

#[test]
fn prp_list_running_past_its_page_without_a_chain_pointer_is_not_read_on() {
    // 599 entries written straight across two list pages: the device takes the last
    // slot of the first page as a pointer to the next list, which here is a (zeroed)
    // data page, so the next "entry" is IOVA 0, which is unmapped.
    let mut h = Harness::with_io("emu:mdts=0,lba=4096,size=64M", 16);
    let n = 600;
    let dst = h.alloc(n * PAGE);
    let list = h.alloc(PAGE * 2);
    for i in 1..n {
        list.write_u64((i - 1) * 8, dst.iova + (i * PAGE) as u64);
    }
    let c = h.exec(1, rw(0x02, 1, 0, n as u32, dst.iova, list.iova));
    assert_eq!(code(c.status), generic(G::DataTransferError));
    h.keep(dst);
    h.keep(list);
}

#[test]
fn misaligned_prp_entries_report_prp_offset_invalid() {
    let mut h = Harness::with_io("emu", 16);
    let a = h.alloc(PAGE);
    let b = h.alloc(PAGE);
    let list = h.alloc(PAGE);
    // PRP2 as data pointer with an offset.
    let c = h.exec(1, rw(0x02, 1, 0, 16, a.iova, b.iova + 512));
    assert_eq!(code(c.status), generic(G::PrpOffsetInvalid));
    // PRP1 not dword aligned.
    let c = h.exec(1, rw(0x02, 1, 0, 1, a.iova + 2, 0));
    assert_eq!(code(c.status), generic(G::PrpOffsetInvalid));
    // A list entry with an offset.
    list.write_u64(0, b.iova + 8);
    list.write_u64(8, b.iova);
    let c = h.exec(1, rw(0x02, 1, 0, 24, a.iova, list.iova));
    assert_eq!(code(c.status), generic(G::PrpOffsetInvalid));
    // A list pointer that is not dword aligned.
    let c = h.exec(1, rw(0x02, 1, 0, 24, a.iova, list.iova + 1));
    assert_eq!(code(c.status), generic(G::PrpOffsetInvalid));
    for buf in [a, b, list] {
        h.keep(buf);
    }
}

#[test]
fn unmapped_data_buffer_fails_with_data_transfer_error_and_is_counted() {
    let mut h = Harness::with_io("emu", 16);
    let hole = h.unmapped_iova();
    let before = h.ctrl.stats().dma_errors;
    let c = h.exec(1, rw(0x02, 1, 0, 1, hole, 0));
    assert_eq!(code(c.status), generic(G::DataTransferError));
    let c = h.exec(1, rw(0x01, 1, 0, 1, hole, 0));
    assert_eq!(code(c.status), generic(G::DataTransferError));
    // The second page of a transfer unmapped.
    let a = h.alloc(PAGE);
    let c = h.exec(1, rw(0x02, 1, 0, 16, a.iova, hole));
    assert_eq!(code(c.status), generic(G::DataTransferError));
    // The PRP list itself unmapped.
    let c = h.exec(1, rw(0x02, 1, 0, 24, a.iova, hole));
    assert_eq!(code(c.status), generic(G::DataTransferError));
    assert_eq!(h.ctrl.stats().dma_errors, before + 4);
    h.keep(a);
}

#[test]
fn buffer_unmapped_after_use_is_no_longer_reachable() {
    let mut h = Harness::with_io("emu", 16);
    let buf = h.alloc(PAGE);
    let c = h.exec(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    assert!(c.status.is_success());
    h.unmap(&buf);
    let c = h.exec(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    assert_eq!(code(c.status), generic(G::DataTransferError));
}

#[test]
fn write_zeroes_clears_exactly_the_range() {
    let mut h = Harness::with_io("emu", 16);
    h.write_blocks(1, 0, &pattern(8 * 512, 1), false);
    let mut wz = sqe(0x08);
    wz.nsid = 1;
    wz.cdw10 = 2;
    wz.cdw12 = 3 | (1 << 25); // 4 blocks, DEAC
    assert!(h.exec(1, wz).status.is_success());
    let (_, got) = h.read_blocks(1, 0, 8);
    let expect = pattern(8 * 512, 1);
    assert_eq!(got[..1024], expect[..1024]);
    assert!(got[1024..3072].iter().all(|&b| b == 0));
    assert_eq!(got[3072..], expect[3072..]);
}

#[test]
fn write_zeroes_spanning_whole_pages_clears_exactly_the_range() {
    // Blocks 3..=28 (bytes 1536..14848): partial 4 KiB pages at both ends, whole ones
    // between, written durably first so they hold data in the backend.
    let mut h = Harness::with_io("emu", 16);
    let expect = pattern(32 * 512, 3);
    h.write_blocks(1, 0, &expect, true);
    let mut wz = sqe(0x08);
    wz.nsid = 1;
    wz.cdw10 = 3;
    wz.cdw12 = 25 | (1 << 25); // 26 blocks, DEAC
    assert!(h.exec(1, wz).status.is_success());
    let (_, got) = h.read_blocks(1, 0, 32);
    assert_eq!(got[..1536], expect[..1536]);
    assert!(got[1536..14848].iter().all(|&b| b == 0));
    assert_eq!(got[14848..], expect[14848..]);
}

#[test]
fn dataset_management_deallocate_zeroes_each_range() {
    let mut h = Harness::with_io("emu", 16);
    h.write_blocks(1, 0, &pattern(16 * 512, 2), true);
    let ranges = h.alloc(PAGE);
    ranges.write(0, nvme_spec::DsmRange::new(1, 2).as_bytes_vec().as_slice());
    ranges.write(
        16,
        nvme_spec::DsmRange::new(10, 3).as_bytes_vec().as_slice(),
    );
    let mut e = sqe(0x09);
    e.nsid = 1;
    e.cdw10 = 1; // two ranges
    e.cdw11 = 1 << 2; // AD
    e.prp1 = ranges.iova;
    assert!(h.exec(1, e).status.is_success());
    let (_, got) = h.read_blocks(1, 0, 16);
    let expect = pattern(16 * 512, 2);
    for lba in 0..16usize {
        let block = &got[lba * 512..(lba + 1) * 512];
        if (1..3).contains(&lba) || (10..13).contains(&lba) {
            assert!(block.iter().all(|&b| b == 0), "lba {lba} not deallocated");
        } else {
            assert_eq!(
                block,
                &expect[lba * 512..(lba + 1) * 512],
                "lba {lba} changed"
            );
        }
    }
    // A range beyond the namespace fails the whole command.
    ranges.write(
        0,
        nvme_spec::DsmRange::new(u64::MAX - 1, 4)
            .as_bytes_vec()
            .as_slice(),
    );
    e.cdw10 = 0;
    assert_eq!(code(h.exec(1, e).status), generic(G::LbaOutOfRange));
    h.keep(ranges);
}

trait AsBytesVec {
    fn as_bytes_vec(&self) -> Vec<u8>;
}

impl AsBytesVec for nvme_spec::DsmRange {
    fn as_bytes_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&self.context_attributes.to_le_bytes());
        v.extend_from_slice(&self.length.to_le_bytes());
        v.extend_from_slice(&self.slba.to_le_bytes());
        v
    }
}

#[test]
fn verify_succeeds_on_a_readable_range() {
    let mut h = Harness::with_io("emu", 16);
    let mut v = sqe(0x0c);
    v.nsid = 1;
    v.cdw12 = 7;
    assert!(h.exec(1, v).status.is_success());
}

#[test]
fn compare_reports_compare_failure_on_mismatch_only() {
    let mut h = Harness::with_io("emu", 16);
    let data = pattern(2 * 512, 4);
    h.write_blocks(1, 40, &data, false);
    let (c, buf) = h.io_with_buf(0x05, 1, 40, 2, Some(&data), 0);
    assert!(c.status.is_success(), "{:?}", c.status);
    h.keep(buf);
    let mut other = data.clone();
    other[700] ^= 1;
    let (c, buf) = h.io_with_buf(0x05, 1, 40, 2, Some(&other), 0);
    assert_eq!(code(c.status), code(Status::media(M::CompareFailure)));
    h.keep(buf);
}

#[test]
fn null_namespace_moves_no_data() {
    let mut h = Harness::with_io("emu:null", 16);
    let buf = h.alloc(PAGE);
    buf.fill(0, PAGE, 0xa5);
    let c = h.exec(1, rw(0x01, 1, 0, 8, buf.iova, 0));
    assert!(c.status.is_success());
    buf.fill(0, PAGE, 0x5a);
    let c = h.exec(1, rw(0x02, 1, 0, 8, buf.iova, 0));
    assert!(c.status.is_success());
    assert!(buf.read(0, PAGE).iter().all(|&b| b == 0x5a));
    h.keep(buf);
}

#[test]
fn queue_wraps_around_many_times_with_correct_phase_and_sq_head() {
    let mut h = Harness::with_io("emu", 4);
    let buf = h.alloc(PAGE);
    for i in 0..200u32 {
        let cid = h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
        let c = h.wait(1);
        assert_eq!(c.cid, cid);
        assert!(c.status.is_success());
        assert_eq!(u32::from(c.sq_head), (i + 1) % 4);
    }
    // Batches of three (a 4-entry queue holds at most 3).
    for _ in 0..50 {
        let cids: Vec<u16> = (0..3)
            .map(|_| h.place(1, rw(0x02, 1, 0, 1, buf.iova, 0), false))
            .collect();
        h.ring(1);
        for cid in cids {
            let c = h.peek(1).expect("completion posted");
            assert_eq!(c.cid, cid);
        }
        h.ring_cq(1);
    }
    h.keep(buf);
}

#[test]
fn full_completion_queue_holds_back_commands_until_the_head_moves() {
    let mut h = Harness::with_io("emu", 16);
    // A 2-entry CQ holds one completion; an 8-entry SQ feeds it.
    h.create_io_pair_with(2, 8, 2, None);
    let buf = h.alloc(PAGE);
    let cids: Vec<u16> = (0..3)
        .map(|_| h.place(2, rw(0x02, 1, 0, 1, buf.iova, 0), false))
        .collect();
    h.ring(2);
    for cid in cids {
        let c = h.peek(2).expect("one completion fits");
        assert_eq!(c.cid, cid);
        assert!(h.peek(2).is_none(), "the CQ must not overflow");
        h.ring_cq(2);
    }
    h.keep(buf);
}

#[test]
fn smart_log_counts_data_units_and_commands() {
    let mut h = Harness::with_io("emu", 16);
    // 1001 units of 512 bytes written -> 2 data units (thousands, rounded up).
    for i in 0..7 {
        h.write_blocks(1, i * 143, &pattern(143 * 512, 1), false);
    }
    h.read_blocks(1, 0, 8);
    let (c, log) = h.get_log(0x02, 512);
    assert!(c.status.is_success());
    let smart = nvme_spec::SmartLog::parse(&log).unwrap();
    assert_eq!(smart.data_units_written.get(), 2);
    assert_eq!(smart.data_units_read.get(), 1);
    assert_eq!(smart.host_write_commands.get(), 7);
    assert_eq!(smart.host_read_commands.get(), 1);
}

#[test]
fn data_spanning_a_ram_chunk_boundary_reads_back_intact() {
    // RAM namespaces allocate 64 KiB chunks; LBAs 120..136 straddle the first boundary.
    let mut h = Harness::with_io("emu:size=1M", 16);
    let cached = pattern(16 * 512, 41);
    assert!(h.write_blocks(1, 120, &cached, false).status.is_success());
    assert_eq!(h.read_blocks(1, 120, 16).1, cached);
    let durable = pattern(16 * 512, 42);
    assert!(h.write_blocks(1, 250, &durable, true).status.is_success());
    assert_eq!(h.read_blocks(1, 250, 16).1, durable);
    assert!(h.flush(1).status.is_success());
    h.ctrl.power_cut();
    assert_eq!(h.read_blocks(1, 120, 16).1, cached);
    assert_eq!(h.read_blocks(1, 250, 16).1, durable);
}

#[test]
fn separate_metadata_moves_through_mptr_and_a_missing_pointer_is_a_data_transfer_error() {
    let mut h = Harness::with_io("emu:size=1M,ms=16,mset=sep", 16);
    let (data, md) = (h.alloc(PAGE), h.alloc(PAGE));
    let (pd, pm) = (pattern(2 * 512, 3), pattern(2 * 16, 9));
    data.write(0, &pd);
    md.write(0, &pm);
    let mut w = rw(0x01, 1, 10, 2, data.iova, 0);
    w.mptr = md.iova;
    assert!(h.exec(1, w).status.is_success());
    let (rd, rm) = (h.alloc(PAGE), h.alloc(PAGE));
    let mut r = rw(0x02, 1, 10, 2, rd.iova, 0);
    r.mptr = rm.iova;
    assert!(h.exec(1, r).status.is_success());
    assert_eq!(rd.read(0, 2 * 512), pd);
    assert_eq!(rm.read(0, 2 * 16), pm);
    let r = rw(0x02, 1, 10, 2, rd.iova, 0);
    assert_eq!(
        code(h.exec(1, r).status),
        generic(G::DataTransferError),
        "MPTR 0"
    );
    let mut r = rw(0x02, 1, 10, 2, rd.iova, 0);
    r.mptr = h.unmapped_iova();
    assert_eq!(
        code(h.exec(1, r).status),
        generic(G::DataTransferError),
        "unmapped MPTR"
    );
    for b in [data, md, rd, rm] {
        h.keep(b);
    }
}

#[test]
fn extended_lbas_move_data_and_metadata_of_each_block_through_the_prps() {
    let mut h = Harness::with_io("emu:size=1M,ms=8,mset=ext", 16);
    let buf = h.alloc(PAGE);
    let p = pattern(4 * 520, 5);
    buf.write(0, &p);
    assert!(h
        .exec(1, rw(0x01, 1, 7, 4, buf.iova, 0))
        .status
        .is_success());
    let back = h.alloc(PAGE);
    assert!(h
        .exec(1, rw(0x02, 1, 7, 4, back.iova, 0))
        .status
        .is_success());
    assert_eq!(back.read(0, 4 * 520), p);
    // The block after the transfer is untouched.
    assert!(back.read(4 * 520, 64).iter().all(|&b| b == 0));
    h.keep(buf);
    h.keep(back);
}
