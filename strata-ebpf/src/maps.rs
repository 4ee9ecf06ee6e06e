//! The maps shared with the controller (see `strata_common::maps` for who
//! writes what). All are pinned by name so a restarting controller finds the
//! same state and the data path keeps its sequence numbers and weights.
//!
//! Each map is declared with [`shared_map!`], which names it after its static
//! through `strata_common::map_name!`, the names' single definition that the
//! controller's `strata_common::maps::names` constants come from too.

use aya_ebpf::maps::{Array, HashMap, LruHashMap, PerCpuArray};
use strata_common::{
    auth::{AUTH_HEADER_LEN, AuthKey, KEY_SLOTS},
    class::{CLASS_SLOTS, ClassCounters, ClassTable},
    drop::DROP_REASON_COUNT,
    map_name,
    maps::{
        DELAY_ROW, DROP_REASONS, Endpoint, IFNAME_LEN, LinkCounters, LinkPace, LinkTx, LinkTx6, MAX_LINKS,
        Queued, REPLAY_SLOTS, ReplayState, RxJump, RxLinkState, RxQueued, SAMPLE_SLOTS, SENT_RING,
        SampleConfig, Schedule, TunnelConfig, TxSeq,
    },
    packet::{Ipv6Hdr, OuterV4, OuterV6, Pseudo6},
};

use crate::encap::Frame;

