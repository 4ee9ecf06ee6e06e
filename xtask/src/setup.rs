//! `cargo xtask setup`: install everything the build and the tests need on a
//! fresh machine, and nothing twice.
//!
//! 1. The `rust-src` component (the eBPF crate builds `core` from source).
//! 2. `bpf-linker` 0.13.0, built against the toolchain's own LLVM: rustc's
//!    sysroot ships `libLLVM.so.<major>…`; a directory whose `lib/libLLVM.so`
//!    points at it serves as `LLVM_PREFIX`, so no LLVM package is needed and
//!    the linker's LLVM always matches the compiler's (see [`LlvmPrefix`]).
//! 3. Debian packages for the lab (iproute2, nftables, nsenter, sysctl,
//!    conntrack), for the ModemManager advisor's tests (dbus-daemon,
//!    ModemManager) and for the real-client tests (srt-live-transmit,
//!    ffmpeg and ffprobe, iperf3).
//! 4. For `cargo xtask package`: the other architecture's Rust target and
//!    the Debian cross toolchain to link it (`gcc-aarch64-linux-gnu`,
//!    `libc6-dev-arm64-cross` on an amd64 host), and `qemu-user`, with
//!    which the package test runs the arm64 binary.
//! 5. `cargo-fuzz` for `cargo xtask fuzz` (libFuzzer's C++ sources are
//!    built by `g++`, among the Debian packages).
//! 6. bpffs at /sys/fs/bpf, where the daemon pins its maps, and tracefs at
//!    /sys/kernel/tracing, where kernel sampling reads tracepoint formats.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{
    cmd::{output, run as run_cmd},
    package::Arch,
};

const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages and a file each provides, to check without dpkg where possible.
const PACKAGES: [(&str, &str); 11] = [
    ("iproute2", "/usr/sbin/ip"),
    ("nftables", "/usr/sbin/nft"),
    ("util-linux", "/usr/bin/nsenter"),
    ("procps", "/usr/sbin/sysctl"),
    ("conntrack", "/usr/sbin/conntrack"),
    // The ModemManager advisor's tests: a private D-Bus daemon for the
    // ModemManager double, and the real daemon run on it with no modem.
    ("dbus-daemon", "/usr/bin/dbus-daemon"),
    ("modemmanager", "/usr/sbin/ModemManager"),
    // The real-client tests (strata-lab's `clients`): an x264 test pattern
    // carried by SRT through the tunnel, its frames counted by ffprobe, and
    // TCP throughput measured by iperf3.
    ("srt-tools", "/usr/bin/srt-live-transmit"),
    ("ffmpeg", "/usr/bin/ffprobe"),
    ("iperf3", "/usr/bin/iperf3"),
    // libfuzzer-sys compiles libFuzzer (C++) for the fuzz targets.
    ("g++", "/usr/bin/g++"),
];
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Runs every step.
pub(crate) fn run() -> anyhow::Result<()> {
    rust_src()?;
    bpf_linker()?;
    cross_targets()?;
    debian_packages()?;
    cargo_fuzz()?;
    bpffs()?;
    Ok(())
}

fn rust_src() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["component", "list", "--installed"]), "rustup")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        println!("setup: rust-src ok");
        return Ok(());
    }
    run_cmd(Command::new("rustup").args(["component", "add", "rust-src"]), "rustup component add rust-src")?;
    println!("setup: rust-src installed");
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    // The links are (re)made on every run, before the check: they are cheap,
    // and a machine set up before the soname link existed is repaired
    // without rebuilding the linker.
    let llvm = LlvmPrefix::link_toolchain_llvm()?;
    // Checked without cargo's LD_LIBRARY_PATH (which `cargo xtask` inherits
    // and which names the toolchain's lib directory): the linker must load
    // its LLVM on its own, as it does when a person runs it or a build
    // invokes it outside cargo.
    let current = Command::new("bpf-linker").arg("--version").env_remove("LD_LIBRARY_PATH").output();
    if let Ok(out) = &current
        && String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION)
    {
        println!("setup: bpf-linker {BPF_LINKER_VERSION} ok");
        return Ok(());
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against the toolchain's LLVM {} (about a minute)",
        llvm.major
    );
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--no-default-features",
            ])
            .args(["--features", &format!("llvm-{}", llvm.major)])
            .env("LLVM_PREFIX", &llvm.prefix),
        "cargo install bpf-linker",
    )?;
    println!("setup: bpf-linker {BPF_LINKER_VERSION} installed");
    Ok(())
}

fn cargo_fuzz() -> anyhow::Result<()> {
    let current = Command::new("cargo").args(["fuzz", "--version"]).output();
    if let Ok(out) = &current
        && String::from_utf8_lossy(&out.stdout).contains(CARGO_FUZZ_VERSION)
    {
        println!("setup: cargo-fuzz {CARGO_FUZZ_VERSION} ok");
        return Ok(());
    }
    println!("setup: building cargo-fuzz {CARGO_FUZZ_VERSION} (about a minute)");
    run_cmd(
        Command::new("cargo").args(["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--locked"]),
        "cargo install cargo-fuzz",
    )?;
    println!("setup: cargo-fuzz {CARGO_FUZZ_VERSION} installed");
    Ok(())
}

