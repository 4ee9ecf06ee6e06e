//! Capacity traces in the mahimahi format.
//!
//! A trace is a text file with one integer per line: a time in milliseconds
//! at which the link may deliver one 1500-byte packet ("delivery
//! opportunity"). Several lines may carry the same time (more capacity in that
//! millisecond). The trace repeats with a period equal to its last
//! timestamp, the convention of mahimahi's `mm-link`, so a 60-second trace
//! drives an arbitrarily long run.

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
        let round = t_ns / period_ns;
        let within = t_ns % period_ns;
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
