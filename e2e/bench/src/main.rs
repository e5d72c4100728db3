//! `crius-bench`: benchmarks that drive any CRI endpoint over its Unix socket with the CRI
//! gRPC client, so one run measures crius and containerd side by side (same runc, CNI
//! plugins, images and machine) and prints ratios. `e2e/bench/run.sh` sets the daemons up
//! and calls the subcommands in turn:
//!
//! - `run`: the series against one endpoint, written as JSON;
//! - `floor`: how long plain tar takes to unpack the same image layers;
//! - `kubelet`: static pods through a real kubelet, until it reports them running;
//! - `report`: the tables (metric, each run, ratio A/B per pair) and summary.json;
//! - `cleanup`: stops and removes every pod an endpoint knows;
//! - `otlp-collector`: an OTLP/gRPC span sink for `metrics-overhead.sh tracing`.

mod bench;
mod cri;
mod floor;
mod kubelet;
mod procmem;
mod report;
mod stats;

use std::time::Duration;

use clap::{Parser, Subcommand};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "crius-bench",
    about = "Benchmarks of CRI runtimes over their Unix sockets"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Measure one CRI endpoint and write its JSON result.
    Run(Box<bench::RunArgs>),
    /// Time plain tar unpacking the layers of an OCI layout (the floor under PullImage).
    Floor(floor::FloorArgs),
    /// The kubelet's view: static pod manifests written until the kubelet reports them running.
    Kubelet(kubelet::KubeletArgs),
    /// Compare results: print the tables, write summary.json and table.txt.
    Report(report::ReportArgs),
    /// Wait until an endpoint answers Version (or fail after the timeout).
    Wait {
        /// CRI endpoint, unix:///PATH.
        #[arg(long)]
        endpoint: String,
        /// Seconds to wait.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Stop and remove every pod (and container) of an endpoint.
    Cleanup {
        /// CRI endpoint, unix:///PATH.
        #[arg(long)]
        endpoint: String,
    },
    /// Receive OTLP/gRPC spans on 127.0.0.1:PORT until SIGTERM, then print how many came.
    OtlpCollector {
        /// Port on 127.0.0.1.
        #[arg(long)]
        port: u16,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(args) => {
            let result = bench::run(*args).await?;
            if !result.errors.is_empty() {
                anyhow::bail!(
                    "{} series failed against {}: {}",
                    result.errors.len(),
                    result.name,
                    result.errors.join("; ")
                );
            }
        }
        Cmd::Floor(args) => {
            let result = floor::run(&args)?;
            eprintln!(
                "crius-bench: tar floor {:.0} ms (median of {})",
                result.median_ms,
                result.samples.len()
            );
        }
        Cmd::Kubelet(args) => {
            kubelet::run(&args).await?;
        }
        Cmd::Report(args) => {
            report::run(&args)?;
        }
        Cmd::Wait { endpoint, timeout } => {
            let version = cri::wait_ready(&endpoint, Duration::from_secs(timeout)).await?;
            eprintln!(
                "crius-bench: {} {} answers at {endpoint}",
                version.runtime_name, version.runtime_version
            );
        }
        Cmd::Cleanup { endpoint } => {
            let cri = cri::Cri::connect(&endpoint).await?;
            let n = cri::remove_all_pods(&cri).await?;
            eprintln!("crius-bench: removed {n} pods from {endpoint}");
        }
        Cmd::OtlpCollector { port } => {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let collector = crius_e2e::otlp::Collector::default();
            collector.start_on(port).await?;
            term.recv().await;
            eprintln!(
                "crius-bench: the OTLP collector received {} spans",
                collector.spans().len()
            );
        }
    }
    Ok(())
}
