//! `strata-ctl run`: set the tunnel up, hand the data path to the kernel, and
//! take everything down again on SIGINT/SIGTERM.
//!
//! Order matters. The maps are filled while the configuration's READY flag is
//! still clear (egress drops as `no_config`, ingress lets everything pass), and
//! the programs are attached last, so no packet ever meets a half-written
//! configuration. Shutdown detaches first, then removes pins and the device.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use strata_common::{
    maps::{
        CONFIG_EARLIEST_ARRIVAL, CONFIG_LEARN_PEERS, CONFIG_READY, Endpoint, LINK_ENABLED, LinkTx, MAX_LINKS,
        TunnelConfig,
    },
    packet::OUTER_V4_LEN,
    wire::{FeedbackPayload, Fields, HEADER_LEN, Header, PacketType, flags as wire_flags},
};
use tokio::{net::UdpSocket, sync::mpsc};
use tracing::{debug, info, warn};

use crate::{
    advisors::{self, Advisors, OsEvent},
    config::{Config, ControlMode, LinkSection, Role},
    controller::Controller,
    datapath::{Datapath, Program},
    link::follow::Reaction,
    link::scoring::Decision,
    metrics::{self, Exposition},
    net::{Interface, Net},
    os::sysfs::SysfsMount,
    probe::{self, Evidence, TrainShape},
    rebind::{Follower, Hint, LINK_TABLE_BASE, ProbePath},
    sampling,
    schedule::Weights,
    stats::Snapshot,
    status,
    tun::Tun,
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
/// hop resolved — before anything is created, so a typo fails cleanly.
#[derive(Clone, Debug)]
enum Side {
    /// The car: several links to one hub.
    Edge { links: Vec<ResolvedLink>, hub: Endpoint },
    /// The cloud: one interface; the edge's endpoints are learned.
    Hub { interface: Interface, address: Ipv4Addr, gateway: Option<Ipv4Addr> },
}

impl Side {
    async fn resolve(net: &Net, config: &Config) -> anyhow::Result<Self> {
        match config.role {
            Role::Edge => {
                let peer = config.peer.as_ref().context("peer: missing")?;
                let hub = Endpoint { ip_be: be(peer.address), port_be: peer.port.to_be(), _pad: 0 };
                let mut links = Vec::new();
                for (i, link) in config.links.iter().enumerate() {
                    links.push(resolve_link(net, i, link).await?);
                }
                Ok(Self::Edge { links, hub })
            }
            Role::Hub => {
                let hub = config.hub.as_ref().context("hub: missing")?;
                let interface = net.interface(&hub.interface).await.context("hub.interface")?;
                let address = match hub.address {
                    Some(a) => a,
                    None => net.first_ipv4(interface.index).await?.with_context(|| {
                        format!("hub.interface {}: has no IPv4 address (set hub.address)", interface.name)
                    })?,
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
    fn carrier_mtu(&self) -> Option<u32> {
        match self {
            Self::Edge { links, .. } => links.iter().filter(|l| l.weight > 0).map(|l| l.interface.mtu).min(),
            Self::Hub { interface, .. } => Some(interface.mtu),
        }
    }

    /// Next hops the data path hands packets to (Ethernet-framed links only).
    fn next_hops(&self) -> Vec<(u32, Ipv4Addr)> {
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
    fn ingress_interfaces(&self) -> Vec<&Interface> {
        match self {
            Self::Edge { links, .. } => links.iter().map(|l| &l.interface).collect(),
            Self::Hub { interface, .. } => vec![interface],
        }
    }

    /// Link ids worth showing in summaries (the hub shows whatever is active).
    fn link_ids(&self) -> Vec<u8> {
        match self {
            Self::Edge { links, .. } => links.iter().map(|l| l.id).collect(),
            Self::Hub { .. } => Vec::new(),
        }
    }
}

/// Runs until a signal arrives.
pub async fn run(config: Config) -> anyhow::Result<()> {
    preflight()?;
    // Watched from the start: a SIGTERM during set-up (tests stop a daemon as
    // soon as it is ready) must reach the clean shutdown, not the default
    // action that would kill the process with its device, pins and lock.
    let sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let instance = lock_instance(config.name())?;
    // Bound first: a taken port fails the start before anything is created.
    let metrics_listener = match config.metrics.address().map_err(|(f, p)| anyhow::anyhow!("{f}: {p}"))? {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics.listen: cannot listen on {addr}"))?,
        ),
        None => None,
    };
    let net = Net::connect()?;
    info!(instance = config.name(), role = %config.role, session = config.session, "starting");
    let side = Side::resolve(&net, &config).await?;
    let mtu = tunnel_mtu(&config, side.carrier_mtu().unwrap_or(1500))?;
    let (tun, tun_if) = create_tunnel(&net, &config, mtu).await?;

    let next_hops = side.next_hops();
    for &(index, gateway) in &next_hops {
        net.keep_neighbour_resolved(index, gateway).await?;
    }
    let pin_dir = config.pin_dir();
    let mut dp = match Datapath::load(Some(&pin_dir)) {
        Ok(dp) => dp,
        Err(e) => {
            forget_neighbours(&net, &next_hops).await;
            return Err(anyhow::Error::new(e).context("loading the data plane"));
        }
    };
    if let Err(e) = configure(&mut dp, &config, &tun_if, &side) {
        dp.detach_all();
        let _ = dp.unpin();
        forget_neighbours(&net, &next_hops).await;
        return Err(e);
    }
    dp.forward_logs();
    info!(pins = %pin_dir.display(), "data plane attached");

    // The control socket shares the tunnel port with the per-link probe sockets.
    let control = probe::bind_shared(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, config.port))
        .with_context(|| format!("binding the control socket on UDP port {}", config.port));
    let mut side = side;
    let mut adaptive = match (&side, config.control.mode) {
        (Side::Edge { links, hub }, ControlMode::Adaptive) if control.is_ok() => {
            match start_adaptive(&net, &config, links, *hub).await {
                Ok(a) => Some(a),
                Err(e) => {
                    warn!("adaptive control unavailable, keeping the configured weights: {e:#}");
                    None
                }
            }
        }
        _ => None,
    };
    let interfaces = match &side {
        Side::Edge { links, .. } => {
            links.iter().map(|l| (l.id, l.interface.name.clone(), l.interface.index)).collect()
        }
        Side::Hub { .. } => Vec::new(),
    };
    let mode = match config.control.mode {
        ControlMode::Static => "static",
        ControlMode::Adaptive => "adaptive",
    };
    let exposition = Exposition::new(pin_dir.clone(), interfaces, mode);
    // The kernel times every program run while this fd is open (two clock
    // reads per run); only worth it when someone scrapes the figures.
    let program_stats = if config.metrics.listen.is_some() {
        match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => Some(fd),
            Err(e) => {
                warn!("the data plane's run-time statistics are not available: {e}");
                None
            }
        }
    } else {
        None
    };
    if config.kernel_sampling() {
        exposition.set_sampling(start_sampling(&mut dp, &side));
    }
    exposition.set_programs(dp.program_ids(), program_stats.is_some());
    let mut tasks = Vec::new();
    if let Some(listener) = metrics_listener {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "serving Prometheus metrics on /metrics");
        }
        tasks.push(tokio::spawn(metrics::serve(listener, exposition.clone())));
    }
    // The status socket is a convenience: without it the tunnel still runs.
    let _socket_file = match status::bind(config.name(), config.status.group.as_deref()) {
        Ok((listener, file)) => {
            info!(socket = %status::socket_path(config.name()).display(), "answering strata-ctl status");
            tasks.push(tokio::spawn(status::serve(listener, config.name().to_string(), exposition.clone())));
            Some(file)
        }
        Err(e) => {
            warn!("no status socket: {e:#}");
            None
        }
    };
    let advisors = advisors::start(&config, matches!(side, Side::Edge { .. }));
    exposition.publish(|p| {
        p.os_signals = config.os_signals.name();
        p.advisors.clone_from(&advisors.states);
    });
    let sysfs = namespace_sysfs(&config);
    if let Ok(control) = &control {
        let mut os = Os { net: &net, advisors, follower: None };
        if let Side::Edge { links, .. } = &side {
            let root = sysfs.as_ref().map(|(root, _)| root.as_path());
            os.follower = Some(Follower::new(&config, links, root));
        }
        serve(&mut dp, control, &config, &mut side, &mut adaptive, Some(&exposition), sigterm, os).await;
        crate::os::notify::stopping();
        info!("shutting down");
    }
    for task in tasks {
        task.abort();
    }
    if let Some(a) = adaptive.as_mut() {
        remove_routing(&net, &mut a.paths).await;
    }
    drop(adaptive);
    dp.detach_all();
    if let Ok(snapshot) = dp.snapshot() {
        info!("final counters:\n{}", snapshot.table(&side.link_ids()));
    }
    let unpinned = dp.unpin().context("removing pinned maps");
    forget_neighbours(&net, &next_hops).await;
    drop(tun);
    if let Some((root, Some(mount))) = sysfs {
        drop(mount);
        let _ = std::fs::remove_dir(root);
    }
    control?;
    unpinned?;
    drop(instance);
    info!("stopped");
    Ok(())
}

/// The tunnel MTU: configured, or the links' smallest MTU less the 48 bytes
/// of tunnel headers, so no tunnel packet ever needs fragmenting.
fn tunnel_mtu(config: &Config, carrier_mtu: u32) -> anyhow::Result<u32> {
    let max_mtu = carrier_mtu.saturating_sub(OUTER_V4_LEN as u32);
    match config.tunnel.mtu {
        Some(m) if m > max_mtu => bail!(
            "tunnel.mtu: {m} does not fit the links: at most {max_mtu} ({carrier_mtu} link MTU - {OUTER_V4_LEN} bytes of tunnel headers)"
        ),
        Some(m) => Ok(m),
        None => Ok(max_mtu),
    }
}

/// Creates the TUN device with its MTU and addresses, up.
async fn create_tunnel(net: &Net, config: &Config, mtu: u32) -> anyhow::Result<(Tun, Interface)> {
    let tun = Tun::create(&config.tunnel.name).context("creating the tunnel device")?;
    let tun_if = net.interface(tun.name()).await?;
    net.configure_tunnel_device(tun_if.index, mtu).await?;
    net.add_address(tun_if.index, config.tunnel_v4()).await?;
    match config.tunnel_v6() {
        None => quiet_ipv6(tun.name()),
        Some(v6) => {
            if mtu < 1280 {
                warn!("tunnel MTU {mtu} is below IPv6's 1280: the kernel disables IPv6 on {}", tun.name());
            }
            net.add_address(tun_if.index, v6).await?;
        }
    }
    info!(device = tun.name(), mtu, "tunnel device up");
    Ok((tun, tun_if))
}

async fn resolve_link(net: &Net, i: usize, link: &LinkSection) -> anyhow::Result<ResolvedLink> {
    let field = format!("links[{i}].interface");
    let ifname = link.interface.as_deref().with_context(|| format!("{field}: missing"))?;
    let interface = net.interface(ifname).await.with_context(|| field.clone())?;
    let address = match link.address {
        Some(a) => a,
        None => net.first_ipv4(interface.index).await?.with_context(|| {
            format!(
                "{field}: {ifname} has no IPv4 address yet (set links[{i}].address or wait for the modem)"
            )
        })?,
    };
    let gateway = match link.gateway {
        Some(g) => Some(g),
        None => net.default_gateway(interface.index).await?,
    };
    if gateway.is_none() && interface.l2_len != 0 {
        bail!(
            "links[{i}].gateway: {ifname} is an Ethernet-framed link with no default route; set the next hop explicitly"
        );
    }
    if !interface.up {
        warn!(link = link.id, interface = ifname, "link interface is down");
    }
    Ok(ResolvedLink { id: link.id, interface, address, gateway, weight: link.weight })
}

fn be(a: Ipv4Addr) -> u32 {
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
    LinkTx {
        flags: if weight > 0 { LINK_ENABLED } else { 0 },
        ifindex: interface.index,
        src_ip_be: be(source),
        nexthop_be: next_hop.map_or(0, be),
        src_port_be: port.to_be(),
        mtu: interface.mtu.min(u32::from(u16::MAX)) as u16,
        l2_len: interface.l2_len,
        // No budget until the adaptive controller sets one.
        ps_per_byte: 0,
        delay_us: 0,
        backlog_limit_us: 0,
    }
}

/// Fills every map (READY still clear), then sets READY and attaches.
fn configure(dp: &mut Datapath, config: &Config, tun_if: &Interface, side: &Side) -> anyhow::Result<()> {
    let mut tunnel = TunnelConfig {
        session: config.session,
        flags: 0,
        tunnel_ifindex: tun_if.index,
        tunnel_l2_len: tun_if.l2_len,
        local_ip_be: match side {
            Side::Hub { address, .. } => be(*address),
            Side::Edge { .. } => 0,
        },
        local_port_be: config.port.to_be(),
        _pad: 0,
    };
    dp.set_config(tunnel)?;
    let weights = config.weights();
    match side {
        Side::Edge { links, hub } => {
            for link in links {
                dp.set_interface(link.interface.index, link.interface.l2_len)?;
                let tx = link_tx(link.weight, &link.interface, link.address, link.gateway, config.port);
                dp.set_link(link.id, tx)?;
                dp.set_peer(link.id, *hub)?;
                info!(
                    link = link.id,
                    interface = %link.interface.name,
                    address = %link.address,
                    gateway = ?link.gateway,
                    mtu = link.interface.mtu,
                    weight = link.weight,
                    "link configured"
                );
            }
        }
        Side::Hub { interface, address, gateway } => {
            dp.set_interface(interface.index, interface.l2_len)?;
            for id in 0..MAX_LINKS as u8 {
                let tx = link_tx(weights[usize::from(id)], interface, *address, *gateway, config.port);
                dp.set_link(id, tx)?;
            }
            tunnel.flags |= CONFIG_LEARN_PEERS;
        }
    }
    dp.seed_sequence(random_u32())?;
    dp.set_weights(&weights)?;
    tunnel.flags |= CONFIG_READY;
    dp.set_config(tunnel)?;
    dp.attach(Program::TunnelEgress, &config.tunnel.name)?;
    for interface in side.ingress_interfaces() {
        dp.attach(Program::LinkIngress, &interface.name)?;
    }
    Ok(())
}

async fn forget_neighbours(net: &Net, next_hops: &[(u32, Ipv4Addr)]) {
    for &(index, gateway) in next_hops {
        if let Err(e) = net.forget_neighbour(index, gateway).await {
            debug!("{e}");
        }
    }
}

/// Without an IPv6 address the tunnel should not speak IPv6 at all: left on,
/// the kernel sends router solicitations and MLD reports into it, which the
/// data plane would dutifully carry to the peer.
fn quiet_ipv6(device: &str) {
    // /proc/sys/net is the view of this process's network namespace.
    let path = format!("/proc/sys/net/ipv6/conf/{device}/disable_ipv6");
    if let Err(e) = std::fs::write(&path, "1") {
        debug!("cannot disable IPv6 on {device} ({path}: {e})");
    }
}

/// One daemon per instance name: two would share (and fight over) the same
/// pinned maps. The lock is an `flock` on `/run/strata/<name>.lock`, released
/// by the kernel however the daemon ends; the file is removed on every way
/// out of `run` (a crash leaves an unlocked file, which the next start reuses).
#[derive(Debug)]
struct InstanceLock {
    path: std::path::PathBuf,
    _flock: nix::fcntl::Flock<std::fs::File>,
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock_instance(name: &str) -> anyhow::Result<InstanceLock> {
    let path = std::path::Path::new("/run/strata").join(format!("{name}.lock"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::File::create(&path).with_context(|| format!("opening {}", path.display()))?;
    let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        anyhow::anyhow!(
            "name: an instance named {name:?} is already running on this host ({}: {errno}); give each tunnel its own name",
            path.display()
        )
    })?;
    Ok(InstanceLock { path, _flock: flock })
}

fn preflight() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("strata-ctl run needs root (CAP_NET_ADMIN and CAP_BPF to attach the data plane)");
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let bpffs = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        matches!((f.next(), f.next(), f.next()), (_, Some("/sys/fs/bpf"), Some("bpf")))
    });
    if !bpffs {
        nix::mount::mount(
            Some("bpf"),
            "/sys/fs/bpf",
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .context("/sys/fs/bpf is not a bpf filesystem and mounting one failed")?;
        info!("mounted bpffs at /sys/fs/bpf");
    }
    Ok(())
}

