//! The archive subcommands through the real CLI: `airgap bundle` with a `[sources.files]`
//! table, then `verify`, `inspect`, `unpack` and `relocate`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use airgap_tests::{bin, run, tempdir};

fn airgap() -> Command {
    airgap_tests::with_build_plugins(airgap_tests::airgap())
}

/// A project with data, a model file placed elsewhere, and things to exclude.
fn project(dir: &Path) {
    fs::create_dir_all(dir.join("data/sub/__pycache__")).unwrap();
    fs::create_dir_all(dir.join("models")).unwrap();
    fs::write(dir.join("data/sub/a.txt"), "a\n").unwrap();
    fs::write(dir.join("data/sub/__pycache__/x.pyc"), "c").unwrap();
    fs::write(dir.join("data/skip.tmp"), "t").unwrap();
    std::os::unix::fs::symlink("sub/a.txt", dir.join("data/link")).unwrap();
    fs::write(dir.join("models/x.bin"), vec![7u8; 100_000]).unwrap();
    fs::write(
        dir.join("airgap.toml"),
        r#"[bundle]
name = "demo"

[sources.files]
paths = ["data/", { source = "models/x.bin", dest = "share/models/x.bin" }]
exclude = ["__pycache__", "*.tmp"]
"#,
    )
    .unwrap();
}

fn bundle(dir: &Path) -> std::path::PathBuf {
    project(dir);
    let out = dir.join("demo.tar.gz");
    run(airgap()
        .args(["bundle", "-c"])
        .arg(dir.join("airgap.toml"))
        .arg("-o")
        .arg(&out)
        .arg("--unpacker")
        .arg(bin("airgap-unpack"))
        .arg("--no-check"))
    .success();
    out
}

#[test]
fn files_source_bundles_verifies_inspects_unpacks_and_relocates() {
    let tmp = tempdir();
    let out = bundle(tmp.path());
    let v = run(airgap().arg("verify").arg(&out)).success();
    assert!(v.stderr.contains("matches its .sha256"), "{}", v.stderr);

    let i = run(airgap().arg("inspect").arg(&out).arg("--json")).success();
    let json: serde_json::Value = serde_json::from_str(&i.stdout).unwrap();
    assert_eq!(json["name"], "demo");
    assert_eq!(json["sizes"]["files"]["files"], 2, "{json}");
    assert_eq!(json["largest"][0]["path"], ".airgap/airgap-unpack");
    let text = run(airgap().arg("inspect").arg(&out)).success();
    assert!(
        text.stdout.contains("share/models/x.bin"),
        "{}",
        text.stdout
    );

    let dest = tmp.path().join("installed");
    run(airgap().arg("unpack").arg(&out).arg(&dest)).success();
    assert_eq!(fs::read_to_string(dest.join("data/link")).unwrap(), "a\n");
    assert_eq!(
        fs::read_link(dest.join("data/link")).unwrap(),
        Path::new("sub/a.txt")
    );
    assert_eq!(
        fs::read(dest.join("share/models/x.bin")).unwrap().len(),
        100_000
    );
    assert!(!dest.join("data/sub/__pycache__").exists());
    assert!(!dest.join("data/skip.tmp").exists());

    let moved = tmp.path().join("moved");
    run(airgap().arg("relocate").arg(&dest).arg(&moved)).success();
    assert!(moved.join("data/sub/a.txt").is_file() && !dest.exists());

    // Unpacking again into a non-empty directory is refused with advice.
    let again = run(airgap().arg("unpack").arg(&out).arg(&moved)).failure();
    assert!(
        again.stderr.contains("not empty") && again.stderr.contains("help:"),
        "{}",
        again.stderr
    );
}

#[test]
fn verify_lists_problems_and_fails_on_a_damaged_bundle() {
    let tmp = tempdir();
    let out = bundle(tmp.path());
    let mut bytes = fs::read(&out).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x20;
    fs::write(&out, &bytes).unwrap();
    let v = run(airgap().arg("verify").arg(&out)).failure();
    assert_eq!(v.code, Some(1));
    assert!(
        v.stderr.contains("error:") && v.stderr.contains("help:"),
        "{}",
        v.stderr
    );
    let json = run(airgap().arg("verify").arg(&out).arg("--json")).failure();
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["ok"], false);
    let dest = tmp.path().join("d");
    run(airgap().arg("unpack").arg(&out).arg(&dest)).failure();
    assert!(!dest.exists());
}

/// The whole file's sha256, computed beside the check's read of the same bytes, is the one
/// GNU `sha256sum` gives, and a `.sha256` that names another fails verify with both.
#[test]
fn verify_compares_the_bundle_with_its_sha256_file_as_sha256sum_reads_it() {
    let tmp = tempdir();
    let out = bundle(tmp.path());
    let sum = Command::new("sha256sum")
        .arg(&out)
        .output()
        .expect("GNU sha256sum (coreutils) runs");
    let sum = String::from_utf8(sum.stdout).unwrap();
    let actual = sum.split_whitespace().next().unwrap().to_string();
    let detached = tmp.path().join("demo.tar.gz.sha256");
    let written = fs::read_to_string(&detached).unwrap();
    assert!(written.starts_with(&actual), "{written} / {sum}");

    let wrong = "0".repeat(64);
    fs::write(&detached, format!("{wrong}  demo.tar.gz\n")).unwrap();
    let v = run(airgap().arg("verify").arg(&out)).failure();
    assert!(
        v.stderr
            .contains(&format!("the archive's sha256 is {actual}, ")),
        "{}",
        v.stderr
    );
    assert!(v.stderr.contains(&format!("says {wrong}")), "{}", v.stderr);
}
