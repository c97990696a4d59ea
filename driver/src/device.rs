//! Device names as users type them: `emu`, `emu:OPTIONS`, a PCI address or a
//! `tcp://` target.

use std::fmt;
use std::str::FromStr;

/// A PCI function address `DDDD:BB:DD.F`, as Linux names it in sysfs.
///
/// The domain is printed with at least four hex digits (`%04x` in `pci_name()`,
/// `include/linux/pci.h`); VMD domains start at `0x10000` and print wider
/// (`10000:e1:00.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// PCI domain (segment); VMD domains exceed 16 bits.
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device number (0..=31).
    pub device: u8,
    /// Function number (0..=7).
    pub function: u8,
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// Text that is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad PCI address '{input}': expected DOMAIN:BUS:DEVICE.FUNCTION in hex, e.g. 0000:01:00.0")]
pub struct PciAddressError {
    /// The text given.
    pub input: String,
}

impl FromStr for PciAddress {
    type Err = PciAddressError;

    /// Accepts `DDDD:BB:DD.F` and `BB:DD.F` (domain 0), hexadecimal in either case.
    ///
    /// The domain is spelled as Linux prints it: four digits, or five to eight without
    /// a leading zero for domains above `0xffff`; so a name that `pci_name()` could
    /// never produce (`0:01:00.0`, `00000:01:00.0`) is rejected.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PciAddressError {
            input: s.to_string(),
        };
        let hex = |t: &str, max_len: usize| -> Result<u32, PciAddressError> {
            if t.is_empty() || t.len() > max_len || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(t, 16).map_err(|_| bad())
        };
        let (rest, function) = s.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [bus, device] => (0, *bus, *device),
            [domain, bus, device]
                if domain.len() == 4 || (domain.len() > 4 && !domain.starts_with('0')) =>
            {
                (hex(domain, 8)?, *bus, *device)
            }
            _ => return Err(bad()),
        };
        let bus = hex(bus, 2)?;
        let device = hex(device, 2)?;
        let function = hex(function, 1)?;
        if device > 31 || function > 7 {
            return Err(bad());
        }
        Ok(PciAddress {
            domain,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

/// Which controller to open: the emulated one (with its option string) or a PCI function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceName {
    /// The emulated controller; the string is the whole name (`emu` or `emu:OPTIONS`),
    /// parsed by `nvme_emu::EmuConfig`.
    Emu(String),
    /// A PCI function bound to `vfio-pci`.
    Pci(PciAddress),
    /// An NVMe/TCP target: the whole `tcp://...` name, parsed by
    /// [`crate::transport::tcp::TcpName`].
    Tcp(String),
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceName::Emu(spec) => f.write_str(spec),
            DeviceName::Pci(addr) => addr.fmt(f),
            DeviceName::Tcp(name) => f.write_str(name),
        }
    }
}

/// A device name that is neither `emu[:options]` nor a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad device name '{name}': expected emu[:options], a PCI address like 0000:01:00.0 or tcp://HOST[:PORT]/SUBSYSTEM-NQN")]
pub struct DeviceNameError {
    /// The name as given.
    pub name: String,
}

impl FromStr for DeviceName {
    type Err = DeviceNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "emu" || s.starts_with("emu:") {
            return Ok(DeviceName::Emu(s.to_string()));
        }
        if s.starts_with("tcp://") {
            return Ok(DeviceName::Tcp(s.to_string()));
        }
        s.parse::<PciAddress>()
            .map(DeviceName::Pci)
            .map_err(|_| DeviceNameError {
                name: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_pci_address_parses_and_prints_back() {
        let name: DeviceName = "0000:01:00.0".parse().unwrap();
        let DeviceName::Pci(addr) = &name else {
            panic!("expected a PCI name, got {name:?}")
        };
        assert_eq!(
            *addr,
            PciAddress {
                domain: 0,
                bus: 1,
                device: 0,
                function: 0
            }
        );
        assert_eq!(name.to_string(), "0000:01:00.0");
    }

    #[test]
    fn short_pci_address_means_domain_zero() {
        let addr: PciAddress = "3b:1f.7".parse().unwrap();
        assert_eq!(addr.to_string(), "0000:3b:1f.7");
    }

    #[test]
    fn emu_names_keep_their_options() {
        assert_eq!("emu".parse(), Ok(DeviceName::Emu("emu".into())));
        assert_eq!(
            "emu:size=1G,lba=4096".parse(),
            Ok(DeviceName::Emu("emu:size=1G,lba=4096".into()))
        );
    }

    #[test]
    fn garbage_name_is_rejected_with_the_expected_forms() {
        let err = "xyz".parse::<DeviceName>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad device name 'xyz': expected emu[:options], a PCI address like 0000:01:00.0 or tcp://HOST[:PORT]/SUBSYSTEM-NQN"
        );
    }

    #[test]
    fn vmd_domains_wider_than_16_bits_parse_and_print_back() {
        let addr: PciAddress = "10000:e1:00.0".parse().unwrap();
        assert_eq!(addr.domain, 0x10000);
        assert_eq!(addr.to_string(), "10000:e1:00.0");
        assert_eq!(
            "10000:e1:00.0".parse::<DeviceName>(),
            Ok(DeviceName::Pci(addr))
        );
    }

    #[test]
    fn domains_linux_never_prints_are_rejected() {
        for bad in [
            "0:01:00.0",
            "000:01:00.0",
            "00000:01:00.0",
            "100000000:01:00.0",
        ] {
            let err = bad.parse::<PciAddress>().unwrap_err();
            assert_eq!(err.input, bad);
        }
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        for bad in [
            "",
            "01:00",
            "0000:01:00",
            "0000:01:20.0",
            "0000:01:00.8",
            "zz:00.0",
            "0000:001:00.0",
            "0000:01:00.0 ",
            "nvme0",
            "0000:01:00.0.1",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn out_of_range_device_and_function_are_rejected() {
        assert!("0000:00:20.0".parse::<PciAddress>().is_err());
        assert!("0000:00:04.8".parse::<PciAddress>().is_err());
        assert!("00000:00:04.0".parse::<PciAddress>().is_err());
        assert!("emulator".parse::<DeviceName>().is_err());
    }
}
