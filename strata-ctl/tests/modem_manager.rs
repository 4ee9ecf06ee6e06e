//! The ModemManager advisor against (a) the ModemManager test double of the
//! lab (`strata_lab::modem_double`: there is no modem hardware here) and (b)
//! the real Debian ModemManager daemon with no modem, each on a private
//! D-Bus of its own. Nothing here touches the system bus.
//!
//! Every wait is bounded: an event that does not come within its bound fails
//! the test instead of hanging it.

use std::time::{Duration, Instant};

use strata_ctl::os::modem_manager::{
    self, AccessTechnologies, Bus, EarlyWarning, ModemEvent, ModemReport, ModemState, RegistrationState,
    Unavailable,
};
use strata_lab::modem_double::{
    ACCESS_5GNR, ModemManagerDouble, ModemSpec, PrivateBus, REGISTRATION_SEARCHING, RealModemManager,
    STATE_REGISTERED,
};
use tokio::{sync::mpsc, task::JoinHandle};

/// How long an event may take to arrive: generous for a loaded 2-core CI
/// machine; on an idle one they take a few milliseconds.
const EVENT_BOUND: Duration = Duration::from_secs(2);

type Watch = JoinHandle<Result<(), Unavailable>>;

fn start_watch(address: &str) -> (Watch, mpsc::Receiver<ModemEvent>) {
    let (tx, rx) = mpsc::channel(64);
    let watch = tokio::spawn(modem_manager::watch(Bus::Address(address.to_string()), tx));
    (watch, rx)
}

async fn next_event(rx: &mut mpsc::Receiver<ModemEvent>, what: &str) -> ModemEvent {
    next_event_within(rx, what, EVENT_BOUND).await
}

async fn next_event_within(rx: &mut mpsc::Receiver<ModemEvent>, what: &str, bound: Duration) -> ModemEvent {
    match tokio::time::timeout(bound, rx.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("waiting for {what}: the watch ended"),
        Err(_) => panic!("waiting for {what}: nothing within {bound:?}"),
    }
}

