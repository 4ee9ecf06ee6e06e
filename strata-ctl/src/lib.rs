//! `strata-ctl`: the controller of a Strata bonded tunnel.
//!
//! The controller decides, the kernel forwards. The crate is layered so that
//! decisions stay pure and I/O stays thin (the way quinn separates quinn-proto
//! from quinn-udp); each layer may use only the layers listed before it:
//!
//! * [`control`] — pure decisions: each link's estimator and lifecycle, the
//!   scorer, the controller, the kernel schedule. No sockets, no clock reads,
//!   no logging: time comes in as an argument, transitions go out as values.
//! * [`config`] — the typed configuration, validated when it is read.
//! * [`dataplane`] — the kernel as seen from userspace: load, attach, pin,
//!   map writers, counters, sampling.
//! * [`os`] — the host: rtnetlink, the TUN device, sysfs, uevents,
//!   ModemManager, and the advisors built on them.
//! * [`inband`] — the in-band channel: the edge's probers, the hub's
//!   responder and feedback.
//! * [`serve`] — what the daemon shows: the published view, Prometheus
//!   metrics, `strata-ctl status`.
//! * [`daemon`] — start and stop order and the event loop that wires the
//!   layers together.
//!
//! The rule is checked by `cargo xtask layers` (a test in CI).

pub mod auth;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod inband;
pub mod os;
pub mod serve;
pub mod testbed;
