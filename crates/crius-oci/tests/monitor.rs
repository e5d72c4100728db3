//! The monitor (crius-conmon) against the real runc: exit codes, signals,
//! OOM kills, the CRI log format, tty output, log reopening, exec with
//! output and timeout, create errors, and the monitor outliving the process
//! that started it.
//!
//! Needs root, runc and busybox (Debian's; a dynamic one is copied with its
//! libraries). Each test removes its container, cgroup and temp dir in Drop.

#[path = "monitor_support.rs"]
mod support;

use std::time::{Duration, Instant};

use crius_oci::monitor::{monitor_alive, read_exit_file, MonitorClient};
use crius_oci::Error;
use support::{pid_alive, Opts, TestContainer};

/// One parsed CRI log line.
#[derive(Debug)]
struct LogLine {
    ts: String,
    stream: String,
    tag: String,
    body: String,
}

fn parse_log(text: &str) -> Vec<LogLine> {
    text.lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let (ts, stream, tag) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            LogLine {
                ts: ts.into(),
                stream: stream.into(),
                tag: tag.into(),
                body: it.next().unwrap_or("").into(),
            }
        })
        .collect()
}

/// Reassembles the full lines of one stream (P pieces joined up to their F end).
fn lines_of(log: &[LogLine], stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in log.iter().filter(|l| l.stream == stream) {
        cur.push_str(&l.body);
        if l.tag == "F" {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[tokio::test]
async fn exit_code_is_recorded_in_the_exit_file() {
    let mut c = TestContainer::new("exit", &["sh", "-c", "exit 3"], Opts::default());
    let h = c.run().await;
    assert!(h.container_pid > 0 && h.monitor_pid > 0);
    let st = MonitorClient::new(&c.dir).wait_exit().await.unwrap();
    assert_eq!(st.exit_code, 3);
    assert!(!st.oom_killed);
    let age = chrono::Utc::now() - st.exited_at;
    assert!(age.num_seconds().abs() < 30, "exited_at {}", st.exited_at);
    // The file stays for a restarted daemon; the monitor is gone.
    let f = read_exit_file(&c.dir).unwrap().expect("exit file");
    assert_eq!(f, st);
    let until = Instant::now() + Duration::from_secs(5);
    while pid_alive(h.monitor_pid) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pid_alive(h.monitor_pid), "monitor still running");
    assert!(!monitor_alive(&c.dir));
    // A late waiter gets the same answer from the file.
    assert_eq!(MonitorClient::new(&c.dir).wait_exit().await.unwrap(), st);
}

#[tokio::test]
async fn signal_exit_is_128_plus_signal() {
    let mut c = TestContainer::new("signal", &["sleep", "100"], Opts::default());
    c.run().await;
    assert!(monitor_alive(&c.dir));
    let client = MonitorClient::new(&c.dir);
    let waiter = tokio::spawn({
        let client = client.clone();
        async move { client.wait_exit().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "wait returned while the container runs"
    );
    c.runtime.kill(&c.id, 9, false).await.unwrap();
    let st = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("wait_exit in time")
        .unwrap()
        .unwrap();
    assert_eq!(st.exit_code, 137);
}

#[tokio::test]
async fn oom_kill_is_reported() {
    let opts = Opts {
        memory_limit: Some(16 * 1024 * 1024),
        ..Opts::default()
    };
    // tail buffers a "line" of /dev/zero that never ends.
    let mut c = TestContainer::new("oom", &["tail", "/dev/zero"], opts);
    c.run().await;
    let st = tokio::time::timeout(
        Duration::from_secs(30),
        MonitorClient::new(&c.dir).wait_exit(),
    )
    .await
    .expect("OOM kill within 30 s")
    .unwrap();
    assert_eq!(st.exit_code, 137);
    assert!(st.oom_killed, "{st:?}");
}

#[tokio::test]
async fn log_has_cri_format_streams_partial_and_split_lines() {
    let script = "echo out-line; echo err-line >&2; printf 'no-newline'; sleep 0.3; \
                  head -c 40000 /dev/zero | tr '\\0' a; echo; echo after";
    let mut c = TestContainer::new("log", &["sh", "-c", script], Opts::default());
    c.run().await;
    let st = MonitorClient::new(&c.dir).wait_exit().await.unwrap();
    assert_eq!(st.exit_code, 0);
    let text = c.log();
    let log = parse_log(&text);
    for l in &log {
        assert!(
            chrono::DateTime::parse_from_rfc3339(&l.ts).is_ok(),
            "bad timestamp in {l:?}"
        );
        assert_eq!(l.ts.len(), "2006-01-02T15:04:05.999999999Z".len(), "{l:?}");
        assert!(l.stream == "stdout" || l.stream == "stderr", "{l:?}");
        assert!(l.tag == "F" || l.tag == "P", "{l:?}");
        assert!(l.body.len() <= 16 * 1024, "record longer than the bound");
    }
    assert_eq!(lines_of(&log, "stderr"), vec!["err-line"]);
    let out = lines_of(&log, "stdout");
    let long = format!("no-newline{}", "a".repeat(40000));
    assert_eq!(out, vec!["out-line".to_string(), long, "after".to_string()]);
    // The partial piece and the long line came as P records.
    assert!(
        log.iter().any(|l| l.tag == "P" && l.body == "no-newline"),
        "{text:.300}"
    );
    assert!(log.iter().filter(|l| l.tag == "P").count() >= 3);
}

#[tokio::test]
async fn tty_output_goes_to_the_log() {
    let opts = Opts {
        terminal: true,
        ..Opts::default()
    };
    let mut c = TestContainer::new(
        "tty",
        &[
            "sh",
            "-c",
            "sleep 0.3; if [ -t 1 ]; then echo is-a-tty; fi; stty size",
        ],
        opts,
    );
    c.run().await;
    let client = MonitorClient::new(&c.dir);
    client.resize(123, 45).await.unwrap();
    let st = client.wait_exit().await.unwrap();
    assert_eq!(st.exit_code, 0);
    let text = c.log();
    let log = parse_log(&text);
    assert!(log.iter().all(|l| l.stream == "stdout"), "{text}");
    let out = lines_of(&log, "stdout").join("\n");
    assert!(out.contains("is-a-tty"), "{text}");
    assert!(out.contains("45 123"), "{text}");
}

#[tokio::test]
async fn resize_without_a_terminal_is_refused() {
    let mut c = TestContainer::new("notty", &["sleep", "100"], Opts::default());
    c.run().await;
    let err = MonitorClient::new(&c.dir).resize(80, 24).await.unwrap_err();
    assert!(matches!(err, Error::MonitorRefused { .. }), "{err}");
}

#[tokio::test]
async fn reopen_log_after_rotation() {
    let mut c = TestContainer::new(
        "reopen",
        &[
            "sh",
            "-c",
            "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done",
        ],
        Opts::default(),
    );
    c.run().await;
    c.wait_log(Duration::from_secs(5), |t| t.contains("tick-2"));
    let rotated = c.log_path.with_extension("log.1");
    std::fs::rename(&c.log_path, &rotated).unwrap();
    MonitorClient::new(&c.dir).reopen_log().await.unwrap();
    let text = c.wait_log(Duration::from_secs(5), |t| t.lines().count() >= 3);
    let new = parse_log(&text);
    assert!(new.len() >= 3, "new log: {text}");
    assert!(new.iter().all(|l| l.body.starts_with("tick-")));
    let old = std::fs::read_to_string(&rotated).unwrap();
    let first_new: u32 = new[0].body["tick-".len()..].parse().unwrap();
    let last_old: u32 = parse_log(&old).last().unwrap().body["tick-".len()..]
        .parse()
        .unwrap();
    assert!(
        first_new > last_old,
        "old ends at {last_old}, new starts at {first_new}"
    );
}

#[tokio::test]
async fn log_size_max_caps_the_file() {
    let opts = Opts {
        log_size_max: Some(4096),
        ..Opts::default()
    };
    let mut c = TestContainer::new(
        "logmax",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 500 ]; do echo line-$i; i=$((i+1)); done",
        ],
        opts,
    );
    c.run().await;
    MonitorClient::new(&c.dir).wait_exit().await.unwrap();
    let text = c.log();
    assert!(text.len() <= 4096, "log is {} bytes", text.len());
    assert!(text.contains("line-499"), "{text}");
}

#[tokio::test]
async fn exec_sync_returns_output_and_exit_code() {
    let mut c = TestContainer::new("exec", &["sleep", "100"], Opts::default());
    c.run().await;
    let client = MonitorClient::new(&c.dir);
    let cmd: Vec<String> = ["sh", "-c", "echo out; echo err >&2; exit 7"]
        .map(String::from)
        .to_vec();
    let out = client
        .exec_sync(&cmd, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exit_code, 7);
    assert!(!out.timed_out);
    // It runs in the container: its hostname is the spec's.
    let out = client
        .exec_sync(&["cat".into(), "/proc/sys/kernel/hostname".into()], None)
        .await
        .unwrap();
    assert_eq!(out.stdout, b"crius-test\n");
    assert_eq!(out.exit_code, 0);
}

#[tokio::test]
async fn exec_output_is_bounded() {
    let mut c = TestContainer::new("execbig", &["sleep", "100"], Opts::default());
    c.run().await;
    // 20 MiB of output: cut at 16 MiB, and the command still finishes.
    let cmd: Vec<String> = ["sh", "-c", "head -c 20971520 /dev/zero; echo done >&2"]
        .map(String::from)
        .to_vec();
    let out = MonitorClient::new(&c.dir)
        .exec_sync(&cmd, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(!out.timed_out);
    assert_eq!(out.stdout.len() + out.stderr.len(), 16 * 1024 * 1024);
}

#[tokio::test]
async fn exec_timeout_kills_the_process() {
    let mut c = TestContainer::new("exectimeout", &["sleep", "100"], Opts::default());
    let h = c.run().await;
    let cmd: Vec<String> = ["sh", "-c", "echo started; exec sleep 10"]
        .map(String::from)
        .to_vec();
    let started = Instant::now();
    let out = MonitorClient::new(&c.dir)
        .exec_sync(&cmd, Some(Duration::from_secs(1)))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(out.timed_out, "{out:?}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert_eq!(out.stdout, b"started\n");
    // Only the container's init is left in its cgroup.
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let pids = c.cgroup_pids();
        if pids == vec![h.container_pid] {
            break;
        }
        assert!(Instant::now() < until, "cgroup still holds {pids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn create_failure_returns_the_runtime_message() {
    let mut c = TestContainer::new("nope", &["/nope"], Opts::default());
    let err = crius_oci::monitor::spawn_monitor(&c.spec())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::CreateFailed { .. }), "{msg}");
    assert!(
        msg.contains(r#"exec: "/nope": stat /nope: no such file or directory"#),
        "{msg}"
    );
    c.handle = None;
    assert!(!monitor_alive(&c.dir));
}

#[tokio::test]
async fn long_monitor_dir_still_works() {
    let opts = Opts {
        long_dir: true,
        ..Opts::default()
    };
    let mut c = TestContainer::new("longdir", &["sh", "-c", "exit 5"], opts);
    assert!(c.dir.join("monitor.sock").as_os_str().len() > 108);
    c.run().await;
    assert_eq!(
        MonitorClient::new(&c.dir)
            .wait_exit()
            .await
            .unwrap()
            .exit_code,
        5
    );
}

#[tokio::test]
async fn attach_with_stdin_once_closes_stdin_on_detach() {
    use crius_monitor_proto::{decode_frame, encode_frame, AttachFrame, Stream};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let opts = Opts {
        stdin: true,
        stdin_once: true,
        ..Opts::default()
    };
    let mut c = TestContainer::new("attach", &["cat"], opts);
    c.run().await;
    let client = MonitorClient::new(&c.dir);
    let mut s = client.attach(true, true, true).await.unwrap();
    let frame = AttachFrame {
        stream: Stream::Stdin as i32,
        data: b"hello through stdin\n".to_vec(),
        ..Default::default()
    };
    s.write_all(&encode_frame(&frame)).await.unwrap();
    let mut buf = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "attach stream closed early");
            buf.extend_from_slice(&chunk[..n]);
            if let Some((f, _)) = decode_frame::<AttachFrame>(&buf).unwrap() {
                return f;
            }
        }
    })
    .await
    .expect("echo from cat");
    assert_eq!(got.stream, Stream::Stdout as i32);
    assert_eq!(got.data, b"hello through stdin\n");
    drop(s);
    // Detaching closed cat's stdin: it exits 0.
    let st = tokio::time::timeout(Duration::from_secs(5), client.wait_exit())
        .await
        .expect("cat exits after detach")
        .unwrap();
    assert_eq!(st.exit_code, 0);
    assert!(c.log().contains("stdout F hello through stdin"));
}

