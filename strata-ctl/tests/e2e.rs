//! End to end in a lab: applications on the edge and the hub talk through the
//! bonded tunnel over three NATed carriers, with the real `strata-ctl` daemons
//! and the real kernel data path. Needs root (namespaces, BPF).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use strata_ctl::dataplane::stats::{Snapshot, read_pinned};
use strata_lab::{
    Lab,
    strata::{EDGE_TUNNEL_ADDR, HUB_TUNNEL_ADDR, Tunnel},
    traffic::Stream,
};

const BINARY: &str = env!("CARGO_BIN_EXE_strata-ctl");
const APP_PORT: u16 = 9000;

fn require_root() {
    strata_lab::require_root("end-to-end tests create namespaces and load BPF");
}

fn workdir(lab: &Lab) -> PathBuf {
    std::env::temp_dir().join(format!("strata-e2e-{}", lab.prefix()))
}

/// Transmitted packets of each edge link interface, from the kernel's own
/// interface counters (independent of the data plane's maps).
fn interface_tx_packets(lab: &Lab) -> Vec<u64> {
    (0..lab.links())
        .map(|i| {
            let out = std::process::Command::new("ip")
                .args(["-j", "-s", "-n", &lab.edge_ns(), "link", "show", "dev", &Lab::link_ifname(i)])
                .output()
                .expect("ip link show");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
            v[0]["stats64"]["tx"]["packets"].as_u64().expect("tx packets")
        })
        .collect()
}

struct Outcome {
    delivered: u64,
    duplicates: u64,
    echoed: u64,
    edge: Snapshot,
    hub: Snapshot,
    interface_tx: Vec<u64>,
}

/// Sends `count` datagrams from an application on the edge to one on the hub,
/// which echoes each back; returns what both sides and the kernel saw.
fn exchange(lab: &Lab, tunnel: &Tunnel, count: u64, pps: u64) -> Outcome {
    let tx_before = interface_tx_packets(lab);
    let report = Stream {
        from_ns: lab.edge_ns(),
        from: SocketAddr::from((EDGE_TUNNEL_ADDR, 0)),
        to_ns: lab.hub_ns(),
        to: SocketAddr::from((HUB_TUNNEL_ADDR, APP_PORT)),
        count,
        payload_len: 200,
        pps,
        echo: true,
        idle_timeout: Duration::from_secs(5),
    }
    .run()
    .expect("stream through the tunnel");
    assert_eq!(report.sent, count);
    let delivered = report.delivered;
    let echoes = report.echoed.expect("echoes");

    let tx_after = interface_tx_packets(lab);
    let edge = read_pinned(&tunnel.edge.pin_dir()).expect("edge counters");
    let hub = read_pinned(&tunnel.hub.pin_dir()).expect("hub counters");
    eprintln!(
        "delivered {} of {count} (duplicates {}), echoed {}\nedge:\n{}hub:\n{}hub's kernel, UDP and backlog:\n{}",
        delivered.received,
        delivered.duplicates,
        echoes.received,
        edge.table(&[]),
        hub.table(&[]),
        kernel_receive_counters(&lab.hub_ns())
    );
    Outcome {
        delivered: delivered.received,
        duplicates: delivered.duplicates,
        echoed: echoes.received,
        edge,
        hub,
        interface_tx: tx_after.iter().zip(&tx_before).map(|(a, b)| a - b).collect(),
    }
}

/// Where a packet the hub's data plane delivered can still be lost before
/// the application reads it: the UDP socket (`RcvbufErrors`, `InErrors` in
/// /proc/net/snmp of the namespace) or the per-CPU backlog a redirect into
/// the tunnel device goes through (`/proc/net/softnet_stat`, column 2,
/// host-wide). Printed with every exchange, so a run that loses packets on
/// a loaded host says where.
fn kernel_receive_counters(ns: &str) -> String {
    let snmp = strata_lab::netns_command(ns, "cat")
        .arg("/proc/net/snmp")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("Udp:"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_else(|e| format!("(snmp unreadable: {e})"));
    let backlog_drops: u64 = std::fs::read_to_string("/proc/net/softnet_stat")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter_map(|d| u64::from_str_radix(d, 16).ok())
                .sum()
        })
        .unwrap_or(0);
    format!("{snmp}\nbacklog drops since boot (all CPUs): {backlog_drops}\n")
}

