//! The real kubelet (v1.37) using what its CRI added beyond the older API: an image
//! volume with a sub path (ImageVolume, GA), a container stop signal
//! (ContainerStopSignals) and pressure stall figures in its CRI stats (KubeletPSI with
//! PodAndContainerStatsFromCRI), end to end through crius, with the kubelet listing
//! through the Stream* RPCs (CRIListStreaming).

mod common;

use std::time::{Duration, Instant};

use common::busybox;
use crius_e2e::cri;
use crius_e2e::kubelet::Kubelet;

/// How long a pod may take to come up under the kubelet (image pulls included).
const POD_START: Duration = Duration::from_secs(90);

#[tokio::test]
async fn kubelet_mounts_an_image_volume_and_stops_with_the_pods_stop_signal() {
    let test = "kubelet_mounts_an_image_volume_and_stops_with_the_pods_stop_signal";
    let Some(kubelet) = Kubelet::builder()
        .feature_gate("ContainerStopSignals", true)
        .feature_gate("PodAndContainerStatsFromCRI", true)
        .feature_gate("CRIListStreaming", true)
        .start_or_skip(test)
        .await
    else {
        return;
    };
    let marks = kubelet.dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let multilayer = format!("{}/crius-test/multilayer:latest", common::registry());
    // As PID 1, sh ignores SIGTERM: only the USR1 trap ends it before the 60 s grace.
    let script = "trap 'echo usr1 > /marks/signal; exit 0' USR1; \
                  while true; do sleep 0.1; done";
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: imagevol
  namespace: e2e
spec:
  os: {{name: linux}}
  terminationGracePeriodSeconds: 60
  volumes:
  - name: data
    image: {{reference: "{multilayer}", pullPolicy: IfNotPresent}}
  - name: marks
    hostPath: {{path: "{marks}"}}
  containers:
  - name: reader
    image: {busybox}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {script:?}]
    lifecycle: {{stopSignal: SIGUSR1}}
    volumeMounts:
    - {{name: data, mountPath: /data}}
    - {{name: data, mountPath: /opaque, subPath: opaque}}
    - {{name: marks, mountPath: /marks}}
"#,
        marks = marks.display(),
        busybox = busybox(),
    );
    kubelet.write_manifest("imagevol", &manifest).unwrap();
    let pod = kubelet.wait_running("imagevol", POD_START).await.unwrap();
    let id = pod.container("reader").unwrap().cri_id().to_string();
    let mut rt = kubelet.crius.runtime_client().await.unwrap();

    // The image's merged layers, read-only; the sub path is the image's /opaque.
    assert_eq!(
        common::exec_ok(&mut rt, &id, &["cat", "/data/etc/crius-layer"]).await,
        "zstd\n"
    );
    assert_eq!(
        common::exec_ok(&mut rt, &id, &["ls", "/opaque"]).await,
        "upper\n"
    );
    let out = common::try_exec(&mut rt, &id, &["touch", "/data/x"], 10)
        .await
        .unwrap();
    assert_ne!(out.exit_code, 0, "the image volume took a write");
    let status = common::container_status(&mut rt, &id).await;
    assert_eq!(status.stop_signal(), cri::Signal::Sigusr1, "{status:?}");
    let image = status
        .mounts
        .iter()
        .find(|m| m.container_path == "/opaque")
        .and_then(|m| m.image.clone())
        .expect("the /opaque mount as an image volume");
    assert!(!image.image.is_empty(), "{status:?}");

    // /stats/summary takes the container's PSI from crius's CRI stats (the kernel has
    // pressure files for it here: runc makes its cgroup v2 part on hybrid hosts too).
    let pod_name = kubelet.static_pod_name("imagevol");
    let psi = common::eventually("PSI in /stats/summary", Duration::from_secs(30), || {
        let summary = kubelet.stats_summary();
        let pod_name = pod_name.clone();
        async move {
            let summary = summary.await.ok()?;
            let pod = summary["pods"]
                .as_array()?
                .iter()
                .find(|p| p["podRef"]["name"] == pod_name.as_str())?
                .clone();
            let ctr = pod["containers"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == "reader")?
                .clone();
            ctr["cpu"]["psi"].is_object().then_some(ctr)
        }
    })
    .await;
    for resource in ["cpu", "memory", "io"] {
        let some = &psi[resource]["psi"]["some"];
        assert!(some["avg10"].is_number(), "{resource}: {psi}");
        assert!(some["total"].is_u64(), "{resource}: {psi}");
    }

    // Removing the pod stops it with SIGUSR1: the trap runs at once, well within the
    // 60 s grace period that SIGTERM (ignored by sh as PID 1) would have used up.
    let started = Instant::now();
    kubelet.remove_manifest("imagevol").unwrap();
    let mark = marks.join("signal");
    let text = common::eventually("the trap's mark", Duration::from_secs(45), || {
        let text = std::fs::read_to_string(&mark).ok();
        async move { text.filter(|t| t.ends_with('\n')) }
    })
    .await;
    assert_eq!(text, "usr1\n");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopping took {:?}",
        started.elapsed()
    );
    let st = common::wait_state(
        &mut rt,
        &id,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(st.exit_code, 0, "{st:?}");
    kubelet
        .wait_gone("imagevol", Duration::from_secs(45))
        .await
        .unwrap();
    // The kubelet listed through the streaming RPCs (it falls back to List* for good
    // after one Unimplemented, so these calls mean crius served them).
    let log = kubelet.crius.log();
    for rpc in ["StreamPodSandboxes", "StreamContainers"] {
        assert!(
            log.contains(&format!("method=\"{rpc}\"")),
            "the kubelet never called {rpc}"
        );
    }
    kubelet.assert_no_unexplained_cri_errors(&[Kubelet::VERSION_CANCELED, Kubelet::STATS_PROBE]);
}
