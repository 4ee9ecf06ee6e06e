//! Playing a scenario: the lab with emulated links, the Strata daemons, the
//! applications, the events — then the analysis.
//!
//! Timeline (all on CLOCK_MONOTONIC): the emulated links start at time 0,
//! the daemons come up, and traffic starts at [`WARMUP`] and runs for the
//! scenario's duration, followed by [`DRAIN`] for late packets. Events and
//! traces are placed relative to the start of traffic.

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    path::Path,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    analyzer::{
        Analysis, Arrival, CapacityStepReport, EventMark, analyze, capacity_step_report, resume_ms,
        steering_ms,
    },
    causal,
    generator::{Flow, Planned, plan},
    oracle::{self, Comparison},
    spec::{EventKind, Scenario, TraceSource},
    stage::{Stage, Stopped},
};
use crate::{
    Lab,
    emulator::{
        bridge::{DATA_BIN, LinkStats},
        model::TRANSMIT_BIN,
        trace::Trace,
    },
    in_netns,
    strata::{Control, EDGE_TUNNEL_ADDR, EdgeSetup, HUB_TUNNEL_ADDR},
    traffic::{decode_prefix, encode_prefix, enlarge_receive_buffer, now_ns},
};

/// Time from starting the links to starting traffic.
pub const WARMUP: Duration = Duration::from_secs(3);
/// Time after traffic for late packets.
pub const DRAIN: Duration = Duration::from_secs(2);
/// Sampling interval of per-link throughput.
pub const SAMPLE: Duration = Duration::from_millis(100);

/// One sample of what each link carried.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkSample {
    /// Time since traffic started, s (negative during warm-up).
    pub t_s: f64,
    /// Uplink bytes the emulator delivered so far, per link.
    pub uplink_bytes: Vec<u64>,
}

/// Everything a run produced.
#[derive(Debug)]
pub struct RunResult {
    /// The scenario.
    pub scenario: Scenario,
    /// Uplink traces as played (capacity steps included).
    pub traces: Vec<Trace>,
    /// Where each link's trace came from (a file, or its fallback).
    pub trace_sources: Vec<TraceSource>,
    /// Strata weights configured.
    pub weights: Vec<u32>,
    /// How the edge decided its weights.
    pub control: Control,
    /// How much the edge listened to the operating system.
    pub os_signals: crate::strata::OsSignals,
    /// Flows.
    pub flows: Vec<Flow>,
    /// What was offered.
    pub planned: Vec<Planned>,
    /// What arrived.
    pub arrivals: Vec<Arrival>,
    /// Per-link samples.
    pub samples: Vec<LinkSample>,
    /// Lifecycle transitions the edge logged (adaptive control).
    pub state_changes: Vec<StateChange>,
    /// What an operator watching the edge saw (when asked for).
    pub observation: Option<Observation>,
    /// Final emulator counters per link.
    pub link_stats: Vec<LinkStats>,
    /// `strata-ctl stats --json` of the edge at the end.
    pub edge_stats: serde_json::Value,
    /// What each event did, as applied.
    pub event_log: Vec<String>,
    /// The numbers.
    pub analysis: Analysis,
    /// Within-deadline delivery against what a clairvoyant scheduler could
    /// deliver over the same traces and traffic.
    pub oracle: Comparison,
    /// The daemon restarts played (see [`run_with_restarts`]).
    pub restarts: Vec<RestartReport>,
    /// What an attacker on the internet achieved, if the scenario has one.
    pub attack: Option<crate::attacker::AttackReport>,
    /// Every moment a tunnel device was missing or replaced by another
    /// (a new ifindex), on either side, from the daemons' start to the
    /// end of the run: empty when the data plane outlived every restart.
    pub tunnel_device_changes: Vec<String>,
}

/// Which daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum DaemonSide {
    /// The edge's.
    Edge,
    /// The hub's.
    Hub,
}

/// How a daemon is taken down before it is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum DaemonStop {
    /// SIGKILL: a crash, nothing of its own clean-up runs.
    Crash,
    /// SIGTERM to a daemon run with `--keep-dataplane` (an [`EdgeSetup`]
    /// with `keep_dataplane`): an upgrade, the data plane left running.
    InPlace,
}