fn with_tunnel(weights: &[u32], test: impl FnOnce(&Lab, &Tunnel)) {
    with_tunnel_controlled(weights, strata_lab::strata::Control::Static, test);
}

fn with_tunnel_controlled(
    weights: &[u32],
    control: strata_lab::strata::Control,
    test: impl FnOnce(&Lab, &Tunnel),
) {
    with_tunnel_setup(weights, control.into(), test);
}

fn with_tunnel_setup(
    weights: &[u32],
    setup: strata_lab::strata::EdgeSetup,
    test: impl FnOnce(&Lab, &Tunnel),
) {
    require_root();
    let lab = Lab::up(&Lab::unique_prefix(), weights.len()).expect("lab up");
    let dir = workdir(&lab);
    let tunnel = Tunnel::start_with(&lab, Path::new(BINARY), weights, setup, &dir).expect("start strata");
    test(&lab, &tunnel);
    let (edge_log, hub_log) = tunnel.stop().expect("clean shutdown");
    assert!(edge_log.contains("stopped") && hub_log.contains("stopped"));
    for name in [format!("{}-edge", lab.prefix()), format!("{}-hub", lab.prefix())] {
        assert!(!Path::new("/sys/fs/bpf/strata").join(&name).exists(), "{name} left pinned maps");
    }
    lab.down().expect("lab down");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hundred_thousand_packets_over_three_links_weighted_one_two_three() {
    with_tunnel(&[1, 2, 3], |lab, tunnel| {
        const N: u64 = 100_000;
        let o = exchange(lab, tunnel, N, 40_000);
        assert_eq!(o.delivered, N, "zero loss edge → hub");
        assert_eq!(o.duplicates, 0, "no duplicate delivered");
        assert_eq!(o.echoed, N, "every reply came back hub → edge");

        // Shares by the data plane's counters and by the interfaces' own.
        let total: u64 = o.edge.links[..3].iter().map(|l| l.tx_packets).sum();
        let iface_total: u64 = o.interface_tx.iter().sum();
        for (i, weight) in [1.0, 2.0, 3.0].into_iter().enumerate() {
            let want = weight / 6.0;
            let share = o.edge.links[i].tx_packets as f64 / total as f64;
            let iface_share = o.interface_tx[i] as f64 / iface_total as f64;
            assert!((share / want - 1.0).abs() <= 0.05, "link {i}: share {share:.4}, weight share {want:.4}");
            assert!(
                (iface_share / want - 1.0).abs() <= 0.05,
                "link {i}: interface share {iface_share:.4}, weight share {want:.4}"
            );
            // The hub received on each link what the edge sent on it.
            assert_eq!(o.hub.links[i].rx_packets, o.edge.links[i].tx_packets, "link {i}");
            assert_eq!(o.hub.links[i].rx_lost, 0, "link {i} lost nothing");
        }
        // Replies used the endpoints the hub learned through each carrier's NAT.
        for i in 0..3 {
            assert_eq!(o.hub.links[i].peer, format!("{}:7400", Lab::carrier_public_addr(i)));
            assert!(o.edge.links[i].rx_packets > 0, "replies arrived on link {i}");
        }
        assert_eq!(o.edge.dropped(strata_common::drop::DropReason::Duplicate), 0);
    });
}

#[test]
fn a_link_with_weight_zero_carries_nothing() {
    with_tunnel(&[1, 0, 1], |lab, tunnel| {
        const N: u64 = 10_000;
        let o = exchange(lab, tunnel, N, 20_000);
        assert_eq!(o.delivered, N);
        assert_eq!(o.edge.links[1].tx_packets, 0, "weight 0: not a single packet");
        assert_eq!(o.hub.links[1].rx_packets, 0);
        assert!(o.interface_tx[1] < 5, "only ARP/neighbour traffic on lnk1: {}", o.interface_tx[1]);
        assert_eq!(o.edge.links[0].tx_packets + o.edge.links[2].tx_packets, N);
    });
}

#[test]
fn tcp_flows_through_the_bond() {
    // TCP builds GSO super-packets unless the tunnel device limits them
    // (gso_max_segs 1); this transfer stalls if that regresses.
    with_tunnel(&[1, 1, 1], |lab, tunnel| {
        use std::io::{Read as _, Write as _};
        const BYTES: usize = 8 << 20;
        let hub_addr = SocketAddr::from((HUB_TUNNEL_ADDR, 9100));
        // Listening (in the hub's namespace, which the socket keeps) before
        // the client connects, rather than given a 200 ms head start.
        let listener =
            strata_lab::in_netns(&lab.hub_ns(), move || Ok(std::net::TcpListener::bind(hub_addr)?))
                .expect("TCP listener");
        let server = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
            let (mut conn, _) = listener.accept()?;
            conn.set_read_timeout(Some(Duration::from_secs(20)))?;
            let mut received = Vec::new();
            conn.read_to_end(&mut received)?;
            Ok(received)
        });
        let data: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        strata_lab::in_netns(&lab.edge_ns(), move || {
            let mut conn = std::net::TcpStream::connect_timeout(&hub_addr, Duration::from_secs(5))?;
            conn.set_write_timeout(Some(Duration::from_secs(20)))?;
            conn.write_all(&sent)?;
            Ok(())
        })
        .expect("TCP client");
        let received = server.join().unwrap().expect("TCP server");
        assert!(received == data, "{} of {BYTES} bytes arrived intact", received.len());
        let edge = read_pinned(&tunnel.edge.pin_dir()).unwrap();
        assert_eq!(edge.dropped(strata_common::drop::DropReason::Gso), 0);
        assert!(edge.links[..3].iter().all(|l| l.tx_packets > 0), "all links carried the flow");
    });
}

