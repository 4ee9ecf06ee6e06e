//! tc ingress of the link interfaces (edge) or the public interface (hub):
//! validate, reject replays, count, learn, decapsulate, deliver.
//!
//! Traffic that is not Strata's gets [`NOT_OURS`] (`TCX_NEXT`), never
//! `TC_ACT_OK`: under TCX (kernel ≥ 6.6, how strata-ctl attaches) "OK"
//! ends the chain and the packet skips every program attached after ours
//! (another tunnel, a firewall, Cilium); "next" runs them, and with none
//! left it passes as "OK" would. On the clsact path of older kernels the
//! same value is `TC_ACT_UNSPEC`: the next filter, or the default action.

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_DECAP_L3_IPV6, BPF_F_INGRESS, TC_ACT_OK, TC_ACT_SHOT,
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, tcx_action_base::TCX_NEXT,
    },
    helpers::generated::{bpf_ktime_get_ns, bpf_redirect},
    macros::classifier,
    programs::TcContext,
};
use aya_log_ebpf::info;
use strata_common::{
    drop::DropReason,
    maps::{CONFIG_LEARN_PEERS, CONFIG_READY, Endpoint, FAMILY_V4, FAMILY_V6, MAX_LINKS, TunnelConfig},
    packet::{
        ETH_LEN, ETH_P_IP, ETH_P_IPV6, IP_MF_OFFSET, IP6_OFFSET, IPPROTO_UDP, IPV4_LEN, IPV6_FRAG_LEN,
        IPV6_LEN, Ipv4Hdr, Ipv6Hdr, NEXTHDR_FRAGMENT, UDP_LEN, UdpHdr, inner_ip_version,
    },
    wire::{Header, PacketType},
};

use crate::{
    auth,
    counters::{count_class, count_drop, count_link},
    maps::{CLASS_RX, CONFIG, CONFIG6, IFACES, RX},
    ptr::read_at,
    receive::{accept_global_seq, learn_peer, track_link_seq},
};

/// The verdict for traffic that is not Strata's: the next program in the
/// chain decides (see the module documentation).
const NOT_OURS: i32 = TCX_NEXT;

#[classifier]
pub(crate) fn strata_link_ingress(ctx: TcContext) -> i32 {
    match ingress(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            count_drop(reason);
            TC_ACT_SHOT
        }
    }
}

#[inline(always)]
fn ingress(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(cfg) = CONFIG.get(0) else {
        return Ok(NOT_OURS);
    };
    if cfg.flags & CONFIG_READY == 0 {
        return Ok(NOT_OURS);
    }
    // SAFETY: reading a field of this program's own context.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: plain lookup of a u32 value.
    match unsafe { IFACES.get(ifindex) }.copied() {
        Some(0) => receive::<0>(ctx, cfg),
        Some(14) => receive::<ETH_LEN>(ctx, cfg),
        // Not an interface of ours, or an unsupported link layer.
        _ => Ok(NOT_OURS),
    }
}

#[inline(always)]
fn receive<const L2: usize>(ctx: &TcContext, cfg: &TunnelConfig) -> Result<i32, DropReason> {
    // Anything that is not IPv4/UDP or IPv6/UDP to our address and port is
    // none of our business.
    if L2 == ETH_LEN {
        let Some(ether_type_be) = read_at::<u16>(ctx, 12) else {
            return Ok(NOT_OURS);
        };
        if ether_type_be == ETH_P_IPV6.to_be() {
            return receive_v6::<L2>(ctx, cfg);
        }
        if ether_type_be != ETH_P_IP.to_be() {
            return Ok(NOT_OURS);
        }
    } else if ctx.load::<u8>(0).is_ok_and(|b| b >> 4 == 6) {
        // A raw-IP link (no link-layer header): the version nibble tells.
        // Read with the helper: a direct read here came out of LLVM with its
        // bounds check folded into the IPv4 header's below, which the
        // verifier rejects (`invalid access to packet`).
        return receive_v6::<L2>(ctx, cfg);
    }
    let Some(ip) = read_at::<Ipv4Hdr>(ctx, L2) else {
        return Ok(NOT_OURS);
    };
    if ip.version_ihl >> 4 != 4 || ip.protocol != IPPROTO_UDP {
        return Ok(NOT_OURS);
    }
    if cfg.local_ip_be != 0 && ip.daddr_be != cfg.local_ip_be {
        return Ok(NOT_OURS);
    }
    let ihl = usize::from(ip.version_ihl & 0x0f) * 4;
    let Some(udp) = read_at::<UdpHdr>(ctx, L2 + ihl) else {
        return Ok(NOT_OURS);
    };
    if udp.dest_be != cfg.local_port_be {
        return Ok(NOT_OURS);
    }

    // From here on the packet claims to be Strata's: accept it or count why not.
    if ihl != IPV4_LEN {
        return Err(DropReason::OuterMalformed);
    }
    if u16::from_be(ip.frag_off_be) & IP_MF_OFFSET != 0 {
        return Err(DropReason::OuterFragment);
    }
    let total_len = usize::from(u16::from_be(ip.total_len_be));
    if total_len != ctx.len() as usize - L2 {
        return Err(if total_len > ctx.len() as usize - L2 {
            DropReason::Truncated
        } else {
            DropReason::OuterMalformed
        });
    }
    if usize::from(u16::from_be(udp.len_be)) != total_len - IPV4_LEN {
        return Err(DropReason::OuterMalformed);
    }
    let from = Endpoint { ip_be: ip.saddr_be, port_be: udp.source_be, family: FAMILY_V4, _pad: 0 };
    deliver::<L2>(ctx, cfg, IPV4_LEN, total_len, &from, &[0; 4])
}

