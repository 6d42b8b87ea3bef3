//! What a person reads, pinned: the CLI's help texts, its errors with their `help:` lines, and
//! the summaries of `bundle`, `verify`, `inspect` and `unpack`, as insta snapshots (in
//! `tests/it/snapshots/`). A changed message then shows up as a reviewed diff, not as a
//! `contains` check that still passes. Paths, sizes, digests, times and the version are
//! redacted so that the snapshots hold on any machine.
//!
//! To review a change: `INSTA_UPDATE=always cargo test -p airgap-tests --test it cli_output`,
//! then read `git diff tests/it/snapshots`. Under CI (`CI=true`) a missing or changed
//! snapshot fails.

use std::fs;
use std::path::Path;
use std::process::Command;

use airgap_tests::{airgap, bin, run, tempdir, Done};

/// The redactions every snapshot gets: `[TMP]` for the test's directory, then machine- and
/// build-dependent figures.
fn filters(tmp: &Path) -> Vec<(String, String)> {
    let tmp = regex_escape(&tmp.to_string_lossy());
    vec![
        (tmp, "[TMP]".into()),
        (regex_escape(env!("CARGO_PKG_VERSION")), "[VERSION]".into()),
        (r"\b[0-9a-f]{64}\b".into(), "[SHA256]".into()),
        (r"\b[0-9a-f]{16}\b".into(), "[SHA256-PREFIX]".into()),
        // Sizes are right-aligned in columns: the padding goes with the figure.
        (
            r"[ ]*\b\d+(\.\d+)? (B|KiB|MiB|GiB)\b".into(),
            " [SIZE]".into(),
        ),
        (r"\b\d+ bytes\b".into(), "[N] bytes".into()),
        (r"\b\d+(\.\d+)? ?(s|ms)\b".into(), "[TIME]".into()),
        // Damage at the end of the last gzip member shows while reading whichever entry's data
        // reaches into it (it moves with the size of this build's unpacker), or at the trailer.
        (
            r"(reading [^:\n]+: )?corrupt gzip stream".into(),
            "[WHILE READING]corrupt gzip stream".into(),
        ),
    ]
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// stderr (people's text), with the exit code first, redacted.
macro_rules! snapshot {
    ($name:expr, $tmp:expr, $done:expr) => {{
        let done: &Done = &$done;
        let text = format!(
            "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
            done.code, done.stdout, done.stderr
        );
        let filters = filters($tmp);
        let refs: Vec<(&str, &str)> = filters
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        insta::with_settings!({filters => refs, prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, text);
        });
    }};
}

/// The CLI at a stable width, with no colour.
fn cli() -> Command {
    let mut cmd = airgap();
    cmd.env("COLUMNS", "100").env("NO_COLOR", "1");
    cmd
}

/// A small project bundled with the `files` source.
fn project(dir: &Path) {
    fs::create_dir_all(dir.join("data/sub")).unwrap();
    fs::write(dir.join("data/sub/a.txt"), "a\n").unwrap();
    fs::write(dir.join("data/b.txt"), "b\n").unwrap();
    fs::write(
        dir.join("airgap.toml"),
        "[bundle]\nname = \"demo\"\n\n[sources.files]\npaths = [\"data\"]\n",
    )
    .unwrap();
}

#[test]
fn help_texts() {
    let tmp = tempdir();
    for (name, args) in [
        ("help", vec!["--help"]),
        ("help_bundle", vec!["bundle", "--help"]),
        ("help_check", vec!["check", "--help"]),
        ("help_verify", vec!["verify", "--help"]),
        ("help_inspect", vec!["inspect", "--help"]),
        ("help_unpack", vec!["unpack", "--help"]),
        ("help_relocate", vec!["relocate", "--help"]),
        ("help_plugins", vec!["plugins", "--help"]),
        ("help_keygen", vec!["keygen", "--help"]),
    ] {
        let done = run(cli().args(&args));
        snapshot!(name, tmp.path(), done);
    }
}

