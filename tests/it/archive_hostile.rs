//! Hostile bundles: every unsafe entry kind, every lie of the manifest and every absurd size
//! is refused by verify and by unpack (the library and the real CLI), with a message naming
//! the entry; nothing is written outside DEST, DEST is absent afterwards, and no staging
//! directory is left beside it. `docs/reliability.md` lists the cases.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use airgap_archive::format::manifest::{FileRecord, Manifest, FORMAT};
use airgap_archive::format::tarfmt::EntryType;
use airgap_archive::{unpack, verify_bundle, ArchiveError, NoProgress};
use airgap_tests::archive::*;
use airgap_tests::{airgap, run, tempdir};

struct Case {
    name: &'static str,
    entries: Vec<Raw>,
    /// Records to list beyond those matching `entries` (or instead, when `replace` is set).
    records: Option<Vec<FileRecord>>,
    /// Text the errors of verify and unpack must contain (any of these).
    expect: &'static [&'static str],
    /// The entry the messages must name.
    entry: &'static str,
    /// A change to the manifest beyond its file records.
    edit: Option<fn(&mut Manifest)>,
}

fn base() -> Vec<Raw> {
    vec![
        Raw::dir("b"),
        Raw::dir("b/sub"),
        Raw::file("b/sub/ok.txt", b"fine\n"),
    ]
}

fn case(
    name: &'static str,
    extra: Vec<Raw>,
    expect: &'static [&'static str],
    entry: &'static str,
) -> Case {
    let mut entries = base();
    entries.extend(extra);
    Case {
        name,
        entries,
        records: None,
        expect,
        entry,
        edit: None,
    }
}

/// A case where the archive is fine and the manifest lies (`records` replace the base ones
/// with the same paths).
fn lie(
    name: &'static str,
    extra: Vec<Raw>,
    records: Vec<FileRecord>,
    expect: &'static [&'static str],
    entry: &'static str,
) -> Case {
    let mut c = case(name, extra, expect, entry);
    c.records = Some(records);
    c
}

