//! Receive-side bookkeeping: per-link loss and reordering, the anti-replay
//! window over global sequences, and learning where each link's peer is.
//!
//! Order in the ingress program (`link_ingress::deliver`), and why: a data
//! packet is validated (header, inner packet), then — once packets carry an
//! authentication tag, that check goes here, in front of everything that
//! follows — passed through [`accept_global_seq`], and only a packet that
//! passed it teaches the hub its link's endpoint ([`learn_peer`]). Nothing an
//! unauthenticated, replayed or implausible packet carries may move state
//! that later packets are judged by.

use aya_ebpf::helpers::generated::bpf_ktime_get_tai_ns;
use strata_common::{
    drop::DropReason,
    maps::{
        Endpoint, FAMILY_V6, LINK_ENABLED, LINK_SEQ_JUMP_DISTANCE, LINK_SEQ_RESTART_DISTANCE, OWD_BIAS_US,
        PEER_REFRESH_NS, REPLAY_BLOCK, REPLAY_QUIET_NS, REPLAY_SLOTS, RXQUEUED_FLOOR_CREEP_SHIFT,
        ReplayState, RxJump, RxLinkState, RxQueued,
    },
    seq::{
        Window, classify_global, confirms_jump, holds_newer_block, plausible_link_jump, seq_after,
        seq_distance,
    },
};

use crate::{
    atomic::{compare_exchange, load},
    maps::{LINKS, PEER_SEEN, PEERS, PEERS6, REPLAY, REPLAY_STATE, RXJUMP, RXQUEUED, RXSEQ},
};

/// Records per-link sequence `seq` on `link` (see `RxLinkState` for the
/// model), the packet's one-way delay from its send timestamp, and whether
/// it arrived queued behind its predecessor (`RxQueued`), at kernel time
/// `now_ns`; `bytes` is its outer length.
#[inline(always)]
pub(crate) fn track_link_seq(link: u32, seq: u32, sent_us: u32, now_ns: u64, bytes: u64) {
    let Some(state) = RXSEQ.get_ptr_mut(link) else {
        return;
    };
    let Some(jump) = RXJUMP.get_ptr_mut(link) else {
        return;
    };
    // SAFETY: the map values outlive the program. Several CPUs may update
    // one link at once; the fields are counters whose occasional lost update
    // is accepted (documented on `RxLinkState`), never memory unsafety.
    let (s, jump) = unsafe { (&mut *state, &mut *jump) };
    // SAFETY: helper without arguments.
    let tai_us = unsafe { bpf_ktime_get_tai_ns() } / 1000;
    // Wrapping µs clocks (71 min period): the difference is meaningful when
    // the clocks are within ±35 min of each other; anything else is skipped.
    let owd = (tai_us as u32).wrapping_sub(sent_us) as i32;
    // Offset clocks may make it negative; a constant bias keeps it unsigned.
    let owd_biased = (i64::from(owd).abs() < OWD_BIAS_US).then(|| (i64::from(owd) + OWD_BIAS_US) as u64);
    if let Some(owd) = owd_biased {
        s.owd_sum_us = s.owd_sum_us.wrapping_add(owd);
        s.owd_count += 1;
    }
    let silent_ns = now_ns.saturating_sub(jump.last_ns);
    // At most once a millisecond: every CPU receiving on the link (or on
    // one whose entry shares the cache line) writes here, and a millisecond
    // more of silence allows 100 packets more of plausible gap, nothing
    // that matters.
    if silent_ns > 1_000_000 {
        jump.last_ns = now_ns;
    }
    if s.started == 0 {
        s.started = 1;
        s.highest = seq;
        track_queued(link, owd_biased, tai_us, bytes);
        return;
    }
    let ahead = seq_distance(seq, s.highest);
    if ahead > plausible_link_jump(silent_ns) || ahead <= -LINK_SEQ_RESTART_DISTANCE {
        link_seq_jump(seq, s, jump);
    } else if ahead > 0 {
        // Bounded by what the link could have carried since its previous
        // packet: one forged packet 2^31 ahead used to add 2·10^9 here.
        s.lost += (ahead - 1) as u64;
        s.highest = seq;
        // Only packets in the link's order: one that overtook nothing
        // follows its predecessor through the link's queue.
        track_queued(link, owd_biased, tai_us, bytes);
    } else if ahead < 0 {
        s.late += 1;
        s.lost = s.lost.saturating_sub(1);
    }
    // ahead == 0: the same per-link sequence twice; the anti-replay window
    // decides about the packet.
}

