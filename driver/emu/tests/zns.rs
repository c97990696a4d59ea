//! Zoned namespaces: the zone state machine, write pointer checks, Zone Append,
//! Zone Management Send and Receive, resource limits, reset and power cut.

mod common;

use common::*;
use nvme_spec::status::{CommandSpecificStatus as C, GenericStatus as G};
use nvme_spec::zns::{
    self, IdentifyNamespaceZns, ZoneReceiveAction, ZoneReport, ZoneReportFilter as F,
    ZoneSendAction as A, ZoneState as S,
};
use nvme_spec::{Status, SubmissionEntry};

/// 1 MiB of 512-byte blocks in 16 zones of 128 blocks, 96 of them writable.
const DEV: &str = "emu:zoned,size=1M,zone_size=64K,zone_cap=48K,max_open=2,max_active=3";
const ZB: u64 = 128;
const CAP: u64 = 96;

/// A controller enabled with CC.CSS 110b and one I/O queue pair.
fn zoned(name: &str) -> Harness {
    let mut h = Harness::raw(name);
    h.setup_admin(32, 32);
    h.ctrl
        .write32(0x14, Harness::cc_value(0, 6, 4) | (0b110 << 4));
    assert!(h.ready(), "CC.CSS 110b is accepted");
    h.create_io_pair(1, 16);
    h
}

fn zs(c: C) -> Status {
    Status::command_specific(c)
}

fn status(c: &nvme_spec::CompletionEntry) -> Status {
    c.status.code_only()
}

fn send(h: &mut Harness, zslba: u64, action: A, all: bool) -> Status {
    let c = h.exec(1, zns::zone_management_send(1, zslba, action, all));
    status(&c)
}

fn report_raw(
    h: &mut Harness,
    slba: u64,
    filter: F,
    partial: bool,
    bytes: u64,
) -> (Status, ZoneReport) {
    let buf = h.alloc(bytes as usize);
    let (p1, p2) = h.prps_for(&buf, bytes as usize);
    let mut e = zns::zone_management_receive(
        1,
        slba,
        ZoneReceiveAction::ReportZones,
        filter,
        partial,
        bytes,
    )
    .unwrap();
    e.set_prp(p1, p2);
    let c = h.exec(1, e);
    let data = buf.read(0, bytes as usize);
    h.keep(buf);
    let r = ZoneReport::parse(&data, 0).unwrap();
    (status(&c), r)
}

fn zone(h: &mut Harness, index: u64) -> (S, u64) {
    let (s, r) = report_raw(h, index * ZB, F::All, true, 128);
    assert!(s.is_success());
    let d = r.zones[0];
    assert_eq!(d.zslba, index * ZB);
    assert_eq!(d.zcap, CAP);
    (d.state().unwrap(), d.wp)
}

fn write(h: &mut Harness, slba: u64, nlb: u32, seed: u8) -> Status {
    let c = h.write_blocks(1, slba, &pattern(nlb as usize * 512, seed), false);
    status(&c)
}

fn append(h: &mut Harness, zslba: u64, nlb: u32, seed: u8) -> (Status, u64) {
    let data = pattern(nlb as usize * 512, seed);
    let buf = h.alloc((data.len()).max(PAGE));
    buf.write(0, &data);
    let (p1, p2) = h.prps_for(&buf, data.len());
    let mut e: SubmissionEntry = zns::zone_append(1, zslba, nlb).unwrap();
    e.set_prp(p1, p2);
    let c = h.exec(1, e);
    h.keep(buf);
    (status(&c), zns::appended_lba(c.dw0, c.dw1))
}

#[test]
fn cap_offers_all_command_sets_and_cc_css_000_keeps_zone_commands_off() {
    let mut h = Harness::with_io(DEV, 16);
    let cap = h.ctrl.read64(0);
    assert_eq!(
        (cap >> 37) & 0xff,
        0b0100_0001,
        "CAP.CSS: NVM and I/O command sets"
    );
    assert_eq!(
        send(&mut h, 0, A::Open, false),
        Status::generic(G::InvalidCommandOpcode)
    );
    // The namespace is zoned whatever CC.CSS says: writes still follow the pointer.
    assert_eq!(write(&mut h, 5, 1, 1), zs(C::ZoneInvalidWrite));
    let plain = Harness::raw("emu");
    assert_eq!((plain.ctrl.read64(0) >> 37) & 0xff, 1);
}

