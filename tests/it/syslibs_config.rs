//! `[sources.syslibs]` keys and edge cases, through the real plugin library: include,
//! exclude, extra, missing libraries, RUNPATH turned into RPATH, a bad policy.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::syslibs_support::*;
use airgap_elf::ElfFile;
use airgap_plugin_api::{Contribution, EntryKind, TargetProfile};

/// Compile a tiny program that calls into the given libraries, with extra linker flags.
fn program(dir: &Path, name: &str, body: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, body).expect("write source");
    let out = dir.join(name);
    airgap_tests::run(
        Command::new("gcc")
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .arg("-I/usr/include/postgresql")
            .args(flags),
    )
    .success();
    out
}

const PQ: &str = "#include <libpq-fe.h>\nint main(void) { return PQlibVersion() > 0 ? 0 : 1; }\n";
const ZLIB: &str = "#include <zlib.h>\nint main(void) { return zlibVersion()[0] ? 0 : 1; }\n";

fn contribute(dir: &Path, files: &[(PathBuf, &str)], config: serde_json::Value) -> Contribution {
    let earlier = files.iter().map(|(p, dest)| file(p, dest)).collect();
    let work = dir.join(format!("work-{}", rand_suffix()));
    std::fs::create_dir_all(&work).expect("mkdir");
    run_syslibs(&request(
        earlier,
        &work,
        None,
        TargetProfile::default(),
        config,
    ))
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn names(c: &Contribution) -> Vec<String> {
    c.packages.iter().map(|p| p.name.clone()).collect()
}

fn source_of<'a>(c: &'a Contribution, dest: &str) -> Option<&'a Path> {
    c.entries
        .iter()
        .find(|e| e.dest == dest)
        .and_then(|e| match &e.kind {
            EntryKind::Path { source, .. } => Some(source.as_path()),
            _ => None,
        })
}

#[test]
fn a_runpath_user_gets_an_origin_relative_rpath_and_libpq_comes_with_its_closure() {
    let tmp = airgap_tests::tempdir();
    let tool = program(
        tmp.path(),
        "tool",
        PQ,
        &["-lpq", "-Wl,--enable-new-dtags,-rpath,/nonexistent/lib"],
    );
    assert!(ElfFile::parse(&tool).expect("parse").has_runpath);
    let c = contribute(tmp.path(), &[(tool, "bin/tool")], serde_json::json!({}));
    let n = names(&c);
    assert!(n.contains(&"libpq.so.5".to_owned()), "{n:?}");
    // libpq's own needs come along (libssl, libgssapi...), glibc never does.
    assert!(n.contains(&"libssl.so.3".to_owned()), "{n:?}");
    assert!(
        !n.iter()
            .any(|x| x.starts_with("libc.so") || x.starts_with("ld-linux")),
        "{n:?}"
    );
    let patched = source_of(&c, "bin/tool").expect("patched tool");
    let elf = ElfFile::parse(patched).expect("parse patched");
    assert!(!elf.has_runpath, "RUNPATH left in place");
    assert_eq!(
        elf.rpath,
        vec![
            "/nonexistent/lib".to_owned(),
            "$ORIGIN/../airgap-syslibs".to_owned()
        ]
    );
    let entry = c
        .entries
        .iter()
        .find(|e| e.dest == "bin/tool")
        .expect("entry");
    assert!(
        entry.replace,
        "a patched copy must say it replaces the original"
    );
    // A bundled library that needs another bundled one finds it next to itself.
    let libpq = source_of(&c, "airgap-syslibs/libpq.so.5").expect("libpq entry");
    let elf = ElfFile::parse(libpq).expect("parse libpq");
    assert_eq!(elf.rpath, vec!["$ORIGIN".to_owned()]);
    let pkg = c
        .packages
        .iter()
        .find(|p| p.name == "libpq.so.5")
        .expect("libpq package");
    assert_eq!(pkg.kind, "system");
    assert_eq!(pkg.id, "system:libpq.so.5");
    assert!(pkg.origin.contains("libpq5"), "{pkg:?}");
    assert_eq!(c.facts["lib_dir"], "airgap-syslibs");
}

#[test]
fn exclude_include_and_extra() {
    let tmp = airgap_tests::tempdir();
    let tool = program(tmp.path(), "tool", PQ, &["-lpq"]);
    let c = contribute(
        tmp.path(),
        &[(tool.clone(), "bin/tool")],
        serde_json::json!({"exclude": ["libpq.so.*"]}),
    );
    assert!(c.packages.is_empty(), "{:?}", names(&c));
    assert!(c.entries.is_empty(), "{:?}", c.entries);

    // libz is assumed on every manylinux target: bundled only when included.
    let z = program(tmp.path(), "ztool", ZLIB, &["-lz"]);
    let c = contribute(
        tmp.path(),
        &[(z.clone(), "bin/ztool")],
        serde_json::json!({}),
    );
    assert!(!names(&c).contains(&"libz.so.1".to_owned()));
    let c = contribute(
        tmp.path(),
        &[(z, "bin/ztool")],
        serde_json::json!({"include": ["libz.so.*"], "dir": "lib/sys"}),
    );
    assert!(names(&c).contains(&"libz.so.1".to_owned()));
    assert!(c.entries.iter().any(|e| e.dest == "lib/sys/libz.so.1"));

    // A dlopen-only library, with its closure, and nobody needing it.
    let libpq = PathBuf::from("/usr/lib/x86_64-linux-gnu/libpq.so.5");
    let c = contribute(tmp.path(), &[], serde_json::json!({"extra": [libpq]}));
    let n = names(&c);
    assert!(
        n.contains(&"libpq.so.5".to_owned()) && n.contains(&"libssl.so.3".to_owned()),
        "{n:?}"
    );
}

