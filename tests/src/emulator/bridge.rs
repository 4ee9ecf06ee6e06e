//! The I/O shell of an emulated link: an Ethernet bridge in userspace.
//!
//! Two interfaces of an "air" namespace — one facing the edge's link
//! interface, one facing the carrier — each with an `AF_PACKET` socket. Every
//! frame read on one side is offered to that direction's [`Direction`] and
//! written to the other side when the model releases it. The thread sleeps
//! (`ppoll`, µs resolution) until the next frame or the model's next event.
//!
//! The sockets use `PACKET_VNET_HDR`, so each frame travels with the kernel's
//! offload metadata (a partial checksum still to be filled in, GSO): frames
//! leave exactly as the sender's stack handed them over, with no checksum
//! recomputed here. `PACKET_IGNORE_OUTGOING` keeps a socket from reading back
//! the frames it writes.

use std::{
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use nix::poll::{PollFd, PollFlags, ppoll};

use super::model::{Direction, DirectionConfig, DirectionStats, Nanos, TransmitBins};

/// `struct virtio_net_hdr` that precedes every frame on a `PACKET_VNET_HDR` socket.
const VNET_HDR_LEN: usize = 10;
/// Ethernet header, not counted against capacity.
const ETH_HLEN: usize = 14;
/// The longest poll: the loop checks its stop flag at least this often.
const MAX_SLEEP: Duration = Duration::from_millis(5);
/// How often a side whose interface is gone tries to open it again (a
/// failed open is a name lookup: cheap).
const REOPEN_EVERY: Duration = Duration::from_millis(2);

/// A raw packet socket bound to one interface.
#[derive(Debug)]
struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    fn open(ifname: &str) -> anyhow::Result<Self> {
        let name = CString::new(ifname)?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        anyhow::ensure!(index != 0, "interface {ifname} not found");
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(protocol),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error()).context("AF_PACKET socket (needs CAP_NET_RAW)");
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = Self { fd };
        sock.set_int(libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1).context("PACKET_VNET_HDR")?;
        sock.set_int(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1).context("PACKET_IGNORE_OUTGOING")?;
        sock.set_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20).context("SO_RCVBUFFORCE")?;
        sock.set_int(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 8 << 20).context("SO_SNDBUFFORCE")?;
        // SAFETY: zeroed sockaddr_ll is valid; the fields set below describe the interface.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = index as i32;
        // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
        let ret = unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error()).with_context(|| format!("binding to {ifname}"));
        }
        Ok(sock)
    }

    fn set_int(&self, level: i32, name: i32, value: i32) -> io::Result<()> {
        // SAFETY: setsockopt with a pointer to a live i32 and its size.
        let ret = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                size_of::<i32>() as libc::socklen_t,
            )
        };
        if ret == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    /// Reads one frame (with its vnet header); `None` when nothing is waiting.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) }
    }

    /// Writes one frame (with its vnet header). A full socket buffer drops the
    /// frame, as a full transmit queue would.
    fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: `frame` is readable for its length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        n == frame.len() as isize
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What one emulated link did, both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Edge → carrier.
    pub uplink: DirectionStats,
    /// Carrier → edge.
    pub downlink: DirectionStats,
    /// Frames the model released that the outgoing socket refused.
    pub send_failures: u64,
    /// IP bytes of data-sized frames (≥ [`DATA_FRAME_MIN`]) offered to the
    /// uplink per [`DATA_BIN`] since the emulator's time 0, filled when the
    /// link stops: when the edge stopped sending data on a link, which the
    /// smaller probes would hide in packet counts.
    pub uplink_data_bins: Vec<u64>,
    /// Each time a data-sized uplink frame came from another IPv4 source
    /// than the one before: (ns since the emulator's time 0, source). When
    /// the edge began sending from a new address.
    pub uplink_data_sources: Vec<(u64, std::net::Ipv4Addr)>,
    /// What the uplink transmitted and how long it queued, per 10 ms since
    /// the emulator's time 0, filled when the link stops.
    pub uplink_transmitted: TransmitBins,
}

