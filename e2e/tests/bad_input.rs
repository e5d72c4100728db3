//! Bad requests: each is refused with the gRPC code a kubelet can act on and a message that
//! names the field or object at fault, and leaves nothing behind. Each test runs a table of
//! cases against one daemon and reports every case that misbehaves, not just the first.

mod common;

use std::collections::HashMap;

use common::*;
use crius_e2e::{cri, CriusDaemon};
use tonic::Code;

/// Collects the cases that misbehave, so one run shows them all.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(
        &mut self,
        case: &str,
        result: Result<impl std::fmt::Debug, tonic::Status>,
        code: Code,
        words: &[&str],
    ) {
        match result {
            Ok(v) => self
                .0
                .push(format!("{case}: succeeded ({v:?}); wanted {code:?}")),
            Err(status) => {
                println!("{case}: {:?}: {}", status.code(), status.message());
                if status.code() != code {
                    self.0.push(format!(
                        "{case}: code {:?}, wanted {code:?} ({})",
                        status.code(),
                        status.message()
                    ));
                }
                for w in words {
                    if !status.message().contains(w) {
                        self.0.push(format!(
                            "{case}: message {:?} does not name {w:?}",
                            status.message()
                        ));
                    }
                }
            }
        }
    }

    fn note(&mut self, case: &str, what: impl Into<Option<String>>) {
        if let Some(what) = what.into() {
            self.0.push(format!("{case}: {what}"));
        }
    }

    fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "cases that misbehaved:\n  {}",
            self.0.join("\n  ")
        );
    }
}

/// What a refused pod request may not leave: a listed pod, a netns pin, a pod dir, a mount,
/// a reserved IP.
async fn pod_leftovers(daemon: &CriusDaemon, rt: &mut Runtime) -> Option<String> {
    let mut found = Vec::new();
    let pods = list_pods(rt, None).await;
    if !pods.is_empty() {
        found.push(format!("pods listed: {pods:?}"));
    }
    let pins = netns_pins(daemon);
    if !pins.is_empty() {
        found.push(format!("netns pins: {pins:?}"));
    }
    for dir in [daemon.root.join("pods"), daemon.runroot.join("pods")] {
        let left = dir_entries(&dir);
        if !left.is_empty() {
            found.push(format!("left in {}: {left:?}", dir.display()));
        }
    }
    let mounts = mounts_under(&daemon.dir);
    if !mounts.is_empty() {
        found.push(format!("mounts: {mounts:?}"));
    }
    if let Some(bridge) = &daemon.bridge {
        let ports = dir_entries(
            &std::path::Path::new("/sys/class/net")
                .join(&bridge.name)
                .join("brif"),
        );
        if !ports.is_empty() {
            found.push(format!("veths on {}: {ports:?}", bridge.name));
        }
        let ips = ipam_reserved(daemon);
        if !ips.is_empty() {
            found.push(format!("reserved IPs: {ips:?}"));
        }
    }
    (!found.is_empty()).then(|| found.join("; "))
}

fn with_sysctls(
    mut config: cri::PodSandboxConfig,
    pairs: &[(&str, &str)],
) -> cri::PodSandboxConfig {
    config.linux.as_mut().unwrap().sysctls = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<HashMap<_, _>>();
    config
}