#[test]
fn writes_follow_the_write_pointer_to_full() {
    let mut h = zoned(DEV);
    assert_eq!(zone(&mut h, 1), (S::Empty, ZB));
    assert!(write(&mut h, ZB, 8, 1).is_success());
    assert_eq!(zone(&mut h, 1), (S::ImplicitlyOpened, ZB + 8));
    assert_eq!(write(&mut h, ZB, 1, 2), zs(C::ZoneInvalidWrite));
    assert_eq!(write(&mut h, ZB + 9, 1, 2), zs(C::ZoneInvalidWrite));
    assert_eq!(write(&mut h, ZB + 8, 89, 2), zs(C::ZoneBoundaryError));
    assert!(write(&mut h, ZB + 8, 88, 3).is_success());
    assert_eq!(zone(&mut h, 1).0, S::Full);
    assert_eq!(write(&mut h, ZB + CAP, 1, 4), zs(C::ZoneIsFull));
    let (c, data) = h.read_blocks(1, ZB, 8);
    assert!(c.status.is_success());
    assert_eq!(data, pattern(8 * 512, 1));
    // Reads stay in one zone (no Read Across Zone Boundaries).
    assert_eq!(
        status(&h.read_blocks(1, ZB - 1, 2).0),
        zs(C::ZoneBoundaryError)
    );
    // Write Zeroes is a write too.
    let mut wz = nvme_spec::nvm::write_zeroes(1, 3 * ZB + 1, 1).unwrap();
    wz.set_cid(0);
    assert_eq!(status(&h.exec(1, wz)), zs(C::ZoneInvalidWrite));
}

#[test]
fn append_returns_the_lba_it_wrote() {
    let mut h = zoned(DEV);
    let (s, lba) = append(&mut h, 2 * ZB, 4, 1);
    assert!(s.is_success());
    assert_eq!(lba, 2 * ZB);
    let (s, lba) = append(&mut h, 2 * ZB, 8, 2);
    assert!(s.is_success());
    assert_eq!(lba, 2 * ZB + 4);
    assert_eq!(h.read_blocks(1, 2 * ZB + 4, 8).1, pattern(8 * 512, 2));
    assert_eq!(zone(&mut h, 2), (S::ImplicitlyOpened, 2 * ZB + 12));
    assert_eq!(
        append(&mut h, 2 * ZB + 1, 1, 3).0,
        Status::generic(G::InvalidFieldInCommand)
    );
    assert_eq!(append(&mut h, 2 * ZB, 85, 3).0, zs(C::ZoneBoundaryError));
    assert!(append(&mut h, 2 * ZB, 84, 3).0.is_success());
    assert_eq!(append(&mut h, 2 * ZB, 1, 3).0, zs(C::ZoneIsFull));
    assert_eq!(
        append(&mut h, 16 * ZB, 1, 3).0,
        Status::generic(G::LbaOutOfRange)
    );
}

#[test]
fn zone_management_send_follows_the_state_machine() {
    let mut h = zoned(DEV);
    let bad = zs(C::InvalidZoneStateTransition);
    assert_eq!(send(&mut h, 0, A::Close, false), bad, "Empty cannot close");
    assert!(send(&mut h, 0, A::Open, false).is_success());
    assert_eq!(zone(&mut h, 0).0, S::ExplicitlyOpened);
    assert!(
        send(&mut h, 0, A::Open, false).is_success(),
        "open again is a no-op"
    );
    assert!(write(&mut h, 0, 2, 1).is_success());
    assert_eq!(
        zone(&mut h, 0),
        (S::ExplicitlyOpened, 2),
        "a write keeps it explicit"
    );
    assert!(send(&mut h, 0, A::Close, false).is_success());
    assert_eq!(zone(&mut h, 0), (S::Closed, 2));
    assert!(write(&mut h, 2, 1, 1).is_success());
    assert_eq!(
        zone(&mut h, 0).0,
        S::ImplicitlyOpened,
        "a write reopens a closed zone"
    );
    assert!(send(&mut h, 0, A::Finish, false).is_success());
    assert_eq!(zone(&mut h, 0).0, S::Full);
    assert_eq!(send(&mut h, 0, A::Open, false), bad);
    assert_eq!(send(&mut h, 0, A::Close, false), bad);
    assert_eq!(send(&mut h, 0, A::Offline, false), bad);
    assert!(send(&mut h, 0, A::Reset, false).is_success());
    assert_eq!(zone(&mut h, 0), (S::Empty, 0));
    assert!(
        send(&mut h, ZB, A::Finish, false).is_success(),
        "Empty finishes"
    );
    assert_eq!(zone(&mut h, 1).0, S::Full);
    assert_eq!(
        send(&mut h, 5, A::Open, false),
        Status::generic(G::InvalidFieldInCommand),
        "SLBA must start a zone"
    );
    assert_eq!(
        send(&mut h, 16 * ZB, A::Open, false),
        Status::generic(G::LbaOutOfRange)
    );
    let mut raw = zns::zone_management_send(1, 0, A::Open, false);
    raw.cdw13 = 0x09;
    assert_eq!(
        status(&h.exec(1, raw)),
        Status::generic(G::InvalidFieldInCommand)
    );
}

