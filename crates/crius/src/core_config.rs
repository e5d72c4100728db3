//! Turns the file configuration into the core's [`crius_core::CoreConfig`].

use std::path::{Path, PathBuf};

use crius_core::{CgroupDriver, CoreConfig, ImageSettings, NetworkSettings, RuntimeHandlerConfig};

use crate::config::{CgroupManager, Config};

/// The core's view of `config`, with helper paths found relative to `exe_dir` and the
/// whole effective config (secrets redacted) attached for `Status`.
pub fn core_config(config: &Config, exe_dir: Option<&Path>) -> CoreConfig {
    let resolved = config.resolved(exe_dir);
    let effective_config = resolved.to_redacted_json();
    let c = resolved.crius;
    let non_empty = |p: PathBuf| (!p.as_os_str().is_empty()).then_some(p);
    CoreConfig {
        root_dir: c.root,
        run_dir: c.runroot,
        cgroup_driver: match c.runtime.cgroup_manager {
            CgroupManager::Cgroupfs => CgroupDriver::Cgroupfs,
            CgroupManager::Systemd => CgroupDriver::Systemd,
        },
        cgroup_root: c.runtime.cgroup_root,
        drop_infra_ctr: c.runtime.drop_infra_ctr,
        pause_image: c.image.pause_image,
        pause_binary: c.image.pause_binary,
        default_runtime: c.runtime.default_runtime,
        runtimes: c
            .runtime
            .runtimes
            .into_iter()
            .map(|(name, h)| {
                let handler = RuntimeHandlerConfig {
                    runtime_path: h.runtime_path,
                    runtime_type: h.runtime_type.as_str().to_string(),
                    runtime_root: non_empty(h.runtime_root),
                    runtime_config_path: non_empty(h.runtime_config_path),
                    monitor_path: h.monitor_path,
                    allowed_annotations: h.allowed_annotations,
                };
                (name, handler)
            })
            .collect(),
        network: NetworkSettings {
            conf_dir: c.network.network_dir,
            plugin_dirs: c.network.plugin_dirs,
            cache_dir: c.network.cache_dir,
        },
        images: ImageSettings {
            registries_conf: non_empty(c.image.registries_conf),
            auth_file: non_empty(c.image.global_auth_file),
            insecure_registries: c.image.insecure_registries,
            auths: c
                .image
                .auths
                .into_iter()
                .map(|(host, a)| {
                    let auth = crius_core::RegistryAuth {
                        username: a.username,
                        password: a.password,
                        auth: a.auth,
                    };
                    (host, auth)
                })
                .collect(),
            max_concurrent_downloads: c.image.max_concurrent_downloads,
            pinned_images: c.image.pinned_images,
            max_layer_size: c.image.max_layer_size,
            max_layer_entries: c.image.max_layer_entries,
            max_manifest_size: c.image.max_manifest_size,
            max_config_size: c.image.max_config_size,
        },
        log_size_max: u64::try_from(c.runtime.log_size_max).ok(),
        seccomp_profile_root: c.runtime.seccomp_profile_root,
        cdi_spec_dirs: c.runtime.cdi_spec_dirs,
        hooks_dirs: c.runtime.hooks_dir,
        checkpoint_dirs: c.runtime.checkpoint_dirs,
        stream_address: c.api.stream_address,
        stream_port: c.api.stream_port,
        // Checked by `Config::validate`; an unchecked bad list serves no group.
        pod_metrics: crius_core::MetricGroup::parse_list(&c.stats.included_pod_metrics)
            .unwrap_or_default(),
        effective_config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RegistryAuth;

    #[test]
    fn defaults_convert_to_the_core_defaults() {
        let core = core_config(&Config::default(), None);
        assert_eq!(core.root_dir, Path::new("/var/lib/crius"));
        assert_eq!(core.run_dir, Path::new("/run/crius"));
        assert_eq!(core.cgroup_driver, CgroupDriver::Cgroupfs);
        assert_eq!(core.default_runtime, "crius");
        let runc = &core.runtimes["runc"];
        assert_eq!(runc.runtime_type, "oci");
        assert_eq!(runc.runtime_root, None);
        assert_eq!(
            runc.monitor_path,
            Path::new("/usr/libexec/crius/crius-conmon")
        );
        assert_eq!(
            core.pause_binary,
            Path::new("/usr/libexec/crius/crius-pause")
        );
        assert_eq!(core.log_size_max, None);
        assert_eq!(core.images.registries_conf, None);
        assert_eq!(
            core.network.cache_dir,
            Path::new("/var/lib/crius/cni-cache")
        );
        assert_eq!(
            core.effective_config["crius"]["api"]["listen"],
            "/run/crius/crius.sock"
        );
    }

    #[test]
    fn set_values_carry_over_and_secrets_stay_out_of_the_shown_config() {
        let mut config = Config::default();
        config.crius.runtime.log_size_max = 1 << 20;
        config.crius.image.registries_conf = "/etc/r.conf".into();
        config.crius.image.auths.insert(
            "127.0.0.1:5001".into(),
            RegistryAuth {
                username: "u".into(),
                password: "secret".into(),
                auth: String::new(),
            },
        );
        let core = core_config(&config, None);
        assert_eq!(core.log_size_max, Some(1 << 20));
        assert_eq!(
            core.images.registries_conf.as_deref(),
            Some(Path::new("/etc/r.conf"))
        );
        assert_eq!(core.images.auths["127.0.0.1:5001"].password, "secret");
        assert!(!core.effective_config.to_string().contains("secret"));
    }
}
