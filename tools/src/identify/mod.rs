//! `nvme-identify`: the controller and namespace report.

pub mod discover;
pub mod human;
pub mod model;
pub mod run;

use clap::Parser;
use nvme::DeviceName;

use crate::cli::parse_device;

const EXAMPLES: &str = "\
Examples:
  nvme-identify emu
      the emulated controller with its default namespace
  nvme-identify emu:ns=2,lba=4096 --json
      two 4 KiB-block namespaces, as JSON with nvme-cli's field names
  nvme-identify 0000:01:00.0
      a controller bound to vfio-pci
  nvme-identify tcp://192.0.2.7/nqn.2014-08.org.example:disk1
      a subsystem's controller over NVMe/TCP (port 4420 unless given)
  nvme-identify tcp://192.0.2.7:4420 --json
      a discovery controller: its Discovery log, as `nvme discover -o json`

JSON: {\"controller\": {...}, \"namespaces\": [...]}, fields named as in
`nvme id-ctrl -o json` and `nvme id-ns -o json`, plus the decoded CAP register
(controller.cap), the VS register (controller.version) and, per namespace,
the in-use format decoded (lba_bytes, metadata_bytes, extended_lba,
transfer_block_bytes, pi_type, pi_location), command_set, and the namespace
identification descriptors (descriptors: eui64, nguid, uuid, csi; null if the
controller does not answer Identify CNS 03h), and where the controller reports
extended LBA formats (CTRATT.ELBAS) the NVM Command Set fields as
`nvme nvm-id-ns -o json` names them (lbstm, pic, elbafs[{sts, pif}]) with the
decoded pi_guard_bits.";

/// Show an NVMe controller's identity, capabilities and namespaces.
#[derive(Debug, Clone, Parser)]
#[command(name = "nvme-identify", version, after_help = EXAMPLES)]
pub struct IdentifyArgs {
    /// Device: `emu`, `emu:OPTIONS` (e.g. `emu:ns=2,lba=4096`), a PCI address,
    /// `tcp://HOST[:PORT]/NQN`, or `tcp://HOST[:PORT]` for a discovery controller.
    #[arg(value_parser = parse_device, value_name = "DEVICE")]
    pub device: DeviceName,

    /// Print JSON (nvme-cli field names) instead of the summary.
    #[arg(long = "json")]
    pub json: bool,
}
