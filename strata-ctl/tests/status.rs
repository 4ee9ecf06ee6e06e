//! `strata-ctl status` against real daemons in a lab, the way an operator in
//! the pits meets it: a healthy daemon answers within 100 ms and agrees with
//! the kernel's maps; a stopped (wedged) daemon costs no more than the
//! client's answer budget and is reported with its reason; a killed one
//! leaves pinned maps that status still reads; `--watch --json` streams one
//! document per line; and the control socket has the permissions the
//! configuration asks for. Needs root (namespaces, BPF, /run/strata).

use std::{
    io::{BufRead as _, BufReader},
    os::unix::fs::MetadataExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal, unistd::Pid};
use serde_json::Value;
use strata_common::stats::percentile;
use strata_ctl::{dataplane::stats::read_pinned, serve::status};
use strata_lab::{
    Lab,
    strata::{Control, Daemon, Tunnel, edge_to_hub},
};

const BINARY: &str = env!("CARGO_BIN_EXE_strata-ctl");

/// Runs `strata-ctl status --name name [args]`: (exit ok, stdout, stderr, wall time).
fn status(name: &str, args: &[&str]) -> (bool, String, String, Duration) {
    let started = Instant::now();
    let out =
        Command::new(BINARY).args(["status", "--name", name]).args(args).output().expect("run strata-ctl");
    let took = started.elapsed();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

fn status_json(name: &str) -> (Value, Duration) {
    let (ok, out, err, took) = status(name, &["--json"]);
    assert!(ok, "status --json failed: {err}");
    (serde_json::from_str(&out).unwrap_or_else(|e| panic!("status JSON: {e}\n{out}")), took)
}

#[test]
fn status_answers_fast_agrees_with_the_kernel_and_says_why_the_controller_is_down() {
    strata_lab::require_root("status tests create namespaces and load BPF");
    let lab = Lab::up(&Lab::unique_prefix(), 2).expect("lab");
    let workdir = std::env::temp_dir().join(format!("strata-status-{}", lab.prefix()));
    let tunnel = Tunnel::start_with(&lab, std::path::Path::new(BINARY), &[1, 1], Control::Adaptive, &workdir)
        .expect("daemons");
    let edge_name = tunnel.edge.name().to_string();
    let hub_name = tunnel.hub.name().to_string();

    // The socket: root only (no [status] group in the lab's configuration).
    let socket = status::socket_path(&edge_name);
    let meta = std::fs::metadata(&socket).expect("the daemon's socket");
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o600, 0), "mode and owner of {}", socket.display());

    // Both links admitted, as status reports them.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _) = status_json(&edge_name);
        let links = s["links"].as_array().cloned().unwrap_or_default();
        if links.len() == 2 && links.iter().all(|l| l["state"] == "live") {
            break;
        }
        assert!(Instant::now() < deadline, "links not live after 20 s: {s:#}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let report = edge_to_hub(&lab, 9000, 3000, 2000).run().expect("traffic");
    assert_eq!(report.delivered.received, 3000);

    // A healthy daemon: every answer within 100 ms (process start to exit).
    let mut times = Vec::new();
    let mut last = Value::Null;
    for _ in 0..40 {
        let (s, took) = status_json(&edge_name);
        assert_eq!(s["controller_running"], true, "{s:#}");
        assert!(s["controller_down_reason"].is_null(), "{s:#}");
        times.push(took);
        last = s;
        std::thread::sleep(Duration::from_millis(25));
    }
    times.sort();
    let at = |p| percentile(&times, p).expect("40 answers");
    let (p50, p95, max) = (at(50.0), at(95.0), at(100.0));
    eprintln!("status --json against a running daemon, 40 calls: p50 {p50:?}, p95 {p95:?}, max {max:?}");
    assert!(p95 < Duration::from_millis(100), "p50 {p50:?}, p95 {p95:?}, max {max:?}");

    // Its numbers are the kernel's: per link within 1 % of the pinned maps
    // (probes keep flowing between the two reads), and the data sent.
    let pinned = read_pinned(&tunnel.edge.pin_dir()).expect("pinned maps");
    let links = last["links"].as_array().expect("links");
    assert_eq!(links.len(), 2);
    for link in links {
        let id = link["id"].as_u64().expect("id") as usize;
        let (shown, kernel) = (link["tx_bytes"].as_u64().unwrap() as f64, pinned.links[id].tx_bytes as f64);
        assert!((shown - kernel).abs() <= kernel * 0.01, "link {id}: {shown} vs {kernel}");
        assert_eq!(link["interface"], format!("lnk{id}"));
        assert!(link["rtt_ms"].as_f64().is_some_and(|r| r > 0.0 && r < 1000.0), "{link:#}");
        assert!(link["weight"].as_u64().is_some(), "{link:#}");
        if last["kernel_sampling"] == "on" {
            assert!(link["kernel_drops"].is_array(), "sampling runs, so drops are known: {link:#}");
        } else {
            assert!(link["kernel_drops"].is_null(), "unknown, not zero: {link:#}");
        }
    }
    let sent = last["total_tx_packets"].as_u64().unwrap();
    assert!(sent >= 3000, "{sent} packets sent for 3000 datagrams");
    assert!(last["total_tx_bytes"].as_u64().unwrap() >= 3000 * 1048);

    // `--watch --json`: one document per line, every second.
    let mut watch = Command::new(BINARY)
        .args(["status", "--name", &edge_name, "--watch", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("status --watch");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let started = Instant::now();
    for _ in 0..3 {
        let line = lines.next().expect("a line").expect("readable");
        let doc: Value = serde_json::from_str(&line).expect("a JSON document per line");
        assert_eq!(doc["name"], edge_name.as_str());
    }
    let took = started.elapsed();
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(4), "3 frames in {took:?}");

    // A wedged daemon (stopped): status still answers, in about the
    // client's budget rather than the daemon's, from the pinned maps.
    let pid = Pid::from_raw(tunnel.edge.pid().expect("edge running") as i32);
    signal::kill(pid, signal::Signal::SIGSTOP).expect("SIGSTOP");
    let (wedged, took) = status_json(&edge_name);
    let (_, table, _, _) = status(&edge_name, &[]);
    signal::kill(pid, signal::Signal::SIGCONT).expect("SIGCONT");
    eprintln!("status --json against a stopped daemon: {took:?}");
    assert_eq!(wedged["controller_running"], false, "{wedged:#}");
    let reason = wedged["controller_down_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("did not answer within 80 ms"), "{reason}");
    assert!(took < Duration::from_millis(200), "a stopped daemon cost {took:?}");
    assert!(wedged["total_tx_packets"].as_u64().unwrap() >= 3000);
    assert!(
        table.starts_with(&format!("strata {edge_name}: CONTROLLER DOWN — the daemon did not answer")),
        "{table}"
    );
    eprintln!("{table}");
    // Continued, it answers again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while status_json(&edge_name).0["controller_running"] != true {
        assert!(Instant::now() < deadline, "the continued daemon does not answer");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A crashed daemon (SIGKILL): its socket file refuses, its pins remain.
    let Tunnel { hub, edge, .. } = tunnel;
    edge.kill().expect("kill the edge daemon");
    let (down, _) = status_json(&edge_name);
    assert_eq!(down["controller_running"], false);
    let reason = down["controller_down_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not running") && reason.contains("refuses connections"), "{reason}");
    assert!(down["total_tx_bytes"].as_u64().unwrap() >= 3000 * 1048);
    Daemon::remove_leftovers(&edge_name);
    // Neither a daemon nor pins: a plain error, and a failing exit.
    let (ok, out, err, _) = status(&edge_name, &[]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains(&format!("no instance \"{edge_name}\": no daemon socket")), "{err}");

    // A clean stop removes the socket as well as the pins.
    let hub_socket = status::socket_path(&hub_name);
    assert!(hub_socket.exists());
    hub.stop().expect("clean stop");
    assert!(!hub_socket.exists(), "{} left behind", hub_socket.display());
    let (ok, _, err, _) = status(&hub_name, &[]);
    assert!(!ok && err.contains("no instance"), "{err}");

    lab.down().expect("lab down");
    let _ = std::fs::remove_dir_all(workdir);
}

#[test]
fn the_socket_is_root_only_or_shared_with_the_configured_group() {
    strata_lab::require_root("binds sockets in /run/strata");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _guard = runtime.enter();
    let name = format!("obs-sock-{}", std::process::id());
    let path = status::socket_path(&name);

    let (listener, file) = status::bind(&name, None).expect("bind");
    let meta = std::fs::metadata(&path).expect("socket file");
    assert_eq!((meta.mode() & 0o777, meta.uid(), meta.gid()), (0o600, 0, 0));
    drop((listener, file));
    assert!(!path.exists(), "removed when dropped");

    let adm = nix::unistd::Group::from_name("adm").expect("group lookup").expect("group adm").gid;
    let (listener, file) = status::bind(&name, Some("adm")).expect("bind");
    let meta = std::fs::metadata(&path).expect("socket file");
    assert_eq!((meta.mode() & 0o777, meta.uid(), meta.gid()), (0o660, 0, adm.as_raw()));
    drop((listener, file));

    let e = status::bind(&name, Some("no-such-group-7")).expect_err("an unknown group");
    assert!(format!("{e:#}").contains("status.group: no group \"no-such-group-7\""), "{e:#}");
    let _ = std::fs::remove_file(&path);
}
