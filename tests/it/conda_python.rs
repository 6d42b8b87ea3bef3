//! The conda plugin on real Python installations: a venv with packages from real wheels
//! (bundled with its base installation), and a plain installation (pyenv), each unpacked at
//! another path and run where the source Python is hidden.

// In tests a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_plugin_api::{EntryKind, PrefixMode};
use airgap_tests::conda::{self, contribute, entry_source, hidden, materialize, rewrites};
use airgap_tests::{run, tempdir};
use serde_json::json;

fn readelf(path: &Path) -> String {
    run(Command::new("readelf").arg("-d").arg(path))
        .success()
        .stdout
}

/// The files of `c` whose names contain `needle` and that are listed for rewriting.
fn listed(c: &airgap_plugin_api::Contribution, needle: &str) -> Vec<String> {
    rewrites(c)
        .into_iter()
        .filter(|(d, _, _)| d.contains(needle))
        .map(|(d, _, _)| d)
        .collect()
}

#[test]
fn venv_with_wheels_runs_where_its_base_python_is_hidden() {
    if !conda::can_hide() {
        return airgap_tests::skip("no mount namespaces here (unshare --mount)");
    }
    let base = conda::base_python();
    let xy = conda::version_short(&base);
    let tmp = tempdir();
    let src = tmp.path().join("src");
    // A path over the kernel's 127-byte #! limit: pip writes its `#!/bin/sh` + `'''exec'` form.
    let venv = src.join(format!("project-venv-{}", "long".repeat(30)));
    conda::venv(&base, &venv, &["six", "attrs", "markupsafe"]);
    let original = std::fs::read_to_string(venv.join("bin/pip")).unwrap();
    assert!(original.starts_with("#!/bin/sh\n'''exec' "), "{original}");

    let config = json!({
        "prefix": venv,
        "stdlib_tests": false,
        "base_exclude": [format!("lib/python{xy}/config-*/*.a")],
    });
    let c = contribute(config, &tmp.path().join("work"), None).expect("contribute");

    // The Python facts later plugins rely on.
    let py = c.python.as_ref().expect("python facts");
    assert_eq!(py.prefix, "env");
    assert_eq!(
        py.site_packages,
        format!("env/lib/python{xy}/site-packages")
    );
    assert!(
        py.executable.starts_with("env/bin/python"),
        "{}",
        py.executable
    );
    assert_eq!(py.implementation, "cp");
    assert_eq!(py.abi, format!("cp{}", xy.replace('.', "")));
    assert!(py.version.starts_with(&xy));
    assert!(
        py.platforms.iter().any(|p| p == "linux_x86_64"),
        "{:?}",
        py.platforms
    );
    assert!(
        py.platforms.iter().any(|p| p == "manylinux_2_17_x86_64"),
        "{:?}",
        py.platforms
    );
    assert_eq!(py.source_prefix, venv);

    // The venv's interpreter link that left the env points into the bundled base, relative.
    let link = c
        .entries
        .iter()
        .find(|e| e.dest == "env/bin/python3")
        .expect("env/bin/python3");
    assert_eq!(
        link.kind,
        EntryKind::Symlink {
            target: "../../python/bin/python3".into()
        }
    );
    // pyvenv.cfg: `home` maps to the base's folder.
    let rw = rewrites(&c);
    let base_s = base.to_string_lossy().into_owned();
    assert!(rw
        .iter()
        .any(|(d, o, m)| d == "env/pyvenv.cfg" && *o == base_s && *m == PrefixMode::Text));
    // Scripts find their interpreter relative to themselves.
    let pip = std::fs::read_to_string(entry_source(&c, "env/bin/pip").unwrap()).unwrap();
    assert!(pip.starts_with("#!/bin/sh\n'''exec' \"$(dirname"), "{pip}");
    assert!(!pip.contains(&*venv.to_string_lossy()), "{pip}");
    // The base's site-packages is not visible from the venv: left out.
    assert!(!c.entries.iter().any(|e| e
        .dest
        .starts_with(&format!("python/lib/python{xy}/site-packages/"))));
    // libpython: search path patched, its strings never rewritten (that blanks sys.version).
    assert!(
        listed(&c, "libpython").is_empty(),
        "{:?}",
        listed(&c, "libpython")
    );
    let exe = entry_source(&c, &format!("python/bin/python{xy}")).unwrap();
    assert!(
        readelf(&exe).contains("[$ORIGIN/../lib]"),
        "{}",
        readelf(&exe)
    );
    // Packages from the wheels, and the interpreter.
    for name in ["six", "attrs", "MarkupSafe"] {
        assert!(
            c.packages
                .iter()
                .any(|p| p.name == name && p.kind == "python"),
            "{name}: {:?}",
            c.packages
        );
    }
    assert!(c.packages.iter().any(|p| p.kind == "interpreter"));

    let unpacked = tmp.path().join("elsewhere");
    materialize(&c, &unpacked).expect("install steps");
    let env = unpacked.join("env");
    let hide: [&Path; 2] = [&base, &src];

    let done = run(&mut hidden(
        &hide,
        &env.join("bin/python"),
        &[
            "-c",
            "import sys, six, attr, markupsafe; print(markupsafe.escape('<b>')); \
             print(sys.version.split()[0]); print(sys.prefix); print(sys.base_prefix); \
             print(markupsafe._speedups.__file__)",
        ],
    ))
    .success();
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines[0], "&lt;b&gt;");
    assert!(
        lines[1].starts_with(&xy),
        "sys.version is intact: {}",
        lines[1]
    );
    assert_eq!(lines[1], py.version, "sys.version is intact");
    assert_eq!(Path::new(lines[2]), env);
    assert_eq!(Path::new(lines[3]), unpacked.join("python"));
    assert!(
        lines[4].ends_with(".so"),
        "the C extension loaded: {}",
        lines[4]
    );

    let done = run(&mut hidden(
        &hide,
        &env.join("bin/python"),
        &["-m", "pip", "list"],
    ))
    .success();
    for name in ["six", "attrs", "MarkupSafe", "pip"] {
        assert!(
            done.stdout.contains(name),
            "{name} in pip list:\n{}",
            done.stdout
        );
    }
    let done = run(&mut hidden(&hide, &env.join("bin/pip"), &["--version"])).success();
    assert!(
        done.stdout.contains(&*env.to_string_lossy()),
        "{}",
        done.stdout
    );
}

