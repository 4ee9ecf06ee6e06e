//! Golden-packet tests of the kernel programs through `BPF_PROG_TEST_RUN`.
//!
//! Each case hands a frame to a program, as the kernel would at tc, and
//! checks the action, the bytes that come out, and which drop counter moved.
//! The expected bytes are written out here field by field, independent of the
//! `strata-common` encoders the programs use. Needs root (loading BPF).

use std::net::Ipv4Addr;

use strata_common::{
    drop::DropReason,
    maps::{CONFIG_EARLIEST_ARRIVAL, CONFIG_READY, LinkTx, TunnelConfig},
};
use strata_ctl::{
    dataplane::datapath::{Datapath, Program},
    testbed::{
        HUB, LINK_SRC, LO, PORT, SESSION, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, TUNNEL_IFINDEX, checksum,
        eth, inner_v4, inner_v6, ipv4, strata, tunnel_frame, udp,
    },
};

fn require_root() {
    strata_lab::require_root("golden-packet tests load BPF programs");
}

fn edge(weights: [u32; 8], mtu: u16) -> Datapath {
    require_root();
    strata_ctl::testbed::edge(weights, mtu).expect("load and configure the data plane")
}

fn hub() -> Datapath {
    require_root();
    strata_ctl::testbed::hub().expect("load and configure the data plane")
}

fn run(dp: &mut Datapath, program: Program, frame: &[u8]) -> (u32, Vec<u8>) {
    let (action, out, _) = strata_ctl::testbed::run(dp, program, frame).expect("test run");
    (action, out)
}

fn drops(dp: &Datapath, reason: DropReason) -> u64 {
    dp.snapshot().unwrap().dropped(reason)
}

#[test]
fn egress_encapsulates_ipv4_byte_for_byte() {
    let mut dp = edge([0, 1, 0, 0, 0, 0, 0, 0], 1500);
    let inner = inner_v4(46 << 2, 100); // DSCP EF: critical class
    let (action, out) = run(&mut dp, Program::TunnelEgress, &eth(0x0800, &inner));
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(dp.tx_sequence().unwrap().global, 1001);

    // Ethernet: MACs left for the neighbour subsystem, EtherType IPv4.
    assert_eq!(&out[..14], &[0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00]);
    let outer_len = 20 + 8 + 20 + inner.len();
    let mut ip = vec![0x45, 46 << 2];
    ip.extend((outer_len as u16).to_be_bytes());
    ip.extend([0, 0, 0x40, 0x00, 64, 17, 0, 0]);
    ip.extend(LINK_SRC[1].octets());
    ip.extend(HUB.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(&out[14..34], &ip[..], "outer IPv4 header");
    let mut u = PORT.to_be_bytes().to_vec();
    u.extend(PORT.to_be_bytes());
    u.extend(((outer_len - 20) as u16).to_be_bytes());
    u.extend([0, 0]);
    assert_eq!(&out[34..42], &u[..], "outer UDP header");
    // Strata: v1 data, class critical (2), link 1, 5 words, session, global
    // sequence 1000 (seeded), link sequence 0; then the timestamp.
    let s = &out[42..62];
    assert_eq!(&s[..16], &strata(0, 2, 1, 5, SESSION, 1000, 0)[..16], "Strata header");
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_TAI).unwrap();
    let now_us = (now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000) as u32;
    let sent = u32::from_be_bytes([s[16], s[17], s[18], s[19]]);
    assert!(now_us.wrapping_sub(sent) < 5_000_000, "timestamp is CLOCK_TAI µs");
    assert_eq!(&out[62..], &inner[..], "inner packet unchanged");

    let snap = dp.snapshot().unwrap();
    assert_eq!(snap.links[1].tx_packets, 1);
    assert_eq!(snap.links[1].tx_bytes, outer_len as u64);
}

