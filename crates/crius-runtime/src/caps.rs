//! The five capability sets of the process.

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;

use crate::error::{Error, Result};

/// The sets a process gets, parsed from the spec's names.
#[derive(Debug, Default, Clone)]
pub struct CapSets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

fn parse_set(names: &Option<oci_spec::runtime::Capabilities>) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for c in names.iter().flatten() {
        // oci-spec already knows the names; go through the string for caps' type.
        let name = c.to_string();
        let name = if name.starts_with("CAP_") {
            name
        } else {
            format!("CAP_{name}")
        };
        out.insert(
            Capability::from_str(&name).map_err(|_| Error::UnknownCapability(name.clone()))?,
        );
    }
    Ok(out)
}

/// Parses every set; a set the spec leaves out is empty (so inheritable
/// stays empty unless asked: CVE-2022-24769).
pub fn parse(c: Option<&LinuxCapabilities>) -> Result<CapSets> {
    let Some(c) = c else {
        return Ok(CapSets::default());
    };
    Ok(CapSets {
        bounding: parse_set(c.bounding())?,
        effective: parse_set(c.effective())?,
        permitted: parse_set(c.permitted())?,
        inheritable: parse_set(c.inheritable())?,
        ambient: parse_set(c.ambient())?,
    })
}

/// Checks the raw names of a spec's capabilities before oci-spec's own
/// parsing hides which one was wrong (config.json is read as a value first).
pub fn check_names(config: &serde_json::Value) -> Result<()> {
    let Some(caps) = config
        .pointer("/process/capabilities")
        .and_then(|c| c.as_object())
    else {
        return Ok(());
    };
    for set in caps.values() {
        for name in set.as_array().into_iter().flatten() {
            let n = name.as_str().unwrap_or_default();
            if Capability::from_str(n).is_err() {
                return Err(Error::UnknownCapability(n.to_string()));
            }
        }
    }
    Ok(())
}

/// Drops from the bounding set everything not in `keep`. Needs CAP_SETPCAP,
/// so it comes before the user change.
pub fn drop_bounding(keep: &CapsHashSet) -> Result<()> {
    let all = caps::runtime::thread_all_supported();
    for c in all {
        if !keep.contains(&c) {
            caps::drop(None, CapSet::Bounding, c)
                .map_err(|e| Error::Init(format!("drop {c} from the bounding set: {e}")))?;
        }
    }
    Ok(())
}

/// Sets inheritable (while CAP_SETPCAP is still held), effective (so it is
/// never above permitted), then permitted, then raises the ambient ones.
pub fn apply(sets: &CapSets) -> Result<()> {
    caps::set(None, CapSet::Inheritable, &sets.inheritable)
        .map_err(|e| Error::Init(format!("set inheritable capabilities: {e}")))?;
    caps::set(None, CapSet::Effective, &sets.effective)
        .map_err(|e| Error::Init(format!("set effective capabilities: {e}")))?;
    caps::set(None, CapSet::Permitted, &sets.permitted)
        .map_err(|e| Error::Init(format!("set permitted capabilities: {e}")))?;
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| Error::Init(format!("clear ambient capabilities: {e}")))?;
    for c in &sets.ambient {
        // As runc: an ambient cap not in permitted and inheritable cannot be raised; skip it.
        if sets.permitted.contains(c) && sets.inheritable.contains(c) {
            caps::raise(None, CapSet::Ambient, *c)
                .map_err(|e| Error::Init(format!("raise ambient {c}: {e}")))?;
        }
    }
    Ok(())
}
