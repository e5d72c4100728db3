//! CDI devices and OCI hooks, through the CRI socket and the real runtime: a CDI spec and
//! a hooks dir of the test's own (the daemon's `cdi_spec_dirs` and `hooks_dir` point at
//! them), a hook script that saves the container state the runtime gives it on stdin, and
//! the bad inputs (unknown device, a spec that does not parse, a spec naming a device
//! twice, a hook with a relative path), each a clear gRPC error that leaves nothing.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use crius_e2e::{cri, CriusDaemon};

/// The test's CDI spec dir, hooks dir and hook output dir, removed on drop.
struct HostFiles {
    dir: tempfile::TempDir,
}

impl HostFiles {
    fn new() -> HostFiles {
        let dir = tempfile::Builder::new()
            .prefix("crius-e2e-cdi-")
            .tempdir_in(crius_e2e::TEST_BASE_DIR)
            .expect("test dir");
        for d in ["cdi", "hooks", "out", "data"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        HostFiles { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A drop-in pointing the daemon at the test's dirs only.
    fn dropin(&self) -> String {
        format!(
            "[crius.runtime]\ncdi_spec_dirs = [\"{}\"]\nhooks_dir = [\"{}\"]\n",
            self.path("cdi").display(),
            self.path("hooks").display()
        )
    }

    /// The states the hook saved for container `id`, called with first argument `tag`.
    fn states(&self, tag: &str, id: &str) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.path("out")).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&format!("{tag}-")) || !name.ends_with(".json") {
                continue;
            }
            let text = std::fs::read_to_string(e.path()).unwrap();
            let state: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("hook state {name} is not JSON ({err}): {text:?}"));
            if state["id"] == id {
                out.push(state);
            }
        }
        out
    }
}

