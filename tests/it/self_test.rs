//! The self-test on the target (docs/self-test.md) through the real CLI and the carried
//! unpacker, in minimal Debian roots (no Python, no libpq there): a good scientific
//! environment passes, with the module that fails on the build machine too recorded as
//! expected; a library left out of the bundle fails the unpack, naming the extension and the
//! library, and DEST is left absent; `airgap self-test DEST` says the same later.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_tests::conda::{base_python, venv};
use airgap_tests::rootfs::{self, DebianRoot, Suite};
use airgap_tests::{airgap, run, tempdir, with_build_plugins};

/// Leave out parts of a Python installation no workload imports, to keep bundles small.
/// Tk is left out too: a bare root has no X11, which the declared target (a glibc floor,
/// manylinux's libraries) assumes, so `_tkinter` would rightly fail there.
const SLIM: &str = r#"base_exclude = ["lib/python3.*/test", "lib/python3.*/idlelib", "lib/python3.*/tkinter", "lib/python3.*/turtledemo", "lib/python3.*/lib-dynload/_tkinter*", "lib/python3.*/config-3.*", "/include", "**/*.a"]"#;

/// A distribution whose module cannot be imported anywhere (as one that needs a display):
/// the trial at bundle time sees it fail, so the target expects it to.
fn add_headless_only(site: &Path) {
    fs::create_dir_all(site.join("needs_display")).unwrap();
    fs::write(
        site.join("needs_display/__init__.py"),
        "raise ImportError('no display: $DISPLAY is not set')\n",
    )
    .unwrap();
    let info = site.join("needs_display-1.0.dist-info");
    fs::create_dir_all(&info).unwrap();
    fs::write(
        info.join("METADATA"),
        "Metadata-Version: 2.1\nName: needs-display\nVersion: 1.0\n",
    )
    .unwrap();
    fs::write(info.join("top_level.txt"), "needs_display\n").unwrap();
    fs::write(
        info.join("RECORD"),
        "needs_display/__init__.py,,\nneeds_display-1.0.dist-info/METADATA,,\n",
    )
    .unwrap();
}

fn site_packages(env: &Path) -> PathBuf {
    env.join("lib/python3.11/site-packages")
}

