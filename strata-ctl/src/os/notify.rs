//! Readiness for whoever started the daemon: the service manager's
//! notification protocol, sd_notify(3).
//!
//! A daemon is *ready* when everything it serves is up — data plane
//! attached, status socket listening, metrics served, controller and
//! advisors running. Whoever started it (systemd with `Type=notify`, the
//! lab, a test) must be able to rely on that moment, and a log line is no
//! such contract: it is printed where it is printed, lines get reworded and
//! moved, and the lab used to start tests on "data plane attached", logged
//! before the status socket existed (status tests failed one run in three
//! with the socket not found). So the daemon says `READY=1` once, right
//! before it enters its serve loop, and `STOPPING=1` when it begins to shut
//! down.
//!
//! The protocol (sd_notify(3), "the notification socket"): the starter
//! passes `$NOTIFY_SOCKET`, the address of a unix datagram socket — a path
//! if it starts with `/`, a name in the abstract namespace if it starts with
//! `@` — and the daemon sends it newline-separated `KEY=VALUE` assignments
//! in one datagram (`READY=1`, `STOPPING=1`, `STATUS=free text`). No
//! variable: nobody listens, nothing is sent. Notification is a courtesy to
//! the starter, never a reason to fail: errors are logged at debug level.
//!
//! Hand-written rather than the `sd-notify` crate: it is a dozen lines, and
//! that crate (0.5.0) connects to `$NOTIFY_SOCKET` as a path, so an
//! abstract `@` address — what systemd passes to some services — would not
//! be reached. (An abstract name belongs to a network namespace; the lab,
//! which starts daemons in other namespaces, passes a path.)

use std::{
    ffi::OsStr,
    io,
    os::{
        linux::net::SocketAddrExt as _,
        unix::{
            ffi::OsStrExt as _,
            net::{SocketAddr, UnixDatagram},
        },
    },
};

use tracing::debug;

/// The environment variable naming the socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Everything the daemon serves is up.
pub fn ready() {
    notify("READY=1\nSTATUS=serving");
}

/// Shutdown has begun.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=shutting down");
}

/// Alive: the event loop turned (systemd's `WatchdogSec=`; a daemon that
/// stops sending this within the period is restarted).
pub fn watchdog() {
    notify("WATCHDOG=1");
}

/// How often to send [`watchdog`]: half the service manager's period
/// (`$WATCHDOG_USEC`, sd_watchdog_enabled(3)), so one late turn of the loop
/// is not yet a failure. `None` when no watchdog is asked for, or it is
/// meant for another process (`$WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// [`watchdog_interval`] from the variables' values (pure, for tests).
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Option<std::time::Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(std::time::Duration::from_micros(usec / 2))
}

/// A one-line status for the service manager (`systemctl status` shows it).
pub fn status(text: &str) {
    notify(&format!("STATUS={}", text.replace('\n', " ")));
}

/// Sends `state` to `$NOTIFY_SOCKET`, if set; failures are only logged.
fn notify(state: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else { return };
    if let Err(e) = send(&socket, state) {
        debug!(socket = %socket.to_string_lossy(), "service manager not notified ({state:?}): {e}");
    }
}

/// Sends one datagram of `state` to the notification socket `socket`: a
/// path, or an abstract name after `@`.
pub fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let bytes = socket.as_bytes();
    let addr = match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])?,
        Some(b'/') => SocketAddr::from_pathname(socket)?,
        // sd_notify(3) also names vsock addresses (a VM's host); not ours.
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "neither a path nor @abstract")),
    };
    let sent = UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "datagram truncated"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{ffi::OsString, time::Duration};

    use super::*;

    #[test]
    fn the_watchdog_pings_at_half_the_period_and_only_for_its_own_pid() {
        assert_eq!(watchdog_interval_from(Some("10000000"), None, 7), Some(Duration::from_secs(5)));
        assert_eq!(watchdog_interval_from(Some("10000000"), Some("7"), 7), Some(Duration::from_secs(5)));
        assert_eq!(watchdog_interval_from(Some("10000000"), Some("8"), 7), None, "another process's");
        assert_eq!(watchdog_interval_from(None, None, 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 7), None);
    }

    fn receive(listener: &UnixDatagram) -> String {
        listener.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 512];
        let n = listener.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_reaches_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("strata-notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1\nSTATUS=serving").unwrap();
        assert_eq!(receive(&listener), "READY=1\nSTATUS=serving");
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stopping_reaches_an_abstract_socket() {
        let name = format!("strata-notify-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        send(&OsString::from(format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(receive(&listener), "STOPPING=1");
    }

    #[test]
    fn nobody_listening_or_a_bad_address_is_an_error_to_log_not_a_panic() {
        assert!(send(OsStr::new("/nonexistent/strata/notify"), "READY=1").is_err());
        assert!(send(OsStr::new("relative"), "READY=1").is_err());
        assert!(send(OsStr::new(""), "READY=1").is_err());
    }
}
