//! Running commands, and where the workspace and its build output are.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where cargo puts build output.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// `cargo` as invoked by `cargo xtask`, in the workspace root.
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cmd` with inherited output; fails naming `what` if it fails.
pub(crate) fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("{what}: cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; fails with its stderr.
pub(crate) fn output(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("{what}: cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds strata-ctl's binaries and returns the path of `name`.
pub(crate) fn build_strata(name: &str) -> anyhow::Result<PathBuf> {
    build_strata_profile(name, false)
}

/// Builds the `strata-ctl` package's binary `name`, optimised if `release`.
pub(crate) fn build_strata_profile(name: &str, release: bool) -> anyhow::Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--package", "strata-ctl", "--bins"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd, "building strata-ctl")?;
    let path = target_dir().join(if release { "release" } else { "debug" }).join(name);
    if !path.is_file() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}

/// Fails unless running as root.
pub(crate) fn require_root(what: &str) -> anyhow::Result<()> {
    let uid = output(Command::new("id").arg("-u"), "id -u")?;
    if uid.trim() != "0" {
        bail!("{what} needs root (network namespaces, BPF): run it with sudo or as root");
    }
    Ok(())
}
