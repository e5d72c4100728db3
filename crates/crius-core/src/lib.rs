//! crius-core
