//! A token bucket for handshake initiations on the hub.
//!
//! Every initiation costs the hub two X25519 operations before it knows who
//! sent it (Noise IK reveals the sender's key only after them), so a flood
//! of initiations is a way to burn the hub's CPU. The bucket bounds that
//! work to `rate` per second with bursts of `burst`; what is refused is
//! counted (`rate_limited`) and costs a comparison.

use std::time::Instant;

/// Tokens refill at `rate` per second up to `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self { rate: rate.max(0.0), burst, tokens: burst, at: None }
    }

    /// Takes a token at `now`, if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_flood_gets_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(20.0, 5);
        let first = (0..1000).filter(|_| b.take(t0)).count();
        assert_eq!(first, 5);
        // One second of a 10 000/s flood: about 20 more.
        let passed = (1..=10_000).filter(|i| b.take(t0 + Duration::from_micros(i * 100))).count();
        assert!((19..=21).contains(&passed), "{passed}");
    }

    #[test]
    fn time_going_backwards_gives_nothing_extra() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1.0, 1);
        assert!(b.take(t0));
        assert!(!b.take(t0 - Duration::from_secs(5)));
    }
}