/// A daemon taken down during a run and started again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DaemonRestart {
    /// Seconds after traffic started.
    pub at_s: f64,
    /// Which daemon.
    pub side: DaemonSide,
    /// How it is taken down.
    pub stop: DaemonStop,
    /// Seconds until it is started again.
    pub down_s: f64,
}

/// What a [`DaemonRestart`] did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RestartReport {
    /// Which daemon.
    pub side: DaemonSide,
    /// How it was taken down.
    pub stop: DaemonStop,
    /// When it went down, seconds after traffic started.
    pub down_at_s: f64,
    /// When it was started again, seconds after traffic started.
    pub started_at_s: f64,
    /// From its exec to `READY=1`, ms: restart to ready.
    pub ready_ms: f64,
}

/// Runs `scenario` with the `strata-ctl` at `binary`, keeping configs and
/// logs in `workdir`.
pub fn run(
    scenario: &Scenario,
    binary: &Path,
    setup: impl Into<EdgeSetup>,
    workdir: &Path,
) -> anyhow::Result<RunResult> {
    run_with(scenario, binary, setup, workdir, false)
}

/// Like [`run`]; with `observe`, an operator watches the edge throughout:
/// `strata-ctl status --json` every 100 ms and a `/metrics` scrape every
/// second (see [`Observation`]).
pub fn run_with(
    scenario: &Scenario,
    binary: &Path,
    setup: impl Into<EdgeSetup>,
    workdir: &Path,
    observe: bool,
) -> anyhow::Result<RunResult> {
    run_full(scenario, binary, setup.into(), workdir, observe, &[])
}

/// Like [`run`], taking daemons down and starting them again during the
/// run as `restarts` say (an in-place stop needs `keep_dataplane` in
/// `setup`). Whether the tunnel devices outlived them is in
/// [`RunResult::tunnel_device_changes`].
pub fn run_with_restarts(
    scenario: &Scenario,
    binary: &Path,
    setup: impl Into<EdgeSetup>,
    workdir: &Path,
    restarts: &[DaemonRestart],
) -> anyhow::Result<RunResult> {
    let setup = setup.into();
    if restarts.iter().any(|r| r.stop == DaemonStop::InPlace) {
        anyhow::ensure!(setup.keep_dataplane, "an in-place stop needs daemons run with --keep-dataplane");
    }
    run_full(scenario, binary, setup, workdir, false, restarts)
}

