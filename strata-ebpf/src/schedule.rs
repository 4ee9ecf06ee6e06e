//! Which link a packet goes to, and the sequence numbers it carries.
//!
//! Two ways to choose, by the tunnel's `CONFIG_EARLIEST_ARRIVAL` flag:
//!
//! * **Schedule** (static weights, and the fallback of the other). The
//!   controller turns link weights into a [`Schedule`] of 256 slots; the
//!   packet's global sequence indexes it, so choosing a link is one lookup (no
//!   loop over links, no division by a weight sum). When the chosen link
//!   cannot take the packet (disabled, no known peer, MTU too small) the next
//!   link ids are tried in turn; links with weight 0 are disabled by the
//!   controller and so are never chosen.
//! * **Earliest arrival within budgets** (adaptive control). Each link has a
//!   send budget — a rate and a largest backlog — and an expected idle
//!   one-way delay, written by the controller. The kernel keeps a virtual
//!   queue per link drained at the budget rate, and sends each packet on the
//!   link where it is expected to arrive first: idle delay + backlog + its own
//!   transmission time. A link whose backlog exceeds its budget takes nothing
//!   while another has room, so no link is pushed past its estimated capacity
//!   and the decision needs no userspace round trip. When every link is at
//!   its budget (more offered than the links can carry) the packet still goes
//!   where it arrives first, counted as overflow: dropping it here would lose
//!   data the carriers' buffers might still deliver, and earliest arrival
//!   spreads the excess in proportion to what each link drains.
//!
//! The virtual queue is a model: it drains at the rate the controller
//! believes, and a real cellular link that just halved drains at half that,
//! so its real queue grows unseen (lab, real LTE traces at 70 % load:
//! seconds of queue behind a model that said 50 ms). So each link's backlog
//! is also *measured*: the receiver acknowledges the link sequence it has
//! received up to, the controller writes that acknowledgement into the
//! link's [`LinkTx`] with the time the link had sent it by, and the kernel,
//! which recorded its cumulative sent bytes per link sequence
//! ([`record_sent`]), knows exactly what was sent since
//! ([`measured_backlog_ns`]). A packet's expected arrival then follows the
//! measured backlog, and a link is within its budget while both are.

use strata_common::{
    drop::DropReason,
    maps::{
        ACK_EXPIRY_NS, CONFIG_LEARN_PEERS, Endpoint, FAMILY_V4, FAMILY_V6, LINK_ENABLED, LINK_V6, LinkPace,
        LinkTx, MAX_LINKS, MEASURED_BACKLOG_MAX_NS, PEER_EXPIRY_NS, SCHEDULE_SLOTS, SENT_RING, Schedule,
    },
    packet::{OUTER_V4_LEN, OUTER_V6_LEN},
    schedule::active_index,
};

use crate::{
    atomic::fetch_add,
    maps::{LINKS, PACE, PEER_SEEN, PEERS, SCHED, SENT, TXSEQ},
};

/// The links whose peer endpoint may be sent to now (bit `n`: link `n`),
/// at kernel time `now_ns`: on a hub, which learns its peers, those a
/// validated, fresh packet refreshed within `PEER_EXPIRY_NS` — an endpoint
/// learned once and never again (a forged packet's, or a link the car gave
/// up) stops drawing the link's share; on an edge, whose peers the
/// controller configures, all. Computed once per packet, before the
/// choice, so the per-link check in [`usable`] stays one more bit of
/// arithmetic rather than another branch in its unrolled loops.
#[inline(always)]
pub(crate) fn fresh_peers(config_flags: u32, now_ns: u64) -> u32 {
    if config_flags & CONFIG_LEARN_PEERS == 0 {
        return u32::MAX;
    }
    let mut fresh = 0;
    for link in 0..MAX_LINKS {
        // 0: never refreshed by this build (nor learned at all).
        if let Some(&seen) = PEER_SEEN.get(link)
            && seen != 0
            && now_ns.saturating_sub(seen) <= PEER_EXPIRY_NS
        {
            fresh |= 1 << link;
        }
    }
    fresh
}

/// A link able to carry the packet.
pub(crate) struct Choice {
    pub(crate) link: u32,
    pub(crate) tx: LinkTx,
    pub(crate) peer: Endpoint,
    /// The outer packet's length on this link: the inner packet plus the
    /// headers of the peer's family.
    pub(crate) outer_len: u32,
}

