//! What one link is doing, estimated from in-band evidence only.
//!
//! Inputs are events stamped with the controller's clock (passed in, so tests
//! run on simulated time): probe round trips, the hub's per-link feedback
//! (cumulative received packets and bytes, cumulative losses from sequence
//! gaps, one-way delay samples), and what the edge sent. Outputs are an
//! [`Estimate`]: delay percentiles and jitter, loss rate and burstiness,
//! capacity, the delay gradient (a queue building), a throughput-collapse
//! flag, and a prediction of delay and capacity [`PREDICTION_HORIZON`] ahead.
//!
//! The outputs other modules build on (the scorer; anything that tells the
//! source what fits) are [`Estimate::capacity_mbit_s`] — the link's delivery
//! rate as the hub's feedback shows it, followed up and down by
//! [`super::rate`] — [`Estimate::queue_delay_ms`] (one-way delay above its
//! floor), and the lifecycle state the controller keeps beside it.
//!
//! One-way delays come from two clocks (edge send, hub receive) that are not
//! synchronised: only their *changes* mean anything, so they are reported
//! relative to the window's minimum (the queueing part).

use std::time::Duration;

use super::{
    rate::{Interval, RateModel},
    window::Window,
};

/// How long a queue reading stands as measured before it decays: two
/// feedback intervals.
const QUEUE_READING_FRESH: Duration = Duration::from_millis(100);
/// How far ahead predictions look.
pub const PREDICTION_HORIZON: Duration = Duration::from_millis(750);
/// Delay statistics window.
const DELAY_SPAN: Duration = Duration::from_secs(5);
/// Short window for gradients and recent loss.
const RECENT_SPAN: Duration = Duration::from_secs(1);

/// Cumulative counters the hub reports for one link.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Feedback {
    /// Data packets received on the link so far.
    pub rx_packets: u64,
    /// Bytes received so far.
    pub rx_bytes: u64,
    /// Packets lost so far (per-link sequence gaps).
    pub lost: u64,
    /// Packets that arrived out of order so far.
    pub late: u64,
    /// One-way delay samples since the last feedback, ms (offset clocks).
    pub owd_ms: Vec<f64>,
    /// Time since the previous feedback on the hub's clock, if stamped:
    /// rates use it rather than arrival times, which carry the way back's
    /// jitter (4-12 % per 50 ms interval in the lab).
    pub hub_elapsed: Option<Duration>,
    /// The hub's acknowledgement: the link sequence after the highest it
    /// received, as `FeedbackPayload::next_seq` (0: none yet).
    pub next_seq: u64,
    /// Bytes that arrived queued behind their predecessor so far, and the
    /// arrival gaps they spanned, µs (`FeedbackPayload::queued_bytes`,
    /// `queued_us`; 0 from a hub that does not count them).
    pub queued_bytes: u64,
    /// See `queued_bytes`.
    pub queued_us: u64,
}

/// The hub's latest acknowledgement of a link: it had received every link
/// sequence before `next_seq` when its feedback left, which reached the
/// controller `at`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    /// The link sequence after the highest received (low 32 bits).
    pub next_seq: u32,
    /// When the feedback carrying it arrived, on the controller's clock.
    pub at: Duration,
    /// When `next_seq` last moved.
    pub advanced_at: Duration,
}

/// How long an acknowledgement is handed to the kernel without arriving
/// again, or without moving: ten feedback intervals. One that stopped
/// arriving is exact about the past, but the rate it is aged with may no
/// longer be the link's. One that stopped moving while packets were sent
/// says they were lost (an outage), and counted as a backlog they would hold
/// the link out for good: nothing is sent into a link whose backlog never
/// drains, so nothing is received that would move the acknowledgement (lab,
/// carrier-down at os_signals none: the link never carried data again).
/// Past the bound the kernel's model decides, and the first packets
/// received move the acknowledgement again.
pub const ACK_STALE: Duration = Duration::from_millis(500);

/// How long an acknowledgement is handed to the kernel after feedback last
/// arrived for the link: five feedback intervals. Feedback that stops
/// arriving while the link still carries data (the hub's replies lost: a
/// NAT rebinding, a hub daemon restarting) says nothing about the link's
/// backlog, but the kernel would read every packet sent since as still
/// queued and shed packets as late on links that deliver them in time
/// (lab, nat-rebind at os_signals none: 0.9 % shed with the other links
/// far from full). A link that stalls still gets feedback — that it
/// received nothing — and keeps its evidence until [`ACK_STALE`].
pub const ACK_UNHEARD: Duration = Duration::from_millis(250);

/// How long a busy interval keeps a link's capacity estimate "current":
/// the rate model's window ([`super::rate::FILTER_SPAN`]) plus a feedback
/// round, after which what the estimate says was only ever raised by what
/// the link was sent.
pub const RATE_CURRENT_SPAN: Duration = Duration::from_secs(2);