/// Counts a packet that arrived (CLOCK_TAI `tai_us`) queued behind its
/// predecessor on `link`: one that reached the bottleneck — its arrival less
/// what it waited, `owd_biased` above the link's floor — before the previous
/// packet arrived (see `RxQueued` for why the gap between the two arrivals
/// is then the link's service time). Packets whose delay is unknown (clocks
/// too far apart) count nothing.
#[inline(always)]
fn track_queued(link: u32, owd_biased: Option<u64>, tai_us: u64, bytes: u64) {
    let (Some(q), Some(owd)) = (RXQUEUED.get_ptr_mut(link), owd_biased) else {
        return;
    };
    // SAFETY: the map value outlives the program; racing CPUs may misplace a
    // count (documented on `RxQueued`), never touch memory unsafely.
    let q: &mut RxQueued = unsafe { &mut *q };
    let floor = q.floor_us.saturating_add(tai_us.saturating_sub(q.floor_at_us) >> RXQUEUED_FLOOR_CREEP_SHIFT);
    if q.floor_us == 0 || owd <= floor {
        // A biased delay is never 0 (`OWD_BIAS_US`): 0 is "no floor yet".
        q.floor_us = owd;
        q.floor_at_us = tai_us;
    }
    let waited = owd.saturating_sub(floor);
    let reached_bottleneck = tai_us.saturating_sub(waited);
    let previous = q.last_arrival_us;
    if tai_us > previous {
        if previous != 0 && reached_bottleneck < previous {
            q.queued_bytes += bytes;
            q.queued_us += tai_us - previous;
        }
        q.last_arrival_us = tai_us;
    }
}

/// A per-link sequence implausibly far from the link's highest: a restarted
/// sender (its link sequences start again at 0) or a forged packet. Neither
/// is loss, and one packet alone does not move the link's highest sequence
/// (a forgery would make every genuine packet after it "late"): the jump is
/// remembered, and taken — counted once in `restarts` — when the link's next
/// packet lands close after it. A genuine restart costs the accounting of
/// one packet; a lone forged packet costs nothing.
#[inline(always)]
fn link_seq_jump(seq: u32, s: &mut RxLinkState, jump: &mut RxJump) {
    let d = seq_distance(seq, jump.candidate as u32);
    if jump.candidate & PENDING != 0 && d > 0 && d <= LINK_SEQ_JUMP_DISTANCE {
        s.restarts += 1;
        s.highest = seq;
        jump.candidate = 0;
    } else {
        jump.candidate = PENDING | u64::from(seq);
    }
}

/// Bit 32 of an anchor or candidate word: the low half holds a sequence.
const PENDING: u64 = 1 << 32;

/// Compare-and-swap attempts on one word before giving up. Bounded because
/// the verifier must see every loop end; each failure means another CPU
/// changed the word in between, so four in a row need four CPUs racing on
/// one 32-packet block or on the anchor within a few instructions.
const CAS_TRIES: u32 = 4;

