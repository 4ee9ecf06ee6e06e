//! Restart without loss (issue 16): the data plane belongs to the host, not
//! to the daemon. A stream at half the links' capacity runs while the edge
//! daemon is killed (SIGKILL) and started again 2 s later, then the hub's,
//! then each is upgraded in place (stopped with `--keep-dataplane` and
//! started again). The tunnel devices must never disappear and nothing may
//! be lost beyond what the emulated links themselves dropped. Restart to
//! ready is measured and printed, not asserted (a loaded CI host is slow at
//! verifying the programs; docs/BENCHMARKS.md has the figures). Needs root.

use std::path::Path;

use strata_lab::{
    scenario::{
        report,
        runner::{self, DaemonRestart, DaemonSide, DaemonStop},
        spec::Scenario,
    },
    strata::{Control, EdgeSetup},
};

const BINARY: &str = env!("CARGO_BIN_EXE_strata-ctl");
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Removes a test's own network namespace however the test ends.
struct NamespaceGuard(String);

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Plays `scenario` with `restarts`. The lab fails a run whose daemons are
/// not up within its 3 s warm-up, before anything restarts; on a 2-core host
/// busy building that happens (seen once in four release runs), and says
/// nothing about restarts: such a run is played once more.
fn play(scenario: &Scenario, setup: &EdgeSetup, out: &Path, restarts: &[DaemonRestart]) -> runner::RunResult {
    // One lab run at a time: two at once on a 2-core host would measure
    // the host.
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let run = || {
        runner::run_with_restarts(scenario, Path::new(BINARY), setup.clone(), &out.join("daemons"), restarts)
    };
    let result = match run() {
        Err(e) if format!("{e:#}").contains("warm-up to start") => {
            eprintln!("the lab's daemons started late ({e:#}): once more");
            run()
        }
        other => other,
    }
    .expect("scenario run");
    report::write(&result, out, None).unwrap();
    eprintln!("{}", report::markdown(&result));
    result
}

#[test]
fn kill_and_upgrade_of_either_daemon_lose_nothing() {
    strata_lab::require_root("the restart test creates namespaces and runs the daemons");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scenario = Scenario::load(&root.join("tests/scenarios/daemon-restart.toml")).unwrap();
    scenario.validate().unwrap();
    let restarts = [
        DaemonRestart { at_s: 3.0, side: DaemonSide::Edge, stop: DaemonStop::Crash, down_s: 2.0 },
        DaemonRestart { at_s: 9.0, side: DaemonSide::Hub, stop: DaemonStop::Crash, down_s: 2.0 },
        DaemonRestart { at_s: 15.0, side: DaemonSide::Edge, stop: DaemonStop::InPlace, down_s: 1.0 },
        DaemonRestart { at_s: 17.0, side: DaemonSide::Hub, stop: DaemonStop::InPlace, down_s: 1.0 },
    ];
    // Every daemon runs with --keep-dataplane, as the upgrades need; the
    // kills do not care (a killed daemon runs no clean-up either way).
    let setup = EdgeSetup { control: Control::Static, keep_dataplane: true, ..EdgeSetup::default() };
    let out = root.join("target/lab-ci/daemon-restart");
    let result = play(&scenario, &setup, &out, &restarts);

    assert_eq!(result.restarts.len(), restarts.len(), "{:?}", result.restarts);
    for r in &result.restarts {
        assert!(r.ready_ms.is_finite(), "never ready again: {r:?}");
        eprintln!("{:?} after {:?}: ready {:.0} ms after exec", r.side, r.stop, r.ready_ms);
    }
    let sent = assert_nothing_lost_beyond_the_links("static", &result);
    assert!(sent > 1000, "too little traffic to say anything: {sent}");
}

