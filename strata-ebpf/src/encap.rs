//! Adding the outer headers and handing the packet to a link.

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    helpers::generated::{bpf_redirect_neigh, bpf_skb_change_head, bpf_skb_store_bytes},
    programs::TcContext,
};
use strata_common::{
    auth::TAG_LEN,
    drop::DropReason,
    maps::LinkTx,
    packet::{ETH_LEN, OuterV4, OuterV6},
};

/// `AF_INET`, for `bpf_redirect_neigh`'s next-hop family.
const AF_INET: u32 = 2;
/// `AF_INET6`.
const AF_INET6: u32 = 10;

/// `struct bpf_redir_neigh`: an IPv4 next hop in `addr[0]`, or an IPv6 one.
#[repr(C)]
struct RedirNeigh {
    family: u32,
    addr: [u32; 4],
}

/// The headers an encapsulated packet starts with, laid out as they go on
/// the wire so that one `bpf_skb_store_bytes` writes them all: bytes 2..16
/// of `head` are the Ethernet header, then `outer` (outer IP, UDP and
/// Strata headers), then `tag` (the header's first extension words, written
/// only when the packet carries one).
///
/// Why one store: each `bpf_skb_store_bytes` call re-checks and, if need
/// be, un-clones the skb and copies; three per packet (Ethernet, outer
/// headers, tag) were 7 % of the egress program's samples in `perf` during
/// `strata-bench` (≈ 30 ns a call). Why the two bytes of padding in front:
/// they put `outer` at an 8-byte boundary, so the compiler fills its fields
/// with aligned stores rather than byte by byte, and the Ethernet header is
/// two plain words (a `[u8; 6]` pair of zero addresses came out of LLVM as
/// a call to a byte-wise `memset` loop).
#[repr(C)]
pub(crate) struct Frame<T> {
    /// Padding (bytes 0..2), zero MAC addresses, EtherType (bytes 14..16).
    pub(crate) head: [u64; 2],
    /// Outer IP, UDP and Strata headers.
    pub(crate) outer: T,
    /// The authentication tag, if the packet carries one.
    pub(crate) tag: [u8; TAG_LEN],
}

impl<T> Frame<T> {
    /// The Ethernet part of `head` for `ether_type`: addresses zero (the
    /// neighbour subsystem fills them in), the EtherType in bytes 14..16 —
    /// the top two bytes of the little-endian second word, in network order.
    #[inline(always)]
    pub(crate) const fn head(ether_type: u16) -> [u64; 2] {
        [0, (ether_type.to_be() as u64) << 48]
    }
}

/// Bytes of `Frame::head` in front of the Ethernet header.
const HEAD_PAD: usize = 2;
const _: () = assert!(HEAD_PAD + ETH_LEN == 16);

/// Turns `[L2?][inner]` into `[Ethernet][outer][tag?]`, from `frame`
/// (its tag only if `tagged`).
///
/// On a TUN device (`L2 == 0`) there is no link-layer header, but
/// `bpf_redirect_neigh` expects one (it pulls `ETH_HLEN` bytes before the
/// neighbour lookup fills the real one in), so one is made with
/// `bpf_skb_change_head`, the helper meant for L3 → L2 redirects. The outer
/// headers are then inserted after it with `bpf_skb_adjust_room`, whose
/// `ENCAP_L3_IPV4` flag also switches `skb->protocol` to IPv4 when the inner
/// packet is IPv6.
#[inline(always)]
pub(crate) fn encapsulate<const L2: usize>(
    ctx: &TcContext,
    frame: &Frame<OuterV4>,
    tagged: bool,
) -> Result<(), DropReason> {
    encapsulate_as::<L2, OuterV4>(ctx, frame, tagged, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4)
}

/// [`encapsulate`] for an IPv6 carrier: `ENCAP_L3_IPV6` switches
/// `skb->protocol` to IPv6 when the inner packet is IPv4.
#[inline(always)]
pub(crate) fn encapsulate_v6<const L2: usize>(
    ctx: &TcContext,
    frame: &Frame<OuterV6>,
    tagged: bool,
) -> Result<(), DropReason> {
    encapsulate_as::<L2, OuterV6>(ctx, frame, tagged, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6)
}