/// The anti-replay check of a data packet's global sequence `seq` (after
/// RFC 6479), at kernel time `now_ns`: `Ok` if it is fresh — and from then
/// on recorded, so the same sequence again is a `duplicate` — or why not.
///
/// The window is anchored at the highest global sequence accepted, in
/// `STRATA_REPLAY_STATE`; a bitmap of `REPLAY_SLOTS` words of
/// `REPLAY_BLOCK` sequences each records which sequences of the last
/// `REPLAY_WINDOW` were accepted. Sequences further behind are `too_old`;
/// implausible jumps (see [`Window::Jump`]) are `seq_jump` until confirmed.
///
/// Several CPUs run this at once without a lock:
/// * every change of shared memory is a compare-and-swap from a value this
///   CPU read, so one CPU's bit is never overwritten by another's
///   read-modify-write (a plain `|=` from two CPUs loses one of the bits,
///   and a later replay of that sequence would pass);
/// * a bitmap word carries the tag of the block it records, so a word is
///   claimed for a new block by the same compare-and-swap that sets the
///   first bit, instead of the anchor's owner clearing the words it slides
///   over (RFC 6479's clearing loop: up to `REPLAY_SLOTS` stores, and a
///   window in which another CPU's fresh bit is wiped);
/// * the anchor only moves forward, by at most a window per packet, and a
///   CPU that loses the race to move it leaves the larger value in place.
///
/// For the verifier: the map indices are masked into range, both loops are
/// bounded by [`CAS_TRIES`], and nothing is read from the packet here.
///
/// Authentication goes in front of this function: with a tag checked first,
/// only the genuine sender can move the anchor or confirm a jump.
#[inline(always)]
pub(crate) fn accept_global_seq(seq: u32, now_ns: u64) -> Result<(), DropReason> {
    // An array's entry 0 always exists; failing closed costs nothing.
    let state = REPLAY_STATE.get_ptr_mut(0).ok_or(DropReason::TooOld)?;
    // SAFETY: the map value outlives the program; the anchor is accessed
    // only atomically.
    let anchor = unsafe { load(&raw const (*state).anchor) };
    if anchor & PENDING == 0 {
        // The first packet since the map was created anchors the window.
        first_anchor(state, anchor, seq)?;
    } else {
        // SAFETY: as above; a stale time only shifts the quiet test.
        let accepted_ns = unsafe { load(&raw const (*state).accepted_ns) };
        let quiet = now_ns.saturating_sub(accepted_ns) > REPLAY_QUIET_NS;
        match classify_global(seq_distance(seq, anchor as u32), quiet) {
            Window::Ahead => advance_anchor(state, anchor, seq),
            Window::Within => {}
            Window::TooOld => return Err(DropReason::TooOld),
            Window::Jump => confirm_jump(state, anchor, seq)?,
        }
    }
    mark_seen(seq)?;
    // SAFETY: as above. A plain store: the time is a hint for the quiet
    // test, and a racing CPU's value is as recent. Stored at most once a
    // millisecond, to keep the line mostly read.
    unsafe {
        if now_ns.saturating_sub(load(&raw const (*state).accepted_ns)) > 1_000_000 {
            (*state).accepted_ns = now_ns;
        }
    }
    Ok(())
}

/// Anchors a window no packet has anchored yet at `seq`. Another CPU
/// anchoring first wins, and `seq` then passes on to the bitmap only if it
/// is within a window of that anchor (anything else is `seq_jump`, to be
/// confirmed like any jump).
#[inline(always)]
fn first_anchor(state: *mut ReplayState, empty: u64, seq: u32) -> Result<(), DropReason> {
    // SAFETY: the map value outlives the program; accessed atomically.
    match unsafe { compare_exchange(&raw mut (*state).anchor, empty, PENDING | u64::from(seq)) } {
        Ok(_) => Ok(()),
        Err(found) => match classify_global(seq_distance(seq, found as u32), false) {
            Window::Within | Window::Ahead => Ok(()),
            _ => Err(DropReason::SeqJump),
        },
    }
}

/// Moves the anchor from `anchor` forward to `seq` (which is ahead by at
/// most a window). A CPU that finds the anchor moved meanwhile retries only
/// while `seq` is still ahead of it and within a window (so a racing
/// re-anchoring is never undone). Giving up leaves the anchor a little
/// behind the highest accepted; that never accepts a sequence twice nor
/// one older than the window: the word of such a sequence already holds a
/// newer block, which [`mark_seen`] tells (`too_old`).
#[inline(always)]
fn advance_anchor(state: *mut ReplayState, anchor: u64, seq: u32) {
    let mut current = anchor;
    for _ in 0..CAS_TRIES {
        // SAFETY: the map value outlives the program; accessed atomically.
        match unsafe { compare_exchange(&raw mut (*state).anchor, current, PENDING | u64::from(seq)) } {
            Ok(_) => return,
            Err(found) => {
                if classify_global(seq_distance(seq, found as u32), false) != Window::Ahead {
                    return;
                }
                current = found;
            }
        }
    }
}

/// A packet `seq` implausibly far from the anchor: `Ok` if it confirms the
/// jump remembered before (the sender
/// restarted, or stopped sending for longer than a window of sequences —
/// packets it could not place on any link still take a number), else
/// `seq_jump`, remembering it as the candidate.
///
/// A confirmed jump re-anchors the window at the later of the two packets.
/// Before authentication, a forger can do that with two packets as easily
/// as with one — but the genuine sender's next two packets re-anchor it
/// back, so a forgery costs a packet, not the tunnel. Once every packet is
/// authenticated, only the sender's own packets can jump; a replay of two
/// old authenticated packets could still, and the jump should then be
/// tied to the handshake's key epoch (a new session key: a new window).
#[inline(always)]
fn confirm_jump(state: *mut ReplayState, anchor: u64, seq: u32) -> Result<(), DropReason> {
    // SAFETY: the map value outlives the program; accessed atomically.
    let candidate = unsafe { load(&raw const (*state).candidate) };
    if candidate & PENDING == 0 || !confirms_jump(seq, candidate as u32) {
        // SAFETY: as above. Racing CPUs each leave a candidate; any will do.
        unsafe { (*state).candidate = PENDING | u64::from(seq) };
        return Err(DropReason::SeqJump);
    }
    let top = if seq_after(seq, candidate as u32) { seq } else { candidate as u32 };
    // SAFETY: as above. A CPU that moved the anchor meanwhile wins: this
    // packet is then judged again by its sender's next one.
    unsafe {
        compare_exchange(&raw mut (*state).anchor, anchor, PENDING | u64::from(top))
            .map_err(|_| DropReason::SeqJump)?;
        (*state).candidate = 0;
    }
    Ok(())
}

