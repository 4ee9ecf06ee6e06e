//! One direction of an emulated link, as pure code driven by the clock you
//! pass in — so every behaviour is unit-testable with simulated time, and the
//! I/O shell ([`super::bridge`]) only moves frames.
//!
//! A packet's way through a direction:
//!
//! 1. **Blackout** — while a blackout window is open the radio is gone:
//!    arrivals are lost, and the queue was flushed when the window opened.
//! 2. **Loss** — random (Bernoulli) or bursty (Gilbert–Elliott: a good and a
//!    bad state with their own loss probabilities and transition
//!    probabilities per packet).
//! 3. **Buffer** — a byte-limited drop-tail queue, like a modem's.
//! 4. **Capacity** — the queue drains only at the trace's delivery
//!    opportunities: each carries up to 1500 bytes (scaled down inside a
//!    capacity-collapse window); a packet larger than what is left waits for
//!    the next opportunity with the bytes already sent credited, and credit
//!    left unused when the queue runs dry is lost (mahimahi's semantics).
//! 5. **Delay** — after transmission a packet waits base delay + jitter. Unless
//!    reordering is allowed, no packet leaves before the one sent ahead of it.
//!
//! Per 10 ms of transmission time a direction records the bytes it
//! transmitted and the longest time a packet waited in its buffer
//! ([`TransmitBins`]): how fully a link was used, and its queueing delay,
//! at the moment its capacity stepped.

use std::collections::VecDeque;

use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, Normal};

use super::trace::{OPPORTUNITY_BYTES, Trace};

/// Nanoseconds since the emulation started.
pub type Nanos = u64;

const MS: Nanos = 1_000_000;

/// Jitter added to the base delay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    /// None.
    None,
    /// Uniform in `[0, max_ms]`.
    Uniform {
        /// Upper bound, ms.
        max_ms: f64,
    },
    /// Normal with this standard deviation, truncated at 0 and at 4 σ.
    Normal {
        /// Standard deviation, ms.
        sd_ms: f64,
    },
}

/// How packets are lost before the buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// No random loss.
    None,
    /// Each packet independently with probability `p`.
    Random {
        /// Loss probability.
        p: f64,
    },
    /// Gilbert–Elliott: per packet, move good → bad with `p_good_bad`,
    /// bad → good with `p_bad_good`; lose with `loss_good` / `loss_bad`.
    GilbertElliott {
        /// Transition probability good → bad.
        p_good_bad: f64,
        /// Transition probability bad → good.
        p_bad_good: f64,
        /// Loss probability in the good state.
        loss_good: f64,
        /// Loss probability in the bad state.
        loss_bad: f64,
    },
}

/// A time window `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Opens, ns.
    pub start: Nanos,
    /// Closes, ns.
    pub end: Nanos,
}

impl Window {
    fn contains(&self, t: Nanos) -> bool {
        self.start <= t && t < self.end
    }
}

/// Capacity scaled by `factor` during `window` (thermal throttling).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Collapse {
    /// When.
    pub window: Window,
    /// Remaining fraction of capacity, (0, 1].
    pub factor: f64,
}

/// Everything that shapes one direction.
#[derive(Clone, Debug)]
pub struct DirectionConfig {
    /// One-way base delay, ms.
    pub base_delay_ms: f64,
    /// Jitter on top of the base delay.
    pub jitter: Jitter,
    /// Let jitter reorder packets.
    pub reorder: bool,
    /// Loss before the buffer.
    pub loss: Loss,
    /// Capacity; `None` is unlimited.
    pub capacity: Option<Trace>,
    /// Buffer size in bytes (drop-tail).
    pub buffer_bytes: usize,
    /// Radio gone.
    pub blackouts: Vec<Window>,
    /// Capacity collapses.
    pub collapses: Vec<Collapse>,
    /// Extra delay, ms, for packets sent during each window (a radio's
    /// delay spike: retransmissions, a handover).
    pub delay_spikes: Vec<(Window, f64)>,
    /// Seed of this direction's random numbers.
    pub seed: u64,
}

