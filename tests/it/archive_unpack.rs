//! Installing bundles: verify while extracting, install steps seeing the final path, prefix
//! rewriting and repeated relocation, the carried unpacker, and all-or-nothing on failure.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_archive::format::manifest::StepRecord;
use airgap_archive::format::model::{InstallStep, PrefixFile, PrefixMode};
use airgap_archive::install::unpack::UnpackOptions;
use airgap_archive::Entry;
use airgap_archive::{relocate, unpack, verify_bundle, ArchiveError, NoProgress, PlanOptions};
use airgap_tests::archive::*;
use airgap_tests::tempdir;

/// A placeholder as long as conda's padded ones, so that binaries can be relocated.
const PLACEHOLDER: &str =
    "/opt/airgap_placeholder_prefix_padded_to_be_long_enough_for_any_test_path_0123456789abcdef";

fn env_tree(root: &Path) -> PathBuf {
    let env = root.join("env");
    fs::create_dir_all(env.join("bin")).unwrap();
    fs::create_dir_all(env.join("lib")).unwrap();
    fs::write(
        env.join("bin/tool"),
        format!("#!{PLACEHOLDER}/bin/python\nprefix={PLACEHOLDER} again {PLACEHOLDER}/lib\n"),
    )
    .unwrap();
    let mut bin = b"\x7fELF\0\0junk\0".to_vec();
    bin.extend_from_slice(format!("{PLACEHOLDER}/lib:{PLACEHOLDER}/lib64").as_bytes());
    bin.extend_from_slice(b"\0other\0");
    bin.extend_from_slice(format!("{PLACEHOLDER}/share").as_bytes());
    bin.extend_from_slice(b"\0tail");
    fs::write(env.join("lib/libx.so"), &bin).unwrap();
    env
}

fn rewrite_step() -> StepRecord {
    StepRecord {
        plugin: "conda".into(),
        step: InstallStep::RewritePrefix {
            old_prefix: PLACEHOLDER.into(),
            root: "env".into(),
            files: vec![
                PrefixFile::new("env/bin/tool", PrefixMode::Text),
                PrefixFile::new("env/lib/libx.so", PrefixMode::Binary),
            ],
        },
    }
}

fn run_step(description: &str, program: &str, args: &[&str]) -> StepRecord {
    StepRecord {
        plugin: "pip".into(),
        step: InstallStep::Run {
            description: description.into(),
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Default::default(),
        },
    }
}

fn env_bundle(tmp: &Path, steps: Vec<StepRecord>) -> PathBuf {
    let env = env_tree(&tmp.join("src"));
    let p = plan(&[Entry::path(&env, "env")], PlanOptions::default()).unwrap();
    let mut inp = input("nlp");
    inp.install_steps = steps;
    let out = tmp.join("nlp.tar.gz");
    write(&p, inp, &out, None);
    out
}

