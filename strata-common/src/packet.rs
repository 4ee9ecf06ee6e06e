//! The outer headers Strata puts around every tunnelled packet, and the checks
//! on the inner packet it carries.
//!
//! Outer IPv4 only for now; the encapsulation is written against
//! [`OuterV4`] so that an `OuterV6` for IPv6-only carriers is a sibling type,
//! not a rewrite.

use crate::wire::{HEADER_LEN, Header};

/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// IPv4 header length without options (the only outer form Strata sends or accepts).
pub const IPV4_LEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_LEN: usize = 40;
/// UDP header length.
pub const UDP_LEN: usize = 8;
/// Bytes added in front of every inner packet (outer IPv4 + UDP + Strata header).
pub const OUTER_V4_LEN: usize = IPV4_LEN + UDP_LEN + HEADER_LEN;

/// EtherType IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType IPv6.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IPv4 "don't fragment" flag in `frag_off`.
pub const IP_DF: u16 = 0x4000;
/// IPv4 "more fragments" flag and offset mask: any of these set means a fragment.
pub const IP_MF_OFFSET: u16 = 0x3FFF;
/// Outer TTL.
pub const OUTER_TTL: u8 = 64;

/// Ethernet header; multi-byte fields in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthHdr {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// EtherType, big endian.
    pub ether_type_be: u16,
}

/// IPv4 header without options; multi-byte fields in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Hdr {
    /// Version (4) and header length in words.
    pub version_ihl: u8,
    /// DSCP and ECN.
    pub tos: u8,
    /// Total length, big endian.
    pub total_len_be: u16,
    /// Identification, big endian.
    pub id_be: u16,
    /// Flags and fragment offset, big endian.
    pub frag_off_be: u16,
    /// Time to live.
    pub ttl: u8,
    /// Protocol.
    pub protocol: u8,
    /// Header checksum, big endian.
    pub check_be: u16,
    /// Source address, big endian.
    pub saddr_be: u32,
    /// Destination address, big endian.
    pub daddr_be: u32,
}

/// UDP header; fields in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpHdr {
    /// Source port, big endian.
    pub source_be: u16,
    /// Destination port, big endian.
    pub dest_be: u16,
    /// Length of header and payload, big endian.
    pub len_be: u16,
    /// Checksum, big endian (0: none, allowed for IPv4 and used by Strata).
    pub check_be: u16,
}

/// Everything Strata prepends to an inner packet on an IPv4 carrier.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterV4 {
    /// Outer IPv4 header.
    pub ip: Ipv4Hdr,
    /// Outer UDP header.
    pub udp: UdpHdr,
    /// Strata header.
    pub strata: Header,
}

const _: () = assert!(size_of::<EthHdr>() == ETH_LEN);
const _: () = assert!(size_of::<Ipv4Hdr>() == IPV4_LEN);
const _: () = assert!(size_of::<UdpHdr>() == UDP_LEN);
const _: () = assert!(size_of::<OuterV4>() == OUTER_V4_LEN);

/// Addresses and ports of one outer packet, in network order as they go on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterAddrs {
    /// Source IPv4, big endian.
    pub src_ip_be: u32,
    /// Destination IPv4, big endian.
    pub dst_ip_be: u32,
    /// Source port, big endian.
    pub src_port_be: u16,
    /// Destination port, big endian.
    pub dst_port_be: u16,
}

impl OuterV4 {
    /// Builds the outer headers for an inner packet of `inner_len` bytes.
    ///
    /// The UDP checksum is left at zero (RFC 768 allows it for IPv4; the
    /// inner packet carries its own). The IPv4 checksum is computed here
    /// because nothing downstream fills it in for a packet built in tc.
    #[inline(always)]
    pub fn new(addrs: OuterAddrs, inner_len: u16, tos: u8, strata: Header) -> Self {
        let OuterAddrs { src_ip_be, dst_ip_be, src_port_be, dst_port_be } = addrs;
        let udp_len = inner_len.wrapping_add((UDP_LEN + HEADER_LEN) as u16);
        let mut ip = Ipv4Hdr {
            version_ihl: 0x45,
            tos,
            total_len_be: udp_len.wrapping_add(IPV4_LEN as u16).to_be(),
            id_be: 0,
            frag_off_be: IP_DF.to_be(),
            ttl: OUTER_TTL,
            protocol: IPPROTO_UDP,
            check_be: 0,
            saddr_be: src_ip_be,
            daddr_be: dst_ip_be,
        };
        ip.check_be = ipv4_checksum(&ip).to_be();
        Self {
            ip,
            udp: UdpHdr {
                source_be: src_port_be,
                dest_be: dst_port_be,
                len_be: udp_len.to_be(),
                check_be: 0,
            },
            strata,
        }
    }
}

