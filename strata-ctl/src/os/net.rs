//! What the daemon asks of and tells the kernel's network configuration, over
//! rtnetlink: interface facts (index, MTU, link-layer type, addresses, default
//! gateway) and setting up the tunnel device (MTU, addresses, up).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use futures::TryStreamExt as _;
use netlink_packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressHeaderFlags, AddressScope},
    link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage},
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourFlags, NeighbourMessage,
        NeighbourState,
    },
    route::{RouteAddress, RouteAttribute},
    rule::{RuleAttribute, RuleMessage},
    tc::{TcAttribute, TcHandle, TcStats2},
};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::config::Cidr;

/// An address family: which outer header a link speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `address`.
    pub const fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        })
    }
}

/// A failed netlink operation, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The interface does not exist.
    #[error("interface {0:?} not found (is the modem plugged in and the interface named as configured?)")]
    NoInterface(String),
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
}

/// What an interface's root queueing discipline holds and has dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QdiscStats {
    /// The qdisc's kind (`noqueue`, `fq_codel`, `tbf`, …).
    pub kind: String,
    /// Bytes waiting in it.
    pub backlog_bytes: u64,
    /// Packets waiting in it.
    pub qlen: u64,
    /// Packets it dropped.
    pub drops: u64,
    /// Packets that met its rate limit.
    pub overlimits: u64,
}

