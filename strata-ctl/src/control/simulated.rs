//! The controller in a closed loop with simulated links, on simulated time.
//!
//! Each link is a fluid queue drained at a capacity that follows a function
//! of time, behind a fixed propagation delay. The "kernel" here sends each
//! 1250-byte packet where it is expected to arrive first within the send
//! budgets, the way `strata-ebpf`'s `choose_link_paced` does (virtual queue per
//! link drained at the budget rate, overflow to the earliest link when every
//! link is past its backlog limit, and a backlog measured from the hub's
//! acknowledgement where that is larger). The "hub" reports every 50 ms what
//! each link delivered, its mean one-way delay and the packets it received
//! (the acknowledgement), stamped with its clock; probes
//! come back every 50 ms with the round trip. So the properties below are the
//! controller's — following a link's capacity up while it carries data,
//! down within a feedback interval or two, and never demoting a link that is
//! merely variable — measured the way the lab would, without the lab.
//!
//! The same loop plays a real LTE trace (`real_trace_closed_loop`, an
//! ignored experiment: three links like the lab's `real-links-70`, at 32
//! starting points in the trace, about a minute and a half for every
//! variant in a release build): each packet's arrival is
//! then followed through its link's queue, and what arrived within the
//! deadline, late, or was dropped as late is counted. Variants of the
//! simulated [`Kernel`] tell what a change would be worth before it is built
//! — a queue the kernel sees exactly, a better drain rate, a busy time the
//! receiver counts, the lab's causal reference policy — and the figures are
//! in `docs/BENCHMARKS.md`.

use std::{collections::VecDeque, time::Duration};

use strata_common::{maps::OWD_BIAS_US, wire::FeedbackPayload};

use super::{
    controller::Controller,
    evidence::Evidence,
    lifecycle::{State, Thresholds},
    scoring::{Decision, ScoringConfig},
};

const PACKET: f64 = 1250.0;

/// A link's capacity, Mbit/s, as a function of time, s.
type Capacity = Box<dyn Fn(f64) -> f64>;

/// How the simulated kernel chooses a link and sees its queue.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernel {
    /// As `strata-ebpf`'s `choose_link_paced`, from the controller's budgets.
    Strata,
    /// The same, knowing each link's queue now rather than measuring it from
    /// an acknowledgement a round trip old: what no sender can, an upper
    /// bound on what a better view of the queue is worth.
    StrataExactQueue,
    /// The same, draining the acknowledged backlog at what the link
    /// delivered over the milliseconds it held a backlog in the
    /// [`RATE_WINDOW_MS`] before the acknowledgement, instead of the
    /// controller's estimate (which counts only feedback intervals
    /// backlogged throughout).
    StrataBusyRate,
    /// The same with the busy time as a receiver can count it
    /// ([`ReceiverCount`]).
    StrataReceiverBusyRate(ReceiverCount),
    /// The lab's causal reference (`strata-lab`'s `scenario::causal`, seeing
    /// the links a round trip late): each packet on the link of earliest
    /// expected arrival — base delay + (queue + packet) ÷ rate, the queue the
    /// larger of the acknowledged one and its own sends paced at that rate —
    /// if within [`REFERENCE_SHARE`] of the deadline, else dropped. Links
    /// and weights of the controller are ignored; only the rate may be its.
    Reference(ReferenceRate),
}

/// Where [`Kernel::Reference`] takes a link's rate from, as of a base round
/// trip ago, over the [`RATE_WINDOW_MS`] before.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ReferenceRate {
    /// The capacity the trace offered, used or not (as the lab's reference).
    Offered,
    /// What the link delivered over the milliseconds it held a backlog.
    Busy,
    /// The same as a receiver counts it ([`ReceiverCount`]), the
    /// controller's estimate where nothing waited lately.
    ReceiverBusy(ReceiverCount),
    /// The controller's capacity estimate.
    Controller,
}

/// How a receiver counts a link's busy time, packet by packet, from each
/// packet's one-way delay above the link's floor ("waited") and its
/// arrival; arrivals carry a jitter of |N(0, `jitter_ms`)|, which the
/// receiver cannot tell from waiting.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ReceiverCount {
    jitter_ms: f64,
    /// `Waited`: a packet that waited more than `margin_ms` proves the link
    /// busy from when it reached the bottleneck until it left.
    /// `BehindPredecessor`: a packet that reached the bottleneck (its
    /// arrival less its wait: the jitter cancels) before the previous
    /// packet arrived queued behind it, and proves the link busy between
    /// the two arrivals.
    rule: BusyRule,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum BusyRule {
    Waited { margin_ms: f64 },
    BehindPredecessor,
}

