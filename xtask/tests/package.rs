//! `cargo xtask package` builds an amd64 and an arm64 package; the amd64
//! one, installed with `dpkg -i` on a clean machine, runs as its unit says
//! and makes a working hub and a working edge.
//!
//! The clean machine (`package-machine.sh`): an overlay of the host's root
//! with a tmpfs upper layer, in a private mount and network namespace, used
//! as a chroot — Debian with its dpkg and libc, without Strata; nothing it
//! writes reaches the host. A second network namespace inside it is the
//! edge's; two veth "modems" join it to the hub's, on the addresses of the
//! installed example configurations, which are used unchanged.
//!
//! There is no systemd in the test (nor on CI): each daemon runs what the
//! *installed* unit file says — its ExecStartPre and ExecStart, under
//! `setpriv` with its capability bounding and ambient sets, NoNewPrivileges
//! and SecureBits — with a notification socket, as systemd's Type=notify
//! gives it. Checked: the package's fields, contents and owners; the arm64
//! binary's ELF machine, and its `--version` and `config check` under
//! qemu-user; `dpkg -i`, `dpkg --verify`; READY=1 and watchdog pings; the
//! tunnel devices' addresses; `strata-ctl status`; `/metrics`; the
//! daemons' capabilities; TCP through the tunnel (iperf3); clean stop on
//! SIGTERM; `dpkg --purge`.
//!
//! The packages are built with `--debug` (an unoptimised build): the
//! amd64 one is the build `cargo xtask test` makes anyway, and the arm64
//! cross build takes about half the time of a release one. The packaging
//! is the same code either way; STRATA_PACKAGE_TEST_RELEASE=1 tests the
//! release packages instead.
//!
//! Needs root (namespaces, mounts, eBPF), as the lab does; CI runs as root.

use std::{
    io::{BufRead as _, BufReader, ErrorKind},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long a daemon may take from exec to READY=1 (the lab's bound).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The watchdog period the test gives the daemons (the unit's is 10 s): the
/// daemon pings at half of it, so a ping comes within a second.
const WATCHDOG_USEC: &str = "2000000";
/// The capabilities the daemon keeps once set up: CAP_NET_ADMIN.
const RUNNING_MASK: u64 = 1 << 12;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_path_buf()
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/package-machine.sh")
}

/// Runs `cmd`, failing the test with its output unless it succeeds; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A command inside the machine rooted at `pid`'s root, in `pid`'s mount
/// and network namespaces.
fn inside(pid: u32, program: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--target={pid}")).args(["--mount", "--net", "--root", "--wd", "--", program]);
    cmd
}

/// The mask of capability names as the unit writes them (CAP_NET_ADMIN …).
fn capability_mask(names: &str) -> u64 {
    names
        .split_whitespace()
        .map(|name| match name {
            "CAP_NET_ADMIN" => 1 << 12,
            "CAP_SYS_ADMIN" => 1 << 21,
            "CAP_PERFMON" => 1 << 38,
            "CAP_BPF" => 1 << 39,
            other => panic!("the unit names {other}, which this test does not know"),
        })
        .fold(0, |a, b| a | b)
}

/// What the test needs of the installed unit file.
#[derive(Debug)]
struct Unit {
    exec_start_pre: Vec<String>,
    exec_start: Vec<String>,
    bounding: String,
    ambient: String,
    no_new_privileges: bool,
    securebits: String,
}