#[tokio::test]
async fn bad_pod_sandbox_requests_are_refused_and_leave_nothing() {
    let daemon = bridge_daemon().await;
    let (mut rt, _) = clients(&daemon).await;
    let good = pod_config(&daemon, "bad");
    let mut cases: Vec<(&str, cri::PodSandboxConfig, &str, Code, Vec<&str>)> = Vec::new();

    let mut c = good.clone();
    c.metadata = None;
    cases.push((
        "missing metadata",
        c,
        "",
        Code::InvalidArgument,
        vec!["metadata"],
    ));
    let mut c = good.clone();
    c.metadata.as_mut().unwrap().name = String::new();
    cases.push(("empty name", c, "", Code::InvalidArgument, vec!["name"]));
    let mut c = good.clone();
    c.hostname = "../../etc".into();
    cases.push((
        "hostname with ..",
        c,
        "",
        Code::InvalidArgument,
        vec!["hostname", "../../etc"],
    ));
    let mut c = good.clone();
    c.log_directory = format!("{}/logs/../../../etc", daemon.dir.display());
    cases.push((
        "log_directory with ..",
        c,
        "",
        Code::InvalidArgument,
        vec!["log_directory"],
    ));
    let mut c = good.clone();
    c.linux.as_mut().unwrap().cgroup_parent = "/crius-e2e-elsewhere/pod1".into();
    cases.push((
        "cgroup_parent outside the root",
        c,
        "",
        Code::InvalidArgument,
        vec!["cgroup_parent", "/crius-e2e-elsewhere/pod1"],
    ));
    let mut c = good.clone();
    c.linux.as_mut().unwrap().cgroup_parent = format!("{}/../escape", daemon.cgroup_parent);
    cases.push((
        "cgroup_parent with ..",
        c,
        "",
        Code::InvalidArgument,
        vec!["cgroup_parent"],
    ));
    cases.push((
        "unknown runtime handler",
        good.clone(),
        "no-such-handler",
        Code::InvalidArgument,
        vec!["no-such-handler"],
    ));
    cases.push((
        "unsafe sysctl kernel.panic",
        with_sysctls(good.clone(), &[("kernel.panic", "1")]),
        "",
        Code::InvalidArgument,
        vec!["kernel.panic"],
    ));
    cases.push((
        "unsafe sysctl vm.swappiness",
        with_sysctls(good.clone(), &[("vm.swappiness", "10")]),
        "",
        Code::InvalidArgument,
        vec!["vm.swappiness"],
    ));
    cases.push((
        "net sysctl with host network",
        host_network(with_sysctls(
            good.clone(),
            &[("net.ipv4.ip_unprivileged_port_start", "0")],
        )),
        "",
        Code::InvalidArgument,
        vec!["net.ipv4.ip_unprivileged_port_start", "host network"],
    ));
    let mut c = good.clone();
    c.port_mappings.push(cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 80,
        host_port: 70000,
        host_ip: "127.0.0.1".into(),
    });
    cases.push((
        "host_port out of range",
        c,
        "",
        Code::InvalidArgument,
        vec!["70000"],
    ));
    let mut c = good.clone();
    c.port_mappings.push(cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: -1,
        host_port: 18080,
        host_ip: "127.0.0.1".into(),
    });
    cases.push((
        "negative container_port",
        c,
        "",
        Code::InvalidArgument,
        vec!["-1"],
    ));
    let mut c = good.clone();
    c.hostname = "h".repeat(100);
    cases.push((
        "hostname over 64 bytes",
        c,
        "",
        Code::InvalidArgument,
        vec!["hostname"],
    ));
    for (case, hostname) in [
        ("hostname with a newline", "web\n10.0.0.1 evil"),
        ("hostname with a space", "web 0"),
        ("hostname with an underscore", "web_0"),
        ("hostname with an empty label", "web..svc"),
        ("hostname starting with '-'", "-web"),
    ] {
        let mut c = good.clone();
        c.hostname = hostname.into();
        cases.push((case, c, "", Code::InvalidArgument, vec!["hostname"]));
    }
    // These reach CNI plugins in CNI_ARGS (`K=V;K=V`), where they would add keys.
    let mut c = good.clone();
    c.metadata.as_mut().unwrap().name = "web;IP=10.88.0.99".into();
    cases.push((
        "name with ';' and '='",
        c,
        "",
        Code::InvalidArgument,
        vec!["metadata.name", "CNI_ARGS"],
    ));
    let mut c = good.clone();
    c.metadata.as_mut().unwrap().namespace = "ns=x".into();
    cases.push((
        "namespace with '='",
        c,
        "",
        Code::InvalidArgument,
        vec!["metadata.namespace", "CNI_ARGS"],
    ));
    let mut c = good.clone();
    c.metadata.as_mut().unwrap().uid = "u;K8S_POD_NAME=other".into();
    cases.push((
        "uid with ';'",
        c,
        "",
        Code::InvalidArgument,
        vec!["metadata.uid", "CNI_ARGS"],
    ));
    let mut c = good.clone();
    c.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.0.0.10\nnameserver 6.6.6.6".into()],
        ..Default::default()
    });
    cases.push((
        "a DNS server with a newline",
        c,
        "",
        Code::InvalidArgument,
        vec!["10.0.0.10"],
    ));
    let mut c = good.clone();
    c.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.0.0.10".into()],
        searches: vec!["svc.local\noptions ndots:0".into()],
        ..Default::default()
    });
    cases.push((
        "a DNS search with a newline",
        c,
        "",
        Code::InvalidArgument,
        vec!["svc.local"],
    ));

    let mut failures = Failures::default();
    for (case, mut config, handler, code, words) in cases {
        // A pod of its own per case, so a case that wrongly succeeds spoils no other.
        // (The case's own uid is kept in front: it may be what is bad.)
        if let Some(md) = config.metadata.as_mut() {
            md.uid = format!("{}{}", md.uid, crius_e2e::unique_name("-"));
        }
        let result = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: handler.to_string(),
            })
            .await
            .map(|r| r.into_inner().pod_sandbox_id);
        let made = result.as_ref().ok().cloned();
        failures.check(case, result, code, &words);
        match made {
            Some(id) => remove_pod(&mut rt, &id).await,
            None => failures.note(case, pod_leftovers(&daemon, &mut rt).await),
        }
    }
    let result = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: None,
            runtime_handler: String::new(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id);
    failures.check(
        "no config at all",
        result,
        Code::InvalidArgument,
        &["config"],
    );

    // The same pod, made well, still works: nothing above blocked its name.
    let id = run_pod(&mut rt, &good).await;
    remove_pod(&mut rt, &id).await;
    failures.note("after a good pod", pod_leftovers(&daemon, &mut rt).await);
    failures.assert_none();
}