/// Takes the next global sequence number.
#[inline(always)]
pub(crate) fn next_global_seq() -> Result<u32, DropReason> {
    let seq = TXSEQ.get_ptr_mut(0).ok_or(DropReason::NoConfig)?;
    // SAFETY: the map value outlives the program; all CPUs update this field
    // only through atomics.
    Ok(unsafe { fetch_add(&raw mut (*seq).global, 1) } as u32)
}

/// Takes the next sequence number of `link`.
#[inline(always)]
pub(crate) fn next_link_seq(link: u32) -> u32 {
    let Some(seq) = TXSEQ.get_ptr_mut(0) else {
        return 0;
    };
    let index = (link & (MAX_LINKS - 1)) as usize;
    // SAFETY: as in `next_global_seq`; the index is masked into bounds.
    unsafe { fetch_add(&raw mut (*seq).link[index], 1) as u32 }
}

/// Picks the link for the packet with global sequence `seq` whose inner
/// packet is `inner_len` bytes long.
#[inline(always)]
pub(crate) fn choose_link(seq: u32, inner_len: u32, fresh: u32) -> Result<Choice, DropReason> {
    let active = active_index(SCHED.get(0).ok_or(DropReason::NoLink)?.active);
    let schedule: &Schedule = SCHED.get(active).ok_or(DropReason::NoLink)?;
    let len = schedule.len;
    if len == 0 || len as usize > SCHEDULE_SLOTS {
        return Err(DropReason::NoLink);
    }
    // The verifier does not know that `seq % len < 256`, and LLVM, which does,
    // would drop a plain mask as redundant; laundering the value through the
    // stack keeps the mask that proves the index in bounds.
    let slot = opaque((seq % len) as usize) & (SCHEDULE_SLOTS - 1);
    let first = u32::from(schedule.slots[slot]);

    let mut too_big = false;
    for i in 0..MAX_LINKS {
        let link = (first + i) & (MAX_LINKS - 1);
        match usable(link, inner_len, fresh) {
            Ok(choice) => return Ok(choice),
            Err(DropReason::Oversize) => too_big = true,
            Err(_) => {}
        }
    }
    Err(if too_big { DropReason::Oversize } else { DropReason::NoLink })
}

/// Picks the link on which a packet with global sequence `seq` and an inner
/// packet of `inner_len` bytes is expected to arrive earliest, among the
/// links within their send budget, and charges it to that link's budget (see
/// the module documentation). `now_ns` is `bpf_ktime_get_ns`.
#[inline(always)]
///
/// With a deadline (`deadline_ns` > 0), a packet whose earliest expected
/// arrival on any budgeted link is later than the deadline is dropped as
/// [`DropReason::Deadline`] instead: live video cannot use it, and sent, it
/// would hold every later packet behind it in the link's queue. Only on
/// measured evidence, though: when the earliest arrival rests on a backlog
/// that is only modelled (no fresh acknowledgement yet — a link warming up,
/// or every link at start) nothing is dropped for it, because the model drains at
/// the budget, which a warming link's small share keeps far below what it
/// carries (lab: 13 % of the first second's packets dropped as late that
/// arrived in time when sent), nor when it rests on a backlog measured at a
/// rate that is only a lower bound (a link not seen full lately). Without
/// budgets nothing is dropped either.
pub(crate) fn choose_link_paced(
    seq: u32,
    inner_len: u32,
    now_ns: u64,
    deadline_ns: u64,
    fresh: u32,
) -> Result<Choice, DropReason> {
    // (arrival estimate, link) of the earliest link within its budget, and of
    // the earliest of all; MAX_LINKS: none. Plain integers rather than an
    // `Option<Choice>`: LLVM left the payload of a `None` uninitialised, a
    // register read the verifier rejects (`R4 !read_ok`).
    let mut within = (u64::MAX, MAX_LINKS);
    let mut any = (u64::MAX, MAX_LINKS);
    for link in 0..MAX_LINKS {
        let Ok(choice) = usable(link, inner_len, fresh) else { continue };
        let tx = &choice.tx;
        if !tx.has_budget() {
            continue;
        }
        let Some(pace) = PACE.get(link) else { continue };
        // The budget holds while both backlogs are within it; the packet's
        // arrival follows the measured one where there is one: the
        // modelled queue drains at the budget rate, which is below the
        // link's capacity while a standing queue drains, and arrivals
        // predicted from it were late predictions that dropped packets the
        // link would have carried in time (lab, steady-asymmetric).
        let modelled_ns = pace.busy_until_ns.saturating_sub(now_ns);
        // A backlog measured at a drain rate that is only a lower bound is
        // an upper bound: it steers, but drops nothing as late (a stream
        // starting on idle links lost 1.2 % as "late" that would have
        // arrived in time: its bursts outran the rates the links had been
        // seen to carry).
        let (budget_ns, queue_ns) = match measured_backlog_ns(link, tx, pace, now_ns) {
            Some(measured_ns) => {
                let evidence = if tx.drain_is_lower_bound() { MODELLED } else { 0 };
                (
                    if measured_ns > modelled_ns { measured_ns } else { modelled_ns },
                    (measured_ns & !MODELLED) | evidence,
                )
            }
            None => (modelled_ns, modelled_ns | MODELLED),
        };
        let eta_ns = (tx.delay_ns() + queue_ns + tx.transmit_ns(choice.outer_len)) | (queue_ns & MODELLED);
        if budget_ns <= tx.backlog_limit_ns() {
            if eta_ns < within.0 {
                within = (eta_ns, link);
            }
        } else if eta_ns < any.0 {
            any = (eta_ns, link);
        }
    }
    let earliest = if within.0 < any.0 { within.0 } else { any.0 };
    if deadline_ns > 0 && earliest & MODELLED == 0 && earliest != u64::MAX && earliest > deadline_ns {
        return Err(DropReason::Deadline);
    }
    let choice = if within.1 < MAX_LINKS {
        usable(within.1, inner_len, fresh)?
    } else if any.1 < MAX_LINKS {
        if let Some(pace) = PACE.get_ptr_mut(any.1) {
            // SAFETY: the map value outlives the program; updated only through atomics.
            unsafe { fetch_add(&raw mut (*pace).overflow, 1) };
        }
        usable(any.1, inner_len, fresh)?
    } else {
        // No link has a budget: the schedule decides.
        choose_link(seq, inner_len, fresh)?
    };
    charge(&choice, choice.outer_len, now_ns);
    Ok(choice)
}

