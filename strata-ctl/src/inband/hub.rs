//! The hub's side of the in-band channel: answering probes, sending feedback.
//!
//! The hub has one control socket on the tunnel port. Probes that reach it
//! are answered at once on the path they came from, so the edge can time a
//! round trip per link — or, for a packet-train probe, answered with the
//! kernel's receive time so the edge can read the link's bottleneck rate.
//! At the probe rate the hub also tells the edge what its kernel counted per
//! link ([`FeedbackPayload`]), sent to the endpoint learned for that link so
//! the feedback travels on the link it describes.

use std::{
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use strata_common::{
    auth::AUTH_HEADER_LEN,
    maps::MAX_LINKS,
    wire::{FeedbackPayload, Fields, Header, PacketType, flags},
};
use tokio::net::UdpSocket;
use tracing::debug;

use super::auth::ControlKey;
use super::guard::GuardCounters;

/// What the hub's kernel counted for one link, and where its edge is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkFeedback {
    /// Link id.
    pub link: u8,
    /// The edge endpoint learned for the link.
    pub peer: SocketAddr,
    /// The counters.
    pub counters: FeedbackPayload,
}

/// Sends each link's counters to its edge endpoint, stamped `now_us` on the
/// hub's clock; returns the next feedback sequence number.
pub async fn send_feedback(
    control: &UdpSocket,
    key: &ControlKey,
    session: u32,
    links: &[LinkFeedback],
    mut seq: u32,
    now_us: u32,
) -> u32 {
    for link in links {
        let header = Header::new(Fields {
            packet_type: PacketType::Feedback,
            flags: 0,
            link_id: link.link,
            session,
            global_seq: seq,
            link_seq: 0,
            // The edge measures rates between feedbacks on this clock, free
            // of the jitter the way back adds to arrival times.
            timestamp_us: now_us.max(1),
        });
        let mut body = [0u8; FeedbackPayload::LEN];
        let mut out = [0u8; AUTH_HEADER_LEN + FeedbackPayload::LEN];
        if link.counters.encode(&mut body).is_ok()
            && let Ok(n) = key.seal(header, &body, &mut out)
            && let Err(e) = control.send_to(&out[..n], link.peer).await
        {
            debug!(link = link.link, peer = %link.peer, "feedback not sent: {e}");
        }
        seq = seq.wrapping_add(1);
    }
    seq
}

/// Handles one datagram on the control socket, which the kernel received at
/// `rx_ns` (realtime, ns; 0 if not stamped). Probes are answered at once —
/// within the link's rate (`limiter`; what exceeds it is counted in
/// `guards`, not answered) — with a probe reply that echoes the probe's
/// header fields and payload, so the sender can time the round trip on that
/// link, or, for a train probe, that carries the receive time instead;
/// everything else is logged.
///
/// The probe's tag was checked by the kernel on the way in (see
/// [`super::auth`]); the reply is tagged with this side's key.
// Eight: the merge of the probe limiter (fuzz14) and the control key
// (auth14) added one each; a struct bundling them would serve this call alone.
#[allow(clippy::too_many_arguments)]
pub async fn answer(
    control: &UdpSocket,
    key: &ControlKey,
    datagram: &[u8],
    from: SocketAddr,
    session: u32,
    rx_ns: u64,
    limiter: &mut ProbeLimiter,
    guards: &GuardCounters,
) {
    let (fields, payload) = match Header::parse(datagram, session, MAX_LINKS as u8) {
        Ok(parsed) => parsed,
        Err(reason) => return debug!(%from, reason = reason.name(), "malformed control packet"),
    };
    match fields.packet_type {
        PacketType::Probe => {
            // Answering is what makes guessing a session id an online
            // search with a success signal, and a reply is as big as the
            // probe: bounded per link, so a flood neither reflects nor costs
            // more than a few genuine edges would.
            if !limiter.allow(fields.link_id, Instant::now()) {
                GuardCounters::bump(&guards.probes_limited);
                return;
            }
            if let Some(out) = reply(key, &fields, payload, rx_ns)
                && let Err(e) = control.send_to(&out, from).await
            {
                debug!(%from, "probe reply not sent: {e}");
            }
        }
        PacketType::Data => debug!(%from, "data packet reached the control socket"),
        kind => debug!(%from, link = fields.link_id, ?kind, "control packet"),
    }
}

