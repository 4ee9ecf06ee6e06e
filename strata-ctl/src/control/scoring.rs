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

use std::time::Duration;

use super::{estimator::Estimate, lifecycle::State};
use crate::control::schedule::Weights;

/// Scoring knobs.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoringConfig {
    /// Queueing delay beyond `backlog_limit_ms` that halves a link's score, ms.
    pub delay_half_ms: f64,
    /// Fraction of the measured capacity a link's budget allows.
    pub headroom: f64,
    /// Budget of a link in its probing interval (see [`LinkView::probing`]),
    /// as a multiple of its capacity; also the budget of a link with no
    /// capacity estimate, as a multiple of what it delivered: room to find
    /// out more.
    pub probe_gain: f64,
    /// Backlog a link's budget allows, ms of its own transmission time.
    pub backlog_limit_ms: f64,
    /// Delay added to a link's expected arrival per unit of recent loss, ms
    /// (0.05 loss → +25 ms at 500): clean links are preferred while they
    /// have room, without shrinking a lossy link's budget.
    pub loss_penalty_ms: f64,
    /// Largest weight handed to the kernel.
    pub weight_scale: u32,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        // Headroom below 1: a budget at the measured capacity kept the lab's
        // links at their buffer's edge (a measurement 3 % high is a queue
        // that never drains). 50 ms of backlog absorbs a video I-frame
        // burst on a 10 Mbit/s link.
        Self {
            delay_half_ms: 50.0,
            headroom: 0.9,
            // One feedback interval in eight at 1.5 × the estimate: a link
            // whose capacity doubled is found within a few cycles (×1.5 per
            // 400 ms on top of the spill-over room), while the queue one
            // probe can build on a link that has no more is 25 ms at most.
            probe_gain: 1.5,
            backlog_limit_ms: 50.0,
            loss_penalty_ms: 500.0,
            weight_scale: 100,
        }
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
    /// Heard from lately (not silent past the hold bound): a live link that
    /// is not carries nothing until it is, without being demoted.
    pub heard: bool,
    /// In its probing interval: its budget is raised by `probe_gain`, so
    /// that — if it has more capacity than estimated — it delivers more and
    /// the estimate follows (capacity is discovered while carrying data).
    pub probing: bool,
}

/// Budget above the capacity estimate of a link whose queue sits at its
/// floor: traffic that would otherwise queue elsewhere spills onto it, and
/// what it then delivers raises the estimate. Stops as soon as a queue shows.
/// 1.1, not 1.25: at 85 % load every link's queue touches its floor between
/// video bursts, and 1.25 on all of them at once sent the bursts in faster
/// than the links drain (lab, steady-asymmetric debug scenario test: 98.5 %
/// delivered, buffer drops on every link; 1.1: 98.8-99.5 %). The periodic
/// probe (`probe_gain`) does most of the upward discovery.
pub const SPILL_GAIN: f64 = 1.25;

/// A link's send budget, enforced per packet by the kernel (see
/// `strata_common::maps::LinkTx`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Rate the link may be sent at, bytes per second (0: no budget).
    pub bytes_per_s: u64,
    /// Expected one-way delay of the idle link, µs.
    pub delay_us: u32,
    /// Backlog allowed, µs of link time.
    pub backlog_limit_us: u32,
    /// The hub's acknowledgement, with which the kernel measures the link's
    /// backlog (see `strata_common::maps::LinkTx::ack_anchor_ns`).
    pub ack: Option<BudgetAck>,
}

/// An acknowledgement as the kernel uses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetAck {
    /// The link sequence after the highest the hub had received.
    pub next_seq: u32,
    /// When, on the controller's clock, the link had sent everything before
    /// `next_seq`: the acknowledgement's arrival less the base round trip
    /// (the last of those packets reached the hub one base one-way delay
    /// after the bottleneck sent it, and the feedback took about another
    /// back). A longer way back than the base round trip (a queue on the
    /// downlink) makes the acknowledgement look younger than it is, which
    /// overstates the backlog: the safe side.
    pub anchor: Duration,
    /// What the link drains at, bytes per second: its capacity estimate.
    pub drain_bytes_per_s: u64,
    /// The estimate is only a lower bound (the link was not seen busy
    /// lately), so the backlog it prices is an upper bound: evidence enough
    /// to steer away from the link, not to drop a packet as late.
    pub drain_lower_bound: bool,
}

