//! From link states and estimates to the kernel's weights and send budgets.
//!
//! Latency consistency over throughput (brief, principle 3): a link's score
//! is what it can carry (the *predicted* capacity, so a link that is
//! collapsing loses weight before it loses packets), discounted by the
//! queueing delay predicted on it and by its recent loss, times the share its
//! lifecycle state allows. Weights are the scores scaled to integers; a send
//! budget caps each link at a fraction of its predicted capacity so the
//! kernel never pushes it into its own buffer.
//!
//! When no link may carry traffic, every link that is still heard from gets
//! an equal weight: sending on a doubtful link loses nothing that sending on
//! none would not.

use strata_common::maps::MAX_LINKS;

use super::{estimator::Estimate, lifecycle::State};
use crate::schedule::Weights;

/// Scoring knobs.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoringConfig {
    /// Queueing delay that halves a link's score, ms.
    pub delay_half_ms: f64,
    /// Fraction of predicted capacity a link's budget allows.
    pub headroom: f64,
    /// Largest weight handed to the kernel.
    pub weight_scale: u32,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self { delay_half_ms: 50.0, headroom: 0.9, weight_scale: 100 }
    }
}

/// One link as the scorer sees it.
#[derive(Clone, Debug)]
pub struct LinkView<'a> {
    /// Link id.
    pub id: u8,
    /// Lifecycle state.
    pub state: State,
    /// Share the state allows (see `Lifecycle::share`).
    pub share: f64,
    /// The latest estimate.
    pub estimate: &'a Estimate,
    /// Capacity to assume before any is measured, Mbit/s (from configuration).
    pub nominal_mbit_s: f64,
}

/// What the kernel gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Per-link weights.
    pub weights: Weights,
    /// Per-link budget in bytes per second (0: unlimited).
    pub budgets: [u64; MAX_LINKS as usize],
}

fn capacity(v: &LinkView<'_>) -> f64 {
    let e = v.estimate;
    e.predicted_capacity_mbit_s.or(e.capacity_mbit_s).unwrap_or(v.nominal_mbit_s).max(0.0)
}

/// Scores links into weights and budgets.
pub fn decide(links: &[LinkView<'_>], cfg: &ScoringConfig) -> Decision {
    let mut scores = [0.0f64; MAX_LINKS as usize];
    let mut budgets = [0u64; MAX_LINKS as usize];
    for v in links.iter().filter(|v| u32::from(v.id) < MAX_LINKS) {
        let e = v.estimate;
        let queue = e.predicted_queue_delay_ms.or(e.queue_delay_ms).unwrap_or(0.0).max(0.0);
        let delay_factor = 1.0 / (1.0 + queue / cfg.delay_half_ms.max(1e-3));
        let loss_factor = (1.0 - e.loss_recent).clamp(0.0, 1.0);
        let cap = capacity(v);
        let score = v.share.clamp(0.0, 1.0) * cap * delay_factor * loss_factor;
        scores[usize::from(v.id)] = if score.is_finite() { score } else { 0.0 };
        if e.capacity_mbit_s.is_some() {
            budgets[usize::from(v.id)] = (cap * 1e6 / 8.0 * cfg.headroom) as u64;
        }
    }
    let best = scores.iter().copied().fold(0.0, f64::max);
    let mut weights = [0u32; MAX_LINKS as usize];
    if best > 0.0 {
        for (w, s) in weights.iter_mut().zip(scores) {
            if s > 0.0 {
                *w = ((s / best * f64::from(cfg.weight_scale)).round() as u32).max(1);
            }
        }
    } else {
        // Nothing may carry traffic: spread over whatever is still heard
        // from, and if nothing is, over every link — a guess loses nothing
        // that sending nowhere would not.
        let valid = || links.iter().filter(|v| u32::from(v.id) < MAX_LINKS);
        for v in valid().filter(|v| !matches!(v.state, State::Gone | State::Cooldown | State::Init)) {
            weights[usize::from(v.id)] = 1;
        }
        if weights.iter().all(|&w| w == 0) {
            for v in valid() {
                weights[usize::from(v.id)] = 1;
            }
        }
    }
    Decision { weights, budgets }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(cap: f64, queue_ms: f64, loss: f64) -> Estimate {
        Estimate {
            capacity_mbit_s: Some(cap),
            predicted_capacity_mbit_s: Some(cap),
            queue_delay_ms: Some(queue_ms),
            predicted_queue_delay_ms: Some(queue_ms),
            loss_recent: loss,
            ..Default::default()
        }
    }

    fn view(id: u8, state: State, e: &Estimate) -> LinkView<'_> {
        let share = match state {
            State::Live => 1.0,
            State::Warm => 0.1,
            _ => 0.0,
        };
        LinkView { id, state, share, estimate: e, nominal_mbit_s: 5.0 }
    }

    #[test]
    fn capacity_and_delay_shape_the_weights() {
        let (a, b, c) = (est(20.0, 0.0, 0.0), est(10.0, 0.0, 0.0), est(20.0, 150.0, 0.0));
        let d = decide(
            &[view(0, State::Live, &a), view(1, State::Live, &b), view(2, State::Live, &c)],
            &ScoringConfig::default(),
        );
        assert_eq!(d.weights[..3], [100, 50, 25], "a queued link counts for less than its capacity");
        assert_eq!(d.budgets[0], (20e6 / 8.0 * 0.9) as u64);
    }

    #[test]
    fn warm_links_get_a_small_share_and_dead_ones_none() {
        let (a, b) = (est(10.0, 0.0, 0.0), est(10.0, 0.0, 0.0));
        let d = decide(
            &[view(0, State::Live, &a), view(1, State::Warm, &b), view(2, State::Degraded, &a)],
            &ScoringConfig::default(),
        );
        assert_eq!(d.weights[..3], [100, 10, 0]);
    }

    #[test]
    fn a_collapsing_link_loses_weight_before_it_loses_packets() {
        let steady = est(10.0, 0.0, 0.0);
        let collapsing =
            Estimate { predicted_capacity_mbit_s: Some(4.0), collapsing: true, ..est(10.0, 0.0, 0.0) };
        let d = decide(
            &[view(0, State::Live, &steady), view(1, State::Live, &collapsing)],
            &ScoringConfig::default(),
        );
        assert_eq!(d.weights[..2], [100, 40]);
    }

    #[test]
    fn with_nothing_usable_every_heard_link_gets_a_little() {
        let e = est(10.0, 0.0, 0.0);
        let d = decide(
            &[view(0, State::Degraded, &e), view(1, State::Gone, &e), view(2, State::Probe, &e)],
            &ScoringConfig::default(),
        );
        assert_eq!(d.weights[..3], [1, 0, 1]);
    }

    #[test]
    fn absurd_estimates_do_not_poison_the_weights() {
        let bad = Estimate { predicted_capacity_mbit_s: Some(f64::INFINITY), ..est(10.0, f64::NAN, 2.0) };
        let good = est(10.0, 0.0, 0.0);
        let d = decide(
            &[view(0, State::Live, &bad), view(1, State::Live, &good), view(9, State::Live, &good)],
            &ScoringConfig::default(),
        );
        assert!(d.weights.iter().all(|&w| w <= 100));
        assert_eq!(d.weights[1], 100);
    }
}
