//! crius-runtime: runc's command line over the crius-runtime library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use crius_runtime::container::{self, CreateOpts, ExecOpts, Globals};
use crius_runtime::{log, sealed, Error};

#[derive(Parser)]
#[command(
    name = "crius-runtime",
    about = "An OCI runtime with runc's command line",
    disable_version_flag = true
)]
struct Cli {
    /// Where container state is kept.
    #[arg(long, global = true, default_value = crius_runtime::state::DEFAULT_ROOT)]
    root: PathBuf,
    /// Log file for errors and warnings.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// Use the systemd cgroup driver (not supported: refused at create).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility; changes nothing.
    #[arg(long, global = true)]
    debug: bool,
    /// Print the version.
    #[arg(long, short = 'v')]
    version: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Args, Clone)]
struct CreateArgs {
    /// The bundle directory (holding config.json).
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    /// Write the init's pid here.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the terminal's master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// MS_MOVE and chroot instead of pivot_root (rootfs on a ramdisk).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc compatibility.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    id: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container: its init waits for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal to a container's init (or, with --all, every process).
    Kill {
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container (--force kills it first).
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Run a process in a container.
    Exec {
        /// A process.json instead of the command line.
        #[arg(long, short = 'p')]
        process: Option<PathBuf>,
        #[arg(long, short = 'd')]
        detach: bool,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        #[arg(long, short = 't')]
        tty: bool,
        #[arg(long, short = 'e')]
        env: Vec<String>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        #[arg(long, short = 'u')]
        user: Option<String>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Create, start, wait for and delete a container.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once started, as `create` + `start`.
        #[arg(long, short = 'd')]
        detach: bool,
    },
    /// List the pids of a container.
    Ps {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        id: String,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's cgroup limits.
    Update {
        /// LinuxResources JSON, "-" for stdin.
        #[arg(long, short = 'r')]
        resources: PathBuf,
        id: String,
    },
    /// Print what this runtime supports as JSON.
    Features,
    /// List containers.
    List {
        #[arg(long, short = 'q')]
        quiet: bool,
    },
}

fn create_opts(a: &CreateArgs) -> CreateOpts {
    CreateOpts {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
    }
}

fn run(cli: Cli) -> Result<u8, Error> {
    let g = Globals {
        root: cli.root.clone(),
        systemd_cgroup: cli.systemd_cgroup,
    };
    let Some(cmd) = cli.cmd else {
        return Err(Error::Other("no command: see --help".into()));
    };
    match cmd {
        Cmd::Create(a) => {
            container::create(&g, &create_opts(&a))?;
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
        Cmd::Exec {
            process,
            detach,
            pid_file,
            console_socket,
            tty,
            env,
            cwd,
            user,
            id,
            command,
        } => {
            let code = container::exec(
                &g,
                &ExecOpts {
                    id,
                    process,
                    args: command,
                    env,
                    cwd,
                    user,
                    tty,
                    detach,
                    pid_file,
                    console_socket,
                },
            )?;
            return Ok(code as u8);
        }
        Cmd::Run { create, detach } => {
            let o = create_opts(&create);
            if detach {
                container::create(&g, &o)?;
                container::start(&g, &o.id)?;
            } else {
                return Ok(container::run(&g, &o)? as u8);
            }
        }
        Cmd::Ps { format, id } => {
            let pids = container::ps(&g, &id)?;
            if format == "json" {
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
    let cli = Cli::parse();
    if cli.version {
        println!(
            "crius-runtime version {}\nspec: {}",
            env!("CARGO_PKG_VERSION"),
            crius_runtime::OCI_VERSION
        );
        return ExitCode::SUCCESS;
    }
    if let Err(e) = log::init(cli.log.as_deref(), cli.log_format == "json") {
        eprintln!("crius-runtime: open log: {e}");
        return ExitCode::from(1);
    }
    if matches!(
        cli.cmd,
        Some(Cmd::Create(_)) | Some(Cmd::Run { .. }) | Some(Cmd::Exec { .. })
    ) {
        if let Err(e) = sealed::ensure() {
            log::error(&e.to_string());
            eprintln!("{e}");
            return ExitCode::from(1);
        }
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
