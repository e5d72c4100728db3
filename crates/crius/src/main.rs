//! `crius`: the Kubernetes CRI daemon and its subcommands.

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{CommandFactory, Parser};

use crius::cli::{Cli, Command};
use crius::config::Config;
use crius::{check, logging, pull, server, status, wipe};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("crius: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Version) => {
            println!("crius version {}", env!("CARGO_PKG_VERSION"));
            println!("CRI API version v1");
            Ok(())
        }
        Some(Command::Config { default }) => {
            let config = if default {
                Config::default()
            } else {
                cli.opts.effective_config()?
            };
            print!("{}", config.to_commented_toml());
            Ok(())
        }
        Some(Command::Status { verbose }) => {
            let config = cli.opts.effective_config()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let socket = &config.crius.api.listen;
            let report =
                runtime.block_on(status::query(socket, verbose, Duration::from_secs(10)))?;
            print!("{}", report.text);
            if !report.ready {
                bail!("not ready");
            }
            Ok(())
        }
        Some(Command::Completion { shell }) => {
            let mut cmd = Cli::command();
            // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "crius", &mut script);
            std::io::stdout().write_all(&script)?;
            Ok(())
        }
        Some(Command::Man) => {
            let cmd = Cli::command().name("crius");
            clap_mangen::Man::new(cmd)
                .section("8")
                .render(&mut std::io::stdout())?;
            Ok(())
        }
        Some(Command::Check) => {
            let config = cli.opts.effective_config()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let findings = runtime.block_on(check::run(&config));
            print!("{}", check::render(&findings));
            if findings.iter().any(|f| f.level == check::Level::Fail) {
                bail!("the node has problems (FAIL above)");
            }
            Ok(())
        }
        Some(Command::Pull { image }) => {
            let config = cli.opts.effective_config()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let terminal = std::io::stderr().is_terminal();
            let id = runtime.block_on(pull::pull(&config.crius.api.listen, &image, terminal))?;
            println!("pulled {image}: {id}");
            Ok(())
        }
        Some(Command::Wipe { force }) => {
            require_root()?;
            wipe::wipe(&cli.opts.effective_config()?, force)
        }
        None => {
            require_root()?;
            // Before any thread starts: files made without an explicit mode get the usual
            // 0644/0755 whatever umask started us (a 000 would make them world-writable);
            // the state dirs and secret files set their own, tighter modes.
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            let config = cli.opts.effective_config()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("crius")
                .build()?;
            // The span exporter's gRPC channel lives on this runtime.
            let log = {
                let _runtime = runtime.enter();
                logging::init(
                    config.crius.log_level,
                    config.crius.log_format,
                    &config.crius.tracing,
                )?
            };
            runtime.block_on(server::serve(cli.opts, config, log))
        }
    }
}

/// Pods need mounts, namespaces and cgroups: only root can make them.
fn require_root() -> anyhow::Result<()> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        bail!("crius must run as root (running as uid {euid})");
    }
    Ok(())
}