/// The estimate of a link at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Estimate {
    /// Time since anything was heard from the link (probe reply or feedback).
    pub silence: Option<Duration>,
    /// Round trip, ms: minimum, p50, p95, p99.
    pub rtt_ms: Option<[f64; 4]>,
    /// Jitter, ms: p95 − p50 of the round trip.
    pub jitter_ms: Option<f64>,
    /// Queueing part of the one-way delay (p50 above the window's minimum), ms.
    pub queue_delay_ms: Option<f64>,
    /// Where the link's queue is now, ms: the latest feedback interval's
    /// queueing delay (its one-way delay above the window's minimum), less
    /// the time since it was due to be measured again — a queue the link is no longer sent
    /// into drains in real time, and a link carrying nothing reports no
    /// delay at all (kept as measured, a stale 500 ms reading held a link
    /// out, and with deadline drops starved it of the data that would have
    /// corrected it: a 17 s gap in the lab).
    pub queue_delay_now_ms: Option<f64>,
    /// The same as `queue_delay_ms` at p95: how far bursts queue, ms.
    pub queue_delay_p95_ms: Option<f64>,
    /// Delay gradient, ms per second (positive: a queue is building).
    pub delay_gradient_ms_s: Option<f64>,
    /// Loss rate over the recent window, 0..1.
    pub loss_recent: f64,
    /// Loss rate over the delay window, 0..1.
    pub loss: f64,
    /// ≥ 1: losses come in bursts (Gilbert–Elliott like); ≈ 1: random.
    pub burstiness: f64,
    /// Share of the link's packets that arrived out of order, over the delay window.
    pub reordering: f64,
    /// Delivered rate over the recent window, Mbit/s (median of the
    /// feedback intervals').
    pub delivered_mbit_s: f64,
    /// The hub received data on the link within the recent window.
    pub carrying: bool,
    /// Capacity estimate, Mbit/s: the delivery rate the hub's feedback
    /// shows (a windowed maximum, cut when a queue builds; see
    /// [`super::rate`]), or, until a busy link has confirmed it, at least
    /// the last packet train's.
    pub capacity_mbit_s: Option<f64>,
    /// The capacity was measured while the link was busy, not only bounded
    /// from below by what it was sent or guessed from a packet train.
    pub capacity_confirmed: bool,
    /// The link was busy within [`RATE_CURRENT_SPAN`]: the capacity is a
    /// measurement of now, not a lower bound that only what the link was
    /// sent has raised since (see [`super::rate::RateModel::busy_within`]).
    pub capacity_current: bool,
    /// The last packet train's rate (within 30 s), Mbit/s.
    pub train_mbit_s: Option<f64>,
    /// Capacity falling while loss stays low (thermal throttling).
    pub collapsing: bool,
    /// The link took packets past every link's budget within the recent
    /// window: more is offered than the links carry, so its loss and delay
    /// are congestion, not a failing link.
    pub overloaded: bool,
    /// Predicted queueing delay [`PREDICTION_HORIZON`] ahead, ms.
    pub predicted_queue_delay_ms: Option<f64>,
    /// Predicted capacity [`PREDICTION_HORIZON`] ahead, Mbit/s.
    pub predicted_capacity_mbit_s: Option<f64>,
    /// The hub's latest acknowledgement, unless it has not moved for
    /// [`ACK_STALE`] or not arrived for [`ACK_UNHEARD`].
    pub ack: Option<Ack>,
}

/// Running estimation state of one link.
#[derive(Clone, Debug)]
pub struct LinkEstimator {
    rtt: Window,
    owd: Window,
    owd_recent: Window,
    /// Per feedback: (packets received, packets lost) in that interval.
    intervals: Window,
    intervals_lost: Window,
    intervals_lossy: Window,
    intervals_late: Window,
    rate: Window,
    /// The delivery-rate model (capacity).
    capacity: RateModel,
    last_feedback: Option<(Duration, Feedback)>,
    last_heard: Option<Duration>,
    trains: Window,
    /// The last feedback interval brought no data packets.
    idle: bool,
    /// The kernel's overflow counter of this link, and when it last grew.
    overflow: (u64, Option<Duration>),
    /// Losses reported until then belong to the link's previous binding.
    rebound_until: Option<Duration>,
    /// When the path last started over (see [`LinkEstimator::on_path_reset`]).
    path_since: Option<Duration>,
    /// The hub's latest acknowledgement.
    ack: Option<Ack>,
    /// The kernel's next link sequence (packets sent on the link so far),
    /// sampled every control tick, newest last, over [`SENT_SPAN`].
    sent: std::collections::VecDeque<(Duration, u32)>,
    /// Where the last feedback interval ended, on the edge's clock (see
    /// [`LinkEstimator::interval_through`]).
    interval_end: Option<Duration>,
}

/// Share of the packets due in a feedback interval the hub must have
/// received for the link to count as keeping up (see
/// [`LinkEstimator::interval_through`]): below one for packets a jitter of a
/// few milliseconds moves across the interval's edge.
const KEPT_UP: f64 = 0.8;
/// Packets due in an interval below which keeping up says nothing.
const KEPT_UP_MIN_DUE: f64 = 8.0;

