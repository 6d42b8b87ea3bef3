//! The archive builder on real trees: links kept or dereferenced, dedup, long and odd names,
//! determinism, GNU tar compatibility, and the errors a user can meet while bundling.

#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use airgap_archive::format::manifest::FileType;
use airgap_archive::progress::{Progress, Unit};
use airgap_archive::Entry;
use airgap_archive::{
    read_manifest, write_bundle, ArchiveError, Compression, NoProgress, PlanOptions, WriteOptions,
};
use airgap_tests::archive::*;
use airgap_tests::tempdir;

fn bundle_tree(tmp: &Path) -> std::path::PathBuf {
    let src = build_tree(&tmp.join("tree"));
    let plan = plan(&[Entry::path(&src, "data")], PlanOptions::default()).unwrap();
    let out = tmp.join("b.tar.gz");
    write(&plan, input("b"), &out, None);
    out
}

#[test]
fn gnu_tar_extracts_a_real_tree_with_links_kept_or_dereferenced() {
    let tmp = tempdir();
    let out = bundle_tree(tmp.path());
    let listing = gnu_tar(&["-tvzf", out.to_str().unwrap()], tmp.path());
    assert!(
        listing
            .lines()
            .next()
            .unwrap()
            .ends_with("b/.airgap/manifest.toml"),
        "{listing}"
    );
    let x = tmp.path().join("x");
    fs::create_dir(&x).unwrap();
    gnu_tar(&["-xzf", out.to_str().unwrap()], &x);
    let d = x.join("b/data");
    // Links inside the tree stay links, made relative.
    assert_eq!(
        fs::read_link(d.join("rel-link")).unwrap(),
        Path::new("regular.txt")
    );
    assert_eq!(
        fs::read_link(d.join("abs-link")).unwrap(),
        Path::new("regular.txt")
    );
    assert_eq!(
        fs::read_link(d.join("chain-a")).unwrap(),
        Path::new("chain-b")
    );
    assert_eq!(
        fs::read_link(d.join("chain-b")).unwrap(),
        Path::new("sub/deep.txt")
    );
    assert_eq!(
        fs::read_link(d.join("inner-dir-link")).unwrap(),
        Path::new("sub")
    );
    assert_eq!(fs::read_to_string(d.join("chain-a")).unwrap(), "deep\n");
    // Links out of the tree are dereferenced; a linked directory is walked.
    assert!(fs::symlink_metadata(d.join("out-link")).unwrap().is_file());
    assert_eq!(
        fs::read_to_string(d.join("out-link")).unwrap(),
        "outside content\n"
    );
    assert!(fs::symlink_metadata(d.join("linked-dir")).unwrap().is_dir());
    assert_eq!(
        fs::read_to_string(d.join("linked-dir/inner/b.txt")).unwrap(),
        "b in linked dir\n"
    );
    assert_eq!(
        fs::read_link(d.join("linked-dir/rel-inside-linked")).unwrap(),
        Path::new("a.txt")
    );
    // Hard links and identical files are stored once (tar hard links).
    let h1 = fs::metadata(d.join("hard1")).unwrap();
    let h2 = fs::metadata(d.join("hard2")).unwrap();
    assert_eq!(h1.ino(), h2.ino());
    let s1 = fs::metadata(d.join("same1")).unwrap();
    let s2 = fs::metadata(d.join("same2")).unwrap();
    assert_eq!(s1.ino(), s2.ino());
    // Names over 100 bytes, spaces, non-UTF-8.
    let long = d
        .join(long_component())
        .join(format!("{}.txt", "f".repeat(120)));
    assert_eq!(fs::read_to_string(long).unwrap(), "long name\n");
    let long_link = d
        .join(long_component())
        .join(format!("{}-link", "l".repeat(110)));
    assert_eq!(
        fs::read_link(long_link).unwrap(),
        Path::new(&format!("{}.txt", "f".repeat(120)))
    );
    assert_eq!(
        fs::read_to_string(d.join("with space.txt")).unwrap(),
        "spaces\n"
    );
    assert_eq!(
        fs::read_to_string(d.join(OsStr::from_bytes(NON_UTF8))).unwrap(),
        "latin-1 name\n"
    );
    // Empty directories, exec bits, mtimes.
    assert!(d.join("empty-dir").is_dir());
    assert_eq!(
        fs::metadata(d.join("exec.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        fs::metadata(d.join("regular.txt")).unwrap().mtime(),
        1_700_000_000
    );
    // The launcher is there and executable.
    assert_eq!(
        fs::metadata(x.join("b/unpack"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
}

#[test]
fn manifest_lists_every_file_with_hash_and_plugin() {
    let tmp = tempdir();
    let out = bundle_tree(tmp.path());
    let m = read_manifest(&out).unwrap();
    assert_eq!(m.bundle_name, "b");
    let reg = m
        .files
        .iter()
        .find(|f| f.path == "data/regular.txt")
        .unwrap();
    assert_eq!(reg.kind, FileType::File);
    assert_eq!(reg.size, 6);
    assert_eq!(reg.sha256.as_deref(), Some(sha256_hex(b"hello\n").as_str()));
    assert_eq!(reg.plugin, "files");
    let odd = m
        .files
        .iter()
        .find(|f| f.path_bytes().ends_with(NON_UTF8))
        .unwrap();
    assert!(odd.path_hex.is_some());
    let link = m.files.iter().find(|f| f.path == "data/rel-link").unwrap();
    assert_eq!(link.target.as_deref(), Some("regular.txt"));
    // The detached checksum is in sha256sum format.
    let sums = fs::read_to_string(format!("{}.sha256", out.display())).unwrap();
    let check = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg(format!("{}.sha256", out.display()))
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{sums}");
}

#[test]
fn same_input_gives_byte_identical_bundles_whatever_the_threads() {
    let tmp = tempdir();
    let src = build_tree(&tmp.path().join("tree"));
    // Over two zstd jobs (2 MiB each) of text that compresses as source code does.
    let mut text = String::new();
    let mut x = 7u64;
    while text.len() < 6 << 20 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.push_str(&format!("word{} ", x >> 52));
    }
    fs::write(src.join("big.txt"), text).unwrap();
    let plan = plan(&[Entry::path(&src, "data")], PlanOptions::default()).unwrap();
    // zstd too: with one thread it used the library's single-threaded mode, whose frames
    // differ from the multithreaded mode's.
    let compressions = [
        // The default level: the last bundle below is written with the default options.
        (
            Compression::Gzip {
                level: airgap_archive::pack::write::DEFAULT_GZIP_LEVEL,
            },
            false,
        ),
        (Compression::Zstd { level: 3 }, false),
        (Compression::Zstd { level: 3 }, true),
    ];
    let mut gzip = Vec::new();
    for (compression, zstd_long) in compressions {
        let mut bytes = Vec::new();
        for (i, threads) in [1usize, 2, 3, 0].iter().enumerate() {
            let out = tmp.path().join(format!("b{i}.tar"));
            write_bundle(
                &plan,
                input("b"),
                &out,
                &WriteOptions {
                    threads: *threads,
                    compression,
                    zstd_long,
                    ..WriteOptions::default()
                },
                &NoProgress,
            )
            .unwrap();
            bytes.push(fs::read(&out).unwrap());
        }
        assert!(
            bytes.windows(2).all(|w| w[0] == w[1]),
            "{compression:?} (long: {zstd_long}) bundles differ with the thread count"
        );
        if gzip.is_empty() {
            gzip = bytes.swap_remove(0);
        }
    }
    let bytes = [gzip];
    // A second plan of the same tree too.
    let plan2 =
        airgap_tests::archive::plan(&[Entry::path(&src, "data")], PlanOptions::default()).unwrap();
    let out = tmp.path().join("again.tar.gz");
    write(&plan2, input("b"), &out, None);
    assert!(fs::read(&out).unwrap() == bytes[0]);
}

/// Plan the tree as three sources (the second repeats some paths with the same content,
/// the third replaces one), keeping at most `memory` paths in memory.
fn plan_in_layers(src: &Path, extra: &Path, memory: usize) -> airgap_archive::Plan {
    let mut p = airgap_archive::Plan::new(PlanOptions {
        memory_paths: memory,
        ..PlanOptions::default()
    });
    p.add("files", &[Entry::path(src, "data")], &NoProgress)
        .unwrap();
    p.add(
        "again",
        &[
            Entry::path(src.join("sub"), "data/sub"),
            Entry::path(src.join("regular.txt"), "data/regular.txt"),
            Entry::path(extra, "more"),
        ],
        &NoProgress,
    )
    .unwrap();
    p.add(
        "last",
        &[Entry::path(extra.join("x"), "data/same1").replacing()],
        &NoProgress,
    )
    .unwrap();
    p
}

#[test]
fn plans_and_sorts_moved_to_disk_give_the_same_bytes() {
    let tmp = tempdir();
    let src = build_tree(&tmp.path().join("tree"));
    let extra = tmp.path().join("extra");
    fs::create_dir_all(extra.join("d/e")).unwrap();
    fs::write(extra.join("x"), "replacement\n").unwrap();
    fs::write(extra.join("d/e/y"), "hello\n").unwrap();
    std::os::unix::fs::symlink("e/y", extra.join("d/y-link")).unwrap();
    set_mtimes(&extra, 1_700_000_000);
    let mut reference: Option<(Vec<u8>, Vec<String>)> = None;
    // 0 is the default (everything in memory here); 1 puts every path in a run of its own.
    for memory in [0usize, 1, 2, 3, 5, 8] {
        let p = plan_in_layers(&src, &extra, memory);
        let files: Vec<String> = p.files().unwrap().into_iter().map(|f| f.path).collect();
        assert_eq!(files.len(), p.len());
        let out = tmp.path().join(format!("m{memory}.tar.gz"));
        write_bundle(
            &p,
            input("b"),
            &out,
            &WriteOptions {
                memory_paths: memory,
                ..WriteOptions::default()
            },
            &NoProgress,
        )
        .unwrap();
        let bytes = fs::read(&out).unwrap();
        match &reference {
            None => reference = Some((bytes, files)),
            Some((want, want_files)) => {
                assert_eq!(&files, want_files, "memory_paths = {memory}");
                assert!(
                    *want == bytes,
                    "memory_paths = {memory}: the bundle differs"
                );
            }
        }
    }
    // What the layers must show: the replaced file, the links kept, the dedup.
    let x = tmp.path().join("x");
    fs::create_dir(&x).unwrap();
    gnu_tar(
        &["-xzf", tmp.path().join("m1.tar.gz").to_str().unwrap()],
        &x,
    );
    assert_eq!(
        fs::read_to_string(x.join("b/data/same1")).unwrap(),
        "replacement\n"
    );
    assert_eq!(
        fs::read_link(x.join("b/data/rel-link")).unwrap(),
        Path::new("regular.txt")
    );
    assert_eq!(
        fs::read_link(x.join("b/more/d/y-link")).unwrap(),
        Path::new("e/y")
    );
    let meta = |p: &str| fs::metadata(x.join("b/data").join(p)).unwrap();
    assert_eq!(meta("hard1").ino(), meta("hard2").ino());
    assert_eq!(
        meta("regular.txt").ino(),
        fs::metadata(x.join("b/more/d/e/y")).unwrap().ino()
    );
}

#[test]
fn conflicts_are_found_when_the_plan_is_on_disk() {
    let tmp = tempdir();
    let dir = tmp.path().join("dir");
    fs::create_dir_all(dir.join("x")).unwrap();
    for i in 0..20 {
        fs::write(dir.join(format!("x/f{i:02}")), format!("{i}")).unwrap();
    }
    fs::write(tmp.path().join("other"), "other").unwrap();
    for memory in [1usize, 4] {
        let new_plan = || {
            let mut p = airgap_archive::Plan::new(PlanOptions {
                memory_paths: memory,
                ..PlanOptions::default()
            });
            p.add("conda", &[Entry::path(&dir, "env")], &NoProgress)
                .unwrap();
            p
        };
        // Different content at a path planned (and moved to disk) by an earlier plugin.
        let err = new_plan()
            .add(
                "pip",
                &[Entry::path(tmp.path().join("other"), "env/x/f07")],
                &NoProgress,
            )
            .unwrap_err();
        assert!(
            matches!(&err, ArchiveError::Conflict { path, first, second }
                if path == "env/x/f07" && first == "conda" && second == "pip"),
            "{err}"
        );
        // A file where the earlier plugin has a directory, and the reverse.
        let err = new_plan()
            .add(
                "pip",
                &[Entry::path(tmp.path().join("other"), "env/x/f03/inside")],
                &NoProgress,
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("env/x/f03 (not a directory)"),
            "{err}"
        );
        let err = new_plan()
            .add(
                "pip",
                &[Entry::path(tmp.path().join("other"), "env/x")],
                &NoProgress,
            )
            .unwrap_err();
        assert!(matches!(err, ArchiveError::Conflict { .. }), "{err}");
        // The same content again, and a deliberate replacement, are fine.
        let mut p = new_plan();
        let added = p
            .add(
                "pip",
                &[
                    Entry::path(dir.join("x/f05"), "env/x/f05"),
                    Entry::path(tmp.path().join("other"), "env/x/f09").replacing(),
                ],
                &NoProgress,
            )
            .unwrap();
        let added: Vec<&str> = added.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(added, ["env/x/f09"], "memory_paths = {memory}");
        assert_eq!(
            p.added_last("env/x/f09").unwrap(),
            Some(airgap_archive::PlannedKind::File)
        );
        assert_eq!(p.added_last("env/x/f05").unwrap(), None);
        assert_eq!(p.len(), 22);
    }
}

#[test]
fn dangling_link_is_an_error_naming_it_or_dropped_with_a_warning() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("ok.txt"), "ok").unwrap();
    std::os::unix::fs::symlink("nowhere", src.join("dangling")).unwrap();
    let err = plan(&[Entry::path(&src, "d")], PlanOptions::default()).unwrap_err();
    assert!(matches!(err, ArchiveError::DanglingLink { .. }), "{err}");
    assert!(err.to_string().contains("dangling"), "{err}");
    assert!(err.help().is_some());
    let p = plan(
        &[Entry::path(&src, "d")],
        PlanOptions {
            drop_dangling: true,
            ..PlanOptions::default()
        },
    )
    .unwrap();
    assert_eq!(p.warnings().len(), 1, "{:?}", p.warnings());
    assert!(p.warnings()[0].contains("dangling"));
    assert!(p.files().unwrap().iter().all(|f| f.path != "d/dangling"));
}

#[test]
fn link_loop_is_an_error_naming_it() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    std::os::unix::fs::symlink("loop-b", src.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", src.join("loop-b")).unwrap();
    let err = plan(&[Entry::path(&src, "d")], PlanOptions::default()).unwrap_err();
    assert!(matches!(err, ArchiveError::LinkLoop { .. }), "{err}");
    assert!(err.to_string().contains("loop-"), "{err}");
    // A directory linking to its own ancestor is kept as a link, not walked forever.
    let src2 = tmp.path().join("src2");
    fs::create_dir_all(src2.join("a")).unwrap();
    std::os::unix::fs::symlink("..", src2.join("a/up")).unwrap();
    let p = plan(&[Entry::path(&src2, "d")], PlanOptions::default()).unwrap();
    let up = p
        .files()
        .unwrap()
        .into_iter()
        .find(|f| f.path == "d/a/up")
        .unwrap();
    assert!(
        matches!(up.kind, airgap_archive::PlannedKind::Symlink { ref target } if target == ".."),
        "{up:?}"
    );
}

#[test]
fn two_plugins_claiming_one_path_with_different_content_are_both_named() {
    let tmp = tempdir();
    fs::write(tmp.path().join("a"), "one").unwrap();
    fs::write(tmp.path().join("b"), "two").unwrap();
    fs::write(tmp.path().join("c"), "one").unwrap();
    let mut p = airgap_archive::Plan::new(PlanOptions::default());
    p.add(
        "conda",
        &[Entry::path(tmp.path().join("a"), "x")],
        &NoProgress,
    )
    .unwrap();
    // Same content again: fine.
    assert!(p
        .add(
            "pip",
            &[Entry::path(tmp.path().join("c"), "x")],
            &NoProgress
        )
        .unwrap()
        .is_empty());
    let err = p
        .add(
            "pip",
            &[Entry::path(tmp.path().join("b"), "x")],
            &NoProgress,
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("conda") && text.contains("pip") && text.contains('x'),
        "{text}"
    );
    // A deliberate replacement is reported back.
    let changed = p
        .add(
            "syslibs",
            &[Entry::path(tmp.path().join("b"), "x").replacing()],
            &NoProgress,
        )
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].plugin, "syslibs");
}