/// Smallest IP length counted as data in [`LinkStats::uplink_data_bins`]:
/// the lab's video datagrams cross a link as 1392-byte tunnel packets,
/// while Strata's probes are 92 bytes and its packet-train probes 1256
/// (which a link being probed sends without carrying any data).
pub const DATA_FRAME_MIN: usize = 1300;
/// Width of a bin of [`LinkStats::uplink_data_bins`].
pub const DATA_BIN: Duration = Duration::from_millis(10);

/// A running emulated link: a thread bridging two interfaces.
#[derive(Debug)]
pub struct EmulatedLink {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<LinkStats>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl EmulatedLink {
    /// Starts bridging `edge_if` and `carrier_if` in namespace `ns`, shaping
    /// frames edge → carrier with `uplink` and carrier → edge with `downlink`.
    /// `start` is time 0 of both models (traces, blackouts, collapses).
    pub fn start(
        ns: &str,
        edge_if: &str,
        carrier_if: &str,
        uplink: DirectionConfig,
        downlink: DirectionConfig,
        start: Instant,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(LinkStats::default()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (edge_if, carrier_if, path) =
            (edge_if.to_string(), carrier_if.to_string(), format!("/run/netns/{ns}"));
        let (stop2, stats2) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new().name(format!("air-{ns}")).spawn(move || {
            let opened = (|| {
                let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering {path}"))?;
                Ok::<_, anyhow::Error>((PacketSocket::open(&edge_if)?, PacketSocket::open(&carrier_if)?))
            })();
            let (edge, carrier) = match opened {
                Ok(sockets) => {
                    let _ = ready_tx.send(Ok(()));
                    sockets
                }
                Err(e) => {
                    let message = format!("{e:#}");
                    let _ = ready_tx.send(Err(e));
                    anyhow::bail!("{message}");
                }
            };
            let sides = [
                Side { ifname: edge_if, socket: Some(edge), last_attempt: None },
                Side { ifname: carrier_if, socket: Some(carrier), last_attempt: None },
            ];
            bridge(sides, (Direction::new(uplink), Direction::new(downlink)), start, &stop2, &stats2)
        })?;
        ready_rx.recv().context("the link thread ended before it was ready")??;
        Ok(Self { stop, stats, thread: Some(thread) })
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        self.stats.lock().map_or_else(|e| e.into_inner().clone(), |s| s.clone())
    }

    /// Stops the bridge and returns its final counters.
    pub fn stop(mut self) -> anyhow::Result<LinkStats> {
        self.halt()?;
        Ok(self.stats())
    }

    fn halt(&mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| anyhow::anyhow!("the link thread panicked"))??;
        }
        Ok(())
    }
}

impl Drop for EmulatedLink {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

fn now_since(start: Instant) -> Nanos {
    start.elapsed().as_nanos() as Nanos
}

/// One side of the bridge: its interface name and, while the interface
/// exists, its socket.
struct Side {
    ifname: String,
    socket: Option<PacketSocket>,
    last_attempt: Option<Instant>,
}

impl Side {
    /// Reopens the socket of an interface that disappeared (USB-style
    /// detach), at most every [`REOPEN_EVERY`]. Promptly: a frame arriving
    /// before the socket is back is lost, and when that frame was the
    /// edge's first ARP request for its next hop the kernel asked again
    /// only a second later, holding every probe until then (measured with
    /// 100 ms here: a 1.2 s queue of probes after each re-attach, which a
    /// real modem does not have).
    fn ensure_open(&mut self) {
        if self.socket.is_some() || self.last_attempt.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
            return;
        }
        self.last_attempt = Some(Instant::now());
        self.socket = PacketSocket::open(&self.ifname).ok();
    }

    /// Whether an error means the interface went away.
    fn gone(e: &io::Error) -> bool {
        matches!(e.raw_os_error(), Some(libc::ENETDOWN | libc::ENODEV | libc::ENXIO))
    }
}

