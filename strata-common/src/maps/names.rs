//! The names the kernel's maps are pinned and looked up by.
//!
//! A map's name is a contract between two binaries: the eBPF object exports
//! each map as an ELF symbol of that name (and pins it under it), and the
//! controller finds the map — in the loaded object or in the pin directory —
//! by the same string. A typo on either side is not a compile error but a
//! missing map at run time, so each name is written exactly once, in
//! [`map_name!`](crate::map_name):
//!
//! * the eBPF crate puts `map_name!(CONFIG)` into the `export_name` attribute
//!   of its `CONFIG` static (an attribute needs a literal, which a macro can
//!   give and a `const` cannot);
//! * userspace uses the constants below, each of which is that macro's
//!   literal.
//!
//! Each constant has the identifier of the kernel's static for that map.

/// The name of the kernel map whose static (and constant in this module) is
/// `$map`, as a string literal — usable where only a literal will do, such
/// as `#[unsafe(export_name = ...)]`. An unknown map is a compile error.
#[macro_export]
macro_rules! map_name {
    (CONFIG) => {
        "STRATA_CONFIG"
    };
    (IFACES) => {
        "STRATA_IFACES"
    };
    (LINKS) => {
        "STRATA_LINKS"
    };
    (PEERS) => {
        "STRATA_PEERS"
    };
    (LINKS6) => {
        "STRATA_LINKS6"
    };
    (CONFIG6) => {
        "STRATA_CONFIG6"
    };
    (PEERS6) => {
        "STRATA_PEERS6"
    };
    (SCRATCH) => {
        "STRATA_SCRATCH"
    };
    (SCHED) => {
        "STRATA_SCHED"
    };
    (TXSEQ) => {
        "STRATA_TXSEQ"
    };
    (PACE) => {
        "STRATA_PACE"
    };
    (SENT) => {
        "STRATA_SENT"
    };
    (TX) => {
        "STRATA_TX"
    };
    (RX) => {
        "STRATA_RX"
    };
    (RXSEQ) => {
        "STRATA_RXSEQ"
    };
    (DROPS) => {
        "STRATA_DROPS"
    };
    (DEDUP) => {
        "STRATA_DEDUP"
    };
    (REPLAY) => {
        "STRATA_REPLAY"
    };
    (REPLAY_STATE) => {
        "STRATA_REPLAY_STATE"
    };
    (PEER_SEEN) => {
        "STRATA_PEER_SEEN"
    };
    (RXJUMP) => {
        "STRATA_RXJUMP"
    };
    (RXQUEUED) => {
        "STRATA_RXQUEUED"
    };
    (SAMPLE_CFG) => {
        "STRATA_SAMPLE_CFG"
    };
    (WATCH) => {
        "STRATA_WATCH"
    };
    (QUEUED) => {
        "STRATA_QUEUED"
    };
    (QDELAY) => {
        "STRATA_QDELAY"
    };
    (KDROPS) => {
        "STRATA_KDROPS"
    };
    (AUTH_KEYS) => {
        "STRATA_AUTH_KEYS"
    };
    (AUTH_SCRATCH) => {
        "STRATA_AUTH_SCRATCH"
    };
    (CLASSES) => {
        "STRATA_CLASSES"
    };
    (CLASS_TX) => {
        "STRATA_CLASS_TX"
    };
    (CLASS_RX) => {
        "STRATA_CLASS_RX"
    };
    (CLASS_DEADLINE) => {
        "STRATA_CLASS_DEADLINE"
    };
    (CLASS_SHED) => {
        "STRATA_CLASS_SHED"
    };
}

