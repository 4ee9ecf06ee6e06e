//! The link emulator against the real kernel: frames bridged through an air
//! namespace get the configured delay and no more capacity than the trace.
//! Needs root.

use std::time::{Duration, Instant};

use strata_common::stats::percentile;
use strata_lab::{
    Lab,
    emulator::{bridge::EmulatedLink, calibrate, model::DirectionConfig, trace::Trace},
};

fn require_root() {
    strata_lab::require_root("emulator tests create namespaces and raw sockets");
}

#[test]
fn delay_is_applied_in_each_direction() {
    require_root();
    let lab = Lab::up_emulated(&Lab::unique_prefix(), 1).expect("lab up");
    let delay = |ms| DirectionConfig { base_delay_ms: ms, ..Default::default() };
    let link =
        EmulatedLink::start(&lab.air_ns(0), "edge", "car", delay(20.0), delay(30.0), Instant::now()).unwrap();
    let rtts = calibrate::round_trips(&lab, 0, 21).expect("echoes");
    // The first exchange also waits for ARP across the emulated link.
    let mut steady: Vec<Duration> = rtts[1..].to_vec();
    steady.sort();
    let median = percentile(&steady, 50.0).expect("echoes");
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
    let delivered = calibrate::offer(&lab, 0, 4000, 1472, 2000).unwrap();
    let span = delivered.span.as_secs_f64();
    let mbit_s = delivered.received as f64 * calibrate::ip_bytes(1472) as f64 * 8.0 / span / 1e6;
    eprintln!("12 Mbit/s trace, 24 Mbit/s offered: delivered {mbit_s:.3} Mbit/s of IP packets");
    assert!((11.0..13.0).contains(&mbit_s), "delivered {mbit_s:.2} Mbit/s through a 12 Mbit/s trace");
    let stats = link.stop().unwrap();
    assert!(stats.uplink.dropped_buffer > 1000, "the buffer overflowed: {stats:?}");
    lab.down().unwrap();
}

#[test]
fn a_link_whose_interface_is_detached_and_reattached_bridges_again() {
    require_root();
    let lab = Lab::up_emulated(&Lab::unique_prefix(), 1).expect("lab up");
    let delay = |ms| DirectionConfig { base_delay_ms: ms, ..Default::default() };
    let link =
        EmulatedLink::start(&lab.air_ns(0), "edge", "car", delay(5.0), delay(5.0), Instant::now()).unwrap();
    assert_eq!(calibrate::round_trips(&lab, 0, 3).expect("before the detach").len(), 3);
    Lab::detach_link(lab.prefix(), &Lab::link_ifname(0)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Lab::reattach_link(lab.prefix(), 0, "lnk0").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let rtts = calibrate::round_trips(&lab, 0, 3).expect("after the re-attach");
    assert!(rtts[1..].iter().all(|r| *r < Duration::from_millis(50)), "{rtts:?}");
    link.stop().unwrap();
    lab.down().unwrap();
}
