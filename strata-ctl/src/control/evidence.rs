//! What the in-band channel tells the controller about a link.
//!
//! The probers (see [`crate::inband`]) turn datagrams into these values; the
//! controller turns them into estimates. Keeping them plain values is what
//! lets the controller's tests replay any sequence of evidence on simulated
//! time.

use std::time::Duration;

use strata_common::wire::FeedbackPayload;

/// In-band evidence about a link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Evidence {
    /// A probe came back after this round trip.
    RoundTrip {
        /// Link id.
        link: u8,
        /// Round trip.
        rtt: Duration,
    },
    /// A packet train measured the link's bottleneck rate.
    Train {
        /// Link id.
        link: u8,
        /// Mbit/s.
        mbit_s: f64,
    },
    /// The hub's counters for the link.
    Feedback {
        /// Link id.
        link: u8,
        /// What the hub's kernel counted.
        counters: FeedbackPayload,
        /// When the hub sent it, µs on the hub's own clock (0: not stamped).
        hub_time_us: u32,
    },
}
