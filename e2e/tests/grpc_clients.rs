//! gRPC clients that are not Go, in their default settings, get answers on the CRI socket.
//!
//! grpc-core clients (Python here) send the socket path as `:authority` on a Unix socket,
//! which the HTTP/2 layer under tonic refuses unless crius rewrites it (see
//! `crates/crius/src/h2_authority.rs`). The Python client is grpcio from PyPI, which
//! `e2e/run-all.sh` installs into a venv and names in `CRIUS_GRPCIO_PYTHON`; without it
//! these tests say they were skipped, and fail when `CI=true`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crius_e2e::{cri, CriusDaemon};
use prost::Message;

/// Where run-all.sh puts the venv when `CRIUS_GRPCIO_PYTHON` is not set.
const DEFAULT_PYTHON: &str = "/var/tmp/crius-grpcio/bin/python";

/// Calls each method with the given request bytes on one channel and prints, per call, a
/// JSON object: the status code's name and details, and the response bytes in hex.
const CLIENT: &str = r#"
import json, sys, grpc
target, authority = sys.argv[1], sys.argv[2]
options = [("grpc.default_authority", authority)] if authority else []
results = []
with grpc.insecure_channel(target, options=options) as channel:
    for method, request in json.load(sys.stdin):
        call = channel.unary_unary(method)
        try:
            response = call(bytes.fromhex(request), timeout=20)
            results.append({"code": "OK", "details": "", "response": response.hex()})
        except grpc.RpcError as err:
            results.append({"code": err.code().name, "details": err.details() or "", "response": ""})
print(json.dumps({"grpc": grpc.__version__, "results": results}))
"#;

/// The Python with grpcio, or None (after saying why) when the test is to be skipped.
fn grpcio_python() -> Option<PathBuf> {
    let python = std::env::var_os("CRIUS_GRPCIO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PYTHON));
    let works = Command::new(&python)
        .args(["-c", "import grpc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some(python);
    }
    let why = format!(
        "no grpcio at {} (e2e/run-all.sh installs it; or set CRIUS_GRPCIO_PYTHON)",
        python.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI needs grpcio: {why}");
    }
    println!("skipped: {why}");
    None
}

#[derive(Debug)]
struct Reply {
    code: String,
    details: String,
    response: Vec<u8>,
}

/// Runs the Python client against the daemon's socket with `calls` (method, request).
fn python_calls(
    python: &PathBuf,
    daemon: &CriusDaemon,
    authority: Option<&str>,
    calls: &[(&str, Vec<u8>)],
) -> Vec<Reply> {
    let target = format!("unix://{}", daemon.socket.display());
    let input: Vec<(&str, String)> = calls
        .iter()
        .map(|(method, request)| (*method, hex(request)))
        .collect();
    let mut child = Command::new(python)
        .args(["-c", CLIENT, &target, authority.unwrap_or("")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the Python client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Python client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log_tail(30)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("grpcio {}", parsed["grpc"]);
    parsed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Reply {
            code: r["code"].as_str().unwrap().to_string(),
            details: r["details"].as_str().unwrap().to_string(),
            response: unhex(r["response"].as_str().unwrap()),
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn ok<M: Message + Default>(reply: &Reply, what: &str) -> M {
    assert_eq!(
        reply.code, "OK",
        "{what} from grpcio: {} {}",
        reply.code, reply.details
    );
    M::decode(&reply.response[..]).unwrap_or_else(|err| panic!("{what}: bad response: {err}"))
}

#[tokio::test]
async fn python_grpcio_with_default_options_is_served() {
    let Some(python) = grpcio_python() else {
        return;
    };
    let daemon = CriusDaemon::start().await.unwrap();
    let calls = [
        (
            "/runtime.v1.RuntimeService/Version",
            cri::VersionRequest {
                version: "v1".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/runtime.v1.RuntimeService/Status",
            cri::StatusRequest { verbose: false }.encode_to_vec(),
        ),
        (
            "/runtime.v1.RuntimeService/ListPodSandbox",
            cri::ListPodSandboxRequest::default().encode_to_vec(),
        ),
        (
            "/runtime.v1.ImageService/ImageFsInfo",
            cri::ImageFsInfoRequest::default().encode_to_vec(),
        ),
        (
            "/runtime.v1.RuntimeService/PodSandboxStatus",
            cri::PodSandboxStatusRequest {
                pod_sandbox_id: "0123456789abcdef0123456789abcdef".into(),
                verbose: false,
            }
            .encode_to_vec(),
        ),
    ];
    let replies = python_calls(&python, &daemon, None, &calls);
    assert_eq!(replies.len(), calls.len());

    let version: cri::VersionResponse = ok(&replies[0], "Version");
    assert_eq!(version.runtime_name, "crius");
    assert_eq!(version.runtime_api_version, "v1");

    // The same answers a tonic client gets.
    let mut runtime = daemon.runtime_client().await.unwrap();
    let mut images = daemon.image_client().await.unwrap();
    let status: cri::StatusResponse = ok(&replies[1], "Status");
    let conditions = |s: &cri::StatusResponse| {
        let mut c: Vec<_> = s
            .status
            .as_ref()
            .expect("Status has no status")
            .conditions
            .iter()
            .map(|c| c.r#type.clone())
            .collect();
        c.sort();
        c
    };
    let tonic_status = runtime
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(conditions(&status).contains(&"RuntimeReady".to_string()));
    assert_eq!(conditions(&status), conditions(&tonic_status));

    let pods: cri::ListPodSandboxResponse = ok(&replies[2], "ListPodSandbox");
    let tonic_pods = runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pods, tonic_pods);

    let fs: cri::ImageFsInfoResponse = ok(&replies[3], "ImageFsInfo");
    assert!(!fs.image_filesystems.is_empty(), "{fs:?}");
    let mountpoints = |r: &cri::ImageFsInfoResponse| -> Vec<String> {
        r.image_filesystems
            .iter()
            .map(|f| {
                f.fs_id
                    .as_ref()
                    .map(|id| id.mountpoint.clone())
                    .unwrap_or_default()
            })
            .collect()
    };
    let tonic_fs = images
        .image_fs_info(cri::ImageFsInfoRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mountpoints(&fs), mountpoints(&tonic_fs));

    let unknown = &replies[4];
    assert_eq!(unknown.code, "NOT_FOUND", "{unknown:?}");
    assert!(
        unknown.details.contains("0123456789abcdef0123456789abcdef"),
        "the error names the pod: {unknown:?}"
    );
}

/// grpcurl and grpc-java send the path as it is, or other forms that are no URI
/// authority; a client that names a valid authority keeps it.
#[tokio::test]
async fn other_authority_forms_are_served() {
    let Some(python) = grpcio_python() else {
        return;
    };
    let daemon = CriusDaemon::start().await.unwrap();
    let version = (
        "/runtime.v1.RuntimeService/Version",
        cri::VersionRequest::default().encode_to_vec(),
    );
    let socket = daemon.socket.display().to_string();
    for authority in [
        socket.as_str(),
        &format!("unix:{socket}"),
        &format!("unix://{socket}"),
        "localhost",
        "crius.example:1234",
    ] {
        let replies = python_calls(
            &python,
            &daemon,
            Some(authority),
            std::slice::from_ref(&version),
        );
        let reply: cri::VersionResponse = ok(&replies[0], authority);
        assert_eq!(reply.runtime_name, "crius", "{authority}");
    }
    // The daemon is still serving everyone.
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut client = daemon.runtime_client().await.unwrap();
        client
            .version(cri::VersionRequest::default())
            .await
            .unwrap()
    })
    .await
    .unwrap();
}
