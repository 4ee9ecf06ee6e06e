//! What a run leaves behind: `result.json` (the numbers), `plot.svg` (per-link
//! throughput against each link's trace capacity, one-way delay over time,
//! events marked, and within-deadline delivery against the oracle's) and
//! `summary.md`.

use std::{fmt::Write as _, path::Path};

use serde_json::{Value, json};

use super::{
    oracle::{SERIES_BIN_NS, SecondCounts, wire_bytes},
    runner::{RunResult, SAMPLE},
};

/// The JSON result.
pub fn to_json(r: &RunResult) -> Value {
    let a = &r.analysis;
    let per_link: Vec<Value> = r
        .link_stats
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let strata = &r.edge_stats["links"][i];
            json!({
                "id": i,
                "weight": r.weights.get(i),
                "trace_mean_mbit_s": r.traces.get(i).map(|t| t.mean_mbit_s()),
                "trace_source": r.trace_sources.get(i),
                "strata_tx_bytes": strata["tx_bytes"],
                "strata_tx_packets": strata["tx_packets"],
                "uplink_delivered_bytes": s.uplink.delivered_bytes,
                "uplink_dropped": {
                    "blackout": s.uplink.dropped_blackout,
                    "loss": s.uplink.dropped_loss,
                    "buffer": s.uplink.dropped_buffer,
                },
            })
        })
        .collect();
    json!({
        "link_timeline": link_timeline(r),
        "oracle_by_capacity": by_capacity(r),
        "scenario": r.scenario.name,
        "control": r.control.name(),
        "os_signals": r.os_signals.name(),
        "duration_s": r.scenario.duration_s,
        "delivered_ratio": a.delivered_ratio,
        "owd_ms": a.owd_ms,
        "within_150ms": a.within_150ms,
        "deadline_ms": r.oracle.deadline_ms,
        "within_deadline": r.oracle.all.strata_within_deadline,
        "oracle_ratio": r.oracle.all.oracle_ratio,
        "oracle": r.oracle,
        "max_gap_ms": a.max_gap_ms,
        "aggregation_efficiency": a.aggregation_efficiency,
        "reorder_ratio": a.reorder_ratio,
        "classes": a.classes,
        "loss_by_class": a.classes.iter().map(|(k, c)| (k.clone(), json!(c.loss))).collect::<serde_json::Map<_, _>>(),
        "links": per_link,
        "events": a.events,
        "capacity_steps": a.capacity_steps,
        "event_log": r.event_log,
        "state_changes": r.state_changes,
        "strata_drops": r.edge_stats["drops"],
        "restarts": r.restarts,
        "tunnel_device_changes": r.tunnel_device_changes,
        "attack": r.attack,
    })
}

/// Width of a [`link_timeline`] step, ns.
const TIMELINE_STEP_NS: u64 = 100_000_000;

/// Per link, per 100 ms of traffic: `[capacity bytes the trace offered,
/// bytes the uplink transmitted, longest queueing delay of a packet
/// transmitted, ms]` — where a link queued while another had room, which
/// is what late packets are attributed to.
fn link_timeline(r: &RunResult) -> Vec<Vec<[u64; 3]>> {
    use crate::emulator::model::TRANSMIT_BIN;
    let t0 = super::runner::WARMUP.as_nanos() as u64;
    let steps = (r.scenario.duration_s * 1e9) as u64 / TIMELINE_STEP_NS;
    let per = (TIMELINE_STEP_NS / TRANSMIT_BIN) as usize;
    r.link_stats
        .iter()
        .zip(&r.traces)
        .map(|(s, t)| {
            let bins = &s.uplink_transmitted;
            (0..steps)
                .map(|i| {
                    let from = t0 + i * TIMELINE_STEP_NS;
                    let first = (from / TRANSMIT_BIN) as usize;
                    let range = first..first + per;
                    let sum = |v: &[u64]| v.get(range.clone()).map_or(0, |b| b.iter().sum::<u64>());
                    let max = bins
                        .max_sojourn_ns
                        .get(range.clone())
                        .map_or(0, |b| b.iter().copied().max().unwrap_or(0));
                    [t.capacity_bytes(from, from + TIMELINE_STEP_NS), sum(&bins.bytes), max / 1_000_000]
                })
                .collect()
        })
        .collect()
}