/// `$HOME/.cache/strata/llvm`: an `LLVM_PREFIX` made of links to the
/// toolchain's own LLVM.
///
/// Two links, for two readers: `lib/libLLVM.so` is what bpf-linker's build
/// looks for under `LLVM_PREFIX`; `lib/libLLVM.so.<version>-rust-…` is the
/// soname the built linker then needs at run time, found through the
/// RUNPATH (`<prefix>/lib`) the build gives it. Without the second, the
/// linker only starts where cargo happens to put the toolchain's lib
/// directory on `LD_LIBRARY_PATH`.
struct LlvmPrefix {
    prefix: PathBuf,
    /// LLVM major version, for bpf-linker's `llvm-NN` feature.
    major: u32,
}

impl LlvmPrefix {
    fn link_toolchain_llvm() -> anyhow::Result<Self> {
        let sysroot = PathBuf::from(
            output(Command::new("rustc").args(["--print", "sysroot"]), "rustc --print sysroot")?.trim(),
        );
        let lib = sysroot.join("lib");
        let soname = std::fs::read_dir(&lib)
            .with_context(|| format!("reading {}", lib.display()))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("libLLVM.so."))
            .with_context(|| format!("no libLLVM.so.* in {} (is this a rustup toolchain?)", lib.display()))?;
        let major =
            llvm_major(&soname).with_context(|| format!("cannot read the LLVM version from {soname}"))?;
        let home = std::env::var_os("HOME").context("HOME is not set")?;
        let prefix = PathBuf::from(home).join(".cache/strata/llvm");
        let prefix_lib = prefix.join("lib");
        std::fs::create_dir_all(&prefix_lib).with_context(|| format!("creating {}", prefix_lib.display()))?;
        let target = lib.join(&soname);
        symlink(&target, &prefix_lib.join("libLLVM.so"))?;
        symlink(&target, &prefix_lib.join(&soname))?;
        Ok(Self { prefix, major })
    }
}

/// "libLLVM.so.22.1-rust-1.95.0-stable" → 22.
fn llvm_major(soname: &str) -> Option<u32> {
    soname.strip_prefix("libLLVM.so.")?.split(['.', '-']).next()?.parse().ok()
}

/// Makes `link` point at `target`, replacing whatever `link` was (a link to
/// an older toolchain's LLVM, say); leaves a correct link alone.
fn symlink(target: &Path, link: &Path) -> anyhow::Result<()> {
    if std::fs::read_link(link).is_ok_and(|current| current == target) {
        return Ok(());
    }
    match std::fs::remove_file(link) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", link.display()));
        }
        _ => {}
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

/// The Rust targets of the architectures `cargo xtask package` cross-builds.
fn cross_targets() -> anyhow::Result<()> {
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"]), "rustup target list")?;
    for target in Arch::ALL.into_iter().filter(|a| a.is_cross()).map(Arch::rust_target) {
        if installed.lines().any(|l| l.trim() == target) {
            println!("setup: Rust target {target} ok");
            continue;
        }
        run_cmd(Command::new("rustup").args(["target", "add", target]), "rustup target add")?;
        println!("setup: Rust target {target} installed");
    }
    Ok(())
}

fn debian_packages() -> anyhow::Result<()> {
    let packaging = Arch::ALL.into_iter().flat_map(Arch::cross_packages).chain(std::iter::once((
        // Runs the cross-built arm64 binary in the package test.
        "qemu-user".to_string(),
        "/usr/bin/qemu-aarch64".to_string(),
    )));
    let wanted: Vec<(String, String)> =
        PACKAGES.iter().map(|(p, f)| ((*p).to_string(), (*f).to_string())).chain(packaging).collect();
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(pkg, file)| !Path::new(file).exists() && !dpkg_installed(pkg))
        .map(|(pkg, _)| pkg.as_str())
        .collect();
    if missing.is_empty() {
        println!("setup: Debian packages ok");
        return Ok(());
    }
    println!("setup: installing {}", missing.join(" "));
    run_cmd(Command::new("apt-get").args(["update", "-qq"]), "apt-get update")?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )
    .context("installing Debian packages (needs root and access to the Debian mirrors)")?;
    Ok(())
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn bpffs() -> anyhow::Result<()> {
    mount_if_absent("bpf", "/sys/fs/bpf", "bpffs")?;
    // Kernel sampling and the OS-advisor tests read tracepoint formats in
    // tracefs; a fresh machine may not have it mounted.
    mount_if_absent("tracefs", "/sys/kernel/tracing", "tracefs")
}

/// Mounts a `fstype` file system at `path` unless one is mounted there.
fn mount_if_absent(fstype: &str, path: &str, what: &str) -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&path) && f.get(2) == Some(&fstype)
    }) {
        println!("setup: {what} ok");
        return Ok(());
    }
    let status = Command::new("mount").args(["-t", fstype, fstype, path]).status()?;
    if !status.success() {
        bail!("mounting {what} at {path} failed (needs root)");
    }
    println!("setup: {what} mounted at {path}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::llvm_major;

    #[test]
    fn llvm_major_comes_from_the_soname() {
        assert_eq!(llvm_major("libLLVM.so.22.1-rust-1.95.0-stable"), Some(22));
        assert_eq!(llvm_major("libLLVM.so.19-rust-1.84.0-stable"), Some(19));
        assert_eq!(llvm_major("libLLVM-22-rust-1.95.0-stable.so"), None);
        assert_eq!(llvm_major("libLLVM.so.x"), None);
    }
}