/// What a refused container request may not leave: a listed container, a container dir, a
/// mount under the containers dir.
async fn container_leftovers(daemon: &CriusDaemon, rt: &mut Runtime) -> Option<String> {
    let mut found = Vec::new();
    let ctrs = rt
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    if !ctrs.is_empty() {
        found.push(format!("containers listed: {ctrs:?}"));
    }
    for dir in [
        daemon.root.join("containers"),
        daemon.runroot.join("containers"),
    ] {
        let left = dir_entries(&dir);
        if !left.is_empty() {
            found.push(format!("left in {}: {left:?}", dir.display()));
        }
        let mounts = mounts_under(&dir);
        if !mounts.is_empty() {
            found.push(format!("mounts: {mounts:?}"));
        }
    }
    (!found.is_empty()).then(|| found.join("; "))
}

#[tokio::test]
async fn bad_create_container_requests_are_refused_and_leave_nothing() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let pod_cfg = pod_config(&daemon, "bad-ctr");
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let good = container_config("c", &["sleep", "3600"]);
    let missing_host_path = daemon.dir.join("no-such-dir").display().to_string();
    let mut cases: Vec<(&str, String, cri::ContainerConfig, Code, Vec<&str>)> = Vec::new();

    let mut c = good.clone();
    c.mounts.push(cri::Mount {
        container_path: "/data/../../etc".into(),
        host_path: daemon.dir.display().to_string(),
        ..Default::default()
    });
    cases.push((
        "mount container_path with ..",
        pod.clone(),
        c,
        Code::InvalidArgument,
        vec!["container_path", "/data/../../etc"],
    ));
    let mut c = good.clone();
    c.mounts.push(cri::Mount {
        container_path: "/data".into(),
        host_path: missing_host_path.clone(),
        ..Default::default()
    });
    cases.push((
        "mount of a missing host path",
        pod.clone(),
        c,
        Code::InvalidArgument,
        vec![&missing_host_path],
    ));
    let mut c = good.clone();
    c.log_path = "../../escape.log".into();
    cases.push((
        "log_path escaping the log dir",
        pod.clone(),
        c,
        Code::InvalidArgument,
        vec!["log_path", "../../escape.log"],
    ));
    let mut c = good.clone();
    c.log_path = "/etc/escape.log".into();
    cases.push((
        "absolute log_path",
        pod.clone(),
        c,
        Code::InvalidArgument,
        vec!["log_path"],
    ));
    let absent = format!("{}/crius-test/not-pulled:latest", registry());
    let mut c = good.clone();
    c.image.as_mut().unwrap().image = absent.clone();
    cases.push((
        "image not present",
        pod.clone(),
        c,
        Code::NotFound,
        vec![&absent],
    ));
    let mut c = good.clone();
    c.linux.as_mut().unwrap().security_context = Some(cri::LinuxContainerSecurityContext {
        run_as_username: "nobody2".into(),
        ..Default::default()
    });
    cases.push((
        "user not in the image",
        pod.clone(),
        c,
        Code::InvalidArgument,
        vec!["nobody2"],
    ));
    let mut c = good.clone();
    c.working_dir = "relative/dir".into();
    cases.push((
        "a relative working_dir",
        pod.clone(),
        c,
        Code::InvalidArgument,
        vec!["relative/dir"],
    ));
    let mut c = good.clone();
    c.linux.as_mut().unwrap().security_context = Some(cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: vec!["CAP_NOT_A_CAP".into()],
            ..Default::default()
        }),
        ..Default::default()
    });
    cases.push((
        "an unknown capability",
        pod.clone(),
        c,
        Code::InvalidArgument,
        vec!["CAP_NOT_A_CAP"],
    ));
    let mut c = good.clone();
    c.linux.as_mut().unwrap().security_context = Some(cri::LinuxContainerSecurityContext {
        seccomp: Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Localhost as i32,
            localhost_ref: "/var/lib/kubelet/seccomp/crius-e2e-missing.json".into(),
        }),
        ..Default::default()
    });
    cases.push((
        "a missing seccomp profile",
        pod.clone(),
        c,
        Code::InvalidArgument,
        vec!["crius-e2e-missing.json"],
    ));
    let mut c = good.clone();
    c.devices.push(cri::Device {
        container_path: "/dev/crius-e2e".into(),
        host_path: "/dev/crius-e2e-no-such-device".into(),
        permissions: "rwm".into(),
    });
    cases.push((
        "a missing device",
        pod.clone(),
        c,
        Code::InvalidArgument,
        vec!["/dev/crius-e2e-no-such-device"],
    ));
    let no_pod = "0".repeat(64);
    cases.push((
        "pod that does not exist",
        no_pod.clone(),
        good.clone(),
        Code::NotFound,
        vec![&no_pod],
    ));
    let mut c = good.clone();
    c.metadata = None;
    cases.push((
        "missing metadata",
        pod.clone(),
        c,
        Code::InvalidArgument,
        vec!["metadata"],
    ));

    let mut failures = Failures::default();
    for (case, pod_id, config, code, words) in cases {
        let result = rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod_id,
                config: Some(config),
                sandbox_config: Some(pod_cfg.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id);
        failures.check(case, result, code, &words);
        failures.note(case, container_leftovers(&daemon, &mut rt).await);
    }

    // The good config works in the running pod (so the cases above failed for their fault).
    let ok = create(&mut rt, &pod, &pod_cfg, good.clone()).await;
    rt.remove_container(cri::RemoveContainerRequest { container_id: ok })
        .await
        .unwrap();

    // A second container with the same name (and attempt) in the pod is refused.
    let first = create(&mut rt, &pod, &pod_cfg, good.clone()).await;
    let result = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(good.clone()),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .map(|r| r.into_inner().container_id);
    failures.check(
        "a name used in the pod",
        result,
        Code::AlreadyExists,
        &["\"c\"", &first],
    );
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: first,
    })
    .await
    .unwrap();
    failures.note(
        "a name used in the pod",
        container_leftovers(&daemon, &mut rt).await,
    );

    // A stopped pod takes no new containers.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let result = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(good.clone()),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .map(|r| r.into_inner().container_id);
    failures.check(
        "container in a stopped pod",
        result,
        Code::FailedPrecondition,
        &[&pod],
    );
    failures.note(
        "container in a stopped pod",
        container_leftovers(&daemon, &mut rt).await,
    );

    remove_pod(&mut rt, &pod).await;
    failures.note(
        "after removing the pod",
        pod_leftovers(&daemon, &mut rt).await,
    );
    failures.assert_none();
}