#[test]
fn egress_carries_ipv6_inside_ipv4() {
    let mut dp = edge([1, 0, 0, 0, 0, 0, 0, 0], 1500);
    let inner = inner_v6(64);
    let (action, out) = run(&mut dp, Program::TunnelEgress, &eth(0x86DD, &inner));
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(&out[12..14], &[0x08, 0x00], "outer EtherType is IPv4");
    assert_eq!(out[14], 0x45);
    assert_eq!(&out[62..], &inner[..]);
}

#[test]
fn egress_follows_the_schedule_and_counts_sequences() {
    let mut dp = edge([1, 2, 3, 0, 0, 0, 0, 0], 1500);
    let frame = eth(0x0800, &inner_v4(0, 20));
    let mut per_link = [0u32; 3];
    for n in 0..600u32 {
        let (action, out) = run(&mut dp, Program::TunnelEgress, &frame);
        assert_eq!(action, TC_ACT_REDIRECT);
        let link = out[44] as usize;
        let global = u32::from_be_bytes([out[50], out[51], out[52], out[53]]);
        let link_seq = u32::from_be_bytes([out[54], out[55], out[56], out[57]]);
        assert_eq!(global, 1000 + n, "global sequence increments by one");
        assert_eq!(link_seq, per_link[link], "per-link sequence increments by one");
        assert_eq!(&out[26..30], &LINK_SRC[link].octets(), "outer source is the link's own address");
        per_link[link] += 1;
    }
    // 252-slot schedule, 42:84:126 slots; 600 packets → within one slot-round of 1:2:3.
    assert!(per_link[0].abs_diff(100) <= 3 && per_link[1].abs_diff(200) <= 3, "{per_link:?}");
}

#[test]
fn egress_never_uses_a_zero_weight_link_and_skips_links_that_cannot_take_the_packet() {
    // Link 0 has weight 0; link 1's MTU is too small for big packets; link 2 takes them.
    let mut dp = edge([0, 1, 1, 0, 0, 0, 0, 0], 1500);
    dp.set_link(1, LinkTx::new(true, LO, LINK_SRC[1], None, PORT, 600, 14)).unwrap();
    let big = eth(0x0800, &inner_v4(0, 1000));
    for _ in 0..20 {
        let (action, out) = run(&mut dp, Program::TunnelEgress, &big);
        assert_eq!(action, TC_ACT_REDIRECT);
        assert_eq!(out[44], 2, "only link 2 fits a 1076-byte outer packet");
    }
    let small = eth(0x0800, &inner_v4(0, 10));
    for _ in 0..20 {
        let (_, out) = run(&mut dp, Program::TunnelEgress, &small);
        assert_ne!(out[44], 0, "link 0 has weight 0");
    }
    assert_eq!(dp.snapshot().unwrap().links[0].tx_packets, 0);
}

/// An edge choosing by earliest arrival over two budgeted links: both drain
/// at 10 µs per byte (0.8 Mbit/s: a 1000-byte packet holds a link for 10 ms,
/// far longer than a test takes, so the virtual queues barely drain); link 0
/// is 10 ms away, link 1 30 ms; each may hold 100 ms of backlog.
/// `deadline_us` 0: no deadline drops.
fn paced_edge(deadline_us: u32) -> Datapath {
    let mut dp = edge([1, 1, 0, 0, 0, 0, 0, 0], 1500);
    for (id, delay_us) in [(0u8, 10_000), (1, 30_000)] {
        // 100 000 bytes/s is 10 000 000 ps per byte.
        let tx = LinkTx::new(true, LO, LINK_SRC[usize::from(id)], None, PORT, 1500, 14)
            .with_budget(100_000, delay_us, 100_000);
        dp.set_link(id, tx).unwrap();
    }
    dp.set_config(TunnelConfig {
        session: SESSION,
        flags: CONFIG_READY | CONFIG_EARLIEST_ARRIVAL,
        tunnel_ifindex: TUNNEL_IFINDEX,
        tunnel_l2_len: 14,
        local_ip_be: 0,
        local_port_be: PORT.to_be(),
        _pad: 0,
        deadline_us,
    })
    .unwrap();
    dp
}

