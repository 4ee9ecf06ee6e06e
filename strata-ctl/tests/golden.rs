//! Golden-packet tests of the kernel programs through `BPF_PROG_TEST_RUN`.
//!
//! Each case hands a frame to a program, as the kernel would at tc, and
//! checks the action, the bytes that come out, and which drop counter moved.
//! The expected bytes are written out here field by field, independent of the
//! `strata-common` encoders the programs use. Needs root (loading BPF).

use std::net::{Ipv4Addr, Ipv6Addr};

use strata_common::{
    class::{DeadlineShares, SHARE_WHOLE},
    drop::DropReason,
    maps::{
        CONFIG_EARLIEST_ARRIVAL, CONFIG_READY, LINK_SEQ_JUMP_DISTANCE, LinkTx, PEER_EXPIRY_NS, REPLAY_WINDOW,
        TunnelConfig,
    },
};
use strata_ctl::{
    dataplane::datapath::{Datapath, Program},
    testbed::{
        CARRIER6, HUB, HUB6, LINK_SRC, LINK6_SRC, LO, PORT, SESSION, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT,
        TCX_NEXT, TUNNEL_IFINDEX, checksum, eth, inner_v4, inner_v6, ipv4, ipv6, l4_checksum4, l4_checksum6,
        make_link_v6, strata, sum16, tunnel_frame, tunnel_frame6, udp, udp6,
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
/// `deadline_us` 0: no deadline drops; otherwise every class but critical
/// has the whole of it.
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
    dp.set_deadline_shares(DeadlineShares { best_effort: SHARE_WHOLE, video: SHARE_WHOLE }).unwrap();
    dp
}

/// Both links of `paced_edge` acknowledged as of now up to all they were
/// sent: empty, measured, draining at their budget rates.
fn acknowledge_all(dp: &mut Datapath) {
    let next_seq = dp.tx_sequence().unwrap().link;
    for (id, delay_us) in [(0u8, 10_000), (1, 30_000)] {
        let tx = LinkTx::new(true, LO, LINK_SRC[usize::from(id)], None, PORT, 1500, 14)
            .with_budget(100_000, delay_us, 100_000)
            .with_ack(next_seq[usize::from(id)] as u32, kernel_now_ns(), 0);
        dp.set_link(id, tx).unwrap();
    }
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
    acknowledge_all(&mut dp);
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

#[test]
fn egress_sheds_best_effort_first_then_video_and_critical_never() {
    // A 60 ms deadline, best effort within half of it.
    let mut dp = paced_edge(60_000);
    dp.set_deadline_shares(DeadlineShares { best_effort: SHARE_WHOLE / 2, video: SHARE_WHOLE }).unwrap();
    acknowledge_all(&mut dp);
    // 1000-byte outer packets: 10 ms of a link each. DSCP 0 best effort,
    // AF41 (34) video, EF (46) critical.
    let frame = |dscp: u8| eth(0x0800, &inner_v4(dscp << 2, 1000 - 48 - 28));
    let send = |dp: &mut Datapath, dscp: u8, n: usize| {
        (0..n)
            .filter(|_| {
                let (action, _) = run(dp, Program::TunnelEgress, &frame(dscp));
                assert!(action == TC_ACT_REDIRECT || action == TC_ACT_SHOT, "{action}");
                action == TC_ACT_REDIRECT
            })
            .count()
    };
    // Best effort: expected arrivals 20 and 30 ms on link 0 are within its
    // 30 ms; the next, 40 ms on either link, is not.
    let best_effort = send(&mut dp, 0, 6);
    assert_eq!(best_effort, 2, "best effort sent");
    // Video on the same queues: 40, 50, 60 ms on link 0 and 40, 50, 60 on
    // link 1 are within its 60 ms (the queues drain a little meanwhile).
    let video = send(&mut dp, 34, 10);
    assert!((6..=7).contains(&video), "{video} video sent");
    // Critical goes where it arrives first however late: never shed.
    assert_eq!(send(&mut dp, 46, 6), 6, "critical sent");
    let shed = |class: &str| {
        let c = dp.snapshot().unwrap().classes.into_iter().find(|c| c.class == class).unwrap();
        (c.shed_packets, c.shed_bytes)
    };
    assert_eq!(shed("best_effort"), (4, 4 * (1000 - 48) as u64), "inner bytes counted");
    assert_eq!(shed("video").0, 10 - video as u64);
    assert_eq!(shed("critical"), (0, 0));
    assert_eq!(drops(&dp, DropReason::Deadline), 4 + 10 - video as u64, "the reason's total counts them all");
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

/// CLOCK_TAI now, µs: the clock of the send timestamps and of
/// `bpf_ktime_get_tai_ns`.
fn tai_now_us() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_TAI).unwrap();
    t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000
}

#[test]
fn ingress_counts_packets_that_arrived_queued_behind_their_predecessor() {
    let mut dp = hub();
    let inner = inner_v4(0, 10);
    // Link 2's packet `seq`, sent `sent_ago_ms` before now.
    let frame = |seq: u32, sent_ago_ms: u64| {
        let mut header = strata(0, 0, 2, 5, SESSION, seq + 10, seq);
        let sent = (tai_now_us() - sent_ago_ms * 1000) as u32;
        header[16..20].copy_from_slice(&sent.to_be_bytes());
        tunnel_frame(&header, &inner)
    };
    let queued = |dp: &Datapath| {
        let l = &dp.snapshot().unwrap().links[2];
        (l.rx_queued_bytes, l.rx_queued_us)
    };
    // The first sets the floor (30 ms); the second was sent 5 ms before it
    // with the same floor, so it reached the bottleneck before the first
    // arrived: it waited behind it, over the 3 ms between the arrivals.
    assert_eq!(run(&mut dp, Program::LinkIngress, &frame(0, 30)).0, TC_ACT_REDIRECT);
    std::thread::sleep(std::time::Duration::from_millis(3));
    let second = frame(1, 38);
    assert_eq!(run(&mut dp, Program::LinkIngress, &second).0, TC_ACT_REDIRECT);
    let (bytes, us) = queued(&dp);
    assert_eq!(bytes, (second.len() - 14) as u64, "the second packet's outer bytes");
    assert!((3_000..1_000_000).contains(&us), "busy {us} µs: the gap between the two arrivals");
    // Sent at the floor after both arrived: it waited for nothing.
    std::thread::sleep(std::time::Duration::from_millis(3));
    assert_eq!(run(&mut dp, Program::LinkIngress, &frame(2, 30)).0, TC_ACT_REDIRECT);
    assert_eq!(queued(&dp), (bytes, us), "a packet that waited for nothing counts nothing");
    // Out of the link's order (a fresh global sequence, an old link
    // sequence), sent long ago: it overtook nothing, and counts nothing.
    let mut header = strata(0, 0, 2, 5, SESSION, 99, 1);
    header[16..20].copy_from_slice(&((tai_now_us() - 500_000) as u32).to_be_bytes());
    assert_eq!(run(&mut dp, Program::LinkIngress, &tunnel_frame(&header, &inner)).0, TC_ACT_REDIRECT);
    assert_eq!(dp.snapshot().unwrap().links[2].rx_late, 1);
    assert_eq!(queued(&dp), (bytes, us));
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
        assert_eq!(run(&mut dp, Program::LinkIngress, &frame).0, TCX_NEXT, "the next program decides");
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

// ---- IPv6 carriers -------------------------------------------------------

/// Checks `out` (Ethernet onward) is `inner` sent by the edge's IPv6 link 1
/// to the hub over IPv6 with traffic class `tclass`, byte for byte, its UDP
/// checksum as RFC 8200 defines it; returns the Strata header.
fn assert_outer_v6(out: &[u8], inner: &[u8], tclass: u8, link: u8) -> Vec<u8> {
    assert_eq!(&out[..14], &[0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x86, 0xDD], "EtherType IPv6");
    let udp_len = 8 + 20 + inner.len();
    let mut ip = (6u32 << 28 | u32::from(tclass) << 20).to_be_bytes().to_vec();
    ip.extend((udp_len as u16).to_be_bytes());
    ip.extend([17, 64]);
    ip.extend(LINK6_SRC.octets());
    ip.extend(HUB6.octets());
    assert_eq!(&out[14..54], &ip[..], "outer IPv6 header");
    assert_eq!(&out[54..58], &[PORT.to_be_bytes(), PORT.to_be_bytes()].concat()[..], "UDP ports");
    assert_eq!(&out[58..60], &(udp_len as u16).to_be_bytes(), "UDP length");
    assert_eq!(out[64], link, "link id");
    assert_eq!(&out[82..], inner, "inner packet unchanged");
    // The checksum, recomputed from the RFC over the datagram as sent.
    let mut datagram = out[54..].to_vec();
    datagram[6..8].copy_from_slice(&[0, 0]);
    let want = l4_checksum6(LINK6_SRC, HUB6, 17, &datagram);
    assert_eq!(u16::from_be_bytes([out[60], out[61]]), want, "UDP checksum");
    out[62..82].to_vec()
}

#[test]
fn egress_encapsulates_over_ipv6_byte_for_byte() {
    let mut dp = edge([0, 1, 0, 0, 0, 0, 0, 0], 1500);
    make_link_v6(&mut dp, 1, 1500).unwrap();
    let inner = inner_v4(46 << 2, 100); // DSCP EF, inner UDP without checksum: every byte summed
    let (action, out) = run(&mut dp, Program::TunnelEgress, &eth(0x0800, &inner));
    assert_eq!(action, TC_ACT_REDIRECT);
    let s = assert_outer_v6(&out, &inner, 46 << 2, 1);
    assert_eq!(&s[..16], &strata(0, 2, 1, 5, SESSION, 1000, 0)[..16], "Strata header");
    let snap = dp.snapshot().unwrap();
    assert_eq!(snap.links[1].tx_bytes, (40 + 8 + 20 + inner.len()) as u64, "outer bytes counted per family");
}

/// Inner packets of every kind the checksum treats differently: TCP and UDP
/// with checksums (summed from their pseudo-headers), TCP whose checksum is
/// still the partial one the stack leaves for offload (the outer checksum
/// must be the one of the packet as completed later), and packets whose
/// every byte is summed, at lengths around the 64-byte chunks, odd ones too.
#[test]
fn egress_ipv6_checksum_is_right_for_every_inner_kind() {
    let mut dp = edge([0, 1, 0, 0, 0, 0, 0, 0], 1500);
    make_link_v6(&mut dp, 1, 1500).unwrap();
    let (a4, b4) = (Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 2));
    let (a6, b6): (Ipv6Addr, Ipv6Addr) = ("fd53::1".parse().unwrap(), "fd53::2".parse().unwrap());
    let payload = |n: usize| (0..n).map(|i| (i * 7 + 3) as u8).collect::<Vec<u8>>();
    let tcp = |n: usize| {
        let mut t = vec![0x13, 0x88, 0x17, 0x70, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0];
        t.extend(payload(n));
        t
    };
    let mut cases: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new(); // name, sent, as completed
    for n in [0usize, 1, 13, 64, 333, 1000] {
        // Inner UDP over IPv4, checksummed.
        let mut u = udp(5000, 6000, &payload(n));
        let c = l4_checksum4(a4, b4, 17, &u);
        u[6..8].copy_from_slice(&c.to_be_bytes());
        let p = ipv4(a4, b4, 0, 0, 17, &u);
        cases.push((format!("udp4 {n}"), p.clone(), p));
        // Inner UDP over IPv6.
        let p = ipv6(a6, b6, 0, 17, &udp6(a6, b6, 5000, 6000, &payload(n)));
        cases.push((format!("udp6 {n}"), p.clone(), p));
        // Inner TCP over IPv4: complete, and partial (the field holds the
        // folded pseudo-header sum, not complemented).
        let mut t = tcp(n);
        let full = l4_checksum4(a4, b4, 6, &t);
        let mut pseudo = a4.octets().to_vec();
        pseudo.extend(b4.octets());
        pseudo.extend([0, 6]);
        pseudo.extend((t.len() as u16).to_be_bytes());
        let mut partial = sum16(&pseudo);
        while partial > 0xffff {
            partial = (partial & 0xffff) + (partial >> 16);
        }
        t[16..18].copy_from_slice(&(partial as u16).to_be_bytes());
        let sent = ipv4(a4, b4, 0, 0x4000, 6, &t);
        t[16..18].copy_from_slice(&full.to_be_bytes());
        let done = ipv4(a4, b4, 0, 0x4000, 6, &t);
        cases.push((format!("tcp4 partial {n}"), sent, done.clone()));
        cases.push((format!("tcp4 {n}"), done.clone(), done));
        // Every byte summed: ICMP-like protocol 1 and IPv6 ICMP (58), odd lengths.
        for extra in [0usize, 1, 2, 3] {
            let p = ipv4(a4, b4, 0, 0, 1, &payload(n + extra));
            cases.push((format!("icmp4 {}", n + extra), p.clone(), p));
            let p = ipv6(a6, b6, 0, 58, &payload(n + extra));
            cases.push((format!("icmp6 {}", n + extra), p.clone(), p));
        }
    }
    for (name, sent, done) in cases {
        let ether_type = if sent[0] >> 4 == 6 { 0x86DD } else { 0x0800 };
        let (action, out) = run(&mut dp, Program::TunnelEgress, &eth(ether_type, &sent));
        assert_eq!(action, TC_ACT_REDIRECT, "{name}");
        assert_eq!(&out[82..], &sent[..], "{name}: inner unchanged");
        let mut datagram = out[54..82].to_vec();
        datagram[6..8].copy_from_slice(&[0, 0]);
        datagram.extend(&done);
        let want = l4_checksum6(LINK6_SRC, HUB6, 17, &datagram);
        assert_eq!(u16::from_be_bytes([out[60], out[61]]), want, "{name}: UDP checksum");
    }
}

#[test]
fn egress_mixes_families_per_link_and_sizes_each_by_its_own() {
    // Links 0 and 2 on IPv4 carriers, link 1 on an IPv6-only one.
    let mut dp = edge([1, 1, 1, 0, 0, 0, 0, 0], 1500);
    make_link_v6(&mut dp, 1, 1500).unwrap();
    let frame = eth(0x0800, &inner_v4(0, 20));
    let mut seen = [0u32; 3];
    for _ in 0..30 {
        let (action, out) = run(&mut dp, Program::TunnelEgress, &frame);
        assert_eq!(action, TC_ACT_REDIRECT);
        if out[12..14] == [0x86, 0xDD] {
            assert_eq!(out[64], 1, "only link 1 sends over IPv6");
            seen[1] += 1;
        } else {
            assert_eq!(&out[12..14], &[0x08, 0x00]);
            assert_ne!(out[44], 1);
            seen[usize::from(out[44])] += 1;
        }
    }
    assert!(seen.iter().all(|&n| n == 10), "{seen:?}");
    // An MTU that fits the packet over IPv4 but not with IPv6's 20 more bytes.
    let mut dp = edge([0, 1, 0, 0, 0, 0, 0, 0], 1500);
    make_link_v6(&mut dp, 1, 200).unwrap();
    let (action, _) = run(&mut dp, Program::TunnelEgress, &eth(0x0800, &inner_v4(0, 140 - 28)));
    assert_eq!(action, TC_ACT_SHOT, "68 + 140 bytes exceed 200");
    assert_eq!(drops(&dp, DropReason::Oversize), 1);
    let (action, _) = run(&mut dp, Program::TunnelEgress, &eth(0x0800, &inner_v4(0, 132 - 28)));
    assert_eq!(action, TC_ACT_REDIRECT, "68 + 132 bytes fit");
    // A link of the other family than its peer carries nothing.
    let mut dp = edge([0, 1, 0, 0, 0, 0, 0, 0], 1500);
    dp.set_peer_at(1, (HUB6, PORT).into()).unwrap();
    let (action, _) = run(&mut dp, Program::TunnelEgress, &frame);
    assert_eq!(action, TC_ACT_SHOT);
    assert_eq!(drops(&dp, DropReason::NoLink), 1, "an IPv4-only link cannot reach an IPv6 peer");
}

#[test]
fn ingress_over_ipv6_decapsulates_delivers_and_learns_the_peer() {
    let mut dp = strata_ctl::testbed::hub_dual().unwrap();
    let inner = inner_v4(0, 200);
    let frame = tunnel_frame6(&strata(0, 1, 2, 5, SESSION, 77, 5), &inner);
    let (action, out) = run(&mut dp, Program::LinkIngress, &frame);
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(&out[12..14], &[0x08, 0x00], "EtherType follows the inner version");
    assert_eq!(&out[14..], &inner[..], "exactly the inner packet remains after the Ethernet header");
    let snap = dp.snapshot().unwrap();
    assert_eq!(snap.links[2].rx_packets, 1);
    assert_eq!(snap.links[2].rx_bytes, (frame.len() - 14) as u64);
    assert_eq!(snap.links[2].peer, format!("[{CARRIER6}]:40001"), "hub learns the IPv6 endpoint");
    // IPv6 inside IPv6.
    let inner = inner_v6(32);
    let (action, out) =
        run(&mut dp, Program::LinkIngress, &tunnel_frame6(&strata(0, 0, 2, 5, SESSION, 78, 6), &inner));
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(&out[12..14], &[0x86, 0xDD]);
    assert_eq!(&out[14..], &inner[..]);
    // Link 0 over IPv4 meanwhile: both families at once.
    let (action, _) = run(
        &mut dp,
        Program::LinkIngress,
        &tunnel_frame(&strata(0, 0, 0, 5, SESSION, 79, 0), &inner_v4(0, 10)),
    );
    assert_eq!(action, TC_ACT_REDIRECT);
    let snap = dp.snapshot().unwrap();
    assert_eq!(snap.links[0].peer, "198.18.2.2:40001");

    // The hub answers each link in its own family, from its own address of it.
    dp.set_weights(&[1, 0, 1, 0, 0, 0, 0, 0]).unwrap();
    let inner = inner_v4(0, 50);
    let mut families = Vec::new();
    for _ in 0..4 {
        let (action, out) = run(&mut dp, Program::TunnelEgress, &eth(0x0800, &inner));
        assert_eq!(action, TC_ACT_REDIRECT);
        if out[12..14] == [0x86, 0xDD] {
            assert_eq!(&out[22..38], &HUB6.octets(), "source: the hub's IPv6 address");
            assert_eq!(&out[38..54], &CARRIER6.octets(), "to the learned endpoint");
            assert_eq!(&out[56..58], &40_001u16.to_be_bytes());
            let mut datagram = out[54..].to_vec();
            datagram[6..8].copy_from_slice(&[0, 0]);
            assert_eq!(u16::from_be_bytes([out[60], out[61]]), l4_checksum6(HUB6, CARRIER6, 17, &datagram));
            families.push((out[64], 6));
        } else {
            assert_eq!(&out[26..30], &HUB.octets());
            families.push((out[44], 4));
        }
    }
    families.sort();
    assert_eq!(families, [(0, 4), (0, 4), (2, 6), (2, 6)]);
}

#[test]
fn ingress_drops_malformed_ipv6_with_its_reason_and_ignores_foreign_ipv6() {
    let mut dp = strata_ctl::testbed::hub_dual().unwrap();
    let inner = inner_v4(0, 10);
    let good = tunnel_frame6(&strata(0, 0, 1, 5, SESSION, 500, 0), &inner);
    let mut cases: Vec<(&str, Vec<u8>, DropReason)> = Vec::new();
    // Payload length beyond the frame, and short of it.
    let mut f = good.clone();
    f.truncate(f.len() - 4);
    cases.push(("payload beyond frame", f, DropReason::Truncated));
    let mut f = good.clone();
    f.extend([0; 4]);
    cases.push(("payload short of frame", f, DropReason::OuterMalformed));
    // UDP length disagrees with the IPv6 payload length.
    let mut f = good.clone();
    f[58..60].copy_from_slice(&9u16.to_be_bytes());
    cases.push(("udp length", f, DropReason::OuterMalformed));
    // Zero UDP checksum: not allowed over IPv6.
    let mut f = good.clone();
    f[60..62].copy_from_slice(&[0, 0]);
    cases.push(("zero checksum", f, DropReason::OuterMalformed));
    // A first fragment of a datagram to the Strata port.
    let mut frag = vec![17, 0, 0, 1, 0, 0, 0, 42]; // next UDP, offset 0, more fragments
    frag.extend(&good[54..]);
    cases.push(("fragment", eth(0x86DD, &ipv6(CARRIER6, HUB6, 0, 44, &frag)), DropReason::OuterFragment));
    // A bad Strata header behind a good IPv6 one is counted like over IPv4.
    cases.push((
        "session",
        tunnel_frame6(&strata(0, 0, 1, 5, SESSION ^ 1, 501, 1), &inner),
        DropReason::WrongSession,
    ));
    for (name, frame, reason) in cases {
        let before = drops(&dp, reason);
        let (action, _) = run(&mut dp, Program::LinkIngress, &frame);
        assert_eq!(action, TC_ACT_SHOT, "{name}");
        assert_eq!(drops(&dp, reason), before + 1, "{name} counts as {}", reason.name());
    }
    // Not ours: another port, another destination, not UDP, ICMPv6.
    let body = good[62..].to_vec();
    let other: Ipv6Addr = "2001:db8:ff::9".parse().unwrap();
    let passing = [
        eth(0x86DD, &ipv6(CARRIER6, HUB6, 0, 17, &udp6(CARRIER6, HUB6, 1, 53, &body))),
        eth(0x86DD, &ipv6(CARRIER6, other, 0, 17, &udp6(CARRIER6, other, 1, PORT, &body))),
        eth(0x86DD, &ipv6(CARRIER6, HUB6, 0, 6, &[0; 20])),
        eth(0x86DD, &ipv6(CARRIER6, HUB6, 0, 58, &[128, 0, 0, 0, 0, 0, 0, 0])),
    ];
    let before = dp.snapshot().unwrap().drops;
    for frame in passing {
        assert_eq!(run(&mut dp, Program::LinkIngress, &frame).0, TCX_NEXT);
    }
    assert_eq!(dp.snapshot().unwrap().drops, before, "passing traffic is not a drop");
}

// ---- Trust (issue 14): anti-replay, plausible sequences, endpoints ---------

/// A data packet on `link` with global sequence `global` and link sequence
/// `link_seq`, as the hub receives it from `from`.
fn data_from(from: (Ipv4Addr, u16), link: u8, global: u32, link_seq: u32) -> Vec<u8> {
    let mut body = strata(0, 0, link, 5, SESSION, global, link_seq);
    body.extend(inner_v4(0, 10));
    eth(0x0800, &ipv4(from.0, HUB, 0, 0x4000, 17, &udp(from.1, PORT, &body)))
}

/// From the carrier address `tunnel_frame` uses.
const CARRIER: (Ipv4Addr, u16) = (Ipv4Addr::new(198, 18, 2, 2), 40_001);
/// Somewhere else on the internet.
const ATTACKER: (Ipv4Addr, u16) = (Ipv4Addr::new(203, 0, 113, 66), 666);

/// Runs `frames` through the hub's ingress; the verdicts.
fn verdicts(dp: &mut Datapath, frames: &[Vec<u8>]) -> Vec<u32> {
    frames.iter().map(|f| run(dp, Program::LinkIngress, f).0).collect()
}

#[test]
fn ingress_rejects_replays_and_packets_older_than_the_window_as_it_advances() {
    let mut dp = hub();
    let w = REPLAY_WINDOW;
    let at = |g: u32, s: u32| data_from(CARRIER, 0, g, s);
    // The first packet anchors the window; the same sequence again is a replay.
    assert_eq!(verdicts(&mut dp, &[at(1000, 0), at(1000, 0)]), [TC_ACT_REDIRECT, TC_ACT_SHOT]);
    assert_eq!(drops(&dp, DropReason::Duplicate), 1);
    // Reordered within the window: accepted once each.
    assert_eq!(
        verdicts(&mut dp, &[at(1002, 2), at(1001, 1), at(1001, 1)]),
        [TC_ACT_REDIRECT, TC_ACT_REDIRECT, TC_ACT_SHOT]
    );
    // The window advances a whole window at once; 1000 is then exactly a
    // window behind (too old), 1003 never seen and just inside (accepted),
    // 1001 inside and seen (a replay still).
    assert_eq!(verdicts(&mut dp, &[at(1002 + w, 3)]), [TC_ACT_REDIRECT]);
    assert_eq!(
        verdicts(&mut dp, &[at(1002, 0), at(1003, 4), at(1003, 4)]),
        [TC_ACT_SHOT, TC_ACT_REDIRECT, TC_ACT_SHOT]
    );
    assert_eq!(drops(&dp, DropReason::TooOld), 1, "1002 is a window behind 1002 + w");
    assert_eq!(drops(&dp, DropReason::Duplicate), 3);
    // A sequence older still, far short of a restart's distance: too old.
    assert_eq!(verdicts(&mut dp, &[at(10, 5)]), [TC_ACT_SHOT]);
    assert_eq!(drops(&dp, DropReason::TooOld), 2);
    // Replays are not counted as the link's traffic.
    let l = &dp.snapshot().unwrap().links[0];
    assert_eq!(
        l.rx_packets, 5,
        "the 5 accepted; duplicates (replays, to all it can tell) and too old ones are not the link's traffic"
    );
}

#[test]
fn ingress_takes_a_sequence_jump_only_when_the_next_packet_confirms_it() {
    let mut dp = hub();
    let at = |g: u32, s: u32| data_from(CARRIER, 0, g, s);
    assert_eq!(verdicts(&mut dp, &[at(5000, 0), at(5001, 1)]), [TC_ACT_REDIRECT; 2]);
    // One forged packet far ahead moves nothing: the genuine stream goes on.
    let far = 5000u32.wrapping_add(1 << 30);
    assert_eq!(verdicts(&mut dp, &[at(far, 2), at(5002, 3)]), [TC_ACT_SHOT, TC_ACT_REDIRECT]);
    assert_eq!(drops(&dp, DropReason::SeqJump), 1);
    // A restarted sender (a new random sequence): its first packet is held,
    // the second confirms it, and from then on the old sequence is the jump.
    let restart = 5000u32.wrapping_sub(1 << 31);
    assert_eq!(
        verdicts(&mut dp, &[at(restart, 0), at(restart + 2, 2), at(restart + 1, 1)]),
        [TC_ACT_SHOT, TC_ACT_REDIRECT, TC_ACT_REDIRECT]
    );
    assert_eq!(verdicts(&mut dp, &[at(5003, 4)]), [TC_ACT_SHOT], "the old sender's sequence is gone");
    assert_eq!(drops(&dp, DropReason::SeqJump), 3);
    // A sender that restarted just behind the window, after a silence
    // longer than REPLAY_QUIET_NS: not too old for ever, a jump to confirm.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let behind = restart.wrapping_sub(100_000);
    assert_eq!(verdicts(&mut dp, &[at(behind, 0), at(behind + 1, 1)]), [TC_ACT_SHOT, TC_ACT_REDIRECT]);
    assert_eq!(drops(&dp, DropReason::TooOld), 0);
}

#[test]
fn ingress_does_not_count_an_implausible_link_sequence_jump_as_loss() {
    let mut dp = hub();
    let link = |dp: &Datapath| dp.snapshot().unwrap().links[1].clone();
    let mut g = 100;
    let mut send = |dp: &mut Datapath, s: u32| {
        g += 1;
        run(dp, Program::LinkIngress, &data_from(CARRIER, 1, g, s)).0
    };
    for s in [0, 1, 2] {
        assert_eq!(send(&mut dp, s), TC_ACT_REDIRECT);
    }
    // A forged packet 2^31 ahead used to add 2·10^9 to the link's loss.
    send(&mut dp, 2 + (1 << 31));
    send(&mut dp, 3);
    let l = link(&dp);
    assert_eq!((l.rx_lost, l.rx_late, l.rx_restarts, l.rx_next_seq), (0, 0, 0, 4));
    // A plausible gap is loss, as before.
    send(&mut dp, 10);
    assert_eq!(link(&dp).rx_lost, 6);
    // A jump the next packet confirms is a restart, not loss. (Far enough
    // that the moments between test runs do not make it plausible.)
    let far = 10 + (1 << 24);
    send(&mut dp, far);
    send(&mut dp, far + 1);
    let l = link(&dp);
    assert_eq!((l.rx_lost, l.rx_restarts, l.rx_next_seq), (6, 1, u64::from(far) + 2));
    // After half a second of silence on the link, a gap of what it could
    // have carried meanwhile (an outage the sender kept sending into) is
    // loss again.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = far + 1 + LINK_SEQ_JUMP_DISTANCE as u32 + 20_000;
    send(&mut dp, after);
    let l = link(&dp);
    assert_eq!((l.rx_lost, l.rx_restarts), (6 + u64::from(after - far - 2), 1));
}

#[test]
fn ingress_learns_an_endpoint_only_from_a_packet_that_passed_every_check() {
    let mut dp = hub();
    let peer = |dp: &Datapath, id: usize| dp.snapshot().unwrap().links[id].peer.clone();
    // Malformed inner packet: dropped, nothing learned.
    let mut bad = strata(0, 0, 1, 5, SESSION, 7, 0);
    bad.extend([0x99; 30]);
    let bad = eth(0x0800, &ipv4(ATTACKER.0, HUB, 0, 0x4000, 17, &udp(ATTACKER.1, PORT, &bad)));
    assert_eq!(run(&mut dp, Program::LinkIngress, &bad).0, TC_ACT_SHOT);
    assert_eq!(peer(&dp, 1), "0.0.0.0:0");
    // A good packet teaches the endpoint.
    assert_eq!(run(&mut dp, Program::LinkIngress, &data_from(CARRIER, 1, 50, 0)).0, TC_ACT_REDIRECT);
    assert_eq!(peer(&dp, 1), "198.18.2.2:40001");
    // A replay of it, a too-old and a jumping packet from elsewhere teach nothing.
    let forged = [
        data_from(ATTACKER, 1, 50, 0),
        data_from(ATTACKER, 1, 50u32.wrapping_sub(REPLAY_WINDOW), 1),
        data_from(ATTACKER, 1, 50 + (1 << 30), 1),
    ];
    assert_eq!(verdicts(&mut dp, &forged), [TC_ACT_SHOT; 3]);
    assert_eq!(peer(&dp, 1), "198.18.2.2:40001", "still the genuine endpoint");
    // A link id the hub is not configured for (only 0..=2 are) is never
    // learned, from data or from a probe.
    let probe = {
        let mut b = strata(1, 0, 5, 5, SESSION, 0, 0);
        b.extend([0; 8]);
        eth(0x0800, &ipv4(ATTACKER.0, HUB, 0, 0x4000, 17, &udp(ATTACKER.1, PORT, &b)))
    };
    assert_eq!(verdicts(&mut dp, &[data_from(ATTACKER, 5, 51, 0), probe]), [TC_ACT_REDIRECT, TC_ACT_OK]);
    assert_eq!(peer(&dp, 5), "0.0.0.0:0");
}

#[test]
fn hub_egress_sends_only_to_fresh_endpoints_of_configured_links() {
    let mut dp = hub();
    let frame = eth(0x0800, &inner_v4(0, 100));
    // Nothing learned: nowhere to send.
    assert_eq!(run(&mut dp, Program::TunnelEgress, &frame).0, TC_ACT_SHOT);
    assert_eq!(drops(&dp, DropReason::NoLink), 1);
    // Learned on link 1: sent there, to the endpoint.
    assert_eq!(run(&mut dp, Program::LinkIngress, &data_from(CARRIER, 1, 9, 0)).0, TC_ACT_REDIRECT);
    let (action, out) = run(&mut dp, Program::TunnelEgress, &frame);
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(
        (&out[14 + 16..14 + 20], out[14 + 20 + 8 + 2]),
        (&[198, 18, 2, 2][..], 1),
        "to the learned endpoint on link 1"
    );
    // Not refreshed for longer than PEER_EXPIRY_NS: no longer sent to, and
    // shown as unknown.
    dp.set_peer_seen(1, kernel_now_ns() - PEER_EXPIRY_NS - 1_000_000_000).unwrap();
    assert_eq!(run(&mut dp, Program::TunnelEgress, &frame).0, TC_ACT_SHOT);
    assert_eq!(drops(&dp, DropReason::NoLink), 2);
    assert_eq!(dp.snapshot().unwrap().links[1].peer, "0.0.0.0:0");
    // The next validated packet refreshes it.
    assert_eq!(run(&mut dp, Program::LinkIngress, &data_from(CARRIER, 1, 10, 1)).0, TC_ACT_REDIRECT);
    assert_eq!(run(&mut dp, Program::TunnelEgress, &frame).0, TC_ACT_REDIRECT);
    // A schedule naming only link 5, which the hub is not configured for:
    // a packet for it arrived, yet it never gets traffic (the schedule
    // falls back to the configured link 1).
    dp.set_weights(&[0, 0, 0, 0, 0, 1, 0, 0]).unwrap();
    assert_eq!(run(&mut dp, Program::LinkIngress, &data_from(ATTACKER, 5, 11, 0)).0, TC_ACT_REDIRECT);
    for _ in 0..4 {
        let (action, out) = run(&mut dp, Program::TunnelEgress, &frame);
        assert_eq!(action, TC_ACT_REDIRECT);
        assert_eq!(out[14 + 20 + 8 + 2], 1, "link 1, never link 5");
    }
}

#[test]
fn two_cpus_delivering_the_same_sequences_at_once_deliver_each_exactly_once() {
    use aya::programs::{TestRun as _, TestRunOptions};
    let mut dp = hub();
    // More than a window, so the window slides and its words are claimed
    // for new blocks while both CPUs mark them.
    let n = REPLAY_WINDOW + 40_000;
    let frames: Vec<Vec<u8>> = (0..n).map(|g| data_from(CARRIER, (g % 3) as u8, g, g / 3)).collect();
    let prog = &*dp.program_mut(Program::LinkIngress).unwrap();
    // Each thread sends every sequence once, in the same order: the most
    // contention on the same bitmap words and on the anchor there can be.
    let delivered: u64 = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut out = vec![0u8; 512];
                    let mut delivered = 0u64;
                    for f in &frames {
                        let opts = TestRunOptions {
                            data_in: Some(f),
                            data_out: Some(&mut out),
                            ..Default::default()
                        };
                        if prog.test_run(opts).unwrap().return_value == TC_ACT_REDIRECT {
                            delivered += 1;
                        }
                    }
                    delivered
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).sum()
    });
    assert_eq!(delivered, u64::from(n), "every sequence delivered exactly once");
    let rejected = drops(&dp, DropReason::Duplicate) + drops(&dp, DropReason::TooOld);
    assert_eq!(
        rejected,
        u64::from(n),
        "every second copy rejected (too old if its CPU fell a window behind)"
    );
}

