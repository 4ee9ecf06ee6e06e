//! In-band probes: the thin I/O shell that feeds the link estimators.
//!
//! One UDP socket per link, bound to the link's own address and the tunnel
//! port — the same 5-tuple the kernel's data packets use — so probes leave
//! on that link (per-link policy routing, see `Net::add_link_routing`),
//! share the data's NAT mapping and keep it alive, and the hub learns the
//! same endpoint from both. Every interval a probe goes out carrying its send
//! time; the hub echoes it back as a probe reply, which becomes a round-trip
//! sample. When the controller asks (a link warming up, or idle), a packet
//! train of full-sized probes follows; the hub's kernel receive times of its
//! packets give the link's bottleneck rate.

use std::{
    io,
    net::SocketAddr,
    os::fd::OwnedFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, setsockopt, socket, sockopt,
};
use strata_common::{
    auth::AUTH_HEADER_LEN,
    maps::MAX_LINKS,
    wire::{FeedbackPayload, Fields, HEADER_LEN, Header, PacketType, flags},
};
use tokio::{net::UdpSocket, sync::mpsc};
use tracing::debug;

use super::auth::ControlKey;
use crate::control::{
    evidence::Evidence,
    train::{IP_UDP_HEADERS, TrainArrivals, TrainShape},
};