#[test]
fn an_adaptive_edge_killed_and_restarted_keeps_its_links_carrying() {
    strata_lab::require_root("the restart test creates namespaces and runs the daemons");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut scenario = Scenario::load(&root.join("tests/scenarios/daemon-restart.toml")).unwrap();
    scenario.duration_s = 22.0;
    scenario.validate().unwrap();
    // The killed daemon leaves its per-link probe routing behind; the next
    // start must recognise it (rules are created exclusively) or it falls
    // back to static weights.
    let restarts = [
        DaemonRestart { at_s: 3.0, side: DaemonSide::Edge, stop: DaemonStop::Crash, down_s: 2.0 },
        DaemonRestart { at_s: 13.0, side: DaemonSide::Edge, stop: DaemonStop::InPlace, down_s: 1.0 },
    ];
    let setup = EdgeSetup { control: Control::Adaptive, keep_dataplane: true, ..EdgeSetup::default() };
    let out = root.join("target/lab-ci/daemon-restart-adaptive");
    let result = play(&scenario, &setup, &out, &restarts);

    let log = std::fs::read_to_string(out.join("daemons/edge.log")).unwrap();
    assert_eq!(log.matches("adopted the running data plane").count(), 2, "both restarts adopted");
    assert!(!log.contains("adaptive control unavailable"), "a restart fell back to static weights");
    // Links pass probing and warm-up in 3-4 s after a start: each restarted
    // controller has 6 s or more to take the schedule over.
    assert_eq!(
        log.matches("the controller takes over the schedule").count(),
        2,
        "a restarted controller never took over"
    );
    assert_nothing_lost_beyond_the_links("adaptive", &result);
}

/// Asserts that no tunnel device went away and nothing was lost beyond what
/// the emulated links themselves dropped; returns the packets sent.
fn assert_nothing_lost_beyond_the_links(what: &str, result: &runner::RunResult) -> u64 {
    assert!(
        result.tunnel_device_changes.is_empty(),
        "{what}: a tunnel device went away: {:?}",
        result.tunnel_device_changes
    );
    let sent: u64 = result.analysis.classes.values().map(|c| c.sent).sum();
    let received: u64 = result.analysis.classes.values().map(|c| c.received).sum();
    let links_dropped: u64 = result
        .link_stats
        .iter()
        .map(|s| s.uplink.dropped_blackout + s.uplink.dropped_loss + s.uplink.dropped_buffer)
        .sum();
    let lost = sent.saturating_sub(received);
    eprintln!("{what}: sent {sent}, received {received}, lost {lost}, the links dropped {links_dropped}");
    assert!(lost <= links_dropped, "{what}: {lost} lost, the links dropped {links_dropped}");
    sent
}

#[test]
fn the_tunnel_device_outlives_its_descriptor_until_removed() {
    use strata_ctl::os::tun::Tun;
    strata_lab::require_root("the test creates a network namespace and a TUN device");
    let ns = format!("strata-tun-{}", std::process::id());
    let ip = |args: &[&str]| {
        let ok = std::process::Command::new("ip").args(args).status().is_ok_and(|s| s.success());
        assert!(ok, "ip {args:?}");
    };
    ip(&["netns", "add", &ns]);
    let _gone = NamespaceGuard(ns.clone());
    let result = strata_lab::in_netns(&ns, || {
        let index = || {
            let name = std::ffi::CString::new("strt0").unwrap();
            // SAFETY: if_nametoindex reads a NUL-terminated string.
            unsafe { libc::if_nametoindex(name.as_ptr()) }
        };
        let tun = Tun::create("strt0")?;
        assert!(!tun.existed());
        let first = index();
        assert_ne!(first, 0);
        // A daemon that ends without removing it (killed, or kept for an
        // upgrade): the device stays, the same one.
        tun.keep();
        assert_eq!(index(), first, "the device went with its descriptor");
        let again = Tun::create("strt0")?;
        assert!(again.existed(), "re-opened, not created");
        assert_eq!(index(), first);
        // A second daemon cannot take it while one holds it.
        let busy = Tun::create("strt0").expect_err("two holders");
        assert!(busy.to_string().contains("still running"), "{busy}");
        again.remove()?;
        assert_eq!(index(), 0, "a clean stop removes the device");
        Ok(())
    });
    result.unwrap();
}

