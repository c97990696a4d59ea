//! Admin command conformance: Identify, features, queue management status codes, log
//! pages, Abort, Asynchronous Event Request, Doorbell Buffer Config.

mod common;

use common::*;
use nvme_spec::status::{CommandSpecificStatus as Cs, GenericStatus as G};
use nvme_spec::{ErrorLogEntry, IdentifyController, IdentifyNamespace, Status};

fn generic(g: G) -> (u8, u8) {
    code(Status::generic(g))
}

fn specific(c: Cs) -> (u8, u8) {
    code(Status::command_specific(c))
}

#[test]
fn identify_controller_describes_the_emulated_device() {
    let mut h = Harness::new("emu:ns=3,mdts=6,serial=ABC123,aerl=5");
    let (c, page) = h.identify(1, 0);
    assert!(c.status.is_success());
    let id = IdentifyController::parse(&page).unwrap();
    assert_eq!(id.model_number(), nvme_emu::MODEL);
    assert_eq!(id.serial_number(), "ABC123");
    assert_eq!(id.firmware_revision(), nvme_emu::FIRMWARE);
    assert_eq!(id.mdts, 6);
    assert_eq!(id.nn, 3);
    assert_eq!(id.aerl, 5);
    assert!(
        id.oncs.write_zeroes()
            && id.oncs.dataset_management()
            && id.oncs.verify()
            && id.oncs.compare()
    );
    assert!(id.has_volatile_write_cache());
    assert!(id.supports_doorbell_buffer_config());
    assert_eq!(id.sgls.support(), 1, "SGLs without alignment rule (sgl=on)");
    assert_eq!(id.sqes.required(), 6);
    assert_eq!(id.cqes.required(), 4);
}

#[test]
fn identify_namespace_reports_size_and_block_size() {
    let mut h = Harness::new("emu:size=64M,lba=4096,ns=2");
    let (c, page) = h.identify(0, 2);
    assert!(c.status.is_success());
    let ns = IdentifyNamespace::parse(&page).unwrap();
    assert_eq!(ns.nsze, (64 << 20) / 4096);
    assert_eq!(ns.lba_size().unwrap(), 4096);
    for nsid in [0, 3, 0xffff_ffff] {
        let (c, _) = h.identify(0, nsid);
        assert_eq!(
            code(c.status),
            generic(G::InvalidNamespaceOrFormat),
            "nsid {nsid}"
        );
    }
}

#[test]
fn active_namespace_list_holds_nsids_above_the_given_one() {
    let mut h = Harness::new("emu:ns=4");
    let (c, page) = h.identify(2, 0);
    assert!(c.status.is_success());
    assert_eq!(
        nvme_spec::identify::parse_namespace_list(&page).unwrap(),
        vec![1, 2, 3, 4]
    );
    let (_, page) = h.identify(2, 2);
    assert_eq!(
        nvme_spec::identify::parse_namespace_list(&page).unwrap(),
        vec![3, 4]
    );
    let (c, _) = h.identify(0x55, 0);
    assert_eq!(code(c.status), generic(G::InvalidFieldInCommand));
}

#[test]
fn unknown_admin_opcode_is_invalid_command_opcode() {
    let mut h = Harness::new("emu");
    let c = h.admin(sqe(0xc5));
    assert_eq!(code(c.status), generic(G::InvalidCommandOpcode));
}

#[test]
fn number_of_queues_is_granted_up_to_the_limit_and_fixed_once_queues_exist() {
    let mut h = Harness::new("emu:qpairs=8");
    let c = h.set_feature(0x07, 31 | (31 << 16));
    assert!(c.status.is_success());
    assert_eq!(c.dw0, 7 | (7 << 16));
    let c = h.set_feature(0x07, 1 | (1 << 16));
    assert_eq!(c.dw0, 1 | (1 << 16));
    assert_eq!(h.get_feature(0x07).dw0, 1 | (1 << 16));
    // Only queue ids 1..=2 are now allowed.
    let cq = h.alloc(PAGE);
    assert_eq!(
        code(h.create_cq_raw(3, 16, cq.iova, 1, 0).status),
        specific(Cs::InvalidQueueIdentifier)
    );
    h.create_io_pair(1, 16);
    let c = h.set_feature(0x07, 3 | (3 << 16));
    assert_eq!(code(c.status), generic(G::CommandSequenceError));
    let c = h.set_feature(0x07, 0xffff);
    assert_eq!(code(c.status), generic(G::InvalidFieldInCommand));
    h.keep(cq);
}

