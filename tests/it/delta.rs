//! Delta bundles through the real CLI (issue #20): `airgap bundle --since` carries only what
//! changed, `airgap unpack DELTA --onto INSTALLED` (and the carried unpacker) verifies the base,
//! builds the new tree in staging and swaps it in; the result is the tree a full unpack of the
//! new version gives, file for file (content, mode, mtime, links), and a base that is not the
//! delta's, or was edited, or an apply that is killed, changes nothing.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use airgap_archive::format::tarfmt::EntryType;
use airgap_tests::archive::{craft, gnu_tar, noise, record_for, tree_state as state, Raw};
use airgap_tests::{run, tempdir};

fn airgap() -> Command {
    airgap_tests::with_build_plugins(airgap_tests::airgap())
}

/// `airgap unpack DELTA --onto INSTALLED`.
fn onto(delta: &Path, installed: &Path) -> Command {
    let mut cmd = airgap();
    cmd.arg("unpack").arg(delta).arg("--onto").arg(installed);
    cmd
}

/// A project of the files source: `src/` with files big enough that a delta's size shows.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempdir();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("lib/sub")).unwrap();
        for (i, name) in ["a.bin", "b.bin", "c.bin", "d.bin", "e.bin"]
            .iter()
            .enumerate()
        {
            fs::write(src.join("lib").join(name), noise(300_000 + i)).unwrap();
        }
        fs::write(src.join("lib/sub/small.txt"), "hello\n").unwrap();
        std::os::unix::fs::symlink("a.bin", src.join("lib/link")).unwrap();
        fs::write(
            dir.path().join("airgap.toml"),
            "[bundle]\nname = \"env\"\n\n[sources.files]\npaths = [\"src/\"]\n",
        )
        .unwrap();
        Project { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn bundle(&self, out: &str, extra: &[&str]) -> PathBuf {
        let out = self.path(out);
        run(airgap()
            .args(["bundle", "-c"])
            .arg(self.path("airgap.toml"))
            .arg("-o")
            .arg(&out)
            .args(extra))
        .success();
        out
    }

    fn unpack(&self, bundle: &Path, dest: &str) -> PathBuf {
        let dest = self.path(dest);
        run(airgap().arg("unpack").arg(bundle).arg(&dest)).success();
        dest
    }

    /// v2: b changed, c removed, a new file, d's content also under a new name, e's mode
    /// changed, a's mtime changed (content the same).
    fn upgrade(&self) {
        let lib = self.path("src/lib");
        fs::write(lib.join("b.bin"), noise(400_000)).unwrap();
        fs::remove_file(lib.join("c.bin")).unwrap();
        fs::write(lib.join("new.txt"), "new in v2\n").unwrap();
        fs::copy(lib.join("d.bin"), lib.join("d-moved.bin")).unwrap();
        fs::set_permissions(lib.join("e.bin"), fs::Permissions::from_mode(0o755)).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        fs::File::options()
            .write(true)
            .open(lib.join("a.bin"))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
}

/// v1 installed at `inst`, v2 as a full bundle and as a delta against v1.
struct Upgraded {
    p: Project,
    inst: PathBuf,
    full: PathBuf,
    delta: PathBuf,
}

fn upgraded() -> Upgraded {
    let p = Project::new();
    let v1 = p.bundle("v1.tar.gz", &[]);
    let inst = p.unpack(&v1, "inst");
    p.upgrade();
    let full = p.bundle("v2.tar.gz", &[]);
    let delta = p.bundle("d2.tar.gz", &["--since", v1.to_str().unwrap()]);
    Upgraded {
        p,
        inst,
        full,
        delta,
    }
}

fn listed(bundle: &Path) -> Vec<String> {
    gnu_tar(&["tzf", bundle.to_str().unwrap()], Path::new("/"))
        .lines()
        .map(str::to_string)
        .collect()
}

fn staging_left(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("airgap-staging"))
        .collect()
}

