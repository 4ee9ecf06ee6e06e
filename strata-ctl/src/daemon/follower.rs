//! The edge's links following their interfaces: the I/O half of
//! [`crate::os::follow`].
//!
//! Each link starts bound to the interface, address and next hop resolved
//! at start-up. What moves them is noticed two ways:
//!
//! * **netlink events** (tier `netlink` and above, [`crate::os::netlink`]):
//!   the kernel says at once that an address was added, an interface
//!   removed or its carrier lost;
//! * **in-band silence** (every tier, also `none`): the controller says a
//!   link has gone quiet for half its hold bound, and its interface is looked up
//!   again — by index, then by its configured name, then by identity — at
//!   most every [`RECHECK_EVERY`]. This is a question asked because probes
//!   went unanswered, not a subscription.
//!
//! Both produce the same [`Reaction`]s, carried out here: the kernel's link
//! entry (ifindex, source address, next hop, MTU, framing), the ingress
//! program on a new interface, the link's policy routing and its probe
//! socket. The controller only hears hints: a loss demotes, a return lets a
//! resting link be probed early.

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{net::UdpSocket, sync::watch};
use tracing::{info, warn};

use super::links::{ResolvedLink, link_tx, link_tx6};
use crate::{
    config::Config,
    control::controller::Behaviour,
    dataplane::datapath::{Datapath, Program},
    inband::prober,
    os::{
        follow::{Binding, Reaction, choose_address},
        identity::{LinkIdentity, Match},
        kind::infer,
        modem_manager::{EarlyWarning, ModemEvent, ModemReport, early_warning},
        net::{Family, Interface, LinkRouting, Net},
        netlink::NetEvent,
        sysfs::{Bus, LinkFacts},
        uevent::{Action as UAction, UEvent},
    },
    serve::view::{BindingView, ModemView},
};

/// How often a silent link's interface is looked up again, at most.
pub const RECHECK_EVERY: Duration = Duration::from_millis(200);

/// Routing tables of the links' own addresses: 1000 + link id.
pub const LINK_TABLE_BASE: u32 = 1000;

