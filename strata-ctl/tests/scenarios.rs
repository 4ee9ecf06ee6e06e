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
    scenario::{
        analyzer::Analysis,
        report,
        runner::{self, StateChange, max_changes_in_window},
        spec::Scenario,
    },
    strata::{Control, EdgeSetup, OsSignals},
};

const BINARY: &str = env!("CARGO_BIN_EXE_strata-ctl");
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn play(name: &str, duration_s: f64) -> Analysis {
    play_with(name, duration_s, Control::Static).0
}

/// Plays a scenario under `control`; returns the analysis and the edge's link state changes.
fn play_with(name: &str, duration_s: f64, control: Control) -> (Analysis, Vec<StateChange>) {
    let result = play_full(name, duration_s, control, false);
    (result.analysis, result.state_changes)
}

/// Plays a scenario; with `observe`, an operator watches the edge throughout.
fn play_full(name: &str, duration_s: f64, setup: impl Into<EdgeSetup>, observe: bool) -> runner::RunResult {
    let setup = setup.into();
    strata_lab::require_root("scenario tests create namespaces and run the daemons");
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut scenario = Scenario::load(&root.join("tests/scenarios").join(format!("{name}.toml"))).unwrap();
    scenario.duration_s = duration_s;
    scenario.events.retain(|e| e.at_s < duration_s);
    scenario.validate().unwrap();
    let out =
        root.join("target/lab-ci").join(format!("{name}-{:?}-{}", setup.control, setup.os_signals.name()));
    let result = runner::run_with(&scenario, Path::new(BINARY), setup, &out.join("daemons"), observe)
        .expect("scenario run");
    report::write(&result, &out, None).unwrap();
    eprintln!("{}", report::markdown(&result));
    result
}

#[test]
fn adaptive_steers_off_a_dead_link_and_readmits_it_through_warm() {
    // Full length: the link returns at 15 s and needs ~2.5 s of cooldown and
    // probing plus 2-6 s of warm-up before it is live again.
    let (a, changes) = play_with("blackout-best-link", 25.0, Control::Adaptive);
    let e = &a.events[0];
    // Measured 90-110 ms on an idle machine (docs/BENCHMARKS.md); the bound
    // leaves room for a loaded CI host.
    let steering = e.steering_ms.expect("blackout events measure steering");
    assert!(steering <= 300.0, "data kept going to the dead link for {steering} ms");
    assert!(e.outage_lost_packets.unwrap_or(u64::MAX) <= 1000, "{e:?}");
    assert!(a.max_gap_ms <= 400.0, "longest gap {} ms", a.max_gap_ms);
    assert!(a.delivered_ratio >= 0.85, "delivered {}", a.delivered_ratio);
    let t: Vec<(&str, &str)> =
        changes.iter().filter(|c| c.link == 0).map(|c| (c.from.as_str(), c.to.as_str())).collect();
    let to: Vec<&str> = t.iter().map(|(_, to)| *to).collect();
    let dead = to.iter().position(|&s| s == "degraded").unwrap_or_else(|| panic!("never demoted: {t:?}"));
    let back = &to[dead..];
    let warm = back.iter().position(|&s| s == "warm").unwrap_or_else(|| panic!("never warmed: {t:?}"));
    assert!(back[..warm].contains(&"probe"), "re-admitted without probing: {t:?}");
    assert_eq!(back.get(warm + 1), Some(&"live"), "{t:?}");
    assert_eq!(back.len(), warm + 2, "flapping after re-admission: {t:?}");
}

#[test]
fn adaptive_does_not_flap_a_link_with_delay_spikes() {
    let r = play_full("jitter-spikes", 15.0, Control::Adaptive, false);
    let most = max_changes_in_window(&r.state_changes, 1, 2.0);
    assert!(most <= 1, "{most} state changes within 2 s: {:?}", r.state_changes);
    // Nothing lost but what the edge shed as late (a spike holds a link's
    // queue 30 ms longer than expected), and nearly all of it in time.
    let a = &r.analysis;
    let shed = shed_as_late(&r) as f64 / sent(a) as f64;
    assert!(a.delivered_ratio + shed >= 0.995, "delivered {} + shed as late {shed}", a.delivered_ratio);
    assert!(a.within_150ms >= 0.95, "within 150 ms {}", a.within_150ms);
}

