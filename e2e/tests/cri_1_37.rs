//! What the CRI of Kubernetes 1.37 added beyond the older API crius spoke, through the
//! socket: the container stop signal, UpdatePodSandboxResources, the Stream* list RPCs,
//! env values as bytes, and image volumes.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use crius_e2e::cri;
use tonic::Code;

async fn stop(rt: &mut Runtime, id: &str, timeout: i64) -> Duration {
    let started = Instant::now();
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.to_string(),
        timeout,
    })
    .await
    .unwrap_or_else(|e| panic!("StopContainer {id}: {e:?}"));
    started.elapsed()
}

#[tokio::test]
async fn the_configured_stop_signal_is_sent_kept_across_a_restart_and_reported() {
    let mut f = pod_fixture("stopsignal").await;
    // As PID 1, sh ignores SIGTERM unless it traps it: only the USR1 trap ends it early,
    // with 42; SIGTERM would leave it to the SIGKILL (137) after the grace period.
    let script = "trap 'exit 42' USR1; while true; do sleep 0.05; done";
    let mut usr1 = shell("usr1", script);
    usr1.stop_signal = cri::Signal::Sigusr1 as i32;
    let a = f.run(usr1.clone()).await;
    let mut again = usr1.clone();
    again.metadata.as_mut().unwrap().name = "usr1-restart".into();
    let b = f.run(again).await;
    let plain = f.run(shell("plain", script)).await;

    let st = container_status(&mut f.rt, &a).await;
    assert_eq!(st.stop_signal(), cri::Signal::Sigusr1, "{st:?}");
    // No signal asked for and none in the image: SIGTERM, and it says so.
    let st = container_status(&mut f.rt, &plain).await;
    assert_eq!(st.stop_signal(), cri::Signal::Sigterm, "{st:?}");

    let took = stop(&mut f.rt, &a, 20).await;
    let st = container_status(&mut f.rt, &a).await;
    assert_eq!(st.exit_code, 42, "USR1 was not what stopped it: {st:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // The record keeps the signal: a restarted daemon sends the same one.
    f.restart_daemon().await;
    let st = container_status(&mut f.rt, &b).await;
    assert_eq!(st.state(), cri::ContainerState::ContainerRunning, "{st:?}");
    assert_eq!(st.stop_signal(), cri::Signal::Sigusr1, "{st:?}");
    stop(&mut f.rt, &b, 20).await;
    assert_eq!(container_status(&mut f.rt, &b).await.exit_code, 42);

    // SIGTERM is ignored by the plain one: it is killed after its 1 s.
    let took = stop(&mut f.rt, &plain, 1).await;
    assert!(took >= Duration::from_secs(1), "took {took:?}");
    assert_eq!(container_status(&mut f.rt, &plain).await.exit_code, 137);

    // A number that is no CRI signal is refused, naming the field.
    let mut bad = shell("bad-signal", "true");
    bad.stop_signal = 99;
    let err = f.try_create(bad).await.expect_err("signal 99 accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("stop_signal 99"), "{err:?}");
    f.finish().await;
}

async fn pod_config_json(rt: &mut Runtime, pod: &str) -> serde_json::Value {
    pod_info(rt, pod).await["config"].clone()
}

#[tokio::test]
async fn update_pod_sandbox_resources_is_kept_for_a_known_pod_and_refused_otherwise() {
    let mut f = pod_fixture("podresize").await;
    let resources = cri::LinuxContainerResources {
        cpu_shares: 512,
        cpu_quota: 50_000,
        cpu_period: 100_000,
        memory_limit_in_bytes: 256 << 20,
        ..Default::default()
    };
    let overhead = cri::LinuxContainerResources {
        cpu_shares: 8,
        memory_limit_in_bytes: 16 << 20,
        ..Default::default()
    };
    f.rt.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: f.pod.clone(),
        overhead: Some(overhead),
        resources: Some(resources),
    })
    .await
    .expect("UpdatePodSandboxResources");
    let check = |config: serde_json::Value| {
        let linux = &config["linux"];
        assert_eq!(linux["resources"]["cpu_shares"], 512, "{config}");
        assert_eq!(linux["resources"]["memory_limit_in_bytes"], 256 << 20);
        assert_eq!(linux["overhead"]["memory_limit_in_bytes"], 16 << 20);
    };
    check(pod_config_json(&mut f.rt, &f.pod).await);
    f.restart_daemon().await;
    check(pod_config_json(&mut f.rt, &f.pod).await);

    let call = |pod: &str, shares: i64| cri::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: pod.to_string(),
        overhead: None,
        resources: Some(cri::LinuxContainerResources {
            cpu_shares: shares,
            ..Default::default()
        }),
    };
    let unknown = "0".repeat(64);
    let err =
        f.rt.update_pod_sandbox_resources(call(&unknown, 2))
            .await
            .expect_err("unknown pod accepted");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err =
        f.rt.update_pod_sandbox_resources(call("", 2))
            .await
            .expect_err("empty id accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err =
        f.rt.update_pod_sandbox_resources(call(&f.pod, -5))
            .await
            .expect_err("negative shares accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains(&f.pod), "{err:?}");
    // The refused update changed nothing.
    check(pod_config_json(&mut f.rt, &f.pod).await);
    f.finish().await;
}

/// Collects a server stream; each message's items through `items`.
async fn collect<M, T>(
    reply: Result<tonic::Response<tonic::Streaming<M>>, tonic::Status>,
    items: impl Fn(M) -> Vec<T>,
) -> Vec<T> {
    let mut stream = reply.expect("stream call").into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.message().await.expect("stream message") {
        out.extend(items(msg));
    }
    out
}

#[tokio::test]
async fn the_stream_rpcs_answer_what_the_list_rpcs_answer() {
    let mut f = pod_fixture("streams").await;
    let one = f.run(shell("one", "sleep 3600")).await;
    let two = f.run(shell("two", "sleep 3600")).await;
    let other_config = pod_config(&f.daemon, "streams-other");
    let other = run_pod(&mut f.rt, &other_config).await;

    let pods: BTreeSet<String> = collect(
        f.rt.stream_pod_sandboxes(cri::StreamPodSandboxesRequest { filter: None })
            .await,
        |m| m.pod_sandboxes.into_iter().map(|p| p.id).collect(),
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(pods, BTreeSet::from([f.pod.clone(), other.clone()]));

    let filter = cri::ContainerFilter {
        pod_sandbox_id: f.pod.clone(),
        ..Default::default()
    };
    let ctrs: BTreeSet<String> = collect(
        f.rt.stream_containers(cri::StreamContainersRequest {
            filter: Some(filter.clone()),
        })
        .await,
        |m| m.containers.into_iter().map(|c| c.id).collect(),
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(ctrs, BTreeSet::from([one.clone(), two.clone()]));

    let stats: Vec<cri::ContainerStats> = collect(
        f.rt.stream_container_stats(cri::StreamContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                id: one.clone(),
                ..Default::default()
            }),
        })
        .await,
        |m| m.container_stats,
    )
    .await;
    assert_eq!(stats.len(), 1, "{stats:?}");
    assert_eq!(stats[0].attributes.as_ref().unwrap().id, one);
    assert!(stats[0]
        .memory
        .as_ref()
        .unwrap()
        .working_set_bytes
        .is_some());

    let pod_stats: BTreeSet<String> = collect(
        f.rt.stream_pod_sandbox_stats(cri::StreamPodSandboxStatsRequest { filter: None })
            .await,
        |m| {
            m.pod_sandbox_stats
                .into_iter()
                .map(|s| s.attributes.unwrap().id)
                .collect()
        },
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(pod_stats, BTreeSet::from([f.pod.clone(), other.clone()]));

    let listed: BTreeSet<String> = f
        .images
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images
        .into_iter()
        .map(|i| i.id)
        .collect();
    let streamed: BTreeSet<String> = collect(
        f.images
            .stream_images(cri::StreamImagesRequest { filter: None })
            .await,
        |m| m.images.into_iter().map(|i| i.id).collect(),
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(streamed, listed);
    assert!(!streamed.is_empty());

    // As ListPodSandboxMetrics: the same pods, containers and series (values and times
    // move between the two calls). With the default config that is container_last_seen
    // for each running container, as CRI-O serves it.
    let shape = |metrics: Vec<cri::PodSandboxMetrics>| -> BTreeSet<(String, String, String)> {
        metrics
            .into_iter()
            .flat_map(|p| {
                let pod = p.pod_sandbox_id;
                let pod_level = p
                    .metrics
                    .into_iter()
                    .map(|m| (pod.clone(), String::new(), m.name))
                    .collect::<Vec<_>>();
                let containers = p.container_metrics.into_iter().flat_map(|c| {
                    let pod = pod.clone();
                    c.metrics
                        .into_iter()
                        .map(move |m| (pod.clone(), c.container_id.clone(), m.name))
                });
                pod_level.into_iter().chain(containers).collect::<Vec<_>>()
            })
            .collect()
    };
    let streamed = shape(
        collect(
            f.rt.stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest {})
                .await,
            |m| m.pod_sandbox_metrics,
        )
        .await,
    );
    let listed = shape(
        f.rt.list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .pod_metrics,
    );
    assert_eq!(streamed, listed);
    let last_seen = |id: &str| (f.pod.clone(), id.to_string(), "container_last_seen".into());
    assert!(
        streamed.contains(&last_seen(&one)) && streamed.contains(&last_seen(&two)),
        "{streamed:?}"
    );

    remove_pod(&mut f.rt, &other).await;
    f.finish().await;
}

#[tokio::test]
async fn env_values_are_bytes_on_the_wire_and_must_be_utf8() {
    let mut f = pod_fixture("envbytes").await;
    let mut ok = shell("utf8", "printf %s \"$GREETING\"; sleep 3600");
    ok.envs.push(cri::KeyValue {
        key: "GREETING".into(),
        value: "grüß dich".as_bytes().to_vec(),
    });
    let id = f.run(ok).await;
    assert_eq!(
        exec_ok(&mut f.rt, &id, &["sh", "-c", "printf %s \"$GREETING\""]).await,
        "grüß dich"
    );
    let mut bad = shell("latin1", "true");
    bad.envs.push(cri::KeyValue {
        key: "LATIN1".into(),
        value: vec![b'g', 0xfc, b'n'],
    });
    let err = f.try_create(bad).await.expect_err("non-UTF-8 env accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("\"LATIN1\""), "{err:?}");
    f.finish().await;
}