/// Bundle `env` (a venv of the 3.11 installation) with the conda source; `syslibs` is its
/// `[sources.syslibs]` table.
fn bundle(dir: &Path, name: &str, env: &Path, syslibs: &str, extra: &[&str]) -> PathBuf {
    let config = dir.join(format!("{name}.toml"));
    fs::write(
        &config,
        format!(
            "[bundle]\nname = \"{name}\"\n\n[sources.conda]\nprefix = \"{}\"\nstdlib_tests = false\n{SLIM}\n\n[sources.syslibs]\n{syslibs}\n",
            env.display()
        ),
    )
    .unwrap();
    let out = dir.join(format!("{name}.tar.gz"));
    run(with_build_plugins(airgap())
        .args(["bundle", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out)
        .args(extra))
    .success();
    out
}

/// Carry the archive alone into `root` and install it with the unpacker it carries.
fn carry_and_unpack(
    root: &DebianRoot,
    archive: &Path,
    name: &str,
    dest: &str,
) -> airgap_tests::Done {
    let inside = format!("/root/{name}.tar.gz");
    fs::copy(archive, root.host_path(&inside)).unwrap();
    root.run(&format!(
        "set -e; mkdir -p /root/carried && cd /root/carried && tar xzf {inside} && ./{name}/unpack {dest}"
    ))
}

fn root_or_skip() -> Option<DebianRoot> {
    if !rootfs::supported() {
        airgap_tests::skip("needs root, unshare and chroot for a Debian root");
        return None;
    }
    Some(DebianRoot::new(Suite::Bookworm))
}

#[test]
fn a_scientific_environment_passes_its_self_test_in_a_bare_root() {
    let Some(root) = root_or_skip() else { return };
    let tmp = tempdir();
    let env = tmp.path().join("sci-env");
    venv(&base_python(), &env, &["numpy", "markupsafe", "attrs"]);
    add_headless_only(&site_packages(&env));
    let archive = bundle(tmp.path(), "sci", &env, "", &[]);
    let record = run(Command::new("tar")
        .arg("-xOzf")
        .arg(&archive)
        .arg("sci/.airgap/self-test.toml"))
    .success();
    assert!(
        record.stdout.contains("item = \"needs_display\""),
        "the trial records the module that fails here too:\n{}",
        record.stdout
    );

    let done = carry_and_unpack(&root, &archive, "sci", "/opt/sci");
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(
        done.stderr.contains("0 failed, 1 expected to fail"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("expected module needs_display: ImportError: no display"),
        "{}",
        done.stderr
    );
    // numpy's extensions and the libraries its wheel vendors were among what loaded.
    let counts = |kind: &str| -> usize {
        let line = done
            .stderr
            .lines()
            .find(|l| l.trim_start().starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} line:\n{}", done.stderr));
        line.split_whitespace().nth(3).unwrap().parse().unwrap()
    };
    assert!(counts("extension") >= 10, "{}", done.stderr);
    assert!(counts("library") >= 3, "{}", done.stderr);
    assert!(
        root.host_path("/opt/sci/sci-env/bin/python").exists()
            || root.host_path("/opt/sci/env/bin/python").exists(),
        "{}",
        done.stderr
    );
}

#[test]
fn a_library_left_out_fails_the_unpack_naming_it_and_leaves_no_dest() {
    let Some(root) = root_or_skip() else { return };
    let tmp = tempdir();
    let env = tmp.path().join("pg-env");
    venv(&base_python(), &env, &[]);
    let so = site_packages(&env).join("pqver.cpython-311-x86_64-linux-gnu.so");
    crate::syslibs_support::build_pqver(&base_python(), tmp.path(), &so);
    // libpq is deliberately not grafted; the check would refuse, so --no-check.
    let archive = bundle(
        tmp.path(),
        "pg",
        &env,
        "exclude = [\"libpq.so.5\"]",
        &["--no-check"],
    );
    assert!(!root
        .host_path("/usr/lib/x86_64-linux-gnu/libpq.so.5")
        .exists());
    let done = carry_and_unpack(&root, &archive, "pg", "/opt/pg");
    assert_ne!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(
        done.stderr
            .contains("pqver.cpython-311-x86_64-linux-gnu.so")
            && done.stderr.contains("libpq.so.5"),
        "the error names the extension and the missing library:\n{}",
        done.stderr
    );
    assert!(done.stderr.contains("FAILED"), "{}", done.stderr);
    assert!(
        !root.host_path("/opt/pg").exists(),
        "DEST must be absent after a failed self-test"
    );
    let left: Vec<_> = fs::read_dir(root.host_path("/opt"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing half-installed in /opt: {left:?}");

    // --self-test=warn installs it anyway and says what fails.
    let done = root.run("cd /root/carried && ./pg/unpack /opt/pg --self-test=warn");
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(done.stderr.contains("1 failed"), "{}", done.stderr);
}

#[test]
fn self_test_of_an_installed_tree_exits_1_on_a_regression() {
    let tmp = tempdir();
    let env = tmp.path().join("small-env");
    venv(&base_python(), &env, &["markupsafe", "attrs"]);
    let archive = bundle(tmp.path(), "small", &env, "", &[]);
    let dest = tmp.path().join("dest");
    let done = run(airgap().arg("unpack").arg(&archive).arg(&dest)).success();
    assert!(done.stderr.contains("Self-test"), "{}", done.stderr);
    let done = run(airgap().arg("self-test").arg(&dest)).success();
    assert!(done.stderr.contains(" 0 failed"), "{}", done.stderr);

    // Break one distribution after the install: the self-test names it and exits 1.
    let init = fs::read_dir(dest.join("small-env/lib/python3.11/site-packages"))
        .or_else(|_| fs::read_dir(dest.join("env/lib/python3.11/site-packages")))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n == "markupsafe"))
        .unwrap()
        .join("__init__.py");
    fs::write(&init, "raise ImportError('broken on purpose')\n").unwrap();
    let done = run(airgap().arg("self-test").arg(&dest));
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("FAILED   module markupsafe: ImportError: broken on purpose"),
        "{}",
        done.stderr
    );
}