#[test]
fn ingress_before_the_configuration_is_written_leaves_every_packet_to_the_next_program() {
    require_root();
    let mut dp = Datapath::load(None).expect("load the data plane");
    let frame = tunnel_frame(&strata(0, 0, 0, 5, SESSION, 1, 0), &inner_v4(0, 10));
    assert_eq!(run(&mut dp, Program::LinkIngress, &frame).0, TCX_NEXT, "not ready: nothing is ours yet");
}

// ---- Authentication (issue 14) -------------------------------------------

use strata_common::auth::{self as tag, key_words};
use strata_ctl::testbed::{require_test_auth, test_keys};

/// The `auth` flag, and the key phase (epoch 1, 3, …).
const AUTH: u8 = 0x08;
const PHASE: u8 = 0x20;

/// A 7-word authenticated header of the edge, tagged over itself and
/// `payload` with the edge's sending key of `epoch`; returns header + tag.
fn signed(kind: u8, link: u8, global: u32, link_seq: u32, epoch: u32, payload: &[u8]) -> Vec<u8> {
    let flags = AUTH | if epoch & 1 == 1 { PHASE } else { 0 };
    let mut p = strata(kind, flags, link, 7, SESSION, global, link_seq);
    p.extend([0; 8]);
    p.extend(payload);
    assert!(tag::sign(&key_words(&test_keys(epoch, false).send), &mut p));
    p.truncate(28);
    p
}

