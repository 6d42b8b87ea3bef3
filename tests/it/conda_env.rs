//! The conda plugin on a real conda environment: made by py-rattler from a local channel whose
//! packages carry prefix placeholders in a text file and in a compiled program, plus files
//! that no package owns (as pip would leave them).

// In tests a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_plugin_api::{InstallStep, PrefixMode};
use airgap_tests::conda::{self, contribute, entry_source, materialize, rewrites};
use airgap_tests::{run, tempdir};
use serde_json::json;

/// A conda env under `root`, with unmanaged files added the way pip and a local build would.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    prefix: PathBuf,
}

fn fixture() -> Option<Fixture> {
    if !conda::have_rattler() {
        airgap_tests::skip(
            "py-rattler is not importable by the tools python (cargo xtask setup installs it)",
        );
        return None;
    }
    let tmp = tempdir();
    let root = tmp.path().to_path_buf();
    // A long source prefix, so that the unpacked one can be shorter.
    let prefix = root.join("source-machine/miniconda3/envs/hello-environment");
    conda::conda_env(&prefix, &root.join("pkgs"));

    // Files no package owns: a text config and a binary blob holding the prefix, byte code
    // holding it too, and a program linked against the env's library with an absolute RUNPATH.
    let p = prefix.to_string_lossy().into_owned();
    std::fs::create_dir_all(prefix.join("etc")).unwrap();
    std::fs::write(
        prefix.join("etc/unmanaged.conf"),
        format!("data_dir = {p}/share/hello\n"),
    )
    .unwrap();
    let mut blob = vec![0xff, 0xfe, 0, 1, 2];
    blob.extend_from_slice(format!("{p}/share/hello/data.txt").as_bytes());
    blob.extend_from_slice(&[0, 0xff, 0x80]);
    std::fs::write(prefix.join("share/hello/blob.bin"), blob).unwrap();
    let pycache = prefix.join("lib/__pycache__");
    std::fs::create_dir_all(&pycache).unwrap();
    let mut pyc = b"\xa7\x0d\x0d\x0a\0\0\0\0".to_vec();
    pyc.extend_from_slice(p.as_bytes());
    std::fs::write(pycache.join("mod.cpython-311.pyc"), pyc).unwrap();
    let src = root.join("uses-greet.c");
    std::fs::write(
        &src,
        "void greet(void); int main(void) { greet(); return 0; }\n",
    )
    .unwrap();
    let status = Command::new("gcc")
        .arg("-o")
        .arg(prefix.join("bin/uses-greet"))
        .arg(&src)
        .arg(format!("-L{p}/lib"))
        .arg("-lgreet")
        .arg(format!("-Wl,-rpath,{p}/lib"))
        .arg("-Wl,--enable-new-dtags")
        .status()
        .expect("run gcc");
    assert!(status.success());
    Some(Fixture {
        _tmp: tmp,
        root,
        prefix,
    })
}

fn output(program: &Path) -> String {
    let done = run(Command::new(program)
        .env_clear()
        .env("PATH", "/usr/bin:/bin"))
    .success();
    done.stdout
}

