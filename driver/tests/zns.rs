//! Zoned namespaces through the queue pair: identify, Zone Append and the LBA it
//! returns, zone reports and their paging, zone actions, and zone statuses as typed
//! errors that name the zone.

mod common;

use common::*;
use nvme::spec::identify::CommandSetId;
use nvme::spec::status::CommandSpecificStatus;
use nvme::spec::zns::{ZoneReportFilter, ZoneSendAction, ZoneState};
use nvme::{Error, IoFlags, IoOptions, QueuePairOptions, ZonedInfo};

/// 16 zones of 256 blocks of 4 KiB, at most 2 open and 3 active.
const ZONED: &str = "size=16M,lba=4096,zoned=on,zone_size=1M,max_open=2,max_active=3";

fn zoned_info(r: &Rig) -> ZonedInfo {
    let ns = &r.ctrl.namespaces()[0];
    assert_eq!(ns.command_set, CommandSetId::ZONED);
    ns.zoned.expect("zone data of a zoned namespace")
}

fn qp(r: &Rig) -> nvme::IoQueuePair<nvme::transport::emu::EmuTransport> {
    r.ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth: 32,
            ..QueuePairOptions::default()
        })
        .unwrap()
}

fn zone_state(
    q: &mut nvme::IoQueuePair<nvme::transport::emu::EmuTransport>,
    r: &Rig,
    zslba: u64,
) -> (ZoneState, u64) {
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let page = q
        .report_zones(1, zslba, ZoneReportFilter::All, true, &mut buf)
        .unwrap();
    let z = page.zones[0];
    assert_eq!(z.zslba, zslba);
    (z.state, z.wp)
}

fn zone_status(e: &Error) -> Option<CommandSpecificStatus> {
    match e.status()?.code() {
        nvme::spec::status::StatusCode::CommandSpecific(c) => Some(c),
        _ => None,
    }
}

#[test]
fn a_zoned_namespace_reports_its_zone_geometry_and_limits() {
    let r = rig(ZONED);
    let z = zoned_info(&r);
    assert_eq!(z.zone_size_blocks, 256);
    assert_eq!(z.zones, 16);
    assert_eq!(z.max_open, Some(2));
    assert_eq!(z.max_active, Some(3));
}

#[test]
fn appends_return_the_lbas_the_device_wrote_and_read_back_there() {
    let r = rig(ZONED);
    let z = zoned_info(&r);
    let mut q = qp(&r);
    let zslba = 2 * z.zone_size_blocks;
    let mut lbas = Vec::new();
    for seed in 0..3u64 {
        let src = patterned(&r.ctrl, 2 * 4096, seed);
        lbas.push(
            q.zone_append_sync(1, zslba, 2, &src, IoFlags::empty())
                .unwrap(),
        );
    }
    assert_eq!(lbas, vec![zslba, zslba + 2, zslba + 4]);
    for (seed, &lba) in lbas.iter().enumerate() {
        let mut dst = r.ctrl.allocator().alloc(2 * 4096, 4096).unwrap();
        q.read_sync(1, lba, 2, &mut dst).unwrap();
        assert_eq!(
            contents(&dst),
            contents(&patterned(&r.ctrl, 2 * 4096, seed as u64))
        );
    }
    assert_eq!(
        zone_state(&mut q, &r, zslba),
        (ZoneState::ImplicitlyOpened, zslba + 6)
    );
}

#[test]
fn appends_at_queue_depth_each_get_their_own_lba() {
    let r = rig(ZONED);
    let z = zoned_info(&r);
    let mut q = qp(&r);
    let zslba = z.zone_size_blocks;
    let bufs: Vec<_> = (0..16u64)
        .map(|i| patterned(&r.ctrl, 4096, 100 + i))
        .collect();
    for (i, b) in bufs.iter().enumerate() {
        q.submit_zone_append(
            1,
            zslba,
            1,
            &[b.as_segment()],
            &IoOptions::default(),
            i as u64,
        )
        .unwrap();
    }
    let mut got = vec![None; bufs.len()];
    let mut done = 0;
    while done < bufs.len() {
        done += q.process_completions_with_result(usize::MAX, |ctx, r| {
            got[ctx as usize] = Some(r.expect("append"));
        });
    }
    let mut lbas: Vec<u64> = got.iter().map(|l| l.unwrap()).collect();
    for (i, &lba) in lbas.iter().enumerate() {
        let mut dst = r.ctrl.allocator().alloc(4096, 4096).unwrap();
        q.read_sync(1, lba, 1, &mut dst).unwrap();
        assert_eq!(
            contents(&dst),
            contents(&bufs[i]),
            "append {i} at LBA {lba:#x}"
        );
    }
    lbas.sort_unstable();
    assert_eq!(lbas, (zslba..zslba + 16).collect::<Vec<_>>());
}

