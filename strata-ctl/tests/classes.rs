//! Delivery classes through `BPF_PROG_TEST_RUN`: the class the egress
//! program writes into the Strata header for inner packets of each DSCP,
//! protocol and port (the defaults, and rules from `[[classes]]` text as the
//! daemon compiles them), and the per-class counters both programs keep.
//! Needs root (loading BPF).

use std::net::Ipv4Addr;

use serde::Deserialize;
use strata_common::{
    class::ClassTable,
    packet::{IPPROTO_TCP, IPPROTO_UDP},
    wire::flags::{AUTH, CLASS_MASK},
};
use strata_ctl::{
    config::classes::{self, ClassSection},
    dataplane::{
        datapath::{Datapath, Program},
        stats::ClassStats,
    },
    testbed::{
        self, SESSION, TC_ACT_REDIRECT, eth, inner_v4, inner_v6, ipv4, ipv6, make_link_v6, strata,
        tunnel_frame, udp,
    },
};

fn require_root() {
    strata_lab::require_root("class tests load BPF programs");
}

/// An edge sending everything on link 0.
fn edge() -> Datapath {
    require_root();
    testbed::edge([1, 0, 0, 0, 0, 0, 0, 0], 1500).expect("load and configure the data plane")
}

/// The table the daemon writes for `[[classes]]` text.
fn table(text: &str) -> ClassTable {
    #[derive(Deserialize)]
    struct File {
        classes: Vec<ClassSection>,
    }
    let file: File = toml::from_str(text).expect("classes parse");
    classes::table(&file.classes).expect("classes are valid")
}

/// The class bits the egress program gave `inner` (an IP packet), and its Strata flags.
fn sent_class(dp: &mut Datapath, inner: &[u8]) -> u8 {
    let ether_type = if inner[0] >> 4 == 6 { 0x86DD } else { 0x0800 };
    let (action, out, _) =
        testbed::run(dp, Program::TunnelEgress, &eth(ether_type, inner)).expect("test run");
    assert_eq!(action, TC_ACT_REDIRECT);
    // Ethernet 14, outer IPv4 20 (IPv6 40), UDP 8; flags are the header's byte 1.
    let strata_at = if out[12..14] == [0x86, 0xDD] { 14 + 40 + 8 } else { 14 + 20 + 8 };
    out[strata_at + 1] & CLASS_MASK
}

fn class_stats(dp: &Datapath, class: &str) -> ClassStats {
    let snap = dp.snapshot().expect("snapshot");
    snap.classes.into_iter().find(|c| c.class == class).expect("every class is reported")
}

/// A UDP (or TCP: same port offsets) packet to `dport`, DSCP `dscp`, IPv4.
fn to_port(dscp: u8, proto: u8, dport: u16, frag: u16) -> Vec<u8> {
    ipv4(
        Ipv4Addr::new(10, 200, 0, 1),
        Ipv4Addr::new(10, 200, 0, 2),
        dscp << 2,
        frag,
        proto,
        &udp(5000, dport, &[7; 40]),
    )
}

/// A UDP packet to `dport` over IPv6, traffic class `dscp << 2`.
fn to_port6(dscp: u8, next: u8, dport: u16) -> Vec<u8> {
    let (a, b) = ("fd53::1".parse().unwrap(), "fd53::2".parse().unwrap());
    ipv6(a, b, dscp << 2, next, &udp(5000, dport, &[7; 40]))
}

#[test]
fn egress_classes_by_dscp_by_default() {
    let mut dp = edge();
    for (dscp, class) in [
        (46, 2),
        (40, 2),
        (48, 2),
        (56, 2),
        (34, 1),
        (36, 1),
        (38, 1),
        (32, 0),
        (0, 0),
        (10, 0),
        (26, 0),
        (63, 0),
    ] {
        assert_eq!(sent_class(&mut dp, &inner_v4(dscp << 2, 64)), class, "IPv4 DSCP {dscp}");
        assert_eq!(sent_class(&mut dp, &to_port6(dscp, IPPROTO_UDP, 80)), class, "IPv6 DSCP {dscp}");
    }
    // ECN bits do not move the class.
    assert_eq!(sent_class(&mut dp, &inner_v4(46 << 2 | 3, 64)), 2);
}

