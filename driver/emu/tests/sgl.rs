//! SGL data and metadata pointers: descriptor chains that move data, and the spec's
//! statuses for every kind of malformed SGL, from hand-built queue entries.

mod common;

use common::*;
use nvme_spec::command::Psdt;
use nvme_spec::identify::IdentifyController;
use nvme_spec::sgl::{SglDescriptor, SglIdentifier, SglSubType, SglType};
use nvme_spec::status::GenericStatus as G;
use nvme_spec::{Status, SubmissionEntry};

fn generic(g: G) -> (u8, u8) {
    code(Status::generic(g))
}

const READ: u8 = 0x02;
const WRITE: u8 = 0x01;

/// A read or write of `nlb` blocks at `slba` whose DPTR is `sgl1` and PSDT `psdt`.
fn sgl_rw(opcode: u8, slba: u64, nlb: u32, sgl1: SglDescriptor, psdt: Psdt) -> SubmissionEntry {
    let mut e = rw(opcode, 1, slba, nlb, 0, 0);
    e.set_sgl(sgl1, psdt);
    e
}

fn data(iova: u64, len: u32) -> SglDescriptor {
    SglDescriptor::data_block(iova, len)
}

/// Writes `descs` into `list` from byte `at` on.
fn put(list: &DmaBuf, at: usize, descs: &[SglDescriptor]) {
    for (i, d) in descs.iter().enumerate() {
        list.write(at + 16 * i, &d.to_bytes());
    }
}

#[test]
fn identify_reports_sgl_support_only_when_on() {
    let mut h = Harness::new("emu");
    let (_, page) = h.identify(1, 0);
    let id = IdentifyController::parse(&page).unwrap();
    assert!(id.sgls.supported() && !id.sgls.dword_aligned() && id.sgls.mptr_sgl());
    assert!(!id.sgls.length_larger_than_data() && !id.sgls.bit_bucket());
    let mut h = Harness::new("emu:sgl=off");
    let (_, page) = h.identify(1, 0);
    assert_eq!(
        IdentifyController::parse(&page).unwrap().sgls.into_bits(),
        0
    );
}

#[test]
fn sgl_commands_are_invalid_field_when_sgls_are_off_and_psdt_11b_always() {
    let mut h = Harness::with_io("emu:sgl=off", 16);
    let buf = h.alloc(PAGE);
    for psdt in [Psdt::SglMptrContiguous, Psdt::SglMptrSgl] {
        let c = h.exec(1, sgl_rw(READ, 0, 1, data(buf.iova, 512), psdt));
        assert_eq!(code(c.status), generic(G::InvalidFieldInCommand));
    }
    let mut h2 = Harness::with_io("emu", 16);
    let b2 = h2.alloc(PAGE);
    let c = h2.exec(1, sgl_rw(READ, 0, 1, data(b2.iova, 512), Psdt::Reserved));
    assert_eq!(code(c.status), generic(G::InvalidFieldInCommand));
    h.keep(buf);
    h2.keep(b2);
}

#[test]
fn one_data_block_and_a_last_segment_of_odd_pieces_move_the_same_bytes() {
    let mut h = Harness::with_io("emu:size=1M", 16);
    let (src, list, dst) = (h.alloc(PAGE), h.alloc(PAGE), h.alloc(2 * PAGE));
    let p = pattern(4 * 512, 11);
    src.write(0, &p);
    let c = h.exec(
        1,
        sgl_rw(WRITE, 20, 4, data(src.iova, 2048), Psdt::SglMptrContiguous),
    );
    assert!(c.status.is_success(), "{:?}", c.status);
    // Read back into three pieces at odd offsets, with an empty block in between.
    put(
        &list,
        0,
        &[
            data(dst.iova + 3, 1000),
            data(dst.iova + 0x1001, 0),
            data(dst.iova + 0x1001, 1040),
            data(dst.iova + 0x1801, 8),
        ],
    );
    let c = h.exec(
        1,
        sgl_rw(
            READ,
            20,
            4,
            SglDescriptor::last_segment(list.iova, 4),
            Psdt::SglMptrContiguous,
        ),
    );
    assert!(c.status.is_success(), "{:?}", c.status);
    let mut got = dst.read(3, 1000);
    got.extend(dst.read(0x1001, 1040));
    got.extend(dst.read(0x1801, 8));
    assert_eq!(got, p);
    assert_eq!(dst.read(0, 3), vec![0; 3], "nothing before the first piece");
    for b in [src, list, dst] {
        h.keep(b);
    }
}

