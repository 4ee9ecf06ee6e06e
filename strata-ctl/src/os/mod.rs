//! OS advisors: what Linux can tell about the links; hints only, never truth.
//!
//! An advisor may make a link's transition faster (demote on a warning,
//! pre-warm on a recovery) but never makes a link usable: only in-band probes
//! do that (brief, principle 1). Every advisor is optional and reports why it
//! is unavailable instead of failing the daemon.

pub mod modem_manager;
