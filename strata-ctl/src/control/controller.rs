//! The adaptive controller: probes in, weights out.
//!
//! It joins the per-link pieces of [`crate::control`]: round trips,
//! packet-train rates and the hub's per-link feedback arrive as
//! [`Evidence`], the kernel's overflow counters as a slice, and every tick
//! each link's estimate goes through its lifecycle and the scorer, whose
//! weights and budgets the daemon writes to the kernel. What it did that an
//! operator should see (state changes, cautions) it returns as
//! [`ControlEvent`]s instead of logging. No I/O and no clock of its own: every call
//! takes `now`, so tests drive it on simulated time (jumps included). The
//! kernel keeps forwarding with the last decision whatever happens here
//! (brief, principle 2).

use std::time::Duration;

use strata_common::{maps::OWD_BIAS_US, wire::FeedbackPayload};

use crate::{
    control::evidence::Evidence,
    control::{
        estimator::{Estimate, Feedback, LinkEstimator},
        fit::{self, Fit, FitConfig, LinkInput},
        lifecycle::{Lifecycle, State, Thresholds, Transition},
        scoring::{Decision, LinkView, ScoringConfig, decide},
    },
};

/// What in-band measurement knows of a link; `None` until measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Behaviour {
    /// Measured capacity, Mbit/s.
    pub capacity_mbps: Option<f64>,
    /// Base (minimum) round trip, ms.
    pub base_rtt_ms: Option<f64>,
    /// Jitter: p95 − p50 of the round trip, ms.
    pub jitter_ms: Option<f64>,
    /// Loss ratio, 0..1.
    pub loss_ratio: Option<f64>,
    /// Burstiness of loss (mean loss run length), ≥ 1 when losses occur.
    pub loss_burstiness: Option<f64>,
    /// Share of packets arriving out of order, 0..1.
    pub reorder_ratio: Option<f64>,
}

/// What the controller knows of one link, for metrics and status.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LinkReport {
    /// Link id.
    pub id: u8,
    /// Lifecycle state name.
    pub state: &'static str,
    /// Weight in the kernel's schedule.
    pub weight: u32,
    /// Send budget, bytes per second (0: none).
    pub budget_bytes_per_s: u64,
    /// Round trip, ms: minimum, p50, p95, p99.
    pub rtt_ms: Option<[f64; 4]>,
    /// Queueing delay (one-way, above the window minimum), ms: p50 and p95.
    pub queue_ms: Option<[f64; 2]>,
    /// Round-trip jitter (p95 − p50), ms.
    pub jitter_ms: Option<f64>,
    /// Recent loss ratio.
    pub loss: f64,
    /// Out-of-order share of received packets.
    pub reordering: f64,
    /// Delivered rate, Mbit/s.
    pub delivered_mbit_s: f64,
    /// Capacity estimate, Mbit/s.
    pub capacity_mbit_s: Option<f64>,
    /// Lifecycle transitions into each state so far, by state name.
    pub transitions: std::collections::BTreeMap<&'static str, u64>,
}

/// One link under control.
#[derive(Debug)]
struct Controlled {
    id: u8,
    weight: u32,
    estimator: LinkEstimator,
    lifecycle: Lifecycle,
    last_feedback: Option<FeedbackPayload>,
    last_hub_time_us: Option<u32>,
    /// When a packet train was last asked for.
    last_train: Option<Duration>,
    /// Transitions into each state so far.
    transitions: std::collections::BTreeMap<&'static str, u64>,
    /// Until then the link's share is halved: its modem warned of a
    /// handover or a signal collapse.
    caution_until: Option<Duration>,
}

/// How long a modem's early warning (handover, signal collapse) halves a
/// link's share: a handover interrupts an LTE link for tens to a couple of
/// hundred milliseconds, and the new cell's delay regime shows in probes
/// within a second.
pub const CAUTION_FOR: Duration = Duration::from_secs(1);

