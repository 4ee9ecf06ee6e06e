//! Running Strata itself in a lab: an edge daemon in the edge namespace, a
//! hub daemon in the hub namespace, their configurations, and what the
//! kernel counted.
//!
//! The daemons are the real `strata-ctl run` binary, started with only the
//! network namespace switched (see [`crate::netns_command`]) so their maps are
//! pinned in the host's bpffs where tests and `strata-ctl stats` can read them.

use std::{
    fs::File,
    io::{ErrorKind, Read as _},
    net::Ipv4Addr,
    os::unix::{net::UnixDatagram, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{CarrierFamily, Lab, netns_command};

/// The edge's tunnel address.
pub const EDGE_TUNNEL_ADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// The hub's tunnel address.
pub const HUB_TUNNEL_ADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// UDP port of the tunnel on both sides.
pub const TUNNEL_PORT: u16 = 7400;
/// Where each daemon serves Prometheus metrics, inside its own namespace.
pub const METRICS_ADDR: &str = "127.0.0.1:9464";

/// How long a daemon may take from exec to `READY=1` (loading and verifying
/// the data plane dominates; a loaded 2-core CI host is slow at it).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of a daemon's log shown when it fails to start.
const LOG_TAIL: usize = 40;

/// One running `strata-ctl run`.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    name: String,
    log: PathBuf,
    /// The directory of the daemon's notification socket, removed on drop.
    notify_dir: PathBuf,
    /// How it was started, to start it again ([`Daemon::restart`]).
    ns: String,
    binary: PathBuf,
    config: PathBuf,
    /// Run with `--keep-dataplane`: a stop leaves the data plane running.
    keep_dataplane: bool,
}

impl Daemon {
    /// Starts `binary run --config config` in namespace `ns`, logging to
    /// `log`, and waits until it says it is ready.
    ///
    /// Ready is the daemon's own word, sent over the service manager's
    /// protocol (sd_notify(3), `READY=1` on the datagram socket named by
    /// `NOTIFY_SOCKET`) once everything it serves is up: data plane, status
    /// socket, metrics, controller. A log line is no such promise — the lab
    /// used to wait for "data plane attached", logged before the status
    /// socket existed, and status tests found no socket one run in three.
    ///
    /// The socket is a path, not an abstract name: abstract names belong to
    /// a network namespace and the daemon runs in another one. Its mount
    /// namespace (private, slave) still sees the same files.
    pub fn start(ns: &str, binary: &Path, config: &Path, log: &Path, name: &str) -> anyhow::Result<Self> {
        let (mut daemon, notify) = Self::spawn(ns, binary, config, log, name, false, false)?;
        daemon.wait_ready(&notify)?;
        Ok(daemon)
    }

    /// Starts it again after [`Daemon::crash`] or [`Daemon::stop_in_place`]
    /// (same namespace, binary, configuration and options), and waits until
    /// it is ready; returns the time from exec to `READY=1`.
    pub fn restart(&mut self) -> anyhow::Result<Duration> {
        anyhow::ensure!(self.child.is_none(), "{} is still running", self.name);
        let (ns, binary, config, log) =
            (self.ns.clone(), self.binary.clone(), self.config.clone(), self.log.clone());
        let _ = std::fs::remove_dir_all(&self.notify_dir);
        let started = Instant::now();
        let (mut fresh, notify) =
            Self::spawn(&ns, &binary, &config, &log, &self.name, self.keep_dataplane, true)?;
        // Its process and socket move here; what is left of `fresh` must
        // not clean up the data plane the new process is adopting.
        self.child = fresh.child.take();
        std::mem::swap(&mut self.notify_dir, &mut fresh.notify_dir);
        fresh.keep_dataplane = false;
        drop(fresh);
        self.wait_ready(&notify)?;
        Ok(started.elapsed())
    }

    /// Kills it with SIGKILL, as a crash would, keeping it for
    /// [`Daemon::restart`]: nothing of its own clean-up runs.
    pub fn crash(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { bail!("{} is not running", self.name) };
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Stops it with SIGTERM, keeping it for [`Daemon::restart`]; started
    /// with `--keep-dataplane` (an [`EdgeSetup`] with `keep_dataplane`) it leaves the
    /// data plane running, as for an upgrade.
    pub fn stop_in_place(&mut self) -> anyhow::Result<()> {
        let status = self.terminate()?;
        anyhow::ensure!(status.success(), "{} exited with {status}:\n{}", self.name, self.log_tail());
        Ok(())
    }

    /// Starts the daemon without waiting for it: the socket its readiness
    /// comes on is returned for [`Daemon::wait_ready`].
    fn spawn(
        ns: &str,
        binary: &Path,
        config: &Path,
        log: &Path,
        name: &str,
        keep_dataplane: bool,
        append_log: bool,
    ) -> anyhow::Result<(Self, UnixDatagram)> {
        // A restarted daemon's log follows its earlier runs'.
        let out = File::options()
            .create(true)
            .write(true)
            .append(append_log)
            .truncate(!append_log)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let (notify_dir, notify) = notify_socket(name)?;
        let mut command = daemon_command(ns, binary)?;
        command.arg("run").arg("--config").arg(config);
        if keep_dataplane {
            command.arg("--keep-dataplane");
        }
        let child = command
            .env("RUST_LOG", std::env::var("STRATA_LAB_LOG").unwrap_or_else(|_| "info".into()))
            .env("NOTIFY_SOCKET", notify_dir.join(NOTIFY_FILE))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a Ctrl-C at the terminal reaches the
            // lab only, which stops the daemons in order (see `interrupt`).
            .process_group(0)
            .spawn();
        let mut daemon = Self {
            child: None,
            name: name.into(),
            log: log.into(),
            notify_dir,
            ns: ns.into(),
            binary: binary.into(),
            config: config.into(),
            keep_dataplane,
        };
        daemon.child = Some(child.with_context(|| format!("starting {} in {ns}", binary.display()))?);
        Ok((daemon, notify))
    }

    /// Waits for `READY=1` on `notify`, or the daemon's exit, or the timeout.
    fn wait_ready(&mut self, notify: &UnixDatagram) -> anyhow::Result<()> {
        // Short reads, so an exit during start-up is noticed within 100 ms.
        notify.set_read_timeout(Some(Duration::from_millis(100)))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_status = String::from("(none)");
        let mut buf = [0u8; 4096];
        loop {
            match notify.recv(&mut buf) {
                Ok(n) => {
                    let message = String::from_utf8_lossy(&buf[..n]);
                    for line in message.lines() {
                        if line == "READY=1" {
                            return Ok(());
                        }
                        if let Some(status) = line.strip_prefix("STATUS=") {
                            last_status = status.to_string();
                        }
                    }
                }
                // A read on a socket with a receive timeout is never
                // restarted after a signal handler or a stop and continue
                // (signal(7)), SA_RESTART or not: EINTR here failed the e2e
                // test of a clean-clone CI run (which signal, unknown).
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e).context("reading the daemon's notification socket"),
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("{} exited during start-up ({status}); its log ends:\n{}", self.name, self.log_tail());
            }
            crate::interrupt::check()?;
            if Instant::now() > deadline {
                bail!(
                    "{} did not say READY=1 within {READY_TIMEOUT:?} (last STATUS: {last_status}); its log ends:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
        }
    }

    /// The last [`LOG_TAIL`] lines of its log.
    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
    }

    /// The instance name (also its pin directory under /sys/fs/bpf/strata).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id while it runs — to stop and continue it, as a wedged
    /// or starved daemon would be.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where its maps are pinned.
    pub fn pin_dir(&self) -> PathBuf {
        Path::new("/sys/fs/bpf/strata").join(&self.name)
    }

    /// Everything it logged so far (every run, after restarts).
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Sends SIGTERM and waits for a clean exit; returns the log. A daemon run with `--keep-dataplane` leaves its
    /// data plane behind: its pins are removed here (the device goes with
    /// the lab's namespace).
    pub fn stop(mut self) -> anyhow::Result<String> {
        let status = self.terminate()?;
        let log = self.log_text();
        if self.keep_dataplane {
            Self::remove_leftovers(&self.name);
        }
        if !status.success() {
            bail!("{} exited with {status}:\n{log}", self.name);
        }
        Ok(log)
    }

    /// Kills it with SIGKILL, as a crash would: nothing of its own clean-up
    /// runs, so its pinned maps, lock and socket files stay behind
    /// ([`Daemon::remove_leftovers`] removes them).
    pub fn kill(mut self) -> anyhow::Result<String> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(self.log_text())
    }

    /// Removes what a killed daemon named `name` left: pins, lock, socket.
    pub fn remove_leftovers(name: &str) {
        let _ = std::fs::remove_dir_all(Path::new("/sys/fs/bpf/strata").join(name));
        let _ = std::fs::remove_file(Path::new("/run/strata").join(format!("{name}.lock")));
        let _ = std::fs::remove_file(Path::new("/run/strata").join(format!("{name}.sock")));
        let _ = std::fs::remove_file(Path::new("/run/strata").join(format!("{name}.bitrate.sock")));
        // The mount point of the daemon's own sysfs (the mount itself died
        // with the daemon's mount namespace).
        let _ = std::fs::remove_dir(Path::new("/run/strata").join(format!("{name}.sysfs")));
    }

    fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} is not running", self.name);
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait()?;
                bail!("{} did not stop within 15 s of SIGTERM (killed: {status})", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate();
        }
        if self.keep_dataplane {
            Self::remove_leftovers(&self.name);
        }
        let _ = std::fs::remove_dir_all(&self.notify_dir);
    }
}

