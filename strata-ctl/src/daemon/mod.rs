//! `strata-ctl run`: set the tunnel up, hand the data path to the kernel,
//! serve events, and take everything down again on SIGINT/SIGTERM.
//!
//! This is the wiring layer; it decides nothing itself. Start-up goes in an
//! order others can rely on:
//!
//! 1. the host ([`crate::os::host`]): root, bpffs, the instance lock, the
//!    metrics port (bound first, so a taken port fails the start before
//!    anything is created);
//! 2. the links resolved ([`links`]), then the tunnel device and the data
//!    plane ([`plane`]) — maps filled, READY set, programs attached last;
//! 3. adaptive control ([`adaptive`]), the metrics and status servers, the
//!    OS advisors;
//! 4. only then is the daemon *ready* (sd_notify `READY=1`, see
//!    [`crate::os::notify`]), and the [`event_loop`] runs.
//!
//! Shutdown goes the other way: detach first, then remove pins, neighbour
//! entries, the device and the lock — or, stopped with
//! [`StopMode::Keep`] (`strata-ctl run --keep-dataplane`, for an upgrade),
//! leave the data plane forwarding and release only what is the daemon's own.
//!
//! The data plane belongs to the host, not to the process: the tunnel device
//! is persistent and the maps and program links are pinned (see
//! [`crate::os::tun`], [`crate::dataplane::datapath`]), so a daemon that is
//! killed leaves it forwarding with the last weights it wrote. A starting
//! daemon that finds one *adopts* it (the device re-opened, maps reused,
//! programs replaced in place); what a killed daemon left of its own — the
//! lock file, sockets, probe routing rules, neighbour entries — is
//! recognised and reused or replaced.
//!
//! A failed start is a [`StartError`] naming what was being done and the
//! field to change; whatever was created by then is removed first.

mod adaptive;
mod error;
mod event_loop;
pub mod follower;
mod handshake_paths;
pub mod links;
mod plane;
mod trust;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tracing::{info, warn};

pub use self::error::StartError;
use self::{
    adaptive::{Adaptive, remove_routing},
    event_loop::{Daemon, watch_sigterm},
    follower::Follower,
    links::Side,
};
use crate::{
    config::{Config, ControlMode, Role},
    dataplane::datapath::Datapath,
    inband::{auth::ControlKey, guard::GuardCounters, hub, prober},
    os::{
        advisors,
        host::{self, InstanceLock},
        net::Net,
        notify,
    },
    serve::{bitrate, metrics, status, view::Exposition},
};

/// How long, at most, an adopted data plane keeps the schedule the previous
/// adaptive controller wrote while the new one judges the links.
const ADOPTED_SCHEDULE_HOLD: std::time::Duration = std::time::Duration::from_secs(10);

/// Why no bitrate is published before the controller's first tick, or ever.
fn bitrate_unknown(config: &Config, adaptive: bool) -> &'static str {
    match (config.role, config.control.mode, adaptive) {
        (Role::Hub, ..) => "the hub: what fits is measured on the edge, for the edge's sources",
        (_, ControlMode::Static, _) => {
            "static mode: configured weights are shares, not capacities ([control] mode = \"adaptive\" measures them)"
        }
        (_, ControlMode::Adaptive, false) => "adaptive control is unavailable (see the log)",
        (_, ControlMode::Adaptive, true) => "not computed yet",
    }
}

/// What a stopping daemon does with the data plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopMode {
    /// Take it down: programs detached, pins, neighbour entries and the
    /// tunnel device removed.
    #[default]
    Remove,
    /// Leave it forwarding for the next daemon to adopt (an upgrade to a new
    /// binary): the device, pinned maps and links and neighbour entries
    /// stay; the controller, its probe routing, sockets and lock go.
    Keep,
}

