//! The adaptive controller: probes in, weights out.
//!
//! Glue between the pure link core (`crate::link`) and the data plane: round
//! trips and the hub's per-link feedback arrive from the probers, and every tick each link's estimate goes
//! through its lifecycle and the scorer, whose weights go to the kernel's
//! schedule. The kernel keeps forwarding with the last weights whatever
//! happens here (brief, principle 2).

use std::time::{Duration, Instant};

use strata_common::{maps::OWD_BIAS_US, wire::FeedbackPayload};
use tracing::info;

use crate::{
    link::{
        estimator::{Estimate, Feedback, LinkEstimator},
        lifecycle::{Lifecycle, State, Thresholds},
        scoring::{Decision, LinkView, ScoringConfig, decide},
    },
    probe::Evidence,
};

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
}

/// The controller's state.
#[derive(Debug)]
pub struct Controller {
    epoch: Instant,
    links: Vec<Controlled>,
    thresholds: Thresholds,
    scoring: ScoringConfig,
    last: Option<Decision>,
    /// The estimates of the last tick, for summaries.
    estimates: Vec<Estimate>,
    /// Packet trains: how often per link, at most (`None`: never).
    train_interval: Option<Duration>,
}

impl Controller {
    /// Links as `(id, configured weight)`; the configured weight stands in
    /// for capacity (Mbit/s) until capacity is measured.
    pub fn new(links: &[(u8, u32)], thresholds: Thresholds, scoring: ScoringConfig) -> Self {
        Self {
            epoch: Instant::now(),
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
                })
                .collect(),
            thresholds,
            scoring,
            last: None,
            estimates: Vec::new(),
            train_interval: None,
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// In-band evidence arrived: a round trip, or the hub's counters.
    pub fn on_evidence(&mut self, evidence: Evidence) {
        let now = self.now();
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
                    let FeedbackPayload { rx_packets, rx_bytes, lost, .. } = counters;
                    l.estimator
                        .on_feedback(now, Feedback { rx_packets, rx_bytes, lost, owd_ms, hub_elapsed });
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
    pub fn trains_due(&mut self) -> Vec<u8> {
        let Some(interval) = self.train_interval else { return Vec::new() };
        let now = self.now();
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

    /// The kernel's cumulative per-link overflow counters (packets sent on
    /// a link while every link was at its budget).
    pub fn on_overflow(&mut self, overflow: &[u64]) {
        let now = self.now();
        for l in &mut self.links {
            if let Some(&count) = overflow.get(usize::from(l.id)) {
                l.estimator.on_overflow(now, count);
            }
        }
    }

    /// One control step: lifecycles advance (every transition logged with
    /// its reason), then the scorer decides. Returns the decision if it
    /// changed (budgets follow the estimates, so nearly every tick).
    pub fn tick(&mut self) -> Option<Decision> {
        let now = self.now();
        let mut estimates = Vec::with_capacity(self.links.len());
        for l in &mut self.links {
            let est = l.estimator.estimate(now);
            if let Some(t) = l.lifecycle.step(now, &est, &self.thresholds) {
                info!(link = l.id, from = t.from.name(), to = t.to.name(), reason = ?t.reason, "link state");
                if t.to == State::Probe {
                    l.last_train = None;
                }
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
                share: l.lifecycle.share(),
                estimate: e,
                nominal_mbit_s: f64::from(l.weight),
                heard: e.silence.is_some_and(|s| s <= self.thresholds.silence_demote),
            })
            .collect();
        let decision = decide(&views, &self.scoring);
        self.estimates = estimates;
        if self.last.as_ref() == Some(&decision) {
            return None;
        }
        self.last = Some(decision.clone());
        Some(decision)
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
                "link {} {:<8} weight {:>3} budget {:>6.2} Mbit/s rtt p50 {} ms queue {} ms loss {:.2}% delivered {:.2} capacity {} train {} Mbit/s; ",
                l.id,
                l.lifecycle.state().name(),
                weight,
                budget,
                opt(e.rtt_ms.map(|r| r[1])),
                opt(e.queue_delay_ms),
                e.loss_recent * 100.0,
                e.delivered_mbit_s,
                opt(e.capacity_mbit_s),
                opt(e.train_mbit_s),
            ));
        }
        out
    }

    /// State of each link, for summaries.
    pub fn states(&self) -> Vec<(u8, State)> {
        self.links.iter().map(|l| (l.id, l.lifecycle.state())).collect()
    }
}
