//! Definitions shared by the Strata kernel programs and userspace.
//!
//! Everything here is `no_std`, `#[repr(C)]` with explicit padding, and free of
//! I/O, so that the eBPF programs (`strata-ebpf`) and the controller
//! (`strata-ctl`) agree byte for byte on:
//!
//! * the **wire header** every tunnelled packet carries ([`wire`]),
//! * the **delivery classes** and the table the kernel classifies by ([`class`]),
//! * the **outer IPv4/UDP headers** and their checksum ([`packet`]),
//! * the **map keys and values** the controller writes and the kernel reads, and
//!   the counters flowing the other way ([`maps`]),
//! * the **authentication tag** and its keys ([`auth`]),
//! * the **drop reasons** under which every discarded packet is counted ([`drop`](mod@drop)),
//! * sequence-number arithmetic that survives wrap-around ([`seq`]),
//! * the maps' names ([`maps::names`]), the schedule's double-buffer flip
//!   ([`schedule`]), the units of a link's send budget ([`budget`]) and the
//!   buckets of the queueing-delay histogram ([`histogram`]),
//!
//! and the controller, the lab and the benchmarks agree on what a percentile
//! is ([`stats`]).
//!
//! The `user` feature adds `aya::Pod` impls so userspace can read and write the
//! map types directly.
#![no_std]

pub mod auth;
pub mod budget;
pub mod class;
pub mod drop;
pub mod histogram;
pub mod maps;
pub mod packet;
pub mod schedule;
pub mod seq;
pub mod stats;
pub mod wire;

#[cfg(feature = "user")]
mod pod {
    //! Map values cross the user/kernel boundary as raw bytes.
    use crate::{
        auth::AuthKey,
        class::{ClassCounters, ClassTable},
        maps::{
            Endpoint, LinkCounters, LinkPace, LinkTx, LinkTx6, Queued, RxLinkState, RxQueued, SampleConfig,
            Schedule, TunnelConfig, TxSeq,
        },
    };

    macro_rules! pod {
        ($($t:ty),*) => {$(
            // SAFETY: `#[repr(C)]`, only integer fields, explicit padding: every bit pattern is valid.
            unsafe impl aya::Pod for $t {}
        )*};
    }
    pod!(
        AuthKey,
        ClassCounters,
        ClassTable,
        Endpoint,
        LinkCounters,
        LinkPace,
        LinkTx,
        LinkTx6,
        Queued,
        RxLinkState,
        RxQueued,
        SampleConfig,
        Schedule,
        TunnelConfig,
        TxSeq
    );
}
