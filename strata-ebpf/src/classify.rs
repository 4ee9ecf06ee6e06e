//! The delivery class of a packet entering the tunnel (see
//! `strata_common::class`): the controller's table by the inner packet's
//! DSCP, or its first matching rule on DSCP, protocol and destination port.
//!
//! The egress program classifies before choosing a link, and the class must
//! not multiply the verifier's walk of that choice: the verifier explores
//! what follows a branch once per distinct state reaching it, and a class
//! set as a constant on separate paths (0, 1, 2 — what a `match` on the DSCP
//! or a rule loop returning literals can compile to) would reach the link
//! choice as that many states, each walked through its hundreds. Every path
//! here ends in a byte loaded from the table's map memory and masked to two
//! bits — to the verifier the same unknown value in `0..=3` — so the paths
//! merge where this returns (egress: 0.355 → 0.361 million instructions
//! verified with up to 16 rules). The table is read in place (a reference into the map, not a
//! copy: the stack has no room for its 264 bytes).

use aya_ebpf::programs::TcContext;
use strata_common::{
    class::NO_PORT,
    drop::DropReason,
    packet::{IPPROTO_TCP, IPPROTO_UDP, IPV6_LEN, inner_dscp},
    wire::flags::CLASS_MASK,
};

use crate::{maps::CLASSES, ptr::read_at};

/// The class bits of the inner IP packet at `L2`, whose first two bytes are
/// `b0` and `b1` (version and DSCP; the caller checked the version).
#[inline(always)]
pub(crate) fn classify<const L2: usize>(ctx: &TcContext, b0: u8, b1: u8) -> Result<u8, DropReason> {
    // An array's entry 0 always exists; the check is the verifier's.
    let table = CLASSES.get(0).ok_or(DropReason::NoConfig)?;
    let dscp = inner_dscp(b0, b1);
    if table.rule_count == 0 {
        return Ok(table.by_dscp[usize::from(dscp & 63)] & CLASS_MASK);
    }
    let (protocol, port) = transport::<L2>(ctx, b0);
    Ok(table.classify(dscp, protocol, port))
}

/// The inner packet's IP protocol and, for TCP and UDP, its destination port
/// (else [`NO_PORT`]). IPv4: from the header of any length, no port for a
/// fragment other than the first. IPv6: the fixed header's next header;
/// extension headers are not walked (a packet with them has the extension's
/// number as protocol and no port) — the sender's applications (telemetry,
/// video) do not use them, and walking a chain costs a bounded loop.
#[inline(always)]
fn transport<const L2: usize>(ctx: &TcContext, b0: u8) -> (u8, u32) {
    let (protocol, l4) = if b0 >> 4 == 4 {
        // Protocol at byte 9; flags and fragment offset at 6..8.
        let Some([frag_hi, frag_lo, _, protocol]) = read_at::<[u8; 4]>(ctx, L2 + 6) else {
            return (0, NO_PORT);
        };
        if u16::from_be_bytes([frag_hi, frag_lo]) & 0x1fff != 0 {
            return (protocol, NO_PORT);
        }
        (protocol, usize::from(b0 & 0x0f) * 4)
    } else {
        let Some(next) = read_at::<u8>(ctx, L2 + 6) else {
            return (0, NO_PORT);
        };
        (next, IPV6_LEN)
    };
    if protocol != IPPROTO_UDP && protocol != IPPROTO_TCP {
        return (protocol, NO_PORT);
    }
    // Destination port: bytes 2..4 of both TCP and UDP headers.
    match read_at::<[u8; 2]>(ctx, L2 + l4 + 2) {
        Some(port) => (protocol, u32::from(u16::from_be_bytes(port))),
        None => (protocol, NO_PORT),
    }
}
