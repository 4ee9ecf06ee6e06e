//! `strata-ctl run`: set the tunnel up, hand the data path to the kernel, and
//! take everything down again on SIGINT/SIGTERM.
//!
//! Order matters. The maps are filled while the configuration's READY flag is
//! still clear (egress drops as `no_config`, ingress lets everything pass), and
//! the programs are attached last, so no packet ever meets a half-written
//! configuration. Shutdown detaches first, then removes pins and the device.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::{Context as _, bail};
use strata_common::{
    maps::{
        CONFIG_LEARN_PEERS, CONFIG_READY, Endpoint, LINK_ENABLED, LinkTx, MAX_LINKS, TunnelConfig,
    },
    packet::OUTER_V4_LEN,
    wire::{Header, PacketType},
};
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::{
    config::{Config, Role},
    datapath::{Datapath, Program},
    net::{Interface, Net},
    schedule::Weights,
    stats::Snapshot,
    tun::Tun,
};

/// A link as resolved on this host.
#[derive(Clone, Debug)]
struct ResolvedLink {
    id: u8,
    interface: Interface,
    address: Ipv4Addr,
    gateway: Option<Ipv4Addr>,
    weight: u32,
}

/// Runs until a signal arrives.
pub async fn run(config: Config) -> anyhow::Result<()> {
    preflight()?;
    let net = Net::connect()?;
    let name = config.name().to_string();
    info!(instance = %name, role = %config.role, session = config.session, "starting");

    // Resolve every interface before creating anything, so a typo fails cleanly.
    let (links, hub_if, hub_addr) = match config.role {
        Role::Edge => (resolve_edge_links(&net, &config).await?, None, None),
        Role::Hub => {
            let hub = config.hub.as_ref().context("hub section missing")?;
            let iface = net
                .interface(&hub.interface)
                .await
                .context("hub.interface")?;
            let addr = match hub.address {
                Some(a) => a,
                None => net.first_ipv4(iface.index).await?.with_context(|| {
                    format!(
                        "hub.interface {}: has no IPv4 address (set hub.address)",
                        iface.name
                    )
                })?,
            };
            let gateway = match hub.gateway {
                Some(g) => Some(g),
                None => net.default_gateway(iface.index).await?,
            };
            (Vec::new(), Some((iface, gateway)), Some(addr))
        }
    };

    let carrier_mtu = match config.role {
        Role::Edge => links
            .iter()
            .filter(|l| l.weight > 0)
            .map(|l| l.interface.mtu)
            .min(),
        Role::Hub => hub_if.as_ref().map(|(i, _)| i.mtu),
    }
    .unwrap_or(1500);
    let max_mtu = carrier_mtu.saturating_sub(OUTER_V4_LEN as u32);
    let mtu = match config.tunnel.mtu {
        Some(m) if m > max_mtu => bail!(
            "tunnel.mtu: {m} does not fit the links: at most {max_mtu} ({carrier_mtu} link MTU - {OUTER_V4_LEN} bytes of tunnel headers)"
        ),
        Some(m) => m,
        None => max_mtu,
    };

    let tun = Tun::create(&config.tunnel.name).context("creating the tunnel device")?;
    let tun_if = net.interface(tun.name()).await?;
    net.configure_tunnel_device(tun_if.index, mtu).await?;
    net.add_address(tun_if.index, config.tunnel_v4()).await?;
    match config.tunnel_v6() {
        None => quiet_ipv6(tun.name()),
        Some(v6) => {
            if mtu < 1280 {
                warn!(
                    "tunnel MTU {mtu} is below IPv6's 1280: the kernel disables IPv6 on {}",
                    tun.name()
                );
            }
            net.add_address(tun_if.index, v6).await?;
        }
    }
    info!(device = tun.name(), mtu, "tunnel device up");

    // Next hops the data path sends to, kept resolved by the kernel.
    let next_hops: Vec<(u32, Ipv4Addr)> = match &hub_if {
        Some((iface, Some(gateway))) => vec![(iface.index, *gateway)],
        Some((_, None)) => Vec::new(),
        None => links
            .iter()
            .filter(|l| l.interface.l2_len != 0)
            .filter_map(|l| l.gateway.map(|g| (l.interface.index, g)))
            .collect(),
    };
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
    let configured = configure(&mut dp, &config, &tun_if, &links, hub_if.as_ref(), hub_addr);
    if let Err(e) = configured {
        dp.detach_all();
        let _ = dp.unpin();
        forget_neighbours(&net, &next_hops).await;
        return Err(e);
    }
    dp.forward_logs();
    info!(pins = %pin_dir.display(), "data plane attached");

    let control = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, config.port))
        .await
        .with_context(|| format!("binding the control socket on UDP port {}", config.port))?;
    let ids: Vec<u8> = match config.role {
        Role::Edge => links.iter().map(|l| l.id).collect(),
        Role::Hub => Vec::new(),
    };
    serve(&mut dp, &control, &config, &ids).await;

    info!("shutting down");
    dp.detach_all();
    if let Ok(snapshot) = dp.snapshot() {
        info!("final counters:\n{}", snapshot.table(&ids));
    }
    dp.unpin().context("removing pinned maps")?;
    forget_neighbours(&net, &next_hops).await;
    drop(tun);
    info!("stopped");
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

fn preflight() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("strata-ctl run needs root (CAP_NET_ADMIN and CAP_BPF to attach the data plane)");
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let bpffs = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        matches!(
            (f.next(), f.next(), f.next()),
            (_, Some("/sys/fs/bpf"), Some("bpf"))
        )
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