/// Marks an expected arrival (in its lowest bit, a nanosecond that matters
/// to no one) as resting on a modelled backlog rather than a measured one,
/// or on one measured at a rate that is only a lower bound: either way not
/// evidence enough to drop the packet as late.
/// A flag carried in the value the loop compares anyway: a separate boolean
/// carried through the unrolled loop over links doubled the verifier's
/// states per link, past its million-instruction bound (E2BIG).
const MODELLED: u64 = 1;

/// Records that `link` sends its packet `link_seq` of `outer_len` bytes: the
/// link's sent bytes before it go into its `SENT` ring entry, so that an
/// acknowledgement of that sequence tells what was sent after it.
#[inline(always)]
pub(crate) fn record_sent(link: u32, link_seq: u32, outer_len: u32) {
    let Some(pace) = PACE.get_ptr_mut(link) else { return };
    // SAFETY: the map value outlives the program; updated only through atomics.
    let before = unsafe { fetch_add(&raw mut (*pace).sent_bytes, u64::from(outer_len)) };
    if let Some(slot) = SENT.get_ptr_mut(sent_index(link, link_seq)) {
        // SAFETY: the map value outlives the program. Each sequence has its
        // own slot, written by the one CPU that sent it.
        unsafe { *slot = before };
    }
}

/// `link`'s ring entry for `link_seq` in `SENT`.
#[inline(always)]
fn sent_index(link: u32, link_seq: u32) -> u32 {
    (link & (MAX_LINKS - 1)) * SENT_RING + (link_seq & (SENT_RING - 1))
}

/// The backlog a packet sent on `link` now meets, from the receiver's
/// acknowledgement (see [`LinkTx::ack_anchor_ns`]): the bytes sent from the
/// acknowledged sequence on, at the rate the link drains, from the time it had
/// sent everything before it. `None` without a fresh acknowledgement (see
/// [`ACK_EXPIRY_NS`]), or with one ahead of what was sent (the sequence
/// restarted).
#[inline(always)]
fn measured_backlog_ns(link: u32, tx: &LinkTx, pace: &LinkPace, now_ns: u64) -> Option<u64> {
    if !tx.acked() || now_ns.saturating_sub(tx.ack_anchor_ns) > ACK_EXPIRY_NS {
        return None;
    }
    let seq = TXSEQ.get(0)?;
    let next = seq.link[(link & (MAX_LINKS - 1)) as usize] as u32;
    let unacked = next.wrapping_sub(tx.acked_seq);
    let sent_since = if unacked == 0 {
        0
    } else if unacked < SENT_RING {
        pace.sent_bytes.saturating_sub(*SENT.get(sent_index(link, tx.acked_seq))?)
    } else if unacked < u32::MAX / 2 {
        return Some(MEASURED_BACKLOG_MAX_NS);
    } else {
        return None;
    };
    let bytes = if sent_since > u64::from(u32::MAX) { u32::MAX } else { sent_since as u32 };
    let backlog_ns = tx.acked_backlog_ns(bytes, now_ns);
    Some(if backlog_ns < MEASURED_BACKLOG_MAX_NS { backlog_ns } else { MEASURED_BACKLOG_MAX_NS })
}

