//! Configuration reload against real daemons in a lab: `strata-ctl reload`
//! applies a weight change (the kernel's schedule follows it: the links'
//! transmit counters split in the new ratio), refuses a change that needs a
//! restart with a non-zero exit and keeps running on the old configuration,
//! and SIGHUP reloads as the verb does. Needs root (namespaces, BPF).

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use strata_ctl::dataplane::stats::read_pinned;
use strata_lab::{
    Lab,
    strata::{Control, Tunnel, edge_to_hub},
};

const BINARY: &str = env!("CARGO_BIN_EXE_strata-ctl");

/// Transmit packets per link id of the edge, from its pinned maps.
fn tx(pins: &Path) -> [u64; 2] {
    let s = read_pinned(pins).expect("pinned maps");
    let of = |id| s.links.iter().find(|l| l.id == id).map_or(0, |l| l.tx_packets);
    [of(0), of(1)]
}

/// Sends 3000 datagrams edge → hub; returns link 0's packets over link 1's.
fn ratio_of_a_stream(lab: &Lab, pins: &Path, port: u16) -> f64 {
    let before = tx(pins);
    let report = edge_to_hub(lab, port, 3000, 3000).run().expect("traffic");
    assert!(report.delivered.received >= 2970, "{} of 3000 delivered", report.delivered.received);
    let after = tx(pins);
    let (l0, l1) = (after[0] - before[0], after[1] - before[1]);
    l0 as f64 / l1.max(1) as f64
}

fn reload(name: &str) -> (bool, String) {
    let out = Command::new(BINARY).args(["reload", "--name", name]).output().expect("run strata-ctl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn reload_applies_a_weight_refuses_a_restart_change_and_follows_sighup() {
    strata_lab::require_root("reload tests create namespaces and load BPF");
    let lab = Lab::up(&Lab::unique_prefix(), 2).expect("lab");
    let workdir = std::env::temp_dir().join(format!("strata-reload-{}", lab.prefix()));
    let tunnel =
        Tunnel::start_with(&lab, Path::new(BINARY), &[1, 1], Control::Static, &workdir).expect("daemons");
    let (name, pins) = (tunnel.edge.name().to_string(), tunnel.edge.pin_dir());
    let config = workdir.join("edge.toml");
    let original = std::fs::read_to_string(&config).expect("the edge's configuration");
    assert_eq!(original.matches("weight = 1\n").count(), 2, "two links of weight 1:\n{original}");

    let even = ratio_of_a_stream(&lab, &pins, 9100);
    assert!((0.8..1.25).contains(&even), "weights 1:1 split {even:.2}");

    // A weight change: applied, and the kernel follows it.
    std::fs::write(&config, original.replacen("weight = 1\n", "weight = 3\n", 1)).expect("writing");
    let (ok, text) = reload(&name);
    assert!(ok, "reload failed: {text}");
    assert!(text.contains("links[0].weight"), "{text}");
    let three = ratio_of_a_stream(&lab, &pins, 9101);
    assert!((2.4..3.75).contains(&three), "weights 3:1 split {three:.2}");

    // A change that needs a restart: refused, non-zero, nothing applied
    // (the weight change in the same file is not taken either).
    let session_line = original.lines().find(|l| l.starts_with("session = ")).expect("a session line");
    let session: u32 = session_line["session = ".len()..].parse().expect("a session number");
    let restart = original
        .replacen("weight = 1\n", "weight = 2\n", 1)
        .replace(session_line, &format!("session = {}", session ^ 1));
    std::fs::write(&config, restart).expect("writing");
    let (ok, text) = reload(&name);
    assert!(!ok, "a session change was accepted: {text}");
    assert!(text.contains("session") && text.contains("restart"), "{text}");
    let still_three = ratio_of_a_stream(&lab, &pins, 9102);
    assert!((2.4..3.75).contains(&still_three), "after a refusal weights 3:1 split {still_three:.2}");

    // SIGHUP: back to 1:1.
    std::fs::write(&config, &original).expect("writing");
    let pid = tunnel.edge.pid().expect("the edge runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGHUP)
        .expect("SIGHUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tunnel.edge.log_text().matches("configuration reloaded").count() < 2 {
        assert!(Instant::now() < deadline, "no reload logged after SIGHUP:\n{}", tunnel.edge.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let even_again = ratio_of_a_stream(&lab, &pins, 9103);
    assert!((0.8..1.25).contains(&even_again), "after SIGHUP weights 1:1 split {even_again:.2}");

    eprintln!(
        "link 0 ÷ link 1 packets: 1:1 {even:.2}, reloaded 3:1 {three:.2}, after the refusal {still_three:.2}, \
         SIGHUP 1:1 {even_again:.2}"
    );
    tunnel.stop().expect("clean stop");
    lab.down().expect("lab down");
    let _ = std::fs::remove_dir_all(&workdir);
}
