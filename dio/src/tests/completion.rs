//! Completion: polling or sleeping, asynchronous requests and their callbacks,
//! tags, slots and many requests in flight.

use super::*;

#[test]
fn hipri_polls_only_a_request_that_became_a_single_command() {
    let (dev, mut dio, raw) = raw_setup();
    let mut it = iter(&dev, 4096, 1);
    let mut io = Kiocb::new(0, KiocbFlags::HIPRI);
    dio.read(&mut io, &mut it, &raw, &NoHooks).unwrap();
    assert_eq!(dio.queue().waits, 0);
    assert!(io.flags.contains(KiocbFlags::HIPRI));
    dio.set_max_command_bytes(2048);
    let mut it = iter(&dev, 4096, 1);
    let mut io = Kiocb::new(0, KiocbFlags::HIPRI);
    dio.read(&mut io, &mut it, &raw, &NoHooks).unwrap();
    assert!(dio.queue().waits > 0);
    assert!(!io.flags.contains(KiocbFlags::HIPRI));
}

#[test]
fn synchronous_caller_without_hipri_sleeps_on_the_interrupt() {
    let (dev, mut dio, raw) = raw_setup();
    let mut it = iter(&dev, 4096, 1);
    dio.read(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
        .unwrap();
    assert_eq!(dio.queue().waits, 1);
}

#[test]
fn asynchronous_request_is_queued_and_completes_through_the_callback() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    dio.queue_mut().hold = true;
    let done = Arc::new(Mutex::new(None));
    let d2 = done.clone();
    let it = iter(&dev, 4096, 6);
    let r = dio.rw_async(
        Request::write().done_before(100),
        Kiocb::new(16384, KiocbFlags::DSYNC),
        it,
        &f,
        Arc::new(f.clone()),
        Box::new(move |d| *d2.lock().unwrap() = Some((d.iocb.pos, d.result))),
    );
    assert!(matches!(r, Submitted::Queued));
    assert_eq!(dio.in_flight(), 1);
    assert_eq!(f.size(), 16384); // end_io has not run
    assert!(done.lock().unwrap().is_none());
    dio.queue_mut().hold = false;
    drain(&mut dio);
    assert_eq!(*done.lock().unwrap(), Some((20480, Ok(4196))));
    assert_eq!(f.size(), 20480);
    // Size-changing DSYNC write: no FUA, flushed before the callback.
    assert_eq!(dev.log().last(), Some(&Logged::Flush));
}

#[test]
fn force_wait_completes_an_asynchronous_request_before_returning() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = Arc::new(RawNamespace::new(dio.caps()));
    let it = iter(&dev, 4096, 6);
    let r = dio.rw_async(
        Request::write().flags(DioFlags::FORCE_WAIT),
        Kiocb::default(),
        it,
        &*raw,
        raw.clone(),
        Box::new(|_| panic!("callback must not run")),
    );
    let Submitted::Done(d) = r else {
        panic!("queued")
    };
    assert_eq!(d.result, Ok(4096));
    assert_eq!(d.iocb.pos, 4096);
}

#[test]
fn completion_with_an_unknown_tag_is_counted_and_ignored() {
    let (dev, mut dio, raw) = raw_setup();
    dio.queue_mut()
        .submit(&IoCommand::Flush, 0xdead_beef_0000_0003)
        .unwrap();
    dio.poll_completions().unwrap();
    assert_eq!(dio.stray_completions(), 1);
    let mut it = iter(&dev, 4096, 1);
    assert_eq!(
        dio.read(&mut Kiocb::default(), &mut it, &raw, &NoHooks),
        Ok(4096)
    );
}

#[test]
fn done_before_is_added_and_the_position_advances() {
    let (dev, mut dio, raw) = raw_setup();
    let mut it = iter(&dev, 4096, 1);
    let mut io = at(8192);
    let r = dio.rw(
        Request::write().done_before(512),
        &mut io,
        &mut it,
        &raw,
        &NoHooks,
    );
    assert_eq!(r, Ok(4608));
    assert_eq!(io.pos, 12288);
}

#[test]
fn synchronous_read_runs_while_every_slot_holds_an_asynchronous_request() {
    let dev = FakeDev::new(caps(512, false, true));
    let mut dio: TDio = Dio::new(dev.queue(), None, 1).unwrap();
    let raw = Arc::new(RawNamespace::new(dio.caps()));
    dev.set_media(8192, &[0x5a; 4096]);
    dio.queue_mut().hold = true;
    let done = Arc::new(Mutex::new(None));
    let d2 = done.clone();
    let r = dio.rw_async(
        Request::write(),
        Kiocb::default(),
        iter(&dev, 4096, 6),
        &*raw,
        raw.clone(),
        Box::new(move |d| *d2.lock().unwrap() = Some(d.result)),
    );
    assert!(matches!(r, Submitted::Queued));
    assert_eq!(dio.in_flight(), 1);
    // The only pool slot is taken: a second asynchronous request is refused.
    let busy = dio.rw_async(
        Request::write(),
        at(4096),
        iter(&dev, 4096, 7),
        &*raw,
        raw.clone(),
        Box::new(|_| {}),
    );
    assert!(matches!(
        busy,
        Submitted::Done(AsyncDone {
            result: Err(DioError::Busy { slots: 1 }),
            ..
        })
    ));
    dio.queue_mut().hold = false;
    // A synchronous single-command read still runs, and the asynchronous
    // completion reaped while it waits finishes its own request.
    let mut it = iter(&dev, 4096, 0);
    let mut io = Kiocb::new(8192, KiocbFlags::HIPRI);
    assert_eq!(dio.read(&mut io, &mut it, &*raw, &NoHooks), Ok(4096));
    assert_eq!(bytes(&it), vec![0x5a; 4096]);
    assert_eq!(io.pos, 12288);
    drain(&mut dio);
    assert_eq!(*done.lock().unwrap(), Some(Ok(4096)));
    assert_eq!(dev.media(0, 4096), vec![6; 4096]);
}