fn cases() -> Vec<Case> {
    let mut setuid = Raw::file("b/sub/su", b"x");
    setuid.mode = 0o4755;
    let mut setgid = Raw::file("b/sub/sg", b"x");
    setgid.mode = 0o2755;
    let ok = Raw::file("b/sub/ok.txt", b"fine\n");
    let mut lying_hash = record_for("b", &ok);
    lying_hash.sha256 = Some(sha256_hex(b"something else"));
    let mut lying_size = record_for("b", &ok);
    lying_size.size = 3;
    let mut huge_in_manifest = record_for("b", &ok);
    huge_in_manifest.size = 1 << 62;
    // Sizes whose sum overflows a u64.
    let two = Raw::file("b/sub/two", b"2");
    let mut max_a = record_for("b", &ok);
    max_a.size = u64::MAX;
    let mut max_b = record_for("b", &two);
    max_b.size = u64::MAX;
    // A tar header declaring 4 EiB (GNU base-256) over 4 bytes of data, and a manifest that
    // agrees: nothing may allocate or preallocate it.
    let mut huge = Raw::file("b/sub/huge", b"tiny");
    huge.declared = Some(1 << 62);
    // 1 TiB, under the limit, declared by both: read until the stream ends, never allocated.
    let mut tera = Raw::file("b/sub/tera", b"tiny");
    tera.declared = Some(1 << 40);
    let mut tera_rec = record_for("b", &tera);
    tera_rec.size = 1 << 40;
    // A sparse entry of 4 EiB of holes around 4 bytes.
    let mut holes = Raw::new("b/sub/holes", EntryType::Sparse, 0o644, b"", b"tiny");
    holes.sparse = Some((1 << 62, vec![(1 << 40, 4)]));
    let mut deep_entries = Vec::new();
    let mut p = String::from("b");
    for _ in 0..300 {
        p.push_str("/d");
        deep_entries.push(Raw::dir(&p));
    }
    let ghost = FileRecord {
        path: "sub/ghost".into(),
        ..record_for("b", &Raw::file("b/sub/ghost", b""))
    };
    let unsafe_rec = FileRecord {
        path: "../evil".into(),
        ..record_for("b", &Raw::file("b/evil", b""))
    };
    vec![
        case(
            "absolute path",
            vec![Raw::file("/tmp/airgap-hostile-abs", b"x")],
            &["outside the bundle's top folder"],
            "/tmp/airgap-hostile-abs",
        ),
        case(
            "absolute path inside the top",
            vec![Raw::file("b//etc/x", b"x")],
            &["absolute path", "empty path component"],
            "b//etc/x",
        ),
        case(
            "dot-dot",
            vec![Raw::file("b/../airgap-escape", b"x")],
            &["`..`"],
            "b/../airgap-escape",
        ),
        case(
            "dot-dot deeper",
            vec![Raw::file("b/sub/../../airgap-escape", b"x")],
            &["`..`"],
            "b/sub/../../airgap-escape",
        ),
        case(
            "symlink to an absolute path",
            vec![Raw::new("b/sub/l", EntryType::Symlink, 0o777, b"/etc", b"")],
            &["points outside"],
            "b/sub/l",
        ),
        case(
            "symlink climbing out",
            vec![Raw::new(
                "b/sub/l",
                EntryType::Symlink,
                0o777,
                b"../../..",
                b"",
            )],
            &["points outside"],
            "b/sub/l",
        ),
        case(
            "symlink with an empty target",
            vec![Raw::new("b/sub/l", EntryType::Symlink, 0o777, b"", b"")],
            &["points outside"],
            "b/sub/l",
        ),
        case(
            "symlink then a file through it",
            vec![
                Raw::new("b/l", EntryType::Symlink, 0o777, b"sub", b""),
                Raw::file("b/l/through.txt", b"x"),
            ],
            &["link or a file"],
            "b/l/through.txt",
        ),
        case(
            "symlink out, then a file through it",
            vec![
                Raw::new("b/out", EntryType::Symlink, 0o777, b"/tmp", b""),
                Raw::file("b/out/airgap-hostile-abs", b"x"),
            ],
            &["points outside"],
            "b/out",
        ),
        case(
            "symlink escaping through another link",
            vec![
                Raw::new("b/sub/up", EntryType::Symlink, 0o777, b"..", b""),
                Raw::new("b/sub/x", EntryType::Symlink, 0o777, b"up/..", b""),
            ],
            &["through other links"],
            "sub/x",
        ),
        case(
            "hard link to an absolute path",
            vec![Raw::new(
                "b/sub/h",
                EntryType::HardLink,
                0o644,
                b"/etc/passwd",
                b"",
            )],
            &["outside the bundle"],
            "b/sub/h",
        ),
        case(
            "hard link climbing out",
            vec![Raw::new(
                "b/sub/h",
                EntryType::HardLink,
                0o644,
                b"b/../../etc/passwd",
                b"",
            )],
            &["hard link"],
            "b/sub/h",
        ),
        case(
            "hard link to a later entry",
            vec![
                Raw::new("b/sub/h", EntryType::HardLink, 0o644, b"b/sub/later", b""),
                Raw::file("b/sub/later", b"x"),
            ],
            &["not a file extracted before"],
            "b/sub/h",
        ),
        case(
            "hard link to a directory",
            vec![Raw::new(
                "b/sub/h",
                EntryType::HardLink,
                0o644,
                b"b/sub",
                b"",
            )],
            &["not a file extracted before"],
            "b/sub/h",
        ),
        case(
            "hard link to the manifest",
            vec![Raw::new(
                "b/sub/h",
                EntryType::HardLink,
                0o644,
                b"b/.airgap/manifest.toml",
                b"",
            )],
            &["not a file extracted before"],
            "b/sub/h",
        ),
        case(
            "character device",
            vec![Raw::new(
                "b/sub/tty",
                EntryType::Other(b'3'),
                0o644,
                b"",
                b"",
            )],
            &["character device"],
            "b/sub/tty",
        ),
        case(
            "block device",
            vec![Raw::new(
                "b/sub/sda",
                EntryType::Other(b'4'),
                0o644,
                b"",
                b"",
            )],
            &["block device"],
            "b/sub/sda",
        ),
        case(
            "fifo",
            vec![Raw::new(
                "b/sub/fifo",
                EntryType::Other(b'6'),
                0o644,
                b"",
                b"",
            )],
            &["fifo"],
            "b/sub/fifo",
        ),
        case(
            "pax header",
            vec![Raw::new(
                "b/sub/pax",
                EntryType::Other(b'x'),
                0o644,
                b"",
                b"path=/etc/passwd\n",
            )],
            &["PAX"],
            "b/sub/pax",
        ),
        case(
            "unknown entry type",
            vec![Raw::new(
                "b/sub/volume",
                EntryType::Other(b'V'),
                0o644,
                b"",
                b"x",
            )],
            &["unsupported type"],
            "b/sub/volume",
        ),
        case("setuid", vec![setuid], &["setuid"], "b/sub/su"),
        case("setgid", vec![setgid], &["setuid or setgid"], "b/sub/sg"),
        case(
            "duplicate entry",
            vec![Raw::file("b/sub/ok.txt", b"fine\n")],
            &["duplicate"],
            "b/sub/ok.txt",
        ),
        case(
            "duplicate entry of another kind",
            vec![Raw::dir("b/sub/ok.txt")],
            &["duplicate"],
            "b/sub/ok.txt",
        ),
        case(
            "second manifest",
            vec![Raw::file("b/.airgap/manifest.toml", b"format = 1")],
            &["second manifest"],
            "b/.airgap/manifest.toml",
        ),
        case(
            "entry before its parent directory",
            vec![Raw::file("b/later/x", b"x"), Raw::dir("b/later")],
            &["before its parent"],
            "b/later/x",
        ),
        case(
            "file under a file",
            vec![Raw::file("b/sub/ok.txt/x", b"x")],
            &["link or a file"],
            "b/sub/ok.txt/x",
        ),
        Case {
            name: "top folder that is a file",
            entries: vec![Raw::file("b", b"x")],
            records: Some(vec![]),
            expect: &["top folder is not a directory"],
            entry: "b",
            edit: None,
        },
        case(
            "very long name",
            vec![Raw::file(&format!("b/{}", "n".repeat(5000)), b"x")],
            &["longer than 4096"],
            "nnnnnnnn",
        ),
        case(
            "extended name over 64 KiB",
            vec![Raw::file(&format!("b/{}", "n".repeat(70_000)), b"x")],
            &["extended name of 70003 bytes is too long"],
            "extended name",
        ),
        Case {
            name: "deep nesting",
            entries: {
                let mut e = base();
                e.extend(deep_entries);
                e
            },
            records: None,
            expect: &["nested deeper than 256 levels"],
            entry: "b/d/d/d/d/d/d/d/d/d/d",
            edit: None,
        },
        lie(
            "huge size in a tar header",
            vec![huge],
            vec![],
            &["declares 4611686018427387904 bytes, over the 17592186044416 bytes allowed"],
            "b/sub/huge",
        ),
        lie(
            "huge sparse holes in a tar header",
            vec![holes],
            vec![],
            &["declares 4611686018427387904 bytes, over the 17592186044416 bytes allowed"],
            "b/sub/holes",
        ),
        lie(
            "1 TiB declared in a tar header and in the manifest over 4 bytes",
            vec![tera],
            vec![tera_rec],
            // verify reads until the stream ends; unpack refuses first for room, where the
            // disk has less than 1 TiB free (naming the file), else as verify does.
            &["cut short", "too little room"],
            "sub/tera",
        ),
        lie(
            "huge size in the manifest",
            vec![],
            vec![huge_in_manifest],
            &["over the 17592186044416 bytes allowed"],
            "sub/ok.txt",
        ),
        lie(
            "manifest sizes that overflow a sum",
            vec![two],
            vec![max_a, max_b],
            &["over the 17592186044416 bytes allowed"],
            "sub/ok.txt",
        ),
        lie(
            "manifest lies about a hash",
            vec![],
            vec![lying_hash],
            &["sha256"],
            "sub/ok.txt",
        ),
        lie(
            "manifest lies about a size",
            vec![],
            vec![lying_size],
            &["is 5 bytes in the archive, 3 in the manifest"],
            "sub/ok.txt",
        ),
        lie(
            "manifest lies about a kind",
            vec![],
            vec![FileRecord {
                kind: airgap_archive::FileType::Dir,
                ..record_for("b", &ok)
            }],
            &["a file in the archive"],
            "sub/ok.txt",
        ),
        lie(
            "manifest lies about a mode",
            vec![],
            vec![FileRecord {
                mode: 0o755,
                ..record_for("b", &ok)
            }],
            &["mode"],
            "sub/ok.txt",
        ),
        lie(
            "manifest lies about a link target",
            vec![Raw::new(
                "b/sub/l",
                EntryType::Symlink,
                0o777,
                b"ok.txt",
                b"",
            )],
            vec![FileRecord {
                target: Some("other.txt".into()),
                ..record_for(
                    "b",
                    &Raw::new("b/sub/l", EntryType::Symlink, 0o777, b"ok.txt", b""),
                )
            }],
            &["is a link to"],
            "sub/l",
        ),
        lie(
            "entry the manifest does not list",
            vec![Raw::file("b/sub/extra", b"x")],
            vec![],
            &["extra", "not listed in the manifest"],
            "sub/extra",
        ),
        lie(
            "file the manifest lists but the archive lacks",
            vec![],
            vec![ghost],
            &["missing"],
            "sub/ghost",
        ),
        lie(
            "manifest listing an unsafe path",
            vec![],
            vec![unsafe_rec],
            &["the manifest lists an unsafe path"],
            "../evil",
        ),
        lie(
            "manifest listing a path twice",
            vec![],
            vec![record_for("b", &ok), record_for("b", &ok)],
            &["the manifest lists this path twice"],
            "sub/ok.txt",
        ),
        Case {
            name: "manifest of a newer format",
            entries: base(),
            records: None,
            expect: &["format 99 is not supported"],
            entry: "manifest",
            edit: Some(|m| m.format = 99),
        },
        Case {
            name: "manifest naming another bundle",
            entries: base(),
            records: None,
            expect: &["names the bundle \"c\" but the top folder is \"b\""],
            entry: "\"c\"",
            edit: Some(|m| m.bundle_name = "c".into()),
        },
        Case {
            name: "manifest naming the bundle `..`",
            entries: base(),
            records: None,
            expect: &["invalid bundle name"],
            entry: "\"..\"",
            edit: Some(|m| m.bundle_name = "..".into()),
        },
    ]
}

