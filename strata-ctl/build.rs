//! Builds the eBPF object (`strata-ebpf`) for `bpfel-unknown-none` and leaves
//! it in `OUT_DIR/strata`, where `include_bytes_aligned!` embeds it in the
//! binary — so a plain `cargo build` of strata-ctl yields one self-contained
//! executable.
//!
//! Why not `aya_build::build_ebpf`: it fixes the nested build's RUSTFLAGS, and
//! the data plane needs `-C target-cpu=v3`. rustc passes `--cpu generic` (BPF
//! v1) to bpf-linker otherwise, and v1 has no atomic fetch-and-add or exchange
//! (`BPF_FETCH`/`BPF_XCHG`, kernel ≥ 5.12), which the sequence counters and the
//! duplicate window use; LLVM rejects them with "Invalid usage of the XADD
//! return value". Everything else mirrors aya-build: the stable toolchain with
//! `RUSTC_BOOTSTRAP=1` for `-Z build-std=core`, BTF, a separate target dir.
use std::{env, path::PathBuf, process::Command};

const EBPF_PACKAGE: &str = "strata-ebpf";
const EBPF_BIN: &str = "strata";
const TARGET: &str = "bpfel-unknown-none";

fn main() {
    if let Err(e) = build() {
        eprintln!("error: building the eBPF object failed: {e}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR not set")?);
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("no manifest dir")?);
    let ebpf_dir = manifest_dir.join("..").join(EBPF_PACKAGE);
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    println!("cargo:rerun-if-changed={}", manifest_dir.join("../strata-common").display());

    if find_on_path("bpf-linker").is_none() {
        return Err("bpf-linker not found on PATH: run `cargo xtask setup` (it installs bpf-linker 0.13.0 built against the toolchain's LLVM)".into());
    }

    let target_dir = out_dir.join("ebpf-target");
    let rustflags =
        ["-Cdebuginfo=2", "-Clink-arg=--btf", "-Ctarget-cpu=v3", "--cfg=bpf_target_arch=\"x86_64\""]
            .join("\x1f");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&ebpf_dir)
        .args(["build", "--package", EBPF_PACKAGE, "--bins", "--release", "--target", TARGET])
        .args(["-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            println!("cargo:warning={line}");
        }
        return Err(format!("cargo build of {EBPF_PACKAGE} failed ({})", output.status));
    }
    let built = target_dir.join(TARGET).join("release").join(EBPF_BIN);
    std::fs::copy(&built, out_dir.join(EBPF_BIN))
        .map_err(|e| format!("copy {} failed: {e}", built.display()))?;
    Ok(())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|d: PathBuf| d.join(name)).find(|p: &PathBuf| p.is_file())
}
