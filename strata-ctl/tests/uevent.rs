//! The OS advisors against the real kernel, inside throwaway network
//! namespaces: kernel uevents reach a listener in the namespace the
//! interfaces live in (and no other), device uevents outside any namespace
//! reach it too, and sysfs facts of a namespace's interface come from a
//! sysfs mounted in that namespace. Root is required; the tests fail, never
//! skip, without it.

use std::{
    fs::File,
    os::fd::AsFd as _,
    process::Command,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use strata_ctl::os::{
    identity::LinkIdentity,
    sysfs::{AddrAssign, Bus, FactsError, Framing, LinkFacts, SysfsMount},
    uevent::{Action, UEvent, UeventCounters, UeventListener},
};
use strata_lab::{Lab, in_netns, require_root};
use tokio::sync::{mpsc, oneshot};

/// How long to wait for the kernel's events (they come within milliseconds).
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A network namespace, deleted when dropped (also when a test fails).
struct Netns(String);

impl Netns {
    fn add(name: String) -> Self {
        ip(&["netns", "add", &name]);
        Self(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A uevent listener on its own thread, opened inside a namespace.
struct Listener {
    rx: mpsc::Receiver<UEvent>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<UeventCounters, String>>>,
    runtime: tokio::runtime::Runtime,
}

impl Listener {
    /// Returns once the socket is subscribed, so nothing after is missed.
    fn start(ns: &str) -> Self {
        let path = format!("/run/netns/{ns}");
        let (tx, rx) = mpsc::channel(1024);
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::spawn(move || -> Result<UeventCounters, String> {
            // The socket belongs to the namespace of the thread that opens it.
            let setup = || -> Result<(tokio::runtime::Runtime, UeventListener), String> {
                let file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("setns {path}: {e}"))?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                let listener = {
                    let _context = runtime.enter();
                    UeventListener::open().map_err(|e| e.to_string())?
                };
                Ok((runtime, listener))
            };
            let (runtime, mut listener) = match setup() {
                Ok(opened) => {
                    let _ = ready_tx.send(Ok(()));
                    opened
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.clone()));
                    return Err(e);
                }
            };
            runtime.block_on(async move {
                tokio::select! {
                    result = listener.forward(tx) => result.map_err(|e| e.to_string())?,
                    _ = stopped => {}
                }
                Ok(listener.counters())
            })
        });
        ready_rx.recv_timeout(EVENT_TIMEOUT).expect("listener thread answers").expect("listener opens");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Self { rx, stop: Some(stop), thread: Some(thread), runtime }
    }

    /// Events until `done` says enough, or the timeout; all of them.
    fn collect(&mut self, done: impl Fn(&[UEvent]) -> bool) -> Vec<UEvent> {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let mut events = Vec::new();
        while !done(&events) {
            let left = deadline.saturating_duration_since(Instant::now());
            let rx = &mut self.rx;
            match self.runtime.block_on(async move { tokio::time::timeout(left, rx.recv()).await }) {
                Ok(Some(event)) => events.push(event),
                Ok(None) | Err(_) => break,
            }
        }
        events
    }

    fn stop(mut self) -> UeventCounters {
        let _ = self.stop.take().map(|s| s.send(()));
        let thread = self.thread.take().expect("thread");
        thread.join().expect("listener thread panicked").expect("listener failed")
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
    }
}

fn find<'a>(events: &'a [UEvent], action: &Action, ifname: &str) -> Option<&'a UEvent> {
    events
        .iter()
        .find(|e| e.action == *action && e.subsystem == "net" && e.interface.as_deref() == Some(ifname))
}