/// Span of the rates the variants measure, ms: as the controller's busy run.
const RATE_WINDOW_MS: usize = 300;
/// Share of the deadline within which [`Kernel::Reference`] admits an
/// expected arrival (the best of the lab reference's shares on real-links-70).
const REFERENCE_SHARE: f64 = 0.8;
/// Smallest rate, bytes per second: the controller's 0.2 Mbit/s.
const MIN_RATE: f64 = 25_000.0;

/// A packet in a link's queue.
struct Queued {
    /// When the source handed it over, s.
    at: f64,
    /// The link's cumulative queued bytes its last byte ends at.
    ends_at: f64,
    /// The kernel expected it in time, on evidence it may drop on.
    expected_in_time: bool,
    /// The link's true queue when it was sent exceeded the kernel's view by
    /// more than a quarter.
    queue_underseen: bool,
}

/// A link choice of the simulated kernel.
struct Choice {
    link: usize,
    expected_in_time: bool,
    /// The queue ahead the kernel priced, bytes.
    seen_bytes: f64,
}

struct SimLink {
    base_ms: f64,
    capacity: Capacity,
    queue_bytes: f64,
    /// Virtual queue of the simulated kernel: busy until, s.
    busy_until: f64,
    /// Packets the simulated kernel sent on the link (its next link sequence).
    sent: u64,
    rx_packets: f64,
    rx_bytes: f64,
    owd_sum_us: f64,
    owd_count: f64,
    /// Bytes delivered in the current measuring bucket (for the test's own view).
    delivered: f64,
    /// Feedback on its way back: (arrives at, payload, hub time µs).
    in_flight: Vec<(f64, FeedbackPayload, u32)>,
    /// Bytes ever queued and ever delivered.
    queued_total: f64,
    delivered_total: f64,
    /// Per millisecond: bytes delivered by its end, and whether the link
    /// held a backlog in it.
    delivered_by_ms: Vec<f64>,
    busy_by_ms: Vec<bool>,
    /// The packets queued, oldest first.
    queue: VecDeque<Queued>,
    /// Per millisecond of arrival at the receiver: (bytes of packets that
    /// waited, busy time they prove, s), and the arrival the last one
    /// proved busy up to ([`Kernel::StrataReceiverBusyRate`]).
    receiver_busy_by_ms: Vec<(f64, f64)>,
    receiver_busy_up_to: f64,
    /// The same, cumulative (bytes, µs), as the hub's feedback carries them
    /// (`Bond::hub_counts`).
    receiver_queued: (f64, f64),
    /// [`Kernel::Reference`]'s paced queue (until, s) and last rate.
    paced_until: f64,
    reference_rate: f64,
}

impl SimLink {
    /// Bytes delivered by `t`, s.
    fn delivered_by(&self, t: f64) -> f64 {
        if t < 0.0 {
            return 0.0;
        }
        self.delivered_by_ms.get((t * 1000.0) as usize).copied().unwrap_or(self.delivered_total)
    }

    /// Bytes per second delivered over the milliseconds the link held a
    /// backlog in the [`RATE_WINDOW_MS`] before `t`, if at least `min_ms`.
    fn busy_rate(&self, t: f64, min_ms: usize) -> Option<f64> {
        let end = ((t.max(0.0) * 1000.0) as usize).min(self.busy_by_ms.len());
        let (mut bytes, mut busy_ms) = (0.0, 0);
        for k in end.saturating_sub(RATE_WINDOW_MS)..end {
            if self.busy_by_ms[k] {
                busy_ms += 1;
                bytes += self.delivered_by_ms[k] - if k > 0 { self.delivered_by_ms[k - 1] } else { 0.0 };
            }
        }
        (busy_ms >= min_ms).then(|| bytes / (busy_ms as f64 / 1000.0))
    }

    /// Bytes per second over the busy time the receiver proved in the
    /// [`RATE_WINDOW_MS`] before `t` (receiver time), if at least a millisecond.
    fn receiver_busy_rate(&self, t: f64) -> Option<f64> {
        let end = ((t.max(0.0) * 1000.0) as usize).min(self.receiver_busy_by_ms.len());
        let (bytes, busy) = self.receiver_busy_by_ms[end.saturating_sub(RATE_WINDOW_MS)..end]
            .iter()
            .fold((0.0, 0.0), |(b, s), &(bytes, secs)| (b + bytes, s + secs));
        (busy >= 0.001).then(|| bytes / busy)
    }

