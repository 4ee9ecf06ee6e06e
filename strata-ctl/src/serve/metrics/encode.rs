//! Encoding: the Prometheus text exposition of one [`Gathered`] scrape.
//!
//! Each scrape fills a fresh registry whose counters hold the kernel's
//! cumulative values, so what Prometheus sees is the kernel's own numbers.
//! The queueing-delay histogram is built as a metric family directly: its
//! buckets were counted in the kernel, not observed here.
//!
//! [`encode`] is a pure function of its input; the golden test below pins
//! its whole output (`testdata/README.md` says how to regenerate the file).

use std::time::SystemTime;

use prometheus::{
    CounterVec, Encoder as _, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
    core::Collector as _,
    proto::{Bucket, Counter, Histogram, LabelPair, Metric, MetricFamily, MetricType},
};
use strata_common::drop::DropReason;

use crate::{
    control::lifecycle::State,
    dataplane::{sampling::Samples, stats::Snapshot},
    inband::guard::GuardSnapshot,
    serve::{metrics::gather::Gathered, view::reason_name},
};

/// The text exposition of `g`.
///
/// Pure: it reads nothing but `g` (no maps, no clock, no locks), so the
/// same value always gives the same text, byte for byte — families sorted
/// by name, series by label values. An `Err` means a metric is declared
/// wrongly here (a bad name, a label count that does not match): a bug,
/// which the golden test catches, not a condition of the host.
pub fn encode(g: &Gathered) -> Result<String, prometheus::Error> {
    let m = Families::default();
    daemon(&m, g)?;
    kernel(&m, g)?;
    probes(&m, g)?;
    qdiscs(&m, g)?;
    programs(&m, g)?;
    controller(&m, g)?;
    drivers(&m, g)?;
    os(&m, g)?;
    fit(&m, g)?;
    auth(&m, g)?;

    // The links' host queues, sampled in the kernel (optional).
    let mut families = m.registry.gather();
    let enabled = IntGaugeVec::new(
        Opts::new(
            "strata_kernel_sampling_enabled",
            "1 while the links' host queues are sampled in the kernel.",
        ),
        &[],
    )?;
    enabled.with_label_values::<&str>(&[]).set(i64::from(g.host_queues.is_some()));
    families.extend(enabled.collect());
    if let Some(h) = &g.host_queues {
        families.extend(host_queue_families(&g.interfaces, &h.reasons, &h.samples));
    }

    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The registry one scrape fills, and shorthands to declare its families.
#[derive(Default)]
struct Families {
    registry: Registry,
}

impl Families {
    /// A float gauge family, registered.
    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec, prometheus::Error> {
        let g = GaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// An integer counter family, registered.
    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }
}

/// Session authentication, when the handshake runs (`[auth] mode = "keys"`).
fn auth(m: &Families, g: &Gathered) -> Result<(), prometheus::Error> {
    let a = &g.published.auth;
    if a.mode != "keys" {
        return Ok(());
    }
    m.counter("strata_handshakes_completed_total", "Session handshakes completed.", &[])?
        .with_label_values::<&str>(&[])
        .inc_by(a.completed);
    m.counter("strata_handshake_initiations_sent_total", "Handshake initiations the edge sent.", &[])?
        .with_label_values::<&str>(&[])
        .inc_by(a.initiations_sent);
    let rejected = m.counter(
        "strata_handshakes_rejected_total",
        "Handshake messages refused, by reason (unknown_key, bad_message, rate_limited, replayed, ...).",
        &["reason"],
    )?;
    for (reason, n) in &a.rejected {
        rejected.with_label_values(&[reason.as_str()]).inc_by(*n);
    }
    let established = m.gauge(
        "strata_session_established",
        "1 while the session with this peer holds keys.",
        &["peer", "fingerprint"],
    )?;
    let epoch = m.gauge("strata_session_key_epoch", "The current keys' epoch.", &["peer"])?;
    let rekey = m.gauge(
        "strata_session_last_rekey_timestamp_seconds",
        "When the current keys were made (Unix time).",
        &["peer"],
    )?;
    for s in &a.sessions {
        established
            .with_label_values(&[s.peer.as_str(), s.fingerprint.as_str()])
            .set(f64::from(u8::from(s.established)));
        epoch.with_label_values(&[s.peer.as_str()]).set(f64::from(s.epoch));
        if let Some(t) = s.last_rekey_unix_s {
            rekey.with_label_values(&[s.peer.as_str()]).set(t as f64);
        }
    }
    Ok(())
}

/// The daemon itself: up, build, uptime, the controller and its decisions,
/// and whether the kernel maps could be read.
fn daemon(m: &Families, g: &Gathered) -> Result<(), prometheus::Error> {
    let published = &g.published;
    let up = IntGaugeVec::new(Opts::new("strata_up", "1 while the daemon serves metrics."), &[])?;
    m.registry.register(Box::new(up.clone()))?;
    up.with_label_values::<&str>(&[]).set(1);
    let build = IntGaugeVec::new(Opts::new("strata_build_info", "The running build."), &["version"])?;
    m.registry.register(Box::new(build.clone()))?;
    build.with_label_values(&[g.version.as_str()]).set(1);
    m.gauge("strata_uptime_seconds", "Time since the daemon started.", &[])?
        .with_label_values::<&str>(&[])
        .set(g.uptime.as_secs_f64());
    m.gauge("strata_controller_up", "1 while the adaptive controller runs.", &["mode"])?
        .with_label_values(&[published.mode])
        .set(if published.controller_up { 1.0 } else { 0.0 });
    m.counter("strata_weight_updates_total", "Decisions (weights and budgets) written to the kernel.", &[])?
        .with_label_values::<&str>(&[])
        .inc_by(published.weight_updates);
    if let Some(t) = published.last_update.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        m.gauge(
            "strata_last_weight_update_timestamp_seconds",
            "When the last decision was written (Unix time).",
            &[],
        )?
        .with_label_values::<&str>(&[])
        .set(t.as_secs_f64());
    }
    m.gauge(
        "strata_kernel_maps_readable",
        "1 if the pinned kernel maps could be read for this scrape.",
        &[],
    )?
    .with_label_values::<&str>(&[])
    .set(if g.kernel.is_some() { 1.0 } else { 0.0 });
    Ok(())
}