/// Packets the edge dropped before sending because no link would deliver
/// them within the deadline (`deadline`).
fn shed_as_late(r: &runner::RunResult) -> u64 {
    let drops = r.edge_stats["drops"].as_array().cloned().unwrap_or_default();
    drops.iter().filter(|d| d[0].as_str() == Some("deadline")).filter_map(|d| d[1].as_u64()).sum()
}

/// Asserts that, of what was sent, at least `at_least` was delivered or
/// shed as late by the edge (so nothing beyond the rest was lost in the
/// network), and that the edge shed at most `shed_at_most` — deadline drops
/// are decisions, counted, and bounded here generously for a debug build on
/// a loaded machine; docs/BENCHMARKS.md has the release figures.
fn assert_delivered_or_shed(what: &str, r: &runner::RunResult, at_least: f64, shed_at_most: f64) {
    let a = &r.analysis;
    let shed = shed_as_late(r) as f64 / sent(a) as f64;
    assert!(
        a.delivered_ratio + shed >= at_least,
        "{what}: delivered {} + shed as late {shed} < {at_least}",
        a.delivered_ratio
    );
    assert!(shed <= shed_at_most, "{what}: shed as late {shed} > {shed_at_most}");
}

/// Packets the traffic generator sent.
fn sent(a: &Analysis) -> u64 {
    a.classes.values().map(|c| c.sent).sum::<u64>().max(1)
}

#[test]
fn adaptive_steady_asymmetric() {
    let result = play_full("steady-asymmetric", 10.0, Control::Adaptive, false);
    let a = &result.analysis;
    // Steering, asserted directly: at 85 % load every link must carry a good
    // part of its capacity's share (12 : 8 : 4), or the others overflow. A
    // link left unused or starved fails this whatever the noise; earliest
    // arrival favours the near links, so the far one carries less than its
    // share (release: 0.84 of it) and the bound is generous.
    let offered: Vec<f64> = result.link_stats.iter().map(|l| l.uplink.arrived_bytes as f64).collect();
    let total: f64 = offered.iter().sum();
    for ((id, bytes), capacity) in offered.iter().enumerate().zip([12.0, 8.0, 4.0]) {
        let share = bytes / total / (capacity / 24.0);
        assert!(share >= 0.4, "link {id} carried {share:.2} of its capacity's share: {offered:?}");
    }
    // Delivery, with margins for a debug build on a loaded machine. Issue
    // 12's link model queues more here than static weights do (release:
    // 98.3-100 % delivered, p99 204-252 ms; static 100 %, 179 ms) — a gap
    // docs/BENCHMARKS.md reports and the oracle ratio measures, not this
    // test.
    assert_delivered_or_shed("steady-asymmetric", &result, 0.95, 0.05);
    assert!(a.owd_ms.p99 <= 600.0, "p99 {}", a.owd_ms.p99);
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
    // Static weights: the netlink advisor re-binds the link to its new
    // interface; the data sent to it while it was gone is lost.
    assert!(a.delivered_ratio >= 0.70, "delivered {}", a.delivered_ratio);
    assert!(a.events[0].resume_ms.is_some(), "never carried data again: {:?}", a.events);
}

#[test]
fn overload_sheds_best_effort_first_and_critical_never() {
    // 130 % of what the links carry, `drop_late` on: each class is dropped
    // past its own deadline (best effort 70 % of it, video all of it,
    // critical never). Measured (20 s, release, idle machine): best effort
    // lost 63 %, video 12.6 %, telemetry 0.05 %; with every class at the
    // whole deadline as before, 5.4 %, 38 % and 3.4 % (docs/BENCHMARKS.md).
    let setup = EdgeSetup {
        control: Control::Adaptive,
        control_extra: "drop_late = true".into(),
        ..EdgeSetup::default()
    };
    let r = play_full("overload-classes", 12.0, setup, false);
    let loss = |class: &str| r.analysis.classes.get(class).map_or(f64::NAN, |c| c.loss);
    let (best_effort, video, critical) = (loss("cbr"), loss("video"), loss("telemetry"));
    assert!(best_effort > video + 0.1, "best effort lost {best_effort}, video {video}: not shed first");
    assert!(critical <= 0.02, "telemetry (critical) lost {critical}");
    assert!(video < 0.5, "video lost {video}");
}