/// The environment variable that runs the lab's daemons with only the
/// given capabilities (e.g. `net_admin,bpf,perfmon`: the shipped units'
/// set), through `setpriv`, instead of full root.
pub const CAPS_ENV: &str = "STRATA_LAB_DAEMON_CAPS";

/// The command that starts a daemon in `ns`: with [`CAPS_ENV`] set, under
/// `setpriv` keeping only those capabilities (bounding, inheritable and
/// ambient sets; uid 0 stays, as in the units, so the daemon's files keep
/// their owner).
fn daemon_command(ns: &str, binary: &Path) -> anyhow::Result<std::process::Command> {
    let Ok(caps) = std::env::var(CAPS_ENV) else { return Ok(netns_command(ns, binary)) };
    let set: Vec<String> =
        caps.split(',').map(str::trim).filter(|c| !c.is_empty()).map(|c| format!("+{c}")).collect();
    anyhow::ensure!(!set.is_empty(), "{CAPS_ENV}={caps:?}: no capability named");
    let set = set.join(",");
    // Without CAP_SYS_ADMIN the daemon cannot mount a sysfs of its network
    // namespace itself (it does when run as root: `nsenter --net` leaves
    // `/sys` showing the lab's host namespace), and recognises links by
    // name only — a modem back under a new name (usb-reattach) would be a
    // stranger. Under systemd in the host's namespace `/sys` is already
    // right; the lab makes it so the same way, as root before dropping
    // capabilities: a private mount namespace whose `/sys` is a fresh sysfs
    // (it shows the mounting process's network namespace), with the host's
    // bpffs moved back on top so pins stay where the CLI finds them.
    let mut cmd = netns_command(ns, "unshare");
    cmd.args(["--mount", "--propagation", "slave", "--", "sh", "-ec", NAMESPACE_SYSFS, "sh", "setpriv"])
        .arg(format!("--bounding-set=-all,{set}"))
        .arg(format!("--inh-caps=-all,{set}"))
        .arg(format!("--ambient-caps=-all,{set}"))
        .arg("--")
        .arg(binary);
    Ok(cmd)
}