#[test]
fn probes_reach_the_hub_controller_and_are_answered_and_foreign_sessions_are_dropped() {
    use strata_common::wire::{Fields, HEADER_LEN, Header, PacketType};
    // The unauthenticated protocol: with keys an untagged probe is dropped
    // (the handshake test checks that).
    let setup = strata_lab::strata::EdgeSetup { no_auth: true, ..Default::default() };
    with_tunnel_setup(&[1, 1], setup, |lab, tunnel| {
        // A probe from the edge over link 1 (a route just for this test: the
        // data plane itself does not use the edge's routing table).
        let status = std::process::Command::new("ip")
            .args(["-n", &lab.edge_ns(), "route", "add", "198.19.0.0/24", "via", "100.64.2.1", "dev", "lnk1"])
            .status()
            .unwrap();
        assert!(status.success());
        let session = strata_lab::strata::session_for(lab.prefix());
        let hub = SocketAddr::from((Lab::hub_addr(), 7400));
        let (reply, silence) = strata_lab::in_netns(&lab.edge_ns(), move || {
            let sock = std::net::UdpSocket::bind(SocketAddr::from((Lab::link_addr(1), 7501)))?;
            sock.set_read_timeout(Some(Duration::from_secs(3)))?;
            let probe = |session| {
                let mut b = vec![0u8; HEADER_LEN + 4];
                Header::new(Fields {
                    packet_type: PacketType::Probe,
                    flags: 0,
                    link_id: 1,
                    session,
                    global_seq: 0,
                    link_seq: 42,
                    timestamp_us: 123_456,
                })
                .encode(&mut b)
                .unwrap();
                b[HEADER_LEN..].copy_from_slice(b"ping");
                b
            };
            sock.send_to(&probe(session), hub)?;
            let mut buf = [0u8; 256];
            // The hub's feedback for the link may arrive too; wait for the reply.
            let reply = loop {
                let (n, _) = sock.recv_from(&mut buf)?;
                if matches!(Header::parse(&buf[..n], session, 8), Ok((f, _)) if f.packet_type == PacketType::ProbeReply) {
                    break buf[..n].to_vec();
                }
            };
            // Another session: dropped in the kernel, never answered. (The
            // hub's feedback for link 1 may still arrive here: it carries the
            // lab's own session.)
            let foreign = session ^ 0xffff;
            sock.send_to(&probe(foreign), hub)?;
            sock.set_read_timeout(Some(Duration::from_millis(100)))?;
            let deadline = std::time::Instant::now() + Duration::from_millis(600);
            let mut silence = true;
            while std::time::Instant::now() < deadline {
                if let Ok((n, _)) = sock.recv_from(&mut buf)
                    && Header::parse(&buf[..n], foreign, 8).is_ok()
                {
                    silence = false;
                }
            }
            Ok((reply, silence))
        })
        .expect("probe exchange");
        let (fields, payload) = Header::parse(&reply, session, 8).expect("a valid reply");
        assert_eq!(fields.packet_type, PacketType::ProbeReply);
        assert_eq!((fields.link_id, fields.link_seq, fields.timestamp_us), (1, 42, 123_456));
        assert_eq!(payload, b"ping");
        assert!(silence, "a probe of another session is not answered");
        let hub = read_pinned(&tunnel.hub.pin_dir()).unwrap();
        assert_eq!(hub.dropped(strata_common::drop::DropReason::WrongSession), 1);
        assert_eq!(hub.links[1].peer, "198.18.2.2:7501", "the hub learned link 1 from the probe");
    });
}

