//! Serial-number arithmetic for 32-bit wrapping sequence numbers (RFC 1982).
//!
//! Sequence numbers are compared by their wrapping distance, so `0` comes
//! right after `u32::MAX`. Two numbers more than 2^31 apart are not ordered
//! meaningfully; Strata never has that many packets in flight.

/// `a` is strictly after `b`.
#[inline(always)]
pub const fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// How far `a` is ahead of `b` (negative when behind).
#[inline(always)]
pub const fn seq_distance(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert!(seq_after(0, u32::MAX));
        assert!(seq_after(5, u32::MAX - 5));
        assert!(!seq_after(u32::MAX, 0));
        assert!(!seq_after(7, 7));
        assert_eq!(seq_distance(2, u32::MAX - 1), 4);
        assert_eq!(seq_distance(u32::MAX - 1, 2), -4);
    }
}
