//! An attacker on the internet between the car's carriers and the hub.
//!
//! The hub faces the internet: anyone who saw one packet knows the session
//! id, the hub's address and port, and the public (carrier NAT) endpoints of
//! the car's links. This module plays that attacker in the lab's `inet`
//! namespace while a scenario runs (docs/SECURITY.md):
//!
//! * it **captures** every tunnel packet arriving in the internet namespace
//!   (an `AF_PACKET` socket on every interface, incoming frames only, so
//!   that its own packets are never taken for genuine ones);
//! * it **replays** captured packets, unchanged, towards where they were going;
//! * it **forges** packets with what it learned: data packets carrying an
//!   inner UDP datagram to a canary port (on the hub for the uplink, on the
//!   edge for the downlink, spoofed from the hub), with global sequences
//!   just ahead of the genuine ones (so that, accepted, they would make the
//!   genuine packets look like duplicates) and per-link sequences 2³¹ ahead;
//!   probes on every link id from its own address; feedback and probe
//!   replies to the car's public endpoints spoofed from the hub; some with
//!   the `auth` flag and a random tag.
//!
//! What it achieved is measured where it would show: datagrams arriving at
//! the canary ports (each counted once it reached an application), and the
//! hub learning an endpoint that is not a link's genuine one (the daemon's
//! log names each endpoint it learns). Packets are written with
//! `IPPROTO_RAW`, so sources can be spoofed, as an off-path attacker can on
//! networks without source-address validation.

use std::{
    collections::{BTreeMap, VecDeque},
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use rand::SeedableRng as _;

use crate::{
    Lab, in_netns,
    strata::{EDGE_TUNNEL_ADDR, HUB_TUNNEL_ADDR, TUNNEL_PORT},
};

/// The UDP port forged inner datagrams are addressed to, on both tunnel
/// addresses. Nothing legitimate uses it; whatever arrives there got
/// through.
pub const CANARY_PORT: u16 = 9999;

/// The payload of every forged inner datagram.
const CANARY_PAYLOAD: &[u8] = b"strata-lab forged datagram";

/// Genuine packets kept for replay (the most recent ones).
const REPLAY_RING: usize = 4096;

/// How an attack is run.
#[derive(Clone, Copy, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// Packets per second the attacker sends, all kinds together.
    pub rate_pps: u32,
    /// When it starts, seconds after traffic start (it listens from the start).
    #[serde(default)]
    pub start_s: f64,
}

/// What the attacker sent and what got through.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AttackReport {
    /// Genuine tunnel packets it saw.
    pub captured: u64,
    /// Packets it sent, by kind.
    pub sent: BTreeMap<String, u64>,
    /// Forged datagrams that reached the canary application on the hub.
    pub delivered_to_hub: u64,
    /// Forged datagrams that reached the canary application on the edge.
    pub delivered_to_edge: u64,
    /// Each link's genuine public endpoint, as the attacker saw the car use it.
    pub genuine_endpoints: BTreeMap<u8, String>,
    /// Endpoints the hub reported for a link (sampled every 100 ms through
    /// `strata-ctl status`) that were not that link's genuine one:
    /// `link N: address`. Any is a hijack.
    pub foreign_endpoints: Vec<String>,
}

impl AttackReport {
    /// Every packet it sent.
    pub fn total_sent(&self) -> u64 {
        self.sent.values().sum()
    }
}

/// A running attacker; [`Attacker::stop`] ends it and reports.
#[derive(Debug)]
pub struct Attacker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<Outcome>>,
    captured: Arc<AtomicU64>,
    canaries: Vec<(JoinHandle<anyhow::Result<()>>, Arc<AtomicU64>)>,
}

impl Attacker {
    /// Starts capturing in `lab`'s internet namespace at once, and attacking
    /// at `spec.start_s` after `traffic_start` (CLOCK_MONOTONIC ns, as the
    /// runner keeps it). Canary receivers listen on both tunnel addresses.
    pub fn start(lab: &Lab, spec: AttackSpec, traffic_start: Instant) -> anyhow::Result<Self> {
        anyhow::ensure!(spec.rate_pps > 0, "an attack needs a rate above 0 packets/s");
        let stop = Arc::new(AtomicBool::new(false));
        let captured = Arc::new(AtomicU64::new(0));
        let mut canaries = Vec::new();
        for (ns, addr) in [(lab.hub_ns(), HUB_TUNNEL_ADDR), (lab.edge_ns(), EDGE_TUNNEL_ADDR)] {
            let count = Arc::new(AtomicU64::new(0));
            let (stop, count2) = (stop.clone(), count.clone());
            // Bound before the thread returns, so nothing forged is missed
            // for want of a socket.
            let socket = in_netns(&ns, move || {
                let s = UdpSocket::bind(SocketAddr::from((addr, CANARY_PORT)))
                    .with_context(|| format!("binding the canary at {addr}:{CANARY_PORT}"))?;
                s.set_read_timeout(Some(Duration::from_millis(50)))?;
                Ok(s)
            })?;
            let thread = std::thread::spawn(move || canary(&socket, &stop, &count2));
            canaries.push((thread, count));
        }
        let links: Vec<Ipv4Addr> = (0..lab.links()).map(Lab::carrier_public_addr).collect();
        let (ns, stop2, captured2) = (lab.inet_ns(), stop.clone(), captured.clone());
        let thread = std::thread::spawn(move || {
            in_netns(&ns, move || attack(spec, traffic_start, &links, &stop2, &captured2))
        });
        Ok(Self { stop, thread, captured, canaries })
    }