#[inline(always)]
fn encapsulate_as<const L2: usize, T>(
    ctx: &TcContext,
    frame: &Frame<T>,
    tagged: bool,
    encap_l3: u32,
) -> Result<(), DropReason> {
    if L2 == 0 {
        // SAFETY: plain helper call on this program's own skb.
        let ret = unsafe { bpf_skb_change_head(ctx.skb.skb, ETH_LEN as u32, 0) };
        if ret != 0 {
            return Err(DropReason::EncapFailed);
        }
    }
    let tag_len = if tagged { TAG_LEN } else { 0 };
    ctx.skb
        .adjust_room(
            (size_of::<T>() + tag_len) as i32,
            BPF_ADJ_ROOM_MAC,
            u64::from(encap_l3 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP),
        )
        .map_err(|_| DropReason::EncapFailed)?;
    // `tag` directly follows `outer` (no padding: `[u8; N]` aligns to 1).
    const { assert!(size_of::<Frame<T>>() >= 16 + size_of::<T>() + TAG_LEN) };
    let len = (ETH_LEN + size_of::<T>() + tag_len) as u32;
    // SAFETY: `frame` is a live object (stack or map value) and the helper
    // reads `len` bytes from byte `HEAD_PAD` of it, all inside it (above).
    let ret = unsafe {
        bpf_skb_store_bytes(
            ctx.skb.skb.cast(),
            0,
            core::ptr::from_ref(frame).cast::<u8>().add(HEAD_PAD).cast(),
            len,
            0,
        )
    };
    if ret != 0 {
        return Err(DropReason::EncapFailed);
    }
    Ok(())
}

/// Redirects the encapsulated packet out of the link's interface, with the
/// neighbour subsystem resolving the link's next hop (ARP if needed) and
/// writing the L2 header. With a next hop of 0 the kernel looks one up with
/// the link's interface as output device, so the main routing table never
/// has to point at the link.
///
/// A next hop given in `struct bpf_redir_neigh` spares the packet that
/// lookup: the kernel routes (`ip_route_output_flow`, every policy rule
/// walked) only when the caller passes none, and otherwise goes straight
/// to the neighbour of the given address. So the controller writes every
/// gateway it knows: an edge link's configured one, or its interface's
/// default route's (`links::resolve_link`), the hub's likewise; only a link
/// without one (a point-to-point or raw-IP link with no gateway) is routed
/// per packet. A raw-IP device (no `header_ops`) works either way: its
/// neighbours are `NUD_NOARP` and transmit directly, after the helper has
/// pulled the placeholder Ethernet header off.
#[inline(always)]
pub(crate) fn redirect_to_link(tx: &LinkTx) -> i32 {
    redirect_v4(tx.ifindex, tx.nexthop_be)
}

/// [`redirect_to_link`] by interface and IPv4 next hop (0: looked up).
#[inline(always)]
pub(crate) fn redirect_v4(ifindex: u32, nexthop_be: u32) -> i32 {
    let mut nh = RedirNeigh { family: AF_INET, addr: [nexthop_be, 0, 0, 0] };
    let (params, len) = if nexthop_be != 0 {
        (&raw mut nh, size_of::<RedirNeigh>() as i32)
    } else {
        (core::ptr::null_mut(), 0)
    };
    // SAFETY: `params` is null or points at a valid `bpf_redir_neigh` of `len` bytes.
    unsafe { bpf_redirect_neigh(ifindex, params.cast(), len, 0) as i32 }
}

/// [`redirect_to_link`] for an IPv6 packet: out of `ifindex` to the IPv6
/// next hop `nexthop6` (all zero: looked up with the interface as output
/// device, as over IPv4).
#[inline(always)]
pub(crate) fn redirect_v6(ifindex: u32, nexthop6: [u32; 4]) -> i32 {
    let mut nh = RedirNeigh { family: AF_INET6, addr: nexthop6 };
    let (params, len) = if nexthop6[0] | nexthop6[1] | nexthop6[2] | nexthop6[3] != 0 {
        (&raw mut nh, size_of::<RedirNeigh>() as i32)
    } else {
        (core::ptr::null_mut(), 0)
    };
    // SAFETY: `params` is null or points at a valid `bpf_redir_neigh` of `len` bytes.
    unsafe { bpf_redirect_neigh(ifindex, params.cast(), len, 0) as i32 }
}