fn plain_python() -> Option<PathBuf> {
    // Another version than the venv test's (3.11).
    airgap_tests::python::other_installation((3, 11), &[(3, 12), (3, 13), (3, 10)])
}

#[test]
fn plain_installation_runs_at_another_path_with_search_paths_made_relative() {
    let Some(base) = plain_python() else {
        return airgap_tests::skip(
            "no CPython installation other than 3.11 (cargo xtask setup builds one)",
        );
    };
    if !conda::can_hide() {
        return airgap_tests::skip("no mount namespaces here (unshare --mount)");
    }
    let xy = conda::version_short(&base);
    let tmp = tempdir();
    let config = json!({
        "prefix": base,
        "dest": "py",
        "stdlib_tests": false,
    });
    let c = contribute(config, &tmp.path().join("work"), None).expect("contribute");
    let py = c.python.as_ref().expect("python facts");
    assert_eq!(py.prefix, "py");
    // Nothing is rewritten in place in a binary (not libpython, not libpythonX.Y.a), so the
    // installation can go to a path longer than its source prefix.
    let binary: Vec<_> = rewrites(&c)
        .into_iter()
        .filter(|(_, _, m)| *m == PrefixMode::Binary)
        .collect();
    assert!(binary.is_empty(), "{binary:?}");

    // The interpreter and libpython find each other through $ORIGIN, not through strings.
    let exe = entry_source(&c, &format!("py/bin/python{xy}")).unwrap();
    assert!(
        readelf(&exe).contains("[$ORIGIN/../lib]"),
        "{}",
        readelf(&exe)
    );
    assert!(listed(&c, "libpython").is_empty());
    // libpython is over the size read whole (4 MiB): its search path is patched while it is
    // copied, to the same bytes as a whole read would give, so the copy keeps its size.
    let lib = format!("py/lib/libpython{xy}.so.1.0");
    let copy = entry_source(&c, &lib).unwrap();
    let original = base.join(format!("lib/libpython{xy}.so.1.0"));
    assert!(fs::metadata(&original).unwrap().len() > 4 << 20);
    assert_eq!(
        fs::metadata(&copy).unwrap().len(),
        fs::metadata(&original).unwrap().len()
    );
    assert!(readelf(&copy).contains("[$ORIGIN]"), "{}", readelf(&copy));
    assert!(listed(&c, ".pyc").is_empty());
    // The stdlib's test suite is left out on request.
    assert!(!c
        .entries
        .iter()
        .any(|e| e.dest.starts_with(&format!("py/lib/python{xy}/test/"))));
    // Text files holding the prefix are listed (sysconfig data, python-config).
    assert!(!listed(&c, "_sysconfigdata").is_empty());

    let unpacked = tmp
        .path()
        .join("a-destination-much-longer-than-the-source-prefix-of-the-installation");
    assert!(unpacked.join("py").as_os_str().len() > base.as_os_str().len());
    materialize(&c, &unpacked).expect("install steps");
    let root = unpacked.join("py");
    let hide: [&Path; 1] = [&base];
    let done = run(&mut hidden(
        &hide,
        &root.join("bin/python3"),
        &[
            "-c",
            "import sys, json, sysconfig; print(sys.version.split()[0]); print(sys.prefix); \
             print(sysconfig.get_config_var('prefix'))",
        ],
    ))
    .success();
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines[0], py.version);
    assert_eq!(Path::new(lines[1]), root);
    assert_eq!(Path::new(lines[2]), root, "sysconfig data rewritten");
    let done = run(&mut hidden(&hide, &root.join("bin/pip3"), &["--version"])).success();
    assert!(
        done.stdout.contains(&*root.to_string_lossy()),
        "{}",
        done.stdout
    );
}