/// Input larger than every buffer on the way (client socket, monitor, pipe) reaches the
/// container whole before stdin_once closes it: the close waits for the held bytes.
#[tokio::test]
async fn stdin_once_close_keeps_the_tail_of_large_input() {
    use crius_monitor_proto::{encode_frame, AttachFrame, Stream};
    use tokio::io::AsyncWriteExt;
    const TOTAL: usize = 1 << 20;
    let opts = Opts {
        stdin: true,
        stdin_once: true,
        ..Opts::default()
    };
    // The sleep lets the pipe fill up, so the monitor holds input when the client leaves.
    let mut c = TestContainer::new("stdin-tail", &["sh", "-c", "sleep 1; wc -c"], opts);
    c.run().await;
    let client = MonitorClient::new(&c.dir);
    let mut s = client.attach(true, false, false).await.unwrap();
    for _ in 0..TOTAL / 16384 {
        let frame = AttachFrame {
            stream: Stream::Stdin as i32,
            data: vec![b'x'; 16384],
            ..Default::default()
        };
        s.write_all(&encode_frame(&frame)).await.unwrap();
    }
    drop(s);
    let st = tokio::time::timeout(Duration::from_secs(20), client.wait_exit())
        .await
        .expect("wc exits once its input ends")
        .unwrap();
    assert_eq!(st.exit_code, 0);
    let log = c.log();
    assert!(log.contains(&format!("stdout F {TOTAL}")), "log: {log}");
}

