//! The daemon's event loop: one [`Daemon`] context, one method per event.
//!
//! Everything the daemon reacts to arrives here — a signal, an OS advisor's
//! event, in-band evidence, a control datagram, or one of its clocks — and
//! each is handled to completion before the next is taken, so no two
//! handlers ever race over the data plane's maps. The handlers are thin: the
//! decisions are [`crate::control`]'s, the reactions to the OS are
//! [`crate::os::follow`]'s, and what is shown goes through the
//! [`Exposition`].

use std::{sync::Arc, time::Duration};

use strata_common::{
    maps::{CONFIG_EARLIEST_ARRIVAL, MAX_LINKS},
    wire::{FeedbackPayload, HEADER_LEN, Header, PacketType},
};
use tokio::{
    net::UdpSocket,
    signal::unix::{Signal, SignalKind},
    time::{Instant, MissedTickBehavior, interval},
};
use tracing::{debug, error, info, warn};

use super::{
    adaptive::{Adaptive, apply},
    follower::{Follower, Hands, Hint},
    links::Side,
};
use crate::{
    config::{Config, Role, change::classify},
    control::{evidence::Evidence, schedule::Weights},
    dataplane::{backlog::KernelBacklog, datapath::Datapath, stats::Snapshot},
    inband::{
        auth::ControlKey,
        hub::{self, LinkFeedback},
        prober,
    },
    os::{
        advisors::{Advisors, OsEvent},
        follow::Reaction,
        host::cpu_time,
        net::Net,
    },
    serve::view::Exposition,
};

/// The running daemon: what every event handler may touch.
#[derive(Debug)]
pub(super) struct Daemon<'a> {
    /// The running configuration (a reload replaces it).
    pub(super) config: Config,
    /// Where it was read from, re-read on reload.
    pub(super) config_path: std::path::PathBuf,
    /// Reload requests from the status socket.
    pub(super) reloads: tokio::sync::mpsc::Receiver<crate::serve::reload::Request>,
    pub(super) net: &'a Net,
    pub(super) dp: Datapath,
    /// The tunnel port's wildcard socket: the hub's probe responder, and
    /// where the edge's stray control packets land.
    pub(super) control: UdpSocket,
    pub(super) side: Side,
    pub(super) adaptive: Option<Adaptive>,
    pub(super) exposition: Arc<Exposition>,
    pub(super) advisors: Advisors,
    /// The edge's links following their interfaces.
    pub(super) follower: Option<Follower>,
    /// The hub's schedule as last written (learned links only).
    pub(super) scheduled: Weights,
    /// The hub's next feedback sequence number.
    pub(super) feedback_seq: u32,
    /// Hub: how many probes per link are answered.
    pub(super) probe_limiter: hub::ProbeLimiter,
    /// Time 0 of the hub's feedback clock.
    pub(super) epoch: Instant,
    /// The session handshake and its keys.
    pub(super) trust: super::trust::Trust,
    /// A static edge's per-link sockets for the handshake.
    pub(super) handshake_paths: Option<super::handshake_paths::HandshakePaths>,
    /// The key control packets are tagged with.
    pub(super) control_key: ControlKey,
    /// Key epochs this daemon installed in the data plane.
    pub(super) installed_epochs: Vec<u32>,
}

