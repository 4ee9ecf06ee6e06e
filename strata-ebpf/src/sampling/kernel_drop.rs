//! `skb:kfree_skb`: the kernel drops a packet; if it was queued on a watched
//! link and not yet sent (a qdisc overflowing, a driver refusing), count it
//! under its reason.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use super::{config, count_drop, read_u64};
use crate::maps::QUEUED;

#[tracepoint]
pub(crate) fn strata_kernel_drop(ctx: TracePointContext) -> u32 {
    let _ = dropped(&ctx);
    0
}

#[inline(always)]
fn dropped(ctx: &TracePointContext) -> Option<()> {
    let cfg = config()?;
    let skb = read_u64(ctx, cfg.drop_skbaddr)?;
    // SAFETY: the value is copied out before the entry is removed.
    let queued = *unsafe { QUEUED.get(skb) }?;
    let _ = QUEUED.remove(skb);
    // SAFETY: a probe read of the record.
    let reason = unsafe { ctx.read_at::<u32>(cfg.drop_reason as usize) }.ok()?;
    count_drop(queued.slot, reason);
    Some(())
}
