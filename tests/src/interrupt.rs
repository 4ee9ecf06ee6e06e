//! Stopping a lab run on SIGINT or SIGTERM.
//!
//! Without a handler, SIGTERM kills the process outright: no destructor
//! runs, so the daemons keep running and the namespaces, pins and policy
//! rules stay behind. [`install`] replaces the default action with one that
//! only records the signal; the lab's waits poll [`requested`] (through
//! [`check`] and [`sleep`]) and return [`Interrupted`], and the error
//! unwinds through the Drop-based teardown of the stage (daemons stopped,
//! links stopped, namespaces removed).
//!
//! The handler uses `sigaction` from `nix` (already a dependency) rather
//! than the `signal-hook` crate: it does one atomic store, which is
//! async-signal-safe, and needs nothing more.

use std::{
    sync::atomic::{AtomicI32, Ordering},
    time::{Duration, Instant},
};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// The signal received (0: none yet).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// How often waits look at the flag: well under the promised 1 s.
const POLL: Duration = Duration::from_millis(20);

/// The run stopped because it was asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {signal}")]
pub struct Interrupted {
    /// The signal that asked.
    pub signal: Signal,
}

impl Interrupted {
    /// The conventional exit code of a process ended by this signal
    /// (128 + its number), so a caller can tell an interruption apart.
    pub fn exit_code(self) -> u8 {
        // SIGINT and SIGTERM are 2 and 15: the sum fits.
        (128 + self.signal as i32) as u8
    }
}

extern "C" fn record(signal: libc::c_int) {
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// Installs the SIGINT and SIGTERM handler (idempotent).
pub fn install() -> Result<(), nix::Error> {
    // SA_RESTART: a read or wait in progress resumes; the flag is seen at
    // its next poll rather than as a stray EINTR somewhere unprepared.
    let action = SigAction::new(SigHandler::Handler(record), SaFlags::SA_RESTART, SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// The signal received since [`install`], if any.
pub fn requested() -> Option<Interrupted> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok().map(|signal| Interrupted { signal }),
    }
}

/// `Err(Interrupted)` once a signal came.
pub fn check() -> Result<(), Interrupted> {
    requested().map_or(Ok(()), Err)
}

/// Sleeps `duration`, returning early with `Err` when a signal comes.
pub fn sleep(duration: Duration) -> Result<(), Interrupted> {
    let end = Instant::now() + duration;
    loop {
        check()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(POLL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(Interrupted { signal: Signal::SIGINT }.exit_code(), 130);
        assert_eq!(Interrupted { signal: Signal::SIGTERM }.exit_code(), 143);
    }
}
