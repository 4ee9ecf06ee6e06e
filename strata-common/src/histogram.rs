//! Buckets of the host queueing-delay histogram (`STRATA_QDELAY`).
//!
//! The sampling programs count each packet's wait on a link interface in a
//! per-CPU row of [`DELAY_BUCKETS`] counters; the controller exports the rows
//! as a Prometheus histogram. Both must agree on the bucket edges, or the
//! exported `le` labels lie about the counts under them.
//!
//! Buckets are powers of two of whole microseconds, because a log2 needs no
//! division or loop in eBPF (`leading_zeros`) and 32 of them cover 1 µs to
//! over half an hour: bucket 0 counts delays under 1 µs, bucket `b` delays of
//! `[2^(b-1), 2^b)` µs, and the last bucket everything longer. A delay is
//! truncated to whole µs first, so in nanoseconds bucket `b` holds
//! `[2^(b-1) × 1000, 2^b × 1000)`.
//!
//! * [`delay_bucket`]: kernel side, the bucket a delay is counted in;
//! * [`bucket_upper_us`], [`bucket_le_seconds`]: controller side, the
//!   bucket's (exclusive) upper edge, `None`/`+Inf` for the last.

use crate::maps::DELAY_BUCKETS;

/// The bucket a delay of `ns` nanoseconds is counted in.
#[inline(always)]
pub const fn delay_bucket(ns: u64) -> u32 {
    let us = ns / 1000;
    if us == 0 {
        return 0;
    }
    let b = u64::BITS - us.leading_zeros();
    if b < DELAY_BUCKETS - 1 { b } else { DELAY_BUCKETS - 1 }
}

/// Upper edge of bucket `b`, µs: every delay counted in it is shorter.
/// `None` for the last bucket (and beyond), which has no upper edge.
#[inline]
pub const fn bucket_upper_us(b: u32) -> Option<u64> {
    if b + 1 >= DELAY_BUCKETS { None } else { Some(1 << b) }
}

/// Upper edge of bucket `b` in seconds, as a Prometheus `le` label
/// (`+Inf` for the last bucket).
#[inline]
pub fn bucket_le_seconds(b: usize) -> f64 {
    match u32::try_from(b) {
        Ok(b) => match bucket_upper_us(b) {
            Some(us) => us as f64 / 1e6,
            None => f64::INFINITY,
        },
        Err(_) => f64::INFINITY,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn edges() {
        assert_eq!(delay_bucket(0), 0);
        assert_eq!(delay_bucket(999), 0);
        assert_eq!(delay_bucket(1_000), 1);
        assert_eq!(delay_bucket(1_999), 1);
        assert_eq!(delay_bucket(2_000), 2);
        assert_eq!(delay_bucket(1_024_000), 11);
        assert_eq!(delay_bucket(u64::MAX), DELAY_BUCKETS - 1);
        assert_eq!(bucket_le_seconds(0), 1e-6);
        assert_eq!(bucket_le_seconds(10), 1024e-6);
        assert!(bucket_le_seconds(DELAY_BUCKETS as usize - 1).is_infinite());
        assert!(bucket_le_seconds(usize::MAX).is_infinite());
    }

    #[test]
    fn every_edge_splits_its_neighbours() {
        for b in 0..DELAY_BUCKETS - 1 {
            let edge_ns = bucket_upper_us(b).unwrap() * 1000;
            assert_eq!(delay_bucket(edge_ns - 1), b, "just under the edge of {b}");
            assert_eq!(delay_bucket(edge_ns), b + 1, "at the edge of {b}");
        }
        assert_eq!(bucket_upper_us(DELAY_BUCKETS - 1), None);
    }

    proptest! {
        #[test]
        fn a_delay_lies_under_its_buckets_edge_and_over_the_previous_one(ns in any::<u64>()) {
            let b = delay_bucket(ns);
            prop_assert!(b < DELAY_BUCKETS);
            if let Some(upper) = bucket_upper_us(b) {
                prop_assert!(ns < upper * 1000);
            }
            if b > 0 {
                prop_assert!(ns >= bucket_upper_us(b - 1).unwrap() * 1000);
            }
            prop_assert!((ns as f64 / 1e9) < bucket_le_seconds(b as usize));
        }
    }
}