/// Something the controller did that the daemon should tell the operator:
/// the controller itself does no logging (it is pure), it hands these over
/// through [`Controller::drain_events`].
#[derive(Clone, Debug, PartialEq)]
pub enum ControlEvent {
    /// A link changed lifecycle state.
    State {
        /// Link id.
        link: u8,
        /// From, to, and why.
        transition: Transition,
    },
    /// A modem's early warning halved a link's share for [`CAUTION_FOR`].
    Caution {
        /// Link id.
        link: u8,
        /// The warning.
        what: &'static str,
    },
}

/// The controller's state.
#[derive(Debug)]
pub struct Controller {
    /// What happened since the daemon last asked.
    events: Vec<ControlEvent>,
    links: Vec<Controlled>,
    thresholds: Thresholds,
    scoring: ScoringConfig,
    last: Option<Decision>,
    /// The estimates of the last tick, for summaries.
    estimates: Vec<Estimate>,
    /// Packet trains: how often per link, at most (`None`: never).
    train_interval: Option<Duration>,
}

/// How often each link's budget is raised to probe for more capacity, and
/// for how long (one feedback interval). Links take turns, a third of a
/// cycle apart, so the bond is never probing everywhere at once.
pub const PROBE_CYCLE: Duration = Duration::from_millis(400);
/// See [`PROBE_CYCLE`].
pub const PROBE_FOR: Duration = Duration::from_millis(50);

/// Whether link `id` is in its probing interval at `now`.
fn probing(now: Duration, id: u8) -> bool {
    let cycle = PROBE_CYCLE.as_millis() as u64;
    let offset = u64::from(id) * cycle / 3;
    (now.as_millis() as u64 + cycle - offset % cycle) % cycle < PROBE_FOR.as_millis() as u64
}

impl Controller {
    /// Links as `(id, configured weight)`; the configured weight stands in
    /// for capacity (Mbit/s) until capacity is measured.
    pub fn new(links: &[(u8, u32)], thresholds: Thresholds, scoring: ScoringConfig) -> Self {
        Self {
            events: Vec::new(),
            links: links
                .iter()
                .map(|&(id, weight)| Controlled {
                    id,
                    weight,
                    estimator: LinkEstimator::new(),
                    lifecycle: Lifecycle::new(),
                    last_feedback: None,
                    last_hub_time_us: None,
                    last_train: None,
                    transitions: std::collections::BTreeMap::new(),
                    caution_until: None,
                })
                .collect(),
            thresholds,
            scoring,
            last: None,
            estimates: Vec::new(),
            train_interval: None,
        }
    }

    /// In-band evidence arrived: a round trip, or the hub's counters.
    pub fn on_evidence(&mut self, now: Duration, evidence: Evidence) {
        match evidence {
            Evidence::Train { link, mbit_s } => {
                if let Some(l) = self.links.iter_mut().find(|l| l.id == link) {
                    l.estimator.on_train(now, mbit_s);
                }
            }
            Evidence::RoundTrip { link, rtt } => {
                if let Some(l) = self.links.iter_mut().find(|l| l.id == link) {
                    l.estimator.on_probe_reply(now, rtt);
                }
            }
            Evidence::Feedback { link, counters, hub_time_us } => {
                if let Some(l) = self.links.iter_mut().find(|l| l.id == link) {
                    // The mean one-way delay of the packets since the last feedback.
                    let owd_ms = match l.last_feedback {
                        Some(prev)
                            if counters.owd_count > prev.owd_count
                                && counters.owd_sum_us >= prev.owd_sum_us =>
                        {
                            let mean_us = (counters.owd_sum_us - prev.owd_sum_us) as f64
                                / (counters.owd_count - prev.owd_count) as f64;
                            vec![(mean_us - OWD_BIAS_US as f64) / 1e3]
                        }
                        _ => Vec::new(),
                    };
                    let hub_elapsed = match l.last_hub_time_us {
                        Some(prev) if prev != 0 && hub_time_us != 0 => {
                            Some(Duration::from_micros(u64::from(hub_time_us.wrapping_sub(prev))))
                        }
                        _ => None,
                    };
                    l.last_feedback = Some(counters);
                    l.last_hub_time_us = Some(hub_time_us);
                    let FeedbackPayload {
                        rx_packets,
                        rx_bytes,
                        lost,
                        late,
                        next_seq,
                        queued_bytes,
                        queued_us,
                        ..
                    } = counters;
                    l.estimator.on_feedback(
                        now,
                        Feedback {
                            rx_packets,
                            rx_bytes,
                            lost,
                            late,
                            owd_ms,
                            hub_elapsed,
                            next_seq,
                            queued_bytes,
                            queued_us,
                        },
                    );
                }
            }
        }
    }