/// The seed's case, the whole way: `airgap bundle` of a venv (whose `bin/python` links leave
/// the env), `airgap unpack` elsewhere, run with the source Python hidden, then `airgap
/// relocate` to a longer path (nothing is rewritten in place in a binary) and run again.
#[test]
fn venv_through_airgap_bundle_unpack_and_relocate_to_a_longer_path() {
    if !conda::can_hide() {
        return airgap_tests::skip("no mount namespaces here (unshare --mount)");
    }
    let base = conda::base_python();
    let xy = conda::version_short(&base);
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let venv = src.join("venv");
    conda::venv(&base, &venv, &["six", "markupsafe"]);
    let config = tmp.path().join("airgap.toml");
    std::fs::write(
        &config,
        format!(
            "[bundle]\nname = \"app\"\ncompression = \"zstd\"\nlevel = 1\n\n[sources.conda]\n\
             prefix = \"src/venv\"\nstdlib_tests = false\n\
             base_exclude = [\"lib/python{xy}/config-*/*.a\"]\n"
        ),
    )
    .unwrap();
    let bundle = tmp.path().join("app.tar.zst");
    run(airgap_tests::airgap()
        .arg("bundle")
        .arg("-c")
        .arg(&config)
        .arg("--plugin-dir")
        .arg(airgap_tests::build_dir())
        .arg("-o")
        .arg(&bundle)
        // The base's extension modules need system libraries (libssl, libffi...) that bring
        // the syslibs source; this machine, the target here, has them.
        .arg("--no-check"))
    .success();

    let dest = tmp.path().join("d");
    run(airgap_tests::airgap().arg("unpack").arg(&bundle).arg(&dest)).success();
    let hide: [&Path; 2] = [&base, &src];
    let check = |env: &Path| {
        let done = run(&mut hidden(
            &hide,
            &env.join("bin/python"),
            &[
                "-c",
                "import sys, six, markupsafe; print(markupsafe.escape('<'), sys.prefix)",
            ],
        ))
        .success();
        assert_eq!(done.stdout, format!("&lt; {}\n", env.display()));
        let done = run(&mut hidden(&hide, &env.join("bin/pip"), &["list"])).success();
        assert!(done.stdout.contains("MarkupSafe"), "{}", done.stdout);
        // The generated activate script: `python` is the env's, VIRTUAL_ENV is set.
        let script = format!(
            ". '{}/activate' && python -c 'import sys, six; print(sys.prefix)' && echo \"$VIRTUAL_ENV\"",
            env.display()
        );
        let done = run(&mut hidden(&hide, Path::new("/bin/bash"), &["-c", &script])).success();
        let e = env.display();
        assert_eq!(done.stdout, format!("{e}\n{e}\n"));
    };
    check(&dest.join("env"));

    let longer = tmp
        .path()
        .join("moved-to-a-much-longer-path-than-the-venv-and-its-base-had-on-the-build-machine");
    run(airgap_tests::airgap()
        .arg("relocate")
        .arg(&dest)
        .arg(&longer))
    .success();
    check(&longer.join("env"));
}

