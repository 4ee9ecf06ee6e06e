//! `cargo xtask bench datapath`: what the data plane costs.
//!
//! 1. **Programs**: nanoseconds per packet of each eBPF program, measured by
//!    the kernel in `BPF_PROG_TEST_RUN` (`strata-bench`, one fresh packet per
//!    run).
//! 2. **Lab forwarding**: one unpaced UDP sender of 1316-byte datagrams from
//!    the edge to the hub, through the same namespaces twice — once routed
//!    plainly over carrier 0, once through the Strata bond over all three
//!    carriers — reporting the delivered rate and the machine's CPU time per
//!    delivered packet (all cores, from /proc/stat), and bonded ÷ plain.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    time::Duration,
};

use serde_json::{Value, json};
use strata_lab::{
    Lab,
    strata::{EDGE_TUNNEL_ADDR, HUB_TUNNEL_ADDR, Tunnel},
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

    let lab = Lab::up(&Lab::unique_prefix(), 3)?;
    println!("lab forwarding without Strata ({packets} datagrams over carrier 0)…");
    let route = ["-n", &lab.edge_ns(), "route", "add", "198.19.0.0/24", "via", "100.64.1.1", "dev", "lnk0"];
    output(Command::new("ip").args(route), "adding the plain route")?;
    let plain = forward(&lab, SocketAddr::from((Lab::link_addr(0), 0)), Lab::hub_addr(), packets)?;
    output(
        Command::new("ip").args(["-n", &lab.edge_ns(), "route", "del", "198.19.0.0/24"]),
        "removing the plain route",
    )?;

    println!("lab forwarding through the Strata bond ({packets} datagrams over 3 carriers)…");
    let workdir = std::env::temp_dir().join(format!("strata-bench-{}", lab.prefix()));
    let tunnel = Tunnel::start(&lab, &strata_ctl, &[1, 1, 1], &workdir)?;
    let bonded = forward(&lab, SocketAddr::from((EDGE_TUNNEL_ADDR, 0)), HUB_TUNNEL_ADDR, packets);
    tunnel.stop()?;
    lab.down()?;
    let _ = std::fs::remove_dir_all(&workdir);
    let bonded = bonded?;

    let ratio = |key: &str| bonded[key].as_f64().unwrap_or(0.0) / plain[key].as_f64().unwrap_or(f64::NAN);
    let result = json!({
        "programs": programs,
        "forwarding": {
            "payload_bytes": PAYLOAD,
            "plain": plain,
            "bonded": bonded,
            "bonded_over_plain": {
                "delivered_pps": ratio("delivered_pps"),
                "cpu_ns_per_packet": ratio("cpu_ns_per_packet"),
            },
        },
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    if let Some(path) = json_out {
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")?;
        println!("written to {}", path.display());
    }
    Ok(())
}

/// One unpaced stream edge → hub; rate and CPU per delivered packet.
fn forward(lab: &Lab, from: SocketAddr, to: Ipv4Addr, packets: u64) -> anyhow::Result<Value> {
    let before = busy_cpu_ns()?;
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
    let cpu_ns = busy_cpu_ns()? - before;
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

/// CPU time all cores spent busy (user, system, irq, softirq…), in ns.
fn busy_cpu_ns() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().unwrap_or_default();
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 =
        fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    // USER_HZ is 100 on Linux.
    Ok(busy * 10_000_000)
}
