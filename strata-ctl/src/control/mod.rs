//! Pure decisions: from in-band evidence to the kernel's weights and budgets.
//!
//! * [`evidence`] — what the in-band channel reports about a link;
//! * [`train`] — a link's bottleneck rate from a packet train's arrivals;
//! * [`window`] — samples over a sliding time window, as percentiles;
//! * [`estimator`] — what a link is doing: delay percentiles, jitter, loss and
//!   its burstiness, capacity, a queue building, throughput collapse, and a
//!   prediction 0.75 s ahead;
//! * [`lifecycle`] — whether it may carry traffic: init → probe → warm → live
//!   ⇄ degraded → cooldown → gone, fast demotion, slow re-admission;
//! * [`scoring`] — weights and send budgets for the kernel;
//! * [`schedule`] — weights as the kernel's slot table;
//! * [`controller`] — the links together: evidence in, a decision per tick out;
//! * [`fit`] — the bitrate the bond can carry within the deadline, now and
//!   over the next second, for the source to adapt to.
//!
//! Everything here is driven by a clock the caller passes in (`Duration`
//! since an arbitrary start), so it runs the same on simulated time in tests
//! as on the real clock in the daemon. No sockets, no clock reads, no
//! logging: the sockets and maps that feed it live in [`crate::inband`] and
//! [`crate::dataplane`], and what it decides is returned as values for the
//! daemon to apply and log.

pub mod controller;
pub mod estimator;
pub mod evidence;
pub mod fit;
pub mod lifecycle;
pub mod rate;
pub mod schedule;
pub mod scoring;
pub mod train;
pub mod window;

#[cfg(test)]
mod simulated;