#[test]
fn async_raw_write_crossing_the_end_is_cut_and_hands_back_the_whole_iterator() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = Arc::new(RawNamespace::new(dio.caps()));
    let end = raw.size();
    let done = Arc::new(Mutex::new(None));
    let d = done.clone();
    let sub = dio.rw_async(
        Request::write(),
        at(end - 4096),
        iter(&dev, 8192, 3),
        &*raw,
        raw.clone(),
        Box::new(move |a: AsyncDone<FakeBuf>| {
            *d.lock().unwrap() = Some((a.result, a.iocb.pos, a.iter.count()));
        }),
    );
    let got = match sub {
        Submitted::Done(a) => Some((a.result, a.iocb.pos, a.iter.count())),
        Submitted::Queued => {
            drain(&mut dio);
            done.lock().unwrap().take()
        }
    };
    assert_eq!(got, Some((Ok(4096), end, 4096)));
    assert_eq!(dev.log(), write_of_the_last_4k(end));
    // At the end: ENOSPC at once.
    let sub = dio.rw_async(
        Request::write(),
        at(end),
        iter(&dev, 4096, 3),
        &*raw,
        raw.clone(),
        Box::new(|_| panic!("a request refused at submission has no callback")),
    );
    let Submitted::Done(a) = sub else {
        panic!("a write at the end must fail at submission")
    };
    assert_eq!(a.result.unwrap_err().errno(), libc::ENOSPC);
}

#[test]
fn many_asynchronous_writes_in_flight_leave_exactly_the_data_written() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = Arc::new(RawNamespace::new(dio.caps()));
    let mut model = vec![0u8; 1 << 20];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let errors = Arc::new(Mutex::new(0));
    for round in 0..8 {
        dio.queue_mut().hold = true;
        // Non-overlapping slots per round so the model is exact.
        let mut used = std::collections::HashSet::new();
        for _ in 0..32 {
            let slot = rnd() % 128;
            if !used.insert(slot) {
                continue;
            }
            let len = ((rnd() % 16) + 1) as usize * 512;
            let pos = slot * 8192;
            let byte = (rnd() % 250) as u8 + 1;
            model[pos as usize..pos as usize + len].fill(byte);
            let errs = errors.clone();
            let r = dio.rw_async(
                Request::write(),
                Kiocb::new(
                    pos,
                    if round % 2 == 0 {
                        KiocbFlags::DSYNC
                    } else {
                        KiocbFlags::empty()
                    },
                ),
                iter(&dev, len, byte),
                &*raw,
                raw.clone(),
                Box::new(move |d| {
                    if d.result != Ok(d.iter.buffers()[0].len()) {
                        *errs.lock().unwrap() += 1;
                    }
                }),
            );
            assert!(matches!(r, Submitted::Queued));
        }
        assert!(dio.in_flight() > 10);
        dio.queue_mut().hold = false;
        drain(&mut dio);
    }
    assert_eq!(*errors.lock().unwrap(), 0);
    let mut r = iter(&dev, 1 << 20, 0);
    dio.read(&mut Kiocb::default(), &mut r, &*raw, &NoHooks)
        .unwrap();
    assert!(bytes(&r) == model);
}

#[test]
fn generic_391_two_threads_writing_non_overlapping_ranges_of_one_extent_keep_both() {
    let dev = FakeDev::new(caps(512, true, true));
    let (_fs, f) = fs_file(4096);
    f.preallocate(0, 1 << 20).unwrap();
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let (dev, f) = (dev.clone(), f.clone());
            s.spawn(move || {
                let mut dio: TDio = Dio::new(dev.queue(), None, 8).unwrap();
                for i in 0..64u64 {
                    let pos = (i * 2 + u64::from(t)) * 8192;
                    let mut it = iter(&dev, 8192, t + 1);
                    let mut io = Kiocb::new(pos, KiocbFlags::DSYNC);
                    assert_eq!(
                        f.write(&mut dio, &mut io, &mut it, DioFlags::empty()),
                        Ok(8192)
                    );
                }
            });
        }
    });
    let (_, mut dio) = (0, Dio::new(dev.queue(), None, 8).unwrap());
    let mut r = iter(&dev, 1 << 20, 0);
    f.read(&mut dio, &mut Kiocb::default(), &mut r).unwrap();
    let got = bytes(&r);
    for (i, chunk) in got.chunks(8192).enumerate() {
        assert!(chunk.iter().all(|&b| b == (i % 2) as u8 + 1), "chunk {i}");
    }
}