#[test]
fn conda_env_is_described_from_conda_meta_and_unmanaged_files_are_detected() {
    let Some(f) = fixture() else { return };
    // What a conda installation keeps beside an env is never bundled.
    for dir in ["pkgs/some-pkg-1.0-0/info", "envs/other/bin", "conda-bld/x"] {
        std::fs::create_dir_all(f.prefix.join(dir)).unwrap();
        std::fs::write(f.prefix.join(dir).join("file"), "x").unwrap();
    }
    std::fs::write(f.prefix.join(".conda_lock"), "").unwrap();
    // A broken link is left out with a warning, not carried as a dangling link.
    std::os::unix::fs::symlink("../nothing-here", f.prefix.join("bin/broken-link")).unwrap();
    // An absolute link into the env becomes a relative one.
    std::os::unix::fs::symlink(
        f.prefix.join("share/hello/data.txt"),
        f.prefix.join("share/data-link.txt"),
    )
    .unwrap();
    // A managed file that still holds its placeholder (never replaced at install): its
    // placeholder is the prefix to rewrite.
    let script = f.prefix.join("bin/hello-script");
    std::fs::remove_file(&script).unwrap(); // a hard link into the package cache
    let placeholder = conda::placeholder();
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncat {placeholder}/share/hello/greeting.txt\n"),
    )
    .unwrap();
    let c =
        contribute(json!({"prefix": f.prefix}), &f.root.join("work"), None).expect("contribute");
    let p = f.prefix.to_string_lossy().into_owned();
    for skipped in ["env/pkgs", "env/envs", "env/conda-bld", "env/.conda_lock"] {
        assert!(
            !c.entries.iter().any(|e| e.dest.starts_with(skipped)),
            "{skipped} is bundled"
        );
    }

    assert!(!c.entries.iter().any(|e| e.dest == "env/bin/broken-link"));
    assert!(
        c.warnings.iter().any(|w| w.contains("broken-link")),
        "{:?}",
        c.warnings
    );
    let link = c
        .entries
        .iter()
        .find(|e| e.dest == "env/share/data-link.txt")
        .unwrap();
    assert_eq!(
        link.kind,
        airgap_plugin_api::EntryKind::Symlink {
            target: "hello/data.txt".into()
        }
    );

    // One package per conda-meta record, with its channel.
    let mut ids: Vec<&str> = c.packages.iter().map(|p| p.id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["conda:hello-docs-2.1-0", "conda:hello-tools-1.0-h0_0"]
    );
    let tools = c.packages.iter().find(|p| p.name == "hello-tools").unwrap();
    assert_eq!(tools.kind, "conda");
    assert!(tools.origin.starts_with("file://"), "{}", tools.origin);
    assert_eq!(
        c.entries
            .iter()
            .find(|e| e.dest == "env/bin/hello-paths")
            .unwrap()
            .package
            .as_deref(),
        Some("conda:hello-tools-1.0-h0_0")
    );

    // rattler's CACHEDIR.TAG does not make the walker skip the environment.
    assert!(c.entries.iter().any(|e| e.dest == "env/CACHEDIR.TAG"));
    assert!(c
        .entries
        .iter()
        .any(|e| e.dest == "env/conda-meta/hello-tools-1.0-h0_0.json"));

    let rw = rewrites(&c);
    let mode_of = |dest: &str| -> Vec<(String, PrefixMode)> {
        rw.iter()
            .filter(|(d, _, _)| d == dest)
            .map(|(_, o, m)| (o.clone(), *m))
            .collect()
    };
    // Managed files: the mode conda-meta gives, for the prefix the installer wrote.
    assert_eq!(
        mode_of("env/bin/hello-paths"),
        [(p.clone(), PrefixMode::Binary)]
    );
    assert_eq!(
        mode_of("env/bin/hello-script"),
        [(placeholder.clone(), PrefixMode::Text)]
    );
    // A binary file conda installed records the room its placeholder left (255 bytes, as
    // conda-build pads it); text files and files no package owns record none.
    assert_eq!(
        conda::capacity(&c, "env/bin/hello-paths", &p),
        Some(Some(255))
    );
    assert_eq!(
        conda::capacity(&c, "env/bin/hello-script", &placeholder),
        Some(None)
    );
    assert_eq!(
        conda::capacity(&c, "env/share/hello/blob.bin", &p),
        Some(None)
    );
    assert!(mode_of("env/share/hello/data.txt").is_empty());
    // Unmanaged files: detected, text or binary by content.
    assert_eq!(
        mode_of("env/etc/unmanaged.conf"),
        [(p.clone(), PrefixMode::Text)]
    );
    assert_eq!(
        mode_of("env/share/hello/blob.bin"),
        [(p.clone(), PrefixMode::Binary)]
    );
    // Byte code is never rewritten ("bad marshal data").
    assert!(mode_of("env/lib/__pycache__/mod.cpython-311.pyc").is_empty());
    assert!(c
        .entries
        .iter()
        .any(|e| e.dest == "env/lib/__pycache__/mod.cpython-311.pyc"));
    // The unmanaged program's absolute RUNPATH became relative, on a copy: not listed for a
    // string rewrite, and the source env is untouched.
    assert!(mode_of("env/bin/uses-greet").is_empty());
    let copy = entry_source(&c, "env/bin/uses-greet").unwrap();
    assert!(copy.starts_with(f.root.join("work")), "{}", copy.display());
    let readelf = run(Command::new("readelf").arg("-d").arg(&copy))
        .success()
        .stdout;
    assert!(readelf.contains("[$ORIGIN/../lib]"), "{readelf}");
    let readelf = run(Command::new("readelf")
        .arg("-d")
        .arg(f.prefix.join("bin/uses-greet")))
    .success()
    .stdout;
    assert!(readelf.contains(&format!("[{p}/lib]")), "{readelf}");
    // An activate script at the env's root.
    assert!(c.entries.iter().any(|e| e.dest == "env/activate"));
    assert!(c.python.is_none(), "this env has no python");
}