#[test]
fn a_delta_carries_only_changes_and_gives_the_tree_a_full_unpack_gives() {
    let u = upgraded();
    let names = listed(&u.delta);
    assert_eq!(names[0], "env/.airgap/manifest.toml");
    assert_eq!(names[1], "env/.airgap/delta.toml", "{names:?}");
    for carried in [
        "env/src/lib/b.bin",
        "env/src/lib/new.txt",
        "env/src/lib/link",
    ] {
        assert!(
            names.iter().any(|n| n == carried),
            "{carried} not in {names:?}"
        );
    }
    for reused in ["a.bin", "d.bin", "d-moved.bin", "e.bin", "sub/small.txt"] {
        let name = format!("env/src/lib/{reused}");
        assert!(!names.contains(&name), "{name} is carried: {names:?}");
    }
    let full_size = fs::metadata(&u.full).unwrap().len();
    let delta_size = fs::metadata(&u.delta).unwrap().len();
    // The unpacker is carried by both; the files it leaves out are 900 KB of noise (d-moved
    // is d's twin, stored once in the full bundle too).
    assert!(
        delta_size + 850_000 < full_size,
        "delta {delta_size} vs full {full_size}"
    );
    let description = gnu_tar(
        &["xzOf", u.delta.to_str().unwrap(), "env/.airgap/delta.toml"],
        Path::new("/"),
    );
    assert!(
        description.contains(r#"{ path = "src/lib/d-moved.bin", from = "src/lib/d.bin","#),
        "{description}"
    );

    let before = state(&u.inst);
    let done = run(&mut onto(&u.delta, &u.inst)).success();
    assert!(done.stderr.contains("Reused"), "{}", done.stderr);
    let fresh = u.p.unpack(&u.full, "fresh");
    assert_eq!(state(&u.inst), state(&fresh), "the updated tree differs");
    assert_eq!(
        fs::read(u.inst.join(".airgap/manifest.toml")).unwrap(),
        fs::read(fresh.join(".airgap/manifest.toml")).unwrap()
    );
    let previous = u.p.path("inst.previous");
    assert_eq!(state(&previous), before, "the old tree was changed");
    // Unchanged files with the same mode and mtime share the old tree's inode.
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&u.inst.join("src/lib/d.bin")),
        ino(&previous.join("src/lib/d.bin"))
    );
    assert_ne!(
        ino(&u.inst.join("src/lib/e.bin")),
        ino(&previous.join("src/lib/e.bin")),
        "a file whose mode changed must be a copy"
    );
    assert!(staging_left(u.p.dir.path()).is_empty());

    // Applied again, the tree is v2 now: refused, nothing changes.
    let after = state(&u.inst);
    let done = run(&mut onto(&u.delta, &u.inst)).failure();
    assert!(
        done.stderr.contains("is not the base of"),
        "{}",
        done.stderr
    );
    assert_eq!(state(&u.inst), after);
    assert_eq!(state(&previous), before);
}

