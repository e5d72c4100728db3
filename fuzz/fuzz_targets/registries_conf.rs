#![no_main]
//! cargo fuzz run registries_conf: see crates/crius-fuzz.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(body) = crius_fuzz::target("registries_conf") {
        body(data);
    }
});
