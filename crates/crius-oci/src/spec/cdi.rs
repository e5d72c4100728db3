//! CDI, the Container Device Interface: devices named `vendor.com/class=name` in a
//! container's `CDI_devices` or its `cdi.k8s.io/*` annotations, resolved from the spec
//! files (YAML or JSON) in the CDI spec dirs and applied to the OCI spec as edits: device
//! nodes (with their cgroup rules), mounts, environment, hooks, extra groups, Intel RDT and
//! network devices.
//!
//! The spec files are read at each CreateContainer that asks for a device, so a vendor's
//! new or changed file counts at once. A later dir wins over an earlier one for a device
//! both define; two files of the same dir defining one device make it unusable. Every spec
//! version up to 1.1.0 is read; a spec using a field newer than its `cdiVersion` is
//! refused, as the reference implementation does. The crate of the CDI project was not
//! used: it brings an HTTP client and a JSON-schema engine (over 200 crates) for what is
//! a small format.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Hook, Hooks, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxIntelRdt, LinuxNetDevice,
    Mount, Spec,
};
use serde::Deserialize;
use tracing::{debug, warn};

use super::devices::host_device;
use super::mounts::sort_by_depth;
use crate::Error;

/// Annotation keys with this prefix name CDI devices (comma-separated values).
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";
/// Where CDI spec files are looked for by default; later dirs take precedence.
pub const DEFAULT_SPEC_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];

/// Spec versions this reader knows, oldest first.
const VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SpecFile {
    cdi_version: String,
    kind: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    devices: Vec<DeviceEntry>,
    #[serde(default)]
    container_edits: Edits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeviceEntry {
    name: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    container_edits: Edits,
}

/// The edits a spec file or one of its devices makes to a container.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Edits {
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    net_devices: Vec<NetDevice>,
    #[serde(default)]
    hooks: Vec<CdiHook>,
    #[serde(default)]
    mounts: Vec<CdiMount>,
    #[serde(default)]
    intel_rdt: Option<IntelRdt>,
    #[serde(default)]
    additional_gids: Vec<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeviceNode {
    path: String,
    #[serde(default)]
    host_path: String,
    #[serde(default, rename = "type")]
    typ: String,
    #[serde(default)]
    major: i64,
    #[serde(default)]
    minor: i64,
    #[serde(default)]
    file_mode: Option<u32>,
    #[serde(default)]
    permissions: String,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    gid: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NetDevice {
    host_interface_name: String,
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CdiHook {
    hook_name: String,
    path: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    timeout: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CdiMount {
    host_path: String,
    container_path: String,
    #[serde(default)]
    options: Vec<String>,
    #[serde(default, rename = "type")]
    typ: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IntelRdt {
    #[serde(default, rename = "closID")]
    clos_id: String,
    #[serde(default)]
    l3_cache_schema: String,
    #[serde(default)]
    mem_bw_schema: String,
    #[serde(default)]
    schemata: Vec<String>,
    #[serde(default)]
    enable_monitoring: bool,
    // Before 1.1.0.
    #[serde(default, rename = "enableCMT")]
    enable_cmt: bool,
    #[serde(default, rename = "enableMBM")]
    enable_mbm: bool,
}

/// The devices of every readable spec file, by fully qualified name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// name -> (priority, spec file index, the device's edits)
    devices: HashMap<String, (usize, usize, Edits)>,
    /// Spec files that gave devices: (path, spec-wide edits).
    specs: Vec<(PathBuf, Edits)>,
    /// Files that could not be used, and devices defined twice, as readable lines.
    problems: Vec<String>,
}

impl Registry {
    /// Reads every `.json` and `.yaml` file of `dirs` (missing dirs are skipped).
    pub(crate) fn load(dirs: &[PathBuf]) -> Registry {
        let mut reg = Registry::default();
        let mut conflicts: HashSet<String> = HashSet::new();
        for (priority, dir) in dirs.iter().enumerate() {
            let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        matches!(
                            p.extension().and_then(|e| e.to_str()),
                            Some("json" | "yaml")
                        )
                    })
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    reg.problems
                        .push(format!("CDI spec dir {}: {e}", dir.display()));
                    continue;
                }
            };
            files.sort();
            for path in files {
                let spec = match read_spec(&path) {
                    Ok(s) => s,
                    Err(reason) => {
                        warn!(path = %path.display(), %reason, "unusable CDI spec file");
                        reg.problems
                            .push(format!("CDI spec {}: {reason}", path.display()));
                        continue;
                    }
                };
                let index = reg.specs.len();
                reg.specs.push((path.clone(), spec.container_edits));
                for dev in spec.devices {
                    let name = format!("{}={}", spec.kind, dev.name);
                    match reg.devices.get(&name) {
                        Some((p, other, _)) if *p == priority => {
                            reg.problems.push(format!(
                                "CDI device {name} is defined by both {} and {}",
                                reg.specs[*other].0.display(),
                                path.display()
                            ));
                            conflicts.insert(name);
                            continue;
                        }
                        _ => {}
                    }
                    reg.devices
                        .insert(name, (priority, index, dev.container_edits));
                }
            }
        }
        for name in conflicts {
            reg.devices.remove(&name);
        }
        reg
    }
}

