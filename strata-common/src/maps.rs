//! Map keys and values shared by the kernel programs and the controller.
//!
//! Direction of each map:
//!
//! | map             | written by                 | read by          |
//! |-----------------|----------------------------|------------------|
//! | `STRATA_CONFIG` | controller                 | both programs    |
//! | `STRATA_LINKS`  | controller                 | egress           |
//! | `STRATA_PEERS`  | controller (edge) / ingress learning (hub) | egress |
//! | `STRATA_SCHED`  | controller (double-buffered) | egress         |
//! | `STRATA_TXSEQ`  | egress (atomics); controller seeds it | egress |
//! | `STRATA_PACE`   | egress                     | egress, controller |
//! | `STRATA_SENT`   | egress                     | egress           |
//! | `STRATA_TX`, `STRATA_RX`, `STRATA_DROPS`, `STRATA_RXSEQ` | kernel | controller |
//! | `STRATA_REPLAY`, `STRATA_REPLAY_STATE` | ingress | ingress      |
//! | `STRATA_PEER_SEEN` | ingress learning (hub)  | egress, controller |
//! | `STRATA_RXJUMP` | ingress                    | ingress          |
//! | `STRATA_RXQUEUED` | ingress                  | controller (hub) |
//! | `STRATA_AUTH_KEYS` | controller (handshake)  | both programs    |
//!
//! All multi-byte address and port fields are in network byte order, as the
//! kernel writes them into packets; everything else is host order.
//!
//! The maps' names are in [`names`].

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::budget;

pub mod names;

/// Largest number of links a tunnel bonds.
pub const MAX_LINKS: u32 = 8;
/// Slots in a link schedule (see [`Schedule`]).
pub const SCHEDULE_SLOTS: usize = 256;
/// Global sequences one word of the anti-replay bitmap covers: a 64-bit
/// word holds the block's first sequence (its tag) in the high half and one
/// bit per sequence in the low half, so a word is claimed for a new block
/// and marked with one compare-and-swap (see `strata-ebpf/src/receive.rs`).
pub const REPLAY_BLOCK: u32 = 32;
/// Words of the anti-replay bitmap (a power of two; the `STRATA_REPLAY` map).
pub const REPLAY_SLOTS: u32 = 2048;
/// How far behind the highest accepted global sequence a packet may arrive
/// and still be checked exactly (65 504 packets): one block less than the
/// bitmap holds, so the oldest block in the window never shares a word with
/// the newest. Large enough for the reordering of links whose delays differ
/// by a second at 600 Mbit/s of 1 300-byte packets (~58 000 packets/s), or
/// by 2 s at 300 Mbit/s; a cellular queue a second longer than its sibling's
/// is common, several seconds is a link the controller already sends little
/// on. Older packets are dropped as `too_old`. The map is 16 KiB.
pub const REPLAY_WINDOW: u32 = (REPLAY_SLOTS - 1) * REPLAY_BLOCK;
/// A global sequence further behind the highest accepted than this is not a
/// late packet (no queue holds 16 million packets) but a sender that
/// restarted at a random sequence, or a forgery: it is handled as a jump
/// needing confirmation (`seq_jump`), not dropped as `too_old` for ever.
pub const REPLAY_RESTART_DISTANCE: u32 = 1 << 24;
/// Nanoseconds without an accepted data packet after which a packet behind
/// the window is taken as a possible restart too (a sender that restarted
/// and drew a sequence just behind the window, 0.4 % of restarts), rather
/// than as too old. Packets from a live sender arrive every few
/// milliseconds; a sender that restarts is silent for longer than this.
pub const REPLAY_QUIET_NS: u64 = 1_000_000_000;
/// A link's per-link sequence that jumps back further than this is taken as a
/// restarted sender rather than a reordered packet.
pub const LINK_SEQ_RESTART_DISTANCE: i32 = 1 << 16;
/// A link's per-link sequence may jump ahead by this much at once, plus
/// what the link could have carried since its previous packet (see
/// [`LINK_NS_PER_PACKET_MIN`] and `seq::plausible_link_jump`), and count the
/// gap as loss. 16 384 packets are 1.6 s of a link carrying 10 000
/// packets/s (~100 Mbit/s) with no silence to show for it. A longer jump (a
/// restarted sender, or a forged packet: one 2^31 ahead used to add 2·10^9
/// to the loss and demote the link) is not loss: it is counted in
/// `RxLinkState::restarts` once the link's next packet confirms it, and
/// never moves the link's highest sequence before.
pub const LINK_SEQ_JUMP_DISTANCE: i32 = 1 << 14;
/// The fastest a link is taken to send, ns per packet (100 000 packets/s,
/// ~1 Gbit/s of 1 300-byte packets — no cellular link comes close): a link
/// silent for `t` may show a gap of up to `t / LINK_NS_PER_PACKET_MIN` more
/// packets and have them counted as lost (an outage the sender kept sending
/// into, as under static weights it does for the whole outage).
pub const LINK_NS_PER_PACKET_MIN: u64 = 10_000;
/// Nanoseconds after which a learned peer endpoint that no validated,
/// fresh packet refreshed is no longer sent to (hub). The edge probes every
/// link several times a second, so a live link refreshes it constantly; an
/// endpoint learned from one packet (a forgery, or a link the car stopped
/// using) stops receiving the link's share after this.
pub const PEER_EXPIRY_NS: u64 = 30_000_000_000;
/// Refresh a learned endpoint's last-seen time at most this often, ns:
/// one store per packet to a line every CPU reads would cost more than the
/// precision is worth.
pub const PEER_REFRESH_NS: u64 = 100_000_000;
/// Bias added to every one-way delay sample in `RxLinkState::owd_sum_us`, µs,
/// so samples from a receiver whose clock is behind the sender's stay
/// positive; subtract it from the mean.
pub const OWD_BIAS_US: i64 = 30_000_000;