#[test]
fn segments_chain_to_a_last_segment() {
    let mut h = Harness::with_io("emu:size=1M", 16);
    let (src, first, second, dst) = (h.alloc(PAGE), h.alloc(PAGE), h.alloc(PAGE), h.alloc(PAGE));
    let p = pattern(3 * 512, 5);
    src.write(0, &p);
    // Segment 1: two 256-byte pieces then a Last Segment pointer to segment 2.
    put(
        &first,
        0,
        &[
            data(src.iova, 256),
            data(src.iova + 256, 256),
            SglDescriptor::last_segment(second.iova + 64, 2),
        ],
    );
    put(
        &second,
        64,
        &[data(src.iova + 512, 512), data(src.iova + 1024, 512)],
    );
    let c = h.exec(
        1,
        sgl_rw(
            WRITE,
            0,
            3,
            SglDescriptor::segment(first.iova, 3),
            Psdt::SglMptrContiguous,
        ),
    );
    assert!(c.status.is_success(), "{:?}", c.status);
    let c = h.exec(
        1,
        sgl_rw(READ, 0, 3, data(dst.iova, 1536), Psdt::SglMptrContiguous),
    );
    assert!(c.status.is_success());
    assert_eq!(dst.read(0, 1536), p);
    for b in [src, first, second, dst] {
        h.keep(b);
    }
}

#[test]
fn extended_lbas_move_data_and_metadata_through_an_sgl() {
    let mut h = Harness::with_io("emu:size=1M,ms=8,mset=ext", 16);
    let (src, list, dst) = (h.alloc(PAGE), h.alloc(PAGE), h.alloc(PAGE));
    let p = pattern(2 * 520, 9);
    src.write(0, &p);
    put(&list, 0, &[data(src.iova, 700), data(src.iova + 700, 340)]);
    let c = h.exec(
        1,
        sgl_rw(
            WRITE,
            4,
            2,
            SglDescriptor::last_segment(list.iova, 2),
            Psdt::SglMptrContiguous,
        ),
    );
    assert!(c.status.is_success(), "{:?}", c.status);
    let c = h.exec(
        1,
        sgl_rw(READ, 4, 2, data(dst.iova, 1040), Psdt::SglMptrContiguous),
    );
    assert!(c.status.is_success());
    assert_eq!(dst.read(0, 1040), p);
    // Sized for data only, the SGL is too short for extended blocks.
    let c = h.exec(
        1,
        sgl_rw(READ, 4, 2, data(dst.iova, 1024), Psdt::SglMptrContiguous),
    );
    assert_eq!(code(c.status), generic(G::DataSglLengthInvalid));
    for b in [src, list, dst] {
        h.keep(b);
    }
}

