//! A data plane set up for `BPF_PROG_TEST_RUN`, and frames to feed it.
//!
//! Test runs execute the programs on `lo` with Ethernet-framed packets, so
//! the testbed configures every link on `lo` and an Ethernet-framed "tunnel".
//! The golden-packet tests and `strata-bench` share it. The frame builders
//! write headers field by field, independent of the `strata-common` encoders
//! the programs use, so a test built with them checks those encoders too.

pub mod ingress_fuzz;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use aya::programs::{TestRun as _, TestRunOptions};
use strata_common::{
    class::ClassTable,
    maps::{CONFIG_LEARN_PEERS, CONFIG_READY, Endpoint, LinkTx, LinkTx6, TunnelConfig},
};

use crate::dataplane::datapath::{Datapath, DatapathError, Program};

/// tc verdicts.
pub const TC_ACT_OK: u32 = 0;
/// `TCX_NEXT` (`TC_ACT_UNSPEC`, -1): not ours, the next program decides.
pub const TCX_NEXT: u32 = -1i32 as u32;
/// Drop.
pub const TC_ACT_SHOT: u32 = 2;
/// Redirect.
pub const TC_ACT_REDIRECT: u32 = 7;

pub const SESSION: u32 = 0x5354_5241;
pub const PORT: u16 = 7400;
pub const LINK_SRC: [Ipv4Addr; 3] =
    [Ipv4Addr::new(100, 64, 1, 2), Ipv4Addr::new(100, 64, 2, 2), Ipv4Addr::new(100, 64, 3, 2)];
pub const HUB: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
/// A link's own address on an IPv6 carrier (documentation prefix).
pub const LINK6_SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// That link's IPv6 next hop.
pub const LINK6_GW: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The hub's IPv6 address.
pub const HUB6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 2);
/// The edge's IPv6 carrier address as the hub sees it.
pub const CARRIER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
/// Loopback: test runs execute on `lo`, whose ifindex is 1.
pub const LO: u32 = 1;
pub const TUNNEL_IFINDEX: u32 = 4242;

/// Network-order address.
pub fn be(a: Ipv4Addr) -> u32 {
    u32::from(a).to_be()
}

/// A data plane configured like an edge whose links are all `lo` (test runs
/// happen there), with an Ethernet-framed "tunnel" because test-run packets
/// start with an Ethernet header.
pub fn edge(weights: [u32; 8], mtu: u16) -> Result<Datapath, DatapathError> {
    let mut dp = Datapath::load(None)?;
    let mut cfg = TunnelConfig {
        session: SESSION,
        flags: CONFIG_READY,
        tunnel_ifindex: TUNNEL_IFINDEX,
        tunnel_l2_len: 14,
        local_ip_be: 0,
        local_port_be: PORT.to_be(),
        _pad: 0,
        deadline_us: 0,
    };
    dp.set_config(cfg)?;
    dp.set_interface(LO, 14)?;
    for (id, src) in LINK_SRC.iter().enumerate() {
        dp.set_link(
            id as u8,
            LinkTx::new(
                weights[id] > 0,
                LO,
                *src,
                Some(Ipv4Addr::new(100, 64, id as u8 + 1, 1)),
                PORT,
                u32::from(mtu),
                14,
            ),
        )?;
        dp.set_peer(id as u8, Endpoint::v4(HUB, PORT))?;
    }
    dp.seed_sequence(1000)?;
    dp.set_weights(&weights)?;
    dp.set_classes(&ClassTable::default())?;
    cfg.flags = CONFIG_READY;
    dp.set_config(cfg)?;
    Ok(dp)
}

/// A data plane configured like a hub on `lo` (learns peers, no peers yet).
pub fn hub() -> Result<Datapath, DatapathError> {
    let mut dp = edge([1, 1, 1, 0, 0, 0, 0, 0], 1500)?;
    dp.set_config(TunnelConfig {
        session: SESSION,
        flags: CONFIG_READY | CONFIG_LEARN_PEERS,
        tunnel_ifindex: TUNNEL_IFINDEX,
        tunnel_l2_len: 14,
        local_ip_be: be(HUB),
        local_port_be: PORT.to_be(),
        _pad: 0,
        deadline_us: 0,
    })?;
    for id in 0..3 {
        dp.set_peer(id, Endpoint::default())?;
    }
    Ok(dp)
}

/// Turns link `id` of a testbed data plane into one on an IPv6-only
/// carrier (no IPv4 source), its peer the hub's IPv6 address.
pub fn make_link_v6(dp: &mut Datapath, id: u8, mtu: u16) -> Result<(), DatapathError> {
    dp.set_link6(id, LinkTx6::new(LINK6_SRC, Some(LINK6_GW)))?;
    dp.set_link(id, LinkTx::new(true, LO, Ipv4Addr::UNSPECIFIED, None, PORT, u32::from(mtu), 14).with_v6())?;
    dp.set_peer_at(id, (HUB6, PORT).into())
}

/// A hub that listens on both families ([`hub`] plus its IPv6 address).
pub fn hub_dual() -> Result<Datapath, DatapathError> {
    let mut dp = hub()?;
    dp.set_config(TunnelConfig {
        session: SESSION,
        flags: CONFIG_READY | CONFIG_LEARN_PEERS,
        tunnel_ifindex: TUNNEL_IFINDEX,
        tunnel_l2_len: 14,
        local_ip_be: be(HUB),
        local_port_be: PORT.to_be(),
        _pad: 0,
        deadline_us: 0,
    })?;
    dp.set_local6(strata_common::maps::ip6_words(HUB6))?;
    for id in 0..3u8 {
        dp.set_link6(id, LinkTx6::new(HUB6, None))?;
        dp.set_link(id, LinkTx::new(true, LO, HUB, None, PORT, 1500, 14).with_v6())?;
    }
    Ok(dp)
}