/// [`TunnelConfig::flags`]: the controller has written the configuration;
/// until then egress drops (`no_config`) and ingress lets everything pass.
pub const CONFIG_READY: u32 = 1 << 1;

/// [`TunnelConfig::flags`]: learn each link's peer endpoint from received
/// packets (the hub, whose edge sits behind carrier NAT).
pub const CONFIG_LEARN_PEERS: u32 = 1 << 0;

/// [`TunnelConfig::flags`]: choose each packet's link by earliest expected
/// arrival among the links still within their send budget (the pacing fields
/// of [`LinkTx`]), falling back to the weighted [`Schedule`] only when every
/// link is at its budget. Clear: the schedule alone decides (static weights).
pub const CONFIG_EARLIEST_ARRIVAL: u32 = 1 << 2;

/// [`TunnelConfig::flags`]: every received packet must carry a valid tag
/// (`crate::auth`); one without (`auth_missing`) or with a wrong one
/// (`auth_bad`) is dropped before anything is learned or counted. Clear: a
/// tagged packet whose key phase has a key installed is still verified (and
/// dropped if wrong), anything else is accepted as before authentication
/// existed. Sending does not depend on it: the egress program tags every
/// packet while a key is installed for sending (`STRATA_AUTH_KEYS`).
pub const CONFIG_AUTH_REQUIRED: u32 = 1 << 3;

/// [`LinkTx::flags`]: the link may carry traffic.
pub const LINK_ENABLED: u32 = 1 << 0;

/// [`LinkTx::flags`]: [`LinkTx::acked_seq`] and [`LinkTx::ack_anchor_ns`]
/// hold a fresh acknowledgement from the receiver, so the kernel measures
/// the link's backlog instead of only modelling it.
pub const LINK_ACKED: u32 = 1 << 1;

/// [`LinkTx::flags`], with [`LINK_ACKED`]: the drain rate is only a lower
/// bound on what the link carries (it was not seen full lately), so the
/// backlog measured with it is an upper bound. The kernel steers by it but
/// does not drop a packet as late on it alone.
pub const LINK_DRAIN_LOWER_BOUND: u32 = 1 << 2;

/// [`LinkTx::flags`]: the link has an IPv6 source (its [`LinkTx6`] entry)
/// and may send to IPv6 peers.
pub const LINK_V6: u32 = 1 << 3;

/// Packets per link whose cumulative sent bytes `STRATA_SENT` remembers: an
/// acknowledgement further behind than this says only that the link is
/// hopelessly backlogged. 4 096 packets are 2 s of a 20 Mbit/s link in
/// 1 300-byte packets, ten times the acknowledgement's usual age.
pub const SENT_RING: u32 = 4096;

