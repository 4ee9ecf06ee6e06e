//! The life of a link: whether it may carry traffic, and how much.
//!
//! ```text
//!  init ─► probe ─► warm ─► live ◄──► degraded ─► cooldown ─► probe … or gone
//! ```
//!
//! A link carries traffic only after in-band checks pass (brief, principle
//! 1): it is *probed* until its probes come back healthy for
//! `admit_after`, then *warms* at a small share for `warm_for` before it is
//! *live*. Demotion is for a link that is dying, not for one that is merely
//! variable: silence, sustained loss the link's own queue does not explain,
//! or an absurd delay — never round-trip jitter or the delay and rate swings of a loaded cellular link, which the rate
//! model and the kernel's expected arrival absorb (measured on a real LTE
//! trace: demoting for jitter kept links out for 3-20 s each time, while
//! they could carry most of the video). Re-admission is slow: healthy
//! without a break for `readmit_after` — except for a link demoted for
//! silence alone, which is back once healthy for `admit_after` (a stall
//! that ended, see [`Lifecycle::step`]).
//! Thresholds for leaving a bad state are stricter than for entering it
//! (hysteresis), and because the statistics are percentiles of a window a
//! single spike does not come and go with every sample. A link silent for
//! `cooldown_after` rests in *cooldown*; silent for `gone_after`, it is
//! *gone* until it is heard again. Operating-system hints (carrier lost,
//! interface removed) may demote at once but never admit.

use std::time::Duration;

use super::estimator::Estimate;

/// Where a link is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Configured, nothing done yet.
    Init,
    /// Probed, carrying no traffic.
    Probe,
    /// Passed its probes; carries a small share while it proves itself.
    Warm,
    /// Carries its full share.
    Live,
    /// Failed a check; carries nothing while probes continue.
    Degraded,
    /// Silent for a while; rests before probing again.
    Cooldown,
    /// Silent for long; kept only to be recognised when it returns.
    Gone,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 7] =
        [Self::Init, Self::Probe, Self::Warm, Self::Live, Self::Degraded, Self::Cooldown, Self::Gone];

    /// Stable lower-case name (logs, metrics).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Probe => "probe",
            Self::Warm => "warm",
            Self::Live => "live",
            Self::Degraded => "degraded",
            Self::Cooldown => "cooldown",
            Self::Gone => "gone",
        }
    }
}

/// Why a link changed state.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// First step.
    Started,
    /// Probes healthy long enough.
    Healthy(Duration),
    /// Nothing heard for this long.
    Silent(Duration),
    /// Jitter (p95 − p50 of the round trip) above the bound, ms.
    Jitter(f64),
    /// Recent loss above the bound.
    Loss(f64),
    /// Median round trip above the bound, ms.
    Delay(f64),
    /// Heard from again.
    Heard,
    /// Cooldown over.
    Rested,
    /// The operating system reported the carrier lost or the interface gone.
    OsHint(&'static str),
}

/// A state change.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// Before.
    pub from: State,
    /// After.
    pub to: State,
    /// Why.
    pub reason: Reason,
}