#[test]
fn a_base_with_edited_or_missing_files_is_refused_naming_them_and_nothing_changes() {
    let u = upgraded();
    fs::write(u.inst.join("src/lib/d.bin"), "edited on the target").unwrap();
    fs::remove_file(u.inst.join("src/lib/sub/small.txt")).unwrap();
    let before = state(&u.inst);
    let done = run(&mut onto(&u.delta, &u.inst)).failure();
    assert!(
        done.stderr.contains("is not the base of"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("src/lib/d.bin: its sha256 is"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("src/lib/sub/small.txt"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("help: nothing was changed"),
        "{}",
        done.stderr
    );
    assert_eq!(state(&u.inst), before);
    assert!(!u.p.path("inst.previous").exists());
    assert!(staging_left(u.p.dir.path()).is_empty());
}

#[test]
fn a_delta_onto_another_version_or_a_full_bundle_onto_a_tree_is_refused() {
    let u = upgraded();
    let other = u.p.unpack(&u.full, "other");
    let before = state(&other);
    let done = run(&mut onto(&u.delta, &other)).failure();
    assert!(
        done.stderr.contains("the delta applies to"),
        "{}",
        done.stderr
    );
    assert_eq!(state(&other), before);
    let done = run(&mut onto(&u.full, &other)).failure();
    assert!(done.stderr.contains("not a delta"), "{}", done.stderr);
    assert_eq!(state(&other), before);
    assert!(staging_left(u.p.dir.path()).is_empty());
}

#[test]
fn into_a_new_dest_the_base_stays_as_it_is_and_no_previous_drops_the_old_tree() {
    let u = upgraded();
    let before = state(&u.inst);
    let new = u.p.path("new");
    run(airgap()
        .arg("unpack")
        .arg(&u.delta)
        .arg(&new)
        .arg("--onto")
        .arg(&u.inst))
    .success();
    let fresh = u.p.unpack(&u.full, "fresh");
    assert_eq!(state(&new), state(&fresh));
    assert_eq!(state(&u.inst), before);
    assert!(!u.p.path("inst.previous").exists());

    run(airgap()
        .arg("unpack")
        .arg(&u.delta)
        .arg("--onto")
        .arg(&u.inst)
        .arg("--no-previous"))
    .success();
    assert_eq!(state(&u.inst), state(&fresh));
    assert!(!u.p.path("inst.previous").exists());
}

#[test]
fn a_full_unpack_verify_and_check_of_a_delta_say_what_it_is() {
    let u = upgraded();
    let dest = u.p.path("x");
    let done = run(airgap().arg("unpack").arg(&u.delta).arg(&dest)).failure();
    assert!(done.stderr.contains("is a delta"), "{}", done.stderr);
    assert!(done.stderr.contains("--onto INSTALLED"), "{}", done.stderr);
    assert!(!dest.exists());
    let done = run(airgap().arg("verify").arg(&u.delta)).success();
    assert!(done.stderr.contains("Delta"), "{}", done.stderr);
    assert!(done.stderr.contains("5 file(s)"), "{}", done.stderr);
    let done = run(airgap().arg("check").arg(&u.delta)).failure();
    assert!(done.stderr.contains("is a delta"), "{}", done.stderr);
}

#[test]
fn the_carried_unpacker_applies_a_delta_from_the_archive_and_extracted() {
    let u = upgraded();
    let fresh = u.p.unpack(&u.full, "fresh");
    let carried = u.p.path("carried");
    fs::create_dir(&carried).unwrap();
    gnu_tar(&["xzf", u.delta.to_str().unwrap()], &carried);
    let done = run(Command::new(carried.join("env/unpack"))
        .arg("--from")
        .arg(&u.delta)
        .arg("--onto")
        .arg(&u.inst))
    .success();
    assert!(done.stderr.contains("hard-linked"), "{}", done.stderr);
    assert_eq!(state(&u.inst), state(&fresh));

    // And from the extracted delta alone, onto a second v1 tree.
    let v1 = u.p.path("v1.tar.gz");
    let second = u.p.unpack(&v1, "second");
    run(Command::new(carried.join("env/unpack"))
        .arg("--onto")
        .arg(&second))
    .success();
    assert_eq!(state(&second), state(&fresh));
}

#[test]
fn an_apply_killed_midway_leaves_the_installed_tree_as_it_was() {
    let p = Project::new();
    let v1 = p.bundle("v1.tar.gz", &[]);
    let inst = p.unpack(&v1, "inst");
    // v2 adds a file whose unpack takes seconds: 4 GiB of holes are hashed.
    let f = fs::File::create(p.path("src/lib/disk.img")).unwrap();
    f.set_len(4 << 30).unwrap();
    let delta = p.bundle("d2.tar.gz", &["--since", v1.to_str().unwrap()]);
    let before = state(&inst);
    let mut child = airgap()
        .args(["-v", "unpack"])
        .arg(&delta)
        .arg("--onto")
        .arg(&inst)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "ended early:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains("staging in ") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(state(&inst), before, "the killed apply changed the tree");
    assert!(!p.path("inst.previous").exists());
    // The next run removes what the killed one left and applies the delta.
    let done = run(&mut onto(&delta, &inst)).success();
    assert!(
        done.stderr.contains("left by an unpack that was killed"),
        "{}",
        done.stderr
    );
    assert!(staging_left(p.dir.path()).is_empty());
    assert!(inst.join("src/lib/disk.img").exists());
}

/// A delta's description that does not agree with its manifest is refused by verify.
#[test]
fn a_description_that_disagrees_with_the_manifest_is_refused() {
    let dir = tempdir();
    let cases: [(&str, &str); 4] = [
        (
            "{ path = \"gone.txt\", mtime = 0 },\n",
            "the manifest does not list it",
        ),
        ("{ path = \"carried.txt\", mtime = 0 },\n", "both carries"),
        ("{ path = \"sub\", mtime = 0 },\n", "only files are taken"),
        (
            "{ path = \"via/inner.txt\", mtime = 0 },\n",
            "its parent is not a directory",
        ),
    ];
    for (i, (line, expected)) in cases.iter().enumerate() {
        let carried = Raw::file("t/carried.txt", b"here");
        let reused = Raw::file("t/reused.txt", b"in the base");
        let sub = Raw::dir("t/sub");
        // A link to a directory of the bundle: a file "under" it is no path of the bundle.
        let via = Raw::new("t/via", EntryType::Symlink, 0o777, b"sub", b"");
        let inner = Raw::file("t/via/inner.txt", b"x");
        let mut records = vec![
            record_for("t", &carried),
            record_for("t", &reused),
            record_for("t", &sub),
            record_for("t", &via),
        ];
        if i == 3 {
            records.push(record_for("t", &inner));
        }
        records.sort_by(|a, b| a.path.cmp(&b.path));
        let mut list = [
            (*line).to_string(),
            "{ path = \"reused.txt\", mtime = 0 },\n".to_string(),
        ];
        list.sort();
        let text = format!(
            "# airgap delta (docs/archive-format.md): the files taken from the base, then the base\nfiles = [\n  {}]\nformat = 1\nbase = \"{}\"\nbase_name = \"t\"\nreused = 2\nreused_bytes = 0\n",
            list.join("  "),
            "ab".repeat(32)
        );
        let delta = Raw::file("t/.airgap/delta.toml", text.as_bytes());
        let out = dir.path().join(format!("case{i}.tar"));
        craft(
            &out,
            "t",
            records,
            &[
                delta,
                Raw::dir("t"),
                carried.clone(),
                sub.clone(),
                via.clone(),
            ],
        );
        let done = run(airgap().arg("verify").arg(&out)).failure();
        assert!(done.stderr.contains(expected), "case {i}: {}", done.stderr);
    }
}

/// v1 with a 2 MB file, installed; v2 with 4 bytes of it changed.
fn changed_a_little() -> (Project, PathBuf, PathBuf) {
    let p = Project::new();
    fs::write(p.path("src/lib/big.bin"), noise(2_000_000)).unwrap();
    let v1 = p.bundle("v1.tar.gz", &[]);
    let inst = p.unpack(&v1, "inst");
    let mut data = fs::read(p.path("src/lib/big.bin")).unwrap();
    data[1_000_000..1_000_004].copy_from_slice(b"XXXX");
    fs::write(p.path("src/lib/big.bin"), data).unwrap();
    (p, v1, inst)
}

#[test]
fn a_file_that_changed_a_little_goes_as_a_patch_and_is_rebuilt_exactly() {
    let (p, v1, inst) = changed_a_little();
    let full = p.bundle("v2.tar.gz", &[]);
    let fresh = p.unpack(&full, "fresh");
    for since in [v1.clone(), inst.clone()] {
        let name = format!("d-{}.tar.gz", since.file_name().unwrap().to_string_lossy());
        let delta = p.bundle(&name, &["--since", since.to_str().unwrap()]);
        let names = listed(&delta);
        assert!(
            names.contains(&"env/.airgap/patch/src/lib/big.bin.zst".to_string()),
            "{names:?}"
        );
        assert!(
            !names.contains(&"env/src/lib/big.bin".to_string()),
            "{names:?}"
        );
        assert!(
            fs::metadata(&delta).unwrap().len() + 1_900_000 < fs::metadata(&full).unwrap().len(),
            "the patch should be tiny"
        );
        let dest = p.path(&format!("new-{name}"));
        let done = run(airgap()
            .arg("unpack")
            .arg(&delta)
            .arg(&dest)
            .arg("--onto")
            .arg(&inst))
        .success();
        assert!(
            done.stderr.contains("1 rebuilt from patches"),
            "{}",
            done.stderr
        );
        assert_eq!(state(&dest), state(&fresh));
    }
    // A manifest alone has no contents to patch against: the file is carried whole.
    let delta = p.bundle(
        "d-manifest.tar.gz",
        &[
            "--since",
            inst.join(".airgap/manifest.toml").to_str().unwrap(),
        ],
    );
    assert!(listed(&delta).contains(&"env/src/lib/big.bin".to_string()));
}

#[test]
fn a_patch_or_its_base_file_that_differs_is_refused_and_nothing_changes() {
    let (p, v1, inst) = changed_a_little();
    let delta = p.bundle("d2.tar.gz", &["--since", v1.to_str().unwrap()]);
    let carried = p.path("carried");
    fs::create_dir(&carried).unwrap();
    gnu_tar(&["xzf", delta.to_str().unwrap()], &carried);
    let before = state(&inst);

    // The base's file edited on the target.
    let big = inst.join("src/lib/big.bin");
    let original = fs::read(&big).unwrap();
    fs::write(&big, b"edited").unwrap();
    let done = run(&mut onto(&delta, &inst)).failure();
    assert!(
        done.stderr.contains("src/lib/big.bin: its sha256 is"),
        "{}",
        done.stderr
    );
    fs::write(&big, &original).unwrap();
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(before["src/lib/big.bin"].3 as u64);
    fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_modified(t)
        .unwrap();
    assert_eq!(state(&inst), before);

    // A patch changed after the delta was written.
    let patch = carried.join("env/.airgap/patch/src/lib/big.bin.zst");
    let mut bytes = fs::read(&patch).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x55;
    fs::write(&patch, bytes).unwrap();
    let done = run(Command::new(carried.join("env/unpack"))
        .arg("--onto")
        .arg(&inst))
    .failure();
    assert!(done.stderr.contains("big.bin"), "{}", done.stderr);
    assert_eq!(state(&inst), before);
    assert!(staging_left(p.dir.path()).is_empty());
}

#[test]
fn a_delta_split_into_volumes_applies_from_its_first_volume() {
    let (p, v1, inst) = changed_a_little();
    // More than one volume's worth of change: a new file of noise besides the patch.
    fs::write(p.path("src/lib/more.bin"), noise(700_000)).unwrap();
    let full = p.bundle("v2.tar.gz", &[]);
    let fresh = p.unpack(&full, "fresh");
    p.bundle(
        "d2.tar.gz",
        &["--since", v1.to_str().unwrap(), "--split-size", "256K"],
    );
    assert!(p.path("d2.tar.gz.002").exists(), "the delta is split");
    let done = run(&mut onto(&p.path("d2.tar.gz.001"), &inst)).success();
    assert!(
        done.stderr.contains("1 rebuilt from patches"),
        "{}",
        done.stderr
    );
    assert_eq!(state(&inst), state(&fresh));
}