/// The OS-event scenarios under every `os_signals` tier, adaptive control.
/// Every tier must recover (in band at `none`); the advisors' own gains are
/// asserted where they are the point (resume within 100 ms of a new
/// address). Figures per tier: docs/BENCHMARKS.md.
fn every_tier(name: &str, duration_s: f64, observe: bool, check: impl Fn(OsSignals, &runner::RunResult)) {
    for os_signals in OsSignals::ALL {
        let r = play_full(
            name,
            duration_s,
            EdgeSetup { control: Control::Adaptive, os_signals, ..EdgeSetup::default() },
            observe,
        );
        check(os_signals, &r);
    }
}

#[test]
fn ip_change_under_every_tier() {
    every_tier("ip-change", 12.0, false, |tier, r| {
        let e = &r.analysis.events[0];
        let resume =
            e.resume_ms.unwrap_or_else(|| panic!("{tier:?}: link 1 never sent from its new address"));
        // Measured 11-46 ms with netlink on an idle machine (from the start
        // of `ip addr add`, whose process start-up counts, to the first
        // video frame from the new address; docs/BENCHMARKS.md carries the
        // issue's 100 ms figure), 84-290 ms in band (silence hold + a probe
        // round trip). In CI, beside the rest of the suite on two cores,
        // 46-107 ms (the 107 at `enhanced`): the bound leaves a loaded
        // machine room; the benchmark, not this test, measures the speed.
        let bound = if tier == OsSignals::None { 1000.0 } else { 250.0 };
        assert!(resume <= bound, "{tier:?}: data on the new address after {resume} ms");
        assert_delivered_or_shed(&format!("{tier:?}"), r, 0.98, 0.02);
    });
}

#[test]
fn usb_reattach_under_every_tier_keeps_the_link_identity() {
    every_tier("usb-reattach", 12.0, true, |tier, r| {
        let e = &r.analysis.events[0];
        let resume =
            e.resume_ms.unwrap_or_else(|| panic!("{tier:?}: the re-attached link never carried data"));
        // Measured ~1.0-1.1 s: probe, then warm-up, decided in band.
        assert!(resume <= 4000.0, "{tier:?}: data on the re-attached link after {resume} ms");
        assert_delivered_or_shed(&format!("{tier:?}"), r, 0.98, 0.02);
        // Same link: same id and `interface` label, now on wwan2.
        let o = r.observation.as_ref().expect("observed");
        let link = &o.last_status["links"][2];
        assert_eq!(link["interface"], "lnk2", "{tier:?}: {link}");
        assert_eq!(link["os"]["device"], "wwan2", "{tier:?}: {link}");
        assert_eq!(link["state"], "live", "{tier:?}: {link}");
        let scrape = &o.last_scrape;
        assert!(
            scrape.lines().any(|l| l.starts_with("strata_link_device_info")
                && l.contains("link=\"2\"")
                && l.contains("interface=\"lnk2\"")
                && l.contains("device=\"wwan2\"")),
            "{tier:?}: no device info for link 2 on wwan2"
        );
        let states: Vec<_> = r.state_changes.iter().filter(|c| c.link == 2).map(|c| c.to.as_str()).collect();
        let back = states.iter().rposition(|s| *s == "probe").expect("probed again");
        assert_eq!(&states[back..], ["probe", "warm", "live"], "{tier:?}: passes warm-up: {states:?}");
    });
}

#[test]
fn carrier_down_under_every_tier() {
    // 18 s: the carrier returns at 10 s, and in band (`none`) re-admission
    // takes 3-4 s more; at 14 s one CI run ended before the link was back.
    every_tier("carrier-down", 18.0, false, |tier, r| {
        let e = &r.analysis.events[0];
        let resume = e.resume_ms.unwrap_or_else(|| panic!("{tier:?}: the link never carried data again"));
        assert!(resume <= 5000.0, "{tier:?}: data on the link {resume} ms after the carrier returned");
        if tier >= OsSignals::Netlink {
            // Demoted the moment the carrier went: nothing sent into it. The
            // edge may shed packets as late while the other links take the
            // dead one's share (their rates are lower bounds until they are
            // seen full); those are counted, not lost in the network.
            let lost = e.lost_packets.saturating_sub(shed_as_late(r));
            assert!(lost <= 30, "{tier:?}: {lost} lost ({} in all)", e.lost_packets);
        }
        let shed = shed_as_late(r) as f64 / sent(&r.analysis) as f64;
        let delivered = r.analysis.delivered_ratio;
        assert!(delivered + shed >= 0.98, "{tier:?}: delivered {delivered} + shed as late {shed}");
    });
}

