//! The daemon's configuration: a typed, versioned TOML file.
//!
//! Every value is typed once, here, when the file is read: addresses become
//! [`Ipv4Addr`], [`Cidr`] and [`SocketAddr`] as serde parses them, so nothing
//! later parses a string again or falls back to a default when one is wrong.
//! Parsing (serde) rejects unknown keys, wrong types and malformed addresses
//! with the key path and position (`tunnel.address: expected ADDRESS/PREFIX`);
//! [`Config::validate`] then checks what types cannot express (ranges,
//! uniqueness, role-specific sections) and names the field of every problem,
//! e.g. `links[1].weight: must be at most 1000`.
//!
//! ```toml
//! version = 1
//! role = "edge"              # or "hub"
//! name = "car7"              # instance name; maps are pinned under /sys/fs/bpf/strata/<name>
//! session = 0x53545241       # 32-bit session id shared by edge and hub, not 0
//! port = 7400                # UDP port of the tunnel on this host
//! # os_signals = "enhanced"  # what Linux may tell: none | netlink | enhanced | full (see OsSignals)
//! # modem_manager_bus = "unix:path=/run/dbus/system_bus_socket"  # default: the system bus
//!
//! [tunnel]
//! name = "strata0"
//! address = "10.200.0.1/30"
//! # address6 = "fd53::1/64"
//! # mtu = 1400               # default: smallest link MTU minus the tunnel overhead
//!
//! [peer]                     # edge only: where the hub is
//! address = "198.19.0.2"     # IPv4 or IPv6
//! # address6 = "2001:db8::2" # the hub's IPv6 address too, for links on IPv6 carriers
//! port = 7400
//!
//! [[links]]                  # edge: one per link interface
//! id = 0
//! interface = "wwan0"
//! weight = 1                 # static: a share; adaptive: nominal capacity, Mbit/s
//! # gateway = "100.64.1.1"  # default: the interface's default route, if any
//! # address = "100.64.1.2"  # default: the interface's first IPv4, else its first global IPv6
//! #                         # (the link's outer family is its address's: IPv6-only carriers work)
//!
//! # hub: the interface tunnel packets arrive on, and optional per-link weights.
//! # [[links]] entries on the hub (id, optional weight) name the link ids the
//! # car uses: the hub learns endpoints and sends only on those (none listed:
//! # all eight ids). Listing them keeps a packet for an unused id from ever
//! # drawing traffic.
//! # [hub]
//! # interface = "eth0"
//! # address = "198.19.0.2"   # default: the interface's first IPv4, if any
//! # address6 = "2001:db8::2" # default: its first global IPv6, if any (the hub listens on both)
//!
//! # [metrics]
//! # listen = "127.0.0.1:9464" # Prometheus GET /metrics; absent: not served
//! # kernel_sampling = false  # links' host queueing delay and kernel drops (tracepoints); on at os_signals = "full"
//!
//! # [status]
//! # group = "strata"         # may use `strata-ctl status` besides root
//!
//! # [control]                # every key optional; defaults shown
//! # mode = "adaptive"        # edge default: probes, budgets, earliest arrival; or "static"
//! # deadline_ms = 150        # one-way delay budget: the bitrate published to sources fits it
//! # drop_late = false        # adaptive: drop before sending what no link delivers within deadline_ms
//! # best_effort_deadline_share = 0.7  # drop_late: best effort by 0.7 × deadline_ms (shed first), critical never
//! # probe_interval_ms = 50
//! # update_interval_ms = 20
//! # silence_hold_ms = 100    # lifecycle bounds: see ControlSection
//! # silence_demote_ms = 1000
//! # backlog_limit_ms = 50    # scorer: see ControlSection
//!
//! # [[classes]]              # delivery classes beyond DSCP, first match wins (see `classes`);
//! # class = "critical"       # without any: EF, CS5-CS7 critical, AF41-43 video, the rest best effort
//! # protocol = "udp"         # udp | tcp | 1-255
//! # port = 14550             # destination port or "LOW-HIGH" (udp/tcp)
//! # dscp = 46                # 0-63
//! ```

use std::{
    collections::BTreeSet,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Deserializer, de::Error as _};
use strata_common::{
    class::{DeadlineShares, SHARE_WHOLE},
    maps::MAX_LINKS,
};

use crate::control::{lifecycle::Thresholds, scoring::ScoringConfig};

pub mod change;
pub mod classes;

/// The configuration format version this build reads.
pub const CONFIG_VERSION: u32 = 1;
/// Default UDP port of the tunnel.
pub const DEFAULT_PORT: u16 = 7400;
/// Largest accepted link weight.
pub const MAX_WEIGHT: u32 = 1000;
/// Directory under which each instance pins its maps.
pub const PIN_ROOT: &str = "/sys/fs/bpf/strata";

/// A configuration error naming the field and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Syntax or type error (toml names the key and position).
    #[error("{path}: {message}")]
    Parse {
        /// The path.
        path: String,
        /// toml's message.
        message: String,
    },
    /// A value that parsed but is not acceptable.
    #[error("{path}: {field}: {problem}")]
    Invalid {
        /// The path.
        path: String,
        /// The field, e.g. `links[1].weight`.
        field: String,
        /// What is wrong and what is expected.
        problem: String,
    },
}

/// Edge (the car) or hub (the cloud).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends over several links to one hub.
    Edge,
    /// Receives from an edge's links; sends back to the endpoints it learned.
    Hub,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Edge => "edge",
            Self::Hub => "hub",
        })
    }
}

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version; must be [`CONFIG_VERSION`].
    pub version: u32,
    /// Edge or hub.
    pub role: Role,
    /// Instance name (pin directory, logs). Default: the role.
    #[serde(default)]
    pub name: Option<String>,
    /// Session id.
    pub session: u32,
    /// Local UDP port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The tunnel device.
    pub tunnel: TunnelSection,
    /// Edge: the hub's address.
    #[serde(default)]
    pub peer: Option<PeerSection>,
    /// Hub: where tunnel packets arrive.
    #[serde(default)]
    pub hub: Option<HubSection>,
    /// The links.
    #[serde(default)]
    pub links: Vec<LinkSection>,
    /// How weights are decided.
    #[serde(default)]
    pub control: ControlSection,
    /// Prometheus exposition.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// The local status socket.
    #[serde(default)]
    pub status: StatusSection,
    /// Which operating-system advisors may speed up transitions.
    #[serde(default)]
    pub os_signals: OsSignals,
    /// D-Bus address where ModemManager is found (default: the system
    /// bus), e.g. `"unix:path=/run/dbus/system_bus_socket"`.
    #[serde(default)]
    pub modem_manager_bus: Option<String>,
    /// Session authentication (docs/WIRE.md, "Handshake").
    #[serde(default)]
    pub auth: AuthSection,
    /// Delivery classes beyond the DSCP defaults, first match wins (see [`classes`]).
    #[serde(default)]
    pub classes: Vec<classes::ClassSection>,
}

/// `[auth] mode`: whether sessions are established by a handshake.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No handshake: anyone who knows the session id is trusted. For the
    /// lab and demos only; the daemon warns at start.
    #[default]
    None,
    /// A Noise IK handshake with per-car keys; the hub admits only cars on
    /// its allowlist.
    Keys,
}

