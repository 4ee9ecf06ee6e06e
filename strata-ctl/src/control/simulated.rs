//! The controller in a closed loop with simulated links, on simulated time.
//!
//! Each link is a fluid queue drained at a capacity that follows a function
//! of time, behind a fixed propagation delay. The "kernel" here sends each
//! 1250-byte packet where it is expected to arrive first within the send
//! budgets, the way `strata-ebpf`'s `choose_link_paced` does (virtual queue per
//! link drained at the budget rate, overflow to the earliest link when every
//! link is past its backlog limit, and a backlog measured from the hub's
//! acknowledgement where that is larger). The "hub" reports every 50 ms what
//! each link delivered, its mean one-way delay and the packets it received
//! (the acknowledgement), stamped with its clock; probes
//! come back every 50 ms with the round trip. So the properties below are the
//! controller's — following a link's capacity up while it carries data,
//! down within a feedback interval or two, and never demoting a link that is
//! merely variable — measured the way the lab would, without the lab.

use std::time::Duration;

use strata_common::{maps::OWD_BIAS_US, wire::FeedbackPayload};

use super::{
    controller::Controller,
    evidence::Evidence,
    lifecycle::{State, Thresholds},
    scoring::{Decision, ScoringConfig},
};

const PACKET: f64 = 1250.0;

/// A link's capacity, Mbit/s, as a function of time, s.
type Capacity = Box<dyn Fn(f64) -> f64>;

struct SimLink {
    base_ms: f64,
    capacity: Capacity,
    queue_bytes: f64,
    /// Virtual queue of the simulated kernel: busy until, s.
    busy_until: f64,
    /// Packets the simulated kernel sent on the link (its next link sequence).
    sent: u64,
    rx_packets: f64,
    rx_bytes: f64,
    owd_sum_us: f64,
    owd_count: f64,
    /// Bytes delivered in the current measuring bucket (for the test's own view).
    delivered: f64,
    /// Feedback on its way back: (arrives at, payload, hub time µs).
    in_flight: Vec<(f64, FeedbackPayload, u32)>,
}

struct Bond {
    links: Vec<SimLink>,
    controller: Controller,
    decision: Option<Decision>,
    /// Offered load, Mbit/s.
    offered: f64,
    t: f64,
}

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

impl Bond {
    fn new(links: Vec<(f64, Capacity)>, offered: f64) -> Self {
        let ids: Vec<(u8, u32)> = (0..links.len() as u8).map(|i| (i, 5)).collect();
        Self {
            links: links
                .into_iter()
                .map(|(base_ms, capacity)| SimLink {
                    base_ms,
                    capacity,
                    queue_bytes: 0.0,
                    busy_until: 0.0,
                    sent: 0,
                    rx_packets: 0.0,
                    rx_bytes: 0.0,
                    owd_sum_us: 0.0,
                    owd_count: 0.0,
                    delivered: 0.0,
                    in_flight: Vec::new(),
                })
                .collect(),
            controller: Controller::new(&ids, Thresholds::default(), ScoringConfig::default()),
            decision: None,
            offered,
            t: 0.0,
        }
    }

    /// Earliest arrival within budgets, as the kernel does it.
    fn choose(&mut self) -> usize {
        let Some(d) = &self.decision else { return 0 };
        let (mut within, mut any) = ((f64::MAX, usize::MAX), (f64::MAX, usize::MAX));
        for (i, l) in self.links.iter().enumerate() {
            let b = d.budgets[i];
            if d.weights[i] == 0 || b.bytes_per_s == 0 {
                continue;
            }
            let modelled = (l.busy_until - self.t).max(0.0);
            // As `measured_backlog_ns`: what was sent since the
            // acknowledged packet, drained from the anchor at the link's
            // estimated capacity. The budget holds while both backlogs are
            // within it; the arrival follows the measured one.
            let measured = b.ack.map(|a| {
                let since = l.sent.saturating_sub(u64::from(a.next_seq)) as f64 * PACKET;
                (a.anchor.as_secs_f64() + since / a.drain_bytes_per_s.max(1) as f64 - self.t).max(0.0)
            });
            let (backlog, queue) = match measured {
                Some(m) => (modelled.max(m), m),
                None => (modelled, modelled),
            };
            let eta = f64::from(b.delay_us) / 1e6 + queue + PACKET / b.bytes_per_s as f64;
            if backlog <= f64::from(b.backlog_limit_us) / 1e6 {
                if eta < within.0 {
                    within = (eta, i);
                }
            } else if eta < any.0 {
                any = (eta, i);
            }
        }
        let i = if within.1 != usize::MAX { within.1 } else { any.1 };
        if i == usize::MAX {
            return 0;
        }
        let rate = d.budgets[i].bytes_per_s as f64;
        let ceiling = self.t + 8.0 * f64::from(d.budgets[i].backlog_limit_us) / 1e6;
        let l = &mut self.links[i];
        l.sent += 1;
        if l.busy_until < ceiling {
            l.busy_until = l.busy_until.max(self.t) + PACKET / rate;
        }
        i
    }

