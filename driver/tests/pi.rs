//! Protection information: host-generated tuples round-trip and every corruption is
//! named by LBA and field; the controller's end-to-end checks become typed errors
//! naming the LBA; escape tags skip checks; PRACT inserts tuples where the format says.

mod common;

use std::cell::RefCell;
use std::time::Duration;

use common::*;
use nvme::pi::{self, PiCheck, Protection};
use nvme::spec::identify::{MetadataPlacement, PiLocation, ProtectionType};
use nvme::spec::pi::PiFormat;
use nvme::transport::emu::EmuTransport;
use nvme::{DmaBuffer, Error, IoFlags, IoOptions, IoQueuePair, QueuePairOptions};
use proptest::prelude::*;

/// Waits for everything queued on `qp`, returning the first error.
fn drain(qp: &mut IoQueuePair<EmuTransport>) -> Result<(), Error> {
    let mut status = Ok(());
    qp.ring();
    while qp.outstanding() > 0 {
        qp.wait_completions(8, Duration::from_secs(2), |_, s| {
            if status.is_ok() {
                status = s;
            }
        })
        .unwrap();
    }
    status
}

thread_local! {
    /// A controller whose allocator backs the property test's buffers.
    static MEMORY: RefCell<Option<Rig>> = const { RefCell::new(None) };
}

fn with_buffers<R>(
    len: usize,
    md_len: usize,
    f: impl FnOnce(&mut DmaBuffer, &mut DmaBuffer) -> R,
) -> R {
    MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        let rig = m.get_or_insert_with(|| rig("size=1M"));
        let mut data = rig.ctrl.allocator().alloc(len, 4096).unwrap();
        let mut md = rig.ctrl.allocator().alloc(md_len.max(4), 4096).unwrap();
        f(&mut data, &mut md)
    })
}

fn layout_strategy() -> impl Strategy<Value = Protection> {
    (
        prop_oneof![
            Just(ProtectionType::Type1),
            Just(ProtectionType::Type2),
            Just(ProtectionType::Type3)
        ],
        prop_oneof![Just(PiFormat::Guard16), Just(PiFormat::Guard64)],
        prop_oneof![Just(PiLocation::First), Just(PiLocation::Last)],
        prop_oneof![Just(8u16), Just(16), Just(64)],
        prop_oneof![
            Just(MetadataPlacement::Extended),
            Just(MetadataPlacement::Separate)
        ],
        prop_oneof![Just(512u32), Just(4096)],
        prop_oneof![Just(0u8), Just(16)],
    )
        .prop_filter_map(
            "the tuple must fit the metadata",
            |(t, g, l, ms, p, ds, sts)| {
                let sts = if g == PiFormat::Guard64 { sts } else { 0 };
                (usize::from(ms) >= g.tuple_size()).then_some(Protection {
                    pi_type: t,
                    guard: g,
                    location: l,
                    storage_tag_bits: sts,
                    data_size: ds,
                    metadata_size: ms,
                    placement: p,
                })
            },
        )
}

/// The byte offsets (in the data buffer, or the metadata buffer for separate
/// metadata) of block `i`'s data start, metadata start and tuple start.
fn offsets(p: &Protection, i: usize) -> (usize, usize, usize) {
    let data = i * p.data_buffer_block_size();
    let md = match p.placement {
        MetadataPlacement::Separate => i * usize::from(p.metadata_size),
        _ => data + p.data_size as usize,
    };
    (data, md, md + p.tuple_offset())
}

/// Which field a flipped byte at `at` of the tuple falls in.
fn field_of(p: &Protection, at: usize) -> PiCheck {
    let guard = if p.guard == PiFormat::Guard16 { 2 } else { 8 };
    if at < guard {
        PiCheck::Guard
    } else if at < guard + 2 {
        PiCheck::ApplicationTag
    } else {
        PiCheck::ReferenceTag
    }
}

