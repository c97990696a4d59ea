//! The FUA-or-flush decision for DSYNC and SYNC writes, and what survives a
//! power cut.

use super::*;

#[test]
fn dsync_overwrite_uses_fua_and_no_flush() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    let mut it = iter(&dev, 8192, 2);
    assert_eq!(
        f.write(&mut dio, &mut dsync(), &mut it, DioFlags::empty()),
        Ok(8192)
    );
    let base = (1 << 20) / 512;
    assert_eq!(dev.log(), vec![fua_write_cmd(base, 16)]);
    assert_eq!(dio.stats().fua_commands, 1);
    assert_eq!(dio.stats().flush_commands, 0);
}

#[test]
fn sync_write_uses_no_fua_and_flushes_before_success() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    let mut it = iter(&dev, 8192, 2);
    let mut io = Kiocb::new(0, KiocbFlags::DSYNC | KiocbFlags::SYNC);
    assert_eq!(
        f.write(&mut dio, &mut io, &mut it, DioFlags::empty()),
        Ok(8192)
    );
    let base = (1 << 20) / 512;
    assert_eq!(dev.log(), vec![write_cmd(base, 16), Logged::Flush]);
}

#[test]
fn dsync_write_needing_metadata_is_not_fua_and_flushes() {
    // New blocks, copy-on-write blocks and size-changing writes all need a flush.
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    let clone = f.fs().create();
    clone.clone_range(&f, 0, 0, 4096).unwrap();
    let cases: [(&FileHandle, u64); 3] = [(&f, 65536), (&clone, 0), (&f, 16384)];
    for (file, pos) in cases {
        dev.clear_log();
        let mut it = iter(&dev, 4096, 3);
        let mut io = Kiocb::new(pos, KiocbFlags::DSYNC);
        file.write(&mut dio, &mut io, &mut it, DioFlags::empty())
            .unwrap();
        let log = dev.log();
        assert!(
            log.iter()
                .all(|l| !matches!(l, Logged::Write { fua: true, .. })),
            "{pos}: {log:?}"
        );
        assert_eq!(log.last(), Some(&Logged::Flush), "{pos}");
    }
}

#[test]
fn plain_write_has_no_fua_and_no_flush() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    let mut it = iter(&dev, 4096, 2);
    f.write(&mut dio, &mut Kiocb::default(), &mut it, DioFlags::empty())
        .unwrap();
    assert_eq!(dev.log(), vec![write_cmd(2048, 8)]);
}

#[test]
fn without_volatile_write_cache_no_flush_is_ever_issued() {
    let (dev, mut dio, _fs, f) = overwrite_setup(false);
    for (pos, flags) in [
        (0, KiocbFlags::DSYNC),
        (0, KiocbFlags::DSYNC | KiocbFlags::SYNC),
        (1 << 20, KiocbFlags::DSYNC),
    ] {
        let mut it = iter(&dev, 4096, 2);
        f.write(
            &mut dio,
            &mut Kiocb::new(pos, flags),
            &mut it,
            DioFlags::empty(),
        )
        .unwrap();
    }
    assert!(!dev.log().contains(&Logged::Flush));
    assert_eq!(dio.stats().flush_commands, 0);
    // The DSYNC overwrite still went out as write-through.
    assert_eq!(dev.log()[0], fua_write_cmd(2048, 8));
}

#[test]
fn dsync_writes_survive_a_power_cut_and_plain_writes_may_not() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    {
        let mut st = dev.st();
        st.durable = st.data.clone();
    }
    let mut a = iter(&dev, 4096, 0xa1);
    f.write(
        &mut dio,
        &mut Kiocb::new(0, KiocbFlags::DSYNC),
        &mut a,
        DioFlags::empty(),
    )
    .unwrap();
    let mut b = iter(&dev, 4096, 0xb2);
    f.write(&mut dio, &mut at(4096), &mut b, DioFlags::empty())
        .unwrap();
    let mut c = iter(&dev, 4096, 0xc3);
    f.write(
        &mut dio,
        &mut Kiocb::new(8192, KiocbFlags::SYNC),
        &mut c,
        DioFlags::empty(),
    )
    .unwrap();
    // The SYNC write's flush also made the plain write durable; write another.
    let mut d = iter(&dev, 4096, 0xd4);
    f.write(&mut dio, &mut at(12288), &mut d, DioFlags::empty())
        .unwrap();
    dev.power_cut();
    let media = dev.media(1 << 20, 16384);
    assert!(media[..4096].iter().all(|&x| x == 0xa1));
    assert!(media[8192..12288].iter().all(|&x| x == 0xc3));
    assert!(media[12288..].iter().all(|&x| x == 1), "plain write lost");
}
