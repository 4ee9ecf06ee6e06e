//! OS advisors: what Linux can tell about the links; hints only, never truth.
//!
//! The in-band channel decides whether a link is alive and usable (brief,
//! principle 1). What the kernel says here only makes transitions faster
//! and link knowledge richer: which device and driver sit behind an
//! interface, whether the same modem came back under another name, and
//! when devices appear or vanish. Every facility is optional; a missing one
//! is an error the caller reports once, never a crash.
//!
//! * [`sysfs`] — the facts of one interface (bus, driver, framing, MTU, USB
//!   identity) read from a sysfs tree;
//! * [`identity`] — a stable identity for a link built from those facts, so
//!   a modem that re-enumerates keeps its history and labels;
//! * [`uevent`] — kernel uevents (device add/remove/change) from a netlink
//!   socket, with no udevd needed.

pub mod identity;
pub mod sysfs;
pub mod uevent;
