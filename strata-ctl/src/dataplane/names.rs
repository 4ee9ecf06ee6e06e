//! The names of the kernel's maps, as declared in `strata-ebpf/src/maps.rs`.

#![allow(missing_docs)]
pub const CONFIG: &str = "STRATA_CONFIG";
pub const IFACES: &str = "STRATA_IFACES";
pub const LINKS: &str = "STRATA_LINKS";
pub const PEERS: &str = "STRATA_PEERS";
pub const SCHED: &str = "STRATA_SCHED";
pub const TXSEQ: &str = "STRATA_TXSEQ";
pub const TX: &str = "STRATA_TX";
pub const RX: &str = "STRATA_RX";
pub const RXSEQ: &str = "STRATA_RXSEQ";
pub const DROPS: &str = "STRATA_DROPS";
pub const DEDUP: &str = "STRATA_DEDUP";
pub const PACE: &str = "STRATA_PACE";
pub const SAMPLE_CFG: &str = "STRATA_SAMPLE_CFG";
pub const WATCH: &str = "STRATA_WATCH";
pub const QUEUED: &str = "STRATA_QUEUED";
pub const QDELAY: &str = "STRATA_QDELAY";
pub const KDROPS: &str = "STRATA_KDROPS";
/// Every map, for unpinning.
pub const ALL: [&str; 17] = [
    CONFIG, IFACES, LINKS, PEERS, SCHED, TXSEQ, TX, RX, RXSEQ, DROPS, DEDUP, PACE, SAMPLE_CFG, WATCH, QUEUED,
    QDELAY, KDROPS,
];
