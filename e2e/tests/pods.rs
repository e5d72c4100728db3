//! Pod sandboxes as the kubelet drives them: run, status, list filters, stop and remove
//! (idempotent, leaving nothing behind), repeated and concurrent requests, CNI failures,
//! host-network pods and many pods at once.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use crius_e2e::{cri, CriusDaemon};

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn in_subnet(ip: &str, subnet: &str) -> bool {
    let (net, bits) = subnet.split_once('/').unwrap();
    let bits: u32 = bits.parse().unwrap();
    let ip: std::net::Ipv4Addr = match ip.parse() {
        Ok(ip) => ip,
        Err(_) => return false,
    };
    let net: std::net::Ipv4Addr = net.parse().unwrap();
    let mask = u32::MAX << (32 - bits);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[tokio::test]
async fn run_pod_sandbox_makes_a_ready_pod_with_an_ip_and_a_full_status() {
    let daemon = builder()
        .config(WITH_INFRA)
        .bridge_network()
        .start()
        .await
        .expect("daemon");
    let (mut rt, _) = clients(&daemon).await;
    let mut config = pod_config(&daemon, "status");
    config.labels.insert("tier".into(), "web".into());
    config
        .annotations
        .insert("crius.e2e/note".into(), "kept verbatim".into());

    let before = now_ns();
    let id = run_pod(&mut rt, &config).await;
    let after = now_ns();
    assert_eq!(id.len(), 64, "{id}");

    let reply = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let status = reply.status.clone().expect("status");
    assert_eq!(status.id, id);
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    assert!(
        (before..=after).contains(&status.created_at),
        "created_at {} not in [{before}, {after}]",
        status.created_at
    );
    assert_eq!(status.metadata, config.metadata);
    let subnet = &daemon.bridge.as_ref().unwrap().subnet;
    let ip = status.network.as_ref().expect("network status").ip.clone();
    assert!(in_subnet(&ip, subnet), "pod IP {ip:?} not in {subnet}");
    let ns = status
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .expect("namespace options");
    assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
    assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);
    assert_eq!(ns.ipc, cri::NamespaceMode::Pod as i32);
    assert_eq!(status.labels, config.labels);
    assert_eq!(status.annotations, config.annotations);

    // Verbose info: JSON naming the pause pid and the netns.
    let info: serde_json::Value =
        serde_json::from_str(reply.info.get("info").expect("verbose info")).unwrap();
    let pid = info["pid"].as_u64().expect("pid in info");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "pause pid {pid} not running: {info}"
    );
    let netns = info["netns"].as_str().expect("netns in info");
    assert!(
        netns.starts_with(&daemon.runroot.display().to_string()),
        "netns {netns} not under the run dir"
    );
    // The pause process lives in that netns.
    assert_eq!(
        std::fs::metadata(netns)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap(),
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap()
    );
    // The IP is held by the IPAM store while the pod lives.
    assert_eq!(ipam_reserved(&daemon), vec![ip]);
    remove_pod(&mut rt, &id).await;
}

