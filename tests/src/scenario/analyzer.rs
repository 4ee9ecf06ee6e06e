//! From what was offered and what arrived to the numbers a scenario reports.
//!
//! Pure: the runner hands over the planned datagrams and the receiver's
//! records (flow, sequence, send and receive time on the same host clock).
//!
//! * **Loss** — planned datagrams whose sequence never arrived.
//! * **One-way delay** — receive minus send time, percentiles (nearest rank).
//! * **Reordering** — RFC 4737: a datagram is reordered when it arrives with
//!   a sequence below the next expected one (highest so far + 1); its
//!   extent is how far below.
//! * **Longest gap** — the longest time between consecutive deliveries of a
//!   flow that should have been sending meanwhile.
//! * **Recovery around an event** — in 100 ms bins by *send* time, the share
//!   of offered bytes that was delivered; recovery is the end of the last bin
//!   after the event (up to the next event or 10 s) below 90 %, measured from
//!   the event; `lost_packets` are the datagrams sent in that span that never
//!   arrived.
//! * **Aggregation efficiency** — delivered goodput over the capacity the
//!   traces offered during the run.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use strata_common::stats::percentile;

use super::generator::{Flow, Planned};

/// One datagram as the receiver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Flow id.
    pub flow: u8,
    /// Sequence.
    pub seq: u64,
    /// Send time, ns since traffic started.
    pub sent_ns: u64,
    /// Receive time, ns since traffic started.
    pub recv_ns: u64,
    /// UDP payload bytes.
    pub len: usize,
}

/// Delay percentiles, ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th.
    pub p95: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
}

/// Per traffic class.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClassReport {
    /// Datagrams offered.
    pub sent: u64,
    /// Distinct datagrams delivered.
    pub received: u64,
    /// Lost fraction.
    pub loss: f64,
    /// Datagrams delivered more than once.
    pub duplicates: u64,
    /// One-way delay.
    pub owd_ms: Percentiles,
    /// Fraction delivered within 150 ms.
    pub within_150ms: f64,
    /// RFC 4737 reordered ratio.
    pub reorder_ratio: f64,
    /// RFC 4737 largest reordering extent.
    pub reorder_extent: u64,
    /// Delivered payload rate, Mbit/s.
    pub goodput_mbit_s: f64,
    /// Longest time without a delivery, ms.
    pub max_gap_ms: f64,
}

/// An event and what it cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventReport {
    /// Event kind.
    pub kind: String,
    /// Link it hit.
    pub link: usize,
    /// When, ms.
    pub at_ms: f64,
    /// Time until delivery was back at ≥ 90 % of the offered rate, ms.
    pub recovery_ms: f64,
    /// Datagrams sent during the disruption that never arrived.
    pub lost_packets: u64,
    /// For an outage of a link (blackout): time from its start until the
    /// edge sent its last data on that link during the outage, ms.
    pub steering_ms: Option<f64>,
    /// Packets the emulator lost to the outage on that link (data and probes).
    pub outage_lost_packets: Option<u64>,
    /// For an event that moves or cuts a link (address change, USB
    /// re-attach, carrier or interface down): time from the moment the link
    /// could carry again (new address, interface or carrier back) until the
    /// edge sent data on it again, ms. `None` if it never did in the run.
    pub resume_ms: Option<f64>,
}

/// Everything the analyzer computes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Analysis {
    /// Delivered fraction of all datagrams.
    pub delivered_ratio: f64,
    /// One-way delay over all flows.
    pub owd_ms: Percentiles,
    /// Fraction of all datagrams delivered within 150 ms.
    pub within_150ms: f64,
    /// Longest delivery gap of any flow, ms.
    pub max_gap_ms: f64,
    /// RFC 4737 reordered ratio over all flows.
    pub reorder_ratio: f64,
    /// Delivered goodput over trace capacity.
    pub aggregation_efficiency: f64,
    /// Per class.
    pub classes: BTreeMap<String, ClassReport>,
    /// Per event.
    pub events: Vec<EventReport>,
    /// Per capacity step of a link (`capacity` events): how the link followed.
    pub capacity_steps: Vec<CapacityStepReport>,
}

/// An event to report on: kind, link, time.
#[derive(Clone, Debug)]
pub struct EventMark {
    /// Kind name.
    pub kind: String,
    /// Link.
    pub link: usize,
    /// When, ns.
    pub at_ns: u64,
}

