//! Untrusted text on the terminal (issue #15, finding 6): ESC, CR and other control characters
//! in a `Run` step, in file names and in refused entry names are shown escaped, by `airgap` and
//! by the carried unpacker, never sent raw.

use std::fs;
use std::path::Path;
use std::process::Command;

use airgap_archive::format::manifest::StepRecord;
use airgap_archive::format::model::InstallStep;
use airgap_archive::Entry;
use airgap_archive::PlanOptions;
use airgap_tests::archive::*;
use airgap_tests::{airgap, run, tempdir};

/// A step that looks harmless once the terminal has obeyed its escapes.
fn hidden_step() -> StepRecord {
    StepRecord {
        plugin: "test".into(),
        step: InstallStep::Run {
            description: "compile\u{1b}[8m hidden".into(),
            program: "sh".into(),
            args: vec!["-c".into(), "touch ran-evil\r\u{1b}[2Kecho harmless".into()],
            env: Default::default(),
        },
    }
}

fn hostile_bundle(tmp: &Path) -> std::path::PathBuf {
    let tree = tmp.join("src");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("look\u{1b}[2K\rhere"), b"x").unwrap();
    let p = plan(&[Entry::path(&tree, "data")], PlanOptions::default()).unwrap();
    let mut inp = input("b");
    inp.install_steps = vec![hidden_step()];
    let out = tmp.join("b.tar.gz");
    write(&p, inp, &out, None);
    out
}

fn assert_clean(what: &str, text: &str) {
    for c in ['\u{1b}', '\r', '\u{8}', '\u{9b}'] {
        assert!(
            !text.contains(c),
            "{what}: raw {c:?} reached the terminal:\n{text:?}"
        );
    }
}

#[test]
fn control_characters_from_a_bundle_are_escaped_in_inspect_verify_and_unpack() {
    let tmp = tempdir();
    let bundle = hostile_bundle(tmp.path());

    let done = run(airgap().args(["inspect", "--largest", "5"]).arg(&bundle)).success();
    assert_clean("inspect", &done.stdout);
    assert_clean("inspect", &done.stderr);
    // The step shown exactly, word by word, its escapes visible.
    assert!(
        done.stdout
            .contains("sh -c 'touch ran-evil\\r\\u{1b}[2Kecho harmless'"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("look\\u{1b}[2K\\rhere"),
        "{}",
        done.stdout
    );

    let done = run(airgap().arg("verify").arg(&bundle)).success();
    assert_clean("verify", &done.stdout);
    assert_clean("verify", &done.stderr);

    let dest = tmp.path().join("dest");
    let done = run(airgap().arg("unpack").arg(&bundle).arg(&dest)).success();
    assert_clean("unpack", &done.stderr);
    assert!(
        done.stderr
            .contains("running compile\\u{1b}[8m hidden: sh -c 'touch ran-evil\\r"),
        "{}",
        done.stderr
    );

    let dest2 = tmp.path().join("dest2");
    let done = run(Command::new(unpacker()).arg(&bundle).arg(&dest2)).success();
    assert_clean("carried unpacker", &done.stderr);
    assert!(
        done.stderr
            .contains("sh -c 'touch ran-evil\\r\\u{1b}[2Kecho harmless'"),
        "{}",
        done.stderr
    );
}

#[test]
fn a_refused_entry_name_is_escaped_in_the_error() {
    let tmp = tempdir();
    let entries = vec![
        Raw::dir("b"),
        Raw::file("b/ok", b"ok"),
        Raw::file("b/x\u{1b}]0;owned\u{7}\u{1b}[2K\rfine", b"evil"),
    ];
    let records = vec![record_for("b", &entries[1])];
    let bundle = tmp.path().join("b.tar");
    craft(&bundle, "b", records, &entries);
    let dest = tmp.path().join("dest");
    for args in [
        vec!["verify".to_string(), bundle.display().to_string()],
        vec![
            "unpack".to_string(),
            bundle.display().to_string(),
            dest.display().to_string(),
        ],
    ] {
        let done = run(airgap().args(&args)).failure();
        assert_clean(&args[0], &done.stderr);
        assert!(
            done.stderr.contains("x\\u{1b}]0;owned\\u{7}"),
            "{}",
            done.stderr
        );
    }
    let done = run(Command::new(unpacker()).arg(&bundle).arg(&dest)).failure();
    assert_clean("carried unpacker", &done.stderr);
    assert!(
        done.stderr.contains("x\\u{1b}]0;owned\\u{7}"),
        "{}",
        done.stderr
    );
    assert!(!dest.exists());
}
