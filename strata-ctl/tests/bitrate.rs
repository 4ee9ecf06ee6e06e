//! The bitrate socket against real daemons over emulated links of known
//! capacity, as an encoder on the car meets it: a subscriber gets what fits
//! within the deadline ten times a second, bounded by what the links carry;
//! status and metrics show the same; a subscriber that never reads holds
//! nobody up and is disconnected; the example subscriber in `scripts/` runs.
//! Needs root (namespaces, BPF, /run/strata).

use std::{
    io::{BufRead as _, BufReader, Read as _},
    os::unix::{fs::MetadataExt as _, net::UnixStream},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use strata_ctl::serve::bitrate;
use strata_lab::{
    Lab,
    emulator::{bridge::EmulatedLink, model::DirectionConfig, trace::Trace},
    scenario::runner::scrape,
    strata::{Control, Tunnel, edge_to_hub},
};

const BINARY: &str = env!("CARGO_BIN_EXE_strata-ctl");
/// The emulated uplinks: capacity (Mbit/s) and one-way delay (ms).
const LINKS: [(f64, f64); 2] = [(8.0, 20.0), (4.0, 30.0)];

fn status_json(name: &str) -> (Value, Duration) {
    let started = Instant::now();
    let out = Command::new(BINARY).args(["status", "--name", name, "--json"]).output().expect("status");
    let took = started.elapsed();
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&out.stdout).expect("status JSON"), took)
}

