//! critest, the CRI conformance suite of cri-tools (pinned in `e2e/peers/versions`), against
//! the real daemon, once per runtime: Debian's runc as handler `runc`, the pinned
//! upstream runc (`CRIUS_PEER_RUNC`) as handler `runc-upstream`, and the built-in
//! `crius-runtime` as handler `crius` (crius's own default), each made the default and
//! named to critest with `--runtime-handler`. Each run compares its results with its
//! expected-results file (`e2e/critest/expected-*.txt`, format in `crius_e2e::critest`):
//! a spec expected to pass that fails fails the test, unless it passes when run again on
//! its own (then it is reported as flaky); a spec that newly passes is reported.
//!
//! Ignored by `cargo test`: each run takes about two minutes. `e2e/run-all.sh` runs them
//! after the other tests, one at a time (critest binds host ports 12000 and 12001):
//!
//!     cargo test -p crius-e2e --test critest -- --ignored --test-threads=1 --nocapture
//!
//! Each daemon has its own root, run dir, socket, cgroup parent and bridge network (with
//! portmap and the FORWARD drop rule) and serves every pod metric group; the images come from the fixture registry through
//! `e2e/critest/registries.conf` (`e2e/fixtures/setup.sh` pushes them). Pods critest left
//! behind are removed through the CRI, then the harness stops the daemon and removes the
//! rest. The two HostNetwork specs are skipped: they listen on every interface.
//!
//! Environment: `CRIUS_CRITEST_ARGS` adds arguments (e.g. `-ginkgo.focus=Image`; a focused
//! run does not miss the specs it left out); `CRIUS_CRITEST_WRITE_EXPECTED=1` writes the
//! observed results next to the expected file (`.new`, reasons kept) for review.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crius_e2e::critest::{compare, focus_on, parse_expected, parse_junit, render_expected, Report};
use crius_e2e::peers::peer_or_skip;
use crius_e2e::{CriusDaemon, PodRemoval};

