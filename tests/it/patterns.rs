//! The one pattern dialect (`airgap-glob`), through the real CLI and two sources: a bare name
//! leaves out that name at any depth, a pattern with `/` (or starting with one) only the path
//! from the source's root, in `[sources.files]` and `[sources.conda]` alike.

use std::fs;
use std::process::Command;

use airgap_tests::python;
use airgap_tests::{airgap, run, tempdir};

#[test]
fn a_bare_name_matches_at_any_depth_and_a_slash_anchors_in_every_source() {
    let py = python::find(3, 11).unwrap_or_else(|| {
        panic!("this test needs a Python 3.11 (airgap_tests::python::find found none)")
    });
    let tmp = tempdir();
    let dir = tmp.path();
    // A files tree with `cache` at two depths and `notes.txt` at two depths.
    for p in [
        "data/cache/x",
        "data/sub/cache/y",
        "data/notes.txt",
        "data/sub/notes.txt",
    ] {
        let path = dir.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, p).unwrap();
    }
    // A venv, bundled with its base installation: `common` is deep in the base's standard
    // library (`venv/scripts/common`), `include` at its top.
    let venv = dir.join("venv");
    let out = Command::new(&py.path)
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .output()
        .expect("run python -m venv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(
        dir.join("airgap.toml"),
        r#"[bundle]
name = "p"

[sources.files]
paths = ["data"]
exclude = ["cache", "/notes.txt"]

[sources.conda]
prefix = "venv"
stdlib_tests = false
exclude = ["activate.fish", "/bin/activate.csh"]
base_exclude = ["__pycache__", "common", "/include", "lib/python3.11/site-packages"]

[sources.syslibs]
enabled = false
"#,
    )
    .unwrap();
    run(airgap().current_dir(dir).args([
        "bundle",
        "--no-check",
        "-c",
        "airgap.toml",
        "-o",
        "p.tar.gz",
    ]))
    .success();
    let listing = run(Command::new("tar").arg("tzf").arg(dir.join("p.tar.gz")))
        .success()
        .stdout;
    let has = |p: &str| listing.lines().any(|l| l.trim_end_matches('/') == p);
    let under = |p: &str| listing.lines().any(|l| l.starts_with(p));
    // files: `cache` at both depths, `notes.txt` only at the top of the path given.
    assert!(
        !under("p/data/cache") && !under("p/data/sub/cache"),
        "{listing}"
    );
    assert!(
        !has("p/data/notes.txt") && has("p/data/sub/notes.txt"),
        "{listing}"
    );
    // conda: names at any depth, paths from the prefix (the venv's, and the base's).
    assert!(
        !has("p/env/bin/activate.fish") && !has("p/env/bin/activate.csh"),
        "{listing}"
    );
    assert!(has("p/env/bin/activate"), "{listing}");
    assert!(!listing.contains("__pycache__"), "{listing}");
    assert!(!listing.contains("/venv/scripts/common"), "{listing}");
    assert!(listing.contains("/venv/scripts/posix"), "{listing}");
    assert!(!under("p/python/include"), "{listing}");
    assert!(listing.lines().any(|l| l.ends_with("/os.py")), "{listing}");
}