#[test]
fn exclude_globs_leave_paths_out() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("pkg/__pycache__")).unwrap();
    fs::write(src.join("pkg/__pycache__/m.pyc"), "c").unwrap();
    fs::write(src.join("pkg/m.py"), "p").unwrap();
    fs::write(src.join("pkg/tmp.log"), "l").unwrap();
    fs::write(src.join("top.log"), "l").unwrap();
    let kind = airgap_archive::EntryKind::Path {
        source: src.clone(),
        exclude: vec!["__pycache__".into(), "pkg/*.log".into()],
    };
    let entry = Entry::new("d", kind);
    let p = plan(&[entry], PlanOptions::default()).unwrap();
    let paths: Vec<String> = p.files().unwrap().into_iter().map(|f| f.path).collect();
    assert_eq!(paths, vec!["d", "d/pkg", "d/pkg/m.py", "d/top.log"]);
}

/// Rewrites a file when the writing phase starts: the file changes between the two passes.
struct ChangeWhileWriting(std::path::PathBuf);

impl Progress for ChangeWhileWriting {
    fn begin(&self, label: &str, _total: u64, _unit: Unit) {
        if label == "writing" {
            fs::write(&self.0, "changed content, longer").unwrap();
        }
    }
}

#[test]
fn a_file_changing_while_being_written_is_an_error_and_leaves_no_output() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), "original").unwrap();
    let p = plan(&[Entry::path(&src, "d")], PlanOptions::default()).unwrap();
    let out = tmp.path().join("out/b.tar.gz");
    fs::create_dir(tmp.path().join("out")).unwrap();
    let err = write_bundle(
        &p,
        input("b"),
        &out,
        &WriteOptions::default(),
        &ChangeWhileWriting(src.join("f")),
    )
    .unwrap_err();
    assert!(matches!(err, ArchiveError::Changed { .. }), "{err}");
    assert!(err.to_string().contains("/src/f"), "{err}");
    assert_eq!(
        fs::read_dir(tmp.path().join("out")).unwrap().count(),
        0,
        "leftovers in the output directory"
    );
}