#[test]
fn features_round_trip_and_unknown_ones_are_rejected() {
    let mut h = Harness::new("emu");
    assert!(h.set_feature(0x01, 0x0302_0103).status.is_success());
    assert_eq!(h.get_feature(0x01).dw0, 0x0302_0103);
    assert!(h.set_feature(0x08, 0x0a04).status.is_success());
    assert_eq!(h.get_feature(0x08).dw0, 0x0a04);
    assert_eq!(h.get_feature(0x06).dw0, 1, "write cache enabled by default");
    assert!(h.set_feature(0x06, 0).status.is_success());
    assert_eq!(h.get_feature(0x06).dw0, 0);
    assert_eq!(
        code(h.get_feature(0x77).status),
        generic(G::InvalidFieldInCommand)
    );
    assert_eq!(
        code(h.set_feature(0x77, 0).status),
        generic(G::InvalidFieldInCommand)
    );
    let mut e = sqe(0x09);
    e.cdw10 = 0x01 | (1 << 31);
    assert_eq!(
        code(h.admin(e).status),
        specific(Cs::FeatureIdentifierNotSaveable)
    );
}

#[test]
fn create_cq_validates_id_size_vector_and_contiguity() {
    let mut h = Harness::new("emu:qpairs=4,mqes=63,vectors=4");
    let cq = h.alloc(PAGE * 2);
    let c = |h: &mut Harness, qid, size, flags, iv| {
        code(h.create_cq_raw(qid, size, cq.iova, flags, iv).status)
    };
    assert_eq!(c(&mut h, 0, 16, 1, 0), specific(Cs::InvalidQueueIdentifier));
    assert_eq!(c(&mut h, 5, 16, 1, 0), specific(Cs::InvalidQueueIdentifier));
    assert_eq!(c(&mut h, 1, 1, 1, 0), specific(Cs::InvalidQueueSize));
    assert_eq!(c(&mut h, 1, 65, 1, 0), specific(Cs::InvalidQueueSize));
    assert_eq!(c(&mut h, 1, 16, 3, 4), specific(Cs::InvalidInterruptVector));
    assert_eq!(c(&mut h, 1, 16, 0, 0), generic(G::InvalidFieldInCommand));
    assert_eq!(c(&mut h, 1, 64, 1, 0), (0, 0));
    assert_eq!(
        c(&mut h, 1, 16, 1, 0),
        specific(Cs::InvalidQueueIdentifier),
        "already exists"
    );
    let c2 = h.create_cq_raw(2, 16, cq.iova + 512, 1, 0);
    assert_eq!(code(c2.status), generic(G::PrpOffsetInvalid));
    h.keep(cq);
}

#[test]
fn create_sq_needs_an_existing_completion_queue() {
    let mut h = Harness::new("emu:qpairs=4,mqes=63");
    let q = h.alloc(PAGE * 4);
    assert!(h.create_cq_raw(1, 16, q.iova, 1, 0).status.is_success());
    let s = |h: &mut Harness, qid, size, flags, cqid| {
        code(
            h.create_sq_raw(qid, size, q.iova + 0x1000, flags, cqid)
                .status,
        )
    };
    assert_eq!(s(&mut h, 1, 16, 1, 2), specific(Cs::CompletionQueueInvalid));
    assert_eq!(s(&mut h, 1, 16, 1, 0), specific(Cs::CompletionQueueInvalid));
    assert_eq!(s(&mut h, 0, 16, 1, 1), specific(Cs::InvalidQueueIdentifier));
    assert_eq!(s(&mut h, 9, 16, 1, 1), specific(Cs::InvalidQueueIdentifier));
    assert_eq!(s(&mut h, 1, 100, 1, 1), specific(Cs::InvalidQueueSize));
    assert_eq!(s(&mut h, 1, 16, 0, 1), generic(G::InvalidFieldInCommand));
    assert_eq!(s(&mut h, 1, 16, 1, 1), (0, 0));
    assert_eq!(s(&mut h, 1, 16, 1, 1), specific(Cs::InvalidQueueIdentifier));
    h.keep(q);
}