/// Reads, parses and validates one spec file; the reason when it cannot be used.
fn read_spec(path: &Path) -> Result<SpecFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    parse_spec(&text)
}

/// Parses and validates a spec (YAML, of which JSON is a subset).
fn parse_spec(text: &str) -> Result<SpecFile, String> {
    let spec: SpecFile =
        serde_yaml_ng::from_str(text).map_err(|e| format!("does not parse: {e}"))?;
    validate_spec(&spec)?;
    Ok(spec)
}

fn validate_spec(spec: &SpecFile) -> Result<(), String> {
    let version = spec.cdi_version.trim_start_matches('v');
    let Some(version_idx) = VERSIONS.iter().position(|v| *v == version) else {
        return Err(format!(
            "unknown cdiVersion {:?} (known: {})",
            spec.cdi_version,
            VERSIONS.join(", ")
        ));
    };
    let needed = minimum_version(spec);
    let needed_idx = VERSIONS.iter().position(|v| *v == needed).unwrap_or(0);
    if needed_idx > version_idx {
        return Err(format!(
            "uses fields of CDI {needed} but says cdiVersion {:?}",
            spec.cdi_version
        ));
    }
    validate_kind(&spec.kind)?;
    if spec.devices.is_empty() {
        return Err("defines no devices".into());
    }
    let mut seen = HashSet::new();
    for d in &spec.devices {
        validate_name(&d.name).map_err(|e| format!("device {:?}: {e}", d.name))?;
        if !seen.insert(d.name.as_str()) {
            return Err(format!("names device {:?} twice", d.name));
        }
        validate_edits(&d.container_edits).map_err(|e| format!("device {:?}: {e}", d.name))?;
    }
    validate_edits(&spec.container_edits)
}

/// The oldest spec version that has every field the spec uses.
fn minimum_version(spec: &SpecFile) -> &'static str {
    let mut edits: Vec<&Edits> = vec![&spec.container_edits];
    edits.extend(spec.devices.iter().map(|d| &d.container_edits));
    let has = |f: &dyn Fn(&Edits) -> bool| edits.iter().any(|e| f(e));
    if has(&|e| {
        !e.net_devices.is_empty()
            || e.intel_rdt
                .as_ref()
                .is_some_and(|r| !r.schemata.is_empty() || r.enable_monitoring)
    }) {
        return "1.1.0";
    }
    if has(&|e| e.intel_rdt.is_some() || !e.additional_gids.is_empty()) {
        return "0.7.0";
    }
    let kind_name = spec.kind.split_once('/').map(|(_, n)| n).unwrap_or("");
    if !spec.annotations.is_empty()
        || spec.devices.iter().any(|d| !d.annotations.is_empty())
        || kind_name.contains('.')
    {
        return "0.6.0";
    }
    if has(&|e| e.device_nodes.iter().any(|n| !n.host_path.is_empty()))
        || spec
            .devices
            .iter()
            .any(|d| d.name.starts_with(|c: char| c.is_ascii_digit()))
    {
        return "0.5.0";
    }
    if has(&|e| e.mounts.iter().any(|m| !m.typ.is_empty())) {
        return "0.4.0";
    }
    "0.3.0"
}