#[test]
fn zstd_bundles_round_trip() {
    let tmp = tempdir();
    let src = build_tree(&tmp.path().join("tree"));
    let p = plan(&[Entry::path(&src, "data")], PlanOptions::default()).unwrap();
    let out = tmp.path().join("b.tar.zst");
    write_bundle(
        &p,
        input("b"),
        &out,
        &WriteOptions {
            compression: airgap_archive::Compression::Zstd { level: 3 },
            ..WriteOptions::default()
        },
        &NoProgress,
    )
    .unwrap();
    gnu_tar(&["--zstd", "-tf", out.to_str().unwrap()], tmp.path());
    airgap_archive::verify_bundle(&out, &NoProgress).unwrap();
    let dest = tmp.path().join("dest");
    airgap_archive::unpack(&out, &dest, &Default::default(), &NoProgress).unwrap();
    assert_eq!(
        fs::read_to_string(dest.join("data/regular.txt")).unwrap(),
        "hello\n"
    );
    // Long-distance matching (`--long`): another frame (a 128 MiB window), the same tar, read
    // by GNU zstd with its default limits and by airgap.
    let long = tmp.path().join("long.tar.zst");
    write_bundle(
        &p,
        input("b"),
        &long,
        &WriteOptions {
            compression: airgap_archive::Compression::Zstd { level: 3 },
            zstd_long: true,
            ..WriteOptions::default()
        },
        &NoProgress,
    )
    .unwrap();
    assert!(fs::read(&long).unwrap() != fs::read(&out).unwrap());
    let unzstd = |f: &Path| {
        let o = std::process::Command::new("zstd")
            .arg("-dc")
            .arg(f)
            .output()
            .expect("zstd (GNU zstd is the oracle of this test)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    assert!(
        unzstd(&long) == unzstd(&out),
        "the long bundle holds another tar"
    );
    airgap_archive::verify_bundle(&long, &NoProgress).unwrap();
}

#[test]
fn sparse_file_over_8_gib_is_stored_sparse_and_restored() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let big = src.join("big.img");
    let f = fs::File::create(&big).unwrap();
    let size: u64 = (8 << 30) + 12345;
    f.set_len(size).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"start", 0).unwrap();
    f.write_all_at(b"middle", 5 << 30).unwrap();
    f.write_all_at(b"end", size - 3).unwrap();
    drop(f);
    let p = plan(&[Entry::path(&src, "d")], PlanOptions::default()).unwrap();
    let out = tmp.path().join("b.tar.gz");
    let t = std::time::Instant::now();
    let summary = write(&p, input("b"), &out, None);
    eprintln!("wrote the 8 GiB sparse bundle in {:?}", t.elapsed());
    assert!(summary.bytes_out < 10 << 20, "{summary:?}");
    let listing = gnu_tar(&["-tvzf", out.to_str().unwrap()], tmp.path());
    assert!(listing.contains(&size.to_string()), "{listing}");
    // GNU tar restores it (sparse).
    let x = tmp.path().join("x");
    fs::create_dir(&x).unwrap();
    gnu_tar(&["-xzf", out.to_str().unwrap()], &x);
    let m = fs::metadata(x.join("b/d/big.img")).unwrap();
    assert_eq!(m.len(), size);
    // airgap verifies and installs it, sparse too.
    let t = std::time::Instant::now();
    let dest = tmp.path().join("dest");
    airgap_archive::unpack(&out, &dest, &Default::default(), &NoProgress).unwrap();
    eprintln!("unpacked it in {:?}", t.elapsed());
    let m = fs::metadata(dest.join("d/big.img")).unwrap();
    assert_eq!(m.len(), size);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "not sparse: {} blocks",
        m.blocks()
    );
    let f = fs::File::open(dest.join("d/big.img")).unwrap();
    let mut buf = [0u8; 6];
    f.read_exact_at(&mut buf, 5 << 30).unwrap();
    assert_eq!(&buf, b"middle");
}

