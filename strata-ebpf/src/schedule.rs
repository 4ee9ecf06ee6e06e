//! Which link a packet goes to, and the sequence numbers it carries.
//!
//! The controller turns link weights into a [`Schedule`] of 256 slots; the
//! packet's global sequence indexes it, so choosing a link is one lookup (no
//! loop over links, no division by a weight sum). When the chosen link cannot
//! take the packet (disabled, no known peer, MTU too small) the next link ids
//! are tried in turn; links with weight 0 are disabled by the controller and so
//! are never chosen.

use strata_common::{
    drop::DropReason,
    maps::{Endpoint, LINK_ENABLED, LinkTx, MAX_LINKS, SCHEDULE_SLOTS, Schedule},
};

use crate::{
    atomic::fetch_add,
    maps::{LINKS, PEERS, SCHED, TXSEQ},
};

/// A link able to carry the packet.
pub(crate) struct Choice {
    pub(crate) link: u32,
    pub(crate) tx: LinkTx,
    pub(crate) peer: Endpoint,
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

/// Picks the link for the packet with global sequence `seq` whose outer
/// IPv4 packet is `outer_len` bytes long.
#[inline(always)]
pub(crate) fn choose_link(seq: u32, outer_len: u32) -> Result<Choice, DropReason> {
    let active = SCHED.get(0).ok_or(DropReason::NoLink)?.active & 1;
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
        match usable(link, outer_len) {
            Ok(choice) => return Ok(choice),
            Err(DropReason::Oversize) => too_big = true,
            Err(_) => {}
        }
    }
    Err(if too_big { DropReason::Oversize } else { DropReason::NoLink })
}

/// `v`, with everything the compiler knew about its range forgotten.
#[inline(always)]
fn opaque(v: usize) -> usize {
    // SAFETY: a volatile read of a local.
    unsafe { core::ptr::read_volatile(&raw const v) }
}

#[inline(always)]
fn usable(link: u32, outer_len: u32) -> Result<Choice, DropReason> {
    let tx = *LINKS.get(link).ok_or(DropReason::NoLink)?;
    if tx.flags & LINK_ENABLED == 0 {
        return Err(DropReason::NoLink);
    }
    let peer = *PEERS.get(link).ok_or(DropReason::NoLink)?;
    if peer.ip_be == 0 {
        return Err(DropReason::NoLink);
    }
    if outer_len > u32::from(tx.mtu) {
        return Err(DropReason::Oversize);
    }
    Ok(Choice { link, tx, peer })
}