/// `[auth]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// `"keys"` or `"none"` (the default while the lab has no keys).
    pub mode: AuthMode,
    /// This side's private key file (`strata-ctl keygen`), mode 0600.
    pub private_key: Option<std::path::PathBuf>,
    /// Edge: the hub's public key, 64 hex digits.
    pub hub_public_key: Option<String>,
    /// Edge: seconds between handshakes that rotate the keys (the hub's
    /// `rekey_interval_s`, if shorter, wins).
    pub rekey_interval_s: u64,
    /// Edge: also rekey once this many packets were sent under one pair of
    /// keys (0: by time only).
    pub rekey_after_packets: u64,
    /// Seconds the previous keys stay accepted after a rotation.
    pub overlap_s: u64,
    /// Hub: initiations processed per second, at most (a flood beyond is
    /// refused before any cryptography).
    pub handshake_rate: u32,
    /// Hub: initiations processed back to back before the rate applies.
    pub handshake_burst: u32,
    /// Hub: the cars it admits.
    pub cars: Vec<CarSection>,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            private_key: None,
            hub_public_key: None,
            rekey_interval_s: 600,
            rekey_after_packets: 1 << 30,
            overlap_s: 10,
            handshake_rate: 20,
            handshake_burst: 10,
            cars: Vec::new(),
        }
    }
}

/// `[[auth.cars]]`: one car the hub admits.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CarSection {
    /// Its name in logs, status and metrics.
    pub name: String,
    /// Its public key, 64 hex digits (`strata-ctl keygen` on the car).
    pub public_key: String,
    /// The session id it may use.
    pub session: u32,
}

impl AuthSection {
    /// Reads this side's private key file (`None` without authentication);
    /// refuses a file others may read.
    pub fn load_key(&self) -> Result<Option<crate::auth::keys::StaticKey>, crate::auth::keys::KeyError> {
        match (&self.mode, &self.private_key) {
            (AuthMode::Keys, Some(path)) => crate::auth::keys::StaticKey::load(path).map(Some),
            _ => Ok(None),
        }
    }