#[test]
fn egress_sends_where_a_packet_arrives_first_within_each_links_budget() {
    let mut dp = paced_edge(0);
    let frame = eth(0x0800, &inner_v4(0, 1000 - 48 - 28));
    let mut chosen = Vec::new();
    for _ in 0..40 {
        let (action, out) = run(&mut dp, Program::TunnelEgress, &frame);
        assert_eq!(action, TC_ACT_REDIRECT);
        assert_eq!(out.len() - 14, 1000, "outer packet size the costs assume");
        chosen.push(out[44]);
    }
    // Arrival estimates (ms): link 0 is 10 + backlog + 10, link 1 30 + backlog + 10.
    // Link 0 takes packets until its backlog (30 ms) makes link 1 as early; ties keep the lower id.
    assert_eq!(chosen[..4], [0, 0, 0, 1], "{chosen:?}");
    let snapshot = dp.snapshot().unwrap();
    let overflow: u64 = snapshot.links.iter().map(|l| l.tx_overflow).sum();
    // Each link accepts packets while its backlog is ≤ 100 ms: 11 each. The
    // rest overflow, still sent where they arrive first (alternately).
    assert!((17..=18).contains(&overflow), "overflow {overflow}, chosen {chosen:?}");
    assert_eq!(snapshot.links[0].tx_packets + snapshot.links[1].tx_packets, 40);
    assert!(snapshot.links[0].tx_packets.abs_diff(snapshot.links[1].tx_packets) <= 2);
}

#[test]
fn egress_drops_what_no_link_can_deliver_within_the_deadline() {
    let mut dp = paced_edge(60_000);
    let frame = eth(0x0800, &inner_v4(0, 1000 - 48 - 28));
    let send_12 = |dp: &mut Datapath| {
        let mut sent = 0;
        for _ in 0..12 {
            let (action, _) = run(dp, Program::TunnelEgress, &frame);
            if action == TC_ACT_REDIRECT {
                sent += 1;
            } else {
                assert_eq!(action, TC_ACT_SHOT);
            }
        }
        sent
    };
    // Backlogs only modelled (no acknowledgement yet): nothing is dropped.
    assert_eq!(send_12(&mut dp), 12);
    assert_eq!(drops(&dp, DropReason::Deadline), 0);
    // Both links acknowledged as of now up to all they were sent, draining
    // at their budget rates, and empty again:
    std::thread::sleep(std::time::Duration::from_millis(150));
    let next_seq = dp.tx_sequence().unwrap().link;
    for (id, delay_us) in [(0u8, 10_000), (1, 30_000)] {
        let tx = LinkTx::new(true, LO, LINK_SRC[usize::from(id)], None, PORT, 1500, 14)
            .with_budget(100_000, delay_us, 100_000)
            .with_ack(next_seq[usize::from(id)] as u32, kernel_now_ns(), 0);
        dp.set_link(id, tx).unwrap();
    }
    let sent = send_12(&mut dp);
    // Expected arrivals 20, 30, 40, 50, 60 ms on link 0 and 40, 50, 60 on
    // link 1 are within 60 ms; every later packet would arrive after it.
    assert!((8..=9).contains(&sent), "{sent} sent");
    assert_eq!(drops(&dp, DropReason::Deadline), 12 - sent);
    // Without budgets the kernel has no estimates: nothing is dropped for lateness.
    for id in [0u8, 1] {
        dp.set_link(id, LinkTx::new(true, LO, LINK_SRC[usize::from(id)], None, PORT, 1500, 14)).unwrap();
    }
    let (action, _) = run(&mut dp, Program::TunnelEgress, &frame);
    assert_eq!(action, TC_ACT_REDIRECT);
}

/// CLOCK_MONOTONIC now, ns: the clock of `bpf_ktime_get_ns`.
fn kernel_now_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

