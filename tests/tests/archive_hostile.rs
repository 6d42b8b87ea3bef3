//! Hostile bundles: every unsafe entry kind is refused by verify and by unpack, nothing is
//! written outside DEST, and DEST is absent afterwards.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use airgap_archive::manifest::FileRecord;
use airgap_archive::tarfmt::EntryType;
use airgap_archive::{unpack, verify_bundle, ArchiveError, NoProgress};
use airgap_tests::archive::*;
use airgap_tests::tempdir;

struct Case {
    name: &'static str,
    entries: Vec<Raw>,
    /// Records to list beyond those matching `entries` (or instead, when `replace` is set).
    records: Option<Vec<FileRecord>>,
    /// Text the error must contain.
    expect: &'static str,
}

fn base() -> Vec<Raw> {
    vec![
        Raw::dir("b"),
        Raw::dir("b/sub"),
        Raw::file("b/sub/ok.txt", b"fine\n"),
    ]
}

fn case(name: &'static str, extra: Vec<Raw>, expect: &'static str) -> Case {
    let mut entries = base();
    entries.extend(extra);
    Case {
        name,
        entries,
        records: None,
        expect,
    }
}

fn cases() -> Vec<Case> {
    let mut setuid = Raw::file("b/sub/su", b"x");
    setuid.mode = 0o4755;
    let mut setgid = Raw::file("b/sub/sg", b"x");
    setgid.mode = 0o2755;
    let mut huge = Raw::file("b/sub/huge", b"tiny");
    huge.declared = Some(1 << 40);
    let ok = Raw::file("b/sub/ok.txt", b"fine\n");
    let mut lying_hash = record_for("b", &ok);
    lying_hash.sha256 = Some(sha256_hex(b"something else"));
    let mut lying_size = record_for("b", &ok);
    lying_size.size = 3;
    let deep: String = std::iter::repeat_n("d", 300).collect::<Vec<_>>().join("/");
    let mut deep_entries = Vec::new();
    let mut p = String::from("b");
    for _ in 0..300 {
        p.push_str("/d");
        deep_entries.push(Raw::dir(&p));
    }
    vec![
        case(
            "absolute path",
            vec![Raw::file("/tmp/airgap-hostile-abs", b"x")],
            "outside the bundle's top folder",
        ),
        case(
            "absolute path inside the top",
            vec![Raw::file("b//etc/x", b"x")],
            "absolute path",
        ),
        case(
            "dot-dot",
            vec![Raw::file("b/../airgap-escape", b"x")],
            "`..`",
        ),
        case(
            "dot-dot deeper",
            vec![Raw::file("b/sub/../../airgap-escape", b"x")],
            "`..`",
        ),
        case(
            "symlink to an absolute path",
            vec![Raw::new("b/sub/l", EntryType::Symlink, 0o777, b"/etc", b"")],
            "points outside",
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
            "points outside",
        ),
        case(
            "symlink then a file through it",
            vec![
                Raw::new("b/l", EntryType::Symlink, 0o777, b"sub", b""),
                Raw::file("b/l/through.txt", b"x"),
            ],
            "link or a file",
        ),
        case(
            "symlink escaping through another link",
            vec![
                Raw::new("b/sub/up", EntryType::Symlink, 0o777, b"..", b""),
                Raw::new("b/sub/x", EntryType::Symlink, 0o777, b"up/..", b""),
            ],
            "through other links",
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
            "outside the bundle",
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
            "hard link",
        ),
        case(
            "hard link to a later entry",
            vec![
                Raw::new("b/sub/h", EntryType::HardLink, 0o644, b"b/sub/later", b""),
                Raw::file("b/sub/later", b"x"),
            ],
            "not a file extracted before",
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
            "character device",
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
            "block device",
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
            "fifo",
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
            "PAX",
        ),
        case("setuid", vec![setuid], "setuid"),
        case("setgid", vec![setgid], "setuid or setgid"),
        case(
            "duplicate entry",
            vec![Raw::file("b/sub/ok.txt", b"fine\n")],
            "duplicate",
        ),
        case(
            "second manifest",
            vec![Raw::file("b/.airgap/manifest.toml", b"format = 1")],
            "second manifest",
        ),
        case(
            "very long name",
            vec![Raw::file(&format!("b/{}", "n".repeat(5000)), b"x")],
            "longer than",
        ),
        Case {
            name: "deep nesting",
            entries: {
                let mut e = base();
                e.extend(deep_entries);
                e
            },
            records: None,
            expect: if deep.is_empty() { "" } else { "deeper than" },
        },
        Case {
            name: "huge declared size",
            entries: {
                let mut e = base();
                e.push(huge);
                e
            },
            records: Some(vec![]),
            expect: "",
        },
        Case {
            name: "manifest lies about a hash",
            entries: base(),
            records: Some(vec![lying_hash]),
            expect: "sha256",
        },
        Case {
            name: "manifest lies about a size",
            entries: base(),
            records: Some(vec![lying_size]),
            expect: "size",
        },
        Case {
            name: "entry the manifest does not list",
            entries: {
                let mut e = base();
                e.push(Raw::file("b/sub/extra", b"x"));
                e
            },
            records: Some(vec![]),
            expect: "extra",
        },
        Case {
            name: "file the manifest lists but the archive lacks",
            entries: base(),
            records: Some(vec![FileRecord {
                path: "sub/ghost".into(),
                ..record_for("b", &Raw::file("b/sub/ghost", b""))
            }]),
            expect: "missing",
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
            .filter(|r| airgap_archive::read::check_rel(r.path.as_bytes()).is_ok())
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

#[test]
fn every_unsafe_entry_kind_is_refused_and_nothing_is_written() {
    let tmp = tempdir();
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    let bundle = work.join("hostile.tar");
    let mut tried = 0;
    for c in cases() {
        let _ = fs::remove_file("/tmp/airgap-hostile-abs");
        craft(&bundle, "b", records_for(&c), &c.entries);
        let before = snapshot(tmp.path());
        let v = verify_bundle(&bundle, &NoProgress);
        let err = match v {
            Ok(_) => panic!("{}: verify accepted it", c.name),
            Err(e) => e,
        };
        let text = match &err {
            ArchiveError::Mismatch { problems, .. } => problems.join("\n"),
            other => other.to_string(),
        };
        assert!(text.contains(c.expect), "{}: verify said {text}", c.name);
        let dest = work.join("dest");
        let err = unpack(&bundle, &dest, &Default::default(), &NoProgress).expect_err(c.name);
        assert!(!dest.exists(), "{}: DEST exists after {err}", c.name);
        assert_eq!(
            snapshot(tmp.path()),
            before,
            "{}: something was written ({err})",
            c.name
        );
        assert!(!Path::new("/tmp/airgap-hostile-abs").exists(), "{}", c.name);
        assert!(
            !tmp.path().join("airgap-escape").exists() && !work.join("airgap-escape").exists(),
            "{}",
            c.name
        );
        tried += 1;
    }
    assert!(tried >= 25);
}

#[test]
fn an_install_step_pointing_outside_dest_is_refused() {
    use airgap_archive::manifest::{Manifest, StepRecord, FORMAT};
    use airgap_plugin_api::{InstallStep, PrefixFile, PrefixMode};
    let tmp = tempdir();
    let bundle = tmp.path().join("b.tar");
    for step in [
        InstallStep::RewritePrefix {
            old_prefix: "/opt/x".into(),
            root: "".into(),
            files: vec![PrefixFile {
                path: "../outside.txt".into(),
                mode: PrefixMode::Text,
            }],
        },
        InstallStep::RewritePrefix {
            old_prefix: "/opt/x".into(),
            root: "../..".into(),
            files: vec![],
        },
        InstallStep::Run {
            description: "evil".into(),
            program: "../../bin/evil".into(),
            args: vec![],
            env: Default::default(),
        },
    ] {
        // Craft with steps: write a manifest by hand.
        let entries = base();
        let records = entries
            .iter()
            .filter(|r| r.path != b"b")
            .map(|r| record_for("b", r))
            .collect();
        craft(&bundle, "b", records, &entries);
        let m = Manifest {
            format: FORMAT,
            bundle_name: "b".into(),
            install_steps: vec![StepRecord {
                plugin: "p".into(),
                step,
            }],
            ..Manifest::default()
        };
        // Re-craft with the steps in the manifest.
        let mut with_steps = m.clone();
        with_steps.files = airgap_archive::read_manifest(&bundle).unwrap().files;
        craft_manifest(&bundle, &with_steps, &entries);
        let dest = tmp.path().join("dest");
        let err = unpack(&bundle, &dest, &Default::default(), &NoProgress).unwrap_err();
        assert!(err.to_string().contains("not inside the bundle"), "{err}");
        assert!(!dest.exists());
    }
}

fn craft_manifest(out: &Path, manifest: &airgap_archive::Manifest, entries: &[Raw]) {
    // `craft` writes records only; put the whole manifest in by writing it ourselves.
    use airgap_archive::tarfmt::{self, Header};
    let text = manifest.to_toml().unwrap();
    let mut buf = Vec::new();
    tarfmt::write_header(
        &mut buf,
        &Header {
            path: b"b/.airgap/manifest.toml",
            kind: EntryType::File,
            mode: 0o644,
            size: text.len() as u64,
            mtime: 0,
            link: b"",
            sparse: None,
        },
    );
    buf.extend_from_slice(text.as_bytes());
    tarfmt::pad(&mut buf, text.len() as u64);
    for e in entries {
        tarfmt::write_header(
            &mut buf,
            &Header {
                path: &e.path,
                kind: e.kind,
                mode: e.mode,
                size: e.data.len() as u64,
                mtime: 0,
                link: &e.link,
                sparse: None,
            },
        );
        buf.extend_from_slice(&e.data);
        tarfmt::pad(&mut buf, e.data.len() as u64);
    }
    let n = buf.len() as u64;
    tarfmt::write_end(&mut buf, n).unwrap();
    fs::write(out, buf).unwrap();
}

#[test]
fn a_bundle_with_a_wrong_first_entry_is_not_an_airgap_bundle() {
    let tmp = tempdir();
    let src = tmp.path().join("x");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), "f").unwrap();
    let out = tmp.path().join("plain.tar.gz");
    gnu_tar(&["-czf", out.to_str().unwrap(), "x"], tmp.path());
    let err = verify_bundle(&out, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("not the manifest"), "{err}");
}
