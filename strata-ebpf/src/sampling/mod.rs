//! Host-side sampling of the links' own queues (optional): how long packets
//! wait between being queued on a link interface (`net:net_dev_queue`) and
//! its driver starting to send them (`net:net_dev_start_xmit`), and which of
//! them the kernel drops on the way and why (`skb:kfree_skb`). Aggregated in
//! per-CPU maps; nothing reaches userspace per packet.
//!
//! Tracepoint records are read at offsets userspace took from tracefs (see
//! `SampleConfig`), so no kernel structure is read and no BTF relocation is
//! needed. A packet is followed by its skb address from the queueing
//! tracepoint of a watched interface to the first of the other two.

pub(crate) mod host_queue_enqueue;
pub(crate) mod host_queue_xmit;
pub(crate) mod kernel_drop;

use aya_ebpf::programs::TracePointContext;
use strata_common::{
    histogram::delay_bucket,
    maps::{DELAY_BUCKETS, DELAY_ROW, DROP_REASONS, SAMPLE_SLOTS, SampleConfig},
};

use crate::maps::{KDROPS, QDELAY, SAMPLE_CFG};

/// The tracepoint offsets, once userspace wrote them.
#[inline(always)]
pub(crate) fn config() -> Option<SampleConfig> {
    let cfg = *SAMPLE_CFG.get(0)?;
    (cfg.ready == 1).then_some(cfg)
}

/// Reads a `u64` field at `offset` of the record.
#[inline(always)]
pub(crate) fn read_u64(ctx: &TracePointContext, offset: u32) -> Option<u64> {
    // SAFETY: a probe read of the tracepoint's own record; a bad offset fails, it does not fault.
    unsafe { ctx.read_at::<u64>(offset as usize) }.ok()
}

/// Adds a delay of `ns` to the histogram of `slot` (buckets: see
/// `strata_common::histogram`).
#[inline(always)]
pub(crate) fn count_delay(slot: u32, ns: u64) {
    let bucket = delay_bucket(ns);
    let row = (slot % SAMPLE_SLOTS) * DELAY_ROW;
    if let Some(c) = QDELAY.get_ptr_mut(row + bucket) {
        // SAFETY: a per-CPU slot; nothing else on this CPU runs concurrently.
        unsafe { *c += 1 };
    }
    if let Some(sum) = QDELAY.get_ptr_mut(row + DELAY_BUCKETS) {
        // SAFETY: as above.
        unsafe { *sum += ns };
    }
}

/// Counts a drop of `reason` on `slot`.
#[inline(always)]
pub(crate) fn count_drop(slot: u32, reason: u32) {
    let index = (slot % SAMPLE_SLOTS) * DROP_REASONS + reason.min(DROP_REASONS - 1);
    if let Some(c) = KDROPS.get_ptr_mut(index) {
        // SAFETY: as in `count_delay`.
        unsafe { *c += 1 };
    }
}
