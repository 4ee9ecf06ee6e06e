//! How fast a link delivers, followed from the hub's feedback.
//!
//! Every feedback interval (50 ms) the hub says how many bytes it received on
//! the link and over how long (its own clock). That interval's delivery
//! rate means different things depending on whether the link was *busy*:
//!
//! * with a queue standing on the link (one-way delay above its floor), the
//!   link delivered all it could: the rate *is* its capacity, up or down;
//! * with no queue, it delivered what it was sent: the capacity is *at
//!   least* that much, and the sample may only raise the estimate.
//!
//! The estimate is a windowed maximum of such samples over [`FILTER_SPAN`]
//! (capacity of a cellular link swings 5–10× within seconds; a maximum
//! finds the headroom that a mean over the same span would average away),
//! lowered only by busy samples. When a queue builds — queueing delay above
//! [`CUT_QUEUE_MS`] and still rising — the estimate drops at once to what the
//! link delivered in that interval, and the window starts over: a link
//! stepping down is followed within one feedback interval, not after the
//! window has forgotten the old rate.
//!
//! Upward discovery needs the link to be offered more than the estimate: the
//! scorer's send budget gives it a gain (see `scoring`), and the samples of
//! what it then delivers raise the estimate here. Packet trains only stand
//! in until a busy sample has confirmed the estimate.

use std::{collections::VecDeque, time::Duration};

/// How long a sample keeps the estimate up: long enough to bridge the 100 ms
/// stalls and opportunity bursts of LTE, short enough that a link whose
/// capacity fell without a queue telling (it carried little) is re-measured
/// within a couple of seconds.
pub const FILTER_SPAN: Duration = Duration::from_millis(1500);
/// Span a rate sample is taken over: two feedback intervals, so one interval
/// whose feedback timing was late (its bytes counted in the next) does not
/// make a sample of twice the rate.
const SAMPLE_SPAN: Duration = Duration::from_millis(100);
/// Queueing delay above which the link counts as busy (delivering all it
/// can), ms. Above the lab's link jitter (≤ 6 ms) and the hub's per-interval
/// averaging, below the 50 ms backlog a budget allows.
pub const BUSY_QUEUE_MS: f64 = 10.0;
/// Queueing delay above which a rising queue cuts the estimate, ms.
pub const CUT_QUEUE_MS: f64 = 25.0;
/// Queueing delay that cuts the estimate even when it no longer rises, ms: a
/// standing queue that long is a rate estimated too high.
const STANDING_QUEUE_MS: f64 = 60.0;
/// Span of the backlogged intervals whose delivery rate is the estimate:
/// several feedback intervals, so that one of LTE's 100 ms stalls lowers it
/// by a third rather than to nothing (resetting at every interval that was
/// not backlogged, the first interval of a run — often a stall — set the
/// estimate alone: 0.2 Mbit/s again and again on a real LTE trace), while a
/// link stepping down from where it was not backlogged is followed at once.
const BUSY_SPAN: Duration = Duration::from_millis(300);
/// Busy time the hub must have seen within [`BUSY_SPAN`] before its queued
/// counts are the estimate: a few packets queued in one burst of a radio's
/// delivery say more about the burst than about the link.
const QUEUED_MIN: Duration = Duration::from_millis(20);
/// Smallest estimate, Mbit/s: a link cut to nothing in a 50 ms stall still
/// gets a trickle, whose delivery raises it again.
pub const MIN_RATE_MBIT_S: f64 = 0.2;

/// One feedback interval as the rate model sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Bytes the hub received on the link in the interval.
    pub bytes: u64,
    /// Its length on the hub's clock.
    pub elapsed: Duration,
    /// Queueing delay (one-way delay above its floor) measured in it, ms.
    pub queue_ms: Option<f64>,
    /// Whether the link held a backlog throughout the interval, by the
    /// hub's acknowledgements (see `LinkEstimator::on_sent`); `None`
    /// where that is not known, and the queueing delay decides.
    pub busy: Option<bool>,
    /// Whether the hub received (nearly) every packet due in the interval —
    /// those the edge sent between the interval's start and end less a base
    /// one-way delay — by the acknowledgements; `None` where not known.
    pub kept_up: Option<bool>,
    /// What the hub counted in the interval as arriving queued behind its
    /// predecessor: bytes, and the arrival gaps they spanned (the time it
    /// saw the link busy). `None` where not known.
    pub queued: Option<(u64, Duration)>,
}

