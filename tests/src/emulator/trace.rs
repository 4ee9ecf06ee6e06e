//! Capacity traces in the mahimahi format.
//!
//! A trace is a text file with one integer per line: a time in milliseconds
//! at which the link may deliver one 1500-byte packet ("delivery
//! opportunity"). Several lines may carry the same time (more capacity in that
//! millisecond). The trace repeats with a period equal to its last
//! timestamp, the convention of mahimahi's `mm-link`, so a 60-second trace
//! drives an arbitrarily long run.
//!
//! One long trace can drive several links: [`Trace::starting_at`] starts a
//! link that far into it (wrapping round), and [`Trace::scaled`] multiplies
//! its rate while keeping the shape of its bursts — what a real uplink looks
//! like next to the downlink a trace was recorded on. Two links whose start
//! offsets lie far apart (further than the rate's correlation time, seconds)
//! see uncorrelated capacity.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context as _, bail, ensure};

/// Bytes one delivery opportunity may carry.
pub const OPPORTUNITY_BYTES: u64 = 1500;

/// A looping capacity trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Opportunity times within one period, ms, non-decreasing.
    opportunities_ms: Vec<u64>,
    /// Length of one period, ms (the last timestamp).
    period_ms: u64,
}

impl Trace {
    /// Parses mahimahi text. Blank lines are ignored; anything else that is
    /// not a non-negative integer, or times that go backwards, is an error
    /// naming the line.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut opportunities_ms = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let t: u64 =
                line.parse().with_context(|| format!("line {}: {line:?} is not a time in ms", n + 1))?;
            if let Some(&last) = opportunities_ms.last() {
                ensure!(t >= last, "line {}: {t} ms comes before the previous {last} ms", n + 1);
            }
            opportunities_ms.push(t);
        }
        let period_ms = *opportunities_ms.last().context("the trace has no delivery opportunity")?;
        if period_ms == 0 {
            bail!("the trace's last timestamp is 0 ms: it has no duration to repeat");
        }
        Ok(Self { opportunities_ms, period_ms })
    }

    /// A trace from opportunity times (ms, non-decreasing, each at most
    /// `period_ms`) repeating every `period_ms`. Unlike [`Trace::parse`] the
    /// period may end after the last opportunity (a silent tail), so such a
    /// trace does not survive [`Trace::to_mahimahi`] unchanged.
    pub fn from_opportunities(opportunities_ms: Vec<u64>, period_ms: u64) -> anyhow::Result<Self> {
        ensure!(!opportunities_ms.is_empty(), "the trace has no delivery opportunity");
        ensure!(period_ms > 0, "a trace needs a period longer than 0 ms");
        ensure!(opportunities_ms.windows(2).all(|w| w[0] <= w[1]), "opportunity times must not go backwards");
        ensure!(
            opportunities_ms.last().is_some_and(|&t| t <= period_ms),
            "an opportunity lies after the end of the {period_ms} ms period"
        );
        Ok(Self { opportunities_ms, period_ms })
    }

    /// Reads a mahimahi trace file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("trace {}", path.display()))
    }

    /// A constant rate, spread evenly over a one-second period.
    pub fn constant(mbit_s: f64) -> anyhow::Result<Self> {
        Self::from_rates_mbit_s(&[mbit_s], 1000)
    }

    /// A trace whose rate is `rates[i]` Mbit/s during the i-th slice of
    /// `slice_ms`, opportunities spread evenly (fractional ones carried over).
    pub fn from_rates_mbit_s(rates: &[f64], slice_ms: u64) -> anyhow::Result<Self> {
        ensure!(!rates.is_empty() && slice_ms > 0, "a trace needs at least one slice of non-zero length");
        ensure!(rates.iter().all(|r| r.is_finite() && *r >= 0.0), "rates must be finite and non-negative");
        let per_ms = |mbit_s: f64| mbit_s * 1e6 / 8.0 / OPPORTUNITY_BYTES as f64 / 1000.0;
        let mut opportunities_ms = Vec::new();
        let mut carry = 0.0;
        for (i, &rate) in rates.iter().enumerate() {
            for ms in 0..slice_ms {
                carry += per_ms(rate);
                let t = i as u64 * slice_ms + ms + 1;
                while carry >= 1.0 {
                    opportunities_ms.push(t);
                    carry -= 1.0;
                }
            }
        }
        let period_ms = rates.len() as u64 * slice_ms;
        // The period is the last timestamp: make sure one sits at the end.
        if opportunities_ms.last() != Some(&period_ms) {
            ensure!(
                !opportunities_ms.is_empty(),
                "a trace of zero capacity cannot be written in mahimahi format"
            );
            opportunities_ms.push(period_ms);
        }
        Ok(Self { opportunities_ms, period_ms })
    }

    /// The same trace started `offset_ms` into it (wrapping round the
    /// period): what was at `offset_ms` is now at 0.
    pub fn starting_at(&self, offset_ms: u64) -> Self {
        let offset = offset_ms % self.period_ms;
        if offset == 0 {
            return self.clone();
        }
        // Times after the offset move to the front; those at or before it
        // move behind them, one period later (an opportunity exactly at the
        // offset belongs to the end of the period, as time 0 does).
        let split = self.opportunities_ms.partition_point(|&t| t <= offset);
        let tail = self.opportunities_ms[split..].iter().map(|&t| t - offset);
        let head = self.opportunities_ms[..split].iter().map(|&t| t + self.period_ms - offset);
        Self { opportunities_ms: tail.chain(head).collect(), period_ms: self.period_ms }
    }

    /// The trace with its rate multiplied by `factor` (> 0): walking the
    /// opportunities in order, each adds `factor` to an accumulator and
    /// every whole unit in it becomes an opportunity at that time. So 0.4
    /// keeps two of every five, 2.5 turns each into two or three, the mean
    /// scales exactly (to within one opportunity per period), a burst stays a
    /// burst and a gap stays a gap.
    pub fn scaled(&self, factor: f64) -> anyhow::Result<Self> {
        ensure!(
            factor.is_finite() && factor > 0.0,
            "the scale must be finite and greater than 0, not {factor}"
        );
        let mut out = Vec::with_capacity((self.opportunities_ms.len() as f64 * factor) as usize + 1);
        // Start half full: a fraction of opportunities is kept evenly spread
        // rather than all late in the period.
        let mut carry = 0.5;
        for &t in &self.opportunities_ms {
            carry += factor;
            while carry >= 1.0 {
                out.push(t);
                carry -= 1.0;
            }
        }
        ensure!(
            !out.is_empty(),
            "scaling by {factor} leaves no delivery opportunity in the trace's {} ms",
            self.period_ms
        );
        Ok(Self { opportunities_ms: out, period_ms: self.period_ms })
    }

    /// This trace until `at_ms`, then a constant `mbit_s` until `horizon_ms`,
    /// where the result's period ends (a capacity step: a handover, a
    /// bearer reconfigured). Keep `horizon_ms` past the end of the run: the
    /// result repeats after it.
    pub fn with_rate_from(&self, at_ms: u64, mbit_s: f64, horizon_ms: u64) -> anyhow::Result<Self> {
        ensure!(mbit_s.is_finite() && mbit_s >= 0.0, "a rate must be finite and non-negative, not {mbit_s}");
        ensure!(horizon_ms > at_ms, "the horizon ({horizon_ms} ms) must lie after the step ({at_ms} ms)");
        let mut out: Vec<u64> = Vec::new();
        let mut k = 0;
        loop {
            let t = self.opportunity_ns(k) / 1_000_000;
            if t >= at_ms {
                break;
            }
            out.push(t);
            k += 1;
        }
        let per_ms = mbit_s * 1e6 / 8.0 / OPPORTUNITY_BYTES as f64 / 1000.0;
        let mut carry = 0.0;
        for t in at_ms + 1..=horizon_ms {
            carry += per_ms;
            while carry >= 1.0 {
                out.push(t);
                carry -= 1.0;
            }
        }
        if out.is_empty() {
            out.push(horizon_ms);
        }
        Self::from_opportunities(out, horizon_ms)
    }

    /// Opportunity times within one period, ms.
    pub fn opportunities_ms(&self) -> &[u64] {
        &self.opportunities_ms
    }

    /// The trace as mahimahi text.
    pub fn to_mahimahi(&self) -> String {
        let mut s = String::with_capacity(self.opportunities_ms.len() * 6);
        for t in &self.opportunities_ms {
            let _ = writeln!(s, "{t}");
        }
        s
    }

    /// Length of one period in ms.
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// Opportunities per period.
    pub fn opportunities_per_period(&self) -> usize {
        self.opportunities_ms.len()
    }

    /// Mean capacity in Mbit/s.
    pub fn mean_mbit_s(&self) -> f64 {
        self.opportunities_ms.len() as f64 * OPPORTUNITY_BYTES as f64 * 8.0
            / (self.period_ms as f64 / 1000.0)
            / 1e6
    }

    /// Time of the `k`-th opportunity since the trace started, in ns.
    pub fn opportunity_ns(&self, k: u64) -> u64 {
        let per = self.opportunities_ms.len() as u64;
        let (round, i) = (k / per, (k % per) as usize);
        (round * self.period_ms + self.opportunities_ms[i]) * 1_000_000
    }

    /// Index of the first opportunity at or after `t_ns`.
    pub fn first_opportunity_at_or_after(&self, t_ns: u64) -> u64 {
        let per = self.opportunities_ms.len() as u64;
        let period_ns = self.period_ms * 1_000_000;
        // A time at a period boundary belongs to the end of the period
        // before: an opportunity at the period's last timestamp lies there.
        let (round, within) = match (t_ns / period_ns, t_ns % period_ns) {
            (round, 0) if round > 0 => (round - 1, period_ns),
            split => split,
        };
        let i = self.opportunities_ms.partition_point(|&ms| ms * 1_000_000 < within) as u64;
        round * per + i
    }

    /// Bytes the trace offers in `[from_ns, to_ns)`.
    pub fn capacity_bytes(&self, from_ns: u64, to_ns: u64) -> u64 {
        if to_ns <= from_ns {
            return 0;
        }
        let a = self.first_opportunity_at_or_after(from_ns);
        let b = self.first_opportunity_at_or_after(to_ns);
        (b - a) * OPPORTUNITY_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loops_and_counts() {
        let t = Trace::parse("1\n1\n5\n\n10\n").unwrap();
        assert_eq!(t.period_ms(), 10);
        assert_eq!(t.opportunity_ns(0), 1_000_000);
        assert_eq!(t.opportunity_ns(3), 10_000_000);
        assert_eq!(t.opportunity_ns(4), 11_000_000, "loops");
        assert_eq!(t.first_opportunity_at_or_after(1_000_000), 0);
        assert_eq!(t.first_opportunity_at_or_after(1_000_001), 2);
        assert_eq!(t.capacity_bytes(0, 10_000_001), 4 * 1500);
        assert_eq!(t.capacity_bytes(0, 20_000_001), 8 * 1500);
    }

    #[test]
    fn rejects_bad_text_naming_the_line() {
        assert!(Trace::parse("").unwrap_err().to_string().contains("no delivery opportunity"));
        assert!(Trace::parse("3\n2\n").unwrap_err().to_string().contains("line 2"));
        assert!(Trace::parse("1\nx\n").unwrap_err().to_string().contains("line 2"));
        assert!(Trace::parse("0\n0\n").unwrap_err().to_string().contains("no duration"));
        assert!(Trace::parse("-1\n").is_err());
    }

    #[test]
    fn an_offset_rotates_the_trace() {
        let t = Trace::parse("1\n2\n2\n7\n10\n").unwrap();
        let r = t.starting_at(2);
        assert_eq!(r.opportunities_ms(), &[5, 8, 9, 10, 10]);
        assert_eq!(r.period_ms(), 10);
        assert_eq!(r.opportunities_per_period(), t.opportunities_per_period());
        assert_eq!(t.starting_at(12), r, "offsets wrap round the period");
        assert_eq!(t.starting_at(0), t);
        // Capacity over a window equals the original's over the shifted window.
        let long = Trace::from_rates_mbit_s(&[1.0, 5.0, 20.0, 2.0], 1000).unwrap();
        let shifted = long.starting_at(1500);
        for (a, b) in [(0, 500), (500, 1500), (1000, 4000), (2600, 7000)] {
            let ms = 1_000_000;
            assert_eq!(
                shifted.capacity_bytes(a * ms, b * ms),
                long.capacity_bytes((a + 1500) * ms, (b + 1500) * ms),
                "{a}..{b} ms"
            );
        }
    }

    #[test]
    fn scaling_keeps_the_mean_exact_and_bursts_in_place() {
        // Bursts of five at 0 and 50 ms, then a long gap.
        let text: String =
            [0, 0, 0, 0, 0, 50, 50, 50, 50, 50, 1000].iter().map(|t| format!("{t}\n")).collect();
        let t = Trace::parse(&text).unwrap();
        let s = t.scaled(0.4).unwrap();
        assert_eq!(s.opportunities_per_period(), 4, "0.4 × 11 ≈ 4");
        assert!(
            s.opportunities_ms().iter().all(|ms| [0, 50, 1000].contains(ms)),
            "{:?}",
            s.opportunities_ms()
        );
        let up = t.scaled(2.5).unwrap();
        assert_eq!(up.opportunities_per_period(), 28, "2.5 × 11 = 27.5, half-full start");
        assert_eq!(up.opportunities_ms().iter().filter(|&&ms| ms == 0).count(), 13, "3+2+3+2+3");
        let real_like = Trace::from_rates_mbit_s(&[3.0, 30.0, 0.5, 12.0], 250).unwrap();
        for factor in [0.1, 0.37, 1.0, 1.7] {
            let m = real_like.scaled(factor).unwrap().mean_mbit_s();
            let want = real_like.mean_mbit_s() * factor;
            assert!((m - want).abs() <= 0.012 + 1e-9, "× {factor}: {m} vs {want}");
        }
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(t.scaled(bad).is_err(), "{bad}");
        }
        assert!(t.scaled(0.01).unwrap_err().to_string().contains("no delivery opportunity"));
    }

    #[test]
    fn a_rate_step_replaces_the_trace_from_its_time() {
        let t = Trace::constant(2.4).unwrap(); // one opportunity per 5 ms
        let stepped = t.with_rate_from(3000, 24.0, 10_000).unwrap();
        let ms = 1_000_000;
        assert_eq!(stepped.capacity_bytes(0, 3000 * ms), t.capacity_bytes(0, 3000 * ms));
        assert_eq!(stepped.capacity_bytes(4000 * ms, 5000 * ms), 2000 * 1500);
        assert_eq!(stepped.period_ms(), 10_000);
        let down = stepped.with_rate_from(6000, 2.4, 10_000).unwrap();
        assert_eq!(down.capacity_bytes(7000 * ms, 8000 * ms), 200 * 1500);
        assert_eq!(down.capacity_bytes(4000 * ms, 5000 * ms), 2000 * 1500);
    }

    #[test]
    fn generated_rates_are_exact() {
        let t = Trace::constant(12.0).unwrap();
        assert!((t.mean_mbit_s() - 12.0).abs() < 0.02, "{}", t.mean_mbit_s());
        assert_eq!(t.opportunities_per_period(), 1000);
        let round_trip = Trace::parse(&t.to_mahimahi()).unwrap();
        assert_eq!(round_trip, t);
        let two = Trace::from_rates_mbit_s(&[24.0, 0.0], 500).unwrap();
        assert!((two.mean_mbit_s() - 12.0).abs() < 0.05);
        assert_eq!(two.capacity_bytes(500_000_001, 999_000_000), 0, "no capacity in the zero slice");
    }
}
