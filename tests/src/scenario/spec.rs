//! Scenario files: what the lab plays.
//!
//! A scenario is a TOML file in `tests/scenarios/`: the links (capacity trace,
//! delay, jitter, loss, buffer), the traffic, and timed events. Traces come
//! from documented models with fixed seeds ([`TraceModel`]) or from any
//! mahimahi file. Every field is checked; errors name the field.
//!
//! A file trace may start `offset_s` into the file and scale its rate by
//! `scale` (one long recording gives several distinct links), and may name
//! a synthetic `fallback` played when the file is absent — the real traces
//! live beside the project, not in it, and the scenarios must run without
//! them. Every run reports which source each link actually played
//! ([`TraceSource`]).
//!
//! ```toml
//! name = "blackout-best-link"
//! duration_s = 30
//! seed = 7
//! deadline_ms = 150    # in-time delivery, for Strata and the oracle (default)
//!
//! [[links]]
//! trace = { model = "constant", mbit_s = 12 }
//! delay_ms = 40
//! jitter_ms = 3
//!
//! [[links]]
//! delay_ms = 50
//! [links.trace]
//! model = "file"
//! path = "../../../shared/traces/TMobile-LTE-driving.down"
//! offset_s = 120
//! scale = 0.4
//! fallback = { model = "cellular", mean_mbit_s = 5.1 }
//!
//! [[traffic]]
//! kind = "video"
//! load = 0.7            # of the links' summed mean capacity (or mbit_s = 8)
//!
//! [[events]]
//! at_s = 10
//! kind = "blackout"
//! link = 0
//! duration_s = 5
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::emulator::{
    cellular::{self, Shape},
    model::{Collapse, DirectionConfig, Jitter, Loss, Window},
    trace::Trace,
};

/// A whole scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (file stem by convention).
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// Length of the traffic, seconds.
    pub duration_s: f64,
    /// Seed of every random choice (traces, jitter, loss).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// One-way delay budget, ms: a datagram counts as delivered in time when
    /// it arrives within it — for Strata and for the oracle it is compared
    /// with ([`super::oracle`]).
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: f64,
    /// The links, in link-id order.
    pub links: Vec<LinkSpec>,
    /// What the applications send.
    pub traffic: Vec<TrafficSpec>,
    /// Timed events.
    #[serde(default)]
    pub events: Vec<EventSpec>,
    /// An off-path attacker on the internet during the run
    /// ([`crate::attacker`]).
    #[serde(default)]
    pub attack: Option<crate::attacker::AttackSpec>,
}

const fn default_seed() -> u64 {
    1
}

/// Live video's usual glass-to-glass allowance for the network.
const fn default_deadline_ms() -> f64 {
    150.0
}

/// One emulated link (the trace shapes the uplink, car → hub, which carries
/// the video; the downlink gets the same delay and a generous fixed rate).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Uplink capacity.
    pub trace: TraceModel,
    /// One-way base delay, ms.
    pub delay_ms: f64,
    /// Jitter (normal, standard deviation), ms.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Random loss probability.
    #[serde(default)]
    pub loss: f64,
    /// Bursty loss instead of random.
    #[serde(default)]
    pub gilbert: Option<GilbertSpec>,
    /// Modem buffer, KiB.
    #[serde(default = "default_buffer_kb")]
    pub buffer_kb: usize,
    /// Static Strata weight (default: proportional to the trace's mean rate).
    #[serde(default)]
    pub weight: Option<u32>,
    /// What the carrier speaks: `"ipv4"` (behind NAT, the default) or
    /// `"ipv6"` (IPv6 only: the link's outer header is IPv6).
    #[serde(default)]
    pub family: crate::CarrierFamily,
}

const fn default_buffer_kb() -> usize {
    256
}

/// Gilbert–Elliott loss parameters.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GilbertSpec {
    /// Good → bad per packet.
    pub p_good_bad: f64,
    /// Bad → good per packet.
    pub p_bad_good: f64,
    /// Loss in the bad state.
    #[serde(default = "one")]
    pub loss_bad: f64,
    /// Loss in the good state.
    #[serde(default)]
    pub loss_good: f64,
}

const fn one() -> f64 {
    1.0
}