    /// Bytes per second the trace offered in the [`RATE_WINDOW_MS`] before `t`.
    fn offered_rate(&self, t: f64) -> f64 {
        let ms = RATE_WINDOW_MS as f64;
        (0..RATE_WINDOW_MS).map(|k| (self.capacity)(t - ms / 1e3 + k as f64 / 1e3)).sum::<f64>() / ms * 1e6
            / 8.0
    }
}

/// What happened to the packets handed over since counting began.
#[derive(Debug, Default)]
struct Tally {
    in_time: u64,
    late: u64,
    /// Late, though the kernel expected them in time on evidence it drops on.
    late_unforeseen: u64,
    /// Of those, the ones sent into a queue longer than the kernel saw.
    late_queue_underseen: u64,
    /// Dropped by the kernel as late.
    shed: u64,
}

struct Bond {
    links: Vec<SimLink>,
    controller: Controller,
    decision: Option<Decision>,
    /// Offered load, Mbit/s.
    offered: f64,
    t: f64,
    /// Source bytes not yet a whole packet.
    credit: f64,
    kernel: Kernel,
    /// The kernel's drop deadline, s (`drop_late`); `None`: drops nothing.
    drop_deadline: Option<f64>,
    /// One-way delays from each packet's own wait in the queue rather than
    /// the fluid queue ÷ this millisecond's capacity (which a trace's empty
    /// milliseconds make infinite).
    trace_delays: bool,
    /// Whether the hub's feedback carries its queued counts (`RxQueued`),
    /// counted as this receiver does.
    hub_counts: Option<ReceiverCount>,
    /// Packets handed over from `count_from` s on are tallied, in time
    /// within `deadline` s.
    count_from: f64,
    deadline: f64,
    tally: Tally,
    /// State of the jitter's random numbers.
    rng: u64,
}

/// |N(0, 1)|, from a xorshift generator (Box-Muller).
fn half_normal(state: &mut u64) -> f64 {
    let mut uniform = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    };
    let (u, v) = (uniform().max(1e-12), uniform());
    ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()).abs()
}

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

impl Bond {
    fn new(links: Vec<(f64, Capacity)>, offered: f64) -> Self {
        let ids: Vec<(u8, u32)> = (0..links.len() as u8).map(|i| (i, 5)).collect();
        Self {
            links: links
                .into_iter()
                .map(|(base_ms, capacity)| SimLink {
                    base_ms,
                    capacity,
                    queue_bytes: 0.0,
                    busy_until: 0.0,
                    sent: 0,
                    rx_packets: 0.0,
                    rx_bytes: 0.0,
                    owd_sum_us: 0.0,
                    owd_count: 0.0,
                    delivered: 0.0,
                    in_flight: Vec::new(),
                    queued_total: 0.0,
                    delivered_total: 0.0,
                    delivered_by_ms: Vec::new(),
                    busy_by_ms: Vec::new(),
                    queue: VecDeque::new(),
                    receiver_busy_by_ms: Vec::new(),
                    receiver_busy_up_to: 0.0,
                    receiver_queued: (0.0, 0.0),
                    paced_until: 0.0,
                    reference_rate: MIN_RATE,
                })
                .collect(),
            controller: Controller::new(&ids, Thresholds::default(), ScoringConfig::default()),
            decision: None,
            offered,
            t: 0.0,
            credit: 0.0,
            kernel: Kernel::Strata,
            drop_deadline: None,
            trace_delays: false,
            hub_counts: None,
            count_from: f64::MAX,
            deadline: 0.15,
            tally: Tally::default(),
            rng: 0x5eed,
        }
    }

    /// The link for the next packet, or `None` to drop it as late.
    fn choose(&mut self) -> Option<Choice> {
        match self.kernel {
            Kernel::Reference(rate) => self.choose_as_reference(rate),
            _ => self.choose_as_strata(),
        }
    }

