//! The UDP checksum of an outer packet over IPv6.
//!
//! IPv6 has no header checksum, so UDP's is mandatory (RFC 8200 §8.1). RFC
//! 6935/6936 allow a zero checksum for tunnels, but only where every
//! receiver *and* every middlebox on the path is known to accept it; a
//! cellular carrier's firewalls and NAT64/CGN boxes are neither known nor
//! configurable, and a Linux box counts zero-checksum UDP over IPv6 as
//! invalid (`udp6_rcv`, conntrack). So Strata computes the checksum.
//!
//! All sums here are ones'-complement running sums in memory order, as
//! `bpf_csum_diff` (the kernel's `csum_partial`) produces them: every block
//! is summed as it lies in memory, and the folded result is stored as is.
//!
//! The inner packet is summed one of two ways:
//!
//! * **Inner TCP or UDP with a checksum** (nearly all traffic): its L4
//!   segment sums to the complement of its own pseudo-header — whether its
//!   checksum is already filled in or still `CHECKSUM_PARTIAL` (TCP always is
//!   at tc egress: the checksum is completed later by the link device or
//!   `skb_checksum_help`, after the outer one was computed here). Either way
//!   the segment's contribution is `~pseudo`, known from the inner IP header
//!   alone: the kernel's local checksum offload (LCO) reasoning. An inner
//!   IPv4 header sums to zero on its own (its header checksum is always
//!   computed in software); an inner IPv6 header is summed.
//! * **Anything else** (ICMP, inner UDP without checksum, fragments, IPv6
//!   extension headers): its bytes are final when it reaches tc egress and are
//!   summed in chunks copied to the stack.

use aya_ebpf::{
    helpers::generated::{bpf_csum_diff, bpf_skb_load_bytes},
    programs::TcContext,
};
use strata_common::{
    drop::DropReason,
    packet::{
        IP_MF_OFFSET, IPPROTO_TCP, IPPROTO_UDP, IPV6_LEN, Ipv4Hdr, Pseudo4, Pseudo6, csum_add, csum_fold,
        udp_check_field,
    },
};

use crate::maps::{CHUNK_WORDS, Scratch};

/// Bytes summed per helper call on the slow path.
const CHUNK: u32 = (CHUNK_WORDS * 4) as u32;
/// Chunks the slow path sums at most: 9 216 bytes, a jumbo frame. A link's
/// MTU bounds every outer packet, and bounded loops are what the verifier
/// accepts: it walks every iteration, for every state that reaches the loop,
/// so the chunk is as large as the helper takes (512 bytes, its own scratch
/// space) and the loop short — with 64-byte chunks the egress program took
/// 2.5 times as long to load.
const MAX_CHUNKS: u32 = 18;

/// `seed` plus the ones'-complement sum of `value`'s bytes; `size_of::<T>()`
/// must be a multiple of 4 (the helper refuses anything else).
#[inline(always)]
fn sum_of<T>(value: &T, seed: u32) -> Result<u32, DropReason> {
    // SAFETY: `value` is a live object (stack or map value) of
    // `size_of::<T>()` bytes that the helper only reads (its `from` side is
    // empty).
    let ret = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            core::ptr::from_ref(value).cast_mut().cast(),
            size_of::<T>() as u32,
            seed,
        )
    };
    if ret < 0 { Err(DropReason::EncapFailed) } else { Ok(ret as u32) }
}

/// A copy of the `T` at `offset` of the packet (linear or not).
#[inline(always)]
fn load<T: Copy>(ctx: &TcContext, offset: u32) -> Option<T> {
    ctx.load::<T>(offset as usize).ok()
}

/// Fills in the UDP checksum of `s.outer`, whose inner packet is the
/// `inner_len` bytes at `inner_off` of the packet.
#[inline(always)]
pub(crate) fn udp6_check(
    ctx: &TcContext,
    s: &mut Scratch,
    inner_off: u32,
    inner_len: u32,
) -> Result<(), DropReason> {
    // Built with a zero checksum field, so the headers are summed as they are.
    s.frame6.outer.udp.check_be = 0;
    s.pseudo = s.frame6.outer.pseudo();
    let mut sum = sum_of(&s.pseudo, 0)?;
    sum = sum_of(&s.frame6.outer.udp, sum)?;
    sum = sum_of(&s.frame6.outer.strata, sum)?;
    // The authentication tag, between the header and the inner packet: at
    // an even offset, and 8 bytes long, so the inner packet's sum is the
    // same either way (ones'-complement sums depend only on byte parity).
    // SAFETY: volatile read of this CPU's scratch entry (see `send_v6`).
    if unsafe { core::ptr::read_volatile(&raw const s.send.tagged) } != 0 {
        sum = sum_of(&s.frame6.tag, sum)?;
    }
    sum = match l4_shortcut(ctx, s, inner_off, inner_len)? {
        Some(inner) => csum_add(sum, inner),
        None => sum_bytes(ctx, s, inner_off, inner_len, sum)?,
    };
    // Stored in memory order, as summed (see the module documentation).
    s.frame6.outer.udp.check_be = udp_check_field(csum_fold(sum));
    Ok(())
}

