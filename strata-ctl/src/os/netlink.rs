//! The netlink advisor: what the kernel announces about interfaces,
//! addresses and routes, of both families, as it happens.
//!
//! rtnetlink multicast groups deliver a message for every change the kernel
//! makes — an interface appearing, losing its carrier, being renamed or
//! removed; an address added or deleted; a route added or deleted — to every
//! socket subscribed in the same network namespace, within microseconds and
//! without polling. This module subscribes to the link, address and route
//! groups of IPv4 and IPv6 and turns each message into a [`NetEvent`]; what the
//! daemon does with them is decided in [`crate::os::follow`].
//!
//! Multicast delivery is best effort: a socket whose receive buffer is full
//! loses messages (the kernel reports `ENOBUFS`). The buffer is enlarged to
//! make that unlikely, and nothing depends on every event arriving: the
//! in-band channel notices a link that went quiet whatever the OS said.

use std::net::IpAddr;

use futures::StreamExt as _;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope},
    link::LinkAttribute,
    route::{RouteAddress, RouteAttribute, RouteMessage},
};
use rtnetlink::{MulticastGroup, packet_core::NetlinkPayload, sys::AsyncSocket as _};
use tokio::sync::mpsc;

use crate::os::net::{Interface, interface_of};

/// Receive buffer of the subscription: a few thousand messages, so a burst
/// (a modem re-enumerating produces tens) never overflows it.
const RECEIVE_BUFFER: usize = 1 << 20;

/// One change the kernel announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetEvent {
    /// An interface appeared or changed (flags, carrier, name, MTU).
    Link(Interface),
    /// An interface was removed.
    LinkRemoved {
        /// Its ifindex.
        index: u32,
        /// Its name, when the message carried it.
        name: Option<String>,
    },
    /// An address was added to an interface (IPv4, or a global IPv6 one).
    AddressAdded {
        /// The interface.
        index: u32,
        /// The address.
        address: IpAddr,
    },
    /// An address was removed from an interface.
    AddressRemoved {
        /// The interface.
        index: u32,
        /// The address.
        address: IpAddr,
    },
    /// A default route through an interface was added or removed.
    DefaultRoute {
        /// The interface.
        index: u32,
        /// Its gateway, if it has one.
        gateway: Option<IpAddr>,
        /// An IPv6 route (else IPv4).
        v6: bool,
        /// Added (or replaced), not removed.
        added: bool,
    },
}

impl NetEvent {
    /// The interface the event is about.
    pub fn index(&self) -> u32 {
        match self {
            Self::Link(i) => i.index,
            Self::LinkRemoved { index, .. }
            | Self::AddressAdded { index, .. }
            | Self::AddressRemoved { index, .. }
            | Self::DefaultRoute { index, .. } => *index,
        }
    }
}

/// Why the advisor could not subscribe.
#[derive(Debug, thiserror::Error)]
#[error("cannot subscribe to rtnetlink events: {0}")]
pub struct SubscribeError(#[source] std::io::Error);

/// Subscribes to link, address and route changes of this network namespace.
/// Returns once subscribed; events then flow to `events` until its receiver
/// is dropped.
pub fn watch(events: mpsc::Sender<NetEvent>) -> Result<tokio::task::JoinHandle<()>, SubscribeError> {
    let (mut connection, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv6Route,
    ])
    .map_err(SubscribeError)?;
    if let Err(e) = connection.socket_mut().socket_mut().set_rx_buf_sz(RECEIVE_BUFFER) {
        tracing::debug!("netlink advisor keeps the default receive buffer: {e}");
    }
    let driver = tokio::spawn(connection);
    Ok(tokio::spawn(async move {
        while let Some((message, _)) = messages.next().await {
            let NetlinkPayload::InnerMessage(message) = message.payload else { continue };
            for event in translate(message) {
                if events.send(event).await.is_err() {
                    driver.abort();
                    return;
                }
            }
        }
        tracing::warn!("rtnetlink subscription ended; links follow in-band evidence only");
    }))
}

/// The events one kernel message means (none for what is not followed).
pub fn translate(message: RouteNetlinkMessage) -> Vec<NetEvent> {
    match message {
        RouteNetlinkMessage::NewLink(m) => interface_of(&m).map(NetEvent::Link).into_iter().collect(),
        RouteNetlinkMessage::DelLink(m) => vec![NetEvent::LinkRemoved {
            index: m.header.index,
            name: m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            }),
        }],
        RouteNetlinkMessage::NewAddress(m) => address_of(&m)
            .map(|(index, address)| NetEvent::AddressAdded { index, address })
            .into_iter()
            .collect(),
        RouteNetlinkMessage::DelAddress(m) => address_of(&m)
            .map(|(index, address)| NetEvent::AddressRemoved { index, address })
            .into_iter()
            .collect(),
        RouteNetlinkMessage::NewRoute(m) => default_route(&m, true).into_iter().collect(),
        RouteNetlinkMessage::DelRoute(m) => default_route(&m, false).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The interface and local address of an address message: IPv4, or IPv6
/// of global scope once usable (a link-local one reaches no hub; one in
/// duplicate address detection cannot be bound yet, and the kernel sends
/// another message when it can).
fn address_of(m: &AddressMessage) -> Option<(u32, IpAddr)> {
    // On point-to-point interfaces `Address` is the peer; `Local` is ours.
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(a) => Some(*a),
        _ => None,
    });
    let address = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(a) => Some(*a),
        _ => None,
    });
    let a = local.or(address)?;
    if let IpAddr::V6(v6) = a
        && (m.header.scope != AddressScope::Universe
            || v6.is_unicast_link_local()
            || m.header.flags.contains(AddressHeaderFlags::Tentative))
    {
        return None;
    }
    Some((m.header.index, a))
}

/// A default route's interface and gateway; `None` for other routes.
fn default_route(m: &RouteMessage, added: bool) -> Option<NetEvent> {
    if m.header.destination_prefix_length != 0 {
        return None;
    }
    let index = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })?;
    let gateway = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(IpAddr::V4(*g)),
        RouteAttribute::Gateway(RouteAddress::Inet6(g)) => Some(IpAddr::V6(*g)),
        _ => None,
    });
    let v6 = m.header.address_family == AddressFamily::Inet6;
    Some(NetEvent::DefaultRoute { index, gateway, v6, added })
}