const BIN_NS: u64 = 100_000_000;
const RECOVERY_HORIZON_NS: u64 = 10_000_000_000;

fn percentiles(mut v: Vec<f64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_by(f64::total_cmp);
    let at = |p| percentile(&v, p).unwrap_or_default();
    Percentiles { p50: at(50.0), p95: at(95.0), p99: at(99.0), p999: at(99.9) }
}

struct FlowOutcome {
    received: u64,
    duplicates: u64,
    reordered: u64,
    extent: u64,
    delays_ms: Vec<f64>,
    max_gap_ns: u64,
    bytes: u64,
}

fn flow_outcome(planned: &[&Planned], arrivals: &[&Arrival], duration_ns: u64) -> FlowOutcome {
    let mut seen = HashMap::new();
    let (mut duplicates, mut reordered, mut extent, mut bytes) = (0, 0, 0, 0);
    let mut highest: Option<u64> = None;
    let mut delays_ms = Vec::new();
    let mut times = Vec::new();
    for a in arrivals {
        if seen.insert(a.seq, ()).is_some() {
            duplicates += 1;
            continue;
        }
        match highest {
            Some(h) if a.seq < h + 1 => {
                reordered += 1;
                extent = extent.max(h - a.seq);
            }
            _ => highest = Some(a.seq),
        }
        delays_ms.push(a.recv_ns.saturating_sub(a.sent_ns) as f64 / 1e6);
        times.push(a.recv_ns);
        bytes += a.len as u64;
    }
    times.sort_unstable();
    // Gaps only while the flow was sending: from its first planned send to the end of the run.
    let start = planned.first().map_or(0, |p| p.at_ns);
    let mut last = start;
    let mut max_gap_ns = 0;
    for &t in &times {
        max_gap_ns = max_gap_ns.max(t.saturating_sub(last));
        last = last.max(t);
    }
    if !planned.is_empty() {
        max_gap_ns = max_gap_ns.max(duration_ns.saturating_sub(last));
    }
    FlowOutcome { received: seen.len() as u64, duplicates, reordered, extent, delays_ms, max_gap_ns, bytes }
}

