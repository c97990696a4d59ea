//! Register interface: CAP/VS values, the CC/CSTS state machine, controller fatal status
//! on invalid settings, shutdown, doorbell validation, interrupt masking, resets.

mod common;

use common::*;
use nvme_spec::registers::{offset, ShutdownStatus};
use nvme_spec::{Cap, Csts, Version};

#[test]
fn cap_and_vs_report_the_configured_controller() {
    let h = Harness::raw("emu:mqes=255,dstrd=2,to=7,mpsmin=0,mpsmax=2");
    let cap = Cap::from_bits(h.ctrl.read64(offset::CAP));
    assert_eq!(cap.mqes(), 255);
    assert_eq!(cap.dstrd(), 2);
    assert_eq!(cap.to(), 7);
    assert_eq!(cap.mpsmin(), 0);
    assert_eq!(cap.mpsmax(), 2);
    assert!(cap.cqr());
    assert!(cap.supports_nvm_command_set());
    assert_eq!(h.ctrl.read32(offset::VS), Version::V1_4.into_bits());
}

#[test]
fn enable_sets_ready_and_disable_clears_it() {
    let mut h = Harness::raw("emu");
    h.setup_admin(8, 8);
    assert!(!h.ready());
    h.enable_default();
    assert!(h.ready());
    assert!(!h.cfs());
    let (c, _) = h.identify(1, 0);
    assert!(c.status.is_success());
    h.disable();
    assert!(!h.ready());
}

fn enable_with(cc: u32, name: &str) -> Harness {
    let mut h = Harness::raw(name);
    h.setup_admin(8, 8);
    h.ctrl.write32(offset::CC, cc);
    h
}

#[test]
fn wrong_iosqes_sets_cfs_instead_of_ready() {
    let h = enable_with(Harness::cc_value(0, 7, 4), "emu");
    assert!(h.cfs());
    assert!(!h.ready());
}

#[test]
fn wrong_iocqes_sets_cfs_instead_of_ready() {
    let h = enable_with(Harness::cc_value(0, 6, 5), "emu");
    assert!(h.cfs());
    assert!(!h.ready());
}

#[test]
fn page_size_outside_cap_sets_cfs() {
    let h = enable_with(Harness::cc_value(1, 6, 4), "emu:mpsmax=0");
    assert!(h.cfs());
    assert!(!h.ready());
    let h = enable_with(Harness::cc_value(0, 6, 4), "emu:mpsmin=1,mpsmax=2");
    assert!(h.cfs());
}

#[test]
fn unsupported_command_set_sets_cfs() {
    let h = enable_with(Harness::cc_value(0, 6, 4) | (1 << 4), "emu");
    assert!(h.cfs());
    assert!(!h.ready());
}

#[test]
fn unaligned_admin_queue_base_sets_cfs() {
    let mut h = Harness::raw("emu");
    h.setup_admin(8, 8);
    let asq = h.ctrl.read64(offset::ASQ);
    h.ctrl.write64(offset::ASQ, asq + 64);
    h.enable_default();
    assert!(h.cfs());
}

#[test]
fn zero_admin_queue_size_sets_cfs() {
    let mut h = Harness::raw("emu");
    h.setup_admin(8, 8);
    h.ctrl.write32(offset::AQA, 0);
    h.enable_default();
    assert!(h.cfs());
}

#[test]
fn reset_clears_cfs_so_a_valid_enable_succeeds() {
    let mut h = enable_with(Harness::cc_value(0, 7, 4), "emu");
    h.assert_reset_clears_cfs();
}