fn binary_strings(data: &[u8]) -> Vec<String> {
    data.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[test]
fn unpack_rewrites_prefixes_for_the_final_path_and_relocate_works_again_and_again() {
    let tmp = tempdir();
    let out = env_bundle(tmp.path(), vec![rewrite_step()]);
    let size = fs::metadata(tmp.path().join("src/env/lib/libx.so"))
        .unwrap()
        .len();
    let dest = tmp.path().join("d");
    let report = unpack(&out, &dest, &UnpackOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.dest, dest);
    let d = dest.display().to_string();
    let tool = fs::read_to_string(dest.join("env/bin/tool")).unwrap();
    assert_eq!(
        tool,
        format!("#!{d}/env/bin/python\nprefix={d}/env again {d}/env/lib\n")
    );
    let lib = fs::read(dest.join("env/lib/libx.so")).unwrap();
    assert_eq!(lib.len() as u64, size, "binary changed size");
    assert!(
        binary_strings(&lib).contains(&format!("{d}/env/lib:{d}/env/lib64")),
        "{:?}",
        binary_strings(&lib)
    );
    assert!(binary_strings(&lib).contains(&format!("{d}/env/share")));
    assert!(dest.join(".airgap/prefixes.toml").is_file());
    // No staging left beside DEST.
    assert_eq!(
        fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("staging"))
            .count(),
        0
    );

    // Move it, then move it again to a longer path (still within the placeholder's length).
    let second = tmp.path().join("moved");
    relocate(&dest, Some(&second), &NoProgress).unwrap();
    assert!(!dest.exists());
    let third = tmp.path().join("moved-again-to-a-longer-name/deeper");
    fs::create_dir(tmp.path().join("moved-again-to-a-longer-name")).unwrap();
    relocate(&second, Some(&third), &NoProgress).unwrap();
    let t = third.display().to_string();
    let tool = fs::read_to_string(third.join("env/bin/tool")).unwrap();
    assert_eq!(
        tool,
        format!("#!{t}/env/bin/python\nprefix={t}/env again {t}/env/lib\n")
    );
    let lib = fs::read(third.join("env/lib/libx.so")).unwrap();
    assert_eq!(lib.len() as u64, size);
    assert!(
        binary_strings(&lib).contains(&format!("{t}/env/lib:{t}/env/lib64")),
        "{:?}",
        binary_strings(&lib)
    );
    assert!(binary_strings(&lib).contains(&"other".to_string()));

    // Too long for the binary: refused, nothing moved or changed.
    let long = tmp.path().join("x".repeat(PLACEHOLDER.len()));
    let before = fs::read(third.join("env/lib/libx.so")).unwrap();
    let err = relocate(&third, Some(&long), &NoProgress).unwrap_err();
    assert!(matches!(err, ArchiveError::PrefixTooLong { .. }), "{err}");
    assert!(err.to_string().contains("env/lib/libx.so"), "{err}");
    assert!(third.is_dir() && !long.exists());
    assert_eq!(fs::read(third.join("env/lib/libx.so")).unwrap(), before);
}

#[test]
fn a_destination_too_long_for_a_binary_is_refused_before_anything_is_written() {
    let tmp = tempdir();
    let out = env_bundle(tmp.path(), vec![rewrite_step()]);
    let dest = tmp.path().join("y".repeat(PLACEHOLDER.len()));
    let before = snapshot(tmp.path());
    let err = unpack(&out, &dest, &UnpackOptions::default(), &NoProgress).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("env/lib/libx.so") && text.contains(&PLACEHOLDER.len().to_string()),
        "{text}"
    );
    assert!(err.help().unwrap().contains("at most"), "{:?}", err.help());
    assert_eq!(snapshot(tmp.path()), before);
}

#[test]
fn run_steps_see_the_final_destination_and_a_failing_step_leaves_nothing() {
    let tmp = tempdir();
    let out = env_bundle(
        tmp.path(),
        vec![
            rewrite_step(),
            run_step(
                "record where we are",
                "sh",
                &[
                    "-c",
                    "pwd -P > {dest}/installed.txt; echo {dest} >> installed.txt",
                ],
            ),
        ],
    );
    let dest = tmp.path().join("ok");
    let r = unpack(&out, &dest, &UnpackOptions::default(), &NoProgress).unwrap();
    assert_eq!(r.steps, 2);
    let d = dest.display().to_string();
    assert_eq!(
        fs::read_to_string(dest.join("installed.txt")).unwrap(),
        format!("{d}\n{d}\n")
    );

    let out = env_bundle(
        &tmp.path().join("second"),
        vec![
            rewrite_step(),
            run_step("fail on purpose", "sh", &["-c", "echo boom >&2; exit 3"]),
        ],
    );
    let dest = tmp.path().join("bad");
    let before = snapshot(tmp.path());
    let err = unpack(&out, &dest, &UnpackOptions::default(), &NoProgress).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("fail on purpose") && text.contains("boom"),
        "{text}"
    );
    assert!(!dest.exists());
    assert_eq!(snapshot(tmp.path()), before);
    // An empty DEST that existed is left, empty.
    fs::create_dir(&dest).unwrap();
    unpack(&out, &dest, &UnpackOptions::default(), &NoProgress).unwrap_err();
    assert!(dest.is_dir() && fs::read_dir(&dest).unwrap().next().is_none());
}