/// Analyzes a run of `duration_ns`; `capacity_bytes` is what the traces
/// offered over it.
pub fn analyze(
    flows: &[Flow],
    planned: &[Planned],
    arrivals: &[Arrival],
    events: &[EventMark],
    duration_ns: u64,
    capacity_bytes: u64,
) -> Analysis {
    let mut by_flow: BTreeMap<u8, (Vec<&Planned>, Vec<&Arrival>)> = BTreeMap::new();
    for p in planned {
        by_flow.entry(p.flow).or_default().0.push(p);
    }
    for a in arrivals {
        by_flow.entry(a.flow).or_default().1.push(a);
    }
    let mut report = Analysis::default();
    let (mut all_delays, mut all_received, mut all_reordered, mut all_bytes) = (Vec::new(), 0u64, 0u64, 0u64);
    let mut per_class: BTreeMap<String, ClassReport> = BTreeMap::new();
    let mut class_delays: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (flow_id, (p, a)) in &by_flow {
        let class = flows.iter().find(|f| f.id == *flow_id).map_or("unknown", |f| f.class).to_string();
        let o = flow_outcome(p, a, duration_ns);
        let c = per_class.entry(class.clone()).or_default();
        c.sent += p.len() as u64;
        c.received += o.received;
        c.duplicates += o.duplicates;
        c.reorder_extent = c.reorder_extent.max(o.extent);
        c.reorder_ratio += o.reordered as f64; // normalized below
        c.goodput_mbit_s += o.bytes as f64 * 8.0 / (duration_ns as f64 / 1e9) / 1e6;
        c.max_gap_ms = c.max_gap_ms.max(o.max_gap_ns as f64 / 1e6);
        class_delays.entry(class.clone()).or_default().extend(&o.delays_ms);
        all_delays.extend(o.delays_ms);
        all_received += o.received;
        all_reordered += o.reordered;
        all_bytes += o.bytes;
    }
    for (class, c) in &mut per_class {
        let delays = class_delays.remove(class).unwrap_or_default();
        c.within_150ms = ratio(delays.iter().filter(|&&d| d <= 150.0).count() as u64, c.sent);
        c.owd_ms = percentiles(delays);
        c.loss = 1.0 - ratio(c.received, c.sent);
        c.reorder_ratio = if c.received > 0 { c.reorder_ratio / c.received as f64 } else { 0.0 };
    }
    let sent = planned.len() as u64;
    report.delivered_ratio = ratio(all_received, sent);
    report.within_150ms = ratio(all_delays.iter().filter(|&&d| d <= 150.0).count() as u64, sent);
    report.owd_ms = percentiles(all_delays);
    report.reorder_ratio = ratio(all_reordered, all_received);
    report.max_gap_ms = per_class.values().map(|c| c.max_gap_ms).fold(0.0, f64::max);
    report.aggregation_efficiency = ratio(all_bytes, capacity_bytes);
    report.classes = per_class;
    report.events = event_reports(planned, arrivals, events, duration_ns);
    report
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn event_reports(
    planned: &[Planned],
    arrivals: &[Arrival],
    events: &[EventMark],
    duration_ns: u64,
) -> Vec<EventReport> {
    let bins = (duration_ns / BIN_NS + 1) as usize;
    let mut offered = vec![0u64; bins];
    let mut delivered = vec![0u64; bins];
    let delivered_set: std::collections::HashSet<(u8, u64)> =
        arrivals.iter().map(|a| (a.flow, a.seq)).collect();
    for p in planned {
        let b = ((p.at_ns / BIN_NS) as usize).min(bins - 1);
        offered[b] += p.len as u64;
        if delivered_set.contains(&(p.flow, p.seq)) {
            delivered[b] += p.len as u64;
        }
    }
    let mut times: Vec<u64> = events.iter().map(|e| e.at_ns).collect();
    times.sort_unstable();
    events
        .iter()
        .map(|e| {
            let next = times.iter().copied().find(|&t| t > e.at_ns).unwrap_or(u64::MAX);
            let horizon = (e.at_ns + RECOVERY_HORIZON_NS).min(next).min(duration_ns);
            let first = (e.at_ns / BIN_NS) as usize;
            let last = ((horizon.saturating_sub(1)) / BIN_NS) as usize;
            let mut recovered_at = e.at_ns;
            for b in first..=last.min(bins - 1) {
                if offered[b] > 0 && (delivered[b] as f64) < 0.9 * offered[b] as f64 {
                    recovered_at = ((b as u64) + 1) * BIN_NS;
                }
            }
            let lost_packets = planned
                .iter()
                .filter(|p| p.at_ns >= e.at_ns && p.at_ns < recovered_at.max(e.at_ns))
                .filter(|p| !delivered_set.contains(&(p.flow, p.seq)))
                .count() as u64;
            EventReport {
                kind: e.kind.clone(),
                link: e.link,
                at_ms: e.at_ns as f64 / 1e6,
                recovery_ms: recovered_at.saturating_sub(e.at_ns) as f64 / 1e6,
                lost_packets,
                steering_ms: None,
                outage_lost_packets: None,
                resume_ms: None,
            }
        })
        .collect()
}

/// How long after `from_ns` data kept going out on a link, from its data
/// Time from `from_ns` until the first data in `bins` (`bin_ns` wide, same
/// time base) at or after it, ms; `None` if none came.
pub fn resume_ms(bins: &[u64], bin_ns: u64, from_ns: u64) -> Option<f64> {
    let first = (from_ns / bin_ns) as usize;
    let b = (first..bins.len()).find(|&b| bins[b] > 0)?;
    Some(((b as u64 * bin_ns).max(from_ns) - from_ns) as f64 / 1e6)
}

/// bins (`bin_ns` wide, same time base): the end of the last non-empty bin
/// in `[from_ns, until_ns)`, less `from_ns`, ms; 0 if none.
pub fn steering_ms(bins: &[u64], bin_ns: u64, from_ns: u64, until_ns: u64) -> f64 {
    let first = (from_ns / bin_ns) as usize;
    let last = (until_ns.saturating_sub(1) / bin_ns) as usize;
    let end = (first..=last)
        .rev()
        .find(|&b| bins.get(b).is_some_and(|&bytes| bytes > 0))
        .map_or(from_ns, |b| (b as u64 + 1) * bin_ns);
    end.saturating_sub(from_ns) as f64 / 1e6
}

/// A link's capacity stepping (a `capacity` event) and how the link followed
/// it, from the emulator's transmit bins of that link.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CapacityStepReport {
    /// Link.
    pub link: usize,
    /// When, ms since traffic started.
    pub at_ms: f64,
    /// Capacity over the second before, Mbit/s.
    pub from_mbit_s: f64,
    /// Capacity after, Mbit/s.
    pub to_mbit_s: f64,
    /// Time from the step until the link first carried at least
    /// [`STEP_UP_SHARE`] of its new capacity over a [`STEP_WINDOW_NS`]
    /// window, ms; `None` if it never did before the next step or 10 s.
    pub reached_80pct_ms: Option<f64>,
    /// Share of the new capacity the link carried from 1.5 s to 2.5 s after
    /// the step.
    pub carried_share_after_1500ms: f64,
    /// Longest queueing delay (time in the link's buffer) of anything it
    /// transmitted from 300 ms after the step until the next step (or 10 s),
    /// ms.
    pub queue_delay_after_300ms_ms: f64,
}