/// The shell that gives a daemon its network namespace's sysfs at `/sys`
/// with the host's bpffs kept at `/sys/fs/bpf` and its tracefs at
/// `/sys/kernel/tracing` (the kernel sampling's tracepoints: without it a
/// daemon under the unit's capabilities ran with sampling off, unlike one
/// under systemd), then runs its arguments.
const NAMESPACE_SYSFS: &str = r#"b=$(mktemp -d) t=$(mktemp -d)
mount --rbind /sys/fs/bpf "$b"
mount --rbind /sys/kernel/tracing "$t"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
mount --move "$b" /sys/fs/bpf
mount --move "$t" /sys/kernel/tracing
rmdir "$b" "$t"
exec "$@""#;

/// The notification socket's file name in its directory.
const NOTIFY_FILE: &str = "notify";

/// A fresh directory (root only) holding a bound notification socket for
/// the daemon `name`: its own directory, so nothing else can send it a
/// READY=1, and short enough under the temp dir for a socket path (108
/// bytes at most).
fn notify_socket(name: &str) -> anyhow::Result<(PathBuf, UnixDatagram)> {
    use std::os::unix::fs::DirBuilderExt as _;
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("strata-ready-{}-{n}-{name}", std::process::id()));
    // Left by an earlier process with the same pid: ours now.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(NOTIFY_FILE);
    let socket = UnixDatagram::bind(&path).with_context(|| format!("binding {}", path.display()));
    if socket.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok((dir, socket?))
}