/// Where the expected-results files and the registries.conf live.
const CRITEST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/critest");
/// Specs never run here: they make critest listen on all interfaces.
const SKIP: &str = "HostNetwork is (true|false)";
/// At most this many failed specs are run again to tell a flake from a regression.
const MAX_RERUN: usize = 5;
/// A run that takes longer has hung (a normal run takes 70 to 130 s).
const RUN_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// One critest run: which handler, which expected file.
struct Suite {
    /// What runs, in messages.
    label: &'static str,
    /// A handler to add and make the default: (name, runtime binary).
    handler: Option<(&'static str, PathBuf)>,
    /// Or a config drop-in that defines the default handler (name, drop-in).
    dropin: Option<(&'static str, String)>,
    expected: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs critest (about 2 min); e2e/run-all.sh runs it after the other tests"]
async fn critest_with_debian_runc() {
    let Some(critest) = peer_or_skip("CRITEST", "critest_with_debian_runc") else {
        return;
    };
    run(
        &critest,
        Suite {
            label: "handler runc (Debian's runc)",
            handler: None,
            dropin: Some((
                "runc",
                "[crius.runtime]\ndefault_runtime = \"runc\"\n".to_string(),
            )),
            expected: "expected-runc.txt",
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs critest (about 2 min); e2e/run-all.sh runs it after the other tests"]
async fn critest_with_upstream_runc_handler() {
    let test = "critest_with_upstream_runc_handler";
    let (Some(critest), Some(runc)) = (peer_or_skip("CRITEST", test), peer_or_skip("RUNC", test))
    else {
        return;
    };
    run(
        &critest,
        Suite {
            label: "handler runc-upstream (CRIUS_PEER_RUNC)",
            handler: Some(("runc-upstream", runc)),
            dropin: None,
            expected: "expected-runc-upstream.txt",
        },
    )
    .await;
}

/// The built-in runtime, `crius-runtime` from the target dir, as handler `crius`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs critest (about 2 min); e2e/run-all.sh runs it after the other tests"]
async fn critest_with_crius_runtime_handler() {
    let Some(critest) = peer_or_skip("CRITEST", "critest_with_crius_runtime_handler") else {
        return;
    };
    let runtime = crius_e2e::crius_binary()
        .expect("the crius binary")
        .parent()
        .expect("the crius binary's directory")
        .join("crius-runtime");
    assert!(
        runtime.exists(),
        "{} not found: build it with `cargo build -p crius-runtime`",
        runtime.display()
    );
    run(
        &critest,
        Suite {
            label: "handler crius (the built-in crius-runtime)",
            handler: Some(("crius", runtime)),
            dropin: None,
            expected: "expected-crius-runtime.txt",
        },
    )
    .await;
}

/// A `vm` handler on Debian's containerd-shim-runc-v2 as the default handler `shim`: pods
/// and containers through the containerd shim v2 protocol. Not in `e2e/run-all.sh` (see
/// expected-shim.txt for why); run it by hand:
///
///     cargo test -p crius-e2e --test critest -- --ignored --nocapture critest_with_shim_handler
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs critest (about 3 min); by hand, not in e2e/run-all.sh"]
async fn critest_with_shim_handler() {
    let Some(critest) = peer_or_skip("CRITEST", "critest_with_shim_handler") else {
        return;
    };
    let shim = Path::new("/usr/bin/containerd-shim-runc-v2");
    assert!(
        shim.exists(),
        "{} is missing (apt-get install containerd)",
        shim.display()
    );
    let dropin = format!(
        "[crius.runtime]\ndefault_runtime = \"shim\"\n[crius.runtime.runtimes.shim]\n\
         runtime_path = \"{}\"\nruntime_type = \"vm\"\n",
        shim.display()
    );
    run(
        &critest,
        Suite {
            label: "handler shim (vm: Debian's containerd-shim-runc-v2)",
            handler: None,
            dropin: Some(("shim", dropin)),
            expected: "expected-shim.txt",
        },
    )
    .await;
}

async fn run(critest: &Path, suite: Suite) {
    let expected_path = Path::new(CRITEST_DIR).join(suite.expected);
    let expected_text = std::fs::read_to_string(&expected_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", expected_path.display()));
    let expected = parse_expected(&expected_text)
        .unwrap_or_else(|e| panic!("{}: {e:#}", expected_path.display()));
    let registries = std::fs::read_to_string(Path::new(CRITEST_DIR).join("registries.conf"))
        .expect("e2e/critest/registries.conf");

    // Every metric group, so that the metrics specs see cAdvisor's series.
    let mut builder = CriusDaemon::builder()
        .bridge_network()
        .registries_conf(&registries)
        .config("[crius.stats]\nincluded_pod_metrics = [\"all\"]\n");
    if let Some((name, runtime)) = &suite.handler {
        builder = builder.runtime_handler(name, runtime, true);
    }
    if let Some((_, dropin)) = &suite.dropin {
        builder = builder.config(dropin);
    }
    let daemon = builder.start().await.expect("start crius");
    let handler = suite
        .handler
        .as_ref()
        .map(|(name, _)| *name)
        .or(suite.dropin.as_ref().map(|(name, _)| *name));
    let extra = std::env::var("CRIUS_CRITEST_ARGS").unwrap_or_default();
    let extra: Vec<String> = extra.split_whitespace().map(String::from).collect();
    let partial = extra.iter().any(|a| a.contains("focus"));

    let first = run_critest(critest, &daemon, handler, &extra, "critest", suite.label).await;
    let report = first.report(suite.label);
    let mut result = compare(&expected, &report, partial);

    // The summary line alone, as CI greps it; then what ran.
    println!("{}", result.summary("critest"));
    println!(
        "  {}: critest {} after {:.0} s, compared with e2e/critest/{}",
        suite.label,
        first.status,
        first.took.as_secs_f64(),
        suite.expected
    );
    for line in &result.improvements {
        println!(
            "  newly passing, update e2e/critest/{}: {line}",
            suite.expected
        );
    }
    for line in &result.notes {
        println!("  note: {line}");
    }
    for line in &first.leftovers {
        println!("  cleanup: {line}");
    }
    if std::env::var_os("CRIUS_CRITEST_WRITE_EXPECTED").is_some() {
        let header: String = expected_text
            .lines()
            .take_while(|l| l.starts_with('#') || l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let new_path = expected_path.with_extension("txt.new");
        std::fs::write(&new_path, render_expected(&header, &report, &expected))
            .expect("write the new expected file");
        println!("  wrote {}", new_path.display());
    }

    // A spec that failed is run once more on its own (a few at most, else something is
    // broken for real): on a loaded 2-core machine a timing spec may miss its window once.
    let rerun = result.rerunnable();
    if !rerun.is_empty() && rerun.len() <= MAX_RERUN {
        // Only these specs: a focus of the caller's would add its own.
        let mut args: Vec<String> = extra
            .iter()
            .filter(|a| !a.contains("focus"))
            .cloned()
            .collect();
        args.extend(
            rerun
                .iter()
                .map(|name| format!("-ginkgo.focus={}", focus_on(name))),
        );
        let again = run_critest(critest, &daemon, handler, &args, "rerun", suite.label).await;
        result.apply_rerun(&again.report(suite.label));
        for line in &result.flaky {
            println!("  flaky: {line}");
        }
    }
    if !result.regressions.is_empty() {
        let lines: Vec<&str> = result.regressions.iter().map(|r| r.line.as_str()).collect();
        panic!(
            "{}: {} spec(s) regressed against e2e/critest/{}:\n  {}\ncritest's log ({}) ends:\n{}",
            suite.label,
            lines.len(),
            suite.expected,
            lines.join("\n  "),
            first.log_path.display(),
            first.tail,
        );
    }
}

/// One finished critest run.
struct CritestRun {
    status: ExitStatus,
    took: Duration,
    report_path: PathBuf,
    log_path: PathBuf,
    /// The end of its log, for messages.
    tail: String,
    /// What the cleanup after it removed.
    leftovers: Vec<String>,
}

impl CritestRun {
    fn report(&self, label: &str) -> Report {
        let xml = std::fs::read_to_string(&self.report_path).unwrap_or_else(|e| {
            panic!(
                "{label}: critest ({}) wrote no report {}: {e}; its log ends:\n{}",
                self.status,
                self.report_path.display(),
                self.tail
            )
        });
        parse_junit(&xml).unwrap_or_else(|e| panic!("{label}: {e:#}"))
    }
}

/// Runs critest against `daemon` with `args` added, its log and report named after `name`
/// in the daemon's dir, then removes the pods it left behind.
async fn run_critest(
    critest: &Path,
    daemon: &CriusDaemon,
    handler: Option<&str>,
    args: &[String],
    name: &str,
    label: &str,
) -> CritestRun {
    let report_path = daemon.dir.join(format!("{name}.xml"));
    let log_path = daemon.dir.join(format!("{name}.log"));
    let endpoint = format!("unix://{}", daemon.socket.display());
    let mut cmd = tokio::process::Command::new(critest);
    cmd.arg(format!("--runtime-endpoint={endpoint}"))
        .arg(format!("--image-endpoint={endpoint}"))
        .arg(format!("-ginkgo.skip={SKIP}"))
        .arg(format!("-ginkgo.junit-report={}", report_path.display()))
        .arg("-ginkgo.no-color");
    if let Some(handler) = handler {
        cmd.arg(format!("--runtime-handler={handler}"));
    }
    cmd.args(args);
    let log = std::fs::File::create(&log_path).expect("critest log");
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .current_dir(&daemon.dir)
        .kill_on_drop(true);
    eprintln!(
        "{label}: running {} {} against {} (log {})",
        critest.display(),
        args.join(" "),
        daemon.socket.display(),
        log_path.display()
    );
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start critest");
    let status = match tokio::time::timeout(RUN_TIMEOUT, child.wait()).await {
        Ok(status) => Some(status.expect("wait for critest")),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let took = started.elapsed();
    let leftovers = remove_pods(daemon).await;
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tail = tail(&log_text, 40);
    let Some(status) = status else {
        panic!("{label}: critest did not finish within {RUN_TIMEOUT:?}; its log ends:\n{tail}");
    };
    CritestRun {
        status,
        took,
        report_path,
        log_path,
        tail,
        leftovers,
    }
}

/// Stops and removes, through the CRI, every pod critest left behind (a failed spec may
/// skip its cleanup); says what it removed and what it could not.
async fn remove_pods(daemon: &CriusDaemon) -> Vec<String> {
    let mut rt = match daemon.runtime_client().await {
        Ok(rt) => rt,
        Err(e) => return vec![format!("cannot connect to remove pods: {e:#}")],
    };
    let removals = match crius_e2e::remove_every_pod(&mut rt).await {
        Ok(removals) => removals,
        Err(e) => return vec![format!("ListPodSandbox failed: {e}")],
    };
    removals
        .into_iter()
        .map(|PodRemoval { id, name, result }| match result {
            Ok(()) => format!("removed pod {name} ({id}) critest left"),
            Err(e) => format!("cannot remove pod {name} ({id}): {}", e.message()),
        })
        .collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
