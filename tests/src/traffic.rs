//! Test traffic: UDP datagrams that carry their own sequence number and send
//! time, a paced sender, and a receiver that counts what arrived (and can echo
//! it back, to exercise the return path).
//!
//! Every datagram starts with 16 bytes: the sequence number and the send time
//! in ns of CLOCK_MONOTONIC, both big endian. Sender and receiver share the
//! machine's clock, so the receiver could compute one-way delay directly.

use std::{
    collections::HashSet,
    io,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

/// Bytes of the sequence/timestamp prefix.
pub const PREFIX_LEN: usize = 16;

/// Monotonic clock in ns.
pub fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// Writes the prefix into `buf` (at least [`PREFIX_LEN`] bytes).
pub fn encode_prefix(seq: u64, sent_ns: u64, buf: &mut [u8]) {
    buf[..8].copy_from_slice(&seq.to_be_bytes());
    buf[8..16].copy_from_slice(&sent_ns.to_be_bytes());
}

/// Reads the prefix, if the datagram is long enough.
pub fn decode_prefix(buf: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_be_bytes(buf.get(..8)?.try_into().ok()?);
    let sent = u64::from_be_bytes(buf.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

/// A stream of `count` numbered datagrams.
#[derive(Clone, Copy, Debug)]
pub struct UdpBlast {
    /// The sending socket's address (informational).
    pub src: SocketAddr,
    /// Where to send.
    pub dst: SocketAddr,
    /// How many datagrams.
    pub count: u64,
    /// Datagram length (at least [`PREFIX_LEN`]).
    pub payload_len: usize,
    /// Average rate in datagrams per second; 0 sends as fast as the socket takes them.
    pub pps: u64,
}

impl UdpBlast {
    /// Sends the stream from `sock`, pacing in bursts of 32 so the average
    /// rate is `pps`. Returns how many were sent. A full socket buffer
    /// (`ENOBUFS`) is waited out, not counted as sent.
    pub fn send(&self, sock: &UdpSocket) -> io::Result<u64> {
        const BURST: u64 = 32;
        let mut buf = vec![0u8; self.payload_len.max(PREFIX_LEN)];
        let start = Instant::now();
        let mut sent = 0;
        while sent < self.count {
            encode_prefix(sent, now_ns(), &mut buf);
            match sock.send_to(&buf, self.dst) {
                Ok(_) => sent += 1,
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == io::ErrorKind::WouldBlock =>
                {
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
                Err(e) => return Err(e),
            }
            if self.pps > 0 && sent % BURST == 0 {
                let due = Duration::from_secs_f64(sent as f64 / self.pps as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        Ok(sent)
    }
}

/// What a receiver saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiveReport {
    /// Distinct sequence numbers received.
    pub received: u64,
    /// Datagrams whose sequence number had already arrived.
    pub duplicates: u64,
    /// Highest sequence number seen.
    pub max_seq: Option<u64>,
    /// Datagrams that arrived after a higher sequence number.
    pub reordered: u64,
    /// Time from the first to the last datagram.
    pub span: Duration,
}

/// How much a test receiver may fall behind: room for a whole 100 000-datagram
/// exchange of small datagrams (≈ 2 KiB of kernel memory each, skb overhead
/// included), taken only as it is used. 32 MiB was too little: a receiver that
/// also echoes, built for debug and sharing two cores with another test's lab,
/// overflowed it in one CI run in three (`RcvbufErrors` 2 521 and 12 716 in
/// the hub's namespace, every datagram counted by the hub's data plane).
pub const RECEIVE_BUFFER: i32 = 256 << 20;

/// Makes the socket's receive buffer large (`SO_RCVBUFFORCE`, root only) so
/// a burst is not lost in the receiving application.
pub fn enlarge_receive_buffer(sock: &UdpSocket, bytes: i32) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live i32 and its size.
    let ret = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const bytes).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if ret == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Receives until `expected` distinct datagrams arrived or nothing arrived
/// for `idle_timeout`; with `echo`, sends every datagram back to its source.
pub fn receive(
    sock: &UdpSocket,
    expected: u64,
    idle_timeout: Duration,
    echo: bool,
) -> io::Result<ReceiveReport> {
    enlarge_receive_buffer(sock, RECEIVE_BUFFER)?;
    sock.set_read_timeout(Some(idle_timeout))?;
    let mut seen = HashSet::new();
    let mut report = ReceiveReport::default();
    let mut buf = vec![0u8; 65_536];
    let mut first = None;
    while report.received < expected {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                break;
            }
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        let first_at = *first.get_or_insert(now);
        report.span = now - first_at;
        let Some((seq, _)) = decode_prefix(&buf[..n]) else {
            continue;
        };
        if !seen.insert(seq) {
            report.duplicates += 1;
            continue;
        }
        report.received += 1;
        match report.max_seq {
            Some(max) if seq < max => report.reordered += 1,
            _ => report.max_seq = Some(seq),
        }
        if echo {
            // Retry briefly on a full buffer so an echo is not silently lost.
            for _ in 0..100 {
                match sock.send_to(&buf[..n], from) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        std::thread::sleep(Duration::from_micros(50))
                    }
                    _ => break,
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_round_trips() {
        let mut b = [0u8; 20];
        encode_prefix(0x0102_0304_0506_0708, 42, &mut b);
        assert_eq!(decode_prefix(&b), Some((0x0102_0304_0506_0708, 42)));
        assert_eq!(decode_prefix(&b[..15]), None);
    }

    #[test]
    fn loopback_stream_is_counted_and_echoed() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // The echoes queue up while the stream is still being sent.
        enlarge_receive_buffer(&tx, 4 << 20).unwrap();
        let dst = rx.local_addr().unwrap();
        let receiver = std::thread::spawn(move || receive(&rx, 500, Duration::from_secs(2), true));
        let blast = UdpBlast { src: tx.local_addr().unwrap(), dst, count: 500, payload_len: 64, pps: 50_000 };
        assert_eq!(blast.send(&tx).unwrap(), 500);
        let report = receiver.join().unwrap().unwrap();
        assert_eq!(report.received, 500);
        assert_eq!(report.duplicates, 0);
        assert_eq!(report.max_seq, Some(499));
        let echoes = receive(&tx, 500, Duration::from_secs(2), false).unwrap();
        assert_eq!(echoes.received, 500);
    }
}

/// A one-way UDP stream from an application in one namespace to one in
/// another, optionally echoed back.
#[derive(Clone, Debug)]
pub struct Stream {
    /// Sender's namespace.
    pub from_ns: String,
    /// Address the sender binds (port 0: any).
    pub from: SocketAddr,
    /// Receiver's namespace.
    pub to_ns: String,
    /// Address the receiver binds and the sender sends to.
    pub to: SocketAddr,
    /// Datagrams.
    pub count: u64,
    /// Datagram length.
    pub payload_len: usize,
    /// Rate (0: as fast as possible).
    pub pps: u64,
    /// Echo every datagram back and count the echoes.
    pub echo: bool,
    /// How long a receiver waits for more before giving up.
    pub idle_timeout: Duration,
}

/// What a [`Stream`] achieved.
#[derive(Clone, Debug)]
pub struct StreamReport {
    /// Datagrams sent.
    pub sent: u64,
    /// Time the sender took.
    pub send_time: Duration,
    /// What the receiver got.
    pub delivered: ReceiveReport,
    /// What came back, if echoing.
    pub echoed: Option<ReceiveReport>,
}

impl Stream {
    /// Runs the stream to completion.
    pub fn run(&self) -> anyhow::Result<StreamReport> {
        // Bound (in its namespace: a socket keeps the one it was made in)
        // before the receiving thread starts, so the first datagram cannot
        // arrive before it — a 200 ms head start for the thread was a guess
        // a loaded host could lose.
        let to = self.to;
        let sock = crate::in_netns(&self.to_ns, move || {
            let sock = UdpSocket::bind(to)?;
            enlarge_receive_buffer(&sock, RECEIVE_BUFFER)?;
            Ok(sock)
        })?;
        let (count, idle_timeout, echo) = (self.count, self.idle_timeout, self.echo);
        let receiver = std::thread::spawn(move || receive(&sock, count, idle_timeout, echo));
        let spec = self.clone();
        let (sent, send_time, echoed) = crate::in_netns(&self.from_ns, move || {
            let sock = UdpSocket::bind(spec.from)?;
            let echoes = if spec.echo {
                let echo_sock = sock.try_clone()?;
                enlarge_receive_buffer(&echo_sock, RECEIVE_BUFFER)?;
                let (count, idle) = (spec.count, spec.idle_timeout);
                // Spawned from this thread, so it stays in the sender's namespace.
                Some(std::thread::spawn(move || receive(&echo_sock, count, idle, false)))
            } else {
                None
            };
            let blast = UdpBlast {
                src: sock.local_addr()?,
                dst: spec.to,
                count: spec.count,
                payload_len: spec.payload_len,
                pps: spec.pps,
            };
            let started = Instant::now();
            let sent = blast.send(&sock)?;
            let send_time = started.elapsed();
            let echoed = match echoes {
                Some(h) => Some(h.join().map_err(|_| anyhow::anyhow!("echo receiver panicked"))??),
                None => None,
            };
            Ok((sent, send_time, echoed))
        })?;
        let delivered = receiver.join().map_err(|_| anyhow::anyhow!("receiver panicked"))??;
        Ok(StreamReport { sent, send_time, delivered, echoed })
    }
}
