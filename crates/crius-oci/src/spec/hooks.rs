//! OCI hooks from hooks dirs (CRI-O's `hooks_dir`, the `oci-hooks(5)` format 1.0.0, which
//! the NVIDIA container toolkit, among others, installs): each `*.json` file names a hook,
//! the conditions under which a container gets it and the stages it runs at.
//!
//! The dirs are read at every CreateContainer, so a hook installed while the daemon runs
//! counts at once. A file of a later dir replaces the file of the same name in an earlier
//! one; hooks are added in file-name order. One unusable file fails every CreateContainer
//! with its path and why, as in the reference implementation: running containers without
//! a hook the operator installed (a GPU hook, say) would be worse than not running them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hook, Spec};
use regex::Regex;
use serde::Deserialize;
use tracing::debug;

use super::cdi::add_hook;
use crate::Error;

/// CRI-O's default hooks dirs, in increasing precedence.
pub const DEFAULT_HOOKS_DIRS: &[&str] = &[
    "/usr/share/containers/oci/hooks.d",
    "/etc/containers/oci/hooks.d",
];

const STAGES: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HookFile {
    version: String,
    hook: HookEntry,
    when: When,
    stages: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HookEntry {
    path: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    timeout: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct When {
    #[serde(default)]
    always: Option<bool>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    has_bind_mounts: Option<bool>,
}

/// One valid hook file, its patterns compiled.
#[derive(Debug)]
struct HookDef {
    hook: Hook,
    stages: Vec<String>,
    always: Option<bool>,
    annotations: Vec<(Regex, Regex)>,
    commands: Vec<Regex>,
    has_bind_mounts: Option<bool>,
}

impl HookDef {
    /// The `when` of oci-hooks(5): every condition that is set must hold (a `commands`
    /// list holds when any of its patterns matches `process.args[0]`, an annotation pair
    /// when some annotation matches both patterns); with none set, nothing matches.
    fn matches(&self, args0: &str, annotations: &HashMap<String, String>, bind: bool) -> bool {
        let mut any = false;
        if let Some(always) = self.always {
            if !always {
                return false;
            }
            any = true;
        }
        if let Some(want) = self.has_bind_mounts {
            if !(want && bind) {
                return false;
            }
            any = true;
        }
        for (k, v) in &self.annotations {
            if !annotations
                .iter()
                .any(|(key, value)| k.is_match(key) && v.is_match(value))
            {
                return false;
            }
            any = true;
        }
        if !self.commands.is_empty() {
            return self.commands.iter().any(|c| c.is_match(args0));
        }
        any
    }
}

/// Reads one hook file; the reason when it cannot be used.
fn read_hook(path: &Path) -> Result<HookDef, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let file: HookFile = serde_json::from_str(&text).map_err(|e| format!("does not parse: {e}"))?;
    if file.version != "1.0.0" {
        return Err(format!(
            "version {:?} is not supported (only 1.0.0)",
            file.version
        ));
    }
    let hp = Path::new(&file.hook.path);
    if !hp.is_absolute() {
        return Err(format!("hook path {:?} is not absolute", file.hook.path));
    }
    if let Err(e) = std::fs::metadata(hp) {
        return Err(format!("hook path {:?}: {e}", file.hook.path));
    }
    if file.hook.timeout.is_some_and(|t| t <= 0) {
        return Err("timeout must be positive".into());
    }
    if file.stages.is_empty() {
        return Err("no stages".into());
    }
    for s in &file.stages {
        if !STAGES.contains(&s.as_str()) {
            return Err(format!(
                "unknown stage {s:?} (one of {})",
                STAGES.join(", ")
            ));
        }
    }
    let re = |what: &str, p: &str| Regex::new(p).map_err(|e| format!("{what} pattern {p:?}: {e}"));
    let mut annotations = Vec::new();
    for (k, v) in &file.when.annotations {
        annotations.push((re("annotation key", k)?, re("annotation value", v)?));
    }
    let commands = file
        .when
        .commands
        .iter()
        .map(|c| re("command", c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut hook = Hook::default();
    hook.set_path(hp.to_path_buf());
    hook.set_args((!file.hook.args.is_empty()).then_some(file.hook.args));
    hook.set_env((!file.hook.env.is_empty()).then_some(file.hook.env));
    hook.set_timeout(file.hook.timeout);
    Ok(HookDef {
        hook,
        stages: file.stages,
        always: file.when.always,
        annotations,
        commands,
        has_bind_mounts: file.when.has_bind_mounts,
    })
}

/// The `*.json` files of `dirs` by file name, a later dir's file replacing an earlier's.
fn hook_files(dirs: &[PathBuf]) -> Result<BTreeMap<String, PathBuf>, Error> {
    let mut files = BTreeMap::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::HookFile {
                    path: dir.clone(),
                    reason: e.to_string(),
                })
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            files.insert(name, path);
        }
    }
    Ok(files)
}

