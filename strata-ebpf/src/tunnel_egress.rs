//! tc egress of the tunnel device: sequence, schedule, encapsulate, redirect.

use aya_ebpf::{
    bindings::TC_ACT_SHOT,
    helpers::generated::{bpf_ktime_get_ns, bpf_ktime_get_tai_ns},
    macros::classifier,
    programs::TcContext,
};
use strata_common::{
    auth::{AUTH_HEADER_WORDS, TAG_LEN},
    class::class_deadline_ns,
    drop::DropReason,
    maps::{CONFIG_EARLIEST_ARRIVAL, CONFIG_LEARN_PEERS, CONFIG_READY, FAMILY_V6, TunnelConfig},
    packet::{
        ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPV6_LEN, OUTER_V4_LEN, OuterAddrs, OuterAddrs6, OuterV4, OuterV6,
        UDP_LEN, inner_dscp,
    },
    wire::{Fields, HEADER_LEN, Header, PacketType, flags, flags::CLASS_MASK},
};

use crate::{
    auth,
    classify::classify,
    counters::{count_class, count_drop, count_link},
    csum::udp6_check,
    encap::{Frame, encapsulate, encapsulate_v6, redirect_to_link, redirect_v4, redirect_v6},
    maps::{CLASS_DEADLINE, CLASS_SHED, CLASS_TX, CONFIG, LINKS6, PEERS6, SCRATCH, Scratch, Send6, TX},
    ptr::read_at,
    schedule::{choose_link, choose_link_paced, fresh_peers, next_global_seq, next_link_seq, record_sent},
};

#[classifier]
pub(crate) fn strata_tunnel_egress(ctx: TcContext) -> i32 {
    match egress(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            count_drop(reason);
            TC_ACT_SHOT
        }
    }
}

#[inline(always)]
fn egress(ctx: &TcContext) -> Result<i32, DropReason> {
    let cfg = *CONFIG.get(0).ok_or(DropReason::NoConfig)?;
    if cfg.flags & CONFIG_READY == 0 {
        return Err(DropReason::NoConfig);
    }
    // A GSO super-packet would be segmented after this hook, every segment
    // carrying the same sequence number; the controller turns GSO off on the
    // tunnel device, so one arriving here is counted, not mangled.
    // SAFETY: reading a field of this program's own context.
    if unsafe { (*ctx.skb.skb).gso_size } != 0 {
        return Err(DropReason::Gso);
    }
    match cfg.tunnel_l2_len as usize {
        0 => send::<0>(ctx, &cfg),
        ETH_LEN => send::<ETH_LEN>(ctx, &cfg),
        _ => Err(DropReason::NoConfig),
    }
}