/// The bounds of the lifecycle; every one configurable.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Silence that demotes a carrying link.
    pub silence_demote: Duration,
    /// Silence after which a carrying link is held (no traffic) without
    /// being demoted: heard again, it carries at once. Shorter than
    /// `silence_demote`.
    pub silence_hold: Duration,
    /// Jitter that demotes, ms. No longer used: an admitted link is not
    /// demoted for jitter (see [`Lifecycle`]'s module documentation); kept so
    /// that configurations naming it stay valid.
    pub jitter_demote_ms: f64,
    /// Jitter below which a link counts as healthy again, ms (< demote: hysteresis).
    pub jitter_healthy_ms: f64,
    /// Recent loss that demotes.
    pub loss_demote: f64,
    /// Recent loss below which a link counts as healthy again.
    pub loss_healthy: f64,
    /// Median round trip above which a link is not usable, ms.
    pub max_rtt_ms: f64,
    /// Queueing delay above which loss and jitter count as congestion — our
    /// own traffic filling the link, answered by its send budget — rather
    /// than as a failing link, ms.
    pub congestion_queue_ms: f64,
    /// Healthy this long in probe → warm.
    pub admit_after: Duration,
    /// Warm this long (and healthy) → live.
    pub warm_for: Duration,
    /// Healthy this long in degraded → live.
    pub readmit_after: Duration,
    /// Silent this long → cooldown.
    pub cooldown_after: Duration,
    /// Cooldown lasts at least this long.
    pub cooldown_for: Duration,
    /// Silent this long → gone.
    pub gone_after: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            // Hold at 100 ms: data leaves a dead link within 150 ms. Demote
            // no sooner than 300 ms: on a link with bursty loss the way back carries
            // only probe replies and feedback (~40 packets/s), so a loss burst
            // of a few packets silences it for over 100 ms (lab, bursty-loss:
            // a healthy link demoted and out for 3 s each time).
            // 1 s, not 300 ms: LTE uplinks stall for 100-500 ms in ordinary
            // operation (a real driving trace: 8 % of 100 ms windows carry
            // nothing), and the hold already takes traffic off a silent link
            // within 100 ms; demotion is for a link that stays silent.
            silence_demote: Duration::from_millis(1000),
            silence_hold: Duration::from_millis(100),
            // Probes queue behind the video on a loaded link, so round-trip
            // jitter of a healthy but busy link reaches 60-70 ms in the lab
            // (steady-asymmetric, blackout-best-link); lower bounds demoted
            // every loaded link.
            jitter_demote_ms: 200.0,
            jitter_healthy_ms: 100.0,
            loss_demote: 0.10,
            loss_healthy: 0.03,
            max_rtt_ms: 1000.0,
            congestion_queue_ms: 30.0,
            admit_after: Duration::from_millis(500),
            warm_for: Duration::from_secs(2),
            readmit_after: Duration::from_secs(3),
            cooldown_after: Duration::from_secs(3),
            cooldown_for: Duration::from_secs(2),
            gone_after: Duration::from_secs(60),
        }
    }
}

/// One link's lifecycle.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    state: State,
    since: Duration,
    healthy_since: Option<Duration>,
    /// When the lifecycle started: a link never heard from has been silent since then.
    born: Option<Duration>,
    /// How far through its warm-up a warm link is, 0..=1.
    warm_progress: f64,
    /// The link is degraded for silence alone (see [`Lifecycle::step`]).
    silenced: bool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

/// What is wrong with a link right now, if anything.
fn problem(est: &Estimate, th: &Thresholds) -> Option<Reason> {
    match est.silence {
        None => return Some(Reason::Silent(Duration::MAX)),
        Some(s) if s > th.silence_demote => return Some(Reason::Silent(s)),
        Some(_) => {}
    }
    // Demoting a link for the loss and jitter of a queue our own traffic
    // built would move that traffic onto the other links and congest them in
    // turn (measured: a cascade that left every link degraded).
    let queued = est.queue_delay_p95_ms.or(est.queue_delay_ms);
    // Overload (every link at its budget) is congestion by definition; the
    // queue reading alone missed it on a link loaded for longer than the
    // delay window, whose minimum then includes the queue.
    let congested = est.overloaded || queued.is_some_and(|q| q > th.congestion_queue_ms);
    // Round-trip jitter never demotes a link that was admitted: on a loaded
    // link probes wait behind video bursts and measure the bursts (in the
    // lab, p95 − p50 of 236 ms on a loaded 6 Mbit/s link whose median queue
    // was 15 ms), and on an idle LTE link it exceeded 1 s while the link
    // could carry (a real driving trace: links demoted for it, out for 3 s
    // each). Delay is the rate model's and the expected arrival's business;
    // jitter only gates a link's first admission (`healthy`).
    if est.loss_recent > th.loss_demote && !congested {
        return Some(Reason::Loss(est.loss_recent));
    }
    // A long round trip made of our own queue is congestion too: demoting
    // the link strands what it still drains (lab, thermal-collapse: a
    // throttled link demoted at 1 s of queue overloaded the other two).
    match est.rtt_ms {
        Some(r) if r[1] > th.max_rtt_ms && !congested => Some(Reason::Delay(r[1])),
        _ => None,
    }
}

