//! Runtime handlers speaking the runc command line.