fn records_for(c: &Case) -> Vec<FileRecord> {
    let top_dir = |r: &Raw| r.path == b"b";
    match &c.records {
        // Unsafe paths are left out of the manifest, so that the entry itself is what is refused.
        None => c
            .entries
            .iter()
            .filter(|r| !top_dir(r) && r.path.starts_with(b"b/"))
            .map(|r| record_for("b", r))
            .filter(|r| airgap_archive::format::manifest::check_rel(r.path.as_bytes()).is_ok())
            .fold(Vec::<FileRecord>::new(), |mut v, r| {
                if !v.iter().any(|x| x.path == r.path) {
                    v.push(r);
                }
                v
            }),
        Some(extra) => {
            // The records of the base entries (minus the one a lie replaces), plus the lies.
            let mut recs: Vec<FileRecord> = base()
                .iter()
                .filter(|r| !top_dir(r))
                .map(|r| record_for("b", r))
                .collect();
            recs.retain(|r| !extra.iter().any(|e| e.path == r.path));
            recs.extend(extra.iter().cloned());
            recs
        }
    }
}

fn error_text(err: &ArchiveError) -> String {
    match err {
        ArchiveError::Mismatch { problems, .. } => format!("{err}\n{}", problems.join("\n")),
        other => other.to_string(),
    }
}

