//! The ModemManager advisor: what the modem itself says about its radio link.
//!
//! # The idea
//!
//! A cellular modem knows things about its link before any packet shows them:
//! that it is handing over from LTE to 5G NR or to another cell, that its
//! reference signal is collapsing, that the network deregistered it, that its
//! data connection dropped. On Linux, ModemManager owns the modems' control
//! ports and publishes this on the system D-Bus under
//! `org.freedesktop.ModemManager1`: one object per modem, with properties
//! that change as the radio does, and signals when they change.
//!
//! This advisor follows those objects and turns them into plain
//! [`ModemReport`]s, sent as [`ModemEvent`]s when a modem appears, changes or
//! goes. [`early_warning`] compares two reports of one modem and says whether
//! the change deserves attention. It is a *hint*: a warning may demote a link
//! or start pre-warming another, but nothing here makes a link usable — only
//! in-band probes do (brief, principle 1). ModemManager is optional: without a
//! bus or without the service, [`watch`] returns [`Unavailable`] at once, and
//! the daemon runs on in-band observation alone.
//!
//! # What is read, and how
//!
//! * `org.freedesktop.DBus.ObjectManager` on `/org/freedesktop/ModemManager1`:
//!   `GetManagedObjects` once (and after every service restart), then
//!   `InterfacesAdded`/`InterfacesRemoved` for modems and their interfaces
//!   appearing and going.
//! * `…Modem`: `Device`, `Ports` (the net ports, e.g. `wwan0`, are how a
//!   report meets a Strata link), `State`, `AccessTechnologies`,
//!   `SignalQuality`, and the `StateChanged` signal.
//! * `…Modem.Modem3gpp`: `OperatorName`, `OperatorCode`, `RegistrationState`.
//! * `…Modem.Signal`: the `Lte` and `Nr5g` dictionaries (RSRP, RSRQ, SNR).
//!   ModemManager only fills them when someone asked for a refresh rate with
//!   `Setup(rate)`; the advisor asks for [`SIGNAL_RATE_S`] once per modem
//!   unless a faster rate is already set, and tolerates a refusal.
//! * `…Modem.Location`: the serving cell (3GPP LAC/CI), only where the
//!   operator enabled that source. The advisor never enables it itself:
//!   `Location.Setup` changes the modem's configuration for every client.
//!
//! Updates are event-driven: every property above arrives through
//! `PropertiesChanged` signals, so nothing is polled except the cell id,
//! which ModemManager only signals when another client asked it to (see
//! [`LOCATION_POLL`]). The `Signal` values do change only every `Setup` rate
//! seconds, because ModemManager itself polls the modem for them; they reach
//! us as `PropertiesChanged` all the same.
//!
//! Every D-Bus call is bounded by [`CALL_TIMEOUT`]: a hung ModemManager
//! delays a hint, never the daemon.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    time::Duration,
};

use futures::StreamExt as _;
use tokio::sync::mpsc;
use zbus::{
    Connection, Message, MessageStream, OwnedObjectPath, OwnedVariant, Variant, match_rule::MatchRule,
    message::Sequence,
};

/// ModemManager's well-known name on the bus.
pub const SERVICE: &str = "org.freedesktop.ModemManager1";
/// The object that manages the modem objects.
const ROOT_PATH: &str = "/org/freedesktop/ModemManager1";
/// Modem objects live at `…/Modem/<n>`.
const MODEM_PATH_PREFIX: &str = "/org/freedesktop/ModemManager1/Modem/";

const IFACE_MODEM: &str = "org.freedesktop.ModemManager1.Modem";
const IFACE_3GPP: &str = "org.freedesktop.ModemManager1.Modem.Modem3gpp";
const IFACE_SIGNAL: &str = "org.freedesktop.ModemManager1.Modem.Signal";
const IFACE_LOCATION: &str = "org.freedesktop.ModemManager1.Modem.Location";
const IFACE_PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const IFACE_OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";

/// The longest any single D-Bus call (connect, method, reply) may take.
/// ModemManager answers property reads from its cache in microseconds; two
/// seconds only passes when it is stuck talking to a modem, and then the
/// advisor moves on rather than wait.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The refresh rate asked of ModemManager for the extended signal values
/// (seconds). Its own minimum is 1 s; 2 s follows a drive past a cell edge
/// closely enough without keeping the modem's control channel busy.
pub const SIGNAL_RATE_S: u32 = 2;

/// How often the serving cell is read where the 3GPP location source is
/// enabled but ModemManager was not asked to signal location changes.
/// Cell changes also show as access-technology and signal changes, which are
/// event-driven, so this only completes the picture.
pub const LOCATION_POLL: Duration = Duration::from_secs(10);

/// How soon to retry reading the modems after ModemManager (re)appeared but
/// did not answer yet (it registers its name before it has probed ports).
const RESYNC_RETRY: Duration = Duration::from_secs(1);

/// `MM_MODEM_PORT_TYPE_NET`: a network interface (wwan0, usb0, …).
const PORT_TYPE_NET: u32 = 2;
/// `MM_MODEM_LOCATION_SOURCE_3GPP_LAC_CI`, as a bit and as a `Location` key.
const LOCATION_SOURCE_3GPP_LAC_CI: u32 = 1;

/// Which bus to watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Bus {
    /// The system bus, where ModemManager runs in production.
    #[default]
    System,
    /// A bus at an explicit D-Bus address (`unix:path=…`), for tests.
    Address(String),
}

impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("system bus"),
            Self::Address(a) => write!(f, "bus at {a}"),
        }
    }
}

/// Why the advisor cannot run (or stopped): reported once, then the daemon
/// goes on without it.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The bus could not be reached.
    #[error("cannot connect to the {bus}: {source}")]
    Connect {
        /// The bus.
        bus: Bus,
        /// zbus's reason.
        source: zbus::Error,
    },
    /// Nobody owns [`SERVICE`] on the bus.
    #[error("ModemManager ({SERVICE}) is not running on the {bus}")]
    NotRunning {
        /// The bus.
        bus: Bus,
    },
    /// A call the advisor cannot do without failed.
    #[error("{what} on the {bus} failed: {source}")]
    Call {
        /// The bus.
        bus: Bus,
        /// The call.
        what: &'static str,
        /// zbus's reason.
        source: zbus::Error,
    },
    /// A call (or the connection itself) took longer than [`CALL_TIMEOUT`].
    #[error("{what} on the {bus} did not answer within {CALL_TIMEOUT:?}")]
    Timeout {
        /// The bus.
        bus: Bus,
        /// The call.
        what: &'static str,
    },
    /// The connection to the bus closed while watching (the bus daemon
    /// stopped): ModemManager cannot come back on it.
    #[error("the connection to the {bus} closed")]
    BusClosed {
        /// The bus.
        bus: Bus,
    },
}

