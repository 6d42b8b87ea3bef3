//! The manifest parser on arbitrary text: never panics; what parses survives a round trip.
#![no_main]

use airgap_archive::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = Manifest::from_toml(text) else {
        return;
    };
    let _ = manifest.total_size();
    for f in &manifest.files {
        let _ = f.path_bytes();
        let _ = f.target_bytes();
    }
    // What we parsed must write back, and read back as the same thing.
    let Ok(again) = manifest.to_toml() else {
        return;
    };
    let reparsed = Manifest::from_toml(&again)
        .unwrap_or_else(|e| panic!("to_toml wrote text from_toml refuses: {e}\n{again}"));
    let twice = reparsed.to_toml().expect("second to_toml");
    assert_eq!(again, twice, "round trip changed the manifest");
});