    /// Earliest arrival within budgets, as the kernel does it.
    fn choose_as_strata(&mut self) -> Option<Choice> {
        let unbudgeted = Choice { link: 0, expected_in_time: false, seen_bytes: 0.0 };
        let Some(d) = &self.decision else { return Some(unbudgeted) };
        // (expected arrival, link, on evidence to drop on, queue seen in bytes)
        let (mut within, mut any) = ((f64::MAX, usize::MAX, false, 0.0), (f64::MAX, usize::MAX, false, 0.0));
        for (i, l) in self.links.iter().enumerate() {
            let b = d.budgets[i];
            if d.weights[i] == 0 || b.bytes_per_s == 0 {
                continue;
            }
            let modelled = (l.busy_until - self.t).max(0.0);
            // As `measured_backlog_ns`: what was sent since the
            // acknowledged packet, drained from the anchor at the link's
            // estimated capacity. The budget holds while both backlogs are
            // within it; the arrival follows the measured one.
            let measured = b.ack.map(|a| {
                let anchor = a.anchor.as_secs_f64();
                let drain = match self.kernel {
                    Kernel::StrataBusyRate => {
                        l.busy_rate(anchor, 1).map_or(a.drain_bytes_per_s as f64, |r| r.max(MIN_RATE))
                    }
                    Kernel::StrataReceiverBusyRate(_) => l
                        .receiver_busy_rate(anchor + l.base_ms / 1e3)
                        .map_or(a.drain_bytes_per_s as f64, |r| r.max(MIN_RATE)),
                    _ => a.drain_bytes_per_s.max(1) as f64,
                };
                let since = l.sent.saturating_sub(u64::from(a.next_seq)) as f64 * PACKET;
                let queue = match self.kernel {
                    Kernel::StrataExactQueue => l.queue_bytes / drain,
                    _ => (anchor + since / drain - self.t).max(0.0),
                };
                (queue, !a.drain_lower_bound, queue * drain)
            });
            let (backlog, queue, evidence, seen) = match measured {
                Some((m, evidence, seen)) => (modelled.max(m), m, evidence, seen),
                None => (modelled, modelled, false, modelled * b.bytes_per_s as f64),
            };
            let eta = f64::from(b.delay_us) / 1e6 + queue + PACKET / b.bytes_per_s as f64;
            if backlog <= f64::from(b.backlog_limit_us) / 1e6 {
                if eta < within.0 {
                    within = (eta, i, evidence, seen);
                }
            } else if eta < any.0 {
                any = (eta, i, evidence, seen);
            }
        }
        let earliest = if within.0 < any.0 { within } else { any };
        if let Some(deadline) = self.drop_deadline
            && earliest.1 != usize::MAX
            && earliest.2
            && earliest.0 > deadline
        {
            return None;
        }
        let chosen = if within.1 != usize::MAX { within } else { any };
        let i = chosen.1;
        if i == usize::MAX {
            return Some(unbudgeted);
        }
        let rate = d.budgets[i].bytes_per_s as f64;
        let ceiling = self.t + 8.0 * f64::from(d.budgets[i].backlog_limit_us) / 1e6;
        let l = &mut self.links[i];
        l.sent += 1;
        if l.busy_until < ceiling {
            l.busy_until = l.busy_until.max(self.t) + PACKET / rate;
        }
        let expected_in_time = chosen.2 && self.drop_deadline.is_some_and(|d| chosen.0 <= d);
        Some(Choice { link: i, expected_in_time, seen_bytes: chosen.3 })
    }

    /// The lab's causal reference policy (see [`Kernel::Reference`]).
    fn choose_as_reference(&mut self, source: ReferenceRate) -> Option<Choice> {
        let mut best: Option<(f64, usize, f64, f64)> = None;
        for (i, l) in self.links.iter_mut().enumerate() {
            let rtt = 2.0 * l.base_ms / 1e3;
            let then = self.t - rtt;
            let ack = self.decision.as_ref().and_then(|d| d.budgets[i].ack);
            let rate = match source {
                ReferenceRate::Offered => l.offered_rate(then),
                ReferenceRate::Busy => l.busy_rate(then, 5).unwrap_or(l.reference_rate),
                // Where nothing waited lately, the controller's estimate
                // (trains, lower bounds): the receiver's accounting alone
                // cannot start (nothing queues at a rate priced too low).
                ReferenceRate::ReceiverBusy(_) => l
                    .receiver_busy_rate(then + l.base_ms / 1e3)
                    .or(ack.map(|a| a.drain_bytes_per_s as f64))
                    .unwrap_or(l.reference_rate),
                ReferenceRate::Controller => ack.map_or(0.0, |a| a.drain_bytes_per_s as f64),
            }
            .max(MIN_RATE);
            l.reference_rate = rate;
            let acked = (l.queued_total - l.delivered_by(then) - rate * rtt).max(0.0);
            let paced = (l.paced_until - self.t).max(0.0) * rate;
            let queue = acked.max(paced);
            let eta = l.base_ms / 1e3 + (queue + PACKET) / rate;
            if best.is_none_or(|b| eta < b.0) {
                best = Some((eta, i, rate, queue));
            }
        }
        let (eta, i, rate, seen_bytes) = best?;
        if eta > REFERENCE_SHARE * self.deadline {
            return None;
        }
        let l = &mut self.links[i];
        l.paced_until = l.paced_until.max(self.t) + PACKET / rate;
        l.sent += 1;
        Some(Choice { link: i, expected_in_time: true, seen_bytes })
    }