/// `vendor.com/class`: a DNS-subdomain vendor and a class name.
fn validate_kind(kind: &str) -> Result<(), String> {
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| format!("kind {kind:?} is not of the form vendor.com/class"))?;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if vendor.is_empty() || vendor.len() > 253 || !vendor.split('.').all(label_ok) {
        return Err(format!(
            "kind {kind:?}: vendor {vendor:?} is not a DNS name"
        ));
    }
    if class.len() > 63 {
        return Err(format!("kind {kind:?}: class is longer than 63 characters"));
    }
    validate_name(class).map_err(|e| format!("kind {kind:?}: class {e}"))
}

/// Alphanumeric at both ends, `-`, `_`, `.` and alphanumerics between.
fn validate_name(name: &str) -> Result<(), String> {
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) {
        return Err(format!(
            "{name:?} must start and end with a letter or digit"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!("{name:?} has the invalid character {c:?}"));
    }
    Ok(())
}

const HOOK_NAMES: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

fn validate_edits(e: &Edits) -> Result<(), String> {
    for v in &e.env {
        if !v.contains('=') || v.starts_with('=') {
            return Err(format!("environment variable {v:?} is not NAME=VALUE"));
        }
    }
    for d in &e.device_nodes {
        if !d.path.starts_with('/') {
            return Err(format!("device node path {:?} is not absolute", d.path));
        }
        if !matches!(d.typ.as_str(), "" | "b" | "c" | "u" | "p") {
            return Err(format!(
                "device node {:?}: invalid type {:?}",
                d.path, d.typ
            ));
        }
        if d.permissions != "none" && d.permissions.chars().any(|c| !"rwm".contains(c)) {
            return Err(format!(
                "device node {:?}: invalid permissions {:?}",
                d.path, d.permissions
            ));
        }
    }
    for h in &e.hooks {
        if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
            return Err(format!("unknown hook name {:?}", h.hook_name));
        }
        if !h.path.starts_with('/') {
            return Err(format!(
                "hook {:?}: path {:?} is not absolute",
                h.hook_name, h.path
            ));
        }
        if h.timeout.is_some_and(|t| t <= 0) {
            return Err(format!("hook {:?}: timeout must be positive", h.hook_name));
        }
    }
    for m in &e.mounts {
        if m.host_path.is_empty() || !m.container_path.starts_with('/') {
            return Err(format!(
                "mount {:?} -> {:?} needs a host path and an absolute container path",
                m.host_path, m.container_path
            ));
        }
    }
    let (mut hosts, mut names) = (HashSet::new(), HashSet::new());
    for n in &e.net_devices {
        if n.host_interface_name.is_empty() || n.name.is_empty() {
            return Err("a net device needs hostInterfaceName and name".into());
        }
        if !hosts.insert(&n.host_interface_name) || !names.insert(&n.name) {
            return Err(format!(
                "net device {:?} -> {:?} is given twice",
                n.host_interface_name, n.name
            ));
        }
    }
    Ok(())
}