#[test]
fn a_write_off_the_write_pointer_names_the_zone_its_write_pointer_and_the_lba() {
    let r = rig(ZONED);
    let z = zoned_info(&r);
    let mut q = qp(&r);
    let zslba = 3 * z.zone_size_blocks;
    let src = patterned(&r.ctrl, 4 * 4096, 1);
    q.write_sync(1, zslba, 4, &src, IoFlags::empty()).unwrap();
    let e = q
        .write_sync(1, zslba + 10, 1, &src, IoFlags::empty())
        .unwrap_err();
    match e {
        Error::Zone {
            zone_start,
            write_pointer,
            lba,
            ..
        } => {
            assert_eq!(zone_start, zslba);
            assert_eq!(write_pointer, Some(zslba + 4));
            assert_eq!(lba, zslba + 10);
        }
        other => panic!("expected a zone error, got {other:?}"),
    }
    assert_eq!(
        zone_status(&e),
        Some(CommandSpecificStatus::ZoneInvalidWrite)
    );
    let text = e.to_string();
    assert!(text.contains("write pointer"), "{text}");
    // The write at the write pointer goes through.
    q.write_sync(1, zslba + 4, 1, &src, IoFlags::empty())
        .unwrap();
}

#[test]
fn a_report_pages_through_every_zone_and_filters_by_state() {
    let r = rig(ZONED);
    let z = zoned_info(&r);
    let mut q = qp(&r);
    // 128 bytes: the header and one descriptor per page.
    let mut small = r.ctrl.allocator().alloc(128, 4096).unwrap();
    let all = q
        .report_zones_all(1, ZoneReportFilter::All, &mut small)
        .unwrap();
    assert_eq!(all.len() as u64, z.zones);
    for (i, zone) in all.iter().enumerate() {
        assert_eq!(zone.zslba, i as u64 * z.zone_size_blocks);
        assert_eq!(zone.state, ZoneState::Empty);
        assert_eq!(zone.wp, zone.zslba);
        assert!(zone.is_sequential_write_required());
    }
    let src = patterned(&r.ctrl, 4096, 5);
    q.zone_append_sync(1, 5 * z.zone_size_blocks, 1, &src, IoFlags::empty())
        .unwrap();
    let empty = q
        .report_zones_all(1, ZoneReportFilter::Empty, &mut small)
        .unwrap();
    assert_eq!(empty.len() as u64, z.zones - 1);
    assert!(empty
        .iter()
        .all(|zone| zone.zslba != 5 * z.zone_size_blocks));
    let open = q
        .report_zones_all(1, ZoneReportFilter::ImplicitlyOpened, &mut small)
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].wp, 5 * z.zone_size_blocks + 1);
    // Without the partial flag the header counts every matching zone from SLBA on.
    let page = q
        .report_zones(1, 0, ZoneReportFilter::All, false, &mut small)
        .unwrap();
    assert_eq!(page.nr_zones, z.zones);
    assert_eq!(page.zones.len(), 1);
    let page = q
        .report_zones(1, 0, ZoneReportFilter::All, true, &mut small)
        .unwrap();
    assert_eq!((page.nr_zones, page.zones.len()), (1, 1));
}

#[test]
fn zone_actions_move_a_zone_through_its_states() {
    let r = rig(ZONED);
    let z = zoned_info(&r);
    let mut q = qp(&r);
    let zslba = 7 * z.zone_size_blocks;
    q.zone_action(1, zslba, ZoneSendAction::Open, false)
        .unwrap();
    assert_eq!(zone_state(&mut q, &r, zslba).0, ZoneState::ExplicitlyOpened);
    q.zone_action(1, zslba, ZoneSendAction::Close, false)
        .unwrap();
    assert_eq!(zone_state(&mut q, &r, zslba).0, ZoneState::Closed);
    q.zone_action(1, zslba, ZoneSendAction::Finish, false)
        .unwrap();
    assert_eq!(zone_state(&mut q, &r, zslba).0, ZoneState::Full);
    // A full zone takes no more data.
    let src = patterned(&r.ctrl, 4096, 9);
    let e = q
        .zone_append_sync(1, zslba, 1, &src, IoFlags::empty())
        .unwrap_err();
    assert_eq!(
        zone_status(&e),
        Some(CommandSpecificStatus::ZoneIsFull),
        "{e}"
    );
    assert!(
        matches!(e, Error::Zone { zone_start, .. } if zone_start == zslba),
        "{e:?}"
    );
    q.zone_action(1, zslba, ZoneSendAction::Reset, false)
        .unwrap();
    assert_eq!(zone_state(&mut q, &r, zslba), (ZoneState::Empty, zslba));
    // Select all: every written zone is reset.
    q.zone_append_sync(1, 0, 1, &src, IoFlags::empty()).unwrap();
    q.zone_append_sync(1, z.zone_size_blocks, 1, &src, IoFlags::empty())
        .unwrap();
    q.zone_action(1, 0, ZoneSendAction::Reset, true).unwrap();
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let empty = q
        .report_zones_all(1, ZoneReportFilter::Empty, &mut buf)
        .unwrap();
    assert_eq!(empty.len() as u64, z.zones);
}