impl DirectionConfig {
    /// Whether the radio is gone at `at` (inside a blackout window).
    pub fn blacked_out(&self, at: Nanos) -> bool {
        self.blackouts.iter().any(|w| w.contains(at))
    }

    /// Bytes the delivery opportunity at `at` may carry: [`OPPORTUNITY_BYTES`]
    /// scaled by the deepest capacity collapse open at `at` (rounded down).
    pub fn opportunity_bytes(&self, at: Nanos) -> u64 {
        let factor = self
            .collapses
            .iter()
            .filter(|c| c.window.contains(at))
            .map(|c| c.factor.clamp(0.0, 1.0))
            .fold(1.0, f64::min);
        (OPPORTUNITY_BYTES as f64 * factor) as u64
    }

    /// Delay of a packet whose transmission ends at `sent_at`, given the
    /// jitter drawn for it: base delay + jitter + any delay spike open then.
    pub fn delay_ns(&self, sent_at: Nanos, jitter_ms: f64) -> Nanos {
        let spike_ms: f64 =
            self.delay_spikes.iter().filter(|(w, _)| w.contains(sent_at)).map(|&(_, ms)| ms).sum();
        ((self.base_delay_ms + jitter_ms + spike_ms).max(0.0) * MS as f64) as Nanos
    }
}

impl Default for DirectionConfig {
    fn default() -> Self {
        Self {
            base_delay_ms: 0.0,
            jitter: Jitter::None,
            reorder: false,
            loss: Loss::None,
            capacity: None,
            buffer_bytes: 256 * 1024,
            blackouts: Vec::new(),
            collapses: Vec::new(),
            delay_spikes: Vec::new(),
            seed: 1,
        }
    }
}

/// Why a packet did not make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropCause {
    /// Inside a blackout (arriving, or queued when it began).
    Blackout,
    /// Random or bursty loss.
    Loss,
    /// The buffer was full.
    BufferFull,
}

/// Width of a [`TransmitBins`] bin.
pub const TRANSMIT_BIN: Nanos = 10 * MS;

/// What a direction transmitted, per [`TRANSMIT_BIN`] of transmission time
/// (the time a packet's last byte went out) since time 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransmitBins {
    /// Bytes transmitted.
    pub bytes: Vec<u64>,
    /// Longest time a packet transmitted in the bin spent in the buffer,
    /// from its arrival to its last byte going out (its queueing delay), ns.
    pub max_sojourn_ns: Vec<u64>,
}

impl TransmitBins {
    fn record(&mut self, at: Nanos, len: usize, sojourn: Nanos) {
        let bin = (at / TRANSMIT_BIN) as usize;
        if self.bytes.len() <= bin {
            self.bytes.resize(bin + 1, 0);
            self.max_sojourn_ns.resize(bin + 1, 0);
        }
        self.bytes[bin] += len as u64;
        self.max_sojourn_ns[bin] = self.max_sojourn_ns[bin].max(sojourn);
    }
}

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Packets offered.
    pub arrived: u64,
    /// Bytes offered: what the sender put on the link, whatever became of it.
    pub arrived_bytes: u64,
    /// Packets delivered.
    pub delivered: u64,
    /// Bytes delivered.
    pub delivered_bytes: u64,
    /// Lost to blackouts.
    pub dropped_blackout: u64,
    /// Lost to random or bursty loss.
    pub dropped_loss: u64,
    /// Lost to a full buffer.
    pub dropped_buffer: u64,
}

struct Queued<T> {
    packet: T,
    len: usize,
    /// When it entered the buffer.
    arrived: Nanos,
    /// Bytes of this packet already transmitted by earlier opportunities.
    sent: u64,
}

/// One direction of a link.
pub struct Direction<T> {
    cfg: DirectionConfig,
    rng: ChaCha8Rng,
    jitter: Option<Normal<f64>>,
    bad_state: bool,
    queue: VecDeque<Queued<T>>,
    queued_bytes: usize,
    /// Next delivery opportunity index.
    next_opportunity: u64,
    /// Transmitted packets waiting out their delay, in departure order.
    delay_line: VecDeque<(Nanos, T)>,
    last_departure: Nanos,
    in_blackout: bool,
    stats: DirectionStats,
    transmitted: TransmitBins,
}