/// The longest backlog a measurement reports, ns: an acknowledgement more
/// than [`SENT_RING`] packets behind says only "hopelessly backlogged", and
/// a bound keeps the arrival sums far from overflowing.
pub const MEASURED_BACKLOG_MAX_NS: u64 = 10_000_000_000;

/// How long past its anchor an acknowledgement stays evidence, ns. The
/// controller refreshes it every feedback interval (50 ms) and withdraws it
/// after its `ACK_STALE` (500 ms) without progress; one left in the map by a
/// controller that stopped writing (killed, restarting, upgrading) would
/// otherwise price every packet sent since as backlog for as long as no
/// daemon runs. Past this the modelled backlog decides, as at warm-up: the
/// data plane outlives the daemon without its decisions outliving their
/// evidence. 2 s leaves room for base round trips of over a second.
pub const ACK_EXPIRY_NS: u64 = 2_000_000_000;

/// Tunnel-wide settings (single entry at index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Session id every packet must carry.
    pub session: u32,
    /// `CONFIG_*` bits.
    pub flags: u32,
    /// Index of the tunnel device where decapsulated packets are delivered.
    pub tunnel_ifindex: u32,
    /// Length of the link-layer header on the tunnel device (0 for TUN).
    pub tunnel_l2_len: u32,
    /// Local IPv4 address tunnel packets are addressed to, big endian (0: any).
    pub local_ip_be: u32,
    /// Local UDP port tunnel packets are addressed to, big endian.
    pub local_port_be: u16,
    /// Explicit padding.
    pub _pad: u16,
    /// One-way delay budget, µs: under earliest arrival, a packet no link is
    /// expected to deliver within it is dropped before sending (counted as
    /// `deadline`). 0: no deadline.
    pub deadline_us: u32,
}

/// How to send on one link (index = link id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkTx {
    /// `LINK_*` bits.
    pub flags: u32,
    /// Interface the link's packets leave through.
    pub ifindex: u32,
    /// The link's own IPv4 address (outer source), big endian.
    pub src_ip_be: u32,
    /// Next hop on that interface, big endian (0: the kernel looks it up with
    /// the interface as output device).
    pub nexthop_be: u32,
    /// The link's own UDP port (outer source), big endian.
    pub src_port_be: u16,
    /// MTU of the interface; larger outer packets are not sent on this link.
    pub mtu: u16,
    /// Link-layer header length of the interface (14 for Ethernet, 0 for raw IP).
    pub l2_len: u32,
    /// Send budget as a rate: picoseconds of link time each byte costs
    /// (8e6 / Mbit/s). 0: the link has no budget and is chosen by the
    /// schedule only.
    pub ps_per_byte: u32,
    /// Expected one-way delay of an idle link, µs; the link's own backlog
    /// (see [`LinkPace`]) is added per packet.
    pub delay_us: u32,
    /// Backlog the budget allows, µs of link time: a link whose backlog is
    /// larger takes no more packets while another link has room.
    pub backlog_limit_us: u32,
    /// With [`LINK_ACKED`]: the per-link sequence after the highest the
    /// receiver had received (`FeedbackPayload::next_seq`, low 32 bits).
    pub acked_seq: u32,
    /// With [`LINK_ACKED`]: the rate the link drains at, as its estimated
    /// capacity, in the units of `ps_per_byte`. The budget rate may differ
    /// on purpose — above the estimate while the controller probes for more,
    /// below it while a queue drains — but a backlog empties at what the
    /// link carries: priced at the budget rate, a probing link's backlog
    /// read a third short and its packets arrived late (lab,
    /// steady-asymmetric: p95 160 ms against predicted arrivals within 150).
    pub drain_ps_per_byte: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// With [`LINK_ACKED`]: kernel time (`bpf_ktime_get_ns`) by which the
    /// link's bottleneck had finished sending everything before
    /// `acked_seq` — the acknowledgement's arrival less the link's base
    /// round trip. Everything sent since then drains from there at the
    /// budget rate, so the backlog a packet meets now is
    /// `ack_anchor_ns + transmit(bytes sent from acked_seq on) − now`.
    pub ack_anchor_ns: u64,
}