/// What [`watch`] reports.
#[derive(Clone, Debug, PartialEq)]
pub enum ModemEvent {
    /// A modem object appeared (at start, on hot-plug, or after ModemManager
    /// came back), with the D-Bus object path as its key.
    Appeared(String, ModemReport),
    /// Something in the modem's report changed.
    Changed(String, ModemReport),
    /// The modem object went away (unplugged, or ModemManager dropped it).
    Gone(String),
    /// ModemManager left the bus: every modem reported so far is gone with it
    /// (no separate [`ModemEvent::Gone`] follows). The advisor waits for it to
    /// come back and then reports its modems as [`ModemEvent::Appeared`].
    ServiceLost(String),
}

/// What ModemManager says about one modem, as plain data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModemReport {
    /// Sysfs path of the physical device (`/sys/devices/…/usb2/2-1`): the
    /// stable identity of the hardware across re-enumeration.
    pub device: String,
    /// Network interfaces of the modem (`wwan0`, …).
    pub net_ports: Vec<String>,
    /// The modem's state.
    pub state: ModemState,
    /// Access technologies in use right now (several bits during 5G NSA).
    pub access: AccessTechnologies,
    /// 3GPP registration, where the modem has the 3GPP interface.
    pub registration: Option<RegistrationState>,
    /// Operator name (or its MCC/MNC code when the name is empty).
    pub operator: Option<String>,
    /// Operator MCC+MNC.
    pub operator_code: Option<String>,
    /// Serving cell as `MCC-MNC-CI` (CI in hex as the modem gave it), only
    /// where the 3GPP location source is enabled in ModemManager.
    pub cell_id: Option<String>,
    /// ModemManager's 0–100 signal quality, only while it is recent
    /// (ModemManager keeps a stale value otherwise).
    pub signal_quality_pct: Option<u32>,
    /// Reference signal received power, dBm: from the `Nr5g` values on a
    /// 5G-only (SA) connection, else from `Lte` (LTE, and the LTE anchor of
    /// 5G NSA), else `Nr5g`.
    pub rsrp_dbm: Option<f64>,
    /// Reference signal received quality, dB (same source as `rsrp_dbm`).
    pub rsrq_db: Option<f64>,
    /// Signal to interference and noise ratio, dB (ModemManager's `snr`;
    /// same source as `rsrp_dbm`).
    pub sinr_db: Option<f64>,
}

/// `MMModemState`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ModemState {
    /// The modem is unusable.
    Failed,
    /// Being initialised.
    Initializing,
    /// Needs a SIM PIN or PUK.
    Locked,
    /// Powered down.
    Disabled,
    /// Going to `Disabled`.
    Disabling,
    /// Going to `Enabled`.
    Enabling,
    /// Powered up, not registered.
    Enabled,
    /// Looking for a network.
    Searching,
    /// Registered, no data connection.
    Registered,
    /// Tearing a data connection down.
    Disconnecting,
    /// Setting a data connection up.
    Connecting,
    /// A data connection is up.
    Connected,
    /// `MM_MODEM_STATE_UNKNOWN` (0) or a value this code does not know.
    Unknown(i32),
    /// No state read yet.
    #[default]
    NotRead,
}

impl ModemState {
    /// From ModemManager's number.
    pub fn from_raw(raw: i32) -> Self {
        match raw {
            -1 => Self::Failed,
            1 => Self::Initializing,
            2 => Self::Locked,
            3 => Self::Disabled,
            4 => Self::Disabling,
            5 => Self::Enabling,
            6 => Self::Enabled,
            7 => Self::Searching,
            8 => Self::Registered,
            9 => Self::Disconnecting,
            10 => Self::Connecting,
            11 => Self::Connected,
            other => Self::Unknown(other),
        }
    }

    /// Whether the modem is registered with a network (connected or not).
    pub fn is_registered(self) -> bool {
        matches!(self, Self::Registered | Self::Disconnecting | Self::Connecting | Self::Connected)
    }
}

/// `MMModem3gppRegistrationState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationState {
    /// Not registered, not searching.
    Idle,
    /// Registered on the home network.
    Home,
    /// Searching.
    Searching,
    /// Registration denied.
    Denied,
    /// Unknown.
    Unknown,
    /// Registered, roaming.
    Roaming,
    /// Home network, SMS only (no data).
    HomeSmsOnly,
    /// Roaming, SMS only (no data).
    RoamingSmsOnly,
    /// Emergency services only.
    EmergencyOnly,
    /// Home network, CSFB not preferred.
    HomeCsfbNotPreferred,
    /// Roaming, CSFB not preferred.
    RoamingCsfbNotPreferred,
    /// Attached for restricted local operator services.
    AttachedRlos,
    /// A value this code does not know.
    Other(u32),
}

impl RegistrationState {
    /// From ModemManager's number.
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            0 => Self::Idle,
            1 => Self::Home,
            2 => Self::Searching,
            3 => Self::Denied,
            4 => Self::Unknown,
            5 => Self::Roaming,
            6 => Self::HomeSmsOnly,
            7 => Self::RoamingSmsOnly,
            8 => Self::EmergencyOnly,
            9 => Self::HomeCsfbNotPreferred,
            10 => Self::RoamingCsfbNotPreferred,
            11 => Self::AttachedRlos,
            other => Self::Other(other),
        }
    }

    /// Whether the registration allows packet data.
    pub fn carries_data(self) -> bool {
        matches!(
            self,
            Self::Home | Self::Roaming | Self::HomeCsfbNotPreferred | Self::RoamingCsfbNotPreferred
        )
    }
}

/// `MMModemAccessTechnology`: a bitmask, since a modem may use several at
/// once (LTE anchor + 5G NR in non-standalone 5G).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AccessTechnologies(pub u32);

impl AccessTechnologies {
    /// GSM.
    pub const GSM: Self = Self(1 << 1);
    /// UMTS.
    pub const UMTS: Self = Self(1 << 5);
    /// HSPA.
    pub const HSPA: Self = Self(1 << 8);
    /// LTE.
    pub const LTE: Self = Self(1 << 14);
    /// 5G NR.
    pub const NR5G: Self = Self(1 << 15);

    /// Every bit ModemManager defines, with its name.
    const NAMES: [(u32, &'static str); 18] = [
        (1 << 0, "POTS"),
        (1 << 1, "GSM"),
        (1 << 2, "GSM-Compact"),
        (1 << 3, "GPRS"),
        (1 << 4, "EDGE"),
        (1 << 5, "UMTS"),
        (1 << 6, "HSDPA"),
        (1 << 7, "HSUPA"),
        (1 << 8, "HSPA"),
        (1 << 9, "HSPA+"),
        (1 << 10, "1xRTT"),
        (1 << 11, "EVDO0"),
        (1 << 12, "EVDOA"),
        (1 << 13, "EVDOB"),
        (1 << 14, "LTE"),
        (1 << 15, "5GNR"),
        (1 << 16, "LTE-M"),
        (1 << 17, "NB-IoT"),
    ];

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        other.0 != 0 && self.0 & other.0 == other.0
    }

