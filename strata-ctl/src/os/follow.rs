//! How a link follows its interface through what the operating system does
//! to it: pure reactions to netlink events, decided here and carried out by
//! the daemon's shell (`crate::daemon::follower`).
//!
//! A link is bound to an interface (ifindex, name), a source address and a
//! next hop. Modems change all three under us: a new lease changes the
//! address, a USB reset removes the interface and brings it back under
//! another name and index, a lost bearer drops the carrier. Each event maps
//! to at most a few [`Reaction`]s:
//!
//! * losses (carrier down, interface removed, address gone with no other)
//!   **demote** at once — faster than the in-band silence bound;
//! * gains (a new address, an interface that *is* this link appearing, the
//!   carrier back) **re-bind** the link and let the in-band lifecycle start
//!   probing it again — never make it usable on their own (brief,
//!   principle 1).
//!
//! Whether an appearing interface is this link is the caller's answer
//! (`same_link`): the configured name, or a stable identity such as the USB
//! path and serial of the modem (see [`crate::os`]).

use std::net::IpAddr;

use crate::os::netlink::NetEvent;

/// Where a link is bound now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Current ifindex; `None` while the interface is missing.
    pub index: Option<u32>,
    /// Outer source address (its family is the link's).
    pub address: IpAddr,
    /// The configuration fixed the address: never re-addressed.
    pub address_pinned: bool,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// The configuration fixed the next hop.
    pub gateway_pinned: bool,
    /// The last (re-)bind set everything up (an address was there, the
    /// routes were accepted); else the next sign of life retries it.
    pub complete: bool,
}

/// What to do about one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reaction {
    /// Stop sending on the link now (the in-band lifecycle re-admits it).
    Demote(&'static str),
    /// The interface is gone: remember the link as missing.
    Missing,
    /// Re-bind the link to this interface (it came back, maybe renamed).
    Adopt(crate::os::net::Interface),
    /// Re-read the interface's addresses and re-bind to one: `prefer` if it
    /// is still there (the address just added), else the first.
    Readdress {
        /// The address to prefer.
        prefer: Option<IpAddr>,
    },
    /// Re-read the next hop.
    Regateway,
    /// The carrier is back: probe the link now instead of after a cooldown.
    Returned,
}

/// The reactions of a link bound as `binding` to `event`. `same_link` says
/// whether an interface in a link event is this link (asked only while the
/// link's interface is missing).
pub fn react(
    binding: &Binding,
    event: &NetEvent,
    same_link: impl Fn(&crate::os::net::Interface) -> bool,
) -> Vec<Reaction> {
    let ours = binding.index == Some(event.index());
    // A link speaks one family: addresses and routes of the other are not
    // its business (an IPv6-only carrier's interface may still get an IPv4
    // link-local address, a dual-stack one both).
    let family = binding.address.is_ipv4();
    match event {
        NetEvent::AddressAdded { address, .. } | NetEvent::AddressRemoved { address, .. }
            if address.is_ipv4() != family =>
        {
            Vec::new()
        }
        NetEvent::DefaultRoute { v6, .. } if *v6 == family => Vec::new(),
        NetEvent::Link(interface) if ours => {
            // A link message for our interface: carrier and admin state.
            if !interface.up || !interface.carrier {
                vec![Reaction::Demote(if interface.up { "carrier down" } else { "interface down" })]
            } else if !binding.complete {
                vec![Reaction::Readdress { prefer: None }, Reaction::Returned]
            } else {
                vec![Reaction::Returned]
            }
        }
        // Adopted once it can carry (up, with a carrier; the kernel sends
        // a link message for each step of a new interface's set-up): bound
        // earlier, the next hop's first resolution went out on a link not
        // ready for it, and the kernel retried only a second later.
        NetEvent::Link(interface)
            if binding.index.is_none() && interface.up && interface.carrier && same_link(interface) =>
        {
            vec![Reaction::Adopt(interface.clone())]
        }
        NetEvent::AddressAdded { address, .. } if ours && !binding.complete => {
            vec![Reaction::Readdress { prefer: Some(*address) }]
        }
        NetEvent::LinkRemoved { .. } if ours => {
            vec![Reaction::Demote("interface removed"), Reaction::Missing]
        }
        NetEvent::AddressAdded { address, .. }
            if ours && !binding.address_pinned && *address != binding.address =>
        {
            vec![Reaction::Readdress { prefer: Some(*address) }]
        }
        NetEvent::AddressRemoved { address, .. }
            if ours && !binding.address_pinned && *address == binding.address =>
        {
            vec![Reaction::Readdress { prefer: None }]
        }
        NetEvent::DefaultRoute { gateway, .. }
            if ours && !binding.gateway_pinned && *gateway != binding.gateway =>
        {
            vec![Reaction::Regateway]
        }
        _ => Vec::new(),
    }
}