    /// Runs until `until` s, 1 ms steps.
    fn run_until(&mut self, until: f64) {
        while self.t < until {
            let ms = (self.t * 1000.0).round() as u64;
            let now = s(self.t);
            // The source: `offered` Mbit/s in 1250-byte packets.
            self.credit += self.offered * 1e6 / 8.0 / 1000.0;
            while self.credit >= PACKET {
                self.credit -= PACKET;
                let counted = self.t >= self.count_from;
                match self.choose() {
                    Some(Choice { link, expected_in_time, seen_bytes }) => {
                        let l = &mut self.links[link];
                        let queue_underseen = l.queue_bytes > 1.25 * seen_bytes;
                        l.queue_bytes += PACKET;
                        l.queued_total += PACKET;
                        l.queue.push_back(Queued {
                            at: self.t,
                            ends_at: l.queued_total,
                            expected_in_time,
                            queue_underseen,
                        });
                    }
                    None if counted => self.tally.shed += 1,
                    None => {}
                }
            }
            for (id, l) in self.links.iter_mut().enumerate() {
                // The link drains its queue at its capacity.
                let cap = (l.capacity)(self.t).max(0.0) * 1e6 / 8.0 / 1000.0;
                let out = l.queue_bytes.min(cap);
                l.busy_by_ms.push(l.queue_bytes > 0.0);
                l.queue_bytes -= out;
                l.delivered_total += out;
                l.delivered_by_ms.push(l.delivered_total);
                // The packets whose last byte left: (count, summed wait ms).
                let mut left = (0.0, 0.0);
                while l.queue.front().is_some_and(|p| p.ends_at <= l.delivered_total + 1e-6) {
                    let Some(p) = l.queue.pop_front() else { break };
                    let wait = self.t + 0.001 - p.at;
                    left.0 += 1.0;
                    left.1 += wait * 1e3;
                    let receiver = match self.kernel {
                        Kernel::StrataReceiverBusyRate(count)
                        | Kernel::Reference(ReferenceRate::ReceiverBusy(count)) => Some(count),
                        _ => self.hub_counts,
                    };
                    if let Some(ReceiverCount { jitter_ms, rule }) = receiver {
                        // What the receiver reads as waiting: the wait past
                        // the millisecond of service every packet takes here,
                        // plus jitter.
                        let jitter = half_normal(&mut self.rng) * jitter_ms / 1e3;
                        let arrival = self.t + 0.001 + l.base_ms / 1e3 + jitter;
                        let waited = wait - 0.001 + jitter;
                        let previous = l.receiver_busy_up_to;
                        l.receiver_busy_up_to = previous.max(arrival);
                        let span = match rule {
                            BusyRule::Waited { margin_ms } => {
                                (waited > margin_ms / 1e3).then(|| arrival - (arrival - waited).max(previous))
                            }
                            BusyRule::BehindPredecessor => {
                                (arrival - waited < previous).then_some(arrival - previous)
                            }
                        };
                        if let Some(span) = span {
                            let ms = (arrival * 1000.0) as usize;
                            if l.receiver_busy_by_ms.len() <= ms {
                                l.receiver_busy_by_ms.resize(ms + 1, (0.0, 0.0));
                            }
                            l.receiver_busy_by_ms[ms].0 += PACKET;
                            l.receiver_busy_by_ms[ms].1 += span.max(0.0);
                            l.receiver_queued.0 += PACKET;
                            l.receiver_queued.1 += span.max(0.0) * 1e6;
                        }
                    }
                    if p.at < self.count_from {
                        continue;
                    }
                    if wait + l.base_ms / 1e3 <= self.deadline {
                        self.tally.in_time += 1;
                    } else {
                        self.tally.late += 1;
                        self.tally.late_unforeseen += u64::from(p.expected_in_time);
                        self.tally.late_queue_underseen += u64::from(p.expected_in_time && p.queue_underseen);
                    }
                }
                let (wait_ms, packets) = if self.trace_delays {
                    // The delays its packets saw, and the age of the
                    // queue's head for a probe.
                    l.owd_sum_us += (left.0 * l.base_ms + left.1) * 1e3;
                    (l.queue.front().map_or(0.0, |p| (self.t - p.at) * 1e3), left.0)
                } else {
                    let wait_ms = if cap > 0.0 { l.queue_bytes / cap } else { 1000.0 };
                    let packets = out / PACKET;
                    l.owd_sum_us += packets * (l.base_ms + wait_ms) * 1e3;
                    (wait_ms, packets)
                };
                l.rx_packets += packets;
                l.rx_bytes += out;
                l.delivered += out;
                l.owd_count += packets;
                if ms.is_multiple_of(50) {
                    let p = |v: f64| v as u64;
                    let payload = FeedbackPayload {
                        rx_packets: p(l.rx_packets),
                        rx_bytes: p(l.rx_bytes),
                        lost: 0,
                        owd_sum_us: p(l.owd_sum_us) + p(l.owd_count) * OWD_BIAS_US as u64,
                        owd_count: p(l.owd_count),
                        late: 0,
                        // Packets leave the fluid queue in order: the
                        // sequence after the last whole one received.
                        next_seq: p(l.rx_packets),
                        // What the hub counted as queued by now (arrivals
                        // stamped up to a base delay after leaving).
                        queued_bytes: if self.hub_counts.is_some() { p(l.receiver_queued.0) } else { 0 },
                        queued_us: if self.hub_counts.is_some() { p(l.receiver_queued.1) } else { 0 },
                    };
                    // What left the bottleneck now reaches the hub a base
                    // delay later, and its feedback the edge another later.
                    l.in_flight.push((self.t + 2.0 * l.base_ms / 1e3, payload, (ms * 1000) as u32 | 1));
                    // A probe sent now comes back after a round trip plus the queue.
                    let rtt = 2.0 * l.base_ms + wait_ms;
                    self.controller.on_evidence(
                        now + s(rtt / 1e3),
                        Evidence::RoundTrip { link: id as u8, rtt: s(rtt / 1e3) },
                    );
                }
                let (due, later): (Vec<_>, Vec<_>) = l.in_flight.drain(..).partition(|f| f.0 <= self.t);
                l.in_flight = later;
                for (_, counters, hub_time_us) in due {
                    self.controller
                        .on_evidence(now, Evidence::Feedback { link: id as u8, counters, hub_time_us });
                }
            }
            if ms.is_multiple_of(20) {
                let sent: Vec<u64> = self.links.iter().map(|l| l.sent).collect();
                self.controller.on_sent(now, &sent);
                self.decision = Some(self.controller.tick(now));
            }
            self.t += 0.001;
        }
    }