/// [`receive`] for an outer IPv6 header. Only the fixed header directly
/// followed by UDP is Strata's: the sender never adds extension headers,
/// and a link's outer packets fit its MTU, so a fragment header in front of
/// a datagram to our port is counted as a fragment, never reassembled.
#[inline(always)]
fn receive_v6<const L2: usize>(ctx: &TcContext, cfg: &TunnelConfig) -> Result<i32, DropReason> {
    let Some(ip) = read_at::<Ipv6Hdr>(ctx, L2) else {
        return Ok(NOT_OURS);
    };
    if u32::from_be(ip.vtc_flow_be) >> 28 != 6 {
        return Ok(NOT_OURS);
    }
    let local = CONFIG6.get(0).copied().unwrap_or_default();
    if local[0] | local[1] | local[2] | local[3] != 0 && ip.daddr != local {
        return Ok(NOT_OURS);
    }
    if ip.next_header == NEXTHDR_FRAGMENT {
        // Fragment header: next header, reserved, offset and flags (big endian), id.
        let Some(frag) = read_at::<[u8; 4]>(ctx, L2 + IPV6_LEN) else {
            return Ok(NOT_OURS);
        };
        let offset = u16::from_be_bytes([frag[2], frag[3]]) & IP6_OFFSET;
        if frag[0] == IPPROTO_UDP
            && offset == 0
            && read_at::<UdpHdr>(ctx, L2 + IPV6_LEN + IPV6_FRAG_LEN)
                .is_some_and(|u| u.dest_be == cfg.local_port_be)
        {
            return Err(DropReason::OuterFragment);
        }
        return Ok(NOT_OURS);
    }
    if ip.next_header != IPPROTO_UDP {
        return Ok(NOT_OURS);
    }
    let Some(udp) = read_at::<UdpHdr>(ctx, L2 + IPV6_LEN) else {
        return Ok(NOT_OURS);
    };
    if udp.dest_be != cfg.local_port_be {
        return Ok(NOT_OURS);
    }

    // Strata's from here on.
    let payload_len = usize::from(u16::from_be(ip.payload_len_be));
    let have = ctx.len() as usize - L2 - IPV6_LEN;
    if payload_len != have {
        // A payload length of 0 (a jumbogram) is malformed here too.
        return Err(if payload_len > have { DropReason::Truncated } else { DropReason::OuterMalformed });
    }
    // A zero checksum is "none", which UDP over IPv6 may not send (RFC 8200
    // §8.1; our sender always computes one). A non-zero one is not verified,
    // as over IPv4: the inner packet carries its own checksums, and
    // summing every packet costs what the link layer's CRC already did.
    if usize::from(u16::from_be(udp.len_be)) != payload_len || udp.check_be == 0 {
        return Err(DropReason::OuterMalformed);
    }
    let from = Endpoint { ip_be: 0, port_be: udp.source_be, family: FAMILY_V6, _pad: 0 };
    deliver::<L2>(ctx, cfg, IPV6_LEN, IPV6_LEN + payload_len, &from, &ip.saddr)
}

