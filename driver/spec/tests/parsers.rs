//! Every decoder of device-provided bytes, fed random and mutated input: it returns a
//! value or a typed error, never panics, and what it returns keeps its promises
//! (lists strictly increasing, counts bounded by the buffer, formats within range).

use nvme_spec::identify::{
    parse_namespace_list, Flbas, IdentifyNamespaceNvm, LbaFormat, NamespaceIds, QueueEntrySize,
    IDENTIFY_DATA_SIZE,
};
use nvme_spec::zns::{IdentifyControllerZns, IdentifyNamespaceZns, ZoneReport, ZoneReportHeader};
use nvme_spec::{
    Cap, CompletionEntry, ErrorLogEntry, IdentifyController, IdentifyNamespace, SmartLog, Status,
    StatusCode, ZoneDescriptor, ZoneState,
};
use proptest::prelude::*;
use zerocopy::IntoBytes;

/// A buffer of any length around one page, so short and long buffers both appear.
fn bytes_around(len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=len + 64)
}

/// Random byte overwrites (offset, value) for a page of `len` bytes.
fn mutations(len: usize) -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((0..len, any::<u8>()), 1..16)
}

fn mutate(page: &mut [u8], edits: &[(usize, u8)]) {
    for &(at, value) in edits {
        page[at] = value;
    }
}

/// An Identify Controller page as a real controller reports it.
fn real_controller_page() -> Vec<u8> {
    let mut id = IdentifyController::default();
    id.set_serial_number("S123");
    id.set_model_number("a controller");
    id.set_firmware_revision("1.0");
    id.mdts = 5;
    id.nn = 4;
    id.sqes = QueueEntrySize::new().with_required(6).with_maximum(6);
    id.cqes = QueueEntrySize::new().with_required(4).with_maximum(4);
    id.encode().to_vec()
}

/// An Identify Namespace page with four formats (512, 512+8, 4096, 4096+64).
fn real_namespace_page() -> Vec<u8> {
    let mut id = IdentifyNamespace {
        nsze: 1 << 21,
        ncap: 1 << 21,
        nuse: 1 << 20,
        nlbaf: 3,
        ..IdentifyNamespace::default()
    };
    id.lbaf[0] = LbaFormat::with_sizes(9, 0);
    id.lbaf[1] = LbaFormat::with_sizes(9, 8);
    id.lbaf[2] = LbaFormat::with_sizes(12, 0);
    id.lbaf[3] = LbaFormat::with_sizes(12, 64);
    id.flbas = Flbas::new().with_index(3);
    id.encode().to_vec()
}

