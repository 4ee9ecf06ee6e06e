//! `cargo xtask fuzz`: every coverage-guided target of `fuzz/` (cargo-fuzz,
//! libFuzzer, AddressSanitizer), and with `--ingress` the ingress eBPF
//! program fed generated and mutated packets through `BPF_PROG_TEST_RUN`.
//!
//! The targets are whatever `fuzz/Cargo.toml` lists (`cargo fuzz list`), so
//! a new parser's target runs here, in CI and in the benchmark without a
//! change to this file. Each target's corpus grows in
//! `target/fuzz/corpus/<target>` (kept between runs, so later runs start
//! where earlier ones got to), seeded from `fuzz/seeds/<target>` when that
//! exists; a crash leaves its input in `fuzz/artifacts/<target>` and fails
//! the run.
//!
//! cargo-fuzz needs nightly flags (`-Zsanitizer`); like the eBPF build, it
//! gets them from the stable toolchain with `RUSTC_BOOTSTRAP=1`, and the
//! toolchain ships the AddressSanitizer runtime.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::cmd::{build_strata_profile, output, require_root, run as run_cmd, target_dir, workspace_root};

/// What to run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    /// Inputs per target (libFuzzer `-runs`); `None`: until `seconds`.
    pub(crate) runs: Option<u64>,
    /// Seconds per target at most (libFuzzer `-max_total_time`).
    pub(crate) seconds: Option<u64>,
    /// Only this target.
    pub(crate) target: Option<String>,
    /// The ingress program instead of the libFuzzer targets.
    pub(crate) ingress: bool,
}

/// One target's figures, from libFuzzer's closing statistics.
#[derive(Clone, Debug, Default)]
pub(crate) struct TargetRun {
    target: String,
    executions: u64,
    seconds: u64,
    coverage: u64,
    features: u64,
    corpus: u64,
    peak_rss_mb: u64,
}

/// Runs the targets; fails on the first crash, panic, leak or timeout.
pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    if options.ingress {
        return ingress(options.runs.unwrap_or(1_000_000));
    }
    let fuzz_dir = workspace_root().join("fuzz");
    run_cmd(cargo_fuzz(&fuzz_dir).args(["build", "-O"]), "cargo fuzz build")?;
    let listed = output(cargo_fuzz(&fuzz_dir).arg("list"), "cargo fuzz list")?;
    let targets: Vec<&str> = listed
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty() && options.target.as_deref().is_none_or(|only| only == *t))
        .collect();
    if targets.is_empty() {
        bail!("no fuzz target {:?} (cargo fuzz list: {})", options.target, listed.trim());
    }
    let mut results = Vec::new();
    for target in targets {
        results.push(run_target(&fuzz_dir, target, options)?);
    }
    println!(
        "\nfuzz: {:<16} {:>12} {:>8} {:>6} {:>7} {:>7}",
        "target", "executions", "seconds", "cov", "ft", "corpus"
    );
    for r in &results {
        println!(
            "fuzz: {:<16} {:>12} {:>8} {:>6} {:>7} {:>7}",
            r.target, r.executions, r.seconds, r.coverage, r.features, r.corpus
        );
    }
    let report = target_dir().join("fuzz").join("report.json");
    let json: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            serde_json::json!({
                "target": r.target, "executions": r.executions, "seconds": r.seconds,
                "coverage": r.coverage, "features": r.features, "corpus": r.corpus,
                "peak_rss_mb": r.peak_rss_mb,
            })
        })
        .collect();
    std::fs::write(&report, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", report.display()))?;
    println!("fuzz: {} targets, 0 crashes; figures in {}", results.len(), report.display());
    Ok(())
}

/// `cargo fuzz` in `fuzz/`, with the nightly flags allowed.
fn cargo_fuzz(fuzz_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("fuzz").current_dir(fuzz_dir).env("RUSTC_BOOTSTRAP", "1");
    // cargo xtask's own target directory must not capture the fuzz build.
    cmd.env_remove("CARGO_TARGET_DIR");
    cmd
}

fn run_target(fuzz_dir: &std::path::Path, target: &str, options: &Options) -> anyhow::Result<TargetRun> {
    let corpus = target_dir().join("fuzz").join("corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let seeds: PathBuf = fuzz_dir.join("seeds").join(target);
    let mut cmd = cargo_fuzz(fuzz_dir);
    cmd.args(["run", "-O", target]).arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--").arg("-print_final_stats=1").arg("-max_len=4096");
    if let Some(runs) = options.runs {
        cmd.arg(format!("-runs={runs}"));
    }
    if let Some(seconds) = options.seconds {
        cmd.arg(format!("-max_total_time={seconds}"));
    }
    println!("fuzz: {target}…");
    let out = cmd.output().with_context(|| format!("cannot run cargo fuzz for {target}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // The crash report and the reproducer's path are at the end.
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
        bail!("fuzz target {target} failed ({}): input saved under fuzz/artifacts/{target}", out.status);
    }
    Ok(parse_stats(target, &log))
}

/// libFuzzer's closing lines: `stat::number_of_executed_units: N`,
/// `Done N runs in S second(s)`, and the last status line's `cov: ft: corp:`.
fn parse_stats(target: &str, log: &str) -> TargetRun {
    let mut r = TargetRun { target: target.to_string(), ..TargetRun::default() };
    let number = |s: &str| s.trim().split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok());
    for line in log.lines() {
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:").and_then(number) {
            r.executions = n;
        } else if let Some(n) = line.strip_prefix("stat::peak_rss_mb:").and_then(number) {
            r.peak_rss_mb = n;
        } else if let Some(rest) = line.strip_prefix("Done ") {
            r.seconds = rest.split(" in ").nth(1).and_then(number).unwrap_or(0);
        }
        let field = |name: &str| line.split(name).nth(1).and_then(number);
        if line.starts_with('#') {
            r.coverage = field("cov: ").unwrap_or(r.coverage);
            r.features = field("ft: ").unwrap_or(r.features);
            r.corpus = field("corp: ").unwrap_or(r.corpus);
        }
    }
    r
}

/// The ingress program against `runs` generated frames per policy — with
/// authentication required (the acceptance run: nothing forged or mutated
/// delivered), then without keys (`strata-ingress-fuzz`, release build).
/// Needs root.
fn ingress(runs: u64) -> anyhow::Result<()> {
    require_root("cargo xtask fuzz --ingress")?;
    let bin = build_strata_profile("strata-ingress-fuzz", true)?;
    run_cmd(Command::new(&bin).arg(runs.to_string()), "strata-ingress-fuzz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzers_closing_statistics() {
        let log = "#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #1000000\tDONE   cov: 321 ft: 987 corp: 45/2300b lim: 4096 exec/s: 90909 rss: 60Mb\n\
                   Done 1000000 runs in 11 second(s)\n\
                   stat::number_of_executed_units: 1000000\n\
                   stat::peak_rss_mb:              60\n";
        let r = parse_stats("wire_header", log);
        assert_eq!(
            (r.executions, r.seconds, r.coverage, r.features, r.corpus),
            (1_000_000, 11, 321, 987, 45)
        );
        assert_eq!(r.peak_rss_mb, 60);
    }
}
