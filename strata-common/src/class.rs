//! Delivery classes: which class an inner packet belongs to, decided per
//! packet in the kernel from a table the controller writes.
//!
//! The class travels in the two low bits of the Strata header's flags
//! ([`crate::wire::TrafficClass`], docs/WIRE.md) so the receiver counts —
//! and later issues will treat — each packet by the class its sender gave it,
//! without parsing the inner packet again.
//!
//! The table ([`ClassTable`], one entry of the `CLASSES` map) holds
//!
//! * an ordered list of up to [`MAX_CLASS_RULES`] rules matching the inner
//!   packet's DSCP, IP protocol and destination port, the first that matches
//!   deciding, and
//! * a class per DSCP (64 entries) for packets no rule matched: RFC 4594's
//!   service classes by default ([`TrafficClass::from_dscp`]), with the
//!   configuration's DSCP-only rules that follow the last protocol or port
//!   rule folded in (see `strata-ctl`'s `config::classes`).
//!
//! With no rule the kernel does not look past the inner IP header's first two
//! bytes (one load from the per-DSCP table); with rules it reads the protocol
//! and, for TCP and UDP, the destination port.

use crate::wire::TrafficClass;

/// Most rules the kernel evaluates per packet (the configuration refuses more).
pub const MAX_CLASS_RULES: usize = 16;
/// [`ClassRule::dscp`]: any DSCP.
pub const DSCP_ANY: u8 = 0xff;
/// [`ClassRule::protocol`]: any protocol. (IPv6 hop-by-hop options, next
/// header 0, are not a protocol a rule can name.)
pub const PROTOCOL_ANY: u8 = 0;
/// The port of a packet that has none a rule can match: neither TCP nor UDP,
/// a non-first IPv4 fragment, or IPv6 with extension headers before the
/// transport header. Outside every configured port range, inside the "any
/// port" range `0..=u32::MAX`.
pub const NO_PORT: u32 = 1 << 16;
/// Class slots of the per-class counters: the two flag bits' four values
/// (3, reserved, is never sent; a peer's 3 is counted there and reported as
/// best effort).
pub const CLASS_SLOTS: u32 = 4;

/// One rule: a packet matches when each of its fields does.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassRule {
    /// Lowest destination port matched; with `port_hi` `0..=u32::MAX`: any,
    /// including packets without a port ([`NO_PORT`]).
    pub port_lo: u32,
    /// Highest destination port matched.
    pub port_hi: u32,
    /// IP protocol (IPv6: the next header of the fixed header), or [`PROTOCOL_ANY`].
    pub protocol: u8,
    /// DSCP `0..64`, or [`DSCP_ANY`].
    pub dscp: u8,
    /// The class given, a [`TrafficClass`] value `0..=2`.
    pub class: u8,
    /// Explicit padding.
    pub _pad: u8,
}

impl ClassRule {
    /// A rule matching everything, giving `class`; narrow it with the fields.
    pub const fn any(class: TrafficClass) -> Self {
        Self {
            port_lo: 0,
            port_hi: u32::MAX,
            protocol: PROTOCOL_ANY,
            dscp: DSCP_ANY,
            class: class as u8,
            _pad: 0,
        }
    }

    /// Whether a packet of `dscp`, `protocol` and destination `port` ([`NO_PORT`]: none) matches.
    #[inline(always)]
    pub const fn matches(&self, dscp: u8, protocol: u8, port: u32) -> bool {
        (self.dscp == DSCP_ANY || self.dscp == dscp)
            && (self.protocol == PROTOCOL_ANY || self.protocol == protocol)
            && self.port_lo <= port
            && port <= self.port_hi
    }
}

/// The classification table (entry 0 of the `CLASSES` map).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassTable {
    /// The class of a packet no rule matched, by DSCP.
    pub by_dscp: [u8; 64],
    /// Rules in use, from the first of `rules`; 0: the inner packet's
    /// protocol and port are not read.
    pub rule_count: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// The rules, in order.
    pub rules: [ClassRule; MAX_CLASS_RULES],
}

impl Default for ClassTable {
    /// RFC 4594's classes by DSCP and no rules.
    fn default() -> Self {
        let mut by_dscp = [0; 64];
        let mut d = 0;
        while d < 64 {
            by_dscp[d] = TrafficClass::from_dscp(d as u8) as u8;
            d += 1;
        }
        Self {
            by_dscp,
            rule_count: 0,
            _pad: 0,
            rules: [ClassRule { port_hi: 0, ..ClassRule::any(TrafficClass::BestEffort) }; MAX_CLASS_RULES],
        }
    }
}

impl ClassTable {
    /// The class (flag bits, `0..=3`) of a packet of `dscp`, `protocol` and
    /// destination `port`: the first matching rule's, else its DSCP's.
    #[inline(always)]
    pub fn classify(&self, dscp: u8, protocol: u8, port: u32) -> u8 {
        let mut i = 0;
        while i < MAX_CLASS_RULES {
            if i as u32 >= self.rule_count {
                break;
            }
            let rule = &self.rules[i];
            if rule.matches(dscp, protocol, port) {
                return rule.class & crate::wire::flags::CLASS_MASK;
            }
            i += 1;
        }
        self.by_dscp[usize::from(dscp & 63)] & crate::wire::flags::CLASS_MASK
    }
}

