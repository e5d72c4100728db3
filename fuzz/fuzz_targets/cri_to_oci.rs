#![no_main]
//! cargo fuzz run cri_to_oci: see crates/crius-fuzz.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(body) = crius_fuzz::target("cri_to_oci") {
        body(data);
    }
});
