//! `net:net_dev_queue`: a packet enters a device's transmit path; if the
//! device is a watched link, remember when.

use aya_ebpf::{helpers::generated::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext};
use strata_common::maps::{IFNAME_LEN, Queued};

use super::{config, read_u64};
use crate::maps::{QUEUED, WATCH};

#[tracepoint]
pub(crate) fn strata_host_queue_enqueue(ctx: TracePointContext) -> u32 {
    let _ = enqueue(&ctx);
    0
}

#[inline(always)]
fn enqueue(ctx: &TracePointContext) -> Option<()> {
    let cfg = config()?;
    let skb = read_u64(ctx, cfg.queue_skbaddr)?;
    // `__data_loc char[] name`: the low 16 bits are the string's offset in
    // the record, the high 16 its length (NUL included).
    // SAFETY: a probe read of the record.
    let loc = unsafe { ctx.read_at::<u32>(cfg.queue_name as usize) }.ok()?;
    // SAFETY: as above; at most IFNAME_LEN bytes, the kernel's own bound on names.
    let mut name = unsafe { ctx.read_at::<[u8; IFNAME_LEN]>((loc & 0xFFFF) as usize) }.ok()?;
    // Whatever follows the terminating NUL is not the name.
    let mut ended = false;
    for b in &mut name {
        ended |= *b == 0;
        if ended {
            *b = 0;
        }
    }
    // SAFETY: the map value is only read here.
    let slot = *unsafe { WATCH.get(name) }?;
    // SAFETY: helper without arguments.
    let at_ns = unsafe { bpf_ktime_get_ns() };
    QUEUED.insert(skb, Queued { at_ns, slot, _pad: 0 }, 0).ok()
}