#[test]
fn deleting_a_cq_with_sqs_is_invalid_queue_deletion() {
    let mut h = Harness::with_io("emu", 16);
    let del = |h: &mut Harness, op: u8, qid: u32| {
        let mut e = sqe(op);
        e.cdw10 = qid;
        code(h.admin(e).status)
    };
    assert_eq!(del(&mut h, 0x04, 1), specific(Cs::InvalidQueueDeletion));
    assert_eq!(del(&mut h, 0x00, 0), specific(Cs::InvalidQueueIdentifier));
    assert_eq!(del(&mut h, 0x00, 7), specific(Cs::InvalidQueueIdentifier));
    assert_eq!(del(&mut h, 0x04, 7), specific(Cs::InvalidQueueIdentifier));
    assert_eq!(del(&mut h, 0x00, 1), (0, 0));
    assert_eq!(del(&mut h, 0x00, 1), specific(Cs::InvalidQueueIdentifier));
    assert_eq!(del(&mut h, 0x04, 1), (0, 0));
    // The ids can be reused.
    h.create_io_pair(1, 8);
    let (c, _) = h.read_blocks(1, 0, 1);
    assert!(c.status.is_success());
}

#[test]
fn error_log_records_failed_commands_newest_first() {
    let mut h = Harness::with_io("emu:size=1M", 16);
    let (c1, _) = h.read_blocks(1, 1 << 20, 1);
    let (c2, _) = h.read_blocks(9, 0, 1);
    let (c, page) = h.get_log(0x01, 64 * 64);
    assert!(c.status.is_success());
    let entries = ErrorLogEntry::parse_list(&page);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].cid, c2.cid);
    assert_eq!(entries[0].sqid, 1);
    assert_eq!(
        code(entries[0].status),
        generic(G::InvalidNamespaceOrFormat)
    );
    assert_eq!(entries[1].cid, c1.cid);
    assert_eq!(code(entries[1].status), generic(G::LbaOutOfRange));
    assert_eq!(entries[1].lba, 1 << 20);
    assert!(entries[0].error_count > entries[1].error_count);
}

#[test]
fn unknown_log_page_is_invalid_log_page() {
    let mut h = Harness::new("emu");
    let (c, _) = h.get_log(0x70, 512);
    assert_eq!(code(c.status), specific(Cs::InvalidLogPage));
    let (c, page) = h.get_log(0x03, 512);
    assert!(c.status.is_success());
    assert_eq!(page[0], 1);
}

#[test]
fn abort_of_a_held_command_completes_it_as_aborted() {
    let mut h = Harness::with_io("emu", 16);
    h.ctrl.faults().hold_next(1);
    let buf = h.alloc(PAGE);
    let held = h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    assert!(h.peek(1).is_none());
    let mut abort = sqe(0x08);
    abort.cdw10 = 1 | (u32::from(held) << 16);
    let c = h.admin(abort);
    assert!(c.status.is_success());
    assert_eq!(c.dw0 & 1, 0, "aborted");
    let c = h.wait(1);
    assert_eq!(c.cid, held);
    assert_eq!(code(c.status), generic(G::CommandAbortRequested));
    assert_eq!(h.ctrl.faults().held(), 0);
    h.keep(buf);
}