/// Where a link's capacity comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "model", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TraceModel {
    /// A constant rate.
    Constant {
        /// Mbit/s.
        mbit_s: f64,
    },
    /// A two-state (good/bad) Markov fading model: exponentially distributed
    /// dwell times, seeded.
    Markov {
        /// Rate in the good state, Mbit/s.
        good_mbit_s: f64,
        /// Rate in the bad state, Mbit/s.
        bad_mbit_s: f64,
        /// Mean time in the good state, s.
        mean_good_s: f64,
        /// Mean time in the bad state, s.
        mean_bad_s: f64,
    },
    /// A race lap: the rate swings between `min` and `max` once per lap as
    /// the car passes cells (raised cosine, phase per link), with ±`noise`
    /// relative variation per 100 ms slice, seeded.
    Lap {
        /// Lowest rate, Mbit/s.
        min_mbit_s: f64,
        /// Highest rate, Mbit/s.
        max_mbit_s: f64,
        /// Lap time, s.
        lap_s: f64,
        /// Where in the lap this link is best, 0..1.
        phase: f64,
        /// Relative noise per slice, 0..1.
        #[serde(default)]
        noise: f64,
    },
    /// A mahimahi trace file (relative to the scenario file).
    File {
        /// Path.
        path: PathBuf,
        /// Start this far into the trace, s (wrapping round its end).
        #[serde(default)]
        offset_s: f64,
        /// Multiply the trace's rate by this (> 0), keeping its bursts'
        /// shape: see [`Trace::scaled`].
        #[serde(default = "one")]
        scale: f64,
        /// A synthetic model played instead when the file is absent.
        #[serde(default)]
        fallback: Option<Box<Self>>,
    },
    /// A synthetic cellular link calibrated on real traces: a log-normal
    /// rate with memory, 100 ms stalls, opportunities in bursts (see
    /// [`crate::emulator::cellular`]). Only the mean is required; the
    /// shape's defaults are the fit to a real LTE trace.
    Cellular {
        /// Mean rate, Mbit/s.
        mean_mbit_s: f64,
        /// Standard deviation of the log of the 100 ms rate.
        #[serde(default = "default_sigma")]
        sigma: f64,
        /// Correlation time of the rate, s.
        #[serde(default = "default_corr_s")]
        corr_s: f64,
        /// Mean time between stalls, s.
        #[serde(default = "default_stall_every_s")]
        stall_every_s: f64,
        /// Shortest stall, ms (lengths are heavy-tailed).
        #[serde(default = "default_stall_ms")]
        stall_ms: f64,
        /// Mean opportunities per burst.
        #[serde(default = "default_burst")]
        burst: f64,
    },
}

fn default_sigma() -> f64 {
    Shape::default().sigma
}
fn default_corr_s() -> f64 {
    Shape::default().corr_s
}
fn default_stall_every_s() -> f64 {
    Shape::default().stall_every_s
}
fn default_stall_ms() -> f64 {
    Shape::default().stall_ms
}
fn default_burst() -> f64 {
    Shape::default().burst
}

/// Where a link's trace actually came from in a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceSource {
    /// The model played: `file`, `cellular`, `constant`, ….
    pub model: String,
    /// The file the link named when it was absent and the fallback played instead.
    pub fallback_for: Option<PathBuf>,
    /// One line for a human: what played, with offset and scale.
    pub description: String,
}

/// One application flow.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TrafficSpec {
    /// Video: frames at `fps`, an I-frame (5× a P-frame) every `gop` frames,
    /// each frame a burst of 1316-byte packets (7 MPEG-TS packets). DSCP AF41.
    Video {
        /// Bitrate, Mbit/s (or use `load`).
        #[serde(default)]
        mbit_s: Option<f64>,
        /// Bitrate as a fraction of the links' summed mean capacity.
        #[serde(default)]
        load: Option<f64>,
        /// Frames per second.
        #[serde(default = "default_fps")]
        fps: u32,
        /// Frames per group of pictures.
        #[serde(default = "default_gop")]
        gop: u32,
    },
    /// Telemetry: small packets at a fixed rate. DSCP EF.
    Telemetry {
        /// Packets per second.
        #[serde(default = "default_hz")]
        hz: u32,
        /// Bytes per packet.
        #[serde(default = "default_telemetry_bytes")]
        bytes: usize,
    },
    /// Constant bit rate, best effort.
    Cbr {
        /// Mbit/s (or use `load`).
        #[serde(default)]
        mbit_s: Option<f64>,
        /// Rate as a fraction of the links' summed mean capacity.
        #[serde(default)]
        load: Option<f64>,
        /// Bytes per packet.
        #[serde(default = "default_cbr_bytes")]
        bytes: usize,
    },
}

const fn default_fps() -> u32 {
    30
}
const fn default_gop() -> u32 {
    30
}
const fn default_hz() -> u32 {
    100
}
const fn default_telemetry_bytes() -> usize {
    200
}
const fn default_cbr_bytes() -> usize {
    1200
}