#[test]
fn veth_add_and_remove_in_a_namespace_reach_a_listener_there_and_only_there() {
    require_root("creates network namespaces");
    let started = Instant::now();
    let prefix = Lab::unique_prefix();
    let ns = Netns::add(format!("{prefix}-ue"));
    let other = Netns::add(format!("{prefix}-uo"));
    let mut listener = Listener::start(&ns.0);

    // Ours, in the listener's namespace.
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    ip(&["-n", &ns.0, "link", "add", &a, "type", "veth", "peer", "name", &b]);
    // Another namespace's veth: its events must not reach us.
    let (oa, ob) = (format!("{prefix}x"), format!("{prefix}y"));
    ip(&["-n", &other.0, "link", "add", &oa, "type", "veth", "peer", "name", &ob]);
    // A device outside any network namespace (the kind of event a USB modem
    // makes): the kernel sends it to every namespace of the initial user
    // namespace. A synthetic "change" with our own UUID, so it is ours (the
    // kernel takes only alphanumeric argument names: no underscore).
    let uuid = format!("00000000-0000-4000-8000-{:0>12}", &prefix[2..]);
    std::fs::write("/sys/devices/virtual/mem/null/uevent", format!("change {uuid} STRATATEST=1"))
        .expect("writing a synthetic uevent");
    ip(&["-n", &ns.0, "link", "del", &a]);

    let events = listener.collect(|events| {
        find(events, &Action::Remove, &a).is_some() && find(events, &Action::Remove, &b).is_some()
    });
    let summary: Vec<String> =
        events.iter().map(|e| format!("{:?} {} {:?}", e.action, e.devpath, e.interface)).collect();

    for name in [&a, &b] {
        let add = find(&events, &Action::Add, name).unwrap_or_else(|| panic!("add {name}: {summary:#?}"));
        let remove =
            find(&events, &Action::Remove, name).unwrap_or_else(|| panic!("remove {name}: {summary:#?}"));
        assert_eq!(add.devpath, format!("/devices/virtual/net/{name}"));
        assert!(add.ifindex.is_some_and(|i| i > 0), "{add:?}");
        assert_eq!(add.ifindex, remove.ifindex, "the same interface");
        assert!(add.seqnum < remove.seqnum);
    }
    let synthetic = events
        .iter()
        .find(|e| e.vars.get("SYNTH_UUID") == Some(&uuid))
        .unwrap_or_else(|| panic!("the untagged device event did not arrive: {summary:#?}"));
    assert_eq!((&synthetic.action, synthetic.subsystem.as_str()), (&Action::Change, "mem"));
    assert_eq!(synthetic.vars.get("SYNTH_ARG_STRATATEST").map(String::as_str), Some("1"));
    // Events reach each socket in the kernel's order, and the other
    // namespace's veth was made before ours was deleted: had its events
    // been delivered here, they would be in this list already.
    assert!(
        !events.iter().any(|e| e.interface.as_deref().is_some_and(|i| i == oa || i == ob)),
        "another namespace's interfaces leaked in: {summary:#?}"
    );
    let counters = listener.stop();
    assert_eq!(counters, UeventCounters::default(), "nothing skipped from the kernel");
    eprintln!("uevents in a namespace: {} events in {:?}", events.len(), started.elapsed());
}

#[test]
fn facts_of_a_veth_in_a_namespace_come_from_a_sysfs_mounted_there() {
    require_root("creates network namespaces and mounts sysfs");
    let prefix = Lab::unique_prefix();
    let ns = Netns::add(format!("{prefix}-sf"));
    let name = format!("{prefix}s");
    ip(&["-n", &ns.0, "link", "add", &name, "type", "veth", "peer", "name", &format!("{prefix}t")]);
    ip(&["-n", &ns.0, "link", "set", "dev", &name, "mtu", "1400", "address", "02:53:54:52:41:01"]);

    // The host's sysfs shows the host's interfaces, whoever reads it.
    let host = LinkFacts::read(std::path::Path::new("/sys"), &name);
    assert!(matches!(host, Err(FactsError::NoInterface { .. })), "{host:?}");
    let entered = in_netns(&ns.0, {
        let name = name.clone();
        move || Ok(LinkFacts::read(std::path::Path::new("/sys"), &name).is_ok())
    })
    .unwrap();
    assert!(!entered, "setns alone does not change what /sys shows");

    let mount_at = std::env::temp_dir().join(format!("strata-sysfs-{prefix}"));
    let (facts, index) = in_netns(&ns.0, {
        let mount_at = mount_at.clone();
        move || {
            let sysfs = SysfsMount::mount(&mount_at)?;
            let facts = LinkFacts::read(sysfs.root(), &name)?;
            let index = nix::net::if_::if_nametoindex(name.as_str())?;
            Ok((facts, index))
        }
    })
    .expect("reading facts from a sysfs mounted in the namespace");
    assert_eq!(facts.bus, Bus::Virtual);
    assert_eq!((&facts.driver, &facts.usb), (&None, &None));
    assert_eq!(facts.ifindex, Some(index), "the tree matches the namespace");
    assert_eq!((facts.mtu, facts.framing), (Some(1400), Some(Framing::Ethernet)));
    assert_eq!(facts.mac.as_deref(), Some("02:53:54:52:41:01"));
    assert_eq!(facts.addr_assign, Some(AddrAssign::Set), "set by ip link: a stable MAC");
    assert_eq!(LinkIdentity::from_facts(&facts).key(), "mac:02:53:54:52:41:01");

    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*mount_at.to_string_lossy()), "the sysfs mount is gone after drop");
    let _ = std::fs::remove_dir(&mount_at);
}
