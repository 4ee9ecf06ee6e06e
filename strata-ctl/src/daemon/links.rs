//! The links as resolved on this host: interfaces, addresses and next hops
//! looked up before anything is created, so a typo fails cleanly; and the
//! kernel's per-link transmit value built from them.

use std::net::Ipv4Addr;

use strata_common::maps::{Endpoint, LinkTx};
use tracing::warn;

use super::error::StartError;
use crate::{
    config::{Config, LinkSection, Role},
    os::net::{Interface, Net},
};

/// A link as resolved on this host.
#[derive(Clone, Debug)]
pub struct ResolvedLink {
    /// Link id.
    pub id: u8,
    /// The interface it sends on.
    pub interface: Interface,
    /// Outer source address.
    pub address: Ipv4Addr,
    /// Next hop, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Configured weight.
    pub weight: u32,
}

/// This host's side of the tunnel, with every interface, address and next
/// hop resolved.
#[derive(Clone, Debug)]
pub(super) enum Side {
    /// The car: several links to one hub.
    Edge { links: Vec<ResolvedLink>, hub: Endpoint },
    /// The cloud: one interface; the edge's endpoints are learned.
    Hub { interface: Interface, address: Ipv4Addr, gateway: Option<Ipv4Addr> },
}

impl Side {
    pub(super) async fn resolve(net: &Net, config: &Config) -> Result<Self, StartError> {
        let missing = |field: &str| StartError::Missing { field: field.into() };
        match config.role {
            Role::Edge => {
                let peer = config.peer.as_ref().ok_or_else(|| missing("peer"))?;
                let hub = Endpoint { ip_be: be(peer.address), port_be: peer.port.to_be(), _pad: 0 };
                let mut links = Vec::new();
                for (i, link) in config.links.iter().enumerate() {
                    links.push(resolve_link(net, i, link).await?);
                }
                Ok(Self::Edge { links, hub })
            }
            Role::Hub => {
                let hub = config.hub.as_ref().ok_or_else(|| missing("hub"))?;
                let interface = net
                    .interface(&hub.interface)
                    .await
                    .map_err(|source| StartError::Interface { field: "hub.interface".into(), source })?;
                let address = match hub.address {
                    Some(a) => a,
                    None => net
                        .first_ipv4(interface.index)
                        .await?
                        .ok_or_else(|| StartError::HubWithoutAddress { interface: interface.name.clone() })?,
                };
                let gateway = match hub.gateway {
                    Some(g) => Some(g),
                    None => net.default_gateway(interface.index).await?,
                };
                Ok(Self::Hub { interface, address, gateway })
            }
        }
    }

    /// The smallest MTU among the interfaces tunnel packets leave through.
    pub(super) fn carrier_mtu(&self) -> Option<u32> {
        match self {
            Self::Edge { links, .. } => links.iter().filter(|l| l.weight > 0).map(|l| l.interface.mtu).min(),
            Self::Hub { interface, .. } => Some(interface.mtu),
        }
    }

    /// Next hops the data path hands packets to (Ethernet-framed links only).
    pub(super) fn next_hops(&self) -> Vec<(u32, Ipv4Addr)> {
        match self {
            Self::Edge { links, .. } => links
                .iter()
                .filter(|l| l.interface.l2_len != 0)
                .filter_map(|l| l.gateway.map(|g| (l.interface.index, g)))
                .collect(),
            Self::Hub { interface, gateway, .. } => gateway.iter().map(|g| (interface.index, *g)).collect(),
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

async fn resolve_link(net: &Net, index: usize, link: &LinkSection) -> Result<ResolvedLink, StartError> {
    let field = format!("links[{index}].interface");
    let Some(ifname) = link.interface.as_deref() else {
        return Err(StartError::Missing { field });
    };
    let interface = net.interface(ifname).await.map_err(|source| StartError::Interface { field, source })?;
    let address = match link.address {
        Some(a) => a,
        None => net
            .first_ipv4(interface.index)
            .await?
            .ok_or_else(|| StartError::LinkWithoutAddress { index, interface: ifname.into() })?,
    };
    let gateway = match link.gateway {
        Some(g) => Some(g),
        None => net.default_gateway(interface.index).await?,
    };
    if gateway.is_none() && interface.l2_len != 0 {
        return Err(StartError::LinkWithoutGateway { index, interface: ifname.into() });
    }
    if !interface.up {
        warn!(link = link.id, interface = ifname, "link interface is down");
    }
    Ok(ResolvedLink { id: link.id, interface, address, gateway, weight: link.weight })
}

pub(super) fn be(a: Ipv4Addr) -> u32 {
    u32::from(a).to_be()
}

/// How link `id` sends, on the edge or the hub.
pub fn link_tx(
    weight: u32,
    interface: &Interface,
    source: Ipv4Addr,
    next_hop: Option<Ipv4Addr>,
    port: u16,
) -> LinkTx {
    // No budget until the adaptive controller sets one.
    LinkTx::new(weight > 0, interface.index, source, next_hop, port, interface.mtu, interface.l2_len)
}
