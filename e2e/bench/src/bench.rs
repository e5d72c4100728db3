//! The benchmark run against one CRI endpoint: pod and container latencies, exec, image
//! pulls and memory, written as one JSON result that `report` puts beside another's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crius_cri_api::v1 as cri;
use serde::{Deserialize, Serialize};

use crate::cri::{
    container, image_spec, remove_all_pods, stop_remove_pod, timed, Cri, PodTemplate,
};
use crate::procmem::{find_processes, read_mem, sum_mem, MemUsage};
use crate::stats::summarize;

/// What to measure and where.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Name of the runtime in the results (e.g. crius, containerd).
    #[arg(long)]
    pub name: String,
    /// CRI endpoint, unix:///PATH.
    #[arg(long)]
    pub endpoint: String,
    /// The daemon's pid, for its memory; without it memory is not measured.
    #[arg(long)]
    pub daemon_pid: Option<u32>,
    /// Program name (argv[0] base name) of the per-pod or per-container monitor processes:
    /// crius-conmon, containerd-shim-runc-v2.
    #[arg(long)]
    pub monitor_exe: Option<String>,
    /// A string every monitor of this daemon has in its command line (its private state
    /// dir), so other daemons' monitors are not counted.
    #[arg(long)]
    pub process_match: Option<String>,
    /// Scratch dir for pod log dirs.
    #[arg(long)]
    pub work_dir: PathBuf,
    /// Where to write the JSON result.
    #[arg(long)]
    pub out: PathBuf,
    /// Pods in the sequential series and in the pod+container series.
    #[arg(long, default_value_t = 20)]
    pub pods: usize,
    /// Pods started at once in the parallel series.
    #[arg(long, default_value_t = 20)]
    pub parallel: usize,
    /// ExecSync calls.
    #[arg(long, default_value_t = 50)]
    pub execs: usize,
    /// Pulls of each image (removed in between).
    #[arg(long, default_value_t = 5)]
    pub pulls: usize,
    /// Image of the containers, pulled first.
    #[arg(long, default_value = "127.0.0.1:5000/crius-test/busybox:latest")]
    pub busybox: String,
    /// The big image of the pull series.
    #[arg(long, default_value = "127.0.0.1:5000/crius-test/multilayer:latest")]
    pub multilayer: String,
    /// The daemon's pause image, pulled before the pod series so no series pays for it.
    #[arg(long, default_value = "registry.k8s.io/pause:3.10")]
    pub pause: String,
    /// Cgroup parent of every pod (cgroupfs).
    #[arg(long, default_value = "/crius-bench")]
    pub cgroup_parent: String,
    /// Runtime handler every pod asks for (empty: the daemon's default).
    #[arg(long, default_value = "")]
    pub runtime_handler: String,
    /// Seconds to wait before reading memory, so start-up and teardown work settles.
    #[arg(long, default_value_t = 2)]
    pub settle_secs: u64,
}

/// One figure of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Metric {
    /// Stable identifier, the same for every runtime.
    pub key: String,
    /// What a reader sees in the table.
    pub label: String,
    /// "ms", "MiB" or "count".
    pub unit: String,
    /// The figure.
    pub value: f64,
}

/// Everything one run against one endpoint measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// `--name`.
    pub name: String,
    /// The endpoint measured.
    pub endpoint: String,
    /// From Version.
    pub runtime_name: String,
    /// From Version.
    pub runtime_version: String,
    /// The figures, in the order the table shows them.
    pub metrics: Vec<Metric>,
    /// Raw latencies in ms, per series.
    pub samples: BTreeMap<String, Vec<f64>>,
    /// Series that failed, with why.
    pub errors: Vec<String>,
    /// Facts a reader of the figures should know.
    pub notes: Vec<String>,
}

impl RunResult {
    pub(crate) fn metric(&mut self, key: &str, label: &str, unit: &str, value: f64) {
        self.metrics.push(Metric {
            key: key.to_string(),
            label: label.to_string(),
            unit: unit.to_string(),
            value,
        });
    }

