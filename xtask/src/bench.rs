//! `cargo xtask bench datapath`: what the data plane costs.
//!
//! 1. **Programs**: nanoseconds per packet of each eBPF program, measured by
//!    the kernel in `BPF_PROG_TEST_RUN` (`strata-bench`, one fresh packet per
//!    run), each without and with the per-packet authentication tag, and
//!    the tag function alone in userspace.
//! 2. **Lab forwarding**: an unpaced UDP sender of 1316-byte datagrams from
//!    the edge to the hub, through the same namespaces — routed plainly over
//!    carrier 0, or through the Strata bond over all three carriers — with
//!    everything (sender, receiver, both daemons, every softirq of the path)
//!    pinned to one CPU, reporting the delivered rate and that CPU's busy
//!    time per delivered packet, and bonded ÷ plain:
//!    * the bond with the daemons as shipped (`os_signals` default, no
//!      tracepoints), then with kernel sampling on (`os_signals = "full"`,
//!      the lab's default): its tracepoints run for every packet on every
//!      device of the host, and in the lab every namespace's hop is on this
//!      one host, so that row is the sampling's cost, not the data path's.
//!
//!    Why one CPU: spread over the machine's two, a path's CPU per packet
//!    depended on where the scheduler put the receiver and how often it had
//!    to be woken (measured 2026-12-07: the same plain path paced at 20 000
//!    datagrams/s read 9.5, 15.6 and 27.4 µs per packet in three runs, and
//!    the receiver's wake-ups cost 3 µs per packet on the saturated plain
//!    path against 8.5 µs on the slower bond). On one CPU the work is the
//!    work, and what else the machine does runs on the other one. Each
//!    figure is the median of [`RUNS`].

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    time::Duration,
};

use serde_json::{Value, json};
use strata_common::stats::percentile;
use strata_lab::{
    Lab,
    strata::{Control, EDGE_TUNNEL_ADDR, EdgeSetup, HUB_TUNNEL_ADDR, OsSignals, Tunnel},
    traffic::{Stream, StreamReport},
};

use crate::cmd::{build_strata, output, require_root};

const PAYLOAD: usize = 1316;
const PORT: u16 = 9000;

pub(crate) fn datapath(json_out: Option<&Path>, packets: u64) -> anyhow::Result<()> {
    crate::setup::run()?;
    require_root("cargo xtask bench datapath")?;
    let strata_ctl = build_strata("strata-ctl")?;
    let bench = build_strata("strata-bench")?;

    println!("programs: BPF_PROG_TEST_RUN, 200 000 runs each…");
    let programs: Value = serde_json::from_str(&output(Command::new(&bench).arg("200000"), "strata-bench")?)?;
    // Packet authentication's cost: each program with and without the tag.
    for (name, plain, authed) in
        [("egress", "tunnel_egress", "tunnel_egress_auth"), ("ingress", "link_ingress", "link_ingress_auth")]
    {
        let mean = |key: &str| programs[key]["mean_ns"].as_f64().unwrap_or(f64::NAN);
        println!(
            "  {name}: {:.0} ns/packet, {:.0} with the authentication tag (+{:.0})",
            mean(plain),
            mean(authed),
            mean(authed) - mean(plain)
        );
    }

    let lab = Lab::up(&Lab::unique_prefix(), 3)?;
    let measured = forwarding(&lab, &strata_ctl, packets);
    lab.down()?;
    let result = json!({ "programs": programs, "forwarding": measured? });
    println!("{}", serde_json::to_string_pretty(&result)?);
    if let Some(path) = json_out {
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")?;
        println!("written to {}", path.display());
    }
    Ok(())
}

