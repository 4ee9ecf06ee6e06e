//! Measuring the emulator itself: round-trip time across an emulated link
//! and what it delivers when offered more or less than its capacity. Used by
//! its tests and by `cargo xtask bench emulator`.
//!
//! Both run between the edge (link address) and the carrier (the link's
//! gateway address), so nothing but the emulated link is in the path.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use crate::{
    Lab, in_netns,
    traffic::{ReceiveReport, Stream},
};

/// UDP port of the echo server on the carrier side.
const ECHO_PORT: u16 = 7;

/// `count` round trips edge → carrier → edge over link `link`, in order.
/// The first one also waits for ARP across the link; callers usually skip it.
pub fn round_trips(lab: &Lab, link: usize, count: usize) -> anyhow::Result<Vec<Duration>> {
    let server_addr = SocketAddr::from((Lab::link_gateway(link), ECHO_PORT));
    // Bound in the carrier's namespace before the first probe can leave (a
    // socket keeps its namespace), rather than given a 200 ms head start.
    let sock = in_netns(&lab.carrier_ns(link), move || Ok(UdpSocket::bind(server_addr)?))?;
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        sock.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut buf = [0u8; 2048];
        for _ in 0..count {
            let (n, from) = sock.recv_from(&mut buf)?;
            sock.send_to(&buf[..n], from)?;
        }
        Ok(())
    });
    let rtts = in_netns(&lab.edge_ns(), move || {
        let sock = UdpSocket::bind(SocketAddr::from((Lab::link_addr(link), 0)))?;
        sock.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut rtts = Vec::with_capacity(count);
        let mut buf = [0u8; 64];
        for i in 0..count {
            let sent = Instant::now();
            sock.send_to(&(i as u32).to_be_bytes(), server_addr)?;
            sock.recv_from(&mut buf)?;
            rtts.push(sent.elapsed());
            // Spread the probes out so they never queue behind each other.
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(rtts)
    })?;
    server.join().map_err(|_| anyhow::anyhow!("echo server panicked"))??;
    Ok(rtts)
}

/// Offers `count` datagrams of `payload` bytes at `pps` (0: as fast as
/// possible) from the edge to the carrier over link `link`.
pub fn offer(lab: &Lab, link: usize, count: u64, payload: usize, pps: u64) -> anyhow::Result<ReceiveReport> {
    Ok(Stream {
        from_ns: lab.edge_ns(),
        from: SocketAddr::from((Lab::link_addr(link), 0)),
        to_ns: lab.carrier_ns(link),
        to: SocketAddr::from((Lab::link_gateway(link), 9000)),
        count,
        payload_len: payload,
        pps,
        echo: false,
        idle_timeout: Duration::from_secs(1),
    }
    .run()?
    .delivered)
}

/// IP bytes of a UDP datagram with `payload` bytes (what capacity counts).
pub const fn ip_bytes(payload: usize) -> usize {
    payload + 28
}
