//! `strata-ctl status`: one document of what a tunnel is doing, for people in
//! the pits and for scripts.
//!
//! The document, [`Status`], joins two sources: the kernel's counters (the
//! pinned maps, which outlive the daemon) and what the running daemon knows
//! beyond them ([`DaemonView`]: the controller's view, the links'
//! interfaces, kernel drops by reason, uptime). [`build`] joins them and is
//! pure — whoever calls it has read both — so the document is tested on
//! values built by hand.
//!
//! A running daemon answers on a local unix socket, `/run/strata/<name>.sock`
//! (root only, or root and a configured group; [`bind`], [`serve`]): the
//! client writes one line, `status`, and reads one JSON [`Status`] document,
//! built from its pinned maps read at that moment and its published view.
//! When no daemon answers, the client ([`query`]) still reads the pinned maps
//! — the kernel keeps forwarding without its controller — and builds the
//! document without a daemon view, saying why it gave up on the daemon
//! ([`NoAnswer`]: no socket, refused, or no answer within [`ANSWER_BUDGET`]:
//! a stopped or wedged daemon must not make an operator wait). [`render`]
//! makes the table `strata-ctl status` prints; [`cli`] is the command.
//!
//! Errors are [`StatusError`] values. Each message names what was being done
//! and on which path, and ends with the cause's own text, so it reads whole
//! on its own; the cause is kept as a field rather than chained as a
//! `source()`, which `{:#}` would print a second time.

use std::{
    fmt::Write as _,
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixListener,
};
use tracing::debug;

use crate::{
    config::PIN_ROOT,
    dataplane::{
        error::DatapathError,
        stats::{self, Snapshot},
    },
    serve::{
        bitrate::{self, Bitrate},
        view::{BindingView, DropCounts, Exposition, ModemView, Published},
    },
};

/// Where the control sockets live.
pub const SOCKET_DIR: &str = crate::os::host::RUN_DIR;
/// How long the daemon waits for a client's request line.
pub const TIMEOUT: Duration = Duration::from_millis(500);
/// How long the client waits for the daemon's answer, connection included.
/// The issue asks for an answer within 100 ms; a healthy daemon answers in a
/// few (see docs/BENCHMARKS.md), and what is left of the 100 ms after this
/// budget pays for reading the pinned maps when the daemon does not answer.
pub const ANSWER_BUDGET: Duration = Duration::from_millis(80);
/// Longest request line the daemon reads (the only request is `status`).
const MAX_REQUEST: u64 = 256;

/// The socket of instance `name`.
pub fn socket_path(name: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{name}.sock"))
}

/// One link.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// Link id.
    pub id: u8,
    /// Interface (edge), if known.
    pub interface: String,
    /// Lifecycle state (`-` without the adaptive controller).
    pub state: String,
    /// Weight in the kernel's schedule (controller's view).
    pub weight: Option<u32>,
    /// Send budget, bits per second.
    pub budget_bps: Option<f64>,
    /// Median round trip, ms.
    pub rtt_ms: Option<f64>,
    /// Queueing delay p95, ms.
    pub queue_p95_ms: Option<f64>,
    /// Recent loss ratio (controller) — else the kernel's cumulative ratio.
    pub loss: f64,
    /// Capacity estimate, bits per second.
    pub capacity_bps: Option<f64>,
    /// Kernel counters.
    pub tx_packets: u64,
    /// Outer bytes sent.
    pub tx_bytes: u64,
    /// Data packets received.
    pub rx_packets: u64,
    /// Outer bytes received.
    pub rx_bytes: u64,
    /// Packets missing from the link's sequence.
    pub rx_lost: u64,
    /// Packets sent past every budget.
    pub tx_overflow: u64,
    /// IP bytes of probes and packet trains the controller sent on the link.
    pub probe_tx_bytes: u64,
    /// Packets queued on the link that the kernel dropped on this host, by
    /// the kernel's drop reason (non-zero only); absent when host-side
    /// sampling does not run, rather than a misleading "none".
    #[serde(default)]
    pub kernel_drops: Option<Vec<(String, u64)>>,
    /// The far end.
    pub peer: String,
    /// What the operating system knows of the link (edge, daemon running).
    #[serde(default)]
    pub os: Option<LinkOs>,
}

/// What the operating system knows of a link.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkOs {
    /// The interface it is bound to now (the configured one, or the name a
    /// re-enumerated modem came back under).
    pub device: String,
    /// The interface is gone (waiting for it to return).
    pub missing: bool,
    /// Outer source address.
    pub address: String,
    /// Times re-bound (address, interface or next hop changed).
    pub rebinds: u64,
    /// Stable identity, where sysfs could tell.
    pub identity: Option<String>,
    /// Facts from sysfs (bus, driver, devtype, framing, MTU, speed, USB).
    pub facts: Vec<(String, String)>,
    /// Inferred kind, with its detail.
    pub kind: String,
    /// Confidence in it, 0..1.
    pub kind_confidence: f64,
    /// Why.
    pub kind_reasons: Vec<String>,
    /// The modem, as ModemManager reports it.
    pub modem: Option<ModemView>,
}

/// The whole document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Instance name.
    pub name: String,
    /// Whether a daemon answered (false: read from the pinned maps alone).
    pub controller_running: bool,
    /// Why the daemon's answer is missing (no socket, refused, no answer in
    /// time); absent when it answered.
    #[serde(default)]
    pub controller_down_reason: Option<String>,
    /// `static` or `adaptive` (empty when the daemon is down).
    pub mode: String,
    /// Daemon uptime, s.
    pub uptime_s: Option<f64>,
    /// Per link.
    pub links: Vec<LinkStatus>,
    /// Drops by reason (non-zero only).
    pub drops: Vec<(String, u64)>,
    /// Host-side kernel sampling: `on`, or why it is off.
    pub kernel_sampling: String,
    /// The `os_signals` tier (empty when the daemon is down).
    #[serde(default)]
    pub os_signals: String,
    /// Each OS advisor and its state.
    #[serde(default)]
    pub advisors: Vec<(String, String)>,
    /// Sum over links: outer bytes sent and received.
    pub total_tx_bytes: u64,
    /// Received.
    pub total_rx_bytes: u64,
    /// Sum over links: packets sent.
    #[serde(default)]
    pub total_tx_packets: u64,
    /// Received.
    #[serde(default)]
    pub total_rx_packets: u64,
    /// What the bond carries within the deadline, as pushed on the bitrate
    /// socket (docs/BITRATE.md); absent when the daemon is down.
    #[serde(default)]
    pub bitrate: Option<Bitrate>,
    /// Session authentication; absent when the daemon is down.
    #[serde(default)]
    pub auth: Option<crate::serve::view::AuthView>,
    /// Per delivery class (critical, video, best effort): inner packets and
    /// bytes this side sent into the tunnel and delivered out of it; empty
    /// when the pinned maps predate classes.
    #[serde(default)]
    pub classes: Vec<stats::ClassStats>,
}

