//! Network configuration lists: finding, parsing and turning them into plugin stdin.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tracing::warn;

use crate::error::{Error, Result};

/// CNI spec versions whose result format (`interfaces`/`ips`/`routes`) we understand.
pub(crate) const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// File name endings that are network configuration, as libcni and the kubelet agree.
const CONFIG_EXTENSIONS: &[&str] = &["conflist", "conf", "json"];

/// One network configuration list, normalized so that single-plugin files look like lists.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NetworkConfigList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub plugins: Vec<PluginConf>,
    /// The file it came from (for messages and the cache).
    pub source: PathBuf,
    /// The whole list as JSON, as it is cached for DEL.
    pub raw: Value,
}

/// One plugin's entry in a list.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PluginConf {
    pub plugin_type: String,
    pub conf: Map<String, Value>,
}

/// Parses a configuration file's bytes: a list, or a single plugin that is wrapped into one.
pub(crate) fn parse_file(path: &Path, bytes: &[u8]) -> Result<NetworkConfigList> {
    let invalid = |reason: String| Error::InvalidNetworkConfig {
        path: path.to_path_buf(),
        reason,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let Some(obj) = value.as_object() else {
        return Err(invalid("not a JSON object".to_string()));
    };
    // Judge by content rather than the extension: a list saved as .conf still works.
    if obj.contains_key("plugins") {
        return from_list(path, value);
    }
    if !obj.contains_key("type") {
        return Err(invalid(
            "neither a network list (no \"plugins\") nor a plugin (no \"type\")".to_string(),
        ));
    }
    let mut list = Map::new();
    for key in ["cniVersion", "name"] {
        if let Some(v) = obj.get(key) {
            list.insert(key.to_string(), v.clone());
        }
    }
    list.insert("plugins".to_string(), Value::Array(vec![value.clone()]));
    from_list(path, Value::Object(list))
}

/// Validates a list's JSON (from a file or from the cache).
pub(crate) fn from_list(path: &Path, value: Value) -> Result<NetworkConfigList> {
    let invalid = |reason: &str| Error::InvalidNetworkConfig {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("not a JSON object"))?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("missing \"name\""))?
        .to_string();
    let cni_version = obj
        .get("cniVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("missing \"cniVersion\""))?
        .to_string();
    if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
        return Err(Error::UnsupportedCniVersion {
            path: path.to_path_buf(),
            version: cni_version,
        });
    }
    let disable_check = match obj.get("disableCheck") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        Some(_) => return Err(invalid("\"disableCheck\" is not a boolean")),
    };
    let raw_plugins = obj
        .get("plugins")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("\"plugins\" is not an array"))?;
    if raw_plugins.is_empty() {
        return Err(invalid("\"plugins\" is empty"));
    }
    let mut plugins = Vec::with_capacity(raw_plugins.len());
    for (i, p) in raw_plugins.iter().enumerate() {
        let conf = p.as_object().ok_or_else(|| Error::InvalidNetworkConfig {
            path: path.to_path_buf(),
            reason: format!("plugin {i} is not a JSON object"),
        })?;
        let plugin_type = match conf.get("type") {
            Some(Value::String(t)) if is_bare_plugin_name(t) => t.clone(),
            Some(Value::String(t)) => {
                return Err(Error::InvalidNetworkConfig {
                    path: path.to_path_buf(),
                    reason: format!(
                        "plugin {i} has \"type\" {t:?}, which is not a bare executable name \
                         (no '/', not '.' or '..', not empty)"
                    ),
                })
            }
            _ => {
                return Err(Error::InvalidNetworkConfig {
                    path: path.to_path_buf(),
                    reason: format!("plugin {i} has no \"type\" string"),
                })
            }
        };
        plugins.push(PluginConf {
            plugin_type,
            conf: conf.clone(),
        });
    }
    Ok(NetworkConfigList {
        name,
        cni_version,
        disable_check,
        plugins,
        source: path.to_path_buf(),
        raw: value,
    })
}

