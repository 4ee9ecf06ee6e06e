//! OS advisors: what Linux can tell about the links — hints only, never
//! truth (brief, principle 1).
//!
//! The in-band channel decides whether a link is alive and usable. The
//! operating system knows some things sooner (a carrier lost, an address
//! changed, a modem gone from the USB bus) and some things the channel
//! cannot see at all (what the device is, its radio). Each advisor here is
//! optional and independent: the `os_signals` tier chooses which run, and a
//! facility that is missing is reported once (log, status, metrics) while
//! the others and the data path carry on.
//!
//! * [`netlink`] — rtnetlink events: interfaces, carrier, addresses, routes;
//! * [`sysfs`] — the facts of one interface (bus, driver, framing, MTU, USB
//!   identity) read from a sysfs tree;
//! * [`identity`] — a stable identity for a link built from those facts, so
//!   a modem that re-enumerates keeps its history and labels;
//! * [`uevent`] — kernel uevents (device add/remove/change) from a netlink
//!   socket, with no udevd needed;
//! * [`modem_manager`] — ModemManager over D-Bus: each modem's state,
//!   access technology, operator, cell and signal, and early warnings
//!   (handover, signal collapse) drawn from their changes;
//! * [`advisors`] — the tier's advisors started as tasks feeding one event
//!   stream;
//! * [`follow`] — how a link follows its interface through those events
//!   (pure reactions, carried out by the daemon);
//! * [`kind`] — what a link is (cellular, Wi-Fi, wired, virtual) from sysfs
//!   facts and in-band behaviour, with a confidence.
//!
//! The host the daemon runs on, beside the advisors:
//!
//! * [`net`] — rtnetlink requests: interfaces, addresses, routes, neighbours,
//!   qdisc statistics;
//! * [`tun`] — the tunnel device;
//! * [`host`] — preflight, the instance lock, the daemon's own mounts;
//! * [`notify`] — the other direction: telling whoever started the daemon
//!   (systemd, the lab) that it is ready or stopping (sd_notify(3)).

pub mod advisors;
pub mod follow;
pub mod host;
pub mod identity;
pub mod kind;
pub mod modem_manager;
pub mod net;
pub mod netlink;
pub mod notify;
pub mod privilege;
pub mod sysfs;
pub mod tun;
pub mod uevent;