#[test]
fn conda_env_runs_after_unpacking_to_a_shorter_path_and_after_moving_again() {
    let Some(f) = fixture() else { return };
    let c = contribute(
        json!({"prefix": f.prefix, "dest": "env"}),
        &f.root.join("work"),
        None,
    )
    .expect("contribute");
    let short = f.root.join("u");
    materialize(&c, &short).expect("install steps");
    // Take the source env away, so that nothing can work by reaching back to it.
    std::fs::rename(f.root.join("source-machine"), f.root.join("gone")).unwrap();
    runs_at(&short);
    let env = short.join("env");
    let conf = std::fs::read_to_string(env.join("etc/unmanaged.conf")).unwrap();
    assert_eq!(conf, format!("data_dir = {}/share/hello\n", env.display()));

    // Move it again: the recorded prefixes are rewritten once more.
    let moved = f.root.join("v");
    conda::relocate(&short, &moved).expect("relocate");
    runs_at(&moved);
    let env = moved.join("env");

    // The activate script works from where it is, in bash and in sh.
    let activate = env.join("activate");
    let bash = run(Command::new("bash").arg("-c").arg(format!(
        ". '{}' && echo \"$CONDA_PREFIX\" && hello-script && deactivate && echo \"[$CONDA_PREFIX]\"",
        activate.display()
    )))
    .success();
    assert_eq!(
        bash.stdout,
        format!("{}\nhello from the text placeholder\n[]\n", env.display())
    );
    let sh = run(Command::new("sh")
        .arg("-c")
        .arg(format!(". '{}' && hello-script", activate.display())))
    .success();
    assert_eq!(sh.stdout, "hello from the text placeholder\n");
}

#[test]
fn conda_env_with_a_known_destination_needs_no_rewriting_at_unpack() {
    let Some(f) = fixture() else { return };
    let target = f.root.join("t");
    let target_s = target.to_string_lossy().into_owned();
    let c = contribute(
        json!({"prefix": f.prefix}),
        &f.root.join("work"),
        Some(&target_s),
    )
    .expect("contribute");
    // Files are listed under their new prefix (so that they can be moved later), already
    // rewritten in copies.
    for step in &c.install_steps {
        if let InstallStep::RewritePrefix {
            old_prefix, root, ..
        } = step
        {
            assert_eq!(old_prefix, &format!("{target_s}/{root}"));
        }
    }
    // Copy only: no step has anything to do at the destination it was made for.
    materialize(&c, &target).expect("install");
    std::fs::rename(f.root.join("source-machine"), f.root.join("gone")).unwrap();
    let env = target.join("env");
    assert_eq!(
        output(&env.join("bin/hello-paths")),
        "hello from the data file\n"
    );
    assert_eq!(
        output(&env.join("bin/hello-script")),
        "hello from the text placeholder\n"
    );

    // A destination longer than the source prefix cannot fit in the binary file: refused at
    // bundle time, naming the file and the longest path that fits.
    let long = format!("/{}", "x".repeat(300));
    let f2 = fixture().unwrap();
    let err = contribute(
        json!({"prefix": f2.prefix}),
        &f2.root.join("work"),
        Some(&long),
    )
    .expect_err("too long");
    assert!(
        err.message.contains("env/bin/hello-paths"),
        "{}",
        err.message
    );
    assert!(err.message.contains("longer than"), "{}", err.message);
    assert!(err.help.unwrap().contains("at most"));

    // Longer than the source prefix, within the placeholder's room: conda's binaries take it
    // at bundle time too, and keep their room for later moves (a binary no package owns would
    // not take it: left out here).
    let f3 = fixture().unwrap();
    std::fs::remove_file(f3.prefix.join("share/hello/blob.bin")).unwrap();
    let longer = f3.root.join("t".repeat(100));
    let longer_s = longer.to_string_lossy().into_owned();
    assert!(longer.join("env").as_os_str().len() > f3.prefix.as_os_str().len());
    let c = contribute(
        json!({"prefix": f3.prefix}),
        &f3.root.join("work"),
        Some(&longer_s),
    )
    .expect("fits in the placeholder's room");
    assert_eq!(
        conda::capacity(&c, "env/bin/hello-prefix", &format!("{longer_s}/env")),
        Some(Some(255))
    );
    materialize(&c, &longer).expect("install");
    std::fs::rename(f3.root.join("source-machine"), f3.root.join("gone")).unwrap();
    assert_eq!(
        output(&longer.join("env/bin/hello-prefix")),
        format!("{longer_s}/env\n")
    );
}