/// How the edge decides its weights (the `[control]` mode of strata-ctl).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Control {
    /// The configured weights.
    #[default]
    Static,
    /// In-band probing, lifecycle and scoring.
    Adaptive,
}

impl Control {
    /// The configuration value.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Adaptive => "adaptive",
        }
    }
}

/// How much the edge listens to the operating system (`os_signals`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum OsSignals {
    /// In-band only.
    None,
    /// In-band and rtnetlink events.
    Netlink,
    /// Also uevents and ModemManager.
    Enhanced,
    /// Also kernel tracepoints. The lab's default: the metrics tests read
    /// the host-queue histograms.
    #[default]
    Full,
}

impl OsSignals {
    /// Every tier, in order.
    pub const ALL: [Self; 4] = [Self::None, Self::Netlink, Self::Enhanced, Self::Full];

    /// The configuration value.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Netlink => "netlink",
            Self::Enhanced => "enhanced",
            Self::Full => "full",
        }
    }

    /// The tier named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// What the edge daemon runs with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeSetup {
    /// `[control] mode`.
    pub control: Control,
    /// `os_signals`.
    pub os_signals: OsSignals,
    /// `modem_manager_bus` (default: the system bus).
    pub modem_manager_bus: Option<String>,
    /// Both daemons run with `--keep-dataplane` (a stop leaves the data
    /// plane forwarding, as for an upgrade; their pins are removed when the
    /// lab stops them for good).
    pub keep_dataplane: bool,
    /// Lines added to the edge's `[auth]` section (e.g.
    /// `rekey_interval_s = 30`), when the lab runs with keys.
    pub auth_extra: String,
    /// Run without keys (`[auth] mode = "none"`) whatever the environment:
    /// for tests of the unauthenticated protocol itself.
    pub no_auth: bool,
    /// Hand the tunnel over as soon as both daemons are ready, without
    /// waiting for their session (scenarios: their warm-up covers it).
    pub no_session_wait: bool,
    /// `[[classes]]` entries added to both daemons' configurations (each
    /// side classes what it sends).
    pub classes: String,
    /// Lines added to the edge's `[control]` section (e.g. `drop_late =
    /// true`), before any from [`EDGE_CONTROL_ENV`].
    pub control_extra: String,
}

impl From<Control> for EdgeSetup {
    fn from(control: Control) -> Self {
        Self { control, ..Self::default() }
    }
}

/// The environment variable whose TOML lines the lab adds to the edge's
/// `[control]` section (e.g. `drop_late = true`).
pub const EDGE_CONTROL_ENV: &str = "STRATA_LAB_EDGE_CONTROL";

/// The edge's configuration for a lab: one link per lab link, with the given weights.
pub fn edge_config(lab: &Lab, name: &str, session: u32, weights: &[u32], setup: &EdgeSetup) -> String {
    let mut s = format!(
        "version = 1\nrole = \"edge\"\nname = \"{name}\"\nsession = {session}\nport = {TUNNEL_PORT}\n\
         os_signals = \"{}\"\n\n\
         [control]\nmode = \"{}\"\n\n[metrics]\nlisten = \"{METRICS_ADDR}\"\n\n\
         [tunnel]\naddress = \"{EDGE_TUNNEL_ADDR}/30\"\n\n[peer]\naddress = \"{}\"\nport = {TUNNEL_PORT}\n",
        setup.os_signals.name(),
        setup.control.name(),
        Lab::hub_addr()
    );
    if let Some(bus) = &setup.modem_manager_bus {
        s = s.replacen("\n\n[control]", &format!("\nmodem_manager_bus = \"{bus}\"\n\n[control]"), 1);
    }
    if !setup.control_extra.is_empty() {
        s = s.replacen("\n\n[metrics]", &format!("\n{}\n\n[metrics]", setup.control_extra), 1);
    }
    if let Ok(extra) = std::env::var(EDGE_CONTROL_ENV) {
        // Experiments with the controller's tunables (e.g. `drop_late =
        // true`) without a scenario of their own; the daemon's own config
        // check rejects what is not a valid `[control]` key.
        s = s.replacen("\n\n[metrics]", &format!("\n{extra}\n\n[metrics]"), 1);
    }
    let v6 = (0..lab.links()).any(|i| lab.family(i) == CarrierFamily::Ipv6);
    if v6 {
        s += &format!("address6 = \"{}\"\n", Lab::hub_addr6());
    }
    for i in 0..lab.links() {
        let weight = weights.get(i).copied().unwrap_or(1);
        s += &format!("\n[[links]]\nid = {i}\ninterface = \"{}\"\nweight = {weight}\n", Lab::link_ifname(i));
        s += &match lab.family(i) {
            CarrierFamily::Ipv4 => format!("gateway = \"{}\"\n", Lab::link_gateway(i)),
            // The link's IPv6 address makes it an IPv6 link; the only one
            // its interface has, but stated, as an operator would.
            CarrierFamily::Ipv6 => {
                format!("address = \"{}\"\ngateway = \"{}\"\n", Lab::link_addr6(i), Lab::link_gateway6(i))
            }
        };
    }
    s
}