/// What the controller should hear about a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// Demote now.
    Lost(&'static str),
    /// Probe now if resting.
    Returned(&'static str),
    /// Re-bound to a new address: losses of the old one are not the link's.
    Rebound,
    /// The modem warned (handover, signal collapse): trust the link less
    /// for a moment.
    Caution(&'static str),
}

/// The adaptive controller's per-link channel: its routing and probe socket.
#[derive(Debug)]
pub struct ProbePath {
    /// Policy routing of the link's address (absent while it failed).
    pub routing: Option<LinkRouting>,
    /// Hands the prober a socket bound to the link's current address.
    pub socket: watch::Sender<Arc<UdpSocket>>,
}

/// What carrying out a reaction may touch: the kernel's link entry, the
/// host's routes and neighbours, the configuration, and the link's probe
/// path under adaptive control.
#[derive(Debug)]
pub struct Hands<'a> {
    /// The data plane.
    pub dp: &'a mut Datapath,
    /// rtnetlink.
    pub net: &'a Net,
    /// The configuration.
    pub config: &'a Config,
    /// The link's routing and probe socket (adaptive control only).
    pub path: Option<&'a mut ProbePath>,
}

/// One link's following state.
#[derive(Debug)]
struct Followed {
    id: u8,
    /// The name in the configuration.
    configured: String,
    /// What identifies the device (USB port, ids and serial; a stable
    /// MAC), captured while the interface was known: how a renamed
    /// interface is recognised.
    identity: Option<LinkIdentity>,
    address_pinned: bool,
    gateway_pinned: bool,
    missing: bool,
    complete: bool,
    last_check: Option<Instant>,
    rebinds: u64,
    /// What sysfs says the device is (read at start and on every re-bind).
    facts: Option<LinkFacts>,
    /// The ModemManager object of the link's modem, while known.
    modem: Option<(String, ModemReport)>,
    /// The last early warning, for status.
    warning: Option<String>,
    /// The carrier or interface went away since the next hop was last
    /// resolved.
    carrier_lost: bool,
}

/// Every edge link's following state.
#[derive(Debug)]
pub struct Follower {
    links: Vec<Followed>,
    /// A sysfs showing this network namespace's interfaces (`None`: none
    /// could be had, and links are recognised by name only).
    sysfs: Option<std::path::PathBuf>,
}

impl Follower {
    /// Follows `links` as configured in `config`; device identities are
    /// read from the sysfs at `sysfs`.
    pub fn new(config: &Config, links: &[ResolvedLink], sysfs: Option<&Path>) -> Self {
        let links = links
            .iter()
            .map(|l| {
                let section = config.links.iter().find(|s| s.id == l.id);
                let facts = sysfs.and_then(|root| facts_of(root, &l.interface.name));
                let identity = facts.as_ref().map(LinkIdentity::from_facts);
                if let Some(id) = &identity {
                    info!(link = l.id, interface = %l.interface.name, identity = %id.key(), "link identity");
                }
                Followed {
                    id: l.id,
                    configured: l.interface.name.clone(),
                    identity,
                    address_pinned: section.is_some_and(|s| s.address.is_some()),
                    gateway_pinned: section.is_some_and(|s| s.gateway.is_some()),
                    missing: false,
                    complete: true,
                    last_check: None,
                    rebinds: 0,
                    facts,
                    modem: None,
                    warning: None,
                    carrier_lost: false,
                }
            })
            .collect();
        Self { links, sysfs: sysfs.map(Path::to_path_buf) }
    }

    fn binding(&self, i: usize, link: &ResolvedLink) -> Binding {
        let f = &self.links[i];
        Binding {
            index: (!f.missing).then_some(link.interface.index),
            address: link.address,
            address_pinned: f.address_pinned,
            gateway: link.gateway,
            gateway_pinned: f.gateway_pinned,
            complete: f.complete,
        }
    }

    /// The reactions of every link to a netlink event, as (link position,
    /// reaction).
    pub fn on_event(&self, event: &NetEvent, links: &[ResolvedLink]) -> Vec<(usize, Reaction)> {
        let mut out = Vec::new();
        for (i, link) in links.iter().enumerate() {
            let f = &self.links[i];
            let same = |candidate: &Interface| is_same_link(f, candidate, self.sysfs.as_deref());
            out.extend(
                crate::os::follow::react(&self.binding(i, link), event, same).into_iter().map(|r| (i, r)),
            );
        }
        out
    }

    /// In-band trigger: link `i` went silent. Looks its interface up again
    /// (at most every [`RECHECK_EVERY`]) and returns what changed.
    pub async fn recheck(&mut self, net: &Net, i: usize, links: &[ResolvedLink]) -> Vec<Reaction> {
        let f = &mut self.links[i];
        if f.last_check.is_some_and(|t| t.elapsed() < RECHECK_EVERY) {
            return Vec::new();
        }
        f.last_check = Some(Instant::now());
        let link = &links[i];
        if !f.missing {
            match net.interface_by_index(link.interface.index).await {
                // Only what re-binding needs is asked: the in-band
                // lifecycle has already acted on the silence itself, so
                // carrier and admin state are left to it (and to the
                // netlink advisor, at the tiers that run one).
                Ok(Some(now)) => {
                    let addresses =
                        net.addresses(now.index, Family::of(link.address)).await.unwrap_or_default();
                    let moved = !addresses.contains(&link.address) || !f.complete;
                    return if !f.address_pinned && moved {
                        vec![Reaction::Readdress { prefer: None }]
                    } else {
                        Vec::new()
                    };
                }
                Ok(None) => return vec![Reaction::Missing],
                Err(e) => {
                    warn!(link = f.id, "looking up the link's interface: {e}");
                    return Vec::new();
                }
            }
        }
        // Missing: is it back, under its name or another?
        let candidates = net.interfaces().await.unwrap_or_default();
        let taken: Vec<u32> = links.iter().map(|l| l.interface.index).collect();
        candidates
            .into_iter()
            .filter(|c| c.up && c.carrier && !taken.contains(&c.index))
            .find(|c| is_same_link(f, c, self.sysfs.as_deref()))
            .map(Reaction::Adopt)
            .into_iter()
            .collect()
    }

    /// Carries out one reaction for link `i`; returns the controller's hint.
    pub async fn carry_out(
        &mut self,
        reaction: Reaction,
        i: usize,
        links: &mut [ResolvedLink],
        io: Hands<'_>,
    ) -> Option<Hint> {
        let net = io.net;
        let f = &mut self.links[i];
        let link = &mut links[i];
        match reaction {
            Reaction::Demote(what) => {
                f.carrier_lost = true;
                Some(Hint::Lost(what))
            }
            Reaction::Missing => {
                f.missing = true;
                f.complete = false;
                info!(link = f.id, interface = %link.interface.name, "link interface gone; waiting for it to return");
                None
            }
            Reaction::Returned => {
                // The next hop's resolution failed while there was no
                // carrier (its requests went nowhere) and would be retried
                // only at the kernel's next ARP retry, up to a second later,
                // with the first probes waiting behind it: asking for the
                // managed entry again has the kernel resolve it now
                // (measured, lab carrier-down: probe round trips normal
                // within 0.2 s; deleting the entry first instead left a
                // 1.2 s queue of probes).
                // Only after a loss: a carrying link's entry is left alone.
                if let Some(g) = link.gateway.filter(|_| std::mem::take(&mut f.carrier_lost))
                    && let Err(e) = net.keep_neighbour_resolved(link.interface.index, g).await
                {
                    tracing::debug!(link = f.id, "{e}");
                }
                Some(Hint::Returned("carrier up"))
            }
            Reaction::Adopt(interface) => {
                let mut new = link.clone();
                new.interface = interface;
                let addresses =
                    net.addresses(new.interface.index, Family::of(link.address)).await.unwrap_or_default();
                if !f.address_pinned
                    && let Some(a) = choose_address(&addresses, None, link.address)
                {
                    new.address = a;
                }
                f.missing = false;
                f.carrier_lost = true;
                f.complete = addresses.contains(&new.address) || f.address_pinned;
                if let Some(facts) =
                    self.sysfs.as_deref().and_then(|root| facts_of(root, &new.interface.name))
                {
                    f.identity.get_or_insert_with(|| LinkIdentity::from_facts(&facts));
                    f.facts = Some(facts);
                }
                rebind(f, link, new, io, "interface returned").await;
                Some(Hint::Returned("interface returned"))
            }
            Reaction::Readdress { prefer } => {
                let addresses = match net.addresses(link.interface.index, Family::of(link.address)).await {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(link = f.id, "reading the link's addresses: {e}");
                        return None;
                    }
                };
                match choose_address(&addresses, prefer, link.address) {
                    Some(a) if a != link.address || !f.complete => {
                        let mut new = link.clone();
                        new.address = a;
                        f.complete = true;
                        rebind(f, link, new, io, "address changed").await;
                        Some(Hint::Rebound)
                    }
                    Some(_) => None,
                    None => {
                        f.complete = false;
                        Some(Hint::Lost("no address"))
                    }
                }
            }
            Reaction::Regateway => {
                match net.default_gateway_of(link.interface.index, Family::of(link.address)).await {
                    Ok(Some(g)) if Some(g) != link.gateway => {
                        let mut new = link.clone();
                        new.gateway = Some(g);
                        rebind(f, link, new, io, "next hop changed").await;
                        None
                    }
                    _ => None,
                }
            }
        }
    }

    /// A kernel uevent: network devices coming and going become the same
    /// reactions as their netlink messages (the uevent may come first, or
    /// be the only one at the `enhanced` tier without netlink); a USB
    /// device removed under a link demotes it at once.
    pub async fn on_device(
        &self,
        event: &UEvent,
        net: &Net,
        links: &[ResolvedLink],
    ) -> Vec<(usize, Reaction)> {
        match (event.subsystem.as_str(), &event.action, event.ifindex) {
            ("net", UAction::Add | UAction::Move, Some(index)) => match net.interface_by_index(index).await {
                Ok(Some(interface)) => self.on_event(&NetEvent::Link(interface), links),
                _ => Vec::new(),
            },
            ("net", UAction::Remove, Some(index)) => {
                self.on_event(&NetEvent::LinkRemoved { index, name: event.interface.clone() }, links)
            }
            ("usb", UAction::Remove | UAction::Unbind, _) => self
                .links
                .iter()
                .enumerate()
                .filter(|(_, f)| !f.missing && under_usb_port(&event.devpath, f.identity.as_ref()))
                .map(|(i, _)| (i, Reaction::Demote("USB device removed")))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A ModemManager event: remembered per link (its net port is the
    /// link's interface, or its device is the link's USB device); a
    /// change that [`early_warning`] flags becomes a hint.
    pub fn on_modem(&mut self, event: ModemEvent, links: &[ResolvedLink]) -> Vec<(usize, Hint)> {
        let mut hints = Vec::new();
        match event {
            ModemEvent::Appeared(path, report) | ModemEvent::Changed(path, report) => {
                let at = self.links.iter().zip(links).position(|(f, l)| {
                    report.net_ports.contains(&l.interface.name)
                        || f.identity
                            .as_ref()
                            .and_then(|id| id.usb.as_ref())
                            .is_some_and(|usb| report.device.ends_with(&format!("/{}", usb.port_path)))
                });
                let before =
                    self.links.iter_mut().find_map(|f| f.modem.take_if(|(p, _)| *p == path)).map(|(_, r)| r);
                if let Some(i) = at {
                    let f = &mut self.links[i];
                    if let Some(before) = &before
                        && let Some(w) = early_warning(before, &report)
                    {
                        let (hint, text) = match &w {
                            EarlyWarning::Disconnected => {
                                (Hint::Lost("modem disconnected"), "disconnected".into())
                            }
                            EarlyWarning::Deregistered => {
                                (Hint::Lost("modem deregistered"), "deregistered".into())
                            }
                            EarlyWarning::SignalCollapse { rsrp_dbm, quality_pct } => {
                                let mut t = "signal collapse".to_string();
                                if let Some((a, b)) = rsrp_dbm {
                                    t += &format!(", rsrp {a:.0} → {b:.0} dBm");
                                }
                                if let Some((a, b)) = quality_pct {
                                    t += &format!(", quality {a} → {b} %");
                                }
                                (Hint::Caution("signal collapse"), t)
                            }
                            EarlyWarning::Handover { from, to } => {
                                let cell = |c: &Option<String>| c.clone().unwrap_or_else(|| "?".into());
                                let t = format!(
                                    "handover {} → {} (cell {} → {})",
                                    from.access,
                                    to.access,
                                    cell(&from.cell_id),
                                    cell(&to.cell_id)
                                );
                                (Hint::Caution("handover"), t)
                            }
                        };
                        info!(link = f.id, warning = %text, "modem early warning");
                        f.warning = Some(text);
                        hints.push((i, hint));
                    }
                    f.modem = Some((path, report));
                }
            }
            ModemEvent::Gone(path) => {
                for f in &mut self.links {
                    f.modem.take_if(|(p, _)| *p == path);
                }
            }
            ModemEvent::ServiceLost(_) => {
                for f in &mut self.links {
                    f.modem = None;
                }
            }
        }
        hints
    }

    /// What the OS knows of each link, with its kind inferred from sysfs,
    /// the modem and `behaviour` (in-band, by link id; empty without the
    /// adaptive controller).
    pub fn view(&self, links: &[ResolvedLink], behaviour: &[(u8, Behaviour)]) -> Vec<BindingView> {
        let none = Behaviour::default();
        self.links
            .iter()
            .zip(links)
            .map(|(f, l)| {
                let b = behaviour.iter().find(|(id, _)| *id == f.id).map_or(&none, |(_, b)| b);
                let tech = f.modem.as_ref().map(|(_, m)| m.access.to_string()).filter(|t| !t.is_empty());
                let guess = infer(f.facts.as_ref(), b, tech.as_deref());
                BindingView {
                    id: f.id,
                    device: l.interface.name.clone(),
                    index: if f.missing { 0 } else { l.interface.index },
                    address: l.address.to_string(),
                    missing: f.missing,
                    rebinds: f.rebinds,
                    identity: f.identity.as_ref().map(LinkIdentity::key),
                    facts: f.facts.as_ref().map(summary).unwrap_or_default(),
                    kind: guess.kind.name(),
                    kind_detail: guess.kind.to_string(),
                    kind_confidence: guess.confidence,
                    kind_reasons: guess.reasons,
                    modem: f.modem.as_ref().map(|(_, m)| ModemView {
                        state: format!("{:?}", m.state).to_lowercase(),
                        access: m.access.to_string(),
                        operator: m.operator.clone(),
                        cell_id: m.cell_id.clone(),
                        signal_quality_pct: m.signal_quality_pct,
                        rsrp_dbm: m.rsrp_dbm,
                        rsrq_db: m.rsrq_db,
                        sinr_db: m.sinr_db,
                        last_warning: f.warning.clone(),
                    }),
                }
            })
            .collect()
    }

    /// The configured interface name of link `id`: its stable label.
    pub fn configured(&self, id: u8) -> Option<&str> {
        self.links.iter().find(|f| f.id == id).map(|f| f.configured.as_str())
    }
}

/// Whether `candidate` is the link `f` (asked while its interface is
/// missing): its configured name, or the same device by identity (USB
/// port, ids and serial; or a stable MAC).
fn is_same_link(f: &Followed, candidate: &Interface, sysfs: Option<&Path>) -> bool {
    if candidate.name == f.configured {
        return true;
    }
    let (Some(known), Some(root)) = (&f.identity, sysfs) else { return false };
    identity_of(root, &candidate.name)
        .is_some_and(|c| matches!(known.matches(&c), Match::Strong | Match::Mac))
}

/// The identity of interface `name` from the sysfs at `root`.
fn identity_of(root: &Path, name: &str) -> Option<LinkIdentity> {
    facts_of(root, name).map(|f| LinkIdentity::from_facts(&f))
}

/// The sysfs facts of interface `name`.
fn facts_of(root: &Path, name: &str) -> Option<LinkFacts> {
    LinkFacts::read(root, name).map_err(|e| tracing::debug!("no sysfs facts for {name}: {e}")).ok()
}

/// Whether a USB uevent's `devpath` is the device (or one of its
/// interfaces, `…/1-1.2:1.4`) a link's identity names.
fn under_usb_port(devpath: &str, identity: Option<&LinkIdentity>) -> bool {
    let Some(usb) = identity.and_then(|id| id.usb.as_ref()) else { return false };
    let last = devpath.rsplit('/').next().unwrap_or_default();
    last.split(':').next() == Some(usb.port_path.as_str())
}

/// The facts worth showing, as (name, value).
fn summary(f: &LinkFacts) -> Vec<(&'static str, String)> {
    let bus = match &f.bus {
        Bus::Usb => "usb".to_string(),
        Bus::Pci => "pci".to_string(),
        Bus::Virtual => "virtual".to_string(),
        Bus::Other(other) => other.clone(),
    };
    let mut out = vec![("bus", bus)];
    let mut add = |name, v: Option<String>| {
        if let Some(v) = v {
            out.push((name, v));
        }
    };
    add("driver", f.driver.clone());
    add("devtype", f.devtype.clone());
    add("framing", f.framing.as_ref().map(|fr| format!("{fr:?}").to_lowercase()));
    add("mtu", f.mtu.map(|m| m.to_string()));
    add("speed_mbps", f.speed_mbps.map(|s| s.to_string()));
    add("usb", f.usb.as_ref().map(|u| format!("{} {:04x}:{:04x}", u.port_path, u.vendor_id, u.product_id)));
    out
}

/// Moves link `link` to `new`: the kernel's entry, the ingress program, the
/// probe path. Each step that fails is logged and leaves the binding
/// incomplete, so the next sign of life retries it.
async fn rebind(
    f: &mut Followed,
    link: &mut ResolvedLink,
    new: ResolvedLink,
    io: Hands<'_>,
    why: &'static str,
) {
    let Hands { dp, net, config, path } = io;
    let id = f.id;
    if new.interface.index != link.interface.index {
        if let Err(e) = dp.set_interface(new.interface.index, new.interface.l2_len) {
            warn!(link = id, "registering {}: {e}", new.interface.name);
            f.complete = false;
        }
        if let Err(e) = dp.attach(Program::LinkIngress, &new.interface.name) {
            warn!(link = id, "attaching the ingress program to {}: {e}", new.interface.name);
            f.complete = false;
        }
        if config.kernel_sampling()
            && let Err(e) = dp.watch_interface(&new.interface.name, id)
        {
            tracing::debug!(link = id, "kernel sampling does not follow {}: {e}", new.interface.name);
        }
    }
    if let Some(g) = new.gateway
        && (new.interface.index != link.interface.index || new.gateway != link.gateway)
        && let Err(e) = net.keep_neighbour_resolved(new.interface.index, g).await
    {
        warn!(link = id, "{e}");
    }
    // The static weight; adaptive control rewrites the entry every tick.
    let weight = config.links.iter().find(|l| l.id == id).map_or(0, |l| l.weight);
    if let Some(tx6) = link_tx6(new.address, new.gateway)
        && let Err(e) = dp.set_link6(id, tx6)
    {
        warn!(link = id, "updating the kernel's IPv6 entry: {e}");
        f.complete = false;
    }
    let tx = link_tx(weight, &new.interface, new.address, new.gateway, config.port);
    if let Err(e) = dp.set_link(id, tx) {
        warn!(link = id, "updating the kernel's entry: {e}");
        f.complete = false;
    }
    if let Some(path) = path {
        if let Some(old) = path.routing.take()
            && let Err(e) = net.remove_link_routing(old).await
        {
            tracing::debug!(link = id, "{e}");
        }
        let table = LINK_TABLE_BASE + u32::from(id);
        match net.add_link_routing(new.interface.index, new.address, new.gateway, table).await {
            Ok(r) => path.routing = Some(r),
            Err(e) => {
                // An interface not up yet refuses routes through it: retried
                // when it comes up.
                tracing::debug!(link = id, "routing not in place yet: {e}");
                f.complete = false;
            }
        }
        match prober::bind_shared(SocketAddr::new(new.address, config.port)) {
            Ok(sock) => {
                let _ = path.socket.send(Arc::new(sock));
            }
            Err(e) => {
                warn!(link = id, "binding the probe socket on {}: {e}", new.address);
                f.complete = false;
            }
        }
    }
    f.rebinds += 1;
    info!(
        link = id,
        from_interface = %link.interface.name,
        interface = %new.interface.name,
        from_address = %link.address,
        address = %new.address,
        gateway = ?new.gateway,
        complete = f.complete,
        why,
        "link re-bound"
    );
    *link = new;
}
