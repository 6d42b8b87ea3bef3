//! What runs on the target is shown (issue #15, finding 8): the exact program and every
//! argument of a `Run` step in `inspect`, in `verify`'s summary and before it runs in `unpack`
//! and the carried unpacker (`NAME/unpack`); `--no-run` installs the files and runs none.

use std::fs;
use std::path::Path;
use std::process::Command;

use airgap_archive::format::manifest::StepRecord;
use airgap_archive::format::model::InstallStep;
use airgap_archive::Entry;
use airgap_archive::PlanOptions;
use airgap_tests::archive::*;
use airgap_tests::{airgap, run, tempdir};

/// A bundle whose one step says "compile" and really runs a script.
fn bundle(tmp: &Path) -> std::path::PathBuf {
    let tree = tmp.join("src");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("f"), b"x").unwrap();
    let p = plan(&[Entry::path(&tree, "data")], PlanOptions::default()).unwrap();
    let mut inp = input("b");
    inp.install_steps = vec![StepRecord {
        plugin: "test".into(),
        step: InstallStep::Run {
            description: "compile bytecode".into(),
            program: "sh".into(),
            args: vec!["-c".into(), "touch ran; echo it ran".into()],
            env: Default::default(),
        },
    }];
    let out = tmp.join("b.tar.gz");
    write(&p, inp, &out, Some(unpacker()));
    out
}

const SHOWN: &str = "compile bytecode: runs sh -c 'touch ran; echo it ran'";

#[test]
fn the_exact_commands_are_shown_in_inspect_verify_and_before_unpack_runs_them() {
    let tmp = tempdir();
    let bundle = bundle(tmp.path());

    let done = run(airgap().arg("inspect").arg(&bundle)).success();
    assert!(done.stdout.contains(SHOWN), "{}", done.stdout);

    let done = run(airgap().arg("verify").arg(&bundle)).success();
    assert!(
        done.stderr
            .contains("1 program(s) on unpack, as the unpacking user"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains(SHOWN), "{}", done.stderr);

    let dest = tmp.path().join("dest");
    let done = run(airgap().arg("unpack").arg(&bundle).arg(&dest)).success();
    assert!(
        done.stderr
            .contains("running compile bytecode: sh -c 'touch ran; echo it ran'"),
        "{}",
        done.stderr
    );
    assert!(dest.join("ran").exists());

    // The carried unpacker, the documented way: tar xzf, then NAME/unpack DEST.
    let x = tmp.path().join("x");
    fs::create_dir(&x).unwrap();
    gnu_tar(&["xzf", &bundle.display().to_string()], &x);
    let dest2 = tmp.path().join("dest2");
    let done = run(Command::new(x.join("b/unpack")).arg(&dest2)).success();
    assert!(
        done.stderr
            .contains("running compile bytecode: sh -c 'touch ran; echo it ran'"),
        "{}",
        done.stderr
    );
    assert!(dest2.join("ran").exists());
}

#[test]
fn unpack_no_run_installs_the_files_and_lists_the_steps_it_did_not_run() {
    let tmp = tempdir();
    let bundle = bundle(tmp.path());
    let dest = tmp.path().join("dest");
    let done = run(airgap()
        .arg("unpack")
        .arg(&bundle)
        .arg(&dest)
        .arg("--no-run"))
    .success();
    assert!(dest.join("data/f").is_file());
    assert!(!dest.join("ran").exists(), "--no-run ran the step");
    assert!(
        done.stderr.contains("1 install step(s) not run (--no-run)"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains(SHOWN), "{}", done.stderr);
    assert!(!done.stderr.contains("running "), "{}", done.stderr);

    let x = tmp.path().join("x");
    fs::create_dir(&x).unwrap();
    gnu_tar(&["xzf", &bundle.display().to_string()], &x);
    let dest2 = tmp.path().join("dest2");
    let done = run(Command::new(x.join("b/unpack")).arg(&dest2).arg("--no-run")).success();
    assert!(dest2.join("data/f").is_file());
    assert!(!dest2.join("ran").exists(), "--no-run ran the step");
    assert!(
        done.stderr.contains("1 install step(s) not run (--no-run)"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains(SHOWN), "{}", done.stderr);
}