/// Run by `monitor_outlives_the_process_that_started_it` in a child process:
/// spawns the monitor, prints the handle, and exits.
#[tokio::test]
#[ignore = "helper run by monitor_outlives_the_process_that_started_it"]
async fn spawner_helper() {
    let Some(spec) = std::env::var_os("CRIUS_TEST_SPAWN_SPEC") else {
        return;
    };
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(spec).unwrap()).unwrap();
    let s = |k: &str| std::path::PathBuf::from(v[k].as_str().unwrap());
    let spec = crius_oci::monitor::MonitorSpec {
        id: v["id"].as_str().unwrap().into(),
        bundle: s("bundle"),
        runtime: support::runc(),
        monitor_path: s("monitor"),
        dir: s("dir"),
        log_path: Some(s("log")),
        terminal: false,
        stdin: false,
        stdin_once: false,
        log_size_max: None,
    };
    let h = crius_oci::monitor::spawn_monitor(&spec).await.unwrap();
    spec.runtime.start(&spec.id).await.unwrap();
    println!("HANDLE {} {}", h.monitor_pid, h.container_pid);
}

#[tokio::test]
async fn monitor_outlives_the_process_that_started_it() {
    let mut c = TestContainer::new(
        "outlive",
        &[
            "sh",
            "-c",
            "i=0; while true; do echo beat-$i; i=$((i+1)); sleep 0.1; done",
        ],
        Opts::default(),
    );
    let spec_file = c.tmp.path().join("spawn.json");
    let spec = serde_json::json!({
        "id": c.id, "bundle": c.bundle, "monitor": support::conmon_path(),
        "dir": c.dir, "log": c.log_path,
    });
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spawner_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CRIUS_TEST_SPAWN_SPEC", &spec_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("HANDLE ").map(|(_, h)| h))
        .unwrap_or_else(|| {
            panic!(
                "helper failed: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let mut it = line.split_whitespace().map(|x| x.parse::<u32>().unwrap());
    let (monitor_pid, container_pid) = (it.next().unwrap(), it.next().unwrap());
    c.handle = Some(crius_oci::monitor::MonitorHandle {
        monitor_pid,
        container_pid,
        dir: c.dir.clone(),
    });
    // The spawning process is gone; the monitor, the container and the log go on.
    let before = c
        .wait_log(Duration::from_secs(5), |t| t.contains("beat-1"))
        .lines()
        .count();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(pid_alive(monitor_pid) && pid_alive(container_pid));
    assert!(c.log().lines().count() > before, "log stopped growing");
    // The monitor was reparented away from the dead spawner.
    let stat = std::fs::read_to_string(format!("/proc/{monitor_pid}/stat")).unwrap();
    let ppid: u32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(ppid, std::process::id());
    // A fresh client still gets the exit.
    c.runtime.kill(&c.id, 9, false).await.unwrap();
    let st = MonitorClient::new(&c.dir).wait_exit().await.unwrap();
    assert_eq!(st.exit_code, 137);
}

/// The monitor's memory is a headline figure: under 1 MiB PSS each with
/// several running (the release build measures about 0.2 MiB; see the
/// monitor_bench example).
#[tokio::test]
async fn monitor_memory_stays_under_budget() {
    let mut containers = Vec::new();
    for _ in 0..8 {
        let mut c = TestContainer::new("mem", &["sleep", "100"], Opts::default());
        c.run().await;
        containers.push(c);
    }
    // Exercise the paths that allocate: an exec and a log write.
    let out = MonitorClient::new(&containers[0].dir)
        .exec_sync(&["echo".into(), "x".into()], Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.stdout, b"x\n");
    let mut total = 0;
    for c in &containers {
        let pid = c.handle.as_ref().unwrap().monitor_pid;
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
        let pss: u64 = text
            .lines()
            .find(|l| l.starts_with("Pss:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap();
        total += pss;
    }
    let avg = total / containers.len() as u64;
    println!(
        "average monitor PSS with {} running: {avg} KiB",
        containers.len()
    );
    assert!(avg < 1024, "average monitor PSS {avg} KiB");
}

#[tokio::test]
async fn killed_monitor_is_reported_gone() {
    let mut c = TestContainer::new("gone", &["sleep", "100"], Opts::default());
    let h = c.run().await;
    let client = MonitorClient::new(&c.dir);
    assert_eq!(client.status().await.unwrap(), (h.container_pid, true));
    // SAFETY: kill takes plain integers; the pid is the monitor this test started.
    unsafe { libc::kill(h.monitor_pid as i32, libc::SIGKILL) };
    let until = Instant::now() + Duration::from_secs(5);
    while pid_alive(h.monitor_pid) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!monitor_alive(&c.dir));
    let err = client.wait_exit().await.unwrap_err();
    assert!(matches!(err, Error::MonitorGone { .. }), "{err}");
    // The container itself is untouched.
    assert!(pid_alive(h.container_pid));
}

/// Sends one raw request over the wire, as any client of monitor.proto would.
async fn raw_call(
    dir: &std::path::Path,
    req: crius_monitor_proto::request::Kind,
) -> crius_monitor_proto::response::Kind {
    use crius_monitor_proto::{decode_frame, encode_frame, Request, Response};
    use std::os::fd::AsRawFd;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = std::fs::File::open(dir).unwrap();
    let path = format!("/proc/self/fd/{}/monitor.sock", d.as_raw_fd());
    let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
    s.write_all(&encode_frame(&Request { kind: Some(req) }))
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let (resp, used) = decode_frame::<Response>(&buf).unwrap().unwrap();
    assert_eq!(used, buf.len(), "one response, then the monitor closes");
    resp.kind.unwrap()
}

#[tokio::test]
async fn raw_protocol_exec_and_refusals() {
    use crius_monitor_proto::{request, response, Exec};
    let mut c = TestContainer::new("rawexec", &["sleep", "100"], Opts::default());
    c.run().await;
    let req = request::Kind::Exec(Exec {
        cmd: vec!["sh".into(), "-c".into(), "echo raw; exit 2".into()],
        timeout_ms: 10_000,
        max_output: 2,
        ..Exec::default()
    });
    match raw_call(&c.dir, req).await {
        response::Kind::Exec(r) => {
            assert_eq!(r.exit_code, 2, "{r:?}");
            // max_output bounds what is kept.
            assert_eq!(r.stdout, b"ra", "{r:?}");
            assert!(r.truncated);
        }
        other => panic!("unexpected {other:?}"),
    }
    // An empty command and a terminal exec that is not streamed are refused, not fatal.
    let resp = raw_call(&c.dir, request::Kind::Exec(Exec::default())).await;
    assert!(matches!(resp, response::Kind::Error(_)), "{resp:?}");
    let tty = Exec {
        cmd: vec!["true".into()],
        tty: true,
        ..Exec::default()
    };
    let resp = raw_call(&c.dir, request::Kind::Exec(tty)).await;
    assert!(matches!(resp, response::Kind::Error(_)), "{resp:?}");
    assert!(monitor_alive(&c.dir));
}

#[tokio::test]
async fn attach_stdio_relays_until_the_container_exits() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let opts = Opts {
        stdin: true,
        ..Opts::default()
    };
    let mut c = TestContainer::new(
        "attachstdio",
        &[
            "sh",
            "-c",
            "read line; echo got-$line; echo to-err >&2; exit 6",
        ],
        opts,
    );
    c.run().await;
    let (mut in_w, in_r) = tokio::io::duplex(1024);
    let (out_w, mut out_r) = tokio::io::duplex(1024);
    let (err_w, mut err_r) = tokio::io::duplex(1024);
    let client = MonitorClient::new(&c.dir);
    let relay = tokio::spawn(async move {
        client
            .attach_stdio(Some(in_r), Some(out_w), Some(err_w), None, false)
            .await
    });
    in_w.write_all(b"hello\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .expect("attach ends when the container exits")
        .unwrap()
        .unwrap();
    let mut out = String::new();
    out_r.read_to_string(&mut out).await.unwrap();
    let mut err = String::new();
    err_r.read_to_string(&mut err).await.unwrap();
    assert_eq!(out, "got-hello\n");
    assert_eq!(err, "to-err\n");
    let st = MonitorClient::new(&c.dir).wait_exit().await.unwrap();
    assert_eq!(st.exit_code, 6);
}

#[tokio::test]
async fn exec_stream_relays_stdin_and_output() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = TestContainer::new("execstream", &["sleep", "100"], Opts::default());
    c.run().await;
    let (mut in_w, in_r) = tokio::io::duplex(1024);
    let (out_w, mut out_r) = tokio::io::duplex(64 * 1024);
    let (err_w, mut err_r) = tokio::io::duplex(64 * 1024);
    let client = MonitorClient::new(&c.dir);
    let cmd: Vec<String> = ["sh", "-c", "cat; echo to-err >&2; exit 3"]
        .map(String::from)
        .to_vec();
    let run = tokio::spawn(async move {
        client
            .exec_stream(&cmd, false, Some(in_r), Some(out_w), Some(err_w), None)
            .await
    });
    in_w.write_all(b"line one\nline two\n").await.unwrap();
    drop(in_w); // EOF: cat ends
    let code = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("exec ends after stdin closes")
        .unwrap()
        .unwrap();
    assert_eq!(code, 3);
    let mut out = String::new();
    out_r.read_to_string(&mut out).await.unwrap();
    let mut err = String::new();
    err_r.read_to_string(&mut err).await.unwrap();
    assert_eq!(out, "line one\nline two\n");
    assert_eq!(err, "to-err\n");
}

/// Closing stdin right after a large write delivers all of it first.
#[tokio::test]
async fn exec_stream_close_keeps_the_tail_of_large_input() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const TOTAL: usize = 1 << 20;
    let mut c = TestContainer::new("execstream-tail", &["sleep", "100"], Opts::default());
    c.run().await;
    let (mut in_w, in_r) = tokio::io::duplex(64 * 1024);
    let (out_w, mut out_r) = tokio::io::duplex(64 * 1024);
    let client = MonitorClient::new(&c.dir);
    let cmd: Vec<String> = ["sh", "-c", "sleep 1; wc -c"].map(String::from).to_vec();
    let run = tokio::spawn(async move {
        client
            .exec_stream(
                &cmd,
                false,
                Some(in_r),
                Some(out_w),
                None::<tokio::io::DuplexStream>,
                None,
            )
            .await
    });
    in_w.write_all(&vec![b'y'; TOTAL]).await.unwrap();
    drop(in_w);
    let code = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("exec ends after stdin closes")
        .unwrap()
        .unwrap();
    assert_eq!(code, 0);
    let mut out = String::new();
    out_r.read_to_string(&mut out).await.unwrap();
    assert_eq!(out.trim(), TOTAL.to_string());
}

#[tokio::test]
async fn exec_stream_on_a_terminal_with_resize() {
    use tokio::io::AsyncReadExt;
    let mut c = TestContainer::new("execstreamtty", &["sleep", "100"], Opts::default());
    c.run().await;
    let (out_w, mut out_r) = tokio::io::duplex(64 * 1024);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send((100, 30)).await.unwrap();
    let client = MonitorClient::new(&c.dir);
    let cmd: Vec<String> = [
        "sh",
        "-c",
        "sleep 0.5; [ -t 0 ] && echo tty-in; stty size; exit 4",
    ]
    .map(String::from)
    .to_vec();
    let code = tokio::time::timeout(
        Duration::from_secs(10),
        client.exec_stream(
            &cmd,
            true,
            None::<tokio::io::Empty>,
            Some(out_w),
            None::<tokio::io::Sink>,
            Some(rx),
        ),
    )
    .await
    .expect("terminal exec ends")
    .unwrap();
    assert_eq!(code, 4);
    let mut out = String::new();
    out_r.read_to_string(&mut out).await.unwrap();
    assert!(out.contains("tty-in"), "{out:?}");
    assert!(out.contains("30 100"), "{out:?}");
}

#[tokio::test]
async fn dropping_an_exec_stream_kills_the_command() {
    let mut c = TestContainer::new("execdrop", &["sleep", "100"], Opts::default());
    let h = c.run().await;
    let client = MonitorClient::new(&c.dir);
    let cmd: Vec<String> = ["sleep", "30"].map(String::from).to_vec();
    let res = tokio::time::timeout(
        Duration::from_millis(800),
        client.exec_stream(
            &cmd,
            false,
            None::<tokio::io::Empty>,
            Some(tokio::io::sink()),
            Some(tokio::io::sink()),
            None,
        ),
    )
    .await;
    assert!(res.is_err(), "sleep 30 ended early: {res:?}");
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let pids = c.cgroup_pids();
        if pids == vec![h.container_pid] {
            break;
        }
        assert!(Instant::now() < until, "cgroup still holds {pids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Multi-threaded: the attach task runs while this one polls the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_stdin_once_ends_input_on_detach() {
    let opts = Opts {
        terminal: true,
        stdin: true,
        stdin_once: true,
        ..Opts::default()
    };
    let mut c = TestContainer::new("ttyonce", &["cat"], opts);
    c.run().await;
    let client = MonitorClient::new(&c.dir);
    let (mut in_w, in_r) = tokio::io::duplex(1024);
    let (out_w, _out_r) = tokio::io::duplex(64 * 1024);
    let attach = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .attach_stdio(Some(in_r), Some(out_w), None::<tokio::io::Sink>, None, true)
                .await
        }
    });
    tokio::io::AsyncWriteExt::write_all(&mut in_w, b"typed\n")
        .await
        .unwrap();
    c.wait_log(Duration::from_secs(5), |t| t.matches("typed").count() >= 2);
    assert!(
        !attach.is_finished(),
        "attach ended early: {:?}",
        attach.await
    );
    attach.abort();
    let _ = attach.await;
    let st = tokio::time::timeout(Duration::from_secs(5), client.wait_exit())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "cat did not end after the detach; log: {:?}; monitor.log: {:?}",
                c.log(),
                std::fs::read_to_string(c.dir.join("monitor.log"))
            )
        })
        .unwrap();
    assert_eq!(st.exit_code, 0);
}

