//! Emulated cellular links.
//!
//! The kernel here has no netem, so delay, jitter, loss and capacity are
//! emulated in userspace. Each emulated link sits in its own "air" namespace
//! between the edge's link interface and the carrier, and bridges Ethernet
//! frames between the two (see [`bridge`]), each direction shaped by a
//! [`model::Direction`]: blackout, loss, drop-tail buffer, trace-driven
//! capacity, delay and jitter. The model is pure and driven by the clock the
//! caller passes in; [`trace`] reads and writes mahimahi capacity traces,
//! [`cellular`] makes realistic synthetic ones and [`trace_stats`] measures
//! how either moves.

pub mod bridge;
pub mod calibrate;
pub mod cellular;
pub mod model;
pub mod trace;
pub mod trace_stats;