#[test]
fn a_step_needing_python_without_one_given_is_refused_up_front() {
    let tmp = tempdir();
    let out = env_bundle(
        tmp.path(),
        vec![run_step(
            "install wheels",
            "{python}",
            &["-m", "pip", "--version"],
        )],
    );
    let dest = tmp.path().join("d");
    let err = unpack(&out, &dest, &UnpackOptions::default(), &NoProgress).unwrap_err();
    assert!(err.to_string().contains("--python"), "{err}");
    assert!(!dest.exists());
    let r = unpack(
        &out,
        &dest,
        &UnpackOptions {
            python: Some("/usr/bin/python3".into()),
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(r.steps, 1);
}

#[test]
fn dest_that_is_not_empty_is_refused() {
    let tmp = tempdir();
    let out = env_bundle(tmp.path(), vec![]);
    let dest = tmp.path().join("full");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("keep"), "mine").unwrap();
    let err = unpack(&out, &dest, &UnpackOptions::default(), &NoProgress).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(fs::read_to_string(dest.join("keep")).unwrap(), "mine");
}

/// What happened to one corrupted bundle.
#[derive(Default, Debug)]
struct Tally {
    bytes: usize,
    flips: usize,
    cuts: usize,
    cases: usize,
    detected: usize,
    /// Flips the archive cannot see without `BUNDLE.sha256` (a gzip header's mtime or OS
    /// byte): the content is intact and installs correctly.
    harmless: usize,
}

/// A bundle with a `Run` step that leaves a marker outside DEST: the marker proves the step
/// ran. Over 1 MiB of tar, so that gzip writes several members.
fn marked_bundle(tmp: &Path, compression: airgap_archive::Compression) -> (PathBuf, PathBuf) {
    let src = build_tree(&tmp.join("tree"));
    let mut big = String::new();
    for i in 0..24_000 {
        big.push_str(&format!(
            "line {i} of a file that spans gzip members {}\n",
            i * 7919 % 10007
        ));
    }
    fs::write(src.join("big.txt"), big).unwrap();
    // Incompressible bytes (as in wheels), which the gzip writer stores.
    fs::write(src.join("noise.bin"), noise(1_300_000)).unwrap();
    set_mtimes(&tmp.join("tree"), 1_700_000_000);
    let marker = tmp.join("markers/step-ran");
    fs::create_dir_all(marker.parent().unwrap()).unwrap();
    let p = plan(&[Entry::path(&src, "data")], PlanOptions::default()).unwrap();
    let mut inp = input("b");
    inp.install_steps = vec![run_step(
        "leave a marker",
        "sh",
        &["-c", &format!("touch {}", marker.display())],
    )];
    let good = tmp.join(match compression {
        airgap_archive::Compression::Zstd { .. } => "good.tar.zst",
        _ => "good.tar.gz",
    });
    airgap_archive::write_bundle(
        &p,
        inp,
        &good,
        &airgap_archive::WriteOptions {
            compression,
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    (good, marker)
}

/// The offsets of the gzip members of an airgap bundle, from the lengths their headers carry.
pub(crate) fn member_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut v = Vec::new();
    while at < bytes.len() {
        v.push(at);
        at += airgap_archive::format::gzmember::member_len(&bytes[at..])
            .unwrap_or_else(|| panic!("no member header at {at}"));
    }
    assert_eq!(at, bytes.len());
    v
}

/// Deterministic positions spread over the whole file, plus both ends.
fn positions(n: usize, spread: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..spread).map(|i| (n - 1) * i / (spread - 1)).collect();
    v.extend(0..32.min(n));
    v.extend(n.saturating_sub(16)..n);
    v.sort();
    v.dedup();
    v
}

/// Flip and cut `good` every which way; every damage must be caught before the install step
/// runs, leaving no DEST and nothing beside it. `cli_every`: one case in so many also goes
/// through the real `airgap unpack`.
fn corrupt_everywhere(
    tmp: &Path,
    good: &Path,
    src: &Path,
    marker: &Path,
    spread: usize,
    extra: &[usize],
) -> Tally {
    let bytes = fs::read(good).unwrap();
    let sum = fs::read_to_string(format!("{}.sha256", good.display())).unwrap();
    let work = tmp.join("work");
    fs::create_dir_all(&work).unwrap();
    let bad = work.join(good.file_name().unwrap());
    let bad_sum = PathBuf::from(format!("{}.sha256", bad.display()));
    let dest = work.join("dest");
    let n = bytes.len();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut at = positions(n, spread);
    at.extend(extra);
    at.sort();
    at.dedup();
    for (k, pos) in at.into_iter().enumerate() {
        let mut b = bytes.clone();
        // Vary the flipped bit, deterministically.
        b[pos] ^= 1 << (k % 8);
        cases.push((format!("flip at {pos}"), b));
    }
    let mut cuts: Vec<usize> = (0..spread / 3).map(|i| n * i / (spread / 3)).collect();
    cuts.extend([
        1,
        2,
        9,
        10,
        18,
        511,
        512,
        513,
        n - 1,
        n - 4,
        n - 8,
        n - 9,
        n - 100,
    ]);
    cuts.sort();
    cuts.dedup();
    for len in cuts {
        cases.push((format!("cut at {len}"), bytes[..len].to_vec()));
    }
    let mut tally = Tally {
        bytes: n,
        flips: cases.iter().filter(|(w, _)| w.starts_with("flip")).count(),
        cuts: cases.iter().filter(|(w, _)| w.starts_with("cut")).count(),
        ..Tally::default()
    };
    let step_ran = |what: &str| {
        assert!(!marker.exists(), "{what}: the install step ran");
    };
    let nothing_left = |what: &str| {
        let left: Vec<_> = fs::read_dir(&work)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|f| f != bad.file_name().unwrap() && f != bad_sum.file_name().unwrap())
            .collect();
        assert!(left.is_empty(), "{what}: leftovers {left:?}");
    };
    for (i, (what, b)) in cases.iter().enumerate() {
        tally.cases += 1;
        fs::write(&bad, b).unwrap();
        // With the detached checksum beside it: always refused, before anything is written.
        fs::write(&bad_sum, &sum).unwrap();
        assert!(
            verify_bundle(&bad, &NoProgress).is_err(),
            "{what}: verify passed"
        );
        let err = unpack(&bad, &dest, &UnpackOptions::default(), &NoProgress).unwrap_err();
        assert!(!dest.exists(), "{what}: DEST exists after {err}");
        step_ran(what);
        nothing_left(what);
        if i % 25 == 0 {
            let u = airgap_tests::run(airgap_tests::airgap().arg("unpack").arg(&bad).arg(&dest))
                .failure();
            assert!(u.stderr.contains("error"), "{what}: {}", u.stderr);
            assert!(!dest.exists(), "{what}: DEST exists after airgap unpack");
            step_ran(what);
            nothing_left(what);
        }
        // Without it: the archive's own checks (tar checksums, sizes, sha256 of every file,
        // gzip CRCs, the end marker) catch everything that changes the content.
        fs::remove_file(&bad_sum).unwrap();
        let verified = verify_bundle(&bad, &NoProgress).is_ok();
        let unpacked = unpack(&bad, &dest, &UnpackOptions::default(), &NoProgress);
        assert_eq!(
            verified,
            unpacked.is_ok(),
            "{what}: verify and unpack disagree ({unpacked:?})"
        );
        assert!(
            !what.starts_with("cut") || !verified,
            "{what}: a cut bundle unpacked"
        );
        match unpacked {
            Err(_) => {
                tally.detected += 1;
                assert!(!dest.exists(), "{what}: DEST exists");
                step_ran(what);
            }
            Ok(_) => {
                // The content is intact: the install is complete and correct, and the step ran
                // as it should.
                tally.harmless += 1;
                verify_equal(src, &dest.join("data"));
                assert_eq!(
                    fs::read(src.join("big.txt")).unwrap(),
                    fs::read(dest.join("data/big.txt")).unwrap(),
                    "{what}"
                );
                assert!(marker.exists(), "{what}: installed without its step");
                fs::remove_file(marker).unwrap();
                fs::remove_dir_all(&dest).unwrap();
            }
        }
        if i % 25 == 0 {
            let u = airgap_tests::run(airgap_tests::airgap().arg("verify").arg(&bad));
            assert_eq!(u.code == Some(0), verified, "{what}: {}", u.stderr);
        }
        nothing_left(what);
    }
    tally
}

