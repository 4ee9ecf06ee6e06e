//! Units of a link's send budget, as the controller writes it and the egress
//! program spends it.
//!
//! The controller estimates each link's capacity in bytes per second; the
//! kernel charges every packet to a virtual queue in nanoseconds. Between the
//! two, [`LinkTx::ps_per_byte`](crate::maps::LinkTx::ps_per_byte) carries the
//! rate as its inverse, picoseconds of link time per byte, because the kernel
//! can then price a packet with one multiplication and one division by a
//! constant (eBPF has no floating point, and dividing by a per-link rate
//! would cost a 64-bit division whose divisor the verifier must prove
//! non-zero). In picoseconds, 1 Gbit/s is 8 000 ps/byte, so rounding the
//! price to a whole picosecond costs at most 1/8 000 of the rate even there,
//! and a `u32` of them still reaches down to about 233 bytes/s.
//!
//! * [`ps_per_byte`]: controller side, bytes/s → ps/byte;
//! * [`transmit_ns`], [`us_to_ns`]: kernel side, the time a packet holds the
//!   link and the budget's µs fields in the virtual queue's nanoseconds.

/// Picoseconds per second.
const PS_PER_S: u64 = 1_000_000_000_000;

/// The `ps_per_byte` of a budget of `bytes_per_s`: `10^12 / bytes_per_s`,
/// rounded down, at least 1 and at most `u32::MAX` (a rate below ~233 bytes/s
/// is priced as ~233 bytes/s). 0 bytes/s gives 0, which the kernel reads as
/// "no budget".
#[inline]
pub const fn ps_per_byte(bytes_per_s: u64) -> u32 {
    if bytes_per_s == 0 {
        return 0;
    }
    let ps = PS_PER_S / bytes_per_s;
    if ps == 0 {
        1
    } else if ps > u32::MAX as u64 {
        u32::MAX
    } else {
        ps as u32
    }
}

/// Nanoseconds `bytes` hold a link whose budget costs `ps_per_byte`, rounded
/// down. Cannot overflow: at most (2^32 − 1)² / 1000.
#[inline(always)]
pub const fn transmit_ns(bytes: u32, ps_per_byte: u32) -> u64 {
    bytes as u64 * ps_per_byte as u64 / 1000
}

/// A budget field in µs (idle delay, backlog limit) in the virtual queue's ns.
#[inline(always)]
pub const fn us_to_ns(us: u32) -> u64 {
    us as u64 * 1000
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn zero_is_no_budget() {
        assert_eq!(ps_per_byte(0), 0);
        assert_eq!(transmit_ns(1500, 0), 0);
    }

    #[test]
    fn common_rates() {
        // 1 Gbit/s = 125 MB/s: 8 ns per byte; 0.8 Mbit/s: 10 µs per byte.
        assert_eq!(ps_per_byte(125_000_000), 8_000);
        assert_eq!(ps_per_byte(100_000), 10_000_000);
        // A 1500-byte packet at 10 Mbit/s (1.25 MB/s) holds the link 1.2 ms;
        // at 12 Mbit/s the price (666 666.7 ps/byte) is rounded down.
        assert_eq!(transmit_ns(1500, ps_per_byte(1_250_000)), 1_200_000);
        assert_eq!(transmit_ns(1500, ps_per_byte(1_500_000)), 999_999);
        assert_eq!(us_to_ns(30_000), 30_000_000);
    }

    #[test]
    fn huge_rates_cost_at_least_a_picosecond_per_byte() {
        assert_eq!(ps_per_byte(PS_PER_S), 1);
        assert_eq!(ps_per_byte(PS_PER_S + 1), 1);
        assert_eq!(ps_per_byte(u64::MAX), 1);
    }

    #[test]
    fn tiny_rates_saturate() {
        assert_eq!(ps_per_byte(1), u32::MAX);
        assert_eq!(ps_per_byte(232), u32::MAX);
        assert_eq!(ps_per_byte(233), (PS_PER_S / 233) as u32);
        assert_eq!(transmit_ns(u32::MAX, u32::MAX), u64::from(u32::MAX) * u64::from(u32::MAX) / 1000);
        assert_eq!(us_to_ns(u32::MAX), u64::from(u32::MAX) * 1000);
    }

    proptest! {
        #[test]
        fn a_second_of_budget_is_a_second_of_link_time(bytes_per_s in 233u64..=1_000_000_000_000) {
            // The price is rounded down, so a second's worth of bytes never
            // costs more than a second of link time ...
            let bytes = bytes_per_s.min(u64::from(u32::MAX)) as u32;
            let ns = transmit_ns(bytes, ps_per_byte(bytes_per_s));
            let exact_ns = u128::from(bytes) * 1_000_000_000 / u128::from(bytes_per_s);
            prop_assert!(u128::from(ns) <= exact_ns);
            // ... and misses it by at most one ps per byte (plus the final ns rounding).
            prop_assert!(exact_ns - u128::from(ns) <= u128::from(bytes) / 1000 + 1);
        }

        #[test]
        fn agrees_with_the_controllers_former_float_formula(bytes_per_s in 1u64..=10_000_000_000_000) {
            // strata-ctl computed `(1e12 / bytes_per_s as f64).clamp(1.0, u32::MAX as f64) as u32`;
            // the integer quotient differs only where f64 rounds up to the next integer.
            let float = (1e12 / bytes_per_s as f64).clamp(1.0, f64::from(u32::MAX)) as u32;
            prop_assert!(ps_per_byte(bytes_per_s).abs_diff(float) <= 1);
        }
    }
}
