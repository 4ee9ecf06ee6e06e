//! Counters the controller reads: per-link and per-class traffic, drops by reason.
//!
//! Per-CPU maps, so counting needs no atomics; userspace sums the CPUs.

use aya_ebpf::maps::PerCpuArray;
use strata_common::{class::ClassCounters, drop::DropReason, maps::LinkCounters, wire::flags::CLASS_MASK};

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

/// Adds one inner packet of `bytes` to the counters in `map` of the class in
/// the Strata header's `flags`.
#[inline(always)]
pub(crate) fn count_class(map: &PerCpuArray<ClassCounters>, flags: u8, bytes: u32) {
    if let Some(c) = map.get_ptr_mut(u32::from(flags & CLASS_MASK)) {
        // SAFETY: as in `count_drop`.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(bytes);
        }
    }
}
