//! Shared by the syslibs_* and check_* tests: turn a tree into the `earlier` list a Finish
//! plugin sees, run the syslibs plugin through its Rust API, and lay out the resulting bundle
//! the way the archive would unpack it.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use airgap_plugin_api::{
    BundleFile, ContributeRequest, Contribution, EntryKind, FileKind, PythonEnvironment,
    TargetProfile,
};

/// The CPython 3.11 installation the tests bundle (a source build with `--enable-shared`
/// linking the system libssl3, libsqlite3): the one `airgap_tests::python::installation`
/// finds (the cache of `cargo xtask setup`, else pyenv). The name stays from when only pyenv
/// had one.
pub fn pyenv_python() -> Option<PathBuf> {
    airgap_tests::python::installation(3, 11)
}

/// The environment [`pyenv_python`]'s installation `py` is as the bundle's `py` folder, as
/// the conda plugin would describe it to syslibs.
pub fn python_environment(py: &Path) -> PythonEnvironment {
    let mut env = PythonEnvironment::default();
    env.prefix = "py".into();
    env.executable = "py/bin/python3.11".into();
    env.source_prefix = py.to_path_buf();
    env.source_executable = py.join("bin/python3.11");
    env.version = "3.11.7".into();
    env.implementation = "cp".into();
    env.abi = "cp311".into();
    env.platforms = vec!["linux_x86_64".into()];
    env.site_packages = "py/lib/python3.11/site-packages".into();
    env
}

/// Walk `src` and list it as bundle files under `prefix`, skipping paths `skip` says no to
/// (given the path relative to `src`).
pub fn bundle_files(src: &Path, prefix: &str, skip: &dyn Fn(&str) -> bool) -> Vec<BundleFile> {
    let mut out = Vec::new();
    walk(src, src, prefix, skip, &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn walk(
    base: &Path,
    dir: &Path,
    prefix: &str,
    skip: &dyn Fn(&str) -> bool,
    out: &mut Vec<BundleFile>,
) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        let rel = path
            .strip_prefix(base)
            .expect("inside base")
            .to_string_lossy()
            .into_owned();
        if skip(&rel) {
            continue;
        }
        let bundle_path = if prefix.is_empty() {
            rel.clone()
        } else {
            format!("{prefix}/{rel}")
        };
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).expect("readlink");
            let kind = FileKind::Symlink {
                target: target.to_string_lossy().into_owned(),
            };
            out.push(BundleFile::new(bundle_path, kind, mode, "test"));
        } else if meta.is_dir() {
            out.push(BundleFile::new(bundle_path, FileKind::Dir, mode, "test"));
            walk(base, &path, prefix, skip, out);
        } else {
            out.push(
                BundleFile::new(bundle_path, FileKind::File, mode, "test")
                    .with_source(&path, meta.len()),
            );
        }
    }
}

/// One file as a bundle file.
pub fn file(source: &Path, bundle_path: &str) -> BundleFile {
    let meta = std::fs::metadata(source).expect("stat");
    let mode = meta.permissions().mode() & 0o7777;
    BundleFile::new(bundle_path, FileKind::File, mode, "test").with_source(source, meta.len())
}

/// The request the host would send to syslibs.
pub fn request(
    earlier: Vec<BundleFile>,
    work_dir: &Path,
    python: Option<PythonEnvironment>,
    target: TargetProfile,
    config: serde_json::Value,
) -> ContributeRequest {
    let mut request = ContributeRequest::default();
    request.source = "syslibs".into();
    request.config = config;
    request.config_dir = work_dir.to_path_buf();
    request.bundle_name = "bundle".into();
    request.target = target;
    request.work_dir = work_dir.to_path_buf();
    request.earlier = earlier;
    request.python = python;
    request.verbose = true;
    request
}

/// Run the real syslibs plugin library (`libairgap_plugin_syslibs.so` of the build dir),
/// loaded by the host through the C ABI, as `airgap bundle` does.
pub fn run_syslibs(request: &ContributeRequest) -> Contribution {
    try_syslibs(request).unwrap_or_else(|e| panic!("syslibs failed: {e}"))
}