/// How link `id` sends to an IPv6 peer (index = link id; used only with
/// [`LINK_V6`]). A sibling of [`LinkTx`] rather than more fields in it: the
/// egress program copies a `LinkTx` per candidate link while choosing, and
/// 32 more bytes each overflowed its 512-byte stack; this entry is read once,
/// for the chosen link, and only for IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkTx6 {
    /// The link's own IPv6 address (outer source), network order.
    pub src_ip6_be: [u32; 4],
    /// IPv6 next hop on the interface, network order (all zero: the kernel
    /// looks it up, as for [`LinkTx::nexthop_be`]).
    pub nexthop6_be: [u32; 4],
}

impl LinkTx6 {
    /// Sending from `source` through `next_hop` (`None`: the kernel looks it up).
    pub const fn new(source: Ipv6Addr, next_hop: Option<Ipv6Addr>) -> Self {
        Self {
            src_ip6_be: ip6_words(source),
            nexthop6_be: match next_hop {
                Some(hop) => ip6_words(hop),
                None => [0; 4],
            },
        }
    }
}

impl LinkTx {
    /// How to send on a link: out of interface `ifindex` (MTU `mtu`, clamped
    /// to the field's 65 535; link-layer header `l2_len` bytes) from
    /// `source`:`port`, through `next_hop` (`None`: the kernel looks the next
    /// hop up). Only an `enabled` link carries traffic. No send budget (see
    /// [`with_budget`](Self::with_budget)). Addresses and port are given in
    /// host order and stored in network order.
    pub const fn new(
        enabled: bool,
        ifindex: u32,
        source: Ipv4Addr,
        next_hop: Option<Ipv4Addr>,
        port: u16,
        mtu: u32,
        l2_len: u32,
    ) -> Self {
        Self {
            flags: if enabled { LINK_ENABLED } else { 0 },
            ifindex,
            src_ip_be: source.to_bits().to_be(),
            nexthop_be: match next_hop {
                Some(hop) => hop.to_bits().to_be(),
                None => 0,
            },
            src_port_be: port.to_be(),
            mtu: if mtu > u16::MAX as u32 { u16::MAX } else { mtu as u16 },
            l2_len,
            ps_per_byte: 0,
            delay_us: 0,
            backlog_limit_us: 0,
            acked_seq: 0,
            drain_ps_per_byte: 0,
            _pad: 0,
            ack_anchor_ns: 0,
        }
    }

    /// This link able to reach IPv6 peers: its [`LinkTx6`] entry holds its
    /// IPv6 source (write that first).
    pub const fn with_v6(self) -> Self {
        Self { flags: self.flags | LINK_V6, ..self }
    }

    /// The link can reach IPv6 peers.
    #[inline(always)]
    pub const fn has_v6(&self) -> bool {
        self.flags & LINK_V6 != 0
    }

    /// This link with a send budget of `bytes_per_s`, an idle one-way delay
    /// of `delay_us` and a backlog limit of `backlog_limit_us` (see
    /// [`budget`] for the units). A rate of 0 is no budget: the link is left
    /// as it is, to be chosen by the schedule only.
    pub const fn with_budget(self, bytes_per_s: u64, delay_us: u32, backlog_limit_us: u32) -> Self {
        if bytes_per_s == 0 {
            return self;
        }
        Self { ps_per_byte: budget::ps_per_byte(bytes_per_s), delay_us, backlog_limit_us, ..self }
    }

    /// This link with the receiver's acknowledgement: it had received every
    /// link sequence before `next_seq`, and the link's bottleneck had sent
    /// them by kernel time `anchor_ns` (see [`LinkTx::ack_anchor_ns`]);
    /// what was sent since drains at `drain_bytes_per_s` (0: at the budget
    /// rate).
    pub const fn with_ack(self, next_seq: u32, anchor_ns: u64, drain_bytes_per_s: u64) -> Self {
        let drain =
            if drain_bytes_per_s == 0 { self.ps_per_byte } else { budget::ps_per_byte(drain_bytes_per_s) };
        Self {
            flags: self.flags | LINK_ACKED,
            acked_seq: next_seq,
            drain_ps_per_byte: drain,
            ack_anchor_ns: anchor_ns,
            ..self
        }
    }

    /// This link with its drain rate marked as only a lower bound (see
    /// [`LINK_DRAIN_LOWER_BOUND`]).
    pub const fn with_drain_lower_bound(self) -> Self {
        Self { flags: self.flags | LINK_DRAIN_LOWER_BOUND, ..self }
    }

    /// The drain rate is only a lower bound on the link's capacity.
    #[inline(always)]
    pub const fn drain_is_lower_bound(&self) -> bool {
        self.flags & LINK_DRAIN_LOWER_BOUND != 0
    }

