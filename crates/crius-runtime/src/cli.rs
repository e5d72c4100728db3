//! runc's command line, parsed with lexopt.
//!
//! The runtime starts three or four times per container, and a derive-built
//! clap parser cost 0.1-0.2 ms of each start (its command tree is built on
//! every run): 0.44 ms of a 7.5 ms create+start+delete, measured with
//! e2e/bench/runtime/ccd.py. This parser builds nothing; the help texts are
//! written out below.
//!
//! As with runc, the global flags may also come after the command, and every
//! flag takes `--flag value` or `--flag=value`.

use std::ffi::OsString;
use std::path::PathBuf;

use crius_runtime::container::{CreateOpts, ExecOpts};
use lexopt::prelude::*;

/// The global flags and the command.
#[derive(Debug)]
pub struct Cli {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub log_json: bool,
    pub systemd_cgroup: bool,
    pub cmd: Cmd,
}

#[derive(Debug)]
pub enum Cmd {
    Create(CreateOpts),
    Start {
        id: String,
    },
    State {
        id: String,
    },
    Kill {
        all: bool,
        id: String,
        signal: String,
    },
    Delete {
        force: bool,
        id: String,
    },
    Exec(ExecOpts),
    Run {
        create: CreateOpts,
        detach: bool,
    },
    Ps {
        json: bool,
        id: String,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Update {
        resources: PathBuf,
        id: String,
    },
    Features,
    List {
        quiet: bool,
    },
}

/// What the command line asks for besides a command.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Cli>),
    /// Print this (help or version) and exit 0.
    Print(String),
}

/// A command line that does not parse: print it with the usage hint, exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        UsageError(e.to_string())
    }
}

const ABOUT: &str = "crius-runtime: an OCI runtime with runc's command line";

const USAGE: &str = "\
Usage: crius-runtime [GLOBAL FLAGS] COMMAND [FLAGS] [ARGS]

Commands:
  create    Create a container: its init waits for `start`
  start     Start a created container
  state     Print a container's state as JSON
  kill      Send a signal to a container's init (or, with --all, every process)
  delete    Delete a container (--force kills it first)
  exec      Run a process in a container
  run       Create, start, wait for and delete a container
  ps        List the pids of a container
  pause     Freeze every process of a container
  resume    Thaw a paused container
  update    Change a container's cgroup limits
  features  Print what this runtime supports as JSON
  list      List containers