    /// Stops the attack and the canaries (give the last forged packets time
    /// to arrive first) and reports.
    pub fn stop(self) -> anyhow::Result<AttackReport> {
        self.stop.store(true, Ordering::Relaxed);
        let (sent, endpoints) =
            self.thread.join().map_err(|_| anyhow::anyhow!("the attacker panicked"))??;
        let mut delivered = Vec::new();
        for (thread, count) in self.canaries {
            thread.join().map_err(|_| anyhow::anyhow!("a canary panicked"))??;
            delivered.push(count.load(Ordering::Relaxed));
        }
        Ok(AttackReport {
            captured: self.captured.load(Ordering::Relaxed),
            sent,
            delivered_to_hub: delivered[0],
            delivered_to_edge: delivered[1],
            genuine_endpoints: endpoints.iter().map(|(l, e)| (*l, e.to_string())).collect(),
            foreign_endpoints: Vec::new(),
        })
    }
}

fn canary(socket: &UdpSocket, stop: &AtomicBool, count: &AtomicU64) -> anyhow::Result<()> {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv(&mut buf) {
            Ok(_) => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e).context("canary receive"),
        }
    }
    Ok(())
}

/// Packets sent by kind, and each link's genuine endpoint.
type Outcome = (BTreeMap<String, u64>, BTreeMap<u8, SocketAddr>);

/// What the attacker learned from watching.
#[derive(Default)]
struct Seen {
    session: Option<u32>,
    /// Highest global sequence seen edge → hub.
    global_up: u32,
    /// Highest global sequence seen hub → edge.
    global_down: u32,
    /// Each link id's public endpoint (carrier NAT) as the hub sees it.
    endpoints: BTreeMap<u8, SocketAddr>,
    /// Recent genuine packets (IP header on), for replay.
    ring: VecDeque<Vec<u8>>,
}

fn attack(
    spec: AttackSpec,
    traffic_start: Instant,
    carriers: &[Ipv4Addr],
    stop: &AtomicBool,
    captured: &AtomicU64,
) -> anyhow::Result<Outcome> {
    let capture = PacketSocket::open()?;
    let raw = RawSender::open()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed_a77a);
    let mut seen = Seen::default();
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    let start_at = traffic_start + Duration::from_secs_f64(spec.start_s.max(0.0));
    let interval = Duration::from_secs_f64(1.0 / f64::from(spec.rate_pps));
    let mut next = start_at;
    let mut frame = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        // Watch everything queued, then send what is due.
        while let Some(len) = capture.recv(&mut frame)? {
            if learn(&frame[..len], &mut seen) {
                captured.fetch_add(1, Ordering::Relaxed);
            }
        }
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(1)));
            continue;
        }
        // Catch up without bursting more than 50 ms' worth after a stall.
        if now - next > Duration::from_millis(50) {
            next = now;
        }
        next += interval;
        let Some(session) = seen.session else {
            continue;
        };
        let (kind, packet) = forge(&mut rng, session, &seen, carriers);
        if let Some(packet) = packet {
            raw.send(&packet)?;
            *sent.entry(kind.to_string()).or_default() += 1;
        }
    }
    Ok((sent, seen.endpoints))
}

