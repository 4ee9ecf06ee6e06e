//! The outer headers Strata puts around every tunnelled packet, and the checks
//! on the inner packet it carries.
//!
//! Each link's outer header is of its peer's family: [`OuterV4`] on IPv4
//! carriers, [`OuterV6`] on IPv6 ones (many cellular carriers hand out IPv6
//! only). The Strata header and the inner packet are the same in both.

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
/// Bytes added in front of every inner packet on an IPv6 carrier (outer
/// IPv6 + UDP + Strata header): 20 more than over IPv4.
pub const OUTER_V6_LEN: usize = IPV6_LEN + UDP_LEN + HEADER_LEN;

/// EtherType IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType IPv6.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IPv6 next header: fragment header.
pub const NEXTHDR_FRAGMENT: u8 = 44;
/// IPv6 fragment header length.
pub const IPV6_FRAG_LEN: usize = 8;
/// IPv6 fragment header: offset mask of `frag_off` (the low three bits are flags).
pub const IP6_OFFSET: u16 = 0xFFF8;
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

/// IPv6 fixed header; multi-byte fields in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Hdr {
    /// Version (6), traffic class and flow label, big endian.
    pub vtc_flow_be: u32,
    /// Payload length (everything after this header), big endian.
    pub payload_len_be: u16,
    /// Next header.
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source address, network order.
    pub saddr: [u32; 4],
    /// Destination address, network order.
    pub daddr: [u32; 4],
}

/// Everything Strata prepends to an inner packet on an IPv6 carrier.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterV6 {
    /// Outer IPv6 header.
    pub ip: Ipv6Hdr,
    /// Outer UDP header.
    pub udp: UdpHdr,
    /// Strata header.
    pub strata: Header,
}

/// The IPv6 pseudo-header the UDP checksum covers (RFC 8200 §8.1), laid out
/// as it is summed: addresses, upper-layer length, three zero bytes, next header.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pseudo6 {
    /// Source address, network order.
    pub saddr: [u32; 4],
    /// Destination address, network order.
    pub daddr: [u32; 4],
    /// Upper-layer packet length, big endian.
    pub len_be: u32,
    /// Zero, and the next header in the last byte (big endian word).
    pub next_be: u32,
}

/// The IPv4 pseudo-header of TCP and UDP checksums (RFC 768/793).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pseudo4 {
    /// Source address, big endian.
    pub saddr_be: u32,
    /// Destination address, big endian.
    pub daddr_be: u32,
    /// Zero byte, protocol, and upper-layer length (big endian word).
    pub proto_len_be: u32,
}

const _: () = assert!(size_of::<Ipv6Hdr>() == IPV6_LEN);
const _: () = assert!(size_of::<OuterV6>() == OUTER_V6_LEN);
const _: () = assert!(size_of::<Pseudo6>() == 40);
const _: () = assert!(size_of::<Pseudo4>() == 12);
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

/// Addresses and ports of one outer packet over IPv6, as they go on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterAddrs6 {
    /// Source IPv6, network order.
    pub src_ip: [u32; 4],
    /// Destination IPv6, network order.
    pub dst_ip: [u32; 4],
    /// Source port, big endian.
    pub src_port_be: u16,
    /// Destination port, big endian.
    pub dst_port_be: u16,
}

impl OuterV6 {
    /// Builds the outer headers for an inner packet of `inner_len` bytes,
    /// with traffic class `tclass` and the UDP checksum still zero.
    ///
    /// Over IPv6 the UDP checksum is mandatory (RFC 8200 §8.1): the sender
    /// computes it once the headers are final (see the eBPF crate's `csum`),
    /// as it covers the addresses, every header and the inner packet.
    #[inline(always)]
    pub fn new(addrs: OuterAddrs6, inner_len: u16, tclass: u8, strata: Header) -> Self {
        let OuterAddrs6 { src_ip, dst_ip, src_port_be, dst_port_be } = addrs;
        let udp_len = inner_len.wrapping_add((UDP_LEN + HEADER_LEN) as u16);
        Self {
            ip: Ipv6Hdr {
                vtc_flow_be: (6u32 << 28 | u32::from(tclass) << 20).to_be(),
                payload_len_be: udp_len.to_be(),
                next_header: IPPROTO_UDP,
                hop_limit: OUTER_TTL,
                saddr: src_ip,
                daddr: dst_ip,
            },
            udp: UdpHdr {
                source_be: src_port_be,
                dest_be: dst_port_be,
                len_be: udp_len.to_be(),
                check_be: 0,
            },
            strata,
        }
    }

    /// The pseudo-header of this packet's UDP checksum.
    #[inline(always)]
    pub fn pseudo(&self) -> Pseudo6 {
        Pseudo6 {
            saddr: self.ip.saddr,
            daddr: self.ip.daddr,
            len_be: u32::from(u16::from_be(self.udp.len_be)).to_be(),
            next_be: u32::from(IPPROTO_UDP).to_be(),
        }
    }
}

/// Folds a 32-bit ones'-complement running sum to 16 bits.
#[inline(always)]
pub const fn csum_fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Adds two ones'-complement running sums (end-around carry).
#[inline(always)]
pub const fn csum_add(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s + carry as u32
}

/// The UDP checksum field for a folded sum of everything it covers: the
/// complement, with a computed zero sent as all ones (RFC 768; over IPv6 a
/// zero field would mean "no checksum", which IPv6 does not allow).
#[inline(always)]
pub const fn udp_check_field(folded: u16) -> u16 {
    match !folded {
        0 => 0xffff,
        c => c,
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
    fn outer_v6_lengths_and_pseudo_header() {
        let strata = Header::new(Fields {
            packet_type: PacketType::Data,
            flags: 0,
            link_id: 2,
            session: 1,
            global_seq: 2,
            link_seq: 3,
            timestamp_us: 4,
        });
        let addrs = OuterAddrs6 {
            src_ip: [1u32.to_be(), 0, 0, 2u32.to_be()],
            dst_ip: [3u32.to_be(), 0, 0, 4u32.to_be()],
            src_port_be: 7400u16.to_be(),
            dst_port_be: 7400u16.to_be(),
        };
        let o = OuterV6::new(addrs, 100, 46 << 2, strata);
        assert_eq!(u32::from_be(o.ip.vtc_flow_be), 0x6b80_0000);
        assert_eq!((u16::from_be(o.ip.payload_len_be), u16::from_be(o.udp.len_be)), (128, 128));
        assert_eq!((o.ip.next_header, o.ip.hop_limit), (17, 64));
        let p = o.pseudo();
        assert_eq!((u32::from_be(p.len_be), u32::from_be(p.next_be)), (128, 17));
        assert_eq!(csum_fold(0x0001_fffe), 0xffff);
        assert_eq!(csum_add(0xffff_ffff, 2), 2);
        assert_eq!((udp_check_field(0xffff), udp_check_field(0x1234)), (0xffff, 0xedcb));
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
