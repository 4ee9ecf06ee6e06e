//! `cargo xtask`: everything a newcomer or CI runs.
//!
//! * `setup` — install what the build and tests need (idempotent).
//! * `test` — set-up, lint, then every test.
//! * `demo` — set-up, then a 3-link lab demo through the bond.
//! * `lab up|down` — the lab topology by hand.
//! * `bench datapath` — per-packet program cost and lab forwarding figures.
//! * `package` — Debian packages for amd64 and arm64.
//! * `fuzz` — the fuzz targets of `fuzz/`, or the ingress program (`--ingress`).
//! * `layers` — module cycles and strata-ctl's layer rules (also a test).
//! * `trace stats` — statistics of a capacity trace file or model.

mod bench;
mod cmd;
mod demo;
mod fuzz;
mod lab;
mod layers;
mod package;
mod setup;
mod test;
mod trace;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Strata project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Install rust-src, bpf-linker and the Debian packages; mount bpffs.
    Setup,
    /// Set-up, lint, then run every test (needs root).
    Test,
    /// Set-up, then stream through a 3-link lab bond and show what each link carried.
    Demo,
    /// Bring the lab topology up or down.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// Build Debian packages (.deb) of strata-ctl, its unit, example
    /// configurations and the Grafana board, for amd64 and arm64.
    Package {
        /// Where to write the packages (default `target/debian`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only this architecture: amd64 or arm64 (default: both).
        #[arg(long)]
        arch: Option<String>,
        /// Package an unoptimised build (quicker to build; for tests).
        #[arg(long)]
        debug: bool,
    },
    /// Check that no crate has module cycles and strata-ctl keeps its layers.
    Layers,
    /// Run every fuzz target of fuzz/ (cargo-fuzz), or with --ingress the
    /// ingress eBPF program against generated packets (needs root).
    Fuzz {
        /// Inputs per target (default: until --seconds; --ingress: 1 000 000 per policy).
        #[arg(long)]
        runs: Option<u64>,
        /// Seconds per target at most.
        #[arg(long)]
        seconds: Option<u64>,
        /// Only this target (see `cargo fuzz list` in fuzz/).
        #[arg(long)]
        target: Option<String>,
        /// The ingress program through BPF_PROG_TEST_RUN instead.
        #[arg(long)]
        ingress: bool,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Capacity traces.
    Trace {
        #[command(subcommand)]
        command: TraceCommand,
    },
}

#[derive(Subcommand, Debug)]
enum TraceCommand {
    /// Mean, per-second rate percentiles, empty 100 ms windows, rate
    /// autocorrelation time and burst sizes of a mahimahi FILE or a model.
    Stats {
        /// A mahimahi trace file.
        file: Option<PathBuf>,
        /// A model instead, as in a scenario: 'model = "cellular", mean_mbit_s = 12.8'.
        #[arg(long, conflicts_with = "file")]
        model: Option<String>,
        /// Length of a generated trace, s.
        #[arg(long, default_value_t = 600.0)]
        duration: f64,
        /// Seeds of a generated model to describe (1..=N).
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also write the trace in mahimahi format here (one file per seed).
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// Create the namespaces (edge, carriers, internet, hub).
    Up {
        /// Number of links (1-8).
        #[arg(long, default_value_t = 3)]
        links: usize,
        /// Namespace name prefix.
        #[arg(long, default_value = "strata")]
        prefix: String,
    },
    /// Remove the namespaces.
    Down {
        /// Namespace name prefix.
        #[arg(long, default_value = "strata")]
        prefix: String,
    },
    /// Play a scenario (a name in tests/scenarios/ or a path) over emulated
    /// links with the Strata daemons; write JSON, plot and summary.
    Run {
        /// Scenario name or file.
        scenario: String,
        /// Play another mahimahi file: FILE replaces the file of every
        /// `file` link (keeping its offset and scale); LINK=FILE replaces
        /// one link's trace whatever its model.
        #[arg(long = "trace", value_name = "[LINK=]FILE")]
        traces: Vec<String>,
        /// Also write the JSON result to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Where to put result.json, plot.svg and summary.md (default `target/lab/<scenario>`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the scenario's duration, seconds (events after it are dropped).
        #[arg(long)]
        duration: Option<f64>,
        /// How the edge decides its weights: static (configured) or adaptive (in-band).
        #[arg(long, default_value = "static")]
        control: String,
        /// Run an optimised build of the daemons (for cost figures).
        #[arg(long)]
        release: bool,
        /// Run this strata-ctl instead of building one.
        #[arg(long, value_name = "PATH", conflicts_with = "release")]
        binary: Option<PathBuf>,
        /// The edge's os_signals tier: none, netlink, enhanced or full.
        #[arg(long, default_value = "full")]
        os_signals: String,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Program cost per packet (BPF_PROG_TEST_RUN) and lab forwarding with vs. without Strata.
    Datapath {
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Datagrams per forwarding run.
        #[arg(long, default_value_t = 300_000)]
        packets: u64,
    },
    /// The link emulator's own accuracy (delay, capacity) and limit.
    Emulator {
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run(),
        Command::Test => test::run(),
        Command::Demo => demo::run(),
        Command::Layers => layers::run(),
        Command::Fuzz { runs, seconds, target, ingress } => {
            fuzz::run(&fuzz::Options { runs, seconds, target, ingress })
        }
        Command::Package { out, arch, debug } => arch
            .as_deref()
            .map(package::Arch::parse)
            .transpose()
            .and_then(|arch| package::run(&package::Request { out: out.as_deref(), arch, debug })),
        Command::Lab { command: LabCommand::Up { links, prefix } } => lab::up(&prefix, links),
        Command::Lab { command: LabCommand::Down { prefix } } => lab::down(&prefix),
        Command::Lab {
            command:
                LabCommand::Run { scenario, traces, json, out, duration, control, release, binary, os_signals },
        } => lab::run(
            &scenario,
            &traces,
            json.as_deref(),
            out.as_deref(),
            duration,
            (&control, &os_signals),
            lab::Daemons { release, binary },
        ),
        Command::Bench { command: BenchCommand::Emulator { json } } => bench::emulator(json.as_deref()),
        Command::Trace { command: TraceCommand::Stats { file, model, duration, seeds, json, write } } => {
            trace::stats(&trace::StatsArgs {
                file: file.as_deref(),
                model: model.as_deref(),
                duration_s: duration,
                seeds,
                json,
                write: write.as_deref(),
            })
        }
        Command::Bench { command: BenchCommand::Datapath { json, packets } } => {
            bench::datapath(json.as_deref(), packets)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<strata_lab::interrupt::Interrupted>() {
            // Said plainly, with the shell's code for a signal, so a caller
            // can tell "stopped as asked" from a failure.
            Some(interrupted) => {
                eprintln!("xtask: {interrupted}; the lab was stopped and removed");
                ExitCode::from(interrupted.exit_code())
            }
            None => {
                eprintln!("xtask: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
