//! syslibs and the check through the real CLI: both ask the same loader model, so a bundle
//! syslibs completed passes the check against the same declared target with nothing
//! missing; and when a library syslibs grafted from this Debian 12 machine is alone in
//! raising the glibc floor, the check names it, says airgap grafted it, and gives the way
//! out.

use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_tests::python::{self, Python};
use airgap_tests::{airgap, build_dir, conda, run, tempdir, Done};

fn cli() -> Command {
    let mut cmd = airgap();
    cmd.env("AIRGAP_NO_PROGRESS", "true")
        .arg("--plugin-dir")
        .arg(build_dir());
    cmd
}

fn json(done: &Done) -> serde_json::Value {
    serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("{e}: {}", done.stdout))
}

/// A system library of this machine the tests link against; missing is a failure.
fn system_lib(name: &str) -> PathBuf {
    let p = Path::new("/usr/lib/x86_64-linux-gnu").join(name);
    assert!(
        p.exists(),
        "this test needs {} (install its Debian package)",
        p.display()
    );
    p
}

/// `gcc -shared` of `code` into `out`, linked against `libs`.
fn gcc(dir: &Path, code: &str, out: &Path, args: &[String]) {
    let src = dir.join("ext.c");
    std::fs::write(&src, code).expect("write source");
    run(Command::new("gcc")
        .args(["-shared", "-fPIC", "-O1"])
        .arg(&src)
        .arg("-o")
        .arg(out)
        .args(args))
    .success();
}

/// Issue 14, "what we add must not raise the floor": an extension module whose own code
/// needs no particular glibc links libzstd; syslibs grafts Debian 12's libzstd.so.1, which
/// needs GLIBC_2.34. The check names that file as setting the floor, says airgap grafted
/// it, and gives `exclude` as the way out; a declared glibc 2.31 refuses naming it.
#[test]
fn a_grafted_library_alone_raising_the_glibc_floor_is_named_with_the_way_out() {
    let zstd = system_lib("libzstd.so.1");
    let tmp = tempdir();
    let tree = tmp.path().join("tree/site");
    std::fs::create_dir_all(&tree).expect("mkdir");
    gcc(
        tmp.path(),
        "unsigned ZSTD_versionNumber(void);\nunsigned zver(void) { return ZSTD_versionNumber(); }\n",
        &tree.join("zver.cpython-311-x86_64-linux-gnu.so"),
        &[zstd.display().to_string()],
    );
    let config = |target: &str| {
        let path = tmp.path().join("airgap.toml");
        std::fs::write(
            &path,
            format!(
                "[bundle]\nname = \"z\"\n{target}\n[sources.files]\npaths = [{{ source = \"{}\", dest = \"site\" }}]\n\n[sources.syslibs]\n",
                tree.display()
            ),
        )
        .expect("write config");
        path
    };

    let done = run(cli().args(["check", "-c"]).arg(config("")));
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("(airgap-syslibs/libzstd.so.1, grafted by airgap from this machine)"),
        "the floor is not pinned on the grafted file:\n{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("the environment's own files need no particular glibc"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("[sources.syslibs] exclude = [\"libzstd.so.1\"]"),
        "no way out given:\n{}",
        done.stderr
    );
    let done = run(cli().args(["check", "--json", "-c"]).arg(config("")));
    let r = json(&done);
    assert_eq!(
        r["min_glibc"]["file"], "airgap-syslibs/libzstd.so.1",
        "{}",
        done.stdout
    );
    assert_eq!(r["min_glibc"]["grafted"], true, "{}", done.stdout);

    let done = run(cli()
        .args(["check", "-c"])
        .arg(config("\n[target]\nglibc = \"2.31\"\n")));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(
        done.stderr.contains(
            "airgap-syslibs/libzstd.so.1 needs GLIBC_2.34) but the target has glibc 2.31"
        ),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("exclude = [\"libzstd.so.1\"]"),
        "{}",
        done.stderr
    );
}

fn need_python(major: u32, minor: u32) -> Python {
    python::find(major, minor).unwrap_or_else(|| {
        panic!("this test needs a Python {major}.{minor} (airgap_tests::python::find found none)")
    })
}

/// The installation prefix of an interpreter (`sys.base_prefix`).
fn base_prefix(py: &Python) -> PathBuf {
    let out = Command::new(&py.path)
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .expect("run python");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A real venv with an extension module built here against libpq (as psycopg2 from its
/// sdist is): without syslibs the check finds libpq.so.5 missing on the declared target;
/// with it, the bundle syslibs completed passes `airgap check BUNDLE` against the same
/// target with zero missing libraries and no problem at all.
#[test]
fn a_bundle_syslibs_completed_passes_the_check_with_nothing_missing() {
    let libpq = system_lib("libpq.so.5");
    let py = need_python(3, 11);
    let base = base_prefix(&py);
    let tmp = tempdir();
    let venv = tmp.path().join("venv");
    conda::venv(&base, &venv, &[]);
    let site = venv.join("lib/python3.11/site-packages");
    gcc(
        tmp.path(),
        r#"#define PY_SSIZE_T_CLEAN
#include <Python.h>
int PQlibVersion(void);
static PyObject *version(PyObject *self, PyObject *args) { return PyLong_FromLong(PQlibVersion()); }
static PyMethodDef methods[] = {{"version", version, METH_NOARGS, "libpq version"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "pqver", NULL, -1, methods};
PyMODINIT_FUNC PyInit_pqver(void) { return PyModule_Create(&module); }
"#,
        &site.join("pqver.cpython-311-x86_64-linux-gnu.so"),
        &[
            format!("-I{}", base.join("include/python3.11").display()),
            libpq.display().to_string(),
        ],
    );
    let config = |syslibs: bool| {
        let path = tmp.path().join("airgap.toml");
        std::fs::write(
            &path,
            format!(
                "[bundle]\nname = \"app\"\ncompression = \"zstd\"\nlevel = 1\n\n[target]\nglibc = \"2.36\"\n\n[sources.conda]\nprefix = \"{}\"\nstdlib_tests = false\n{}",
                venv.display(),
                if syslibs {
                    "\n[sources.syslibs]\n"
                } else {
                    "\n[sources.syslibs]\nenabled = false\n"
                }
            ),
        )
        .expect("write config");
        path
    };

    let done = run(cli().args(["check", "--json", "-c"]).arg(config(false)));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    let r = json(&done);
    assert!(
        r["missing"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["name"] == "libpq.so.5")),
        "{}",
        done.stdout
    );

    let out = tmp.path().join("app.tar.zst");
    run(cli()
        .args(["bundle", "-c"])
        .arg(config(true))
        .arg("-o")
        .arg(&out))
    .success();
    let done = run(cli()
        .arg("check")
        .arg(&out)
        .args(["--glibc", "2.36", "--json"]));
    assert_eq!(done.code, Some(0), "{}\n{}", done.stderr, done.stdout);
    let r = json(&done);
    assert_eq!(r["missing"], serde_json::json!([]), "{}", done.stdout);
    assert_eq!(r["problems"], serde_json::json!([]), "{}", done.stdout);
    // The extension's libpq is the grafted one, found through its patched RPATH.
    let ext = r["objects"]
        .as_array()
        .and_then(|o| {
            o.iter().find(|o| {
                o["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("pqver.cpython-311-x86_64-linux-gnu.so"))
            })
        })
        .unwrap_or_else(|| panic!("no pqver in objects: {}", done.stdout));
    assert!(
        ext.to_string().contains("airgap-syslibs/libpq.so.5"),
        "{ext}"
    );
}