    /// Asks for packet trains at most every `interval` per link.
    pub fn with_trains(mut self, interval: Duration) -> Self {
        self.train_interval = Some(interval).filter(|i| !i.is_zero());
        self
    }

    /// Links that should send a packet train now: a link being probed or
    /// warming up (its capacity before it carries traffic), or one carrying
    /// nothing (no passive measurement possible) — each at most once per
    /// train interval. A link that enters *probe* asks at once.
    pub fn trains_due(&mut self, now: Duration) -> Vec<u8> {
        let Some(interval) = self.train_interval else { return Vec::new() };
        let mut due = Vec::new();
        for (i, l) in self.links.iter_mut().enumerate() {
            let idle = self.estimates.get(i).is_some_and(|e| e.delivered_mbit_s <= 0.0);
            let wanted = matches!(l.lifecycle.state(), State::Probe | State::Warm)
                || (idle && matches!(l.lifecycle.state(), State::Live | State::Degraded));
            if wanted && l.last_train.is_none_or(|t| now.saturating_sub(t) >= interval) {
                l.last_train = Some(now);
                due.push(l.id);
            }
        }
        due
    }

    /// The kernel's next sequence per link (indexed by link id): packets
    /// sent on each so far (see [`LinkEstimator::on_sent`]).
    pub fn on_sent(&mut self, now: Duration, next_seq: &[u64]) {
        for l in &mut self.links {
            if let Some(&seq) = next_seq.get(usize::from(l.id)) {
                // The low 32 bits: the sequence the wire and the hub's acknowledgements carry.
                l.estimator.on_sent(now, seq as u32);
            }
        }
    }

    /// The kernel's cumulative per-link overflow counters (packets sent on
    /// a link while every link was at its budget).
    pub fn on_overflow(&mut self, now: Duration, overflow: &[u64]) {
        for l in &mut self.links {
            if let Some(&count) = overflow.get(usize::from(l.id)) {
                l.estimator.on_overflow(now, count);
            }
        }
    }

    /// One control step: lifecycles advance (every transition logged with
    /// its reason), then the scorer decides. The decision is returned every
    /// tick, changed or not, and written every tick: the kernel's copy is
    /// refreshed at the control rate whatever happened to it in between.
    pub fn tick(&mut self, now: Duration) -> Decision {
        let mut estimates = Vec::with_capacity(self.links.len());
        for l in &mut self.links {
            let est = l.estimator.estimate(now);
            if let Some(t) = l.lifecycle.step(now, &est, &self.thresholds) {
                *l.transitions.entry(t.to.name()).or_default() += 1;
                if t.to == State::Probe {
                    l.last_train = None;
                }
                self.events.push(ControlEvent::State { link: l.id, transition: t });
            }
            estimates.push(est);
        }
        let views: Vec<LinkView<'_>> = self
            .links
            .iter()
            .zip(&estimates)
            .filter(|(l, _)| l.weight > 0)
            .map(|(l, e)| LinkView {
                id: l.id,
                state: l.lifecycle.state(),
                share: l.lifecycle.share() * if l.caution_until.is_some_and(|t| now < t) { 0.5 } else { 1.0 },
                estimate: e,
                nominal_mbit_s: f64::from(l.weight),
                heard: e.silence.is_some_and(|s| s <= self.thresholds.silence_hold),
                probing: probing(now, l.id),
            })
            .collect();
        let decision = decide(&views, &self.scoring);
        self.estimates = estimates;
        self.last = Some(decision.clone());
        decision
    }