impl<T> std::fmt::Debug for Direction<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direction")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<T> Direction<T> {
    /// A direction starting at time 0.
    pub fn new(cfg: DirectionConfig) -> Self {
        let jitter = match cfg.jitter {
            Jitter::Normal { sd_ms } if sd_ms > 0.0 => Normal::new(0.0, sd_ms).ok(),
            _ => None,
        };
        Self {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            jitter,
            cfg,
            bad_state: false,
            queue: VecDeque::new(),
            queued_bytes: 0,
            next_opportunity: 0,
            delay_line: VecDeque::new(),
            last_departure: 0,
            in_blackout: false,
            stats: DirectionStats::default(),
            transmitted: TransmitBins::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DirectionStats {
        self.stats
    }

    /// What was transmitted, and how long it waited, per 10 ms.
    pub fn transmitted(&self) -> &TransmitBins {
        &self.transmitted
    }

    /// Bytes waiting in the buffer.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Offers a packet of `len` bytes at `now`.
    pub fn offer(&mut self, now: Nanos, packet: T, len: usize) -> Result<(), DropCause> {
        self.stats.arrived += 1;
        self.stats.arrived_bytes += len as u64;
        self.update_blackout(now);
        if self.in_blackout {
            self.stats.dropped_blackout += 1;
            return Err(DropCause::Blackout);
        }
        if self.lose() {
            self.stats.dropped_loss += 1;
            return Err(DropCause::Loss);
        }
        if self.queued_bytes + len > self.cfg.buffer_bytes {
            self.stats.dropped_buffer += 1;
            return Err(DropCause::BufferFull);
        }
        if self.queue.is_empty() && self.cfg.capacity.is_some() {
            // Credit does not accumulate while the queue is empty.
            self.skip_opportunities_before(now);
        }
        self.queue.push_back(Queued { packet, len, arrived: now, sent: 0 });
        self.queued_bytes += len;
        Ok(())
    }

    /// Moves time to `now`: transmits what capacity allows and appends every
    /// packet whose delay is over to `out`, in departure order.
    pub fn advance(&mut self, now: Nanos, out: &mut Vec<T>) {
        self.update_blackout(now);
        self.transmit_until(now);
        while let Some(&(due, _)) = self.delay_line.front() {
            if due > now {
                break;
            }
            if let Some((_, packet)) = self.delay_line.pop_front() {
                out.push(packet);
            }
        }
    }

    /// When something happens next (a transmission or a departure), if anything is pending.
    pub fn next_event(&self) -> Option<Nanos> {
        let departure = self.delay_line.front().map(|&(t, _)| t);
        let transmission = if self.queue.is_empty() {
            None
        } else {
            match &self.cfg.capacity {
                Some(trace) => Some(trace.opportunity_ns(self.next_opportunity)),
                None => Some(0),
            }
        };
        [departure, transmission].into_iter().flatten().min()
    }

    fn update_blackout(&mut self, now: Nanos) {
        let inside = self.cfg.blacked_out(now);
        if inside && !self.in_blackout {
            // The radio is gone: what the modem held is lost with it.
            self.stats.dropped_blackout += self.queue.len() as u64;
            self.queue.clear();
            self.queued_bytes = 0;
        }
        self.in_blackout = inside;
    }

    fn lose(&mut self) -> bool {
        match self.cfg.loss {
            Loss::None => false,
            Loss::Random { p } => self.rng.random::<f64>() < p,
            Loss::GilbertElliott { p_good_bad, p_bad_good, loss_good, loss_bad } => {
                let flip = self.rng.random::<f64>();
                if self.bad_state {
                    if flip < p_bad_good {
                        self.bad_state = false;
                    }
                } else if flip < p_good_bad {
                    self.bad_state = true;
                }
                let p = if self.bad_state { loss_bad } else { loss_good };
                self.rng.random::<f64>() < p
            }
        }
    }

    fn skip_opportunities_before(&mut self, now: Nanos) {
        if let Some(trace) = &self.cfg.capacity {
            let first = trace.first_opportunity_at_or_after(now);
            self.next_opportunity = self.next_opportunity.max(first);
        }
    }

    fn transmit_until(&mut self, now: Nanos) {
        let Some(trace) = self.cfg.capacity.clone() else {
            while let Some(q) = self.queue.pop_front() {
                self.queued_bytes -= q.len;
                self.depart(now, q);
            }
            return;
        };
        while !self.queue.is_empty() {
            let at = trace.opportunity_ns(self.next_opportunity);
            if at > now {
                break;
            }
            self.next_opportunity += 1;
            if self.cfg.blacked_out(at) {
                continue;
            }
            let mut budget = self.cfg.opportunity_bytes(at);
            while budget > 0 {
                let Some(head) = self.queue.front_mut() else {
                    break;
                };
                let need = head.len as u64 - head.sent;
                if need > budget {
                    head.sent += budget;
                    break;
                }
                budget -= need;
                if let Some(q) = self.queue.pop_front() {
                    self.queued_bytes -= q.len;
                    self.depart(at, q);
                }
            }
            if self.queue.is_empty() {
                // Unused credit is lost; the next packet waits for a fresh opportunity.
                break;
            }
        }
    }

    fn depart(&mut self, sent_at: Nanos, queued: Queued<T>) {
        let Queued { packet, len, arrived, .. } = queued;
        self.transmitted.record(sent_at, len, sent_at.saturating_sub(arrived));
        let jitter_ms = match self.cfg.jitter {
            Jitter::None => 0.0,
            Jitter::Uniform { max_ms } => self.rng.random::<f64>() * max_ms.max(0.0),
            Jitter::Normal { sd_ms } => {
                self.jitter.map_or(0.0, |n| n.sample(&mut self.rng).abs().min(4.0 * sd_ms))
            }
        };
        let mut due = sent_at + self.cfg.delay_ns(sent_at, jitter_ms);
        if !self.cfg.reorder {
            due = due.max(self.last_departure);
        }
        self.last_departure = self.last_departure.max(due);
        self.stats.delivered += 1;
        self.stats.delivered_bytes += len as u64;
        // Keep the delay line sorted by departure (only out of order when reordering is allowed).
        let pos = self.delay_line.partition_point(|&(t, _)| t <= due);
        self.delay_line.insert(pos, (due, packet));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &mut Direction<u32>, arrivals: &[(Nanos, usize)], until: Nanos) -> Vec<(Nanos, u32)> {
        let mut out = Vec::new();
        let mut delivered = Vec::new();
        let mut next = 0;
        let mut t = 0;
        while t <= until {
            while next < arrivals.len() && arrivals[next].0 <= t {
                let _ = dir.offer(t, next as u32, arrivals[next].1);
                next += 1;
            }
            dir.advance(t, &mut out);
            delivered.extend(out.drain(..).map(|p| (t, p)));
            t += 100_000; // 0.1 ms steps
        }
        delivered
    }

    #[test]
    fn base_delay_without_capacity_limit() {
        let mut d = Direction::new(DirectionConfig { base_delay_ms: 20.0, ..Default::default() });
        let got = run(&mut d, &[(0, 100), (5 * MS, 100)], 40 * MS);
        assert_eq!(got, vec![(20 * MS, 0), (25 * MS, 1)]);
    }

    #[test]
    fn capacity_follows_the_trace() {
        // 12 Mbit/s = one 1500-byte opportunity per ms.
        let cfg = DirectionConfig {
            capacity: Some(Trace::constant(12.0).unwrap()),
            buffer_bytes: 1 << 20,
            ..Default::default()
        };
        let mut d = Direction::new(cfg);
        let arrivals: Vec<_> = (0..100).map(|_| (0, 1500)).collect();
        let got = run(&mut d, &arrivals, 200 * MS);
        assert_eq!(got.len(), 100);
        // One packet per ms: the 100th leaves at ~100 ms.
        assert!((99 * MS..=101 * MS).contains(&got[99].0), "{}", got[99].0);
        // Small packets share an opportunity.
        let mut d = Direction::new(DirectionConfig {
            capacity: Some(Trace::constant(12.0).unwrap()),
            ..Default::default()
        });
        let arrivals: Vec<_> = (0..10).map(|_| (0, 300)).collect();
        let got = run(&mut d, &arrivals, 10 * MS);
        assert!(got.iter().take(5).all(|&(t, _)| t == got[0].0), "five 300-byte packets per opportunity");
    }

    #[test]
    fn drop_tail_buffer_is_byte_limited() {
        let cfg = DirectionConfig {
            capacity: Some(Trace::constant(1.2).unwrap()),
            buffer_bytes: 15_000,
            ..Default::default()
        };
        let mut d = Direction::new(cfg);
        let mut refused = 0;
        for i in 0..20 {
            if d.offer(0, i, 1500) == Err(DropCause::BufferFull) {
                refused += 1;
            }
        }
        assert_eq!(refused, 10);
        assert_eq!(d.queued_bytes(), 15_000);
    }

    #[test]
    fn random_loss_matches_its_probability() {
        let mut d: Direction<u32> =
            Direction::new(DirectionConfig { loss: Loss::Random { p: 0.1 }, seed: 7, ..Default::default() });
        let lost = (0..100_000).filter(|&i| d.offer(0, i, 100) == Err(DropCause::Loss)).count();
        assert!((9_500..10_500).contains(&lost), "{lost}");
    }

    #[test]
    fn gilbert_elliott_loss_comes_in_bursts() {
        // Mean bad run 1/0.2 = 5 packets, losing everything; mean good run 100.
        let loss = Loss::GilbertElliott { p_good_bad: 0.01, p_bad_good: 0.2, loss_good: 0.0, loss_bad: 1.0 };
        let mut d: Direction<u32> = Direction::new(DirectionConfig { loss, seed: 3, ..Default::default() });
        let lost: Vec<bool> = (0..200_000).map(|i| d.offer(0, i, 100) == Err(DropCause::Loss)).collect();
        let losses = lost.iter().filter(|&&l| l).count() as f64;
        let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count() as f64;
        let mean_burst = losses / bursts;
        assert!((4.0..6.0).contains(&mean_burst), "mean burst {mean_burst}");
        let rate = losses / 200_000.0;
        // Stationary bad share = 0.01 / (0.01 + 0.2) ≈ 4.8 %.
        assert!((0.038..0.058).contains(&rate), "loss rate {rate}");
    }

    #[test]
    fn delay_spikes_delay_only_what_is_sent_during_them() {
        let spike = Window { start: 100 * MS, end: 200 * MS };
        let mut d = Direction::new(DirectionConfig {
            base_delay_ms: 10.0,
            delay_spikes: vec![(spike, 30.0)],
            ..Default::default()
        });
        let (mut out, mut due) = (Vec::new(), Vec::new());
        for t in (0..400).map(|ms| ms * MS) {
            if let Some(id) = [(50 * MS, 1u32), (150 * MS, 2), (250 * MS, 3)].iter().find(|p| p.0 == t) {
                d.offer(t, id.1, 100).unwrap();
            }
            d.advance(t, &mut out);
            due.extend(out.drain(..).map(|id| (id, t / MS)));
        }
        assert_eq!(due, vec![(1, 60), (2, 190), (3, 260)]);
    }

    #[test]
    fn jitter_never_reorders_unless_allowed() {
        let cfg = DirectionConfig {
            base_delay_ms: 10.0,
            jitter: Jitter::Uniform { max_ms: 30.0 },
            seed: 9,
            ..Default::default()
        };
        let mut d = Direction::new(cfg);
        let arrivals: Vec<_> = (0..200).map(|i| (i * MS / 2, 100)).collect();
        let got = run(&mut d, &arrivals, 300 * MS);
        assert_eq!(got.len(), 200);
        assert!(got.windows(2).all(|w| w[0].1 < w[1].1), "in order");
        let delays: Vec<f64> =
            got.iter().map(|&(t, p)| (t - arrivals[p as usize].0) as f64 / MS as f64).collect();
        assert!(delays.iter().all(|&d| (9.9..=70.1).contains(&d)));

        let cfg = DirectionConfig {
            base_delay_ms: 10.0,
            jitter: Jitter::Uniform { max_ms: 30.0 },
            reorder: true,
            seed: 9,
            ..Default::default()
        };
        let mut d = Direction::new(cfg);
        let got = run(&mut d, &arrivals, 300 * MS);
        assert!(got.windows(2).any(|w| w[0].1 > w[1].1), "reordering when allowed");
    }

    #[test]
    fn a_blackout_flushes_the_queue_and_refuses_arrivals() {
        let cfg = DirectionConfig {
            capacity: Some(Trace::constant(1.2).unwrap()), // one opportunity per 10 ms
            blackouts: vec![Window { start: 50 * MS, end: 100 * MS }],
            ..Default::default()
        };
        let mut d = Direction::new(cfg);
        let arrivals: Vec<_> = (0..20).map(|i| (i * 5 * MS, 1500)).collect();
        let got = run(&mut d, &arrivals, 300 * MS);
        assert!(
            got.iter().all(|&(t, _)| !(50 * MS..100 * MS).contains(&t)),
            "nothing leaves during the blackout"
        );
        let s = d.stats();
        assert!(s.dropped_blackout >= 10, "{s:?}");
        assert_eq!(s.arrived, s.delivered + s.dropped_blackout + s.dropped_loss + s.dropped_buffer);
    }

    #[test]
    fn a_capacity_collapse_slows_delivery() {
        let trace = Trace::constant(12.0).unwrap();
        let collapsed = DirectionConfig {
            capacity: Some(trace),
            collapses: vec![Collapse { window: Window { start: 0, end: 1000 * MS }, factor: 0.25 }],
            buffer_bytes: 1 << 20,
            ..Default::default()
        };
        let mut d = Direction::new(collapsed);
        let arrivals: Vec<_> = (0..100).map(|_| (0, 1500)).collect();
        let got = run(&mut d, &arrivals, 1000 * MS);
        // A quarter of the capacity: 100 packets take ~400 ms instead of ~100.
        assert!((380 * MS..=420 * MS).contains(&got[99].0), "{}", got[99].0);
    }

    #[test]
    fn transmitted_bytes_and_queueing_delay_are_binned() {
        // 1.2 Mbit/s: one 1500-byte opportunity per 10 ms; ten packets at 0
        // leave at 10, 20, …, 100 ms, the last after waiting 100 ms.
        let mut d = Direction::new(DirectionConfig {
            capacity: Some(Trace::constant(1.2).unwrap()),
            ..Default::default()
        });
        let arrivals: Vec<_> = (0..10).map(|_| (0, 1500)).collect();
        run(&mut d, &arrivals, 200 * MS);
        let bins = d.transmitted();
        assert_eq!(bins.bytes.iter().sum::<u64>(), 15_000);
        assert_eq!(bins.bytes[1], 1500, "the first leaves at 10 ms");
        let longest = *bins.max_sojourn_ns.iter().max().unwrap();
        assert!((99 * MS..=102 * MS).contains(&longest), "{longest}");
        assert_eq!(bins.max_sojourn_ns[2], bins.max_sojourn_ns[1] + 10 * MS, "each waits 10 ms longer");
    }

    #[test]
    fn next_event_points_at_the_next_departure() {
        let mut d = Direction::new(DirectionConfig { base_delay_ms: 20.0, ..Default::default() });
        assert_eq!(d.next_event(), None);
        d.offer(0, 1u32, 100).unwrap();
        let mut out = Vec::new();
        d.advance(0, &mut out);
        assert_eq!(d.next_event(), Some(20 * MS));
    }
}
