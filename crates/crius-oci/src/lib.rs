//! crius-oci
