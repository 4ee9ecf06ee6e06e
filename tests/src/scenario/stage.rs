//! A scenario's stage: the lab, its emulated links and the Strata daemons,
//! running and warmed up, with no traffic of the lab's own.
//!
//! The runner plays a scenario's generated traffic on a stage; the
//! real-client tests ([`crate::clients`]) bring their own applications
//! (ffmpeg, srt-live-transmit, iperf3) to one instead. Everything on a stage
//! shares one clock: the links' traces and events start when the stage does,
//! and traffic is meant to start a warm-up later (the runner's [`WARMUP`](super::runner::WARMUP)),
//! when the daemons have admitted their links.
//!
//! Dropping a stage stops the daemons, the links and removes the lab's
//! namespaces (each part cleans up on drop), so a failing test leaves
//! nothing behind; [`Stage::stop`] does the same and returns what they
//! logged and counted.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use super::spec::{Scenario, TraceSource};
use crate::{
    Lab,
    emulator::{
        bridge::{EmulatedLink, LinkStats},
        model::DirectionConfig,
        trace::Trace,
    },
    strata::{EdgeSetup, Tunnel},
    traffic::now_ns,
};

/// A running lab with a scenario's links and the daemons.
#[derive(Debug)]
pub struct Stage {
    /// The uplink trace each link plays (capacity steps included).
    pub traces: Vec<Trace>,
    /// Where each link's trace came from (a file, or its fallback).
    pub trace_sources: Vec<TraceSource>,
    /// The links' summed mean capacity before capacity steps, Mbit/s: what
    /// a scenario's `load` is a fraction of.
    pub mean_mbit_s: f64,
    /// Each uplink exactly as the emulator plays it (for the oracle).
    pub uplinks: Vec<DirectionConfig>,
    /// The static weights the edge was configured with.
    pub weights: Vec<u32>,
    /// When the links started (time 0 of traces and events).
    pub start: Instant,
    /// From `start` to traffic.
    pub warmup: Duration,
    /// The same instant on CLOCK_MONOTONIC, ns.
    pub start_mono: u64,
    /// The emulated links, in link-id order.
    pub links: Vec<EmulatedLink>,
    /// Edge and hub daemons.
    pub tunnel: Tunnel,
    /// The namespaces (declared last: removed after the daemons and links stop).
    pub lab: Lab,
}

/// What a stopped stage leaves.
#[derive(Debug)]
pub struct Stopped {
    /// The edge daemon's log.
    pub edge_log: String,
    /// The hub daemon's log.
    pub hub_log: String,
    /// Final emulator counters per link.
    pub link_stats: Vec<LinkStats>,
}

impl Stage {
    /// Brings up a lab with `scenario`'s links (traces, delays, losses and
    /// emulator-level events, timed from traffic start `warmup` later) and
    /// starts the daemons, keeping configs and logs in `workdir`. Fails if
    /// the daemons are not up within the warm-up.
    pub fn start(
        scenario: &Scenario,
        binary: &Path,
        setup: impl Into<EdgeSetup>,
        workdir: &Path,
        warmup: Duration,
    ) -> anyhow::Result<Self> {
        let (traces, trace_sources): (Vec<Trace>, Vec<TraceSource>) =
            scenario.traces_with_sources()?.into_iter().unzip();
        let weights = scenario.weights(&traces);
        let mean_mbit_s = Scenario::aggregate_mbit_s(&traces);
        let warmup_ns = warmup.as_nanos() as u64;
        let traces = scenario.uplink_traces(&traces, warmup_ns)?;
        let directions = scenario.directions(&traces, warmup_ns);
        let uplinks: Vec<_> = directions.iter().map(|(up, _)| up.clone()).collect();

        let families: Vec<_> = scenario.links.iter().map(|l| l.family).collect();
        let lab = Lab::up_emulated_with(&Lab::unique_prefix(), &families)?;
        // The links first, then the daemons, which must be ready within the
        // warm-up. Starting the daemons first and the links' clock only once
        // they were ready made every link's first probes go unanswered (no
        // emulator yet), and the links stayed in `probe` for seconds (CI:
        // jitter-spikes' links warm 6.7 s after the daemons started, live
        // 5.7 s after traffic did; nat-rebind shed at start-up).
        let start = Instant::now();
        let start_mono = now_ns();
        let mut links = Vec::new();
        for (i, (up, down)) in directions.into_iter().enumerate() {
            links.push(EmulatedLink::start(&lab.air_ns(i), "edge", "car", up, down, start)?);
        }
        crate::interrupt::check()?;
        // The session's first handshake completes within the warm-up too.
        let setup = EdgeSetup { no_session_wait: true, ..setup.into() };
        let tunnel = Tunnel::start_with(&lab, binary, &weights, setup, workdir)?;
        anyhow::ensure!(
            start.elapsed() < warmup,
            "the daemons took longer than the {warmup:?} warm-up to start"
        );
        Ok(Self {
            traces,
            trace_sources,
            mean_mbit_s,
            uplinks,
            weights,
            start,
            warmup,
            start_mono,
            links,
            tunnel,
            lab,
        })
    }

    /// When traffic is due to start, on CLOCK_MONOTONIC (ns).
    pub fn traffic_start_mono(&self) -> u64 {
        self.start_mono + self.warmup.as_nanos() as u64
    }

    /// Sleeps until the warm-up is over.
    pub fn wait_warmup(&self) {
        std::thread::sleep((self.start + self.warmup).saturating_duration_since(Instant::now()));
    }

    /// The links' summed mean capacity over `duration` of traffic, Mbit/s:
    /// what the emulated traces offered from traffic start on.
    pub fn capacity_mbit_s(&self, duration: Duration) -> f64 {
        let from = self.warmup.as_nanos() as u64;
        let to = from + duration.as_nanos() as u64;
        let bytes: u64 = self.traces.iter().map(|t| t.capacity_bytes(from, to)).sum();
        bytes as f64 * 8.0 / duration.as_secs_f64().max(1e-9) / 1e6
    }

    /// Stops the daemons (cleanly), then the links, then removes the lab.
    pub fn stop(self) -> anyhow::Result<Stopped> {
        let Self { links, tunnel, lab, .. } = self;
        let (edge_log, hub_log) = tunnel.stop()?;
        let link_stats = links.into_iter().map(EmulatedLink::stop).collect::<anyhow::Result<_>>()?;
        lab.down()?;
        Ok(Stopped { edge_log, hub_log, link_stats })
    }
}