#[test]
fn binary_relocation_that_cannot_fit_is_refused_before_writing() {
    let Some(f) = fixture() else { return };
    let c =
        contribute(json!({"prefix": f.prefix}), &f.root.join("work"), None).expect("contribute");
    // Beyond the 255 bytes the placeholder left (and the unpadded blob's source prefix).
    let deep = f.root.join(format!("{}/deeper", "d".repeat(240)));
    assert!(deep.join("env").as_os_str().len() > 255);
    let err = materialize(&c, &deep).expect_err("longer prefix must not fit");
    assert!(err.contains("env/bin/hello-paths"), "{err}");
    // The binary file is untouched: still the source prefix.
    let data = std::fs::read(deep.join("env/bin/hello-paths")).unwrap();
    let p = f.prefix.to_string_lossy().into_owned();
    assert!(airgap_conda::prefix::contains(&data, p.as_bytes()));
}

/// The whole way, with the real tools: `airgap bundle -c airgap.toml` loads the plugin library,
/// `airgap unpack` installs it at a shorter path, `airgap relocate` moves it again.
#[test]
fn conda_env_through_airgap_bundle_unpack_and_relocate() {
    let Some(f) = fixture() else { return };
    let config = f.root.join("airgap.toml");
    std::fs::write(
        &config,
        "[bundle]\nname = \"hello\"\n\n[sources.conda]\nprefix = \"source-machine/miniconda3/envs/hello-environment\"\n",
    )
    .unwrap();
    let bundle = f.root.join("hello.tar.gz");
    let done = run(airgap_tests::airgap()
        .arg("bundle")
        .arg("-c")
        .arg(&config)
        .arg("--plugin-dir")
        .arg(airgap_tests::build_dir())
        .arg("-o")
        .arg(&bundle)
        .current_dir(&f.root))
    .success();
    assert!(done.stderr.contains("conda"), "{}", done.stderr);
    // The source is gone before the bundle is installed.
    std::fs::rename(f.root.join("source-machine"), f.root.join("gone")).unwrap();

    // A destination longer than the placeholder the compiled program was built with: the
    // archive engine refuses before writing anything, naming the file.
    let too_long = f.root.join("d".repeat(120)).join("d".repeat(120));
    std::fs::create_dir(f.root.join("d".repeat(120))).unwrap();
    let done = run(airgap_tests::airgap()
        .arg("unpack")
        .arg(&bundle)
        .arg(&too_long))
    .failure();
    assert!(
        done.stderr.contains("env/bin/hello-paths"),
        "{}",
        done.stderr
    );
    assert!(!too_long.exists());

    let dest = f.root.join("u");
    run(airgap_tests::airgap().arg("unpack").arg(&bundle).arg(&dest)).success();
    runs_at(&dest);

    // Longer than the first destination: binary files have the room of their placeholder.
    let moved = f.root.join("relocated-again");
    run(airgap_tests::airgap()
        .arg("relocate")
        .arg(&dest)
        .arg(&moved))
    .success();
    runs_at(&moved);
}

