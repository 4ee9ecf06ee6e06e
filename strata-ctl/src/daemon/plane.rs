//! The host side of the tunnel put in place: the tunnel device, the data
//! plane's maps and programs, next hops and sampling.
//!
//! Order matters. The maps are filled while the configuration's READY flag is
//! still clear (egress drops as `no_config`, ingress lets everything pass), and
//! the programs are attached last, so no packet ever meets a half-written
//! configuration.
//!
//! Adopting a running data plane (a daemon killed, or stopped keeping it) is
//! the exception: READY stays set throughout — the kernel is forwarding with
//! the maps as they are — each entry is rewritten in place (every write is
//! whole), the schedule the kernel runs is kept unless static weights say
//! otherwise, and the new programs replace the old ones on their pinned links.

use std::net::IpAddr;

use strata_common::{
    auth::TAG_LEN,
    maps::{CONFIG_AUTH_REQUIRED, CONFIG_LEARN_PEERS, CONFIG_READY, MAX_LINKS, TunnelConfig, ip6_words},
    packet::{OUTER_V4_LEN, OUTER_V6_LEN},
};
use tracing::{debug, info, warn};

use super::{
    error::StartError,
    links::{Side, hub_link_tx, link_tx, link_tx6},
};
use crate::{
    config::{Config, ControlMode},
    dataplane::{
        datapath::{Datapath, DatapathError, Program},
        sampling,
    },
    os::{
        host::random_u32,
        net::{Interface, Net},
        tun::Tun,
    },
};

/// The carrier MTU and tunnel header bytes that bound the tunnel MTU most:
/// each weighted link's MTU less its own headers — 56 bytes over IPv4, 76
/// over IPv6, the 8-byte authentication tag included — and on the hub its
/// interface's less the headers of the largest family it listens on.
/// (1500, 56) without a link.
///
/// The tag is reserved whether or not keys are installed yet: the tunnel
/// device's MTU is set once at start, and keys arrive later (handshake,
/// rotation) — without it, full-size packets would be dropped as
/// `oversize` from the moment the first key is installed.
pub(super) fn tightest_carrier(side: &Side) -> (u32, usize) {
    let overhead = |v6: bool| if v6 { OUTER_V6_LEN + TAG_LEN } else { OUTER_V4_LEN + TAG_LEN };
    match side {
        Side::Edge { links } => links
            .iter()
            .filter(|l| l.weight > 0)
            .map(|l| (l.interface.mtu, overhead(l.address.is_ipv6())))
            .min_by_key(|&(mtu, headers)| mtu.saturating_sub(headers as u32))
            .unwrap_or((1500, OUTER_V4_LEN + TAG_LEN)),
        Side::Hub { interface, address6, .. } => (interface.mtu, overhead(address6.is_some())),
    }
}

/// The tunnel MTU: configured, or the carrier MTU less the tunnel headers
/// (`(carrier_mtu, overhead)` from [`tightest_carrier`]), so no tunnel
/// packet ever needs fragmenting.
pub(super) fn tunnel_mtu(config: &Config, (carrier_mtu, overhead): (u32, usize)) -> Result<u32, StartError> {
    let max_mtu = carrier_mtu.saturating_sub(overhead as u32);
    match config.tunnel.mtu {
        Some(mtu) if mtu > max_mtu => {
            Err(StartError::MtuTooLarge { mtu, max: max_mtu, carrier: carrier_mtu, headers: overhead })
        }
        Some(m) => Ok(m),
        None => Ok(max_mtu),
    }
}

/// Creates the TUN device (or re-opens the one a previous daemon left) with
/// its MTU and addresses, up.
pub(super) async fn create_tunnel(
    net: &Net,
    config: &Config,
    mtu: u32,
) -> Result<(Tun, Interface), StartError> {
    let tun = Tun::create(&config.tunnel.name).map_err(|source| StartError::TunnelDevice { source })?;
    let tun_if = match set_up_tunnel(net, config, mtu, &tun).await {
        Ok(tun_if) => tun_if,
        Err(e) => {
            // Only a device made here is removed; one found running stays.
            if !tun.existed()
                && let Err(e) = tun.remove()
            {
                warn!("{e}");
            }
            return Err(e);
        }
    };
    info!(device = tun.name(), mtu, adopted = tun.existed(), "tunnel device up");
    Ok((tun, tun_if))
}

/// After a failed start: removes the tunnel device if this start made it,
/// leaves it if it was found running (its data plane goes on forwarding).
pub(super) fn abandon_tunnel(tun: Tun) {
    if tun.existed() {
        tun.keep();
    } else if let Err(e) = tun.remove() {
        warn!("{e}");
    }
}