/// A timed event. (Unknown keys are still rejected: by the flattened
/// [`EventKind`], since serde cannot deny them on a struct that flattens.)
#[derive(Clone, Debug, Deserialize)]
pub struct EventSpec {
    /// When, seconds from the start of traffic.
    pub at_s: f64,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happens.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum EventKind {
    /// The radio of `link` is gone for `duration_s` (queue lost, arrivals lost).
    Blackout {
        /// Link id.
        link: usize,
        /// Seconds.
        duration_s: f64,
    },
    /// The capacity of `link` falls to `factor` for `duration_s` (thermal throttling).
    Collapse {
        /// Link id.
        link: usize,
        /// Seconds.
        duration_s: f64,
        /// Remaining fraction, (0, 1].
        factor: f64,
    },
    /// From now on the uplink capacity of `link` is a constant `mbit_s`
    /// (a handover to a better or worse cell, a bearer reconfigured): a
    /// step, whatever the trace did before.
    Capacity {
        /// Link id.
        link: usize,
        /// New rate, Mbit/s.
        mbit_s: f64,
    },
    /// The edge's interface of `link` goes down, and comes back after `duration_s`.
    InterfaceDown {
        /// Link id.
        link: usize,
        /// Seconds.
        duration_s: f64,
    },
    /// The edge's interface of `link` loses its carrier (the far side goes
    /// down, as a modem losing its bearer), and gets it back after `duration_s`.
    CarrierDown {
        /// Link id.
        link: usize,
        /// Seconds.
        duration_s: f64,
    },
    /// The edge's address on `link` changes (as after a new DHCP lease).
    AddressChange {
        /// Link id.
        link: usize,
    },
    /// The carrier of `link` forgets its NAT mappings: the next packets leave
    /// from a new public port.
    NatRebind {
        /// Link id.
        link: usize,
    },
    /// The edge's interface of `link` disappears (USB detach) and comes back
    /// after `duration_s` under another name.
    UsbReattach {
        /// Link id.
        link: usize,
        /// Seconds.
        duration_s: f64,
    },
    /// Every `every_s` for `duration_s`, packets on `link` sent within a
    /// `spike_s` window take `extra_ms` longer, both ways (radio delay spikes).
    DelaySpikes {
        /// Link id.
        link: usize,
        /// Seconds the spikes go on for.
        duration_s: f64,
        /// Seconds from one spike to the next.
        every_s: f64,
        /// Seconds each spike lasts.
        spike_s: f64,
        /// Extra one-way delay during a spike, ms.
        extra_ms: f64,
    },
    /// The MTU of the edge's interface of `link` changes.
    Mtu {
        /// Link id.
        link: usize,
        /// New MTU.
        mtu: u32,
    },
}

impl EventKind {
    /// Stable kebab-case name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Blackout { .. } => "blackout",
            Self::Collapse { .. } => "collapse",
            Self::InterfaceDown { .. } => "interface-down",
            Self::CarrierDown { .. } => "carrier-down",
            Self::AddressChange { .. } => "address-change",
            Self::NatRebind { .. } => "nat-rebind",
            Self::UsbReattach { .. } => "usb-reattach",
            Self::Mtu { .. } => "mtu",
            Self::DelaySpikes { .. } => "delay-spikes",
            Self::Capacity { .. } => "capacity",
        }
    }

    /// The link the event hits.
    pub fn link(&self) -> usize {
        match *self {
            Self::Blackout { link, .. }
            | Self::Collapse { link, .. }
            | Self::InterfaceDown { link, .. }
            | Self::CarrierDown { link, .. }
            | Self::AddressChange { link }
            | Self::NatRebind { link }
            | Self::UsbReattach { link, .. }
            | Self::Mtu { link, .. }
            | Self::DelaySpikes { link, .. }
            | Self::Capacity { link, .. } => link,
        }
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut s: Self = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        // Trace files are relative to the scenario.
        let base = path.parent().unwrap_or(Path::new("."));
        for link in &mut s.links {
            if let TraceModel::File { path, .. } = &mut link.trace
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        }
        s.validate().with_context(|| format!("{}", path.display()))?;
        Ok(s)
    }

    /// Checks what types cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.name.is_empty(), "name: must not be empty");
        ensure!(self.duration_s > 0.0 && self.duration_s <= 3600.0, "duration_s: must be in (0, 3600]");
        ensure!(self.deadline_ms > 0.0 && self.deadline_ms <= 10_000.0, "deadline_ms: must be in (0, 10000]");
        ensure!((1..=8).contains(&self.links.len()), "links: a scenario has 1 to 8 links");
        ensure!(!self.traffic.is_empty(), "traffic: at least one flow");
        for (i, l) in self.links.iter().enumerate() {
            ensure!((0.0..=10_000.0).contains(&l.delay_ms), "links[{i}].delay_ms: must be in 0..=10000");
            ensure!((0.0..=1000.0).contains(&l.jitter_ms), "links[{i}].jitter_ms: must be in 0..=1000");
            ensure!((0.0..=1.0).contains(&l.loss), "links[{i}].loss: must be a probability");
            ensure!(l.buffer_kb >= 2, "links[{i}].buffer_kb: at least 2");
            l.trace.validate().with_context(|| format!("links[{i}].trace"))?;
            if let Some(g) = l.gilbert {
                for (v, f) in [
                    (g.p_good_bad, "p_good_bad"),
                    (g.p_bad_good, "p_bad_good"),
                    (g.loss_bad, "loss_bad"),
                    (g.loss_good, "loss_good"),
                ] {
                    ensure!((0.0..=1.0).contains(&v), "links[{i}].gilbert.{f}: must be a probability");
                }
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            ensure!(e.at_s >= 0.0 && e.at_s < self.duration_s, "events[{i}].at_s: must be within the run");
            ensure!(e.kind.link() < self.links.len(), "events[{i}].link: no link {}", e.kind.link());
            if let EventKind::Collapse { factor, .. } = e.kind {
                ensure!(factor > 0.0 && factor <= 1.0, "events[{i}].factor: must be in (0, 1]");
            }
            if let EventKind::Capacity { mbit_s, .. } = e.kind {
                ensure!(
                    mbit_s.is_finite() && (0.001..=10_000.0).contains(&mbit_s),
                    "events[{i}].mbit_s: must be in 0.001..=10000"
                );
            }
            if let EventKind::DelaySpikes { duration_s, every_s, spike_s, extra_ms, .. } = e.kind {
                ensure!(
                    every_s >= 0.01 && spike_s > 0.0 && spike_s <= every_s,
                    "events[{i}]: need 0 < spike_s <= every_s, every_s >= 0.01"
                );
                ensure!(
                    duration_s > 0.0 && (0.0..=10_000.0).contains(&extra_ms),
                    "events[{i}]: need duration_s > 0 and extra_ms in 0..=10000"
                );
            }
        }
        for (i, t) in self.traffic.iter().enumerate() {
            if let TrafficSpec::Video { mbit_s, load, .. } | TrafficSpec::Cbr { mbit_s, load, .. } = t {
                ensure!(
                    mbit_s.is_some() != load.is_some(),
                    "traffic[{i}]: give exactly one of mbit_s and load"
                );
            }
        }
        Ok(())
    }

    /// The uplink trace of each link, generated from its model with the scenario's seed.
    pub fn traces(&self) -> anyhow::Result<Vec<Trace>> {
        Ok(self.traces_with_sources()?.into_iter().map(|(t, _)| t).collect())
    }

    /// Like [`Scenario::traces`], with where each trace came from (a file,
    /// or its fallback when the file is absent).
    pub fn traces_with_sources(&self) -> anyhow::Result<Vec<(Trace, TraceSource)>> {
        self.links
            .iter()
            .enumerate()
            .map(|(i, l)| {
                l.trace
                    .generate_with_source(self.duration_s, self.seed.wrapping_add(i as u64 * 7919))
                    .with_context(|| format!("links[{i}].trace"))
            })
            .collect()
    }

    /// The traces the uplinks play, with the `capacity` events spliced in:
    /// traces start at emulator time 0, `t0_ns` before the scenario's time
    /// 0 (the lab's warm-up). Each stepped trace runs until well after the
    /// run's end.
    pub fn uplink_traces(&self, traces: &[Trace], t0_ns: u64) -> anyhow::Result<Vec<Trace>> {
        let horizon_ms = t0_ns / 1_000_000 + ((self.duration_s + 60.0) * 1000.0) as u64;
        let mut out = traces.to_vec();
        let mut steps: Vec<&EventSpec> =
            self.events.iter().filter(|e| matches!(e.kind, EventKind::Capacity { .. })).collect();
        steps.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        for e in steps {
            if let EventKind::Capacity { link, mbit_s } = e.kind
                && let Some(trace) = out.get_mut(link)
            {
                let at_ms = t0_ns / 1_000_000 + (e.at_s * 1000.0) as u64;
                *trace = trace.with_rate_from(at_ms, mbit_s, horizon_ms)?;
            }
        }
        Ok(out)
    }

    /// Points every `file` link at `path` instead (keeping its offset,
    /// scale and fallback): the same scenario on another recording.
    /// Returns how many links it changed.
    pub fn replace_trace_files(&mut self, path: &Path) -> usize {
        let mut n = 0;
        for l in &mut self.links {
            if let TraceModel::File { path: p, .. } = &mut l.trace {
                *p = path.to_path_buf();
                n += 1;
            }
        }
        n
    }

    /// The emulator's uplink and downlink configuration of each link, with the
    /// emulator-level events (blackouts, collapses) scheduled in.
    pub fn directions(&self, traces: &[Trace], t0_ns: u64) -> Vec<(DirectionConfig, DirectionConfig)> {
        let window = |at_s: f64, d_s: f64| Window {
            start: t0_ns + (at_s * 1e9) as u64,
            end: t0_ns + ((at_s + d_s) * 1e9) as u64,
        };
        self.links
            .iter()
            .zip(traces)
            .enumerate()
            .map(|(i, (l, trace))| {
                let mut blackouts = Vec::new();
                let mut collapses = Vec::new();
                let mut delay_spikes = Vec::new();
                for e in &self.events {
                    match e.kind {
                        EventKind::Blackout { link, duration_s } if link == i => {
                            blackouts.push(window(e.at_s, duration_s))
                        }
                        EventKind::Collapse { link, duration_s, factor } if link == i => {
                            collapses.push(Collapse { window: window(e.at_s, duration_s), factor });
                        }
                        EventKind::DelaySpikes { link, duration_s, every_s, spike_s, extra_ms }
                            if link == i =>
                        {
                            let mut at = e.at_s;
                            while at < e.at_s + duration_s {
                                delay_spikes.push((window(at, spike_s), extra_ms));
                                at += every_s;
                            }
                        }
                        _ => {}
                    }
                }
                let loss = match l.gilbert {
                    Some(g) => Loss::GilbertElliott {
                        p_good_bad: g.p_good_bad,
                        p_bad_good: g.p_bad_good,
                        loss_good: g.loss_good,
                        loss_bad: g.loss_bad,
                    },
                    None if l.loss > 0.0 => Loss::Random { p: l.loss },
                    None => Loss::None,
                };
                let jitter =
                    if l.jitter_ms > 0.0 { Jitter::Normal { sd_ms: l.jitter_ms } } else { Jitter::None };
                let seed = self.seed.wrapping_mul(31).wrapping_add(i as u64);
                let uplink = DirectionConfig {
                    base_delay_ms: l.delay_ms,
                    jitter,
                    reorder: false,
                    loss,
                    capacity: Some(trace.clone()),
                    buffer_bytes: l.buffer_kb * 1024,
                    blackouts: blackouts.clone(),
                    collapses,
                    delay_spikes: delay_spikes.clone(),
                    seed,
                };
                let downlink = DirectionConfig {
                    base_delay_ms: l.delay_ms,
                    jitter,
                    loss,
                    capacity: Trace::constant(50.0).ok(),
                    buffer_bytes: l.buffer_kb * 1024,
                    blackouts,
                    delay_spikes,
                    seed: seed ^ 0xD0_D0,
                    ..DirectionConfig::default()
                };
                (uplink, downlink)
            })
            .collect()
    }

    /// Static Strata weights: as given, else proportional to each trace's mean rate.
    pub fn weights(&self, traces: &[Trace]) -> Vec<u32> {
        self.links
            .iter()
            .zip(traces)
            .map(|(l, t)| l.weight.unwrap_or_else(|| (t.mean_mbit_s().round() as u32).clamp(1, 1000)))
            .collect()
    }

    /// Summed mean capacity of the links' traces, Mbit/s.
    pub fn aggregate_mbit_s(traces: &[Trace]) -> f64 {
        traces.iter().map(Trace::mean_mbit_s).sum()
    }
}