fn authed_hub(epoch: u32) -> Datapath {
    let mut dp = hub();
    require_test_auth(&mut dp, epoch, true).unwrap();
    dp
}

/// Nothing learned or counted: no peer, no receive counters.
fn assert_untouched(dp: &Datapath) {
    let snap = dp.snapshot().unwrap();
    for l in &snap.links[..3] {
        assert_eq!((l.rx_packets, l.rx_bytes, l.rx_lost), (0, 0, 0), "link {} counted", l.id);
        assert!(!l.peer.contains("198.18.2.2"), "link {} learned {}", l.id, l.peer);
    }
}

#[test]
fn ingress_delivers_a_tagged_packet_and_learns_its_peer() {
    let mut dp = authed_hub(0);
    let inner = inner_v4(0, 200);
    let frame = tunnel_frame(&signed(0, 2, 77, 5, 0, &inner), &inner);
    let (action, out) = run(&mut dp, Program::LinkIngress, &frame);
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(&out[14..], &inner[..], "the tag goes with the outer headers");
    let snap = dp.snapshot().unwrap();
    assert_eq!(snap.links[2].rx_packets, 1);
    assert_eq!(snap.links[2].peer, "198.18.2.2:40001");
    // Control packets are authenticated too, and then go up the stack.
    let probe = tunnel_frame(&signed(1, 0, 0, 0, 0, &[0; 36]), &[0; 36]);
    assert_eq!(run(&mut dp, Program::LinkIngress, &probe).0, TC_ACT_OK);
}

