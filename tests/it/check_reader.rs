//! `airgap check BUNDLE` reads a bundle through the archive's one strict reader: it judges
//! only bytes that `airgap verify` approves, and refuses what verify refuses, with the same
//! words. A second tar reader would check whatever the archive holds, so a swapped file could
//! pass the check while `unpack` then refuses the bundle (or the reverse).

use std::fs;

use airgap_tests::archive::{craft, record_for, Raw};
use airgap_tests::{airgap, run, tempdir};

/// A bundle whose manifest lists a script where the archive holds an ELF program of the
/// same size.
fn swapped_bundle(dir: &std::path::Path) -> std::path::PathBuf {
    let elf = fs::read("/bin/true").expect("read /bin/true");
    let mut text = b"#!/bin/sh\nexit 0\n".to_vec();
    text.resize(elf.len(), b'#');
    let script = Raw {
        mode: 0o755,
        ..Raw::file("b/bin/tool", &text)
    };
    let records = vec![
        record_for("b", &Raw::dir("b/bin")),
        record_for("b", &script),
    ];
    let swapped = Raw {
        data: elf,
        ..script
    };
    let entries = vec![Raw::dir("b"), Raw::dir("b/bin"), swapped];
    let bundle = dir.join("b.tar");
    craft(&bundle, "b", records, &entries);
    bundle
}

#[test]
fn check_of_a_bundle_refuses_what_verify_refuses_with_the_same_words() {
    let tmp = tempdir();
    let bundle = swapped_bundle(tmp.path());
    let verify = run(airgap().arg("verify").arg(&bundle)).failure();
    let check = run(airgap().arg("check").arg(&bundle)).failure();
    let line = verify
        .stderr
        .lines()
        .find(|l| l.contains("hash: bin/tool"))
        .unwrap_or_else(|| panic!("verify names the swapped file:\n{}", verify.stderr));
    assert!(
        check.stderr.contains(line.trim().trim_start_matches("- ")),
        "check says what verify says ({line}):\n{}",
        check.stderr
    );
    // No verdict on bytes nobody approved.
    assert!(!check.stdout.contains("Passed"), "{}", check.stdout);
}

#[test]
fn check_of_an_honest_crafted_bundle_reads_its_elf_file() {
    let tmp = tempdir();
    let elf = fs::read("/bin/true").expect("read /bin/true");
    let tool = Raw {
        mode: 0o755,
        ..Raw::file("b/bin/tool", &elf)
    };
    let records = vec![record_for("b", &Raw::dir("b/bin")), record_for("b", &tool)];
    let bundle = tmp.path().join("b.tar");
    craft(
        &bundle,
        "b",
        records,
        &[Raw::dir("b"), Raw::dir("b/bin"), tool],
    );
    let done = run(airgap().args(["check", "--json"]).arg(&bundle)).success();
    let report: serde_json::Value = serde_json::from_str(&done.stdout).expect("json");
    let objects = report["report"]["objects"]
        .as_array()
        .or_else(|| report["objects"].as_array())
        .unwrap_or_else(|| panic!("objects in {}", done.stdout));
    assert!(
        objects.iter().any(|o| o["path"] == "bin/tool"),
        "the ELF file was read from the bundle: {}",
        done.stdout
    );
}
