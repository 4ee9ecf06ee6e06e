//! `cargo xtask`: everything a newcomer or CI runs.
//!
//! * `setup` — install what the build and tests need (idempotent).
//! * `test` — set-up, lint, then every test.
//! * `demo` — set-up, then a 3-link lab demo through the bond.
//! * `lab up|down` — the lab topology by hand.
//! * `bench datapath` — per-packet program cost and lab forwarding figures.
//! * `layers` — module cycles and strata-ctl's layer rules (also a test).

mod bench;
mod cmd;
mod demo;
mod lab;
mod layers;
mod setup;
mod test;

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
    /// Check that no crate has module cycles and strata-ctl keeps its layers.
    Layers,
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
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
        /// Replace a link's trace with a mahimahi file: LINK=FILE.
        #[arg(long = "trace", value_name = "LINK=FILE")]
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
        Command::Lab { command: LabCommand::Up { links, prefix } } => lab::up(&prefix, links),
        Command::Lab { command: LabCommand::Down { prefix } } => lab::down(&prefix),
        Command::Lab {
            command: LabCommand::Run { scenario, traces, json, out, duration, control, release, os_signals },
        } => lab::run(
            &scenario,
            &traces,
            json.as_deref(),
            out.as_deref(),
            duration,
            (&control, &os_signals),
            release,
        ),
        Command::Bench { command: BenchCommand::Emulator { json } } => bench::emulator(json.as_deref()),
        Command::Bench { command: BenchCommand::Datapath { json, packets } } => {
            bench::datapath(json.as_deref(), packets)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
