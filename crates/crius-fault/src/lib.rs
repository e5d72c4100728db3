//! Crash points: named places in the CRI calls that change state, where a test build of
//! crius kills itself with SIGKILL, so a test can restart it and check that nothing was
//! lost or leaked (`e2e/tests/crash_points.rs`).
//!
//! Code marks a point with one line, `crius_fault::point!("run_pod.netns_made");`. Without
//! the `enabled` feature (every normal build) the macro expands to nothing. With it, the
//! environment variable [`ENV`] (`NAME` or `NAME:NTH`) arms one point: the NTH time (1 by
//! default) the process reaches it, it writes a line to stderr and sends itself SIGKILL.
//! Every point is listed in [`POINTS`] with the CRI call that reaches it; a unit test
//! holds the list and the marks in the sources to each other.

#[cfg(all(feature = "enabled", not(debug_assertions)))]
compile_error!("crius-fault's `enabled` feature is for test (debug) builds only");

/// The variable that arms a point: `NAME` or `NAME:NTH`.
pub const ENV: &str = "CRIUS_FAULT_POINT";

/// The CRI call whose handling reaches a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    RunPodSandbox,
    StopPodSandbox,
    RemovePodSandbox,
    CreateContainer,
    StartContainer,
    StopContainer,
    RemoveContainer,
    PullImage,
    RemoveImage,
}

/// A crash point: its name and the call that reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub name: &'static str,
    pub call: Call,
}

const fn p(name: &'static str, call: Call) -> Point {
    Point { name, call }
}

/// Every crash point, in the order the calls reach them.
pub const POINTS: &[Point] = &[
    // RunPodSandbox (crius-core pod.rs, crius-net)
    p("run_pod.dirs_made", Call::RunPodSandbox),
    p("netns.pin_file_made", Call::RunPodSandbox),
    p("run_pod.netns_made", Call::RunPodSandbox),
    p("cni.add.cache_written", Call::RunPodSandbox),
    p("cni.add.plugin_done", Call::RunPodSandbox),
    p("cni.add.result_cached", Call::RunPodSandbox),
    p("run_pod.shm_mounted", Call::RunPodSandbox),
    p("run_pod.pause_rootfs_mounted", Call::RunPodSandbox),
    p("run_pod.pause_created", Call::RunPodSandbox),
    p("run_pod.pause_started", Call::RunPodSandbox),
    p("run_pod.recorded", Call::RunPodSandbox),
    // CreateContainer (container.rs)
    p("create_container.dirs_made", Call::CreateContainer),
    p("create_container.rootfs_mounted", Call::CreateContainer),
    p("create_container.bundle_written", Call::CreateContainer),
    p("create_container.runtime_created", Call::CreateContainer),
    p("create_container.task_created", Call::CreateContainer),
    p("create_container.recorded", Call::CreateContainer),
    // StartContainer
    p("start_container.started", Call::StartContainer),
    p("start_container.recorded", Call::StartContainer),
    // StopContainer
    p("stop_container.signalled", Call::StopContainer),
    p("stop_container.killed", Call::StopContainer),
    p("container.exit_recorded", Call::StopContainer),
    // RemoveContainer
    p("remove_container.runtime_deleted", Call::RemoveContainer),
    p("remove_container.rootfs_unmounted", Call::RemoveContainer),
    p("remove_container.dirs_discarded", Call::RemoveContainer),
    p("remove_container.record_removed", Call::RemoveContainer),
    // StopPodSandbox
    p("stop_pod.containers_stopped", Call::StopPodSandbox),
    p("stop_pod.pause_killed", Call::StopPodSandbox),
    p("cni.del.plugin_done", Call::StopPodSandbox),
    p("stop_pod.network_torn_down", Call::StopPodSandbox),
    p("stop_pod.netns_removed", Call::StopPodSandbox),
    p("stop_pod.recorded", Call::StopPodSandbox),
    // RemovePodSandbox
    p("remove_pod.containers_removed", Call::RemovePodSandbox),
    p("remove_pod.pause_deleted", Call::RemovePodSandbox),
    p("remove_pod.rootfs_unmounted", Call::RemovePodSandbox),
    p("remove_pod.dirs_discarded", Call::RemovePodSandbox),
    p("remove_pod.record_removed", Call::RemovePodSandbox),
    // PullImage (crius-image)
    p("pull.layer_unpacked", Call::PullImage),
    p("pull.layer_committed", Call::PullImage),
    p("pull.blobs_written", Call::PullImage),
    p("pull.recorded", Call::PullImage),
    // RemoveImage
    p("remove_image.index_saved", Call::RemoveImage),
    p("remove_image.layers_detached", Call::RemoveImage),
];