/// How long the kernel's sent sequence is remembered: longer than any round
/// trip a link is used at.
const SENT_SPAN: Duration = Duration::from_secs(2);
/// Packets sent before a feedback interval began that the link must still
/// hold at its end to count as backlogged through it (see
/// [`LinkEstimator::interval_through`]).
const BACKLOG_PACKETS: f64 = 2.0;
/// Margin on the way back and forth beyond the base round trip when judging
/// what reached the hub by the time its feedback left: the lab's links
/// jitter by up to 6 ms each way, and a packet counted as arrived that had
/// not is a backlog that was not there.
const BACKLOG_MARGIN: Duration = Duration::from_millis(10);

/// Silence after which the first probe answer starts the path over (see
/// [`LinkEstimator::on_path_reset`]): the answers that follow it were sent
/// into the outage and held somewhere (lab, carrier-down at `os_signals =
/// none`: 1-2 s round trips kept a link that came back in probe for 5 s
/// more).
const PATH_RESET_SILENCE: Duration = Duration::from_secs(1);

/// Time after a re-bind during which reported losses are put down to the
/// packets in flight from the old address.
const REBIND_GRACE: Duration = Duration::from_secs(1);

impl Default for LinkEstimator {
    fn default() -> Self {
        Self::new()
    }
}

impl LinkEstimator {
    /// A link nothing is known about.
    pub fn new() -> Self {
        Self {
            rtt: Window::new(DELAY_SPAN),
            owd: Window::new(DELAY_SPAN),
            owd_recent: Window::new(RECENT_SPAN),
            intervals: Window::new(DELAY_SPAN),
            intervals_lost: Window::new(DELAY_SPAN),
            intervals_lossy: Window::new(DELAY_SPAN),
            intervals_late: Window::new(DELAY_SPAN),
            rate: Window::new(RECENT_SPAN),
            capacity: RateModel::new(),
            last_feedback: None,
            last_heard: None,
            trains: Window::new(Duration::from_secs(30)),
            idle: true,
            overflow: (0, None),
            rebound_until: None,
            path_since: None,
            ack: None,
            sent: std::collections::VecDeque::new(),
            interval_end: None,
        }
    }

    /// The link's path started over (its carrier or interface came back):
    /// round trips and one-way delays measured before describe queues and
    /// a bearer that are gone. Kept, they held a link that came back in
    /// probe for up to the 5 s window (lab, carrier-down: round-trip jitter
    /// of ~100 ms measured while it carried video bursts before the outage
    /// kept it from passing its re-admission checks for 5.3 s). Probes
    /// sent before `now` and answered after are not round trips of the new
    /// path either (a 1-2 s one was measured right after the carrier came
    /// back): they are ignored.
    pub fn on_path_reset(&mut self, now: Duration) {
        self.path_since = Some(now);
        self.rtt = Window::new(DELAY_SPAN);
        self.owd = Window::new(DELAY_SPAN);
        self.owd_recent = Window::new(RECENT_SPAN);
    }

    /// The link was re-bound (new source address) at `now`. Packets sent
    /// from the old address and still in flight are lost when the network
    /// moves the lease; the hub notices the gap only when the first packet
    /// from the new address arrives, and reports it once its feedback finds
    /// the new address — a round trip and a feedback interval or more
    /// later. Losses reported within [`REBIND_GRACE`] are not the new
    /// path's (measured, lab ip-change: with a grace of two round trips,
    /// ~200 ms, the report came after it once in four runs and demoted the
    /// link for 3 s). Only losses are excused: silence and delay still count.
    pub fn on_rebound(&mut self, now: Duration) {
        self.rebound_until = Some(now + REBIND_GRACE);
    }

    /// A probe came back after `rtt`. Absurd round trips (over 30 s) are
    /// ignored rather than trusted.
    pub fn on_probe_reply(&mut self, now: Duration, rtt: Duration) {
        if rtt > Duration::from_secs(30) {
            return;
        }
        self.heard(now);
        // Sent before the path started over: it waited out the outage
        // somewhere (the kernel queues packets for a next hop it is
        // resolving again after the carrier loss flushed its neighbours),
        // so its round trip measures the outage, not the link.
        if self.path_since.is_some_and(|t| now.saturating_sub(rtt) < t) {
            return;
        }
        self.rtt.push(now, rtt.as_secs_f64() * 1e3);
    }

    /// The kernel's cumulative overflow counter for this link read `count`.
    pub fn on_overflow(&mut self, now: Duration, count: u64) {
        if count > self.overflow.0 {
            self.overflow.1 = Some(now);
        }
        self.overflow.0 = count;
    }

    /// A packet train measured `mbit_s` of bottleneck rate.
    pub fn on_train(&mut self, now: Duration, mbit_s: f64) {
        if mbit_s.is_finite() && mbit_s > 0.0 {
            self.trains.push(now, mbit_s);
        }
    }

    /// The kernel had sent `next_seq` packets on the link by `now` (its next
    /// link sequence). With the hub's acknowledgements this tells whether
    /// the link was *backlogged* — still holding packets when the hub
    /// reported — and so whether what it delivered was all it could: the
    /// one thing a delivery rate means nothing without. One-way delay above
    /// its floor says the same only on smooth links: on LTE a 100 ms stall
    /// or an opportunity burst moves it by tens of milliseconds whether the
    /// link is full or not, and reading that as "busy" pinned estimates to
    /// what the links were sent (lab, real LTE trace at 70 % load:
    /// estimates at a third to a half of what the links carried).
    pub fn on_sent(&mut self, now: Duration, next_seq: u32) {
        self.sent.push_back((now, next_seq));
        while self.sent.front().is_some_and(|&(t, _)| now.saturating_sub(t) > SENT_SPAN) {
            self.sent.pop_front();
        }
    }