    /// Records a latency series: its median and p90, and the samples.
    pub(crate) fn series(&mut self, key: &str, label: &str, samples: Vec<f64>) {
        if let Some(s) = summarize(&samples) {
            self.metric(
                &format!("{key}.median"),
                &format!("{label} median (n={})", s.n),
                "ms",
                s.median,
            );
            self.metric(
                &format!("{key}.p90"),
                &format!("{label} p90 (n={})", s.n),
                "ms",
                s.p90,
            );
        }
        self.samples.insert(key.to_string(), samples);
    }

    fn median_only(&mut self, key: &str, label: &str, samples: Vec<f64>) {
        if let Some(s) = summarize(&samples) {
            self.metric(
                &format!("{key}.median"),
                &format!("{label} median (n={})", s.n),
                "ms",
                s.median,
            );
        }
        self.samples.insert(key.to_string(), samples);
    }

    fn mem(&mut self, key: &str, label: &str, mem: MemUsage, divisor: f64) {
        self.metric(
            &format!("{key}.rss"),
            &format!("{label} RSS"),
            "MiB",
            mem.rss_kib as f64 / 1024.0 / divisor,
        );
        self.metric(
            &format!("{key}.pss"),
            &format!("{label} PSS"),
            "MiB",
            mem.pss_kib as f64 / 1024.0 / divisor,
        );
    }

    fn section(&mut self, name: &str, outcome: anyhow::Result<()>) {
        match outcome {
            Ok(()) => eprintln!("crius-bench [{}]: {name}: done", self.name),
            Err(err) => {
                eprintln!("crius-bench [{}]: {name} FAILED: {err:#}", self.name);
                self.errors.push(format!("{name}: {err:#}"));
            }
        }
    }
}

/// A pod with one running container, kept for the memory and exec series.
struct RunningPod {
    pod_id: String,
    container_id: String,
}

