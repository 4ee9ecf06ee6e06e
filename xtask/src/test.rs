//! `cargo xtask test`: set-up, lint, then every test of the workspace, and
//! every fuzz target for a few seconds.
//!
//! The tests that create namespaces and load BPF programs run here too, as
//! root; they fail rather than skip without it. Lab namespaces left by an
//! earlier run that died (names `st<6 hex>-…`, their lock not held) are
//! removed first; a lab another process is running is left alone.

use std::process::Command;

use crate::cmd::{cargo, require_root, run as run_cmd};

/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SECONDS: u64 = 10;

/// Runs set-up, lints and tests.
pub(crate) fn run() -> anyhow::Result<()> {
    crate::setup::run()?;
    require_root("cargo xtask test")?;
    remove_stale_labs()?;
    run_cmd(cargo().args(["fmt", "--all", "--", "--check"]), "cargo fmt --check")?;
    run_cmd(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]), "cargo clippy (host crates)")?;
    run_cmd(&mut ebpf_clippy(), "cargo clippy (eBPF crate)")?;
    // Module docs name the modules they explain: a link that no longer
    // resolves (a module moved or renamed) fails here, not in a reader's head.
    run_cmd(
        cargo()
            .args(["doc", "--no-deps", "--document-private-items", "--package", "strata-common"])
            .args(["--package", "strata-ctl", "--package", "strata-lab", "--package", "xtask"])
            .env("RUSTDOCFLAGS", "-D rustdoc::broken_intra_doc_links -A rustdoc::private_intra_doc_links"),
        "cargo doc (intra-doc links)",
    )?;
    // The binaries first, so the end-to-end tests find them.
    run_cmd(cargo().args(["build", "--package", "strata-ctl", "--bins"]), "building strata-ctl")?;
    let (mut passed, mut failed) = cargo_test(cargo().args(["test", "--no-fail-fast"]))?;
    // The scenario suite once more with the daemons under exactly the
    // capability set the shipped unit grants (issue 16: least privilege),
    // not as root: what the unit would refuse fails here.
    let caps = unit_capabilities()?;
    println!("\ntest: the scenario suite again, daemons under the unit's capabilities ({caps})");
    let (p, f) = cargo_test(
        cargo()
            .args(["test", "--package", "strata-ctl", "--test", "scenarios"])
            .env(strata_lab::strata::CAPS_ENV, &caps),
    )?;
    (passed, failed) = (passed + p, failed + f);
    // Every fuzz target for a few seconds: a parser change that panics on
    // input the corpus already holds fails here. The million-input runs
    // are a benchmark (docs/BENCHMARKS.md).
    println!("\ntest: every fuzz target, {FUZZ_SECONDS} s each");
    match crate::fuzz::run(&crate::fuzz::Options { seconds: Some(FUZZ_SECONDS), ..Default::default() }) {
        Ok(()) => passed += 1,
        Err(e) => {
            eprintln!("test: fuzzing failed: {e:#}");
            failed += 1;
        }
    }
    // One closing line for the whole run (cargo's own last line is the empty
    // doc-test run of the last crate).
    println!("\nxtask test: {passed} passed, {failed} failed");
    if failed > 0 {
        anyhow::bail!("{failed} test(s) failed");
    }
    Ok(())
}

/// The shipped unit's `CapabilityBoundingSet`, as `setpriv` names them
/// (`net_admin,bpf,perfmon`).
fn unit_capabilities() -> anyhow::Result<String> {
    let path = crate::cmd::workspace_root().join("packaging/systemd/strata@.service");
    let unit =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let set = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("CapabilityBoundingSet="))
        .ok_or_else(|| anyhow::anyhow!("{}: no CapabilityBoundingSet", path.display()))?;
    let caps: Vec<String> =
        set.split_whitespace().map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase()).collect();
    anyhow::ensure!(!caps.is_empty(), "{}: an empty CapabilityBoundingSet", path.display());
    Ok(caps.join(","))
}

/// Runs a `cargo test` command, echoing its output, and adds up its result
/// lines.
fn cargo_test(cmd: &mut Command) -> anyhow::Result<(u64, u64)> {
    use std::io::BufRead as _;
    // Every test binary runs even after one fails (`--no-fail-fast`), so one
    // CI run reports every failure rather than the first.
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (mut passed, mut failed) = (0, 0);
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        // "test result: ok. 9 passed; 0 failed; 0 ignored; …"
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(word)
                    })
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            passed += count(" passed");
            failed += count(" failed");
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        anyhow::bail!("cargo test failed ({status})");
    }
    Ok((passed, failed))
}

/// Clippy for the eBPF crate, on its own target.
fn ebpf_clippy() -> Command {
    let mut cmd = cargo();
    cmd.args(["clippy", "--package", "strata-ebpf", "--release", "--target", "bpfel-unknown-none"])
        .args(["-Z", "build-std=core", "--", "-D", "warnings"])
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", crate::cmd::target_dir().join("ebpf-clippy"));
    cmd
}

fn remove_stale_labs() -> anyhow::Result<()> {
    let stale: Vec<String> = strata_lab::list_namespaces()?
        .into_iter()
        .filter_map(|ns| {
            let prefix = ns.split('-').next()?.to_string();
            let hex = prefix.strip_prefix(strata_lab::UNIQUE_PREFIX_START)?;
            (hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(prefix)
        })
        .collect();
    for prefix in stale.iter().collect::<std::collections::BTreeSet<_>>() {
        if strata_lab::Lab::in_use(prefix) {
            println!("test: lab {prefix} belongs to a running process; left alone");
            continue;
        }
        println!("test: removing stale lab {prefix}");
        strata_lab::Lab::down_prefix(prefix)?;
    }
    Ok(())
}