/// Records `seq` (within the window) in the bitmap: `Ok` if it
/// was not recorded yet, `duplicate` if it was, `too_old` if its word has
/// meanwhile been claimed by a block a window newer.
///
/// A word is `tag << 32 | bits`: the tag is the block's first sequence
/// with bit 0 set (an all-zero word is empty: a block of sequence 0 is
/// still told apart), each bit one sequence of the block.
#[inline(always)]
fn mark_seen(seq: u32) -> Result<(), DropReason> {
    let word = REPLAY.get_ptr_mut((seq / REPLAY_BLOCK) & (REPLAY_SLOTS - 1)).ok_or(DropReason::TooOld)?;
    let tag = (seq & !(REPLAY_BLOCK - 1)) | 1;
    let bit = 1u64 << (seq & (REPLAY_BLOCK - 1));
    // SAFETY: the map value outlives the program; accessed only atomically.
    let mut current = unsafe { load(word) };
    for _ in 0..CAS_TRIES {
        let held = (current >> 32) as u32;
        let next = if held == tag {
            if current & bit != 0 {
                return Err(DropReason::Duplicate);
            }
            current | bit
        } else if holds_newer_block(held, tag) {
            return Err(DropReason::TooOld);
        } else {
            // An empty word, or one of a block that has left the window.
            u64::from(tag) << 32 | bit
        };
        // SAFETY: as above.
        match unsafe { compare_exchange(word, current, next) } {
            Ok(_) => return Ok(()),
            Err(found) => current = found,
        }
    }
    // Four CPUs changed this word under us: whether `seq` is among their
    // bits cannot be told any more cheaply, so fail closed.
    Err(DropReason::Duplicate)
}

/// Remembers that `link`'s peer is at `from` (hub side: the edge's public
/// endpoint after carrier NAT, of the family its carrier speaks — a link
/// moving between families follows too) at kernel time `now_ns`. Written
/// only when it changes, so a steady stream costs a read, and a NAT
/// rebinding takes effect with the next packet; its last-seen time is
/// refreshed at most every `PEER_REFRESH_NS` (the egress program stops
/// sending to an endpoint not refreshed within `PEER_EXPIRY_NS`).
///
/// Only for a link the hub is configured to use (`LINK_ENABLED`): a link id
/// the car does not use never gets an endpoint, so no packet for it can
/// draw traffic. Called only with packets that passed every check (see the
/// module documentation).
#[inline(always)]
pub(crate) fn learn_peer(link: u32, from: &Endpoint, from6: &[u32; 4], now_ns: u64) -> bool {
    if LINKS.get(link).is_none_or(|tx| tx.flags & LINK_ENABLED == 0) {
        return false;
    }
    let Some(peer) = PEERS.get_ptr_mut(link) else {
        return false;
    };
    let Some(peer6) = PEERS6.get_ptr_mut(link) else {
        return false;
    };
    let Some(seen) = PEER_SEEN.get_ptr_mut(link) else {
        return false;
    };
    // SAFETY: the map values outlive the program; a torn read by the egress
    // program on another CPU is resolved by the next packet.
    let (peer, peer6, seen) = unsafe { (&mut *peer, &mut *peer6, &mut *seen) };
    let v6 = from.family == FAMILY_V6;
    if peer.family == from.family
        && peer.port_be == from.port_be
        && peer.ip_be == from.ip_be
        && (!v6 || *peer6 == *from6)
    {
        if now_ns.saturating_sub(*seen) > PEER_REFRESH_NS {
            *seen = now_ns;
        }
        return false;
    }
    // The IPv6 address first: the egress program reads it only once the
    // endpoint says IPv6.
    if v6 {
        *peer6 = *from6;
    }
    *peer = *from;
    *seen = now_ns;
    true
}