/// Runs every series against `args.endpoint` and writes the result to `args.out`.
pub async fn run(args: RunArgs) -> anyhow::Result<RunResult> {
    let cri = Cri::connect(&args.endpoint).await?;
    let mut result = RunResult {
        name: args.name.clone(),
        endpoint: args.endpoint.clone(),
        ..Default::default()
    };
    let mut rt = cri.rt.clone();
    let (version, _) = timed("Version", rt.version(cri::VersionRequest::default())).await?;
    result.runtime_name = version.runtime_name;
    result.runtime_version = version.runtime_version;
    eprintln!(
        "crius-bench [{}]: {} {} at {}",
        args.name, result.runtime_name, result.runtime_version, args.endpoint
    );
    if !args.runtime_handler.is_empty() {
        result.notes.push(format!(
            "every pod asks for runtime handler {}",
            args.runtime_handler
        ));
    }
    let leftovers = remove_all_pods(&cri).await?;
    if leftovers > 0 {
        result
            .notes
            .push(format!("removed {leftovers} pods left from before"));
    }
    let run_tag = format!("{}-{}", args.name, std::process::id());
    let template = PodTemplate {
        cgroup_parent: args.cgroup_parent.clone(),
        log_root: args.work_dir.join("pod-logs"),
        run_tag,
    };

    // Idle: started, one image pulled, nothing running.
    let busybox = pull(&cri, &args.busybox).await?;
    if let Some(pid) = args.daemon_pid {
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
        let mem = read_mem(pid)?;
        result.mem("mem.daemon_idle", "daemon idle (1 image)", mem, 1.0);
    } else {
        result
            .notes
            .push("no --daemon-pid: memory not measured".to_string());
    }

    // The pause image and one pod before the timed series, so none of them pays for
    // first-time work (pulling pause, loading plugins, making the bridge).
    let outcome = warm_up(&cri, &args, &template).await;
    result.section("warm-up pod", outcome);

    let outcome = sequential_pods(&cri, &args, &template, &mut result).await;
    result.section("sequential pods", outcome);
    let outcome = parallel_pods(&cri, &args, &template, &mut result).await;
    result.section("parallel pods", outcome);

    let mut running = Vec::new();
    let outcome =
        pods_with_containers(&cri, &args, &template, &busybox, &mut running, &mut result).await;
    result.section("pods with a container", outcome);
    if running.len() == args.pods {
        if let Some(pid) = args.daemon_pid {
            let outcome = loaded_memory(&args, pid, running.len(), &mut result).await;
            result.section("memory with pods", outcome);
        }
    }
    if let Some(first) = running.first() {
        let outcome = exec_sync(&cri, &args, &first.container_id, &mut result).await;
        result.section("exec", outcome);
    }
    let outcome = teardown(&cri, &running, &mut result).await;
    result.section("teardown of pods with a container", outcome);
    let outcome = remove_all_pods(&cri).await.map(|_| ());
    result.section("removal of every pod", outcome);

    // busybox first: its series ends with busybox removed, so the multilayer pulls
    // share no layer with an image still present and download all of theirs, like the
    // tar floor unpacks all of them.
    let outcome = pull_series(
        &cri,
        &args.busybox,
        "pull_busybox",
        "PullImage busybox",
        args.pulls,
        &mut result,
    )
    .await;
    result.section("pulls of busybox", outcome);
    let outcome = pull_series(
        &cri,
        &args.multilayer,
        "pull_multilayer",
        "PullImage multilayer",
        args.pulls,
        &mut result,
    )
    .await;
    result.section("pulls of the multilayer image", outcome);

    let text = serde_json::to_string_pretty(&result)?;
    std::fs::write(&args.out, text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(result)
}

/// PullImage, untimed; returns the image ref the runtime answered.
async fn pull(cri: &Cri, image: &str) -> anyhow::Result<String> {
    let mut img = cri.img.clone();
    let (reply, ms) = timed(
        "PullImage",
        img.pull_image(cri::PullImageRequest {
            image: Some(image_spec(image)),
            ..Default::default()
        }),
    )
    .await
    .with_context(|| format!("image {image}"))?;
    eprintln!(
        "crius-bench: pulled {image} as {} in {ms:.0} ms",
        reply.image_ref
    );
    Ok(reply.image_ref)
}

async fn warm_up(cri: &Cri, args: &RunArgs, template: &PodTemplate) -> anyhow::Result<()> {
    pull(cri, &args.pause).await?;
    let mut rt = cri.rt.clone();
    let (reply, ms) = timed(
        "RunPodSandbox",
        rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(template.pod("warm", 0)?),
            runtime_handler: args.runtime_handler.clone(),
        }),
    )
    .await?;
    eprintln!("crius-bench: warm-up pod took {ms:.0} ms");
    stop_remove_pod(&mut rt, &reply.pod_sandbox_id).await?;
    Ok(())
}

async fn sequential_pods(
    cri: &Cri,
    args: &RunArgs,
    template: &PodTemplate,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    let mut rt = cri.rt.clone();
    let (mut run, mut stop, mut remove) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.pods {
        let (reply, ms) = timed(
            "RunPodSandbox",
            rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(template.pod("seq", i)?),
                runtime_handler: args.runtime_handler.clone(),
            }),
        )
        .await?;
        run.push(ms);
        let (s, r) = stop_remove_pod(&mut rt, &reply.pod_sandbox_id).await?;
        stop.push(s);
        remove.push(r);
    }
    result.series("pod_run", "RunPodSandbox", run);
    result.series("pod_stop", "StopPodSandbox", stop);
    result.series("pod_remove", "RemovePodSandbox", remove);
    Ok(())
}