#[tokio::test]
async fn bad_pull_requests_are_refused_and_leave_no_image() {
    let daemon = builder().start().await.unwrap();
    let (_, mut images) = clients(&daemon).await;
    let unknown = format!("{}/crius-test/does-not-exist:latest", registry());
    let cases: Vec<(&str, String, Code, Vec<String>)> = vec![
        (
            "a name that does not parse",
            "Not A/Valid::Name".into(),
            Code::InvalidArgument,
            vec!["Not A/Valid::Name".into()],
        ),
        (
            "a tag that does not parse",
            "busybox:bad tag!".into(),
            Code::InvalidArgument,
            vec!["busybox:bad tag!".into()],
        ),
        (
            "an upper-case repository",
            "127.0.0.1:5000/Crius-Test/BusyBox:latest".into(),
            Code::InvalidArgument,
            vec!["Crius-Test/BusyBox".into()],
        ),
        (
            "a malformed digest",
            "busybox@sha256:not-hex".into(),
            Code::InvalidArgument,
            vec!["sha256:not-hex".into()],
        ),
        (
            "an unknown image",
            unknown.clone(),
            Code::NotFound,
            vec![unknown.clone()],
        ),
        (
            "an unknown registry host",
            "no-such-registry.invalid/crius-test/busybox:latest".into(),
            Code::Unavailable,
            vec!["no-such-registry.invalid".into()],
        ),
        (
            "an empty name",
            String::new(),
            Code::InvalidArgument,
            vec![],
        ),
    ];
    let mut failures = Failures::default();
    for (case, name, code, words) in cases {
        let result = images
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: name.clone(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: None,
            })
            .await
            .map(|r| r.into_inner().image_ref);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        failures.check(case, result, code, &words);
        let listed = images
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .images;
        if !listed.is_empty() {
            failures.note(
                case,
                Some(format!("images listed after the failed pull: {listed:?}")),
            );
        }
    }
    failures.assert_none();
}