#[test]
fn ingress_drops_forged_tampered_and_untagged_packets_before_learning_anything() {
    let mut dp = authed_hub(0);
    let inner = inner_v4(0, 200);
    let good = signed(0, 2, 77, 5, 0, &inner);

    let mut bad_tag = good.clone();
    bad_tag[27] ^= 0x80;
    let mut wrong_key = strata(0, AUTH, 2, 7, SESSION, 77, 5);
    wrong_key.extend([0; 8]);
    wrong_key.extend(&inner);
    tag::sign(&key_words(&[0x55; 16]), &mut wrong_key);
    wrong_key.truncate(28);
    let mut tampered = inner.clone();
    tampered[150] ^= 1;
    // The header is covered as well: a changed link sequence (the loss
    // counter attack of issue 14) or link id fails.
    let mut seq_jump = good.clone();
    seq_jump[12] ^= 0x80;
    // A packet reflected back: tagged with the hub's own sending key.
    let mut reflected = strata(0, AUTH, 2, 7, SESSION, 77, 5);
    reflected.extend([0; 8]);
    reflected.extend(&inner);
    tag::sign(&key_words(&test_keys(0, true).send), &mut reflected);
    reflected.truncate(28);

    for (name, header, payload) in [
        ("bad tag", &bad_tag, &inner),
        ("wrong key", &wrong_key, &inner),
        ("tampered inner byte", &good, &tampered),
        ("link sequence changed", &seq_jump, &inner),
        ("reflected", &reflected, &inner),
    ] {
        let (action, _) = run(&mut dp, Program::LinkIngress, &tunnel_frame(header, payload));
        assert_eq!(action, TC_ACT_SHOT, "{name}");
    }
    assert_eq!(drops(&dp, DropReason::AuthBad), 5);

    // No tag at all, a data packet and a probe (which would otherwise set
    // the peer endpoint); and a tag of a key phase with no key installed.
    let untagged = strata(0, 0, 2, 5, SESSION, 78, 6);
    let probe = strata(1, 0, 1, 5, SESSION, 0, 0);
    let other_phase = signed(0, 2, 79, 7, 1, &inner);
    for (header, payload) in [(&untagged, &inner[..]), (&probe, &[0u8; 36][..]), (&other_phase, &inner[..])] {
        assert_eq!(run(&mut dp, Program::LinkIngress, &tunnel_frame(header, payload)).0, TC_ACT_SHOT);
    }
    assert_eq!(drops(&dp, DropReason::AuthMissing), 3);
    assert_untouched(&dp);
    // And the genuine packet still goes through afterwards.
    assert_eq!(run(&mut dp, Program::LinkIngress, &tunnel_frame(&good, &inner)).0, TC_ACT_REDIRECT);
}