async fn resolve_edge_links(net: &Net, config: &Config) -> anyhow::Result<Vec<ResolvedLink>> {
    let mut out = Vec::new();
    for (i, link) in config.links.iter().enumerate() {
        let ifname = link
            .interface
            .as_deref()
            .context("edge link without interface")?;
        let field = format!("links[{i}].interface");
        let interface = net.interface(ifname).await.with_context(|| field.clone())?;
        let address = match link.address {
            Some(a) => a,
            None => net.first_ipv4(interface.index).await?.with_context(|| {
                format!("{field}: {ifname} has no IPv4 address yet (set links[{i}].address or wait for the modem)")
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
        out.push(ResolvedLink {
            id: link.id,
            interface,
            address,
            gateway,
            weight: link.weight,
        });
    }
    Ok(out)
}

fn be(a: Ipv4Addr) -> u32 {
    u32::from(a).to_be()
}

fn configure(
    dp: &mut Datapath,
    config: &Config,
    tun_if: &Interface,
    links: &[ResolvedLink],
    hub_if: Option<&(Interface, Option<Ipv4Addr>)>,
    hub_addr: Option<Ipv4Addr>,
) -> anyhow::Result<()> {
    let port_be = config.port.to_be();
    let mut tunnel = TunnelConfig {
        session: config.session,
        flags: 0,
        tunnel_ifindex: tun_if.index,
        tunnel_l2_len: tun_if.l2_len,
        local_ip_be: hub_addr.map_or(0, be),
        local_port_be: port_be,
        _pad: 0,
    };
    dp.set_config(tunnel)?;
    let weights = config.weights();
    match config.role {
        Role::Edge => {
            let peer = config.peer.as_ref().context("peer section missing")?;
            for link in links {
                dp.set_interface(link.interface.index, link.interface.l2_len)?;
                dp.set_link(
                    link.id,
                    LinkTx {
                        flags: if link.weight > 0 { LINK_ENABLED } else { 0 },
                        ifindex: link.interface.index,
                        src_ip_be: be(link.address),
                        nexthop_be: link.gateway.map_or(0, be),
                        src_port_be: port_be,
                        mtu: link.interface.mtu.min(u32::from(u16::MAX)) as u16,
                        l2_len: link.interface.l2_len,
                    },
                )?;
                dp.set_peer(
                    link.id,
                    Endpoint {
                        ip_be: be(peer.address),
                        port_be: peer.port.to_be(),
                        _pad: 0,
                    },
                )?;
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
        Role::Hub => {
            let (hub_if, gateway) = hub_if.context("hub interface missing")?;
            dp.set_interface(hub_if.index, hub_if.l2_len)?;
            for id in 0..MAX_LINKS as u8 {
                let weight = weights[usize::from(id)];
                dp.set_link(
                    id,
                    LinkTx {
                        flags: if weight > 0 { LINK_ENABLED } else { 0 },
                        ifindex: hub_if.index,
                        src_ip_be: hub_addr.map_or(0, be),
                        nexthop_be: gateway.map_or(0, be),
                        src_port_be: port_be,
                        mtu: hub_if.mtu.min(u32::from(u16::MAX)) as u16,
                        l2_len: hub_if.l2_len,
                    },
                )?;
            }
            tunnel.flags |= CONFIG_LEARN_PEERS;
        }
    }
    dp.seed_sequence(random_u32())?;
    dp.set_weights(&weights)?;
    tunnel.flags |= CONFIG_READY;
    dp.set_config(tunnel)?;
    dp.attach(Program::TunnelEgress, &config.tunnel.name)?;
    match config.role {
        Role::Edge => {
            for link in links {
                dp.attach(Program::LinkIngress, &link.interface.name)?;
            }
        }
        Role::Hub => {
            let (hub_if, _) = hub_if.context("hub interface missing")?;
            dp.attach(Program::LinkIngress, &hub_if.name)?;
        }
    }
    Ok(())
}

/// The controller loop: receive control packets, log a summary every second,
/// stop on SIGINT or SIGTERM.
async fn serve(dp: &mut Datapath, control: &UdpSocket, config: &Config, ids: &[u8]) {
    let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
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
    let mut buf = vec![0u8; 2048];
    let mut scheduled = config.weights();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = tick.tick() => {
                if let Ok(s) = dp.snapshot() {
                    debug!("counters:\n{}", s.table(ids));
                }
            }
            _ = learn.tick(), if config.role == Role::Hub => {
                if let Ok(s) = dp.snapshot() {
                    schedule_learned_links(dp, config, &s, &mut scheduled);
                }
            }
            received = control.recv_from(&mut buf) => match received {
                Ok((n, from)) => match Header::parse(&buf[..n], config.session, MAX_LINKS as u8) {
                    Ok((fields, _)) if fields.packet_type != PacketType::Data => {
                        debug!(%from, link = fields.link_id, kind = ?fields.packet_type, "control packet");
                    }
                    Ok(_) => debug!(%from, "data packet reached the control socket"),
                    Err(reason) => debug!(%from, reason = reason.name(), "malformed control packet"),
                },
                Err(e) => warn!("control socket: {e}"),
            },
        }
    }
}

/// The hub sends only on links whose edge endpoint it has learned: a link id
/// without a peer would make the kernel fall back to the next id for its
/// share, piling it onto one link.
fn schedule_learned_links(
    dp: &mut Datapath,
    config: &Config,
    snapshot: &Snapshot,
    scheduled: &mut Weights,
) {
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

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // getrandom(2) never fails for 4 bytes once the pool is initialised; fall
    // back to the clock rather than refuse to start.
    // SAFETY: writes at most 4 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(b)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    }
}