/// Starts host-side sampling of the edge's link interfaces; the kernel's
/// drop reason names, or why it does not run (logged once, shown in status
/// and metrics — the tunnel runs either way).
fn start_sampling(dp: &mut Datapath, side: &Side) -> Result<Vec<(u32, String)>, String> {
    let result = (|| {
        let Side::Edge { links, .. } = side else {
            return Err("only the edge's link interfaces are sampled".to_string());
        };
        let tracepoints = sampling::tracepoints()?;
        let watch: Vec<(String, u8)> = links.iter().map(|l| (l.interface.name.clone(), l.id)).collect();
        dp.start_sampling(tracepoints.config, &watch).map_err(|e| e.to_string())?;
        Ok(tracepoints.drop_reasons)
    })();
    match &result {
        Ok(_) => info!("sampling the links' host queues and kernel drops"),
        Err(why) => warn!("kernel sampling off: {why}"),
    }
    result
}

/// The adaptive controller's moving parts.
struct Adaptive {
    controller: Controller,
    samples: mpsc::Receiver<Evidence>,
    probers: Vec<tokio::task::JoinHandle<()>>,
    /// Per link, in the links' order: its routing and probe socket.
    paths: Vec<ProbePath>,
    /// Per link: raised to make its prober send a packet train.
    trains: Vec<(u8, Arc<AtomicBool>)>,
    /// Per link: IP bytes its prober sent.
    probe_bytes: Vec<(u8, Arc<AtomicU64>)>,
    /// Decisions written to the kernel since the last summary.
    updates: u64,
    /// Whether the kernel chooses by earliest arrival yet (set with the first budgets).
    paced: bool,
    /// The daemon's CPU time at the last summary.
    cpu: Duration,
    /// Time 0 of the controller's clock.
    epoch: std::time::Instant,
}