/// Marks a crash point (a name listed in [`POINTS`]). Nothing without the `enabled`
/// feature.
#[cfg(feature = "enabled")]
#[macro_export]
macro_rules! point {
    ($name:literal) => {
        $crate::hit($name)
    };
}

/// Marks a crash point (a name listed in [`POINTS`]). Nothing without the `enabled`
/// feature.
#[cfg(not(feature = "enabled"))]
#[macro_export]
macro_rules! point {
    ($name:literal) => {};
}

/// Parses [`ENV`]'s value: a listed point name and the hit to die at (at least 1).
pub fn parse(value: &str) -> Result<(&'static str, u32), String> {
    let (name, nth) = match value.rsplit_once(':') {
        Some((name, nth)) => {
            let nth = nth.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("{ENV}={value}: the hit count {nth:?} is not a number above 0")
            })?;
            (name, nth)
        }
        None => (value, 1),
    };
    let point = POINTS.iter().find(|p| p.name == name).ok_or_else(|| {
        format!(
            "{ENV}={value}: no crash point {name:?}; the points are {}",
            POINTS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
        )
    })?;
    Ok((point.name, nth))
}

/// The point [`ENV`] arms in this build: `Ok(None)` when none is (or the build cannot
/// inject faults), an error naming the known points when the value is not one.
pub fn armed() -> Result<Option<&'static str>, String> {
    #[cfg(feature = "enabled")]
    {
        armed::get().map(|a| a.map(|a| a.name))
    }
    #[cfg(not(feature = "enabled"))]
    {
        Ok(None)
    }
}

#[cfg(feature = "enabled")]
mod armed {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;

    pub(crate) struct Armed {
        pub name: &'static str,
        nth: u32,
        hits: AtomicU32,
    }

    static ARMED: OnceLock<Result<Option<Armed>, String>> = OnceLock::new();

    pub(crate) fn get() -> Result<Option<&'static Armed>, String> {
        ARMED
            .get_or_init(|| match std::env::var(super::ENV) {
                Ok(value) if !value.is_empty() => super::parse(&value).map(|(name, nth)| {
                    Some(Armed {
                        name,
                        nth,
                        hits: AtomicU32::new(0),
                    })
                }),
                _ => Ok(None),
            })
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }

    pub(crate) fn reached(name: &'static str) {
        let Ok(Some(armed)) = get() else {
            return;
        };
        if armed.name != name {
            return;
        }
        let hit = armed.hits.fetch_add(1, Ordering::SeqCst) + 1;
        if hit == armed.nth {
            eprintln!("crius: crash point {name} reached (hit {hit}); sending SIGKILL to itself");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
            // SIGKILL cannot be caught; nothing runs after it is delivered.
            loop {
                std::thread::park();
            }
        }
    }
}

/// What [`point!`] calls in a build with the `enabled` feature.
#[cfg(feature = "enabled")]
#[doc(hidden)]
pub fn hit(name: &'static str) {
    debug_assert!(
        POINTS.iter().any(|p| p.name == name),
        "crash point {name} is not in crius_fault::POINTS"
    );
    armed::reached(name);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

    #[test]
    fn values_parse_to_a_listed_point_and_a_hit() {
        assert_eq!(parse("run_pod.recorded"), Ok(("run_pod.recorded", 1)));
        assert_eq!(
            parse("cni.add.plugin_done:2"),
            Ok(("cni.add.plugin_done", 2))
        );
        for bad in ["nope", "run_pod.recorded:0", "run_pod.recorded:x", ""] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(ENV), "{bad}: {err}");
        }
        assert!(parse("nope").unwrap_err().contains("run_pod.recorded"));
    }

    fn marks_in(dir: &Path, found: &mut HashMap<String, Vec<String>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            // This crate's docs show the mark; they are not points.
            if path.ends_with("crius-fault") || path.ends_with("target") {
                continue;
            }
            if path.is_dir() {
                marks_in(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for part in text.split("crius_fault::point!(\"").skip(1) {
                    let name = part.split('"').next().unwrap().to_string();
                    found
                        .entry(name)
                        .or_default()
                        .push(path.display().to_string());
                }
            }
        }
    }

    #[test]
    fn every_listed_point_is_marked_once_and_every_mark_is_listed() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = HashMap::new();
        marks_in(&crates, &mut found);
        for point in POINTS {
            let at = found.remove(point.name).unwrap_or_default();
            assert_eq!(at.len(), 1, "point {} is marked at {at:?}", point.name);
        }
        assert!(found.is_empty(), "marks not in POINTS: {found:?}");
        let mut names: Vec<_> = POINTS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), POINTS.len(), "a point is listed twice");
    }
}