    /// Nanoseconds `bytes` take to drain from the link's backlog (see
    /// [`LinkTx::drain_ps_per_byte`]).
    #[inline(always)]
    pub const fn drain_ns(&self, bytes: u32) -> u64 {
        budget::transmit_ns(bytes, self.drain_ps_per_byte)
    }

    /// The backlog a packet sent at kernel time `now_ns` meets when
    /// `sent_since` bytes were sent from [`LinkTx::acked_seq`] on: they
    /// drain from [`LinkTx::ack_anchor_ns`] at the drain rate. The kernel's
    /// scheduler prices packets with it, and the controller's diagnostics
    /// read the same number back.
    #[inline(always)]
    pub const fn acked_backlog_ns(&self, sent_since: u32, now_ns: u64) -> u64 {
        (self.ack_anchor_ns + self.drain_ns(sent_since)).saturating_sub(now_ns)
    }

    /// The link carries a fresh acknowledgement.
    #[inline(always)]
    pub const fn acked(&self) -> bool {
        self.flags & LINK_ACKED != 0
    }

    /// The link may carry traffic.
    #[inline(always)]
    pub const fn enabled(&self) -> bool {
        self.flags & LINK_ENABLED != 0
    }

    /// The link has a send budget (earliest-arrival choice considers it).
    #[inline(always)]
    pub const fn has_budget(&self) -> bool {
        self.ps_per_byte != 0
    }

    /// Nanoseconds an outer packet of `bytes` holds the link at its budget rate.
    #[inline(always)]
    pub const fn transmit_ns(&self, bytes: u32) -> u64 {
        budget::transmit_ns(bytes, self.ps_per_byte)
    }

    /// The idle one-way delay, ns.
    #[inline(always)]
    pub const fn delay_ns(&self) -> u64 {
        budget::us_to_ns(self.delay_us)
    }

    /// The backlog the budget allows, ns.
    #[inline(always)]
    pub const fn backlog_limit_ns(&self) -> u64 {
        budget::us_to_ns(self.backlog_limit_us)
    }
}

/// The egress program's pacing state of one link (index = link id): a
/// virtual queue drained at the link's budget rate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkPace {
    /// Kernel time (`bpf_ktime_get_ns`) at which everything sent so far has
    /// left at the budget rate; the backlog is this minus now.
    pub busy_until_ns: u64,
    /// Packets sent on this link past every link's budget (the schedule's
    /// fallback under overload).
    pub overflow: u64,
    /// Outer bytes sent on this link so far, by any means (what
    /// `STRATA_SENT` records per packet).
    pub sent_bytes: u64,
}

/// [`Endpoint::family`]: nothing known yet.
pub const FAMILY_NONE: u8 = 0;
/// [`Endpoint::family`]: an IPv4 endpoint (`ip_be`).
pub const FAMILY_V4: u8 = 4;
/// [`Endpoint::family`]: an IPv6 endpoint (its address in `STRATA_PEERS6`).
pub const FAMILY_V6: u8 = 6;

/// The far end of a link (index = link id), of either family. Its family is
/// the family of the outer header the link's packets are sent in.
///
/// The IPv4 layout is unchanged (the family takes what was padding), so the
/// IPv4 path reads what it always read and a pinned map of an older build
/// stays valid; an IPv6 address lives in the link's `STRATA_PEERS6` entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// IPv4 address, big endian (with [`FAMILY_V4`]).
    pub ip_be: u32,
    /// UDP port, big endian.
    pub port_be: u16,
    /// [`FAMILY_NONE`], [`FAMILY_V4`] or [`FAMILY_V6`] (an older build's
    /// zero with an address: IPv4).
    pub family: u8,
    /// Explicit padding.
    pub _pad: u8,
}

/// An IPv6 address as four words holding its bytes in network order.
pub const fn ip6_words(a: Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    [
        u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
        u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
        u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
        u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
    ]
}

/// The IPv6 address whose bytes four words hold in network order.
pub fn ip6_from_words(w: [u32; 4]) -> Ipv6Addr {
    let [a, b, c, d] = [w[0].to_ne_bytes(), w[1].to_ne_bytes(), w[2].to_ne_bytes(), w[3].to_ne_bytes()];
    Ipv6Addr::from([
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2], d[3],
    ])
}