/// Asks to stop once writing has started (what Ctrl-C does through the CLI's progress).
struct CancelWhileWriting(std::sync::atomic::AtomicBool);

impl Progress for CancelWhileWriting {
    fn begin(&self, label: &str, _total: u64, _unit: Unit) {
        if label == "writing" {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[test]
fn cancelling_while_writing_leaves_no_output_and_no_partial_file() {
    let tmp = tempdir();
    let src = build_tree(&tmp.path().join("tree"));
    let p = plan(&[Entry::path(&src, "d")], PlanOptions::default()).unwrap();
    let outdir = tmp.path().join("out");
    fs::create_dir(&outdir).unwrap();
    let progress = CancelWhileWriting(std::sync::atomic::AtomicBool::new(false));
    let err = write_bundle(
        &p,
        input("b"),
        &outdir.join("b.tar.gz"),
        &WriteOptions::default(),
        &progress,
    )
    .unwrap_err();
    assert!(matches!(err, ArchiveError::Cancelled), "{err}");
    assert_eq!(fs::read_dir(&outdir).unwrap().count(), 0);
}

/// sha256 of the tar stream inside the bundle of [`golden_tree`]: the bytes the writer made
/// when it wrote its headers by hand, before they went through the `tar` crate. A change to
/// the writer that moves one byte of a bundle fails here. Only the tar stream is pinned: the
/// compressed bytes around it are libdeflate's and zstd's (their versions in Cargo.lock), not
/// airgap's, and are compared by `same_input_gives_byte_identical_bundles_whatever_the_threads`.
const GOLDEN_TAR_SHA256: &str = "9c5a94493a649806b282357e963004aa669904eb22f5f67b159f30db58234997";

/// [`build_tree`] plus what else a header can hold: a file with holes in more segments than
/// a sparse header has room for (an extension block), an mtime past 8^11 seconds (base-256),
/// and modes and mtimes set here, so that neither the umask nor the clock changes a byte.
fn golden_tree(root: &Path) -> std::path::PathBuf {
    let src = build_tree(root);
    let sparse = src.join("holes.bin");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::File::create(&sparse).unwrap();
        for i in 0..6u64 {
            f.seek(SeekFrom::Start(i * 256 * 1024)).unwrap();
            f.write_all(&[b'a' + i as u8; 4096]).unwrap();
        }
        f.set_len(2 << 20).unwrap();
        f.sync_all().unwrap();
    }
    let meta = fs::metadata(&sparse).unwrap();
    assert!(
        meta.blocks() * 512 < meta.len(),
        "the file system of {} keeps no holes: the golden bundle needs a sparse file (set TMPDIR to ext4, xfs, btrfs or tmpfs)",
        root.display()
    );
    fs::write(src.join("future.txt"), "an mtime past 8^11 seconds\n").unwrap();
    for e in walkdir::WalkDir::new(root) {
        let e = e.unwrap();
        let mode = if e.path_is_symlink() {
            continue;
        } else if e.file_type().is_dir() || e.file_name() == "exec.sh" {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(e.path(), fs::Permissions::from_mode(mode)).unwrap();
    }
    set_mtimes(root, 1_700_000_000);
    let status = std::process::Command::new("touch")
        .args(["-d", "@9000000000"])
        .arg(src.join("future.txt"))
        .status()
        .unwrap();
    assert!(status.success());
    src
}

#[test]
fn the_tar_stream_of_a_tree_with_every_header_kind_is_pinned() {
    let tmp = tempdir();
    let src = golden_tree(tmp.path());
    let plan = plan(&[Entry::path(&src, "data")], PlanOptions::default()).unwrap();
    let out = tmp.path().join("golden.tar.gz");
    write(&plan, input("golden"), &out, None);
    let tar = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&out)
        .output()
        .unwrap();
    assert!(tar.status.success(), "gzip -dc failed");
    // The stream holds every kind of header the writer makes.
    let mut r = airgap_archive::format::tarfmt::TarReader::new(&tar.stdout[..]);
    let mut seen = std::collections::BTreeSet::new();
    while let Some(e) = r.next_entry().unwrap() {
        seen.insert(format!("{:?}", e.kind));
        if e.path.len() > 100 {
            seen.insert("long name".into());
        }
        if e.link.len() > 100 {
            seen.insert("long link".into());
        }
        if e.mtime >= 1 << 33 {
            seen.insert("base-256".into());
        }
        if e.sparse.len() > 4 {
            seen.insert("sparse extension".into());
        }
    }
    let want = [
        "Dir",
        "File",
        "HardLink",
        "Sparse",
        "Symlink",
        "base-256",
        "long link",
        "long name",
        "sparse extension",
    ];
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), want);
    assert_eq!(
        sha256_hex(&tar.stdout),
        GOLDEN_TAR_SHA256,
        "the writer's bytes changed: bundles are no longer what they were"
    );
}