#[test]
fn ingress_without_auth_required_still_rejects_a_wrong_tag() {
    let mut dp = hub();
    dp.install_keys(&test_keys(0, true)).unwrap();
    let inner = inner_v4(0, 50);
    let untagged = tunnel_frame(&strata(0, 0, 2, 5, SESSION, 1, 1), &inner);
    assert_eq!(run(&mut dp, Program::LinkIngress, &untagged).0, TC_ACT_REDIRECT, "optional: untagged passes");
    let mut bad = signed(0, 2, 2, 2, 0, &inner);
    bad[20] ^= 1;
    assert_eq!(run(&mut dp, Program::LinkIngress, &tunnel_frame(&bad, &inner)).0, TC_ACT_SHOT);
    assert_eq!(drops(&dp, DropReason::AuthBad), 1);
}

#[test]
fn egress_tags_what_userspace_verifies_and_the_hub_delivers() {
    let mut dp = edge([0, 1, 0, 0, 0, 0, 0, 0], 1500);
    require_test_auth(&mut dp, 0, false).unwrap();
    let inner = inner_v4(46 << 2, 300);
    let (action, out) = run(&mut dp, Program::TunnelEgress, &eth(0x0800, &inner));
    assert_eq!(action, TC_ACT_REDIRECT);
    let outer_len = 20 + 8 + 28 + inner.len();
    assert_eq!(&out[16..18], &(outer_len as u16).to_be_bytes(), "IPv4 total length counts the tag");
    assert_eq!(&out[38..40], &((outer_len - 20) as u16).to_be_bytes(), "UDP length counts the tag");
    assert_eq!(checksum(&out[14..34]), 0, "outer IPv4 header checksum");
    assert_eq!(&out[42..58], &strata(0, 2 | AUTH, 1, 7, SESSION, 1000, 0)[..16], "auth flag, 7 words");
    assert_eq!(&out[70..], &inner[..]);
    assert!(
        tag::verify(&key_words(&test_keys(0, true).recv), &out[42..]),
        "userspace verifies the kernel's tag"
    );
    assert!(!tag::verify(&key_words(&test_keys(0, true).send), &out[42..]));
    assert_eq!(dp.snapshot().unwrap().links[1].tx_bytes, outer_len as u64);

    // The hub's kernel accepts it (rewritten to arrive from the carrier).
    let mut hub = authed_hub(0);
    let frame = tunnel_frame(&out[42..70], &inner);
    let (action, delivered) = run(&mut hub, Program::LinkIngress, &frame);
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(&delivered[14..], &inner[..]);
}

