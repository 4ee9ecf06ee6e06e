//! The controller's view of each link: estimation from in-band evidence.
//!
//! Pure code driven by a clock the caller passes in (`Duration` since an
//! arbitrary start), so it runs the same on simulated time in tests as on
//! the real clock in the daemon. The sockets and maps that feed it live
//! elsewhere.

pub mod estimator;
pub mod window;