fn run_full(
    scenario: &Scenario,
    binary: &Path,
    setup: EdgeSetup,
    workdir: &Path,
    observe: bool,
    restarts: &[DaemonRestart],
) -> anyhow::Result<RunResult> {
    let control = setup.control;
    let duration = Duration::from_secs_f64(scenario.duration_s);
    let warmup_ns = WARMUP.as_nanos() as u64;

    let mut stage = Stage::start(scenario, binary, setup.clone(), workdir, WARMUP)?;
    let (flows, planned) = plan(&scenario.traffic, stage.mean_mbit_s, scenario.duration_s);
    let (traces, trace_sources, weights) =
        (stage.traces.clone(), stage.trace_sources.clone(), stage.weights.clone());
    // The oracle sees the uplinks exactly as the emulator plays them.
    let uplinks = stage.uplinks.clone();
    let traffic_start_mono = stage.traffic_start_mono();
    let Stage { ref lab, ref links, ref mut tunnel, start, start_mono, .. } = stage;
    // The daemons log wall-clock times; this is traffic start on that clock.
    let traffic_start_wall =
        std::time::SystemTime::now() + Duration::from_nanos(traffic_start_mono.saturating_sub(now_ns()));

    // Receivers in the hub, one socket per flow.
    let stop = Arc::new(AtomicBool::new(false));
    let arrivals = Arc::new(Mutex::new(Vec::with_capacity(planned.len())));
    let receivers: Vec<_> = flows
        .iter()
        .map(|f| {
            let (stop, arrivals, ns, port) = (stop.clone(), arrivals.clone(), lab.hub_ns(), f.port);
            std::thread::spawn(move || {
                in_netns(&ns, move || {
                    receive_flow(
                        SocketAddr::from((HUB_TUNNEL_ADDR, port)),
                        traffic_start_mono,
                        &stop,
                        &arrivals,
                    )
                })
            })
        })
        .collect();

    // Events that are not emulator-level run on their own thread.
    let event_log = Arc::new(Mutex::new(Vec::new()));
    let applied = Arc::new(Mutex::new(Vec::new()));
    let events = {
        let (scenario, lab_prefix, log) = (scenario.clone(), lab.prefix().to_string(), event_log.clone());
        let applied = applied.clone();
        std::thread::spawn(move || play_events(&scenario, &lab_prefix, traffic_start_mono, &log, &applied))
    };

    let observer = observe.then(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, binary, name, ns) =
            (stop.clone(), binary.to_path_buf(), tunnel.edge.name().to_string(), lab.edge_ns());
        (stop, std::thread::spawn(move || observe_edge(&binary, &name, &ns, &stop2)))
    });

    // Both tunnel devices watched from now (the daemons are up) to the end.
    let watch_stop = Arc::new(AtomicBool::new(false));
    let watchers: Vec<_> = [lab.edge_ns(), lab.hub_ns()]
        .into_iter()
        .map(|ns| {
            let stop = watch_stop.clone();
            std::thread::spawn(move || watch_device(&ns, TUNNEL_DEVICE, traffic_start_mono, &stop))
        })
        .collect();
    // Daemon restarts, in time order: (due, index, going down?).
    let mut steps: Vec<(Instant, usize, bool)> = restarts
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            let down = start + WARMUP + Duration::from_secs_f64(r.at_s.max(0.0));
            [(down, i, true), (down + Duration::from_secs_f64(r.down_s.max(0.0)), i, false)]
        })
        .collect();
    steps.sort_by_key(|&(at, i, down)| (at, i, !down));
    let mut steps = steps.into_iter().peekable();
    let mut reports: Vec<RestartReport> = Vec::new();
    let since_traffic = |at: Instant| at.saturating_duration_since(start + WARMUP).as_secs_f64();

    // An attacker on the internet, and the hub's endpoints watched while it attacks.
    let attack = match scenario.attack {
        Some(spec) => {
            let traffic_start =
                Instant::now() + Duration::from_nanos(traffic_start_mono.saturating_sub(now_ns()));
            let attacker = crate::attacker::Attacker::start(lab, spec, traffic_start)?;
            let stop = Arc::new(AtomicBool::new(false));
            let (stop2, binary, hub) = (stop.clone(), binary.to_path_buf(), tunnel.hub.name().to_string());
            let watcher = std::thread::spawn(move || crate::attacker::watch_hub_peers(&binary, &hub, &stop2));
            Some((attacker, stop, watcher))
        }
        None => None,
    };

    // Per-link samples.
    let mut samples = Vec::new();
    let sender = {
        let (planned, flows, ns) = (planned.clone(), flows.clone(), lab.edge_ns());
        std::thread::spawn(move || in_netns(&ns, move || send_all(&flows, &planned, traffic_start_mono)))
    };
    let end = start + WARMUP + duration + DRAIN;
    while Instant::now() < end {
        while let Some(&(due, i, down)) = steps.peek()
            && due <= Instant::now()
        {
            steps.next();
            let r = restarts[i];
            let daemon = match r.side {
                DaemonSide::Edge => &mut tunnel.edge,
                DaemonSide::Hub => &mut tunnel.hub,
            };
            if down {
                let at = Instant::now();
                match r.stop {
                    DaemonStop::Crash => daemon.crash()?,
                    DaemonStop::InPlace => daemon.stop_in_place()?,
                }
                reports.push(RestartReport {
                    side: r.side,
                    stop: r.stop,
                    down_at_s: since_traffic(at),
                    started_at_s: f64::NAN,
                    ready_ms: f64::NAN,
                });
            } else {
                let at = Instant::now();
                let took = daemon.restart()?;
                if let Some(report) =
                    reports.iter_mut().rev().find(|p| p.side == r.side && p.started_at_s.is_nan())
                {
                    report.started_at_s = since_traffic(at);
                    report.ready_ms = took.as_secs_f64() * 1e3;
                }
            }
        }
        samples.push(LinkSample {
            t_s: (now_ns() as f64 - traffic_start_mono as f64) / 1e9,
            uplink_bytes: links.iter().map(|l| l.stats().uplink.delivered_bytes).collect(),
        });
        if let Err(interrupted) = crate::interrupt::sleep(SAMPLE) {
            // The receivers stop; the sender and event threads are left to
            // fail on their own once the namespaces are gone (the process
            // is about to exit). Returning drops the stage: daemons, links
            // and namespaces go.
            stop.store(true, Ordering::Relaxed);
            if let Some((stop, _)) = &observer {
                stop.store(true, Ordering::Relaxed);
            }
            return Err(interrupted.into());
        }
    }
    let sent = sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))?;
    let attack = match attack {
        Some((attacker, stop, watcher)) => {
            stop.store(true, Ordering::Relaxed);
            let peers = watcher.join().map_err(|_| anyhow::anyhow!("hub watcher panicked"))?;
            let mut report = attacker.stop()?;
            report.judge_hub_peers(&peers);
            Some(report)
        }
        None => None,
    };
    stop.store(true, Ordering::Relaxed);
    watch_stop.store(true, Ordering::Relaxed);
    let mut tunnel_device_changes = Vec::new();
    for w in watchers {
        tunnel_device_changes.extend(w.join().map_err(|_| anyhow::anyhow!("device watcher panicked"))??);
    }
    for r in receivers {
        r.join().map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    }
    events.join().map_err(|_| anyhow::anyhow!("event thread panicked"))??;
    let sent = sent?;
    anyhow::ensure!(sent == planned.len() as u64, "the sender sent {sent} of {} datagrams", planned.len());

    let observation = match observer {
        Some((stop, thread)) => {
            stop.store(true, Ordering::Relaxed);
            Some(thread.join().map_err(|_| anyhow::anyhow!("observer panicked"))?)
        }
        None => None,
    };
    let edge_stats = Command::new(binary)
        .args(["stats", "--json", "--name", tunnel.edge.name()])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or(serde_json::Value::Null);
    let Stopped { edge_log, link_stats, .. } = stage.stop()?;
    let state_changes = state_changes(&edge_log, traffic_start_wall);

    let arrivals = std::mem::take(&mut *arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let applied = std::mem::take(&mut *applied.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let marks: Vec<EventMark> = scenario
        .events
        .iter()
        .map(|e| EventMark { kind: e.kind.name().into(), link: e.kind.link(), at_ns: (e.at_s * 1e9) as u64 })
        .collect();
    let duration_ns = duration.as_nanos() as u64;
    let capacity: u64 = traces.iter().map(|t| t.capacity_bytes(warmup_ns, warmup_ns + duration_ns)).sum();
    let mut analysis = analyze(&flows, &planned, &arrivals, &marks, duration_ns, capacity);
    let mut oracle = oracle::compare(&uplinks, &flows, &planned, &arrivals, warmup_ns, scenario.deadline_ms);
    causal::add(&mut oracle, &uplinks, &flows, &planned, warmup_ns);
    // Outages of a link: when the edge stopped sending data on it (the
    // emulator's bins count from its time 0, the warm-up before traffic).
    for (report, event) in analysis.events.iter_mut().zip(&scenario.events) {
        if let EventKind::Blackout { link, duration_s } = event.kind
            && let Some(stats) = link_stats.get(link)
        {
            let from = warmup_ns + (event.at_s * 1e9) as u64;
            let until = from + (duration_s * 1e9) as u64;
            let bin = DATA_BIN.as_nanos() as u64;
            report.steering_ms = Some(steering_ms(&stats.uplink_data_bins, bin, from, until));
            report.outage_lost_packets = Some(stats.uplink.dropped_blackout);
        }
        // Links moved or cut: when the edge sent data on them again, from
        // when the change was made (emulator time base).
        let index = scenario.events.iter().position(|e| std::ptr::eq(e, event)).unwrap_or(usize::MAX);
        let when = |first: bool| {
            applied
                .iter()
                .find(|a| a.index == index && a.first == first)
                .map(|a| a.at_ns.saturating_sub(start_mono))
        };
        let stats = link_stats.get(event.kind.link());
        match (&event.kind, stats) {
            (EventKind::AddressChange { link }, Some(stats)) => {
                let new = Lab::changed_link_addr(*link);
                report.resume_ms = when(true).and_then(|at| {
                    let (t, _) = stats.uplink_data_sources.iter().find(|(t, src)| *t >= at && *src == new)?;
                    Some((t - at) as f64 / 1e6)
                });
            }
            (
                EventKind::UsbReattach { .. }
                | EventKind::CarrierDown { .. }
                | EventKind::InterfaceDown { .. },
                Some(stats),
            ) => {
                report.resume_ms = when(false)
                    .and_then(|back| resume_ms(&stats.uplink_data_bins, DATA_BIN.as_nanos() as u64, back));
            }
            _ => {}
        }
    }
    analysis.capacity_steps = capacity_steps(scenario, &traces, &link_stats, warmup_ns);
    let event_log = std::mem::take(&mut *event_log.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    Ok(RunResult {
        scenario: scenario.clone(),
        traces,
        trace_sources,
        weights,
        control,
        os_signals: setup.os_signals,
        flows,
        planned,
        arrivals,
        samples,
        link_stats,
        edge_stats,
        event_log,
        state_changes,
        observation,
        analysis,
        oracle,
        restarts: reports,
        attack,
        tunnel_device_changes,
    })
}

/// The tunnel device's name in the lab (the configuration's default).
const TUNNEL_DEVICE: &str = "strata0";

/// Watches `device` in namespace `ns` every millisecond until `stop`:
/// each moment it was missing, came back, or was replaced by a device of
/// another ifindex (timed from `t0`, CLOCK_MONOTONIC ns).
fn watch_device(
    ns: &str,
    device: &'static str,
    t0: u64,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<String>> {
    let (label, stop) = (ns.to_string(), stop.clone());
    in_netns(ns, move || {
        let name = std::ffi::CString::new(device)?;
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let index = || unsafe { libc::if_nametoindex(name.as_ptr()) };
        let mut changes = Vec::new();
        let mut last = index();
        if last == 0 {
            changes.push(format!("{label}: {device} missing when the watch started"));
        }
        while !stop.load(Ordering::Relaxed) {
            let now = index();
            if now != last {
                let t = (now_ns() as f64 - t0 as f64) / 1e9;
                changes.push(match (last, now) {
                    (_, 0) => format!("{t:.3} s {label}: {device} disappeared"),
                    (0, i) => format!("{t:.3} s {label}: {device} back as ifindex {i}"),
                    (a, b) => format!("{t:.3} s {label}: {device} replaced (ifindex {a} → {b})"),
                });
                last = now;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(changes)
    })
}

/// How each stepped link followed its `capacity` events, from the
/// emulator's transmit bins (time base: emulator time 0, `t0_ns` before
/// traffic). A step is followed until the link's next step, the end of
/// traffic or 10 s.
fn capacity_steps(
    scenario: &Scenario,
    traces: &[Trace],
    stats: &[LinkStats],
    t0_ns: u64,
) -> Vec<CapacityStepReport> {
    let end_ns = t0_ns + (scenario.duration_s * 1e9) as u64;
    let steps: Vec<(usize, f64, f64)> = scenario
        .events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Capacity { link, mbit_s } => Some((link, e.at_s, mbit_s)),
            _ => None,
        })
        .collect();
    steps
        .iter()
        .filter_map(|&(link, at_s, to_mbit_s)| {
            let at_ns = t0_ns + (at_s * 1e9) as u64;
            let next = steps
                .iter()
                .filter(|&&(l, t, _)| l == link && t > at_s)
                .map(|&(_, t, _)| t0_ns + (t * 1e9) as u64)
                .min()
                .unwrap_or(u64::MAX);
            let until_ns = next.min(end_ns).min(at_ns + 10_000_000_000);
            let before = at_ns.saturating_sub(1_000_000_000);
            let from_mbit_s = traces.get(link)?.capacity_bytes(before, at_ns) as f64 * 8.0
                / ((at_ns - before) as f64 / 1e9)
                / 1e6;
            let bins = &stats.get(link)?.uplink_transmitted;
            Some(capacity_step_report(
                (link, at_s * 1000.0),
                (from_mbit_s, to_mbit_s),
                (&bins.bytes, &bins.max_sojourn_ns, TRANSMIT_BIN),
                at_ns,
                until_ns,
            ))
        })
        .collect()
}

/// What an operator watching the edge saw during a run.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// `strata-ctl status --json` calls, and how many answered with a document.
    pub status_calls: u64,
    /// Answered.
    pub status_ok: u64,
    /// Answers read from the pinned maps instead of the daemon: when (ms
    /// into the observation) and the reason status gave.
    pub status_fallbacks: Vec<(u64, String)>,
    /// Time each answered call took, µs (process start to exit).
    pub status_us: Vec<u64>,
    /// The last document.
    pub last_status: serde_json::Value,
    /// `/metrics` scrapes, and how many answered 200 with a body.
    pub scrapes: u64,
    /// Answered.
    pub scrapes_ok: u64,
    /// The last exposition.
    pub last_scrape: String,
}

/// `GET /metrics` from the daemon of namespace `ns`: the body of a 200.
pub fn scrape(ns: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let response = in_netns(ns, || {
        let addr: SocketAddr = crate::strata::METRICS_ADDR.parse()?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: strata\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })?;
    let (head, body) = response.split_once("\r\n\r\n").context("no HTTP head")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{}", head.lines().next().unwrap_or_default());
    Ok(body.to_string())
}

fn observe_edge(binary: &Path, name: &str, ns: &str, stop: &AtomicBool) -> Observation {
    let mut o = Observation::default();
    let observed = Instant::now();
    let mut next_scrape = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        o.status_calls += 1;
        if let Ok(out) = Command::new(binary).args(["status", "--json", "--name", name]).output()
            && out.status.success()
            && let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        {
            o.status_us.push(started.elapsed().as_micros() as u64);
            o.status_ok += 1;
            if doc["controller_running"] != true {
                let reason = doc["controller_down_reason"].as_str().unwrap_or("(none given)").to_string();
                o.status_fallbacks.push((observed.elapsed().as_millis() as u64, reason));
            }
            o.last_status = doc;
        }
        if Instant::now() >= next_scrape {
            next_scrape += Duration::from_secs(1);
            o.scrapes += 1;
            if let Ok(body) = scrape(ns)
                && !body.is_empty()
            {
                o.scrapes_ok += 1;
                o.last_scrape = body;
            }
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(started.elapsed()));
    }
    o
}

/// A link lifecycle transition the edge logged.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StateChange {
    /// Seconds since traffic started (negative: during warm-up).
    pub t_s: f64,
    /// Link id.
    pub link: u8,
    /// State before.
    pub from: String,
    /// State after.
    pub to: String,
    /// The logged reason.
    pub reason: String,
}