/// The environment variable whose TOML lines the lab puts in the hub's
/// `[control]` section (e.g. `probe_interval_ms = 25`, which is also how
/// often the hub sends feedback).
pub const HUB_CONTROL_ENV: &str = "STRATA_LAB_HUB_CONTROL";

/// The hub's configuration for a lab (equal weights back to the edge).
pub fn hub_config(name: &str, session: u32) -> String {
    // As for the edge's: experiments without a scenario of their own, which
    // the daemon's config check validates.
    let control =
        std::env::var(HUB_CONTROL_ENV).map_or_else(|_| String::new(), |c| format!("[control]\n{c}\n\n"));
    format!(
        "version = 1\nrole = \"hub\"\nname = \"{name}\"\nsession = {session}\nport = {TUNNEL_PORT}\n\n\
         {control}[metrics]\nlisten = \"{METRICS_ADDR}\"\n\n\
         [tunnel]\naddress = \"{HUB_TUNNEL_ADDR}/30\"\n\n[hub]\ninterface = \"{}\"\n",
        Lab::HUB_IFNAME
    )
}

/// Set to `none` to run the lab's daemons without the session handshake
/// (`[auth] mode = "none"`); by default they authenticate with keys made
/// for the run.
pub const LAB_AUTH_ENV: &str = "STRATA_LAB_AUTH";

/// Fresh keys for a lab run, made with `strata-ctl keygen` in `workdir`
/// (as an operator would), and the `[auth]` sections that use them: the
/// hub's (its key and the edge on its allowlist) and the edge's.
pub fn lab_auth(binary: &Path, workdir: &Path, session: u32) -> anyhow::Result<(String, String)> {
    let keygen = |name: &str| -> anyhow::Result<(PathBuf, String)> {
        let path = workdir.join(name);
        let _ = std::fs::remove_file(&path);
        let out = std::process::Command::new(binary)
            .arg("keygen")
            .arg(&path)
            .output()
            .with_context(|| format!("running {} keygen", binary.display()))?;
        anyhow::ensure!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
        Ok((path, String::from_utf8_lossy(&out.stdout).trim().to_string()))
    };
    let (hub_key, hub_public) = keygen("hub.key")?;
    let (edge_key, edge_public) = keygen("edge.key")?;
    let hub = format!(
        "\n[auth]\nmode = \"keys\"\nprivate_key = \"{}\"\n\n[[auth.cars]]\nname = \"lab-car\"\n\
         public_key = \"{edge_public}\"\nsession = {session}\n",
        hub_key.display()
    );
    let edge = format!(
        "\n[auth]\nmode = \"keys\"\nprivate_key = \"{}\"\nhub_public_key = \"{hub_public}\"\n",
        edge_key.display()
    );
    Ok((hub, edge))
}