impl Daemon<'_> {
    /// Serves events until SIGINT or SIGTERM (`sigterm`, watched since
    /// start-up).
    pub(super) async fn run_until_stopped(&mut self, sigterm: std::io::Result<Signal>) {
        self.exposition.publish(|p| p.controller_up = self.adaptive.is_some());
        // Everything served is up (data plane, status socket, metrics,
        // controller, advisors, and the controller's state published): only
        // now may whoever started us (systemd, the lab) rely on it. Tests
        // wait for this, never for a log line.
        info!("ready");
        crate::os::notify::ready();
        let mut sigterm = match sigterm {
            Ok(s) => s,
            Err(e) => {
                warn!("cannot watch SIGTERM ({e}); stop with SIGINT");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        // SIGHUP: re-read the configuration (as `strata-ctl reload`).
        let mut sighup = match tokio::signal::unix::signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("cannot watch SIGHUP ({e}); reload with `strata-ctl reload` only");
                None
            }
        };
        // systemd's watchdog: pinged from this loop, so a wedged loop is
        // noticed (and the unit restarted), not just a dead process.
        let mut watchdog = crate::os::notify::watchdog_interval().map(|period| {
            let mut tick = interval(period);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            tick
        });
        let hub = self.config.role == Role::Hub;
        let adaptive = self.adaptive.is_some();
        let mut control_tick = interval(Duration::from_millis(self.config.control.update_interval_ms));
        control_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut second = interval(Duration::from_secs(1));
        // The hub checks which links it has learned ten times a second, so a
        // new link joins its schedule quickly.
        let mut learn = interval(Duration::from_millis(100));
        // The hub reports what its kernel counted per link, at the probe rate.
        let mut feedback = interval(Duration::from_millis(self.config.control.probe_interval_ms));
        let mut buf = vec![0u8; 2048];
        // Taken out of the controller so the loop can wait on it and on the
        // controller's evidence at once.
        let mut handshakes = self
            .adaptive
            .as_mut()
            .map(|a| &mut a.handshakes)
            .or(self.handshake_paths.as_mut().map(|h| &mut h.messages))
            .map(|r| std::mem::replace(r, tokio::sync::mpsc::channel(1).1));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = sigterm.recv() => break,
                Some(()) = next_hangup(&mut sighup) => {
                    let _ = self.reload();
                }
                Some(()) = next_tick(&mut watchdog) => crate::os::notify::watchdog(),
                Some(reply) = self.reloads.recv() => {
                    let _ = reply.send(self.reload());
                }
                Some(event) = self.advisors.events.recv() => self.on_os_event(event).await,
                _ = second.tick() => self.on_second(),
                // The handshake's own clock (retries, rekeying, overlaps).
                () = next_deadline(self.trust.deadline()) => self.on_trust_tick().await,
                Some((link, payload)) = next_handshake(&mut handshakes) => {
                    // On a link's own socket: answered (never, on the edge) on it.
                    self.on_handshake(link, &payload, None).await;
                }
                _ = learn.tick(), if hub => self.on_learn(),
                _ = feedback.tick(), if hub => self.on_feedback_due().await,
                Some(sample) = next_evidence(&mut self.adaptive) => self.on_evidence(sample),
                _ = control_tick.tick(), if adaptive => self.on_control_tick().await,
                received = prober::recv_stamped(&self.control, &mut buf) => match received {
                    Ok((n, from, rx_ns)) => match handshake_payload(&buf[..n], self.config.session) {
                        Some((link, payload)) => {
                            let payload = payload.to_vec();
                            self.on_handshake(link, &payload, Some(from)).await;
                        }
                        None => {
                            let guards = self.exposition.guards();
                            let session = self.config.session;
                            hub::answer(
                                &self.control,
                                &self.control_key,
                                &buf[..n],
                                from,
                                session,
                                rx_ns,
                                &mut self.probe_limiter,
                                &guards,
                            )
                            .await;
                        }
                    },
                    Err(e) => warn!("control socket: {e}"),
                },
            }
        }
    }

    /// Re-reads the configuration file and applies the whole of it, or
    /// refuses it (logged) and keeps the running one: a file that does not
    /// load, or a change that needs a restart ([`classify`]).
    fn reload(&mut self) -> crate::serve::reload::Outcome {
        let path = self.config_path.display().to_string();
        let outcome = self.try_reload(&path);
        match &outcome {
            Ok(applied) if applied.is_empty() => info!(file = %path, "reload: no change"),
            Ok(applied) => info!(file = %path, ?applied, "configuration reloaded"),
            Err(why) => error!("{why}"),
        }
        outcome
    }

    fn try_reload(&mut self, path: &str) -> crate::serve::reload::Outcome {
        let refused =
            |why: String| format!("reload of {path} refused, keeping the running configuration: {why}");
        let new = Config::load(&self.config_path).map_err(|e| refused(e.to_string()))?;
        let changes = classify(&self.config, &new);
        if !changes.reloadable_without_restart() {
            return Err(refused(format!("these changes need a restart: {}", changes.restart.join(", "))));
        }
        // Weights (static control, see `classify`): the edge writes its
        // schedule now; the hub's next learning pass writes the new shares
        // of the links it has learned.
        if self.config.role == Role::Edge && changes.reloadable.iter().any(|f| f.ends_with(".weight")) {
            self.dp.set_weights(&new.weights()).map_err(|e| refused(format!("writing the weights: {e}")))?;
            if let Side::Edge { links, .. } = &mut self.side {
                for link in links.iter_mut() {
                    if let Some(n) = new.links.iter().find(|n| n.id == link.id) {
                        link.weight = n.weight;
                    }
                }
            }
        }
        // Delivery classes: one map entry, rewritten in place. A packet
        // classified during the write may see part of the old table (a
        // wrong class for it alone, never an invalid one).
        if changes.reloadable.iter().any(|f| f == "classes") {
            self.dp
                .set_classes(&new.class_table())
                .map_err(|e| refused(format!("writing the classes: {e}")))?;
        }
        self.config = new;
        Ok(changes.reloadable)
    }

    /// An OS advisor said something: the edge's links follow it.
    async fn on_os_event(&mut self, event: OsEvent) {
        debug!(?event, "OS advisor");
        let Some(follower) = self.follower.as_mut() else { return };
        let Side::Edge { links, .. } = &mut self.side else { return };
        let (reactions, hints) = match event {
            OsEvent::Net(e) => (follower.on_event(&e, links), Vec::new()),
            OsEvent::Device(e) => (follower.on_device(&e, self.net, links).await, Vec::new()),
            OsEvent::Modem(e) => (Vec::new(), follower.on_modem(e, links)),
            OsEvent::State(name, state) => {
                self.exposition.publish(|p| match p.advisors.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, s)) => *s = state,
                    None => p.advisors.push((name, state)),
                });
                return;
            }
        };
        self.follow(reactions, hints).await;
    }

    /// Once a second: counters in the debug log, what each link is as
    /// measurement fills in, and the controller's summary.
    fn on_second(&mut self) {
        if let Ok(s) = self.dp.snapshot() {
            debug!("counters:\n{}", s.table(&self.side.link_ids()));
        }
        self.publish_bindings();
        if let Some(a) = self.adaptive.as_mut() {
            let cpu = cpu_time();
            let cpu_ms_per_s = cpu.saturating_sub(a.cpu).as_secs_f64() * 1e3;
            let kernel = self.dp.kernel_backlogs().map_or_else(|e| e.to_string(), |b| backlogs_line(&b));
            info!(
                updates_per_s = a.updates,
                cpu_ms_per_s,
                "links: {} kernel: {kernel}",
                a.controller.summary()
            );
            (a.updates, a.cpu) = (0, cpu);
        }
    }

    /// Once a second: the edge's handshake schedule (first contact,
    /// retries, rekeying) and the end of a rotation's overlap.
    async fn on_trust_tick(&mut self) {
        let now = std::time::Instant::now();
        if self.config.role == Role::Edge
            && self.config.auth.mode == crate::config::AuthMode::Keys
            && let Ok(s) = self.dp.snapshot()
        {
            self.trust.on_sent(now, s.links.iter().map(|l| l.tx_packets).sum());
        }
        let (due, expired) = self.trust.tick(now, self.config.session);
        if let Some((attempt, initiation)) = due {
            self.send_initiation(attempt, &initiation).await;
        }
        if expired {
            self.keys_changed();
        }
        let view = self.trust.view();
        self.exposition.publish(|p| p.auth = view);
    }

    /// Edge: sends an initiation on link number `attempt` (round robin over
    /// the links), from the link's own socket when adaptive control has
    /// one (the answer comes back on that socket), else from the control
    /// socket.
    async fn send_initiation(&mut self, attempt: u32, initiation: &[u8]) {
        let Side::Edge { links } = &self.side else { return };
        if links.is_empty() {
            return;
        }
        let i = attempt as usize % links.len();
        let link = &links[i];
        let mut out = vec![0u8; HEADER_LEN + initiation.len()];
        out[HEADER_LEN..].copy_from_slice(initiation);
        super::trust::frame(&mut out, self.config.session, link.id);
        let paths =
            self.adaptive.as_ref().map(|a| &a.paths).or(self.handshake_paths.as_ref().map(|h| &h.paths));
        let sock = paths.and_then(|p| p.get(i)).map(|p| p.socket.borrow().clone());
        let sent = match &sock {
            Some(sock) => sock.send_to(&out, link.hub).await,
            None => self.control.send_to(&out, link.hub).await,
        };
        match sent {
            Ok(_) => debug!(link = link.id, attempt, hub = %link.hub, "auth: initiation sent"),
            // Without adaptive control the control socket sends by the
            // host's routing table, which may have no route to the hub.
            Err(e) if attempt.is_multiple_of(5) => {
                warn!(link = link.id, hub = %link.hub, "auth: initiation not sent: {e}")
            }
            Err(e) => debug!(link = link.id, "auth: initiation not sent: {e}"),
        }
    }

    /// A handshake message arrived on `link` (from `from`, when it came to
    /// the control socket: the hub answers there).
    async fn on_handshake(&mut self, link: u8, payload: &[u8], from: Option<std::net::SocketAddr>) {
        let now = std::time::Instant::now();
        match self.trust.on_message(self.config.session, link, payload, now) {
            super::trust::Outcome::Nothing => {}
            super::trust::Outcome::Keys => self.keys_changed(),
            super::trust::Outcome::Reply(reply) => {
                if let Some(from) = from
                    && let Err(e) = self.control.send_to(&reply, from).await
                {
                    debug!(%from, "auth: handshake response not sent: {e}");
                }
                self.keys_changed();
            }
        }
        let view = self.trust.view();
        self.exposition.publish(|p| p.auth = view);
    }

    /// The key ring changed: the data plane gets it.
    fn keys_changed(&mut self) {
        if let Some(ring) = self.trust.ring() {
            super::trust::install(&mut self.dp, &self.control_key, ring, &mut self.installed_epochs);
        }
    }

    /// Hub: sends only on links whose edge endpoint it has learned — a link
    /// id without a peer would make the kernel fall back to the next id for
    /// its share, piling it onto one link.
    fn on_learn(&mut self) {
        let Ok(snapshot) = self.dp.snapshot() else { return };
        let mut weights = self.config.weights();
        for (w, link) in weights.iter_mut().zip(&snapshot.links) {
            if link.peer_ip.is_unspecified() {
                *w = 0;
            }
        }
        if weights == self.scheduled || weights.iter().all(|&w| w == 0) {
            return;
        }
        match self.dp.set_weights(&weights) {
            Ok(()) => {
                info!(?weights, "hub schedule follows the learned links");
                self.scheduled = weights;
            }
            Err(e) => warn!("updating the hub schedule: {e}"),
        }
    }

    /// Hub: tells the edge what its kernel counted per learned link.
    async fn on_feedback_due(&mut self) {
        let Ok(snapshot) = self.dp.snapshot() else { return };
        let now_us = self.epoch.elapsed().as_micros() as u32;
        let links = learned_feedback(&snapshot);
        self.feedback_seq = hub::send_feedback(
            &self.control,
            &self.control_key,
            self.config.session,
            &links,
            self.feedback_seq,
            now_us,
        )
        .await;
    }

    /// A prober's evidence goes to the controller.
    fn on_evidence(&mut self, sample: Evidence) {
        // Every piece of evidence came from the hub: the session is alive.
        self.trust.on_heard(std::time::Instant::now());
        if let Some(a) = self.adaptive.as_mut() {
            let now = a.now();
            a.controller.on_evidence(now, sample);
        }
    }

    /// The controller's tick: publish its view, feed it the kernel's
    /// overflow, ask for trains, write its decision, re-check silent links.
    async fn on_control_tick(&mut self) {
        let Some(a) = self.adaptive.as_mut() else { return };
        let (report, probe_bytes) = (a.controller.report(), a.probe_bytes());
        self.exposition.publish(|p| {
            p.links = report;
            p.probe_bytes = probe_bytes;
        });
        if let Ok(overflow) = self.dp.overflow() {
            let now = a.now();
            a.controller.on_overflow(now, &overflow);
        }
        if let Ok(seq) = self.dp.tx_sequence() {
            let now = a.now();
            a.controller.on_sent(now, &seq.link);
        }
        a.ask_for_trains();
        let now = a.now();
        let decision = a.controller.tick(now);
        let fit = a.controller.fit(now, &a.fit);
        a.log_events();
        debug!(weights = ?decision.weights, "adaptive weights");
        let held = a.keep_running.is_some();
        if !a.keeps_running_schedule() {
            if held {
                info!(weights = ?decision.weights, "adopted data plane: the controller takes over the schedule");
            }
            apply(&mut self.dp, &self.config, &self.side, &decision, a.epoch_kernel_ns);
            a.updates += 1;
            if !a.paced {
                match self.dp.set_config_flags(CONFIG_EARLIEST_ARRIVAL) {
                    Ok(()) => a.paced = true,
                    Err(e) => warn!("switching the kernel to earliest-arrival selection: {e}"),
                }
            }
        }
        // In-band trigger, at every tier: a silent link's interface is looked
        // up again in case it moved.
        let silent = a.controller.silent_links();
        for id in silent {
            let (Some(follower), Side::Edge { links, .. }) = (self.follower.as_mut(), &mut self.side) else {
                break;
            };
            let Some(i) = links.iter().position(|l| l.id == id) else { continue };
            let reactions: Vec<_> =
                follower.recheck(self.net, i, links).await.into_iter().map(|r| (i, r)).collect();
            self.follow(reactions, Vec::new()).await;
        }
        self.exposition.publish(|p| {
            p.weight_updates += 1;
            p.last_update = Some(std::time::SystemTime::now());
            p.bitrate.fit = Some(fit);
            p.bitrate.at = p.last_update;
        });
    }

    /// Carries out reactions to what the OS said (or what a re-check found),
    /// passes the controller its hints, and publishes the new bindings.
    async fn follow(&mut self, reactions: Vec<(usize, Reaction)>, mut hints: Vec<(usize, Hint)>) {
        if reactions.is_empty() && hints.is_empty() {
            return;
        }
        let (Some(follower), Side::Edge { links, .. }) = (self.follower.as_mut(), &mut self.side) else {
            return;
        };
        for (i, reaction) in reactions {
            // A static edge's handshake sockets follow the link like a prober's.
            let path = match self.adaptive.as_mut() {
                Some(a) => a.paths.get_mut(i),
                None => self.handshake_paths.as_mut().and_then(|h| h.paths.get_mut(i)),
            };
            let io = Hands { dp: &mut self.dp, net: self.net, config: &self.config, path };
            if let Some(hint) = follower.carry_out(reaction, i, links, io).await {
                hints.push((i, hint));
            }
        }
        if let Some(a) = self.adaptive.as_mut() {
            let now = a.now();
            for (i, hint) in hints {
                let id = links[i].id;
                match hint {
                    Hint::Lost(what) => a.controller.on_os_loss(now, id, what),
                    Hint::Returned(what) => a.controller.on_os_return(now, id, what),
                    Hint::Rebound => a.controller.on_rebound(now, id),
                    Hint::Caution(what) => a.controller.on_caution(now, id, what),
                }
            }
            a.log_events();
        }
        self.publish_bindings();
    }

    /// What each edge link is bound to and is, for status and metrics.
    fn publish_bindings(&self) {
        let (Some(follower), Side::Edge { links, .. }) = (self.follower.as_ref(), &self.side) else { return };
        let behaviour = self.adaptive.as_ref().map(|a| a.controller.behaviours()).unwrap_or_default();
        let view = follower.view(links, &behaviour);
        self.exposition.publish(|p| p.bindings = view);
    }
}