    /// Whether no technology is in use (`UNKNOWN`).
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Names of the bits set, lowest first; unknown bits as `bitN`.
    pub fn names(self) -> Vec<String> {
        (0..32)
            .map(|b| 1u32 << b)
            .filter(|bit| self.0 & bit != 0)
            .map(|bit| match Self::NAMES.iter().find(|(b, _)| *b == bit) {
                Some((_, name)) => (*name).to_string(),
                None => format!("bit{}", bit.trailing_zeros()),
            })
            .collect()
    }
}

impl fmt::Display for AccessTechnologies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() { f.write_str("none") } else { f.write_str(&self.names().join("+")) }
    }
}

/// Where a modem is attached: technology and cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RadioCell {
    /// Access technologies.
    pub access: AccessTechnologies,
    /// Serving cell, where known.
    pub cell_id: Option<String>,
}

/// Why a modem's link deserves attention before in-band probes show it.
#[derive(Clone, Debug, PartialEq)]
pub enum EarlyWarning {
    /// The data connection dropped: expect no traffic until it is back.
    Disconnected,
    /// The network deregistered the modem (or it lost the network).
    Deregistered,
    /// The radio signal collapsed: expect loss and delay spikes.
    SignalCollapse {
        /// RSRP before and after, dBm, where both are known.
        rsrp_dbm: Option<(f64, f64)>,
        /// Signal quality before and after, %, where both are known.
        quality_pct: Option<(u32, u32)>,
    },
    /// Access technology or serving cell changed: a short interruption and
    /// a new delay regime are likely.
    Handover {
        /// Before.
        from: RadioCell,
        /// After.
        to: RadioCell,
    },
}

/// An RSRP fall of this much (dB) between two reports is a collapse: 10 dB
/// is a tenth of the received power, about the step from "good" to "fair"
/// in the usual LTE RSRP scale (≥ −80 dBm excellent, −80…−90 good,
/// −90…−100 fair, below −100 towards the cell edge).
pub const RSRP_DROP_DB: f64 = 10.0;

/// RSRP below this (dBm) is at the cell edge: around −110…−120 dBm an LTE
/// link loses throughput steeply and then the cell, so crossing it warns
/// even without a sudden drop.
pub const RSRP_EDGE_DBM: f64 = -115.0;

/// A fall of ModemManager's 0–100 signal quality by this many points is a
/// collapse: its scale is coarse (it maps the modem's RSSI or bars), so only
/// large steps mean something.
pub const QUALITY_DROP_PCT: u32 = 30;

/// Whether the change from `before` to `after` (two reports of one modem)
/// is an early warning, and which. Pure: no I/O, no clock.
///
/// When several apply, the most severe wins: disconnected, deregistered,
/// signal collapse, handover. The cell-edge warning is edge-triggered (only
/// when RSRP crosses [`RSRP_EDGE_DBM`]), so a modem that lingers at the edge
/// does not warn again on every unrelated change.
pub fn early_warning(before: &ModemReport, after: &ModemReport) -> Option<EarlyWarning> {
    if before.state == ModemState::Connected && after.state != ModemState::Connected {
        return Some(EarlyWarning::Disconnected);
    }
    let was_registered =
        before.state.is_registered() || before.registration.is_some_and(|r| r.carries_data());
    let is_registered = after.state.is_registered()
        && after.registration.is_none_or(|r| r.carries_data() || r == RegistrationState::Unknown);
    if was_registered && !is_registered {
        return Some(EarlyWarning::Deregistered);
    }
    let rsrp = before.rsrp_dbm.zip(after.rsrp_dbm);
    let quality = before.signal_quality_pct.zip(after.signal_quality_pct);
    let rsrp_fell = rsrp.is_some_and(|(b, a)| b - a >= RSRP_DROP_DB);
    let crossed_edge = after.rsrp_dbm.is_some_and(|a| a < RSRP_EDGE_DBM)
        && before.rsrp_dbm.is_none_or(|b| b >= RSRP_EDGE_DBM);
    let quality_fell = quality.is_some_and(|(b, a)| b.saturating_sub(a) >= QUALITY_DROP_PCT);
    if rsrp_fell || crossed_edge || quality_fell {
        return Some(EarlyWarning::SignalCollapse { rsrp_dbm: rsrp, quality_pct: quality });
    }
    // A technology appearing from or vanishing to nothing is a registration
    // change (handled above or not yet meaningful), not a handover.
    let tech_changed = !before.access.is_empty() && !after.access.is_empty() && before.access != after.access;
    let cell_changed = before.cell_id.is_some() && after.cell_id.is_some() && before.cell_id != after.cell_id;
    if tech_changed || cell_changed {
        return Some(EarlyWarning::Handover {
            from: RadioCell { access: before.access, cell_id: before.cell_id.clone() },
            to: RadioCell { access: after.access, cell_id: after.cell_id.clone() },
        });
    }
    None
}

/// Follows ModemManager on `bus` and sends what it learns to `tx` until `tx`
/// is closed (then `Ok`).
///
/// Returns [`Unavailable`] at once if the bus cannot be reached or nobody
/// owns [`SERVICE`] there; the caller reports that once and goes on without
/// the advisor. Once running, ModemManager going away is a
/// [`ModemEvent::ServiceLost`], not an error: the watch waits for it to come
/// back. Only the bus connection itself closing ends it with
/// [`Unavailable::BusClosed`].
pub async fn watch(bus: Bus, tx: mpsc::Sender<ModemEvent>) -> Result<(), Unavailable> {
    let conn = connect(&bus).await?;
    // Subscribe before reading anything, so no change falls between the
    // snapshot and the signals.
    let owner_rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.DBus")
        .interface("org.freedesktop.DBus")
        .member("NameOwnerChanged")
        .arg(0, SERVICE)
        .build();
    let mut owner_changes = subscribe(&bus, &conn, owner_rule, "subscribing to NameOwnerChanged").await?;
    // The bus daemon resolves the well-known sender to its current owner;
    // the watcher also checks the unique name (see `Watcher::on_signal`).
    let mm_rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(SERVICE)
        .path_namespace(ROOT_PATH)
        .build();
    let mut mm_signals = subscribe(&bus, &conn, mm_rule, "subscribing to ModemManager's signals").await?;

    let mut w = Watcher { bus, conn, tx, owner: None, modems: BTreeMap::new(), snapshot_at: None };
    w.owner = name_owner(&w.bus, &w.conn).await?;
    if w.owner.is_none() {
        return Err(Unavailable::NotRunning { bus: w.bus });
    }
    let mut pending_sync = match w.sync().await {
        Ok(Flow::Stop) => return Ok(()),
        Ok(Flow::Go) => false,
        Err(e) => return Err(e),
    };

    let mut location_poll = tokio::time::interval(LOCATION_POLL);
    location_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The snapshot just read the cells: the first poll is one period away.
    location_poll.reset();
    let mut resync = tokio::time::interval(RESYNC_RETRY);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flow = tokio::select! {
            () = w.tx.closed() => Flow::Stop,
            msg = owner_changes.next() => match msg {
                None => return Err(w.bus_closed().await),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "modem-manager: unreadable NameOwnerChanged");
                    Flow::Go
                }
                Some(Ok(msg)) => match w.on_owner_changed(&msg).await {
                    OwnerFlow::Flow(f) => f,
                    OwnerFlow::Resync => {
                        pending_sync = true;
                        w.sync_or_retry(&mut pending_sync).await
                    }
                },
            },
            msg = mm_signals.next() => match msg {
                None => return Err(w.bus_closed().await),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "modem-manager: unreadable signal");
                    Flow::Go
                }
                Some(Ok(msg)) => w.on_signal(&msg).await,
            },
            _ = resync.tick(), if pending_sync => w.sync_or_retry(&mut pending_sync).await,
            _ = location_poll.tick() => w.poll_locations().await,
        };
        if flow == Flow::Stop {
            return Ok(());
        }
    }
}

