//! Property tests: every encoder and decoder pair round-trips, and decoding
//! arbitrary (untrusted) bytes never panics.

use nvme_spec::admin::{CreateIoCq, CreateIoSq, GetLogPage, Identify, QueuePriority, SetFeatures};
use nvme_spec::features::FeatureId;
use nvme_spec::identify::{encode_namespace_list, parse_namespace_list, Cns};
use nvme_spec::log::LogPageId;
use nvme_spec::registers::{
    cq_head_doorbell, decode_doorbell, sq_tail_doorbell, Doorbell, ShutdownNotification,
};
use nvme_spec::{
    nvm, Cc, CompletionEntry, ErrorLogEntry, IdentifyController, IdentifyNamespace, SmartLog,
    Status, SubmissionEntry,
};
use proptest::prelude::*;

fn page(len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), len)
}

proptest! {
    #[test]
    fn cc_fields_round_trip(
        en: bool,
        css in 0u8..8,
        mps in 0u8..16,
        ams in 0u8..8,
        shn in 0u8..4,
        iosqes in 0u8..16,
        iocqes in 0u8..16,
    ) {
        let cc = Cc::new()
            .with_en(en)
            .with_css(css)
            .with_mps(mps)
            .with_ams(ams)
            .with_shn(ShutdownNotification::from_bits(shn))
            .with_iosqes(iosqes)
            .with_iocqes(iocqes);
        let back = Cc::from(u32::from(cc));
        prop_assert_eq!(back.en(), en);
        prop_assert_eq!(back.css(), css);
        prop_assert_eq!(back.mps(), mps);
        prop_assert_eq!(back.ams(), ams);
        prop_assert_eq!(back.shn().into_bits(), shn);
        prop_assert_eq!(back.iosqes(), iosqes);
        prop_assert_eq!(back.iocqes(), iocqes);
    }

    #[test]
    fn doorbell_offsets_decode_to_their_queue(qid: u16, dstrd in 0u8..16) {
        prop_assert_eq!(decode_doorbell(sq_tail_doorbell(qid, dstrd), dstrd), Some(Doorbell::SqTail(qid)));
        prop_assert_eq!(decode_doorbell(cq_head_doorbell(qid, dstrd), dstrd), Some(Doorbell::CqHead(qid)));
    }

    #[test]
    fn queue_entries_round_trip_through_bytes(sqe_bytes in page(64), cqe_bytes in page(16)) {
        let sqe_arr: [u8; 64] = sqe_bytes.try_into().unwrap();
        prop_assert_eq!(SubmissionEntry::from_bytes(&sqe_arr).to_bytes(), sqe_arr);
        let cqe_arr: [u8; 16] = cqe_bytes.try_into().unwrap();
        let cqe = CompletionEntry::from_bytes(&cqe_arr);
        prop_assert_eq!(cqe.to_bytes(), cqe_arr);
        prop_assert_eq!(cqe.status.raw(), u16::from_le_bytes([cqe_arr[14], cqe_arr[15]]));
        prop_assert_eq!(cqe.phase(), cqe_arr[14] & 1 == 1);
    }

    #[test]
    fn status_round_trips_and_prints(raw: u16) {
        let s = Status::from_raw(raw);
        prop_assert_eq!(s.raw(), raw);
        prop_assert!(!s.to_string().is_empty());
    }

    #[test]
    fn lba_commands_decode_to_what_was_built(
        nsid: u32,
        slba: u64,
        blocks in 1u32..=65536,
        fua: bool,
        lr: bool,
        deac: bool,
    ) {
        for build in [nvm::read, nvm::write, nvm::compare, nvm::verify, nvm::write_zeroes] {
            let sqe = build(nsid, slba, blocks)
                .unwrap()
                .with_fua(fua)
                .with_limited_retry(lr)
                .with_deac(deac);
            prop_assert_eq!(sqe.nsid, nsid);
            prop_assert_eq!(sqe.slba(), slba);
            prop_assert_eq!(sqe.block_count(), blocks);
            prop_assert_eq!(sqe.fua(), fua);
            prop_assert_eq!(sqe.limited_retry(), lr);
            prop_assert_eq!(sqe.deac(), deac);
        }
    }

    #[test]
    fn dsm_range_count_round_trips(ranges in 1usize..=256) {
        let sqe = nvm::deallocate(1, ranges).unwrap();
        prop_assert_eq!(sqe.dsm_range_count(), ranges);
        prop_assert!(sqe.dsm_attributes().ad());
    }

    #[test]
    fn queue_creation_round_trips(
        qid: u16,
        cqid: u16,
        entries in 2u32..=65536,
        prp1: u64,
        contiguous: bool,
        vector: Option<u16>,
        prio in 0u8..4,
    ) {
        let cq = CreateIoCq { qid, entries, prp1, contiguous, interrupt_vector: vector };
        prop_assert_eq!(CreateIoCq::from_sqe(&cq.to_sqe().unwrap()), cq);
        let sq = CreateIoSq {
            qid,
            entries,
            prp1,
            contiguous,
            cqid,
            priority: QueuePriority::from_bits(prio),
        };
        prop_assert_eq!(CreateIoSq::from_sqe(&sq.to_sqe().unwrap()), sq);
    }

    #[test]
    fn get_log_page_round_trips(
        lid: u8,
        nsid: u32,
        dwords in 1u64..=(1 << 32),
        offset_dwords in 0u64..(1 << 62),
        rae: bool,
        lsp in 0u8..128,
    ) {
        let cmd = GetLogPage {
            lid: LogPageId(lid),
            nsid,
            len_bytes: dwords * 4,
            offset: offset_dwords * 4,
            rae,
            lsp,
        };
        prop_assert_eq!(GetLogPage::from_sqe(&cmd.to_sqe().unwrap()), cmd);
    }

    #[test]
    fn identify_and_set_features_round_trip(cns: u8, nsid: u32, cntid: u16, csi: u8, fid: u8, value: u32, save: bool) {
        let id = Identify { cns: Cns(cns), nsid, cntid, csi };
        prop_assert_eq!(Identify::from_sqe(&id.to_sqe()), id);
        let sf = SetFeatures { fid: FeatureId(fid), nsid, save, cdw11: value };
        prop_assert_eq!(SetFeatures::from_sqe(&sf.to_sqe()), sf);
    }

    #[test]
    fn identify_pages_round_trip_and_helpers_never_panic(bytes in page(4096), mps in 4096u64..=(1 << 27)) {
        let ctrl = IdentifyController::parse(&bytes).unwrap();
        prop_assert_eq!(&ctrl.encode()[..], &bytes[..]);
        let _ = (ctrl.serial_number(), ctrl.model_number(), ctrl.firmware_revision(), ctrl.subsystem_nqn());
        let _ = ctrl.max_transfer_bytes(mps);
        let ns = IdentifyNamespace::parse(&bytes).unwrap();
        prop_assert_eq!(&ns.encode()[..], &bytes[..]);
        let _ = (ns.lba_size(), ns.metadata_size(), ns.capacity_bytes(), ns.lba_formats().len());
        let _ = parse_namespace_list(&bytes);
    }

    #[test]
    fn log_pages_round_trip(smart in page(512), entry in page(64)) {
        prop_assert_eq!(&SmartLog::parse(&smart).unwrap().encode()[..], &smart[..]);
        prop_assert_eq!(&ErrorLogEntry::parse(&entry).unwrap().encode()[..], &entry[..]);
    }

    #[test]
    fn namespace_lists_round_trip(set in proptest::collection::btree_set(1u32..u32::MAX, 0..=1024)) {
        let nsids: Vec<u32> = set.into_iter().collect();
        let page = encode_namespace_list(&nsids).unwrap();
        prop_assert_eq!(parse_namespace_list(&page).unwrap(), nsids);
    }
}
