//! The daemon itself, driven as the kubelet and an operator would: start-up, identity,
//! readiness, the socket, signals, bad input, and crictl when it is available.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crius_e2e::peers::peer_or_skip;
use crius_e2e::{cri, describe_exit, parse_info, run_to_exit, CriusDaemon};
use nix::sys::signal::Signal;

/// A conflist the daemon can find; nothing runs it in these tests.
const CONFLIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "e2e-status",
  "plugins": [
    {"type": "bridge", "bridge": "cre2e-unused", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.203.255.0/24"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}"#;

type RuntimeClient = cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

async fn status(client: &mut RuntimeClient, verbose: bool) -> cri::StatusResponse {
    client
        .status(cri::StatusRequest { verbose })
        .await
        .expect("Status")
        .into_inner()
}

fn condition(status: &cri::StatusResponse, kind: &str) -> cri::RuntimeCondition {
    status
        .status
        .as_ref()
        .expect("Status has no status")
        .conditions
        .iter()
        .find(|c| c.r#type == kind)
        .unwrap_or_else(|| panic!("Status has no {kind} condition: {status:?}"))
        .clone()
}

#[tokio::test]
async fn version_names_crius_and_cri_v1() {
    let daemon = CriusDaemon::start().await.unwrap();
    let mut client = daemon.runtime_client().await.unwrap();
    let v = client
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "crius");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(!v.runtime_version.is_empty(), "{v:?}");
}

#[tokio::test]
async fn status_without_cni_config_is_runtime_ready_but_not_network_ready() {
    let daemon = CriusDaemon::start().await.unwrap();
    let mut client = daemon.runtime_client().await.unwrap();
    let status = status(&mut client, true).await;
    let runtime = condition(&status, "RuntimeReady");
    assert!(runtime.status, "{runtime:?}");
    let network = condition(&status, "NetworkReady");
    assert!(!network.status, "{network:?}");
    assert!(!network.reason.is_empty(), "{network:?}");
    assert!(!network.message.is_empty(), "{network:?}");

    // Verbose info carries the effective config, with this daemon's own dirs.
    let config = parse_info(&status.info, "config").unwrap();
    assert_eq!(
        config["crius"]["root"].as_str(),
        Some(daemon.root.to_str().unwrap()),
        "{config}"
    );
    assert_eq!(
        config["crius"]["api"]["listen"].as_str(),
        Some(daemon.socket.to_str().unwrap())
    );
}

/// The built-in runtime is handler `crius` out of the box, and the default one: found next
/// to the crius binary (the target dir holds both), probed like any handler, its
/// `features` in verbose Status and its user namespace support as the runtime itself
/// reports it. The same handler with a runtime found nowhere is not ready, with the
/// reason: as the default, it takes RuntimeReady with it (the node cannot run pods that
/// name no handler); with `default_runtime = "runc"` the node stays ready.
#[tokio::test]
async fn the_builtin_runtime_is_a_handler_out_of_the_box() {
    let runtime = crius_e2e::crius_binary()
        .unwrap()
        .with_file_name("crius-runtime");
    assert!(
        runtime.is_file(),
        "{} not built: cargo build --workspace --bins",
        runtime.display()
    );
    let daemon = CriusDaemon::start().await.unwrap();
    let mut client = daemon.runtime_client().await.unwrap();
    let st = status(&mut client, true).await;
    let config = parse_info(&st.info, "config").unwrap();
    assert_eq!(config["crius"]["runtime"]["default_runtime"], "crius");
    // The same file, however the target dir was spelled (CARGO_TARGET_DIR or e2e/../target).
    let found = config["crius"]["runtime"]["runtimes"]["crius"]["runtime_path"]
        .as_str()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|e| panic!("{p}: {e}")));
    assert_eq!(
        found,
        Some(std::fs::canonicalize(&runtime).unwrap()),
        "found next to crius: {config}"
    );
    let handlers = parse_info(&st.info, "runtimeHandlers").unwrap();
    let entry = &handlers["crius"];
    assert_eq!(entry["ready"], true, "{handlers}");
    // What the runtime itself says, read here the same way.
    let out = std::process::Command::new(&runtime)
        .arg("features")
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let features = &entry["features"];
    assert_eq!(
        features["namespaces"], doc["linux"]["namespaces"],
        "{entry}"
    );
    assert_eq!(features["mountOptions"], doc["mountOptions"], "{entry}");
    assert_eq!(
        features["idmapMounts"], doc["linux"]["mountExtensions"]["idmap"]["enabled"],
        "{entry}"
    );
    let listed = st
        .runtime_handlers
        .iter()
        .find(|h| h.name == "crius")
        .and_then(|h| h.features)
        .unwrap_or_else(|| panic!("crius not in {:?}", st.runtime_handlers));
    assert_eq!(
        serde_json::Value::Bool(listed.user_namespaces),
        features["userNamespaces"],
        "{entry}"
    );
    assert!(listed.recursive_read_only_mounts, "{listed:?}");
    // No user namespaces is said with the reason, never silently.
    if !listed.user_namespaces {
        assert!(features["userNamespacesReason"].is_string(), "{entry}");
    }

    // The runtime found nowhere: not ready, named. As the default handler it makes the
    // runtime not ready; with runc as the default the runtime as a whole stays ready.
    let absent = "[crius.runtime.runtimes.crius]\nruntime_path = \"crius-runtime-absent\"\n";
    for (default, runtime_ready) in [("crius", false), ("runc", true)] {
        let missing = CriusDaemon::builder()
            .config(absent)
            .config(&format!(
                "[crius.runtime]\ndefault_runtime = \"{default}\"\n"
            ))
            .start()
            .await
            .unwrap();
        let mut client = missing.runtime_client().await.unwrap();
        let st = status(&mut client, true).await;
        let ready = condition(&st, "RuntimeReady");
        assert_eq!(ready.status, runtime_ready, "default {default}: {ready:?}");
        if !runtime_ready {
            assert!(
                ready.message.contains("crius-runtime-absent"),
                "default {default}: {ready:?}"
            );
        }
        let handlers = parse_info(&st.info, "runtimeHandlers").unwrap();
        let reason = handlers["crius"]["reason"].as_str().unwrap_or_default();
        assert_eq!(handlers["crius"]["ready"], false, "{handlers}");
        assert!(
            reason.contains("crius-runtime-absent") && reason.contains("not found"),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn status_with_a_conflist_is_network_ready() {
    let daemon = CriusDaemon::builder()
        .cni_config("10-e2e.conflist", CONFLIST)
        .start()
        .await
        .unwrap();
    let mut client = daemon.runtime_client().await.unwrap();
    let status = status(&mut client, false).await;
    let network = condition(&status, "NetworkReady");
    assert!(network.status, "{network:?}");
    assert!(condition(&status, "RuntimeReady").status);
}

#[tokio::test]
async fn runtime_config_reports_the_cgroupfs_driver() {
    let daemon = CriusDaemon::start().await.unwrap();
    let mut client = daemon.runtime_client().await.unwrap();
    let reply = client
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    let linux = reply.linux.expect("RuntimeConfig has no linux part");
    assert_eq!(linux.cgroup_driver, cri::CgroupDriver::Cgroupfs as i32);
}

/// A kubelet newer than crius's CRI may call a method crius does not know, or send fields
/// it does not know. The method gets Unimplemented at once (which the kubelet treats as
/// "not supported", never a hang), unknown fields are skipped as protobuf wants, and the
/// daemon serves on.
#[tokio::test]
async fn calls_and_fields_of_a_newer_cri_get_answers_a_kubelet_can_act_on() {
    use tonic::codegen::http::uri::PathAndQuery;
    use tonic_prost::ProstCodec;

    /// A VersionRequest as a later CRI might send it, with a field this one lacks.
    #[derive(Clone, PartialEq, prost::Message)]
    struct LaterVersionRequest {
        #[prost(string, tag = "1")]
        version: String,
        #[prost(string, tag = "99")]
        added_later: String,
    }

    let daemon = CriusDaemon::start().await.unwrap();
    let channel = crius_e2e::connect(&daemon.socket).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    for path in [
        "/runtime.v1.RuntimeService/ResizeSomethingNew",
        "/runtime.v1.ImageService/PullImageLater",
        "/runtime.v2.RuntimeService/Version",
    ] {
        grpc.ready().await.unwrap();
        let call = grpc.unary(
            tonic::Request::new(cri::VersionRequest::default()),
            PathAndQuery::from_static(path),
            ProstCodec::<cri::VersionRequest, cri::VersionResponse>::default(),
        );
        let err = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer within 5 s"))
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented, "{path}: {err:?}");
    }

    grpc.ready().await.unwrap();
    let reply = grpc
        .unary(
            tonic::Request::new(LaterVersionRequest {
                version: "v1".into(),
                added_later: "ignored".into(),
            }),
            PathAndQuery::from_static("/runtime.v1.RuntimeService/Version"),
            ProstCodec::<LaterVersionRequest, cri::VersionResponse>::default(),
        )
        .await
        .expect("a Version call with an unknown field")
        .into_inner();
    assert_eq!(reply.runtime_api_version, "v1", "{reply:?}");
    assert!(!reply.runtime_name.is_empty(), "{reply:?}");
}

#[tokio::test]
async fn an_unbuilt_rpc_is_unimplemented_and_names_itself() {
    let daemon = CriusDaemon::start().await.unwrap();
    let mut client = daemon.runtime_client().await.unwrap();
    let err = client
        .checkpoint_pod(cri::CheckpointPodRequest {
            pod_sandbox_id: "abc".into(),
            output_path: "/tmp/x.tar".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
    assert!(err.message().contains("CheckpointPod"), "{err:?}");
}

#[tokio::test]
async fn a_second_daemon_on_the_same_socket_is_refused() {
    let daemon = CriusDaemon::start().await.unwrap();
    let out = run_to_exit(daemon.command(), Duration::from_secs(30)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "second daemon: {}",
        describe_exit(&out.status)
    );
    assert!(
        stderr.contains(&format!(
            "another crius is already serving {}",
            daemon.socket.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // The first one is untouched.
    let mut client = daemon.runtime_client().await.unwrap();
    client
        .version(cri::VersionRequest::default())
        .await
        .unwrap();
    assert!(daemon.socket.exists());
}

#[tokio::test]
async fn sigterm_stops_the_daemon_removes_the_socket_and_exits_zero() {
    let mut daemon = CriusDaemon::start().await.unwrap();
    assert!(daemon.socket.exists());
    daemon.signal(Signal::SIGTERM).unwrap();
    let status = daemon.wait_exit(Duration::from_secs(15)).await.unwrap();
    assert!(
        status.success(),
        "{}; log:\n{}",
        describe_exit(&status),
        daemon.log()
    );
    assert!(!daemon.socket.exists(), "socket left behind");
}

#[tokio::test]
async fn sigint_stops_the_daemon_too() {
    let mut daemon = CriusDaemon::start().await.unwrap();
    daemon.signal(Signal::SIGINT).unwrap();
    let status = daemon.wait_exit(Duration::from_secs(15)).await.unwrap();
    assert!(status.success(), "{}", describe_exit(&status));
    assert!(!daemon.socket.exists());
}

#[tokio::test]
async fn a_stale_socket_from_a_killed_daemon_is_replaced() {
    let mut daemon = CriusDaemon::start().await.unwrap();
    daemon.signal(Signal::SIGKILL).unwrap();
    daemon.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(
        daemon.socket.exists(),
        "SIGKILL cannot clean up, so the socket stays"
    );
    daemon.restart().await.unwrap();
    let mut client = daemon.runtime_client().await.unwrap();
    client
        .version(cri::VersionRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bad_config_key_stops_start_up_naming_file_line_and_key() {
    let mut daemon = CriusDaemon::builder()
        .config("[crius.api]\nlissten = \"/tmp/nowhere.sock\"\n")
        .spawn()
        .unwrap();
    let status = daemon.wait_exit(Duration::from_secs(15)).await.unwrap();
    assert_eq!(status.code(), Some(1), "{}", describe_exit(&status));
    let log = daemon.log();
    let dropin = daemon.config_dir.join("10-test.conf");
    assert!(
        log.contains(&format!("{}:2", dropin.display())),
        "no file:line in {log}"
    );
    assert!(log.contains("crius.api.lissten"), "no key in {log}");
    assert_eq!(log.trim().lines().count(), 1, "{log}");
    // Nothing half-made.
    assert!(!daemon.runroot.exists());
    assert!(!daemon.root.exists());
}

#[tokio::test]
async fn a_bad_config_value_stops_start_up() {
    let mut daemon = CriusDaemon::builder()
        .config("[crius.runtime]\ncgroup_manager = \"cgroupz\"\n")
        .spawn()
        .unwrap();
    let status = daemon.wait_exit(Duration::from_secs(15)).await.unwrap();
    assert!(!status.success());
    let log = daemon.log();
    assert!(log.contains("crius.runtime.cgroup_manager"), "{log}");
    assert!(log.contains("cgroupz"), "{log}");
}

#[tokio::test]
async fn a_socket_dir_that_cannot_be_made_is_a_one_line_error() {
    let mut daemon = CriusDaemon::builder()
        .arg("--listen")
        .arg("/proc/crius-e2e-no/crius.sock")
        .spawn()
        .unwrap();
    let status = daemon.wait_exit(Duration::from_secs(15)).await.unwrap();
    assert!(!status.success());
    let log = daemon.log();
    assert!(
        log.contains("cannot create socket directory /proc/crius-e2e-no"),
        "{log}"
    );
    assert_eq!(log.trim().lines().count(), 1, "{log}");
    assert!(!daemon.root.exists() && !daemon.runroot.exists());
}

#[tokio::test]
async fn a_non_root_start_is_refused() {
    let daemon = CriusDaemon::builder().build().unwrap();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ]);
    let inner = daemon.command();
    cmd.arg(inner.get_program()).args(inner.get_args());
    let out = run_to_exit(cmd, Duration::from_secs(30)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("crius must run as root"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        !daemon.runroot.exists(),
        "a refused start made {}",
        daemon.runroot.display()
    );
}

#[tokio::test]
async fn sd_notify_ready_is_sent_when_serving() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let receiver = UnixDatagram::bind(&notify_path).unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut daemon = CriusDaemon::builder()
        .env("NOTIFY_SOCKET", notify_path.to_str().unwrap())
        .start()
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = receiver.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    daemon.stop().await.unwrap();
    let n = receiver.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
}

async fn network_ready(client: &mut RuntimeClient) -> bool {
    condition(&status(client, false).await, "NetworkReady").status
}

#[tokio::test]
async fn sighup_applies_the_log_level_and_cni_dir_from_the_files() {
    let daemon = CriusDaemon::builder()
        .config("[crius]\nlog_level = \"info\"\n")
        .start()
        .await
        .unwrap();
    let mut client = daemon.runtime_client().await.unwrap();
    client
        .version(cri::VersionRequest::default())
        .await
        .unwrap();
    assert!(!network_ready(&mut client).await);
    let debug_lines = |log: &str| log.lines().filter(|l| l.contains("DEBUG")).count();
    assert_eq!(debug_lines(&daemon.log()), 0, "{}", daemon.log());

    let cni2 = daemon.dir.join("cni2");
    std::fs::create_dir(&cni2).unwrap();
    std::fs::write(cni2.join("10-e2e.conflist"), CONFLIST).unwrap();
    std::fs::write(
        daemon.config_dir.join("90-reload.conf"),
        format!(
            "[crius]\nlog_level = \"debug\"\n[crius.network]\nnetwork_dir = \"{}\"\n",
            cni2.display()
        ),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !network_ready(&mut client).await {
        assert!(
            std::time::Instant::now() < deadline,
            "CNI dir not reloaded; log:\n{}",
            daemon.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .version(cri::VersionRequest::default())
        .await
        .unwrap();
    assert!(
        debug_lines(&daemon.log()) > 0,
        "log level not reloaded:\n{}",
        daemon.log()
    );

    // A broken file on reload keeps the running config, and the daemon.
    std::fs::write(daemon.config_dir.join("91-broken.conf"), "[crius\n").unwrap();
    daemon.signal(Signal::SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(network_ready(&mut client).await);
    assert!(
        daemon.log().contains("config reload failed"),
        "{}",
        daemon.log_tail(10)
    );
}

#[tokio::test]
async fn json_log_format_writes_json_lines() {
    let mut daemon = CriusDaemon::builder()
        .arg("--log-format")
        .arg("json")
        .start()
        .await
        .unwrap();
    daemon.stop().await.unwrap();
    let log = daemon.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.get("level").is_some(), "{line}");
    }
}

#[tokio::test]
async fn crius_config_prints_the_effective_config() {
    let daemon = CriusDaemon::start().await.unwrap();
    let mut cmd = daemon.command();
    cmd.arg("config");
    let out = run_to_exit(cmd, Duration::from_secs(30)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        parsed["crius"]["root"].as_str(),
        Some(daemon.root.to_str().unwrap())
    );
    assert!(text.contains("# Unix socket serving the CRI"), "{text}");
}

/// Runs the crictl peer against `daemon`; `None` (the test skipped) when it is not built.
fn crictl(daemon: &CriusDaemon, args: &[&str]) -> Option<std::process::Output> {
    let crictl = peer_or_skip("CRICTL", "crictl_version_and_info_talk_to_crius")?;
    let endpoint = format!("unix://{}", daemon.socket.display());
    let out = std::process::Command::new(crictl)
        .args([
            "--runtime-endpoint",
            &endpoint,
            "--image-endpoint",
            &endpoint,
            "--timeout",
            "10s",
        ])
        .args(args)
        .output()
        .expect("cannot run crictl");
    Some(out)
}

#[tokio::test]
async fn crictl_version_and_info_talk_to_crius() {
    let daemon = CriusDaemon::start().await.unwrap();
    let Some(version) = crictl(&daemon, &["version"]) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&version.stderr)
    );
    assert!(stdout.contains("RuntimeName:  crius"), "{stdout}");
    assert!(stdout.contains("RuntimeApiVersion:  v1"), "{stdout}");

    let info = crictl(&daemon, &["info"]).unwrap();
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let conditions = json["status"]["conditions"]
        .as_array()
        .expect("no conditions");
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "RuntimeReady" && c["status"] == true),
        "{json}"
    );
    assert!(json.get("config").is_some(), "{json}");
}

fn wipe(daemon: &CriusDaemon, force: bool) -> std::process::Command {
    let mut cmd = daemon.command();
    cmd.arg("wipe");
    if force {
        cmd.arg("--force");
    }
    cmd
}

#[tokio::test]
async fn wipe_removes_root_and_runroot_only_when_forced_and_stopped() {
    let mut daemon = CriusDaemon::start().await.unwrap();
    let out = run_to_exit(wipe(&daemon, true), Duration::from_secs(30)).await;
    assert!(!out.status.success(), "wiped under a running daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("still serving"), "{stderr}");
    assert!(daemon.root.exists());

    daemon.stop().await.unwrap();
    // State with a mount in it, as a pod's rootfs or netns pin would leave.
    let lower = daemon.root.join("wipe-test/lower");
    let target = daemon.root.join("wipe-test/mounted");
    std::fs::create_dir_all(&lower).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(lower.join("file"), "x").unwrap();
    nix::mount::mount(
        Some(&lower),
        &target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();

    let out = run_to_exit(wipe(&daemon, false), Duration::from_secs(30)).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert!(target.join("file").exists(), "touched without --force");

    let out = run_to_exit(wipe(&daemon, true), Duration::from_secs(30)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!daemon.root.exists() && !daemon.runroot.exists());
    assert!(crius::mounts::mounts_under(&daemon.dir).unwrap().is_empty());
}

#[tokio::test]
async fn crius_status_reports_readiness_through_the_socket() {
    let daemon = CriusDaemon::builder()
        .cni_config("10-e2e.conflist", CONFLIST)
        .start()
        .await
        .unwrap();
    let mut cmd = daemon.command();
    cmd.arg("status");
    let out = run_to_exit(cmd, Duration::from_secs(30)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("runtime: crius "), "{stdout}");
    assert!(stdout.contains("RuntimeReady: true"), "{stdout}");
    assert!(stdout.contains("NetworkReady: true"), "{stdout}");

    // Without a network the daemon is up but not ready: exit 1, and the reason.
    std::fs::remove_file(daemon.cni_dir.join("10-e2e.conflist")).unwrap();
    let mut cmd = daemon.command();
    cmd.args(["status", "--verbose"]);
    let out = run_to_exit(cmd, Duration::from_secs(30)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("NetworkReady: false ("), "{stdout}");
    assert!(
        stdout.contains("config: {"),
        "verbose info missing: {stdout}"
    );
}

#[tokio::test]
async fn crius_status_without_a_daemon_says_it_cannot_connect() {
    let daemon = CriusDaemon::builder().build().unwrap();
    let mut cmd = daemon.command();
    cmd.arg("status");
    let out = run_to_exit(cmd, Duration::from_secs(30)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("cannot connect to {}", daemon.socket.display())),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
