//! The links as resolved on this host: interfaces, addresses and next hops
//! looked up before anything is created, so a typo fails cleanly; and the
//! kernel's per-link transmit value built from them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use strata_common::maps::{LinkTx, LinkTx6};
use tracing::warn;

use super::error::StartError;
use crate::{
    config::{Config, LinkSection, PeerSection, Role},
    os::net::{Family, Interface, Net},
};

/// A link as resolved on this host.
#[derive(Clone, Debug)]
pub struct ResolvedLink {
    /// Link id.
    pub id: u8,
    /// The interface it sends on.
    pub interface: Interface,
    /// Outer source address; its family is the family of the link's outer
    /// header.
    pub address: IpAddr,
    /// Next hop, if any (of the address's family).
    pub gateway: Option<IpAddr>,
    /// Configured weight.
    pub weight: u32,
    /// Where the hub is for this link: its address of the link's family.
    pub hub: SocketAddr,
}

/// This host's side of the tunnel, with every interface, address and next
/// hop resolved.
#[derive(Clone, Debug)]
pub(super) enum Side {
    /// The car: several links to one hub (each to its address of the link's family).
    Edge { links: Vec<ResolvedLink> },
    /// The cloud: one interface, listening on its IPv4 and IPv6 addresses
    /// (either may be absent, not both); the edge's endpoints are learned.
    Hub {
        interface: Interface,
        address: Option<Ipv4Addr>,
        gateway: Option<Ipv4Addr>,
        address6: Option<Ipv6Addr>,
        gateway6: Option<Ipv6Addr>,
    },
}

impl Side {
    pub(super) async fn resolve(net: &Net, config: &Config) -> Result<Self, StartError> {
        let missing = |field: &str| StartError::Missing { field: field.into() };
        match config.role {
            Role::Edge => {
                let peer = config.peer.as_ref().ok_or_else(|| missing("peer"))?;
                let mut links = Vec::new();
                for (i, link) in config.links.iter().enumerate() {
                    links.push(resolve_link(net, i, link, peer).await?);
                }
                Ok(Self::Edge { links })
            }
            Role::Hub => {
                let hub = config.hub.as_ref().ok_or_else(|| missing("hub"))?;
                let interface = net
                    .interface(&hub.interface)
                    .await
                    .map_err(|source| StartError::Interface { field: "hub.interface".into(), source })?;
                let address = match hub.address {
                    Some(a) => Some(a),
                    None => net.first_ipv4(interface.index).await?,
                };
                let address6 = match hub.address6 {
                    Some(a) => Some(a),
                    None => {
                        net.addresses(interface.index, Family::V6).await?.into_iter().find_map(|a| match a {
                            IpAddr::V6(a) => Some(a),
                            IpAddr::V4(_) => None,
                        })
                    }
                };
                if address.is_none() && address6.is_none() {
                    return Err(StartError::HubWithoutAddress { interface: interface.name.clone() });
                }
                let gateway = match hub.gateway {
                    Some(g) => Some(g),
                    None => net.default_gateway(interface.index).await?,
                };
                // The IPv6 next hop only matters with an IPv6 address to send from.
                let gateway6 = match (hub.gateway6, address6) {
                    (Some(g), _) => Some(g),
                    (None, Some(_)) => match net.default_gateway_of(interface.index, Family::V6).await? {
                        Some(IpAddr::V6(g)) => Some(g),
                        _ => None,
                    },
                    (None, None) => None,
                };
                Ok(Self::Hub { interface, address, gateway, address6, gateway6 })
            }
        }
    }

    /// Next hops the data path hands packets to (Ethernet-framed links only).
    pub(super) fn next_hops(&self) -> Vec<(u32, IpAddr)> {
        match self {
            Self::Edge { links, .. } => links
                .iter()
                .filter(|l| l.interface.l2_len != 0)
                .filter_map(|l| l.gateway.map(|g| (l.interface.index, g)))
                .collect(),
            Self::Hub { interface, gateway, gateway6, .. } => gateway
                .map(IpAddr::V4)
                .into_iter()
                .chain(gateway6.map(IpAddr::V6))
                .map(|g| (interface.index, g))
                .collect(),
        }
    }

    /// Interfaces tunnel packets arrive on.
    pub(super) fn ingress_interfaces(&self) -> Vec<&Interface> {
        match self {
            Self::Edge { links, .. } => links.iter().map(|l| &l.interface).collect(),
            Self::Hub { interface, .. } => vec![interface],
        }
    }