    fn capacity_estimate(&self, id: usize) -> f64 {
        self.controller.report()[id].capacity_mbit_s.unwrap_or(0.0)
    }

    fn state(&self, id: usize) -> State {
        self.controller.states()[id].1
    }

    /// Mbit/s link `id` delivered since the last call over `secs`.
    fn take_delivered(&mut self, id: usize, secs: f64) -> f64 {
        std::mem::take(&mut self.links[id].delivered) * 8.0 / 1e6 / secs
    }

    /// The current queueing delay of link `id`, ms.
    fn queue_ms(&self, id: usize) -> f64 {
        let l = &self.links[id];
        l.queue_bytes / ((l.capacity)(self.t) * 1e6 / 8.0 / 1000.0)
    }
}

fn step(at: f64, before: f64, after: f64) -> Capacity {
    Box::new(move |t| if t < at { before } else { after })
}

#[test]
fn a_link_stepping_up_is_followed_within_a_second_and_a_half_while_carrying_data() {
    // Link 0, the fast one, steps 2 → 20 Mbit/s at 10 s; link 1 is slower
    // (60 ms) and has plenty. 20 Mbit/s are offered.
    let mut b = Bond::new(vec![(20.0, step(10.0, 2.0, 20.0)), (60.0, Box::new(|_| 40.0))], 20.0);
    b.run_until(10.0);
    assert_eq!(b.state(0), State::Live);
    assert!(b.capacity_estimate(0) < 4.0, "before the step: {}", b.capacity_estimate(0));
    b.run_until(11.0);
    b.take_delivered(0, 1.0);
    b.run_until(11.5);
    let carried = b.take_delivered(0, 0.5);
    let estimate = b.capacity_estimate(0);
    assert!(carried >= 0.8 * 20.0, "1.0-1.5 s after the step link 0 carried {carried:.1} Mbit/s of 20");
    assert!(estimate >= 16.0, "estimate {estimate:.1} 1.5 s after the step");
}

