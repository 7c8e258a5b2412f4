#![no_main]
//! Differential fuzzing of the body codec: every input is scanned, stripped and injected, and the
//! results are checked against a slow reference of the codec's contract, against serde_json, and
//! against each other (see `tests/codec_oracle/mod.rs`, shared with the property tests).

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/codec_oracle/mod.rs"]
mod codec_oracle;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = codec_oracle::check(data) {
        panic!("{broken}\ninput: {:?}", String::from_utf8_lossy(data));
    }
});
