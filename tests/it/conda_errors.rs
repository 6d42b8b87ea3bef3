//! Clear errors from the conda plugin, each naming the file at fault and saying what to do.

// In tests a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use airgap_tests::conda::{self, contribute, hidden, materialize};
use airgap_tests::{airgap, run, tempdir};
use serde_json::json;

#[test]
fn a_prefix_that_is_not_an_environment_is_refused() {
    let tmp = tempdir();
    let dir = tmp.path().join("just-a-folder");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let err = contribute(json!({"prefix": dir}), &tmp.path().join("work"), None).unwrap_err();
    assert!(
        err.message.contains("is not a Python environment"),
        "{}",
        err.message
    );
    assert!(err.message.contains("just-a-folder"));
    assert!(err.help.unwrap().contains("prefix"));

    let err = contribute(
        json!({"prefix": "missing-env"}),
        &tmp.path().join("work"),
        None,
    )
    .unwrap_err();
    assert!(err.message.contains("does not exist"), "{}", err.message);
    // Relative to the configuration's directory.
    assert!(err
        .message
        .contains(&*tmp.path().join("work/missing-env").to_string_lossy()));
}

#[test]
fn unknown_keys_and_bad_folders_in_the_table_are_refused() {
    let tmp = tempdir();
    let err = contribute(json!({"prefx": "/x"}), &tmp.path().join("work"), None).unwrap_err();
    assert!(err.message.contains("prefx"), "{}", err.message);
    let env = tmp.path().join("env");
    std::fs::create_dir_all(env.join("conda-meta")).unwrap();
    let err = contribute(
        json!({"prefix": env, "dest": "../out"}),
        &tmp.path().join("work"),
        None,
    )
    .unwrap_err();
    assert!(err.message.contains("`dest`"), "{}", err.message);
}

#[test]
fn a_broken_conda_meta_file_is_named() {
    let tmp = tempdir();
    let env = tmp.path().join("env");
    std::fs::create_dir_all(env.join("conda-meta")).unwrap();
    std::fs::write(
        env.join("conda-meta/zlib-1.3-0.json"),
        "{\"name\": \"zlib\", ",
    )
    .unwrap();
    let err = contribute(json!({"prefix": env}), &tmp.path().join("work"), None).unwrap_err();
    assert!(
        err.message.contains("broken conda-meta file"),
        "{}",
        err.message
    );
    assert!(err.message.contains("zlib-1.3-0.json"), "{}", err.message);
    assert!(err.help.is_some());
}

