//! The statistics that describe a capacity trace as a link scheduler sees it.
//!
//! A cellular uplink is characterised less by its mean than by how its rate
//! moves: how far the per-second rate swings (p10 / p50 / p90), how long a
//! swing lasts (the autocorrelation time of the per-second rate), how often
//! the link carries nothing at all for 100 ms (a stall: what a deadline of
//! 150 ms cannot absorb), and how its opportunities bunch within
//! milliseconds (the scheduler's grants). These numbers compare a real trace
//! with the synthetic `cellular` model fitted to it (`cargo xtask trace
//! stats`, docs/BENCHMARKS.md).

use std::fmt;

use serde::Serialize;
use strata_common::stats::percentile;

use super::trace::{OPPORTUNITY_BYTES, Trace};

/// One period of a trace, summarised.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceStats {
    /// Length of one period, s.
    pub duration_s: f64,
    /// Mean capacity, Mbit/s.
    pub mean_mbit_s: f64,
    /// 10th percentile of the per-second capacity, Mbit/s.
    pub p10_mbit_s: f64,
    /// Median per-second capacity, Mbit/s.
    pub p50_mbit_s: f64,
    /// 90th percentile of the per-second capacity, Mbit/s.
    pub p90_mbit_s: f64,
    /// Share of 100 ms windows without any opportunity.
    pub empty_100ms: f64,
    /// Gaps of at least 100 ms between opportunities, per minute.
    pub gaps_100ms_per_min: f64,
    /// Lag at which the autocorrelation of the per-second capacity first
    /// falls below 1/e, s (interpolated between whole seconds).
    pub autocorrelation_s: f64,
    /// Mean opportunities in a millisecond that has any (burst size).
    pub burst_mean: f64,
    /// 90th percentile of the burst size.
    pub burst_p90: f64,
}

impl TraceStats {
    /// The statistics of one period of `trace` (whole seconds and 100 ms
    /// windows; a partial last one is left out).
    pub fn of(trace: &Trace) -> Self {
        let period_ms = trace.period_ms();
        let opportunities = trace.opportunities_ms();
        let bin_count = |width_ms: u64| -> Vec<u64> {
            let n = (period_ms / width_ms).max(1) as usize;
            let mut bins = vec![0u64; n];
            for &t in opportunities {
                // Opportunity times run 0..=period; the last one closes the period.
                let b = ((t.min(period_ms - 1)) / width_ms) as usize;
                if let Some(slot) = bins.get_mut(b) {
                    *slot += 1;
                }
            }
            bins
        };
        let mbit_s = |opps: u64, width_ms: u64| {
            opps as f64 * OPPORTUNITY_BYTES as f64 * 8.0 / 1e6 / (width_ms as f64 / 1000.0)
        };
        let mut per_second: Vec<f64> = bin_count(1000).into_iter().map(|o| mbit_s(o, 1000)).collect();
        let autocorrelation_s = autocorrelation_time(&per_second);
        per_second.sort_by(f64::total_cmp);
        let at = |v: &[f64], p: f64| percentile(v, p).unwrap_or_default();
        let windows = bin_count(100);
        let empty_100ms = windows.iter().filter(|&&o| o == 0).count() as f64 / windows.len() as f64;

        // Bursts: opportunities sharing a millisecond.
        let mut bursts: Vec<f64> = Vec::new();
        let mut gaps_100ms = 0u64;
        let mut i = 0;
        while i < opportunities.len() {
            let t = opportunities[i];
            let j = opportunities[i..].partition_point(|&u| u == t) + i;
            bursts.push((j - i) as f64);
            if let Some(&next) = opportunities.get(j)
                && next - t >= 100
            {
                gaps_100ms += 1;
            }
            i = j;
        }
        let burst_mean = bursts.iter().sum::<f64>() / bursts.len().max(1) as f64;
        bursts.sort_by(f64::total_cmp);
        Self {
            duration_s: period_ms as f64 / 1000.0,
            mean_mbit_s: trace.mean_mbit_s(),
            p10_mbit_s: at(&per_second, 10.0),
            p50_mbit_s: at(&per_second, 50.0),
            p90_mbit_s: at(&per_second, 90.0),
            empty_100ms,
            gaps_100ms_per_min: gaps_100ms as f64 / (period_ms as f64 / 60_000.0),
            autocorrelation_s,
            burst_mean,
            burst_p90: at(&bursts, 90.0),
        }
    }
}