/// Like [`run_syslibs`], returning the host's error.
pub fn try_syslibs(request: &ContributeRequest) -> Result<Contribution, airgap_core::Error> {
    let plugin = airgap_core::Plugin::load(&airgap_tests::cdylib("airgap-plugin-syslibs"))?;
    let cancelled = std::sync::atomic::AtomicBool::new(false);
    plugin.contribute(request, &airgap_archive::progress::NoProgress, &cancelled)
}

/// Lay out `earlier` (and then the plugin's entries, replacing) under `dest`, as unpacking
/// the bundle would.
pub fn materialize(earlier: &[BundleFile], contribution: Option<&Contribution>, dest: &Path) {
    for f in earlier {
        let to = dest.join(&f.path);
        match &f.kind {
            FileKind::Dir => std::fs::create_dir_all(&to).expect("mkdir"),
            FileKind::Symlink { target } => {
                std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
                let _ = std::fs::remove_file(&to);
                std::os::unix::fs::symlink(target, &to).expect("symlink");
            }
            FileKind::File => {
                copy_file(f.source.as_ref().expect("file has a source"), &to, f.mode);
            }
            other => panic!("a file kind this helper does not know: {other:?}"),
        }
    }
    if let Some(c) = contribution {
        for e in &c.entries {
            let to = dest.join(&e.dest);
            match &e.kind {
                EntryKind::Path { source, .. } => {
                    copy_file(source, &to, e.mode.unwrap_or(0o755));
                }
                EntryKind::Dir => std::fs::create_dir_all(&to).expect("mkdir"),
                EntryKind::Symlink { target } => {
                    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
                    let _ = std::fs::remove_file(&to);
                    std::os::unix::fs::symlink(target, &to).expect("symlink");
                }
                other => panic!("an entry kind this helper does not know: {other:?}"),
            }
        }
    }
}

fn copy_file(from: &Path, to: &Path, mode: u32) {
    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The parts of a pyenv installation a test bundle needs: the interpreter, libpython and
/// the standard library without tests, site-packages and Tk.
pub fn python_skip(rel: &str) -> bool {
    let keep_top = rel == "bin"
        || rel == "bin/python3.11"
        || rel == "lib"
        || rel.starts_with("lib/libpython")
        || rel.starts_with("lib/python3.");
    if !keep_top || rel.starts_with("bin/") && rel != "bin/python3.11" {
        return true;
    }
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.len() >= 3 && parts[1].starts_with("python3.") {
        let sub = parts[2];
        if matches!(
            sub,
            "site-packages"
                | "test"
                | "idlelib"
                | "tkinter"
                | "turtledemo"
                | "ensurepip"
                | "lib2to3"
        ) || sub.starts_with("config-")
            || sub.starts_with("_tkinter")
        {
            return true;
        }
        if sub == "lib-dynload" && parts.len() == 4 && parts[3].starts_with("_tkinter") {
            return true;
        }
    }
    rel.ends_with("__pycache__") || rel.ends_with(".a")
}

/// Compile `pqver`, a CPython 3.11 extension module built against libpq (the PostgreSQL
/// client library, as psycopg2 built from its sdist is), with the headers of the
/// installation `py`, to `so`. `import pqver; pqver.version()` gives libpq's version.
pub fn build_pqver(py: &Path, work: &Path, so: &Path) {
    let src = work.join("pqver.c");
    std::fs::write(
        &src,
        r#"#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <libpq-fe.h>
static PyObject *version(PyObject *self, PyObject *args) { return PyLong_FromLong(PQlibVersion()); }
static PyMethodDef methods[] = {{"version", version, METH_NOARGS, "libpq version"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "pqver", NULL, -1, methods};
PyMODINIT_FUNC PyInit_pqver(void) { return PyModule_Create(&module); }
"#,
    )
    .expect("write source");
    airgap_tests::run(
        std::process::Command::new("gcc")
            .args(["-shared", "-fPIC", "-O1"])
            .arg(format!("-I{}", py.join("include/python3.11").display()))
            .arg("-I/usr/include/postgresql")
            .arg(&src)
            .arg("-o")
            .arg(so)
            .arg("-lpq"),
    )
    .success();
}
