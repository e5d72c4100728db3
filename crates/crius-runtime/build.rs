//! Links `crius-runtime` statically, at a fixed address: it starts three or
//! four times per container (create, its one re-exec, start, delete), and
//! the dynamic loader's work was a quarter of each start. Measured with
//! e2e/bench/runtime/ccd.py (create+start+delete, median of 40): dynamic
//! 11.5 ms, static PIE 9.2 ms, static at a fixed address 8.0 ms. The fixed
//! address gives up ASLR of the runtime's own code (its stack, heap and
//! mappings stay randomized): its processes are short-lived, memory-safe
//! Rust, and none can be traced from the container.

fn main() {
    crius_static_link::link_bins_statically(&crius_static_link::Options {
        extra_libs: &["seccomp"],
        strip_release: false,
        pie: false,
    });
}