/// The forwarding runs of the module doc, plain then bonded, in `lab`.
fn forwarding(lab: &Lab, strata_ctl: &Path, packets: u64) -> anyhow::Result<Value> {
    let cpu = pin_to_last_cpu()?;
    println!("  (sender, receiver and daemons pinned to CPU {cpu}; {RUNS} runs each)");
    let plain_from = SocketAddr::from((Lab::link_addr(0), 0));
    let route = ["-n", &lab.edge_ns(), "route", "add", "198.19.0.0/24", "via", "100.64.1.1", "dev", "lnk0"];
    output(Command::new("ip").args(route), "adding the plain route")?;
    println!("lab forwarding without Strata ({packets} datagrams over carrier 0)…");
    let plain = median_of_runs(|| forward(lab, plain_from, Lab::hub_addr(), packets, cpu));
    output(
        Command::new("ip").args(["-n", &lab.edge_ns(), "route", "del", "198.19.0.0/24"]),
        "removing the plain route",
    )?;
    let plain = plain?;

    let bonded = |os_signals: OsSignals| -> anyhow::Result<Value> {
        let workdir = std::env::temp_dir().join(format!("strata-bench-{}", lab.prefix()));
        let setup = EdgeSetup { os_signals, ..EdgeSetup::from(Control::Static) };
        let tunnel = Tunnel::start_with(lab, strata_ctl, &[1, 1, 1], setup, &workdir)?;
        let from = SocketAddr::from((EDGE_TUNNEL_ADDR, 0));
        let run = median_of_runs(|| forward(lab, from, HUB_TUNNEL_ADDR, packets, cpu));
        tunnel.stop()?;
        let _ = std::fs::remove_dir_all(&workdir);
        run
    };
    println!("lab forwarding through the Strata bond ({packets} datagrams over 3 carriers)…");
    let shipped = bonded(OsSignals::Enhanced)?;
    println!("the same with kernel sampling (os_signals = \"full\")…");
    let sampled = bonded(OsSignals::Full)?;

    let ratio =
        |a: &Value, key: &str| a[key].as_f64().unwrap_or(0.0) / plain[key].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "payload_bytes": PAYLOAD,
        "cpu": cpu,
        "plain": plain,
        "bonded": shipped,
        "bonded_kernel_sampling": sampled,
        "bonded_over_plain": {
            "delivered_pps": ratio(&shipped, "delivered_pps"),
            "cpu_ns_per_packet": ratio(&shipped, "cpu_ns_per_packet"),
        },
        "bonded_kernel_sampling_over_plain": {
            "delivered_pps": ratio(&sampled, "delivered_pps"),
            "cpu_ns_per_packet": ratio(&sampled, "cpu_ns_per_packet"),
        },
    }))
}

/// Runs per figure (the median is reported, beside every run's figure).
const RUNS: usize = 3;

/// The run with the median CPU per packet of [`RUNS`] runs of `run`, with
/// every run's figure under `runs_cpu_ns_per_packet`.
fn median_of_runs(run: impl Fn() -> anyhow::Result<Value>) -> anyhow::Result<Value> {
    let cpu = |v: &Value| v["cpu_ns_per_packet"].as_f64().unwrap_or(f64::NAN);
    let mut runs = (0..RUNS).map(|_| run()).collect::<anyhow::Result<Vec<Value>>>()?;
    let all: Vec<f64> = runs.iter().map(cpu).collect();
    runs.sort_by(|a, b| cpu(a).total_cmp(&cpu(b)));
    let mut median = runs.swap_remove(RUNS / 2);
    median["runs_cpu_ns_per_packet"] = json!(all);
    Ok(median)
}

/// Pins this thread — and so every thread and process it starts from now
/// on — to the machine's last CPU; returns its number.
fn pin_to_last_cpu() -> anyhow::Result<usize> {
    use nix::{sched::CpuSet, unistd::Pid};
    let cpus = std::thread::available_parallelism()?.get();
    let cpu = cpus - 1;
    let mut set = CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(cpu)
}

/// One unpaced stream edge → hub; rate and `cpu`'s busy time per delivered packet.
fn forward(lab: &Lab, from: SocketAddr, to: Ipv4Addr, packets: u64, cpu: usize) -> anyhow::Result<Value> {
    let before = busy_cpu_ns(cpu)?;
    let report: StreamReport = Stream {
        from_ns: lab.edge_ns(),
        from,
        to_ns: lab.hub_ns(),
        to: SocketAddr::from((to, PORT)),
        count: packets,
        payload_len: PAYLOAD,
        pps: 0,
        echo: false,
        idle_timeout: Duration::from_secs(2),
    }
    .run()?;
    let cpu_ns = busy_cpu_ns(cpu)? - before;
    let delivered = report.delivered.received;
    let span = report.delivered.span.as_secs_f64().max(1e-9);
    Ok(json!({
        "sent": report.sent,
        "delivered": delivered,
        "sent_pps": report.sent as f64 / report.send_time.as_secs_f64().max(1e-9),
        "delivered_pps": delivered as f64 / span,
        "delivered_mbit_s": delivered as f64 * PAYLOAD as f64 * 8.0 / span / 1e6,
        "cpu_ns_per_packet": cpu_ns as f64 / delivered.max(1) as f64,
    }))
}