/// The sum of an inner TCP or UDP packet without reading its payload (see
/// the module documentation), or `None` if it is not one.
#[inline(always)]
fn l4_shortcut(ctx: &TcContext, s: &mut Scratch, off: u32, len: u32) -> Result<Option<u32>, DropReason> {
    let Some(first) = load::<u8>(ctx, off) else { return Ok(None) };
    if first >> 4 == 4 {
        let Some(ip) = load::<Ipv4Hdr>(ctx, off) else { return Ok(None) };
        let ihl = u32::from(ip.version_ihl & 0x0f) * 4;
        let total = u32::from(u16::from_be(ip.total_len_be));
        if ihl < 20 || total != len || u16::from_be(ip.frag_off_be) & IP_MF_OFFSET != 0 {
            return Ok(None);
        }
        if !has_l4_checksum(ctx, ip.protocol, off + ihl) {
            return Ok(None);
        }
        let pseudo = Pseudo4 {
            saddr_be: ip.saddr_be,
            daddr_be: ip.daddr_be,
            proto_len_be: (u32::from(ip.protocol) << 16 | (total - ihl)).to_be(),
        };
        // The IPv4 header, its checksum included, sums to zero: only the
        // L4 segment counts.
        return Ok(Some(u32::from(!csum_fold(sum_of(&pseudo, 0)?))));
    }
    if first >> 4 != 6 {
        return Ok(None);
    }
    // SAFETY: `inner6` is 40 bytes of this CPU's scratch entry.
    if unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), off, (&raw mut s.inner6).cast(), IPV6_LEN as u32) }
        != 0
    {
        return Ok(None);
    }
    let ip = &s.inner6;
    let payload = u32::from(u16::from_be(ip.payload_len_be));
    if payload + IPV6_LEN as u32 != len || !has_l4_checksum(ctx, ip.next_header, off + IPV6_LEN as u32) {
        return Ok(None);
    }
    s.pseudo = Pseudo6 {
        saddr: ip.saddr,
        daddr: ip.daddr,
        len_be: payload.to_be(),
        next_be: u32::from(ip.next_header).to_be(),
    };
    let header = sum_of(&s.inner6, 0)?;
    Ok(Some(csum_add(header, u32::from(!csum_fold(sum_of(&s.pseudo, 0)?)))))
}

/// Whether the L4 header at `off` is TCP, or UDP with a checksum (an inner
/// IPv4 UDP datagram may carry none, and then its segment sums to anything).
#[inline(always)]
fn has_l4_checksum(ctx: &TcContext, protocol: u8, off: u32) -> bool {
    match protocol {
        IPPROTO_TCP => true,
        IPPROTO_UDP => load::<u16>(ctx, off + 6).is_some_and(|check| check != 0),
        _ => false,
    }
}

/// `seed` plus the sum of the `len` packet bytes at `off`, copied to the
/// scratch chunk `CHUNK` bytes at a time (the packet may be non-linear; the
/// helper copies across fragments). `off` is even relative to the UDP
/// header, so a trailing odd byte is padded with zero as RFC 768 pads it.
#[inline(always)]
fn sum_bytes(
    ctx: &TcContext,
    s: &mut Scratch,
    mut off: u32,
    len: u32,
    mut seed: u32,
) -> Result<u32, DropReason> {
    let end = off + len;
    let buf = (&raw mut s.chunk).cast::<core::ffi::c_void>();
    for _ in 0..MAX_CHUNKS {
        let left = end.saturating_sub(off);
        if left == 0 {
            return Ok(seed);
        }
        if left >= CHUNK {
            // SAFETY: `chunk` is CHUNK bytes of this CPU's scratch entry.
            if unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), off, buf, CHUNK) } != 0 {
                return Err(DropReason::EncapFailed);
            }
            seed = sum_of(&s.chunk, seed)?;
            off += CHUNK;
            continue;
        }
        // The tail, 1..CHUNK-1 bytes. The verifier needs the length's range
        // proven from the instructions: at least 1 (the helper refuses a zero
        // size) and at most the buffer. `opaque` keeps LLVM from folding the
        // mask and add away as redundant (it knows `left < CHUNK`).
        let n = (opaque(left - 1) & (CHUNK - 1)) + 1;
        s.chunk = [0; CHUNK_WORDS];
        // SAFETY: `n` is within 1..=CHUNK, the size of `chunk`.
        if unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), off, buf, n) } != 0 {
            return Err(DropReason::EncapFailed);
        }
        // Whole words: the zeroed rest of the chunk pads the tail. At most
        // CHUNK, which the verifier cannot tell from the mask (it bounds
        // `(n + 3) & !3` by 66): the explicit bound, kept by `opaque`, says so.
        let words = opaque((n + 3) & !3);
        let words = if words > CHUNK { CHUNK } else { words };
        // SAFETY: `words` is within 4..=CHUNK, the size of `chunk`.
        let ret = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, buf.cast(), words, seed) };
        return if ret < 0 { Err(DropReason::EncapFailed) } else { Ok(ret as u32) };
    }
    Err(DropReason::Oversize)
}

/// `v`, with everything the compiler knew about its range forgotten.
#[inline(always)]
fn opaque(v: u32) -> u32 {
    // SAFETY: a volatile read of a local.
    unsafe { core::ptr::read_volatile(&raw const v) }
}
