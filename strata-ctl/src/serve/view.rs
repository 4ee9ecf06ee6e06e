//! The published view: what the control loop tells the people watching.
//!
//! The daemon's event loop owns the decisions; the HTTP and status tasks
//! only read. Between them sits one [`Exposition`]: a few fields fixed at
//! start-up (where the maps are pinned, the links' interfaces), and a
//! [`Published`] snapshot the loop replaces through [`Exposition::publish`]
//! after each decision. Readers take a copy, so a slow scrape never holds the
//! loop up.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use crate::{
    control::{controller::LinkReport, fit::Fit},
    dataplane::sampling,
    inband::guard::GuardCounters,
};

/// Packets by kernel drop reason name.
pub type DropCounts = Vec<(String, u64)>;

/// What the control loop publishes for the exposition.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// `static` or `adaptive`.
    pub mode: &'static str,
    /// Whether the adaptive controller is running.
    pub controller_up: bool,
    /// The controller's view of each link (empty without it).
    pub links: Vec<LinkReport>,
    /// Decisions written to the kernel so far.
    pub weight_updates: u64,
    /// When the last one was written.
    pub last_update: Option<SystemTime>,
    /// IP bytes of probes and packet trains sent per link.
    pub probe_bytes: Vec<(u8, u64)>,
    /// `os_signals`: the tier configured.
    pub os_signals: &'static str,
    /// Each OS advisor and its state ("active", "off: …", "unavailable: …").
    pub advisors: Vec<(&'static str, String)>,
    /// Where each edge link is bound now (device, address, re-binds).
    pub bindings: Vec<BindingView>,
    /// What fits within the deadline, as last computed.
    pub bitrate: BitrateView,
    /// The bitrate socket's subscribers.
    pub bitrate_subscribers: SubscriberCounts,
    /// Session authentication: the handshake's state and counters.
    pub auth: AuthView,
}

/// Session authentication as shown by status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthView {
    /// `none` or `keys` (empty: not published, e.g. an older daemon).
    pub mode: String,
    /// This side's public key fingerprint (first 8 hex digits).
    #[serde(default)]
    pub own_key: String,
    /// The edge: its session with the hub; the hub: one per admitted car.
    #[serde(default)]
    pub sessions: Vec<SessionView>,
    /// Edge: initiations sent.
    #[serde(default)]
    pub initiations_sent: u64,
    /// Handshakes completed (edge: responses accepted; hub: cars admitted).
    #[serde(default)]
    pub completed: u64,
    /// Handshake messages refused, by reason (`unknown_key`, `bad_message`,
    /// `rate_limited`, `replayed`, ...).
    #[serde(default)]
    pub rejected: Vec<(String, u64)>,
}

/// One authenticated session.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionView {
    /// The other side: the car's name on the hub, `hub` on the edge.
    pub peer: String,
    /// Its public key fingerprint.
    pub fingerprint: String,
    /// Whether keys are held.
    pub established: bool,
    /// The current keys' epoch (0: none).
    pub epoch: u32,
    /// The previous keys' epoch while still accepted.
    #[serde(default)]
    pub previous_epoch: Option<u32>,
    /// When the current keys were made (Unix time, s).
    #[serde(default)]
    pub last_rekey_unix_s: Option<u64>,
}

/// What fits within the deadline, as the control loop last computed it
/// (see [`crate::control::fit`]); published on the bitrate socket, in status
/// and in metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BitrateView {
    /// The one-way delay budget it is computed for.
    pub deadline: Duration,
    /// The last computation; `None` while there is none.
    pub fit: Option<Fit>,
    /// When it was computed.
    pub at: Option<SystemTime>,
    /// Why there is none (static mode, the hub, no controller).
    pub unknown: String,
}

/// The bitrate socket's subscribers, so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberCounts {
    /// Connected now.
    pub connected: u64,
    /// Ever connected.
    pub accepted: u64,
    /// Turned away: the most the socket takes were connected.
    pub refused: u64,
    /// Disconnected by the daemon for not reading.
    pub stalled: u64,
    /// Messages a slow subscriber did not get (a newer one replaced them).
    pub skipped: u64,
}

impl Published {
    /// The ifindex link `id` is bound to now: a link that moved to another
    /// interface (a re-enumerated modem) is read there; `configured` until
    /// the OS view says otherwise.
    pub(crate) fn current_index(&self, id: u8, configured: u32) -> u32 {
        self.bindings.iter().find(|b| b.id == id).map_or(configured, |b| b.index)
    }
}