/// The next event, which must be `Changed` for `path`.
async fn changed(rx: &mut mpsc::Receiver<ModemEvent>, path: &str, what: &str) -> ModemReport {
    match next_event(rx, what).await {
        ModemEvent::Changed(p, report) if p == path => report,
        other => panic!("waiting for {what}: got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_modem_appears_changes_goes_and_service_comes_back() {
    let bus = PrivateBus::start().expect("private bus");
    let mut double = ModemManagerDouble::start(bus.address()).await.expect("double");
    let path = double.add_modem(ModemSpec::default()).await.expect("modem");
    let (watch, mut rx) = start_watch(bus.address());

    // Appeared, complete.
    let ModemEvent::Appeared(p, first) = next_event(&mut rx, "the modem").await else {
        panic!("expected Appeared");
    };
    assert_eq!(p, path);
    assert_eq!(first.device, "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1");
    assert_eq!(first.net_ports, ["wwan0"], "only the net port, not the QMI control port");
    assert_eq!(first.state, ModemState::Connected);
    assert_eq!(first.access, AccessTechnologies::LTE);
    assert_eq!(first.access.names(), ["LTE"]);
    assert_eq!(first.registration, Some(RegistrationState::Home));
    assert_eq!(first.operator.as_deref(), Some("Double Mobile"));
    assert_eq!(first.operator_code.as_deref(), Some("00101"));
    assert_eq!(first.cell_id.as_deref(), Some("001-01-1A2B3C"));
    assert_eq!(first.signal_quality_pct, Some(72));
    assert_eq!((first.rsrp_dbm, first.rsrq_db, first.sinr_db), (Some(-92.0), Some(-10.5), Some(13.0)));
    // It asked ModemManager to refresh the extended signal values.
    assert_eq!(double.signal_rate(&path).await.expect("rate"), modem_manager::SIGNAL_RATE_S);

    // RSRP collapse: -92 -> -108 dBm.
    let sent = Instant::now();
    double.set_lte_signal(&path, -108.0, -16.0, 1.0).await.expect("signal");
    let weak = changed(&mut rx, &path, "the RSRP collapse").await;
    println!("RSRP change arrived after {:?}", sent.elapsed());
    assert_eq!(weak.rsrp_dbm, Some(-108.0));
    assert_eq!(
        modem_manager::early_warning(&first, &weak),
        Some(EarlyWarning::SignalCollapse { rsrp_dbm: Some((-92.0, -108.0)), quality_pct: Some((72, 72)) })
    );

    // Handover LTE -> 5G NR (standalone), with NR values.
    double.set_nr5g_signal(&path, -95.0, -11.0, 10.0).await.expect("nr values");
    let sent = Instant::now();
    double.set_access(&path, ACCESS_5GNR).await.expect("access");
    let nr = changed(&mut rx, &path, "the handover").await;
    println!("access change arrived after {:?}", sent.elapsed());
    assert_eq!(nr.access, AccessTechnologies::NR5G);
    assert_eq!(nr.rsrp_dbm, Some(-95.0), "a 5G-only link reports the NR values");
    let Some(EarlyWarning::Handover { from, to }) = modem_manager::early_warning(&weak, &nr) else {
        panic!("expected a handover warning");
    };
    assert_eq!((from.access, to.access), (AccessTechnologies::LTE, AccessTechnologies::NR5G));

    // Signal quality 72 -> 30 %.
    double.set_quality(&path, 30).await.expect("quality");
    let poor = changed(&mut rx, &path, "the quality drop").await;
    assert_eq!(poor.signal_quality_pct, Some(30));
    assert!(matches!(
        modem_manager::early_warning(&nr, &poor),
        Some(EarlyWarning::SignalCollapse { quality_pct: Some((72, 30)), .. })
    ));

    // StateChanged + State: connected -> registered.
    double.set_state(&path, STATE_REGISTERED, 1).await.expect("state");
    let idle = changed(&mut rx, &path, "the disconnect").await;
    assert_eq!(idle.state, ModemState::Registered);
    assert_eq!(modem_manager::early_warning(&poor, &idle), Some(EarlyWarning::Disconnected));

    // The network lets go: 3GPP registration home -> searching.
    double.set_registration(&path, REGISTRATION_SEARCHING).await.expect("registration");
    let lost = changed(&mut rx, &path, "the deregistration").await;
    assert_eq!(lost.registration, Some(RegistrationState::Searching));
    assert_eq!(modem_manager::early_warning(&idle, &lost), Some(EarlyWarning::Deregistered));

    // Unplugged.
    double.remove_modem(&path).await.expect("remove");
    assert_eq!(next_event(&mut rx, "the unplug").await, ModemEvent::Gone(path.clone()));

    // Hot-plug of another modem while watching.
    let second = double
        .add_modem(ModemSpec { net_port: "wwan1".into(), lac_ci: None, ..ModemSpec::default() })
        .await
        .expect("second modem");
    match next_event(&mut rx, "the hot-plugged modem").await {
        ModemEvent::Appeared(p, r) => {
            assert_eq!(p, second);
            assert_eq!(r.net_ports, ["wwan1"]);
            assert_eq!(r.cell_id, None, "location source not enabled: no cell id");
        }
        other => panic!("expected Appeared, got {other:?}"),
    }

    // ModemManager goes away: ServiceLost, and the watch keeps running.
    double.stop().await.expect("stop");
    assert!(matches!(next_event(&mut rx, "the service loss").await, ModemEvent::ServiceLost(_)));
    assert!(!watch.is_finished(), "the watch must wait for ModemManager to come back");

    // It comes back with a modem: Appeared again.
    let mut double = ModemManagerDouble::start(bus.address()).await.expect("double again");
    let again = double.add_modem(ModemSpec::default()).await.expect("modem again");
    // Not one signal but a re-sync: the watch reads the modems when the
    // service's name reappears and, if the new instance does not answer yet
    // (it takes its name before it is ready), again every second. One CI run
    // on a loaded host needed more than 2 s; a user waits no longer than
    // ModemManager's own start-up either way.
    match next_event_within(&mut rx, "the modem after the restart", Duration::from_secs(10)).await {
        ModemEvent::Appeared(p, r) => {
            assert_eq!(p, again);
            assert_eq!(r.access, AccessTechnologies::LTE);
        }
        other => panic!("expected Appeared, got {other:?}"),
    }

    // The bus itself dies: ServiceLost, then the watch ends with BusClosed.
    drop(bus);
    assert!(matches!(next_event(&mut rx, "the bus loss").await, ModemEvent::ServiceLost(_)));
    let ended = tokio::time::timeout(EVENT_BOUND, watch).await.expect("the watch ends").expect("no panic");
    assert!(matches!(ended, Err(Unavailable::BusClosed { .. })), "{ended:?}");
    drop(double);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_cleanly_when_the_receiver_goes() {
    let bus = PrivateBus::start().expect("private bus");
    let mut double = ModemManagerDouble::start(bus.address()).await.expect("double");
    double.add_modem(ModemSpec::default()).await.expect("modem");
    let (watch, mut rx) = start_watch(bus.address());
    assert!(matches!(next_event(&mut rx, "the modem").await, ModemEvent::Appeared(..)));
    drop(rx);
    let ended = tokio::time::timeout(EVENT_BOUND, watch).await.expect("the watch ends").expect("no panic");
    assert!(ended.is_ok(), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reads_the_double() {
    let bus = PrivateBus::start().expect("private bus");
    let mut double = ModemManagerDouble::start(bus.address()).await.expect("double");
    let path = double.add_modem(ModemSpec::default()).await.expect("modem");
    let modems = modem_manager::snapshot(Bus::Address(bus.address().into())).await.expect("snapshot");
    assert_eq!(modems.len(), 1);
    assert_eq!(modems[0].0, path);
    assert_eq!(modems[0].1.net_ports, ["wwan0"]);
    assert_eq!(modems[0].1.cell_id.as_deref(), Some("001-01-1A2B3C"));
    // Read-only: the snapshot asked for no signal refresh.
    assert_eq!(double.signal_rate(&path).await.expect("rate"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bus_is_unavailable_promptly() {
    let started = Instant::now();
    let (tx, _rx) = mpsc::channel(1);
    let bus = Bus::Address("unix:path=/nonexistent/strata-test/bus".into());
    let result = modem_manager::watch(bus.clone(), tx).await;
    let took = started.elapsed();
    let Err(e @ Unavailable::Connect { .. }) = result else { panic!("expected Connect, got {result:?}") };
    assert!(e.to_string().contains("/nonexistent/strata-test/bus"), "the error names the bus: {e}");
    assert!(took < Duration::from_millis(500), "took {took:?}");
    assert!(matches!(modem_manager::snapshot(bus).await, Err(Unavailable::Connect { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_without_modem_manager_is_unavailable() {
    let bus = PrivateBus::start().expect("private bus");
    let (tx, _rx) = mpsc::channel(1);
    let started = Instant::now();
    let result = modem_manager::watch(Bus::Address(bus.address().into()), tx).await;
    assert!(matches!(result, Err(Unavailable::NotRunning { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
}

/// Debian's ModemManager, with no modem on this machine: it owns its name and
/// answers, the advisor reads an empty list without error, and killing the
/// daemon is a `ServiceLost`, not a crash or a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_modem_manager_without_modems() {
    let bus = PrivateBus::start().expect("private bus");
    let started = Instant::now();
    let mut mm = RealModemManager::start(&bus).await.expect("ModemManager starts on the private bus");
    println!("ModemManager {} owned its name after {:?}", mm.pid(), started.elapsed());

    let modems = modem_manager::snapshot(Bus::Address(bus.address().into()))
        .await
        .unwrap_or_else(|e| panic!("snapshot: {e}; ModemManager's log:\n{}", mm.log_tail()));
    assert!(modems.is_empty(), "no modem here, got {modems:?}");

    let (watch, mut rx) = start_watch(bus.address());
    // No modem: no event, and the watch runs on.
    match tokio::time::timeout(Duration::from_millis(700), rx.recv()).await {
        Err(_) => {}
        Ok(event) => panic!("expected silence, got {event:?}; log:\n{}", mm.log_tail()),
    }
    assert!(!watch.is_finished(), "the watch must run with zero modems: {:?}", watch.await);

    mm.kill().expect("kill ModemManager");
    match next_event(&mut rx, "the service loss").await {
        ModemEvent::ServiceLost(reason) => assert!(reason.contains("ModemManager"), "{reason}"),
        other => panic!("expected ServiceLost, got {other:?}"),
    }
    assert!(!watch.is_finished(), "the watch must wait for ModemManager to come back");
    drop(rx);
    let ended = tokio::time::timeout(EVENT_BOUND, watch).await.expect("the watch ends").expect("no panic");
    assert!(ended.is_ok(), "{ended:?}");
}