#[test]
fn read_only_and_offline_zones() {
    let mut h = zoned(DEV);
    assert!(write(&mut h, 3 * ZB, 4, 1).is_success());
    assert!(h.ctrl.fail_zone(1, 3, false));
    assert_eq!(zone(&mut h, 3).0, S::ReadOnly);
    assert_eq!(write(&mut h, 3 * ZB + 4, 1, 1), zs(C::ZoneIsReadOnly));
    assert_eq!(h.read_blocks(1, 3 * ZB, 4).1, pattern(4 * 512, 1));
    assert_eq!(
        send(&mut h, 3 * ZB, A::Reset, false),
        zs(C::InvalidZoneStateTransition)
    );
    assert!(
        send(&mut h, 0, A::Offline, true).is_success(),
        "Select All takes Read Only zones offline"
    );
    assert_eq!(zone(&mut h, 3).0, S::Offline);
    assert_eq!(write(&mut h, 3 * ZB, 1, 1), zs(C::ZoneIsOffline));
    assert_eq!(status(&h.read_blocks(1, 3 * ZB, 1).0), zs(C::ZoneIsOffline));
    assert!(!h.ctrl.fail_zone(1, 16, false));
}

#[test]
fn open_and_active_limits_close_implicit_zones_first() {
    // max_open=2, max_active=3.
    let mut h = zoned(DEV);
    assert!(write(&mut h, 0, 1, 1).is_success());
    assert!(write(&mut h, ZB, 1, 1).is_success());
    // A third open closes an implicitly opened zone.
    assert!(write(&mut h, 2 * ZB, 1, 1).is_success());
    let (_, closed) = report_raw(&mut h, 0, F::Closed, false, 4096);
    assert_eq!(closed.nr_zones, 1);
    let (_, open) = report_raw(&mut h, 0, F::ImplicitlyOpened, false, 4096);
    assert_eq!(open.nr_zones, 2);
    // Three active: a fourth zone cannot become active.
    assert_eq!(write(&mut h, 3 * ZB, 1, 1), zs(C::TooManyActiveZones));
    assert_eq!(
        send(&mut h, 3 * ZB, A::Open, false),
        zs(C::TooManyActiveZones)
    );
    assert_eq!(
        send(&mut h, 3 * ZB, A::Finish, false),
        zs(C::TooManyActiveZones)
    );
    // Explicitly open both open ones: nothing implicit is left to close.
    for i in 0..3 {
        let (s, _) = zone(&mut h, i);
        if s == S::ImplicitlyOpened {
            assert!(send(&mut h, i * ZB, A::Open, false).is_success());
        }
    }
    let (_, explicit) = report_raw(&mut h, 0, F::ExplicitlyOpened, false, 4096);
    assert_eq!(explicit.nr_zones, 2);
    let closed = explicit_closed(&mut h);
    assert_eq!(
        send(&mut h, closed * ZB, A::Open, false),
        zs(C::TooManyOpenZones)
    );
    assert_eq!(
        write(&mut h, closed * ZB + 1, 1, 1),
        zs(C::TooManyOpenZones)
    );
    // Finishing frees both resources.
    assert!(send(&mut h, 0, A::Finish, true).is_success());
    assert!(write(&mut h, 3 * ZB, 1, 1).is_success());
}

fn explicit_closed(h: &mut Harness) -> u64 {
    let (_, closed) = report_raw(h, 0, F::Closed, false, 4096);
    closed.zones[0].zslba / ZB
}