async fn parallel_pods(
    cri: &Cri,
    args: &RunArgs,
    template: &PodTemplate,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    let configs = (0..args.parallel)
        .map(|i| template.pod("par", i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now();
    let calls = configs.into_iter().map(|config| {
        let mut rt = cri.rt.clone();
        async move {
            timed(
                "RunPodSandbox",
                rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: args.runtime_handler.clone(),
                }),
            )
            .await
        }
    });
    let outcomes = futures::future::join_all(calls).await;
    let wall = start.elapsed().as_secs_f64() * 1000.0;
    let mut latencies = Vec::new();
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok((reply, ms)) => {
                latencies.push(ms);
                ids.push(reply.pod_sandbox_id);
            }
            Err(err) => failures.push(format!("{err:#}")),
        }
    }
    let mut rt = cri.rt.clone();
    for id in &ids {
        stop_remove_pod(&mut rt, id).await?;
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} parallel RunPodSandbox calls failed, first: {}",
            failures.len(),
            args.parallel,
            failures[0]
        );
    }
    result.metric(
        "pod_run_parallel.wall",
        &format!("{} x RunPodSandbox in parallel, wall", args.parallel),
        "ms",
        wall,
    );
    result.median_only(
        "pod_run_parallel",
        "  each RunPodSandbox in parallel",
        latencies,
    );
    Ok(())
}

async fn pods_with_containers(
    cri: &Cri,
    args: &RunArgs,
    template: &PodTemplate,
    image: &str,
    running: &mut Vec<RunningPod>,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    let mut rt = cri.rt.clone();
    let (mut total, mut run, mut create, mut start) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.pods {
        let config = template.pod("ctr", i)?;
        let began = Instant::now();
        let (pod, ms_run) = timed(
            "RunPodSandbox",
            rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: args.runtime_handler.clone(),
            }),
        )
        .await?;
        let (ctr, ms_create) = timed(
            "CreateContainer",
            rt.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.pod_sandbox_id.clone(),
                config: Some(container("sleeper", image, &["sleep", "3600"])),
                sandbox_config: Some(config),
            }),
        )
        .await
        .with_context(|| format!("pod {}", pod.pod_sandbox_id))?;
        let (_, ms_start) = timed(
            "StartContainer",
            rt.start_container(cri::StartContainerRequest {
                container_id: ctr.container_id.clone(),
            }),
        )
        .await
        .with_context(|| format!("container {}", ctr.container_id))?;
        total.push(began.elapsed().as_secs_f64() * 1000.0);
        run.push(ms_run);
        create.push(ms_create);
        start.push(ms_start);
        running.push(RunningPod {
            pod_id: pod.pod_sandbox_id,
            container_id: ctr.container_id,
        });
    }
    result.series(
        "pod_ctr",
        "RunPodSandbox+CreateContainer+StartContainer",
        total,
    );
    result.median_only("pod_ctr_run", "  RunPodSandbox (pods kept running)", run);
    result.median_only("ctr_create", "  CreateContainer", create);
    result.median_only("ctr_start", "  StartContainer", start);
    Ok(())
}

async fn loaded_memory(
    args: &RunArgs,
    daemon_pid: u32,
    pods: usize,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let mem = read_mem(daemon_pid)?;
    result.mem(
        "mem.daemon_pods",
        &format!("daemon with {pods} pods+containers"),
        mem,
        1.0,
    );
    let (Some(exe), Some(needle)) = (&args.monitor_exe, &args.process_match) else {
        result
            .notes
            .push("no --monitor-exe/--process-match: monitors not measured".to_string());
        return Ok(());
    };
    let pids = find_processes(exe, needle);
    let (total, counted) = sum_mem(&pids);
    if counted == 0 {
        bail!("no {exe} process mentions {needle} in its command line");
    }
    result.metric(
        "mem.monitor.count",
        &format!("monitor processes for {pods} pods"),
        "count",
        counted as f64,
    );
    result.notes.push(format!(
        "{counted} {exe} processes for {pods} pods with one container each (plus the pause container)"
    ));
    result.mem("mem.monitor.total", "monitors, all", total, 1.0);
    result.mem(
        "mem.monitor.per_pod",
        "monitors per pod",
        total,
        pods as f64,
    );
    // Each pod holds two containers: the pause (sandbox) container and the sleeper.
    result.mem(
        "mem.monitor.per_container",
        "monitors per container (pause counted)",
        total,
        (2 * pods) as f64,
    );
    Ok(())
}

