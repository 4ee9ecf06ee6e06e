//! The maps shared with the controller (see `strata_common::maps` for who
//! writes what). All are pinned by name so a restarting controller finds the
//! same state and the data path keeps its sequence numbers and weights.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use strata_common::{
    drop::DROP_REASON_COUNT,
    maps::{
        DEDUP_WINDOW, DELAY_ROW, DROP_REASONS, Endpoint, IFNAME_LEN, LinkCounters, LinkPace, LinkTx,
        MAX_LINKS, Queued, RxLinkState, SAMPLE_SLOTS, SampleConfig, Schedule, TunnelConfig, TxSeq,
    },
};

/// Tunnel-wide configuration (entry 0).
#[map(name = "STRATA_CONFIG")]
pub(crate) static CONFIG: Array<TunnelConfig> = Array::pinned(1, 0);

/// Link-layer header length of each interface the ingress program is attached
/// to, by ifindex. Packets on other interfaces pass untouched.
#[map(name = "STRATA_IFACES")]
pub(crate) static IFACES: HashMap<u32, u32> = HashMap::pinned(64, 0);

/// How to send on each link.
#[map(name = "STRATA_LINKS")]
pub(crate) static LINKS: Array<LinkTx> = Array::pinned(MAX_LINKS, 0);

/// The far end of each link.
#[map(name = "STRATA_PEERS")]
pub(crate) static PEERS: Array<Endpoint> = Array::pinned(MAX_LINKS, 0);

/// Double-buffered link schedule.
#[map(name = "STRATA_SCHED")]
pub(crate) static SCHED: Array<Schedule> = Array::pinned(2, 0);

/// Sender sequence counters (entry 0).
#[map(name = "STRATA_TXSEQ")]
pub(crate) static TXSEQ: Array<TxSeq> = Array::pinned(1, 0);

/// Per-link pacing state (virtual queues of the send budgets).
#[map(name = "STRATA_PACE")]
pub(crate) static PACE: Array<LinkPace> = Array::pinned(MAX_LINKS, 0);

/// Sent packets and bytes per link.
#[map(name = "STRATA_TX")]
pub(crate) static TX: PerCpuArray<LinkCounters> = PerCpuArray::pinned(MAX_LINKS, 0);

/// Received data packets and bytes per link.
#[map(name = "STRATA_RX")]
pub(crate) static RX: PerCpuArray<LinkCounters> = PerCpuArray::pinned(MAX_LINKS, 0);

/// Per-link receive sequence tracking.
#[map(name = "STRATA_RXSEQ")]
pub(crate) static RXSEQ: Array<RxLinkState> = Array::pinned(MAX_LINKS, 0);

/// Dropped packets by `DropReason`.
#[map(name = "STRATA_DROPS")]
pub(crate) static DROPS: PerCpuArray<u64> = PerCpuArray::pinned(DROP_REASON_COUNT, 0);

/// Duplicate-suppression window: slot `seq % DEDUP_WINDOW` holds `1 << 32 | seq`
/// of the last global sequence delivered there.
#[map(name = "STRATA_DEDUP")]
pub(crate) static DEDUP: Array<u64> = Array::pinned(DEDUP_WINDOW, 0);

/// Tracepoint field offsets for the sampling programs (entry 0).
#[map(name = "STRATA_SAMPLE_CFG")]
pub(crate) static SAMPLE_CFG: Array<SampleConfig> = Array::pinned(1, 0);

/// Watched interfaces: NUL-padded name → slot.
#[map(name = "STRATA_WATCH")]
pub(crate) static WATCH: HashMap<[u8; IFNAME_LEN], u32> = HashMap::pinned(SAMPLE_SLOTS, 0);

/// Packets queued on a watched interface, by skb address, until sent or
/// dropped. LRU: an skb freed by a path neither tracepoint sees ages out.
#[map(name = "STRATA_QUEUED")]
pub(crate) static QUEUED: LruHashMap<u64, Queued> = LruHashMap::pinned(16_384, 0);

/// Host queueing delay histograms: slot × `DELAY_ROW` (buckets, then the sum in ns).
#[map(name = "STRATA_QDELAY")]
pub(crate) static QDELAY: PerCpuArray<u64> = PerCpuArray::pinned(SAMPLE_SLOTS * DELAY_ROW, 0);

/// Packets a watched interface's path dropped, by kernel reason: slot × `DROP_REASONS`.
#[map(name = "STRATA_KDROPS")]
pub(crate) static KDROPS: PerCpuArray<u64> = PerCpuArray::pinned(SAMPLE_SLOTS * DROP_REASONS, 0);
