//! Guards on the wire contract: field numbers of what is new since the CRI of
//! Kubernetes 1.32, the method paths the kubelet calls, and records written by older
//! crius versions.

use std::sync::{Arc, Mutex};

use prost::Message;

use crate::v1::*;

/// The protobuf key of a field: number and wire type, as a varint.
fn key(number: u32, wire_type: u8) -> Vec<u8> {
    let mut v = (number << 3) | u32::from(wire_type);
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

const VARINT: u8 = 0;
const LEN: u8 = 2;

fn varint_field(number: u32, value: u8) -> Vec<u8> {
    let mut out = key(number, VARINT);
    out.push(value);
    out
}

fn len_field(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = key(number, LEN);
    out.push(u8::try_from(payload.len()).unwrap());
    out.extend_from_slice(payload);
    out
}

#[test]
fn new_fields_have_their_cri_numbers_on_the_wire() {
    // ContainerConfig.stop_signal = 18, SIGNAL_SIGUSR1 = 29.
    let cfg = ContainerConfig {
        stop_signal: Signal::Sigusr1 as i32,
        ..Default::default()
    };
    assert_eq!(cfg.encode_to_vec(), varint_field(18, 29));

    // ContainerStatus.stop_signal = 19, SIGNAL_SIGQUIT = 18.
    let st = ContainerStatus {
        stop_signal: Signal::Sigquit as i32,
        ..Default::default()
    };
    assert_eq!(st.encode_to_vec(), varint_field(19, 18));

    // Mount.image_sub_path = 10, Mount.mount_options = 11.
    let m = Mount {
        image_sub_path: "etc".into(),
        mount_options: vec!["noatime".into()],
        ..Default::default()
    };
    let mut want = len_field(10, b"etc");
    want.extend(len_field(11, b"noatime"));
    assert_eq!(m.encode_to_vec(), want);

    // ImageSpec.image_ref = 20.
    let spec = ImageSpec {
        image_ref: "sha256:ab".into(),
        ..Default::default()
    };
    assert_eq!(spec.encode_to_vec(), len_field(20, b"sha256:ab"));

    // UpdatePodSandboxResourcesRequest: id 1, overhead 2, resources 3.
    let req = UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: "p".into(),
        overhead: Some(LinuxContainerResources {
            cpu_shares: 2,
            ..Default::default()
        }),
        resources: Some(LinuxContainerResources {
            cpu_shares: 4,
            ..Default::default()
        }),
    };
    let mut want = len_field(1, b"p");
    want.extend(len_field(2, &varint_field(3, 2)));
    want.extend(len_field(3, &varint_field(3, 4)));
    assert_eq!(req.encode_to_vec(), want);

    // RuntimeFeatures: user_namespaces_host_network 2, mount_options 3.
    let f = RuntimeFeatures {
        user_namespaces_host_network: true,
        mount_options: true,
        ..Default::default()
    };
    let mut want = varint_field(2, 1);
    want.extend(varint_field(3, 1));
    assert_eq!(f.encode_to_vec(), want);

    // ContainerStats.io = 6 and IoUsage.timestamp = 1.
    let s = ContainerStats {
        io: Some(IoUsage {
            timestamp: 5,
            psi: None,
        }),
        ..Default::default()
    };
    assert_eq!(s.encode_to_vec(), len_field(6, &varint_field(1, 5)));
}