/// State shared between the control loop and the HTTP task.
#[derive(Debug)]
pub struct Exposition {
    pub(super) pin_dir: PathBuf,
    /// The data plane's programs (name, kernel id) and whether the kernel
    /// keeps their run-time statistics (`BPF_ENABLE_STATS`).
    pub(super) programs: Mutex<(Vec<(&'static str, u32)>, bool)>,
    /// Host-side sampling: the kernel's drop reason names when running,
    /// why not otherwise.
    pub(super) sampling: Mutex<Result<Vec<(u32, String)>, String>>,
    /// Interface name and index per link id, where known (the edge's links).
    pub(super) interfaces: Vec<(u8, String, u32)>,
    pub(super) started: Instant,
    pub(super) published: Mutex<Published>,
    /// What the in-band channel and the served sockets turned away.
    pub(super) guards: Arc<GuardCounters>,
}

impl Exposition {
    /// The exposition of the instance whose maps are pinned in `pin_dir`.
    pub fn new(pin_dir: PathBuf, interfaces: Vec<(u8, String, u32)>, mode: &'static str) -> Arc<Self> {
        Self::with_guards(pin_dir, interfaces, mode, Arc::default())
    }

    /// [`Exposition::new`] sharing `guards` with the in-band tasks started
    /// before it.
    pub fn with_guards(
        pin_dir: PathBuf,
        interfaces: Vec<(u8, String, u32)>,
        mode: &'static str,
        guards: Arc<GuardCounters>,
    ) -> Arc<Self> {
        Arc::new(Self {
            pin_dir,
            programs: Mutex::new((Vec::new(), false)),
            sampling: Mutex::new(Err("not enabled (metrics.kernel_sampling)".into())),
            interfaces,
            started: Instant::now(),
            published: Mutex::new(Published { mode, ..Published::default() }),
            guards,
        })
    }

    /// The counters of what the in-band channel and the served sockets
    /// turned away (shared with the probers and the hub's responder).
    pub fn guards(&self) -> Arc<GuardCounters> {
        self.guards.clone()
    }

    /// Tells the exposition which programs to report, and whether the
    /// kernel is keeping their run-time statistics.
    pub fn set_programs(&self, ids: Vec<(&'static str, u32)>, stats_enabled: bool) {
        if let Ok(mut p) = self.programs.lock() {
            *p = (ids, stats_enabled);
        }
    }

    /// Records whether host-side sampling runs: the drop reason names, or why not.
    pub fn set_sampling(&self, state: Result<Vec<(u32, String)>, String>) {
        if let Ok(mut s) = self.sampling.lock() {
            *s = state;
        }
    }

    /// Host-side sampling: `Ok` if it runs, else why not.
    pub fn sampling(&self) -> Result<(), String> {
        self.sampling
            .lock()
            .map_or_else(|_| Err("poisoned".into()), |s| s.as_ref().map(|_| ()).map_err(Clone::clone))
    }

    /// The kernel's drops of packets queued on each watched link, by link
    /// id and drop reason name — `None` while host-side sampling does not
    /// run, so that "unknown" is never shown as "no drops". Reads the pinned
    /// sampling map: I/O, for the gathering steps of `serve` only.
    pub fn kernel_drops(&self) -> Option<Vec<(u8, DropCounts)>> {
        let reasons = self.sampling.lock().ok()?.as_ref().ok()?.clone();
        let ids: Vec<u8> = self.interfaces.iter().map(|(id, ..)| *id).collect();
        let values: Vec<u32> = reasons.iter().map(|(v, _)| *v).collect();
        let drops = sampling::read_drops(&self.pin_dir, &ids, &values).ok()?;
        Some(
            ids.into_iter()
                .zip(drops)
                .map(|(id, row)| (id, row.into_iter().map(|(r, n)| (reason_name(&reasons, r), n)).collect()))
                .collect(),
        )
    }

    /// A copy of the published bitrate alone (cheaper than the whole view,
    /// for the 10 Hz socket).
    pub fn bitrate(&self) -> BitrateView {
        self.published.lock().map(|p| p.bitrate.clone()).unwrap_or_default()
    }

    /// A copy of the published view.
    pub fn published(&self) -> Published {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Time since the daemon started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Where the instance's maps are pinned.
    pub fn pin_dir(&self) -> &std::path::Path {
        &self.pin_dir
    }

    /// Replaces the published view through `update`.
    pub fn publish(&self, update: impl FnOnce(&mut Published)) {
        if let Ok(mut p) = self.published.lock() {
            update(&mut p);
        }
    }
}

/// What the operating system knows of a link, for status and metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BindingView {
    /// Link id.
    pub id: u8,
    /// The interface it is bound to now.
    pub device: String,
    /// Its ifindex (0 while missing).
    pub index: u32,
    /// Outer source address.
    pub address: String,
    /// The interface is gone.
    pub missing: bool,
    /// Times re-bound.
    pub rebinds: u64,
    /// Stable identity (`usb:…`, `mac:…`, `name:…`), where sysfs could tell.
    pub identity: Option<String>,
    /// Bus, driver, devtype, framing, MTU, speed, from sysfs.
    pub facts: Vec<(&'static str, String)>,
    /// Inferred kind (`cellular`, `wifi`, `wired`, `virtual`, `unknown`).
    pub kind: &'static str,
    /// The kind with its detail (`cellular/LTE over USB`).
    pub kind_detail: String,
    /// Confidence in the kind, 0..1.
    pub kind_confidence: f64,
    /// Why.
    pub kind_reasons: Vec<&'static str>,
    /// What ModemManager says of the link's modem.
    pub modem: Option<ModemView>,
}

/// A link's modem as ModemManager reports it (also in the status document).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModemView {
    /// Modem state (`connected`, `registered`, …).
    pub state: String,
    /// Access technologies (`LTE`, `5GNR`, …).
    pub access: String,
    /// Operator.
    pub operator: Option<String>,
    /// Serving cell, where exposed.
    pub cell_id: Option<String>,
    /// Signal quality, %.
    pub signal_quality_pct: Option<u32>,
    /// RSRP, dBm.
    pub rsrp_dbm: Option<f64>,
    /// RSRQ, dB.
    pub rsrq_db: Option<f64>,
    /// SINR, dB.
    pub sinr_db: Option<f64>,
    /// The last early warning it gave.
    pub last_warning: Option<String>,
}

/// The kernel's name of drop reason `value` (its number if this kernel's
/// tracepoint format did not list it).
pub(crate) fn reason_name(reasons: &[(u32, String)], value: u32) -> String {
    reasons.iter().find(|(v, _)| *v == value).map_or_else(|| value.to_string(), |(_, n)| n.clone())
}
