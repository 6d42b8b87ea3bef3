//! Two more ways a Python environment ends up needing system libraries that a bare target
//! lacks, each shown failing in a minimal Debian root without the syslibs plugin and loading
//! with it, network cut:
//!
//! - an extension module compiled here against a system library (libpq, the PostgreSQL client
//!   library, as psycopg2 built from its sdist would be): `import pqver`;
//! - a wheel from PyPI that expects a system library it does not vendor: LightGBM's
//!   manylinux wheel links `libgomp.so.1` (the GCC OpenMP runtime) and tells users to install
//!   it. `import lightgbm` loads `lightgbm/lib/lib_lightgbm.so` with `ctypes`; the test does
//!   that load itself (the rest of `import lightgbm` only needs numpy and scipy).
//!
//! "Without" is the same Python bundle, itself completed by syslibs, with the extension added
//! afterwards: exactly the failure of a bundle whose extension's needs nobody looked at.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::syslibs_support::*;
use airgap_plugin_api::{BundleFile, PythonEnvironment, TargetProfile};
use airgap_tests::rootfs::{self, DebianRoot, Suite};

const SITE: &str = "py/lib/python3.11/site-packages";

fn python_env(py: &Path) -> PythonEnvironment {
    let mut env = PythonEnvironment::default();
    env.prefix = "py".into();
    env.executable = "py/bin/python3.11".into();
    env.source_prefix = py.to_path_buf();
    env.source_executable = py.join("bin/python3.11");
    env.version = airgap_tests::python::Python::probe(&py.join("bin/python3.11"))
        .expect("the 3.11 installation runs")
        .full_version();
    env.implementation = "cp".into();
    env.abi = "cp311".into();
    env.platforms = vec!["linux_x86_64".into()];
    env.site_packages = SITE.into();
    env
}

/// Lay out two bundles in `tmp`: `without` (syslibs ran before `extra` was added) and `with`
/// (syslibs saw everything), copy both into a fresh bookworm root at /opt/without and
/// /opt/with, and return the root.
fn two_bundles(
    tmp: &Path,
    py: &Path,
    extra: Vec<BundleFile>,
) -> (DebianRoot, airgap_plugin_api::Contribution) {
    let python = bundle_files(py, "py", &python_skip);
    let mut target = TargetProfile::default();
    target.glibc = Some("2.36".into());
    let work = tmp.join("work-without");
    std::fs::create_dir_all(&work).expect("mkdir");
    let req = request(
        python.clone(),
        &work,
        Some(python_env(py)),
        target.clone(),
        serde_json::json!({}),
    );
    let first = run_syslibs(&req);
    let mut all = python.clone();
    all.extend(extra.iter().cloned());
    materialize(&all, Some(&first), &tmp.join("without"));
    // The extension files are not patched in `without`: lay them again over the result.
    materialize(&extra, None, &tmp.join("without"));

    let work = tmp.join("work-with");
    std::fs::create_dir_all(&work).expect("mkdir");
    let req = request(
        all.clone(),
        &work,
        Some(python_env(py)),
        target,
        serde_json::json!({}),
    );
    let second = run_syslibs(&req);
    materialize(&all, Some(&second), &tmp.join("with"));

    let root = DebianRoot::new(Suite::Bookworm);
    root.copy_in(&tmp.join("without/py"), "/opt/without");
    root.copy_in(&tmp.join("with/py"), "/opt/with");
    (root, second)
}

fn setup() -> Option<PathBuf> {
    if !rootfs::supported() {
        airgap_tests::skip("needs root, unshare and chroot");
        return None;
    }
    let py = pyenv_python();
    if py.is_none() {
        airgap_tests::skip("no CPython 3.11 installation (cargo xtask setup builds one)");
    }
    py
}

#[test]
fn an_extension_built_against_libpq_imports_only_with_syslibs() {
    let Some(py) = setup() else { return };
    let tmp = airgap_tests::tempdir();
    let so = tmp.path().join("pqver.cpython-311-x86_64-linux-gnu.so");
    build_pqver(&py, tmp.path(), &so);
    let extra = vec![file(
        &so,
        &format!("{SITE}/pqver.cpython-311-x86_64-linux-gnu.so"),
    )];
    let (root, c) = two_bundles(tmp.path(), &py, extra);
    assert!(
        c.packages.iter().any(|p| p.name == "libpq.so.5"),
        "{:?}",
        c.packages
    );

    let done = root.run("/opt/without/bin/python3.11 -c 'import pqver'");
    assert_ne!(done.code, Some(0), "imported without the plugin");
    assert!(done.stderr.contains("libpq.so.5"), "{}", done.stderr);

    let done = root.run("/opt/with/bin/python3.11 -c 'import pqver; print(pqver.version())'");
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let v: u32 = done.stdout.trim().parse().expect("a libpq version number");
    assert!(v >= 100000, "libpq {v}");
}

/// LightGBM's wheel from PyPI, downloaded once into the test cache.
fn lightgbm_wheel(py: &Path) -> PathBuf {
    let dir = airgap_tests::target_dir().join("test-cache/wheels");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let find = || {
        std::fs::read_dir(&dir).ok().and_then(|rd| {
            rd.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("lightgbm-4.7.0-"))
            })
        })
    };
    if let Some(w) = find() {
        return w;
    }
    airgap_tests::run(
        Command::new(py.join("bin/python3.11"))
            .args([
                "-m",
                "pip",
                "download",
                "lightgbm==4.7.0",
                "--no-deps",
                "--only-binary=:all:",
            ])
            .args([
                "--platform",
                "manylinux_2_28_x86_64",
                "--python-version",
                "3.11",
                "-q",
                "-d",
            ])
            .arg(&dir)
            .env_remove("PIP_NO_INDEX")
            .env_remove("PIP_FIND_LINKS"),
    )
    .success();
    find().expect("lightgbm wheel downloaded")
}

#[test]
fn a_wheel_expecting_libgomp_loads_only_with_syslibs() {
    let Some(py) = setup() else { return };
    let tmp = airgap_tests::tempdir();
    let wheel = lightgbm_wheel(&py);
    let unpacked = tmp.path().join("wheel");
    airgap_tests::run(
        Command::new(py.join("bin/python3.11"))
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked),
    )
    .success();
    let lib = unpacked.join("lightgbm/lib/lib_lightgbm.so");
    let elf = airgap_elf::ElfFile::parse(&lib).expect("parse lib_lightgbm.so");
    assert!(
        elf.needed().iter().any(|n| n == "libgomp.so.1"),
        "{:?}",
        elf.needed()
    );
    let extra = bundle_files(&unpacked, SITE, &|_| false);
    let (root, c) = two_bundles(tmp.path(), &py, extra);
    assert!(
        c.packages.iter().any(|p| p.name == "libgomp.so.1"),
        "{:?}",
        c.packages
    );
    // libstdc++ and libgcc_s are assumed on a manylinux target: not bundled.
    assert!(!c.packages.iter().any(|p| p.name == "libstdc++.so.6"));

    let load = |prefix: &str| {
        format!(
            "{prefix}/bin/python3.11 -c 'import ctypes; ctypes.CDLL(\"{prefix}/lib/python3.11/site-packages/lightgbm/lib/lib_lightgbm.so\"); print(\"loaded\")'"
        )
    };
    let done = root.run(&load("/opt/without"));
    assert_ne!(done.code, Some(0), "loaded without the plugin");
    assert!(done.stderr.contains("libgomp.so.1"), "{}", done.stderr);

    let done = root.run(&load("/opt/with"));
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(done.stdout.contains("loaded"));
}