#[test]
fn abort_of_a_completed_or_unknown_command_reports_not_aborted() {
    let mut h = Harness::with_io("emu", 16);
    let (c, _) = h.read_blocks(1, 0, 1);
    let mut abort = sqe(0x08);
    abort.cdw10 = 1 | (u32::from(c.cid) << 16);
    let r = h.admin(abort);
    assert!(r.status.is_success());
    assert_eq!(r.dw0 & 1, 1);
}

#[test]
fn async_event_requests_beyond_the_limit_fail() {
    let mut h = Harness::new("emu:aerl=1");
    h.submit(0, sqe(0x0c));
    h.submit(0, sqe(0x0c));
    assert!(h.peek(0).is_none());
    let third = h.submit(0, sqe(0x0c));
    let c = h.wait(0);
    assert_eq!(c.cid, third);
    assert_eq!(code(c.status), specific(Cs::AsyncEventRequestLimitExceeded));
}

#[test]
fn doorbell_buffer_config_rejects_unaligned_buffers() {
    let mut h = Harness::new("emu");
    let db = h.alloc(PAGE);
    let mut e = sqe(0x7c);
    e.prp1 = db.iova + 8;
    e.prp2 = db.iova;
    assert_eq!(code(h.admin(e).status), generic(G::InvalidFieldInCommand));
    h.keep(db);
}

#[test]
fn shadow_doorbells_are_read_from_memory_and_event_idx_is_written() {
    let mut h = Harness::new("emu");
    let (db, ei) = h.enable_shadow_doorbells();
    h.create_io_pair(1, 16);
    let buf = h.alloc(PAGE);
    // Place two commands, publish tail 2 in the shadow doorbell, but write only 1 to the
    // MMIO doorbell: the device must take the shadow value.
    h.place(1, rw(0x02, 1, 0, 1, buf.iova, 0), false);
    h.place(1, rw(0x02, 1, 0, 1, buf.iova, 0), false);
    db.store_u32(8, 2); // SQ 1 tail: index 2 * 1
    h.ctrl.write32(h.sq_doorbell(1), 1);
    assert!(h.peek(1).is_some());
    assert!(h.peek(1).is_some());
    assert_eq!(
        ei.load_u32(8),
        2,
        "EventIdx of SQ 1 is the tail the device saw"
    );
    // CQ head through the shadow buffer.
    db.store_u32(12, 2);
    h.ctrl.write32(h.cq_doorbell(1), 2);
    // With shadow doorbells on, an MMIO write alone does not move the tail.
    let cid = h.place(1, rw(0x02, 1, 0, 1, buf.iova, 0), false);
    h.ctrl.write32(h.sq_doorbell(1), 3);
    assert!(h.peek(1).is_none());
    db.store_u32(8, 3);
    h.ctrl.write32(h.sq_doorbell(1), 3);
    let c = h.peek(1).expect("completion after the shadow tail moved");
    assert_eq!(c.cid, cid);
    assert!(c.status.is_success());
    h.keep(db);
    h.keep(ei);
    h.keep(buf);
}

#[test]
fn deleting_an_sq_completes_its_held_commands_as_aborted_by_deletion() {
    let mut h = Harness::with_io("emu", 16);
    h.ctrl.faults().hold_next(1);
    let buf = h.alloc(PAGE);
    let held = h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    let mut del = sqe(0x00);
    del.cdw10 = 1;
    assert!(h.admin(del).status.is_success());
    let c = h.wait(1);
    assert_eq!(c.cid, held);
    assert_eq!(code(c.status), generic(G::CommandAbortedSqDeletion));
    h.keep(buf);
}

#[test]
fn get_log_page_honours_the_offset_and_rejects_unaligned_ones() {
    let mut h = Harness::with_io("emu", 16);
    h.write_blocks(1, 0, &pattern(512, 1), false);
    let buf = h.alloc(PAGE);
    let mut e = sqe(0x02);
    e.nsid = 0xffff_ffff;
    e.cdw10 = 0x02 | ((16 / 4 - 1) << 16); // 16 bytes
    e.cdw12 = 80; // Host Write Commands
    e.prp1 = buf.iova;
    assert!(h.admin(e).status.is_success());
    assert_eq!(u64::from_le_bytes(buf.read(0, 8).try_into().unwrap()), 1);
    e.cdw12 = 2;
    assert_eq!(code(h.admin(e).status), generic(G::InvalidFieldInCommand));
    e.cdw12 = 0;
    e.cdw10 = 0x02 | (0xffff << 16);
    e.cdw11 = 0xffff;
    assert_eq!(
        code(h.admin(e).status),
        generic(G::InvalidFieldInCommand),
        "16 GiB log read"
    );
    h.keep(buf);
}