#[test]
fn a_bundle_from_start_to_finish() {
    let tmp = tempdir();
    project(tmp.path());
    let out = tmp.path().join("demo.tar.gz");
    let done = run(cli()
        .current_dir(tmp.path())
        .args([
            "bundle",
            "-c",
            "airgap.toml",
            "-o",
            "demo.tar.gz",
            "--unpacker",
        ])
        .arg(bin("airgap-unpack")))
    .success();
    snapshot!("bundle_summary", tmp.path(), done);
    let done = run(cli().arg("verify").arg(&out)).success();
    snapshot!("verify_summary", tmp.path(), done);
    let done = run(cli().arg("inspect").arg(&out)).success();
    snapshot!("inspect_summary", tmp.path(), done);
    let done = run(cli().arg("unpack").arg(&out).arg(tmp.path().join("dest"))).success();
    snapshot!("unpack_summary", tmp.path(), done);
}

#[test]
fn errors_say_what_to_do() {
    let tmp = tempdir();
    project(tmp.path());
    let dir = tmp.path();
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "error_no_such_config",
            vec!["bundle".into(), "-c".into(), "nope.toml".into()],
        ),
        ("error_unknown_command", vec!["frobnicate".into()]),
        ("error_misspelled_command", vec!["bundel".into()]),
        (
            "error_no_such_bundle",
            vec!["unpack".into(), "nope.tar.gz".into(), "dest".into()],
        ),
        (
            "error_not_a_bundle",
            vec!["verify".into(), "airgap.toml".into()],
        ),
    ];
    for (name, args) in cases {
        let done = run(cli().current_dir(dir).args(&args)).failure();
        snapshot!(name, dir, done);
    }

    fs::write(
        dir.join("unknown-key.toml"),
        "[bundle]\nname = \"demo\"\nnmae = \"typo\"\n\n[sources.files]\npaths = [\"data\"]\n",
    )
    .unwrap();
    let done = run(cli()
        .current_dir(dir)
        .args(["bundle", "-c", "unknown-key.toml"]))
    .failure();
    snapshot!("error_unknown_config_key", dir, done);

    let out = dir.join("demo.tar.gz");
    run(cli()
        .current_dir(dir)
        .args([
            "bundle",
            "-c",
            "airgap.toml",
            "-o",
            "demo.tar.gz",
            "--unpacker",
        ])
        .arg(bin("airgap-unpack")))
    .success();
    fs::create_dir_all(dir.join("full")).unwrap();
    fs::write(dir.join("full/x"), "x").unwrap();
    let done = run(cli().arg("unpack").arg(&out).arg(dir.join("full"))).failure();
    snapshot!("error_destination_not_empty", dir, done);

    // One byte of the last gzip member's CRC changed: the same damage, and so the same
    // message, whatever this build's unpacker looks like (a byte in the middle lands in
    // different entries with different builds).
    let mut bytes = fs::read(&out).unwrap();
    let at = bytes.len() - 8;
    bytes[at] ^= 0x55;
    fs::write(&out, bytes).unwrap();
    let done = run(cli().arg("verify").arg(&out)).failure();
    snapshot!("error_damaged_bundle", dir, done);
}

#[test]
fn the_check_names_the_file_that_needs_a_newer_glibc_than_declared() {
    let tmp = tempdir();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("tools")).unwrap();
    // This machine's `ls` (Debian 12) needs a newer glibc than 2.17.
    fs::copy("/bin/ls", dir.join("tools/ls")).unwrap();
    fs::write(
        dir.join("airgap.toml"),
        "[bundle]\nname = \"tools\"\n\n[target]\nglibc = \"2.17\"\n\n[sources.files]\npaths = [\"tools\"]\n",
    )
    .unwrap();
    let done = run(cli().current_dir(dir).args(["check", "-c", "airgap.toml"]));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    snapshot!("check_declared_old_glibc", dir, done);
    let done =
        run(cli()
            .current_dir(dir)
            .args(["bundle", "-c", "airgap.toml", "-o", "tools.tar.gz"]))
        .failure();
    snapshot!("bundle_refused_declared_old_glibc", dir, done);
    assert!(!dir.join("tools.tar.gz").exists());
}