/// Writes `result.json`, `plot.svg` and `summary.md` into `dir`.
pub fn write(r: &RunResult, dir: &Path, json_path: Option<&Path>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let j = serde_json::to_string_pretty(&to_json(r))? + "\n";
    std::fs::write(dir.join("result.json"), &j)?;
    if let Some(p) = json_path {
        std::fs::write(p, &j)?;
    }
    std::fs::write(dir.join("plot.svg"), svg(r))?;
    std::fs::write(dir.join("summary.md"), markdown(r))?;
    Ok(())
}

const COLORS: [&str; 8] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

/// Two panels sharing the time axis: stacked per-link uplink throughput with
/// each link's trace capacity, and one-way delay of every delivered datagram.
pub fn svg(r: &RunResult) -> String {
    let (w, h, left, right) = (1000.0, 860.0, 70.0, 20.0);
    let (top1, h1, top2, h2) = (40.0, 260.0, 360.0, 230.0);
    let dur = r.scenario.duration_s;
    let x = |t: f64| left + (t.clamp(0.0, dur) / dur) * (w - left - right);
    let links = r.traces.len();

    // Throughput per link per sample interval (Mbit/s), from cumulative counters.
    let mut rates: Vec<(f64, Vec<f64>)> = Vec::new();
    for pair in r.samples.windows(2) {
        let dt = (pair[1].t_s - pair[0].t_s).max(1e-6);
        let per: Vec<f64> = (0..links)
            .map(|i| {
                (pair[1].uplink_bytes[i].saturating_sub(pair[0].uplink_bytes[i])) as f64 * 8.0 / dt / 1e6
            })
            .collect();
        rates.push((pair[1].t_s, per));
    }
    let cap = |i: usize, t: f64| {
        let warm = super::runner::WARMUP.as_nanos() as u64;
        let a = warm + (t.max(0.0) * 1e9) as u64;
        let b = a + SAMPLE.as_nanos() as u64;
        r.traces[i].capacity_bytes(a, b) as f64 * 8.0 / SAMPLE.as_secs_f64() / 1e6
    };
    let max_rate = rates
        .iter()
        .map(|(_, v)| v.iter().sum::<f64>())
        .chain(
            (0..links)
                .flat_map(|i| (0..(dur * 10.0) as usize).map(move |k| (i, k as f64 / 10.0)))
                .map(|(i, t)| cap(i, t)),
        )
        .fold(1.0, f64::max)
        * 1.1;
    let y1 = |v: f64| top1 + h1 - (v / max_rate).min(1.0) * h1;
    let max_owd = r.analysis.owd_ms.p999.max(r.analysis.owd_ms.p99).max(10.0) * 1.2;
    let y2 = |v: f64| top2 + h2 - (v / max_owd).min(1.0) * h2;

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{left}" y="20" font-size="15">{} — uplink per link (stacked areas) vs. trace capacity (lines); one-way delay</text>"#,
        r.scenario.name
    );
    // Axes and grid.
    for (top, hh, label, maxv) in [(top1, h1, "Mbit/s", max_rate), (top2, h2, "OWD ms", max_owd)] {
        let _ = write!(
            s,
            r##"<rect x="{left}" y="{top}" width="{}" height="{hh}" fill="none" stroke="#999"/>"##,
            w - left - right
        );
        for k in 0..=4 {
            let v = maxv * f64::from(k) / 4.0;
            let yy = top + hh - hh * f64::from(k) / 4.0;
            let _ = write!(
                s,
                r##"<line x1="{left}" x2="{}" y1="{yy}" y2="{yy}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{v:.0}</text>"##,
                w - right,
                left - 5.0,
                yy + 4.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="12" y="{}" transform="rotate(-90 12 {})">{label}</text>"#,
            top + hh / 2.0,
            top + hh / 2.0
        );
    }
    for k in 0..=10 {
        let t = dur * f64::from(k) / 10.0;
        let _ =
            write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{t:.0}s</text>"#, x(t), top2 + h2 + 16.0);
    }
    // Stacked throughput areas.
    for i in (0..links).rev() {
        let mut pts = String::new();
        let stacked = |v: &Vec<f64>| v.iter().take(i + 1).sum::<f64>();
        let visible: Vec<_> = rates.iter().filter(|(t, _)| *t >= 0.0 && *t <= dur).collect();
        if visible.is_empty() {
            continue;
        }
        let _ = write!(pts, "{},{} ", x(visible[0].0), y1(0.0));
        for (t, v) in &visible {
            let _ = write!(pts, "{:.1},{:.1} ", x(*t), y1(stacked(v)));
        }
        let _ = write!(pts, "{},{}", x(visible[visible.len() - 1].0), y1(0.0));
        let _ = write!(
            s,
            r#"<polygon points="{pts}" fill="{}" fill-opacity="0.45" stroke="none"/>"#,
            COLORS[i % 8]
        );
    }
    // Trace capacity lines.
    for i in 0..links {
        let mut pts = String::new();
        let mut t = 0.0;
        while t <= dur {
            let _ = write!(pts, "{:.1},{:.1} ", x(t), y1(cap(i, t)));
            t += SAMPLE.as_secs_f64();
        }
        let _ = write!(
            s,
            r#"<polyline points="{pts}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
            COLORS[i % 8]
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{}">link {i} (weight {})</text>"#,
            w - 190.0,
            top1 + 16.0 + 15.0 * i as f64,
            COLORS[i % 8],
            r.weights.get(i).copied().unwrap_or(0)
        );
    }
    // One-way delay, one dot per delivered datagram (thinned to ≤ 20 000 dots).
    let step = (r.arrivals.len() / 20_000).max(1);
    for a in r.arrivals.iter().step_by(step) {
        let t = a.sent_ns as f64 / 1e9;
        let d = a.recv_ns.saturating_sub(a.sent_ns) as f64 / 1e6;
        let color = r.flows.iter().position(|f| f.id == a.flow).map_or("#333", |k| COLORS[(k + 4) % 8]);
        let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="1" fill="{color}"/>"#, x(t), y2(d));
    }
    for (k, f) in r.flows.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{}">{} ({:.1} Mbit/s)</text>"#,
            w - 190.0,
            top2 + 16.0 + 15.0 * k as f64,
            COLORS[(k + 4) % 8],
            f.class,
            f.mbit_s
        );
    }
    // Events (simultaneous ones share a line and a label).
    let mut marks: Vec<(f64, String, Vec<usize>)> = Vec::new();
    for e in &r.scenario.events {
        match marks.iter_mut().find(|(t, k, _)| (*t - e.at_s).abs() < 1e-9 && k == e.kind.name()) {
            Some((_, _, links)) => links.push(e.kind.link()),
            None => marks.push((e.at_s, e.kind.name().to_string(), vec![e.kind.link()])),
        }
    }
    for (at_s, kind, links) in &marks {
        let xx = x(*at_s);
        let which = links.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let _ = write!(
            s,
            r##"<line x1="{xx}" x2="{xx}" y1="{top1}" y2="{}" stroke="#000" stroke-dasharray="4 3"/><text x="{}" y="{}" font-size="11">{kind} (link {which})</text>"##,
            top2 + h2,
            xx + 3.0,
            top1 - 4.0
        );
    }
    oracle_panel(r, &mut s, 640.0, 180.0, &x);
    s.push_str("</svg>\n");
    s
}