    /// Checks the section for `role` and the instance's `session`.
    fn validate(&self, role: Role, session: u32) -> Result<(), (String, String)> {
        use crate::auth::keys::PublicKey;
        let bad = |field: &str, problem: String| Err((format!("auth.{field}"), problem));
        if self.mode == AuthMode::None {
            if self.private_key.is_some() || self.hub_public_key.is_some() || !self.cars.is_empty() {
                return bad("mode", "keys are configured but mode is \"none\": set mode = \"keys\"".into());
            }
            return Ok(());
        }
        if self.private_key.is_none() {
            return bad(
                "private_key",
                "required with mode = \"keys\" (create one with `strata-ctl keygen`)".into(),
            );
        }
        if !(30..=86_400).contains(&self.rekey_interval_s) {
            return bad("rekey_interval_s", format!("{} is outside 30..=86400", self.rekey_interval_s));
        }
        if !(1..=300).contains(&self.overlap_s) {
            return bad("overlap_s", format!("{} is outside 1..=300", self.overlap_s));
        }
        match role {
            Role::Edge => {
                let Some(hub) = &self.hub_public_key else {
                    return bad("hub_public_key", "required on the edge: the hub's public key".into());
                };
                if let Err(e) = PublicKey::parse(hub) {
                    return bad("hub_public_key", e.to_string());
                }
                if !self.cars.is_empty() {
                    return bad("cars", "only for role = \"hub\"".into());
                }
            }
            Role::Hub => {
                if self.hub_public_key.is_some() {
                    return bad(
                        "hub_public_key",
                        "only for role = \"edge\" (the hub has its private_key)".into(),
                    );
                }
                if self.cars.is_empty() {
                    return bad("cars", "the hub admits only the cars listed here: add [[auth.cars]]".into());
                }
                if !(1..=10_000).contains(&self.handshake_rate) {
                    return bad("handshake_rate", format!("{} is outside 1..=10000", self.handshake_rate));
                }
                if !(1..=10_000).contains(&self.handshake_burst) {
                    return bad("handshake_burst", format!("{} is outside 1..=10000", self.handshake_burst));
                }
                let mut names = BTreeSet::new();
                let mut keys = BTreeSet::new();
                for (i, car) in self.cars.iter().enumerate() {
                    let field = |f: &str| format!("auth.cars[{i}].{f}");
                    if car.name.is_empty()
                        || car.name.len() > 32
                        || !car.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    {
                        return Err((
                            field("name"),
                            format!("{:?} must be 1-32 characters of [A-Za-z0-9_-]", car.name),
                        ));
                    }
                    if !names.insert(&car.name) {
                        return Err((field("name"), format!("{} is listed twice", car.name)));
                    }
                    let key = PublicKey::parse(&car.public_key)
                        .map_err(|e| (field("public_key"), e.to_string()))?;
                    if !keys.insert(key.0) {
                        return Err((field("public_key"), "the same key is listed for two cars".into()));
                    }
                    // One hub instance serves one session (its kernel drops
                    // every other): a car of another session could never
                    // reach this handshake.
                    if car.session != session {
                        return Err((
                            field("session"),
                            format!(
                                "{} is not this hub's session {session} (one hub instance serves one session)",
                                car.session
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `os_signals`: how much the daemon listens to the operating system. The
/// in-band channel is the truth at every tier (docs/ARCHITECTURE.md, "Linux
/// as an advisor"): an OS signal may demote a link, re-bind it to a new
/// address or interface, or start its warm-up early — never make it usable.
/// Each tier adds to the one before; an advisor whose facility is missing
/// (no udev messages, no system D-Bus, no ModemManager, no tracefs) is
/// reported once and the rest carry on.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum OsSignals {
    /// In-band only. A silent link's interface is looked up again (by name,
    /// then by identity) only because probes said it went quiet.
    None,
    /// + rtnetlink events: links, carrier, addresses, routes, counters.
    Netlink,
    /// + kernel uevents (USB modems coming and going) and ModemManager.
    #[default]
    Enhanced,
    /// + kernel tracepoints: host queueing delay and drops by reason.
    Full,
}

impl OsSignals {
    /// Every tier, in order.
    pub const ALL: [Self; 4] = [Self::None, Self::Netlink, Self::Enhanced, Self::Full];

    /// The name used in the configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Netlink => "netlink",
            Self::Enhanced => "enhanced",
            Self::Full => "full",
        }
    }

    /// Whether rtnetlink events are followed.
    pub fn netlink(self) -> bool {
        self >= Self::Netlink
    }

    /// Whether uevents and ModemManager are followed.
    pub fn enhanced(self) -> bool {
        self >= Self::Enhanced
    }

    /// Whether the kernel tracepoint programs run.
    pub fn tracing(self) -> bool {
        self >= Self::Full
    }
}

impl fmt::Display for OsSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[status]`: who may ask the daemon for `strata-ctl status`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatusSection {
    /// A group whose members may, besides root (absent: root only).
    #[serde(default)]
    pub group: Option<String>,
}

impl StatusSection {
    /// A group name as `groupadd` would accept it. Whether the group exists
    /// is the host's business, checked when the daemon binds its socket.
    fn validate(&self) -> Result<(), (String, String)> {
        let Some(group) = &self.group else { return Ok(()) };
        let fine = (1..=32).contains(&group.len())
            && !group.starts_with('-')
            && group.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if fine {
            Ok(())
        } else {
            Err((
                "status.group".to_string(),
                format!(
                    "{group:?} is not a group name (1 to 32 of a-z, A-Z, 0-9, '_', '-', '.'; not starting with '-')"
                ),
            ))
        }
    }
}

/// `[metrics]`: where `GET /metrics` is served (absent: not served).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address and port, e.g. `"127.0.0.1:9464"` or `"[::]:9464"`.
    #[serde(default, deserialize_with = "metrics_listen")]
    pub listen: Option<SocketAddr>,
    /// Sample the links' host queueing delay and kernel drops by reason with
    /// tracepoint programs (needs tracefs).
    #[serde(default)]
    pub kernel_sampling: bool,
}

/// `[control]`: how weights are decided and, in adaptive mode, every bound
/// of the link lifecycle and the scorer. Absent keys take the defaults of
/// [`Thresholds`] and [`ScoringConfig`], so a partial section is complete.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// `static`: the configured weights, always. `adaptive` (edge): links are
    /// probed in band, each link's weight and send budget follow its
    /// lifecycle and measurements, and the kernel sends each packet where it
    /// is expected to arrive first (docs/ARCHITECTURE.md). Resolved when the
    /// file is read: the configured `mode`, else adaptive on the edge and
    /// static on the hub (which follows the endpoints it learns).
    #[serde(skip)]
    pub mode: ControlMode,
    /// `mode` as the file gave it, if it did.
    #[serde(rename = "mode")]
    pub configured_mode: Option<ControlMode>,
    /// Probe interval per link, ms (adaptive).
    pub probe_interval_ms: u64,
    /// Adaptive: a packet that no link is expected to deliver within
    /// `deadline_ms` is dropped before it is sent, counted as `deadline`,
    /// instead of queueing behind every later packet.
    pub drop_late: bool,
    /// How often weights and budgets are recomputed and written, ms.
    pub update_interval_ms: u64,
    /// Packet trains (capacity of a link warming up or idle): at most this
    /// often per link, ms; 0 turns them off.
    pub train_interval_ms: u64,
    /// Probes per packet train.
    pub train_packets: u8,
    /// UDP payload bytes of each train probe (below the links' MTU).
    pub train_bytes: usize,
    /// Silence that demotes a carrying link, ms.
    pub silence_demote_ms: u64,
    /// Silence after which a carrying link gets no traffic until heard
    /// again, without demotion, ms (below `silence_demote_ms`).
    pub silence_hold_ms: u64,
    /// Round-trip jitter (p95 − p50) that demoted a link, ms. Accepted and
    /// ignored: jitter no longer demotes an admitted link (the rate model and
    /// the expected arrival absorb delay swings); `jitter_healthy_ms` still
    /// gates a new link's first admission.
    pub jitter_demote_ms: f64,
    /// Jitter under which a link is healthy again, ms (below `jitter_demote_ms`).
    pub jitter_healthy_ms: f64,
    /// Recent loss ratio that demotes.
    pub loss_demote: f64,
    /// Recent loss ratio under which a link is healthy again (below `loss_demote`).
    pub loss_healthy: f64,
    /// Median round trip above which a link is not used, ms.
    pub max_rtt_ms: f64,
    /// Queueing delay above which loss and jitter are taken as congestion
    /// (answered by the send budget) rather than a failing link, ms.
    pub congestion_queue_ms: f64,
    /// Healthy probes this long admit a new link to warm-up, ms.
    pub admit_after_ms: u64,
    /// Warm-up at a small share lasts this long, ms.
    pub warm_ms: u64,
    /// A degraded link is re-admitted after being healthy this long, ms.
    pub readmit_after_ms: u64,
    /// Silent this long: the link rests in cooldown, ms.
    pub cooldown_after_ms: u64,
    /// Cooldown lasts at least this long, ms.
    pub cooldown_ms: u64,
    /// Silent this long: the link is gone until heard again, ms.
    pub gone_after_ms: u64,
    /// Queueing delay beyond `backlog_limit_ms` that halves a link's weight, ms.
    pub delay_half_ms: f64,
    /// Fraction of a link's measured capacity its send budget allows.
    pub headroom: f64,
    /// Budget of a link in its probing interval, as a multiple of its capacity (and of a link
    /// with no capacity estimate, as a multiple of what it delivered).
    pub probe_gain: f64,
    /// Backlog a link's budget allows, ms of its own transmission time.
    pub backlog_limit_ms: f64,
    /// Added to a link's expected arrival per unit of recent loss, ms.
    pub loss_penalty_ms: f64,
    /// One-way delay budget, ms: what arrives later is late. The bitrate
    /// published to sources is what the links carry within it
    /// (docs/BITRATE.md).
    pub deadline_ms: u64,
    /// Under `drop_late`, best effort is dropped when no link is expected to
    /// deliver it within this share of `deadline_ms` — video within the
    /// whole, critical never — so that when the links cannot carry
    /// everything in time, best effort is shed first, then video, and
    /// critical not at all (see `strata_common::class::DeadlineShares`).
    pub best_effort_deadline_share: f64,
}

impl Default for ControlSection {
    fn default() -> Self {
        let Thresholds {
            silence_demote,
            silence_hold,
            jitter_demote_ms,
            jitter_healthy_ms,
            loss_demote,
            loss_healthy,
            max_rtt_ms,
            congestion_queue_ms,
            admit_after,
            warm_for,
            readmit_after,
            cooldown_after,
            cooldown_for,
            gone_after,
        } = Thresholds::default();
        let ScoringConfig {
            delay_half_ms,
            headroom,
            probe_gain,
            backlog_limit_ms,
            loss_penalty_ms,
            weight_scale: _,
        } = ScoringConfig::default();
        let ms = |d: Duration| d.as_millis() as u64;
        Self {
            mode: ControlMode::default(),
            configured_mode: None,
            probe_interval_ms: 50,
            // Off by default still. With the backlog measured from the hub's
            // acknowledgements it raises within-deadline delivery on the
            // real-trace scenarios (real-links-70: 0.62 of the oracle
            // against 0.44 without, docs/BENCHMARKS.md, issue 12), and it
            // drops only on evidence: not on a rate that is only a lower
            // bound (the link not seen busy within RATE_CURRENT_SPAN), and
            // rates no longer fall on a rising delay while a link keeps up.
            // But at start-up, while one link is admitted and the others
            // still probe, that link is really full and the edge sheds what
            // the others would soon carry: 5 % of nat-rebind's packets in
            // one run of the scenario suite, 2.5 % of usb-reattach's (a run
            // whose lab held links in probe for seconds: to be measured again).
            drop_late: false,
            update_interval_ms: 20,
            // 32 × 1228 IP bytes every 5 s: 63 kbit/s per link at most.
            train_interval_ms: 5000,
            train_packets: 32,
            train_bytes: 1200,
            silence_demote_ms: ms(silence_demote),
            silence_hold_ms: ms(silence_hold),
            jitter_demote_ms,
            jitter_healthy_ms,
            loss_demote,
            loss_healthy,
            max_rtt_ms,
            congestion_queue_ms,
            admit_after_ms: ms(admit_after),
            warm_ms: ms(warm_for),
            readmit_after_ms: ms(readmit_after),
            cooldown_after_ms: ms(cooldown_after),
            cooldown_ms: ms(cooldown_for),
            gone_after_ms: ms(gone_after),
            delay_half_ms,
            headroom,
            probe_gain,
            backlog_limit_ms,
            loss_penalty_ms,
            deadline_ms: 150,
            // The queues stand at the deadline's edge under overload (lab,
            // real-links-70: the kernel's measured backlog p25-p50 within
            // 30 ms of it), so best effort must give way well before it;
            // 70 % leaves video the last 45 ms of a 150 ms budget.
            best_effort_deadline_share: 0.7,
        }
    }
}

impl ControlSection {
    /// The lifecycle bounds.
    pub fn thresholds(&self) -> Thresholds {
        let ms = Duration::from_millis;
        Thresholds {
            silence_demote: ms(self.silence_demote_ms),
            silence_hold: ms(self.silence_hold_ms),
            jitter_demote_ms: self.jitter_demote_ms,
            jitter_healthy_ms: self.jitter_healthy_ms,
            loss_demote: self.loss_demote,
            loss_healthy: self.loss_healthy,
            max_rtt_ms: self.max_rtt_ms,
            congestion_queue_ms: self.congestion_queue_ms,
            admit_after: ms(self.admit_after_ms),
            warm_for: ms(self.warm_ms),
            readmit_after: ms(self.readmit_after_ms),
            cooldown_after: ms(self.cooldown_after_ms),
            cooldown_for: ms(self.cooldown_ms),
            gone_after: ms(self.gone_after_ms),
        }
    }

    /// Each class's share of the deadline, as the kernel takes it.
    pub fn deadline_shares(&self) -> DeadlineShares {
        DeadlineShares {
            best_effort: (self.best_effort_deadline_share * f64::from(SHARE_WHOLE)).round() as u32,
            video: SHARE_WHOLE,
        }
    }

    /// The scorer's knobs.
    pub fn scoring(&self) -> ScoringConfig {
        ScoringConfig {
            delay_half_ms: self.delay_half_ms,
            headroom: self.headroom,
            probe_gain: self.probe_gain,
            backlog_limit_ms: self.backlog_limit_ms,
            loss_penalty_ms: self.loss_penalty_ms,
            ..ScoringConfig::default()
        }
    }

    /// Checks every value, naming the first bad one.
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, why: String| Err((format!("control.{f}"), why));
        let int_ranges = [
            ("probe_interval_ms", self.probe_interval_ms, 10, 1000),
            ("update_interval_ms", self.update_interval_ms, 5, 1000),
            ("train_interval_ms", self.train_interval_ms, 0, 3_600_000),
            ("train_packets", u64::from(self.train_packets), 4, 64),
            ("train_bytes", self.train_bytes as u64, 64, 1400),
            ("silence_demote_ms", self.silence_demote_ms, 20, 60_000),
            ("silence_hold_ms", self.silence_hold_ms, 10, 60_000),
            ("admit_after_ms", self.admit_after_ms, 0, 600_000),
            ("warm_ms", self.warm_ms, 0, 600_000),
            ("readmit_after_ms", self.readmit_after_ms, 0, 600_000),
            ("cooldown_after_ms", self.cooldown_after_ms, 100, 600_000),
            ("cooldown_ms", self.cooldown_ms, 0, 600_000),
            ("gone_after_ms", self.gone_after_ms, 1000, 86_400_000),
            ("deadline_ms", self.deadline_ms, 10, 10_000),
        ];
        for (f, v, lo, hi) in int_ranges {
            if !(lo..=hi).contains(&v) {
                return bad(f, format!("{v} is outside {lo}..={hi}"));
            }
        }
        let float_ranges = [
            ("jitter_demote_ms", self.jitter_demote_ms, 1.0, 10_000.0),
            ("jitter_healthy_ms", self.jitter_healthy_ms, 0.0, 10_000.0),
            ("loss_demote", self.loss_demote, 0.001, 1.0),
            ("loss_healthy", self.loss_healthy, 0.0, 1.0),
            ("max_rtt_ms", self.max_rtt_ms, 1.0, 30_000.0),
            ("congestion_queue_ms", self.congestion_queue_ms, 1.0, 10_000.0),
            ("delay_half_ms", self.delay_half_ms, 1.0, 10_000.0),
            ("headroom", self.headroom, 0.1, 2.0),
            ("probe_gain", self.probe_gain, 1.0, 4.0),
            ("backlog_limit_ms", self.backlog_limit_ms, 1.0, 10_000.0),
            ("loss_penalty_ms", self.loss_penalty_ms, 0.0, 10_000.0),
            ("best_effort_deadline_share", self.best_effort_deadline_share, 0.1, 1.0),
        ];
        for (f, v, lo, hi) in float_ranges {
            // `contains` is false for NaN, so NaN is rejected here too.
            if !(lo..=hi).contains(&v) {
                return bad(f, format!("{v} is outside {lo}..={hi}"));
            }
        }
        if self.silence_hold_ms < 2 * self.probe_interval_ms {
            return bad(
                "silence_hold_ms",
                format!(
                    "{} is shorter than two probe intervals ({} ms): every lost probe would stop the link",
                    self.silence_hold_ms,
                    2 * self.probe_interval_ms
                ),
            );
        }
        // (smaller, larger, why): bounds that must keep their order.
        let ms = |v: u64| v as f64;
        let ordered = [
            (
                ("silence_hold_ms", ms(self.silence_hold_ms)),
                ("silence_demote_ms", ms(self.silence_demote_ms)),
                "",
            ),
            (
                ("jitter_healthy_ms", self.jitter_healthy_ms),
                ("jitter_demote_ms", self.jitter_demote_ms),
                " so a link cannot flap at one value",
            ),
            (
                ("loss_healthy", self.loss_healthy),
                ("loss_demote", self.loss_demote),
                " so a link cannot flap at one value",
            ),
            (
                ("silence_demote_ms", ms(self.silence_demote_ms)),
                ("cooldown_after_ms", ms(self.cooldown_after_ms)),
                "",
            ),
            (
                ("cooldown_after_ms", ms(self.cooldown_after_ms)),
                ("gone_after_ms", ms(self.gone_after_ms)),
                "",
            ),
        ];
        for ((small, s), (large, l), why) in ordered {
            if s >= l {
                return bad(small, format!("{s} must be below {large} ({l}){why}"));
            }
        }
        Ok(())
    }
}

/// How weights are decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlMode {
    /// The configured weights.
    Static,
    /// In-band probing, lifecycle and scoring (the edge's default).
    #[default]
    Adaptive,
}

const fn default_port() -> u16 {
    DEFAULT_PORT
}

/// `[tunnel]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TunnelSection {
    /// Device name.
    #[serde(default = "default_tunnel_name")]
    pub name: String,
    /// IPv4 address with prefix length.
    #[serde(deserialize_with = "tunnel_address")]
    pub address: Cidr,
    /// Optional IPv6 address with prefix length.
    #[serde(default, deserialize_with = "tunnel_address6")]
    pub address6: Option<Cidr>,
    /// MTU override.
    #[serde(default)]
    pub mtu: Option<u32>,
}

fn default_tunnel_name() -> String {
    "strata0".into()
}

/// `[peer]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// Hub address, IPv4 or IPv6.
    pub address: IpAddr,
    /// The hub's IPv6 address besides an IPv4 `address`: links on IPv6
    /// carriers reach the hub there.
    #[serde(default)]
    pub address6: Option<Ipv6Addr>,
    /// Hub UDP port.
    #[serde(default = "default_port")]
    pub port: u16,
}

impl PeerSection {
    /// Where a link whose own address is `source` reaches the hub: the
    /// hub's address of the same family, if it has one.
    pub fn hub_for(&self, source: IpAddr) -> Option<SocketAddr> {
        let address = match (source, self.address, self.address6) {
            (IpAddr::V4(_), a @ IpAddr::V4(_), _) => a,
            (IpAddr::V6(_), a @ IpAddr::V6(_), _) => a,
            (IpAddr::V6(_), IpAddr::V4(_), Some(v6)) => IpAddr::V6(v6),
            _ => return None,
        };
        Some(SocketAddr::new(address, self.port))
    }

    /// Whether the hub can be reached over IPv4 / IPv6.
    pub fn families(&self) -> (bool, bool) {
        (self.address.is_ipv4(), self.address.is_ipv6() || self.address6.is_some())
    }
}

/// `[hub]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    /// Interface tunnel packets arrive on.
    pub interface: String,
    /// IPv4 address tunnel packets are sent to (default: the interface's first IPv4, if any).
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
    /// IPv6 address tunnel packets over IPv6 carriers are sent to (default:
    /// the interface's first global IPv6, if any). The hub listens on both.
    #[serde(default)]
    pub address6: Option<Ipv6Addr>,
    /// Next hop towards the edges (default: the kernel's route lookup).
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 next hop towards the edges (default: the kernel's route lookup).
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
}

/// `[[links]]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkSection {
    /// Link id carried on the wire, 0..=7, the same on edge and hub.
    pub id: u8,
    /// Edge: the link's interface.
    #[serde(default)]
    pub interface: Option<String>,
    /// Share of traffic; 0 = carries nothing.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Edge: next hop on the interface, of the address's family (default:
    /// its default route's gateway).
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Edge: outer source address, IPv4 or IPv6; its family is the link's
    /// outer header's (default: the interface's first IPv4 if the hub has
    /// one, else its first global IPv6).
    #[serde(default)]
    pub address: Option<IpAddr>,
}

const fn default_weight() -> u32 {
    1
}

/// An IPv4 or IPv6 address with prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `ADDRESS/PREFIX` of the wanted family; `Err` says what is wrong.
    fn parse(s: &str, want_v6: bool) -> Result<Self, String> {
        let (a, p) = s.split_once('/').ok_or("expected ADDRESS/PREFIX, e.g. 10.200.0.1/30")?;
        let addr: IpAddr = a.parse().map_err(|e| format!("bad address {a:?}: {e}"))?;
        let prefix: u8 = p.parse().map_err(|_| format!("bad prefix length {p:?}"))?;
        let max = if addr.is_ipv6() { 128 } else { 32 };
        if addr.is_ipv6() != want_v6 {
            return Err(format!("expected an IPv{} address", if want_v6 { 6 } else { 4 }));
        }
        if prefix > max {
            return Err(format!("prefix length {prefix} is above {max}"));
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

// Typed fields read from strings. Each error names its field, as
// `Config::validate` does: toml adds the position and the line, not the key.

/// A string value turned into `T` by `parse`, or an error naming `field`.
fn typed<'de, D: Deserializer<'de>, T>(
    d: D,
    field: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(|problem| D::Error::custom(format!("{field}: {problem}")))
}

fn tunnel_address<'de, D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
    typed(d, "tunnel.address", |s| Cidr::parse(s, false))
}

fn tunnel_address6<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cidr>, D::Error> {
    typed(d, "tunnel.address6", |s| Cidr::parse(s, true)).map(Some)
}

fn metrics_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    typed(d, "metrics.listen", |s| {
        s.parse().map_err(|_| format!("{s:?} is not an address:port such as \"127.0.0.1:9464\""))
    })
    .map(Some)
}

impl Config {
    /// Whether the tracepoint programs run: asked for in `[metrics]`, or
    /// part of the `full` tier.
    pub fn kernel_sampling(&self) -> bool {
        self.metrics.kernel_sampling || self.os_signals.tracing()
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        Self::parse(&text, &shown)
    }

    /// Parses and validates text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: origin.into(), message: e.to_string() })?;
        config.control.mode = config.control.configured_mode.unwrap_or(match config.role {
            Role::Edge => ControlMode::Adaptive,
            Role::Hub => ControlMode::Static,
        });
        config.validate().map_err(|(field, problem)| ConfigError::Invalid {
            path: origin.into(),
            field,
            problem,
        })?;
        Ok(config)
    }

    /// What a valid configuration means differently from what it may have
    /// been written for (shown by `strata-ctl config check`).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.auth.mode == AuthMode::None {
            notes.push(
                "auth.mode is \"none\": no handshake — anyone who learns the session id is trusted. Lab and \
                 demos only; see docs/DEPLOYMENT.md, \"Keys\"."
                    .into(),
            );
        }
        if self.role == Role::Edge && self.control.configured_mode.is_none() {
            notes.push(
                "control.mode is not set: the edge runs adaptive control (the default since issue 12; it was \
                 static before) — links are probed, each gets a send budget from its measured delivery rate, \
                 packets go where they arrive first (and, with control.drop_late, those no link can \
                 deliver within control.deadline_ms are dropped before sending); links' `weight` is only a first guess of \
                 capacity (Mbit/s). Set \
                 `mode = \"static\"` under [control] to keep fixed weights."
                    .into(),
            );
        }
        if let Some(listen) = self.metrics.listen
            && !listen.ip().is_loopback()
        {
            // Not refused: a monitoring network may be the right place. But
            // the page names every link's peer and state and has no
            // authentication, so where it is reachable deserves a thought.
            notes.push(format!(
                "metrics.listen = \"{listen}\" is not a loopback address: /metrics has no authentication and \
                 shows every link's peer and state; serve it on 127.0.0.1 or an address only the monitoring \
                 network reaches, never the hub's public one (docs/OPERATIONS.md)"
            ));
        }
        notes
    }

    /// Instance name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(match self.role {
            Role::Edge => "edge",
            Role::Hub => "hub",
        })
    }

    /// The kernel's classification table for `[[classes]]`.
    pub fn class_table(&self) -> strata_common::class::ClassTable {
        // Validated when the file was read.
        classes::table(&self.classes).unwrap_or_default()
    }

    /// Where this instance pins its maps.
    pub fn pin_dir(&self) -> std::path::PathBuf {
        Path::new(PIN_ROOT).join(self.name())
    }

    /// Checks everything types cannot; `Err((field, problem))`.
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, problem: String| Err((field.to_string(), problem));
        if self.version != CONFIG_VERSION {
            return bad(
                "version",
                format!("this build reads version {CONFIG_VERSION}, the file says {}", self.version),
            );
        }
        let name = self.name();
        if name.is_empty()
            || name.len() > 32
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad("name", format!("{name:?} must be 1-32 characters of [A-Za-z0-9_-]"));
        }
        if self.session == 0 {
            return bad("session", "must not be 0".into());
        }
        if self.port == 0 {
            return bad("port", "must not be 0".into());
        }
        check_ifname("tunnel.name", &self.tunnel.name)?;
        if let Some(mtu) = self.tunnel.mtu
            && !(576..=65_000).contains(&mtu)
        {
            return bad("tunnel.mtu", format!("{mtu} is outside 576..=65000"));
        }

        self.control.validate()?;
        self.status.validate()?;
        self.auth.validate(self.role, self.session)?;
        classes::validate(&self.classes)?;
        if self.role == Role::Hub && self.control.mode == ControlMode::Adaptive {
            return bad(
                "control.mode",
                "adaptive control runs on the edge; the hub follows the endpoints it learns".into(),
            );
        }
        let mut ids = BTreeSet::new();
        for (i, link) in self.links.iter().enumerate() {
            let field = |f: &str| format!("links[{i}].{f}");
            if u32::from(link.id) >= MAX_LINKS {
                return Err((field("id"), format!("{} is outside 0..={}", link.id, MAX_LINKS - 1)));
            }
            if !ids.insert(link.id) {
                return Err((field("id"), format!("link id {} is used twice", link.id)));
            }
            if link.weight > MAX_WEIGHT {
                return Err((field("weight"), format!("{} is above {MAX_WEIGHT}", link.weight)));
            }
            match self.role {
                Role::Edge => {
                    let Some(ifname) = &link.interface else {
                        return Err((field("interface"), "required on the edge".into()));
                    };
                    check_ifname(&field("interface"), ifname)?;
                    if ifname == &self.tunnel.name {
                        return Err((field("interface"), "is the tunnel device itself".into()));
                    }
                    if let (Some(a), Some(g)) = (link.address, link.gateway)
                        && a.is_ipv4() != g.is_ipv4()
                    {
                        return Err((field("gateway"), format!("{g} is not of the family of address {a}")));
                    }
                    if let (Some(a), Some(peer)) = (link.address, &self.peer)
                        && peer.hub_for(a).is_none()
                    {
                        return Err((
                            field("address"),
                            format!("{a}: the hub has no address of its family (set peer.address6)"),
                        ));
                    }
                }
                Role::Hub => {
                    for (set, key) in [
                        (link.interface.is_some(), "interface"),
                        (link.gateway.is_some(), "gateway"),
                        (link.address.is_some(), "address"),
                    ] {
                        if set {
                            return Err((
                                field(key),
                                "not used on the hub (it sends back to the endpoints it learns)".into(),
                            ));
                        }
                    }
                }
            }
        }
        match self.role {
            Role::Edge => {
                if self.links.is_empty() {
                    return bad("links", "the edge needs at least one [[links]] entry".into());
                }
                let mut seen = BTreeSet::new();
                for (i, link) in self.links.iter().enumerate() {
                    if let Some(ifname) = &link.interface
                        && !seen.insert(ifname)
                    {
                        return Err((
                            format!("links[{i}].interface"),
                            format!("{ifname} is used by two links"),
                        ));
                    }
                }
                let Some(peer) = &self.peer else {
                    return bad("peer", "the edge needs a [peer] section with the hub's address".into());
                };
                if peer.address.is_unspecified()
                    || peer.address.is_multicast()
                    || peer.address == Ipv4Addr::BROADCAST
                {
                    return bad("peer.address", format!("{} is not a unicast address", peer.address));
                }
                if let Some(v6) = peer.address6 {
                    if peer.address.is_ipv6() {
                        return bad("peer.address6", "peer.address is IPv6 already".into());
                    }
                    if v6.is_unspecified() || v6.is_multicast() {
                        return bad("peer.address6", format!("{v6} is not a unicast address"));
                    }
                }
                if peer.port == 0 {
                    return bad("peer.port", "must not be 0".into());
                }
                if self.hub.is_some() {
                    return bad("hub", "only for role = \"hub\"".into());
                }
            }
            Role::Hub => {
                let Some(hub) = &self.hub else {
                    return bad("hub", "the hub needs a [hub] section with its interface".into());
                };
                check_ifname("hub.interface", &hub.interface)?;
                if self.peer.is_some() {
                    return bad("peer", "only for role = \"edge\" (the hub learns its peers)".into());
                }
            }
        }
        Ok(())
    }

    /// Weight per link id (hub without `[[links]]`: every id, weight 1).
    pub fn weights(&self) -> [u32; MAX_LINKS as usize] {
        let mut w = [0; MAX_LINKS as usize];
        if self.role == Role::Hub && self.links.is_empty() {
            return [1; MAX_LINKS as usize];
        }
        for link in &self.links {
            w[usize::from(link.id)] = link.weight;
        }
        w
    }
}

