//! Starting the OS advisors the `os_signals` tier asks for, and merging
//! what they say into one stream for the control loop.
//!
//! Each advisor runs as its own task and fails on its own: one that cannot
//! start (no netlink socket, uevents refused, no D-Bus, no ModemManager) is
//! reported once — in the log, in `strata-ctl status` and as
//! `strata_os_advisor_up` — and the others carry on. ModemManager may start
//! after the daemon (boot order) or restart under it, so it is looked for
//! again every [`MODEM_MANAGER_RETRY`] without logging each miss.

use std::time::Duration;

use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{info, warn};

use crate::{
    config::Config,
    os::{
        modem_manager::{self, Bus, ModemEvent},
        netlink::{self, NetEvent},
        uevent::{UEvent, UeventListener},
    },
};

/// How often a missing ModemManager is looked for again.
pub const MODEM_MANAGER_RETRY: Duration = Duration::from_secs(30);

/// Something an advisor said.
#[derive(Clone, Debug)]
pub enum OsEvent {
    /// rtnetlink: an interface, address or route changed.
    Net(NetEvent),
    /// A kernel uevent (device added, removed, changed).
    Device(UEvent),
    /// ModemManager: a modem appeared, changed or went.
    Modem(ModemEvent),
    /// An advisor's state changed ("active", "unavailable: …").
    State(&'static str, String),
}

/// The running advisors.
#[derive(Debug)]
pub struct Advisors {
    /// Everything they say, in order of arrival.
    pub events: mpsc::Receiver<OsEvent>,
    tasks: Vec<JoinHandle<()>>,
    /// Each advisor's state when started.
    pub states: Vec<(&'static str, String)>,
}

impl Drop for Advisors {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the advisors `config.os_signals` asks for (`edge`: the hub has
/// no link interfaces to follow, so it runs none).
pub fn start(config: &Config, edge: bool) -> Advisors {
    let tier = config.os_signals;
    let (tx, events) = mpsc::channel(1024);
    let mut tasks = Vec::new();
    let mut states: Vec<(&'static str, String)> = Vec::new();
    let off = |needs: &str| format!("off (os_signals = {tier}; needs {needs})");
    if !edge {
        for name in ["netlink", "uevent", "modem_manager"] {
            states.push((name, "off (the hub's links are learned in band)".into()));
        }
        return Advisors { events, tasks, states };
    }

    if tier.netlink() {
        let (net_tx, mut net_rx) = mpsc::channel(256);
        match netlink::watch(net_tx) {
            Ok(task) => {
                tasks.push(task);
                let tx = tx.clone();
                tasks.push(tokio::spawn(async move {
                    while let Some(e) = net_rx.recv().await {
                        if tx.send(OsEvent::Net(e)).await.is_err() {
                            return;
                        }
                    }
                }));
                states.push(("netlink", "active".into()));
            }
            Err(e) => states.push(("netlink", format!("unavailable: {e}"))),
        }
    } else {
        states.push(("netlink", off("netlink")));
    }

    if tier.enhanced() {
        match UeventListener::open() {
            Ok(mut listener) => {
                let tx = tx.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        match listener.next().await {
                            Ok(e) => {
                                if tx.send(OsEvent::Device(e)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(OsEvent::State("uevent", format!("unavailable: {e}"))).await;
                                return;
                            }
                        }
                    }
                }));
                states.push(("uevent", "active".into()));
            }
            Err(e) => states.push(("uevent", format!("unavailable: {e}"))),
        }
        let bus = config.modem_manager_bus.clone().map_or(Bus::System, Bus::Address);
        states.push(("modem_manager", "starting".into()));
        tasks.push(tokio::spawn(watch_modem_manager(bus, tx)));
    } else {
        states.push(("uevent", off("enhanced")));
        states.push(("modem_manager", off("enhanced")));
    }

    for (name, state) in &states {
        if state.starts_with("unavailable") {
            warn!(advisor = name, "OS advisor {state}; the others and in-band observation carry on");
        } else {
            info!(advisor = name, state = %state, "OS advisor");
        }
    }
    Advisors { events, tasks, states }
}

/// Follows ModemManager; while it is not there, looks again every
/// [`MODEM_MANAGER_RETRY`], reporting only changes of state.
async fn watch_modem_manager(bus: Bus, tx: mpsc::Sender<OsEvent>) {
    let mut last = String::new();
    loop {
        let (mm_tx, mut mm_rx) = mpsc::channel(64);
        let forward = {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(e) = mm_rx.recv().await {
                    if tx.send(OsEvent::Modem(e)).await.is_err() {
                        return;
                    }
                }
            })
        };
        // Asked first so the state is known even with no modem (an empty
        // list sends no event).
        let state = match modem_manager::snapshot(bus.clone()).await {
            Ok(modems) => format!("active ({} modem(s))", modems.len()),
            Err(e) => format!("unavailable: {e}"),
        };
        if state != last {
            if state.starts_with("unavailable") {
                warn!(
                    advisor = "modem_manager",
                    "OS advisor {state}; looking again every {MODEM_MANAGER_RETRY:?}"
                );
            } else {
                info!(advisor = "modem_manager", state = %state, "OS advisor");
            }
            let _ = tx.send(OsEvent::State("modem_manager", state.clone())).await;
            last = state;
        }
        let result = modem_manager::watch(bus.clone(), mm_tx).await;
        // Drained, not aborted: the last events (ServiceLost) must arrive.
        let _ = forward.await;
        if tx.is_closed() {
            return;
        }
        if let Err(e) = result {
            let state = format!("unavailable: {e}");
            if state != last {
                warn!(
                    advisor = "modem_manager",
                    "OS advisor {state}; looking again every {MODEM_MANAGER_RETRY:?}"
                );
                let _ = tx.send(OsEvent::State("modem_manager", state.clone())).await;
                last = state;
            }
        }
        tokio::time::sleep(MODEM_MANAGER_RETRY).await;
    }
}
