//! crius-image