/// What the kernel gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Per-link weights: the shares of the schedule, which the kernel uses
    /// where no link has a budget (and which disable the links without weight).
    pub weights: Weights,
    /// Per-link send budgets.
    pub budgets: [Budget; MAX_LINKS as usize],
}

fn capacity(v: &LinkView<'_>) -> f64 {
    let e = v.estimate;
    e.predicted_capacity_mbit_s.or(e.capacity_mbit_s).unwrap_or(v.nominal_mbit_s).max(0.0)
}

/// The rate a link may be sent at, Mbit/s: its (predicted) capacity where
/// estimated — more while probing or while its queue sits at its floor, less
/// (`headroom`) while a queue stands so that it drains; otherwise enough
/// above what it delivered, and at least its nominal capacity, that a
/// queue — and with it a measurement — can form if the link has less.
/// Loss does not enter the budget: what a link can be sent is its capacity
/// whatever it then loses, and shrinking lossy links' budgets pushed the
/// stream past the sum of them (lab, bursty-loss: p99 253 ms against 132 ms
/// with static weights). Loss lengthens the expected arrival instead.
fn budget_mbit_s(v: &LinkView<'_>, share: f64, cfg: &ScoringConfig) -> f64 {
    let e = v.estimate;
    let queue = e.queue_delay_now_ms.or(e.queue_delay_ms).filter(|q| q.is_finite()).unwrap_or(0.0);
    let rate = match e.capacity_mbit_s {
        Some(_) => {
            let gain = if queue > QUEUE_DRAIN_MS {
                cfg.headroom
            } else if v.probing {
                cfg.probe_gain
            } else if queue <= QUEUE_FLOOR_MS {
                SPILL_GAIN
            } else {
                1.0
            };
            capacity(v) * gain
        }
        None => v.nominal_mbit_s.max(e.delivered_mbit_s * cfg.probe_gain),
    };
    rate * share.clamp(0.0, 1.0)
}

/// Queueing delay at or below which a link counts as at its floor, ms.
const QUEUE_FLOOR_MS: f64 = super::rate::BUSY_QUEUE_MS;
/// Queueing delay above which a link's budget drains its queue, ms.
const QUEUE_DRAIN_MS: f64 = super::rate::CUT_QUEUE_MS;