/// First lag (in samples, interpolated) where the autocorrelation of `x`
/// falls below 1/e; a series that never gets there within a quarter of its
/// length reports that quarter (a lower bound).
pub fn autocorrelation_time(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 4 {
        return 0.0;
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    if var <= 0.0 {
        return 0.0;
    }
    let acf = |lag: usize| {
        (0..n - lag).map(|i| (x[i] - mean) * (x[i + lag] - mean)).sum::<f64>() / (n - lag) as f64 / var
    };
    let threshold = (-1.0f64).exp();
    let mut previous = 1.0;
    for lag in 1..=n / 4 {
        let r = acf(lag);
        if r < threshold {
            return lag as f64 - 1.0 + (previous - threshold) / (previous - r);
        }
        previous = r;
    }
    (n / 4) as f64
}

impl fmt::Display for TraceStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "duration                     {:8.1} s", self.duration_s)?;
        writeln!(f, "mean                         {:8.2} Mbit/s", self.mean_mbit_s)?;
        writeln!(
            f,
            "per-second p10 / p50 / p90   {:.2} / {:.2} / {:.2} Mbit/s",
            self.p10_mbit_s, self.p50_mbit_s, self.p90_mbit_s
        )?;
        writeln!(f, "empty 100 ms windows         {:8.1} %", self.empty_100ms * 100.0)?;
        writeln!(f, "gaps ≥ 100 ms                {:8.1} per minute", self.gaps_100ms_per_min)?;
        writeln!(f, "rate autocorrelation time    {:8.1} s", self.autocorrelation_s)?;
        write!(
            f,
            "burst size mean / p90        {:.2} / {:.0} opportunities per ms",
            self.burst_mean, self.burst_p90
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_trace_is_flat_and_a_switching_one_is_not() {
        let flat = TraceStats::of(&Trace::constant(12.0).unwrap());
        assert!((flat.mean_mbit_s - 12.0).abs() < 0.05);
        assert!((flat.p10_mbit_s - flat.p90_mbit_s).abs() < 0.05);
        assert_eq!(flat.empty_100ms, 0.0);
        assert_eq!(flat.burst_mean, 1.0);

        // 4 s at 24 Mbit/s, 4 s of nothing but one opportunity, repeated.
        let rates: Vec<f64> = (0..64).map(|s| if (s / 4) % 2 == 0 { 24.0 } else { 0.0 }).collect();
        let t = Trace::from_rates_mbit_s(&rates, 1000).unwrap();
        let s = TraceStats::of(&t);
        assert!((s.empty_100ms - 0.5).abs() < 0.03, "{}", s.empty_100ms);
        assert!(s.p10_mbit_s < 0.1 && (s.p90_mbit_s - 24.0).abs() < 0.1, "{s:?}");
        // A square wave of period 8 s: the autocorrelation falls below 1/e within ~1.3 s of lag.
        assert!((1.0..2.0).contains(&s.autocorrelation_s), "{}", s.autocorrelation_s);
        assert!((s.gaps_100ms_per_min - 7.5).abs() < 0.5, "one 4 s gap per 8 s: {}", s.gaps_100ms_per_min);
        assert!((s.burst_mean - 2.0).abs() < 0.01, "24 Mbit/s is two opportunities per ms: {}", s.burst_mean);
    }

    #[test]
    fn autocorrelation_time_of_a_smooth_and_a_random_series() {
        let smooth: Vec<f64> = (0..400).map(|i| (f64::from(i) / 20.0).sin()).collect();
        assert!(autocorrelation_time(&smooth) > 10.0);
        let alternating: Vec<f64> = (0..400).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        assert!(autocorrelation_time(&alternating) < 1.0);
        assert_eq!(autocorrelation_time(&[1.0; 20]), 0.0);
    }
}