/// Reads every modem ModemManager has right now, once (for a status view or
/// a check at start-up; [`watch`] follows changes). An empty list means
/// ModemManager runs and has no modem.
///
/// Read-only: unlike [`watch`], it does not ask for signal refreshes, so
/// RSRP/RSRQ/SINR are there only if someone else did.
pub async fn snapshot(bus: Bus) -> Result<Vec<(String, ModemReport)>, Unavailable> {
    let conn = connect(&bus).await?;
    if name_owner(&bus, &conn).await?.is_none() {
        return Err(Unavailable::NotRunning { bus });
    }
    let (objects, _) = managed_objects(&bus, &conn).await?;
    let mut reports = Vec::new();
    for (path, interfaces) in objects {
        let mut props = ModemProps::default();
        for (iface, values) in &interfaces {
            props.add_interface(iface, values);
        }
        if !props.has_modem {
            continue;
        }
        if props.wants_location_read() {
            props.cell = read_cell(&conn, &path).await;
        }
        reports.push((path, props.report()));
    }
    Ok(reports)
}

async fn connect(bus: &Bus) -> Result<Connection, Unavailable> {
    bounded(bus, "connecting", async {
        match bus {
            Bus::System => zbus::connection::Builder::system(),
            Bus::Address(a) => zbus::connection::Builder::address(a.as_str()),
        }
        .method_timeout(CALL_TIMEOUT)
        .build()
        .await
    })
    .await
    .map_err(|e| match e {
        Unavailable::Call { bus, source, .. } => Unavailable::Connect { bus, source },
        other => other,
    })
}

/// ModemManager's current unique name, `None` when it is not running.
async fn name_owner(bus: &Bus, conn: &Connection) -> Result<Option<String>, Unavailable> {
    let reply = tokio::time::timeout(
        CALL_TIMEOUT,
        conn.call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "GetNameOwner",
            &(SERVICE,),
        ),
    )
    .await;
    match reply {
        Err(_) => Err(Unavailable::Timeout { bus: bus.clone(), what: "GetNameOwner" }),
        Ok(Ok(msg)) => Ok(msg.body().deserialize::<String>().ok()),
        // NameHasNoOwner: not running. Any other error is the bus's.
        Ok(Err(zbus::Error::FDO(e))) if matches!(*e, zbus::fdo::Error::NameHasNoOwner(_)) => Ok(None),
        Ok(Err(zbus::Error::MethodError(name, _, _)))
            if name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            Ok(None)
        }
        Ok(Err(source)) => Err(Unavailable::Call { bus: bus.clone(), what: "GetNameOwner", source }),
    }
}

/// Interfaces and their properties, per modem object path.
type Objects = HashMap<String, HashMap<String, HashMap<String, OwnedVariant>>>;

/// `GetManagedObjects`, modem objects only, and when its reply arrived.
async fn managed_objects(bus: &Bus, conn: &Connection) -> Result<(Objects, Sequence), Unavailable> {
    let reply = bounded(
        bus,
        "GetManagedObjects",
        conn.call_method(Some(SERVICE), ROOT_PATH, Some(IFACE_OBJECT_MANAGER), "GetManagedObjects", &()),
    )
    .await?;
    let objects: HashMap<OwnedObjectPath, HashMap<String, HashMap<String, OwnedVariant>>> =
        reply.body().deserialize().map_err(|source| Unavailable::Call {
            bus: bus.clone(),
            what: "reading GetManagedObjects' reply",
            source,
        })?;
    let modems = objects
        .into_iter()
        .map(|(path, interfaces)| (path.as_str().to_string(), interfaces))
        .filter(|(path, _)| path.starts_with(MODEM_PATH_PREFIX))
        .collect();
    Ok((modems, reply.recv_position()))
}

/// The serving cell from `Location.GetLocation`; `None` when the call fails
/// (a hint missing, not an error).
async fn read_cell(conn: &Connection, path: &str) -> Option<String> {
    let call = conn.call_method(Some(SERVICE), path, Some(IFACE_LOCATION), "GetLocation", &());
    let reply = match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => {
            tracing::debug!(modem = %path, error = %e, "modem-manager: GetLocation failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(modem = %path, "modem-manager: GetLocation did not answer");
            return None;
        }
    };
    let location = reply.body().deserialize::<HashMap<u32, OwnedVariant>>().ok()?;
    location.get(&LOCATION_SOURCE_3GPP_LAC_CI).and_then(|v| as_str(v)).and_then(cell_id)
}

/// Whether to go on: `Stop` once the receiver is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

#[derive(Debug)]
enum OwnerFlow {
    Flow(Flow),
    Resync,
}

/// Runs `fut` within [`CALL_TIMEOUT`], naming the call in the error.
async fn bounded<T>(
    bus: &Bus,
    what: &'static str,
    fut: impl Future<Output = zbus::Result<T>>,
) -> Result<T, Unavailable> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(Unavailable::Call { bus: bus.clone(), what, source }),
        Err(_) => Err(Unavailable::Timeout { bus: bus.clone(), what }),
    }
}

async fn subscribe(
    bus: &Bus,
    conn: &Connection,
    rule: zbus::Result<MatchRule<'_>>,
    what: &'static str,
) -> Result<MessageStream, Unavailable> {
    let rule = rule.map_err(|source| Unavailable::Call { bus: bus.clone(), what, source })?;
    bounded(bus, what, MessageStream::for_match_rule(rule, conn, None)).await
}

/// One modem object as far as it has been read.
#[derive(Debug, Default)]
struct ModemEntry {
    props: ModemProps,
    /// The report last sent (`None`: not announced yet, the object has no
    /// `Modem` interface so far).
    sent: Option<ModemReport>,
    /// `Signal.Setup` was asked for (once per appearance).
    signal_setup_done: bool,
}

