//! What fits: the bitrate the bond can carry within the deadline.
//!
//! A live encoder adapts its bitrate; what it needs from the bond is one
//! number — how many bits per second it can send so that they still arrive
//! within the one-way delay budget (`[control] deadline_ms`). This module
//! computes that number, now and [`PREDICTION_HORIZON`] ahead ("the next
//! second"), from what the controller already estimates of each link.
//!
//! A link adds to the sum only if it may carry traffic (its lifecycle share
//! is above 0 and it is heard from), its capacity is measured, and a packet
//! sent on it now arrives in time: its base one-way delay (half the smallest
//! round trip) plus the queue standing on it (median one-way delay above its
//! floor) is within the deadline. A link past the deadline contributes
//! nothing, not a fraction: anything sent on it now is late, however fast it
//! drains. What a counted link adds is
//!
//! ```text
//! capacity × share × headroom × (1 − recent loss) × payload share
//! ```
//!
//! * `share`: what its lifecycle lets it carry (a warming link 10-50 %);
//! * `headroom`: the scorer's — the kernel's send budget on the link is
//!   `headroom × capacity`, so more than that queues on the host or goes to
//!   another link as overflow (`[control] headroom`, 0.9 by default). This
//!   is the safety margin for the estimate's own error, which the lab
//!   measured at a few per cent;
//! * `1 − loss`: the capacity is what arrived at the hub, but a source whose
//!   packets are lost at that rate spends that share again on recovery
//!   (retransmission or FEC);
//! * payload share: capacity counts outer bytes, the source sends inner
//!   ones; full-size packets carry `mtu / (mtu + 48)` of the link's bytes as
//!   payload (0.966 at a 1400-byte link MTU). Smaller packets carry less.
//!
//! The prediction uses the estimator's predicted capacity and queueing
//! delay (each falls back to the current one): a queue that builds towards
//! the deadline, or a capacity that collapses, shows there first.
//!
//! What it is not: a promise for bursts. A source that sends its average at
//! this rate but in bursts (video GOPs) queues its bursts; the margin an
//! encoder keeps below the number, and why, is in docs/BITRATE.md.
//!
//! Pure: inputs are plain values ([`LinkInput`], built from an
//! [`Estimate`] or by hand in tests), no clock, no I/O.

use std::time::Duration;

use super::estimator::{Estimate, PREDICTION_HORIZON};

/// What the computation needs to know of one link. Every field is read from
/// the controller's public estimate ([`LinkInput::from_estimate`]); the
/// struct is the contract, so a different estimator only has to fill it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkInput {
    /// Link id.
    pub id: u8,
    /// Share of its capacity the link may carry now, 0..1: its lifecycle's
    /// share (halved under a modem's caution), 0 while silent past the hold
    /// bound or in a state that carries nothing.
    pub share: f64,
    /// Base one-way delay (propagation, no queue), ms.
    pub base_delay_ms: Option<f64>,
    /// Queueing delay now (median one-way delay above its floor), ms.
    pub queue_ms: Option<f64>,
    /// Queueing delay predicted [`PREDICTION_HORIZON`] ahead, ms.
    pub predicted_queue_ms: Option<f64>,
    /// What the link can carry now, Mbit/s (outer bytes).
    pub capacity_mbit_s: Option<f64>,
    /// What it is predicted to carry [`PREDICTION_HORIZON`] ahead, Mbit/s.
    pub predicted_capacity_mbit_s: Option<f64>,
    /// Recent loss ratio, 0..1.
    pub loss: f64,
}

impl LinkInput {
    /// The input for link `id` from its estimate, carrying `share`.
    pub fn from_estimate(id: u8, share: f64, e: &Estimate) -> Self {
        Self {
            id,
            share,
            base_delay_ms: e.rtt_ms.map(|r| r[0] / 2.0),
            queue_ms: e.queue_delay_ms,
            predicted_queue_ms: e.predicted_queue_delay_ms,
            capacity_mbit_s: e.capacity_mbit_s,
            predicted_capacity_mbit_s: e.predicted_capacity_mbit_s,
            loss: e.loss_recent,
        }
    }
}

/// The knobs of the computation.
#[derive(Clone, Debug, PartialEq)]
pub struct FitConfig {
    /// One-way delay budget: what arrives later is late (`[control] deadline_ms`).
    pub deadline: Duration,
    /// Fraction of a link's capacity its send budget allows (the scorer's
    /// `headroom`).
    pub headroom: f64,
    /// Payload share of the bytes a link carries, 0..1 (see the module docs).
    pub payload_share: f64,
}