/// Sleeps until `deadline` (at least 10 ms from now, so a deadline in the
/// past cannot spin the loop), or forever without one.
async fn next_deadline(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => {
            let at = Instant::from_std(d).max(Instant::now() + Duration::from_millis(10));
            tokio::time::sleep_until(at).await;
        }
        None => std::future::pending().await,
    }
}

/// The next handshake message a prober's socket received, or never
/// without a controller.
async fn next_handshake(
    handshakes: &mut Option<tokio::sync::mpsc::Receiver<(u8, Vec<u8>)>>,
) -> Option<(u8, Vec<u8>)> {
    match handshakes {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    }
}

/// The link and payload of a `Handshake` packet of `session`, or `None`
/// for anything else (which the probe responder handles).
fn handshake_payload(datagram: &[u8], session: u32) -> Option<(u8, &[u8])> {
    let (fields, payload) = Header::parse(datagram, session, MAX_LINKS as u8).ok()?;
    (fields.packet_type == PacketType::Handshake).then_some((fields.link_id, payload))
}

/// The next piece of in-band evidence, or never without a controller.
async fn next_evidence(adaptive: &mut Option<Adaptive>) -> Option<Evidence> {
    match adaptive {
        Some(a) => a.samples.recv().await,
        None => std::future::pending().await,
    }
}

