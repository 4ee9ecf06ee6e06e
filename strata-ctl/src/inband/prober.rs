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
    seq::seq_after,
    wire::{FeedbackPayload, Fields, HEADER_LEN, Header, PacketType, flags},
};
use tokio::{net::UdpSocket, sync::mpsc};
use tracing::debug;

use super::auth::ControlKey;
use super::guard::GuardCounters;
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
    /// Where what this prober turns away is counted.
    pub guards: Arc<GuardCounters>,
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
        guards,
    } = prober;
    let mut feedback_order = FeedbackOrder::default();
    let mut reply_order = FeedbackOrder::default();
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
    // Numbered from the wall clock (ms), like the hub's feedback: the hub
    // answers only probes numbered above the last it answered on the link
    // (replays carry valid tags), and a restarted edge must be ahead.
    let mut seq: u32 = super::hub::feedback_seq_start(std::time::SystemTime::now());
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
                // After the train: its probes carry this probe's number and
                // count up the link sequence, which the hub's order expects.
                seq = seq.wrapping_add(1);
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
                let Ok((n, from)) = received else { continue };
                // Only the link's hub answers probes and sends feedback: a
                // reply from anywhere else would set round trips or keep a
                // dead link "heard" at a stranger's will.
                if from != hub {
                    GuardCounters::bump(&guards.foreign_source);
                    continue;
                }
                let item = match classify(&buf[..n], session, link) {
                    Some(Incoming::TrainReply { link_seq, rx_ns }) => {
                        arrivals.record(link_seq, rx_ns);
                        if arrivals.id == 0 || arrivals.times.len() < usize::from(train.packets) {
                            continue;
                        }
                        match arrivals.finish(rated) {
                            Some(mbit_s) => Evidence::Train { link, mbit_s },
                            None => continue,
                        }
                    }
                    Some(Incoming::Reply { seq, sent_us }) => {
                        // A replayed reply (it carries a valid tag) would
                        // time a round trip from an old send time.
                        if !reply_order.fresh(seq) {
                            GuardCounters::bump(&guards.stale_reply);
                            continue;
                        }
                        let now_us = epoch.elapsed().as_micros() as u32;
                        let rtt = Duration::from_micros(u64::from(now_us.wrapping_sub(sent_us)));
                        tracing::trace!(link, rtt_ms = rtt.as_secs_f64() * 1e3, "probe reply");
                        Evidence::RoundTrip { link, rtt }
                    }
                    Some(Incoming::Feedback { seq, hub_time_us, counters }) => {
                        if !feedback_order.fresh(seq) {
                            GuardCounters::bump(&guards.stale_feedback);
                            continue;
                        }
                        Evidence::Feedback { link, counters, hub_time_us }
                    }
                    Some(Incoming::Handshake { at }) => {
                        // Dropped if the daemon is behind: the edge retries.
                        let _ = handshakes.try_send((link, buf[at..n].to_vec()));
                        continue;
                    }
                    None => continue,
                };
                if evidence.send(item).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// What a datagram on a link's probe socket carries, for that link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// The answer to one packet of a train: its link sequence (train id and
    /// index) and the hub's kernel receive time, ns.
    TrainReply {
        /// Train id << 8 | index.
        link_seq: u32,
        /// The hub's receive time of the train probe.
        rx_ns: u64,
    },
    /// The echo of a probe, carrying its send time (µs on the prober's clock).
    Reply {
        /// The probe's number, echoed.
        seq: u32,
        /// When the probe was sent.
        sent_us: u32,
    },
    /// The hub's counters for the link.
    Feedback {
        /// The hub's feedback sequence number (increases per link).
        seq: u32,
        /// The hub's clock when it sent them, µs.
        hub_time_us: u32,
        /// The counters.
        counters: FeedbackPayload,
    },
    /// A handshake message for the daemon; its payload starts at byte `at`.
    Handshake {
        /// Offset of the payload in the datagram.
        at: usize,
    },
}

/// Reads a datagram received on `link`'s probe socket: a reply or
/// feedback of `session` for that link, or `None` (malformed, another
/// session or link, a type the edge does not take, a short payload).
///
/// Pure, so that `fuzz/` can feed it anything a stranger could send.
pub fn classify(datagram: &[u8], session: u32, link: u8) -> Option<Incoming> {
    let (fields, payload) = Header::parse(datagram, session, MAX_LINKS as u8).ok()?;
    if fields.link_id != link {
        return None;
    }
    match fields.packet_type {
        PacketType::ProbeReply if fields.flags & flags::TRAIN != 0 => {
            let ns = <[u8; 8]>::try_from(payload.get(..8)?).ok()?;
            Some(Incoming::TrainReply { link_seq: fields.link_seq, rx_ns: u64::from_be_bytes(ns) })
        }
        PacketType::ProbeReply => {
            Some(Incoming::Reply { seq: fields.global_seq, sent_us: fields.timestamp_us })
        }
        PacketType::Feedback => Some(Incoming::Feedback {
            seq: fields.global_seq,
            hub_time_us: fields.timestamp_us,
            counters: FeedbackPayload::decode(payload).ok()?,
        }),
        PacketType::Handshake => Some(Incoming::Handshake { at: datagram.len() - payload.len() }),
        _ => None,
    }
}