impl Endpoint {
    /// An IPv4 endpoint.
    pub const fn v4(address: Ipv4Addr, port: u16) -> Self {
        Self { ip_be: address.to_bits().to_be(), port_be: port.to_be(), family: FAMILY_V4, _pad: 0 }
    }

    /// `address:port`: the endpoint, and for IPv6 the address words of its
    /// `STRATA_PEERS6` entry. A v4-mapped IPv6 address (what a dual-stack
    /// socket reports for an IPv4 peer) is IPv4.
    pub const fn new(address: IpAddr, port: u16) -> (Self, Option<[u32; 4]>) {
        match address.to_canonical() {
            IpAddr::V4(v4) => (Self::v4(v4, port), None),
            IpAddr::V6(v6) => {
                (Self { ip_be: 0, port_be: port.to_be(), family: FAMILY_V6, _pad: 0 }, Some(ip6_words(v6)))
            }
        }
    }

    /// Whether an endpoint is known (an unknown peer's link sends nothing).
    #[inline(always)]
    pub const fn known(&self) -> bool {
        self.family == FAMILY_V6 || self.ip_be != 0
    }

    /// The endpoint as a socket address, if known; `ip6` is the link's
    /// `STRATA_PEERS6` entry.
    pub fn socket_addr(&self, ip6: [u32; 4]) -> Option<SocketAddr> {
        let port = u16::from_be(self.port_be);
        if self.family == FAMILY_V6 {
            Some(SocketAddr::new(IpAddr::V6(ip6_from_words(ip6)), port))
        } else if self.ip_be != 0 {
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from_bits(u32::from_be(self.ip_be))), port))
        } else {
            None
        }
    }
}

/// Which link each packet goes to, as a table the kernel indexes with the
/// packet's global sequence: `slots[seq % len]` is a link id. The controller
/// spreads each link's share of slots evenly (smooth weighted round robin), so
/// per-packet selection is one array lookup.
///
/// The map holds two schedules; [`Schedule::active`] of entry 0 says which one
/// the kernel uses, so the controller writes the other and flips the index.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Index of the schedule in use (only meaningful in entry 0).
    pub active: u32,
    /// Number of slots in use (0: no link has weight; nothing is sent).
    pub len: u32,
    /// Link id per slot.
    pub slots: [u8; SCHEDULE_SLOTS],
}

impl Default for Schedule {
    fn default() -> Self {
        Self { active: 0, len: 0, slots: [0; SCHEDULE_SLOTS] }
    }
}

/// Sender sequence counters (single entry), advanced atomically by egress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxSeq {
    /// Next global sequence (the wire carries the low 32 bits).
    ///
    /// 64-bit because BPF atomics on 32-bit words are not available from Rust.
    pub global: u64,
    /// Next sequence per link (the wire carries the low 32 bits).
    pub link: [u64; MAX_LINKS as usize],
}

/// Packet and byte counters (per CPU, index = link id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Packets.
    pub packets: u64,
    /// Bytes of outer packets (IP header onward, IPv4 or IPv6).
    pub bytes: u64,
}

/// Receive-side sequence tracking of one link (index = link id).
///
/// Loss is counted from per-link sequence gaps as packets arrive: a jump of
/// `n` adds `n - 1` to `lost`, and a late packet that fills a gap takes one
/// back off and counts as `late`. Shared by all CPUs and updated without a
/// lock, so two CPUs racing on one link can misplace a count; the totals
/// settle as later packets arrive.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxLinkState {
    /// Highest per-link sequence seen.
    pub highest: u32,
    /// 1 once the first packet was seen.
    pub started: u32,
    /// Packets missing from the sequence so far.
    pub lost: u64,
    /// Packets that arrived after a higher sequence on the same link.
    pub late: u64,
    /// Times the sender's sequence jumped back (sender restarted) or
    /// implausibly far ahead, as confirmed by the packet after the jump.
    pub restarts: u64,
    /// Sum of one-way delays (receive CLOCK_TAI − send timestamp), µs, over
    /// `owd_count` packets. Edge and hub clocks are not synchronised, so only
    /// changes of the mean mean anything (a queue building).
    pub owd_sum_us: u64,
    /// Packets in `owd_sum_us`.
    pub owd_count: u64,
}

