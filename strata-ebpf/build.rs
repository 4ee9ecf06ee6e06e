//! Rebuild the eBPF object when the linker changes (it is installed by
//! `cargo xtask setup`).
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