    /// An operating-system hint that link `id` lost its carrier, interface
    /// or address: a carrying link is demoted now (see
    /// [`Lifecycle::on_os_loss`]).
    pub fn on_os_loss(&mut self, now: Duration, id: u8, what: &'static str) {
        if let Some(l) = self.links.iter_mut().find(|l| l.id == id)
            && let Some(t) = l.lifecycle.on_os_loss(now, what)
        {
            *l.transitions.entry(t.to.name()).or_default() += 1;
            self.events.push(ControlEvent::State { link: l.id, transition: t });
        }
    }

    /// An operating-system hint that link `id` is back: a link out of
    /// service is probed now (see [`Lifecycle::on_os_return`]), on a path
    /// measured afresh from this moment — also when a later sign (the
    /// carrier after the interface) comes while it is already probing. A
    /// carrying link ignores it (netlink repeats "up, carrier" with every
    /// change of an interface).
    pub fn on_os_return(&mut self, now: Duration, id: u8, what: &'static str) {
        let Some(l) = self.links.iter_mut().find(|l| l.id == id) else { return };
        if matches!(l.lifecycle.state(), State::Warm | State::Live) {
            return;
        }
        if let Some(t) = l.lifecycle.on_os_return(now, what) {
            *l.transitions.entry(t.to.name()).or_default() += 1;
            l.last_train = None;
            self.events.push(ControlEvent::State { link: l.id, transition: t });
        }
        l.estimator.on_path_reset(now);
    }

    /// Link `id`'s modem warned (handover, signal collapse): its share is
    /// halved for [`CAUTION_FOR`], so less is in flight on it if the
    /// warning comes true; nothing else changes (the in-band checks decide
    /// whether it is demoted).
    pub fn on_caution(&mut self, now: Duration, id: u8, what: &'static str) {
        if let Some(l) = self.links.iter_mut().find(|l| l.id == id) {
            l.caution_until = Some(now + CAUTION_FOR);
            self.events.push(ControlEvent::Caution { link: l.id, what });
        }
    }

    /// What happened since the last call (state changes, cautions), oldest
    /// first, for the daemon to log.
    pub fn drain_events(&mut self) -> Vec<ControlEvent> {
        std::mem::take(&mut self.events)
    }

    /// What in-band measurement knows of each link, for inferring its kind.
    pub fn behaviours(&self) -> Vec<(u8, Behaviour)> {
        self.links
            .iter()
            .zip(&self.estimates)
            .map(|(l, e)| {
                (
                    l.id,
                    Behaviour {
                        capacity_mbps: e.capacity_mbit_s.or(e.train_mbit_s),
                        base_rtt_ms: e.rtt_ms.map(|r| r[0]),
                        jitter_ms: e.jitter_ms,
                        loss_ratio: Some(e.loss),
                        loss_burstiness: (e.loss > 0.0).then_some(e.burstiness),
                        reorder_ratio: Some(e.reordering),
                    },
                )
            })
            .collect()
    }

    /// Link `id` was re-bound to a new address (see
    /// [`LinkEstimator::on_rebound`]).
    pub fn on_rebound(&mut self, now: Duration, id: u8) {
        if let Some(l) = self.links.iter_mut().find(|l| l.id == id) {
            l.estimator.on_rebound(now);
        }
    }

    /// Links silent for over half the hold bound at the last tick: the
    /// in-band sign that something may have changed under them (address,
    /// interface). Half, so that a link re-bound in band is heard again
    /// before its 300 ms demotion bound: at the full hold bound, answers
    /// came 280 ms into the silence on an idle host and 306 ms on a loaded
    /// one (lab, ip-change at os_signals none), which demoted the link.
    pub fn silent_links(&self) -> Vec<u8> {
        self.links
            .iter()
            .zip(&self.estimates)
            .filter(|(_, e)| e.silence.is_none_or(|s| s > self.thresholds.silence_hold / 2))
            .map(|(l, _)| l.id)
            .collect()
    }