/// A search path whose relative form is longer than the absolute one cannot be edited in place:
/// airgap-elf (patchelf) rewrites the copy instead.
#[test]
fn search_paths_that_do_not_fit_in_place_are_set_by_airgap_elf() {
    if !airgap_elf::patch::patchelf_available() {
        return airgap_tests::skip("patchelf is not installed");
    }
    let tmp = tempdir();
    let env = tmp.path().join("e");
    std::fs::create_dir_all(env.join("conda-meta")).unwrap();
    std::fs::create_dir_all(env.join("lib")).unwrap();
    let deep = env.join("a/b/c/d/e/f/g/h");
    std::fs::create_dir_all(&deep).unwrap();
    let lib_c = tmp.path().join("greet.c");
    std::fs::write(
        &lib_c,
        "#include <stdio.h>\nvoid greet(void) { puts(\"deep greeting\"); }\n",
    )
    .unwrap();
    let p = env.to_string_lossy().into_owned();
    assert!(
        run(Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(env.join("lib/libgreet.so"))
            .arg(&lib_c))
        .code
            == Some(0)
    );
    let main_c = tmp.path().join("main.c");
    std::fs::write(
        &main_c,
        "void greet(void); int main(void) { greet(); return 0; }\n",
    )
    .unwrap();
    run(Command::new("gcc")
        .arg("-o")
        .arg(deep.join("prog"))
        .arg(&main_c)
        .arg(format!("-L{p}/lib"))
        .arg("-lgreet")
        .arg(format!("-Wl,-rpath,{p}/lib")))
    .success();

    let c = contribute(json!({"prefix": env}), &tmp.path().join("work"), None).expect("contribute");
    let copy = entry_source(&c, "env/a/b/c/d/e/f/g/h/prog").unwrap();
    let dynamic = run(Command::new("readelf").arg("-d").arg(&copy))
        .success()
        .stdout;
    assert!(
        dynamic.contains("[$ORIGIN/../../../../../../../../lib]"),
        "{dynamic}"
    );
    assert!(rewrites(&c).iter().all(|(d, _, _)| !d.ends_with("/prog")));
    let dest = tmp.path().join("u");
    materialize(&c, &dest).unwrap();
    std::fs::rename(&env, tmp.path().join("gone")).unwrap();
    assert_eq!(
        output(&dest.join("env/a/b/c/d/e/f/g/h/prog")),
        "deep greeting\n"
    );
}

/// A conda environment with Python: a `python` package (made from a pyenv installation), and a
/// noarch python package whose module holds a text placeholder and whose entry point rattler
/// wrote with the env's absolute interpreter path. Unpacked elsewhere with the pyenv
/// installation and the source env hidden, its Python and entry point run.
#[test]
fn conda_env_with_python_and_a_noarch_package_runs_elsewhere() {
    if !conda::have_rattler() || !conda::can_hide() {
        return airgap_tests::skip("needs py-rattler and mount namespaces");
    }
    let tmp = tempdir();
    let prefix = tmp.path().join("src/envs/py-environment");
    conda::conda_env_with(&prefix, &tmp.path().join("pkgs"), &["python", "hello-py"]);
    let source = conda::conda_python_source();
    let xy = conda::version_short(&source);

    let c =
        contribute(json!({"prefix": prefix}), &tmp.path().join("work"), None).expect("contribute");
    let py = c.python.as_ref().expect("python facts");
    assert_eq!(
        py.site_packages,
        format!("env/lib/python{xy}/site-packages")
    );
    assert_eq!(py.abi, format!("cp{}", xy.replace('.', "")));
    assert!(c
        .packages
        .iter()
        .any(|p| p.id.starts_with("conda:python-") && p.kind == "conda"));
    assert!(c.packages.iter().any(|p| p.id == "conda:hello-py-0.3-py_0"));
    let module = format!("env/lib/python{xy}/site-packages/hello_py/__init__.py");
    let p = prefix.to_string_lossy().into_owned();
    assert!(rewrites(&c)
        .iter()
        .any(|(d, o, m)| *d == module && *o == p && *m == PrefixMode::Text));
    // The entry point finds its interpreter relative to itself.
    let script = std::fs::read_to_string(entry_source(&c, "env/bin/hello-py").unwrap()).unwrap();
    assert!(script.starts_with("#!/bin/sh\n'''exec'"), "{script}");

    let dest = tmp.path().join("elsewhere");
    materialize(&c, &dest).expect("install");
    let env = dest.join("env");
    let hide: [&Path; 2] = [&source, &tmp.path().join("src")];
    let done = run(&mut conda::hidden(&hide, &env.join("bin/hello-py"), &[])).success();
    assert_eq!(done.stdout, format!("hello-py True {}\n", py.version));
    let done = run(&mut conda::hidden(
        &hide,
        &env.join("bin/python"),
        &[
            "-c",
            "import sys, json, hello_py; print(sys.prefix); print(hello_py.PREFIX)",
        ],
    ))
    .success();
    let e = env.to_string_lossy();
    assert_eq!(done.stdout, format!("{e}\n{e}\n"));
}

