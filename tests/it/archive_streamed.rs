//! The reader streams the manifest (its records on disk, entries matched in path order): what
//! airgap never writes but a hand-made tar may hold (entries out of path order, an unsorted
//! files block) is still checked exactly, a path listed or archived twice far apart is still
//! refused, and a bundle read from a pipe (no seeking) verifies as the file does.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::{Command, Stdio};

use airgap_archive::format::manifest::FileRecord;
use airgap_archive::install::read::verify_stream;
use airgap_archive::install::unpack::UnpackOptions;
use airgap_archive::{unpack, verify_bundle, ArchiveError, NoProgress};
use airgap_tests::archive::*;
use airgap_tests::tempdir;

/// A tree of a few directories and files, as entries in path (byte) order, as airgap
/// writes them: `a-b` sorts before `a/` (GNU tar would put it after `a`'s contents).
fn entries() -> Vec<Raw> {
    vec![
        Raw::dir("b"),
        Raw::dir("b/a"),
        Raw::dir("b/a-b"),
        Raw::file("b/a-b/three", b"3\n"),
        Raw::file("b/a/one", b"1\n"),
        Raw::file("b/a/two", b"2\n"),
        Raw::dir("b/c"),
        Raw::file("b/c/four", b"4\n"),
    ]
}

fn records(entries: &[Raw]) -> Vec<FileRecord> {
    entries
        .iter()
        .filter(|e| e.path != b"b")
        .map(|e| record_for("b", e))
        .collect()
}

fn problems(err: &ArchiveError) -> String {
    match err {
        ArchiveError::Mismatch { problems, .. } => problems.join("\n"),
        other => other.to_string(),
    }
}

#[test]
fn entries_out_of_path_order_are_checked_as_in_order_ones() {
    let tmp = tempdir();
    let bundle = tmp.path().join("shuffled.tar");
    let sorted = entries();
    let recs = records(&sorted);
    // The directory `c` and its file before `a`, `a/two` before `a/one`, and `a-b` after
    // `a`'s files, as GNU tar orders a tree: parents still come first, as any tar needs.
    let order = [0usize, 6, 7, 1, 5, 4, 2, 3];
    let shuffled: Vec<Raw> = order.iter().map(|&i| sorted[i].clone()).collect();
    craft(&bundle, "b", recs.clone(), &shuffled);
    let report = verify_bundle(&bundle, &NoProgress).unwrap();
    assert_eq!(report.entries, 8);
    let dest = tmp.path().join("dest");
    unpack(&bundle, &dest, &UnpackOptions::default(), &NoProgress).unwrap();
    assert_eq!(fs::read(dest.join("a/two")).unwrap(), b"2\n");
    assert_eq!(fs::read(dest.join("c/four")).unwrap(), b"4\n");

    // Out of order and wrong: the lie is found wherever the entry sits.
    let mut lying = recs.clone();
    lying
        .iter_mut()
        .find(|r| r.path == "c/four")
        .unwrap()
        .sha256 = Some(sha256_hex(b"other"));
    craft(&bundle, "b", lying, &shuffled);
    let err = verify_bundle(&bundle, &NoProgress).unwrap_err();
    assert!(problems(&err).contains("hash: c/four"), "{err}");

    // An entry out of order that repeats an earlier one, far from it, is a duplicate.
    let mut twice = sorted.clone();
    twice.push(Raw::file("b/a/one", b"1\n"));
    craft(&bundle, "b", recs.clone(), &twice);
    let err = verify_bundle(&bundle, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("duplicate entry"), "{err}");
    assert!(err.to_string().contains("b/a/one"), "{err}");

    // An entry out of order that the manifest lacks is an extra; one it lists but the
    // archive lacks is missing.
    let mut extra = sorted.clone();
    extra.push(Raw::file("b/a/zero", b"0\n"));
    extra.remove(5); // b/a/two
    craft(&bundle, "b", recs, &extra);
    let err = verify_bundle(&bundle, &NoProgress).unwrap_err();
    let text = problems(&err);
    assert!(text.contains("extra: a/zero"), "{text}");
    assert!(text.contains("missing: a/two"), "{text}");
}

#[test]
fn an_unsorted_files_block_is_sorted_and_a_path_listed_twice_far_apart_is_refused() {
    let tmp = tempdir();
    let bundle = tmp.path().join("unsorted.tar");
    let sorted = entries();
    let mut recs = records(&sorted);
    recs.reverse();
    craft(&bundle, "b", recs.clone(), &sorted);
    verify_bundle(&bundle, &NoProgress).unwrap();
    let dest = tmp.path().join("dest");
    unpack(&bundle, &dest, &UnpackOptions::default(), &NoProgress).unwrap();
    assert_eq!(fs::read(dest.join("a-b/three")).unwrap(), b"3\n");
    // The unpacked tree keeps the manifest's exact text.
    let listed = fs::read_to_string(dest.join(".airgap/manifest.toml")).unwrap();
    let c = listed.find("\"c/four\"").unwrap();
    let a = listed.find("\"a/one\"").unwrap();
    assert!(c < a, "the manifest was rewritten:\n{listed}");

    // The same path at both ends of an unsorted list.
    let mut twice = recs.clone();
    twice.push(recs[0].clone());
    craft(&bundle, "b", twice, &sorted);
    let err = verify_bundle(&bundle, &NoProgress).unwrap_err();
    assert!(
        err.to_string()
            .contains("the manifest lists this path twice"),
        "{err}"
    );
    assert!(err.to_string().contains("c/four"), "{err}");
}

#[test]
fn a_bundle_read_from_a_pipe_verifies_as_the_file_does() {
    let tmp = tempdir();
    let bundle = tmp.path().join("piped.tar");
    let sorted = entries();
    craft(&bundle, "b", records(&sorted), &sorted);
    let piped = |path: &std::path::Path| {
        let mut cat = Command::new("cat")
            .arg(path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = cat.stdout.take().unwrap();
        let result = verify_stream(path, out, &NoProgress);
        cat.wait().unwrap();
        result
    };
    let report = piped(&bundle).unwrap();
    assert_eq!(report.entries, 8);
    assert_eq!(report.manifest.files.len(), 7);
    assert_eq!(report.manifest.meta.bundle_name, "b");
    // A missing file, through the pipe, is found as from the file.
    let mut fewer = sorted.clone();
    fewer.pop();
    craft(&bundle, "b", records(&sorted), &fewer);
    let err = piped(&bundle).unwrap_err();
    assert!(problems(&err).contains("missing: c/four"), "{err}");
}
