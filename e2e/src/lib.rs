//! crius-e2e
