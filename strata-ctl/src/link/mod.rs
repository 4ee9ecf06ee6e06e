//! The controller's view of each link, from in-band evidence to kernel weights.
//!
//! * [`window`] — samples over a sliding time window, as percentiles;
//! * [`estimator`] — what a link is doing: delay percentiles, jitter, loss and
//!   its burstiness, capacity, a queue building, throughput collapse, and a
//!   prediction 0.75 s ahead;
//! * [`lifecycle`] — whether it may carry traffic: init → probe → warm → live
//!   ⇄ degraded → cooldown → gone, fast demotion, slow re-admission;
//! * [`scoring`] — weights and send budgets for the kernel;
//! * [`follow`] — how a link follows its interface through OS events;
//! * [`kind`] — what the link is (cellular, Wi-Fi, wired, virtual), from
//!   sysfs facts and in-band behaviour, with a confidence.
//!
//! Pure code driven by a clock the caller passes in (`Duration` since an
//! arbitrary start), so it runs the same on simulated time in tests as on
//! the real clock in the daemon. The sockets and maps that feed it live
//! elsewhere.

pub mod estimator;
pub mod follow;
pub mod kind;
pub mod lifecycle;
pub mod scoring;
pub mod window;
