//! The few VFIO and process calls vfio-ioctls does not expose with errors intact.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};

use vfio_bindings::bindings::vfio::{VFIO_BASE, VFIO_TYPE};
use vmm_sys_util::ioctl::{ioctl, ioctl_expr, ioctl_with_mut_ref, _IOC_NONE};

const fn vfio_io(nr: u32) -> libc::c_ulong {
    ioctl_expr(_IOC_NONE, VFIO_TYPE as u32, VFIO_BASE + nr, 0)
}

/// `VFIO_DEVICE_GET_INFO`.
const VFIO_DEVICE_GET_INFO: libc::c_ulong = vfio_io(7);
/// `VFIO_DEVICE_GET_REGION_INFO`.
const VFIO_DEVICE_GET_REGION_INFO: libc::c_ulong = vfio_io(8);
/// `VFIO_DEVICE_RESET`.
const VFIO_DEVICE_RESET: libc::c_ulong = vfio_io(11);

/// Duplicates a descriptor owned elsewhere into a `File` this module owns.
pub fn dup_fd(fd: RawFd) -> io::Result<File> {
    // SAFETY: dup has no memory effects; the result is checked before use.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor nothing else owns.
    Ok(unsafe { File::from_raw_fd(new) })
}

/// The `flags` word of `VFIO_DEVICE_GET_INFO` (bit 0: the device supports reset).
pub fn device_flags(device: &File) -> io::Result<u32> {
    let mut info = vfio_bindings::bindings::vfio::vfio_device_info {
        argsz: std::mem::size_of::<vfio_bindings::bindings::vfio::vfio_device_info>() as u32,
        ..Default::default()
    };
    // SAFETY: `info` is a correctly sized, writable vfio_device_info with argsz set.
    let rc = unsafe { ioctl_with_mut_ref(device, VFIO_DEVICE_GET_INFO, &mut info) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.flags)
}

/// A region's flags, size and file offset on the device fd, by VFIO region number
/// (vfio-ioctls' own accessors index a list that skips regions it could not query).
pub fn region_info(device: &File, index: u32) -> io::Result<(u32, u64, u64)> {
    let mut info = vfio_bindings::bindings::vfio::vfio_region_info {
        argsz: std::mem::size_of::<vfio_bindings::bindings::vfio::vfio_region_info>() as u32,
        index,
        ..Default::default()
    };
    // SAFETY: `info` is a correctly sized, writable vfio_region_info with argsz set; the
    // kernel writes at most argsz bytes.
    let rc = unsafe { ioctl_with_mut_ref(device, VFIO_DEVICE_GET_REGION_INFO, &mut info) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((info.flags, info.size, info.offset))
}

/// `VFIO_DEVICE_RESET`, with its error surfaced.
pub fn reset_device(device: &File) -> io::Result<()> {
    // SAFETY: VFIO_DEVICE_RESET takes no argument and touches no process memory.
    let rc = unsafe { ioctl(device, VFIO_DEVICE_RESET) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The soft `RLIMIT_MEMLOCK` of this process in bytes (`u64::MAX` when unlimited).
pub fn memlock_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if lim.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        lim.rlim_cur
    })
}

/// Whether this process can lock memory regardless of the limit (root, CAP_IPC_LOCK).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and has no memory effects.
    unsafe { libc::geteuid() == 0 }
}
