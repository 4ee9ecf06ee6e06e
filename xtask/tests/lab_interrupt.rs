//! `cargo xtask lab run` stops cleanly when interrupted: SIGINT (Ctrl-C) or
//! SIGTERM during a run leaves no namespace, daemon or pin behind, and the
//! process exits promptly with the shell's code for the signal.
//!
//! Needs root (namespaces, eBPF), as the lab does; CI runs as root.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Sends `signal` (a name for `kill -NAME`) to `pid`: the `kill` command
/// spares xtask a signal library for one call.
fn kill(pid: u32, signal: &str) {
    let status =
        Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status().expect("running kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// The generous bound on the exit after the signal (the promise is well
/// under a second; a loaded CI machine gets slack).
const EXIT_BOUND: Duration = Duration::from_secs(10);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_path_buf()
}

/// The debug strata-ctl, built if needed (xtask does not depend on it).
fn strata_ctl() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--package", "strata-ctl", "--bins"])
        .current_dir(workspace_root())
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building strata-ctl: {status}");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
    target.join("debug/strata-ctl")
}

/// The instance name in a daemon config (`name = "…"`).
fn config_name(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("name")?.trim_start().strip_prefix('=')?.trim();
        Some(v.trim_matches('"').to_string())
    })
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}

/// One lab run at a time, as CI's other lab tests run: with two side by
/// side on a two-core CI machine, one run's lab was gone 5 s into it, before
/// the signal (CI, 2026-12-07; why was not captured then — a run that ends
/// on its own now has its stderr shown).
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn interrupt_run(signal: &str, expected_code: i32) {
    assert!(is_root(), "the lab needs root (CI runs as root)");
    let _alone = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let binary = strata_ctl();
    let out = tempdir(signal);
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["lab", "run", "steady-asymmetric", "--duration", "30", "--binary"])
        .arg(&binary)
        .arg("--out")
        .arg(&out)
        .current_dir(workspace_root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting xtask lab run");

    // Running: both daemons up (their pins exist), traffic flowing.
    let edge_cfg = out.join("daemons/edge.toml");
    let hub_cfg = out.join("daemons/hub.toml");
    let deadline = Instant::now() + Duration::from_secs(120);
    let (edge, hub) = loop {
        if let (Some(edge), Some(hub)) = (config_name(&edge_cfg), config_name(&hub_cfg))
            && Path::new("/sys/fs/bpf/strata").join(&edge).exists()
        {
            break (edge, hub);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!("lab run ended before its daemons were up ({status}):\n{err}");
        }
        assert!(Instant::now() < deadline, "the lab's daemons were not up within 120 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let prefix = edge.strip_suffix("-edge").expect("edge names are <prefix>-edge").to_string();
    // Into the traffic phase (warm-up is 3 s).
    std::thread::sleep(Duration::from_secs(5));
    if namespaces_with(&prefix).is_empty() {
        // The run ended on its own before the signal: say why.
        let deadline = Instant::now() + EXIT_BOUND;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.to_string(),
                _ if Instant::now() > deadline => {
                    let _ = child.kill();
                    break "still running".to_string();
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let mut err = String::new();
        let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
        panic!("the lab {prefix} was gone before the signal (lab run: {status}); its stderr:\n{err}");
    }

    let signalled = Instant::now();
    kill(child.id(), signal);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for xtask") {
            break status;
        }
        if signalled.elapsed() > EXIT_BOUND {
            let _ = child.kill();
            panic!("lab run did not exit within {EXIT_BOUND:?} of SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = signalled.elapsed();
    let mut err = String::new();
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    eprintln!("SIG{signal}: exited {status} after {took:?}");

    assert_eq!(status.code(), Some(expected_code), "exit status after SIG{signal}; stderr:\n{err}");
    assert!(err.contains("interrupted"), "stderr does not say it was interrupted:\n{err}");
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new(), "namespaces left after SIG{signal}");
    for name in [&edge, &hub] {
        let pins = Path::new("/sys/fs/bpf/strata").join(name);
        assert!(!pins.exists(), "{} left after SIG{signal}", pins.display());
    }
    let daemons = processes_mentioning(&out.join("daemons").to_string_lossy());
    assert!(daemons.is_empty(), "daemons left after SIG{signal}: {daemons:?}");
    let _ = std::fs::remove_dir_all(&out);
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-lab-interrupt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the output directory");
    dir
}

#[test]
fn sigint_stops_a_lab_run_cleanly() {
    interrupt_run("INT", 130);
}

#[test]
fn sigterm_stops_a_lab_run_cleanly() {
    interrupt_run("TERM", 143);
}
