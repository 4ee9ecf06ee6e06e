//! `cargo xtask lab up|down|run`: the lab topology by hand, and playing
//! scenarios (see `strata_lab`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use strata_lab::{
    Lab,
    scenario::{
        report, runner,
        spec::{Scenario, TraceModel},
    },
    strata::{Control, EdgeSetup, OsSignals},
};

use crate::cmd::{build_strata_profile, require_root, target_dir, workspace_root};

pub(crate) fn up(prefix: &str, links: usize) -> anyhow::Result<()> {
    require_root("cargo xtask lab up")?;
    let lab = Lab::up(prefix, links)?;
    println!("lab {prefix}: {links} link(s)");
    println!("  edge  {}  (links lnk0..lnk{})", lab.edge_ns(), links - 1);
    for i in 0..links {
        println!(
            "  carrier {}  {} → NAT {}",
            lab.carrier_ns(i),
            Lab::link_gateway(i),
            Lab::carrier_public_addr(i)
        );
    }
    println!("  inet  {}", lab.inet_ns());
    println!("  hub   {}  ({} {})", lab.hub_ns(), Lab::HUB_IFNAME, Lab::hub_addr());
    println!("remove with: cargo xtask lab down --prefix {prefix}");
    lab.persist();
    Ok(())
}

pub(crate) fn down(prefix: &str) -> anyhow::Result<()> {
    require_root("cargo xtask lab down")?;
    Lab::down_prefix(prefix)?;
    println!("lab {prefix}: removed");
    Ok(())
}

/// Finds a scenario by name in tests/scenarios/, or takes a path.
pub(crate) fn scenario_path(name: &str) -> PathBuf {
    let candidate = workspace_root().join("tests/scenarios").join(format!("{name}.toml"));
    if candidate.is_file() { candidate } else { PathBuf::from(name) }
}

/// `--trace FILE` points every `file` link at FILE (keeping offsets and
/// scales: the scenario on another recording); `--trace LINK=FILE` replaces
/// one link's trace. The file must exist: a fallback would hide the typo.
fn apply_trace_option(scenario: &mut Scenario, option: &str) -> anyhow::Result<()> {
    let per_link = option.split_once('=').and_then(|(l, f)| Some((l.parse::<usize>().ok()?, f)));
    let file = PathBuf::from(per_link.map_or(option, |(_, f)| f));
    anyhow::ensure!(file.is_file(), "--trace {option}: {} is not a file", file.display());
    match per_link {
        Some((link, _)) => {
            let spec = scenario
                .links
                .get_mut(link)
                .with_context(|| format!("--trace {option}: the scenario has no link {link}"))?;
            spec.trace = TraceModel::File { path: file, offset_s: 0.0, scale: 1.0, fallback: None };
        }
        None => {
            let n = scenario.replace_trace_files(&file);
            anyhow::ensure!(
                n > 0,
                "--trace {option}: scenario {} has no `file` link to replace; use --trace LINK=FILE",
                scenario.name
            );
            println!("--trace: {n} link(s) now play {}", file.display());
        }
    }
    Ok(())
}

/// Which strata-ctl a lab run plays: a build of the workspace (optimised
/// or not), or a given binary.
pub(crate) struct Daemons {
    pub(crate) release: bool,
    pub(crate) binary: Option<PathBuf>,
}

pub(crate) fn run(
    name: &str,
    traces: &[String],
    json: Option<&Path>,
    out: Option<&Path>,
    duration: Option<f64>,
    (control, os_signals): (&str, &str),
    daemons: Daemons,
) -> anyhow::Result<()> {
    // First: from here on SIGINT and SIGTERM stop the run through its
    // teardown instead of killing the process mid-way.
    strata_lab::interrupt::install().context("installing the SIGINT/SIGTERM handler")?;
    let control = match control {
        "static" => Control::Static,
        "adaptive" => Control::Adaptive,
        other => anyhow::bail!("--control {other}: expected static or adaptive"),
    };
    let os_signals = OsSignals::parse(os_signals)
        .with_context(|| format!("--os-signals {os_signals}: expected none, netlink, enhanced or full"))?;
    crate::setup::run()?;
    require_root("cargo xtask lab run")?;
    let mut scenario = Scenario::load(&scenario_path(name))?;
    for t in traces {
        apply_trace_option(&mut scenario, t)?;
    }
    if let Some(d) = duration {
        scenario.duration_s = d;
        scenario.events.retain(|e| e.at_s < d);
    }
    scenario.validate()?;
    let binary = match daemons.binary {
        Some(path) => {
            anyhow::ensure!(path.is_file(), "--binary {}: no such file", path.display());
            std::path::absolute(&path).with_context(|| format!("--binary {}", path.display()))?
        }
        None => build_strata_profile("strata-ctl", daemons.release)?,
    };
    let out = out.map_or_else(|| target_dir().join("lab").join(&scenario.name), Path::to_path_buf);
    let workdir = out.join("daemons");
    println!("lab run {}: {} link(s), {} s", scenario.name, scenario.links.len(), scenario.duration_s);
    let result =
        runner::run(&scenario, &binary, EdgeSetup { control, os_signals, ..EdgeSetup::default() }, &workdir)?;
    report::write(&result, &out, json)?;
    print!("{}", report::markdown(&result));
    let o = &result.oracle;
    println!(
        "\noracle: within {:.0} ms Strata delivered {} of {} datagrams, the oracle {} — Strata ÷ oracle = {:.3} \
         (oracle at {:.4} of its byte bound, computed in {:.0} ms of CPU)",
        o.deadline_ms,
        o.all.strata_delivered,
        o.all.sent,
        o.all.oracle_delivered,
        o.all.oracle_ratio,
        o.oracle_of_bound,
        o.compute_ms
    );
    println!("\nwritten: {0}/result.json {0}/plot.svg {0}/summary.md", out.display());
    Ok(())
}
