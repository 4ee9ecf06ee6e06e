//! The kernel data plane as seen from userspace.
//!
//! The eBPF programs forward; this layer puts them in place and talks to
//! them only through maps:
//!
//! * [`datapath`] — load the object, attach to tc, pin the maps, and the
//!   typed map writers (configuration, links, schedule, peers);
//! * [`stats`] — what the kernel counted, read from live or pinned maps;
//! * [`backlog`] — each link's backlog as the kernel's scheduler prices it;
//! * [`sampling`] — the tracepoints that sample host queueing delay and
//!   kernel drops, and the reading of their maps.
//!
//! Nothing here decides: values come from [`crate::control`] and
//! [`crate::config`], and every failure is a [`datapath::DatapathError`]
//! naming the map or program.

pub mod backlog;
pub mod datapath;
pub mod error;
pub mod sampling;
pub mod stats;
