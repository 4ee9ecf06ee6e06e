//! Samples over a sliding time window, summarized by percentiles.
//!
//! Cellular delay is heavy-tailed: a mean is dragged around by one 2-second
//! spike, a median is not, and the p95/p99 say how bad the tail is. Every
//! delay statistic of a link is therefore a percentile of a time window.

use std::{collections::VecDeque, time::Duration};

/// The most samples a window keeps, whatever its span. Samples come from
/// the network (probe replies, feedback): a flood of them — forged, or
/// replies to a flood of probes — must not grow a window without bound,
/// and every control tick sorts it. Genuine probing at the shortest
/// interval the configuration allows (10 ms) fills a 5 s window with 500;
/// past the cap the oldest go first, so a flood shortens the window's
/// reach in time instead of its memory growing.
pub const MAX_SAMPLES: usize = 2048;

/// Timestamped samples no older than `span`, at most [`MAX_SAMPLES`].
#[derive(Clone, Debug)]
pub struct Window {
    span: Duration,
    samples: VecDeque<(Duration, f64)>,
}

impl Window {
    /// An empty window keeping `span` of history.
    pub fn new(span: Duration) -> Self {
        Self { span, samples: VecDeque::new() }
    }

    /// Adds a sample taken at `now` and forgets what fell out of the window.
    /// Non-finite samples are ignored; a clock that went backwards does not
    /// reorder history (the sample is stamped with the latest time seen).
    pub fn push(&mut self, now: Duration, value: f64) {
        if !value.is_finite() {
            return;
        }
        let now = self.samples.back().map_or(now, |&(t, _)| t.max(now));
        self.samples.push_back((now, value));
        self.expire(now);
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Forgets samples older than `span` before `now`.
    pub fn expire(&mut self, now: Duration) {
        while let Some(&(t, _)) = self.samples.front() {
            if now.saturating_sub(t) > self.span {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// No samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `q` quantile (0..=1, nearest rank), if there are samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let mut v: Vec<f64> = self.samples.iter().map(|&(_, x)| x).collect();
        v.sort_by(f64::total_cmp);
        strata_common::stats::percentile(&v, q * 100.0)
    }

    /// Smallest sample.
    pub fn min(&self) -> Option<f64> {
        self.samples.iter().map(|&(_, x)| x).min_by(f64::total_cmp)
    }

    /// Sum of the samples.
    pub fn sum(&self) -> f64 {
        self.samples.iter().map(|&(_, x)| x).sum()
    }

    /// Mean of the samples (0 if empty) — for counts, not for delays.
    pub fn mean(&self) -> f64 {
        if self.samples.is_empty() { 0.0 } else { self.sum() / self.samples.len() as f64 }
    }

    /// The samples, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (Duration, f64)> + '_ {
        self.samples.iter().copied()
    }

    /// The most recent sample and its time.
    pub fn last(&self) -> Option<(Duration, f64)> {
        self.samples.back().copied()
    }

    /// Trend in units per second: the median of the slopes between samples
    /// half a window apart (Theil–Sen style, robust to single outliers).
    pub fn slope_per_s(&self) -> Option<f64> {
        let n = self.samples.len();
        if n < 4 {
            return None;
        }
        let half = n / 2;
        let mut slopes: Vec<f64> = (0..n - half)
            .filter_map(|i| {
                let (t0, a) = self.samples[i];
                let (t1, b) = self.samples[i + half];
                let dt = (t1 - t0).as_secs_f64();
                (dt > 0.0).then(|| (b - a) / dt)
            })
            .collect();
        if slopes.is_empty() {
            return None;
        }
        slopes.sort_by(f64::total_cmp);
        Some(slopes[slopes.len() / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn keeps_only_the_span_and_answers_percentiles() {
        let mut w = Window::new(ms(1000));
        for i in 0..100u64 {
            w.push(ms(i * 20), i as f64);
        }
        // 2 s of samples at 50/s in a 1 s window: the last 51.
        assert_eq!(w.len(), 51);
        assert_eq!(w.min(), Some(49.0));
        assert_eq!(w.quantile(0.5), Some(74.0));
        assert_eq!(w.quantile(1.0), Some(99.0));
    }

    #[test]
    fn slope_ignores_a_single_spike() {
        let mut w = Window::new(ms(2000));
        for i in 0..40u64 {
            let spike = if i == 20 { 500.0 } else { 0.0 };
            w.push(ms(i * 50), 10.0 + i as f64 * 0.5 + spike); // +10 per second
        }
        let s = w.slope_per_s().unwrap();
        assert!((s - 10.0).abs() < 0.5, "{s}");
    }

    #[test]
    fn absurd_input_is_harmless() {
        let mut w = Window::new(ms(100));
        w.push(ms(10), f64::NAN);
        w.push(ms(10), f64::INFINITY);
        assert!(w.is_empty());
        w.push(ms(50), 1.0);
        w.push(ms(20), 2.0); // clock went backwards
        assert_eq!(w.len(), 2);
        w.push(Duration::from_secs(1_000_000), 3.0); // clock jumped ahead
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn a_flood_of_samples_is_bounded_in_count_keeping_the_newest() {
        let mut w = Window::new(Duration::from_secs(5));
        // 100 000 samples within one second: a probe-reply flood.
        for i in 0..100_000u64 {
            w.push(Duration::from_micros(i * 10), i as f64);
        }
        assert_eq!(w.len(), MAX_SAMPLES);
        assert_eq!(w.last().map(|(_, v)| v), Some(99_999.0));
        assert_eq!(w.min(), Some((100_000 - MAX_SAMPLES) as f64));
    }
}
