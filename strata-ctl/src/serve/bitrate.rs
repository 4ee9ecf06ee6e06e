//! The bitrate socket: what fits within the deadline, pushed to the sources.
//!
//! A live encoder on the car adapts its bitrate to what the bond carries.
//! The control loop computes that at each tick ([`crate::control::fit`]) and
//! publishes it in the [`Exposition`]; this module pushes it, [`PERIOD`]
//! apart (10 Hz), to every process connected to a local unix socket next to
//! the status socket, `/run/strata/<name>.bitrate.sock` ([`socket_path`];
//! root only, or root and the `[status] group`, like the status socket).
//!
//! The protocol is a stream of newline-delimited JSON, one [`Message`] per
//! line, from the moment of connection (the latest value at once, then one
//! per period) until either side closes; the subscriber sends nothing.
//! docs/BITRATE.md documents the fields, their units and how an encoder
//! should use them; `scripts/strata-bitrate.py` is an example subscriber.
//!
//! Subscribers never hold the daemon up. The control loop only replaces a
//! value; a broadcaster task turns it into a line each period and hands it
//! to every subscriber through a `watch` channel, which keeps only the
//! latest line — a subscriber that falls behind skips lines (counted, and
//! visible to it as a gap in `seq`) rather than queueing them. Each
//! subscriber's socket buffer is small ([`SEND_BUFFER`]); one that has not
//! taken a line for [`STALL_LIMIT`] is disconnected (counted), and at most
//! [`MAX_SUBSCRIBERS`] are served at once.
//!
//! [`document`] turns the published view into what is shown — here, in
//! `strata-ctl status` and in the metrics — and is pure.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::AsyncWriteExt as _,
    net::{UnixListener, UnixStream},
    sync::watch,
    time::{MissedTickBehavior, interval},
};
use tracing::debug;

use crate::{
    control::fit::Excluded,
    os::host::RUN_DIR,
    serve::view::{BitrateView, Exposition},
};

/// How often a line is pushed: 10 Hz, what the issue asks of the signal at
/// the least (an encoder's rate control reacts within a few frames).
pub const PERIOD: Duration = Duration::from_millis(100);
/// Subscribers served at once; more are told so and closed.
pub const MAX_SUBSCRIBERS: u64 = 32;
/// Send buffer of each subscriber's socket, bytes: a few seconds of lines
/// (each ~250-500 bytes, and the kernel charges its own overhead per line)
/// for a subscriber that reads late, not minutes of them.
pub const SEND_BUFFER: usize = 16 * 1024;
/// A subscriber whose buffer stayed full this long is disconnected.
pub const STALL_LIMIT: Duration = Duration::from_secs(2);
/// A computation older than this is not passed on as current: the control
/// loop has stopped updating it.
pub const STALE_AFTER: Duration = Duration::from_secs(1);
/// Version of the message format ([`Message::v`]); fields are only ever
/// added within a version.
pub const FORMAT_VERSION: u32 = 1;

/// The bitrate socket of instance `name`.
pub fn socket_path(name: &str) -> PathBuf {
    std::path::Path::new(RUN_DIR).join(format!("{name}.bitrate.sock"))
}

/// What fits within the deadline, as shown (socket, status, metrics).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bitrate {
    /// The one-way delay budget, ms.
    pub deadline_ms: u64,
    /// Payload bits per second the bond carries within the deadline now;
    /// `null` when unknown (see `reason`).
    pub now_bps: Option<u64>,
    /// The same, predicted for the next second.
    pub next_second_bps: Option<u64>,
    /// Links that add to `now_bps`.
    pub links_counted: u32,
    /// Why the rates are unknown; absent when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Age of the computation, ms (it runs at the control rate, 20 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// Each link's part.
    #[serde(default)]
    pub links: Vec<LinkBitrate>,
}

/// One link's part of [`Bitrate`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkBitrate {
    /// Link id.
    pub id: u8,
    /// What it adds now, bits per second.
    pub now_bps: u64,
    /// What it adds over the next second.
    pub next_second_bps: u64,
    /// Why it adds nothing now: `not_carrying`, `unmeasured` or `late`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<String>,
}

/// One line on the socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Format version ([`FORMAT_VERSION`]).
    pub v: u32,
    /// Sequence number of the line, from 1 at the daemon's start: a gap is
    /// lines this subscriber did not get.
    pub seq: u64,
    /// When the line was made, Unix time in ms.
    pub unix_ms: u64,
    /// What fits.
    #[serde(flatten)]
    pub bitrate: Bitrate,
}