    /// Runs until `until` s, 1 ms steps.
    fn run_until(&mut self, until: f64) {
        let mut credit = 0.0;
        while self.t < until {
            let ms = (self.t * 1000.0).round() as u64;
            let now = s(self.t);
            // The source: `offered` Mbit/s in 1250-byte packets.
            credit += self.offered * 1e6 / 8.0 / 1000.0;
            while credit >= PACKET {
                credit -= PACKET;
                let i = self.choose();
                self.links[i].queue_bytes += PACKET;
            }
            for (id, l) in self.links.iter_mut().enumerate() {
                // The link drains its queue at its capacity.
                let cap = (l.capacity)(self.t).max(0.0) * 1e6 / 8.0 / 1000.0;
                let out = l.queue_bytes.min(cap);
                l.queue_bytes -= out;
                let wait_ms = if cap > 0.0 { l.queue_bytes / cap } else { 1000.0 };
                let packets = out / PACKET;
                l.rx_packets += packets;
                l.rx_bytes += out;
                l.delivered += out;
                l.owd_sum_us += packets * (l.base_ms + wait_ms) * 1e3;
                l.owd_count += packets;
                if ms.is_multiple_of(50) {
                    let p = |v: f64| v as u64;
                    let payload = FeedbackPayload {
                        rx_packets: p(l.rx_packets),
                        rx_bytes: p(l.rx_bytes),
                        lost: 0,
                        owd_sum_us: p(l.owd_sum_us) + p(l.owd_count) * OWD_BIAS_US as u64,
                        owd_count: p(l.owd_count),
                        late: 0,
                        // Packets leave the fluid queue in order: the
                        // sequence after the last whole one received.
                        next_seq: p(l.rx_packets),
                    };
                    l.in_flight.push((self.t + l.base_ms / 1e3, payload, (ms * 1000) as u32 | 1));
                    // A probe sent now comes back after a round trip plus the queue.
                    let rtt = 2.0 * l.base_ms + wait_ms;
                    self.controller.on_evidence(
                        now + s(rtt / 1e3),
                        Evidence::RoundTrip { link: id as u8, rtt: s(rtt / 1e3) },
                    );
                }
                let (due, later): (Vec<_>, Vec<_>) = l.in_flight.drain(..).partition(|f| f.0 <= self.t);
                l.in_flight = later;
                for (_, counters, hub_time_us) in due {
                    self.controller
                        .on_evidence(now, Evidence::Feedback { link: id as u8, counters, hub_time_us });
                }
            }
            if ms.is_multiple_of(20) {
                let sent: Vec<u64> = self.links.iter().map(|l| l.sent).collect();
                self.controller.on_sent(now, &sent);
                self.decision = Some(self.controller.tick(now));
            }
            self.t += 0.001;
        }
    }

    fn capacity_estimate(&self, id: usize) -> f64 {
        self.controller.report()[id].capacity_mbit_s.unwrap_or(0.0)
    }

    fn state(&self, id: usize) -> State {
        self.controller.states()[id].1
    }

    /// Mbit/s link `id` delivered since the last call over `secs`.
    fn take_delivered(&mut self, id: usize, secs: f64) -> f64 {
        std::mem::take(&mut self.links[id].delivered) * 8.0 / 1e6 / secs
    }