#[tokio::test]
async fn a_conflist_whose_plugin_type_is_a_path_is_not_used() {
    // A plugin outside every plugin dir that leaves a mark if it is ever run.
    let plugins = tempfile::tempdir_in(crius_e2e::TEST_BASE_DIR).unwrap();
    let outside = tempfile::tempdir_in(crius_e2e::TEST_BASE_DIR).unwrap();
    let mark = outside.path().join("ran");
    let evil = outside.path().join("evil");
    std::fs::write(
        &evil,
        format!("#!/bin/sh\ntouch {}\necho '{{}}'\n", mark.display()),
    )
    .unwrap();
    std::fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let escape = format!(
        "../{}/evil",
        outside.path().file_name().unwrap().to_str().unwrap()
    );
    let daemon = daemon_with_chain(plugins.path(), serde_json::json!([{ "type": escape }])).await;
    let (mut rt, _) = clients(&daemon).await;

    let status = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let network = status
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .expect("NetworkReady condition");
    println!("NetworkReady: {} {}", network.reason, network.message);
    assert!(!network.status, "the only conflist is refused");
    for word in ["10-chain.conflist", "plugin 1", &escape] {
        assert!(network.message.contains(word), "{network:?} names {word:?}");
    }

    let result = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config(&daemon, "evil-cni")),
            runtime_handler: String::new(),
        })
        .await;
    assert!(
        result.is_err(),
        "a pod without a usable network: {result:?}"
    );
    let mut failures = Failures::default();
    failures.note("refused pod", pod_leftovers(&daemon, &mut rt).await);
    failures.assert_none();
    assert!(!mark.exists(), "the plugin named by a path was run");
    let log = std::fs::read_to_string(&daemon.log_path).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("skipping CNI configuration file")
                && l.contains("10-chain.conflist")
                && l.contains(&escape)),
        "no log line names the refused file and its plugin"
    );
}