impl Unit {
    fn parse(text: &str, instance: &str) -> Self {
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("the unit has no {key}"))
                .replace("%i", instance)
        };
        let command = |key: &str| value(key).split_whitespace().map(String::from).collect::<Vec<_>>();
        Self {
            exec_start_pre: command("ExecStartPre"),
            exec_start: command("ExecStart"),
            bounding: value("CapabilityBoundingSet"),
            ambient: value("AmbientCapabilities"),
            no_new_privileges: value("NoNewPrivileges") == "yes",
            securebits: value("SecureBits"),
        }
    }

    /// `setpriv` arguments giving a process what the unit gives it.
    fn setpriv(&self) -> Vec<String> {
        let set = |names: &str| {
            names
                .split_whitespace()
                .map(|n| format!("+{}", n.trim_start_matches("CAP_").to_lowercase()))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut args = vec![
            format!("--bounding-set=-all,{}", set(&self.bounding)),
            format!("--inh-caps=-all,{}", set(&self.ambient)),
            format!("--ambient-caps=-all,{}", set(&self.ambient)),
        ];
        // "noroot-locked" → setpriv's "+noroot,+noroot_locked".
        let bits: Vec<String> = self
            .securebits
            .split_whitespace()
            .flat_map(|b| match b {
                "noroot-locked" => vec!["+noroot".to_string(), "+noroot_locked".to_string()],
                other => vec![format!("+{}", other.replace('-', "_"))],
            })
            .collect();
        if !bits.is_empty() {
            args.push(format!("--securebits={}", bits.join(",")));
        }
        if self.no_new_privileges {
            args.push("--no-new-privs".into());
        }
        args
    }
}

/// The clean machine: the hub's anchor (root of the overlay, hub's network
/// namespace) and the edge's (same files, its own network namespace).
struct Machine {
    work: PathBuf,
    hub: Child,
    edge: Option<Child>,
}

impl Machine {
    fn up(work: &Path) -> Self {
        use std::os::unix::fs::DirBuilderExt as _;
        let _ = std::fs::remove_dir_all(work);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(work.join("notify")).unwrap();
        let hub = anchor(
            Command::new("unshare")
                .args(["--mount", "--net", "--", "sh"])
                .arg(script())
                .arg("root")
                .arg(work),
        );
        let mut machine = Self { work: work.to_path_buf(), hub, edge: None };
        // The edge: the machine's files, its own network namespace, a
        // sysfs of it (the daemon finds its links' devices there) and,
        // since that sysfs hides the machine's, its own bpffs (a host of
        // its own in this, as the edge box is).
        let mut edge = Command::new("nsenter");
        edge.arg(format!("--target={}", machine.hub_pid()))
            .args(["--mount", "--root", "--wd", "--", "unshare", "--net", "--mount", "--", "sh", "-c"])
            .arg(
                "set -e; mount -t sysfs sysfs /sys; mount -t bpf bpf /sys/fs/bpf; ip link set lo up; \
                 echo anchor-ready; exec sleep 3600",
            );
        machine.edge = Some(anchor(&mut edge));
        run(Command::new("sh")
            .arg(script())
            .arg("wire")
            .arg(machine.hub_pid().to_string())
            .arg(machine.edge_pid().to_string()));
        machine
    }

    fn hub_pid(&self) -> u32 {
        self.hub.id()
    }

    fn edge_pid(&self) -> u32 {
        self.edge.as_ref().expect("the edge's anchor").id()
    }

    /// A path of the machine's file system, from the host.
    fn file(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.hub_pid())).join(path.trim_start_matches('/'))
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // The namespaces, the overlay and its tmpfs go with their last process.
        for child in self.edge.iter_mut().chain(std::iter::once(&mut self.hub)) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Starts an anchor process and waits for its "anchor-ready" line.
fn anchor(cmd: &mut Command) -> Child {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    if line.trim() != "anchor-ready" {
        let _ = child.kill();
        panic!("{cmd:?} did not set up: {:?}", child.wait());
    }
    child
}

/// One daemon started as the unit starts it.
struct Daemon {
    name: &'static str,
    child: Child,
    notify: UnixDatagram,
    log: PathBuf,
}

impl Daemon {
    fn start(machine: &Machine, ns_pid: u32, name: &'static str) -> Self {
        let unit = Unit::parse(
            &std::fs::read_to_string(machine.file("/lib/systemd/system/strata@.service")).unwrap(),
            name,
        );
        // ExecStartPre, as systemd runs it: with the same credentials.
        let mut pre = inside(ns_pid, "setpriv");
        pre.args(unit.setpriv()).arg("--").args(&unit.exec_start_pre);
        eprintln!("{name}: {}", run(&mut pre).trim());
        // RuntimeDirectory=strata.
        std::fs::create_dir_all(machine.file("/run/strata")).unwrap();
        let socket = machine.work.join("notify").join(name);
        let notify = UnixDatagram::bind(&socket).unwrap();
        notify.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let log = machine.work.join(format!("{name}.log"));
        let mut cmd = inside(ns_pid, "setpriv");
        cmd.args(unit.setpriv())
            .arg("--")
            .args(&unit.exec_start)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("NOTIFY_SOCKET", format!("/run/notify/{name}"))
            .env("WATCHDOG_USEC", WATCHDOG_USEC)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        eprintln!("{name}: {cmd:?}");
        let child = cmd.spawn().unwrap();
        let mut daemon = Self { name, child, notify, log };
        daemon.wait_for("READY=1", READY_TIMEOUT);
        daemon
    }