/// What a running daemon adds to the kernel's counters: the inputs of
/// [`build`] besides the snapshot.
#[derive(Clone, Debug)]
pub struct DaemonView {
    /// The control loop's published view.
    pub published: Published,
    /// The configured interface name and ifindex of each link id (the
    /// edge's links).
    pub interfaces: Vec<(u8, String, u32)>,
    /// Host-side sampling: `Ok` while it runs, else why not.
    pub sampling: Result<(), String>,
    /// Kernel drops of packets queued on each watched link, by link id and
    /// reason; `None` while sampling does not run ("unknown", not "none").
    pub kernel_drops: Option<Vec<(u8, DropCounts)>>,
    /// Time since the daemon started.
    pub uptime: Duration,
    /// When the view was read (the bitrate's age is taken from it).
    pub read_at: SystemTime,
}

impl DaemonView {
    /// Reads the daemon's view from `exposition`: a copy of the published
    /// view, and the kernel drops from the pinned sampling map (I/O).
    pub fn gather(exposition: &Exposition) -> Self {
        Self {
            published: exposition.published(),
            interfaces: exposition.interfaces.clone(),
            sampling: exposition.sampling(),
            kernel_drops: exposition.kernel_drops(),
            uptime: exposition.uptime(),
            read_at: SystemTime::now(),
        }
    }

    /// The configured interface of link `id` ("" if unknown).
    fn interface(&self, id: u8) -> String {
        self.interfaces.iter().find(|(l, ..)| *l == id).map_or(String::new(), |(_, n, _)| n.clone())
    }
}

/// The document from the kernel's counters and, if a daemon runs, its view.
///
/// Pure: it reads nothing but its arguments. Links are those with traffic,
/// a configured interface or a controller view; without `daemon` the
/// document says the controller is down and shows what the kernel counted.
pub fn build(name: &str, snapshot: &Snapshot, daemon: Option<&DaemonView>) -> Status {
    let published = daemon.map(|d| &d.published);
    let interface = |id| daemon.map_or(String::new(), |d| d.interface(id));
    let kernel_drops = daemon.and_then(|d| d.kernel_drops.as_ref());
    let mut links = Vec::new();
    for l in &snapshot.links {
        let view = published.as_ref().and_then(|p| p.links.iter().find(|r| r.id == l.id));
        let configured = !interface(l.id).is_empty();
        if !configured && view.is_none() && l.tx_packets + l.rx_packets == 0 {
            continue;
        }
        let kernel_loss = if l.rx_packets + l.rx_lost > 0 {
            l.rx_lost as f64 / (l.rx_packets + l.rx_lost) as f64
        } else {
            0.0
        };
        links.push(LinkStatus {
            id: l.id,
            interface: interface(l.id),
            state: view.map_or_else(|| "-".to_string(), |v| v.state.to_string()),
            weight: view.map(|v| v.weight),
            budget_bps: view.map(|v| v.budget_bytes_per_s as f64 * 8.0),
            rtt_ms: view.and_then(|v| v.rtt_ms.map(|r| r[1])),
            queue_p95_ms: view.and_then(|v| v.queue_ms.map(|q| q[1])),
            loss: view.map_or(kernel_loss, |v| v.loss),
            capacity_bps: view.and_then(|v| v.capacity_mbit_s.map(|c| c * 1e6)),
            tx_packets: l.tx_packets,
            tx_bytes: l.tx_bytes,
            rx_packets: l.rx_packets,
            rx_bytes: l.rx_bytes,
            rx_lost: l.rx_lost,
            tx_overflow: l.tx_overflow,
            probe_tx_bytes: published
                .as_ref()
                .and_then(|p| p.probe_bytes.iter().find(|(id, _)| *id == l.id))
                .map_or(0, |(_, b)| *b),
            kernel_drops: kernel_drops
                .map(|d| d.iter().find(|(id, _)| *id == l.id).map(|(_, r)| r.clone()).unwrap_or_default()),
            peer: l.peer.clone(),
            os: published.as_ref().and_then(|p| p.bindings.iter().find(|b| b.id == l.id)).map(link_os),
        });
    }
    Status {
        name: name.to_string(),
        controller_running: daemon.is_some(),
        controller_down_reason: None,
        mode: published.as_ref().map_or(String::new(), |p| p.mode.to_string()),
        uptime_s: daemon.map(|d| d.uptime.as_secs_f64()),
        total_tx_bytes: links.iter().map(|l| l.tx_bytes).sum(),
        total_rx_bytes: links.iter().map(|l| l.rx_bytes).sum(),
        total_tx_packets: links.iter().map(|l| l.tx_packets).sum(),
        total_rx_packets: links.iter().map(|l| l.rx_packets).sum(),
        links,
        drops: snapshot.drops.clone(),
        classes: snapshot.classes.clone(),
        kernel_sampling: match daemon.map(|d| &d.sampling) {
            Some(Ok(())) => "on".into(),
            Some(Err(why)) => format!("off: {why}"),
            None => "unknown (controller down)".into(),
        },
        os_signals: published.as_ref().map_or(String::new(), |p| p.os_signals.to_string()),
        bitrate: daemon.map(|d| bitrate::document(&d.published.bitrate, d.read_at)),
        auth: published.as_ref().map(|p| p.auth.clone()).filter(|a| !a.mode.is_empty()),
        advisors: published
            .as_ref()
            .map(|p| p.advisors.iter().map(|(n, s)| ((*n).to_string(), s.clone())).collect())
            .unwrap_or_default(),
    }
}

fn link_os(b: &BindingView) -> LinkOs {
    let BindingView {
        id: _,
        device,
        index: _,
        address,
        missing,
        rebinds,
        identity,
        facts,
        kind: _,
        kind_detail,
        kind_confidence,
        kind_reasons,
        modem,
    } = b;
    LinkOs {
        device: device.clone(),
        missing: *missing,
        address: address.clone(),
        rebinds: *rebinds,
        identity: identity.clone(),
        facts: facts.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect(),
        kind: kind_detail.clone(),
        kind_confidence: *kind_confidence,
        kind_reasons: kind_reasons.iter().map(|r| (*r).to_string()).collect(),
        modem: modem.clone(),
    }
}

