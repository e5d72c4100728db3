#![no_main]
//! cargo fuzz run spdy_frames: see crates/crius-fuzz.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(body) = crius_fuzz::target("spdy_frames") {
        body(data);
    }
});