fn check_ifname(field: &str, name: &str) -> Result<(), (String, String)> {
    // IFNAMSIZ is 16 with the terminating NUL.
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) || name == "." {
        return Err((
            field.into(),
            format!("{name:?} is not a valid interface name (1-15 characters, no '/', ':' or space)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGE: &str = r#"
        version = 1
        role = "edge"
        session = 7
        [tunnel]
        address = "10.200.0.1/30"
        [peer]
        address = "198.19.0.2"
        [[links]]
        id = 0
        interface = "lnk0"
        weight = 1
        [[links]]
        id = 1
        interface = "lnk1"
        weight = 2
    "#;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn a_partial_edge_config_fills_defaults() {
        let c = Config::parse(EDGE, "t.toml").unwrap();
        assert_eq!(c.port, DEFAULT_PORT);
        assert_eq!(c.tunnel.address, Cidr { addr: IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1)), prefix: 30 });
        assert_eq!(c.tunnel.address.to_string(), "10.200.0.1/30");
        assert_eq!(c.tunnel.address6, None);
        assert_eq!(c.metrics.listen, None);
        let v6 = EDGE.replace("10.200.0.1/30\"", "10.200.0.1/30\"\naddress6 = \"fd53::1/64\"");
        let c6 = Config::parse(&v6, "t.toml").unwrap();
        assert_eq!(c6.tunnel.address6, Some(Cidr { addr: "fd53::1".parse().unwrap(), prefix: 64 }));
        assert_eq!(c.tunnel.name, "strata0");
        assert_eq!(c.name(), "edge");
        assert_eq!(c.weights()[..3], [1, 2, 0]);
        assert_eq!(c.pin_dir(), Path::new("/sys/fs/bpf/strata/edge"));
    }

    #[test]
    fn the_edge_defaults_to_adaptive_control_and_says_so() {
        let c = Config::parse(EDGE, "t.toml").unwrap();
        assert_eq!(c.control.mode, ControlMode::Adaptive);
        assert!(!c.control.drop_late, "off until start-up sheds nothing the links would carry");
        assert!(c.notes().iter().any(|n| n.contains("adaptive") && n.contains("static")), "{:?}", c.notes());
        let fixed = Config::parse(&format!("{EDGE}\n[control]\nmode = \"static\"\n"), "t.toml").unwrap();
        assert_eq!(fixed.control.mode, ControlMode::Static, "an explicit static config keeps working");
        assert!(fixed.notes().iter().all(|n| n.starts_with("auth.mode")), "{:?}", fixed.notes());
        let public = Config::parse(
            &format!("{EDGE}\n[control]\nmode = \"static\"\n[metrics]\nlisten = \"0.0.0.0:9464\"\n"),
            "t.toml",
        )
        .unwrap();
        assert!(public.notes().iter().any(|n| n.contains("not a loopback")), "{:?}", public.notes());
    }

    #[test]
    fn auth_sections_explain_what_they_reject() {
        let key = "ab".repeat(32);
        let edge = |section: &str| Config::parse(&format!("{EDGE}\n[auth]\n{section}\n"), "t.toml");
        let ok = edge(&format!(
            "mode = \"keys\"\nprivate_key = \"/etc/strata/edge.key\"\nhub_public_key = \"{key}\""
        ))
        .unwrap();
        assert_eq!(ok.auth.mode, AuthMode::Keys);
        assert!(ok.notes().iter().all(|n| !n.starts_with("auth.mode")));
        assert!(
            Config::parse(EDGE, "t.toml")
                .unwrap()
                .notes()
                .iter()
                .any(|n| n.starts_with("auth.mode is \"none\""))
        );
        for (section, expect) in [
            ("mode = \"keys\"".to_string(), "auth.private_key: required"),
            ("mode = \"keys\"\nprivate_key = \"k\"".to_string(), "auth.hub_public_key: required on the edge"),
            (
                format!("mode = \"keys\"\nprivate_key = \"k\"\nhub_public_key = \"{}\"", &key[1..]),
                "auth.hub_public_key: a key is 64 hex digits",
            ),
            (
                format!("private_key = \"k\"\nhub_public_key = \"{key}\""),
                "auth.mode: keys are configured but mode is \"none\"",
            ),
            (
                format!(
                    "mode = \"keys\"\nprivate_key = \"k\"\nhub_public_key = \"{key}\"\nrekey_interval_s = 5"
                ),
                "auth.rekey_interval_s: 5 is outside",
            ),
            ("mode = \"maybe\"".to_string(), "unknown variant"),
        ] {
            let e = edge(&section).unwrap_err().to_string();
            assert!(e.contains(expect), "{section}: {e}");
        }
        let hub = |section: &str| {
            Config::parse(
                &format!(
                    "version = 1\nrole = \"hub\"\nsession = 7\n[tunnel]\naddress = \"10.200.0.2/30\"\n[hub]\ninterface = \"wan0\"\n\
                     [auth]\nmode = \"keys\"\nprivate_key = \"/etc/strata/hub.key\"\n{section}\n"
                ),
                "t.toml",
            )
        };
        let car = |name: &str, k: &str, session: u32| {
            format!("[[auth.cars]]\nname = \"{name}\"\npublic_key = \"{k}\"\nsession = {session}\n")
        };
        assert_eq!(hub(&car("car7", &key, 7)).unwrap().auth.cars.len(), 1);
        let other = "cd".repeat(32);
        for (section, expect) in [
            (String::new(), "auth.cars: the hub admits only the cars listed here"),
            (car("car7", &key, 8), "auth.cars[0].session: 8 is not this hub's session 7"),
            (car("car 7", &key, 7), "auth.cars[0].name"),
            (car("car7", "xyz", 7), "auth.cars[0].public_key: a key is 64 hex digits"),
            (car("a", &key, 7) + &car("a", &other, 7), "auth.cars[1].name: a is listed twice"),
            (
                car("a", &key, 7) + &car("b", &key, 7),
                "auth.cars[1].public_key: the same key is listed for two cars",
            ),
            (
                format!("hub_public_key = \"{key}\"\n{}", car("a", &key, 7)),
                "auth.hub_public_key: only for role = \"edge\"",
            ),
        ] {
            let e = hub(&section).unwrap_err().to_string();
            assert!(e.contains(expect), "{section}: {e}");
        }
    }

    #[test]
    fn control_metrics_and_status_sections_explain_what_they_reject() {
        let with = |section: &str| format!("{EDGE}\n{section}\n");
        let c = Config::parse(&with("[control]\nmode = \"adaptive\"\nheadroom = 0.8"), "t.toml").unwrap();
        assert_eq!(c.control.mode, ControlMode::Adaptive);
        assert_eq!(c.control.scoring().headroom, 0.8);
        assert_eq!(c.control.thresholds(), Thresholds::default(), "absent keys take the defaults");
        assert_eq!(
            err(&with("[control]\njitter_healthy_ms = 300")),
            "t.toml: control.jitter_healthy_ms: 300 must be below jitter_demote_ms (200) so a link cannot flap at one value"
        );
        assert_eq!(err(&with("[control]\nheadroom = 5.0")), "t.toml: control.headroom: 5 is outside 0.1..=2");
        assert_eq!(
            err(&with("[control]\nloss_demote = nan")),
            "t.toml: control.loss_demote: NaN is outside 0.001..=1"
        );
        assert!(err(&with("[control]\nsilence_hold_ms = 20")).contains("shorter than two probe intervals"));
        assert_eq!(c.control.deadline_ms, 150, "the one-way delay budget defaults to 150 ms");
        assert_eq!(
            err(&with("[control]\ndeadline_ms = 5")),
            "t.toml: control.deadline_ms: 5 is outside 10..=10000"
        );
        // Best effort is shed first: within 70 % of the deadline by default,
        // video within all of it, critical never (share 0).
        assert_eq!(c.control.deadline_shares().entries(), [700, 1000, 0, 0]);
        let shares = Config::parse(&with("[control]\nbest_effort_deadline_share = 0.5"), "t.toml")
            .unwrap()
            .control
            .deadline_shares();
        assert_eq!(shares, DeadlineShares { best_effort: 500, video: 1000 });
        assert_eq!(
            err(&with("[control]\nbest_effort_deadline_share = 0")),
            "t.toml: control.best_effort_deadline_share: 0 is outside 0.1..=1"
        );
        assert!(err(&with("[control]\nwarm = 3")).contains("warm"), "unknown keys are named");
        assert!(
            err(&with("[metrics]\nlisten = \"everywhere\""))
                .contains("metrics.listen: \"everywhere\" is not an address:port")
        );
        let m = Config::parse(
            &with("[metrics]\nlisten = \"127.0.0.1:9464\"\n[status]\ngroup = \"adm\""),
            "t.toml",
        )
        .unwrap();
        assert_eq!(m.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(m.status.group.as_deref(), Some("adm"));
        assert!(
            err(&with("[status]\ngroup = \"\"")).contains("status.group: \"\" is not a group name"),
            "an empty group is not \"root only\""
        );
        assert!(err(&with("[status]\ngroup = \"pit crew\"")).contains("status.group: \"pit crew\""));
        assert!(err(&with("[status]\ngroup = \"-x\"")).contains("status.group"));
        assert!(err(&with("[status]\ngroup = 7")).contains("group"), "a number is not a name");
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(&EDGE.replace("weight = 2", "weight = 5000")),
            "t.toml: links[1].weight: 5000 is above 1000"
        );
        assert!(err(&EDGE.replace("id = 1", "id = 0")).contains("links[1].id: link id 0 is used twice"));
        assert!(err(&EDGE.replace("id = 1", "id = 9")).contains("links[1].id: 9 is outside 0..=7"));
        assert!(err(&EDGE.replace("session = 7", "session = 0")).contains("session: must not be 0"));
        assert!(
            err(&EDGE.replace("version = 1", "version = 2")).contains("version: this build reads version 1")
        );
        assert!(
            err(&EDGE.replace("10.200.0.1/30", "10.200.0.1"))
                .contains("tunnel.address: expected ADDRESS/PREFIX")
        );
        assert!(
            err(&EDGE.replace("10.200.0.1/30", "10.200.0.1/33"))
                .contains("tunnel.address: prefix length 33 is above 32")
        );
        assert!(
            err(&EDGE.replace("10.200.0.1/30", "fd53::1/64"))
                .contains("tunnel.address: expected an IPv4 address")
        );
        let v6 = |a6: &str| EDGE.replace("10.200.0.1/30\"", &format!("10.200.0.1/30\"\naddress6 = \"{a6}\""));
        assert!(err(&v6("10.0.0.1/24")).contains("tunnel.address6: expected an IPv6 address"));
        assert!(err(&v6("fd53::1")).contains("tunnel.address6: expected ADDRESS/PREFIX"));
        assert!(
            err(&EDGE.replace("\"lnk1\"", "\"lnk0\""))
                .contains("links[1].interface: lnk0 is used by two links")
        );
        assert!(
            err(&EDGE.replace("[peer]\n        address = \"198.19.0.2\"", ""))
                .contains("peer: the edge needs")
        );
        // serde: unknown keys and wrong types name the key.
        assert!(err(&EDGE.replace("weight = 2", "wieght = 2")).contains("wieght"));
        assert!(err(&EDGE.replace("session = 7", "session = \"x\"")).contains("session"));
        assert!(err(&EDGE.replace("role = \"edge\"", "role = \"car\"")).contains("role"));
    }

    #[test]
    fn hub_rules() {
        let hub = r#"
            version = 1
            role = "hub"
            session = 7
            [tunnel]
            address = "10.200.0.2/30"
            [hub]
            interface = "wan0"
        "#;
        let c = Config::parse(hub, "h").unwrap();
        assert_eq!(c.weights(), [1; 8]);
        assert!(
            err(&format!("{hub}\n[[links]]\nid = 0\ninterface = \"x\"\n"))
                .contains("links[0].interface: not used on the hub")
        );
        assert!(
            err(&hub.replace("[hub]\n            interface = \"wan0\"", "")).contains("hub: the hub needs")
        );
    }

    #[test]
    fn hostile_values_are_rejected_not_panicked() {
        for bad in ["name = \"../../etc\"", "name = \"\"", "port = 0"] {
            let text = EDGE.replace("session = 7", &format!("session = 7\n{bad}"));
            assert!(Config::parse(&text, "t").is_err(), "{bad}");
        }
        assert!(err(&EDGE.replace("\"lnk1\"", "\"a/b\"")).contains("not a valid interface name"));
        assert!(
            err(&EDGE.replace("\"lnk1\"", "\"0123456789abcdefg\"")).contains("not a valid interface name")
        );
    }

    #[test]
    fn os_signals_tiers_parse_in_order_and_a_wrong_one_is_named() {
        let tier = |t: &str| {
            let text = EDGE.replace("session = 7", &format!("session = 7\nos_signals = \"{t}\""));
            Config::parse(&text, "t").map(|c| c.os_signals)
        };
        assert_eq!(Config::parse(EDGE, "t").unwrap().os_signals, OsSignals::Enhanced, "default");
        for t in OsSignals::ALL {
            assert_eq!(tier(t.name()).unwrap(), t);
        }
        assert!(OsSignals::None < OsSignals::Netlink && OsSignals::Enhanced < OsSignals::Full);
        assert!(!OsSignals::None.netlink() && OsSignals::Netlink.netlink() && !OsSignals::Netlink.enhanced());
        assert!(OsSignals::Full.tracing() && !OsSignals::Enhanced.tracing());
        let e = tier("udev").unwrap_err().to_string();
        assert!(e.contains("os_signals") && e.contains("none"), "{e}");
    }

    #[test]
    fn links_of_either_family_reach_the_hub_at_its_address_of_that_family() {
        let v6 = EDGE
            .replace("address = \"198.19.0.2\"", "address = \"198.19.0.2\"\naddress6 = \"2001:db8:ff::2\"")
            .replace(
                "interface = \"lnk1\"",
                "interface = \"lnk1\"\naddress = \"2001:db8:2::2\"\ngateway = \"fe80::1\"",
            );
        let c = Config::parse(&v6, "t").unwrap();
        let peer = c.peer.as_ref().unwrap();
        assert_eq!(peer.families(), (true, true));
        let link1 = c.links[1].address.unwrap();
        assert_eq!(peer.hub_for(link1), Some("[2001:db8:ff::2]:7400".parse().unwrap()));
        assert_eq!(peer.hub_for("100.64.1.2".parse().unwrap()), Some("198.19.0.2:7400".parse().unwrap()));
        // An IPv6-only hub: IPv4 links have nowhere to go.
        let only6 = EDGE.replace("address = \"198.19.0.2\"", "address = \"2001:db8:ff::2\"");
        let c = Config::parse(&only6, "t").unwrap();
        assert_eq!(c.peer.as_ref().unwrap().families(), (false, true));
        assert_eq!(c.peer.as_ref().unwrap().hub_for("100.64.1.2".parse().unwrap()), None);
        // A link of a family the hub lacks, a gateway of the other family, two IPv6 peers.
        let no6 = EDGE.replace("interface = \"lnk1\"", "interface = \"lnk1\"\naddress = \"2001:db8:2::2\"");
        assert!(
            err(&no6).contains("links[1].address: 2001:db8:2::2: the hub has no address of its family"),
            "{}",
            err(&no6)
        );
        let mixed = EDGE.replace(
            "interface = \"lnk1\"",
            "interface = \"lnk1\"\naddress = \"100.64.2.2\"\ngateway = \"fe80::1\"",
        );
        assert!(err(&mixed).contains("links[1].gateway"), "{}", err(&mixed));
        let twice = only6.replace(
            "address = \"2001:db8:ff::2\"",
            "address = \"2001:db8:ff::2\"\naddress6 = \"2001:db8:ff::3\"",
        );
        assert!(err(&twice).contains("peer.address6"), "{}", err(&twice));
    }
}
