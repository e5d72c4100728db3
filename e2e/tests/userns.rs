//! User namespaces (`hostUsers: false`) through the CRI socket: `Status` reports per handler
//! what its runtime can do (the pinned runc 1.5 and the built-in crius-runtime can, Debian's
//! runc 1.1 cannot), pods on each handler that can see their files through id-mapped
//! mounts, a pod that
//! asks for one on a handler that cannot is refused with FailedPrecondition naming the
//! handler, and bad mappings are refused with InvalidArgument before anything is made.

mod common;

use common::*;
use crius_e2e::{cri, peers::peer_or_skip, CriusDaemon};
use tonic::Code;

const UPSTREAM: &str = "runc-upstream";
/// The built-in crius-runtime, a handler of the default config.
const BUILTIN: &str = "crius";

/// Uid and gid mappings as (container id, host id, length).
type Maps<'a> = &'a [(u32, u32, u32)];

/// A daemon whose default handler is Debian's runc, with the pinned runc as `runc-upstream`;
/// `None` (skipped) without the pinned runc on a developer's machine.
async fn daemon(test: &str) -> Option<CriusDaemon> {
    let runc = peer_or_skip("RUNC", test)?;
    Some(
        builder()
            .bridge_network()
            .runtime_handler(UPSTREAM, &runc, false)
            .start()
            .await
            .expect("daemon"),
    )
}

/// A kubelet-like pod config asking for a user namespace with these uid and gid mappings
/// (container id, host id, length).
fn userns_pod(
    daemon: &CriusDaemon,
    name: &str,
    mode: cri::NamespaceMode,
    maps: Maps,
) -> cri::PodSandboxConfig {
    let mut config = pod_config(daemon, name);
    let maps: Vec<cri::IdMapping> = maps
        .iter()
        .map(|&(container_id, host_id, length)| cri::IdMapping {
            host_id,
            container_id,
            length,
        })
        .collect();
    let ns = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .expect("namespace options");
    ns.userns_options = Some(cri::UserNamespace {
        mode: mode as i32,
        uids: maps.clone(),
        gids: maps,
    });
    config
}

async fn try_run(
    rt: &mut Runtime,
    config: &cri::PodSandboxConfig,
    handler: &str,
) -> Result<String, tonic::Status> {
    rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: handler.to_string(),
    })
    .await
    .map(|r| r.into_inner().pod_sandbox_id)
}

#[tokio::test]
async fn status_reports_user_namespaces_per_handler_and_bad_requests_are_refused() {
    let test = "status_reports_user_namespaces_per_handler_and_bad_requests_are_refused";
    let Some(daemon) = daemon(test).await else {
        return;
    };
    let (mut rt, _) = clients(&daemon).await;
    let status = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    let userns = |name: &str| {
        status
            .runtime_handlers
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("handler {name:?} not in {:?}", status.runtime_handlers))
            .features
            .as_ref()
            .expect("features")
            .user_namespaces
    };
    assert!(userns(UPSTREAM), "runc 1.5 can: {status:?}");
    assert!(userns(BUILTIN), "crius-runtime can: {status:?}");
    assert!(!userns("runc"), "runc 1.1 cannot: {status:?}");
    assert!(userns(""), "the default (crius-runtime) can: {status:?}");

    use cri::NamespaceMode::{Container, Node, Pod, Target};
    let good = [(0, 65536, 65536)];
    // Debian's runc: a clear FailedPrecondition that names the handler.
    let err = try_run(
        &mut rt,
        &userns_pod(&daemon, "old-runc", Pod, &good),
        "runc",
    )
    .await
    .expect_err("a user namespace on runc 1.1");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("\"runc\""), "{err:?}");

    let cases: &[(&str, cri::NamespaceMode, Maps, &str)] = &[
        (
            "overlap",
            Pod,
            &[(0, 65536, 65536), (0, 200000, 65536)],
            "overlap",
        ),
        (
            "host-overlap",
            Pod,
            &[(0, 65536, 100), (100, 65600, 100)],
            "overlap",
        ),
        ("no-root", Pod, &[(1, 65536, 65536)], "container id 0"),
        ("host-root", Pod, &[(0, 0, 65536)], "host's root"),
        ("past-end", Pod, &[(0, u32::MAX - 100, 65536)], "goes past"),
        ("empty", Pod, &[], "at least one mapping"),
        ("node-with-maps", Node, &good, "mode NODE"),
        ("container", Container, &[], "CONTAINER"),
        ("target", Target, &[], "TARGET"),
    ];
    for (name, mode, maps, word) in cases {
        let config = userns_pod(&daemon, name, *mode, maps);
        let err = try_run(&mut rt, &config, UPSTREAM)
            .await
            .expect_err(&format!("{name} accepted"));
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert!(err.message().contains(word), "{name}: {err:?}");
    }
    // With a host namespace.
    let mut config = host_network(userns_pod(&daemon, "hostnet", Pod, &good));
    config.port_mappings.clear();
    let err = try_run(&mut rt, &config, UPSTREAM)
        .await
        .expect_err("user namespace with the host network");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("network namespace"), "{err:?}");
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn a_pod_in_its_own_user_namespace_sees_its_files_through_id_mapped_mounts() {
    let test = "a_pod_in_its_own_user_namespace_sees_its_files_through_id_mapped_mounts";
    let Some(daemon) = daemon(test).await else {
        return;
    };
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    // Each handler whose runtime makes id-mapped mounts, one pod after the other.
    for (handler, host_root) in [(UPSTREAM, 3 * 65536), (BUILTIN, 4 * 65536)] {
        files_through_id_mapped_mounts(&daemon, &mut rt, handler, host_root).await;
    }
    assert_nothing_left(&daemon, &mut rt).await;
}