#[test]
fn the_open_zone_limit_is_a_typed_zone_error() {
    let r = rig(ZONED);
    let z = zoned_info(&r);
    let mut q = qp(&r);
    q.zone_action(1, 0, ZoneSendAction::Open, false).unwrap();
    q.zone_action(1, z.zone_size_blocks, ZoneSendAction::Open, false)
        .unwrap();
    let third = 2 * z.zone_size_blocks;
    let e = q
        .zone_action(1, third, ZoneSendAction::Open, false)
        .unwrap_err();
    assert_eq!(
        zone_status(&e),
        Some(CommandSpecificStatus::TooManyOpenZones),
        "{e}"
    );
    assert!(
        matches!(e, Error::Zone { zone_start, .. } if zone_start == third),
        "{e:?}"
    );
}

#[test]
fn zone_commands_on_an_nvm_namespace_are_refused() {
    let r = rig("size=16M,lba=4096");
    let ns = &r.ctrl.namespaces()[0];
    assert_eq!(ns.command_set, CommandSetId::NVM);
    assert!(ns.zoned.is_none());
    let mut q = qp(&r);
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let not_zoned = |e: Error| matches!(e, Error::NotZoned { nsid: 1, .. });
    assert!(not_zoned(
        q.zone_action(1, 0, ZoneSendAction::Reset, true)
            .unwrap_err()
    ));
    assert!(not_zoned(
        q.report_zones(1, 0, ZoneReportFilter::All, true, &mut buf)
            .unwrap_err()
    ));
    assert!(not_zoned(
        q.zone_append_sync(1, 0, 1, &buf, IoFlags::empty())
            .unwrap_err()
    ));
    assert_eq!(q.outstanding(), 0);
}

#[test]
fn completions_with_a_result_report_every_plain_command_once() {
    let r = rig("size=16M,lba=512");
    let mut q = qp(&r);
    let buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    for i in 0..8u64 {
        q.submit_read(1, i * 8, 8, &[buf.as_segment()], i).unwrap();
    }
    let mut seen = [0u32; 8];
    let mut done = 0;
    while done < 8 {
        done += q.process_completions_with_result(usize::MAX, |ctx, res| {
            assert!(res.is_ok(), "{res:?}");
            seen[ctx as usize] += 1;
        });
    }
    assert_eq!(seen, [1; 8]);
}

#[test]
fn the_active_zone_limit_and_a_zone_capacity_below_its_size_are_typed_errors() {
    let r = rig("size=16M,lba=4096,zoned=on,zone_size=1M,zone_cap=512K,max_active=2");
    let z = zoned_info(&r);
    let mut q = qp(&r);
    let src = patterned(&r.ctrl, 4096, 3);
    // Two zones with data become active; closing keeps them active.
    for zone in 0..2 {
        let zslba = zone * z.zone_size_blocks;
        q.zone_append_sync(1, zslba, 1, &src, IoFlags::empty())
            .unwrap();
        q.zone_action(1, zslba, ZoneSendAction::Close, false)
            .unwrap();
    }
    let third = 2 * z.zone_size_blocks;
    let e = q
        .zone_append_sync(1, third, 1, &src, IoFlags::empty())
        .unwrap_err();
    assert_eq!(
        zone_status(&e),
        Some(CommandSpecificStatus::TooManyActiveZones),
        "{e}"
    );
    assert!(
        matches!(e, Error::Zone { zone_start, write_pointer: Some(wp), .. } if zone_start == third && wp == third),
        "{e:?}"
    );
    // The report gives each zone's capacity (128 of its 256 blocks).
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let page = q
        .report_zones(1, third, ZoneReportFilter::All, true, &mut buf)
        .unwrap();
    assert_eq!(page.zones[0].zcap, 128);
    // Finishing one frees a slot.
    q.zone_action(1, 0, ZoneSendAction::Finish, false).unwrap();
    assert_eq!(
        q.zone_append_sync(1, third, 1, &src, IoFlags::empty())
            .unwrap(),
        third
    );
}