/// Adds to `spec` every hook of `dirs` whose conditions the spec meets.
/// `has_bind_mounts`: the request asked for host paths to be mounted.
pub(crate) fn inject(
    spec: &mut Spec,
    dirs: &[PathBuf],
    has_bind_mounts: bool,
) -> Result<(), Error> {
    let files = hook_files(dirs)?;
    if files.is_empty() {
        return Ok(());
    }
    let mut ordered: Vec<(String, PathBuf)> = files.into_iter().collect();
    ordered.sort_by_key(|(name, _)| name.to_lowercase());
    let args0 = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first().cloned())
        .unwrap_or_default();
    let annotations = spec.annotations().clone().unwrap_or_default();
    let mut hooks = spec.hooks().clone().unwrap_or_default();
    let mut added = 0;
    for (_, path) in ordered {
        let def = read_hook(&path).map_err(|reason| Error::HookFile {
            path: path.clone(),
            reason,
        })?;
        if !def.matches(&args0, &annotations, has_bind_mounts) {
            continue;
        }
        for stage in &def.stages {
            add_hook(&mut hooks, stage, def.hook.clone()).map_err(|reason| Error::HookFile {
                path: path.clone(),
                reason,
            })?;
        }
        debug!(hook = %path.display(), stages = ?def.stages, "added OCI hook");
        added += 1;
    }
    if added > 0 {
        spec.set_hooks(Some(hooks));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook_json(when: &str, stages: &str) -> String {
        format!(
            r#"{{"version":"1.0.0","hook":{{"path":"/bin/true","args":["true","x"]}},"when":{when},"stages":{stages}}}"#
        )
    }

    fn spec_with(args0: &str, ann: &[(&str, &str)]) -> Spec {
        let mut s = Spec::default();
        let mut p = s.process().clone().unwrap();
        p.set_args(Some(vec![args0.to_string()]));
        s.set_process(Some(p));
        s.set_annotations(Some(
            ann.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        s
    }

    fn run(files: &[(&str, String)], spec: &mut Spec, bind: bool) -> Result<(), Error> {
        let t = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(t.path().join(name), text).unwrap();
        }
        inject(spec, &[t.path().to_path_buf()], bind)
    }

    fn stage_count(spec: &Spec, stage: &str) -> usize {
        let Some(h) = spec.hooks() else { return 0 };
        #[allow(deprecated)]
        let list = match stage {
            "prestart" => h.prestart(),
            "createRuntime" => h.create_runtime(),
            "poststop" => h.poststop(),
            _ => unreachable!(),
        };
        list.as_ref().map_or(0, |l| l.len())
    }

    /// (when, args0, annotations, bind mounts, injected)
    type Row<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], bool, bool);

    #[test]
    fn when_conditions_table() {
        let rows: &[Row] = &[
            (r#"{"always":true}"#, "/bin/sh", &[], false, true),
            (r#"{"always":false}"#, "/bin/sh", &[], false, false),
            (r#"{}"#, "/bin/sh", &[], false, false),
            (
                r#"{"commands":[".*/init$"]}"#,
                "/sbin/init",
                &[],
                false,
                true,
            ),
            (r#"{"commands":[".*/init$"]}"#, "/bin/sh", &[], false, false),
            (r#"{"hasBindMounts":true}"#, "/bin/sh", &[], true, true),
            (r#"{"hasBindMounts":true}"#, "/bin/sh", &[], false, false),
            (
                r#"{"annotations":{"^gpu$":"^yes$"}}"#,
                "/x",
                &[("gpu", "yes")],
                false,
                true,
            ),
            (
                r#"{"annotations":{"^gpu$":"^yes$"}}"#,
                "/x",
                &[("gpu", "no")],
                false,
                false,
            ),
            // Every set condition must hold.
            (
                r#"{"always":true,"hasBindMounts":true}"#,
                "/x",
                &[],
                false,
                false,
            ),
            (
                r#"{"always":true,"commands":["sh"]}"#,
                "/bin/sh",
                &[],
                false,
                true,
            ),
        ];
        for (when, args0, ann, bind, want) in rows {
            let mut spec = spec_with(args0, ann);
            run(
                &[("a.json", hook_json(when, r#"["prestart","poststop"]"#))],
                &mut spec,
                *bind,
            )
            .unwrap();
            let n = usize::from(*want);
            assert_eq!(stage_count(&spec, "prestart"), n, "{when} {args0} {ann:?}");
            assert_eq!(stage_count(&spec, "poststop"), n, "{when}");
        }
    }

    #[test]
    fn bad_files_fail_with_their_path_and_reason() {
        let rows = [
            (
                hook_json(r#"{"always":true}"#, r#"["prestart"]"#).replace("/bin/true", "bin/true"),
                "not absolute",
            ),
            (
                hook_json(r#"{"always":true}"#, r#"["prestart"]"#)
                    .replace("/bin/true", "/no/such/hook"),
                "/no/such/hook",
            ),
            (
                hook_json(r#"{"always":true}"#, r#"["later"]"#),
                "unknown stage",
            ),
            (
                hook_json(r#"{"commands":["("]}"#, r#"["prestart"]"#),
                "command pattern",
            ),
            (
                hook_json(r#"{"always":true}"#, r#"["prestart"]"#).replace("1.0.0", "0.1.0"),
                "only 1.0.0",
            ),
            ("{".to_string(), "does not parse"),
        ];
        for (text, want) in rows {
            let err = run(
                &[("bad.json", text.clone())],
                &mut spec_with("/x", &[]),
                false,
            )
            .unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::HookFile { .. }), "{msg}");
            assert!(
                msg.contains("bad.json") && msg.contains(want),
                "{text}: {msg}"
            );
        }
    }

    #[test]
    fn later_dirs_replace_files_of_the_same_name_and_order_is_by_name() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("usr"), t.path().join("etc"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(
            a.join("10-x.json"),
            hook_json(r#"{"always":true}"#, r#"["poststop"]"#),
        )
        .unwrap();
        std::fs::write(
            b.join("10-x.json"),
            hook_json(r#"{"always":false}"#, r#"["poststop"]"#),
        )
        .unwrap();
        let second =
            hook_json(r#"{"always":true}"#, r#"["createRuntime"]"#).replace("/bin/true", "/bin/sh");
        let first = hook_json(r#"{"always":true}"#, r#"["createRuntime"]"#);
        std::fs::write(a.join("20-b.json"), second).unwrap();
        std::fs::write(a.join("05-a.json"), first).unwrap();
        std::fs::write(a.join("ignored.txt"), "not a hook").unwrap();
        let mut spec = spec_with("/x", &[]);
        inject(&mut spec, &[a, b], false).unwrap();
        assert_eq!(stage_count(&spec, "poststop"), 0);
        let hooks = spec
            .hooks()
            .as_ref()
            .unwrap()
            .create_runtime()
            .clone()
            .unwrap();
        let paths: Vec<_> = hooks.iter().map(|h| h.path().clone()).collect();
        assert_eq!(
            paths,
            [PathBuf::from("/bin/true"), PathBuf::from("/bin/sh")]
        );
    }

    #[test]
    fn missing_dirs_add_nothing() {
        let mut spec = spec_with("/x", &[]);
        inject(&mut spec, &[PathBuf::from("/nonexistent/hooks.d")], true).unwrap();
        assert!(spec.hooks().is_none());
    }
}
