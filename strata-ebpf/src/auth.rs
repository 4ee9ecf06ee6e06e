//! Packet authentication in the kernel: the SipHash-2-4 tag of
//! `strata_common::auth`, checked at ingress before anything is learned,
//! counted or delivered, and added at egress.
//!
//! The tag covers the Strata header (tag bytes as zero) and the rest of the
//! UDP payload. Both sides copy those bytes into a per-CPU map value
//! ([`AUTH_SCRATCH`]) with `bpf_skb_load_bytes` — which reads non-linear
//! skbs too — and hash the copy word by word.
//!
//! Why `bpf_loop` and not a plain loop: the verifier walks a bounded loop
//! once per iteration *for every distinct state that reaches it*, and the
//! egress program reaches its send path in hundreds of states (link choice;
//! see `tunnel_egress::send_v6`). A 1 500-byte packet is 188 SipHash words;
//! walked inline that is ≈ 190 × 40 instructions per state and would blow
//! the verifier's million-instruction budget. `bpf_loop` (kernel ≥ 5.17)
//! verifies its callback as a separate function whose state (the SipHash
//! words in the caller's stack) is an unknown scalar, so the body is
//! verified a handful of times whatever the packet length. Each callback
//! call absorbs [`WORDS_PER_CALL`] words, to spread the per-call overhead
//! over 256 bytes. Even so the code around the loop (copy, finalisation)
//! costs per state: the egress program calls [`tag`] only once its states
//! have collapsed (inputs re-read from the scratch map), and sizes packets
//! with the branch-free [`tag_len`] (measured: 0.80 and 0.69 million
//! verified instructions without those two measures, 0.41 with them).

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_skb_load_bytes},
    programs::TcContext,
};
use strata_common::{
    auth::{AUTH_HEADER_LEN, AUTH_HEADER_WORDS, AuthKey, KEY_SEND, KEY_VALID, SipState, TAG_LEN, last_word},
    drop::DropReason,
    maps::CONFIG_AUTH_REQUIRED,
    wire::{Header, PacketType, flags},
};

use crate::maps::{AUTH_KEYS, AUTH_MAX_LEN, AUTH_SCRATCH, AUTH_WORDS, AuthScratch};

/// SipHash words absorbed per `bpf_loop` callback call: 256 bytes, so a
/// 1.4 kB packet takes 6 calls rather than 22 at 8 words. Each call is a
/// BPF-to-BPF call (the verifier inlines `bpf_loop` into a loop around it)
/// that saves and restores registers, looks the scratch map up again and
/// returns through the host's return-thunk mitigation; at 8 words a call,
/// the instruction after the call was the egress program's hottest in
/// `perf` (≈ 11 % of its own samples).
const WORDS_PER_CALL: u32 = 32;
const _: () = assert!(WORDS_PER_CALL.is_multiple_of(4));

/// The SipHash state walked through `bpf_loop` (on the caller's stack;
/// the callback gets a pointer to it).
#[repr(C)]
struct Walk {
    /// SipHash v0..v3.
    v: [u64; 4],
    /// Whole 8-byte words to absorb.
    words: u32,
    /// Explicit padding.
    _pad: u32,
}

/// Callback calls that cover the scratch copy: `MAX_CALLS * WORDS_PER_CALL`
/// words are all a tag covers ([`AUTH_MAX_LEN`] bytes), and stay inside the
/// map value.
const MAX_CALLS: u32 = (AUTH_MAX_LEN / 8) as u32 / WORDS_PER_CALL;
const _: () = assert!((MAX_CALLS * WORDS_PER_CALL) as usize <= AUTH_WORDS);

/// `bpf_loop` callback: absorbs words `index * WORDS_PER_CALL ..` (up to
/// `walk.words`) of the scratch copy. Returns 1 (stop) past the end.
///
/// The verifier knows nothing of `index` (any u64) and so rejects a map
/// value pointer moved by it ("math between map_value pointer and register
/// with unbounded min value"): the explicit `MAX_CALLS` bound comes first,
/// and with it every read of the call is provably inside the value.
#[inline(never)]
extern "C" fn absorb(index: u64, ctx: *mut c_void) -> i64 {
    if index >= u64::from(MAX_CALLS) {
        return 1;
    }
    let Some(scratch) = AUTH_SCRATCH.get_ptr(0) else {
        return 1;
    };
    // SAFETY: `ctx` is the `Walk` on the stack of `tag_of_scratch`, which
    // outlives the `bpf_loop` call; `scratch` is this CPU's map value, and
    // `base + WORDS_PER_CALL` words are within it (`MAX_CALLS`).
    let (walk, words) = unsafe {
        (
            &mut *ctx.cast::<Walk>(),
            (&raw const (*scratch).buf).cast::<u64>().add(index as usize * WORDS_PER_CALL as usize),
        )
    };
    let left = walk.words.saturating_sub(index as u32 * WORDS_PER_CALL);
    let mut s = SipState { v: walk.v };
    if left >= WORDS_PER_CALL {
        // A whole call's words (every call but the packet's last): four
        // words per turn, with no per-word test of `left`. The per-word loop
        // below spends ≈ 6 of its ≈ 75 instructions a word on that test and
        // its counter (the test's bound is spilled to the stack: SipHash's
        // state takes the registers).
        let mut j = 0;
        while j < WORDS_PER_CALL {
            // SAFETY: see above; `j + 3 < WORDS_PER_CALL`.
            unsafe {
                s.compress(words.add(j as usize).read());
                s.compress(words.add(j as usize + 1).read());
                s.compress(words.add(j as usize + 2).read());
                s.compress(words.add(j as usize + 3).read());
            }
            j += 4;
        }
    } else {
        let mut j = 0;
        while j < WORDS_PER_CALL {
            if j >= left {
                break;
            }
            // SAFETY: see above; `j < WORDS_PER_CALL`.
            s.compress(unsafe { words.add(j as usize).read() });
            j += 1;
        }
    }
    walk.v = s.v;
    0
}