/// A share of the deadline of one ([`DeadlineShares`]), per mille.
pub const SHARE_WHOLE: u32 = 1000;

/// Each class's share of the tunnel's deadline (`TunnelConfig::deadline_us`),
/// per mille, by class bits: the `CLASS_DEADLINE` map's entries. Under
/// `drop_late`, a packet whose earliest expected arrival is past its class's
/// share of the deadline is dropped before it is sent; a share of 0 is never
/// dropped as late.
///
/// This is what sheds in class order when the links cannot carry everything
/// in time: every link's queue fills until the next packet would arrive just
/// within a deadline, and with best effort's deadline the shorter, the queues
/// stand where best effort no longer fits and video still does — best effort
/// goes first, then video, and critical, never dropped as late, not at all
/// (it goes where it arrives first, late or not: telemetry late beats
/// telemetry lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlineShares {
    /// Best effort's share.
    pub best_effort: u32,
    /// Video's share.
    pub video: u32,
}

impl DeadlineShares {
    /// The map's entries, by class bits: critical (and the reserved class,
    /// which no sender gives) never dropped as late.
    pub const fn entries(&self) -> [u32; CLASS_SLOTS as usize] {
        let mut e = [0; CLASS_SLOTS as usize];
        e[TrafficClass::BestEffort as usize] = self.best_effort;
        e[TrafficClass::Video as usize] = self.video;
        e
    }
}

/// The deadline, ns, of a packet of a class whose share is `share_permille`
/// under a tunnel deadline of `deadline_us` (0: none); 0 means the packet is
/// never dropped as late.
#[inline(always)]
pub const fn class_deadline_ns(deadline_us: u32, share_permille: u32) -> u64 {
    deadline_us as u64 * share_permille as u64
}

/// Packets and bytes of one class (per CPU, index = class bits).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounters {
    /// Packets.
    pub packets: u64,
    /// Bytes of inner packets (what the application sent or receives).
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{IPPROTO_TCP, IPPROTO_UDP};

    #[test]
    fn a_class_deadline_is_its_share_of_the_tunnels() {
        // µs × per mille = ns.
        assert_eq!(class_deadline_ns(150_000, SHARE_WHOLE), 150_000_000);
        assert_eq!(class_deadline_ns(150_000, 700), 105_000_000);
        assert_eq!(class_deadline_ns(150_000, 0), 0, "never dropped as late");
        assert_eq!(class_deadline_ns(0, SHARE_WHOLE), 0, "no deadline, no drops");
        assert_eq!(class_deadline_ns(u32::MAX, SHARE_WHOLE), u64::from(u32::MAX) * 1000, "no overflow");
        let e = DeadlineShares { best_effort: 700, video: SHARE_WHOLE }.entries();
        assert_eq!(e[TrafficClass::Critical as usize], 0);
        assert_eq!(e[TrafficClass::Reserved as usize], 0);
        assert_eq!((e[TrafficClass::BestEffort as usize], e[TrafficClass::Video as usize]), (700, 1000));
    }

    #[test]
    fn the_default_table_follows_rfc_4594() {
        let t = ClassTable::default();
        for (dscp, class) in [
            (46, TrafficClass::Critical),
            (40, TrafficClass::Critical),
            (48, TrafficClass::Critical),
            (56, TrafficClass::Critical),
            (34, TrafficClass::Video),
            (36, TrafficClass::Video),
            (38, TrafficClass::Video),
            (32, TrafficClass::BestEffort),
            (0, TrafficClass::BestEffort),
            (10, TrafficClass::BestEffort),
            (63, TrafficClass::BestEffort),
        ] {
            assert_eq!(t.classify(dscp, IPPROTO_UDP, 5000), class as u8, "dscp {dscp}");
        }
    }

    #[test]
    fn the_first_matching_rule_decides_then_the_dscp() {
        let mut t = ClassTable::default();
        t.rules[0] = ClassRule {
            protocol: IPPROTO_UDP,
            port_lo: 14550,
            port_hi: 14550,
            ..ClassRule::any(TrafficClass::Critical)
        };
        t.rules[1] = ClassRule { dscp: 46, ..ClassRule::any(TrafficClass::Video) };
        t.rules[2] = ClassRule::any(TrafficClass::BestEffort);
        t.rule_count = 2;
        assert_eq!(t.classify(0, IPPROTO_UDP, 14550), TrafficClass::Critical as u8);
        assert_eq!(t.classify(0, IPPROTO_TCP, 14550), TrafficClass::BestEffort as u8, "protocol differs");
        assert_eq!(t.classify(0, IPPROTO_UDP, NO_PORT), TrafficClass::BestEffort as u8, "no port");
        assert_eq!(t.classify(46, IPPROTO_UDP, 80), TrafficClass::Video as u8, "second rule");
        assert_eq!(t.classify(34, IPPROTO_UDP, 80), TrafficClass::Video as u8, "by DSCP");
        // Rules past the count are not evaluated.
        t.rule_count = 3;
        assert_eq!(t.classify(34, IPPROTO_UDP, 80), TrafficClass::BestEffort as u8);
    }

    #[test]
    fn an_any_port_rule_matches_packets_without_a_port() {
        let rule = ClassRule { protocol: 47, ..ClassRule::any(TrafficClass::Critical) };
        assert!(rule.matches(0, 47, NO_PORT));
        assert!(!rule.matches(0, IPPROTO_UDP, 1));
    }
}