    /// Every link as the last tick left it.
    pub fn report(&self) -> Vec<LinkReport> {
        self.links
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let id = usize::from(l.id);
                let e = self.estimates.get(i).cloned().unwrap_or_default();
                let (weight, budget_bytes_per_s) =
                    self.last.as_ref().map_or((0, 0), |d| (d.weights[id], d.budgets[id].bytes_per_s));
                LinkReport {
                    id: l.id,
                    state: l.lifecycle.state().name(),
                    weight,
                    budget_bytes_per_s,
                    rtt_ms: e.rtt_ms,
                    queue_ms: e.queue_delay_ms.zip(e.queue_delay_p95_ms).map(|(a, b)| [a, b]),
                    jitter_ms: e.jitter_ms,
                    loss: e.loss_recent,
                    reordering: e.reordering,
                    delivered_mbit_s: e.delivered_mbit_s,
                    capacity_mbit_s: e.capacity_mbit_s,
                    transitions: l.transitions.clone(),
                }
            })
            .collect()
    }

    /// One line per link for the 1 Hz summary: state, weight, budget, round
    /// trip, queueing delay, loss, delivered rate and capacity.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (i, l) in self.links.iter().enumerate() {
            let id = usize::from(l.id);
            let (weight, budget) = self
                .last
                .as_ref()
                .map_or((0, 0.0), |d| (d.weights[id], d.budgets[id].bytes_per_s as f64 * 8.0 / 1e6));
            let e = self.estimates.get(i).cloned().unwrap_or_default();
            let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
            out.push_str(&format!(
                "link {} {:<8} weight {:>3} budget {:>6.2} Mbit/s rtt p50 {} ms jitter {} ms queue {} ms loss {:.2}% delivered {:.2} capacity {}{} train {} Mbit/s rtt min {} ms{}; ",
                l.id,
                l.lifecycle.state().name(),
                weight,
                budget,
                opt(e.rtt_ms.map(|r| r[1])),
                opt(e.jitter_ms),
                opt(e.queue_delay_ms),
                e.loss_recent * 100.0,
                e.delivered_mbit_s,
                opt(e.capacity_mbit_s),
                // Whether the kernel may drop as late on this link's
                // backlog: measured (acknowledged) at a current rate.
                if e.capacity_current { "" } else { " (lower bound)" },
                opt(e.train_mbit_s),
                opt(e.rtt_ms.map(|r| r[0])),
                if e.ack.is_some() { "" } else { " unacknowledged" },
            ));
        }
        out
    }

    /// What the bond can carry within `cfg.deadline`, from the estimates of
    /// the last tick (see [`fit`]): each link configured to carry traffic,
    /// at the share its lifecycle allows (halved under a modem's caution,
    /// none while silent past the hold bound), as the scorer sees it.
    pub fn fit(&self, now: Duration, cfg: &FitConfig) -> Fit {
        let inputs: Vec<LinkInput> = self
            .links
            .iter()
            .zip(&self.estimates)
            .filter(|(l, _)| l.weight > 0)
            .map(|(l, e)| {
                let heard = e.silence.is_some_and(|s| s <= self.thresholds.silence_hold);
                let caution = if l.caution_until.is_some_and(|t| now < t) { 0.5 } else { 1.0 };
                let share = if heard { l.lifecycle.share() * caution } else { 0.0 };
                LinkInput::from_estimate(l.id, share, e)
            })
            .collect();
        fit::fit(&inputs, cfg)
    }

    /// State of each link, for summaries.
    pub fn states(&self) -> Vec<(u8, State)> {
        self.links.iter().map(|l| (l.id, l.lifecycle.state())).collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use strata_common::{maps::MAX_LINKS, wire::FeedbackPayload};

    use super::*;
    use crate::control::schedule;

    /// One thing that can happen to the controller.
    #[derive(Clone, Debug)]
    enum Input {
        /// The clock moves by this many ms (negative: it jumps back).
        Clock(i64),
        RoundTrip(u8, u64),
        Train(u8, f64),
        Feedback(u8, [u64; 5], u32),
        Overflow([u64; 8]),
        Tick,
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            (-5_000i64..60_000).prop_map(Input::Clock),
            (0u8..10, prop_oneof![0u64..2_000_000, Just(u64::MAX)])
                .prop_map(|(l, us)| Input::RoundTrip(l, us)),
            (0u8..10, prop_oneof![any::<f64>(), 0.1f64..1000.0]).prop_map(|(l, r)| Input::Train(l, r)),
            (0u8..10, any::<[u64; 5]>(), any::<u32>()).prop_map(|(l, c, t)| Input::Feedback(l, c, t)),
            any::<[u64; 8]>().prop_map(Input::Overflow),
            Just(Input::Tick),
            Just(Input::Tick),
        ]
    }

    proptest! {
        /// Hostile evidence, absurd values, a clock that jumps both ways:
        /// the controller never panics, and every decision is one the kernel
        /// can take — bounded weights, a schedule, finite budgets only on
        /// links with weight.
        #[test]
        fn any_evidence_yields_a_valid_decision(inputs in prop::collection::vec(input(), 1..300)) {
            let mut c = Controller::new(&[(0, 10), (1, 5), (2, 0)], Thresholds::default(), ScoringConfig::default())
                .with_trains(Duration::from_secs(5));
            let mut now = Duration::from_secs(100);
            for i in inputs {
                match i {
                    Input::Clock(ms) if ms >= 0 => now += Duration::from_millis(ms as u64),
                    Input::Clock(ms) => now = now.saturating_sub(Duration::from_millis(ms.unsigned_abs())),
                    Input::RoundTrip(link, us) => {
                        c.on_evidence(now, Evidence::RoundTrip { link, rtt: Duration::from_micros(us) })
                    }
                    Input::Train(link, mbit_s) => c.on_evidence(now, Evidence::Train { link, mbit_s }),
                    Input::Feedback(link, [rx_packets, rx_bytes, lost, owd_sum_us, owd_count], hub_time_us) => {
                        let counters = FeedbackPayload { rx_packets, rx_bytes, lost, owd_sum_us, owd_count, late: lost / 3, ..FeedbackPayload::default() };
                        c.on_evidence(now, Evidence::Feedback { link, counters, hub_time_us })
                    }
                    Input::Overflow(o) => c.on_overflow(now, &o),
                    Input::Tick => {
                        let _ = c.trains_due(now);
                        {
                            let d = c.tick(now);
                            prop_assert!(d.weights.iter().all(|&w| w <= 100));
                            prop_assert!(d.weights.iter().any(|&w| w > 0), "never an empty schedule");
                            prop_assert_eq!(d.weights[2], 0, "a link configured off stays off");
                            prop_assert!(schedule::build(&d.weights).len > 0);
                            for (b, w) in d.budgets.iter().zip(d.weights) {
                                prop_assert!(w > 0 || b.bytes_per_s == 0);
                            }
                            prop_assert_eq!(d.budgets.len(), MAX_LINKS as usize);
                        }
                        let _ = c.summary();
                    }
                }
            }
        }
    }

    #[test]
    fn a_silent_link_loses_its_weight_within_the_hold_bound() {
        let mut c = Controller::new(&[(0, 10), (1, 10)], Thresholds::default(), ScoringConfig::default());
        let ms = Duration::from_millis;
        let mut last = None;
        // Both links answer every 50 ms for 4 s: admitted through warm to live.
        for t in (0..4000).step_by(50) {
            for link in [0, 1] {
                c.on_evidence(ms(t), Evidence::RoundTrip { link, rtt: ms(40) });
            }
            last = Some(c.tick(ms(t)));
        }
        assert!(last.as_ref().is_some_and(|d| d.weights[0] > 0 && d.weights[1] > 0), "{last:?}");
        // Link 0 goes dark at 4 s; ticks every 20 ms.
        let mut off_at = None;
        for t in (4000..4400).step_by(20) {
            if t % 50 == 0 {
                c.on_evidence(ms(t), Evidence::RoundTrip { link: 1, rtt: ms(40) });
            }
            if c.tick(ms(t)).weights[0] == 0 && off_at.is_none() {
                off_at = Some(t);
            }
        }
        let off_at = off_at.expect("link 0 never lost its weight");
        assert!(off_at - 3950 <= 100 + 20, "weight 0 at {off_at} ms, last heard at 3950 ms");
    }
}
