//! Controller health as read from CSTS.

use crate::spec::registers::offset;
use crate::spec::Csts;
use crate::transport::Transport;
use crate::Error;

/// Reads CSTS and turns a vanished device or a fatal status into an error.
pub(crate) fn check_csts<T: Transport>(
    t: &T,
    name: &str,
    during: &'static str,
) -> Result<Csts, Error> {
    let raw = t.read32(offset::CSTS);
    if raw == u32::MAX {
        return Err(Error::DeviceGone {
            device: name.to_string(),
            during,
            reason: t.failure(),
        });
    }
    let csts = Csts::from_bits(raw);
    if csts.cfs() {
        return Err(Error::ControllerFatal {
            device: name.to_string(),
            during,
        });
    }
    Ok(csts)
}