/// The anti-replay window's anchor (single entry of `STRATA_REPLAY_STATE`).
/// 64-bit words throughout: BPF atomics on 32-bit words are not available
/// from Rust (see `TxSeq`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayState {
    /// `1 << 32 | highest accepted global sequence`; 0 before the first.
    pub anchor: u64,
    /// `1 << 32 | sequence` of the last packet that jumped out of the
    /// window, awaiting confirmation; 0: none.
    pub candidate: u64,
    /// `bpf_ktime_get_ns` of the last accepted packet.
    pub accepted_ns: u64,
}

/// Per-link state of the plausibility check of per-link sequences
/// (`STRATA_RXJUMP`, index = link id), beside `RxLinkState` so that map
/// keeps its layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxJump {
    /// `1 << 32 | sequence` of an implausible jump awaiting the
    /// confirmation of the link's next packet; 0: none.
    pub candidate: u64,
    /// `bpf_ktime_get_ns` of the link's previous data packet.
    pub last_ns: u64,
}

/// Per-link count of the data packets that arrived queued behind their
/// predecessor (`STRATA_RXQUEUED`, index = link id; the hub's feedback
/// carries the two sums as `wire::FeedbackPayload::queued_bytes` and
/// `queued_us`).
///
/// A packet reached the link's bottleneck at its send time plus the link's
/// one-way delay floor (the delay of a packet that waited for nothing). If
/// that was before the previous packet on the link arrived, it found the
/// link busy and waited behind it, so the time between the two arrivals is
/// the link's service time for it: summed over such packets, bytes over
/// time is the link's capacity, measured only while it had a queue. The
/// test holds up under jitter that delays arrivals, since it reads the
/// packet's own send time rather than its delay (the closed-loop
/// simulation on the real LTE trace: a 5 ms jitter moved the capacity it
/// gives by little, where a threshold on each packet's own wait read idle
/// links as busy).
///
/// Shared by all CPUs and updated without a lock, like [`RxLinkState`]:
/// two CPUs racing on one link may misplace one packet's count.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxQueued {
    /// The link's one-way delay floor, biased µs (as `RxLinkState::owd_sum_us`
    /// samples), when it was last set; 0: none yet.
    pub floor_us: u64,
    /// CLOCK_TAI µs when the floor was last set. The floor in force rises
    /// from it by [`RXQUEUED_FLOOR_CREEP_SHIFT`]: a floor left too low (a
    /// route that got longer, clocks that drifted) would count idle gaps as
    /// busy and read the link slower than it is, while one too high only
    /// misses packets that waited less than the excess.
    pub floor_at_us: u64,
    /// CLOCK_TAI µs of the previous in-order data packet on the link; 0: none.
    pub last_arrival_us: u64,
    /// Bytes (outer, as `STRATA_RX`) of the packets that arrived queued.
    pub queued_bytes: u64,
    /// The arrival gaps of those packets summed, µs.
    pub queued_us: u64,
}

/// The one-way delay floor of [`RxQueued`] rises by the time since it was
/// set shifted right by this: 1/64, about 16 ms per second without a
/// packet that waited for nothing — a path that got longer is followed in
/// seconds, and a standing queue that hides the floor for a second misses
/// only the packets that waited under 16 ms.
pub const RXQUEUED_FLOOR_CREEP_SHIFT: u32 = 6;
/// Interfaces host-side sampling watches (edge links).
pub const SAMPLE_SLOTS: u32 = 8;
/// Buckets of the host queueing-delay histogram: bucket `b` counts delays in
/// `[2^(b-1), 2^b)` µs (bucket 0: under 1 µs), the last everything longer.
/// Each slot's row in `STRATA_QDELAY` has one more entry: the sum, ns.
pub const DELAY_BUCKETS: u32 = 32;
/// Entries per slot in `STRATA_QDELAY`: the buckets, then the sum of delays in ns.
pub const DELAY_ROW: u32 = DELAY_BUCKETS + 1;
/// Kernel drop reasons counted per watched interface (`enum skb_drop_reason`
/// values at or above are counted under the last).
pub const DROP_REASONS: u32 = 256;
/// Length of an interface name, NUL-padded (`IFNAMSIZ`).
pub const IFNAME_LEN: usize = 16;

