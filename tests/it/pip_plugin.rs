//! The pip source plugin with real pip, real PyPI and real interpreters of other Python
//! versions: wheelhouses for the target, sdists built here, installs with the network cut.
//!
//! These tests call the plugin through its Rust API (`Host::detached()`) and play the part of
//! `airgap unpack` themselves: copy the entries to a destination and run the install steps with
//! `{dest}` and `{python}` substituted, under `unshare -n`.
//!
//! Downloads are cached in `$CARGO_TARGET_DIR/pip-cache` (pip's own cache), so reruns are fast.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use airgap_pip::PipPlugin;
use airgap_plugin_api::{
    ContributeRequest, Contribution, EntryKind, Host, InstallStep, PluginError, PythonEnvironment,
    SourcePlugin, TargetProfile,
};
use airgap_tests::python::{self, Python};
use serde_json::{json, Value};

fn request(work: &Path, config: Value, target: TargetProfile) -> ContributeRequest {
    let work_dir = work.join("work");
    std::fs::create_dir_all(&work_dir).unwrap();
    let mut request = ContributeRequest::default();
    request.source = "pip".into();
    request.config = config;
    request.config_dir = work.to_path_buf();
    request.bundle_name = "bundle".into();
    request.target = target;
    request.work_dir = work_dir;
    request
}

fn target_for(py: &Python, glibc: &str) -> TargetProfile {
    target_of(&py.full_version(), glibc)
}

/// A target of this full Python version and glibc, nothing else declared.
fn target_of(python: &str, glibc: &str) -> TargetProfile {
    let mut target = TargetProfile::default();
    target.python = Some(python.into());
    target.glibc = Some(glibc.into());
    target
}

fn contribute(request: &ContributeRequest) -> Result<Contribution, PluginError> {
    PipPlugin.contribute(request, &Host::detached())
}

/// An interpreter other than the one running the tests, or `None` (after saying so).
fn other_python() -> Option<Python> {
    let py = python::other_than_current(&[(3, 9), (3, 10), (3, 12), (3, 8), (3, 13)]);
    match &py {
        Some(p) => eprintln!("target: {p}"),
        None => python::skip("no python other than python3 on this machine"),
    }
    py
}