    /// Waits for a notification line `what` from the daemon.
    fn wait_for(&mut self, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            match self.notify.recv(&mut buf) {
                Ok(n) if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == what) => return,
                Ok(_) => {}
                // A read on a socket with a receive timeout is never
                // restarted after a signal handler or a stop and continue
                // (signal(7)), SA_RESTART or not: EINTR here failed the e2e
                // test of a clean-clone CI run (which signal, unknown).
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("{}: notification socket: {e}", self.name),
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}) before {what}:\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {timeout:?}:\n{}",
                self.name,
                self.log()
            );
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// (CapEff, CapPrm, CapBnd) of the running daemon.
    fn capabilities(&self) -> (u64, u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let mask = |key: &str| {
            status
                .lines()
                .find_map(|l| u64::from_str_radix(l.strip_prefix(key)?.trim(), 16).ok())
                .unwrap_or_else(|| panic!("no {key} in the daemon's status"))
        };
        (mask("CapEff:"), mask("CapPrm:"), mask("CapBnd:"))
    }

    /// SIGTERM, as `systemctl stop`; must exit 0 within the unit's
    /// TimeoutStopSec (15 s).
    fn stop(mut self) {
        run(Command::new("kill").arg("-TERM").arg(self.child.id().to_string()));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}:\n{}", self.name, self.log());
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} did not stop within 15 s of SIGTERM:\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A helper process stopped when the test ends, passing or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `address` of the `[tunnel]` section of a configuration.
fn tunnel_address(config: &str) -> String {
    let section = config.split("[tunnel]").nth(1).expect("a [tunnel] section");
    let line = section.lines().find(|l| l.trim_start().starts_with("address")).expect("tunnel.address");
    line.split('"').nth(1).expect("a quoted address").to_string()
}

/// The packages `cargo xtask package` built in `out`, by architecture.
fn package(out: &Path, arch: &str) -> PathBuf {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(&format!("_{arch}.deb")))
        .unwrap_or_else(|| panic!("no {arch} package in {}", out.display()))
}

/// Fields, contents and owners of a package.
fn check_package(deb: &Path, arch: &str) {
    let fields =
        run(Command::new("dpkg-deb").arg("--field").arg(deb).args(["Package", "Architecture", "Depends"]));
    eprintln!("{}:\n{fields}", deb.display());
    assert!(fields.contains(&format!("Architecture: {arch}\n")), "{fields}");
    assert!(fields.contains("Depends: libc6 (>= 2."), "{fields}");
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(deb));
    for path in [
        "./usr/bin/strata-ctl",
        "./lib/systemd/system/strata@.service",
        "./etc/strata/edge.toml.example",
        "./etc/strata/hub.toml.example",
        "./usr/share/strata/grafana/strata.json",
        "./usr/share/doc/strata/copyright",
        "./usr/share/doc/strata/DEPLOYMENT.md",
    ] {
        assert!(contents.lines().any(|l| l.ends_with(path)), "{path} not in {}:\n{contents}", deb.display());
    }
    assert!(contents.lines().all(|l| l.contains(" root/root ")), "a file not root's:\n{contents}");
    assert!(
        contents.lines().any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("./usr/bin/strata-ctl")),
        "{contents}"
    );
}