/// Waits until every instance in `names` reports an established session
/// (`strata-ctl status --json`, `auth.sessions[0].established`).
pub fn wait_for_session(binary: &Path, names: &[&str], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let established = |name: &str| {
        std::process::Command::new(binary)
            .args(["status", "--name", name, "--json"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .is_some_and(|doc| doc["auth"]["sessions"][0]["established"] == true)
    };
    while !names.iter().all(|n| established(n)) {
        anyhow::ensure!(Instant::now() < deadline, "no session established within {timeout:?}: {names:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// An edge and a hub daemon running in a lab.
#[derive(Debug)]
pub struct Tunnel {
    /// The hub daemon (started first, so it is listening when the edge sends).
    pub hub: Daemon,
    /// The edge daemon.
    pub edge: Daemon,
    workdir: PathBuf,
}

impl Tunnel {
    /// Writes both configurations into `workdir` and starts hub, then edge,
    /// with static weights.
    pub fn start(lab: &Lab, binary: &Path, weights: &[u32], workdir: &Path) -> anyhow::Result<Self> {
        Self::start_with(lab, binary, weights, Control::Static, workdir)
    }

    /// Like [`Tunnel::start`], choosing how the edge decides its weights
    /// (a [`Control`]) and, with an [`EdgeSetup`], its `os_signals` tier.
    pub fn start_with(
        lab: &Lab,
        binary: &Path,
        weights: &[u32],
        setup: impl Into<EdgeSetup>,
        workdir: &Path,
    ) -> anyhow::Result<Self> {
        let setup = setup.into();
        std::fs::create_dir_all(workdir)?;
        let session = session_for(lab.prefix());
        let hub_name = format!("{}-hub", lab.prefix());
        let edge_name = format!("{}-edge", lab.prefix());
        let hub_cfg = workdir.join("hub.toml");
        let edge_cfg = workdir.join("edge.toml");
        let (mut hub_text, mut edge_text) =
            (hub_config(&hub_name, session), edge_config(lab, &edge_name, session, weights, &setup));
        let auth = !setup.no_auth && std::env::var(LAB_AUTH_ENV).as_deref() != Ok("none");
        if auth {
            let (hub_auth, edge_auth) = lab_auth(binary, workdir, session)?;
            hub_text += &hub_auth;
            edge_text += &edge_auth;
            edge_text += &setup.auth_extra;
        }
        hub_text += &setup.classes;
        edge_text += &setup.classes;
        std::fs::write(&hub_cfg, hub_text)?;
        std::fs::write(&edge_cfg, edge_text)?;
        // Both start at once and are then waited for: one after the other,
        // a loaded CI machine took 1.4-1.5 s for each in a debug build,
        // past the scenarios' 3 s warm-up. The edge needs nothing from a
        // ready hub to start (its probes are answered once the hub is up).
        let keep = setup.keep_dataplane;
        let (mut hub, hub_ready) =
            Daemon::spawn(&lab.hub_ns(), binary, &hub_cfg, &workdir.join("hub.log"), &hub_name, keep, false)?;
        let (mut edge, edge_ready) = Daemon::spawn(
            &lab.edge_ns(),
            binary,
            &edge_cfg,
            &workdir.join("edge.log"),
            &edge_name,
            keep,
            false,
        )?;
        hub.wait_ready(&hub_ready)?;
        edge.wait_ready(&edge_ready)?;
        if auth && !setup.no_session_wait {
            // Ready is not established: until the first handshake completes
            // every packet is dropped for want of a key, and tests measure
            // from the start.
            wait_for_session(binary, &[&hub_name, &edge_name], Duration::from_secs(15))?;
        }
        Ok(Self { hub, edge, workdir: workdir.into() })
    }

    /// Where configurations and logs are.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Stops edge then hub, each cleanly; returns their logs.
    pub fn stop(self) -> anyhow::Result<(String, String)> {
        let Self { hub, edge, .. } = self;
        let edge_log = edge.stop();
        let hub_log = hub.stop();
        Ok((edge_log?, hub_log?))
    }
}

/// A one-way stream from an application on the edge to `port` on the hub,
/// through the tunnel, of `count` datagrams of 1000 bytes at `pps`.
pub fn edge_to_hub(lab: &Lab, port: u16, count: u64, pps: u64) -> crate::traffic::Stream {
    crate::traffic::Stream {
        from_ns: lab.edge_ns(),
        from: std::net::SocketAddr::from((EDGE_TUNNEL_ADDR, 0)),
        to_ns: lab.hub_ns(),
        to: std::net::SocketAddr::from((HUB_TUNNEL_ADDR, port)),
        count,
        payload_len: 1000,
        pps,
        echo: false,
        idle_timeout: Duration::from_secs(2),
    }
}

/// The session id of the lab with this prefix (never 0).
pub fn session_for(prefix: &str) -> u32 {
    prefix.bytes().fold(0x5354_5241u32, |h, b| h.rotate_left(5) ^ u32::from(b)).max(1)
}
