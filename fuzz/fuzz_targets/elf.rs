//! The ELF reader on arbitrary bytes: never panics, and the queries on what it accepts
//! never panic either.
#![no_main]

use std::path::Path;

use airgap_elf::ElfFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = airgap_elf::is_elf_bytes(data);
    let Ok(elf) = ElfFile::parse_bytes(Path::new("fuzz.so"), data) else {
        return;
    };
    let _ = elf.needed();
    let _ = elf.rpath();
    let _ = elf.runpath();
    let _ = elf.soname();
    let _ = elf.symbol_versions();
    let _ = elf.compatible_with(&elf);
    let _ = format!("{elf:?}");
});