/// A UDP socket on `addr` that may share its port with the wildcard control
/// socket (`SO_REUSEADDR` on both): datagrams to `addr` itself then reach the
/// more specific socket. A link on an IPv6 carrier gets an IPv6 socket on
/// its own address; the unspecified IPv6 address (the control socket) makes
/// a dual-stack socket that also takes IPv4 datagrams, so the hub listens on
/// both families with one socket.
pub fn bind_shared(addr: SocketAddr) -> io::Result<UdpSocket> {
    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd: OwnedFd =
        socket(family, SockType::Datagram, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    // Kernel receive times for packet trains (see `recv_stamped`).
    setsockopt(&fd, sockopt::ReceiveTimestampns, &true)?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    match addr {
        SocketAddr::V4(v4) => bind(raw, &SockaddrIn::from(v4))?,
        SocketAddr::V6(v6) => {
            setsockopt(&fd, sockopt::Ipv6V6Only, &!v6.ip().is_unspecified())?;
            bind(raw, &SockaddrIn6::from(v6))?;
        }
    }
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

/// Receives one datagram with the kernel's receive time (`SO_TIMESTAMPNS`,
/// realtime ns; 0 when the kernel gave none): train probes are timed by the
/// kernel, not by when this task got around to reading them.
pub async fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, u64)> {
    use std::os::fd::AsRawFd as _;

    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    sock.async_io(tokio::io::Interest::READABLE, || {
        let mut iov = [io::IoSliceMut::new(buf)];
        let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let msg = recvmsg::<SockaddrStorage>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
            .map_err(io::Error::from)?;
        let rx_ns = msg
            .cmsgs()
            .ok()
            .into_iter()
            .flatten()
            .find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(t) => {
                    Some((t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64)
                }
                _ => None,
            })
            .unwrap_or(0);
        // A dual-stack socket reports IPv4 peers as v4-mapped IPv6
        // addresses: made plain IPv4 again, so they compare equal to what
        // the kernel learns and replies go out as IPv4.
        let from = msg
            .address
            .and_then(|a| {
                a.as_sockaddr_in().map(|v4| SocketAddr::from((v4.ip(), v4.port()))).or_else(|| {
                    a.as_sockaddr_in6().map(|v6| SocketAddr::new(v6.ip().to_canonical(), v6.port()))
                })
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without an IP source"))?;
        Ok((msg.bytes, from, rx_ns))
    })
    .await
}

/// One link's prober.
#[derive(Debug)]
pub struct Prober {
    /// Link id.
    pub link: u8,
    /// The link's own socket (see [`bind_shared`]), replaced when the link
    /// is re-bound to a new address.
    pub sock: tokio::sync::watch::Receiver<Arc<UdpSocket>>,
    /// Where probes go.
    pub hub: SocketAddr,
    /// Session id.
    pub session: u32,
    /// Probe interval.
    pub interval: Duration,
    /// Packet train shape.
    pub train: TrainShape,
    /// Raised (by the controller) to send a packet train; lowered here.
    pub want_train: Arc<AtomicBool>,
    /// IP bytes of probes and trains sent so far (the control channel's
    /// share of the link, which the kernel's counters do not see).
    pub sent_bytes: Arc<AtomicU64>,
    /// Where handshake messages that arrive on the link's socket go (the
    /// hub answers an initiation to the address it came from, which is this
    /// socket's): link id and the handshake payload.
    pub handshakes: mpsc::Sender<(u8, Vec<u8>)>,
    /// The key probes and trains are tagged with (the kernel's sending key).
    pub key: ControlKey,
}

/// Probes the link towards the hub every interval, sends a packet train
/// whenever `want_train` is raised, and passes on round trips, train rates
/// and the hub's feedback for the link, until the receiver of `evidence`
/// goes away.
pub async fn run(prober: Prober, evidence: mpsc::Sender<Evidence>) {
    let Prober {
        link,
        sock: mut bound,
        hub,
        session,
        interval,
        train,
        want_train,
        sent_bytes,
        key,
        handshakes,
    } = prober;
    let mut sock = bound.borrow_and_update().clone();
    // IPv6's header is 20 bytes longer than IPv4's: counted in the probe
    // bytes, and in the bytes a train's packets hold the bottleneck for.
    let extra = if hub.is_ipv6() { 20 } else { 0 };
    let headers = IP_UDP_HEADERS + extra;
    let rated = TrainShape { bytes: train.bytes + extra, ..train };
    let count = |n: usize| sent_bytes.fetch_add((n + headers) as u64, Ordering::Relaxed);
    let epoch = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq: u32 = 0;
    let mut buf = [0u8; 256];
    let mut train_id: u32 = 0;
    let mut arrivals = TrainArrivals::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // A train whose replies are still missing after a second will not complete.
                if arrivals.id != 0
                    && arrivals.sent.is_some_and(|t| t.elapsed() > TRAIN_TIMEOUT)
                    && let Some(mbit_s) = arrivals.finish(rated)
                {
                    let _ = evidence.send(Evidence::Train { link, mbit_s }).await;
                }
                let header = |flags, link_seq, global_seq| Header::new(Fields {
                    packet_type: PacketType::Probe,
                    flags,
                    link_id: link,
                    session,
                    global_seq,
                    link_seq,
                    timestamp_us: epoch.elapsed().as_micros() as u32,
                });
                // Padded so carrier NATs and middleboxes treat it like data.
                // The same 64 bytes with a tag: the tag takes 8 of the padding.
                let mut probe = [0u8; HEADER_LEN + 44];
                let pad = HEADER_LEN + 44 - if key.get().is_some() { AUTH_HEADER_LEN } else { HEADER_LEN };
                if let Ok(n) = key.seal(header(0, 0, seq), &[0; 44][..pad], &mut probe) {
                    match sock.send_to(&probe[..n], hub).await {
                        Ok(n) => { count(n); }
                        Err(e) => debug!(link, "probe not sent: {e}"),
                    }
                }
                seq = seq.wrapping_add(1);
                if want_train.swap(false, Ordering::Relaxed) {
                    train_id = train_id.wrapping_add(1) & 0x00FF_FFFF;
                    arrivals = TrainArrivals { id: train_id, sent: Some(Instant::now()), times: Vec::new() };
                    let mut packet = vec![0u8; train.bytes.max(AUTH_HEADER_LEN)];
                    let head = if key.get().is_some() { AUTH_HEADER_LEN } else { HEADER_LEN };
                    let body = vec![0u8; packet.len() - head];
                    for i in 0..train.packets {
                        let link_seq = train_id << 8 | u32::from(i);
                        if let Ok(n) = key.seal(header(flags::TRAIN, link_seq, seq), &body, &mut packet) {
                            match sock.send_to(&packet[..n], hub).await {
                                Ok(n) => { count(n); }
                                Err(e) => debug!(link, "train probe not sent: {e}"),
                            }
                        }
                    }
                }
            }
            Ok(()) = bound.changed() => {
                // Re-bound (new address): replies to probes sent from the old
                // socket are lost with it, and so is a train under way.
                sock = bound.borrow_and_update().clone();
                arrivals = TrainArrivals::default();
                // Probed at once: until an answer comes back the link is
                // silent, and at 300 ms of silence it is demoted (lab,
                // ip-change at os_signals none: re-bound 110 ms into the
                // silence, answered at 306 ms on a loaded host, demoted,
                // 3 s to re-admission).
                tick.reset_immediately();
            }
            received = sock.recv_from(&mut buf) => {
                let Ok((n, _)) = received else { continue };
                let Ok((fields, payload)) = Header::parse(&buf[..n], session, MAX_LINKS as u8) else { continue };
                if fields.link_id != link {
                    continue;
                }
                let item = match fields.packet_type {
                    PacketType::ProbeReply if fields.flags & flags::TRAIN != 0 => {
                        if let Ok(ns) = <[u8; 8]>::try_from(payload.get(..8).unwrap_or_default()) {
                            arrivals.record(fields.link_seq, u64::from_be_bytes(ns));
                        }
                        if arrivals.id == 0 || arrivals.times.len() < usize::from(train.packets) {
                            continue;
                        }
                        match arrivals.finish(rated) {
                            Some(mbit_s) => Evidence::Train { link, mbit_s },
                            None => continue,
                        }
                    }
                    PacketType::ProbeReply => {
                        let now_us = epoch.elapsed().as_micros() as u32;
                        let rtt = Duration::from_micros(u64::from(now_us.wrapping_sub(fields.timestamp_us)));
                        tracing::trace!(link, rtt_ms = rtt.as_secs_f64() * 1e3, "probe reply");
                        Evidence::RoundTrip { link, rtt }
                    }
                    PacketType::Feedback => match FeedbackPayload::decode(payload) {
                        Ok(counters) => Evidence::Feedback { link, counters, hub_time_us: fields.timestamp_us },
                        Err(_) => continue,
                    },
                    PacketType::Handshake => {
                        // Dropped if the daemon is behind: the edge retries.
                        let _ = handshakes.try_send((link, payload.to_vec()));
                        continue;
                    }
                    _ => continue,
                };
                if evidence.send(item).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// How long a train's replies are waited for.
const TRAIN_TIMEOUT: Duration = Duration::from_secs(1);