/// Serves status requests on `listener` until the task is dropped; a
/// `reload` request goes to the event loop through `reloads`.
pub async fn serve(
    listener: UnixListener,
    name: String,
    exposition: Arc<Exposition>,
    reloads: tokio::sync::mpsc::Sender<super::reload::Request>,
) {
    let guards = exposition.guards();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: pause rather than spin.
                debug!("status socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The socket is root's (or a group's) only, but a stuck script in
        // a loop must not cost a task per connection either.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            crate::inband::guard::GuardCounters::bump(&guards.status_refused);
            continue;
        };
        let (exposition, name, reloads) = (exposition.clone(), name.clone(), reloads.clone());
        let own_uid = nix::unistd::geteuid().as_raw();
        let trusted = stream.peer_cred().is_ok_and(|c| c.uid() == 0 || c.uid() == own_uid);
        tokio::spawn(async move {
            let _slot = slot;
            let (read, mut write) = stream.into_split();
            let mut line = Vec::new();
            // Bounded: a client that never sends a newline cannot grow the line.
            let mut reader = BufReader::new(read.take(MAX_REQUEST));
            let request = tokio::time::timeout(TIMEOUT, reader.read_until(b'\n', &mut line)).await;
            let reply = match request {
                Ok(Ok(_)) => match Request::parse(&line) {
                    Ok(Request::Status) => answer(&name, &exposition),
                    Ok(Request::Reload) => super::reload::answer(&reloads, trusted).await,
                    Err(unknown) => {
                        serde_json::json!({ "error": format!("unknown request {unknown:?}") }).to_string()
                    }
                },
                _ => return,
            };
            // Bounded too: a client that does not read cannot hold the task.
            let sent = tokio::time::timeout(TIMEOUT, write.write_all(format!("{reply}\n").as_bytes())).await;
            if !matches!(sent, Ok(Ok(()))) {
                debug!("status reply not sent");
            }
        });
    }
}

/// Connections the status socket serves at once; more are closed at once.
const MAX_CONNECTIONS: usize = 8;

/// A request on the status socket: one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `status`: the document.
    Status,
    /// `reload`: re-read the configuration (root or the daemon's user only).
    Reload,
}

impl Request {
    /// Reads a request line (surrounding white space ignored); anything
    /// else is returned, lossily decoded, for the error reply.
    pub fn parse(line: &[u8]) -> Result<Self, String> {
        match line.trim_ascii() {
            b"status" => Ok(Self::Status),
            b"reload" => Ok(Self::Reload),
            other => Err(String::from_utf8_lossy(other).into_owned()),
        }
    }
}

/// The reply to `status`: the document from the pinned maps, read now, and
/// the daemon's view — or an error document saying why there is none.
fn answer(name: &str, exposition: &Exposition) -> String {
    let error = |e: &dyn std::fmt::Display| serde_json::json!({ "error": e.to_string() }).to_string();
    match stats::read_pinned(exposition.pin_dir()) {
        Ok(snapshot) => {
            let status = build(name, &snapshot, Some(&DaemonView::gather(exposition)));
            serde_json::to_string(&status).unwrap_or_else(|e| error(&e))
        }
        Err(e) => error(&e),
    }
}

/// Why `strata-ctl status`, or the daemon's status socket, failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The socket directory could not be created.
    #[error("creating {}: {cause}", dir.display())]
    SocketDir {
        /// The directory ([`SOCKET_DIR`]).
        dir: PathBuf,
        /// Why.
        cause: io::Error,
    },
    /// The socket could not be bound.
    #[error("binding {}: {cause}", path.display())]
    Bind {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        cause: io::Error,
    },
    /// The group database could not be read.
    #[error("status.group: looking up {group:?}: {cause}")]
    GroupLookup {
        /// The configured group.
        group: String,
        /// Why.
        cause: nix::Error,
    },
    /// The configured group does not exist.
    #[error("status.group: no group {group:?} on this host")]
    NoGroup {
        /// The configured group.
        group: String,
    },
    /// The socket could not be given to the group.
    #[error("chown {} to group {group:?}: {cause}", path.display())]
    Chown {
        /// The socket's path.
        path: PathBuf,
        /// The configured group.
        group: String,
        /// Why.
        cause: nix::Error,
    },
    /// The socket's mode could not be set.
    #[error("chmod {mode:o} {}: {cause}", path.display())]
    Chmod {
        /// The socket's path.
        path: PathBuf,
        /// The mode it was to get.
        mode: u32,
        /// Why.
        cause: io::Error,
    },
    /// No daemon answered (no socket, or a dead one's) and there are no
    /// pinned maps either: no such instance.
    #[error("no instance {name:?}: {daemon}, and it has no pinned maps ({maps})")]
    NoInstance {
        /// The instance asked for.
        name: String,
        /// Why the daemon did not answer.
        daemon: NoAnswer,
        /// Why the pinned maps could not be read.
        maps: Box<DatapathError>,
    },
    /// A daemon may exist but did not answer, and the pinned maps cannot be
    /// read.
    #[error("instance {name:?}: {daemon}, and its pinned maps cannot be read ({maps})")]
    Unreadable {
        /// The instance asked for.
        name: String,
        /// Why the daemon did not answer.
        daemon: NoAnswer,
        /// Why the pinned maps could not be read.
        maps: Box<DatapathError>,
    },
    /// The daemon did not answer and its pinned maps cannot be read for the
    /// same reason (permission): only the daemon's reason is told.
    #[error(transparent)]
    Daemon(NoAnswer),
    /// The document could not be encoded as JSON.
    #[error("encoding the status as JSON: {0}")]
    Json(serde_json::Error),
    /// The output could not be written (a closed pipe, `| head`).
    #[error("writing the status to standard output: {0}")]
    Output(io::Error),
}

/// A bound control socket, removed when dropped.
#[derive(Debug)]
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds the control socket of `name`: mode 0600, or 0660 with group `group`.
pub fn bind(name: &str, group: Option<&str>) -> Result<(UnixListener, SocketFile), StatusError> {
    bind_local(&socket_path(name), group)
}

