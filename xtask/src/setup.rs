//! `cargo xtask setup`: install everything the build and the tests need on a
//! fresh machine, and nothing twice.
//!
//! 1. The `rust-src` component (the eBPF crate builds `core` from source).
//! 2. `bpf-linker` 0.13.0, built against the toolchain's own LLVM: rustc's
//!    sysroot ships `libLLVM.so.<major>…`; a directory whose `lib/libLLVM.so`
//!    points at it serves as `LLVM_PREFIX`, so no LLVM package is needed and
//!    the linker's LLVM always matches the compiler's.
//! 3. Debian packages for the lab (iproute2, nftables, nsenter, sysctl).
//! 4. bpffs at /sys/fs/bpf, where the daemon pins its maps.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::cmd::{output, run as run_cmd};

const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages and a file each provides, to check without dpkg where possible.
const PACKAGES: [(&str, &str); 5] = [
    ("iproute2", "/usr/sbin/ip"),
    ("nftables", "/usr/sbin/nft"),
    ("util-linux", "/usr/bin/nsenter"),
    ("procps", "/usr/sbin/sysctl"),
    ("conntrack", "/usr/sbin/conntrack"),
];

/// Runs every step.
pub(crate) fn run() -> anyhow::Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_packages()?;
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
    let current = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = &current
        && String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION)
    {
        println!("setup: bpf-linker {BPF_LINKER_VERSION} ok");
        return Ok(());
    }
    let sysroot = PathBuf::from(
        output(Command::new("rustc").args(["--print", "sysroot"]), "rustc --print sysroot")?.trim(),
    );
    let lib = sysroot.join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {} (is this a rustup toolchain?)", lib.display()))?;
    // "libLLVM.so.22.1-rust-1.95.0-stable" → 22
    let major: u32 = llvm
        .trim_start_matches("libLLVM.so.")
        .split(['.', '-'])
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("cannot read the LLVM version from {llvm}"))?;
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let prefix = PathBuf::from(home).join(".cache/strata/llvm");
    let link = prefix.join("lib/libLLVM.so");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(lib.join(&llvm), &link)
        .with_context(|| format!("linking {}", link.display()))?;
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against the toolchain's LLVM {major} (about a minute)"
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
            .args(["--features", &format!("llvm-{major}")])
            .env("LLVM_PREFIX", &prefix),
        "cargo install bpf-linker",
    )?;
    println!("setup: bpf-linker {BPF_LINKER_VERSION} installed");
    Ok(())
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(pkg, file)| !std::path::Path::new(file).exists() && !dpkg_installed(pkg))
        .map(|(pkg, _)| *pkg)
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
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&"/sys/fs/bpf") && f.get(2) == Some(&"bpf")
    }) {
        println!("setup: bpffs ok");
        return Ok(());
    }
    let status = Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]).status()?;
    if !status.success() {
        bail!("mounting bpffs at /sys/fs/bpf failed (needs root)");
    }
    println!("setup: bpffs mounted at /sys/fs/bpf");
    Ok(())
}