/// The `link state` lines of a daemon log (plain text, as the daemon writes
/// when stderr is not a terminal), timed against `traffic_start`.
pub fn state_changes(log: &str, traffic_start: std::time::SystemTime) -> Vec<StateChange> {
    let start =
        traffic_start.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() % 86_400.0);
    let field = |line: &str, key: &str| -> Option<String> {
        let rest = &line[line.find(key)? + key.len()..];
        let rest = rest.strip_prefix('"').unwrap_or(rest);
        Some(rest.split(['"', ' ']).next()?.to_string())
    };
    log.lines()
        .filter(|l| l.contains("link state"))
        .filter_map(|l| {
            // "2026-11-24T04:08:32.284300Z  INFO …": the time of day is enough.
            let clock = l.get(11..l.find('Z')?)?;
            let mut hms = clock.split(':');
            let (h, m, sec): (f64, f64, f64) =
                (hms.next()?.parse().ok()?, hms.next()?.parse().ok()?, hms.next()?.parse().ok()?);
            let mut t = h * 3600.0 + m * 60.0 + sec - start;
            if t > 43_200.0 {
                t -= 86_400.0;
            } else if t < -43_200.0 {
                t += 86_400.0;
            }
            Some(StateChange {
                t_s: t,
                link: field(l, "link=")?.parse().ok()?,
                from: field(l, "from=")?,
                to: field(l, "to=")?,
                reason: l[l.find("reason=")? + 7..].trim().to_string(),
            })
        })
        .collect()
}

