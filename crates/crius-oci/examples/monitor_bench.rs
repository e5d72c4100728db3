//! Measures the monitor: RSS and PSS per monitor with 20 running containers
//! (from /proc/PID/smaps_rollup), spawn_monitor + start latency, and
//! exec_sync of `true` latency (median and p90 over 50).
//!
//! Run as root with runc and busybox installed:
//! `cargo run --release -p crius-oci --example monitor_bench`

#[path = "../tests/monitor_support.rs"]
mod support;

use std::time::{Duration, Instant};

use crius_oci::monitor::MonitorClient;
use support::{Opts, TestContainer};

const CONTAINERS: usize = 20;
const EXECS: usize = 50;

fn smaps_rollup(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    println!("monitor binary: {}", support::conmon_path().display());
    let mut containers = Vec::new();
    let mut starts = Vec::new();
    for _ in 0..CONTAINERS {
        let mut c = TestContainer::new("bench", &["sleep", "100000"], Opts::default());
        let t = Instant::now();
        c.run().await;
        starts.push(t.elapsed());
        containers.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut rss = Vec::new();
    let mut pss = Vec::new();
    for c in &containers {
        let pid = c.handle.as_ref().unwrap().monitor_pid;
        let (r, p) = smaps_rollup(pid);
        rss.push(r);
        pss.push(p);
    }
    let avg = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len() as f64;
    println!(
        "monitors: {CONTAINERS}; RSS per monitor avg {:.0} KiB (min {} max {}); PSS per monitor avg {:.0} KiB (min {} max {})",
        avg(&rss),
        rss.iter().min().unwrap(),
        rss.iter().max().unwrap(),
        avg(&pss),
        pss.iter().min().unwrap(),
        pss.iter().max().unwrap(),
    );
    starts.sort();
    println!(
        "spawn_monitor + start: median {:?}, p90 {:?}",
        percentile(&starts, 0.5),
        percentile(&starts, 0.9)
    );

    let client = MonitorClient::new(&containers[0].dir);
    let cmd = vec!["true".to_string()];
    let mut lat = Vec::new();
    for _ in 0..EXECS {
        let t = Instant::now();
        let out = client
            .exec_sync(&cmd, Some(Duration::from_secs(10)))
            .await
            .expect("exec_sync");
        lat.push(t.elapsed());
        assert_eq!(out.exit_code, 0);
    }
    lat.sort();
    println!(
        "exec_sync true: median {:?}, p90 {:?} over {EXECS}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9)
    );
    let (r, p) = smaps_rollup(containers[0].handle.as_ref().unwrap().monitor_pid);
    println!("after {EXECS} execs the first monitor has RSS {r} KiB, PSS {p} KiB");
    drop(containers);
}
