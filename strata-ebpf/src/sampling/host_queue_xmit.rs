//! `net:net_dev_start_xmit`: the driver starts sending a packet; if it was
//! queued on a watched link, its wait goes into that link's histogram.

use aya_ebpf::{helpers::generated::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext};

use super::{config, count_delay, read_u64};
use crate::maps::QUEUED;

#[tracepoint]
pub(crate) fn strata_host_queue_xmit(ctx: TracePointContext) -> u32 {
    let _ = xmit(&ctx);
    0
}

#[inline(always)]
fn xmit(ctx: &TracePointContext) -> Option<()> {
    let cfg = config()?;
    let skb = read_u64(ctx, cfg.xmit_skbaddr)?;
    // SAFETY: the value is copied out before the entry is removed.
    let queued = *unsafe { QUEUED.get(skb) }?;
    let _ = QUEUED.remove(skb);
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    count_delay(queued.slot, now.saturating_sub(queued.at_ns));
    Some(())
}