#[inline(always)]
fn send<const L2: usize>(ctx: &TcContext, cfg: &TunnelConfig) -> Result<i32, DropReason> {
    let [b0, b1]: [u8; 2] = read_at(ctx, L2).ok_or(DropReason::NotIp)?;
    if b0 >> 4 != 4 && b0 >> 4 != 6 {
        return Err(DropReason::NotIp);
    }
    let inner_len = ctx.len().checked_sub(L2 as u32).ok_or(DropReason::NotIp)?;
    // The IPv4 outer length; an IPv6 carrier's 20 bytes more are within
    // the link's MTU, which `choose_link` checks, and which is below this.
    if inner_len + OUTER_V4_LEN as u32 > u32::from(u16::MAX) {
        return Err(DropReason::Oversize);
    }
    let dscp = inner_dscp(b0, b1);
    // Before the link choice, so its many verifier states are not walked
    // once per class (see `classify`).
    let class = classify::<L2>(ctx, b0, b1)?;

    // With a sending key installed every packet carries a tag: 8 more
    // bytes on the wire, which the link choice (MTU, budgets) accounts as
    // part of the payload.
    let tag_len = auth::tag_len();
    let wire_len = inner_len + tag_len;

    let global_seq = next_global_seq()?;
    // Pacing and peer expiry run on the monotonic clock (CLOCK_TAI follows
    // settimeofday); an edge under static weights needs neither, and is
    // spared the helper call.
    let now_ns = if cfg.flags & (CONFIG_EARLIEST_ARRIVAL | CONFIG_LEARN_PEERS) != 0 {
        // SAFETY: helper without arguments.
        unsafe { bpf_ktime_get_ns() }
    } else {
        0
    };
    let fresh = fresh_peers(cfg.flags, now_ns);
    let choice = if cfg.flags & CONFIG_EARLIEST_ARRIVAL != 0 {
        // The class's deadline: a map value, so one unknown scalar whatever
        // the class, and the link choice is verified once rather than once
        // per class. No entry (a map not written yet) sheds nothing.
        let share = CLASS_DEADLINE.get(u32::from(class & CLASS_MASK)).copied().unwrap_or(0);
        match choose_link_paced(
            global_seq,
            wire_len,
            now_ns,
            class_deadline_ns(cfg.deadline_us, share),
            fresh,
        ) {
            Err(DropReason::Deadline) => {
                count_class(&CLASS_SHED, class, inner_len);
                return Err(DropReason::Deadline);
            }
            choice => choice?,
        }
    } else {
        choose_link(global_seq, wire_len, fresh)?
    };
    let outer_len = choice.outer_len;
    let link_seq = next_link_seq(choice.link);
    record_sent(choice.link, link_seq, outer_len);
    // SAFETY: helper without arguments.
    let now_us = unsafe { bpf_ktime_get_tai_ns() } / 1000;

    let mut header = Header::new(Fields {
        packet_type: PacketType::Data,
        flags: class,
        link_id: choice.link as u8,
        session: cfg.session,
        global_seq,
        link_seq,
        timestamp_us: now_us as u32,
    });
    // The tag itself is computed in `send_v4_tagged` / `send_v6`, from the
    // scratch map: here the verifier still carries the link choice's
    // hundreds of states, and hashing in each of them took the egress
    // program to 0.80 million verified instructions.
    let auth = if tag_len != 0 { auth::send_key() } else { None };
    if tag_len != 0 && auth.is_none() {
        // The key was removed since `tag_len`: the packet was sized for a tag.
        return Err(DropReason::EncapFailed);
    }
    // The key as two scalars: a `[0; 2]` for the untagged case came out of
    // LLVM as a call to a byte-wise `memset` loop (16 iterations a packet).
    let (k0, k1) = match auth {
        Some((phase, key)) => {
            header.flags |= flags::AUTH | if phase != 0 { flags::KEY_PHASE } else { 0 };
            header.header_words = AUTH_HEADER_WORDS;
            (key[0], key[1])
        }
        None => (0, 0),
    };
    let key = [k0, k1];
    // The outer header keeps the inner DSCP so carrier QoS sees the same class (RFC 2983).
    if choice.peer.family == FAMILY_V6 {
        // The IPv6 parts live in their own maps and scratch space, read only
        // here: the stack has no room for them (see `Scratch`).
        let tx6 = LINKS6.get(choice.link).ok_or(DropReason::NoLink)?;
        let dst = *PEERS6.get(choice.link).ok_or(DropReason::NoLink)?;
        let scratch = SCRATCH.get_ptr_mut(0).ok_or(DropReason::EncapFailed)?;
        // SAFETY: this CPU's entry; the program runs to completion on it
        // without preemption by another run of itself.
        let s = unsafe { &mut *scratch };
        let addrs = OuterAddrs6 {
            src_ip: tx6.src_ip6_be,
            dst_ip: dst,
            src_port_be: choice.tx.src_port_be,
            dst_port_be: choice.peer.port_be,
        };
        s.frame6.head = Frame::<OuterV6>::head(ETH_P_IPV6);
        s.frame6.outer = OuterV6::new(addrs, wire_len as u16, dscp << 2, header);
        s.send = Send6 {
            link: choice.link,
            ifindex: choice.tx.ifindex,
            nexthop6: tx6.nexthop6_be,
            key,
            tagged: u32::from(auth.is_some()),
            _pad: 0,
        };
        return send_v6::<L2>(ctx, s);
    }
    if auth.is_some() {
        let scratch = SCRATCH.get_ptr_mut(0).ok_or(DropReason::EncapFailed)?;
        // SAFETY: this CPU's entry (see above).
        let s = unsafe { &mut *scratch };
        let addrs = OuterAddrs {
            src_ip_be: choice.tx.src_ip_be,
            dst_ip_be: choice.peer.ip_be,
            src_port_be: choice.tx.src_port_be,
            dst_port_be: choice.peer.port_be,
        };
        s.frame4.head = Frame::<OuterV4>::head(ETH_P_IP);
        s.frame4.outer = OuterV4::new(addrs, wire_len as u16, dscp << 2, header);
        s.send = Send6 {
            link: choice.link,
            ifindex: choice.tx.ifindex,
            nexthop6: [choice.tx.nexthop_be, 0, 0, 0],
            key,
            tagged: 1,
            _pad: 0,
        };
        return send_v4_tagged::<L2>(ctx, s);
    }
    let addrs = OuterAddrs {
        src_ip_be: choice.tx.src_ip_be,
        dst_ip_be: choice.peer.ip_be,
        src_port_be: choice.tx.src_port_be,
        dst_port_be: choice.peer.port_be,
    };
    let frame = Frame {
        head: Frame::<OuterV4>::head(ETH_P_IP),
        outer: OuterV4::new(addrs, inner_len as u16, dscp << 2, header),
        tag: [0; TAG_LEN],
    };
    encapsulate::<L2>(ctx, &frame, false)?;
    count_link(&TX, choice.link, u64::from(outer_len));
    count_class(&CLASS_TX, header.flags, inner_len);
    Ok(redirect_to_link(&choice.tx))
}