#[test]
fn a_second_daemon_with_the_same_name_is_refused() {
    with_tunnel(&[1], |lab, tunnel| {
        let out = strata_lab::netns_command(&lab.edge_ns(), BINARY)
            .arg("run")
            .arg("--config")
            .arg(tunnel.workdir().join("edge.toml"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is already running"), "{err}");
        assert!(tunnel.edge.pin_dir().exists(), "the running instance keeps its maps");
    });
}

/// The `auth` part of `strata-ctl status --json` for instance `name`.
fn auth_status(name: &str) -> serde_json::Value {
    let out = std::process::Command::new(BINARY).args(["status", "--name", name, "--json"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    doc["auth"].clone()
}

#[test]
fn the_daemons_establish_a_session_by_handshake_and_a_stranger_is_refused() {
    if std::env::var(strata_lab::strata::LAB_AUTH_ENV).as_deref() == Ok("none") {
        return eprintln!("skipped: {} = none", strata_lab::strata::LAB_AUTH_ENV);
    }
    // Adaptive control (the edge's default) gives every link its own
    // socket and routing, which the handshake goes out on.
    with_tunnel_controlled(&[1, 1, 1], strata_lab::strata::Control::Adaptive, |lab, tunnel| {
        // The edge initiates at start; both sides hold keys of one epoch.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (edge, hub) = loop {
            let (edge, hub) = (auth_status(tunnel.edge.name()), auth_status(tunnel.hub.name()));
            let up = |a: &serde_json::Value| a["sessions"][0]["established"] == true;
            if up(&edge) && up(&hub) {
                break (edge, hub);
            }
            assert!(std::time::Instant::now() < deadline, "no session after 10 s:\nedge {edge}\nhub {hub}");
            std::thread::sleep(Duration::from_millis(200));
        };
        eprintln!("edge auth: {edge}\nhub auth: {hub}");
        assert_eq!(edge["mode"], "keys");
        assert_eq!(edge["sessions"][0]["epoch"], hub["sessions"][0]["epoch"]);
        assert_eq!(hub["sessions"][0]["peer"], "lab-car");
        assert_eq!(hub["completed"], 1, "one handshake, not one per link");
        // Traffic flows as before.
        let outcome = exchange(lab, tunnel, 2_000, 2_000);
        assert!(outcome.delivered >= 1_990, "{}", outcome.delivered);

        // A stranger with a key of its own, who knows the hub's public key
        // and the session id, is not answered, and is counted; a flood of
        // its initiations is cut to the hub's rate before any cryptography.
        const FLOOD: u64 = 500;
        let session = strata_lab::strata::session_for(lab.prefix());
        let hub_key = std::fs::read_to_string(tunnel.workdir().join("hub.toml")).unwrap();
        let hub_public = hub_key
            .lines()
            .find_map(|l| l.strip_prefix("private_key = \""))
            .map(|p| strata_ctl::auth::keys::StaticKey::load(Path::new(p.trim_end_matches('"'))))
            .unwrap()
            .unwrap()
            .public;
        let stranger = strata_ctl::auth::keys::StaticKey::generate().unwrap();
        let mut initiator = strata_ctl::auth::handshake::Initiator::new(stranger, hub_public, session);
        let initiation = initiator.initiate(u64::MAX / 2, 7).unwrap();
        let hub_addr = SocketAddr::from((Lab::hub_addr(), 7400));
        let answered = strata_lab::in_netns(&lab.edge_ns(), move || {
            let sock = std::net::UdpSocket::bind(SocketAddr::from((Lab::link_addr(2), 7502)))?;
            sock.set_read_timeout(Some(Duration::from_millis(200)))?;
            let mut packet = vec![0u8; strata_common::wire::HEADER_LEN + initiation.len()];
            strata_common::wire::Header::new(strata_common::wire::Fields {
                packet_type: strata_common::wire::PacketType::Handshake,
                flags: 0,
                link_id: 2,
                session,
                global_seq: 0,
                link_seq: 0,
                timestamp_us: 0,
            })
            .encode(&mut packet)
            .unwrap();
            packet[strata_common::wire::HEADER_LEN..].copy_from_slice(&initiation);
            for _ in 0..FLOOD {
                sock.send_to(&packet, hub_addr)?;
            }
            let mut buf = [0u8; 512];
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            let mut answered = false;
            while std::time::Instant::now() < deadline {
                if let Ok((n, _)) = sock.recv_from(&mut buf)
                    && matches!(strata_common::wire::Header::parse(&buf[..n], session, 8),
                        Ok((f, _)) if f.packet_type == strata_common::wire::PacketType::Handshake)
                {
                    answered = true;
                }
            }
            Ok(answered)
        })
        .expect("stranger's initiation");
        assert!(!answered, "the hub answered a car that is not on its allowlist");
        let hub = auth_status(tunnel.hub.name());
        let rejected: std::collections::BTreeMap<String, u64> = hub["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_u64().unwrap()))
            .collect();
        let (unknown, limited) = (
            rejected.get("unknown_key").copied().unwrap_or(0),
            rejected.get("rate_limited").copied().unwrap_or(0),
        );
        assert!(unknown >= 1, "{hub}");
        // What the socket's receive buffer held (about half of a burst this
        // size: the rest the kernel dropped) was counted once each.
        assert!(unknown + limited <= FLOOD && limited > 0, "{hub}");
        // The default bucket: a burst of 10, then 20 per second.
        assert!(unknown <= 10 + 20 * 2, "{unknown} initiations reached the cryptography: {hub}");
        assert_eq!(hub["sessions"][0]["peer"], "lab-car", "the car's session is untouched");
        // Keys make every packet need a tag: the stranger's handshake
        // packets passed untagged (Noise refused them above), anything else
        // untagged — like the data or probe an off-path attacker forges — is
        // dropped in the kernel.
        let before =
            read_pinned(&tunnel.hub.pin_dir()).unwrap().dropped(strata_common::drop::DropReason::AuthMissing);
        strata_lab::in_netns(&lab.edge_ns(), move || {
            let sock = std::net::UdpSocket::bind(SocketAddr::from((Lab::link_addr(2), 7503)))?;
            let mut packet = vec![0u8; strata_common::wire::HEADER_LEN + 44];
            strata_common::wire::Header::new(strata_common::wire::Fields {
                packet_type: strata_common::wire::PacketType::Probe,
                flags: 0,
                link_id: 2,
                session,
                global_seq: 0,
                link_seq: 0,
                timestamp_us: 0,
            })
            .encode(&mut packet)
            .unwrap();
            for _ in 0..10 {
                sock.send_to(&packet, hub_addr)?;
            }
            Ok(())
        })
        .expect("forged probes");
        std::thread::sleep(Duration::from_millis(300));
        let after =
            read_pinned(&tunnel.hub.pin_dir()).unwrap().dropped(strata_common::drop::DropReason::AuthMissing);
        assert_eq!(after - before, 10, "untagged probes dropped in the kernel");
    });
}

#[test]
fn keys_rotate_and_the_previous_ones_stay_accepted_for_the_overlap() {
    if std::env::var(strata_lab::strata::LAB_AUTH_ENV).as_deref() == Ok("none") {
        return eprintln!("skipped: {} = none", strata_lab::strata::LAB_AUTH_ENV);
    }
    require_root();
    let lab = Lab::up(&Lab::unique_prefix(), 2).expect("lab up");
    let dir = workdir(&lab);
    let setup = strata_lab::strata::EdgeSetup {
        control: strata_lab::strata::Control::Adaptive,
        // The shortest interval allowed; an overlap long enough to see.
        auth_extra: "rekey_interval_s = 30\noverlap_s = 5\n".into(),
        ..Default::default()
    };
    let tunnel = Tunnel::start_with(&lab, Path::new(BINARY), &[1, 1], setup, &dir).expect("start strata");
    let epoch = |name: &str| auth_status(name)["sessions"][0]["epoch"].as_u64().unwrap_or(0);
    let wait_for = |what: &str, ok: &dyn Fn() -> bool, secs: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while !ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} not within {secs} s: edge {}, hub {}",
                auth_status(tunnel.edge.name()),
                auth_status(tunnel.hub.name())
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("a session", &|| epoch(tunnel.edge.name()) >= 1 && epoch(tunnel.hub.name()) >= 1, 10);
    let first = epoch(tunnel.edge.name());
    wait_for("a rotation", &|| epoch(tunnel.edge.name()) > first, 40);
    let (edge, hub) = (auth_status(tunnel.edge.name()), auth_status(tunnel.hub.name()));
    eprintln!("after the rotation: edge {edge}\nhub {hub}");
    assert_eq!(edge["sessions"][0]["epoch"].as_u64(), Some(first + 1));
    assert_eq!(hub["sessions"][0]["epoch"].as_u64(), Some(first + 1));
    assert_eq!(edge["sessions"][0]["previous_epoch"].as_u64(), Some(first), "old keys kept for the overlap");
    assert_eq!(hub["sessions"][0]["previous_epoch"].as_u64(), Some(first));
    wait_for(
        "the end of the overlap",
        &|| {
            let (e, h) = (auth_status(tunnel.edge.name()), auth_status(tunnel.hub.name()));
            e["sessions"][0]["previous_epoch"].is_null() && h["sessions"][0]["previous_epoch"].is_null()
        },
        // The edge's overlap is 5 s, the hub's the default 10 s.
        15,
    );
    let (edge_log, hub_log) = tunnel.stop().expect("clean shutdown");
    assert!(edge_log.contains("stopped") && hub_log.contains("stopped"));
    lab.down().expect("lab down");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_static_edge_establishes_its_session_on_its_own_link_sockets() {
    if std::env::var(strata_lab::strata::LAB_AUTH_ENV).as_deref() == Ok("none") {
        return eprintln!("skipped: {} = none", strata_lab::strata::LAB_AUTH_ENV);
    }
    // Static control has no probers; the lab's edge has no route to the hub
    // in its main table, so only the handshake's own per-link sockets work.
    with_tunnel(&[1, 1], |lab, tunnel| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (edge, hub) = (auth_status(tunnel.edge.name()), auth_status(tunnel.hub.name()));
            if edge["sessions"][0]["established"] == true && hub["sessions"][0]["established"] == true {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no session after 10 s:\nedge {edge}\nhub {hub}");
            std::thread::sleep(Duration::from_millis(200));
        }
        let outcome = exchange(lab, tunnel, 1_000, 1_000);
        assert!(outcome.delivered >= 995, "{}", outcome.delivered);
    });
}

#[test]
fn a_restarted_hub_gets_a_new_handshake_from_the_edge() {
    if std::env::var(strata_lab::strata::LAB_AUTH_ENV).as_deref() == Ok("none") {
        return eprintln!("skipped: {} = none", strata_lab::strata::LAB_AUTH_ENV);
    }
    require_root();
    let lab = Lab::up(&Lab::unique_prefix(), 2).expect("lab up");
    let dir = workdir(&lab);
    let mut tunnel =
        Tunnel::start_with(&lab, Path::new(BINARY), &[1, 1], strata_lab::strata::Control::Adaptive, &dir)
            .expect("start strata");
    let epoch = |name: &str| auth_status(name)["sessions"][0]["epoch"].as_u64().unwrap_or(0);
    let wait_for = |what: &str, ok: &dyn Fn() -> bool, secs: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "{what} not within {secs} s");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let (edge_name, hub_name) = (tunnel.edge.name().to_string(), tunnel.hub.name().to_string());
    wait_for("a session", &|| epoch(&edge_name) >= 1 && epoch(&hub_name) >= 1, 10);
    let first = epoch(&edge_name);
    // The hub restarts without its keys (its data plane is removed and made
    // anew); the edge hears nothing from it and handshakes again.
    tunnel.hub.stop_in_place().expect("hub stop");
    tunnel.hub.restart().expect("hub restart");
    wait_for("a new session", &|| epoch(&hub_name) > first && epoch(&edge_name) > first, 20);
    assert_eq!(epoch(&hub_name), first + 1, "the restarted hub continued from the epoch the edge held");
    let outcome = exchange(&lab, &tunnel, 1_000, 1_000);
    assert!(outcome.delivered >= 995, "{}", outcome.delivered);
    let (edge_log, hub_log) = tunnel.stop().expect("clean shutdown");
    assert!(edge_log.contains("stopped") && hub_log.contains("stopped"));
    lab.down().expect("lab down");
    let _ = std::fs::remove_dir_all(dir);
}