/// Field offsets of the tracepoints the sampling programs read, from the
/// tracepoints' `format` files in tracefs at load time (single entry). A
/// tracepoint's record layout is ABI the kernel publishes; reading it needs
/// no kernel structure and so no BTF relocation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleConfig {
    /// `net:net_dev_queue`: `skbaddr`.
    pub queue_skbaddr: u32,
    /// `net:net_dev_queue`: `name` (`__data_loc char[]`).
    pub queue_name: u32,
    /// `net:net_dev_start_xmit`: `skbaddr`.
    pub xmit_skbaddr: u32,
    /// `skb:kfree_skb`: `skbaddr`.
    pub drop_skbaddr: u32,
    /// `skb:kfree_skb`: `reason`.
    pub drop_reason: u32,
    /// 1 once written; the programs do nothing before.
    pub ready: u32,
}

/// A packet a watched interface queued, until it is sent or dropped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queued {
    /// `bpf_ktime_get_ns` when it was queued.
    pub at_ns: u64,
    /// Slot of the interface (see `STRATA_WATCH`).
    pub slot: u32,
    /// Explicit padding.
    pub _pad: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tx_stores_addresses_and_port_in_network_order() {
        let tx = LinkTx::new(
            true,
            7,
            Ipv4Addr::new(10, 0, 0, 2),
            Some(Ipv4Addr::new(10, 0, 0, 1)),
            5000,
            1500,
            14,
        );
        assert_eq!(tx.src_ip_be.to_ne_bytes(), [10, 0, 0, 2]);
        assert_eq!(tx.nexthop_be.to_ne_bytes(), [10, 0, 0, 1]);
        assert_eq!(tx.src_port_be.to_ne_bytes(), 5000u16.to_be_bytes());
        assert_eq!((tx.flags, tx.ifindex, tx.mtu, tx.l2_len), (LINK_ENABLED, 7, 1500, 14));
        assert!(tx.enabled() && !tx.has_budget());
        assert_eq!((tx.ps_per_byte, tx.delay_us, tx.backlog_limit_us), (0, 0, 0));
    }

    #[test]
    fn endpoints_of_both_families_round_trip_and_mapped_v4_is_v4() {
        let v6: SocketAddr = "[2001:db8:1::2]:7400".parse().unwrap();
        let (e, words) = Endpoint::new(v6.ip(), v6.port());
        let words = words.unwrap();
        assert_eq!((e.family, e.ip_be), (FAMILY_V6, 0));
        assert_eq!(words[0].to_ne_bytes(), [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(e.socket_addr(words), Some(v6));
        let mapped: Ipv6Addr = "::ffff:198.19.0.2".parse().unwrap();
        let (e, words) = Endpoint::new(IpAddr::V6(mapped), 1);
        assert_eq!((e.family, e.ip_be.to_ne_bytes(), words), (FAMILY_V4, [198, 19, 0, 2], None));
        assert!(!Endpoint::default().known() && Endpoint::default().socket_addr([0; 4]).is_none());
        // An older build's entry (family 0, an address) is IPv4.
        let old = Endpoint { ip_be: 0x0a00_0001u32.to_be(), port_be: 7u16.to_be(), family: 0, _pad: 0 };
        assert_eq!(old.socket_addr([0; 4]), Some("10.0.0.1:7".parse().unwrap()));
        assert_eq!(size_of::<Endpoint>(), 8);
    }

    #[test]
    fn link_tx_defaults_and_clamps() {
        let tx = LinkTx::new(false, 1, Ipv4Addr::UNSPECIFIED, None, 0, 65_536, 0);
        assert_eq!((tx.flags, tx.nexthop_be, tx.mtu), (0, 0, u16::MAX));
        assert!(!tx.enabled());
    }

    #[test]
    fn a_budget_sets_the_rate_delay_and_backlog_and_zero_leaves_none() {
        let tx = LinkTx::new(true, 1, Ipv4Addr::LOCALHOST, None, 1, 1500, 14);
        let paced = tx.with_budget(100_000, 10_000, 100_000);
        assert_eq!(
            (paced.ps_per_byte, paced.delay_us, paced.backlog_limit_us),
            (10_000_000, 10_000, 100_000)
        );
        assert!(paced.has_budget());
        assert_eq!(paced.transmit_ns(1000), 10_000_000);
        assert_eq!((paced.delay_ns(), paced.backlog_limit_ns()), (10_000_000, 100_000_000));
        assert_eq!(tx.with_budget(0, 10_000, 100_000), tx);
    }
}
