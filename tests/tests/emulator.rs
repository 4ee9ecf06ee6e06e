//! The link emulator against the real kernel: frames bridged through an air
//! namespace get the configured delay and no more capacity than the trace.
//! Needs root.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use strata_lab::{
    Lab,
    emulator::{bridge::EmulatedLink, model::DirectionConfig, trace::Trace},
    in_netns,
    traffic::Stream,
};

fn require_root() {
    strata_lab::require_root("emulator tests create namespaces and raw sockets");
}

/// A UDP echo server on the carrier's side of link 0.
fn echo_server(lab: &Lab) -> std::thread::JoinHandle<anyhow::Result<()>> {
    let ns = lab.carrier_ns(0);
    std::thread::spawn(move || {
        in_netns(&ns, || {
            let sock =
                UdpSocket::bind(SocketAddr::from((Lab::link_gateway(0), 7))).map_err(anyhow::Error::from)?;
            sock.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                sock.send_to(&buf[..n], from)?;
            }
            Ok(())
        })
    })
}

#[test]
fn delay_is_applied_in_each_direction() {
    require_root();
    let lab = Lab::up_emulated(&Lab::unique_prefix(), 1).expect("lab up");
    let delay = |ms| DirectionConfig { base_delay_ms: ms, ..Default::default() };
    let link =
        EmulatedLink::start(&lab.air_ns(0), "edge", "car", delay(20.0), delay(30.0), Instant::now()).unwrap();
    let server = echo_server(&lab);
    std::thread::sleep(Duration::from_millis(200));
    let rtts = in_netns(&lab.edge_ns(), || {
        let sock = UdpSocket::bind(SocketAddr::from((Lab::link_addr(0), 0)))?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut rtts = Vec::new();
        let mut buf = [0u8; 64];
        for i in 0..20u8 {
            let sent = Instant::now();
            sock.send_to(&[i; 32], SocketAddr::from((Lab::link_gateway(0), 7)))?;
            sock.recv_from(&mut buf)?;
            rtts.push(sent.elapsed());
        }
        Ok(rtts)
    })
    .expect("echoes");
    // The first exchange also waits for ARP across the emulated link.
    let mut steady: Vec<Duration> = rtts[1..].to_vec();
    steady.sort();
    let median = steady[steady.len() / 2];
    eprintln!(
        "RTT over 20 ms up + 30 ms down: min {:?}, median {median:?}, max {:?}",
        steady[0],
        steady[steady.len() - 1]
    );
    assert!(
        median >= Duration::from_millis(50) && median < Duration::from_millis(56),
        "median RTT {median:?} for 20 ms up + 30 ms down"
    );
    let stats = link.stop().unwrap();
    assert!(stats.uplink.delivered >= 20 && stats.downlink.delivered >= 20, "{stats:?}");
    server.join().unwrap().unwrap();
    lab.down().unwrap();
}

#[test]
fn capacity_is_capped_by_the_trace() {
    require_root();
    let lab = Lab::up_emulated(&Lab::unique_prefix(), 1).expect("lab up");
    let uplink = DirectionConfig {
        capacity: Some(Trace::constant(12.0).unwrap()),
        buffer_bytes: 64 * 1500,
        ..Default::default()
    };
    let link = EmulatedLink::start(
        &lab.air_ns(0),
        "edge",
        "car",
        uplink,
        DirectionConfig::default(),
        Instant::now(),
    )
    .unwrap();
    // Offer ~24 Mbit/s for 2 s: twice what the trace carries.
    let report = Stream {
        from_ns: lab.edge_ns(),
        from: SocketAddr::from((Lab::link_addr(0), 0)),
        to_ns: lab.carrier_ns(0),
        to: SocketAddr::from((Lab::link_gateway(0), 9000)),
        count: 4000,
        payload_len: 1472,
        pps: 2000,
        echo: false,
        idle_timeout: Duration::from_secs(1),
    }
    .run()
    .unwrap();
    let span = report.delivered.span.as_secs_f64();
    let mbit_s = report.delivered.received as f64 * 1514.0 * 8.0 / span / 1e6;
    eprintln!("12 Mbit/s trace, 24 Mbit/s offered: delivered {mbit_s:.3} Mbit/s of Ethernet frames");
    assert!((11.0..13.0).contains(&mbit_s), "delivered {mbit_s:.2} Mbit/s through a 12 Mbit/s trace");
    let stats = link.stop().unwrap();
    assert!(stats.uplink.dropped_buffer > 1000, "the buffer overflowed: {stats:?}");
    lab.down().unwrap();
}
