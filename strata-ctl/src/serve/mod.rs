//! What the daemon shows the people running it.
//!
//! * [`metrics`] — the published view and the Prometheus exposition;
//! * [`status`] — `strata-ctl status` over a unix socket, and its rendering.
//!
//! Both read the same published view, which the daemon updates; with the
//! daemon down, `status` falls back to the kernel's pinned maps.

pub mod metrics;
pub mod status;