#[test]
fn flipped_bytes_and_cut_bundles_fail_verify_and_unpack_leaves_dest_absent() {
    let tmp = tempdir();
    let (good, marker) = marked_bundle(tmp.path(), airgap_archive::Compression::default());
    let src = tmp.path().join("tree/src");
    // The intact bundle installs and runs its step.
    let dest = tmp.path().join("intact");
    unpack(&good, &dest, &UnpackOptions::default(), &NoProgress).unwrap();
    assert!(marker.exists());
    fs::remove_file(&marker).unwrap();
    // Every byte of every member's header (the lengths that let unpack inflate members in
    // parallel), besides the spread.
    let bytes = fs::read(&good).unwrap();
    let offsets = member_offsets(&bytes);
    assert!(offsets.len() >= 3, "{} gzip members only", offsets.len());
    let headers: Vec<usize> = offsets
        .iter()
        .flat_map(|&o| o..o + airgap_archive::format::gzmember::HEADER_LEN)
        .collect();
    let t = corrupt_everywhere(tmp.path(), &good, &src, &marker, 300, &headers);
    eprintln!("gzip: {t:?}");
    assert!(t.cases >= 400 && t.flips >= 300 && t.cuts >= 100, "{t:?}");
    assert_eq!(t.cases, t.detected + t.harmless, "{t:?}");
    assert!(t.bytes > 100_000, "{t:?}");
    // Every header byte is under the header CRC, the data under the member's CRC-32: what
    // may go unseen without the detached checksum is only padding deflate ignores: the 5
    // bits after the 3-bit header of each stored block (at most 64 KiB each), and the bits
    // after the last block of a member.
    let stored_blocks: usize = offsets
        .iter()
        .filter(|&&o| (bytes[o + airgap_archive::format::gzmember::HEADER_LEN] >> 1) & 3 == 0)
        .map(|_| airgap_archive::format::gzmember::BLOCK / 65_535 + 1)
        .sum();
    assert!(stored_blocks > 0, "no stored member");
    assert!(t.harmless <= stored_blocks + offsets.len(), "{t:?}");
}