#[test]
fn a_request_with_every_new_field_survives_a_round_trip() {
    let psi = PsiStats {
        full: Some(PsiData {
            total: 12,
            avg10: 0.5,
            avg60: 1.5,
            avg300: 2.5,
        }),
        some: Some(PsiData {
            total: 40,
            ..Default::default()
        }),
    };
    let cfg = ContainerConfig {
        stop_signal: Signal::Sigrtmaxminus1 as i32,
        // Env values are bytes now: not every value is UTF-8.
        envs: vec![KeyValue {
            key: "RAW".into(),
            value: vec![0xff, 0x00, b'a'],
        }],
        mounts: vec![Mount {
            container_path: "/data".into(),
            image: Some(ImageSpec {
                image: "registry.local/data:1".into(),
                image_ref: "sha256:0123".into(),
                ..Default::default()
            }),
            image_sub_path: "srv/www".into(),
            mount_options: vec!["nosuid".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let back = ContainerConfig::decode(cfg.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, cfg);
    assert_eq!(back.stop_signal(), Signal::Sigrtmaxminus1);

    let stats = ContainerStats {
        cpu: Some(CpuUsage {
            psi: Some(psi),
            ..Default::default()
        }),
        memory: Some(MemoryUsage {
            psi: Some(psi),
            ..Default::default()
        }),
        io: Some(IoUsage {
            timestamp: 9,
            psi: Some(psi),
        }),
        ..Default::default()
    };
    let back = ContainerStats::decode(stats.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, stats);
}

#[test]
fn signal_names_are_the_kernel_names() {
    assert_eq!(Signal::RuntimeDefault.signal_name(), None);
    assert_eq!(Signal::Sigterm.signal_name(), Some("SIGTERM"));
    assert_eq!(Signal::Sigrtmin.signal_name(), Some("SIGRTMIN"));
    assert_eq!(Signal::Sigrtmaxminus1.signal_name(), Some("SIGRTMAXMINUS1"));
    assert_eq!(Signal::try_from(23), Ok(Signal::Sigterm));
}

#[test]
fn a_record_written_before_the_new_fields_still_loads() {
    // The JSON an older crius wrote for a container config: env value as a string, no
    // stop_signal, no image_sub_path.
    let old = r#"{
        "metadata": {"name": "c", "attempt": 0},
        "envs": [{"key": "PATH", "value": "/bin"}],
        "mounts": [{"container_path": "/x", "host_path": "/y", "readonly": true}],
        "labels": {}
    }"#;
    let cfg: ContainerConfig = serde_json::from_str(old).unwrap();
    assert_eq!(cfg.envs[0].value, b"/bin");
    assert_eq!(cfg.stop_signal, 0);
    assert!(cfg.mounts[0].readonly);
    assert_eq!(cfg.mounts[0].image_sub_path, "");

    // Written again, a UTF-8 env value stays a string; other bytes round-trip too.
    let mut cfg = cfg;
    cfg.envs.push(KeyValue {
        key: "RAW".into(),
        value: vec![0xfe, 0x41],
    });
    let json = serde_json::to_value(&cfg).unwrap();
    assert_eq!(json["envs"][0]["value"], "/bin");
    let back: ContainerConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn auth_config_debug_hides_secrets() {
    let auth = AuthConfig {
        username: "alice".into(),
        password: "hunter2".into(),
        auth: "YWxpY2U6aHVudGVyMg==".into(),
        identity_token: "tok".into(),
        ..Default::default()
    };
    let shown = format!("{auth:?}");
    assert!(shown.contains("alice"), "{shown}");
    for secret in ["hunter2", "YWxpY2U6aHVudGVyMg==", "tok\""] {
        assert!(!shown.contains(secret), "{shown} shows {secret}");
    }
}

/// A client transport that records each call's path and fails it.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>> for Recorder {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = tonic::codegen::StdError;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        self.0.lock().unwrap().push(req.uri().path().to_string());
        std::future::ready(Err("recorded".into()))
    }
}

#[tokio::test]
async fn method_paths_are_the_cri_ones() {
    use image_service_client::ImageServiceClient;
    use runtime_service_client::RuntimeServiceClient;

    let rec = Recorder::default();
    let mut rt = RuntimeServiceClient::new(rec.clone());
    let mut im = ImageServiceClient::new(rec.clone());
    macro_rules! call {
        ($client:ident . $method:ident) => {
            assert!($client
                .$method(tonic::Request::new(Default::default()))
                .await
                .is_err());
        };
    }
    call!(rt.version);
    call!(rt.run_pod_sandbox);
    call!(rt.stop_pod_sandbox);
    call!(rt.remove_pod_sandbox);
    call!(rt.pod_sandbox_status);
    call!(rt.list_pod_sandbox);
    call!(rt.stream_pod_sandboxes);
    call!(rt.create_container);
    call!(rt.start_container);
    call!(rt.stop_container);
    call!(rt.remove_container);
    call!(rt.list_containers);
    call!(rt.stream_containers);
    call!(rt.container_status);
    call!(rt.update_container_resources);
    call!(rt.reopen_container_log);
    call!(rt.exec_sync);
    call!(rt.exec);
    call!(rt.attach);
    call!(rt.port_forward);
    call!(rt.container_stats);
    call!(rt.list_container_stats);
    call!(rt.stream_container_stats);
    call!(rt.pod_sandbox_stats);
    call!(rt.list_pod_sandbox_stats);
    call!(rt.stream_pod_sandbox_stats);
    call!(rt.update_runtime_config);
    call!(rt.status);
    call!(rt.checkpoint_container);
    call!(rt.checkpoint_pod);
    call!(rt.restore_pod);
    call!(rt.get_container_events);
    call!(rt.list_metric_descriptors);
    call!(rt.list_pod_sandbox_metrics);
    call!(rt.stream_pod_sandbox_metrics);
    call!(rt.runtime_config);
    call!(rt.update_pod_sandbox_resources);
    call!(im.list_images);
    call!(im.stream_images);
    call!(im.image_status);
    call!(im.pull_image);
    call!(im.remove_image);
    call!(im.image_fs_info);

    let runtime = [
        "Version",
        "RunPodSandbox",
        "StopPodSandbox",
        "RemovePodSandbox",
        "PodSandboxStatus",
        "ListPodSandbox",
        "StreamPodSandboxes",
        "CreateContainer",
        "StartContainer",
        "StopContainer",
        "RemoveContainer",
        "ListContainers",
        "StreamContainers",
        "ContainerStatus",
        "UpdateContainerResources",
        "ReopenContainerLog",
        "ExecSync",
        "Exec",
        "Attach",
        "PortForward",
        "ContainerStats",
        "ListContainerStats",
        "StreamContainerStats",
        "PodSandboxStats",
        "ListPodSandboxStats",
        "StreamPodSandboxStats",
        "UpdateRuntimeConfig",
        "Status",
        "CheckpointContainer",
        "CheckpointPod",
        "RestorePod",
        "GetContainerEvents",
        "ListMetricDescriptors",
        "ListPodSandboxMetrics",
        "StreamPodSandboxMetrics",
        "RuntimeConfig",
        "UpdatePodSandboxResources",
    ];
    let image = [
        "ListImages",
        "StreamImages",
        "ImageStatus",
        "PullImage",
        "RemoveImage",
        "ImageFsInfo",
    ];
    let want: Vec<String> = runtime
        .iter()
        .map(|m| format!("/runtime.v1.RuntimeService/{m}"))
        .chain(
            image
                .iter()
                .map(|m| format!("/runtime.v1.ImageService/{m}")),
        )
        .collect();
    assert_eq!(*rec.0.lock().unwrap(), want);

    // The servers route on the same names.
    assert_eq!(
        runtime_service_server::SERVICE_NAME,
        "runtime.v1.RuntimeService"
    );
    assert_eq!(
        image_service_server::SERVICE_NAME,
        "runtime.v1.ImageService"
    );
}
