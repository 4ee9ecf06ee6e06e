//! A real scenario with the daemons run under exactly the capability set
//! the shipped systemd units grant (packaging/systemd/strata@.service):
//! `lab run` with `STRATA_LAB_DAEMON_CAPS` starts them through `setpriv`.
//! The run must pass; the running edge must hold no other capability, and
//! once set up only CAP_NET_ADMIN (it drops the rest).
//!
//! Needs root (namespaces, eBPF), as the lab does; CI runs as root.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The units' set (CapabilityBoundingSet / AmbientCapabilities).
const UNIT_CAPS: &str = "net_admin,bpf,perfmon";
/// The same as a capability mask: CAP_NET_ADMIN 12, CAP_PERFMON 38, CAP_BPF 39.
const UNIT_MASK: u64 = (1 << 12) | (1 << 38) | (1 << 39);
/// What the daemon keeps after set-up: CAP_NET_ADMIN.
const RUNNING_MASK: u64 = 1 << 12;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_path_buf()
}

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

/// The effective, permitted and bounding capability masks of the process
/// whose command line mentions `needle` and `strata-ctl run`.
fn capability_masks(needle: &str) -> Option<(u64, u64, u64)> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !(cmdline.contains(needle) && cmdline.contains("strata-ctl run")) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
        let mask = |key: &str| {
            status.lines().find_map(|l| u64::from_str_radix(l.strip_prefix(key)?.trim(), 16).ok())
        };
        return Some((mask("CapEff:")?, mask("CapPrm:")?, mask("CapBnd:")?));
    }
    None
}

#[test]
fn a_scenario_passes_under_the_units_capabilities() {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    assert!(root, "the lab needs root (CI runs as root)");
    let binary = strata_ctl();
    let out = std::env::temp_dir().join(format!("strata-lab-caps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["lab", "run", "steady-asymmetric", "--duration", "6", "--control", "adaptive", "--binary"])
        .arg(&binary)
        .arg("--out")
        .arg(&out)
        .env("STRATA_LAB_DAEMON_CAPS", UNIT_CAPS)
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting xtask lab run");
    // The edge's capabilities while it runs.
    let edge_cfg = out.join("daemons/edge.toml");
    let deadline = Instant::now() + Duration::from_secs(120);
    // Sampled until the edge has dropped to what it keeps running (or
    // the run ends): the last sample is what it held.
    let mut masks = None;
    loop {
        if let Some(m) = capability_masks(&edge_cfg.to_string_lossy()) {
            masks = Some(m);
            if m.1 == RUNNING_MASK {
                break;
            }
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("waiting for xtask");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "lab run under {UNIT_CAPS} failed ({}):\n{text}", output.status);
    let (effective, permitted, bounding) = masks.expect("the edge daemon was never seen running");
    eprintln!(
        "edge under setpriv, running: CapEff {effective:#x}, CapPrm {permitted:#x}, CapBnd {bounding:#x}"
    );
    assert_eq!(bounding, UNIT_MASK, "bounding set");
    assert_eq!((effective, permitted), (RUNNING_MASK, RUNNING_MASK), "after set-up only CAP_NET_ADMIN");
    let _ = std::fs::remove_dir_all(&out);
}
