//! `strata-bench`: what each data-plane program costs per packet.
//!
//! Runs each program through `BPF_PROG_TEST_RUN`, one packet per run so every
//! run sees a fresh packet (repeats would re-process the already-encapsulated
//! or already-decapsulated packet), with the kernel's own timing of the
//! program. Ingress packets carry distinct sequence numbers so they take the
//! delivery path, not the duplicate drop. Prints JSON. Needs root.
//!
//! Usage: `strata-bench [RUNS]` (default 200 000). `cargo xtask bench datapath`
//! runs it together with the lab forwarding benchmark.

use std::{process::ExitCode, time::Duration};

use strata_common::stats::percentile;
use strata_ctl::{
    dataplane::datapath::Program,
    testbed::{self, TC_ACT_REDIRECT, eth, inner_v4, strata, tunnel_frame},
};

/// An MPEG-TS-over-UDP video packet: 7 × 188-byte TS packets.
const VIDEO_PAYLOAD: usize = 1316;

fn main() -> ExitCode {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    match bench(runs) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strata-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Summary {
    mean_ns: f64,
    p50_ns: u128,
    p99_ns: u128,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort_unstable();
    let n = samples.len().max(1);
    let total: u128 = samples.iter().map(Duration::as_nanos).sum();
    let at = |p| percentile(&samples, p).map_or(0, |d| d.as_nanos());
    Summary { mean_ns: total as f64 / n as f64, p50_ns: at(50.0), p99_ns: at(99.0) }
}

fn bench(runs: usize) -> anyhow::Result<String> {
    let inner = inner_v4(0, VIDEO_PAYLOAD);

    let mut edge = testbed::edge([1, 2, 3, 0, 0, 0, 0, 0], 1500)?;
    let frame = eth(0x0800, &inner);
    let mut egress = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (verdict, _, took) = testbed::run(&mut edge, Program::TunnelEgress, &frame)?;
        anyhow::ensure!(verdict == TC_ACT_REDIRECT, "egress verdict {verdict}");
        egress.push(took);
    }

    let mut hub = testbed::hub()?;
    let mut frame = tunnel_frame(&strata(0, 1, 0, 5, testbed::SESSION, 0, 0), &inner);
    // Offsets of the global and per-link sequence in the frame (Ethernet 14 + IPv4 20 + UDP 8 + 8).
    const GLOBAL: usize = 50;
    const LINK: usize = 54;
    let mut ingress = Vec::with_capacity(runs);
    for n in 0..runs as u32 {
        frame[GLOBAL..GLOBAL + 4].copy_from_slice(&n.to_be_bytes());
        frame[LINK..LINK + 4].copy_from_slice(&n.to_be_bytes());
        let (verdict, _, took) = testbed::run(&mut hub, Program::LinkIngress, &frame)?;
        anyhow::ensure!(verdict == TC_ACT_REDIRECT, "ingress verdict {verdict} at packet {n}");
        ingress.push(took);
    }

    let e = summarize(egress);
    let i = summarize(ingress);
    Ok(serde_json::json!({
        "runs": runs,
        "inner_packet_bytes": inner.len(),
        "tunnel_egress": { "mean_ns": e.mean_ns, "p50_ns": e.p50_ns, "p99_ns": e.p99_ns },
        "link_ingress": { "mean_ns": i.mean_ns, "p50_ns": i.p50_ns, "p99_ns": i.p99_ns },
    })
    .to_string())
}
