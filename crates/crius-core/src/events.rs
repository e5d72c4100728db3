//! Lifecycle events for `GetContainerEvents` (the kubelet's evented PLEG).

/// What happened to a container (or, for pods, to its infra container).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created (not yet started).
    Created,
    /// Started.
    Started,
    /// Exited or was stopped.
    Stopped,
    /// Removed.
    Deleted,
}

/// One lifecycle event. For a pod's own events `container_id` is the pod id.
#[derive(Debug, Clone)]
pub struct Event {
    /// The container (or the pod, for pod events).
    pub container_id: String,
    /// The pod it belongs to.
    pub pod_id: String,
    /// What happened.
    pub kind: EventKind,
    /// When (ns).
    pub at: i64,
}
