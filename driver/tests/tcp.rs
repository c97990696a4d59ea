//! The NVMe/TCP transport against the emulated controller served over a loopback
//! socket (`nvme_emu::tcp::TcpTarget`): bring-up, data both ways through in-capsule
//! data, R2T/H2CData and C2HData, digests, several queue pairs, and every failure on
//! the wire as a typed error or a recovery, never a hang.

use std::time::{Duration, Instant};

use nvme::spec::tcp::FatalErrorStatus;
use nvme::{AnyTransport, Controller, Error, IoFlags, Options, Transport};
use nvme_emu::tcp::{MalformedPdu, TcpTarget, TcpTargetConfig};

fn target(emu: &str) -> TcpTarget {
    target_with(TcpTargetConfig::with_emu(emu).unwrap())
}

fn target_with(config: TcpTargetConfig) -> TcpTarget {
    TcpTarget::start(config).expect("the loopback target starts")
}

fn name(t: &TcpTarget, extra: &str) -> String {
    format!("tcp://127.0.0.1:{}/{}{extra}", t.port(), t.subsystem_nqn())
}

fn options() -> Options {
    Options {
        admin_timeout: Duration::from_secs(3),
        io_timeout: Duration::from_secs(2),
        abort_timeout: Duration::from_millis(500),
        shutdown_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

fn open(t: &TcpTarget, extra: &str) -> Controller<AnyTransport> {
    nvme::open(&name(t, extra), options()).expect("the controller comes up over TCP")
}

/// A recognisable pattern for `len` bytes starting at byte `seed`.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(31).wrapping_add(seed * 7) % 251) as u8)
        .collect()
}

/// Writes `pattern(bytes, seed)` at `lba` and reads it back.
fn round_trip(ctrl: &Controller<AnyTransport>, lba: u64, bytes: usize, seed: u64) {
    let mut q = ctrl
        .create_io_queue_pair(Default::default())
        .expect("an I/O queue pair");
    let alloc = ctrl.allocator();
    let data = pattern(bytes, seed);
    let mut wbuf = alloc.alloc(bytes, 4096).unwrap();
    wbuf.write(0, &data).unwrap();
    let blocks = (bytes / 512) as u32;
    q.write_sync(1, lba, blocks, &wbuf, IoFlags::empty())
        .expect("write over TCP");
    let mut rbuf = alloc.alloc(bytes, 4096).unwrap();
    q.read_sync(1, lba, blocks, &mut rbuf)
        .expect("read over TCP");
    let mut got = vec![0u8; bytes];
    rbuf.read(0, &mut got).unwrap();
    assert!(got == data, "{bytes} bytes at LBA {lba} read back differ");
}

#[test]
fn identify_and_data_through_every_transfer_path() {
    let t = target("emu:size=64M");
    let ctrl = open(&t, "");
    let id = ctrl.identify_controller();
    let subnqn = String::from_utf8_lossy(&id.subnqn)
        .trim_end_matches('\0')
        .to_string();
    assert_eq!(subnqn, t.subsystem_nqn());
    assert_eq!(id.cntrltype, 1, "an I/O controller");
    assert!(
        id.fabrics_fields().ioccsz >= 4,
        "IOCCSZ {}",
        id.fabrics_fields().ioccsz
    );
    assert_eq!(ctrl.transport().name(), name(&t, ""));
    // 4 KiB in-capsule, 64 KiB by R2T and H2CData, 1 MiB read back in several C2HData
    // PDUs (the target cuts them at MAXH2CDATA).
    round_trip(&ctrl, 0, 4096, 1);
    round_trip(&ctrl, 100, 64 << 10, 2);
    round_trip(&ctrl, 4096, 1 << 20, 3);
    // Flush and Dataset Management (its range list goes as in-capsule data).
    let mut q = ctrl.create_io_queue_pair(Default::default()).unwrap();
    q.flush_sync(1).expect("flush over TCP");
    q.submit_deallocate(1, &[(0, 8)], 7).unwrap();
    let mut done = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while done.is_empty() && Instant::now() < end {
        q.process_completions(8, |c, r| done.push((c, r.map_err(|e| e.to_string()))));
    }
    assert_eq!(done, vec![(7, Ok(()))]);
}

#[test]
fn digests_on_both_ways_carry_data_intact() {
    let t = target("emu:size=16M");
    let ctrl = open(&t, ",hdgst=on,ddgst=on");
    round_trip(&ctrl, 8, 4096, 4);
    round_trip(&ctrl, 64, 256 << 10, 5);
}

#[test]
fn reads_completed_by_the_c2h_success_flag() {
    let mut config = TcpTargetConfig::with_emu("emu:size=16M").unwrap();
    config.c2h_success = true;
    let t = target_with(config);
    let ctrl = open(&t, ",disable_sqflow=on");
    round_trip(&ctrl, 0, 4096, 21);
    round_trip(&ctrl, 512, 512 << 10, 22);
    // A write still ends with a Response Capsule; both paths ran on one queue.
    round_trip(&ctrl, 64, 8192, 23);
}

#[test]
fn queue_pairs_in_threads_each_own_a_connection() {
    let t = target("emu:size=64M");
    let ctrl = open(&t, "");
    std::thread::scope(|s| {
        for i in 0..3u64 {
            let ctrl = &ctrl;
            s.spawn(move || {
                for k in 0..20 {
                    round_trip(ctrl, i * 10_000 + k * 64, 32 << 10, i * 100 + k);
                }
            });
        }
    });
    // The admin queue plus at least the three pairs were connected.
    assert!(t.connections() >= 1);
}

#[test]
fn connection_refused_is_a_typed_error_naming_the_target() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let start = Instant::now();
    let e = nvme::open(&format!("tcp://127.0.0.1:{port}/nqn.x:y"), options()).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(matches!(e, Error::TcpConnect { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("refused") && msg.contains(&format!("127.0.0.1:{port}")),
        "{msg}"
    );
}

#[test]
fn unknown_subsystem_and_host_not_allowed_are_refused_by_name() {
    let t = target("emu:size=4M");
    let e = nvme::open(
        &format!("tcp://127.0.0.1:{}/nqn.2026-12.io.nowhere:x", t.port()),
        options(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::ConnectRejected { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("no subsystem 'nqn.2026-12.io.nowhere:x'"),
        "{e}"
    );

    let mut config = TcpTargetConfig::with_emu("emu:size=4M").unwrap();
    config.allowed_hosts = vec!["nqn.2026-12.io.test:someone-else".into()];
    let t = target_with(config);
    let e = nvme::open(&name(&t, ",hostnqn=nqn.2026-12.io.test:me"), options()).unwrap_err();
    assert!(matches!(e, Error::ConnectRejected { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("nqn.2026-12.io.test:me") && msg.contains("not allowed"),
        "{msg}"
    );
    // The allowed host gets in.
    open(&t, ",hostnqn=nqn.2026-12.io.test:someone-else");
}

#[test]
fn bad_names_are_refused_before_any_connection() {
    for (n, why) in [
        ("tcp://127.0.0.1:0/nqn.x", "port"),
        ("tcp://127.0.0.1/nqn.x,kato=soon", "kato"),
        ("tcp://127.0.0.1", "discovery controller"),
    ] {
        let e = nvme::open(n, options()).unwrap_err();
        assert!(matches!(e, Error::BadTcpName { .. }), "{n}: {e:?}");
        assert!(e.to_string().contains(why), "{n}: {e}");
    }
}

/// A command's context and its result as text.
type Outcome = (u64, Result<(), String>);

/// Submits `n` 4 KiB writes of distinct patterns and collects every result.
fn write_burst(
    ctrl: &Controller<AnyTransport>,
    q: &mut nvme::IoQueuePair<AnyTransport>,
    n: u64,
    deadline: Duration,
) -> (Vec<nvme::DmaBuffer>, Vec<Outcome>) {
    let alloc = ctrl.allocator();
    let mut bufs = Vec::new();
    for i in 0..n {
        let mut b = alloc.alloc(4096, 4096).unwrap();
        b.write(0, &pattern(4096, 1000 + i)).unwrap();
        q.submit_write(1, i * 8, 8, &[b.as_segment()], IoFlags::empty(), i)
            .unwrap();
        bufs.push(b);
    }
    let mut results = Vec::new();
    let end = Instant::now() + deadline;
    while results.len() < n as usize && Instant::now() < end {
        q.process_completions(64, |c, r| results.push((c, r.map_err(|e| e.to_string()))));
    }
    (bufs, results)
}

fn read_back(ctrl: &Controller<AnyTransport>, n: u64) {
    let mut q = ctrl.create_io_queue_pair(Default::default()).unwrap();
    let mut rbuf = ctrl.allocator().alloc(4096, 4096).unwrap();
    for i in 0..n {
        q.read_sync(1, i * 8, 8, &mut rbuf).unwrap();
        let mut got = vec![0u8; 4096];
        rbuf.read(0, &mut got).unwrap();
        assert!(got == pattern(4096, 1000 + i), "block {i} lost its write");
    }
}

#[test]
fn a_dropped_connection_mid_io_reconnects_and_retries_every_command() {
    let t = target("emu:size=16M");
    let ctrl = open(&t, "");
    let mut q = ctrl.create_io_queue_pair(Default::default()).unwrap();
    t.faults().drop_after(q.qid(), 5);
    let (_bufs, results) = write_burst(&ctrl, &mut q, 20, Duration::from_secs(20));
    assert_eq!(results.len(), 20, "every command reported: {results:?}");
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    assert_eq!(t.faults().counts().dropped, 1);
    assert!(
        ctrl.transport().failure().unwrap().contains("closed"),
        "{:?}",
        ctrl.transport().failure()
    );
    drop(q);
    read_back(&ctrl, 20);
}

#[test]
fn malformed_pdus_and_digest_errors_end_the_connection_and_are_recovered_from() {
    for (fault, extra, expect) in [
        ("wrong type", "", "PDU type"),
        ("wrong hlen", "", "HLEN"),
        ("plen too large", "", "PLEN"),
        ("header digest", ",hdgst=on", "header digest"),
        ("data digest", ",ddgst=on", "data digest"),
        ("termination", "", "terminated"),
    ] {
        let t = target("emu:size=16M");
        let ctrl = open(&t, extra);
        let mut q = ctrl.create_io_queue_pair(Default::default()).unwrap();
        let qid = Some(q.qid());
        let f = t.faults();
        match fault {
            "wrong type" => f.malformed_response(qid, MalformedPdu::WrongType),
            "wrong hlen" => f.malformed_response(qid, MalformedPdu::WrongHlen),
            "plen too large" => f.malformed_response(qid, MalformedPdu::PlenTooLarge),
            "header digest" => f.corrupt_header_digest(qid),
            "data digest" => f.corrupt_data_digest(qid),
            _ => f.terminate(qid, FatalErrorStatus::INVALID_HEADER_FIELD),
        }
        // Reads: a data digest is corrupted on C2HData.
        let mut rbuf = ctrl.allocator().alloc(4096, 4096).unwrap();
        let start = Instant::now();
        q.read_sync(1, 0, 8, &mut rbuf)
            .unwrap_or_else(|e| panic!("{fault}: the read is retried after the reconnect: {e}"));
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{fault}: took {:?}",
            start.elapsed()
        );
        let why = ctrl.transport().failure().unwrap_or_default();
        assert!(why.contains(expect), "{fault}: failure says {why:?}");
        round_trip(&ctrl, 16, 8192, 9);
    }
}

#[test]
fn a_target_that_goes_away_fails_io_with_the_reason_and_no_hang() {
    let t = target("emu:size=16M");
    let ctrl = open(&t, "");
    let mut q = ctrl.create_io_queue_pair(Default::default()).unwrap();
    let f = t.faults();
    f.refuse_connections();
    f.drop_connections();
    let start = Instant::now();
    let (_bufs, results) = write_burst(&ctrl, &mut q, 8, Duration::from_secs(30));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(results.len(), 8, "every command reported");
    for (_, r) in &results {
        let e = r.as_ref().unwrap_err();
        assert!(e.contains("cannot connect to NVMe/TCP target"), "{e}");
    }
    let e = q.flush_sync(1).unwrap_err();
    assert!(e.to_string().contains("cannot connect"), "{e}");
}

#[test]
fn a_target_that_stops_answering_is_caught_by_keep_alive() {
    let t = target("emu:size=16M");
    let ctrl = nvme::open(
        &name(&t, ",kato=400"),
        Options {
            admin_timeout: Duration::from_millis(1500),
            ..options()
        },
    )
    .unwrap();
    let mut q = ctrl.create_io_queue_pair(Default::default()).unwrap();
    round_trip(&ctrl, 0, 4096, 11);
    // Idle: only Keep Alive can notice that the target went silent.
    t.faults().hang();
    let start = Instant::now();
    let mut why = None;
    while why.is_none() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
        why = ctrl.transport().failure();
    }
    let why = why.expect("the silence is noticed");
    assert!(
        why.starts_with("the admin queue") && why.contains("no answer to Keep Alive"),
        "failure: {why:?}"
    );
    // About KATO after the last answered Keep Alive, not at some longer timeout.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "noticed after {:?}",
        start.elapsed()
    );
    // The next command finds the controller unreachable (the reconnect got no ICResp)
    // and says why, within the bounded waits.
    let mut rbuf = ctrl.allocator().alloc(4096, 4096).unwrap();
    let e = q.read_sync(1, 0, 8, &mut rbuf).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    let msg = e.to_string();
    assert!(
        msg.contains("Keep Alive") && msg.contains("no ICResp"),
        "{msg}"
    );
}

#[test]
fn queue_commands_the_transport_answers_itself_check_their_fields() {
    use nvme::spec::SubmissionEntry;
    let t = target("emu:size=4M");
    let ctrl = open(&t, "");
    // Create I/O Completion Queue with QSIZE 65535 (65536 entries) and with QID 0.
    for (cdw10, sc) in [(0xffff_0005u32, 0x02u8), (0x001f_0000, 0x01)] {
        let mut sqe = SubmissionEntry::new(0x05);
        sqe.cdw10 = cdw10;
        sqe.prp1 = 0x1000;
        let e = ctrl.admin_command(sqe).unwrap_err();
        let status = e.status().expect("a status");
        assert_eq!((status.sc(), status.dnr()), (sc, true), "{e}");
    }
    // Doorbell Buffer Config has no meaning on a fabric.
    let e = ctrl.admin_command(SubmissionEntry::new(0x7c)).unwrap_err();
    assert_eq!(e.status().unwrap().sc(), 0x01, "{e}");
    // The controller is still usable.
    round_trip(&ctrl, 0, 4096, 31);
}

#[test]
fn discovery_lists_the_subsystem_at_its_port() {
    use nvme::transport::tcp::{discover, TcpName};
    let t = target("emu:size=4M");
    let name = TcpName::parse(&format!("tcp://127.0.0.1:{}", t.port())).unwrap();
    let log = discover(&name, Duration::from_secs(3)).expect("the discovery log");
    let e = log
        .entries
        .iter()
        .find(|e| e.subnqn == t.subsystem_nqn())
        .unwrap_or_else(|| panic!("the subsystem is listed: {log:?}"));
    assert_eq!(
        (e.trtype_name(), e.adrfam_name(), e.subtype_name()),
        ("tcp", "ipv4", "nvme subsystem")
    );
    assert_eq!(
        (e.traddr.as_str(), e.trsvcid.clone()),
        ("127.0.0.1", t.port().to_string())
    );
}
