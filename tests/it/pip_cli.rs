//! The pip source end to end: the real `airgap bundle` loads the pip plugin library, the real
//! `airgap unpack` installs the bundle with the network cut, on an interpreter of another Python
//! version than the one running the tests.
//!
//! Needs the binaries and plugins built (`cargo xtask test`, or `cargo build -p airgap-cli -p
//! airgap-unpack -p airgap-plugin-pip -p airgap-plugin-conda`). Downloads are cached in
//! `$CARGO_TARGET_DIR/pip-cache`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use airgap_tests::python::{self, Python};
use airgap_tests::{airgap, bin, run, target_dir, tempdir};

fn other_python() -> Option<Python> {
    let py = python::other_than_current(&[(3, 9), (3, 10), (3, 12), (3, 8), (3, 13)]);
    match &py {
        Some(p) => eprintln!("target: {p}"),
        None => python::skip("no python other than python3 on this machine"),
    }
    py
}

fn write_config(dir: &Path, py: &Python, packages: &[&str]) -> std::path::PathBuf {
    let packages: Vec<String> = packages.iter().map(|p| format!("{p:?}")).collect();
    let text = format!(
        "[bundle]\nname = \"wh\"\n\n[target]\npython = \"{}\"\nglibc = \"2.17\"\n\n\
         [sources.pip]\npackages = [{}]\n",
        py.full_version(),
        packages.join(", ")
    );
    let path = dir.join("airgap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn bundle(config: &Path, output: &Path) -> Command {
    let mut cmd = airgap();
    cmd.args(["bundle", "-c"])
        .arg(config)
        .arg("-o")
        .arg(output)
        .env("PIP_CACHE_DIR", target_dir().join("pip-cache"));
    cmd
}

/// `airgap unpack BUNDLE DEST [--python PATH]` with the network cut.
fn unpack_offline(bundle: &Path, dest: &Path, python: Option<&Path>) -> Command {
    let mut cmd = python::offline(bin("airgap"));
    cmd.env("AIRGAP_NO_PROGRESS", "1")
        .arg("unpack")
        .arg(bundle)
        .arg(dest);
    if let Some(p) = python {
        cmd.arg("--python").arg(p);
    }
    cmd
}

#[test]
fn pip_cli_wheelhouse_for_another_python_unpacks_offline_with_its_python() {
    let Some(py) = other_python() else { return };
    let tmp = tempdir();
    let config = write_config(tmp.path(), &py, &["six", "markupsafe", "docopt==0.6.2"]);
    let output = tmp.path().join("wh.tar.gz");
    // docopt is an sdist: built here with the target's X.Y, found on PATH.
    let done = run(bundle(&config, &output).env("PATH", python::path_with(&py))).success();
    assert!(
        done.stderr
            .contains("built docopt 0.6.2 here from its sdist"),
        "{}",
        done.stderr
    );
    assert!(output.is_file());

    // A wheelhouse-only bundle asks for the target's interpreter.
    let done = run(&mut unpack_offline(
        &output,
        &tmp.path().join("no-python"),
        None,
    ))
    .failure();
    assert!(done.stderr.contains("--python"), "{}", done.stderr);
    assert!(!tmp.path().join("no-python/venv").exists());

    let dest = tmp.path().join("dest");
    run(&mut unpack_offline(&output, &dest, Some(&py.path))).success();
    let venv_python = dest.join("venv/bin/python");
    let done = run(python::offline(&venv_python).args([
        "-c",
        "import sys, six, docopt, markupsafe._speedups; print(sys.version.split()[0], docopt.__version__)",
    ]))
    .success();
    assert_eq!(
        done.stdout.trim(),
        format!("{} 0.6.2", py.full_version()),
        "{}",
        done.stderr
    );
    // Built here: the target needed no setuptools to install docopt.
    run(python::offline(&venv_python).args(["-c", "import setuptools"])).failure();
    let lock = std::fs::read_to_string(dest.join("wheels/requirements.lock")).unwrap();
    assert!(lock.contains("docopt==0.6.2 --hash=sha256:"), "{lock}");
}

#[test]
fn pip_cli_unbuildable_requirement_fails_before_any_archive() {
    let Some(py) = other_python() else { return };
    let tmp = tempdir();
    let config = write_config(tmp.path(), &py, &["sklearn"]);
    let output = tmp.path().join("wh.tar.gz");
    // pip's own reason comes from building the sdist with the target's X.Y, found on PATH.
    let done = run(bundle(&config, &output).env("PATH", python::path_with(&py))).failure();
    eprintln!("{}", done.stderr);
    assert!(
        done.stderr.contains("sklearn has no wheel for the target"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("use 'scikit-learn'"),
        "pip's reason: {}",
        done.stderr
    );
    assert!(!done.stderr.contains("PluginError {"), "{}", done.stderr);
    assert!(!output.exists(), "no archive may be written");
}

#[test]
fn pip_cli_wheels_install_into_the_environment_bundled_by_conda_offline() {
    let Some(py) = other_python() else { return };
    let tmp = tempdir();
    // The environment: a venv of another Python, bundled by the conda source (with its base;
    // pyenv's static libpythonX.Y.a is left out: it holds the build prefix as a binary string
    // and would limit the destination's length, which is not what this test is about).
    let venv = tmp.path().join("venv");
    run(py
        .command()
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv))
    .success();
    let config = tmp.path().join("airgap.toml");
    std::fs::write(
        &config,
        "[bundle]\nname = \"envb\"\n\n[sources.conda]\nprefix = \"venv\"\nstdlib_tests = false\n\
         base_exclude = [\"**/*.a\"]\n\n\
         [sources.pip]\npackages = [\"six\", \"docopt==0.6.2\"]\n",
    )
    .unwrap();
    let output = tmp.path().join("envb.tar.gz");
    // --no-check: this test is about the pip wheels, not about the system libraries of the
    // interpreter (that is the syslibs source's business).
    let done = run(bundle(&config, &output).arg("--no-check")).success();
    assert!(
        done.stderr
            .contains(&format!("wheels for python {}", py.full_version())),
        "the target profile comes from the bundled interpreter: {}",
        done.stderr
    );

    // Unpacked elsewhere, network cut, no --python: the bundled interpreter installs the wheels.
    let dest = tmp.path().join("elsewhere/dest");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    run(&mut unpack_offline(&output, &dest, None)).success();
    let done = run(python::offline(dest.join("env/bin/python"))
        .args(["-c", "import six, docopt; print(six.__file__)"]))
    .success();
    assert!(
        done.stdout
            .trim()
            .starts_with(dest.join("env/lib").to_str().unwrap()),
        "six must be installed into the bundled env: {}",
        done.stdout
    );
}

/// An old target Python gets a pip from the bundle that installs the wheelhouse there: Python
/// 3.6 (whose own pip 18.1 cannot read manylinux2014 wheels) where this machine has one (pyenv),
/// else bullseye's own python3 in a bullseye root (it has no pip at all: no python3-pip).
#[test]
fn pip_cli_an_old_target_python_gets_a_pip_that_installs_there() {
    // AIRGAP_TEST_OLD_TARGET=bullseye takes the bullseye case where a 3.6 exists too.
    let bullseye = std::env::var_os("AIRGAP_TEST_OLD_TARGET").is_some_and(|v| v == "bullseye");
    match python::find(3, 6).filter(|_| !bullseye) {
        Some(py) => python36_target_gets_a_pip_that_reads_manylinux2014(py),
        None => bullseye_python3_gets_a_pip_in_a_bullseye_root(),
    }
}

fn bullseye_python3_gets_a_pip_in_a_bullseye_root() {
    use airgap_tests::rootfs::{self, DebianRoot, Suite};
    if !rootfs::supported() {
        return python::skip("needs root, unshare and chroot for a bullseye root");
    }
    // python3-distutils: pip before Python 3.10 imports distutils, which Debian splits out of
    // python3 (python3-pip and python3-venv depend on it). With python3 alone the bundled pip
    // fails there (`No module named 'distutils.cmd'`): a known gap of the pip source, left to it.
    let root = DebianRoot::with_packages(Suite::Bullseye, &["python3", "python3-distutils"]);
    let asked = root
        .run("python3 -c 'import platform; print(platform.python_version())'")
        .success();
    let version = asked.stdout.trim().to_string();
    eprintln!("target: bullseye's python3 {version} in a bullseye root");
    assert!(
        root.run("python3 -m pip --version").code != Some(0),
        "bullseye's python3 should have no pip in this root"
    );
    let tmp = tempdir();
    let config = tmp.path().join("airgap.toml");
    std::fs::write(
        &config,
        format!(
            "[bundle]\nname = \"wh\"\n\n[target]\npython = \"{version}\"\nglibc = \"{}\"\n\n\
             [sources.pip]\npackages = [\"ujson==4.3.0\", \"six==1.16.0\"]\n",
            Suite::Bullseye.glibc()
        ),
    )
    .unwrap();
    let output = tmp.path().join("wh.tar.gz");
    run(&mut bundle(&config, &output)).success();
    root.copy_in(&output, "/tmp/wh.tar.gz");
    // The air-gapped side: only sh and tar, the network cut (DebianRoot::run).
    let done = root
        .run(
            "cd /tmp && tar xzf wh.tar.gz && wh/unpack /opt/wh --python /usr/bin/python3 \
             && /opt/wh/venv/bin/python -c 'import ujson, six; print(ujson.__version__, six.__version__)'",
        )
        .success();
    assert_eq!(
        done.stdout.lines().last().unwrap_or("").trim(),
        "4.3.0 1.16.0",
        "{}\n{}",
        done.stdout,
        done.stderr
    );
}

fn python36_target_gets_a_pip_that_reads_manylinux2014(py: Python) {
    eprintln!("target: {py} (its own pip: {:?})", py.pip_version());
    let tmp = tempdir();
    // ujson 4.3.0 has cp36 wheels for manylinux2014 only: pip 18.1 cannot install them.
    let config = write_config(tmp.path(), &py, &["ujson==4.3.0"]);
    let output = tmp.path().join("wh.tar.gz");
    run(&mut bundle(&config, &output)).success();
    let dest = tmp.path().join("dest");
    run(&mut unpack_offline(&output, &dest, Some(&py.path))).success();

    let wheels: Vec<String> = std::fs::read_dir(dest.join("wheels"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        wheels.contains(&"pip-21.3.1-py3-none-any.whl".to_string()),
        "the last pip for 3.6 is carried: {wheels:?}"
    );
    let ujson = wheels
        .iter()
        .find(|w| w.starts_with("ujson-4.3.0-cp36-cp36m-"))
        .unwrap();
    assert!(
        ujson.contains("manylinux2014") && !ujson.contains("manylinux1"),
        "{ujson}"
    );

    // The bundled pip installed it.
    let done = run(python::offline(dest.join("venv/bin/python"))
        .args(["-c", "import ujson; print(ujson.__version__)"]))
    .success();
    assert_eq!(done.stdout.trim(), "4.3.0");

    // The trap it avoided: the target's own pip 18.1 fails on the same wheelhouse.
    let old = tmp.path().join("old-venv");
    run(py.command().args(["-m", "venv"]).arg(&old)).success();
    let done = run(python::offline(old.join("bin/pip"))
        .args(["install", "--no-index", "--find-links"])
        .arg(dest.join("wheels"))
        .arg("ujson==4.3.0"))
    .failure();
    assert!(
        done.stderr.contains("No matching distribution"),
        "{}",
        done.stderr
    );
}

/// Issue 17: with no environment bundled and no `[target] python`, a probed profile chooses
/// the wheels: for the first Python on the target's `PATH`, and its glibc.
#[test]
fn pip_cli_a_probed_target_chooses_the_wheels_for_its_python() {
    let Some(py) = other_python() else { return };
    let tmp = tempdir();
    let profile = tmp.path().join("target.toml");
    // The "target" is this machine with the other Python first on PATH.
    run(airgap()
        .env("PATH", python::path_with(&py))
        .args(["probe", "--out"])
        .arg(&profile))
    .success();
    let config = tmp.path().join("airgap.toml");
    std::fs::write(
        &config,
        "[bundle]\nname = \"wh\"\n\n[sources.pip]\npackages = [\"markupsafe\"]\n",
    )
    .unwrap();
    let output = tmp.path().join("wh.tar.gz");
    run(bundle(&config, &output).arg("--target").arg(&profile)).success();
    let listing = run(Command::new("tar").arg("tzf").arg(&output))
        .success()
        .stdout;
    let abi = format!("cp{}{}", py.version.0, py.version.1);
    assert!(
        listing
            .lines()
            .any(|l| l.to_lowercase().contains("/markupsafe-")
                && l.contains(&format!("-{abi}-{abi}-"))),
        "no {abi} wheel of markupsafe: {listing}"
    );
    let dest = tmp.path().join("dest");
    run(&mut unpack_offline(&output, &dest, Some(&py.path))).success();
    run(python::offline(dest.join("venv/bin/python")).args(["-c", "import markupsafe._speedups"]))
        .success();
}