/// The reply to a probe with header `fields` and `payload`, received at
/// `rx_ns`: the header echoed as a probe reply, with the payload echoed, or
/// for a train probe the receive time, tagged with `key` (if it holds one). `None` for anything but a probe.
///
/// Pure, so that `fuzz/` can feed it anything a stranger could send.
pub fn reply(key: &ControlKey, fields: &Fields, payload: &[u8], rx_ns: u64) -> Option<Vec<u8>> {
    if fields.packet_type != PacketType::Probe {
        return None;
    }
    let header = Header::new(Fields { packet_type: PacketType::ProbeReply, ..*fields });
    let train = fields.flags & flags::TRAIN != 0;
    let body: &[u8] = if train { &rx_ns.to_be_bytes() } else { payload };
    let mut out = vec![0u8; AUTH_HEADER_LEN + body.len()];
    let len = key.seal(header, body, &mut out).ok()?;
    out.truncate(len);
    Some(out)
}

/// The first feedback sequence number of a hub starting now: milliseconds
/// of the wall clock, so a restarted hub starts ahead of the numbers its
/// edges have seen (they take only increasing ones, see
/// `prober::FeedbackOrder`) as long as it sent fewer than one feedback per
/// link per millisecond before — it sends one per probe interval (≥ 10 ms).
/// The numbers wrap after 49 days, which serial arithmetic tolerates.
pub fn feedback_seq_start(now: SystemTime) -> u32 {
    now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u32)
}

/// Per-link token buckets bounding the probes the hub answers.
#[derive(Clone, Debug)]
pub struct ProbeLimiter {
    buckets: [Bucket; MAX_LINKS as usize],
    /// Probes answered per second per link, sustained.
    rate: f64,
    /// Probes answered back to back per link.
    burst: f64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

impl ProbeLimiter {
    /// For edges probing every `interval` with trains of `train_packets`:
    /// four times the probe rate plus two trains a second sustained, two
    /// trains and a few probes back to back — what genuine edges send, with
    /// room for a restart or a re-bind's immediate probe, and no more.
    pub fn for_probing(interval: Duration, train_packets: u8) -> Self {
        let probes = 1.0 / interval.as_secs_f64().max(1e-3);
        let train = f64::from(train_packets);
        Self::new(4.0 * probes + 2.0 * train, 2.0 * train + 16.0)
    }

    /// `rate` per second sustained, `burst` at once, per link.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { buckets: [Bucket::default(); MAX_LINKS as usize], rate, burst }
    }

    /// Whether a probe on `link` at `now` is answered (taking a token).
    pub fn allow(&mut self, link: u8, now: Instant) -> bool {
        let Some(b) = self.buckets.get_mut(usize::from(link)) else { return false };
        let elapsed = b.at.map_or(f64::INFINITY, |at| now.saturating_duration_since(at).as_secs_f64());
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = Some(now);
        if b.tokens < 1.0 {
            return false;
        }
        b.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_flood_is_answered_at_the_links_rate_only() {
        let mut limiter = ProbeLimiter::for_probing(Duration::from_millis(50), 32);
        let start = Instant::now();
        // 10 000 probes a second on link 0 for two seconds.
        let answered = (0..20_000u32)
            .filter(|i| limiter.allow(0, start + Duration::from_micros(u64::from(*i) * 100)))
            .count();
        // Burst 80 plus 144/s for 2 s.
        assert!((360..=380).contains(&answered), "{answered}");
        // Another link keeps its own budget.
        assert!(limiter.allow(1, start + Duration::from_secs(2)));
    }

    #[test]
    fn genuine_probing_is_never_limited() {
        let mut limiter = ProbeLimiter::for_probing(Duration::from_millis(50), 32);
        let start = Instant::now();
        // A probe every 50 ms and a 32-packet train every second, for a minute.
        for tick in 0..1200u64 {
            let at = start + Duration::from_millis(tick * 50);
            assert!(limiter.allow(2, at), "probe {tick}");
            if tick % 20 == 0 {
                assert!((0..32).all(|_| limiter.allow(2, at)), "train at {tick}");
            }
        }
    }

    #[test]
    fn a_reply_echoes_a_probe_and_nothing_else() {
        let probe = Fields {
            packet_type: PacketType::Probe,
            flags: 0,
            link_id: 3,
            session: 7,
            global_seq: 1,
            link_seq: 2,
            timestamp_us: 99,
        };
        let out = reply(&ControlKey::default(), &probe, b"pad", 5).expect("a reply");
        let (fields, payload) = Header::parse(&out, 7, 8).expect("valid");
        assert_eq!(fields, Fields { packet_type: PacketType::ProbeReply, ..probe });
        assert_eq!(payload, b"pad");
        assert_eq!(
            reply(&ControlKey::default(), &Fields { packet_type: PacketType::Feedback, ..probe }, b"", 5),
            None
        );
    }

    #[test]
    fn feedback_numbers_of_a_restarted_hub_are_ahead() {
        let before = feedback_seq_start(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
        // A minute of feedback on 8 links every 50 ms before the restart.
        let last = before.wrapping_add(8 * 1200);
        let after = feedback_seq_start(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_061));
        assert!(strata_common::seq::seq_after(after, last));
    }
}