/// The third panel (`top`, `height`): per second of traffic, the datagrams
/// delivered within the deadline by Strata and by the oracle, and offered.
fn oracle_panel(r: &RunResult, s: &mut String, top: f64, height: f64, x: &dyn Fn(f64) -> f64) {
    let o = &r.oracle;
    let (left, right) = (x(0.0), x(r.scenario.duration_s));
    let max = o.per_second.iter().map(|b| b.offered).max().unwrap_or(1).max(1) as f64 * 1.1;
    let y = |v: u64| top + height - (v as f64 / max).min(1.0) * height;
    let _ = write!(
        s,
        r##"<rect x="{left}" y="{top}" width="{}" height="{height}" fill="none" stroke="#999"/>"##,
        right - left
    );
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let yy = top + height - height * f64::from(k) / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{right}" y1="{yy}" y2="{yy}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{v:.0}</text>"##,
            left - 5.0,
            yy + 4.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="12" y="{0}" transform="rotate(-90 12 {0})">datagrams/s</text>"#,
        top + height / 2.0
    );
    for k in 0..=10 {
        let t = r.scenario.duration_s * f64::from(k) / 10.0;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{t:.0}s</text>"#,
            x(t),
            top + height + 16.0
        );
    }
    type Value = fn(&SecondCounts) -> u64;
    let curves: [(&str, &str, Value, &str); 3] = [
        ("offered", "#bbb", |b| b.offered, ""),
        ("oracle", "#000", |b| b.oracle, r#" stroke-dasharray="6 3""#),
        ("Strata", "#2ca02c", |b| b.strata, ""),
    ];
    for (k, (name, color, value, dash)) in curves.iter().enumerate() {
        let pts: String = o
            .per_second
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{:.1},{:.1} ", x(i as f64 + 0.5), y(value(b))))
            .collect();
        let _ =
            write!(s, r#"<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"{dash}/>"#);
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{color}">{name}</text>"#,
            right - 190.0,
            top + height - 40.0 + 15.0 * k as f64
        );
    }
    let _ = write!(
        s,
        r#"<text x="{left}" y="{}">delivered within {:.0} ms, per second of sending: Strata {:.2} % of the offered, the oracle {:.2} % — ratio {:.3}</text>"#,
        top - 6.0,
        o.deadline_ms,
        o.all.strata_within_deadline * 100.0,
        o.all.oracle_within_deadline * 100.0,
        o.all.oracle_ratio
    );
}