/// The separate metadata buffer's first `len` bytes, when the layout has one.
fn md_view(m: &DmaBuffer, separate: bool, len: usize) -> Option<hugepages::VolatileSlice<'_>> {
    separate.then(|| m.mem().subslice(0, len).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn generated_tuples_verify_and_any_flipped_covered_byte_names_its_lba_and_field(
        p in layout_strategy(),
        blocks in 1usize..=4,
        slba in 0u64..(1 << 40),
        // Neither byte FFh, so no single flip turns the tag into the escape value.
        app_tag in (0u16..0xff, 0u16..0xff).prop_map(|(a, b)| a << 8 | b),
        ref_tag in proptest::option::of(any::<u64>()),
        seed in any::<u64>(),
        victim in any::<prop::sample::Index>(),
        region in 0usize..4,
        spot in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let separate = p.placement == MetadataPlacement::Separate;
        let len = blocks * p.data_buffer_block_size();
        let md_len = blocks * p.metadata_buffer_block_size();
        with_buffers(len, md_len, |data, md| {
            let bytes: Vec<u8> = (0..len).map(|i| pattern_byte(seed, i)).collect();
            data.write(0, &bytes).unwrap();
            let mdb: Vec<u8> = (0..md_len).map(|i| pattern_byte(!seed, i)).collect();
            md.write(0, &mdb).unwrap();
            let opts = IoOptions {
                flags: IoFlags::PRCHK,
                app_tag,
                app_tag_mask: 0xffff,
                ref_tag,
                ..Default::default()
            };
            pi::generate(&p, slba, &opts, data.mem(), md_view(md, separate, md_len)).unwrap();
            prop_assert!(pi::verify(&p, slba, &opts, data.mem(), md_view(md, separate, md_len)).is_ok());
            // Flip one byte that a check covers: the block's data, the metadata before
            // the tuple, or the tuple itself.
            let b = victim.index(blocks);
            let (d, m, t) = offsets(&p, b);
            let ds = p.data_size as usize;
            let before = p.tuple_offset();
            // Each part a check covers is as likely: the block's data and the metadata
            // before the tuple (the guard's input), or one of the tuple's fields.
            let guard_bytes = if p.guard == PiFormat::Guard16 { 2 } else { 8 };
            let (in_md, at, expect) = match region {
                0 => {
                    let k = spot.index(ds + before);
                    if k < ds {
                        (false, d + k, PiCheck::Guard)
                    } else {
                        (separate, m + k - ds, PiCheck::Guard)
                    }
                }
                1 => (separate, t + spot.index(guard_bytes), PiCheck::Guard),
                2 => (separate, t + guard_bytes + spot.index(2), PiCheck::ApplicationTag),
                _ => {
                    // The reference tag's bytes: the 16-byte tuple's storage tag (the
                    // upper STS bits of its 48-bit field) is not checked.
                    let ref_bytes = p.ref_tag_bits() as usize / 8;
                    let j = p.tuple_size() - ref_bytes + spot.index(ref_bytes);
                    (separate, t + j, field_of(&p, j))
                }
            };
            let buf: &mut DmaBuffer = if in_md { md } else { data };
            let mut byte = [0u8];
            buf.read(at, &mut byte).unwrap();
            buf.write(at, &[byte[0] ^ flip]).unwrap();
            let r = pi::verify(&p, slba, &opts, data.mem(), md_view(md, separate, md_len));
            let lba = slba + b as u64;
            prop_assert!(
                matches!(r, Err(Error::PiMismatch { lba: l, check, .. }) if l == lba && check == expect),
                "{p:?} block {b} region {region}: {r:?}"
            );
            Ok(())
        })?;
    }
}