/// Records written by older conda versions have no `paths_data`: the placeholders then come
/// from the package cache, `info/paths.json`, else `info/has_prefix`.
#[test]
fn placeholders_come_from_the_package_cache_when_conda_meta_lacks_paths_data() {
    let Some(f) = fixture() else { return };
    let meta = f.prefix.join("conda-meta/hello-tools-1.0-h0_0.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    record.as_object_mut().unwrap().remove("paths_data");
    let cache = std::path::PathBuf::from(record["extracted_package_dir"].as_str().unwrap());
    std::fs::write(&meta, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    let p = f.prefix.to_string_lossy().into_owned();
    let expected = |c: &airgap_plugin_api::Contribution| {
        let rw = rewrites(c);
        let get = |d: &str| {
            rw.iter()
                .filter(|(x, _, _)| x == d)
                .map(|(_, o, m)| (o.clone(), *m))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            get("env/bin/hello-paths"),
            [(p.clone(), PrefixMode::Binary)]
        );
        assert_eq!(get("env/bin/hello-script"), [(p.clone(), PrefixMode::Text)]);
    };
    let c = contribute(json!({"prefix": f.prefix}), &f.root.join("w1"), None).unwrap();
    expected(&c);

    // The oldest form: info/has_prefix ("placeholder mode path").
    let paths_json = cache.join("info/paths.json");
    let placeholder = {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&paths_json).unwrap()).unwrap();
        v["paths"][0]["prefix_placeholder"]
            .as_str()
            .unwrap()
            .to_string()
    };
    std::fs::remove_file(&paths_json).unwrap();
    std::fs::write(
        cache.join("info/has_prefix"),
        format!("{placeholder} binary bin/hello-paths\n/opt/anaconda1anaconda2anaconda3 text bin/hello-script\n"),
    )
    .unwrap();
    let c = contribute(json!({"prefix": f.prefix}), &f.root.join("w2"), None).unwrap();
    expected(&c);
}

/// `airgap bundle -c airgap.toml` of the fixture's env, with the plugin library of this build.
fn bundle_with_cli(f: &Fixture) -> PathBuf {
    let config = f.root.join("airgap.toml");
    std::fs::write(
        &config,
        "[bundle]\nname = \"hello\"\n\n[sources.conda]\nprefix = \"source-machine/miniconda3/envs/hello-environment\"\n",
    )
    .unwrap();
    let bundle = f.root.join("hello.tar.gz");
    run(airgap_tests::airgap()
        .arg("bundle")
        .arg("-c")
        .arg(&config)
        .arg("--plugin-dir")
        .arg(airgap_tests::build_dir())
        .arg("-o")
        .arg(&bundle)
        .current_dir(&f.root))
    .success();
    bundle
}

/// The env's programs run at `tree/env` and see it as their prefix: the compiled-in one
/// (binary placeholder), a data path built on it, and a script (text placeholder).
fn runs_at(tree: &Path) {
    let env = tree.join("env");
    assert_eq!(
        output(&env.join("bin/hello-prefix")),
        format!("{}\n", env.display())
    );
    assert_eq!(
        output(&env.join("bin/hello-paths")),
        "hello from the data file\n"
    );
    assert_eq!(
        output(&env.join("bin/hello-script")),
        "hello from the text placeholder\n"
    );
    assert_eq!(
        output(&env.join("bin/uses-greet")),
        "greetings from libgreet\n"
    );
}