/// The feedback of each link whose edge endpoint the hub has learned.
fn learned_feedback(snapshot: &Snapshot) -> Vec<LinkFeedback> {
    snapshot
        .links
        .iter()
        .filter(|l| !l.peer_ip.is_unspecified())
        .filter_map(|l| {
            Some(LinkFeedback {
                link: l.id,
                peer: l.peer.parse().ok()?,
                counters: FeedbackPayload {
                    rx_packets: l.rx_packets,
                    rx_bytes: l.rx_bytes,
                    lost: l.rx_lost,
                    owd_sum_us: l.owd_sum_us,
                    owd_count: l.owd_count,
                    late: l.rx_late,
                    next_seq: l.rx_next_seq,
                    queued_bytes: l.rx_queued_bytes,
                    queued_us: l.rx_queued_us,
                },
            })
        })
        .collect()
}

/// The next tick of an optional interval, or never without one.
async fn next_tick(tick: &mut Option<tokio::time::Interval>) -> Option<()> {
    match tick {
        Some(t) => {
            t.tick().await;
            Some(())
        }
        None => std::future::pending().await,
    }
}

/// The next SIGHUP, or never without its watcher.
async fn next_hangup(sighup: &mut Option<Signal>) -> Option<()> {
    match sighup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// SIGTERM, watched from the start of set-up.
pub(super) fn watch_sigterm() -> std::io::Result<Signal> {
    tokio::signal::unix::signal(SignalKind::terminate())
}

/// The kernel's backlog of each link with a budget, for the summary line:
/// the measured one (`drops` where it may shed packets as late) and the
/// modelled one, ms.
fn backlogs_line(backlogs: &[Option<KernelBacklog>]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    backlogs
        .iter()
        .enumerate()
        .filter_map(|(id, b)| b.map(|b| (id, b)))
        .map(|(id, b)| {
            let measured = b.measured.map_or_else(
                || "-".to_string(),
                |m| format!("{:.0}{}", ms(m), if b.drops { " drops" } else { "" }),
            );
            format!("link {id} backlog measured {measured} modelled {:.0} ms; ", ms(b.modelled))
        })
        .collect()
}