/// Binds a local socket of the daemon at `path` (in [`SOCKET_DIR`]): mode
/// 0600, or 0660 with group `group` — the status socket, and the bitrate
/// socket next to it.
pub fn bind_local(path: &Path, group: Option<&str>) -> Result<(UnixListener, SocketFile), StatusError> {
    use std::os::unix::fs::PermissionsExt as _;

    let path = path.to_path_buf();
    let dir = path.parent().unwrap_or(Path::new(SOCKET_DIR));
    std::fs::create_dir_all(dir).map_err(|cause| StatusError::SocketDir { dir: dir.into(), cause })?;
    // A socket file left by a crashed daemon (the instance lock says none runs).
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).map_err(|cause| StatusError::Bind { path: path.clone(), cause })?;
    let file = SocketFile(path.clone());
    let mode = match group {
        Some(g) => {
            let gid = nix::unistd::Group::from_name(g)
                .map_err(|cause| StatusError::GroupLookup { group: g.to_string(), cause })?
                .ok_or_else(|| StatusError::NoGroup { group: g.to_string() })?
                .gid;
            nix::unistd::chown(&path, None, Some(gid)).map_err(|cause| StatusError::Chown {
                path: path.clone(),
                group: g.to_string(),
                cause,
            })?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map_err(|cause| StatusError::Chmod { path: path.clone(), mode, cause })?;
    Ok((listener, file))
}

/// Why the daemon's answer is missing.
#[derive(Debug, thiserror::Error)]
pub enum NoAnswer {
    /// No socket file: no daemon of that name runs (or never ran).
    #[error("no daemon socket at {0}")]
    NoSocket(PathBuf),
    /// A socket file nobody listens on: the daemon died without removing it.
    #[error("the daemon is not running (its socket {0} refuses connections)")]
    Refused(PathBuf),
    /// Not root and not in the configured group.
    #[error("not allowed to ask the daemon ({0}: permission denied; root or the [status] group only)")]
    Denied(PathBuf),
    /// Connected (or trying to) but no answer in time: stopped, wedged or
    /// starved of CPU.
    #[error("the daemon did not answer within {} ms (stopped, hung or overloaded)", .0.as_millis())]
    Timeout(Duration),
    /// It answered with an error document.
    #[error("the daemon answered with an error: {0}")]
    Error(String),
    /// Anything else on the socket.
    #[error("talking to the daemon: {0}")]
    Io(io::Error),
    /// An answer that is not a status document (a different version?).
    #[error("the daemon's answer is not a status document: {0}")]
    Garbled(serde_json::Error),
}

/// Asks the daemon of `name`; falls back to its pinned maps, saying why.
/// `Err` if neither answers.
pub fn query(name: &str) -> Result<Status, StatusError> {
    let path = socket_path(name);
    let daemon = match ask(&path, ANSWER_BUDGET) {
        Ok(status) => return Ok(status),
        Err(e) => e,
    };
    let dir = Path::new(PIN_ROOT).join(name);
    match stats::read_pinned(&dir) {
        Ok(snapshot) => {
            let mut status = build(name, &snapshot, None);
            status.controller_down_reason = Some(daemon.to_string());
            Ok(status)
        }
        // Without permission for the socket there is none for the pins either:
        // say that, not that the instance does not exist.
        Err(_) if matches!(daemon, NoAnswer::Denied(_)) => Err(StatusError::Daemon(daemon)),
        Err(maps) if matches!(daemon, NoAnswer::NoSocket(_) | NoAnswer::Refused(_)) => {
            Err(StatusError::NoInstance { name: name.to_string(), daemon, maps: Box::new(maps) })
        }
        Err(maps) => Err(StatusError::Unreadable { name: name.to_string(), daemon, maps: Box::new(maps) }),
    }
}

/// One request to the daemon at `path`, answered within `budget` or not at all.
///
/// The exchange runs on its own thread so the budget holds for every step:
/// a blocking `connect` to a stopped daemon whose backlog is full has no
/// timeout of its own. A thread left blocked there ends with the process.
pub fn ask(path: &Path, budget: Duration) -> Result<Status, NoAnswer> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(exchange(&path, budget));
    });
    rx.recv_timeout(budget).unwrap_or(Err(NoAnswer::Timeout(budget)))
}

fn exchange(path: &Path, budget: Duration) -> Result<Status, NoAnswer> {
    use std::io::{BufRead as _, ErrorKind, Write as _};
    let timed_out = |e: io::Error| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => NoAnswer::Timeout(budget),
        _ => NoAnswer::Io(e),
    };
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => NoAnswer::NoSocket(path.to_path_buf()),
        ErrorKind::ConnectionRefused => NoAnswer::Refused(path.to_path_buf()),
        ErrorKind::PermissionDenied => NoAnswer::Denied(path.to_path_buf()),
        _ => NoAnswer::Io(e),
    })?;
    stream.set_read_timeout(Some(budget)).map_err(NoAnswer::Io)?;
    stream.set_write_timeout(Some(budget)).map_err(NoAnswer::Io)?;
    stream.write_all(b"status\n").map_err(timed_out)?;
    let mut line = String::new();
    io::BufReader::new(stream).read_line(&mut line).map_err(timed_out)?;
    parse_reply(&line)
}

/// The daemon's reply line: its document, or the error it sent.
pub fn parse_reply(line: &str) -> Result<Status, NoAnswer> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
        && let Some(e) = v.get("error")
    {
        return Err(NoAnswer::Error(e.as_str().map_or_else(|| e.to_string(), str::to_string)));
    }
    serde_json::from_str(line).map_err(NoAnswer::Garbled)
}

/// `strata-ctl status`: the table or JSON once; with `watch`, redrawn every
/// second until interrupted — JSON then comes one document per line, for
/// `jq` and log files. A watch outlives the daemon: when neither it nor its
/// maps answer (a clean restart in progress) the error is shown and the
/// next second tries again.
pub fn cli(name: &str, json: bool, watch: bool) -> Result<(), StatusError> {
    use std::io::Write as _;
    let mut out = io::stdout().lock();
    if !watch {
        let status = query(name)?;
        let text = if json {
            serde_json::to_string_pretty(&status).map_err(StatusError::Json)? + "\n"
        } else {
            render(&status)
        };
        // A closed pipe (`| head`) is an error to return, not a panic.
        return out.write_all(text.as_bytes()).map_err(StatusError::Output);
    }
    loop {
        let started = std::time::Instant::now();
        let frame = match (query(name), json) {
            (Ok(status), true) => serde_json::to_string(&status).map_err(StatusError::Json)? + "\n",
            (Ok(status), false) => format!("{CLEAR}{}", render(&status)),
            (Err(e), true) => {
                eprintln!("strata-ctl: {e}");
                String::new()
            }
            (Err(e), false) => format!("{CLEAR}{}", render_error(name, &e)),
        };
        out.write_all(frame.as_bytes()).and_then(|()| out.flush()).map_err(StatusError::Output)?;
        std::thread::sleep(WATCH_PERIOD.saturating_sub(started.elapsed()));
    }
}

