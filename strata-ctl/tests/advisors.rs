//! The OS advisors at the `full` tier against a real edge daemon in a lab:
//! what they tell shows in `strata-ctl status` and `/metrics`, a modem's
//! early warning reaches the controller, and taking the advisors' facilities
//! away at runtime — the D-Bus that ModemManager was on, tracefs — never
//! stops forwarding.
//!
//! ModemManager is the lab's test double (`strata_lab::modem_double`) on a
//! private bus: there is no modem hardware on this machine. Needs root
//! (namespaces, BPF, mounts).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use strata_lab::{
    Lab,
    modem_double::{ACCESS_5GNR, ModemManagerDouble, ModemSpec, PrivateBus},
    scenario::runner,
    strata::{Control, EdgeSetup, OsSignals, Tunnel, edge_to_hub},
};

const BINARY: &str = env!("CARGO_BIN_EXE_strata-ctl");
const TRACEFS: &str = "/sys/kernel/tracing";

fn status_json(name: &str) -> Value {
    let out = Command::new(BINARY).args(["status", "--json", "--name", name]).output().expect("strata-ctl");
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// Polls status until `ok` holds, for at most `bound`.
fn wait_status(name: &str, bound: Duration, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + bound;
    loop {
        let s = status_json(name);
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}: {s:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn advisor(s: &Value, name: &str) -> String {
    s["advisors"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x[0] == name))
        .map_or_else(String::new, |x| x[1].as_str().unwrap_or_default().to_string())
}

/// Unmounts tracefs (lazily: the daemon's programs stay attached, as they
/// would when an operator unmounts it) and mounts it back when dropped.
struct TracefsAway;

impl TracefsAway {
    fn take() -> Self {
        let out = Command::new("umount").args(["-l", TRACEFS]).output().expect("umount");
        assert!(out.status.success(), "umount {TRACEFS}: {}", String::from_utf8_lossy(&out.stderr));
        Self
    }
}

impl Drop for TracefsAway {
    fn drop(&mut self) {
        let _ = Command::new("mount").args(["-t", "tracefs", "nodev", TRACEFS]).status();
    }
}

#[test]
fn advisors_inform_status_and_losing_their_facilities_never_stops_forwarding() {
    strata_lab::require_root("advisor tests create namespaces, load BPF and mount tracefs");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bus = PrivateBus::start().expect("private bus");
    let mut double = rt.block_on(ModemManagerDouble::start(bus.address())).expect("ModemManager double");
    let spec = ModemSpec { net_port: Lab::link_ifname(0), ..ModemSpec::default() };
    let modem = rt.block_on(double.add_modem(spec)).expect("modem");

    let lab = Lab::up(&Lab::unique_prefix(), 2).expect("lab");
    let workdir = std::env::temp_dir().join(format!("strata-advisors-{}", lab.prefix()));
    let setup = EdgeSetup {
        control: Control::Adaptive,
        os_signals: OsSignals::Full,
        modem_manager_bus: Some(bus.address().to_string()),
        ..EdgeSetup::default()
    };
    let tunnel =
        Tunnel::start_with(&lab, std::path::Path::new(BINARY), &[1, 1], setup, &workdir).expect("daemons");
    let edge = tunnel.edge.name().to_string();

    // Every advisor up, the modem matched to link 0 by its net port, and
    // what each link is.
    let s = wait_status(&edge, Duration::from_secs(20), "advisors and live links", |s| {
        let links = s["links"].as_array().cloned().unwrap_or_default();
        links.len() == 2
            && links.iter().all(|l| l["state"] == "live")
            && advisor(s, "netlink") == "active"
            && advisor(s, "uevent") == "active"
            && advisor(s, "modem_manager").starts_with("active")
            && s["links"][0]["os"]["modem"]["access"] == "LTE"
    });
    assert_eq!(s["os_signals"], "full");
    let link0 = &s["links"][0]["os"];
    assert_eq!(link0["device"], "lnk0", "{link0}");
    assert_eq!(link0["identity"], "mac:02:53:54:00:00:01", "{link0}");
    assert_eq!(link0["modem"]["operator"], "Double Mobile", "{link0}");
    assert!(link0["kind"].as_str().is_some_and(|k| k.starts_with("cellular/LTE")), "{link0}");
    assert!(s["links"][1]["os"]["kind"] == "virtual", "{}", s["links"][1]);
    let metrics = runner::scrape(&lab.edge_ns()).expect("scrape");
    // The Grafana board's modem panels query series that exist.
    let board = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/strata.json"))
        .expect("board");
    let modem_series: std::collections::BTreeSet<&str> = board
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("strata_link_modem_"))
        .collect();
    assert!(!modem_series.is_empty(), "the board has modem panels");
    for name in modem_series {
        assert!(
            metrics.lines().any(|l| l.starts_with(&format!("{name}{{"))),
            "the board queries {name}, not exposed"
        );
    }
    for needle in [
        "strata_os_advisor_up{advisor=\"modem_manager\"} 1",
        "strata_link_modem_signal{interface=\"lnk0\",link=\"0\",measure=\"rsrp\"} -92",
        "strata_os_signals_info{tier=\"full\"} 1",
        "strata_link_interface_dropped_total{direction=\"tx\",interface=\"lnk0\",link=\"0\"}",
        "strata_link_device_info{bus=\"virtual\",device=\"lnk1\",driver=\"\",identity=\"mac:02:53:54:00:00:02\",interface=\"lnk1\",kind=\"virtual\",link=\"1\"} 1",
    ] {
        assert!(metrics.contains(needle), "no {needle} in\n{metrics}");
    }

    // A handover (LTE → 5G NR) is an early warning for link 0.
    rt.block_on(double.set_access(&modem, ACCESS_5GNR)).expect("handover");
    wait_status(&edge, Duration::from_secs(5), "the handover warning", |s| {
        s["links"][0]["os"]["modem"]["last_warning"]
            .as_str()
            .is_some_and(|w| w.starts_with("handover LTE → 5GNR"))
    });
    assert!(tunnel.edge.log_text().contains("early warning"), "the controller heard it");
    let text = Command::new(BINARY).args(["status", "--name", &edge]).output().expect("strata-ctl status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("link 0 is cellular/5GNR") && text.contains("last warning: handover LTE → 5GNR"),
        "{text}"
    );
    eprintln!("{text}");

    let report = edge_to_hub(&lab, 9100, 2000, 2000).run().expect("traffic");
    assert_eq!(report.delivered.received, 2000, "before");

    // D-Bus goes away under ModemManager: reported, forwarding goes on.
    drop(double);
    drop(bus);
    wait_status(&edge, Duration::from_secs(10), "ModemManager reported lost", |s| {
        advisor(s, "modem_manager").starts_with("unavailable") && s["links"][0]["os"]["modem"].is_null()
    });
    // tracefs goes away: the sampling programs stay attached, forwarding goes on.
    let away = TracefsAway::take();
    let report = edge_to_hub(&lab, 9101, 2000, 2000).run().expect("traffic");
    assert_eq!(report.delivered.received, 2000, "after D-Bus and tracefs went away");
    let s = status_json(&edge);
    assert!(s["links"].as_array().is_some_and(|l| l.iter().all(|l| l["state"] == "live")), "{s:#}");
    drop(away);
    drop(tunnel);
}