impl FitConfig {
    /// The payload share of full-size packets on a tunnel of `mtu` (inner
    /// packet size) with `overhead` bytes of tunnel headers each.
    pub fn payload_share(mtu: u32, overhead: usize) -> f64 {
        let mtu = f64::from(mtu.max(1));
        mtu / (mtu + overhead as f64)
    }
}

/// Why a link adds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Excluded {
    /// Its state lets it carry nothing now, or it is silent.
    NotCarrying,
    /// Its capacity or delay is not measured yet.
    Unmeasured,
    /// Base delay plus queue exceed the deadline: what is sent now is late.
    Late,
}

impl Excluded {
    /// Stable name (status, the socket's messages).
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotCarrying => "not_carrying",
            Self::Unmeasured => "unmeasured",
            Self::Late => "late",
        }
    }
}

/// One link's part of the sum.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkFit {
    /// Link id.
    pub id: u8,
    /// What it adds now, bits per second of payload (0 if excluded).
    pub now_bps: f64,
    /// What it adds over the next second.
    pub next_second_bps: f64,
    /// Why it adds nothing now, if so.
    pub excluded_now: Option<Excluded>,
    /// Why it adds nothing over the next second, if so.
    pub excluded_next: Option<Excluded>,
}

/// What the bond can carry within the deadline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fit {
    /// Now, bits per second of payload.
    pub now_bps: f64,
    /// Predicted for the next second ([`PREDICTION_HORIZON`] ahead).
    pub next_second_bps: f64,
    /// Links that add to `now_bps`.
    pub links_counted: usize,
    /// Links whose capacity and delay are measured (counted or not): with
    /// none, the sum says nothing about the links.
    pub links_measured: usize,
    /// Each link's part.
    pub links: Vec<LinkFit>,
}

/// How far ahead "the next second" looks.
pub const NEXT_SECOND: Duration = PREDICTION_HORIZON;

/// Sums what each link can deliver within the deadline (see the module docs).
pub fn fit(links: &[LinkInput], cfg: &FitConfig) -> Fit {
    let deadline_ms = cfg.deadline.as_secs_f64() * 1e3;
    let margin = finite_share(cfg.headroom, 2.0) * finite_share(cfg.payload_share, 1.0);
    let mut out = Fit::default();
    for l in links {
        let share = finite_share(l.share, 1.0);
        let keep = finite_share(1.0 - l.loss, 1.0);
        // One horizon: its capacity and queue, each falling back to "now".
        let part = |capacity: Option<f64>, queue: Option<f64>| -> Result<f64, Excluded> {
            if share <= 0.0 {
                return Err(Excluded::NotCarrying);
            }
            let (Some(capacity), Some(base)) = (capacity.filter(|c| c.is_finite()), l.base_delay_ms) else {
                return Err(Excluded::Unmeasured);
            };
            let queue = queue.filter(|q| q.is_finite()).unwrap_or(0.0).max(0.0);
            if !base.is_finite() || base + queue > deadline_ms {
                return Err(Excluded::Late);
            }
            Ok(capacity.max(0.0) * 1e6 * share * margin * keep)
        };
        let now = part(l.capacity_mbit_s, l.queue_ms);
        let next =
            part(l.predicted_capacity_mbit_s.or(l.capacity_mbit_s), l.predicted_queue_ms.or(l.queue_ms));
        let measured = l.capacity_mbit_s.is_some_and(f64::is_finite) && l.base_delay_ms.is_some();
        out.links_measured += usize::from(measured);
        out.links_counted += usize::from(now.is_ok());
        let link = LinkFit {
            id: l.id,
            now_bps: *now.as_ref().unwrap_or(&0.0),
            next_second_bps: *next.as_ref().unwrap_or(&0.0),
            excluded_now: now.err(),
            excluded_next: next.err(),
        };
        out.now_bps += link.now_bps;
        out.next_second_bps += link.next_second_bps;
        out.links.push(link);
    }
    out
}