    /// Packets the kernel had sent on the link by `t`, interpolated between
    /// the samples around it, relative to the oldest sample's sequence (so
    /// that the u32 wraps cancel). `None` outside the samples.
    fn sent_by(&self, t: Duration) -> Option<(u32, f64)> {
        let &(t0, base) = self.sent.front()?;
        if t < t0 {
            return None;
        }
        let rel = |s: u32| f64::from(s.wrapping_sub(base));
        let after = self.sent.iter().position(|&(ts, _)| ts > t);
        let Some(i) = after else {
            return self.sent.back().map(|&(_, s)| (base, rel(s)));
        };
        let (ta, sa) = self.sent[i - 1];
        let (tb, sb) = self.sent[i];
        let f = (t - ta).as_secs_f64() / (tb - ta).as_secs_f64().max(1e-9);
        Some((base, rel(sa) + f * (rel(sb) - rel(sa))))
    }

    /// Whether the link was backlogged throughout the feedback interval that
    /// ends with feedback acknowledging `next_seq`, arriving `now`: whether
    /// packets the kernel had sent before the interval began were still
    /// not received at its end (see [`Self::on_sent`]). A packet waiting at
    /// the bottleneck through the whole interval means the link served
    /// packets ahead of it all along, so what it delivered was all it could.
    /// Packets sent *during* the interval say nothing of the kind: counting
    /// them, every video burst made its link "backlogged" and its estimate
    /// what it was sent (lab, steady-asymmetric: an 8 Mbit/s link held at
    /// 2-7). Also returns where this interval ends, on the edge's clock,
    /// for the next one; and whether the hub received at least [`KEPT_UP`]
    /// of the packets due in the interval (sent between its start and its
    /// end, in the edge's terms), given the `received` count.
    fn interval_through(
        &self,
        now: Duration,
        next_seq: u64,
        received: Option<f64>,
    ) -> (Option<bool>, Option<Duration>, Option<bool>) {
        // When the interval ended, in the edge's terms: packets sent by then
        // had reached the hub when its feedback left.
        let Some(rtt_min) = self.rtt.min().filter(|r| r.is_finite() && *r >= 0.0) else {
            return (None, None, None);
        };
        let end = now.checked_sub(Duration::from_secs_f64(rtt_min.min(3600.0) / 1e3) + BACKLOG_MARGIN);
        let busy = (|| {
            if next_seq == 0 {
                return None;
            }
            let (base, sent) = self.sent_by(self.interval_end?)?;
            let acked = f64::from((next_seq as u32).wrapping_sub(base));
            // An acknowledgement from before the oldest sample wraps to a
            // huge value: unknown, not a negative backlog.
            if acked > sent + f64::from(u32::MAX / 2) {
                return None;
            }
            Some(sent - acked >= BACKLOG_PACKETS)
        })();
        let kept_up = (|| {
            let (base, at_start) = self.sent_by(self.interval_end?)?;
            let (base_end, at_end) = self.sent_by(end?)?;
            (base == base_end).then_some(())?;
            let due = at_end - at_start;
            if due < KEPT_UP_MIN_DUE {
                return None;
            }
            Some(received? >= KEPT_UP * due)
        })();
        (busy, end, kept_up)
    }

