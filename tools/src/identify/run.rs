//! Opens a controller and gathers the identify report.

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
        .map(|n| NamespaceJson::new(n.nsid, &n.identify))
        .collect();
    namespaces.sort_by_key(|n| n.nsid);
    Ok(IdentifyReport {
        device: device.to_string(),
        controller,
        namespaces,
    })
}