/// Most state changes of `link` within any `window_s` after it first went
/// live (its admission at start-up is not flapping).
pub fn max_changes_in_window(changes: &[StateChange], link: u8, window_s: f64) -> usize {
    let mine: Vec<f64> = changes
        .iter()
        .filter(|c| c.link == link)
        .skip_while(|c| c.to != "live")
        .skip(1)
        .map(|c| c.t_s)
        .collect();
    (0..mine.len())
        .map(|i| mine[i..].iter().take_while(|&&t| t - mine[i] < window_s).count())
        .max()
        .unwrap_or(0)
}

/// Sends every planned datagram at its time, one socket per flow marked with
/// the flow's DSCP. Returns how many were sent.
fn send_all(flows: &[Flow], planned: &[Planned], t0: u64) -> anyhow::Result<u64> {
    let mut sockets = Vec::new();
    for f in flows {
        let sock = UdpSocket::bind(SocketAddr::from((EDGE_TUNNEL_ADDR, 0)))?;
        let tos = i32::from(f.dscp) << 2;
        // SAFETY: setsockopt with a pointer to a live i32 and its size.
        let ret = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_TOS,
                (&raw const tos).cast(),
                size_of::<i32>() as libc::socklen_t,
            )
        };
        anyhow::ensure!(ret == 0, "IP_TOS: {}", std::io::Error::last_os_error());
        sockets.push((sock, SocketAddr::from((HUB_TUNNEL_ADDR, f.port))));
    }
    let mut buf = vec![0u8; 65_536];
    let mut sent = 0;
    for p in planned {
        let due = t0 + p.at_ns;
        let now = now_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        let len = p.len.min(buf.len());
        encode_prefix(p.seq, now_ns(), &mut buf);
        buf[crate::traffic::PREFIX_LEN] = p.flow;
        let (sock, dst) = &sockets[usize::from(p.flow)];
        // A full socket buffer is waited out: the offered load is the plan.
        loop {
            match sock.send_to(&buf[..len], dst) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    std::thread::sleep(Duration::from_micros(50))
                }
                // The tunnel may have no usable link for a moment (an event); the datagram is lost.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EPERM)
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        sent += 1;
    }
    Ok(sent)
}