    /// The hub's cumulative feedback for this link arrived.
    pub fn on_feedback(&mut self, now: Duration, fb: Feedback) {
        if fb.next_seq != 0 {
            // The low 32 bits: the link sequence the wire carries.
            let next_seq = fb.next_seq as u32;
            let advanced_at = match self.ack {
                Some(a) if a.next_seq == next_seq => a.advanced_at,
                _ => now,
            };
            self.ack = Some(Ack { next_seq, at: now, advanced_at });
        }
        let received = self
            .last_feedback
            .as_ref()
            .and_then(|(_, prev)| fb.rx_packets.checked_sub(prev.rx_packets))
            .map(|n| n as f64);
        let (busy, end, kept_up) = self.interval_through(now, fb.next_seq, received);
        self.interval_end = end;
        for &d in &fb.owd_ms {
            self.owd.push(now, d);
            self.owd_recent.push(now, d);
        }
        if let Some((then, prev)) = &self.last_feedback {
            // Counters that went backwards mean the hub restarted: start over from here.
            if fb.rx_packets >= prev.rx_packets && fb.lost >= prev.lost && fb.rx_bytes >= prev.rx_bytes {
                self.intervals_late.push(now, fb.late.saturating_sub(prev.late) as f64);
                let packets = (fb.rx_packets - prev.rx_packets) as f64;
                // The hub finds a gap only when the next packet arrives: losses
                // reported with the first packets after a pause in data (a
                // demoted link coming back) belong to before the pause, when
                // they were already acted on.
                let rebound = self.rebound_until.is_some_and(|t| now <= t);
                let lost = if self.idle || rebound { 0.0 } else { (fb.lost - prev.lost) as f64 };
                self.idle = packets == 0.0;
                self.intervals.push(now, packets);
                self.intervals_lost.push(now, lost);
                self.intervals_lossy.push(now, if lost > 0.0 { 1.0 } else { 0.0 });
                let dt = fb.hub_elapsed.unwrap_or_else(|| now.saturating_sub(*then)).as_secs_f64();
                if dt > 0.0 {
                    let bytes = fb.rx_bytes - prev.rx_bytes;
                    self.rate.push(now, bytes as f64 * 8.0 / dt / 1e6);
                    // The interval's own queueing delay: its mean one-way
                    // delay above the window's floor.
                    let floor = self.owd.min();
                    let queue_ms = fb.owd_ms.iter().copied().reduce(f64::max).zip(floor).map(|(d, f)| d - f);
                    let elapsed = Duration::from_secs_f64(dt.min(3600.0));
                    // Counters that went backwards (a hub restarted between
                    // two feedbacks and caught up) say nothing.
                    let queued = fb
                        .queued_bytes
                        .checked_sub(prev.queued_bytes)
                        .zip(fb.queued_us.checked_sub(prev.queued_us))
                        .map(|(bytes, us)| (bytes, Duration::from_micros(us)));
                    self.capacity
                        .on_interval(now, Interval { bytes, elapsed, queue_ms, busy, kept_up, queued });
                }
            }
        }
        // Heard only if the hub received something on the link since the
        // last feedback: feedback itself travels the other way, so it
        // proves nothing about this direction (lab, usb-reattach at
        // os_signals none: the hub's feedback kept reaching a re-attached
        // interface's address while the edge still sent into the deleted
        // one, and the link was re-admitted on it).
        let fresh = match &self.last_feedback {
            Some((_, prev)) => fb.rx_packets > prev.rx_packets,
            None => fb.rx_packets > 0,
        };
        if fresh || !fb.owd_ms.is_empty() {
            self.heard(now);
        }
        self.last_feedback = Some((now, fb));
    }

    fn heard(&mut self, now: Duration) {
        // Heard again after a long silence: the path starts over, in band
        // (what the OS tiers learn from a carrier or interface event). Also
        // when feedback comes first: the hub counts the probes that were
        // held during the outage as they arrive.
        if self.last_heard.is_some_and(|t| now.saturating_sub(t) >= PATH_RESET_SILENCE) {
            self.on_path_reset(now);
        }
        self.last_heard = Some(self.last_heard.map_or(now, |t| t.max(now)));
    }

    fn queue_delay_ms(&self) -> Option<f64> {
        Some(self.owd_recent.quantile(0.5)? - self.owd.min()?)
    }

    fn loss_over(&self, packets: &Window, lost: &Window, span: Option<Duration>, now: Duration) -> f64 {
        let sum = |w: &Window| {
            let mut w = w.clone();
            if let Some(span) = span {
                w = retain_recent(&w, now, span);
            }
            w.sum()
        };
        let (p, l) = (sum(packets), sum(lost));
        if p + l > 0.0 { l / (p + l) } else { 0.0 }
    }

