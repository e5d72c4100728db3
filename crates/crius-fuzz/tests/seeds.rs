//! Writes the seed inputs under `fuzz/corpus/TARGET/seed-*`, made with crius's own
//! encoders and the `tar` crate, so they are valid enough to reach deep:
//! `cargo test -p crius-fuzz --test seeds -- --ignored`. The files are kept in the repo.

use std::path::Path;

use crius_monitor_proto::{
    encode_frame, format_exit_file, request, response, Exec, ExitStatus, Request, Resize, Response,
    Wait,
};

/// A tar stream of `entries`: (path, type, mode, link target or content).
fn tar(entries: &[(&str, tar::EntryType, u32, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, mode, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(*mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        let is_link = matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link);
        if is_link {
            header.set_size(0);
            builder
                .append_link(&mut header, path, std::str::from_utf8(data).unwrap())
                .unwrap();
        } else if *kind == tar::EntryType::Char || *kind == tar::EntryType::Block {
            header.set_size(0);
            header.set_device_major(1).unwrap();
            header.set_device_minor(3).unwrap();
            builder.append_data(&mut header, path, &[][..]).unwrap();
        } else {
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, path, *data).unwrap();
        }
    }
    builder.into_inner().unwrap()
}

/// A tar holding PAX records (a long name and an xattr) before a file.
fn pax_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let long = format!("dir/{}", "n".repeat(180));
    builder
        .append_pax_extensions([
            ("path", long.as_bytes()),
            ("SCHILY.xattr.user.note", &b"kept"[..]),
        ])
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_size(4);
    header.set_mode(0o4755);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, "short", &b"data"[..])
        .unwrap();
    builder.into_inner().unwrap()
}

/// What the kubelet sends for a pod with one container: mounts, env, resources,
/// security context, sysctls.
fn create_container_request() -> Vec<u8> {
    use crius_cri_api::v1 as cri;
    use prost::Message as _;
    let pod = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u1".into(),
            attempt: 0,
        }),
        hostname: "web".into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/besteffort/podu1".into(),
            sysctls: [(
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "0".to_string(),
            )]
            .into(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption::default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ctr = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), "sleep 1".into()],
        envs: vec![cri::KeyValue {
            key: "A".into(),
            value: "b".into(),
        }],
        mounts: vec![cri::Mount {
            container_path: "/data".into(),
            host_path: "/var/tmp".into(),
            readonly: true,
            ..Default::default()
        }],
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_shares: 512,
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                capabilities: Some(cri::Capability {
                    add_capabilities: vec!["NET_ADMIN".into()],
                    drop_capabilities: vec!["ALL".into()],
                    ..Default::default()
                }),
                run_as_user: Some(cri::Int64Value { value: 1000 }),
                readonly_rootfs: true,
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    cri::CreateContainerRequest {
        pod_sandbox_id: "pod1".into(),
        config: Some(ctr),
        sandbox_config: Some(pod),
    }
    .encode_to_vec()
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