/// `v` clamped to 0..=`max`; NaN is 0.
fn finite_share(v: f64, max: f64) -> f64 {
    if v.is_nan() { 0.0 } else { v.clamp(0.0, max) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FitConfig {
        FitConfig { deadline: Duration::from_millis(150), headroom: 0.9, payload_share: 1.0 }
    }

    /// A live, measured link: `mbit` Mbit/s, `base` ms away, `queue` ms queued.
    fn link(id: u8, mbit: f64, base: f64, queue: f64) -> LinkInput {
        LinkInput {
            id,
            share: 1.0,
            base_delay_ms: Some(base),
            queue_ms: Some(queue),
            predicted_queue_ms: Some(queue),
            capacity_mbit_s: Some(mbit),
            predicted_capacity_mbit_s: Some(mbit),
            loss: 0.0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn live_links_in_time_add_their_budgeted_capacity() {
        let f = fit(&[link(0, 12.0, 25.0, 5.0), link(1, 8.0, 40.0, 0.0), link(2, 4.0, 60.0, 20.0)], &cfg());
        assert!(close(f.now_bps, 24e6 * 0.9), "{f:?}");
        assert!(close(f.next_second_bps, f.now_bps));
        assert_eq!((f.links_counted, f.links_measured), (3, 3));
        assert!(f.links.iter().all(|l| l.excluded_now.is_none()));
    }

    #[test]
    fn a_link_whose_queue_reaches_past_the_deadline_adds_nothing() {
        // 60 ms away with 95 ms queued: 155 ms > 150 ms.
        let f = fit(&[link(0, 12.0, 25.0, 0.0), link(1, 4.0, 60.0, 95.0)], &cfg());
        assert!(close(f.now_bps, 12e6 * 0.9), "{f:?}");
        assert_eq!(f.links[1].excluded_now, Some(Excluded::Late));
        assert_eq!(f.links_counted, 1);
        assert_eq!(f.links_measured, 2, "measured, just late");
        // Exactly at the deadline still arrives in time.
        let f = fit(&[link(1, 4.0, 60.0, 90.0)], &cfg());
        assert_eq!(f.links_counted, 1);
        // A shorter deadline drops the far link altogether.
        let tight = FitConfig { deadline: Duration::from_millis(50), ..cfg() };
        let f = fit(&[link(0, 12.0, 25.0, 0.0), link(1, 4.0, 60.0, 0.0)], &tight);
        assert!(close(f.now_bps, 12e6 * 0.9), "{f:?}");
    }

    #[test]
    fn the_prediction_sees_a_building_queue_and_a_collapse_first() {
        let mut building = link(0, 10.0, 30.0, 40.0);
        building.predicted_queue_ms = Some(130.0); // 160 ms in 0.75 s
        let mut collapsing = link(1, 10.0, 30.0, 0.0);
        collapsing.predicted_capacity_mbit_s = Some(2.0);
        let f = fit(&[building, collapsing], &cfg());
        assert!(close(f.now_bps, 20e6 * 0.9), "{f:?}");
        assert!(close(f.next_second_bps, 2e6 * 0.9), "{f:?}");
        assert_eq!(f.links[0].excluded_next, Some(Excluded::Late));
        assert_eq!(f.links[0].excluded_now, None);
        // A predicted recovery shows too: the queue drains below the deadline.
        let mut draining = link(2, 10.0, 30.0, 130.0);
        draining.predicted_queue_ms = Some(20.0);
        let f = fit(&[draining], &cfg());
        assert_eq!((f.now_bps, f.links[0].excluded_now), (0.0, Some(Excluded::Late)));
        assert!(close(f.next_second_bps, 9e6));
    }

    #[test]
    fn share_loss_and_payload_scale_a_link() {
        let mut warm = link(0, 10.0, 20.0, 0.0);
        warm.share = 0.3;
        let mut lossy = link(1, 10.0, 20.0, 0.0);
        lossy.loss = 0.1;
        let c = FitConfig { payload_share: FitConfig::payload_share(1352, 48), ..cfg() };
        let f = fit(&[warm, lossy], &c);
        let payload = 1352.0 / 1400.0;
        assert!(close(f.links[0].now_bps, 10e6 * 0.3 * 0.9 * payload), "{f:?}");
        assert!(close(f.links[1].now_bps, 10e6 * 0.9 * 0.9 * payload), "{f:?}");
    }

    #[test]
    fn links_that_may_not_carry_or_are_not_measured_add_nothing() {
        let mut demoted = link(0, 10.0, 20.0, 0.0);
        demoted.share = 0.0;
        let unmeasured = LinkInput { id: 1, share: 1.0, base_delay_ms: Some(20.0), ..LinkInput::default() };
        let no_rtt = LinkInput { id: 2, share: 1.0, capacity_mbit_s: Some(5.0), ..LinkInput::default() };
        let f = fit(&[demoted, unmeasured, no_rtt], &cfg());
        assert_eq!((f.now_bps, f.next_second_bps, f.links_counted), (0.0, 0.0, 0));
        assert_eq!(f.links_measured, 1, "only the demoted link was measured");
        let why: Vec<_> = f.links.iter().map(|l| l.excluded_now).collect();
        assert_eq!(
            why,
            [Some(Excluded::NotCarrying), Some(Excluded::Unmeasured), Some(Excluded::Unmeasured)]
        );
        assert_eq!(fit(&[], &cfg()), Fit::default());
    }

    #[test]
    fn absurd_inputs_give_finite_non_negative_rates() {
        let odd = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 0.0, 1e300];
        for &a in &odd {
            for &b in &odd {
                let l = LinkInput {
                    id: 0,
                    share: a,
                    base_delay_ms: Some(b),
                    queue_ms: Some(a),
                    predicted_queue_ms: Some(b),
                    capacity_mbit_s: Some(b),
                    predicted_capacity_mbit_s: Some(a),
                    loss: b,
                };
                let c = FitConfig { headroom: a, payload_share: b, ..cfg() };
                let f = fit(&[l.clone(), l], &c);
                for v in [f.now_bps, f.next_second_bps] {
                    assert!(v.is_finite() && v >= 0.0, "{v} from {a}, {b}");
                }
            }
        }
    }

    #[test]
    fn the_controller_counts_admitted_links_and_drops_a_silent_one_at_once() {
        use crate::control::{
            controller::Controller, evidence::Evidence, lifecycle::Thresholds, scoring::ScoringConfig,
        };
        let ms = Duration::from_millis;
        let mut c = Controller::new(&[(0, 1), (1, 1)], Thresholds::default(), ScoringConfig::default());
        let cfg = FitConfig { deadline: ms(150), headroom: 0.9, payload_share: 1.0 };
        c.on_evidence(ms(0), Evidence::Train { link: 0, mbit_s: 10.0 });
        c.on_evidence(ms(0), Evidence::Train { link: 1, mbit_s: 5.0 });
        // Probing: measured, but nothing may carry traffic yet.
        c.on_evidence(ms(0), Evidence::RoundTrip { link: 0, rtt: ms(40) });
        c.on_evidence(ms(0), Evidence::RoundTrip { link: 1, rtt: ms(40) });
        c.tick(ms(0));
        let f = c.fit(ms(0), &cfg);
        assert_eq!((f.now_bps, f.links_measured), (0.0, 2), "{f:?}");
        // Both answer every 50 ms for 4 s: through warm-up to live.
        for t in (50..4000).step_by(50) {
            for link in [0, 1] {
                c.on_evidence(ms(t), Evidence::RoundTrip { link, rtt: ms(40) });
            }
            c.tick(ms(t));
        }
        let f = c.fit(ms(3950), &cfg);
        assert!(close(f.now_bps, 15e6 * 0.9), "{f:?}");
        assert_eq!(f.links_counted, 2);
        // Link 0 goes silent: past the 100 ms hold bound it adds nothing.
        for t in (4000..4200).step_by(50) {
            c.on_evidence(ms(t), Evidence::RoundTrip { link: 1, rtt: ms(40) });
            c.tick(ms(t));
        }
        let f = c.fit(ms(4150), &cfg);
        assert!(close(f.now_bps, 5e6 * 0.9), "{f:?}");
        assert_eq!(f.links[0].excluded_now, Some(Excluded::NotCarrying));
    }

    #[test]
    fn the_input_is_read_from_the_estimate() {
        let e = Estimate {
            rtt_ms: Some([40.0, 45.0, 60.0, 70.0]),
            queue_delay_ms: Some(3.0),
            predicted_queue_delay_ms: Some(9.0),
            capacity_mbit_s: Some(7.5),
            predicted_capacity_mbit_s: Some(6.0),
            loss_recent: 0.02,
            ..Estimate::default()
        };
        let i = LinkInput::from_estimate(4, 0.5, &e);
        assert_eq!(
            i,
            LinkInput {
                id: 4,
                share: 0.5,
                base_delay_ms: Some(20.0),
                queue_ms: Some(3.0),
                predicted_queue_ms: Some(9.0),
                capacity_mbit_s: Some(7.5),
                predicted_capacity_mbit_s: Some(6.0),
                loss: 0.02,
            }
        );
    }
}