#[test]
fn nat_rebind_under_every_tier() {
    every_tier("nat-rebind", 12.0, false, |tier, r| {
        // Shed as late: 33-58 of 16 260 packets in release runs on a loaded
        // machine, 186 before a rising delay on a link that keeps up stopped
        // cutting its rate; none lost in the network.
        assert_delivered_or_shed(&format!("{tier:?}"), r, 0.995, 0.02);
        let lost = r.analysis.events[0].lost_packets.saturating_sub(shed_as_late(r));
        assert!(lost <= 50, "{tier:?}: {lost} lost beyond what was shed: {:?}", r.analysis.events);
    });
}

#[test]
fn race_lap() {
    let a = play("race-lap", 15.0);
    assert!(a.delivered_ratio >= 0.98, "delivered {}", a.delivered_ratio);
    assert!(a.within_150ms >= 0.95, "within 150 ms {}", a.within_150ms);
}

#[test]
fn status_and_metrics_agree_with_the_emulator_during_a_scenario() {
    let r = play_full("steady-asymmetric", 10.0, Control::Adaptive, true);
    let o = r.observation.expect("observed");
    // Every query answered: status --json every 100 ms, /metrics every second.
    assert!(
        o.status_calls >= 50 && o.status_ok == o.status_calls,
        "{}/{} status",
        o.status_ok,
        o.status_calls
    );
    // ... by a daemon that is there: the lab starts observing once the
    // daemon said READY=1, so its socket exists and accepts from the first
    // call (waiting for a log line instead, early calls found no socket —
    // a start-up race this assertion used to let pass unseen).
    assert!(
        o.status_fallbacks.iter().all(|(_, reason)| reason.contains("did not answer")),
        "status fell back to the pins for another reason than time: {:?}",
        o.status_fallbacks
    );
    // ... nearly all in time. The client gives the daemon 80 ms; on a
    // loaded 2-core CI host a rare answer can miss that and come from the
    // pins instead (still a document, and labelled so), so allow 5 %. Not a
    // start-up race (the daemon is ready before the first call): the
    // daemon's two runtime threads, the emulator's and the traffic's
    // threads and the status client itself share two cores.
    let missed = o.status_fallbacks.iter().filter(|(_, reason)| reason.contains("did not answer")).count();
    assert!(
        missed as u64 * 20 <= o.status_calls,
        "{missed} of {} status answers missed the daemon: {:?}",
        o.status_calls,
        o.status_fallbacks
    );
    if !o.status_fallbacks.is_empty() {
        eprintln!("status answered from the pins (ms into the run, why): {:?}", o.status_fallbacks);
    }
    assert!(o.scrapes >= 5 && o.scrapes_ok == o.scrapes, "{}/{} scrapes", o.scrapes_ok, o.scrapes);
    let mut times = o.status_us.clone();
    times.sort_unstable();
    let at = |q: f64| strata_common::stats::percentile(&times, q * 100.0);
    eprintln!(
        "status answers: {} in {:?} µs p50, {:?} p99, {:?} max",
        times.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    let slowest = o.status_us.iter().max().copied().unwrap_or(0);
    // 4 ms typical (docs/BENCHMARKS.md); generous for a loaded CI host.
    assert!(slowest < 1_000_000, "a status answer took {slowest} µs");
    let scrape = prometheus_parse::Scrape::parse(o.last_scrape.lines().map(|l| Ok(l.to_string()))).unwrap();
    for (i, emulated) in r.link_stats.iter().enumerate() {
        let link = &o.last_status["links"][i];
        let (data, control) = (link["tx_bytes"].as_u64().unwrap(), link["probe_tx_bytes"].as_u64().unwrap());
        // What the edge says it sent on the link, data and probes, is what the
        // link's emulator was offered. Not what it delivered: at 85 % load a
        // loaded CI host lets the emulated queue overflow now and then (one
        // CI run: 2.7 % of link 1's bytes dropped at its buffer), and those
        // bytes were sent all the same.
        let offered = emulated.uplink.arrived_bytes as f64;
        let said = (data + control) as f64;
        eprintln!(
            "link {i}: status {said} (data {data}, probes {control}) vs emulator offered {offered}, delivered {}",
            emulated.uplink.delivered_bytes
        );
        assert!(
            (said - offered).abs() <= offered * 0.01,
            "link {i}: status {said} vs emulator offered {offered}"
        );
        let exposed = scrape
            .samples
            .iter()
            .find(|x| {
                x.metric == "strata_link_tx_bytes_total" && x.labels.get("link") == Some(&i.to_string())
            })
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v) => v,
                _ => f64::NAN,
            })
            .expect("tx bytes exposed");
        assert!(
            (exposed - data as f64).abs() <= data as f64 * 0.01,
            "link {i}: metrics {exposed} vs status {data}"
        );
    }
}

