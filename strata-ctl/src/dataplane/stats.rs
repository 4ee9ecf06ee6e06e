//! What the kernel counted: per-link and per-class traffic, receive-side
//! loss and reordering, learned peers and drops by reason — read from the maps of a
//! running data plane or from the pinned maps of one whose controller is gone.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use aya::maps::{Array, Map, MapData, PerCpuArray};
use serde::{Deserialize, Serialize};
use strata_common::{
    class::{CLASS_SLOTS, ClassCounters},
    drop::DropReason,
    maps::names as map_names,
    maps::{Endpoint, LinkCounters, LinkPace, MAX_LINKS, PEER_EXPIRY_NS, RxLinkState, RxQueued},
    wire::TrafficClass,
};

use crate::dataplane::error::{DatapathError, map_err};

/// One link's counters, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// Link id.
    pub id: u8,
    /// Packets sent.
    pub tx_packets: u64,
    /// Outer bytes sent.
    pub tx_bytes: u64,
    /// Data packets received (duplicates included).
    pub rx_packets: u64,
    /// Outer bytes received.
    pub rx_bytes: u64,
    /// Packets missing from this link's sequence.
    pub rx_lost: u64,
    /// Packets that arrived out of order on this link.
    pub rx_late: u64,
    /// Times the sender's link sequence restarted or jumped implausibly far
    /// ahead (confirmed by the packet after; not counted as loss).
    pub rx_restarts: u64,
    /// The link sequence after the highest received (highest + 1), 0 before
    /// any: what the hub acknowledges (`FeedbackPayload::next_seq`).
    pub rx_next_seq: u64,
    /// Packets sent on this link while every link was at its send budget.
    pub tx_overflow: u64,
    /// Sum of biased one-way delay samples, µs (see `RxLinkState`).
    pub owd_sum_us: u64,
    /// Samples in `owd_sum_us`.
    pub owd_count: u64,
    /// Outer bytes of the data packets that arrived queued behind their
    /// predecessor (see `RxQueued`).
    pub rx_queued_bytes: u64,
    /// Their arrival gaps summed, µs: the time the link was seen busy.
    pub rx_queued_us: u64,
    /// The peer endpoint, `1.2.3.4:7400` or `[2001:db8::2]:7400`
    /// (`0.0.0.0:0` if unknown, or learned and expired: not refreshed by a
    /// validated packet within `PEER_EXPIRY_NS`, so the kernel no longer
    /// sends to it).
    pub peer: String,
    /// The peer's address, of its family (IPv4 unspecified if unknown).
    #[serde(skip)]
    pub peer_ip: IpAddr,
}

/// One delivery class's counters, summed over CPUs: inner packets this
/// side sent into the tunnel (egress) and delivered out of it (ingress).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassStats {
    /// `critical`, `video` or `best_effort` ([`TrafficClass::name`]).
    pub class: String,
    /// Inner packets sent (handed to a link).
    pub tx_packets: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Inner packets delivered to the tunnel device.
    pub rx_packets: u64,
    /// Inner bytes delivered.
    pub rx_bytes: u64,
    /// Inner packets dropped before sending because no link was expected
    /// to deliver them within the class's deadline (`drop_late`).
    #[serde(default)]
    pub shed_packets: u64,
    /// Inner bytes of those.
    #[serde(default)]
    pub shed_bytes: u64,
}

/// Everything counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Per link id.
    pub links: Vec<LinkStats>,
    /// Non-zero drop counters by reason name.
    pub drops: Vec<(String, u64)>,
    /// Per delivery class, in [`TrafficClass::ALL`]'s order (critical,
    /// video, best effort); empty when reading the pins of a build before
    /// classes.
    pub classes: Vec<ClassStats>,
}

impl Snapshot {
    /// Total packets dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops.iter().find(|(n, _)| n == reason.name()).map_or(0, |(_, c)| *c)
    }

    /// A fixed-width table of the links in `ids` (all active ones if empty).
    pub fn table(&self, ids: &[u8]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<5} {:>10} {:>12} {:>10} {:>12} {:>8} {:>8}  peer",
            "link", "tx_pkts", "tx_bytes", "rx_pkts", "rx_bytes", "lost", "late"
        );
        for l in &self.links {
            let active = l.tx_packets + l.rx_packets > 0;
            if (ids.is_empty() && !active) || (!ids.is_empty() && !ids.contains(&l.id)) {
                continue;
            }
            let _ = writeln!(
                out,
                "{:<5} {:>10} {:>12} {:>10} {:>12} {:>8} {:>8}  {}",
                l.id, l.tx_packets, l.tx_bytes, l.rx_packets, l.rx_bytes, l.rx_lost, l.rx_late, l.peer
            );
        }
        if !self.classes.is_empty() {
            let list: Vec<String> = self
                .classes
                .iter()
                .map(|c| format!("{}={}/{}", c.class, c.tx_packets, c.rx_packets))
                .collect();
            let _ = writeln!(out, "classes (sent/delivered packets): {}", list.join(" "));
        }
        out.push_str(&drops_line(&self.drops));
        out
    }
}

