//! crius-monitor-proto
