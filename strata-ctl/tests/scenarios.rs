//! Regression guard: short versions of every lab scenario, run against the
//! real daemons over emulated links, with thresholds on what the
//! applications saw.
//!
//! The thresholds are set a margin below what the current data plane
//! achieves with static weights (figures in docs/BENCHMARKS.md), so a change
//! that loses more, delays more or stops recovering fails here. They are
//! floors: when the controller improves a scenario, raise its floor.
//! Scenarios run one at a time — two at once on a 2-core machine would
//! measure the machine, not Strata. Needs root.

use std::{path::Path, sync::Mutex};

use strata_lab::{
    scenario::{analyzer::Analysis, report, runner, spec::Scenario},
    strata::Control,
};

const BINARY: &str = env!("CARGO_BIN_EXE_strata-ctl");
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn play(name: &str, duration_s: f64) -> Analysis {
    strata_lab::require_root("scenario tests create namespaces and run the daemons");
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut scenario = Scenario::load(&root.join("tests/scenarios").join(format!("{name}.toml"))).unwrap();
    scenario.duration_s = duration_s;
    scenario.events.retain(|e| e.at_s < duration_s);
    scenario.validate().unwrap();
    let out = root.join("target/lab-ci").join(name);
    let result = runner::run(&scenario, Path::new(BINARY), Control::Static, &out.join("daemons"))
        .expect("scenario run");
    report::write(&result, &out, None).unwrap();
    eprintln!("{}", report::markdown(&result));
    result.analysis
}

#[test]
fn steady_asymmetric() {
    let a = play("steady-asymmetric", 10.0);
    assert!(a.delivered_ratio >= 0.999, "delivered {}", a.delivered_ratio);
    assert!(a.owd_ms.p99 <= 300.0, "p99 {}", a.owd_ms.p99);
    assert!(a.aggregation_efficiency >= 0.75, "efficiency {}", a.aggregation_efficiency);
}

#[test]
fn bursty_loss() {
    let a = play("bursty-loss", 10.0);
    assert!(a.delivered_ratio >= 0.97, "delivered {}", a.delivered_ratio);
    assert!(a.owd_ms.p99 <= 250.0, "p99 {}", a.owd_ms.p99);
}

#[test]
fn blackout_best_link() {
    let a = play("blackout-best-link", 18.0);
    assert!(a.delivered_ratio >= 0.80, "delivered {}", a.delivered_ratio);
    let e = &a.events[0];
    assert!(e.recovery_ms <= 6000.0, "recovered {} ms after a 5 s blackout", e.recovery_ms);
}

#[test]
fn all_links_fade() {
    let a = play("all-links-fade", 14.0);
    assert!(a.delivered_ratio >= 0.75, "delivered {}", a.delivered_ratio);
    assert!(a.events.iter().all(|e| e.recovery_ms <= 5000.0), "{:?}", a.events);
}

#[test]
fn thermal_collapse() {
    let a = play("thermal-collapse", 18.0);
    assert!(a.delivered_ratio >= 0.85, "delivered {}", a.delivered_ratio);
}

#[test]
fn ip_change() {
    let a = play("ip-change", 12.0);
    assert!(a.delivered_ratio >= 0.98, "delivered {}", a.delivered_ratio);
}

#[test]
fn nat_rebind() {
    let a = play("nat-rebind", 12.0);
    assert!(a.delivered_ratio >= 0.995, "delivered {}", a.delivered_ratio);
    assert!(a.events[0].lost_packets <= 50, "{:?}", a.events);
}

#[test]
fn usb_reattach() {
    let a = play("usb-reattach", 12.0);
    // The interface comes back with a new name and ifindex; until the daemon
    // follows re-enumeration (the Linux-advisor issue) the link stays dead,
    // so recovery is not asserted yet — only that the other links carry on.
    assert!(a.delivered_ratio >= 0.70, "delivered {}", a.delivered_ratio);
}

#[test]
fn race_lap() {
    let a = play("race-lap", 15.0);
    assert!(a.delivered_ratio >= 0.98, "delivered {}", a.delivered_ratio);
    assert!(a.within_150ms >= 0.95, "within 150 ms {}", a.within_150ms);
}