#[test]
fn select_all_acts_on_the_zones_each_action_leaves() {
    let mut h = zoned("emu:zoned,size=1M,zone_size=64K");
    for i in 0..4 {
        assert!(write(&mut h, i * ZB, 1, 1).is_success());
    }
    assert!(send(&mut h, 0, A::Close, true).is_success());
    let (_, r) = report_raw(&mut h, 0, F::Closed, false, 4096);
    assert_eq!(r.nr_zones, 4);
    assert!(send(&mut h, 0, A::Open, true).is_success());
    let (_, r) = report_raw(&mut h, 0, F::ExplicitlyOpened, false, 4096);
    assert_eq!(r.nr_zones, 4);
    assert!(send(&mut h, 0, A::Reset, true).is_success());
    let (_, r) = report_raw(&mut h, 0, F::Empty, false, 4096);
    assert_eq!(r.nr_zones, 16);
    assert_eq!(
        send(&mut h, 0, A::Close, false),
        zs(C::InvalidZoneStateTransition)
    );
}

#[test]
fn report_filters_counts_and_is_bounded_by_the_buffer() {
    let mut h = zoned(DEV);
    assert!(send(&mut h, 4 * ZB, A::Finish, false).is_success());
    assert!(send(&mut h, 9 * ZB, A::Finish, false).is_success());
    let (s, all) = report_raw(&mut h, 0, F::All, false, 64 + 4 * 64);
    assert!(s.is_success());
    assert_eq!(
        all.nr_zones, 16,
        "without Partial Report: every matching zone"
    );
    assert_eq!(all.zones.len(), 4, "only what fits the buffer");
    let (_, partial) = report_raw(&mut h, 0, F::All, true, 64 + 4 * 64);
    assert_eq!(partial.nr_zones, 4);
    let (_, full) = report_raw(&mut h, 0, F::Full, false, 4096);
    assert_eq!(full.nr_zones, 2);
    assert_eq!(
        full.zones.iter().map(|d| d.zslba).collect::<Vec<_>>(),
        vec![4 * ZB, 9 * ZB]
    );
    let (_, from5) = report_raw(&mut h, 5 * ZB + 3, F::Full, false, 4096);
    assert_eq!(
        from5.nr_zones, 1,
        "the report starts at the zone holding SLBA"
    );
    let (_, header_only) = report_raw(&mut h, 0, F::Empty, false, 64);
    assert_eq!((header_only.nr_zones, header_only.zones.len()), (14, 0));
    let (s, _) = report_raw(&mut h, 16 * ZB, F::All, false, 64);
    assert_eq!(s, Status::generic(G::LbaOutOfRange));
    let mut e = zns::zone_management_receive(
        1,
        0,
        ZoneReceiveAction::ExtendedReportZones,
        F::All,
        false,
        4096,
    )
    .unwrap();
    let buf = h.alloc(PAGE);
    e.set_prp(buf.iova, 0);
    assert_eq!(
        status(&h.exec(1, e)),
        Status::generic(G::InvalidFieldInCommand)
    );
    // Beyond MDTS (128 KiB by default).
    let mut big =
        zns::zone_management_receive(1, 0, ZoneReceiveAction::ReportZones, F::All, false, 1 << 20)
            .unwrap();
    big.set_prp(buf.iova, 0);
    assert_eq!(
        status(&h.exec(1, big)),
        Status::generic(G::InvalidFieldInCommand)
    );
    h.keep(buf);
}

#[test]
fn reset_deallocates_the_zone() {
    let mut h = zoned(DEV);
    assert!(write(&mut h, ZB, 16, 7).is_success());
    assert!(send(&mut h, ZB, A::Reset, false).is_success());
    assert!(h.read_blocks(1, ZB, 16).1.iter().all(|&b| b == 0));
    assert!(
        write(&mut h, ZB, 1, 8).is_success(),
        "writing starts over at the zone start"
    );
}

#[test]
fn a_partial_power_cut_keeps_the_write_pointer_before_the_first_lost_block() {
    let mut h = zoned(DEV);
    assert!(write(&mut h, 0, 32, 1).is_success());
    let kept = h.ctrl.power_cut_partial(0x2b, 500);
    assert!(kept > 0 && kept < 32, "{kept}");
    let (_, wp) = zone(&mut h, 0);
    assert!(wp < 32, "some block was lost: {wp}");
    // Blocks below the pointer survived; the rest read as deallocated even
    // where the cut kept them.
    let data = h.read_blocks(1, 0, 32).1;
    assert_eq!(
        data[..wp as usize * 512],
        pattern(32 * 512, 1)[..wp as usize * 512]
    );
    assert!(data[wp as usize * 512..].iter().all(|&b| b == 0));
}

