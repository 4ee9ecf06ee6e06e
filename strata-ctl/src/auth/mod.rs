//! Trust: who may open a session, and the keys it runs under (issue 14).
//!
//! * [`keys`] — static X25519 keys: `strata-ctl keygen`, key files, hex text;
//! * [`message`] — the handshake messages' layout and their pure parser;
//! * [`handshake`] — Noise IK (`snow`) for the edge ([`handshake::Initiator`])
//!   and the hub ([`handshake::Responder`], with its allowlist), producing
//!   per-direction [`handshake::SessionKeys`];
//! * [`session`] — when the edge handshakes (first contact, retries,
//!   rekeying) and the [`session::KeyRing`] that keeps the previous keys for
//!   an overlap;
//! * [`limiter`] — the hub's token bucket against initiation floods.
//!
//! All of it is free of I/O; the daemon's glue (`daemon::trust`) carries the
//! messages over the tunnel port and hands the keys on. The wire format is
//! in docs/WIRE.md, "Handshake".

pub mod handshake;
pub mod keys;
pub mod limiter;
pub mod message;
pub mod session;