/// Which source each link's trace came from (a file, or the synthetic
/// fallback played because the file was absent).
fn restarts_markdown(r: &RunResult) -> String {
    if r.restarts.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n| daemon | stopped by | down at | started at | restart to ready |\n|---|---|---|---|---|\n",
    );
    for p in &r.restarts {
        let stop = match p.stop {
            super::runner::DaemonStop::Crash => "kill -9",
            super::runner::DaemonStop::InPlace => "SIGTERM, --keep-dataplane",
        };
        let _ = writeln!(
            s,
            "| {:?} | {stop} | {:.1} s | {:.1} s | {:.0} ms |",
            p.side, p.down_at_s, p.started_at_s, p.ready_ms
        );
    }
    if r.tunnel_device_changes.is_empty() {
        s.push_str("\nThe tunnel devices never disappeared.\n");
    } else {
        let _ = writeln!(s, "\nTunnel devices changed: {}", r.tunnel_device_changes.join("; "));
    }
    s
}

fn attack_markdown(r: &RunResult) -> String {
    let Some(a) = &r.attack else {
        return String::new();
    };
    let sent: Vec<String> = a.sent.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let mut s = format!(
        "\nAttacker on the internet: captured {} genuine packets, sent {} ({}). \
         Forged datagrams delivered: {} on the hub, {} on the edge. ",
        a.captured,
        a.total_sent(),
        sent.join(", "),
        a.delivered_to_hub,
        a.delivered_to_edge
    );
    if a.foreign_endpoints.is_empty() {
        s.push_str("The hub never reported an endpoint other than a link's genuine one.\n");
    } else {
        let first: Vec<&str> = a.foreign_endpoints.iter().take(8).map(String::as_str).collect();
        let _ = writeln!(
            s,
            "The hub reported {} foreign endpoints (all in result.json): {}.",
            a.foreign_endpoints.len(),
            first.join("; ")
        );
    }
    s
}

/// Capacity on offer against the load: the upper bound of each class of
/// seconds in [`by_capacity`] (the last class is everything above).
const CAPACITY_CLASSES: [f64; 3] = [1.0, 1.3, 2.0];

/// The seconds of a run in which the links offered this much capacity
/// against the traffic offered, and what the oracle and Strata delivered
/// in them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CapacityClass {
    /// Capacity on offer ÷ traffic offered, at least.
    pub from: f64,
    /// … and below (`None`: no bound).
    pub below: Option<f64>,
    /// Seconds in the class.
    pub seconds: u64,
    /// Datagrams offered, delivered in time by the oracle, by Strata, and
    /// delivered late by Strata.
    pub counts: SecondCounts,
}

