//! Strata's kernel data plane.
//!
//! Two tc programs carry every tunnelled packet; userspace never touches one:
//!
//! * [`tunnel_egress`] runs at tc egress of the tunnel device (a TUN). For each
//!   packet an application sends into the tunnel it assigns the global
//!   sequence, picks a link from the controller's schedule, encapsulates
//!   (outer IPv4 or IPv6, as the link's peer, + UDP + Strata header), counts,
//!   and redirects to the link's
//!   interface with the kernel's neighbour table filling in the L2 header.
//! * [`link_ingress`] runs at tc ingress of every link interface (edge) or of
//!   the public interface (hub). It hands everything that is not addressed
//!   to the Strata port on to the next program attached there (`TCX_NEXT`),
//!   validates the rest, drops and counts malformed or foreign packets by
//!   reason, hands probes and control packets to the controller's socket,
//!   rejects replayed and stale packets (an anti-replay window), records
//!   per-link statistics, learns the hub's peer endpoints from packets that
//!   passed all that, and delivers decapsulated inner packets on the tunnel
//!   device.
//!
//!   The egress program has no foreign traffic to pass on: everything routed
//!   into the tunnel device is the tunnel's, and what it cannot send is
//!   dropped and counted (`not_ip`, `no_link`, …).
//!
//! Optional [`sampling`] programs on three tracepoints measure the links' own
//! host queues: queueing delay and kernel drops by reason.
//!
//! Helpers are small and single-purpose: bounds-checked packet access
//! ([`ptr`]), maps ([`maps`]), counters ([`counters`]), delivery classes
//! ([`classify`]), link choice
//! ([`schedule`]), encapsulation ([`encap`]), receive bookkeeping
//! ([`receive`]) and packet authentication ([`auth`]).
#![no_std]
#![no_main]
// Atomic RMW intrinsics (see `atomic`); the crate is built with RUSTC_BOOTSTRAP=1.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod atomic;
mod auth;
mod classify;
mod counters;
mod csum;
mod encap;
mod link_ingress;
mod maps;
mod ptr;
mod receive;
mod sampling;
mod schedule;
mod tunnel_egress;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any program that could reach a panic; this is never called.
    loop {}
}

/// GPL-compatible so the kernel allows the helpers used here.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