pub use strata_common::auth::{TEST_KEY_DOWN, TEST_KEY_UP, test_keys};

/// Installs the fixed test keys of `epoch` and requires authentication.
pub fn require_test_auth(dp: &mut Datapath, epoch: u32, hub: bool) -> Result<(), DatapathError> {
    dp.install_keys(&test_keys(epoch, hub))?;
    dp.set_auth_required(true)
}

/// Runs `program` once on `frame`: the verdict, the packet as the program
/// left it, and the kernel-measured run time.
pub fn run(
    dp: &mut Datapath,
    program: Program,
    frame: &[u8],
) -> Result<(u32, Vec<u8>, Duration), DatapathError> {
    let prog = dp.program_mut(program)?;
    let mut out = vec![0u8; frame.len() + 256];
    let result = prog
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
        .map_err(|source| DatapathError::Program { what: "BPF_PROG_TEST_RUN".into(), source })?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, out, result.duration))
}

pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, tos: u8, frag: u16, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut h = vec![0x45, tos];
    h.extend((total as u16).to_be_bytes());
    h.extend([0, 0]);
    h.extend(frag.to_be_bytes());
    h.extend([64, proto, 0, 0]);
    h.extend(src.octets());
    h.extend(dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend(payload);
    h
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend(sport.to_be_bytes());
    u.extend(dport.to_be_bytes());
    u.extend(((8 + payload.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(payload);
    u
}

/// An IPv6 packet: traffic class `tclass`, next header `next`.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, tclass: u8, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = (6u32 << 28 | u32::from(tclass) << 20).to_be_bytes().to_vec();
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend([next, 64]);
    h.extend(src.octets());
    h.extend(dst.octets());
    h.extend(payload);
    h
}

/// The ones'-complement sum of `bytes` as 16-bit big-endian words (a
/// trailing odd byte padded with zero), not folded.
pub fn sum16(bytes: &[u8]) -> u32 {
    bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum()
}

/// The checksum of a TCP or UDP `segment` (its checksum field zero) over
/// IPv6 (RFC 8200 §8.1), written from the RFC, independent of the data
/// plane's. A computed zero is sent as 0xffff.
pub fn l4_checksum6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, segment: &[u8]) -> u16 {
    let mut pseudo = src.octets().to_vec();
    pseudo.extend(dst.octets());
    pseudo.extend((segment.len() as u32).to_be_bytes());
    pseudo.extend([0, 0, 0, next]);
    fold(sum16(&pseudo) + sum16(segment))
}

/// The checksum of a TCP or UDP `segment` over IPv4.
pub fn l4_checksum4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut pseudo = src.octets().to_vec();
    pseudo.extend(dst.octets());
    pseudo.extend([0, proto]);
    pseudo.extend((segment.len() as u16).to_be_bytes());
    fold(sum16(&pseudo) + sum16(segment))
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    match !(sum as u16) {
        0 => 0xffff,
        c => c,
    }
}

/// A UDP datagram over IPv6 with its checksum filled in.
pub fn udp6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = udp(sport, dport, payload);
    let c = l4_checksum6(src, dst, 17, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

pub fn eth(ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend(ether_type.to_be_bytes());
    f.extend(payload);
    f
}

/// An application's inner packet: UDP 10.200.0.1:5000 → 10.200.0.2:6000.
pub fn inner_v4(tos: u8, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
    ipv4(Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 2), tos, 0, 17, &udp(5000, 6000, &payload))
}

pub fn inner_v6(len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let u = udp(5000, 6000, &payload);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend((u.len() as u16).to_be_bytes());
    p.extend([17, 64]);
    p.extend([0xfd, 0x53, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend([0xfd, 0x53, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend(u);
    p
}

/// Strata v1 header bytes.
pub fn strata(kind: u8, flags: u8, link: u8, words: u8, session: u32, global: u32, link_seq: u32) -> Vec<u8> {
    let mut h = vec![0x10 | kind, flags, link, words];
    h.extend(session.to_be_bytes());
    h.extend(global.to_be_bytes());
    h.extend(link_seq.to_be_bytes());
    h.extend(0x0102_0304u32.to_be_bytes());
    h
}

/// A tunnel packet as the hub receives it over an IPv6 carrier: Ethernet,
/// outer IPv6 from the carrier's address, UDP (checksummed) to the Strata
/// port, Strata header, payload.
pub fn tunnel_frame6(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = header.to_vec();
    body.extend(payload);
    eth(0x86DD, &ipv6(CARRIER6, HUB6, 0, 17, &udp6(CARRIER6, HUB6, 40_001, PORT, &body)))
}

/// A tunnel packet as the hub receives it: Ethernet, outer IPv4 from the
/// carrier's public address, UDP to the Strata port, Strata header, payload.
pub fn tunnel_frame(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = header.to_vec();
    body.extend(payload);
    eth(0x0800, &ipv4(Ipv4Addr::new(198, 18, 2, 2), HUB, 0, 0x4000, 17, &udp(40_001, PORT, &body)))
}