/// A pod of `handler` mapping its root to `host_root` (as the kubelet maps a pod: 65536
/// ids from a multiple of 65536) sees its files, shm and a volume as its root's.
async fn files_through_id_mapped_mounts(
    daemon: &CriusDaemon,
    rt: &mut Runtime,
    handler: &str,
    host_root: u32,
) {
    let len = 65536;
    let config = userns_pod(
        daemon,
        &format!("userns-{handler}"),
        cri::NamespaceMode::Pod,
        &[(0, host_root, len)],
    );
    let pod = try_run(rt, &config, handler)
        .await
        .unwrap_or_else(|e| panic!("{handler}: RunPodSandbox with a user namespace: {e:?}"));

    // A volume the kubelet made (root-owned on the host) is the pod root's inside, and
    // what the pod's root writes there keeps the ids the pod sees (the mount shifts them
    // back), so the volume reads the same from any pod and from the host.
    let volume = daemon.dir.join(format!("userns-volume-{handler}"));
    std::fs::create_dir_all(&volume).unwrap();
    let mut ctr = shell(
        "probe",
        "cat /proc/self/uid_map; stat -c 'root %u:%g' /; stat -c 'etc %u:%g' /etc/passwd; \
         stat -c 'hosts %u:%g' /etc/hosts; stat -c 'shm %u:%g' /dev/shm; \
         stat -c 'vol %u:%g' /vol; echo hi > /vol/f; echo upper > /made-here; id -u",
    );
    ctr.mounts.push(cri::Mount {
        container_path: "/vol".into(),
        host_path: volume.display().to_string(),
        ..Default::default()
    });
    let id = run_container(rt, &pod, &config, ctr).await;
    let st = wait_state(
        rt,
        &id,
        cri::ContainerState::ContainerExited,
        std::time::Duration::from_secs(30),
    )
    .await;
    let log =
        std::fs::read_to_string(std::path::Path::new(&config.log_directory).join("probe.log"))
            .unwrap_or_default();
    assert_eq!(st.exit_code, 0, "{handler}: {st:?}\n{log}");
    let uid_map: Vec<&str> = log
        .lines()
        .find_map(|l| {
            l.split(" F ")
                .nth(1)
                .filter(|t| t.trim_start().starts_with('0'))
        })
        .expect("uid_map line")
        .split_whitespace()
        .collect();
    assert_eq!(
        uid_map,
        ["0", &host_root.to_string(), &len.to_string()],
        "{handler}: {log}"
    );
    for line in ["root 0:0", "etc 0:0", "hosts 0:0", "shm 0:0", "vol 0:0"] {
        assert!(log.contains(line), "{handler}: {line:?} not in\n{log}");
    }
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::metadata(volume.join("f")).expect("file written through the volume");
    assert_eq!((f.uid(), f.gid()), (0, 0), "{handler}");
    remove_pod(rt, &pod).await;
}

/// Benchmark, not CI (`cargo test -p crius-e2e --test userns -- --ignored --nocapture`):
/// pod start (RunPodSandbox, CreateContainer, StartContainer) with a user namespace of its
/// own against the same pod without, both on runc 1.5, alternating so that load on the
/// machine falls on both alike; medians and p90 over 20 of each, and their ratio.
#[tokio::test]
#[ignore = "benchmark"]
async fn bench_pod_start_with_and_without_a_user_namespace() {
    let test = "bench_pod_start_with_and_without_a_user_namespace";
    let Some(daemon) = daemon(test).await else {
        return;
    };
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    const N: usize = 20;
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    // One warm-up of each, not counted.
    for i in 0..=N {
        for (k, with_userns) in [false, true].into_iter().enumerate() {
            let name = format!("bench-{k}-{i}");
            let config = if with_userns {
                userns_pod(
                    &daemon,
                    &name,
                    cri::NamespaceMode::Pod,
                    &[(0, 65536 * (i as u32 + 2), 65536)],
                )
            } else {
                pod_config(&daemon, &name)
            };
            let started = std::time::Instant::now();
            let pod = try_run(&mut rt, &config, UPSTREAM)
                .await
                .expect("RunPodSandbox");
            run_container(&mut rt, &pod, &config, shell("c", "exec sleep 600")).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if i > 0 {
                times[k].push(ms);
            }
            remove_pod(&mut rt, &pod).await;
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[(v.len() * 9).div_ceil(10) - 1])
    };
    let (plain, plain_p90) = stats(&mut times[0]);
    let (userns, userns_p90) = stats(&mut times[1]);
    println!(
        "pod start, runc 1.5, n={N}: without a user namespace median {plain:.1} ms (p90 \
         {plain_p90:.1}), with one median {userns:.1} ms (p90 {userns_p90:.1}); ratio {:.2} \
         (p90 {:.2})",
        userns / plain,
        userns_p90 / plain_p90
    );
    assert_nothing_left(&daemon, &mut rt).await;
}