/// The address to bind to among an interface's `addresses`: `prefer` if
/// present, else the current one if still present, else the first.
/// `None`: the interface has no address of the link's family (the link
/// cannot send).
pub fn choose_address(addresses: &[IpAddr], prefer: Option<IpAddr>, current: IpAddr) -> Option<IpAddr> {
    prefer
        .filter(|p| addresses.contains(p))
        .or_else(|| addresses.contains(&current).then_some(current))
        .or_else(|| addresses.first().copied())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::os::net::{Interface, InterfaceCounters};

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn bound() -> Binding {
        Binding {
            index: Some(7),
            address: v4(100, 64, 2, 2),
            address_pinned: false,
            gateway: Some(v4(100, 64, 2, 1)),
            gateway_pinned: false,
            complete: true,
        }
    }

    fn interface(index: u32, name: &str, up: bool, carrier: bool) -> Interface {
        Interface {
            name: name.into(),
            index,
            mtu: 1500,
            l2_len: 14,
            up,
            carrier,
            mac: Some([2, 0, 0, 0, 0, 2]),
            counters: InterfaceCounters::default(),
        }
    }

    fn never(_: &Interface) -> bool {
        false
    }

    #[test]
    fn carrier_and_admin_state_of_our_interface_demote_and_return() {
        let b = bound();
        let react = |i| react(&b, &NetEvent::Link(i), never);
        assert_eq!(react(interface(7, "wwan0", true, false)), [Reaction::Demote("carrier down")]);
        assert_eq!(react(interface(7, "wwan0", false, false)), [Reaction::Demote("interface down")]);
        assert_eq!(react(interface(7, "wwan0", true, true)), [Reaction::Returned]);
        assert!(react(interface(8, "wwan1", true, false)).is_empty(), "another interface");
    }

    #[test]
    fn an_incomplete_binding_is_retried_on_the_next_sign_of_life() {
        let b = Binding { complete: false, ..bound() };
        assert_eq!(
            react(&b, &NetEvent::Link(interface(7, "wwan1", true, true)), never),
            [Reaction::Readdress { prefer: None }, Reaction::Returned]
        );
        let same = NetEvent::AddressAdded { index: 7, address: b.address };
        assert_eq!(react(&b, &same, never), [Reaction::Readdress { prefer: Some(b.address) }]);
    }

    #[test]
    fn a_removed_interface_demotes_and_its_return_under_another_name_is_adopted() {
        let mut b = bound();
        let gone = NetEvent::LinkRemoved { index: 7, name: Some("wwan0".into()) };
        assert_eq!(react(&b, &gone, never), [Reaction::Demote("interface removed"), Reaction::Missing]);
        b.index = None;
        let back = interface(12, "wwan1", true, true);
        assert_eq!(
            react(&b, &NetEvent::Link(back.clone()), |i| i.name == "wwan1"),
            [Reaction::Adopt(back.clone())]
        );
        assert!(react(&b, &NetEvent::Link(back), never).is_empty(), "not this link");
        let not_ready = interface(12, "wwan1", true, false);
        assert!(react(&b, &NetEvent::Link(not_ready), |_| true).is_empty(), "adopted once it has a carrier");
        // Only a missing link adopts: a bound one ignores strangers.
        let b = bound();
        assert!(react(&b, &NetEvent::Link(interface(12, "wwan1", true, true)), |_| true).is_empty());
    }

    #[test]
    fn addresses_rebind_unless_pinned() {
        let b = bound();
        let new = v4(100, 64, 2, 3);
        let added = NetEvent::AddressAdded { index: 7, address: new };
        assert_eq!(react(&b, &added, never), [Reaction::Readdress { prefer: Some(new) }]);
        let removed = NetEvent::AddressRemoved { index: 7, address: b.address };
        assert_eq!(react(&b, &removed, never), [Reaction::Readdress { prefer: None }]);
        let other = NetEvent::AddressRemoved { index: 7, address: new };
        assert!(react(&b, &other, never).is_empty(), "not the bound address");
        let same = NetEvent::AddressAdded { index: 7, address: b.address };
        assert!(react(&b, &same, never).is_empty());
        let pinned = Binding { address_pinned: true, ..bound() };
        assert!(react(&pinned, &added, never).is_empty());
        assert!(react(&pinned, &removed, never).is_empty());
        let elsewhere = NetEvent::AddressAdded { index: 9, address: new };
        assert!(react(&b, &elsewhere, never).is_empty());
    }

    #[test]
    fn a_changed_default_route_rereads_the_gateway() {
        let b = bound();
        let moved =
            NetEvent::DefaultRoute { index: 7, gateway: Some(v4(100, 64, 2, 254)), v6: false, added: true };
        assert_eq!(react(&b, &moved, never), [Reaction::Regateway]);
        let same = NetEvent::DefaultRoute { index: 7, gateway: b.gateway, v6: false, added: true };
        assert!(react(&b, &same, never).is_empty());
        let pinned = Binding { gateway_pinned: true, ..bound() };
        assert!(react(&pinned, &moved, never).is_empty());
    }

    #[test]
    fn the_address_chosen_prefers_the_new_then_the_current_then_the_first() {
        let [a, b, c] = [2, 3, 4].map(|h| v4(100, 64, 2, h));
        assert_eq!(choose_address(&[a, b], Some(b), a), Some(b));
        assert_eq!(choose_address(&[a, b], Some(c), b), Some(b), "preferred already gone");
        assert_eq!(choose_address(&[b, c], None, a), Some(b));
        assert_eq!(choose_address(&[], Some(a), a), None);
    }

    #[test]
    fn a_link_follows_only_its_own_family() {
        let b = bound();
        let v6: IpAddr = "2001:db8:2::3".parse().unwrap();
        let added = NetEvent::AddressAdded { index: 7, address: v6 };
        assert!(react(&b, &added, never).is_empty(), "an IPv6 address does not move an IPv4 link");
        let route6 = NetEvent::DefaultRoute { index: 7, gateway: Some(v6), v6: true, added: true };
        assert!(react(&b, &route6, never).is_empty());
        // An IPv6 link: IPv4 events pass it by, its own family's move it.
        let b6 = Binding {
            address: "2001:db8:2::2".parse().unwrap(),
            gateway: Some(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1))),
            ..bound()
        };
        assert!(
            react(&b6, &NetEvent::AddressAdded { index: 7, address: v4(169, 254, 0, 9) }, never).is_empty()
        );
        assert_eq!(react(&b6, &added, never), [Reaction::Readdress { prefer: Some(v6) }]);
        assert_eq!(react(&b6, &route6, never), [Reaction::Regateway]);
        let route4 = NetEvent::DefaultRoute { index: 7, gateway: None, v6: false, added: false };
        assert!(react(&b6, &route4, never).is_empty());
    }
}
