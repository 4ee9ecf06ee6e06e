//! Packet trains: a link's bottleneck rate from the hub's receive times.
//!
//! A train is a burst of full-sized probes sent back to back. The link's
//! bottleneck spaces them out; the hub stamps each with its kernel receive
//! time (`SO_TIMESTAMPNS`) and echoes the time back. The spacing, read as
//! the least-squares slope of receive time over packet index, is the time one
//! packet takes at the bottleneck. Pure maths: the sockets are the prober's.

use std::time::Instant;

/// How a prober sends packet trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainShape {
    /// Probes per train.
    pub packets: u8,
    /// UDP payload bytes of each.
    pub bytes: usize,
}

/// The hub's receive times of the current train's probes.
#[derive(Debug, Default)]
pub struct TrainArrivals {
    /// Train id (0: none under way).
    pub id: u32,
    /// When it was sent.
    pub sent: Option<Instant>,
    /// (index, hub receive time ns).
    pub times: Vec<(u8, u64)>,
}

impl TrainArrivals {
    pub fn record(&mut self, link_seq: u32, hub_ns: u64) {
        if link_seq >> 8 == self.id && self.id != 0 && self.times.len() < 256 {
            self.times.push(((link_seq & 0xFF) as u8, hub_ns));
        }
    }

    /// The train's rate and a fresh start; `None` if too few probes came back.
    pub fn finish(&mut self, shape: TrainShape) -> Option<f64> {
        let times = std::mem::take(&mut self.times);
        (self.id, self.sent) = (0, None);
        train_rate_mbit_s(&times, shape.bytes + IP_UDP_HEADERS)
    }
}

/// IPv4 + UDP header bytes, which the bottleneck carries too.
pub const IP_UDP_HEADERS: usize = 28;

/// Bottleneck rate from a train's receive times (index, ns) of packets of
/// `ip_bytes` each: the least-squares slope of receive time over packet
/// index is the time one packet takes at the bottleneck. A slope rather than
/// first-to-last: jitter after the bottleneck moves single arrivals (and,
/// without reordering, bunches the ones behind), which made the end points of
/// a 16-packet train 25 % off in the lab. Needs half the train, at least 4
/// probes, and time running forward.
pub fn train_rate_mbit_s(times: &[(u8, u64)], ip_bytes: usize) -> Option<f64> {
    let expected = times.iter().map(|&(i, _)| usize::from(i) + 1).max()?;
    if times.len() < 4 || times.len() * 2 < expected {
        return None;
    }
    let t0 = times.iter().map(|&(_, ns)| ns).min()?;
    let n = times.len() as f64;
    let points = || times.iter().map(|&(i, ns)| (f64::from(i), (ns - t0) as f64));
    let (mean_i, mean_t) = points().fold((0.0, 0.0), |(a, b), (i, t)| (a + i / n, b + t / n));
    let (cov, var) = points().fold((0.0, 0.0), |(c, v), (i, t)| {
        (c + (i - mean_i) * (t - mean_t), v + (i - mean_i) * (i - mean_i))
    });
    let ns_per_packet = cov / var;
    if !(ns_per_packet.is_finite() && ns_per_packet > 0.0) {
        return None;
    }
    Some(ip_bytes as f64 * 8.0 / ns_per_packet * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_train_measures_its_bottleneck() {
        // 1228-byte IP packets 1 ms apart: 9.824 Mbit/s.
        let times: Vec<(u8, u64)> = (0..16u8).map(|i| (i, 5_000_000 + u64::from(i) * 1_000_000)).collect();
        let rate = train_rate_mbit_s(&times, 1228).unwrap();
        assert!((rate - 9.824).abs() < 1e-6, "{rate}");
        // Jitter after the bottleneck: the last arrival 3 ms late would make
        // first-to-last 17 % slow; the slope moves by 6 %.
        let mut late = times.clone();
        late[15].1 += 3_000_000;
        let r = train_rate_mbit_s(&late, 1228).unwrap();
        assert!((r / 9.824 - 1.0).abs() < 0.07, "{r}");
        // Replies arrive in any order; a lost one only shortens the train.
        let mut shuffled: Vec<_> = times.iter().rev().copied().filter(|&(i, _)| i != 7).collect();
        shuffled.swap(0, 3);
        assert!(train_rate_mbit_s(&shuffled, 1228).is_some());
    }

    #[test]
    fn a_broken_train_measures_nothing() {
        assert_eq!(train_rate_mbit_s(&[], 1228), None);
        let same: Vec<(u8, u64)> = (0..16u8).map(|i| (i, 42)).collect();
        assert_eq!(train_rate_mbit_s(&same, 1228), None, "no spread");
        let few: Vec<(u8, u64)> = [(0, 1), (15, 2_000_000)].into();
        assert_eq!(train_rate_mbit_s(&few, 1228), None, "two of sixteen");
    }
}