/// How often `--watch` redraws.
const WATCH_PERIOD: Duration = Duration::from_secs(1);
/// Clear the screen and home the cursor.
const CLEAR: &str = "\x1b[2J\x1b[H";

/// What `--watch` shows while the instance cannot be read.
fn render_error(name: &str, e: &StatusError) -> String {
    format!("strata {name}: NOTHING TO SHOW — {e}\n(trying again every second; Ctrl-C to stop)\n")
}

/// The document as a table for a terminal.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let state = if s.controller_running {
        format!(
            "controller running ({}), up {}",
            if s.mode.is_empty() { "?" } else { &s.mode },
            s.uptime_s.map_or("?".into(), |u| format!("{u:.0} s"))
        )
    } else {
        format!(
            "CONTROLLER DOWN — {}; kernel counters from the pinned maps; the data path forwards on its last weights",
            s.controller_down_reason.as_deref().unwrap_or("no daemon answered")
        )
    };
    let _ = writeln!(out, "strata {}: {state}", s.name);
    // Interface names run to 15 characters; the column fits the longest.
    let iface = s.links.iter().map(|l| l.interface.chars().count()).max().unwrap_or(0).max(5);
    let _ = writeln!(
        out,
        "{:<4} {:<iface$} {:<9} {:>6} {:>9} {:>8} {:>9} {:>6} {:>9} {:>10} {:>10} {:>7} {:>7}  peer",
        "link",
        "iface",
        "state",
        "weight",
        "budget",
        "rtt",
        "queue95",
        "loss",
        "capacity",
        "tx",
        "rx",
        "lost",
        "drops"
    );
    let opt = |v: Option<f64>, unit: &str, scale: f64| {
        v.map_or("-".to_string(), |v| format!("{:.1}{unit}", v / scale))
    };
    for l in &s.links {
        let _ = writeln!(
            out,
            "{:<4} {:<iface$} {:<9} {:>6} {:>9} {:>8} {:>9} {:>5.1}% {:>9} {:>10} {:>10} {:>7} {:>7}  {}",
            l.id,
            if l.interface.is_empty() { "-" } else { &l.interface },
            l.state,
            l.weight.map_or("-".into(), |w| w.to_string()),
            opt(l.budget_bps, "M", 1e6),
            opt(l.rtt_ms, "ms", 1.0),
            opt(l.queue_p95_ms, "ms", 1.0),
            l.loss * 100.0,
            opt(l.capacity_bps, "M", 1e6),
            bytes(l.tx_bytes),
            bytes(l.rx_bytes),
            l.rx_lost,
            l.kernel_drops.as_ref().map_or("-".into(), |d| d.iter().map(|(_, n)| n).sum::<u64>().to_string()),
            l.peer
        );
    }
    let _ = writeln!(
        out,
        "total: tx {} ({} pkts)  rx {} ({} pkts)",
        bytes(s.total_tx_bytes),
        s.total_tx_packets,
        bytes(s.total_rx_bytes),
        s.total_rx_packets
    );
    for c in &s.classes {
        let _ = write!(
            out,
            "class {:<11} sent {} ({} pkts)  delivered {} ({} pkts)",
            c.class,
            bytes(c.tx_bytes),
            c.tx_packets,
            bytes(c.rx_bytes),
            c.rx_packets
        );
        // Only where something was shed: a tunnel without drop_late (the
        // default) never sheds, and its lines stay as they were.
        if c.shed_packets > 0 {
            let _ = write!(out, "  shed as late {} ({} pkts)", bytes(c.shed_bytes), c.shed_packets);
        }
        out.push('\n');
    }
    if let Some(b) = &s.bitrate {
        let _ = writeln!(out, "{}", bitrate_line(b));
    }
    out.push_str(&stats::drops_line(&s.drops));
    for l in &s.links {
        if let Some(drops) = l.kernel_drops.as_ref().filter(|d| !d.is_empty()) {
            let list: Vec<String> = drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
            let _ = writeln!(out, "link {} kernel drops: {}", l.id, list.join(" "));
        }
    }
    let _ = writeln!(out, "kernel sampling: {}", s.kernel_sampling);
    for l in &s.links {
        let Some(os) = &l.os else { continue };
        let mut line = format!(
            "link {} is {} ({:.0} %) on {}{} {}",
            l.id,
            os.kind,
            os.kind_confidence * 100.0,
            os.device,
            if os.missing { " (missing)" } else { "" },
            os.address
        );
        if os.rebinds > 0 {
            let _ = write!(line, ", re-bound {}×", os.rebinds);
        }
        if let Some(id) = &os.identity {
            let _ = write!(line, ", id {id}");
        }
        let facts: Vec<String> = os.facts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !facts.is_empty() {
            let _ = write!(line, " [{}]", facts.join(" "));
        }
        let _ = writeln!(out, "{line}");
        if let Some(m) = &os.modem {
            let dbm = |v: Option<f64>, u: &str| v.map_or("-".to_string(), |v| format!("{v:.0} {u}"));
            let _ = writeln!(
                out,
                "  modem {} {} {}: quality {} rsrp {} rsrq {} sinr {}{}",
                m.state,
                m.access,
                m.operator.as_deref().unwrap_or("-"),
                m.signal_quality_pct.map_or("-".to_string(), |q| format!("{q} %")),
                dbm(m.rsrp_dbm, "dBm"),
                dbm(m.rsrq_db, "dB"),
                dbm(m.sinr_db, "dB"),
                m.last_warning.as_ref().map_or(String::new(), |w| format!("; last warning: {w}"))
            );
        }
    }
    if !s.os_signals.is_empty() {
        let list: Vec<String> = s.advisors.iter().map(|(n, st)| format!("{n} {st}")).collect();
        let _ = writeln!(out, "os signals: {} — {}", s.os_signals, list.join("; "));
    }
    if let Some(a) = &s.auth {
        out.push_str(&auth_lines(a));
    }
    out
}