#[test]
fn egress_measures_a_links_backlog_from_the_hubs_acknowledgement() {
    let mut dp = paced_edge(0);
    let frame = eth(0x0800, &inner_v4(0, 1000 - 48 - 28));
    let send = |dp: &mut Datapath| {
        let (action, out) = run(dp, Program::TunnelEgress, &frame);
        assert_eq!(action, TC_ACT_REDIRECT);
        out[44]
    };
    // Link 0 (10 ms away) takes the first three packets, link 1 (30 ms) the fourth.
    let first: Vec<u8> = (0..4).map(|_| send(&mut dp)).collect();
    assert_eq!(first, [0, 0, 0, 1]);
    // 100 ms later both virtual queues have drained: link 0 is the earliest again.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let budget = |id: u8| {
        let delay_us = if id == 0 { 10_000 } else { 30_000 };
        LinkTx::new(true, LO, LINK_SRC[usize::from(id)], None, PORT, 1500, 14)
            .with_budget(100_000, delay_us, 100_000)
    };
    // But the hub acknowledges none of link 0's packets, as of now: its three
    // packets (30 ms at the budget rate) are still queued, so a packet sent
    // on it arrives at 10 + 30 + 10 ms, after link 1's 30 + 10.
    dp.set_link(0, budget(0).with_ack(0, kernel_now_ns(), 0)).unwrap();
    assert_eq!(send(&mut dp), 1, "link 0's measured backlog sends the packet to link 1");
    // Acknowledged up to its fourth packet (the hub has all three): no backlog.
    dp.set_link(0, budget(0).with_ack(3, kernel_now_ns(), 0)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30)); // link 1's packet drains
    assert_eq!(send(&mut dp), 0, "an acknowledged link is as early as its model says");
    // An acknowledgement ahead of what was sent (the sequence restarted) is ignored,
    // and one too far behind means a hopeless backlog.
    std::thread::sleep(std::time::Duration::from_millis(30));
    dp.set_link(0, budget(0).with_ack(1000, kernel_now_ns(), 0)).unwrap();
    assert_eq!(send(&mut dp), 0, "an acknowledgement ahead of the sequence is ignored");
    std::thread::sleep(std::time::Duration::from_millis(30));
    dp.set_link(0, budget(0).with_ack(4u32.wrapping_sub(5000), kernel_now_ns(), 0)).unwrap();
    assert_eq!(send(&mut dp), 1, "5 000 packets unacknowledged: link 0 is hopelessly backlogged");
}

#[test]
fn egress_drops_are_counted_by_reason() {
    let mut dp = edge([1, 0, 0, 0, 0, 0, 0, 0], 200);
    // Too big for every link.
    let (action, _) = run(&mut dp, Program::TunnelEgress, &eth(0x0800, &inner_v4(0, 400)));
    assert_eq!(action, TC_ACT_SHOT);
    assert_eq!(drops(&dp, DropReason::Oversize), 1);
    // Not IP.
    let (action, _) = run(&mut dp, Program::TunnelEgress, &eth(0x0806, &[0x00; 28]));
    assert_eq!(action, TC_ACT_SHOT);
    assert_eq!(drops(&dp, DropReason::NotIp), 1);
    // No weighted link.
    dp.set_weights(&[0; 8]).unwrap();
    let (action, _) = run(&mut dp, Program::TunnelEgress, &eth(0x0800, &inner_v4(0, 10)));
    assert_eq!(action, TC_ACT_SHOT);
    assert_eq!(drops(&dp, DropReason::NoLink), 1);
    // Not configured yet.
    dp.set_config(TunnelConfig::default()).unwrap();
    let (action, _) = run(&mut dp, Program::TunnelEgress, &eth(0x0800, &inner_v4(0, 10)));
    assert_eq!(action, TC_ACT_SHOT);
    assert_eq!(drops(&dp, DropReason::NoConfig), 1);
}

