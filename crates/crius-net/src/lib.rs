//! crius-net