/// Play `airgap unpack`: copy the entries under `dest`, run the steps offline.
fn unpack(c: &Contribution, dest: &Path, python: Option<&Path>) -> Result<(), String> {
    for entry in &c.entries {
        let EntryKind::Path { source, .. } = &entry.kind else {
            panic!("unexpected entry {entry:?}");
        };
        let to = dest.join(&entry.dest);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(source, &to).unwrap();
    }
    let dest_s = dest.to_string_lossy().into_owned();
    let python_s = python.map(|p| p.to_string_lossy().into_owned());
    let subst = |s: &str| {
        let mut s = s.replace("{dest}", &dest_s);
        if s.contains("{python}") {
            s = s.replace(
                "{python}",
                python_s.as_deref().expect("step needs --python"),
            );
        }
        s
    };
    for step in &c.install_steps {
        let InstallStep::Run {
            description,
            program,
            args,
            env,
        } = step
        else {
            panic!("unexpected step {step:?}");
        };
        let mut cmd = python::offline(subst(program));
        cmd.args(args.iter().map(|a| subst(a)));
        cmd.envs(env.iter().map(|(k, v)| (k.clone(), subst(v))));
        let out = cmd.output().unwrap();
        if !out.status.success() {
            return Err(format!(
                "step {description:?} failed\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(())
}

/// Run python code with an interpreter, network cut; stdout.
fn run_offline(python: &Path, code: &str) -> Result<String, String> {
    let out = python::offline(python)
        .args(["-c", code])
        .env_remove("PYTHONPATH")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn lock_of(c: &Contribution) -> String {
    let entry = c
        .entries
        .iter()
        .find(|e| e.dest == "wheels/requirements.lock")
        .expect("a lock entry");
    let EntryKind::Path { source, .. } = &entry.kind else {
        unreachable!()
    };
    std::fs::read_to_string(source).unwrap()
}

fn sha256(path: &Path) -> String {
    airgap_pip::wheel::sha256_file(path).unwrap()
}

#[test]
fn pip_bundle_for_another_python_installs_offline_and_imports() {
    let Some(py) = other_python() else { return };
    let tmp = airgap_tests::tempdir();
    let req = request(
        tmp.path(),
        // docopt 0.6.2 exists only as an sdist on PyPI: built here with the target's X.Y.
        json!({"packages": ["attrs", "six", "markupsafe", "docopt==0.6.2"], "build_python": py.path}),
        target_for(&py, "2.17"),
    );
    let c = contribute(&req).unwrap_or_else(|e| panic!("{}\n{:?}", e.message, e.help));

    // The sdist-only dependency arrives as a wheel, reported as built here.
    let docopt = c.packages.iter().find(|p| p.name == "docopt").unwrap();
    assert!(docopt.origin.contains("built from sdist"), "{docopt:?}");
    assert!(
        c.warnings.iter().any(|w| w.contains("built docopt 0.6.2")),
        "{:?}",
        c.warnings
    );
    let built = &c.facts["built"];
    assert_eq!(built[0]["name"], "docopt", "{built}");
    assert_eq!(built[0]["elf_files"], json!([]), "docopt is pure python");

    // The exact set, hashed, for the target's Python.
    let lock = lock_of(&c);
    for name in ["attrs==", "six==", "MarkupSafe==", "docopt==0.6.2", "pip=="] {
        assert!(lock.contains(name), "{name} missing from the lock:\n{lock}");
    }
    assert!(lock
        .lines()
        .filter(|l| !l.starts_with('#'))
        .all(|l| l.contains(" --hash=sha256:")));
    let markupsafe = c
        .entries
        .iter()
        .find(|e| {
            e.dest.starts_with("wheels/markupsafe-") || e.dest.starts_with("wheels/MarkupSafe-")
        })
        .expect("a markupsafe wheel");
    let tag = format!("-cp{}{}-", py.version.0, py.version.1);
    assert!(
        markupsafe.dest.contains(&tag),
        "{} is not for {py}",
        markupsafe.dest
    );
    for p in c.packages.iter().filter(|p| p.name != "pip") {
        let entry = c
            .entries
            .iter()
            .find(|e| e.package.as_deref() == Some(&p.id))
            .unwrap();
        let EntryKind::Path { source, .. } = &entry.kind else {
            unreachable!()
        };
        assert_eq!(
            p.sha256.as_deref(),
            Some(sha256(source).as_str()),
            "{}",
            p.name
        );
        assert_eq!(p.kind, "wheel");
        assert!(lock.contains(&sha256(source)));
    }

    // Wheelhouse-only: the target's python makes a venv, the carried pip installs into it.
    let dest = tmp.path().join("dest");
    unpack(&c, &dest, Some(&py.path)).unwrap();
    let venv_python = dest.join("venv/bin/python");
    let out = run_offline(
        &venv_python,
        "import sys, attr, six, docopt, markupsafe, markupsafe._speedups as s; \
         print(sys.version_info[:2], s.__file__)",
    )
    .unwrap();
    assert!(
        run_offline(&venv_python, "import setuptools").is_err(),
        "the target venv has no setuptools: docopt needed none"
    );
    assert!(
        out.contains(&format!("({}, {})", py.version.0, py.version.1)),
        "{out}"
    );
    assert!(
        out.contains(".so"),
        "markupsafe's compiled speedups not loaded: {out}"
    );
    eprintln!("installed offline and imported with {py}: {out}");
}

#[test]
fn pip_no_interpreter_to_build_an_sdist_is_a_clear_error() {
    // No python 3.5 here; docopt has no wheel at all, so it would have to be built with one.
    if python::find(3, 5).is_some() {
        return python::skip("a python 3.5 exists here: this test needs a version that does not");
    }
    let tmp = airgap_tests::tempdir();
    let req = request(
        tmp.path(),
        json!({"packages": ["docopt==0.6.2"]}),
        target_of("3.5.10", "2.17"),
    );
    let err = contribute(&req).expect_err("no python 3.5 to build docopt");
    assert!(err.message.contains("docopt==0.6.2"), "{}", err.message);
    assert!(
        err.message.contains("no python 3.5 on this machine"),
        "{}",
        err.message
    );
    assert!(err.help.unwrap().contains("pyenv install 3.5.10"));
}

#[test]
fn pip_installed_packages_of_the_bundled_env_install_into_it_offline() {
    let Some(py) = other_python() else { return };
    let tmp = airgap_tests::tempdir();
    // The environment an earlier plugin bundled: a venv with six 1.16.0 installed online.
    let src = tmp.path().join("src-env");
    assert!(py
        .command()
        .args(["-m", "venv"])
        .arg(&src)
        .status()
        .unwrap()
        .success());
    let out = Command::new(src.join("bin/python"))
        .args(["-m", "pip", "install", "-q", "six==1.16.0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut req = request(
        tmp.path(),
        json!({"installed": true}),
        TargetProfile::default(),
    );
    let (x, y, _) = py.version;
    let mut env = PythonEnvironment::default();
    env.prefix = "env".into();
    env.executable = "env/bin/python".into();
    env.source_prefix = src.clone();
    env.source_executable = src.join("bin/python");
    env.version = py.full_version();
    env.implementation = "cp".into();
    env.abi = format!("cp{x}{y}{}", if (x, y) < (3, 8) { "m" } else { "" });
    env.platforms = airgap_pip::manylinux_platforms("2.17", "x86_64").unwrap();
    env.site_packages = format!("env/lib/python{x}.{y}/site-packages");
    req.python = Some(env);
    let c = contribute(&req).unwrap_or_else(|e| panic!("{}\n{:?}", e.message, e.help));
    let lock = lock_of(&c);
    assert!(lock.contains("six==1.16.0 --hash=sha256:"), "{lock}");
    assert!(!lock.contains("pip=="), "the env keeps its own pip: {lock}");
    let InstallStep::Run { program, .. } = &c.install_steps[0] else {
        panic!()
    };
    assert_eq!(program, "{dest}/env/bin/python");

    // What the environment plugin unpacks on the target: the env without six.
    let dest = tmp.path().join("dest");
    assert!(py
        .command()
        .args(["-m", "venv", "--without-pip"])
        .arg(dest.join("env"))
        .status()
        .unwrap()
        .success());
    unpack(&c, &dest, None).unwrap();
    let out = run_offline(
        &dest.join("env/bin/python"),
        "import six; print(six.__version__)",
    )
    .unwrap();
    assert_eq!(out, "1.16.0");
}

#[test]
fn pip_config_errors_name_the_key() {
    let tmp = airgap_tests::tempdir();
    let target = target_of("3.9.18", "2.17");
    let err = contribute(&request(tmp.path(), json!({}), target.clone())).unwrap_err();
    assert!(
        err.message.contains("names nothing to bundle"),
        "{}",
        err.message
    );
    let err = contribute(&request(
        tmp.path(),
        json!({"requirements": ["nope.txt"]}),
        target.clone(),
    ))
    .unwrap_err();
    assert!(err.message.contains("nope.txt"), "{}", err.message);
    let err = contribute(&request(
        tmp.path(),
        json!({"packages": ["six"], "dest": "../x"}),
        target,
    ))
    .unwrap_err();
    assert!(err.message.contains("dest"), "{}", err.message);
    let err = contribute(&request(
        tmp.path(),
        json!({"packages": ["six"]}),
        TargetProfile::default(),
    ))
    .unwrap_err();
    assert!(
        err.message.contains("no target python version"),
        "{}",
        err.message
    );
}

/// A local sdist with a C extension, in a find-links directory.
fn c_extension_sdist(dir: &Path) {
    let src = dir.join("src/agtiny-1.0");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("setup.py"),
        "from setuptools import setup, Extension\n\
         setup(name='agtiny', version='1.0', ext_modules=[Extension('agtiny', ['agtiny.c'])])\n",
    )
    .unwrap();
    std::fs::write(
        src.join("agtiny.c"),
        "#include <Python.h>\n\
         static PyObject *answer(PyObject *s, PyObject *a) { return PyLong_FromLong(42); }\n\
         static PyMethodDef m[] = {{\"answer\", answer, METH_NOARGS, 0}, {0}};\n\
         static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, \"agtiny\", 0, -1, m};\n\
         PyMODINIT_FUNC PyInit_agtiny(void) { return PyModule_Create(&d); }\n",
    )
    .unwrap();
    let links = dir.join("links");
    std::fs::create_dir_all(&links).unwrap();
    let status = Command::new("tar")
        .arg("czf")
        .arg(links.join("agtiny-1.0.tar.gz"))
        .arg("-C")
        .arg(dir.join("src"))
        .arg("agtiny-1.0")
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn pip_sdist_with_a_c_extension_is_built_and_its_elf_files_reported() {
    let Some(py) = other_python() else { return };
    let tmp = airgap_tests::tempdir();
    c_extension_sdist(tmp.path());
    let req = request(
        tmp.path(),
        json!({"packages": ["agtiny"], "find_links": ["links"], "build_python": py.path}),
        target_for(&py, "2.17"),
    );
    let c = contribute(&req).unwrap_or_else(|e| panic!("{}\n{:?}", e.message, e.help));
    let built = &c.facts["built"][0];
    assert_eq!(built["name"], "agtiny", "{built}");
    let elf = built["elf_files"].as_array().unwrap();
    assert_eq!(elf.len(), 1, "{built}");
    let so = Path::new(elf[0].as_str().unwrap());
    assert!(
        so.is_file() && so.to_string_lossy().ends_with(".so"),
        "{so:?}"
    );
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("agtiny 1.0 was built here and holds 1 compiled")),
        "{:?}",
        c.warnings
    );
    // Tagged for this machine's architecture, which the target's pip accepts.
    let wheel = built["wheel"].as_str().unwrap();
    assert!(
        wheel.ends_with("-linux_x86_64.whl") || wheel.contains("linux_"),
        "{wheel}"
    );

    let dest = tmp.path().join("dest");
    unpack(&c, &dest, Some(&py.path)).unwrap();
    let out = run_offline(
        &dest.join("venv/bin/python"),
        "import agtiny; print(agtiny.answer())",
    )
    .unwrap();
    assert_eq!(out, "42");
}
