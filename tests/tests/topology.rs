//! The lab topology itself: carriers NAT the edge, and labs clean up after
//! themselves even when a test fails. Needs root.

use std::{
    net::{SocketAddr, UdpSocket},
    process::Command,
    time::Duration,
};

use strata_lab::{Lab, in_netns, list_namespaces};

fn require_root() {
    strata_lab::require_root("lab tests create network namespaces");
}

fn ours(lab_prefix: &str) -> Vec<String> {
    let p = format!("{lab_prefix}-");
    list_namespaces().unwrap().into_iter().filter(|n| n.starts_with(&p)).collect()
}

#[test]
fn carriers_nat_the_edge_and_down_removes_everything() {
    require_root();
    let lab = Lab::up(&Lab::unique_prefix(), 2).expect("lab up");
    let prefix = lab.prefix().to_string();
    assert_eq!(ours(&prefix).len(), 2 + 3, "edge, 2 carriers, inet, hub");

    // The edge has no route to the hub of its own; give it one over link 1
    // for this test, then check the hub sees carrier 1's public address.
    let status = Command::new("ip")
        .args(["-n", &lab.edge_ns(), "route", "add", "198.19.0.0/24", "via", "100.64.2.1", "dev", "lnk1"])
        .status()
        .unwrap();
    assert!(status.success());
    let hub = SocketAddr::from((Lab::hub_addr(), 9999));
    let receiver = {
        let ns = lab.hub_ns();
        std::thread::spawn(move || {
            in_netns(&ns, move || {
                let sock = UdpSocket::bind(hub)?;
                sock.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut buf = [0u8; 64];
                let (n, from) = sock.recv_from(&mut buf)?;
                Ok((buf[..n].to_vec(), from))
            })
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    in_netns(&lab.edge_ns(), move || {
        let sock = UdpSocket::bind(SocketAddr::from((Lab::link_addr(1), 4000)))?;
        sock.send_to(b"hello", hub)?;
        Ok(())
    })
    .unwrap();
    let (payload, from) = receiver.join().unwrap().expect("datagram reached the hub");
    assert_eq!(payload, b"hello");
    assert_eq!(from.ip(), Lab::carrier_public_addr(1), "carrier 1 masqueraded the edge");

    lab.down().expect("lab down");
    assert!(ours(&prefix).is_empty(), "every namespace removed");
}

#[test]
fn a_lab_is_removed_when_its_test_panics() {
    require_root();
    let prefix = Lab::unique_prefix();
    let p = prefix.clone();
    let result = std::panic::catch_unwind(move || {
        let _lab = Lab::up(&p, 1).expect("lab up");
        panic!("test failure inside a lab");
    });
    assert!(result.is_err());
    assert!(ours(&prefix).is_empty(), "Drop removed the namespaces");
}

#[test]
fn bad_arguments_are_errors_not_namespaces() {
    require_root();
    assert!(Lab::up("bad prefix", 1).is_err());
    assert!(Lab::up(&Lab::unique_prefix(), 0).is_err());
    assert!(Lab::up(&Lab::unique_prefix(), 9).is_err());
}

#[test]
fn a_running_lab_is_in_use_and_its_prefix_cannot_be_taken_twice() {
    require_root();
    let prefix = Lab::unique_prefix();
    assert!(!Lab::in_use(&prefix), "no lab yet");
    let lab = Lab::up(&prefix, 1).expect("lab up");
    // What `cargo xtask test` asks before removing leftover labs: this one
    // belongs to a live process (this one) and must be left alone.
    assert!(Lab::in_use(&prefix));
    let second = Lab::up(&prefix, 1).expect_err("the prefix is taken");
    assert!(format!("{second:#}").contains("in use"), "{second:#}");
    assert_eq!(ours(&prefix).len(), 4, "the failed second lab removed none of the first's namespaces");
    lab.down().expect("lab down");
    assert!(!Lab::in_use(&prefix), "released when the lab is down");
}
