//! The in-band channel: what travels beside the data on every link.
//!
//! * [`auth`] — the key control packets are tagged with;
//! * [`hub`] — the hub's probe responder and per-link feedback;
//! * [`prober`] — the edge's per-link probe sockets: round trips, packet
//!   trains, and the hub's feedback turned into evidence for the controller.
//!
//! The decisions drawn from that evidence are [`crate::control`]'s.

pub mod auth;
pub mod hub;
pub mod prober;
