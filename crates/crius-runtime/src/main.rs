//! crius-runtime: runc's command line over the crius-runtime library.

use std::io::Read;
use std::process::ExitCode;

use crius_runtime::container::{self, Globals};
use crius_runtime::{log, sealed, Error};

mod cli;
use cli::{Cli, Cmd, Parsed};

fn run(cli: Cli) -> Result<u8, Error> {
    let g = Globals {
        root: cli.root.clone(),
        systemd_cgroup: cli.systemd_cgroup,
    };
    match cli.cmd {
        Cmd::Create(o) => {
            container::create(&g, &o)?;
        }
        Cmd::Start { id } => container::start(&g, &id)?,
        Cmd::State { id } => println!("{}", container::state(&g, &id)?),
        Cmd::Kill { all, id, signal } => {
            let sig = container::parse_signal(&signal)?;
            container::kill(&g, &id, sig, all)?;
        }
        Cmd::Delete { force, id } => match container::delete(&g, &id, force) {
            // runc: deleting what is not there with --force is not an error.
            Err(Error::NotFound(_)) if force => {}
            r => r?,
        },
        Cmd::Exec(o) => {
            let code = container::exec(&g, &o)?;
            return Ok(code as u8);
        }
        Cmd::Run { create: o, detach } => {
            if detach {
                container::create(&g, &o)?;
                container::start(&g, &o.id)?;
            } else {
                return Ok(container::run(&g, &o)? as u8);
            }
        }
        Cmd::Ps { json, id } => {
            let pids = container::ps(&g, &id)?;
            if json {
                println!("{}", serde_json::to_string(&pids).unwrap_or_default());
            } else {
                println!("PID");
                for p in pids {
                    println!("{p}");
                }
            }
        }
        Cmd::Pause { id } => container::set_paused(&g, &id, true)?,
        Cmd::Resume { id } => container::set_paused(&g, &id, false)?,
        Cmd::Update { resources, id } => {
            let mut text = Vec::new();
            if resources.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_end(&mut text)
                    .map_err(|e| Error::io("read resources", "stdin", e))?;
            } else {
                text = std::fs::read(&resources)
                    .map_err(|e| Error::io("read resources", &resources, e))?;
            }
            let res = serde_json::from_slice(&text)
                .map_err(|e| Error::Spec(format!("resources do not parse: {e}")))?;
            container::update(&g, &id, &res)?;
        }
        Cmd::Features => println!(
            "{}",
            serde_json::to_string_pretty(&crius_runtime::features::document()).unwrap_or_default()
        ),
        Cmd::List { quiet } => {
            for r in container::list(&g) {
                if quiet {
                    println!("{}", r.id);
                } else {
                    println!(
                        "{}\t{}\t{}\t{}",
                        r.id,
                        r.pid,
                        r.status(&g.root).as_str(),
                        r.bundle.display()
                    );
                }
            }
        }
    }
    Ok(0)
}

fn main() -> ExitCode {
    // Before parsing: the command line is parsed once, after the re-exec.
    // A container id spelled like one of these costs only that re-exec.
    let reexec_error = std::env::args_os()
        .skip(1)
        .any(|a| a == "create" || a == "run" || a == "exec")
        .then(sealed::ensure)
        .and_then(Result::err);
    let cli = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(cli)) => *cli,
        Ok(Parsed::Print(text)) => {
            println!("{}", text.trim_end());
            return ExitCode::SUCCESS;
        }
        Err(cli::UsageError(e)) => {
            eprintln!("crius-runtime: {e}\n(crius-runtime --help for usage)");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = log::init(cli.log.as_deref(), cli.log_json) {
        eprintln!("crius-runtime: open log: {e}");
        return ExitCode::from(1);
    }
    if let Some(e) = reexec_error {
        log::error(&e.to_string());
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            log::error(&e.to_string());
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