/// The watch's state: the connection, ModemManager's current unique name,
/// and what each modem object said.
#[derive(Debug)]
struct Watcher {
    bus: Bus,
    conn: Connection,
    tx: mpsc::Sender<ModemEvent>,
    owner: Option<String>,
    modems: BTreeMap<String, ModemEntry>,
    /// When the last snapshot's reply arrived: signals received before it
    /// are older than the snapshot and are ignored.
    snapshot_at: Option<Sequence>,
}

impl Watcher {
    /// The bus connection ended (the bus daemon stopped): ModemManager is
    /// lost with it, unless that was reported already.
    async fn bus_closed(&mut self) -> Unavailable {
        if self.owner.take().is_some() {
            let reason = format!("the connection to the {} closed", self.bus);
            let _ = self.tx.send(ModemEvent::ServiceLost(reason)).await;
        }
        Unavailable::BusClosed { bus: self.bus.clone() }
    }

    async fn send(&self, event: ModemEvent) -> Flow {
        if self.tx.send(event).await.is_ok() { Flow::Go } else { Flow::Stop }
    }

    /// Reads every modem (`GetManagedObjects`) and announces the ones not
    /// announced yet; forgets and reports gone the ones no longer there.
    async fn sync(&mut self) -> Result<Flow, Unavailable> {
        let (objects, at) = managed_objects(&self.bus, &self.conn).await?;
        self.snapshot_at = Some(at);
        let gone: Vec<String> = self.modems.keys().filter(|p| !objects.contains_key(*p)).cloned().collect();
        for path in gone {
            if self.modems.remove(&path).is_some_and(|e| e.sent.is_some())
                && self.send(ModemEvent::Gone(path)).await == Flow::Stop
            {
                return Ok(Flow::Stop);
            }
        }
        for (path, interfaces) in objects {
            let entry = self.modems.entry(path.clone()).or_default();
            for (iface, props) in &interfaces {
                entry.props.add_interface(iface, props);
            }
            if self.refresh(&path).await == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        tracing::info!(modems = self.modems.len(), bus = %self.bus, "modem-manager: following ModemManager");
        Ok(Flow::Go)
    }

    /// [`Watcher::sync`] at run time: a failure is retried (ModemManager may
    /// still be starting), never fatal.
    async fn sync_or_retry(&mut self, pending: &mut bool) -> Flow {
        match self.sync().await {
            Ok(flow) => {
                *pending = false;
                flow
            }
            Err(e) => {
                tracing::debug!(error = %e, "modem-manager: reading the modems failed; retrying");
                Flow::Go
            }
        }
    }

    async fn on_owner_changed(&mut self, msg: &Message) -> OwnerFlow {
        let Ok((name, _old, new)) = msg.body().deserialize::<(String, String, String)>() else {
            return OwnerFlow::Flow(Flow::Go);
        };
        if name != SERVICE {
            return OwnerFlow::Flow(Flow::Go);
        }
        let new = (!new.is_empty()).then_some(new);
        if new == self.owner {
            return OwnerFlow::Flow(Flow::Go);
        }
        let had_owner = self.owner.take().is_some();
        self.modems.clear();
        self.snapshot_at = None;
        self.owner = new;
        if had_owner {
            tracing::warn!(bus = %self.bus, "modem-manager: ModemManager left the bus");
            let reason = format!("ModemManager ({SERVICE}) left the {}", self.bus);
            if self.send(ModemEvent::ServiceLost(reason)).await == Flow::Stop {
                return OwnerFlow::Flow(Flow::Stop);
            }
        }
        if self.owner.is_some() {
            tracing::info!(bus = %self.bus, "modem-manager: ModemManager is back");
            OwnerFlow::Resync
        } else {
            OwnerFlow::Flow(Flow::Go)
        }
    }

    async fn on_signal(&mut self, msg: &Message) -> Flow {
        let header = msg.header();
        // Only ModemManager's current instance speaks for the modems.
        if header.sender().map(|s| s.as_str()) != self.owner.as_deref() {
            return Flow::Go;
        }
        // Older than the snapshot: already part of it.
        if self.snapshot_at.is_none_or(|at| msg.recv_position() < at) {
            return Flow::Go;
        }
        let (Some(iface), Some(member)) = (header.interface(), header.member()) else {
            return Flow::Go;
        };
        let path = header.path().map(|p| p.as_str().to_string()).unwrap_or_default();
        let body = msg.body();
        match (iface.as_str(), member.as_str()) {
            (IFACE_OBJECT_MANAGER, "InterfacesAdded") => {
                let Ok((obj, interfaces)) =
                    body.deserialize::<(OwnedObjectPath, HashMap<String, HashMap<String, OwnedVariant>>)>()
                else {
                    return Flow::Go;
                };
                let obj = obj.as_str().to_string();
                if !obj.starts_with(MODEM_PATH_PREFIX) {
                    return Flow::Go;
                }
                let entry = self.modems.entry(obj.clone()).or_default();
                for (iface, props) in &interfaces {
                    entry.props.add_interface(iface, props);
                }
                self.refresh(&obj).await
            }
            (IFACE_OBJECT_MANAGER, "InterfacesRemoved") => {
                let Ok((obj, interfaces)) = body.deserialize::<(OwnedObjectPath, Vec<String>)>() else {
                    return Flow::Go;
                };
                let obj = obj.as_str().to_string();
                let Some(entry) = self.modems.get_mut(&obj) else { return Flow::Go };
                if interfaces.iter().any(|i| i == IFACE_MODEM) {
                    let announced = self.modems.remove(&obj).is_some_and(|e| e.sent.is_some());
                    return if announced { self.send(ModemEvent::Gone(obj)).await } else { Flow::Go };
                }
                for iface in &interfaces {
                    entry.props.remove_interface(iface);
                }
                self.refresh(&obj).await
            }
            (IFACE_PROPERTIES, "PropertiesChanged") => {
                let Ok((iface, changed, _invalidated)) =
                    body.deserialize::<(String, HashMap<String, OwnedVariant>, Vec<String>)>()
                else {
                    return Flow::Go;
                };
                let Some(entry) = self.modems.get_mut(&path) else { return Flow::Go };
                entry.props.apply(&iface, &changed);
                self.refresh(&path).await
            }
            (IFACE_MODEM, "StateChanged") => {
                let Ok((old, new, reason)) = body.deserialize::<(i32, i32, u32)>() else {
                    return Flow::Go;
                };
                tracing::debug!(
                    modem = %path,
                    old = ?ModemState::from_raw(old),
                    new = ?ModemState::from_raw(new),
                    reason,
                    "modem-manager: state changed"
                );
                let Some(entry) = self.modems.get_mut(&path) else { return Flow::Go };
                entry.props.state = Some(new);
                self.refresh(&path).await
            }
            _ => Flow::Go,
        }
    }

    /// After a modem's properties changed: asks for signal refreshes and
    /// reads the cell where that is new, then sends the report if it differs
    /// from the last one sent.
    async fn refresh(&mut self, path: &str) -> Flow {
        let Some(entry) = self.modems.get(path) else { return Flow::Go };
        if !entry.props.has_modem {
            return Flow::Go;
        }
        let newly_announced = entry.sent.is_none();
        let wants_signal_setup = entry.props.has_signal
            && !entry.signal_setup_done
            && entry.props.signal_rate.is_none_or(|r| r == 0 || r > SIGNAL_RATE_S);
        if wants_signal_setup {
            self.setup_signal(path).await;
        }
        if newly_announced {
            self.read_location(path).await;
        }
        let Some(entry) = self.modems.get_mut(path) else { return Flow::Go };
        let report = entry.props.report();
        if entry.sent.as_ref() == Some(&report) {
            return Flow::Go;
        }
        entry.sent = Some(report.clone());
        let event = if newly_announced {
            ModemEvent::Appeared(path.to_string(), report)
        } else {
            ModemEvent::Changed(path.to_string(), report)
        };
        self.send(event).await
    }

    /// Asks ModemManager to refresh the extended signal values every
    /// [`SIGNAL_RATE_S`]; a refusal (old ModemManager, modem without the
    /// feature, policy) only leaves RSRP/RSRQ/SINR unknown.
    async fn setup_signal(&mut self, path: &str) {
        if let Some(entry) = self.modems.get_mut(path) {
            entry.signal_setup_done = true;
        }
        let call = self.conn.call_method(Some(SERVICE), path, Some(IFACE_SIGNAL), "Setup", &(SIGNAL_RATE_S,));
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => {
                tracing::debug!(modem = %path, rate = SIGNAL_RATE_S, "modem-manager: signal refresh set up")
            }
            Ok(Err(e)) => {
                tracing::info!(modem = %path, error = %e, "modem-manager: no extended signal values (Setup refused)")
            }
            Err(_) => tracing::info!(modem = %path, "modem-manager: Signal.Setup did not answer"),
        }
    }