#[test]
fn flipped_bytes_and_cut_zstd_bundles_are_caught_before_any_step() {
    let tmp = tempdir();
    let (good, marker) = marked_bundle(tmp.path(), airgap_archive::Compression::Zstd { level: 3 });
    let src = tmp.path().join("tree/src");
    let t = corrupt_everywhere(tmp.path(), &good, &src, &marker, 150, &[]);
    eprintln!("zstd: {t:?}");
    assert!(t.cases >= 200 && t.flips >= 150 && t.cuts >= 50, "{t:?}");
    assert_eq!(t.cases, t.detected + t.harmless, "{t:?}");
    assert!(t.bytes > 100_000, "{t:?}");
}

fn verify_equal(src: &Path, dest: &Path) {
    let a = fs::read_to_string(src.join("regular.txt")).unwrap();
    let b = fs::read_to_string(dest.join("regular.txt")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn the_carried_unpacker_installs_with_only_sh_and_tar() {
    let tmp = tempdir();
    let env = env_tree(&tmp.path().join("src"));
    let p = plan(&[Entry::path(&env, "env")], PlanOptions::default()).unwrap();
    let mut inp = input("nlp");
    inp.install_steps = vec![
        rewrite_step(),
        run_step("say where", "sh", &["-c", "echo {dest} > where.txt"]),
    ];
    let out = tmp.path().join("nlp.tar.gz");
    write(&p, inp, &out, Some(unpacker()));
    let target = tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    fs::copy(&out, target.join("nlp.tar.gz")).unwrap();
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg("tar xzf nlp.tar.gz && nlp/unpack /dev/null/x 2>err1.txt; nlp/unpack installed")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(&target)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let dest = target.join("installed");
    let d = dest.display().to_string();
    assert_eq!(
        fs::read_to_string(dest.join("where.txt")).unwrap(),
        format!("{d}\n")
    );
    assert!(fs::read_to_string(dest.join("env/bin/tool"))
        .unwrap()
        .contains(&format!("#!{d}/env/bin/python")));
    assert!(dest.join(".airgap/prefixes.toml").is_file());
    // A tampered extracted tree is refused and nothing is installed.
    fs::write(target.join("nlp/env/bin/tool"), "tampered").unwrap();
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("nlp/unpack again")
        .current_dir(&target)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("env/bin/tool"), "{err}");
    assert!(!target.join("again").exists());
}

/// A binary whose string a conda installer padded: `Prefix-file capacity` lets it take a
/// prefix longer than the one it holds, at unpack and at every relocation; a recorded capacity
/// that the file's NUL bytes do not back is refused by the rewrite itself, in staging, and
/// nothing is left. A step without a capacity writes the manifest it always wrote.
#[test]
fn a_recorded_capacity_lets_binaries_grow_and_the_rewrite_still_judges() {
    let tmp = tempdir();
    let src = tmp.path().join("src/env");
    fs::create_dir_all(src.join("lib")).unwrap();
    let old = "/b/p";
    // As installed: the prefix, then NUL bytes up to a 120-byte placeholder, then others.
    let mut padded = b"\x7fELF\0".to_vec();
    padded.extend_from_slice(format!("{old}/lib").as_bytes());
    padded.extend_from_slice(&[0; 120]);
    padded.extend_from_slice(b"next\0");
    fs::write(src.join("lib/padded.so"), &padded).unwrap();
    // The same claim for a string with a single NUL after it: no room at all.
    let mut tight = b"\x7fELF\0".to_vec();
    tight.extend_from_slice(format!("{old}/lib\0next\0").as_bytes());
    fs::write(src.join("lib/tight.so"), &tight).unwrap();
    let bundle = |name: &str, files: Vec<PrefixFile>| {
        let p = plan(&[Entry::path(&src, "env")], PlanOptions::default()).unwrap();
        let mut inp = input("nlp");
        inp.install_steps = vec![StepRecord {
            plugin: "conda".into(),
            step: InstallStep::RewritePrefix {
                old_prefix: old.into(),
                root: "env".into(),
                files,
            },
        }];
        let out = tmp.path().join(format!("{name}.tar.gz"));
        write(&p, inp, &out, None);
        out
    };
    let room = |path: &str| PrefixFile::new(path, PrefixMode::Binary).with_capacity(120);

    let out = bundle("padded", vec![room("env/lib/padded.so")]);
    let first = tmp.path().join("a-destination-longer-than-four-bytes");
    unpack(&out, &first, &UnpackOptions::default(), &NoProgress).unwrap();
    let manifest = fs::read_to_string(first.join(".airgap/manifest.toml")).unwrap();
    assert!(manifest.contains("capacity = 120"), "{manifest}");
    let strings = |tree: &Path| binary_strings(&fs::read(tree.join("env/lib/padded.so")).unwrap());
    let f = first.display();
    assert!(strings(&first).contains(&format!("{f}/env/lib")));
    let second = tmp
        .path()
        .join("and-again-a-longer-one-still-under-the-capacity");
    relocate(&first, Some(&second), &NoProgress).unwrap();
    let s = second.display();
    assert_eq!(
        strings(&second),
        ["\x7fELF", &format!("{s}/env/lib"), "next"]
    );
    let third = tmp.path().join("s");
    relocate(&second, Some(&third), &NoProgress).unwrap();
    let t = third.display();
    assert_eq!(
        strings(&third),
        ["\x7fELF", &format!("{t}/env/lib"), "next"]
    );
    assert_eq!(
        fs::read(third.join("env/lib/padded.so")).unwrap().len(),
        padded.len()
    );
    // Past the capacity: refused by name before anything moves.
    let beyond = tmp.path().join("x".repeat(130));
    let err = relocate(&third, Some(&beyond), &NoProgress).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::PrefixTooLong {
                max: 120,
                padded: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(third.is_dir() && !beyond.exists());

    // The claim is not backed by NUL bytes: the rewrite refuses, DEST is never made.
    let out = bundle("tight", vec![room("env/lib/tight.so")]);
    let dest = tmp.path().join("longer-than-four-bytes");
    let before = snapshot(tmp.path());
    let err = unpack(&out, &dest, &UnpackOptions::default(), &NoProgress).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::PrefixTooLong { file, .. } if file == "env/lib/tight.so"),
        "{err}"
    );
    assert_eq!(snapshot(tmp.path()), before);

    // No capacity recorded: the file takes no prefix longer than the one it holds.
    let out = bundle(
        "unrecorded",
        vec![PrefixFile::new("env/lib/padded.so", PrefixMode::Binary)],
    );
    let before = snapshot(tmp.path());
    let err = unpack(&out, &dest, &UnpackOptions::default(), &NoProgress).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::PrefixTooLong {
                max: 4,
                padded: false,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(snapshot(tmp.path()), before);
    // And a step without one writes the manifest it wrote before the field existed.
    let out = bundle(
        "plain",
        vec![PrefixFile::new("env/lib/padded.so", PrefixMode::Text)],
    );
    let dest = tmp.path().join("p");
    unpack(&out, &dest, &UnpackOptions::default(), &NoProgress).unwrap();
    let manifest = fs::read_to_string(dest.join(".airgap/manifest.toml")).unwrap();
    assert!(!manifest.contains("capacity"), "{manifest}");
}