impl Drop for Adaptive {
    fn drop(&mut self) {
        for p in &self.probers {
            p.abort();
        }
    }
}

/// Removes the links' policy routing (start-up failed, or shutdown).
async fn remove_routing(net: &Net, paths: &mut [ProbePath]) {
    for path in paths {
        if let Some(r) = path.routing.take()
            && let Err(e) = net.remove_link_routing(r).await
        {
            debug!("{e}");
        }
    }
}

/// Per-link routing and a prober per link, feeding one controller.
async fn start_adaptive(
    net: &Net,
    config: &Config,
    links: &[ResolvedLink],
    hub: Endpoint,
) -> anyhow::Result<Adaptive> {
    let hub = SocketAddr::from((Ipv4Addr::from(u32::from_be(hub.ip_be)), u16::from_be(hub.port_be)));
    let (tx, samples) = mpsc::channel(1024);
    let interval = Duration::from_millis(config.control.probe_interval_ms);
    let mut probers = Vec::new();
    let mut trains = Vec::new();
    let mut probe_bytes = Vec::new();
    let mut paths = Vec::new();
    for link in links {
        let table = LINK_TABLE_BASE + u32::from(link.id);
        let routing =
            match net.add_link_routing(link.interface.index, link.address, link.gateway, table).await {
                Ok(r) => r,
                Err(e) => {
                    remove_routing(net, &mut paths).await;
                    return Err(e.into());
                }
            };
        let sock = match probe::bind_shared(SocketAddrV4::new(link.address, config.port)) {
            Ok(s) => s,
            Err(e) => {
                let _ = net.remove_link_routing(routing).await;
                remove_routing(net, &mut paths).await;
                return Err(anyhow::Error::new(e).context(format!(
                    "binding link {}'s probe socket on {}:{}",
                    link.id, link.address, config.port
                )));
            }
        };
        let (socket, sock) = tokio::sync::watch::channel(Arc::new(sock));
        paths.push(ProbePath { routing: Some(routing), socket });
        let want_train = Arc::new(AtomicBool::new(false));
        trains.push((link.id, want_train.clone()));
        let sent_bytes = Arc::new(AtomicU64::new(0));
        probe_bytes.push((link.id, sent_bytes.clone()));
        let prober = probe::Prober {
            link: link.id,
            sock,
            hub,
            session: config.session,
            interval,
            train: TrainShape { packets: config.control.train_packets, bytes: config.control.train_bytes },
            want_train,
            sent_bytes,
        };
        probers.push(tokio::spawn(probe::run(prober, tx.clone())));
    }
    let controller = Controller::new(
        &links.iter().map(|l| (l.id, l.weight)).collect::<Vec<_>>(),
        config.control.thresholds(),
        config.control.scoring(),
    )
    .with_trains(Duration::from_millis(config.control.train_interval_ms));
    info!(
        links = links.len(),
        interval_ms = config.control.probe_interval_ms,
        "adaptive control: probing every link"
    );
    Ok(Adaptive {
        controller,
        samples,
        probers,
        paths,
        trains,
        probe_bytes,
        updates: 0,
        paced: false,
        cpu: cpu_time(),
        epoch: std::time::Instant::now(),
    })
}