    /// Reads the serving cell where the 3GPP location source is enabled.
    async fn read_location(&mut self, path: &str) {
        if !self.modems.get(path).is_some_and(|e| e.props.wants_location_read()) {
            return;
        }
        let cell = read_cell(&self.conn, path).await;
        if let Some(entry) = self.modems.get_mut(path) {
            entry.props.cell = cell;
        }
    }

    /// Cell ids change without a signal unless ModemManager was asked to
    /// signal location; read them now and then for announced modems.
    async fn poll_locations(&mut self) -> Flow {
        let paths: Vec<String> = self
            .modems
            .iter()
            .filter(|(_, e)| e.sent.is_some() && !e.props.location_signals)
            .map(|(p, _)| p.clone())
            .collect();
        for path in paths {
            self.read_location(&path).await;
            if self.refresh(&path).await == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Go
    }
}

/// Extended signal values of one technology (`Signal.Lte`, `Signal.Nr5g`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct SignalValues {
    rsrp: Option<f64>,
    rsrq: Option<f64>,
    snr: Option<f64>,
}

impl SignalValues {
    fn from_dict(v: &Variant<'_>) -> Self {
        let mut out = Self::default();
        if let Variant::Dict(dict) = peel(v) {
            for (k, v) in dict.iter() {
                let (Some(key), Some(value)) = (as_str(k), as_f64(v)) else { continue };
                match key {
                    "rsrp" => out.rsrp = Some(value),
                    "rsrq" => out.rsrq = Some(value),
                    "snr" => out.snr = Some(value),
                    _ => {}
                }
            }
        }
        out
    }

    fn is_empty(self) -> bool {
        self.rsrp.is_none() && self.rsrq.is_none() && self.snr.is_none()
    }
}

/// The raw properties of one modem object, as ModemManager last said them.
/// Everything is optional: interfaces come and go with the modem's state.
#[derive(Clone, Debug, Default, PartialEq)]
struct ModemProps {
    has_modem: bool,
    has_3gpp: bool,
    has_signal: bool,
    has_location: bool,
    device: Option<String>,
    ports: Vec<(String, u32)>,
    state: Option<i32>,
    access: u32,
    quality: Option<(u32, bool)>,
    registration: Option<u32>,
    operator_name: Option<String>,
    operator_code: Option<String>,
    signal_rate: Option<u32>,
    lte: SignalValues,
    nr5g: SignalValues,
    location_enabled: u32,
    location_signals: bool,
    cell: Option<String>,
}

impl ModemProps {
    fn add_interface(&mut self, iface: &str, props: &HashMap<String, OwnedVariant>) {
        match iface {
            IFACE_MODEM => self.has_modem = true,
            IFACE_3GPP => self.has_3gpp = true,
            IFACE_SIGNAL => self.has_signal = true,
            IFACE_LOCATION => self.has_location = true,
            _ => return,
        }
        self.apply(iface, props);
    }

    fn remove_interface(&mut self, iface: &str) {
        match iface {
            IFACE_MODEM => self.has_modem = false,
            IFACE_3GPP => {
                self.has_3gpp = false;
                self.registration = None;
                self.operator_name = None;
                self.operator_code = None;
            }
            IFACE_SIGNAL => {
                self.has_signal = false;
                self.signal_rate = None;
                self.lte = SignalValues::default();
                self.nr5g = SignalValues::default();
            }
            IFACE_LOCATION => {
                self.has_location = false;
                self.location_enabled = 0;
                self.location_signals = false;
                self.cell = None;
            }
            _ => {}
        }
    }

    /// Takes the properties of `iface` this advisor uses; ignores the rest
    /// and any value of an unexpected type (a newer ModemManager may change
    /// one; a wrong type must not become a wrong reading).
    fn apply(&mut self, iface: &str, props: &HashMap<String, OwnedVariant>) {
        for (name, value) in props {
            let v: &Variant<'_> = value;
            match (iface, name.as_str()) {
                (IFACE_MODEM, "Device") => self.device = as_str(v).map(str::to_string),
                (IFACE_MODEM, "Ports") => self.ports = ports(v).unwrap_or_default(),
                (IFACE_MODEM, "State") => self.state = as_i32(v),
                (IFACE_MODEM, "AccessTechnologies") => self.access = as_u32(v).unwrap_or(0),
                (IFACE_MODEM, "SignalQuality") => self.quality = signal_quality(v),
                (IFACE_3GPP, "RegistrationState") => self.registration = as_u32(v),
                (IFACE_3GPP, "OperatorName") => self.operator_name = non_empty(as_str(v)),
                (IFACE_3GPP, "OperatorCode") => self.operator_code = non_empty(as_str(v)),
                (IFACE_SIGNAL, "Rate") => self.signal_rate = as_u32(v),
                (IFACE_SIGNAL, "Lte") => self.lte = SignalValues::from_dict(v),
                (IFACE_SIGNAL, "Nr5g") => self.nr5g = SignalValues::from_dict(v),
                (IFACE_LOCATION, "Enabled") => self.location_enabled = as_u32(v).unwrap_or(0),
                (IFACE_LOCATION, "SignalsLocation") => self.location_signals = as_bool(v).unwrap_or(false),
                // Only filled when ModemManager signals location.
                (IFACE_LOCATION, "Location") => {
                    if let Variant::Dict(dict) = peel(v) {
                        self.cell = dict
                            .iter()
                            .find(|(k, _)| as_u32(k) == Some(LOCATION_SOURCE_3GPP_LAC_CI))
                            .and_then(|(_, v)| as_str(v))
                            .and_then(cell_id);
                    }
                }
                _ => {}
            }
        }
    }

