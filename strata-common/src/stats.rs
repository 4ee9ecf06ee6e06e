//! Order statistics of measurements, one definition for every report.
//!
//! A percentile has several textbook definitions (nearest rank, linear
//! interpolation between ranks, rounding the index), and on the few hundred
//! samples of a test or a benchmark they differ by a whole sample — enough to
//! put a p99 on either side of a threshold. The controller's link windows,
//! the lab's analyzer and the benchmarks therefore all use [`percentile`]:
//! the **nearest-rank** method (as in NIST's and Wikipedia's description),
//! which always returns a sample that was measured, never an interpolated
//! value, and for which "p95 ≤ x" means "at least 95 % of the samples are
//! ≤ x".

/// The `p`th percentile (0 ≤ p ≤ 100) of `sorted`, an ascending slice, by
/// nearest rank: the sample of 1-based rank `⌈p/100 × n⌉`, with `p = 0`
/// (rank 0) giving the smallest sample. `p` outside 0..=100 is clamped (NaN
/// counts as 0). `None` for an empty slice.
///
/// Works on anything `Copy`, so on `f64`, integers and `Duration` alike; the
/// slice must be sorted (with `f64::total_cmp` for floats), which debug
/// builds check.
pub fn percentile<T: Copy + PartialOrd>(sorted: &[T], p: f64) -> Option<T> {
    debug_assert!(sorted.is_sorted(), "percentile of an unsorted slice");
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let p = if p >= 0.0 { p.min(100.0) } else { 0.0 };
    // ⌈p × n / 100⌉ without `f64::ceil` (not in `core`); p × n first keeps
    // integral percentiles of integral counts exact.
    let exact = p * n as f64 / 100.0;
    let truncated = exact as usize;
    let rank = if (truncated as f64) < exact { truncated + 1 } else { truncated };
    Some(sorted[rank.clamp(1, n) - 1])
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::*;

    #[test]
    fn empty_has_no_percentile() {
        assert_eq!(percentile::<f64>(&[], 50.0), None);
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        for p in [0.0, 0.1, 50.0, 99.9, 100.0] {
            assert_eq!(percentile(&[7u32], p), Some(7));
        }
    }

    #[test]
    fn a_hundred_samples_have_exact_ranks() {
        let v: [u32; 100] = core::array::from_fn(|i| i as u32 + 1);
        for p in 1..=100 {
            assert_eq!(percentile(&v, f64::from(p)), Some(p), "p{p}");
        }
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 0.5), Some(1));
        assert_eq!(percentile(&v, 94.01), Some(95));
    }

    #[test]
    fn nearest_rank_of_a_thousand() {
        let v: [f64; 1000] = core::array::from_fn(|i| i as f64 + 1.0);
        let at = |p| percentile(&v, p).unwrap();
        assert_eq!((at(50.0), at(95.0), at(99.0), at(99.9)), (500.0, 950.0, 990.0, 999.0));
    }

    #[test]
    fn odd_counts_round_the_rank_up() {
        // 51 samples: the median is the 26th (⌈25.5⌉).
        let v: [u32; 51] = core::array::from_fn(|i| i as u32);
        assert_eq!(percentile(&v, 50.0), Some(25));
        // 40 samples: p95 is the 38th.
        let v: [Duration; 40] = core::array::from_fn(|i| Duration::from_millis(i as u64 + 1));
        assert_eq!(percentile(&v, 95.0), Some(Duration::from_millis(38)));
    }

    #[test]
    fn out_of_range_percentiles_clamp() {
        let v = [1, 2, 3];
        assert_eq!(percentile(&v, -5.0), Some(1));
        assert_eq!(percentile(&v, f64::NAN), Some(1));
        assert_eq!(percentile(&v, 100.0), Some(3));
        assert_eq!(percentile(&v, 1e9), Some(3));
        assert_eq!(percentile(&v, f64::INFINITY), Some(3));
    }
}
