//! crius-cri