/// Share of its new capacity a link must carry after a step up (issue 12's
/// acceptance: ≥ 80 % within 1.5 s).
pub const STEP_UP_SHARE: f64 = 0.8;
/// Window over which that share is measured: long enough to smooth the
/// burst structure of a sender's frames, short against 1.5 s.
pub const STEP_WINDOW_NS: u64 = 200_000_000;

/// How a link followed a capacity step at `at_ns` to `to_mbit_s` (from
/// `from_mbit_s`), until `until_ns`, from its transmitted bytes and longest
/// queueing delay per `bin_ns` (same time base as `at_ns`).
pub fn capacity_step_report(
    (link, at_ms): (usize, f64),
    (from_mbit_s, to_mbit_s): (f64, f64),
    (bytes, max_sojourn_ns, bin_ns): (&[u64], &[u64], u64),
    at_ns: u64,
    until_ns: u64,
) -> CapacityStepReport {
    let bin = |t: u64| (t / bin_ns) as usize;
    let sum =
        |from: u64, to: u64| (bin(from)..bin(to)).map(|b| bytes.get(b).copied().unwrap_or(0)).sum::<u64>();
    let capacity_bytes = |span_ns: u64| to_mbit_s * 1e6 / 8.0 * span_ns as f64 / 1e9;
    let first = bin(at_ns.div_ceil(bin_ns) * bin_ns);
    let reached_80pct_ms = (first..)
        .map(|b| b as u64 * bin_ns)
        .take_while(|&start| start + STEP_WINDOW_NS <= until_ns)
        .find(|&start| {
            sum(start, start + STEP_WINDOW_NS) as f64 >= STEP_UP_SHARE * capacity_bytes(STEP_WINDOW_NS)
        })
        .map(|start| (start + STEP_WINDOW_NS - at_ns) as f64 / 1e6);
    let (a, b) = (at_ns + 1_500_000_000, (at_ns + 2_500_000_000).min(until_ns));
    let carried_share_after_1500ms =
        if b > a { sum(a, b) as f64 / capacity_bytes(b - a).max(1.0) } else { 0.0 };
    let queue_delay_after_300ms_ms = (bin(at_ns + 300_000_000)..bin(until_ns))
        .filter_map(|b| max_sojourn_ns.get(b))
        .max()
        .map_or(0.0, |&ns| ns as f64 / 1e6);
    CapacityStepReport {
        link,
        at_ms,
        from_mbit_s,
        to_mbit_s,
        reached_80pct_ms,
        carried_share_after_1500ms,
        queue_delay_after_300ms_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capacity_step_is_measured_from_the_links_bins() {
        let ms = 1_000_000;
        // 10 ms bins over 6 s; a step at 1 s from 2 to 20 Mbit/s (25 000
        // bytes per 10 ms): the link carries half of it for 500 ms, then all.
        let mut bytes = vec![2_500u64; 600];
        bytes[100..150].iter_mut().for_each(|b| *b = 12_500);
        bytes[150..].iter_mut().for_each(|b| *b = 25_000);
        let mut sojourn = vec![5 * ms; 600];
        sojourn[120] = 250 * ms; // a queue that drains within 300 ms
        sojourn[150] = 40 * ms;
        let r =
            capacity_step_report((0, 1000.0), (2.0, 20.0), (&bytes, &sojourn, 10 * ms), 1000 * ms, 6000 * ms);
        // The first 200 ms window at ≥ 80 % (400 000 bytes) starts at 1.42 s:
        // 8 × 12 500 + 12 × 25 000 = 400 000, ending 620 ms after the step.
        assert_eq!(r.reached_80pct_ms, Some(620.0));
        assert!((r.carried_share_after_1500ms - 1.0).abs() < 1e-9);
        assert_eq!(r.queue_delay_after_300ms_ms, 40.0);
        // Never reaching it within the horizon.
        let r =
            capacity_step_report((0, 1000.0), (2.0, 40.0), (&bytes, &sojourn, 10 * ms), 1000 * ms, 6000 * ms);
        assert_eq!(r.reached_80pct_ms, None);
    }

    fn flow() -> Vec<Flow> {
        vec![Flow { id: 0, class: "cbr", dscp: 0, port: 6000, mbit_s: 1.0 }]
    }

    /// 100 datagrams, one every 10 ms, 1000 bytes.
    fn planned() -> Vec<Planned> {
        (0..100).map(|i| Planned { at_ns: i * 10_000_000, flow: 0, seq: i, len: 1000 }).collect()
    }

    fn arrive(p: &Planned, delay_ms: u64) -> Arrival {
        Arrival {
            flow: p.flow,
            seq: p.seq,
            sent_ns: p.at_ns,
            recv_ns: p.at_ns + delay_ms * 1_000_000,
            len: p.len,
        }
    }

    #[test]
    fn a_clean_run() {
        let p = planned();
        let a: Vec<Arrival> = p.iter().map(|p| arrive(p, 20)).collect();
        let r = analyze(&flow(), &p, &a, &[], 1_000_000_000, 200_000);
        assert_eq!(r.delivered_ratio, 1.0);
        assert_eq!(r.owd_ms.p50, 20.0);
        assert_eq!(r.reorder_ratio, 0.0);
        assert!((r.max_gap_ms - 20.0).abs() < 1e-9, "{}", r.max_gap_ms);
        assert!((r.aggregation_efficiency - 0.5).abs() < 1e-9);
        assert!((r.classes["cbr"].goodput_mbit_s - 0.8).abs() < 1e-9);
    }

    #[test]
    fn loss_gap_reordering_and_an_event() {
        let p = planned();
        let mut a: Vec<Arrival> = p
            .iter()
            .filter(|p| !(30..50).contains(&p.seq)) // 200 ms outage from 300 ms
            .map(|p| arrive(p, 20))
            .collect();
        a.swap(5, 6); // one reordered datagram
        let events = [EventMark { kind: "blackout".into(), link: 0, at_ns: 300_000_000 }];
        let r = analyze(&flow(), &p, &a, &events, 1_000_000_000, 200_000);
        assert!((r.delivered_ratio - 0.8).abs() < 1e-9);
        let c = &r.classes["cbr"];
        assert!((c.loss - 0.2).abs() < 1e-9);
        assert_eq!(c.reorder_extent, 1);
        assert!((c.reorder_ratio - 1.0 / 80.0).abs() < 1e-9);
        // Last delivery before the outage at 290+20 ms, next at 500+20 ms.
        assert!((c.max_gap_ms - 210.0).abs() < 1e-9, "{}", c.max_gap_ms);
        assert_eq!(r.events[0].recovery_ms, 200.0);
        assert_eq!(r.events[0].lost_packets, 20);
    }

    #[test]
    fn steering_is_the_end_of_the_last_data_after_the_outage_began() {
        let mut bins = vec![1000u64; 50];
        bins[20..].iter_mut().for_each(|b| *b = 0); // data stops at 200 ms
        bins[40] = 1000; // and comes back at 400 ms, after the window
        let ms = 10_000_000;
        assert_eq!(steering_ms(&bins, ms, 105 * 1_000_000, 300 * 1_000_000), 95.0);
        assert_eq!(steering_ms(&bins, ms, 250 * 1_000_000, 300 * 1_000_000), 0.0);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let p = percentiles((1..=1000).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.p99, p.p999), (500.0, 950.0, 990.0, 999.0));
    }
}
