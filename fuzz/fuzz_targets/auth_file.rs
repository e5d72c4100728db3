#![no_main]
//! cargo fuzz run auth_file: see crates/crius-fuzz.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(body) = crius_fuzz::target("auth_file") {
        body(data);
    }
});
