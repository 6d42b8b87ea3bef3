//! A Python built from source (pyenv) links the build machine's libssl3, libsqlite3, libffi,
//! libreadline...: in a bare Debian root its `ssl` and `sqlite3` modules cannot load. With the
//! syslibs plugin the bundle carries those libraries and loads them through `$ORIGIN`-relative
//! RPATHs, relocated, with the network cut and a hostile `LD_LIBRARY_PATH`.

use crate::syslibs_support::*;
use airgap_plugin_api::TargetProfile;
use airgap_tests::rootfs::{self, DebianRoot, Suite};

#[test]
fn pyenv_ssl_and_sqlite3_load_in_a_bare_debian_root_only_with_syslibs() {
    if !rootfs::supported() {
        return airgap_tests::skip("needs root, unshare and chroot");
    }
    let Some(py) = pyenv_python().filter(|p| p.join("bin/python3.11").exists()) else {
        return airgap_tests::skip("no CPython 3.11 installation (cargo xtask setup builds one)");
    };
    let pyexe = "bin/python3.11";
    let earlier = bundle_files(&py, "py", &python_skip);
    assert!(earlier.iter().any(|f| f
        .path
        .ends_with("lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so")));
    let tmp = airgap_tests::tempdir();
    let root = DebianRoot::new(Suite::Bookworm);

    // Without the plugin, at its original prefix (so libpython itself still loads through its
    // absolute RUNPATH): ssl and sqlite3 cannot load.
    materialize(&earlier, None, &tmp.path().join("without"));
    let orig = py.to_string_lossy().into_owned();
    root.copy_in(&tmp.path().join("without/py"), &orig);
    let done = root.run(&format!("{orig}/{pyexe} -c 'import ssl'"));
    assert_ne!(done.code, Some(0), "ssl imported without the plugin");
    assert!(
        done.stderr.contains("libssl.so.3") || done.stderr.contains("libcrypto.so.3"),
        "{}",
        done.stderr
    );
    let done = root.run(&format!("{orig}/{pyexe} -c 'import sqlite3'"));
    assert_ne!(done.code, Some(0), "sqlite3 imported without the plugin");
    assert!(done.stderr.contains("libsqlite3.so.0"), "{}", done.stderr);
    // The root has no network at all.
    let done = root.run(&format!(
        "{orig}/{pyexe} -c 'import socket; socket.create_connection((\"151.101.2.132\", 80), timeout=3)'"
    ));
    assert_ne!(done.code, Some(0), "network reachable inside the root");

    // With the plugin.
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let python = python_environment(&py);
    let mut target = TargetProfile::default();
    target.glibc = Some("2.36".into());
    let req = request(
        earlier.clone(),
        &work,
        Some(python),
        target,
        serde_json::json!({}),
    );
    let c = run_syslibs(&req);
    let names: Vec<&str> = c.packages.iter().map(|p| p.name.as_str()).collect();
    for lib in [
        "libssl.so.3",
        "libcrypto.so.3",
        "libsqlite3.so.0",
        "libffi.so.8",
    ] {
        assert!(names.contains(&lib), "{lib} not bundled: {names:?}");
    }
    for never in ["libc.so.6", "libm.so.6", "libpthread.so.0"] {
        assert!(!names.contains(&never), "{never} bundled");
    }
    let ssl = c
        .packages
        .iter()
        .find(|p| p.name == "libssl.so.3")
        .expect("libssl package");
    assert_eq!(ssl.kind, "system");
    assert!(ssl.origin.contains("libssl3"), "dpkg origin: {ssl:?}");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // The patched copies replace the originals; the libraries land in the library dir.
    assert!(c
        .entries
        .iter()
        .any(|e| e.replace && e.dest.ends_with("_ssl.cpython-311-x86_64-linux-gnu.so")));
    assert!(c
        .entries
        .iter()
        .any(|e| e.dest == "py/lib/airgap-syslibs/libssl.so.3"));

    materialize(&earlier, Some(&c), &tmp.path().join("with"));
    // Relocated to another prefix, with a LD_LIBRARY_PATH holding a broken libssl.
    root.copy_in(&tmp.path().join("with/py"), "/opt/py");
    std::fs::create_dir_all(root.host_path("/opt/badlib")).expect("mkdir");
    std::fs::write(root.host_path("/opt/badlib/libssl.so.3"), b"not a library").expect("write");
    let done = root.run_env(
        &format!(
            "/opt/py/{pyexe} -c 'import ssl, sqlite3, hashlib, ctypes, lzma, bz2, readline, curses; \
             print(ssl.OPENSSL_VERSION); print(sqlite3.sqlite_version)'"
        ),
        &[("LD_LIBRARY_PATH", "/opt/badlib")],
    );
    assert_eq!(
        done.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        done.stdout,
        done.stderr
    );
    assert!(done.stdout.contains("OpenSSL 3"), "{}", done.stdout);
}