#[test]
fn ingress_decapsulates_delivers_and_learns_the_peer() {
    let mut dp = hub();
    let inner = inner_v4(0, 200);
    let frame = tunnel_frame(&strata(0, 1, 2, 5, SESSION, 77, 5), &inner);
    let (action, out) = run(&mut dp, Program::LinkIngress, &frame);
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(&out[12..14], &[0x08, 0x00]);
    assert_eq!(&out[14..], &inner[..], "exactly the inner packet remains after the Ethernet header");
    let snap = dp.snapshot().unwrap();
    assert_eq!(snap.links[2].rx_packets, 1);
    assert_eq!(snap.links[2].rx_bytes, (frame.len() - 14) as u64);
    assert_eq!(snap.links[2].peer, "198.18.2.2:40001", "hub learns the NATed endpoint");

    // IPv6 inner: EtherType follows the inner version.
    let inner = inner_v6(32);
    let frame = tunnel_frame(&strata(0, 0, 2, 5, SESSION, 78, 6), &inner);
    let (action, out) = run(&mut dp, Program::LinkIngress, &frame);
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(&out[12..14], &[0x86, 0xDD]);
    assert_eq!(&out[14..], &inner[..]);

    // Extension words are skipped.
    let mut header = strata(0, 0, 2, 6, SESSION, 79, 7);
    header.extend([0xAA; 4]);
    let inner = inner_v4(0, 10);
    let (action, out) = run(&mut dp, Program::LinkIngress, &tunnel_frame(&header, &inner));
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(&out[14..], &inner[..]);
}

#[test]
fn ingress_counts_link_loss_and_reordering() {
    let mut dp = hub();
    let inner = inner_v4(0, 10);
    // Link 0 sequence: 0 1 2 5 3 → 4 missing, 3 late.
    for (g, s) in [(1, 0), (2, 1), (3, 2), (6, 5), (4, 3)] {
        let (action, _) =
            run(&mut dp, Program::LinkIngress, &tunnel_frame(&strata(0, 0, 0, 5, SESSION, g, s), &inner));
        assert_eq!(action, TC_ACT_REDIRECT);
    }
    let l = &dp.snapshot().unwrap().links[0];
    assert_eq!((l.rx_packets, l.rx_lost, l.rx_late), (5, 1, 1));
}

#[test]
fn ingress_hands_control_packets_to_the_controller_and_ignores_foreign_traffic() {
    let mut dp = hub();
    for kind in 1..=4 {
        let (action, out) =
            run(&mut dp, Program::LinkIngress, &tunnel_frame(&strata(kind, 0, 0, 5, SESSION, 0, 0), &[0; 8]));
        assert_eq!(action, TC_ACT_OK, "type {kind} goes up the stack to the control socket");
        assert_eq!(out.len(), 14 + 20 + 8 + 20 + 8, "unchanged");
    }
    // Another UDP port, TCP, ARP, IPv6: none of our business.
    let other_port = eth(0x0800, &ipv4(Ipv4Addr::new(1, 2, 3, 4), HUB, 0, 0, 17, &udp(1, 53, &[0; 20])));
    let tcp = eth(0x0800, &ipv4(Ipv4Addr::new(1, 2, 3, 4), HUB, 0, 0, 6, &[0; 20]));
    let other_dst = eth(
        0x0800,
        &ipv4(Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(198, 19, 0, 9), 0, 0, 17, &udp(1, PORT, &[0; 40])),
    );
    for frame in [other_port, tcp, other_dst, eth(0x0806, &[0; 28]), eth(0x86DD, &inner_v6(8))] {
        assert_eq!(run(&mut dp, Program::LinkIngress, &frame).0, TC_ACT_OK);
    }
    assert!(dp.snapshot().unwrap().drops.is_empty(), "passing traffic is not a drop");
}

