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
        estimator::{Feedback, LinkEstimator},
        lifecycle::{Lifecycle, State, Thresholds},
        scoring::{Decision, LinkView, ScoringConfig, decide},
    },
    probe::Evidence,
    schedule::Weights,
};

/// One link under control.
#[derive(Debug)]
struct Controlled {
    id: u8,
    weight: u32,
    estimator: LinkEstimator,
    lifecycle: Lifecycle,
    last_feedback: Option<FeedbackPayload>,
}

/// The controller's state.
#[derive(Debug)]
pub struct Controller {
    epoch: Instant,
    links: Vec<Controlled>,
    thresholds: Thresholds,
    scoring: ScoringConfig,
    last: Option<Weights>,
}

impl Controller {
    /// Links as `(id, configured weight)`; the configured weight stands in
    /// for capacity until capacity is measured.
    pub fn new(links: &[(u8, u32)]) -> Self {
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
                })
                .collect(),
            thresholds: Thresholds::default(),
            scoring: ScoringConfig::default(),
            last: None,
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// In-band evidence arrived: a round trip, or the hub's counters.
    pub fn on_evidence(&mut self, evidence: Evidence) {
        let now = self.now();
        match evidence {
            Evidence::RoundTrip { link, rtt } => {
                if let Some(l) = self.links.iter_mut().find(|l| l.id == link) {
                    l.estimator.on_probe_reply(now, rtt);
                }
            }
            Evidence::Feedback { link, counters } => {
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
                    l.last_feedback = Some(counters);
                    let FeedbackPayload { rx_packets, rx_bytes, lost, .. } = counters;
                    l.estimator.on_feedback(now, Feedback { rx_packets, rx_bytes, lost, owd_ms });
                }
            }
        }
    }

    /// One control step: lifecycles advance (every transition logged with
    /// its reason), then the scorer decides. Returns new weights if they changed.
    pub fn tick(&mut self) -> Option<Decision> {
        let now = self.now();
        let mut estimates = Vec::with_capacity(self.links.len());
        for l in &mut self.links {
            let est = l.estimator.estimate(now);
            if let Some(t) = l.lifecycle.step(now, &est, &self.thresholds) {
                info!(link = l.id, from = t.from.name(), to = t.to.name(), reason = ?t.reason, "link state");
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
            })
            .collect();
        let decision = decide(&views, &self.scoring);
        if self.last == Some(decision.weights) {
            return None;
        }
        self.last = Some(decision.weights);
        Some(decision)
    }

    /// State of each link, for summaries.
    pub fn states(&self) -> Vec<(u8, State)> {
        self.links.iter().map(|l| (l.id, l.lifecycle.state())).collect()
    }
}