/// Exercises every helper of a decoded namespace and checks what it promises.
fn check_namespace(id: &IdentifyNamespace) {
    let formats = id.lba_formats();
    assert!(!formats.is_empty() && formats.len() <= 64);
    if let Ok(size) = id.lba_size() {
        assert!(size.is_power_of_two() && (512..=1 << 31).contains(&size));
        match id.capacity_bytes() {
            Ok(bytes) => assert_eq!(bytes, id.nsze * u64::from(size)),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    let _ = id.metadata_size();
    let _ = id.nvm_capacity();
    match id.format() {
        Ok(f) => {
            assert!(usize::from(f.index) < formats.len());
            assert!(f.transfer_block_size() >= f.data_size);
            if let Some(offset) = f.pi_offset(8) {
                assert!(offset + 8 <= f.metadata_size);
            }
            if let Some(offset) = f.pi_offset(16) {
                assert!(offset + 16 <= f.metadata_size);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Exercises every helper of a decoded controller page.
fn check_controller(id: &IdentifyController, mpsmin: u8) {
    let _ = (
        id.serial_number(),
        id.model_number(),
        id.firmware_revision(),
    );
    let _ = id.subsystem_nqn();
    let page = 1u64 << (12 + u32::from(mpsmin));
    if let Some(max) = id.max_transfer_bytes(page) {
        assert!(max >= page, "MDTS {} gave {max} bytes", id.mdts);
    }
    let _ = (
        id.error_log_entries(),
        id.abort_limit(),
        id.async_event_limit(),
    );
    let _ = (id.total_capacity(), id.unallocated_capacity());
    let _ = (id.sqes.required(), id.sqes.maximum(), id.cqes.required());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn identify_controller_of_any_length_decodes_or_is_too_short(bytes in bytes_around(IDENTIFY_DATA_SIZE), mpsmin in 0u8..16) {
        match IdentifyController::parse(&bytes) {
            Ok(id) => {
                prop_assert!(bytes.len() >= IDENTIFY_DATA_SIZE);
                check_controller(&id, mpsmin);
            }
            Err(e) => {
                prop_assert!(bytes.len() < IDENTIFY_DATA_SIZE);
                prop_assert!(e.to_string().contains("Identify Controller"), "{e}");
            }
        }
    }

    #[test]
    fn a_real_controller_page_with_random_fields_decodes(edits in mutations(IDENTIFY_DATA_SIZE), mpsmin in 0u8..16) {
        let mut page = real_controller_page();
        mutate(&mut page, &edits);
        let id = IdentifyController::parse(&page).expect("a whole page decodes");
        check_controller(&id, mpsmin);
        prop_assert_eq!(id.encode().to_vec(), page);
    }

    #[test]
    fn identify_namespace_of_any_length_decodes_or_is_too_short(bytes in bytes_around(IDENTIFY_DATA_SIZE)) {
        match IdentifyNamespace::parse(&bytes) {
            Ok(id) => check_namespace(&id),
            Err(e) => {
                prop_assert!(bytes.len() < IDENTIFY_DATA_SIZE);
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn a_real_namespace_page_with_random_fields_decodes_within_bounds(
        edits in mutations(IDENTIFY_DATA_SIZE),
        // Flip the bytes that matter most often: NSZE, NLBAF, FLBAS, DPS, the formats.
        header in proptest::collection::vec((prop_oneof![0usize..8, Just(25), Just(26), Just(29), 128usize..144], any::<u8>()), 0..6),
    ) {
        let mut page = real_namespace_page();
        mutate(&mut page, &edits);
        mutate(&mut page, &header);
        let id = IdentifyNamespace::parse(&page).expect("a whole page decodes");
        check_namespace(&id);
    }

    #[test]
    fn nvm_namespace_formats_decode_for_every_index(bytes in bytes_around(IDENTIFY_DATA_SIZE), index: u8) {
        match IdentifyNamespaceNvm::parse(&bytes) {
            Ok(nvm) => match nvm.format(index) {
                Ok(f) => {
                    prop_assert!(index < 64);
                    match f.pi_format() {
                        Ok(pif) => prop_assert!(pif.tuple_size() == 8 || pif.tuple_size() == 16),
                        Err(e) => prop_assert!(e.to_string().contains('3'), "{e}"),
                    }
                }
                Err(e) => {
                    prop_assert!(index >= 64);
                    prop_assert!(!e.to_string().is_empty());
                }
            },
            Err(_) => prop_assert!(bytes.len() < IDENTIFY_DATA_SIZE),
        }
    }

    #[test]
    fn namespace_lists_decode_strictly_increasing_or_fail(bytes in bytes_around(IDENTIFY_DATA_SIZE), nsids in proptest::collection::vec(any::<u32>(), 0..8)) {
        // Both fully random pages and short lists of random NSIDs ending in zeros.
        let mut page = bytes;
        if page.len() >= IDENTIFY_DATA_SIZE {
            page[..IDENTIFY_DATA_SIZE].fill(0);
            for (slot, nsid) in nsids.iter().enumerate() {
                page[slot * 4..slot * 4 + 4].copy_from_slice(&nsid.to_le_bytes());
            }
        }
        match parse_namespace_list(&page) {
            Ok(list) => {
                prop_assert!(list.len() <= 1024);
                prop_assert!(list.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(list.iter().all(|&n| n != 0 && n != u32::MAX));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn descriptor_lists_of_any_length_decode_or_fail(bytes in bytes_around(IDENTIFY_DATA_SIZE)) {
        if let Err(e) = NamespaceIds::parse(&bytes) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn zns_identify_pages_decode_limits_and_formats(bytes in bytes_around(IDENTIFY_DATA_SIZE), index: u8, mpsmin in 0u8..16) {
        let mps = 1u64 << (12 + u32::from(mpsmin));
        if let Ok(c) = IdentifyControllerZns::parse(&bytes) {
            if let Some(limit) = c.zone_append_limit_bytes(mps) {
                prop_assert!(c.zasl > 0 && limit >= mps);
            }
        }
        match IdentifyNamespaceZns::parse(&bytes) {
            Ok(ns) => {
                let _ = (ns.max_active_zones(), ns.max_open_zones());
                prop_assert_eq!(ns.format(index).is_ok(), index < 64);
            }
            Err(_) => prop_assert!(bytes.len() < IDENTIFY_DATA_SIZE),
        }
    }

    #[test]
    fn zone_reports_of_random_bytes_stay_within_the_buffer(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        extension in prop_oneof![Just(0usize), Just(64), Just(128), any::<usize>()],
    ) {
        match ZoneReport::parse(&bytes, extension) {
            Ok(report) => {
                let stride = 64usize.saturating_add(extension);
                prop_assert!(report.zones.len() <= (bytes.len() - 64) / stride);
                prop_assert!(report.zones.len() as u64 <= report.nr_zones);
                prop_assert!(report.zones.iter().all(|z| z.state().is_some()));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn structured_zone_reports_with_lying_counts_decode_what_fits(
        nr_zones: u64,
        zones in proptest::collection::vec((0u8..16, any::<u64>(), any::<u64>(), any::<u64>()), 0..8),
        extension in prop_oneof![Just(0usize), Just(64)],
        cut in 0usize..64,
    ) {
        let mut buf = ZoneReportHeader::new(nr_zones).as_bytes().to_vec();
        for &(zs, zslba, zcap, wp) in &zones {
            let mut d = ZoneDescriptor::new(ZoneState::Empty, zslba, zcap, wp);
            d.zs = zs << 4;
            buf.extend_from_slice(d.as_bytes());
            buf.extend(std::iter::repeat_n(0xa5, extension));
        }
        // Cut into the descriptors only: a short header is another test's matter.
        buf.truncate(buf.len() - cut.min(buf.len() - 64));
        match ZoneReport::parse(&buf, extension) {
            Ok(report) => {
                let whole = (buf.len() - 64) / (64 + extension);
                prop_assert_eq!(report.zones.len() as u64, (whole as u64).min(nr_zones));
                for (d, &(_, zslba, zcap, wp)) in report.zones.iter().zip(&zones) {
                    prop_assert_eq!((d.zslba, d.zcap, d.wp), (zslba, zcap, wp));
                }
            }
            Err(e) => {
                // Only a reserved state among the decoded zones is refused.
                let msg = e.to_string();
                prop_assert!(zones.iter().any(|z| ZoneState::from_bits(z.0).is_none()), "{msg}");
            }
        }
    }

    #[test]
    fn log_pages_of_any_length_decode_or_are_too_short(bytes in bytes_around(512)) {
        match SmartLog::parse(&bytes) {
            Ok(log) => {
                let _ = (log.temperature_celsius(), log.bytes_read(), log.bytes_written());
            }
            Err(e) => {
                prop_assert!(bytes.len() < 512);
                prop_assert!(e.to_string().contains("SMART"), "{e}");
            }
        }
        prop_assert_eq!(ErrorLogEntry::parse(&bytes).is_ok(), bytes.len() >= 64);
        let entries = ErrorLogEntry::parse_list(&bytes);
        prop_assert!(entries.len() <= bytes.len() / 64);
        prop_assert!(entries.iter().all(|e| e.error_count != 0));
    }

    #[test]
    fn completions_decode_any_status_with_a_name(bytes: [u8; 16]) {
        let cqe = CompletionEntry::from_bytes(&bytes);
        prop_assert_eq!(cqe.to_bytes(), bytes);
        let status: Status = cqe.status;
        let text = status.to_string();
        prop_assert!(text.contains(&format!("SC {:#04x}", status.sc())), "{text}");
        if let StatusCode::Unknown { .. } = status.code() {
            prop_assert!(text.starts_with("Unknown status"), "{text}");
        }
        let _ = (status.without_phase(), status.code_only(), status.is_success());
    }

    #[test]
    fn capability_registers_decode_any_value(raw: u64) {
        let cap = Cap::from_bits(raw);
        prop_assert!(cap.max_queue_entries() >= 1);
        prop_assert!(cap.min_page_size() >= 4096);
        prop_assert!(cap.max_page_size() >= 4096);
        prop_assert!(cap.doorbell_stride() >= 4);
        let _ = (cap.timeout(), cap.supports_nvm_command_set());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any 8 bytes from a target are a header that validates or is refused with a
    /// reason; one that validates describes a PDU whose parts fit inside its length.
    #[test]
    fn tcp_headers_validate_or_say_why(
        bytes: [u8; 8],
        header in any::<bool>(),
        data in any::<bool>(),
        max in 0usize..(1 << 24),
    ) {
        use nvme_spec::tcp::{CommonHeader, Digests, DIGEST_SIZE};
        let ch = CommonHeader::parse(&bytes);
        prop_assert_eq!(ch.to_bytes(), bytes);
        match ch.validate(Digests { header, data }, max) {
            Ok(()) => {
                let hlen = ch.pdu_type.hlen().expect("a known type");
                prop_assert_eq!(usize::from(ch.hlen), hlen);
                let plen = ch.plen as usize;
                prop_assert!(plen <= max);
                prop_assert!(ch.header_bytes() <= plen);
                if ch.pdo != 0 {
                    let dd = if ch.has_data_digest() { DIGEST_SIZE } else { 0 };
                    prop_assert!(usize::from(ch.pdo) >= ch.header_bytes());
                    prop_assert_eq!(usize::from(ch.pdo) + ch.data_len() + dd, plen);
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with("malformed NVMe/TCP"), "{e}"),
        }
    }

    /// Any 128 bytes are an ICResp the host can use or a refusal.
    #[test]
    fn icresp_parses_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 128)) {
        let b: [u8; 128] = bytes.try_into().unwrap();
        if let Ok(r) = nvme_spec::tcp::IcResp::parse(&b) {
            prop_assert!(r.maxh2cdata >= 4096 && r.maxh2cdata % 4 == 0);
            prop_assert!(r.cpda <= 31);
            prop_assert_eq!(r.pfv, 0);
        }
    }

    /// A Discovery log page of any bytes yields at most the records it holds.
    #[test]
    fn discovery_pages_decode_within_their_length(
        bytes in proptest::collection::vec(any::<u8>(), 0..5000),
    ) {
        use nvme_spec::fabrics::{discovery_entries, DiscoveryHeader};
        if let Some(h) = DiscoveryHeader::parse(&bytes) {
            let entries = discovery_entries(&bytes, h.numrec);
            prop_assert!(entries.len() <= bytes.len().saturating_sub(1024) / 1024);
            for e in &entries {
                let _ = (e.trtype_name(), e.adrfam_name(), e.subtype_name(), e.treq_name(), e.sectype_name());
            }
        }
    }
}
