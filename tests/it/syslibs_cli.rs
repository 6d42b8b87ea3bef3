//! End to end with the real CLI: `airgap bundle` a pyenv CPython (conda source, plain
//! installation) with `[sources.syslibs] enabled = false`, and a venv of it with
//! `[sources.conda]` alone (syslibs comes with any environment), then `airgap unpack` them
//! inside a bare Debian root with no network, and import `ssl` and `sqlite3` there.

use std::path::Path;

use crate::syslibs_support::pyenv_python;
use airgap_tests::rootfs::{self, DebianRoot, Suite};
use airgap_tests::{airgap, bin, build_dir, run, tempdir};

fn config(dir: &Path, py: &Path, name: &str, syslibs: bool) -> std::path::PathBuf {
    let text = format!(
        r#"[bundle]
name = "{name}"

[sources.conda]
prefix = "{}"
exclude = ["lib/python3.11/site-packages/*", "lib/python3.11/idlelib", "lib/python3.11/tkinter", "lib/python3.11/turtledemo", "lib/python3.11/lib-dynload/_tkinter*", "lib/python3.11/config-3.11-x86_64-linux-gnu", "/include", "/share", "lib/pkgconfig", "lib/libpython3.11.a", "**/__pycache__"]
{}"#,
        py.display(),
        if syslibs {
            ""
        } else {
            "\n[sources.syslibs]\nenabled = false\n"
        }
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn bundle(config: &Path, out: &Path, extra: &[&str]) -> airgap_tests::Done {
    run(airgap()
        .env("AIRGAP_NO_PROGRESS", "true")
        .arg("--plugin-dir")
        .arg(build_dir())
        .arg("bundle")
        .args(extra)
        .arg("-c")
        .arg(config)
        .arg("-o")
        .arg(out))
}

#[test]
fn a_venv_with_the_conda_source_alone_imports_ssl_in_a_bare_debian_root_and_not_without_syslibs() {
    if !rootfs::supported() {
        return airgap_tests::skip("needs root, unshare and chroot");
    }
    let Some(py) = pyenv_python() else {
        return airgap_tests::skip("no CPython 3.11 installation (cargo xtask setup builds one)");
    };
    let tmp = tempdir();

    // Without syslibs the check refuses (the target, taken from the interpreter's tags, is a
    // manylinux_2_36 machine: libssl3 and libsqlite3 are not assumed there)...
    let plain = config(tmp.path(), &py, "plain", false);
    let plain_out = tmp.path().join("plain.tar.gz");
    let done = bundle(&plain, &plain_out, &[]);
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(done.stderr.contains("libssl.so.3"), "{}", done.stderr);
    assert!(!plain_out.exists());
    // ... and forced with --no-check, the bundle indeed cannot import ssl there.
    bundle(&plain, &plain_out, &["--no-check"]).success();

    // The refusal names the configuration change that fixes it.
    assert!(
        done.stderr
            .contains("help: turn the syslibs source on to carry the missing libraries: remove `enabled = false` from [sources.syslibs] in airgap.toml"),
        "{}",
        done.stderr
    );

    // A venv of it, with `[sources.conda]` alone: syslibs is on by itself.
    let venv = tmp.path().join("venv");
    run(std::process::Command::new(py.join("bin/python3"))
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv))
    .success();
    let full = config(tmp.path(), &venv, "full", true);
    let full_out = tmp.path().join("full.tar.gz");
    let done = bundle(&full, &full_out, &[]).success();
    assert!(
        done.stderr
            .contains("source syslibs is on: every environment needs its system libraries"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("libssl.so.3"), "{}", done.stderr);

    let root = DebianRoot::new(Suite::Bookworm);
    root.copy_in(&bin("airgap"), "/usr/local/bin/airgap");
    root.copy_in(&plain_out, "/root/plain.tar.gz");
    root.copy_in(&full_out, "/root/full.tar.gz");
    let env = [
        ("AIRGAP_NO_PROGRESS", "true"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ];

    let done = root.run_env(
        "cd /root && airgap unpack plain.tar.gz /opt/plain && /opt/plain/env/bin/python3 -c 'import ssl'",
        &env,
    );
    assert_ne!(done.code, Some(0), "ssl imported without syslibs");
    assert!(
        done.stderr.contains("libssl.so.3") || done.stderr.contains("libcrypto.so.3"),
        "{}",
        done.stderr
    );

    let done = root.run_env(
        "cd /root && airgap unpack full.tar.gz /opt/sites/p123/full && \
         /opt/sites/p123/full/env/bin/python3 -c 'import ssl, sqlite3, ctypes, readline; print(ssl.OPENSSL_VERSION, sqlite3.sqlite_version)'",
        &env,
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

#[test]
fn bundling_twice_gives_the_same_bytes_though_plugins_make_files_while_bundling() {
    let Some(py) = pyenv_python() else {
        return airgap_tests::skip("no CPython 3.11 installation (cargo xtask setup builds one)");
    };
    let tmp = tempdir();
    let full = config(tmp.path(), &py, "again", true);
    let first = tmp.path().join("first.tar.gz");
    let second = tmp.path().join("second.tar.gz");
    bundle(&full, &first, &[]).success();
    // Files the plugins make (grafted libraries, the activate script, rewritten scripts) are
    // new each run: a second later, their mtimes would differ.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    bundle(&full, &second, &[]).success();
    assert!(
        std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap(),
        "two bundles of the same input differ"
    );
    let listing = |bundle: &Path| {
        run(std::process::Command::new("tar")
            .args(["--full-time", "-tvzf"])
            .arg(bundle))
        .success()
        .stdout
    };
    let grafted = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("/airgap-syslibs/") && !l.starts_with('d'))
            .map(str::to_string)
            .collect()
    };
    // Libraries grafted as they are keep their own mtime; patched copies, made in the work
    // directory, get a fixed one.
    let stamped = |text: &str, date: &str| -> Vec<String> {
        grafted(text)
            .into_iter()
            .filter(|l| l.contains(date))
            .filter_map(|l| l.rsplit('/').next().map(str::to_string))
            .collect()
    };
    let patched = stamped(&listing(&first), " 1970-01-01 00:00:00 ");
    assert!(!patched.is_empty(), "no patched copy:\n{}", listing(&first));
    // The reproducible-builds convention sets that time.
    let third = tmp.path().join("third.tar.gz");
    run(airgap()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("--plugin-dir")
        .arg(build_dir())
        .args(["bundle", "-c"])
        .arg(&full)
        .arg("-o")
        .arg(&third))
    .success();
    assert_eq!(
        stamped(&listing(&third), " 2023-11-14 22:13:20 "),
        patched,
        "{}",
        listing(&third)
    );
}
