//! PCI addresses (`DOMAIN:BUS:DEVICE.FUNCTION`) as the kernel spells them in sysfs.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::SetupError;

/// A PCI function address such as `0000:01:00.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddr {
    /// PCI segment (domain); VMD domains exceed 16 bits, hence `u32`.
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0..=31.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

impl FromStr for PciAddr {
    type Err = SetupError;

    /// Parses `DDDD:BB:DD.F`, or `BB:DD.F` with domain 0, in hexadecimal.
    fn from_str(input: &str) -> Result<Self, SetupError> {
        let bad = || SetupError::BadPciAddress {
            input: input.to_string(),
        };
        let hex = |s: &str, max_len: usize| -> Option<u32> {
            if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(s, 16).ok()
        };
        let (rest, function) = input.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [bus, device] => (0, *bus, *device),
            [domain, bus, device] => (hex(domain, 8).ok_or_else(bad)?, *bus, *device),
            _ => return Err(bad()),
        };
        let bus = hex(bus, 2).ok_or_else(bad)?;
        let device = hex(device, 2).filter(|d| *d < 32).ok_or_else(bad)?;
        let function = hex(function, 1).filter(|f| *f < 8).ok_or_else(bad)?;
        Ok(PciAddr {
            domain,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl Serialize for PciAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_short_forms_parse_to_the_canonical_spelling() {
        let a: PciAddr = "0000:01:00.0".parse().unwrap();
        assert_eq!(a.to_string(), "0000:01:00.0");
        let b: PciAddr = "3D:1f.7".parse().unwrap();
        assert_eq!(b.to_string(), "0000:3d:1f.7");
        let vmd: PciAddr = "10000:e1:00.0".parse().unwrap();
        assert_eq!(vmd.to_string(), "10000:e1:00.0");
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
            assert!(bad.parse::<PciAddr>().is_err(), "{bad:?} parsed");
        }
    }
}