    /// The estimate at `now`.
    pub fn estimate(&self, now: Duration) -> Estimate {
        let rtt_ms = (|| {
            Some([
                self.rtt.min()?,
                self.rtt.quantile(0.5)?,
                self.rtt.quantile(0.95)?,
                self.rtt.quantile(0.99)?,
            ])
        })();
        let jitter_ms = rtt_ms.map(|r| r[2] - r[1]);
        let queue_delay_ms = self.queue_delay_ms();
        let queue_delay_now_ms = (|| {
            let (at, owd) = self.owd_recent.last()?;
            // Only once it is overdue: a link carrying data reports every
            // feedback interval, and decaying a standing queue between two
            // reports read it as empty and opened the spill-over budget on a
            // full link (lab, steady-asymmetric: 1.3 % lost).
            let overdue = now.saturating_sub(at).saturating_sub(QUEUE_READING_FRESH);
            let drained_ms = overdue.as_secs_f64() * 1e3;
            Some((owd - self.owd.min()? - drained_ms).max(0.0))
        })();
        let queue_delay_p95_ms = (|| Some(self.owd_recent.quantile(0.95)? - self.owd.min()?))();
        let delay_gradient_ms_s = self.owd_recent.slope_per_s().or_else(|| self.rtt.slope_per_s());
        let loss = self.loss_over(&self.intervals, &self.intervals_lost, None, now);
        let loss_recent = self.loss_over(&self.intervals, &self.intervals_lost, Some(RECENT_SPAN), now);
        let burstiness = self.burstiness(loss);
        let received = self.intervals.sum();
        let reordering =
            if received > 0.0 { (self.intervals_late.sum() / received).clamp(0.0, 1.0) } else { 0.0 };
        let delivered_mbit_s = self.rate.quantile(0.5).unwrap_or(0.0);
        // A packet train stands in until the link was measured busy: before
        // that, what it delivered is only what it was sent.
        let capacity_confirmed = self.capacity.confirmed();
        let train = self.trains.last().map(|(_, v)| v);
        let capacity_mbit_s = match (self.capacity.estimate(), train) {
            (Some(c), _) if capacity_confirmed => Some(c),
            (Some(c), Some(t)) => Some(c.max(t)),
            (c, t) => c.or(t),
        };
        let rate_slope = self.rate.slope_per_s().unwrap_or(0.0);
        let collapsing = delivered_mbit_s > 0.0
            && rate_slope < -0.25 * delivered_mbit_s.max(capacity_mbit_s.unwrap_or(0.0))
            && loss_recent < 0.01;
        let horizon = PREDICTION_HORIZON.as_secs_f64();
        let predicted_queue_delay_ms =
            queue_delay_ms.map(|q| (q + delay_gradient_ms_s.unwrap_or(0.0) * horizon).max(0.0));
        // Capacity is not extrapolated, even while it is collapsing: on a
        // real LTE trace the delivered rate's slope says "collapsing" again
        // and again, and extrapolating it 750 ms ahead priced backlogs at a
        // fraction of the rate and took links' weight to 0 — 67.2 % in time
        // against 75.5 % without (closed-loop simulation, docs/BENCHMARKS.md).
        // A link that really falls is measured within a feedback interval
        // or two by its acknowledgements and the hub's queued counts.
        let predicted_capacity_mbit_s = capacity_mbit_s;
        Estimate {
            silence: self.last_heard.map(|t| now.saturating_sub(t)),
            rtt_ms,
            jitter_ms,
            queue_delay_ms,
            queue_delay_now_ms,
            queue_delay_p95_ms,
            delay_gradient_ms_s,
            loss_recent,
            loss,
            burstiness,
            reordering,
            delivered_mbit_s,
            carrying: self.rate.iter().any(|(t, r)| r > 0.0 && now.saturating_sub(t) <= RECENT_SPAN),
            capacity_mbit_s,
            capacity_confirmed,
            capacity_current: self.capacity.busy_within(now, RATE_CURRENT_SPAN),
            train_mbit_s: self.trains.last().map(|(_, v)| v),
            collapsing,
            overloaded: self.overflow.1.is_some_and(|t| now.saturating_sub(t) <= RECENT_SPAN),
            predicted_queue_delay_ms,
            predicted_capacity_mbit_s,
            ack: self.ack.filter(|a| {
                now.saturating_sub(a.advanced_at) <= ACK_STALE && now.saturating_sub(a.at) <= ACK_UNHEARD
            }),
        }
    }

    /// Expected over observed share of feedback intervals with a loss: with
    /// random loss at rate `r` and `n` packets per interval, a share
    /// 1 − (1 − r)^n of intervals sees one; bursty loss concentrates the same
    /// losses in fewer intervals.
    fn burstiness(&self, loss: f64) -> f64 {
        let observed = self.intervals_lossy.mean();
        let n = self.intervals.mean();
        if observed <= 0.0 || loss <= 0.0 || n <= 0.0 {
            return 1.0;
        }
        let expected = 1.0 - (1.0 - loss).powf(n);
        (expected / observed).max(0.0)
    }
}