/// Runs until a signal arrives, then stops as `stop` says.
pub async fn run(config: Config, config_path: &std::path::Path, stop: StopMode) -> Result<(), StartError> {
    host::preflight()?;
    // Watched from the start: a SIGTERM during set-up (tests stop a daemon as
    // soon as it is ready) must reach the clean shutdown, not the default
    // action that would kill the process with its device, pins and lock.
    let sigterm = watch_sigterm();
    let instance = InstanceLock::take(config.name())?;
    // What the in-band channel and the served sockets turn away, counted
    // from the start (the probers start before the exposition exists).
    let guards = std::sync::Arc::new(GuardCounters::default());
    // The key file is read before anything is created: a missing or
    // world-readable key fails the start cleanly.
    let trust = trust::Trust::start(&config, std::time::Instant::now())?;
    // Bound first: a taken port fails the start before anything is created.
    let metrics_listener = match config.metrics.listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| StartError::MetricsListen { address, source })?,
        ),
        None => None,
    };
    let net = Net::connect()?;
    info!(instance = config.name(), role = %config.role, session = config.session, "starting");
    let side = Side::resolve(&net, &config).await?;
    let mtu = plane::tunnel_mtu(&config, plane::tightest_carrier(&side))?;
    let (tun, tun_if) = plane::create_tunnel(&net, &config, mtu).await?;

    // From here a start that fails takes down only what it created: a data
    // plane it found running goes on forwarding.
    let next_hops = side.next_hops();
    for &(index, gateway) in &next_hops {
        if let Err(e) = net.keep_neighbour_resolved(index, gateway).await {
            plane::abandon_tunnel(tun);
            return Err(e.into());
        }
    }
    let pin_dir = config.pin_dir();
    let mut dp = match Datapath::load(Some(&pin_dir)) {
        Ok(dp) => dp,
        Err(source) => {
            if !tun.existed() {
                plane::forget_neighbours(&net, &next_hops).await;
            }
            plane::abandon_tunnel(tun);
            return Err(StartError::LoadDataplane { source });
        }
    };
    let adopted = dp.adopted();
    if let Err(e) = plane::configure(&mut dp, &config, &tun_if, &side) {
        if adopted {
            dp.release();
        } else {
            dp.detach_all();
            let _ = dp.unpin();
            plane::forget_neighbours(&net, &next_hops).await;
        }
        plane::abandon_tunnel(tun);
        return Err(e.into());
    }
    dp.forward_logs();
    info!(pins = %pin_dir.display(), adopted, "data plane attached");
    // Control packets are tagged with the kernel's sending key: an adopted
    // data plane may hold one already. The handshake (issue 14) installs
    // new ones in both (`Datapath::install_keys`, `ControlKey::install`).
    let control_key = ControlKey::default();
    if let Ok(slots) = dp.auth_keys() {
        control_key.follow(&slots);
    }
    // With keys configured every packet must carry a valid tag: before the
    // first handshake nothing but handshake messages passes (the kernel
    // lets those through untagged), and forged or replayed-from-another-
    // session packets never reach a socket or the tunnel. Cleared
    // otherwise, as an adopted data plane may carry it.
    let required = config.auth.mode == crate::config::AuthMode::Keys;
    if let Err(e) = dp.set_auth_required(required) {
        warn!("auth: setting whether every packet must be authenticated: {e}");
    }

    // The control socket shares the tunnel port with the per-link probe sockets.
    // Dual-stack ([::] with IPV6_V6ONLY off): the hub answers probes over
    // both families, IPv4 peers appearing as v4-mapped addresses. A host
    // without IPv6 (`ipv6.disable=1`) refuses the socket: IPv4 only then.
    let control = prober::bind_shared(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), config.port))
        .or_else(|e| {
            warn!("no IPv6 control socket ({e}): listening on IPv4 only");
            prober::bind_shared(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), config.port))
        })
        .map_err(|source| StartError::ControlSocket { port: config.port, source });
    let adaptive = match (&side, config.control.mode) {
        (Side::Edge { links }, ControlMode::Adaptive) if control.is_ok() => {
            match Adaptive::start(&net, &config, links, mtu, &control_key, guards.clone()).await {
                Ok(mut a) => {
                    // Long enough for links to pass probing and warm-up
                    // (2-6 s in the lab), short enough that a link lost
                    // meanwhile is not carried blind for long.
                    a.keep_running = adopted.then(|| std::time::Instant::now() + ADOPTED_SCHEDULE_HOLD);
                    Some(a)
                }
                Err(e) => {
                    warn!("adaptive control unavailable, keeping the configured weights: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    // A static edge with keys needs per-link sockets for its handshake
    // (adaptive control's probers have them): see `handshake_paths`.
    let mut handshake_paths = match (&side, config.control.mode, config.auth.mode) {
        (Side::Edge { links }, ControlMode::Static, crate::config::AuthMode::Keys) if control.is_ok() => {
            match handshake_paths::HandshakePaths::start(&net, &config, links).await {
                Ok(h) => Some(h),
                Err(e) => {
                    warn!(
                        "auth: no per-link sockets for the handshake, sending by the main routing table: {e}"
                    );
                    None
                }
            }
        }
        _ => None,
    };
    let interfaces =
        side.links().iter().map(|l| (l.id, l.interface.name.clone(), l.interface.index)).collect();
    let mode = match config.control.mode {
        ControlMode::Static => "static",
        ControlMode::Adaptive => "adaptive",
    };
    let exposition = Exposition::with_guards(pin_dir.clone(), interfaces, mode, guards);
    exposition.publish(|p| {
        p.bitrate.deadline = std::time::Duration::from_millis(config.control.deadline_ms);
        p.bitrate.unknown = bitrate_unknown(&config, adaptive.is_some()).to_string();
    });
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
        exposition.set_sampling(plane::start_sampling(&mut dp, &side));
    }
    exposition.set_programs(dp.program_ids(), program_stats.is_some());
    let mut tasks = Vec::new();
    if let Some(listener) = metrics_listener {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "serving Prometheus metrics on /metrics");
        }
        tasks.push(tokio::spawn(metrics::serve(listener, exposition.clone())));
    }
    // Reload requests from the status socket to the event loop.
    let (reload_tx, reloads) = tokio::sync::mpsc::channel(4);
    // The status socket is a convenience: without it the tunnel still runs.
    let _socket_file = match status::bind(config.name(), config.status.group.as_deref()) {
        Ok((listener, file)) => {
            info!(socket = %status::socket_path(config.name()).display(), "answering strata-ctl status");
            let name = config.name().to_string();
            tasks.push(tokio::spawn(status::serve(listener, name, exposition.clone(), reload_tx.clone())));
            Some(file)
        }
        Err(e) => {
            warn!("no status socket: {e:#}");
            None
        }
    };
    // Next to the status socket, with its permissions; a convenience too.
    let bitrate_path = bitrate::socket_path(config.name());
    let _bitrate_file = match status::bind_local(&bitrate_path, config.status.group.as_deref()) {
        Ok((listener, file)) => {
            info!(socket = %bitrate_path.display(), "publishing what fits within the deadline");
            tasks.push(tokio::spawn(bitrate::serve(listener, exposition.clone(), bitrate::PERIOD)));
            Some(file)
        }
        Err(e) => {
            warn!("no bitrate socket: {e:#}");
            None
        }
    };
    let advisors = advisors::start(&config, matches!(side, Side::Edge { .. }));
    exposition.publish(|p| {
        p.os_signals = config.os_signals.name();
        p.advisors.clone_from(&advisors.states);
    });
    let sysfs = host::namespace_sysfs(
        &config.tunnel.name,
        &status::socket_path(config.name()).with_extension("sysfs"),
    );
    let (control, mut dp, side, mut adaptive) = match control {
        Ok(control) => {
            let follower = match &side {
                Side::Edge { links, .. } => {
                    let root = sysfs.as_ref().map(|(root, _)| root.as_path());
                    Some(Follower::new(&config, links, root))
                }
                Side::Hub { .. } => None,
            };
            let mut daemon = Daemon {
                config: config.clone(),
                config_path: config_path.to_path_buf(),
                reloads,
                net: &net,
                dp,
                control,
                side,
                adaptive,
                exposition,
                advisors,
                follower,
                scheduled: config.weights(),
                feedback_seq: hub::feedback_seq_start(std::time::SystemTime::now()),
                probe_limiter: hub::ProbeLimiter::for_probing(
                    std::time::Duration::from_millis(config.control.probe_interval_ms),
                    config.control.train_packets,
                ),
                epoch: tokio::time::Instant::now(),
                trust,
                handshake_paths: handshake_paths.take(),
                control_key,
                installed_epochs: Vec::new(),
            };
            // Set-up is done: keep only what running needs (see `privilege`).
            // A sysfs mounted for this namespace (a daemon started in another
            // namespace than /sys's: the lab) is unmounted at exit, which
            // needs CAP_SYS_ADMIN; under the unit there is no such mount.
            let mut keep = vec![crate::os::privilege::CAP_NET_ADMIN];
            if matches!(sysfs, Some((_, Some(_)))) {
                keep.push(crate::os::privilege::CAP_SYS_ADMIN);
            }
            match crate::os::privilege::keep_only(&keep) {
                Ok((before, after)) if before != after => {
                    info!("capabilities dropped after set-up: permitted {before:#x} → {after:#x}");
                }
                Ok(_) => {}
                Err(e) => warn!("could not drop capabilities after set-up: {e}"),
            }
            daemon.run_until_stopped(sigterm).await;
            notify::stopping();
            info!("shutting down");
            handshake_paths = daemon.handshake_paths.take();
            (Ok(()), daemon.dp, daemon.side, daemon.adaptive)
        }
        Err(e) => (Err(e), dp, side, adaptive),
    };
    for task in tasks {
        task.abort();
    }
    if let Some(a) = adaptive.as_mut() {
        remove_routing(&net, &mut a.paths).await;
    }
    if let Some(h) = handshake_paths.as_mut() {
        remove_routing(&net, &mut h.paths).await;
    }
    drop(handshake_paths);
    drop(adaptive);
    // A start that failed (no control socket) leaves a data plane it found
    // running as it was, whatever the stop mode.
    let stop = if control.is_err() && adopted { StopMode::Keep } else { stop };
    let unpinned = match stop {
        StopMode::Remove => {
            dp.detach_all();
            if let Ok(snapshot) = dp.snapshot() {
                info!("final counters:\n{}", snapshot.table(&side.link_ids()));
            }
            let unpinned = dp.unpin().map_err(|source| StartError::Unpin { source });
            plane::forget_neighbours(&net, &next_hops).await;
            if let Err(e) = tun.remove() {
                warn!("{e}");
            }
            unpinned
        }
        StopMode::Keep => {
            if let Ok(snapshot) = dp.snapshot() {
                info!("counters so far:\n{}", snapshot.table(&side.link_ids()));
            }
            dp.release();
            tun.keep();
            info!(pins = %pin_dir.display(), "data plane left running for the next daemon to adopt");
            Ok(())
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    const EDGE: &str = "version = 1\nrole = \"edge\"\nsession = 7\n[tunnel]\naddress = \"10.200.0.1/30\"\n\
                        [peer]\naddress = \"198.19.0.2\"\n[[links]]\nid = 0\ninterface = \"lnk0\"\nweight = 1\n";

    #[test]
    fn the_bitrate_says_why_it_is_unknown() {
        let edge =
            |mode: &str| Config::parse(&format!("{EDGE}[control]\nmode = \"{mode}\"\n"), "t.toml").unwrap();
        assert!(
            bitrate_unknown(&edge("static"), false).starts_with("static mode: configured weights are shares")
        );
        assert_eq!(bitrate_unknown(&edge("adaptive"), true), "not computed yet");
        assert_eq!(
            bitrate_unknown(&edge("adaptive"), false),
            "adaptive control is unavailable (see the log)"
        );
        let hub = Config::parse(
            "version = 1\nrole = \"hub\"\nsession = 7\n[tunnel]\naddress = \"10.200.0.2/30\"\n[hub]\ninterface = \"wan0\"\n",
            "t.toml",
        )
        .unwrap();
        assert!(bitrate_unknown(&hub, false).starts_with("the hub:"));
    }
}