/// `drops: reason=count …` (or `drops: none`), one line.
pub fn drops_line(drops: &[(String, u64)]) -> String {
    if drops.is_empty() {
        return "drops: none\n".to_string();
    }
    let list: Vec<String> = drops.iter().map(|(n, c)| format!("{n}={c}")).collect();
    format!("drops: {}\n", list.join(" "))
}

/// Reads a snapshot through `maps` (name → map).
pub fn read<'a>(maps: &dyn Fn(&str) -> Option<&'a Map>) -> Result<Snapshot, DatapathError> {
    let get = |name: &str| {
        maps(name).ok_or_else(|| DatapathError::Map {
            what: format!("map {name}"),
            source: aya::maps::MapError::InvalidName { name: name.into() },
        })
    };
    let tx: PerCpuArray<&MapData, LinkCounters> =
        PerCpuArray::try_from(get(map_names::TX)?).map_err(map_err("map STRATA_TX"))?;
    let rx: PerCpuArray<&MapData, LinkCounters> =
        PerCpuArray::try_from(get(map_names::RX)?).map_err(map_err("map STRATA_RX"))?;
    let rxseq: Array<&MapData, RxLinkState> =
        Array::try_from(get(map_names::RXSEQ)?).map_err(map_err("map STRATA_RXSEQ"))?;
    let peers: Array<&MapData, Endpoint> =
        Array::try_from(get(map_names::PEERS)?).map_err(map_err("map STRATA_PEERS"))?;
    // Absent in the pins of a build before IPv6 carriers: every peer IPv4.
    let peers6: Option<Array<&MapData, [u32; 4]>> = match maps(map_names::PEERS6) {
        Some(m) => Some(Array::try_from(m).map_err(map_err("map STRATA_PEERS6"))?),
        None => None,
    };
    // Absent in the pins of a build before learned peers expired.
    let seen: Option<Array<&MapData, u64>> = match maps(map_names::PEER_SEEN) {
        Some(m) => Some(Array::try_from(m).map_err(map_err("map STRATA_PEER_SEEN"))?),
        None => None,
    };
    // Absent in the pins of a build before queued arrivals were counted.
    let queued: Option<Array<&MapData, RxQueued>> = match maps(map_names::RXQUEUED) {
        Some(m) => Some(Array::try_from(m).map_err(map_err("map STRATA_RXQUEUED"))?),
        None => None,
    };
    let now_ns = monotonic_ns();
    let drops: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(get(map_names::DROPS)?).map_err(map_err("map STRATA_DROPS"))?;
    let pace: Array<&MapData, LinkPace> =
        Array::try_from(get(map_names::PACE)?).map_err(map_err("map STRATA_PACE"))?;
    let classes = match (maps(map_names::CLASS_TX), maps(map_names::CLASS_RX)) {
        (Some(tx), Some(rx)) => read_classes(tx, rx, maps(map_names::CLASS_SHED))?,
        // The pins of a build before classes.
        _ => Vec::new(),
    };

    let sum = |map: &PerCpuArray<&MapData, LinkCounters>, i: u32| {
        map.get(&i, 0).map_err(map_err("reading link counters")).map(|values| {
            values.iter().fold(LinkCounters::default(), |a, v| LinkCounters {
                packets: a.packets + v.packets,
                bytes: a.bytes + v.bytes,
            })
        })
    };
    let mut links = Vec::with_capacity(MAX_LINKS as usize);
    for i in 0..MAX_LINKS {
        let t = sum(&tx, i)?;
        let r = sum(&rx, i)?;
        let s = rxseq.get(&i, 0).map_err(map_err("reading STRATA_RXSEQ"))?;
        let p = peers.get(&i, 0).map_err(map_err("reading STRATA_PEERS"))?;
        let pacing = pace.get(&i, 0).map_err(map_err("reading STRATA_PACE"))?;
        let p6 = match &peers6 {
            Some(m) => m.get(&i, 0).map_err(map_err("reading STRATA_PEERS6"))?,
            None => [0; 4],
        };
        let seen_ns = match &seen {
            Some(m) => m.get(&i, 0).map_err(map_err("reading STRATA_PEER_SEEN"))?,
            None => 0,
        };
        let q = match &queued {
            Some(m) => m.get(&i, 0).map_err(map_err("reading STRATA_RXQUEUED"))?,
            None => RxQueued::default(),
        };
        let peer = p.socket_addr(p6).filter(|_| !expired(seen_ns, now_ns));
        let peer_ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        links.push(LinkStats {
            id: i as u8,
            tx_packets: t.packets,
            tx_bytes: t.bytes,
            rx_packets: r.packets,
            rx_bytes: r.bytes,
            rx_lost: s.lost,
            rx_late: s.late,
            rx_restarts: s.restarts,
            rx_next_seq: if s.started != 0 { u64::from(s.highest) + 1 } else { 0 },
            tx_overflow: pacing.overflow,
            owd_sum_us: s.owd_sum_us,
            owd_count: s.owd_count,
            rx_queued_bytes: q.queued_bytes,
            rx_queued_us: q.queued_us,
            peer: peer.map_or_else(|| "0.0.0.0:0".to_string(), |a| a.to_string()),
            peer_ip,
        });
    }
    let mut dropped = Vec::new();
    for reason in DropReason::ALL {
        let values = match drops.get(&(reason as u32), 0) {
            Ok(values) => values,
            // A drop map pinned by a build that had fewer reasons (adopted
            // in place): the kernel cannot count the newer ones in it
            // either, so there is nothing to read.
            Err(aya::maps::MapError::OutOfBounds { .. } | aya::maps::MapError::KeyNotFound) => continue,
            Err(e) => return Err(map_err("reading STRATA_DROPS")(e)),
        };
        let total: u64 = values.iter().sum();
        if total > 0 {
            dropped.push((reason.name().to_string(), total));
        }
    }
    Ok(Snapshot { links, drops: dropped, classes })
}