fn retain_recent(w: &Window, now: Duration, span: Duration) -> Window {
    let mut out = Window::new(span);
    for (t, v) in w.iter() {
        if now.saturating_sub(t) <= span {
            out.push(t, v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn rtt_percentiles_and_jitter() {
        let mut e = LinkEstimator::new();
        for i in 0..100u64 {
            let rtt = if i % 20 == 0 { 130 } else { 50 + i % 5 };
            e.on_probe_reply(ms(i * 50), ms(rtt));
        }
        let est = e.estimate(ms(5000));
        let r = est.rtt_ms.unwrap();
        assert_eq!(r[0], 50.0);
        assert!(r[1] <= 54.0);
        assert_eq!(r[3], 130.0, "the spikes are in the tail, not in the median");
        assert!(est.silence.unwrap() <= ms(100));
    }

    #[test]
    fn silence_grows_without_evidence() {
        let mut e = LinkEstimator::new();
        e.on_probe_reply(ms(1000), ms(40));
        assert_eq!(e.estimate(ms(1300)).silence, Some(ms(300)));
    }

    fn feed(
        e: &mut LinkEstimator,
        steps: u64,
        lost_every: Option<u64>,
        burst: u64,
        owd: impl Fn(u64) -> f64,
    ) {
        let (mut rx, mut lost, mut bytes) = (0u64, 0u64, 0u64);
        for i in 0..steps {
            // 50 ms feedback, 100 packets of 1250 bytes per interval = 20 Mbit/s.
            rx += 100;
            bytes += 125_000;
            if let Some(k) = lost_every
                && i % k == 0
            {
                lost += burst;
            }
            e.on_feedback(
                ms(i * 50),
                Feedback {
                    rx_packets: rx,
                    rx_bytes: bytes,
                    lost,
                    owd_ms: vec![owd(i)],
                    hub_elapsed: None,
                    late: 0,
                    next_seq: 0,
                    ..Feedback::default()
                },
            );
        }
    }

    #[test]
    fn loss_rate_and_burstiness() {
        let mut random = LinkEstimator::new();
        feed(&mut random, 200, Some(1), 1, |_| 30.0); // 1 loss in every interval: ~1 %
        let r = random.estimate(ms(10_000));
        assert!((r.loss - 0.0099).abs() < 0.002, "{}", r.loss);
        assert!(r.burstiness < 1.5, "random: {}", r.burstiness);
        let mut bursty = LinkEstimator::new();
        feed(&mut bursty, 200, Some(20), 20, |_| 30.0); // 20 losses every 20 intervals: same rate, bursts
        let b = bursty.estimate(ms(10_000));
        assert!((b.loss - 0.0099).abs() < 0.002, "{}", b.loss);
        assert!(b.burstiness > 5.0, "bursty: {}", b.burstiness);
    }

    #[test]
    fn a_building_queue_shows_as_gradient_and_prediction() {
        let mut e = LinkEstimator::new();
        // 2 s flat, then the one-way delay climbs 100 ms per second.
        feed(&mut e, 80, None, 0, |i| if i < 40 { 30.0 } else { 30.0 + (i - 40) as f64 * 5.0 });
        let est = e.estimate(ms(4000));
        let g = est.delay_gradient_ms_s.unwrap();
        assert!((g - 100.0).abs() < 15.0, "gradient {g}");
        assert!(est.predicted_queue_delay_ms.unwrap() > est.queue_delay_ms.unwrap() + 50.0);
        assert!((est.delivered_mbit_s - 20.0).abs() < 0.5);
        assert!(est.capacity_mbit_s.is_some(), "a standing queue reveals capacity");
    }

    #[test]
    fn losses_found_after_a_pause_in_data_are_not_counted_again() {
        let mut e = LinkEstimator::new();
        feed(&mut e, 40, None, 0, |_| 30.0);
        let fb = |rx: u64, lost: u64| Feedback {
            rx_packets: rx,
            rx_bytes: rx * 1250,
            lost,
            owd_ms: vec![30.0],
            hub_elapsed: None,
            late: 0,
            next_seq: 0,
            ..Feedback::default()
        };
        // Data stops (the link was demoted), then resumes: the hub reports
        // the 150 packets that were in flight when it went dark.
        e.on_feedback(ms(2000), fb(4000, 0));
        e.on_feedback(ms(2050), fb(4000, 0));
        e.on_feedback(ms(2100), fb(4010, 150));
        e.on_feedback(ms(2150), fb(4110, 150));
        assert_eq!(e.estimate(ms(2150)).loss_recent, 0.0);
        e.on_feedback(ms(2200), fb(4210, 160));
        assert!(e.estimate(ms(2200)).loss_recent > 0.0, "a loss while data flows counts");
    }

    #[test]
    fn losses_of_the_old_binding_are_excused_for_a_second_only() {
        let mut e = LinkEstimator::new();
        feed(&mut e, 40, None, 0, |_| 30.0);
        let fb = |rx: u64, lost: u64| Feedback {
            rx_packets: rx,
            rx_bytes: rx * 1250,
            lost,
            owd_ms: vec![30.0],
            hub_elapsed: None,
            late: 0,
            next_seq: 0,
            ..Feedback::default()
        };
        e.on_feedback(ms(2000), fb(4000, 0));
        e.on_rebound(ms(2000));
        // In flight from the old address, reported after the first new packet.
        e.on_feedback(ms(2050), fb(4050, 40));
        assert_eq!(e.estimate(ms(2050)).loss_recent, 0.0);
        // Excused for a second only.
        e.on_feedback(ms(3100), fb(4500, 60));
        assert!(e.estimate(ms(3100)).loss_recent > 0.0, "later losses are the new path's");
    }

    #[test]
    fn round_trips_of_probes_sent_before_the_path_started_over_are_ignored() {
        let mut e = LinkEstimator::new();
        for i in 0..20 {
            e.on_probe_reply(ms(i * 50), ms(300));
        }
        e.on_path_reset(ms(1000));
        assert_eq!(e.estimate(ms(1000)).rtt_ms, None, "the old path's round trips are gone");
        e.on_probe_reply(ms(1100), ms(1500)); // sent during the outage
        assert_eq!(e.estimate(ms(1100)).rtt_ms, None);
        assert_eq!(e.estimate(ms(1100)).silence, Some(ms(0)), "but the link was heard");
        e.on_probe_reply(ms(1150), ms(60));
        assert_eq!(e.estimate(ms(1150)).rtt_ms.map(|r| r[1]), Some(60.0));
    }

    #[test]
    fn a_long_silence_starts_the_path_over_in_band() {
        let mut e = LinkEstimator::new();
        for i in 0..20 {
            e.on_probe_reply(ms(i * 50), ms(300));
        }
        // Two seconds of nothing, then the probes held during it arrive.
        e.on_probe_reply(ms(3000), ms(2000));
        e.on_probe_reply(ms(3001), ms(1950));
        assert_eq!(e.estimate(ms(3001)).rtt_ms, None, "neither the old path nor the held probes");
        e.on_probe_reply(ms(3060), ms(60));
        assert_eq!(e.estimate(ms(3060)).rtt_ms.map(|r| r[2]), Some(60.0));
    }

    impl LinkEstimator {
        fn backlogged_through(&self, now: Duration, next_seq: u64) -> (Option<bool>, Option<Duration>) {
            let (busy, end, _) = self.interval_through(now, next_seq, None);
            (busy, end)
        }
    }

    #[test]
    fn a_link_is_backlogged_through_an_interval_only_if_older_packets_are_still_unreceived() {
        let mut e = LinkEstimator::new();
        e.on_probe_reply(ms(0), Duration::from_millis(20));
        // The kernel sends one packet per millisecond.
        for t in (0..=200).step_by(20) {
            e.on_sent(ms(t), t as u32);
        }
        // Each feedback's interval ends, in the edge's terms, at its arrival
        // less the base round trip (20 ms) and the margin (10 ms).
        assert_eq!(e.backlogged_through(ms(130), 50), (None, Some(ms(100))), "no interval before it");
        e.interval_end = Some(ms(100));
        // By 100 ms, 100 packets were sent; the hub has 90 of them at the end.
        assert_eq!(e.backlogged_through(ms(180), 90).0, Some(true));
        // It has all 100 (and packets sent since, which say nothing).
        assert_eq!(e.backlogged_through(ms(180), 101).0, Some(false));
        assert_eq!(e.backlogged_through(ms(180), 0).0, None, "no acknowledgement");
    }

    #[test]
    fn an_acknowledgement_that_stops_moving_is_withdrawn() {
        let mut e = LinkEstimator::new();
        let fb = |rx: u64, next_seq: u64| Feedback {
            rx_packets: rx,
            rx_bytes: rx * 1250,
            lost: 0,
            owd_ms: vec![30.0],
            hub_elapsed: None,
            late: 0,
            next_seq,
            ..Feedback::default()
        };
        e.on_feedback(ms(0), fb(10, 0));
        assert_eq!(e.estimate(ms(0)).ack, None, "0: nothing received yet");
        e.on_feedback(ms(50), fb(20, 21));
        assert_eq!(e.estimate(ms(50)).ack, Some(Ack { next_seq: 21, at: ms(50), advanced_at: ms(50) }));
        // The same acknowledgement, again and again: an outage swallows what is sent.
        for t in (100..=600).step_by(50) {
            e.on_feedback(ms(t), fb(20, 21));
        }
        assert_eq!(e.estimate(ms(550)).ack.map(|a| a.at), Some(ms(600)), "the latest arrival anchors it");
        assert_eq!(e.estimate(ms(600)).ack, None, "not moved for over 500 ms: withdrawn");
        e.on_feedback(ms(650), fb(30, 1u64 << 32));
        let ack = e.estimate(ms(650)).ack.expect("moving again");
        assert_eq!(ack.next_seq, 0, "the wire's 32 bits, wrapped");
    }

    #[test]
    fn an_acknowledgement_no_longer_heard_is_withdrawn() {
        let mut e = LinkEstimator::new();
        let fb = |rx: u64, next_seq: u64| Feedback { rx_packets: rx, next_seq, ..Default::default() };
        e.on_feedback(ms(0), fb(10, 11));
        e.on_feedback(ms(50), fb(20, 21));
        // Feedback stops (the hub's replies lost): evidence for 250 ms only.
        assert!(e.estimate(ms(300)).ack.is_some(), "heard 250 ms ago");
        assert_eq!(e.estimate(ms(301)).ack, None, "not heard for over 250 ms: withdrawn");
        e.on_feedback(ms(900), fb(90, 91));
        assert_eq!(e.estimate(ms(900)).ack.map(|a| a.next_seq), Some(91), "heard again");
    }

    #[test]
    fn hostile_feedback_is_survived() {
        let mut e = LinkEstimator::new();
        e.on_feedback(
            ms(0),
            Feedback {
                rx_packets: 1000,
                rx_bytes: 1_000_000,
                lost: 0,
                owd_ms: vec![f64::NAN],
                hub_elapsed: None,
                late: 0,
                next_seq: 0,
                ..Feedback::default()
            },
        );
        // The hub restarted: counters went backwards.
        e.on_feedback(
            ms(50),
            Feedback {
                rx_packets: 10,
                rx_bytes: 100,
                lost: 0,
                owd_ms: vec![],
                hub_elapsed: None,
                late: 5,
                next_seq: 0,
                ..Feedback::default()
            },
        );
        e.on_feedback(
            ms(100),
            Feedback {
                rx_packets: 20,
                rx_bytes: 200,
                lost: u64::MAX,
                owd_ms: vec![1e300],
                hub_elapsed: Some(Duration::MAX),
                late: u64::MAX,
                next_seq: 0,
                queued_bytes: u64::MAX,
                queued_us: 1,
            },
        );
        e.on_probe_reply(ms(100), Duration::from_secs(3600));
        let est = e.estimate(Duration::from_secs(1 << 40));
        assert!(est.loss.is_finite() && (0.0..=1.0).contains(&est.loss));
        assert!(est.rtt_ms.is_none(), "an hour-long RTT is not trusted");
    }
}