/// Nothing escaped: the files the cases aim at outside the bundle do not exist.
fn nothing_escaped(name: &str, tmp: &Path, work: &Path) {
    assert!(!Path::new("/tmp/airgap-hostile-abs").exists(), "{name}");
    assert!(
        !tmp.join("airgap-escape").exists() && !work.join("airgap-escape").exists(),
        "{name}"
    );
}

#[test]
fn every_unsafe_entry_kind_is_refused_and_nothing_is_written() {
    let tmp = tempdir();
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    let bundle = work.join("hostile.tar");
    let mut tried = 0;
    let mut failed = Vec::new();
    for c in cases() {
        // Every case runs; the failures are listed at the end.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_case(&c, tmp.path(), &work, &bundle)
        }));
        if outcome.is_err() {
            failed.push(c.name);
        }
        tried += 1;
    }
    assert!(failed.is_empty(), "failed cases: {failed:?}");
    assert_eq!(tried, 48, "the corpus keeps its 48 cases");
}

fn check_case(c: &Case, tmp: &Path, work: &Path, bundle: &Path) {
    {
        let _ = fs::remove_file("/tmp/airgap-hostile-abs");
        let mut manifest = Manifest {
            format: FORMAT,
            bundle_name: "b".into(),
            airgap_version: "0.0.0-test".into(),
            files: records_for(c),
            ..Manifest::default()
        };
        if let Some(edit) = c.edit {
            edit(&mut manifest);
        }
        craft_manifest(bundle, "b", &manifest, &c.entries);
        let before = snapshot(tmp);
        let name = c.name;
        let has = |text: &str| c.expect.iter().any(|e| text.contains(e));

        // The library: verify, then unpack.
        let err = match verify_bundle(bundle, &NoProgress) {
            Ok(_) => panic!("{name}: verify accepted it"),
            Err(e) => error_text(&e),
        };
        assert!(has(&err), "{name}: verify said {err}");
        assert!(
            err.contains(c.entry),
            "{name}: verify does not name the entry: {err}"
        );
        let dest = work.join("dest");
        let err = unpack(bundle, &dest, &Default::default(), &NoProgress).expect_err(name);
        let err = error_text(&err);
        assert!(has(&err), "{name}: unpack said {err}");
        assert!(
            err.contains(c.entry),
            "{name}: unpack does not name the entry: {err}"
        );
        assert!(!dest.exists(), "{name}: DEST exists after {err}");
        assert_eq!(
            snapshot(tmp),
            before,
            "{name}: something was written or left beside DEST ({err})"
        );
        nothing_escaped(name, tmp, work);

        // The real CLI: non-zero exit, the entry named on stderr, nothing written.
        let v = run(airgap().arg("verify").arg(bundle)).failure();
        assert!(
            has(&v.stderr) && v.stderr.contains(c.entry),
            "{name}: airgap verify said {}",
            v.stderr
        );
        let u = run(airgap().arg("unpack").arg(bundle).arg(&dest)).failure();
        assert!(
            has(&u.stderr) && u.stderr.contains(c.entry),
            "{name}: airgap unpack said {}",
            u.stderr
        );
        assert!(!dest.exists(), "{name}: DEST exists after airgap unpack");
        assert_eq!(snapshot(tmp), before, "{name}: airgap unpack wrote");
        nothing_escaped(name, tmp, work);

        // The carried unpacker, as `NAME/.airgap/airgap-unpack BUNDLE DEST` runs it.
        let carried = run(std::process::Command::new(unpacker())
            .arg(bundle)
            .arg(&dest))
        .failure();
        let c_err = carried.stderr;
        assert!(
            has(&c_err) && c_err.contains(c.entry),
            "{name}: airgap-unpack said {c_err}"
        );
        assert!(!dest.exists(), "{name}: DEST exists after airgap-unpack");
        assert_eq!(snapshot(tmp), before, "{name}: airgap-unpack wrote");
        nothing_escaped(name, tmp, work);
    }
}

