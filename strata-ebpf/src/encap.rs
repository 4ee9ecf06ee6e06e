//! Adding the outer headers and handing the packet to a link.

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    helpers::generated::{bpf_redirect_neigh, bpf_skb_change_head},
    programs::TcContext,
};
use strata_common::{
    auth::TAG_LEN,
    drop::DropReason,
    maps::LinkTx,
    packet::{ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, OuterV4, OuterV6},
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

/// Turns `[L2?][inner]` into `[Ethernet][outer][tag?]`, `outer` being the
/// outer IPv4, UDP and Strata headers and `tag` the authentication tag
/// (the header's first extension words).
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
    outer: &OuterV4,
    tag: Option<&[u8; TAG_LEN]>,
) -> Result<(), DropReason> {
    encapsulate_as::<L2, OuterV4>(ctx, outer, tag, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, ETH_P_IP)
}

/// [`encapsulate`] for an IPv6 carrier: `ENCAP_L3_IPV6` switches
/// `skb->protocol` to IPv6 when the inner packet is IPv4.
#[inline(always)]
pub(crate) fn encapsulate_v6<const L2: usize>(
    ctx: &TcContext,
    outer: &OuterV6,
    tag: Option<&[u8; TAG_LEN]>,
) -> Result<(), DropReason> {
    encapsulate_as::<L2, OuterV6>(ctx, outer, tag, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, ETH_P_IPV6)
}

#[inline(always)]
fn encapsulate_as<const L2: usize, T>(
    ctx: &TcContext,
    outer: &T,
    tag: Option<&[u8; TAG_LEN]>,
    encap_l3: u32,
    ether_type: u16,
) -> Result<(), DropReason> {
    if L2 == 0 {
        // SAFETY: plain helper call on this program's own skb.
        let ret = unsafe { bpf_skb_change_head(ctx.skb.skb, ETH_LEN as u32, 0) };
        if ret != 0 {
            return Err(DropReason::EncapFailed);
        }
    }
    ctx.skb
        .adjust_room(
            (size_of::<T>() + if tag.is_some() { TAG_LEN } else { 0 }) as i32,
            BPF_ADJ_ROOM_MAC,
            u64::from(encap_l3 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP),
        )
        .map_err(|_| DropReason::EncapFailed)?;
    let eth = EthHdr { dst: [0; 6], src: [0; 6], ether_type_be: ether_type.to_be() };
    ctx.skb.store(0, &eth, 0).map_err(|_| DropReason::EncapFailed)?;
    ctx.skb.store(ETH_LEN, outer, 0).map_err(|_| DropReason::EncapFailed)?;
    // The tag is the first extension words, right after the fixed header
    // that ends `outer`.
    if let Some(tag) = tag {
        ctx.skb.store(ETH_LEN + size_of::<T>(), tag, 0).map_err(|_| DropReason::EncapFailed)?;
    }
    Ok(())
}

/// Redirects the encapsulated packet out of the link's interface, with the
/// neighbour subsystem resolving the link's next hop (ARP if needed) and
/// writing the L2 header. With a next hop of 0 the kernel looks one up with
/// the link's interface as output device, so the main routing table never
/// has to point at the link.
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