#[test]
fn probe_routing_left_by_a_killed_daemon_is_reused_or_replaced() {
    use std::net::{IpAddr, Ipv4Addr};

    use strata_ctl::os::net::Net;
    strata_lab::require_root("the test creates a network namespace");
    let ns = format!("strata-rules-{}", std::process::id());
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ip(&["netns", "add", &ns]);
    let _gone = NamespaceGuard(ns.clone());
    ip(&["-n", &ns, "link", "add", "lnk0", "type", "veth", "peer", "name", "lnk0p"]);
    ip(&["-n", &ns, "addr", "add", "192.0.2.1/24", "dev", "lnk0"]);
    ip(&["-n", &ns, "addr", "add", "192.0.2.7/24", "dev", "lnk0"]);
    ip(&["-n", &ns, "link", "set", "lnk0", "up"]);
    let result = strata_lab::in_netns(&ns, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let net = Net::connect()?;
            let index = net.interface("lnk0").await?.index;
            let first = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
            // A daemon installs its link's routing and is killed: nothing
            // removes it. The next one finds the same rule (reused) …
            net.add_link_routing(index, first, None, 1000).await?;
            net.add_link_routing(index, first, None, 1000).await?;
            // … or, the link's address changed meanwhile, another (replaced).
            let routing =
                net.add_link_routing(index, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), None, 1000).await?;
            anyhow::Ok(routing)
        })
    });
    let rules = ip(&["-n", &ns, "-4", "rule", "show", "priority", "1000"]);
    result.unwrap();
    assert_eq!(rules.lines().count(), 1, "{rules}");
    assert!(rules.contains("from 192.0.2.7 lookup 1000"), "{rules}");
}

#[test]
fn a_pinned_link_is_adopted_and_one_whose_interface_went_away_attached_afresh() {
    use strata_common::maps::{CONFIG_READY, TunnelConfig};
    use strata_ctl::dataplane::datapath::{Attached, Datapath, Program};
    strata_lab::require_root("the test creates a network namespace and loads the data plane");
    let ns = format!("strata-links-{}", std::process::id());
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    ip(&["netns", "add", &ns]);
    let _gone = NamespaceGuard(ns.clone());
    let veth = |ip: &dyn Fn(&[&str])| {
        ip(&["-n", &ns, "link", "add", "lnk0", "type", "veth", "peer", "name", "lnk0p"]);
        ip(&["-n", &ns, "link", "set", "lnk0", "up"]);
    };
    veth(&ip);
    let pins = Path::new("/sys/fs/bpf/strata").join(format!("test-links-{}", std::process::id()));
    let _unpinned = PinsGuard(pins.clone());
    let in_ns = |f: Box<dyn FnOnce() -> anyhow::Result<()> + Send>| strata_lab::in_netns(&ns, f).unwrap();
    let p = pins.clone();
    in_ns(Box::new(move || {
        let mut dp = Datapath::load(Some(&p))?;
        assert!(!dp.adopted(), "fresh pins");
        assert_eq!(dp.attach(Program::LinkIngress, "lnk0")?, Attached::Fresh);
        // What `configure` ends with: the data plane is running.
        dp.set_config(TunnelConfig { flags: CONFIG_READY, ..TunnelConfig::default() })?;
        dp.release();
        assert!(p.join("link_ingress_lnk0").exists(), "the link stays pinned");
        // The next daemon adopts it: the program replaced on the same link.
        let mut dp = Datapath::load(Some(&p))?;
        assert!(dp.adopted());
        assert_eq!(dp.attach(Program::LinkIngress, "lnk0")?, Attached::Replaced);
        dp.release();
        Ok(())
    }));
    // While no daemon runs, the interface goes and comes back under its
    // name (a modem re-enumerated): the pinned link lost its device.
    ip(&["-n", &ns, "link", "del", "lnk0"]);
    veth(&ip);
    let p = pins;
    in_ns(Box::new(move || {
        let mut dp = Datapath::load(Some(&p))?;
        assert_eq!(dp.attach(Program::LinkIngress, "lnk0")?, Attached::Fresh);
        let (_, on_lnk0) =
            aya::programs::SchedClassifier::query_tcx("lnk0", aya::programs::TcAttachType::Ingress)?;
        assert_eq!(on_lnk0.len(), 1, "one program on the new interface");
        // A clean stop takes it all down.
        dp.detach_all();
        dp.unpin()?;
        assert!(!p.exists());
        let (_, on_lnk0) =
            aya::programs::SchedClassifier::query_tcx("lnk0", aya::programs::TcAttachType::Ingress)?;
        assert!(on_lnk0.is_empty(), "detached");
        Ok(())
    }));
}

/// Removes a test's own pin directory however the test ends.
struct PinsGuard(std::path::PathBuf);

impl Drop for PinsGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