/// CPU time `cpu` spent busy (user, system, irq, softirq…), in ns.
fn busy_cpu_ns(cpu: usize) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let name = format!("cpu{cpu}");
    let line = stat.lines().find(|l| l.split_whitespace().next() == Some(&name)).unwrap_or_default();
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq (guest time is already in
    // user); not steal, the time the hypervisor gave this VM's CPUs to others.
    let busy: u64 =
        fields.iter().take(7).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    // USER_HZ is 100 on Linux.
    Ok(busy * 10_000_000)
}

/// `cargo xtask bench emulator`: how faithful and how fast the link emulator is.
///
/// * delay: median and p99 round trip across one link for several configured
///   delays (each way), against the configured round trip;
/// * capacity: delivered IP rate through constant traces when offered 1.5×
///   their rate;
/// * its own limit: unpaced datagrams through a link without capacity limit
///   or delay, large and small.
pub(crate) fn emulator(json_out: Option<&Path>) -> anyhow::Result<()> {
    use std::time::Instant;

    use strata_lab::emulator::{bridge::EmulatedLink, calibrate, model::DirectionConfig, trace::Trace};

    crate::setup::run()?;
    require_root("cargo xtask bench emulator")?;
    let lab = Lab::up_emulated(&Lab::unique_prefix(), 1)?;
    let start = |up: DirectionConfig, down: DirectionConfig| {
        EmulatedLink::start(&lab.air_ns(0), "edge", "car", up, down, Instant::now())
    };

    let mut delay = Vec::new();
    for one_way in [5.0, 20.0, 50.0, 150.0] {
        let cfg = DirectionConfig { base_delay_ms: one_way, ..Default::default() };
        let link = start(cfg.clone(), cfg)?;
        let mut rtts: Vec<f64> =
            calibrate::round_trips(&lab, 0, 201)?.iter().skip(1).map(|d| d.as_secs_f64() * 1e3).collect();
        link.stop()?;
        rtts.sort_by(f64::total_cmp);
        let at = |p| percentile(&rtts, p).unwrap_or(f64::NAN);
        let (p50, p99) = (at(50.0), at(99.0));
        println!(
            "delay {one_way} ms each way: RTT p50 {p50:.2} ms, p99 {p99:.2} ms (configured {:.0})",
            2.0 * one_way
        );
        delay.push(json!({ "one_way_ms": one_way, "rtt_configured_ms": 2.0 * one_way, "rtt_p50_ms": p50, "rtt_p99_ms": p99 }));
    }

    let mut capacity = Vec::new();
    for mbit_s in [5.0, 20.0, 50.0, 100.0] {
        let up = DirectionConfig {
            capacity: Some(Trace::constant(mbit_s)?),
            buffer_bytes: 128 * 1500,
            ..Default::default()
        };
        let link = start(up, DirectionConfig::default())?;
        let ip = calibrate::ip_bytes(1472) as f64;
        let pps = (1.5 * mbit_s * 1e6 / 8.0 / ip) as u64;
        let got = calibrate::offer(&lab, 0, pps * 3, 1472, pps)?;
        link.stop()?;
        let delivered = got.received as f64 * ip * 8.0 / got.span.as_secs_f64().max(1e-9) / 1e6;
        println!(
            "trace {mbit_s} Mbit/s, offered {:.1}: delivered {delivered:.3} Mbit/s ({:+.2} %)",
            1.5 * mbit_s,
            (delivered / mbit_s - 1.0) * 100.0
        );
        capacity.push(
            json!({ "trace_mbit_s": mbit_s, "offered_mbit_s": 1.5 * mbit_s, "delivered_mbit_s": delivered }),
        );
    }

    let mut limit = Vec::new();
    for payload in [1472usize, 200] {
        let link = start(DirectionConfig::default(), DirectionConfig::default())?;
        let count = 200_000;
        let got = calibrate::offer(&lab, 0, count, payload, 0)?;
        let stats = link.stop()?;
        let span = got.span.as_secs_f64().max(1e-9);
        let pps = got.received as f64 / span;
        let mbit_s = pps * calibrate::ip_bytes(payload) as f64 * 8.0 / 1e6;
        println!(
            "unlimited link, unpaced {payload}-byte datagrams: {pps:.0} pkt/s, {mbit_s:.0} Mbit/s, {} of {count} delivered",
            got.received
        );
        limit.push(json!({ "payload_bytes": payload, "sent": count, "delivered": got.received, "pps": pps, "mbit_s": mbit_s, "bridge_send_failures": stats.send_failures }));
    }
    lab.down()?;

    let result = json!({ "delay": delay, "capacity": capacity, "limit": limit });
    if let Some(path) = json_out {
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")?;
        println!("written to {}", path.display());
    }
    Ok(())
}