/// Facts about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// ifindex.
    pub index: u32,
    /// MTU.
    pub mtu: u32,
    /// Link-layer header length: 14 for Ethernet framing, 0 for raw IP
    /// (wwan raw-IP, TUN, point-to-point).
    pub l2_len: u32,
    /// Administratively up.
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`): a modem that lost its bearer, or
    /// a veth whose peer went down, is up without it.
    pub carrier: bool,
    /// Hardware address (Ethernet-framed links).
    pub mac: Option<[u8; 6]>,
    /// Errors and drops the driver counted, both directions.
    pub counters: InterfaceCounters,
}

/// What an interface's driver counted as lost (`IFLA_STATS64`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Received packets dropped (no buffer, no handler, …).
    pub rx_dropped: u64,
    /// Packets dropped before transmission.
    pub tx_dropped: u64,
}

/// The per-link policy routing [`Net::add_link_routing`] installed.
#[derive(Clone, Debug)]
pub struct LinkRouting {
    route: netlink_packet_route::route::RouteMessage,
    rule: RuleMessage,
}

/// An rtnetlink connection.
#[derive(Clone, Debug)]
pub struct Net {
    handle: Handle,
}

impl Net {
    /// Opens a connection; its driver task runs on the current tokio runtime.
    pub fn connect() -> Result<Self, NetError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetError::Socket)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Root qdisc statistics of every interface, by ifindex.
    pub async fn root_qdiscs(&self) -> Result<Vec<(u32, QdiscStats)>, NetError> {
        let mut dump = self.handle.qdisc().get().execute();
        let mut out = Vec::new();
        while let Some(msg) = dump
            .try_next()
            .await
            .map_err(|source| NetError::Netlink { what: "reading qdisc statistics".into(), source })?
        {
            if msg.header.parent != TcHandle::ROOT {
                continue;
            }
            let mut stats = QdiscStats::default();
            for attr in &msg.attributes {
                match attr {
                    TcAttribute::Kind(kind) => stats.kind.clone_from(kind),
                    TcAttribute::Stats2(all) => {
                        for s in all {
                            if let TcStats2::Queue(q) = s {
                                stats.backlog_bytes = u64::from(q.backlog);
                                stats.qlen = u64::from(q.qlen);
                                stats.drops = u64::from(q.drops);
                                stats.overlimits = u64::from(q.overlimits);
                            }
                        }
                    }
                    _ => {}
                }
            }
            out.push((msg.header.index as u32, stats));
        }
        Ok(out)
    }

    /// Looks an interface up by name.
    pub async fn interface(&self, name: &str) -> Result<Interface, NetError> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(interface_from(name, &msg)),
            Ok(None) => Err(NetError::NoInterface(name.into())),
            // ENODEV comes back as an error message.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                Err(NetError::NoInterface(name.into()))
            }
            Err(source) => Err(NetError::Netlink { what: format!("looking up {name}"), source }),
        }
    }

    /// Looks an interface up by index; `None` if it is gone.
    pub async fn interface_by_index(&self, index: u32) -> Result<Option<Interface>, NetError> {
        let mut links = self.handle.link().get().match_index(index).execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(interface_of(&msg)),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(source) => Err(NetError::Netlink { what: format!("looking up ifindex {index}"), source }),
        }
    }

    /// Every interface of this network namespace.
    pub async fn interfaces(&self) -> Result<Vec<Interface>, NetError> {
        let mut dump = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(msg) = dump
            .try_next()
            .await
            .map_err(|source| NetError::Netlink { what: "listing interfaces".into(), source })?
        {
            out.extend(interface_of(&msg));
        }
        Ok(out)
    }

    /// The first IPv4 address of an interface.
    pub async fn first_ipv4(&self, index: u32) -> Result<Option<Ipv4Addr>, NetError> {
        Ok(self.ipv4_addresses(index).await?.into_iter().next())
    }

    /// Every IPv4 address of an interface, in the kernel's order (primary
    /// addresses first, each subnet's in the order they were added).
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Addr>, NetError> {
        Ok(self
            .addresses(index, Family::V4)
            .await?
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect())
    }

    /// The addresses of one family an interface can send from to the
    /// internet, in the kernel's order. IPv6: global addresses only — a
    /// link-local one (every IPv6 interface has one) reaches no hub, and one
    /// still in duplicate address detection cannot be bound yet.
    pub async fn addresses(&self, index: u32, family: Family) -> Result<Vec<IpAddr>, NetError> {
        let mut addrs = self.handle.address().get().set_link_index_filter(index).execute();
        let mut out = Vec::new();
        while let Some(msg) = addrs.try_next().await.map_err(|source| NetError::Netlink {
            what: format!("listing addresses of ifindex {index}"),
            source,
        })? {
            // The kernel may ignore the index filter on dumps (no strict
            // checking on this socket), so it is checked here too.
            if msg.header.index != index {
                continue;
            }
            let local = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(a) => Some(*a),
                _ => None,
            });
            let address = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(a) => Some(*a),
                _ => None,
            });
            let Some(a) = local.or(address) else { continue };
            let usable = match a {
                IpAddr::V4(_) => family == Family::V4,
                IpAddr::V6(v6) => {
                    family == Family::V6
                        && msg.header.scope == AddressScope::Universe
                        && !v6.is_unicast_link_local()
                        && !msg.header.flags.contains(AddressHeaderFlags::Tentative)
                }
            };
            if usable {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The gateway of a default route through this interface, in any table.
    pub async fn default_gateway(&self, index: u32) -> Result<Option<Ipv4Addr>, NetError> {
        Ok(match self.default_gateway_of(index, Family::V4).await? {
            Some(IpAddr::V4(g)) => Some(g),
            _ => None,
        })
    }

    /// The gateway of a default route of `family` through this interface,
    /// in any table.
    pub async fn default_gateway_of(&self, index: u32, family: Family) -> Result<Option<IpAddr>, NetError> {
        let request = match family {
            Family::V4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
            Family::V6 => RouteMessageBuilder::<Ipv6Addr>::new().build(),
        };
        let mut routes = self.handle.route().get(request).execute();
        while let Some(msg) = routes
            .try_next()
            .await
            .map_err(|source| NetError::Netlink { what: format!("listing {family} routes"), source })?
        {
            if msg.header.destination_prefix_length != 0 {
                continue;
            }
            let oif = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            let gateway = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(IpAddr::V4(*g)),
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => Some(IpAddr::V6(*g)),
                _ => None,
            });
            if oif == Some(index)
                && let Some(g) = gateway
            {
                return Ok(Some(g));
            }
        }
        Ok(None)
    }

    /// Prepares the tunnel device: MTU, one segment per packet, up.
    ///
    /// `gso_max_segs 1` makes TCP hand the device one MSS-sized packet at a
    /// time instead of GSO super-packets, which would be segmented only after
    /// the tc egress hook — every segment then carrying the same sequence
    /// number. Measured in the lab: without it a TCP transfer through the
    /// tunnel stalls with every data packet counted as a `gso` drop.
    pub async fn configure_tunnel_device(&self, index: u32, mtu: u32) -> Result<(), NetError> {
        let msg = LinkUnspec::new_with_index(index)
            .mtu(mtu)
            .append_extra_attribute(LinkAttribute::GsoMaxSegs(1))
            .up()
            .build();
        self.handle.link().set(msg).execute().await.map_err(|source| NetError::Netlink {
            what: format!("setting MTU {mtu}, gso_max_segs 1 and up on ifindex {index}"),
            source,
        })
    }

    /// Asks the kernel to keep `gateway`'s link-layer address on interface
    /// `index` resolved at all times (a *managed* neighbour entry, kernel ≥ 5.16,
    /// refreshed in the background).
    ///
    /// Why: a packet that `bpf_redirect_neigh` hands to a neighbour still in
    /// resolution is queued behind ARP and, on this kernel (6.18), leaves
    /// without its Ethernet header once the reply arrives — the carrier drops
    /// it as `UNHANDLED_PROTO` (seen with the `skb:kfree_skb` tracepoint: the
    /// first packet of every link was lost). With the entry kept resolved the
    /// data path never meets an unresolved next hop.
    pub async fn keep_neighbour_resolved(&self, index: u32, gateway: IpAddr) -> Result<(), NetError> {
        let mut request = self
            .handle
            .neighbours()
            .add(index, gateway)
            .state(NeighbourState::None)
            .flags(NeighbourFlags::ExtLearned)
            .replace();
        request.message_mut().attributes.push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
        request.execute().await.map_err(|source| NetError::Netlink {
            what: format!("adding a managed neighbour entry for {gateway} on ifindex {index}"),
            source,
        })
    }

    /// Removes the entry [`Net::keep_neighbour_resolved`] added.
    pub async fn forget_neighbour(&self, index: u32, gateway: IpAddr) -> Result<(), NetError> {
        let mut message = NeighbourMessage::default();
        message.header.ifindex = index;
        let (family, destination) = match gateway {
            IpAddr::V4(g) => (AddressFamily::Inet, NeighbourAddress::Inet(g)),
            IpAddr::V6(g) => (AddressFamily::Inet6, NeighbourAddress::Inet6(g)),
        };
        message.header.family = family;
        message.attributes.push(NeighbourAttribute::Destination(destination));
        self.handle.neighbours().del(message).execute().await.map_err(|source| NetError::Netlink {
            what: format!("removing the neighbour entry for {gateway} on ifindex {index}"),
            source,
        })
    }

    /// Routes traffic *from* a link's own address out of that link: a default
    /// route in a table of its own, and a rule sending the address there.
    /// Probes bound to the address then leave on the link they measure,
    /// whatever the main table says. Returns what to hand to
    /// [`Net::remove_link_routing`]. Of the address's family: an IPv6
    /// link's route and rule are IPv6 ones (the tables are per family, so
    /// the same table number serves either).
    pub async fn add_link_routing(
        &self,
        index: u32,
        address: IpAddr,
        gateway: Option<IpAddr>,
        table: u32,
    ) -> Result<LinkRouting, NetError> {
        let route = match (address, gateway) {
            (IpAddr::V4(_), g) => {
                let mut route =
                    RouteMessageBuilder::<Ipv4Addr>::new().table_id(table).output_interface(index);
                if let Some(IpAddr::V4(g)) = g {
                    route = route.gateway(g);
                }
                route.build()
            }
            (IpAddr::V6(_), g) => {
                let mut route =
                    RouteMessageBuilder::<Ipv6Addr>::new().table_id(table).output_interface(index);
                if let Some(IpAddr::V6(g)) = g {
                    route = route.gateway(g);
                }
                route.build()
            }
        };
        self.handle.route().add(route.clone()).replace().execute().await.map_err(|source| {
            NetError::Netlink { what: format!("adding the default route of table {table}"), source }
        })?;
        let rule = self
            .handle
            .rule()
            .add()
            .table_id(table)
            .priority(table)
            .action(netlink_packet_route::rule::RuleAction::ToTable);
        let what = || format!("adding the rule from {address} lookup {table}");
        let (rule_message, prefix_len) = match address {
            IpAddr::V4(a) => {
                let mut rule = rule.v4().source_prefix(a, 32);
                (rule.message_mut().clone(), 32)
            }
            IpAddr::V6(a) => {
                let mut rule = rule.v6().source_prefix(a, 128);
                (rule.message_mut().clone(), 128)
            }
        };
        // A daemon that was killed left its rules: one at this priority is
        // ours (the priority is the link's table). The same rule is reused
        // (adding it again is refused: rules are created exclusively); one
        // for another address (the link's address changed meanwhile) is
        // replaced, or probes from the new address would find no route.
        let mut present = false;
        for old in self.rules_at(table, address.is_ipv6()).await? {
            if rule_source(&old) == Some(address)
                && old.header.src_len == prefix_len
                && rule_table(&old) == table
            {
                present = true;
            } else {
                self.handle.rule().del(old).execute().await.map_err(|source| NetError::Netlink {
                    what: format!("removing a stale rule at priority {table}"),
                    source,
                })?;
            }
        }
        if !present {
            let mut add = self.handle.rule().add();
            *add.message_mut() = rule_message.clone();
            add.execute().await.map_err(|source| NetError::Netlink { what: what(), source })?;
        }
        Ok(LinkRouting { route, rule: rule_message })
    }

    /// The policy-routing rules of one family at `priority`.
    async fn rules_at(&self, priority: u32, v6: bool) -> Result<Vec<RuleMessage>, NetError> {
        let (version, family) =
            if v6 { (rtnetlink::IpVersion::V6, "IPv6") } else { (rtnetlink::IpVersion::V4, "IPv4") };
        let mut dump = self.handle.rule().get(version).execute();
        let mut out = Vec::new();
        while let Some(msg) = dump
            .try_next()
            .await
            .map_err(|source| NetError::Netlink { what: format!("listing {family} rules"), source })?
        {
            if msg.attributes.iter().any(|a| matches!(a, RuleAttribute::Priority(p) if *p == priority)) {
                out.push(msg);
            }
        }
        Ok(out)
    }

    /// Removes what [`Net::add_link_routing`] added.
    pub async fn remove_link_routing(&self, routing: LinkRouting) -> Result<(), NetError> {
        let LinkRouting { route, rule } = routing;
        let rule_result = self.handle.rule().del(rule).execute().await;
        self.handle
            .route()
            .del(route)
            .execute()
            .await
            .map_err(|source| NetError::Netlink { what: "removing a link's route".into(), source })?;
        rule_result.map_err(|source| NetError::Netlink { what: "removing a link's rule".into(), source })
    }

    /// Adds an address to an interface (an existing identical one is kept).
    pub async fn add_address(&self, index: u32, cidr: Cidr) -> Result<(), NetError> {
        self.handle.address().add(index, cidr.addr, cidr.prefix).replace().execute().await.map_err(|source| {
            NetError::Netlink {
                what: format!("adding {}/{} to ifindex {index}", cidr.addr, cidr.prefix),
                source,
            }
        })
    }
}

/// A rule's source selector.
fn rule_source(rule: &RuleMessage) -> Option<IpAddr> {
    rule.attributes.iter().find_map(|a| match a {
        RuleAttribute::Source(ip) => Some(*ip),
        _ => None,
    })
}

/// A rule's table (the attribute, for tables past 255; else the header's).
fn rule_table(rule: &RuleMessage) -> u32 {
    rule.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(rule.header.table))
}

/// An interface from a link message that names it.
pub(crate) fn interface_of(msg: &LinkMessage) -> Option<Interface> {
    let name = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })?;
    Some(interface_from(name, msg))
}

fn interface_from(name: &str, msg: &LinkMessage) -> Interface {
    let mtu = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(1500);
    let l2_len = match msg.header.link_layer_type {
        LinkLayerType::Ether => 14,
        _ => 0,
    };
    let mac = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
        _ => None,
    });
    let counters = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Stats64(s) => Some(InterfaceCounters {
                rx_errors: s.rx_errors,
                tx_errors: s.tx_errors,
                rx_dropped: s.rx_dropped,
                tx_dropped: s.tx_dropped,
            }),
            _ => None,
        })
        .unwrap_or_default();
    Interface {
        name: name.into(),
        index: msg.header.index,
        mtu,
        l2_len,
        up: msg.header.flags.contains(LinkFlags::Up),
        carrier: msg.header.flags.contains(LinkFlags::LowerUp),
        mac: mac.filter(|m| l2_len != 0 && *m != [0; 6]),
        counters,
    }
}