#[tokio::test]
async fn list_pod_sandbox_filters_by_id_prefix_state_and_labels() {
    let daemon = bridge_daemon().await;
    let (mut rt, _) = clients(&daemon).await;
    let mut a_cfg = pod_config(&daemon, "list-a");
    a_cfg.labels.insert("group".into(), "one".into());
    let mut b_cfg = pod_config(&daemon, "list-b");
    b_cfg.labels.insert("group".into(), "one".into());
    let a = run_pod(&mut rt, &a_cfg).await;
    let b = run_pod(&mut rt, &b_cfg).await;
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: b.clone(),
    })
    .await
    .unwrap();

    let ids = |items: Vec<cri::PodSandbox>| -> HashSet<String> {
        items.into_iter().map(|p| p.id).collect()
    };
    let all = list_pods(&mut rt, None).await;
    assert_eq!(ids(all.clone()), HashSet::from([a.clone(), b.clone()]));
    let listed_a = all.iter().find(|p| p.id == a).unwrap();
    assert_eq!(listed_a.metadata, a_cfg.metadata);
    assert_eq!(listed_a.labels, a_cfg.labels);
    assert_eq!(listed_a.state, cri::PodSandboxState::SandboxReady as i32);

    let by = |id: &str| cri::PodSandboxFilter {
        id: id.to_string(),
        ..Default::default()
    };
    assert_eq!(
        ids(list_pods(&mut rt, Some(by(&a))).await),
        HashSet::from([a.clone()])
    );
    // A prefix that only `a` has (the ids are random; find the shortest unique one).
    let n = (1..64).find(|&n| !b.starts_with(&a[..n])).unwrap();
    assert_eq!(
        ids(list_pods(&mut rt, Some(by(&a[..n]))).await),
        HashSet::from([a.clone()])
    );
    assert!(list_pods(&mut rt, Some(by("zzzz"))).await.is_empty());

    let state = |s: cri::PodSandboxState| cri::PodSandboxFilter {
        state: Some(cri::PodSandboxStateValue { state: s as i32 }),
        ..Default::default()
    };
    assert_eq!(
        ids(list_pods(&mut rt, Some(state(cri::PodSandboxState::SandboxReady))).await),
        HashSet::from([a.clone()])
    );
    assert_eq!(
        ids(list_pods(&mut rt, Some(state(cri::PodSandboxState::SandboxNotready))).await),
        HashSet::from([b.clone()])
    );

    let labels = |pairs: &[(&str, &str)]| cri::PodSandboxFilter {
        label_selector: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    assert_eq!(
        ids(list_pods(&mut rt, Some(labels(&[("group", "one")]))).await),
        HashSet::from([a.clone(), b.clone()])
    );
    assert_eq!(
        ids(list_pods(
            &mut rt,
            Some(labels(&[("group", "one"), ("app", "list-b")]))
        )
        .await),
        HashSet::from([b.clone()])
    );
    assert!(list_pods(&mut rt, Some(labels(&[("group", "two")])))
        .await
        .is_empty());
    // Filters combine.
    let mut both = labels(&[("group", "one")]);
    both.state = state(cri::PodSandboxState::SandboxReady).state;
    assert_eq!(
        ids(list_pods(&mut rt, Some(both)).await),
        HashSet::from([a.clone()])
    );

    remove_pod(&mut rt, &a).await;
    remove_pod(&mut rt, &b).await;
}

#[tokio::test]
async fn pod_ip_netns_mounts_and_cgroup_are_released_after_remove() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    // No cgroup parent: crius makes <cgroup_root>/crius/pod-<id> itself (under the test's
    // cgroup parent, which the harness removes should the test fail) and must remove it.
    let mut config = pod_config(&daemon, "cleanup");
    config.linux.as_mut().unwrap().cgroup_parent = String::new();
    let id = run_pod(&mut rt, &config).await;
    let pod_cgroup = format!("{}/crius/pod-{id}", daemon.cgroup_parent);
    let ip = pod_status(&mut rt, &id).await.network.unwrap().ip;
    assert_eq!(ipam_reserved(&daemon), vec![ip.clone()]);
    assert_eq!(netns_pins(&daemon), vec![id.clone()]);
    assert!(
        !mounts_under(&daemon.dir).is_empty(),
        "a running pod has mounts"
    );

    // A container too, so its rootfs and cgroup must go as well.
    pull(&mut images, &busybox()).await;
    let ctr = run_container(&mut rt, &id, &config, sleeper()).await;
    let memory_cgroup = format!("/sys/fs/cgroup/memory{pod_cgroup}");
    assert!(
        Path::new(&memory_cgroup).is_dir(),
        "pod cgroup {memory_cgroup} missing while the pod runs"
    );

    for _ in 0..2 {
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .expect("StopPodSandbox (again) succeeds");
    }
    let stopped = pod_status(&mut rt, &id).await;
    assert_eq!(stopped.state, cri::PodSandboxState::SandboxNotready as i32);
    assert_eq!(
        container_status(&mut rt, &ctr).await.state,
        cri::ContainerState::ContainerExited as i32
    );
    // Stopping released the network already.
    assert_eq!(
        ipam_reserved(&daemon),
        Vec::<String>::new(),
        "IP kept after stop"
    );
    assert_eq!(
        netns_pins(&daemon),
        Vec::<String>::new(),
        "netns kept after stop"
    );
    // The runtime's state of the pause and the container goes after their exit, before
    // any removal.
    wait_runtime_state_gone(&daemon, &id).await;
    wait_runtime_state_gone(&daemon, &ctr).await;

    for _ in 0..2 {
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .expect("RemovePodSandbox (of a gone pod too) succeeds");
    }
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .expect("StopPodSandbox of a removed pod succeeds");
    let err = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    assert_nothing_left(&daemon, &mut rt).await;
    let left = cgroup_dirs(&pod_cgroup);
    assert!(left.is_empty(), "pod cgroup left: {left:?}");
}

