//! In-band probes: the thin I/O shell that feeds the link estimators.
//!
//! One UDP socket per link, bound to the link's own address and the tunnel
//! port — the same 5-tuple the kernel's data packets use — so probes leave
//! on that link (per-link policy routing, see `Net::add_link_routing`),
//! share the data's NAT mapping and keep it alive, and the hub learns the
//! same endpoint from both. Every interval a probe goes out carrying its send
//! time; the hub echoes it back as a probe reply, which becomes a round-trip
//! sample.

use std::{
    io,
    net::{SocketAddr, SocketAddrV4},
    os::fd::OwnedFd,
    sync::Arc,
    time::{Duration, Instant},
};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt};
use strata_common::{
    maps::MAX_LINKS,
    wire::{FeedbackPayload, Fields, HEADER_LEN, Header, PacketType},
};
use tokio::{net::UdpSocket, sync::mpsc};
use tracing::debug;

/// In-band evidence about a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// A probe came back after this round trip.
    RoundTrip {
        /// Link id.
        link: u8,
        /// Round trip.
        rtt: Duration,
    },
    /// The hub's counters for the link.
    Feedback {
        /// Link id.
        link: u8,
        /// What the hub's kernel counted.
        counters: FeedbackPayload,
        /// When the hub sent it, µs on the hub's own clock (0: not stamped).
        hub_time_us: u32,
    },
}

/// A UDP socket on `addr` that may share its port with the wildcard control
/// socket (`SO_REUSEADDR` on both): datagrams to `addr` itself then reach the
/// more specific socket.
pub fn bind_shared(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    let fd: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(addr))?;
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

/// Probes link `link` towards `hub` every `interval`, and passes on the hub's
/// feedback for the link, until the receiver of `evidence` goes away.
pub async fn run(
    link: u8,
    sock: Arc<UdpSocket>,
    hub: SocketAddr,
    session: u32,
    interval: Duration,
    evidence: mpsc::Sender<Evidence>,
) {
    let epoch = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq: u32 = 0;
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let sent_us = epoch.elapsed().as_micros() as u32;
                let header = Header::new(Fields {
                    packet_type: PacketType::Probe,
                    flags: 0,
                    link_id: link,
                    session,
                    global_seq: seq,
                    link_seq: 0,
                    timestamp_us: sent_us,
                });
                // Padded so carrier NATs and middleboxes treat it like data.
                let mut probe = [0u8; HEADER_LEN + 44];
                if header.encode(&mut probe).is_ok() && let Err(e) = sock.send_to(&probe, hub).await {
                    debug!(link, "probe not sent: {e}");
                }
                seq = seq.wrapping_add(1);
            }
            received = sock.recv_from(&mut buf) => {
                let Ok((n, _)) = received else { continue };
                let Ok((fields, payload)) = Header::parse(&buf[..n], session, MAX_LINKS as u8) else { continue };
                if fields.link_id != link {
                    continue;
                }
                let item = match fields.packet_type {
                    PacketType::ProbeReply => {
                        let now_us = epoch.elapsed().as_micros() as u32;
                        let rtt = Duration::from_micros(u64::from(now_us.wrapping_sub(fields.timestamp_us)));
                        Evidence::RoundTrip { link, rtt }
                    }
                    PacketType::Feedback => match FeedbackPayload::decode(payload) {
                        Ok(counters) => Evidence::Feedback { link, counters, hub_time_us: fields.timestamp_us },
                        Err(_) => continue,
                    },
                    _ => continue,
                };
                if evidence.send(item).await.is_err() {
                    return;
                }
            }
        }
    }
}
