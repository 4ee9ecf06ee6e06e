//! `strata-ctl status`: one document of what a tunnel is doing, for people in
//! the pits and for scripts.
//!
//! A running daemon answers on a local unix socket, `/run/strata/<name>.sock`
//! (root only, or root and a configured group): the client writes one line,
//! `status`, and reads one JSON [`Status`] document. The daemon builds it from
//! its pinned kernel maps, read at that moment, and the controller's
//! published view. When no daemon answers, the client still reads the pinned
//! maps — the kernel keeps forwarding without its controller — and says so.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixListener,
};
use tracing::debug;

use crate::{
    config::PIN_ROOT,
    metrics::Exposition,
    stats::{self, Snapshot},
};

/// Where the control sockets live.
pub const SOCKET_DIR: &str = "/run/strata";
/// How long the client waits for the daemon.
pub const TIMEOUT: Duration = Duration::from_millis(500);

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
    /// The far end.
    pub peer: String,
}

/// The whole document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Instance name.
    pub name: String,
    /// Whether a daemon answered (false: read from the pinned maps alone).
    pub controller_running: bool,
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
    /// Sum over links: outer bytes sent and received.
    pub total_tx_bytes: u64,
    /// Received.
    pub total_rx_bytes: u64,
}

/// The document from kernel counters and, if there is one, the controller's view.
pub fn build(name: &str, snapshot: &Snapshot, exposition: Option<&Exposition>) -> Status {
    let published = exposition.map(Exposition::published);
    let interface = |id| exposition.map_or(String::new(), |e| e.interface(id));
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
            peer: l.peer.clone(),
        });
    }
    Status {
        name: name.to_string(),
        controller_running: exposition.is_some(),
        mode: published.as_ref().map_or(String::new(), |p| p.mode.to_string()),
        uptime_s: exposition.map(|e| e.uptime().as_secs_f64()),
        total_tx_bytes: links.iter().map(|l| l.tx_bytes).sum(),
        total_rx_bytes: links.iter().map(|l| l.rx_bytes).sum(),
        links,
        drops: snapshot.drops.clone(),
        kernel_sampling: match exposition.map(Exposition::sampling) {
            Some(Ok(())) => "on".into(),
            Some(Err(why)) => format!("off: {why}"),
            None => "unknown (controller down)".into(),
        },
    }
}

/// Serves status requests on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, name: String, exposition: Arc<Exposition>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (exposition, name) = (exposition.clone(), name.clone());
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let request = tokio::time::timeout(TIMEOUT, BufReader::new(read).read_line(&mut line)).await;
            let reply = match (request, line.trim()) {
                (Ok(Ok(_)), "status") => match stats::read_pinned(exposition.pin_dir()) {
                    Ok(snapshot) => serde_json::to_string(&build(&name, &snapshot, Some(&exposition)))
                        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
                    Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
                },
                (Ok(Ok(_)), other) => {
                    serde_json::json!({ "error": format!("unknown request {other:?}") }).to_string()
                }
                _ => return,
            };
            if let Err(e) = write.write_all(format!("{reply}\n").as_bytes()).await {
                debug!("status reply not sent: {e}");
            }
        });
    }
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
pub fn bind(name: &str, group: Option<&str>) -> anyhow::Result<(UnixListener, SocketFile)> {
    use std::os::unix::fs::PermissionsExt as _;

    use anyhow::Context as _;
    let path = socket_path(name);
    std::fs::create_dir_all(SOCKET_DIR).with_context(|| format!("creating {SOCKET_DIR}"))?;
    // A socket file left by a crashed daemon (the instance lock says none runs).
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    let file = SocketFile(path.clone());
    let mode = match group {
        Some(g) => {
            let gid = nix::unistd::Group::from_name(g)
                .with_context(|| format!("status.group: looking up {g:?}"))?
                .with_context(|| format!("status.group: no group {g:?} on this host"))?
                .gid;
            nix::unistd::chown(&path, None, Some(gid))
                .with_context(|| format!("chown {}", path.display()))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok((listener, file))
}

/// Asks the daemon of `name`; falls back to its pinned maps. `Err` if neither
/// is there.
pub fn query(name: &str) -> anyhow::Result<Status> {
    match ask(&socket_path(name)) {
        Ok(status) => Ok(status),
        Err(daemon) => {
            let dir = Path::new(PIN_ROOT).join(name);
            let snapshot = stats::read_pinned(&dir).map_err(|e| {
                anyhow::anyhow!(
                    "no instance {name:?}: its daemon does not answer ({daemon}) and it has no pinned maps ({e})"
                )
            })?;
            Ok(build(name, &snapshot, None))
        }
    }
}

fn ask(path: &Path) -> anyhow::Result<Status> {
    use std::io::{BufRead as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(b"status\n")?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line)?;
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
        && let Some(e) = v.get("error")
    {
        anyhow::bail!("the daemon answered with an error: {e}");
    }
    Ok(serde_json::from_str(&line)?)
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
        "CONTROLLER DOWN — kernel counters from the pinned maps; the data path forwards on its last weights"
            .to_string()
    };
    let _ = writeln!(out, "strata {}: {state}", s.name);
    let _ = writeln!(
        out,
        "{:<4} {:<8} {:<9} {:>6} {:>9} {:>8} {:>9} {:>6} {:>9} {:>10} {:>10} {:>7}  peer",
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
        "lost"
    );
    let opt = |v: Option<f64>, unit: &str, scale: f64| {
        v.map_or("-".to_string(), |v| format!("{:.1}{unit}", v / scale))
    };
    for l in &s.links {
        let _ = writeln!(
            out,
            "{:<4} {:<8} {:<9} {:>6} {:>9} {:>8} {:>9} {:>5.1}% {:>9} {:>10} {:>10} {:>7}  {}",
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
            l.peer
        );
    }
    let _ = writeln!(out, "total: tx {}  rx {}", bytes(s.total_tx_bytes), bytes(s.total_rx_bytes));
    out.push_str(&stats::drops_line(&s.drops));
    let _ = writeln!(out, "kernel sampling: {}", s.kernel_sampling);
    out
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
    use crate::stats::LinkStats;

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
            tx_overflow: 0,
            owd_sum_us: 0,
            owd_count: 0,
            peer: "198.19.0.2:7400".into(),
            peer_ip: std::net::Ipv4Addr::new(198, 19, 0, 2),
        };
        Snapshot { links: vec![link(0, 2048), link(1, 0), link(2, 0)], drops: vec![("no_link".into(), 3)] }
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
        // Round trip through JSON, as scripts read it.
        let back: Status = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