#[test]
fn abort_of_a_command_still_queued_behind_a_full_cq_completes_it_as_aborted() {
    let mut h = Harness::new("emu");
    // A 2-entry CQ holds one completion; the other commands stay queued in the SQ.
    h.create_io_pair_with(1, 8, 2, None);
    let buf = h.alloc(PAGE);
    let cids: Vec<u16> = (0..3)
        .map(|_| h.place(1, rw(0x02, 1, 0, 1, buf.iova, 0), false))
        .collect();
    h.ring(1);
    let mut abort = sqe(0x08);
    abort.cdw10 = 1 | (u32::from(cids[2]) << 16);
    let a = h.admin(abort);
    assert_eq!(a.dw0 & 1, 0, "queued command aborted");
    let mut got = Vec::new();
    for _ in 0..3 {
        let c = h.peek(1).expect("completion");
        h.ring_cq(1);
        got.push((c.cid, code(c.status)));
    }
    assert_eq!(got[0], (cids[0], (0, 0)));
    assert_eq!(got[1], (cids[1], (0, 0)));
    assert_eq!(got[2], (cids[2], generic(G::CommandAbortRequested)));
    h.keep(buf);
}

#[test]
fn get_features_select_reports_default_and_capabilities() {
    let mut h = Harness::new("emu:qpairs=8");
    assert!(h.set_feature(0x08, 0x0203).status.is_success());
    assert!(h.set_feature(0x06, 0).status.is_success());
    let get = |h: &mut Harness, fid: u32, sel: u32| {
        let mut e = sqe(0x0a);
        e.cdw10 = fid | (sel << 8);
        h.admin(e)
    };
    assert_eq!(get(&mut h, 0x08, 0).dw0, 0x0203, "current");
    assert_eq!(get(&mut h, 0x08, 1).dw0, 0, "default");
    assert_eq!(get(&mut h, 0x06, 1).dw0, 1, "cache on by default");
    assert_eq!(get(&mut h, 0x06, 2).dw0, 1, "saved = default");
    assert_eq!(get(&mut h, 0x07, 1).dw0, 7 | (7 << 16));
    assert_eq!(get(&mut h, 0x08, 3).dw0, 1 << 2, "changeable only");
    assert_eq!(
        code(get(&mut h, 0x08, 5).status),
        generic(G::InvalidFieldInCommand)
    );
}

#[test]
fn identify_namespace_reports_the_metadata_format() {
    let mut h = Harness::new("emu:size=64M,lba=4096,ms=64,mset=sep,pi=1,pil=first");
    let (c, page) = h.identify(0, 1);
    assert!(c.status.is_success());
    let ns = IdentifyNamespace::parse(&page).unwrap();
    let f = ns.format().unwrap();
    assert_eq!((f.data_size, f.metadata_size), (4096, 64));
    assert_eq!(
        f.placement,
        nvme_spec::identify::MetadataPlacement::Separate
    );
    assert_eq!(f.protection, nvme_spec::identify::ProtectionType::Type1);
    assert_eq!(f.pi_location, nvme_spec::identify::PiLocation::First);
    assert!(ns.mc.separate() && !ns.mc.extended());
    assert!(ns.dpc.type1() && ns.dpc.first());
    let mut h = Harness::new("emu:size=64M,ms=8");
    let (_, page) = h.identify(0, 1);
    let f = IdentifyNamespace::parse(&page).unwrap().format().unwrap();
    assert_eq!(f.transfer_block_size(), 520);
}