    /// The current queueing delay of link `id`, ms.
    fn queue_ms(&self, id: usize) -> f64 {
        let l = &self.links[id];
        l.queue_bytes / ((l.capacity)(self.t) * 1e6 / 8.0 / 1000.0)
    }
}

fn step(at: f64, before: f64, after: f64) -> Capacity {
    Box::new(move |t| if t < at { before } else { after })
}

#[test]
fn a_link_stepping_up_is_followed_within_a_second_and_a_half_while_carrying_data() {
    // Link 0, the fast one, steps 2 → 20 Mbit/s at 10 s; link 1 is slower
    // (60 ms) and has plenty. 20 Mbit/s are offered.
    let mut b = Bond::new(vec![(20.0, step(10.0, 2.0, 20.0)), (60.0, Box::new(|_| 40.0))], 20.0);
    b.run_until(10.0);
    assert_eq!(b.state(0), State::Live);
    assert!(b.capacity_estimate(0) < 4.0, "before the step: {}", b.capacity_estimate(0));
    b.run_until(11.0);
    b.take_delivered(0, 1.0);
    b.run_until(11.5);
    let carried = b.take_delivered(0, 0.5);
    let estimate = b.capacity_estimate(0);
    assert!(carried >= 0.8 * 20.0, "1.0-1.5 s after the step link 0 carried {carried:.1} Mbit/s of 20");
    assert!(estimate >= 16.0, "estimate {estimate:.1} 1.5 s after the step");
}

#[test]
fn a_link_stepping_down_is_followed_within_two_feedback_intervals() {
    let mut b = Bond::new(vec![(20.0, step(10.0, 20.0, 2.0)), (60.0, Box::new(|_| 40.0))], 20.0);
    b.run_until(10.0);
    assert_eq!(b.state(0), State::Live);
    assert!(b.capacity_estimate(0) > 14.0, "before the step: {}", b.capacity_estimate(0));
    // Two feedback intervals, plus the 20 ms the feedback takes to come back
    // and a tick.
    b.run_until(10.0 + 0.1 + 0.02 + 0.02);
    let estimate = b.capacity_estimate(0);
    assert!(estimate <= 4.0, "estimate {estimate:.1} Mbit/s two feedback intervals after 20 → 2");
    // What was sent into the old rate is still queued (20 Mbit/s for the
    // ~70 ms the first feedback takes to tell: half a second at 2 Mbit/s);
    // nothing is added to it once the feedback has told, and it drains.
    b.run_until(10.3);
    let mut last = b.queue_ms(0);
    while last > 100.0 {
        b.run_until(b.t + 0.01);
        let q = b.queue_ms(0);
        assert!(q <= last, "the queue grew from {last:.0} to {q:.0} ms at {:.2} s", b.t);
        last = q;
    }
    assert!(b.t <= 11.0, "queueing delay on link 0 above 100 ms until {:.2} s", b.t);
    while b.t < 12.0 {
        b.run_until(b.t + 0.01);
        assert!(b.queue_ms(0) <= 100.0, "{:.0} ms queued on link 0 at {:.2} s", b.queue_ms(0), b.t);
    }
}

#[test]
fn a_link_swinging_between_2_and_25_mbit_s_stays_live_and_carries() {
    // Link 0 swings every 700 ms between 2 and 25 Mbit/s (with 200 ms
    // stalls every 3 s); link 1 is steady. 15 Mbit/s are offered.
    let swing: Capacity = Box::new(|t: f64| {
        if t % 3.0 < 0.2 {
            0.0
        } else if ((t / 0.7) as u64).is_multiple_of(2) {
            25.0
        } else {
            2.0
        }
    });
    let mut b = Bond::new(vec![(30.0, swing), (50.0, Box::new(|_| 12.0))], 15.0);
    while b.state(0) != State::Live && b.t < 10.0 {
        b.run_until(b.t + 0.1);
    }
    assert_eq!(b.state(0), State::Live, "admitted within 10 s");
    b.run_until(10.0);
    b.take_delivered(0, 1.0);
    while b.t < 40.0 {
        b.run_until(b.t + 0.02);
        assert_eq!(b.state(0), State::Live, "at {:.2} s", b.t);
    }
    let carried = b.take_delivered(0, 30.0);
    assert!(carried > 4.0, "the variable link carried only {carried:.1} Mbit/s");
}
