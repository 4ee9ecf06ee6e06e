//! What the daemon shows the people running it.
//!
//! Two audiences read one state. Prometheus scrapes numbers to keep and
//! graph; an operator runs `strata-ctl status` for one document, now. Both
//! read the same two sources: the kernel's counters in the pinned maps
//! (which outlive the daemon) and the view the control loop publishes after
//! each decision. Each follows the same shape — gather every input with its
//! I/O in one place, then turn the values into output with a pure function
//! tested on values built by hand:
//!
//! * [`view`] — the published view the daemon updates and both read;
//! * [`metrics`] — the Prometheus exposition: [`metrics::gather`](fn@metrics::gather) then
//!   [`metrics::encode`](fn@metrics::encode), served over HTTP;
//! * [`status`] — `strata-ctl status`: [`status::DaemonView::gather`] then
//!   [`status::build`], over a unix socket, and its rendering;
//! * [`bitrate`] — what fits within the deadline ([`bitrate::document`]),
//!   pushed at 10 Hz to the sources over a unix socket.
//!
//! With the daemon down, `status` falls back to the kernel's pinned maps.

pub mod bitrate;
pub mod metrics;
pub mod reload;
pub mod status;
pub mod view;
