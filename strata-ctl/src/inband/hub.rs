//! The hub's side of the in-band channel: answering probes, sending feedback.
//!
//! The hub has one control socket on the tunnel port. Probes that reach it
//! are answered at once on the path they came from, so the edge can time a
//! round trip per link — or, for a packet-train probe, answered with the
//! kernel's receive time so the edge can read the link's bottleneck rate.
//! At the probe rate the hub also tells the edge what its kernel counted per
//! link ([`FeedbackPayload`]), sent to the endpoint learned for that link so
//! the feedback travels on the link it describes.

use std::net::SocketAddr;

use strata_common::{
    auth::AUTH_HEADER_LEN,
    maps::MAX_LINKS,
    wire::{FeedbackPayload, Fields, Header, PacketType, flags},
};
use tokio::net::UdpSocket;
use tracing::debug;

use super::auth::ControlKey;

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
/// `rx_ns` (realtime, ns; 0 if not stamped). Probes are answered at once with
/// a probe reply that echoes the probe's header fields and payload, so the
/// sender can time the round trip on that link — or, for a train probe, that
/// carries the receive time instead; everything else is logged.
///
/// The probe's tag was checked by the kernel on the way in (see
/// [`super::auth`]); the reply is tagged with this side's key.
pub async fn answer(
    control: &UdpSocket,
    key: &ControlKey,
    datagram: &[u8],
    from: SocketAddr,
    session: u32,
    rx_ns: u64,
) {
    let (fields, payload) = match Header::parse(datagram, session, MAX_LINKS as u8) {
        Ok(parsed) => parsed,
        Err(reason) => return debug!(%from, reason = reason.name(), "malformed control packet"),
    };
    match fields.packet_type {
        PacketType::Probe => {
            let reply = Header::new(Fields { packet_type: PacketType::ProbeReply, ..fields });
            let train = fields.flags & flags::TRAIN != 0;
            let body: &[u8] = if train { &rx_ns.to_be_bytes() } else { payload };
            let mut out = vec![0u8; AUTH_HEADER_LEN + body.len()];
            if let Ok(n) = key.seal(reply, body, &mut out)
                && let Err(e) = control.send_to(&out[..n], from).await
            {
                debug!(%from, "probe reply not sent: {e}");
            }
        }
        PacketType::Data => debug!(%from, "data packet reached the control socket"),
        kind => debug!(%from, link = fields.link_id, ?kind, "control packet"),
    }
}
