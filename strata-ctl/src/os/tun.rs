//! The tunnel device: a layer-3 TUN interface.
//!
//! Applications route into it like into any interface. The kernel programs do
//! all the work at its tc egress and deliver decapsulated packets into its
//! receive path, so the file descriptor is never read or written.
//!
//! The device is made *persistent* (`TUNSETPERSIST`): it outlives the
//! descriptor, so a daemon that crashes or is killed leaves it in place with
//! its addresses, routes and attached programs, and forwarding goes on (the
//! data plane never waits for the controller). Without a process attached
//! the device loses its carrier, which matters to nobody here: egress
//! packets are redirected by the tc program before the device's queue, and
//! decapsulated packets are delivered into its receive path, which only
//! needs it up. A starting daemon attaches to the existing device by name
//! (`TUNSETIFF` on an existing persistent TUN device re-attaches to it), and
//! only a clean stop ([`Tun::remove`]) turns persistence off, which removes
//! the device as the descriptor closes.
//!
//! TUN devices cannot be created over rtnetlink (the kernel's tun driver has
//! no `newlink`), hence the ioctls here; every other setting goes through
//! [`crate::os::net`].

use std::{
    fs::{File, OpenOptions},
    os::fd::AsRawFd as _,
};

/// An open TUN device.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
    existed: bool,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl Tun {
    /// Creates the persistent TUN device `name`, without packet info
    /// headers, or attaches to it if it exists (left by a daemon that was
    /// killed or stopped with the data plane kept).
    pub fn create(name: &str) -> std::io::Result<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("tunnel name {name:?} must be 1-15 bytes"),
            ));
        }
        // Looked at before TUNSETIFF, which creates it if missing.
        let existed = std::ffi::CString::new(name)
            // SAFETY: if_nametoindex reads a NUL-terminated string.
            .is_ok_and(|c| unsafe { libc::if_nametoindex(c.as_ptr()) } != 0);
        let file = OpenOptions::new().read(true).write(true).open("/dev/net/tun").map_err(|e| {
            std::io::Error::new(e.kind(), format!("open /dev/net/tun: {e} (is the tun driver available?)"))
        })?;
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: 0, _pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        req.flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReq` lays out.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
        if ret < 0 {
            let e = std::io::Error::last_os_error();
            let hint = if existed && e.raw_os_error() == Some(libc::EBUSY) {
                " (another process holds it: is a daemon of this instance still running?)"
            } else if existed && e.raw_os_error() == Some(libc::EINVAL) {
                " (a device of that name exists and is not a Strata TUN device)"
            } else {
                ""
            };
            return Err(std::io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}{hint}")));
        }
        let tun = Self { file, name: name.into(), existed };
        tun.set_persist(true)?;
        Ok(tun)
    }

    fn set_persist(&self, on: bool) -> std::io::Result<()> {
        // SAFETY: TUNSETPERSIST takes its argument by value.
        let ret = unsafe { libc::ioctl(self.file.as_raw_fd(), libc::TUNSETPERSIST, libc::c_ulong::from(on)) };
        if ret < 0 {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::new(e.kind(), format!("TUNSETPERSIST {} {on}: {e}", self.name)));
        }
        Ok(())
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the device was there before [`Tun::create`] (adopted).
    pub fn existed(&self) -> bool {
        self.existed
    }

    /// Keeps the descriptor alive as long as `self` (used by callers that
    /// only need the device to exist).
    pub fn fd(&self) -> &File {
        &self.file
    }

    /// Removes the device: persistence off, then the descriptor closed.
    pub fn remove(self) -> std::io::Result<()> {
        self.set_persist(false)
    }

    /// Leaves the device in place (persistent) for the next daemon.
    pub fn keep(self) {
        drop(self.file);
    }
}