/// What the kernel counted, per link and per drop reason.
fn kernel(m: &Families, g: &Gathered) -> Result<(), prometheus::Error> {
    let interface = |id: u8| g.interface(id).to_string();
    if let Some(s) = &g.kernel {
        let l = ["link", "interface"];
        let c = |name, help| m.counter(name, help, &l);
        let (tx_p, tx_b, rx_p, rx_b, lost, late, over) = (
            c("strata_link_tx_packets_total", "Packets sent on the link.")?,
            c("strata_link_tx_bytes_total", "Outer bytes (IP header onward) sent on the link.")?,
            c("strata_link_rx_packets_total", "Data packets received on the link, duplicates included.")?,
            c("strata_link_rx_bytes_total", "Outer bytes received on the link.")?,
            c("strata_link_rx_lost_packets_total", "Packets missing from the link's sequence.")?,
            c("strata_link_rx_late_packets_total", "Packets that arrived out of order on the link.")?,
            c(
                "strata_link_tx_overflow_packets_total",
                "Packets sent on the link while every link was at its send budget.",
            )?,
        );
        let peer =
            m.gauge("strata_link_peer_info", "The link's far end (1 while known).", &["link", "peer"])?;
        for link in &s.links {
            let active = link.tx_packets + link.rx_packets > 0 || !interface(link.id).is_empty();
            if !active {
                continue;
            }
            let (id, ifname) = (link.id.to_string(), interface(link.id));
            let v = [id.as_str(), ifname.as_str()];
            tx_p.with_label_values(&v).inc_by(link.tx_packets);
            tx_b.with_label_values(&v).inc_by(link.tx_bytes);
            rx_p.with_label_values(&v).inc_by(link.rx_packets);
            rx_b.with_label_values(&v).inc_by(link.rx_bytes);
            lost.with_label_values(&v).inc_by(link.rx_lost);
            late.with_label_values(&v).inc_by(link.rx_late);
            over.with_label_values(&v).inc_by(link.tx_overflow);
            if !link.peer_ip.is_unspecified() {
                peer.with_label_values(&[id.as_str(), link.peer.as_str()]).set(1.0);
            }
        }
        let drops =
            m.counter("strata_drops_total", "Packets the data plane dropped, by reason.", &["reason"])?;
        for reason in DropReason::ALL {
            drops.with_label_values(&[reason.name()]).inc_by(s.dropped(reason));
        }
        classes(m, s)?;
    }
    Ok(())
}

/// Per delivery class (`class`: critical, video, best_effort — three series
/// at most), the inner packets and bytes this side sent, delivered, and
/// shed before sending (`reason`: `late`, the only reason yet).
fn classes(m: &Families, s: &Snapshot) -> Result<(), prometheus::Error> {
    if s.classes.is_empty() {
        return Ok(());
    }
    let c = |name, help| m.counter(name, help, &["class"]);
    let (tx_p, tx_b, rx_p, rx_b) = (
        c(
            "strata_class_sent_packets_total",
            "Inner packets of the class sent into the tunnel (handed to a link).",
        )?,
        c("strata_class_sent_bytes_total", "Inner bytes (the application's IP packets) of the class sent.")?,
        c(
            "strata_class_delivered_packets_total",
            "Inner packets of the class (as the sender classed them) delivered out of the tunnel.",
        )?,
        c("strata_class_delivered_bytes_total", "Inner bytes of the class delivered out of the tunnel.")?,
    );
    let shed = |name, help| m.counter(name, help, &["class", "reason"]);
    let (shed_p, shed_b) = (
        shed(
            "strata_class_shed_packets_total",
            "Inner packets of the class dropped before sending; reason late: no link was expected to deliver them \
             within the class's deadline (control.drop_late).",
        )?,
        shed("strata_class_shed_bytes_total", "Inner bytes of the class dropped before sending.")?,
    );
    for class in &s.classes {
        let v = [class.class.as_str()];
        tx_p.with_label_values(&v).inc_by(class.tx_packets);
        tx_b.with_label_values(&v).inc_by(class.tx_bytes);
        rx_p.with_label_values(&v).inc_by(class.rx_packets);
        rx_b.with_label_values(&v).inc_by(class.rx_bytes);
        let v = [class.class.as_str(), "late"];
        shed_p.with_label_values(&v).inc_by(class.shed_packets);
        shed_b.with_label_values(&v).inc_by(class.shed_bytes);
    }
    Ok(())
}

/// What the controller's probes cost each link.
fn probes(m: &Families, g: &Gathered) -> Result<(), prometheus::Error> {
    let published = &g.published;
    let interface = |id: u8| g.interface(id).to_string();
    if !published.probe_bytes.is_empty() {
        let probes = m.counter(
            "strata_link_probe_tx_bytes_total",
            "IP bytes of in-band probes and packet trains sent on the link (not in the data counters).",
            &["link", "interface"],
        )?;
        for &(id, b) in &published.probe_bytes {
            let (id_s, ifname) = (id.to_string(), interface(id));
            probes.with_label_values(&[id_s.as_str(), ifname.as_str()]).inc_by(b);
        }
    }
    Ok(())
}