/// The order of one link's feedback (or probe replies, or, on the hub,
/// probes): each must carry a sequence number
/// after the last one taken (serial arithmetic, RFC 1982), so a replayed or
/// delayed copy of older counters is not taken for news. The hub seeds its
/// numbers from its clock (see `hub::feedback_seq`), so a restarted hub is
/// still ahead of what the edge saw before.
#[derive(Clone, Copy, Debug, Default)]
pub struct FeedbackOrder {
    last: Option<u32>,
}

impl FeedbackOrder {
    /// Whether `seq` is after the last one taken; if so it becomes the last.
    pub fn fresh(&mut self, seq: u32) -> bool {
        if self.last.is_some_and(|last| !seq_after(seq, last)) {
            return false;
        }
        self.last = Some(seq);
        true
    }
}

/// How long a train's replies are waited for.
const TRAIN_TIMEOUT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    const SESSION: u32 = 0x5354_5241;

    fn packet(packet_type: PacketType, link: u8, global_seq: u32, payload: &[u8]) -> Vec<u8> {
        let header = Header::new(Fields {
            packet_type,
            flags: 0,
            link_id: link,
            session: SESSION,
            global_seq,
            link_seq: 0,
            timestamp_us: 5,
        });
        let mut out = vec![0u8; HEADER_LEN];
        header.encode(&mut out).expect("encode");
        out.extend_from_slice(payload);
        out
    }

    fn feedback(link: u8, seq: u32) -> Vec<u8> {
        let mut counters = [0u8; FeedbackPayload::LEN];
        FeedbackPayload { rx_packets: u64::from(seq), ..FeedbackPayload::default() }
            .encode(&mut counters)
            .expect("encode");
        packet(PacketType::Feedback, link, seq, &counters)
    }

    #[test]
    fn only_replies_and_feedback_for_the_link_are_taken() {
        assert_eq!(
            classify(&packet(PacketType::ProbeReply, 1, 0, &[]), SESSION, 1),
            Some(Incoming::Reply { seq: 0, sent_us: 5 })
        );
        assert_eq!(classify(&packet(PacketType::ProbeReply, 2, 0, &[]), SESSION, 1), None);
        assert_eq!(classify(&packet(PacketType::Probe, 1, 0, &[]), SESSION, 1), None);
        assert!(matches!(classify(&feedback(1, 9), SESSION, 1), Some(Incoming::Feedback { seq: 9, .. })));
        assert_eq!(classify(&feedback(1, 9)[..HEADER_LEN + 39], SESSION, 1), None);
    }

    #[test]
    fn stale_and_replayed_feedback_is_refused() {
        let mut order = FeedbackOrder::default();
        assert!(order.fresh(100));
        assert!(!order.fresh(100), "a replay");
        assert!(!order.fresh(99), "older");
        assert!(order.fresh(108));
        assert!(order.fresh(u32::MAX.wrapping_add(110)), "serial arithmetic: wraps");
    }

    /// A prober on a loopback socket whose "hub" is another loopback
    /// socket; a third socket plays the stranger. Only the hub's reply and
    /// its increasing feedback become evidence; the rest is counted.
    #[tokio::test]
    async fn the_prober_takes_only_its_hubs_replies_and_fresh_feedback() {
        let hub = std::net::UdpSocket::bind("127.0.0.1:0").expect("hub");
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").expect("stranger");
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("prober");
        let me: SocketAddr = sock.local_addr().expect("address");
        let (_keep, bound) = tokio::sync::watch::channel(Arc::new(sock));
        let guards = Arc::new(GuardCounters::default());
        let (tx, mut rx) = mpsc::channel(16);
        let prober = Prober {
            link: 1,
            sock: bound,
            hub: hub.local_addr().expect("hub address"),
            session: SESSION,
            interval: Duration::from_secs(3600),
            train: TrainShape { packets: 4, bytes: 100 },
            want_train: Arc::default(),
            sent_bytes: Arc::default(),
            key: ControlKey::default(),
            handshakes: mpsc::channel(1).0,
            guards: guards.clone(),
        };
        let task = tokio::spawn(run(prober, tx));
        let send = |from: &std::net::UdpSocket, p: Vec<u8>| from.send_to(&p, me).expect("send");
        send(&stranger, packet(PacketType::ProbeReply, 1, 0, &[]));
        send(&stranger, feedback(1, 50));
        send(&hub, feedback(1, 10));
        send(&hub, feedback(1, 10));
        send(&hub, feedback(1, 9));
        send(&hub, feedback(1, 11));
        send(&hub, packet(PacketType::ProbeReply, 1, 0, &[]));
        let mut got = Vec::new();
        while got.len() < 3 {
            let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("evidence")
                .expect("open");
            got.push(e);
        }
        let fed: Vec<u64> = got
            .iter()
            .filter_map(|e| match e {
                Evidence::Feedback { counters, .. } => Some(counters.rx_packets),
                _ => None,
            })
            .collect();
        assert_eq!(fed, [10, 11]);
        assert!(got.iter().any(|e| matches!(e, Evidence::RoundTrip { link: 1, .. })));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let counted = guards.snapshot();
        assert_eq!((counted.foreign_source, counted.stale_feedback), (2, 2));
        task.abort();
    }
}