/// SipHash-2-4 under `key` of the first `len` bytes of the scratch copy
/// (`len` below [`AUTH_MAX_LEN`], checked).
#[inline(always)]
fn tag_of_scratch(buf: &AuthScratch, key: &[u64; 2], len: usize) -> Result<u64, DropReason> {
    // `opaque`: LLVM knows the caller bounded `len` and would drop this
    // check, but the verifier lost that bound in 32-bit arithmetic on the
    // way ("unbounded memory access"); kept, it proves the read in bounds.
    // The mask is what the verifier can follow (a compare LLVM rewrites
    // into a byte-offset bound one word too loose): lengths below
    // AUTH_MAX_LEN have at most 255 whole words.
    if len >= AUTH_MAX_LEN {
        return Err(DropReason::AuthBad);
    }
    let words = ((opaque(len as u32) / 8) & (AUTH_MAX_LEN as u32 / 8 - 1)) as usize;
    let Some(&tail) = buf.buf.get(words) else {
        return Err(DropReason::AuthBad);
    };
    let mut walk = Walk { v: SipState::new(key).v, words: words as u32, _pad: 0 };
    let calls = (words as u32).div_ceil(WORDS_PER_CALL);
    if calls > 0 {
        // SAFETY: `absorb` is a static function of the callback type
        // `bpf_loop` expects; `walk` lives on this stack across the call.
        let ret = unsafe { bpf_loop(calls, absorb as *mut c_void, (&raw mut walk).cast(), 0) };
        if ret < 0 {
            return Err(DropReason::AuthBad);
        }
    }
    Ok(SipState { v: walk.v }.finish(last_word(len, tail)))
}

/// `bpf_skb_load_bytes` of `len` packet bytes at `off` into the scratch
/// copy at byte `at` (0 or [`AUTH_HEADER_LEN`]). The verifier checks the
/// length against the destination from the instructions alone: at least 1
/// (the helper refuses 0) and at most what is left of the map value; the
/// mask proves the upper bound and `opaque` keeps LLVM from dropping it as
/// redundant after the explicit check.
#[inline(always)]
fn load(ctx: &TcContext, buf: *mut AuthScratch, at: usize, off: u32, len: u32) -> Result<(), DropReason> {
    if len == 0 || len as usize > AUTH_MAX_LEN {
        return Err(DropReason::AuthBad);
    }
    const _: () = assert!(AUTH_MAX_LEN.is_power_of_two() && AUTH_HEADER_LEN + AUTH_MAX_LEN < AUTH_WORDS * 8);
    let n = (opaque(len - 1) & (AUTH_MAX_LEN as u32 - 1)) + 1;
    let at = if at == 0 { 0 } else { AUTH_HEADER_LEN };
    // SAFETY: `n` is within 1..=AUTH_MAX_LEN and `at + n` within the map value.
    let dst = unsafe { buf.cast::<u8>().add(at) };
    // SAFETY: plain helper call writing `n` bytes at `dst` (see above).
    if unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), off, dst.cast(), n) } != 0 {
        return Err(DropReason::AuthBad);
    }
    Ok(())
}

/// `v`, with everything the compiler knew about its range forgotten.
#[inline(always)]
fn opaque(v: u32) -> u32 {
    // SAFETY: a volatile read of a local.
    unsafe { core::ptr::read_volatile(&raw const v) }
}

