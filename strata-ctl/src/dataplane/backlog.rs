//! What the kernel's scheduler believes of each link's backlog, read back.
//!
//! The egress program prices every packet by the backlog it meets on a link
//! (`strata-ebpf/src/schedule.rs`): a *modelled* one, a virtual queue
//! drained at the budget rate, and — with a fresh acknowledgement from the
//! hub — a *measured* one, the bytes sent since the acknowledged sequence
//! draining from the acknowledgement's anchor. Only a measured backlog at a
//! current rate may drop a packet as late. The controller never needs these
//! numbers to decide; they are here so that the edge's summary line can be
//! set beside what a link really queued (the lab's link timeline), which is
//! how a wrong prediction is found.
//!
//! [`kernel_backlog`] follows `measured_backlog_ns` in the egress program
//! step by step and shares its arithmetic (`LinkTx::acked_backlog_ns`) and
//! bounds (`ACK_EXPIRY_NS`, `MEASURED_BACKLOG_MAX_NS`).

use std::time::Duration;

use strata_common::maps::{ACK_EXPIRY_NS, LinkPace, LinkTx, MEASURED_BACKLOG_MAX_NS, SENT_RING};

/// One link's backlog as the kernel prices it at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelBacklog {
    /// The virtual queue: what was charged at the budget rate, not yet drained.
    pub modelled: Duration,
    /// From the acknowledgement, if a fresh one is in the map.
    pub measured: Option<Duration>,
    /// The measured backlog may drop packets as late: its drain rate is a
    /// current capacity, not a lower bound.
    pub drops: bool,
}

/// What the kernel makes of `tx` and `pace` at kernel time `now_ns`, when
/// the link's next sequence is `next_seq` and `sent_at` reads its `SENT`
/// ring entry for a sequence. `None` for a link without a budget (the
/// schedule chooses it; no backlog is priced).
pub fn kernel_backlog(
    tx: &LinkTx,
    pace: &LinkPace,
    next_seq: u32,
    sent_at: impl FnOnce(u32) -> Option<u64>,
    now_ns: u64,
) -> Option<KernelBacklog> {
    if !tx.has_budget() {
        return None;
    }
    let modelled = Duration::from_nanos(pace.busy_until_ns.saturating_sub(now_ns));
    let measured_ns = if !tx.acked() || now_ns.saturating_sub(tx.ack_anchor_ns) > ACK_EXPIRY_NS {
        None
    } else {
        let unacked = next_seq.wrapping_sub(tx.acked_seq);
        if unacked == 0 {
            Some(tx.acked_backlog_ns(0, now_ns))
        } else if unacked < SENT_RING {
            sent_at(tx.acked_seq).map(|before| {
                let sent_since = pace.sent_bytes.saturating_sub(before).min(u64::from(u32::MAX)) as u32;
                tx.acked_backlog_ns(sent_since, now_ns)
            })
        } else if unacked < u32::MAX / 2 {
            Some(MEASURED_BACKLOG_MAX_NS)
        } else {
            None
        }
    };
    let measured = measured_ns.map(|ns| Duration::from_nanos(ns.min(MEASURED_BACKLOG_MAX_NS)));
    Some(KernelBacklog { modelled, measured, drops: measured.is_some() && !tx.drain_is_lower_bound() })
}

/// `link`'s entry for `seq` in the `SENT` ring.
pub const fn sent_index(link: u32, seq: u32) -> u32 {
    link * SENT_RING + (seq & (SENT_RING - 1))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const MS: u64 = 1_000_000;

    fn link() -> LinkTx {
        // 8 Mbit/s: 1 µs per byte.
        LinkTx::new(true, 1, Ipv4Addr::LOCALHOST, None, 1, 1500, 14).with_budget(1_000_000, 30_000, 50_000)
    }

    #[test]
    fn a_link_without_a_budget_prices_nothing() {
        let tx = LinkTx::new(true, 1, Ipv4Addr::LOCALHOST, None, 1, 1500, 14);
        assert_eq!(kernel_backlog(&tx, &LinkPace::default(), 0, |_| None, 0), None);
    }

    #[test]
    fn without_an_acknowledgement_only_the_model_speaks() {
        let pace = LinkPace { busy_until_ns: 1_000 * MS + 20 * MS, ..LinkPace::default() };
        let b = kernel_backlog(&link(), &pace, 7, |_| None, 1_000 * MS).unwrap();
        assert_eq!(b, KernelBacklog { modelled: Duration::from_millis(20), measured: None, drops: false });
    }

    #[test]
    fn the_bytes_sent_since_the_acknowledgement_drain_from_its_anchor() {
        // Acknowledged up to sequence 10, anchored 40 ms ago; 100 000 bytes
        // sent since (100 ms at 1 µs a byte): 60 ms are left.
        let now = 1_000 * MS;
        let tx = link().with_ack(10, now - 40 * MS, 1_000_000);
        let pace = LinkPace { sent_bytes: 600_000, ..LinkPace::default() };
        let b = kernel_backlog(&tx, &pace, 90, |seq| (seq == 10).then_some(500_000), now).unwrap();
        assert_eq!(b.measured, Some(Duration::from_millis(60)));
        assert!(b.drops);
        let lower = kernel_backlog(&tx.with_drain_lower_bound(), &pace, 90, |_| Some(500_000), now).unwrap();
        assert!(!lower.drops, "a lower-bound rate steers but drops nothing");
    }

    #[test]
    fn a_stale_or_hopeless_acknowledgement_is_read_as_the_kernel_reads_it() {
        let now = 10_000 * MS;
        let pace = LinkPace { sent_bytes: 1, ..LinkPace::default() };
        let stale = link().with_ack(10, now - 3_000 * MS, 1_000_000);
        assert_eq!(kernel_backlog(&stale, &pace, 90, |_| Some(0), now).unwrap().measured, None);
        let behind = link().with_ack(10, now, 1_000_000);
        let b = kernel_backlog(&behind, &pace, 10 + SENT_RING, |_| Some(0), now).unwrap();
        assert_eq!(b.measured, Some(Duration::from_nanos(MEASURED_BACKLOG_MAX_NS)));
        assert_eq!(kernel_backlog(&behind, &pace, 5, |_| Some(0), now).unwrap().measured, None, "ahead");
    }
}