/// Scores links into weights and budgets.
///
/// When no link's state lets it carry traffic, the links still heard from
/// are used at their full share rather than none: sending on doubtful links
/// loses less than sending nowhere.
pub fn decide(links: &[LinkView<'_>], cfg: &ScoringConfig) -> Decision {
    let valid = || links.iter().filter(|v| u32::from(v.id) < MAX_LINKS);
    let any_carrying = valid().any(|v| v.share > 0.0 && v.heard);
    let share = |v: &LinkView<'_>| match (any_carrying, v.heard) {
        (true, true) => v.share,
        // Silent past the hold bound: nothing until it is heard again.
        (true, false) => 0.0,
        (false, true) if !matches!(v.state, State::Gone | State::Cooldown | State::Init) => 1.0,
        (false, _) => 0.0,
    };
    let mut scores = [0.0f64; MAX_LINKS as usize];
    let mut budgets = [Budget::default(); MAX_LINKS as usize];
    for v in valid() {
        let e = v.estimate;
        let share = share(v);
        let queue = e.predicted_queue_delay_ms.or(e.queue_delay_ms).unwrap_or(0.0).max(0.0);
        // Queueing beyond the backlog the budget allows: the link carries
        // more than it drains (overload), so it weighs less.
        let excess = (queue - cfg.backlog_limit_ms).max(0.0);
        let delay_factor = 1.0 / (1.0 + excess / cfg.delay_half_ms.max(1e-3));
        let loss_factor = (1.0 - e.loss_recent).clamp(0.0, 1.0);
        let cap = capacity(v);
        let score = share.clamp(0.0, 1.0) * cap * delay_factor * loss_factor;
        let id = usize::from(v.id);
        scores[id] = if score.is_finite() { score } else { 0.0 };
        let rate = budget_mbit_s(v, share, cfg);
        if rate.is_finite() && rate > 0.0 {
            // Propagation plus the standing queue measured on the link. The
            // kernel adds its own backlog estimate on top; counting a queue
            // twice costs a little balance, while ignoring a real queue the
            // budget did not foresee (a rate measured high, a burst) kept
            // sending into it (lab: 200-490 ms on a 4 Mbit/s link).
            // The latest interval's queue: what a packet sent now waits
            // behind (a 1 s median lagged a stalled link by half a second).
            // With an acknowledgement the kernel measures the queue itself,
            // fresher than any one-way delay reading, and this would count
            // it twice.
            let ack = ack(e, capacity(v));
            let queue_ms = if ack.is_some() {
                0.0
            } else {
                e.queue_delay_now_ms.or(e.queue_delay_ms).filter(|q| q.is_finite()).unwrap_or(0.0).max(0.0)
            };
            let loss_ms = e.loss_recent.clamp(0.0, 1.0) * cfg.loss_penalty_ms;
            let one_way_ms = e.rtt_ms.map_or(0.0, |r| r[0] / 2.0) + queue_ms + loss_ms;
            budgets[id] = Budget {
                bytes_per_s: (rate * 1e6 / 8.0).max(1.0) as u64,
                delay_us: micros(one_way_ms),
                backlog_limit_us: micros(cfg.backlog_limit_ms),
                ack,
            };
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
        // Nothing is heard from: every link, equally, without budgets — a
        // guess loses nothing that sending nowhere would not.
        budgets = [Budget::default(); MAX_LINKS as usize];
        for v in valid() {
            weights[usize::from(v.id)] = 1;
        }
    }
    // A link without weight is disabled, so its budget means nothing.
    for (b, w) in budgets.iter_mut().zip(weights) {
        if w == 0 {
            *b = Budget::default();
        }
    }
    Decision { weights, budgets }
}

/// The estimate's acknowledgement as the kernel's budget takes it: anchored
/// at its arrival less the base round trip, which must be known, draining
/// at the link's capacity `capacity_mbit_s`.
fn ack(e: &Estimate, capacity_mbit_s: f64) -> Option<BudgetAck> {
    let a = e.ack?;
    let rtt_min = e.rtt_ms.map(|r| r[0]).filter(|r| r.is_finite() && *r >= 0.0)?;
    let anchor = a.at.saturating_sub(Duration::from_secs_f64((rtt_min / 1e3).min(3600.0)));
    let drain_bytes_per_s = (capacity_mbit_s * 1e6 / 8.0).clamp(0.0, 1e12) as u64;
    Some(BudgetAck {
        next_seq: a.next_seq,
        anchor,
        drain_bytes_per_s,
        drain_lower_bound: !e.capacity_current,
    })
}

/// Milliseconds as whole microseconds, saturating; NaN and negatives are 0.
fn micros(ms: f64) -> u32 {
    (ms * 1e3).clamp(0.0, f64::from(u32::MAX)) as u32
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
        LinkView {
            id,
            state,
            share,
            estimate: e,
            nominal_mbit_s: 5.0,
            heard: state != State::Gone,
            probing: false,
        }
    }

    #[test]
    fn capacity_and_delay_shape_the_weights() {
        let (a, b, c) = (est(20.0, 0.0, 0.0), est(10.0, 0.0, 0.0), est(20.0, 150.0, 0.0));
        let d = decide(
            &[view(0, State::Live, &a), view(1, State::Live, &b), view(2, State::Live, &c)],
            &ScoringConfig::default(),
        );
        // Link 2's 150 ms queue is 100 ms beyond the 50 ms backlog its budget allows.
        assert_eq!(d.weights[..3], [100, 50, 33], "a queued link counts for less than its capacity");
        assert_eq!(
            d.budgets[0].bytes_per_s,
            (20e6 / 8.0 * SPILL_GAIN) as u64,
            "a link at its queue's floor: room to spill over"
        );
        assert_eq!(d.budgets[0].backlog_limit_us, 50_000);
    }

    #[test]
    fn the_budget_probes_spills_and_drains() {
        let cfg = ScoringConfig::default();
        let budget = |queue_ms: f64, probing: bool| {
            let e = Estimate { queue_delay_now_ms: Some(queue_ms), ..est(10.0, queue_ms, 0.0) };
            let d = decide(&[LinkView { probing, ..view(0, State::Live, &e) }], &cfg);
            d.budgets[0].bytes_per_s as f64 * 8.0 / 1e6
        };
        assert!((budget(0.0, false) - 10.0 * SPILL_GAIN).abs() < 0.01, "at its floor: room to spill");
        assert!((budget(15.0, false) - 10.0).abs() < 0.01, "a small queue: its capacity");
        assert!((budget(15.0, true) - 15.0).abs() < 0.01, "probing: 1.5 × for one interval");
        assert!((budget(40.0, true) - 9.0).abs() < 0.01, "a standing queue drains, probing or not");
    }

    #[test]
    fn warm_links_get_a_small_share_and_dead_ones_none() {
        let (a, b) = (est(10.0, 0.0, 0.0), est(10.0, 0.0, 0.0));
        let d = decide(
            &[view(0, State::Live, &a), view(1, State::Warm, &b), view(2, State::Degraded, &a)],
            &ScoringConfig::default(),
        );
        assert_eq!(d.weights[..3], [100, 10, 0]);
        assert_eq!(
            d.budgets[1].bytes_per_s,
            d.budgets[0].bytes_per_s / 10,
            "a warm link is held to its share"
        );
        assert_eq!(d.budgets[2], Budget::default(), "a degraded link has no budget");
    }

    #[test]
    fn loss_delays_a_link_instead_of_shrinking_its_budget() {
        let rtt = Some([40.0, 45.0, 60.0, 70.0]);
        let clean = Estimate { rtt_ms: rtt, ..est(10.0, 0.0, 0.0) };
        let lossy = Estimate { rtt_ms: rtt, ..est(10.0, 0.0, 0.05) };
        let d =
            decide(&[view(0, State::Live, &clean), view(1, State::Live, &lossy)], &ScoringConfig::default());
        assert_eq!(d.budgets[0].bytes_per_s, d.budgets[1].bytes_per_s);
        assert_eq!(d.budgets[1].delay_us - d.budgets[0].delay_us, 25_000, "5 % loss: 25 ms later");
    }

    #[test]
    fn an_unmeasured_link_gets_room_above_what_it_delivered() {
        let e =
            Estimate { delivered_mbit_s: 8.0, rtt_ms: Some([40.0, 45.0, 60.0, 70.0]), ..Default::default() };
        let d = decide(&[view(0, State::Live, &e)], &ScoringConfig::default());
        assert_eq!(d.budgets[0].bytes_per_s, (8.0 * 1.5 * 1e6 / 8.0) as u64);
        assert_eq!(d.budgets[0].delay_us, 20_000, "half the smallest round trip");
        let idle = Estimate { delivered_mbit_s: 0.1, ..e };
        let d = decide(&[view(0, State::Live, &idle)], &ScoringConfig::default());
        assert_eq!(d.budgets[0].bytes_per_s, (5.0 * 1e6 / 8.0) as u64, "never below the nominal capacity");
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
    fn with_nothing_usable_the_heard_links_carry_by_capacity() {
        let (a, b) = (est(10.0, 0.0, 0.0), est(5.0, 0.0, 0.0));
        let d = decide(
            &[view(0, State::Degraded, &a), view(1, State::Gone, &a), view(2, State::Probe, &b)],
            &ScoringConfig::default(),
        );
        assert_eq!(d.weights[..3], [100, 0, 50]);
        assert!(d.budgets[0].bytes_per_s > 0 && d.budgets[1].bytes_per_s == 0);
        let silent = [LinkView { heard: false, ..view(0, State::Degraded, &a) }];
        let d = decide(&silent, &ScoringConfig::default());
        assert_eq!((d.weights[0], d.budgets[0]), (1, Budget::default()), "nothing heard: a guess");
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