/// A hook that saves its stdin (the OCI state) as `OUT/TAG-PID.json`, TAG its first argument.
fn write_hook_script(path: &Path, out: &Path) {
    let script = format!(
        "#!/bin/sh\nset -e\ncat > \"{out}/$1-$$.tmp\"\nmv \"{out}/$1-$$.tmp\" \"{out}/$1-$$.json\"\n",
        out = out.display()
    );
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn cdi_spec(files: &HostFiles) -> String {
    format!(
        r#"cdiVersion: "0.7.0"
kind: crius.test/dev
containerEdits:
  env: ["CRIUS_CDI_VENDOR=crius-test"]
devices:
  - name: null0
    containerEdits:
      env: ["CRIUS_CDI_DEVICE=null0"]
      deviceNodes:
        - path: /dev/crius-null
          hostPath: /dev/null
      mounts:
        - hostPath: {data}
          containerPath: /cdi-data
          options: [rbind, ro]
      hooks:
        - hookName: createRuntime
          path: {hook}
          args: [hook.sh, cdi-createRuntime]
"#,
        data = files.path("data").display(),
        hook = files.path("hook.sh").display()
    )
}

fn hook_file(files: &HostFiles) -> String {
    serde_json::json!({
        "version": "1.0.0",
        "hook": {"path": files.path("hook.sh"), "args": ["hook.sh", "hooksd"], "timeout": 20},
        "when": {"annotations": {"^crius\\.e2e/hook$": "^yes$"}},
        "stages": ["createRuntime", "poststop"]
    })
    .to_string()
}

async fn daemon_with(files: &HostFiles) -> CriusDaemon {
    builder()
        .config(&files.dropin())
        .start()
        .await
        .expect("daemon")
}

async fn assert_no_container_left(daemon: &CriusDaemon, rt: &mut Runtime, expected: usize) {
    let ctrs = rt
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(ctrs.len(), expected, "containers listed: {ctrs:?}");
    let dirs = dir_entries(&daemon.root.join("containers"));
    assert_eq!(dirs.len(), expected, "container dirs: {dirs:?}");
    assert_eq!(
        dir_entries(&daemon.runroot.join("containers")).len(),
        expected
    );
}

#[tokio::test]
async fn a_cdi_device_and_a_hook_reach_the_container_through_the_runtime() {
    let files = HostFiles::new();
    write_hook_script(&files.path("hook.sh"), &files.path("out"));
    std::fs::write(files.path("data/proof"), "from-the-host\n").unwrap();
    std::fs::write(files.path("cdi/crius-test.yaml"), cdi_spec(&files)).unwrap();
    std::fs::write(files.path("hooks/10-proof.json"), hook_file(&files)).unwrap();
    let daemon = daemon_with(&files).await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let pod_cfg = host_network(pod_config(&daemon, "cdi"));
    let pod = run_pod(&mut rt, &pod_cfg).await;

    // By the CRI field, with the annotation the hooks.d hook wants.
    let mut cfg = shell("with-cdi", "sleep 600");
    cfg.cdi_devices = vec![cri::CdiDevice {
        name: "crius.test/dev=null0".into(),
    }];
    cfg.annotations
        .insert("crius.e2e/hook".into(), "yes".into());
    let id = create(&mut rt, &pod, &pod_cfg, cfg).await;
    // createRuntime hooks ran inside `runc create`, so before CreateContainer returned.
    // The hook names its state file after its first argument.
    for stage in ["hooksd", "cdi-createRuntime"] {
        let states = files.states(stage, &id);
        assert_eq!(states.len(), 1, "{stage} hook states for {id}: {states:?}");
        let s = &states[0];
        assert!(s["pid"].as_u64().is_some_and(|p| p > 0), "{stage}: {s}");
        assert_eq!(s["status"], "creating", "{stage}: {s}");
        assert!(s["bundle"].as_str().is_some_and(|b| b.contains(&id)), "{s}");
        assert_eq!(s["annotations"]["crius.e2e/hook"], "yes", "{s}");
    }
    start(&mut rt, &id).await;
    let dev = exec_ok(&mut rt, &id, &["ls", "-ln", "/dev/crius-null"]).await;
    assert!(dev.starts_with('c'), "not a char device: {dev}");
    assert!(dev.contains("1,") && dev.contains(" 3 "), "not 1:3: {dev}");
    // The device cgroup lets the container write to it.
    exec_ok(&mut rt, &id, &["sh", "-c", "echo x > /dev/crius-null"]).await;
    let env = exec_ok(&mut rt, &id, &["env"]).await;
    assert!(env.contains("CRIUS_CDI_DEVICE=null0"), "{env}");
    assert!(env.contains("CRIUS_CDI_VENDOR=crius-test"), "{env}");
    let proof = exec_ok(&mut rt, &id, &["cat", "/cdi-data/proof"]).await;
    assert_eq!(proof, "from-the-host\n");
    let ro = try_exec(&mut rt, &id, &["touch", "/cdi-data/x"], 10)
        .await
        .unwrap();
    assert_ne!(ro.exit_code, 0, "the CDI mount is read-only");

    // By annotation, without the hook's annotation: the device, no hooks.d hook.
    let mut cfg = shell("by-annotation", "sleep 600");
    cfg.annotations = HashMap::from([(
        "cdi.k8s.io/e2e".to_string(),
        "crius.test/dev=null0".to_string(),
    )]);
    let other = run_container(&mut rt, &pod, &pod_cfg, cfg).await;
    exec_ok(&mut rt, &other, &["test", "-c", "/dev/crius-null"]).await;
    assert_eq!(files.states("hooksd", &other).len(), 0);
    assert_eq!(files.states("cdi-createRuntime", &other).len(), 1);

    // poststop runs when the runtime deletes the stopped container.
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    let stopped = eventually("the poststop hook", Duration::from_secs(20), || {
        let s = files.states("hooksd", &id);
        async move { s.into_iter().find(|s| s["status"] == "stopped") }
    })
    .await;
    assert_eq!(stopped["annotations"]["crius.e2e/hook"], "yes", "{stopped}");

    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn bad_cdi_devices_and_hooks_are_clear_errors_that_leave_nothing() {
    let files = HostFiles::new();
    write_hook_script(&files.path("hook.sh"), &files.path("out"));
    std::fs::write(files.path("cdi/crius-test.yaml"), cdi_spec(&files)).unwrap();
    let daemon = daemon_with(&files).await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let pod_cfg = host_network(pod_config(&daemon, "cdi-bad"));
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let try_create = |name: &str, devices: &[&str]| {
        let mut cfg = shell(name, "sleep 600");
        cfg.cdi_devices = devices
            .iter()
            .map(|d| cri::CdiDevice {
                name: d.to_string(),
            })
            .collect();
        cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cfg),
            sandbox_config: Some(pod_cfg.clone()),
        }
    };

    let err = rt
        .create_container(try_create("unknown", &["crius.test/dev=nope"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(
        err.message()
            .contains("unknown CDI device crius.test/dev=nope"),
        "{err:?}"
    );
    let err = rt
        .create_container(try_create("unqualified", &["null0"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    std::fs::write(files.path("cdi/broken.yaml"), "cdiVersion: [\n").unwrap();
    std::fs::write(
        files.path("cdi/twice.json"),
        r#"{"cdiVersion":"0.3.0","kind":"crius.test/twice","devices":[{"name":"d"},{"name":"d"}]}"#,
    )
    .unwrap();
    for (device, want) in [
        ("crius.test/broken=x", "broken.yaml: does not parse"),
        ("crius.test/twice=d", "twice.json: names device \"d\" twice"),
    ] {
        let err = rt
            .create_container(try_create("bad-spec", &[device]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains(want), "{device}: {err:?}");
    }
    // The good device of the same dir still works beside the broken files.
    let good = create(
        &mut rt,
        &pod,
        &pod_cfg,
        try_create("good", &["crius.test/dev=null0"])
            .config
            .unwrap(),
    )
    .await;

    std::fs::write(
        files.path("hooks/20-relative.json"),
        r#"{"version":"1.0.0","hook":{"path":"bin/true"},"when":{"always":true},"stages":["prestart"]}"#,
    )
    .unwrap();
    let err = rt
        .create_container(try_create("bad-hook", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("20-relative.json") && err.message().contains("not absolute"),
        "{err:?}"
    );
    // Nothing ran: no hook state for anything but the good container.
    let states = dir_entries(&files.path("out"));
    assert!(
        states.iter().all(|s| s.starts_with("cdi-createRuntime-")),
        "{states:?}"
    );
    assert_no_container_left(&daemon, &mut rt, 1).await;
    rt.remove_container(cri::RemoveContainerRequest { container_id: good })
        .await
        .unwrap();
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}
