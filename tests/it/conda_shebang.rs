//! Scripts whose `#!` names an interpreter outside the bundle (issue 14): a copied Python
//! installation's `bin/pip3` names the original, and runs on the target once bundled; a script
//! naming another installation is refused by the check, by name.

// In tests a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_tests::conda::{self, hidden};
use airgap_tests::{run, tempdir};

/// The installation of pyenv's (or the project's) Python 3.11: its prefix.
fn python311() -> PathBuf {
    let py = airgap_tests::python::find(3, 11).expect("no Python 3.11 here: this test needs one");
    let out = Command::new(&py.path)
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn config(dir: &Path, prefix: &str) -> PathBuf {
    let config = dir.join("airgap.toml");
    std::fs::write(
        &config,
        format!(
            "[bundle]\nname = \"app\"\ncompression = \"zstd\"\nlevel = 1\n\n[sources.conda]\n\
             prefix = \"{prefix}\"\nstdlib_tests = false\n\
             base_exclude = [\"lib/python3.11/config-*/*.a\"]\n\
             exclude = [\"lib/python3.11/config-*/*.a\"]\n"
        ),
    )
    .unwrap();
    config
}

fn check(config: &Path) -> airgap_tests::Done {
    run(airgap_tests::airgap()
        .arg("check")
        .arg("-c")
        .arg(config)
        .arg("--plugin-dir")
        .arg(airgap_tests::build_dir()))
}

#[test]
fn copied_installation_pip3_naming_the_original_runs_on_the_target() {
    assert!(
        conda::can_hide(),
        "this test needs mount namespaces (unshare --mount) to hide the original"
    );
    let original = python311();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let copy = src.join("py");
    run(Command::new("cp").arg("-a").arg(&original).arg(&copy)).success();
    let pip3 = std::fs::read_to_string(copy.join("bin/pip3")).unwrap();
    let first = pip3.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("#!{}/bin/python", original.display())),
        "the copy's pip3 should name the original: {first}"
    );
    let config = config(tmp.path(), "src/py");

    // The check does not name pip3: its #! is made to find the bundled copy.
    let done = check(&config);
    let all = format!("{}{}", done.stdout, done.stderr);
    assert!(!all.contains("bin/pip3"), "{all}");

    let bundle = tmp.path().join("app.tar.zst");
    run(airgap_tests::airgap()
        .arg("bundle")
        .arg("-c")
        .arg(&config)
        .arg("--plugin-dir")
        .arg(airgap_tests::build_dir())
        .arg("-o")
        .arg(&bundle)
        // The installation's extension modules need system libraries (libssl, libffi...)
        // that this machine, the target here, has.
        .arg("--no-check"))
    .success();
    let dest = tmp.path().join("d");
    run(airgap_tests::airgap().arg("unpack").arg(&bundle).arg(&dest)).success();
    let env = dest.join("env");
    let hide: [&Path; 2] = [&original, &src];
    let done = run(&mut hidden(&hide, &env.join("bin/pip3"), &["--version"])).success();
    assert!(
        done.stdout.contains(&*env.to_string_lossy()),
        "pip3 should run from the bundle: {}",
        done.stdout
    );
}

#[test]
fn script_naming_another_installation_is_refused_by_name() {
    let base = python311();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let venv = src.join("venv");
    conda::venv(&base, &venv, &[]);
    let script = |name: &str, first: &str| {
        let p = venv.join("bin").join(name);
        std::fs::write(&p, format!("{first}\nprint('hi')\n")).unwrap();
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&p, perm).unwrap();
    };
    script("elsewhere-tool", "#!/opt/other/python3");
    script("perl-tool", "#!/usr/bin/perl -w");
    script("env-tool", "#!/usr/bin/env python3");
    let config = config(tmp.path(), "src/venv");

    let done = check(&config).failure();
    let all = format!("{}{}", done.stdout, done.stderr);
    assert!(
        all.contains("env/bin/elsewhere-tool") && all.contains("/opt/other/python3"),
        "{all}"
    );
    // The target's own interpreters are expected there.
    assert!(!all.contains("perl-tool"), "{all}");
    // `/usr/bin/env python3` runs whatever the target's PATH has: said, not refused.
    assert!(all.contains("env/bin/env-tool"), "{all}");

    let bundle = tmp.path().join("app.tar.zst");
    let done = run(airgap_tests::airgap()
        .arg("bundle")
        .arg("-c")
        .arg(&config)
        .arg("--plugin-dir")
        .arg(airgap_tests::build_dir())
        .arg("-o")
        .arg(&bundle))
    .failure();
    let all = format!("{}{}", done.stdout, done.stderr);
    assert!(all.contains("env/bin/elsewhere-tool"), "{all}");
    assert!(!bundle.exists(), "no bundle written");
}
