//! The `strata-ctl` command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use strata_ctl::{
    config::{Config, PIN_ROOT},
    dataplane::stats,
};

#[derive(Parser, Debug)]
#[command(name = "strata-ctl", version, about = "Strata bonded tunnel controller")]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the tunnel described by a configuration file (needs root).
    Run {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// On SIGINT/SIGTERM, exit leaving the data plane forwarding (tunnel
        /// device, pinned maps and programs) for the next daemon to adopt:
        /// how to upgrade the binary without losing a packet. Without it a
        /// stop removes everything; a crash leaves the data plane running.
        #[arg(long)]
        keep_dataplane: bool,
    },
    /// Configuration tools.
    /// Creates a key pair for `[auth]`: writes the private key to FILE
    /// (mode 0600, never overwriting) and prints the public key (64 hex
    /// digits) for the other side's configuration.
    Keygen {
        /// Where the private key goes, e.g. /etc/strata/edge.key.
        file: PathBuf,
    },
    /// Prints the public key of a private key file.
    Pubkey {
        /// The private key file.
        file: PathBuf,
    },
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// What a tunnel is doing: links, states, delays, counters, drops.
    /// Asks the running daemon; without one, reads its pinned maps.
    Status {
        /// Instance name (the config's `name`, default the role).
        #[arg(long, default_value = "edge")]
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Refresh every second until interrupted (with --json: one
        /// document per line).
        #[arg(long)]
        watch: bool,
    },
    /// Make the running daemon re-read its configuration file (as SIGHUP
    /// does): it applies every change or, when one needs a restart,
    /// refuses the file and keeps running as it was (exit status 1).
    Reload {
        /// Instance name (the config's `name`, default the role).
        #[arg(long, default_value = "edge")]
        name: String,
    },
    /// Print what the kernel counted, from the pinned maps of an instance.
    Stats {
        /// Instance name (the config's `name`, default the role).
        #[arg(long, default_value = "edge")]
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a configuration without running it.
    Check {
        /// The TOML configuration.
        file: PathBuf,
        /// The configuration running now: also say which differences a
        /// reload applies and which need a restart.
        #[arg(long, value_name = "OLD")]
        against: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-ctl: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: the library's errors end with
/// their cause's message already (`cannot read x.toml: No such file …`), an
/// `anyhow` context does not.
fn report(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config: config_path, keep_dataplane } => {
            let config = Config::load(&config_path)?;
            // Before any thread exists: the kernel refuses a multi-threaded
            // process its own mount namespace.
            strata_ctl::os::host::private_mounts();
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            let stop = if keep_dataplane {
                strata_ctl::daemon::StopMode::Keep
            } else {
                strata_ctl::daemon::StopMode::Remove
            };
            Ok(runtime.block_on(strata_ctl::daemon::run(config, &config_path, stop))?)
        }
        Command::Keygen { file } => {
            let key = strata_ctl::auth::keys::StaticKey::generate()?;
            key.save(&file)?;
            eprintln!("private key written to {} (mode 0600); public key:", file.display());
            println!("{}", key.public);
            Ok(())
        }
        Command::Pubkey { file } => {
            println!("{}", strata_ctl::auth::keys::StaticKey::load(&file)?.public);
            Ok(())
        }
        Command::Config { command: ConfigCommand::Check { file, against } } => {
            let config = Config::load(&file)?;
            // The key file is checked here as the daemon would read it: a
            // missing or world-readable key fails the check, not the start.
            let key = config
                .auth
                .load_key()
                .map_err(|e| anyhow::anyhow!("{}: auth.private_key: {e}", file.display()))?;
            if let Some(key) = key {
                println!("auth: keys, this side's public key {}", key.public);
            }
            println!(
                "{}: ok ({} \"{}\", {} link(s), session {:#x})",
                file.display(),
                config.role,
                config.name(),
                config.links.len(),
                config.session
            );
            for note in config.notes() {
                println!("note: {note}");
            }
            // Valid but unusable here: the daemon would run without its socket.
            if let Some(group) = &config.status.group
                && nix::unistd::Group::from_name(group).ok().flatten().is_none()
            {
                println!(
                    "note: status.group {group:?} does not exist on this host: the daemon would run without \
                     its status socket, and `strata-ctl status` would show its controller as down"
                );
            }
            if let Some(old) = against {
                print_changes(&strata_ctl::config::change::classify(&Config::load(&old)?, &config), &old);
            }
            Ok(())
        }
        Command::Reload { name } => {
            let applied =
                strata_ctl::serve::reload::request(&name, &strata_ctl::serve::status::socket_path(&name))?;
            if applied.is_empty() {
                println!("{name}: reloaded, no change");
            } else {
                println!("{name}: reloaded: {}", applied.join(", "));
            }
            Ok(())
        }
        Command::Status { name, json, watch } => Ok(strata_ctl::serve::status::cli(&name, json, watch)?),
        Command::Stats { name, json } => {
            let dir = PathBuf::from(PIN_ROOT).join(&name);
            let snapshot = stats::read_pinned(&dir).map_err(|e| {
                anyhow::anyhow!(
                    "{e} (is an instance named {name:?} running? its maps live in {})",
                    dir.display()
                )
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&snapshot)?);
            } else {
                print!("{}", snapshot.table(&[]));
            }
            Ok(())
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// What `config check NEW --against OLD` says about the differences.
fn print_changes(changes: &strata_ctl::config::change::Changes, old: &std::path::Path) {
    if changes.is_empty() {
        println!("no change from {}", old.display());
        return;
    }
    for field in &changes.reloadable {
        println!("reload: {field}");
    }
    for field in &changes.restart {
        println!("restart: {field}");
    }
    if changes.reloadable_without_restart() {
        println!("no change needs a restart: a reload (SIGHUP or `strata-ctl reload`) applies them");
    } else {
        println!("needs a restart: a reload would refuse this file and keep the running configuration");
    }
}