/// The delivery-rate model of one link.
#[derive(Clone, Debug, Default)]
pub struct RateModel {
    /// The last intervals, newest last, covering about [`SAMPLE_SPAN`].
    recent: VecDeque<(u64, Duration)>,
    /// Rate samples (time, Mbit/s, busy) since the last cut, within [`FILTER_SPAN`].
    samples: VecDeque<(Duration, f64, bool)>,
    estimate: Option<f64>,
    /// A busy sample or a cut has measured the link (not only lower bounds).
    confirmed: bool,
    /// The backlogged intervals (arrival, bytes, length) within
    /// [`BUSY_SPAN`], newest last.
    busy_run: VecDeque<(Duration, u64, Duration)>,
    last_queue_ms: Option<f64>,
    /// When an interval last showed the link busy (or cut the estimate).
    last_busy: Option<Duration>,
    /// The hub's queued counts (arrival, bytes, busy time) within
    /// [`BUSY_SPAN`], newest last.
    queued_run: VecDeque<(Duration, u64, Duration)>,
}

impl RateModel {
    /// A link nothing was delivered on yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The delivery-rate estimate, Mbit/s, if any interval carried data.
    pub fn estimate(&self) -> Option<f64> {
        self.estimate
    }

    /// Whether the estimate was measured on a busy link (a capacity) rather
    /// than only bounded from below by what the link was sent.
    pub fn confirmed(&self) -> bool {
        self.confirmed
    }

    /// Whether the link was busy within `span` before `now`: its estimate is
    /// then a capacity measured lately. Otherwise it is at best a lower
    /// bound — samples since only raised it to what the link was sent — and
    /// a backlog priced at it is an upper bound.
    pub fn busy_within(&self, now: Duration, span: Duration) -> bool {
        self.last_busy.is_some_and(|t| now.saturating_sub(t) <= span)
    }

    /// A feedback interval arrived at `now`.
    ///
    /// Where the hub saw the link busy lately — packets arriving queued
    /// behind their predecessor for at least [`QUEUED_MIN`] within
    /// [`BUSY_SPAN`] — what it delivered over that busy time *is* its
    /// capacity. Otherwise the sender's own evidence decides (the
    /// queueing delay, the acknowledgements), whose busy intervals are the
    /// ones backlogged *throughout*: the slow ones, an estimate biased low
    /// (closed-loop simulation on the real LTE trace, docs/BENCHMARKS.md).
    pub fn on_interval(&mut self, now: Duration, iv: Interval) {
        self.on_interval_by_sender(now, iv);
        if let Some((bytes, busy)) = iv.queued {
            self.queued_run.push_back((now, bytes, busy));
        }
        while self.queued_run.front().is_some_and(|r| now.saturating_sub(r.0) >= BUSY_SPAN) {
            self.queued_run.pop_front();
        }
        // Saturating: the counts come off the network (a forged feedback's
        // deltas may be anything), and adding them must not overflow.
        let (bytes, busy) = self
            .queued_run
            .iter()
            .fold((0u64, Duration::ZERO), |(b, t), r| (b.saturating_add(r.1), t.saturating_add(r.2)));
        if busy >= QUEUED_MIN {
            let rate = (bytes as f64 * 8.0 / busy.as_secs_f64() / 1e6).max(MIN_RATE_MBIT_S);
            self.estimate = Some(rate);
            self.confirmed = true;
            self.last_busy = Some(now);
            self.samples.clear();
            self.samples.push_back((now, rate, true));
        }
    }