#[test]
fn ingress_drops_every_malformed_case_with_its_reason() {
    let mut dp = hub();
    let inner = inner_v4(0, 10);
    let good = strata(0, 0, 1, 5, SESSION, 500, 0);
    let outer = |h: &[u8], p: &[u8]| tunnel_frame(h, p);

    let mut cases: Vec<(&str, Vec<u8>, DropReason)> = Vec::new();
    // Strata header cut short.
    cases.push(("short header", outer(&good[..12], &[]), DropReason::Truncated));
    // IPv4 total length claims more than the frame holds.
    let mut f = outer(&good, &inner);
    f.truncate(f.len() - 4);
    cases.push(("ip length beyond frame", f, DropReason::Truncated));
    // IP options (IHL 6).
    let mut body = good.clone();
    body.extend(&inner);
    let mut ip = ipv4(Ipv4Addr::new(198, 18, 2, 2), HUB, 0, 0x4000, 17, &udp(40_001, PORT, &body));
    ip[0] = 0x46;
    ip.splice(20..20, [1, 1, 1, 1]);
    let tl = ip.len() as u16;
    ip[2..4].copy_from_slice(&tl.to_be_bytes());
    cases.push(("ip options", eth(0x0800, &ip), DropReason::OuterMalformed));
    // A fragment.
    let frag =
        eth(0x0800, &ipv4(Ipv4Addr::new(198, 18, 2, 2), HUB, 0, 0x2000, 17, &udp(40_001, PORT, &body)));
    cases.push(("fragment", frag, DropReason::OuterFragment));
    // UDP length disagrees with IP.
    let mut f = outer(&good, &inner);
    f[38] = 0;
    f[39] = 9;
    cases.push(("udp length", f, DropReason::OuterMalformed));
    // Version 2.
    let mut h = good.clone();
    h[0] = 0x20;
    cases.push(("version", outer(&h, &inner), DropReason::BadVersion));
    // Type 9.
    let mut h = good.clone();
    h[0] = 0x19;
    cases.push(("type", outer(&h, &inner), DropReason::BadType));
    // Header words below 5, and beyond the packet.
    let mut h = good.clone();
    h[3] = 4;
    cases.push(("header words 4", outer(&h, &inner), DropReason::BadHeaderLen));
    let mut h = good;
    h[3] = 15;
    cases.push(("header words 15", outer(&h, &[0; 8]), DropReason::BadHeaderLen));
    // Another session.
    cases.push((
        "session",
        outer(&strata(0, 0, 1, 5, SESSION ^ 1, 501, 1), &inner),
        DropReason::WrongSession,
    ));
    // Link id 8.
    cases.push(("link id", outer(&strata(0, 0, 8, 5, SESSION, 502, 0), &inner), DropReason::BadLink));
    // Inner: not IP, and IP with a wrong length.
    cases.push((
        "inner garbage",
        outer(&strata(0, 0, 1, 5, SESSION, 503, 1), &[0x99; 30]),
        DropReason::InnerMalformed,
    ));
    let mut bad_inner = inner.clone();
    bad_inner[3] ^= 1;
    cases.push((
        "inner length",
        outer(&strata(0, 0, 1, 5, SESSION, 504, 2), &bad_inner),
        DropReason::InnerMalformed,
    ));
    cases.push((
        "inner missing",
        outer(&strata(0, 0, 1, 5, SESSION, 505, 3), &[]),
        DropReason::InnerMalformed,
    ));

    for (name, frame, reason) in cases {
        let before = drops(&dp, reason);
        let (action, _) = run(&mut dp, Program::LinkIngress, &frame);
        assert_eq!(action, TC_ACT_SHOT, "{name}");
        assert_eq!(drops(&dp, reason), before + 1, "{name} counts as {}", reason.name());
    }

    // A duplicate: the same global sequence twice (e.g. on two links).
    let first = outer(&strata(0, 0, 1, 5, SESSION, 900, 10), &inner);
    let again = outer(&strata(0, 0, 2, 5, SESSION, 900, 0), &inner);
    assert_eq!(run(&mut dp, Program::LinkIngress, &first).0, TC_ACT_REDIRECT);
    assert_eq!(run(&mut dp, Program::LinkIngress, &again).0, TC_ACT_SHOT);
    assert_eq!(drops(&dp, DropReason::Duplicate), 1);
}