Global flags:
      --root DIR          Where container state is kept [default: /run/crius-runtime]
      --log FILE          Log file for errors and warnings
      --log-format FMT    Log format: text or json [default: text]
      --systemd-cgroup    Use the systemd cgroup driver (not supported: refused at create)
      --debug             Accepted for runc compatibility; changes nothing
  -v, --version           Print the version
  -h, --help              Print help (COMMAND --help for a command's)
";

const CREATE_FLAGS: &str = "\
  -b, --bundle DIR             The bundle directory, holding config.json [default: .]
      --pid-file FILE          Write the init's pid here
      --console-socket SOCKET  Unix socket that receives the terminal's master
      --no-pivot               MS_MOVE and chroot instead of pivot_root (rootfs on a ramdisk)
      --no-new-keyring         Accepted for runc compatibility
";

fn command_help(cmd: &str) -> String {
    let (usage, about, flags) = match cmd {
        "create" => ("create [FLAGS] ID", "Create a container: its init waits for `start`.", CREATE_FLAGS),
        "start" => ("start ID", "Start a created container.", ""),
        "state" => ("state ID", "Print a container's state as JSON.", ""),
        "kill" => (
            "kill [--all] ID [SIGNAL]",
            "Send a signal (default SIGTERM; a name with or without SIG, or a number) to a container's init.",
            "  -a, --all  Signal every process of the container\n",
        ),
        "delete" => (
            "delete [--force] ID",
            "Delete a stopped or created container.",
            "  -f, --force  Kill a running container first\n",
        ),
        "exec" => (
            "exec [FLAGS] ID [COMMAND [ARG...]]",
            "Run a process in a container.",
            "  -p, --process FILE           A process.json instead of the command line\n\
             \x20 -d, --detach                 Return once the process runs\n\
             \x20     --pid-file FILE          Write the process's pid here\n\
             \x20     --console-socket SOCKET  Unix socket that receives the terminal's master\n\
             \x20 -t, --tty                    Give the process a terminal\n\
             \x20 -e, --env KEY=VALUE          Add to the environment (repeatable)\n\
             \x20     --cwd DIR                Working directory\n\
             \x20 -u, --user UID[:GID]         User to run as\n",
        ),
        "run" => (
            "run [FLAGS] ID",
            "Create, start, wait for and delete a container; exits with its status.",
            "",
        ),
        "ps" => (
            "ps [--format table|json] ID",
            "List the pids of a container.",
            "  -f, --format FMT  table or json [default: table]\n",
        ),
        "pause" => ("pause ID", "Freeze every process of a container.", ""),
        "resume" => ("resume ID", "Thaw a paused container.", ""),
        "update" => (
            "update --resources FILE ID",
            "Change a container's cgroup limits.",
            "  -r, --resources FILE  LinuxResources JSON, \"-\" for stdin\n",
        ),
        "features" => ("features", "Print what this runtime supports as JSON.", ""),
        "list" => (
            "list [--quiet]",
            "List containers.",
            "  -q, --quiet  Print ids only\n",
        ),
        _ => return format!("{ABOUT}\n\n{USAGE}"),
    };
    let mut text = format!("{about}\n\nUsage: crius-runtime [GLOBAL FLAGS] {usage}\n");
    if cmd == "run" {
        text.push_str("\nFlags:\n");
        text.push_str(CREATE_FLAGS);
        text.push_str("  -d, --detach                 Return once started, as create + start\n");
    } else if !flags.is_empty() {
        text.push_str("\nFlags:\n");
        text.push_str(flags);
    }
    text.push_str("\nGlobal flags: see crius-runtime --help\n");
    text
}

fn string(v: OsString) -> Result<String, UsageError> {
    v.into_string()
        .map_err(|v| UsageError(format!("{v:?} is not valid UTF-8")))
}

/// One positional argument that must be there.
fn need(v: Option<String>, what: &str, cmd: &str) -> Result<String, UsageError> {
    v.ok_or_else(|| UsageError(format!("{cmd}: missing {what}")))
}

fn version() -> String {
    format!(
        "crius-runtime version {}\nspec: {}",
        env!("CARGO_PKG_VERSION"),
        crius_runtime::OCI_VERSION
    )
}

/// Everything a command line can set, before it is checked against its command.
#[derive(Default)]
struct Seen {
    create: CreateOpts,
    exec: ExecOpts,
    all: bool,
    force: bool,
    detach: bool,
    quiet: bool,
    format: Option<String>,
    resources: Option<PathBuf>,
    positional: Vec<String>,
}

/// Parses the command line (without the program name). One pass: the
/// global flags are taken wherever they are; the others only after the
/// command that has them.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, UsageError> {
    let mut p = lexopt::Parser::from_args(args);
    let mut root = PathBuf::from(crius_runtime::state::DEFAULT_ROOT);
    let (mut log, mut log_format, mut systemd_cgroup) = (None, String::from("text"), false);
    let mut name: Option<String> = None;
    let mut s = Seen {
        create: CreateOpts {
            bundle: PathBuf::from("."),
            ..Default::default()
        },
        ..Default::default()
    };
    while let Some(arg) = p.next()? {
        let cmd = name.as_deref().unwrap_or("");
        let create_flags = cmd == "create" || cmd == "run";
        match arg {
            Long("root") => root = p.value()?.into(),
            Long("log") => log = Some(p.value()?.into()),
            Long("log-format") => log_format = string(p.value()?)?,
            Long("systemd-cgroup") => systemd_cgroup = true,
            Long("debug") => {}
            Short('h') | Long("help") => return Ok(Parsed::Print(command_help(cmd))),
            Short('v') | Long("version") if name.is_none() => return Ok(Parsed::Print(version())),
            Value(v) if name.is_none() => {
                let v = string(v)?;
                if v == "help" {
                    let topic = p.next()?.and_then(|a| match a {
                        Value(t) => t.into_string().ok(),
                        _ => None,
                    });
                    return Ok(Parsed::Print(command_help(topic.as_deref().unwrap_or(""))));
                }
                name = Some(v);
            }
            Short('b') | Long("bundle") if create_flags => s.create.bundle = p.value()?.into(),
            Long("pid-file") if create_flags => s.create.pid_file = Some(p.value()?.into()),
            Long("console-socket") if create_flags => {
                s.create.console_socket = Some(p.value()?.into())
            }
            Long("no-pivot") if create_flags => s.create.no_pivot = true,
            Long("no-new-keyring") if create_flags => {}
            Short('d') | Long("detach") if cmd == "run" || cmd == "exec" => s.detach = true,
            Short('a') | Long("all") if cmd == "kill" => s.all = true,
            Short('f') | Long("force") if cmd == "delete" => s.force = true,
            Short('f') | Long("format") if cmd == "ps" => s.format = Some(string(p.value()?)?),
            Short('r') | Long("resources") if cmd == "update" => {
                s.resources = Some(p.value()?.into())
            }
            Short('q') | Long("quiet") if cmd == "list" => s.quiet = true,
            Short('p') | Long("process") if cmd == "exec" => {
                s.exec.process = Some(p.value()?.into())
            }
            Long("pid-file") if cmd == "exec" => s.exec.pid_file = Some(p.value()?.into()),
            Long("console-socket") if cmd == "exec" => {
                s.exec.console_socket = Some(p.value()?.into())
            }
            Short('t') | Long("tty") if cmd == "exec" => s.exec.tty = true,
            Short('e') | Long("env") if cmd == "exec" => s.exec.env.push(string(p.value()?)?),
            Long("cwd") if cmd == "exec" => s.exec.cwd = Some(p.value()?.into()),
            Short('u') | Long("user") if cmd == "exec" => s.exec.user = Some(string(p.value()?)?),
            Value(v) => {
                s.positional.push(string(v)?);
                // exec: everything after the id is the command, flags and all.
                if cmd == "exec" {
                    for raw in p.raw_args()? {
                        s.positional.push(string(raw)?);
                    }
                }
            }
            _ if cmd.is_empty() => return Err(arg.unexpected().into()),
            _ => return Err(UsageError(format!("{cmd}: {}", arg.unexpected()))),
        }
    }
    let Some(name) = name else {
        return Err(UsageError("no command: see --help".into()));
    };
    if log_format != "text" && log_format != "json" {
        return Err(UsageError(format!(
            "--log-format {log_format:?}: text or json"
        )));
    }
    Ok(Parsed::Run(Box::new(Cli {
        root,
        log,
        log_json: log_format == "json",
        systemd_cgroup,
        cmd: command(&name, s)?,
    })))
}

