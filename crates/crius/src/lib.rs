//! The crius daemon: configuration, command line, logging, the CRI socket and signals.
//! The binary in `main.rs` only dispatches to these modules.

pub mod check;
pub mod cli;
pub mod config;
pub mod core_config;
pub mod deadline;
pub mod h2_authority;
pub mod logging;
pub mod metrics;
pub mod mounts;
pub mod notify;
pub mod otlp;
pub mod pull;
pub mod server;
pub mod socket;
pub mod status;
pub mod wipe;