/// The RFC 791 header checksum of an option-less IPv4 header (with its
/// checksum field taken as zero).
#[inline(always)]
pub const fn ipv4_checksum(ip: &Ipv4Hdr) -> u16 {
    let Ipv4Hdr {
        version_ihl,
        tos,
        total_len_be,
        id_be,
        frag_off_be,
        ttl,
        protocol,
        check_be: _,
        saddr_be,
        daddr_be,
    } = *ip;
    let saddr = u32::from_be(saddr_be);
    let daddr = u32::from_be(daddr_be);
    let mut sum: u32 = ((version_ihl as u32) << 8 | tos as u32)
        + u16::from_be(total_len_be) as u32
        + u16::from_be(id_be) as u32
        + u16::from_be(frag_off_be) as u32
        + ((ttl as u32) << 8 | protocol as u32)
        + (saddr >> 16)
        + (saddr & 0xffff)
        + (daddr >> 16)
        + (daddr & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Checks that `bytes` (the start of an inner packet, at least the fixed IP
/// header) is an IPv4 or IPv6 packet exactly `available` bytes long. Returns
/// the IP version.
///
/// A length mismatch would make the tunnel device deliver a truncated or
/// padded packet, so it is rejected here rather than trusted.
#[inline(always)]
pub const fn inner_ip_version(first_byte: u8, declared_len: u16, available: usize) -> Option<u8> {
    match first_byte >> 4 {
        4 if first_byte & 0x0f >= 5 && declared_len as usize == available => Some(4),
        // IPv6 payload length excludes the fixed header.
        6 if declared_len as usize + IPV6_LEN == available => Some(6),
        _ => None,
    }
}

/// The DSCP of an inner packet from its first two bytes.
#[inline(always)]
pub const fn inner_dscp(b0: u8, b1: u8) -> u8 {
    match b0 >> 4 {
        4 => b1 >> 2,
        6 => ((b0 & 0x0f) << 2) | (b1 >> 6),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Fields, PacketType};

    #[test]
    fn checksum_of_a_known_header() {
        // Worked example: 45 00 00 73 00 00 40 00 40 11 [b8 61] c0 a8 00 01 c0 a8 00 c7
        let ip = Ipv4Hdr {
            version_ihl: 0x45,
            tos: 0,
            total_len_be: 0x0073u16.to_be(),
            id_be: 0,
            frag_off_be: 0x4000u16.to_be(),
            ttl: 0x40,
            protocol: 0x11,
            check_be: 0,
            saddr_be: 0xc0a8_0001u32.to_be(),
            daddr_be: 0xc0a8_00c7u32.to_be(),
        };
        assert_eq!(ipv4_checksum(&ip), 0xb861);
    }

    #[test]
    fn outer_lengths_and_checksum_verify() {
        let strata = Header::new(Fields {
            packet_type: PacketType::Data,
            flags: 0,
            link_id: 0,
            session: 1,
            global_seq: 2,
            link_seq: 3,
            timestamp_us: 4,
        });
        let addrs = OuterAddrs {
            src_ip_be: 0x6440_0102u32.to_be(),
            dst_ip_be: 0xc613_0002u32.to_be(),
            src_port_be: 7400u16.to_be(),
            dst_port_be: 7400u16.to_be(),
        };
        let o = OuterV4::new(addrs, 100, 0, strata);
        assert_eq!(u16::from_be(o.ip.total_len_be), 148);
        assert_eq!(u16::from_be(o.udp.len_be), 128);
        // Summing a header including its checksum gives 0xffff, i.e. 0 after inversion.
        let mut with = o.ip;
        with.check_be = 0;
        assert_eq!(ipv4_checksum(&with), u16::from_be(o.ip.check_be));
    }

    #[test]
    fn inner_checks() {
        assert_eq!(inner_ip_version(0x45, 60, 60), Some(4));
        assert_eq!(inner_ip_version(0x45, 61, 60), None);
        assert_eq!(inner_ip_version(0x44, 60, 60), None);
        assert_eq!(inner_ip_version(0x60, 20, 60), Some(6));
        assert_eq!(inner_ip_version(0x60, 21, 60), None);
        assert_eq!(inner_ip_version(0x50, 60, 60), None);
        assert_eq!(inner_dscp(0x45, 46 << 2), 46);
        assert_eq!(inner_dscp(0x6b, 0x80), 46);
    }
}