#[test]
fn larger_page_size_is_honoured_for_prps() {
    // MPS = 1: 8 KiB pages; a 16 KiB transfer is PRP1 + PRP2.
    let mut h = Harness::raw("emu:mpsmax=2");
    h.setup_admin(8, 8);
    h.ctrl.write32(offset::CC, Harness::cc_value(1, 6, 4));
    assert!(h.ready());
    let cq = h.alloc(8192);
    let sq = h.alloc(8192);
    assert!(h.create_cq_raw(1, 16, cq.iova, 1, 0).status.is_success());
    assert!(h.create_sq_raw(1, 16, sq.iova, 1, 1).status.is_success());
    h.queues[1] = Some(Queue {
        qid: 1,
        sq,
        cq,
        size: 16,
        cq_size: 16,
        tail: 0,
        head: 0,
        phase: true,
    });
    let a = h.alloc(8192);
    let b = h.alloc(8192);
    a.fill(0, 8192, 1);
    b.fill(0, 8192, 2);
    assert!(h
        .exec(1, rw(0x01, 1, 0, 32, a.iova, b.iova))
        .status
        .is_success());
    // Read back with the halves swapped: PRP2 is one 8 KiB page, no list needed.
    assert!(h
        .exec(1, rw(0x02, 1, 0, 32, b.iova, a.iova))
        .status
        .is_success());
    assert!(b.read(0, 8192).iter().all(|&x| x == 1));
    assert!(a.read(0, 8192).iter().all(|&x| x == 2));
    h.keep(a);
    h.keep(b);
}

#[test]
fn shutdown_reports_in_progress_then_complete_and_flushes_the_cache() {
    let mut h = Harness::with_io("emu", 16);
    h.write_blocks(1, 0, &pattern(512, 1), false);
    assert_eq!(h.ctrl.cached_blocks(1), Some(1));
    let cc = h.ctrl.read32(offset::CC);
    h.ctrl.write32(offset::CC, cc | (1 << 14));
    let first = Csts::from_bits(h.csts());
    assert_eq!(first.shst(), ShutdownStatus::Occurring);
    let second = Csts::from_bits(h.csts());
    assert_eq!(second.shst(), ShutdownStatus::Complete);
    assert_eq!(h.ctrl.cached_blocks(1), Some(0));
    h.ctrl.power_cut();
    let (_, data) = h.read_blocks(1, 0, 1);
    assert_eq!(data, pattern(512, 1));
}

#[test]
fn doorbells_sit_at_the_configured_stride() {
    let mut h = Harness::with_io("emu:dstrd=3", 16);
    assert_eq!(h.sq_doorbell(1), 0x1000 + 2 * 32);
    let (c, _) = h.read_blocks(1, 0, 1);
    assert!(c.status.is_success());
    // A write between doorbells is ignored, not misread.
    h.ctrl.write32(0x1000 + 4, 5);
    let (c, _) = h.read_blocks(1, 0, 1);
    assert!(c.status.is_success());
}

fn aer(h: &mut Harness) -> u16 {
    h.submit(0, sqe(0x0c))
}

#[test]
fn sq_tail_beyond_queue_size_raises_an_async_event_and_is_ignored() {
    let mut h = Harness::with_io("emu", 16);
    let cid = aer(&mut h);
    assert!(h.peek(0).is_none(), "AER is held until an event");
    let before = h.ctrl.stats().invalid_doorbell_writes;
    h.ctrl.write32(h.sq_doorbell(1), 16);
    let c = h.wait(0);
    assert_eq!(c.cid, cid);
    assert!(c.status.is_success());
    assert_eq!(c.dw0 & 0x7, 0, "error status event");
    assert_eq!((c.dw0 >> 8) & 0xff, 1, "invalid doorbell write value");
    assert_eq!((c.dw0 >> 16) & 0xff, 1, "error information log");
    assert_eq!(h.ctrl.stats().invalid_doorbell_writes, before + 1);
    // The queue still works.
    let (c, _) = h.read_blocks(1, 0, 1);
    assert!(c.status.is_success());
}