/// Real-like links: the real LTE trace beside the project where it is
/// present, else the calibrated cellular model. Checks the lab's plumbing
/// (every link played a known source, no link carried more than its trace
/// offered) with bounds any working controller meets; what today's
/// controller achieves is in docs/BENCHMARKS.md (issue 12's "before"), and
/// its acceptance is not asserted here yet.
#[test]
fn real_links_70_plays_the_real_trace_or_its_fallback() {
    let r = play_full("real-links-70", 15.0, Control::Adaptive, false);
    assert_eq!(r.trace_sources.len(), 3);
    let mut carried = 0;
    for (i, (source, stats)) in r.trace_sources.iter().zip(&r.link_stats).enumerate() {
        eprintln!("link {i}: {}", source.description);
        let known = source.model == "file" || (source.model == "cellular" && source.fallback_for.is_some());
        assert!(known, "link {i} played {source:?}");
        // Warm-up, traffic and drain, plus a second of slack for late stops.
        let run_ns = (runner::WARMUP + runner::DRAIN).as_nanos() as u64 + 16_000_000_000;
        let offered = r.traces[i].capacity_bytes(0, run_ns);
        assert!(
            stats.uplink.delivered_bytes <= offered + 1500,
            "link {i} carried {} bytes, its trace offered {offered}",
            stats.uplink.delivered_bytes
        );
        carried += stats.uplink.delivered_bytes;
    }
    assert!(carried > 0, "no link carried anything");
    let a = &r.analysis;
    eprintln!(
        "real-links-70 (15 s, adaptive): delivered {:.3}, within 150 ms {:.3}, OWD p99 {:.0} ms",
        a.delivered_ratio, a.within_150ms, a.owd_ms.p99
    );
    assert!(a.delivered_ratio >= 0.3, "delivered {}", a.delivered_ratio);
}

/// A link's capacity steps 2 → 20 → 2 Mbit/s: the report measures how the
/// link followed (issue 12's acceptance numbers), recorded here for today's
/// controller without asserting them yet.
#[test]
fn capacity_step_is_measured() {
    let r = play_full("capacity-step", 22.0, Control::Adaptive, false);
    let steps = &r.analysis.capacity_steps;
    assert_eq!(steps.len(), 2, "{steps:?}");
    let (up, down) = (&steps[0], &steps[1]);
    eprintln!("capacity steps (adaptive, debug build): {steps:#?}");
    assert!((up.from_mbit_s - 2.0).abs() < 0.1 && up.to_mbit_s == 20.0, "{up:?}");
    assert!((down.from_mbit_s - 20.0).abs() < 0.2 && down.to_mbit_s == 2.0, "{down:?}");
    // A link never carries more than its capacity (the burst of a window
    // may slightly exceed the mean).
    assert!(up.carried_share_after_1500ms <= 1.05, "{up:?}");
    // The queue is bounded by the link's buffer: 256 KiB at 2 Mbit/s ≈ 1.05 s.
    assert!(down.queue_delay_after_300ms_ms <= 1_200.0, "{down:?}");
}

/// One IPv6-only carrier among IPv4 ones (issue 16): the scenario's video
/// and telemetry, edge to hub, are delivered, and the IPv6 link carries its
/// share, to the hub's IPv6 address.
#[test]
fn ipv6_carrier() {
    let r = play_full("ipv6-carrier", 10.0, Control::Static, false);
    check_ipv6_link(&r);
    let a = &r.analysis;
    assert!(a.delivered_ratio >= 0.999, "delivered {}", a.delivered_ratio);
    assert!(a.owd_ms.p99 <= 300.0, "p99 {}", a.owd_ms.p99);
}