#[test]
fn subscribers_get_what_fits_ten_times_a_second_and_a_stalled_one_holds_nobody_up() {
    strata_lab::require_root("bitrate tests create namespaces, load BPF and bind in /run/strata");
    let lab = Lab::up_emulated(&Lab::unique_prefix(), LINKS.len()).expect("lab");
    let start = Instant::now();
    let links: Vec<EmulatedLink> = LINKS
        .iter()
        .enumerate()
        .map(|(i, &(mbit_s, delay_ms))| {
            let up = DirectionConfig {
                base_delay_ms: delay_ms,
                capacity: Some(Trace::constant(mbit_s).expect("trace")),
                ..DirectionConfig::default()
            };
            let down = DirectionConfig {
                base_delay_ms: delay_ms,
                capacity: Some(Trace::constant(50.0).expect("trace")),
                ..DirectionConfig::default()
            };
            EmulatedLink::start(&lab.air_ns(i), "edge", "car", up, down, start).expect("emulated link")
        })
        .collect();
    let workdir = std::env::temp_dir().join(format!("strata-bitrate-{}", lab.prefix()));
    let weights: Vec<u32> = LINKS.iter().map(|&(c, _)| c as u32).collect();
    let tunnel =
        Tunnel::start_with(&lab, Path::new(BINARY), &weights, Control::Adaptive, &workdir).expect("daemons");
    let name = tunnel.edge.name().to_string();
    let socket = bitrate::socket_path(&name);
    // Permissioned like the status socket: root only without a [status] group.
    let meta = std::fs::metadata(&socket).expect("the bitrate socket");
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o600, 0), "{}", socket.display());

    // Both links admitted and what fits known, as status reports it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let (s, _) = status_json(&name);
        let live =
            s["links"].as_array().is_some_and(|l| l.len() == 2 && l.iter().all(|l| l["state"] == "live"));
        if live && s["bitrate"]["links_counted"] == 2 {
            break s;
        }
        assert!(Instant::now() < deadline, "links not live, or not counted, after 30 s: {s:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("status: {:#}", first["bitrate"]);

    // A subscriber that never reads, connected first and left alone.
    let stalled = UnixStream::connect(&socket).expect("connect the stalled subscriber");
    let connected_stalled = Instant::now();

    // Video-like load meanwhile (3.2 Mbit/s of 1000-byte datagrams), so
    // the figures are those of a carrying bond.
    let stream = edge_to_hub(&lab, 9000, 3200, 400);
    let traffic = std::thread::spawn(move || stream.run());

    // The reader: every line for 6 s, while status is asked too.
    let reader = UnixStream::connect(&socket).expect("connect");
    reader.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut lines = BufReader::new(reader).lines();
    let mut got = Vec::new();
    let mut status_times = Vec::new();
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(6) {
        let line = lines.next().expect("a line").expect("readable within 2 s");
        let m: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        got.push((Instant::now(), m));
        if got.len() % 10 == 0 {
            let (s, took) = status_json(&name);
            assert_eq!(s["controller_running"], true, "{s:#}");
            status_times.push(took);
        }
    }
    let report = traffic.join().expect("traffic thread").expect("traffic");
    eprintln!("traffic: {} of 3200 delivered", report.delivered.received);

    // Ten a second: the first at once, then one per 100 ms period (a tick
    // a loaded host skips is allowed for).
    let span = got.last().expect("lines").0 - got[0].0;
    let rate = (got.len() - 1) as f64 / span.as_secs_f64();
    eprintln!("{} lines in {span:?}: {rate:.2}/s; status answered in {status_times:?}", got.len());
    assert!(rate >= 9.5, "{rate:.2} lines/s");
    let seqs: Vec<u64> = got.iter().map(|(_, m)| m["seq"].as_u64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "a reading subscriber misses nothing: {seqs:?}");
    let table = Command::new(BINARY).args(["status", "--name", &name]).output().expect("status");
    let table = String::from_utf8_lossy(&table.stdout);
    eprintln!("{table}");
    assert!(table.contains("fits within 150 ms: "), "{table}");
    // While another subscriber stalled, status kept answering promptly.
    assert!(status_times.iter().all(|t| *t < Duration::from_secs(1)), "{status_times:?}");

    // Plausible: known and above 0 while both links are live, never above
    // what the emulated links carry (the payload of at most headroom ×
    // capacity), and not absurdly low over the window. The floor is
    // generous: the controller's capacity estimate dips for a second at a
    // time when host scheduling noise looks like a standing queue (8 Mbit/s
    // link estimated at 1.8 in one debug run on a loaded host; issue 12
    // item 3 reworks that estimator), and what fits follows the estimate.
    let capacity_bps: f64 = LINKS.iter().map(|&(c, _)| c * 1e6).sum();
    let series: Vec<String> = got
        .iter()
        .step_by(5)
        .map(|(_, m)| {
            let mbit = |k: &str| m[k].as_f64().map_or("-".into(), |v| format!("{:.2}", v / 1e6));
            format!("{}/{}", mbit("now_bps"), mbit("next_second_bps"))
        })
        .collect();
    eprintln!("now/next Mbit/s every 0.5 s: {}", series.join(" "));
    for (_, m) in &got {
        assert_eq!(m["v"], 1);
        assert_eq!(m["deadline_ms"], 150);
        let (now, next) = (m["now_bps"].as_f64(), m["next_second_bps"].as_f64());
        let (Some(now), Some(next)) = (now, next) else { panic!("unknown while links are live: {m}") };
        for v in [now, next] {
            assert!(v > 0.0 && v <= 1.05 * capacity_bps, "{v} bit/s of {capacity_bps}: {m}");
        }
        for (link, &(mbit_s, _)) in m["links"].as_array().expect("links").iter().zip(&LINKS) {
            let part = link["now_bps"].as_f64().expect("a link's part");
            assert!(part <= 1.05 * mbit_s * 1e6, "link part {part} of {mbit_s} Mbit/s: {m}");
        }
    }
    let mut nows: Vec<f64> = got.iter().filter_map(|(_, m)| m["now_bps"].as_f64()).collect();
    nows.sort_by(f64::total_cmp);
    let median = nows[nows.len() / 2];
    assert!(median >= 0.3 * capacity_bps, "median {median} bit/s of {capacity_bps}");
    let last = &got.last().expect("lines").1;
    eprintln!("last line: {last}");
    // The reader leaves; the daemon notices at its next line.
    drop(lines);
    std::thread::sleep(bitrate::PERIOD * 3);

    // The stalled subscriber: its buffer filled, then it was disconnected.
    // What it finds when it finally reads is a bounded backlog and the end.
    let mut backlog = Vec::new();
    let mut stalled = stalled;
    stalled.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let ended = stalled.read_to_end(&mut backlog);
    let after = connected_stalled.elapsed();
    assert!(ended.is_ok(), "the stalled subscriber was never disconnected ({after:?}): {ended:?}");
    let backlog_lines = backlog.iter().filter(|&&b| b == b'\n').count();
    eprintln!("stalled subscriber: {} bytes ({backlog_lines} lines) held for it, then closed", backlog.len());
    assert!(backlog.len() <= 256 * 1024, "{} bytes buffered for a subscriber that never read", backlog.len());

    // Metrics: the same figures, and the stall counted.
    let text = scrape(&lab.edge_ns()).expect("scrape");
    let has = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_string()
    };
    eprintln!(
        "{}\n{}",
        has("strata_bond_fit_bits_per_second{horizon=\"now\"}"),
        has("strata_bond_fit_known")
    );
    assert_eq!(has("strata_bond_fit_known"), "strata_bond_fit_known 1");
    assert_eq!(has("strata_bitrate_subscribers_stalled_total"), "strata_bitrate_subscribers_stalled_total 1");
    assert_eq!(has("strata_bitrate_subscribers "), "strata_bitrate_subscribers 0", "the reader has gone too");

    // The example subscriber, where there is a Python.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/strata-bitrate.py");
    match Command::new("python3")
        .arg(&script)
        .args(["--socket"])
        .arg(&socket)
        .args(["--count", "12"])
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            eprintln!("scripts/strata-bitrate.py:\n{text}{}", String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success());
            assert_eq!(text.lines().count(), 12, "{text}");
            assert!(text.lines().all(|l| l.contains("within 150 ms: now")), "{text}");
        }
        Err(e) => eprintln!("python3 not run ({e}): the example subscriber is not checked"),
    }

    let (edge_log, _) = tunnel.stop().expect("clean stop");
    assert!(!socket.exists(), "{} left behind", socket.display());
    assert!(edge_log.contains("publishing what fits within the deadline"), "{edge_log}");
    for l in links {
        l.stop().expect("emulated link");
    }
    lab.down().expect("lab down");
    let _ = std::fs::remove_dir_all(workdir);
}
