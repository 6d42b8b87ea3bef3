//! Arbitrary bytes as an (uncompressed) tar stream through the checker `verify` and `unpack`
//! use: never panics, never allocates a declared size.
#![no_main]

use std::path::Path;

use airgap_archive::install::read::verify_stream;
use airgap_archive::NoProgress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = verify_stream(Path::new("fuzz.tar"), data, &NoProgress);
});
