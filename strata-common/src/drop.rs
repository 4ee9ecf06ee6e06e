//! Why a packet was dropped.
//!
//! Every packet the data plane discards is counted under exactly one of these
//! reasons (per-CPU counters in the `STRATA_DROPS` map, indexed by the value).
//! Adding a reason: append it (values are an ABI with pinned maps), bump
//! [`DROP_REASON_COUNT`] and give it a name in [`DropReason::name`].

/// A drop reason; the discriminant is the index into the drop counter map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The outer IP/UDP or Strata header is cut short (IPv4 total or IPv6
    /// payload length beyond the frame).
    Truncated = 0,
    /// Outer IPv4 with options, IP/UDP lengths that do not match the packet,
    /// or UDP over IPv6 without a checksum.
    OuterMalformed = 1,
    /// An outer IPv4 fragment, or an IPv6 first fragment to the Strata port:
    /// tunnel packets are sent unfragmented and never reassembled here.
    OuterFragment = 2,
    /// Strata header of a version this build does not speak.
    BadVersion = 3,
    /// Unknown packet type.
    BadType = 4,
    /// Header length field below the v1 minimum or beyond the packet.
    BadHeaderLen = 5,
    /// A session other than the configured one.
    WrongSession = 6,
    /// Link id outside the configured range.
    BadLink = 7,
    /// A data packet whose inner packet is not a well-formed IPv4/IPv6 packet.
    InnerMalformed = 8,
    /// Global sequence already delivered (duplicate suppression window).
    Duplicate = 9,
    /// The kernel refused to strip the outer headers (`bpf_skb_adjust_room`).
    DecapFailed = 10,
    /// Egress: no link is usable (no weight, no peer endpoint, or disabled).
    NoLink = 11,
    /// Egress: the packet plus tunnel overhead exceeds the MTU of every usable link.
    Oversize = 12,
    /// Egress: a GSO super-packet, which cannot carry one sequence number per segment.
    Gso = 13,
    /// Egress: the kernel refused to add the outer headers.
    EncapFailed = 14,
    /// Egress: not an IPv4/IPv6 packet.
    NotIp = 15,
    /// The controller has not written the tunnel configuration yet.
    NoConfig = 16,
    /// Egress: no link is expected to deliver the packet within the tunnel's
    /// one-way delay budget (`TunnelConfig::deadline_us`); sent, it would
    /// arrive too late to be used and delay every packet behind it.
    Deadline = 17,
    /// Authentication is required (`CONFIG_AUTH_REQUIRED`) and the packet
    /// carries no tag, or none the receiver holds a key for (an unknown key
    /// phase, no key installed).
    AuthMissing = 18,
    /// The packet's tag is wrong: forged, altered on the way, or made with
    /// another key.
    AuthBad = 19,
}

/// Number of drop reasons (size of the drop counter map).
pub const DROP_REASON_COUNT: u32 = 20;

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [Self; DROP_REASON_COUNT as usize] = [
        Self::Truncated,
        Self::OuterMalformed,
        Self::OuterFragment,
        Self::BadVersion,
        Self::BadType,
        Self::BadHeaderLen,
        Self::WrongSession,
        Self::BadLink,
        Self::InnerMalformed,
        Self::Duplicate,
        Self::DecapFailed,
        Self::NoLink,
        Self::Oversize,
        Self::Gso,
        Self::EncapFailed,
        Self::NotIp,
        Self::NoConfig,
        Self::Deadline,
        Self::AuthMissing,
        Self::AuthBad,
    ];

    /// Stable snake_case name, used in logs and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::OuterMalformed => "outer_malformed",
            Self::OuterFragment => "outer_fragment",
            Self::BadVersion => "bad_version",
            Self::BadType => "bad_type",
            Self::BadHeaderLen => "bad_header_len",
            Self::WrongSession => "wrong_session",
            Self::BadLink => "bad_link",
            Self::InnerMalformed => "inner_malformed",
            Self::Duplicate => "duplicate",
            Self::DecapFailed => "decap_failed",
            Self::NoLink => "no_link",
            Self::Oversize => "oversize",
            Self::Gso => "gso",
            Self::EncapFailed => "encap_failed",
            Self::NotIp => "not_ip",
            Self::NoConfig => "no_config",
            Self::Deadline => "deadline",
            Self::AuthMissing => "auth_missing",
            Self::AuthBad => "auth_bad",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_ordered() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.name());
        }
    }
}