/// Tunnel-wide configuration ([`TunnelConfig`](super::TunnelConfig), entry 0).
pub const CONFIG: &str = map_name!(CONFIG);
/// Link-layer header length of each interface ingress is attached to, by ifindex.
pub const IFACES: &str = map_name!(IFACES);
/// How to send on each link ([`LinkTx`](super::LinkTx)).
pub const LINKS: &str = map_name!(LINKS);
/// The far end of each link ([`Endpoint`](super::Endpoint)).
pub const PEERS: &str = map_name!(PEERS);
/// The local IPv6 address tunnel packets over IPv6 carriers are addressed
/// to (entry 0, network order words; all zero: any) — the IPv6 sibling of
/// [`TunnelConfig::local_ip_be`](super::TunnelConfig::local_ip_be), in a map
/// of its own so `TunnelConfig` and a pinned map of it keep their layout.
pub const CONFIG6: &str = map_name!(CONFIG6);
/// Each link's IPv6 source and next hop ([`LinkTx6`](super::LinkTx6)).
pub const LINKS6: &str = map_name!(LINKS6);
/// The IPv6 address of each link's far end, when its
/// [`Endpoint::family`](super::Endpoint::family) is IPv6 (network order words).
pub const PEERS6: &str = map_name!(PEERS6);
/// The egress program's per-CPU scratch space (not pinned: nothing survives a packet).
pub const SCRATCH: &str = map_name!(SCRATCH);
/// The double-buffered link schedule ([`Schedule`](super::Schedule)).
pub const SCHED: &str = map_name!(SCHED);
/// Sender sequence counters ([`TxSeq`](super::TxSeq), entry 0).
pub const TXSEQ: &str = map_name!(TXSEQ);
/// Per-link pacing state ([`LinkPace`](super::LinkPace)).
pub const PACE: &str = map_name!(PACE);
/// Per link and packet, the link's cumulative sent bytes before it (see
/// [`SENT_RING`](super::SENT_RING)).
pub const SENT: &str = map_name!(SENT);
/// Sent packets and bytes per link (per CPU).
pub const TX: &str = map_name!(TX);
/// Received data packets and bytes per link (per CPU).
pub const RX: &str = map_name!(RX);
/// Per-link receive sequence tracking ([`RxLinkState`](super::RxLinkState)).
pub const RXSEQ: &str = map_name!(RXSEQ);
/// Dropped packets by [`DropReason`](crate::drop::DropReason) (per CPU).
pub const DROPS: &str = map_name!(DROPS);
/// The duplicate-suppression window of builds before the anti-replay
/// window; no longer loaded, named so that unpinning removes a pin one left.
pub const DEDUP: &str = map_name!(DEDUP);
/// The anti-replay bitmap (see [`REPLAY_SLOTS`](super::REPLAY_SLOTS)).
pub const REPLAY: &str = map_name!(REPLAY);
/// The anti-replay window's anchor ([`ReplayState`](super::ReplayState)).
pub const REPLAY_STATE: &str = map_name!(REPLAY_STATE);
/// When each link's learned endpoint was last refreshed (`bpf_ktime_get_ns`).
pub const PEER_SEEN: &str = map_name!(PEER_SEEN);
/// Per link, the plausibility check of per-link sequences ([`RxJump`](super::RxJump)).
pub const RXJUMP: &str = map_name!(RXJUMP);
/// Per link, the arrivals queued behind their predecessor ([`RxQueued`](super::RxQueued)).
pub const RXQUEUED: &str = map_name!(RXQUEUED);
/// Tracepoint field offsets of the sampling programs ([`SampleConfig`](super::SampleConfig)).
pub const SAMPLE_CFG: &str = map_name!(SAMPLE_CFG);
/// Watched interfaces: NUL-padded name → sampling slot.
pub const WATCH: &str = map_name!(WATCH);
/// Packets queued on a watched interface, by skb address ([`Queued`](super::Queued)).
pub const QUEUED: &str = map_name!(QUEUED);
/// Host queueing-delay histograms (see [`crate::histogram`]).
pub const QDELAY: &str = map_name!(QDELAY);
/// Kernel drops on watched interfaces, by reason.
pub const KDROPS: &str = map_name!(KDROPS);

/// The packet authentication keys: two epochs ([`AuthKey`](crate::auth::AuthKey), by `epoch & 1`).
pub const AUTH_KEYS: &str = map_name!(AUTH_KEYS);
/// Per-CPU copy of a packet being authenticated (not pinned: nothing survives a packet).
pub const AUTH_SCRATCH: &str = map_name!(AUTH_SCRATCH);

/// The classification table ([`ClassTable`](crate::class::ClassTable), entry 0).
pub const CLASSES: &str = map_name!(CLASSES);
/// Sent inner packets and bytes per class ([`ClassCounters`](crate::class::ClassCounters), per CPU).
pub const CLASS_TX: &str = map_name!(CLASS_TX);
/// Delivered inner packets and bytes per class (per CPU).
pub const CLASS_RX: &str = map_name!(CLASS_RX);
/// Each class's share of the deadline, per mille (u32 by class bits; see
/// [`class_deadline_ns`](crate::class::class_deadline_ns)).
pub const CLASS_DEADLINE: &str = map_name!(CLASS_DEADLINE);
/// Inner packets and bytes dropped as late, per class (per CPU).
pub const CLASS_SHED: &str = map_name!(CLASS_SHED);

/// Every map, for unpinning.
pub const ALL: [&str; 32] = [
    CONFIG,
    IFACES,
    LINKS,
    PEERS,
    CONFIG6,
    LINKS6,
    PEERS6,
    SCHED,
    TXSEQ,
    PACE,
    SENT,
    TX,
    RX,
    RXSEQ,
    DROPS,
    DEDUP,
    REPLAY,
    REPLAY_STATE,
    PEER_SEEN,
    RXJUMP,
    RXQUEUED,
    SAMPLE_CFG,
    WATCH,
    QUEUED,
    QDELAY,
    KDROPS,
    AUTH_KEYS,
    CLASSES,
    CLASS_TX,
    CLASS_RX,
    CLASS_DEADLINE,
    CLASS_SHED,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_prefixed() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(a.starts_with("STRATA_"), "{a}");
            assert!(ALL[i + 1..].iter().all(|b| a != b), "{a} twice");
        }
    }
}