/// The links' own queues (root qdisc, over rtnetlink).
fn qdiscs(m: &Families, g: &Gathered) -> Result<(), prometheus::Error> {
    let published = &g.published;
    m.gauge(
        "strata_qdisc_stats_readable",
        "1 if the links' qdisc statistics could be read for this scrape.",
        &[],
    )?
    .with_label_values::<&str>(&[])
    .set(if g.qdiscs.is_some() { 1.0 } else { 0.0 });
    if let Some(qdiscs) = &g.qdiscs
        && !g.interfaces.is_empty()
    {
        let l = ["link", "interface", "qdisc"];
        let backlog =
            m.gauge("strata_link_qdisc_backlog_bytes", "Bytes waiting in the link's root qdisc.", &l)?;
        let qlen =
            m.gauge("strata_link_qdisc_queue_packets", "Packets waiting in the link's root qdisc.", &l)?;
        let drops =
            m.counter("strata_link_qdisc_drops_total", "Packets the link's root qdisc dropped.", &l)?;
        let over = m.counter(
            "strata_link_qdisc_overlimits_total",
            "Packets that met the link's root qdisc's limit (delayed or dropped).",
            &l,
        )?;
        for (id, name, index) in &g.interfaces {
            let index = published.current_index(*id, *index);
            let Some((_, q)) = qdiscs.iter().find(|(i, _)| *i == index) else { continue };
            let id = id.to_string();
            let v = [id.as_str(), name.as_str(), q.kind.as_str()];
            backlog.with_label_values(&v).set(q.backlog_bytes as f64);
            qlen.with_label_values(&v).set(q.qlen as f64);
            drops.with_label_values(&v).inc_by(q.drops);
            over.with_label_values(&v).inc_by(q.overlimits);
        }
    }
    Ok(())
}

/// The data plane's own cost, from the kernel's BPF statistics. Without them
/// (kernel too old, or not enabled) the series are left out and
/// `strata_program_stats_enabled` says so, rather than reporting zeros.
fn programs(m: &Families, g: &Gathered) -> Result<(), prometheus::Error> {
    m.gauge(
        "strata_program_stats_enabled",
        "1 if the kernel keeps run-time statistics of the data-plane programs.",
        &[],
    )?
    .with_label_values::<&str>(&[])
    .set(if g.programs.is_some() { 1.0 } else { 0.0 });
    if let Some(programs) = g.programs.as_ref().filter(|p| !p.is_empty()) {
        let runs =
            m.counter("strata_program_runs_total", "Times the data-plane program ran.", &["program"])?;
        // A float counter: `_total` names are counters by convention, and
        // `rate()` needs the counter type to handle resets.
        let time = CounterVec::new(
            Opts::new("strata_program_run_seconds_total", "Time the data-plane program ran, in total."),
            &["program"],
        )?;
        m.registry.register(Box::new(time.clone()))?;
        for p in programs {
            runs.with_label_values(&[p.name]).inc_by(p.runs);
            time.with_label_values(&[p.name]).inc_by(p.run_time.as_secs_f64());
        }
    }
    Ok(())
}

/// What the controller knows of each link.
fn controller(m: &Families, g: &Gathered) -> Result<(), prometheus::Error> {
    let published = &g.published;
    let interface = |id: u8| g.interface(id).to_string();
    if !published.links.is_empty() {
        let l = ["link", "interface"];
        let per_link = |name, help| m.gauge(name, help, &l);
        let state = m.gauge(
            "strata_link_state",
            "1 for the link's lifecycle state.",
            &["link", "interface", "state"],
        )?;
        let transitions = m.counter(
            "strata_link_state_transitions_total",
            "Lifecycle transitions of the link, by the state entered.",
            &["link", "interface", "state"],
        )?;
        let rtt = m.gauge(
            "strata_link_rtt_seconds",
            "Probe round trip over the last 5 s (quantile 0 is the minimum).",
            &["link", "interface", "quantile"],
        )?;
        let queue = m.gauge(
            "strata_link_queue_delay_seconds",
            "One-way delay above the link's recent minimum: its queue.",
            &["link", "interface", "quantile"],
        )?;
        let (weight, budget, jitter, loss, reorder, delivered, capacity) = (
            per_link("strata_link_weight", "The link's weight in the kernel's schedule.")?,
            per_link("strata_link_budget_bytes_per_second", "The link's send budget (0: none).")?,
            per_link("strata_link_jitter_seconds", "Round-trip p95 minus p50.")?,
            per_link("strata_link_loss_ratio", "Recent loss ratio from the hub's sequence tracking.")?,
            per_link("strata_link_reorder_ratio", "Share of received packets that arrived out of order.")?,
            per_link("strata_link_delivered_bits_per_second", "Rate the hub received on the link.")?,
            per_link(
                "strata_link_capacity_bits_per_second",
                "Capacity estimate (standing queue or packet train).",
            )?,
        );
        for link in &published.links {
            let (id, ifname) = (link.id.to_string(), interface(link.id));
            let v = [id.as_str(), ifname.as_str()];
            for s in State::ALL {
                state.with_label_values(&[v[0], v[1], s.name()]).set(if s.name() == link.state {
                    1.0
                } else {
                    0.0
                });
                let n = link.transitions.get(s.name()).copied().unwrap_or(0);
                transitions.with_label_values(&[v[0], v[1], s.name()]).inc_by(n);
            }
            weight.with_label_values(&v).set(f64::from(link.weight));
            budget.with_label_values(&v).set(link.budget_bytes_per_s as f64);
            loss.with_label_values(&v).set(link.loss);
            reorder.with_label_values(&v).set(link.reordering);
            delivered.with_label_values(&v).set(link.delivered_mbit_s * 1e6);
            if let Some(r) = link.rtt_ms {
                for (q, ms) in ["0", "0.5", "0.95", "0.99"].into_iter().zip(r) {
                    rtt.with_label_values(&[v[0], v[1], q]).set(ms / 1e3);
                }
            }
            if let Some(q) = link.queue_ms {
                for (quantile, ms) in ["0.5", "0.95"].into_iter().zip(q) {
                    queue.with_label_values(&[v[0], v[1], quantile]).set(ms.max(0.0) / 1e3);
                }
            }
            if let Some(j) = link.jitter_ms {
                jitter.with_label_values(&v).set(j / 1e3);
            }
            if let Some(c) = link.capacity_mbit_s {
                capacity.with_label_values(&v).set(c * 1e6);
            }
        }
    }
    Ok(())
}