/// The command `name` with what was seen for it.
fn command(name: &str, s: Seen) -> Result<Cmd, UsageError> {
    let Seen {
        mut create,
        mut exec,
        ..
    } = s;
    let mut pos = s.positional.into_iter();
    let mut id = || need(pos.next(), "the container id", name);
    let cmd = match name {
        "create" => {
            create.id = id()?;
            Cmd::Create(create)
        }
        "run" => {
            create.id = id()?;
            Cmd::Run {
                create,
                detach: s.detach,
            }
        }
        "start" => Cmd::Start { id: id()? },
        "state" => Cmd::State { id: id()? },
        "pause" => Cmd::Pause { id: id()? },
        "resume" => Cmd::Resume { id: id()? },
        "delete" => Cmd::Delete {
            force: s.force,
            id: id()?,
        },
        "kill" => {
            let id = id()?;
            let signal = pos.next().unwrap_or_else(|| "SIGTERM".into());
            Cmd::Kill {
                all: s.all,
                id,
                signal,
            }
        }
        "ps" => {
            let format = s.format.unwrap_or_else(|| "table".into());
            if format != "table" && format != "json" {
                return Err(UsageError(format!(
                    "ps: --format {format:?}: table or json"
                )));
            }
            Cmd::Ps {
                json: format == "json",
                id: id()?,
            }
        }
        "update" => Cmd::Update {
            resources: s
                .resources
                .ok_or_else(|| UsageError("update: missing --resources FILE".into()))?,
            id: id()?,
        },
        "exec" => {
            exec.id = id()?;
            exec.args = pos.by_ref().collect();
            exec.detach = s.detach;
            Cmd::Exec(exec)
        }
        "features" => Cmd::Features,
        "list" => Cmd::List { quiet: s.quiet },
        other => return Err(UsageError(format!("unknown command {other:?}: see --help"))),
    };
    if let Some(extra) = pos.next() {
        return Err(UsageError(format!("{name}: unexpected argument {extra:?}")));
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Cli, String> {
        match parse(args.iter().map(OsString::from)) {
            Ok(Parsed::Run(c)) => Ok(*c),
            Ok(Parsed::Print(t)) => Err(format!("print: {t}")),
            Err(UsageError(e)) => Err(e),
        }
    }

    #[test]
    fn conmon_style_create() {
        let c = run(&[
            "--root",
            "/r",
            "--log",
            "/l",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "--console-socket=/s",
            "--no-pivot",
            "ctr",
        ])
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/r"));
        assert_eq!(c.log, Some(PathBuf::from("/l")));
        assert!(c.log_json);
        let Cmd::Create(a) = c.cmd else {
            panic!("not create")
        };
        assert_eq!(a.bundle, PathBuf::from("/b"));
        assert_eq!(a.pid_file, Some(PathBuf::from("/p")));
        assert_eq!(a.console_socket, Some(PathBuf::from("/s")));
        assert!(a.no_pivot);
        assert_eq!(a.id, "ctr");
    }

    #[test]
    fn global_flags_after_the_command() {
        let c = run(&["delete", "--force", "--root=/r", "ctr"]).unwrap();
        assert_eq!(c.root, PathBuf::from("/r"));
        assert!(matches!(c.cmd, Cmd::Delete { force: true, ref id } if id == "ctr"));
    }

    #[test]
    fn exec_keeps_the_commands_own_flags() {
        let c = run(&[
            "exec",
            "-t",
            "-e",
            "A=1",
            "--env=B=2",
            "-u",
            "1:2",
            "ctr",
            "sh",
            "-c",
            "ls -l",
        ])
        .unwrap();
        let Cmd::Exec(e) = c.cmd else {
            panic!("not exec")
        };
        assert!(e.tty);
        assert_eq!(e.env, ["A=1", "B=2"]);
        assert_eq!(e.user.as_deref(), Some("1:2"));
        assert_eq!(e.id, "ctr");
        assert_eq!(e.args, ["sh", "-c", "ls -l"]);
    }

    #[test]
    fn kill_signal_defaults_to_sigterm() {
        let c = run(&["kill", "--all", "ctr"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Kill { all: true, ref signal, .. } if signal == "SIGTERM"));
        let c = run(&["kill", "ctr", "KILL"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Kill { ref signal, .. } if signal == "KILL"));
    }

    #[test]
    fn defaults() {
        let c = run(&["create", "ctr"]).unwrap();
        assert_eq!(c.root, PathBuf::from(crius_runtime::state::DEFAULT_ROOT));
        assert!(!c.log_json);
        let Cmd::Create(a) = c.cmd else {
            panic!("not create")
        };
        assert_eq!(a.bundle, PathBuf::from("."));
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        for (args, want) in [
            (&[][..], "no command"),
            (&["start"][..], "missing the container id"),
            (&["start", "a", "b"][..], "unexpected argument"),
            (&["frobnicate", "a"][..], "unknown command"),
            (&["start", "--bundle", "x", "a"][..], "--bundle"),
            (&["update", "ctr"][..], "missing --resources"),
            (&["--log-format", "xml", "list"][..], "text or json"),
            (&["ps", "--format", "yaml", "ctr"][..], "table or json"),
            (&["create", "--pid-file"][..], "--pid-file"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn help_and_version_are_printed() {
        for args in [&["--help"][..], &["-h"][..], &["help"][..]] {
            let e = run(args).unwrap_err();
            assert!(e.contains("Commands:") && e.contains("--root"), "{e}");
        }
        let e = run(&["exec", "--help"]).unwrap_err();
        assert!(
            e.contains("--console-socket") && e.contains("Usage: crius-runtime"),
            "{e}"
        );
        let e = run(&["help", "run"]).unwrap_err();
        assert!(e.contains("--detach") && e.contains("--bundle"), "{e}");
        let e = run(&["-v"]).unwrap_err();
        assert!(
            e.contains("crius-runtime version") && e.contains("spec:"),
            "{e}"
        );
    }
}
