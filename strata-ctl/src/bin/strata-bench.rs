//! `strata-bench`: what each data-plane program costs per packet.
//!
//! Runs each program through `BPF_PROG_TEST_RUN`, one packet per run so every
//! run sees a fresh packet (repeats would re-process the already-encapsulated
//! or already-decapsulated packet), with the kernel's own timing of the
//! program. Ingress packets carry distinct sequence numbers so they take the
//! delivery path, not the duplicate drop. Each program runs without and
//! with packet authentication (the testbed's fixed keys; ingress packets
//! tagged in userspace outside the measured time), and the tag function
//! alone is timed in userspace; egress once more with the most delivery-class
//! rules the kernel evaluates, none matching. Prints JSON. Needs root.
//!
//! Usage: `strata-bench [RUNS] [PAYLOAD]` (default 200 000 runs of a
//! 1316-byte UDP payload). `cargo xtask bench datapath`
//! runs it together with the lab forwarding benchmark.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use strata_common::{
    auth::{AUTH_HEADER_LEN, AUTH_HEADER_WORDS, TAG_LEN, key_words, packet_tag, sign},
    class::{ClassRule, ClassTable, MAX_CLASS_RULES},
    packet::IPPROTO_UDP,
    stats::percentile,
    wire::{TrafficClass, flags},
};
use strata_ctl::{
    dataplane::datapath::Program,
    testbed::{self, TC_ACT_REDIRECT, eth, inner_v4, strata, tunnel_frame},
};

/// An MPEG-TS-over-UDP video packet: 7 × 188-byte TS packets.
const VIDEO_PAYLOAD: usize = 1316;

fn main() -> ExitCode {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let payload: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(VIDEO_PAYLOAD);
    match bench(runs, payload) {
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

fn bench(runs: usize, payload: usize) -> anyhow::Result<String> {
    let inner = inner_v4(0, payload);
    let (plain_out, plain_in) = (egress(runs, &inner, false)?, ingress(runs, &inner, false)?);
    let (auth_out, auth_in) = (egress(runs, &inner, true)?, ingress(runs, &inner, true)?);
    let ruled_out = egress_with(runs, &inner, false, &worst_class_table())?;
    let prf = prf_alone(runs, AUTH_HEADER_LEN + inner.len());
    let summary =
        |s: &Summary| serde_json::json!({ "mean_ns": s.mean_ns, "p50_ns": s.p50_ns, "p99_ns": s.p99_ns });
    Ok(serde_json::json!({
        "runs": runs,
        "inner_packet_bytes": inner.len(),
        "tunnel_egress": summary(&plain_out),
        "link_ingress": summary(&plain_in),
        "tunnel_egress_auth": summary(&auth_out),
        "link_ingress_auth": summary(&auth_in),
        "tunnel_egress_16_class_rules": summary(&ruled_out),
        "siphash24_userspace": { "bytes": AUTH_HEADER_LEN + inner.len(), "mean_ns": prf },
    })
    .to_string())
}

/// The most the kernel evaluates per packet: [`MAX_CLASS_RULES`] rules on
/// protocol and port, none matching the benchmark's packet (UDP to 6000).
fn worst_class_table() -> ClassTable {
    let mut table = ClassTable::default();
    for (i, rule) in table.rules.iter_mut().enumerate() {
        let port = 14_550 + i as u32;
        *rule = ClassRule {
            protocol: IPPROTO_UDP,
            port_lo: port,
            port_hi: port,
            ..ClassRule::any(TrafficClass::Critical)
        };
    }
    table.rule_count = MAX_CLASS_RULES as u32;
    table
}

/// The egress program on `inner`, with the test keys installed (`auth`) or none.
fn egress(runs: usize, inner: &[u8], auth: bool) -> anyhow::Result<Summary> {
    egress_with(runs, inner, auth, &ClassTable::default())
}

/// [`egress`] classifying by `classes`.
fn egress_with(runs: usize, inner: &[u8], auth: bool, classes: &ClassTable) -> anyhow::Result<Summary> {
    let mut edge = testbed::edge([1, 2, 3, 0, 0, 0, 0, 0], 1500)?;
    edge.set_classes(classes)?;
    if auth {
        testbed::require_test_auth(&mut edge, 0, false)?;
    }
    let frame = eth(0x0800, inner);
    let mut egress = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (verdict, _, took) = testbed::run(&mut edge, Program::TunnelEgress, &frame)?;
        anyhow::ensure!(verdict == TC_ACT_REDIRECT, "egress verdict {verdict}");
        egress.push(took);
    }
    Ok(summarize(egress))
}

/// The ingress program on data packets of `inner`, distinct sequences;
/// with `auth` authentication required and every packet tagged (by
/// userspace, outside the measured time).
fn ingress(runs: usize, inner: &[u8], auth: bool) -> anyhow::Result<Summary> {
    let mut hub = testbed::hub()?;
    let (header, key) = if auth {
        testbed::require_test_auth(&mut hub, 0, true)?;
        let mut h = strata(0, 1 | flags::AUTH, 0, AUTH_HEADER_WORDS, testbed::SESSION, 0, 0);
        h.extend([0; TAG_LEN]);
        (h, Some(key_words(&testbed::test_keys(0, false).send)))
    } else {
        (strata(0, 1, 0, 5, testbed::SESSION, 0, 0), None)
    };
    let mut frame = tunnel_frame(&header, inner);
    // Offsets in the frame (Ethernet 14 + IPv4 20 + UDP 8): the Strata
    // header, and in it the global and per-link sequence.
    const STRATA: usize = 42;
    const GLOBAL: usize = STRATA + 8;
    const LINK: usize = STRATA + 12;
    let mut ingress = Vec::with_capacity(runs);
    for n in 0..runs as u32 {
        frame[GLOBAL..GLOBAL + 4].copy_from_slice(&n.to_be_bytes());
        frame[LINK..LINK + 4].copy_from_slice(&n.to_be_bytes());
        if let Some(key) = &key {
            sign(key, &mut frame[STRATA..]);
        }
        let (verdict, _, took) = testbed::run(&mut hub, Program::LinkIngress, &frame)?;
        anyhow::ensure!(verdict == TC_ACT_REDIRECT, "ingress verdict {verdict} at packet {n}");
        ingress.push(took);
    }
    Ok(summarize(ingress))
}

/// Mean ns of the shared SipHash-2-4 tag over `bytes` bytes in userspace
/// (the controller's control packets; the kernel runs the same code).
fn prf_alone(runs: usize, bytes: usize) -> f64 {
    let key = key_words(&testbed::TEST_KEY_UP);
    let mut packet = vec![0x5a_u8; bytes];
    let start = Instant::now();
    for n in 0..runs {
        packet[8] = n as u8;
        std::hint::black_box(packet_tag(&key, std::hint::black_box(&packet)));
    }
    start.elapsed().as_nanos() as f64 / runs as f64
}