#[test]
fn egress_tag_shrinks_the_room_for_the_inner_packet() {
    let mut dp = edge([0, 1, 0, 0, 0, 0, 0, 0], 1500);
    // 1452 bytes fit a 1500-byte link untagged; 8 bytes of tag make it too big.
    let full = eth(0x0800, &inner_v4(0, 1452 - 28));
    assert_eq!(run(&mut dp, Program::TunnelEgress, &full).0, TC_ACT_REDIRECT);
    require_test_auth(&mut dp, 0, false).unwrap();
    assert_eq!(run(&mut dp, Program::TunnelEgress, &full).0, TC_ACT_SHOT);
    assert_eq!(drops(&dp, DropReason::Oversize), 1);
    let fits = eth(0x0800, &inner_v4(0, 1444 - 28));
    let (action, out) = run(&mut dp, Program::TunnelEgress, &fits);
    assert_eq!((action, out.len() - 14), (TC_ACT_REDIRECT, 1500));
}

#[test]
fn keys_rotate_the_old_epoch_verifies_until_retired() {
    let mut hub = authed_hub(1);
    let inner = inner_v4(0, 64);
    let old = tunnel_frame(&signed(0, 0, 10, 0, 1, &inner), &inner);
    assert_eq!(run(&mut hub, Program::LinkIngress, &old).0, TC_ACT_REDIRECT);
    // Epoch 2 installed: both verify (packets of epoch 1 still in flight).
    hub.install_keys(&test_keys(2, true)).unwrap();
    let new = tunnel_frame(&signed(0, 0, 11, 1, 2, &inner), &inner);
    assert_eq!(run(&mut hub, Program::LinkIngress, &new).0, TC_ACT_REDIRECT);
    let old2 = tunnel_frame(&signed(0, 0, 12, 2, 1, &inner), &inner);
    assert_eq!(run(&mut hub, Program::LinkIngress, &old2).0, TC_ACT_REDIRECT);
    // Epoch 1 retired: its packets no longer verify.
    assert!(hub.retire_keys(1).unwrap());
    let old3 = tunnel_frame(&signed(0, 0, 13, 3, 1, &inner), &inner);
    assert_eq!(run(&mut hub, Program::LinkIngress, &old3).0, TC_ACT_SHOT);
    assert_eq!(drops(&hub, DropReason::AuthMissing), 1);
    // Epoch 3 replaces slot 1: a packet of epoch 1 (same phase) is bad.
    hub.install_keys(&test_keys(3, true)).unwrap();
    let old4 = tunnel_frame(&signed(0, 0, 14, 4, 1, &inner), &inner);
    assert_eq!(run(&mut hub, Program::LinkIngress, &old4).0, TC_ACT_SHOT);
    assert_eq!(drops(&hub, DropReason::AuthBad), 1);

    // The sender switches to the newest epoch's key and phase.
    let mut edge = edge([1, 0, 0, 0, 0, 0, 0, 0], 1500);
    require_test_auth(&mut edge, 1, false).unwrap();
    edge.install_keys(&test_keys(2, false)).unwrap();
    let (_, out) = run(&mut edge, Program::TunnelEgress, &eth(0x0800, &inner));
    assert_eq!(out[43] & PHASE, 0, "epoch 2: phase 0");
    assert!(tag::verify(&key_words(&test_keys(2, true).recv), &out[42..]));
}