    /// Link ids worth showing in summaries (the hub shows whatever is active).
    pub(super) fn link_ids(&self) -> Vec<u8> {
        match self {
            Self::Edge { links, .. } => links.iter().map(|l| l.id).collect(),
            Self::Hub { .. } => Vec::new(),
        }
    }

    /// The edge's links (none on the hub).
    pub(super) fn links(&self) -> &[ResolvedLink] {
        match self {
            Self::Edge { links, .. } => links,
            Self::Hub { .. } => &[],
        }
    }
}

async fn resolve_link(
    net: &Net,
    index: usize,
    link: &LinkSection,
    peer: &PeerSection,
) -> Result<ResolvedLink, StartError> {
    let field = format!("links[{index}].interface");
    let Some(ifname) = link.interface.as_deref() else {
        return Err(StartError::Missing { field });
    };
    let interface = net.interface(ifname).await.map_err(|source| StartError::Interface { field, source })?;
    let address = match link.address {
        Some(a) => a,
        None => {
            // The link's family is its carrier's: IPv4 where it has an IPv4
            // address the hub can be reached over, else IPv6 (an IPv6-only
            // carrier), if the hub has an IPv6 address.
            let (hub4, hub6) = peer.families();
            let v4 = if hub4 { net.first_ipv4(interface.index).await?.map(IpAddr::V4) } else { None };
            let v6 = match v4 {
                None if hub6 => net.addresses(interface.index, Family::V6).await?.into_iter().next(),
                _ => None,
            };
            v4.or(v6).ok_or_else(|| StartError::LinkWithoutAddress { index, interface: ifname.into() })?
        }
    };
    let hub = peer
        .hub_for(address)
        .ok_or_else(|| StartError::LinkWithoutAddress { index, interface: ifname.into() })?;
    let gateway = match link.gateway {
        Some(g) => Some(g),
        None => net.default_gateway_of(interface.index, Family::of(address)).await?,
    };
    if gateway.is_none() && interface.l2_len != 0 {
        return Err(StartError::LinkWithoutGateway { index, interface: ifname.into() });
    }
    if !interface.up {
        warn!(link = link.id, interface = ifname, "link interface is down");
    }
    Ok(ResolvedLink { id: link.id, interface, address, gateway, weight: link.weight, hub })
}

/// How link `id` sends, on the edge: from its own address, of its family.
/// An IPv6 link's source and next hop go into its [`LinkTx6`] entry
/// ([`link_tx6`]), which must be written before this.
pub fn link_tx(
    weight: u32,
    interface: &Interface,
    source: IpAddr,
    next_hop: Option<IpAddr>,
    port: u16,
) -> LinkTx {
    // No budget until the adaptive controller sets one.
    let (v4, hop) = match (source, next_hop) {
        (IpAddr::V4(a), Some(IpAddr::V4(g))) => (a, Some(g)),
        (IpAddr::V4(a), _) => (a, None),
        (IpAddr::V6(_), _) => (Ipv4Addr::UNSPECIFIED, None),
    };
    let tx = LinkTx::new(weight > 0, interface.index, v4, hop, port, interface.mtu, interface.l2_len);
    if source.is_ipv6() { tx.with_v6() } else { tx }
}

/// The IPv6 half of an edge link's [`link_tx`]: `None` for an IPv4 link.
pub fn link_tx6(source: IpAddr, next_hop: Option<IpAddr>) -> Option<LinkTx6> {
    let IpAddr::V6(source) = source else { return None };
    let hop = match next_hop {
        Some(IpAddr::V6(g)) => Some(g),
        _ => None,
    };
    Some(LinkTx6::new(source, hop))
}

/// How link `id` sends on the hub: back to wherever the edge's packets came
/// from, from the hub's address of that family (the kernel picks per
/// packet); with its IPv6 half when the hub has an IPv6 address.
pub fn hub_link_tx(
    weight: u32,
    interface: &Interface,
    (address, gateway): (Option<Ipv4Addr>, Option<Ipv4Addr>),
    (address6, gateway6): (Option<Ipv6Addr>, Option<Ipv6Addr>),
    port: u16,
) -> (LinkTx, Option<LinkTx6>) {
    let tx = LinkTx::new(
        weight > 0,
        interface.index,
        address.unwrap_or(Ipv4Addr::UNSPECIFIED),
        gateway,
        port,
        interface.mtu,
        interface.l2_len,
    );
    match address6 {
        Some(a) => (tx.with_v6(), Some(LinkTx6::new(a, gateway6))),
        None => (tx, None),
    }
}
