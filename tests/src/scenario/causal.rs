//! The causal reference: what a scheduler that knows everything up to now
//! and nothing after could deliver in time, over the links and traffic a
//! run played.
//!
//! The oracle ([`super::oracle`]) sees every future delivery opportunity
//! and holds each packet until the one that serves it. A real scheduler
//! sees neither: it must put each packet on a link, or drop it, when the
//! source hands it over (the kernel holds nothing), and can only guess how
//! fast a link will drain from how fast it drained. Where the links carry
//! less than the load and their rate swings within a deadline, the two
//! differ by a lot, and how much of Strata's gap to the oracle is that
//! difference — rather than Strata's own estimates — is what this measures.
//!
//! The reference is generous where Strata cannot be: it knows each link's
//! exact queue at every moment (no feedback round trip) and the capacity
//! each link offered over the last [`RATE_WINDOW`] (whether it carried
//! anything or not). Each packet goes on the link where it would arrive
//! first if that rate held — base delay + (queue + packet) ÷ rate — if that
//! is within a share of the deadline, and is dropped otherwise. The share
//! trades late deliveries (a queue kept at the deadline's edge is late
//! whenever the link dips) against capacity left unused (a short queue is
//! drained dry when it surges); the reference is the best of
//! [`ADMISSION_SHARES`]. The links serve as the emulator's model does: a
//! FIFO drained at the trace's opportunities, unused credit lost, a
//! blackout flushing the queue; jitter and random loss are left out, as
//! the oracle leaves them.
//!
//! It is a reference, not a bound: a scheduler predicting rates better
//! than "as in the last 300 ms" does better. But a Strata far below it has
//! its estimates to blame, and one near it — far from the oracle — the
//! unpredictability of the links.

use std::collections::VecDeque;

use super::{
    generator::{Flow, Planned},
    oracle::{Comparison, Opportunities, Packet, SERIES_BIN_NS, thread_cpu_ns, wire_bytes},
};
use crate::emulator::model::{DirectionConfig, Nanos};

/// How far back the reference measures a link's rate: the span over which
/// Strata's controller averages a busy link's delivery.
pub const RATE_WINDOW: Nanos = 300_000_000;

/// The shares of the deadline within which the reference admits a packet's
/// expected arrival; it reports the best.
pub const ADMISSION_SHARES: [f64; 3] = [1.0, 0.8, 0.6];

/// What the scheduler knows of a link's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sight {
    /// Its exact queue, now.
    Instant,
    /// What a sender learns from acknowledgements, as Strata's kernel
    /// does: the bytes the link had transmitted a base round trip ago
    /// (twice its base delay), and its rate as of then; what was sent since
    /// is assumed to drain at that rate — but not before it was sent: the
    /// queue is at least what the sender's own sends, paced at the rates it
    /// saw, leave (a burst into a link that had drained is not credited
    /// with a round trip of draining before it existed; without this the
    /// reference lost 0.8 % in time on constant links, and 0.852 against
    /// 0.860 of the oracle on real-links-70).
    RoundTrip,
}

/// What the causal reference delivered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Causal {
    /// The share of the deadline it admitted expected arrivals within.
    pub admission_share: f64,
    /// Per packet (in the order given), whether it arrived within the deadline.
    pub in_time: Vec<bool>,
}

/// The best of the reference's runs over [`ADMISSION_SHARES`], seeing the
/// links' queues as `sight` says.
pub fn reference(links: &[DirectionConfig], packets: &[Packet], deadline_ns: Nanos, sight: Sight) -> Causal {
    let mut order: Vec<usize> = (0..packets.len()).collect();
    order.sort_by_key(|&i| packets[i].at_ns);
    let times: Vec<Nanos> = order.iter().map(|&i| packets[i].at_ns).collect();
    let (Some(&from), Some(&last)) = (times.first(), times.last()) else { return Causal::default() };
    // From a window (and a round trip) before the first packet: the rate
    // is known at once, even as of a round trip ago.
    let longest_rtt =
        links.iter().map(|l| (2.0 * l.base_delay_ms.max(0.0) * 1e6) as Nanos).max().unwrap_or(0);
    let start = from.saturating_sub(RATE_WINDOW + longest_rtt);
    let opportunities: Vec<_> =
        links.iter().map(|cfg| Opportunities::new(cfg, start, last + deadline_ns, &times)).collect();
    ADMISSION_SHARES
        .iter()
        .map(|&share| Causal {
            admission_share: share,
            in_time: run(&opportunities, packets, &order, deadline_ns, share, sight),
        })
        .max_by_key(|c| c.in_time.iter().filter(|&&t| t).count())
        .unwrap_or_default()
}

