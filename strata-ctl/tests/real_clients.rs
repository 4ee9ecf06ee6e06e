//! Real clients through the tunnel (issue 12's acceptance, short in CI):
//! `ffmpeg` + `srt-live-transmit` carry a 4 Mbit/s x264 test pattern, and
//! `iperf3` a TCP transfer, from the edge to the hub over three emulated
//! links, judged by what the applications' own tools report.
//!
//! The assertions are generous on purpose: that the plumbing works, that a
//! clear majority of frames decode and that TCP moves data. The issue's
//! target (every frame decodable, no SRT sender drops) waits for the
//! controller's rework; today's figures are in docs/BENCHMARKS.md ("Real
//! clients"), measured full-length with
//!
//! ```text
//! STRATA_CLIENTS_S=60 STRATA_CLIENTS_CONTROL=adaptive|static \
//!   cargo test --release -p strata-ctl --test real_clients -- --nocapture --test-threads 1
//! ```
//!
//! Needs root and the tools `cargo xtask setup` installs. Results (the
//! received video, SRT statistics, iperf3's JSON, daemon logs and a
//! `result.json`) stay in `target/lab-ci/real-clients-*`.

use std::{path::Path, sync::Mutex, time::Duration};

use strata_lab::{
    clients::{self, Ends, Iperf3, SrtVideo},
    emulator::bridge::LinkStats,
    scenario::{spec::Scenario, stage::Stage},
    strata::{Control, HUB_TUNNEL_ADDR},
};

const BINARY: &str = env!("CARGO_BIN_EXE_strata-ctl");
/// The scenario whose links carry the clients (its traffic and events are
/// not played). One line to put the clients on other links: `real-links-40`
/// plays three offsets of the real LTE trace in ../shared/traces/ (its
/// calibrated cellular fallback where the file is absent), 17.2 Mbit/s
/// summed mean, so the 4 Mbit/s video is ≈ 23 % of it; `real-clients` is
/// race-lap's kind of synthetic links at 20 %.
const LINKS: &str = "real-links-40";
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// From the links' start to the clients': longer than the scenarios' 3 s,
/// as a user starts streaming once the unit is up, not the moment it is:
/// time for the daemons to start on a loaded CI host (one took 3.7 s) and
/// for adaptive control to admit the links.
const WARMUP: Duration = Duration::from_secs(8);

/// Length of each client's run: `STRATA_CLIENTS_S`, else `ci_default`.
fn duration(ci_default: u64) -> Duration {
    let s = std::env::var("STRATA_CLIENTS_S").ok().and_then(|s| s.parse().ok()).unwrap_or(ci_default);
    Duration::from_secs(s)
}

/// `STRATA_CLIENTS_CONTROL` (`static` or `adaptive`), else adaptive.
fn control() -> Control {
    match std::env::var("STRATA_CLIENTS_CONTROL").as_deref() {
        Ok("static") => Control::Static,
        Ok("adaptive") | Err(_) => Control::Adaptive,
        Ok(other) => panic!("STRATA_CLIENTS_CONTROL={other}: give static or adaptive"),
    }
}

/// The lab with [`LINKS`]' links and the daemons, warmed up; where to keep results.
fn stage(test: &str, duration: Duration, control: Control) -> (Stage, std::path::PathBuf) {
    strata_lab::require_root("real-client tests create namespaces and run the daemons");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut scenario = Scenario::load(&root.join("tests/scenarios").join(format!("{LINKS}.toml"))).unwrap();
    scenario.duration_s = (WARMUP + duration).as_secs_f64() + 5.0;
    scenario.events.clear();
    let out = root.join("target/lab-ci").join(format!("real-clients-{test}-{}", control.name()));
    let _ = std::fs::remove_dir_all(&out);
    let stage =
        Stage::start(&scenario, Path::new(BINARY), control, &out.join("daemons"), WARMUP).expect("lab up");
    for (i, source) in stage.trace_sources.iter().enumerate() {
        eprintln!("link {i}: {}", source.description);
    }
    stage.wait_warmup();
    (stage, out)
}

fn ends(stage: &Stage) -> Ends {
    Ends { edge_ns: stage.lab.edge_ns(), hub_ns: stage.lab.hub_ns(), hub_addr: HUB_TUNNEL_ADDR }
}

/// What each link carried, Mbit/s over `duration`.
fn carried(links: &[LinkStats], duration: Duration) -> Vec<String> {
    links
        .iter()
        .map(|l| format!("{:.2}", l.uplink.delivered_bytes as f64 * 8.0 / duration.as_secs_f64() / 1e6))
        .collect()
}

#[test]
fn srt_video_through_the_tunnel() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (duration, control) = (duration(20), control());
    let video = SrtVideo { duration, ..SrtVideo::default() };
    let (stage, out) = stage("srt", duration, control);
    let capacity = stage.capacity_mbit_s(duration);
    let report = clients::srt_video(&ends(&stage), &video, &out.join("srt"));
    let stopped = stage.stop().expect("lab down");
    let report = report.expect("SRT video");
    eprintln!(
        "SRT video, {control:?} control, {} s over links of {capacity:.1} Mbit/s mean capacity \
         ({:.0} % load):\n  {report}\n  links carried (Mbit/s over the clients' time, whole run incl. probes): [{}]",
        duration.as_secs(),
        f64::from(video.kbit_s) / 10.0 / capacity,
        carried(&stopped.link_stats, duration).join(" ")
    );
    let result = serde_json::json!({
        "control": control.name(), "links": LINKS, "capacity_mbit_s": capacity, "video": video, "report": report,
    });
    std::fs::write(out.join("result.json"), serde_json::to_string_pretty(&result).unwrap()).unwrap();

    // The plumbing: the encoder made every frame, SRT carried them, the file decodes.
    assert_eq!(report.frames_sent, video.frames(), "{report}");
    assert!(report.sender.packets > 0 && report.receiver.packets > 0, "{report}");
    assert!(report.frames_received > 0, "{report}");
    // A clear majority of frames decode. Generous: the issue's "every frame,
    // no sender drop" waits for the controller's rework (figures in
    // docs/BENCHMARKS.md).
    assert!(report.decodable_ratio() >= 0.6, "{report}");
}

#[test]
fn tcp_through_the_tunnel() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (duration, control) = (duration(15), control());
    let test = Iperf3 { duration, ..Iperf3::default() };
    let (stage, out) = stage("tcp", duration, control);
    let capacity = stage.capacity_mbit_s(duration);
    let report = clients::iperf3(&ends(&stage), &test, &out.join("tcp"));
    let stopped = stage.stop().expect("lab down");
    let report = report.expect("iperf3");
    eprintln!(
        "iperf3 TCP, {control:?} control, {} s over links of {capacity:.1} Mbit/s mean capacity:\n  \
         {report}\n  {:.0} % of the links' capacity; links carried (Mbit/s over the clients' time, whole run incl. probes): [{}]",
        duration.as_secs(),
        report.received_mbit_s / capacity * 100.0,
        carried(&stopped.link_stats, duration).join(" ")
    );
    let result = serde_json::json!({
        "control": control.name(), "links": LINKS, "capacity_mbit_s": capacity, "report": report,
    });
    std::fs::write(out.join("result.json"), serde_json::to_string_pretty(&result).unwrap()).unwrap();

    // It completes and moves data: at least a tenth of what the links could carry.
    assert!(report.received_mbit_s >= capacity * 0.1, "{report}");
}