/// Bridges the two sides (edge, carrier) until `stop`, shaping each direction.
fn bridge(
    mut sides: [Side; 2],
    (mut uplink, mut downlink): (Direction<Vec<u8>>, Direction<Vec<u8>>),
    start: Instant,
    stop: &AtomicBool,
    stats: &Mutex<LinkStats>,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; VNET_HDR_LEN + 65_536];
    let mut out = Vec::new();
    let mut send_failures = 0;
    let mut data_bins: Vec<u64> = Vec::new();
    let mut data_sources: Vec<(u64, std::net::Ipv4Addr)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        for side in &mut sides {
            side.ensure_open();
        }
        let now = now_since(start);
        let next = [uplink.next_event(), downlink.next_event()].into_iter().flatten().min();
        let sleep = next.map_or(MAX_SLEEP, |t| Duration::from_nanos(t.saturating_sub(now))).min(MAX_SLEEP);
        let mut fds: Vec<PollFd<'_>> = sides
            .iter()
            .filter_map(|s| s.socket.as_ref())
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        match ppoll(&mut fds, Some(nix::sys::time::TimeSpec::from_duration(sleep)), None) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("ppoll"),
        }
        drop(fds);
        let now = now_since(start);
        for (i, (side, dir)) in sides.iter_mut().zip([&mut uplink, &mut downlink]).enumerate() {
            let Some(sock) = &side.socket else { continue };
            loop {
                match sock.recv(&mut buf) {
                    Ok(Some(n)) => {
                        let frame = buf[..n].to_vec();
                        // Capacity counts IP bytes, as mahimahi (which shapes IP
                        // packets on a TUN device) does: 1500 per opportunity.
                        let len = n.saturating_sub(VNET_HDR_LEN + ETH_HLEN);
                        // Well-formed IPv4 frames only: packets the edge's
                        // kernel held for a next hop it was resolving again
                        // after a carrier loss leave, once it is resolved,
                        // without their Ethernet header (a known kernel
                        // behaviour, docs/ARCHITECTURE.md) — stale, not data
                        // the edge chose to send on the link again.
                        let ip = VNET_HDR_LEN + ETH_HLEN;
                        let ipv4 = buf.get(ip - 2..ip) == Some(&[0x08, 0x00][..])
                            && buf.get(ip).is_some_and(|v| v >> 4 == 4);
                        if i == 0 && len >= DATA_FRAME_MIN && ipv4 {
                            let bin = (now / DATA_BIN.as_nanos() as u64) as usize;
                            if data_bins.len() <= bin {
                                data_bins.resize(bin + 1, 0);
                            }
                            data_bins[bin] += len as u64;
                            if let Some(src) = buf.get(ip + 12..ip + 16)
                                && let Ok(src) = <[u8; 4]>::try_from(src).map(std::net::Ipv4Addr::from)
                                && data_sources.last().is_none_or(|(_, last)| *last != src)
                            {
                                data_sources.push((now, src));
                            }
                        }
                        let _ = dir.offer(now, frame, len);
                    }
                    Ok(None) => break,
                    Err(e) if Side::gone(&e) => {
                        side.socket = None;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let now = now_since(start);
        // Uplink frames leave on the carrier side, downlink frames on the edge side.
        for (dir, target) in [(&mut uplink, 1), (&mut downlink, 0)] {
            dir.advance(now, &mut out);
            for frame in out.drain(..) {
                let sent = sides[target].socket.as_ref().is_some_and(|s| s.send(&frame));
                if !sent {
                    send_failures += 1;
                }
            }
        }
        if let Ok(mut s) = stats.lock() {
            s.uplink = uplink.stats();
            s.downlink = downlink.stats();
            s.send_failures = send_failures;
        }
    }
    if let Ok(mut s) = stats.lock() {
        s.uplink_data_bins = data_bins;
        s.uplink_data_sources = data_sources;
        s.uplink_transmitted = uplink.transmitted().clone();
    }
    Ok(())
}