/// Sends the packet whose outer IPv6 headers and link are in `s`: checksum,
/// encapsulation, count, redirect.
///
/// Everything it uses is read back from the scratch map, never carried over
/// from the link choice. The verifier walks what follows a branch once per
/// distinct state reaching it, and choosing a link leaves hundreds (ranges
/// of the link id, lengths, arrival estimates); values read from map memory
/// are unknown to it, so those states look the same here and the checksum
/// loop is not walked again for each. (The egress program verifies in 0.45
/// million instructions of the verifier's million — 0.35 before the tag's
/// callback took 32 words a call, four at a time; 0.34 before learned
/// peers expired, 0.33 before IPv6.)
#[inline(always)]
fn send_v6<const L2: usize>(ctx: &TcContext, s: &mut Scratch) -> Result<i32, DropReason> {
    // SAFETY: volatile reads of this CPU's scratch entry (see above).
    let (send, udp_len_be, class) = unsafe {
        (
            core::ptr::read_volatile(&raw const s.send),
            core::ptr::read_volatile(&raw const s.frame6.outer.udp.len_be),
            core::ptr::read_volatile(&raw const s.frame6.outer.strata.flags),
        )
    };
    let udp_len = u32::from(u16::from_be(udp_len_be));
    let tag_len = if send.tagged != 0 { TAG_LEN as u32 } else { 0 };
    let inner_len = udp_len.saturating_sub((UDP_LEN + HEADER_LEN) as u32 + tag_len);
    // Tag and checksum are computed before the headers go in: the inner
    // packet is still at `L2`. The checksum covers the tag.
    if send.tagged != 0 {
        // SAFETY: volatile read of this CPU's scratch entry (see above).
        let header = unsafe { core::ptr::read_volatile(&raw const s.frame6.outer.strata) };
        s.frame6.tag = auth::tag(ctx, &header, &send.key, L2 as u32, inner_len)?;
    }
    udp6_check(ctx, s, L2 as u32, inner_len)?;
    encapsulate_v6::<L2>(ctx, &s.frame6, send.tagged != 0)?;
    count_link(&TX, send.link, u64::from(udp_len) + IPV6_LEN as u64);
    count_class(&CLASS_TX, class, inner_len);
    Ok(redirect_v6(send.ifindex, send.nexthop6))
}

/// Sends the IPv4 packet whose outer headers (the Strata header with the
/// `auth` flag) and link are in `s`: tag, encapsulation, count, redirect.
/// Like [`send_v6`], it reads everything back from the scratch map so the
/// verifier walks the hashing once, not once per link-choice state.
#[inline(always)]
fn send_v4_tagged<const L2: usize>(ctx: &TcContext, s: &mut Scratch) -> Result<i32, DropReason> {
    // SAFETY: volatile reads of this CPU's scratch entry (see `send_v6`).
    let (send, total_be, header) = unsafe {
        (
            core::ptr::read_volatile(&raw const s.send),
            core::ptr::read_volatile(&raw const s.frame4.outer.ip.total_len_be),
            core::ptr::read_volatile(&raw const s.frame4.outer.strata),
        )
    };
    let total = u32::from(u16::from_be(total_be));
    let inner_len = total.saturating_sub((OUTER_V4_LEN + TAG_LEN) as u32);
    s.frame4.tag = auth::tag(ctx, &header, &send.key, L2 as u32, inner_len)?;
    encapsulate::<L2>(ctx, &s.frame4, true)?;
    count_link(&TX, send.link, u64::from(total));
    count_class(&CLASS_TX, header.flags, inner_len);
    Ok(redirect_v4(send.ifindex, send.nexthop6[0]))
}