#[test]
fn egress_applies_the_configured_rules_first_then_the_dscp() {
    let mut dp = edge();
    dp.set_classes(&table(
        r#"
        [[classes]]                 # MAVLink telemetry
        class = "critical"
        protocol = "udp"
        port = 14550
        [[classes]]
        class = "video"
        protocol = "tcp"
        port = "8000-8009"
        [[classes]]
        class = "best_effort"
        dscp = 46
        protocol = 47
        [[classes]]                 # folded into the per-DSCP table
        class = "video"
        dscp = 32
        "#,
    ))
    .unwrap();
    for (packet, class, what) in [
        (to_port(0, IPPROTO_UDP, 14550, 0), 2, "UDP 14550 over IPv4"),
        (to_port6(0, IPPROTO_UDP, 14550), 2, "UDP 14550 over IPv6"),
        (to_port(0, IPPROTO_TCP, 14550, 0), 0, "TCP 14550: other protocol"),
        (to_port(0, IPPROTO_UDP, 14551, 0), 0, "UDP 14551: other port"),
        (to_port(0, IPPROTO_TCP, 8000, 0), 1, "TCP 8000, range start"),
        (to_port(0, IPPROTO_TCP, 8009, 0), 1, "TCP 8009, range end"),
        (to_port(0, IPPROTO_TCP, 8010, 0), 0, "TCP 8010, past the range"),
        (to_port(46, 47, 0, 0), 0, "GRE with EF: the protocol rule overrides the DSCP"),
        (to_port(46, IPPROTO_UDP, 80, 0), 2, "EF elsewhere: the default"),
        (to_port(32, IPPROTO_UDP, 80, 0), 1, "CS4: the folded DSCP rule"),
        // A non-first fragment has no port: its bytes at the port's place are payload.
        (to_port(0, IPPROTO_UDP, 14550, 185), 0, "a later fragment"),
        (to_port(0, IPPROTO_UDP, 14550, 0x2000), 2, "a first fragment (MF set)"),
        // IPv6 extension headers are not walked: hop-by-hop in front of UDP.
        (to_port6(0, 0, 14550), 0, "IPv6 with an extension header"),
    ] {
        assert_eq!(sent_class(&mut dp, &packet), class, "{what}");
    }
}

#[test]
fn egress_counts_sent_packets_and_inner_bytes_per_class_on_every_path() {
    let mut dp = edge();
    let critical = inner_v4(46 << 2, 100);
    let video = inner_v4(34 << 2, 300);
    sent_class(&mut dp, &critical);
    sent_class(&mut dp, &video);
    sent_class(&mut dp, &video);
    sent_class(&mut dp, &inner_v6(10));
    let c = class_stats(&dp, "critical");
    assert_eq!((c.tx_packets, c.tx_bytes), (1, critical.len() as u64));
    let v = class_stats(&dp, "video");
    assert_eq!((v.tx_packets, v.tx_bytes), (2, 2 * video.len() as u64));
    let b = class_stats(&dp, "best_effort");
    assert_eq!((b.tx_packets, b.tx_bytes), (1, inner_v6(10).len() as u64));
    assert_eq!(c.rx_packets + v.rx_packets + b.rx_packets, 0, "nothing delivered");

    // An IPv6 carrier and an authenticated IPv4 one send through their own paths.
    make_link_v6(&mut dp, 0, 1500).unwrap();
    assert_eq!(sent_class(&mut dp, &critical), 2);
    assert_eq!(class_stats(&dp, "critical").tx_packets, 2, "over IPv6");
    let mut dp = edge();
    testbed::require_test_auth(&mut dp, 0, false).unwrap();
    let (action, out, _) = testbed::run(&mut dp, Program::TunnelEgress, &eth(0x0800, &video)).unwrap();
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(out[14 + 20 + 8 + 1], 1 | AUTH, "video, tagged");
    let v = class_stats(&dp, "video");
    assert_eq!((v.tx_packets, v.tx_bytes), (1, video.len() as u64), "tagged");
}

#[test]
fn ingress_counts_delivered_packets_per_class_the_sender_set() {
    require_root();
    let mut dp = testbed::hub().expect("hub");
    let inner = inner_v4(0, 200);
    // The receiver takes the class from the header, not the inner DSCP (0 here).
    for (global, flags) in [(1u32, 2u8), (2, 2), (3, 1), (4, 0), (5, 3)] {
        let frame = tunnel_frame(&strata(0, flags, 1, 5, SESSION, global, global), &inner);
        let (action, ..) = testbed::run(&mut dp, Program::LinkIngress, &frame).unwrap();
        assert_eq!(action, TC_ACT_REDIRECT);
    }
    // A replay is not delivered, so not counted.
    let frame = tunnel_frame(&strata(0, 2, 1, 5, SESSION, 1, 1), &inner);
    testbed::run(&mut dp, Program::LinkIngress, &frame).unwrap();
    let n = inner.len() as u64;
    let c = class_stats(&dp, "critical");
    assert_eq!((c.rx_packets, c.rx_bytes, c.tx_packets), (2, 2 * n, 0));
    let v = class_stats(&dp, "video");
    assert_eq!((v.rx_packets, v.rx_bytes), (1, n));
    let b = class_stats(&dp, "best_effort");
    assert_eq!((b.rx_packets, b.rx_bytes), (2, 2 * n), "the reserved class counted as best effort");
}