/// Backlog limits a link's virtual queue holds at most.
const VIRTUAL_BACKLOG_LIMITS: u64 = 8;

/// Adds the packet to the chosen link's virtual queue (overflow packets too:
/// they occupy the link all the same).
#[inline(always)]
fn charge(choice: &Choice, outer_len: u32, now_ns: u64) {
    if !choice.tx.has_budget() {
        return;
    }
    let Some(pace) = PACE.get_ptr_mut(choice.link) else { return };
    let cost = choice.tx.transmit_ns(outer_len);
    // The virtual queue is bounded. Unbounded, overflow and a rate
    // estimated low piled up seconds of virtual backlog that took seconds
    // more to drain after the estimate was corrected, and packets went by
    // that fiction instead of by the links (a closed-loop simulation of this
    // scheduler: 2.6 s on both links after warm-up). Not too tightly: a link
    // at its ceiling is no longer charged, so during overflow every excess
    // packet goes to the earliest capped link; at two backlog limits (100 ms)
    // that was the fastest link, whose real queue then overflowed its
    // carrier's buffer (lab, steady-asymmetric at 85 % load: 96.8 %
    // delivered). Eight limits (400 ms) leave a burst's overflow spread.
    let ceiling = now_ns + VIRTUAL_BACKLOG_LIMITS * choice.tx.backlog_limit_ns();
    // SAFETY: the map value outlives the program. A queue that drained
    // restarts from now with a plain store; two CPUs doing that at once lose
    // one packet's cost, an error that vanishes the next time the queue
    // drains. A busy queue grows with an atomic add, so no cost is lost.
    unsafe {
        let busy = core::ptr::read_volatile(&raw const (*pace).busy_until_ns);
        if busy < now_ns {
            (*pace).busy_until_ns = now_ns + cost;
        } else if busy < ceiling {
            fetch_add(&raw mut (*pace).busy_until_ns, cost);
        }
    }
}

/// `v`, with everything the compiler knew about its range forgotten.
#[inline(always)]
fn opaque(v: usize) -> usize {
    // SAFETY: a volatile read of a local.
    unsafe { core::ptr::read_volatile(&raw const v) }
}

/// `link`, if it can carry an inner packet of `inner_len` bytes: enabled,
/// its peer known and fresh (bit `link` of `fresh`, see [`fresh_peers`]), able to reach the peer's family (an edge's link has its
/// carrier's; a hub's link follows wherever the edge's packets came from),
/// and the outer packet within its MTU.
///
/// The family is arithmetic, not branches: this runs for every link in the
/// unrolled loop of [`choose_link_paced`], and each branch here multiplied
/// the verifier's states there (two more took the egress program from 0.33
/// to 0.71 million verified instructions of its million).
#[inline(always)]
fn usable(link: u32, inner_len: u32, fresh: u32) -> Result<Choice, DropReason> {
    let tx = *LINKS.get(link).ok_or(DropReason::NoLink)?;
    let peer = *PEERS.get(link).ok_or(DropReason::NoLink)?;
    // 1 for FAMILY_V6 (0b110), 0 for FAMILY_V4 (0b100) and an older build's 0.
    let v6 = u32::from(peer.family >> 1) & 1;
    const _: () =
        assert!(FAMILY_V6 >> 1 & 1 == 1 && FAMILY_V4 >> 1 & 1 == 0 && LINK_V6 == 1 << 3 && LINK_ENABLED == 1);
    // Enabled (and its peer fresh: a stale peer clears the enabled bit),
    // and flagged for IPv6 if the peer is.
    let flags = tx.flags & (!LINK_ENABLED | (fresh >> (link & (MAX_LINKS - 1))) & 1);
    let needed = LINK_ENABLED | v6 << 3;
    if flags & needed != needed {
        return Err(DropReason::NoLink);
    }
    // Known: an IPv4 address, or IPv6.
    if peer.ip_be | v6 == 0 {
        return Err(DropReason::NoLink);
    }
    let outer_len = inner_len + OUTER_V4_LEN as u32 + v6 * (OUTER_V6_LEN - OUTER_V4_LEN) as u32;
    if outer_len > u32::from(tx.mtu) {
        return Err(DropReason::Oversize);
    }
    Ok(Choice { link, tx, peer, outer_len })
}
