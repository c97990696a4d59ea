//! Opens a controller and gathers the identify report.

use nvme::spec::identify::{Cns, NamespaceIds};
use nvme::spec::registers::offset;
use nvme::spec::Version;
use nvme::Transport;

use super::model::{ControllerJson, IdentifyReport, NamespaceJson};
use crate::cli::ToolError;

/// Brings the controller up (admin queue only) and reads its identity.
pub fn run(device: &str) -> Result<IdentifyReport, ToolError> {
    let options = nvme::Options {
        io_queues: 1,
        interrupts: false,
        ..nvme::Options::default()
    };
    let ctrl = nvme::open(device, options)?;
    let id = ctrl.identify_controller();
    let vs = Version::from_bits(ctrl.transport().read32(offset::VS));
    let controller = ControllerJson::new(&id, ctrl.cap(), vs);
    let mut namespaces: Vec<NamespaceJson> = ctrl
        .namespaces()
        .iter()
        .map(|n| {
            let ids = descriptors(&ctrl, n.nsid);
            NamespaceJson::new(n.nsid, &n.identify, ids.as_ref())
                .with_nvm(&n.identify, n.nvm.as_deref())
                .with_command_set(n.command_set, n.zoned.as_ref())
        })
        .collect();
    namespaces.sort_by_key(|n| n.nsid);
    Ok(IdentifyReport {
        device: device.to_string(),
        controller,
        namespaces,
    })
}

/// The namespace identification descriptor list (Identify CNS 03h), or `None` when
/// the controller refuses the command (it is optional before NVMe 1.3) or returns a
/// malformed list; either way the rest of the report stands.
fn descriptors<T: Transport>(ctrl: &nvme::Controller<T>, nsid: u32) -> Option<NamespaceIds> {
    let page = ctrl
        .identify(Cns::NAMESPACE_DESCRIPTOR_LIST, nsid)
        .map_err(|e| tracing::warn!(nsid, "namespace identification descriptors: {e}"))
        .ok()?;
    NamespaceIds::parse(&page)
        .map_err(|e| tracing::warn!(nsid, "namespace identification descriptors: {e}"))
        .ok()
}