    /// [`Self::on_interval`] from the sender's evidence alone.
    fn on_interval_by_sender(&mut self, now: Duration, iv: Interval) {
        let queue = iv.queue_ms.filter(|q| q.is_finite());
        let rising = match (queue, self.last_queue_ms) {
            (Some(q), Some(prev)) => q > prev,
            _ => false,
        };
        self.last_queue_ms = queue;
        if iv.elapsed.is_zero() {
            return;
        }
        if let Some(backlogged) = iv.busy {
            // A queue building in the one-way delay is the first sign of a
            // link stepping down: the acknowledgements show a backlog
            // through a whole interval only one interval later, and at the
            // old rate that interval is half a second of queue on a link
            // that fell 20 → 2 Mbit/s (closed-loop simulation).
            // Not when the link kept up with what it was due: a one-way
            // delay that rises while every packet still arrives is jitter
            // or the machine's own timing, not a link falling short — cut
            // on it, constant 10 Mbit/s links read 2.9-6.3 for seconds
            // (lab, nat-rebind on a loaded machine) and deadline drops
            // priced at that shed packets the links carried in time.
            let q = queue.unwrap_or(0.0);
            let building =
                iv.kept_up != Some(true) && (q > STANDING_QUEUE_MS || (q > CUT_QUEUE_MS && rising));
            return self.on_acknowledged_interval(now, iv, backlogged || building);
        }
        let interval_mbit_s = iv.bytes as f64 * 8.0 / iv.elapsed.as_secs_f64() / 1e6;
        self.recent.push_back((iv.bytes, iv.elapsed));
        while self.recent.len() > 1
            && self.recent.iter().skip(1).map(|r| r.1).sum::<Duration>() >= SAMPLE_SPAN
        {
            self.recent.pop_front();
        }
        let (bytes, secs) =
            self.recent.iter().fold((0u64, 0.0), |(b, s), r| (b + r.0, s + r.1.as_secs_f64()));
        let sample = bytes as f64 * 8.0 / secs / 1e6;
        let q = queue.unwrap_or(0.0);
        let busy = q > BUSY_QUEUE_MS;
        // A queue is building: the link delivers less than it is sent. What
        // it delivered lately is what it carries now — over the sample's two
        // intervals, not one: a single interval reads low whenever the hub's
        // timing moved some of its bytes into the next one, and cutting on
        // it took a 12 Mbit/s link to 3.4 during warm-up (lab,
        // steady-asymmetric). A real step down is still followed within two
        // intervals, the second cutting again.
        if q > STANDING_QUEUE_MS || (q > CUT_QUEUE_MS && rising) {
            let cut = interval_mbit_s.max(sample).max(MIN_RATE_MBIT_S);
            if self.estimate.is_none_or(|e| cut < e) {
                self.estimate = Some(cut);
                self.samples.clear();
                self.samples.push_back((now, cut, true));
            }
            self.confirmed = true;
            self.last_busy = Some(now);
            return;
        }
        if bytes == 0 && !busy {
            // Nothing sent, nothing learnt.
            return;
        }
        self.samples.push_back((now, sample, busy));
        while self.samples.front().is_some_and(|s| now.saturating_sub(s.0) > FILTER_SPAN) {
            self.samples.pop_front();
        }
        let window_max = self.samples.iter().map(|s| s.1).fold(0.0, f64::max);
        let any_busy = self.samples.iter().any(|s| s.2);
        self.confirmed |= busy;
        if busy {
            self.last_busy = Some(now);
        }
        self.estimate = Some(match self.estimate {
            // At least what was delivered lately ...
            Some(e) if window_max >= e => window_max,
            // ... and no more than a busy link delivered lately.
            Some(_) if any_busy => window_max.max(MIN_RATE_MBIT_S),
            Some(e) => e,
            None => window_max.max(MIN_RATE_MBIT_S),
        });
    }
}