#[test]
fn a_link_stepping_down_is_followed_within_two_feedback_intervals() {
    let mut b = Bond::new(vec![(20.0, step(10.0, 20.0, 2.0)), (60.0, Box::new(|_| 40.0))], 20.0);
    b.run_until(10.0);
    assert_eq!(b.state(0), State::Live);
    assert!(b.capacity_estimate(0) > 14.0, "before the step: {}", b.capacity_estimate(0));
    // Two feedback intervals, plus the 20 ms the feedback takes to come back
    // and a tick.
    b.run_until(10.0 + 0.1 + 0.02 + 0.02);
    let estimate = b.capacity_estimate(0);
    assert!(estimate <= 4.0, "estimate {estimate:.1} Mbit/s two feedback intervals after 20 → 2");
    // What was sent into the old rate is still queued (20 Mbit/s for the
    // ~70 ms the first feedback takes to tell: half a second at 2 Mbit/s);
    // nothing is added to it once the feedback has told, and it drains.
    b.run_until(10.3);
    let mut last = b.queue_ms(0);
    while last > 100.0 {
        b.run_until(b.t + 0.01);
        let q = b.queue_ms(0);
        assert!(q <= last, "the queue grew from {last:.0} to {q:.0} ms at {:.2} s", b.t);
        last = q;
    }
    assert!(b.t <= 11.0, "queueing delay on link 0 above 100 ms until {:.2} s", b.t);
    while b.t < 12.0 {
        b.run_until(b.t + 0.01);
        assert!(b.queue_ms(0) <= 100.0, "{:.0} ms queued on link 0 at {:.2} s", b.queue_ms(0), b.t);
    }
}

#[test]
fn a_link_swinging_between_2_and_25_mbit_s_stays_live_and_carries() {
    // Link 0 swings every 700 ms between 2 and 25 Mbit/s (with 200 ms
    // stalls every 3 s); link 1 is steady. 15 Mbit/s are offered.
    let swing: Capacity = Box::new(|t: f64| {
        if t % 3.0 < 0.2 {
            0.0
        } else if ((t / 0.7) as u64).is_multiple_of(2) {
            25.0
        } else {
            2.0
        }
    });
    let mut b = Bond::new(vec![(30.0, swing), (50.0, Box::new(|_| 12.0))], 15.0);
    while b.state(0) != State::Live && b.t < 10.0 {
        b.run_until(b.t + 0.1);
    }
    assert_eq!(b.state(0), State::Live, "admitted within 10 s");
    b.run_until(10.0);
    b.take_delivered(0, 1.0);
    while b.t < 40.0 {
        b.run_until(b.t + 0.02);
        assert_eq!(b.state(0), State::Live, "at {:.2} s", b.t);
    }
    let carried = b.take_delivered(0, 30.0);
    assert!(carried > 4.0, "the variable link carried only {carried:.1} Mbit/s");
}

/// A link playing a mahimahi trace (each line a millisecond with one
/// 1500-byte delivery opportunity) from `offset_s` on, its opportunities
/// scaled by `scale`, looping.
fn trace_link(text: &str, offset_s: f64, scale: f64) -> Capacity {
    let stamps: Vec<usize> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let len = stamps.last().map_or(1, |&last| last + 1);
    let mut bytes_per_ms = vec![0.0f64; len];
    for ms in stamps {
        bytes_per_ms[ms] += 1500.0 * scale;
    }
    let offset = (offset_s * 1000.0) as usize;
    Box::new(move |t: f64| bytes_per_ms[((t.max(0.0) * 1000.0) as usize + offset) % len] * 8.0 / 1e3)
}