/// The arm64 package: an AArch64 binary that runs (under qemu-user when
/// this is not an arm64 machine) and reads the example configurations.
fn check_arm64(deb: &Path, out: &Path) {
    let tree = out.join("arm64-tree");
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tree));
    let binary = tree.join("usr/bin/strata-ctl");
    let elf = std::fs::read(&binary).unwrap();
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 183, "EM_AARCH64");
    let native = std::env::consts::ARCH == "aarch64";
    let qemu = Path::new("/usr/bin/qemu-aarch64");
    assert!(native || qemu.is_file(), "no qemu-aarch64: run `cargo xtask setup` (it installs qemu-user)");
    let arm64 = || {
        if native {
            return Command::new(&binary);
        }
        let mut cmd = Command::new(qemu);
        // The arm64 loader and libc of the cross toolchain's sysroot.
        cmd.args(["-L", "/usr/aarch64-linux-gnu"]).arg(&binary);
        cmd
    };
    let version = run(arm64().arg("--version"));
    eprintln!("arm64 binary: {}", version.trim());
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    for example in ["edge", "hub"] {
        let path = tree.join(format!("etc/strata/{example}.toml.example"));
        let check = run(arm64().args(["config", "check"]).arg(path));
        eprintln!("arm64 config check {example}: {}", check.trim());
    }
}

