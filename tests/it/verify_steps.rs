//! `verify` refuses exactly the install steps `unpack` refuses, with the same message (issue
//! #15, unclear messages: verify passed bundles that unpack then refused). One check in the
//! reader serves both, and the carried unpacker after `tar xf` too.

use std::process::Command;

use airgap_archive::format::manifest::FORMAT;
use airgap_archive::format::model::{InstallStep, PrefixFile, PrefixMode};
use airgap_archive::format::tarfmt::EntryType;
use airgap_archive::{Manifest, StepRecord};
use airgap_tests::archive::{craft_manifest, gnu_tar, record_for, unpacker, Raw};
use airgap_tests::{airgap, run, tempdir};

/// A bundle `b` with a file, a directory and a symlink, and one `RewritePrefix` step.
fn bundle_with_step(out: &std::path::Path, old_prefix: &str, file: &str, capacity: Option<usize>) {
    let entries = vec![
        Raw::dir("b"),
        Raw::file("b/f.txt", b"/build/prefix/lib\n"),
        Raw::dir("b/d"),
        Raw::new("b/link", EntryType::Symlink, 0o777, b"f.txt", b""),
    ];
    let manifest = Manifest {
        format: FORMAT,
        bundle_name: "b".into(),
        airgap_version: "0.0.0-test".into(),
        files: entries[1..].iter().map(|r| record_for("b", r)).collect(),
        install_steps: vec![StepRecord {
            plugin: "files".into(),
            step: InstallStep::RewritePrefix {
                old_prefix: old_prefix.into(),
                root: ".".into(),
                files: vec![{
                    // Text, as the step always was; binary where a capacity is recorded.
                    let mode = if capacity.is_some() {
                        PrefixMode::Binary
                    } else {
                        PrefixMode::Text
                    };
                    let mut prefix_file = PrefixFile::new(file, mode);
                    prefix_file.capacity = capacity;
                    prefix_file
                }],
            },
        }],
        ..Manifest::default()
    };
    craft_manifest(out, "b", &manifest, &entries);
}

#[test]
fn verify_refuses_the_install_steps_unpack_refuses_with_the_same_message() {
    let long = format!("/{}", "p".repeat(4999));
    let cases = [
        ("empty old_prefix", "", "f.txt", "empty prefix"),
        (
            "a directory",
            "/build/prefix",
            "d",
            "file \"d\" is not a file of the bundle",
        ),
        (
            "a symlink",
            "/build/prefix",
            "link",
            "file \"link\" is not a file of the bundle",
        ),
        (
            "a missing file",
            "/build/prefix",
            "nothere.txt",
            "file \"nothere.txt\" is not a file of the bundle",
        ),
        (
            "the manifest itself",
            "/build/prefix",
            ".airgap/manifest.toml",
            "file \".airgap/manifest.toml\" is not a file of the bundle",
        ),
        (
            "a prefix longer than any path",
            &long,
            "f.txt",
            "the prefix is 5000 bytes, longer than any path (4096 bytes)",
        ),
    ];
    // A binary slot recorded as shorter than the prefix it holds is a broken record.
    let short_room = (
        "room shorter than its prefix",
        "/build/prefix",
        "f.txt",
        "file \"f.txt\" records room for 5 bytes, less than the 13 bytes of the prefix it holds",
        Some(5),
    );
    let cases = cases
        .into_iter()
        .map(|(case, old, file, reason)| (case, old, file, reason, None))
        .chain([short_room]);
    for (case, old, file, reason, capacity) in cases {
        let tmp = tempdir();
        let bundle = tmp.path().join("b.tar");
        bundle_with_step(&bundle, old, file, capacity);
        let expect = format!("install step 1 (rewrite prefix of .): {reason}");
        let verify = run(airgap().arg("verify").arg(&bundle)).failure();
        let dest = tmp.path().join("dest");
        let unpack = run(airgap().arg("unpack").arg(&bundle).arg(&dest)).failure();
        let carried = run(Command::new(unpacker()).arg(&bundle).arg(&dest)).failure();
        for (who, done) in [
            ("verify", &verify),
            ("unpack", &unpack),
            ("airgap-unpack", &carried),
        ] {
            assert!(
                done.stderr.contains(&expect),
                "{case}: {who} does not say {expect:?}:\n{}",
                done.stderr
            );
        }
        let error_line = |s: &str| {
            s.lines()
                .find(|l| l.starts_with("error:"))
                .unwrap_or("")
                .to_string()
        };
        assert!(error_line(&verify.stderr).contains(&expect), "{case}");
        assert_eq!(
            error_line(&verify.stderr),
            error_line(&unpack.stderr),
            "{case}: verify and unpack word it differently"
        );
        assert!(!dest.exists(), "{case}: unpack left {}", dest.display());
        // Extracted the documented way, the carried unpacker refuses it as well.
        gnu_tar(&["xf", &bundle.display().to_string()], tmp.path());
        let from_dir = run(Command::new(unpacker())
            .arg("--from-dir")
            .arg(tmp.path().join("b"))
            .arg(&dest))
        .failure();
        assert!(
            from_dir.stderr.contains(&expect),
            "{case}: airgap-unpack --from-dir:\n{}",
            from_dir.stderr
        );
        assert!(
            !dest.exists(),
            "{case}: unpack --from-dir left {}",
            dest.display()
        );
    }
}