/// The run's seconds grouped by capacity on offer (every link's trace,
/// IP bytes) against the traffic offered in that second (on the wire): where
/// Strata falls short of the oracle — while the links have room to spare,
/// or while they cannot carry the load, where no source adaptation means
/// someone's datagrams do not arrive — is what the next change should
/// aim at.
pub fn by_capacity(r: &RunResult) -> Vec<CapacityClass> {
    let per_second = &r.oracle.per_second;
    let t0 = super::runner::WARMUP.as_nanos() as u64;
    let mut offered = vec![0u64; per_second.len()];
    for p in &r.planned {
        if let Some(o) = offered.get_mut((p.at_ns / SERIES_BIN_NS) as usize) {
            *o += wire_bytes(p.len);
        }
    }
    let capacity = |second: usize| -> u64 {
        let from = t0 + second as u64 * SERIES_BIN_NS;
        r.traces.iter().map(|t| t.capacity_bytes(from, from + SERIES_BIN_NS)).sum()
    };
    let mut bounds = vec![0.0];
    bounds.extend(CAPACITY_CLASSES);
    let mut classes: Vec<CapacityClass> = bounds
        .iter()
        .enumerate()
        .map(|(i, &from)| CapacityClass {
            from,
            below: CAPACITY_CLASSES.get(i).copied(),
            ..Default::default()
        })
        .collect();
    for (second, counts) in per_second.iter().enumerate() {
        let ratio = capacity(second) as f64 / offered[second].max(1) as f64;
        let class = CAPACITY_CLASSES.iter().take_while(|&&b| ratio >= b).count();
        let c = &mut classes[class];
        c.seconds += 1;
        c.counts.offered += counts.offered;
        c.counts.oracle += counts.oracle;
        c.counts.strata += counts.strata;
        c.counts.causal += counts.causal;
        c.counts.causal_rtt += counts.causal_rtt;
        c.counts.strata_late += counts.strata_late;
    }
    classes.retain(|c| c.seconds > 0);
    classes
}

fn by_capacity_markdown(r: &RunResult) -> String {
    let classes = by_capacity(r);
    if classes.len() < 2 {
        return String::new();
    }
    let mut s = String::from(
        "\n| capacity on offer ÷ load | seconds | in time: oracle | causal, seeing now | causal, a round trip late | Strata | Strata late | ÷ oracle: Strata / causal now / causal late |\n|---|---|---|---|---|---|---|---|\n",
    );
    for c in classes {
        let range = match c.below {
            Some(b) if c.from == 0.0 => format!("< {b}×"),
            Some(b) => format!("{}–{b}×", c.from),
            None => format!("≥ {}×", c.from),
        };
        let SecondCounts { oracle, strata, strata_late, causal, causal_rtt, .. } = c.counts;
        let of_oracle = |n: u64| n as f64 / oracle.max(1) as f64;
        let _ = writeln!(
            s,
            "| {range} | {} | {oracle} | {causal} | {causal_rtt} | {strata} | {strata_late} | {:.3} / {:.3} / {:.3} |",
            c.seconds,
            of_oracle(strata),
            of_oracle(causal),
            of_oracle(causal_rtt)
        );
    }
    s
}

fn trace_sources_markdown(r: &RunResult) -> String {
    let mut s = String::from("\n| link | trace played |\n|---|---|\n");
    for (i, source) in r.trace_sources.iter().enumerate() {
        let _ = writeln!(s, "| {i} | {} |", source.description);
    }
    s
}

/// How stepped links followed their capacity (`capacity` events).
fn capacity_steps_markdown(r: &RunResult) -> String {
    let steps = &r.analysis.capacity_steps;
    if steps.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n| capacity step | link | at | carried ≥ 80 % of the new capacity after | carried 1.5–2.5 s after | longest queueing delay from 300 ms after |\n|---|---|---|---|---|---|\n",
    );
    for c in steps {
        let _ = writeln!(
            s,
            "| {:.1} → {:.1} Mbit/s | {} | {:.1} s | {} | {:.0} % | {:.0} ms |",
            c.from_mbit_s,
            c.to_mbit_s,
            c.link,
            c.at_ms / 1000.0,
            c.reached_80pct_ms.map_or_else(|| "never".to_string(), |ms| format!("{ms:.0} ms")),
            c.carried_share_after_1500ms * 100.0,
            c.queue_delay_after_300ms_ms
        );
    }
    s
}