impl TraceModel {
    /// A model written as the inside of an inline TOML table, as in a
    /// scenario file: `model = "cellular", mean_mbit_s = 5`.
    pub fn parse_inline(text: &str) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        struct Wrapper {
            trace: TraceModel,
        }
        let w: Wrapper =
            toml::from_str(&format!("trace = {{ {text} }}")).with_context(|| format!("model {text:?}"))?;
        w.trace.validate()?;
        Ok(w.trace)
    }

    /// The model's name, as in a scenario file.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Constant { .. } => "constant",
            Self::Markov { .. } => "markov",
            Self::Lap { .. } => "lap",
            Self::File { .. } => "file",
            Self::Cellular { .. } => "cellular",
        }
    }

    /// Checks what types cannot; errors name the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        match self {
            Self::File { offset_s, scale, fallback, .. } => {
                ensure!(offset_s.is_finite() && *offset_s >= 0.0, "offset_s: must be finite and 0 or more");
                ensure!(scale.is_finite() && *scale > 0.0, "scale: must be finite and greater than 0");
                if let Some(f) = fallback {
                    ensure!(
                        !matches!(**f, Self::File { .. }),
                        "fallback: must be a synthetic model (it plays when a file is missing)"
                    );
                    f.validate().context("fallback")?;
                }
            }
            Self::Cellular { mean_mbit_s, .. } => {
                ensure!(
                    mean_mbit_s.is_finite() && *mean_mbit_s > 0.0,
                    "mean_mbit_s: must be finite and greater than 0"
                );
                self.shape().unwrap_or_default().validate()?;
            }
            Self::Constant { mbit_s } => {
                ensure!(mbit_s.is_finite() && *mbit_s > 0.0, "mbit_s: must be finite and greater than 0");
            }
            Self::Markov { .. } | Self::Lap { .. } => {}
        }
        Ok(())
    }

    fn shape(&self) -> Option<Shape> {
        match *self {
            Self::Cellular { sigma, corr_s, stall_every_s, stall_ms, burst, .. } => {
                Some(Shape { sigma, corr_s, stall_every_s, stall_ms, burst })
            }
            _ => None,
        }
    }

    /// Generates the trace and says where it came from: a `file` whose
    /// path does not exist plays its fallback model (an error without
    /// one, naming the path).
    pub fn generate_with_source(&self, duration_s: f64, seed: u64) -> anyhow::Result<(Trace, TraceSource)> {
        let source = |model: &str, description: String| TraceSource {
            model: model.to_string(),
            fallback_for: None,
            description,
        };
        match self {
            Self::File { path, offset_s, scale, fallback } => {
                if !path.exists() {
                    let Some(fallback) = fallback else {
                        bail!(
                            "trace file {} not found (give the link a `fallback` model to play without it)",
                            path.display()
                        );
                    };
                    let (trace, inner) = fallback.generate_with_source(duration_s, seed)?;
                    let description =
                        format!("{} — fallback: {} not found", inner.description, path.display());
                    return Ok((
                        trace,
                        TraceSource { fallback_for: Some(path.clone()), description, ..inner },
                    ));
                }
                let mut trace = Trace::load(path)?.starting_at((offset_s * 1000.0).round() as u64);
                if *scale != 1.0 {
                    trace = trace.scaled(*scale).with_context(|| format!("scale {scale}"))?;
                }
                let description = format!(
                    "file {} from {offset_s} s, × {scale} (mean {:.2} Mbit/s)",
                    path.display(),
                    trace.mean_mbit_s()
                );
                Ok((trace, source("file", description)))
            }
            _ => {
                let trace = self.generate(duration_s, seed)?;
                let description =
                    format!("{} model, seed {seed} (mean {:.2} Mbit/s)", self.name(), trace.mean_mbit_s());
                Ok((trace, source(self.name(), description)))
            }
        }
    }

    /// Generates the trace (at least `duration_s` long for generated models).
    pub fn generate(&self, duration_s: f64, seed: u64) -> anyhow::Result<Trace> {
        const SLICE_MS: u64 = 100;
        let slices = ((duration_s * 1000.0) as u64 / SLICE_MS).max(1) as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        match self {
            Self::Constant { mbit_s } => Trace::constant(*mbit_s),
            Self::Markov { good_mbit_s, bad_mbit_s, mean_good_s, mean_bad_s } => {
                ensure!(*mean_good_s > 0.0 && *mean_bad_s > 0.0, "markov: mean dwell times must be positive");
                let mut rates = Vec::with_capacity(slices);
                let mut good = true;
                while rates.len() < slices {
                    let mean = if good { mean_good_s } else { mean_bad_s };
                    // Exponential dwell time, in whole slices (at least one).
                    let u: f64 = rng.random::<f64>().max(1e-12);
                    let dwell = ((-u.ln() * mean * 1000.0 / SLICE_MS as f64).round() as usize).max(1);
                    let rate = if good { *good_mbit_s } else { *bad_mbit_s };
                    rates.extend(std::iter::repeat_n(rate, dwell.min(slices - rates.len())));
                    good = !good;
                }
                Trace::from_rates_mbit_s(&rates, SLICE_MS)
            }
            Self::Lap { min_mbit_s, max_mbit_s, lap_s, phase, noise } => {
                ensure!(*lap_s > 0.0, "lap: lap_s must be positive");
                let rates: Vec<f64> = (0..slices)
                    .map(|k| {
                        let t = k as f64 * SLICE_MS as f64 / 1000.0;
                        let x = (t / lap_s - phase) * std::f64::consts::TAU;
                        let base = min_mbit_s + (max_mbit_s - min_mbit_s) * 0.5 * (1.0 + x.cos());
                        let wiggle = 1.0 + noise * (rng.random::<f64>() * 2.0 - 1.0);
                        (base * wiggle).max(0.0)
                    })
                    .collect();
                Trace::from_rates_mbit_s(&rates, SLICE_MS)
            }
            Self::File { .. } => Ok(self.generate_with_source(duration_s, seed)?.0),
            Self::Cellular { mean_mbit_s, .. } => {
                // Longer than the run by the lab's warm-up and drain, so it
                // does not repeat within it.
                cellular::generate(*mean_mbit_s, &self.shape().unwrap_or_default(), duration_s + 10.0, seed)
            }
        }
    }
}

