//! Client side of the per-container monitor.
