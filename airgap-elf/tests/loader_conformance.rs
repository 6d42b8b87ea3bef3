//! The loader emulation against the real glibc loader: programs built here with RPATH,
//! RUNPATH and LD_LIBRARY_PATH in the combinations where emulators disagree, run for real;
//! the library the real loader picked must be the one `Loader::resolve` names.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use airgap_elf::loader::{Loader, Object};
use airgap_elf::ElfFile;

fn gcc(args: &[&str]) {
    let out = Command::new("gcc").args(args).output().expect("run gcc");
    assert!(
        out.status.success(),
        "gcc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Lab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Lab {
    /// Three copies of libx.so.1 in A, B and C, each answering its own letter.
    fn new() -> Option<Lab> {
        if Command::new("gcc").arg("--version").output().is_err() {
            eprintln!("skipped: no gcc");
            return None;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let x = dir.join("x.c");
        std::fs::write(&x, "const char *which(void) { return WHO; }\n").expect("write");
        for who in ["A", "B", "C"] {
            std::fs::create_dir_all(dir.join(who)).expect("mkdir");
            gcc(&[
                "-shared",
                "-fPIC",
                &format!("-DWHO=\"{who}\""),
                "-Wl,-soname,libx.so.1",
                "-o",
                &dir.join(who).join("libx.so.1").to_string_lossy(),
                &x.to_string_lossy(),
            ]);
        }
        Some(Lab { _tmp: tmp, dir })
    }

    fn p(&self, rel: &str) -> String {
        self.dir.join(rel).to_string_lossy().into_owned()
    }

    /// A program printing which libx it got, directly or through libmid (in D).
    fn program(&self, name: &str, exe_flags: &[&str], mid_flags: Option<&[&str]>) -> PathBuf {
        let exe = self.dir.join(name);
        let main = self.dir.join(format!("{name}.c"));
        match mid_flags {
            None => {
                std::fs::write(
                    &main,
                    "#include <stdio.h>\nconst char *which(void);\nint main(void) { puts(which()); return 0; }\n",
                )
                .expect("write");
                let mut args = vec![
                    main.to_string_lossy().into_owned(),
                    "-o".into(),
                    exe.to_string_lossy().into_owned(),
                ];
                args.push(format!("-L{}", self.p("A")));
                args.push("-l:libx.so.1".into());
                args.extend(exe_flags.iter().map(|s| s.to_string()));
                gcc(&args.iter().map(String::as_str).collect::<Vec<_>>());
            }
            Some(mid_flags) => {
                let d = self.dir.join(format!("D-{name}"));
                std::fs::create_dir_all(&d).expect("mkdir");
                let mid = self.dir.join("mid.c");
                std::fs::write(
                    &mid,
                    "const char *which(void);\nconst char *mid(void) { return which(); }\n",
                )
                .expect("write");
                let mut args = vec![
                    "-shared".to_owned(),
                    "-fPIC".into(),
                    "-Wl,-soname,libmid.so.1".into(),
                    "-o".into(),
                    d.join("libmid.so.1").to_string_lossy().into_owned(),
                    mid.to_string_lossy().into_owned(),
                    format!("-L{}", self.p("A")),
                    "-l:libx.so.1".into(),
                ];
                args.extend(mid_flags.iter().map(|s| s.to_string()));
                gcc(&args.iter().map(String::as_str).collect::<Vec<_>>());
                std::fs::write(
                    &main,
                    "#include <stdio.h>\nconst char *mid(void);\nint main(void) { puts(mid()); return 0; }\n",
                )
                .expect("write");
                let mut args = vec![
                    main.to_string_lossy().into_owned(),
                    "-o".into(),
                    exe.to_string_lossy().into_owned(),
                    format!("-L{}", d.display()),
                    "-l:libmid.so.1".into(),
                    format!("-Wl,-rpath-link,{}", self.p("A")),
                ];
                args.extend(exe_flags.iter().map(|s| s.to_string()));
                gcc(&args.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
        exe
    }
}

/// What the real loader picks: the letter the program prints.
fn real(exe: &Path, ld_library_path: Option<&str>) -> String {
    let mut cmd = Command::new(exe);
    cmd.env_clear();
    if let Some(l) = ld_library_path {
        cmd.env("LD_LIBRARY_PATH", l);
    }
    let out = cmd.output().expect("run program");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What the emulation picks for libx.so.1, asked by the executable or by libmid.
fn emulated(exe: &Path, ld_library_path: Option<&str>, through_mid: bool) -> String {
    let loader = Loader::host().with_ld_library_path(
        ld_library_path
            .map(|l| vec![l.to_owned()])
            .unwrap_or_default(),
    );
    let exe_obj = Object {
        path: exe.to_path_buf(),
        elf: Arc::new(ElfFile::parse(exe).expect("parse exe")),
    };
    let mut chain = vec![exe_obj.clone()];
    if through_mid {
        let mid = loader.resolve("libmid.so.1", &chain).expect("libmid found");
        chain.insert(
            0,
            Object {
                path: mid.path,
                elf: mid.elf,
            },
        );
    }
    let found = loader.resolve("libx.so.1", &chain).expect("libx found");
    found
        .path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Name, executable link flags, libmid link flags (None: no libmid), LD_LIBRARY_PATH, the
/// directory glibc picks.
type Case<'a> = (
    &'a str,
    Vec<&'a str>,
    Option<Vec<String>>,
    Option<&'a str>,
    &'a str,
);

#[test]
fn rpath_runpath_and_ld_library_path_agree_with_glibc() {
    let Some(lab) = Lab::new() else { return };
    let a = format!("-Wl,--disable-new-dtags,-rpath,{}", lab.p("A"));
    let c = format!("-Wl,--enable-new-dtags,-rpath,{}", lab.p("C"));
    let b = lab.p("B");
    let cases: Vec<Case> = vec![
        // RPATH beats LD_LIBRARY_PATH.
        ("rpath", vec![a.as_str()], None, Some(b.as_str()), "A"),
        // LD_LIBRARY_PATH beats RUNPATH.
        ("runpath", vec![c.as_str()], None, Some(b.as_str()), "B"),
        ("runpath-alone", vec![c.as_str()], None, None, "C"),
        // $ORIGIN is the executable's directory.
        (
            "origin",
            vec!["-Wl,--disable-new-dtags,-rpath,$ORIGIN/A"],
            None,
            Some(b.as_str()),
            "A",
        ),
        (
            "origin-runpath",
            vec!["-Wl,--enable-new-dtags,-rpath,$ORIGIN/C"],
            None,
            None,
            "C",
        ),
        // The executable's RPATH is inherited by a library without search paths...
        (
            "inherit",
            vec![a.as_str()],
            Some(vec![]),
            Some(b.as_str()),
            "A",
        ),
        // ... but not by one with a RUNPATH: then LD_LIBRARY_PATH, then its RUNPATH.
        (
            "no-inherit",
            vec![a.as_str()],
            Some(vec![c.clone()]),
            Some(b.as_str()),
            "B",
        ),
        (
            "no-inherit-alone",
            vec![a.as_str()],
            Some(vec![c.clone()]),
            None,
            "C",
        ),
    ];
    for (name, exe_flags, mid_flags, ld, want) in cases {
        let mid_flags_ref: Option<Vec<&str>> = mid_flags
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect());
        let mut exe_flags = exe_flags.clone();
        // libmid lives in D-<name>: the executable finds it through an RPATH entry.
        let d = format!("-Wl,-rpath,{}", lab.p(&format!("D-{name}")));
        if mid_flags.is_some() {
            exe_flags.push(d.as_str());
        }
        let exe = lab.program(name, &exe_flags, mid_flags_ref.as_deref());
        let got_real = real(&exe, ld);
        assert_eq!(got_real, want, "{name}: glibc itself");
        let got = emulated(&exe, ld, mid_flags.is_some());
        assert_eq!(got, got_real, "{name}: emulation disagrees with glibc");
    }
}

/// A shared library at `dir/rel` answering `who`, with a soname, needed libraries and link
/// flags.
fn lib(dir: &Path, rel: &str, soname: &str, body: &str, link: &[String]) {
    let out = dir.join(rel);
    std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
    let src = dir.join(format!("{}.c", rel.replace('/', "_")));
    std::fs::write(&src, body).expect("write");
    let mut args = vec![
        "-shared".to_owned(),
        "-fPIC".into(),
        format!("-Wl,-soname,{soname}"),
        "-o".into(),
        out.to_string_lossy().into_owned(),
        src.to_string_lossy().into_owned(),
    ];
    args.extend(link.iter().cloned());
    gcc(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The model's verdict for the program at bundle path `rel` of `dir` (every ELF file of
/// `dir` is the bundle, this machine the target).
fn model_loads(dir: &Path, rel: &str) -> bool {
    use airgap_elf::model::{Model, System, View};
    let mut view = View::new();
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if e.file_type().is_file() && airgap_elf::is_elf(e.path()) {
            let r = e
                .path()
                .strip_prefix(dir)
                .expect("inside")
                .to_string_lossy();
            view.add_object(
                r.into_owned(),
                Arc::new(ElfFile::parse(e.path()).expect("parse")),
            );
        }
    }
    let host = Loader::for_root(Path::new("/"));
    let model = Model::new(&view, System::Root(&host));
    model.program(rel).expect("program in the view").0.ok()
}

fn runs(exe: &Path) -> bool {
    Command::new(exe)
        .env_clear()
        .output()
        .expect("run program")
        .status
        .success()
}

/// The rules the model adds over a disk loader, against glibc, in `$ORIGIN` layouts as a
/// bundle has them: a library without search path finds its needs through the DT_RPATH of
/// the program that loaded it (auditwheel's older layout); a DT_RUNPATH on it blocks that; a
/// needed name matching the soname of a library loaded earlier is reused whatever the search
/// path says (an auditwheel-renamed `libx-1234.so` with soname `libx.so.1`).
#[test]
fn inherited_rpath_and_loaded_sonames_agree_with_glibc() {
    if Command::new("gcc").arg("--version").output().is_err() {
        panic!("this test needs gcc to build its programs");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let nodt = "-Wl,--disable-new-dtags".to_owned();
    let newdt = "-Wl,--enable-new-dtags".to_owned();
    lib(
        dir,
        "libs/libb.so",
        "libb.so",
        "const char *b(void) { return \"B\"; }\n",
        &[],
    );
    // liba needs libb and has no search path of its own.
    lib(
        dir,
        "libs/liba.so",
        "liba.so",
        "const char *b(void);\nconst char *a(void) { return b(); }\n",
        &[
            format!("-L{}", dir.join("libs").display()),
            "-l:libb.so".into(),
        ],
    );
    // libr: the same, with a RUNPATH that leads nowhere.
    lib(
        dir,
        "libs/libr.so",
        "libr.so",
        "const char *b(void);\nconst char *a(void) { return b(); }\n",
        &[
            format!("-L{}", dir.join("libs").display()),
            "-l:libb.so".into(),
            newdt.clone(),
            "-Wl,-rpath,$ORIGIN/../nowhere".into(),
        ],
    );
    // libx-1234.so has soname libx.so.1; liby needs libx.so.1, which no dir has by that name.
    lib(
        dir,
        "h/libx-1234.so",
        "libx.so.1",
        "const char *x(void) { return \"X\"; }\n",
        &[],
    );
    std::fs::copy(dir.join("h/libx-1234.so"), dir.join("tmp-libx.so.1")).expect("copy");
    lib(
        dir,
        "y/liby.so",
        "liby.so",
        "const char *x(void);\nconst char *y(void) { return x(); }\n",
        &[
            format!("-L{}", dir.display()),
            "-l:tmp-libx.so.1".into(),
            newdt.clone(),
            "-Wl,-rpath,$ORIGIN/../nowhere".into(),
        ],
    );
    std::fs::remove_file(dir.join("tmp-libx.so.1")).expect("rm");
    let prog = |name: &str, call: &str, libs: &[&str], rpath: &str| {
        let src = dir.join(format!("{name}.c"));
        std::fs::write(
            &src,
            format!("#include <stdio.h>\nconst char *{call}(void);\nint main(void) {{ puts({call}()); return 0; }}\n"),
        )
        .expect("write");
        std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
        let mut args = vec![
            src.to_string_lossy().into_owned(),
            "-o".into(),
            dir.join("bin").join(name).to_string_lossy().into_owned(),
            format!("-L{}", dir.join("libs").display()),
            format!("-L{}", dir.join("h").display()),
            format!("-L{}", dir.join("y").display()),
            format!("-Wl,-rpath-link,{}", dir.join("libs").display()),
            "-Wl,--allow-shlib-undefined".into(),
            // Debian's gcc links --as-needed: keep every library asked for.
            "-Wl,--no-as-needed".into(),
            nodt.clone(),
            format!("-Wl,-rpath,{rpath}"),
        ];
        args.extend(libs.iter().map(|l| format!("-l:{l}")));
        gcc(&args.iter().map(String::as_str).collect::<Vec<_>>());
        format!("bin/{name}")
    };
    let cases = [
        // libb found through the program's inherited DT_RPATH.
        (prog("inherit", "a", &["liba.so"], "$ORIGIN/../libs"), true),
        // libr's RUNPATH blocks the inherited RPATH: libb is not found.
        (prog("blocked", "a", &["libr.so"], "$ORIGIN/../libs"), false),
        // libx.so.1 reused: loaded first under the name libx-1234.so.
        (
            loaded_first(
                dir,
                prog(
                    "loaded",
                    "y",
                    &["libx-1234.so", "liby.so"],
                    "$ORIGIN/../h:$ORIGIN/../y",
                ),
            ),
            true,
        ),
        // Without the program loading it, liby finds no libx.so.1.
        (
            prog("unloaded", "y", &["liby.so"], "$ORIGIN/../h:$ORIGIN/../y"),
            false,
        ),
    ];
    for (rel, want) in cases {
        let real = runs(&dir.join(&rel));
        assert_eq!(real, want, "{rel}: glibc itself");
        assert_eq!(
            model_loads(dir, &rel),
            real,
            "{rel}: the model disagrees with glibc"
        );
    }
}

/// The linker records the soname (`libx.so.1`) as DT_NEEDED: make the program need the file
/// name instead, as auditwheel-renamed libraries are needed.
fn loaded_first(dir: &Path, rel: String) -> String {
    let out = Command::new("patchelf")
        .args(["--replace-needed", "libx.so.1", "libx-1234.so"])
        .arg(dir.join(&rel))
        .output()
        .expect("this test needs patchelf (apt-get install patchelf)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rel
}