fn receive_flow(
    addr: SocketAddr,
    t0: u64,
    stop: &AtomicBool,
    out: &Mutex<Vec<Arrival>>,
) -> anyhow::Result<()> {
    let sock = UdpSocket::bind(addr).with_context(|| format!("binding {addr}"))?;
    enlarge_receive_buffer(&sock, 16 << 20)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = vec![0u8; 65_536];
    let mut local = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let recv = now_ns();
        let Some((seq, sent)) = decode_prefix(&buf[..n]) else { continue };
        let Some(&flow) = buf.get(crate::traffic::PREFIX_LEN) else { continue };
        local.push(Arrival {
            flow,
            seq,
            sent_ns: sent.saturating_sub(t0),
            recv_ns: recv.saturating_sub(t0),
            len: n,
        });
    }
    out.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.extend(local);
    Ok(())
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// An event action that took effect: `first` half or the end of event
/// `index`, at `at_ns` (monotonic clock).
#[derive(Clone, Copy, Debug)]
struct Applied {
    index: usize,
    first: bool,
    at_ns: u64,
}

/// Applies the events that act on the operating system (the emulator plays
/// blackouts and collapses itself) at their times.
fn play_events(
    scenario: &Scenario,
    prefix: &str,
    t0: u64,
    log: &Mutex<Vec<String>>,
    applied: &Mutex<Vec<Applied>>,
) -> anyhow::Result<()> {
    let edge = format!("{prefix}-edge");
    // (time, action) pairs, including the "up again" half of timed events.
    let mut actions: Vec<(f64, usize, EventKind, bool)> = Vec::new();
    for (index, e) in scenario.events.iter().enumerate() {
        match e.kind {
            EventKind::Blackout { .. }
            | EventKind::Collapse { .. }
            | EventKind::DelaySpikes { .. }
            | EventKind::Capacity { .. } => {}
            EventKind::InterfaceDown { duration_s, .. }
            | EventKind::CarrierDown { duration_s, .. }
            | EventKind::UsbReattach { duration_s, .. } => {
                actions.push((e.at_s, index, e.kind.clone(), true));
                actions.push((e.at_s + duration_s, index, e.kind.clone(), false));
            }
            _ => actions.push((e.at_s, index, e.kind.clone(), true)),
        }
    }
    actions.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (at_s, index, kind, first) in actions {
        let due = t0 + (at_s * 1e9) as u64;
        let now = now_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        let link = kind.link();
        let ifname = Lab::link_ifname(link);
        // When the change happened: as the command that makes it starts
        // (its process start-up counts against the system under test).
        let mut effective = now_ns();
        let result = match (&kind, first) {
            (EventKind::InterfaceDown { .. }, true) => {
                ip(&["-n", &edge, "link", "set", "dev", &ifname, "down"])
            }
            (EventKind::InterfaceDown { .. }, false) => {
                ip(&["-n", &edge, "link", "set", "dev", &ifname, "up"])
            }
            (EventKind::Mtu { mtu, .. }, _) => {
                ip(&["-n", &edge, "link", "set", "dev", &ifname, "mtu", &mtu.to_string()])
            }
            (EventKind::CarrierDown { .. }, first) => Lab::set_carrier(prefix, link, !first),
            (EventKind::AddressChange { .. }, _) => {
                // The network moves the lease first (the old address stops
                // working there), then the edge hears of its new address.
                let new_addr = Lab::changed_link_addr(link);
                let old = format!("{}/24", Lab::link_addr(link));
                let new = format!("{new_addr}/24");
                Lab::lease(prefix, link, new_addr)
                    .and_then(|()| {
                        effective = now_ns();
                        ip(&["-n", &edge, "addr", "add", &new, "dev", &ifname])
                    })
                    .and_then(|()| ip(&["-n", &edge, "addr", "del", &old, "dev", &ifname]))
            }
            (EventKind::NatRebind { .. }, _) => {
                let car = format!("{prefix}-car{link}");
                let out = Command::new("ip").args(["netns", "exec", &car, "conntrack", "-F"]).output()?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("conntrack -F: {}", String::from_utf8_lossy(&out.stderr).trim()))
                }
            }
            (EventKind::UsbReattach { .. }, true) => Lab::detach_link(prefix, &ifname),
            (EventKind::UsbReattach { .. }, false) => {
                Lab::reattach_link(prefix, link, &format!("wwan{link}"))
            }
            _ => Ok(()),
        };
        if result.is_ok() {
            applied.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(Applied {
                index,
                first,
                at_ns: effective,
            });
        }
        let line = format!(
            "{at_s:.3} s {} link {link}{}: {}",
            kind.name(),
            if first { "" } else { " (end)" },
            match &result {
                Ok(()) => "applied".to_string(),
                Err(e) => format!("failed: {e:#}"),
            }
        );
        log.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_changes_are_read_from_the_log_and_flapping_counted_after_admission() {
        let start = std::time::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 4 * 3600);
        let line = |t: &str, link: u8, from: &str, to: &str| {
            format!(
                "2024-10-04T04:00:{t}Z  INFO strata_ctl::controller: link state link={link} from=\"{from}\" to=\"{to}\" reason=Silent(1ms)"
            )
        };
        let log = [
            line("00.500000", 1, "init", "probe"),
            line("01.000000", 1, "probe", "warm"),
            line("03.000000", 1, "warm", "live"),
            "2024-10-04T04:00:03.100000Z  INFO strata_ctl::daemon: links: …".to_string(),
            line("10.000000", 1, "live", "degraded"),
            line("11.500000", 1, "degraded", "live"),
            line("20.000000", 0, "live", "degraded"),
        ]
        .join("\n");
        let changes = state_changes(&log, start);
        assert_eq!(changes.len(), 6);
        assert_eq!((changes[3].t_s, changes[3].link, changes[3].to.as_str()), (10.0, 1, "degraded"));
        assert_eq!(changes[3].reason, "Silent(1ms)");
        assert_eq!(max_changes_in_window(&changes, 1, 2.0), 2, "degraded and back within 1.5 s");
        assert_eq!(max_changes_in_window(&changes, 1, 1.0), 1);
        assert_eq!(max_changes_in_window(&changes, 0, 2.0), 0, "link 0 was never live first");
    }
}