#[test]
#[ignore = "writes the seed files; run by hand"]
fn write_seeds() {
    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};
    write(
        "layer_unpack",
        "tree",
        &tar(&[
            ("etc/", Directory, 0o755, b""),
            ("etc/passwd", Regular, 0o644, b"root:x:0:0::/root:/bin/sh\n"),
            ("bin/", Directory, 0o755, b""),
            ("bin/sh", Regular, 0o4755, b"\x7fELF"),
            ("bin/ls", Link, 0o755, b"bin/sh"),
            ("lib", Symlink, 0o777, b"usr/lib"),
            ("dev/", Directory, 0o755, b""),
            ("dev/null", Char, 0o666, b""),
            ("dev/loop", Block, 0o660, b""),
            ("run/fifo", Fifo, 0o600, b""),
        ]),
    );
    write(
        "layer_unpack",
        "whiteouts",
        &tar(&[
            ("a/", Directory, 0o755, b""),
            ("a/.wh..wh..opq", Regular, 0o644, b""),
            (".wh.gone", Regular, 0o644, b""),
            ("a/kept", Regular, 0o600, b"x"),
        ]),
    );
    write(
        "layer_unpack",
        "hostile",
        &tar(&[
            ("up", Symlink, 0o777, b".."),
            ("up/escaped", Regular, 0o644, b"x"),
            ("abs", Symlink, 0o777, b"/etc"),
            ("abs/passwd", Regular, 0o644, b"x"),
            ("hard", Link, 0o644, b"../outside/file"),
            ("d/", Directory, 0o755, b""),
            ("d", Symlink, 0o777, b"../outside"),
            ("d/", Directory, 0o700, b""),
        ]),
    );
    write("layer_unpack", "pax", &pax_tar());

    for (i, seed) in crius_stream::fuzzing::spdy_seeds().iter().enumerate() {
        write("spdy_frames", &i.to_string(), seed);
    }
    for (i, seed) in crius_stream::fuzzing::ws_seeds().iter().enumerate() {
        write("ws_frames", &i.to_string(), seed);
    }

    let requests = [
        request::Kind::Wait(Wait {}),
        request::Kind::Exec(Exec {
            cmd: vec!["sh".into(), "-c".into(), "echo hi".into()],
            timeout_ms: 1000,
            tty: false,
            max_output: 1 << 20,
            stream: false,
            stdin: false,
        }),
        request::Kind::Resize(Resize {
            width: 80,
            height: 24,
        }),
    ];
    let mut frames = Vec::new();
    for kind in requests {
        frames.extend(encode_frame(&Request { kind: Some(kind) }));
    }
    write("monitor_frames", "requests", &frames);
    let exit = ExitStatus {
        exit_code: 137,
        exited_at_ns: 1_700_000_000_000_000_000,
        oom_killed: true,
    };
    write(
        "monitor_frames",
        "exit",
        &encode_frame(&Response {
            kind: Some(response::Kind::Exit(exit)),
        }),
    );
    write(
        "monitor_frames",
        "exit-file",
        format_exit_file(&exit).as_bytes(),
    );

    write("cri_to_oci", "web", &create_container_request());

    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = |p: &str| std::fs::read(top.join(p)).unwrap();
    write("config", "default", &read("deploy/crius.conf"));
    write(
        "config",
        "dropin",
        b"[crius]\nlog_level = \"debug\"\n[crius.runtime.runtimes.kata]\nruntime_path = \"/usr/bin/containerd-shim-kata-v2\"\nruntime_type = \"vm\"\n[crius.image.auths.\"r.example:5000\"]\nauth = \"dTpw\"\n[crius.tracing]\nenable_tracing = true\ntracing_endpoint = \"127.0.0.1:4317\"\n",
    );
    write(
        "cni_config",
        "bridge",
        &read("deploy/10-crius-bridge.conflist"),
    );
    write(
        "cni_config",
        "single",
        br#"{"cniVersion":"0.4.0","name":"lo","type":"loopback"}"#,
    );
    write(
        "cni_result",
        "bridge",
        br#"{"cniVersion":"1.0.0","interfaces":[{"name":"crius0","mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:00","sandbox":"/run/netns/x"}],"ips":[{"interface":1,"address":"10.88.0.2/16","gateway":"10.88.0.1"},{"interface":1,"address":"fd00::2/64"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#,
    );
    write(
        "cni_result",
        "old",
        br#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.1.0.5/24"}]}"#,
    );
    for (i, name) in [
        "busybox",
        "docker.io/library/busybox:1.36",
        "127.0.0.1:5000/crius-test/busybox:latest",
        "registry.k8s.io/pause@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a",
        "[::1]:5000/a/b:c@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a",
    ]
    .iter()
    .enumerate()
    {
        write("image_reference", &i.to_string(), name.as_bytes());
    }
    write(
        "registries_conf",
        "mirrors",
        b"unqualified-search-registries = [\"docker.io\", \"quay.io\"]\n\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"registry-1.docker.io\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n\n[[registry]]\nlocation = \"example.com:5000/team\"\nblocked = false\n\n[aliases]\n\"busybox\" = \"docker.io/library/busybox\"\n",
    );
    write(
        "auth_file",
        "podman",
        br#"{"auths":{"registry.example.com:5000":{"auth":"dXNlcjpwYXNz"},"https://index.docker.io/v1/":{"auth":"YTpi"},"registry.example.com:5000/team":{"auth":"dDpw"}}}"#,
    );
}