#[test]
fn a_library_nobody_has_is_a_warning_naming_its_user() {
    let tmp = airgap_tests::tempdir();
    let libdir = tmp.path().join("gone");
    std::fs::create_dir_all(&libdir).expect("mkdir");
    let lib_src = tmp.path().join("gone.c");
    std::fs::write(&lib_src, "int gone(void) { return 0; }\n").expect("write");
    airgap_tests::run(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-Wl,-soname,libgone.so.1", "-o"])
            .arg(libdir.join("libgone.so"))
            .arg(&lib_src),
    )
    .success();
    let tool = program(
        tmp.path(),
        "tool",
        "int gone(void);\nint main(void) { return gone(); }\n",
        &[&format!("-L{}", libdir.display()), "-lgone"],
    );
    std::fs::remove_dir_all(&libdir).expect("rm");
    let c = contribute(tmp.path(), &[(tool, "bin/tool")], serde_json::json!({}));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("libgone.so.1") && c.warnings[0].contains("bin/tool"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn an_unknown_policy_is_an_error_with_help() {
    let tmp = airgap_tests::tempdir();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let req = request(
        Vec::new(),
        &work,
        None,
        TargetProfile::default(),
        serde_json::json!({"policy": "manylinux1999"}),
    );
    let err = try_syslibs(&req).expect_err("bad policy accepted");
    let text = err.to_string();
    assert!(text.contains("manylinux1999"), "{text}");
    assert!(
        err.help().is_some_and(|h| h.contains("manylinux2014")),
        "{:?}",
        err.help()
    );
    let req = request(
        Vec::new(),
        &work,
        None,
        TargetProfile::default(),
        serde_json::json!({"exclude": "x"}),
    );
    assert!(
        try_syslibs(&req).is_err(),
        "a string where a list belongs was accepted"
    );
}

#[test]
fn libstdcxx_is_bundled_only_when_the_policy_target_has_an_older_one() {
    let tmp = airgap_tests::tempdir();
    let src = tmp.path().join("cxx.cpp");
    std::fs::write(
        &src,
        "#include <string>\n#include <iostream>\nint main(int c, char **v) { std::string s(v[0]); std::cout << s.size() << std::endl; return 0; }\n",
    )
    .expect("write");
    let exe = tmp.path().join("cxx");
    airgap_tests::run(Command::new("g++").arg(&src).arg("-o").arg(&exe)).success();
    let needs = ElfFile::parse(&exe).expect("parse").symbol_versions();
    assert!(needs.max("GLIBCXX").is_some(), "{needs:?}");
    // manylinux2014 targets have libstdc++ up to GLIBCXX_3.4.19: too old for today's g++.
    let c = contribute(
        tmp.path(),
        &[(exe.clone(), "bin/cxx")],
        serde_json::json!({"policy": "manylinux2014"}),
    );
    assert!(
        names(&c).contains(&"libstdc++.so.6".to_owned()),
        "{:?}",
        names(&c)
    );
    // A target as new as this machine has what it needs.
    let glibc = airgap_elf::target::RootLibs::read(Path::new("/"))
        .expect("read /")
        .glibc
        .expect("glibc");
    let c = contribute(
        tmp.path(),
        &[(exe, "bin/cxx")],
        serde_json::json!({"policy": format!("manylinux_{}", glibc.to_string().replace('.', "_"))}),
    );
    assert!(
        !names(&c).contains(&"libstdc++.so.6".to_owned()),
        "{:?}",
        names(&c)
    );
}

/// Issue 14: a program whose DT_RPATH names the build machine's dir of a library (as a
/// build tree or a copied installation has) gets that library grafted, and its patched copy
/// searches the `$ORIGIN` entry only: the absolute entry would point the target at a dir of
/// this machine.
#[test]
fn a_stale_absolute_rpath_to_a_grafted_library_is_dropped() {
    let tmp = airgap_tests::tempdir();
    let libdir = tmp.path().join("build/lib");
    std::fs::create_dir_all(&libdir).expect("mkdir");
    let src = tmp.path().join("foo.c");
    std::fs::write(&src, "int foo(void) { return 7; }\n").expect("write source");
    airgap_tests::run(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-Wl,-soname,libfoo.so.1"])
            .arg(&src)
            .arg("-o")
            .arg(libdir.join("libfoo.so.1")),
    )
    .success();
    std::os::unix::fs::symlink("libfoo.so.1", libdir.join("libfoo.so")).expect("symlink");
    let rpath = format!(
        "-Wl,--disable-new-dtags,-rpath,{}:/opt/vendor/lib",
        libdir.display()
    );
    let tool = program(
        tmp.path(),
        "tool",
        "int foo(void);\nint main(void) { return foo() == 7 ? 0 : 1; }\n",
        &[&format!("-L{}", libdir.display()), "-lfoo", &rpath],
    );
    let c = contribute(tmp.path(), &[(tool, "bin/tool")], serde_json::json!({}));
    assert!(
        names(&c).contains(&"libfoo.so.1".to_owned()),
        "{:?}",
        names(&c)
    );
    let patched = source_of(&c, "bin/tool").expect("patched tool");
    let elf = ElfFile::parse(patched).expect("parse patched");
    assert_eq!(
        elf.rpath,
        vec![
            "/opt/vendor/lib".to_owned(),
            "$ORIGIN/../airgap-syslibs".to_owned()
        ],
        "the build machine's dir is still searched"
    );
}
