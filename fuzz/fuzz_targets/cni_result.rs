#![no_main]
//! cargo fuzz run cni_result: see crates/crius-fuzz.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(body) = crius_fuzz::target("cni_result") {
        body(data);
    }
});