/// The plugin `type` is joined to each plugin dir to find the executable: only a plain
/// file name keeps that lookup inside the dirs (`../../bin/sh` or `/bin/sh` would run
/// anything on the host as root).
fn is_bare_plugin_name(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains(['/', '\0'])
}

/// The configuration files in `dir`, sorted by file name.
pub(crate) fn config_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoNetworkConfig {
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => {
            return Err(Error::InvalidNetworkConfig {
                path: dir.to_path_buf(),
                reason: format!("read dir: {e}"),
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| CONFIG_EXTENSIONS.contains(&e))
                && path.is_file()
        })
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// The first usable network configuration in `dir` by file name order. Broken files are
/// skipped with a warning; if none is usable, the first file's error is returned so the
/// operator learns which file to fix.
pub(crate) fn load_dir(dir: &Path) -> Result<NetworkConfigList> {
    let mut first_error = None;
    for path in config_files(dir)? {
        let outcome = std::fs::read(&path)
            .map_err(|e| Error::InvalidNetworkConfig {
                path: path.clone(),
                reason: format!("read: {e}"),
            })
            .and_then(|bytes| parse_file(&path, &bytes));
        match outcome {
            Ok(list) => return Ok(list),
            Err(err) => {
                warn!(error = %err, "skipping CNI configuration file");
                first_error.get_or_insert(err);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| Error::NoNetworkConfig {
        dir: dir.to_path_buf(),
    }))
}

/// `a >= b` for dotted CNI versions; unparsable parts count as 0.
pub(crate) fn version_at_least(a: &str, b: &str) -> bool {
    fn parts(v: &str) -> [u64; 3] {
        let mut out = [0; 3];
        for (slot, part) in out.iter_mut().zip(v.split('.')) {
            *slot = part.parse().unwrap_or(0);
        }
        out
    }
    parts(a) >= parts(b)
}

/// The stdin of one plugin call: its own config plus the list's name and version, the
/// previous result (chained on ADD, cached on CHECK/DEL) and the runtimeConfig entries
/// that its `capabilities` ask for and that the runtime has.
pub(crate) fn plugin_stdin(
    list: &NetworkConfigList,
    plugin: &PluginConf,
    prev_result: Option<&Value>,
    runtime_args: &Map<String, Value>,
) -> Value {
    let mut conf = plugin.conf.clone();
    conf.insert("name".to_string(), Value::String(list.name.clone()));
    conf.insert(
        "cniVersion".to_string(),
        Value::String(list.cni_version.clone()),
    );
    if let Some(prev) = prev_result {
        conf.insert("prevResult".to_string(), prev.clone());
    }
    let mut runtime_config = Map::new();
    if let Some(caps) = plugin.conf.get("capabilities").and_then(Value::as_object) {
        for (cap, enabled) in caps {
            if enabled.as_bool() != Some(true) {
                continue;
            }
            if let Some(value) = runtime_args.get(cap) {
                runtime_config.insert(cap.clone(), value.clone());
            }
        }
    }
    if !runtime_config.is_empty() {
        match conf.get_mut("runtimeConfig").and_then(Value::as_object_mut) {
            Some(existing) => existing.extend(runtime_config),
            None => {
                conf.insert("runtimeConfig".to_string(), Value::Object(runtime_config));
            }
        }
    }
    Value::Object(conf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p() -> PathBuf {
        PathBuf::from("/etc/cni/net.d/10-test.conflist")
    }

    #[test]
    fn parses_a_list() {
        let bytes = br#"{"cniVersion":"1.0.0","name":"podnet","plugins":[
            {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}},
            {"type":"portmap","capabilities":{"portMappings":true}}]}"#;
        let list = parse_file(&p(), bytes).unwrap();
        assert_eq!(list.name, "podnet");
        assert_eq!(list.cni_version, "1.0.0");
        assert!(!list.disable_check);
        let types: Vec<_> = list
            .plugins
            .iter()
            .map(|p| p.plugin_type.as_str())
            .collect();
        assert_eq!(types, ["bridge", "portmap"]);
        assert_eq!(list.plugins[0].conf["bridge"], "cni0");
    }

    #[test]
    fn wraps_a_single_plugin_conf() {
        let bytes = br#"{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"cni1"}"#;
        let list = parse_file(Path::new("/x/10-a.conf"), bytes).unwrap();
        assert_eq!(list.name, "single");
        assert_eq!(list.cni_version, "0.4.0");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0].plugin_type, "bridge");
        assert_eq!(list.raw["plugins"][0]["bridge"], "cni1");
        assert_eq!(list.raw["name"], "single");
    }

    #[test]
    fn rejects_bad_lists() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "expected"),
            (b"[]", "not a JSON object"),
            (
                br#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                "name",
            ),
            (br#"{"name":"n","plugins":[{"type":"x"}]}"#, "cniVersion"),
            (
                br#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "empty",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"ipam":{}}]}"#,
                "type",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../sh"}]}"#,
                "type",
            ),
            (br#"{"cniVersion":"1.0.0","name":"n"}"#, "neither"),
        ];
        for (bytes, want) in cases {
            let err = parse_file(&p(), bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
            assert!(err.contains("10-test.conflist"), "{err:?} names the file");
        }
    }

    #[test]
    fn plugin_type_must_be_a_bare_name() {
        let cases: &[(&str, bool)] = &[
            ("bridge", true),
            ("host-local", true),
            ("my.plugin", true),
            ("a..b", true),
            ("", false),
            (".", false),
            ("..", false),
            ("../sh", false),
            ("../../../bin/sh", false),
            ("/bin/sh", false),
            ("sub/bridge", false),
            ("bridge/", false),
            ("nul\0byte", false),
        ];
        for (t, ok) in cases {
            let bytes = json!({"cniVersion":"1.0.0","name":"n","plugins":[
                {"type":"bridge"},{"type":t}]})
            .to_string();
            let result = parse_file(&p(), bytes.as_bytes());
            assert_eq!(result.is_ok(), *ok, "type {t:?}: {result:?}");
            if let Err(err) = result {
                let msg = err.to_string();
                assert!(msg.contains("10-test.conflist"), "{msg} names the file");
                assert!(msg.contains("plugin 1"), "{msg} names the plugin");
                assert!(msg.contains(&format!("{t:?}")), "{msg} shows the type");
            }
        }
        // Not a string at all.
        let bytes = br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":7}]}"#;
        let msg = parse_file(&p(), bytes).unwrap_err().to_string();
        assert!(msg.contains("plugin 0 has no \"type\""), "{msg}");
    }

    #[test]
    fn load_dir_skips_a_list_with_a_path_as_plugin_type() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
        write(
            "10-evil.conflist",
            r#"{"cniVersion":"1.0.0","name":"evil","plugins":[{"type":"../../../bin/sh"}]}"#,
        );
        write(
            "20-good.conflist",
            r#"{"cniVersion":"1.0.0","name":"good","plugins":[{"type":"bridge"}]}"#,
        );
        assert_eq!(load_dir(dir.path()).unwrap().name, "good");
        std::fs::remove_file(dir.path().join("20-good.conflist")).unwrap();
        let msg = load_dir(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("10-evil.conflist"), "{msg}");
        assert!(msg.contains("../../../bin/sh"), "{msg}");
    }

    #[test]
    fn rejects_unsupported_versions() {
        for v in ["0.2.0", "0.1.0", "2.0.0", "", "banana"] {
            let bytes = format!(r#"{{"cniVersion":"{v}","name":"n","plugins":[{{"type":"x"}}]}}"#);
            let err = parse_file(&p(), bytes.as_bytes()).unwrap_err();
            assert!(
                matches!(err, Error::UnsupportedCniVersion { .. }),
                "{v}: {err}"
            );
        }
    }

    #[test]
    fn reads_disable_check() {
        let bytes =
            br#"{"cniVersion":"1.0.0","name":"n","disableCheck":true,"plugins":[{"type":"x"}]}"#;
        assert!(parse_file(&p(), bytes).unwrap().disable_check);
    }

    #[test]
    fn load_dir_takes_first_valid_file_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
        write(
            "99-last.conflist",
            r#"{"cniVersion":"1.0.0","name":"last","plugins":[{"type":"a"}]}"#,
        );
        write(
            "20-second.conf",
            r#"{"cniVersion":"1.0.0","name":"second","type":"b"}"#,
        );
        write("10-broken.conflist", "{");
        write(
            "05-ignored.txt",
            r#"{"cniVersion":"1.0.0","name":"txt","type":"c"}"#,
        );
        let list = load_dir(dir.path()).unwrap();
        assert_eq!(list.name, "second");
        assert_eq!(list.source, dir.path().join("20-second.conf"));

        write(
            "15-json.json",
            r#"{"cniVersion":"0.4.0","name":"json","plugins":[{"type":"d"}]}"#,
        );
        assert_eq!(load_dir(dir.path()).unwrap().name, "json");
    }

    #[test]
    fn load_dir_reports_empty_or_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(matches!(err, Error::NoNetworkConfig { .. }));
        assert_eq!(
            err.to_string(),
            format!("no CNI configuration found in {}", dir.path().display())
        );
        let missing = dir.path().join("nope");
        assert!(matches!(
            load_dir(&missing),
            Err(Error::NoNetworkConfig { .. })
        ));
    }

    #[test]
    fn load_dir_reports_the_broken_file_when_nothing_is_usable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10-a.conflist"), "{").unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("10-a.conflist"), "{err}");
    }

    #[test]
    fn compares_versions() {
        assert!(version_at_least("1.0.0", "0.4.0"));
        assert!(version_at_least("0.4.0", "0.4.0"));
        assert!(!version_at_least("0.3.1", "0.4.0"));
        assert!(version_at_least("0.10.0", "0.4.0"));
    }

    fn list_with(plugin: Value) -> NetworkConfigList {
        from_list(
            &p(),
            json!({"cniVersion":"1.0.0","name":"podnet","plugins":[plugin]}),
        )
        .unwrap()
    }

    #[test]
    fn stdin_carries_name_version_and_prev_result() {
        let list = list_with(json!({"type":"bridge","cniVersion":"0.3.1","name":"other"}));
        let prev = json!({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]});
        let stdin = plugin_stdin(&list, &list.plugins[0], Some(&prev), &Map::new());
        assert_eq!(stdin["name"], "podnet");
        assert_eq!(stdin["cniVersion"], "1.0.0");
        assert_eq!(stdin["prevResult"], prev);
        assert_eq!(stdin["type"], "bridge");
        assert!(stdin.get("runtimeConfig").is_none());

        let first = plugin_stdin(&list, &list.plugins[0], None, &Map::new());
        assert!(first.get("prevResult").is_none());
    }

    #[test]
    fn runtime_config_only_for_enabled_capabilities() {
        let mut args = Map::new();
        args.insert(
            "portMappings".into(),
            json!([{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]),
        );
        args.insert("bandwidth".into(), json!({"ingressRate":1000}));
        args.insert("ips".into(), json!(["10.0.0.9"]));
        args.insert("cgroupPath".into(), json!("/kubepods/pod1"));

        let list = list_with(
            json!({"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false,"ips":true,"unknownCap":true}}),
        );
        let stdin = plugin_stdin(&list, &list.plugins[0], None, &args);
        assert_eq!(
            stdin["runtimeConfig"],
            json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],"ips":["10.0.0.9"]})
        );

        let list = list_with(
            json!({"type":"bandwidth","capabilities":{"bandwidth":true,"cgroupPath":true},
            "runtimeConfig":{"keep":"me"}}),
        );
        let stdin = plugin_stdin(&list, &list.plugins[0], None, &args);
        assert_eq!(
            stdin["runtimeConfig"],
            json!({"keep":"me","bandwidth":{"ingressRate":1000},"cgroupPath":"/kubepods/pod1"})
        );

        let list = list_with(json!({"type":"bridge"}));
        let stdin = plugin_stdin(&list, &list.plugins[0], None, &args);
        assert!(stdin.get("runtimeConfig").is_none());
    }
}