/// The same under adaptive control: the IPv6 link is probed from an IPv6
/// socket bound to its address, answered by the hub's dual-stack socket, and
/// admitted like the others. Delivery with the margin of the other adaptive
/// runs (a link admitted late on a loaded machine queues: 97.9-100 %).
#[test]
fn ipv6_carrier_adaptive() {
    let r = play_full("ipv6-carrier", 10.0, Control::Adaptive, false);
    check_ipv6_link(&r);
    let live: Vec<u8> = r.state_changes.iter().filter(|c| c.to == "live").map(|c| c.link).collect();
    assert!(live.contains(&1), "the IPv6 link never went live: {:?}", r.state_changes);
    assert!(r.analysis.delivered_ratio >= 0.95, "delivered {}", r.analysis.delivered_ratio);
}

/// The IPv6 link (1) reaches the hub over IPv6 and carries at least a
/// tenth of what the links carried.
fn check_ipv6_link(r: &runner::RunResult) {
    let carried: Vec<u64> = r.link_stats.iter().map(|l| l.uplink.delivered_bytes).collect();
    let total: u64 = carried.iter().sum();
    eprintln!(
        "ipv6-carrier (10 s, {:?}): delivered {:.4}, per link {carried:?}",
        r.control, r.analysis.delivered_ratio
    );
    assert!(carried[1] as f64 >= 0.1 * total as f64, "the IPv6 link carried too little: {carried:?}");
    let peers: Vec<&str> =
        r.edge_stats["links"].as_array().unwrap().iter().filter_map(|l| l["peer"].as_str()).collect();
    assert_eq!(
        peers.get(1).copied(),
        Some("[2001:db8:ff::2]:7400"),
        "link 1 reaches the hub over IPv6: {peers:?}"
    );
}

/// The same links, both directions at once: an application on the edge
/// streams to one on the hub, which echoes every datagram back, so the hub
/// sends over every link it learned — to the IPv6 link's endpoint in IPv6,
/// from its own IPv6 address. At least 99.9 % arrive each way.
#[test]
fn ipv6_carrier_in_both_directions() {
    use strata_ctl::dataplane::stats::read_pinned;
    use strata_lab::{
        scenario::stage::Stage,
        strata::{EDGE_TUNNEL_ADDR, HUB_TUNNEL_ADDR},
        traffic::Stream,
    };
    strata_lab::require_root("scenario tests create namespaces and run the daemons");
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut scenario = Scenario::load(&root.join("tests/scenarios/ipv6-carrier.toml")).unwrap();
    scenario.duration_s = 15.0;
    scenario.traffic.clear();
    let out = root.join("target/lab-ci/ipv6-carrier-echo");
    // No events are timed from traffic start here, so the daemons get more
    // than the scenarios' 3 s to come up (a loaded CI host took 3.3 s).
    let warmup = std::time::Duration::from_secs(6);
    let stage = Stage::start(&scenario, Path::new(BINARY), Control::Static, &out, warmup).unwrap();
    stage.wait_warmup();
    let count = 10_000;
    let report = Stream {
        from_ns: stage.lab.edge_ns(),
        from: std::net::SocketAddr::from((EDGE_TUNNEL_ADDR, 0)),
        to_ns: stage.lab.hub_ns(),
        to: std::net::SocketAddr::from((HUB_TUNNEL_ADDR, 7100)),
        count,
        payload_len: 1000,
        pps: 1000,
        echo: true,
        idle_timeout: std::time::Duration::from_secs(3),
    }
    .run()
    .expect("stream through the tunnel");
    let edge = read_pinned(&stage.tunnel.edge.pin_dir()).unwrap();
    let hub = read_pinned(&stage.tunnel.hub.pin_dir()).unwrap();
    let stopped = stage.stop().unwrap();
    let (up, down) = (report.delivered.received, report.echoed.as_ref().map_or(0, |e| e.received));
    eprintln!(
        "ipv6-carrier echo: sent {count}, delivered {up}, echoed {down}\nedge:\n{}hub:\n{}",
        edge.table(&[]),
        hub.table(&[])
    );
    assert_eq!(report.sent, count);
    assert_eq!(hub.links[1].peer, "[2001:db8:2::2]:7400", "the hub learned link 1's IPv6 endpoint");
    for (side, s) in [("edge", &edge), ("hub", &hub)] {
        for id in 0..3 {
            assert!(
                s.links[id].tx_packets >= count / 10,
                "{side} sent {} packets on link {id}",
                s.links[id].tx_packets
            );
        }
    }
    assert!(up as f64 >= 0.999 * count as f64, "edge → hub delivered {up} of {count}");
    assert!(
        down as f64 >= 0.999 * count as f64,
        "hub → edge delivered {down} of {count}\n{}",
        stopped.hub_log
    );
}
