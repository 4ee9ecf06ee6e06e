//! The tunnel device: a layer-3 TUN interface.
//!
//! Applications route into it like into any interface. The kernel programs do
//! all the work at its tc egress and deliver decapsulated packets into its
//! receive path, so the file descriptor is never read or written; holding it
//! open is what keeps the device present and its carrier up. Closing it (the
//! daemon exiting) removes the device.
//!
//! TUN devices cannot be created over rtnetlink (the kernel's tun driver has
//! no `newlink`), hence the `TUNSETIFF` ioctl here; every other setting goes
//! through [`crate::os::net`].

use std::{
    fs::{File, OpenOptions},
    os::fd::AsRawFd as _,
};

/// An open TUN device.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl Tun {
    /// Creates (or attaches to) the TUN device `name`, without packet info headers.
    pub fn create(name: &str) -> std::io::Result<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("tunnel name {name:?} must be 1-15 bytes"),
            ));
        }
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
            return Err(std::io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
        }
        Ok(Self { file, name: name.into() })
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keeps the descriptor alive as long as `self` (used by callers that
    /// only need the device to exist).
    pub fn fd(&self) -> &File {
        &self.file
    }
}