/// The part after the outer IP and UDP headers (`l3_len` bytes of IP
/// header; the outer packet is `total_len` bytes from the IP header on),
/// common to both families: validate the Strata header, learn the peer
/// `from` (IPv6: at `from6`), and deliver or hand up.
#[inline(always)]
fn deliver<const L2: usize>(
    ctx: &TcContext,
    cfg: &TunnelConfig,
    l3_len: usize,
    total_len: usize,
    from: &Endpoint,
    from6: &[u32; 4],
) -> Result<i32, DropReason> {
    let strata_off = L2 + l3_len + UDP_LEN;
    let header = read_at::<Header>(ctx, strata_off).ok_or(DropReason::Truncated)?;
    let available = total_len - l3_len - UDP_LEN;
    let packet_type = header.validate(available, cfg.session, MAX_LINKS as u8)?;
    // The tag first: nothing below (peer learning, counters, sequence
    // tracking, delivery) may see a packet that is not authentic.
    auth::check(ctx, cfg.flags, &header, packet_type, strata_off, available)?;
    let link = u32::from(header.link_id);

    // SAFETY: helper without arguments.
    let now_ns = unsafe { bpf_ktime_get_ns() };

    if packet_type != PacketType::Data {
        // Probes, feedback and control messages are for the controller's
        // socket (Strata's own, so OK rather than next). They carry no
        // global sequence to check against replay; their header and tag
        // are valid. A handshake message passes untagged (Noise
        // authenticates it in the controller), so it teaches nothing here:
        // a forged one must not move a link's endpoint.
        if packet_type != PacketType::Handshake {
            learn(ctx, cfg, link, from, from6, now_ns);
        }
        return Ok(TC_ACT_OK);
    }

    let inner_off = strata_off + header.byte_len();
    let inner_len = available - header.byte_len();
    let version = inner_version::<L2>(ctx, inner_off, inner_len)?;
    // The tag was checked above: only authentic packets move the window.
    let fresh = accept_global_seq(header.global_seq(), now_ns);
    // Only a fresh packet is the link's traffic. A duplicate may be a
    // replay of a captured genuine packet — it carries a valid tag — and
    // counting it would let an attacker inflate the link's delivered bytes
    // and feed it one-way delays from its old send timestamp (the lab's
    // attack scenario: a 12 Mbit/s link read 36 Mbit/s delivered and its
    // siblings 2 s of queue). Deliberate copies on a second link, when they
    // exist, must keep that link's per-link sequence whole another way.
    fresh?;
    count_link(&RX, link, total_len as u64);
    track_link_seq(link, header.link_seq(), header.timestamp_us(), now_ns, total_len as u64);
    learn(ctx, cfg, link, from, from6, now_ns);
    decapsulate::<L2>(ctx, (total_len - inner_len) as i32, version, l3_len == IPV6_LEN)?;
    count_class(&CLASS_RX, header.flags, inner_len as u32);
    // SAFETY: plain helper call; the result is the tc action.
    Ok(unsafe { bpf_redirect(cfg.tunnel_ifindex, u64::from(BPF_F_INGRESS)) } as i32)
}

/// Learns `link`'s peer endpoint from a packet that passed every check
/// (hub only; see `receive::learn_peer`), logging a change.
#[inline(always)]
fn learn(ctx: &TcContext, cfg: &TunnelConfig, link: u32, from: &Endpoint, from6: &[u32; 4], now_ns: u64) {
    if cfg.flags & CONFIG_LEARN_PEERS == 0 || !learn_peer(link, from, from6, now_ns) {
        return;
    }
    if from.family == FAMILY_V6 {
        // SAFETY: four u32 words are sixteen bytes, any bit pattern valid.
        let ip: [u8; 16] = unsafe { core::mem::transmute(*from6) };
        info!(ctx, "link {} peer now [{:i}]:{}", link, ip, u16::from_be(from.port_be));
    } else {
        info!(ctx, "link {} peer now {:i}:{}", link, u32::from_be(from.ip_be), u16::from_be(from.port_be));
    }
}

/// The IP version of the inner packet at `offset`, if it is exactly `len` bytes of IPv4 or IPv6.
#[inline(always)]
fn inner_version<const L2: usize>(ctx: &TcContext, offset: usize, len: usize) -> Result<u8, DropReason> {
    let first = read_at::<u8>(ctx, offset).ok_or(DropReason::InnerMalformed)?;
    // IPv4 total length at byte 2, IPv6 payload length at byte 4.
    let len_at = if first >> 4 == 4 { 2 } else { 4 };
    let declared = read_at::<u16>(ctx, offset + len_at).ok_or(DropReason::InnerMalformed)?;
    inner_ip_version(first, u16::from_be(declared), len).ok_or(DropReason::InnerMalformed)
}

/// Removes the `outer` bytes after the link-layer header, leaving `[L2][inner]`
/// (the outer header IPv6 if `outer_v6`).
#[inline(always)]
fn decapsulate<const L2: usize>(
    ctx: &TcContext,
    outer: i32,
    version: u8,
    outer_v6: bool,
) -> Result<(), DropReason> {
    // DECAP_L3_* (kernel ≥ 6.3) sets `skb->protocol` to the inner IP version,
    // which the tunnel device's receive path uses as is.
    let flags =
        u64::from(if version == 6 { BPF_F_ADJ_ROOM_DECAP_L3_IPV6 } else { BPF_F_ADJ_ROOM_DECAP_L3_IPV4 });
    ctx.skb.adjust_room(-outer, BPF_ADJ_ROOM_MAC, flags).map_err(|_| DropReason::DecapFailed)?;
    // The Ethernet header stays in front, with the outer packet's EtherType:
    // rewritten only where the inner family differs (IPv6 in IPv4 or the
    // reverse). The usual same-family packet already has the right bytes,
    // and a `bpf_skb_store_bytes` call was ≈ 3 % of the ingress program's
    // samples in `perf` during `strata-bench`.
    if L2 == ETH_LEN && (version == 6) != outer_v6 {
        let ether_type = if version == 6 { ETH_P_IPV6 } else { ETH_P_IP };
        ctx.skb.store(12, &ether_type.to_be(), 0).map_err(|_| DropReason::DecapFailed)?;
    }
    Ok(())
}
