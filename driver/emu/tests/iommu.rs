//! The IOMMU model behind `EmuController::dma_mapper`: mapping rules, and what the
//! device does when queue memory is not mapped.

mod common;

use common::*;
use hugepages::MapError;
use nvme_emu::{EmuController, IOVA_LIMIT};
use nvme_spec::status::GenericStatus as G;
use nvme_spec::Status;

#[test]
fn overlapping_misaligned_and_out_of_window_maps_are_refused() {
    let ctrl = EmuController::from_name("emu").unwrap();
    let m = ctrl.dma_mapper();
    assert_eq!(m.iova_ranges(), vec![0..=IOVA_LIMIT]);
    let mem = HostMem::new(4 * PAGE);
    // SAFETY: `mem` outlives the controller's use of it; the mappings are removed or
    // the controller dropped before `mem` is freed. (The same holds for every map below.)
    unsafe { m.map(mem.ptr(), 2 * PAGE, 0x10_0000) }.unwrap();
    let overlap = |iova: u64, len: usize| {
        // SAFETY: as above; an overlapping request is refused without being mapped.
        let r = unsafe { m.map(mem.ptr(), len, iova) };
        matches!(r, Err(MapError::Overlap { .. }))
    };
    assert!(overlap(0x10_0000, PAGE), "same start");
    assert!(overlap(0x10_1000, PAGE), "inside");
    assert!(overlap(0x0f_f000, 2 * PAGE), "overlaps the start");
    // Adjacent ranges are fine.
    // SAFETY: see above.
    unsafe { m.map(mem.ptr().wrapping_add(2 * PAGE), PAGE, 0x10_2000) }.unwrap();
    // SAFETY: see above.
    unsafe { m.map(mem.ptr().wrapping_add(3 * PAGE), PAGE, 0x0f_f000) }.unwrap();
    // SAFETY: see above.
    let r = unsafe { m.map(mem.ptr(), PAGE, 0x20_0800) };
    assert!(matches!(r, Err(MapError::Misaligned { .. })));
    // SAFETY: see above.
    let r = unsafe { m.map(mem.ptr(), 100, 0x30_0000) };
    assert!(matches!(r, Err(MapError::Misaligned { .. })));
    // SAFETY: see above.
    let r = unsafe { m.map(mem.ptr(), PAGE, IOVA_LIMIT + 1) };
    assert!(matches!(r, Err(MapError::OutOfRange { .. })));
    assert!(
        matches!(m.unmap(0x10_0000, PAGE), Err(MapError::NotMapped { .. })),
        "partial unmap"
    );
    assert!(matches!(
        m.unmap(0x50_0000, PAGE),
        Err(MapError::NotMapped { .. })
    ));
    m.unmap(0x10_0000, 2 * PAGE).unwrap();
    m.unmap(0x10_2000, PAGE).unwrap();
    m.unmap(0x0f_f000, PAGE).unwrap();
}

#[test]
fn a_transfer_may_span_two_adjacent_mappings() {
    let mut h = Harness::with_io("emu", 16);
    let data = pattern(2 * PAGE, 31);
    h.write_blocks(1, 0, &data, true);
    // Two separate host buffers mapped at consecutive IOVAs, used as one PRP1 range
    // that crosses the boundary mid-page (PRP1 offset 2048, 4 KiB then PRP2).
    let a = HostMem::new(PAGE);
    let b = HostMem::new(PAGE);
    let c = HostMem::new(PAGE);
    let base = h.unmapped_iova();
    for (i, mem) in [&a, &b, &c].into_iter().enumerate() {
        // SAFETY: the buffers outlive the harness's use; unmapped below.
        unsafe { h.mapper.map(mem.ptr(), PAGE, base + (i * PAGE) as u64) }.unwrap();
    }
    let cqe = h.exec(1, rw(0x02, 1, 0, 8, base + 2048, base + PAGE as u64));
    assert!(cqe.status.is_success());
    assert_eq!(a.read(2048, 2048), data[..2048]);
    assert_eq!(b.read(0, 2048), data[2048..4096]);
    for i in 0..3 {
        h.mapper.unmap(base + (i * PAGE) as u64, PAGE).unwrap();
    }
}

#[test]
fn submission_queue_in_unmapped_memory_is_a_fatal_dma_error() {
    let mut h = Harness::new("emu");
    let cq = h.alloc(PAGE);
    let hole = h.unmapped_iova();
    assert!(h.create_cq_raw(1, 16, cq.iova, 1, 0).status.is_success());
    assert!(h.create_sq_raw(1, 16, hole, 1, 1).status.is_success());
    let before = h.ctrl.stats().dma_errors;
    h.ctrl.write32(h.sq_doorbell(1), 1);
    assert!(
        h.cfs(),
        "a failed SQE fetch leaves no command to fail: controller fatal"
    );
    assert_eq!(h.ctrl.stats().dma_errors, before + 1);
    h.keep(cq);
}

#[test]
fn completion_queue_in_unmapped_memory_is_a_fatal_dma_error() {
    let mut h = Harness::new("emu");
    let sq = h.alloc(PAGE);
    let hole = h.unmapped_iova();
    assert!(h.create_cq_raw(1, 16, hole, 1, 0).status.is_success());
    assert!(h.create_sq_raw(1, 16, sq.iova, 1, 1).status.is_success());
    sq.write(0, &rw(0x00, 1, 0, 1, 0, 0).to_bytes());
    h.ctrl.write32(h.sq_doorbell(1), 1);
    assert!(h.cfs());
    assert!(h.ctrl.stats().dma_errors >= 1);
    h.keep(sq);
}

#[test]
fn queues_at_the_top_of_the_address_space_do_not_overflow() {
    let mut h = Harness::new("emu");
    let cq = h.alloc(PAGE);
    assert!(h.create_cq_raw(1, 16, cq.iova, 1, 0).status.is_success());
    assert!(h
        .create_sq_raw(1, 16, u64::MAX - 0xfff, 1, 1)
        .status
        .is_success());
    h.ctrl.write32(h.sq_doorbell(1), 15);
    assert!(h.cfs());
    h.keep(cq);
}

#[test]
fn prp_list_at_the_top_of_the_address_space_is_a_data_transfer_error() {
    let mut h = Harness::with_io("emu", 16);
    let a = h.alloc(PAGE);
    let c = h.exec(1, rw(0x02, 1, 0, 24, a.iova, u64::MAX - 7));
    assert_eq!(code(c.status), code(Status::generic(G::DataTransferError)));
    h.keep(a);
}
