#![no_main]
//! cargo fuzz run layer_unpack: see crates/crius-fuzz.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(body) = crius_fuzz::target("layer_unpack") {
        body(data);
    }
});