#[test]
fn power_cut_keeps_the_write_pointer_of_durable_data() {
    let mut h = zoned(DEV);
    assert!(h
        .write_blocks(1, 0, &pattern(4 * 512, 1), true)
        .status
        .is_success());
    assert!(write(&mut h, ZB, 4, 3).is_success());
    let mut flush = nvme_spec::nvm::flush(1);
    flush.set_cid(0);
    assert!(h.exec(1, flush).status.is_success());
    assert!(write(&mut h, 4, 4, 2).is_success());
    assert!(write(&mut h, ZB + 4, 92, 4).is_success());
    assert_eq!(zone(&mut h, 1).0, S::Full);
    assert!(write(&mut h, 2 * ZB, 2, 5).is_success());
    h.ctrl.power_cut();
    assert_eq!(
        zone(&mut h, 0),
        (S::Closed, 4),
        "the cached blocks 4..8 are gone"
    );
    assert_eq!(
        zone(&mut h, 1),
        (S::Closed, ZB + 4),
        "a Full zone keeps only its flushed data"
    );
    assert_eq!(zone(&mut h, 2), (S::Empty, 2 * ZB));
    assert_eq!(h.read_blocks(1, 0, 4).1, pattern(4 * 512, 1));
    assert!(h.read_blocks(1, 4, 4).1.iter().all(|&b| b == 0));
    assert!(
        write(&mut h, 4, 1, 6).is_success(),
        "writing resumes at the durable pointer"
    );
}

#[test]
fn controller_reset_closes_open_zones() {
    let mut h = zoned(DEV);
    assert!(write(&mut h, 0, 1, 1).is_success());
    assert!(send(&mut h, ZB, A::Open, false).is_success());
    h.disable();
    h.ctrl
        .write32(0x14, Harness::cc_value(0, 6, 4) | (0b110 << 4));
    assert!(h.ready());
    h.create_io_pair(1, 16);
    assert_eq!(zone(&mut h, 0), (S::Closed, 1));
    assert_eq!(zone(&mut h, 1), (S::Empty, ZB));
}

#[test]
fn identify_reports_the_zoned_command_set() {
    let mut h = zoned(DEV);
    let buf = h.alloc(PAGE);
    let mut id = sqe(0x06);
    id.nsid = 1;
    id.cdw10 = 0x05;
    id.cdw11 = 2 << 24;
    id.set_prp(buf.iova, 0);
    assert!(h.admin(id).status.is_success());
    let ns = IdentifyNamespaceZns::parse(&buf.read(0, PAGE)).unwrap();
    assert_eq!(ns.format(0).unwrap().zsze, ZB);
    assert_eq!(
        (ns.max_open_zones(), ns.max_active_zones()),
        (Some(2), Some(3))
    );
    let mut ctrl = sqe(0x06);
    ctrl.cdw10 = 0x06;
    ctrl.cdw11 = 2 << 24;
    ctrl.set_prp(buf.iova, 0);
    assert!(h.admin(ctrl).status.is_success());
    let mut desc = sqe(0x06);
    desc.nsid = 1;
    desc.cdw10 = 0x03;
    desc.set_prp(buf.iova, 0);
    assert!(h.admin(desc).status.is_success());
    let ids = nvme_spec::identify::NamespaceIds::parse(&buf.read(0, PAGE)).unwrap();
    assert_eq!(ids.csi, Some(nvme_spec::identify::CommandSetId::ZONED));
    h.keep(buf);
    let mut plain = Harness::with_io("emu", 16);
    let buf = plain.alloc(PAGE);
    let mut z = sqe(0x06);
    z.nsid = 1;
    z.cdw10 = 0x05;
    z.cdw11 = 2 << 24;
    z.set_prp(buf.iova, 0);
    assert_eq!(
        status(&plain.admin(z)),
        Status::generic(G::InvalidFieldInCommand)
    );
    plain.keep(buf);
}

#[test]
fn zone_options_are_checked() {
    for bad in [
        "emu:zoned,size=1M,zone_size=3K",
        "emu:zoned,size=1M,zone_size=64K,zone_cap=128K",
        "emu:zoned,size=1M,zone_size=64K,max_open=4,max_active=2",
        "emu:zoned,size=1M,zone_size=64K,max_open=17",
        "emu:size=1M,zone_size=64K",
        "emu:zoned=off,zone_size=64K",
    ] {
        assert!(nvme_emu::EmuController::from_name(bad).is_err(), "{bad}");
    }
    let ok = nvme_emu::EmuController::from_name("emu:zoned,size=1M,zone_size=64K").unwrap();
    let z = ok.config().zoned.unwrap();
    assert_eq!(
        (z.zone_size, z.zone_cap, z.max_open, z.max_active),
        (65536, 65536, 0, 0)
    );
}