#[test]
fn an_install_step_pointing_outside_dest_is_refused() {
    use airgap_archive::format::manifest::StepRecord;
    use airgap_archive::format::model::{InstallStep, PrefixFile, PrefixMode};
    let tmp = tempdir();
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    let bundle = work.join("b.tar");
    let run_step = |program: &str| InstallStep::Run {
        description: "evil".into(),
        program: program.into(),
        args: vec!["-c".into(), "touch {dest}/../airgap-escape".into()],
        env: Default::default(),
    };
    let steps = [
        (
            InstallStep::RewritePrefix {
                old_prefix: "/opt/x".into(),
                root: "".into(),
                files: vec![PrefixFile::new("../outside.txt", PrefixMode::Text)],
            },
            "not inside the bundle",
        ),
        (
            InstallStep::RewritePrefix {
                old_prefix: "/opt/x".into(),
                root: "../..".into(),
                files: vec![],
            },
            "not inside the bundle",
        ),
        (
            InstallStep::RewritePrefix {
                old_prefix: "/opt/x".into(),
                root: "".into(),
                files: vec![PrefixFile::new("/etc/passwd", PrefixMode::Text)],
            },
            "not inside the bundle",
        ),
        (run_step("../../bin/evil"), "not inside the bundle"),
        (run_step("sub/../../../bin/sh"), "not inside the bundle"),
        (run_step("/bin/sh"), "absolute path on the target"),
        (run_step("{dest}/../../bin/sh"), "not inside the bundle"),
        (run_step("{dest}/"), "not a file inside the bundle"),
        (run_step("{dest}"), "not a file inside the bundle"),
        (
            run_step("{python}/../../../bin/sh"),
            "only `{python}` itself",
        ),
    ];
    let entries = base();
    let records: Vec<FileRecord> = entries
        .iter()
        .filter(|r| r.path != b"b")
        .map(|r| record_for("b", r))
        .collect();
    for (step, expect) in steps {
        let shown = format!("{step:?}");
        let m = Manifest {
            format: FORMAT,
            bundle_name: "b".into(),
            airgap_version: "0.0.0-test".into(),
            install_steps: vec![StepRecord {
                plugin: "p".into(),
                step,
            }],
            files: records.clone(),
            ..Manifest::default()
        };
        craft_manifest(&bundle, "b", &m, &entries);
        let before = snapshot(tmp.path());
        let dest = work.join("dest");
        let options = airgap_archive::UnpackOptions {
            python: Some("/usr/bin/python3".into()),
            ..Default::default()
        };
        let err = unpack(&bundle, &dest, &options, &NoProgress).unwrap_err();
        assert!(err.to_string().contains(expect), "{shown}: {err}");
        assert!(err.to_string().contains("install step 1"), "{shown}: {err}");
        assert!(!dest.exists(), "{shown}");
        assert_eq!(snapshot(tmp.path()), before, "{shown}");
        let u = run(airgap()
            .arg("unpack")
            .arg(&bundle)
            .arg(&dest)
            .arg("--python")
            .arg("/usr/bin/python3"))
        .failure();
        assert!(u.stderr.contains(expect), "{shown}: {}", u.stderr);
        assert!(!dest.exists(), "{shown}");
        assert_eq!(snapshot(tmp.path()), before, "{shown}");
        nothing_escaped(&shown, tmp.path(), &work);
    }
}

#[test]
fn a_bundle_with_a_wrong_first_entry_is_not_an_airgap_bundle() {
    let tmp = tempdir();
    let src = tmp.path().join("x");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), "f").unwrap();
    let out = tmp.path().join("plain.tar.gz");
    gnu_tar(&["-czf", out.to_str().unwrap(), "x"], tmp.path());
    // GNU tar writes owner names airgap never writes: refused at the first header.
    let err = verify_bundle(&out, &NoProgress).unwrap_err();
    assert!(
        err.to_string().contains("not a readable airgap bundle")
            || err.to_string().contains("not the manifest"),
        "{err}"
    );
}