/// The controller and each [`Kernel`] on `real-links-70`'s links: the real
/// LTE trace beside the project at 0.6, 0.45 and 0.3 of its rate, 30, 40
/// and 50 ms away, 160 s apart in the trace, carrying 12 Mbit/s (70 % of
/// their mean) in 1250-byte packets with `drop_late` at 150 ms; 60 s
/// counted after 5 s of start-up, from 32 points 13.7 s apart in the trace.
/// `cargo test -p strata-ctl --release --lib real_trace_closed_loop -- --ignored --nocapture`
#[test]
#[ignore = "an experiment on the real trace (figures in docs/BENCHMARKS.md), ~90 s in release"]
fn real_trace_closed_loop() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/TMobile-LTE-driving.down");
    let Ok(trace) = std::fs::read_to_string(&path) else {
        eprintln!("{} is absent: nothing to play", path.display());
        return;
    };
    const LOAD_MBIT_S: f64 = 12.04;
    println!(
        "| simulated kernel | in time | late | of which unforeseen (queue underseen) | dropped as late |"
    );
    println!("|---|---|---|---|---|");
    let counted = Some(ReceiverCount { jitter_ms: 5.0, rule: BusyRule::BehindPredecessor });
    for (kernel, hub_counts) in [
        (Kernel::Strata, None),
        (Kernel::Strata, counted),
        (Kernel::Reference(ReferenceRate::Controller), counted),
    ]
    .into_iter()
    .chain(
        [
            Kernel::StrataExactQueue,
            Kernel::StrataBusyRate,
            Kernel::StrataReceiverBusyRate(ReceiverCount {
                jitter_ms: 0.0,
                rule: BusyRule::Waited { margin_ms: 2.0 },
            }),
            Kernel::StrataReceiverBusyRate(ReceiverCount {
                jitter_ms: 5.0,
                rule: BusyRule::Waited { margin_ms: 5.0 },
            }),
            Kernel::StrataReceiverBusyRate(ReceiverCount {
                jitter_ms: 5.0,
                rule: BusyRule::Waited { margin_ms: 10.0 },
            }),
            Kernel::StrataReceiverBusyRate(ReceiverCount {
                jitter_ms: 5.0,
                rule: BusyRule::BehindPredecessor,
            }),
            Kernel::Reference(ReferenceRate::Offered),
            Kernel::Reference(ReferenceRate::Busy),
            Kernel::Reference(ReferenceRate::ReceiverBusy(ReceiverCount {
                jitter_ms: 5.0,
                rule: BusyRule::Waited { margin_ms: 5.0 },
            })),
            Kernel::Reference(ReferenceRate::ReceiverBusy(ReceiverCount {
                jitter_ms: 5.0,
                rule: BusyRule::BehindPredecessor,
            })),
            Kernel::Reference(ReferenceRate::Controller),
        ]
        .into_iter()
        .map(|k| (k, None)),
    ) {
        let mut total = Tally::default();
        let mut handed_over = 0;
        for start in (0..32).map(|k| f64::from(k) * 13.7) {
            let links = vec![
                (30.0, trace_link(&trace, start, 0.6)),
                (40.0, trace_link(&trace, start + 160.0, 0.45)),
                (50.0, trace_link(&trace, start + 320.0, 0.3)),
            ];
            let mut b = Bond::new(links, LOAD_MBIT_S);
            b.kernel = kernel;
            b.hub_counts = hub_counts;
            b.drop_deadline = Some(0.15);
            b.trace_delays = true;
            b.count_from = 5.0;
            b.run_until(65.0);
            let Tally { in_time, late, late_unforeseen, late_queue_underseen, shed } = b.tally;
            total.in_time += in_time;
            total.late += late;
            total.late_unforeseen += late_unforeseen;
            total.late_queue_underseen += late_queue_underseen;
            total.shed += shed;
            handed_over += (60.0 * LOAD_MBIT_S * 1e6 / 8.0 / PACKET) as u64;
        }
        let pct = |n: u64| n as f64 / handed_over as f64 * 100.0;
        println!(
            "| {kernel:?}{} | {:.1} % | {:.1} % | {:.1} % ({:.1} %) | {:.1} % |",
            if hub_counts.is_some() { ", the hub's queued counts in feedback" } else { "" },
            pct(total.in_time),
            pct(total.late),
            pct(total.late_unforeseen),
            pct(total.late_queue_underseen),
            pct(total.shed)
        );
    }
}
