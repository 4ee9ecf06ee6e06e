//! Adding the outer headers and handing the packet to a link.

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L4_UDP, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    helpers::generated::{bpf_redirect_neigh, bpf_skb_change_head},
    programs::TcContext,
};
use strata_common::{
    drop::DropReason,
    maps::LinkTx,
    packet::{ETH_LEN, ETH_P_IP, EthHdr, OUTER_V4_LEN, OuterV4},
};

/// `AF_INET`, for `bpf_redirect_neigh`'s next-hop family.
const AF_INET: u32 = 2;

/// `struct bpf_redir_neigh` with an IPv4 next hop.
#[repr(C)]
struct RedirNeigh {
    family: u32,
    addr: [u32; 4],
}

/// Turns `[L2?][inner]` into `[Ethernet][outer]`, `outer` being the outer
/// IPv4, UDP and Strata headers.
///
/// On a TUN device (`L2 == 0`) there is no link-layer header, but
/// `bpf_redirect_neigh` expects one (it pulls `ETH_HLEN` bytes before the
/// neighbour lookup fills the real one in), so one is made with
/// `bpf_skb_change_head`, the helper meant for L3 → L2 redirects. The outer
/// headers are then inserted after it with `bpf_skb_adjust_room`, whose
/// `ENCAP_L3_IPV4` flag also switches `skb->protocol` to IPv4 when the inner
/// packet is IPv6.
#[inline(always)]
pub(crate) fn encapsulate<const L2: usize>(ctx: &TcContext, outer: &OuterV4) -> Result<(), DropReason> {
    if L2 == 0 {
        // SAFETY: plain helper call on this program's own skb.
        let ret = unsafe { bpf_skb_change_head(ctx.skb.skb, ETH_LEN as u32, 0) };
        if ret != 0 {
            return Err(DropReason::EncapFailed);
        }
    }
    ctx.skb
        .adjust_room(
            OUTER_V4_LEN as i32,
            BPF_ADJ_ROOM_MAC,
            u64::from(BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP),
        )
        .map_err(|_| DropReason::EncapFailed)?;
    let eth = EthHdr { dst: [0; 6], src: [0; 6], ether_type_be: ETH_P_IP.to_be() };
    ctx.skb.store(0, &eth, 0).map_err(|_| DropReason::EncapFailed)?;
    ctx.skb.store(ETH_LEN, outer, 0).map_err(|_| DropReason::EncapFailed)?;
    Ok(())
}

/// Redirects the encapsulated packet out of the link's interface, with the
/// neighbour subsystem resolving the link's next hop (ARP if needed) and
/// writing the L2 header. With a next hop of 0 the kernel looks one up with
/// the link's interface as output device, so the main routing table never
/// has to point at the link.
#[inline(always)]
pub(crate) fn redirect_to_link(tx: &LinkTx) -> i32 {
    let mut nh = RedirNeigh { family: AF_INET, addr: [tx.nexthop_be, 0, 0, 0] };
    let (params, len) = if tx.nexthop_be != 0 {
        (&raw mut nh, size_of::<RedirNeigh>() as i32)
    } else {
        (core::ptr::null_mut(), 0)
    };
    // SAFETY: `params` is null or points at a valid `bpf_redir_neigh` of `len` bytes.
    unsafe { bpf_redirect_neigh(tx.ifindex, params.cast(), len, 0) as i32 }
}