/// The per-class counters of the maps `tx`, `rx` and `shed` (absent in the
/// pins of a build before class deadlines), summed over CPUs; the reserved
/// class's slot (a peer's class bits 3) counted as best effort.
fn read_classes(tx: &Map, rx: &Map, shed: Option<&Map>) -> Result<Vec<ClassStats>, DatapathError> {
    let tx: PerCpuArray<&MapData, ClassCounters> =
        PerCpuArray::try_from(tx).map_err(map_err("map STRATA_CLASS_TX"))?;
    let rx: PerCpuArray<&MapData, ClassCounters> =
        PerCpuArray::try_from(rx).map_err(map_err("map STRATA_CLASS_RX"))?;
    let shed: Option<PerCpuArray<&MapData, ClassCounters>> = match shed {
        Some(m) => Some(PerCpuArray::try_from(m).map_err(map_err("map STRATA_CLASS_SHED"))?),
        None => None,
    };
    let mut out: Vec<ClassStats> = TrafficClass::ALL
        .iter()
        .map(|c| ClassStats { class: c.name().into(), ..ClassStats::default() })
        .collect();
    for slot in 0..CLASS_SLOTS {
        let name = TrafficClass::from_bits(slot as u8).name();
        let sum = |map: &PerCpuArray<&MapData, ClassCounters>| {
            map.get(&slot, 0)
                .map_err(map_err("reading class counters"))
                .map(|values| values.iter().fold((0, 0), |(p, b), v| (p + v.packets, b + v.bytes)))
        };
        let (tx_packets, tx_bytes) = sum(&tx)?;
        let (rx_packets, rx_bytes) = sum(&rx)?;
        let (shed_packets, shed_bytes) = match &shed {
            Some(m) => sum(m)?,
            None => (0, 0),
        };
        if let Some(c) = out.iter_mut().find(|c| c.class == name) {
            c.tx_packets += tx_packets;
            c.tx_bytes += tx_bytes;
            c.rx_packets += rx_packets;
            c.rx_bytes += rx_bytes;
            c.shed_packets += shed_packets;
            c.shed_bytes += shed_bytes;
        }
    }
    Ok(out)
}

/// A learned endpoint last refreshed at `seen_ns` (0: never learned by the
/// kernel — the edge's configured peers) has expired at `now_ns`, as the
/// egress program judges it (`schedule::fresh_peers`).
fn expired(seen_ns: u64, now_ns: u64) -> bool {
    seen_ns != 0 && now_ns.saturating_sub(seen_ns) > PEER_EXPIRY_NS
}

/// CLOCK_MONOTONIC now, ns: the clock of `bpf_ktime_get_ns`.
pub(crate) fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// Reads the maps pinned under `dir` by a running (or crashed) daemon.
pub fn read_pinned(dir: &Path) -> Result<Snapshot, DatapathError> {
    let mut maps = Vec::new();
    for name in [
        map_names::TX,
        map_names::RX,
        map_names::RXSEQ,
        map_names::PEERS,
        map_names::PEERS6,
        map_names::PEER_SEEN,
        map_names::DROPS,
        map_names::PACE,
        map_names::CLASS_TX,
        map_names::CLASS_RX,
        map_names::CLASS_SHED,
    ] {
        let path = dir.join(name);
        let optional = [
            map_names::PEERS6,
            map_names::PEER_SEEN,
            map_names::CLASS_TX,
            map_names::CLASS_RX,
            map_names::CLASS_SHED,
        ];
        if optional.contains(&name) && !path.exists() {
            continue;
        }
        let data = MapData::from_pin(&path).map_err(map_err(format!("opening {}", path.display())))?;
        let map = Map::from_map_data(data).map_err(map_err(format!("opening {}", path.display())))?;
        maps.push((name, map));
    }
    read(&|name| maps.iter().find(|(n, _)| *n == name).map(|(_, m)| m))
}