/// Applies a controller decision: each link's send budget, enabled only
/// while it has weight (so the kernel's fallback never picks a demoted
/// link), then the schedule.
fn apply(dp: &mut Datapath, config: &Config, side: &Side, decision: &Decision) {
    let Side::Edge { links, .. } = side else { return };
    for link in links {
        let id = usize::from(link.id);
        let mut tx = link_tx(decision.weights[id], &link.interface, link.address, link.gateway, config.port);
        let budget = decision.budgets[id];
        if budget.bytes_per_s > 0 {
            tx.ps_per_byte = (1e12 / budget.bytes_per_s as f64).clamp(1.0, f64::from(u32::MAX)) as u32;
            tx.delay_us = budget.delay_us;
            tx.backlog_limit_us = budget.backlog_limit_us;
        }
        if let Err(e) = dp.set_link(link.id, tx) {
            warn!("updating link {}: {e}", link.id);
        }
    }
    if let Err(e) = dp.set_weights(&decision.weights) {
        warn!("updating the schedule: {e}");
    }
}

/// The controller loop: receive control packets, log a summary every second,
/// stop on SIGINT or SIGTERM.
#[allow(clippy::too_many_arguments)]
async fn serve(
    dp: &mut Datapath,
    control: &UdpSocket,
    config: &Config,
    side: &mut Side,
    adaptive: &mut Option<Adaptive>,
    exposition: Option<&Exposition>,
    sigterm: std::io::Result<tokio::signal::unix::Signal>,
    mut os: Os<'_>,
) {
    if let Some(e) = exposition {
        e.publish(|p| p.controller_up = adaptive.is_some());
    }
    // Everything served is up (data plane, status socket, metrics, controller,
    // advisors, and the controller's state published): only now may whoever
    // started us (systemd, the lab) rely on it.
    info!("ready");
    crate::os::notify::ready();
    let ids = side.link_ids();
    let ids = ids.as_slice();
    let mut control_tick = tokio::time::interval(Duration::from_millis(config.control.update_interval_ms));
    control_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigterm = match sigterm {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot watch SIGTERM ({e}); stop with SIGINT");
            return wait_ctrl_c().await;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // The hub checks which links it has learned ten times a second, so a new
    // link joins its schedule quickly.
    let mut learn = tokio::time::interval(Duration::from_millis(100));
    // The hub reports what its kernel counted per link, at the probe rate.
    let mut feedback_tick = tokio::time::interval(Duration::from_millis(config.control.probe_interval_ms));
    let mut feedback_seq = 0u32;
    let epoch = std::time::Instant::now();
    let mut buf = vec![0u8; 2048];
    let mut scheduled = config.weights();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            Some(event) = os.advisors.events.recv() => {
                debug!(?event, "OS advisor");
                let Some(follower) = os.follower.as_mut() else { continue };
                let Side::Edge { links, .. } = &mut *side else { continue };
                let (reactions, hints) = match event {
                    OsEvent::Net(e) => (follower.on_event(&e, links), Vec::new()),
                    OsEvent::Device(e) => (follower.on_device(&e, os.net, links).await, Vec::new()),
                    OsEvent::Modem(e) => (Vec::new(), follower.on_modem(e, links)),
                    OsEvent::State(name, state) => {
                        if let Some(e) = exposition {
                            e.publish(|p| match p.advisors.iter_mut().find(|(n, _)| *n == name) {
                                Some((_, s)) => *s = state,
                                None => p.advisors.push((name, state)),
                            });
                        }
                        continue;
                    }
                };
                follow(follower, reactions, hints, links, dp, os.net, config, adaptive.as_mut(), exposition).await;
            }
            _ = tick.tick() => {
                if let Ok(s) = dp.snapshot() {
                    debug!("counters:\n{}", s.table(ids));
                }
                // What each link is, as measurement fills in.
                if let (Some(follower), Side::Edge { links, .. }, Some(e)) = (os.follower.as_ref(), &*side, exposition) {
                    let behaviour = adaptive.as_ref().map(|a| a.controller.behaviours()).unwrap_or_default();
                    let view = follower.view(links, &behaviour);
                    e.publish(|p| p.bindings = view);
                }
                if let Some(a) = adaptive.as_mut() {
                    let cpu = cpu_time();
                    let cpu_ms_per_s = cpu.saturating_sub(a.cpu).as_secs_f64() * 1e3;
                    info!(updates_per_s = a.updates, cpu_ms_per_s, "links: {}", a.controller.summary());
                    (a.updates, a.cpu) = (0, cpu);
                }
            }
            _ = learn.tick(), if config.role == Role::Hub => {
                if let Ok(s) = dp.snapshot() {
                    schedule_learned_links(dp, config, &s, &mut scheduled);
                }
            }
            _ = feedback_tick.tick(), if config.role == Role::Hub => {
                if let Ok(s) = dp.snapshot() {
                    let now_us = epoch.elapsed().as_micros() as u32;
                    feedback_seq = send_feedback(control, config.session, &s, feedback_seq, now_us).await;
                }
            }
            Some(sample) = async { match adaptive.as_mut() { Some(a) => a.samples.recv().await, None => std::future::pending().await } } => {
                if let Some(a) = adaptive.as_mut() {
                    a.controller.on_evidence(a.epoch.elapsed(), sample);
                }
            }
            _ = control_tick.tick(), if adaptive.is_some() => {
                if let (Some(a), Some(e)) = (adaptive.as_ref(), exposition) {
                    let report = a.controller.report();
                    let probe_bytes = a
                        .probe_bytes
                        .iter()
                        .map(|(id, b)| (*id, b.load(std::sync::atomic::Ordering::Relaxed)))
                        .collect();
                    e.publish(|p| {
                        p.links = report;
                        p.probe_bytes = probe_bytes;
                    });
                }
                if let Some(a) = adaptive.as_mut()
                    && let Ok(overflow) = dp.overflow()
                {
                    a.controller.on_overflow(a.epoch.elapsed(), &overflow);
                }
                if let Some(a) = adaptive.as_mut() {
                    for id in a.controller.trains_due(a.epoch.elapsed()) {
                        if let Some((_, want)) = a.trains.iter().find(|(l, _)| *l == id) {
                            want.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                if let Some(a) = adaptive.as_mut() {
                    let decision = a.controller.tick(a.epoch.elapsed());
                    debug!(weights = ?decision.weights, "adaptive weights");
                    apply(dp, config, side, &decision);
                    // In-band trigger, at every tier: a silent link's
                    // interface is looked up again in case it moved.
                    let silent = a.controller.silent_links();
                    if let (Some(follower), Side::Edge { links, .. }) = (os.follower.as_mut(), &mut *side) {
                        for id in silent {
                            let Some(i) = links.iter().position(|l| l.id == id) else { continue };
                            let reactions: Vec<_> =
                                follower.recheck(os.net, i, links).await.into_iter().map(|r| (i, r)).collect();
                            if !reactions.is_empty() {
                                follow(follower, reactions, Vec::new(), links, dp, os.net, config, Some(&mut *a), exposition)
                                    .await;
                            }
                        }
                    }
                    a.updates += 1;
                    if let Some(e) = exposition {
                        e.publish(|p| {
                            p.weight_updates += 1;
                            p.last_update = Some(std::time::SystemTime::now());
                        });
                    }
                    if !a.paced {
                        match dp.set_config_flags(CONFIG_EARLIEST_ARRIVAL) {
                            Ok(()) => a.paced = true,
                            Err(e) => warn!("switching the kernel to earliest-arrival selection: {e}"),
                        }
                    }
                }
            }
            received = probe::recv_stamped(control, &mut buf) => match received {
                Ok((n, from, rx_ns)) => answer_control(control, &buf[..n], from, config.session, rx_ns).await,
                Err(e) => warn!("control socket: {e}"),
            },
        }
    }
}

/// Gives the daemon a mount namespace of its own whose mounts do not
/// propagate back (slave): the sysfs [`namespace_sysfs`] may mount then
/// disappears with the process, however it ends — a SIGKILLed daemon used
/// to leave one mounted under /run/strata per run (seen after the test
/// suite: six). Everything else it uses (bpffs pins, /run/strata sockets)
/// is the same file system seen through a copied mount, so other processes
/// still see it. Failure is logged and the daemon goes on with shared
/// mounts (its own exit still unmounts).
pub fn private_mounts() {
    use nix::{
        mount::{MsFlags, mount},
        sched::{CloneFlags, unshare},
    };
    let result = unshare(CloneFlags::CLONE_NEWNS).and_then(|()| {
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
    });
    if let Err(e) = result {
        warn!("no private mount namespace ({e}): a mount the daemon makes outlives a crash");
    }
}

/// A sysfs whose `class/net` shows this process's network namespace, and
/// the mount made for it if `/sys` does not: sysfs shows the namespace of
/// whoever mounted it, so a daemon started with `nsenter --net` (the lab)
/// sees another namespace's interfaces in `/sys`. `None` (logged): links
/// are recognised by name only.
fn namespace_sysfs(config: &Config) -> Option<(std::path::PathBuf, Option<SysfsMount>)> {
    let ours = |root: &std::path::Path| root.join("class/net").join(&config.tunnel.name).exists();
    if ours(std::path::Path::new("/sys")) {
        return Some(("/sys".into(), None));
    }
    let at = status::socket_path(config.name()).with_extension("sysfs");
    match SysfsMount::mount(&at) {
        Ok(mount) if ours(mount.root()) => Some((mount.root().to_path_buf(), Some(mount))),
        Ok(_) => {
            warn!("no sysfs of this network namespace: links are recognised by interface name only");
            None
        }
        Err(e) => {
            warn!("no sysfs of this network namespace ({e}): links are recognised by interface name only");
            None
        }
    }
}

/// What the operating system may tell the control loop.
struct Os<'a> {
    net: &'a Net,
    advisors: Advisors,
    /// The edge's links following their interfaces.
    follower: Option<Follower>,
}

/// Carries out reactions to what the OS said (or what a re-check found),
/// passes the controller its hints, and publishes the new bindings.
#[allow(clippy::too_many_arguments)]
async fn follow(
    follower: &mut Follower,
    reactions: Vec<(usize, Reaction)>,
    mut hints: Vec<(usize, Hint)>,
    links: &mut [ResolvedLink],
    dp: &mut Datapath,
    net: &Net,
    config: &Config,
    mut adaptive: Option<&mut Adaptive>,
    exposition: Option<&Exposition>,
) {
    if reactions.is_empty() && hints.is_empty() {
        return;
    }
    for (i, reaction) in reactions {
        let path = adaptive.as_deref_mut().and_then(|a| a.paths.get_mut(i));
        if let Some(hint) = follower.carry_out(reaction, i, links, dp, net, config, path).await {
            hints.push((i, hint));
        }
    }
    if let Some(a) = adaptive.as_deref_mut() {
        let now = a.epoch.elapsed();
        for (i, hint) in hints {
            let id = links[i].id;
            match hint {
                Hint::Lost(what) => a.controller.on_os_loss(now, id, what),
                Hint::Returned(what) => a.controller.on_os_return(now, id, what),
                Hint::Rebound => a.controller.on_rebound(now, id),
                Hint::Caution(what) => a.controller.on_caution(now, id, what),
            }
        }
    }
    if let Some(e) = exposition {
        let behaviour = adaptive.as_deref().map(|a| a.controller.behaviours()).unwrap_or_default();
        let view = follower.view(links, &behaviour);
        e.publish(|p| p.bindings = view);
    }
}

/// Hub: sends each learned link's counters to the edge endpoint it learned
/// for that link, so the feedback travels on the link it describes. Returns
/// the next feedback sequence number.
async fn send_feedback(
    control: &UdpSocket,
    session: u32,
    snapshot: &Snapshot,
    mut seq: u32,
    now_us: u32,
) -> u32 {
    for link in snapshot.links.iter().filter(|l| !l.peer_ip.is_unspecified()) {
        let Ok(peer) = link.peer.parse::<SocketAddr>() else { continue };
        let header = Header::new(Fields {
            packet_type: PacketType::Feedback,
            flags: 0,
            link_id: link.id,
            session,
            global_seq: seq,
            link_seq: 0,
            // The edge measures rates between feedbacks on this clock, free
            // of the jitter the way back adds to arrival times.
            timestamp_us: now_us.max(1),
        });
        let payload = FeedbackPayload {
            rx_packets: link.rx_packets,
            rx_bytes: link.rx_bytes,
            lost: link.rx_lost,
            owd_sum_us: link.owd_sum_us,
            owd_count: link.owd_count,
            late: link.rx_late,
        };
        let mut out = [0u8; HEADER_LEN + FeedbackPayload::LEN];
        if header.encode(&mut out).is_ok()
            && payload.encode(&mut out[HEADER_LEN..]).is_ok()
            && let Err(e) = control.send_to(&out, peer).await
        {
            debug!(link = link.id, %peer, "feedback not sent: {e}");
        }
        seq = seq.wrapping_add(1);
    }
    seq
}

/// Handles one datagram on the control socket, which the kernel received at
/// `rx_ns` (realtime, ns; 0 if not stamped). Probes are answered at once with
/// a probe reply that echoes the probe's header fields and payload, so the
/// sender can time the round trip on that link — or, for a train probe, that
/// carries the receive time instead; everything else is logged.
async fn answer_control(control: &UdpSocket, datagram: &[u8], from: SocketAddr, session: u32, rx_ns: u64) {
    let (fields, payload) = match Header::parse(datagram, session, MAX_LINKS as u8) {
        Ok(parsed) => parsed,
        Err(reason) => return debug!(%from, reason = reason.name(), "malformed control packet"),
    };
    match fields.packet_type {
        PacketType::Probe => {
            let reply = Header::new(Fields { packet_type: PacketType::ProbeReply, ..fields });
            let train = fields.flags & wire_flags::TRAIN != 0;
            let body: &[u8] = if train { &rx_ns.to_be_bytes() } else { payload };
            let mut out = vec![0u8; HEADER_LEN + body.len()];
            if reply.encode(&mut out).is_ok() {
                out[HEADER_LEN..].copy_from_slice(body);
                if let Err(e) = control.send_to(&out, from).await {
                    debug!(%from, "probe reply not sent: {e}");
                }
            }
        }
        PacketType::Data => debug!(%from, "data packet reached the control socket"),
        kind => debug!(%from, link = fields.link_id, ?kind, "control packet"),
    }
}

/// The hub sends only on links whose edge endpoint it has learned: a link id
/// without a peer would make the kernel fall back to the next id for its
/// share, piling it onto one link.
fn schedule_learned_links(dp: &mut Datapath, config: &Config, snapshot: &Snapshot, scheduled: &mut Weights) {
    let mut weights = config.weights();
    for (w, link) in weights.iter_mut().zip(&snapshot.links) {
        if link.peer_ip.is_unspecified() {
            *w = 0;
        }
    }
    if weights == *scheduled || weights.iter().all(|&w| w == 0) {
        return;
    }
    match dp.set_weights(&weights) {
        Ok(()) => {
            info!(?weights, "hub schedule follows the learned links");
            *scheduled = weights;
        }
        Err(e) => warn!("updating the hub schedule: {e}"),
    }
}

async fn wait_ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// CPU time (user + system) the daemon has used, all threads.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // getrandom(2) never fails for 4 bytes once the pool is initialised; fall
    // back to the clock rather than refuse to start.
    // SAFETY: writes at most 4 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(b)
    } else {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
    }
}
