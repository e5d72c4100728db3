//! Table-driven tests: CRI field groups -> the exact OCI fields produced.