/// Fails unless `bad` is an error whose message names `field`.
#[cfg(test)]
fn names(bad: anyhow::Result<Scenario>, field: &str) {
    let msg = format!("{:#}", bad.err().unwrap_or_else(|| panic!("expected an error naming {field}")));
    assert!(msg.contains(field), "{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scenario_loads_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                s.validate().unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                assert_eq!(
                    path.file_stem().unwrap().to_str(),
                    Some(s.name.as_str()),
                    "name matches the file"
                );
                n += 1;
            }
        }
        assert!(n >= 12, "{n} scenarios");
    }

    #[test]
    fn real_link_scenarios_fall_back_to_the_same_mean() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        for name in ["real-links-40", "real-links-70"] {
            let mut s = Scenario::load(&dir.join(format!("{name}.toml"))).unwrap();
            // The real trace where it is present, else already the fallback.
            let played = s.traces_with_sources().unwrap();
            assert_eq!(s.replace_trace_files(Path::new("/nonexistent/real.down")), 3);
            let fallback = s.traces_with_sources().unwrap();
            for ((a, _), (b, source)) in played.iter().zip(&fallback) {
                assert_eq!(source.model, "cellular", "{name}: {source:?}");
                assert!(source.fallback_for.is_some());
                let (ma, mb) = (a.mean_mbit_s(), b.mean_mbit_s());
                assert!((ma - mb).abs() < 0.01 * ma, "{name}: {ma} vs {mb}");
            }
        }
    }

    const BASE: &str = r#"
        name = "t"
        duration_s = 10
        [[links]]
        trace = { model = "constant", mbit_s = 12 }
        delay_ms = 20
        [[traffic]]
        kind = "video"
        load = 0.5
        [[events]]
        at_s = 2
        kind = "blackout"
        link = 0
        duration_s = 1
    "#;

    fn parse(text: &str) -> anyhow::Result<Scenario> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn a_scenario_parses_and_schedules_its_events() {
        let s = parse(BASE).unwrap();
        let traces = s.traces().unwrap();
        assert!((Scenario::aggregate_mbit_s(&traces) - 12.0).abs() < 0.1);
        let dirs = s.directions(&traces, 1_000);
        assert_eq!(dirs[0].0.blackouts, vec![Window { start: 2_000_001_000, end: 3_000_001_000 }]);
        assert_eq!(s.weights(&traces), vec![12]);
    }

    #[test]
    fn errors_name_the_field() {
        names(parse(&BASE.replace("duration_s = 1\n", "duration_s = 1\n        colour = 3\n")), "colour");
        names(parse(&BASE.replace("link = 0", "link = 3")), "events[0].link");
        names(parse(&BASE.replace("load = 0.5", "load = 0.5\nmbit_s = 3")), "traffic[0]");
        names(parse(&BASE.replace("delay_ms = 20", "delay_ms = -1")), "links[0].delay_ms");
        names(parse(&BASE.replace("at_s = 2", "at_s = 20")), "events[0].at_s");
        names(parse(&BASE.replace("kind = \"blackout\"", "kind = \"meteor\"")), "meteor");
    }

    /// A scenario with one file link (inline TOML for its trace).
    fn file_link(trace: &str) -> String {
        BASE.replace(r#"trace = { model = "constant", mbit_s = 12 }"#, &format!("trace = {{ {trace} }}"))
    }

    fn temp_trace(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strata-lab-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn file_traces_take_an_offset_and_a_scale() {
        // 1 s at 24 Mbit/s (2 opportunities per ms), then 1 s at 12.
        let full = Trace::from_rates_mbit_s(&[24.0, 12.0], 1000).unwrap();
        let path = temp_trace("two-rates.down", &full.to_mahimahi());
        let s = parse(&file_link(&format!(
            r#"model = "file", path = "{}", offset_s = 1, scale = 0.5"#,
            path.display()
        )))
        .unwrap();
        let (trace, source) = s.traces_with_sources().unwrap().remove(0);
        assert_eq!(source.model, "file");
        assert_eq!(source.fallback_for, None);
        assert!(
            source.description.contains("from 1 s") && source.description.contains("× 0.5"),
            "{source:?}"
        );
        let ms = 1_000_000;
        // Starts in the 12 Mbit/s second, at half the rate.
        let first = trace.capacity_bytes(0, 1000 * ms) as f64 * 8.0 / 1e6;
        let second = trace.capacity_bytes(1000 * ms, 2000 * ms) as f64 * 8.0 / 1e6;
        assert!((first - 6.0).abs() < 0.05 && (second - 12.0).abs() < 0.05, "{first} {second}");
        assert!((trace.mean_mbit_s() - 9.0).abs() < 0.05);
    }

    #[test]
    fn a_missing_file_plays_its_fallback_or_is_an_error_naming_it() {
        let missing = "/nonexistent/strata/real.down";
        let s = parse(&file_link(&format!(
            r#"model = "file", path = "{missing}", scale = 0.4, fallback = {{ model = "cellular", mean_mbit_s = 5 }}"#
        )))
        .unwrap();
        let (trace, source) = s.traces_with_sources().unwrap().remove(0);
        assert_eq!(source.model, "cellular");
        assert_eq!(source.fallback_for.as_deref(), Some(Path::new(missing)));
        assert!(source.description.contains("not found"), "{source:?}");
        assert!((trace.mean_mbit_s() - 5.0).abs() < 0.05);
        assert_eq!(s.traces().unwrap()[0], trace, "reproducible");

        let s = parse(&file_link(&format!(r#"model = "file", path = "{missing}""#))).unwrap();
        let e = format!("{:#}", s.traces().unwrap_err());
        assert!(e.contains(missing) && e.contains("links[0].trace"), "{e}");
    }

    #[test]
    fn trace_fields_are_checked_and_named() {
        let file = |extra: &str| file_link(&format!(r#"model = "file", path = "x.down", {extra}"#));
        names(parse(&file("scale = 0")), "links[0].trace: scale");
        names(parse(&file("scale = -1.5")), "scale");
        names(parse(&file("offset_s = -3")), "offset_s");
        names(parse(&file("scale = nan")), "scale");
        names(parse(&file("offset_s = inf")), "offset_s");
        names(parse(&file(r#"fallback = { model = "file", path = "y.down" }"#)), "fallback");
        names(parse(&file(r#"fallback = { model = "cellular", mean_mbit_s = 0 }"#)), "fallback: mean_mbit_s");
        names(parse(&file_link(r#"model = "cellular", mean_mbit_s = 5, burst = 0"#)), "burst");
        names(parse(&file_link(r#"model = "cellular", mean_mbit_s = 5, colour = 1"#)), "colour");
        let step = BASE
            .replace(r#"kind = "blackout""#, r#"kind = "capacity""#)
            .replace("duration_s = 1\n", "mbit_s = -2\n");
        names(parse(&step), "events[0].mbit_s");
    }

    #[test]
    fn another_recording_replaces_every_file_link() {
        let mut s =
            parse(&file_link(r#"model = "file", path = "a.down", offset_s = 7, scale = 0.3"#)).unwrap();
        assert_eq!(s.replace_trace_files(Path::new("/b.down")), 1);
        let TraceModel::File { path, offset_s, scale, .. } = &s.links[0].trace else { panic!() };
        assert_eq!((path.as_path(), *offset_s, *scale), (Path::new("/b.down"), 7.0, 0.3));
        assert_eq!(parse(BASE).unwrap().replace_trace_files(Path::new("/b.down")), 0);
    }

    #[test]
    fn capacity_events_step_the_uplink_trace() {
        let text = BASE
            .replace(r#"kind = "blackout""#, r#"kind = "capacity""#)
            .replace("duration_s = 1\n", "mbit_s = 2.4\n");
        let s = parse(&text).unwrap();
        let traces = s.traces().unwrap();
        let t0 = 3_000_000_000;
        let up = s.uplink_traces(&traces, t0).unwrap();
        let ms = 1_000_000;
        let rate = |t: &Trace, a: u64| t.capacity_bytes(a * ms, (a + 1000) * ms) as f64 * 8.0 / 1e6;
        assert!(
            (rate(&up[0], 3000) - 12.0).abs() < 0.05,
            "before the step (2 s after traffic starts at 3 s)"
        );
        assert!((rate(&up[0], 5000) - 2.4).abs() < 0.05, "after");
        assert!((rate(&up[0], 20_000) - 2.4).abs() < 0.05, "until the end of the run");
    }

    #[test]
    fn generated_traces_are_reproducible_and_follow_their_model() {
        let m = TraceModel::Markov { good_mbit_s: 20.0, bad_mbit_s: 2.0, mean_good_s: 3.0, mean_bad_s: 1.0 };
        let a = m.generate(120.0, 5).unwrap();
        assert_eq!(a, m.generate(120.0, 5).unwrap(), "same seed, same trace");
        assert_ne!(a, m.generate(120.0, 6).unwrap());
        // Stationary mean: (20·3 + 2·1) / 4 = 15.5 Mbit/s, give or take the dwell draws.
        assert!((10.0..20.0).contains(&a.mean_mbit_s()), "{}", a.mean_mbit_s());
        let lap = TraceModel::Lap { min_mbit_s: 2.0, max_mbit_s: 10.0, lap_s: 60.0, phase: 0.0, noise: 0.0 };
        let t = lap.generate(60.0, 1).unwrap();
        assert!((t.mean_mbit_s() - 6.0).abs() < 0.2, "{}", t.mean_mbit_s());
    }
}