#[test]
fn egress_ipv6_checksum_covers_the_tag() {
    let mut dp = edge([0, 1, 0, 0, 0, 0, 0, 0], 1500);
    make_link_v6(&mut dp, 1, 1500).unwrap();
    require_test_auth(&mut dp, 0, false).unwrap();
    let inner = inner_v4(46 << 2, 101);
    let (action, out) = run(&mut dp, Program::TunnelEgress, &eth(0x0800, &inner));
    assert_eq!(action, TC_ACT_REDIRECT);
    let udp_len = 8 + 28 + inner.len();
    assert_eq!(&out[58..60], &(udp_len as u16).to_be_bytes(), "UDP length");
    assert_eq!(&out[18..20], &(udp_len as u16).to_be_bytes(), "IPv6 payload length");
    assert_eq!(&out[90..], &inner[..]);
    let mut datagram = out[54..].to_vec();
    datagram[6..8].copy_from_slice(&[0, 0]);
    assert_eq!(u16::from_be_bytes([out[60], out[61]]), l4_checksum6(LINK6_SRC, HUB6, 17, &datagram));
    assert!(tag::verify(&key_words(&test_keys(0, true).recv), &out[62..]));
}

/// The verifier's work for each program (`bpf_prog_info.verified_insns`),
/// with authentication in: printed (docs/BENCHMARKS.md quotes it), and kept
/// well inside the kernel's limit of one million. The SipHash loop adds
/// little because `bpf_loop` verifies its body apart from the states that
/// reach it (strata-ebpf/src/auth.rs).
#[test]
fn programs_verify_well_within_the_instruction_limit() {
    let mut dp = edge([1, 0, 0, 0, 0, 0, 0, 0], 1500);
    for program in [Program::TunnelEgress, Program::LinkIngress] {
        let info = dp.program_mut(program).unwrap().info().unwrap();
        let verified = info.verified_instruction_count().expect("kernel ≥ 5.16 reports it");
        println!("{program:?}: {verified} instructions verified");
        assert!(verified < 600_000, "{program:?}: {verified} of the verifier's 1 000 000");
    }
}