#[test]
fn verify_reports_expected_and_found_values_and_skips_escaped_blocks() {
    let p = Protection {
        pi_type: ProtectionType::Type1,
        guard: PiFormat::Guard16,
        location: PiLocation::Last,
        storage_tag_bits: 0,
        data_size: 512,
        metadata_size: 8,
        placement: MetadataPlacement::Extended,
    };
    with_buffers(2 * 520, 0, |data, _| {
        let opts = IoOptions {
            flags: IoFlags::PRCHK,
            app_tag_mask: 0xffff,
            app_tag: 0x0102,
            ..Default::default()
        };
        pi::generate(&p, 0x500, &opts, data.mem(), None).unwrap();
        // Block 1's reference tag is 0x501; make it 0x999.
        data.write(520 + 516, &0x999u32.to_be_bytes()).unwrap();
        let e = pi::verify(&p, 0x500, &opts, data.mem(), None).unwrap_err();
        assert!(
            matches!(
                e,
                Error::PiMismatch {
                    lba: 0x501,
                    check: PiCheck::ReferenceTag,
                    expected: 0x501,
                    found: 0x999
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with(
            "protection information of LBA 0x501: the reference tag is 0x999, expected 0x501"
        ));
        // Without PRCHK_REF the reference tag is not compared.
        let no_ref = IoOptions {
            flags: IoFlags::PRCHK_GUARD | IoFlags::PRCHK_APP,
            ..opts
        };
        pi::verify(&p, 0x500, &no_ref, data.mem(), None).unwrap();
        // An application tag of FFFFh disables every check of the block.
        data.write(520 + 514, &[0xff, 0xff]).unwrap();
        data.write(520, &[0u8; 16]).unwrap();
        pi::verify(&p, 0x500, &opts, data.mem(), None).unwrap();
        // A buffer that is not whole blocks is refused.
        let short = data.mem().subslice(0, 1000).unwrap();
        assert!(matches!(
            pi::verify(&p, 0x500, &opts, short, None),
            Err(Error::PiBufferLength {
                len: 1000,
                expected: 520,
                ..
            })
        ));
    });
}

/// A rig on `opts` with a queue pair and the namespace's protection.
fn pi_rig(opts: &str) -> (Rig, IoQueuePair<EmuTransport>, Protection) {
    let r = rig(opts);
    let qp = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let p = r.ctrl.namespace(1).unwrap().protection().unwrap().unwrap();
    (r, qp, p)
}

/// Data (and separate metadata) buffers for `blocks` blocks of `p`, data patterned.
fn buffers(r: &Rig, p: &Protection, blocks: usize, seed: u64) -> (DmaBuffer, Option<DmaBuffer>) {
    let data = patterned(&r.ctrl, blocks * p.data_buffer_block_size(), seed);
    let md = (p.metadata_buffer_block_size() > 0)
        .then(|| patterned(&r.ctrl, blocks * p.metadata_buffer_block_size(), !seed));
    (data, md)
}

fn io_opts(flags: IoFlags, md: &Option<DmaBuffer>, app_tag: u16) -> IoOptions {
    IoOptions {
        flags,
        metadata: md.as_ref().map(|m| m.as_segment()),
        app_tag,
        app_tag_mask: 0xffff,
        ..Default::default()
    }
}

fn write(
    qp: &mut IoQueuePair<EmuTransport>,
    slba: u64,
    blocks: u32,
    data: &DmaBuffer,
    opts: &IoOptions,
) -> Result<(), Error> {
    qp.submit_write_ext(1, slba, blocks, &[data.as_segment()], opts, 0)?;
    drain(qp).map_err(|e| qp.locate_end_to_end_error(e))
}

fn read(
    qp: &mut IoQueuePair<EmuTransport>,
    slba: u64,
    blocks: u32,
    data: &DmaBuffer,
    opts: &IoOptions,
) -> Result<(), Error> {
    qp.submit_read_ext(1, slba, blocks, &[data.as_segment()], opts, 0)?;
    drain(qp).map_err(|e| qp.locate_end_to_end_error(e))
}

const FORMATS: [&str; 8] = [
    "lba=512,ms=8,mset=ext,pi=1",
    "lba=512,ms=8,mset=sep,pi=2,pil=first",
    "lba=4096,ms=64,mset=ext,pi=3,pil=first",
    "lba=512,ms=16,mset=ext,pi=1,pil=last",
    "lba=512,ms=16,mset=ext,pi=1,guard=crc64",
    "lba=4096,ms=64,mset=sep,pi=2,guard=crc64,pil=last",
    "lba=512,ms=64,mset=ext,pi=3,guard=crc64,pil=first",
    "lba=4096,ms=16,mset=sep,pi=1,guard=crc64",
];

#[test]
fn host_generated_tuples_pass_the_controllers_checks_and_read_back_verified() {
    for f in FORMATS {
        let (r, mut qp, p) = pi_rig(&format!("size=1M,{f}"));
        assert_eq!(p.guard == PiFormat::Guard64, f.contains("crc64"), "{f}");
        let (src, src_md) = buffers(&r, &p, 4, 7);
        let opts = io_opts(p.checks(), &src_md, 0x4e56);
        pi::generate(&p, 40, &opts, src.mem(), src_md.as_ref().map(|m| m.mem())).unwrap();
        write(&mut qp, 40, 4, &src, &opts).unwrap_or_else(|e| panic!("{f}: {e}"));
        let (dst, dst_md) = buffers(&r, &p, 4, 99);
        let ropts = io_opts(p.checks(), &dst_md, 0x4e56);
        read(&mut qp, 40, 4, &dst, &ropts).unwrap_or_else(|e| panic!("{f}: {e}"));
        pi::verify(&p, 40, &ropts, dst.mem(), dst_md.as_ref().map(|m| m.mem()))
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(contents(&dst), contents(&src), "{f}");
        if let (Some(a), Some(b)) = (&src_md, &dst_md) {
            assert_eq!(contents(a), contents(b), "{f}");
        }
    }
}

/// Corrupts block `block`'s `check` field of a generated write in `data`/`md`.
fn corrupt(
    p: &Protection,
    data: &mut DmaBuffer,
    md: &mut Option<DmaBuffer>,
    block: usize,
    check: PiCheck,
) {
    let (d, _, t) = offsets(p, block);
    let buf = match md.as_mut() {
        Some(m) => m,
        None => data,
    };
    let guard = if p.guard == PiFormat::Guard16 { 2 } else { 8 };
    let (at, buf): (usize, &mut DmaBuffer) = match check {
        PiCheck::Guard => (d, data),
        PiCheck::ApplicationTag => (t + guard, buf),
        PiCheck::ReferenceTag => (t + guard + 2 + (p.tuple_size() - guard - 3), buf),
    };
    let mut b = [0u8];
    buf.read(at, &mut b).unwrap();
    buf.write(at, &[b[0] ^ 0x10]).unwrap();
}

#[test]
fn each_wrong_field_of_a_write_fails_with_its_status_and_the_error_names_the_lba() {
    for f in FORMATS {
        for check in [
            PiCheck::Guard,
            PiCheck::ApplicationTag,
            PiCheck::ReferenceTag,
        ] {
            let (r, mut qp, p) = pi_rig(&format!("size=1M,{f}"));
            if check == PiCheck::ReferenceTag && p.pi_type == ProtectionType::Type3 {
                // Type 3 has no reference tag to check (see
                // `type_3_reference_tag_checks_and_a_type_1_tag_off_the_lba_are_invalid`).
                continue;
            }
            let (mut src, mut md) = buffers(&r, &p, 4, 3);
            let opts = io_opts(p.checks(), &md, 0x1234);
            pi::generate(&p, 8, &opts, src.mem(), md.as_ref().map(|m| m.mem())).unwrap();
            corrupt(&p, &mut src, &mut md, 2, check);
            let e = write(&mut qp, 8, 4, &src, &opts).unwrap_err();
            let sc = match check {
                PiCheck::Guard => 0x82,
                PiCheck::ApplicationTag => 0x83,
                PiCheck::ReferenceTag => 0x84,
            };
            match &e {
                Error::EndToEnd {
                    check: c,
                    lba,
                    status,
                    ..
                } => {
                    assert_eq!(*c, check, "{f}");
                    assert_eq!(*lba, Some(10), "{f} {check}");
                    assert_eq!((status.sct() as u8, status.sc()), (2, sc));
                }
                other => panic!("{f} {check}: {other:?}"),
            }
            assert_eq!(e.status().map(|s| s.sc()), Some(sc));
            let text = e.to_string();
            assert!(
                text.contains(&format!("failed the end-to-end {check} check at LBA 0xa")),
                "{text}"
            );
            // The rejected write stored nothing.
            let (dst, dst_md) = buffers(&r, &p, 4, 5);
            read(&mut qp, 8, 4, &dst, &io_opts(IoFlags::empty(), &dst_md, 0)).unwrap();
            assert!(contents(&dst).iter().all(|&b| b == 0), "{f} {check}");
        }
    }
}

#[test]
fn stored_tuples_are_checked_on_reads_and_the_blocking_read_names_the_lba() {
    let (r, mut qp, p) = pi_rig("size=1M,lba=512,ms=8,mset=ext,pi=1");
    let (mut src, mut md) = buffers(&r, &p, 4, 11);
    let opts = io_opts(IoFlags::empty(), &md, 0x0077);
    pi::generate(&p, 100, &opts, src.mem(), None).unwrap();
    corrupt(&p, &mut src, &mut md, 3, PiCheck::Guard);
    // Without PRCHK the controller stores whatever the host sent.
    write(&mut qp, 100, 4, &src, &opts).unwrap();
    let mut dst = r.ctrl.allocator().alloc(4 * 520, 4096).unwrap();
    // read_sync sets no PRCHK bits: the data comes back as written.
    qp.read_sync(1, 100, 4, &mut dst).unwrap();
    assert_eq!(contents(&dst), contents(&src));
    let e = read(
        &mut qp,
        100,
        4,
        &dst,
        &io_opts(IoFlags::PRCHK, &None, 0x0077),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::EndToEnd {
                check: PiCheck::Guard,
                lba: Some(103),
                ..
            }
        ),
        "{e:?}"
    );
    // A wrong expected application tag fails at the first block checked.
    let two = r.ctrl.allocator().alloc(2 * 520, 4096).unwrap();
    let e = read(
        &mut qp,
        100,
        2,
        &two,
        &io_opts(IoFlags::PRCHK_APP, &None, 0x0078),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::EndToEnd {
                check: PiCheck::ApplicationTag,
                lba: Some(100),
                ..
            }
        ),
        "{e:?}"
    );
    // The blocking write names the LBA itself: PRCHK with the LBA's reference tags,
    // but block 0 carries block 3's.
    pi::generate(&p, 200, &opts, src.mem(), None).unwrap();
    let mut tuple3 = [0u8; 8];
    src.read(3 * 520 + 512, &mut tuple3).unwrap();
    src.write(512, &tuple3).unwrap();
    let e = qp
        .write_sync(1, 200, 4, &src, IoFlags::PRCHK_REF)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::EndToEnd {
                check: PiCheck::ReferenceTag,
                lba: Some(200),
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn escape_tags_skip_the_controllers_checks() {
    // Type 1: an application tag of FFFFh is enough.
    let (r, mut qp, p) = pi_rig("size=1M,lba=512,ms=8,mset=ext,pi=1");
    let (mut src, mut md) = buffers(&r, &p, 2, 1);
    let opts = io_opts(IoFlags::PRCHK, &md, 0xffff);
    pi::generate(&p, 0, &opts, src.mem(), None).unwrap();
    corrupt(&p, &mut src, &mut md, 0, PiCheck::Guard);
    write(&mut qp, 0, 2, &src, &opts).unwrap();
    read(&mut qp, 0, 2, &src, &opts).unwrap();
    // Type 3: the reference tag must be all ones as well.
    let (r, mut qp, p) = pi_rig("size=1M,lba=512,ms=8,mset=ext,pi=3");
    let (mut src, mut md) = buffers(&r, &p, 2, 1);
    let mut opts = io_opts(p.checks(), &md, 0xffff);
    opts.ref_tag = Some(0x1234);
    pi::generate(&p, 0, &opts, src.mem(), None).unwrap();
    corrupt(&p, &mut src, &mut md, 0, PiCheck::Guard);
    let e = write(&mut qp, 0, 2, &src, &opts).unwrap_err();
    assert!(
        matches!(
            e,
            Error::EndToEnd {
                check: PiCheck::Guard,
                lba: Some(0),
                ..
            }
        ),
        "{e:?}"
    );
    opts.ref_tag = Some(0xffff_ffff);
    pi::generate(&p, 0, &opts, src.mem(), None).unwrap();
    corrupt(&p, &mut src, &mut md, 0, PiCheck::Guard);
    write(&mut qp, 0, 2, &src, &opts).unwrap();
}

#[test]
fn pract_inserts_the_tuple_where_pil_says_and_keeps_the_other_metadata() {
    for f in [
        "lba=512,ms=16,mset=ext,pi=1,pil=first",
        "lba=512,ms=16,mset=ext,pi=1,pil=last",
        "lba=512,ms=64,mset=ext,pi=2,pil=first",
        "lba=4096,ms=64,mset=sep,pi=1,pil=last",
        "lba=512,ms=64,mset=ext,pi=1,pil=first,guard=crc64",
        "lba=512,ms=64,mset=sep,pi=3,pil=last,guard=crc64",
    ] {
        let (r, mut qp, p) = pi_rig(&format!("size=1M,{f}"));
        assert!(!p.is_pi_only());
        let (src, src_md) = buffers(&r, &p, 4, 21);
        let mut opts = io_opts(IoFlags::PRACT | p.checks(), &src_md, 0x55aa);
        if p.pi_type == ProtectionType::Type3 {
            opts.ref_tag = Some(0x77);
        }
        write(&mut qp, 60, 4, &src, &opts).unwrap_or_else(|e| panic!("{f}: {e}"));
        // Read back as plain metadata: the controller's tuples verify, the bytes beside
        // them are the host's.
        let (dst, dst_md) = buffers(&r, &p, 4, 0);
        let plain = io_opts(IoFlags::empty(), &dst_md, 0);
        read(&mut qp, 60, 4, &dst, &plain).unwrap();
        let check = IoOptions {
            flags: IoFlags::PRCHK,
            ..opts
        };
        pi::verify(&p, 60, &check, dst.mem(), dst_md.as_ref().map(|m| m.mem()))
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        let (a, b) = (contents(&src), contents(&dst));
        let (am, bm) = match (&src_md, &dst_md) {
            (Some(x), Some(y)) => (contents(x), contents(y)),
            _ => (a.clone(), b.clone()),
        };
        for i in 0..4 {
            let (d, m, t) = offsets(&p, i);
            let ds = p.data_size as usize;
            assert_eq!(a[d..d + ds], b[d..d + ds], "{f}");
            let ms = usize::from(p.metadata_size);
            for k in m..m + ms {
                if !(t..t + p.tuple_size()).contains(&k) {
                    assert_eq!(am[k], bm[k], "{f}: metadata byte {} of block {i}", k - m);
                }
            }
        }
        // PRACT on the read checks and passes the tuples through (metadata is larger
        // than the tuple).
        read(
            &mut qp,
            60,
            4,
            &dst,
            &io_opts(IoFlags::PRACT | p.checks(), &dst_md, 0x55aa).with_ref(opts.ref_tag),
        )
        .unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

trait WithRef {
    fn with_ref(self, r: Option<u64>) -> Self;
}

impl WithRef for IoOptions {
    fn with_ref(self, ref_tag: Option<u64>) -> Self {
        IoOptions { ref_tag, ..self }
    }
}

#[test]
fn pract_on_a_16_byte_tuple_that_is_the_whole_metadata_moves_data_only() {
    for mset in ["ext", "sep"] {
        let (r, mut qp, p) = pi_rig(&format!(
            "size=1M,lba=512,ms=16,mset={mset},pi=2,guard=crc64"
        ));
        assert!(p.is_pi_only() && p.tuple_size() == 16);
        let src = patterned(&r.ctrl, 4 * 512, 31);
        let opts = IoOptions {
            flags: IoFlags::PRACT | IoFlags::PRCHK,
            ref_tag: Some(0x1_0000_0000),
            ..Default::default()
        };
        write(&mut qp, 4, 4, &src, &opts).unwrap();
        let dst = r.ctrl.allocator().alloc(4 * 512, 4096).unwrap();
        read(&mut qp, 4, 4, &dst, &opts).unwrap();
        assert_eq!(contents(&dst), contents(&src), "{mset}");
        // A wrong initial reference tag fails the read's check at its first block.
        let e = read(
            &mut qp,
            4,
            4,
            &dst,
            &IoOptions {
                ref_tag: Some(5),
                ..opts
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::EndToEnd {
                    check: PiCheck::ReferenceTag,
                    lba: Some(4),
                    ..
                }
            ),
            "{mset}: {e:?}"
        );
    }
}

#[test]
fn the_initial_reference_tag_defaults_to_the_lba_for_types_1_and_2_and_can_be_overridden() {
    let (r, mut qp, p) = pi_rig("size=1M,lba=512,ms=8,mset=ext,pi=2");
    let src = patterned(&r.ctrl, 2 * 512, 4);
    let ext = r.ctrl.allocator().alloc(2 * 520, 4096).unwrap();
    for (given, first) in [(None, 300u32), (Some(0x9000), 0x9000)] {
        let opts = IoOptions {
            flags: IoFlags::PRACT,
            ref_tag: given,
            ..Default::default()
        };
        write(&mut qp, 300, 2, &src, &opts).unwrap();
        read(&mut qp, 300, 2, &ext, &IoOptions::default()).unwrap();
        let mut tag = [0u8; 4];
        for i in 0..2u32 {
            ext.read(i as usize * 520 + 516, &mut tag).unwrap();
            assert_eq!(u32::from_be_bytes(tag), first + i);
        }
        let check = IoOptions {
            flags: IoFlags::PRCHK,
            ..opts
        };
        pi::verify(&p, 300, &check, ext.mem(), None).unwrap();
    }
}

#[test]
fn the_namespace_reports_its_protection_layout() {
    let r = rig("size=1M,lba=4096,ms=64,mset=sep,pi=3,pil=first,guard=crc64");
    let p = r.ctrl.namespace(1).unwrap().protection().unwrap().unwrap();
    assert_eq!(p.pi_type, ProtectionType::Type3);
    assert_eq!(p.guard, PiFormat::Guard64);
    assert_eq!(p.location, PiLocation::First);
    assert_eq!((p.tuple_size(), p.tuple_offset()), (16, 0));
    assert_eq!(p.ref_tag_bits(), 48);
    assert_eq!(p.placement, MetadataPlacement::Separate);
    assert!(r.ctrl.namespace(1).unwrap().nvm.is_some());
    let plain = rig("size=1M,lba=512,ms=8");
    assert_eq!(plain.ctrl.namespace(1).unwrap().protection().unwrap(), None);
}

#[test]
fn type_3_reference_tag_checks_and_a_type_1_tag_off_the_lba_are_invalid() {
    // As on QEMU's controller: type 3 defines no reference tag to check, and type 1's
    // initial reference tag is the LBA's; both are Invalid Protection Information
    // before anything is stored.
    let invalid = |e: &Error| {
        e.status()
            .map(|s| (s.sct() as u8, s.sc()))
            .filter(|&c| c == (1, 0x81))
            .is_some()
    };
    let (r, mut qp, p) = pi_rig("size=1M,lba=512,ms=8,mset=ext,pi=3");
    assert!(!p.checks().contains(IoFlags::PRCHK_REF));
    let (src, md) = buffers(&r, &p, 2, 1);
    let opts = io_opts(IoFlags::PRCHK, &md, 0x1234);
    pi::generate(&p, 4, &opts, src.mem(), None).unwrap();
    let e = write(&mut qp, 4, 2, &src, &opts).unwrap_err();
    assert!(invalid(&e), "{e:?}");
    let e = read(&mut qp, 4, 2, &src, &opts).unwrap_err();
    assert!(invalid(&e), "{e:?}");
    write(&mut qp, 4, 2, &src, &io_opts(p.checks(), &md, 0x1234)).unwrap();

    let (r, mut qp, p) = pi_rig("size=1M,lba=512,ms=8,mset=ext,pi=1");
    assert_eq!(p.checks(), IoFlags::PRCHK);
    let (src, md) = buffers(&r, &p, 2, 1);
    let mut opts = io_opts(IoFlags::PRCHK, &md, 0x1234);
    opts.ref_tag = Some(5);
    pi::generate(&p, 4, &opts, src.mem(), None).unwrap();
    let e = write(&mut qp, 4, 2, &src, &opts).unwrap_err();
    assert!(invalid(&e), "{e:?}");
    assert!(e.status().unwrap().dnr(), "{e:?}");
    // Without the reference tag check the caller's tag is taken as it is.
    opts.flags = IoFlags::PRCHK_GUARD | IoFlags::PRCHK_APP;
    write(&mut qp, 4, 2, &src, &opts).unwrap();
}
