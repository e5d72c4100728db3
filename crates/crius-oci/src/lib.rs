//! crius-oci: OCI runtime spec generation from CRI configs, the runtime CLI
//! handlers and the client side of the container monitor.

pub mod monitor;
mod private;
pub mod runtime;
pub mod shim;
pub mod shim_stream;
pub mod spec;

mod error;
pub use error::Error;
pub use private::{dir_with_mode, private_dir};
