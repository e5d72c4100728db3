//! Other local users get nothing from crius's state: the store, the records, a container's
//! rootfs and its monitor's socket are root's alone, whatever umask crius was started with
//! (this test binary runs its daemons under umask 000), and dirs an older version left
//! wider are tightened at start. Container logs are never written through a symlink.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use crius_e2e::cri;

/// The uid and gid of `nobody`.
const NOBODY: &str = "65534";

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Runs `args` as nobody (no groups); its exit success and stderr.
fn as_nobody(args: &[&str]) -> (bool, String) {
    let out = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .args(args)
        .output()
        .expect("run setpriv");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A Python command that connects to the Unix socket `name` in `dir` (entered first: the
/// whole path is longer than sun_path allows).
fn connect_args(dir: &Path, name: &str) -> Vec<String> {
    vec![
        "/usr/bin/python3".into(),
        "-c".into(),
        "import os,socket,sys; os.chdir(sys.argv[1]); \
         socket.socket(socket.AF_UNIX).connect(sys.argv[2])"
            .into(),
        dir.display().to_string(),
        name.into(),
    ]
}

/// The first file (not dir, not link) below `dir`, depth first.
fn some_file(dir: &Path) -> Option<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in &entries {
        let t = e.file_type().ok()?;
        if t.is_file() {
            return Some(e.path());
        }
    }
    entries
        .iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| some_file(&e.path()))
}

/// Every daemon of this binary starts under umask 000 (it inherits ours), the worst an
/// operator's shell could give it.
fn umask_000() {
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
}

#[tokio::test]
async fn other_users_get_nothing_from_the_store_even_under_umask_000() {
    umask_000();
    let mut f = pod_fixture("private").await;
    // The test's own dir is open to all, so a refusal below comes from crius's dirs.
    std::fs::set_permissions(&f.daemon.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (root, run) = (f.daemon.root.clone(), f.daemon.runroot.clone());

    // An older install's wide dirs are tightened at start.
    f.daemon.stop().await.expect("stop daemon");
    for d in [&root, &root.join("images"), &run.join("containers")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    f.daemon.restart().await.expect("restart daemon");
    (f.rt, f.images) = clients(&f.daemon).await;

    let id = f.run(shell("secret", "sleep 300")).await;
    let done = f.run(shell("done", "true")).await;
    wait_state(
        &mut f.rt,
        &done,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;

    let mut wrong = Vec::new();
    let mut expect = |path: PathBuf, want: u32| {
        let got = mode(&path);
        if got != want {
            wrong.push(format!("{}: {got:o}, wanted {want:o}", path.display()));
        }
    };
    expect(run.clone(), 0o711);
    expect(root.clone(), 0o700);
    for d in ["images", "records", "pods", "containers"] {
        expect(root.join(d), 0o700);
    }
    for d in ["pods", "containers", "netns"] {
        expect(run.join(d), 0o700);
    }
    let record = root.join(format!("records/containers/{id}.json"));
    expect(record.clone(), 0o600);
    let monitor_dir = run.join("containers").join(&id);
    expect(monitor_dir.clone(), 0o700);
    let socket = monitor_dir.join("monitor.sock");
    expect(socket.clone(), 0o600);
    expect(monitor_dir.join("monitor.pid"), 0o600);
    expect(monitor_dir.join("monitor.log"), 0o600);
    expect(run.join("containers").join(&done).join("exit"), 0o600);
    assert!(wrong.is_empty(), "wrong modes:\n  {}", wrong.join("\n  "));

    // Root can do each of these (so each path is real); nobody is refused each.
    let rootfs_file = some_file(&root.join("containers").join(&id).join("rootfs/bin"))
        .expect("a file in the container's rootfs /bin");
    let image_file = some_file(&root.join("images")).expect("a file in the image store");
    let s = |p: &Path| p.display().to_string();
    let connect = connect_args(&monitor_dir, "monitor.sock");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("list the store", vec!["ls".into(), s(&root.join("images"))]),
        ("read a store file", vec!["cat".into(), s(&image_file)]),
        ("read a container record", vec!["cat".into(), s(&record)]),
        ("read a rootfs file", vec!["cat".into(), s(&rootfs_file)]),
        (
            "list the pods' run dirs",
            vec!["ls".into(), s(&run.join("pods"))],
        ),
        ("connect to a monitor socket", connect),
    ];
    let mut failures = Vec::new();
    for (what, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let root_run = Command::new(args[0]).args(&args[1..]).output().unwrap();
        if !root_run.status.success() {
            failures.push(format!(
                "{what}: root cannot either: {}",
                String::from_utf8_lossy(&root_run.stderr)
            ));
            continue;
        }
        let (ok, stderr) = as_nobody(&args);
        println!("nobody: {what}: {}", stderr.trim());
        if ok || !(stderr.contains("Permission denied") || stderr.contains("PermissionError")) {
            failures.push(format!(
                "{what}: nobody was not refused with permission denied (ok={ok}, {stderr:?})"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    f.rt.stop_container(cri::StopContainerRequest {
        container_id: id,
        timeout: 0,
    })
    .await
    .unwrap();
    f.finish().await;
}

#[tokio::test]
async fn container_logs_are_not_written_through_a_symlink() {
    umask_000();
    let mut f = pod_fixture("loglink").await;
    let outside = tempfile::tempdir_in(crius_e2e::TEST_BASE_DIR).unwrap();
    let target = outside.path().join("target");
    std::fs::write(&target, "untouched\n").unwrap();
    std::fs::create_dir_all(f.log_dir()).unwrap();

    // A link at the log file itself.
    symlink(&target, f.log_dir().join("linked.log")).unwrap();
    let mut config = shell("linked", "echo through-the-link");
    config.log_path = "linked.log".into();
    let err = f.try_create(config).await.expect_err("log file is a link");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("symbolic link"), "{err:?}");
    assert!(err.message().contains("linked.log"), "{err:?}");

    // A link in place of the log file's dir.
    symlink(outside.path(), f.log_dir().join("sub")).unwrap();
    let mut config = shell("subdir", "echo through-the-link");
    config.log_path = "sub/inner/0.log".into();
    let err = f.try_create(config).await.expect_err("log dir is a link");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("symbolic link"), "{err:?}");

    // A link planted after the start, then ReopenContainerLog (log rotation): the monitor
    // opens the new file with O_NOFOLLOW.
    let id = f
        .run(shell(
            "rotated",
            "while true; do echo tick; sleep 0.1; done",
        ))
        .await;
    let log = f.log_dir().join("rotated.log");
    eventually("first line logged", Duration::from_secs(5), || {
        let log = log.clone();
        async move { (!std::fs::read_to_string(&log).ok()?.is_empty()).then_some(()) }
    })
    .await;
    std::fs::rename(&log, f.log_dir().join("rotated.log.1")).unwrap();
    symlink(&target, &log).unwrap();
    let reopened =
        f.rt.reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await;
    let err = reopened.expect_err("reopening onto a link");
    assert!(err.message().contains("symbolic link"), "{err:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "untouched\n",
        "nothing written through a link"
    );
    let entries: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        entries,
        [std::ffi::OsString::from("target")],
        "nothing made through a link"
    );
    f.rt.stop_container(cri::StopContainerRequest {
        container_id: id,
        timeout: 0,
    })
    .await
    .unwrap();
    f.finish().await;
}