/// What fits within the deadline, and the sources listening for it.
fn fit(m: &Families, g: &Gathered) -> Result<(), prometheus::Error> {
    let interface = |id: u8| g.interface(id).to_string();
    if let Some(b) = &g.bitrate {
        m.gauge(
            "strata_bond_fit_deadline_seconds",
            "The one-way delay budget the fit is computed for.",
            &[],
        )?
        .with_label_values::<&str>(&[])
        .set(b.deadline_ms as f64 / 1e3);
        m.gauge(
            "strata_bond_fit_known",
            "1 while the bitrate that fits within the deadline is known (strata-ctl status says why not).",
            &[],
        )?
        .with_label_values::<&str>(&[])
        .set(if b.now_bps.is_some() { 1.0 } else { 0.0 });
        if let (Some(now), Some(next)) = (b.now_bps, b.next_second_bps) {
            let bond = m.gauge(
                "strata_bond_fit_bits_per_second",
                "Payload bits per second the bond carries within the deadline, now and predicted for the next second.",
                &["horizon"],
            )?;
            bond.with_label_values(&["now"]).set(now as f64);
            bond.with_label_values(&["next_second"]).set(next as f64);
            let link = m.gauge(
                "strata_link_fit_bits_per_second",
                "The link's part of strata_bond_fit_bits_per_second (0: not carrying, unmeasured or late).",
                &["link", "interface", "horizon"],
            )?;
            for l in &b.links {
                let (id, ifname) = (l.id.to_string(), interface(l.id));
                link.with_label_values(&[id.as_str(), ifname.as_str(), "now"]).set(l.now_bps as f64);
                link.with_label_values(&[id.as_str(), ifname.as_str(), "next_second"])
                    .set(l.next_second_bps as f64);
            }
        }
    }
    let s = &g.published.bitrate_subscribers;
    m.gauge("strata_bitrate_subscribers", "Processes subscribed to the bitrate socket now.", &[])?
        .with_label_values::<&str>(&[])
        .set(s.connected as f64);
    let c = |name, help| m.counter(name, help, &[]);
    let counters = [
        (
            c("strata_bitrate_subscribers_accepted_total", "Subscribers the bitrate socket accepted.")?,
            s.accepted,
        ),
        (
            c(
                "strata_bitrate_subscribers_refused_total",
                "Subscribers the bitrate socket turned away (too many connected).",
            )?,
            s.refused,
        ),
        (
            c(
                "strata_bitrate_subscribers_stalled_total",
                "Subscribers disconnected for not reading the bitrate socket.",
            )?,
            s.stalled,
        ),
        (
            c(
                "strata_bitrate_messages_skipped_total",
                "Bitrate messages slow subscribers did not get (a newer one replaced them).",
            )?,
            s.skipped,
        ),
    ];
    for (counter, n) in counters {
        counter.with_label_values::<&str>(&[]).inc_by(n);
    }
    guards(m, &g.guards)
}

/// What the in-band channel's defences and the served sockets turned away
/// (issue 14): a rising count is someone probing or flooding.
fn guards(m: &Families, g: &GuardSnapshot) -> Result<(), prometheus::Error> {
    let rejected = m.counter(
        "strata_control_rejected_total",
        "In-band control packets refused, by reason: foreign_source (a reply or feedback not from the link's hub), stale_feedback (a feedback number not above the last), stale_reply (edge: a probe reply whose probe number is not above the last — a replay), stale_probe (hub: a probe numbered not above the last answered on its link — a replay), probe_rate (hub: probes beyond the link's rate, not answered).",
        &["reason"],
    )?;
    for (reason, n) in [
        ("foreign_source", g.foreign_source),
        ("stale_feedback", g.stale_feedback),
        ("stale_reply", g.stale_reply),
        ("stale_probe", g.stale_probe),
        ("probe_rate", g.probes_limited),
    ] {
        rejected.with_label_values(&[reason]).inc_by(n);
    }
    let refused = m.counter(
        "strata_connections_refused_total",
        "Connections closed unserved, by server (metrics, status) and reason: busy (too many open) or slow (not done within the deadline).",
        &["server", "reason"],
    )?;
    for (server, reason, n) in [
        ("metrics", "busy", g.metrics_refused),
        ("metrics", "slow", g.metrics_timed_out),
        ("status", "busy", g.status_refused),
    ] {
        refused.with_label_values(&[server, reason]).inc_by(n);
    }
    Ok(())
}

/// What the links' drivers counted as lost (rtnetlink, at scrape time).
fn drivers(m: &Families, g: &Gathered) -> Result<(), prometheus::Error> {
    let published = &g.published;
    if let Some(found) = &g.interface_counters
        && !g.interfaces.is_empty()
    {
        let l = ["link", "interface", "direction"];
        let errors = m.counter(
            "strata_link_interface_errors_total",
            "Errors the link interface's driver counted (IFLA_STATS64), by direction.",
            &l,
        )?;
        let dropped = m.counter(
            "strata_link_interface_dropped_total",
            "Packets the link interface's driver dropped (IFLA_STATS64), by direction.",
            &l,
        )?;
        for (id, name, index) in &g.interfaces {
            let index = published.current_index(*id, *index);
            let Some((_, c)) = found.iter().find(|(i, _)| *i == index) else { continue };
            let id = id.to_string();
            for (direction, e, d) in [("rx", c.rx_errors, c.rx_dropped), ("tx", c.tx_errors, c.tx_dropped)] {
                errors.with_label_values(&[id.as_str(), name.as_str(), direction]).inc_by(e);
                dropped.with_label_values(&[id.as_str(), name.as_str(), direction]).inc_by(d);
            }
        }
    }
    Ok(())
}

