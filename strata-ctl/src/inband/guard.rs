//! What the control channel turned away, counted.
//!
//! The hub faces the internet and the edge's probe sockets are reachable
//! by anyone who can address them: each defence of the in-band channel and
//! of the served sockets drops what it refuses and counts it here, so an
//! attack shows in `/metrics` (docs/OPERATIONS.md) instead of only in its
//! effects.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the probers, the hub's responder and the servers.
#[derive(Debug, Default)]
pub struct GuardCounters {
    /// Edge: replies and feedback whose source was not the link's hub.
    pub foreign_source: AtomicU64,
    /// Edge: feedback whose sequence number did not increase (stale or replayed).
    pub stale_feedback: AtomicU64,
    /// Edge: probe replies whose probe number did not increase (replayed or late).
    pub stale_reply: AtomicU64,
    /// Hub: probes whose number did not increase on the link (replayed or late).
    pub stale_probe: AtomicU64,
    /// Hub: probes not answered because the link's rate was exceeded.
    pub probes_limited: AtomicU64,
    /// `/metrics`: connections closed at once because too many were open.
    pub metrics_refused: AtomicU64,
    /// `/metrics`: connections dropped for not completing in time.
    pub metrics_timed_out: AtomicU64,
    /// Status socket: connections closed at once because too many were open.
    pub status_refused: AtomicU64,
}

/// A copy of [`GuardCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardSnapshot {
    /// See [`GuardCounters::foreign_source`].
    pub foreign_source: u64,
    /// See [`GuardCounters::stale_feedback`].
    pub stale_feedback: u64,
    /// See [`GuardCounters::stale_reply`].
    pub stale_reply: u64,
    /// See [`GuardCounters::stale_probe`].
    pub stale_probe: u64,
    /// See [`GuardCounters::probes_limited`].
    pub probes_limited: u64,
    /// See [`GuardCounters::metrics_refused`].
    pub metrics_refused: u64,
    /// See [`GuardCounters::metrics_timed_out`].
    pub metrics_timed_out: u64,
    /// See [`GuardCounters::status_refused`].
    pub status_refused: u64,
}

impl GuardCounters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> GuardSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GuardSnapshot {
            foreign_source: get(&self.foreign_source),
            stale_feedback: get(&self.stale_feedback),
            stale_reply: get(&self.stale_reply),
            stale_probe: get(&self.stale_probe),
            probes_limited: get(&self.probes_limited),
            metrics_refused: get(&self.metrics_refused),
            metrics_timed_out: get(&self.metrics_timed_out),
            status_refused: get(&self.status_refused),
        }
    }
}