impl RateModel {
    /// An interval whose backlog the acknowledgements tell: backlogged, the
    /// link delivered all it could, and the run's rate *is* its capacity,
    /// up or down; otherwise what it delivered is only a lower bound.
    fn on_acknowledged_interval(&mut self, now: Duration, iv: Interval, busy: bool) {
        self.recent.push_back((iv.bytes, iv.elapsed));
        while self.recent.len() > 1
            && self.recent.iter().skip(1).map(|r| r.1).sum::<Duration>() >= SAMPLE_SPAN
        {
            self.recent.pop_front();
        }
        if busy {
            self.busy_run.push_back((now, iv.bytes, iv.elapsed));
        }
        while self.busy_run.front().is_some_and(|r| now.saturating_sub(r.0) >= BUSY_SPAN) {
            self.busy_run.pop_front();
        }
        if busy {
            let (bytes, secs) =
                self.busy_run.iter().fold((0u64, 0.0), |(b, s), r| (b + r.1, s + r.2.as_secs_f64()));
            let rate = (bytes as f64 * 8.0 / secs / 1e6).max(MIN_RATE_MBIT_S);
            self.estimate = Some(rate);
            self.confirmed = true;
            self.last_busy = Some(now);
            self.samples.clear();
            self.samples.push_back((now, rate, true));
            return;
        }
        let (bytes, secs) =
            self.recent.iter().fold((0u64, 0.0), |(b, s), r| (b + r.0, s + r.1.as_secs_f64()));
        if bytes == 0 {
            return;
        }
        let sample = bytes as f64 * 8.0 / secs / 1e6;
        self.samples.push_back((now, sample, false));
        while self.samples.front().is_some_and(|s| now.saturating_sub(s.0) > FILTER_SPAN) {
            self.samples.pop_front();
        }
        self.estimate = Some(self.estimate.map_or(sample, |e| e.max(sample)).max(MIN_RATE_MBIT_S));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn iv(mbit_s: f64, queue_ms: f64) -> Interval {
        Interval {
            bytes: (mbit_s * 1e6 / 8.0 * 0.05) as u64,
            elapsed: ms(50),
            queue_ms: Some(queue_ms),
            busy: None,
            kept_up: None,
            queued: None,
        }
    }

    #[test]
    fn an_idle_links_light_load_only_raises() {
        let mut m = RateModel::new();
        for i in 0..10 {
            m.on_interval(ms(i * 50), iv(8.0, 15.0)); // busy at 8
        }
        assert!((m.estimate().unwrap() - 8.0).abs() < 0.1);
        for i in 10..100 {
            m.on_interval(ms(i * 50), iv(1.0, 0.0)); // sent little, no queue
        }
        assert!((m.estimate().unwrap() - 8.0).abs() < 0.1, "lower bounds do not lower it");
    }

    #[test]
    fn a_rising_queue_cuts_to_the_delivered_rate_at_once() {
        let mut m = RateModel::new();
        for i in 0..20 {
            m.on_interval(ms(i * 50), iv(20.0, 12.0));
        }
        m.on_interval(ms(1000), iv(2.0, 30.0));
        m.on_interval(ms(1050), iv(2.0, 60.0));
        let e = m.estimate().unwrap();
        assert!((e - 2.0).abs() < 0.1, "{e}");
    }

    #[test]
    fn a_rising_delay_on_a_link_that_keeps_up_cuts_nothing() {
        let acked = |mbit_s: f64, queue_ms: f64, kept_up: bool| Interval {
            busy: Some(false),
            kept_up: Some(kept_up),
            ..iv(mbit_s, queue_ms)
        };
        let mut m = RateModel::new();
        for i in 0..20 {
            m.on_interval(ms(i * 50), Interval { busy: Some(true), ..iv(10.0, 12.0) });
        }
        // Sent 3 Mbit/s, all of it received: the delay's rise is jitter.
        m.on_interval(ms(1000), acked(3.0, 30.0, true));
        m.on_interval(ms(1050), acked(3.0, 70.0, true));
        assert!((m.estimate().unwrap() - 10.0).abs() < 0.1, "{:?}", m.estimate());
        // The same rise with most of what was due missing: a step down,
        // averaged with the busy intervals of the last 300 ms.
        m.on_interval(ms(1100), acked(2.0, 90.0, false));
        assert!(m.estimate().unwrap() < 9.0, "{:?}", m.estimate());
    }

    #[test]
    fn the_hubs_queued_counts_are_the_capacity_while_it_saw_the_link_busy() {
        // Backlogged throughout by the acknowledgements, a link read 4 Mbit/s;
        // the hub saw its queued packets leave at 12 Mbit/s (30 ms busy per
        // 50 ms interval, 45 kB): the acknowledgements picked slow intervals.
        let queued = |busy_ms: u64, mbit_s: f64| {
            Some(((mbit_s * 1e6 / 8.0 * busy_ms as f64 / 1e3) as u64, ms(busy_ms)))
        };
        let mut m = RateModel::new();
        for i in 0..10 {
            m.on_interval(
                ms(i * 50),
                Interval { busy: Some(true), queued: queued(30, 12.0), ..iv(4.0, 30.0) },
            );
        }
        let e = m.estimate().unwrap();
        assert!((e - 12.0).abs() < 0.1, "{e}");
        assert!(m.confirmed());
        // Too little busy time (a burst of a radio's delivery): the sender's
        // evidence decides again once the busy intervals leave the span.
        for i in 10..20 {
            m.on_interval(ms(i * 50), Interval { busy: Some(true), queued: queued(0, 0.0), ..iv(4.0, 30.0) });
        }
        let e = m.estimate().unwrap();
        assert!((e - 4.0).abs() < 0.1, "{e}");
        // Counts that went backwards (`None`) add nothing.
        m.on_interval(ms(1000), Interval { busy: Some(true), queued: None, ..iv(4.0, 30.0) });
        assert!((m.estimate().unwrap() - 4.0).abs() < 0.1);
        // Hostile counts (forged feedback) neither overflow nor panic.
        let hostile = Some((u64::MAX, Duration::from_micros(u64::MAX)));
        m.on_interval(ms(1050), Interval { queued: hostile, ..iv(4.0, 30.0) });
        m.on_interval(ms(1100), Interval { queued: hostile, ..iv(4.0, 30.0) });
        assert!(m.estimate().is_some_and(f64::is_finite));
    }

    #[test]
    fn a_stall_does_not_cut_to_nothing() {
        let mut m = RateModel::new();
        m.on_interval(ms(0), iv(10.0, 12.0));
        m.on_interval(ms(50), iv(0.0, 40.0));
        m.on_interval(ms(100), iv(0.0, 90.0));
        assert_eq!(m.estimate(), Some(MIN_RATE_MBIT_S));
        m.on_interval(ms(150), iv(10.0, 20.0));
        assert!(m.estimate().unwrap() > 4.0, "delivery after the stall raises it again");
    }

    #[test]
    fn busy_samples_lower_it_after_the_window() {
        let mut m = RateModel::new();
        for i in 0..20 {
            m.on_interval(ms(i * 50), iv(12.0, 15.0));
        }
        for i in 20..80 {
            m.on_interval(ms(i * 50), iv(6.0, 15.0));
        }
        assert!((m.estimate().unwrap() - 6.0).abs() < 0.1);
        assert!(m.confirmed());
    }
}