/// What `view` shows at `now`: the rates, rounded to whole bits per second,
/// or `null` with the reason — not computed (static mode, the hub, no
/// controller), no link measured yet, or a computation older than
/// [`STALE_AFTER`]. Pure.
pub fn document(view: &BitrateView, now: SystemTime) -> Bitrate {
    let age = view.at.map(|t| now.duration_since(t).unwrap_or_default());
    let mut out = Bitrate {
        deadline_ms: view.deadline.as_millis() as u64,
        age_ms: age.map(|a| a.as_millis() as u64),
        ..Bitrate::default()
    };
    let Some(fit) = &view.fit else {
        out.reason =
            Some(if view.unknown.is_empty() { "not computed yet".into() } else { view.unknown.clone() });
        return out;
    };
    out.links = fit
        .links
        .iter()
        .map(|l| LinkBitrate {
            id: l.id,
            now_bps: bps(l.now_bps),
            next_second_bps: bps(l.next_second_bps),
            excluded: l.excluded_now.map(|e| Excluded::name(e).to_string()),
        })
        .collect();
    out.links_counted = fit.links_counted as u32;
    match age {
        Some(a) if a > STALE_AFTER => {
            out.reason = Some(format!("stale: the controller has not updated it for {} ms", a.as_millis()));
        }
        _ if fit.links_measured == 0 => {
            out.reason = Some("no link's capacity and delay are measured yet".into());
        }
        _ => {
            out.now_bps = Some(bps(fit.now_bps));
            out.next_second_bps = Some(bps(fit.next_second_bps));
        }
    }
    out
}

fn bps(v: f64) -> u64 {
    // NaN and negatives are 0; the cast saturates.
    v.max(0.0).round() as u64
}

/// One line made by the broadcaster.
#[derive(Debug, Default)]
struct Line {
    seq: u64,
    text: String,
}

/// Serves subscribers on `listener`, pushing a line every `period`, until
/// the task is dropped (which also ends every subscriber's task).
pub async fn serve(listener: UnixListener, exposition: Arc<Exposition>, period: Duration) {
    let (lines, _) = watch::channel(Arc::new(Line::default()));
    let mut tick = interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                seq += 1;
                let now = SystemTime::now();
                let message = Message {
                    v: FORMAT_VERSION,
                    seq,
                    unix_ms: now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                    bitrate: document(&exposition.bitrate(), now),
                };
                match serde_json::to_string(&message) {
                    Ok(text) => {
                        lines.send_replace(Arc::new(Line { seq, text: text + "\n" }));
                    }
                    Err(e) => debug!("bitrate line not encoded: {e}"),
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => admit(stream, &lines, &exposition),
                Err(e) => {
                    // Out of descriptors, most likely: pause rather than spin.
                    debug!("bitrate socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Serves a new subscriber on its own task, or turns it away when
/// [`MAX_SUBSCRIBERS`] are connected.
fn admit(stream: UnixStream, lines: &watch::Sender<Arc<Line>>, exposition: &Arc<Exposition>) {
    let mut full = false;
    exposition.publish(|p| {
        let s = &mut p.bitrate_subscribers;
        full = s.connected >= MAX_SUBSCRIBERS;
        if full {
            s.refused += 1;
        } else {
            s.connected += 1;
            s.accepted += 1;
        }
    });
    if full {
        tokio::spawn(async move {
            let mut stream = stream;
            let line = format!("{{\"error\":\"{MAX_SUBSCRIBERS} subscribers are connected already\"}}\n");
            let _ = tokio::time::timeout(STALL_LIMIT, stream.write_all(line.as_bytes())).await;
        });
        return;
    }
    // Bounded: the kernel holds at most this much for a subscriber that
    // does not read (a unix stream charges what waits at the reader to the
    // writer's buffer).
    if let Err(e) = nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &SEND_BUFFER) {
        debug!("bitrate subscriber: send buffer not bounded: {e}");
    }
    let (lines, exposition) = (lines.subscribe(), exposition.clone());
    tokio::spawn(async move {
        let why = subscribe(stream, lines, &exposition).await;
        debug!("bitrate subscriber gone: {why}");
        exposition.publish(|p| {
            let s = &mut p.bitrate_subscribers;
            s.connected = s.connected.saturating_sub(1);
            s.stalled += u64::from(why == Gone::Stalled);
        });
    });
}

/// Why a subscriber's task ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Gone {
    /// It closed its end (or the write failed).
    Closed,
    /// Its buffer stayed full for [`STALL_LIMIT`].
    Stalled,
    /// The daemon is stopping.
    Stopping,
}

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Stalled => "stalled (not reading)",
            Self::Stopping => "daemon stopping",
        })
    }
}