/// Session authentication: mode, each session, the handshake counters.
fn auth_lines(a: &crate::serve::view::AuthView) -> String {
    if a.mode == "none" {
        return "auth: none — no handshake; anyone who knows the session id is trusted (lab/demo only)\n"
            .into();
    }
    let mut out = format!("auth: keys, own key {}", a.own_key);
    let rejected: Vec<String> = a.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let _ = write!(out, "; handshakes completed {}", a.completed);
    if a.initiations_sent > 0 {
        let _ = write!(out, ", initiations sent {}", a.initiations_sent);
    }
    if !rejected.is_empty() {
        let _ = write!(out, ", rejected: {}", rejected.join(", "));
    }
    out.push('\n');
    for session in &a.sessions {
        let state = if session.established {
            let previous =
                session.previous_epoch.map_or(String::new(), |e| format!(" (epoch {e} still accepted)"));
            let at = session.last_rekey_unix_s.map_or(String::new(), |t| format!(", keys of {t}"));
            format!("established, epoch {}{previous}{at}", session.epoch)
        } else {
            "not established".into()
        };
        let _ = writeln!(out, "  session with {} [{}]: {state}", session.peer, session.fingerprint);
    }
    out
}

/// What fits within the deadline, on one line.
fn bitrate_line(b: &Bitrate) -> String {
    let head = format!("fits within {} ms:", b.deadline_ms);
    match (b.now_bps, b.next_second_bps, &b.reason) {
        (Some(now), Some(next), _) => format!(
            "{head} {:.1} Mbit/s now, {:.1} Mbit/s next second ({} of {} links)",
            now as f64 / 1e6,
            next as f64 / 1e6,
            b.links_counted,
            b.links.len()
        ),
        (_, _, reason) => format!("{head} unknown — {}", reason.as_deref().unwrap_or("not computed")),
    }
}