/// Records a frame seen on the hub-facing interface (Ethernet); true if it
/// was a tunnel packet.
fn learn(frame: &[u8], seen: &mut Seen) -> bool {
    const ETH: usize = 14;
    if frame.len() < ETH + 20 + 8 + 20 || frame[12..14] != [0x08, 0x00] {
        return false;
    }
    let ip = &frame[ETH..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ip[9] != 17 || ihl != 20 {
        return false;
    }
    let udp = &ip[ihl..];
    let (sport, dport) = (u16::from_be_bytes([udp[0], udp[1]]), u16::from_be_bytes([udp[2], udp[3]]));
    if sport != TUNNEL_PORT && dport != TUNNEL_PORT {
        return false;
    }
    let strata = &udp[8..];
    let kind = strata[0] & 0x0f;
    let link = strata[2];
    let session = u32::from_be_bytes([strata[4], strata[5], strata[6], strata[7]]);
    let global = u32::from_be_bytes([strata[8], strata[9], strata[10], strata[11]]);
    seen.session = Some(session);
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let to_hub = dport == TUNNEL_PORT && src != Lab::hub_addr();
    if to_hub {
        seen.endpoints.insert(link, SocketAddr::from((src, sport)));
    }
    if kind == 0 {
        let highest = if to_hub { &mut seen.global_up } else { &mut seen.global_down };
        if global.wrapping_sub(*highest) as i32 > 0 || *highest == 0 {
            *highest = global;
        }
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    if seen.ring.len() == REPLAY_RING {
        seen.ring.pop_front();
    }
    seen.ring.push_back(ip[..total].to_vec());
    true
}

/// One packet of the attack, chosen at random among the kinds.
fn forge(
    rng: &mut impl rand::RngExt,
    session: u32,
    seen: &Seen,
    carriers: &[Ipv4Addr],
) -> (&'static str, Option<Vec<u8>>) {
    let hub = SocketAddr::from((Lab::hub_addr(), TUNNEL_PORT));
    // The attacker's own address on the internet (the hub-facing side).
    let own = SocketAddr::from((Ipv4Addr::new(198, 19, 0, 1), rng.random_range(20_000..60_000)));
    let links = carriers.len() as u8;
    let link = rng.random_range(0..8u8);
    let endpoint = seen.endpoints.get(&rng.random_range(0..links.max(1))).copied();
    let auth = rng.random_bool(0.5);
    match rng.random_range(0..7u32) {
        0 | 1 => {
            let packet = seen.ring.get(rng.random_range(0..seen.ring.len().max(1))).cloned();
            ("replay", packet)
        }
        2 => {
            // Uplink data, from the attacker or spoofed from a link's own
            // public endpoint, sequences just ahead of the genuine ones.
            let from = if rng.random_bool(0.5) { endpoint.unwrap_or(own) } else { own };
            let global = seen.global_up.wrapping_add(rng.random_range(1..2_000));
            let link_seq = rng.random::<u32>() | (1 << 31);
            let inner = inner_udp(EDGE_TUNNEL_ADDR, HUB_TUNNEL_ADDR);
            let strata = header(0, link % links.max(1), session, global, link_seq, auth, rng, &inner);
            ("forged-data-up", Some(udp_packet(from, hub, &strata)))
        }
        3 => {
            // Downlink data to a link's public endpoint, spoofed from the hub.
            let Some(to) = endpoint else { return ("forged-data-down", None) };
            let global = seen.global_down.wrapping_add(rng.random_range(1..2_000));
            let inner = inner_udp(HUB_TUNNEL_ADDR, EDGE_TUNNEL_ADDR);
            let strata = header(0, link % links.max(1), session, global, rng.random(), auth, rng, &inner);
            ("forged-data-down", Some(udp_packet(hub, to, &strata)))
        }
        4 => {
            // A probe on any link id, from the attacker: would the hub learn
            // it as that link's endpoint, or answer it?
            let strata = header(1, link, session, 0, rng.random(), auth, rng, &[0; 44]);
            ("forged-probe", Some(udp_packet(own, hub, &strata)))
        }
        5 => {
            // Feedback to the car, spoofed from the hub: huge counters.
            let Some(to) = endpoint else { return ("forged-feedback", None) };
            let mut payload = [0u8; 56];
            rng.fill(&mut payload[..]);
            let strata = header(3, link % links.max(1), session, 0, rng.random(), auth, rng, &payload);
            ("forged-feedback", Some(udp_packet(hub, to, &strata)))
        }
        _ => {
            // A probe reply to the car, spoofed from the hub, with an odd timestamp.
            let Some(to) = endpoint else { return ("forged-probe-reply", None) };
            let strata = header(2, link % links.max(1), session, 0, rng.random(), auth, rng, &[0; 44]);
            ("forged-probe-reply", Some(udp_packet(hub, to, &strata)))
        }
    }
}

/// A Strata header (with, if `auth`, the auth flag and two words of random
/// tag) followed by `payload`.
#[allow(clippy::too_many_arguments)]
fn header(
    kind: u8,
    link: u8,
    session: u32,
    global: u32,
    link_seq: u32,
    auth: bool,
    rng: &mut impl rand::RngExt,
    payload: &[u8],
) -> Vec<u8> {
    let words: u8 = if auth { 7 } else { 5 };
    let mut out = vec![(1 << 4) | kind, if auth { 0x08 } else { 0 }, link, words];
    out.extend_from_slice(&session.to_be_bytes());
    out.extend_from_slice(&global.to_be_bytes());
    out.extend_from_slice(&link_seq.to_be_bytes());
    out.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    if auth {
        out.extend_from_slice(&rng.random::<u64>().to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// An inner IPv4/UDP datagram to the canary port.
fn inner_udp(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let udp = udp_segment(12345, CANARY_PORT, CANARY_PAYLOAD);
    ipv4(src, dst, &udp)
}

fn udp_packet(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else {
        return Vec::new();
    };
    ipv4(*from.ip(), *to.ip(), &udp_segment(from.port(), to.port(), payload))
}

/// UDP with checksum 0 (none, allowed over IPv4).
fn udp_segment(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    out
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h[6] = 0x40; // DF
    h[8] = 64;
    h[9] = 17;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = h.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let check = !(((folded & 0xffff) + (folded >> 16)) as u16);
    h[10..12].copy_from_slice(&check.to_be_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(payload);
    out
}

/// A non-blocking `AF_PACKET` socket on every interface of the namespace.
struct PacketSocket(OwnedFd);

impl PacketSocket {
    fn open() -> anyhow::Result<Self> {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the descriptor is owned below.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, i32::from(proto)) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("opening a packet socket");
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The next frame that arrived on an interface (frames this namespace
    /// sent or forwarded out are skipped), if one is queued.
    fn recv(&self, buf: &mut [u8]) -> anyhow::Result<Option<usize>> {
        loop {
            // SAFETY: zeroed sockaddr_ll is valid; the kernel fills it.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: buf and from are valid for their lengths.
            let n = unsafe {
                libc::recvfrom(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &raw mut len,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    return Ok(None);
                }
                return Err(e).context("capturing");
            }
            if from.sll_pkttype != libc::PACKET_OUTGOING {
                return Ok(Some(n as usize));
            }
        }
    }
}

/// A raw IPv4 socket that sends whole packets, IP header included, with
/// any source address.
struct RawSender(OwnedFd);

impl RawSender {
    fn open() -> anyhow::Result<Self> {
        // SAFETY: plain socket(2) call; IPPROTO_RAW implies IP_HDRINCL.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("opening a raw socket");
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn send(&self, packet: &[u8]) -> anyhow::Result<()> {
        if packet.len() < 20 {
            return Ok(());
        }
        // SAFETY: zeroed sockaddr_in is valid; filled below.
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = libc::AF_INET as u16;
        to.sin_addr.s_addr = u32::from_ne_bytes([packet[16], packet[17], packet[18], packet[19]]);
        // SAFETY: packet and to are valid for their lengths.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            // A full socket buffer or an unreachable carrier is the network's
            // business: the attacker goes on.
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOBUFS | libc::EAGAIN | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EPERM)
            ) {
                return Ok(());
            }
            return Err(e).context("sending an attack packet");
        }
        Ok(())
    }
}

/// Every (link, endpoint) the hub's status reports, sampled every 100 ms
/// with `binary status --json --name hub` until `stop`.
pub fn watch_hub_peers(
    binary: &std::path::Path,
    hub: &str,
    stop: &AtomicBool,
) -> std::collections::BTreeSet<(u8, String)> {
    let mut seen = std::collections::BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if let Ok(out) = std::process::Command::new(binary).args(["status", "--json", "--name", hub]).output()
            && out.status.success()
            && let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        {
            for link in doc["links"].as_array().into_iter().flatten() {
                let (Some(id), Some(peer)) = (link["id"].as_u64(), link["peer"].as_str()) else { continue };
                if !peer.is_empty() && peer != "-" {
                    seen.insert((id as u8, peer.to_string()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(started.elapsed()));
    }
    seen
}

impl AttackReport {
    /// Marks every endpoint in `hub_peers` that is not its link's genuine one.
    pub fn judge_hub_peers(&mut self, hub_peers: &std::collections::BTreeSet<(u8, String)>) {
        self.foreign_endpoints = hub_peers
            .iter()
            .filter(|(link, peer)| self.genuine_endpoints.get(link) != Some(peer))
            .map(|(link, peer)| format!("link {link}: {peer}"))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_packets_are_well_formed_ipv4_udp() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut seen = Seen { session: Some(7), ..Seen::default() };
        seen.endpoints.insert(0, SocketAddr::from((Ipv4Addr::new(198, 18, 1, 2), 40_000)));
        for _ in 0..200 {
            let (_, packet) = forge(&mut rng, 7, &seen, &[Lab::carrier_public_addr(0)]);
            let Some(p) = packet else { continue };
            assert_eq!(p[0], 0x45);
            assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
            assert_eq!(usize::from(u16::from_be_bytes([p[24], p[25]])), p.len() - 20);
            assert_eq!(u32::from_be_bytes([p[32], p[33], p[34], p[35]]), 7, "session");
        }
    }
}
