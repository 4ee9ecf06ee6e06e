//! What operators see of running daemons in a lab: the Prometheus endpoint,
//! scraped over HTTP and read with an independent parser of the text format
//! (`prometheus-parse`), and `strata-ctl status` (the real binary), with the
//! daemon up and after it died. Needs root (namespaces, BPF).

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use prometheus_parse::{Scrape, Value};
use strata_ctl::dataplane::stats::read_pinned;
use strata_lab::{
    Lab, in_netns,
    strata::{
        Control, Daemon, EDGE_TUNNEL_ADDR, EdgeSetup, HUB_TUNNEL_ADDR, METRICS_ADDR, Tunnel, edge_to_hub,
    },
    traffic::Stream,
};

const BINARY: &str = env!("CARGO_BIN_EXE_strata-ctl");

/// `GET path` on the metrics address inside namespace `ns`: (status line, body).
fn get(ns: &str, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: strata\r\n\r\n");
    let response = in_netns(ns, move || {
        let mut s = TcpStream::connect(METRICS_ADDR.parse::<SocketAddr>()?)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(request.as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .expect("HTTP request");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

fn scrape(ns: &str) -> Scrape {
    let (status, body) = get(ns, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid exposition")
}

/// Value of every sample of `name` by the value of `label`.
fn by_label(s: &Scrape, name: &str, label: &str) -> BTreeMap<String, f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .map(|x| {
            let v = match x.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            (x.labels.get(label).unwrap_or_default().to_string(), v)
        })
        .collect()
}

#[test]
fn a_running_daemon_exposes_the_kernels_counters_and_the_controllers_view() {
    strata_lab::require_root("metrics tests create namespaces and load BPF");
    let lab = Lab::up(&Lab::unique_prefix(), 3).expect("lab");
    let workdir = std::env::temp_dir().join(format!("strata-metrics-{}", lab.prefix()));
    let tunnel =
        Tunnel::start_with(&lab, std::path::Path::new(BINARY), &[4, 4, 4], Control::Adaptive, &workdir)
            .expect("daemons");

    // Every link probed, warmed and admitted.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states = scrape(&lab.edge_ns());
        let live_links = states
            .samples
            .iter()
            .filter(|x| x.metric == "strata_link_state" && x.labels.get("state") == Some("live"))
            .filter(|x| matches!(x.value, Value::Gauge(v) if v == 1.0))
            .count();
        if live_links == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "links not live after 20 s:\n{}",
            get(&lab.edge_ns(), "/metrics").1
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let report = Stream { idle_timeout: Duration::from_secs(3), ..edge_to_hub(&lab, 9000, 5000, 2000) }
        .run()
        .expect("traffic");
    assert_eq!(report.delivered.received, 5000);

    // Kernel counters: the exposition's and the pinned maps' agree exactly
    // once traffic has stopped (probes keep flowing, so allow their bytes).
    let edge = scrape(&lab.edge_ns());
    let pinned = read_pinned(&tunnel.edge.pin_dir()).expect("pinned maps");
    let tx = by_label(&edge, "strata_link_tx_bytes_total", "link");
    for link in &pinned.links[..3] {
        let exposed = tx[&link.id.to_string()];
        let kernel = link.tx_bytes as f64;
        assert!((exposed - kernel).abs() <= kernel * 0.01, "link {}: {exposed} vs {kernel}", link.id);
    }
    let total: f64 = tx.values().sum();
    assert!(total >= 5000.0 * 1048.0, "{total} bytes for 5000 datagrams of 1048 outer bytes");
    let ifaces: Vec<String> = edge
        .samples
        .iter()
        .filter(|x| x.metric == "strata_link_tx_bytes_total")
        .map(|x| x.labels.get("interface").unwrap_or_default().to_string())
        .collect();
    assert_eq!(ifaces, ["lnk0", "lnk1", "lnk2"], "stable link labels carry the interface");
    let drops = by_label(&edge, "strata_drops_total", "reason");
    assert!(
        drops.contains_key("no_link") && drops.contains_key("duplicate"),
        "every reason is exposed: {drops:?}"
    );

    // The data plane's own cost, from the kernel's BPF statistics.
    assert_eq!(by_label(&edge, "strata_program_stats_enabled", "")[""], 1.0);
    let runs = by_label(&edge, "strata_program_runs_total", "program");
    assert!(runs["strata_tunnel_egress"] >= 5000.0, "{runs:?}");
    let secs = by_label(&edge, "strata_program_run_seconds_total", "program");
    let per_run = secs["strata_tunnel_egress"] / runs["strata_tunnel_egress"];
    assert!(per_run > 0.0 && per_run < 1e-4, "{per_run} s per egress run");
    for (program, n) in &runs {
        eprintln!("{program}: {:.0} ns per run over {n} runs", secs[program] / n * 1e9);
    }

    // The controller's view, in base units.
    let rtt = edge
        .samples
        .iter()
        .filter(|x| x.metric == "strata_link_rtt_seconds" && x.labels.get("quantile") == Some("0.5"))
        .count();
    assert_eq!(rtt, 3, "a median round trip per link");
    for x in edge.samples.iter().filter(|x| x.metric == "strata_link_rtt_seconds") {
        assert!(matches!(x.value, Value::Gauge(v) if v > 0.0 && v < 1.0), "{x:?}");
    }
    let transitions = edge
        .samples
        .iter()
        .filter(|x| {
            x.metric == "strata_link_state_transitions_total" && x.labels.get("state") == Some("live")
        })
        .count();
    assert_eq!(transitions, 3);
    let up = by_label(&edge, "strata_controller_up", "mode");
    assert_eq!(up.get("adaptive"), Some(&1.0));
    assert!(by_label(&edge, "strata_weight_updates_total", "")[""] >= 20.0);

    // The hub serves too; it has no controller.
    let hub = scrape(&lab.hub_ns());
    let rx: f64 = by_label(&hub, "strata_link_rx_packets_total", "link").values().sum();
    assert!(rx >= 5000.0, "hub received {rx}");
    assert_eq!(by_label(&hub, "strata_controller_up", "mode").get("static"), Some(&0.0));

    // Rate-limit the links: their qdiscs' drops show under the qdisc's kind.
    for i in 0..3 {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &lab.edge_ns(), "tc", "qdisc", "replace", "dev", &Lab::link_ifname(i)])
            .args(["root", "tbf", "rate", "1mbit", "burst", "4kb", "limit", "16kb"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let _ = edge_to_hub(&lab, 9001, 400, 4000).run();
    let limited = scrape(&lab.edge_ns());
    assert_eq!(by_label(&limited, "strata_qdisc_stats_readable", "")[""], 1.0);
    // Per link (the burst may go to one link only): some tbf must have dropped.
    let drops = by_label(&limited, "strata_link_qdisc_drops_total", "link");
    let kinds = by_label(&limited, "strata_link_qdisc_drops_total", "qdisc");
    assert!(
        kinds.contains_key("tbf") && drops.values().sum::<f64>() > 0.0,
        "qdisc drops: {drops:?} {kinds:?}"
    );
    eprintln!("qdisc drops after a 4 Mbit/s burst into 1 Mbit/s links: {drops:?}");
    // The same seen from the kernel's side: the packets waited on this host
    // (the histogram of a rate-limited link rises) and were dropped with the
    // qdisc's reason.
    assert_eq!(by_label(&limited, "strata_kernel_sampling_enabled", "")[""], 1.0);
    let waited: Vec<_> = limited
        .samples
        .iter()
        .filter(|x| x.metric == "strata_link_host_queue_delay_seconds")
        .filter_map(|x| match &x.value {
            Value::Histogram(h) => {
                Some(h.iter().filter(|b| b.less_than >= 0.001).map(|b| b.count).fold(0.0, f64::max))
            }
            _ => None,
        })
        .collect();
    let counted = |name: &str| {
        limited
            .samples
            .iter()
            .filter(|x| x.metric == name)
            .map(|x| match &x.value {
                Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
                _ => 0.0,
            })
            .fold(0.0, f64::max)
    };
    eprintln!(
        "host queue delay samples: {waited:?}, largest count {}",
        counted("strata_link_host_queue_delay_seconds")
    );
    let kdrops = limited
        .samples
        .iter()
        .filter(|x| x.metric == "strata_link_kernel_drops_total")
        .map(|x| (x.labels.get("reason").unwrap_or_default().to_string(), x.value.clone()))
        .collect::<Vec<_>>();
    eprintln!("kernel drops: {kdrops:?}");
    assert!(kdrops.iter().any(|(r, _)| r == "QDISC_DROP"), "{kdrops:?}");
    let slow =
        limited.samples.iter().filter(|x| x.metric == "strata_link_host_queue_delay_seconds").any(|x| {
            matches!(&x.value, Value::Histogram(h) if {
                let total = h.iter().map(|b| b.count).fold(0.0, f64::max);
                let fast = h.iter().filter(|b| b.less_than <= 0.001).map(|b| b.count).fold(0.0, f64::max);
                total > fast
            })
        });
    assert!(slow, "some packets waited over 1 ms on a 1 Mbit/s link");

    // Every metric the shipped Grafana board queries exists (the kernel's
    // drop series only once there were drops, hence both scrapes; a
    // histogram is queried by its `_bucket` series). The modem's series
    // need ModemManager: tests/advisors.rs checks those.
    let board =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/strata.json")).unwrap();
    let exposed: std::collections::BTreeSet<&str> =
        edge.samples.iter().chain(&limited.samples).map(|x| x.metric.as_str()).collect();
    for name in board
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("strata_") && !w.starts_with("strata_link_modem_"))
    {
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(
            exposed.contains(name) || exposed.contains(base),
            "the dashboard queries {name}, which is not exposed"
        );
    }

    // Anything but GET /metrics is refused plainly.
    assert_eq!(get(&lab.edge_ns(), "/").0, "HTTP/1.1 404 Not Found");

    // `strata-ctl status --json`: the daemon's answer agrees with its maps.
    let edge_name = tunnel.edge.name().to_string();
    let started = Instant::now();
    let status = status_json(&edge_name);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "status took {took:?}");
    assert_eq!(status["controller_running"], true);
    assert_eq!(status["mode"], "adaptive");
    let pinned = read_pinned(&tunnel.edge.pin_dir()).expect("pinned maps");
    for (i, link) in status["links"].as_array().expect("links").iter().enumerate() {
        let (shown, kernel) = (link["tx_bytes"].as_u64().unwrap() as f64, pinned.links[i].tx_bytes as f64);
        assert!((shown - kernel).abs() <= kernel * 0.01, "link {i}: {shown} vs {kernel}");
        assert_eq!(link["state"], "live");
        assert_eq!(link["interface"], format!("lnk{i}"));
    }
    // The kernel's drops per link, as status shows them, are the exposition's.
    let exposed_drops: BTreeMap<String, f64> = limited
        .samples
        .iter()
        .filter(|x| x.metric == "strata_link_kernel_drops_total")
        .fold(BTreeMap::new(), |mut m, x| {
            if let Value::Counter(v) = x.value {
                *m.entry(x.labels.get("link").unwrap_or_default().to_string()).or_default() += v;
            }
            m
        });
    for link in status["links"].as_array().expect("links") {
        let shown: u64 = link["kernel_drops"]
            .as_array()
            .expect("sampling runs, so status knows the drops")
            .iter()
            .map(|r| r[1].as_u64().unwrap_or(0))
            .sum();
        let exposed = exposed_drops.get(&link["id"].to_string()).copied().unwrap_or(0.0);
        // Read a moment after the scrape: never fewer, and only what a probe
        // train into a 1 Mbit/s link could add since.
        let shown = shown as f64;
        assert!(
            shown >= exposed && shown <= exposed * 1.1 + 20.0,
            "link {}: {shown} vs {exposed}",
            link["id"]
        );
    }
    let table = status_text(&edge_name);
    eprintln!("{table}");
    assert!(table.contains("controller running (adaptive)") && table.contains("lnk2"), "{table}");

    // The daemon dies: status still reads the kernel's counters, and says so.
    let Tunnel { hub, edge, .. } = tunnel;
    edge.kill().expect("kill the edge daemon");
    let down = status_json(&edge_name);
    assert_eq!(down["controller_running"], false);
    assert!(down["total_tx_bytes"].as_u64().unwrap() >= 5000 * 1048);
    assert!(status_text(&edge_name).contains("CONTROLLER DOWN"));
    Daemon::remove_leftovers(&edge_name);
    // Neither daemon nor pins: a plain error.
    let none = std::process::Command::new(BINARY).args(["status", "--name", &edge_name]).output().unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no instance"), "{none:?}");

    hub.stop().expect("clean stop");
    lab.down().expect("lab down");
}

/// Delivery classes end to end: both daemons class UDP to port 9100 as
/// critical (`[[classes]]`), everything else by DSCP (0 here: best effort);
/// a stream each way per class moves the sender's sent and the receiver's
/// delivered counters of that class, in `status --json` and in the metrics;
/// a reload with one more rule moves another class.
#[test]
fn per_class_counters_move_both_ways_with_the_configured_classes() {
    strata_lab::require_root("metrics tests create namespaces and load BPF");
    let lab = Lab::up(&Lab::unique_prefix(), 2).expect("lab");
    let workdir = std::env::temp_dir().join(format!("strata-classes-{}", lab.prefix()));
    let setup = EdgeSetup {
        classes: "\n[[classes]]\nclass = \"critical\"\nprotocol = \"udp\"\nport = 9100\n".into(),
        ..EdgeSetup::from(Control::Static)
    };
    let tunnel =
        Tunnel::start_with(&lab, std::path::Path::new(BINARY), &[1, 1], setup, &workdir).expect("daemons");
    let (edge_name, hub_name) = (tunnel.edge.name().to_string(), tunnel.hub.name().to_string());

    let up = |port, count| edge_to_hub(&lab, port, count, 2000).run().expect("traffic").delivered.received;
    let (critical_up, other_up) = (up(9100, 300), up(9101, 200));
    // Back from the hub, to the endpoints it learned from the traffic above.
    let down = |port, count| {
        Stream {
            from_ns: lab.hub_ns(),
            from: SocketAddr::from((HUB_TUNNEL_ADDR, 0)),
            to_ns: lab.edge_ns(),
            to: SocketAddr::from((EDGE_TUNNEL_ADDR, port)),
            ..edge_to_hub(&lab, port, count, 2000)
        }
        .run()
        .expect("traffic")
        .delivered
        .received
    };
    let (critical_down, other_down) = (down(9100, 150), down(9101, 100));
    assert!(critical_up > 0 && other_up > 0 && critical_down > 0 && other_down > 0);

    let class = |doc: &serde_json::Value, class: &str, field: &str| {
        doc["classes"].as_array().expect("classes").iter().find(|c| c["class"] == class).expect(class)[field]
            .as_u64()
            .unwrap()
    };
    let (edge, hub) = (status_json(&edge_name), status_json(&hub_name));
    eprintln!("edge classes {}\nhub classes {}", edge["classes"], hub["classes"]);
    // Every datagram sent was classed and sent; what arrived was delivered
    // under the sender's class (the receiver's own rule is not consulted).
    // Best effort may hold more: whatever else the tunnel device sends (an
    // IPv6 router solicitation) is best effort too.
    assert_eq!(class(&edge, "critical", "tx_packets"), 300);
    assert!(class(&edge, "best_effort", "tx_packets") >= 200);
    assert_eq!(class(&edge, "video", "tx_packets"), 0);
    assert_eq!(class(&hub, "critical", "rx_packets"), critical_up);
    assert!(class(&hub, "best_effort", "rx_packets") >= other_up);
    assert_eq!(class(&hub, "critical", "tx_packets"), 150);
    assert!(class(&hub, "best_effort", "tx_packets") >= 100);
    assert_eq!(class(&edge, "critical", "rx_packets"), critical_down);
    assert!(class(&edge, "best_effort", "rx_packets") >= other_down);
    // Inner bytes: 1000-byte payloads in UDP/IPv4.
    assert_eq!(class(&edge, "critical", "tx_bytes"), 300 * 1028);
    assert!(status_text(&edge_name).contains("class critical"), "{}", status_text(&edge_name));

    // The same in the metrics, with the class label.
    let hub_metrics = scrape(&lab.hub_ns());
    let delivered = by_label(&hub_metrics, "strata_class_delivered_packets_total", "class");
    assert_eq!(delivered.get("critical"), Some(&(critical_up as f64)), "{delivered:?}");
    assert!(delivered.get("best_effort").is_some_and(|n| *n >= other_up as f64));
    assert_eq!(delivered.len(), 3, "one series per class: {delivered:?}");
    let sent = by_label(&scrape(&lab.edge_ns()), "strata_class_sent_packets_total", "class");
    assert_eq!(sent.get("critical"), Some(&300.0), "{sent:?}");

    // A reload rewrites the kernel's table: port 9101 is now video.
    let config = workdir.join("edge.toml");
    let text = std::fs::read_to_string(&config).expect("the edge's configuration");
    let video = "\n[[classes]]\nclass = \"video\"\nprotocol = \"udp\"\nport = 9101\n";
    std::fs::write(&config, format!("{text}{video}")).expect("writing");
    let out = std::process::Command::new(BINARY).args(["reload", "--name", &edge_name]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let now_video = up(9101, 100);
    let edge = status_json(&edge_name);
    assert_eq!(class(&edge, "video", "tx_packets"), 100, "after the reload");
    assert_eq!(class(&status_json(&hub_name), "video", "rx_packets"), now_video);

    tunnel.stop().expect("clean stop");
    lab.down().expect("lab down");
    let _ = std::fs::remove_dir_all(&workdir);
}

fn status_json(name: &str) -> serde_json::Value {
    let out = std::process::Command::new(BINARY).args(["status", "--json", "--name", name]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

fn status_text(name: &str) -> String {
    let out = std::process::Command::new(BINARY).args(["status", "--name", name]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