#[test]
fn doorbell_of_a_queue_never_created_raises_invalid_doorbell_register() {
    let mut h = Harness::with_io("emu", 16);
    aer(&mut h);
    h.ctrl.write32(h.sq_doorbell(5), 1);
    let c = h.wait(0);
    assert_eq!((c.dw0 >> 8) & 0xff, 0, "write to invalid doorbell register");
    // Doorbells far beyond any queue and CQ heads beyond the size are ignored safely.
    h.ctrl.write32(0x1000 + 8 * 70000, 1);
    h.ctrl.write32(h.cq_doorbell(1), 1000);
    let (c, _) = h.read_blocks(1, 0, 1);
    assert!(c.status.is_success());
}

#[test]
fn events_wait_for_an_async_event_request_if_none_is_outstanding() {
    let mut h = Harness::with_io("emu", 16);
    h.ctrl.write32(h.sq_doorbell(9), 3);
    let c = h.admin(sqe(0x0c));
    assert!(c.status.is_success());
    assert_eq!((c.dw0 >> 8) & 0xff, 0);
}

#[test]
fn interrupts_fire_on_the_cq_vector_and_respect_intms() {
    let mut h = Harness::new("emu");
    let fds = h.ctrl.enable_interrupts(4).unwrap();
    h.create_io_pair_irq(1, 16, Some(2));
    // Admin completions went to vector 0.
    assert!(fds[0].read().unwrap() >= 1);
    let (c, _) = h.read_blocks(1, 0, 1);
    assert!(c.status.is_success());
    assert_eq!(fds[2].read().unwrap(), 1);
    assert!(fds[1].read().is_err(), "vector 1 unused");
    h.ctrl.write32(offset::INTMS, 1 << 2);
    assert_eq!(h.ctrl.read32(offset::INTMS), 1 << 2);
    h.read_blocks(1, 0, 1);
    assert!(fds[2].read().is_err(), "masked vector stays quiet");
    h.ctrl.write32(offset::INTMC, 1 << 2);
    assert_eq!(h.ctrl.read32(offset::INTMS), 0);
    assert_eq!(
        fds[2].read().unwrap(),
        1,
        "pending interrupt delivered on unmask"
    );
}

#[test]
fn too_many_interrupt_vectors_is_an_error() {
    let h = Harness::raw("emu:vectors=4");
    assert!(h.ctrl.enable_interrupts(5).is_err());
    assert_eq!(h.ctrl.enable_interrupts(4).unwrap().len(), 4);
}

#[test]
fn admin_queue_registers_are_read_only_while_enabled() {
    let h = Harness::new("emu");
    let asq = h.ctrl.read64(offset::ASQ);
    h.ctrl.write64(offset::ASQ, 0xdead_0000);
    assert_eq!(h.ctrl.read64(offset::ASQ), asq);
}

#[test]
fn function_reset_returns_registers_to_power_on_values_and_keeps_data() {
    let mut h = Harness::with_io("emu", 16);
    h.write_blocks(1, 3, &pattern(512, 8), true);
    h.ctrl.function_reset();
    assert_eq!(h.ctrl.read32(offset::CC), 0);
    assert_eq!(h.ctrl.read32(offset::AQA), 0);
    assert_eq!(h.ctrl.read64(offset::ASQ), 0);
    assert!(!h.ready());
    h.queues.iter_mut().for_each(|q| *q = None);
    h.setup_admin(8, 8);
    h.enable_default();
    assert!(h.ready());
    h.create_io_pair(1, 16);
    let (_, data) = h.read_blocks(1, 3, 1);
    assert_eq!(data, pattern(512, 8));
    assert!(h.ctrl.stats().resets >= 1);
}

#[test]
fn controller_reset_deletes_io_queues() {
    let mut h = Harness::with_io("emu", 16);
    h.disable();
    h.enable_default();
    aer(&mut h);
    // The old I/O SQ is gone: ringing it is an invalid doorbell.
    h.ctrl.write32(h.sq_doorbell(1), 1);
    let c = h.wait(0);
    assert_eq!((c.dw0 >> 8) & 0xff, 0);
}
