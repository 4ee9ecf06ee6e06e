//! `cargo xtask demo`: the whole system in one command.
//!
//! Builds Strata, brings up a lab with three NATed carriers, starts the hub
//! and edge daemons with link weights 1:2:3, streams ten seconds of
//! video-sized datagrams (1316 bytes, ~10 Mbit/s) through the bond with every
//! datagram echoed back, and prints what each link carried — from the kernel's
//! counters on both sides — then tears everything down.

use std::{net::SocketAddr, time::Duration};

use strata_lab::{
    Lab,
    strata::{EDGE_TUNNEL_ADDR, HUB_TUNNEL_ADDR, Tunnel},
    traffic::Stream,
};

use crate::cmd::{build_strata, output, require_root};

const WEIGHTS: [u32; 3] = [1, 2, 3];
const PPS: u64 = 1000;
const SECONDS: u64 = 10;

pub(crate) fn run() -> anyhow::Result<()> {
    crate::setup::run()?;
    require_root("cargo xtask demo")?;
    let strata_ctl = build_strata("strata-ctl")?;

    let lab = Lab::up(&Lab::unique_prefix(), WEIGHTS.len())?;
    println!(
        "\nlab {}: edge with {} links, each behind its own carrier NAT, and a hub",
        lab.prefix(),
        lab.links()
    );
    let workdir = std::env::temp_dir().join(format!("strata-demo-{}", lab.prefix()));
    let tunnel = Tunnel::start(&lab, &strata_ctl, &WEIGHTS, &workdir)?;
    println!("edge and hub daemons running (configs and logs in {})", workdir.display());
    println!(
        "streaming {SECONDS} s of 1316-byte datagrams at {PPS}/s edge → hub, each echoed back, link weights {WEIGHTS:?}…\n"
    );

    let report = Stream {
        from_ns: lab.edge_ns(),
        from: SocketAddr::from((EDGE_TUNNEL_ADDR, 0)),
        to_ns: lab.hub_ns(),
        to: SocketAddr::from((HUB_TUNNEL_ADDR, 5004)),
        count: PPS * SECONDS,
        payload_len: 1316,
        pps: PPS,
        echo: true,
        idle_timeout: Duration::from_secs(3),
    }
    .run()?;

    let stats = |name: &str| -> anyhow::Result<serde_json::Value> {
        let text = output(
            std::process::Command::new(&strata_ctl).args(["stats", "--json", "--name", name]),
            "strata-ctl stats",
        )?;
        Ok(serde_json::from_str(&text)?)
    };
    let (edge, hub) = (stats(tunnel.edge.name())?, stats(tunnel.hub.name())?);
    let packets = |v: &serde_json::Value, i: usize, key: &str| v["links"][i][key].as_u64().unwrap_or(0);
    let total =
        |v: &serde_json::Value, key: &str| (0..WEIGHTS.len()).map(|i| packets(v, i, key)).sum::<u64>().max(1);
    println!("what each link carried (from the kernel's counters, `strata-ctl stats`):\n");
    println!("link  weight   edge→hub packets  share    hub→edge packets  share   hub sees the link as");
    for (i, weight) in WEIGHTS.iter().enumerate() {
        let up = packets(&edge, i, "tx_packets");
        let down = packets(&hub, i, "tx_packets");
        println!(
            "{i:<4}  {weight:<6}   {up:>16}  {:>5.1} %  {down:>16}  {:>5.1} %  {}",
            100.0 * up as f64 / total(&edge, "tx_packets") as f64,
            100.0 * down as f64 / total(&hub, "tx_packets") as f64,
            hub["links"][i]["peer"].as_str().unwrap_or("?"),
        );
    }
    let drops = |v: &serde_json::Value| match v["drops"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|d| format!("{}={}", d[0].as_str().unwrap_or("?"), d[1]))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "none".to_string(),
    };
    println!("\ndropped by the data plane: edge {}, hub {}", drops(&edge), drops(&hub));
    let echoed = report.echoed.as_ref().map_or(0, |e| e.received);
    println!(
        "application: sent {}, delivered {} ({} duplicates), {} replies came back\n",
        report.sent, report.delivered.received, report.delivered.duplicates, echoed
    );

    tunnel.stop()?;
    lab.down()?;
    let _ = std::fs::remove_dir_all(&workdir);
    println!("daemons stopped, lab removed");
    anyhow::ensure!(report.delivered.received == report.sent, "the demo lost packets");
    Ok(())
}