/// Ingress: checks the tag of the packet whose Strata header (already
/// validated) is `header` at `strata_off`, `available` bytes to the end of
/// the UDP payload. Called once, right after header validation and before
/// anything is learned, counted or delivered.
///
/// * Authentication required (`CONFIG_AUTH_REQUIRED`): no tag, or a key
///   phase without an installed key → `auth_missing`; a wrong tag →
///   `auth_bad`.
/// * Not required: a tagged packet whose phase has a key is still checked
///   (a wrong tag is dropped); anything else passes, as before
///   authentication existed.
#[inline(always)]
pub(crate) fn check(
    ctx: &TcContext,
    cfg_flags: u32,
    header: &Header,
    packet_type: PacketType,
    strata_off: usize,
    available: usize,
) -> Result<(), DropReason> {
    let required = cfg_flags & CONFIG_AUTH_REQUIRED != 0;
    // Handshake packets travel before any key exists and are authenticated
    // by the handshake itself (Noise, docs/WIRE.md): they pass untagged, up
    // to the controller, which verifies them.
    if matches!(packet_type, PacketType::Handshake) {
        return Ok(());
    }
    if header.flags & flags::AUTH == 0 {
        return if required { Err(DropReason::AuthMissing) } else { Ok(()) };
    }
    if header.header_words < AUTH_HEADER_WORDS {
        return Err(DropReason::AuthBad);
    }
    let slot = u32::from(header.flags & flags::KEY_PHASE != 0);
    let key: AuthKey = AUTH_KEYS.get(slot).copied().unwrap_or_default();
    if !key.valid() {
        return if required { Err(DropReason::AuthMissing) } else { Ok(()) };
    }
    let scratch = AUTH_SCRATCH.get_ptr_mut(0).ok_or(DropReason::AuthBad)?;
    load(ctx, scratch, 0, strata_off as u32, available as u32)?;
    // SAFETY: this CPU's entry; the program runs to completion on it.
    let s = unsafe { &mut *scratch };
    // The tag is bytes 20..28: the upper half of word 2, the lower half of
    // word 3 (words read little-endian). Taken out, then zeroed for hashing.
    let got = (s.buf[2] >> 32) | (s.buf[3] << 32);
    s.buf[2] &= 0xffff_ffff;
    s.buf[3] &= 0xffff_ffff_0000_0000;
    let want = tag_of_scratch(s, &key.recv, available)?;
    if got != want {
        return Err(DropReason::AuthBad);
    }
    Ok(())
}

/// Egress: the tag bytes a packet sent now carries, 0 or [`TAG_LEN`],
/// computed without a branch. The link choice that follows sizes the
/// packet with it; a branch here (`if key installed`) would split every
/// state of the link choice in two, and did: the egress program's verified
/// instructions went from 0.34 to 0.69 million.
#[inline(always)]
pub(crate) fn tag_len() -> u32 {
    let flags = |slot: u32| AUTH_KEYS.get(slot).map_or(0, |k| opaque(k.flags));
    let f = flags(0) | flags(1);
    // KEY_VALID is bit 0, KEY_SEND bit 1: both set → 1.
    const _: () = assert!(KEY_VALID == 1 && KEY_SEND == 2 && TAG_LEN == 8);
    ((f & (f >> 1)) & 1) << 3
}

/// Egress: the sending key, if one is installed: its key phase and key.
#[inline(always)]
pub(crate) fn send_key() -> Option<(u8, [u64; 2])> {
    let mut slot = 0;
    while slot < 2 {
        if let Some(k) = AUTH_KEYS.get(slot)
            && k.sends()
        {
            return Some((k.phase(), k.send));
        }
        slot += 1;
    }
    None
}

/// Egress: the tag of a packet whose header will be `header` (with the
/// `auth` flag, [`AUTH_HEADER_WORDS`] words) and whose payload is the
/// `len` bytes at `off` of the packet as it is now (the inner packet,
/// before encapsulation). Returned as the 8 tag bytes in wire order.
#[inline(always)]
pub(crate) fn tag(
    ctx: &TcContext,
    header: &Header,
    key: &[u64; 2],
    off: u32,
    len: u32,
) -> Result<[u8; TAG_LEN], DropReason> {
    let scratch = AUTH_SCRATCH.get_ptr_mut(0).ok_or(DropReason::EncapFailed)?;
    if len as usize >= AUTH_MAX_LEN - AUTH_HEADER_LEN {
        return Err(DropReason::Oversize);
    }
    load(ctx, scratch, AUTH_HEADER_LEN, off, len).map_err(|_| DropReason::EncapFailed)?;
    // SAFETY: this CPU's entry; the program runs to completion on it.
    let s = unsafe { &mut *scratch };
    // The header's 20 bytes, then the zeroed tag (bytes 20..28).
    s.buf[2] = 0;
    s.buf[3] &= 0xffff_ffff_0000_0000;
    // SAFETY: 20 bytes at the start of a 2 KiB buffer.
    unsafe { core::ptr::write_unaligned(s.buf.as_mut_ptr().cast::<Header>(), *header) };
    let t = tag_of_scratch(s, key, AUTH_HEADER_LEN + len as usize).map_err(|_| DropReason::EncapFailed)?;
    Ok(t.to_le_bytes())
}