/// The seed's machine: a minimal Debian root with no Python at all. The venv's bundle is
/// unpacked there by its own unpacker (no airgap installed), then its Python and pip run.
#[test]
fn venv_bundle_runs_in_a_debian_root_without_python() {
    use airgap_tests::rootfs::{self, DebianRoot, Suite};
    if !rootfs::supported() {
        return airgap_tests::skip("needs root, unshare and chroot");
    }
    let base = conda::base_python();
    let xy = conda::version_short(&base);
    let tmp = tempdir();
    let venv = tmp.path().join("src/venv");
    conda::venv(&base, &venv, &["six", "markupsafe"]);
    let config = tmp.path().join("airgap.toml");
    std::fs::write(
        &config,
        format!(
            "[bundle]\nname = \"app\"\nlevel = 1\n\n[sources.conda]\nprefix = \"src/venv\"\n\
             stdlib_tests = false\n\
             # smaller and faster: byte code is made again on import\n\
             base_exclude = [\"lib/python{xy}/config-*/*.a\", \"**/__pycache__\"]\n"
        ),
    )
    .unwrap();
    let bundle = tmp.path().join("app.tar.gz");
    run(airgap_tests::airgap()
        .arg("bundle")
        .arg("-c")
        .arg(&config)
        .arg("--plugin-dir")
        .arg(airgap_tests::build_dir())
        .arg("-o")
        .arg(&bundle)
        .arg("--no-check"))
    .success();

    let root = DebianRoot::new(Suite::Bookworm);
    assert!(
        !root.host_path("/usr/bin/python3").exists(),
        "the root has no python"
    );
    root.copy_in(&bundle, "/tmp/app.tar.gz");
    let done = root.run(
        "cd /tmp && tar xzf app.tar.gz && ./app/unpack /srv/app -q && \
         /srv/app/env/bin/python -c 'import sys, six, markupsafe; print(markupsafe.escape(\"<\"), sys.prefix)' && \
         /srv/app/env/bin/pip list",
    );
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(
        done.stdout.starts_with("&lt; /srv/app/env\n"),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains("MarkupSafe"), "{}", done.stdout);
}

