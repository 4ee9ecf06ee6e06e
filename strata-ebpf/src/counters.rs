//! Counters the controller reads: per-link traffic and drops by reason.
//!
//! Per-CPU maps, so counting needs no atomics; userspace sums the CPUs.

use aya_ebpf::maps::PerCpuArray;
use strata_common::{drop::DropReason, maps::LinkCounters};

use crate::maps::DROPS;

/// Counts one dropped packet under `reason`.
#[inline(always)]
pub(crate) fn count_drop(reason: DropReason) {
    if let Some(counter) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: a per-CPU array slot; nothing else on this CPU runs concurrently.
        unsafe { *counter += 1 };
    }
}

/// Adds one packet of `bytes` to `link`'s counters in `map`.
#[inline(always)]
pub(crate) fn count_link(map: &PerCpuArray<LinkCounters>, link: u32, bytes: u64) {
    if let Some(c) = map.get_ptr_mut(link) {
        // SAFETY: as in `count_drop`.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}