/// Sizes sent on an attach session reach the container's terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_resizes_the_terminal() {
    let opts = Opts {
        terminal: true,
        ..Opts::default()
    };
    // Polls its terminal's size until it is the one sent, then prints it.
    let script = "until [ \"$(stty size)\" = \"45 123\" ]; do sleep 0.05; done; stty size";
    let mut c = TestContainer::new("ttyresize", &["sh", "-c", script], opts);
    c.run().await;
    let client = MonitorClient::new(&c.dir);
    let (sizes, rx) = tokio::sync::mpsc::channel(1);
    let (out_w, _out_r) = tokio::io::duplex(64 * 1024);
    let attach = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .attach_stdio(
                    None::<tokio::io::Empty>,
                    Some(out_w),
                    None::<tokio::io::Sink>,
                    Some(rx),
                    false,
                )
                .await
        }
    });
    sizes.send((123, 45)).await.unwrap();
    let log = c.wait_log(Duration::from_secs(10), |t| t.contains("45 123"));
    assert!(log.contains("stdout F 45 123"), "log: {log}");
    let _ = tokio::time::timeout(Duration::from_secs(5), attach).await;
}

#[tokio::test]
async fn monitor_holds_no_inherited_descriptors() {
    use std::os::fd::AsRawFd;
    // A descriptor this test process leaks on purpose into its children.
    let leak = std::fs::File::open("/dev/null").unwrap();
    let dup = nix_dup_inheritable(leak.as_raw_fd());
    let mut c = TestContainer::new("fds", &["sleep", "100"], Opts::default());
    let h = c.run().await;
    // SAFETY: closing the descriptor this test made above.
    unsafe { libc::close(dup) };
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", h.monitor_pid))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    // stdin/stdout are /dev/null, stderr is monitor.log; then the monitor's
    // own: signalfd, socket, container log, stdio pipes.
    let nulls = fds.iter().filter(|p| *p == "/dev/null").count();
    assert_eq!(nulls, 2, "{fds:?}");
}

/// dup() without O_CLOEXEC, so the descriptor crosses exec.
fn nix_dup_inheritable(fd: i32) -> i32 {
    // SAFETY: dup of a descriptor we own.
    let d = unsafe { libc::dup(fd) };
    assert!(d > 2);
    d
}
