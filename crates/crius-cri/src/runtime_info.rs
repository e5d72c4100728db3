//! Version, Status and RuntimeConfig: what the runtime is and whether it is ready.

use crius_core::{CgroupDriver, Daemon};
use crius_cri_api::v1 as cri;

/// `Version`: the kubelet checks the API version; `version` is the CRI's own field.
pub fn version(daemon: &Daemon, _req: cri::VersionRequest) -> cri::VersionResponse {
    let v = daemon.version();
    cri::VersionResponse {
        version: "0.1.0".into(),
        runtime_name: v.runtime_name.into(),
        runtime_version: v.runtime_version.into(),
        runtime_api_version: v.runtime_api_version.into(),
    }
}

fn condition(kind: &str, ready: &Result<(), String>) -> cri::RuntimeCondition {
    let (status, reason, message) = match ready {
        Ok(()) => (true, String::new(), String::new()),
        Err(msg) => (
            false,
            match kind {
                "NetworkReady" => "NetworkPluginNotReady".to_string(),
                _ => "RuntimeNotReady".to_string(),
            },
            msg.clone(),
        ),
    };
    cri::RuntimeCondition {
        r#type: kind.into(),
        status,
        reason,
        message,
    }
}

/// `Status`: readiness of the runtime and the network, the handlers, and with `verbose`
/// the effective config and each handler's readiness (`runtimeHandlers`: name ->
/// `{ready, reason}`) as JSON. A handler that is not ready advertises no features.
pub async fn status(daemon: &Daemon, req: cri::StatusRequest) -> cri::StatusResponse {
    let st = daemon.status().await;
    let mut info = std::collections::HashMap::new();
    if req.verbose {
        info.insert("config".to_string(), st.info["config"].to_string());
        info.insert(
            "runtimeHandlers".to_string(),
            st.info["runtimeHandlers"].to_string(),
        );
        info.insert("info".to_string(), st.info.to_string());
    }
    let handler = |name: &str, h: &crius_core::HandlerStatus| cri::RuntimeHandler {
        name: name.to_string(),
        features: Some(cri::RuntimeHandlerFeatures {
            recursive_read_only_mounts: h.recursive_read_only_mounts,
            user_namespaces: h.user_namespaces,
        }),
    };
    // The default handler (first) is also reported under the empty name, as the CRI asks.
    let runtime_handlers = st
        .handlers
        .first()
        .map(|h| handler("", h))
        .into_iter()
        .chain(st.handlers.iter().map(|h| handler(&h.name, h)))
        .collect();
    cri::StatusResponse {
        status: Some(cri::RuntimeStatus {
            conditions: vec![
                condition("RuntimeReady", &st.runtime_ready),
                condition("NetworkReady", &st.network_ready),
            ],
        }),
        info,
        runtime_handlers,
        // Strict leaves out the groups the image's /etc/group gives the user.
        features: Some(cri::RuntimeFeatures {
            supplemental_groups_policy: true,
            user_namespaces_host_network: false,
            mount_options: false,
        }),
    }
}

/// `RuntimeConfig`: the kubelet checks that its cgroup driver matches ours.
pub fn runtime_config(
    daemon: &Daemon,
    _req: cri::RuntimeConfigRequest,
) -> cri::RuntimeConfigResponse {
    let driver = match daemon.cgroup_driver() {
        CgroupDriver::Systemd => cri::CgroupDriver::Systemd,
        CgroupDriver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
    };
    cri::RuntimeConfigResponse {
        linux: Some(cri::LinuxRuntimeConfiguration {
            cgroup_driver: driver as i32,
        }),
    }
}
