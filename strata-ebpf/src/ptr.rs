//! Bounds-checked packet access.
//!
//! The verifier only accepts a packet read after a comparison of the pointer
//! against `data_end` that covers the whole read, so every access goes
//! through [`ptr_at`]. Pointers are invalid after the packet is resized
//! (`bpf_skb_change_head`, `bpf_skb_adjust_room`): re-derive them.

use aya_ebpf::programs::TcContext;

/// A pointer to a `T` at `offset` bytes into the packet, if the packet is long enough.
#[inline(always)]
pub(crate) fn ptr_at<T>(ctx: &TcContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// A copy of the `T` at `offset`, if the packet is long enough.
#[inline(always)]
pub(crate) fn read_at<T: Copy>(ctx: &TcContext, offset: usize) -> Option<T> {
    // SAFETY: `ptr_at` checked that the whole `T` lies inside the packet; the
    // read is unaligned because packet offsets are not aligned to `T`.
    ptr_at::<T>(ctx, offset).map(|p| unsafe { p.read_unaligned() })
}