    /// Whether the cell must be read with `GetLocation`: the 3GPP source is
    /// on (an operator's choice) and ModemManager does not signal it.
    fn wants_location_read(&self) -> bool {
        self.has_location
            && self.location_enabled & LOCATION_SOURCE_3GPP_LAC_CI != 0
            && !self.location_signals
    }

    fn report(&self) -> ModemReport {
        let access = AccessTechnologies(self.access);
        let five_g_only =
            access.contains(AccessTechnologies::NR5G) && !access.contains(AccessTechnologies::LTE);
        let signal = if five_g_only && !self.nr5g.is_empty() {
            self.nr5g
        } else if !self.lte.is_empty() {
            self.lte
        } else {
            self.nr5g
        };
        ModemReport {
            device: self.device.clone().unwrap_or_default(),
            net_ports: self
                .ports
                .iter()
                .filter(|(_, t)| *t == PORT_TYPE_NET)
                .map(|(n, _)| n.clone())
                .collect(),
            state: self.state.map_or(ModemState::NotRead, ModemState::from_raw),
            access,
            registration: self.registration.map(RegistrationState::from_raw),
            operator: self.operator_name.clone().or_else(|| self.operator_code.clone()),
            operator_code: self.operator_code.clone(),
            cell_id: self.cell.clone(),
            signal_quality_pct: self.quality.and_then(|(pct, recent)| recent.then_some(pct.min(100))),
            rsrp_dbm: signal.rsrp,
            rsrq_db: signal.rsrq,
            sinr_db: signal.snr,
        }
    }
}