/// The fixture image with four layers, whiteouts, an opaque dir and symlinks.
fn multilayer() -> String {
    format!("{}/crius-test/multilayer:latest", registry())
}

fn image_mount(container_path: &str, image: &str, sub_path: &str) -> cri::Mount {
    cri::Mount {
        container_path: container_path.into(),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        image_sub_path: sub_path.into(),
        // As the kubelet always sends it.
        readonly: true,
        ..Default::default()
    }
}

/// Image volume mounts (their dirs) under the daemon's dir.
fn image_volume_mounts(f: &PodFixture) -> Vec<String> {
    mounts_under(&f.daemon.dir)
        .into_iter()
        .filter(|m| m.contains("image-volumes"))
        .collect()
}

async fn image_id_of(images: &mut Images, name: &str) -> String {
    images
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner()
        .image
        .expect("image present")
        .id
}

#[tokio::test]
async fn an_image_volume_is_the_image_read_only_whole_or_a_sub_path_inside_it() {
    let mut f = pod_fixture("imagevol").await;
    let image_id = pull(&mut f.images, &multilayer()).await;
    let mut config = shell("reader", "sleep 3600");
    config.mounts = vec![
        image_mount("/vol", &multilayer(), ""),
        image_mount("/vol-opaque", &multilayer(), "opaque"),
        // An absolute link in the image: it must resolve inside the image, to
        // /data/keep of the image, not of the host.
        image_mount("/vol-keep", &multilayer(), "data/symlink-abs"),
    ];
    let id = f.run(config).await;

    // The merged layers: the top layer's file, whiteouts applied, the opaque dir.
    assert_eq!(
        exec_ok(&mut f.rt, &id, &["cat", "/vol/etc/crius-layer"]).await,
        "zstd\n"
    );
    exec_ok(&mut f.rt, &id, &["test", "!", "-e", "/vol/data/remove-me"]).await;
    assert_eq!(
        exec_ok(&mut f.rt, &id, &["ls", "/vol-opaque"]).await,
        "upper\n"
    );
    exec_ok(&mut f.rt, &id, &["cmp", "/vol-keep", "/vol/data/keep"]).await;
    // Read-only, and its programs run (no noexec).
    exec_ok(&mut f.rt, &id, &["/vol/bin/ls", "/vol/data"]).await;
    for target in ["/vol/new-file", "/vol-opaque/new-file"] {
        let out = try_exec(&mut f.rt, &id, &["touch", target], 10)
            .await
            .unwrap();
        assert_ne!(out.exit_code, 0, "{target} was writable");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Read-only"),
            "{out:?}"
        );
    }
    // ContainerStatus names the image each volume was made of.
    let st = container_status(&mut f.rt, &id).await;
    for m in &st.mounts {
        assert_eq!(
            m.image.as_ref().unwrap().image_ref,
            image_id_of(&mut f.images, &multilayer()).await,
            "{m:?}"
        );
    }
    // The host sees the volumes under the container's dir, read-only.
    assert_eq!(
        image_volume_mounts(&f).len(),
        3,
        "{:?}",
        image_volume_mounts(&f)
    );

    // The image is in use: removing it is refused until the container goes.
    let err = f
        .images
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: image_id.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("image in use removed");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&id), "{err:?}");

    // Bad image volumes are refused, naming the mount, and leave nothing mounted.
    let cases = [
        (
            image_mount(
                "/missing",
                &format!("{}/crius-test/absent:1", registry()),
                "",
            ),
            Code::NotFound,
            "/missing",
        ),
        (
            image_mount("/sub", &multilayer(), "no/such/dir"),
            Code::NotFound,
            "no/such/dir",
        ),
        (
            image_mount("/up", &multilayer(), "../etc"),
            Code::InvalidArgument,
            "../etc",
        ),
        (
            image_mount("/abs", &multilayer(), "/etc"),
            Code::InvalidArgument,
            "/etc",
        ),
        (
            cri::Mount {
                readonly: false,
                ..image_mount("/writable", &multilayer(), "")
            },
            Code::InvalidArgument,
            "/writable",
        ),
    ];
    for (n, (mount, code, named)) in cases.into_iter().enumerate() {
        let mut bad = shell(&format!("bad-{n}"), "true");
        bad.mounts.push(mount);
        let err = f
            .try_create(bad)
            .await
            .expect_err("bad image volume accepted");
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(named), "{err:?}");
        assert_eq!(
            image_volume_mounts(&f).len(),
            3,
            "a refused one stayed mounted"
        );
    }

    f.rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("RemoveContainer");
    assert_eq!(image_volume_mounts(&f), Vec::<String>::new());
    f.images
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: image_id,
                ..Default::default()
            }),
        })
        .await
        .expect("RemoveImage once unused");
    f.finish().await;
}

