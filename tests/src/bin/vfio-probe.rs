//! `vfio-probe BDF`: open a PCI NVMe controller bound to vfio-pci with
//! `vfio-ioctls`, read CAP/VS through the mapped BAR0, run one admin Identify
//! Controller by DMA, and print what it found as `key=value` lines.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(bdf) = std::env::args().nth(1) else {
        eprintln!("usage: vfio-probe BDF   (e.g. 0000:00:04.0, bound to vfio-pci)");
        return ExitCode::from(2);
    };
    let sysfs = PathBuf::from("/sys/bus/pci/devices").join(&bdf);
    match nvme_e2e::probe::probe(&sysfs) {
        Ok(report) => {
            print!("{}", report.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vfio-probe {bdf}: {e}");
            ExitCode::FAILURE
        }
    }
}