#[test]
fn a_managed_file_missing_from_disk_names_the_package_and_the_file() {
    if !conda::have_rattler() {
        return airgap_tests::skip("py-rattler is not installed");
    }
    let tmp = tempdir();
    let env = tmp.path().join("env");
    conda::conda_env(&env, &tmp.path().join("pkgs"));
    std::fs::remove_file(env.join("share/hello/data.txt")).unwrap();
    let err = contribute(json!({"prefix": env}), &tmp.path().join("work"), None).unwrap_err();
    assert!(
        err.message.contains("hello-tools-1.0-h0_0"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("share/hello/data.txt"),
        "{}",
        err.message
    );
    assert!(err.help.as_deref().unwrap().contains("exclude"));
    // Excluding it is the way out.
    contribute(
        json!({"prefix": env, "exclude": ["share/hello/data.txt"]}),
        &tmp.path().join("work2"),
        None,
    )
    .expect("excluded missing file is fine");
}

#[test]
fn no_prefix_and_no_active_environment_is_explained() {
    // Through the real CLI, so that the variables are the child's: the tests share one
    // process (one test binary), and changing its environment would race with the others.
    let tmp = tempdir();
    let config = tmp.path().join("airgap.toml");
    std::fs::write(
        &config,
        "[bundle]\nname = \"env\"\n\n[sources.conda]\nstdlib_tests = false\nbase_exclude = [\"lib/python*/config-*/*.a\"]\n",
    )
    .unwrap();
    let bundle = tmp.path().join("env.tar.gz");
    let bundle_cmd = || {
        let mut cmd = airgap();
        cmd.arg("bundle")
            .arg("-c")
            .arg(&config)
            .arg("-o")
            .arg(&bundle)
            .arg("--no-check");
        cmd
    };
    let out = run(&mut bundle_cmd()).failure();
    assert!(out.stderr.contains("CONDA_PREFIX"), "{}", out.stderr);
    assert!(out.stderr.contains("activate"), "{}", out.stderr);

    // With one active (here a venv through VIRTUAL_ENV), that is what is bundled.
    let venv = tmp.path().join("active-venv");
    conda::venv(&conda::base_python(), &venv, &[]);
    run(bundle_cmd().env("VIRTUAL_ENV", &venv)).success();
    let manifest = airgap_archive::read_manifest(&bundle).unwrap();
    assert_eq!(manifest.python.unwrap().source_prefix, venv);
}

/// A venv with a real editable install (`pip install -e`, setuptools' PEP 660 finder).
fn editable_venv(root: &Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let base = conda::base_python();
    let project = root.join("projects/demo");
    std::fs::create_dir_all(project.join("demo")).unwrap();
    std::fs::write(project.join("demo/__init__.py"), "VALUE = 42\n").unwrap();
    std::fs::write(
        project.join("pyproject.toml"),
        "[build-system]\nrequires = [\"setuptools>=64\"]\nbuild-backend = \"setuptools.build_meta\"\n\
         [project]\nname = \"demo\"\nversion = \"0.1\"\n",
    )
    .unwrap();
    // A src layout: setuptools writes a .pth file naming the src directory.
    let project2 = root.join("projects/demo2");
    std::fs::create_dir_all(project2.join("src/demo2")).unwrap();
    std::fs::write(project2.join("src/demo2/__init__.py"), "VALUE = 7\n").unwrap();
    std::fs::write(
        project2.join("pyproject.toml"),
        "[build-system]\nrequires = [\"setuptools>=64\"]\nbuild-backend = \"setuptools.build_meta\"\n\
         [project]\nname = \"demo2\"\nversion = \"0.2\"\n",
    )
    .unwrap();
    let venv = root.join("venv");
    conda::venv(&base, &venv, &["setuptools>=70", "wheel", "packaging"]);
    for p in [&project, &project2] {
        let out = Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--no-index",
                "--no-build-isolation",
                "-e",
            ])
            .arg(p)
            .output()
            .expect("pip install -e");
        if !out.status.success() {
            panic!(
                "pip install -e failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Some((venv, project))
}

#[test]
fn an_editable_install_is_reported_with_its_path_or_bundled_on_request() {
    let tmp = tempdir();
    let Some((venv, project)) = editable_venv(tmp.path()) else {
        return;
    };
    let err = contribute(json!({"prefix": venv}), &tmp.path().join("work"), None).unwrap_err();
    assert!(
        err.message.contains("editable install `demo`"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains(&*project.to_string_lossy()),
        "{}",
        err.message
    );
    assert!(err.message.contains("demo2"), "{}", err.message);
    assert!(err.help.unwrap().contains("editable = \"bundle\""));

    // editable = "bundle": the code is copied into site-packages as a regular install.
    if !conda::can_hide() {
        return airgap_tests::skip("no mount namespaces here (unshare --mount)");
    }
    let xy = conda::version_short(&conda::base_python());
    let c = contribute(
        json!({"prefix": venv, "editable": "bundle", "stdlib_tests": false,
               "base_exclude": [format!("lib/python{xy}/config-*/*.a")]}),
        &tmp.path().join("work2"),
        None,
    )
    .expect("bundle editable");
    let site = format!("env/lib/python{xy}/site-packages");
    assert!(c.entries.iter().any(|e| e.dest == format!("{site}/demo")));
    assert!(c.entries.iter().any(|e| e.dest == format!("{site}/demo2")));
    assert!(!c.entries.iter().any(|e| e.dest.contains("__editable__")));
    let unpacked = tmp.path().join("u");
    materialize(&c, &unpacked).expect("install");
    let base = conda::base_python();
    let hide: [&Path; 3] = [&base, &venv, &tmp.path().join("projects")];
    let done = run(&mut hidden(
        &hide,
        &unpacked.join("env/bin/python"),
        &[
            "-c",
            "import demo, demo2; print(demo.VALUE, demo2.VALUE, demo.__file__)",
        ],
    ))
    .success();
    assert!(done.stdout.starts_with("42 7 "), "{}", done.stdout);
    assert!(
        done.stdout.contains(&*unpacked.to_string_lossy()),
        "{}",
        done.stdout
    );
}
