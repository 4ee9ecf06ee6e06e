//! The adaptive controller's moving parts in the daemon: per-link policy
//! routing and probers feeding one [`Controller`], and its decisions written
//! to the kernel.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64},
    },
    time::{Duration, Instant},
};

use strata_common::{
    auth::TAG_LEN,
    packet::{OUTER_V4_LEN, OUTER_V6_LEN},
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{
    error::AdaptiveError,
    follower::{LINK_TABLE_BASE, ProbePath},
    links::{ResolvedLink, Side, link_tx},
};
use crate::{
    config::Config,
    control::{
        controller::{ControlEvent, Controller},
        evidence::Evidence,
        fit::FitConfig,
        lifecycle::State,
        scoring::Decision,
        train::TrainShape,
    },
    dataplane::datapath::Datapath,
    inband::{auth::ControlKey, guard::GuardCounters, prober},
    os::{host::cpu_time, net::Net},
};

/// The adaptive controller and what feeds it.
#[derive(Debug)]
pub(super) struct Adaptive {
    pub(super) controller: Controller,
    pub(super) samples: mpsc::Receiver<Evidence>,
    /// Handshake messages the probers' sockets received: link id, payload.
    pub(super) handshakes: mpsc::Receiver<(u8, Vec<u8>)>,
    probers: Vec<tokio::task::JoinHandle<()>>,
    /// Per link, in the links' order: its routing and probe socket.
    pub(super) paths: Vec<ProbePath>,
    /// Per link: raised to make its prober send a packet train.
    trains: Vec<(u8, Arc<AtomicBool>)>,
    /// Per link: IP bytes its prober sent.
    probe_bytes: Vec<(u8, Arc<AtomicU64>)>,
    /// Decisions written to the kernel since the last summary.
    pub(super) updates: u64,
    /// Whether the kernel chooses by earliest arrival yet (set with the first budgets).
    pub(super) paced: bool,
    /// Adopted a running data plane: until this controller has judged
    /// every link (none left in init, probe or warm-up) or this moment
    /// passes, the kernel keeps the schedule the previous controller left.
    /// A fresh controller knows nothing for its first probes: its first
    /// decisions would put everything on the first link heard, or nothing
    /// anywhere, while the links are carrying traffic.
    pub(super) keep_running: Option<Instant>,
    /// The daemon's CPU time at the last summary.
    pub(super) cpu: Duration,
    /// Time 0 of the controller's clock.
    epoch: Instant,
    /// The same moment on the kernel's clock (`bpf_ktime_get_ns`, which is
    /// CLOCK_MONOTONIC, as `Instant` is on Linux), ns: how the
    /// controller's times become the kernel's.
    pub(super) epoch_kernel_ns: u64,
    /// How what fits within the deadline is computed.
    pub(super) fit: FitConfig,
}

impl Drop for Adaptive {
    fn drop(&mut self) {
        for p in &self.probers {
            p.abort();
        }
    }
}

impl Adaptive {
    /// Per-link routing and a prober per link, feeding one controller;
    /// `mtu` is the tunnel's (what fits is counted in its packets' bytes).
    pub(super) async fn start(
        net: &Net,
        config: &Config,
        links: &[ResolvedLink],
        mtu: u32,
        control_key: &ControlKey,
        guards: Arc<GuardCounters>,
    ) -> Result<Self, AdaptiveError> {
        let (tx, samples) = mpsc::channel(1024);
        let (handshake_tx, handshakes) = mpsc::channel(16);
        let interval = Duration::from_millis(config.control.probe_interval_ms);
        let mut probers = Vec::new();
        let mut trains = Vec::new();
        let mut probe_bytes = Vec::new();
        let mut paths = Vec::new();
        for link in links {
            let (routing, sock) = match open_path(net, config, link).await {
                Ok(opened) => opened,
                Err(e) => {
                    remove_routing(net, &mut paths).await;
                    return Err(e);
                }
            };
            let (socket, sock) = tokio::sync::watch::channel(Arc::new(sock));
            paths.push(ProbePath { routing: Some(routing), socket });
            let want_train = Arc::new(AtomicBool::new(false));
            trains.push((link.id, want_train.clone()));
            let sent_bytes = Arc::new(AtomicU64::new(0));
            probe_bytes.push((link.id, sent_bytes.clone()));
            let prober = prober::Prober {
                link: link.id,
                sock,
                hub: link.hub,
                session: config.session,
                interval,
                train: TrainShape {
                    packets: config.control.train_packets,
                    bytes: config.control.train_bytes,
                },
                want_train,
                sent_bytes,
                handshakes: handshake_tx.clone(),
                key: control_key.clone(),
                guards: guards.clone(),
            };
            probers.push(tokio::spawn(prober::run(prober, tx.clone())));
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
        Ok(Self {
            controller,
            samples,
            handshakes,
            probers,
            paths,
            trains,
            probe_bytes,
            updates: 0,
            paced: false,
            keep_running: None,
            cpu: cpu_time(),
            epoch: Instant::now(),
            epoch_kernel_ns: crate::dataplane::stats::monotonic_ns(),
            fit: FitConfig {
                deadline: Duration::from_millis(config.control.deadline_ms),
                headroom: config.control.headroom,
                // A mixed bond's IPv6 links carry 20 bytes more per packet: the
                // share is counted at the larger overhead, erring low.
                payload_share: FitConfig::payload_share(
                    mtu,
                    TAG_LEN
                        + if links.iter().any(|l| l.address.is_ipv6()) { OUTER_V6_LEN } else { OUTER_V4_LEN },
                ),
            },
        })
    }

    /// Whether the adopted schedule is still kept (see `keep_running`);
    /// clears it once the controller has judged every link, or at the
    /// deadline.
    pub(super) fn keeps_running_schedule(&mut self) -> bool {
        let Some(until) = self.keep_running else { return false };
        let judging = self
            .controller
            .states()
            .iter()
            .any(|(_, s)| matches!(s, State::Init | State::Probe | State::Warm));
        if judging && Instant::now() < until {
            return true;
        }
        self.keep_running = None;
        false
    }

    /// Now on the controller's clock.
    pub(super) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Raises the train flag of each link whose prober should send one.
    pub(super) fn ask_for_trains(&mut self) {
        let now = self.now();
        for id in self.controller.trains_due(now) {
            if let Some((_, want)) = self.trains.iter().find(|(l, _)| *l == id) {
                want.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// IP bytes each link's prober has sent.
    pub(super) fn probe_bytes(&self) -> Vec<(u8, u64)> {
        self.probe_bytes.iter().map(|(id, b)| (*id, b.load(std::sync::atomic::Ordering::Relaxed))).collect()
    }

    /// Logs what the controller did since the last call: it does no logging
    /// of its own.
    pub(super) fn log_events(&mut self) {
        for event in self.controller.drain_events() {
            match event {
                ControlEvent::State { link, transition: t } => {
                    info!(link, from = t.from.name(), to = t.to.name(), reason = ?t.reason, "link state");
                }
                ControlEvent::Caution { link, what } => {
                    info!(
                        link,
                        what,
                        "early warning: share halved for {:?}",
                        crate::control::controller::CAUTION_FOR
                    );
                }
            }
        }
    }
}

/// Removes the links' policy routing (start-up failed, or shutdown).
/// A link's own path: its policy routing (table `LINK_TABLE_BASE + id`)
/// and a socket bound to its address and the tunnel port; on failure
/// nothing of it is left behind.
pub(super) async fn open_path(
    net: &Net,
    config: &Config,
    link: &ResolvedLink,
) -> Result<(crate::os::net::LinkRouting, tokio::net::UdpSocket), AdaptiveError> {
    let table = LINK_TABLE_BASE + u32::from(link.id);
    let routing = net.add_link_routing(link.interface.index, link.address, link.gateway, table).await?;
    let address = SocketAddr::new(link.address, config.port);
    match prober::bind_shared(address) {
        Ok(sock) => Ok((routing, sock)),
        Err(source) => {
            let _ = net.remove_link_routing(routing).await;
            Err(AdaptiveError::ProbeSocket { link: link.id, address, source })
        }
    }
}

pub(super) async fn remove_routing(net: &Net, paths: &mut [ProbePath]) {
    for path in paths {
        if let Some(r) = path.routing.take()
            && let Err(e) = net.remove_link_routing(r).await
        {
            debug!("{e}");
        }
    }
}

/// Applies a controller decision: each link's send budget (with the hub's
/// acknowledgement, its times turned into the kernel's by
/// `epoch_kernel_ns`), enabled only while it has weight (so the kernel's
/// fallback never picks a demoted link), then the schedule.
pub(super) fn apply(
    dp: &mut Datapath,
    config: &Config,
    side: &Side,
    decision: &Decision,
    epoch_kernel_ns: u64,
) {
    for link in side.links() {
        let id = usize::from(link.id);
        let budget = decision.budgets[id];
        let mut tx = link_tx(decision.weights[id], &link.interface, link.address, link.gateway, config.port)
            .with_budget(budget.bytes_per_s, budget.delay_us, budget.backlog_limit_us);
        if let Some(ack) = budget.ack.filter(|_| tx.has_budget()) {
            tx = tx.with_ack(
                ack.next_seq,
                epoch_kernel_ns + ack.anchor.as_nanos() as u64,
                ack.drain_bytes_per_s,
            );
            if ack.drain_lower_bound {
                tx = tx.with_drain_lower_bound();
            }
        }
        if let Err(e) = dp.set_link(link.id, tx) {
            warn!("updating link {}: {e}", link.id);
        }
    }
    if let Err(e) = dp.set_weights(&decision.weights) {
        warn!("updating the schedule: {e}");
    }
}
