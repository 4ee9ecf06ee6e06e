//! tc egress of the tunnel device: sequence, schedule, encapsulate, redirect.

use aya_ebpf::{
    bindings::TC_ACT_SHOT,
    helpers::generated::{bpf_ktime_get_ns, bpf_ktime_get_tai_ns},
    macros::classifier,
    programs::TcContext,
};
use strata_common::{
    budget::us_to_ns,
    drop::DropReason,
    maps::{CONFIG_EARLIEST_ARRIVAL, CONFIG_READY, TunnelConfig},
    packet::{ETH_LEN, OUTER_V4_LEN, OuterAddrs, OuterV4, inner_dscp},
    wire::{Fields, Header, PacketType, TrafficClass},
};

use crate::{
    counters::{count_drop, count_link},
    encap::{encapsulate, redirect_to_link},
    maps::{CONFIG, TX},
    ptr::read_at,
    schedule::{choose_link, choose_link_paced, next_global_seq, next_link_seq, record_sent},
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
    let outer_len = inner_len + OUTER_V4_LEN as u32;
    if outer_len > u32::from(u16::MAX) {
        return Err(DropReason::Oversize);
    }
    let dscp = inner_dscp(b0, b1);

    let global_seq = next_global_seq()?;
    let choice = if cfg.flags & CONFIG_EARLIEST_ARRIVAL != 0 {
        // Pacing runs on the monotonic clock: CLOCK_TAI follows settimeofday.
        // SAFETY: helper without arguments.
        choose_link_paced(global_seq, outer_len, unsafe { bpf_ktime_get_ns() }, us_to_ns(cfg.deadline_us))?
    } else {
        choose_link(global_seq, outer_len)?
    };
    let link_seq = next_link_seq(choice.link);
    record_sent(choice.link, link_seq, outer_len);
    // SAFETY: helper without arguments.
    let now_us = unsafe { bpf_ktime_get_tai_ns() } / 1000;

    let header = Header::new(Fields {
        packet_type: PacketType::Data,
        flags: TrafficClass::from_dscp(dscp) as u8,
        link_id: choice.link as u8,
        session: cfg.session,
        global_seq,
        link_seq,
        timestamp_us: now_us as u32,
    });
    let addrs = OuterAddrs {
        src_ip_be: choice.tx.src_ip_be,
        dst_ip_be: choice.peer.ip_be,
        src_port_be: choice.tx.src_port_be,
        dst_port_be: choice.peer.port_be,
    };
    // The outer header keeps the inner DSCP so carrier QoS sees the same class (RFC 2983).
    let outer = OuterV4::new(addrs, inner_len as u16, dscp << 2, header);
    encapsulate::<L2>(ctx, &outer)?;
    count_link(&TX, choice.link, u64::from(outer_len));
    Ok(redirect_to_link(&choice.tx))
}