/// Adds the causal reference, seeing the links now and a round trip late,
/// to a run's comparison with the oracle (made by `oracle::compare` with the
/// same `uplinks`, traffic and `t0_ns`).
pub fn add(
    c: &mut Comparison,
    uplinks: &[DirectionConfig],
    flows: &[Flow],
    planned: &[Planned],
    t0_ns: Nanos,
) {
    let started = thread_cpu_ns();
    let deadline_ns = (c.deadline_ms * 1e6) as Nanos;
    let packets: Vec<Packet> =
        planned.iter().map(|p| Packet { at_ns: t0_ns + p.at_ns, bytes: wire_bytes(p.len) }).collect();
    let [now, late] =
        [Sight::Instant, Sight::RoundTrip].map(|sight| reference(uplinks, &packets, deadline_ns, sight));
    c.causal_admission_share = now.admission_share;
    c.causal_rtt_admission_share = late.admission_share;
    let class_of = |flow: u8| flows.iter().find(|f| f.id == flow).map_or("unknown", |f| f.class);
    for ((p, &now), &late) in planned.iter().zip(&now.in_time).zip(&late.in_time) {
        for class in [&mut c.all, c.classes.entry(class_of(p.flow).to_string()).or_default()] {
            class.causal_delivered += u64::from(now);
            class.causal_rtt_delivered += u64::from(late);
        }
        if let Some(second) = c.per_second.get_mut((p.at_ns / SERIES_BIN_NS) as usize) {
            second.causal += u64::from(now);
            second.causal_rtt += u64::from(late);
        }
    }
    c.all.finish();
    c.classes.values_mut().for_each(|class| class.finish());
    c.compute_ms += thread_cpu_ns().saturating_sub(started) as f64 / 1e6;
}

/// One link as the reference drives it.
struct Link<'a> {
    opportunities: &'a Opportunities<'a>,
    /// The next opportunity to serve.
    next: usize,
    /// Packets queued: (index, bytes still to send).
    queue: VecDeque<(usize, u64)>,
    queued_bytes: u64,
    /// Bytes put on the link so far.
    sent: u64,
    /// When what was put on the link would have left at the rates seen
    /// when it was, ns: a queue the sender knows of without any
    /// acknowledgement (see [`Sight::RoundTrip`]).
    virtual_until: f64,
    /// (when, bytes transmitted so far), at each opportunity that transmitted.
    transmitted: Vec<(Nanos, u64)>,
}

impl Link<'_> {
    /// Serves the opportunities before `t`, recording when packets arrive.
    fn serve_until(&mut self, t: Nanos, arrivals: &mut [Option<Nanos>]) {
        let o = &self.opportunities;
        while self.next < o.at.len() && o.at[self.next] < t {
            let k = self.next;
            self.next += 1;
            if o.dark[k] {
                // A blackout: the radio is gone with what it held.
                self.queue.clear();
                self.queued_bytes = 0;
                continue;
            }
            let mut budget = o.bytes[k];
            let before = budget;
            while budget > 0 {
                let Some(head) = self.queue.front_mut() else { break };
                let spent = head.1.min(budget);
                head.1 -= spent;
                budget -= spent;
                self.queued_bytes -= spent;
                if head.1 == 0 {
                    arrivals[head.0] = Some(o.at[k] + o.base_ns);
                    self.queue.pop_front();
                }
            }
            if budget < before {
                let so_far = self.transmitted.last().map_or(0, |&(_, b)| b);
                self.transmitted.push((o.at[k], so_far + before - budget));
            }
        }
    }

    /// The queue a packet put on the link at `t` meets, in bytes, and the
    /// rate it drains at, bytes per second, as `sight` lets a sender see
    /// them. The link has been served up to `t`.
    fn view(&self, t: Nanos, sight: Sight) -> (f64, f64) {
        match sight {
            Sight::Instant => (self.queued_bytes as f64, self.rate(t)),
            Sight::RoundTrip => {
                let rtt = 2 * self.opportunities.base_ns;
                let then = t.saturating_sub(rtt);
                let rate = self.rate(then);
                let i = self.transmitted.partition_point(|&(at, _)| at <= then);
                let transmitted = if i == 0 { 0 } else { self.transmitted[i - 1].1 };
                let drained = rate * rtt as f64 / 1e9;
                let acked = (self.sent.saturating_sub(transmitted) as f64 - drained).max(0.0);
                let paced = (self.virtual_until - t as f64).max(0.0) * rate / 1e9;
                (acked.max(paced), rate)
            }
        }
    }

    /// Bytes per second the link offered over the [`RATE_WINDOW`] before `t`.
    fn rate(&self, t: Nanos) -> f64 {
        let o = &self.opportunities;
        let from = o.at.partition_point(|&a| a < t.saturating_sub(RATE_WINDOW));
        let to = o.at.partition_point(|&a| a < t);
        (o.cum[to] - o.cum[from]) as f64 / (RATE_WINDOW as f64 / 1e9)
    }
}