/// Writes each new line to one subscriber: the latest at once, then every
/// line as it comes — or, for one that fell behind, the latest when it can
/// take one (the lines it missed are counted as skipped).
async fn subscribe(
    mut stream: UnixStream,
    mut lines: watch::Receiver<Arc<Line>>,
    exposition: &Exposition,
) -> Gone {
    let mut last_seq = None;
    lines.mark_changed();
    loop {
        if lines.changed().await.is_err() {
            return Gone::Stopping;
        }
        let line = lines.borrow_and_update().clone();
        if line.text.is_empty() {
            continue; // nothing broadcast yet
        }
        if let Some(last) = last_seq {
            let skipped = line.seq.saturating_sub(last + 1);
            if skipped > 0 {
                exposition.publish(|p| p.bitrate_subscribers.skipped += skipped);
            }
        }
        last_seq = Some(line.seq);
        match tokio::time::timeout(STALL_LIMIT, stream.write_all(line.text.as_bytes())).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Gone::Closed,
            Err(_) => return Gone::Stalled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fit::{Fit, LinkFit};

    fn view(fit: Option<Fit>, age_ms: u64) -> (BitrateView, SystemTime) {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let v =
            BitrateView { deadline: Duration::from_millis(150), fit, at: Some(at), unknown: String::new() };
        (v, at + Duration::from_millis(age_ms))
    }

    fn two_links() -> Fit {
        Fit {
            now_bps: 10_800_000.4,
            next_second_bps: 9_000_000.0,
            links_counted: 1,
            links_measured: 2,
            links: vec![
                LinkFit {
                    id: 0,
                    now_bps: 10_800_000.4,
                    next_second_bps: 9_000_000.0,
                    excluded_now: None,
                    excluded_next: None,
                },
                LinkFit {
                    id: 1,
                    now_bps: 0.0,
                    next_second_bps: 0.0,
                    excluded_now: Some(Excluded::Late),
                    excluded_next: Some(Excluded::Late),
                },
            ],
        }
    }

    #[test]
    fn a_fresh_fit_is_shown_in_whole_bits_per_second() {
        let (v, now) = view(Some(two_links()), 30);
        let d = document(&v, now);
        assert_eq!((d.now_bps, d.next_second_bps), (Some(10_800_000), Some(9_000_000)));
        assert_eq!((d.deadline_ms, d.links_counted, d.age_ms, d.reason.as_deref()), (150, 1, Some(30), None));
        assert_eq!(d.links[1].excluded.as_deref(), Some("late"));
        let m = Message { v: FORMAT_VERSION, seq: 7, unix_ms: 1, bitrate: d };
        let line = serde_json::to_string(&m).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"seq":7,"unix_ms":1,"deadline_ms":150,"now_bps":10800000,"next_second_bps":9000000,"links_counted":1,"age_ms":30,"links":[{"id":0,"now_bps":10800000,"next_second_bps":9000000},{"id":1,"now_bps":0,"next_second_bps":0,"excluded":"late"}]}"#
        );
        let back: Message = serde_json::from_str(&line).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn unknown_is_null_with_a_reason_never_zero() {
        // Static mode: nothing computed, the daemon's reason.
        let (mut v, now) = view(None, 0);
        v.at = None;
        v.unknown = "static mode: configured weights are shares, not capacities".into();
        let d = document(&v, now);
        assert_eq!((d.now_bps, d.next_second_bps, d.age_ms), (None, None, None));
        assert_eq!(d.reason.as_deref(), Some("static mode: configured weights are shares, not capacities"));
        let line = serde_json::to_string(&d).unwrap();
        assert!(line.contains(r#""now_bps":null"#), "{line}");
        // Computed, but no link measured yet.
        let mut fit = two_links();
        fit.links_measured = 0;
        let (v, now) = view(Some(fit), 10);
        let d = document(&v, now);
        assert_eq!(d.now_bps, None);
        assert!(d.reason.as_deref().is_some_and(|r| r.contains("measured")), "{d:?}");
        // Stale: the control loop stopped updating it.
        let (v, now) = view(Some(two_links()), 1500);
        let d = document(&v, now);
        assert_eq!(d.now_bps, None);
        assert_eq!(d.reason.as_deref(), Some("stale: the controller has not updated it for 1500 ms"));
    }

    #[test]
    fn the_socket_sits_next_to_the_status_socket() {
        assert_eq!(socket_path("car7"), std::path::Path::new("/run/strata/car7.bitrate.sock"));
    }
}