fn bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2}G", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1}M", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1}K", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::stats::LinkStats;

    fn snapshot() -> Snapshot {
        let link = |id: u8, tx: u64| LinkStats {
            id,
            tx_packets: tx,
            tx_bytes: tx * 1000,
            rx_packets: 10,
            rx_bytes: 10_000,
            rx_lost: 0,
            rx_late: 0,
            rx_restarts: 0,
            rx_next_seq: 0,
            tx_overflow: 0,
            owd_sum_us: 0,
            owd_count: 0,
            rx_queued_bytes: 0,
            rx_queued_us: 0,
            peer: "198.19.0.2:7400".into(),
            peer_ip: std::net::Ipv4Addr::new(198, 19, 0, 2).into(),
        };
        Snapshot {
            links: vec![link(0, 2048), link(1, 0), link(2, 0)],
            drops: vec![("no_link".into(), 3)],
            classes: vec![stats::ClassStats {
                class: "critical".into(),
                tx_packets: 2,
                tx_bytes: 200,
                rx_packets: 1,
                rx_bytes: 100,
                shed_packets: 4,
                shed_bytes: 400,
            }],
        }
    }

    #[test]
    fn without_a_controller_the_table_says_so_and_shows_the_kernels_counters() {
        let s = build("car7", &snapshot(), None);
        assert!(!s.controller_running);
        assert_eq!(s.links.len(), 3, "links with traffic");
        assert_eq!(s.total_tx_bytes, 2_048_000);
        let text = render(&s);
        assert!(text.contains("CONTROLLER DOWN"), "{text}");
        assert!(text.contains("2.0M"), "{text}");
        assert!(text.contains("drops: no_link=3"), "{text}");
        assert!(text.contains("total: tx 2.0M (2048 pkts)  rx 29.3K (30 pkts)"), "{text}");
        assert!(
            text.contains(
                "class critical    sent 200B (2 pkts)  delivered 100B (1 pkts)  shed as late 400B (4 pkts)\n"
            ),
            "{text}"
        );
        // Unknown is not zero: without sampling the drops column says `-`.
        assert!(s.links.iter().all(|l| l.kernel_drops.is_none()));
        // Round trip through JSON, as scripts read it.
        let back: Status = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    fn running() -> Status {
        let mut s = build("car7", &snapshot(), None);
        s.controller_running = true;
        s.mode = "adaptive".into();
        s.uptime_s = Some(42.4);
        s.kernel_sampling = "on".into();
        for (l, name) in s.links.iter_mut().zip(["wwan0", "enx00e04c6836a9", "wlan0"]) {
            l.interface = name.into();
            l.state = "live".into();
            l.weight = Some(100);
            l.rtt_ms = Some(48.25);
            l.capacity_bps = Some(12e6);
            l.kernel_drops = Some(Vec::new());
        }
        s.links[1].state = "degraded".into();
        s.links[1].loss = 0.125;
        s.links[1].kernel_drops = Some(vec![("QDISC_DROP".into(), 218), ("TC_EGRESS".into(), 2)]);
        s
    }

    #[test]
    fn the_table_is_aligned_whatever_the_interface_names() {
        let text = render(&running());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("strata car7: controller running (adaptive), up 42 s"), "{text}");
        // Every row's peer column starts where the header's does.
        let peer_at = lines[1].find("peer").expect("header");
        for row in &lines[2..5] {
            assert_eq!(row.find("198.19.0.2:7400"), Some(peer_at), "{text}");
        }
        let degraded = lines[3];
        assert!(degraded.contains("enx00e04c6836a9 degraded"), "{degraded}");
        assert!(degraded.contains(" 12.5% "), "{degraded}");
        assert!(degraded.contains("48.2ms") && degraded.contains("12.0M"), "{degraded}");
        // The drops column sums the link's reasons; the reasons follow the table.
        assert!(degraded.contains("  220  198.19"), "{degraded}");
        assert!(lines[2].contains("    0  198.19"), "{}", lines[2]);
        assert!(text.contains("link 1 kernel drops: QDISC_DROP=218 TC_EGRESS=2"), "{text}");
        assert!(!text.contains("link 0 kernel drops"), "no line for a link without drops: {text}");
        assert!(text.ends_with("kernel sampling: on\n"), "{text}");
    }

    #[test]
    fn a_down_controller_gives_its_reason_on_the_first_line() {
        let mut s = build("car7", &snapshot(), None);
        s.controller_down_reason = Some(NoAnswer::Timeout(ANSWER_BUDGET).to_string());
        let first = render(&s).lines().next().unwrap_or_default().to_string();
        assert_eq!(
            first,
            "strata car7: CONTROLLER DOWN — the daemon did not answer within 80 ms (stopped, hung or \
             overloaded); kernel counters from the pinned maps; the data path forwards on its last weights"
        );
        let e = StatusError::Daemon(NoAnswer::NoSocket("/run/strata/car7.sock".into()));
        assert_eq!(
            render_error("car7", &e).lines().next(),
            Some("strata car7: NOTHING TO SHOW — no daemon socket at /run/strata/car7.sock")
        );
    }

    /// What a running edge daemon knows: links 0 and 2 configured, the
    /// controller's view of link 1 only, sampling on with drops on link 2.
    fn daemon() -> DaemonView {
        use crate::control::controller::LinkReport;
        let report = LinkReport {
            id: 1,
            state: "probing",
            weight: 25,
            budget_bytes_per_s: 250_000,
            rtt_ms: Some([30.0, 41.5, 80.0, 95.0]),
            queue_ms: Some([2.0, 12.5]),
            jitter_ms: Some(38.5),
            loss: 0.25,
            reordering: 0.0,
            delivered_mbit_s: 1.0,
            capacity_mbit_s: Some(3.5),
            transitions: Default::default(),
        };
        let binding = BindingView {
            id: 0,
            device: "wwan1".into(),
            address: "100.64.1.2".into(),
            rebinds: 1,
            kind: "cellular",
            kind_detail: "cellular/LTE over USB".into(),
            kind_confidence: 0.75,
            kind_reasons: vec!["wwan"],
            ..BindingView::default()
        };
        DaemonView {
            published: Published {
                mode: "adaptive",
                controller_up: true,
                links: vec![report],
                probe_bytes: vec![(2, 640)],
                os_signals: "passive",
                advisors: vec![("sysfs", "active".into())],
                bindings: vec![binding],
                ..Published::default()
            },
            interfaces: vec![(0, "wwan0".into(), 7), (2, "wlan0".into(), 9)],
            sampling: Ok(()),
            kernel_drops: Some(vec![(0, Vec::new()), (2, vec![("QDISC_DROP".into(), 4)])]),
            uptime: Duration::from_millis(90_500),
            read_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_document_joins_the_kernels_counters_and_the_daemons_view() {
        let s = build("car7", &snapshot(), Some(&daemon()));
        assert!(s.controller_running && s.controller_down_reason.is_none());
        assert_eq!((s.mode.as_str(), s.uptime_s), ("adaptive", Some(90.5)));
        assert_eq!(s.kernel_sampling, "on");
        assert_eq!(s.os_signals, "passive");
        assert_eq!(s.advisors, vec![("sysfs".to_string(), "active".to_string())]);
        let [l0, l1, l2] = &s.links[..] else { panic!("three links: {s:?}") };
        // Configured, no controller view: the kernel's numbers and loss.
        assert_eq!((l0.interface.as_str(), l0.state.as_str(), l0.weight), ("wwan0", "-", None));
        assert_eq!(l0.kernel_drops, Some(Vec::new()), "known to be none");
        let os = l0.os.as_ref().expect("binding");
        assert_eq!((os.device.as_str(), os.kind.as_str(), os.rebinds), ("wwan1", "cellular/LTE over USB", 1));
        // The controller's view: its loss, in bits per second, its p50 and p95.
        assert_eq!((l1.interface.as_str(), l1.state.as_str(), l1.weight), ("", "probing", Some(25)));
        assert_eq!((l1.budget_bps, l1.capacity_bps), (Some(2e6), Some(3.5e6)));
        assert_eq!((l1.rtt_ms, l1.queue_p95_ms, l1.loss), (Some(41.5), Some(12.5), 0.25));
        assert_eq!(l1.kernel_drops, Some(Vec::new()), "an unwatched link has none");
        assert_eq!(l2.probe_tx_bytes, 640);
        assert_eq!(l2.kernel_drops, Some(vec![("QDISC_DROP".to_string(), 4)]));
        let text = render(&s);
        assert!(text.starts_with("strata car7: controller running (adaptive), up 90 s\n"), "{text}");
        assert!(text.contains("link 2 kernel drops: QDISC_DROP=4"), "{text}");
        assert!(
            text.contains("link 0 is cellular/LTE over USB (75 %) on wwan1 100.64.1.2, re-bound 1×"),
            "{text}"
        );
        assert!(text.ends_with("os signals: passive — sysfs active\n"), "{text}");
        // Nothing computed yet: unknown, with the reason, never a rate of 0.
        assert_eq!(s.bitrate.as_ref().map(|b| b.now_bps), Some(None));
        assert!(text.contains("fits within 0 ms: unknown — not computed yet\n"), "{text}");

        // Sampling off: the daemon's reason, and drops unknown rather than none.
        let mut off = daemon();
        off.sampling = Err("not enabled (metrics.kernel_sampling)".into());
        off.kernel_drops = None;
        let s = build("car7", &snapshot(), Some(&off));
        assert_eq!(s.kernel_sampling, "off: not enabled (metrics.kernel_sampling)");
        assert!(s.links.iter().all(|l| l.kernel_drops.is_none()));
    }

    #[test]
    fn what_fits_is_one_line_and_in_the_document() {
        use crate::control::fit::{Fit, LinkFit};
        let mut d = daemon();
        let link = |id, bps: f64| LinkFit {
            id,
            now_bps: bps,
            next_second_bps: bps / 2.0,
            excluded_now: None,
            excluded_next: None,
        };
        d.published.bitrate = crate::serve::view::BitrateView {
            deadline: Duration::from_millis(150),
            fit: Some(Fit {
                now_bps: 12.34e6,
                next_second_bps: 6.17e6,
                links_counted: 2,
                links_measured: 3,
                links: vec![link(0, 10e6), link(1, 2.34e6), link(2, 0.0)],
            }),
            at: Some(SystemTime::UNIX_EPOCH),
            unknown: String::new(),
        };
        let s = build("car7", &snapshot(), Some(&d));
        let b = s.bitrate.as_ref().expect("a running daemon shows it");
        assert_eq!((b.now_bps, b.next_second_bps, b.age_ms), (Some(12_340_000), Some(6_170_000), Some(0)));
        let text = render(&s);
        assert!(
            text.contains("fits within 150 ms: 12.3 Mbit/s now, 6.2 Mbit/s next second (2 of 3 links)\n"),
            "{text}"
        );
        // Without a daemon, nothing is known and nothing is shown.
        let down = build("car7", &snapshot(), None);
        assert!(down.bitrate.is_none() && !render(&down).contains("fits within"));
    }

    #[test]
    fn messages_name_what_failed_and_why() {
        let e = StatusError::NoInstance {
            name: "car7".into(),
            daemon: NoAnswer::NoSocket("/run/strata/car7.sock".into()),
            maps: Box::new(DatapathError::Io {
                what: "opening /sys/fs/bpf/strata/car7".into(),
                source: io::Error::from(io::ErrorKind::NotFound),
            }),
        };
        assert_eq!(
            e.to_string(),
            "no instance \"car7\": no daemon socket at /run/strata/car7.sock, and it has no pinned maps \
             (opening /sys/fs/bpf/strata/car7: entity not found)"
        );
        assert!(std::error::Error::source(&e).is_none(), "the cause is in the message, not chained twice");
        let e = StatusError::NoGroup { group: "pits".into() };
        assert_eq!(format!("{:#}", anyhow::Error::from(e)), "status.group: no group \"pits\" on this host");
    }

    #[test]
    fn a_document_from_an_older_daemon_still_reads() {
        // Fields added later are optional: a newer client reads an older daemon.
        let mut v = serde_json::to_value(running()).unwrap();
        for key in ["controller_down_reason", "total_tx_packets", "total_rx_packets"] {
            v.as_object_mut().unwrap().remove(key);
        }
        for l in v["links"].as_array_mut().unwrap() {
            l.as_object_mut().unwrap().remove("kernel_drops");
        }
        let s: Status = serde_json::from_value(v).unwrap();
        assert_eq!(s.total_tx_packets, 0);
        assert!(s.links.iter().all(|l| l.kernel_drops.is_none()));
    }

    /// A socket in a fresh temporary directory, and a thread answering each
    /// connection with `reply` (or holding it open without a word).
    fn fake_daemon(tag: &str, reply: Option<String>) -> PathBuf {
        use std::io::{BufRead as _, Write as _};
        let path = temp_dir(tag).join("t.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut line = String::new();
                let _ = io::BufReader::new(&stream).read_line(&mut line);
                match &reply {
                    Some(r) => {
                        let _ = stream.write_all(r.as_bytes());
                    }
                    // Wedged: keep the connection, never answer.
                    None => std::thread::sleep(Duration::from_secs(5)),
                }
            }
        });
        path
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strata-status-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_client_says_why_the_daemon_did_not_answer() {
        let gone = std::env::temp_dir().join(format!("strata-status-{}-none.sock", std::process::id()));
        assert!(matches!(ask(&gone, ANSWER_BUDGET), Err(NoAnswer::NoSocket(_))));

        // A socket file left behind by a dead daemon.
        let dead = temp_dir("dead");
        let stale = dead.join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(
            matches!(ask(&stale, ANSWER_BUDGET), Err(NoAnswer::Refused(_))),
            "{:?}",
            ask(&stale, ANSWER_BUDGET)
        );

        let wedged = fake_daemon("wedged", None);
        let started = std::time::Instant::now();
        assert!(matches!(ask(&wedged, ANSWER_BUDGET), Err(NoAnswer::Timeout(_))));
        let took = started.elapsed();
        // Near the budget, not the daemon's own request timeout (a loaded
        // two-core machine gets slack).
        assert!(took >= ANSWER_BUDGET && took < ANSWER_BUDGET * 3, "{took:?}");

        let failing = fake_daemon("error", Some("{\"error\":\"maps gone\"}\n".into()));
        let e = ask(&failing, ANSWER_BUDGET).unwrap_err();
        assert_eq!(e.to_string(), "the daemon answered with an error: maps gone");

        let garbled = fake_daemon("garbled", Some("HTTP/1.1 400 Bad Request\r\n".into()));
        assert!(matches!(ask(&garbled, ANSWER_BUDGET), Err(NoAnswer::Garbled(_))));

        let json = serde_json::to_string(&running()).unwrap() + "\n";
        let fine = fake_daemon("fine", Some(json));
        assert_eq!(ask(&fine, ANSWER_BUDGET).unwrap(), running());

        let _ = std::fs::remove_dir_all(dead);
        for path in [wedged, failing, garbled, fine] {
            let _ = std::fs::remove_dir_all(path.parent().unwrap());
        }
    }

    #[test]
    fn requests_are_one_word_lines() {
        assert_eq!(Request::parse(b"status\n"), Ok(Request::Status));
        assert_eq!(Request::parse(b" reload \r\n"), Ok(Request::Reload));
        assert_eq!(Request::parse(b"stat\xffus"), Err("stat\u{fffd}us".to_string()));
        assert!(parse_reply("{\"error\":\"x\"}").is_err() && parse_reply("not json").is_err());
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_unanswered_and_counted() {
        let dir = temp_dir("cap");
        let path = dir.join("cap.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let exposition = Exposition::new(dir.join("no-pins"), Vec::new(), "static");
        let (reloads, _rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(serve(listener, "cap".into(), exposition.clone(), reloads));
        // Clients that send nothing hold every slot…
        let idle: Vec<_> = (0..MAX_CONNECTIONS)
            .map(|_| std::os::unix::net::UnixStream::connect(&path).expect("connect"))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // …so one more gets no answer at all, at once.
        let answer = tokio::task::spawn_blocking(move || {
            use std::io::{Read as _, Write as _};
            let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
            let _ = s.write_all(b"status\n");
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            reply
        })
        .await
        .expect("join");
        assert_eq!(answer, "");
        assert_eq!(exposition.guards().snapshot().status_refused, 1);
        drop(idle);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_auth_lines_say_what_an_operator_checks() {
        use crate::serve::view::{AuthView, SessionView};
        let none = AuthView { mode: "none".into(), ..AuthView::default() };
        assert!(auth_lines(&none).starts_with("auth: none — no handshake"));
        let keys = AuthView {
            mode: "keys".into(),
            own_key: "0011aabb".into(),
            sessions: vec![SessionView {
                peer: "car7".into(),
                fingerprint: "ccddeeff".into(),
                established: true,
                epoch: 12,
                previous_epoch: Some(11),
                last_rekey_unix_s: Some(1_800_000_000),
            }],
            initiations_sent: 0,
            completed: 12,
            rejected: vec![("unknown_key".into(), 3)],
        };
        assert_eq!(
            auth_lines(&keys),
            "auth: keys, own key 0011aabb; handshakes completed 12, rejected: unknown_key 3\n  \
             session with car7 [ccddeeff]: established, epoch 12 (epoch 11 still accepted), keys of 1800000000\n"
        );
    }
}
