//! Receive-side bookkeeping: per-link loss and reordering, duplicate
//! suppression, and learning where each link's peer is.

use strata_common::{
    maps::{DEDUP_WINDOW, Endpoint, FAMILY_V6, LINK_SEQ_RESTART_DISTANCE, OWD_BIAS_US},
    seq::seq_distance,
};

use aya_ebpf::helpers::generated::bpf_ktime_get_tai_ns;

use crate::{
    atomic::swap,
    maps::{DEDUP, PEERS, PEERS6, RXSEQ},
};

/// Records per-link sequence `seq` on `link` (see `RxLinkState` for the
/// model) and the packet's one-way delay from its send timestamp.
#[inline(always)]
pub(crate) fn track_link_seq(link: u32, seq: u32, sent_us: u32) {
    let Some(state) = RXSEQ.get_ptr_mut(link) else {
        return;
    };
    // SAFETY: the map value outlives the program. Several CPUs may update one
    // link at once; the fields are counters whose occasional lost update is
    // accepted (documented on `RxLinkState`), never memory unsafety.
    let s = unsafe { &mut *state };
    // SAFETY: helper without arguments.
    let now_us = (unsafe { bpf_ktime_get_tai_ns() } / 1000) as u32;
    // Wrapping µs clocks (71 min period): the difference is meaningful when
    // the clocks are within ±35 min of each other; anything else is skipped.
    let owd = now_us.wrapping_sub(sent_us) as i32;
    if i64::from(owd).abs() < OWD_BIAS_US {
        // Offset clocks may make it negative; a constant bias keeps the sum unsigned.
        s.owd_sum_us = s.owd_sum_us.wrapping_add((i64::from(owd) + OWD_BIAS_US) as u64);
        s.owd_count += 1;
    }
    if s.started == 0 {
        s.started = 1;
        s.highest = seq;
        return;
    }
    let ahead = seq_distance(seq, s.highest);
    if ahead > 0 {
        s.lost += (ahead - 1) as u64;
        s.highest = seq;
    } else if ahead == 0 {
        // The same per-link sequence twice: the duplicate window handles it.
    } else if ahead > -LINK_SEQ_RESTART_DISTANCE {
        s.late += 1;
        s.lost = s.lost.saturating_sub(1);
    } else {
        s.restarts += 1;
        s.highest = seq;
    }
}

/// Marks global sequence `seq` as delivered; true if it already was.
///
/// One atomic exchange per packet, no lock: slot `seq % DEDUP_WINDOW` holds
/// the last sequence seen there (tagged with bit 32 so that an empty slot, 0,
/// never matches). A sequence is a duplicate if its slot already holds it.
/// The window covers the last 65 536 packets; the sender starts at a random
/// sequence so a restarted sender does not collide with old entries.
#[inline(always)]
pub(crate) fn is_duplicate(seq: u32) -> bool {
    let Some(slot) = DEDUP.get_ptr_mut(seq & (DEDUP_WINDOW - 1)) else {
        return false;
    };
    let tagged = (1u64 << 32) | u64::from(seq);
    // SAFETY: the map value outlives the program; accessed only atomically.
    unsafe { swap(slot, tagged) == tagged }
}

/// Remembers that `link`'s peer is at `from` (hub side: the edge's public
/// endpoint after carrier NAT, of the family its carrier speaks — a link
/// moving between families follows too). Written only when it changes, so a
/// steady stream costs a read, and a NAT rebinding takes effect with the next
/// packet.
#[inline(always)]
pub(crate) fn learn_peer(link: u32, from: &Endpoint, from6: &[u32; 4]) -> bool {
    let Some(peer) = PEERS.get_ptr_mut(link) else {
        return false;
    };
    let Some(peer6) = PEERS6.get_ptr_mut(link) else {
        return false;
    };
    // SAFETY: the map value outlives the program; a torn read by the egress
    // program on another CPU is resolved by the next packet.
    let (peer, peer6) = unsafe { (&mut *peer, &mut *peer6) };
    let v6 = from.family == FAMILY_V6;
    if peer.family == from.family
        && peer.port_be == from.port_be
        && peer.ip_be == from.ip_be
        && (!v6 || *peer6 == *from6)
    {
        return false;
    }
    // The IPv6 address first: the egress program reads it only once the
    // endpoint says IPv6.
    if v6 {
        *peer6 = *from6;
    }
    *peer = *from;
    true
}