#[test]
fn separate_metadata_moves_through_an_mptr_sgl_or_a_contiguous_mptr() {
    let mut h = Harness::with_io("emu:size=1M,ms=16,mset=sep", 16);
    let (src, md, md_list, dst, back) = (
        h.alloc(PAGE),
        h.alloc(PAGE),
        h.alloc(PAGE),
        h.alloc(PAGE),
        h.alloc(PAGE),
    );
    let (pd, pm) = (pattern(2 * 512, 1), pattern(2 * 16, 2));
    src.write(0, &pd);
    md.write(0, &pm);
    // PSDT 10b: MPTR points at a segment holding one Data Block for the metadata.
    put(&md_list, 32, &[data(md.iova, 32)]);
    let mut w = sgl_rw(WRITE, 8, 2, data(src.iova, 1024), Psdt::SglMptrSgl);
    w.mptr = md_list.iova + 32;
    assert!(h.exec(1, w).status.is_success());
    // PSDT 01b: MPTR is the metadata buffer itself.
    let mut r = sgl_rw(READ, 8, 2, data(dst.iova, 1024), Psdt::SglMptrContiguous);
    r.mptr = back.iova;
    assert!(h.exec(1, r).status.is_success());
    assert_eq!(dst.read(0, 1024), pd);
    assert_eq!(back.read(0, 32), pm);
    // A metadata SGL may itself chain: MPTR -> Last Segment -> two Data Blocks.
    put(
        &md_list,
        128,
        &[SglDescriptor::last_segment(md_list.iova + 256, 2)],
    );
    put(
        &md_list,
        256,
        &[data(back.iova + 100, 20), data(back.iova + 200, 12)],
    );
    let mut r = sgl_rw(READ, 8, 2, data(dst.iova, 1024), Psdt::SglMptrSgl);
    r.mptr = md_list.iova + 128;
    assert!(h.exec(1, r).status.is_success());
    let mut got = back.read(100, 20);
    got.extend(back.read(200, 12));
    assert_eq!(got, pm);
    for b in [src, md, md_list, dst, back] {
        h.keep(b);
    }
}

#[test]
fn metadata_sgl_misuse_reports_metadata_statuses() {
    let mut h = Harness::with_io("emu:size=1M,ms=8,mset=sep", 16);
    let (buf, md, md_list) = (h.alloc(PAGE), h.alloc(PAGE), h.alloc(PAGE));
    let read = |mptr: u64| {
        let mut r = sgl_rw(READ, 0, 2, data(buf.iova, 1024), Psdt::SglMptrSgl);
        r.mptr = mptr;
        r
    };
    put(&md_list, 0, &[data(md.iova, 8)]);
    let c = h.exec(1, read(md_list.iova));
    assert_eq!(
        code(c.status),
        generic(G::MetadataSglLengthInvalid),
        "short"
    );
    put(&md_list, 16, &[data(md.iova, 24)]);
    let c = h.exec(1, read(md_list.iova + 16));
    assert_eq!(code(c.status), generic(G::MetadataSglLengthInvalid), "long");
    let c = h.exec(1, read(md_list.iova + 4));
    assert_eq!(
        code(c.status),
        generic(G::InvalidFieldInCommand),
        "MPTR not qword aligned"
    );
    let unmapped = h.unmapped_iova();
    let c = h.exec(1, read(unmapped));
    assert_eq!(
        code(c.status),
        generic(G::DataTransferError),
        "MPTR unmapped"
    );
    put(&md_list, 32, &[data(unmapped, 16)]);
    let c = h.exec(1, read(md_list.iova + 32));
    assert_eq!(
        code(c.status),
        generic(G::DataTransferError),
        "metadata unmapped"
    );
    for b in [buf, md, md_list] {
        h.keep(b);
    }
}

/// Runs a 2-block read whose SGL Entry 1 is `sgl1` and returns its status.
fn status_of(h: &mut Harness, sgl1: SglDescriptor) -> (u8, u8) {
    code(
        h.exec(1, sgl_rw(READ, 0, 2, sgl1, Psdt::SglMptrContiguous))
            .status,
    )
}

