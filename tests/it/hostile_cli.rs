//! Careless hands and hostile paths through the real CLI (issue 15): what a hurried user or
//! an attacker with the transfer medium gives `airgap` instead of a bundle file.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airgap_tests::archive::unpacker;
use airgap_tests::{airgap, tempdir};

/// Run `cmd`, killing it (and failing) if it has not finished after a generous while: the
/// point is that it must not block, not how fast it is.
fn no_hang(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{cmd:?} hung on its bundle argument");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_fifo_given_as_the_bundle_is_refused_without_hanging() {
    let tmp = tempdir();
    let fifo = tmp.path().join("b.tar.gz");
    mkfifo(&fifo);
    let dest = tmp.path().join("dest");
    let shown = fifo.display().to_string();
    let expect = format!("error: {shown} is not a regular file (a fifo)");
    for args in [
        vec!["unpack", shown.as_str(), dest.to_str().unwrap()],
        vec!["verify", shown.as_str()],
        vec!["inspect", shown.as_str()],
    ] {
        let mut cmd = airgap();
        cmd.args(&args);
        let (code, err) = no_hang(cmd);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(&expect), "{args:?}: {err}");
        assert!(
            err.contains("help: give the bundle file itself"),
            "{args:?}: {err}"
        );
    }
    let mut cmd = Command::new(unpacker());
    cmd.arg(&fifo).arg(&dest);
    let (code, err) = no_hang(cmd);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&expect), "{err}");
    assert!(!dest.exists());
}

/// `airgap bundle -o OUTPUT` in a fresh project; returns the run and the project dir.
fn bundle_to(tmp: &Path, output: &str) -> (airgap_tests::Done, std::path::PathBuf) {
    let dir = tmp.join(format!("p{}", output.len()));
    std::fs::create_dir_all(&dir).unwrap();
    crate::seal_support::project(&dir);
    let done = crate::seal_support::bundle(&dir, &["-o", output]);
    (done, dir)
}

#[test]
fn bundle_refuses_an_output_that_is_not_a_new_or_regular_file_or_is_an_input() {
    use std::fs;
    let tmp = tempdir();
    // A fifo: renaming over it would replace it (as /dev/null was, as root).
    let root = tmp.path().join("f");
    fs::create_dir(&root).unwrap();
    mkfifo(&root.join("out.fifo"));
    let out = root.join("out.fifo");
    let (done, _) = bundle_to(&root, out.to_str().unwrap());
    let done = done.failure();
    assert!(
        done.stderr.contains(&format!(
            "error: output {}: is a fifo; airgap writes a bundle only to a new or regular file",
            out.display()
        )),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("help: give -o a new file name"),
        "{}",
        done.stderr
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(&out).unwrap().file_type().is_fifo());

    // Its own config file, before any plugin ran.
    let (done, dir) = bundle_to(tmp.path(), "airgap.toml");
    let done = done.failure();
    assert!(
        done.stderr
            .contains("error: output airgap.toml: is the config file"),
        "{}",
        done.stderr
    );
    assert!(fs::read_to_string(dir.join("airgap.toml"))
        .unwrap()
        .contains("[sources.files]"));

    // One of its inputs.
    let (done, dir) = bundle_to(tmp.path(), "data/hello.py");
    let done = done.failure();
    assert!(
        done.stderr.contains(
            "error: output data/hello.py: is one of the bundle's own inputs (data/hello.py"
        ),
        "{}",
        done.stderr
    );
    assert_eq!(
        fs::read_to_string(dir.join("data/hello.py")).unwrap(),
        "print('hello')\n"
    );

    // A directory that does not exist: said at once, naming the user's path, not a scratch file.
    let (done, _) = bundle_to(tmp.path(), "nodir/x.tar.gz");
    let done = done.failure();
    assert!(
        done.stderr
            .contains("error: output nodir/x.tar.gz: its directory nodir does not exist"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains(".partial"), "{}", done.stderr);
}

#[test]
fn a_record_whose_path_label_and_path_hex_disagree_is_refused_everywhere() {
    use airgap_tests::archive::{craft, record_for, Raw};
    use airgap_tests::run;
    let tmp = tempdir();
    let evil = Raw {
        mode: 0o755,
        ..Raw::file("b/sub/evil.sh", b"#!/bin/sh\necho evil\n")
    };
    let entries = vec![Raw::dir("b"), Raw::dir("b/sub"), evil];
    let mut records: Vec<_> = entries[1..].iter().map(|r| record_for("b", r)).collect();
    // What inspect shows, and what unpack would install.
    records[1].path = "sub/README.txt".into();
    records[1].path_hex = Some(hex_of(b"sub/evil.sh"));
    let bundle = tmp.path().join("b.tar");
    craft(&bundle, "b", records, &entries);
    let expect =
        "the record \"sub/README.txt\" has path_hex naming \"sub/evil.sh\": its two names disagree";
    let dest = tmp.path().join("dest");
    for args in [
        vec!["verify".to_string(), bundle.display().to_string()],
        vec!["inspect".to_string(), bundle.display().to_string()],
        vec![
            "inspect".to_string(),
            "--json".into(),
            bundle.display().to_string(),
        ],
        vec![
            "unpack".to_string(),
            bundle.display().to_string(),
            dest.display().to_string(),
        ],
    ] {
        let done = run(airgap().args(&args)).failure();
        assert!(done.stderr.contains(expect), "{args:?}: {}", done.stderr);
    }
    let done = run(Command::new(unpacker()).arg(&bundle).arg(&dest)).failure();
    assert!(done.stderr.contains(expect), "{}", done.stderr);
    assert!(!dest.exists());
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn plugins_from_group_or_world_writable_places_are_refused_unloaded() {
    use airgap_tests::run;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempdir();
    let so = airgap_tests::cdylib("airgap-plugin-acme-store");
    for (dir_mode, file_mode, expect) in [
        (
            0o777,
            0o755,
            "its directory {dir} is writable by everyone (mode 777)",
        ),
        (
            0o770,
            0o755,
            "its directory {dir} is writable by its group (mode 770)",
        ),
        (
            0o755,
            0o666,
            "the file {file} is writable by everyone (mode 666)",
        ),
    ] {
        let dir = tmp.path().join(format!("p{dir_mode:o}-{file_mode:o}"));
        fs::create_dir(&dir).unwrap();
        let file = dir.join("libairgap_plugin_acme_store.so");
        fs::copy(&so, &file).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(file_mode)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(dir_mode)).unwrap();
        let done = run(airgap()
            .arg("--plugin-dir")
            .arg(&dir)
            .args(["plugins", "list"]));
        let expect = expect
            .replace("{dir}", &dir.display().to_string())
            .replace("{file}", &file.display().to_string());
        let line = format!("{}: refused to load: {expect}", file.display());
        assert!(
            done.stdout.contains(&line),
            "{}\n{}",
            done.stdout,
            done.stderr
        );
    }
}