#[tokio::test]
async fn run_pod_sandbox_repeated_or_concurrent_gives_one_pod() {
    let daemon = bridge_daemon().await;
    let (mut rt, _) = clients(&daemon).await;
    let config = pod_config(&daemon, "same");
    let first = run_pod(&mut rt, &config).await;
    let again = run_pod(&mut rt, &config).await;
    assert_eq!(first, again, "a repeated RunPodSandbox made a second pod");

    // Two identical requests racing for a new pod.
    let racing = pod_config(&daemon, "racing");
    let (mut rt1, mut rt2) = (rt.clone(), rt.clone());
    let (c1, c2) = (racing.clone(), racing.clone());
    let (x, y) = tokio::join!(async move { run_pod(&mut rt1, &c1).await }, async move {
        run_pod(&mut rt2, &c2).await
    });
    assert_eq!(x, y, "two concurrent identical requests made two pods");

    let pods = list_pods(&mut rt, None).await;
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert_eq!(ipam_reserved(&daemon).len(), 2);
    assert_eq!(netns_pins(&daemon).len(), 2);
    // RemovePodSandbox without a StopPodSandbox first stops the pod itself.
    for id in [&first, &x] {
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .unwrap();
    }
    assert_nothing_left(&daemon, &mut rt).await;
    // The name is free again: a new request makes a new pod.
    let fresh = run_pod(&mut rt, &config).await;
    assert_ne!(fresh, first);
    remove_pod(&mut rt, &fresh).await;
}

async fn assert_run_fails_and_leaves_nothing(daemon: &CriusDaemon, wanted: &[&str]) {
    let (mut rt, _) = clients(daemon).await;
    let config = pod_config(daemon, "cni-fails");
    let err = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("RunPodSandbox must fail");
    println!(
        "RunPodSandbox failed as expected: {:?}: {}",
        err.code(),
        err.message()
    );
    for w in wanted {
        assert!(err.message().contains(w), "message lacks {w:?}: {err:?}");
    }
    assert_nothing_left(daemon, &mut rt).await;
    // The pod's cgroup parent was never populated.
    let parent = config.linux.clone().unwrap().cgroup_parent;
    let cg: Vec<_> = cgroup_dirs(&parent)
        .into_iter()
        .filter(|d| dir_entries(d).iter().any(|e| d.join(e).is_dir()))
        .collect();
    assert!(cg.is_empty(), "container cgroups left: {cg:?}");
    // A second try fails the same way (nothing half-made blocks the name).
    let again = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("RunPodSandbox must fail again");
    assert_eq!(again.code(), err.code(), "{again:?}");
    assert_nothing_left(daemon, &mut rt).await;
}

#[tokio::test]
async fn a_cni_plugin_that_does_not_exist_fails_run_pod_sandbox_and_leaves_nothing() {
    let plugins = tempfile::tempdir_in("/var/tmp").unwrap();
    let daemon = daemon_with_chain(
        plugins.path(),
        serde_json::json!([{"type": "crius-e2e-no-such-plugin"}]),
    )
    .await;
    assert_run_fails_and_leaves_nothing(&daemon, &["CNI ADD", "crius-e2e-no-such-plugin"]).await;
}

