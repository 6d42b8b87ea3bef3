//! `airgap check` and the check `airgap bundle` runs: the real CLI on a bundle of a pyenv
//! Python (a source build linking Debian 12's libraries), against real Debian roots.

use std::path::Path;

use crate::syslibs_support::pyenv_python;
use airgap_tests::rootfs::{DebianRoot, Suite};
use airgap_tests::{airgap, build_dir, run, tempdir};

/// An airgap.toml carrying the interpreter, libpython and the standard library of `py`
/// (with the files plugin), plus `extra` tables.
fn config(dir: &Path, py: &Path, extra: &str) -> std::path::PathBuf {
    let p = py.display();
    let text = format!(
        r#"[bundle]
name = "py"

[sources.files]
paths = [
  {{ source = "{p}/bin/python3.11", dest = "py/bin/python3.11" }},
  {{ source = "{p}/lib/libpython3.11.so.1.0", dest = "py/lib/libpython3.11.so.1.0" }},
  {{ source = "{p}/lib/python3.11", dest = "py/lib/python3.11" }},
]
exclude = ["site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "__pycache__", "config-3.11-*", "_tkinter*", "*.pyc"]
{extra}
"#
    );
    let path = dir.join("airgap.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The real CLI. (`AIRGAP_NO_PROGRESS=1`, as `airgap()` sets it, is refused by clap's bool
/// parser at the time of writing: say `true`.)
fn cli() -> std::process::Command {
    let mut cmd = airgap();
    cmd.env("AIRGAP_NO_PROGRESS", "true");
    cmd
}

fn bundle(config: &Path, out: &Path) -> airgap_tests::Done {
    run(cli()
        .arg("--plugin-dir")
        .arg(build_dir())
        .args(["bundle", "--compression", "zstd", "-c"])
        .arg(config)
        .arg("-o")
        .arg(out))
}

fn check(args: &[&str]) -> airgap_tests::Done {
    run(cli()
        .arg("--plugin-dir")
        .arg(build_dir())
        .arg("check")
        .args(args))
}

fn json(done: &airgap_tests::Done) -> serde_json::Value {
    serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("{e}: {}", done.stdout))
}

#[test]
fn check_names_the_files_needing_a_newer_glibc_than_bullseye_and_passes_on_bookworm() {
    let Some(py) = pyenv_python() else {
        return airgap_tests::skip("no CPython 3.11 installation (cargo xtask setup builds one)");
    };
    let tmp = tempdir();
    let cfg = config(
        tmp.path(),
        &py,
        "[sources.syslibs]\ndir = \"py/lib/airgap-syslibs\"\n",
    );
    let out = tmp.path().join("py.tar.zst");
    bundle(&cfg, &out).success();
    let b = out.to_string_lossy().into_owned();

    let bullseye = DebianRoot::new(Suite::Bullseye);
    let root = bullseye.path().to_string_lossy().into_owned();
    let done = check(&[&b, "--target-root", &root, "--json"]);
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    let r = json(&done);
    assert_eq!(r["target"]["glibc"], "2.31");
    let need = r["min_glibc"]["version"].as_str().expect("min glibc");
    assert!(
        airgap_elf::Version::parse(need) > airgap_elf::Version::parse("2.31"),
        "{need}"
    );
    let glibc = r["too_new"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["prefix"] == "GLIBC"))
        .expect("GLIBC too new");
    let files: Vec<&str> = glibc["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f[0].as_str())
        .collect();
    // The interpreter itself (GLIBC_2.34 on a Debian 12 builder) and bundled Debian 12
    // libraries are named.
    assert!(files.contains(&"py/bin/python3.11"), "{files:?}");
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("py/lib/airgap-syslibs/")),
        "{files:?}"
    );
    assert!(done.stderr.contains("glibc 2.31"), "{}", done.stderr);
    assert!(
        done.stderr.contains("py/bin/python3.11  needs GLIBC_2."),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("help: bundling cannot bring a newer glibc"),
        "{}",
        done.stderr
    );

    // The build machine's own glibc (bookworm, like this machine): it passes.
    let bookworm = DebianRoot::new(Suite::Bookworm);
    let root = bookworm.path().to_string_lossy().into_owned();
    let done = check(&[&b, "--target-root", &root]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(done.stderr.contains("will load"), "{}", done.stderr);
    // Against the target recorded in the bundle (none declared: manylinux with this
    // machine's glibc, the rest bundled): passes.
    check(&[&b]).success();
    // Against a manylinux2014 machine: glibc 2.17 is far too old.
    let done = check(&[&b, "--manylinux", "manylinux2014"]);
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(done.stderr.contains("glibc 2.17"), "{}", done.stderr);
}

#[test]
fn without_syslibs_check_names_the_missing_libraries_and_bundle_refuses_a_declared_old_target() {
    let Some(py) = pyenv_python() else {
        return airgap_tests::skip("no CPython 3.11 installation (cargo xtask setup builds one)");
    };
    let tmp = tempdir();
    let cfg = config(tmp.path(), &py, "");
    let out = tmp.path().join("py.tar.zst");
    // No [target]: a manylinux machine with this machine's glibc, which is not assumed to
    // have libssl3: `airgap bundle` refuses, and writes it with --no-check.
    let done = bundle(&cfg, &out);
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(done.stderr.contains("libssl.so.3"), "{}", done.stderr);
    assert!(!out.exists());
    run(cli()
        .arg("--plugin-dir")
        .arg(build_dir())
        .args(["bundle", "--no-check", "--compression", "zstd", "-c"])
        .arg(&cfg)
        .arg("-o")
        .arg(&out))
    .success();
    let b = out.to_string_lossy().into_owned();

    let bookworm = DebianRoot::new(Suite::Bookworm);
    let root = bookworm.path().to_string_lossy().into_owned();
    let done = check(&[&b, "--target-root", &root, "--json"]);
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    let r = json(&done);
    let missing: Vec<&str> = r["missing"]
        .as_array()
        .expect("missing")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    for lib in ["libssl.so.3", "libsqlite3.so.0", "libreadline.so.8"] {
        assert!(missing.contains(&lib), "{lib} not reported: {missing:?}");
    }
    // bookworm's minbase has libffi8 (apt needs it through gnutls): not missing there.
    assert!(!missing.contains(&"libffi.so.8"), "{missing:?}");
    assert!(
        done.stderr
            .contains("libssl.so.3 is needed by py/lib/python3.11/lib-dynload/_ssl"),
        "{}",
        done.stderr
    );
    // libpython is in the bundle, but the interpreter's absolute RUNPATH points to the
    // build machine's prefix.
    assert!(
        done.stderr.contains("libpython3.11.so.1.0 is needed by py/bin/python3.11: the bundle has it at py/lib/libpython3.11.so.1.0"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains(
            "help: bundle again with [sources.syslibs] so that the missing libraries are carried"
        ),
        "{}",
        done.stderr
    );

    // `airgap check -c` says the same before anything is written.
    let done = check(&["-c", &cfg.to_string_lossy(), "--target-root", &root]);
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(done.stderr.contains("libsqlite3.so.0"), "{}", done.stderr);

    // A declared target the bundle cannot load on: `airgap bundle` writes nothing.
    let cfg = config(
        tmp.path(),
        &py,
        "[target]\nglibc = \"2.31\"\n\n[sources.syslibs]\n",
    );
    let out2 = tmp.path().join("old.tar.zst");
    let done = bundle(&cfg, &out2);
    assert_ne!(done.code, Some(0), "{}", done.stderr);
    assert!(done.stderr.contains("glibc"), "{}", done.stderr);
    assert!(
        !out2.exists(),
        "a bundle was written for a target it cannot load on"
    );
}
