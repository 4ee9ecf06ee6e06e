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

use core::intrinsics::{AtomicOrdering, atomic_xadd, atomic_xchg};

/// Atomically adds `v` to `*p`, returning the previous value.
///
/// # Safety
/// `p` must point to a live, aligned `u64` in map memory.
#[inline(always)]
pub(crate) unsafe fn fetch_add(p: *mut u64, v: u64) -> u64 {
    // SAFETY: upheld by the caller.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, v) }
}

/// Atomically stores `v` into `*p`, returning the previous value.
///
/// # Safety
/// As for [`fetch_add`].
#[inline(always)]
pub(crate) unsafe fn swap(p: *mut u64, v: u64) -> u64 {
    // SAFETY: upheld by the caller.
    unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(p, v) }
}
