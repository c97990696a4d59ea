//! Identify's namespace identification descriptors (CNS 03h) agree with Identify
//! Namespace and tell namespaces and controllers apart.

mod common;

use common::*;
use nvme_spec::identify::{CommandSetId, NamespaceIds};
use nvme_spec::status::GenericStatus as G;
use nvme_spec::{IdentifyNamespace, Status};

#[test]
fn descriptor_list_carries_the_namespace_eui64_nguid_and_nvm_command_set() {
    let mut h = Harness::new("emu:ns=2,serial=DESC1");
    for nsid in 1..=2 {
        let (c, page) = h.identify(3, nsid);
        assert!(c.status.is_success(), "nsid {nsid}");
        let ids = NamespaceIds::parse(&page).unwrap();
        let (_, ns) = h.identify(0, nsid);
        let ns = IdentifyNamespace::parse(&ns).unwrap();
        assert_eq!(ids.eui64, Some(ns.eui64));
        assert_eq!(ids.nguid, Some(ns.nguid));
        assert_ne!(ns.nguid, [0; 16]);
        assert_eq!(ids.uuid, None);
        assert_eq!(ids.csi, Some(CommandSetId::NVM));
    }
    let (_, one) = h.identify(3, 1);
    let (_, two) = h.identify(3, 2);
    assert_ne!(
        NamespaceIds::parse(&one).unwrap().nguid,
        NamespaceIds::parse(&two).unwrap().nguid
    );
}

#[test]
fn nguid_differs_between_controllers_with_different_serials() {
    let nguid = |serial: &str| {
        let mut h = Harness::new(&format!("emu:serial={serial}"));
        let (_, page) = h.identify(3, 1);
        NamespaceIds::parse(&page).unwrap().nguid.unwrap()
    };
    assert_eq!(nguid("SAME"), nguid("SAME"));
    assert_ne!(nguid("SERIAL-A"), nguid("SERIAL-B"));
}

#[test]
fn descriptor_list_of_an_inactive_nsid_is_invalid_namespace() {
    let mut h = Harness::new("emu:ns=2");
    for nsid in [0, 3, 0xffff_ffff] {
        let (c, _) = h.identify(3, nsid);
        assert_eq!(
            code(c.status),
            code(Status::generic(G::InvalidNamespaceOrFormat)),
            "nsid {nsid}"
        );
    }
}
