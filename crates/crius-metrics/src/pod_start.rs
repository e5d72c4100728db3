//! Pod start latency: from RunPodSandbox's arrival to the StartContainer that leaves the
//! last of the pod's containers running.
//!
//! The CRI never says how many containers a pod will have: the kubelet creates and
//! starts them one after another. So a start that leaves every container running is a
//! candidate end, and it becomes the pod's figure once no new container came for
//! [`POD_START_SETTLE`] (a later start replaces it). The figure is the time of that
//! start, not of the settling; each pod is counted once. A pod whose init container runs
//! longer than the settle time is measured to its first running container.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a pod's containers must all run, with no new one made, before its start
/// counts as ended.
pub const POD_START_SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct PodStart {
    arrived: Instant,
    /// The last start that left every container running, not yet counted.
    candidate: Option<Instant>,
    counted: bool,
}

/// Pods between RunPodSandbox and their counted start (and, once counted, until
/// removed, so a container restarted later is not a second start).
#[derive(Debug, Default)]
pub(crate) struct PodStarts {
    pods: Mutex<HashMap<String, PodStart>>,
}

impl PodStarts {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, PodStart>) -> T) -> T {
        f(&mut self.pods.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn run(&self, pod_id: &str, arrived: Instant) {
        self.with(|pods| {
            pods.insert(
                pod_id.to_string(),
                PodStart {
                    arrived,
                    candidate: None,
                    counted: false,
                },
            )
        });
    }

    pub(crate) fn container_created(&self, pod_id: &str) {
        self.with(|pods| {
            if let Some(p) = pods.get_mut(pod_id) {
                p.candidate = None;
            }
        });
    }

    pub(crate) fn all_running(&self, pod_id: &str, at: Instant) {
        self.with(|pods| {
            if let Some(p) = pods.get_mut(pod_id).filter(|p| !p.counted) {
                p.candidate = Some(at);
            }
        });
    }

    pub(crate) fn removed(&self, pod_id: &str) {
        self.with(|pods| pods.remove(pod_id));
    }

    /// The latencies of the pods whose candidate has settled by `now`; each once.
    pub(crate) fn settled(&self, now: Instant) -> Vec<Duration> {
        self.with(|pods| {
            let mut out = Vec::new();
            for p in pods.values_mut().filter(|p| !p.counted) {
                if let Some(at) = p.candidate {
                    if now.saturating_duration_since(at) >= POD_START_SETTLE {
                        out.push(at.saturating_duration_since(p.arrived));
                        p.counted = true;
                        p.candidate = None;
                    }
                }
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_start_counts_once_after_settling() {
        let starts = PodStarts::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        starts.run("p", t0);
        starts.all_running("p", ms(100)); // first container running
        starts.container_created("p"); // a second one comes
        assert!(starts.settled(ms(100) + POD_START_SETTLE).is_empty());
        starts.all_running("p", ms(300));
        assert!(starts.settled(ms(1000)).is_empty(), "not settled yet");
        let got = starts.settled(ms(300) + POD_START_SETTLE);
        assert_eq!(got, vec![Duration::from_millis(300)]);
        // Counted once: a restart later is no second start.
        starts.all_running("p", ms(10_000));
        assert!(starts.settled(ms(20_000)).is_empty());
        starts.removed("p");
        assert!(starts.with(|p| p.is_empty()));
    }

    #[test]
    fn pods_made_before_the_daemon_started_are_ignored() {
        let starts = PodStarts::default();
        starts.all_running("old", Instant::now());
        starts.container_created("old");
        assert!(starts
            .settled(Instant::now() + POD_START_SETTLE * 2)
            .is_empty());
    }
}