/// The CDI device names a container asks for: its `CDI_devices`, then the values of its
/// `cdi.k8s.io/*` annotations (comma-separated), each once, in that order.
pub(crate) fn requested_devices(
    cdi_devices: &[String],
    annotations: &HashMap<String, String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut keys: Vec<&String> = annotations
        .keys()
        .filter(|k| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    let from_annotations = keys
        .into_iter()
        .flat_map(|k| annotations[k].split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty());
    for name in cdi_devices.iter().map(|s| s.trim()).chain(from_annotations) {
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// Checks that `name` is a fully qualified device name, `vendor.com/class=name`.
pub(crate) fn validate_qualified_name(name: &str) -> Result<(), Error> {
    let bad = |reason: String| Error::CdiDeviceName {
        name: name.to_string(),
        reason,
    };
    let (kind, dev) = name
        .split_once('=')
        .ok_or_else(|| bad("not of the form vendor.com/class=name".into()))?;
    validate_kind(kind).map_err(bad)?;
    validate_name(dev).map_err(bad)
}

/// Resolves `names` in the spec files of `dirs` and applies their edits to `spec`.
/// Any device that cannot be resolved fails the whole call, naming it (and the spec files
/// that could not be used, which may be why).
pub(crate) fn inject(spec: &mut Spec, names: &[String], dirs: &[PathBuf]) -> Result<(), Error> {
    if names.is_empty() {
        return Ok(());
    }
    for n in names {
        validate_qualified_name(n)?;
    }
    let reg = Registry::load(dirs);
    let unresolved: Vec<String> = names
        .iter()
        .filter(|n| !reg.devices.contains_key(*n))
        .cloned()
        .collect();
    if !unresolved.is_empty() {
        let dirs = dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(if reg.problems.is_empty() {
            Error::CdiDeviceUnknown {
                devices: unresolved.join(", "),
                dirs,
            }
        } else {
            Error::CdiSpecInvalid {
                devices: unresolved.join(", "),
                dirs,
                problems: reg.problems.join("; "),
            }
        });
    }
    let mut applied_specs = HashSet::new();
    for name in names {
        let (_, spec_index, dev_edits) = &reg.devices[name];
        let (spec_path, spec_edits) = &reg.specs[*spec_index];
        if applied_specs.insert(*spec_index) {
            apply(spec, spec_edits).map_err(|reason| Error::CdiEdit {
                device: name.clone(),
                spec: spec_path.clone(),
                reason,
            })?;
        }
        apply(spec, dev_edits).map_err(|reason| Error::CdiEdit {
            device: name.clone(),
            spec: spec_path.clone(),
            reason,
        })?;
        debug!(device = %name, spec = %spec_path.display(), "applied CDI device");
    }
    Ok(())
}

/// Applies one set of edits to the spec; the reason when the host cannot give what they
/// name (a device node that is not there).
fn apply(spec: &mut Spec, e: &Edits) -> Result<(), String> {
    let mut process = spec.process().clone().unwrap_or_default();
    let mut env = process.env().clone().unwrap_or_default();
    for v in &e.env {
        let key = v.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(v.clone());
    }
    process.set_env(Some(env));
    let (uid, gid) = (process.user().uid(), process.user().gid());
    if !e.additional_gids.is_empty() {
        let mut user = process.user().clone();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        for g in &e.additional_gids {
            if *g != 0 && !gids.contains(g) {
                gids.push(*g);
            }
        }
        user.set_additional_gids(Some(gids));
        process.set_user(user);
    }
    spec.set_process(Some(process));

    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut devices = linux.devices().clone().unwrap_or_default();
    let mut resources = linux.resources().clone().unwrap_or_default();
    let mut rules = resources.devices().clone().unwrap_or_default();
    for node in &e.device_nodes {
        let (dev, rule) = device_node(node, uid, gid)?;
        devices.retain(|d| d.path() != dev.path());
        devices.push(dev);
        rules.extend(rule);
    }
    linux.set_devices(Some(devices));
    resources.set_devices(Some(rules));
    linux.set_resources(Some(resources));
    if let Some(rdt) = &e.intel_rdt {
        let mut r = LinuxIntelRdt::default();
        r.set_clos_id(non_empty(&rdt.clos_id));
        r.set_l3_cache_schema(non_empty(&rdt.l3_cache_schema));
        r.set_mem_bw_schema(non_empty(&rdt.mem_bw_schema));
        if !rdt.schemata.is_empty() {
            r.set_schemata(Some(rdt.schemata.clone()));
        }
        if rdt.enable_monitoring || rdt.enable_cmt || rdt.enable_mbm {
            r.set_enable_monitoring(Some(true));
        }
        linux.set_intel_rdt(Some(r));
    }
    if !e.net_devices.is_empty() {
        let mut nets = linux.net_devices().clone().unwrap_or_default();
        for n in &e.net_devices {
            let mut d = LinuxNetDevice::default();
            d.set_name(Some(n.name.clone()));
            nets.insert(n.host_interface_name.clone(), d);
        }
        linux.set_net_devices(Some(nets));
    }
    spec.set_linux(Some(linux));

    if !e.mounts.is_empty() {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for m in &e.mounts {
            mounts.retain(|x| x.destination() != Path::new(&m.container_path));
            let mut om = Mount::default();
            om.set_destination(PathBuf::from(&m.container_path));
            om.set_source(Some(PathBuf::from(&m.host_path)));
            let bind = m.options.iter().any(|o| o == "bind" || o == "rbind");
            om.set_typ(match (m.typ.is_empty(), bind) {
                (false, _) => Some(m.typ.clone()),
                (true, true) => Some("bind".into()),
                (true, false) => None,
            });
            om.set_options(Some(m.options.clone()));
            mounts.push(om);
        }
        sort_by_depth(&mut mounts);
        spec.set_mounts(Some(mounts));
    }

    if !e.hooks.is_empty() {
        let mut hooks = spec.hooks().clone().unwrap_or_default();
        for h in &e.hooks {
            let mut oh = Hook::default();
            oh.set_path(PathBuf::from(&h.path));
            oh.set_args(non_empty_vec(&h.args));
            oh.set_env(non_empty_vec(&h.env));
            oh.set_timeout(h.timeout);
            add_hook(&mut hooks, &h.hook_name, oh)?;
        }
        spec.set_hooks(Some(hooks));
    }
    Ok(())
}

/// Appends `hook` to the stage named as in the OCI runtime spec.
pub(crate) fn add_hook(hooks: &mut Hooks, stage: &str, hook: Hook) -> Result<(), String> {
    let push = |list: Option<Vec<Hook>>| {
        let mut l = list.unwrap_or_default();
        l.push(hook);
        Some(l)
    };
    #[allow(deprecated)] // prestart is deprecated in the OCI spec but still run by runc
    match stage {
        "prestart" => hooks.set_prestart(push(hooks.prestart().clone())),
        "createRuntime" => hooks.set_create_runtime(push(hooks.create_runtime().clone())),
        "createContainer" => hooks.set_create_container(push(hooks.create_container().clone())),
        "startContainer" => hooks.set_start_container(push(hooks.start_container().clone())),
        "poststart" => hooks.set_poststart(push(hooks.poststart().clone())),
        "poststop" => hooks.set_poststop(push(hooks.poststop().clone())),
        other => return Err(format!("unknown hook stage {other:?}")),
    };
    Ok(())
}

/// The OCI device node and its cgroup rule (none for a fifo, or with permissions "none"),
/// filling type, numbers and mode from the host's node when the spec leaves them out.
fn device_node(
    n: &DeviceNode,
    uid: u32,
    gid: u32,
) -> Result<(LinuxDevice, Option<LinuxDeviceCgroup>), String> {
    let host_path = if n.host_path.is_empty() {
        &n.path
    } else {
        &n.host_path
    };
    let (mut typ, mut major, mut minor, mut mode) = (n.typ.clone(), n.major, n.minor, n.file_mode);
    let complete = !typ.is_empty() && (major != 0 || typ == "p");
    if !complete || mode.is_none() {
        match host_device(Path::new(host_path)) {
            Ok(Some(h)) => {
                let host_typ = match h.typ {
                    LinuxDeviceType::B => "b",
                    _ => "c",
                };
                if !complete {
                    if !typ.is_empty() && typ != host_typ && !(typ == "u" && host_typ == "c") {
                        return Err(format!(
                            "device node {:?}: type {typ:?} but {host_path:?} is of type {host_typ:?}",
                            n.path
                        ));
                    }
                    typ = host_typ.to_string();
                    if major == 0 && minor == 0 {
                        (major, minor) = (h.major, h.minor);
                    }
                }
                mode.get_or_insert(h.mode & 0o777);
            }
            Ok(None) if complete => {}
            Ok(None) => {
                return Err(format!(
                    "device node {:?}: host path {host_path:?} is not a device",
                    n.path
                ))
            }
            Err(_) if complete => {}
            Err(e) => {
                return Err(format!(
                    "device node {:?}: host path {host_path:?}: {e}",
                    n.path
                ))
            }
        }
    }
    let oci_typ = match typ.as_str() {
        "b" => LinuxDeviceType::B,
        "p" => LinuxDeviceType::P,
        "u" => LinuxDeviceType::U,
        _ => LinuxDeviceType::C,
    };
    let mut dev = LinuxDevice::default();
    dev.set_path(PathBuf::from(&n.path));
    dev.set_typ(oci_typ);
    dev.set_major(major);
    dev.set_minor(minor);
    dev.set_file_mode(mode);
    dev.set_uid(n.uid.or((uid > 0).then_some(uid)));
    dev.set_gid(n.gid.or((gid > 0).then_some(gid)));
    let rule = matches!(typ.as_str(), "b" | "c" | "u").then(|| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(if typ == "b" {
            LinuxDeviceType::B
        } else {
            LinuxDeviceType::C
        }));
        r.set_major(Some(major));
        r.set_minor(Some(minor));
        r.set_access(Some(match n.permissions.as_str() {
            "" => "rwm".to_string(),
            "none" => String::new(),
            p => p.to_string(),
        }));
        r
    });
    Ok((dev, rule))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn non_empty_vec(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    const VENDOR_YAML: &str = r#"
cdiVersion: "0.7.0"
kind: crius.test/dev
containerEdits:
  env: ["CDI_SPEC_WIDE=1"]
devices:
  - name: null0
    annotations: {a: b}
    containerEdits:
      env: ["CDI_DEV=null0"]
      deviceNodes:
        - path: /dev/crius-null
          hostPath: /dev/null
      mounts:
        - hostPath: /tmp
          containerPath: /cdi/tmp
          options: [rbind, ro]
      hooks:
        - hookName: createRuntime
          path: /bin/true
          args: [true]
      additionalGids: [0, 44]
"#;

    fn base_spec() -> Spec {
        let mut s = Spec::default();
        let mut p = s.process().clone().unwrap();
        p.set_env(Some(vec!["PATH=/bin".into(), "CDI_DEV=old".into()]));
        s.set_process(Some(p));
        s
    }

    #[test]
    fn a_device_from_yaml_edits_env_nodes_rules_mounts_hooks_and_groups() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "vendor.yaml", VENDOR_YAML);
        let mut spec = base_spec();
        inject(
            &mut spec,
            &["crius.test/dev=null0".into()],
            &[t.path().to_path_buf()],
        )
        .unwrap();
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(env, ["PATH=/bin", "CDI_SPEC_WIDE=1", "CDI_DEV=null0"]);
        let linux = spec.linux().as_ref().unwrap();
        let dev = &linux.devices().as_ref().unwrap()[0];
        assert_eq!(dev.path(), Path::new("/dev/crius-null"));
        assert_eq!(
            (dev.typ(), dev.major(), dev.minor()),
            (LinuxDeviceType::C, 1, 3)
        );
        let rule = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap();
        let rule = rule.last().unwrap();
        assert_eq!((rule.major(), rule.minor()), (Some(1), Some(3)));
        assert_eq!(rule.access().as_deref(), Some("rwm"));
        let m = spec.mounts().as_ref().unwrap();
        let m = m
            .iter()
            .find(|m| m.destination() == Path::new("/cdi/tmp"))
            .unwrap();
        assert_eq!(m.typ().as_deref(), Some("bind"));
        assert_eq!(m.source().as_deref(), Some(Path::new("/tmp")));
        let hooks = spec
            .hooks()
            .as_ref()
            .unwrap()
            .create_runtime()
            .clone()
            .unwrap();
        assert_eq!(hooks[0].path(), Path::new("/bin/true"));
        let gids = spec
            .process()
            .as_ref()
            .unwrap()
            .user()
            .additional_gids()
            .clone();
        assert_eq!(gids, Some(vec![44]));
    }

    #[test]
    fn json_specs_and_the_later_dir_win() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("etc"), t.path().join("run"));
        let spec = |v: &str| {
            format!(
                r#"{{"cdiVersion":"1.1.0","kind":"crius.test/x","devices":[{{"name":"d","containerEdits":{{"env":["V={v}"]}}}}]}}"#
            )
        };
        write(&a, "x.json", &spec("etc"));
        write(&b, "x.json", &spec("run"));
        let mut s = base_spec();
        inject(&mut s, &["crius.test/x=d".into()], &[a, b]).unwrap();
        let env = s.process().as_ref().unwrap().env().clone().unwrap();
        assert!(env.contains(&"V=run".to_string()), "{env:?}");
    }

    #[test]
    fn an_unknown_device_fails_naming_it() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "vendor.yaml", VENDOR_YAML);
        let err = inject(
            &mut base_spec(),
            &["crius.test/dev=nope".into()],
            &[t.path().to_path_buf()],
        )
        .unwrap_err();
        assert!(matches!(err, Error::CdiDeviceUnknown { .. }), "{err}");
        assert!(err.to_string().contains("crius.test/dev=nope"), "{err}");
    }

    #[test]
    fn a_name_that_is_not_qualified_is_refused() {
        for bad in ["null0", "crius.test/dev", "dev=x", "crius.test/dev=-x"] {
            let err = inject(&mut base_spec(), &[bad.into()], &[]).unwrap_err();
            assert!(matches!(err, Error::CdiDeviceName { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn broken_specs_are_named_when_a_device_is_missing() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "broken.yaml", "cdiVersion: [unclosed");
        let twice = VENDOR_YAML.replace(
            "devices:\n",
            "devices:\n  - name: null0\n    containerEdits: {}\n",
        );
        write(t.path(), "twice.yaml", &twice);
        let err = inject(
            &mut base_spec(),
            &["crius.test/dev=null0".into()],
            &[t.path().to_path_buf()],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::CdiSpecInvalid { .. }), "{msg}");
        assert!(msg.contains("broken.yaml: does not parse"), "{msg}");
        assert!(
            msg.contains("twice.yaml: names device \"null0\" twice"),
            "{msg}"
        );
    }

    #[test]
    fn version_rules() {
        let newer = r#"{"cdiVersion":"0.3.0","kind":"a.b/c","devices":[{"name":"d","containerEdits":{"additionalGids":[5]}}]}"#;
        assert!(parse_spec(newer).unwrap_err().contains("CDI 0.7.0"));
        let future = r#"{"cdiVersion":"9.0.0","kind":"a.b/c","devices":[{"name":"d"}]}"#;
        assert!(parse_spec(future)
            .unwrap_err()
            .contains("unknown cdiVersion"));
        let unknown = r#"{"cdiVersion":"1.0.0","kind":"a.b/c","devices":[{"name":"d","x":1}]}"#;
        assert!(parse_spec(unknown).unwrap_err().contains("unknown field"));
        let rel = r#"{"cdiVersion":"1.0.0","kind":"a.b/c","devices":[{"name":"d","containerEdits":{"hooks":[{"hookName":"poststop","path":"x"}]}}]}"#;
        assert!(parse_spec(rel).unwrap_err().contains("not absolute"));
    }

    #[test]
    fn requested_devices_merge_field_and_annotations_once_each() {
        let ann = HashMap::from([
            ("cdi.k8s.io/b".to_string(), "v.io/c=2, v.io/c=1".to_string()),
            ("other".to_string(), "v.io/c=9".to_string()),
        ]);
        let got = requested_devices(&["v.io/c=1".into()], &ann);
        assert_eq!(got, ["v.io/c=1", "v.io/c=2"]);
    }

    #[test]
    fn same_dir_conflicts_make_the_device_unusable() {
        let t = tempfile::tempdir().unwrap();
        let spec = r#"{"cdiVersion":"0.3.0","kind":"a.b/c","devices":[{"name":"d"}]}"#;
        write(t.path(), "1.json", spec);
        write(t.path(), "2.json", spec);
        let err = inject(&mut base_spec(), &["a.b/c=d".into()], &[t.path().into()]).unwrap_err();
        assert!(err.to_string().contains("defined by both"), "{err}");
    }
}