/// conda-build pads a binary's placeholder to 255 bytes and the installer pads the prefix it
/// writes with NUL bytes up to that length: the bundle records that room, so the env goes to a
/// path longer than its source prefix, then longer again, then shorter, through the real CLI.
#[test]
fn conda_env_unpacks_longer_than_its_source_then_relocates_longer_again_then_shorter() {
    let Some(f) = fixture() else { return };
    // Conda's own binaries only: a binary no package owns keeps the length of the prefix it
    // holds (`a_binary_without_a_padded_placeholder_keeps_the_length_of_its_prefix`).
    std::fs::remove_file(f.prefix.join("share/hello/blob.bin")).unwrap();
    let bundle = bundle_with_cli(&f);
    let source_len = f.prefix.as_os_str().len();
    std::fs::rename(f.root.join("source-machine"), f.root.join("gone")).unwrap();

    // Past the placeholder's 255 bytes: refused before writing, naming the file and its room.
    // (in two components: a file name has at most 255 bytes)
    let beyond = f.root.join("b".repeat(120)).join("b".repeat(120));
    std::fs::create_dir(f.root.join("b".repeat(120))).unwrap();
    let done = run(airgap_tests::airgap()
        .arg("unpack")
        .arg(&bundle)
        .arg(&beyond))
    .failure();
    assert!(
        done.stderr.contains("env/bin/hello-") && done.stderr.contains("longer than the 255 bytes"),
        "{}",
        done.stderr
    );
    assert!(!beyond.exists());

    let first = f.root.join("l".repeat(100));
    assert!(first.join("env").as_os_str().len() > source_len);
    run(airgap_tests::airgap()
        .arg("unpack")
        .arg(&bundle)
        .arg(&first))
    .success();
    runs_at(&first);

    let second = f.root.join("m".repeat(200));
    assert!(second.join("env").as_os_str().len() <= 255);
    run(airgap_tests::airgap()
        .arg("relocate")
        .arg(&first)
        .arg(&second))
    .success();
    runs_at(&second);
    assert!(!first.exists());

    // Past the room again: refused, the tree neither moved nor changed.
    let hello = std::fs::read(second.join("env/bin/hello-prefix")).unwrap();
    let done = run(airgap_tests::airgap()
        .arg("relocate")
        .arg(&second)
        .arg(&beyond))
    .failure();
    assert!(
        done.stderr.contains("longer than the 255 bytes"),
        "{}",
        done.stderr
    );
    assert!(!beyond.exists());
    assert_eq!(
        std::fs::read(second.join("env/bin/hello-prefix")).unwrap(),
        hello
    );
    runs_at(&second);

    let third = f.root.join("s");
    run(airgap_tests::airgap()
        .arg("relocate")
        .arg(&second)
        .arg(&third))
    .success();
    runs_at(&third);
    // The binaries kept their size; the record keeps the bundle's prefix beside the current.
    assert_eq!(
        std::fs::read(third.join("env/bin/hello-prefix"))
            .unwrap()
            .len(),
        hello.len()
    );
    let state = airgap_archive::install::relocate::read_state(&third).unwrap();
    let env = state.prefix.iter().find(|r| r.root == "env").unwrap();
    assert_eq!(env.original, f.prefix.to_string_lossy());
    assert_eq!(env.current, third.join("env").to_string_lossy());
}

/// A binary no conda package owns holds the source prefix unpadded: a longer destination is
/// refused before writing, naming the file, its room and the ways out.
#[test]
fn a_binary_without_a_padded_placeholder_keeps_the_length_of_its_prefix() {
    let Some(f) = fixture() else { return };
    let bundle = bundle_with_cli(&f);
    let source_len = f.prefix.as_os_str().len();
    let longer = f.root.join("l".repeat(100));
    let done = run(airgap_tests::airgap()
        .arg("unpack")
        .arg(&bundle)
        .arg(&longer))
    .failure();
    assert!(
        done.stderr.contains("env/share/hello/blob.bin")
            && done
                .stderr
                .contains(&format!("longer than the {source_len} bytes")),
        "{}",
        done.stderr
    );
    let dest_max = source_len - "/env".len();
    assert!(
        done.stderr
            .contains(&format!("choose a destination of at most {dest_max} bytes"))
            && done.stderr.contains("--dest-prefix"),
        "{}",
        done.stderr
    );
    assert!(!longer.exists());
    // Exactly as long as the source prefix fits.
    let fits = f
        .root
        .join("f".repeat(dest_max - f.root.as_os_str().len() - 1));
    run(airgap_tests::airgap().arg("unpack").arg(&bundle).arg(&fits)).success();
    std::fs::rename(f.root.join("source-machine"), f.root.join("gone")).unwrap();
    runs_at(&fits);
}