#[test]
fn packages_build_and_the_amd64_one_installs_and_runs_as_its_unit_says() {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    assert!(root, "the test needs root (namespaces, mounts, eBPF; CI runs as root)");
    let out = std::env::temp_dir().join(format!("strata-package-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);

    let started = Instant::now();
    let mut build = Command::new(env!("CARGO_BIN_EXE_xtask"));
    build.arg("package").arg("--out").arg(&out).current_dir(workspace_root());
    if std::env::var_os("STRATA_PACKAGE_TEST_RELEASE").is_none() {
        build.arg("--debug");
    }
    let status = build.status().expect("running cargo xtask package");
    assert!(status.success(), "cargo xtask package: {status}");
    eprintln!("cargo xtask package: {:.0} s", started.elapsed().as_secs_f64());

    let amd64 = package(&out, "amd64");
    let arm64 = package(&out, "arm64");
    check_package(&amd64, "amd64");
    check_package(&arm64, "arm64");
    check_arm64(&arm64, &out);

    // The clean machine, and the package installed in it.
    let machine = Machine::up(&out.join("machine"));
    let (hub_ns, edge_ns) = (machine.hub_pid(), machine.edge_pid());
    std::fs::copy(&amd64, machine.file("/tmp/strata.deb")).unwrap();
    assert!(!machine.file("/usr/bin/strata-ctl").exists(), "the machine is not clean");
    eprintln!("{}", run(inside(hub_ns, "dpkg").args(["-i", "/tmp/strata.deb"])));
    let status = run(inside(hub_ns, "dpkg-query").args(["-W", "-f=${Status} ${Version}", "strata"]));
    assert!(status.starts_with("install ok installed"), "{status}");
    assert_eq!(run(inside(hub_ns, "dpkg").args(["--verify", "strata"])), "", "dpkg --verify");
    let board: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(machine.file("/usr/share/strata/grafana/strata.json")).unwrap(),
    )
    .expect("the Grafana board is JSON");
    assert!(board.get("panels").is_some(), "the board has panels");

    // The examples, used as they are: the machine's network matches them.
    let mut tunnel = Vec::new();
    for name in ["hub", "edge"] {
        let example = machine.file(&format!("/etc/strata/{name}.toml.example"));
        std::fs::copy(&example, machine.file(&format!("/etc/strata/{name}.toml"))).unwrap();
        tunnel.push(tunnel_address(&std::fs::read_to_string(&example).unwrap()));
    }
    let hub = Daemon::start(&machine, hub_ns, "hub");
    let edge = Daemon::start(&machine, edge_ns, "edge");

    let unit_text = std::fs::read_to_string(machine.file("/lib/systemd/system/strata@.service")).unwrap();
    let unit = Unit::parse(&unit_text, "edge");
    let unit_mask = capability_mask(&unit.bounding);
    for ((daemon, ns), address) in [(&hub, hub_ns), (&edge, edge_ns)].into_iter().zip(&tunnel) {
        let name = daemon.name;
        let addresses = run(inside(ns, "ip").args(["-4", "-o", "addr", "show", "dev", "strata0"]));
        assert!(
            addresses.contains(&format!("inet {address} ")),
            "{name}: strata0 has not {address}:\n{addresses}"
        );
        let status = run(inside(ns, "strata-ctl").args(["status", "--name", name]));
        eprintln!("{name}: strata-ctl status:\n{status}");
        let metrics = run(inside(ns, "bash").args([
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
        ]));
        assert!(metrics.starts_with("HTTP/1.") && metrics.contains(" 200 "), "{name}: /metrics:\n{metrics}");
        assert!(metrics.contains("strata_"), "{name}: no strata_ metric:\n{metrics}");
        let (effective, permitted, bounding) = daemon.capabilities();
        eprintln!("{name}: CapEff {effective:#x}, CapPrm {permitted:#x}, CapBnd {bounding:#x}");
        assert_eq!(bounding, unit_mask, "{name}: bounding set as the unit's CapabilityBoundingSet");
        assert_eq!(effective & !unit_mask, 0, "{name}: an effective capability the unit does not grant");
        assert_eq!(
            (effective, permitted),
            (RUNNING_MASK, RUNNING_MASK),
            "{name}: after set-up only CAP_NET_ADMIN"
        );
    }

    // Traffic through the tunnel: TCP from the edge to the hub's tunnel
    // address, which only the tunnel reaches — once the edge has a live
    // link. (One run that started as soon as the edge was ready, its links
    // in probe, reported 0 bytes received; not reproduced by hand, not
    // explained: docs/DEPLOYMENT.md.)
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = run(inside(edge_ns, "strata-ctl").args(["status", "--name", "edge"]));
        if status.lines().any(|l| l.split_whitespace().nth(2) == Some("live")) {
            break;
        }
        assert!(Instant::now() < deadline, "no edge link live within 15 s:\n{status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let hub_addr = tunnel[0].split('/').next().unwrap().to_string();
    let server = Command::new("nsenter")
        .arg(format!("--target={hub_ns}"))
        .args(["--net", "--", "iperf3", "--server", "--one-off", "--bind", &hub_addr])
        .stdout(Stdio::null())
        .spawn()
        .expect("iperf3 (cargo xtask setup installs it)");
    // Killed however the test ends: it would keep the hub's namespace alive.
    let server = KillOnDrop(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let out = Command::new("nsenter")
            .arg(format!("--target={edge_ns}"))
            .args(["--net", "--", "iperf3", "--client", &hub_addr, "--time", "2", "--json"])
            .output()
            .unwrap();
        // iperf3 3.12 can exit 0 with `"error": "unable to connect to
        // server: Connection refused"` in its report (CI, 2026-12-07: the
        // server just spawned was not listening yet): retried like a failure.
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let refused =
            serde_json::from_str::<serde_json::Value>(&stdout).is_ok_and(|r| r.get("error").is_some());
        if out.status.success() && !refused {
            break stdout;
        }
        assert!(
            Instant::now() < deadline,
            "iperf3 through the tunnel failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(server);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let rate = report["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0);
    eprintln!("TCP edge → hub through the tunnel: {received} bytes, {:.1} Mbit/s", rate / 1e6);
    assert!(received > 0, "nothing crossed the tunnel:\n{report:#}");

    // The watchdog pings keep coming while it runs.
    let (mut hub, mut edge) = (hub, edge);
    hub.wait_for("WATCHDOG=1", Duration::from_secs(3));
    edge.wait_for("WATCHDOG=1", Duration::from_secs(3));
    edge.stop();
    hub.stop();

    // Purged: the package's files go; the operator's configuration stays.
    eprintln!("{}", run(inside(hub_ns, "dpkg").args(["--purge", "strata"])));
    assert!(!machine.file("/usr/bin/strata-ctl").exists(), "strata-ctl left after purge");
    assert!(!machine.file("/lib/systemd/system/strata@.service").exists(), "unit left after purge");
    assert!(!machine.file("/etc/strata/hub.toml.example").exists(), "example left after purge");
    assert!(machine.file("/etc/strata/hub.toml").exists(), "the operator's configuration was removed");
    drop(machine);
    let _ = std::fs::remove_dir_all(&out);
}