/// The `some` total (µs) of a cgroup v2 pressure file.
fn pressure_total(file: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    let some = text.lines().find(|l| l.starts_with("some ")).unwrap();
    some.rsplit_once("total=")
        .unwrap()
        .1
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn container_and_pod_stats_carry_the_cgroup_pressure_figures() {
    let mut f = pod_fixture("psi").await;
    // Some CPU and IO work, then idle.
    let id = f
        .run(shell(
            "worker",
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 3600",
        ))
        .await;
    let pid = f.pid(&id).await;
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line");
    let root = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/unified"
    };
    let dir = std::path::Path::new(root).join(v2.trim_start_matches('/'));
    if !dir.join("cpu.pressure").exists() {
        eprintln!(
            "skipped: {} has no pressure files (kernel without PSI)",
            dir.display()
        );
        f.finish().await;
        return;
    }
    let before = pressure_total(&dir.join("cpu.pressure"));
    let stats =
        f.rt.container_stats(cri::ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .expect("ContainerStats")
        .into_inner()
        .stats
        .expect("stats");
    let after = pressure_total(&dir.join("cpu.pressure"));
    let cpu = stats.cpu.unwrap().psi.expect("cpu psi");
    let some = cpu.some.unwrap();
    // The kernel's microseconds, as nanoseconds.
    assert!(
        before * 1000 <= some.total && some.total <= after * 1000,
        "{before} µs <= {} ns <= {after} µs",
        some.total
    );
    for avg in [some.avg10, some.avg60, some.avg300] {
        assert!((0.0..=100.0).contains(&avg), "{cpu:?}");
    }
    assert!(stats.memory.unwrap().psi.is_some());
    let io = stats.io.expect("io usage");
    assert!(io.timestamp > 0);
    assert!(io.psi.and_then(|p| p.some).is_some());

    let pod = pod_linux_stats(&mut f.rt, &f.pod).await;
    assert!(pod.cpu.unwrap().psi.is_some(), "no pod cpu psi");
    assert!(pod.io.is_some(), "no pod io usage");
    f.finish().await;
}