/// `static $map: $ty = $init;` as a BPF map named `map_name!($map)`: what
/// aya's `#[map(name = "...")]` expands to (the `maps` section, the name as
/// the exported symbol), with the name taken from `strata_common` rather than
/// written here, which `#[map]` cannot do (it wants a string literal).
macro_rules! shared_map {
    ($(#[doc = $doc:literal])* $map:ident: $ty:ty = $init:expr;) => {
        $(#[doc = $doc])*
        #[unsafe(link_section = "maps")]
        #[unsafe(export_name = map_name!($map))]
        pub(crate) static $map: $ty = $init;
    };
}

shared_map! {
    /// Tunnel-wide configuration (entry 0).
    CONFIG: Array<TunnelConfig> = Array::pinned(1, 0);
}

shared_map! {
    /// Link-layer header length of each interface the ingress program is attached
    /// to, by ifindex. Packets on other interfaces pass untouched.
    IFACES: HashMap<u32, u32> = HashMap::pinned(64, 0);
}

shared_map! {
    /// How to send on each link.
    LINKS: Array<LinkTx> = Array::pinned(MAX_LINKS, 0);
}

shared_map! {
    /// The far end of each link.
    PEERS: Array<Endpoint> = Array::pinned(MAX_LINKS, 0);
}

shared_map! {
    /// The local IPv6 address (entry 0; all zero: any).
    CONFIG6: Array<[u32; 4]> = Array::pinned(1, 0);
}

shared_map! {
    /// How each link sends to an IPv6 peer (links flagged `LINK_V6`).
    LINKS6: Array<LinkTx6> = Array::pinned(MAX_LINKS, 0);
}

shared_map! {
    /// The IPv6 address of each link's far end (when its `PEERS` entry says IPv6).
    PEERS6: Array<[u32; 4]> = Array::pinned(MAX_LINKS, 0);
}

/// Per-CPU scratch space of the egress program for an IPv6 packet: its
/// outer headers and the buffers of the checksum. The program's 512-byte
/// stack is nearly all taken by choosing a link; this is not pinned (nothing
/// in it outlives a packet).
#[repr(C)]
pub(crate) struct Scratch {
    /// The Ethernet, outer IPv6 headers and tag being built.
    pub(crate) frame6: Frame<OuterV6>,
    /// A pseudo-header being summed.
    pub(crate) pseudo: Pseudo6,
    /// An inner IPv6 header.
    pub(crate) inner6: Ipv6Hdr,
    /// Packet bytes being summed.
    pub(crate) chunk: [u32; CHUNK_WORDS],
    /// Where the packet goes.
    pub(crate) send: Send6,
    /// The Ethernet and outer headers and tag of an authenticated IPv4
    /// packet being built.
    pub(crate) frame4: Frame<OuterV4>,
}

/// Where a packet built in `Scratch` goes (IPv6, or authenticated IPv4:
/// then `nexthop6[0]` is the IPv4 next hop).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Send6 {
    /// Link id.
    pub(crate) link: u32,
    /// Interface.
    pub(crate) ifindex: u32,
    /// Next hop (all zero: looked up).
    pub(crate) nexthop6: [u32; 4],
    /// The sending key, if `tagged`.
    pub(crate) key: [u64; 2],
    /// 1: the packet carries a tag (its length is in the UDP length).
    pub(crate) tagged: u32,
    /// Explicit padding.
    pub(crate) _pad: u32,
}

/// Words of [`Scratch::chunk`].
pub(crate) const CHUNK_WORDS: usize = 128;

#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(SCRATCH))]
pub(crate) static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

shared_map! {
    /// Double-buffered link schedule.
    SCHED: Array<Schedule> = Array::pinned(2, 0);
}

shared_map! {
    /// Sender sequence counters (entry 0).
    TXSEQ: Array<TxSeq> = Array::pinned(1, 0);
}

shared_map! {
    /// Per-link pacing state (virtual queues of the send budgets).
    PACE: Array<LinkPace> = Array::pinned(MAX_LINKS, 0);
}

shared_map! {
    /// Per link, a ring of [`SENT_RING`] entries indexed by link sequence:
    /// the link's `LinkPace::sent_bytes` before that packet was sent. An
    /// acknowledged sequence then tells how much was sent after it.
    SENT: Array<u64> = Array::pinned(MAX_LINKS * SENT_RING, 0);
}

shared_map! {
    /// The classification table (entry 0; see `classify`).
    CLASSES: Array<ClassTable> = Array::pinned(1, 0);
}

shared_map! {
    /// Sent inner packets and bytes per class (index: the class bits).
    CLASS_TX: PerCpuArray<ClassCounters> = PerCpuArray::pinned(CLASS_SLOTS, 0);
}

shared_map! {
    /// Delivered inner packets and bytes per class (index: the class bits the sender set).
    CLASS_RX: PerCpuArray<ClassCounters> = PerCpuArray::pinned(CLASS_SLOTS, 0);
}

shared_map! {
    /// Each class's share of the deadline, per mille (index: the class bits;
    /// see `strata_common::class::DeadlineShares`). A map of its own, not a
    /// `TunnelConfig` field, so that a pinned config keeps its layout.
    CLASS_DEADLINE: Array<u32> = Array::pinned(CLASS_SLOTS, 0);
}

shared_map! {
    /// Inner packets and bytes dropped as late per class (index: the class bits).
    CLASS_SHED: PerCpuArray<ClassCounters> = PerCpuArray::pinned(CLASS_SLOTS, 0);
}

shared_map! {
    /// Sent packets and bytes per link.
    TX: PerCpuArray<LinkCounters> = PerCpuArray::pinned(MAX_LINKS, 0);
}

shared_map! {
    /// Received data packets and bytes per link.
    RX: PerCpuArray<LinkCounters> = PerCpuArray::pinned(MAX_LINKS, 0);
}

shared_map! {
    /// Per-link receive sequence tracking.
    RXSEQ: Array<RxLinkState> = Array::pinned(MAX_LINKS, 0);
}

shared_map! {
    /// Dropped packets by `DropReason`.
    DROPS: PerCpuArray<u64> = PerCpuArray::pinned(DROP_REASON_COUNT, 0);
}

shared_map! {
    /// Anti-replay bitmap: word `(seq / REPLAY_BLOCK) % REPLAY_SLOTS` holds
    /// the tag of the block of global sequences it records (high half) and
    /// one bit per sequence of that block (low half). See `receive::accept_global_seq`.
    REPLAY: Array<u64> = Array::pinned(REPLAY_SLOTS, 0);
}

shared_map! {
    /// The anti-replay window's anchor (entry 0).
    REPLAY_STATE: Array<ReplayState> = Array::pinned(1, 0);
}

shared_map! {
    /// When each link's learned endpoint was last refreshed by a validated,
    /// fresh packet (`bpf_ktime_get_ns`; hub). The egress program sends to a
    /// learned endpoint only within `PEER_EXPIRY_NS` of it.
    PEER_SEEN: Array<u64> = Array::pinned(MAX_LINKS, 0);
}

shared_map! {
    /// Per link, the plausibility check of per-link sequences: a jump
    /// awaiting confirmation, and when the link's previous packet came.
    RXJUMP: Array<RxJump> = Array::pinned(MAX_LINKS, 0);
}

shared_map! {
    /// Per link, the data packets that arrived queued behind their
    /// predecessor: the link's capacity as the receiver sees it.
    RXQUEUED: Array<RxQueued> = Array::pinned(MAX_LINKS, 0);
}

shared_map! {
    /// Tracepoint field offsets for the sampling programs (entry 0).
    SAMPLE_CFG: Array<SampleConfig> = Array::pinned(1, 0);
}

shared_map! {
    /// Watched interfaces: NUL-padded name → slot.
    WATCH: HashMap<[u8; IFNAME_LEN], u32> = HashMap::pinned(SAMPLE_SLOTS, 0);
}

shared_map! {
    /// Packets queued on a watched interface, by skb address, until sent or
    /// dropped. LRU: an skb freed by a path neither tracepoint sees ages out.
    QUEUED: LruHashMap<u64, Queued> = LruHashMap::pinned(16_384, 0);
}

shared_map! {
    /// Host queueing delay histograms: slot × `DELAY_ROW` (buckets, then the sum in ns).
    QDELAY: PerCpuArray<u64> = PerCpuArray::pinned(SAMPLE_SLOTS * DELAY_ROW, 0);
}

shared_map! {
    /// Packets a watched interface's path dropped, by kernel reason: slot × `DROP_REASONS`.
    KDROPS: PerCpuArray<u64> = PerCpuArray::pinned(SAMPLE_SLOTS * DROP_REASONS, 0);
}

shared_map! {
    /// Packet authentication keys: slot `epoch & 1` holds that epoch's
    /// per-direction keys, so two epochs overlap during a rotation.
    AUTH_KEYS: Array<AuthKey> = Array::pinned(KEY_SLOTS, 0);
}

/// 8-byte words of [`AuthScratch`]: room for a load of up to
/// [`AUTH_MAX_LEN`] bytes after the authenticated header (the verifier sees
/// the egress load's bound, not the smaller length it is checked against),
/// plus a word so the last, partial word may be read whole.
pub(crate) const AUTH_WORDS: usize = (AUTH_MAX_LEN + AUTH_HEADER_LEN) / 8 + 2;
/// The longest Strata header + payload the kernel authenticates: 2 KiB,
/// beyond any link MTU the tunnel is sized for (1500-byte links; a jumbo
/// link's tunnel packets are refused with authentication on — see
/// `docs/WIRE.md`).
pub(crate) const AUTH_MAX_LEN: usize = 2048;

/// Per-CPU copy of the bytes a tag covers. The tag is computed over a copy
/// rather than the packet: `bpf_skb_load_bytes` reads non-linear skbs too,
/// and a map value is memory the verifier lets a loop index by a bounded
/// variable, which packet pointers (re-checked against `data_end` at every
/// access) make costly.
#[repr(C)]
pub(crate) struct AuthScratch {
    /// The packet's bytes from the Strata header on.
    pub(crate) buf: [u64; AUTH_WORDS],
}

#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(AUTH_SCRATCH))]
pub(crate) static AUTH_SCRATCH: PerCpuArray<AuthScratch> = PerCpuArray::with_max_entries(1, 0);