/// One run of the reference, admitting expected arrivals within `share` of
/// the deadline.
/// `order`: the packets' indices in hand-over order.
fn run(
    opportunities: &[Opportunities<'_>],
    packets: &[Packet],
    order: &[usize],
    deadline_ns: Nanos,
    share: f64,
    sight: Sight,
) -> Vec<bool> {
    let mut links: Vec<Link<'_>> = opportunities
        .iter()
        .map(|opportunities| Link {
            opportunities,
            next: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            sent: 0,
            virtual_until: 0.0,
            transmitted: Vec::new(),
        })
        .collect();
    let admit_ns = deadline_ns as f64 * share;
    let mut arrivals = vec![None; packets.len()];
    for &i in order {
        let p = packets[i];
        // (expected arrival, link, the rate it was priced at)
        let mut best: Option<(f64, usize, f64)> = None;
        for (l, link) in links.iter_mut().enumerate() {
            link.serve_until(p.at_ns, &mut arrivals);
            let (queue, rate) = link.view(p.at_ns, sight);
            if rate <= 0.0 {
                continue;
            }
            let eta = link.opportunities.base_ns as f64 + (queue + p.bytes as f64) / rate * 1e9;
            if best.is_none_or(|(b, ..)| eta < b) {
                best = Some((eta, l, rate));
            }
        }
        if let Some((eta, l, rate)) = best
            && eta <= admit_ns
        {
            links[l].queue.push_back((i, p.bytes));
            links[l].queued_bytes += p.bytes;
            links[l].sent += p.bytes;
            links[l].virtual_until = links[l].virtual_until.max(p.at_ns as f64) + p.bytes as f64 / rate * 1e9;
        }
    }
    for link in &mut links {
        link.serve_until(Nanos::MAX, &mut arrivals);
    }
    packets
        .iter()
        .zip(&arrivals)
        .map(|(p, a)| a.is_some_and(|a| a.saturating_sub(p.at_ns) <= deadline_ns))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{super::oracle::tests::link, *};

    const MS: Nanos = 1_000_000;

    /// 1500-byte packets every `every` ns for `n` packets.
    fn stream(every: Nanos, n: u64) -> Vec<Packet> {
        (0..n).map(|i| Packet { at_ns: 1_000 * MS + i * every, bytes: 1500 }).collect()
    }

    #[test]
    fn a_steady_link_with_room_delivers_everything_in_time() {
        // 12 Mbit/s = one 1500-byte opportunity a millisecond; a packet every 2 ms.
        let c = reference(&[link(12.0, 20.0)], &stream(2 * MS, 500), 100 * MS, Sight::Instant);
        assert!(c.in_time.iter().all(|&t| t), "{} late", c.in_time.iter().filter(|&&t| !t).count());
    }

    #[test]
    fn more_than_the_link_carries_is_shed_not_queued_late() {
        // Twice what the link carries for 2 s: the 2 000 packets it carries
        // in that time and the 80 ms of queue it drains after arrive in time,
        // rather than everything late behind a growing queue.
        let c = reference(&[link(12.0, 20.0)], &stream(MS / 2, 4_000), 100 * MS, Sight::Instant);
        let in_time = c.in_time.iter().filter(|&&t| t).count();
        assert!((1_950..=2_100).contains(&in_time), "{in_time} of 4000");
    }

    #[test]
    fn a_round_trip_late_sender_sees_a_steady_link_as_it_is() {
        // On a constant link the acknowledged view is exact: the same as seeing it now.
        for every in [2 * MS, MS / 2] {
            let packets = stream(every, 2_000);
            let now = reference(&[link(12.0, 20.0)], &packets, 100 * MS, Sight::Instant);
            let late = reference(&[link(12.0, 20.0)], &packets, 100 * MS, Sight::RoundTrip);
            let count = |c: &Causal| c.in_time.iter().filter(|&&t| t).count() as i64;
            assert!((count(&now) - count(&late)).abs() <= 20, "{} against {}", count(&now), count(&late));
        }
    }

    #[test]
    fn the_faster_arrival_is_chosen() {
        // A slow far link and a fast near one, both with room: all in time.
        let c = reference(&[link(1.0, 80.0), link(24.0, 10.0)], &stream(MS, 1_000), 100 * MS, Sight::Instant);
        assert!(c.in_time.iter().all(|&t| t));
    }
}
