//! The driver's decoders of untrusted input under random data: device names, a zoned
//! namespace's identify pages, zone reports and a namespace's protection format. Each
//! returns a value or a typed error, never panics, and what it returns is in bounds.

use nvme::spec::identify::{
    CommandSetId, Flbas, IdentifyNamespace, IdentifyNamespaceNvm, LbaFormat, IDENTIFY_DATA_SIZE,
};
use nvme::spec::zns::{IdentifyNamespaceZns, ZoneDescriptor, ZoneReportHeader, ZoneState};
use nvme::zns::{decode_report, ZonedInfo};
use nvme::{DeviceName, Namespace, PciAddress};
use proptest::prelude::*;
use zerocopy::IntoBytes;

fn page() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), IDENTIFY_DATA_SIZE)
}

fn pci_address() -> impl Strategy<Value = PciAddress> {
    (any::<u32>(), any::<u8>(), 0u8..32, 0u8..8).prop_map(|(domain, bus, device, function)| {
        PciAddress {
            domain,
            bus,
            device,
            function,
        }
    })
}

/// A namespace as bring-up builds it from an Identify Namespace page and, maybe, the
/// NVM Command Set page.
fn namespace(id: IdentifyNamespace, nvm: Option<IdentifyNamespaceNvm>) -> Namespace {
    Namespace {
        nsid: 1,
        lba_size: id.lba_size().unwrap_or(512),
        blocks: id.nsze,
        metadata_size: id.metadata_size().unwrap_or(0),
        identify: Box::new(id),
        nvm: nvm.map(Box::new),
        command_set: CommandSetId::NVM,
        zoned: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn pci_addresses_print_and_parse_back(addr in pci_address()) {
        let text = addr.to_string();
        prop_assert_eq!(text.parse::<PciAddress>(), Ok(addr));
        prop_assert_eq!(text.parse::<DeviceName>(), Ok(DeviceName::Pci(addr)));
    }

    #[test]
    fn any_device_name_parses_or_names_itself_in_the_error(s in "\\PC{0,24}") {
        match s.parse::<DeviceName>() {
            Ok(DeviceName::Emu(spec)) => prop_assert_eq!(&spec, &s),
            Ok(DeviceName::Pci(addr)) => {
                prop_assert!(addr.device < 32 && addr.function < 8);
            }
            Ok(DeviceName::Tcp(name)) => prop_assert_eq!(&name, &s),
            Err(e) => {
                prop_assert_eq!(&e.name, &s);
                let quoted = format!("'{s}'");
                prop_assert!(e.to_string().contains(&quoted));
            }
        }
    }

    #[test]
    fn address_shaped_names_parse_or_fail_with_the_input(
        parts in proptest::collection::vec("[0-9a-fA-F]{0,9}", 1..4),
        function in "[0-9a-fA-F.]{0,3}",
    ) {
        let s = format!("{}.{function}", parts.join(":"));
        match s.parse::<PciAddress>() {
            Ok(addr) => {
                // What parses names the same numbers as the text (the domain 0 when
                // absent), and its printed form parses back to it.
                let mut fields: Vec<u32> = s
                    .split([':', '.'])
                    .map(|f| u32::from_str_radix(f, 16).unwrap())
                    .collect();
                if fields.len() == 3 {
                    fields.insert(0, 0);
                }
                let got = [
                    addr.domain,
                    u32::from(addr.bus),
                    u32::from(addr.device),
                    u32::from(addr.function),
                ];
                prop_assert_eq!(&fields[..], &got[..], "{}", s);
                prop_assert_eq!(addr.to_string().parse::<PciAddress>(), Ok(addr));
            }
            Err(e) => prop_assert_eq!(e.input, s),
        }
    }

    #[test]
    fn zoned_identify_pages_decode_or_fail_with_a_reason(
        bytes in page(),
        format: u8,
        namespace_blocks: u64,
        zasl in proptest::option::of(any::<u64>()),
    ) {
        let zns = IdentifyNamespaceZns::parse(&bytes).expect("a whole page");
        match ZonedInfo::from_identify(&zns, format, namespace_blocks, zasl) {
            Ok(z) => {
                prop_assert!(z.zone_size_blocks > 0);
                prop_assert_eq!(z.zones, namespace_blocks.div_ceil(z.zone_size_blocks));
                prop_assert!(z.zone_start(namespace_blocks) <= namespace_blocks);
            }
            Err(reason) => prop_assert!(!reason.is_empty()),
        }
    }

    #[test]
    fn random_zone_reports_decode_in_order_within_the_namespace(
        bytes in proptest::collection::vec(any::<u8>(), 0..768),
        extension in prop_oneof![Just(0usize), Just(64), any::<usize>()],
        namespace_blocks: u64,
    ) {
        match decode_report(&bytes, extension, namespace_blocks) {
            Ok(page) => {
                prop_assert!(page.zones.len() as u64 <= page.nr_zones);
                prop_assert!(page.zones.iter().all(|z| z.zslba < namespace_blocks));
                prop_assert!(page.zones.windows(2).all(|w| w[0].zslba < w[1].zslba));
            }
            Err(reason) => prop_assert!(!reason.is_empty()),
        }
    }

    #[test]
    fn structured_zone_reports_with_hostile_fields_decode_or_fail(
        nr_zones: u64,
        zones in proptest::collection::vec((0u8..16, 0u64..1 << 20, any::<u64>(), any::<u64>()), 0..10),
        namespace_blocks in 1u64..1 << 20,
    ) {
        let mut buf = ZoneReportHeader::new(nr_zones).as_bytes().to_vec();
        for &(zs, zslba, zcap, wp) in &zones {
            let mut d = ZoneDescriptor::new(ZoneState::Empty, zslba, zcap, wp);
            d.zs = zs << 4;
            buf.extend_from_slice(d.as_bytes());
        }
        match decode_report(&buf, 0, namespace_blocks) {
            Ok(page) => {
                prop_assert_eq!(page.zones.len() as u64, (zones.len() as u64).min(nr_zones));
                for (z, &(_, zslba, zcap, wp)) in page.zones.iter().zip(&zones) {
                    prop_assert_eq!((z.zslba, z.zcap, z.wp), (zslba, zcap, wp));
                }
            }
            Err(reason) => {
                prop_assert!(reason.starts_with("zone descriptor"), "{}", reason);
            }
        }
    }

    #[test]
    fn a_namespace_with_random_identify_data_has_a_protection_layout_in_bounds_or_an_error(
        bytes in page(),
        nvm_bytes in proptest::option::of(page()),
    ) {
        let id = IdentifyNamespace::parse(&bytes).expect("a whole page");
        let nvm = nvm_bytes.map(|b| IdentifyNamespaceNvm::parse(&b).expect("a whole page"));
        check_protection(&namespace(id, nvm));
    }

    #[test]
    fn a_protected_namespace_with_random_format_fields_stays_in_bounds(
        lbads in 0u8..=255,
        ms: u16,
        index in 0u8..64,
        nlbaf: u8,
        dps: u8,
        elbaf: u32,
    ) {
        let mut id = IdentifyNamespace {
            nsze: 1 << 20,
            ncap: 1 << 20,
            nlbaf,
            ..IdentifyNamespace::default()
        };
        id.lbaf[usize::from(index)] = LbaFormat::with_sizes(lbads, ms);
        id.flbas = Flbas::new().with_index(index).with_extended_metadata(dps & 0x80 != 0);
        id.dps = nvme::spec::identify::Dps::from_bits(dps & 0x0f);
        let mut nvm = IdentifyNamespaceNvm::default();
        nvm.elbaf[usize::from(index)] = nvme::spec::identify::ElbaFormat::from_bits(elbaf);
        check_protection(&namespace(id, Some(nvm)));
    }
}

/// A layout the driver accepts keeps its tuple inside the metadata and its reference
/// tag within 64 bits; anything else is a typed error naming the namespace.
fn check_protection(ns: &Namespace) {
    match ns.protection() {
        Ok(Some(p)) => {
            assert!(p.tuple_offset() + p.tuple_size() <= usize::from(p.metadata_size));
            assert!(p.ref_tag_bits() <= 64);
            let _ = (p.ref_tag_mask(), p.checks(), p.is_pi_only());
            assert!(p.data_buffer_block_size() >= p.data_size as usize);
            let _ = p.metadata_buffer_block_size();
            let tag = p.initial_ref_tag(u64::MAX, None);
            assert_eq!(tag & !p.ref_tag_mask(), 0);
            assert_eq!(p.block_ref_tag(tag, u64::MAX) & !p.ref_tag_mask(), 0);
        }
        Ok(None) => {}
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("namespace 1"), "{msg}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any `tcp://` name parses or is refused with a message naming it; what parses
    /// prints back to a name that parses to the same target.
    #[test]
    fn tcp_names_parse_or_say_why(rest in "[a-z0-9.:/,=\\[\\]-]{0,40}") {
        let s = format!("tcp://{rest}");
        match nvme::transport::tcp::TcpName::parse(&s) {
            Ok(n) => {
                let again = nvme::transport::tcp::TcpName::parse(&n.to_string()).unwrap();
                prop_assert_eq!(&again.host, &n.host);
                prop_assert_eq!(again.port, n.port);
                prop_assert_eq!(&again.subnqn, &n.subnqn);
            }
            Err(e) => {
                let quoted = format!("'{s}'");
                prop_assert!(e.to_string().contains(&quoted), "{}", e);
            }
        }
    }
}