/// `"MCC,MNC,LAC,CI[,TAC]"` (ModemManager's 3GPP location) → `"MCC-MNC-CI"`.
fn cell_id(lac_ci: &str) -> Option<String> {
    let mut fields = lac_ci.split(',').map(str::trim);
    let (mcc, mnc, _lac, ci) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    if mcc.is_empty() || mnc.is_empty() || ci.is_empty() || ci.chars().all(|c| c == '0') {
        return None;
    }
    Some(format!("{mcc}-{mnc}-{ci}"))
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// Looks through variants wrapped in variants.
fn peel<'v, 'a>(v: &'v Variant<'a>) -> &'v Variant<'a> {
    match v {
        Variant::Variant(inner) => peel(inner),
        other => other,
    }
}

fn as_u32(v: &Variant<'_>) -> Option<u32> {
    match peel(v) {
        Variant::U32(x) => Some(*x),
        _ => None,
    }
}

fn as_i32(v: &Variant<'_>) -> Option<i32> {
    match peel(v) {
        Variant::I32(x) => Some(*x),
        _ => None,
    }
}

fn as_bool(v: &Variant<'_>) -> Option<bool> {
    match peel(v) {
        Variant::Bool(x) => Some(*x),
        _ => None,
    }
}

fn as_f64(v: &Variant<'_>) -> Option<f64> {
    match peel(v) {
        Variant::F64(x) if x.is_finite() => Some(*x),
        _ => None,
    }
}

fn as_str<'v>(v: &'v Variant<'_>) -> Option<&'v str> {
    match peel(v) {
        Variant::Str(s) => Some(s.as_str()),
        _ => None,
    }
}

/// `Ports`: `a(su)`, name and `MMModemPortType`.
fn ports(v: &Variant<'_>) -> Option<Vec<(String, u32)>> {
    let Variant::Array(array) = peel(v) else { return None };
    Some(
        array
            .inner()
            .iter()
            .filter_map(|item| match peel(item) {
                Variant::Structure(s) => match s.fields() {
                    [name, kind] => Some((as_str(name)?.to_string(), as_u32(kind)?)),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
    )
}

/// `SignalQuality`: `(ub)`, percent and whether it is recent.
fn signal_quality(v: &Variant<'_>) -> Option<(u32, bool)> {
    let Variant::Structure(s) = peel(v) else { return None };
    match s.fields() {
        [pct, recent] => Some((as_u32(pct)?, as_bool(recent)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lte(rsrp: f64) -> ModemReport {
        ModemReport {
            device: "/sys/devices/usb1/1-1".into(),
            net_ports: vec!["wwan0".into()],
            state: ModemState::Connected,
            access: AccessTechnologies::LTE,
            registration: Some(RegistrationState::Home),
            operator: Some("Carrier".into()),
            operator_code: Some("26201".into()),
            cell_id: Some("262-01-1A2B3C".into()),
            signal_quality_pct: Some(70),
            rsrp_dbm: Some(rsrp),
            rsrq_db: Some(-10.0),
            sinr_db: Some(12.0),
        }
    }

    #[test]
    fn nothing_changed_is_no_warning() {
        assert_eq!(early_warning(&lte(-90.0), &lte(-90.0)), None);
        // Small wobbles are normal.
        assert_eq!(early_warning(&lte(-90.0), &lte(-97.0)), None);
    }

    #[test]
    fn technology_change_is_a_handover() {
        let before = lte(-90.0);
        let after = ModemReport { access: AccessTechnologies::NR5G, ..lte(-90.0) };
        assert_eq!(
            early_warning(&before, &after),
            Some(EarlyWarning::Handover {
                from: RadioCell { access: AccessTechnologies::LTE, cell_id: before.cell_id.clone() },
                to: RadioCell { access: AccessTechnologies::NR5G, cell_id: before.cell_id.clone() },
            })
        );
    }

    #[test]
    fn cell_change_is_a_handover_but_unknown_cell_is_not() {
        let after = ModemReport { cell_id: Some("262-01-1A2B3D".into()), ..lte(-90.0) };
        assert!(matches!(early_warning(&lte(-90.0), &after), Some(EarlyWarning::Handover { .. })));
        let unknown = ModemReport { cell_id: None, ..lte(-90.0) };
        assert_eq!(early_warning(&lte(-90.0), &unknown), None);
        // Technology appearing from nothing is not a handover.
        let none = ModemReport { access: AccessTechnologies(0), state: ModemState::Registered, ..lte(-90.0) };
        let reg = ModemReport { state: ModemState::Registered, ..lte(-90.0) };
        assert_eq!(early_warning(&none, &reg), None);
    }

    #[test]
    fn rsrp_drop_of_ten_db_is_a_collapse() {
        assert_eq!(
            early_warning(&lte(-85.0), &lte(-95.0)),
            Some(EarlyWarning::SignalCollapse {
                rsrp_dbm: Some((-85.0, -95.0)),
                quality_pct: Some((70, 70))
            })
        );
        assert_eq!(early_warning(&lte(-85.0), &lte(-94.9)), None);
    }

    #[test]
    fn crossing_the_cell_edge_is_a_collapse_once() {
        assert!(matches!(
            early_warning(&lte(-110.0), &lte(-116.0)),
            Some(EarlyWarning::SignalCollapse { .. })
        ));
        // Already beyond the edge: no new warning for a small change.
        assert_eq!(early_warning(&lte(-116.0), &lte(-118.0)), None);
        // RSRP newly known and already beyond the edge.
        let unknown = ModemReport { rsrp_dbm: None, ..lte(-90.0) };
        assert!(matches!(early_warning(&unknown, &lte(-120.0)), Some(EarlyWarning::SignalCollapse { .. })));
    }

    #[test]
    fn quality_drop_of_thirty_points_is_a_collapse() {
        let after = ModemReport { signal_quality_pct: Some(40), ..lte(-90.0) };
        assert!(matches!(
            early_warning(&lte(-90.0), &after),
            Some(EarlyWarning::SignalCollapse { quality_pct: Some((70, 40)), .. })
        ));
        let after = ModemReport { signal_quality_pct: Some(41), ..lte(-90.0) };
        assert_eq!(early_warning(&lte(-90.0), &after), None);
    }

    #[test]
    fn losing_the_data_connection_wins_over_everything() {
        let after = ModemReport {
            state: ModemState::Registered,
            access: AccessTechnologies::UMTS,
            rsrp_dbm: Some(-125.0),
            ..lte(-80.0)
        };
        assert_eq!(early_warning(&lte(-80.0), &after), Some(EarlyWarning::Disconnected));
    }

    #[test]
    fn losing_registration_is_deregistered() {
        let before = ModemReport { state: ModemState::Registered, ..lte(-90.0) };
        let searching = ModemReport { state: ModemState::Searching, ..before.clone() };
        assert_eq!(early_warning(&before, &searching), Some(EarlyWarning::Deregistered));
        let denied = ModemReport { registration: Some(RegistrationState::Denied), ..before.clone() };
        assert_eq!(early_warning(&before, &denied), Some(EarlyWarning::Deregistered));
        // Coming back is no warning.
        assert_eq!(early_warning(&searching, &before), None);
    }

    #[test]
    fn access_technology_names() {
        assert_eq!(
            AccessTechnologies(AccessTechnologies::LTE.0 | AccessTechnologies::NR5G.0).names(),
            ["LTE", "5GNR"]
        );
        assert_eq!(AccessTechnologies(1 << 9).to_string(), "HSPA+");
        assert_eq!(AccessTechnologies(1 << 30).names(), ["bit30"]);
        assert_eq!(AccessTechnologies(0).to_string(), "none");
        assert!(AccessTechnologies(0xc000).contains(AccessTechnologies::NR5G));
        assert!(!AccessTechnologies(0).contains(AccessTechnologies(0)));
    }

    #[test]
    fn states_and_registrations_from_raw() {
        assert_eq!(ModemState::from_raw(-1), ModemState::Failed);
        assert_eq!(ModemState::from_raw(11), ModemState::Connected);
        assert_eq!(ModemState::from_raw(0), ModemState::Unknown(0));
        assert_eq!(ModemState::from_raw(42), ModemState::Unknown(42));
        assert_eq!(RegistrationState::from_raw(5), RegistrationState::Roaming);
        assert_eq!(RegistrationState::from_raw(99), RegistrationState::Other(99));
        assert!(RegistrationState::Roaming.carries_data());
        assert!(!RegistrationState::HomeSmsOnly.carries_data());
    }

    #[test]
    fn cell_ids_from_3gpp_location() {
        assert_eq!(cell_id("262,01,84CD,1A2B3C,6FFE").as_deref(), Some("262-01-1A2B3C"));
        assert_eq!(cell_id("310,260,8BE3,2BAF").as_deref(), Some("310-260-2BAF"));
        assert_eq!(cell_id("310,260,8BE3"), None);
        assert_eq!(cell_id("310,260,0,0"), None);
        assert_eq!(cell_id(""), None);
    }

    fn props(entries: Vec<(&str, Variant<'static>)>) -> HashMap<String, OwnedVariant> {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), OwnedVariant::try_from(v).expect("owned variant")))
            .collect()
    }

    #[test]
    fn properties_become_a_report_and_wrong_types_are_ignored() {
        let mut m = ModemProps::default();
        m.add_interface(
            IFACE_MODEM,
            &props(vec![
                ("Device", Variant::from("/sys/devices/usb1/1-2")),
                ("State", Variant::from(11i32)),
                ("AccessTechnologies", Variant::from(AccessTechnologies::LTE.0)),
                ("SignalQuality", Variant::from((65u32, true))),
                (
                    "Ports",
                    Variant::from(vec![("cdc-wdm0".to_string(), 6u32), ("wwan0".to_string(), PORT_TYPE_NET)]),
                ),
                // A wrong type must be ignored, not misread.
                ("Manufacturer", Variant::from(7u32)),
            ]),
        );
        let lte: HashMap<String, Variant<'static>> = [
            ("rsrp".to_string(), Variant::from(-97.5)),
            ("rsrq".to_string(), Variant::from(-11.0)),
            ("snr".to_string(), Variant::from(8.5)),
        ]
        .into_iter()
        .collect();
        m.add_interface(
            IFACE_SIGNAL,
            &props(vec![("Lte", Variant::from(lte)), ("Rate", Variant::from(0u32))]),
        );
        m.add_interface(
            IFACE_3GPP,
            &props(vec![
                ("RegistrationState", Variant::from(1u32)),
                ("OperatorName", Variant::from("")),
                ("OperatorCode", Variant::from("26201")),
            ]),
        );
        let r = m.report();
        assert_eq!(r.device, "/sys/devices/usb1/1-2");
        assert_eq!(r.net_ports, ["wwan0"]);
        assert_eq!(r.state, ModemState::Connected);
        assert_eq!(r.access, AccessTechnologies::LTE);
        assert_eq!(r.signal_quality_pct, Some(65));
        assert_eq!((r.rsrp_dbm, r.rsrq_db, r.sinr_db), (Some(-97.5), Some(-11.0), Some(8.5)));
        assert_eq!(r.registration, Some(RegistrationState::Home));
        // An empty name falls back to the code.
        assert_eq!(r.operator.as_deref(), Some("26201"));

        m.apply(IFACE_MODEM, &props(vec![("State", Variant::from("eleven"))]));
        assert_eq!(m.report().state, ModemState::NotRead);
        m.apply(IFACE_MODEM, &props(vec![("SignalQuality", Variant::from((65u32, false)))]));
        assert_eq!(m.report().signal_quality_pct, None);
        m.remove_interface(IFACE_SIGNAL);
        assert_eq!(m.report().rsrp_dbm, None);
    }
}
