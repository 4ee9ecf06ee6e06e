//! Atomic read-modify-write on map memory.
//!
//! Rust's BPF targets declare no atomic read-modify-write support
//! (`target_has_atomic` is false), so `core::sync::atomic` offers no
//! `fetch_add` or `swap` there, although the kernel has executed them since
//! 5.12 (BPF ISA v3 `BPF_ATOMIC` with `BPF_FETCH`/`BPF_XCHG`). The compiler
//! intrinsics lower to LLVM `atomicrmw`, which the BPF backend emits as those
//! instructions when compiling for `-C target-cpu=v3` (see strata-ctl's `build.rs`).
//!
//! Ordering is `SeqCst` on purpose: LLVM 22's BPF backend lowers a *relaxed*
//! `atomicrmw add` to the plain `lock +=` (no `BPF_FETCH`) even when the old
//! value is used, so the "returned" value is silently the operand — the
//! golden test `egress_follows_the_schedule_and_counts_sequences` caught
//! sequence numbers stuck at 1. The kernel executes every fetching BPF atomic
//! as a full barrier anyway, so `SeqCst` costs nothing.

use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd};

/// Atomically adds `v` to `*p`, returning the previous value.
///
/// # Safety
/// `p` must point to a live, aligned `u64` in map memory.
#[inline(always)]
pub(crate) unsafe fn fetch_add(p: *mut u64, v: u64) -> u64 {
    // SAFETY: upheld by the caller.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, v) }
}

/// Atomically replaces `*p` with `new` if it holds `old` (`BPF_CMPXCHG`):
/// `Ok(old)` if it did, `Err(current)` with the value found if not.
///
/// # Safety
/// As for [`fetch_add`].
#[inline(always)]
pub(crate) unsafe fn compare_exchange(p: *mut u64, old: u64, new: u64) -> Result<u64, u64> {
    // SAFETY: upheld by the caller.
    let (found, done) =
        unsafe { atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(p, old, new) };
    if done { Ok(found) } else { Err(found) }
}

/// Reads `*p` in one load, as another CPU's atomics left it.
///
/// # Safety
/// As for [`fetch_add`].
#[inline(always)]
pub(crate) unsafe fn load(p: *const u64) -> u64 {
    // SAFETY: upheld by the caller; an aligned 64-bit load is single-copy
    // atomic on every architecture BPF runs on.
    unsafe { core::ptr::read_volatile(p) }
}
