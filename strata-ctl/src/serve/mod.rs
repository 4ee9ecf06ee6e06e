//! What the daemon shows the people running it.
//!
//! * [`view`] — the published view the daemon updates and both read;
//! * [`metrics`] — the Prometheus exposition;
//! * [`status`] — `strata-ctl status` over a unix socket, and its rendering.
//!
//! Both read the same published view, which the daemon updates; with the
//! daemon down, `status` falls back to the kernel's pinned maps.

pub mod metrics;
pub mod status;
pub mod view;