#[tokio::test]
async fn a_cni_plugin_that_exits_1_fails_run_pod_sandbox_and_leaves_nothing() {
    let plugins = tempfile::tempdir_in("/var/tmp").unwrap();
    let script = plugins.path().join("crius-e2e-fail");
    std::fs::write(
        &script,
        r#"#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
ADD)
  echo '{"cniVersion":"1.0.0","code":11,"msg":"crius-e2e plugin refuses ADD","details":"on purpose"}'
  exit 1 ;;
VERSION)
  echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;
esac
exit 0
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let daemon = daemon_with_chain(
        plugins.path(),
        serde_json::json!([{"type": "crius-e2e-fail"}]),
    )
    .await;
    assert_run_fails_and_leaves_nothing(
        &daemon,
        &["CNI ADD", "crius-e2e-fail", "crius-e2e plugin refuses ADD"],
    )
    .await;
}

#[tokio::test]
async fn a_host_network_pod_shares_the_host_netns_and_has_no_pin() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    let config = host_network(pod_config(&daemon, "hostnet"));
    let id = run_pod(&mut rt, &config).await;
    let status = pod_status(&mut rt, &id).await;
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    let ns = status.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
    assert!(
        netns_pins(&daemon).is_empty(),
        "a host-network pod got a netns pin"
    );
    assert!(
        ipam_reserved(&daemon).is_empty(),
        "a host-network pod got a pod IP"
    );

    pull(&mut images, &busybox()).await;
    let ctr = run_container(
        &mut rt,
        &id,
        &config,
        container_config("c", &["sleep", "3600"]),
    )
    .await;
    let inside = exec_ok(&mut rt, &ctr, &["readlink", "/proc/self/ns/net"]).await;
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(inside.trim(), host.to_string_lossy());
    remove_pod(&mut rt, &id).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn namespaced_sysctls_apply_and_a_shared_pid_namespace_shows_the_pause_process() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let mut config = pod_config(&daemon, "sysctl");
    let linux = config.linux.as_mut().unwrap();
    linux.sysctls = HashMap::from([
        (
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "0".to_string(),
        ),
        ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
    ]);
    let ns = linux
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap();
    ns.pid = cri::NamespaceMode::Pod as i32;
    let pod = run_pod(&mut rt, &config).await;
    let mut ctr_cfg = container_config("c", &["sleep", "3600"]);
    ctr_cfg
        .linux
        .get_or_insert_with(Default::default)
        .security_context = Some(cri::LinuxContainerSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            network: cri::NamespaceMode::Pod as i32,
            pid: cri::NamespaceMode::Pod as i32,
            ipc: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let ctr = run_container(&mut rt, &pod, &config, ctr_cfg).await;
    let values = exec_ok(
        &mut rt,
        &ctr,
        &[
            "cat",
            "/proc/sys/net/ipv4/ip_unprivileged_port_start",
            "/proc/sys/kernel/shm_rmid_forced",
        ],
    )
    .await;
    assert_eq!(
        values.split_whitespace().collect::<Vec<_>>(),
        vec!["0", "1"]
    );
    // The host's own values are untouched.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced")
            .unwrap()
            .trim(),
        "0"
    );
    // With the pod's PID namespace, PID 1 is the pause process.
    let ps = exec_ok(&mut rt, &ctr, &["ps", "-o", "pid,args"]).await;
    let first = ps
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_else(|| panic!("no PID 1 in:\n{ps}"));
    assert!(
        first.contains("pause"),
        "PID 1 is not the pause process:\n{ps}"
    );
    assert!(ps.contains("sleep 3600"), "{ps}");
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn twenty_pods_created_in_parallel_are_ready_with_distinct_ips_and_all_go_away() {
    let daemon = bridge_daemon().await;
    let (rt, _) = clients(&daemon).await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut rt = rt.clone();
        let config = pod_config(&daemon, &format!("many-{i}"));
        tasks.spawn(async move { run_pod(&mut rt, &config).await });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        ids.push(r.unwrap());
    }
    let made_in = started.elapsed();
    let mut rt = rt;
    let mut ips = HashMap::new();
    for id in &ids {
        let s = pod_status(&mut rt, id).await;
        assert_eq!(s.state, cri::PodSandboxState::SandboxReady as i32, "{id}");
        let ip = s.network.unwrap().ip;
        assert!(!ip.is_empty(), "{id} has no IP");
        if let Some(other) = ips.insert(ip.clone(), id.clone()) {
            panic!("pods {id} and {other} share IP {ip}");
        }
    }
    assert_eq!(ips.len(), 20);
    assert_eq!(list_pods(&mut rt, None).await.len(), 20);
    assert_eq!(netns_pins(&daemon).len(), 20);

    let mut tasks = tokio::task::JoinSet::new();
    for id in ids {
        let mut rt = rt.clone();
        tasks.spawn(async move { remove_pod(&mut rt, &id).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    println!(
        "20 pods made in {made_in:?}, all removed after {:?}",
        started.elapsed()
    );
    assert_nothing_left(&daemon, &mut rt).await;
    assert!(started.elapsed() < Duration::from_secs(120));
}

/// The annotations of the OCI spec crius wrote for a pod's pause container (`pods/ID`) or
/// a container (`containers/ID`): what the runtime is handed.
fn spec_annotations(daemon: &CriusDaemon, kind: &str, id: &str) -> HashMap<String, String> {
    let path = daemon.root.join(kind).join(id).join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(spec["annotations"].clone()).unwrap()
}

#[tokio::test]
async fn annotations_a_runtime_acts_on_reach_the_spec_only_where_the_handler_allows_them() {
    // Two handlers on the same runc: the default allows nothing, `runc-open` allows
    // crun's `run.oci.` options.
    let daemon = builder()
        .config(WITH_INFRA)
        .runtime_handler("runc-open", Path::new("/usr/sbin/runc"), false)
        .config("[crius.runtime.runtimes.runc-open]\nallowed_annotations = [\"run.oci.\"]\n")
        .start()
        .await
        .unwrap();
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let given = HashMap::from([
        ("run.oci.keep_original_groups".to_string(), "1".to_string()),
        (
            "org.systemd.property.CPUWeight".to_string(),
            "5".to_string(),
        ),
        (
            "io.kubernetes.cri.container-type".to_string(),
            "forged".to_string(),
        ),
        ("example.com/owner".to_string(), "team-a".to_string()),
    ]);
    for (handler, run_oci_passes) in [("", false), ("runc-open", true)] {
        let mut config = host_network(pod_config(&daemon, &format!("ann{}", handler.len())));
        config.annotations = given.clone();
        let pod = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: handler.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox ({handler:?}): {e:?}"))
            .into_inner()
            .pod_sandbox_id;
        let mut ctr = container_config("c", &["sleep", "60"]);
        ctr.annotations = given.clone();
        let ctr = create(&mut rt, &pod, &config, ctr).await;
        for (kind, id, container_type) in
            [("pods", &pod, "sandbox"), ("containers", &ctr, "container")]
        {
            let a = spec_annotations(&daemon, kind, id);
            let what = format!("{kind} of handler {handler:?}");
            assert_eq!(
                a.get("example.com/owner").map(String::as_str),
                Some("team-a"),
                "{what}: {a:?}"
            );
            assert_eq!(
                a.contains_key("run.oci.keep_original_groups"),
                run_oci_passes,
                "{what}: {a:?}"
            );
            assert!(
                !a.contains_key("org.systemd.property.CPUWeight"),
                "{what}: {a:?}"
            );
            assert_eq!(
                a.get("io.kubernetes.cri.container-type")
                    .map(String::as_str),
                Some(container_type),
                "{what}: {a:?}"
            );
        }
        // The CRI still reports every annotation as given: only the spec is filtered.
        let status = pod_status(&mut rt, &pod).await;
        assert_eq!(status.annotations, given);
        remove_pod(&mut rt, &pod).await;
    }
}