/// Healthy by the stricter, re-admission bounds. The jitter bound applies
/// to a link's first admission only: a link that carried before and was
/// demoted for silence or loss comes back on those, not on the round-trip
/// jitter of an idle cellular link (which exceeded 100 ms for seconds on a
/// real LTE trace and kept links out 15-20 s).
fn healthy(est: &Estimate, th: &Thresholds, first_admission: bool) -> bool {
    problem(est, th).is_none()
        && est.rtt_ms.is_some()
        && (!first_admission || est.jitter_ms.is_some_and(|j| j <= th.jitter_healthy_ms))
        && est.loss_recent <= th.loss_healthy
}

impl Lifecycle {
    /// A link in `init`.
    pub fn new() -> Self {
        Self {
            state: State::Init,
            since: Duration::ZERO,
            healthy_since: None,
            born: None,
            warm_progress: 0.0,
            silenced: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Share of its capacity the link may carry in its state: none until it
    /// passed its checks; while warming, a share rising from 10 % to 50 %
    /// over the warm-up (so a link that comes back while the others are
    /// overloaded helps soon, yet proves itself before it carries fully).
    pub fn share(&self) -> f64 {
        match self.state {
            State::Live => 1.0,
            State::Warm => 0.1 + 0.4 * self.warm_progress,
            _ => 0.0,
        }
    }

    fn go(&mut self, now: Duration, to: State, reason: Reason) -> Option<Transition> {
        let from = self.state;
        self.silenced = to == State::Degraded && matches!(reason, Reason::Silent(_));
        self.state = to;
        self.since = now;
        self.healthy_since = None;
        Some(Transition { from, to, reason })
    }

    /// Advances the lifecycle with the latest estimate.
    pub fn step(&mut self, now: Duration, est: &Estimate, th: &Thresholds) -> Option<Transition> {
        let good = healthy(est, th, matches!(self.state, State::Init | State::Probe));
        if good {
            self.healthy_since.get_or_insert(now);
        } else {
            self.healthy_since = None;
        }
        let healthy_for = self.healthy_since.map_or(Duration::ZERO, |t| now.saturating_sub(t));
        let in_state = now.saturating_sub(self.since);
        let born = *self.born.get_or_insert(now);
        let silence = est.silence.unwrap_or_else(|| now.saturating_sub(born));
        self.warm_progress = if self.state == State::Warm && !th.warm_for.is_zero() {
            (in_state.as_secs_f64() / th.warm_for.as_secs_f64()).min(1.0)
        } else {
            0.0
        };
        if matches!(self.state, State::Warm | State::Live)
            && let Some(reason) = problem(est, th)
        {
            return self.go(now, State::Degraded, reason);
        }
        match self.state {
            State::Init => self.go(now, State::Probe, Reason::Started),
            State::Probe if healthy_for >= th.admit_after => {
                self.go(now, State::Warm, Reason::Healthy(healthy_for))
            }
            State::Probe if silence >= th.cooldown_after && in_state >= th.cooldown_after => {
                self.go(now, State::Cooldown, Reason::Silent(silence))
            }
            State::Warm if in_state >= th.warm_for && good => {
                self.go(now, State::Live, Reason::Healthy(in_state))
            }
            State::Degraded if healthy_for >= th.readmit_after => {
                self.go(now, State::Live, Reason::Healthy(healthy_for))
            }
            // Demoted for silence alone and heard again, healthy: an LTE
            // stall of a second or two, over. Such a link comes back after
            // the probe's admission bound, not the re-admission one: a
            // real driving trace has stalls past the 1 s demotion bound
            // every minute or so per link, and each kept a link that
            // carried 5-7 Mbit/s right after it out for 3.5 s (lab,
            // real-links-70: ≈ 2 000 datagrams a run). Flapping costs
            // little — silence takes the traffic off the link within
            // `silence_hold` again — while a link failing some other way
            // (loss, delay, an OS hint) still waits `readmit_after`.
            State::Degraded if self.silenced && healthy_for >= th.admit_after => {
                self.go(now, State::Live, Reason::Healthy(healthy_for))
            }
            State::Degraded if silence >= th.cooldown_after => {
                self.go(now, State::Cooldown, Reason::Silent(silence))
            }
            State::Cooldown if silence >= th.gone_after => self.go(now, State::Gone, Reason::Silent(silence)),
            State::Cooldown if in_state >= th.cooldown_for && silence < th.silence_demote => {
                self.go(now, State::Probe, Reason::Rested)
            }
            State::Gone if silence < th.silence_demote => self.go(now, State::Probe, Reason::Heard),
            _ => None,
        }
    }

    /// An operating-system hint: the carrier went away or the interface was
    /// removed. Demotes a carrying link at once; never admits one.
    pub fn on_os_loss(&mut self, now: Duration, what: &'static str) -> Option<Transition> {
        match self.state {
            State::Warm | State::Live => self.go(now, State::Degraded, Reason::OsHint(what)),
            _ => None,
        }
    }

    /// An operating-system hint: the link's interface or carrier is back.
    /// A link out of service (degraded, cooldown, gone) starts over at
    /// probe now, instead of resting or waiting out the degraded link's
    /// re-admission: it then passes the in-band checks, warms up at a low
    /// share and only then carries its full share (principle 3: pre-warm
    /// before trusting). Never admits a link by itself.
    pub fn on_os_return(&mut self, now: Duration, what: &'static str) -> Option<Transition> {
        match self.state {
            State::Degraded | State::Cooldown | State::Gone => {
                self.go(now, State::Probe, Reason::OsHint(what))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn good() -> Estimate {
        Estimate {
            silence: Some(ms(20)),
            rtt_ms: Some([40.0, 45.0, 55.0, 60.0]),
            jitter_ms: Some(10.0),
            ..Default::default()
        }
    }

    /// Steps every 50 ms from `from` to `to` with `est`, collecting transitions.
    fn run(l: &mut Lifecycle, from: u64, to: u64, est: &Estimate) -> Vec<(u64, State)> {
        let th = Thresholds::default();
        (from..to).step_by(50).filter_map(|t| l.step(ms(t), est, &th).map(|tr| (t, tr.to))).collect()
    }

    #[test]
    fn a_healthy_link_is_admitted_through_warm() {
        let mut l = Lifecycle::new();
        let steps = run(&mut l, 0, 4000, &good());
        assert_eq!(
            steps.iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![State::Probe, State::Warm, State::Live]
        );
        assert_eq!(steps[1].0, 550, "warm after 500 ms healthy");
        assert_eq!(steps[2].0, 2550, "live after 2 s warm");
        assert_eq!(l.share(), 1.0);
    }

    #[test]
    fn demotion_is_immediate_and_readmission_slow() {
        let mut l = Lifecycle::new();
        run(&mut l, 0, 4000, &good());
        let lossy = Estimate { loss_recent: 0.2, ..good() };
        let th = Thresholds::default();
        let t = l.step(ms(4000), &lossy, &th).unwrap();
        assert_eq!((t.to, t.reason), (State::Degraded, Reason::Loss(0.2)));
        assert_eq!(l.share(), 0.0);
        let back = run(&mut l, 4050, 9000, &good());
        assert_eq!(back, vec![(7050, State::Live)], "3 s healthy before re-admission");
    }

    #[test]
    fn a_link_back_from_a_stall_carries_again_soon() {
        let mut l = Lifecycle::new();
        run(&mut l, 0, 4000, &good());
        let th = Thresholds::default();
        let silent = Estimate { silence: Some(ms(1100)), ..good() };
        let t = l.step(ms(4000), &silent, &th).unwrap();
        assert_eq!((t.to, t.reason), (State::Degraded, Reason::Silent(ms(1100))));
        assert_eq!(l.share(), 0.0);
        let back = run(&mut l, 4050, 9000, &good());
        assert_eq!(back, vec![(4550, State::Live)], "live after the admission bound, not 3 s");
    }

    #[test]
    fn a_long_silence_leads_to_cooldown_then_gone_and_back() {
        let mut l = Lifecycle::new();
        run(&mut l, 0, 4000, &good());
        let th = Thresholds::default();
        let silent = |s: u64| Estimate { silence: Some(ms(s)), ..good() };
        assert_eq!(l.step(ms(4000), &silent(1100), &th).unwrap().to, State::Degraded);
        assert_eq!(l.step(ms(7000), &silent(3200), &th).unwrap().to, State::Cooldown);
        assert_eq!(l.step(ms(70_000), &silent(66_000), &th).unwrap().to, State::Gone);
        assert_eq!(l.step(ms(80_000), &good(), &th).unwrap().to, State::Probe);
    }

    #[test]
    fn jitter_hysteresis_prevents_flapping() {
        // Jitter as a windowed p95 − p50 hovers around the demote bound when
        // spikes come every few seconds; a link that was demoted needs 3 s
        // below the (lower) healthy bound to come back.
        let mut l = Lifecycle::new();
        run(&mut l, 0, 4000, &good());
        let th = Thresholds::default();
        let (above, between) =
            (th.jitter_demote_ms + 5.0, (th.jitter_demote_ms + th.jitter_healthy_ms) / 2.0);
        let mut changes = 0;
        for k in 0..400u64 {
            let t = 4000 + k * 50;
            let jitter = if (k / 20) % 3 == 0 { above } else { between }; // spiky, never healthy
            let est = Estimate { jitter_ms: Some(jitter), ..good() };
            if l.step(ms(t), &est, &th).is_some() {
                changes += 1;
            }
        }
        assert!(changes <= 1, "{changes} state changes in 20 s");
    }

    #[test]
    fn loss_in_a_standing_queue_is_congestion_not_failure() {
        let mut l = Lifecycle::new();
        run(&mut l, 0, 4000, &good());
        let th = Thresholds::default();
        let congested = Estimate { loss_recent: 0.2, queue_delay_ms: Some(80.0), ..good() };
        assert_eq!(l.step(ms(4000), &congested, &th), None, "the budget answers congestion");
        let overloaded = Estimate { loss_recent: 0.2, overloaded: true, ..good() };
        assert_eq!(l.step(ms(4020), &overloaded, &th), None, "overload is congestion too");
        let radio = Estimate { loss_recent: 0.2, queue_delay_ms: Some(2.0), ..good() };
        assert_eq!(l.step(ms(4050), &radio, &th).unwrap().reason, Reason::Loss(0.2));
    }

    #[test]
    fn os_hints_demote_but_never_admit() {
        let mut l = Lifecycle::new();
        assert_eq!(l.on_os_loss(ms(0), "carrier down"), None, "nothing to demote");
        run(&mut l, 0, 4000, &good());
        assert_eq!(l.on_os_loss(ms(4000), "carrier down").unwrap().to, State::Degraded);
        assert_eq!(l.share(), 0.0);
        assert_eq!(l.on_os_return(ms(4010), "carrier up").unwrap().to, State::Probe, "starts over");
        assert_eq!(l.share(), 0.0, "probing is not carrying");
        assert_eq!(l.on_os_return(ms(4020), "carrier up"), None, "already probing");
        let silent = Estimate { silence: Some(ms(5000)), ..good() };
        let steps = run(&mut l, 4050, 8000, &silent);
        assert_eq!(steps.last().map(|s| s.1), Some(State::Cooldown), "{steps:?}");
        assert_eq!(l.on_os_return(ms(8000), "interface back").unwrap().to, State::Probe);
        assert_eq!(l.share(), 0.0, "probing is not carrying");
        let steps = run(&mut l, 8050, 9000, &good());
        assert_eq!(steps.first().map(|s| s.1), Some(State::Warm), "admitted in band: {steps:?}");
    }

    #[test]
    fn a_variable_link_is_not_demoted() {
        // A loaded LTE link: its round trip swings by hundreds of ms, it
        // stalls for 400 ms, its queue comes and goes — none of it demotes.
        let mut l = Lifecycle::new();
        run(&mut l, 0, 4000, &good());
        let th = Thresholds::default();
        for k in 0..600u64 {
            let t = 4000 + k * 50;
            let est = Estimate {
                silence: Some(ms(if k % 60 < 8 { (k % 60) * 50 } else { 20 })),
                jitter_ms: Some(if k % 7 == 0 { 600.0 } else { 150.0 }),
                queue_delay_ms: Some((k % 13) as f64 * 8.0),
                carrying: true,
                ..good()
            };
            assert_eq!(l.step(ms(t), &est, &th), None, "at {t} ms");
        }
        let dying = Estimate { silence: Some(ms(1050)), ..good() };
        assert_eq!(l.step(ms(40_000), &dying, &th).unwrap().to, State::Degraded, "a dying link is");
    }

    #[test]
    fn a_never_heard_link_stays_out() {
        let mut l = Lifecycle::new();
        let nothing = Estimate::default();
        let steps = run(&mut l, 0, 10_000, &nothing);
        assert!(steps.iter().all(|s| s.1 != State::Warm && s.1 != State::Live), "{steps:?}");
        assert_eq!(l.share(), 0.0);
    }
}