/// A short human summary.
pub fn markdown(r: &RunResult) -> String {
    let a = &r.analysis;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Scenario `{}` ({} control, os_signals {})\n\n{}\n",
        r.scenario.name,
        r.control.name(),
        r.os_signals.name(),
        r.scenario.description.trim()
    );
    let _ = writeln!(s, "| metric | value |\n|---|---|");
    let _ = writeln!(s, "| delivered | {:.3} % |", a.delivered_ratio * 100.0);
    let _ = writeln!(
        s,
        "| one-way delay p50 / p95 / p99 / p99.9 | {:.1} / {:.1} / {:.1} / {:.1} ms |",
        a.owd_ms.p50, a.owd_ms.p95, a.owd_ms.p99, a.owd_ms.p999
    );
    let _ = writeln!(s, "| within 150 ms | {:.2} % |", a.within_150ms * 100.0);
    let o = &r.oracle;
    let _ = writeln!(
        s,
        "| within the deadline ({:.0} ms): Strata / oracle | {:.2} % / {:.2} % |",
        o.deadline_ms,
        o.all.strata_within_deadline * 100.0,
        o.all.oracle_within_deadline * 100.0
    );
    let _ = writeln!(s, "| **Strata ÷ oracle** (within the deadline) | **{:.3}** |", o.all.oracle_ratio);
    let _ = writeln!(
        s,
        "| causal reference ÷ oracle, seeing the queues now / a round trip late | {:.3} / {:.3} |",
        o.all.causal_of_oracle, o.all.causal_rtt_of_oracle
    );
    let _ = writeln!(s, "| longest delivery gap | {:.0} ms |", a.max_gap_ms);
    let _ = writeln!(s, "| reordered (RFC 4737) | {:.3} % |", a.reorder_ratio * 100.0);
    let _ = writeln!(s, "| aggregation efficiency | {:.3} |", a.aggregation_efficiency);
    let _ = writeln!(
        s,
        "\n| class | sent | loss | OWD p99 | goodput | longest gap | in time: Strata / oracle | ÷ oracle |\n|---|---|---|---|---|---|---|---|"
    );
    for (name, c) in &a.classes {
        let oc = o.classes.get(name).cloned().unwrap_or_default();
        let _ = writeln!(
            s,
            "| {name} | {} | {:.3} % | {:.1} ms | {:.2} Mbit/s | {:.0} ms | {:.2} % / {:.2} % | {:.3} |",
            c.sent,
            c.loss * 100.0,
            c.owd_ms.p99,
            c.goodput_mbit_s,
            c.max_gap_ms,
            oc.strata_within_deadline * 100.0,
            oc.oracle_within_deadline * 100.0,
            oc.oracle_ratio
        );
    }
    let _ = writeln!(s, "\n| link | weight | trace mean | carried (uplink) |\n|---|---|---|---|");
    for (i, st) in r.link_stats.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {i} | {} | {:.1} Mbit/s | {:.1} MB |",
            r.weights.get(i).copied().unwrap_or(0),
            r.traces[i].mean_mbit_s(),
            st.uplink.delivered_bytes as f64 / 1e6
        );
    }
    if !a.events.is_empty() {
        let _ = writeln!(
            s,
            "\n| event | link | at | recovery | lost | data stopped on the link after | lost on the link | data on the link again after |\n|---|---|---|---|---|---|---|---|"
        );
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        for e in &a.events {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} s | {:.0} ms | {} | {} | {} | {} |",
                e.kind,
                e.link,
                e.at_ms / 1000.0,
                e.recovery_ms,
                e.lost_packets,
                opt(e.steering_ms.map(|v| format!("{v:.0} ms"))),
                opt(e.outage_lost_packets.map(|v| v.to_string())),
                opt(e.resume_ms.map(|v| format!("{v:.0} ms"))),
            );
        }
    }
    s.push_str(&by_capacity_markdown(r));
    s.push_str(&capacity_steps_markdown(r));
    s.push_str(&trace_sources_markdown(r));
    s.push_str(&restarts_markdown(r));
    s.push_str(&attack_markdown(r));
    if !r.state_changes.is_empty() {
        let _ = writeln!(
            s,
            "\n| link | state changes | after first live | most in any 2 s after first live |\n|---|---|---|---|"
        );
        for i in 0..r.link_stats.len() as u8 {
            let all = r.state_changes.iter().filter(|c| c.link == i).count();
            let after = r.state_changes.iter().filter(|c| c.link == i).skip_while(|c| c.to != "live").count();
            let most = super::runner::max_changes_in_window(&r.state_changes, i, 2.0);
            let _ = writeln!(s, "| {i} | {all} | {} | {most} |", after.saturating_sub(1));
        }
    }
    s.push_str("\n![plot](plot.svg)\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        emulator::bridge::LinkStats,
        scenario::{
            analyzer::{Arrival, analyze},
            generator::plan,
            oracle,
            runner::WARMUP,
            spec::Scenario,
        },
    };

    /// A run of one 12 Mbit/s link carrying 6 Mbit/s of video, where Strata
    /// delivered every datagram 20 ms after sending it, but only the first half.
    fn run() -> RunResult {
        let scenario: Scenario = toml::from_str(
            r#"
            name = "t"
            duration_s = 4
            deadline_ms = 100
            [[links]]
            trace = { model = "constant", mbit_s = 12 }
            delay_ms = 20
            [[traffic]]
            kind = "video"
            mbit_s = 6
            "#,
        )
        .unwrap();
        let (traces, trace_sources): (Vec<_>, Vec<_>) =
            scenario.traces_with_sources().unwrap().into_iter().unzip();
        let (flows, planned) = plan(&scenario.traffic, 12.0, scenario.duration_s);
        let arrivals: Vec<Arrival> = planned
            .iter()
            .take(planned.len() / 2)
            .map(|p| Arrival {
                flow: p.flow,
                seq: p.seq,
                sent_ns: p.at_ns,
                recv_ns: p.at_ns + 20_000_000,
                len: p.len,
            })
            .collect();
        let t0 = WARMUP.as_nanos() as u64;
        let uplinks: Vec<_> = scenario.directions(&traces, t0).into_iter().map(|(up, _)| up).collect();
        let analysis = analyze(&flows, &planned, &arrivals, &[], 4_000_000_000, 6_000_000);
        let mut oracle = oracle::compare(&uplinks, &flows, &planned, &arrivals, t0, scenario.deadline_ms);
        crate::scenario::causal::add(&mut oracle, &uplinks, &flows, &planned, t0);
        RunResult {
            scenario,
            traces,
            trace_sources,
            weights: vec![12],
            control: crate::strata::Control::Adaptive,
            os_signals: crate::strata::OsSignals::Full,
            flows,
            planned,
            arrivals,
            samples: Vec::new(),
            state_changes: Vec::new(),
            observation: None,
            link_stats: vec![LinkStats::default()],
            edge_stats: Value::Null,
            event_log: Vec::new(),
            analysis,
            oracle,
            restarts: Vec::new(),
            attack: None,
            tunnel_device_changes: Vec::new(),
        }
    }

    #[test]
    fn seconds_are_grouped_by_the_capacity_on_offer() {
        let r = run();
        // 12 Mbit/s of trace against 6 Mbit/s of video and its headers on
        // the wire: just under twice the load, every second.
        let classes = by_capacity(&r);
        assert_eq!(classes.len(), 1, "{classes:?}");
        let c = &classes[0];
        assert_eq!((c.from, c.below, c.seconds), (1.3, Some(2.0), 4));
        let all = &r.oracle.all;
        assert_eq!(c.counts.offered, r.planned.len() as u64);
        assert_eq!(c.counts.oracle as f64, (all.oracle_within_deadline * r.planned.len() as f64).round());
        assert_eq!(c.counts.strata as f64, (all.strata_within_deadline * r.planned.len() as f64).round());
        assert_eq!(by_capacity_markdown(&r), "", "one class says nothing the totals do not");
    }

    #[test]
    fn the_oracle_is_in_every_output() {
        let r = run();
        // Half a link's capacity, one-packet frames well inside 100 ms: the
        // oracle delivers everything, Strata half.
        assert_eq!(r.oracle.all.oracle_within_deadline, 1.0);
        assert!((r.oracle.all.oracle_ratio - 0.5).abs() < 0.01, "{}", r.oracle.all.oracle_ratio);
        let j = to_json(&r);
        assert_eq!(j["deadline_ms"], 100.0);
        assert_eq!(j["oracle_ratio"], r.oracle.all.oracle_ratio);
        assert_eq!(j["oracle"]["classes"]["video"]["oracle_delivered"], r.planned.len());
        let md = markdown(&r);
        assert!(
            md.contains("| within the deadline (100 ms): Strata / oracle | 50.00 % / 100.00 % |"),
            "{md}"
        );
        assert!(md.contains(&format!(
            "| **Strata ÷ oracle** (within the deadline) | **{:.3}** |",
            r.oracle.all.oracle_ratio
        )));
        assert!(md.contains("| 50.00 % / 100.00 % |"), "class table: {md}");
        // Half the link's capacity and no variation: a scheduler without
        // foresight delivers everything too.
        assert!(md.contains("seeing the queues now / a round trip late | 1.000 / 1.000 |"), "{md}");
        let svg = svg(&r);
        assert!(svg.contains("delivered within 100 ms, per second of sending"));
        assert_eq!(svg.matches("<polyline").count(), 1 + 3, "trace capacity, then offered, oracle, Strata");
    }
}
