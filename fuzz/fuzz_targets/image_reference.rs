#![no_main]
//! cargo fuzz run image_reference: see crates/crius-fuzz.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(body) = crius_fuzz::target("image_reference") {
        body(data);
    }
});
