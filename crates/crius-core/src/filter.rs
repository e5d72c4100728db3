//! The filters of ListPodSandbox and ListContainers: pure functions over records.

use std::collections::HashMap;

use crius_cri_api::v1 as cri;

use crate::model::{ContainerRecord, ContainerState, PodRecord, PodState};

/// Whether every pair of the selector is among the labels.
pub fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// An id filter matches the full id or a prefix of it.
fn id_matches(filter: &str, id: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

/// The CRI state enum for a pod state.
pub fn pod_state_cri(state: PodState) -> cri::PodSandboxState {
    match state {
        PodState::Ready => cri::PodSandboxState::SandboxReady,
        PodState::NotReady => cri::PodSandboxState::SandboxNotready,
    }
}

/// The CRI state enum for a container state.
pub fn container_state_cri(state: ContainerState) -> cri::ContainerState {
    match state {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
    }
}

/// ListPodSandbox's filter.
pub fn pod_matches(filter: &cri::PodSandboxFilter, pod: &PodRecord) -> bool {
    id_matches(&filter.id, &pod.id)
        && filter
            .state
            .as_ref()
            .is_none_or(|s| s.state == pod_state_cri(pod.state) as i32)
        && labels_match(&filter.label_selector, &pod.config.labels)
}

/// ListContainers' filter.
pub fn container_matches(filter: &cri::ContainerFilter, ctr: &ContainerRecord) -> bool {
    id_matches(&filter.id, &ctr.id)
        && id_matches(&filter.pod_sandbox_id, &ctr.pod_id)
        && filter
            .state
            .as_ref()
            .is_none_or(|s| s.state == container_state_cri(ctr.state) as i32)
        && labels_match(&filter.label_selector, &ctr.config.labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(id: &str, state: PodState, labels: &[(&str, &str)]) -> PodRecord {
        PodRecord {
            id: id.into(),
            config: cri::PodSandboxConfig {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            },
            runtime_handler: "runc".into(),
            created_at: 1,
            state,
            ..Default::default()
        }
    }

    #[test]
    fn pod_filter_by_id_prefix_state_and_labels() {
        let p = pod("abcdef", PodState::Ready, &[("app", "web"), ("tier", "1")]);
        let all = cri::PodSandboxFilter::default();
        assert!(pod_matches(&all, &p));
        let by_prefix = cri::PodSandboxFilter {
            id: "abc".into(),
            ..Default::default()
        };
        assert!(pod_matches(&by_prefix, &p));
        let other = cri::PodSandboxFilter {
            id: "abd".into(),
            ..Default::default()
        };
        assert!(!pod_matches(&other, &p));
        let not_ready = cri::PodSandboxFilter {
            state: Some(cri::PodSandboxStateValue {
                state: cri::PodSandboxState::SandboxNotready as i32,
            }),
            ..Default::default()
        };
        assert!(!pod_matches(&not_ready, &p));
        let mut selector = cri::PodSandboxFilter::default();
        selector.label_selector.insert("app".into(), "web".into());
        assert!(pod_matches(&selector, &p));
        selector.label_selector.insert("tier".into(), "2".into());
        assert!(!pod_matches(&selector, &p));
    }

    #[test]
    fn container_filter_by_pod_and_state() {
        let c = ContainerRecord {
            id: "c1".into(),
            pod_id: "p1".into(),
            state: ContainerState::Running,
            ..Default::default()
        };
        let f = cri::ContainerFilter {
            pod_sandbox_id: "p1".into(),
            state: Some(cri::ContainerStateValue {
                state: cri::ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        };
        assert!(container_matches(&f, &c));
        let f = cri::ContainerFilter {
            pod_sandbox_id: "p2".into(),
            ..Default::default()
        };
        assert!(!container_matches(&f, &c));
    }
}