/// Without `packaging` (nor pip's vendored copy) the platform tags are computed from the glibc
/// version, as pip would compute them.
#[test]
fn platform_tags_without_packaging_come_from_the_glibc_version() {
    let base = conda::base_python();
    let xy = conda::version_short(&base);
    let tmp = tempdir();
    let venv = tmp.path().join("bare");
    let status = Command::new(base.join("bin/python3"))
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(status.success());
    let facts = airgap_conda::python::interrogate(&venv.join("bin/python3")).unwrap();
    assert_eq!(facts.abi, format!("cp{}", xy.replace('.', "")));
    assert_eq!(facts.implementation, "cp");
    let glibc = run(Command::new("getconf").arg("GNU_LIBC_VERSION"))
        .success()
        .stdout;
    let minor = glibc.trim().rsplit('.').next().unwrap();
    let arch = std::env::consts::ARCH;
    assert_eq!(facts.platforms[0], format!("manylinux_2_{minor}_{arch}"));
    for tag in [
        format!("manylinux_2_17_{arch}"),
        format!("manylinux2014_{arch}"),
        format!("linux_{arch}"),
    ] {
        assert!(
            facts.platforms.contains(&tag),
            "{tag}: {:?}",
            facts.platforms
        );
    }
    assert_eq!(facts.platforms.last().unwrap(), &format!("linux_{arch}"));
}

#[test]
fn files_over_the_whole_read_limit_are_scanned_in_windows_with_the_same_rewrites() {
    let base = conda::base_python();
    let tmp = tempdir();
    let venv = tmp.path().join("src/venv-with-large-files");
    conda::venv(&base, &venv, &[]);
    let venv = std::fs::canonicalize(&venv).unwrap();
    let prefix = venv.to_str().unwrap().as_bytes().to_vec();
    let big = venv.join("share/big");
    std::fs::create_dir_all(&big).unwrap();
    // Over the 4 MiB limit, with windows of 1 MiB: the prefix at offsets around the first
    // window's end, wherever the overlap (the longest prefix) puts it.
    const SIZE: usize = 4 * 1024 * 1024 + 1;
    const WINDOW: usize = 1024 * 1024;
    let mut straddling = Vec::new();
    for (i, at) in (WINDOW - prefix.len()..WINDOW + 2 * prefix.len())
        .step_by(7)
        .enumerate()
    {
        let mut data = vec![b'a'; SIZE];
        data[at..at + prefix.len()].copy_from_slice(&prefix);
        let name = format!("text-{i:02}.txt");
        std::fs::write(big.join(&name), &data).unwrap();
        straddling.push(name);
    }
    // A two-byte character cut by the window's end is still text.
    let mut data = vec![b'b'; SIZE];
    data[WINDOW - 1..WINDOW + 1].copy_from_slice("é".as_bytes());
    data[3 * WINDOW..3 * WINDOW + prefix.len()].copy_from_slice(&prefix);
    std::fs::write(big.join("utf8.txt"), &data).unwrap();
    // NUL bytes make it binary.
    let mut data = vec![0u8; SIZE];
    data[2 * WINDOW + 5..2 * WINDOW + 5 + prefix.len()].copy_from_slice(&prefix);
    std::fs::write(big.join("data.bin"), &data).unwrap();
    std::fs::write(big.join("clean.bin"), vec![0u8; SIZE]).unwrap();

    let config = json!({ "prefix": venv, "stdlib_tests": false });
    let c = contribute(config, &tmp.path().join("work"), None).expect("contribute");
    let found = |name: &str| -> Vec<PrefixMode> {
        rewrites(&c)
            .into_iter()
            .filter(|(d, old, _)| {
                d.ends_with(&format!("share/big/{name}")) && old.as_bytes() == prefix
            })
            .map(|(_, _, m)| m)
            .collect()
    };
    for name in &straddling {
        assert_eq!(found(name), [PrefixMode::Text], "{name}");
    }
    assert_eq!(found("utf8.txt"), [PrefixMode::Text]);
    assert_eq!(found("data.bin"), [PrefixMode::Binary]);
    assert!(
        !listed(&c, "clean.bin")
            .iter()
            .any(|d| d.ends_with("clean.bin")),
        "{:?}",
        rewrites(&c)
    );
}