/// What the operating system says of the links (edge).
fn os(m: &Families, g: &Gathered) -> Result<(), prometheus::Error> {
    let published = &g.published;
    let interface = |id: u8| g.interface(id).to_string();
    if !published.os_signals.is_empty() {
        let tier = m.gauge("strata_os_signals_info", "The os_signals tier configured (1).", &["tier"])?;
        tier.with_label_values(&[published.os_signals]).set(1.0);
        let up = m.gauge(
            "strata_os_advisor_up",
            "1 while the OS advisor runs; 0 if off or unavailable (see strata-ctl status for why).",
            &["advisor"],
        )?;
        for (name, state) in &published.advisors {
            up.with_label_values(&[*name]).set(if state.starts_with("active") { 1.0 } else { 0.0 });
        }
    }
    if !published.bindings.is_empty() {
        let info = m.gauge(
            "strata_link_device_info",
            "The interface a link is bound to now and what it is (1); `interface` stays the configured name.",
            &["link", "interface", "device", "identity", "bus", "driver", "kind"],
        )?;
        let confidence = m.gauge(
            "strata_link_kind_confidence",
            "Confidence (0..1) in the link's inferred kind.",
            &["link", "interface", "kind"],
        )?;
        let missing = m.gauge(
            "strata_link_interface_missing",
            "1 while the link's interface is gone.",
            &["link", "interface"],
        )?;
        let rebinds = m.counter(
            "strata_link_rebinds_total",
            "Times the link was re-bound (new address, interface or next hop).",
            &["link", "interface"],
        )?;
        let modem = m.gauge(
            "strata_link_modem_info",
            "The link's modem as ModemManager reports it (1).",
            &["link", "interface", "state", "access", "operator"],
        )?;
        let radio = m.gauge(
            "strata_link_modem_signal",
            "The link's modem's radio: quality (ratio), rsrp (dBm), rsrq (dB), sinr (dB), where reported.",
            &["link", "interface", "measure"],
        )?;
        for b in &published.bindings {
            let (id, ifname) = (b.id.to_string(), interface(b.id));
            let fact = |k: &str| b.facts.iter().find(|(n, _)| *n == k).map_or("", |(_, v)| v.as_str());
            let identity = b.identity.clone().unwrap_or_default();
            info.with_label_values(&[
                id.as_str(),
                ifname.as_str(),
                b.device.as_str(),
                identity.as_str(),
                fact("bus"),
                fact("driver"),
                b.kind,
            ])
            .set(1.0);
            confidence.with_label_values(&[id.as_str(), ifname.as_str(), b.kind]).set(b.kind_confidence);
            missing.with_label_values(&[id.as_str(), ifname.as_str()]).set(if b.missing { 1.0 } else { 0.0 });
            rebinds.with_label_values(&[id.as_str(), ifname.as_str()]).inc_by(b.rebinds);
            if let Some(m) = &b.modem {
                let operator = m.operator.clone().unwrap_or_default();
                modem
                    .with_label_values(&[
                        id.as_str(),
                        ifname.as_str(),
                        m.state.as_str(),
                        m.access.as_str(),
                        operator.as_str(),
                    ])
                    .set(1.0);
                let measures = [
                    ("quality", m.signal_quality_pct.map(|q| f64::from(q) / 100.0)),
                    ("rsrp", m.rsrp_dbm),
                    ("rsrq", m.rsrq_db),
                    ("sinr", m.sinr_db),
                ];
                for (measure, v) in measures {
                    if let Some(v) = v {
                        radio.with_label_values(&[id.as_str(), ifname.as_str(), measure]).set(v);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The host queueing-delay histogram and the kernel drops by reason of each
/// watched link, built as metric families directly: the buckets were counted
/// in the kernel, not observed here.
fn host_queue_families(
    interfaces: &[(u8, String, u32)],
    reasons: &[(u32, String)],
    samples: &Samples,
) -> Vec<MetricFamily> {
    let label = |name: &str, value: &str| {
        let mut l = LabelPair::default();
        l.set_name(name.to_string());
        l.set_value(value.to_string());
        l
    };
    let mut delay = MetricFamily::default();
    delay.set_name("strata_link_host_queue_delay_seconds".into());
    delay.set_help(
        "Time packets waited on this host between being queued on the link and its driver sending them."
            .into(),
    );
    delay.set_field_type(MetricType::HISTOGRAM);
    let mut drops = MetricFamily::default();
    drops.set_name("strata_link_kernel_drops_total".into());
    drops.set_help(
        "Packets queued on the link that the kernel dropped before sending, by drop reason.".into(),
    );
    drops.set_field_type(MetricType::COUNTER);
    let (mut delay_metrics, mut drop_metrics) = (Vec::new(), Vec::new());
    for (id, name, _) in interfaces {
        let slot = usize::from(*id);
        let (Some(buckets), Some(sum_ns)) = (samples.delay.get(slot), samples.delay_sum_ns.get(slot)) else {
            continue;
        };
        let mut h = Histogram::default();
        let mut cumulative = 0;
        let mut rows = Vec::new();
        for (b, n) in buckets.iter().enumerate() {
            cumulative += n;
            let le = strata_common::histogram::bucket_le_seconds(b);
            if le.is_finite() {
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(le);
                bucket.set_cumulative_count(cumulative);
                rows.push(bucket);
            }
        }
        h.set_bucket(rows);
        h.set_sample_count(cumulative);
        h.set_sample_sum(*sum_ns as f64 / 1e9);
        let mut m = Metric::default();
        m.set_label(vec![label("link", &id.to_string()), label("interface", name)]);
        m.set_histogram(h);
        delay_metrics.push(m);
        for &(reason, n) in samples.drops.get(slot).map(Vec::as_slice).unwrap_or_default() {
            let reason_name = reason_name(reasons, reason);
            let mut c = Counter::default();
            c.set_value(n as f64);
            let mut m = Metric::default();
            m.set_label(vec![
                label("link", &id.to_string()),
                label("interface", name),
                label("reason", &reason_name),
            ]);
            m.set_counter(c);
            drop_metrics.push(m);
        }
    }
    delay.set_metric(delay_metrics);
    drops.set_metric(drop_metrics);
    [delay, drops].into_iter().filter(|f| !f.get_metric().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        control::controller::LinkReport,
        dataplane::stats::{ClassStats, LinkStats, Snapshot},
        os::net::{InterfaceCounters, QdiscStats},
        serve::{
            bitrate::{Bitrate, LinkBitrate},
            metrics::gather::{HostQueues, ProgramRuns},
            view::{BindingView, ModemView, Published, SubscriberCounts},
        },
    };

    /// The golden exposition of [`edge`]. To regenerate it after a
    /// deliberate change, run
    /// `UPDATE_GOLDEN=1 cargo test -p strata-ctl --lib serve::metrics`
    /// and review the diff: every line of it is a change the Grafana board,
    /// docs/OPERATIONS.md and anyone's alerts will see.
    const GOLDEN: &str = include_str!("testdata/metrics.prom");
    const GOLDEN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/serve/metrics/testdata/metrics.prom");

    fn report(id: u8, state: &'static str) -> LinkReport {
        LinkReport {
            id,
            state,
            weight: 40,
            budget_bytes_per_s: 1_000_000,
            rtt_ms: Some([20.0, 25.0, 60.0, 90.0]),
            queue_ms: Some([3.0, 35.0]),
            jitter_ms: Some(35.0),
            loss: 0.02,
            reordering: 0.001,
            delivered_mbit_s: 6.5,
            capacity_mbit_s: Some(8.0),
            transitions: [("live", 1), ("degraded", 1)].into_iter().collect(),
        }
    }

    /// An edge with a controller view and nothing read from the kernel or
    /// rtnetlink (what an unprivileged scrape would see).
    fn controller_only() -> Gathered {
        Gathered {
            version: "0.0.0-test".into(),
            uptime: Duration::from_millis(3_600_250),
            published: Published {
                mode: "adaptive",
                controller_up: true,
                links: vec![report(2, "degraded")],
                weight_updates: 12,
                last_update: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
                probe_bytes: vec![(0, 4200)],
                ..Published::default()
            },
            interfaces: vec![(0, "wwan0".into(), 7), (2, "wlan0".into(), 9)],
            ..Gathered::default()
        }
    }

    fn link(id: u8, tx: u64, peer: [u8; 4]) -> LinkStats {
        let peer_ip = std::net::IpAddr::from(peer);
        LinkStats {
            id,
            tx_packets: tx,
            tx_bytes: tx * 1200,
            rx_packets: tx / 2,
            rx_bytes: tx * 600,
            rx_lost: 3,
            rx_late: 1,
            rx_restarts: 0,
            rx_next_seq: 0,
            tx_overflow: 2,
            owd_sum_us: 0,
            owd_count: 0,
            rx_queued_bytes: 0,
            rx_queued_us: 0,
            peer: if peer_ip.is_unspecified() { "0.0.0.0:0".into() } else { format!("{peer_ip}:7400") },
            peer_ip,
        }
    }

    /// An edge with two links (0 on wwan0, re-bound to wwan1; 2 on wlan0)
    /// and everything read: kernel counters and drops, a queueing-delay
    /// histogram with kernel drop reasons, qdiscs, driver counters, program
    /// statistics, the controller's view and the OS's.
    fn edge() -> Gathered {
        let mut g = controller_only();
        g.guards = GuardSnapshot {
            foreign_source: 4,
            stale_feedback: 2,
            stale_reply: 0,
            stale_probe: 0,
            probes_limited: 0,
            metrics_refused: 1,
            metrics_timed_out: 3,
            status_refused: 0,
        };
        g.published.links.insert(0, report(0, "live"));
        g.published.os_signals = "modem";
        g.published.advisors =
            vec![("sysfs", "active".into()), ("modem_manager", "unavailable: no bus".into())];
        g.published.bindings = vec![BindingView {
            id: 0,
            device: "wwan1".into(),
            index: 11,
            address: "100.64.1.2".into(),
            missing: false,
            rebinds: 2,
            identity: Some("usb:1-1.2".into()),
            facts: vec![("bus", "usb".into()), ("driver", "qmi_wwan".into())],
            kind: "cellular",
            kind_detail: "cellular/LTE over USB".into(),
            kind_confidence: 0.9,
            kind_reasons: vec!["wwan"],
            modem: Some(ModemView {
                state: "connected".into(),
                access: "LTE".into(),
                operator: Some("Op".into()),
                signal_quality_pct: Some(71),
                rsrp_dbm: Some(-95.0),
                sinr_db: Some(12.5),
                ..ModemView::default()
            }),
        }];
        g.kernel = Some(Snapshot {
            // Link 1 is neither configured nor carrying traffic: left out.
            links: vec![link(0, 1000, [198, 19, 0, 2]), link(1, 0, [0; 4]), link(2, 10, [198, 19, 0, 2])],
            drops: vec![("no_link".into(), 3), ("duplicate".into(), 17)],
            classes: ["critical", "video", "best_effort"]
                .iter()
                .zip(1u64..)
                .map(|(class, n)| ClassStats {
                    class: (*class).into(),
                    tx_packets: n * 100,
                    tx_bytes: n * 10_000,
                    rx_packets: n * 90,
                    rx_bytes: n * 9_000,
                    shed_packets: n * 3,
                    shed_bytes: n * 300,
                })
                .collect(),
        });
        let qdisc = |kind: &str, backlog_bytes| QdiscStats {
            kind: kind.into(),
            backlog_bytes,
            qlen: 3,
            drops: 5,
            overlimits: 8,
        };
        // Link 0 is read at its new ifindex (11), not the configured 7.
        g.qdiscs = Some(vec![(11, qdisc("fq_codel", 1500)), (9, qdisc("noqueue", 0)), (7, qdisc("tbf", 99))]);
        let counters =
            |n| InterfaceCounters { rx_errors: n, tx_errors: n + 1, rx_dropped: n + 2, tx_dropped: n + 3 };
        g.interface_counters = Some(vec![(11, counters(10)), (9, counters(20))]);
        g.programs = Some(vec![
            ProgramRuns { name: "strata_tc_egress", runs: 5000, run_time: Duration::from_micros(2500) },
            ProgramRuns { name: "strata_xdp_ingress", runs: 4000, run_time: Duration::from_micros(1200) },
        ]);
        let mut samples = Samples::default();
        for slot in 0..3 {
            let mut h = [0; strata_common::maps::DELAY_BUCKETS as usize];
            if slot == 0 {
                (h[0], h[3], h[7], h[31]) = (10, 5, 2, 1);
            }
            samples.delay.push(h);
            samples.delay_sum_ns.push(if slot == 0 { 45_000_000 } else { 0 });
            samples.drops.push(if slot == 0 { vec![(64, 218), (99, 2)] } else { Vec::new() });
        }
        g.host_queues = Some(HostQueues {
            reasons: vec![(2, "NOT_SPECIFIED".into()), (64, "QDISC_DROP".into())],
            samples,
        });
        let part = |id, now_bps, excluded: Option<&str>| LinkBitrate {
            id,
            now_bps,
            next_second_bps: now_bps / 2,
            excluded: excluded.map(str::to_string),
        };
        g.bitrate = Some(Bitrate {
            deadline_ms: 150,
            now_bps: Some(10_800_000),
            next_second_bps: Some(5_400_000),
            links_counted: 1,
            reason: None,
            age_ms: Some(12),
            links: vec![part(0, 10_800_000, None), part(2, 0, Some("late"))],
        });
        g.published.bitrate_subscribers =
            SubscriberCounts { connected: 2, accepted: 5, refused: 1, stalled: 1, skipped: 40 };
        g
    }

    #[test]
    fn the_exposition_matches_the_golden_file() {
        let text = encode(&edge()).unwrap();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(GOLDEN_PATH, &text).unwrap();
            return;
        }
        if text != GOLDEN {
            let (mut new, mut old) = (text.lines(), GOLDEN.lines());
            let line = (1..).find(|_| new.next() != old.next()).unwrap_or_default();
            panic!(
                "the exposition differs from {GOLDEN_PATH} from line {line}; if deliberate, regenerate it \
                 with UPDATE_GOLDEN=1 and review the diff\n--- encoded:\n{text}"
            );
        }
    }

    #[test]
    fn the_same_input_gives_the_same_text() {
        assert_eq!(encode(&edge()).unwrap(), encode(&edge()).unwrap());
    }

    #[test]
    fn names_types_and_units_follow_the_prometheus_conventions() {
        for g in [controller_only(), edge()] {
            let text = encode(&g).unwrap();
            let mut types = Vec::new();
            for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
                let (name, kind) = line.split_once(' ').unwrap();
                types.push((name.to_string(), kind.to_string()));
            }
            assert!(types.len() > 15, "{text}");
            for (name, kind) in &types {
                assert!(name.starts_with("strata_"), "{name}");
                assert_eq!(name.ends_with("_total"), kind == "counter", "{name} is a {kind}");
                assert!(!name.contains("_ms") && !name.contains("mbit"), "{name}: base units only");
            }
        }
        // Without readable maps the kernel's series are absent, and say so.
        let text = encode(&controller_only()).unwrap();
        assert!(text.contains("strata_kernel_maps_readable 0"), "{text}");
        assert!(!text.contains("strata_link_tx_bytes_total"), "{text}");
        assert!(text.contains("strata_qdisc_stats_readable 0"), "{text}");
        assert!(text.contains("strata_program_stats_enabled 0"), "{text}");
        assert!(!text.contains("strata_program_runs_total"), "{text}");
    }

    #[test]
    fn handshake_counters_and_sessions_are_exposed_only_with_keys() {
        let mut g = controller_only();
        assert!(!encode(&g).unwrap().contains("strata_handshake"));
        g.published.auth = crate::serve::view::AuthView {
            mode: "keys".into(),
            own_key: "abcd0123".into(),
            sessions: vec![crate::serve::view::SessionView {
                peer: "car7".into(),
                fingerprint: "0011aabb".into(),
                established: true,
                epoch: 1_800_000_000,
                previous_epoch: None,
                last_rekey_unix_s: Some(1_800_000_000),
            }],
            initiations_sent: 0,
            completed: 3,
            rejected: vec![("rate_limited".into(), 9), ("unknown_key".into(), 2)],
        };
        let text = encode(&g).unwrap();
        for line in [
            "strata_handshakes_completed_total 3",
            r#"strata_handshakes_rejected_total{reason="rate_limited"} 9"#,
            r#"strata_handshakes_rejected_total{reason="unknown_key"} 2"#,
            r#"strata_session_established{fingerprint="0011aabb",peer="car7"} 1"#,
            r#"strata_session_key_epoch{peer="car7"} 1800000000"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn the_controllers_view_is_in_base_units_with_stable_labels() {
        let text = encode(&controller_only()).unwrap();
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        has(r#"strata_build_info{version="0.0.0-test"} 1"#);
        has("strata_uptime_seconds 3600.25");
        has(r#"strata_controller_up{mode="adaptive"} 1"#);
        has("strata_weight_updates_total 12");
        has("strata_last_weight_update_timestamp_seconds 1800000000");
        has(r#"strata_link_state{interface="wlan0",link="2",state="degraded"} 1"#);
        has(r#"strata_link_state{interface="wlan0",link="2",state="live"} 0"#);
        has(r#"strata_link_state_transitions_total{interface="wlan0",link="2",state="live"} 1"#);
        has(r#"strata_link_weight{interface="wlan0",link="2"} 40"#);
        has(r#"strata_link_rtt_seconds{interface="wlan0",link="2",quantile="0.95"} 0.06"#);
        has(r#"strata_link_queue_delay_seconds{interface="wlan0",link="2",quantile="0.95"} 0.035"#);
        has(r#"strata_link_jitter_seconds{interface="wlan0",link="2"} 0.035"#);
        has(r#"strata_link_loss_ratio{interface="wlan0",link="2"} 0.02"#);
        has(r#"strata_link_capacity_bits_per_second{interface="wlan0",link="2"} 8000000"#);
        has(r#"strata_link_delivered_bits_per_second{interface="wlan0",link="2"} 6500000"#);
        has(r#"strata_link_probe_tx_bytes_total{interface="wwan0",link="0"} 4200"#);
        // Sampling not enabled: its series are absent, not zero.
        has("strata_kernel_sampling_enabled 0");
        assert!(!text.contains("strata_link_host_queue_delay_seconds"), "{text}");
    }

    #[test]
    fn the_bitrate_that_fits_is_exposed_by_horizon_or_said_unknown() {
        let text = encode(&edge()).unwrap();
        let has =
            |text: &str, line: &str| assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        has(&text, "strata_bond_fit_deadline_seconds 0.15");
        has(&text, "strata_bond_fit_known 1");
        has(&text, r#"strata_bond_fit_bits_per_second{horizon="now"} 10800000"#);
        has(&text, r#"strata_bond_fit_bits_per_second{horizon="next_second"} 5400000"#);
        has(&text, r#"strata_link_fit_bits_per_second{horizon="now",interface="wlan0",link="2"} 0"#);
        has(&text, "strata_bitrate_subscribers 2");
        has(&text, "strata_bitrate_subscribers_stalled_total 1");
        has(&text, "strata_bitrate_messages_skipped_total 40");
        // Unknown (static mode): said so, and no rate — not a rate of 0.
        let mut g = edge();
        g.bitrate =
            Some(Bitrate { deadline_ms: 150, reason: Some("static mode".into()), ..Bitrate::default() });
        let text = encode(&g).unwrap();
        has(&text, "strata_bond_fit_known 0");
        assert!(!text.contains("fit_bits_per_second"), "{text}");
    }

    #[test]
    fn a_link_on_an_ipv6_carrier_shows_its_peer_in_brackets() {
        let mut g = edge();
        let link2 = &mut g.kernel.as_mut().unwrap().links[2];
        link2.peer_ip = "2001:db8:ff::2".parse().unwrap();
        link2.peer = "[2001:db8:ff::2]:7400".into();
        let text = encode(&g).unwrap();
        assert!(
            text.lines().any(|l| l == r#"strata_link_peer_info{link="2",peer="[2001:db8:ff::2]:7400"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn kernel_host_and_os_series_carry_the_configured_labels() {
        let text = encode(&edge()).unwrap();
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        has(r#"strata_link_tx_bytes_total{interface="wwan0",link="0"} 1200000"#);
        has(r#"strata_link_peer_info{link="0",peer="198.19.0.2:7400"} 1"#);
        assert!(!text.contains(r#"link="1""#), "an idle, unconfigured link is left out:\n{text}");
        has(r#"strata_drops_total{reason="duplicate"} 17"#);
        has(r#"strata_drops_total{reason="truncated"} 0"#);
        // A re-bound link is read at its new ifindex, labelled by its configured name.
        has(r#"strata_link_qdisc_backlog_bytes{interface="wwan0",link="0",qdisc="fq_codel"} 1500"#);
        has(r#"strata_link_interface_errors_total{direction="tx",interface="wwan0",link="0"} 11"#);
        has(
            r#"strata_link_device_info{bus="usb",device="wwan1",driver="qmi_wwan",identity="usb:1-1.2",interface="wwan0",kind="cellular",link="0"} 1"#,
        );
        has(r#"strata_link_modem_signal{interface="wwan0",link="0",measure="quality"} 0.71"#);
        has(r#"strata_os_advisor_up{advisor="modem_manager"} 0"#);
        has(r#"strata_program_runs_total{program="strata_tc_egress"} 5000"#);
        has(r#"strata_program_run_seconds_total{program="strata_tc_egress"} 0.0025"#);
        has("strata_kernel_sampling_enabled 1");
        // Built by hand, in the order they have always had: `link` first.
        has(r#"strata_link_host_queue_delay_seconds_bucket{link="0",interface="wwan0",le="0.000008"} 15"#);
        has(r#"strata_link_host_queue_delay_seconds_bucket{link="0",interface="wwan0",le="+Inf"} 18"#);
        has(r#"strata_link_host_queue_delay_seconds_count{link="0",interface="wwan0"} 18"#);
        has(r#"strata_link_host_queue_delay_seconds_sum{link="0",interface="wwan0"} 0.045"#);
        // A reason this kernel's format did not name is shown by its number.
        has(r#"strata_link_kernel_drops_total{link="0",interface="wwan0",reason="QDISC_DROP"} 218"#);
        has(r#"strata_link_kernel_drops_total{link="0",interface="wwan0",reason="99"} 2"#);
    }
}