async fn set_up_tunnel(net: &Net, config: &Config, mtu: u32, tun: &Tun) -> Result<Interface, StartError> {
    let tun_if = net.interface(tun.name()).await?;
    net.configure_tunnel_device(tun_if.index, mtu).await?;
    net.add_address(tun_if.index, config.tunnel.address).await?;
    match config.tunnel.address6 {
        None => quiet_ipv6(tun.name()),
        Some(v6) => {
            if mtu < 1280 {
                warn!("tunnel MTU {mtu} is below IPv6's 1280: the kernel disables IPv6 on {}", tun.name());
            }
            net.add_address(tun_if.index, v6).await?;
        }
    }
    Ok(tun_if)
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

/// Fills every map (READY still clear, unless adopting), then sets READY and
/// attaches.
pub(super) fn configure(
    dp: &mut Datapath,
    config: &Config,
    tun_if: &Interface,
    side: &Side,
) -> Result<(), DatapathError> {
    let mut tunnel = TunnelConfig {
        session: config.session,
        flags: 0,
        tunnel_ifindex: tun_if.index,
        tunnel_l2_len: tun_if.l2_len,
        local_ip_be: match side {
            Side::Hub { address: Some(a), .. } => a.to_bits().to_be(),
            _ => 0,
        },
        local_port_be: config.port.to_be(),
        _pad: 0,

        // Deadline drops need the adaptive controller's estimates: never
        // under static weights, and never on the hub.
        deadline_us: match side {
            Side::Edge { .. } if config.control.mode == ControlMode::Adaptive && config.control.drop_late => {
                u32::try_from(config.control.deadline_ms.saturating_mul(1000)).unwrap_or(u32::MAX)
            }
            _ => 0,
        },
    };
    let adopted = dp.adopted();
    if !adopted {
        dp.set_config(tunnel)?;
    }
    // Adopted or not: a data plane pinned by a build before class deadlines
    // has this map fresh and empty (which sheds nothing as late).
    dp.set_deadline_shares(config.control.deadline_shares())?;
    // The hub's IPv6 source, whether adopted or not: a data plane pinned by
    // a build before IPv6 carriers has this map fresh and empty.
    dp.set_local6(match side {
        Side::Hub { address6: Some(a), .. } => ip6_words(*a),
        _ => [0; 4],
    })?;
    let weights = config.weights();
    match side {
        Side::Edge { links } => {
            for link in links {
                dp.set_interface(link.interface.index, link.interface.l2_len)?;
                if let Some(tx6) = link_tx6(link.address, link.gateway) {
                    dp.set_link6(link.id, tx6)?;
                }
                let tx = link_tx(link.weight, &link.interface, link.address, link.gateway, config.port);
                dp.set_link(link.id, tx)?;
                dp.set_peer_at(link.id, link.hub)?;
                info!(
                    link = link.id,
                    interface = %link.interface.name,
                    address = %link.address,
                    gateway = ?link.gateway,
                    hub = %link.hub,
                    mtu = link.interface.mtu,
                    weight = link.weight,
                    "link configured"
                );
            }
        }
        Side::Hub { interface, address, gateway, address6, gateway6 } => {
            dp.set_interface(interface.index, interface.l2_len)?;
            for id in 0..MAX_LINKS as u8 {
                let weight = weights[usize::from(id)];
                let (tx, tx6) =
                    hub_link_tx(weight, interface, (*address, *gateway), (*address6, *gateway6), config.port);
                if let Some(tx6) = tx6 {
                    dp.set_link6(id, tx6)?;
                }
                dp.set_link(id, tx)?;
            }
            info!(interface = %interface.name, ?address, ?address6, "hub listening");
            tunnel.flags |= CONFIG_LEARN_PEERS;
        }
    }
    dp.seed_sequence(random_u32())?;
    // Adopted: the hub's schedule follows its learned peers and the adaptive
    // edge's its controller, both already in the map; static weights are
    // the configuration's to say.
    let keep_schedule =
        adopted && (matches!(side, Side::Hub { .. }) || config.control.mode == ControlMode::Adaptive);
    if !keep_schedule {
        dp.set_weights(&weights)?;
    }
    // Before the tunnel is ready: the egress program classifies every packet by it.
    dp.set_classes(&config.class_table())?;
    tunnel.flags |= CONFIG_READY;
    // An adopted data plane keeps requiring authentication: its keys are
    // in the pinned map, and a restart must not open a window in which
    // untagged packets are accepted.
    if adopted {
        tunnel.flags |= dp.config_flags()? & CONFIG_AUTH_REQUIRED;
    }
    dp.set_config(tunnel)?;
    dp.attach(Program::TunnelEgress, &config.tunnel.name)?;
    for interface in side.ingress_interfaces() {
        dp.attach(Program::LinkIngress, &interface.name)?;
    }
    if adopted {
        info!("adopted the running data plane: maps kept, programs replaced in place");
    }
    Ok(())
}

/// Removes the neighbour entries kept resolved for the data path.
pub(super) async fn forget_neighbours(net: &Net, next_hops: &[(u32, IpAddr)]) {
    for &(index, gateway) in next_hops {
        if let Err(e) = net.forget_neighbour(index, gateway).await {
            debug!("{e}");
        }
    }
}

/// Starts host-side sampling of the edge's link interfaces; the kernel's
/// drop reason names, or why it does not run (logged once, shown in status
/// and metrics — the tunnel runs either way).
pub(super) fn start_sampling(dp: &mut Datapath, side: &Side) -> Result<Vec<(u32, String)>, String> {
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