#[test]
fn malformed_data_sgls_report_the_spec_status_and_move_nothing() {
    let mut h = Harness::with_io("emu:size=1M", 16);
    let (buf, list) = (h.alloc(PAGE), h.alloc(2 * PAGE));
    let bit_bucket = SglDescriptor::new(SglType::BIT_BUCKET, 0, 1024);
    let keyed = SglDescriptor::new(SglType::KEYED_DATA_BLOCK, buf.iova, 1024);
    let mut offset = data(0, 1024);
    offset.identifier = SglIdentifier::new()
        .with_kind(SglType::DATA_BLOCK)
        .with_sub_type(SglSubType::OFFSET);
    let unmapped = h.unmapped_iova();
    let before = h.ctrl.stats().dma_errors;
    let cases: Vec<(&str, SglDescriptor, G)> = vec![
        ("bit bucket", bit_bucket, G::SglDescriptorTypeInvalid),
        ("keyed data block", keyed, G::SglDescriptorTypeInvalid),
        ("offset sub type", offset, G::SglOffsetInvalid),
        ("short", data(buf.iova, 1020), G::DataSglLengthInvalid),
        ("long", data(buf.iova, 1028), G::DataSglLengthInvalid),
        ("wraps", data(u64::MAX - 100, 1024), G::DataSglLengthInvalid),
        ("unmapped", data(unmapped, 1024), G::DataTransferError),
        (
            "segment length not a multiple of 16",
            SglDescriptor::new(SglType::LAST_SEGMENT, list.iova, 24),
            G::InvalidSglSegmentDescriptor,
        ),
        (
            "empty segment",
            SglDescriptor::last_segment(list.iova, 0),
            G::InvalidSglSegmentDescriptor,
        ),
        (
            "segment not qword aligned",
            SglDescriptor::last_segment(list.iova + 4, 1),
            G::InvalidSglSegmentDescriptor,
        ),
        (
            "segment unmapped",
            SglDescriptor::last_segment(unmapped, 2),
            G::DataTransferError,
        ),
    ];
    for (what, d, want) in cases {
        assert_eq!(status_of(&mut h, d), generic(want), "{what}");
    }
    assert_eq!(
        h.ctrl.stats().dma_errors - before,
        2,
        "two DMA faults counted"
    );

    // A segment descriptor before the end of a segment.
    put(
        &list,
        0,
        &[
            SglDescriptor::segment(list.iova + 0x100, 1),
            data(buf.iova, 1024),
        ],
    );
    let c = status_of(&mut h, SglDescriptor::segment(list.iova, 2));
    assert_eq!(
        c,
        generic(G::InvalidNumberOfSglDescriptors),
        "segment in the middle"
    );
    // A Last Segment's segment may not chain on.
    put(
        &list,
        0x200,
        &[
            data(buf.iova, 512),
            SglDescriptor::segment(list.iova + 0x400, 1),
        ],
    );
    put(&list, 0x400, &[data(buf.iova + 512, 512)]);
    let c = status_of(&mut h, SglDescriptor::last_segment(list.iova + 0x200, 2));
    assert_eq!(
        c,
        generic(G::InvalidSglSegmentDescriptor),
        "last segment chains"
    );
    // The same chain from a Segment descriptor is fine.
    let c = status_of(&mut h, SglDescriptor::segment(list.iova + 0x200, 2));
    assert_eq!(c, (0, 0));
    // A bit bucket inside a segment.
    put(&list, 0x600, &[data(buf.iova, 512), bit_bucket]);
    let c = status_of(&mut h, SglDescriptor::last_segment(list.iova + 0x600, 2));
    assert_eq!(
        c,
        generic(G::SglDescriptorTypeInvalid),
        "bit bucket in a segment"
    );
    // A segment that points back at itself ends at the descriptor limit, not in a hang.
    put(
        &list,
        0x800,
        &[SglDescriptor::segment(list.iova + 0x800, 1)],
    );
    let c = status_of(&mut h, SglDescriptor::segment(list.iova + 0x800, 1));
    assert_eq!(c, generic(G::InvalidNumberOfSglDescriptors), "loop");
    // A huge segment length is refused by the descriptor limit before anything is read.
    let c = status_of(
        &mut h,
        SglDescriptor::new(SglType::SEGMENT, list.iova, 0xffff_fff0),
    );
    assert_eq!(c, generic(G::InvalidNumberOfSglDescriptors), "huge segment");
    // The buffer was never written by any of these reads.
    assert!(buf.read(0, 1024).iter().all(|&b| b == 0));
    h.keep(buf);
    h.keep(list);
}
