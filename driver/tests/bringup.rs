//! Controller bring-up, identify, admin commands and shutdown on the emulated controller.

mod common;

use common::*;
use nvme::spec::registers::offset;
use nvme::spec::Csts;
use nvme::{Options, Transport};

#[test]
fn bring_up_enables_the_controller_and_finds_the_namespaces() {
    let r = rig("size=16M,lba=4096,ns=2");
    let csts = Csts::from_bits(r.ctrl.transport().read32(offset::CSTS));
    assert!(csts.rdy());
    let ns = r.ctrl.namespaces();
    assert_eq!(ns.iter().map(|n| n.nsid).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(ns[0].lba_size, 4096);
    assert_eq!(ns[0].blocks, (16 << 20) / 4096);
    assert_eq!(r.ctrl.identify_controller().serial_number(), "EMU00001");
}

#[test]
fn io_queue_count_is_what_the_controller_granted() {
    let r = rig_with(
        "qpairs=2",
        Options {
            io_queues: 8,
            ..fast_options()
        },
    );
    assert_eq!(r.ctrl.io_queue_count(), 2);
}

#[test]
fn open_by_name_brings_up_an_emulated_controller() {
    let ctrl = nvme::open("emu:size=8M", fast_options()).unwrap();
    assert_eq!(ctrl.name(), "emu");
    assert_eq!(ctrl.namespaces().len(), 1);
}

#[test]
fn open_rejects_a_bad_device_name() {
    let err = nvme::open("xyz", fast_options()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad device name 'xyz': expected emu[:options], a PCI address like 0000:01:00.0 or tcp://HOST[:PORT]/SUBSYSTEM-NQN"
    );
}

#[test]
fn dropping_the_controller_shuts_it_down() {
    let r = rig("size=8M");
    let emu = r.emu.clone();
    drop(r.ctrl);
    let csts = Csts::from_bits(emu.read32(offset::CSTS));
    assert_eq!(csts.shst(), nvme::spec::registers::ShutdownStatus::Complete);
}

#[test]
fn shutdown_deletes_live_io_queues_before_setting_shn() {
    let r = rig("size=8M");
    let qp = r
        .ctrl
        .create_io_queue_pair(nvme::QueuePairOptions::default())
        .unwrap();
    let qid = qp.qid();
    let log = r.emu.command_log();
    log.enable();
    drop(r.ctrl);
    let opcodes: Vec<u8> = log
        .entries()
        .iter()
        .filter(|e| e.qid == 0)
        .map(|e| e.opcode)
        .collect();
    assert_eq!(
        opcodes,
        vec![0x00, 0x04],
        "Delete I/O SQ then CQ of queue {qid}"
    );
    drop(qp);
}

#[test]
fn opening_a_pci_address_reports_the_missing_piece() {
    // Without VFIO in the kernel the first check fails; with it, the address does not exist.
    let err = nvme::open("ff:1f.7", fast_options()).unwrap_err();
    if std::path::Path::new("/dev/vfio/vfio").exists() {
        assert!(
            matches!(err, nvme::Error::PciDeviceNotFound { .. }),
            "{err}"
        );
    } else {
        assert!(matches!(err, nvme::Error::NoVfio), "{err}");
        assert!(err.to_string().contains("modprobe vfio-pci"), "{err}");
    }
}