/// A script at `dir/name` with `mode`, for handlers that are broken in one way each.
fn handler_script(dir: &std::path::Path, name: &str, body: &str, mode: u32) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn unusable_runtime_handlers_are_reported_not_ready_and_refuse_pods() {
    let bins = tempfile::Builder::new()
        .prefix("crius-e2e-handlers-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let missing = bins.path().join("missing").display().to_string();
    let plain = handler_script(bins.path(), "plain", "exit 0", 0o644);
    let failing = handler_script(
        bins.path(),
        "failing",
        "echo probe says no >&2; exit 2",
        0o755,
    );
    // (handler, runtime_type, binary, words the reason must contain)
    let broken: [(&str, &str, &str, &[&str]); 4] = [
        (
            "gone",
            "oci",
            &missing,
            &["runtime binary", &missing, "not found"],
        ),
        (
            "plain",
            "oci",
            &plain,
            &["runtime binary", &plain, "not executable"],
        ),
        ("noprobe", "oci", &failing, &["probe", "probe says no"]),
        (
            "vmgone",
            "vm",
            &missing,
            &["shim binary", &missing, "not found"],
        ),
    ];
    let mut dropin = String::new();
    for (name, kind, path, _) in &broken {
        dropin.push_str(&format!(
            "[crius.runtime.runtimes.{name}]\nruntime_path = \"{path}\"\nruntime_type = \"{kind}\"\n"
        ));
    }
    let daemon = builder().config(&dropin).start().await.unwrap();
    let (mut rt, _) = clients(&daemon).await;
    let mut failures = Failures::default();

    let status = rt
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conditions = &status.status.as_ref().unwrap().conditions;
    let runtime_ready = conditions.iter().find(|c| c.r#type == "RuntimeReady");
    failures.note(
        "RuntimeReady",
        (!runtime_ready.is_some_and(|c| c.status))
            .then(|| format!("the default handler works, yet {runtime_ready:?}")),
    );
    let readiness = crius_e2e::parse_info(&status.info, "runtimeHandlers").unwrap();
    failures.note(
        "runc",
        (readiness["runc"]["ready"] != true).then(|| format!("runc not ready: {readiness}")),
    );
    for (name, _, _, words) in &broken {
        let entry = &readiness[*name];
        let reason = entry["reason"].as_str().unwrap_or_default();
        if entry["ready"] != false || words.iter().any(|w| !reason.contains(w)) {
            failures.note(
                name,
                format!("entry {entry} should say not ready: {words:?}"),
            );
        }
        let listed = status.runtime_handlers.iter().find(|h| h.name == *name);
        let features = listed.and_then(|h| h.features.as_ref());
        if features.is_some_and(|f| f.recursive_read_only_mounts || f.user_namespaces) {
            failures.note(
                name,
                format!("advertises features it cannot deliver: {listed:?}"),
            );
        }
        let config = pod_config(&daemon, &format!("on-{name}"));
        let result = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: name.to_string(),
            })
            .await;
        let mut want = vec![*name, "not ready"];
        want.extend_from_slice(words);
        failures.check(
            &format!("RunPodSandbox on {name}"),
            result,
            Code::FailedPrecondition,
            &want,
        );
        failures.note(name, pod_leftovers(&daemon, &mut rt).await);
    }
    // The pod that the default handler runs is still fine.
    let id = run_pod(&mut rt, &host_network(pod_config(&daemon, "fine"))).await;
    remove_pod(&mut rt, &id).await;
    failures.assert_none();
}

#[tokio::test]
async fn a_default_handler_that_fails_its_probe_makes_the_runtime_not_ready() {
    let bins = tempfile::Builder::new()
        .prefix("crius-e2e-handlers-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let failing = handler_script(bins.path(), "failing", "exit 7", 0o755);
    let dropin = format!(
        "[crius.runtime]\ndefault_runtime = \"broken\"\n[crius.runtime.runtimes.broken]\nruntime_path = \"{failing}\"\n"
    );
    let daemon = builder().config(&dropin).start().await.unwrap();
    let (mut rt, _) = clients(&daemon).await;
    let status = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let runtime = status
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap();
    assert!(!runtime.status, "{runtime:?}");
    assert_eq!(runtime.reason, "RuntimeNotReady");
    for word in ["\"broken\"", &failing, "exit status: 7"] {
        assert!(
            runtime.message.contains(word),
            "{word:?} not in {runtime:?}"
        );
    }
    // Not ready, the default handler advertises nothing; the other handlers are unaffected.
    let default = &status.runtime_handlers[0];
    assert_eq!(default.name, "");
    assert!(
        !default
            .features
            .as_ref()
            .unwrap()
            .recursive_read_only_mounts
    );
    let err = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config(&daemon, "refused")),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("\"broken\""), "{err:?}");
}
