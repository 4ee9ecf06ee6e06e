//! `strata-ctl`: the controller of a Strata bonded tunnel.
//!
//! The controller decides, the kernel forwards. This crate loads the eBPF data
//! plane, creates the tunnel device, writes link and schedule maps from a
//! typed configuration, and reads back what the kernel counted. Decisions are
//! pure code ([`config`], [`schedule`]); I/O stays in thin modules
//! ([`datapath`] for aya, [`net`] for rtnetlink, [`tun`] for the device).

pub mod advisors;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod datapath;
pub mod link;
pub mod metrics;
pub mod net;
pub mod os;
pub mod probe;
pub mod rebind;
pub mod sampling;
pub mod schedule;
pub mod stats;
pub mod status;
pub mod testbed;
pub mod tun;