async fn exec_sync(
    cri: &Cri,
    args: &RunArgs,
    container_id: &str,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    let mut rt = cri.rt.clone();
    let mut samples = Vec::new();
    for _ in 0..args.execs {
        let (reply, ms) = timed(
            "ExecSync",
            rt.exec_sync(cri::ExecSyncRequest {
                container_id: container_id.to_string(),
                cmd: vec!["true".to_string()],
                timeout: 10,
            }),
        )
        .await
        .with_context(|| format!("container {container_id}"))?;
        if reply.exit_code != 0 {
            bail!(
                "ExecSync true in {container_id} exited {}: {}",
                reply.exit_code,
                String::from_utf8_lossy(&reply.stderr).trim()
            );
        }
        samples.push(ms);
    }
    result.series("exec_sync", "ExecSync true", samples);
    Ok(())
}

/// Tears the pods down in the kubelet's phases: every container stopped (pod deletion),
/// then removed (garbage collection, later), then each pod stopped and removed.
async fn teardown(cri: &Cri, running: &[RunningPod], result: &mut RunResult) -> anyhow::Result<()> {
    let mut rt = cri.rt.clone();
    let (mut stop_ctr, mut remove_ctr, mut stop_pod, mut remove_pod) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for pod in running {
        let (_, ms) = timed(
            "StopContainer",
            rt.stop_container(cri::StopContainerRequest {
                container_id: pod.container_id.clone(),
                timeout: 0,
            }),
        )
        .await
        .with_context(|| format!("container {}", pod.container_id))?;
        stop_ctr.push(ms);
    }
    for pod in running {
        let (_, ms) = timed(
            "RemoveContainer",
            rt.remove_container(cri::RemoveContainerRequest {
                container_id: pod.container_id.clone(),
            }),
        )
        .await
        .with_context(|| format!("container {}", pod.container_id))?;
        remove_ctr.push(ms);
    }
    for pod in running {
        let (s, r) = stop_remove_pod(&mut rt, &pod.pod_id).await?;
        stop_pod.push(s);
        remove_pod.push(r);
    }
    result.median_only("ctr_stop", "StopContainer (timeout 0)", stop_ctr);
    result.median_only(
        "ctr_remove",
        "RemoveContainer (after every container stopped)",
        remove_ctr,
    );
    result.median_only(
        "pod_ctr_stop",
        "StopPodSandbox (after its container)",
        stop_pod,
    );
    result.median_only(
        "pod_ctr_remove",
        "RemovePodSandbox (after its container)",
        remove_pod,
    );
    Ok(())
}

/// Removes `image` if present (by the ref ImageStatus gives); NotFound is fine.
async fn remove_image(cri: &Cri, image: &str) -> anyhow::Result<()> {
    let mut img = cri.img.clone();
    let (status, _) = timed(
        "ImageStatus",
        img.image_status(cri::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        }),
    )
    .await?;
    if let Some(found) = status.image {
        timed(
            "RemoveImage",
            img.remove_image(cri::RemoveImageRequest {
                image: Some(image_spec(&found.id)),
            }),
        )
        .await
        .with_context(|| format!("image {image} ({})", found.id))?;
    }
    Ok(())
}

async fn pull_series(
    cri: &Cri,
    image: &str,
    key: &str,
    label: &str,
    pulls: usize,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    let mut img = cri.img.clone();
    let mut samples = Vec::new();
    for _ in 0..pulls {
        remove_image(cri, image).await?;
        let (_, ms) = timed(
            "PullImage",
            img.pull_image(cri::PullImageRequest {
                image: Some(image_spec(image)),
                ..Default::default()
            }),
        )
        .await
        .with_context(|| format!("image {image}"))?;
        samples.push(ms);
    }
    remove_image(cri, image).await?;
    result.median_only(key, label, samples);
    Ok(())
}
