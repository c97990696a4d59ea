//! Property tests for the namespace format, the namespace identification
//! descriptor list and protection information: decoding any (untrusted) bytes never
//! panics, and what is encoded decodes to itself.

use nvme_spec::identify::{
    CommandSetId, Dps, Flbas, MetadataPlacement, NamespaceIds, ProtectionType,
};
use nvme_spec::pi::{Pi16, Pi8};
use nvme_spec::{Error, IdentifyNamespace, LbaFormat};
use proptest::prelude::*;

fn page(len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), len)
}

/// Descriptor lists built from plausible pieces: known and unknown types with
/// right and wrong lengths, so the parser's error paths are reached often.
fn descriptor_list() -> impl Strategy<Value = Vec<u8>> {
    let descriptor = (
        0u8..8,
        prop_oneof![Just(1u8), Just(8), Just(16), any::<u8>()],
    )
        .prop_flat_map(|(nidt, nidl)| {
            page(usize::from(nidl)).prop_map(move |id| {
                let mut d = vec![nidt, nidl, 0, 0];
                d.extend(id);
                d
            })
        });
    proptest::collection::vec(descriptor, 0..40).prop_map(|ds| {
        let mut list: Vec<u8> = ds.concat();
        list.resize(4096, 0);
        list
    })
}

proptest! {
    #[test]
    fn any_identify_namespace_page_decodes_its_format_without_panic(bytes in page(4096)) {
        let ns = IdentifyNamespace::parse(&bytes).unwrap();
        if let Ok(f) = ns.format() {
            prop_assert_eq!(f.index, ns.flbas.index());
            prop_assert!(usize::from(f.index) < ns.lba_formats().len());
            prop_assert!(f.transfer_block_size() >= f.data_size);
            prop_assert!(f.transfer_block_size() - f.data_size <= u32::from(f.metadata_size));
            let _ = (f.pi_offset(8), f.pi_offset(16), f.separate_metadata_size());
        }
    }

    #[test]
    fn the_format_reflects_flbas_lbaf_and_dps(
        nlbaf in 0u8..64,
        pick in 0u8..64,
        lbads in 9u8..=31,
        ms: u16,
        rp in 0u8..4,
        extended: bool,
        pit in 0u8..8,
        first: bool,
    ) {
        let index = pick % (nlbaf + 1);
        let mut ns = IdentifyNamespace {
            nsze: 1,
            nlbaf,
            flbas: Flbas::new().with_index(index).with_extended_metadata(extended),
            dps: Dps::new().with_pit(pit).with_first(first),
            ..Default::default()
        };
        ns.lbaf[usize::from(index)] = LbaFormat::with_sizes(lbads, ms).with_rp(rp);
        let ns = IdentifyNamespace::parse(&ns.encode()).unwrap();
        match ns.format() {
            Ok(f) => {
                prop_assert_eq!(f.index, index);
                prop_assert_eq!(f.data_size, 1u32 << lbads);
                prop_assert_eq!(f.metadata_size, ms);
                prop_assert_eq!(f.relative_performance, rp);
                prop_assert_eq!(f.protection.pit(), pit);
                let expected = match (ms, extended) {
                    (0, _) => MetadataPlacement::None,
                    (_, true) => MetadataPlacement::Extended,
                    (_, false) => MetadataPlacement::Separate,
                };
                prop_assert_eq!(f.placement, expected);
                let block = (1u32 << lbads) + if extended { u32::from(ms) } else { 0 };
                prop_assert_eq!(f.transfer_block_size(), block);
            }
            Err(Error::InvalidProtectionType { pit: p }) => prop_assert!(p > 3 && p == pit),
            Err(Error::ProtectionWithoutMetadata { pit: p, ms: m }) => {
                prop_assert!(p == pit && m == ms && m < 8);
                prop_assert!(ProtectionType::from_pit(pit).unwrap().is_enabled());
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn any_descriptor_list_parses_without_panic(bytes in page(4096), len in 0usize..=4200) {
        let mut bytes = bytes;
        bytes.resize(len, 0);
        let _ = NamespaceIds::parse(&bytes);
    }

    #[test]
    fn structured_descriptor_lists_parse_or_fail_with_a_typed_error(list in descriptor_list()) {
        match NamespaceIds::parse(&list) {
            Ok(ids) => prop_assert_eq!(NamespaceIds::parse(&ids.encode()), Ok(ids)),
            Err(
                Error::DescriptorOverrun { .. }
                | Error::DescriptorLength { .. }
                | Error::DuplicateDescriptor { .. },
            ) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn descriptor_lists_round_trip(
        eui64 in proptest::option::of(any::<[u8; 8]>()),
        nguid in proptest::option::of(any::<[u8; 16]>()),
        uuid in proptest::option::of(any::<[u8; 16]>()),
        csi in proptest::option::of(any::<u8>()),
    ) {
        let ids = NamespaceIds { eui64, nguid, uuid, csi: csi.map(CommandSetId) };
        prop_assert_eq!(NamespaceIds::parse(&ids.encode()), Ok(ids));
    }

    #[test]
    fn pi_tuples_round_trip(guard: u16, app: u16, reference: u32, guard64: u64, tag in 0u64..(1 << 48)) {
        let pi = Pi8::new(guard, app, reference);
        prop_assert_eq!(Pi8::read(zerocopy::IntoBytes::as_bytes(&pi)), Some(pi));
        prop_assert_eq!((pi.guard.get(), pi.app_tag.get(), pi.ref_tag.get()), (guard, app, reference));
        let pi = Pi16::new(guard64, app, tag);
        prop_assert_eq!(Pi16::read(zerocopy::IntoBytes::as_bytes(&pi)), Some(pi));
        prop_assert_eq!((pi.guard.get(), pi.app_tag.get(), pi.storage_ref()), (guard64, app, tag));
    }
}
